//! A provider's whole (non-streamed) answer re-encoded in the client's
//! protocol. It must be read to its end first, within the edge's bound on
//! answers; an error answer becomes the client protocol's error.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::StatusCode;
use http_body::{Body, Frame};
use http_body_util::BodyExt as _;

use crate::ai::errors::{self, Kind};
use crate::ai::usage::Protocol;
use crate::body::{BoxError, EdgeBody};

/// Both ends of a translation, and what the client asked for.
#[derive(Debug, Clone)]
pub struct Ends {
    pub provider: Protocol,
    pub client: Protocol,
    /// The channel's model name, for an answer that names none (answers
    /// carry the model as the provider named it, as when passed through).
    pub model: String,
    pub request_id: String,
    /// Longest provider answer read.
    pub limit: usize,
    /// An embeddings answer (else a chat's).
    pub embeddings: Option<crate::ai::embeddings::Shape>,
}

/// What the client hears for a provider's error status: the client's
/// request was refused (400, 404, 413 keep their meaning), or the channel
/// itself is misconfigured (401, 403), which is the gateway's problem.
pub fn error_kind(status: StatusCode) -> Kind {
    match status.as_u16() {
        401 | 403 => Kind::Upstream,
        404 => Kind::UnknownModel,
        413 => Kind::TooLarge,
        429 => Kind::RateLimited,
        400..=499 => Kind::BadRequest,
        _ => Kind::Upstream,
    }
}

/// The body the client gets: the provider's answer, read whole and
/// re-encoded (`status` is the provider's).
pub fn translated(body: EdgeBody, status: StatusCode, ends: Ends) -> EdgeBody {
    let future = async move {
        let bytes = read_whole(body, ends.limit).await?;
        Ok(Bytes::from(translate(&bytes, status, &ends)))
    };
    Once {
        future: Some(Box::pin(future)),
    }
    .boxed_unsync()
}

async fn read_whole(mut body: EdgeBody, limit: usize) -> Result<Vec<u8>, BoxError> {
    let mut bytes = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            if bytes.len() + data.len() > limit {
                return Err(format!("the provider's answer is over {limit} bytes").into());
            }
            bytes.extend_from_slice(&data);
        }
    }
    Ok(bytes)
}

fn translate(bytes: &[u8], status: StatusCode, ends: &Ends) -> Vec<u8> {
    if !status.is_success() {
        let message = super::error_message(bytes)
            .unwrap_or_else(|| format!("the provider answered {status}"));
        let body = errors::body(ends.client, error_kind(status), &message, &ends.request_id);
        return body.to_string().into_bytes();
    }
    let Ok(answer) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        let message = "the provider's answer was not JSON";
        let body = errors::body(ends.client, Kind::Upstream, message, &ends.request_id);
        return body.to_string().into_bytes();
    };
    if let Some(shape) = &ends.embeddings {
        return shape
            .translate_answer(&answer, &ends.model)
            .to_string()
            .into_bytes();
    }
    let answer = super::decode_answer(ends.provider, &answer);
    let model = if answer.model.is_empty() {
        &ends.model
    } else {
        &answer.model
    };
    super::encode_answer(ends.client, &answer, model)
        .to_string()
        .into_bytes()
}

type Pending = Pin<Box<dyn Future<Output = Result<Bytes, BoxError>> + Send>>;

/// A body of one frame, made by a future.
struct Once {
    future: Option<Pending>,
}

impl Body for Once {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let Some(future) = self.future.as_mut() else {
            return Poll::Ready(None);
        };
        let made = ready!(future.as_mut().poll(cx));
        self.future = None;
        Poll::Ready(Some(made.map(Frame::data)))
    }

    fn is_end_stream(&self) -> bool {
        self.future.is_none()
    }
}
