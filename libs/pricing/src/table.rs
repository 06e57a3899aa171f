//! Step 1 of the rule: which price applies, and the quote built from it.

use std::collections::HashMap;

use crate::cost::{Price, UNIT_MULTIPLIER_PPM, Usage, cost_micros};
use crate::error::PricingError;

/// Which price a quote used, most specific first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PriceSource {
    /// The requested group's override price for the model.
    GroupOverride,
    /// The tenant's own price for the model.
    Tenant,
    /// The global price for the model.
    Global,
}

/// The cost of one request and what it was computed from. Borrows the
/// price id from the table so quoting never allocates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quote<'a> {
    pub cost_micros: i64,
    pub source: PriceSource,
    pub price_id: &'a str,
    pub input_micros_per_million: i64,
    pub output_micros_per_million: i64,
    /// The price cached prompt tokens were charged: the cached price, else
    /// the input price.
    pub cached_input_micros_per_million: i64,
    pub multiplier_ppm: i64,
}

/// Every price and multiplier, indexed for the per-request lookup.
///
/// Maps are nested rather than keyed by `(String, String)` so a lookup
/// borrows the caller's `&str`s and allocates nothing. Build it with the
/// `insert_*` methods, then share it read-only (e.g. behind an `ArcSwap`)
/// and rebuild on change.
#[derive(Debug, Clone, Default)]
pub struct PriceTable {
    /// model -> price.
    global: HashMap<String, Price>,
    /// tenant_id -> model -> price; never holds the empty tenant id.
    tenants: HashMap<String, HashMap<String, Price>>,
    /// group_id -> model -> override price.
    group_overrides: HashMap<String, HashMap<String, Price>>,
    /// group_id -> multiplier in parts per million.
    group_multipliers: HashMap<String, i64>,
}

