//! The claims of an identity-issued JWT.

use serde::{Deserialize, Serialize};

use crate::Role;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// The user's tenant id.
    pub tenant: String,
    pub role: Role,
    /// Expiry and issue time, seconds since the epoch (RFC 7519).
    pub exp: i64,
    pub iat: i64,
    /// Unique token id, for audit and revocation lists.
    pub jti: String,
    pub iss: String,
}
