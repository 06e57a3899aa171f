//! Services other than identity verify JWTs with identity's public keys,
//! fetched by `GetPublicKeys` at start and refreshed periodically, so no
//! call is made per request and a key rotation reaches every service.

use std::time::Duration;

use ed25519_dalek::pkcs8::DecodePublicKey as _;
use gateway_proto::identity::v1::GetPublicKeysRequest;
use gateway_proto::identity::v1::identity_service_client::IdentityServiceClient;
use jsonwebtoken::{Algorithm, DecodingKey};
use tokio_util::sync::CancellationToken;

use crate::{Verifier, VerifyingKey};

/// How often published keys are fetched again.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("identity unreachable at {url}: {message}")]
    Unreachable { url: String, message: String },
    #[error("identity published an unusable key {kid}: {message}")]
    BadKey { kid: String, message: String },
}

/// Fetches identity's public keys once and installs them in `verifier`.
pub async fn fetch_identity_keys(
    identity_url: &str,
    verifier: &Verifier,
) -> Result<usize, FetchError> {
    let unreachable = |message: String| FetchError::Unreachable {
        url: identity_url.to_owned(),
        message,
    };
    let channel = tonic::transport::Endpoint::from_shared(identity_url.to_owned())
        .map_err(|error| unreachable(error.to_string()))?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|error| unreachable(error.to_string()))?;
    let response = IdentityServiceClient::new(channel)
        .get_public_keys(GetPublicKeysRequest {})
        .await
        .map_err(|status| unreachable(status.message().to_owned()))?
        .into_inner();
    let mut keys = Vec::new();
    for key in response
        .keys
        .into_iter()
        .filter(|key| key.algorithm == "EdDSA")
    {
        let public = ed25519_dalek::VerifyingKey::from_public_key_pem(&key.public_key_pem)
            .map_err(|error| FetchError::BadKey {
                kid: key.kid.clone(),
                message: error.to_string(),
            })?;
        keys.push(VerifyingKey {
            kid: key.kid,
            algorithm: Algorithm::EdDSA,
            key: DecodingKey::from_ed_der(public.as_bytes()),
        });
    }
    let count = keys.len();
    verifier.set_public_keys(keys);
    Ok(count)
}

/// Keeps `verifier` in step with identity's keys until `shutdown`: retries
/// quickly (with backoff) until the first fetch succeeds, then refreshes
/// every [`REFRESH_INTERVAL`]. Until then bearer tokens are refused and
/// the admin key still works.
pub async fn follow_identity_keys(
    identity_url: String,
    verifier: Verifier,
    shutdown: CancellationToken,
) {
    let mut delay = Duration::from_millis(100);
    let mut loaded = false;
    loop {
        match fetch_identity_keys(&identity_url, &verifier).await {
            Ok(count) => {
                if !loaded {
                    tracing::info!(keys = count, "loaded identity's token signing keys");
                }
                loaded = true;
                delay = REFRESH_INTERVAL;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot fetch identity's signing keys; will retry");
                delay = if loaded {
                    REFRESH_INTERVAL
                } else {
                    (delay * 2).min(Duration::from_secs(5))
                };
            }
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = shutdown.cancelled() => return,
        }
    }
}
