//! The signed-in user: their JWT in an `HttpOnly`, `SameSite=Strict`
//! cookie (`Secure` behind TLS), and a CSRF token derived from it that
//! every state-changing form carries. The console reads the token's
//! claims only to choose what to show; the services verify it.

use axum::extract::FromRequestParts;
use axum::response::{IntoResponse as _, Redirect, Response};
use base64::Engine as _;
use http::request::Parts;
use sha2::{Digest as _, Sha256};

use crate::AppState;

pub const COOKIE: &str = "gw_session";

/// Who is signed in.
#[derive(Debug, Clone)]
pub struct Session {
    pub token: String,
    pub user_id: String,
    pub tenant_id: String,
    /// "user", "admin" or "superadmin".
    pub role: String,
    pub csrf: String,
}

impl Session {
    pub fn is_admin(&self) -> bool {
        self.role == "admin" || self.role == "superadmin"
    }

    pub fn is_superadmin(&self) -> bool {
        self.role == "superadmin"
    }

    /// The session of a token still within its lifetime.
    pub fn from_token(token: &str, csrf_key: &[u8]) -> Option<Self> {
        let payload = token.split('.').nth(1)?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .ok()?;
        let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs());
        if claims.get("exp")?.as_u64()? <= now {
            return None;
        }
        let claim = |name: &str| {
            claims
                .get(name)
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        Some(Self {
            token: token.to_owned(),
            user_id: claim("sub"),
            tenant_id: claim("tenant"),
            // Identity spells roles in capitals ("ADMIN").
            role: claim("role").to_ascii_lowercase(),
            csrf: csrf_token(csrf_key, token),
        })
    }

    /// Whether a submitted form's token is this session's.
    pub fn csrf_matches(&self, submitted: &str) -> bool {
        use subtle::ConstantTimeEq as _;
        self.csrf.as_bytes().ct_eq(submitted.as_bytes()).into()
    }
}

/// A keyed hash of the session token: forms of another site cannot know
/// it, and it needs no server-side state.
fn csrf_token(key: &[u8], token: &str) -> String {
    let digest = Sha256::new()
        .chain_update(key)
        .chain_update(token.as_bytes())
        .finalize();
    digest[..16]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The value of cookie `name` in a request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find_map(|(key, value)| (key == name).then_some(value))
}

/// `Set-Cookie` for a new session (`max_age` seconds), or one that ends it.
pub fn set_cookie(token: Option<&str>, max_age: i64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    let (value, max_age) = token.map_or(("", 0), |token| (token, max_age.max(0)));
    format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}")
}

impl FromRequestParts<AppState> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        cookie(&parts.headers, COOKIE)
            .and_then(|token| Self::from_token(token, &state.csrf_key))
            .ok_or_else(|| Redirect::to("/login").into_response())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(claims: serde_json::Value) -> String {
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!("e30.{}.sig", engine.encode(claims.to_string()))
    }

    #[test]
    fn a_live_token_is_a_session_and_an_expired_one_is_not() {
        let live = token(
            serde_json::json!({"sub": "u1", "tenant": "t1", "role": "ADMIN", "exp": 4_000_000_000_u64}),
        );
        let session = Session::from_token(&live, b"key").expect("a session");
        assert_eq!(
            (session.user_id.as_str(), session.role.as_str()),
            ("u1", "admin")
        );
        assert!(session.is_admin() && !session.is_superadmin());
        let expired = token(serde_json::json!({"sub": "u1", "exp": 1}));
        assert!(Session::from_token(&expired, b"key").is_none());
        assert!(Session::from_token("not-a-jwt", b"key").is_none());
    }

    #[test]
    fn the_csrf_token_follows_the_session_and_the_key() {
        let live = token(serde_json::json!({"sub": "u1", "exp": 4_000_000_000_u64}));
        let session = Session::from_token(&live, b"key").expect("a session");
        assert!(session.csrf_matches(&session.csrf));
        assert!(!session.csrf_matches(""));
        let other_key = Session::from_token(&live, b"other").expect("a session");
        assert!(!session.csrf_matches(&other_key.csrf));
    }

    #[test]
    fn cookies_are_found_among_others_and_set_strictly() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::COOKIE,
            "a=1; gw_session=abc; b=2".parse().expect("header"),
        );
        assert_eq!(cookie(&headers, COOKIE), Some("abc"));
        assert_eq!(cookie(&headers, "c"), None);
        let set = set_cookie(Some("abc"), 60, true);
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.ends_with("Secure")
        );
        assert!(set_cookie(None, 60, false).contains("Max-Age=0"));
    }
}
