//! The frame of every page (navigation by role, the signed-in user, a
//! notice), the shared form parts, and how a service's refusal reads.

use axum::response::{Html, IntoResponse, Redirect, Response};
use http::StatusCode;
use maud::{DOCTYPE, Markup, html};

use crate::session::Session;

/// A page: rendered markup with its status.
pub struct Page {
    pub status: StatusCode,
    pub markup: Markup,
}

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        (self.status, Html(self.markup.into_string())).into_response()
    }
}

/// The sections a role sees in the navigation (the services still decide
/// what each page may show).
fn sections(session: &Session) -> Vec<(&'static str, &'static str)> {
    let mut sections = vec![
        ("/", "Dashboard"),
        ("/keys", "Keys"),
        ("/logs", "Logs"),
        ("/balance", "Balance"),
        ("/playground", "Playground"),
    ];
    if session.is_admin() {
        sections.extend([
            ("/apis", "APIs"),
            ("/channels", "Channels"),
            ("/vouchers", "Vouchers"),
            ("/users", "Users"),
            ("/groups", "Groups"),
            ("/limits", "Limits"),
        ]);
    }
    sections.push(("/password", "Password"));
    sections
}

const HTMX_CONFIG: &str = r#"{"includeIndicatorStyles": false, "allowEval": false, "allowScriptTags": false, "responseHandling": [{"code": "204", "swap": false}, {"code": "...", "swap": true}]}"#;

/// A whole page for a signed-in user.
pub fn page(session: &Session, title: &str, body: Markup) -> Page {
    page_with(StatusCode::OK, Some(session), title, body)
}

/// A whole page, with the navigation when someone is signed in.
pub fn page_with(status: StatusCode, session: Option<&Session>, title: &str, body: Markup) -> Page {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                // htmx within the CSP (no inline styles, no eval), and
                // pages with a refusal (4xx) swapped in like any other.
                meta name="htmx-config" content=(HTMX_CONFIG);
                title { (title) " · Gateway console" }
                link rel="stylesheet" href="/static/console.css";
                script src="/static/htmx.min.js" defer {}
                script src="/static/console.js" defer {}
            }
            // Links and forms load without a full page reload when
            // scripts run; every one works without them.
            body hx-boost="true" {
                header {
                    a.brand href="/" { "Gateway" }
                    @if let Some(session) = session {
                        nav aria-label="Sections" {
                            @for (href, name) in sections(session) {
                                a href=(href) { (name) }
                            }
                        }
                        form.inline method="post" action="/logout" {
                            (csrf(session))
                            span.who { (session.role) }
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    };
    Page { status, markup }
}

/// The hidden CSRF field every state-changing form carries.
pub fn csrf(session: &Session) -> Markup {
    html! { input type="hidden" name="csrf" value=(session.csrf); }
}

/// A labelled input; `error` is shown next to it.
pub fn field(name: &str, label: &str, kind: &str, value: &str, error: Option<&str>) -> Markup {
    html! {
        div.field {
            label for=(name) { (label) }
            input id=(name) name=(name) type=(kind) value=(value)
                aria-invalid=[error.map(|_| "true")];
            @if let Some(error) = error {
                p.error role="alert" { (error) }
            }
        }
    }
}

/// A notice above a page's content.
pub fn notice(kind: &str, text: &str) -> Markup {
    html! { p class=(format!("notice {kind}")) role="status" { (text) } }
}

/// Money in USD from micro-dollars, with its precision.
pub fn usd(micros: i64) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let micros = micros.unsigned_abs();
    format!("{sign}${}.{:06}", micros / 1_000_000, micros % 1_000_000)
}

/// How a service's refusal reaches the user: the page's status, and a
/// sentence; `None` when the session is no longer valid (expired or
/// revoked), which sends the user back to the login page.
pub fn refusal(status: &tonic::Status) -> Option<(StatusCode, String)> {
    use tonic::Code;
    let http = match status.code() {
        Code::Unauthenticated => return None,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unavailable | Code::DeadlineExceeded => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_GATEWAY,
    };
    let message = match status.code() {
        Code::PermissionDenied => format!("Not allowed: {}", status.message()),
        Code::Unavailable | Code::DeadlineExceeded => {
            "A service is unavailable; try again shortly.".to_owned()
        }
        _ => status.message().to_owned(),
    };
    Some((http, message))
}

/// Back to the login page.
pub fn signed_out() -> Response {
    Redirect::to("/login").into_response()
}

/// A page that only says why a service refused.
pub fn refused(session: &Session, title: &str, status: &tonic::Status) -> Response {
    match refusal(status) {
        Some((http, message)) => {
            page_with(http, Some(session), title, notice("error", &message)).into_response()
        }
        None => signed_out(),
    }
}

/// A page of `body`, or why a service refused to fill it.
pub fn shown(session: &Session, title: &str, body: Result<Markup, tonic::Status>) -> Response {
    match body {
        Ok(body) => page(session, title, body).into_response(),
        Err(status) => refused(session, title, &status),
    }
}

/// A service's refusal as a notice above a page; `None` when the session
/// is no longer valid.
pub fn refusal_notice(status: &tonic::Status) -> Option<Markup> {
    refusal(status).map(|(_, message)| notice("error", &message))
}

/// The form field an InvalidArgument names (`api.slug: ...` is `slug`),
/// and its message.
pub fn field_error(status: &tonic::Status) -> Option<(String, String)> {
    if status.code() != tonic::Code::InvalidArgument {
        return None;
    }
    let (path, message) = status.message().split_once(": ")?;
    let field = path.rsplit('.').next()?.split('[').next()?;
    Some((field.to_owned(), message.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_shown_in_usd_to_the_micro_dollar() {
        assert_eq!(usd(1_234_567), "$1.234567");
        assert_eq!(usd(0), "$0.000000");
        assert_eq!(usd(-5), "-$0.000005");
    }

    #[test]
    fn an_invalid_argument_names_its_field() {
        let status = tonic::Status::invalid_argument("api.upstreams[0].url: must be http(s)");
        assert_eq!(
            field_error(&status),
            Some(("url".to_owned(), "must be http(s)".to_owned()))
        );
        assert_eq!(
            field_error(&tonic::Status::not_found("api not found")),
            None
        );
    }

    #[test]
    fn markup_is_escaped() {
        let markup = field("name", "Name", "text", "<script>x</script>", Some("<b>"));
        let text = markup.into_string();
        assert!(!text.contains("<script>") && text.contains("&lt;script&gt;"));
        assert!(text.contains("&lt;b&gt;"));
    }
}
