//! Route rules of an API, compiled once per snapshot change: exact, prefix
//! (segment boundary), parameterised (`/users/{id}/orders`) and anchored
//! regex patterns, with methods; tried by descending priority, then longest
//! pattern. A match carries its parameters, for the rewrite template.

use gateway_proto::catalog::v1 as pb;

#[derive(Debug)]
enum Matcher {
    Exact(String),
    Prefix(String),
    Parameterised(Vec<Segment>),
    Regex(regex::Regex),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
}

/// One piece of a rewrite template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Param(String),
}

#[derive(Debug)]
pub struct Route {
    /// The rule's name, or its pattern when it has none (metrics, logs).
    pub name: String,
    matcher: Matcher,
    methods: Vec<http::Method>,
    priority: i32,
    pattern_len: usize,
    rewrite: Option<Vec<Piece>>,
    /// Index of this route's target group in the compiled API.
    pub group: usize,
    /// `None`: the API's mode.
    pub auth_mode: Option<crate::auth::modes::Mode>,
}

/// A matched route and the parameters its pattern captured.
#[derive(Debug)]
pub struct Matched<'a> {
    pub route: &'a Route,
    params: Vec<(String, String)>,
}

impl Matched<'_> {
    /// The path to send upstream: the rewrite template filled in, or the
    /// matched path itself.
    pub fn upstream_path(&self, path: &str) -> String {
        let Some(pieces) = &self.route.rewrite else {
            return path.to_owned();
        };
        let mut rewritten = String::with_capacity(path.len());
        for piece in pieces {
            match piece {
                Piece::Text(text) => rewritten.push_str(text),
                Piece::Param(name) => {
                    if let Some((_, value)) = self.params.iter().find(|(param, _)| param == name) {
                        rewritten.push_str(value);
                    }
                }
            }
        }
        rewritten
    }
}

fn parse_segments(pattern: &str) -> Vec<Segment> {
    pattern
        .split('/')
        .filter(|segment| !segment.is_empty())
        .map(
            |segment| match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => Segment::Param(name.to_owned()),
                None => Segment::Literal(segment.to_owned()),
            },
        )
        .collect()
}

fn parse_template(template: &str) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let Some(length) = rest[start..].find('}') else {
            break;
        };
        if start > 0 {
            pieces.push(Piece::Text(rest[..start].to_owned()));
        }
        pieces.push(Piece::Param(rest[start + 1..start + length].to_owned()));
        rest = &rest[start + length + 1..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest.to_owned()));
    }
    pieces
}

impl Route {
    /// Compiles one rule; `None` for a rule validation should have refused
    /// (an unknown kind or a regex that does not compile), which then
    /// matches nothing rather than panicking.
    pub fn compile(rule: &pb::RouteRule, group: usize) -> Option<Self> {
        let matcher = match pb::MatchKind::try_from(rule.match_kind).ok()? {
            pb::MatchKind::Exact => Matcher::Exact(rule.pattern.clone()),
            pb::MatchKind::Prefix => Matcher::Prefix(rule.pattern.trim_end_matches('/').to_owned()),
            pb::MatchKind::Parameterised => Matcher::Parameterised(parse_segments(&rule.pattern)),
            pb::MatchKind::Regex => {
                Matcher::Regex(regex::Regex::new(&format!("^(?:{})$", rule.pattern)).ok()?)
            }
            pb::MatchKind::Unspecified => return None,
        };
        let methods = rule
            .methods
            .iter()
            .filter_map(|method| http::Method::from_bytes(method.as_bytes()).ok())
            .collect();
        Some(Self {
            name: if rule.name.is_empty() {
                rule.pattern.clone()
            } else {
                rule.name.clone()
            },
            matcher,
            methods,
            priority: rule.priority,
            pattern_len: rule.pattern.len(),
            rewrite: (!rule.rewrite.is_empty()).then(|| parse_template(&rule.rewrite)),
            auth_mode: crate::auth::modes::Mode::of(rule.auth_mode),
            group,
        })
    }

    fn matches(&self, path: &str) -> Option<Vec<(String, String)>> {
        match &self.matcher {
            Matcher::Exact(pattern) => (path == pattern).then(Vec::new),
            Matcher::Prefix(prefix) => {
                let rest = path.strip_prefix(prefix.as_str())?;
                (rest.is_empty() || rest.starts_with('/') || prefix.is_empty()).then(Vec::new)
            }
            Matcher::Parameterised(segments) => {
                let parts: Vec<&str> = path.split('/').filter(|part| !part.is_empty()).collect();
                if parts.len() != segments.len() {
                    return None;
                }
                let mut params = Vec::new();
                for (segment, part) in segments.iter().zip(parts) {
                    match segment {
                        Segment::Literal(literal) if literal == part => {}
                        Segment::Literal(_) => return None,
                        Segment::Param(name) => params.push((name.clone(), part.to_owned())),
                    }
                }
                Some(params)
            }
            Matcher::Regex(regex) => {
                let captures = regex.captures(path)?;
                Some(
                    regex
                        .capture_names()
                        .flatten()
                        .filter_map(|name| {
                            let value = captures.name(name)?;
                            Some((name.to_owned(), value.as_str().to_owned()))
                        })
                        .collect(),
                )
            }
        }
    }
}

/// The API's routes in matching order.
#[derive(Debug, Default)]
pub struct Routes {
    routes: Vec<Route>,
}

