//! Which limits apply to a request: the plans and group rules of its
//! scopes, from a snapshot of every plan and rule kept in memory (Check must
//! not query SQL), reloaded when this replica writes one and when a cheap
//! poll sees another replica's change.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use gateway_proto::quota::v1 as pb;
use gateway_runtime::CancellationToken;
use gateway_storage::StorageError;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::error::QuotaError;
use crate::limiter::{Algorithm, Limit, Slot, Window};
use crate::plans::{decode_plan, decode_rule};
use crate::store::QuotaStore;
use crate::store::limits::PLAN;

/// What a limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Dimension {
    Requests,
    Tokens,
    Spend,
}

impl Dimension {
    pub fn from_proto(dimension: i32) -> Option<Self> {
        match pb::LimitDimension::try_from(dimension) {
            Ok(pb::LimitDimension::Requests) => Some(Self::Requests),
            Ok(pb::LimitDimension::Tokens) => Some(Self::Tokens),
            Ok(pb::LimitDimension::Spend) => Some(Self::Spend),
            _ => None,
        }
    }

    pub fn to_proto(self) -> pb::LimitDimension {
        match self {
            Self::Requests => pb::LimitDimension::Requests,
            Self::Tokens => pb::LimitDimension::Tokens,
            Self::Spend => pb::LimitDimension::Spend,
        }
    }

    fn word(self) -> &'static str {
        match self {
            Self::Requests => "requests",
            Self::Tokens => "tokens",
            Self::Spend => "spend",
        }
    }
}

/// Where a limit comes from and whom it limits: what a LimitStatus says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub name: String,
    pub scope_kind: pb::ScopeKind,
    pub scope_id: String,
    pub source: pb::LimitSource,
    pub source_id: String,
}

/// One rate limit of one scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applicable {
    /// The counter's key: scope, source, dimension, window and algorithm,
    /// so changing a limit's size keeps its count, while changing its
    /// algorithm starts a fresh counter.
    pub key: String,
    pub limit: Limit,
    pub dimension: Dimension,
    pub origin: Origin,
}

/// A concurrency limit of one scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplicableSlot {
    pub slot: Slot,
    pub origin: Origin,
}

/// Every limit that applies to one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolution {
    pub limits: Vec<Applicable>,
    pub slots: Vec<ApplicableSlot>,
}

#[derive(Debug, Default)]
struct Snapshot {
    plans: HashMap<String, pb::Plan>,
    rules_by_group: HashMap<String, Vec<pb::RateLimitRule>>,
}

/// The in-memory snapshot of plans and rules.
pub struct LimitsCache {
    store: QuotaStore,
    snapshot: ArcSwap<Snapshot>,
    /// The stamp the snapshot was loaded at; the lock also keeps two
    /// reloads from racing.
    stamp: Mutex<Option<(i64, i64)>>,
}

impl LimitsCache {
    pub async fn load(store: QuotaStore) -> Result<Arc<Self>, StorageError> {
        let cache = Arc::new(Self {
            store,
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
            stamp: Mutex::new(None),
        });
        cache.refresh().await?;
        Ok(cache)
    }

    /// Reloads the snapshot now (after a local write).
    pub async fn refresh(&self) -> Result<(), StorageError> {
        let mut stamp = self.stamp.lock().await;
        let current = self.store.limit_configs_stamp().await?;
        self.reload().await?;
        *stamp = Some(current);
        Ok(())
    }

