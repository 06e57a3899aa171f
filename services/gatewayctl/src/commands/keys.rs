//! Verbs only some nouns have: freezing keys, changing a password.

use gateway_proto::identity::v1 as pb;
use sha2::Digest as _;

use crate::ctx::Ctx;
use crate::error::{CliError, CliResult};
use crate::nouns::{Keys, Users, present};
use crate::output;
use crate::resolve;
use crate::resource::{self, Verb};

// Parsed once per run: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, clap::Subcommand)]
pub enum KeyVerb {
    #[command(flatten)]
    Common(Verb),
    /// Refuse the key at the edge until it is unfrozen.
    Freeze { reference: String },
    /// Accept a frozen key again.
    Unfreeze { reference: String },
    /// What the edge would make of a key (read from stdin): its status and
    /// principal, looked up by the key's SHA-256 (SUPERADMIN).
    Authenticate {
        /// The X-Client-Id the request would carry.
        #[arg(long)]
        client_id: Option<String>,
        /// The caller's address, for the key's IP allow-list.
        #[arg(long)]
        remote_ip: Option<String>,
    },
}

pub async fn keys(ctx: &Ctx, verb: KeyVerb) -> CliResult<()> {
    match verb {
        KeyVerb::Common(verb) => resource::run::<Keys>(ctx, verb).await,
        KeyVerb::Freeze { reference } => {
            let key = resolve::find::<Keys>(ctx, &reference).await?;
            let answer = ctx
                .identity()
                .freeze_api_key(pb::FreezeApiKeyRequest { id: key.id })
                .await?;
            ctx.print(&output::one(
                ctx.format,
                &present(answer.into_inner().api_key, "key")?,
            )?)
        }
        KeyVerb::Authenticate {
            client_id,
            remote_ip,
        } => {
            let key = ctx.read_stdin()?.trim().to_owned();
            if key.is_empty() {
                return Err(CliError::usage(
                    "give the key on stdin (it never goes in a flag)",
                ));
            }
            let key_sha256 = format!("{:x}", sha2::Sha256::digest(key.as_bytes()));
            let request = pb::AuthenticateKeyRequest {
                key_sha256,
                client_id,
                remote_ip,
            };
            let answer = ctx.identity().authenticate_key(request).await?.into_inner();
            ctx.print(&output::one(ctx.format, &answer)?)
        }
        KeyVerb::Unfreeze { reference } => {
            let key = resolve::find::<Keys>(ctx, &reference).await?;
            let answer = ctx
                .identity()
                .unfreeze_api_key(pb::UnfreezeApiKeyRequest { id: key.id })
                .await?;
            ctx.print(&output::one(
                ctx.format,
                &present(answer.into_inner().api_key, "key")?,
            )?)
        }
    }
}

#[allow(clippy::large_enum_variant)]
#[derive(Debug, clap::Subcommand)]
pub enum UserVerb {
    #[command(flatten)]
    Common(Verb),
    /// Change a password; the new one (and, for your own, the current one
    /// on its first line) is read from stdin.
    Passwd {
        /// Username or id; default yourself.
        reference: Option<String>,
    },
}

pub async fn users(ctx: &Ctx, verb: UserVerb) -> CliResult<()> {
    match verb {
        UserVerb::Common(verb) => resource::run::<Users>(ctx, verb).await,
        UserVerb::Passwd { reference } => passwd(ctx, reference).await,
    }
}

async fn passwd(ctx: &Ctx, reference: Option<String>) -> CliResult<()> {
    let user_id = match &reference {
        Some(reference) => resolve::find::<Users>(ctx, reference).await?.id,
        None => crate::session::claims(ctx)
            .map(|claims| claims.sub)
            .ok_or_else(|| CliError::usage("name the user: the admin key is nobody"))?,
    };
    let own = crate::session::claims(ctx).is_some_and(|claims| claims.sub == user_id);
    let input = ctx.read_stdin()?;
    let mut lines = input.lines();
    let current_password = if own {
        lines.next().unwrap_or_default().to_owned()
    } else {
        String::new()
    };
    let new_password = lines.next().unwrap_or_default().to_owned();
    if new_password.is_empty() {
        return Err(CliError::usage(if own {
            "stdin must hold the current password, then the new one, one per line"
        } else {
            "stdin must hold the new password"
        }));
    }
    let request = pb::ChangePasswordRequest {
        user_id,
        current_password,
        new_password,
    };
    ctx.identity().change_password(request).await?;
    ctx.note("password changed")
}
