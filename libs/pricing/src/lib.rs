//! The gateway's one pricing rule. The edge prices every request with
//! [`PriceTable::quote`] and the catalog's `Quote` RPC answers with it, so
//! the two cannot disagree. Plain Rust: no async, no gRPC types; callers
//! adapt (`proto/gateway/catalog/v1/pricing.proto` states the same rule).
//!
//! # The rule
//!
//! 1. **Price.** The group's override price for the model, if a group is
//!    given and has one; else the tenant's own price for the model; else the
//!    global price. None is [`PricingError::Unpriced`].
//! 2. **Raw cost.** Prices are integer micro-USD per million tokens, so
//!
//!    ```text
//!    raw = (prompt_tokens - cached_tokens) * input
//!        + cached_tokens * cached_input      (input when unset)
//!        + completion_tokens * output
//!    ```
//!
//!    is exact, in micro-USD × 10^6.
//! 3. **One rounding step, upward.**
//!
//!    ```text
//!    cost_micros = ceil(raw * multiplier_ppm / 10^12)
//!    ```
//!
//!    where 10^12 is 10^6 (prices per million tokens) × 10^6 (multiplier in
//!    parts per million); `multiplier_ppm` is the group's multiplier, or
//!    [`UNIT_MULTIPLIER_PPM`] (1x) without a group or multiplier. It applies
//!    to override prices too. Everything before the division is exact in
//!    128-bit integers, and the division is the only rounding, so the
//!    result does not depend on the order of the terms. Rounding up means a
//!    request that costs anything costs at least one micro-USD: one token at
//!    $0.15 / 1M is 0.15 micro-USD and is billed 1. Rounding each term, or
//!    before applying the multiplier, would overcharge.
//!
//! Negative counts, prices or multipliers and more cached than prompt
//! tokens are refused naming the field ([`PricingError::Negative`],
//! [`PricingError::CachedExceedsPrompt`]); a cost beyond `i64` is
//! [`PricingError::Overflow`]. Nothing wraps or panics.
//!
//! # Worked example
//!
//! $2.50 / 1M input, $1.25 / 1M cached input, $10 / 1M output, a group
//! multiplier of 1.5x; 1001 prompt tokens of which 200 cached, 333
//! completion tokens:
//!
//! ```text
//! raw    = 801 * 2_500_000 + 200 * 1_250_000 + 333 * 10_000_000
//!        = 2_002_500_000 + 250_000_000 + 3_330_000_000
//!        = 5_582_500_000                    (5582.5 micro-USD at 1x)
//! scaled = 5_582_500_000 * 1_500_000 = 8_373_750_000_000_000
//! cost   = ceil(8_373_750_000_000_000 / 10^12) = ceil(8373.75) = 8374 micro-USD
//! ```
//!
//! ```
//! use gateway_pricing::{Price, PriceSource, PriceTable, Usage, cost_micros};
//!
//! let price = Price {
//!     id: "price-1".to_owned(),
//!     input_micros_per_million: 2_500_000,
//!     output_micros_per_million: 10_000_000,
//!     cached_input_micros_per_million: Some(1_250_000),
//! };
//! let usage = Usage { prompt_tokens: 1001, completion_tokens: 333, cached_tokens: 200 };
//! assert_eq!(cost_micros(&price, 1_500_000, &usage)?, 8374);
//!
//! let mut table = PriceTable::new();
//! table.insert_global_price("gpt-4o", price);
//! table.insert_group_multiplier("group-1", 1_500_000);
//! let quote = table.quote("tenant-1", Some("group-1"), "gpt-4o", &usage)?;
//! assert_eq!((quote.cost_micros, quote.source), (8374, PriceSource::Global));
//! # Ok::<(), gateway_pricing::PricingError>(())
//! ```

mod cost;
mod error;
mod table;

pub use cost::{Price, UNIT_MULTIPLIER_PPM, Usage, cost_micros};
pub use error::{Field, PricingError};
pub use table::{PriceSource, PriceTable, Quote};
