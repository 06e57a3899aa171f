//! Money before forwarding: the estimate of a request (prompt tokens from
//! the tokenizer, completion tokens = its max tokens) priced with the
//! shared pricing function and the caller's group, and the largest answer
//! a remaining budget still pays for, so the provider stops in budget.

use gateway_pricing::{PriceTable, PricingError, Quote, Usage};

/// Who pays, for the price lookup.
#[derive(Debug, Clone, Copy)]
pub struct Payer<'a> {
    pub tenant_id: &'a str,
    pub group_id: Option<&'a str>,
}

/// The cost of `usage` of `model`.
pub fn quote<'a>(
    table: &'a PriceTable,
    payer: Payer<'_>,
    model: &str,
    usage: &Usage,
) -> Result<Quote<'a>, PricingError> {
    table.quote(payer.tenant_id, payer.group_id, model, usage)
}

/// The most completion tokens whose cost, with `prompt_tokens` before
/// them, stays within `budget_micros` at `quote`'s rates; `i64::MAX` when
/// output is free.
pub fn affordable_completion(quote: &Quote<'_>, prompt_tokens: i64, budget_micros: i64) -> i64 {
    const SCALE: u128 = 1_000_000_000_000;
    let unsigned = |value: i64| u128::try_from(value).unwrap_or(0);
    let output = unsigned(quote.output_micros_per_million);
    if output == 0 {
        return i64::MAX;
    }
    let multiplier = unsigned(quote.multiplier_ppm).max(1);
    // cost = ceil(raw * multiplier / SCALE) <= budget
    //   <=> raw <= budget * SCALE / multiplier (floored).
    let raw_budget = unsigned(budget_micros).saturating_mul(SCALE) / multiplier;
    let prompt = unsigned(prompt_tokens).saturating_mul(unsigned(quote.input_micros_per_million));
    let left = raw_budget.saturating_sub(prompt);
    i64::try_from(left / output).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_pricing::Price;

    fn table() -> PriceTable {
        let mut table = PriceTable::new();
        table.insert_global_price(
            "gpt-x",
            Price {
                id: "p".to_owned(),
                // $2 / $8 per million tokens.
                input_micros_per_million: 2_000_000,
                output_micros_per_million: 8_000_000,
                cached_input_micros_per_million: None,
            },
        );
        table
    }

    fn payer() -> Payer<'static> {
        Payer {
            tenant_id: "t",
            group_id: None,
        }
    }

    #[test]
    fn the_affordable_answer_fits_the_budget_exactly() {
        let table = table();
        let usage = Usage {
            prompt_tokens: 1_000,
            completion_tokens: 0,
            cached_tokens: 0,
        };
        let quoted = quote(&table, payer(), "gpt-x", &usage).unwrap();
        // 1000 prompt tokens cost 2000 micro-USD; 100 micro-USD more buys
        // 12 output tokens at 8 micro-USD each (96), not 13 (104).
        let most = affordable_completion(&quoted, 1_000, 2_100);
        assert_eq!(most, 12);
        let cost = |completion| {
            let usage = Usage {
                completion_tokens: completion,
                ..usage
            };
            quote(&table, payer(), "gpt-x", &usage).unwrap().cost_micros
        };
        assert!(cost(most) <= 2_100 && cost(most + 1) > 2_100);
        assert_eq!(
            affordable_completion(&quoted, 1_000, 1_000),
            0,
            "not even the prompt"
        );
    }

    #[test]
    fn unpriced_models_are_an_error_never_free() {
        assert!(quote(&table(), payer(), "unknown", &Usage::default()).is_err());
    }
}
