//! The verbs every noun shares (list, get, create, update, delete), written
//! once over a [`Resource`]: what differs per noun is its RPCs, its name
//! field, its table columns and which name flags it takes.

use std::path::PathBuf;

use serde_json::{Map, Value};

use crate::ctx::Ctx;
use crate::error::{CliError, CliResult};
use crate::output::{self, Column};
use crate::reflect::{self, Typed};
use crate::resolve::{self, RefKind};

/// A name flag (`--group gold`) and the id field it fills.
pub struct Ref {
    pub flag: &'static str,
    pub field: &'static str,
    pub kind: RefKind,
    /// A repeated field (`allowed_group_ids`): the flag may repeat.
    pub many: bool,
}

/// List filters beyond the tenant; a noun states which it supports.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub tenant_id: Option<String>,
    pub user_id: Option<String>,
    pub group_id: Option<String>,
    pub model: Option<String>,
}

pub trait Resource {
    type Message: Typed;
    /// Singular, as messages say it: `api`.
    const NOUN: &'static str;
    /// The field create's positional NAME fills.
    const NAME_FIELD: Option<&'static str>;
    const COLUMNS: &'static [Column];
    const REFS: &'static [Ref] = &[];
    /// Which of `--user`, `--group`, `--model` list accepts.
    const FILTERS: &'static [&'static str] = &[];
    /// USD flags (`--spend-limit`) and the micro-USD field each fills.
    const MONEY: &'static [(&'static str, &'static str)] = &[];
    /// Whether create/update take a secret (`--secret-env` ...).
    const SECRET: bool = false;
    /// Whether the message has a `tenant_id` that `--tenant` fills.
    const TENANT_SCOPED: bool = true;
    /// Whether an empty `tenant_id` means global (prices), so create fills
    /// the caller's tenant unless `--global` asks for that.
    const EMPTY_TENANT_IS_GLOBAL: bool = false;

    fn id(message: &Self::Message) -> &str;
    fn name(message: &Self::Message) -> String;
    /// A reference as [`Self::name`] spells it, when people say it another
    /// way (a multiplier by its group's name).
    async fn canonical(_ctx: &Ctx, reference: &str) -> CliResult<String> {
        Ok(reference.to_owned())
    }
    async fn list(ctx: &Ctx, filter: &Filter) -> CliResult<Vec<Self::Message>>;
    /// The created message, and a secret the service shows only now (a key's plaintext).
    async fn create(
        ctx: &Ctx,
        message: Self::Message,
        secret: Option<String>,
    ) -> CliResult<(Self::Message, Option<String>)>;
    async fn update(
        ctx: &Ctx,
        message: Self::Message,
        mask: Vec<String>,
        secret: Option<String>,
    ) -> CliResult<Self::Message>;
    async fn delete(ctx: &Ctx, id: &str) -> CliResult<()>;
}

#[derive(Debug, clap::Subcommand)]
pub enum Verb {
    /// List every one you may see (all pages).
    #[command(visible_alias = "ls")]
    List(ListArgs),
    /// Show one, by id or name.
    Get { reference: String },
    /// Create one from flags and/or a file.
    Create {
        /// Its name (or username, slug, model, code: what the noun is known by).
        name: Option<String>,
        #[command(flatten)]
        fields: Fields,
    },
    /// Change the fields given; the others keep their values.
    Update {
        reference: String,
        #[command(flatten)]
        fields: Fields,
    },
    /// Delete one, by id or name.
    #[command(visible_alias = "rm")]
    Delete { reference: String },
}

#[derive(Debug, Default, clap::Args)]
pub struct ListArgs {
    /// Only those of this user (username or id).
    #[arg(long)]
    pub user: Option<String>,
    /// Only those of this group (name or id).
    #[arg(long)]
    pub group: Option<String>,
    /// Only those for this model.
    #[arg(long)]
    pub model: Option<String>,
}

