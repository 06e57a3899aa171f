//! The edge's configuration section.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// The `[edge]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// HTTP listen address for client traffic (HTTP/1.1 and h2c).
    pub listen_addr: SocketAddr,
    /// gRPC endpoints of the control-plane services.
    pub identity_url: String,
    pub catalog_url: String,
    pub quota_url: String,
    pub usage_url: String,
    /// Largest request body (413 above it) unless the API sets its own.
    pub max_request_body_bytes: u64,
    /// Largest request head (hyper's read buffer).
    pub max_header_bytes: usize,
    /// A client that has not sent its request head by then is dropped.
    pub header_read_timeout_ms: u64,
    pub upstream_connect_timeout_ms: u64,
    /// Wait for the upstream's response head unless the API sets its own.
    pub upstream_read_timeout_ms: u64,
    /// When quota cannot be reached: serve with the edge's own per-key
    /// floor (`fail_open`), or refuse with 503 (`fail_closed`).
    pub quota_failure: QuotaFailure,
    /// The floor's requests per minute per key while quota is away.
    pub fail_open_requests_per_minute: u64,
    /// Captured bodies are cut here unless the API sets its own cap.
    pub default_capture_bytes: usize,
    /// The usage sender's on-disk spool: every usage event is appended
    /// there before it is streamed to the usage service.
    pub spool_dir: String,
    /// The spool's size bound.
    pub spool_max_bytes: u64,
    /// When the spool is fsynced: `interval` (every `spool_fsync_interval_ms`;
    /// a process crash loses nothing, a power cut at most that long),
    /// `always` (every write; not even a power cut loses an answered
    /// request's event) or `never` (left to the OS).
    pub spool_fsync: SpoolFsync,
    pub spool_fsync_interval_ms: u64,
    /// At the size bound: `refuse` new traffic with 503 (unbilled traffic
    /// is lost money), or `drop` events (counted and logged) and serve.
    pub spool_full: SpoolFull,
    /// Extra CA certificates (PEM) trusted for https upstreams, besides
    /// the system's; empty = system roots only.
    pub upstream_ca_file: String,
    /// Distinct unregistered `X-Client-ID` values one key may use per UTC
    /// day (each counts the key's plan on its own); 429 past it.
    pub max_client_ids_per_key: usize,
    /// The level of the one access-log event per request (`off`, `error`,
    /// `warn`, `info`, `debug`, `trace`); it goes where the logs go, as
    /// JSON with `log_format = json`.
    pub access_log: String,
    /// The response cache's bound, in bytes, over every API that has one.
    pub cache_max_bytes: u64,
    /// Larger answers are not cached unless the API sets its own cap.
    pub cache_max_body_bytes: u64,
    /// Completion tokens reserved for an AI request that names no max
    /// tokens (and the most it may produce when the budget lowers it).
    pub ai_default_max_tokens: i64,
    /// Below this many affordable completion tokens an AI request is
    /// refused (402) rather than sent with a smaller max tokens.
    pub ai_min_completion_tokens: i64,
    /// Channels tried for one AI request (the first included).
    pub ai_max_attempts: usize,
    /// After a client leaves a stream: how long, and how many bytes, the
    /// edge keeps reading the provider for its final usage.
    pub ai_stream_drain_secs: u64,
    pub ai_stream_drain_bytes: u64,
    /// A non-streamed AI answer is passed through as it comes and kept up
    /// to this size to read its usage; a larger one is counted with the
    /// tokenizer instead.
    pub ai_max_answer_bytes: u64,
    /// Browser origins that may call the AI endpoints (`*` for any); empty
    /// = no CORS on them. Preflights are answered by the edge, without a
    /// key; keys travel in headers, so credentials are never allowed.
    pub ai_cors_allowed_origins: Vec<String>,
    /// How long a browser may cache an AI preflight's answer.
    pub ai_cors_max_age_secs: u64,
    /// How long an answer stays in the completion cache.
    pub ai_cache_ttl_secs: u64,
    /// What a cache hit costs, as a percent of the stored answer's price
    /// (0: free).
    pub ai_cache_hit_cost_percent: u32,
    /// `redis://` to share the completion cache between edges; empty = in
    /// memory, bounded by `ai_cache_max_bytes`.
    pub ai_cache_redis_url: String,
    pub ai_cache_max_bytes: u64,
    /// Answers larger than this are not stored.
    pub ai_cache_max_entry_bytes: u64,
}

/// See [`Config::spool_fsync`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpoolFsync {
    Interval,
    Always,
    Never,
}

/// See [`Config::spool_full`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpoolFull {
    Refuse,
    Drop,
}

