//! The command line: global flags, then a noun and its verb.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::apply::{ApplyArgs, ExportArgs};
use crate::commands::context::ContextCommand;
use crate::commands::keys::{KeyVerb, UserVerb};
use crate::commands::logs::LogsCommand;
use crate::commands::members::MembersCommand;
use crate::commands::money::{BalanceCommand, LedgerArgs, VoucherCommand};
use crate::commands::stats::StatsArgs;
use crate::output::Format;
use crate::resource::Verb;
use crate::session::LoginArgs;

#[derive(Debug, Parser)]
#[command(
    name = "gatewayctl",
    version,
    // A flag given twice (a script's default, then the caller's): the last wins.
    args_override_self = true,
    about = "Administer the gateway suite over gRPC",
    after_help = "Exit codes: 0 ok, 1 failure, 2 usage, 3 unauthenticated, 4 permission denied, \
                  5 not found, 6 conflict, 7 invalid argument, 8 unavailable, 9 resource exhausted."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Args)]
pub struct Global {
    /// The context to use (default: the current one).
    #[arg(long, global = true, env = "GATEWAYCTL_CONTEXT")]
    pub context: Option<String>,
    /// Where contexts and tokens are kept (default ~/.config/gatewayctl).
    #[arg(long, global = true, env = "GATEWAYCTL_CONFIG_DIR")]
    pub config_dir: Option<PathBuf>,
    /// A JWT to use instead of the stored one (for CI).
    #[arg(long, global = true, env = "GATEWAYCTL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The emergency admin key (`x-admin-key`) instead of a token.
    #[arg(
        long,
        global = true,
        env = "GATEWAYCTL_ADMIN_KEY",
        hide_env_values = true
    )]
    pub admin_key: Option<String>,
    #[arg(long, global = true, env = "GATEWAYCTL_IDENTITY_URL")]
    pub identity_url: Option<String>,
    #[arg(long, global = true, env = "GATEWAYCTL_CATALOG_URL")]
    pub catalog_url: Option<String>,
    #[arg(long, global = true, env = "GATEWAYCTL_QUOTA_URL")]
    pub quota_url: Option<String>,
    #[arg(long, global = true, env = "GATEWAYCTL_USAGE_URL")]
    pub usage_url: Option<String>,
    /// The tenant to act in (slug or id); default your own, or all you may see.
    #[arg(long, global = true, env = "GATEWAYCTL_TENANT")]
    pub tenant: Option<String>,
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// Per-call timeout in milliseconds.
    #[arg(long, global = true, default_value_t = 10_000)]
    pub timeout_ms: u64,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Log in and store the token for the context (0600).
    Login(LoginArgs),
    /// Forget the context's stored token.
    Logout,
    /// Who the current credential is, as the services see it.
    Whoami,
    /// Named sets of endpoints, like kubectl contexts.
    #[command(subcommand)]
    Context(ContextCommand),
    /// Ask every service's grpc.health.v1.Health whether it is SERVING.
    Health,
    #[command(subcommand)]
    Tenants(Verb),
    #[command(subcommand)]
    Users(UserVerb),
    #[command(subcommand)]
    Groups(Verb),
    /// Who is in a group.
    #[command(subcommand)]
    Members(MembersCommand),
    /// API keys; create prints the plaintext once.
    #[command(subcommand)]
    Keys(KeyVerb),
    /// Clients (`X-Client-Id`) with their own plan.
    #[command(subcommand)]
    Clients(Verb),
    #[command(subcommand)]
    Apis(Verb),
    /// AI channels (the provider key is write-only).
    #[command(subcommand)]
    Channels(Verb),
    /// Model prices, tenant or global, in USD per million tokens.
    #[command(subcommand)]
    Prices(Verb),
    /// Group price multipliers, known by their group.
    #[command(subcommand)]
    Multipliers(Verb),
    /// A group's override prices, known as GROUP/MODEL.
    #[command(subcommand)]
    GroupPrices(Verb),
    /// Rate-limit plans.
    #[command(subcommand)]
    Plans(Verb),
    /// A group's rate-limit rules on requests, tokens or spend.
    #[command(subcommand)]
    Rules(Verb),
    #[command(subcommand)]
    Balances(BalanceCommand),
    /// A balance's ledger, newest first.
    Ledger(LedgerArgs),
    #[command(subcommand)]
    Vouchers(VoucherCommand),
    /// Request logs.
    #[command(subcommand)]
    Logs(LogsCommand),
    /// Spend, requests and tokens, with the top keys and models.
    Stats(StatsArgs),
    /// Make the services match a file: plan, then apply (or only plan).
    Apply(ApplyArgs),
    /// Write the current state in apply's format.
    Export(ExportArgs),
    /// A shell completion script: `source <(gatewayctl completion bash)`.
    Completion { shell: clap_complete::Shell },
}
