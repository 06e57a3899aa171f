//! Write-time validation of catalog resources; every message names its
//! field, so a caller knows what to fix.

use gateway_proto::catalog::v1 as pb;

use gateway_egress::EgressPolicy;

use crate::error::CatalogError;

fn invalid(field: impl Into<String>, message: impl Into<String>) -> CatalogError {
    CatalogError::InvalidArgument {
        field: field.into(),
        message: message.into(),
    }
}

/// `^[a-z0-9][a-z0-9-]{1,62}$`, as tenant slugs.
pub fn slug(field: &str, value: &str) -> Result<(), CatalogError> {
    let bytes = value.as_bytes();
    let valid = (2..=63).contains(&bytes.len())
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes[1..]
            .iter()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || *byte == b'-');
    if valid {
        Ok(())
    } else {
        Err(invalid(
            field,
            "must be 2 to 63 characters of a-z, 0-9 and '-', starting with a letter or digit",
        ))
    }
}

pub fn name(field: &str, value: &str) -> Result<(), CatalogError> {
    if (1..=200).contains(&value.chars().count()) {
        Ok(())
    } else {
        Err(invalid(field, "must be 1 to 200 characters"))
    }
}

/// An absolute http(s) URL with a host and no credentials in it.
pub fn upstream_url(field: &str, value: &str) -> Result<(), CatalogError> {
    let uri: http::Uri = value
        .parse()
        .map_err(|_| invalid(field, format!("{value:?} is not a URL")))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(invalid(field, "must be an http:// or https:// URL"));
    }
    let authority = uri
        .authority()
        .ok_or_else(|| invalid(field, "must have a host"))?;
    if authority.as_str().contains('@') {
        return Err(invalid(
            field,
            "must not carry credentials; use upstream_auth instead",
        ));
    }
    if authority.host().is_empty() {
        return Err(invalid(field, "must have a host"));
    }
    if uri.query().is_some() {
        return Err(invalid(field, "must not have a query string"));
    }
    Ok(())
}

const REFERRER_POLICIES: [&str; 8] = [
    "no-referrer",
    "no-referrer-when-downgrade",
    "origin",
    "origin-when-cross-origin",
    "same-origin",
    "strict-origin",
    "strict-origin-when-cross-origin",
    "unsafe-url",
];

fn response_shaping(transform: &pb::TransformPolicy) -> Result<(), CatalogError> {
    if let Some(security) = &transform.security_headers {
        let field = "api.transform.security_headers";
        duration(
            &format!("{field}.hsts_max_age"),
            security.hsts_max_age.as_ref(),
            false,
        )?;
        if !matches!(security.frame_options.as_str(), "" | "DENY" | "SAMEORIGIN") {
            return Err(invalid(
                format!("{field}.frame_options"),
                "must be DENY or SAMEORIGIN",
            ));
        }
        if !security.referrer_policy.is_empty()
            && !REFERRER_POLICIES.contains(&security.referrer_policy.as_str())
        {
            return Err(invalid(
                format!("{field}.referrer_policy"),
                "is not a Referrer-Policy value",
            ));
        }
        if http::HeaderValue::from_str(&security.content_security_policy).is_err() {
            return Err(invalid(
                format!("{field}.content_security_policy"),
                "is not a valid header value",
            ));
        }
    }
    if let Some(envelope) = &transform.json_envelope
        && !(0..=64 * 1024 * 1024).contains(&envelope.max_bytes)
    {
        return Err(invalid(
            "api.transform.json_envelope.max_bytes",
            "must be 0 to 64 MiB",
        ));
    }
    Ok(())
}

