//! OpenAI's Responses API through the edge: natively on OpenAI channels,
//! translated for Anthropic and Gemini channels, JSON and streamed, billed
//! from the provider's usage.

use super::*;

fn output_text(answer: &Answer) -> String {
    let body = String::from_utf8_lossy(&answer.2);
    if body.starts_with('{') {
        let response: serde_json::Value = serde_json::from_str(&body).unwrap();
        return response["output"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|item| item["content"].as_array().into_iter().flatten())
            .filter_map(|part| part["text"].as_str())
            .collect();
    }
    body.lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .filter_map(|data| serde_json::from_str::<serde_json::Value>(data).ok())
        .filter(|event| event["type"] == "response.output_text.delta")
        .filter_map(|event| event["delta"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_are_served_natively_by_openai_and_translated_for_the_others() {
    let suite = TestSuite::start(Backend::Sqlite).await.unwrap();
    let acme = suite.tenant("acme").await;
    let (gpt, gpt_mock) = mock::start(Behaviour::Answer).await;
    let (claude, claude_mock) = anthropic::start(Behaviour::Answer).await;
    let (google, _google) = gemini::start(Behaviour::Answer).await;
    channel(&suite, &acme, "gpt", gpt, 1).await;
    let claude_channel = ("claude", cat::Provider::Anthropic, CLAUDE);
    provider_channel(&suite, &acme, claude_channel, claude, 1).await;
    let google_channel = ("google", cat::Provider::Gemini, GEMINI);
    provider_channel(&suite, &acme, google_channel, google, 1).await;
    for model in [MODEL, CLAUDE, GEMINI] {
        model_price(&suite, &acme, model).await;
    }
    credit(&suite, &acme, 10_000_000).await;
    let key = key(&suite, &acme, None).await;
    let (client, edge) = (http_client(), suite.addresses.edge);
    until_served_by(&client, edge, &key, &["openai", "anthropic", "gemini"]).await;
    let bearer = format!("Bearer {key}");
    let headers = [("authorization", bearer.as_str())];
    for model in [MODEL, CLAUDE, GEMINI] {
        for stream in [false, true] {
            let body = serde_json::json!({"model": model, "stream": stream,
                "instructions": "Be brief.", "input": "Say hello.", "max_output_tokens": 50});
            let answer = post_json(&client, edge, "/v1/responses", &headers, body).await;
            assert_eq!(answer.0, StatusCode::OK, "{model} {stream}: {answer:?}");
            assert_eq!(output_text(&answer), providers::TEXT, "{model} {stream}");
            if stream {
                let text = String::from_utf8_lossy(&answer.2).into_owned();
                assert!(text.starts_with("event: response.created"), "{text}");
                assert!(text.contains("event: response.completed"), "{text}");
            }
        }
    }
    let native = gpt_mock.received();
    assert!(
        native
            .iter()
            .all(|sent| sent.path.ends_with("/v1/responses"))
    );
    assert_eq!(native[0].body["input"], "Say hello.");
    assert_eq!(native[0].body["model"], format!("{MODEL}-gpt"));
    let translated = &claude_mock.received()[0];
    assert_eq!(translated.body["system"], "Be brief.");
    assert_eq!(translated.body["max_tokens"], 50);

    let events = ai_events(&suite, &acme, 6).await;
    assert_eq!(events.len(), 6, "{events:?}");
    for event in &events {
        assert!(!event.estimated, "{event:?}");
        assert_eq!(event.prompt_tokens, providers::PROMPT_TOKENS, "{event:?}");
        assert_eq!(event.completion_tokens, providers::completion_tokens());
    }

    // Chained responses live at OpenAI: not for a translated channel.
    let chained = serde_json::json!({"model": CLAUDE, "input": "And then?",
        "previous_response_id": "resp_123"});
    let refused = post_json(&client, edge, "/v1/responses", &headers, chained).await;
    assert_eq!(refused.0, StatusCode::BAD_REQUEST, "{refused:?}");
    assert!(
        json(&refused)["error"]["message"]
            .as_str()
            .unwrap()
            .contains("previous_response_id")
    );
    suite.stop().await.unwrap();
}
