//! The plan: what must be created, updated (field by field) or deleted for
//! the services to match the file. Items are prepared again when a change
//! runs, so names of resources created earlier in the run resolve to ids.

use serde_json::Value;

use super::kinds::{self, Existing, Kind, Target};
use super::state::{Names, TenantState};
use super::values::{self, FieldChange};
use crate::error::{CliError, CliResult};
use crate::resource::merge;
use crate::secret::{self, SecretRef};

#[derive(Clone, Debug)]
pub enum Action {
    CreateTenant {
        name: String,
    },
    Create {
        item: Value,
    },
    Update {
        existing: Value,
        item: Value,
        mask: Vec<String>,
        send_secret: bool,
    },
    Delete {
        id: String,
    },
    AddMember {
        group: String,
        username: String,
    },
    RemoveMember {
        group: String,
        user_id: String,
    },
}

#[derive(Clone, Debug)]
pub struct Change {
    /// The tenant's slug; empty for the global section.
    pub tenant: String,
    pub kind: Option<Kind>,
    /// How the file names it: `gold`, `ada/ci`, `gold/gpt-4o`.
    pub key: String,
    pub action: Action,
    pub fields: Vec<FieldChange>,
}

/// An item made ready for the services.
pub struct Prepared {
    /// Names replaced by ids, secrets by their values, the tenant set.
    pub send: Value,
    /// What the file manages, normalized, secrets left out.
    pub compare: Value,
    pub outside: Option<SecretRef>,
    /// (path, hint the file's secret has, hint field) of secrets in the message.
    pub inside_hints: Vec<(String, String, String)>,
    pub members: Option<Vec<String>>,
}

/// The identity of an item in the file: its identity fields joined by `/`.
pub fn key_of_item(kind: Kind, item: &Value) -> CliResult<String> {
    let mut parts = Vec::new();
    for field in kind.identity() {
        match item.get(*field).and_then(Value::as_str) {
            Some(part) if !part.is_empty() => parts.push(part.to_owned()),
            _ => {
                return Err(CliError::usage(format!(
                    "every item of {} needs {field:?}",
                    kind.section()
                )));
            }
        }
    }
    Ok(parts.join("/"))
}

