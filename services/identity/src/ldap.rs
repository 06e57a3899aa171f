//! LDAP / Active Directory login by simple bind: the directory checks the
//! password; identity never sees or stores it.

use std::time::Duration;

use ldap3::{LdapConnAsync, LdapConnSettings};

use crate::config::LdapConfig;

/// LDAP result code for a wrong password or unknown DN.
const INVALID_CREDENTIALS: u32 = 49;

#[derive(Debug, thiserror::Error)]
pub enum LdapError {
    #[error("ldap server unreachable: {0}")]
    Unreachable(String),
    #[error("ldap bind failed with result code {rc}: {message}")]
    Refused { rc: u32, message: String },
}

/// Binds as `username`; `Ok(false)` for wrong credentials.
///
/// An empty password is refused before any bind: LDAP treats it as an
/// unauthenticated bind, which many servers accept for any DN.
pub async fn authenticate(
    config: &LdapConfig,
    username: &str,
    password: &str,
) -> Result<bool, LdapError> {
    if password.is_empty() {
        return Ok(false);
    }
    let dn = config
        .user_dn_template
        .replace("{username}", &escape_dn_value(username));
    let timeout = Duration::from_millis(config.timeout_ms);
    let settings = LdapConnSettings::new().set_conn_timeout(timeout);
    let (connection, mut ldap) = LdapConnAsync::with_settings(settings, &config.url)
        .await
        .map_err(|error| LdapError::Unreachable(error.to_string()))?;
    ldap3::drive!(connection);
    ldap.with_timeout(timeout);
    let result = ldap
        .simple_bind(&dn, password)
        .await
        .map_err(|error| LdapError::Unreachable(error.to_string()))?;
    let _ = ldap.unbind().await;
    match result.rc {
        0 => Ok(true),
        INVALID_CREDENTIALS => Ok(false),
        rc => Err(LdapError::Refused {
            rc,
            message: result.text,
        }),
    }
}

/// Escapes a value for use in a DN (RFC 4514, section 2.4).
fn escape_dn_value(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for (index, character) in value.chars().enumerate() {
        let at_edge = index == 0 || index + 1 == value.chars().count();
        match character {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=' => {
                escaped.push('\\');
                escaped.push(character);
            }
            ' ' | '#' if at_edge => {
                escaped.push('\\');
                escaped.push(character);
            }
            '\0' => escaped.push_str("\\00"),
            _ => escaped.push(character),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dn_special_characters_are_escaped() {
        assert_eq!(escape_dn_value("alice"), "alice");
        assert_eq!(escape_dn_value("a,ou=admins"), "a\\,ou\\=admins");
        assert_eq!(escape_dn_value(" #x "), "\\ #x\\ ");
    }
}