    /// Reloads when another replica changed a plan or rule; polls every
    /// `interval` until `shutdown`.
    pub async fn follow(self: Arc<Self>, interval: Duration, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
            if let Err(error) = self.refresh_if_changed().await {
                tracing::warn!(%error, "could not refresh the plans and rules snapshot");
            }
        }
    }

    async fn refresh_if_changed(&self) -> Result<(), StorageError> {
        let mut stamp = self.stamp.lock().await;
        let current = self.store.limit_configs_stamp().await?;
        if *stamp != Some(current) {
            self.reload().await?;
            *stamp = Some(current);
        }
        Ok(())
    }

    async fn reload(&self) -> Result<(), StorageError> {
        let mut snapshot = Snapshot::default();
        for config in self.store.all_limit_configs().await? {
            if config.kind == PLAN {
                match decode_plan(&config) {
                    Ok(plan) => {
                        snapshot.plans.insert(plan.id.clone(), plan);
                    }
                    Err(error) => tracing::error!(%error, "skipping an unreadable plan"),
                }
            } else {
                match decode_rule(&config) {
                    Ok(rule) => snapshot
                        .rules_by_group
                        .entry(rule.group_id.clone())
                        .or_default()
                        .push(rule),
                    Err(error) => tracing::error!(%error, "skipping an unreadable rule"),
                }
            }
        }
        self.snapshot.store(Arc::new(snapshot));
        Ok(())
    }

    /// The limits of every scope of a request of `tenant_id`. A plan or
    /// rule of another tenant never applies; a scope named twice counts
    /// once.
    pub fn resolve(&self, tenant_id: &str, scopes: &[pb::Scope]) -> Result<Resolution, QuotaError> {
        let snapshot = self.snapshot.load();
        let mut resolution = Resolution::default();
        let mut seen = HashSet::new();
        for (index, scope) in scopes.iter().enumerate() {
            let kind = scope_kind(scope).ok_or_else(|| {
                QuotaError::invalid("scopes", format!("scopes[{index}].kind: must be set"))
            })?;
            if scope.id.is_empty() {
                return Err(QuotaError::invalid(
                    "scopes",
                    format!("scopes[{index}].id: must not be empty"),
                ));
            }
            if !seen.insert((kind, scope.id.as_str())) {
                continue;
            }
            let prefix = format!("{}:{}", kind_word(kind), scope.id);
            if !scope.plan_id.is_empty() {
                match snapshot.plans.get(&scope.plan_id) {
                    Some(plan) if plan.tenant_id == tenant_id => {
                        plan_limits(&mut resolution, &prefix, kind, &scope.id, plan);
                    }
                    _ => tracing::debug!(
                        plan_id = scope.plan_id,
                        scope_id = scope.id,
                        "the scope's plan does not exist in this tenant; no plan limits apply"
                    ),
                }
            }
            if kind == pb::ScopeKind::Group {
                for rule in snapshot.rules_by_group.get(&scope.id).into_iter().flatten() {
                    if rule.enabled && rule.tenant_id == tenant_id {
                        rule_limit(&mut resolution, &prefix, &scope.id, rule);
                    }
                }
            }
            if let Some(spend_limit) = scope.spend_limit_micros {
                resolution.limits.push(Applicable {
                    key: format!("{prefix}:spend_limit:spend:lifetime"),
                    limit: Limit {
                        limit: spend_limit.max(0),
                        window: Window::Lifetime,
                        algorithm: Algorithm::FixedWindow,
                        burst: 0,
                    },
                    dimension: Dimension::Spend,
                    origin: Origin {
                        name: "lifetime spend limit".to_owned(),
                        scope_kind: kind,
                        scope_id: scope.id.clone(),
                        source: pb::LimitSource::SpendLimit,
                        source_id: String::new(),
                    },
                });
            }
        }
        Ok(resolution)
    }
}

fn scope_kind(scope: &pb::Scope) -> Option<pb::ScopeKind> {
    match pb::ScopeKind::try_from(scope.kind) {
        Ok(pb::ScopeKind::Unspecified) | Err(_) => None,
        Ok(kind) => Some(kind),
    }
}

fn kind_word(kind: pb::ScopeKind) -> &'static str {
    match kind {
        pb::ScopeKind::Key => "key",
        pb::ScopeKind::Client => "client",
        pb::ScopeKind::User => "user",
        pb::ScopeKind::Group => "group",
        pb::ScopeKind::Tenant => "tenant",
        pb::ScopeKind::Unspecified => "unspecified",
    }
}

/// The algorithm a limit counts with: day and month are calendar windows;
/// minute and hour default to the sliding window.
pub fn algorithm(algorithm: i32) -> Algorithm {
    match pb::LimitAlgorithm::try_from(algorithm) {
        Ok(pb::LimitAlgorithm::Gcra) => Algorithm::Gcra,
        Ok(pb::LimitAlgorithm::FixedWindow) => Algorithm::FixedWindow,
        Ok(pb::LimitAlgorithm::SlidingLog) => Algorithm::SlidingLog,
        _ => Algorithm::SlidingWindow,
    }
}

fn algorithm_word(limit: &Limit) -> &'static str {
    match limit.algorithm {
        _ if limit.window.is_calendar() => "fixed",
        Algorithm::Gcra => "gcra",
        Algorithm::FixedWindow => "fixed",
        Algorithm::SlidingWindow => "sliding",
        Algorithm::SlidingLog => "log",
    }
}