/// What the edge does when quota does not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuotaFailure {
    FailOpen,
    FailClosed,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            identity_url: "http://127.0.0.1:50051".to_owned(),
            catalog_url: "http://127.0.0.1:50052".to_owned(),
            quota_url: "http://127.0.0.1:50053".to_owned(),
            usage_url: "http://127.0.0.1:50054".to_owned(),
            max_request_body_bytes: 10 * 1024 * 1024,
            max_header_bytes: 64 * 1024,
            header_read_timeout_ms: 10_000,
            upstream_connect_timeout_ms: 5_000,
            upstream_read_timeout_ms: 60_000,
            quota_failure: QuotaFailure::FailOpen,
            fail_open_requests_per_minute: 600,
            default_capture_bytes: 64 * 1024,
            spool_dir: "data/edge-spool".to_owned(),
            spool_max_bytes: 1 << 30,
            spool_fsync: SpoolFsync::Interval,
            spool_fsync_interval_ms: 1000,
            spool_full: SpoolFull::Refuse,
            upstream_ca_file: String::new(),
            max_client_ids_per_key: 100,
            access_log: "debug".to_owned(),
            cache_max_bytes: 64 * 1024 * 1024,
            cache_max_body_bytes: 1024 * 1024,
            ai_default_max_tokens: 4096,
            ai_min_completion_tokens: 16,
            ai_max_attempts: 3,
            ai_stream_drain_secs: 30,
            ai_stream_drain_bytes: 8 * 1024 * 1024,
            ai_max_answer_bytes: 64 * 1024 * 1024,
            ai_cors_allowed_origins: Vec::new(),
            ai_cors_max_age_secs: 600,
            ai_cache_ttl_secs: 3600,
            ai_cache_hit_cost_percent: 0,
            ai_cache_redis_url: String::new(),
            ai_cache_max_bytes: 64 * 1024 * 1024,
            ai_cache_max_entry_bytes: 1024 * 1024,
        }
    }
}

impl Config {
    pub fn validate(&self, problems: &mut Vec<String>) {
        if self.max_header_bytes < 8192 {
            problems.push("edge.max_header_bytes: must be at least 8192".to_owned());
        }
        if self.upstream_connect_timeout_ms == 0 || self.upstream_read_timeout_ms == 0 {
            problems.push("edge.upstream_*_timeout_ms: must be positive".to_owned());
        }
        if !matches!(
            self.access_log.as_str(),
            "off" | "error" | "warn" | "info" | "debug" | "trace"
        ) {
            problems.push(
                "edge.access_log: expected off, error, warn, info, debug or trace".to_owned(),
            );
        }
        if self.max_client_ids_per_key == 0 {
            problems.push("edge.max_client_ids_per_key: must be positive".to_owned());
        }
        if self.cache_max_bytes == 0 || self.cache_max_body_bytes == 0 {
            problems.push(
                "edge.cache_max_bytes, edge.cache_max_body_bytes: must be positive".to_owned(),
            );
        }
        if self.ai_default_max_tokens <= 0
            || self.ai_min_completion_tokens <= 0
            || self.ai_max_attempts == 0
        {
            problems.push("edge.ai_default_max_tokens, edge.ai_min_completion_tokens, edge.ai_max_attempts: must be positive".to_owned());
        }
        if let Some(origin) = self
            .ai_cors_allowed_origins
            .iter()
            .find(|origin| !crate::cors::is_origin(origin))
        {
            problems.push(format!(
                "edge.ai_cors_allowed_origins: {origin:?} is not `*` or an origin such as https://app.example"
            ));
        }
        problems.extend(self.ai_cache_problems());
        if self.spool_dir.trim().is_empty() {
            problems.push("edge.spool_dir: must not be empty".to_owned());
        }
        // Room for several segments above what has_room keeps free.
        if self.spool_max_bytes < 4 << 20 {
            problems.push("edge.spool_max_bytes: must be at least 4 MiB".to_owned());
        }
        if self.spool_fsync == SpoolFsync::Interval && self.spool_fsync_interval_ms == 0 {
            problems.push(
                "edge.spool_fsync_interval_ms: must be positive (or spool_fsync = \"always\")"
                    .to_owned(),
            );
        }
        for (key, url) in [
            ("identity_url", &self.identity_url),
            ("catalog_url", &self.catalog_url),
            ("quota_url", &self.quota_url),
            ("usage_url", &self.usage_url),
        ] {
            let valid = url.parse::<http::Uri>().is_ok_and(|uri| {
                matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some()
            });
            if !valid {
                problems.push(format!(
                    "edge.{key}: expected an http:// or https:// URL, got {url:?}"
                ));
            }
        }
    }
}

impl Config {
    fn ai_cache_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.ai_cache_ttl_secs == 0
            || self.ai_cache_max_bytes == 0
            || self.ai_cache_max_entry_bytes == 0
        {
            problems.push("edge.ai_cache_ttl_secs, edge.ai_cache_max_bytes, edge.ai_cache_max_entry_bytes: must be positive".to_owned());
        }
        if self.ai_cache_hit_cost_percent > 100 {
            problems.push("edge.ai_cache_hit_cost_percent: must be 0 to 100".to_owned());
        }
        let url = &self.ai_cache_redis_url;
        if !(url.is_empty() || url.starts_with("redis://") || url.starts_with("rediss://")) {
            problems.push(format!(
                "edge.ai_cache_redis_url: expected redis:// or rediss://, got {url:?}"
            ));
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_urls_must_be_http() {
        let config = Config {
            quota_url: "127.0.0.1:50053".to_owned(),
            ..Config::default()
        };
        let mut problems = Vec::new();
        config.validate(&mut problems);
        assert_eq!(
            problems,
            ["edge.quota_url: expected an http:// or https:// URL, got \"127.0.0.1:50053\""]
        );
        let mut problems = Vec::new();
        Config::default().validate(&mut problems);
        assert!(problems.is_empty(), "{problems:?}");
    }
}
