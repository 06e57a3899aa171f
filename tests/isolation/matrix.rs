//! One entry per RPC in `proto/`: how a caller of another tenant probes
//! it. `$name` in a request is one of the victim tenant's fixtures (see
//! `fixtures.rs`); `$own_*` are the caller's own.

/// How an RPC is probed across tenants.
pub enum Probe {
    /// Names the victim's resources: refused with NOT_FOUND or
    /// PERMISSION_DENIED, and nothing changes.
    Refused(&'static str),
    /// As `Refused`, and the victim's own admin gets an answer from the
    /// same call, so the refusal is about the tenant, not the request.
    Read(&'static str),
    /// A list: answered or refused, never showing a victim's id; the
    /// superadmin's same call does show one, so the probe can see.
    List(&'static str),
    /// Names no tenant's resource, and why.
    Exempt(&'static str),
}

use Probe::{Exempt, List, Read, Refused};

pub const MATRIX: &[(&str, Probe)] = &[
    // Catalog.
    (
        "CatalogService/CreateApi",
        Refused(
            r#"{"api": {"tenantId": "$tenant", "name": "Evil", "slug": "evil", "upstreams": [{"url": "http://127.0.0.1:9/"}]}}"#,
        ),
    ),
    ("CatalogService/GetApi", Read(r#"{"id": "$api"}"#)),
    (
        "CatalogService/ListApis",
        List(r#"{"tenantId": "$tenant"}"#),
    ),
    (
        "CatalogService/UpdateApi",
        Refused(r#"{"api": {"id": "$api", "name": "Evil"}, "updateMask": "name"}"#),
    ),
    ("CatalogService/DeleteApi", Refused(r#"{"id": "$api"}"#)),
    (
        "CatalogService/CreateChannel",
        Refused(
            r#"{"channel": {"tenantId": "$tenant", "name": "evil", "provider": "PROVIDER_OPENAI", "baseUrl": "http://127.0.0.1:9/v1", "models": ["gpt-x"]}, "secret": "sk-evil"}"#,
        ),
    ),
    ("CatalogService/GetChannel", Read(r#"{"id": "$channel"}"#)),
    (
        "CatalogService/ListChannels",
        List(r#"{"tenantId": "$tenant"}"#),
    ),
    (
        "CatalogService/UpdateChannel",
        Refused(
            r#"{"channel": {"id": "$channel", "baseUrl": "http://127.0.0.1:10/v1"}, "updateMask": "baseUrl"}"#,
        ),
    ),
    (
        "CatalogService/DeleteChannel",
        Refused(r#"{"id": "$channel"}"#),
    ),
    (
        "CatalogService/CreateModelPrice",
        Refused(
            r#"{"modelPrice": {"tenantId": "$tenant", "model": "evil", "inputMicrosPerMillionTokens": "1", "outputMicrosPerMillionTokens": "1"}}"#,
        ),
    ),
    ("CatalogService/GetModelPrice", Read(r#"{"id": "$price"}"#)),
    (
        "CatalogService/ListModelPrices",
        List(r#"{"tenantId": "$tenant"}"#),
    ),
    (
        "CatalogService/UpdateModelPrice",
        Refused(
            r#"{"modelPrice": {"id": "$price", "inputMicrosPerMillionTokens": "0"}, "updateMask": "inputMicrosPerMillionTokens"}"#,
        ),
    ),
    (
        "CatalogService/DeleteModelPrice",
        Refused(r#"{"id": "$price"}"#),
    ),
    (
        "CatalogService/CreateGroupMultiplier",
        Refused(
            r#"{"groupMultiplier": {"tenantId": "$tenant", "groupId": "$group", "multiplierPpm": "1"}}"#,
        ),
    ),
    (
        "CatalogService/GetGroupMultiplier",
        Read(r#"{"id": "$multiplier"}"#),
    ),
    (
        "CatalogService/ListGroupMultipliers",
        List(r#"{"tenantId": "$tenant", "groupId": "$group"}"#),
    ),
    (
        "CatalogService/UpdateGroupMultiplier",
        Refused(
            r#"{"groupMultiplier": {"id": "$multiplier", "multiplierPpm": "1"}, "updateMask": "multiplierPpm"}"#,
        ),
    ),
    (
        "CatalogService/DeleteGroupMultiplier",
        Refused(r#"{"id": "$multiplier"}"#),
    ),
    (
        "CatalogService/CreateGroupPrice",
        Refused(
            r#"{"groupPrice": {"tenantId": "$tenant", "groupId": "$group", "model": "evil", "inputMicrosPerMillionTokens": "1", "outputMicrosPerMillionTokens": "1"}}"#,
        ),
    ),
    (
        "CatalogService/GetGroupPrice",
        Read(r#"{"id": "$group_price"}"#),
    ),
    (
        "CatalogService/ListGroupPrices",
        List(r#"{"tenantId": "$tenant", "groupId": "$group"}"#),
    ),
    (
        "CatalogService/UpdateGroupPrice",
        Refused(
            r#"{"groupPrice": {"id": "$group_price", "inputMicrosPerMillionTokens": "0"}, "updateMask": "inputMicrosPerMillionTokens"}"#,
        ),
    ),
    (
        "CatalogService/DeleteGroupPrice",
        Refused(r#"{"id": "$group_price"}"#),
    ),
    (
        "CatalogService/Quote",
        Refused(
            r#"{"tenantId": "$tenant", "model": "gpt-x", "groupId": "$group", "promptTokens": "1000"}"#,
        ),
    ),
    ("CatalogService/GetSnapshot", Refused("{}")),
    ("CatalogService/WatchSnapshot", Refused("{}")),
    // Identity.
    (
        "IdentityService/CreateTenant",
        Refused(r#"{"tenant": {"slug": "evil-tenant", "name": "Evil"}}"#),
    ),
    ("IdentityService/GetTenant", Read(r#"{"id": "$tenant"}"#)),
    (
        "IdentityService/GetTenantBySlug",
        Refused(r#"{"slug": "$slug"}"#),
    ),
    ("IdentityService/ListTenants", List("{}")),
    (
        "IdentityService/UpdateTenant",
        Refused(r#"{"tenant": {"id": "$tenant", "name": "Evil"}, "updateMask": "name"}"#),
    ),
    (
        "IdentityService/DeleteTenant",
        Refused(r#"{"id": "$tenant"}"#),
    ),
    (
        "IdentityService/SignUp",
        Exempt("creates a tenant of its own; it names no existing one"),
    ),
    (
        "IdentityService/CreateUser",
        Refused(
            r#"{"user": {"tenantId": "$tenant", "username": "evil", "role": "ROLE_ADMIN"}, "password": "a-long-enough-password"}"#,
        ),
    ),
    ("IdentityService/GetUser", Read(r#"{"id": "$user"}"#)),
    (
        "IdentityService/ListUsers",
        List(r#"{"tenantId": "$tenant"}"#),
    ),
    (
        "IdentityService/UpdateUser",
        Refused(r#"{"user": {"id": "$user", "disabled": true}, "updateMask": "disabled"}"#),
    ),
    ("IdentityService/DeleteUser", Refused(r#"{"id": "$user"}"#)),
    (
        "IdentityService/ChangePassword",
        Refused(
            r#"{"userId": "$user", "currentPassword": "a-long-enough-password", "newPassword": "an-evil-long-password"}"#,
        ),
    ),
    (
        "IdentityService/Login",
        Exempt(
            "authenticates by tenant slug, user name and password; every caller gets the same answer",
        ),
    ),
    (
        "IdentityService/GetPublicKeys",
        Exempt("the token verification keys, public and the same for every caller"),
    ),
    (
        "IdentityService/CreateGroup",
        Refused(r#"{"group": {"tenantId": "$tenant", "name": "evil"}}"#),
    ),
    ("IdentityService/GetGroup", Read(r#"{"id": "$group"}"#)),
    (
        "IdentityService/ListGroups",
        List(r#"{"tenantId": "$tenant"}"#),
    ),
    (
        "IdentityService/UpdateGroup",
        Refused(r#"{"group": {"id": "$group", "name": "evil"}, "updateMask": "name"}"#),
    ),
    (
        "IdentityService/DeleteGroup",
        Refused(r#"{"id": "$group"}"#),
    ),
    (
        "IdentityService/AddGroupMember",
        Refused(r#"{"groupId": "$group", "userId": "$own_user"}"#),
    ),
    (
        "IdentityService/RemoveGroupMember",
        Refused(r#"{"groupId": "$group", "userId": "$user"}"#),
    ),
    (
        "IdentityService/ListGroupMembers",
        List(r#"{"groupId": "$group"}"#),
    ),
    (
        "IdentityService/CreateApiKey",
        Refused(r#"{"apiKey": {"tenantId": "$tenant", "userId": "$user", "name": "evil"}}"#),
    ),
    ("IdentityService/GetApiKey", Read(r#"{"id": "$key"}"#)),
    (
        "IdentityService/ListApiKeys",
        List(r#"{"tenantId": "$tenant"}"#),
    ),
    (
        "IdentityService/UpdateApiKey",
        Refused(r#"{"apiKey": {"id": "$key", "name": "evil"}, "updateMask": "name"}"#),
    ),
    ("IdentityService/DeleteApiKey", Refused(r#"{"id": "$key"}"#)),
    ("IdentityService/FreezeApiKey", Refused(r#"{"id": "$key"}"#)),
    (
        "IdentityService/UnfreezeApiKey",
        Refused(r#"{"id": "$key"}"#),
    ),
    (
        "IdentityService/CreateClient",
        Refused(r#"{"client": {"tenantId": "$tenant", "name": "evil", "clientId": "evil-1"}}"#),
    ),
    ("IdentityService/GetClient", Read(r#"{"id": "$client"}"#)),
    (
        "IdentityService/ListClients",
        List(r#"{"tenantId": "$tenant"}"#),
    ),
    (
        "IdentityService/UpdateClient",
        Refused(r#"{"client": {"id": "$client", "name": "evil"}, "updateMask": "name"}"#),
    ),
    (
        "IdentityService/DeleteClient",
        Refused(r#"{"id": "$client"}"#),
    ),
    (
        "IdentityService/AuthenticateKey",
        Refused(r#"{"keySha256": "$key_sha256"}"#),
    ),
    ("IdentityService/WatchKeys", Refused("{}")),
    // Quota.
    (
        "QuotaService/CreatePlan",
        Refused(r#"{"plan": {"tenantId": "$tenant", "name": "evil"}}"#),
    ),
    ("QuotaService/GetPlan", Read(r#"{"id": "$plan"}"#)),
    ("QuotaService/ListPlans", List(r#"{"tenantId": "$tenant"}"#)),
    (
        "QuotaService/UpdatePlan",
        Refused(r#"{"plan": {"id": "$plan", "name": "evil"}, "updateMask": "name"}"#),
    ),
    ("QuotaService/DeletePlan", Refused(r#"{"id": "$plan"}"#)),
    (
        "QuotaService/CreateRateLimitRule",
        Refused(
            r#"{"rateLimitRule": {"tenantId": "$tenant", "groupId": "$group", "name": "evil", "dimension": "LIMIT_DIMENSION_REQUESTS", "window": "LIMIT_WINDOW_DAY", "limit": "1", "enabled": true}}"#,
        ),
    ),
    ("QuotaService/GetRateLimitRule", Read(r#"{"id": "$rule"}"#)),
    (
        "QuotaService/ListRateLimitRules",
        List(r#"{"tenantId": "$tenant", "groupId": "$group"}"#),
    ),
    (
        "QuotaService/UpdateRateLimitRule",
        Refused(r#"{"rateLimitRule": {"id": "$rule", "limit": "1"}, "updateMask": "limit"}"#),
    ),
    (
        "QuotaService/DeleteRateLimitRule",
        Refused(r#"{"id": "$rule"}"#),
    ),
    (
        "QuotaService/Check",
        Refused(
            r#"{"requestId": "evil-1", "tenantId": "$tenant", "scopes": [{"kind": "SCOPE_KIND_KEY", "id": "$key", "planId": "$plan"}], "estimatedTokens": "1"}"#,
        ),
    ),
    (
        "QuotaService/Commit",
        Refused(
            r#"{"reservationId": "evil-1", "tenantId": "$tenant", "scopes": [{"kind": "SCOPE_KIND_KEY", "id": "$key", "planId": "$plan"}], "costMicros": "1000000"}"#,
        ),
    ),
    (
        "QuotaService/Lease",
        Refused(
            r#"{"edgeId": "evil", "tenantId": "$tenant", "scopes": [{"kind": "SCOPE_KIND_KEY", "id": "$key", "planId": "$plan"}], "dimension": "LIMIT_DIMENSION_REQUESTS", "requestedAmount": "10"}"#,
        ),
    ),
    (
        "QuotaService/ReleaseLease",
        Refused(r#"{"leaseId": "$key", "usedAmount": "10"}"#),
    ),
    (
        "QuotaService/LeaseBalance",
        Refused(
            r#"{"edgeId": "evil", "tenantId": "$tenant", "balanceOwner": {"kind": "BALANCE_OWNER_KIND_USER", "id": "$user"}, "requestedMicros": "1000"}"#,
        ),
    ),
    (
        "QuotaService/ReleaseBalanceLease",
        Refused(r#"{"leaseId": "$key", "usedMicros": "1000"}"#),
    ),
    (
        "QuotaService/GetBalance",
        Read(r#"{"owner": {"kind": "BALANCE_OWNER_KIND_USER", "id": "$user"}}"#),
    ),
    (
        "QuotaService/AdjustBalance",
        Refused(
            r#"{"owner": {"kind": "BALANCE_OWNER_KIND_USER", "id": "$user"}, "amountMicros": "-1000", "reason": "evil"}"#,
        ),
    ),
    (
        "QuotaService/ListLedgerEntries",
        Read(r#"{"owner": {"kind": "BALANCE_OWNER_KIND_USER", "id": "$user"}}"#),
    ),
    (
        "QuotaService/CreateVoucher",
        Refused(
            r#"{"voucher": {"tenantId": "$tenant", "code": "EVIL-VOUCHER-1", "amountMicros": "1000000000", "maxUses": 1}}"#,
        ),
    ),
    ("QuotaService/GetVoucher", Read(r#"{"id": "$voucher"}"#)),
    (
        "QuotaService/ListVouchers",
        List(r#"{"tenantId": "$tenant"}"#),
    ),
    (
        "QuotaService/DeleteVoucher",
        Refused(r#"{"id": "$voucher"}"#),
    ),
    (
        "QuotaService/RedeemVoucher",
        Refused(r#"{"code": "$voucher_code", "userId": "$own_user"}"#),
    ),
    (
        "QuotaService/GetBackendStatus",
        Exempt("the limiter's backend, which no tenant owns"),
    ),
    // Usage.
    (
        "UsageService/Ingest",
        Refused(
            r#"{"sequence": "1", "events": [{"eventId": "0192f0e0-0000-7000-8000-00000000e711", "tenantId": "$tenant", "keyId": "$key", "status": 200, "costMicros": "1000000"}]}"#,
        ),
    ),
    ("UsageService/ListLogs", List(r#"{"tenantId": "$tenant"}"#)),
    ("UsageService/GetLog", Read(r#"{"id": "$log"}"#)),
    ("UsageService/GetLogBodies", Read(r#"{"id": "$log"}"#)),
    (
        "UsageService/GetStats",
        List(r#"{"tenantId": "$tenant", "topLimit": 10}"#),
    ),
];
