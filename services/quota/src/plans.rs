//! Plans and group rate-limit rules: validation and who may manage them.

use std::sync::Arc;

use gateway_auth::Caller;
use gateway_auth::directory::{DirectoryError, ForwardedCredentials, IdentityDirectory};
use gateway_proto::quota::v1 as pb;
use gateway_proto::timestamp_from_micros;
use gateway_storage::StorageError;
use gateway_storage::page::Page;
use prost::Message as _;

use crate::error::QuotaError;
use crate::resolve::LimitsCache;
use crate::store::QuotaStore;
use crate::store::limits::{LimitConfig, PLAN, RULE};

pub struct Plans {
    store: QuotaStore,
    directory: IdentityDirectory,
    limits: Arc<LimitsCache>,
}

fn not_found(what: &'static str) -> impl Fn(StorageError) -> QuotaError {
    move |error| match error {
        StorageError::NotFound => QuotaError::NotFound(what),
        StorageError::AlreadyExists { .. } => {
            QuotaError::FailedPrecondition(format!("a {what} with that name already exists"))
        }
        other => QuotaError::Storage(other),
    }
}

fn target_tenant(
    caller: &Caller,
    tenant_id: &str,
    field: &'static str,
) -> Result<String, QuotaError> {
    match (tenant_id.is_empty(), caller.tenant_id()) {
        (false, _) => Ok(tenant_id.to_owned()),
        (true, Some(own)) => Ok(own.to_owned()),
        (true, None) => Err(QuotaError::invalid(field, "is required with the admin key")),
    }
}

fn require_admin(caller: &Caller, tenant_id: &str) -> Result<(), QuotaError> {
    if !caller.can_see_tenant(tenant_id) {
        return Err(QuotaError::NotFound("tenant"));
    }
    if !caller.administers(tenant_id) {
        return Err(QuotaError::PermissionDenied(
            "this needs role ADMIN in the tenant",
        ));
    }
    Ok(())
}

fn check_mask(mask: &[String], allowed: &[&str]) -> Result<(), QuotaError> {
    if mask.is_empty() {
        return Err(QuotaError::invalid(
            "update_mask",
            "must name at least one field",
        ));
    }
    match mask.iter().find(|path| !allowed.contains(&path.as_str())) {
        Some(unknown) => Err(QuotaError::invalid(
            "update_mask",
            format!(
                "{unknown:?} cannot be updated (allowed: {})",
                allowed.join(", ")
            ),
        )),
        None => Ok(()),
    }
}

fn validate_plan(plan: &pb::Plan) -> Result<(), QuotaError> {
    if !(1..=200).contains(&plan.name.chars().count()) {
        return Err(QuotaError::invalid(
            "plan.name",
            "must be 1 to 200 characters",
        ));
    }
    let limits = [
        ("plan.requests_per_minute", plan.requests_per_minute),
        ("plan.requests_per_hour", plan.requests_per_hour),
        ("plan.requests_per_day", plan.requests_per_day),
        ("plan.requests_per_month", plan.requests_per_month),
        ("plan.tokens_per_minute", plan.tokens_per_minute),
        ("plan.tokens_per_day", plan.tokens_per_day),
        ("plan.spend_per_day_micros", plan.spend_per_day_micros),
        ("plan.spend_per_month_micros", plan.spend_per_month_micros),
        ("plan.max_concurrency", plan.max_concurrency),
    ];
    for (field, value) in limits {
        if value.is_some_and(|value| value <= 0) {
            return Err(QuotaError::invalid(
                field,
                "must be positive (leave it unset for no limit)",
            ));
        }
    }
    if pb::LimitAlgorithm::try_from(plan.algorithm).is_err() {
        return Err(QuotaError::invalid("plan.algorithm", "unknown algorithm"));
    }
    Ok(())
}

