//! The edge's OpenAPI document against the live edge: served without a
//! key, and schemathesis (`.ci/run` installs it) driving every documented
//! operation with a valid key, to mock channels of all three providers
//! and an echo API, finds no 5xx from the edge and no answer the document
//! does not describe.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_is_served_without_a_key() {
    let suite = TestSuite::start(Backend::Sqlite).await.unwrap();
    let client = http_client();
    let request = Request::get(format!("http://{}/openapi.json", suite.addresses.edge))
        .body(edge_support::empty())
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert!(response.headers().contains_key("x-request-id"));
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, gateway_edge::openapi::DOCUMENT.as_bytes());
    suite.stop().await.unwrap();
}

/// The schemathesis CLI of the test venv; without it the test skips,
/// except under CI.
fn schemathesis() -> Option<String> {
    gateway_testkit::server_url("GATEWAY_TEST_SCHEMATHESIS")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_answer_outside_the_document() {
    let Some(schemathesis) = schemathesis() else {
        return;
    };
    let suite = TestSuite::start(Backend::Sqlite).await.unwrap();
    let (key, mocks) = every_protocol_served(&suite).await;
    let url = format!("http://{}/openapi.json", suite.addresses.edge);
    // Its cache of earlier failures goes to a fresh directory.
    let workdir = tempfile::tempdir().unwrap();
    let cwd = workdir.path().to_owned();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(schemathesis)
            .current_dir(cwd)
            .args([
                "run",
                &url,
                "--header",
                &format!("Authorization: Bearer {key}"),
            ])
            .args(["--checks", CHECKS, "--mode", "all", "--phases"])
            .args(["examples,coverage,fuzzing", "--max-examples", "25"])
            .args(["--max-time", "60", "--request-timeout", "10"])
            .args(["--seed", "1", "--workers", "1", "--no-color"])
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "schemathesis failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Not only refusals: the documented examples reached every provider.
    for (provider, mock) in ["openai", "anthropic", "gemini"].iter().zip(&mocks) {
        assert!(
            !mock.received().is_empty(),
            "nothing reached the {provider} mock"
        );
    }
    suite.stop().await.unwrap();
}

/// What the edge must hold to: no 5xx of its own, and every answer's
/// status, content type, headers and body as the document says.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_headers_conformance,response_schema_conformance";

/// acme with a priced channel per provider (the models the document's
/// examples name), the echo API, a credited balance, and a key the edge
/// already serves on every protocol.
async fn every_protocol_served(suite: &TestSuite) -> (String, [providers::Control; 3]) {
    let acme = suite.tenant("acme").await;
    let (gpt, gpt_mock) = mock::start(Behaviour::Answer).await;
    channel(suite, &acme, "gpt", gpt, 1).await;
    let (claude, claude_mock) = anthropic::start(Behaviour::Answer).await;
    let claude_channel = ("claude", cat::Provider::Anthropic, CLAUDE);
    provider_channel(suite, &acme, claude_channel, claude, 1).await;
    let (google, google_mock) = gemini::start(Behaviour::Answer).await;
    let google_channel = ("google", cat::Provider::Gemini, GEMINI);
    provider_channel(suite, &acme, google_channel, google, 1).await;
    price(suite, &acme).await;
    model_price(suite, &acme, CLAUDE).await;
    model_price(suite, &acme, GEMINI).await;
    credit(suite, &acme, 1_000_000_000).await;
    edge_support::register_api(suite, &acme, edge_support::start_upstream().await).await;
    let key = key(suite, &acme, None).await;
    let (client, edge) = (http_client(), suite.addresses.edge);
    until_served_by(&client, edge, &key, &["openai", "anthropic", "gemini"]).await;
    edge_support::first_served(&client, edge, "/acme/echo/", &key).await;
    (key, [gpt_mock, claude_mock, google_mock])
}