#[derive(Debug, Default, clap::Args)]
pub struct Fields {
    /// The message's fields in YAML or JSON, proto field names (`-` = stdin).
    #[arg(short = 'f', long = "file", value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// FIELD=VALUE with a YAML value: `weight=3`, `models=[a,b]`,
    /// `timeouts.connect=2s`, `provider=OPENAI`. Repeatable.
    #[arg(long = "set", value_name = "FIELD=VALUE")]
    pub set: Vec<String>,
    /// A user by username or id (keys).
    #[arg(long)]
    pub user: Option<String>,
    /// A group by name or id (keys, rules, multipliers, group prices;
    /// repeatable for a channel's allowed groups).
    #[arg(long)]
    pub group: Vec<String>,
    /// A plan by name or id (keys, clients).
    #[arg(long)]
    pub plan: Option<String>,
    /// A key's lifetime spend limit in USD.
    #[arg(long, value_name = "USD")]
    pub spend_limit: Option<String>,
    /// Prices in USD per million tokens.
    #[arg(long, value_name = "USD")]
    pub input_price: Option<String>,
    #[arg(long, value_name = "USD")]
    pub output_price: Option<String>,
    #[arg(long, value_name = "USD")]
    pub cached_input_price: Option<String>,
    /// A global price (superadmin), not the tenant's.
    #[arg(long)]
    pub global: bool,
    /// The secret (a channel's provider key, an API's upstream credential,
    /// a new user's password) from this environment variable...
    #[arg(long, value_name = "VAR")]
    pub secret_env: Option<String>,
    /// ...or from this file...
    #[arg(long, value_name = "PATH")]
    pub secret_file: Option<PathBuf>,
    /// ...or from stdin. Never a flag's value, so it stays out of shell history.
    #[arg(long)]
    pub secret_stdin: bool,
}

pub async fn run<R: Resource>(ctx: &Ctx, verb: Verb) -> CliResult<()> {
    match verb {
        Verb::List(args) => {
            let filter = filter::<R>(ctx, &args).await?;
            let items = R::list(ctx, &filter).await?;
            ctx.print(&output::list(ctx.format, &items, R::COLUMNS)?)
        }
        Verb::Get { reference } => {
            let found = resolve::find::<R>(ctx, &reference).await?;
            ctx.print(&output::one(ctx.format, &found)?)
        }
        Verb::Create { name, fields } => create::<R>(ctx, name, &fields).await,
        Verb::Update { reference, fields } => update::<R>(ctx, &reference, &fields).await,
        Verb::Delete { reference } => {
            let found = resolve::find::<R>(ctx, &reference).await?;
            R::delete(ctx, R::id(&found)).await?;
            ctx.note(&format!(
                "deleted {} {} ({})",
                R::NOUN,
                R::name(&found),
                R::id(&found)
            ))
        }
    }
}

async fn filter<R: Resource>(ctx: &Ctx, args: &ListArgs) -> CliResult<Filter> {
    let given = [
        ("user", args.user.is_some()),
        ("group", args.group.is_some()),
        ("model", args.model.is_some()),
    ];
    if let Some((flag, _)) = given
        .iter()
        .find(|(flag, set)| *set && !R::FILTERS.contains(flag))
    {
        return Err(CliError::usage(format!(
            "{}s cannot be listed by --{flag}",
            R::NOUN
        )));
    }
    let id = |kind, reference: &Option<String>| {
        let reference = reference.clone();
        async move {
            match reference {
                Some(reference) => resolve::id_of(ctx, kind, &reference).await.map(Some),
                None => Ok(None),
            }
        }
    };
    Ok(Filter {
        tenant_id: ctx.tenant().await?,
        user_id: id(RefKind::User, &args.user).await?,
        group_id: id(RefKind::Group, &args.group).await?,
        model: args.model.clone(),
    })
}

async fn create<R: Resource>(ctx: &Ctx, name: Option<String>, fields: &Fields) -> CliResult<()> {
    let mut object = fields_object::<R>(ctx, fields).await?;
    if let Some(name) = name {
        let field = R::NAME_FIELD.ok_or_else(|| {
            CliError::usage(format!(
                "a {} has no name to give; use --group or --set",
                R::NOUN
            ))
        })?;
        object.insert(field.to_owned(), Value::String(name));
    }
    if R::TENANT_SCOPED && !object.contains_key("tenant_id") {
        let tenant = if fields.global {
            None
        } else if R::EMPTY_TENANT_IS_GLOBAL {
            // An empty tenant makes a price global: never by omission.
            Some(ctx.tenant_or_own().await?)
        } else {
            ctx.tenant().await?
        };
        if let Some(tenant) = tenant {
            object.insert("tenant_id".to_owned(), Value::String(tenant));
        }
    }
    let message = reflect::from_json::<R::Message>(&Value::Object(object), R::NOUN)?;
    let (created, shown_once) = R::create(ctx, message, secret::<R>(ctx, fields)?).await?;
    let Some(plaintext) = shown_once else {
        return ctx.print(&output::one(ctx.format, &created)?);
    };
    if ctx.format == output::Format::Table {
        ctx.print(&output::one(ctx.format, &created)?)?;
        ctx.print(&format!("\nkey  {plaintext}\n"))?;
        return ctx.note("The key is shown only now: store it (only its hash is kept).");
    }
    // Only keys are shown once; the shape is CreateApiKeyResponse's.
    let both = serde_json::json!({ "api_key": reflect::to_json(&created), "key": plaintext });
    ctx.print(&output::encode(ctx.format, &both)?)
}

