//! Each API's policies, compiled once per snapshot change (routes sorted,
//! regexes built, target groups and balancers set up) and reused by every
//! request until the API changes. Runtime state that must outlive a
//! snapshot update (in-flight counts, balancer positions) is kept in
//! registries keyed by API id and target URL, and picked up again by the
//! recompiled policy.

pub mod routes;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use gateway_catalog_client::ApiEntry;
use gateway_proto::catalog::v1 as pb;
use gateway_proto::micros_from_duration;

use crate::balance::{self, Algorithm, BalancerState, Candidates};
use routes::{Matched, Route, Routes};

/// What a target keeps across snapshot updates.
#[derive(Debug, Default)]
pub struct TargetState {
    in_flight: AtomicUsize,
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
    state: Arc<TargetState>,
}

/// The targets one route (or the API) balances over.
#[derive(Debug)]
struct TargetGroup {
    targets: Vec<Target>,
    weights: Vec<u32>,
    balancer: Arc<BalancerState>,
}

/// The target chosen for one attempt.
#[derive(Debug)]
pub struct Chosen<'a> {
    pub target: &'a Target,
    pub in_flight: InFlight,
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

    /// A target for the route by the API's balancing algorithm, among those
    /// `eligible` allows; `None` when none is usable.
    pub fn choose<'a>(
        &'a self,
        route: &RouteChoice<'_>,
        headers: &http::HeaderMap,
        remote_ip: &str,
        eligible: &dyn Fn(&Target) -> bool,
    ) -> Option<Chosen<'a>> {
        let group = self.groups.get(route.group)?;
        let names: Vec<&str> = group
            .targets
            .iter()
            .map(|target| target.url.as_str())
            .collect();
        let hash_key = match &self.hash_header {
            Some(name) => headers.get(name).map(http::HeaderValue::as_bytes),
            None => Some(remote_ip.as_bytes()),
        };
        let in_flight = |index: usize| group.targets[index].state.in_flight();
        let usable = |index: usize| eligible(&group.targets[index]);
        let candidates = Candidates {
            weights: &group.weights,
            eligible: &usable,
            in_flight: &in_flight,
            names: &names,
        };
        let index = balance::pick(self.algorithm, &group.balancer, &candidates, hash_key)?;
        let target = &group.targets[index];
        target.state.in_flight.fetch_add(1, Ordering::Relaxed);
        Some(Chosen {
            target,
            in_flight: InFlight(Arc::clone(&target.state)),
        })
    }
}

type TargetKey = (String, String);

/// Compiled APIs, and the runtime state they share across recompilations.
#[derive(Default)]
pub struct Policies {
    compiled: RwLock<HashMap<String, Arc<CompiledApi>>>,
    targets: Mutex<HashMap<TargetKey, Arc<TargetState>>>,
    balancers: Mutex<HashMap<TargetKey, Arc<BalancerState>>>,
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
        }
    }

    fn group(&self, api_id: &str, upstreams: &[pb::UpstreamTarget]) -> TargetGroup {
        let mut states = self.targets.lock().unwrap_or_else(PoisonError::into_inner);
        let targets: Vec<Target> = upstreams
            .iter()
            .map(|upstream| Target {
                url: upstream.url.clone(),
                weight: u32::try_from(upstream.weight).unwrap_or(0),
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
            .choose(&route, &http::HeaderMap::new(), "10.0.0.1", &|_| true)
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
        let chosen = compiled.choose(&orders, &headers, "ip", &|_| true).unwrap();
        assert_eq!(chosen.target.url, "http://orders");
        let users = compiled.route(&http::Method::GET, "/users/1").unwrap();
        assert_eq!(users.name(), "/users");
        let chosen = compiled.choose(&users, &headers, "ip", &|_| true).unwrap();
        assert_eq!(chosen.target.url, "http://main");
        assert!(compiled.route(&http::Method::GET, "/other").is_none());
    }
}
