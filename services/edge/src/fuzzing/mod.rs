//! Entry points for the fuzz targets in `services/edge/fuzz/` and for the
//! test that replays their corpus: the path normaliser, the route matcher,
//! the SSE parser, the usage extractors, the AI adapters and decoders, the
//! header readers, JWTs, the configuration and the usage spool's records
//! must never panic, whatever bytes arrive.

mod inputs;

pub use inputs::{JWT_SECRET, ai_request, config, headers, jwt, spool};

use std::sync::OnceLock;

use gateway_proto::catalog::v1 as pb;

use crate::policy::routes::{Route, Routes};

fn rule(kind: pb::MatchKind, pattern: &str, rewrite: &str) -> pb::RouteRule {
    pb::RouteRule {
        match_kind: kind.into(),
        pattern: pattern.to_owned(),
        rewrite: rewrite.to_owned(),
        ..pb::RouteRule::default()
    }
}

/// A route table with every kind of rule.
fn table() -> &'static Routes {
    static TABLE: OnceLock<Routes> = OnceLock::new();
    TABLE.get_or_init(|| {
        let rules = [
            rule(pb::MatchKind::Exact, "/health", ""),
            rule(pb::MatchKind::Prefix, "/v1", ""),
            rule(
                pb::MatchKind::Parameterised,
                "/users/{id}/orders/{order}",
                "/v2/{id}/{order}/{missing}",
            ),
            rule(
                pb::MatchKind::Regex,
                "/items/(?P<sku>[^/]+)/(?P<rest>.*)",
                "/c/{sku}/{rest}",
            ),
            rule(pb::MatchKind::Prefix, "/", ""),
        ];
        Routes::new(
            rules
                .iter()
                .enumerate()
                .filter_map(|(index, rule)| Route::compile(rule, index))
                .collect(),
        )
    })
}

/// Normalises `data` as a request path and, if that succeeds, routes and
/// rewrites what is below `/{tenant}/{api}`.
pub fn path_and_routes(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = format!("/t/a/{text}");
    let Ok(normalized) = crate::path::normalize(&path) else {
        return;
    };
    let rest = normalized
        .splitn(4, '/')
        .nth(3)
        .map_or("/".to_owned(), |rest| format!("/{rest}"));
    for method in [http::Method::GET, http::Method::POST] {
        if let Some(matched) = table().find(&method, &rest) {
            let _ = matched.upstream_path(&rest);
        }
    }
}

/// Compiles `data` as a route pattern of each kind and matches a few paths.
pub fn patterns(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (pattern, path) = text.split_once('\n').unwrap_or((text, "/x"));
    for kind in [
        pb::MatchKind::Exact,
        pb::MatchKind::Prefix,
        pb::MatchKind::Parameterised,
        pb::MatchKind::Regex,
    ] {
        let rules = Routes::new(
            Route::compile(&rule(kind, pattern, pattern), 0)
                .into_iter()
                .collect(),
        );
        if let Some(matched) = rules.find(&http::Method::GET, path) {
            let _ = matched.upstream_path(path);
        }
    }
}

/// Parses `data` as an SSE stream split at a point the first byte picks,
/// and reads usage from every event's data for each protocol; the events'
/// bytes must add up to what was complete.
pub fn sse_and_usage(data: &[u8]) {
    use crate::ai::usage::{Protocol, Reported};
    let split = data
        .first()
        .map_or(0, |byte| usize::from(*byte))
        .min(data.len());
    let (head, tail) = data.split_at(split);
    let mut parser = crate::ai::sse::Parser::new(4096);
    let mut reported = Reported::default();
    let mut forwarded = 0;
    for chunk in [head, tail] {
        let Ok(events) = parser.push(chunk) else {
            return;
        };
        for event in events {
            forwarded += event.raw.len();
            for protocol in [Protocol::OpenAi, Protocol::Anthropic, Protocol::Gemini] {
                reported.observe_data(protocol, &event.data);
            }
        }
    }
    assert_eq!(forwarded + parser.pending().len(), data.len(), "bytes lost");
}

