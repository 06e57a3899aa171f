//! One of every resource in a tenant, made by its own admin, with the ids
//! the matrix's `$name` placeholders stand for.

use std::collections::BTreeMap;

use gateway_e2e::{ADMIN_KEY, TenantFixture, TestSuite};
use gateway_proto::usage::v1 as usage;
use serde_json::{Value, json};

use crate::call::{Credential, call};

/// A tenant's fixtures by placeholder name, and its admin's credential.
pub struct Fixtures {
    pub ids: BTreeMap<String, String>,
    pub admin: Credential,
}

impl Fixtures {
    /// Every value that must never reach another tenant's caller (the
    /// slug aside: a slug is public, it is how users log in).
    pub fn secrets(&self) -> impl Iterator<Item = &String> {
        self.ids
            .iter()
            .filter(|(name, _)| *name != "slug")
            .map(|(_, value)| value)
    }
}

pub fn superadmin() -> Credential {
    ("x-admin-key", ADMIN_KEY.to_owned())
}

pub fn bearer(token: &str) -> Credential {
    ("authorization", format!("Bearer {token}"))
}

/// `template` with every `"$name"` string replaced: `$own_*` from the
/// caller's fixtures, the rest from the victim's.
pub fn fill(template: &Value, victim: &Fixtures, own: &Fixtures) -> Value {
    match template {
        Value::String(text) if text.starts_with('$') => {
            let name = &text[1..];
            let (source, key) = match name.strip_prefix("own_") {
                Some(key) => (own, key),
                None => (victim, name),
            };
            let value = source.ids.get(key);
            Value::String(value.unwrap_or_else(|| panic!("no fixture {text}")).clone())
        }
        Value::Array(items) => {
            Value::Array(items.iter().map(|item| fill(item, victim, own)).collect())
        }
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(name, value)| (name.clone(), fill(value, victim, own)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// What each fixture is made with: the RPC, the request, and where the
/// new id is in the answer.
const STEPS: &[(&str, &str, &str, &str)] = &[
    (
        "group",
        "IdentityService/CreateGroup",
        r#"{"group": {"tenantId": "$tenant", "name": "eng"}}"#,
        "/group/id",
    ),
    (
        "member",
        "IdentityService/AddGroupMember",
        r#"{"groupId": "$group", "userId": "$user"}"#,
        "",
    ),
    (
        "client",
        "IdentityService/CreateClient",
        r#"{"client": {"tenantId": "$tenant", "name": "app", "clientId": "app-1"}}"#,
        "/client/id",
    ),
    (
        "key",
        "IdentityService/CreateApiKey",
        r#"{"apiKey": {"tenantId": "$tenant", "userId": "$user", "name": "k"}}"#,
        "/apiKey/id",
    ),
    (
        "api",
        "CatalogService/CreateApi",
        r#"{"api": {"tenantId": "$tenant", "name": "Echo", "slug": "echo", "enabled": true, "upstreams": [{"url": "http://127.0.0.1:9/"}]}}"#,
        "/api/id",
    ),
    (
        "channel",
        "CatalogService/CreateChannel",
        r#"{"channel": {"tenantId": "$tenant", "name": "main", "provider": "PROVIDER_OPENAI", "baseUrl": "http://127.0.0.1:9/v1", "models": ["gpt-x"], "enabled": true}, "secret": "sk-fixture"}"#,
        "/channel/id",
    ),
    (
        "price",
        "CatalogService/CreateModelPrice",
        r#"{"modelPrice": {"tenantId": "$tenant", "model": "gpt-x", "inputMicrosPerMillionTokens": "1000", "outputMicrosPerMillionTokens": "2000"}}"#,
        "/modelPrice/id",
    ),
    (
        "multiplier",
        "CatalogService/CreateGroupMultiplier",
        r#"{"groupMultiplier": {"tenantId": "$tenant", "groupId": "$group", "multiplierPpm": "1500000"}}"#,
        "/groupMultiplier/id",
    ),
    (
        "group_price",
        "CatalogService/CreateGroupPrice",
        r#"{"groupPrice": {"tenantId": "$tenant", "groupId": "$group", "model": "gpt-x", "inputMicrosPerMillionTokens": "500", "outputMicrosPerMillionTokens": "500"}}"#,
        "/groupPrice/id",
    ),
    (
        "plan",
        "QuotaService/CreatePlan",
        r#"{"plan": {"tenantId": "$tenant", "name": "basic", "requestsPerMinute": "100"}}"#,
        "/plan/id",
    ),
    (
        "rule",
        "QuotaService/CreateRateLimitRule",
        r#"{"rateLimitRule": {"tenantId": "$tenant", "groupId": "$group", "name": "daily", "dimension": "LIMIT_DIMENSION_REQUESTS", "window": "LIMIT_WINDOW_DAY", "limit": "1000", "enabled": true}}"#,
        "/rateLimitRule/id",
    ),
    (
        "voucher",
        "QuotaService/CreateVoucher",
        r#"{"voucher": {"tenantId": "$tenant", "code": "$voucher_code", "amountMicros": "1000", "maxUses": 5}}"#,
        "/voucher/id",
    ),
    (
        "balance",
        "QuotaService/AdjustBalance",
        r#"{"owner": {"kind": "BALANCE_OWNER_KIND_USER", "id": "$user"}, "amountMicros": "5000000", "reason": "top-up", "idempotencyKey": "fixture-1"}"#,
        "",
    ),
];

/// Makes one of every resource in `tenant` as its admin.
pub async fn make(suite: &TestSuite, slug: &str, tenant: &TenantFixture) -> Fixtures {
    let mut fixtures = Fixtures {
        ids: BTreeMap::from([
            ("tenant".to_owned(), tenant.id.clone()),
            ("slug".to_owned(), slug.to_owned()),
            ("user".to_owned(), tenant.user_id.clone()),
            ("admin".to_owned(), tenant.admin_id.clone()),
            (
                "voucher_code".to_owned(),
                format!("{}-VOUCHER-1", slug.to_uppercase()),
            ),
        ]),
        admin: bearer(&tenant.admin_token),
    };
    for (name, rpc, template, id_at) in STEPS {
        let request = fill(
            &serde_json::from_str(template).unwrap(),
            &fixtures,
            &fixtures,
        );
        let channel = crate::channel_for(suite, rpc).await;
        let answer = call(&channel, &fixtures.admin, &crate::full_name(rpc), &request)
            .await
            .unwrap_or_else(|status| panic!("{slug}: {rpc} failed: {status:?}"));
        if let Some(id) = answer.pointer(id_at).and_then(Value::as_str) {
            fixtures.ids.insert((*name).to_owned(), id.to_owned());
        } else {
            assert!(
                id_at.is_empty(),
                "{slug}: {rpc} answered no {id_at}: {answer}"
            );
        }
        if *name == "key" {
            let key = answer["key"].as_str().expect("the new key").to_owned();
            let sha = gateway_edge::auth::sha256_hex(&key);
            fixtures.ids.insert("key_sha256".to_owned(), sha);
        }
    }
    let log = ingest_log(suite, &fixtures).await;
    fixtures.ids.insert("log".to_owned(), log);
    fixtures
}

/// One usage event of the tenant, sent as the edge sends it; its log id.
async fn ingest_log(suite: &TestSuite, fixtures: &Fixtures) -> String {
    use gateway_proto::usage::v1::usage_service_client::UsageServiceClient;
    let event_id = uuid::Uuid::now_v7().to_string();
    let event = usage::UsageEvent {
        event_id: event_id.clone(),
        time: Some(gateway_proto::timestamp_from_micros(
            gateway_storage::now_micros(),
        )),
        tenant_id: fixtures.ids["tenant"].clone(),
        user_id: fixtures.ids["user"].clone(),
        key_id: fixtures.ids["key"].clone(),
        api_id: fixtures.ids["api"].clone(),
        method: "GET".to_owned(),
        path: "/echo/".to_owned(),
        status: 200,
        bodies: Some(usage::AuditBodies {
            request_body: b"fixture request".to_vec(),
            ..usage::AuditBodies::default()
        }),
        ..usage::UsageEvent::default()
    };
    let mut client = UsageServiceClient::new(suite.channel(suite.addresses.usage).await);
    let batch = usage::IngestRequest {
        sequence: 1,
        events: vec![event],
    };
    let mut request = tonic::Request::new(tokio_stream::once(batch));
    let (name, value) = superadmin();
    request.metadata_mut().insert(name, value.parse().unwrap());
    let mut acks = client.ingest(request).await.unwrap().into_inner();
    acks.message().await.unwrap().expect("an ack");
    event_id
}

/// The victim's state as its own admin sees it through every list and
/// read of the matrix, to compare before and after the probes.
pub async fn state(suite: &TestSuite, victim: &Fixtures) -> Vec<(String, Value)> {
    use crate::matrix::{MATRIX, Probe};
    let mut seen = Vec::new();
    for (rpc, probe) in MATRIX {
        let (Probe::List(template) | Probe::Read(template)) = probe else {
            continue;
        };
        let request = fill(&serde_json::from_str(template).unwrap(), victim, victim);
        let channel = crate::channel_for(suite, rpc).await;
        let answer = call(&channel, &victim.admin, &crate::full_name(rpc), &request).await;
        let answer = answer.unwrap_or_else(|status| json!({ "error": status.code() as i32 }));
        seen.push(((*rpc).to_owned(), answer));
    }
    seen
}
