//! The `[auth]` section every binary shares: how callers are authenticated.

use gateway_runtime::secret::Secret;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Emergency admin key (`x-admin-key` metadata), accepted by every
    /// service as superadmin; empty switches it off.
    pub admin_key: Secret,
    /// Identity's gRPC endpoint, where services fetch the JWT public keys.
    pub identity_url: String,
    /// The `iss` claim identity writes and every service expects.
    pub jwt_issuer: String,
    /// HS256 shared secret (at least 32 bytes). Empty: identity signs with
    /// its own EdDSA key and services verify with its published public keys.
    pub jwt_secret: Secret,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            admin_key: Secret::default(),
            identity_url: "http://127.0.0.1:50051".to_owned(),
            jwt_issuer: "gateway-identity".to_owned(),
            jwt_secret: Secret::default(),
        }
    }
}

impl AuthConfig {
    pub fn validate(&self, problems: &mut Vec<String>) {
        if !self.admin_key.is_empty() && self.admin_key.expose().len() < 16 {
            problems.push(
                "auth.admin_key: must be at least 16 characters (or empty to disable)".to_owned(),
            );
        }
        if !self.jwt_secret.is_empty() && self.jwt_secret.expose().len() < 32 {
            problems
                .push("auth.jwt_secret: must be at least 32 bytes (or empty for EdDSA)".to_owned());
        }
        if self.jwt_issuer.is_empty() {
            problems.push("auth.jwt_issuer: must not be empty".to_owned());
        }
        let url_ok = self.identity_url.parse::<http::Uri>().is_ok_and(|uri| {
            matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some()
        });
        if !url_ok {
            problems.push(format!(
                "auth.identity_url: expected an http:// or https:// URL, got {:?}",
                self.identity_url
            ));
        }
    }

    /// True when tokens are HS256 with the shared secret.
    pub fn uses_shared_secret(&self) -> bool {
        !self.jwt_secret.is_empty()
    }

    /// A verifier with the admin key and, in HS256 mode, the secret; EdDSA
    /// keys are added by whoever holds them (identity itself, or
    /// [`crate::remote::follow_identity_keys`]).
    pub fn verifier(&self) -> crate::Verifier {
        let verifier = crate::Verifier::new(
            &self.jwt_issuer,
            crate::AdminKey::new(self.admin_key.expose()),
        );
        if self.uses_shared_secret() {
            verifier.set_shared_secret(self.jwt_secret.expose().as_bytes());
        }
        verifier
    }
}