impl Routes {
    pub fn new(mut routes: Vec<Route>) -> Self {
        // Highest priority first, then the longest (most specific) pattern.
        routes.sort_by(|a, b| {
            b.priority
                .cmp(&a.priority)
                .then(b.pattern_len.cmp(&a.pattern_len))
        });
        Self { routes }
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The first route that takes `method` on `path`.
    pub fn find(&self, method: &http::Method, path: &str) -> Option<Matched<'_>> {
        self.routes
            .iter()
            .filter(|route| route.methods.is_empty() || route.methods.contains(method))
            .find_map(|route| route.matches(path).map(|params| Matched { route, params }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(kind: pb::MatchKind, pattern: &str, priority: i32) -> pb::RouteRule {
        pb::RouteRule {
            name: pattern.to_owned(),
            match_kind: kind.into(),
            pattern: pattern.to_owned(),
            priority,
            ..pb::RouteRule::default()
        }
    }

    fn routes(rules: &[pb::RouteRule]) -> Routes {
        Routes::new(
            rules
                .iter()
                .enumerate()
                .filter_map(|(index, rule)| Route::compile(rule, index))
                .collect(),
        )
    }

    fn found(routes: &Routes, method: &str, path: &str) -> Option<String> {
        let method = http::Method::from_bytes(method.as_bytes()).unwrap();
        routes
            .find(&method, path)
            .map(|matched| matched.route.name.clone())
    }

    #[test]
    fn each_kind_matches_what_it_says() {
        let table = routes(&[
            rule(pb::MatchKind::Exact, "/health", 0),
            rule(pb::MatchKind::Prefix, "/v1", 0),
            rule(pb::MatchKind::Parameterised, "/users/{id}/orders", 0),
            rule(pb::MatchKind::Regex, "/items/[0-9]+", 0),
        ]);
        assert_eq!(found(&table, "GET", "/health").as_deref(), Some("/health"));
        assert_eq!(found(&table, "GET", "/health/x"), None);
        assert_eq!(found(&table, "GET", "/v1").as_deref(), Some("/v1"));
        assert_eq!(found(&table, "GET", "/v1/a/b").as_deref(), Some("/v1"));
        assert_eq!(
            found(&table, "GET", "/v10"),
            None,
            "prefix at a segment boundary"
        );
        assert_eq!(
            found(&table, "GET", "/users/42/orders").as_deref(),
            Some("/users/{id}/orders")
        );
        assert_eq!(found(&table, "GET", "/users/42/orders/7"), None);
        assert_eq!(
            found(&table, "GET", "/items/12").as_deref(),
            Some("/items/[0-9]+")
        );
        assert_eq!(
            found(&table, "GET", "/items/12x"),
            None,
            "regex is anchored"
        );
        assert_eq!(
            found(&table, "GET", "/x/items/12"),
            None,
            "regex is anchored"
        );
    }

    #[test]
    fn priority_then_longest_pattern_wins_and_methods_filter() {
        let mut post_only = rule(pb::MatchKind::Prefix, "/v1/admin", 0);
        post_only.methods = vec!["POST".to_owned()];
        let table = routes(&[
            rule(pb::MatchKind::Prefix, "/v1", 0),
            rule(pb::MatchKind::Prefix, "/v1/users", 0),
            rule(pb::MatchKind::Prefix, "/", 10),
            post_only,
        ]);
        assert_eq!(found(&table, "GET", "/v1/users/1").as_deref(), Some("/"));
        let table = routes(&[
            rule(pb::MatchKind::Prefix, "/v1", 0),
            rule(pb::MatchKind::Prefix, "/v1/users", 0),
            {
                let mut admin = rule(pb::MatchKind::Prefix, "/v1/admin", 0);
                admin.methods = vec!["POST".to_owned()];
                admin
            },
        ]);
        assert_eq!(
            found(&table, "GET", "/v1/users/1").as_deref(),
            Some("/v1/users")
        );
        assert_eq!(found(&table, "GET", "/v1/admin").as_deref(), Some("/v1"));
        assert_eq!(
            found(&table, "POST", "/v1/admin").as_deref(),
            Some("/v1/admin")
        );
    }

    #[test]
    fn rewrites_fill_in_captured_parameters() {
        let mut users = rule(
            pb::MatchKind::Parameterised,
            "/users/{id}/orders/{order}",
            0,
        );
        users.rewrite = "/v2/users/{id}/o/{order}".to_owned();
        let mut items = rule(pb::MatchKind::Regex, "/items/(?P<sku>[a-z0-9-]+)", 0);
        items.rewrite = "/catalog/{sku}".to_owned();
        let plain = rule(pb::MatchKind::Prefix, "/plain", 0);
        let table = routes(&[users, items, plain]);
        let get = http::Method::GET;
        let path = "/users/42/orders/7";
        assert_eq!(
            table.find(&get, path).unwrap().upstream_path(path),
            "/v2/users/42/o/7"
        );
        let path = "/items/ab-1";
        assert_eq!(
            table.find(&get, path).unwrap().upstream_path(path),
            "/catalog/ab-1"
        );
        let path = "/plain/x";
        assert_eq!(
            table.find(&get, path).unwrap().upstream_path(path),
            "/plain/x"
        );
    }

    #[test]
    fn rules_validation_would_refuse_match_nothing_instead_of_panicking() {
        let table = routes(&[
            rule(pb::MatchKind::Regex, "(unclosed", 0),
            rule(pb::MatchKind::Unspecified, "/x", 0),
            rule(pb::MatchKind::Parameterised, "", 0),
        ]);
        assert_eq!(found(&table, "GET", "/x"), None);
        assert_eq!(found(&table, "GET", "/"), Some(String::new()));
        assert_eq!(
            parse_template("/a/{unterminated"),
            vec![Piece::Text("/a/{unterminated".to_owned())]
        );
    }
}