impl PriceTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the global price of `model`; returns the price it replaces.
    pub fn insert_global_price(&mut self, model: impl Into<String>, price: Price) -> Option<Price> {
        self.global.insert(model.into(), price)
    }

    /// Sets `tenant_id`'s own price of `model`; returns the price it
    /// replaces. An empty `tenant_id` is a global price, as in the catalog's
    /// `ModelPrice`, so stored rows can be loaded without sorting them.
    pub fn insert_tenant_price(
        &mut self,
        tenant_id: impl Into<String>,
        model: impl Into<String>,
        price: Price,
    ) -> Option<Price> {
        let tenant_id = tenant_id.into();
        if tenant_id.is_empty() {
            return self.insert_global_price(model, price);
        }
        self.tenants
            .entry(tenant_id)
            .or_default()
            .insert(model.into(), price)
    }

    /// Sets `group_id`'s override price of `model`; returns the price it
    /// replaces.
    pub fn insert_group_price(
        &mut self,
        group_id: impl Into<String>,
        model: impl Into<String>,
        price: Price,
    ) -> Option<Price> {
        self.group_overrides
            .entry(group_id.into())
            .or_default()
            .insert(model.into(), price)
    }

    /// Sets `group_id`'s multiplier in parts per million (1_000_000 = 1x);
    /// returns the multiplier it replaces. A negative multiplier is stored
    /// but every quote for the group then fails naming `multiplier_ppm`.
    pub fn insert_group_multiplier(
        &mut self,
        group_id: impl Into<String>,
        multiplier_ppm: i64,
    ) -> Option<i64> {
        self.group_multipliers
            .insert(group_id.into(), multiplier_ppm)
    }

    /// Prices `usage` of `model` for a request of `tenant_id`, billed to
    /// `group_id` when given: the group's override price, else the tenant's
    /// price, else the global one, times the group's multiplier (1x without
    /// one), rounded up once to a whole micro-USD.
    ///
    /// The table does not check that the group belongs to the tenant; the
    /// caller resolves the group from the authenticated key.
    pub fn quote<'a>(
        &'a self,
        tenant_id: &str,
        group_id: Option<&str>,
        model: &str,
        usage: &Usage,
    ) -> Result<Quote<'a>, PricingError> {
        let Some((source, price)) = self.find_price(tenant_id, group_id, model) else {
            return Err(PricingError::Unpriced {
                model: model.to_owned(),
            });
        };
        let multiplier_ppm = group_id
            .and_then(|group_id| self.group_multipliers.get(group_id))
            .copied()
            .unwrap_or(UNIT_MULTIPLIER_PPM);
        Ok(Quote {
            cost_micros: cost_micros(price, multiplier_ppm, usage)?,
            source,
            price_id: &price.id,
            input_micros_per_million: price.input_micros_per_million,
            output_micros_per_million: price.output_micros_per_million,
            cached_input_micros_per_million: price.effective_cached_input_micros_per_million(),
            multiplier_ppm,
        })
    }

    fn find_price(
        &self,
        tenant_id: &str,
        group_id: Option<&str>,
        model: &str,
    ) -> Option<(PriceSource, &Price)> {
        let group_override = group_id
            .and_then(|group_id| self.group_overrides.get(group_id))
            .and_then(|prices| prices.get(model));
        if let Some(price) = group_override {
            return Some((PriceSource::GroupOverride, price));
        }
        let tenant = self
            .tenants
            .get(tenant_id)
            .and_then(|prices| prices.get(model));
        if let Some(price) = tenant {
            return Some((PriceSource::Tenant, price));
        }
        self.global
            .get(model)
            .map(|price| (PriceSource::Global, price))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Field;

    /// `micros` per million for input, twice that for output, no cached price.
    fn price(id: &str, micros: i64) -> Price {
        Price {
            id: id.to_owned(),
            input_micros_per_million: micros,
            output_micros_per_million: 2 * micros,
            cached_input_micros_per_million: None,
        }
    }

    /// One million prompt tokens: the cost is the input price.
    const MILLION_PROMPT: Usage = Usage {
        prompt_tokens: 1_000_000,
        completion_tokens: 0,
        cached_tokens: 0,
    };

    /// Global, tenant and group prices for "gpt" that differ, so the cost
    /// tells which one was used.
    fn table() -> PriceTable {
        let mut table = PriceTable::new();
        table.insert_global_price("gpt", price("global-gpt", 1_000));
        table.insert_global_price("claude", price("global-claude", 5_000));
        table.insert_tenant_price("acme", "gpt", price("acme-gpt", 2_000));
        table.insert_tenant_price("globex", "gpt", price("globex-gpt", 3_000));
        table.insert_tenant_price("globex", "claude", price("globex-claude", 6_000));
        table.insert_group_price("acme-research", "gpt", price("research-gpt", 4_000));
        table
    }

    #[test]
    fn group_override_wins_over_tenant_and_global_prices() {
        let table = table();
        let quote = table
            .quote("acme", Some("acme-research"), "gpt", &MILLION_PROMPT)
            .unwrap();
        assert_eq!(quote.source, PriceSource::GroupOverride);
        assert_eq!(quote.price_id, "research-gpt");
        assert_eq!(quote.cost_micros, 4_000);
    }

    #[test]
    fn tenant_price_wins_over_global_price() {
        let table = table();
        let quote = table.quote("acme", None, "gpt", &MILLION_PROMPT).unwrap();
        assert_eq!(quote.source, PriceSource::Tenant);
        assert_eq!(quote.price_id, "acme-gpt");
        assert_eq!(quote.cost_micros, 2_000);
        // A group without an override for the model falls through too.
        let quote = table
            .quote("acme", Some("acme-support"), "gpt", &MILLION_PROMPT)
            .unwrap();
        assert_eq!(quote.source, PriceSource::Tenant);
    }

    #[test]
    fn global_price_applies_when_the_tenant_has_none_for_the_model() {
        let table = table();
        let quote = table
            .quote("acme", Some("acme-research"), "claude", &MILLION_PROMPT)
            .unwrap();
        assert_eq!(quote.source, PriceSource::Global);
        assert_eq!(quote.price_id, "global-claude");
        assert_eq!(quote.cost_micros, 5_000);
    }

    #[test]
    fn another_tenants_price_is_never_used() {
        let table = table();
        // globex has its own "claude" price; acme and unknown tenants get the global one.
        for tenant_id in ["acme", "initech", ""] {
            let quote = table
                .quote(tenant_id, None, "claude", &MILLION_PROMPT)
                .unwrap();
            assert_eq!(quote.price_id, "global-claude", "tenant {tenant_id:?}");
        }
        let quote = table
            .quote("globex", None, "claude", &MILLION_PROMPT)
            .unwrap();
        assert_eq!(quote.price_id, "globex-claude");
    }

    #[test]
    fn override_applies_only_when_its_group_is_given() {
        let table = table();
        let quote = table.quote("acme", None, "gpt", &MILLION_PROMPT).unwrap();
        assert_eq!(quote.price_id, "acme-gpt");
        let quote = table
            .quote("acme", Some("acme-sales"), "gpt", &MILLION_PROMPT)
            .unwrap();
        assert_eq!(quote.price_id, "acme-gpt");
    }

    #[test]
    fn multiplier_applies_to_override_prices() {
        let mut table = table();
        table.insert_group_multiplier("acme-research", 1_500_000);
        let quote = table
            .quote("acme", Some("acme-research"), "gpt", &MILLION_PROMPT)
            .unwrap();
        assert_eq!(quote.source, PriceSource::GroupOverride);
        assert_eq!(quote.multiplier_ppm, 1_500_000);
        assert_eq!(quote.cost_micros, 6_000);
    }

    #[test]
    fn multiplier_applies_to_tenant_and_global_prices_of_the_group() {
        let mut table = table();
        table.insert_group_multiplier("acme-support", 500_000);
        let tenant = table
            .quote("acme", Some("acme-support"), "gpt", &MILLION_PROMPT)
            .unwrap();
        assert_eq!(
            (tenant.source, tenant.cost_micros),
            (PriceSource::Tenant, 1_000)
        );
        let global = table
            .quote("acme", Some("acme-support"), "claude", &MILLION_PROMPT)
            .unwrap();
        assert_eq!(
            (global.source, global.cost_micros),
            (PriceSource::Global, 2_500)
        );
    }

    #[test]
    fn no_group_or_a_group_without_multiplier_is_one_x() {
        let mut table = table();
        table.insert_group_multiplier("acme-support", 500_000);
        for group_id in [None, Some("acme-research")] {
            let quote = table
                .quote("acme", group_id, "gpt", &MILLION_PROMPT)
                .unwrap();
            assert_eq!(
                quote.multiplier_ppm, UNIT_MULTIPLIER_PPM,
                "group {group_id:?}"
            );
        }
    }

    #[test]
    fn unpriced_model_is_an_error_naming_the_model() {
        let error = table()
            .quote("globex", Some("acme-research"), "llama", &MILLION_PROMPT)
            .unwrap_err();
        assert_eq!(
            error,
            PricingError::Unpriced {
                model: "llama".to_owned()
            }
        );
        assert_eq!(error.to_string(), "model llama has no price");
    }

    #[test]
    fn empty_tenant_id_is_a_global_price() {
        let mut table = PriceTable::new();
        table.insert_tenant_price("", "gpt", price("global-gpt", 1_000));
        let quote = table.quote("acme", None, "gpt", &MILLION_PROMPT).unwrap();
        assert_eq!(quote.source, PriceSource::Global);
    }

    #[test]
    fn insert_replaces_and_returns_the_previous_price() {
        let mut table = table();
        let previous = table.insert_tenant_price("acme", "gpt", price("acme-gpt-2", 2_500));
        assert_eq!(previous.map(|price| price.id), Some("acme-gpt".to_owned()));
        let quote = table.quote("acme", None, "gpt", &MILLION_PROMPT).unwrap();
        assert_eq!((quote.price_id, quote.cost_micros), ("acme-gpt-2", 2_500));
    }

    #[test]
    fn quote_reports_the_prices_it_charged() {
        let mut table = PriceTable::new();
        let with_cached = Price {
            cached_input_micros_per_million: Some(250),
            ..price("with-cached", 1_000)
        };
        table.insert_global_price("with-cached", with_cached);
        table.insert_global_price("without-cached", price("without-cached", 1_000));
        let usage = Usage {
            prompt_tokens: 3_000_000,
            completion_tokens: 1_000_000,
            cached_tokens: 2_000_000,
        };

        let quote = table.quote("acme", None, "with-cached", &usage).unwrap();
        assert_eq!(
            (
                quote.input_micros_per_million,
                quote.output_micros_per_million,
                quote.cached_input_micros_per_million
            ),
            (1_000, 2_000, 250)
        );
        assert_eq!(quote.cost_micros, 1_000 + 2 * 250 + 2_000);

        let quote = table.quote("acme", None, "without-cached", &usage).unwrap();
        assert_eq!(quote.cached_input_micros_per_million, 1_000);
        assert_eq!(quote.cost_micros, 3 * 1_000 + 2_000);
    }

    #[test]
    fn negative_group_multiplier_fails_the_quote() {
        let mut table = table();
        table.insert_group_multiplier("acme-research", -1);
        let error = table
            .quote("acme", Some("acme-research"), "gpt", &MILLION_PROMPT)
            .unwrap_err();
        assert_eq!(
            error,
            PricingError::Negative {
                field: Field::MultiplierPpm,
                value: -1
            }
        );
    }

    #[test]
    fn invalid_usage_fails_the_quote() {
        let usage = Usage {
            prompt_tokens: 1,
            completion_tokens: 0,
            cached_tokens: 2,
        };
        let error = table().quote("acme", None, "gpt", &usage).unwrap_err();
        assert!(matches!(error, PricingError::CachedExceedsPrompt { .. }));
    }
}
