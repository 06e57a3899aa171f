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
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            identity_url: "http://127.0.0.1:50051".to_owned(),
            catalog_url: "http://127.0.0.1:50052".to_owned(),
            quota_url: "http://127.0.0.1:50053".to_owned(),
            usage_url: "http://127.0.0.1:50054".to_owned(),
        }
    }
}

impl Config {
    pub fn validate(&self, problems: &mut Vec<String>) {
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
