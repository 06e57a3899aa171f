//! Running a plan, in order: tenants, then each kind as it may be named by
//! the next ones, deletions last and in reverse. The first refusal stops
//! the run and says how far it got.

use gateway_proto::identity::v1 as pb;

use super::kinds::{self, Kind, Target};
use super::plan::{self, Action, Change};
use super::show;
use super::state::Names;
use crate::ctx::Ctx;
use crate::error::{CliError, CliResult};
use crate::nouns::{Tenants, present};
use crate::resource::Resource;

/// Plaintexts of the keys the run created, by `tenant/user/name`.
pub type NewKeys = Vec<(String, String)>;

pub async fn run(ctx: &Ctx, changes: &[Change], names: &mut Names) -> CliResult<NewKeys> {
    let progress = super::progress(ctx, changes.len(), "applying");
    let mut new_keys = Vec::new();
    for (done, change) in changes.iter().enumerate() {
        progress.set_message(show::title(change));
        if let Err(error) = run_one(ctx, change, names, &mut new_keys).await {
            progress.finish_and_clear();
            return Err(CliError::new(
                error.exit,
                format!(
                    "{} failed after {done} of {} changes: {}",
                    show::title(change),
                    changes.len(),
                    error.message
                ),
            ));
        }
        progress.inc(1);
    }
    progress.finish_and_clear();
    Ok(new_keys)
}

async fn run_one(
    ctx: &Ctx,
    change: &Change,
    names: &mut Names,
    new_keys: &mut NewKeys,
) -> CliResult<()> {
    let tenant = change.tenant.as_str();
    let tenant_id = if tenant.is_empty() {
        String::new()
    } else {
        names.id("", Target::Tenant, tenant)?
    };
    match (&change.action, change.kind) {
        (Action::CreateTenant { name }, _) => {
            let wanted = pb::Tenant {
                slug: tenant.to_owned(),
                name: name.clone(),
                ..Default::default()
            };
            let (created, _) = Tenants::create(ctx, wanted, None).await?;
            names.insert("", Target::Tenant, tenant, &created.id);
        }
        (Action::Create { item }, Some(kind)) => {
            let prepared = plan::prepare(kind, item, tenant, &tenant_id, names)?;
            let secret = match &prepared.outside {
                Some(reference) => Some(reference.resolve()?.ok_or_else(|| {
                    CliError::usage(format!(
                        "{} needs a real secret ({{env: VAR}} or {{file: PATH}}) to be created",
                        change.key
                    ))
                })?),
                None => None,
            };
            let (id, plaintext) = kinds::create(ctx, kind, &prepared.send, secret).await?;
            remember(names, kind, tenant, &change.key, &id);
            if let Some(plaintext) = plaintext {
                new_keys.push((format!("{tenant}/{}", change.key), plaintext));
            }
        }
        (
            Action::Update {
                existing,
                item,
                mask,
                send_secret,
                ..
            },
            Some(kind),
        ) => {
            let prepared = plan::prepare(kind, item, tenant, &tenant_id, names)?;
            let value = plan::merged(existing, &prepared.send);
            let secret = match (&prepared.outside, send_secret) {
                (Some(reference), true) => reference.resolve()?,
                _ => None,
            };
            kinds::update(ctx, kind, &value, mask.clone(), secret).await?;
        }
        (Action::Delete { id }, Some(kind)) => kinds::delete(ctx, kind, id).await?,
        (Action::AddMember { group, username }, _) => {
            let request = pb::AddGroupMemberRequest {
                group_id: names.id(tenant, Target::Group, group)?,
                user_id: names.id(tenant, Target::User, username)?,
            };
            present(
                ctx.identity()
                    .add_group_member(request)
                    .await?
                    .into_inner()
                    .member,
                "member",
            )?;
        }
        (Action::RemoveMember { group, user_id }, _) => {
            let request = pb::RemoveGroupMemberRequest {
                group_id: names.id(tenant, Target::Group, group)?,
                user_id: user_id.clone(),
            };
            ctx.identity().remove_group_member(request).await?;
        }
        (_, None) => return Err(CliError::usage("a change without a kind")),
    }
    Ok(())
}

/// Later items may name what was just created.
fn remember(names: &mut Names, kind: Kind, tenant: &str, key: &str, id: &str) {
    let target = match kind {
        Kind::User => Target::User,
        Kind::Group => Target::Group,
        Kind::Plan => Target::Plan,
        _ => return,
    };
    names.insert(tenant, target, key, id);
}
