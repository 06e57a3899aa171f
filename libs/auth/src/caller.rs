//! Who is calling, as the auth layer resolved it.

use serde::{Deserialize, Serialize};

/// A user's role, from least to most privileged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Role {
    /// Manages only their own keys and password.
    User,
    /// Manages their tenant.
    Admin,
    /// Manages everything.
    Superadmin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "USER",
            Self::Admin => "ADMIN",
            Self::Superadmin => "SUPERADMIN",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "USER" => Some(Self::User),
            "ADMIN" => Some(Self::Admin),
            "SUPERADMIN" => Some(Self::Superadmin),
            _ => None,
        }
    }
}

/// The authenticated caller of an RPC, put in the request's extensions by
/// [`crate::AuthLayer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// No credentials (only open RPCs let it through).
    Anonymous,
    /// The emergency admin key: a superadmin outside any tenant.
    AdminKey,
    /// A user with a valid JWT.
    User {
        user_id: String,
        tenant_id: String,
        role: Role,
    },
}

impl Caller {
    /// The caller [`crate::AuthLayer`] resolved for this request
    /// (anonymous if the service runs without the layer).
    pub fn of<T>(request: &tonic::Request<T>) -> Self {
        request
            .extensions()
            .get::<Self>()
            .cloned()
            .unwrap_or(Self::Anonymous)
    }

    pub fn is_superadmin(&self) -> bool {
        matches!(self, Self::AdminKey)
            || matches!(
                self,
                Self::User {
                    role: Role::Superadmin,
                    ..
                }
            )
    }

    /// The role the caller acts with (`None` when anonymous).
    pub fn role(&self) -> Option<Role> {
        match self {
            Self::Anonymous => None,
            Self::AdminKey => Some(Role::Superadmin),
            Self::User { role, .. } => Some(*role),
        }
    }

    pub fn user_id(&self) -> Option<&str> {
        match self {
            Self::User { user_id, .. } => Some(user_id),
            _ => None,
        }
    }

    pub fn tenant_id(&self) -> Option<&str> {
        match self {
            Self::User { tenant_id, .. } => Some(tenant_id),
            _ => None,
        }
    }

    /// True if the caller may see resources of `tenant_id` at all: a
    /// superadmin sees every tenant, anyone else only their own.
    pub fn can_see_tenant(&self, tenant_id: &str) -> bool {
        self.is_superadmin() || self.tenant_id() == Some(tenant_id)
    }

    /// True if the caller administers `tenant_id`.
    pub fn administers(&self, tenant_id: &str) -> bool {
        self.is_superadmin()
            || (self.role() == Some(Role::Admin) && self.tenant_id() == Some(tenant_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(tenant: &str, role: Role) -> Caller {
        Caller::User {
            user_id: "u".to_owned(),
            tenant_id: tenant.to_owned(),
            role,
        }
    }

    #[test]
    fn tenant_visibility_and_administration() {
        assert!(Caller::AdminKey.can_see_tenant("a") && Caller::AdminKey.administers("a"));
        assert!(user("a", Role::User).can_see_tenant("a"));
        assert!(!user("a", Role::User).administers("a"));
        assert!(user("a", Role::Admin).administers("a"));
        assert!(!user("a", Role::Admin).administers("b"));
        assert!(!user("a", Role::Admin).can_see_tenant("b"));
        assert!(user("a", Role::Superadmin).administers("b"));
        assert!(!Caller::Anonymous.can_see_tenant("a"));
    }

    #[test]
    fn roles_round_trip_and_order() {
        for role in [Role::User, Role::Admin, Role::Superadmin] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert!(Role::User < Role::Admin && Role::Admin < Role::Superadmin);
        assert_eq!(Role::parse("root"), None);
    }
}
