//! Balances, the ledger and vouchers. Amounts are typed and shown in USD;
//! the services keep exact integer micro-USD.

use gateway_proto::quota::v1 as pb;

use crate::ctx::Ctx;
use crate::error::{CliError, CliResult};
use crate::nouns::{Keys, Users, all_pages, present};
use crate::output::{self, parse_usd};
use crate::resolve;
use crate::times;

#[derive(Debug, Default, clap::Args)]
pub struct Owner {
    /// A user's balance (username or id); default your own.
    #[arg(long, conflicts_with = "key")]
    pub user: Option<String>,
    /// A key's own balance (name or id).
    #[arg(long)]
    pub key: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
pub enum BalanceCommand {
    /// The balance, what open reservations hold, and what is available.
    Show(#[command(flatten)] Owner),
    /// Credit (or, with a negative amount, debit) a balance, once per idempotency key.
    Adjust {
        #[command(flatten)]
        owner: Owner,
        /// USD, e.g. 5 or -0.25.
        #[arg(long, allow_hyphen_values = true)]
        amount: String,
        #[arg(long)]
        reason: String,
        /// A retry with the same key changes nothing and answers the first result.
        #[arg(long)]
        idempotency_key: String,
    },
}

#[derive(Debug, clap::Args)]
pub struct LedgerArgs {
    #[command(flatten)]
    pub owner: Owner,
    /// From this time: RFC 3339, a date, or an age such as 24h or 7d.
    #[arg(long)]
    pub since: Option<String>,
    /// Until this time (exclusive).
    #[arg(long)]
    pub until: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
pub enum VoucherCommand {
    /// Create a voucher; its code is shown only now.
    Create {
        /// The code to redeem; default one the service generates.
        code: Option<String>,
        /// USD credited per redemption.
        #[arg(long)]
        amount: String,
        /// How many users may redeem it.
        #[arg(long, default_value_t = 1)]
        max_uses: i32,
        /// When it stops being redeemable.
        #[arg(long)]
        expires: Option<String>,
    },
    #[command(visible_alias = "ls")]
    List,
    /// Redeem a code for yourself, or (ADMIN) for a user of your tenant.
    Redeem {
        code: String,
        #[arg(long)]
        user: Option<String>,
    },
    /// Stop further redemptions (credits made stay).
    #[command(visible_alias = "rm")]
    Delete { id: String },
}

const LEDGER: &[output::Column] = &[
    ("TIME", "create_time"),
    ("KIND", "kind"),
    ("AMOUNT", "amount_micros"),
    ("BALANCE", "balance_after_micros"),
    ("REASON", "reason"),
    ("REFERENCE", "reference_id"),
];
const VOUCHERS: &[output::Column] = &[
    ("ID", "id"),
    ("CODE", "code"),
    ("AMOUNT", "amount_micros"),
    ("USED", "use_count"),
    ("MAX USES", "max_uses"),
    ("EXPIRES", "expire_time"),
];

async fn owner(ctx: &Ctx, owner: &Owner) -> CliResult<pb::BalanceOwner> {
    let (kind, id) = match (&owner.user, &owner.key) {
        (_, Some(key)) => (
            pb::BalanceOwnerKind::Key,
            resolve::find::<Keys>(ctx, key).await?.id,
        ),
        (Some(user), None) => (
            pb::BalanceOwnerKind::User,
            resolve::find::<Users>(ctx, user).await?.id,
        ),
        (None, None) => {
            let own = crate::session::claims(ctx)
                .ok_or_else(|| CliError::usage("name the balance with --user or --key"))?;
            (pb::BalanceOwnerKind::User, own.sub)
        }
    };
    Ok(pb::BalanceOwner {
        kind: kind.into(),
        id,
    })
}

pub async fn balances(ctx: &Ctx, command: BalanceCommand) -> CliResult<()> {
    match command {
        BalanceCommand::Show(who) => {
            let owner = Some(owner(ctx, &who).await?);
            let balance = ctx
                .quota()
                .get_balance(pb::GetBalanceRequest { owner })
                .await?
                .into_inner();
            if ctx.format != output::Format::Table {
                return ctx.print(&output::one(ctx.format, &balance)?);
            }
            let available = balance.balance_micros - balance.reserved_micros;
            let rows = vec![vec![
                output::usd(balance.balance_micros),
                output::usd(balance.reserved_micros),
                output::usd(available),
            ]];
            ctx.print(&output::table(["BALANCE", "RESERVED", "AVAILABLE"], rows))
        }
        BalanceCommand::Adjust {
            owner: who,
            amount,
            reason,
            idempotency_key,
        } => {
            let amount_micros = parse_usd(&amount)
                .map_err(|error| CliError::usage(format!("--amount: {error}")))?;
            let request = pb::AdjustBalanceRequest {
                owner: Some(owner(ctx, &who).await?),
                amount_micros,
                reason,
                idempotency_key,
            };
            let answer = ctx.quota().adjust_balance(request).await?.into_inner();
            ctx.print(&output::one(ctx.format, &answer)?)
        }
    }
}

pub async fn ledger(ctx: &Ctx, args: LedgerArgs) -> CliResult<()> {
    let request = pb::ListLedgerEntriesRequest {
        owner: Some(owner(ctx, &args.owner).await?),
        start_time: args.since.as_deref().map(times::parse).transpose()?,
        end_time: args.until.as_deref().map(times::parse).transpose()?,
        ..Default::default()
    };
    let entries = all_pages!(ctx.quota(), list_ledger_entries, request, entries);
    ctx.print(&output::list(ctx.format, &entries, LEDGER)?)
}

pub async fn vouchers(ctx: &Ctx, command: VoucherCommand) -> CliResult<()> {
    match command {
        VoucherCommand::Create {
            code,
            amount,
            max_uses,
            expires,
        } => {
            let voucher = pb::Voucher {
                tenant_id: ctx.tenant().await?.unwrap_or_default(),
                code: code.unwrap_or_default(),
                amount_micros: parse_usd(&amount)
                    .map_err(|error| CliError::usage(format!("--amount: {error}")))?,
                max_uses,
                expire_time: expires.as_deref().map(times::parse).transpose()?,
                ..Default::default()
            };
            let answer = ctx
                .quota()
                .create_voucher(pb::CreateVoucherRequest {
                    voucher: Some(voucher),
                })
                .await?;
            ctx.print(&output::one(
                ctx.format,
                &present(answer.into_inner().voucher, "voucher")?,
            )?)
        }
        VoucherCommand::List => {
            let request = pb::ListVouchersRequest {
                tenant_id: ctx.tenant().await?.unwrap_or_default(),
                ..Default::default()
            };
            let vouchers = all_pages!(ctx.quota(), list_vouchers, request, vouchers);
            ctx.print(&output::list(ctx.format, &vouchers, VOUCHERS)?)
        }
        VoucherCommand::Redeem { code, user } => {
            let user_id = match user {
                Some(user) => resolve::find::<Users>(ctx, &user).await?.id,
                None => String::new(),
            };
            let answer = ctx
                .quota()
                .redeem_voucher(pb::RedeemVoucherRequest { code, user_id })
                .await?;
            ctx.print(&output::one(ctx.format, &answer.into_inner())?)
        }
        VoucherCommand::Delete { id } => {
            ctx.quota()
                .delete_voucher(pb::DeleteVoucherRequest { id: id.clone() })
                .await?;
            ctx.note(&format!("deleted voucher {id}"))
        }
    }
}
