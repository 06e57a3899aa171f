//! The identity domain: who may do what to tenants, users, groups, keys and
//! clients, login, and the principal the edge needs. Plain Rust over the
//! store; `grpc.rs` adapts it to the wire.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use gateway_auth::{Caller, Role};
use gateway_storage::StorageError;
use gateway_storage::page::Page;
use tokio::sync::Notify;

use crate::api_key;
use crate::config::Config;
use crate::error::{IdentityError, StoreResultExt as _};
use crate::ldap;
use crate::password;
use crate::store::{
    ApiKey, Client, ClientUpdate, Group, GroupUpdate, IdentityStore, KeyUpdate, LoginMethod,
    Member, NewClient, NewGroup, NewKey, NewUser, Tenant, User, UserUpdate,
};
use crate::throttle::LoginThrottle;
use crate::tokens::{IssuedToken, PublicKeyInfo, TokenIssuer};
use crate::validate;

/// Which field set an update names (from the request's field mask).
pub type Mask = Vec<String>;

/// The outcome of a login or sign-up.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: User,
    pub token: IssuedToken,
}

/// Why a key cannot be used, as `AuthenticateKey` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    Active,
    Unknown,
    Expired,
    Frozen,
    UserDisabled,
    IpNotAllowed,
    ClientUnknown,
}

/// What the edge needs to serve a key.
#[derive(Debug, Clone)]
pub struct Principal {
    pub key: ApiKey,
    pub tenant_slug: String,
    pub username: String,
    pub role: Role,
    /// The key's group if it has one, else the user's groups; highest
    /// priority first.
    pub groups: Vec<Group>,
    pub client: Option<Client>,
}

#[derive(Debug, Clone)]
pub struct Authentication {
    pub status: KeyStatus,
    pub principal: Option<Principal>,
    pub version: i64,
}

/// Fields of a new API key as a caller asks for it.
#[derive(Debug, Clone, Default)]
pub struct KeyRequest {
    pub tenant_id: String,
    pub user_id: String,
    pub name: String,
    pub group_id: Option<String>,
    pub spend_limit_micros: Option<i64>,
    pub plan_id: String,
    pub expire_at: Option<i64>,
    pub allowed_models: Vec<String>,
    pub allowed_ips: Vec<String>,
    pub completion_cache: bool,
}

use gateway_auth::password::DUMMY_HASH;

pub struct Directory {
    store: IdentityStore,
    config: Config,
    tokens: TokenIssuer,
    throttle: LoginThrottle,
    last_used: Mutex<HashMap<String, i64>>,
    /// Wakes this replica's watchers at once after a local write; other
    /// replicas' writes are found by polling.
    changed: Arc<Notify>,
}

impl Directory {
    pub fn new(store: IdentityStore, config: Config, tokens: TokenIssuer) -> Self {
        let throttle = LoginThrottle::new(
            config.login_max_failures,
            Duration::from_secs(config.login_lockout_secs),
        );
        Self {
            store,
            config,
            tokens,
            throttle,
            last_used: Mutex::new(HashMap::new()),
            changed: Arc::new(Notify::new()),
        }
    }

    pub fn store(&self) -> &IdentityStore {
        &self.store
    }

    pub fn changed(&self) -> Arc<Notify> {
        Arc::clone(&self.changed)
    }

    fn notify_watchers(&self) {
        self.changed.notify_waiters();
    }

    // === Tenants ===

    pub async fn create_tenant(&self, slug: &str, name: &str) -> Result<Tenant, IdentityError> {
        validate::tenant_slug(slug)?;
        let name = if name.is_empty() { slug } else { name };
        validate::name("tenant.name", name)?;
        self.store
            .create_tenant(slug, name)
            .await
            .or_not_found("tenant")
    }

    pub async fn get_tenant(&self, caller: &Caller, id: &str) -> Result<Tenant, IdentityError> {
        if !caller.can_see_tenant(id) {
            return Err(IdentityError::NotFound("tenant"));
        }
        self.store.get_tenant(id).await.or_not_found("tenant")
    }

    pub async fn get_tenant_by_slug(
        &self,
        caller: &Caller,
        slug: &str,
    ) -> Result<Tenant, IdentityError> {
        let tenant = self
            .store
            .tenant_by_slug(slug)
            .await
            .or_not_found("tenant")?;
        if !caller.can_see_tenant(&tenant.id) {
            return Err(IdentityError::NotFound("tenant"));
        }
        Ok(tenant)
    }

    pub async fn list_tenants(
        &self,
        caller: &Caller,
        page: &Page,
    ) -> Result<Vec<Tenant>, IdentityError> {
        let only = if caller.is_superadmin() {
            None
        } else {
            caller.tenant_id()
        };
        Ok(self.store.list_tenants(page, only).await?)
    }

    pub async fn update_tenant(
        &self,
        caller: &Caller,
        id: &str,
        slug: &str,
        name: &str,
        mask: &Mask,
    ) -> Result<Tenant, IdentityError> {
        check_mask(mask, &["slug", "name"])?;
        self.administered_tenant(caller, id)?;
        let slug = mask.iter().any(|path| path == "slug").then_some(slug);
        let name = mask.iter().any(|path| path == "name").then_some(name);
        if let Some(slug) = slug {
            validate::tenant_slug(slug)?;
        }
        if let Some(name) = name {
            validate::name("tenant.name", name)?;
        }
        let tenant = self
            .store
            .update_tenant(id, slug, name)
            .await
            .or_not_found("tenant")?;
        self.notify_watchers();
        Ok(tenant)
    }

