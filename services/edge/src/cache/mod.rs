//! Stage: the response cache. A shared in-memory cache bounded in bytes
//! (moka, weighed by entry size), keyed by API, path, query and the API's
//! vary headers; the RFC 9111 rules are in [`control`]. Answers from it are
//! still authenticated and admitted by quota: the stage runs after admit.
//!
//! Concurrent misses for one key wait for the first one's upstream answer
//! (coalescing), and a successful write (POST, PUT, PATCH, DELETE) to a
//! path makes what was stored for it, under any query, stale.

pub mod control;
mod fill;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use gateway_proto::catalog::v1 as pb;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode};
use http_body_util::BodyExt as _;
use tokio::sync::watch;

use crate::body::EdgeBody;
use control::Directives;
pub use fill::Filling;

/// `HIT` or `MISS` on every answer of an API with a cache, for its methods.
pub const X_CACHE: HeaderName = HeaderName::from_static("x-cache");
/// Paths whose invalidation is remembered; past it the oldest are folded
/// into one global barrier (safe: it only makes more entries stale).
const INVALIDATIONS_KEPT: u64 = 100_000;
const DEFAULT_TTL: Duration = Duration::from_secs(60);

/// An API's cache policy, compiled.
#[derive(Debug)]
pub struct CachePolicy {
    ttl: Duration,
    methods: Vec<Method>,
    vary: Vec<HeaderName>,
    /// `None`: the edge's default.
    max_body: Option<u64>,
    pub counters: Arc<Counters>,
}

impl CachePolicy {
    /// `None` when the cache is off. Only GET and HEAD are cached (the
    /// catalog refuses others: a POST's answer depends on its body).
    pub fn compile(policy: Option<&pb::CachePolicy>, counters: Arc<Counters>) -> Option<Self> {
        let policy = policy.filter(|policy| policy.enabled)?;
        let methods: Vec<Method> = if policy.methods.is_empty() {
            vec![Method::GET, Method::HEAD]
        } else {
            policy
                .methods
                .iter()
                .filter_map(|method| method.parse::<Method>().ok())
                .filter(|method| matches!(*method, Method::GET | Method::HEAD))
                .collect()
        };
        if methods.is_empty() {
            return None;
        }
        Some(Self {
            ttl: crate::policy::positive(policy.ttl.as_ref()).unwrap_or(DEFAULT_TTL),
            methods,
            vary: policy
                .vary_headers
                .iter()
                .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
                .collect(),
            max_body: u64::try_from(policy.max_body_bytes)
                .ok()
                .filter(|bytes| *bytes > 0),
            counters,
        })
    }

    /// Whether requests with this method are looked up.
    pub fn applies(&self, method: &Method) -> bool {
        self.methods.contains(method)
    }
}

/// Hits and misses of one API, for `/admin/edge` and the metrics.
#[derive(Debug, Default)]
pub struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
}

impl Counters {
    pub fn record(&self, api_id: &str, hit: bool) {
        let (counter, result) = if hit {
            (&self.hits, "hit")
        } else {
            (&self.misses, "miss")
        };
        counter.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("edge_cache_requests_total", "api" => api_id.to_owned(), "result" => result)
            .increment(1);
    }

    /// `{hits, misses, hit_ratio}`.
    pub fn snapshot(&self) -> serde_json::Value {
        let hits = self.hits.load(Ordering::Relaxed);
        let misses = self.misses.load(Ordering::Relaxed);
        let total = hits + misses;
        serde_json::json!({
            "hits": hits,
            "misses": misses,
            "hit_ratio": if total == 0 { 0.0 } else { hits as f64 / total as f64 },
        })
    }
}

/// One stored answer.
#[derive(Debug)]
pub struct Entry {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    stored: Instant,
    /// The age it already had upstream.
    aged: Duration,
    /// How long it may be served, counted from when the upstream made it.
    lifetime: Duration,
    /// Stale once its path is invalidated with a later sequence number.
    seq: u64,
    path_key: String,
    /// The headers the upstream's `Vary` names, as the storing request
    /// sent them.
    varies: Vec<(HeaderName, Option<HeaderValue>)>,
}

impl Entry {
    pub fn age(&self) -> Duration {
        self.aged + self.stored.elapsed()
    }

    fn weight(&self, key: &str) -> u32 {
        let headers: usize = self
            .headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 32)
            .sum();
        u32::try_from(self.body.len() + headers + key.len() + self.path_key.len() + 256)
            .unwrap_or(u32::MAX)
    }

    fn selected_by(&self, request: &HeaderMap) -> bool {
        self.varies
            .iter()
            .all(|(name, value)| request.get(name) == value.as_ref())
    }

    /// The stored answer for one request: 304 when its conditions hold,
    /// the head alone for HEAD.
    pub fn answer(&self, method: &Method, request: &HeaderMap) -> Response<EdgeBody> {
        let mut response = if control::not_modified(request, &self.headers) {
            let mut response = Response::new(crate::body::empty());
            *response.status_mut() = StatusCode::NOT_MODIFIED;
            for name in control::NOT_MODIFIED_HEADERS {
                for value in self.headers.get_all(&name) {
                    response.headers_mut().append(name.clone(), value.clone());
                }
            }
            response
        } else {
            let body = if method == Method::HEAD {
                crate::body::empty()
            } else {
                crate::body::full(self.body.clone())
            };
            let mut response = Response::new(body);
            *response.status_mut() = self.status;
            *response.headers_mut() = self.headers.clone();
            response
        };
        let headers = response.headers_mut();
        headers.insert(header::AGE, HeaderValue::from(self.age().as_secs()));
        headers.insert(X_CACHE, HeaderValue::from_static("HIT"));
        response
    }
}

