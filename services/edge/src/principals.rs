//! API keys to principals: a local cache in front of identity's
//! `AuthenticateKey`, kept honest by `WatchKeys` (every change evicts the
//! entries it names; a reset clears everything). Negative answers are
//! cached briefly so a flood of bad keys cannot flood identity.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use gateway_proto::identity::v1 as pb;
use gateway_proto::identity::v1::identity_service_client::IdentityServiceClient;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::grpc::{Authed, authed};

/// How long an answer is trusted without a WatchKeys change: a bound on
/// staleness if the watch stream is silently broken.
const POSITIVE_TTL: Duration = Duration::from_secs(60);
const NEGATIVE_TTL: Duration = Duration::from_secs(5);
const MAX_ENTRIES: usize = 100_000;

/// What the cache knows of one key.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: pb::KeyStatus,
    /// Shared: every request of a key reads the cached one, none copies it.
    pub principal: Option<Arc<pb::Principal>>,
}

#[derive(Debug, Clone)]
struct Entry {
    answer: Answer,
    fetched: Instant,
    client_id: Option<String>,
    remote_ip: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("identity is unreachable: {0}")]
pub struct Unreachable(pub String);

pub struct Principals {
    client: IdentityServiceClient<Authed>,
    entries: Mutex<HashMap<String, Entry>>,
    /// The WatchKeys version applied; answers older than an applied change
    /// for their key are not cached.
    version: std::sync::atomic::AtomicI64,
    /// Taken once: a labelled `counter!` per request allocates its key.
    cache_hits: metrics::Counter,
}

impl Principals {
    pub fn new(channel: Channel, credential: (String, String)) -> Self {
        Self {
            client: IdentityServiceClient::with_interceptor(channel, authed(credential)),
            entries: Mutex::new(HashMap::new()),
            version: std::sync::atomic::AtomicI64::new(0),
            cache_hits: metrics::counter!("edge_principal_cache_total", "result" => "hit"),
        }
    }

    /// The principal of the key with this SHA-256, from cache or identity.
    /// `client_id` and `remote_ip` are part of the answer (client plan,
    /// allowed IPs), so they are part of what a cached entry must match.
    pub async fn authenticate(
        &self,
        key_sha256: &str,
        client_id: Option<&str>,
        remote_ip: Option<&str>,
    ) -> Result<Answer, Unreachable> {
        if let Some(answer) = self.cached(key_sha256, client_id, remote_ip) {
            self.cache_hits.increment(1);
            return Ok(answer);
        }
        metrics::counter!("edge_principal_cache_total", "result" => "miss").increment(1);
        let version_before = self.version.load(std::sync::atomic::Ordering::SeqCst);
        let response = match self
            .client
            .clone()
            .authenticate_key(pb::AuthenticateKeyRequest {
                key_sha256: key_sha256.to_owned(),
                client_id: client_id.map(str::to_owned),
                remote_ip: remote_ip.map(str::to_owned),
            })
            .await
        {
            Ok(response) => response.into_inner(),
            Err(status) => {
                // Identity is away: serve what the cache last knew (WatchKeys
                // replays what changed meanwhile once it is back).
                if let Some(stale) = self.stale(key_sha256, client_id, remote_ip) {
                    metrics::counter!("edge_principal_cache_total", "result" => "stale")
                        .increment(1);
                    return Ok(stale);
                }
                return Err(Unreachable(status.message().to_owned()));
            }
        };
        let answer = Answer {
            status: response.status(),
            principal: response.principal.map(Arc::new),
        };
        // A change applied while we asked may postdate this answer: use it
        // once, do not cache it.
        let current = self.version.load(std::sync::atomic::Ordering::SeqCst);
        if current == version_before || response.version >= current {
            let mut entries = self.lock();
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
            entries.insert(
                key_sha256.to_owned(),
                Entry {
                    answer: answer.clone(),
                    fetched: Instant::now(),
                    client_id: client_id.map(str::to_owned),
                    remote_ip: remote_ip.map(str::to_owned),
                },
            );
        }
        Ok(answer)
    }

    fn cached(
        &self,
        key_sha256: &str,
        client_id: Option<&str>,
        remote_ip: Option<&str>,
    ) -> Option<Answer> {
        let entries = self.lock();
        let entry = entries.get(key_sha256)?;
        let ttl = if entry.answer.principal.is_some() {
            POSITIVE_TTL
        } else {
            NEGATIVE_TTL
        };
        let same_request =
            entry.client_id.as_deref() == client_id && entry.remote_ip.as_deref() == remote_ip;
        (entry.fetched.elapsed() < ttl && same_request).then(|| entry.answer.clone())
    }

    /// A cached answer past its TTL, for when identity cannot be asked.
    fn stale(
        &self,
        key_sha256: &str,
        client_id: Option<&str>,
        remote_ip: Option<&str>,
    ) -> Option<Answer> {
        let entries = self.lock();
        let entry = entries.get(key_sha256)?;
        (entry.client_id.as_deref() == client_id && entry.remote_ip.as_deref() == remote_ip)
            .then(|| entry.answer.clone())
    }