    pub async fn delete_tenant(&self, id: &str) -> Result<(), IdentityError> {
        if self.store.tenant_has_superadmin(id).await? {
            return Err(IdentityError::FailedPrecondition(
                "the tenant holds a superadmin; move or delete the superadmin first".to_owned(),
            ));
        }
        self.store.delete_tenant(id).await.or_not_found("tenant")?;
        self.notify_watchers();
        Ok(())
    }

    pub async fn sign_up(
        &self,
        tenant_slug: &str,
        tenant_name: &str,
        username: &str,
        email: &str,
        password: &str,
    ) -> Result<(Tenant, Session), IdentityError> {
        if !self.config.signup_enabled {
            return Err(IdentityError::FailedPrecondition(
                "self-service sign-up is switched off".to_owned(),
            ));
        }
        validate::slug("tenant_slug", tenant_slug)?;
        let tenant_name = if tenant_name.is_empty() {
            tenant_slug
        } else {
            tenant_name
        };
        validate::name("tenant_name", tenant_name)?;
        validate::username(username)?;
        validate::email(email)?;
        validate::password("password", password, username)?;
        let password_hash = hash_password(password).await?;
        let mut transaction = self.store.begin().await?;
        let tenant = crate::store::insert_tenant(&mut transaction, tenant_slug, tenant_name)
            .await
            .or_not_found("tenant")?;
        let user = crate::store::insert_user(
            &mut transaction,
            NewUser {
                tenant_id: &tenant.id,
                username,
                email,
                password_hash: &password_hash,
                role: Role::Admin,
                login_method: LoginMethod::Password,
            },
        )
        .await
        .or_not_found("user")?;
        transaction.commit().await.map_err(StorageError::from)?;
        let token = self.tokens.issue(&user)?;
        Ok((tenant, Session { user, token }))
    }

    // === Users ===

    pub async fn create_user(
        &self,
        caller: &Caller,
        tenant_id: &str,
        username: &str,
        email: &str,
        role: Option<Role>,
        password: &str,
    ) -> Result<User, IdentityError> {
        let tenant_id = self.target_tenant(caller, tenant_id)?;
        self.administered_tenant(caller, &tenant_id)?;
        let role = role.unwrap_or(Role::User);
        if role == Role::Superadmin && !caller.is_superadmin() {
            return Err(IdentityError::PermissionDenied(
                "only a superadmin can create a superadmin",
            ));
        }
        validate::username(username)?;
        validate::email(email)?;
        validate::password("password", password, username)?;
        let password_hash = hash_password(password).await?;
        self.store
            .create_user(NewUser {
                tenant_id: &tenant_id,
                username,
                email,
                password_hash: &password_hash,
                role,
                login_method: LoginMethod::Password,
            })
            .await
            .or_not_found("user")
    }

    pub async fn get_user(&self, caller: &Caller, id: &str) -> Result<User, IdentityError> {
        let user = self.visible_user(caller, id).await?;
        if caller.user_id() != Some(id) && !caller.administers(&user.tenant_id) {
            return Err(IdentityError::PermissionDenied("users see only themselves"));
        }
        Ok(user)
    }

    pub async fn list_users(
        &self,
        caller: &Caller,
        page: &Page,
        tenant_id: &str,
        group_id: &str,
    ) -> Result<Vec<User>, IdentityError> {
        let tenant = self.listing_tenant(caller, tenant_id)?;
        Ok(self
            .store
            .list_users(page, tenant.as_deref(), non_empty(group_id))
            .await?)
    }

    pub async fn update_user(
        &self,
        caller: &Caller,
        id: &str,
        changes: UserUpdate,
        mask: &Mask,
    ) -> Result<User, IdentityError> {
        check_mask(mask, &["username", "email", "role", "disabled"])?;
        let existing = self.visible_user(caller, id).await?;
        self.administered_tenant(caller, &existing.tenant_id)?;
        let wants = |field: &str| mask.iter().any(|path| path == field);
        let mut update = UserUpdate::default();
        if wants("username") {
            let username = changes.username.unwrap_or_default();
            validate::username(&username)?;
            update.username = Some(username);
        }
        if wants("email") {
            let email = changes.email.unwrap_or_default();
            validate::email(&email)?;
            update.email = Some(email);
        }
        if wants("role") {
            let role = changes.role.ok_or_else(|| {
                IdentityError::invalid("user.role", "must be USER, ADMIN or SUPERADMIN")
            })?;
            let touches_superadmin = role == Role::Superadmin || existing.role == Role::Superadmin;
            if touches_superadmin && !caller.is_superadmin() {
                return Err(IdentityError::PermissionDenied(
                    "only a superadmin grants or revokes SUPERADMIN",
                ));
            }
            update.role = Some(role);
        }
        if wants("disabled") {
            update.disabled = changes.disabled;
        }
        if existing.role == Role::Superadmin && !caller.is_superadmin() {
            return Err(IdentityError::PermissionDenied(
                "only a superadmin changes a superadmin",
            ));
        }
        let user = self
            .store
            .update_user(id, &update)
            .await
            .or_not_found("user")?;
        self.notify_watchers();
        Ok(user)
    }

