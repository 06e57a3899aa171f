//! Request logs: filtered lists, one log with its bodies, and `logs tail`,
//! which follows new records as the edge reports them.

use std::collections::HashSet;
use std::time::Duration;

use gateway_proto::usage::v1 as pb;

use crate::ctx::Ctx;
use crate::error::CliResult;
use crate::nouns::{Apis, Channels, Keys, Users, present};
use crate::output;
use crate::reflect;
use crate::resolve;
use crate::times;

#[derive(Debug, Default, clap::Args)]
pub struct LogFilter {
    #[arg(long)]
    pub user: Option<String>,
    #[arg(long)]
    pub key: Option<String>,
    #[arg(long)]
    pub model: Option<String>,
    #[arg(long)]
    pub api: Option<String>,
    #[arg(long)]
    pub channel: Option<String>,
    /// Exact HTTP status.
    #[arg(long)]
    pub status: Option<i32>,
    /// Status range, inclusive (e.g. --min-status 500 for upstream errors).
    #[arg(long)]
    pub min_status: Option<i32>,
    #[arg(long)]
    pub max_status: Option<i32>,
    /// From this time: RFC 3339, a date, or an age such as 1h.
    #[arg(long)]
    pub since: Option<String>,
    #[arg(long)]
    pub until: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
pub enum LogsCommand {
    /// The newest logs first.
    #[command(visible_alias = "ls")]
    List {
        #[command(flatten)]
        filter: LogFilter,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// One log; with --bodies, the captured request and response.
    Show {
        id: String,
        #[arg(long)]
        bodies: bool,
    },
    /// Print new logs as they arrive (one JSON object per line with -o json).
    Tail {
        #[command(flatten)]
        filter: LogFilter,
        /// Stop after this many logs (default: follow until interrupted).
        #[arg(long)]
        count: Option<usize>,
        /// How often to ask for new logs, in milliseconds.
        #[arg(long, default_value_t = 1000)]
        interval_ms: u64,
    },
}

const COLUMNS: &[output::Column] = &[
    ("TIME", "event.time"),
    ("ID", "event.event_id"),
    ("STATUS", "event.status"),
    ("METHOD", "event.method"),
    ("PATH", "event.path"),
    ("MODEL", "event.model"),
    ("PROMPT", "event.prompt_tokens"),
    ("COMPLETION", "event.completion_tokens"),
    ("COST", "event.cost_micros"),
    ("LATENCY", "event.latency"),
];

pub async fn run(ctx: &Ctx, command: LogsCommand) -> CliResult<()> {
    match command {
        LogsCommand::List { filter, limit } => {
            let logs = page_through(ctx, request(ctx, &filter).await?, limit).await?;
            ctx.print(&output::list(ctx.format, &logs, COLUMNS)?)
        }
        LogsCommand::Show { id, bodies } => show(ctx, id, bodies).await,
        LogsCommand::Tail {
            filter,
            count,
            interval_ms,
        } => tail(ctx, &filter, count, interval_ms).await,
    }
}

async fn request(ctx: &Ctx, filter: &LogFilter) -> CliResult<pb::ListLogsRequest> {
    Ok(pb::ListLogsRequest {
        tenant_id: ctx.tenant().await?.unwrap_or_default(),
        user_id: match &filter.user {
            Some(user) => resolve::find::<Users>(ctx, user).await?.id,
            None => String::new(),
        },
        key_id: match &filter.key {
            Some(key) => resolve::find::<Keys>(ctx, key).await?.id,
            None => String::new(),
        },
        api_id: match &filter.api {
            Some(api) => resolve::find::<Apis>(ctx, api).await?.id,
            None => String::new(),
        },
        channel_id: match &filter.channel {
            Some(channel) => resolve::find::<Channels>(ctx, channel).await?.id,
            None => String::new(),
        },
        model: filter.model.clone().unwrap_or_default(),
        status: filter.status,
        min_status: filter.min_status,
        max_status: filter.max_status,
        start_time: filter.since.as_deref().map(times::parse).transpose()?,
        end_time: filter.until.as_deref().map(times::parse).transpose()?,
        ..Default::default()
    })
}

async fn page_through(
    ctx: &Ctx,
    mut request: pb::ListLogsRequest,
    limit: usize,
) -> CliResult<Vec<pb::LogRecord>> {
    let mut logs = Vec::new();
    loop {
        request.page_size =
            i32::try_from(limit.saturating_sub(logs.len()).clamp(1, 100)).unwrap_or(100);
        let page = ctx.usage().list_logs(request.clone()).await?.into_inner();
        logs.extend(page.logs);
        if page.next_page_token.is_empty() || logs.len() >= limit {
            logs.truncate(limit);
            return Ok(logs);
        }
        request.page_token = page.next_page_token;
    }
}

async fn show(ctx: &Ctx, id: String, bodies: bool) -> CliResult<()> {
    let log = present(
        ctx.usage()
            .get_log(pb::GetLogRequest { id: id.clone() })
            .await?
            .into_inner()
            .log,
        "log",
    )?;
    if !bodies {
        return ctx.print(&output::one(ctx.format, &log)?);
    }
    let captured = ctx
        .usage()
        .get_log_bodies(pb::GetLogBodiesRequest { id })
        .await?
        .into_inner()
        .bodies;
    let captured = present(captured, "bodies")?;
    if ctx.format != output::Format::Table {
        let both = serde_json::json!({ "log": reflect::to_json(&log), "bodies": reflect::to_json(&captured) });
        return ctx.print(&output::encode(ctx.format, &both)?);
    }
    ctx.print(&output::one(ctx.format, &log)?)?;
    ctx.print(&format!(
        "\n--- request ({}, {} bytes{})\n{}\n--- response ({}, {} bytes{})\n{}\n",
        captured.request_content_type,
        captured.request_body_bytes,
        if captured.request_truncated {
            ", truncated"
        } else {
            ""
        },
        String::from_utf8_lossy(&captured.request_body),
        captured.response_content_type,
        captured.response_body_bytes,
        if captured.response_truncated {
            ", truncated"
        } else {
            ""
        },
        String::from_utf8_lossy(&captured.response_body),
    ))
}

/// Polls for logs newer than the last one seen; ids already printed are
/// skipped, since records of one instant may arrive in separate polls.
async fn tail(
    ctx: &Ctx,
    filter: &LogFilter,
    count: Option<usize>,
    interval_ms: u64,
) -> CliResult<()> {
    let mut request = request(ctx, filter).await?;
    if request.start_time.is_none() {
        request.start_time = Some(times::parse("0s")?);
    }
    let mut seen = HashSet::new();
    let mut printed = 0;
    loop {
        let mut fresh = page_through(ctx, request.clone(), 1000).await?;
        fresh.reverse(); // oldest first, as a tail reads
        for log in fresh {
            let Some(event) = &log.event else { continue };
            if !seen.insert(event.event_id.clone()) {
                continue;
            }
            ctx.print(&tail_line(ctx.format, &log)?)?;
            printed += 1;
            if count.is_some_and(|count| printed >= count) {
                return Ok(());
            }
            request.start_time = event.time;
        }
        tokio::time::sleep(Duration::from_millis(interval_ms.max(100))).await;
    }
}

fn tail_line(format: output::Format, log: &pb::LogRecord) -> CliResult<String> {
    match format {
        output::Format::Table => {
            let rows = output::list(output::Format::Table, std::slice::from_ref(log), COLUMNS)?;
            // The row without the header: tail prints no header per record.
            Ok(rows
                .lines()
                .nth(1)
                .map(|row| format!("{row}\n"))
                .unwrap_or_default())
        }
        output::Format::Json => Ok(format!("{}\n", reflect::to_json(log))),
        output::Format::Yaml => Ok(format!(
            "---\n{}",
            output::encode(format, &reflect::to_json(log))?
        )),
    }
}
