//! `login`, `logout` and `whoami`: a JWT from identity's Login, kept per
//! context in the user's config directory.

use base64::Engine as _;
use gateway_proto::identity::v1 as pb;
use serde::Deserialize;

use crate::config::ConfigDir;
use crate::ctx::{Credential, Ctx};
use crate::error::{CliError, CliResult};
use crate::output;

/// The tenant is the global `--tenant` (its slug; `system` for the
/// operator); LDAP logins need none, the directory's tenant is configured.
#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    #[arg(long, short = 'u')]
    pub username: String,
    /// Read the password from stdin (for scripts); else it is asked for.
    #[arg(long)]
    pub password_stdin: bool,
    /// Log in through the tenant's LDAP directory.
    #[arg(long)]
    pub ldap: bool,
}

/// What `whoami` reads from the token (identity signed it; the services
/// check the signature, this only shows it).
#[derive(Debug, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub tenant: String,
    pub role: String,
    pub exp: i64,
}

pub fn claims(ctx: &Ctx) -> Option<Claims> {
    let Credential::Bearer(token) = &ctx.credential else {
        return None;
    };
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

pub async fn login(
    ctx: &Ctx,
    args: &LoginArgs,
    tenant: Option<&str>,
    dir: &ConfigDir,
    context: &str,
) -> CliResult<()> {
    let tenant = match (tenant, args.ldap) {
        (Some(tenant), _) => tenant.to_owned(),
        (None, true) => String::new(),
        (None, false) => return Err(CliError::usage("name your tenant with --tenant SLUG")),
    };
    let password = if args.password_stdin {
        ctx.read_stdin()?.trim_end_matches(['\r', '\n']).to_owned()
    } else {
        prompt_password()?
    };
    let method = if args.ldap {
        pb::LoginMethod::Ldap
    } else {
        pb::LoginMethod::Password
    };
    let answer = ctx
        .identity()
        .login(pb::LoginRequest {
            tenant_slug: tenant.clone(),
            username: args.username.clone(),
            password,
            method: method.into(),
        })
        .await?
        .into_inner();
    let path = dir.store_token(context, &answer.access_token)?;
    let expires = answer
        .expire_time
        .map(|time| time_text(time.seconds))
        .unwrap_or_else(|| "-".to_owned());
    ctx.note(&format!(
        "logged in to context {context:?} as {}/{} until {expires}; token in {}",
        if tenant.is_empty() { "ldap" } else { &tenant },
        args.username,
        path.display()
    ))
}

fn prompt_password() -> CliResult<String> {
    let terminal = console::Term::stderr();
    if !terminal.is_term() {
        return Err(CliError::usage(
            "no terminal to ask for the password: use --password-stdin",
        ));
    }
    terminal.write_str("Password: ")?;
    let password = terminal.read_secure_line()?;
    Ok(password)
}

pub fn logout(ctx: &Ctx, dir: &ConfigDir, context: &str) -> CliResult<()> {
    if dir.remove_token(context)? {
        ctx.note(&format!("logged out of context {context:?}"))
    } else {
        ctx.note(&format!("no token was stored for context {context:?}"))
    }
}

/// Who the credential is, confirmed by the services (an expired or revoked
/// token fails here, not on the next real command).
pub async fn whoami(ctx: &Ctx, context: &str) -> CliResult<()> {
    let rows = match &ctx.credential {
        Credential::Anonymous => {
            return Err(CliError::new(
                crate::error::Exit::Unauthenticated,
                "not logged in: run `gatewayctl login`, or pass --token",
            ));
        }
        Credential::AdminKey(_) => vec![
            ("context", context.to_owned()),
            ("credential", "admin key".to_owned()),
            ("role", "SUPERADMIN".to_owned()),
        ],
        Credential::Bearer(_) => bearer_rows(ctx, context).await?,
    };
    let value = serde_json::Value::Object(
        rows.iter()
            .map(|(field, value)| ((*field).to_owned(), value.clone().into()))
            .collect(),
    );
    let text = match ctx.format {
        output::Format::Table => output::table(
            ["FIELD", "VALUE"],
            rows.into_iter()
                .map(|(field, value)| vec![field.to_owned(), value])
                .collect(),
        ),
        format => output::encode(format, &value)?,
    };
    ctx.print(&text)
}

async fn bearer_rows(ctx: &Ctx, context: &str) -> CliResult<Vec<(&'static str, String)>> {
    let claims = claims(ctx).ok_or_else(|| CliError::usage("the token is not a JWT"))?;
    let user = ctx
        .identity()
        .get_user(pb::GetUserRequest {
            id: claims.sub.clone(),
        })
        .await?
        .into_inner()
        .user;
    // A USER may not read their tenant: the id from the token is shown alone.
    let request = pb::GetTenantRequest {
        id: claims.tenant.clone(),
    };
    let tenant = match ctx.identity().get_tenant(request).await {
        Ok(answer) => answer.into_inner().tenant,
        Err(status) if status.code() == tonic::Code::PermissionDenied => None,
        Err(status) => return Err(status.into()),
    };
    Ok(vec![
        ("context", context.to_owned()),
        ("user", user.map(|user| user.username).unwrap_or_default()),
        ("user_id", claims.sub),
        (
            "tenant",
            tenant.map(|tenant| tenant.slug).unwrap_or_default(),
        ),
        ("tenant_id", claims.tenant),
        ("role", claims.role),
        ("expires", time_text(claims.exp)),
    ])
}

/// Seconds since the epoch as `2026-12-02 17:50:18 UTC`.
pub fn time_text(seconds: i64) -> String {
    gateway_proto::utc_text(seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_shown_in_utc() {
        assert_eq!(time_text(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(time_text(1_796_233_818), "2026-12-02 17:50:18 UTC");
        assert_eq!(time_text(951_782_400), "2000-02-29 00:00:00 UTC");
    }
}
