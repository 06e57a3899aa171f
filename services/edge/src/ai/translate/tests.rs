//! Translation tests: requests survive encode then decode in every
//! protocol (seeded random conversations, within what each protocol can
//! say); each provider's recorded stream becomes a well-formed stream of
//! every client protocol; answers and refusals.

use serde_json::{Value, json};

use super::*;
use crate::ai::canonical::{
    Event, Finish, Image, Message, Part, ResponseFormat, Role, Tool, ToolCall, ToolChoice,
    ToolResult,
};
use crate::ai::sse::Parser;
use crate::ai::usage::{Reported, Tokens};

const PROTOCOLS: [Protocol; 3] = [Protocol::OpenAi, Protocol::Anthropic, Protocol::Gemini];

/// A random conversation in what every protocol can carry: user turns of
/// tool results then text and base64 images; assistant turns of text then
/// calls (ids in call order, as Gemini makes them up).
fn random_chat(rng: &mut fastrand::Rng) -> Chat {
    let words = [
        "hello",
        "weather",
        "Paris",
        "naïve café",
        "tools",
        "\"quoted\"",
        "日本",
    ];
    let text = |rng: &mut fastrand::Rng| {
        (0..rng.usize(1..5))
            .map(|_| words[rng.usize(..words.len())])
            .collect::<Vec<_>>()
            .join(" ")
    };
    let tools = ["get_weather", "lookup", "send_mail"];
    let mut chat = Chat {
        system: vec![text(rng)],
        max_tokens: Some(rng.i64(1..4000)),
        temperature: rng.bool().then(|| f64::from(rng.u8(0..10)) / 10.0),
        top_p: rng.bool().then_some(0.5),
        stop: if rng.bool() {
            vec!["END".to_owned()]
        } else {
            Vec::new()
        },
        tools: tools
            .iter()
            .map(|name| Tool {
                name: (*name).to_owned(),
                description: format!("the {name} tool"),
                parameters: json!({"type": "object", "properties": {"q": {"type": "string"}}}),
            })
            .collect(),
        tool_choice: match rng.u8(0..4) {
            0 => None,
            1 => Some(ToolChoice::Auto),
            2 => Some(ToolChoice::Required),
            _ => Some(ToolChoice::Named("lookup".to_owned())),
        },
        ..Chat::default()
    };
    let mut calls = 0;
    for turn in 0..rng.usize(1..6) {
        let mut parts = vec![Part::Text(text(rng))];
        if rng.u8(0..4) == 0 {
            parts.push(Part::Image(Image::Base64 {
                media_type: "image/png".to_owned(),
                data: "iVBORw0KGgo=".to_owned(),
            }));
        }
        for part in parts {
            chat.push(Role::User, part);
        }
        if turn % 2 == 1 {
            continue;
        }
        let first = calls;
        let mut said = vec![Part::Text(text(rng))];
        for _ in 0..rng.usize(1..3) {
            said.push(Part::ToolCall(ToolCall {
                id: format!("call_{calls}"),
                name: tools[calls % tools.len()].to_owned(),
                arguments: json!({"q": text(rng)}).to_string(),
            }));
            calls += 1;
        }
        for part in said {
            chat.push(Role::Assistant, part);
        }
        for call in first..calls {
            let result = ToolResult {
                call_id: format!("call_{call}"),
                name: tools[call % tools.len()].to_owned(),
                content: format!("result {call}"),
                is_error: false,
            };
            chat.push(Role::User, Part::ToolResult(result));
        }
    }
    chat
}

fn round_trip(protocol: Protocol, chat: &Chat) -> Chat {
    let encoded = encode_request(protocol, chat, &chat.model, "max_tokens").unwrap();
    let Value::Object(body) = encoded else {
        panic!("not an object")
    };
    let mut decoded = decode_request(protocol, &body, "test").unwrap();
    if protocol == Protocol::Gemini {
        // Gemini's model and streaming are in the path.
        decoded.model.clone_from(&chat.model);
        decoded.stream = chat.stream;
    }
    decoded
}

#[test]
fn requests_survive_encode_then_decode_in_every_protocol() {
    for seed in 0..300 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut chat = random_chat(&mut rng);
        chat.model = "m".to_owned();
        chat.stream = rng.bool();
        for protocol in PROTOCOLS {
            let mut expected = chat.clone();
            if protocol != Protocol::Anthropic && rng.bool() {
                expected.response_format = Some(ResponseFormat::JsonSchema {
                    name: "response".to_owned(),
                    schema: json!({"type": "object"}),
                });
            }
            let decoded = round_trip(protocol, &expected);
            assert_eq!(decoded, expected, "seed {seed}, {protocol:?}");
        }
    }
}

