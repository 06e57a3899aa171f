//! The AI side: channels (the provider key is write-only and shown by its
//! last four characters; a superadmin may offer a channel to every
//! tenant) and model prices (a superadmin's without a tenant are the
//! global prices).

use axum::Form;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use gateway_proto::catalog::v1 as cat;
use maud::{Markup, html};
use serde::Deserialize;

use crate::AppState;
use crate::clients::authed;
use crate::layout::{self, csrf, field, page, usd};
use crate::session::Session;

fn provider_name(provider: cat::Provider) -> &'static str {
    match provider {
        cat::Provider::Openai => "OpenAI",
        cat::Provider::Anthropic => "Anthropic",
        cat::Provider::Gemini => "Gemini",
        cat::Provider::OpenaiCompatible => "OpenAI-compatible",
        cat::Provider::Unspecified => "",
    }
}

pub async fn channels(State(state): State<AppState>, session: Session) -> Response {
    channels_page(&state, &session, None).await
}

async fn channels_page(state: &AppState, session: &Session, said: Option<Markup>) -> Response {
    let mut catalog = state.clients.catalog();
    let token = Some(session.token.as_str());
    let channels = catalog
        .list_channels(authed(token, cat::ListChannelsRequest::default()))
        .await;
    let prices = catalog
        .list_model_prices(authed(token, cat::ListModelPricesRequest::default()))
        .await;
    let (channels, prices) = match (channels, prices) {
        (Ok(channels), Ok(prices)) => (
            channels.into_inner().channels,
            prices.into_inner().model_prices,
        ),
        (Err(status), _) | (_, Err(status)) => {
            return layout::refused(session, "Channels and prices", &status);
        }
    };
    let body = html! {
        @if let Some(said) = said { (said) }
        @if channels.is_empty() { p { "No channels yet." } } @else {
            table #channels {
                thead { tr { th { "Name" } th { "Provider" } th { "Models" } th { "Priority" } th { "Weight" } th { "Key" } th { "Offered" } th { "Actions" } } }
                tbody { @for channel in &channels { (channel_row(session, channel)) } }
            }
        }
        h2 { "New channel" }
        (channel_form(session))
        h2 { "Model prices (per million tokens)" }
        @if prices.is_empty() { p { "No prices yet: unpriced models are refused." } } @else {
            table #prices {
                thead { tr { th { "Model" } th { "Input" } th { "Output" } th { "Cached input" } th { "Scope" } th { "Actions" } } }
                tbody { @for price in &prices { (price_row(session, price)) } }
            }
        }
        h2 { "New price" }
        (price_form(session))
    };
    page(session, "Channels and prices", body).into_response()
}

fn delete_button(session: &Session, action: String, label: &str) -> Markup {
    html! {
        form.inline method="post" action=(action) {
            (csrf(session))
            button type="submit" aria-label=(format!("Delete {label}")) { "Delete" }
        }
    }
}

fn channel_row(session: &Session, channel: &cat::Channel) -> Markup {
    let offered = if channel.shared_with_all_tenants {
        "every tenant".to_owned()
    } else if channel.shared_tenant_ids.is_empty() {
        String::new()
    } else {
        format!("{} tenants", channel.shared_tenant_ids.len())
    };
    html! {
        tr {
            td { (channel.name) }
            td { (provider_name(channel.provider())) }
            td { (channel.models.join(", ")) }
            td { (channel.priority) }
            td { (channel.weight) }
            td { code { "…" (channel.secret_hint) } }
            td { (offered) }
            td { (delete_button(session, format!("/channels/{}/delete", channel.id), &channel.name)) }
        }
    }
}

