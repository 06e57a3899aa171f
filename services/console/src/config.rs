//! The `[console]` section.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// The `[console]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// HTTP listen address of the pages.
    pub listen_addr: SocketAddr,
    /// The services the pages call, with the signed-in user's JWT.
    pub identity_url: String,
    pub catalog_url: String,
    pub quota_url: String,
    pub usage_url: String,
    /// The edge as callers reach it: shown in snippets, and where the
    /// playground sends its chats.
    pub edge_url: String,
    /// Mark the session cookie `Secure` (the console is served behind TLS).
    pub secure_cookies: bool,
    /// Every call to a service gives up after this.
    pub call_timeout_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 8000)),
            identity_url: "http://127.0.0.1:50051".to_owned(),
            catalog_url: "http://127.0.0.1:50052".to_owned(),
            quota_url: "http://127.0.0.1:50053".to_owned(),
            usage_url: "http://127.0.0.1:50054".to_owned(),
            edge_url: "http://127.0.0.1:8080".to_owned(),
            secure_cookies: false,
            call_timeout_ms: 5000,
        }
    }
}

impl Config {
    pub fn validate(&self, problems: &mut Vec<String>) {
        let urls = [
            ("identity_url", &self.identity_url),
            ("catalog_url", &self.catalog_url),
            ("quota_url", &self.quota_url),
            ("usage_url", &self.usage_url),
            ("edge_url", &self.edge_url),
        ];
        for (name, url) in urls {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                problems.push(format!("console.{name}: {url:?} is not an http(s) URL"));
            }
        }
        if self.call_timeout_ms == 0 {
            problems.push("console.call_timeout_ms: must be positive".to_owned());
        }
    }
}
