//! APIs of the tenant: list, register (name, slug, weighted upstreams),
//! delete. The catalog validates; its refusal is shown next to the field
//! it names.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use gateway_proto::catalog::v1 as cat;
use maud::{Markup, html};
use serde::Deserialize;

use crate::AppState;
use crate::clients::authed;
use crate::layout::{self, csrf, field, notice, page};
use crate::pages::{Paging, pager};
use crate::session::Session;

pub async fn list(
    State(state): State<AppState>,
    session: Session,
    Query(paging): Query<Paging>,
) -> Response {
    let request = cat::ListApisRequest {
        page_size: 50,
        page_token: paging.page,
        ..Default::default()
    };
    let listed = match state
        .clients
        .catalog()
        .list_apis(authed(Some(&session.token), request))
        .await
    {
        Ok(listed) => listed.into_inner(),
        Err(status) => return layout::refused(&session, "APIs", &status),
    };
    let body = html! {
        @if listed.apis.is_empty() { p { "No APIs yet." } } @else {
            table {
                thead { tr { th { "Name" } th { "Path" } th { "Upstreams" } th { "State" } th { "Actions" } } }
                tbody { @for api in &listed.apis { (api_row(&state, &session, api)) } }
            }
            (pager("/apis", &listed.next_page_token))
        }
        h2 { "Register an API" }
        (create_form(&session, &CreateForm::default(), None))
    };
    page(&session, "APIs", body).into_response()
}

fn api_row(state: &AppState, session: &Session, api: &cat::Api) -> Markup {
    let targets: Vec<String> = api
        .upstreams
        .iter()
        .map(|target| format!("{} (weight {})", target.url, target.weight))
        .collect();
    html! {
        tr {
            td { a href=(format!("/apis/{}", api.id)) { (api.name) } }
            td { code { (state.config.edge_url) "/{tenant}/" (api.slug) "/" } }
            td { (targets.join(", ")) }
            td { @if api.enabled { "enabled" } @else { "disabled" } }
            td {
                form.inline method="post" action=(format!("/apis/{}/delete", api.id)) {
                    (csrf(session))
                    button type="submit" aria-label=(format!("Delete {}", api.name)) { "Delete" }
                }
            }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct CreateForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    slug: String,
    /// One target per line: `URL [weight]`.
    #[serde(default)]
    upstreams: String,
}

const FIELDS: [&str; 3] = ["name", "slug", "upstreams"];

fn create_form(session: &Session, form: &CreateForm, error: Option<(&str, &str)>) -> Markup {
    let at = |name: &str| {
        error
            .filter(|(field, _)| *field == name || (name == "upstreams" && *field == "url"))
            .map(|(_, message)| message)
    };
    let general = error.filter(|(field, _)| !FIELDS.contains(field) && *field != "url");
    html! {
        @if let Some((_, message)) = general { (notice("error", message)) }
        form method="post" action="/apis" {
            (csrf(session))
            (field("name", "Name", "text", &form.name, at("name")))
            (field("slug", "Slug (the path segment after the tenant)", "text", &form.slug, at("slug")))
            div.field {
                label for="upstreams" { "Upstreams (one per line: URL and an optional weight)" }
                textarea id="upstreams" name="upstreams" rows="3" aria-invalid=[at("upstreams").map(|_| "true")] { (form.upstreams) }
                @if let Some(message) = at("upstreams") { p.error role="alert" { (message) } }
            }
            button type="submit" { "Register" }
        }
    }
}

pub(super) fn targets(text: &str) -> Vec<cat::UpstreamTarget> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let url = parts.next()?.to_owned();
            let weight = parts
                .next()
                .and_then(|weight| weight.parse().ok())
                .unwrap_or(1);
            Some(cat::UpstreamTarget { url, weight })
        })
        .collect()
}

pub async fn create(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<CreateForm>,
) -> Response {
    let api = cat::Api {
        name: form.name.trim().to_owned(),
        slug: form.slug.trim().to_owned(),
        upstreams: targets(&form.upstreams),
        enabled: true,
        ..Default::default()
    };
    let request = cat::CreateApiRequest {
        api: Some(api),
        upstream_auth_secret: String::new(),
    };
    let Err(status) = state
        .clients
        .catalog()
        .create_api(authed(Some(&session.token), request))
        .await
    else {
        return Redirect::to("/apis").into_response();
    };
    let Some((http, message)) = layout::refusal(&status) else {
        return layout::signed_out();
    };
    let (field, message) = layout::field_error(&status).unwrap_or((String::new(), message));
    let body = create_form(&session, &form, Some((&field, &message)));
    layout::page_with(http, Some(&session), "Register an API", body).into_response()
}

pub async fn delete(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> Response {
    let request = cat::DeleteApiRequest { id };
    match state
        .clients
        .catalog()
        .delete_api(authed(Some(&session.token), request))
        .await
    {
        Ok(_) => Redirect::to("/apis").into_response(),
        Err(status) => layout::refused(&session, "APIs", &status),
    }
}
