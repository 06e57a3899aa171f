//! API key material: `sk-` plus 43 base62 characters (256 random bits).
//! Only the SHA-256 hex digest and a short display prefix are stored.

use rand::Rng as _;
use sha2::{Digest as _, Sha256};

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

pub fn sha256_hex(value: &str) -> String {
    let digest = Sha256::digest(value.as_bytes());
    let mut hex = String::with_capacity(64);
    for byte in digest {
        hex.push(char::from(b"0123456789abcdef"[usize::from(byte >> 4)]));
        hex.push(char::from(b"0123456789abcdef"[usize::from(byte & 0xf)]));
    }
    hex
}

/// 64 lowercase hex digits.
pub fn is_sha256_hex(value: &str) -> bool {
    value.len() == 64
        && value
            .bytes()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
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

    #[test]
    fn sha256_of_a_known_value() {
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(!is_sha256_hex("ABC"));
    }
}
