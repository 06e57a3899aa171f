//! An API's caller authentication (`Api.auth`, `RouteRule.auth_mode`):
//! validation, the HS256 secret sealed at rest, basic-auth passwords kept
//! only as argon2id hashes, and what callers may see of either (nothing
//! but a hint and the usernames). The edge's snapshot gets the secret
//! opened and the hashes.

use gateway_proto::catalog::v1 as pb;

use crate::error::CatalogError;

const ALGORITHMS: [&str; 4] = ["HS256", "RS256", "ES256", "EdDSA"];
const MIN_HS256_SECRET_BYTES: usize = 32;
const MIN_BASIC_PASSWORD_CHARS: usize = 12;

fn invalid(field: &str, message: impl Into<String>) -> CatalogError {
    CatalogError::InvalidArgument {
        field: field.to_owned(),
        message: message.into(),
    }
}

fn mode(value: i32, field: &str) -> Result<pb::AuthMode, CatalogError> {
    pb::AuthMode::try_from(value).map_err(|_| invalid(field, "unknown auth mode"))
}

/// Every mode the API's routes use (its own for routes that set none).
fn modes(api: &pb::Api) -> Result<Vec<pb::AuthMode>, CatalogError> {
    let default = match api.auth.as_ref() {
        Some(auth) => mode(auth.mode, "api.auth.mode")?,
        None => pb::AuthMode::Key,
    };
    let default = match default {
        pb::AuthMode::Unspecified => pb::AuthMode::Key,
        other => other,
    };
    let mut used = vec![default];
    for (index, rule) in api.routes.iter().enumerate() {
        match mode(rule.auth_mode, &format!("api.routes[{index}].auth_mode"))? {
            pb::AuthMode::Unspecified => {}
            other => used.push(other),
        }
    }
    Ok(used)
}

/// Seals a new HS256 secret and hashes new passwords, keeping what
/// `previous` stored where the caller sent none; then checks the whole.
pub fn prepare(
    api: &mut pb::Api,
    previous: Option<&pb::ApiAuth>,
    seal: &dyn Fn(&str) -> Result<Vec<u8>, CatalogError>,
) -> Result<(), CatalogError> {
    let used = modes(api)?;
    let Some(auth) = api.auth.as_mut() else {
        return check(&pb::ApiAuth::default(), &used);
    };
    if let Some(jwt) = auth.jwt.as_mut() {
        let kept = previous.and_then(|previous| previous.jwt.as_ref());
        seal_secret(jwt, kept, seal)?;
    }
    if let Some(basic) = auth.basic.as_mut() {
        let kept = previous.and_then(|previous| previous.basic.as_ref());
        hash_passwords(basic, kept)?;
    }
    check(auth, &used)
}

fn seal_secret(
    jwt: &mut pb::JwtAuth,
    kept: Option<&pb::JwtAuth>,
    seal: &dyn Fn(&str) -> Result<Vec<u8>, CatalogError>,
) -> Result<(), CatalogError> {
    let secret = std::mem::take(&mut jwt.hs256_secret);
    if secret.is_empty() {
        jwt.sealed_hs256_secret = kept
            .map(|kept| kept.sealed_hs256_secret.clone())
            .unwrap_or_default();
        jwt.hs256_secret_hint = kept
            .map(|kept| kept.hs256_secret_hint.clone())
            .unwrap_or_default();
        return Ok(());
    }
    if secret.len() < MIN_HS256_SECRET_BYTES {
        return Err(invalid(
            "api.auth.jwt.hs256_secret",
            format!("must be at least {MIN_HS256_SECRET_BYTES} bytes"),
        ));
    }
    jwt.sealed_hs256_secret = seal(&secret)?;
    jwt.hs256_secret_hint = gateway_secrets::hint(&secret);
    Ok(())
}