/// The identity of an existing resource, its ids turned back into names.
pub fn key_of_existing(kind: Kind, tenant: &str, existing: &Existing, names: &Names) -> String {
    let name_of = |field: &str, target| {
        let id = existing
            .value
            .get(field)
            .and_then(Value::as_str)
            .unwrap_or_default();
        names
            .name(tenant, target, id)
            .unwrap_or_else(|| id.to_owned())
    };
    let text = |field: &str| {
        existing
            .value
            .get(field)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    match kind {
        Kind::Multiplier => name_of("group_id", Target::Group),
        Kind::GroupPrice => format!("{}/{}", name_of("group_id", Target::Group), text("model")),
        Kind::Key => format!("{}/{}", name_of("user_id", Target::User), text("name")),
        _ => kind
            .identity()
            .iter()
            .map(|field| text(field))
            .collect::<Vec<_>>()
            .join("/"),
    }
}

pub fn prepare(
    kind: Kind,
    item: &Value,
    tenant: &str,
    tenant_id: &str,
    names: &Names,
) -> CliResult<Prepared> {
    let what = format!("{} {}", kind.section(), key_of_item(kind, item)?);
    let mut send = item.clone();
    if !send.is_object() {
        return Err(CliError::usage(format!(
            "{what}: expected a mapping of fields"
        )));
    }
    let members = match kind {
        Kind::Group => values::take(&mut send, "members")
            .map(usernames)
            .transpose()
            .map_err(|error| CliError::usage(format!("{what}: members: {error}")))?,
        _ => None,
    };
    let outside = match kind.outside_secret() {
        Some(spec) => values::take(&mut send, spec.path)
            .map(serde_json::from_value::<SecretRef>)
            .transpose()
            .map_err(|_| {
                CliError::usage(format!(
                    "{what}: {} must be {{env: VAR}} or {{file: PATH}}, never inline",
                    spec.path
                ))
            })?,
        None => None,
    };
    resolve_names(kind, &mut send, tenant, names)
        .map_err(|error| CliError::new(error.exit, format!("{what}: {}", error.message)))?;
    refuse_inline_secrets(&send, &what)?;
    let mut shape = send.clone();
    let inside_hints = resolve_inside_secrets(&mut send, &mut shape)?;
    let _ = values::take(&mut shape, "tenant_id");
    // Empty for the global section's prices, on purpose.
    values::put(&mut send, "tenant_id", Value::String(tenant_id.to_owned()));
    let normalized = kinds::normalized(kind, &send)
        .map_err(|error| CliError::new(error.exit, format!("{what}: {}", error.message)))?;
    let compare = values::restrict(&normalized, &shape);
    Ok(Prepared {
        send,
        compare,
        outside,
        inside_hints,
        members,
    })
}

/// The secrets an API carries in its message (an HS256 key, basic-auth
/// passwords) must be references too.
fn refuse_inline_secrets(send: &Value, what: &str) -> CliResult<()> {
    let users = values::get(send, "auth.basic.users").and_then(Value::as_array);
    let passwords = users.into_iter().flatten().map(|user| user.get("password"));
    let inline = std::iter::once(values::get(send, "auth.jwt.hs256_secret"))
        .chain(passwords)
        .any(|secret| secret.is_some_and(Value::is_string));
    if inline {
        return Err(CliError::usage(format!(
            "{what}: secrets must be {{env: VAR}} or {{file: PATH}}, never inline"
        )));
    }
    Ok(())
}

fn usernames(value: Value) -> Result<Vec<String>, String> {
    serde_json::from_value(value).map_err(|_| "expected a list of usernames".to_owned())
}

fn resolve_names(kind: Kind, send: &mut Value, tenant: &str, names: &Names) -> CliResult<()> {
    for spec in kind.refs() {
        let Some(given) = values::take(send, spec.name) else {
            continue;
        };
        let resolved = match (&given, spec.many) {
            (Value::String(name), false) => Value::String(names.id(tenant, spec.target, name)?),
            (Value::Array(items), true) => {
                let mut ids = Vec::new();
                for name in items {
                    let name = name
                        .as_str()
                        .ok_or_else(|| CliError::usage(format!("{}: expected names", spec.name)))?;
                    ids.push(Value::String(names.id(tenant, spec.target, name)?));
                }
                Value::Array(ids)
            }
            _ => {
                return Err(CliError::usage(format!(
                    "{}: expected {}",
                    spec.name,
                    if spec.many {
                        "a list of names"
                    } else {
                        "a name"
                    }
                )));
            }
        };
        values::put(send, spec.field, resolved);
    }
    Ok(())
}

/// Secrets inside the message get their values in `send` and leave `shape`.
fn resolve_inside_secrets(
    send: &mut Value,
    shape: &mut Value,
) -> CliResult<Vec<(String, String, String)>> {
    let mut found = Vec::new();
    values::secret_refs("", send, &mut found);
    let mut hints = Vec::new();
    for (path, reference) in found {
        let value = reference.resolve()?;
        let _ = values::take(shape, &path);
        if let (Some(value), Some(hint_field)) = (&value, Kind::inside_hint(&path)) {
            hints.push((path.clone(), secret::hint(value), hint_field));
        }
        // Empty keeps the stored secret (the services' rule for write-only fields).
        set_at(send, &path, Value::String(value.unwrap_or_default()));
    }
    Ok(hints)
}

fn set_at(value: &mut Value, path: &str, new: Value) {
    let (parent, field) = path.rsplit_once('.').unwrap_or(("", path));
    let target = if parent.is_empty() {
        Some(value)
    } else {
        get_mut(value, parent)
    };
    if let Some(Value::Object(object)) = target {
        object.insert(field.to_owned(), new);
    }
}

fn get_mut<'a>(value: &'a mut Value, path: &str) -> Option<&'a mut Value> {
    path.split('.').try_fold(value, |current, part| {
        let (name, index) = match part.split_once('[') {
            Some((name, rest)) => (name, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        let next = current.get_mut(name)?;
        match index {
            Some(index) => next.get_mut(index),
            None => Some(next),
        }
    })
}

/// The changes for one kind of one tenant.
pub fn changes_for(
    kind: Kind,
    items: &[Value],
    state: &TenantState,
    names: &Names,
    prune: bool,
    own_user: Option<&str>,
) -> CliResult<Vec<Change>> {
    let tenant_id = state
        .id
        .clone()
        .unwrap_or_else(|| format!("<new tenant {}>", state.slug));
    let existing = state.existing.get(&kind).cloned().unwrap_or_default();
    let mut changes = Vec::new();
    let mut named = std::collections::HashSet::new();
    for item in items {
        let key = key_of_item(kind, item)?;
        if !named.insert(key.clone()) {
            return Err(CliError::usage(format!(
                "{} {key:?} is described twice in tenant {}",
                kind.section(),
                state.slug
            )));
        }
        let prepared = prepare(kind, item, &state.slug, &tenant_id, names)?;
        let found = existing
            .iter()
            .find(|existing| key_of_existing(kind, &state.slug, existing, names) == key);
        let change = |action, fields| Change {
            tenant: state.slug.clone(),
            kind: Some(kind),
            key: key.clone(),
            action,
            fields,
        };
        match found {
            None => {
                let mut fields = Vec::new();
                values::diff("", &prepared.compare, &Value::Null, &mut fields);
                changes.push(change(Action::Create { item: item.clone() }, fields));
            }
            Some(existing) => {
                if let Some(update) = update_for(kind, item, &prepared, existing)? {
                    changes.push(change(update.0, update.1));
                }
            }
        }
        if let Some(members) = &prepared.members {
            changes.extend(member_changes(state, &key, found, members));
        }
    }
    if prune {
        for existing in &existing {
            let key = key_of_existing(kind, &state.slug, existing, names);
            let own = kind == Kind::User && own_user == Some(existing.id.as_str());
            if !named.contains(&key) && !own {
                changes.push(Change {
                    tenant: state.slug.clone(),
                    kind: Some(kind),
                    key,
                    action: Action::Delete {
                        id: existing.id.clone(),
                    },
                    fields: Vec::new(),
                });
            }
        }
    }
    Ok(changes)
}

fn update_for(
    kind: Kind,
    item: &Value,
    prepared: &Prepared,
    existing: &Existing,
) -> CliResult<Option<(Action, Vec<FieldChange>)>> {
    let mut fields = Vec::new();
    values::diff("", &prepared.compare, &existing.value, &mut fields);
    for (path, hint, hint_field) in &prepared.inside_hints {
        let stored = values::get(&existing.value, hint_field)
            .and_then(Value::as_str)
            .unwrap_or_default();
        if stored != hint {
            fields.push(secret_change(path, stored, hint));
        }
    }
    let mut send_secret = false;
    if let (Some(spec), Some(reference)) = (kind.outside_secret(), &prepared.outside)
        && let (Some(hint_field), Some(value)) = (spec.hint, reference.resolve()?)
    {
        let stored = values::get(&existing.value, hint_field)
            .and_then(Value::as_str)
            .unwrap_or_default();
        if stored != secret::hint(&value) {
            fields.push(secret_change(spec.path, stored, &secret::hint(&value)));
            send_secret = true;
        }
    }
    if fields.is_empty() {
        return Ok(None);
    }
    let outside_path = kind.outside_secret().map(|spec| spec.path);
    let mut mask: Vec<String> = fields
        .iter()
        .filter(|field| Some(field.path.as_str()) != outside_path)
        .map(|field| {
            field
                .path
                .split(['.', '['])
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    mask.dedup();
    if mask.is_empty() {
        // Only the secret changes; the services want a field named anyway.
        mask.push(kind.identity()[0].to_owned());
    }
    mask.sort();
    mask.dedup();
    let action = Action::Update {
        existing: existing.value.clone(),
        item: item.clone(),
        mask,
        send_secret,
    };
    Ok(Some((action, fields)))
}

fn secret_change(path: &str, stored: &str, wanted: &str) -> FieldChange {
    FieldChange {
        path: path.to_owned(),
        old: Value::String(format!("(secret ...{stored})")),
        new: Value::String(format!("(secret ...{wanted})")),
    }
}

fn member_changes(
    state: &TenantState,
    group: &str,
    found: Option<&Existing>,
    wanted: &[String],
) -> Vec<Change> {
    let current = found
        .and_then(|group| state.members.get(&group.id))
        .cloned()
        .unwrap_or_default();
    let change = |key: String, action| Change {
        tenant: state.slug.clone(),
        kind: None,
        key,
        action,
        fields: Vec::new(),
    };
    let mut changes = Vec::new();
    for username in wanted
        .iter()
        .filter(|name| !current.iter().any(|(_, known)| known == *name))
    {
        let action = Action::AddMember {
            group: group.to_owned(),
            username: username.clone(),
        };
        changes.push(change(format!("{group}/{username}"), action));
    }
    for (user_id, username) in current.iter().filter(|(_, known)| !wanted.contains(known)) {
        let action = Action::RemoveMember {
            group: group.to_owned(),
            user_id: user_id.clone(),
        };
        changes.push(change(format!("{group}/{username}"), action));
    }
    changes
}

/// The value an update sends: what is stored, with the file's fields over it.
pub fn merged(existing: &Value, send: &Value) -> Value {
    let mut value = existing.clone();
    merge(&mut value, send.clone());
    value
}