    pub async fn delete_user(&self, caller: &Caller, id: &str) -> Result<(), IdentityError> {
        let existing = self.visible_user(caller, id).await?;
        self.administered_tenant(caller, &existing.tenant_id)?;
        if existing.role == Role::Superadmin {
            if !caller.is_superadmin() {
                return Err(IdentityError::PermissionDenied(
                    "only a superadmin deletes a superadmin",
                ));
            }
            if self.store.count_superadmins().await? <= 1 {
                return Err(IdentityError::FailedPrecondition(
                    "the last superadmin cannot be deleted".to_owned(),
                ));
            }
        }
        self.store.delete_user(id).await.or_not_found("user")?;
        self.notify_watchers();
        Ok(())
    }

    pub async fn change_password(
        &self,
        caller: &Caller,
        user_id: &str,
        current_password: &str,
        new_password: &str,
    ) -> Result<(), IdentityError> {
        let user_id = if user_id.is_empty() {
            caller.user_id().unwrap_or_default().to_owned()
        } else {
            user_id.to_owned()
        };
        let user = self.visible_user(caller, &user_id).await?;
        let is_self = caller.user_id() == Some(user.id.as_str());
        if !is_self && !caller.administers(&user.tenant_id) {
            return Err(IdentityError::PermissionDenied(
                "users change only their own password",
            ));
        }
        if user.role == Role::Superadmin && !is_self && !caller.is_superadmin() {
            return Err(IdentityError::PermissionDenied(
                "only a superadmin resets a superadmin's password",
            ));
        }
        if user.login_method == LoginMethod::Ldap {
            return Err(IdentityError::FailedPrecondition(
                "this user signs in through LDAP; change the password in the directory".to_owned(),
            ));
        }
        if is_self && !verify_password(current_password, &user.password_hash).await? {
            return Err(IdentityError::invalid("current_password", "does not match"));
        }
        validate::password("new_password", new_password, &user.username)?;
        let password_hash = hash_password(new_password).await?;
        self.store
            .set_password_hash(&user.id, &password_hash)
            .await
            .or_not_found("user")
    }

    // === Login ===

    pub async fn login(
        &self,
        tenant_slug: &str,
        username: &str,
        password: &str,
        ldap_requested: bool,
    ) -> Result<Session, IdentityError> {
        let throttle_key = format!("{}/{}", tenant_slug.to_lowercase(), username.to_lowercase());
        if let Err(retry_after) = self.throttle.check(&throttle_key) {
            return Err(IdentityError::Throttled {
                retry_after_secs: retry_after.as_secs().max(1),
            });
        }
        let outcome = if ldap_requested {
            self.login_ldap(username, password).await
        } else {
            self.login_password(tenant_slug, username, password).await
        };
        match outcome {
            Ok(user) => {
                self.throttle.record_success(&throttle_key);
                self.store.record_login(&user.id).await?;
                let token = self.tokens.issue(&user)?;
                Ok(Session { user, token })
            }
            Err(IdentityError::InvalidCredentials) => {
                self.throttle.record_failure(&throttle_key);
                Err(IdentityError::InvalidCredentials)
            }
            Err(other) => Err(other),
        }
    }

    async fn login_password(
        &self,
        tenant_slug: &str,
        username: &str,
        password: &str,
    ) -> Result<User, IdentityError> {
        let user = self.find_login_user(tenant_slug, username).await?;
        let hash = user
            .as_ref()
            .filter(|user| user.login_method == LoginMethod::Password)
            .map_or(DUMMY_HASH, |user| user.password_hash.as_str());
        let verified = verify_password(password, hash).await?;
        match user {
            Some(user)
                if verified && !user.disabled && user.login_method == LoginMethod::Password =>
            {
                Ok(user)
            }
            _ => Err(IdentityError::InvalidCredentials),
        }
    }

