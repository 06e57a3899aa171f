//! An indexed, immutable view of one catalog version.

use std::collections::HashMap;
use std::sync::Arc;

use gateway_pricing::{Price, PriceTable};

use gateway_proto::catalog::v1 as pb;

/// An API as the edge serves it, with its decrypted upstream credential.
#[derive(Clone, PartialEq)]
pub struct ApiEntry {
    pub api: pb::Api,
    pub upstream_auth_secret: String,
}

// The credential never reaches a log through Debug.
impl std::fmt::Debug for ApiEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiEntry")
            .field("api", &self.api)
            .field("upstream_auth_secret", &"<redacted>")
            .finish()
    }
}

/// One catalog version, indexed for the edge's lookups.
#[derive(Debug, Clone, Default)]
pub struct CatalogView {
    pub version: i64,
    /// False until the first snapshot: the edge is not ready before.
    pub primed: bool,
    apis_by_id: HashMap<String, Arc<ApiEntry>>,
    /// tenant id -> slug -> API: nested so that a lookup with two `&str`s
    /// does not allocate.
    apis_by_slug: HashMap<String, HashMap<String, Arc<ApiEntry>>>,
    /// API slug -> how many enabled APIs of that slug (of any tenant) take
    /// callers without a gateway key, so a keyless request for any other
    /// slug is refused without resolving its tenant.
    keyless_slugs: HashMap<String, usize>,
    channels: HashMap<String, Arc<pb::SnapshotChannel>>,
    model_prices: HashMap<String, pb::ModelPrice>,
    group_multipliers: HashMap<String, pb::GroupMultiplier>,
    group_prices: HashMap<String, pb::GroupPrice>,
    prices: Arc<PriceTable>,
}

impl CatalogView {
    pub fn from_snapshot(snapshot: pb::Snapshot) -> Self {
        let mut view = Self {
            version: snapshot.version,
            primed: true,
            ..Self::default()
        };
        for api in snapshot.apis {
            view.upsert_api(api);
        }
        for channel in snapshot.channels {
            view.upsert_channel(channel);
        }
        view.model_prices = snapshot
            .model_prices
            .into_iter()
            .map(|price| (price.id.clone(), price))
            .collect();
        view.group_multipliers = snapshot
            .group_multipliers
            .into_iter()
            .map(|multiplier| (multiplier.id.clone(), multiplier))
            .collect();
        view.group_prices = snapshot
            .group_prices
            .into_iter()
            .map(|price| (price.id.clone(), price))
            .collect();
        view.rebuild_prices();
        view
    }

    /// The view after one change (copy on write: readers of `self` are
    /// unaffected).
    pub fn apply(&self, change: pb::SnapshotChange) -> Self {
        let mut view = self.clone();
        view.version = change.version;
        for id in &change.deleted_api_ids {
            view.remove_api(id);
        }
        for api in change.upserted_apis {
            view.upsert_api(api);
        }
        for id in &change.deleted_channel_ids {
            view.channels.remove(id);
        }
        for channel in change.upserted_channels {
            view.upsert_channel(channel);
        }
        let prices_changed = !(change.deleted_model_price_ids.is_empty()
            && change.upserted_model_prices.is_empty()
            && change.deleted_group_multiplier_ids.is_empty()
            && change.upserted_group_multipliers.is_empty()
            && change.deleted_group_price_ids.is_empty()
            && change.upserted_group_prices.is_empty());
        for id in &change.deleted_model_price_ids {
            view.model_prices.remove(id);
        }
        for price in change.upserted_model_prices {
            view.model_prices.insert(price.id.clone(), price);
        }
        for id in &change.deleted_group_multiplier_ids {
            view.group_multipliers.remove(id);
        }
        for multiplier in change.upserted_group_multipliers {
            view.group_multipliers
                .insert(multiplier.id.clone(), multiplier);
        }
        for id in &change.deleted_group_price_ids {
            view.group_prices.remove(id);
        }
        for price in change.upserted_group_prices {
            view.group_prices.insert(price.id.clone(), price);
        }
        if prices_changed {
            view.rebuild_prices();
        }
        view
    }

    /// The API a request path `/{tenant_slug}/{api_slug}/...` names, once the
    /// edge has resolved the tenant slug to its id.
    pub fn api(&self, tenant_id: &str, api_slug: &str) -> Option<&Arc<ApiEntry>> {
        self.apis_by_slug.get(tenant_id)?.get(api_slug)
    }

    /// Whether some enabled API of this slug takes callers without a
    /// gateway key (JWT, basic or public routes).
    pub fn admits_keyless(&self, api_slug: &str) -> bool {
        self.keyless_slugs.contains_key(api_slug)
    }

