//! The kinds apply manages, in the order they are created (deleted in
//! reverse), what identifies each one, which fields name other resources,
//! and where their secrets are.

use serde_json::Value;

use crate::ctx::Ctx;
use crate::error::CliResult;
use crate::nouns::{
    Apis, Channels, GroupPrices, Groups, Keys, Multipliers, Plans, Prices, Rules, Users,
};
use crate::reflect;
use crate::resource::{Filter, Resource};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    User,
    Group,
    Plan,
    Rule,
    Api,
    Channel,
    Price,
    Multiplier,
    GroupPrice,
    Key,
}

pub const ORDER: [Kind; 10] = [
    Kind::User,
    Kind::Group,
    Kind::Plan,
    Kind::Rule,
    Kind::Api,
    Kind::Channel,
    Kind::Price,
    Kind::Multiplier,
    Kind::GroupPrice,
    Kind::Key,
];

/// What a name field refers to, resolved within the tenant (tenants: globally).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    User,
    Group,
    Plan,
    Tenant,
}

/// `name` in the file stands for `field` in the message.
pub struct NameRef {
    pub name: &'static str,
    pub field: &'static str,
    pub target: Target,
    pub many: bool,
}

/// A secret sent beside the message (`secret` of CreateChannel), and the
/// field that shows its hint.
pub struct OutsideSecret {
    pub path: &'static str,
    pub hint: Option<&'static str>,
}

impl Kind {
    /// The key of the tenant's section in the file.
    pub fn section(self) -> &'static str {
        match self {
            Kind::User => "users",
            Kind::Group => "groups",
            Kind::Plan => "plans",
            Kind::Rule => "rules",
            Kind::Api => "apis",
            Kind::Channel => "channels",
            Kind::Price => "prices",
            Kind::Multiplier => "multipliers",
            Kind::GroupPrice => "group_prices",
            Kind::Key => "keys",
        }
    }

    /// The fields whose values, joined by `/`, identify an item in its tenant.
    pub fn identity(self) -> &'static [&'static str] {
        match self {
            Kind::User => &["username"],
            Kind::Price => &["model"],
            Kind::Multiplier => &["group"],
            Kind::GroupPrice => &["group", "model"],
            Kind::Key => &["user", "name"],
            _ => &["name"],
        }
    }

    pub fn refs(self) -> &'static [NameRef] {
        const GROUP: NameRef = NameRef {
            name: "group",
            field: "group_id",
            target: Target::Group,
            many: false,
        };
        const PLAN: NameRef = NameRef {
            name: "plan",
            field: "plan_id",
            target: Target::Plan,
            many: false,
        };
        const USER: NameRef = NameRef {
            name: "user",
            field: "user_id",
            target: Target::User,
            many: false,
        };
        const API_PLAN: NameRef = NameRef {
            name: "auth.plan",
            field: "auth.plan_id",
            target: Target::Plan,
            many: false,
        };
        const ALLOWED: NameRef = NameRef {
            name: "allowed_groups",
            field: "allowed_group_ids",
            target: Target::Group,
            many: true,
        };
        const SHARED: NameRef = NameRef {
            name: "shared_tenants",
            field: "shared_tenant_ids",
            target: Target::Tenant,
            many: true,
        };
        match self {
            Kind::Rule | Kind::Multiplier | Kind::GroupPrice => &[GROUP],
            Kind::Api => &[API_PLAN],
            Kind::Channel => &[ALLOWED, SHARED],
            Kind::Key => &[USER, GROUP, PLAN],
            _ => &[],
        }
    }

    pub fn outside_secret(self) -> Option<OutsideSecret> {
        match self {
            Kind::Channel => Some(OutsideSecret {
                path: "secret",
                hint: Some("secret_hint"),
            }),
            Kind::Api => Some(OutsideSecret {
                path: "upstream_auth.secret",
                hint: Some("upstream_auth.secret_hint"),
            }),
            // Sent only when the user is created: a password cannot be read back.
            Kind::User => Some(OutsideSecret {
                path: "password",
                hint: None,
            }),
            _ => None,
        }
    }

    /// Secrets inside the message and the fields that show their hints;
    /// a secret inside the message without one here is never compared.
    pub fn inside_hint(path: &str) -> Option<String> {
        path.ends_with("hs256_secret")
            .then(|| format!("{path}_hint"))
    }

    /// Fields the services set, never compared nor exported.
    pub fn output_only(self) -> &'static [&'static str] {
        match self {
            Kind::User => &["last_login_time"],
            Kind::Key => &["prefix", "frozen", "last_used_time"],
            Kind::Channel => &["secret_hint"],
            _ => &[],
        }
    }
}

