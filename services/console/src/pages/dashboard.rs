//! The dashboard: today's requests, spend and errors; requests and spend
//! per hour over the last 24 hours and per day over the last 30 days
//! (server-rendered SVG); top keys by spend and top models by requests.
//! The scope is what usage lets the caller see: themself for a USER, the
//! tenant for an ADMIN, everything for a SUPERADMIN.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use gateway_proto::usage::v1 as usage;
use maud::{Markup, html};
use tokio::task::JoinSet;

use crate::AppState;
use crate::clients::authed;
use crate::layout::{self, page, usd};
use crate::pages::now;
use crate::session::Session;

pub async fn show(State(state): State<AppState>, session: Session) -> Response {
    let today = match stats(&state, &session, None).await {
        Ok(today) => today,
        Err(status) => return layout::refused(&session, "Dashboard", &status),
    };
    let hours = series(&state, &session, 3600, 24).await;
    let days = series(&state, &session, 86_400, 30).await;
    let body = html! {
        section.cards aria-label="Today" {
            div.card { h2 { "Requests today" } p.figure #today-requests { (today.today_request_count) } }
            div.card { h2 { "Spend today" } p.figure #today-spend { (usd(today.today_spend_micros)) } }
            div.card { h2 { "Errors today" } p.figure #today-errors { (today.error_count) } }
        }
        h2 { "Last 24 hours" }
        (chart("Requests per hour", &hours, |stats| stats.request_count as f64, |value| format!("{value:.0}")))
        (chart("Spend per hour", &hours, |stats| stats.spend_micros as f64, |value| usd(value as i64)))
        h2 { "Last 30 days" }
        (chart("Requests per day", &days, |stats| stats.request_count as f64, |value| format!("{value:.0}")))
        (chart("Spend per day", &days, |stats| stats.spend_micros as f64, |value| usd(value as i64)))
        (tops(&today))
    };
    page(&session, "Dashboard", body).into_response()
}

/// Stats over `[start, end)`, or today's when `range` is `None`.
async fn stats(
    state: &AppState,
    session: &Session,
    range: Option<(i64, i64)>,
) -> Result<usage::GetStatsResponse, tonic::Status> {
    let at = |seconds| Some(prost_types::Timestamp { seconds, nanos: 0 });
    let request = usage::GetStatsRequest {
        start_time: range.and_then(|(start, _)| at(start)),
        end_time: range.and_then(|(_, end)| at(end)),
        top_limit: 5,
        ..Default::default()
    };
    let answer = state
        .clients
        .usage()
        .get_stats(authed(Some(&session.token), request))
        .await?;
    Ok(answer.into_inner())
}

/// `count` buckets of `width` seconds ending now, oldest first (a bucket
/// whose call fails counts as empty).
async fn series(
    state: &AppState,
    session: &Session,
    width: i64,
    count: i64,
) -> Vec<usage::GetStatsResponse> {
    let end = now();
    let mut calls = JoinSet::new();
    for index in 0..count {
        let (state, session) = (state.clone(), session.clone());
        let start = end - (count - index) * width;
        calls.spawn(async move {
            (
                index,
                stats(&state, &session, Some((start, start + width))).await,
            )
        });
    }
    let mut buckets = vec![usage::GetStatsResponse::default(); usize::try_from(count).unwrap_or(0)];
    while let Some(Ok((index, Ok(stats)))) = calls.join_next().await {
        if let Some(bucket) = usize::try_from(index)
            .ok()
            .and_then(|index| buckets.get_mut(index))
        {
            *bucket = stats;
        }
    }
    buckets
}

/// A bar chart of one figure per bucket, with its largest value labelled.
fn chart(
    title: &str,
    buckets: &[usage::GetStatsResponse],
    value: impl Fn(&usage::GetStatsResponse) -> f64,
    label: impl Fn(f64) -> String,
) -> Markup {
    let values: Vec<f64> = buckets.iter().map(&value).collect();
    let top = values.iter().copied().fold(0.0_f64, f64::max);
    let width = 100.0 / values.len().max(1) as f64;
    html! {
        figure.chart {
            figcaption { (title) " (max " (label(top)) ")" }
            svg viewBox="0 0 100 40" preserveAspectRatio="none" role="img" aria-label=(title) {
                @for (index, value) in values.iter().enumerate() {
                    @let height = if top > 0.0 { value / top * 38.0 } else { 0.0 };
                    rect x=(format!("{:.2}", index as f64 * width + width * 0.1))
                        y=(format!("{:.2}", 40.0 - height))
                        width=(format!("{:.2}", width * 0.8))
                        height=(format!("{height:.2}")) {
                        title { (label(*value)) }
                    }
                }
            }
        }
    }
}

fn tops(today: &usage::GetStatsResponse) -> Markup {
    html! {
        div.columns {
            section {
                h2 { "Top keys by spend today" }
                table {
                    thead { tr { th { "Key" } th { "Requests" } th { "Spend" } } }
                    tbody { @for key in &today.top_keys { tr { td { code { (key.key_id) } } td { (key.request_count) } td { (usd(key.spend_micros)) } } } }
                }
            }
            section {
                h2 { "Top models by requests today" }
                table {
                    thead { tr { th { "Model" } th { "Requests" } th { "Spend" } } }
                    tbody { @for model in &today.top_models { tr { td { (model.model) } td { (model.request_count) } td { (usd(model.spend_micros)) } } } }
                }
            }
        }
    }
}
