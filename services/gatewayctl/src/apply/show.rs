//! How a plan reads: one line per change, `+` create, `~` update, `-`
//! delete, with the fields that change under it; or, for scripts, the
//! same as JSON or YAML.

use serde_json::{Value, json};

use super::plan::{Action, Change};
use crate::ctx::Ctx;
use crate::error::CliResult;
use crate::output::{self, Format};

pub struct Summary {
    pub create: usize,
    pub update: usize,
    pub delete: usize,
}

pub fn summary(changes: &[Change]) -> Summary {
    let mut summary = Summary {
        create: 0,
        update: 0,
        delete: 0,
    };
    for change in changes {
        match change.action {
            Action::CreateTenant { .. } | Action::Create { .. } | Action::AddMember { .. } => {
                summary.create += 1
            }
            Action::Update { .. } => summary.update += 1,
            Action::Delete { .. } | Action::RemoveMember { .. } => summary.delete += 1,
        }
    }
    summary
}

pub fn title(change: &Change) -> String {
    let (sign, noun) = match (&change.action, change.kind) {
        (Action::CreateTenant { .. }, _) => ("+", "tenant"),
        (Action::AddMember { .. }, _) => ("+", "member"),
        (Action::RemoveMember { .. }, _) => ("-", "member"),
        (Action::Create { .. }, Some(kind)) => ("+", kind.section()),
        (Action::Update { .. }, Some(kind)) => ("~", kind.section()),
        (_, Some(kind)) => ("-", kind.section()),
        (_, None) => ("-", "member"),
    };
    if let Action::CreateTenant { .. } = change.action {
        return format!("+ tenant {}", change.key);
    }
    let scope = if change.tenant.is_empty() {
        "global".to_owned()
    } else {
        change.tenant.clone()
    };
    format!(
        "{sign} {scope}: {} {}",
        noun.trim_end_matches('s'),
        change.key
    )
}

pub fn print(ctx: &Ctx, changes: &[Change], dry_run: bool) -> CliResult<()> {
    let summary = summary(changes);
    if ctx.format != Format::Table {
        let listed: Vec<Value> = changes.iter().map(as_json).collect();
        let document = json!({
            "changes": listed,
            "create": summary.create,
            "update": summary.update,
            "delete": summary.delete,
            "dry_run": dry_run,
        });
        return ctx.print(&output::encode(ctx.format, &document)?);
    }
    if changes.is_empty() {
        return ctx.print("no changes\n");
    }
    let mut text = String::new();
    for change in changes {
        text.push_str(&title(change));
        text.push('\n');
        for field in &change.fields {
            let line = match change.action {
                Action::Create { .. } => format!("    {}: {}\n", field.path, field.new),
                _ => format!("    {}: {} -> {}\n", field.path, field.old, field.new),
            };
            text.push_str(&line);
        }
    }
    text.push_str(&format!(
        "Plan: {} to create, {} to update, {} to delete.{}\n",
        summary.create,
        summary.update,
        summary.delete,
        if dry_run {
            " (dry run: nothing was changed)"
        } else {
            ""
        }
    ));
    ctx.print(&text)
}

fn as_json(change: &Change) -> Value {
    let action = match change.action {
        Action::CreateTenant { .. } | Action::Create { .. } | Action::AddMember { .. } => "create",
        Action::Update { .. } => "update",
        Action::Delete { .. } | Action::RemoveMember { .. } => "delete",
    };
    let kind = match (&change.action, change.kind) {
        (Action::CreateTenant { .. }, _) => "tenants",
        (_, Some(kind)) => kind.section(),
        (_, None) => "members",
    };
    let fields: Vec<Value> = change
        .fields
        .iter()
        .map(|field| json!({"path": field.path, "old": field.old, "new": field.new}))
        .collect();
    json!({"action": action, "tenant": change.tenant, "kind": kind, "name": change.key, "fields": fields})
}
