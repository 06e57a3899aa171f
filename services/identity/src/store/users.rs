//! Users.

use gateway_storage::page::Page;
use gateway_storage::{StorageError, now_micros};
use sqlx::Row as _;
use sqlx::any::AnyRow;

use super::changes::{Change, ChangeKind, record};
use super::{IdentityStore, Role, Transaction, role_of};

/// How a user proves who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginMethod {
    Password,
    Ldap,
}

impl LoginMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Password => "PASSWORD",
            Self::Ldap => "LDAP",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub tenant_id: String,
    pub username: String,
    pub email: String,
    /// argon2id PHC string; empty for directory (LDAP) users.
    pub password_hash: String,
    pub role: Role,
    pub disabled: bool,
    pub login_method: LoginMethod,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_login_at: Option<i64>,
}

/// The fields needed to create a user.
#[derive(Debug, Clone, Copy)]
pub struct NewUser<'a> {
    pub tenant_id: &'a str,
    pub username: &'a str,
    pub email: &'a str,
    pub password_hash: &'a str,
    pub role: Role,
    pub login_method: LoginMethod,
}

/// Changes to a user; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct UserUpdate {
    pub username: Option<String>,
    pub email: Option<String>,
    pub role: Option<Role>,
    pub disabled: Option<bool>,
}

const COLUMNS: &str = "id, tenant_id, username, email, password_hash, role, disabled, login_method, \
     created_at, updated_at, last_login_at";

fn user(row: &AnyRow) -> Result<User, StorageError> {
    let login_method: String = row.try_get("login_method")?;
    Ok(User {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        username: row.try_get("username")?,
        email: row.try_get("email")?,
        password_hash: row.try_get("password_hash")?,
        role: role_of(row.try_get("role")?)?,
        disabled: gateway_storage::flag(row, "disabled")?,
        login_method: if login_method == "LDAP" {
            LoginMethod::Ldap
        } else {
            LoginMethod::Password
        },
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        last_login_at: row.try_get("last_login_at")?,
    })
}

pub async fn insert(
    transaction: &mut Transaction,
    new_user: NewUser<'_>,
) -> Result<User, StorageError> {
    let now = now_micros();
    let user = User {
        id: uuid::Uuid::now_v7().to_string(),
        tenant_id: new_user.tenant_id.to_owned(),
        username: new_user.username.to_owned(),
        email: new_user.email.to_owned(),
        password_hash: new_user.password_hash.to_owned(),
        role: new_user.role,
        disabled: false,
        login_method: new_user.login_method,
        created_at: now,
        updated_at: now,
        last_login_at: None,
    };
    sqlx::query(
        "INSERT INTO users (id, tenant_id, username, email, password_hash, role, disabled, login_method, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
    )
    .bind(&user.id)
    .bind(&user.tenant_id)
    .bind(&user.username)
    .bind(&user.email)
    .bind(&user.password_hash)
    .bind(user.role.as_str())
    .bind(false)
    .bind(user.login_method.as_str())
    .bind(now)
    .execute(&mut **transaction)
    .await?;
    Ok(user)
}

impl IdentityStore {
    pub async fn create_user(&self, new_user: NewUser<'_>) -> Result<User, StorageError> {
        let mut transaction = self.begin().await?;
        let user = insert(&mut transaction, new_user).await?;
        transaction.commit().await?;
        Ok(user)
    }

