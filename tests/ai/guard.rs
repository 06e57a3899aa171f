//! The stream budget guard, against a provider that ignores max tokens:
//! with money for more, the stream runs to its end on top-up
//! reservations; without, it is ended cleanly in the client's protocol at
//! what was reserved, billed for what was delivered, and the usage event
//! says so.

use super::*;

/// A streamed chat asking for 100 tokens, usage included.
fn hundred_tokens() -> serde_json::Value {
    chat(
        true,
        serde_json::json!({"max_tokens": 100, "stream_options": {"include_usage": true}}),
    )
}

fn words(stream: &[u8]) -> usize {
    String::from_utf8_lossy(stream).matches(" word").count()
}

/// Waits until the balance holds nothing (top-ups, the hold and any budget
/// lease released: a lease goes back within its 10 s lifetime).
async fn settled(suite: &TestSuite, tenant: &TenantFixture) -> i64 {
    for _ in 0..300 {
        let (balance, reserved) = balance(suite, tenant).await;
        if reserved == 0 {
            return balance;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the balance still holds reservations");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_past_its_budget_is_ended_cleanly_and_billed_for_what_was_delivered() {
    let suite = TestSuite::start(Backend::Sqlite).await.unwrap();
    let (client, edge) = (http_client(), suite.addresses.edge);

    // Money for 400 tokens and more: top-ups let the stream finish.
    let (roomy, _gpt, key_roomy) =
        served_tenant(&suite, "roomy", Behaviour::Verbose(400), 10_000_000).await;
    let whole = post(&client, edge, Some(&key_roomy), hundred_tokens()).await;
    assert_eq!(whole.0, StatusCode::OK);
    assert_eq!(words(&whole.2), 400, "the stream ran to its end");
    assert!(String::from_utf8_lossy(&whole.2).contains(r#""finish_reason":"stop""#));
    let events = ai_events(&suite, &roomy, 1).await;
    assert!(
        !events[0].estimated && events[0].completion_tokens == 400,
        "{events:?}"
    );
    assert_eq!(
        settled(&suite, &roomy).await,
        10_000_000 - events[0].cost_micros
    );

    // Money for about 120 tokens: the stream ends past the reserved 100.
    let (tight, _gpt, key_tight) =
        served_tenant(&suite, "tight", Behaviour::Verbose(400), 1_000).await;
    let cut = post(&client, edge, Some(&key_tight), hundred_tokens()).await;
    assert_eq!(cut.0, StatusCode::OK);
    let text = String::from_utf8_lossy(&cut.2).into_owned();
    let delivered = words(&cut.2);
    // The reserved 100, a tenth more of slack for the tokenizer's error.
    assert!((100..=120).contains(&delivered), "{delivered} words");
    assert!(text.contains(r#""finish_reason":"length""#), "{text}");
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    assert!(
        text.contains(r#""completion_tokens":"#),
        "the usage chunk asked for"
    );
    let events = ai_events(&suite, &tight, 1).await;
    let event = &events[0];
    assert!(event.estimated, "{event:?}");
    assert_eq!(event.finish_reason, "length");
    assert!(event.error_message.contains("budget guard"), "{event:?}");
    assert_eq!(event.completion_tokens, i64::try_from(delivered).unwrap());
    let left = settled(&suite, &tight).await;
    assert_eq!(left, 1_000 - event.cost_micros);
    assert!(left >= 0, "never overspent: {left}");
    suite.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_translated_stream_past_its_budget_ends_in_the_clients_protocol() {
    let suite = TestSuite::start(Backend::Sqlite).await.unwrap();
    let (client, edge) = (http_client(), suite.addresses.edge);
    let (tight, _gpt, key) = served_tenant(&suite, "tight", Behaviour::Verbose(400), 1_000).await;
    // An Anthropic client on the OpenAI channel.
    let body = serde_json::json!({"model": MODEL, "max_tokens": 100, "stream": true,
        "messages": [{"role": "user", "content": "Say hello."}]});
    let cut = anthropic_post(&client, edge, &key, body).await;
    assert_eq!(cut.0, StatusCode::OK);
    let text = String::from_utf8_lossy(&cut.2).into_owned();
    assert!((100..=120).contains(&words(&cut.2)), "{text}");
    assert!(text.contains(r#""stop_reason":"max_tokens""#), "{text}");
    assert!(
        text.trim_end()
            .ends_with(r#"data: {"type":"message_stop"}"#),
        "{text}"
    );
    assert!(settled(&suite, &tight).await >= 0);
    suite.stop().await.unwrap();
}