fn access_policy(access: &pb::AccessPolicy) -> Result<(), CatalogError> {
    if access.maintenance_message.chars().count() > 500 {
        return Err(invalid(
            "api.access.maintenance_message",
            "must be at most 500 characters",
        ));
    }
    duration(
        "api.access.maintenance_retry_after",
        access.maintenance_retry_after.as_ref(),
        false,
    )?;
    for (field, list) in [
        ("api.access.allow_cidrs", &access.allow_cidrs),
        ("api.access.deny_cidrs", &access.deny_cidrs),
    ] {
        for entry in list {
            let valid =
                entry.parse::<ipnet::IpNet>().is_ok() || entry.parse::<std::net::IpAddr>().is_ok();
            if !valid {
                return Err(invalid(
                    field,
                    format!("{entry:?} is not a CIDR or an IP address"),
                ));
            }
        }
    }
    Ok(())
}

/// The egress policy on every upstream URL of an API: a literal internal
/// address is refused here, so a tenant learns at once, not at first call.
pub fn api_egress(api: &pb::Api, egress: &EgressPolicy) -> Result<(), CatalogError> {
    let routes = api.routes.iter().enumerate().flat_map(|(route, rule)| {
        rule.upstreams
            .iter()
            .enumerate()
            .map(move |(index, target)| {
                (
                    format!("api.routes[{route}].upstreams[{index}].url"),
                    target,
                )
            })
    });
    let targets = api
        .upstreams
        .iter()
        .enumerate()
        .map(|(index, target)| (format!("api.upstreams[{index}].url"), target));
    for (field, target) in targets.chain(routes) {
        egress
            .check_url(&target.url)
            .map_err(|message| invalid(field, message))?;
    }
    Ok(())
}

/// The egress policy on a channel's base URL.
pub fn channel_egress(channel: &pb::Channel, egress: &EgressPolicy) -> Result<(), CatalogError> {
    egress
        .check_url(&channel.base_url)
        .map_err(|message| invalid("channel.base_url", message))
}

fn duration(
    field: &str,
    value: Option<&prost_types::Duration>,
    required_positive: bool,
) -> Result<i64, CatalogError> {
    let Some(value) = value else { return Ok(0) };
    if value.seconds < 0
        || value.nanos < 0
        || (value.seconds == 0 && value.nanos == 0 && required_positive)
    {
        return Err(invalid(field, "must be a positive duration"));
    }
    if value.seconds > 24 * 3600 {
        return Err(invalid(field, "must be at most 24 hours"));
    }
    Ok(value.seconds * 1_000 + i64::from(value.nanos) / 1_000_000)
}

/// The edge caches GET and HEAD only: a POST's answer depends on its body,
/// which is not part of the key.
fn cache_policy(cache: &pb::CachePolicy) -> Result<(), CatalogError> {
    duration("api.cache.ttl", cache.ttl.as_ref(), true)?;
    for method in &cache.methods {
        if !matches!(method.as_str(), "GET" | "HEAD") {
            return Err(invalid(
                "api.cache.methods",
                format!("only GET and HEAD answers are cached, not {method:?}"),
            ));
        }
    }
    for name in &cache.vary_headers {
        header_name("api.cache.vary_headers", name)?;
    }
    if cache.max_body_bytes < 0 {
        return Err(invalid("api.cache.max_body_bytes", "must not be negative"));
    }
    Ok(())
}

fn header_name(field: &str, value: &str) -> Result<(), CatalogError> {
    http::HeaderName::from_bytes(value.as_bytes())
        .map(|_| ())
        .map_err(|_| invalid(field, format!("{value:?} is not a valid header name")))
}

fn method(field: &str, value: &str) -> Result<(), CatalogError> {
    const METHODS: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT",
    ];
    if METHODS.contains(&value) {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("{value:?} is not an HTTP method (upper case)"),
        ))
    }
}

