//! The CSRF guard in front of every handler: a POST of a signed-in
//! session must carry that session's token in its `csrf` form field, or
//! it is refused before any handler runs (so no new form can forget it).
//! Logging in and signing up start a session, so they need none.

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use http::{Method, StatusCode};

use crate::AppState;
use crate::session::{self, Session};

/// The largest form the console reads (the playground's message is the
/// longest field).
const MAX_FORM_BYTES: usize = 1 << 20;

pub async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let open = matches!(request.uri().path(), "/login" | "/signup");
    if request.method() != Method::POST || open {
        return next.run(request).await;
    }
    let session = session::cookie(request.headers(), session::COOKIE)
        .and_then(|token| Session::from_token(token, &state.csrf_key));
    // Without a session the handler sends the browser to the login page.
    let Some(session) = session else {
        return next.run(request).await;
    };
    let (parts, body) = request.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_FORM_BYTES).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "the form is too large").into_response();
    };
    let submitted = form_urlencoded::parse(&bytes)
        .find(|(name, _)| name == "csrf")
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default();
    if !session.csrf_matches(&submitted) {
        return forbidden(&session);
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// A form without this session's CSRF token: refused, nothing done.
fn forbidden(session: &Session) -> Response {
    let message = "This form has expired; reload the page and try again.";
    let body = crate::layout::notice("error", message);
    crate::layout::page_with(StatusCode::FORBIDDEN, Some(session), "Refused", body).into_response()
}