fn hash_passwords(
    basic: &mut pb::BasicAuth,
    kept: Option<&pb::BasicAuth>,
) -> Result<(), CatalogError> {
    for (index, user) in basic.users.iter_mut().enumerate() {
        let field = format!("api.auth.basic.users[{index}]");
        if user.username.is_empty() || user.username.contains(':') || user.username.len() > 200 {
            return Err(invalid(
                &format!("{field}.username"),
                "must be 1 to 200 characters, without ':'",
            ));
        }
        let password = std::mem::take(&mut user.password);
        if password.is_empty() {
            user.password_hash = kept
                .and_then(|kept| kept.users.iter().find(|old| old.username == user.username))
                .map(|old| old.password_hash.clone())
                .ok_or_else(|| {
                    invalid(&format!("{field}.password"), "is required for a new user")
                })?;
            continue;
        }
        if password.chars().count() < MIN_BASIC_PASSWORD_CHARS {
            return Err(invalid(
                &format!("{field}.password"),
                format!("must be at least {MIN_BASIC_PASSWORD_CHARS} characters"),
            ));
        }
        user.password_hash = gateway_auth::password::hash(&password)
            .map_err(|error| CatalogError::Internal(error.to_string()))?;
    }
    let mut names: Vec<&str> = basic
        .users
        .iter()
        .map(|user| user.username.as_str())
        .collect();
    names.sort_unstable();
    if names.windows(2).any(|pair| pair[0] == pair[1]) {
        return Err(invalid("api.auth.basic.users", "usernames must be unique"));
    }
    Ok(())
}

/// What the modes in use require.
fn check(auth: &pb::ApiAuth, used: &[pb::AuthMode]) -> Result<(), CatalogError> {
    if used.contains(&pb::AuthMode::Jwt) {
        let jwt = auth
            .jwt
            .as_ref()
            .ok_or_else(|| invalid("api.auth.jwt", "is required when a route uses JWT"))?;
        check_jwt(jwt)?;
    }
    if used.contains(&pb::AuthMode::Basic)
        && auth
            .basic
            .as_ref()
            .is_none_or(|basic| basic.users.is_empty())
    {
        return Err(invalid(
            "api.auth.basic.users",
            "at least one user is required when a route uses BASIC",
        ));
    }
    if used.contains(&pb::AuthMode::Public) && auth.plan_id.is_empty() {
        return Err(invalid(
            "api.auth.plan_id",
            "is required when a route is PUBLIC (its limits count per client IP)",
        ));
    }
    Ok(())
}

fn check_jwt(jwt: &pb::JwtAuth) -> Result<(), CatalogError> {
    if jwt.algorithms.is_empty() {
        return Err(invalid(
            "api.auth.jwt.algorithms",
            "name at least one of HS256, RS256, ES256, EdDSA",
        ));
    }
    for algorithm in &jwt.algorithms {
        if !ALGORITHMS.contains(&algorithm.as_str()) {
            return Err(invalid(
                "api.auth.jwt.algorithms",
                format!("{algorithm:?} is not one of HS256, RS256, ES256, EdDSA"),
            ));
        }
    }
    if jwt.algorithms.iter().any(|algorithm| algorithm == "HS256")
        && jwt.sealed_hs256_secret.is_empty()
    {
        return Err(invalid(
            "api.auth.jwt.hs256_secret",
            "is required for HS256",
        ));
    }
    let asymmetric: Vec<&String> = jwt
        .algorithms
        .iter()
        .filter(|algorithm| *algorithm != "HS256")
        .collect();
    if !asymmetric.is_empty() && jwt.public_keys_pem.is_empty() {
        return Err(invalid(
            "api.auth.jwt.public_keys_pem",
            "at least one key is required for RS256, ES256 or EdDSA",
        ));
    }
    for (index, pem) in jwt.public_keys_pem.iter().enumerate() {
        if gateway_auth::pem::public_key(pem).is_none() {
            return Err(invalid(
                &format!("api.auth.jwt.public_keys_pem[{index}]"),
                "is not a PEM RSA, EC P-256 or Ed25519 public key",
            ));
        }
    }
    if let Some(leeway) = &jwt.leeway
        && !(0..=300).contains(&leeway.seconds)
    {
        return Err(invalid(
            "api.auth.jwt.leeway",
            "must be between 0 and 300 seconds",
        ));
    }
    for (claim, header) in &jwt.forward_claims {
        if claim.is_empty() || http::HeaderName::from_bytes(header.as_bytes()).is_err() {
            return Err(invalid(
                "api.auth.jwt.forward_claims",
                format!("{claim:?} -> {header:?} is not a claim and a header name"),
            ));
        }
    }
    Ok(())
}