fn targets(
    field: &str,
    targets: &[pb::UpstreamTarget],
    required: bool,
) -> Result<(), CatalogError> {
    if required && targets.is_empty() {
        return Err(invalid(field, "must name at least one upstream"));
    }
    for (index, target) in targets.iter().enumerate() {
        upstream_url(&format!("{field}[{index}].url"), &target.url)?;
        if target.weight < 0 {
            return Err(invalid(
                format!("{field}[{index}].weight"),
                "must not be negative",
            ));
        }
    }
    if !targets.is_empty() && targets.iter().all(|target| target.weight == 0) && targets.len() > 1 {
        return Err(invalid(
            format!("{field}[].weight"),
            "at least one upstream needs a positive weight",
        ));
    }
    Ok(())
}

fn route(index: usize, route: &pb::RouteRule) -> Result<(), CatalogError> {
    let field = |name: &str| format!("api.routes[{index}].{name}");
    let kind = pb::MatchKind::try_from(route.match_kind).unwrap_or(pb::MatchKind::Unspecified);
    match kind {
        pb::MatchKind::Unspecified => {
            return Err(invalid(
                field("match_kind"),
                "must be EXACT, PREFIX, PARAMETERISED or REGEX",
            ));
        }
        pb::MatchKind::Exact | pb::MatchKind::Prefix => {
            if !route.pattern.starts_with('/') {
                return Err(invalid(field("pattern"), "must start with '/'"));
            }
        }
        pb::MatchKind::Parameterised => {
            if !route.pattern.starts_with('/') {
                return Err(invalid(field("pattern"), "must start with '/'"));
            }
            for segment in route.pattern.split('/') {
                let open = segment.starts_with('{');
                let close = segment.ends_with('}');
                let inner = segment.trim_start_matches('{').trim_end_matches('}');
                if open != close
                    || (open
                        && (inner.is_empty()
                            || !inner
                                .bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'_')))
                {
                    return Err(invalid(
                        field("pattern"),
                        format!("segment {segment:?} must be literal or {{name}}"),
                    ));
                }
            }
        }
        pb::MatchKind::Regex => {
            regex::Regex::new(&route.pattern)
                .map_err(|error| invalid(field("pattern"), format!("does not compile: {error}")))?;
        }
    }
    for method_name in &route.methods {
        method(&field("methods"), method_name)?;
    }
    rewrite(&field("rewrite"), route, kind)?;
    targets(&field("upstreams"), &route.upstreams, false)
}

