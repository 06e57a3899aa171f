//! The catalog domain: who may read and write which resources, validation,
//! sealing secrets, quoting, and the snapshot the edge caches.

use std::sync::Arc;

use gateway_auth::{Caller, Role};
use gateway_egress::EgressPolicy;
use gateway_pricing::{PriceTable, Usage};
use gateway_proto::catalog::v1 as pb;
use gateway_secrets::SecretBox;
use gateway_storage::now_micros;
use gateway_storage::page::Page;
use tokio::sync::Notify;

use crate::api_auth;
use crate::error::{CatalogError, StoreResultExt as _};
use crate::groups::{Credentials, IdentityGroups};
use crate::store::{CatalogStore, Entry, Kind};
use crate::validate;

/// A catalog resource kept as an entry.
pub trait Resource: prost::Message + Default + Clone {
    const KIND: Kind;
    const NAME: &'static str;
    fn id(&self) -> &str;
    fn tenant_id(&self) -> &str;
    fn unique_key(&self) -> String;
    /// Sets the columns the store owns: id, tenant and times.
    fn set_stored(&mut self, id: String, tenant_id: String, created_at: i64, updated_at: i64);
}

fn timestamp(micros: i64) -> Option<prost_types::Timestamp> {
    Some(gateway_proto::timestamp_from_micros(micros))
}

macro_rules! resource {
    ($type:ty, $kind:expr, $name:literal, |$this:ident| $key:expr) => {
        impl Resource for $type {
            const KIND: Kind = $kind;
            const NAME: &'static str = $name;
            fn id(&self) -> &str {
                &self.id
            }
            fn tenant_id(&self) -> &str {
                &self.tenant_id
            }
            fn unique_key(&self) -> String {
                let $this = self;
                $key
            }
            fn set_stored(
                &mut self,
                id: String,
                tenant_id: String,
                created_at: i64,
                updated_at: i64,
            ) {
                self.id = id;
                self.tenant_id = tenant_id;
                self.create_time = timestamp(created_at);
                self.update_time = timestamp(updated_at);
            }
        }
    };
}

resource!(pb::Api, Kind::Api, "api", |api| api.slug.clone());
resource!(pb::Channel, Kind::Channel, "channel", |channel| channel
    .name
    .clone());
resource!(pb::ModelPrice, Kind::ModelPrice, "model price", |price| {
    price.model.clone()
});
resource!(
    pb::GroupMultiplier,
    Kind::GroupMultiplier,
    "group multiplier",
    |multiplier| multiplier.group_id.clone()
);
resource!(
    pb::GroupPrice,
    Kind::GroupPrice,
    "group price",
    |price| format!("{}/{}", price.group_id, price.model)
);

fn decode<R: Resource>(entry: &Entry) -> Result<R, CatalogError> {
    let mut resource = R::decode(entry.spec.as_slice()).map_err(|error| {
        CatalogError::Internal(format!(
            "stored {} {} does not decode: {error}",
            R::NAME,
            entry.id
        ))
    })?;
    resource.set_stored(
        entry.id.clone(),
        entry.tenant_id.clone(),
        entry.created_at,
        entry.updated_at,
    );
    Ok(resource)
}

fn encode<R: Resource>(resource: &R, secret: Option<Vec<u8>>, created_at: i64) -> Entry {
    // Ids, tenant and times live in columns; the spec holds the rest.
    let mut spec = resource.clone();
    spec.set_stored(String::new(), String::new(), 0, 0);
    Entry {
        kind: R::KIND,
        id: resource.id().to_owned(),
        tenant_id: resource.tenant_id().to_owned(),
        unique_key: resource.unique_key(),
        spec: spec.encode_to_vec(),
        secret,
        created_at,
        updated_at: now_micros(),
    }
}

fn secret_context(kind: Kind, id: &str) -> String {
    format!("catalog.{}:{id}", kind.as_str())
}

/// Masked top-level fields of `incoming` replace those of `existing`.
macro_rules! merge {
    ($existing:expr, $incoming:expr, $mask:expr, [$($field:ident),+ $(,)?]) => {{
        if $mask.is_empty() {
            return Err(CatalogError::InvalidArgument {
                field: "update_mask".to_owned(),
                message: "must name at least one field".to_owned(),
            });
        }
        for path in $mask {
            match path.as_str() {
                $(stringify!($field) => $existing.$field = $incoming.$field.clone(),)+
                other => {
                    return Err(CatalogError::InvalidArgument {
                        field: "update_mask".to_owned(),
                        message: format!(
                            "{other:?} cannot be updated (allowed: {})",
                            [$(stringify!($field)),+].join(", ")
                        ),
                    })
                }
            }
        }
    }};
}