#[test]
fn what_a_provider_cannot_express_is_refused_with_the_reason() {
    let openai = |body: Value| {
        let Value::Object(body) = body else { panic!() };
        decode_request(Protocol::OpenAi, &body, "Anthropic")
    };
    let messages = json!([{"role": "user", "content": "hi"}]);
    let refused = openai(json!({"model": "m", "messages": messages, "n": 2})).unwrap_err();
    assert!(
        refused.0.contains("n > 1") && refused.0.contains("Anthropic"),
        "{refused:?}"
    );
    let refused = openai(json!({"model": "m", "messages": messages, "logprobs": true}));
    assert!(refused.unwrap_err().0.contains("'logprobs'"));
    let ignored = openai(json!({"model": "m", "messages": messages, "user": "u1"}));
    assert!(ignored.is_ok(), "harmless fields pass");

    let json_mode = Chat {
        response_format: Some(ResponseFormat::Json),
        ..Chat::default()
    };
    let refused = encode_request(Protocol::Anthropic, &json_mode, "c", "").unwrap_err();
    assert!(refused.0.contains("response_format"), "{refused:?}");
    let hot = Chat {
        temperature: Some(1.5),
        ..Chat::default()
    };
    assert!(encode_request(Protocol::Anthropic, &hot, "c", "").is_err());
    let linked = Chat {
        messages: vec![Message {
            role: Role::User,
            parts: vec![Part::Image(Image::Url(
                "https://example.com/a.png".to_owned(),
            ))],
        }],
        ..Chat::default()
    };
    let refused = encode_request(Protocol::Gemini, &linked, "g", "").unwrap_err();
    assert!(refused.0.contains("base64"), "{refused:?}");
    let Value::Object(body) = json!({"contents": [{"parts": [{"text": "x"}]}],
        "generationConfig": {"topK": 3}})
    else {
        panic!()
    };
    let refused = decode_request(Protocol::Gemini, &body, "OpenAI").unwrap_err();
    assert!(refused.0.contains("generationConfig.topK"), "{refused:?}");
}

#[test]
fn answers_carry_text_tool_calls_finish_and_usage_across_protocols() {
    let answer = Answer {
        id: String::new(),
        model: "provider-model".to_owned(),
        parts: vec![
            Part::Text("Let me check.".to_owned()),
            Part::ToolCall(ToolCall {
                id: "call_0".to_owned(),
                name: "get_weather".to_owned(),
                arguments: r#"{"city":"Paris"}"#.to_owned(),
            }),
        ],
        finish: Finish::ToolCalls,
        usage: Some(Tokens {
            prompt: 82,
            completion: 17,
            cached: 64,
        }),
    };
    for protocol in PROTOCOLS {
        let encoded = encode_answer(protocol, &answer, "asked-model");
        let decoded = decode_answer(protocol, &encoded);
        assert_eq!(decoded.parts, answer.parts, "{protocol:?}: {encoded}");
        assert_eq!(decoded.finish, Finish::ToolCalls, "{protocol:?}");
        assert_eq!(decoded.usage, answer.usage, "{protocol:?}: {encoded}");
        let mut reported = Reported::default();
        reported.observe(protocol, &encoded);
        assert_eq!(
            reported.tokens, answer.usage,
            "billing reads it: {protocol:?}"
        );
    }
    let openai = encode_answer(Protocol::OpenAi, &answer, "asked-model");
    assert_eq!(openai["model"], "asked-model");
    assert_eq!(openai["choices"][0]["finish_reason"], "tool_calls");
    let anthropic = encode_answer(Protocol::Anthropic, &answer, "asked-model");
    assert_eq!(anthropic["stop_reason"], "tool_use");
    assert_eq!(
        anthropic["usage"]["input_tokens"], 18,
        "without the cache reads"
    );
}

fn fixture(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::OpenAi => include_str!("fixtures/openai.sse"),
        Protocol::Anthropic => include_str!("fixtures/anthropic.sse"),
        Protocol::Gemini => include_str!("fixtures/gemini.sse"),
        // No provider streams it to others.
        Protocol::Responses => "",
    }
}

/// A stream fed in small pieces, as a provider's chunks arrive: what the
/// client would receive, and the usage read on the way.
fn translate_stream(from: Protocol, to: Protocol, wants_usage: bool) -> String {
    let mut parser = Parser::new(1 << 20);
    let mut translator = Translator::new(from, to, "asked-model", wants_usage);
    let mut reported = Reported::default();
    let mut out = Vec::new();
    for piece in fixture(from).as_bytes().chunks(37) {
        for event in parser.push(piece).unwrap() {
            if let Ok(document) = serde_json::from_str::<Value>(&event.data) {
                reported.observe(from, &document);
                translator.event(&document, &mut out);
            }
        }
    }
    translator.end(reported.tokens, &mut out);
    String::from_utf8(out).unwrap()
}

