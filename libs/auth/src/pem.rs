//! PEM public keys for JWT verification, by key type.

use jsonwebtoken::{Algorithm, DecodingKey};

/// The key and the algorithm it verifies, from a PEM RSA (RS256), EC
/// P-256 (ES256) or Ed25519 (EdDSA) public key; `None` for anything else.
pub fn public_key(pem: &str) -> Option<(DecodingKey, Algorithm)> {
    let bytes = pem.as_bytes();
    DecodingKey::from_rsa_pem(bytes)
        .map(|key| (key, Algorithm::RS256))
        .or_else(|_| DecodingKey::from_ec_pem(bytes).map(|key| (key, Algorithm::ES256)))
        .or_else(|_| DecodingKey::from_ed_pem(bytes).map(|key| (key, Algorithm::EdDSA)))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_told_apart_by_type() {
        let ed = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n";
        assert_eq!(
            public_key(ed).map(|(_, algorithm)| algorithm),
            Some(Algorithm::EdDSA)
        );
        assert!(public_key("not a key").is_none());
    }
}