    async fn find_login_user(
        &self,
        tenant_slug: &str,
        username: &str,
    ) -> Result<Option<User>, IdentityError> {
        if tenant_slug.is_empty() {
            let mut users = self.store.users_named(username).await?;
            // A name in several tenants is ambiguous without a tenant.
            return Ok(if users.len() == 1 { users.pop() } else { None });
        }
        let tenant = match self.store.tenant_by_slug(tenant_slug).await {
            Ok(tenant) => tenant,
            Err(StorageError::NotFound) => return Ok(None),
            Err(error) => return Err(error.into()),
        };
        match self.store.user_by_name(&tenant.id, username).await {
            Ok(user) => Ok(Some(user)),
            Err(StorageError::NotFound) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    async fn login_ldap(&self, username: &str, password: &str) -> Result<User, IdentityError> {
        let ldap_config = &self.config.ldap;
        if !ldap_config.enabled() {
            return Err(IdentityError::FailedPrecondition(
                "LDAP login is not configured".to_owned(),
            ));
        }
        if validate::username(username).is_err() {
            return Err(IdentityError::InvalidCredentials);
        }
        match ldap::authenticate(ldap_config, username, password).await {
            Ok(true) => {}
            Ok(false) => return Err(IdentityError::InvalidCredentials),
            Err(error) => return Err(IdentityError::DirectoryUnavailable(error.to_string())),
        }
        let tenant = match self.store.tenant_by_slug(&ldap_config.tenant_slug).await {
            Ok(tenant) => tenant,
            Err(StorageError::NotFound) => {
                let slug = &ldap_config.tenant_slug;
                match self.store.create_tenant(slug, slug).await {
                    Ok(tenant) => tenant,
                    // Another first login created it a moment ago.
                    Err(error) if error.is_already_exists() => {
                        self.store.tenant_by_slug(slug).await?
                    }
                    Err(error) => return Err(error.into()),
                }
            }
            Err(error) => return Err(error.into()),
        };
        match self.store.user_by_name(&tenant.id, username).await {
            Ok(user) if user.login_method == LoginMethod::Ldap && !user.disabled => Ok(user),
            // A local account of the same name, or a disabled one: refuse.
            Ok(_) => Err(IdentityError::InvalidCredentials),
            Err(StorageError::NotFound) => {
                let created = self
                    .store
                    .create_user(NewUser {
                        tenant_id: &tenant.id,
                        username,
                        email: "",
                        password_hash: "",
                        role: Role::User,
                        login_method: LoginMethod::Ldap,
                    })
                    .await;
                match created {
                    Ok(user) => {
                        tracing::info!(username, tenant = %tenant.slug, "provisioned ldap user on first login");
                        Ok(user)
                    }
                    // Two first logins at once: the other created it.
                    Err(error) if error.is_already_exists() => {
                        Ok(self.store.user_by_name(&tenant.id, username).await?)
                    }
                    Err(error) => Err(error.into()),
                }
            }
            Err(error) => Err(error.into()),
        }
    }

    pub fn public_keys(&self) -> (&[PublicKeyInfo], &str) {
        (self.tokens.public_keys(), self.tokens.issuer())
    }

    // === Groups ===

    pub async fn create_group(
        &self,
        caller: &Caller,
        tenant_id: &str,
        name: &str,
        description: &str,
        (priority, completion_cache): (i32, bool),
    ) -> Result<Group, IdentityError> {
        let tenant_id = self.target_tenant(caller, tenant_id)?;
        self.administered_tenant(caller, &tenant_id)?;
        validate::name("group.name", name)?;
        self.store
            .create_group(NewGroup {
                tenant_id: &tenant_id,
                name,
                description,
                priority,
                completion_cache,
            })
            .await
            .or_not_found("group")
    }

    pub async fn get_group(&self, caller: &Caller, id: &str) -> Result<Group, IdentityError> {
        let group = self.visible_group(caller, id).await?;
        if !caller.administers(&group.tenant_id) {
            let member = match caller.user_id() {
                Some(user_id) => self.store.is_member(&group.id, user_id).await?,
                None => false,
            };
            if !member {
                return Err(IdentityError::PermissionDenied(
                    "users see only their own groups",
                ));
            }
        }
        Ok(group)
    }

    pub async fn list_groups(
        &self,
        caller: &Caller,
        page: &Page,
        tenant_id: &str,
        user_id: &str,
    ) -> Result<Vec<Group>, IdentityError> {
        let tenant = self.listing_tenant(caller, tenant_id)?;
        let user_filter = listing_user(caller, user_id);
        Ok(self
            .store
            .list_groups(page, tenant.as_deref(), user_filter.as_deref())
            .await?)
    }

    pub async fn update_group(
        &self,
        caller: &Caller,
        id: &str,
        changes: GroupUpdate,
        mask: &Mask,
    ) -> Result<Group, IdentityError> {
        check_mask(
            mask,
            &["name", "priority", "description", "completion_cache"],
        )?;
        let existing = self.visible_group(caller, id).await?;
        self.administered_tenant(caller, &existing.tenant_id)?;
        let wants = |field: &str| mask.iter().any(|path| path == field);
        let update = GroupUpdate {
            name: wants("name").then(|| changes.name.unwrap_or_default()),
            description: wants("description").then(|| changes.description.unwrap_or_default()),
            priority: if wants("priority") {
                changes.priority
            } else {
                None
            },
            completion_cache: changes
                .completion_cache
                .filter(|_| wants("completion_cache")),
        };
        if let Some(name) = &update.name {
            validate::name("group.name", name)?;
        }
        let group = self
            .store
            .update_group(id, &update)
            .await
            .or_not_found("group")?;
        self.notify_watchers();
        Ok(group)
    }

    pub async fn delete_group(&self, caller: &Caller, id: &str) -> Result<(), IdentityError> {
        let existing = self.visible_group(caller, id).await?;
        self.administered_tenant(caller, &existing.tenant_id)?;
        self.store.delete_group(id).await.or_not_found("group")?;
        self.notify_watchers();
        Ok(())
    }

    pub async fn add_group_member(
        &self,
        caller: &Caller,
        group_id: &str,
        user_id: &str,
    ) -> Result<Member, IdentityError> {
        let (group, user) = self.membership_parties(caller, group_id, user_id).await?;
        let member = self
            .store
            .add_member(&group, &user.id)
            .await
            .or_not_found("member")?;
        self.notify_watchers();
        Ok(member)
    }

    pub async fn remove_group_member(
        &self,
        caller: &Caller,
        group_id: &str,
        user_id: &str,
    ) -> Result<(), IdentityError> {
        let (group, user) = self.membership_parties(caller, group_id, user_id).await?;
        self.store.remove_member(&group, &user.id).await?;
        self.notify_watchers();
        Ok(())
    }

    pub async fn list_group_members(
        &self,
        caller: &Caller,
        group_id: &str,
        page: &Page,
    ) -> Result<Vec<Member>, IdentityError> {
        let group = self.visible_group(caller, group_id).await?;
        self.administered_tenant(caller, &group.tenant_id)?;
        Ok(self.store.list_members(&group.id, page).await?)
    }

    async fn membership_parties(
        &self,
        caller: &Caller,
        group_id: &str,
        user_id: &str,
    ) -> Result<(Group, User), IdentityError> {
        let group = self.visible_group(caller, group_id).await?;
        self.administered_tenant(caller, &group.tenant_id)?;
        let user = self.store.get_user(user_id).await.or_not_found("user")?;
        if user.tenant_id != group.tenant_id {
            return Err(IdentityError::NotFound("user"));
        }
        Ok((group, user))
    }

    // === API keys ===

    /// Issues a key; the plaintext is in the result and nowhere else.
    pub async fn create_api_key(
        &self,
        caller: &Caller,
        request: KeyRequest,
    ) -> Result<(ApiKey, String), IdentityError> {
        let user_id = if request.user_id.is_empty() {
            caller
                .user_id()
                .ok_or_else(|| {
                    IdentityError::invalid("api_key.user_id", "is required with the admin key")
                })?
                .to_owned()
        } else {
            request.user_id.clone()
        };
        let owner = self.visible_user(caller, &user_id).await?;
        if !request.tenant_id.is_empty() && request.tenant_id != owner.tenant_id {
            return Err(IdentityError::invalid(
                "api_key.tenant_id",
                "is not the owner's tenant",
            ));
        }
        let is_admin = caller.administers(&owner.tenant_id);
        if caller.user_id() != Some(owner.id.as_str()) && !is_admin {
            return Err(IdentityError::PermissionDenied(
                "users create keys only for themselves",
            ));
        }
        if !is_admin && (!request.plan_id.is_empty() || request.spend_limit_micros.is_some()) {
            return Err(IdentityError::PermissionDenied(
                "only an admin sets a key's plan or spend limit",
            ));
        }
        let name = if request.name.is_empty() {
            "default"
        } else {
            request.name.as_str()
        };
        validate::name("api_key.name", name)?;
        self.check_key_group(caller, &owner, request.group_id.as_deref(), is_admin)
            .await?;
        check_spend_limit(request.spend_limit_micros)?;
        check_expiry(request.expire_at)?;
        check_models(&request.allowed_models)?;
        check_ips(&request.allowed_ips)?;
        let generated = api_key::generate();
        let key = self
            .store
            .create_key(NewKey {
                tenant_id: owner.tenant_id.clone(),
                user_id: owner.id.clone(),
                name: name.to_owned(),
                prefix: generated.prefix,
                key_sha256: generated.sha256_hex,
                group_id: request.group_id,
                spend_limit_micros: request.spend_limit_micros,
                plan_id: request.plan_id,
                expire_at: request.expire_at,
                allowed_models: request.allowed_models,
                allowed_ips: request.allowed_ips,
                completion_cache: request.completion_cache,
            })
            .await
            .or_not_found("api key")?;
        self.notify_watchers();
        Ok((key, generated.plaintext))
    }

    pub async fn get_api_key(&self, caller: &Caller, id: &str) -> Result<ApiKey, IdentityError> {
        self.owned_key(caller, id).await
    }

    pub async fn list_api_keys(
        &self,
        caller: &Caller,
        page: &Page,
        tenant_id: &str,
        user_id: &str,
        group_id: &str,
    ) -> Result<Vec<ApiKey>, IdentityError> {
        let tenant = self.listing_tenant(caller, tenant_id)?;
        let user_filter = listing_user(caller, user_id);
        Ok(self
            .store
            .list_keys(
                page,
                tenant.as_deref(),
                user_filter.as_deref(),
                non_empty(group_id),
            )
            .await?)
    }

    pub async fn update_api_key(
        &self,
        caller: &Caller,
        id: &str,
        changes: KeyRequest,
        mask: &Mask,
    ) -> Result<ApiKey, IdentityError> {
        check_mask(
            mask,
            &[
                "name",
                "group_id",
                "spend_limit_micros",
                "plan_id",
                "expire_time",
                "allowed_models",
                "allowed_ips",
                "completion_cache",
            ],
        )?;
        let existing = self.owned_key(caller, id).await?;
        let is_admin = caller.administers(&existing.tenant_id);
        let wants = |field: &str| mask.iter().any(|path| path == field);
        if !is_admin && (wants("plan_id") || wants("spend_limit_micros")) {
            return Err(IdentityError::PermissionDenied(
                "only an admin changes a key's plan or spend limit",
            ));
        }
        let mut update = KeyUpdate::default();
        if wants("name") {
            validate::name("api_key.name", &changes.name)?;
            update.name = Some(changes.name);
        }
        if wants("group_id") {
            let owner = self
                .store
                .get_user(&existing.user_id)
                .await
                .or_not_found("user")?;
            self.check_key_group(caller, &owner, changes.group_id.as_deref(), is_admin)
                .await?;
            update.group_id = Some(changes.group_id);
        }
        if wants("spend_limit_micros") {
            check_spend_limit(changes.spend_limit_micros)?;
            update.spend_limit_micros = Some(changes.spend_limit_micros);
        }
        if wants("plan_id") {
            update.plan_id = Some(changes.plan_id);
        }
        if wants("expire_time") {
            check_expiry(changes.expire_at)?;
            update.expire_at = Some(changes.expire_at);
        }
        if wants("allowed_models") {
            check_models(&changes.allowed_models)?;
            update.allowed_models = Some(changes.allowed_models);
        }
        if wants("allowed_ips") {
            check_ips(&changes.allowed_ips)?;
            update.allowed_ips = Some(changes.allowed_ips);
        }
        if wants("completion_cache") {
            update.completion_cache = Some(changes.completion_cache);
        }
        let key = self
            .store
            .update_key(&existing, &update)
            .await
            .or_not_found("api key")?;
        self.notify_watchers();
        Ok(key)
    }

    pub async fn delete_api_key(&self, caller: &Caller, id: &str) -> Result<(), IdentityError> {
        let existing = self.owned_key(caller, id).await?;
        self.store.delete_key(&existing).await?;
        self.notify_watchers();
        Ok(())
    }

    pub async fn set_api_key_frozen(
        &self,
        caller: &Caller,
        id: &str,
        frozen: bool,
    ) -> Result<ApiKey, IdentityError> {
        let existing = self.owned_key(caller, id).await?;
        if existing.frozen == frozen {
            return Ok(existing);
        }
        let key = self.store.set_key_frozen(&existing, frozen).await?;
        self.notify_watchers();
        Ok(key)
    }

    async fn owned_key(&self, caller: &Caller, id: &str) -> Result<ApiKey, IdentityError> {
        let key = self.store.get_key(id).await.or_not_found("api key")?;
        if !caller.can_see_tenant(&key.tenant_id) {
            return Err(IdentityError::NotFound("api key"));
        }
        if caller.user_id() != Some(key.user_id.as_str()) && !caller.administers(&key.tenant_id) {
            // Another user's key in the same tenant: as if it did not exist.
            return Err(IdentityError::NotFound("api key"));
        }
        Ok(key)
    }

    async fn check_key_group(
        &self,
        caller: &Caller,
        owner: &User,
        group_id: Option<&str>,
        is_admin: bool,
    ) -> Result<(), IdentityError> {
        let Some(group_id) = group_id else {
            return Ok(());
        };
        let group = match self.store.get_group(group_id).await {
            Ok(group) if group.tenant_id == owner.tenant_id => group,
            Ok(_) | Err(StorageError::NotFound) => {
                return Err(IdentityError::invalid(
                    "api_key.group_id",
                    "no such group in the key's tenant",
                ));
            }
            Err(error) => return Err(error.into()),
        };
        if !is_admin && !self.store.is_member(&group.id, &owner.id).await? {
            let _ = caller;
            return Err(IdentityError::invalid(
                "api_key.group_id",
                "the key's owner is not in this group",
            ));
        }
        Ok(())
    }

    // === Clients ===

    pub async fn create_client(
        &self,
        caller: &Caller,
        tenant_id: &str,
        name: &str,
        client_id: &str,
        plan_id: &str,
    ) -> Result<Client, IdentityError> {
        let tenant_id = self.target_tenant(caller, tenant_id)?;
        self.administered_tenant(caller, &tenant_id)?;
        validate::name("client.name", name)?;
        check_client_id(client_id)?;
        self.store
            .create_client(NewClient {
                tenant_id: &tenant_id,
                name,
                client_id,
                plan_id,
            })
            .await
            .or_not_found("client")
            .inspect(|_| self.notify_watchers())
    }

    pub async fn get_client(&self, caller: &Caller, id: &str) -> Result<Client, IdentityError> {
        let client = self.store.get_client(id).await.or_not_found("client")?;
        if !caller.administers(&client.tenant_id) {
            return Err(IdentityError::NotFound("client"));
        }
        Ok(client)
    }

    pub async fn list_clients(
        &self,
        caller: &Caller,
        page: &Page,
        tenant_id: &str,
    ) -> Result<Vec<Client>, IdentityError> {
        let tenant = self.listing_tenant(caller, tenant_id)?;
        Ok(self.store.list_clients(page, tenant.as_deref()).await?)
    }

    pub async fn update_client(
        &self,
        caller: &Caller,
        id: &str,
        changes: ClientUpdate,
        mask: &Mask,
    ) -> Result<Client, IdentityError> {
        check_mask(mask, &["name", "client_id", "plan_id"])?;
        let existing = self.get_client(caller, id).await?;
        let wants = |field: &str| mask.iter().any(|path| path == field);
        let update = ClientUpdate {
            name: wants("name").then(|| changes.name.unwrap_or_default()),
            client_id: wants("client_id").then(|| changes.client_id.unwrap_or_default()),
            plan_id: wants("plan_id").then(|| changes.plan_id.unwrap_or_default()),
        };
        if let Some(name) = &update.name {
            validate::name("client.name", name)?;
        }
        if let Some(client_id) = &update.client_id {
            check_client_id(client_id)?;
        }
        let client = self
            .store
            .update_client(&existing, &update)
            .await
            .or_not_found("client")?;
        self.notify_watchers();
        Ok(client)
    }

    pub async fn delete_client(&self, caller: &Caller, id: &str) -> Result<(), IdentityError> {
        let existing = self.get_client(caller, id).await?;
        self.store.delete_client(&existing).await?;
        self.notify_watchers();
        Ok(())
    }

    // === Key authentication (the edge) ===

    pub async fn authenticate_key(
        &self,
        key_sha256: &str,
        client_id: Option<&str>,
        remote_ip: Option<&str>,
    ) -> Result<Authentication, IdentityError> {
        if !api_key::is_sha256_hex(key_sha256) {
            return Err(IdentityError::invalid(
                "key_sha256",
                "must be 64 lowercase hex digits",
            ));
        }
        let remote_ip = match remote_ip.filter(|ip| !ip.is_empty()) {
            Some(ip) => Some(
                ip.parse::<IpAddr>()
                    .map_err(|_| IdentityError::invalid("remote_ip", "is not an IP address"))?,
            ),
            None => None,
        };
        // Read before the lookup: a change after this version may not be
        // reflected, and the edge knows to apply it on top.
        let version = self.store.current_version().await?;
        let Some(record) = self.store.key_by_hash(key_sha256).await? else {
            return Ok(Authentication {
                status: KeyStatus::Unknown,
                principal: None,
                version,
            });
        };
        let groups = match &record.key.group_id {
            Some(group_id) => match self.store.get_group(group_id).await {
                Ok(group) => vec![group],
                Err(StorageError::NotFound) => Vec::new(),
                Err(error) => return Err(error.into()),
            },
            None => self.store.groups_of_user(&record.key.user_id).await?,
        };
        let client = match client_id.filter(|id| !id.is_empty()) {
            Some(client_id) => {
                self.store
                    .client_by_client_id(&record.key.tenant_id, client_id)
                    .await?
            }
            None => None,
        };
        let now = gateway_storage::now_micros();
        let status = if record.user_disabled {
            KeyStatus::UserDisabled
        } else if record.key.frozen {
            KeyStatus::Frozen
        } else if record
            .key
            .expire_at
            .is_some_and(|expire_at| expire_at <= now)
        {
            KeyStatus::Expired
        } else if remote_ip.is_some_and(|ip| !ip_allowed(&record.key.allowed_ips, ip)) {
            KeyStatus::IpNotAllowed
        } else if client_id.is_some_and(|id| !id.is_empty()) && client.is_none() {
            KeyStatus::ClientUnknown
        } else {
            KeyStatus::Active
        };
        if status == KeyStatus::Active {
            self.lock_last_used().insert(record.key.id.clone(), now);
        }
        let role = Role::parse(&record.role).unwrap_or(Role::User);
        Ok(Authentication {
            status,
            principal: Some(Principal {
                key: record.key,
                tenant_slug: record.tenant_slug,
                username: record.username,
                role,
                groups,
                client,
            }),
            version,
        })
    }

    /// Writes the last-used times gathered since the previous flush.
    pub async fn flush_last_used(&self) -> Result<(), IdentityError> {
        let batch: Vec<(String, i64)> = self.lock_last_used().drain().collect();
        if let Err(error) = self.store.record_keys_used(&batch).await {
            // Put them back; the next flush retries.
            let mut pending = self.lock_last_used();
            for (key_id, at) in batch {
                pending.entry(key_id).or_insert(at);
            }
            return Err(error.into());
        }
        Ok(())
    }

    fn lock_last_used(&self) -> std::sync::MutexGuard<'_, HashMap<String, i64>> {
        self.last_used
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    // === Scoping helpers ===

    /// The tenant a create acts on: the request's, else the caller's own.
    fn target_tenant(&self, caller: &Caller, tenant_id: &str) -> Result<String, IdentityError> {
        match (tenant_id.is_empty(), caller.tenant_id()) {
            (false, _) => Ok(tenant_id.to_owned()),
            (true, Some(own)) if !caller.is_superadmin() || caller.user_id().is_some() => {
                Ok(own.to_owned())
            }
            _ => Err(IdentityError::invalid(
                "tenant_id",
                "is required with the admin key",
            )),
        }
    }

    /// Refuses unless the caller administers `tenant_id`; another tenant's
    /// resources are NOT_FOUND, not PERMISSION_DENIED.
    fn administered_tenant(&self, caller: &Caller, tenant_id: &str) -> Result<(), IdentityError> {
        if !caller.can_see_tenant(tenant_id) {
            return Err(IdentityError::NotFound("tenant"));
        }
        if !caller.administers(tenant_id) {
            return Err(IdentityError::PermissionDenied(
                "this needs role ADMIN in the tenant",
            ));
        }
        Ok(())
    }

    /// The tenant a list is limited to (`None`: every tenant, superadmin).
    fn listing_tenant(
        &self,
        caller: &Caller,
        requested: &str,
    ) -> Result<Option<String>, IdentityError> {
        if caller.is_superadmin() {
            return Ok(non_empty(requested).map(str::to_owned));
        }
        let own = caller.tenant_id().unwrap_or_default();
        if !requested.is_empty() && requested != own {
            return Err(IdentityError::NotFound("tenant"));
        }
        Ok(Some(own.to_owned()))
    }

    async fn visible_user(&self, caller: &Caller, id: &str) -> Result<User, IdentityError> {
        let user = self.store.get_user(id).await.or_not_found("user")?;
        if !caller.can_see_tenant(&user.tenant_id) {
            return Err(IdentityError::NotFound("user"));
        }
        Ok(user)
    }

    async fn visible_group(&self, caller: &Caller, id: &str) -> Result<Group, IdentityError> {
        let group = self.store.get_group(id).await.or_not_found("group")?;
        if !caller.can_see_tenant(&group.tenant_id) {
            return Err(IdentityError::NotFound("group"));
        }
        Ok(group)
    }
}

/// The user a list is limited to: a USER sees only their own; others
/// filter by the requested user, if any.
fn listing_user(caller: &Caller, requested: &str) -> Option<String> {
    if caller.role() == Some(Role::User) {
        caller.user_id().map(str::to_owned)
    } else {
        non_empty(requested).map(str::to_owned)
    }
}

fn non_empty(value: &str) -> Option<&str> {
    (!value.is_empty()).then_some(value)
}

fn check_mask(mask: &Mask, allowed: &[&str]) -> Result<(), IdentityError> {
    if mask.is_empty() {
        return Err(IdentityError::invalid(
            "update_mask",
            "must name at least one field",
        ));
    }
    if let Some(unknown) = mask.iter().find(|path| !allowed.contains(&path.as_str())) {
        return Err(IdentityError::invalid(
            "update_mask",
            format!(
                "{unknown:?} cannot be updated (allowed: {})",
                allowed.join(", ")
            ),
        ));
    }
    Ok(())
}

fn check_spend_limit(limit: Option<i64>) -> Result<(), IdentityError> {
    match limit {
        Some(limit) if limit < 0 => Err(IdentityError::invalid(
            "api_key.spend_limit_micros",
            "must not be negative",
        )),
        _ => Ok(()),
    }
}

fn check_expiry(expire_at: Option<i64>) -> Result<(), IdentityError> {
    match expire_at {
        Some(at) if at <= gateway_storage::now_micros() => Err(IdentityError::invalid(
            "api_key.expire_time",
            "must be in the future",
        )),
        _ => Ok(()),
    }
}

fn check_models(models: &[String]) -> Result<(), IdentityError> {
    if models.len() > 500
        || models
            .iter()
            .any(|model| model.trim().is_empty() || model.len() > 200)
    {
        return Err(IdentityError::invalid(
            "api_key.allowed_models",
            "must be at most 500 non-empty names of at most 200 characters",
        ));
    }
    Ok(())
}

fn check_ips(ips: &[String]) -> Result<(), IdentityError> {
    if let Some(bad) = ips.iter().find(|ip| parse_network(ip).is_none()) {
        return Err(IdentityError::invalid(
            "api_key.allowed_ips",
            format!("{bad:?} is not an IP address or CIDR"),
        ));
    }
    Ok(())
}

fn check_client_id(client_id: &str) -> Result<(), IdentityError> {
    let valid = (1..=128).contains(&client_id.len())
        && client_id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b':' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(IdentityError::invalid(
            "client.client_id",
            "must be 1 to 128 characters of letters, digits, '.', '_', ':' and '-'",
        ))
    }
}

fn parse_network(value: &str) -> Option<ipnet::IpNet> {
    value
        .parse::<ipnet::IpNet>()
        .ok()
        .or_else(|| value.parse::<IpAddr>().ok().map(ipnet::IpNet::from))
}

/// True if `ip` is in one of `allowed` (empty allows every address).
pub fn ip_allowed(allowed: &[String], ip: IpAddr) -> bool {
    allowed.is_empty()
        || allowed
            .iter()
            .filter_map(|network| parse_network(network))
            .any(|network| network.contains(&ip))
}

/// argon2id is deliberately slow: run it off the async workers.
async fn hash_password(password: &str) -> Result<String, IdentityError> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || password::hash(&password))
        .await
        .map_err(|error| IdentityError::Internal(format!("password hashing task failed: {error}")))?
        .map_err(|error| IdentityError::Internal(error.to_string()))
}

