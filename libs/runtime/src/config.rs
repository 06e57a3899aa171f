//! Layered configuration: defaults, then an optional TOML file, then
//! `GATEWAY_*` environment variables; validated once, before anything starts.
//!
//! Environment names are derived from the config schema, not parsed into it:
//! the key `identity.listen_addr` is set by `GATEWAY_IDENTITY_LISTEN_ADDR`.
//! Walking the schema keeps underscores in field names unambiguous. Every
//! key therefore needs a default; optional values use an empty string or
//! zero, never `Option`, so that the key exists in the defaults.
//!
//! The loader takes the environment as a map, so tests never mutate the
//! process environment.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;
use toml::{Table, Value};

/// Prefix of every environment variable the loader reads.
pub const ENV_PREFIX: &str = "GATEWAY_";

/// Names the TOML file to read when no `--config` flag is given.
pub const CONFIG_FILE_ENV: &str = "GATEWAY_CONFIG";

/// Checks a loaded configuration; each problem names its key.
pub trait Validate {
    /// Pushes one message per problem, e.g. `"identity.listen_addr: ..."`.
    fn validate(&self, problems: &mut Vec<String>);
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("invalid configuration:\n  {}", .0.join("\n  "))]
    Invalid(Vec<String>),
    #[error("the default configuration cannot be represented as TOML: {0}")]
    Defaults(String),
}

/// A loaded configuration and what the loader noticed on the way.
#[derive(Debug)]
pub struct Loaded<T> {
    pub config: T,
    /// `GATEWAY_<SECTION>_*` variables that match no key: almost always a
    /// typo, reported as warnings once logging is up.
    pub unknown_env: Vec<String>,
}

/// Loads `T` from its defaults, then `file` (if any), then `env`.
pub fn load<T>(file: Option<&Path>, env: &HashMap<String, String>) -> Result<Loaded<T>, ConfigError>
where
    T: Default + Serialize + DeserializeOwned + Validate,
{
    let text = match file {
        Some(path) => Some(
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?,
        ),
        None => None,
    };
    load_text(file.zip(text.as_deref()), env)
}

/// [`load`] with the file already read: `file` is its path (for errors)
/// and its text.
pub fn load_text<T>(
    file: Option<(&Path, &str)>,
    env: &HashMap<String, String>,
) -> Result<Loaded<T>, ConfigError>
where
    T: Default + Serialize + DeserializeOwned + Validate,
{
    let mut merged =
        Table::try_from(T::default()).map_err(|error| ConfigError::Defaults(error.to_string()))?;

    if let Some((path, text)) = file {
        let overlay: Table = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })?;
        merge(&mut merged, overlay);
    }

    let mut problems = Vec::new();
    let mut known = BTreeSet::new();
    apply_env(&mut merged, &mut Vec::new(), env, &mut known, &mut problems);
    if !problems.is_empty() {
        return Err(ConfigError::Invalid(problems));
    }

    let sections: Vec<String> = merged
        .iter()
        .filter(|(_, value)| value.is_table())
        .map(|(name, _)| format!("{ENV_PREFIX}{}_", name.to_uppercase()))
        .collect();
    let mut unknown_env: Vec<String> = env
        .keys()
        .filter(|name| !known.contains(name.as_str()))
        .filter(|name| sections.iter().any(|section| name.starts_with(section)))
        .cloned()
        .collect();
    unknown_env.sort();

    let config: T = T::deserialize(Value::Table(merged))
        .map_err(|error| ConfigError::Invalid(vec![error.to_string().trim().to_owned()]))?;
    config.validate(&mut problems);
    if !problems.is_empty() {
        return Err(ConfigError::Invalid(problems));
    }
    Ok(Loaded {
        config,
        unknown_env,
    })
}

/// The environment variable that sets the key at `path`.
pub fn env_name(path: &[&str]) -> String {
    format!("{ENV_PREFIX}{}", path.join("_").to_uppercase())
}

/// Every environment variable `T` reads, for docs and deployment checks.
pub fn env_names<T: Default + Serialize>() -> Result<Vec<String>, ConfigError> {
    let defaults =
        Table::try_from(T::default()).map_err(|error| ConfigError::Defaults(error.to_string()))?;
    let mut names = Vec::new();
    collect_env_names(&defaults, &mut Vec::new(), &mut names);
    Ok(names)
}

fn collect_env_names(table: &Table, path: &mut Vec<String>, names: &mut Vec<String>) {
    for (key, value) in table {
        path.push(key.clone());
        match value {
            Value::Table(inner) => collect_env_names(inner, path, names),
            _ => names.push(env_name(
                &path.iter().map(String::as_str).collect::<Vec<_>>(),
            )),
        }
        path.pop();
    }
}

fn merge(base: &mut Table, overlay: Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(Value::Table(base_table)), Value::Table(overlay_table)) => {
                merge(base_table, overlay_table);
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

fn apply_env<'a>(
    table: &mut Table,
    path: &mut Vec<String>,
    env: &'a HashMap<String, String>,
    known: &mut BTreeSet<&'a str>,
    problems: &mut Vec<String>,
) {
    for (key, value) in table.iter_mut() {
        path.push(key.clone());
        if let Value::Table(inner) = value {
            apply_env(inner, path, env, known, problems);
        } else {
            let name = env_name(&path.iter().map(String::as_str).collect::<Vec<_>>());
            if let Some((name, raw)) = env.get_key_value(&name) {
                known.insert(name.as_str());
                match parse_like(value, raw) {
                    Ok(parsed) => *value = parsed,
                    Err(expected) => {
                        problems.push(format!("{name}: expected {expected}, got {raw:?}"));
                    }
                }
            }
        }
        path.pop();
    }
}

