//! Passwords: hashing (argon2id, shared in `gateway_auth::password`) and
//! generated ones.

use rand::Rng as _;

/// The shortest password identity accepts.
pub const MIN_PASSWORD_CHARS: usize = 12;

pub use gateway_auth::password::{HashError, hash, verify};

/// A random password of `length` base62 characters (~5.95 bits each).
pub fn generate(length: usize) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rng();
    (0..length)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_passwords_are_long_and_distinct() {
        let first = generate(24);
        assert_eq!(first.len(), 24);
        assert!(first.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(first, generate(24));
    }
}
