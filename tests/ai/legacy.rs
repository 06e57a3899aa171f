//! The legacy `POST /v1/completions` on OpenAI-compatible channels: JSON
//! and streamed, billed from the provider's usage; a model only other
//! providers serve is not found (they have no such API).

use super::*;

const INSTRUCT: &str = "instruct-test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_completions_reach_openai_compatible_channels_only() {
    let suite = TestSuite::start(Backend::Sqlite).await.unwrap();
    let acme = suite.tenant("acme").await;
    let (vllm, vllm_mock) = mock::start(Behaviour::Answer).await;
    let (claude, claude_mock) = anthropic::start(Behaviour::Answer).await;
    let compatible = ("vllm", cat::Provider::OpenaiCompatible, INSTRUCT);
    provider_channel(&suite, &acme, compatible, vllm, 1).await;
    let claude_channel = ("claude", cat::Provider::Anthropic, CLAUDE);
    provider_channel(&suite, &acme, claude_channel, claude, 1).await;
    model_price(&suite, &acme, INSTRUCT).await;
    model_price(&suite, &acme, CLAUDE).await;
    credit(&suite, &acme, 10_000_000).await;
    let key = key(&suite, &acme, None).await;
    let (client, edge) = (http_client(), suite.addresses.edge);
    until_served_by(&client, edge, &key, &["openai", "anthropic"]).await;
    let bearer = format!("Bearer {key}");
    let headers = [("authorization", bearer.as_str())];

    let plain = serde_json::json!({"model": INSTRUCT, "prompt": "Say hello.", "max_tokens": 20});
    let answer = post_json(&client, edge, "/v1/completions", &headers, plain).await;
    assert_eq!(answer.0, StatusCode::OK, "{answer:?}");
    assert_eq!(json(&answer)["choices"][0]["text"], providers::TEXT);
    let sent = &vllm_mock.received()[0];
    assert!(sent.path.ends_with("/v1/completions"), "{}", sent.path);
    assert_eq!(sent.body["model"], format!("{INSTRUCT}-vllm"));

    let streamed = serde_json::json!({"model": INSTRUCT, "prompt": ["Say hello."], "stream": true});
    let answer = post_json(&client, edge, "/v1/completions", &headers, streamed).await;
    assert_eq!(answer.0, StatusCode::OK);
    let text = String::from_utf8_lossy(&answer.2).into_owned();
    assert!(
        text.ends_with("data: [DONE]\n\n") && !text.contains("prompt_tokens"),
        "{text}"
    );
    let sent = &vllm_mock.received()[1];
    assert_eq!(sent.body["stream_options"]["include_usage"], true);

    let elsewhere = serde_json::json!({"model": CLAUDE, "prompt": "Say hello."});
    let answer = post_json(&client, edge, "/v1/completions", &headers, elsewhere).await;
    assert_eq!(answer.0, StatusCode::NOT_FOUND, "{answer:?}");
    assert!(claude_mock.received().is_empty());

    let events = ai_events(&suite, &acme, 2).await;
    assert_eq!(events.len(), 2, "{events:?}");
    for event in &events {
        assert!(!event.estimated, "{event:?}");
        assert_eq!(event.provider, "openai_compatible");
        assert_eq!(event.prompt_tokens, providers::PROMPT_TOKENS);
        assert_eq!(event.completion_tokens, providers::completion_tokens());
        assert_eq!(event.finish_reason, "stop");
    }
    suite.stop().await.unwrap();
}
