//! Each API's policies, compiled once per snapshot change (routes sorted,
//! regexes built, target groups and balancers set up) and reused by every
//! request until the API changes. Runtime state that must outlive a
//! snapshot update (in-flight counts, balancer positions) is kept in
//! registries keyed by API id and target URL, and picked up again by the
//! recompiled policy.

pub mod compile;
pub mod routes;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use gateway_catalog_client::ApiEntry;
use gateway_proto::catalog::v1 as pb;
use gateway_proto::micros_from_duration;

use crate::access::Access;
use crate::auth::modes::{ApiAuth, Mode};
use crate::balance::{self, Algorithm, BalancerState, Candidates};
use crate::breaker::{Breaker, BreakerPolicy, BreakerState, Transition};
use crate::cache::{CachePolicy, Counters};
use crate::cors::Cors;
use crate::health::{self, Health, HealthPolicy};
use crate::retry::{RetryBudget, RetryPolicy};
use crate::transform::Transform;
use routes::{Matched, Route, Routes};

/// What a target keeps across snapshot updates.
#[derive(Debug, Default)]
pub struct TargetState {
    in_flight: AtomicUsize,
    pub breaker: Breaker,
    pub health: Health,
    pub stats: crate::stats::TargetStats,
}

impl TargetState {
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
}

/// One request in flight to a target; dropping it ends the count.
#[derive(Debug)]
pub struct InFlight(Arc<TargetState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Debug)]
pub struct Target {
    pub url: String,
    weight: u32,
    pub state: Arc<TargetState>,
}

/// The targets one route (or the API) balances over.
#[derive(Debug)]
struct TargetGroup {
    targets: Vec<Target>,
    weights: Vec<u32>,
    /// The targets' URLs, for hashing.
    names: Vec<String>,
    balancer: Arc<BalancerState>,
}

/// The target chosen for one attempt.
#[derive(Debug)]
pub struct Chosen<'a> {
    pub target: &'a Target,
    /// Its index in the route's group, to avoid it on a retry.
    pub index: usize,
    pub in_flight: InFlight,
}

/// No target may take the request now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable {
    /// When an open breaker lets a probe through, if one will.
    pub retry_after: Option<Duration>,
}

/// Where a request goes within the API.
#[derive(Debug)]
pub struct RouteChoice<'a> {
    /// The matched rule; `None` when the API has no rules.
    pub matched: Option<Matched<'a>>,
    group: usize,
}

impl RouteChoice<'_> {
    /// The route's name for metrics and logs ("" without rules).
    pub fn name(&self) -> &str {
        self.matched
            .as_ref()
            .map_or("", |matched| matched.route.name.as_str())
    }

    /// The path sent upstream (the rewrite applied).
    pub fn upstream_path(&self, path: &str) -> String {
        match &self.matched {
            Some(matched) => matched.upstream_path(path),
            None => path.to_owned(),
        }
    }
}

/// An API as the edge applies it.
pub struct CompiledApi {
    pub entry: Arc<ApiEntry>,
    routes: Routes,
    groups: Vec<TargetGroup>,
    algorithm: Algorithm,
    hash_header: Option<http::HeaderName>,
    pub connect_timeout: Option<Duration>,
    pub read_timeout: Option<Duration>,
    pub total_timeout: Option<Duration>,
    pub retry: Option<RetryPolicy>,
    pub budget: Arc<RetryBudget>,
    breaker: Option<BreakerPolicy>,
    pub health: Option<HealthPolicy>,
    pub transform: Transform,
    pub cors: Option<Cors>,
    pub access: Access,
    pub cache: Option<CachePolicy>,
    pub auth: ApiAuth,
}

fn algorithm(policy: Option<&pb::LoadBalancing>) -> Algorithm {
    match policy.map(pb::LoadBalancing::algorithm) {
        Some(pb::LoadBalancingAlgorithm::RoundRobin) => Algorithm::RoundRobin,
        Some(pb::LoadBalancingAlgorithm::LeastRequests) => Algorithm::LeastRequests,
        Some(pb::LoadBalancingAlgorithm::Random) => Algorithm::Random,
        Some(pb::LoadBalancingAlgorithm::ConsistentHash) => Algorithm::ConsistentHash,
        Some(pb::LoadBalancingAlgorithm::Weighted | pb::LoadBalancingAlgorithm::Unspecified)
        | None => Algorithm::Weighted,
    }
}

/// A positive protobuf duration as a std one.
pub fn positive(duration: Option<&prost_types::Duration>) -> Option<Duration> {
    let micros = micros_from_duration(duration?);
    (micros > 0).then(|| Duration::from_micros(u64::try_from(micros).unwrap_or(0)))
}

