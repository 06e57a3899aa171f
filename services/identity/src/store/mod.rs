//! Identity's SQL store: tenants and users so far.

use gateway_storage::{Database, Migrations, StorageError, now_micros};
use sqlx::Row as _;

pub static MIGRATIONS: Migrations = gateway_storage::migrations!(
    1 "tenants and users" => "0001_tenants_and_users.sql",
);

/// A user's role; stored as its upper-case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Admin,
    Superadmin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "USER",
            Self::Admin => "ADMIN",
            Self::Superadmin => "SUPERADMIN",
        }
    }

    fn parse(value: &str) -> Result<Self, StorageError> {
        match value {
            "USER" => Ok(Self::User),
            "ADMIN" => Ok(Self::Admin),
            "SUPERADMIN" => Ok(Self::Superadmin),
            other => Err(StorageError::Config(format!(
                "unknown role {other:?} in users table"
            ))),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub id: String,
    pub slug: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub tenant_id: String,
    pub username: String,
    pub email: String,
    pub password_hash: String,
    pub role: Role,
    pub disabled: bool,
}

#[derive(Debug, Clone)]
pub struct IdentityStore {
    db: Database,
}

impl IdentityStore {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    pub async fn create_tenant(&self, slug: &str, name: &str) -> Result<Tenant, StorageError> {
        let tenant = Tenant {
            id: uuid::Uuid::now_v7().to_string(),
            slug: slug.to_owned(),
            name: name.to_owned(),
        };
        let now = now_micros();
        sqlx::query(
            "INSERT INTO tenants (id, slug, name, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)",
        )
        .bind(&tenant.id)
        .bind(&tenant.slug)
        .bind(&tenant.name)
        .bind(now)
        .execute(self.db.pool())
        .await?;
        Ok(tenant)
    }

    pub async fn tenant_by_slug(&self, slug: &str) -> Result<Tenant, StorageError> {
        let row = sqlx::query("SELECT id, slug, name FROM tenants WHERE slug = $1")
            .bind(slug)
            .fetch_one(self.db.pool())
            .await?;
        Ok(Tenant {
            id: row.try_get("id")?,
            slug: row.try_get("slug")?,
            name: row.try_get("name")?,
        })
    }

    pub async fn create_user(&self, new_user: NewUser<'_>) -> Result<User, StorageError> {
        let user = User {
            id: uuid::Uuid::now_v7().to_string(),
            tenant_id: new_user.tenant_id.to_owned(),
            username: new_user.username.to_owned(),
            email: new_user.email.to_owned(),
            password_hash: new_user.password_hash.to_owned(),
            role: new_user.role,
            disabled: false,
        };
        let now = now_micros();
        sqlx::query(
            "INSERT INTO users (id, tenant_id, username, email, password_hash, role, disabled, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
        )
        .bind(&user.id)
        .bind(&user.tenant_id)
        .bind(&user.username)
        .bind(&user.email)
        .bind(&user.password_hash)
        .bind(user.role.as_str())
        .bind(user.disabled)
        .bind(now)
        .execute(self.db.pool())
        .await?;
        Ok(user)
    }

    pub async fn user_by_name(
        &self,
        tenant_id: &str,
        username: &str,
    ) -> Result<User, StorageError> {
        let row = sqlx::query(
            "SELECT id, tenant_id, username, email, password_hash, role, disabled \
             FROM users WHERE tenant_id = $1 AND username = $2",
        )
        .bind(tenant_id)
        .bind(username)
        .fetch_one(self.db.pool())
        .await?;
        Ok(User {
            id: row.try_get("id")?,
            tenant_id: row.try_get("tenant_id")?,
            username: row.try_get("username")?,
            email: row.try_get("email")?,
            password_hash: row.try_get("password_hash")?,
            role: Role::parse(row.try_get::<&str, _>("role")?)?,
            disabled: gateway_storage::flag(&row, "disabled")?,
        })
    }

    pub async fn count_superadmins(&self) -> Result<i64, StorageError> {
        let count = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE role = $1")
            .bind(Role::Superadmin.as_str())
            .fetch_one(self.db.pool())
            .await?;
        Ok(count)
    }
}

/// The fields needed to create a user.
#[derive(Debug, Clone, Copy)]
pub struct NewUser<'a> {
    pub tenant_id: &'a str,
    pub username: &'a str,
    pub email: &'a str,
    pub password_hash: &'a str,
    pub role: Role,
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_storage::ConnectOptions;

    async fn open(url: &str) -> IdentityStore {
        let db = Database::connect(url, &ConnectOptions::default())
            .await
            .unwrap();
        db.migrate(&MIGRATIONS).await.unwrap();
        IdentityStore::new(db)
    }

    #[test]
    fn both_backends_have_the_same_migration_versions() {
        let (sqlite, postgres) = MIGRATIONS.versions();
        assert_eq!(sqlite, postgres);
    }

    gateway_testkit::test_on_every_backend! {
        async fn users_round_trip_and_names_are_unique_per_tenant(db) {
            let store = open(db.url()).await;
            let acme = store.create_tenant("acme", "Acme").await.unwrap();
            let globex = store.create_tenant("globex", "Globex").await.unwrap();
            let new_user = NewUser {
                tenant_id: &acme.id,
                username: "ada",
                email: "ada@acme.test",
                password_hash: "$argon2id$fake",
                role: Role::Admin,
            };
            let created = store.create_user(new_user).await.unwrap();
            assert_eq!(store.user_by_name(&acme.id, "ada").await.unwrap(), created);

            let duplicate = store.create_user(new_user).await.unwrap_err();
            assert!(duplicate.is_already_exists(), "{duplicate:?}");
            // The same name in another tenant is a different user.
            store
                .create_user(NewUser { tenant_id: &globex.id, ..new_user })
                .await
                .unwrap();
            assert!(matches!(
                store.user_by_name(&acme.id, "bob").await,
                Err(StorageError::NotFound)
            ));
        }

        async fn duplicate_tenant_slug_is_refused(db) {
            let store = open(db.url()).await;
            store.create_tenant("acme", "Acme").await.unwrap();
            let error = store.create_tenant("acme", "Other").await.unwrap_err();
            assert!(error.is_already_exists(), "{error:?}");
            assert_eq!(store.tenant_by_slug("acme").await.unwrap().name, "Acme");
        }

        async fn user_in_a_missing_tenant_is_refused(db) {
            let store = open(db.url()).await;
            let error = store
                .create_user(NewUser {
                    tenant_id: "no-such-tenant",
                    username: "x",
                    email: "",
                    password_hash: "h",
                    role: Role::User,
                })
                .await
                .unwrap_err();
            assert!(matches!(error, StorageError::ForeignKey { .. }), "{error:?}");
        }
    }
}
