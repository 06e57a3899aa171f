//! The rest of an API's policies on its page: routes, active health
//! checks, the circuit breaker, access (maintenance, CIDR lists) and
//! header and path transforms. Lists are typed one item per line.

use gateway_proto::catalog::v1 as cat;
use maud::{Markup, html};
use serde::Deserialize;

use super::api_edit::{checkbox, duration, millis};
use crate::layout::field;

/// What these fields are edited into (with `api_edit`'s own).
pub const MASK: [&str; 5] = [
    "routes",
    "health_check",
    "circuit_breaker",
    "access",
    "transform",
];

const KINDS: [(&str, cat::MatchKind); 3] = [
    ("exact", cat::MatchKind::Exact),
    ("prefix", cat::MatchKind::Prefix),
    ("parameterised", cat::MatchKind::Parameterised),
];

/// `name kind pattern [methods|-] [rewrite]` per route.
fn route_line(route: &cat::RouteRule) -> String {
    let kind = KINDS
        .iter()
        .find(|(_, kind)| *kind == route.match_kind())
        .map_or("prefix", |(name, _)| *name);
    let methods = if route.methods.is_empty() {
        "-".to_owned()
    } else {
        route.methods.join(",")
    };
    format!(
        "{} {kind} {} {methods} {}",
        route.name, route.pattern, route.rewrite
    )
    .trim_end()
    .to_owned()
}

fn parse_route(line: &str) -> Result<cat::RouteRule, String> {
    let parts: Vec<&str> = line.split_whitespace().collect();
    let [name, kind, pattern, rest @ ..] = parts.as_slice() else {
        return Err(format!(
            "route {line:?}: expected `name kind pattern [methods] [rewrite]`"
        ));
    };
    let kind = KINDS
        .iter()
        .find(|(known, _)| known == kind)
        .map(|(_, kind)| *kind)
        .ok_or_else(|| format!("route {name}: the kind is exact, prefix or parameterised"))?;
    let methods = match rest.first() {
        None | Some(&"-") => Vec::new(),
        Some(methods) => methods
            .split(',')
            .map(|method| method.to_ascii_uppercase())
            .collect(),
    };
    Ok(cat::RouteRule {
        name: (*name).to_owned(),
        match_kind: kind.into(),
        pattern: (*pattern).to_owned(),
        methods,
        rewrite: rest
            .get(1)
            .map(|rewrite| (*rewrite).to_owned())
            .unwrap_or_default(),
        ..Default::default()
    })
}

fn lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect()
}

pub(super) fn area(name: &str, label: &str, value: &str, error: Option<&str>) -> Markup {
    html! {
        div.field {
            label for=(name) { (label) }
            textarea id=(name) name=(name) rows="3" aria-invalid=[error.map(|_| "true")] { (value) }
            @if let Some(error) = error { p.error role="alert" { (error) } }
        }
    }
}

