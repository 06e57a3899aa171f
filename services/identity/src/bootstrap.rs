//! The first start creates a superadmin, so the suite can be administered
//! without touching the database.

use gateway_storage::StorageError;

use crate::config::BootstrapConfig;
use crate::password;
use crate::store::{IdentityStore, LoginMethod, NewUser, Role};

/// What [`ensure_superadmin`] did.
#[derive(PartialEq, Eq)]
pub enum BootstrapOutcome {
    /// A superadmin already existed; nothing changed.
    AlreadyBootstrapped,
    /// A superadmin was created with the configured password.
    Created { username: String },
    /// A superadmin was created with a generated password, which the caller
    /// shows once: it is stored only as a hash.
    CreatedWithGeneratedPassword { username: String, password: String },
}

impl std::fmt::Debug for BootstrapOutcome {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::AlreadyBootstrapped => formatter.write_str("AlreadyBootstrapped"),
            Self::Created { username } => write!(formatter, "Created({username})"),
            Self::CreatedWithGeneratedPassword { username, .. } => {
                write!(
                    formatter,
                    "CreatedWithGeneratedPassword({username}, [redacted])"
                )
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Hash(#[from] password::HashError),
}

/// Creates the system tenant and superadmin unless a superadmin exists.
///
/// Two replicas starting together may both try: the unique constraints let
/// one win, and the loser finds the winner's superadmin.
pub async fn ensure_superadmin(
    store: &IdentityStore,
    config: &BootstrapConfig,
) -> Result<BootstrapOutcome, BootstrapError> {
    if store.count_superadmins().await? > 0 {
        return Ok(BootstrapOutcome::AlreadyBootstrapped);
    }
    let tenant = match store.create_tenant(&config.tenant_slug, "System").await {
        Ok(tenant) => tenant,
        Err(error) if error.is_already_exists() => {
            store.tenant_by_slug(&config.tenant_slug).await?
        }
        Err(error) => return Err(error.into()),
    };
    let generated = config.password.is_empty().then(|| password::generate(24));
    let plaintext = generated.as_deref().unwrap_or(config.password.expose());
    let password_hash = password::hash(plaintext)?;
    let created = store
        .create_user(NewUser {
            tenant_id: &tenant.id,
            username: &config.username,
            email: "",
            password_hash: &password_hash,
            role: Role::Superadmin,
            login_method: LoginMethod::Password,
        })
        .await;
    match created {
        Ok(_) => {}
        Err(error) if error.is_already_exists() && store.count_superadmins().await? > 0 => {
            return Ok(BootstrapOutcome::AlreadyBootstrapped);
        }
        Err(error) => return Err(error.into()),
    }
    tracing::info!(username = %config.username, tenant = %config.tenant_slug, "created bootstrap superadmin");
    let username = config.username.clone();
    Ok(match generated {
        Some(password) => BootstrapOutcome::CreatedWithGeneratedPassword { username, password },
        None => BootstrapOutcome::Created { username },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MIGRATIONS;
    use gateway_storage::{ConnectOptions, Database};

    async fn open(url: &str) -> IdentityStore {
        let db = Database::connect(url, &ConnectOptions::default())
            .await
            .unwrap();
        db.migrate(&MIGRATIONS).await.unwrap();
        IdentityStore::new(db)
    }

    gateway_testkit::test_on_every_backend! {
        async fn first_start_creates_a_superadmin_once_with_the_configured_password(db) {
            let store = open(db.url()).await;
            let config = BootstrapConfig {
                password: "a-long-bootstrap-password".into(),
                ..BootstrapConfig::default()
            };
            let outcome = ensure_superadmin(&store, &config).await.unwrap();
            assert_eq!(outcome, BootstrapOutcome::Created { username: "admin".to_owned() });
            let tenant = store.tenant_by_slug("system").await.unwrap();
            let admin = store.user_by_name(&tenant.id, "admin").await.unwrap();
            assert_eq!(admin.role, Role::Superadmin);
            assert!(password::verify("a-long-bootstrap-password", &admin.password_hash));
            assert!(!admin.password_hash.contains("a-long-bootstrap-password"));

            let again = ensure_superadmin(&store, &config).await.unwrap();
            assert_eq!(again, BootstrapOutcome::AlreadyBootstrapped);
            assert_eq!(store.count_superadmins().await.unwrap(), 1);
        }

        async fn without_a_configured_password_one_is_generated(db) {
            let store = open(db.url()).await;
            let outcome = ensure_superadmin(&store, &BootstrapConfig::default()).await.unwrap();
            let BootstrapOutcome::CreatedWithGeneratedPassword { password, .. } = outcome else {
                panic!("expected a generated password, got {outcome:?}");
            };
            let tenant = store.tenant_by_slug("system").await.unwrap();
            let admin = store.user_by_name(&tenant.id, "admin").await.unwrap();
            assert!(password::verify(&password, &admin.password_hash));
        }
    }
}