/// The request a lookup is made for.
pub struct Lookup<'a> {
    pub api_id: &'a str,
    pub method: &'a Method,
    /// Below the API, as routed.
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
}

/// What the cache has for a request.
pub enum Consulted {
    Hit(Arc<Entry>),
    /// Go upstream; with a [`Fill`] the answer is stored on the way back.
    Miss(Option<Fill>),
    /// `only-if-cached` and nothing stored: 504.
    Absent,
}

/// The shared cache; cheap to clone.
#[derive(Clone)]
pub struct ResponseCache {
    inner: Arc<Inner>,
}

struct Inner {
    entries: moka::sync::Cache<String, Arc<Entry>>,
    /// Path key -> the sequence number of its last invalidation.
    invalidated: moka::sync::Cache<String, u64>,
    /// The barrier for paths whose invalidation was forgotten.
    floor: Arc<AtomicU64>,
    seq: AtomicU64,
    /// Keys being fetched, for followers to wait on.
    filling: Mutex<HashMap<String, watch::Receiver<()>>>,
    capacity: u64,
    max_body: u64,
}

struct ByLifetime;

impl moka::Expiry<String, Arc<Entry>> for ByLifetime {
    fn expire_after_create(
        &self,
        _key: &String,
        entry: &Arc<Entry>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(entry.lifetime.saturating_sub(entry.aged))
    }
}

impl ResponseCache {
    /// At most `capacity` bytes in all; bodies over `max_body` (unless an
    /// API sets its own cap) are not stored.
    pub fn new(capacity: u64, max_body: u64) -> Self {
        let floor = Arc::new(AtomicU64::new(0));
        let barrier = Arc::clone(&floor);
        let invalidated = moka::sync::Cache::builder()
            .max_capacity(INVALIDATIONS_KEPT)
            .eviction_listener(move |_path, seq: u64, cause| {
                if cause.was_evicted() {
                    barrier.fetch_max(seq, Ordering::SeqCst);
                }
            })
            .build();
        let entries = moka::sync::Cache::builder()
            .max_capacity(capacity)
            .weigher(|key: &String, entry: &Arc<Entry>| entry.weight(key))
            .expire_after(ByLifetime)
            .build();
        Self {
            inner: Arc::new(Inner {
                entries,
                invalidated,
                floor,
                seq: AtomicU64::new(0),
                filling: Mutex::new(HashMap::new()),
                capacity,
                max_body,
            }),
        }
    }

    /// Looks the request up; a miss that may be stored leads the fetch,
    /// and concurrent misses for the same key wait up to `wait` for it.
    pub async fn consult(
        &self,
        policy: &CachePolicy,
        lookup: &Lookup<'_>,
        wait: Duration,
    ) -> Consulted {
        let directives = Directives::of_request(lookup.headers);
        let (key, path_key) = keys(policy, lookup);
        if !directives.no_cache
            && let Some(entry) = self.usable(&key, &directives, lookup.headers)
        {
            return Consulted::Hit(entry);
        }
        if directives.only_if_cached {
            return Consulted::Absent;
        }
        let conditional = lookup.headers.contains_key(header::IF_NONE_MATCH)
            || lookup.headers.contains_key(header::IF_MODIFIED_SINCE);
        // The upstream answers these itself; nothing whole to store.
        if *lookup.method == Method::HEAD || directives.no_store || conditional {
            return Consulted::Miss(None);
        }
        let lead = match self.lead(&key) {
            Ok(lead) => lead,
            Err(mut fetching) => {
                let _ = tokio::time::timeout(wait, fetching.changed()).await;
                return match self.usable(&key, &directives, lookup.headers) {
                    Some(entry) => Consulted::Hit(entry),
                    None => Consulted::Miss(None),
                };
            }
        };
        Consulted::Miss(Some(Fill {
            cache: self.clone(),
            seq: self.inner.seq.fetch_add(1, Ordering::SeqCst) + 1,
            key,
            path_key,
            request_headers: lookup.headers.clone(),
            ttl: policy.ttl,
            max_body: policy.max_body.unwrap_or(self.inner.max_body),
            _lead: lead,
        }))
    }