fn validate_rule(rule: &pb::RateLimitRule) -> Result<(), QuotaError> {
    if rule.group_id.is_empty() {
        return Err(QuotaError::invalid(
            "rate_limit_rule.group_id",
            "is required",
        ));
    }
    if !matches!(
        pb::LimitDimension::try_from(rule.dimension),
        Ok(pb::LimitDimension::Requests | pb::LimitDimension::Tokens | pb::LimitDimension::Spend)
    ) {
        return Err(QuotaError::invalid(
            "rate_limit_rule.dimension",
            "must be REQUESTS, TOKENS or SPEND",
        ));
    }
    if !matches!(
        pb::LimitWindow::try_from(rule.window),
        Ok(pb::LimitWindow::Minute
            | pb::LimitWindow::Hour
            | pb::LimitWindow::Day
            | pb::LimitWindow::Month)
    ) {
        return Err(QuotaError::invalid(
            "rate_limit_rule.window",
            "must be MINUTE, HOUR, DAY or MONTH",
        ));
    }
    if rule.limit <= 0 {
        return Err(QuotaError::invalid(
            "rate_limit_rule.limit",
            "must be positive",
        ));
    }
    if rule.burst < 0 {
        return Err(QuotaError::invalid(
            "rate_limit_rule.burst",
            "must not be negative",
        ));
    }
    if pb::LimitAlgorithm::try_from(rule.algorithm).is_err() {
        return Err(QuotaError::invalid(
            "rate_limit_rule.algorithm",
            "unknown algorithm",
        ));
    }
    if rule.name.chars().count() > 200 {
        return Err(QuotaError::invalid(
            "rate_limit_rule.name",
            "must be at most 200 characters",
        ));
    }
    Ok(())
}

pub(crate) fn decode_plan(config: &LimitConfig) -> Result<pb::Plan, QuotaError> {
    let mut plan = pb::Plan::decode(config.spec.as_slice()).map_err(|error| {
        QuotaError::Storage(StorageError::Config(format!("plan {}: {error}", config.id)))
    })?;
    plan.id.clone_from(&config.id);
    plan.tenant_id.clone_from(&config.tenant_id);
    plan.create_time = Some(timestamp_from_micros(config.created_at));
    plan.update_time = Some(timestamp_from_micros(config.updated_at));
    Ok(plan)
}

pub(crate) fn decode_rule(config: &LimitConfig) -> Result<pb::RateLimitRule, QuotaError> {
    let mut rule = pb::RateLimitRule::decode(config.spec.as_slice()).map_err(|error| {
        QuotaError::Storage(StorageError::Config(format!("rule {}: {error}", config.id)))
    })?;
    rule.id.clone_from(&config.id);
    rule.tenant_id.clone_from(&config.tenant_id);
    rule.create_time = Some(timestamp_from_micros(config.created_at));
    rule.update_time = Some(timestamp_from_micros(config.updated_at));
    Ok(rule)
}

fn plan_config(plan: &pb::Plan) -> LimitConfig {
    let spec = pb::Plan {
        id: String::new(),
        tenant_id: String::new(),
        create_time: None,
        update_time: None,
        ..plan.clone()
    };
    LimitConfig {
        kind: PLAN,
        id: plan.id.clone(),
        tenant_id: plan.tenant_id.clone(),
        unique_key: plan.name.clone(),
        group_id: String::new(),
        spec: spec.encode_to_vec(),
        created_at: 0,
        updated_at: 0,
    }
}

fn rule_config(rule: &pb::RateLimitRule) -> LimitConfig {
    let spec = pb::RateLimitRule {
        id: String::new(),
        tenant_id: String::new(),
        create_time: None,
        update_time: None,
        ..rule.clone()
    };
    LimitConfig {
        kind: RULE,
        id: rule.id.clone(),
        tenant_id: rule.tenant_id.clone(),
        // Unnamed rules are distinct by id.
        unique_key: format!(
            "{}/{}",
            rule.group_id,
            if rule.name.is_empty() {
                &rule.id
            } else {
                &rule.name
            }
        ),
        group_id: rule.group_id.clone(),
        spec: spec.encode_to_vec(),
        created_at: 0,
        updated_at: 0,
    }
}

fn listing_tenant<'a>(
    caller: &'a Caller,
    tenant_id: &'a str,
) -> Result<Option<&'a str>, QuotaError> {
    if caller.is_superadmin() {
        return Ok((!tenant_id.is_empty()).then_some(tenant_id));
    }
    let own = caller.tenant_id().unwrap_or_default();
    if !tenant_id.is_empty() && tenant_id != own {
        return Err(QuotaError::NotFound("tenant"));
    }
    Ok(Some(own))
}

