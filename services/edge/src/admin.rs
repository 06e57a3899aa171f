//! `GET /admin/edge` on the ops port: the data plane's runtime state per
//! API and target, computed when asked.

use std::collections::BTreeMap;
use std::time::Instant;

use gateway_catalog_client::CatalogCache;

use crate::cache::ResponseCache;
use crate::policy::Policies;

/// `{"apis": {api_id: {"tenant_id", "slug", "targets": {url: {...}},
/// "cache": {...}}}, "cache": {...}}`.
pub fn view(
    policies: &Policies,
    catalog: &CatalogCache,
    cache: &ResponseCache,
) -> serde_json::Value {
    let snapshot = catalog.view();
    let now = Instant::now();
    let mut apis: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    for ((api_id, url), state) in policies.targets() {
        let Some(entry) = snapshot.api_by_id(&api_id) else {
            continue;
        };
        let mut target = state.stats.snapshot();
        target["in_flight"] = state.in_flight().into();
        target["breaker"] = state.breaker.state().as_str().into();
        target["healthy"] = state.health.probed_healthy().into();
        target["ejected"] = state.health.ejected(now).into();
        let api = apis.entry(api_id).or_insert_with(|| {
            serde_json::json!({
                "tenant_id": entry.api.tenant_id,
                "slug": entry.api.slug,
                "targets": {},
            })
        });
        api["targets"][url] = target;
    }
    for (api_id, counters) in policies.cache_stats() {
        if let Some(api) = apis.get_mut(&api_id) {
            api["cache"] = counters.snapshot();
        }
    }
    serde_json::json!({
        "catalog_version": snapshot.version,
        "apis": apis,
        "cache": cache.snapshot(),
    })
}