    fn usable(
        &self,
        key: &str,
        directives: &Directives,
        request: &HeaderMap,
    ) -> Option<Arc<Entry>> {
        let entry = self.inner.entries.get(key)?;
        let barrier = self
            .inner
            .invalidated
            .get(&entry.path_key)
            .unwrap_or_else(|| self.inner.floor.load(Ordering::SeqCst));
        let age = entry.age();
        let usable = entry.seq > barrier
            && age < entry.lifetime
            && directives
                .max_age
                .is_none_or(|max_age| age.as_secs() <= max_age)
            && entry.selected_by(request);
        usable.then_some(entry)
    }

    /// `Ok`: this request fetches the key (followers wait until the sender
    /// drops); `Err`: another one already does.
    fn lead(&self, key: &str) -> Result<watch::Sender<()>, watch::Receiver<()>> {
        let mut filling = self
            .inner
            .filling
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(fetching) = filling.get(key) {
            return Err(fetching.clone());
        }
        let (sender, receiver) = watch::channel(());
        filling.insert(key.to_owned(), receiver);
        Ok(sender)
    }

    /// A write to `path` of API `api_id` succeeded: what is stored for the
    /// path, under any query, is stale from now on.
    pub fn invalidate(&self, api_id: &str, path: &str) {
        let seq = self.inner.seq.fetch_add(1, Ordering::SeqCst) + 1;
        self.inner.invalidated.insert(path_key(api_id, path), seq);
        metrics::counter!("edge_cache_invalidations_total").increment(1);
    }

    /// `{entries, bytes, capacity_bytes}` for `/admin/edge`.
    pub fn snapshot(&self) -> serde_json::Value {
        self.inner.entries.run_pending_tasks();
        serde_json::json!({
            "entries": self.inner.entries.entry_count(),
            "bytes": self.inner.entries.weighted_size(),
            "capacity_bytes": self.inner.capacity,
        })
    }
}

fn path_key(api_id: &str, path: &str) -> String {
    format!("{api_id}\0{path}")
}

/// The entry's key (API, path, query, the policy's vary headers) and its
/// path's key (for invalidation).
fn keys(policy: &CachePolicy, lookup: &Lookup<'_>) -> (String, String) {
    let path_key = path_key(lookup.api_id, lookup.path);
    let mut key = path_key.clone();
    key.push('?');
    key.push_str(lookup.query.unwrap_or_default());
    for name in &policy.vary {
        key.push('\0');
        let mut values = lookup.headers.get_all(name).iter().peekable();
        if values.peek().is_none() {
            // Absent differs from empty.
            key.push('\u{1}');
        }
        for value in values {
            key.push_str(&String::from_utf8_lossy(value.as_bytes()));
            key.push(',');
        }
    }
    (key, path_key)
}

/// A miss whose answer may be stored. Dropping it (stored or not) lets
/// the requests waiting for it go on.
pub struct Fill {
    cache: ResponseCache,
    key: String,
    path_key: String,
    seq: u64,
    request_headers: HeaderMap,
    ttl: Duration,
    max_body: u64,
    _lead: watch::Sender<()>,
}

impl Drop for Fill {
    fn drop(&mut self) {
        self.cache
            .inner
            .filling
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.key);
    }
}

impl Fill {
    /// The upstream's answer on its way to the client, kept to be stored
    /// when its head says it may be; else unchanged (and the fill ends).
    pub fn keep(self, response: Response<EdgeBody>) -> Response<EdgeBody> {
        let Some(lifetime) = control::lifetime(response.status(), response.headers(), self.ttl)
        else {
            return response;
        };
        let declared = response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|length| length.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|length| length > self.max_body) {
            return response;
        }
        let (parts, body) = response.into_parts();
        let mut headers = parts.headers.clone();
        crate::headers::strip_hop_by_hop(&mut headers);
        headers.remove(header::AGE);
        let pending = fill::Pending {
            body: BytesMut::with_capacity(usize::try_from(declared.unwrap_or(0)).unwrap_or(0)),
            max: self.max_body,
            stored: Stored {
                status: parts.status,
                aged: control::upstream_age(&headers),
                lifetime,
                headers,
                fill: self,
            },
        };
        Response::from_parts(parts, Filling::new(body, pending).boxed_unsync())
    }
}

/// The head of an answer being stored.
struct Stored {
    fill: Fill,
    status: StatusCode,
    headers: HeaderMap,
    aged: Duration,
    lifetime: Duration,
}

impl Stored {
    fn store(self, body: Bytes) {
        let varies = self
            .headers
            .get_all(header::VARY)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .map(|name| {
                let value = self.fill.request_headers.get(&name).cloned();
                (name, value)
            })
            .collect();
        let entry = Entry {
            status: self.status,
            headers: self.headers,
            body,
            stored: Instant::now(),
            aged: self.aged,
            lifetime: self.lifetime,
            seq: self.fill.seq,
            path_key: self.fill.path_key.clone(),
            varies,
        };
        // Inserted before the fill drops, so its followers find it.
        self.fill
            .cache
            .inner
            .entries
            .insert(self.fill.key.clone(), Arc::new(entry));
    }
}

#[cfg(test)]
mod tests;
