//! Basic routes: `Authorization: Basic` checked against the API's users,
//! whose passwords the catalog keeps only as argon2id hashes. argon2id is
//! slow by design, so it runs off the async workers, and a verified pair
//! is remembered (by its SHA-256, never in clear) until the API changes.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine as _;
use gateway_proto::catalog::v1 as pb;
use http::header::HeaderValue;
use sha2::Digest as _;

/// Verified pairs are trusted this long before argon2id runs again.
const VERIFIED_FOR: Duration = Duration::from_secs(300);

/// An API's basic-auth users, compiled.
pub struct BasicUsers {
    hashes: HashMap<String, String>,
    pub challenge: HeaderValue,
    verified: moka::sync::Cache<[u8; 32], ()>,
}

impl BasicUsers {
    pub fn compile(policy: &pb::BasicAuth, api_slug: &str) -> Self {
        let realm = if policy.realm.is_empty() {
            api_slug
        } else {
            policy.realm.as_str()
        };
        let realm: String = realm.chars().filter(|c| *c != '"' && *c != '\\').collect();
        Self {
            hashes: policy
                .users
                .iter()
                .map(|user| (user.username.clone(), user.password_hash.clone()))
                .collect(),
            challenge: HeaderValue::from_str(&format!(
                "Basic realm=\"{realm}\", charset=\"UTF-8\""
            ))
            .unwrap_or_else(|_| HeaderValue::from_static("Basic")),
            verified: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(VERIFIED_FOR)
                .build(),
        }
    }

    /// The username, when `authorization` carries a user's password.
    pub async fn verify(&self, authorization: Option<&HeaderValue>) -> Option<String> {
        let (username, password) = credentials(authorization?)?;
        let digest: [u8; 32] = sha2::Sha256::new()
            .chain_update(username.as_bytes())
            .chain_update([0])
            .chain_update(password.as_bytes())
            .finalize()
            .into();
        if self.verified.contains_key(&digest) && self.hashes.contains_key(&username) {
            return Some(username);
        }
        let hash = self
            .hashes
            .get(&username)
            .cloned()
            .unwrap_or_else(|| gateway_auth::password::DUMMY_HASH.to_owned());
        let matches =
            tokio::task::spawn_blocking(move || gateway_auth::password::verify(&password, &hash))
                .await
                .unwrap_or(false);
        if !matches || !self.hashes.contains_key(&username) {
            return None;
        }
        self.verified.insert(digest, ());
        Some(username)
    }
}

/// `(username, password)` of a `Basic` credential.
pub(crate) fn credentials(value: &HeaderValue) -> Option<(String, String)> {
    let (scheme, encoded) = value.to_str().ok()?.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (username, password) = decoded.split_once(':')?;
    Some((username.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, password: &str) -> HeaderValue {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        HeaderValue::from_str(&format!("Basic {encoded}")).unwrap()
    }

    #[tokio::test]
    async fn only_a_users_own_password_passes() {
        let users = BasicUsers::compile(
            &pb::BasicAuth {
                users: vec![pb::BasicUser {
                    username: "ops".to_owned(),
                    password_hash: gateway_auth::password::hash("a long password").unwrap(),
                    ..Default::default()
                }],
                realm: String::new(),
            },
            "orders",
        );
        assert_eq!(users.challenge, "Basic realm=\"orders\", charset=\"UTF-8\"");
        assert_eq!(
            users
                .verify(Some(&basic("ops", "a long password")))
                .await
                .as_deref(),
            Some("ops")
        );
        // Again, from the verified cache.
        assert_eq!(
            users
                .verify(Some(&basic("ops", "a long password")))
                .await
                .as_deref(),
            Some("ops")
        );
        assert_eq!(
            users.verify(Some(&basic("ops", "wrong password"))).await,
            None
        );
        assert_eq!(
            users
                .verify(Some(&basic("nobody", "a long password")))
                .await,
            None
        );
        assert_eq!(
            users
                .verify(Some(&HeaderValue::from_static("Basic !!!")))
                .await,
            None
        );
        assert_eq!(
            users
                .verify(Some(&HeaderValue::from_static("Bearer x")))
                .await,
            None
        );
        assert_eq!(users.verify(None).await, None);
    }
}
