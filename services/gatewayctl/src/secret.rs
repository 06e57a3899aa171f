//! Secrets come from the environment or a file, never from a flag's value
//! or a YAML file's text, so they stay out of shell history and of Git.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{CliError, CliResult};

/// Where the declarative format says a secret is: `{env: OPENAI_KEY}` or
/// `{file: /run/secrets/openai}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum SecretRef {
    Env(String),
    File(String),
    /// What export writes: the secret the service holds (its hint shown),
    /// kept as it is. Creating a resource needs a real one.
    Stored(String),
}

impl SecretRef {
    /// The secret's value; `None` for [`SecretRef::Stored`] (keep it).
    pub fn resolve(&self) -> CliResult<Option<String>> {
        match self {
            Self::Env(variable) => from_env(variable).map(Some),
            Self::File(path) => from_file(Path::new(path)).map(Some),
            Self::Stored(_) => Ok(None),
        }
    }
}

pub fn from_env(variable: &str) -> CliResult<String> {
    match std::env::var(variable) {
        Ok(value) if !value.is_empty() => Ok(value),
        _ => Err(CliError::usage(format!(
            "the secret's environment variable {variable} is not set"
        ))),
    }
}

/// The file's text without its final newline.
pub fn from_file(path: &Path) -> CliResult<String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| CliError::usage(format!("secret file {}: {error}", path.display())))?;
    let secret = text.trim_end_matches(['\r', '\n']).to_owned();
    if secret.is_empty() {
        return Err(CliError::usage(format!(
            "secret file {} is empty",
            path.display()
        )));
    }
    Ok(secret)
}

/// What the services show of a stored secret (its last four characters),
/// computed the same way, so apply can tell a changed secret from a kept one.
pub fn hint(secret: &str) -> String {
    gateway_secrets::hint(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_read_env_and_files_and_say_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "sk-from-file\n").unwrap();
        let from_file = SecretRef::File(path.display().to_string());
        assert_eq!(
            from_file.resolve().unwrap().as_deref(),
            Some("sk-from-file")
        );
        assert_eq!(SecretRef::Stored("abcd".into()).resolve().unwrap(), None);
        let missing = SecretRef::Env("GATEWAYCTL_TEST_SURELY_UNSET".into());
        let error = missing.resolve().unwrap_err();
        assert!(
            error.message.contains("GATEWAYCTL_TEST_SURELY_UNSET"),
            "{}",
            error.message
        );
        // The declarative file is read as JSON values, then into references.
        let yaml = |text: &str| serde_norway::from_str::<serde_json::Value>(text).unwrap();
        let parsed: SecretRef = serde_json::from_value(yaml("{env: OPENAI_KEY}")).unwrap();
        assert_eq!(parsed, SecretRef::Env("OPENAI_KEY".into()));
        assert!(serde_json::from_value::<SecretRef>(yaml("{value: sk-inline}")).is_err());
        assert_eq!(hint("sk-abcdefgh"), "efgh");
    }
}
