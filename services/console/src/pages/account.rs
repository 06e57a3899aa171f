//! Sign up, log in (password or LDAP), log out, change password. Login
//! throttling is identity's: its refusal is shown as it comes.

use axum::Form;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use gateway_proto::identity::v1 as id;
use http::{HeaderValue, StatusCode, header};
use maud::{Markup, html};
use serde::Deserialize;

use crate::AppState;
use crate::clients::authed;
use crate::layout::{self, csrf, field, notice, page, page_with};
use crate::session::{self, Session};

#[derive(Debug, Default, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    tenant: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    method: String,
}

fn login_form(form: &LoginForm, error: Option<&str>) -> Markup {
    html! {
        @if let Some(error) = error { (notice("error", error)) }
        form method="post" action="/login" {
            (field("tenant", "Tenant", "text", &form.tenant, None))
            (field("username", "Username", "text", &form.username, None))
            (field("password", "Password", "password", "", None))
            div.field {
                label for="method" { "Sign in with" }
                select id="method" name="method" {
                    option value="password" selected[form.method != "ldap"] { "Password" }
                    option value="ldap" selected[form.method == "ldap"] { "LDAP / Active Directory" }
                }
            }
            button type="submit" { "Log in" }
        }
        p { "New here? " a href="/signup" { "Create a tenant" } }
    }
}

pub async fn login_page() -> Response {
    page_with(
        StatusCode::OK,
        None,
        "Log in",
        login_form(&LoginForm::default(), None),
    )
    .into_response()
}

pub async fn login(State(state): State<AppState>, Form(form): Form<LoginForm>) -> Response {
    let method = if form.method == "ldap" {
        id::LoginMethod::Ldap
    } else {
        id::LoginMethod::Unspecified
    };
    let request = id::LoginRequest {
        tenant_slug: form.tenant.trim().to_owned(),
        username: form.username.trim().to_owned(),
        password: form.password.clone(),
        method: method.into(),
    };
    match state.clients.identity().login(authed(None, request)).await {
        Ok(answer) => signed_in(&state, &answer.into_inner()),
        Err(status) => {
            let message = layout::refusal(&status).map_or_else(
                || "Wrong tenant, username or password.".to_owned(),
                |(_, message)| message,
            );
            let http = if status.code() == tonic::Code::ResourceExhausted {
                StatusCode::TOO_MANY_REQUESTS
            } else {
                StatusCode::UNAUTHORIZED
            };
            page_with(http, None, "Log in", login_form(&form, Some(&message))).into_response()
        }
    }
}

/// The session cookie for a login's token, and on to the dashboard.
fn signed_in(state: &AppState, answer: &id::LoginResponse) -> Response {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() as i64);
    let expires = answer
        .expire_time
        .as_ref()
        .map_or(now + 3600, |time| time.seconds);
    let cookie = session::set_cookie(
        Some(&answer.access_token),
        expires - now,
        state.config.secure_cookies,
    );
    with_cookie(Redirect::to("/").into_response(), &cookie)
}

fn with_cookie(mut response: Response, cookie: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

#[derive(Debug, Default, Deserialize)]
pub struct SignUpForm {
    #[serde(default)]
    tenant: String,
    #[serde(default)]
    tenant_name: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
}

fn signup_form(form: &SignUpForm, error: Option<(&str, &str)>) -> Markup {
    let at = |name: &str| {
        error
            .filter(|(field, _)| *field == name)
            .map(|(_, message)| message)
    };
    let general = error.filter(|(field, _)| {
        ![
            "tenant_slug",
            "slug",
            "tenant_name",
            "username",
            "email",
            "password",
        ]
        .contains(field)
    });
    html! {
        @if let Some((_, message)) = general { (notice("error", message)) }
        form method="post" action="/signup" {
            (field("tenant", "Tenant slug", "text", &form.tenant, at("tenant_slug").or(at("slug"))))
            (field("tenant_name", "Tenant name", "text", &form.tenant_name, at("tenant_name")))
            (field("username", "Username", "text", &form.username, at("username")))
            (field("email", "Email", "email", &form.email, at("email")))
            (field("password", "Password", "password", "", at("password")))
            button type="submit" { "Create the tenant" }
        }
        p { "Have an account? " a href="/login" { "Log in" } }
    }
}

pub async fn signup_page() -> Response {
    page_with(
        StatusCode::OK,
        None,
        "Sign up",
        signup_form(&SignUpForm::default(), None),
    )
    .into_response()
}

pub async fn signup(State(state): State<AppState>, Form(form): Form<SignUpForm>) -> Response {
    let request = id::SignUpRequest {
        tenant_slug: form.tenant.trim().to_owned(),
        tenant_name: form.tenant_name.trim().to_owned(),
        username: form.username.trim().to_owned(),
        email: form.email.trim().to_owned(),
        password: form.password.clone(),
    };
    let mut identity = state.clients.identity();
    if let Err(status) = identity.sign_up(authed(None, request)).await {
        let (field, message) = layout::field_error(&status)
            .unwrap_or_else(|| (String::new(), status.message().to_owned()));
        let http = layout::refusal(&status).map_or(StatusCode::BAD_REQUEST, |(http, _)| http);
        let body = signup_form(&form, Some((&field, &message)));
        return page_with(http, None, "Sign up", body).into_response();
    }
    let login = id::LoginRequest {
        tenant_slug: form.tenant.trim().to_owned(),
        username: form.username.trim().to_owned(),
        password: form.password,
        method: id::LoginMethod::Password.into(),
    };
    match identity.login(authed(None, login)).await {
        Ok(answer) => signed_in(&state, &answer.into_inner()),
        Err(_) => Redirect::to("/login").into_response(),
    }
}

/// Ends the session (the CSRF guard has checked the form).
pub async fn logout(State(state): State<AppState>, _session: Session) -> Response {
    let cookie = session::set_cookie(None, 0, state.config.secure_cookies);
    with_cookie(Redirect::to("/login").into_response(), &cookie)
}

#[derive(Debug, Default, Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    current: String,
    #[serde(default)]
    new: String,
}

fn password_form(session: &Session, error: Option<&str>) -> Markup {
    html! {
        form method="post" action="/password" {
            (csrf(session))
            (field("current", "Current password", "password", "", None))
            (field("new", "New password", "password", "", error))
            button type="submit" { "Change password" }
        }
    }
}

pub async fn password_page(session: Session) -> Response {
    page(&session, "Password", password_form(&session, None)).into_response()
}

pub async fn change_password(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<PasswordForm>,
) -> Response {
    let request = id::ChangePasswordRequest {
        user_id: String::new(),
        current_password: form.current,
        new_password: form.new,
    };
    let answer = state
        .clients
        .identity()
        .change_password(authed(Some(&session.token), request))
        .await;
    match answer {
        Ok(_) => page(
            &session,
            "Password",
            notice("ok", "Your password is changed."),
        )
        .into_response(),
        Err(status) => match layout::refusal(&status) {
            Some((http, message)) => {
                let body = password_form(&session, Some(&message));
                page_with(http, Some(&session), "Password", body).into_response()
            }
            None => layout::signed_out(),
        },
    }
}
