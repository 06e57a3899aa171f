//! Names people know (a tenant's slug, a user's username, an API's name)
//! turned into the ids the services take.

use crate::ctx::Ctx;
use crate::error::{CliError, CliResult, Exit};
use crate::nouns::{Groups, Plans, Users};
use crate::resource::{Filter, Resource};

/// What a `--user` / `--group` / `--plan` flag names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefKind {
    User,
    Group,
    Plan,
}

pub async fn id_of(ctx: &Ctx, kind: RefKind, reference: &str) -> CliResult<String> {
    match kind {
        RefKind::User => find::<Users>(ctx, reference).await.map(|user| user.id),
        RefKind::Group => find::<Groups>(ctx, reference).await.map(|group| group.id),
        RefKind::Plan => find::<Plans>(ctx, reference).await.map(|plan| plan.id),
    }
}

/// A tenant by id or slug.
pub async fn tenant_id(ctx: &Ctx, reference: &str) -> CliResult<String> {
    use gateway_proto::identity::v1 as pb;
    if uuid::Uuid::parse_str(reference).is_ok() {
        let found = ctx
            .identity()
            .get_tenant(pb::GetTenantRequest {
                id: reference.to_owned(),
            })
            .await?;
        return found
            .into_inner()
            .tenant
            .map(|tenant| tenant.id)
            .ok_or_else(|| CliError::not_found(format!("no tenant {reference:?}")));
    }
    let found = ctx
        .identity()
        .get_tenant_by_slug(pb::GetTenantBySlugRequest {
            slug: reference.to_owned(),
        })
        .await?;
    found
        .into_inner()
        .tenant
        .map(|tenant| tenant.id)
        .ok_or_else(|| CliError::not_found(format!("no tenant {reference:?}")))
}

/// The one resource whose id or name is `reference`, within `--tenant` when given.
pub async fn find<R: Resource>(ctx: &Ctx, reference: &str) -> CliResult<R::Message> {
    let filter = Filter {
        tenant_id: ctx.tenant().await?,
        ..Filter::default()
    };
    let all = R::list(ctx, &filter).await?;
    match pick::<R>(all.clone(), reference) {
        Err(error) if error.exit == Exit::NotFound => match R::canonical(ctx, reference).await {
            Ok(canonical) if canonical != reference => {
                pick::<R>(all, &canonical).map_err(|_| error)
            }
            _ => Err(error),
        },
        found => found,
    }
}

/// By id first, then by name; a name shared by several is refused, not guessed.
pub fn pick<R: Resource>(all: Vec<R::Message>, reference: &str) -> CliResult<R::Message> {
    if let Some(found) = all.iter().find(|item| R::id(item) == reference) {
        return Ok(found.clone());
    }
    let mut named: Vec<R::Message> = all
        .into_iter()
        .filter(|item| R::name(item) == reference)
        .collect();
    match named.len() {
        0 => Err(CliError::not_found(format!(
            "NOT_FOUND: no {} named {reference:?}",
            R::NOUN
        ))),
        1 => Ok(named.remove(0)),
        count => Err(CliError::usage(format!(
            "{count} {}s are named {reference:?} (in different tenants or owners); use the id or --tenant",
            R::NOUN
        ))),
    }
}
