//! The RBAC layer: resolves the caller from `x-admin-key` or
//! `authorization: Bearer <jwt>` and enforces a per-RPC access table,
//! denying by default. It wraps one tonic service, so health and
//! reflection, served beside it, stay open.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::server::NamedService;
use tower_layer::Layer;
use tower_service::Service;

use crate::{ADMIN_KEY_HEADER, AuthError, Caller, Role, Verifier};

/// Who may call an RPC. Finer checks (own tenant, own keys) are the
/// service's, with the [`Caller`] this layer resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, with or without credentials (login, sign-up, public keys).
    Open,
    /// Any authenticated caller.
    Authenticated,
    /// ADMIN or SUPERADMIN.
    Admin,
    /// SUPERADMIN or the admin key (tenant management, the edge's RPCs).
    Superadmin,
}

/// Maps an RPC's method name (`Login`) to its access rule; `None` denies.
pub type AccessPolicy = fn(&str) -> Option<Access>;

/// Wraps a tonic service in [`Auth`].
#[derive(Debug, Clone)]
pub struct AuthLayer {
    verifier: Verifier,
    policy: AccessPolicy,
}

impl AuthLayer {
    pub fn new(verifier: Verifier, policy: AccessPolicy) -> Self {
        Self { verifier, policy }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Auth {
            inner,
            verifier: self.verifier.clone(),
            policy: self.policy,
        }
    }
}

/// Authenticates and authorises each call, then hands the [`Caller`] to
/// the service in the request's extensions.
#[derive(Debug, Clone)]
pub struct Auth<S> {
    inner: S,
    verifier: Verifier,
    policy: AccessPolicy,
}

impl<S: NamedService> NamedService for Auth<S> {
    const NAME: &'static str = S::NAME;
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, B> Service<http::Request<B>> for Auth<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let method = request.uri().path().rsplit('/').next().unwrap_or_default();
        let decision = resolve_caller(&self.verifier, request.headers())
            .and_then(|caller| authorize((self.policy)(method), method, caller));
        match decision {
            Ok(caller) => {
                request.extensions_mut().insert(caller);
                Box::pin(self.inner.call(request))
            }
            Err(status) => {
                tracing::debug!(method, code = ?status.code(), "call refused by access policy");
                let response = status.into_http();
                Box::pin(async move { Ok(response) })
            }
        }
    }
}

fn resolve_caller(verifier: &Verifier, headers: &http::HeaderMap) -> Result<Caller, tonic::Status> {
    if let Some(presented) = headers.get(ADMIN_KEY_HEADER) {
        let presented = presented.to_str().unwrap_or_default();
        return if verifier.admin_key_matches(presented) {
            Ok(Caller::AdminKey)
        } else {
            Err(tonic::Status::unauthenticated(
                AuthError::InvalidAdminKey.to_string(),
            ))
        };
    }
    let Some(authorization) = headers.get(http::header::AUTHORIZATION) else {
        return Ok(Caller::Anonymous);
    };
    let token = authorization
        .to_str()
        .ok()
        .and_then(|value| {
            value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|token| !token.is_empty())
        .ok_or_else(|| {
            tonic::Status::unauthenticated(AuthError::MalformedAuthorization.to_string())
        })?;
    let claims = verifier
        .verify(token)
        .map_err(|error| tonic::Status::unauthenticated(error.to_string()))?;
    Ok(Caller::User {
        user_id: claims.sub,
        tenant_id: claims.tenant,
        role: claims.role,
    })
}

fn authorize(
    access: Option<Access>,
    method: &str,
    caller: Caller,
) -> Result<Caller, tonic::Status> {
    let Some(access) = access else {
        return Err(tonic::Status::permission_denied(format!(
            "{method} has no access policy"
        )));
    };
    let allowed = match access {
        Access::Open => true,
        Access::Authenticated => caller != Caller::Anonymous,
        Access::Admin => caller.role() >= Some(Role::Admin),
        Access::Superadmin => caller.is_superadmin(),
    };
    match (allowed, &caller) {
        (true, _) => Ok(caller),
        (false, Caller::Anonymous) => Err(tonic::Status::unauthenticated(format!(
            "{method} needs a bearer token or the admin key"
        ))),
        (false, _) => Err(tonic::Status::permission_denied(format!(
            "{method} needs role {}",
            match access {
                Access::Admin => "ADMIN",
                _ => "SUPERADMIN",
            }
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(role: Role) -> Caller {
        Caller::User {
            user_id: "u".to_owned(),
            tenant_id: "t".to_owned(),
            role,
        }
    }

    #[test]
    fn access_table_is_enforced_by_role() {
        let cases = [
            (Access::Open, Caller::Anonymous, None),
            (
                Access::Authenticated,
                Caller::Anonymous,
                Some(tonic::Code::Unauthenticated),
            ),
            (Access::Authenticated, user(Role::User), None),
            (
                Access::Admin,
                user(Role::User),
                Some(tonic::Code::PermissionDenied),
            ),
            (Access::Admin, user(Role::Admin), None),
            (
                Access::Superadmin,
                user(Role::Admin),
                Some(tonic::Code::PermissionDenied),
            ),
            (Access::Superadmin, user(Role::Superadmin), None),
            (Access::Superadmin, Caller::AdminKey, None),
        ];
        for (access, caller, expected) in cases {
            let result = authorize(Some(access), "M", caller.clone());
            assert_eq!(
                result.err().map(|status| status.code()),
                expected,
                "{access:?} {caller:?}"
            );
        }
    }

    #[test]
    fn method_missing_from_the_table_is_denied() {
        let status = authorize(None, "Secret", Caller::AdminKey).unwrap_err();
        assert_eq!(status.code(), tonic::Code::PermissionDenied);
    }

    #[test]
    fn credentials_resolve_to_a_caller() {
        let verifier = Verifier::new("i", crate::AdminKey::new("admin-key"));
        let mut headers = http::HeaderMap::new();
        assert_eq!(
            resolve_caller(&verifier, &headers).unwrap(),
            Caller::Anonymous
        );

        headers.insert(
            ADMIN_KEY_HEADER,
            http::HeaderValue::from_static("admin-key"),
        );
        assert_eq!(
            resolve_caller(&verifier, &headers).unwrap(),
            Caller::AdminKey
        );

        headers.insert(ADMIN_KEY_HEADER, http::HeaderValue::from_static("wrong"));
        assert_eq!(
            resolve_caller(&verifier, &headers).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );

        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_static("Basic abc"),
        );
        assert_eq!(
            resolve_caller(&verifier, &headers).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        headers.insert(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_static("Bearer not.a.jwt"),
        );
        assert_eq!(
            resolve_caller(&verifier, &headers).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
    }
}