    pub fn api_by_id(&self, id: &str) -> Option<&Arc<ApiEntry>> {
        self.apis_by_id.get(id)
    }

    /// Every API, in no order.
    pub fn apis(&self) -> impl Iterator<Item = &Arc<ApiEntry>> {
        self.apis_by_id.values()
    }

    pub fn api_count(&self) -> usize {
        self.apis_by_id.len()
    }

    /// Enabled channels of a tenant that serve `model`.
    pub fn channels_for<'a, 'q>(
        &'a self,
        tenant_id: &'q str,
        model: &'q str,
    ) -> impl Iterator<Item = &'a pb::SnapshotChannel> + use<'a, 'q> {
        self.serving(model, move |channel| channel.tenant_id == tenant_id)
    }

    /// Enabled operator channels offered to a tenant (other tenants'
    /// channels shared with it) that serve `model`.
    pub fn shared_channels_for<'a, 'q>(
        &'a self,
        tenant_id: &'q str,
        model: &'q str,
    ) -> impl Iterator<Item = &'a pb::SnapshotChannel> + use<'a, 'q> {
        self.serving(model, move |channel| offered(channel, tenant_id))
    }

    /// Enabled channels serving `model` that `whose` accepts.
    fn serving<'a, 'q, F>(
        &'a self,
        model: &'q str,
        whose: F,
    ) -> impl Iterator<Item = &'a pb::SnapshotChannel> + use<'a, 'q, F>
    where
        F: Fn(&pb::Channel) -> bool,
    {
        self.channels
            .values()
            .map(AsRef::as_ref)
            .filter(move |entry| {
                entry.channel.as_ref().is_some_and(|channel| {
                    channel.enabled
                        && whose(channel)
                        && channel.models.iter().any(|served| served == model)
                })
            })
    }

    /// Enabled channels a tenant's callers may reach: its own and the
    /// operator channels offered to it.
    pub fn reachable_channels<'a, 'q>(
        &'a self,
        tenant_id: &'q str,
    ) -> impl Iterator<Item = &'a pb::Channel> + use<'a, 'q> {
        self.channels
            .values()
            .filter_map(|entry| entry.channel.as_ref())
            .filter(move |channel| {
                channel.enabled && (channel.tenant_id == tenant_id || offered(channel, tenant_id))
            })
    }

    /// The pricing table of this version, for the shared pricing function.
    pub fn prices(&self) -> &PriceTable {
        &self.prices
    }

    fn upsert_api(&mut self, entry: pb::SnapshotApi) {
        let Some(api) = entry.api else { return };
        self.remove_api(&api.id);
        let entry = Arc::new(ApiEntry {
            upstream_auth_secret: entry.upstream_auth_secret,
            api,
        });
        self.apis_by_slug
            .entry(entry.api.tenant_id.clone())
            .or_default()
            .insert(entry.api.slug.clone(), Arc::clone(&entry));
        if keyless(&entry.api) {
            *self
                .keyless_slugs
                .entry(entry.api.slug.clone())
                .or_default() += 1;
        }
        self.apis_by_id.insert(entry.api.id.clone(), entry);
    }

    fn remove_api(&mut self, id: &str) {
        let Some(old) = self.apis_by_id.remove(id) else {
            return;
        };
        if let Some(by_slug) = self.apis_by_slug.get_mut(&old.api.tenant_id) {
            by_slug.remove(&old.api.slug);
        }
        if keyless(&old.api)
            && let Some(count) = self.keyless_slugs.get_mut(&old.api.slug)
        {
            *count -= 1;
            if *count == 0 {
                self.keyless_slugs.remove(&old.api.slug);
            }
        }
    }

    fn upsert_channel(&mut self, entry: pb::SnapshotChannel) {
        let Some(id) = entry.channel.as_ref().map(|channel| channel.id.clone()) else {
            return;
        };
        self.channels.insert(id, Arc::new(entry));
    }

    fn rebuild_prices(&mut self) {
        self.prices = Arc::new(price_table(
            self.model_prices.values(),
            self.group_prices.values(),
            self.group_multipliers.values(),
        ));
    }
}

/// The pricing table of a set of catalog prices: what both the edge (from
/// its snapshot) and the catalog's `Quote` price requests with.
/// An enabled API whose default or some route's auth mode is not KEY.
fn keyless(api: &pb::Api) -> bool {
    let not_key = |mode: i32| {
        !matches!(
            pb::AuthMode::try_from(mode),
            Ok(pb::AuthMode::Unspecified | pb::AuthMode::Key) | Err(_)
        )
    };
    api.enabled
        && (api.auth.as_ref().is_some_and(|auth| not_key(auth.mode))
            || api.routes.iter().any(|rule| not_key(rule.auth_mode)))
}

