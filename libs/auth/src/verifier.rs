//! Local verification of identity's JWTs and of the emergency admin key.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::Claims;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("invalid bearer token: {0}")]
    InvalidToken(String),
    #[error("bearer token has expired")]
    Expired,
    #[error("invalid admin key")]
    InvalidAdminKey,
    #[error("malformed authorization metadata: expected `Bearer <token>`")]
    MalformedAuthorization,
}

/// A public key that verifies tokens signed with the key `kid`.
#[derive(Clone)]
pub struct VerifyingKey {
    pub kid: String,
    pub algorithm: Algorithm,
    pub key: DecodingKey,
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// The emergency admin key, held only as its SHA-256 digest.
#[derive(Clone)]
pub struct AdminKey([u8; 32]);

impl AdminKey {
    /// `None` for an empty key: the admin key is then switched off.
    pub fn new(key: &str) -> Option<Self> {
        (!key.is_empty()).then(|| Self(Sha256::digest(key.as_bytes()).into()))
    }

    /// Constant-time comparison of digests, so timing reveals nothing of
    /// the key.
    pub fn matches(&self, presented: &str) -> bool {
        let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        bool::from(self.0.ct_eq(&presented))
    }
}

impl std::fmt::Debug for AdminKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("AdminKey([redacted])")
    }
}

#[derive(Debug, Default)]
struct KeySet {
    by_kid: HashMap<String, VerifyingKey>,
    /// HS256 mode: one shared secret, no kid needed.
    shared: Option<VerifyingKey>,
}

/// Verifies bearer tokens and the admin key. Cheap to clone; key updates
/// (rotation, a refresh from identity) never block readers.
#[derive(Debug, Clone)]
pub struct Verifier {
    keys: Arc<ArcSwap<KeySet>>,
    issuer: Arc<str>,
    admin_key: Option<AdminKey>,
}

/// Clock skew tolerated between the issuer and verifiers.
const LEEWAY_SECONDS: u64 = 30;

impl Verifier {
    pub fn new(issuer: &str, admin_key: Option<AdminKey>) -> Self {
        Self {
            keys: Arc::new(ArcSwap::from_pointee(KeySet::default())),
            issuer: Arc::from(issuer),
            admin_key,
        }
    }

    /// Replaces the asymmetric public keys (all kids at once).
    pub fn set_public_keys(&self, keys: Vec<VerifyingKey>) {
        let shared = self.keys.load().shared.clone();
        let by_kid = keys.into_iter().map(|key| (key.kid.clone(), key)).collect();
        self.keys.store(Arc::new(KeySet { by_kid, shared }));
    }

    /// Switches to HS256 with a shared secret.
    pub fn set_shared_secret(&self, secret: &[u8]) {
        let by_kid = self.keys.load().by_kid.clone();
        let shared = Some(VerifyingKey {
            kid: String::new(),
            algorithm: Algorithm::HS256,
            key: DecodingKey::from_secret(secret),
        });
        self.keys.store(Arc::new(KeySet { by_kid, shared }));
    }

    pub fn admin_key_matches(&self, presented: &str) -> bool {
        self.admin_key
            .as_ref()
            .is_some_and(|key| key.matches(presented))
    }

