//! API keys: the caller's (a USER's own, every key of the tenant for an
//! ADMIN), created with a limit, expiry, models and IPs; the plaintext is
//! shown once, with the snippets to use it; freeze, unfreeze, delete.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use gateway_proto::identity::v1 as id;
use maud::{Markup, html};
use serde::Deserialize;

use crate::AppState;
use crate::clients::authed;
use crate::layout::{self, csrf, field, notice, page, usd};
use crate::pages::{Paging, pager, time};
use crate::session::Session;

pub async fn list(
    State(state): State<AppState>,
    session: Session,
    Query(paging): Query<Paging>,
) -> Response {
    match keys_table(&state, &session, &paging).await {
        Ok(table) => {
            let body = html! { (table) h2 { "New key" } (create_form(&session, &CreateForm::default(), None)) };
            page(&session, "Keys", body).into_response()
        }
        Err(status) => layout::refused(&session, "Keys", &status),
    }
}

async fn keys_table(
    state: &AppState,
    session: &Session,
    paging: &Paging,
) -> Result<Markup, tonic::Status> {
    let request = id::ListApiKeysRequest {
        page_size: 50,
        page_token: paging.page.clone(),
        ..Default::default()
    };
    let listed = state
        .clients
        .identity()
        .list_api_keys(authed(Some(&session.token), request))
        .await?
        .into_inner();
    Ok(html! {
        @if listed.api_keys.is_empty() { p { "No keys yet." } } @else {
            table {
                thead { tr { th { "Name" } th { "Prefix" } th { "Spend limit" } th { "Last used" } th { "Expires" } th { "State" } th { "Actions" } } }
                tbody {
                    @for key in &listed.api_keys { (key_row(session, key)) }
                }
            }
            (pager("/keys", &listed.next_page_token))
        }
    })
}