impl CompiledApi {
    /// The credential a request on `route` must carry.
    pub fn mode(&self, route: Option<&RouteChoice<'_>>) -> Mode {
        route
            .and_then(|route| route.matched.as_ref())
            .and_then(|matched| matched.route.auth_mode)
            .unwrap_or(self.auth.default)
    }

    /// The route a request takes, or `None` when the API has rules and
    /// none matches (404).
    pub fn route(&self, method: &http::Method, path: &str) -> Option<RouteChoice<'_>> {
        if self.routes.is_empty() {
            return Some(RouteChoice {
                matched: None,
                group: 0,
            });
        }
        let matched = self.routes.find(method, path)?;
        let group = matched.route.group;
        Some(RouteChoice {
            matched: Some(matched),
            group,
        })
    }

    /// A target for the route by the API's balancing algorithm: not one
    /// of `avoid` (earlier attempts) while another will do, with its
    /// breaker admitting, and healthy unless no target is (then all are
    /// used rather than failing everything).
    pub fn choose<'a>(
        &'a self,
        route: &RouteChoice<'_>,
        headers: &http::HeaderMap,
        remote_ip: &str,
        avoid: &[usize],
    ) -> Result<Chosen<'a>, Unavailable> {
        let group = self
            .groups
            .get(route.group)
            .ok_or(Unavailable { retry_after: None })?;
        let now = std::time::Instant::now();
        let admits = |target: &Target| {
            self.breaker
                .as_ref()
                .is_none_or(|policy| target.state.breaker.admits(policy, now))
        };
        let passes: [&Eligible<'_>; 3] = [
            &|index, target| {
                !avoid.contains(&index) && admits(target) && target.state.health.usable(now)
            },
            &|_, target| admits(target) && target.state.health.usable(now),
            &|_, target| admits(target),
        ];
        for eligible in passes {
            for _ in 0..group.targets.len() {
                let Some(index) = self.pick(group, headers, remote_ip, eligible) else {
                    break;
                };
                if let Some(chosen) = self.acquire(group, index, now) {
                    return Ok(chosen);
                }
            }
        }
        Err(Unavailable {
            retry_after: self.breaker.as_ref().and_then(|policy| {
                group
                    .targets
                    .iter()
                    .filter_map(|target| target.state.breaker.retry_after(policy, now))
                    .min()
            }),
        })
    }

    fn pick(
        &self,
        group: &TargetGroup,
        headers: &http::HeaderMap,
        remote_ip: &str,
        eligible: &Eligible<'_>,
    ) -> Option<usize> {
        let hash_key = match &self.hash_header {
            Some(name) => headers.get(name).map(http::HeaderValue::as_bytes),
            None => Some(remote_ip.as_bytes()),
        };
        let in_flight = |index: usize| group.targets[index].state.in_flight();
        let usable = |index: usize| eligible(index, &group.targets[index]);
        let candidates = Candidates {
            weights: &group.weights,
            eligible: &usable,
            in_flight: &in_flight,
            names: &group.names,
        };
        balance::pick(self.algorithm, &group.balancer, &candidates, hash_key)
    }

    /// Takes the breaker's permission (a half-open probe slot) and counts
    /// the request in flight.
    fn acquire<'a>(
        &self,
        group: &'a TargetGroup,
        index: usize,
        now: std::time::Instant,
    ) -> Option<Chosen<'a>> {
        let target = &group.targets[index];
        if let Some(policy) = &self.breaker {
            let (allowed, transition) = target.state.breaker.try_acquire(policy, now);
            self.log_transition(target, transition);
            if !allowed {
                return None;
            }
        }
        target.state.in_flight.fetch_add(1, Ordering::Relaxed);
        Some(Chosen {
            target,
            index,
            in_flight: InFlight(Arc::clone(&target.state)),
        })
    }

    /// One attempt's outcome: a connect error, a timeout or a 5xx is a
    /// failure for the breaker and for passive health.
    pub fn record(&self, target: &Target, failed: bool, took: Duration) {
        let now = std::time::Instant::now();
        target.state.stats.record(failed, took);
        if let Some(policy) = &self.breaker {
            let transition = target.state.breaker.record(policy, failed, now);
            self.log_transition(target, transition);
        }
        if let Some(policy) = &self.health {
            let eject_after = if policy.unhealthy_threshold > 0 {
                policy.unhealthy_threshold
            } else {
                health::DEFAULT_EJECT_AFTER
            };
            if let Some(period) = target.state.health.observed(failed, eject_after, now) {
                tracing::warn!(
                    api_id = self.entry.api.id,
                    target = target.url,
                    seconds = period.as_secs(),
                    "target ejected after consecutive failures"
                );
                metrics::counter!("edge_target_ejections_total", "api" => self.entry.api.id.clone()).increment(1);
            }
        }
    }

    fn log_transition(&self, target: &Target, transition: Option<Transition>) {
        let Some(Transition { from, to }) = transition else {
            return;
        };
        tracing::warn!(
            api_id = self.entry.api.id,
            target = target.url,
            from = from.as_str(),
            to = to.as_str(),
            "circuit breaker state changed"
        );
        let open = if to == BreakerState::Open { 1.0 } else { 0.0 };
        metrics::gauge!("edge_breaker_open", "api" => self.entry.api.id.clone(), "target" => target.url.clone()).set(open);
        metrics::counter!("edge_breaker_transitions_total", "api" => self.entry.api.id.clone(), "to" => to.as_str()).increment(1);
    }
}

