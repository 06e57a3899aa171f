//! `stats`: spend, requests, tokens and errors over a range, with the top
//! keys and models, for the widest scope the caller may see.

use gateway_proto::usage::v1 as pb;

use crate::ctx::Ctx;
use crate::error::CliResult;
use crate::nouns::Users;
use crate::output::{self, usd};
use crate::resolve;
use crate::times;

#[derive(Debug, clap::Args)]
pub struct StatsArgs {
    /// One user's figures (username or id).
    #[arg(long)]
    pub user: Option<String>,
    /// From this time (default: 00:00 UTC today).
    #[arg(long)]
    pub since: Option<String>,
    #[arg(long)]
    pub until: Option<String>,
    /// Length of the top lists.
    #[arg(long, default_value_t = 10)]
    pub top: i32,
}

pub async fn run(ctx: &Ctx, args: StatsArgs) -> CliResult<()> {
    let request = pb::GetStatsRequest {
        tenant_id: ctx.tenant().await?.unwrap_or_default(),
        user_id: match &args.user {
            Some(user) => resolve::find::<Users>(ctx, user).await?.id,
            None => String::new(),
        },
        start_time: args.since.as_deref().map(times::parse).transpose()?,
        end_time: args.until.as_deref().map(times::parse).transpose()?,
        top_limit: args.top,
    };
    let stats = ctx.usage().get_stats(request).await?.into_inner();
    if ctx.format != output::Format::Table {
        return ctx.print(&output::one(ctx.format, &stats)?);
    }
    let summary = output::table(
        [
            "SPEND",
            "REQUESTS",
            "PROMPT TOKENS",
            "COMPLETION TOKENS",
            "ERRORS",
            "TODAY SPEND",
            "TODAY REQUESTS",
        ],
        vec![vec![
            usd(stats.spend_micros),
            stats.request_count.to_string(),
            stats.prompt_tokens.to_string(),
            stats.completion_tokens.to_string(),
            stats.error_count.to_string(),
            usd(stats.today_spend_micros),
            stats.today_request_count.to_string(),
        ]],
    );
    let keys = stats
        .top_keys
        .iter()
        .map(|key| {
            vec![
                key.key_id.clone(),
                usd(key.spend_micros),
                key.request_count.to_string(),
                key.total_tokens.to_string(),
            ]
        })
        .collect();
    let models = stats
        .top_models
        .iter()
        .map(|model| {
            vec![
                model.model.clone(),
                model.request_count.to_string(),
                usd(model.spend_micros),
            ]
        })
        .collect();
    ctx.print(&format!(
        "{summary}\nTOP KEYS\n{}\nTOP MODELS\n{}",
        output::table(["KEY", "SPEND", "REQUESTS", "TOKENS"], keys),
        output::table(["MODEL", "REQUESTS", "SPEND"], models)
    ))
}