pub struct Registry {
    store: CatalogStore,
    secrets: SecretBox,
    groups: IdentityGroups,
    egress: EgressPolicy,
    changed: Arc<Notify>,
}

impl Registry {
    pub fn new(
        store: CatalogStore,
        secrets: SecretBox,
        groups: IdentityGroups,
        egress: EgressPolicy,
    ) -> Self {
        Self {
            store,
            secrets,
            groups,
            egress,
            changed: Arc::new(Notify::new()),
        }
    }

    pub fn store(&self) -> &CatalogStore {
        &self.store
    }

    pub fn changed(&self) -> Arc<Notify> {
        Arc::clone(&self.changed)
    }

    pub fn secrets(&self) -> &SecretBox {
        &self.secrets
    }

    // === Generic plumbing ===

    /// The tenant a new resource goes to: the given one, else the caller's.
    fn target_tenant(caller: &Caller, tenant_id: &str) -> Result<String, CatalogError> {
        if !tenant_id.is_empty() {
            return Ok(tenant_id.to_owned());
        }
        caller
            .tenant_id()
            .map(str::to_owned)
            .ok_or_else(|| CatalogError::InvalidArgument {
                field: "tenant_id".to_owned(),
                message: "is required with the admin key".to_owned(),
            })
    }

    fn require_admin_of(
        caller: &Caller,
        tenant_id: &str,
        what: &'static str,
    ) -> Result<(), CatalogError> {
        if tenant_id.is_empty() {
            // Global resources (global prices) are the superadmin's.
            return if caller.is_superadmin() {
                Ok(())
            } else {
                Err(CatalogError::PermissionDenied(
                    "global prices are managed by a superadmin",
                ))
            };
        }
        if !caller.can_see_tenant(tenant_id) {
            return Err(CatalogError::NotFound(what));
        }
        if !caller.administers(tenant_id) {
            return Err(CatalogError::PermissionDenied(
                "this needs role ADMIN in the tenant",
            ));
        }
        Ok(())
    }

    /// Operator channels are a SUPERADMIN's, offered from their own
    /// tenant (the admin key, outside any tenant, names the tenant).
    fn require_sharer(caller: &Caller, tenant_id: &str) -> Result<(), CatalogError> {
        let own = caller.tenant_id().is_none_or(|own| own == tenant_id);
        if caller.is_superadmin() && own {
            Ok(())
        } else {
            Err(CatalogError::PermissionDenied(
                "only a superadmin shares channels, from their own tenant",
            ))
        }
    }