fn key_row(session: &Session, key: &id::ApiKey) -> Markup {
    let action = |verb: &str, label: &str| {
        html! {
            form.inline method="post" action=(format!("/keys/{}/{verb}", key.id)) {
                (csrf(session))
                button type="submit" aria-label=(format!("{label} {}", key.name)) { (label) }
            }
        }
    };
    html! {
        tr {
            td { (key.name) }
            td { code { (key.prefix) "…" } }
            td { (key.spend_limit_micros.map_or("none".to_owned(), usd)) }
            td { (time(key.last_used_time.as_ref())) }
            td { (time(key.expire_time.as_ref())) }
            td { @if key.frozen { "frozen" } @else { "active" } }
            td {
                @if key.frozen { (action("unfreeze", "Unfreeze")) } @else { (action("freeze", "Freeze")) }
                (action("delete", "Delete"))
            }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct CreateForm {
    #[serde(default)]
    name: String,
    /// USD, empty = no limit.
    #[serde(default)]
    spend_limit: String,
    /// Days from now, empty = never.
    #[serde(default)]
    expires_in_days: String,
    /// Comma-separated, empty = every model.
    #[serde(default)]
    allowed_models: String,
    #[serde(default)]
    allowed_ips: String,
    #[serde(default)]
    group_id: String,
    /// A quota plan's id (admins only), empty = none.
    #[serde(default)]
    plan_id: String,
}

/// The fields a refusal can name (as the form or identity spells them).
const FIELDS: [&str; 9] = [
    "name",
    "spend_limit",
    "spend_limit_micros",
    "expires_in_days",
    "expire_time",
    "allowed_models",
    "allowed_ips",
    "group_id",
    "plan_id",
];

fn create_form(session: &Session, form: &CreateForm, error: Option<(&str, &str)>) -> Markup {
    let at = |name: &str| {
        error
            .filter(|(field, _)| *field == name)
            .map(|(_, message)| message)
    };
    let general = error.filter(|(field, _)| !FIELDS.contains(field));
    html! {
        @if let Some((_, message)) = general { (notice("error", message)) }
        form method="post" action="/keys" {
            (csrf(session))
            (field("name", "Name", "text", &form.name, at("name")))
            // Identity lets only admins set a key's spend limit and plan.
            @if session.is_admin() {
                (field("spend_limit", "Spend limit (USD, empty = none)", "text", &form.spend_limit, at("spend_limit_micros").or(at("spend_limit"))))
                (field("plan_id", "Plan id (empty = none)", "text", &form.plan_id, at("plan_id")))
            }
            (field("expires_in_days", "Expires in days (empty = never)", "number", &form.expires_in_days, at("expire_time").or(at("expires_in_days"))))
            (field("allowed_models", "Allowed models (comma-separated, empty = all)", "text", &form.allowed_models, at("allowed_models")))
            (field("allowed_ips", "Allowed IPs or CIDRs (comma-separated)", "text", &form.allowed_ips, at("allowed_ips")))
            (field("group_id", "Group id (empty = personal key)", "text", &form.group_id, at("group_id")))
            button type="submit" { "Create key" }
        }
    }
}

fn list_of(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The key the form describes, or which field is wrong.
fn key_of(form: &CreateForm) -> Result<id::ApiKey, (&'static str, String)> {
    let spend_limit_micros = match form.spend_limit.trim() {
        "" => None,
        usd => Some(crate::pages::micros(usd).ok_or((
            "spend_limit",
            "must be an amount in USD, e.g. 5.00".to_owned(),
        ))?),
    };
    let expire_time = match form.expires_in_days.trim() {
        "" => None,
        days => {
            let days: i64 = days.parse().ok().filter(|days| *days > 0).ok_or((
                "expires_in_days",
                "must be a whole number of days".to_owned(),
            ))?;
            Some(prost_types::Timestamp {
                seconds: crate::pages::now() + days * 86_400,
                nanos: 0,
            })
        }
    };
    Ok(id::ApiKey {
        name: form.name.trim().to_owned(),
        spend_limit_micros,
        expire_time,
        allowed_models: list_of(&form.allowed_models),
        allowed_ips: list_of(&form.allowed_ips),
        group_id: Some(form.group_id.trim().to_owned()).filter(|group| !group.is_empty()),
        plan_id: form.plan_id.trim().to_owned(),
        ..Default::default()
    })
}

pub async fn create(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<CreateForm>,
) -> Response {
    let refused = |field: &str, message: &str, http| {
        let body = create_form(&session, &form, Some((field, message)));
        layout::page_with(http, Some(&session), "New key", body).into_response()
    };
    let key = match key_of(&form) {
        Ok(key) => key,
        Err((field, message)) => return refused(field, &message, http::StatusCode::BAD_REQUEST),
    };
    let request = id::CreateApiKeyRequest { api_key: Some(key) };
    match state
        .clients
        .identity()
        .create_api_key(authed(Some(&session.token), request))
        .await
    {
        Ok(created) => {
            let created = created.into_inner();
            page(&session, "Your new key", shown_once(&state, &created)).into_response()
        }
        Err(status) => match (layout::field_error(&status), layout::refusal(&status)) {
            (Some((field, message)), _) => refused(&field, &message, http::StatusCode::BAD_REQUEST),
            (None, Some((http, message))) => refused("", &message, http),
            (None, None) => layout::signed_out(),
        },
    }
}

/// The plaintext, shown this once, with the snippets to use it.
fn shown_once(state: &AppState, created: &id::CreateApiKeyResponse) -> Markup {
    let edge = &state.config.edge_url;
    let curl = format!(
        "curl {edge}/v1/chat/completions \\\n  -H 'Authorization: Bearer {key}' \\\n  -H 'content-type: application/json' \\\n  -d '{{\"model\": \"gpt-4o-mini\", \"messages\": [{{\"role\": \"user\", \"content\": \"Hi\"}}]}}'",
        key = created.key
    );
    let python = format!(
        "from openai import OpenAI\nclient = OpenAI(base_url=\"{edge}/v1\", api_key=\"{key}\")",
        key = created.key
    );
    html! {
        (notice("ok", "Copy the key now: it is shown only this once."))
        div.secret {
            code #new-key { (created.key) }
            button type="button" data-copy="new-key" { "Copy" }
        }
        h2 { "Use it" }
        pre { code { (curl) } }
        pre { code { (python) } }
        p { a href="/keys" { "Back to the keys" } }
    }
}

#[derive(Debug, Deserialize)]
pub struct KeyAction {
    id: String,
    verb: String,
}

pub async fn act(
    State(state): State<AppState>,
    session: Session,
    Path(KeyAction { id, verb }): Path<KeyAction>,
) -> Response {
    let mut identity = state.clients.identity();
    let token = Some(session.token.as_str());
    let result = match verb.as_str() {
        "freeze" => identity
            .freeze_api_key(authed(token, id::FreezeApiKeyRequest { id }))
            .await
            .map(drop),
        "unfreeze" => identity
            .unfreeze_api_key(authed(token, id::UnfreezeApiKeyRequest { id }))
            .await
            .map(drop),
        "delete" => identity
            .delete_api_key(authed(token, id::DeleteApiKeyRequest { id }))
            .await
            .map(drop),
        _ => {
            return layout::refused(
                &session,
                "Keys",
                &tonic::Status::not_found("no such action"),
            );
        }
    };
    match result {
        Ok(()) => Redirect::to("/keys").into_response(),
        Err(status) => layout::refused(&session, "Keys", &status),
    }
}
