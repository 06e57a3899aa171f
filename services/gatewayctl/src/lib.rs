//! `gatewayctl`: the admin CLI over the gateway's gRPC APIs. Every admin
//! RPC has a noun and a verb; `apply` and `export` manage a tenant's
//! configuration declaratively. The binary is a thin `main` over [`run`],
//! so tests run commands in-process.

mod apply;
mod cli;
mod commands;
mod config;
mod ctx;
mod error;
mod nouns;
mod output;
mod reflect;
mod resolve;
mod resource;
mod secret;
mod session;
mod times;

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::{CommandFactory, Parser};

pub use ctx::Io;
pub use error::Exit;

use cli::{Cli, Command, Global};
use commands::{context, health, keys, logs, members, money, stats};
use config::{ConfigDir, DEFAULT_CONTEXT};
use ctx::{Credential, Ctx, Endpoints};
use error::{CliError, CliResult};
use nouns::{
    Apis, Channels, Clients, GroupPrices, Groups, Multipliers, Plans, Prices, Rules, Tenants,
};
use resource::run as verb;

/// Runs one command line (`args[0]` is the program name) and says how it
/// ended: errors go to `io.stderr` with their gRPC code, and the exit code
/// tells a script what kind of failure it was.
pub async fn run(args: Vec<String>, io: Io) -> ExitCode {
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(error) => {
            let mut io = io;
            let text = error.render().to_string();
            let sink = if error.use_stderr() {
                &mut io.stderr
            } else {
                &mut io.stdout
            };
            let _ = sink.write_all(text.as_bytes());
            return ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(2));
        }
    };
    let mut io = io;
    let stderr: ctx::Shared = Arc::new(Mutex::new(std::mem::replace(
        &mut io.stderr,
        Box::new(std::io::sink()),
    )));
    match execute(cli, io, stderr.clone()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let mut stderr = stderr
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let _ = writeln!(stderr, "error: {}", error.message);
            error.exit.into()
        }
    }
}

async fn execute(cli: Cli, io: Io, stderr: ctx::Shared) -> CliResult<()> {
    let dir = ConfigDir::locate(cli.global.config_dir.as_deref())?;
    let file = dir.load()?;
    let context = cli
        .global
        .context
        .clone()
        .or(file.current_context.clone())
        .unwrap_or_else(|| DEFAULT_CONTEXT.to_owned());
    let saved = file.contexts.get(&context).cloned().unwrap_or_default();
    if cli.global.context.is_some()
        && !file.contexts.contains_key(&context)
        && context != DEFAULT_CONTEXT
    {
        return Err(CliError::not_found(format!(
            "no context {context:?} (create it with `context set`)"
        )));
    }
    let endpoints = endpoints(&cli.global, &saved);
    let credential = credential(&cli.global, &dir, &context)?;
    let timeout = Duration::from_millis(cli.global.timeout_ms);
    let ctx = Ctx::new(
        &endpoints,
        credential,
        cli.global.output,
        cli.global.tenant.clone(),
        timeout,
        io,
        stderr,
    )?;
    match cli.command {
        Command::Login(args) => {
            let tenant = cli.global.tenant.as_deref();
            session::login(&ctx, &args, tenant, &dir, &context).await
        }
        Command::Logout => session::logout(&ctx, &dir, &context),
        Command::Whoami => session::whoami(&ctx, &context).await,
        Command::Context(command) => context::run(&ctx, &dir, &context, command),
        Command::Health => health::run(&ctx, &endpoints, timeout).await,
        Command::Completion { shell } => completion(&ctx, shell),
        command => resources(&ctx, command).await,
    }
}

async fn resources(ctx: &Ctx, command: Command) -> CliResult<()> {
    match command {
        Command::Tenants(action) => verb::<Tenants>(ctx, action).await,
        Command::Users(action) => keys::users(ctx, action).await,
        Command::Groups(action) => verb::<Groups>(ctx, action).await,
        Command::Members(command) => members::run(ctx, command).await,
        Command::Keys(action) => keys::keys(ctx, action).await,
        Command::Clients(action) => verb::<Clients>(ctx, action).await,
        Command::Apis(action) => verb::<Apis>(ctx, action).await,
        Command::Channels(action) => verb::<Channels>(ctx, action).await,
        Command::Prices(action) => verb::<Prices>(ctx, action).await,
        Command::Multipliers(action) => verb::<Multipliers>(ctx, action).await,
        Command::GroupPrices(action) => verb::<GroupPrices>(ctx, action).await,
        Command::Plans(action) => verb::<Plans>(ctx, action).await,
        Command::Rules(action) => verb::<Rules>(ctx, action).await,
        Command::Balances(command) => money::balances(ctx, command).await,
        Command::Ledger(args) => money::ledger(ctx, args).await,
        Command::Vouchers(command) => money::vouchers(ctx, command).await,
        Command::Logs(command) => logs::run(ctx, command).await,
        Command::Stats(args) => stats::run(ctx, args).await,
        Command::Apply(args) => apply::apply(ctx, args).await,
        Command::Export(args) => apply::export(ctx, args).await,
        _ => Err(CliError::usage("not a resource command")),
    }
}

/// Flags and env first, then the context, then the suite's local ports.
fn endpoints(global: &Global, saved: &config::Context) -> Endpoints {
    let pick = |flag: &Option<String>, saved: &Option<String>, port: u16| {
        flag.clone()
            .or_else(|| saved.clone())
            .unwrap_or_else(|| format!("http://127.0.0.1:{port}"))
    };
    Endpoints {
        identity: pick(&global.identity_url, &saved.identity_url, 50051),
        catalog: pick(&global.catalog_url, &saved.catalog_url, 50052),
        quota: pick(&global.quota_url, &saved.quota_url, 50053),
        usage: pick(&global.usage_url, &saved.usage_url, 50054),
    }
}

fn credential(global: &Global, dir: &ConfigDir, context: &str) -> CliResult<Credential> {
    if global.token.is_some() && global.admin_key.is_some() {
        return Err(CliError::usage("give a token or an admin key, not both"));
    }
    if let Some(token) = &global.token {
        return Ok(Credential::Bearer(token.clone()));
    }
    if let Some(key) = &global.admin_key {
        return Ok(Credential::AdminKey(key.clone()));
    }
    Ok(dir
        .token(context)?
        .map_or(Credential::Anonymous, Credential::Bearer))
}

fn completion(ctx: &Ctx, shell: clap_complete::Shell) -> CliResult<()> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "gatewayctl", &mut script);
    ctx.print(&String::from_utf8_lossy(&script))
}