pub fn fields(api: &cat::Api, refusal: &super::api_errors::Refusal) -> Markup {
    let routes: Vec<String> = api.routes.iter().map(route_line).collect();
    let health = api.health_check.clone().unwrap_or_default();
    let breaker = api.circuit_breaker.unwrap_or_default();
    let access = api.access.clone().unwrap_or_default();
    let transform = api.transform.clone().unwrap_or_default();
    let set: Vec<String> = transform
        .request_headers
        .as_ref()
        .map(|headers| {
            headers
                .set
                .iter()
                .map(|(name, value)| format!("{name}: {value}"))
                .collect()
        })
        .unwrap_or_default();
    let removed = transform
        .request_headers
        .as_ref()
        .map(|headers| headers.remove.join("\n"))
        .unwrap_or_default();
    html! {
        fieldset { legend { "Routes (one per line: name, exact|prefix|parameterised, pattern, methods or -, rewrite)" }
            (area("routes", "Routes", &routes.join("\n"), refusal.at("routes")))
        }
        fieldset { legend { "Active health checks" }
            (checkbox("health_enabled", "Probe the upstreams", health.enabled))
            (field("health_path", "Path", "text", &health.path, refusal.at("health_path")))
            (field("health_interval_ms", "Every (ms)", "number", &millis(health.interval.as_ref()), refusal.at("health_interval_ms")))
            (field("health_timeout_ms", "Timeout (ms)", "number", &millis(health.timeout.as_ref()), refusal.at("health_timeout_ms")))
        }
        fieldset { legend { "Circuit breaker" }
            (checkbox("breaker_enabled", "Open after failures", breaker.enabled))
            (field("breaker_failures", "Consecutive failures", "number", &breaker.consecutive_failures.to_string(), refusal.at("breaker_failures")))
            (field("breaker_open_ms", "Stay open (ms)", "number", &millis(breaker.open_duration.as_ref()), refusal.at("breaker_open_ms")))
        }
        fieldset { legend { "Access" }
            (checkbox("maintenance", "In maintenance (503 to every caller)", access.maintenance))
            (field("maintenance_message", "Maintenance message", "text", &access.maintenance_message, refusal.at("maintenance_message")))
            (area("allow_cidrs", "Allowed CIDRs (one per line, empty = any)", &access.allow_cidrs.join("\n"), refusal.at("allow_cidrs")))
            (area("deny_cidrs", "Denied CIDRs (one per line)", &access.deny_cidrs.join("\n"), refusal.at("deny_cidrs")))
        }
        fieldset { legend { "Transforms" }
            (area("set_headers", "Request headers to set (Name: value per line)", &set.join("\n"), refusal.at("set_headers")))
            (area("remove_headers", "Request headers to remove (one per line)", &removed, refusal.at("remove_headers")))
            (field("strip_prefix", "Strip path prefix", "text", &transform.strip_path_prefix, refusal.at("strip_prefix")))
            (field("add_prefix", "Add path prefix", "text", &transform.add_path_prefix, refusal.at("add_prefix")))
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct MoreForm {
    #[serde(default)]
    routes: String,
    #[serde(default)]
    health_enabled: String,
    #[serde(default)]
    health_path: String,
    #[serde(default)]
    health_interval_ms: String,
    #[serde(default)]
    health_timeout_ms: String,
    #[serde(default)]
    breaker_enabled: String,
    #[serde(default)]
    breaker_failures: String,
    #[serde(default)]
    breaker_open_ms: String,
    #[serde(default)]
    maintenance: String,
    #[serde(default)]
    maintenance_message: String,
    #[serde(default)]
    allow_cidrs: String,
    #[serde(default)]
    deny_cidrs: String,
    #[serde(default)]
    set_headers: String,
    #[serde(default)]
    remove_headers: String,
    #[serde(default)]
    strip_prefix: String,
    #[serde(default)]
    add_prefix: String,
}

/// Edits the form's fields into `api` (what it does not show is kept).
pub fn edit(api: &mut cat::Api, form: &MoreForm) -> Result<(), String> {
    api.routes = lines(&form.routes)
        .iter()
        .map(|line| parse_route(line))
        .collect::<Result<_, _>>()?;
    let health = api.health_check.get_or_insert_with(Default::default);
    health.enabled = form.health_enabled == "on";
    health.path = form.health_path.trim().to_owned();
    health.interval = duration(&form.health_interval_ms)?;
    health.timeout = duration(&form.health_timeout_ms)?;
    let breaker = api.circuit_breaker.get_or_insert_with(Default::default);
    breaker.enabled = form.breaker_enabled == "on";
    breaker.consecutive_failures = form
        .breaker_failures
        .trim()
        .parse()
        .map_err(|_| "consecutive failures: a whole number".to_owned())?;
    breaker.open_duration = duration(&form.breaker_open_ms)?;
    let access = api.access.get_or_insert_with(Default::default);
    access.maintenance = form.maintenance == "on";
    access.maintenance_message = form.maintenance_message.trim().to_owned();
    access.allow_cidrs = lines(&form.allow_cidrs);
    access.deny_cidrs = lines(&form.deny_cidrs);
    let transform = api.transform.get_or_insert_with(Default::default);
    let headers = transform
        .request_headers
        .get_or_insert_with(Default::default);
    headers.set = lines(&form.set_headers)
        .iter()
        .map(|line| {
            line.split_once(':')
                .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
                .ok_or_else(|| format!("header {line:?}: expected `Name: value`"))
        })
        .collect::<Result<_, _>>()?;
    headers.remove = lines(&form.remove_headers);
    transform.strip_path_prefix = form.strip_prefix.trim().to_owned();
    transform.add_path_prefix = form.add_prefix.trim().to_owned();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_read_back_as_they_are_typed() {
        let route = parse_route("orders parameterised /orders/{id} get,post /v2/orders/{id}")
            .unwrap_or_default();
        assert_eq!(route.match_kind(), cat::MatchKind::Parameterised);
        assert_eq!(route.methods, ["GET", "POST"]);
        assert_eq!(
            route_line(&route),
            "orders parameterised /orders/{id} GET,POST /v2/orders/{id}"
        );
        let plain = parse_route("all prefix /").unwrap_or_default();
        assert_eq!(route_line(&plain), "all prefix / -");
        assert!(parse_route("half exact").is_err());
        assert!(parse_route("bad glob /x").is_err());
    }
}
