//! Which credential each route of an API takes (`Api.auth`,
//! `RouteRule.auth_mode`), compiled once per snapshot change.

use std::net::SocketAddr;

use gateway_proto::catalog::v1 as pb;
use http::StatusCode;
use http::header::{self, HeaderMap, HeaderValue};

use super::Caller;
use super::basic::BasicUsers;
use super::jwt::JwtVerifier;
use crate::problem::{Halt, halt};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Key,
    Jwt,
    Basic,
    Public,
}

impl Mode {
    /// `None` for UNSPECIFIED (and unknown values): the API's mode.
    pub fn of(value: i32) -> Option<Self> {
        match pb::AuthMode::try_from(value).ok()? {
            pb::AuthMode::Key => Some(Self::Key),
            pb::AuthMode::Jwt => Some(Self::Jwt),
            pb::AuthMode::Basic => Some(Self::Basic),
            pb::AuthMode::Public => Some(Self::Public),
            pb::AuthMode::Unspecified => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Key => "an API key",
            Self::Jwt => "a JWT bearer token",
            Self::Basic => "HTTP Basic credentials",
            Self::Public => "no credential",
        }
    }
}

/// An API's caller authentication, compiled.
pub struct ApiAuth {
    pub default: Mode,
    /// Some route (or the default) is not KEY.
    pub keyless: bool,
    pub jwt: Option<JwtVerifier>,
    pub basic: Option<BasicUsers>,
    /// The plan that limits keyless callers (per IP, subject or user).
    pub plan_id: String,
}

impl ApiAuth {
    pub fn compile(api: &pb::Api) -> Self {
        let auth = api.auth.clone().unwrap_or_default();
        let default = Mode::of(auth.mode).unwrap_or(Mode::Key);
        let keyless = default != Mode::Key
            || api
                .routes
                .iter()
                .any(|rule| Mode::of(rule.auth_mode).is_some_and(|mode| mode != Mode::Key));
        Self {
            default,
            keyless,
            jwt: auth.jwt.as_ref().map(JwtVerifier::compile),
            basic: auth
                .basic
                .as_ref()
                .map(|basic| BasicUsers::compile(basic, &api.slug)),
            plan_id: auth.plan_id,
        }
    }
}

/// A request on a route that takes no gateway key.
pub struct Keyless<'a> {
    pub api_id: &'a str,
    /// `(tenant id, tenant slug)`.
    pub tenant: (&'a str, &'a str),
    pub headers: &'a HeaderMap,
    pub remote: SocketAddr,
    pub request_id: &'a str,
}

impl ApiAuth {
    /// The caller of a JWT, basic or public route, or the 401 (with its
    /// `WWW-Authenticate` challenge) that refuses it.
    pub async fn caller(&self, mode: Mode, request: &Keyless<'_>) -> Result<Caller, Halt> {
        let keyless = |kind: &str, subject: &str, username: String| {
            Caller::keyless(
                request.tenant,
                format!("{kind}:{}:{subject}", request.api_id),
                username,
                &self.plan_id,
                request.remote,
            )
        };
        match mode {
            Mode::Public => Ok(keyless(
                "public",
                &request.remote.ip().to_string(),
                String::new(),
            )),
            Mode::Jwt => {
                let verified = self.jwt_of(request)?;
                let mut caller = keyless("jwt", &verified.subject, verified.subject.clone());
                caller.forward = verified.forward;
                Ok(caller)
            }
            Mode::Basic => {
                let users = self.basic.as_ref();
                let username = match users {
                    Some(users) => {
                        users
                            .verify(request.headers.get(header::AUTHORIZATION))
                            .await
                    }
                    None => None,
                };
                let challenge = users.map_or(HeaderValue::from_static("Basic"), |users| {
                    users.challenge.clone()
                });
                match username {
                    Some(username) => Ok(keyless("basic", &username, username.clone())),
                    None => Err(challenged(
                        "valid HTTP Basic credentials are required",
                        challenge,
                        request.request_id,
                    )),
                }
            }
            Mode::Key => Err(halt(
                StatusCode::UNAUTHORIZED,
                "an API key is required (X-API-Key or Authorization: Bearer)",
                request.request_id,
            )),
        }
    }

    fn jwt_of(&self, request: &Keyless<'_>) -> Result<super::jwt::Verified, Halt> {
        let challenge = HeaderValue::from_static("Bearer");
        let token = request
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        let Some(token) = token else {
            return Err(challenged(
                "a JWT is required (Authorization: Bearer)",
                challenge,
                request.request_id,
            ));
        };
        let Some(verifier) = &self.jwt else {
            return Err(challenged(
                "this API has no JWT settings",
                challenge,
                request.request_id,
            ));
        };
        verifier.verify(token).map_err(|reason| {
            let challenge = HeaderValue::from_static("Bearer error=\"invalid_token\"");
            challenged(reason, challenge, request.request_id)
        })
    }
}

fn challenged(detail: &str, challenge: HeaderValue, request_id: &str) -> Halt {
    let mut refused = halt(StatusCode::UNAUTHORIZED, detail, request_id);
    refused
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, challenge);
    refused
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_without_a_mode_take_the_apis() {
        let api = pb::Api {
            slug: "orders".to_owned(),
            routes: vec![pb::RouteRule {
                auth_mode: pb::AuthMode::Public.into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let compiled = ApiAuth::compile(&api);
        assert_eq!(compiled.default, Mode::Key);
        assert!(compiled.keyless);
        assert!(!ApiAuth::compile(&pb::Api::default()).keyless);
        assert_eq!(Mode::of(0), None);
        assert_eq!(Mode::of(3), Some(Mode::Basic));
    }
}
