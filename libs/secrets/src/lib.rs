//! Secrets at rest (upstream API keys, JWT signing keys) are sealed with
//! AES-256-GCM under a master key that lives outside the database.
//!
//! Sealed layout: `0x01 || nonce (12 bytes) || ciphertext || tag (16)`.
//! Each secret is sealed with associated data naming what it is and whose
//! it is (e.g. `catalog.channel:<id>`), so a sealed value copied into
//! another row fails to open instead of leaking there.

use std::path::Path;

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use gateway_runtime::secret::Secret;
use rand::Rng as _;
use serde::{Deserialize, Serialize};

const VERSION: u8 = 1;
const NONCE_BYTES: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("secrets.master_key: expected 64 hex digits (32 bytes)")]
    BadMasterKey,
    #[error("cannot read or create the master key file {path}: {message}")]
    KeyFile { path: String, message: String },
    #[error(
        "a sealed secret cannot be opened: wrong master key, or the value was moved or corrupted"
    )]
    Unseal,
    #[error("sealing a secret failed")]
    Seal,
}

/// The `[secrets]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecretsConfig {
    /// 64 hex digits. Production sets it (from a secret store); when empty,
    /// `master_key_file` is used.
    pub master_key: Secret,
    /// Read, or on first start created with a random key (mode 0600): the
    /// embedded default. Keep it apart from database backups.
    pub master_key_file: String,
}

impl Default for SecretsConfig {
    fn default() -> Self {
        Self {
            master_key: Secret::default(),
            master_key_file: "data/master.key".to_owned(),
        }
    }
}

impl SecretsConfig {
    pub fn validate(&self, problems: &mut Vec<String>) {
        if !self.master_key.is_empty() && parse_hex_key(self.master_key.expose()).is_none() {
            problems.push("secrets.master_key: expected 64 hex digits (32 bytes)".to_owned());
        }
        if self.master_key.is_empty() && self.master_key_file.is_empty() {
            problems.push(
                "secrets.master_key_file: must be set when secrets.master_key is empty".to_owned(),
            );
        }
    }
}

/// Seals and opens secrets under one master key.
#[derive(Clone)]
pub struct SecretBox {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("SecretBox([redacted])")
    }
}

impl SecretBox {
    pub fn new(master_key: &[u8; 32]) -> Self {
        Self {
            cipher: Aes256Gcm::new(master_key.into()),
        }
    }

    /// The master key from config, or from (or into) the key file.
    pub fn from_config(config: &SecretsConfig) -> Result<Self, SecretsError> {
        if !config.master_key.is_empty() {
            let key =
                parse_hex_key(config.master_key.expose()).ok_or(SecretsError::BadMasterKey)?;
            return Ok(Self::new(&key));
        }
        let key = load_or_create_key_file(Path::new(&config.master_key_file))?;
        Ok(Self::new(&key))
    }

    /// Encrypts `plaintext`, bound to `context` (what and whose it is).
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> Result<Vec<u8>, SecretsError> {
        let mut nonce = [0_u8; NONCE_BYTES];
        rand::rng().fill(&mut nonce);
        let ciphertext = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| SecretsError::Seal)?;
        let mut sealed = Vec::with_capacity(1 + NONCE_BYTES + ciphertext.len());
        sealed.push(VERSION);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        Ok(sealed)
    }

    /// Decrypts what [`Self::seal`] produced for the same `context`.
    pub fn open(&self, context: &str, sealed: &[u8]) -> Result<Vec<u8>, SecretsError> {
        if sealed.len() < 1 + NONCE_BYTES || sealed[0] != VERSION {
            return Err(SecretsError::Unseal);
        }
        let (nonce, ciphertext) = sealed[1..].split_at(NONCE_BYTES);
        self.cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| SecretsError::Unseal)
    }

    pub fn seal_str(&self, context: &str, plaintext: &str) -> Result<Vec<u8>, SecretsError> {
        self.seal(context, plaintext.as_bytes())
    }

    pub fn open_string(&self, context: &str, sealed: &[u8]) -> Result<String, SecretsError> {
        String::from_utf8(self.open(context, sealed)?).map_err(|_| SecretsError::Unseal)
    }
}

