//! The AI gateway end to end: OpenAI chat completions (JSON and SSE) and
//! models through a real edge to mock providers on loopback ports, with
//! channel failover, usage and cost recorded, and money enforced before
//! the provider is called.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use gateway_e2e::{Backend, Credentials, TenantFixture, TestSuite};
use gateway_proto::catalog::v1 as cat;
use gateway_proto::identity::v1 as id;
use gateway_proto::usage::v1 as usage;
use gateway_testkit::providers::{self, Behaviour, anthropic, gemini, openai as mock};
use http::{Request, StatusCode};
use http_body_util::{BodyExt as _, Full};

#[path = "ai/budget.rs"]
mod budget;
#[path = "ai/cache.rs"]
mod cache;
mod edge_support;
#[path = "ai/embeddings.rs"]
mod embeddings;
#[path = "ai/guard.rs"]
mod guard;
#[path = "ai/legacy.rs"]
mod legacy;
#[path = "ai/openapi.rs"]
mod openapi;
#[path = "ai/operator.rs"]
mod operator;
#[path = "ai/responses.rs"]
mod responses;
#[path = "ai/translation.rs"]
mod translation;

use edge_support::{HttpClient, http_client};

const MODEL: &str = "gpt-test";
/// $2 per million prompt tokens, $8 per million completion tokens.
const INPUT_PRICE: i64 = 2_000_000;
const OUTPUT_PRICE: i64 = 8_000_000;

async fn channel(
    suite: &TestSuite,
    tenant: &TenantFixture,
    name: &str,
    upstream: SocketAddr,
    priority: i32,
) -> String {
    provider_channel(
        suite,
        tenant,
        (name, cat::Provider::Openai, MODEL),
        upstream,
        priority,
    )
    .await
}

async fn provider_channel(
    suite: &TestSuite,
    tenant: &TenantFixture,
    (name, provider, model): (&str, cat::Provider, &str),
    upstream: SocketAddr,
    priority: i32,
) -> String {
    let channel = cat::Channel {
        provider: provider.into(),
        models: vec![model.to_owned()],
        model_mapping: [(model.to_owned(), format!("{model}-{name}"))]
            .into_iter()
            .collect(),
        ..channel_named(name, upstream, priority)
    };
    create_channel(suite, tenant, channel).await
}

/// An enabled channel of weight 1 on `upstream`.
fn channel_named(name: &str, upstream: SocketAddr, priority: i32) -> cat::Channel {
    cat::Channel {
        name: name.to_owned(),
        base_url: format!("http://{upstream}"),
        weight: 1,
        priority,
        enabled: true,
        ..Default::default()
    }
}

/// Creates `channel` with the key `sk-provider-{name}`; its id.
async fn create_channel(
    suite: &TestSuite,
    tenant: &TenantFixture,
    channel: cat::Channel,
) -> String {
    let mut catalog = suite
        .catalog_as(Credentials::bearer(&tenant.admin_token))
        .await;
    let secret = format!("sk-provider-{}", channel.name);
    catalog
        .create_channel(cat::CreateChannelRequest {
            channel: Some(channel),
            secret,
        })
        .await
        .unwrap()
        .into_inner()
        .channel
        .unwrap()
        .id
}

async fn price(suite: &TestSuite, tenant: &TenantFixture) {
    model_price(suite, tenant, MODEL).await;
}

async fn model_price(suite: &TestSuite, tenant: &TenantFixture, model: &str) {
    let mut catalog = suite
        .catalog_as(Credentials::bearer(&tenant.admin_token))
        .await;
    catalog
        .create_model_price(cat::CreateModelPriceRequest {
            model_price: Some(cat::ModelPrice {
                tenant_id: tenant.id.clone(),
                model: model.to_owned(),
                input_micros_per_million_tokens: INPUT_PRICE,
                output_micros_per_million_tokens: OUTPUT_PRICE,
                ..Default::default()
            }),
        })
        .await
        .unwrap();
}

/// The tenant admin's balance, which their personal keys pay from.
fn admin_balance(tenant: &TenantFixture) -> Option<gateway_proto::quota::v1::BalanceOwner> {
    use gateway_proto::quota::v1 as quota;
    Some(quota::BalanceOwner {
        kind: quota::BalanceOwnerKind::User.into(),
        id: tenant.admin_id.clone(),
    })
}

/// Credits the tenant admin's balance (their personal keys pay from it).
async fn credit(suite: &TestSuite, tenant: &TenantFixture, amount_micros: i64) {
    use gateway_proto::quota::v1 as quota;
    let mut quota_admin = suite
        .quota_as(Credentials::bearer(&tenant.admin_token))
        .await;
    quota_admin
        .adjust_balance(quota::AdjustBalanceRequest {
            owner: admin_balance(tenant),
            amount_micros,
            reason: "test credit".to_owned(),
            idempotency_key: uuid::Uuid::now_v7().to_string(),
        })
        .await
        .unwrap();
}

async fn key(suite: &TestSuite, tenant: &TenantFixture, spend_limit_micros: Option<i64>) -> String {
    let api_key = id::ApiKey {
        name: "ai".to_owned(),
        spend_limit_micros,
        ..Default::default()
    };
    key_with(suite, &tenant.admin_token, api_key).await
}

/// The plaintext of a new key, created with `token` (its holder's key).
async fn key_with(suite: &TestSuite, token: &str, api_key: id::ApiKey) -> String {
    let mut identity = suite.identity_as(Credentials::bearer(token)).await;
    identity
        .create_api_key(id::CreateApiKeyRequest {
            api_key: Some(api_key),
        })
        .await
        .unwrap()
        .into_inner()
        .key
}

type Answer = (StatusCode, http::HeaderMap, Bytes);

