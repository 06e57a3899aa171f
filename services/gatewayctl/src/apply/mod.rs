//! `apply -f gateway.yaml` and `export`: a tenant's (or, for an operator,
//! several tenants') configuration as a file, made true by computing the
//! difference with what exists, like decK for Kong.

mod document;
mod execute;
mod export;
mod kinds;
mod plan;
mod show;
mod state;
mod values;

use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::ctx::Ctx;
use crate::error::{CliError, CliResult};
use document::{Document, TenantSpec};
use kinds::{Kind, ORDER, Target};
use plan::{Action, Change};
use state::{Names, TenantState};

pub use export::export;

#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// The file (`-` = stdin).
    #[arg(short = 'f', long = "file", value_name = "PATH")]
    pub file: PathBuf,
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Delete what the file no longer names, in the kinds it lists.
    #[arg(long)]
    pub prune: bool,
    /// Write the plaintexts of created keys to this file (0600) instead of stdout.
    #[arg(long, value_name = "PATH")]
    pub keys_out: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Write here instead of stdout.
    #[arg(short = 'f', long = "file", value_name = "PATH")]
    pub file: Option<PathBuf>,
}

pub async fn apply(ctx: &Ctx, args: ApplyArgs) -> CliResult<()> {
    let text = if args.file.as_os_str() == "-" {
        ctx.read_stdin()?
    } else {
        std::fs::read_to_string(&args.file)
            .map_err(|error| CliError::usage(format!("{}: {error}", args.file.display())))?
    };
    let document = document::parse(&text, &args.file.display().to_string())?;
    let mut names = Names::default();
    let changes = plan_all(ctx, &document, args.prune, &mut names).await?;
    show::print(ctx, &changes, args.dry_run)?;
    if args.dry_run || changes.is_empty() {
        return Ok(());
    }
    let new_keys = execute::run(ctx, &changes, &mut names).await?;
    let summary = show::summary(&changes);
    ctx.note(&format!(
        "Applied: {} created, {} updated, {} deleted.",
        summary.create, summary.update, summary.delete
    ))?;
    report_keys(ctx, &new_keys, args.keys_out.as_deref())
}

async fn plan_all(
    ctx: &Ctx,
    document: &Document,
    prune: bool,
    names: &mut Names,
) -> CliResult<Vec<Change>> {
    state::tenants(ctx, names).await?;
    let own_user = crate::session::claims(ctx).map(|claims| claims.sub);
    let mut states = Vec::new();
    for tenant in &document.tenants {
        let id = match names.id("", Target::Tenant, &tenant.slug) {
            Ok(id) => Some(id),
            Err(_) => state::tenant_id(ctx, &tenant.slug).await?,
        };
        if let Some(id) = &id {
            names.insert("", Target::Tenant, &tenant.slug, id);
        } else {
            names.plan("", Target::Tenant, &tenant.slug);
        }
        let managed: Vec<Kind> = ORDER
            .into_iter()
            .filter(|kind| section(tenant, *kind).is_some())
            .collect();
        states.push(state::load(ctx, &tenant.slug, id, &managed, names).await?);
        plan_names(tenant, names);
    }
    let mut changes = Vec::new();
    let mut deletes = Vec::new();
    for (tenant, state) in document.tenants.iter().zip(&states) {
        if state.id.is_none() {
            let name = tenant.name.clone().unwrap_or_else(|| tenant.slug.clone());
            changes.push(Change {
                tenant: tenant.slug.clone(),
                kind: None,
                key: tenant.slug.clone(),
                action: Action::CreateTenant { name },
                fields: Vec::new(),
            });
        }
        for kind in ORDER {
            let Some(items) = section(tenant, kind) else {
                continue;
            };
            let planned = plan::changes_for(kind, items, state, names, prune, own_user.as_deref())?;
            let (removed, kept): (Vec<Change>, Vec<Change>) = planned
                .into_iter()
                .partition(|change| matches!(change.action, Action::Delete { .. }));
            changes.extend(kept);
            deletes.extend(removed);
        }
    }
    if let Some(prices) = document
        .global
        .as_ref()
        .and_then(|global| global.prices.as_ref())
    {
        let existing = kinds::list(ctx, Kind::Price, "").await?;
        let global = TenantState {
            id: Some(String::new()),
            existing: [(Kind::Price, existing)].into(),
            ..TenantState::default()
        };
        let planned = plan::changes_for(Kind::Price, prices, &global, names, prune, None)?;
        let (removed, kept): (Vec<Change>, Vec<Change>) = planned
            .into_iter()
            .partition(|change| matches!(change.action, Action::Delete { .. }));
        changes.extend(kept);
        deletes.extend(removed);
    }
    // Deletions last, those that others name after them.
    deletes.sort_by_key(|change| std::cmp::Reverse(change.kind));
    changes.extend(deletes);
    Ok(changes)
}

/// Names the plan will create, so items may name them before they exist.
fn plan_names(tenant: &TenantSpec, names: &mut Names) {
    for (kind, target) in [
        (Kind::User, Target::User),
        (Kind::Group, Target::Group),
        (Kind::Plan, Target::Plan),
    ] {
        for item in section(tenant, kind).into_iter().flatten() {
            if let Ok(key) = plan::key_of_item(kind, item) {
                names.plan(&tenant.slug, target, &key);
            }
        }
    }
}

fn section(tenant: &TenantSpec, kind: Kind) -> Option<&Vec<serde_json::Value>> {
    match kind {
        Kind::User => tenant.users.as_ref(),
        Kind::Group => tenant.groups.as_ref(),
        Kind::Plan => tenant.plans.as_ref(),
        Kind::Rule => tenant.rules.as_ref(),
        Kind::Api => tenant.apis.as_ref(),
        Kind::Channel => tenant.channels.as_ref(),
        Kind::Price => tenant.prices.as_ref(),
        Kind::Multiplier => tenant.multipliers.as_ref(),
        Kind::GroupPrice => tenant.group_prices.as_ref(),
        Kind::Key => tenant.keys.as_ref(),
    }
}

fn report_keys(
    ctx: &Ctx,
    keys: &execute::NewKeys,
    path: Option<&std::path::Path>,
) -> CliResult<()> {
    if keys.is_empty() {
        return Ok(());
    }
    let listed: serde_json::Map<String, serde_json::Value> = keys
        .iter()
        .map(|(name, key)| (name.clone(), serde_json::Value::String(key.clone())))
        .collect();
    let text = crate::output::encode(
        crate::output::Format::Yaml,
        &serde_json::json!({ "keys": listed }),
    )?;
    match path {
        Some(path) => {
            write_private(path, &text)?;
            ctx.note(&format!(
                "{} new key(s) written to {} (shown only now)",
                keys.len(),
                path.display()
            ))
        }
        None => {
            ctx.note("New keys, shown only now (only their hashes are kept):")?;
            ctx.print(&text)
        }
    }
}

fn write_private(path: &std::path::Path, text: &str) -> CliResult<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

/// A bar on stderr when it is a terminal; nothing otherwise (CI logs, tests).
fn progress(ctx: &Ctx, length: usize, verb: &'static str) -> ProgressBar {
    if !ctx.interactive || length < 2 {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(length as u64), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(verb);
    bar
}
