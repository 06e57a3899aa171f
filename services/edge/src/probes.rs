//! Active health checks: one prober per target of every API whose
//! `health_check` is enabled, started and stopped as the catalog snapshot
//! changes, never two for one target of one API. Verdicts land in the
//! target's runtime state, which the balancer reads.

use std::collections::HashMap;
use std::sync::Arc;

use gateway_catalog_client::CatalogCache;
use tokio_util::sync::CancellationToken;

use crate::forward::Forwarder;
use crate::health::HealthPolicy;
use crate::policy::{Policies, compile};

type ProbeKey = (String, String);

/// Every (API, target URL) that should be probed, with its policy.
fn desired(catalog: &CatalogCache) -> HashMap<ProbeKey, HealthPolicy> {
    let view = catalog.view();
    let mut wanted = HashMap::new();
    for entry in view.apis().filter(|entry| entry.api.enabled) {
        let Some(policy) = compile::health(entry.api.health_check.as_ref()) else {
            continue;
        };
        let route_targets = entry.api.routes.iter().flat_map(|route| &route.upstreams);
        for target in entry.api.upstreams.iter().chain(route_targets) {
            wanted.insert((entry.api.id.clone(), target.url.clone()), policy.clone());
        }
    }
    wanted
}

/// Keeps the probers in step with the snapshot until `shutdown`.
pub async fn follow(
    catalog: CatalogCache,
    policies: Arc<Policies>,
    forwarder: Arc<Forwarder>,
    shutdown: CancellationToken,
) {
    let mut running: HashMap<ProbeKey, (HealthPolicy, CancellationToken)> = HashMap::new();
    let mut version = i64::MIN;
    loop {
        if catalog.version() != version {
            version = catalog.version();
            let wanted = desired(&catalog);
            running.retain(|key, (policy, stop)| {
                let keep = wanted.get(key) == Some(policy);
                if !keep {
                    stop.cancel();
                }
                keep
            });
            for (key, policy) in wanted {
                if running.contains_key(&key) {
                    continue;
                }
                let stop = shutdown.child_token();
                let state = policies.target_state(&key.0, &key.1);
                tokio::spawn(probe(
                    key.clone(),
                    policy.clone(),
                    state,
                    Arc::clone(&forwarder),
                    stop.clone(),
                ));
                running.insert(key, (policy, stop));
            }
            metrics::gauge!("edge_health_probers").set(running.len() as f64);
        }
        tokio::select! {
            () = catalog.wait_for_version(version + 1) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// Probes one target every interval until `stop`.
async fn probe(
    (api_id, url): ProbeKey,
    policy: HealthPolicy,
    state: Arc<crate::policy::TargetState>,
    forwarder: Arc<Forwarder>,
    stop: CancellationToken,
) {
    let probe_url = format!("{}{}", url.trim_end_matches('/'), policy.path);
    loop {
        tokio::select! {
            () = tokio::time::sleep(policy.interval) => {}
            () = stop.cancelled() => return,
        }
        let status = forwarder.probe(&probe_url, policy.timeout).await;
        let passed = status.is_some_and(|status| policy.passes(status));
        if let Some(healthy) = state.health.probed(&policy, passed) {
            tracing::warn!(
                api_id,
                target = url,
                healthy,
                ?status,
                "target health changed"
            );
            metrics::gauge!("edge_target_healthy", "api" => api_id.clone(), "target" => url.clone())
                .set(if healthy { 1.0 } else { 0.0 });
        }
    }
}