impl Plans {
    pub fn new(store: QuotaStore, directory: IdentityDirectory, limits: Arc<LimitsCache>) -> Self {
        Self {
            store,
            directory,
            limits,
        }
    }

    /// Check sees a write at once on this replica (others poll).
    async fn changed(&self) {
        if let Err(error) = self.limits.refresh().await {
            tracing::warn!(%error, "could not reload plans and rules after a change");
        }
    }

    pub async fn create_plan(
        &self,
        caller: &Caller,
        mut plan: pb::Plan,
    ) -> Result<pb::Plan, QuotaError> {
        plan.tenant_id = target_tenant(caller, &plan.tenant_id, "plan.tenant_id")?;
        require_admin(caller, &plan.tenant_id)?;
        validate_plan(&plan)?;
        plan.id = uuid::Uuid::now_v7().to_string();
        self.store
            .insert_limit_config(&plan_config(&plan))
            .await
            .map_err(not_found("plan"))?;
        self.changed().await;
        self.plan(caller, &plan.id).await
    }

    pub async fn plan(&self, caller: &Caller, id: &str) -> Result<pb::Plan, QuotaError> {
        let config = self
            .store
            .limit_config(PLAN, id)
            .await
            .map_err(not_found("plan"))?;
        if !caller.can_see_tenant(&config.tenant_id) {
            return Err(QuotaError::NotFound("plan"));
        }
        decode_plan(&config)
    }

    pub async fn plans(
        &self,
        caller: &Caller,
        tenant_id: &str,
        page: &Page,
    ) -> Result<Vec<pb::Plan>, QuotaError> {
        let tenant = listing_tenant(caller, tenant_id)?;
        let configs = self.store.limit_configs(PLAN, tenant, "", page).await?;
        configs.iter().map(decode_plan).collect()
    }

    pub async fn update_plan(
        &self,
        caller: &Caller,
        incoming: pb::Plan,
        mask: &[String],
    ) -> Result<pb::Plan, QuotaError> {
        let mut plan = self.plan(caller, &incoming.id).await?;
        require_admin(caller, &plan.tenant_id)?;
        check_mask(
            mask,
            &[
                "name",
                "description",
                "requests_per_minute",
                "requests_per_hour",
                "requests_per_day",
                "requests_per_month",
                "tokens_per_minute",
                "tokens_per_day",
                "spend_per_day_micros",
                "spend_per_month_micros",
                "max_concurrency",
                "algorithm",
            ],
        )?;
        for path in mask {
            match path.as_str() {
                "name" => plan.name.clone_from(&incoming.name),
                "description" => plan.description.clone_from(&incoming.description),
                "requests_per_minute" => plan.requests_per_minute = incoming.requests_per_minute,
                "requests_per_hour" => plan.requests_per_hour = incoming.requests_per_hour,
                "requests_per_day" => plan.requests_per_day = incoming.requests_per_day,
                "requests_per_month" => plan.requests_per_month = incoming.requests_per_month,
                "tokens_per_minute" => plan.tokens_per_minute = incoming.tokens_per_minute,
                "tokens_per_day" => plan.tokens_per_day = incoming.tokens_per_day,
                "spend_per_day_micros" => plan.spend_per_day_micros = incoming.spend_per_day_micros,
                "spend_per_month_micros" => {
                    plan.spend_per_month_micros = incoming.spend_per_month_micros
                }
                "max_concurrency" => plan.max_concurrency = incoming.max_concurrency,
                _ => plan.algorithm = incoming.algorithm,
            }
        }
        validate_plan(&plan)?;
        self.store
            .update_limit_config(&plan_config(&plan))
            .await
            .map_err(not_found("plan"))?;
        self.changed().await;
        self.plan(caller, &plan.id).await
    }

    pub async fn delete_plan(&self, caller: &Caller, id: &str) -> Result<(), QuotaError> {
        let plan = self.plan(caller, id).await?;
        require_admin(caller, &plan.tenant_id)?;
        self.store
            .delete_limit_config(PLAN, id)
            .await
            .map_err(not_found("plan"))?;
        self.changed().await;
        Ok(())
    }

