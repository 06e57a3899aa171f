//! What exists, read once before planning: each tenant's resources of the
//! kinds the file manages, and the names that stand for ids.

use std::collections::{BTreeMap, HashMap, HashSet};

use gateway_proto::identity::v1 as pb;
use serde_json::Value;

use super::kinds::{self, Existing, Kind, Target};
use crate::ctx::Ctx;
use crate::error::{CliError, CliResult, Exit};

/// Names that stand for ids, by tenant and target; resources the plan
/// creates are placeholders until they exist.
#[derive(Debug, Default)]
pub struct Names {
    ids: HashMap<(String, Target), BTreeMap<String, String>>,
    planned: HashSet<(String, Target, String)>,
}

impl Names {
    pub fn insert(&mut self, tenant: &str, target: Target, name: &str, id: &str) {
        let scope = if target == Target::Tenant { "" } else { tenant };
        self.ids
            .entry((scope.to_owned(), target))
            .or_default()
            .insert(name.to_owned(), id.to_owned());
    }

    pub fn plan(&mut self, tenant: &str, target: Target, name: &str) {
        let scope = if target == Target::Tenant { "" } else { tenant };
        self.planned
            .insert((scope.to_owned(), target, name.to_owned()));
    }

    /// The id `name` stands for; a planned one reads `<new group gold>`.
    pub fn id(&self, tenant: &str, target: Target, name: &str) -> CliResult<String> {
        let scope = if target == Target::Tenant { "" } else { tenant };
        if let Some(id) = self
            .ids
            .get(&(scope.to_owned(), target))
            .and_then(|ids| ids.get(name))
        {
            return Ok(id.clone());
        }
        if self
            .planned
            .contains(&(scope.to_owned(), target, name.to_owned()))
        {
            return Ok(format!("<new {} {name}>", target_word(target)));
        }
        Err(CliError::new(
            Exit::NotFound,
            format!("NOT_FOUND: no {} named {name:?}", target_word(target)),
        ))
    }

    /// The name of an id, for identifying and exporting existing resources.
    pub fn name(&self, tenant: &str, target: Target, id: &str) -> Option<String> {
        let scope = if target == Target::Tenant { "" } else { tenant };
        let ids = self.ids.get(&(scope.to_owned(), target))?;
        ids.iter()
            .find(|(_, known)| known.as_str() == id)
            .map(|(name, _)| name.clone())
    }
}

fn target_word(target: Target) -> &'static str {
    match target {
        Target::User => "user",
        Target::Group => "group",
        Target::Plan => "plan",
        Target::Tenant => "tenant",
    }
}

/// One tenant as it is: `id` is `None` when it does not exist yet.
#[derive(Debug, Default)]
pub struct TenantState {
    pub slug: String,
    pub id: Option<String>,
    pub existing: HashMap<Kind, Vec<Existing>>,
    /// group id -> member usernames.
    pub members: HashMap<String, Vec<(String, String)>>,
}

/// A tenant by slug; `None` when there is none (or the caller may not see it).
pub async fn tenant_id(ctx: &Ctx, slug: &str) -> CliResult<Option<String>> {
    let request = pb::GetTenantBySlugRequest {
        slug: slug.to_owned(),
    };
    match ctx.identity().get_tenant_by_slug(request).await {
        Ok(answer) => Ok(answer.into_inner().tenant.map(|tenant| tenant.id)),
        Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
        Err(status) => Err(status.into()),
    }
}

/// Reads the kinds in `kinds` (plus those needed for names) of one tenant.
pub async fn load(
    ctx: &Ctx,
    slug: &str,
    id: Option<String>,
    kinds: &[Kind],
    names: &mut Names,
) -> CliResult<TenantState> {
    let mut state = TenantState {
        slug: slug.to_owned(),
        id: id.clone(),
        ..TenantState::default()
    };
    let Some(id) = id else { return Ok(state) };
    let mut wanted: Vec<Kind> = vec![Kind::User, Kind::Group, Kind::Plan];
    for kind in kinds {
        if !wanted.contains(kind) {
            wanted.push(*kind);
        }
    }
    for kind in wanted {
        let existing = kinds::list(ctx, kind, &id).await?;
        let target = match kind {
            Kind::User => Some((Target::User, "username")),
            Kind::Group => Some((Target::Group, "name")),
            Kind::Plan => Some((Target::Plan, "name")),
            _ => None,
        };
        if let Some((target, field)) = target {
            for item in &existing {
                let name = item
                    .value
                    .get(field)
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                names.insert(slug, target, name, &item.id);
            }
        }
        state.existing.insert(kind, existing);
    }
    if kinds.contains(&Kind::Group) {
        for group in state.existing.get(&Kind::Group).into_iter().flatten() {
            state
                .members
                .insert(group.id.clone(), members(ctx, &group.id).await?);
        }
    }
    Ok(state)
}

/// (user id, username) of a group's members.
async fn members(ctx: &Ctx, group_id: &str) -> CliResult<Vec<(String, String)>> {
    let request = pb::ListGroupMembersRequest {
        group_id: group_id.to_owned(),
        ..Default::default()
    };
    let members = crate::nouns::all_pages!(ctx.identity(), list_group_members, request, members);
    Ok(members
        .into_iter()
        .map(|member| (member.user_id, member.username))
        .collect())
}

/// Every tenant's slug and id, for `shared_tenants` and for export.
pub async fn tenants(ctx: &Ctx, names: &mut Names) -> CliResult<Vec<(String, String)>> {
    let request = pb::ListTenantsRequest::default();
    let all = match async {
        Ok::<_, tonic::Status>(crate::nouns::all_pages!(
            ctx.identity(),
            list_tenants,
            request,
            tenants
        ))
    }
    .await
    {
        Ok(all) => all,
        // A tenant admin may not list tenants: they know their own.
        Err(status) if status.code() == tonic::Code::PermissionDenied => Vec::new(),
        Err(status) => return Err(status.into()),
    };
    for tenant in &all {
        names.insert("", Target::Tenant, &tenant.slug, &tenant.id);
    }
    Ok(all
        .into_iter()
        .map(|tenant| (tenant.slug, tenant.id))
        .collect())
}