async fn verify_password(password: &str, hash: &str) -> Result<bool, IdentityError> {
    let (password, hash) = (password.to_owned(), hash.to_owned());
    tokio::task::spawn_blocking(move || password::verify(&password, &hash))
        .await
        .map_err(|error| IdentityError::Internal(format!("password check task failed: {error}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_allow_lists_take_addresses_and_networks() {
        let allowed = vec![
            "10.0.0.0/8".to_owned(),
            "192.168.1.7".to_owned(),
            "2001:db8::/32".to_owned(),
        ];
        assert!(ip_allowed(&allowed, "10.1.2.3".parse().unwrap()));
        assert!(ip_allowed(&allowed, "192.168.1.7".parse().unwrap()));
        assert!(!ip_allowed(&allowed, "192.168.1.8".parse().unwrap()));
        assert!(ip_allowed(&allowed, "2001:db8::1".parse().unwrap()));
        assert!(ip_allowed(&[], "8.8.8.8".parse().unwrap()));
        assert!(check_ips(&["300.1.1.1".to_owned()]).is_err());
    }

    #[test]
    fn masks_must_name_known_fields() {
        assert!(check_mask(&vec!["name".to_owned()], &["name"]).is_ok());
        assert!(check_mask(&vec![], &["name"]).is_err());
        let error = check_mask(&vec!["id".to_owned()], &["name"])
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("update_mask:"), "{error}");
    }

    #[test]
    fn dummy_hash_is_a_valid_argon2id_string() {
        assert!(argon2::password_hash::PasswordHash::new(DUMMY_HASH).is_ok());
        assert!(!password::verify("anything", DUMMY_HASH));
    }
}