/// Fields every resource has that the services own.
pub const COMMON_OUTPUT: [&str; 4] = ["id", "tenant_id", "create_time", "update_time"];

/// One existing resource: its id and its every field (defaults included).
#[derive(Clone, Debug)]
pub struct Existing {
    pub id: String,
    pub value: Value,
}

macro_rules! dispatch {
    ($kind:expr, $function:ident ( $($arg:expr),* )) => {
        match $kind {
            Kind::User => $function::<Users>($($arg),*).await,
            Kind::Group => $function::<Groups>($($arg),*).await,
            Kind::Plan => $function::<Plans>($($arg),*).await,
            Kind::Rule => $function::<Rules>($($arg),*).await,
            Kind::Api => $function::<Apis>($($arg),*).await,
            Kind::Channel => $function::<Channels>($($arg),*).await,
            Kind::Price => $function::<Prices>($($arg),*).await,
            Kind::Multiplier => $function::<Multipliers>($($arg),*).await,
            Kind::GroupPrice => $function::<GroupPrices>($($arg),*).await,
            Kind::Key => $function::<Keys>($($arg),*).await,
        }
    };
}

/// The tenant's resources of a kind (`tenant_id` empty: global prices).
pub async fn list(ctx: &Ctx, kind: Kind, tenant_id: &str) -> CliResult<Vec<Existing>> {
    dispatch!(kind, list_kind(ctx, tenant_id))
}

async fn list_kind<R: Resource>(ctx: &Ctx, tenant_id: &str) -> CliResult<Vec<Existing>> {
    let filter = Filter {
        tenant_id: (!tenant_id.is_empty()).then(|| tenant_id.to_owned()),
        ..Filter::default()
    };
    let items = R::list(ctx, &filter).await?;
    Ok(items
        .iter()
        .map(|item| Existing {
            id: R::id(item).to_owned(),
            value: reflect::to_json_full(item),
        })
        // Lists of prices add the global ones to the tenant's.
        .filter(|existing| {
            existing
                .value
                .get("tenant_id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                == tenant_id
        })
        .collect())
}

/// Creates from a resolved value; answers the new id and any plaintext shown once.
pub async fn create(
    ctx: &Ctx,
    kind: Kind,
    value: &Value,
    secret: Option<String>,
) -> CliResult<(String, Option<String>)> {
    dispatch!(kind, create_kind(ctx, value, secret))
}

async fn create_kind<R: Resource>(
    ctx: &Ctx,
    value: &Value,
    secret: Option<String>,
) -> CliResult<(String, Option<String>)> {
    let message = reflect::from_json::<R::Message>(value, R::NOUN)?;
    let (created, shown_once) = R::create(ctx, message, secret).await?;
    Ok((R::id(&created).to_owned(), shown_once))
}

pub async fn update(
    ctx: &Ctx,
    kind: Kind,
    value: &Value,
    mask: Vec<String>,
    secret: Option<String>,
) -> CliResult<()> {
    dispatch!(kind, update_kind(ctx, value, mask, secret))
}

async fn update_kind<R: Resource>(
    ctx: &Ctx,
    value: &Value,
    mask: Vec<String>,
    secret: Option<String>,
) -> CliResult<()> {
    let message = reflect::from_json::<R::Message>(value, R::NOUN)?;
    R::update(ctx, message, mask, secret).await.map(|_| ())
}

pub async fn delete(ctx: &Ctx, kind: Kind, id: &str) -> CliResult<()> {
    dispatch!(kind, delete_kind(ctx, id))
}

async fn delete_kind<R: Resource>(ctx: &Ctx, id: &str) -> CliResult<()> {
    R::delete(ctx, id).await
}

/// The value as the services would store it (see [`reflect::normalized`]).
pub fn normalized(kind: Kind, value: &Value) -> CliResult<Value> {
    fn through<R: Resource>(value: &Value) -> CliResult<Value> {
        reflect::normalized::<R::Message>(value, R::NOUN)
    }
    match kind {
        Kind::User => through::<Users>(value),
        Kind::Group => through::<Groups>(value),
        Kind::Plan => through::<Plans>(value),
        Kind::Rule => through::<Rules>(value),
        Kind::Api => through::<Apis>(value),
        Kind::Channel => through::<Channels>(value),
        Kind::Price => through::<Prices>(value),
        Kind::Multiplier => through::<Multipliers>(value),
        Kind::GroupPrice => through::<GroupPrices>(value),
        Kind::Key => through::<Keys>(value),
    }
}
