//! Which input of the API page a catalog refusal belongs to: the catalog
//! names the field by its path in the API (`api.upstreams[0].url`,
//! `api.timeouts.read`), the page shows the message under that input.

/// The form input for a field path of `gateway.catalog.v1.Api`, if the
/// page shows one.
pub fn input_for(path: &str) -> Option<&'static str> {
    let path = path.strip_prefix("api.").unwrap_or(path);
    let mut segments = path
        .split('.')
        .map(|segment| segment.split('[').next().unwrap_or(segment));
    let (top, next) = (segments.next()?, segments.next().unwrap_or(""));
    let input = match (top, next) {
        ("name", _) => "name",
        ("upstreams", _) => "upstreams",
        ("load_balancing", "hash_header") => "hash_header",
        ("load_balancing", _) => "algorithm",
        ("auth", _) => "auth_mode",
        ("max_request_body_bytes", _) => "max_body",
        ("timeouts", "connect") => "connect_ms",
        ("timeouts", "total") => "total_ms",
        ("timeouts", _) => "read_ms",
        ("retry", "max_attempts") => "max_attempts",
        ("retry", _) => "retry_statuses",
        ("cache", _) => "cache_ttl_ms",
        ("cors", _) => "cors_origins",
        ("routes", _) => "routes",
        ("health_check", "interval") => "health_interval_ms",
        ("health_check", "timeout") => "health_timeout_ms",
        ("health_check", _) => "health_path",
        ("circuit_breaker", "open_duration") => "breaker_open_ms",
        ("circuit_breaker", _) => "breaker_failures",
        ("access", "deny_cidrs") => "deny_cidrs",
        ("access", "allow_cidrs") => "allow_cidrs",
        ("access", _) => "maintenance_message",
        ("transform", "strip_path_prefix") => "strip_prefix",
        ("transform", "add_path_prefix") => "add_prefix",
        ("transform", _) => "set_headers",
        _ => return None,
    };
    Some(input)
}

/// A refusal of the API page: under one input, or above the form.
#[derive(Debug, Default)]
pub struct Refusal {
    pub input: Option<&'static str>,
    pub message: String,
}

impl Refusal {
    /// From a catalog status (`path: message` for invalid arguments).
    pub fn of(status: &tonic::Status, message: String) -> Self {
        let named = (status.code() == tonic::Code::InvalidArgument)
            .then(|| status.message().split_once(": "))
            .flatten()
            .and_then(|(path, text)| input_for(path).map(|input| (input, text.to_owned())));
        match named {
            Some((input, message)) => Self {
                input: Some(input),
                message,
            },
            None => Self {
                input: None,
                message,
            },
        }
    }

    /// The message for `input`, if it is this refusal's.
    pub fn at(&self, input: &str) -> Option<&str> {
        (self.input == Some(input)).then_some(self.message.as_str())
    }

    /// The message shown above the form (one no input owns).
    pub fn general(&self) -> Option<&str> {
        (self.input.is_none() && !self.message.is_empty()).then_some(self.message.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_paths_find_their_inputs() {
        assert_eq!(input_for("api.upstreams[0].url"), Some("upstreams"));
        assert_eq!(input_for("api.timeouts.connect"), Some("connect_ms"));
        assert_eq!(input_for("api.routes[2].pattern"), Some("routes"));
        assert_eq!(input_for("api.access.deny_cidrs[1]"), Some("deny_cidrs"));
        assert_eq!(input_for("api.auth.jwt.issuer"), Some("auth_mode"));
        assert_eq!(input_for("update_mask"), None);
    }

    #[test]
    fn a_refusal_sits_under_its_input_or_above_the_form() {
        let status = tonic::Status::invalid_argument("api.upstreams[0].url: must be http(s)");
        let refusal = Refusal::of(&status, status.message().to_owned());
        assert_eq!(refusal.at("upstreams"), Some("must be http(s)"));
        assert_eq!(refusal.general(), None);
        let other = Refusal::of(
            &tonic::Status::permission_denied("no"),
            "Not allowed: no".to_owned(),
        );
        assert_eq!(other.general(), Some("Not allowed: no"));
    }
}
