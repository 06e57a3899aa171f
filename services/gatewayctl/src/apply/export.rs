//! `export`: the current state in apply's format, ids turned into names
//! and secrets into `{stored: hint}` references, so that applying an
//! export changes nothing.

use serde_json::{Map, Value, json};

use super::document::{Document, GlobalSpec, TenantSpec};
use super::kinds::{self, COMMON_OUTPUT, Existing, Kind, ORDER, Target};
use super::state::{self, Names, TenantState};
use super::values;
use super::{ExportArgs, progress};
use crate::ctx::Ctx;
use crate::error::{CliError, CliResult, Exit};

pub async fn export(ctx: &Ctx, args: ExportArgs) -> CliResult<()> {
    let mut names = Names::default();
    let everyone = state::tenants(ctx, &mut names).await?;
    let scope = scope(ctx, &everyone).await?;
    let bar = progress(ctx, scope.len(), "exporting");
    let mut document = Document::default();
    for (slug, id) in &scope {
        bar.set_message(slug.clone());
        names.insert("", Target::Tenant, slug, id);
        let state = state::load(ctx, slug, Some(id.clone()), &ORDER, &mut names).await?;
        document.tenants.push(tenant_spec(&state, &names));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let superadmin = crate::session::claims(ctx).is_none_or(|claims| claims.role == "SUPERADMIN");
    if ctx.tenant().await?.is_none() && superadmin {
        let prices = kinds::list(ctx, Kind::Price, "").await?;
        let items: Vec<Value> = prices
            .iter()
            .map(|price| item(Kind::Price, "", price, &TenantState::default(), &names))
            .collect();
        if !items.is_empty() {
            document.global = Some(GlobalSpec {
                prices: Some(items),
            });
        }
    }
    let text = serde_norway::to_string(&document)
        .map_err(|error| CliError::new(Exit::Failure, error.to_string()))?;
    let text = format!("# gatewayctl export: apply it with `gatewayctl apply -f`\n{text}");
    match args.file {
        Some(path) => std::fs::write(&path, text)
            .map_err(|error| CliError::new(Exit::Failure, format!("{}: {error}", path.display()))),
        None => ctx.print(&text),
    }
}

/// `--tenant`, else every tenant a superadmin sees, else the caller's own.
async fn scope(ctx: &Ctx, everyone: &[(String, String)]) -> CliResult<Vec<(String, String)>> {
    if let Some(id) = ctx.tenant().await? {
        return own(ctx, &id).await.map(|tenant| vec![tenant]);
    }
    if !everyone.is_empty() {
        return Ok(everyone.to_vec());
    }
    let id = ctx.tenant_or_own().await?;
    own(ctx, &id).await.map(|tenant| vec![tenant])
}

async fn own(ctx: &Ctx, id: &str) -> CliResult<(String, String)> {
    use gateway_proto::identity::v1 as pb;
    let tenant = ctx
        .identity()
        .get_tenant(pb::GetTenantRequest { id: id.to_owned() })
        .await?
        .into_inner()
        .tenant;
    let tenant = crate::nouns::present(tenant, "tenant")?;
    Ok((tenant.slug, tenant.id))
}

fn tenant_spec(state: &TenantState, names: &Names) -> TenantSpec {
    let section = |kind: Kind| -> Option<Vec<Value>> {
        let existing = state.existing.get(&kind)?;
        let items: Vec<Value> = existing
            .iter()
            .map(|found| item(kind, &state.slug, found, state, names))
            .collect();
        (!items.is_empty()).then_some(items)
    };
    TenantSpec {
        slug: state.slug.clone(),
        name: None,
        users: section(Kind::User),
        groups: section(Kind::Group),
        plans: section(Kind::Plan),
        rules: section(Kind::Rule),
        apis: section(Kind::Api),
        channels: section(Kind::Channel),
        prices: section(Kind::Price),
        multipliers: section(Kind::Multiplier),
        group_prices: section(Kind::GroupPrice),
        keys: section(Kind::Key),
    }
}

/// One resource as the file writes it.
fn item(
    kind: Kind,
    tenant: &str,
    existing: &Existing,
    state: &TenantState,
    names: &Names,
) -> Value {
    let mut value = without_defaults(&existing.value).unwrap_or_else(|| Value::Object(Map::new()));
    for field in COMMON_OUTPUT.iter().chain(kind.output_only()) {
        let _ = values::take(&mut value, field);
    }
    for spec in kind.refs() {
        let Some(ids) = values::take(&mut value, spec.field) else {
            continue;
        };
        let name = |id: &Value| {
            let id = id.as_str().unwrap_or_default();
            Value::String(
                names
                    .name(tenant, spec.target, id)
                    .unwrap_or_else(|| id.to_owned()),
            )
        };
        let named = match &ids {
            Value::Array(ids) => Value::Array(ids.iter().map(name).collect()),
            id => name(id),
        };
        values::put(&mut value, spec.name, named);
    }
    secrets_as_references(kind, existing, &mut value);
    if kind == Kind::Group {
        let members: Vec<Value> = state
            .members
            .get(&existing.id)
            .into_iter()
            .flatten()
            .map(|(_, username)| json!(username))
            .collect();
        if !members.is_empty() {
            values::put(&mut value, "members", Value::Array(members));
        }
    }
    value
}

fn secrets_as_references(kind: Kind, existing: &Existing, value: &mut Value) {
    if let Some(spec) = kind.outside_secret()
        && let Some(hint_field) = spec.hint
    {
        let hint = values::take(value, hint_field);
        let shown = values::get(&existing.value, hint_field)
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !shown.is_empty() || hint.is_some() {
            values::put(value, spec.path, json!({ "stored": shown }));
        }
    }
    if let Some(jwt) =
        values::get(&existing.value, "auth.jwt.hs256_secret_hint").and_then(Value::as_str)
        && !jwt.is_empty()
    {
        let _ = values::take(value, "auth.jwt.hs256_secret_hint");
        values::put(value, "auth.jwt.hs256_secret", json!({ "stored": jwt }));
    }
    if let Some(Value::Array(users)) = values::get(value, "auth.basic.users").cloned() {
        let users: Vec<Value> = users
            .into_iter()
            .map(|mut user| {
                values::put(&mut user, "password", json!({ "stored": "" }));
                user
            })
            .collect();
        values::put(value, "auth.basic.users", Value::Array(users));
    }
}

/// The value without its default fields (an object of only defaults goes too).
fn without_defaults(value: &Value) -> Option<Value> {
    match value {
        Value::Object(fields) => {
            let kept: Map<String, Value> = fields
                .iter()
                .filter_map(|(key, inner)| {
                    without_defaults(inner).map(|inner| (key.clone(), inner))
                })
                .collect();
            (!kept.is_empty()).then_some(Value::Object(kept))
        }
        Value::Array(items) if !items.is_empty() => Some(Value::Array(
            items
                .iter()
                .map(|item| without_defaults(item).unwrap_or_else(|| json!({})))
                .collect(),
        )),
        other if values::is_default(other) => None,
        other => Some(other.clone()),
    }
}
