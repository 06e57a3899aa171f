//! Token counts for estimates: OpenAI's `o200k_base` BPE (tiktoken-rs,
//! its vocabulary shipped in the crate), loaded once. Other providers'
//! tokenizers differ by some percent, which the estimate tolerates: the
//! real usage from the answer is what is billed.

use std::sync::OnceLock;

fn bpe() -> Option<&'static tiktoken_rs::CoreBPE> {
    static BPE: OnceLock<Option<tiktoken_rs::CoreBPE>> = OnceLock::new();
    BPE.get_or_init(|| match tiktoken_rs::o200k_base() {
        Ok(bpe) => Some(bpe),
        Err(error) => {
            tracing::error!(%error, "tokenizer unavailable; estimating 4 bytes per token");
            None
        }
    })
    .as_ref()
}

/// Loads the vocabulary now (a fraction of a second), so no request waits.
pub fn warm() {
    let _ = bpe();
}

pub fn count(text: &str) -> i64 {
    let tokens = match bpe() {
        Some(bpe) => bpe.encode_ordinary(text).len(),
        None => text.len().div_ceil(4),
    };
    i64::try_from(tokens).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_counted_with_the_real_vocabulary() {
        assert_eq!(count(""), 0);
        assert_eq!(count("hello world"), 2);
        let long = "The quick brown fox jumps over the lazy dog. ".repeat(100);
        let tokens = count(&long);
        assert!((900..=1100).contains(&tokens), "{tokens}");
    }
}