    /// Checks signature, algorithm, issuer and expiry.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|error| AuthError::InvalidToken(error.to_string()))?;
        let keys = self.keys.load();
        let key = match &header.kid {
            Some(kid) => keys.by_kid.get(kid),
            None => keys.shared.as_ref(),
        }
        .ok_or_else(|| AuthError::InvalidToken("unknown signing key".to_owned()))?;
        // The algorithm comes from our key, never from the token header, so
        // a token cannot downgrade itself (e.g. to HS256 with a public key).
        let mut validation = Validation::new(key.algorithm);
        validation.set_issuer(&[&*self.issuer]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "sub"]);
        validation.leeway = LEEWAY_SECONDS;
        jsonwebtoken::decode::<Claims>(token, &key.key, &validation)
            .map(|data| data.claims)
            .map_err(|error| match error.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
                _ => AuthError::InvalidToken(error.to_string()),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Role;
    use ed25519_dalek::pkcs8::EncodePrivateKey as _;
    use jsonwebtoken::{EncodingKey, Header};

    fn claims(exp_offset: i64) -> Claims {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        Claims {
            sub: "user-1".to_owned(),
            tenant: "tenant-1".to_owned(),
            role: Role::Admin,
            exp: now + exp_offset,
            iat: now,
            jti: "jti-1".to_owned(),
            iss: "gateway-identity".to_owned(),
        }
    }

    fn ed25519() -> (EncodingKey, VerifyingKey) {
        let signing = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let der = signing.to_pkcs8_der().unwrap();
        let encoding = EncodingKey::from_ed_der(der.as_bytes());
        let verifying = VerifyingKey {
            kid: "k1".to_owned(),
            algorithm: Algorithm::EdDSA,
            key: DecodingKey::from_ed_der(signing.verifying_key().as_bytes()),
        };
        (encoding, verifying)
    }

    fn sign(claims: &Claims, key: &EncodingKey, kid: Option<&str>, algorithm: Algorithm) -> String {
        let mut header = Header::new(algorithm);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, key).unwrap()
    }

    #[test]
    fn eddsa_token_verifies_with_the_published_key() {
        let (encoding, verifying) = ed25519();
        let verifier = Verifier::new("gateway-identity", None);
        verifier.set_public_keys(vec![verifying]);
        let token = sign(&claims(3600), &encoding, Some("k1"), Algorithm::EdDSA);
        assert_eq!(verifier.verify(&token).unwrap(), claims(3600));
    }

    #[test]
    fn expired_tampered_foreign_and_unknown_kid_tokens_are_refused() {
        let (encoding, verifying) = ed25519();
        let verifier = Verifier::new("gateway-identity", None);
        verifier.set_public_keys(vec![verifying]);

        let expired = sign(&claims(-3600), &encoding, Some("k1"), Algorithm::EdDSA);
        assert_eq!(verifier.verify(&expired), Err(AuthError::Expired));

        let token = sign(&claims(3600), &encoding, Some("k1"), Algorithm::EdDSA);
        let mut tampered = token.clone();
        tampered.insert(tampered.len() - 5, 'x');
        assert!(matches!(
            verifier.verify(&tampered),
            Err(AuthError::InvalidToken(_))
        ));

        let unknown = sign(&claims(3600), &encoding, Some("k2"), Algorithm::EdDSA);
        assert!(matches!(
            verifier.verify(&unknown),
            Err(AuthError::InvalidToken(_))
        ));

        let mut foreign = claims(3600);
        foreign.iss = "someone-else".to_owned();
        let foreign = sign(&foreign, &encoding, Some("k1"), Algorithm::EdDSA);
        assert!(matches!(
            verifier.verify(&foreign),
            Err(AuthError::InvalidToken(_))
        ));
    }

    #[test]
    fn hs256_mode_uses_the_shared_secret_and_refuses_others() {
        let verifier = Verifier::new("gateway-identity", None);
        verifier.set_shared_secret(b"a-shared-secret-of-enough-length");
        let good = EncodingKey::from_secret(b"a-shared-secret-of-enough-length");
        let bad = EncodingKey::from_secret(b"another-secret-of-enough-length!");
        let token = sign(&claims(60), &good, None, Algorithm::HS256);
        assert!(verifier.verify(&token).is_ok());
        let token = sign(&claims(60), &bad, None, Algorithm::HS256);
        assert!(verifier.verify(&token).is_err());
    }

    #[test]
    fn admin_key_matches_exactly_and_empty_disables_it() {
        let verifier = Verifier::new("i", AdminKey::new("break-glass-key"));
        assert!(verifier.admin_key_matches("break-glass-key"));
        assert!(!verifier.admin_key_matches("break-glass-kez"));
        assert!(!verifier.admin_key_matches(""));
        let disabled = Verifier::new("i", AdminKey::new(""));
        assert!(!disabled.admin_key_matches(""));
        assert_eq!(
            format!("{:?}", AdminKey::new("secret").unwrap()),
            "AdminKey([redacted])"
        );
    }
}
