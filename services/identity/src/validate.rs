//! Input rules, each failing with the field it names.

use crate::error::IdentityError;
use crate::password::MIN_PASSWORD_CHARS;

/// `^[a-z0-9][a-z0-9-]{1,62}$`: safe in URLs and paths (`/{slug}/...`).
pub fn slug(field: &'static str, value: &str) -> Result<(), IdentityError> {
    let bytes = value.as_bytes();
    let valid = (2..=63).contains(&bytes.len())
        && bytes[0].is_ascii_lowercase() | bytes[0].is_ascii_digit()
        && bytes[1..]
            .iter()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || *byte == b'-');
    if valid {
        Ok(())
    } else {
        Err(IdentityError::invalid(
            field,
            "must be 2 to 63 characters of a-z, 0-9 and '-', starting with a letter or digit",
        ))
    }
}

/// Path prefixes of the AI endpoints (`/v1/chat/completions`,
/// `/v1beta/models/...`): a tenant with such a slug could never be reached
/// at `/{slug}/{api}/...`.
pub const RESERVED_TENANT_SLUGS: [&str; 2] = ["v1", "v1beta"];

/// A tenant's slug: [`slug`], and not one of the reserved path prefixes.
pub fn tenant_slug(value: &str) -> Result<(), IdentityError> {
    slug("tenant.slug", value)?;
    if RESERVED_TENANT_SLUGS.contains(&value) {
        return Err(IdentityError::invalid(
            "tenant.slug",
            format!("{value:?} is reserved for the AI endpoints' paths"),
        ));
    }
    Ok(())
}

/// Letters, digits and `._-`, 1 to 64 characters: safe in an LDAP DN.
pub fn username(value: &str) -> Result<(), IdentityError> {
    let valid = (1..=64).contains(&value.len())
        && value
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(IdentityError::invalid(
            "username",
            "must be 1 to 64 characters of letters, digits, '.', '_' and '-'",
        ))
    }
}

/// Empty, or one `@` with something on both sides and no spaces.
pub fn email(value: &str) -> Result<(), IdentityError> {
    if value.is_empty() {
        return Ok(());
    }
    let valid = value.len() <= 254
        && !value.contains(char::is_whitespace)
        && value.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.contains('@')
        });
    if valid {
        Ok(())
    } else {
        Err(IdentityError::invalid("email", "is not an email address"))
    }
}

/// The password policy: 12 to 256 characters, not containing the username.
pub fn password(field: &'static str, value: &str, username: &str) -> Result<(), IdentityError> {
    let length = value.chars().count();
    if length < MIN_PASSWORD_CHARS {
        return Err(IdentityError::invalid(
            field,
            format!("must be at least {MIN_PASSWORD_CHARS} characters"),
        ));
    }
    if length > 256 {
        return Err(IdentityError::invalid(
            field,
            "must be at most 256 characters",
        ));
    }
    if !username.is_empty() && value.to_lowercase().contains(&username.to_lowercase()) {
        return Err(IdentityError::invalid(
            field,
            "must not contain the username",
        ));
    }
    Ok(())
}

/// A display name: 1 to 200 characters.
pub fn name(field: &'static str, value: &str) -> Result<(), IdentityError> {
    let length = value.chars().count();
    if (1..=200).contains(&length) {
        Ok(())
    } else {
        Err(IdentityError::invalid(field, "must be 1 to 200 characters"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ai_path_prefixes_are_not_tenant_slugs() {
        for reserved in RESERVED_TENANT_SLUGS {
            let error = tenant_slug(reserved).unwrap_err().to_string();
            assert!(error.contains("reserved"), "{error}");
        }
        assert!(tenant_slug("v2").is_ok());
    }

    #[test]
    fn slugs_follow_the_documented_pattern() {
        for good in ["ab", "acme", "acme-2", "0x", &"a".repeat(63)] {
            assert!(slug("slug", good).is_ok(), "{good}");
        }
        for bad in [
            "a",
            "-acme",
            "Acme",
            "acme_corp",
            "acme/x",
            "",
            &"a".repeat(64),
        ] {
            let error = slug("tenant.slug", bad).unwrap_err().to_string();
            assert!(error.starts_with("tenant.slug:"), "{bad}: {error}");
        }
    }

    #[test]
    fn password_policy_explains_itself() {
        assert!(password("password", "correct horse battery", "ada").is_ok());
        assert_eq!(
            password("password", "short", "ada")
                .unwrap_err()
                .to_string(),
            "password: must be at least 12 characters"
        );
        assert_eq!(
            password("new_password", "ada-is-my-password", "Ada")
                .unwrap_err()
                .to_string(),
            "new_password: must not contain the username"
        );
    }

    #[test]
    fn usernames_and_emails() {
        assert!(username("ada.lovelace-1").is_ok());
        assert!(username("ada,ou=admins").is_err());
        assert!(username("").is_err());
        assert!(email("").is_ok());
        assert!(email("ada@example.org").is_ok());
        assert!(email("ada@localhost").is_err());
        assert!(email("a da@example.org").is_err());
    }
}