/// The client's stream read back with its own protocol's decoder.
fn read_back(protocol: Protocol, stream: &str) -> (String, String, Vec<Finish>, Option<Tokens>) {
    let mut parser = Parser::new(1 << 20);
    let mut decoder = Translator::new(protocol, protocol, "m", true);
    let mut reported = Reported::default();
    let (mut text, mut arguments, mut finishes) = (String::new(), String::new(), Vec::new());
    for event in parser.push(stream.as_bytes()).unwrap() {
        let Ok(document) = serde_json::from_str::<Value>(&event.data) else {
            assert_eq!(event.data, "[DONE]");
            continue;
        };
        reported.observe(protocol, &document);
        for event in decoder.decode(&document) {
            match event {
                Event::Text(delta) => text.push_str(&delta),
                Event::ToolCallStart { name, .. } => arguments.push_str(&format!("{name}:")),
                Event::ToolCallArguments { delta, .. } => arguments.push_str(&delta),
                Event::Finish(finish) => finishes.push(finish),
            }
        }
    }
    (text, arguments, finishes, reported.tokens)
}

#[test]
fn every_providers_stream_becomes_a_well_formed_stream_of_every_protocol() {
    let usage = Some(Tokens {
        prompt: 82,
        completion: 17,
        cached: 64,
    });
    for from in PROTOCOLS {
        for to in PROTOCOLS {
            let stream = translate_stream(from, to, true);
            let (text, arguments, finishes, tokens) = read_back(to, &stream);
            let case = format!("{from:?} -> {to:?}:\n{stream}");
            assert_eq!(text, "Let me check.", "{case}");
            assert_eq!(arguments, r#"get_weather:{"city":"Paris"}"#, "{case}");
            assert_eq!(finishes, [Finish::ToolCalls], "{case}");
            assert_eq!(tokens, usage, "{case}");
        }
    }
}

#[test]
fn each_stream_opens_and_closes_as_its_sdk_expects() {
    let anthropic = translate_stream(Protocol::OpenAi, Protocol::Anthropic, true);
    let names: Vec<&str> = anthropic
        .lines()
        .filter_map(|line| line.strip_prefix("event: "))
        .collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    let openai = translate_stream(Protocol::Anthropic, Protocol::OpenAi, false);
    assert!(openai.starts_with("data: {") && openai.contains(r#""role":"assistant""#));
    assert!(openai.ends_with("data: [DONE]\n\n"));
    assert!(
        !openai.contains("prompt_tokens"),
        "no usage chunk unless asked"
    );
    let gemini = translate_stream(Protocol::Anthropic, Protocol::Gemini, false);
    let last = gemini.trim_end().lines().last().unwrap();
    assert!(last.contains(r#""finishReason":"STOP""#) && last.contains("usageMetadata"));
}

#[test]
fn a_responses_request_is_read_into_the_canonical_chat() {
    let Value::Object(body) = json!({"model": "m", "instructions": "Be brief.", "max_output_tokens": 64,
        "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}}},
        "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}],
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "Weather?"},
                    {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}]},
                  {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"},
                  {"type": "function_call_output", "call_id": "c1", "output": "sunny"}]})
    else {
        panic!()
    };
    let chat = decode_request(Protocol::Responses, &body, "Anthropic").unwrap();
    assert_eq!(chat.system, ["Be brief."]);
    assert_eq!(chat.max_tokens, Some(64));
    assert_eq!(chat.tools[0].name, "get_weather");
    assert!(matches!(
        chat.response_format,
        Some(ResponseFormat::JsonSchema { .. })
    ));
    assert_eq!(chat.messages.len(), 3, "{chat:?}");
    assert!(
        matches!(&chat.messages[2].parts[0], Part::ToolResult(result)
        if result.name == "get_weather" && result.content == "sunny")
    );
    let Value::Object(chained) = json!({"model": "m", "input": "x", "previous_response_id": "r"})
    else {
        panic!()
    };
    let refused = decode_request(Protocol::Responses, &chained, "Gemini").unwrap_err();
    assert!(refused.0.contains("previous_response_id"), "{refused:?}");
}

#[test]
fn streams_become_responses_events_in_the_order_the_sdk_reads_them() {
    let stream = translate_stream(Protocol::Anthropic, Protocol::Responses, true);
    let names: Vec<&str> = stream
        .lines()
        .filter_map(|line| line.strip_prefix("event: "))
        .collect();
    assert_eq!(
        names,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed"
        ]
    );
    let last: Value = serde_json::from_str(
        stream
            .trim_end()
            .lines()
            .last()
            .and_then(|line| line.strip_prefix("data: "))
            .unwrap(),
    )
    .unwrap();
    let mut reported = Reported::default();
    reported.observe(Protocol::Responses, &last);
    assert_eq!(reported.tokens.map(|tokens| tokens.cached), Some(64));
    assert_eq!(
        last["response"]["output"][1]["arguments"],
        r#"{"city":"Paris"}"#
    );
    let answer = decode_answer(Protocol::Responses, &last["response"]);
    assert_eq!(answer.finish, Finish::ToolCalls);
    assert_eq!(answer.text(), "Let me check.");
}