/// Parameters a pattern captures: `{name}` segments, or named regex groups.
fn captured(route: &pb::RouteRule, kind: pb::MatchKind) -> Vec<String> {
    match kind {
        pb::MatchKind::Parameterised => route
            .pattern
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
            .map(str::to_owned)
            .collect(),
        pb::MatchKind::Regex => regex::Regex::new(&route.pattern)
            .map(|regex| regex.capture_names().flatten().map(str::to_owned).collect())
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// A rewrite template: a path whose `{name}` pieces the pattern captures.
fn rewrite(field: &str, route: &pb::RouteRule, kind: pb::MatchKind) -> Result<(), CatalogError> {
    if route.rewrite.is_empty() {
        return Ok(());
    }
    if !route.rewrite.starts_with('/') || route.rewrite.contains(['?', '#']) {
        return Err(invalid(
            field,
            "must be a path starting with '/', without query or fragment",
        ));
    }
    let params = captured(route, kind);
    let mut rest = route.rewrite.as_str();
    while let Some(start) = rest.find('{') {
        let Some(length) = rest[start..].find('}') else {
            return Err(invalid(field, "has an unclosed '{'"));
        };
        let name = &rest[start + 1..start + length];
        if !params.iter().any(|param| param == name) {
            return Err(invalid(
                field,
                format!("uses {{{name}}}, which the pattern does not capture"),
            ));
        }
        rest = &rest[start + length + 1..];
    }
    Ok(())
}

/// Checks every policy of an API.
pub fn api(api: &pb::Api, has_auth_secret: bool) -> Result<(), CatalogError> {
    name("api.name", &api.name)?;
    slug("api.slug", &api.slug)?;
    targets("api.upstreams", &api.upstreams, true)?;
    if let Some(auth) = api
        .upstream_auth
        .as_ref()
        .filter(|auth| !auth.header_name.is_empty())
    {
        header_name("api.upstream_auth.header_name", &auth.header_name)?;
    }
    if has_auth_secret
        && api
            .upstream_auth
            .as_ref()
            .is_none_or(|auth| auth.header_name.is_empty())
    {
        return Err(invalid(
            "api.upstream_auth.header_name",
            "is required with upstream_auth_secret",
        ));
    }
    for (index, rule) in api.routes.iter().enumerate() {
        route(index, rule)?;
    }
    if let Some(load_balancing) = &api.load_balancing {
        let algorithm = pb::LoadBalancingAlgorithm::try_from(load_balancing.algorithm)
            .map_err(|_| invalid("api.load_balancing.algorithm", "unknown algorithm"))?;
        if algorithm == pb::LoadBalancingAlgorithm::ConsistentHash
            && load_balancing.hash_header.is_empty()
        {
            return Err(invalid(
                "api.load_balancing.hash_header",
                "is required for CONSISTENT_HASH",
            ));
        }
    }
    if let Some(timeouts) = &api.timeouts {
        let connect = duration("api.timeouts.connect", timeouts.connect.as_ref(), true)?;
        duration("api.timeouts.read", timeouts.read.as_ref(), true)?;
        let total = duration("api.timeouts.total", timeouts.total.as_ref(), true)?;
        if connect > 0 && total > 0 && connect > total {
            return Err(invalid(
                "api.timeouts.connect",
                "must not exceed timeouts.total",
            ));
        }
    }
    if let Some(retry) = &api.retry {
        if !(0..=10).contains(&retry.max_attempts) {
            return Err(invalid(
                "api.retry.max_attempts",
                "must be between 0 and 10",
            ));
        }
        if let Some(status) = retry
            .retry_on_statuses
            .iter()
            .find(|status| !(100..=599).contains(*status))
        {
            return Err(invalid(
                "api.retry.retry_on_statuses",
                format!("{status} is not an HTTP status"),
            ));
        }
        duration(
            "api.retry.initial_backoff",
            retry.initial_backoff.as_ref(),
            false,
        )?;
        duration("api.retry.max_backoff", retry.max_backoff.as_ref(), false)?;
    }
    if let Some(health) = api.health_check.as_ref().filter(|health| health.enabled) {
        if !health.path.starts_with('/') {
            return Err(invalid("api.health_check.path", "must start with '/'"));
        }
        duration("api.health_check.interval", health.interval.as_ref(), true)?;
        duration("api.health_check.timeout", health.timeout.as_ref(), true)?;
        if health.healthy_threshold < 1 || health.unhealthy_threshold < 1 {
            return Err(invalid(
                "api.health_check.healthy_threshold",
                "thresholds must be at least 1",
            ));
        }
    }
    if let Some(breaker) = api
        .circuit_breaker
        .as_ref()
        .filter(|breaker| breaker.enabled)
    {
        if breaker.consecutive_failures < 0
            || breaker.min_requests < 0
            || breaker.half_open_requests < 0
        {
            return Err(invalid(
                "api.circuit_breaker",
                "counts must not be negative",
            ));
        }
        if !(0..=100).contains(&breaker.failure_rate_percent) {
            return Err(invalid(
                "api.circuit_breaker.failure_rate_percent",
                "must be between 0 and 100",
            ));
        }
        duration(
            "api.circuit_breaker.open_duration",
            breaker.open_duration.as_ref(),
            false,
        )?;
        duration("api.circuit_breaker.window", breaker.window.as_ref(), false)?;
    }
    if let Some(access) = &api.access {
        access_policy(access)?;
    }
    if let Some(cache) = api.cache.as_ref().filter(|cache| cache.enabled) {
        cache_policy(cache)?;
    }
    if let Some(cors) = api.cors.as_ref().filter(|cors| cors.enabled) {
        for origin in &cors.allowed_origins {
            if origin != "*" {
                upstream_url("api.cors.allowed_origins", origin)?;
            }
        }
        if cors.allow_credentials && cors.allowed_origins.iter().any(|origin| origin == "*") {
            return Err(invalid(
                "api.cors.allowed_origins",
                "'*' cannot be combined with allow_credentials",
            ));
        }
        for method_name in &cors.allowed_methods {
            method("api.cors.allowed_methods", method_name)?;
        }
        for header in cors.allowed_headers.iter().chain(&cors.expose_headers) {
            if header != "*" {
                header_name("api.cors.allowed_headers", header)?;
            }
        }
    }
    if let Some(transform) = &api.transform {
        response_shaping(transform)?;
        for (side, headers) in [
            ("request_headers", &transform.request_headers),
            ("response_headers", &transform.response_headers),
        ] {
            let Some(headers) = headers else { continue };
            let field = format!("api.transform.{side}");
            for header in headers
                .set
                .keys()
                .chain(&headers.remove)
                .chain(headers.rename.keys())
                .chain(headers.rename.values())
            {
                header_name(&field, header)?;
            }
            for value in headers.set.values() {
                http::HeaderValue::from_str(value).map_err(|_| {
                    invalid(&field, format!("{value:?} is not a valid header value"))
                })?;
            }
        }
        for (field, prefix) in [
            (
                "api.transform.strip_path_prefix",
                &transform.strip_path_prefix,
            ),
            ("api.transform.add_path_prefix", &transform.add_path_prefix),
        ] {
            if !prefix.is_empty() && !prefix.starts_with('/') {
                return Err(invalid(field, "must start with '/'"));
            }
        }
    }
    if api
        .body_capture
        .as_ref()
        .is_some_and(|capture| capture.max_bytes < 0)
    {
        return Err(invalid(
            "api.body_capture.max_bytes",
            "must not be negative",
        ));
    }
    if api.max_request_body_bytes < 0 {
        return Err(invalid(
            "api.max_request_body_bytes",
            "must not be negative",
        ));
    }
    Ok(())
}

/// Whether the channel is offered to other tenants.
pub fn is_shared(channel: &pb::Channel) -> bool {
    channel.shared_with_all_tenants || !channel.shared_tenant_ids.is_empty()
}

fn sharing(channel: &pb::Channel) -> Result<(), CatalogError> {
    let ids = &channel.shared_tenant_ids;
    if ids.iter().any(|id| id.trim().is_empty() || id.len() > 64) {
        return Err(invalid(
            "channel.shared_tenant_ids",
            "must be tenant ids (1-64 characters)",
        ));
    }
    if ids.contains(&channel.tenant_id) {
        return Err(invalid(
            "channel.shared_tenant_ids",
            "must not name the channel's own tenant",
        ));
    }
    let unique: std::collections::HashSet<&String> = ids.iter().collect();
    if unique.len() != ids.len() {
        return Err(invalid(
            "channel.shared_tenant_ids",
            "must not repeat a tenant",
        ));
    }
    Ok(())
}

pub fn channel(channel: &pb::Channel) -> Result<(), CatalogError> {
    name("channel.name", &channel.name)?;
    sharing(channel)?;
    if matches!(
        pb::Provider::try_from(channel.provider),
        Ok(pb::Provider::Unspecified) | Err(_)
    ) {
        return Err(invalid(
            "channel.provider",
            "must be OPENAI, ANTHROPIC, GEMINI or OPENAI_COMPATIBLE",
        ));
    }
    upstream_url("channel.base_url", &channel.base_url)?;
    if channel.models.is_empty() || channel.models.iter().any(|model| model.trim().is_empty()) {
        return Err(invalid(
            "channel.models",
            "must list at least one model, none empty",
        ));
    }
    for (requested, upstream) in &channel.model_mapping {
        if !channel.models.contains(requested) || upstream.trim().is_empty() {
            return Err(invalid(
                "channel.model_mapping",
                format!(
                    "{requested:?} must be one of the channel's models and map to a non-empty name"
                ),
            ));
        }
    }
    if channel.weight < 0 {
        return Err(invalid("channel.weight", "must not be negative"));
    }
    if let Some(timeouts) = &channel.timeouts {
        duration("channel.timeouts.connect", timeouts.connect.as_ref(), true)?;
        duration("channel.timeouts.read", timeouts.read.as_ref(), true)?;
        duration("channel.timeouts.total", timeouts.total.as_ref(), true)?;
    }
    Ok(())
}

pub fn prices(
    field: &str,
    input: i64,
    output: i64,
    cached: Option<i64>,
) -> Result<(), CatalogError> {
    if input < 0 || output < 0 || cached.is_some_and(|cached| cached < 0) {
        return Err(invalid(field, "prices must not be negative"));
    }
    Ok(())
}

pub fn model(field: &str, model: &str) -> Result<(), CatalogError> {
    if model.trim().is_empty() || model.len() > 200 {
        return Err(invalid(field, "must be 1 to 200 characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal_api() -> pb::Api {
        pb::Api {
            name: "Orders".to_owned(),
            slug: "orders".to_owned(),
            upstreams: vec![pb::UpstreamTarget {
                url: "http://127.0.0.1:9000/base".to_owned(),
                weight: 1,
            }],
            ..Default::default()
        }
    }

    fn field_of(result: Result<(), CatalogError>) -> String {
        match result {
            Err(CatalogError::InvalidArgument { field, .. }) => field,
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        }
    }

    #[test]
    fn rewrites_may_use_only_what_the_pattern_captures() {
        let mut with_route = minimal_api();
        with_route.routes.push(pb::RouteRule {
            match_kind: pb::MatchKind::Parameterised.into(),
            pattern: "/users/{id}".to_owned(),
            rewrite: "/v2/users/{id}".to_owned(),
            ..pb::RouteRule::default()
        });
        api(&with_route, false).unwrap();
        with_route.routes[0].rewrite = "/v2/{user}".to_owned();
        assert_eq!(field_of(api(&with_route, false)), "api.routes[0].rewrite");
        with_route.routes[0].rewrite = "v2".to_owned();
        assert_eq!(field_of(api(&with_route, false)), "api.routes[0].rewrite");
        with_route.routes[0].match_kind = pb::MatchKind::Regex.into();
        with_route.routes[0].pattern = "/items/(?P<sku>[0-9]+)".to_owned();
        with_route.routes[0].rewrite = "/catalog/{sku}".to_owned();
        api(&with_route, false).unwrap();
    }

    #[test]
    fn internal_upstreams_are_refused_unless_the_policy_opens_them() {
        let strict = EgressPolicy::strict();
        let mut bad = minimal_api();
        let error = api_egress(&bad, &strict).unwrap_err();
        assert_eq!(field_of(Err(error)), "api.upstreams[0].url");
        let open = EgressPolicy::strict().allowing("127.0.0.1:9000".parse().unwrap());
        api_egress(&bad, &open).unwrap();
        bad.routes.push(pb::RouteRule {
            upstreams: vec![pb::UpstreamTarget {
                url: "http://169.254.169.254/latest".to_owned(),
                weight: 1,
            }],
            ..pb::RouteRule::default()
        });
        assert_eq!(
            field_of(api_egress(&bad, &open)),
            "api.routes[0].upstreams[0].url"
        );
        let channel = pb::Channel {
            base_url: "http://[::ffff:10.0.0.1]/v1".to_owned(),
            ..pb::Channel::default()
        };
        assert_eq!(
            field_of(channel_egress(&channel, &strict)),
            "channel.base_url"
        );
    }

    #[test]
    fn a_minimal_api_is_valid() {
        api(&minimal_api(), false).unwrap();
    }

    #[test]
    fn bad_upstreams_name_their_field() {
        let mut bad = minimal_api();
        bad.upstreams[0].url = "ftp://host/x".to_owned();
        assert_eq!(field_of(api(&bad, false)), "api.upstreams[0].url");
        bad.upstreams[0].url = "http://user:pass@host/x".to_owned();
        assert_eq!(field_of(api(&bad, false)), "api.upstreams[0].url");
        bad.upstreams[0].url = "http://host/x".to_owned();
        bad.upstreams[0].weight = -1;
        assert_eq!(field_of(api(&bad, false)), "api.upstreams[0].weight");
        bad.upstreams.clear();
        assert_eq!(field_of(api(&bad, false)), "api.upstreams");
    }

    #[test]
    fn routes_are_checked_by_kind() {
        let mut with_route = minimal_api();
        with_route.routes.push(pb::RouteRule {
            match_kind: pb::MatchKind::Regex.into(),
            pattern: "^/orders/([0-9+$".to_owned(),
            ..Default::default()
        });
        assert_eq!(field_of(api(&with_route, false)), "api.routes[0].pattern");
        with_route.routes[0].pattern = "^/orders/[0-9]+$".to_owned();
        api(&with_route, false).unwrap();
        with_route.routes[0].match_kind = pb::MatchKind::Parameterised.into();
        with_route.routes[0].pattern = "/orders/{id}/items/{item_id}".to_owned();
        api(&with_route, false).unwrap();
        with_route.routes[0].pattern = "/orders/{id".to_owned();
        assert_eq!(field_of(api(&with_route, false)), "api.routes[0].pattern");
        with_route.routes[0].match_kind = pb::MatchKind::Prefix.into();
        with_route.routes[0].pattern = "/orders".to_owned();
        with_route.routes[0].methods = vec!["get".to_owned()];
        assert_eq!(field_of(api(&with_route, false)), "api.routes[0].methods");
    }

    #[test]
    fn policies_are_checked() {
        let mut bad = minimal_api();
        bad.retry = Some(pb::RetryPolicy {
            max_attempts: 50,
            ..Default::default()
        });
        assert_eq!(field_of(api(&bad, false)), "api.retry.max_attempts");
        let mut bad = minimal_api();
        bad.timeouts = Some(pb::Timeouts {
            connect: Some(prost_types::Duration {
                seconds: 10,
                nanos: 0,
            }),
            total: Some(prost_types::Duration {
                seconds: 5,
                nanos: 0,
            }),
            read: None,
        });
        assert_eq!(field_of(api(&bad, false)), "api.timeouts.connect");
        let mut bad = minimal_api();
        bad.cors = Some(pb::CorsPolicy {
            enabled: true,
            allowed_origins: vec!["*".to_owned()],
            allow_credentials: true,
            ..Default::default()
        });
        assert_eq!(field_of(api(&bad, false)), "api.cors.allowed_origins");
        let mut bad = minimal_api();
        assert_eq!(field_of(api(&bad, true)), "api.upstream_auth.header_name");
        bad.upstream_auth = Some(pb::UpstreamAuth {
            header_name: "bad header".to_owned(),
            secret_hint: String::new(),
        });
        assert_eq!(field_of(api(&bad, true)), "api.upstream_auth.header_name");
    }

    #[test]
    fn channels_are_checked() {
        let mut good = pb::Channel {
            name: "openai".to_owned(),
            provider: pb::Provider::Openai.into(),
            base_url: "https://api.openai.com".to_owned(),
            models: vec!["gpt-4o".to_owned()],
            weight: 1,
            ..Default::default()
        };
        channel(&good).unwrap();
        good.model_mapping
            .insert("gpt-5".to_owned(), "x".to_owned());
        assert_eq!(field_of(channel(&good)), "channel.model_mapping");
        good.model_mapping.clear();
        good.provider = 0;
        assert_eq!(field_of(channel(&good)), "channel.provider");
    }
}