pub fn window(window: i32) -> Option<Window> {
    match pb::LimitWindow::try_from(window) {
        Ok(pb::LimitWindow::Minute) => Some(Window::Minute),
        Ok(pb::LimitWindow::Hour) => Some(Window::Hour),
        Ok(pb::LimitWindow::Day) => Some(Window::Day),
        Ok(pb::LimitWindow::Month) => Some(Window::Month),
        Ok(pb::LimitWindow::Lifetime) => Some(Window::Lifetime),
        _ => None,
    }
}

pub fn window_to_proto(window: Window) -> pb::LimitWindow {
    match window {
        Window::Minute => pb::LimitWindow::Minute,
        Window::Hour => pb::LimitWindow::Hour,
        Window::Day => pb::LimitWindow::Day,
        Window::Month => pb::LimitWindow::Month,
        Window::Lifetime => pb::LimitWindow::Lifetime,
    }
}

fn window_word(window: Window) -> &'static str {
    match window {
        Window::Minute => "minute",
        Window::Hour => "hour",
        Window::Day => "day",
        Window::Month => "month",
        Window::Lifetime => "lifetime",
    }
}

fn plan_limits(
    resolution: &mut Resolution,
    prefix: &str,
    kind: pb::ScopeKind,
    scope_id: &str,
    plan: &pb::Plan,
) {
    let rolling = algorithm(plan.algorithm);
    let fields = [
        (
            Dimension::Requests,
            Window::Minute,
            plan.requests_per_minute,
        ),
        (Dimension::Requests, Window::Hour, plan.requests_per_hour),
        (Dimension::Requests, Window::Day, plan.requests_per_day),
        (Dimension::Requests, Window::Month, plan.requests_per_month),
        (Dimension::Tokens, Window::Minute, plan.tokens_per_minute),
        (Dimension::Tokens, Window::Day, plan.tokens_per_day),
        (Dimension::Spend, Window::Day, plan.spend_per_day_micros),
        (Dimension::Spend, Window::Month, plan.spend_per_month_micros),
    ];
    for (dimension, window, value) in fields {
        let Some(value) = value else { continue };
        let limit = Limit {
            limit: value.max(0),
            window,
            algorithm: if window.is_calendar() {
                Algorithm::FixedWindow
            } else {
                rolling
            },
            burst: 0,
        };
        resolution.limits.push(Applicable {
            key: format!(
                "{prefix}:plan:{}:{}:{}:{}",
                plan.id,
                dimension.word(),
                window_word(window),
                algorithm_word(&limit)
            ),
            limit,
            dimension,
            origin: Origin {
                name: format!("{} {}", dimension.word(), window.describe()),
                scope_kind: kind,
                scope_id: scope_id.to_owned(),
                source: pb::LimitSource::Plan,
                source_id: plan.id.clone(),
            },
        });
    }
    if let Some(max) = plan.max_concurrency {
        resolution.slots.push(ApplicableSlot {
            slot: Slot {
                key: format!("{prefix}:plan:{}:concurrency", plan.id),
                max: max.max(0),
            },
            origin: Origin {
                name: "concurrent requests".to_owned(),
                scope_kind: kind,
                scope_id: scope_id.to_owned(),
                source: pb::LimitSource::Plan,
                source_id: plan.id.clone(),
            },
        });
    }
}

fn rule_limit(resolution: &mut Resolution, prefix: &str, group_id: &str, rule: &pb::RateLimitRule) {
    let (Some(dimension), Some(window)) =
        (Dimension::from_proto(rule.dimension), window(rule.window))
    else {
        tracing::error!(
            rule_id = rule.id,
            "skipping a rule with no dimension or window"
        );
        return;
    };
    let limit = Limit {
        limit: rule.limit.max(0),
        window,
        algorithm: algorithm(rule.algorithm),
        burst: rule.burst.max(0),
    };
    let name = if rule.name.is_empty() {
        format!(
            "rule {} ({} {})",
            rule.id,
            dimension.word(),
            window.describe()
        )
    } else {
        format!("rule '{}'", rule.name)
    };
    resolution.limits.push(Applicable {
        key: format!(
            "{prefix}:rule:{}:{}:{}:{}",
            rule.id,
            dimension.word(),
            window_word(window),
            algorithm_word(&limit)
        ),
        limit,
        dimension,
        origin: Origin {
            name,
            scope_kind: pb::ScopeKind::Group,
            scope_id: group_id.to_owned(),
            source: pb::LimitSource::Rule,
            source_id: rule.id.clone(),
        },
    });
}