/// A tenant with one priced OpenAI channel on a mock behaving so, a
/// credited balance and a personal key the edge already serves.
async fn served_tenant(
    suite: &TestSuite,
    name: &str,
    behaviour: Behaviour,
    credit_micros: i64,
) -> (TenantFixture, providers::Control, String) {
    let tenant = suite.tenant(name).await;
    let (upstream, control) = mock::start(behaviour).await;
    channel(suite, &tenant, "mock", upstream, 1).await;
    price(suite, &tenant).await;
    credit(suite, &tenant, credit_micros).await;
    let key = key(suite, &tenant, None).await;
    until_served(&http_client(), suite.addresses.edge, &key).await;
    (tenant, control, key)
}

/// `(status, headers, body)` of a JSON POST to `path` with `headers`.
async fn post_json(
    client: &HttpClient,
    edge: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: serde_json::Value,
) -> Answer {
    let mut request =
        Request::post(format!("http://{edge}{path}")).header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let body = Full::new(Bytes::from(body.to_string())).boxed();
    let response = client.request(request.body(body).unwrap()).await.unwrap();
    let (parts, body) = response.into_parts();
    (
        parts.status,
        parts.headers,
        body.collect().await.unwrap().to_bytes(),
    )
}

async fn post(
    client: &HttpClient,
    edge: SocketAddr,
    key: Option<&str>,
    body: serde_json::Value,
) -> Answer {
    let bearer = key.map(|key| format!("Bearer {key}"));
    let headers: Vec<(&str, &str)> = bearer
        .iter()
        .map(|bearer| ("authorization", bearer.as_str()))
        .collect();
    post_json(client, edge, "/v1/chat/completions", &headers, body).await
}

async fn models(client: &HttpClient, edge: SocketAddr, key: &str) -> serde_json::Value {
    let request = Request::get(format!("http://{edge}/v1/models"))
        .header("authorization", format!("Bearer {key}"))
        .body(edge_support::empty())
        .unwrap();
    let response = client.request(request).await.unwrap();
    serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap()
}

/// The models a key lists through one protocol: OpenAI's list, Anthropic's
/// (with `anthropic-version`), or Gemini's.
async fn listed(client: &HttpClient, edge: SocketAddr, key: &str, protocol: &str) -> usize {
    let (path, headers): (&str, &[(&str, &str)]) = match protocol {
        "anthropic" => ("/v1/models", &[("anthropic-version", "2023-06-01")]),
        "gemini" => ("/v1beta/models", &[]),
        _ => ("/v1/models", &[]),
    };
    let answer = edge_support::send(client, edge, "GET", path, key, headers).await;
    let body: serde_json::Value = serde_json::from_slice(&answer.2).unwrap_or_default();
    let list = if protocol == "gemini" {
        &body["models"]
    } else {
        &body["data"]
    };
    list.as_array().map_or(0, Vec::len)
}

