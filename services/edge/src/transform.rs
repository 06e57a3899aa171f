//! An API's `transform` policy, compiled: header edits on the request and
//! on the response (remove, then rename, then set), and the path prefix
//! stripped and added before forwarding.

use gateway_proto::catalog::v1 as pb;
use http::{HeaderMap, HeaderName, HeaderValue};

#[derive(Debug, Default, Clone)]
pub struct HeaderEdits {
    remove: Vec<HeaderName>,
    rename: Vec<(HeaderName, HeaderName)>,
    set: Vec<(HeaderName, HeaderValue)>,
}

impl HeaderEdits {
    /// Names or values that are not valid HTTP are skipped (validation
    /// refuses them at write time).
    fn compile(edits: Option<&pb::HeaderTransform>) -> Self {
        let Some(edits) = edits else {
            return Self::default();
        };
        let name = |name: &str| HeaderName::from_bytes(name.as_bytes()).ok();
        let mut rename: Vec<(HeaderName, HeaderName)> = edits
            .rename
            .iter()
            .filter_map(|(from, to)| Some((name(from)?, name(to)?)))
            .collect();
        rename.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        let mut set: Vec<(HeaderName, HeaderValue)> = edits
            .set
            .iter()
            .filter_map(|(key, value)| Some((name(key)?, HeaderValue::from_str(value).ok()?)))
            .collect();
        set.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        Self {
            remove: edits
                .remove
                .iter()
                .filter_map(|header| name(header))
                .collect(),
            rename,
            set,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.rename.is_empty() && self.set.is_empty()
    }

    pub fn apply(&self, headers: &mut HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (from, to) in &self.rename {
            let values: Vec<HeaderValue> = headers.get_all(from).iter().cloned().collect();
            if values.is_empty() {
                continue;
            }
            headers.remove(from);
            headers.remove(to);
            for value in values {
                headers.append(to.clone(), value);
            }
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct Transform {
    pub request: HeaderEdits,
    pub response: HeaderEdits,
    strip_prefix: String,
    add_prefix: String,
    /// Set on every response of the API.
    security: Vec<(HeaderName, HeaderValue)>,
    /// Wrap JSON responses up to this many bytes.
    pub envelope: Option<u64>,
}

/// The security headers a policy asks for.
fn security_headers(policy: Option<&pb::SecurityHeaders>) -> Vec<(HeaderName, HeaderValue)> {
    let Some(policy) = policy else {
        return Vec::new();
    };
    let mut headers = Vec::new();
    if let Some(age) = policy.hsts_max_age.as_ref().filter(|age| age.seconds > 0) {
        let mut value = format!("max-age={}", age.seconds);
        if policy.hsts_include_subdomains {
            value.push_str("; includeSubDomains");
        }
        headers.push((http::header::STRICT_TRANSPORT_SECURITY, value));
    }
    if policy.nosniff {
        headers.push((http::header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()));
    }
    for (name, value) in [
        (http::header::X_FRAME_OPTIONS, &policy.frame_options),
        (http::header::REFERRER_POLICY, &policy.referrer_policy),
        (
            http::header::CONTENT_SECURITY_POLICY,
            &policy.content_security_policy,
        ),
    ] {
        if !value.is_empty() {
            headers.push((name, value.clone()));
        }
    }
    headers
        .into_iter()
        .filter_map(|(name, value)| Some((name, HeaderValue::from_str(&value).ok()?)))
        .collect()
}

/// `{"data": <body>, "meta": {"request_id": ...}}`, or `None` when the
/// body is not JSON.
pub fn envelope(body: &[u8], request_id: &str) -> Option<Vec<u8>> {
    serde_json::from_slice::<serde::de::IgnoredAny>(body).ok()?;
    let meta = serde_json::json!({ "request_id": request_id });
    let mut wrapped = Vec::with_capacity(body.len() + 64);
    wrapped.extend_from_slice(b"{\"data\":");
    wrapped.extend_from_slice(body);
    wrapped.extend_from_slice(b",\"meta\":");
    wrapped.extend_from_slice(meta.to_string().as_bytes());
    wrapped.push(b'}');
    Some(wrapped)
}

impl Transform {
    pub fn compile(policy: Option<&pb::TransformPolicy>) -> Self {
        let Some(policy) = policy else {
            return Self::default();
        };
        Self {
            request: HeaderEdits::compile(policy.request_headers.as_ref()),
            response: HeaderEdits::compile(policy.response_headers.as_ref()),
            strip_prefix: policy.strip_path_prefix.trim_end_matches('/').to_owned(),
            add_prefix: policy.add_path_prefix.trim_end_matches('/').to_owned(),
            security: security_headers(policy.security_headers.as_ref()),
            envelope: policy
                .json_envelope
                .as_ref()
                .filter(|envelope| envelope.enabled)
                .map(|envelope| {
                    u64::try_from(envelope.max_bytes)
                        .ok()
                        .filter(|max| *max > 0)
                        .unwrap_or(1024 * 1024)
                }),
        }
    }

    /// Adds the security headers to a response.
    pub fn secure(&self, headers: &mut HeaderMap) {
        for (name, value) in &self.security {
            headers.insert(name.clone(), value.clone());
        }
    }

    /// The path after stripping (at a segment boundary) and adding the
    /// configured prefixes; always starts with '/'.
    pub fn path(&self, path: &str) -> String {
        let stripped = match path.strip_prefix(self.strip_prefix.as_str()) {
            Some(rest)
                if !self.strip_prefix.is_empty() && (rest.is_empty() || rest.starts_with('/')) =>
            {
                rest
            }
            _ => path,
        };
        let stripped = if stripped.is_empty() { "/" } else { stripped };
        if self.add_prefix.is_empty() {
            stripped.to_owned()
        } else {
            format!("{}{stripped}", self.add_prefix)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edits(
        set: &[(&str, &str)],
        remove: &[&str],
        rename: &[(&str, &str)],
    ) -> pb::HeaderTransform {
        pb::HeaderTransform {
            set: set
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            remove: remove.iter().map(|name| (*name).to_owned()).collect(),
            rename: rename
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn headers_are_removed_then_renamed_then_set() {
        let compiled = HeaderEdits::compile(Some(&edits(
            &[("x-env", "prod"), ("x-old", "set-after-rename")],
            &["x-internal"],
            &[("x-old", "x-new")],
        )));
        let mut headers = HeaderMap::new();
        headers.insert("x-internal", HeaderValue::from_static("secret"));
        headers.insert("x-old", HeaderValue::from_static("value"));
        headers.insert("x-env", HeaderValue::from_static("dev"));
        compiled.apply(&mut headers);
        assert!(headers.get("x-internal").is_none());
        assert_eq!(headers["x-new"], "value");
        assert_eq!(headers["x-old"], "set-after-rename");
        assert_eq!(headers["x-env"], "prod");
    }

    #[test]
    fn security_headers_and_the_json_envelope() {
        let transform = Transform::compile(Some(&pb::TransformPolicy {
            security_headers: Some(pb::SecurityHeaders {
                hsts_max_age: Some(prost_types::Duration {
                    seconds: 31_536_000,
                    nanos: 0,
                }),
                hsts_include_subdomains: true,
                nosniff: true,
                frame_options: "DENY".to_owned(),
                referrer_policy: "no-referrer".to_owned(),
                content_security_policy: String::new(),
            }),
            json_envelope: Some(pb::JsonEnvelope {
                enabled: true,
                max_bytes: 0,
            }),
            ..Default::default()
        }));
        let mut headers = HeaderMap::new();
        transform.secure(&mut headers);
        assert_eq!(
            headers["strict-transport-security"],
            "max-age=31536000; includeSubDomains"
        );
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["x-frame-options"], "DENY");
        assert_eq!(headers["referrer-policy"], "no-referrer");
        assert!(headers.get("content-security-policy").is_none());
        assert_eq!(transform.envelope, Some(1024 * 1024));
        let wrapped = envelope(br#"{"id":1}"#, "req-1").unwrap();
        let json: serde_json::Value = serde_json::from_slice(&wrapped).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"data": {"id": 1}, "meta": {"request_id": "req-1"}})
        );
        assert!(envelope(b"not json", "req-1").is_none());
    }

    #[test]
    fn prefixes_are_stripped_at_a_segment_boundary_then_added() {
        let transform = Transform::compile(Some(&pb::TransformPolicy {
            strip_path_prefix: "/api/".to_owned(),
            add_path_prefix: "/internal".to_owned(),
            ..Default::default()
        }));
        assert_eq!(transform.path("/api/users"), "/internal/users");
        assert_eq!(transform.path("/api"), "/internal/");
        assert_eq!(transform.path("/apix/users"), "/internal/apix/users");
        assert_eq!(Transform::default().path("/same"), "/same");
    }
}
