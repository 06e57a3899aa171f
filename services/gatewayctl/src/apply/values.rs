//! JSON surgery for apply: dotted paths, comparing only what the file
//! says, and finding secret references.

use serde_json::{Map, Value};

use crate::secret::SecretRef;

/// The value at a dotted path (`auth.plan`, `users[0].password`).
pub fn get<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    segments(path)
        .into_iter()
        .try_fold(value, |current, segment| match segment {
            Segment::Field(name) => current.get(name),
            Segment::Index(index) => current.get(index),
        })
}

/// Removes and returns the value at a dotted path.
pub fn take(value: &mut Value, path: &str) -> Option<Value> {
    let mut parts = segments(path);
    let last = parts.pop()?;
    let mut current = value;
    for segment in parts {
        current = match segment {
            Segment::Field(name) => current.get_mut(name)?,
            Segment::Index(index) => current.get_mut(index)?,
        };
    }
    match last {
        Segment::Field(name) => current.as_object_mut()?.remove(name),
        Segment::Index(_) => None,
    }
}

/// Sets a dotted path of fields, creating the objects on the way.
pub fn put(value: &mut Value, path: &str, new: Value) {
    let mut current = value;
    let mut names = path.split('.').peekable();
    while let Some(name) = names.next() {
        if !current.is_object() {
            *current = Value::Object(Map::new());
        }
        let Value::Object(object) = current else {
            return;
        };
        if names.peek().is_none() {
            object.insert(name.to_owned(), new);
            return;
        }
        current = object.entry(name.to_owned()).or_insert(Value::Null);
    }
}

enum Segment<'a> {
    Field(&'a str),
    Index(usize),
}

fn segments(path: &str) -> Vec<Segment<'_>> {
    let mut found = Vec::new();
    for part in path.split('.') {
        let (name, indexes) = part
            .split_once('[')
            .map_or((part, ""), |(name, rest)| (name, rest));
        if !name.is_empty() {
            found.push(Segment::Field(name));
        }
        for index in indexes.split('[').filter(|index| !index.is_empty()) {
            if let Ok(index) = index.trim_end_matches(']').parse() {
                found.push(Segment::Index(index));
            }
        }
    }
    found
}

/// `full` cut down to the fields `shape` names, recursively: the file's
/// fields are managed, the others are the services' (or another tool's).
pub fn restrict(full: &Value, shape: &Value) -> Value {
    match (full, shape) {
        (Value::Object(full), Value::Object(shape)) => Value::Object(
            shape
                .iter()
                .filter_map(|(key, inner)| {
                    let name = if full.contains_key(key) {
                        key.clone()
                    } else {
                        snake_case(key)
                    };
                    full.get(&name).map(|value| (name, restrict(value, inner)))
                })
                .collect(),
        ),
        (Value::Array(full), Value::Array(shape)) => Value::Array(
            full.iter()
                .enumerate()
                .map(|(index, value)| {
                    shape
                        .get(index)
                        .map_or_else(|| value.clone(), |inner| restrict(value, inner))
                })
                .collect(),
        ),
        _ => full.clone(),
    }
}

fn snake_case(name: &str) -> String {
    let mut snake = String::new();
    for character in name.chars() {
        if character.is_ascii_uppercase() {
            snake.push('_');
            snake.push(character.to_ascii_lowercase());
        } else {
            snake.push(character);
        }
    }
    snake
}

/// One field that differs: its path, what is stored, what the file wants.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldChange {
    pub path: String,
    pub old: Value,
    pub new: Value,
}