/// Waits until the edge's snapshot has a channel of each protocol named.
async fn until_served_by(client: &HttpClient, edge: SocketAddr, key: &str, protocols: &[&str]) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    for protocol in protocols {
        while listed(client, edge, key, protocol).await == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "no {protocol} channel reached the edge"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn until_served(client: &HttpClient, edge: SocketAddr, key: &str) {
    until_served_by(client, edge, key, &["openai"]).await;
}

fn chat(stream: bool, extra: serde_json::Value) -> serde_json::Value {
    let mut body = serde_json::json!({
        "model": MODEL,
        "messages": [{"role": "user", "content": "Say hello."}],
        "stream": stream,
    });
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    body
}

fn json(answer: &Answer) -> serde_json::Value {
    serde_json::from_slice(&answer.2).unwrap_or_else(|_| panic!("{answer:?}"))
}

async fn ai_events(
    suite: &TestSuite,
    tenant: &TenantFixture,
    count: usize,
) -> Vec<usage::UsageEvent> {
    let events = edge_support::usage_events_until(suite, tenant, |events| {
        events
            .iter()
            .filter(|event| !event.model.is_empty())
            .count()
            >= count
    })
    .await;
    events
        .into_iter()
        .filter(|event| !event.model.is_empty())
        .collect()
}

fn cost(prompt: i64, completion: i64) -> i64 {
    (prompt * INPUT_PRICE + completion * OUTPUT_PRICE + 999_999) / 1_000_000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_chat_is_served_from_channels_with_usage_cost_and_failover() {
    let suite = TestSuite::start_with(Backend::Sqlite, |config| {
        config.edge.ai_cors_allowed_origins = vec![BROWSER_APP.to_owned()];
    })
    .await
    .unwrap();
    let acme = suite.tenant("acme").await;
    let (good, good_mock) = mock::start(Behaviour::Answer).await;
    let (busy, busy_mock) = mock::start(Behaviour::RateLimited(30)).await;
    let good_id = channel(&suite, &acme, "good", good, 1).await;
    // Preferred by priority, but rate limited: the edge fails over.
    let busy_id = channel(&suite, &acme, "busy", busy, 5).await;
    price(&suite, &acme).await;
    credit(&suite, &acme, 10_000_000).await;
    let key = key(&suite, &acme, None).await;
    let (client, edge) = (http_client(), suite.addresses.edge);
    until_served(&client, edge, &key).await;
    let listed = models(&client, edge, &key).await;
    assert_eq!(listed["data"][0]["id"], MODEL, "{listed}");
    browsers_are_answered_by_the_configured_cors(&client, edge, &key).await;

    // JSON: the busy channel is tried, cools down, the good one answers.
    let answer = post(
        &client,
        edge,
        Some(&key),
        chat(false, serde_json::json!({})),
    )
    .await;
    assert_eq!(answer.0, StatusCode::OK, "{answer:?}");
    let body = json(&answer);
    assert_eq!(body["choices"][0]["message"]["content"], providers::TEXT);
    assert_eq!(
        body["model"],
        format!("{MODEL}-good"),
        "the channel's model name"
    );
    assert!(answer.1.contains_key("x-request-id"));
    assert_eq!(busy_mock.received().len(), 1);
    let sent = &good_mock.received()[0];
    assert_eq!(sent.headers["authorization"], "Bearer sk-provider-good");
    assert_eq!(sent.body["model"], format!("{MODEL}-good"));

    // Streams: usage asked of the provider, hidden from a client that did
    // not ask, shown to one that did. The busy channel is cooling: skipped.
    let streamed = post(&client, edge, Some(&key), chat(true, serde_json::json!({}))).await;
    assert_eq!(streamed.0, StatusCode::OK);
    assert!(
        streamed.1["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let text = String::from_utf8_lossy(&streamed.2).into_owned();
    assert!(
        text.contains("\"content\":\"Hello\"") && text.ends_with("data: [DONE]\n\n"),
        "{text}"
    );
    assert!(!text.contains("prompt_tokens"), "{text}");
    assert_eq!(
        good_mock.received()[1].body["stream_options"]["include_usage"],
        true
    );
    assert_eq!(
        busy_mock.received().len(),
        1,
        "a cooling channel is not tried"
    );
    let asked = post(
        &client,
        edge,
        Some(&key),
        chat(
            true,
            serde_json::json!({"stream_options": {"include_usage": true}}),
        ),
    )
    .await;
    assert!(String::from_utf8_lossy(&asked.2).contains("\"prompt_tokens\":11"));

    // One usage event each, with the real tokens and their cost.
    let events = ai_events(&suite, &acme, 3).await;
    assert_eq!(events.len(), 3, "{events:?}");
    let expected_cost = cost(providers::PROMPT_TOKENS, providers::completion_tokens());
    for event in &events {
        assert_eq!(event.model, MODEL);
        assert_eq!(event.upstream_model, format!("{MODEL}-good"));
        assert_eq!(event.channel_id, good_id);
        assert_eq!(event.prompt_tokens, providers::PROMPT_TOKENS);
        assert_eq!(event.completion_tokens, providers::completion_tokens());
        assert_eq!(event.cached_tokens, providers::CACHED_TOKENS);
        assert_eq!(event.cost_micros, expected_cost);
        assert_eq!(event.status, 200);
    }
    assert_eq!(events.iter().filter(|event| event.stream).count(), 2);
    for event in &events {
        assert_eq!(event.provider, "openai");
        assert!(!event.estimated, "reported by the provider");
        assert_eq!(event.finish_reason, "stop");
        assert_eq!(
            event.stream,
            event.time_to_first_token.is_some(),
            "{event:?}"
        );
    }
    assert!(
        events.iter().any(|event| event.attempts == 2),
        "the failover shows"
    );
    assert!(events.iter().all(|event| event.channel_id != busy_id));

    // Errors in OpenAI's own shape.
    let unknown = post(
        &client,
        edge,
        Some(&key),
        serde_json::json!({"model": "nope", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(unknown.0, StatusCode::NOT_FOUND);
    assert_eq!(json(&unknown)["error"]["code"], "model_not_found");
    let anonymous = post(&client, edge, None, chat(false, serde_json::json!({}))).await;
    assert_eq!(anonymous.0, StatusCode::UNAUTHORIZED);
    assert_eq!(json(&anonymous)["error"]["type"], "authentication_error");
    let forged = post(
        &client,
        edge,
        Some("sk-not-a-real-key"),
        chat(false, serde_json::json!({})),
    )
    .await;
    assert_eq!(forged.0, StatusCode::UNAUTHORIZED);
    let broken = post(
        &client,
        edge,
        Some(&key),
        serde_json::json!({"model": MODEL}),
    )
    .await;
    assert_eq!(broken.0, StatusCode::BAD_REQUEST);
    assert_eq!(json(&broken)["error"]["type"], "invalid_request_error");

    // The last channel failing: 502; then every channel cools, and the
    // client is told when to come back.
    good_mock.set(Behaviour::ServerError);
    let failing = post(
        &client,
        edge,
        Some(&key),
        chat(false, serde_json::json!({})),
    )
    .await;
    assert_eq!(failing.0, StatusCode::BAD_GATEWAY, "{failing:?}");
    assert_eq!(json(&failing)["error"]["type"], "api_error");
    let cooling = post(
        &client,
        edge,
        Some(&key),
        chat(false, serde_json::json!({})),
    )
    .await;
    assert_eq!(cooling.0, StatusCode::SERVICE_UNAVAILABLE, "{cooling:?}");
    assert!(cooling.1.contains_key("retry-after"));
    suite.stop().await.unwrap();
}

const BROWSER_APP: &str = "https://chat.example";

/// The edge's AI CORS policy: a preflight answered without a key, the
/// allowed origin's answers readable, another origin's not.
async fn browsers_are_answered_by_the_configured_cors(
    client: &HttpClient,
    edge: SocketAddr,
    key: &str,
) {
    let preflight = Request::builder()
        .method("OPTIONS")
        .uri(format!("http://{edge}/v1/chat/completions"))
        .header("origin", BROWSER_APP)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .body(edge_support::empty())
        .unwrap();
    let answer = client.request(preflight).await.unwrap();
    assert_eq!(answer.status(), StatusCode::NO_CONTENT);
    let headers = answer.headers();
    assert_eq!(headers["access-control-allow-origin"], BROWSER_APP);
    assert_eq!(
        headers["access-control-allow-headers"],
        "authorization, content-type"
    );
    let allowed = [("origin", BROWSER_APP)];
    let listed = edge_support::send(client, edge, "GET", "/v1/models", key, &allowed).await;
    assert_eq!(listed.1["access-control-allow-origin"], BROWSER_APP);
    assert!(
        listed.1["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .contains("x-request-id")
    );
    let other = [("origin", "https://elsewhere.example")];
    let listed = edge_support::send(client, edge, "GET", "/v1/models", key, &other).await;
    assert_eq!(listed.0, StatusCode::OK);
    assert!(!listed.1.contains_key("access-control-allow-origin"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spend_limits_are_enforced_before_the_provider_is_called() {
    let suite = TestSuite::start(Backend::Sqlite).await.unwrap();
    let acme = suite.tenant("acme").await;
    let (upstream, provider) = mock::start(Behaviour::Answer).await;
    channel(&suite, &acme, "only", upstream, 1).await;
    price(&suite, &acme).await;
    credit(&suite, &acme, 10_000_000).await;
    // $0.0001: one small answer (about 60 micro-USD), not two.
    let key = key(&suite, &acme, Some(100)).await;
    let (client, edge) = (http_client(), suite.addresses.edge);
    until_served(&client, edge, &key).await;
    let small = serde_json::json!({"max_tokens": 5});
    let first = post(&client, edge, Some(&key), chat(false, small.clone())).await;
    assert_eq!(first.0, StatusCode::OK, "{first:?}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let refused = loop {
        // The Commit of the first answer lands shortly after it.
        let answer = post(&client, edge, Some(&key), chat(false, small.clone())).await;
        if answer.0 != StatusCode::OK || std::time::Instant::now() > deadline {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(refused.0, StatusCode::PAYMENT_REQUIRED, "{refused:?}");
    assert_eq!(json(&refused)["error"]["type"], "insufficient_quota");
    let calls = provider.received().len();
    let again = post(&client, edge, Some(&key), chat(false, small)).await;
    assert_eq!(again.0, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(
        provider.received().len(),
        calls,
        "refused before the provider"
    );
    suite.stop().await.unwrap();
}

/// The interpreter of the venv with the official SDKs (`.ci/run` makes it);
/// without it the SDK tests skip, except under CI.
fn sdk_python() -> Option<String> {
    gateway_testkit::server_url("GATEWAY_TEST_PYTHON")
}

/// Runs `tests/sdk/{script}` with the edge, key, its protocol's model,
/// every model the key reaches and the expected text.
async fn run_sdk(python: String, script: &str, edge: SocketAddr, key: String, model: &str) {
    let script = format!("{}/sdk/{script}", env!("CARGO_MANIFEST_DIR"));
    let model = model.to_owned();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .arg(script)
            .env("EDGE_URL", format!("http://{edge}"))
            .env("GATEWAY_KEY", &key)
            .env("MODEL", model)
            .env("MODELS", [MODEL, CLAUDE, GEMINI].join(","))
            // Served by the OpenAI channel: native for OpenAI's SDK,
            // translated for Gemini's.
            .env("EMBEDDING_MODEL", MODEL)
            .env("TEXT", providers::TEXT)
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert_eq!(stdout.trim(), "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_sdks_work_against_the_edge() {
    let Some(python) = sdk_python() else { return };
    let suite = TestSuite::start(Backend::Sqlite).await.unwrap();
    let acme = suite.tenant("acme").await;
    let (gpt, _gpt) = mock::start(Behaviour::Answer).await;
    let (claude, _claude) = anthropic::start(Behaviour::Answer).await;
    channel(&suite, &acme, "only", gpt, 1).await;
    provider_channel(
        &suite,
        &acme,
        ("claude", cat::Provider::Anthropic, CLAUDE),
        claude,
        1,
    )
    .await;
    let (google, _google) = gemini::start(Behaviour::Answer).await;
    let google_channel = ("google", cat::Provider::Gemini, GEMINI);
    provider_channel(&suite, &acme, google_channel, google, 1).await;
    // Each protocol's preferred channel fails: the SDKs (no retries of
    // their own) must not notice.
    let (busy_gpt, busy_gpt_mock) = mock::start(Behaviour::RateLimited(30)).await;
    channel(&suite, &acme, "busy", busy_gpt, 5).await;
    let (down_claude, down_claude_mock) = anthropic::start(Behaviour::ServerError).await;
    let down = ("claude-down", cat::Provider::Anthropic, CLAUDE);
    provider_channel(&suite, &acme, down, down_claude, 5).await;
    let (slow_google, slow_google_mock) = gemini::start(Behaviour::RateLimited(30)).await;
    let busy = ("google-busy", cat::Provider::Gemini, GEMINI);
    provider_channel(&suite, &acme, busy, slow_google, 5).await;
    price(&suite, &acme).await;
    model_price(&suite, &acme, CLAUDE).await;
    model_price(&suite, &acme, GEMINI).await;
    credit(&suite, &acme, 10_000_000).await;
    let key = key(&suite, &acme, None).await;
    let (client, edge) = (http_client(), suite.addresses.edge);
    until_served(&client, edge, &key).await;
    until_served_by(&client, edge, &key, &["openai", "anthropic", "gemini"]).await;
    run_sdk(python.clone(), "openai_client.py", edge, key.clone(), MODEL).await;
    run_sdk(
        python.clone(),
        "anthropic_client.py",
        edge,
        key.clone(),
        CLAUDE,
    )
    .await;
    run_sdk(python, "gemini_client.py", edge, key, GEMINI).await;
    for (protocol, failing) in [
        ("openai", &busy_gpt_mock),
        ("anthropic", &down_claude_mock),
        ("gemini", &slow_google_mock),
    ] {
        assert!(
            !failing.received().is_empty(),
            "{protocol}: no failover tried"
        );
    }
    suite.stop().await.unwrap();
}

const CLAUDE: &str = "claude-test";

async fn anthropic_post(
    client: &HttpClient,
    edge: SocketAddr,
    key: &str,
    body: serde_json::Value,
) -> Answer {
    let headers = [("x-api-key", key), ("anthropic-version", "2023-06-01")];
    post_json(client, edge, "/v1/messages", &headers, body).await
}

fn messages(stream: bool) -> serde_json::Value {
    serde_json::json!({
        "model": CLAUDE, "max_tokens": 100, "stream": stream,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "Say hello."}],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_messages_are_served_by_the_preferred_anthropic_channel() {
    let suite = TestSuite::start(Backend::Sqlite).await.unwrap();
    let acme = suite.tenant("acme").await;
    let (claude, claude_mock) = anthropic::start(Behaviour::Answer).await;
    let (gpt, gpt_mock) = mock::start(Behaviour::Answer).await;
    let claude_id = provider_channel(
        &suite,
        &acme,
        ("claude", cat::Provider::Anthropic, CLAUDE),
        claude,
        1,
    )
    .await;
    // An OpenAI channel of lower priority serving the same name: reached
    // only through translation, and only when the Anthropic one fails.
    provider_channel(
        &suite,
        &acme,
        ("gpt", cat::Provider::Openai, CLAUDE),
        gpt,
        0,
    )
    .await;
    model_price(&suite, &acme, CLAUDE).await;
    credit(&suite, &acme, 10_000_000).await;
    let key = key(&suite, &acme, None).await;
    let (client, edge) = (http_client(), suite.addresses.edge);
    until_served_by(&client, edge, &key, &["openai", "anthropic"]).await;

    let answer = anthropic_post(&client, edge, &key, messages(false)).await;
    assert_eq!(answer.0, StatusCode::OK, "{answer:?}");
    let body = json(&answer);
    assert_eq!(body["content"][0]["text"], providers::TEXT);
    let sent = &claude_mock.received()[0];
    assert_eq!(sent.headers["x-api-key"], "sk-provider-claude");
    assert_eq!(sent.headers["anthropic-version"], "2023-06-01");
    assert!(!sent.headers.contains_key("authorization"));
    assert_eq!(sent.body["model"], format!("{CLAUDE}-claude"));
    assert!(gpt_mock.received().is_empty());

    let streamed = anthropic_post(&client, edge, &key, messages(true)).await;
    assert_eq!(streamed.0, StatusCode::OK);
    let text = String::from_utf8_lossy(&streamed.2).into_owned();
    assert!(text.starts_with("event: message_start"), "{text}");
    assert!(text.contains("event: message_stop"), "{text}");

    let events = ai_events(&suite, &acme, 2).await;
    assert_eq!(events.len(), 2, "{events:?}");
    for event in &events {
        assert_eq!(event.channel_id, claude_id);
        assert_eq!(
            event.prompt_tokens,
            providers::PROMPT_TOKENS,
            "input + cache reads"
        );
        assert_eq!(event.cached_tokens, providers::CACHED_TOKENS);
        assert_eq!(event.completion_tokens, providers::completion_tokens());
        assert_eq!(
            event.cost_micros,
            cost(providers::PROMPT_TOKENS, providers::completion_tokens())
        );
        assert_eq!(event.provider, "anthropic");
        assert_eq!(event.finish_reason, "end_turn");
    }

    // The model list in Anthropic's shape, token counting, and errors in
    // Anthropic's own body.
    let request = Request::get(format!("http://{edge}/v1/models"))
        .header("x-api-key", &key)
        .header("anthropic-version", "2023-06-01")
        .body(edge_support::empty())
        .unwrap();
    let listed: serde_json::Value = serde_json::from_slice(
        &client
            .request(request)
            .await
            .unwrap()
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes(),
    )
    .unwrap();
    assert_eq!(listed["data"][0]["type"], "model");
    assert_eq!(listed["data"][0]["id"], CLAUDE);
    let request = Request::post(format!("http://{edge}/v1/messages/count_tokens"))
        .header("x-api-key", &key)
        .body(Full::new(Bytes::from(serde_json::json!({"model": CLAUDE, "messages": [{"role": "user", "content": "Say hello."}]}).to_string())).boxed())
        .unwrap();
    let counted: serde_json::Value = serde_json::from_slice(
        &client
            .request(request)
            .await
            .unwrap()
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes(),
    )
    .unwrap();
    assert!(counted["input_tokens"].as_i64().unwrap() > 0, "{counted}");
    let missing = anthropic_post(
        &client,
        edge,
        &key,
        serde_json::json!({"model": CLAUDE, "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(missing.0, StatusCode::BAD_REQUEST);
    assert_eq!(json(&missing)["type"], "error");
    assert_eq!(json(&missing)["error"]["type"], "invalid_request_error");
    let unknown = anthropic_post(&client, edge, &key, serde_json::json!({"model": "nope", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]})).await;
    assert_eq!(unknown.0, StatusCode::NOT_FOUND);
    assert_eq!(json(&unknown)["error"]["type"], "not_found_error");
    suite.stop().await.unwrap();
}

const GEMINI: &str = "gemini-test";

async fn gemini_post(
    client: &HttpClient,
    edge: SocketAddr,
    path: &str,
    body: serde_json::Value,
) -> Answer {
    post_json(client, edge, path, &[], body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemini_generation_with_the_key_in_the_query_never_forwards_it() {
    let suite = TestSuite::start(Backend::Sqlite).await.unwrap();
    let acme = suite.tenant("acme").await;
    let (google, google_mock) = gemini::start(Behaviour::Answer).await;
    let google_channel = ("google", cat::Provider::Gemini, GEMINI);
    let channel_id = provider_channel(&suite, &acme, google_channel, google, 1).await;
    model_price(&suite, &acme, GEMINI).await;
    credit(&suite, &acme, 10_000_000).await;
    let key = key(&suite, &acme, None).await;
    let (client, edge) = (http_client(), suite.addresses.edge);
    until_served_by(&client, edge, &key, &["gemini"]).await;
    let body = serde_json::json!({"contents": [{"role": "user", "parts": [{"text": "Say hello."}]}],
        "generationConfig": {"maxOutputTokens": 50}});

    let path = format!("/v1beta/models/{GEMINI}:generateContent?key={key}");
    let answer = gemini_post(&client, edge, &path, body.clone()).await;
    assert_eq!(answer.0, StatusCode::OK, "{answer:?}");
    assert_eq!(
        json(&answer)["candidates"][0]["content"]["parts"][0]["text"],
        providers::TEXT
    );
    let sent = &google_mock.received()[0];
    assert_eq!(
        sent.path,
        format!("/v1beta/models/{GEMINI}-google:generateContent")
    );
    assert_eq!(sent.headers["x-goog-api-key"], "sk-provider-google");

    let path = format!("/v1beta/models/{GEMINI}:streamGenerateContent?alt=sse&key={key}");
    let streamed = gemini_post(&client, edge, &path, body.clone()).await;
    assert_eq!(streamed.0, StatusCode::OK);
    let text = String::from_utf8_lossy(&streamed.2).into_owned();
    assert_eq!(text.matches("data: ").count(), 5, "{text}");
    assert_eq!(google_mock.received()[1].query, "alt=sse");

    // Usage is cumulative in Gemini's stream: the last figure, never a sum.
    let events = ai_events(&suite, &acme, 2).await;
    assert_eq!(events.len(), 2);
    for event in &events {
        assert_eq!(event.channel_id, channel_id);
        assert_eq!(
            event.completion_tokens,
            providers::completion_tokens(),
            "{event:?}"
        );
        assert_eq!(event.prompt_tokens, providers::PROMPT_TOKENS);
        assert!(!event.path.contains("key="));
    }
    for received in google_mock.received() {
        assert!(received.headers.get("authorization").is_none());
        assert!(!received.query.contains(&key), "{}", received.query);
    }

    let path = format!("/v1beta/models/nope:generateContent?key={key}");
    let unknown = gemini_post(&client, edge, &path, body.clone()).await;
    assert_eq!(unknown.0, StatusCode::NOT_FOUND);
    assert_eq!(json(&unknown)["error"]["status"], "NOT_FOUND");
    let path = format!("/v1beta/models/{GEMINI}:generateContent");
    let anonymous = gemini_post(&client, edge, &path, body).await;
    assert_eq!(anonymous.0, StatusCode::UNAUTHORIZED);
    assert_eq!(json(&anonymous)["error"]["status"], "UNAUTHENTICATED");
    suite.stop().await.unwrap();
}

async fn balance(suite: &TestSuite, tenant: &TenantFixture) -> (i64, i64) {
    use gateway_proto::quota::v1 as quota;
    let mut quota_admin = suite
        .quota_as(Credentials::bearer(&tenant.admin_token))
        .await;
    let answer = quota_admin
        .get_balance(quota::GetBalanceRequest {
            owner: admin_balance(tenant),
        })
        .await
        .unwrap()
        .into_inner();
    (answer.balance_micros, answer.reserved_micros)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_streams_never_overspend_a_balance() {
    let suite = TestSuite::start(Backend::Sqlite).await.unwrap();
    let acme = suite.tenant("acme").await;
    let (upstream, _provider) = mock::start(Behaviour::Answer).await;
    channel(&suite, &acme, "only", upstream, 1).await;
    price(&suite, &acme).await;
    // Each request is estimated at about 60 micro-USD and costs 62: the
    // balance covers ten.
    credit(&suite, &acme, 600).await;
    let key = key(&suite, &acme, None).await;
    let (client, edge) = (http_client(), suite.addresses.edge);
    until_served(&client, edge, &key).await;
    let small = serde_json::json!({"max_tokens": 5});
    let requests: Vec<_> = (0..50)
        .map(|_| {
            let (client, key, body) = (client.clone(), key.clone(), chat(true, small.clone()));
            tokio::spawn(async move { post(&client, edge, Some(&key), body).await.0 })
        })
        .collect();
    let mut served = 0;
    for request in requests {
        let status = request.await.unwrap();
        assert!(
            status == StatusCode::OK || status == StatusCode::PAYMENT_REQUIRED,
            "{status}"
        );
        served += usize::from(status == StatusCode::OK);
    }
    assert!((1..=10).contains(&served), "{served} served");
    // Every served stream is billed from its real usage once it ends.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let (left, reserved) = loop {
        let (left, reserved) = balance(&suite, &acme).await;
        if reserved == 0 || std::time::Instant::now() > deadline {
            break (left, reserved);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(reserved, 0, "every hold settled");
    let one_request = cost(providers::PROMPT_TOKENS, providers::completion_tokens());
    assert_eq!(left, 600 - i64::try_from(served).unwrap() * one_request);
    assert!(
        left >= -one_request,
        "overspent by more than one request: {left}"
    );
    let events = ai_events(&suite, &acme, served).await;
    assert_eq!(events.len(), served);
    assert!(
        events
            .iter()
            .all(|event| event.stream && event.cost_micros == one_request)
    );
    suite.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_without_usable_usage_are_billed_from_a_count() {
    let suite = TestSuite::start(Backend::Sqlite).await.unwrap();
    let acme = suite.tenant("acme").await;
    let (upstream, provider) = mock::start(Behaviour::NoUsage).await;
    channel(&suite, &acme, "only", upstream, 1).await;
    price(&suite, &acme).await;
    credit(&suite, &acme, 10_000_000).await;
    let key = key(&suite, &acme, None).await;
    let (client, edge) = (http_client(), suite.addresses.edge);
    until_served(&client, edge, &key).await;
    assert_eq!(
        post(
            &client,
            edge,
            Some(&key),
            chat(false, serde_json::json!({}))
        )
        .await
        .0,
        StatusCode::OK
    );
    provider.set(Behaviour::MalformedUsage);
    assert_eq!(
        post(&client, edge, Some(&key), chat(true, serde_json::json!({})))
            .await
            .0,
        StatusCode::OK
    );
    let events = ai_events(&suite, &acme, 2).await;
    assert_eq!(events.len(), 2);
    for event in &events {
        // The delivered text counted with the tokenizer; the prompt as
        // estimated; never the provider's nonsense.
        assert_eq!(event.completion_tokens, 5, "{event:?}");
        assert!(event.estimated, "counted by the edge");
        assert!(
            event.prompt_tokens > 0 && event.prompt_tokens < 50,
            "{event:?}"
        );
        assert!(event.cost_micros > 0);
    }
    suite.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_that_captures_bodies_keeps_them_for_the_audit_log() {
    let suite = TestSuite::start(Backend::Sqlite).await.unwrap();
    let acme = suite.tenant("acme").await;
    let (upstream, _provider) = mock::start(Behaviour::Answer).await;
    let channel_id = channel(&suite, &acme, "only", upstream, 1).await;
    let mut catalog = suite
        .catalog_as(Credentials::bearer(&acme.admin_token))
        .await;
    catalog
        .update_channel(cat::UpdateChannelRequest {
            channel: Some(cat::Channel {
                id: channel_id,
                body_capture: Some(cat::BodyCapture {
                    enabled: true,
                    max_bytes: 64,
                }),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["body_capture".to_owned()],
            }),
            secret: None,
        })
        .await
        .unwrap();
    price(&suite, &acme).await;
    credit(&suite, &acme, 10_000_000).await;
    let key = key(&suite, &acme, None).await;
    let (client, edge) = (http_client(), suite.addresses.edge);
    until_served(&client, edge, &key).await;
    // The update may reach the edge after the channel did: until captured.
    let mut usage_client = suite.usage_as(Credentials::bearer(&acme.admin_token)).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let bodies = loop {
        let answer = post(&client, edge, Some(&key), chat(true, serde_json::json!({}))).await;
        assert_eq!(answer.0, StatusCode::OK);
        let request_id = answer.1["x-request-id"].to_str().unwrap().to_owned();
        let events = ai_events(&suite, &acme, 1).await;
        let event = events.iter().find(|event| event.request_id == request_id);
        if let Some(event) = event {
            let found = usage_client
                .get_log_bodies(usage::GetLogBodiesRequest {
                    id: event.event_id.clone(),
                })
                .await;
            if let Ok(found) = found {
                break found.into_inner().bodies.unwrap();
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "bodies never captured"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        String::from_utf8_lossy(&bodies.request_body).starts_with("{\""),
        "{bodies:?}"
    );
    assert!(bodies.request_truncated && bodies.request_body.len() == 64);
    assert!(String::from_utf8_lossy(&bodies.response_body).starts_with("data: "));
    assert!(bodies.response_truncated && bodies.response_body.len() == 64);
    assert!(
        bodies
            .request_headers
            .iter()
            .all(|header| header.name != "authorization")
    );
    suite.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_balance_lowers_max_tokens_so_the_provider_stops_in_budget() {
    let suite = TestSuite::start(Backend::Sqlite).await.unwrap();
    let acme = suite.tenant("acme").await;
    let (upstream, provider) = mock::start(Behaviour::Answer).await;
    channel(&suite, &acme, "only", upstream, 1).await;
    price(&suite, &acme).await;
    // 1000 micro-USD: not the default 4096 answer tokens (about 33,000),
    // but about 120 at 8 micro-USD each after the prompt.
    credit(&suite, &acme, 1_000).await;
    let key = key(&suite, &acme, None).await;
    let (client, edge) = (http_client(), suite.addresses.edge);
    until_served(&client, edge, &key).await;
    let answer = post(
        &client,
        edge,
        Some(&key),
        chat(false, serde_json::json!({})),
    )
    .await;
    assert_eq!(answer.0, StatusCode::OK, "{answer:?}");
    let sent = provider.received()[0].body["max_tokens"].as_i64().unwrap();
    assert!((100..=125).contains(&sent), "max_tokens sent: {sent}");
    let (left, _) = balance(&suite, &acme).await;
    assert!(left >= 0, "{left}");
    suite.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_token_rule_refuses_before_the_provider_is_called() {
    use gateway_proto::quota::v1 as quota;
    let suite = TestSuite::start(Backend::Sqlite).await.unwrap();
    let acme = suite.tenant("acme").await;
    let (upstream, provider) = mock::start(Behaviour::Answer).await;
    channel(&suite, &acme, "only", upstream, 1).await;
    price(&suite, &acme).await;
    let mut identity = suite
        .identity_as(Credentials::bearer(&acme.admin_token))
        .await;
    let group = identity
        .create_group(id::CreateGroupRequest {
            group: Some(id::Group {
                name: "team".to_owned(),
                priority: 1,
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .group
        .unwrap();
    identity
        .add_group_member(id::AddGroupMemberRequest {
            group_id: group.id.clone(),
            user_id: acme.admin_id.clone(),
        })
        .await
        .unwrap();
    let mut quota_admin = suite.quota_as(Credentials::bearer(&acme.admin_token)).await;
    quota_admin
        .create_rate_limit_rule(quota::CreateRateLimitRuleRequest {
            rate_limit_rule: Some(quota::RateLimitRule {
                group_id: group.id.clone(),
                name: "team tokens".to_owned(),
                dimension: quota::LimitDimension::Tokens.into(),
                window: quota::LimitWindow::Minute.into(),
                limit: 70,
                enabled: true,
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    // A group key: limited by the group's rules, no balance.
    let key = identity
        .create_api_key(id::CreateApiKeyRequest {
            api_key: Some(id::ApiKey {
                name: "team".to_owned(),
                group_id: Some(group.id.clone()),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .key;
    let (client, edge) = (http_client(), suite.addresses.edge);
    until_served(&client, edge, &key).await;
    // Each request reserves about 50 tokens and uses 16: a few pass,
    // then the rule refuses.
    let small = serde_json::json!({"max_tokens": 40});
    // Clear of a minute's end, so the rule's window cannot turn over
    // between the refusal and the retry.
    let second = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        % 60;
    if second > 40 {
        tokio::time::sleep(Duration::from_secs(61 - second)).await;
    }
    let (mut refused, mut served) = (None, 0);
    for _ in 0..10 {
        let answer = post(&client, edge, Some(&key), chat(false, small.clone())).await;
        if answer.0 != StatusCode::OK {
            refused = Some(answer);
            break;
        }
        served += 1;
    }
    let refused = refused.expect("the token rule never refused");
    assert_eq!(refused.0, StatusCode::TOO_MANY_REQUESTS, "{refused:?}");
    assert_eq!(json(&refused)["error"]["type"], "rate_limit_error");
    assert!(refused.1.contains_key("retry-after"));
    assert!(served >= 1, "the first request was refused");
    assert_eq!(
        provider.received().len(),
        served,
        "refused before the provider"
    );
    // Refused before the provider, again. A retry may still be admitted
    // once: when the rule refused, an earlier answer's commit (actual
    // tokens, below its estimate) may not have landed yet.
    let mut refused_again = false;
    for _ in 0..3 {
        let again = post(&client, edge, Some(&key), chat(false, small.clone())).await;
        if again.0 == StatusCode::TOO_MANY_REQUESTS {
            refused_again = true;
            break;
        }
        assert_eq!(again.0, StatusCode::OK, "{again:?}");
        served += 1;
    }
    assert!(refused_again, "the rule stopped refusing");
    assert_eq!(
        provider.received().len(),
        served,
        "refused before the provider"
    );
    suite.stop().await.unwrap();
}

/// An OpenAI channel whose provider must answer, and keep sending, within
/// `read_ms`.
async fn timed_channel(
    suite: &TestSuite,
    tenant: &TenantFixture,
    name: &str,
    upstream: SocketAddr,
    priority: i32,
    read_ms: i32,
) -> String {
    let channel = cat::Channel {
        provider: cat::Provider::Openai.into(),
        models: vec![MODEL.to_owned()],
        timeouts: Some(cat::Timeouts {
            read: Some(prost_types::Duration {
                seconds: 0,
                nanos: read_ms * 1_000_000,
            }),
            ..Default::default()
        }),
        ..channel_named(name, upstream, priority)
    };
    create_channel(suite, tenant, channel).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_provider_is_failed_over_and_a_stalled_stream_is_cut_and_billed() {
    let suite = TestSuite::start(Backend::Sqlite).await.unwrap();
    let acme = suite.tenant("acme").await;
    let (slow, slow_mock) = mock::start(Behaviour::SlowFirstByte(Duration::from_secs(5))).await;
    let (good, good_mock) = mock::start(Behaviour::Answer).await;
    let slow_id = timed_channel(&suite, &acme, "slow", slow, 5, 300).await;
    let good_id = timed_channel(&suite, &acme, "good", good, 1, 300).await;
    price(&suite, &acme).await;
    credit(&suite, &acme, 10_000_000).await;
    let key = key(&suite, &acme, None).await;
    let (client, edge) = (http_client(), suite.addresses.edge);
    until_served(&client, edge, &key).await;

    // The preferred channel does not answer in time: the client still
    // gets the other's answer, and never knows.
    let answer = post(
        &client,
        edge,
        Some(&key),
        chat(false, serde_json::json!({})),
    )
    .await;
    assert_eq!(answer.0, StatusCode::OK, "{answer:?}");
    assert_eq!(
        json(&answer)["choices"][0]["message"]["content"],
        providers::TEXT
    );
    assert_eq!(
        (slow_mock.received().len(), good_mock.received().len()),
        (1, 1)
    );

    // A stream that stops mid-way is cut after the read timeout; what was
    // delivered is billed, marked estimated.
    good_mock.set(Behaviour::CutMidStream);
    let started = std::time::Instant::now();
    let request = Request::post(format!("http://{edge}/v1/chat/completions"))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {key}"))
        .body(Full::new(Bytes::from(chat(true, serde_json::json!({})).to_string())).boxed())
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await;
    assert!(
        body.is_err(),
        "the client sees a broken stream, not a clean end"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "cut by the read timeout"
    );
    let events = ai_events(&suite, &acme, 2).await;
    let first = events.iter().find(|event| !event.stream).unwrap();
    assert_eq!(first.channel_id, good_id);
    assert_eq!(first.attempts, 2);
    assert_ne!(first.channel_id, slow_id);
    let cut = events.iter().find(|event| event.stream).unwrap();
    assert!(cut.estimated, "{cut:?}");
    assert_eq!(cut.completion_tokens, 1, "the one word delivered");
    assert!(cut.cost_micros > 0);
    suite.stop().await.unwrap();
}