/// What a caller of the catalog sees: no sealed secret, no hash.
pub fn redact(api: &mut pb::Api) {
    let Some(auth) = api.auth.as_mut() else {
        return;
    };
    if let Some(jwt) = auth.jwt.as_mut() {
        jwt.sealed_hs256_secret.clear();
        jwt.hs256_secret.clear();
    }
    if let Some(basic) = auth.basic.as_mut() {
        for user in &mut basic.users {
            user.password.clear();
            user.password_hash.clear();
        }
    }
}

/// What the edge's snapshot carries: the HS256 secret opened.
pub fn open(
    api: &mut pb::Api,
    open: &dyn Fn(&[u8]) -> Result<String, CatalogError>,
) -> Result<(), CatalogError> {
    let Some(jwt) = api.auth.as_mut().and_then(|auth| auth.jwt.as_mut()) else {
        return Ok(());
    };
    if !jwt.sealed_hs256_secret.is_empty() {
        jwt.hs256_secret = open(&jwt.sealed_hs256_secret)?;
        jwt.sealed_hs256_secret.clear();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seal(secret: &str) -> Result<Vec<u8>, CatalogError> {
        Ok(secret.bytes().rev().collect())
    }

    fn jwt_api(secret: &str) -> pb::Api {
        pb::Api {
            auth: Some(pb::ApiAuth {
                mode: pb::AuthMode::Jwt.into(),
                jwt: Some(pb::JwtAuth {
                    algorithms: vec!["HS256".to_owned()],
                    hs256_secret: secret.to_owned(),
                    ..Default::default()
                }),
                basic: Some(pb::BasicAuth {
                    users: vec![pb::BasicUser {
                        username: "ops".to_owned(),
                        password: "a long enough password".to_owned(),
                        ..Default::default()
                    }],
                    realm: String::new(),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn secrets_are_sealed_passwords_hashed_and_both_kept_on_update() {
        let secret = "0123456789abcdef0123456789abcdef";
        let mut api = jwt_api(secret);
        prepare(&mut api, None, &seal).unwrap();
        let auth = api.auth.clone().unwrap();
        let jwt = auth.jwt.as_ref().unwrap();
        assert!(jwt.hs256_secret.is_empty(), "the plaintext is not stored");
        assert_eq!(jwt.sealed_hs256_secret, seal(secret).unwrap());
        assert_eq!(jwt.hs256_secret_hint, "cdef");
        let hash = auth.basic.as_ref().unwrap().users[0].password_hash.clone();
        assert!(gateway_auth::password::verify(
            "a long enough password",
            &hash
        ));

        // An update that sends neither keeps both.
        let mut updated = jwt_api("");
        updated.auth.as_mut().unwrap().basic.as_mut().unwrap().users[0]
            .password
            .clear();
        prepare(&mut updated, Some(&auth), &seal).unwrap();
        let kept = updated.auth.as_ref().unwrap();
        assert_eq!(
            kept.jwt.as_ref().unwrap().sealed_hs256_secret,
            seal(secret).unwrap()
        );
        assert_eq!(kept.basic.as_ref().unwrap().users[0].password_hash, hash);

        let mut shown = updated.clone();
        redact(&mut shown);
        let shown = shown.auth.unwrap();
        assert!(shown.jwt.unwrap().sealed_hs256_secret.is_empty());
        assert!(shown.basic.unwrap().users[0].password_hash.is_empty());
    }

    #[test]
    fn missing_or_weak_settings_are_refused_by_field() {
        let field = |result: Result<(), CatalogError>| match result {
            Err(CatalogError::InvalidArgument { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            field(prepare(&mut jwt_api("short"), None, &seal)),
            "api.auth.jwt.hs256_secret"
        );
        assert_eq!(
            field(prepare(&mut jwt_api(""), None, &seal)),
            "api.auth.jwt.hs256_secret"
        );
        let mut public_route = pb::Api {
            routes: vec![pb::RouteRule {
                auth_mode: pb::AuthMode::Public.into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(
            field(prepare(&mut public_route, None, &seal)),
            "api.auth.plan_id"
        );
        let mut bad_key = jwt_api("0123456789abcdef0123456789abcdef");
        let jwt = bad_key.auth.as_mut().unwrap().jwt.as_mut().unwrap();
        jwt.algorithms.push("RS256".to_owned());
        jwt.public_keys_pem.push("not a key".to_owned());
        assert_eq!(
            field(prepare(&mut bad_key, None, &seal)),
            "api.auth.jwt.public_keys_pem[0]"
        );
    }
}
