//! How answers are shown: aligned tables for people, `-o json` and
//! `-o yaml` (the proto3 JSON mapping) for scripts. Money is shown in USD
//! in tables; JSON and YAML keep the exact integer micro-USD fields.

use prost_reflect::MessageDescriptor;
use serde_json::Value;

use crate::error::{CliError, CliResult};
use crate::reflect::{self, Typed};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    #[default]
    Table,
    Json,
    Yaml,
}

/// A list column: its header and the proto field path it shows
/// (`upstreams.url` maps over a repeated field).
pub type Column = (&'static str, &'static str);

/// Text for a format: a table of `items`, or the messages themselves.
pub fn list<M: Typed>(format: Format, items: &[M], columns: &[Column]) -> CliResult<String> {
    let values: Vec<Value> = items.iter().map(reflect::to_json).collect();
    match format {
        Format::Table => {
            let descriptor = reflect::descriptor::<M>();
            let rows = values
                .iter()
                .map(|value| {
                    columns
                        .iter()
                        .map(|(_, path)| cell(value, path, &descriptor))
                        .collect()
                })
                .collect();
            Ok(table(columns.iter().map(|(header, _)| *header), rows))
        }
        _ => encode(format, &Value::Array(values)),
    }
}

/// One message: `field  value` lines (nested fields dotted) or the message.
pub fn one<M: Typed>(format: Format, item: &M) -> CliResult<String> {
    let value = reflect::to_json(item);
    match format {
        Format::Table => {
            let descriptor = reflect::descriptor::<M>();
            let mut lines = Vec::new();
            flatten("", &value, &mut lines);
            let rows = lines
                .into_iter()
                .map(|(path, leaf)| {
                    let shown = render(&leaf, &path, Some(&enum_path(&path)), &descriptor);
                    vec![path, shown]
                })
                .collect();
            Ok(table(["FIELD", "VALUE"], rows))
        }
        _ => encode(format, &value),
    }
}

/// Any JSON value in a script format; tables show it as YAML, which reads well.
pub fn encode(format: Format, value: &Value) -> CliResult<String> {
    match format {
        Format::Json => serde_json::to_string_pretty(value)
            .map(|text| text + "\n")
            .map_err(|error| CliError::new(crate::error::Exit::Failure, error.to_string())),
        Format::Yaml | Format::Table => serde_norway::to_string(value)
            .map_err(|error| CliError::new(crate::error::Exit::Failure, error.to_string())),
    }
}