    async fn load<R: Resource>(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<(R, Entry), CatalogError> {
        let entry = self.store.get(R::KIND, id).await.or_not_found(R::NAME)?;
        if !entry.tenant_id.is_empty() && !caller.can_see_tenant(&entry.tenant_id) {
            return Err(CatalogError::NotFound(R::NAME));
        }
        Ok((decode(&entry)?, entry))
    }

    async fn list<R: Resource>(
        &self,
        caller: &Caller,
        tenant_id: &str,
        page: &Page,
    ) -> Result<Vec<R>, CatalogError> {
        let tenant = if caller.is_superadmin() {
            (!tenant_id.is_empty()).then_some(tenant_id)
        } else {
            let own = caller.tenant_id().unwrap_or_default();
            if !tenant_id.is_empty() && tenant_id != own {
                return Err(CatalogError::NotFound("tenant"));
            }
            Some(own)
        };
        let entries = self.store.list(R::KIND, tenant, page).await?;
        entries.iter().map(decode).collect()
    }

    async fn insert<R: Resource>(
        &self,
        resource: &R,
        secret: Option<Vec<u8>>,
    ) -> Result<(), CatalogError> {
        self.store
            .insert(&encode(resource, secret, now_micros()))
            .await
            .or_not_found(R::NAME)?;
        self.changed.notify_waiters();
        Ok(())
    }

    async fn replace<R: Resource>(
        &self,
        resource: &R,
        created_at: i64,
        secret: Option<Vec<u8>>,
    ) -> Result<R, CatalogError> {
        self.store
            .update(&encode(resource, secret, created_at))
            .await
            .or_not_found(R::NAME)?;
        self.changed.notify_waiters();
        let entry = self
            .store
            .get(R::KIND, resource.id())
            .await
            .or_not_found(R::NAME)?;
        decode(&entry)
    }

    async fn remove<R: Resource>(&self, caller: &Caller, id: &str) -> Result<(), CatalogError> {
        let (resource, _) = self.load::<R>(caller, id).await?;
        Self::require_admin_of(caller, resource.tenant_id(), R::NAME)?;
        self.store.delete(R::KIND, id).await.or_not_found(R::NAME)?;
        self.changed.notify_waiters();
        Ok(())
    }

    fn seal(&self, kind: Kind, id: &str, secret: &str) -> Result<Vec<u8>, CatalogError> {
        self.secrets
            .seal_str(&secret_context(kind, id), secret)
            .map_err(|error| CatalogError::Internal(error.to_string()))
    }

    // === APIs ===

    pub async fn create_api(
        &self,
        caller: &Caller,
        mut api: pb::Api,
        secret: &str,
    ) -> Result<pb::Api, CatalogError> {
        api.tenant_id = Self::target_tenant(caller, &api.tenant_id)?;
        Self::require_admin_of(caller, &api.tenant_id, "tenant")?;
        validate::api(&api, !secret.is_empty())?;
        validate::api_egress(&api, &self.egress)?;
        api.id = uuid::Uuid::now_v7().to_string();
        self.prepare_auth(&mut api, None)?;
        let sealed = self.set_api_secret(&mut api, secret)?;
        self.insert(&api, sealed).await?;
        self.get_api(caller, &api.id).await
    }

    /// The API's caller authentication, its HS256 secret sealed under the
    /// API's id (a context of its own, apart from the upstream secret).
    fn prepare_auth(
        &self,
        api: &mut pb::Api,
        previous: Option<&pb::ApiAuth>,
    ) -> Result<(), CatalogError> {
        let context = format!("{}:jwt", secret_context(Kind::Api, &api.id));
        let seal = |secret: &str| {
            self.secrets
                .seal_str(&context, secret)
                .map_err(|error| CatalogError::Internal(error.to_string()))
        };
        api_auth::prepare(api, previous, &seal)
    }

    fn set_api_secret(
        &self,
        api: &mut pb::Api,
        secret: &str,
    ) -> Result<Option<Vec<u8>>, CatalogError> {
        if secret.is_empty() {
            if let Some(auth) = api.upstream_auth.as_mut() {
                auth.secret_hint.clear();
            }
            return Ok(None);
        }
        let auth = api.upstream_auth.get_or_insert_with(Default::default);
        auth.secret_hint = gateway_secrets::hint(secret);
        Ok(Some(self.seal(Kind::Api, &api.id, secret)?))
    }

    pub async fn get_api(&self, caller: &Caller, id: &str) -> Result<pb::Api, CatalogError> {
        let (mut api, _) = self.load::<pb::Api>(caller, id).await?;
        if caller.role() == Some(Role::User) && !api.enabled {
            return Err(CatalogError::NotFound("api"));
        }
        api_auth::redact(&mut api);
        Ok(api)
    }

    pub async fn list_apis(
        &self,
        caller: &Caller,
        tenant_id: &str,
        page: &Page,
    ) -> Result<Vec<pb::Api>, CatalogError> {
        let mut apis = self.list::<pb::Api>(caller, tenant_id, page).await?;
        if caller.role() == Some(Role::User) {
            apis.retain(|api| api.enabled);
        }
        apis.iter_mut().for_each(api_auth::redact);
        Ok(apis)
    }

    pub async fn update_api(
        &self,
        caller: &Caller,
        incoming: pb::Api,
        mask: &[String],
        secret: Option<&str>,
    ) -> Result<pb::Api, CatalogError> {
        let (mut api, entry) = self.load::<pb::Api>(caller, &incoming.id).await?;
        Self::require_admin_of(caller, &api.tenant_id, "api")?;
        let previous_auth = api.auth.clone();
        let previous_hint = api
            .upstream_auth
            .as_ref()
            .map(|auth| auth.secret_hint.clone())
            .unwrap_or_default();
        merge!(
            api,
            incoming,
            mask,
            [
                name,
                slug,
                description,
                upstreams,
                upstream_auth,
                routes,
                load_balancing,
                timeouts,
                retry,
                health_check,
                circuit_breaker,
                cache,
                cors,
                transform,
                body_capture,
                max_request_body_bytes,
                enabled,
                access,
                auth,
            ]
        );
        self.prepare_auth(&mut api, previous_auth.as_ref())?;
        let sealed = match secret {
            Some(secret) => {
                validate::api(&api, !secret.is_empty())?;
                validate::api_egress(&api, &self.egress)?;
                self.set_api_secret(&mut api, secret)?
            }
            None => {
                // The stored secret stays; keep showing its hint.
                if let Some(auth) = api.upstream_auth.as_mut() {
                    auth.secret_hint = previous_hint;
                }
                validate::api(&api, entry.secret.is_some())?;
                validate::api_egress(&api, &self.egress)?;
                None
            }
        };
        let mut updated = self.replace(&api, entry.created_at, sealed).await?;
        api_auth::redact(&mut updated);
        Ok(updated)
    }

    pub async fn delete_api(&self, caller: &Caller, id: &str) -> Result<(), CatalogError> {
        self.remove::<pb::Api>(caller, id).await
    }

    // === Channels ===

    pub async fn create_channel(
        &self,
        caller: &Caller,
        mut channel: pb::Channel,
        secret: &str,
        credentials: &Credentials,
    ) -> Result<pb::Channel, CatalogError> {
        channel.tenant_id = Self::target_tenant(caller, &channel.tenant_id)?;
        Self::require_admin_of(caller, &channel.tenant_id, "tenant")?;
        validate::channel(&channel)?;
        validate::channel_egress(&channel, &self.egress)?;
        if validate::is_shared(&channel) {
            Self::require_sharer(caller, &channel.tenant_id)?;
        }
        if secret.is_empty() {
            return Err(CatalogError::InvalidArgument {
                field: "secret".to_owned(),
                message: "a channel needs the provider's API key".to_owned(),
            });
        }
        self.groups
            .check(
                "channel.allowed_group_ids",
                &channel.tenant_id,
                &channel.allowed_group_ids,
                credentials,
            )
            .await?;
        channel.id = uuid::Uuid::now_v7().to_string();
        channel.secret_hint = gateway_secrets::hint(secret);
        let sealed = self.seal(Kind::Channel, &channel.id, secret)?;
        self.insert(&channel, Some(sealed)).await?;
        self.get_channel(caller, &channel.id).await
    }

    pub async fn get_channel(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<pb::Channel, CatalogError> {
        let (channel, _) = self.load::<pb::Channel>(caller, id).await?;
        if caller.role() == Some(Role::User) && !channel.enabled {
            return Err(CatalogError::NotFound("channel"));
        }
        Ok(channel)
    }

    pub async fn list_channels(
        &self,
        caller: &Caller,
        tenant_id: &str,
        model: &str,
        page: &Page,
    ) -> Result<Vec<pb::Channel>, CatalogError> {
        let mut channels = self.list::<pb::Channel>(caller, tenant_id, page).await?;
        if caller.role() == Some(Role::User) {
            channels.retain(|channel| channel.enabled);
        }
        if !model.is_empty() {
            channels.retain(|channel| channel.models.iter().any(|served| served == model));
        }
        Ok(channels)
    }

    pub async fn update_channel(
        &self,
        caller: &Caller,
        incoming: pb::Channel,
        mask: &[String],
        secret: Option<&str>,
        credentials: &Credentials,
    ) -> Result<pb::Channel, CatalogError> {
        let (mut channel, entry) = self.load::<pb::Channel>(caller, &incoming.id).await?;
        Self::require_admin_of(caller, &channel.tenant_id, "channel")?;
        let hint = channel.secret_hint.clone();
        merge!(
            channel,
            incoming,
            mask,
            [
                name,
                provider,
                base_url,
                models,
                model_mapping,
                weight,
                priority,
                allowed_group_ids,
                enabled,
                body_capture,
                timeouts,
                completion_cache,
                shared_with_all_tenants,
                shared_tenant_ids,
            ]
        );
        channel.secret_hint = hint;
        validate::channel(&channel)?;
        validate::channel_egress(&channel, &self.egress)?;
        let sharing = ["shared_with_all_tenants", "shared_tenant_ids"];
        if mask.iter().any(|path| sharing.contains(&path.as_str())) {
            Self::require_sharer(caller, &channel.tenant_id)?;
        }
        if mask.iter().any(|path| path == "allowed_group_ids") {
            self.groups
                .check(
                    "channel.allowed_group_ids",
                    &channel.tenant_id,
                    &channel.allowed_group_ids,
                    credentials,
                )
                .await?;
        }
        let sealed = match secret {
            Some("") => {
                return Err(CatalogError::InvalidArgument {
                    field: "secret".to_owned(),
                    message: "cannot be emptied; a channel needs the provider's API key".to_owned(),
                });
            }
            Some(secret) => {
                channel.secret_hint = gateway_secrets::hint(secret);
                Some(self.seal(Kind::Channel, &channel.id, secret)?)
            }
            None => None,
        };
        self.replace(&channel, entry.created_at, sealed).await
    }

    pub async fn delete_channel(&self, caller: &Caller, id: &str) -> Result<(), CatalogError> {
        self.remove::<pb::Channel>(caller, id).await
    }

    // === Prices ===

    pub async fn create_model_price(
        &self,
        caller: &Caller,
        mut price: pb::ModelPrice,
    ) -> Result<pb::ModelPrice, CatalogError> {
        Self::require_admin_of(caller, &price.tenant_id, "tenant")?;
        validate::model("model_price.model", &price.model)?;
        validate::prices(
            "model_price",
            price.input_micros_per_million_tokens,
            price.output_micros_per_million_tokens,
            price.cached_input_micros_per_million_tokens,
        )?;
        price.id = uuid::Uuid::now_v7().to_string();
        self.insert(&price, None).await?;
        self.load::<pb::ModelPrice>(caller, &price.id)
            .await
            .map(|(price, _)| price)
    }

    pub async fn get_model_price(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<pb::ModelPrice, CatalogError> {
        self.load::<pb::ModelPrice>(caller, id)
            .await
            .map(|(price, _)| price)
    }

    /// Global prices and the caller's tenant's (a superadmin: all, or one tenant's).
    pub async fn list_model_prices(
        &self,
        caller: &Caller,
        tenant_id: &str,
        model: &str,
        page: &Page,
    ) -> Result<Vec<pb::ModelPrice>, CatalogError> {
        let mut prices = if caller.is_superadmin() && tenant_id.is_empty() {
            self.store
                .list(Kind::ModelPrice, None, page)
                .await?
                .iter()
                .map(decode)
                .collect::<Result<Vec<_>, _>>()?
        } else {
            let tenant = if caller.is_superadmin() {
                tenant_id
            } else {
                caller.tenant_id().unwrap_or_default()
            };
            if !caller.is_superadmin() && !tenant_id.is_empty() && tenant_id != tenant {
                return Err(CatalogError::NotFound("tenant"));
            }
            let mut own: Vec<pb::ModelPrice> = self
                .store
                .list(Kind::ModelPrice, Some(tenant), page)
                .await?
                .iter()
                .map(decode)
                .collect::<Result<_, _>>()?;
            let global: Vec<pb::ModelPrice> = self
                .store
                .list(Kind::ModelPrice, Some(""), page)
                .await?
                .iter()
                .map(decode)
                .collect::<Result<_, _>>()?;
            own.extend(global);
            own.sort_by(|left, right| left.id.cmp(&right.id));
            own
        };
        if !model.is_empty() {
            prices.retain(|price| price.model == model);
        }
        Ok(prices)
    }

    pub async fn update_model_price(
        &self,
        caller: &Caller,
        incoming: pb::ModelPrice,
        mask: &[String],
    ) -> Result<pb::ModelPrice, CatalogError> {
        let (mut price, entry) = self.load::<pb::ModelPrice>(caller, &incoming.id).await?;
        Self::require_admin_of(caller, &price.tenant_id, "model price")?;
        merge!(
            price,
            incoming,
            mask,
            [
                model,
                input_micros_per_million_tokens,
                output_micros_per_million_tokens,
                cached_input_micros_per_million_tokens,
            ]
        );
        validate::model("model_price.model", &price.model)?;
        validate::prices(
            "model_price",
            price.input_micros_per_million_tokens,
            price.output_micros_per_million_tokens,
            price.cached_input_micros_per_million_tokens,
        )?;
        self.replace(&price, entry.created_at, None).await
    }

    pub async fn delete_model_price(&self, caller: &Caller, id: &str) -> Result<(), CatalogError> {
        self.remove::<pb::ModelPrice>(caller, id).await
    }

    pub async fn create_group_multiplier(
        &self,
        caller: &Caller,
        mut multiplier: pb::GroupMultiplier,
        credentials: &Credentials,
    ) -> Result<pb::GroupMultiplier, CatalogError> {
        multiplier.tenant_id = Self::target_tenant(caller, &multiplier.tenant_id)?;
        Self::require_admin_of(caller, &multiplier.tenant_id, "tenant")?;
        check_multiplier(multiplier.multiplier_ppm)?;
        self.groups
            .check(
                "group_multiplier.group_id",
                &multiplier.tenant_id,
                std::slice::from_ref(&multiplier.group_id),
                credentials,
            )
            .await?;
        multiplier.id = uuid::Uuid::now_v7().to_string();
        self.insert(&multiplier, None).await?;
        self.load::<pb::GroupMultiplier>(caller, &multiplier.id)
            .await
            .map(|(value, _)| value)
    }

    pub async fn get_group_multiplier(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<pb::GroupMultiplier, CatalogError> {
        self.load::<pb::GroupMultiplier>(caller, id)
            .await
            .map(|(value, _)| value)
    }

    pub async fn list_group_multipliers(
        &self,
        caller: &Caller,
        tenant_id: &str,
        group_id: &str,
        page: &Page,
    ) -> Result<Vec<pb::GroupMultiplier>, CatalogError> {
        let mut multipliers = self
            .list::<pb::GroupMultiplier>(caller, tenant_id, page)
            .await?;
        if !group_id.is_empty() {
            multipliers.retain(|multiplier| multiplier.group_id == group_id);
        }
        Ok(multipliers)
    }

    pub async fn update_group_multiplier(
        &self,
        caller: &Caller,
        incoming: pb::GroupMultiplier,
        mask: &[String],
    ) -> Result<pb::GroupMultiplier, CatalogError> {
        let (mut multiplier, entry) = self
            .load::<pb::GroupMultiplier>(caller, &incoming.id)
            .await?;
        Self::require_admin_of(caller, &multiplier.tenant_id, "group multiplier")?;
        merge!(multiplier, incoming, mask, [multiplier_ppm]);
        check_multiplier(multiplier.multiplier_ppm)?;
        self.replace(&multiplier, entry.created_at, None).await
    }

    pub async fn delete_group_multiplier(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<(), CatalogError> {
        self.remove::<pb::GroupMultiplier>(caller, id).await
    }

    pub async fn create_group_price(
        &self,
        caller: &Caller,
        mut price: pb::GroupPrice,
        credentials: &Credentials,
    ) -> Result<pb::GroupPrice, CatalogError> {
        price.tenant_id = Self::target_tenant(caller, &price.tenant_id)?;
        Self::require_admin_of(caller, &price.tenant_id, "tenant")?;
        validate::model("group_price.model", &price.model)?;
        validate::prices(
            "group_price",
            price.input_micros_per_million_tokens,
            price.output_micros_per_million_tokens,
            price.cached_input_micros_per_million_tokens,
        )?;
        self.groups
            .check(
                "group_price.group_id",
                &price.tenant_id,
                std::slice::from_ref(&price.group_id),
                credentials,
            )
            .await?;
        price.id = uuid::Uuid::now_v7().to_string();
        self.insert(&price, None).await?;
        self.load::<pb::GroupPrice>(caller, &price.id)
            .await
            .map(|(value, _)| value)
    }

    pub async fn get_group_price(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<pb::GroupPrice, CatalogError> {
        self.load::<pb::GroupPrice>(caller, id)
            .await
            .map(|(value, _)| value)
    }

    pub async fn list_group_prices(
        &self,
        caller: &Caller,
        tenant_id: &str,
        group_id: &str,
        page: &Page,
    ) -> Result<Vec<pb::GroupPrice>, CatalogError> {
        let mut prices = self.list::<pb::GroupPrice>(caller, tenant_id, page).await?;
        if !group_id.is_empty() {
            prices.retain(|price| price.group_id == group_id);
        }
        Ok(prices)
    }

    pub async fn update_group_price(
        &self,
        caller: &Caller,
        incoming: pb::GroupPrice,
        mask: &[String],
    ) -> Result<pb::GroupPrice, CatalogError> {
        let (mut price, entry) = self.load::<pb::GroupPrice>(caller, &incoming.id).await?;
        Self::require_admin_of(caller, &price.tenant_id, "group price")?;
        merge!(
            price,
            incoming,
            mask,
            [
                input_micros_per_million_tokens,
                output_micros_per_million_tokens,
                cached_input_micros_per_million_tokens,
            ]
        );
        validate::prices(
            "group_price",
            price.input_micros_per_million_tokens,
            price.output_micros_per_million_tokens,
            price.cached_input_micros_per_million_tokens,
        )?;
        self.replace(&price, entry.created_at, None).await
    }

    pub async fn delete_group_price(&self, caller: &Caller, id: &str) -> Result<(), CatalogError> {
        self.remove::<pb::GroupPrice>(caller, id).await
    }

    // === Quote ===

    /// Prices a request with the one shared pricing function the edge uses.
    pub async fn quote(
        &self,
        caller: &Caller,
        request: &pb::QuoteRequest,
    ) -> Result<pb::QuoteResponse, CatalogError> {
        let tenant_id = Self::target_tenant(caller, &request.tenant_id)?;
        if !caller.can_see_tenant(&tenant_id) {
            return Err(CatalogError::NotFound("tenant"));
        }
        let (version, entries) = self.store.prices().await?;
        let table = price_table(&entries)?;
        let usage = Usage {
            prompt_tokens: request.prompt_tokens,
            completion_tokens: request.completion_tokens,
            cached_tokens: request.cached_tokens,
        };
        let group = (!request.group_id.is_empty()).then_some(request.group_id.as_str());
        let quote = table
            .quote(&tenant_id, group, &request.model, &usage)
            .map_err(|error| match error {
                gateway_pricing::PricingError::Unpriced { .. } => {
                    CatalogError::NotFound("model price")
                }
                other => CatalogError::InvalidArgument {
                    field: "usage".to_owned(),
                    message: other.to_string(),
                },
            })?;
        Ok(pb::QuoteResponse {
            cost_micros: quote.cost_micros,
            price_source: match quote.source {
                gateway_pricing::PriceSource::GroupOverride => pb::PriceSource::GroupOverride,
                gateway_pricing::PriceSource::Tenant => pb::PriceSource::Tenant,
                gateway_pricing::PriceSource::Global => pb::PriceSource::Global,
            }
            .into(),
            price_id: quote.price_id.to_owned(),
            input_micros_per_million_tokens: quote.input_micros_per_million,
            output_micros_per_million_tokens: quote.output_micros_per_million,
            cached_input_micros_per_million_tokens: quote.cached_input_micros_per_million,
            multiplier_ppm: quote.multiplier_ppm,
            version,
        })
    }

    // === Snapshot ===

    /// Everything the edge needs, secrets decrypted, at one version.
    pub async fn snapshot(&self) -> Result<pb::Snapshot, CatalogError> {
        let (version, entries) = self.store.everything().await?;
        let mut snapshot = pb::Snapshot {
            version,
            ..Default::default()
        };
        for entry in &entries {
            self.add_to_snapshot(&mut snapshot, entry)?;
        }
        Ok(snapshot)
    }

    fn add_to_snapshot(
        &self,
        snapshot: &mut pb::Snapshot,
        entry: &Entry,
    ) -> Result<(), CatalogError> {
        match entry.kind {
            Kind::Api => snapshot.apis.push(self.snapshot_api(entry)?),
            Kind::Channel => snapshot.channels.push(self.snapshot_channel(entry)?),
            Kind::ModelPrice => snapshot.model_prices.push(decode(entry)?),
            Kind::GroupMultiplier => snapshot.group_multipliers.push(decode(entry)?),
            Kind::GroupPrice => snapshot.group_prices.push(decode(entry)?),
        }
        Ok(())
    }

    pub fn snapshot_api(&self, entry: &Entry) -> Result<pb::SnapshotApi, CatalogError> {
        let mut api: pb::Api = decode(entry)?;
        let context = format!("{}:jwt", secret_context(Kind::Api, &entry.id));
        let open = |sealed: &[u8]| {
            self.secrets
                .open_string(&context, sealed)
                .map_err(|error| CatalogError::Internal(format!("api {}: {error}", entry.id)))
        };
        api_auth::open(&mut api, &open)?;
        Ok(pb::SnapshotApi {
            api: Some(api),
            upstream_auth_secret: self.open_secret(entry)?,
        })
    }

    pub fn snapshot_channel(&self, entry: &Entry) -> Result<pb::SnapshotChannel, CatalogError> {
        Ok(pb::SnapshotChannel {
            channel: Some(decode(entry)?),
            secret: self.open_secret(entry)?,
        })
    }

    fn open_secret(&self, entry: &Entry) -> Result<String, CatalogError> {
        match &entry.secret {
            Some(sealed) => self
                .secrets
                .open_string(&secret_context(entry.kind, &entry.id), sealed)
                .map_err(|error| {
                    CatalogError::Internal(format!("{} {}: {error}", entry.kind.as_str(), entry.id))
                }),
            None => Ok(String::new()),
        }
    }

    /// The change one logged version made, as the edge applies it.
    pub async fn change_at(
        &self,
        change: &crate::store::ChangeRow,
    ) -> Result<pb::SnapshotChange, CatalogError> {
        let mut result = pb::SnapshotChange {
            version: change.version,
            change_time: timestamp(change.created_at),
            ..Default::default()
        };
        // Replayed old versions carry the entry as it is now: applying
        // changes in order still converges on the current state.
        let entry = if change.deleted {
            None
        } else {
            match self.store.get(change.kind, &change.id).await {
                Ok(entry) => Some(entry),
                Err(gateway_storage::StorageError::NotFound) => None,
                Err(error) => return Err(error.into()),
            }
        };
        match (change.kind, entry) {
            (Kind::Api, Some(entry)) => result.upserted_apis.push(self.snapshot_api(&entry)?),
            (Kind::Api, None) => result.deleted_api_ids.push(change.id.clone()),
            (Kind::Channel, Some(entry)) => result
                .upserted_channels
                .push(self.snapshot_channel(&entry)?),
            (Kind::Channel, None) => result.deleted_channel_ids.push(change.id.clone()),
            (Kind::ModelPrice, Some(entry)) => result.upserted_model_prices.push(decode(&entry)?),
            (Kind::ModelPrice, None) => result.deleted_model_price_ids.push(change.id.clone()),
            (Kind::GroupMultiplier, Some(entry)) => {
                result.upserted_group_multipliers.push(decode(&entry)?)
            }
            (Kind::GroupMultiplier, None) => {
                result.deleted_group_multiplier_ids.push(change.id.clone())
            }
            (Kind::GroupPrice, Some(entry)) => result.upserted_group_prices.push(decode(&entry)?),
            (Kind::GroupPrice, None) => result.deleted_group_price_ids.push(change.id.clone()),
        }
        Ok(result)
    }
}

fn check_multiplier(multiplier_ppm: i64) -> Result<(), CatalogError> {
    if multiplier_ppm <= 0 || multiplier_ppm > 1_000_000_000 {
        return Err(CatalogError::InvalidArgument {
            field: "group_multiplier.multiplier_ppm".to_owned(),
            message: "must be between 1 and 1_000_000_000 (1_000_000 = 1x)".to_owned(),
        });
    }
    Ok(())
}

/// The pricing table of a set of entries, through the same function the
/// edge builds its table with.
pub fn price_table(entries: &[Entry]) -> Result<PriceTable, CatalogError> {
    let mut model_prices = Vec::new();
    let mut group_prices = Vec::new();
    let mut multipliers = Vec::new();
    for entry in entries {
        match entry.kind {
            Kind::ModelPrice => model_prices.push(decode::<pb::ModelPrice>(entry)?),
            Kind::GroupPrice => group_prices.push(decode::<pb::GroupPrice>(entry)?),
            Kind::GroupMultiplier => multipliers.push(decode::<pb::GroupMultiplier>(entry)?),
            Kind::Api | Kind::Channel => {}
        }
    }
    Ok(gateway_catalog_client::price_table(
        &model_prices,
        &group_prices,
        &multipliers,
    ))
}
