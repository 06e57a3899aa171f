//! JWT issuing. EdDSA keys are generated on first start and stored, and
//! their public halves are published (`GetPublicKeys`) so every service
//! verifies tokens locally; HS256 with a configured secret is the option.

use std::time::Duration;

use ed25519_dalek::pkcs8::EncodePrivateKey as _;
use ed25519_dalek::pkcs8::spki::EncodePublicKey as _;
use gateway_auth::{AuthConfig, Claims, Verifier, VerifyingKey};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use rand::Rng as _;

use crate::config::Config;
use crate::error::IdentityError;
use crate::store::{IdentityStore, SigningKeyRow, User};
use gateway_secrets::SecretBox;

/// A public key as `GetPublicKeys` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKeyInfo {
    pub kid: String,
    pub algorithm: String,
    pub public_key_pem: String,
    pub created_at: i64,
    pub active: bool,
}

/// A signed access token.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: String,
    pub expires_at_secs: i64,
}

pub struct TokenIssuer {
    algorithm: Algorithm,
    kid: Option<String>,
    encoding: EncodingKey,
    issuer: String,
    lifetime: Duration,
    public_keys: Vec<PublicKeyInfo>,
}

impl TokenIssuer {
    /// Loads (or, on first start, creates) the signing key and returns the
    /// issuer with a verifier for identity's own RBAC layer.
    pub async fn load(
        store: &IdentityStore,
        config: &Config,
        auth: &AuthConfig,
        secrets: &SecretBox,
    ) -> Result<(Self, Verifier), IdentityError> {
        let verifier = auth.verifier();
        let lifetime = Duration::from_secs(config.jwt_lifetime_secs);
        if auth.uses_shared_secret() {
            let issuer = Self {
                algorithm: Algorithm::HS256,
                kid: None,
                encoding: EncodingKey::from_secret(auth.jwt_secret.expose().as_bytes()),
                issuer: auth.jwt_issuer.clone(),
                lifetime,
                public_keys: Vec::new(),
            };
            return Ok((issuer, verifier));
        }

        let mut keys = store.signing_keys().await?;
        if !keys
            .iter()
            .any(|key| key.algorithm == "EdDSA" && key.active)
        {
            keys = store
                .insert_signing_key_if_none(&generate_ed25519(secrets)?)
                .await?;
        }
        let active = keys
            .iter()
            .rev()
            .find(|key| key.algorithm == "EdDSA" && key.active)
            .ok_or_else(|| {
                IdentityError::Internal("no active signing key after creating one".to_owned())
            })?;
        let mut verifying = Vec::new();
        let mut public_keys = Vec::new();
        for key in keys.iter().filter(|key| key.algorithm == "EdDSA") {
            verifying.push(VerifyingKey {
                kid: key.kid.clone(),
                algorithm: Algorithm::EdDSA,
                key: DecodingKey::from_ed_der(&key.public_key),
            });
            public_keys.push(PublicKeyInfo {
                kid: key.kid.clone(),
                algorithm: key.algorithm.clone(),
                public_key_pem: public_key_pem(&key.public_key)?,
                created_at: key.created_at,
                active: key.active,
            });
        }
        verifier.set_public_keys(verifying);
        let issuer = Self {
            algorithm: Algorithm::EdDSA,
            kid: Some(active.kid.clone()),
            encoding: EncodingKey::from_ed_der(
                &secrets
                    .open(&signing_key_context(&active.kid), &active.private_key)
                    .map_err(|error| {
                        IdentityError::Internal(format!("signing key {}: {error}", active.kid))
                    })?,
            ),
            issuer: auth.jwt_issuer.clone(),
            lifetime,
            public_keys,
        };
        Ok((issuer, verifier))
    }

    pub fn issue(&self, user: &User) -> Result<IssuedToken, IdentityError> {
        let now = gateway_storage::now_micros() / 1_000_000;
        let expires_at_secs = now + i64::try_from(self.lifetime.as_secs()).unwrap_or(i64::MAX / 2);
        let claims = Claims {
            sub: user.id.clone(),
            tenant: user.tenant_id.clone(),
            role: user.role,
            exp: expires_at_secs,
            iat: now,
            jti: uuid::Uuid::now_v7().to_string(),
            iss: self.issuer.clone(),
        };
        let mut header = Header::new(self.algorithm);
        header.kid.clone_from(&self.kid);
        let token = jsonwebtoken::encode(&header, &claims, &self.encoding)
            .map_err(|error| IdentityError::Internal(format!("signing a token failed: {error}")))?;
        Ok(IssuedToken {
            token,
            expires_at_secs,
        })
    }

    pub fn public_keys(&self) -> &[PublicKeyInfo] {
        &self.public_keys
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }
}

/// Binds a sealed signing key to its kid.
fn signing_key_context(kid: &str) -> String {
    format!("identity.signing_key:{kid}")
}

fn generate_ed25519(secrets: &SecretBox) -> Result<SigningKeyRow, IdentityError> {
    let mut secret = [0_u8; 32];
    rand::rng().fill(&mut secret);
    let signing = ed25519_dalek::SigningKey::from_bytes(&secret);
    let private_key = signing
        .to_pkcs8_der()
        .map_err(|error| {
            IdentityError::Internal(format!("encoding the signing key failed: {error}"))
        })?
        .as_bytes()
        .to_vec();
    let kid = uuid::Uuid::now_v7().simple().to_string();
    let private_key = secrets
        .seal(&signing_key_context(&kid), &private_key)
        .map_err(|error| IdentityError::Internal(error.to_string()))?;
    Ok(SigningKeyRow {
        kid,
        algorithm: "EdDSA".to_owned(),
        private_key,
        public_key: signing.verifying_key().as_bytes().to_vec(),
        active: true,
        created_at: gateway_storage::now_micros(),
    })
}

fn public_key_pem(raw: &[u8]) -> Result<String, IdentityError> {
    let bytes: [u8; 32] = raw
        .try_into()
        .map_err(|_| IdentityError::Internal("stored public key is not 32 bytes".to_owned()))?;
    let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes).map_err(|error| {
        IdentityError::Internal(format!("stored public key is invalid: {error}"))
    })?;
    key.to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .map_err(|error| {
            IdentityError::Internal(format!("encoding the public key failed: {error}"))
        })
}