    /// Applies one WatchKeys message.
    fn apply(&self, message: &pb::WatchKeysResponse) {
        let mut entries = self.lock();
        if message.reset {
            entries.clear();
        }
        for change in &message.changes {
            entries.retain(|sha, entry| !matches(change, sha, entry));
        }
        self.version
            .store(message.version, std::sync::atomic::Ordering::SeqCst);
    }

    /// Follows WatchKeys until `shutdown`, reconnecting with backoff and
    /// resuming from the last applied version, so changes made while the
    /// stream was down are replayed (or a reset clears the cache).
    pub async fn follow(self: Arc<Self>, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let from = self.version.load(std::sync::atomic::Ordering::SeqCst);
            let stream = self
                .client
                .clone()
                .watch_keys(pb::WatchKeysRequest { from_version: from })
                .await;
            match stream {
                Ok(stream) => {
                    let mut stream = stream.into_inner();
                    loop {
                        let message = tokio::select! {
                            () = shutdown.cancelled() => return,
                            message = stream.message() => message,
                        };
                        match message {
                            Ok(Some(message)) => {
                                backoff = Duration::from_millis(100);
                                self.apply(&message);
                            }
                            Ok(None) | Err(_) => break,
                        }
                    }
                }
                Err(status) => {
                    tracing::debug!(%status, "identity key watch unavailable");
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Whether a change can affect a cached entry: any id it names matches.
fn matches(change: &pb::KeyChange, sha: &str, entry: &Entry) -> bool {
    if !change.key_sha256.is_empty() && change.key_sha256 == sha {
        return true;
    }
    let Some(principal) = &entry.answer.principal else {
        // A negative entry: a created key may now exist.
        return change.kind() == pb::KeyChangeKind::KeyCreated;
    };
    let same = |changed: &str, cached: &str| !changed.is_empty() && changed == cached;
    same(&change.key_id, &principal.key_id)
        || same(&change.user_id, &principal.user_id)
        || (change.key_id.is_empty()
            && change.user_id.is_empty()
            && same(&change.tenant_id, &principal.tenant_id))
        || (!change.group_id.is_empty()
            && principal
                .groups
                .iter()
                .any(|group| group.id == change.group_id))
        || (!change.client_id.is_empty() && entry.client_id.as_deref() == Some(&change.client_id))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn principal(key_id: &str) -> pb::Principal {
        pb::Principal {
            tenant_id: "t1".to_owned(),
            tenant_slug: "acme".to_owned(),
            key_id: key_id.to_owned(),
            user_id: "u1".to_owned(),
            ..pb::Principal::default()
        }
    }

    /// Identity is unreachable: a known key is served from the cache even
    /// past its TTL; an unknown one cannot be.
    #[tokio::test]
    async fn with_identity_away_known_keys_are_served_from_the_cache() {
        let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", dead.local_addr().unwrap());
        drop(dead);
        let principals = Principals::new(
            crate::grpc::channel(&url, Duration::from_millis(200)).unwrap(),
            ("x-admin-key".to_owned(), "k".to_owned()),
        );
        principals.lock().insert(
            "sha-known".to_owned(),
            Entry {
                answer: Answer {
                    status: pb::KeyStatus::Active,
                    principal: Some(Arc::new(principal("k1"))),
                },
                fetched: Instant::now().checked_sub(POSITIVE_TTL * 2).unwrap(),
                client_id: None,
                remote_ip: Some("127.0.0.1".to_owned()),
            },
        );
        let answer = principals
            .authenticate("sha-known", None, Some("127.0.0.1"))
            .await
            .unwrap();
        assert_eq!(answer.principal.unwrap().key_id, "k1");
        assert!(
            principals
                .authenticate("sha-unknown", None, Some("127.0.0.1"))
                .await
                .is_err()
        );
    }

    /// WatchKeys: a change naming a cached key's id evicts it; a reset
    /// clears everything.
    #[test]
    fn changes_evict_what_they_name() {
        let entry = |key_id: &str| Entry {
            answer: Answer {
                status: pb::KeyStatus::Active,
                principal: Some(Arc::new(principal(key_id))),
            },
            fetched: Instant::now(),
            client_id: None,
            remote_ip: None,
        };
        let frozen = pb::KeyChange {
            kind: pb::KeyChangeKind::KeyFrozen.into(),
            key_id: "k1".to_owned(),
            ..pb::KeyChange::default()
        };
        assert!(matches(&frozen, "sha1", &entry("k1")));
        assert!(!matches(&frozen, "sha2", &entry("k2")));
        let user = pb::KeyChange {
            kind: pb::KeyChangeKind::UserDisabled.into(),
            user_id: "u1".to_owned(),
            ..pb::KeyChange::default()
        };
        assert!(matches(&user, "sha2", &entry("k2")));
        let other_tenant = pb::KeyChange {
            kind: pb::KeyChangeKind::TenantDeleted.into(),
            tenant_id: "t2".to_owned(),
            ..pb::KeyChange::default()
        };
        assert!(!matches(&other_tenant, "sha1", &entry("k1")));
    }
}
