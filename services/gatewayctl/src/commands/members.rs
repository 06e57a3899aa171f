//! Group membership: `members list|add|remove GROUP [USER]`.

use gateway_proto::identity::v1 as pb;

use crate::ctx::Ctx;
use crate::error::CliResult;
use crate::nouns::{Groups, Users, all_pages};
use crate::output;
use crate::resolve;

#[derive(Debug, clap::Subcommand)]
pub enum MembersCommand {
    /// The group's members.
    #[command(visible_alias = "ls")]
    List { group: String },
    /// Add a user (username or id) to a group.
    Add { group: String, user: String },
    /// Remove a user from a group.
    #[command(visible_alias = "rm")]
    Remove { group: String, user: String },
}

const COLUMNS: &[output::Column] = &[
    ("USER ID", "user_id"),
    ("USERNAME", "username"),
    ("SINCE", "create_time"),
];

pub async fn run(ctx: &Ctx, command: MembersCommand) -> CliResult<()> {
    match command {
        MembersCommand::List { group } => {
            let group = resolve::find::<Groups>(ctx, &group).await?;
            let request = pb::ListGroupMembersRequest {
                group_id: group.id,
                ..Default::default()
            };
            let members = all_pages!(ctx.identity(), list_group_members, request, members);
            ctx.print(&output::list(ctx.format, &members, COLUMNS)?)
        }
        MembersCommand::Add { group, user } => {
            let (group, user) = (
                resolve::find::<Groups>(ctx, &group).await?,
                resolve::find::<Users>(ctx, &user).await?,
            );
            let request = pb::AddGroupMemberRequest {
                group_id: group.id.clone(),
                user_id: user.id.clone(),
            };
            let answer = ctx.identity().add_group_member(request).await?.into_inner();
            match answer.member {
                Some(member) if ctx.format != output::Format::Table => {
                    ctx.print(&output::one(ctx.format, &member)?)
                }
                _ => ctx.note(&format!("added {} to group {}", user.username, group.name)),
            }
        }
        MembersCommand::Remove { group, user } => {
            let (group, user) = (
                resolve::find::<Groups>(ctx, &group).await?,
                resolve::find::<Users>(ctx, &user).await?,
            );
            let request = pb::RemoveGroupMemberRequest {
                group_id: group.id.clone(),
                user_id: user.id.clone(),
            };
            ctx.identity().remove_group_member(request).await?;
            ctx.note(&format!(
                "removed {} from group {}",
                user.username, group.name
            ))
        }
    }
}
