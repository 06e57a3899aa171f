//! Limits and group pricing: plans (requests, tokens, spend and
//! concurrency a key or client on the plan may use), rate-limit rules of
//! groups, group multipliers and group prices. Each list has its create
//! form; deletes share one handler.

use axum::Form;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use gateway_proto::catalog::v1 as cat;
use gateway_proto::identity::v1 as id;
use gateway_proto::quota::v1 as quota;
use maud::{Markup, html};
use serde::Deserialize;

use crate::AppState;
use crate::clients::authed;
use crate::layout::{self, csrf, field, page, usd};
use crate::pages::micros;
use crate::session::Session;

fn delete_button(session: &Session, kind: &str, id: &str, label: &str) -> Markup {
    html! {
        form.inline method="post" action=(format!("/limits/{kind}/{id}/delete")) {
            (csrf(session))
            button type="submit" aria-label=(format!("Delete {label}")) { "Delete" }
        }
    }
}

fn limit(value: Option<i64>) -> String {
    value.map_or("—".to_owned(), |value| value.to_string())
}

pub async fn show(State(state): State<AppState>, session: Session) -> Response {
    render(&state, &session, None).await
}

async fn render(state: &AppState, session: &Session, said: Option<Markup>) -> Response {
    match lists(state, session).await {
        Ok(lists) => page(
            session,
            "Limits and group pricing",
            html! { @if let Some(said) = said { (said) } (lists) },
        )
        .into_response(),
        Err(status) => layout::refused(session, "Limits and group pricing", &status),
    }
}

async fn lists(state: &AppState, session: &Session) -> Result<Markup, tonic::Status> {
    let token = Some(session.token.as_str());
    let mut quota_client = state.clients.quota();
    let plans = quota_client
        .list_plans(authed(token, quota::ListPlansRequest::default()))
        .await?
        .into_inner()
        .plans;
    let rules = quota_client
        .list_rate_limit_rules(authed(token, quota::ListRateLimitRulesRequest::default()))
        .await?
        .into_inner()
        .rate_limit_rules;
    let mut catalog = state.clients.catalog();
    let multipliers = catalog
        .list_group_multipliers(authed(token, cat::ListGroupMultipliersRequest::default()))
        .await?
        .into_inner()
        .group_multipliers;
    let prices = catalog
        .list_group_prices(authed(token, cat::ListGroupPricesRequest::default()))
        .await?
        .into_inner()
        .group_prices;
    let clients = state
        .clients
        .identity()
        .list_clients(authed(token, id::ListClientsRequest::default()))
        .await?
        .into_inner()
        .clients;
    Ok(html! {
        (access_tables(session, &plans, &clients, &rules))
        (pricing_tables(session, &multipliers, &prices))
    })
}

/// Plans, clients and group rules, each with its create form.
fn access_tables(
    session: &Session,
    plans: &[quota::Plan],
    clients: &[id::Client],
    rules: &[quota::RateLimitRule],
) -> Markup {
    html! {
    h2 { "Plans" }
    table #plans {
        thead { tr { th { "Name" } th { "Id" } th { "Req/min" } th { "Req/day" } th { "Req/month" } th { "Tokens/min" } th { "Spend/day" } th { "Concurrency" } th { "Actions" } } }
        tbody { @for plan in plans { tr {
            td { (plan.name) } td { code { (plan.id) } } td { (limit(plan.requests_per_minute)) } td { (limit(plan.requests_per_day)) }
            td { (limit(plan.requests_per_month)) } td { (limit(plan.tokens_per_minute)) }
            td { (plan.spend_per_day_micros.map_or("—".to_owned(), usd)) } td { (limit(plan.max_concurrency)) }
            td { (delete_button(session, "plans", &plan.id, &plan.name)) }
        } } }
    }
    (plan_form(session))
    h2 { "Clients (callers named by X-Client-ID, each on its own plan)" }
    table #clients {
        thead { tr { th { "Name" } th { "Client id" } th { "Plan" } th { "Actions" } } }
        tbody { @for client in clients { tr {
            td { (client.name) } td { code { (client.client_id) } } td { code { (client.plan_id) } }
            td { (delete_button(session, "clients", &client.id, &client.name)) }
        } } }
    }
    (client_form(session))
    h2 { "Group rate-limit rules" }
    table #rules {
        thead { tr { th { "Name" } th { "Group" } th { "What" } th { "Per" } th { "Limit" } th { "Actions" } } }
        tbody { @for rule in rules { tr {
            td { (rule.name) } td { code { (rule.group_id) } } td { (rule.dimension().as_str_name()) }
            td { (rule.window().as_str_name()) } td { (rule.limit) }
            td { (delete_button(session, "rules", &rule.id, &rule.name)) }
        } } }
    }
    (rule_form(session))
    }
}

