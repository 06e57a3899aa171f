//! Why a request could not be priced.

use std::fmt;

/// Why a cost could not be computed.
///
/// `Unpriced` is a missing price (gRPC `NOT_FOUND`); `Negative` and
/// `CachedExceedsPrompt` are bad input (`INVALID_ARGUMENT` when they come
/// from a request, a data bug when they come from a stored price);
/// `Overflow` is a cost beyond `i64` micro-USD.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PricingError {
    /// No group override, tenant price or global price for the model.
    #[error("model {model} has no price")]
    Unpriced { model: String },
    /// A token count, a price or the multiplier is below zero.
    #[error("{field} must not be negative (got {value})")]
    Negative { field: Field, value: i64 },
    /// More cached prompt tokens than prompt tokens.
    #[error("cached_tokens ({cached_tokens}) exceeds prompt_tokens ({prompt_tokens})")]
    CachedExceedsPrompt {
        cached_tokens: i64,
        prompt_tokens: i64,
    },
    /// The cost does not fit in `i64` micro-USD.
    #[error("cost overflows i64 micro-USD")]
    Overflow,
}

/// The input a [`PricingError::Negative`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    PromptTokens,
    CompletionTokens,
    CachedTokens,
    InputPrice,
    OutputPrice,
    CachedInputPrice,
    MultiplierPpm,
}

impl Field {
    /// The field's name as it appears in [`Usage`](crate::Usage),
    /// [`Price`](crate::Price) and the `cost_micros` arguments.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PromptTokens => "prompt_tokens",
            Self::CompletionTokens => "completion_tokens",
            Self::CachedTokens => "cached_tokens",
            Self::InputPrice => "input_micros_per_million",
            Self::OutputPrice => "output_micros_per_million",
            Self::CachedInputPrice => "cached_input_micros_per_million",
            Self::MultiplierPpm => "multiplier_ppm",
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}