/// Reads `data` as JSON and puts it through every adapter: as a request
/// of each protocol decoded for, and encoded to, each other; as an answer
/// and as stream events of each provider, re-encoded for each client; and
/// as embeddings requests. Whatever arrives, nothing may panic.
pub fn translation(data: &[u8]) {
    use crate::ai::translate::{self, Translator};
    use crate::ai::usage::Protocol;
    const PROTOCOLS: [Protocol; 4] = [
        Protocol::OpenAi,
        Protocol::Anthropic,
        Protocol::Gemini,
        Protocol::Responses,
    ];
    let Ok(document) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if let serde_json::Value::Object(body) = &document {
        for from in PROTOCOLS {
            let Ok(chat) = translate::decode_request(from, body, "fuzz") else {
                continue;
            };
            for to in PROTOCOLS {
                let _ = translate::encode_request(to, &chat, "m", "max_tokens");
            }
        }
    }
    for from in PROTOCOLS {
        let answer = translate::decode_answer(from, &document);
        for to in PROTOCOLS {
            let _ = translate::encode_answer(to, &answer, "m");
            let mut translator = Translator::new(from, to, "m", true);
            let mut out = Vec::new();
            translator.event(&document, &mut out);
            translator.event(&document, &mut out);
            translator.end(None, &mut out);
        }
    }
    for batch in [false, true] {
        if let Ok(embed) = crate::ai::embeddings::parse_gemini(data, "m", batch) {
            let _ = embed.upstream_body(Protocol::OpenAi, "m");
            let _ = embed.shape().translate_answer(&document, "m");
        }
    }
    if let Ok(embed) = crate::ai::embeddings::parse_openai(data) {
        let _ = embed.upstream_body(Protocol::Gemini, "m");
        let _ = embed.shape().translate_answer(&document, "m");
    }
}

/// A fuzz target's body: any bytes, never a panic.
pub type Target = fn(&[u8]);

/// Every fuzz target, by its name in `fuzz/Cargo.toml` and its corpus
/// directory.
pub const TARGETS: [(&str, Target); 9] = [
    ("path", path_and_routes),
    ("patterns", patterns),
    ("sse", sse_and_usage),
    ("translate", translation),
    ("ai_request", ai_request),
    ("headers", headers),
    ("jwt", jwt),
    ("config", config),
    ("spool", spool),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Replays the fuzz corpus checked in under `services/edge/fuzz/corpus`.
    #[test]
    fn the_fuzz_corpus_replays_without_panicking() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
        let mut replayed = 0;
        for (target, run) in TARGETS {
            let Ok(entries) = std::fs::read_dir(root.join(target)) else {
                panic!("no corpus for {target}");
            };
            let mut inputs = 0;
            for entry in entries.flatten() {
                run(&std::fs::read(entry.path()).unwrap());
                inputs += 1;
            }
            assert!(inputs >= 5, "{target}: only {inputs} corpus inputs");
            replayed += inputs;
        }
        assert!(replayed >= 60, "{replayed}");
    }

    /// A short random run on every test, beside the corpus.
    #[test]
    fn random_inputs_never_panic() {
        const ALPHABET: &[u8] = b"/.%2eEfFcC5\\{}()[]?*+^$|azAZ09-_~: \n\r\"";
        let mut rng = fastrand::Rng::with_seed(0x5eed);
        for _ in 0..20_000 {
            let length = rng.usize(0..40);
            let data: Vec<u8> = (0..length)
                .map(|_| ALPHABET[rng.usize(..ALPHABET.len())])
                .collect();
            path_and_routes(&data);
            patterns(&data);
            sse_and_usage(&data);
            headers(&data);
            jwt(&data);
            spool(&data);
        }
    }
}
