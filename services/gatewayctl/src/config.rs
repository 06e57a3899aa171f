//! The user's configuration directory: named contexts (endpoints, like
//! kubectl's) in `config.yaml`, and the tokens `login` stored, one per
//! context, in `credentials.yaml`, which only its owner may read (0600).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{CliError, CliResult, Exit};

/// Used when no context was ever created or chosen.
pub const DEFAULT_CONTEXT: &str = "default";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Context {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_url: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_context: Option<String>,
    #[serde(default)]
    pub contexts: BTreeMap<String, Context>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Credentials {
    #[serde(default)]
    tokens: BTreeMap<String, String>,
}

pub struct ConfigDir {
    path: PathBuf,
}

impl ConfigDir {
    /// `--config-dir` / `GATEWAYCTL_CONFIG_DIR`, else `$XDG_CONFIG_HOME/gatewayctl`,
    /// else `~/.config/gatewayctl`.
    pub fn locate(explicit: Option<&Path>) -> CliResult<Self> {
        let path = match explicit {
            Some(path) => path.to_owned(),
            None => std::env::var_os("XDG_CONFIG_HOME")
                .filter(|value| !value.is_empty())
                .map(PathBuf::from)
                .or_else(|| {
                    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config"))
                })
                .map(|base| base.join("gatewayctl"))
                .ok_or_else(|| CliError::usage("no HOME: pass --config-dir"))?,
        };
        Ok(Self { path })
    }

    pub fn load(&self) -> CliResult<ConfigFile> {
        read_yaml(&self.path.join("config.yaml"))
    }

    pub fn save(&self, config: &ConfigFile) -> CliResult<()> {
        write_private(&self.path, "config.yaml", &to_yaml(config)?)
    }

    pub fn token(&self, context: &str) -> CliResult<Option<String>> {
        let credentials: Credentials = read_yaml(&self.path.join("credentials.yaml"))?;
        Ok(credentials.tokens.get(context).cloned())
    }

    pub fn store_token(&self, context: &str, token: &str) -> CliResult<PathBuf> {
        let mut credentials: Credentials = read_yaml(&self.path.join("credentials.yaml"))?;
        credentials
            .tokens
            .insert(context.to_owned(), token.to_owned());
        write_private(&self.path, "credentials.yaml", &to_yaml(&credentials)?)?;
        Ok(self.path.join("credentials.yaml"))
    }

    /// Whether there was a token to forget.
    pub fn remove_token(&self, context: &str) -> CliResult<bool> {
        let mut credentials: Credentials = read_yaml(&self.path.join("credentials.yaml"))?;
        let removed = credentials.tokens.remove(context).is_some();
        if removed {
            write_private(&self.path, "credentials.yaml", &to_yaml(&credentials)?)?;
        }
        Ok(removed)
    }
}

fn read_yaml<T: Default + for<'de> Deserialize<'de>>(path: &Path) -> CliResult<T> {
    match std::fs::read_to_string(path) {
        Ok(text) if text.trim().is_empty() => Ok(T::default()),
        Ok(text) => serde_norway::from_str(&text)
            .map_err(|error| CliError::usage(format!("{}: {error}", path.display()))),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(error) => Err(CliError::new(
            Exit::Failure,
            format!("{}: {error}", path.display()),
        )),
    }
}

fn to_yaml<T: Serialize>(value: &T) -> CliResult<String> {
    serde_norway::to_string(value).map_err(|error| CliError::new(Exit::Failure, error.to_string()))
}

/// Writes through a temporary file created 0600 in a 0700 directory, then
/// renames it, so a token is never readable by others, even for a moment.
fn write_private(dir: &Path, name: &str, text: &str) -> CliResult<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let temporary = dir.join(format!(".{name}.{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temporary, dir.join(name))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn tokens_are_kept_per_context_readable_only_by_the_owner() {
        let dir = tempfile::tempdir().unwrap();
        let config = ConfigDir::locate(Some(&dir.path().join("ctl"))).unwrap();
        assert_eq!(config.token("prod").unwrap(), None);
        let path = config.store_token("prod", "jwt-1").unwrap();
        config.store_token("dev", "jwt-2").unwrap();
        assert_eq!(config.token("prod").unwrap().as_deref(), Some("jwt-1"));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let dir_mode = std::fs::metadata(dir.path().join("ctl"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        assert!(config.remove_token("prod").unwrap());
        assert!(!config.remove_token("prod").unwrap());
        assert_eq!(config.token("dev").unwrap().as_deref(), Some("jwt-2"));
    }

    #[test]
    fn contexts_round_trip_and_typos_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let config = ConfigDir::locate(Some(dir.path())).unwrap();
        let mut file = config.load().unwrap();
        file.current_context = Some("prod".into());
        file.contexts.insert(
            "prod".into(),
            Context {
                identity_url: Some("http://id:50051".into()),
                ..Default::default()
            },
        );
        config.save(&file).unwrap();
        let loaded = config.load().unwrap();
        assert_eq!(
            loaded.contexts["prod"].identity_url.as_deref(),
            Some("http://id:50051")
        );
        std::fs::write(
            dir.path().join("config.yaml"),
            "contexts: {a: {identiy_url: x}}",
        )
        .unwrap();
        let error = config.load().unwrap_err();
        assert!(error.message.contains("identiy_url"), "{}", error.message);
    }
}