/// Group multipliers and group prices, each with its create form.
fn pricing_tables(
    session: &Session,
    multipliers: &[cat::GroupMultiplier],
    prices: &[cat::GroupPrice],
) -> Markup {
    html! {
    h2 { "Group multipliers" }
    table #multipliers {
        thead { tr { th { "Group" } th { "Multiplier" } th { "Actions" } } }
        tbody { @for multiplier in multipliers { tr {
            td { code { (multiplier.group_id) } } td { (format!("{:.3}×", multiplier.multiplier_ppm as f64 / 1e6)) }
            td { (delete_button(session, "multipliers", &multiplier.id, "the multiplier")) }
        } } }
    }
    (multiplier_form(session))
    h2 { "Group prices (per million tokens)" }
    table #group-prices {
        thead { tr { th { "Group" } th { "Model" } th { "Input" } th { "Output" } th { "Actions" } } }
        tbody { @for price in prices { tr {
            td { code { (price.group_id) } } td { (price.model) } td { (usd(price.input_micros_per_million_tokens)) }
            td { (usd(price.output_micros_per_million_tokens)) } td { (delete_button(session, "group-prices", &price.id, &price.model)) }
        } } }
    }
    (group_price_form(session))
    }
}

fn plan_form(session: &Session) -> Markup {
    html! {
        form method="post" action="/limits/plans" {
            (csrf(session))
            (field("plan_name", "Name", "text", "", None))
            (field("requests_per_minute", "Requests per minute (empty = no limit)", "number", "", None))
            (field("requests_per_day", "Requests per day", "number", "", None))
            (field("requests_per_month", "Requests per month", "number", "", None))
            (field("tokens_per_minute", "Tokens per minute", "number", "", None))
            (field("spend_per_day", "Spend per day (USD)", "text", "", None))
            (field("max_concurrency", "Requests at once", "number", "", None))
            button type="submit" { "Create plan" }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct PlanForm {
    #[serde(default)]
    plan_name: String,
    #[serde(default)]
    requests_per_minute: String,
    #[serde(default)]
    requests_per_day: String,
    #[serde(default)]
    requests_per_month: String,
    #[serde(default)]
    tokens_per_minute: String,
    #[serde(default)]
    spend_per_day: String,
    #[serde(default)]
    max_concurrency: String,
}

/// An optional whole number typed in a form.
fn count(text: &str, what: &str) -> Result<Option<i64>, tonic::Status> {
    match text.trim() {
        "" => Ok(None),
        text => text.parse().map(Some).map_err(|_| {
            tonic::Status::invalid_argument(format!("{what}: {text:?} is not a whole number"))
        }),
    }
}

fn money(text: &str, what: &str) -> Result<Option<i64>, tonic::Status> {
    match text.trim() {
        "" => Ok(None),
        text => micros(text).map(Some).ok_or_else(|| {
            tonic::Status::invalid_argument(format!("{what}: {text:?} is not an amount in USD"))
        }),
    }
}

pub async fn create_plan(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<PlanForm>,
) -> Response {
    let plan = (|| {
        Ok(quota::Plan {
            name: form.plan_name.trim().to_owned(),
            requests_per_minute: count(&form.requests_per_minute, "requests per minute")?,
            requests_per_day: count(&form.requests_per_day, "requests per day")?,
            requests_per_month: count(&form.requests_per_month, "requests per month")?,
            tokens_per_minute: count(&form.tokens_per_minute, "tokens per minute")?,
            spend_per_day_micros: money(&form.spend_per_day, "spend per day")?,
            max_concurrency: count(&form.max_concurrency, "requests at once")?,
            ..Default::default()
        })
    })();
    let result = match plan {
        Ok(plan) => {
            let request = quota::CreatePlanRequest { plan: Some(plan) };
            state
                .clients
                .quota()
                .create_plan(authed(Some(&session.token), request))
                .await
                .map(drop)
        }
        Err(status) => Err(status),
    };
    done(&state, &session, result).await
}

/// Back to the page, with the service's refusal if any.
async fn done(state: &AppState, session: &Session, result: Result<(), tonic::Status>) -> Response {
    match result {
        Ok(()) => Redirect::to("/limits").into_response(),
        Err(status) => match layout::refusal_notice(&status) {
            Some(said) => render(state, session, Some(said)).await,
            None => layout::signed_out(),
        },
    }
}

const DIMENSIONS: [(&str, quota::LimitDimension); 4] = [
    ("requests", quota::LimitDimension::Requests),
    ("tokens", quota::LimitDimension::Tokens),
    ("spend", quota::LimitDimension::Spend),
    (
        "concurrent_requests",
        quota::LimitDimension::ConcurrentRequests,
    ),
];

const WINDOWS: [(&str, quota::LimitWindow); 5] = [
    ("minute", quota::LimitWindow::Minute),
    ("hour", quota::LimitWindow::Hour),
    ("day", quota::LimitWindow::Day),
    ("month", quota::LimitWindow::Month),
    ("lifetime", quota::LimitWindow::Lifetime),
];

fn options<T>(name: &str, label: &str, choices: &[(&str, T)]) -> Markup {
    html! {
        div.field {
            label for=(name) { (label) }
            select id=(name) name=(name) { @for (value, _) in choices { option value=(value) { (value) } } }
        }
    }
}

fn rule_form(session: &Session) -> Markup {
    html! {
        form method="post" action="/limits/rules" {
            (csrf(session))
            (field("rule_name", "Name", "text", "", None))
            (field("rule_group_id", "Group id", "text", "", None))
            (options("dimension", "What is counted", &DIMENSIONS))
            (options("window", "Per", &WINDOWS))
            (field("limit", "Limit (spend in micro-USD)", "number", "", None))
            button type="submit" { "Create rule" }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct RuleForm {
    #[serde(default)]
    rule_name: String,
    #[serde(default)]
    rule_group_id: String,
    #[serde(default)]
    dimension: String,
    #[serde(default)]
    window: String,
    #[serde(default)]
    limit: String,
}

pub async fn create_rule(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<RuleForm>,
) -> Response {
    let pick = |choices: &[(&str, i32)], value: &str| {
        choices
            .iter()
            .find(|(name, _)| *name == value)
            .map_or(0, |(_, value)| *value)
    };
    let dimensions: Vec<(&str, i32)> = DIMENSIONS
        .iter()
        .map(|(name, value)| (*name, *value as i32))
        .collect();
    let windows: Vec<(&str, i32)> = WINDOWS
        .iter()
        .map(|(name, value)| (*name, *value as i32))
        .collect();
    let result = match count(&form.limit, "limit") {
        Ok(limit) => {
            let rule = quota::RateLimitRule {
                name: form.rule_name.trim().to_owned(),
                group_id: form.rule_group_id.trim().to_owned(),
                dimension: pick(&dimensions, &form.dimension),
                window: pick(&windows, &form.window),
                limit: limit.unwrap_or(0),
                enabled: true,
                ..Default::default()
            };
            let request = quota::CreateRateLimitRuleRequest {
                rate_limit_rule: Some(rule),
            };
            state
                .clients
                .quota()
                .create_rate_limit_rule(authed(Some(&session.token), request))
                .await
                .map(drop)
        }
        Err(status) => Err(status),
    };
    done(&state, &session, result).await
}

fn multiplier_form(session: &Session) -> Markup {
    html! {
        form method="post" action="/limits/multipliers" {
            (csrf(session))
            (field("multiplier_group_id", "Group id", "text", "", None))
            (field("multiplier", "Multiplier of every price (e.g. 0.8)", "text", "", None))
            button type="submit" { "Set multiplier" }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct MultiplierForm {
    #[serde(default)]
    multiplier_group_id: String,
    #[serde(default)]
    multiplier: String,
}

pub async fn create_multiplier(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<MultiplierForm>,
) -> Response {
    // A multiplier reads like an amount: parts per million, exactly.
    let result = match micros(&form.multiplier) {
        Some(multiplier_ppm) => {
            let multiplier = cat::GroupMultiplier {
                group_id: form.multiplier_group_id.trim().to_owned(),
                multiplier_ppm,
                ..Default::default()
            };
            let request = cat::CreateGroupMultiplierRequest {
                group_multiplier: Some(multiplier),
            };
            state
                .clients
                .catalog()
                .create_group_multiplier(authed(Some(&session.token), request))
                .await
                .map(drop)
        }
        None => Err(tonic::Status::invalid_argument(format!(
            "multiplier: {:?} is not a number such as 0.8",
            form.multiplier
        ))),
    };
    done(&state, &session, result).await
}

fn group_price_form(session: &Session) -> Markup {
    html! {
        form method="post" action="/limits/group-prices" {
            (csrf(session))
            (field("price_group_id", "Group id", "text", "", None))
            (field("price_model", "Model", "text", "", None))
            (field("price_input", "Input, USD per million tokens", "text", "", None))
            (field("price_output", "Output, USD per million tokens", "text", "", None))
            button type="submit" { "Add group price" }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct GroupPriceForm {
    #[serde(default)]
    price_group_id: String,
    #[serde(default)]
    price_model: String,
    #[serde(default)]
    price_input: String,
    #[serde(default)]
    price_output: String,
}

pub async fn create_group_price(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<GroupPriceForm>,
) -> Response {
    let price = (|| {
        Ok(cat::GroupPrice {
            group_id: form.price_group_id.trim().to_owned(),
            model: form.price_model.trim().to_owned(),
            input_micros_per_million_tokens: money(&form.price_input, "input")?.unwrap_or(0),
            output_micros_per_million_tokens: money(&form.price_output, "output")?.unwrap_or(0),
            ..Default::default()
        })
    })();
    let result = match price {
        Ok(price) => {
            let request = cat::CreateGroupPriceRequest {
                group_price: Some(price),
            };
            state
                .clients
                .catalog()
                .create_group_price(authed(Some(&session.token), request))
                .await
                .map(drop)
        }
        Err(status) => Err(status),
    };
    done(&state, &session, result).await
}

fn client_form(session: &Session) -> Markup {
    html! {
        form method="post" action="/limits/clients" {
            (csrf(session))
            (field("client_name", "Name", "text", "", None))
            (field("client_id", "Client id (sent as X-Client-ID)", "text", "", None))
            (field("client_plan_id", "Plan id (empty = none)", "text", "", None))
            button type="submit" { "Create client" }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct ClientForm {
    #[serde(default)]
    client_name: String,
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    client_plan_id: String,
}

pub async fn create_client(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<ClientForm>,
) -> Response {
    let client = id::Client {
        name: form.client_name.trim().to_owned(),
        client_id: form.client_id.trim().to_owned(),
        plan_id: form.client_plan_id.trim().to_owned(),
        ..Default::default()
    };
    let request = id::CreateClientRequest {
        client: Some(client),
    };
    let result = state
        .clients
        .identity()
        .create_client(authed(Some(&session.token), request))
        .await;
    done(&state, &session, result.map(drop)).await
}

#[derive(Debug, Deserialize)]
pub struct Target {
    kind: String,
    id: String,
}

pub async fn delete(
    State(state): State<AppState>,
    session: Session,
    Path(Target { kind, id }): Path<Target>,
) -> Response {
    let token = Some(session.token.as_str());
    let (mut quota_client, mut catalog) = (state.clients.quota(), state.clients.catalog());
    let result = match kind.as_str() {
        "plans" => quota_client
            .delete_plan(authed(token, quota::DeletePlanRequest { id }))
            .await
            .map(drop),
        "rules" => quota_client
            .delete_rate_limit_rule(authed(token, quota::DeleteRateLimitRuleRequest { id }))
            .await
            .map(drop),
        "multipliers" => catalog
            .delete_group_multiplier(authed(token, cat::DeleteGroupMultiplierRequest { id }))
            .await
            .map(drop),
        "group-prices" => catalog
            .delete_group_price(authed(token, cat::DeleteGroupPriceRequest { id }))
            .await
            .map(drop),
        "clients" => {
            let request = id::DeleteClientRequest { id };
            state
                .clients
                .identity()
                .delete_client(authed(token, request))
                .await
                .map(drop)
        }
        _ => Err(tonic::Status::not_found("no such list")),
    };
    done(&state, &session, result).await
}