/// Columns padded to their widest cell, two spaces apart.
pub fn table<'a>(headers: impl IntoIterator<Item = &'a str>, rows: Vec<Vec<String>>) -> String {
    let headers: Vec<String> = headers.into_iter().map(str::to_owned).collect();
    let mut widths: Vec<usize> = headers
        .iter()
        .map(|header| header.chars().count())
        .collect();
    for row in &rows {
        for (index, cell) in row.iter().enumerate() {
            if let Some(width) = widths.get_mut(index) {
                *width = (*width).max(cell.chars().count());
            }
        }
    }
    let mut text = String::new();
    for row in std::iter::once(&headers).chain(rows.iter()) {
        let mut line = String::new();
        for (index, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if index + 1 < row.len() {
                let pad = widths[index] - cell.chars().count() + 2;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// Micro-USD as dollars, exact: 1500000 -> `$1.50`, 1234 -> `$0.001234`.
pub fn usd(micros: i64) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let micros = micros.unsigned_abs();
    let fraction = format!("{:06}", micros % 1_000_000);
    let fraction = fraction.trim_end_matches('0');
    let fraction = format!("{fraction:0<2}");
    format!("{sign}${}.{fraction}", micros / 1_000_000)
}

/// Dollars as micro-USD, exactly (at most six decimals): `1.5` -> 1500000.
pub fn parse_usd(text: &str) -> Result<i64, String> {
    let trimmed = text.trim().trim_start_matches('$');
    let (negative, digits) = match trimmed.strip_prefix('-') {
        Some(rest) => (true, rest.trim_start_matches('$')),
        None => (false, trimmed),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let valid = |part: &str| part.chars().all(|c| c.is_ascii_digit());
    if whole.is_empty() && fraction.is_empty() || !valid(whole) || !valid(fraction) {
        return Err(format!("{text:?} is not an amount in USD (e.g. 5 or 0.25)"));
    }
    if fraction.len() > 6 {
        return Err(format!("{text:?} has more than 6 decimals (1 micro-USD)"));
    }
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole
            .parse()
            .map_err(|_| format!("{text:?} is too large"))?
    };
    let fraction: i64 = format!("{fraction:0<6}").parse().unwrap_or(0);
    let micros = whole
        .checked_mul(1_000_000)
        .and_then(|micros| micros.checked_add(fraction))
        .ok_or_else(|| format!("{text:?} is too large"))?;
    Ok(if negative { -micros } else { micros })
}

fn cell(value: &Value, path: &str, descriptor: &MessageDescriptor) -> String {
    let found = lookup(value, path);
    render(&found, path, Some(path), descriptor)
}

/// The value at a dotted path; a repeated field on the way maps over its items.
fn lookup(value: &Value, path: &str) -> Value {
    let Some((head, rest)) = path.split_once('.') else {
        return value.get(path).cloned().unwrap_or(Value::Null);
    };
    match value.get(head) {
        Some(Value::Array(items)) => {
            Value::Array(items.iter().map(|item| lookup(item, rest)).collect())
        }
        Some(inner) => lookup(inner, rest),
        None => Value::Null,
    }
}

fn render(
    value: &Value,
    path: &str,
    field_path: Option<&str>,
    descriptor: &MessageDescriptor,
) -> String {
    let field = path.rsplit('.').next().unwrap_or(path);
    match value {
        Value::Null => "-".to_owned(),
        Value::Bool(flag) => flag.to_string(),
        // `spend_limit_micros`, `input_micros_per_million_tokens`: money.
        Value::Number(number) if field.contains("_micros") => number
            .as_i64()
            .map(usd)
            .unwrap_or_else(|| number.to_string()),
        Value::Number(number) => number.to_string(),
        Value::String(text) if field.ends_with("_time") => short_time(text),
        Value::String(text) => {
            let prefix = field_path
                .and_then(|path| reflect::enum_at(descriptor, path))
                .map(|found| reflect::enum_prefix(found.name()) + "_");
            match prefix {
                Some(prefix) => text.strip_prefix(&prefix).unwrap_or(text).to_owned(),
                None => text.clone(),
            }
        }
        Value::Array(items) if items.is_empty() => "-".to_owned(),
        Value::Array(items) => items
            .iter()
            .map(|item| render(item, path, field_path, descriptor))
            .collect::<Vec<_>>()
            .join(","),
        Value::Object(_) => value.to_string(),
    }
}

/// `2026-12-02T17:50:18.123456Z` -> `2026-12-02 17:50:18`.
fn short_time(text: &str) -> String {
    let seconds = text.split('.').next().unwrap_or(text).trim_end_matches('Z');
    seconds.replacen('T', " ", 1)
}

/// Leaves of a JSON object as (dotted path, value); list items as `[i]`.
fn flatten(prefix: &str, value: &Value, lines: &mut Vec<(String, Value)>) {
    match value {
        Value::Object(fields) if !fields.is_empty() => {
            for (name, inner) in fields {
                let path = if prefix.is_empty() {
                    name.clone()
                } else {
                    format!("{prefix}.{name}")
                };
                flatten(&path, inner, lines);
            }
        }
        Value::Array(items) if items.iter().any(Value::is_object) => {
            for (index, item) in items.iter().enumerate() {
                flatten(&format!("{prefix}[{index}]"), item, lines);
            }
        }
        _ => lines.push((prefix.to_owned(), value.clone())),
    }
}

/// The field path without list indexes, for finding an enum's type.
fn enum_path(path: &str) -> String {
    let mut clean = String::new();
    let mut skipping = false;
    for character in path.chars() {
        match character {
            '[' => skipping = true,
            ']' => skipping = false,
            _ if !skipping => clean.push(character),
            _ => {}
        }
    }
    clean
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_proto::catalog::v1 as cat;

    #[test]
    fn money_is_exact_both_ways() {
        assert_eq!(usd(1_500_000), "$1.50");
        assert_eq!(usd(1_234), "$0.001234");
        assert_eq!(usd(-250_000), "-$0.25");
        assert_eq!(usd(0), "$0.00");
        assert_eq!(parse_usd("1.5"), Ok(1_500_000));
        assert_eq!(parse_usd("$0.000001"), Ok(1));
        assert_eq!(parse_usd("-2"), Ok(-2_000_000));
        assert!(parse_usd("0.0000001").is_err());
        assert!(parse_usd("five").is_err());
        assert!(parse_usd("").is_err());
    }

    #[test]
    fn tables_align_and_show_enums_money_and_lists_briefly() {
        let channels = vec![
            cat::Channel {
                name: "main".into(),
                provider: cat::Provider::OpenaiCompatible.into(),
                models: vec!["a".into(), "b".into()],
                ..Default::default()
            },
            cat::Channel {
                name: "second-channel".into(),
                ..Default::default()
            },
        ];
        let columns = [
            ("NAME", "name"),
            ("PROVIDER", "provider"),
            ("MODELS", "models"),
        ];
        let text = list(Format::Table, &channels, &columns).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "NAME            PROVIDER           MODELS");
        assert_eq!(lines[1], "main            OPENAI_COMPATIBLE  a,b");
        assert_eq!(lines[2], "second-channel  -                  -");
        let json = list(Format::Json, &channels, &columns).unwrap();
        let parsed: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed[0]["provider"], "PROVIDER_OPENAI_COMPATIBLE");
    }

    #[test]
    fn one_message_lists_its_nested_fields() {
        let api = cat::Api {
            name: "echo".into(),
            upstreams: vec![cat::UpstreamTarget {
                url: "http://u".into(),
                weight: 2,
            }],
            auth: Some(cat::ApiAuth {
                mode: cat::AuthMode::Public.into(),
                ..Default::default()
            }),
            max_request_body_bytes: 10,
            ..Default::default()
        };
        let text = one(Format::Table, &api).unwrap();
        let row = |field: &str, value: &str| {
            text.lines()
                .any(|line| line.starts_with(field) && line.ends_with(value))
        };
        assert!(row("upstreams[0].url ", " http://u"), "{text}");
        assert!(row("auth.mode ", " PUBLIC"), "{text}");
        let yaml = one(Format::Yaml, &api).unwrap();
        assert!(yaml.contains("max_request_body_bytes: 10"), "{yaml}");
    }
}
