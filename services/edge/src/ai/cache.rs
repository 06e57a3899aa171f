//! The completion cache: exact-match AI answers, opt-in per key, group or
//! channel. An entry is keyed by a hash of the tenant and the canonical
//! request (model, system, messages, tools, sampling, stop, response
//! format; not whether it streams), so one tenant never reads another's,
//! and a streamed request is served from an answer stored from a JSON one
//! and the other way round. Entries are canonical answers, encoded in
//! whichever protocol asks.
//!
//! In Redis when the edge has one (shared by edges), else in memory,
//! bounded in bytes; both expire after the TTL. A Redis that fails or is
//! slow is a miss, never an error: lookups wait at most [`LOOKUP_TIMEOUT`].

use std::sync::Arc;
use std::time::Duration;

use deadpool_redis::redis;
use sha2::{Digest as _, Sha256};

use super::canonical::{Answer, Chat};
use crate::config::Config;

const LOOKUP_TIMEOUT: Duration = Duration::from_millis(100);
/// Versioned: a change to the canonical model's shape starts afresh.
const KEY_PREFIX: &str = "gw:completion:v1:";

/// Where an answer is stored: the tenant (a Redis Cluster hash tag) and
/// the request's digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key(String);

impl Key {
    pub fn new(tenant_id: &str, chat: &Chat) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(tenant_id.as_bytes());
        hasher.update([0]);
        // Plain data: serializing cannot fail.
        hasher.update(serde_json::to_vec(chat).unwrap_or_default());
        let digest: String = hasher
            .finalize()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        Self(format!("{KEY_PREFIX}{{{tenant_id}}}:{digest}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

enum Store {
    Memory(moka::sync::Cache<Key, Arc<[u8]>>),
    Redis(deadpool_redis::Pool),
}

pub struct CompletionCache {
    store: Store,
    ttl: Duration,
    max_entry: usize,
    /// What a hit costs, as a percent of the answer's price.
    pub hit_cost_percent: u32,
}

impl CompletionCache {
    pub fn new(config: &Config) -> Result<Self, String> {
        let ttl = Duration::from_secs(config.ai_cache_ttl_secs);
        let store = if config.ai_cache_redis_url.is_empty() {
            Store::Memory(
                moka::sync::Cache::builder()
                    .max_capacity(config.ai_cache_max_bytes)
                    .weigher(|key: &Key, value: &Arc<[u8]>| {
                        u32::try_from(key.0.len() + value.len()).unwrap_or(u32::MAX)
                    })
                    .time_to_live(ttl)
                    .build(),
            )
        } else {
            let mut redis = deadpool_redis::Config::from_url(config.ai_cache_redis_url.clone());
            redis.pool = Some(deadpool_redis::PoolConfig {
                timeouts: deadpool_redis::Timeouts {
                    wait: Some(LOOKUP_TIMEOUT),
                    create: Some(LOOKUP_TIMEOUT),
                    recycle: Some(LOOKUP_TIMEOUT),
                },
                ..deadpool_redis::PoolConfig::default()
            });
            // The URL may carry a password: never in the message.
            let pool = redis
                .create_pool(Some(deadpool_redis::Runtime::Tokio1))
                .map_err(|_| "edge.ai_cache_redis_url: not a usable Redis URL".to_owned())?;
            Store::Redis(pool)
        };
        Ok(Self {
            store,
            ttl,
            max_entry: usize::try_from(config.ai_cache_max_entry_bytes).unwrap_or(usize::MAX),
            hit_cost_percent: config.ai_cache_hit_cost_percent,
        })
    }

    /// The stored answer, if any (a Redis that fails is a miss).
    pub async fn get(&self, key: &Key) -> Option<Answer> {
        let bytes = match &self.store {
            Store::Memory(memory) => memory.get(key).map(|bytes| bytes.to_vec()),
            Store::Redis(pool) => {
                let lookup = redis_get(pool, key);
                match tokio::time::timeout(LOOKUP_TIMEOUT, lookup).await {
                    Ok(Ok(found)) => found,
                    Ok(Err(error)) => {
                        tracing::warn!(%error, "completion cache lookup failed; a miss");
                        counted("error");
                        None
                    }
                    Err(_) => {
                        tracing::warn!("completion cache lookup timed out; a miss");
                        counted("error");
                        None
                    }
                }
            }
        };
        let answer = bytes.and_then(|bytes| serde_json::from_slice::<Answer>(&bytes).ok());
        counted(if answer.is_some() { "hit" } else { "miss" });
        answer
    }

    /// Stores `answer` under `key` for the TTL; Redis writes happen in the
    /// background (the answer has already been sent).
    fn put(self: &Arc<Self>, key: Key, answer: &Answer) {
        let Ok(bytes) = serde_json::to_vec(answer) else {
            return;
        };
        if bytes.len() > self.max_entry {
            counted("too_large");
            return;
        }
        counted("stored");
        match &self.store {
            Store::Memory(memory) => memory.insert(key, bytes.into()),
            Store::Redis(pool) => {
                let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                    return;
                };
                let (pool, ttl) = (pool.clone(), self.ttl);
                runtime.spawn(async move {
                    if let Err(error) = redis_set(&pool, &key, &bytes, ttl).await {
                        tracing::warn!(%error, "completion cache store failed");
                        counted("error");
                    }
                });
            }
        }
    }
}

fn counted(result: &'static str) {
    metrics::counter!("edge_ai_cache_total", "result" => result).increment(1);
}

async fn redis_get(pool: &deadpool_redis::Pool, key: &Key) -> Result<Option<Vec<u8>>, String> {
    let mut connection = pool.get().await.map_err(|error| error.to_string())?;
    redis::cmd("GET")
        .arg(key.as_str())
        .query_async::<Option<Vec<u8>>>(&mut *connection)
        .await
        .map_err(|error| error.to_string())
}

async fn redis_set(
    pool: &deadpool_redis::Pool,
    key: &Key,
    bytes: &[u8],
    ttl: Duration,
) -> Result<(), String> {
    let mut connection = pool.get().await.map_err(|error| error.to_string())?;
    let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
    redis::cmd("SET")
        .arg(key.as_str())
        .arg(bytes)
        .arg("PX")
        .arg(millis)
        .query_async::<()>(&mut *connection)
        .await
        .map_err(|error| error.to_string())
}

/// An answer on its way to the cache once it has ended whole.
pub struct Fill {
    cache: Arc<CompletionCache>,
    key: Key,
}

impl Fill {
    pub fn new(cache: Arc<CompletionCache>, key: Key) -> Self {
        Self { cache, key }
    }

    /// Stores the answer; each hit gets its own id.
    pub fn store(self, mut answer: Answer) {
        answer.id.clear();
        self.cache.put(self.key, &answer);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::ai::canonical::{Finish, Message, Part, Role};
    use crate::ai::usage::Tokens;

    fn chat(text: &str) -> Chat {
        Chat {
            model: "gpt-test".to_owned(),
            messages: vec![Message {
                role: Role::User,
                parts: vec![Part::Text(text.to_owned())],
            }],
            ..Chat::default()
        }
    }

    fn answer(text: &str) -> Answer {
        Answer {
            id: "chatcmpl-1".to_owned(),
            model: "gpt-test".to_owned(),
            parts: vec![Part::Text(text.to_owned())],
            finish: Finish::Stop,
            usage: Some(Tokens {
                prompt: 3,
                completion: 2,
                cached: 0,
            }),
        }
    }

    fn memory(ttl_secs: u64) -> Arc<CompletionCache> {
        let config = Config {
            ai_cache_ttl_secs: ttl_secs,
            ..Config::default()
        };
        Arc::new(CompletionCache::new(&config).unwrap())
    }

    #[test]
    fn keys_follow_the_tenant_and_what_changes_the_answer_but_not_streaming() {
        let asked = chat("hello");
        let streamed = Chat {
            stream: true,
            ..asked.clone()
        };
        let warmer = Chat {
            temperature: Some(0.9),
            ..asked.clone()
        };
        let key = Key::new("tenant-a", &asked);
        assert_eq!(key, Key::new("tenant-a", &streamed));
        assert_ne!(key, Key::new("tenant-b", &asked));
        assert_ne!(key, Key::new("tenant-a", &warmer));
        assert_ne!(key, Key::new("tenant-a", &chat("hello!")));
        assert!(key.as_str().starts_with("gw:completion:v1:{tenant-a}:"));
    }

    #[tokio::test]
    async fn a_stored_answer_is_found_without_its_id_until_it_expires() {
        let cache = memory(1);
        let key = Key::new("tenant-a", &chat("hello"));
        assert_eq!(cache.get(&key).await, None);
        Fill::new(Arc::clone(&cache), key.clone()).store(answer("hi"));
        let found = cache.get(&key).await.unwrap();
        assert_eq!(found.text(), "hi");
        assert_eq!(found.usage, answer("hi").usage);
        assert!(found.id.is_empty(), "each hit gets its own id");
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(cache.get(&key).await, None, "expired after the TTL");
    }

    #[tokio::test]
    async fn an_answer_over_the_entry_bound_is_not_stored() {
        let config = Config {
            ai_cache_max_entry_bytes: 64,
            ..Config::default()
        };
        let cache = Arc::new(CompletionCache::new(&config).unwrap());
        let key = Key::new("tenant-a", &chat("hello"));
        Fill::new(Arc::clone(&cache), key.clone()).store(answer(&"x".repeat(100)));
        assert_eq!(cache.get(&key).await, None);
    }
}