async fn update<R: Resource>(ctx: &Ctx, reference: &str, fields: &Fields) -> CliResult<()> {
    let found = resolve::find::<R>(ctx, reference).await?;
    let patch = fields_object::<R>(ctx, fields).await?;
    let secret = secret::<R>(ctx, fields)?;
    if patch.is_empty() && secret.is_none() {
        return Err(CliError::usage(
            "nothing to change: give --set, -f or a flag",
        ));
    }
    let mask: Vec<String> = patch.keys().cloned().collect();
    let mut current = reflect::to_json(&found);
    merge(&mut current, Value::Object(patch));
    let message = reflect::from_json::<R::Message>(&current, R::NOUN)?;
    let updated = R::update(ctx, message, mask, secret).await?;
    ctx.print(&output::one(ctx.format, &updated)?)
}

/// `patch`'s objects merge into `target`'s; anything else replaces.
pub fn merge(target: &mut Value, patch: Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                merge(target.entry(key).or_insert(Value::Null), value);
            }
        }
        (target, patch) => *target = patch,
    }
}

/// The fields a command gives: the file, then `--set`, then the flags.
async fn fields_object<R: Resource>(ctx: &Ctx, fields: &Fields) -> CliResult<Map<String, Value>> {
    let mut object = match &fields.file {
        Some(path) => read_object(ctx, path)?,
        None => Map::new(),
    };
    for assignment in &fields.set {
        let (path, value) = parse_set(assignment)?;
        set_path(&mut object, &path, value);
    }
    apply_refs::<R>(ctx, fields, &mut object).await?;
    apply_money::<R>(fields, &mut object)?;
    if fields.global && !R::EMPTY_TENANT_IS_GLOBAL {
        return Err(CliError::usage(format!(
            "--global is for prices, not a {}",
            R::NOUN
        )));
    }
    Ok(object)
}

fn read_object(ctx: &Ctx, path: &std::path::Path) -> CliResult<Map<String, Value>> {
    let text = if path.as_os_str() == "-" {
        ctx.read_stdin()?
    } else {
        std::fs::read_to_string(path)
            .map_err(|error| CliError::usage(format!("{}: {error}", path.display())))?
    };
    match serde_norway::from_str::<Value>(&text) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(CliError::usage(format!(
            "{}: expected a mapping of fields",
            path.display()
        ))),
        Err(error) => Err(CliError::usage(format!("{}: {error}", path.display()))),
    }
}

/// Sets a dotted path (`timeouts.connect`), keeping the path's siblings.
pub fn set_path(object: &mut Map<String, Value>, path: &str, value: Value) {
    let mut nested = value;
    for segment in path.rsplit('.') {
        nested = Value::Object(Map::from_iter([(segment.to_owned(), nested)]));
    }
    let mut whole = Value::Object(std::mem::take(object));
    merge(&mut whole, nested);
    if let Value::Object(merged) = whole {
        *object = merged;
    }
}

/// `FIELD=VALUE`, VALUE read as YAML (`3`, `true`, `[a, b]`, `{k: v}`).
pub fn parse_set(assignment: &str) -> CliResult<(String, Value)> {
    let (path, raw) = assignment
        .split_once('=')
        .ok_or_else(|| CliError::usage(format!("--set {assignment:?}: expected FIELD=VALUE")))?;
    let path = path.trim();
    if path.is_empty() || path.split('.').any(str::is_empty) {
        return Err(CliError::usage(format!(
            "--set {assignment:?}: empty field name"
        )));
    }
    let value = match serde_norway::from_str::<Value>(raw) {
        Ok(Value::Null) if !raw.trim().is_empty() && raw.trim() != "null" && raw.trim() != "~" => {
            Value::String(raw.to_owned())
        }
        Ok(value) => value,
        // Not YAML (`a: b: c`): the text itself.
        Err(_) => Value::String(raw.to_owned()),
    };
    Ok((path.to_owned(), value))
}

