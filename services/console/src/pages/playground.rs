//! The playground: a chat through the edge with one of the user's keys,
//! streamed into the page as the model answers. The key is typed in (the
//! console never holds a key's plaintext) and used for this one request;
//! the page streams as HTML, so it works without JavaScript.

use std::convert::Infallible;

use axum::Form;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use maud::{Markup, PreEscaped, html};
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::AppState;
use crate::layout::{csrf, field, page};
use crate::session::Session;

/// Where the answer goes in the page: a comment no escaped input can
/// spell (a user's `<` is escaped).
const ANSWER: &str = "<!--answer-->";

fn chat_form(session: &Session, form: &ChatForm) -> Markup {
    html! {
        // A plain POST, so the answer streams into the page as it comes.
        form method="post" action="/playground" hx-boost="false" {
            (csrf(session))
            (field("key", "Your key (used for this request only, never stored)", "password", "", None))
            (field("model", "Model", "text", &form.model, None))
            div.field {
                label for="message" { "Message" }
                textarea id="message" name="message" rows="4" { (form.message) }
            }
            button type="submit" { "Send" }
        }
    }
}

pub async fn show(session: Session) -> Response {
    page(
        &session,
        "Playground",
        chat_form(&session, &ChatForm::default()),
    )
    .into_response()
}

#[derive(Debug, Default, Deserialize)]
pub struct ChatForm {
    #[serde(default)]
    key: String,
    #[serde(default)]
    model: String,
    #[serde(default)]
    message: String,
}

/// The page up to the answer, the answer as it streams, then the rest.
pub async fn send(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<ChatForm>,
) -> Response {
    let whole = page(
        &session,
        "Playground",
        html! {
            (chat_form(&session, &form))
            h2 { "Answer" }
            pre #answer aria-live="polite" { (PreEscaped(ANSWER)) }
        },
    )
    .markup
    .into_string();
    let (head, tail) = whole
        .split_once(ANSWER)
        .map_or((whole.clone(), String::new()), |(head, tail)| {
            (head.to_owned(), tail.to_owned())
        });
    let (sender, receiver) = mpsc::channel::<Result<Bytes, Infallible>>(16);
    let url = format!(
        "{}/v1/chat/completions",
        state.config.edge_url.trim_end_matches('/')
    );
    tokio::spawn(async move {
        let _ = sender.send(Ok(Bytes::from(head))).await;
        stream_answer(&url, &form, &sender).await;
        let _ = sender.send(Ok(Bytes::from(tail))).await;
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(receiver));
    (
        [(http::header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

/// Sends the chat and writes each delta of its stream, escaped, to `out`.
async fn stream_answer(url: &str, form: &ChatForm, out: &mpsc::Sender<Result<Bytes, Infallible>>) {
    let write = |text: String| async move {
        let escaped = html! { (text) }.into_string();
        out.send(Ok(Bytes::from(escaped))).await.is_ok()
    };
    let body = serde_json::json!({
        "model": form.model.trim(),
        "stream": true,
        "messages": [{"role": "user", "content": form.message}],
    });
    let request = http::Request::post(url)
        .header("authorization", format!("Bearer {}", form.key.trim()))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())));
    let Ok(request) = request else {
        write("The key cannot be sent in a header.".to_owned()).await;
        return;
    };
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let response = match client.request(request).await {
        Ok(response) => response,
        Err(error) => {
            write(format!("The edge did not answer: {error}")).await;
            return;
        }
    };
    let status = response.status();
    let mut body = response.into_body();
    let mut pending = String::new();
    while let Some(Ok(frame)) = body.frame().await {
        let Ok(data) = frame.into_data() else {
            continue;
        };
        pending.push_str(&String::from_utf8_lossy(&data));
        while let Some(end) = pending.find('\n') {
            let line: String = pending.drain(..=end).collect();
            let text = if status.is_success() {
                delta(&line)
            } else {
                Some(line)
            };
            if let Some(text) = text.filter(|text| !text.is_empty())
                && !write(text).await
            {
                return;
            }
        }
    }
    if !status.is_success() && !pending.is_empty() {
        write(pending).await;
    }
}

/// The text of one SSE line of a chat stream (`data: {...}`).
fn delta(line: &str) -> Option<String> {
    let data = line.trim().strip_prefix("data:")?.trim();
    let chunk: serde_json::Value = serde_json::from_str(data).ok()?;
    let content = chunk.get("choices")?.get(0)?.get("delta")?.get("content")?;
    content.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_are_read_from_chat_stream_lines() {
        let line = r#"data: {"choices":[{"index":0,"delta":{"content":"Hel"}}]}"#;
        assert_eq!(delta(line).as_deref(), Some("Hel"));
        assert_eq!(delta("data: [DONE]"), None);
        assert_eq!(delta(": keep-alive"), None);
        assert_eq!(delta(r#"data: {"choices":[{"delta":{}}]}"#), None);
    }
}