fn channel_form(session: &Session) -> Markup {
    html! {
        form method="post" action="/channels" {
            (csrf(session))
            (field("name", "Name", "text", "", None))
            div.field {
                label for="provider" { "Provider" }
                select id="provider" name="provider" {
                    option value="openai" { "OpenAI" }
                    option value="anthropic" { "Anthropic" }
                    option value="gemini" { "Gemini" }
                    option value="openai_compatible" { "OpenAI-compatible (vLLM, Ollama, ...)" }
                }
            }
            (field("base_url", "Base URL (empty = the provider's)", "url", "", None))
            (field("secret", "Provider key (write-only)", "password", "", None))
            (field("models", "Models (comma-separated)", "text", "", None))
            (field("priority", "Priority", "number", "0", None))
            (field("weight", "Weight", "number", "1", None))
            @if session.is_superadmin() {
                div.field {
                    label for="shared" { "Offer to every tenant (operator channel)" }
                    input id="shared" name="shared" type="checkbox" value="on";
                }
            }
            button type="submit" { "Create channel" }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct ChannelForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    provider: String,
    #[serde(default)]
    base_url: String,
    #[serde(default)]
    secret: String,
    #[serde(default)]
    models: String,
    #[serde(default)]
    priority: String,
    #[serde(default)]
    weight: String,
    #[serde(default)]
    shared: String,
}

pub async fn create_channel(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<ChannelForm>,
) -> Response {
    let provider = match form.provider.as_str() {
        "anthropic" => cat::Provider::Anthropic,
        "gemini" => cat::Provider::Gemini,
        "openai_compatible" => cat::Provider::OpenaiCompatible,
        _ => cat::Provider::Openai,
    };
    let channel = cat::Channel {
        name: form.name.trim().to_owned(),
        provider: provider.into(),
        base_url: form.base_url.trim().to_owned(),
        models: form
            .models
            .split(',')
            .map(str::trim)
            .filter(|model| !model.is_empty())
            .map(str::to_owned)
            .collect(),
        priority: form.priority.trim().parse().unwrap_or(0),
        weight: form.weight.trim().parse().unwrap_or(1),
        enabled: true,
        shared_with_all_tenants: form.shared == "on",
        ..Default::default()
    };
    let request = cat::CreateChannelRequest {
        channel: Some(channel),
        secret: form.secret,
    };
    let answer = state
        .clients
        .catalog()
        .create_channel(authed(Some(&session.token), request))
        .await;
    finish(&state, &session, answer.map(drop)).await
}

/// Back to the page after a change, with the service's refusal if any.
async fn finish(
    state: &AppState,
    session: &Session,
    result: Result<(), tonic::Status>,
) -> Response {
    match result {
        Ok(()) => Redirect::to("/channels").into_response(),
        Err(status) => match layout::refusal_notice(&status) {
            Some(said) => channels_page(state, session, Some(said)).await,
            None => layout::signed_out(),
        },
    }
}

fn price_row(session: &Session, price: &cat::ModelPrice) -> Markup {
    html! {
        tr {
            td { (price.model) }
            td { (usd(price.input_micros_per_million_tokens)) }
            td { (usd(price.output_micros_per_million_tokens)) }
            td { (price.cached_input_micros_per_million_tokens.map_or("as input".to_owned(), usd)) }
            td { @if price.tenant_id.is_empty() { "global" } @else { "tenant" } }
            td { (delete_button(session, format!("/prices/{}/delete", price.id), &price.model)) }
        }
    }
}

fn price_form(session: &Session) -> Markup {
    html! {
        form method="post" action="/prices" {
            (csrf(session))
            (field("model", "Model", "text", "", None))
            (field("input", "Input, USD per million tokens", "text", "", None))
            (field("output", "Output, USD per million tokens", "text", "", None))
            (field("cached", "Cached input, USD per million tokens (empty = input)", "text", "", None))
            @if session.is_superadmin() {
                div.field {
                    label for="global" { "A global price (every tenant without its own)" }
                    input id="global" name="global" type="checkbox" value="on";
                }
            }
            button type="submit" { "Add price" }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct PriceForm {
    #[serde(default)]
    model: String,
    #[serde(default)]
    input: String,
    #[serde(default)]
    output: String,
    #[serde(default)]
    cached: String,
    #[serde(default)]
    global: String,
}

pub async fn create_price(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<PriceForm>,
) -> Response {
    let amount = |text: &str| {
        crate::pages::micros(text).ok_or_else(|| {
            tonic::Status::invalid_argument(format!("{text:?} is not an amount in USD"))
        })
    };
    let price = (|| {
        Ok(cat::ModelPrice {
            model: form.model.trim().to_owned(),
            tenant_id: if form.global == "on" {
                String::new()
            } else {
                session.tenant_id.clone()
            },
            input_micros_per_million_tokens: amount(&form.input)?,
            output_micros_per_million_tokens: amount(&form.output)?,
            cached_input_micros_per_million_tokens: match form.cached.trim() {
                "" => None,
                cached => Some(amount(cached)?),
            },
            ..Default::default()
        })
    })();
    let result = match price {
        Ok(price) => {
            let request = cat::CreateModelPriceRequest {
                model_price: Some(price),
            };
            state
                .clients
                .catalog()
                .create_model_price(authed(Some(&session.token), request))
                .await
                .map(drop)
        }
        Err(status) => Err(status),
    };
    finish(&state, &session, result).await
}

#[derive(Debug, Deserialize)]
pub struct Target {
    id: String,
}

pub async fn delete_channel(
    State(state): State<AppState>,
    session: Session,
    Path(Target { id }): Path<Target>,
) -> Response {
    let request = cat::DeleteChannelRequest { id };
    let result = state
        .clients
        .catalog()
        .delete_channel(authed(Some(&session.token), request))
        .await;
    finish(&state, &session, result.map(drop)).await
}

pub async fn delete_price(
    State(state): State<AppState>,
    session: Session,
    Path(Target { id }): Path<Target>,
) -> Response {
    let request = cat::DeleteModelPriceRequest { id };
    let result = state
        .clients
        .catalog()
        .delete_model_price(authed(Some(&session.token), request))
        .await;
    finish(&state, &session, result.map(drop)).await
}