pub type TargetKey = (String, String);

/// Whether target `index` may take this attempt.
type Eligible<'a> = dyn Fn(usize, &Target) -> bool + 'a;

/// Compiled APIs, and the runtime state they share across recompilations.
#[derive(Default)]
pub struct Policies {
    compiled: RwLock<HashMap<String, Arc<CompiledApi>>>,
    targets: Mutex<HashMap<TargetKey, Arc<TargetState>>>,
    balancers: Mutex<HashMap<TargetKey, Arc<BalancerState>>>,
    budgets: Mutex<HashMap<String, Arc<RetryBudget>>>,
    cache_counters: Mutex<HashMap<String, Arc<Counters>>>,
}

impl Policies {
    /// The compiled form of `entry`, compiled now if the API changed.
    pub fn get(&self, entry: &Arc<ApiEntry>) -> Arc<CompiledApi> {
        let id = &entry.api.id;
        if let Some(compiled) = self
            .compiled
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .filter(|compiled| Arc::ptr_eq(&compiled.entry, entry))
        {
            return Arc::clone(compiled);
        }
        let compiled = Arc::new(self.compile(entry));
        self.compiled
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.clone(), Arc::clone(&compiled));
        compiled
    }

    fn compile(&self, entry: &Arc<ApiEntry>) -> CompiledApi {
        let api = &entry.api;
        let mut groups = vec![self.group(&api.id, &api.upstreams)];
        let mut compiled_routes = Vec::new();
        for rule in &api.routes {
            let group = if rule.upstreams.is_empty() {
                0
            } else {
                groups.push(self.group(&api.id, &rule.upstreams));
                groups.len() - 1
            };
            compiled_routes.extend(Route::compile(rule, group));
        }
        let timeouts = api.timeouts.as_ref();
        let budget = Arc::clone(
            self.budgets
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(api.id.clone())
                .or_default(),
        );
        CompiledApi {
            entry: Arc::clone(entry),
            routes: Routes::new(compiled_routes),
            groups,
            algorithm: algorithm(api.load_balancing.as_ref()),
            hash_header: api
                .load_balancing
                .as_ref()
                .filter(|policy| !policy.hash_header.is_empty())
                .and_then(|policy| {
                    http::HeaderName::from_bytes(policy.hash_header.as_bytes()).ok()
                }),
            connect_timeout: positive(timeouts.and_then(|timeouts| timeouts.connect.as_ref())),
            read_timeout: positive(timeouts.and_then(|timeouts| timeouts.read.as_ref())),
            total_timeout: positive(timeouts.and_then(|timeouts| timeouts.total.as_ref())),
            retry: compile::retry(api.retry.as_ref()),
            budget,
            breaker: compile::breaker(api.circuit_breaker.as_ref()),
            health: compile::health(api.health_check.as_ref()),
            transform: Transform::compile(api.transform.as_ref()),
            cors: Cors::compile(api.cors.as_ref()),
            access: Access::compile(api.access.as_ref()),
            cache: CachePolicy::compile(api.cache.as_ref(), self.cache_counters(&api.id)),
            auth: ApiAuth::compile(api),
        }
    }

    fn cache_counters(&self, api_id: &str) -> Arc<Counters> {
        Arc::clone(
            self.cache_counters
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(api_id.to_owned())
                .or_default(),
        )
    }

    /// Every cached API's hits and misses, by API id.
    pub fn cache_stats(&self) -> Vec<(String, Arc<Counters>)> {
        self.cache_counters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(api_id, counters)| (api_id.clone(), Arc::clone(counters)))
            .collect()
    }

    /// Every target's runtime state, by API id and target URL.
    pub fn targets(&self) -> Vec<(TargetKey, Arc<TargetState>)> {
        self.targets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(key, state)| (key.clone(), Arc::clone(state)))
            .collect()
    }

    /// The runtime state of one target of one API.
    pub fn target_state(&self, api_id: &str, url: &str) -> Arc<TargetState> {
        Arc::clone(
            self.targets
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry((api_id.to_owned(), url.to_owned()))
                .or_default(),
        )
    }

    fn group(&self, api_id: &str, upstreams: &[pb::UpstreamTarget]) -> TargetGroup {
        let mut states = self.targets.lock().unwrap_or_else(PoisonError::into_inner);
        // A lone upstream's weight is unset (proto3's 0), not a drain: the
        // catalog refuses all-zero weights only where there is a choice.
        let lone = upstreams.len() == 1;
        let targets: Vec<Target> = upstreams
            .iter()
            .map(|upstream| Target {
                url: upstream.url.clone(),
                weight: if lone {
                    u32::try_from(upstream.weight).unwrap_or(0).max(1)
                } else {
                    u32::try_from(upstream.weight).unwrap_or(0)
                },
                state: Arc::clone(
                    states
                        .entry((api_id.to_owned(), upstream.url.clone()))
                        .or_default(),
                ),
            })
            .collect();
        drop(states);
        // A balancer belongs to a set of targets, so it survives an update
        // that leaves them alone.
        let set: Vec<&str> = targets.iter().map(|target| target.url.as_str()).collect();
        let balancer = Arc::clone(
            self.balancers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry((api_id.to_owned(), set.join(" ")))
                .or_default(),
        );
        TargetGroup {
            weights: targets.iter().map(|target| target.weight).collect(),
            names: targets.iter().map(|target| target.url.clone()).collect(),
            targets,
            balancer,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(api: pb::Api) -> Arc<ApiEntry> {
        Arc::new(ApiEntry {
            api,
            upstream_auth_secret: String::new(),
        })
    }

    fn target(url: &str, weight: i32) -> pb::UpstreamTarget {
        pb::UpstreamTarget {
            url: url.to_owned(),
            weight,
        }
    }

    fn api(upstreams: Vec<pb::UpstreamTarget>) -> pb::Api {
        pb::Api {
            id: "api-1".to_owned(),
            upstreams,
            ..pb::Api::default()
        }
    }

    #[test]
    fn compiled_once_per_change_with_state_kept_across_updates() {
        let policies = Policies::default();
        let first = entry(api(vec![target("http://a", 1), target("http://b", 1)]));
        let compiled = policies.get(&first);
        assert!(Arc::ptr_eq(&compiled, &policies.get(&first)), "reused");
        let route = compiled.route(&http::Method::GET, "/").unwrap();
        let chosen = compiled
            .choose(&route, &http::HeaderMap::new(), "10.0.0.1", &[])
            .unwrap();
        let url = chosen.target.url.clone();
        // A snapshot update with the same targets: a new compilation that
        // sees the request still in flight.
        let second = entry(api(vec![target("http://a", 1), target("http://b", 2)]));
        let recompiled = policies.get(&second);
        assert!(!Arc::ptr_eq(&compiled, &recompiled));
        let in_flight: usize = recompiled.groups[0]
            .targets
            .iter()
            .filter(|target| target.url == url)
            .map(|target| target.state.in_flight())
            .sum();
        assert_eq!(in_flight, 1);
        drop(chosen);
        assert!(
            recompiled.groups[0]
                .targets
                .iter()
                .all(|target| target.state.in_flight() == 0)
        );
    }

    #[test]
    fn routes_use_their_own_targets_and_unmatched_paths_have_no_route() {
        let policies = Policies::default();
        let mut with_routes = api(vec![target("http://main", 1)]);
        with_routes.routes = vec![
            pb::RouteRule {
                name: "orders".to_owned(),
                match_kind: pb::MatchKind::Prefix.into(),
                pattern: "/orders".to_owned(),
                upstreams: vec![target("http://orders", 1)],
                ..pb::RouteRule::default()
            },
            pb::RouteRule {
                match_kind: pb::MatchKind::Prefix.into(),
                pattern: "/users".to_owned(),
                ..pb::RouteRule::default()
            },
        ];
        let compiled = policies.get(&entry(with_routes));
        let headers = http::HeaderMap::new();
        let orders = compiled.route(&http::Method::GET, "/orders/1").unwrap();
        assert_eq!(orders.name(), "orders");
        let chosen = compiled.choose(&orders, &headers, "ip", &[]).unwrap();
        assert_eq!(chosen.target.url, "http://orders");
        let users = compiled.route(&http::Method::GET, "/users/1").unwrap();
        assert_eq!(users.name(), "/users");
        let chosen = compiled.choose(&users, &headers, "ip", &[]).unwrap();
        assert_eq!(chosen.target.url, "http://main");
        assert!(compiled.route(&http::Method::GET, "/other").is_none());
    }
}
