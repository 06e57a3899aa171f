//! Admin authentication shared by every gRPC service.
//!
//! Identity signs JWTs ([`Claims`]); every service verifies them locally
//! with identity's public keys ([`Verifier`]), so no call is made per
//! request. The emergency admin key (`x-admin-key`) acts as superadmin for
//! bootstrap and break-glass. [`AuthLayer`] resolves the [`Caller`] of each
//! call and enforces a per-RPC [`Access`] table, denying any RPC the table
//! does not name.

mod caller;
mod claims;
mod config;
pub mod directory;
pub mod key_hash;
mod layer;
pub mod password;
pub mod pem;
pub mod remote;
mod verifier;

pub use caller::{Caller, Role};
pub use claims::Claims;
pub use config::AuthConfig;
pub use layer::{Access, AccessPolicy, Auth, AuthLayer};
pub use verifier::{AdminKey, AuthError, Verifier, VerifyingKey};

/// Metadata key of the emergency admin key.
pub const ADMIN_KEY_HEADER: &str = "x-admin-key";
