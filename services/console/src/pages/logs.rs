//! Request logs: filtered by key, model, API, status and time, newest
//! first, paginated; one request opened with its captured bodies.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use gateway_proto::usage::v1 as usage;
use maud::{Markup, html};
use serde::Deserialize;

use crate::AppState;
use crate::clients::authed;
use crate::layout::{self, field, page, usd};
use crate::pages::{encode, pager, time};
use crate::session::Session;

#[derive(Debug, Default, Deserialize)]
pub struct Filter {
    #[serde(default)]
    key_id: String,
    #[serde(default)]
    model: String,
    #[serde(default)]
    api_id: String,
    /// An exact status, or a class such as `5xx`.
    #[serde(default)]
    status: String,
    /// Hours back from now; empty = no bound.
    #[serde(default)]
    hours: String,
    #[serde(default)]
    page: String,
}

impl Filter {
    fn request(&self) -> Result<usage::ListLogsRequest, String> {
        let mut request = usage::ListLogsRequest {
            page_size: 50,
            page_token: self.page.clone(),
            key_id: self.key_id.trim().to_owned(),
            model: self.model.trim().to_owned(),
            api_id: self.api_id.trim().to_owned(),
            ..Default::default()
        };
        let status = self.status.trim().to_ascii_lowercase();
        if let Some(class) = status.strip_suffix("xx") {
            let class: i32 = class
                .parse()
                .map_err(|_| "status: a code such as 404, or a class such as 5xx".to_owned())?;
            request.min_status = Some(class * 100);
            request.max_status = Some(class * 100 + 99);
        } else if !status.is_empty() {
            request.status =
                Some(status.parse().map_err(|_| {
                    "status: a code such as 404, or a class such as 5xx".to_owned()
                })?);
        }
        if !self.hours.trim().is_empty() {
            let hours: i64 = self
                .hours
                .trim()
                .parse()
                .map_err(|_| "hours: a whole number".to_owned())?;
            let start = crate::pages::now() - hours * 3600;
            request.start_time = Some(prost_types::Timestamp {
                seconds: start,
                nanos: 0,
            });
        }
        Ok(request)
    }

    /// This filter as a query string, for the next page's link.
    fn query(&self) -> String {
        let pairs = [
            ("key_id", &self.key_id),
            ("model", &self.model),
            ("api_id", &self.api_id),
            ("status", &self.status),
            ("hours", &self.hours),
        ];
        let kept: Vec<String> = pairs
            .iter()
            .filter(|(_, value)| !value.is_empty())
            .map(|(name, value)| format!("{name}={}", encode(value)))
            .collect();
        format!("/logs?{}", kept.join("&"))
    }
}

fn filter_form(filter: &Filter, error: Option<&str>) -> Markup {
    html! {
        form.filters method="get" action="/logs" {
            (field("key_id", "Key id", "text", &filter.key_id, None))
            (field("model", "Model", "text", &filter.model, None))
            (field("api_id", "API id", "text", &filter.api_id, None))
            (field("status", "Status (404, 5xx)", "text", &filter.status, error.filter(|error| error.starts_with("status"))))
            (field("hours", "Last hours", "number", &filter.hours, error.filter(|error| error.starts_with("hours"))))
            button type="submit" { "Filter" }
        }
    }
}

pub async fn list(
    State(state): State<AppState>,
    session: Session,
    Query(filter): Query<Filter>,
) -> Response {
    let request = match filter.request() {
        Ok(request) => request,
        Err(error) => {
            let body = filter_form(&filter, Some(&error));
            return layout::page_with(http::StatusCode::BAD_REQUEST, Some(&session), "Logs", body)
                .into_response();
        }
    };
    let listed = match state
        .clients
        .usage()
        .list_logs(authed(Some(&session.token), request))
        .await
    {
        Ok(listed) => listed.into_inner(),
        Err(status) => return layout::refused(&session, "Logs", &status),
    };
    let body = html! {
        (filter_form(&filter, None))
        @if listed.logs.is_empty() { p { "No requests match." } } @else {
            table #logs {
                thead { tr { th { "Time" } th { "Request" } th { "Status" } th { "Model" } th { "Tokens" } th { "Cost" } th { "Latency" } } }
                tbody { @for log in &listed.logs { (log_row(log)) } }
            }
        }
        (pager(&filter.query(), &listed.next_page_token))
    };
    page(&session, "Logs", body).into_response()
}

fn log_row(log: &usage::LogRecord) -> Markup {
    let event = log.event.clone().unwrap_or_default();
    let latency = event.latency.map_or(0.0, |latency| {
        latency.seconds as f64 * 1e3 + f64::from(latency.nanos) / 1e6
    });
    html! {
        tr {
            td { a href=(format!("/logs/{}", event.event_id)) { (time(event.time.as_ref())) } }
            td { code { (event.method) " " (event.path) } }
            td { (event.status) }
            td { (event.model) }
            td { (event.prompt_tokens + event.completion_tokens) }
            td { (usd(event.cost_micros)) }
            td { (format!("{latency:.1} ms")) }
        }
    }
}

pub async fn show(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> Response {
    let mut client = state.clients.usage();
    let token = Some(session.token.as_str());
    let log = match client
        .get_log(authed(token, usage::GetLogRequest { id: id.clone() }))
        .await
    {
        Ok(answer) => answer.into_inner().log.unwrap_or_default(),
        Err(status) => return layout::refused(&session, "Request", &status),
    };
    let bodies = if log.has_bodies {
        client
            .get_log_bodies(authed(token, usage::GetLogBodiesRequest { id }))
            .await
            .ok()
            .and_then(|answer| answer.into_inner().bodies)
    } else {
        None
    };
    page(&session, "Request", detail(&log, bodies.as_ref())).into_response()
}

fn detail(log: &usage::LogRecord, bodies: Option<&usage::AuditBodies>) -> Markup {
    let event = log.event.clone().unwrap_or_default();
    let rows = [
        ("Request id", event.request_id.clone()),
        ("Time", time(event.time.as_ref())),
        ("Request", format!("{} {}", event.method, event.path)),
        ("Status", event.status.to_string()),
        ("Key", event.key_id.clone()),
        ("API", event.api_id.clone()),
        ("Model", event.model.clone()),
        ("Channel", event.channel_id.clone()),
        (
            "Tokens (prompt / completion)",
            format!("{} / {}", event.prompt_tokens, event.completion_tokens),
        ),
        ("Cost", usd(event.cost_micros)),
        ("Error", event.error_message.clone()),
    ];
    html! {
        dl.detail { @for (name, value) in rows { dt { (name) } dd { (value) } } }
        @if let Some(bodies) = bodies {
            h2 { "Request body" }
            pre.body { (String::from_utf8_lossy(&bodies.request_body)) }
            h2 { "Response body" }
            pre.body { (String::from_utf8_lossy(&bodies.response_body)) }
        } @else {
            p { "No bodies were captured for this request." }
        }
        p { a href="/logs" { "Back to the logs" } }
    }
}
