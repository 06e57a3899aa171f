//! Step 2 and 3 of the rule: the integer cost of a usage at one price.

use crate::error::{Field, PricingError};

/// The multiplier of a group without one, or of a request without a group:
/// 1x in parts per million.
pub const UNIT_MULTIPLIER_PPM: i64 = 1_000_000;

/// Prices are per million tokens and multipliers per million parts, so a
/// cost in micro-USD is `raw * multiplier_ppm / (10^6 * 10^6)`.
const SCALE: u128 = 1_000_000_000_000;

/// The price of one model in micro-USD per million tokens
/// (e.g. $2.50 / 1M tokens = `2_500_000`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Price {
    /// The stored price's id, reported back in a [`Quote`](crate::Quote).
    pub id: String,
    pub input_micros_per_million: i64,
    pub output_micros_per_million: i64,
    /// The price of cached prompt tokens; `None` = the input price.
    pub cached_input_micros_per_million: Option<i64>,
}

impl Price {
    /// The price of cached prompt tokens: the cached price, else the input
    /// price.
    pub fn effective_cached_input_micros_per_million(&self) -> i64 {
        self.cached_input_micros_per_million
            .unwrap_or(self.input_micros_per_million)
    }

    /// Refuses a negative price, naming the field. [`cost_micros`] checks
    /// this itself; it is public so a price can be refused when it is
    /// written rather than when it is first used.
    pub fn validate(&self) -> Result<(), PricingError> {
        self.unsigned().map(|_| ())
    }

    /// The input, output and effective cached input prices, validated.
    fn unsigned(&self) -> Result<(u128, u128, u128), PricingError> {
        let input = non_negative(Field::InputPrice, self.input_micros_per_million)?;
        let output = non_negative(Field::OutputPrice, self.output_micros_per_million)?;
        let cached_input = match self.cached_input_micros_per_million {
            Some(cached_input) => non_negative(Field::CachedInputPrice, cached_input)?,
            None => input,
        };
        Ok((input, output, cached_input))
    }
}

/// The tokens of one request. `cached_tokens` are part of `prompt_tokens`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cached_tokens: i64,
}

impl Usage {
    /// Refuses negative counts and more cached than prompt tokens.
    pub fn validate(&self) -> Result<(), PricingError> {
        self.unsigned().map(|_| ())
    }

    /// Uncached prompt, cached prompt and completion tokens, validated.
    fn unsigned(&self) -> Result<(u128, u128, u128), PricingError> {
        let prompt = non_negative(Field::PromptTokens, self.prompt_tokens)?;
        let completion = non_negative(Field::CompletionTokens, self.completion_tokens)?;
        let cached = non_negative(Field::CachedTokens, self.cached_tokens)?;
        let Some(uncached) = prompt.checked_sub(cached) else {
            return Err(PricingError::CachedExceedsPrompt {
                cached_tokens: self.cached_tokens,
                prompt_tokens: self.prompt_tokens,
            });
        };
        Ok((uncached, cached, completion))
    }
}

/// The cost in micro-USD of `usage` at `price` times `multiplier_ppm`:
/// `ceil(raw * multiplier_ppm / 10^12)`, see the [crate docs](crate) for the
/// rule and a worked example.
///
/// Fails on a negative count, price or multiplier, on more cached than
/// prompt tokens, and with [`PricingError::Overflow`] when the cost does not
/// fit in `i64`. Never wraps and never panics.
pub fn cost_micros(price: &Price, multiplier_ppm: i64, usage: &Usage) -> Result<i64, PricingError> {
    let (uncached, cached, completion) = usage.unsigned()?;
    let (input, output, cached_input) = price.unsigned()?;
    let multiplier = non_negative(Field::MultiplierPpm, multiplier_ppm)?;

    // Each product is below 2^126 and uncached + cached fits in i64, so
    // `raw` is below 2^127: these checks cannot fail, but they cost nothing
    // next to a hash lookup and keep "never wraps" obvious.
    let raw = uncached
        .checked_mul(input)
        .zip(cached.checked_mul(cached_input))
        .and_then(|(uncached_cost, cached_cost)| uncached_cost.checked_add(cached_cost))
        .zip(completion.checked_mul(output))
        .and_then(|(prompt_cost, completion_cost)| prompt_cost.checked_add(completion_cost))
        .ok_or(PricingError::Overflow)?;
    // A product beyond u128 is at least 2^128 / 10^12 > i64::MAX after
    // scaling, so reporting it as an overflow is exact, not conservative.
    let scaled = raw.checked_mul(multiplier).ok_or(PricingError::Overflow)?;
    i64::try_from(scaled.div_ceil(SCALE)).map_err(|_| PricingError::Overflow)
}

