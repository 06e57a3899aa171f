//! Embeddings through the edge: OpenAI's `/v1/embeddings` and Gemini's
//! `:embedContent` / `:batchEmbedContents`, each served natively and by
//! the other provider's channels, billed by input tokens.

use gateway_testkit::providers::embeddings::VECTOR;

use super::*;

const OPENAI_EMBED: &str = "embed-a";
const GEMINI_EMBED: &str = "embed-g";

fn vector() -> serde_json::Value {
    serde_json::json!(VECTOR)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_are_served_by_either_provider_and_billed_by_input_tokens() {
    let suite = TestSuite::start(Backend::Sqlite).await.unwrap();
    let acme = suite.tenant("acme").await;
    let (gpt, gpt_mock) = mock::start(Behaviour::Answer).await;
    let (google, google_mock) = gemini::start(Behaviour::Answer).await;
    let openai_channel = ("embed-openai", cat::Provider::Openai, OPENAI_EMBED);
    provider_channel(&suite, &acme, openai_channel, gpt, 1).await;
    let gemini_channel = ("embed-gemini", cat::Provider::Gemini, GEMINI_EMBED);
    provider_channel(&suite, &acme, gemini_channel, google, 1).await;
    model_price(&suite, &acme, OPENAI_EMBED).await;
    model_price(&suite, &acme, GEMINI_EMBED).await;
    credit(&suite, &acme, 10_000_000).await;
    let key = key(&suite, &acme, None).await;
    let (client, edge) = (http_client(), suite.addresses.edge);
    until_served_by(&client, edge, &key, &["openai", "gemini"]).await;
    let bearer = format!("Bearer {key}");
    let openai = [("authorization", bearer.as_str())];
    let gemini_key = [("x-goog-api-key", key.as_str())];

    // OpenAI's shape, natively and from a Gemini channel.
    for model in [OPENAI_EMBED, GEMINI_EMBED] {
        let body = serde_json::json!({"model": model, "input": ["hello", "world"]});
        let answer = post_json(&client, edge, "/v1/embeddings", &openai, body).await;
        assert_eq!(answer.0, StatusCode::OK, "{model}: {answer:?}");
        let body = json(&answer);
        assert_eq!(body["object"], "list");
        assert_eq!(body["data"].as_array().unwrap().len(), 2, "{body}");
        assert_eq!(body["data"][1]["embedding"], vector());
        assert_eq!(body["data"][1]["index"], 1);
        assert!(body["usage"]["prompt_tokens"].as_i64().unwrap() > 0);
    }
    let sent = &google_mock.received()[0];
    assert!(
        sent.path
            .ends_with("/models/embed-g-embed-gemini:batchEmbedContents")
    );
    assert_eq!(
        sent.body["requests"][1]["content"]["parts"][0]["text"],
        "world"
    );

    // Gemini's shapes, natively and from an OpenAI channel.
    let path = format!("/v1beta/models/{GEMINI_EMBED}:batchEmbedContents");
    let batch = serde_json::json!({"requests": [
        {"model": format!("models/{GEMINI_EMBED}"), "content": {"parts": [{"text": "hello"}]}}]});
    let answer = post_json(&client, edge, &path, &gemini_key, batch).await;
    assert_eq!(answer.0, StatusCode::OK, "{answer:?}");
    assert_eq!(json(&answer)["embeddings"][0]["values"], vector());
    let path = format!("/v1beta/models/{OPENAI_EMBED}:embedContent");
    let single = serde_json::json!({"content": {"parts": [{"text": "hello"}]}});
    let answer = post_json(&client, edge, &path, &gemini_key, single).await;
    assert_eq!(answer.0, StatusCode::OK, "{answer:?}");
    assert_eq!(json(&answer)["embedding"]["values"], vector());
    let sent = gpt_mock.received();
    assert_eq!(
        sent.last().unwrap().body["input"],
        serde_json::json!(["hello"])
    );
    assert_eq!(sent.last().unwrap().body["model"], "embed-a-embed-openai");

    // Billed by input tokens only; Gemini's figures are the edge's count.
    let events = ai_events(&suite, &acme, 4).await;
    assert_eq!(events.len(), 4, "{events:?}");
    for event in &events {
        assert_eq!(event.completion_tokens, 0, "{event:?}");
        assert!(event.prompt_tokens > 0);
        assert_eq!(event.cost_micros, cost(event.prompt_tokens, 0), "{event:?}");
        assert_eq!(event.estimated, event.provider == "gemini", "{event:?}");
    }
    let reported = events.iter().filter(|event| event.provider == "openai");
    assert!(
        reported
            .clone()
            .all(|event| event.prompt_tokens == providers::PROMPT_TOKENS)
    );
    assert_eq!(reported.count(), 2);
    suite.stop().await.unwrap();
}
