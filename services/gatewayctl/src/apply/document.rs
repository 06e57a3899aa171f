//! The declarative format: tenants, each with the kinds of resources it
//! manages, every resource in its proto fields (snake_case) with names in
//! place of ids and secrets as references (`{env: VAR}`, `{file: PATH}`).
//! A kind left out of a tenant is not managed; an empty list is (and with
//! `--prune` deletes every one of that kind).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{CliError, CliResult};

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Document {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tenants: Vec<TenantSpec>,
    /// The operator's global prices (superadmin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global: Option<GlobalSpec>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prices: Option<Vec<Value>>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSpec {
    pub slug: String,
    /// Shown name; a new tenant (superadmin) gets the slug when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plans: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apis: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prices: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multipliers: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_prices: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<Vec<Value>>,
}

pub fn parse(text: &str, origin: &str) -> CliResult<Document> {
    let document: Document = serde_norway::from_str(text)
        .map_err(|error| CliError::usage(format!("{origin}: {error}")))?;
    let mut slugs: Vec<&str> = document
        .tenants
        .iter()
        .map(|tenant| tenant.slug.as_str())
        .collect();
    slugs.sort_unstable();
    if let Some(pair) = slugs.windows(2).find(|pair| pair[0] == pair[1]) {
        return Err(CliError::usage(format!(
            "{origin}: tenant {:?} is described twice",
            pair[0]
        )));
    }
    Ok(document)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_left_out_are_unmanaged_and_typos_are_refused() {
        let document = parse("tenants:\n  - slug: demo\n    groups: []\n", "test").unwrap();
        let tenant = &document.tenants[0];
        assert_eq!(tenant.groups.as_deref(), Some(&[][..]));
        assert!(tenant.apis.is_none());
        let error =
            parse("tenants:\n  - slug: demo\n    gropus: []\n", "gateway.yaml").unwrap_err();
        assert!(error.message.contains("gropus"), "{}", error.message);
        assert!(parse("tenants: [{slug: a}, {slug: a}]", "x").is_err());
    }
}