    pub async fn get_user(&self, id: &str) -> Result<User, StorageError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM users WHERE id = $1"
        )))
        .bind(id)
        .fetch_one(self.db.pool())
        .await?;
        user(&row)
    }

    pub async fn user_by_name(
        &self,
        tenant_id: &str,
        username: &str,
    ) -> Result<User, StorageError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM users WHERE tenant_id = $1 AND username = $2"
        )))
        .bind(tenant_id)
        .bind(username)
        .fetch_one(self.db.pool())
        .await?;
        user(&row)
    }

    /// Every user with this name, across tenants (login without a tenant).
    pub async fn users_named(&self, username: &str) -> Result<Vec<User>, StorageError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM users WHERE username = $1 LIMIT 2"
        )))
        .bind(username)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(user).collect()
    }

    pub async fn list_users(
        &self,
        page: &Page,
        tenant_id: Option<&str>,
        group_id: Option<&str>,
    ) -> Result<Vec<User>, StorageError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM users WHERE id > $1 AND ($2 = '' OR tenant_id = $2) \
             AND ($3 = '' OR id IN (SELECT user_id FROM group_members WHERE group_id = $3)) \
             ORDER BY id LIMIT $4"
        )))
        .bind(&page.after)
        .bind(super::optional(tenant_id))
        .bind(super::optional(group_id))
        .bind(page.fetch_limit())
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(user).collect()
    }

    pub async fn count_superadmins(&self) -> Result<i64, StorageError> {
        let count = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE role = $1")
            .bind(Role::Superadmin.as_str())
            .fetch_one(self.db.pool())
            .await?;
        Ok(count)
    }

    pub async fn tenant_has_superadmin(&self, tenant_id: &str) -> Result<bool, StorageError> {
        let count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE tenant_id = $1 AND role = $2")
                .bind(tenant_id)
                .bind(Role::Superadmin.as_str())
                .fetch_one(self.db.pool())
                .await?;
        Ok(count > 0)
    }

    pub async fn update_user(&self, id: &str, update: &UserUpdate) -> Result<User, StorageError> {
        let mut transaction = self.begin().await?;
        let result = sqlx::query(
            "UPDATE users SET username = COALESCE($2, username), email = COALESCE($3, email), \
             role = COALESCE($4, role), disabled = COALESCE($5, disabled), updated_at = $6 WHERE id = $1",
        )
        .bind(id)
        .bind(update.username.clone())
        .bind(update.email.clone())
        .bind(update.role.map(|role| role.as_str().to_owned()))
        .bind(update.disabled)
        .bind(now_micros())
        .execute(&mut *transaction)
        .await?;
        if result.rows_affected() == 0 {
            return Err(StorageError::NotFound);
        }
        let tenant_id: String = sqlx::query_scalar("SELECT tenant_id FROM users WHERE id = $1")
            .bind(id)
            .fetch_one(&mut *transaction)
            .await?;
        let kind = if update.disabled == Some(true) {
            ChangeKind::UserDisabled
        } else {
            ChangeKind::UserUpdated
        };
        record(&mut transaction, Change::new(kind, &tenant_id).user(id)).await?;
        transaction.commit().await?;
        self.get_user(id).await
    }

    /// Deletes the user with their keys and memberships.
    pub async fn delete_user(&self, id: &str) -> Result<(), StorageError> {
        let mut transaction = self.begin().await?;
        let tenant_id: Option<String> =
            sqlx::query_scalar("SELECT tenant_id FROM users WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *transaction)
                .await?;
        let tenant_id = tenant_id.ok_or(StorageError::NotFound)?;
        for statement in [
            "DELETE FROM api_keys WHERE user_id = $1",
            "DELETE FROM group_members WHERE user_id = $1",
            "DELETE FROM users WHERE id = $1",
        ] {
            sqlx::query(statement)
                .bind(id)
                .execute(&mut *transaction)
                .await?;
        }
        record(
            &mut transaction,
            Change::new(ChangeKind::UserDeleted, &tenant_id).user(id),
        )
        .await?;
        transaction.commit().await?;
        Ok(())
    }

    pub async fn set_password_hash(
        &self,
        id: &str,
        password_hash: &str,
    ) -> Result<(), StorageError> {
        let result =
            sqlx::query("UPDATE users SET password_hash = $2, updated_at = $3 WHERE id = $1")
                .bind(id)
                .bind(password_hash)
                .bind(now_micros())
                .execute(self.db.pool())
                .await?;
        if result.rows_affected() == 0 {
            return Err(StorageError::NotFound);
        }
        Ok(())
    }

    pub async fn record_login(&self, id: &str) -> Result<(), StorageError> {
        sqlx::query("UPDATE users SET last_login_at = $2 WHERE id = $1")
            .bind(id)
            .bind(now_micros())
            .execute(self.db.pool())
            .await?;
        Ok(())
    }
}
