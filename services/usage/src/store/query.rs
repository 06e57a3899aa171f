//! Reading usage: log listing with filters and a (time, id) cursor, one log
//! with its audit location, stats over a range, and retention deletes.

use gateway_storage::{StorageError, flag};
use sqlx::Row as _;
use sqlx::any::AnyRow;

use super::{AuditEntry, COLUMNS, UsageRecord, UsageStore};

/// What ListLogs narrows to. Empty strings and `None` do not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogFilter {
    pub tenant_id: String,
    pub user_id: String,
    pub key_id: String,
    pub model: String,
    pub api_id: String,
    pub channel_id: String,
    pub min_status: Option<i32>,
    pub max_status: Option<i32>,
    /// Inclusive.
    pub start: Option<i64>,
    /// Exclusive.
    pub end: Option<i64>,
}

/// A listed log and whether bodies were captured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRow {
    pub record: UsageRecord,
    pub ingested_at: i64,
    pub has_bodies: bool,
}

/// Whose usage stats cover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatsScope {
    Global,
    Tenant(String),
    User { tenant_id: String, user_id: String },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyTotals {
    pub key_id: String,
    pub user_id: String,
    pub spend_micros: i64,
    pub request_count: i64,
    pub total_tokens: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelTotals {
    pub model: String,
    pub request_count: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub spend_micros: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub spend_micros: i64,
    pub request_count: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub error_count: i64,
    pub today_spend_micros: i64,
    pub today_request_count: i64,
    pub top_keys: Vec<KeyTotals>,
    pub top_models: Vec<ModelTotals>,
}

fn record(row: &AnyRow) -> Result<LogRow, sqlx::Error> {
    Ok(LogRow {
        record: UsageRecord {
            event_id: row.try_get("event_id")?,
            occurred_at_micros: row.try_get("occurred_at")?,
            tenant_id: row.try_get("tenant_id")?,
            user_id: row.try_get("user_id")?,
            key_id: row.try_get("key_id")?,
            client_id: row.try_get("client_id")?,
            group_id: row.try_get("group_id")?,
            api_id: row.try_get("api_id")?,
            model: row.try_get("model")?,
            upstream_model: row.try_get("upstream_model")?,
            channel_id: row.try_get("channel_id")?,
            method: row.try_get("method")?,
            path: row.try_get("path")?,
            status: row.try_get("status")?,
            latency_micros: row.try_get("latency_micros")?,
            upstream_latency_micros: row.try_get("upstream_latency_micros")?,
            bytes_in: row.try_get("bytes_in")?,
            bytes_out: row.try_get("bytes_out")?,
            prompt_tokens: row.try_get("prompt_tokens")?,
            completion_tokens: row.try_get("completion_tokens")?,
            cached_tokens: row.try_get("cached_tokens")?,
            cost_micros: row.try_get("cost_micros")?,
            request_id: row.try_get("request_id")?,
            trace_id: row.try_get("trace_id")?,
            stream: flag(row, "is_stream")?,
            error_message: row.try_get("error_message")?,
            remote_ip: row.try_get("remote_ip")?,
            user_agent: row.try_get("user_agent")?,
            route: row.try_get("route")?,
            attempts: row.try_get("attempts")?,
            provider: row.try_get("provider")?,
            estimated: flag(row, "estimated")?,
            ttft_micros: row.try_get("ttft_micros")?,
            finish_reason: row.try_get("finish_reason")?,
            cache_hit: flag(row, "cache_hit")?,
        },
        ingested_at: row.try_get("ingested_at")?,
        has_bodies: row.try_get::<i64, _>("has_bodies")? != 0,
    })
}

/// `e.`-qualified column list for joins.
fn qualified_columns() -> String {
    COLUMNS
        .split(',')
        .map(|column| format!("e.{}", column.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

const SCOPE: &str = "($1 = '' OR e.tenant_id = $1) AND ($2 = '' OR e.user_id = $2)";

impl UsageStore {
    /// Logs newest first (event time, then id), after the cursor
    /// `(before_time, before_id)` of the previous page.
    pub async fn list_logs(
        &self,
        filter: &LogFilter,
        before: Option<(i64, String)>,
        limit: i64,
    ) -> Result<Vec<LogRow>, StorageError> {
        let (before_time, before_id) = before.unwrap_or((i64::MAX, String::new()));
        let sql = format!(
            "SELECT {}, CASE WHEN a.event_id IS NULL THEN 0 ELSE 1 END AS has_bodies \
             FROM usage_events e LEFT JOIN audit_index a ON a.event_id = e.event_id \
             WHERE {SCOPE} AND ($3 = '' OR e.key_id = $3) AND ($4 = '' OR e.model = $4) \
             AND ($5 = '' OR e.api_id = $5) AND ($6 = '' OR e.channel_id = $6) \
             AND e.status >= $7 AND e.status <= $8 AND e.occurred_at >= $9 AND e.occurred_at < $10 \
             AND (e.occurred_at < $11 OR (e.occurred_at = $11 AND ($12 = '' OR e.event_id < $12))) \
             ORDER BY e.occurred_at DESC, e.event_id DESC LIMIT $13",
            qualified_columns()
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&filter.tenant_id)
            .bind(&filter.user_id)
            .bind(&filter.key_id)
            .bind(&filter.model)
            .bind(&filter.api_id)
            .bind(&filter.channel_id)
            .bind(filter.min_status.unwrap_or(i32::MIN))
            .bind(filter.max_status.unwrap_or(i32::MAX))
            .bind(filter.start.unwrap_or(i64::MIN))
            .bind(filter.end.unwrap_or(i64::MAX))
            .bind(before_time)
            .bind(before_id)
            .bind(limit)
            .fetch_all(self.db.pool())
            .await?;
        Ok(rows.iter().map(record).collect::<Result<_, _>>()?)
    }

    pub async fn log(&self, event_id: &str) -> Result<LogRow, StorageError> {
        let sql = format!(
            "SELECT {}, CASE WHEN a.event_id IS NULL THEN 0 ELSE 1 END AS has_bodies \
             FROM usage_events e LEFT JOIN audit_index a ON a.event_id = e.event_id \
             WHERE e.event_id = $1",
            qualified_columns()
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(event_id)
            .fetch_optional(self.db.pool())
            .await?
            .ok_or(StorageError::NotFound)?;
        Ok(record(&row)?)
    }

    pub async fn audit_entry(&self, event_id: &str) -> Result<AuditEntry, StorageError> {
        let row = sqlx::query(
            "SELECT event_id, tenant_id, occurred_at, segment, record_offset, record_length \
             FROM audit_index WHERE event_id = $1",
        )
        .bind(event_id)
        .fetch_optional(self.db.pool())
        .await?
        .ok_or(StorageError::NotFound)?;
        Ok(AuditEntry {
            event_id: row.try_get("event_id")?,
            tenant_id: row.try_get("tenant_id")?,
            occurred_at: row.try_get("occurred_at")?,
            segment: row.try_get("segment")?,
            offset: row.try_get("record_offset")?,
            length: row.try_get("record_length")?,
        })
    }

    /// Totals over `[start, end)` and since `today_start`, with top lists.
    pub async fn stats(
        &self,
        scope: &StatsScope,
        start: i64,
        end: i64,
        today_start: i64,
        top: i64,
    ) -> Result<Stats, StorageError> {
        let (tenant_id, user_id) = match scope {
            StatsScope::Global => ("", ""),
            StatsScope::Tenant(tenant_id) => (tenant_id.as_str(), ""),
            StatsScope::User { tenant_id, user_id } => (tenant_id.as_str(), user_id.as_str()),
        };
        let totals = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT CAST(COALESCE(SUM(e.cost_micros), 0) AS BIGINT) AS spend, \
             CAST(COUNT(*) AS BIGINT) AS requests, \
             CAST(COALESCE(SUM(e.prompt_tokens), 0) AS BIGINT) AS prompt, \
             CAST(COALESCE(SUM(e.completion_tokens), 0) AS BIGINT) AS completion, \
             CAST(COALESCE(SUM(CASE WHEN e.status >= 400 OR e.error_message <> '' THEN 1 ELSE 0 END), 0) AS BIGINT) AS errors \
             FROM usage_events e WHERE {SCOPE} AND e.occurred_at >= $3 AND e.occurred_at < $4"
        )))
        .bind(tenant_id)
        .bind(user_id)
        .bind(start)
        .bind(end);
        let totals = totals.fetch_one(self.db.pool()).await?;
        let today = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT CAST(COALESCE(SUM(e.cost_micros), 0) AS BIGINT) AS spend, \
             CAST(COUNT(*) AS BIGINT) AS requests \
             FROM usage_events e WHERE {SCOPE} AND e.occurred_at >= $3"
        )))
        .bind(tenant_id)
        .bind(user_id)
        .bind(today_start)
        .fetch_one(self.db.pool())
        .await?;
        let keys = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT e.key_id, MAX(e.user_id) AS user_id, \
             CAST(SUM(e.cost_micros) AS BIGINT) AS spend, CAST(COUNT(*) AS BIGINT) AS requests, \
             CAST(SUM(e.prompt_tokens + e.completion_tokens) AS BIGINT) AS tokens \
             FROM usage_events e WHERE {SCOPE} AND e.occurred_at >= $3 AND e.occurred_at < $4 \
             AND e.key_id <> '' GROUP BY e.key_id ORDER BY spend DESC, e.key_id LIMIT $5"
        )))
        .bind(tenant_id)
        .bind(user_id)
        .bind(start)
        .bind(end)
        .bind(top)
        .fetch_all(self.db.pool())
        .await?;
        let models = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT e.model, CAST(COUNT(*) AS BIGINT) AS requests, \
             CAST(SUM(e.prompt_tokens) AS BIGINT) AS prompt, \
             CAST(SUM(e.completion_tokens) AS BIGINT) AS completion, \
             CAST(SUM(e.cost_micros) AS BIGINT) AS spend \
             FROM usage_events e WHERE {SCOPE} AND e.occurred_at >= $3 AND e.occurred_at < $4 \
             AND e.model <> '' GROUP BY e.model ORDER BY requests DESC, e.model LIMIT $5"
        )))
        .bind(tenant_id)
        .bind(user_id)
        .bind(start)
        .bind(end)
        .bind(top)
        .fetch_all(self.db.pool())
        .await?;
        Ok(Stats {
            spend_micros: totals.try_get("spend")?,
            request_count: totals.try_get("requests")?,
            prompt_tokens: totals.try_get("prompt")?,
            completion_tokens: totals.try_get("completion")?,
            error_count: totals.try_get("errors")?,
            today_spend_micros: today.try_get("spend")?,
            today_request_count: today.try_get("requests")?,
            top_keys: keys
                .iter()
                .map(|row| {
                    Ok(KeyTotals {
                        key_id: row.try_get("key_id")?,
                        user_id: row.try_get("user_id")?,
                        spend_micros: row.try_get("spend")?,
                        request_count: row.try_get("requests")?,
                        total_tokens: row.try_get("tokens")?,
                    })
                })
                .collect::<Result<_, sqlx::Error>>()?,
            top_models: models
                .iter()
                .map(|row| {
                    Ok(ModelTotals {
                        model: row.try_get("model")?,
                        request_count: row.try_get("requests")?,
                        prompt_tokens: row.try_get("prompt")?,
                        completion_tokens: row.try_get("completion")?,
                        spend_micros: row.try_get("spend")?,
                    })
                })
                .collect::<Result<_, sqlx::Error>>()?,
        })
    }

    /// Deletes up to `limit` events (and their audit index rows) that
    /// happened before `cutoff`; returns how many events went. Called in a
    /// loop, so no statement holds locks for long.
    pub async fn delete_before(&self, cutoff: i64, limit: i64) -> Result<u64, StorageError> {
        let mut transaction = self.db.begin_write().await?;
        sqlx::query(
            "DELETE FROM audit_index WHERE event_id IN \
             (SELECT event_id FROM usage_events WHERE occurred_at < $1 ORDER BY occurred_at LIMIT $2)",
        )
        .bind(cutoff)
        .bind(limit)
        .execute(&mut *transaction)
        .await?;
        let deleted = sqlx::query(
            "DELETE FROM usage_events WHERE event_id IN \
             (SELECT event_id FROM usage_events WHERE occurred_at < $1 ORDER BY occurred_at LIMIT $2)",
        )
        .bind(cutoff)
        .bind(limit)
        .execute(&mut *transaction)
        .await?
        .rows_affected();
        // Index rows whose event never landed (a failed batch after the
        // bodies were written) go with their day.
        sqlx::query("DELETE FROM audit_index WHERE occurred_at < $1")
            .bind(cutoff)
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await?;
        Ok(deleted)
    }
}