/// Validation and widening in one step: `value` as `u128`, or an error
/// naming `field` when it is negative.
fn non_negative(field: Field, value: i64) -> Result<u128, PricingError> {
    u128::try_from(value).map_err(|_| PricingError::Negative { field, value })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn price(input: i64, output: i64, cached_input: Option<i64>) -> Price {
        Price {
            id: "price".to_owned(),
            input_micros_per_million: input,
            output_micros_per_million: output,
            cached_input_micros_per_million: cached_input,
        }
    }

    fn usage(prompt_tokens: i64, completion_tokens: i64, cached_tokens: i64) -> Usage {
        Usage {
            prompt_tokens,
            completion_tokens,
            cached_tokens,
        }
    }

    #[test]
    fn fractional_micro_dollar_rounds_up() {
        // 1 token at $0.15 / 1M = 0.15 micro-USD.
        let cost = cost_micros(
            &price(150_000, 0, None),
            UNIT_MULTIPLIER_PPM,
            &usage(1, 0, 0),
        );
        assert_eq!(cost, Ok(1));
        let cost = cost_micros(
            &price(0, 150_000, None),
            UNIT_MULTIPLIER_PPM,
            &usage(0, 1, 0),
        );
        assert_eq!(cost, Ok(1));
    }

    #[test]
    fn whole_micro_dollars_are_not_rounded() {
        // 1M prompt tokens at $2.50 / 1M and 1M completion tokens at $10 / 1M.
        let cost = cost_micros(
            &price(2_500_000, 10_000_000, None),
            UNIT_MULTIPLIER_PPM,
            &usage(1_000_000, 1_000_000, 0),
        );
        assert_eq!(cost, Ok(12_500_000));
        // 7 tokens at 1 micro-USD each: exact, no rounding up to 8.
        let cost = cost_micros(
            &price(1_000_000, 0, None),
            UNIT_MULTIPLIER_PPM,
            &usage(7, 0, 0),
        );
        assert_eq!(cost, Ok(7));
    }

    #[test]
    fn components_are_summed_before_the_single_rounding_step() {
        // 0.5 + 0.5 micro-USD = 1, not 1 + 1 from rounding each term.
        let cost = cost_micros(
            &price(500_000, 500_000, None),
            UNIT_MULTIPLIER_PPM,
            &usage(1, 1, 0),
        );
        assert_eq!(cost, Ok(1));
        // 0.4 micro-USD * 2.5 = 1 exactly, not ceil(0.4) * 2.5 = 3.
        let cost = cost_micros(&price(400_000, 0, None), 2_500_000, &usage(1, 0, 0));
        assert_eq!(cost, Ok(1));
    }

    #[test]
    fn cached_tokens_are_priced_at_the_cached_price_when_set() {
        // 1000 uncached at 2.5 + 1000 cached at 1.25 + 100 completion at 10.
        let cost = cost_micros(
            &price(2_500_000, 10_000_000, Some(1_250_000)),
            UNIT_MULTIPLIER_PPM,
            &usage(2_000, 100, 1_000),
        );
        assert_eq!(cost, Ok(2_500 + 1_250 + 1_000));
    }

    #[test]
    fn cached_tokens_are_priced_at_the_input_price_when_cached_price_is_unset() {
        let cost = cost_micros(
            &price(2_500_000, 10_000_000, None),
            UNIT_MULTIPLIER_PPM,
            &usage(2_000, 100, 1_000),
        );
        assert_eq!(cost, Ok(5_000 + 1_000));
    }

    #[test]
    fn free_cached_tokens_cost_nothing() {
        let cost = cost_micros(
            &price(2_500_000, 0, Some(0)),
            UNIT_MULTIPLIER_PPM,
            &usage(10, 0, 10),
        );
        assert_eq!(cost, Ok(0));
    }

    #[test]
    fn zero_usage_costs_nothing() {
        let cost = cost_micros(
            &price(2_500_000, 10_000_000, None),
            1_500_000,
            &Usage::default(),
        );
        assert_eq!(cost, Ok(0));
    }

    #[test]
    fn zero_multiplier_costs_nothing() {
        let cost = cost_micros(
            &price(2_500_000, 10_000_000, None),
            0,
            &usage(1_000, 1_000, 0),
        );
        assert_eq!(cost, Ok(0));
    }

    #[test]
    fn multiplier_scales_the_cost() {
        let table_price = price(1_000_000, 0, None);
        assert_eq!(cost_micros(&table_price, 500_000, &usage(10, 0, 0)), Ok(5));
        assert_eq!(
            cost_micros(&table_price, 1_500_000, &usage(10, 0, 0)),
            Ok(15)
        );
        // 1.5 micro-USD rounds up to 2.
        assert_eq!(cost_micros(&table_price, 1_500_000, &usage(1, 0, 0)), Ok(2));
    }

    #[test]
    fn negative_inputs_are_refused_naming_the_field() {
        let valid_price = price(1, 1, Some(1));
        let cases = [
            (valid_price.clone(), 1, usage(-1, 0, 0), Field::PromptTokens),
            (
                valid_price.clone(),
                1,
                usage(0, -1, 0),
                Field::CompletionTokens,
            ),
            (valid_price.clone(), 1, usage(0, 0, -1), Field::CachedTokens),
            (price(-1, 1, None), 1, usage(0, 0, 0), Field::InputPrice),
            (price(1, -1, None), 1, usage(0, 0, 0), Field::OutputPrice),
            (
                price(1, 1, Some(-1)),
                1,
                usage(0, 0, 0),
                Field::CachedInputPrice,
            ),
            (valid_price, -1, usage(0, 0, 0), Field::MultiplierPpm),
        ];
        for (case_price, multiplier_ppm, case_usage, field) in cases {
            let error = cost_micros(&case_price, multiplier_ppm, &case_usage).unwrap_err();
            assert_eq!(error, PricingError::Negative { field, value: -1 });
            assert!(error.to_string().starts_with(field.as_str()), "{error}");
        }
    }

    #[test]
    fn negative_input_price_is_refused_even_when_the_cached_price_is_set() {
        let error = price(-5, 1, Some(1)).validate().unwrap_err();
        assert_eq!(
            error,
            PricingError::Negative {
                field: Field::InputPrice,
                value: -5
            }
        );
    }

    #[test]
    fn more_cached_than_prompt_tokens_is_refused() {
        let error =
            cost_micros(&price(1, 1, None), UNIT_MULTIPLIER_PPM, &usage(5, 0, 6)).unwrap_err();
        assert_eq!(
            error,
            PricingError::CachedExceedsPrompt {
                cached_tokens: 6,
                prompt_tokens: 5
            }
        );
        // All prompt tokens cached is fine.
        assert_eq!(
            cost_micros(
                &price(1_000_000, 0, Some(0)),
                UNIT_MULTIPLIER_PPM,
                &usage(5, 0, 5)
            ),
            Ok(0)
        );
    }

    #[test]
    fn huge_values_overflow_instead_of_wrapping() {
        let max_price = price(i64::MAX, i64::MAX, Some(i64::MAX));
        let max_usage = usage(i64::MAX, i64::MAX, i64::MAX / 2);
        assert_eq!(
            cost_micros(&max_price, i64::MAX, &max_usage),
            Err(PricingError::Overflow)
        );
        assert_eq!(
            cost_micros(&max_price, UNIT_MULTIPLIER_PPM, &max_usage),
            Err(PricingError::Overflow)
        );
    }

    #[test]
    fn largest_cost_is_returned_and_one_more_micro_overflows() {
        // i64::MAX tokens at 1 micro-USD each is exactly i64::MAX.
        let one_micro_per_token = price(1_000_000, 1, None);
        assert_eq!(
            cost_micros(
                &one_micro_per_token,
                UNIT_MULTIPLIER_PPM,
                &usage(i64::MAX, 0, 0)
            ),
            Ok(i64::MAX)
        );
        // One more completion token at 10^-6 micro-USD rounds up past it.
        assert_eq!(
            cost_micros(
                &one_micro_per_token,
                UNIT_MULTIPLIER_PPM,
                &usage(i64::MAX, 1, 0)
            ),
            Err(PricingError::Overflow)
        );
    }

    /// A 64-bit linear congruential generator (Knuth's MMIX constants):
    /// deterministic, so a failure reproduces, and no extra dependency.
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            self.0
        }

        /// A non-negative i64 whose bit length is uniform in 0..=63, so
        /// small, realistic and huge values all occur often.
        fn magnitude(&mut self) -> i64 {
            let shift = self.next() % 64;
            i64::try_from((self.next() >> 1) >> shift).unwrap()
        }

        /// A value in 0..=max.
        fn up_to(&mut self, max: i64) -> i64 {
            let bound = u64::try_from(max).unwrap() + 1;
            i64::try_from(self.next() % bound).unwrap()
        }
    }

    /// The rule computed independently: u128 arithmetic with an unchecked
    /// sum (below 3 * 2^126), ceiling as floor plus "any remainder". Gives
    /// the cost and whether it was rounded up; `None` is an overflow.
    fn expected_cost(price: &Price, multiplier_ppm: i64, usage: &Usage) -> Option<(i64, bool)> {
        let wide = |value: i64| u128::try_from(value).unwrap();
        let cached_input = price
            .cached_input_micros_per_million
            .unwrap_or(price.input_micros_per_million);
        let raw = wide(usage.prompt_tokens - usage.cached_tokens)
            * wide(price.input_micros_per_million)
            + wide(usage.cached_tokens) * wide(cached_input)
            + wide(usage.completion_tokens) * wide(price.output_micros_per_million);
        let numerator = raw.checked_mul(wide(multiplier_ppm))?;
        let denominator = 1_000_000u128 * 1_000_000;
        let has_remainder = numerator % denominator != 0;
        let ceiling = numerator / denominator + u128::from(has_remainder);
        Some((i64::try_from(ceiling).ok()?, has_remainder))
    }

    #[test]
    fn cost_is_the_ceiling_of_the_exact_rational_for_many_inputs() {
        let mut random = Lcg(0x5eed_cafe_f00d_0001);
        let (mut exact, mut rounded_up, mut overflowed) = (0, 0, 0);
        for _ in 0..200_000 {
            let prompt_tokens = random.magnitude();
            let test_usage = usage(
                prompt_tokens,
                random.magnitude(),
                random.up_to(prompt_tokens),
            );
            let cached_input = random.next().is_multiple_of(2).then(|| random.magnitude());
            let test_price = price(random.magnitude(), random.magnitude(), cached_input);
            let multiplier_ppm = match random.next() % 4 {
                0 => UNIT_MULTIPLIER_PPM,
                1 => random.up_to(10 * UNIT_MULTIPLIER_PPM),
                _ => random.magnitude(),
            };

            let actual = cost_micros(&test_price, multiplier_ppm, &test_usage);
            let context = format!("{test_price:?} x{multiplier_ppm} {test_usage:?}");
            match expected_cost(&test_price, multiplier_ppm, &test_usage) {
                Some((expected, was_rounded)) => {
                    assert_eq!(actual, Ok(expected), "{context}");
                    if was_rounded {
                        rounded_up += 1;
                    } else {
                        exact += 1;
                    }
                }
                None => {
                    assert_eq!(actual, Err(PricingError::Overflow), "{context}");
                    overflowed += 1;
                }
            }
        }
        // The generator must exercise every outcome, not just one.
        assert!(exact > 5_000, "only {exact} exact");
        assert!(rounded_up > 5_000, "only {rounded_up} rounded up");
        assert!(overflowed > 5_000, "only {overflowed} overflowed");
    }
}