/// What reads show of a secret: its last four characters.
pub fn hint(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() <= 4 {
        return "****".to_owned();
    }
    chars[chars.len() - 4..].iter().collect()
}

fn parse_hex_key(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 {
        return None;
    }
    let mut key = [0_u8; 32];
    for (index, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(index * 2..index * 2 + 2)?, 16).ok()?;
    }
    Some(key)
}

fn load_or_create_key_file(path: &Path) -> Result<[u8; 32], SecretsError> {
    let error = |message: String| SecretsError::KeyFile {
        path: path.display().to_string(),
        message,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => parse_hex_key(&text).ok_or_else(|| error("expected 64 hex digits".to_owned())),
        Err(read_error) if read_error.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = path
                .parent()
                .filter(|parent| !parent.as_os_str().is_empty())
            {
                std::fs::create_dir_all(parent).map_err(|e| error(e.to_string()))?;
            }
            let mut key = [0_u8; 32];
            rand::rng().fill(&mut key);
            let hex: String = key.iter().map(|byte| format!("{byte:02x}")).collect();
            write_private(path, &hex).map_err(|e| error(e.to_string()))?;
            tracing::warn!(path = %path.display(), "created a new master key file; keep it apart from database backups");
            // Another process may have won the race: use what is on disk.
            let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
            parse_hex_key(&text).ok_or_else(|| error("expected 64 hex digits".to_owned()))
        }
        Err(read_error) => Err(error(read_error.to_string())),
    }
}

#[cfg(unix)]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut file) => file.write_all(contents.as_bytes()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(error),
    }
}

#[cfg(not(unix))]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
    {
        Ok(mut file) => std::io::Write::write_all(&mut file, contents.as_bytes()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret_box() -> SecretBox {
        SecretBox::new(&[42; 32])
    }

    #[test]
    fn sealed_values_open_only_in_their_own_context() {
        let secrets = secret_box();
        let sealed = secrets
            .seal_str("catalog.channel:1", "sk-live-abcdef")
            .unwrap();
        assert!(!String::from_utf8_lossy(&sealed).contains("sk-live"));
        assert_eq!(
            secrets.open_string("catalog.channel:1", &sealed).unwrap(),
            "sk-live-abcdef"
        );
        assert!(
            secrets.open("catalog.channel:2", &sealed).is_err(),
            "moved to another row"
        );
        assert!(
            SecretBox::new(&[7; 32])
                .open("catalog.channel:1", &sealed)
                .is_err(),
            "another master key"
        );
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(secrets.open("catalog.channel:1", &tampered).is_err());
        assert!(secrets.open("x", &[1, 2, 3]).is_err());
    }

    #[test]
    fn the_same_secret_seals_differently_each_time() {
        let secrets = secret_box();
        assert_ne!(
            secrets.seal_str("c", "same").unwrap(),
            secrets.seal_str("c", "same").unwrap()
        );
    }

    #[test]
    fn hints_show_the_last_four_characters_only() {
        assert_eq!(hint("sk-live-abcdef"), "cdef");
        assert_eq!(hint("abc"), "****");
    }

    #[test]
    fn master_key_comes_from_config_or_a_created_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("nested/master.key");
        let config = SecretsConfig {
            master_key: Secret::default(),
            master_key_file: file.display().to_string(),
        };
        let first = SecretBox::from_config(&config).unwrap();
        let sealed = first.seal_str("ctx", "value").unwrap();
        let again = SecretBox::from_config(&config).unwrap();
        assert_eq!(
            again.open_string("ctx", &sealed).unwrap(),
            "value",
            "the file is reused"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(
                std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let explicit = SecretsConfig {
            master_key: Secret::new("ab".repeat(32)),
            master_key_file: String::new(),
        };
        assert!(SecretBox::from_config(&explicit).is_ok());
        let mut problems = Vec::new();
        SecretsConfig {
            master_key: Secret::new("nothex"),
            ..SecretsConfig::default()
        }
        .validate(&mut problems);
        assert_eq!(
            problems,
            ["secrets.master_key: expected 64 hex digits (32 bytes)"]
        );
        assert_eq!(format!("{first:?}"), "SecretBox([redacted])");
    }
}