pub fn price_table<'a>(
    model_prices: impl IntoIterator<Item = &'a pb::ModelPrice>,
    group_prices: impl IntoIterator<Item = &'a pb::GroupPrice>,
    group_multipliers: impl IntoIterator<Item = &'a pb::GroupMultiplier>,
) -> PriceTable {
    let price = |id: &str, input: i64, output: i64, cached: Option<i64>| Price {
        id: id.to_owned(),
        input_micros_per_million: input,
        output_micros_per_million: output,
        cached_input_micros_per_million: cached,
    };
    let mut table = PriceTable::new();
    for model_price in model_prices {
        // An empty tenant id is a global price.
        table.insert_tenant_price(
            model_price.tenant_id.clone(),
            model_price.model.clone(),
            price(
                &model_price.id,
                model_price.input_micros_per_million_tokens,
                model_price.output_micros_per_million_tokens,
                model_price.cached_input_micros_per_million_tokens,
            ),
        );
    }
    for group_price in group_prices {
        table.insert_group_price(
            group_price.group_id.clone(),
            group_price.model.clone(),
            price(
                &group_price.id,
                group_price.input_micros_per_million_tokens,
                group_price.output_micros_per_million_tokens,
                group_price.cached_input_micros_per_million_tokens,
            ),
        );
    }
    for multiplier in group_multipliers {
        table.insert_group_multiplier(multiplier.group_id.clone(), multiplier.multiplier_ppm);
    }
    table
}

/// Whether another tenant's channel is offered to `tenant_id`.
fn offered(channel: &pb::Channel, tenant_id: &str) -> bool {
    channel.tenant_id != tenant_id
        && (channel.shared_with_all_tenants
            || channel.shared_tenant_ids.iter().any(|id| id == tenant_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(id: &str, tenant: &str, slug: &str) -> pb::SnapshotApi {
        pb::SnapshotApi {
            api: Some(pb::Api {
                id: id.to_owned(),
                tenant_id: tenant.to_owned(),
                slug: slug.to_owned(),
                ..Default::default()
            }),
            upstream_auth_secret: format!("secret-{id}"),
        }
    }

    #[test]
    fn snapshot_then_changes_keep_the_indexes_consistent() {
        let view = CatalogView::from_snapshot(pb::Snapshot {
            version: 7,
            apis: vec![api("a1", "t1", "orders"), api("a2", "t2", "orders")],
            ..Default::default()
        });
        assert!(view.primed);
        assert_eq!(
            view.api("t1", "orders").unwrap().upstream_auth_secret,
            "secret-a1"
        );
        assert_eq!(view.api("t2", "orders").unwrap().api.id, "a2");
        assert!(view.api("t1", "missing").is_none());

        // A slug rename moves the index entry; a delete removes it.
        let renamed = view.apply(pb::SnapshotChange {
            version: 8,
            upserted_apis: vec![api("a1", "t1", "orders-v2")],
            deleted_api_ids: vec!["a2".to_owned()],
            ..Default::default()
        });
        assert_eq!(renamed.version, 8);
        assert!(renamed.api("t1", "orders").is_none());
        assert!(renamed.api("t1", "orders-v2").is_some());
        assert!(renamed.api("t2", "orders").is_none());
        assert_eq!(renamed.api_count(), 1);
        // The old view is untouched (readers holding it are unaffected).
        assert!(view.api("t1", "orders").is_some());
    }

    #[test]
    fn prices_follow_changes() {
        let view = CatalogView::from_snapshot(pb::Snapshot {
            version: 1,
            model_prices: vec![pb::ModelPrice {
                id: "p1".to_owned(),
                model: "gpt-4o".to_owned(),
                input_micros_per_million_tokens: 1_000_000,
                output_micros_per_million_tokens: 1_000_000,
                ..Default::default()
            }],
            ..Default::default()
        });
        let usage = gateway_pricing::Usage {
            prompt_tokens: 1_000,
            completion_tokens: 0,
            cached_tokens: 0,
        };
        assert_eq!(
            view.prices()
                .quote("t1", None, "gpt-4o", &usage)
                .unwrap()
                .cost_micros,
            1_000
        );
        let without = view.apply(pb::SnapshotChange {
            version: 2,
            deleted_model_price_ids: vec!["p1".to_owned()],
            ..Default::default()
        });
        assert!(
            without
                .prices()
                .quote("t1", None, "gpt-4o", &usage)
                .is_err()
        );
    }
}