/// Parses an environment string as the same TOML type as the default.
fn parse_like(default: &Value, raw: &str) -> Result<Value, &'static str> {
    let raw = raw.trim();
    match default {
        Value::String(_) => Ok(Value::String(raw.to_owned())),
        Value::Integer(_) => raw.parse().map(Value::Integer).map_err(|_| "an integer"),
        Value::Float(_) => raw.parse().map(Value::Float).map_err(|_| "a number"),
        Value::Boolean(_) => match raw.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(Value::Boolean(true)),
            "false" | "0" | "no" | "off" => Ok(Value::Boolean(false)),
            _ => Err("true or false"),
        },
        // Lists are comma-separated: `a,b,c`; an empty string is an empty list.
        Value::Array(items) => {
            let element = items
                .first()
                .cloned()
                .unwrap_or(Value::String(String::new()));
            raw.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| parse_like(&element, item))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array)
                .map_err(|_| "a comma-separated list")
        }
        Value::Datetime(_) => raw
            .parse()
            .map(Value::Datetime)
            .map_err(|_| "an RFC 3339 date-time"),
        Value::Table(_) => Err("a table (set it in the config file)"),
    }
}

/// Reads the process environment once, at start, into the map [`load`] takes.
pub fn process_env() -> HashMap<String, String> {
    std::env::vars().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Server {
        listen_addr: std::net::SocketAddr,
        max_body_bytes: u64,
        allowed_origins: Vec<String>,
        tls_enabled: bool,
    }

    impl Default for Server {
        fn default() -> Self {
            Self {
                listen_addr: "127.0.0.1:8080".parse().unwrap(),
                max_body_bytes: 1024,
                allowed_origins: vec!["*".to_owned()],
                tls_enabled: false,
            }
        }
    }

    #[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Root {
        server: Server,
    }

    impl Validate for Root {
        fn validate(&self, problems: &mut Vec<String>) {
            if self.server.max_body_bytes == 0 {
                problems.push("server.max_body_bytes: must be greater than zero".to_owned());
            }
        }
    }

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let loaded = load::<Root>(None, &HashMap::new()).unwrap();
        assert_eq!(loaded.config, Root::default());
        assert!(loaded.unknown_env.is_empty());
    }

    #[test]
    fn file_overrides_defaults_and_env_overrides_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.toml");
        std::fs::write(
            &path,
            "[server]\nlisten_addr = \"0.0.0.0:9000\"\nmax_body_bytes = 2048\n",
        )
        .unwrap();
        let loaded = load::<Root>(
            Some(&path),
            &env(&[
                ("GATEWAY_SERVER_MAX_BODY_BYTES", "4096"),
                (
                    "GATEWAY_SERVER_ALLOWED_ORIGINS",
                    "https://a.test, https://b.test",
                ),
                ("GATEWAY_SERVER_TLS_ENABLED", "yes"),
            ]),
        )
        .unwrap();
        let server = loaded.config.server;
        assert_eq!(server.listen_addr, "0.0.0.0:9000".parse().unwrap());
        assert_eq!(server.max_body_bytes, 4096);
        assert_eq!(server.allowed_origins, ["https://a.test", "https://b.test"]);
        assert!(server.tls_enabled);
    }

    #[test]
    fn badly_typed_env_value_names_the_variable() {
        let error = load::<Root>(None, &env(&[("GATEWAY_SERVER_MAX_BODY_BYTES", "lots")]))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("GATEWAY_SERVER_MAX_BODY_BYTES: expected an integer, got \"lots\""),
            "{error}"
        );
    }

    #[test]
    fn unparseable_address_is_reported() {
        let error = load::<Root>(None, &env(&[("GATEWAY_SERVER_LISTEN_ADDR", "nowhere")]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("invalid socket address"), "{error}");
    }

    #[test]
    fn unknown_file_key_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.toml");
        std::fs::write(&path, "[server]\nlisten_adr = \"0.0.0.0:9000\"\n").unwrap();
        let error = load::<Root>(Some(&path), &HashMap::new())
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown field `listen_adr`"), "{error}");
    }

    #[test]
    fn validation_problems_are_all_reported() {
        let error = load::<Root>(None, &env(&[("GATEWAY_SERVER_MAX_BODY_BYTES", "0")]))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("server.max_body_bytes: must be greater than zero"),
            "{error}"
        );
    }

    #[test]
    fn misspelt_variable_in_a_known_section_is_reported_unknown() {
        let loaded = load::<Root>(
            None,
            &env(&[
                ("GATEWAY_SERVER_LISTEN_ADR", "0.0.0.0:1"),
                ("GATEWAY_OTHER_THING", "ignored: not our section"),
            ]),
        )
        .unwrap();
        assert_eq!(loaded.unknown_env, ["GATEWAY_SERVER_LISTEN_ADR"]);
    }

    #[test]
    fn env_names_lists_every_key() {
        let names = env_names::<Root>().unwrap();
        assert_eq!(
            names,
            [
                "GATEWAY_SERVER_ALLOWED_ORIGINS",
                "GATEWAY_SERVER_LISTEN_ADDR",
                "GATEWAY_SERVER_MAX_BODY_BYTES",
                "GATEWAY_SERVER_TLS_ENABLED",
            ]
        );
    }
}
