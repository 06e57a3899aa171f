//! One API's policies: name and state, weighted upstreams, balancing,
//! timeouts, retries, response cache, CORS, body limit and auth mode. The
//! form edits the stored API (what it does not show is kept) and the
//! catalog validates the result; its refusal names the field.

use axum::Form;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use gateway_proto::catalog::v1 as cat;
use maud::{Markup, html};
use prost_types::Duration;
use serde::Deserialize;

use super::api_errors::Refusal;
use crate::AppState;
use crate::clients::authed;
use crate::layout::{self, csrf, field, notice, page};
use crate::session::Session;

pub(super) fn millis(duration: Option<&Duration>) -> String {
    duration.map_or(String::new(), |duration| {
        (duration.seconds * 1000 + i64::from(duration.nanos) / 1_000_000).to_string()
    })
}

pub(super) fn duration(millis: &str) -> Result<Option<Duration>, String> {
    match millis.trim() {
        "" => Ok(None),
        text => {
            let millis: i64 = text
                .parse()
                .map_err(|_| format!("{text:?} is not a number of milliseconds"))?;
            Ok(Some(Duration {
                seconds: millis / 1000,
                nanos: i32::try_from(millis % 1000 * 1_000_000).unwrap_or(0),
            }))
        }
    }
}

fn joined<T: ToString>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn split(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect()
}

async fn load(state: &AppState, session: &Session, id: &str) -> Result<cat::Api, tonic::Status> {
    let request = cat::GetApiRequest { id: id.to_owned() };
    let answer = state
        .clients
        .catalog()
        .get_api(authed(Some(&session.token), request))
        .await?;
    Ok(answer.into_inner().api.unwrap_or_default())
}