    async fn check_group(
        &self,
        tenant_id: &str,
        group_id: &str,
        credentials: &ForwardedCredentials,
    ) -> Result<(), QuotaError> {
        match self.directory.group_tenant(group_id, credentials).await {
            Ok(tenant) if tenant == tenant_id => Ok(()),
            Ok(_) | Err(DirectoryError::NotFound) => Err(QuotaError::invalid(
                "rate_limit_rule.group_id",
                format!("unknown group id {group_id:?}"),
            )),
            Err(DirectoryError::Unavailable(message)) => Err(QuotaError::Unavailable(message)),
        }
    }

    pub async fn create_rule(
        &self,
        caller: &Caller,
        mut rule: pb::RateLimitRule,
        credentials: &ForwardedCredentials,
    ) -> Result<pb::RateLimitRule, QuotaError> {
        rule.tenant_id = target_tenant(caller, &rule.tenant_id, "rate_limit_rule.tenant_id")?;
        require_admin(caller, &rule.tenant_id)?;
        validate_rule(&rule)?;
        self.check_group(&rule.tenant_id, &rule.group_id, credentials)
            .await?;
        rule.id = uuid::Uuid::now_v7().to_string();
        self.store
            .insert_limit_config(&rule_config(&rule))
            .await
            .map_err(not_found("rule"))?;
        self.changed().await;
        self.rule(caller, &rule.id).await
    }

    pub async fn rule(&self, caller: &Caller, id: &str) -> Result<pb::RateLimitRule, QuotaError> {
        let config = self
            .store
            .limit_config(RULE, id)
            .await
            .map_err(not_found("rule"))?;
        if !caller.can_see_tenant(&config.tenant_id) {
            return Err(QuotaError::NotFound("rule"));
        }
        decode_rule(&config)
    }

    pub async fn rules(
        &self,
        caller: &Caller,
        tenant_id: &str,
        group_id: &str,
        page: &Page,
    ) -> Result<Vec<pb::RateLimitRule>, QuotaError> {
        let tenant = listing_tenant(caller, tenant_id)?;
        let configs = self
            .store
            .limit_configs(RULE, tenant, group_id, page)
            .await?;
        configs.iter().map(decode_rule).collect()
    }

    pub async fn update_rule(
        &self,
        caller: &Caller,
        incoming: pb::RateLimitRule,
        mask: &[String],
        credentials: &ForwardedCredentials,
    ) -> Result<pb::RateLimitRule, QuotaError> {
        let mut rule = self.rule(caller, &incoming.id).await?;
        require_admin(caller, &rule.tenant_id)?;
        check_mask(
            mask,
            &[
                "group_id",
                "name",
                "dimension",
                "window",
                "limit",
                "algorithm",
                "burst",
                "enabled",
            ],
        )?;
        for path in mask {
            match path.as_str() {
                "group_id" => rule.group_id.clone_from(&incoming.group_id),
                "name" => rule.name.clone_from(&incoming.name),
                "dimension" => rule.dimension = incoming.dimension,
                "window" => rule.window = incoming.window,
                "limit" => rule.limit = incoming.limit,
                "algorithm" => rule.algorithm = incoming.algorithm,
                "burst" => rule.burst = incoming.burst,
                _ => rule.enabled = incoming.enabled,
            }
        }
        validate_rule(&rule)?;
        if mask.iter().any(|path| path == "group_id") {
            self.check_group(&rule.tenant_id, &rule.group_id, credentials)
                .await?;
        }
        self.store
            .update_limit_config(&rule_config(&rule))
            .await
            .map_err(not_found("rule"))?;
        self.changed().await;
        self.rule(caller, &rule.id).await
    }

    pub async fn delete_rule(&self, caller: &Caller, id: &str) -> Result<(), QuotaError> {
        let rule = self.rule(caller, id).await?;
        require_admin(caller, &rule.tenant_id)?;
        self.store
            .delete_limit_config(RULE, id)
            .await
            .map_err(not_found("rule"))?;
        self.changed().await;
        Ok(())
    }
}
