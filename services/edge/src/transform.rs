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