/// Where `desired` differs from `existing`, leaf by leaf.
pub fn diff(path: &str, desired: &Value, existing: &Value, changes: &mut Vec<FieldChange>) {
    match (desired, existing) {
        (Value::Object(desired), _)
            if !desired.is_empty() && (existing.is_object() || existing.is_null()) =>
        {
            for (key, inner) in desired {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                diff(
                    &child,
                    inner,
                    existing.get(key).unwrap_or(&Value::Null),
                    changes,
                );
            }
        }
        (Value::Array(wanted), Value::Array(stored))
            if wanted.len() == stored.len() && wanted.iter().any(Value::is_object) =>
        {
            for (index, (inner, old)) in wanted.iter().zip(stored).enumerate() {
                diff(&format!("{path}[{index}]"), inner, old, changes);
            }
        }
        _ if same(desired, existing) => {}
        _ => changes.push(FieldChange {
            path: path.to_owned(),
            old: existing.clone(),
            new: desired.clone(),
        }),
    }
}

fn same(a: &Value, b: &Value) -> bool {
    a == b || (is_default(a) && is_default(b))
}

pub fn is_default(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(flag) => !flag,
        Value::Number(number) => number.as_f64() == Some(0.0),
        Value::String(text) => text.is_empty(),
        Value::Array(items) => items.is_empty(),
        Value::Object(fields) => fields.values().all(is_default),
    }
}

/// Every `{env: ...}` / `{file: ...}` / `{stored: ...}` in an item, by path.
pub fn secret_refs(path: &str, value: &Value, found: &mut Vec<(String, SecretRef)>) {
    if let Ok(reference) = serde_json::from_value::<SecretRef>(value.clone()) {
        found.push((path.to_owned(), reference));
        return;
    }
    let join = |key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    };
    match value {
        Value::Object(fields) => fields
            .iter()
            .for_each(|(key, inner)| secret_refs(&join(key), inner, found)),
        Value::Array(items) => {
            for (index, inner) in items.iter().enumerate() {
                secret_refs(&format!("{path}[{index}]"), inner, found);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_get_take_and_put() {
        let mut value =
            json!({"auth": {"basic": {"users": [{"username": "a", "password": {"env": "P"}}]}}});
        assert_eq!(
            get(&value, "auth.basic.users[0].username"),
            Some(&json!("a"))
        );
        assert_eq!(
            take(&mut value, "auth.basic.users[0].password"),
            Some(json!({"env": "P"}))
        );
        assert_eq!(get(&value, "auth.basic.users[0].password"), None);
        put(&mut value, "auth.plan_id", json!("p1"));
        assert_eq!(value["auth"]["plan_id"], "p1");
    }

    #[test]
    fn only_the_fields_the_file_names_are_compared() {
        let stored = json!({"name": "echo", "weight": 1, "timeouts": {"connect": "1s", "read": "30s"}, "models": ["a"]});
        let file = json!({"name": "echo", "timeouts": {"connect": "2s"}, "models": ["a"]});
        let wanted = restrict(
            &json!({"name": "echo", "weight": 0, "timeouts": {"connect": "2s", "read": null}, "models": ["a"]}),
            &file,
        );
        assert_eq!(
            wanted,
            json!({"name": "echo", "timeouts": {"connect": "2s"}, "models": ["a"]})
        );
        let mut changes = Vec::new();
        diff("", &wanted, &stored, &mut changes);
        assert_eq!(
            changes,
            vec![FieldChange {
                path: "timeouts.connect".into(),
                old: json!("1s"),
                new: json!("2s")
            }]
        );
        let mut none = Vec::new();
        diff(
            "",
            &json!({"enabled": false, "tags": []}),
            &json!({"enabled": null}),
            &mut none,
        );
        assert!(none.is_empty(), "{none:?}");
    }

    #[test]
    fn secret_references_are_found_wherever_they_are() {
        let item = json!({"secret": {"env": "KEY"}, "auth": {"basic": {"users": [{"password": {"file": "/p"}}]}}, "name": "x"});
        let mut found = Vec::new();
        secret_refs("", &item, &mut found);
        let paths: Vec<&str> = found.iter().map(|(path, _)| path.as_str()).collect();
        assert_eq!(paths, ["auth.basic.users[0].password", "secret"]);
    }
}
