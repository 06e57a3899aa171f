//! Named contexts: which services (and so which stored token) a command
//! talks to, chosen like kubectl's with `context use`.

use crate::config::{ConfigDir, Context};
use crate::ctx::Ctx;
use crate::error::{CliError, CliResult};
use crate::output;

#[derive(Debug, clap::Subcommand)]
pub enum ContextCommand {
    /// Every context; `*` marks the current one.
    #[command(visible_alias = "ls")]
    List,
    /// The current context's name.
    Current,
    /// Make a context the current one.
    Use { name: String },
    /// Create or change a context's endpoints.
    Set {
        name: String,
        #[arg(long)]
        identity_url: Option<String>,
        #[arg(long)]
        catalog_url: Option<String>,
        #[arg(long)]
        quota_url: Option<String>,
        #[arg(long)]
        usage_url: Option<String>,
        /// Also make it the current context.
        #[arg(long = "use")]
        make_current: bool,
    },
    /// Forget a context and its stored token.
    #[command(visible_alias = "rm")]
    Delete { name: String },
}

pub fn run(ctx: &Ctx, dir: &ConfigDir, current: &str, command: ContextCommand) -> CliResult<()> {
    let mut config = dir.load()?;
    match command {
        ContextCommand::List => {
            let mut rows = Vec::new();
            for (name, context) in &config.contexts {
                let marker = if name == current { "*" } else { "" };
                let logged_in = if dir.token(name)?.is_some() {
                    "yes"
                } else {
                    "no"
                };
                let identity = context
                    .identity_url
                    .clone()
                    .unwrap_or_else(|| "-".to_owned());
                rows.push(vec![
                    marker.to_owned(),
                    name.clone(),
                    identity,
                    logged_in.to_owned(),
                ]);
            }
            ctx.print(&output::table(
                ["CURRENT", "NAME", "IDENTITY URL", "LOGGED IN"],
                rows,
            ))
        }
        ContextCommand::Current => ctx.print(&format!("{current}\n")),
        ContextCommand::Use { name } => {
            if !config.contexts.contains_key(&name) && name != crate::config::DEFAULT_CONTEXT {
                return Err(CliError::not_found(format!(
                    "no context {name:?} (create it with `context set`)"
                )));
            }
            config.current_context = Some(name.clone());
            dir.save(&config)?;
            ctx.note(&format!("switched to context {name:?}"))
        }
        ContextCommand::Set {
            name,
            identity_url,
            catalog_url,
            quota_url,
            usage_url,
            make_current,
        } => {
            let entry = config
                .contexts
                .entry(name.clone())
                .or_insert_with(Context::default);
            for (slot, value) in [
                (&mut entry.identity_url, identity_url),
                (&mut entry.catalog_url, catalog_url),
                (&mut entry.quota_url, quota_url),
                (&mut entry.usage_url, usage_url),
            ] {
                if value.is_some() {
                    *slot = value;
                }
            }
            if make_current {
                config.current_context = Some(name.clone());
            }
            dir.save(&config)?;
            ctx.note(&format!("context {name:?} saved"))
        }
        ContextCommand::Delete { name } => {
            if config.contexts.remove(&name).is_none() {
                return Err(CliError::not_found(format!("no context {name:?}")));
            }
            if config.current_context.as_deref() == Some(name.as_str()) {
                config.current_context = None;
            }
            dir.save(&config)?;
            dir.remove_token(&name)?;
            ctx.note(&format!("context {name:?} deleted"))
        }
    }
}