async fn apply_refs<R: Resource>(
    ctx: &Ctx,
    fields: &Fields,
    object: &mut Map<String, Value>,
) -> CliResult<()> {
    let given: [(&str, Vec<String>); 3] = [
        ("user", fields.user.iter().cloned().collect()),
        ("group", fields.group.clone()),
        ("plan", fields.plan.iter().cloned().collect()),
    ];
    for (flag, references) in given
        .into_iter()
        .filter(|(_, references)| !references.is_empty())
    {
        let Some(spec) = R::REFS.iter().find(|spec| spec.flag == flag) else {
            return Err(CliError::usage(format!("a {} takes no --{flag}", R::NOUN)));
        };
        if references.len() > 1 && !spec.many {
            return Err(CliError::usage(format!("a {} takes one --{flag}", R::NOUN)));
        }
        let mut ids = Vec::new();
        for reference in &references {
            ids.push(Value::String(
                resolve::id_of(ctx, spec.kind, reference).await?,
            ));
        }
        let value = if spec.many {
            Value::Array(ids)
        } else {
            ids.remove(0)
        };
        set_path(object, spec.field, value);
    }
    Ok(())
}

fn apply_money<R: Resource>(fields: &Fields, object: &mut Map<String, Value>) -> CliResult<()> {
    let given = [
        ("spend-limit", &fields.spend_limit),
        ("input-price", &fields.input_price),
        ("output-price", &fields.output_price),
        ("cached-input-price", &fields.cached_input_price),
    ];
    for (flag, amount) in given {
        let Some(amount) = amount else { continue };
        let Some((_, field)) = R::MONEY.iter().find(|(name, _)| *name == flag) else {
            return Err(CliError::usage(format!("a {} takes no --{flag}", R::NOUN)));
        };
        let micros = output::parse_usd(amount)
            .map_err(|error| CliError::usage(format!("--{flag}: {error}")))?;
        object.insert((*field).to_owned(), Value::from(micros));
    }
    Ok(())
}

fn secret<R: Resource>(ctx: &Ctx, fields: &Fields) -> CliResult<Option<String>> {
    let sources = usize::from(fields.secret_env.is_some())
        + usize::from(fields.secret_file.is_some())
        + usize::from(fields.secret_stdin);
    if sources > 1 {
        return Err(CliError::usage(
            "give the secret one way: --secret-env, --secret-file or --secret-stdin",
        ));
    }
    if sources == 1 && !R::SECRET {
        return Err(CliError::usage(format!("a {} has no secret", R::NOUN)));
    }
    let secret = if let Some(variable) = &fields.secret_env {
        Some(crate::secret::from_env(variable)?)
    } else if let Some(path) = &fields.secret_file {
        Some(crate::secret::from_file(path)?)
    } else if fields.secret_stdin {
        Some(ctx.read_stdin()?.trim_end_matches(['\r', '\n']).to_owned())
    } else {
        None
    };
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_values_are_yaml_and_fall_back_to_text() {
        assert_eq!(
            parse_set("weight=3").unwrap(),
            ("weight".into(), Value::from(3))
        );
        assert_eq!(
            parse_set("models=[a, b]").unwrap().1,
            serde_json::json!(["a", "b"])
        );
        assert_eq!(
            parse_set("timeouts.connect=2s").unwrap(),
            ("timeouts.connect".into(), Value::from("2s"))
        );
        assert_eq!(
            parse_set("description=a: b: c").unwrap().1,
            Value::from("a: b: c")
        );
        assert_eq!(parse_set("enabled=false").unwrap().1, Value::from(false));
        assert!(parse_set("no-equals").is_err());
        assert!(parse_set("=3").is_err());
        assert!(parse_set("a..b=3").is_err());
    }

    #[test]
    fn merge_keeps_what_the_patch_does_not_name() {
        let mut current =
            serde_json::json!({"timeouts": {"connect": "1s", "read": "30s"}, "models": ["a"]});
        merge(
            &mut current,
            serde_json::json!({"timeouts": {"connect": "2s"}, "models": ["b"]}),
        );
        assert_eq!(
            current,
            serde_json::json!({"timeouts": {"connect": "2s", "read": "30s"}, "models": ["b"]})
        );
    }
}
