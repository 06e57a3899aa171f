//! Any protocol to any provider, through the edge: OpenAI, Anthropic and
//! Gemini clients each served by channels of all three providers, JSON
//! and streamed, answered and billed in the client's own protocol; a
//! request the target cannot express refused in the client's protocol.

use super::*;

/// One channel of each provider, each serving its own model.
async fn every_provider(
    suite: &TestSuite,
    tenant: &TenantFixture,
) -> [(&'static str, &'static str, providers::Control); 3] {
    let (gpt, gpt_mock) = mock::start(Behaviour::Answer).await;
    let (claude, claude_mock) = anthropic::start(Behaviour::Answer).await;
    let (google, google_mock) = gemini::start(Behaviour::Answer).await;
    channel(suite, tenant, "gpt", gpt, 1).await;
    let claude_channel = ("claude", cat::Provider::Anthropic, CLAUDE);
    provider_channel(suite, tenant, claude_channel, claude, 1).await;
    let google_channel = ("google", cat::Provider::Gemini, GEMINI);
    provider_channel(suite, tenant, google_channel, google, 1).await;
    for model in [MODEL, CLAUDE, GEMINI] {
        model_price(suite, tenant, model).await;
    }
    [
        ("openai", MODEL, gpt_mock),
        ("anthropic", CLAUDE, claude_mock),
        ("gemini", GEMINI, google_mock),
    ]
}

/// A short chat in `protocol` for `model`.
async fn ask(
    client: &HttpClient,
    edge: SocketAddr,
    key: &str,
    (protocol, model, stream): (&str, &str, bool),
) -> Answer {
    let system = "Be brief.";
    match protocol {
        "openai" => {
            let body = serde_json::json!({"model": model, "stream": stream,
                "messages": [{"role": "system", "content": system},
                             {"role": "user", "content": "Say hello."}]});
            post(client, edge, Some(key), body).await
        }
        "anthropic" => {
            let body = serde_json::json!({"model": model, "stream": stream, "max_tokens": 100,
                "system": system, "messages": [{"role": "user", "content": "Say hello."}]});
            anthropic_post(client, edge, key, body).await
        }
        _ => {
            let method = if stream {
                "streamGenerateContent?alt=sse"
            } else {
                "generateContent"
            };
            let path = format!("/v1beta/models/{model}:{method}");
            let body = serde_json::json!({"systemInstruction": {"parts": [{"text": system}]},
                "contents": [{"role": "user", "parts": [{"text": "Say hello."}]}]});
            post_json(client, edge, &path, &[("x-goog-api-key", key)], body).await
        }
    }
}

/// The text of an answer or of a stream's events, read as `protocol`'s
/// clients read it.
pub(super) fn answer_text(protocol: &str, answer: &Answer) -> String {
    let body = String::from_utf8_lossy(&answer.2);
    let documents: Vec<serde_json::Value> = if body.starts_with('{') {
        vec![serde_json::from_str(&body).unwrap()]
    } else {
        body.lines()
            .filter_map(|line| line.strip_prefix("data: "))
            .filter_map(|data| serde_json::from_str(data).ok())
            .collect()
    };
    let piece = |document: &serde_json::Value| -> String {
        match protocol {
            "openai" => {
                let choice = &document["choices"][0];
                let text = choice["message"]["content"].as_str();
                text.or_else(|| choice["delta"]["content"].as_str())
                    .unwrap_or_default()
                    .to_owned()
            }
            "anthropic" => {
                let text = document["content"][0]["text"].as_str();
                text.or_else(|| document["delta"]["text"].as_str())
                    .unwrap_or_default()
                    .to_owned()
            }
            _ => document["candidates"][0]["content"]["parts"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|part| part["text"].as_str())
                .collect(),
        }
    };
    documents.iter().map(piece).collect()
}

/// What a provider's mock was sent looks like its own protocol.
fn in_protocol(provider: &str, sent: &providers::Received) -> bool {
    match provider {
        "openai" => sent.body["messages"][0]["role"] == "system",
        "anthropic" => sent.body["system"] == "Be brief." && sent.body["max_tokens"].is_i64(),
        _ => sent.body["contents"][0]["parts"][0]["text"] == "Say hello.",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_protocol_reaches_every_provider_and_is_billed_from_its_usage() {
    let suite = TestSuite::start(Backend::Sqlite).await.unwrap();
    let acme = suite.tenant("acme").await;
    let targets = every_provider(&suite, &acme).await;
    credit(&suite, &acme, 10_000_000).await;
    let key = key(&suite, &acme, None).await;
    let (client, edge) = (http_client(), suite.addresses.edge);
    until_served_by(&client, edge, &key, &["openai", "anthropic", "gemini"]).await;
    let mut asked = 0;
    for client_protocol in ["openai", "anthropic", "gemini"] {
        for (provider, model, mock) in &targets {
            for stream in [false, true] {
                let case = format!("{client_protocol} -> {provider}, stream {stream}");
                let before = mock.received().len();
                let answer = ask(&client, edge, &key, (client_protocol, model, stream)).await;
                assert_eq!(answer.0, StatusCode::OK, "{case}: {answer:?}");
                assert_eq!(
                    answer_text(client_protocol, &answer),
                    providers::TEXT,
                    "{case}"
                );
                let sent = mock.received();
                assert_eq!(sent.len(), before + 1, "{case}");
                assert!(
                    in_protocol(provider, &sent[before]),
                    "{case}: {:?}",
                    sent[before]
                );
                asked += 1;
            }
        }
    }
    let events = ai_events(&suite, &acme, asked).await;
    assert_eq!(events.len(), asked);
    for event in &events {
        assert!(!event.estimated, "the provider's own usage: {event:?}");
        assert_eq!(event.prompt_tokens, providers::PROMPT_TOKENS, "{event:?}");
        assert_eq!(event.completion_tokens, providers::completion_tokens());
        assert_eq!(
            event.cost_micros,
            cost(providers::PROMPT_TOKENS, providers::completion_tokens())
        );
    }
    for (provider, _, _) in &targets {
        let served = events.iter().filter(|event| event.provider == *provider);
        assert_eq!(served.count(), 6, "{provider}: every client, both ways");
    }

    // JSON mode cannot be said to Anthropic: OpenAI's 400, not dropped.
    let json_mode = serde_json::json!({"model": CLAUDE, "response_format": {"type": "json_object"},
        "messages": [{"role": "user", "content": "Say hello."}]});
    let refused = post(&client, edge, Some(&key), json_mode).await;
    assert_eq!(refused.0, StatusCode::BAD_REQUEST, "{refused:?}");
    let error = &json(&refused)["error"];
    assert_eq!(error["type"], "invalid_request_error");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("response_format"),
        "{error}"
    );
    suite.stop().await.unwrap();
}
