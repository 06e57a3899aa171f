//! API key material: `sk-` plus 43 base62 characters (256 random bits).
//! Only the SHA-256 hex digest and a short display prefix are stored.

pub use gateway_auth::key_hash::{is_sha256_hex, sha256_hex};
use rand::Rng as _;

const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// 43 base62 characters carry 43 x log2(62) = 256.0 bits.
const RANDOM_CHARS: usize = 43;
/// `sk-` and the first five random characters.
const PREFIX_CHARS: usize = 8;

/// A new key: the plaintext is shown once, then only its hash remains.
pub struct GeneratedKey {
    pub plaintext: String,
    pub sha256_hex: String,
    pub prefix: String,
}

pub fn generate() -> GeneratedKey {
    let mut rng = rand::rng();
    let mut plaintext = String::with_capacity(3 + RANDOM_CHARS);
    plaintext.push_str("sk-");
    for _ in 0..RANDOM_CHARS {
        plaintext.push(char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]));
    }
    GeneratedKey {
        sha256_hex: sha256_hex(&plaintext),
        prefix: plaintext[..PREFIX_CHARS].to_owned(),
        plaintext,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_unique_base62_with_matching_hash() {
        let first = generate();
        let second = generate();
        assert_ne!(first.plaintext, second.plaintext);
        assert_eq!(first.plaintext.len(), 46);
        assert!(first.plaintext.starts_with("sk-"));
        assert!(
            first.plaintext[3..]
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric())
        );
        assert_eq!(first.sha256_hex, sha256_hex(&first.plaintext));
        assert!(is_sha256_hex(&first.sha256_hex));
        assert!(first.plaintext.starts_with(&first.prefix));
        assert!(!first.prefix.contains(&first.plaintext[PREFIX_CHARS..]));
    }
}
