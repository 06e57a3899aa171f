//! JWT routes: a bearer token verified with the API's HS256 secret or
//! public keys (RS256, ES256, EdDSA), its issuer, audience and expiry
//! checked, and chosen claims forwarded to the upstream as headers.

use gateway_proto::catalog::v1 as pb;
use http::header::{HeaderName, HeaderValue};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

type Claims = serde_json::Map<String, serde_json::Value>;

/// An API's JWT settings, compiled.
pub struct JwtVerifier {
    algorithms: Vec<Algorithm>,
    keys: Vec<(DecodingKey, Algorithm)>,
    issuer: Option<String>,
    audiences: Vec<String>,
    leeway: u64,
    forward: Vec<(String, HeaderName)>,
}

/// A verified token: who it names, and the headers it sends upstream.
#[derive(Debug)]
pub struct Verified {
    pub subject: String,
    /// Every configured header: the claim's value, or `None` (removed, so
    /// a client cannot send it itself).
    pub forward: Vec<(HeaderName, Option<HeaderValue>)>,
}

fn algorithm(name: &str) -> Option<Algorithm> {
    match name {
        "HS256" => Some(Algorithm::HS256),
        "RS256" => Some(Algorithm::RS256),
        "ES256" => Some(Algorithm::ES256),
        "EdDSA" => Some(Algorithm::EdDSA),
        _ => None,
    }
}

impl JwtVerifier {
    pub fn compile(policy: &pb::JwtAuth) -> Self {
        let mut keys: Vec<(DecodingKey, Algorithm)> = policy
            .public_keys_pem
            .iter()
            .filter_map(|pem| gateway_auth::pem::public_key(pem))
            .collect();
        if !policy.hs256_secret.is_empty() {
            keys.push((
                DecodingKey::from_secret(policy.hs256_secret.as_bytes()),
                Algorithm::HS256,
            ));
        }
        Self {
            algorithms: policy
                .algorithms
                .iter()
                .filter_map(|name| algorithm(name))
                .collect(),
            keys,
            issuer: (!policy.issuer.is_empty()).then(|| policy.issuer.clone()),
            audiences: policy.audiences.clone(),
            leeway: policy
                .leeway
                .as_ref()
                .map_or(30, |leeway| u64::try_from(leeway.seconds).unwrap_or(0)),
            forward: policy
                .forward_claims
                .iter()
                .filter_map(|(claim, header)| {
                    Some((
                        claim.clone(),
                        HeaderName::from_bytes(header.as_bytes()).ok()?,
                    ))
                })
                .collect(),
        }
    }

    /// The token's subject and forwarded claims, or why it is refused.
    pub fn verify(&self, token: &str) -> Result<Verified, &'static str> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| "the token is not a JWT")?;
        if !self.algorithms.contains(&header.alg) {
            return Err("the token's algorithm is not accepted here");
        }
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.leeway;
        validation.set_required_spec_claims(&["exp"]);
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
        }
        if self.audiences.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&self.audiences);
        }
        let mut refusal = "the token's signature does not verify";
        for (key, _) in self.keys.iter().filter(|(_, alg)| *alg == header.alg) {
            match jsonwebtoken::decode::<Claims>(token, key, &validation) {
                Ok(data) => return Ok(self.verified(&data.claims)),
                Err(error) => refusal = reason(error.kind()).unwrap_or(refusal),
            }
        }
        Err(refusal)
    }

    fn verified(&self, claims: &Claims) -> Verified {
        let text = |value: &serde_json::Value| match value {
            serde_json::Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        Verified {
            subject: claims.get("sub").map(text).unwrap_or_default(),
            forward: self
                .forward
                .iter()
                .map(|(claim, header)| {
                    let value = claims
                        .get(claim)
                        .and_then(|value| HeaderValue::from_str(&text(value)).ok());
                    (header.clone(), value)
                })
                .collect(),
        }
    }
}

/// A refusal that is about the claims, not the key (so trying another
/// key would not help, and the caller should hear it).
fn reason(kind: &jsonwebtoken::errors::ErrorKind) -> Option<&'static str> {
    use jsonwebtoken::errors::ErrorKind;
    match kind {
        ErrorKind::ExpiredSignature => Some("the token has expired"),
        ErrorKind::ImmatureSignature => Some("the token is not valid yet"),
        ErrorKind::InvalidIssuer => Some("the token's issuer is not accepted"),
        ErrorKind::InvalidAudience => Some("the token's audience is not accepted"),
        ErrorKind::MissingRequiredClaim(_) => Some("the token has no exp claim"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn verifier() -> JwtVerifier {
        JwtVerifier::compile(&pb::JwtAuth {
            algorithms: vec!["HS256".to_owned()],
            hs256_secret: SECRET.to_owned(),
            issuer: "https://issuer.example".to_owned(),
            audiences: vec!["orders".to_owned()],
            forward_claims: [
                ("sub".to_owned(), "x-user-id".to_owned()),
                ("tier".to_owned(), "x-tier".to_owned()),
            ]
            .into_iter()
            .collect(),
            ..Default::default()
        })
    }

    fn token(claims: serde_json::Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    }

    fn now() -> i64 {
        crate::auth::now_secs()
    }

    #[test]
    fn a_valid_token_yields_its_subject_and_forwarded_claims() {
        let verified = verifier()
            .verify(&token(serde_json::json!({
                "sub": "user-7", "iss": "https://issuer.example", "aud": "orders", "exp": now() + 60,
            })))
            .unwrap();
        assert_eq!(verified.subject, "user-7");
        let header = |name: &str| {
            verified
                .forward
                .iter()
                .find(|(header, _)| header == name)
                .map(|(_, value)| {
                    value
                        .as_ref()
                        .map(|value| value.to_str().unwrap().to_owned())
                })
                .unwrap()
        };
        assert_eq!(header("x-user-id").as_deref(), Some("user-7"));
        assert_eq!(header("x-tier"), None, "an absent claim removes its header");
    }

    #[test]
    fn expiry_issuer_audience_and_signature_are_checked() {
        let verifier = verifier();
        let base = serde_json::json!({"sub": "u", "iss": "https://issuer.example", "aud": "orders", "exp": now() + 60});
        let with = |key: &str, value: serde_json::Value| {
            let mut claims = base.clone();
            claims[key] = value;
            token(claims)
        };
        assert_eq!(
            verifier
                .verify(&with("exp", (now() - 120).into()))
                .unwrap_err(),
            "the token has expired"
        );
        assert_eq!(
            verifier.verify(&with("iss", "evil".into())).unwrap_err(),
            "the token's issuer is not accepted"
        );
        assert_eq!(
            verifier.verify(&with("aud", "billing".into())).unwrap_err(),
            "the token's audience is not accepted"
        );
        let forged = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &base,
            &EncodingKey::from_secret(b"another secret of thirty-two bytes!"),
        )
        .unwrap();
        assert_eq!(
            verifier.verify(&forged).unwrap_err(),
            "the token's signature does not verify"
        );
        assert_eq!(
            verifier.verify("not.a.jwt").unwrap_err(),
            "the token is not a JWT"
        );
        let mut no_exp = base.clone();
        no_exp.as_object_mut().unwrap().remove("exp");
        assert!(verifier.verify(&token(no_exp)).is_err());
    }

    #[test]
    fn an_algorithm_not_listed_is_refused() {
        let verifier = verifier();
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS384),
            &serde_json::json!({"exp": now() + 60}),
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();
        assert_eq!(
            verifier.verify(&token).unwrap_err(),
            "the token's algorithm is not accepted here"
        );
    }
}