pub async fn show(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> Response {
    match load(&state, &session, &id).await {
        Ok(api) => page(
            &session,
            &format!("API {}", api.name),
            policy_form(&session, &api, &Refusal::default()),
        )
        .into_response(),
        Err(status) => layout::refused(&session, "API", &status),
    }
}

const ALGORITHMS: [(&str, cat::LoadBalancingAlgorithm); 5] = [
    ("round_robin", cat::LoadBalancingAlgorithm::RoundRobin),
    ("weighted", cat::LoadBalancingAlgorithm::Weighted),
    ("least_requests", cat::LoadBalancingAlgorithm::LeastRequests),
    ("random", cat::LoadBalancingAlgorithm::Random),
    (
        "consistent_hash",
        cat::LoadBalancingAlgorithm::ConsistentHash,
    ),
];

const MODES: [(&str, cat::AuthMode); 4] = [
    ("key", cat::AuthMode::Key),
    ("jwt", cat::AuthMode::Jwt),
    ("basic", cat::AuthMode::Basic),
    ("public", cat::AuthMode::Public),
];

fn select<T: PartialEq + Copy>(
    name: &str,
    label: &str,
    options: &[(&str, T)],
    current: T,
) -> Markup {
    html! {
        div.field {
            label for=(name) { (label) }
            select id=(name) name=(name) {
                @for (value, option) in options { option value=(value) selected[*option == current] { (value) } }
            }
        }
    }
}

pub(super) fn checkbox(name: &str, label: &str, checked: bool) -> Markup {
    html! { div.field { label for=(name) { (label) } input id=(name) name=(name) type="checkbox" value="on" checked[checked]; } }
}

fn policy_form(session: &Session, api: &cat::Api, refusal: &Refusal) -> Markup {
    let targets: Vec<String> = api
        .upstreams
        .iter()
        .map(|target| format!("{} {}", target.url, target.weight))
        .collect();
    let (timeouts, retry, cache, cors) = (
        api.timeouts.unwrap_or_default(),
        api.retry.clone().unwrap_or_default(),
        api.cache.clone().unwrap_or_default(),
        api.cors.clone().unwrap_or_default(),
    );
    let balancing = api.load_balancing.clone().unwrap_or_default();
    let mode = api
        .auth
        .as_ref()
        .map_or(cat::AuthMode::Key, |auth| auth.mode());
    html! {
        @if let Some(message) = refusal.general() { (notice("error", message)) }
        form method="post" action=(format!("/apis/{}", api.id)) {
            (csrf(session))
            fieldset { legend { "API" }
                (field("name", "Name", "text", &api.name, refusal.at("name")))
                (checkbox("enabled", "Enabled", api.enabled))
                (super::api_more::area("upstreams", "Upstreams (one per line: URL and weight)", &targets.join("\n"), refusal.at("upstreams")))
                (select("algorithm", "Balancing", &ALGORITHMS, balancing.algorithm()))
                (field("hash_header", "Hash header (consistent hash)", "text", &balancing.hash_header, refusal.at("hash_header")))
                (select("auth_mode", "Callers authenticate by", &MODES, mode))
                (field("max_body", "Largest request body (bytes, 0 = the edge's)", "number", &api.max_request_body_bytes.to_string(), refusal.at("max_body")))
            }
            fieldset { legend { "Timeouts (ms, empty = the edge's)" }
                (field("connect_ms", "Connect", "number", &millis(timeouts.connect.as_ref()), refusal.at("connect_ms")))
                (field("read_ms", "Read", "number", &millis(timeouts.read.as_ref()), refusal.at("read_ms")))
                (field("total_ms", "Total", "number", &millis(timeouts.total.as_ref()), refusal.at("total_ms")))
            }
            fieldset { legend { "Retries" }
                (field("max_attempts", "Attempts (1 = no retry)", "number", &retry.max_attempts.to_string(), refusal.at("max_attempts")))
                (field("retry_statuses", "On statuses (comma-separated)", "text", &joined(&retry.retry_on_statuses), refusal.at("retry_statuses")))
                (checkbox("retry_connect", "On connect failure", retry.retry_on_connect_failure))
            }
            fieldset { legend { "Response cache" }
                (checkbox("cache_enabled", "Cache responses", cache.enabled))
                (field("cache_ttl_ms", "Time to live (ms)", "number", &millis(cache.ttl.as_ref()), refusal.at("cache_ttl_ms")))
            }
            fieldset { legend { "CORS" }
                (checkbox("cors_enabled", "Answer browsers", cors.enabled))
                (field("cors_origins", "Allowed origins (comma-separated, * for any)", "text", &joined(&cors.allowed_origins), refusal.at("cors_origins")))
            }
            (super::api_more::fields(api, refusal))
            button type="submit" { "Save" }
        }
        p { a href="/apis" { "Back to the APIs" } }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct PolicyForm {
    #[serde(flatten)]
    more: super::api_more::MoreForm,
    #[serde(default)]
    name: String,
    #[serde(default)]
    enabled: String,
    #[serde(default)]
    upstreams: String,
    #[serde(default)]
    algorithm: String,
    #[serde(default)]
    hash_header: String,
    #[serde(default)]
    auth_mode: String,
    #[serde(default)]
    max_body: String,
    #[serde(default)]
    connect_ms: String,
    #[serde(default)]
    read_ms: String,
    #[serde(default)]
    total_ms: String,
    #[serde(default)]
    max_attempts: String,
    #[serde(default)]
    retry_statuses: String,
    #[serde(default)]
    retry_connect: String,
    #[serde(default)]
    cache_enabled: String,
    #[serde(default)]
    cache_ttl_ms: String,
    #[serde(default)]
    cors_enabled: String,
    #[serde(default)]
    cors_origins: String,
}

/// What the fields this form shows are edited into; the rest is kept.
const MASK: [&str; 10] = [
    "name",
    "enabled",
    "upstreams",
    "load_balancing",
    "auth",
    "max_request_body_bytes",
    "timeouts",
    "retry",
    "cache",
    "cors",
];

fn edit(api: &mut cat::Api, form: &PolicyForm) -> Result<(), String> {
    let number = |text: &str, what: &str| {
        text.trim()
            .parse::<i64>()
            .map_err(|_| format!("{what}: {text:?} is not a number"))
    };
    api.name = form.name.trim().to_owned();
    api.enabled = form.enabled == "on";
    api.upstreams = super::apis::targets(&form.upstreams);
    let algorithm = ALGORITHMS
        .iter()
        .find(|(name, _)| *name == form.algorithm)
        .map_or(
            cat::LoadBalancingAlgorithm::Unspecified,
            |(_, algorithm)| *algorithm,
        );
    api.load_balancing = Some(cat::LoadBalancing {
        algorithm: algorithm.into(),
        hash_header: form.hash_header.trim().to_owned(),
    });
    let mode = MODES
        .iter()
        .find(|(name, _)| *name == form.auth_mode)
        .map_or(cat::AuthMode::Key, |(_, mode)| *mode);
    api.auth.get_or_insert_with(Default::default).mode = mode.into();
    api.max_request_body_bytes = number(&form.max_body, "largest request body")?;
    api.timeouts = Some(cat::Timeouts {
        connect: duration(&form.connect_ms)?,
        read: duration(&form.read_ms)?,
        total: duration(&form.total_ms)?,
    });
    let retry = api.retry.get_or_insert_with(Default::default);
    retry.max_attempts = i32::try_from(number(&form.max_attempts, "attempts")?)
        .map_err(|_| "attempts: too large".to_owned())?;
    retry.retry_on_statuses = split(&form.retry_statuses)
        .iter()
        .map(|status| {
            status
                .parse()
                .map_err(|_| format!("{status:?} is not a status"))
        })
        .collect::<Result<_, String>>()?;
    retry.retry_on_connect_failure = form.retry_connect == "on";
    let cache = api.cache.get_or_insert_with(Default::default);
    cache.enabled = form.cache_enabled == "on";
    cache.ttl = duration(&form.cache_ttl_ms)?;
    let cors = api.cors.get_or_insert_with(Default::default);
    cors.enabled = form.cors_enabled == "on";
    cors.allowed_origins = split(&form.cors_origins);
    super::api_more::edit(api, &form.more)
}

pub async fn save(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<PolicyForm>,
) -> Response {
    let mut api = match load(&state, &session, &id).await {
        Ok(api) => api,
        Err(status) => return layout::refused(&session, "API", &status),
    };
    let refused = |api: &cat::Api, refusal: Refusal| {
        let body = policy_form(&session, api, &refusal);
        layout::page_with(http::StatusCode::BAD_REQUEST, Some(&session), "API", body)
            .into_response()
    };
    if let Err(message) = edit(&mut api, &form) {
        return refused(
            &api,
            Refusal {
                input: None,
                message,
            },
        );
    }
    let request = cat::UpdateApiRequest {
        api: Some(api.clone()),
        update_mask: Some(prost_types::FieldMask {
            paths: MASK
                .iter()
                .chain(&super::api_more::MASK)
                .map(|path| (*path).to_owned())
                .collect(),
        }),
        upstream_auth_secret: None,
    };
    match state
        .clients
        .catalog()
        .update_api(authed(Some(&session.token), request))
        .await
    {
        Ok(_) => Redirect::to(&format!("/apis/{id}")).into_response(),
        Err(status) => match layout::refusal(&status) {
            Some((_, message)) => refused(&api, Refusal::of(&status, message)),
            None => layout::signed_out(),
        },
    }
}
