//! Usage's SQL store: usage events, written in idempotent batches.

use gateway_storage::{Backend, Database, Migrations, StorageError, now_micros};

pub static MIGRATIONS: Migrations = gateway_storage::migrations!(
    1 "usage events" => "0001_usage_events.sql",
    2 "audit index" => "0002_audit_index.sql",
    3 "route and attempts" => "0003_route_and_attempts.sql",
    4 "ai details" => "0004_ai_details.sql",
    5 "completion cache hits" => "0005_cache_hit.sql",
    6 "ids compare bytewise" => "0006_ids_collate_c.sql",
);

mod postgres;
pub mod query;

pub use query::{LogFilter, LogRow, Stats, StatsScope};

/// Where an event's audit bodies were written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub event_id: String,
    pub tenant_id: String,
    pub occurred_at: i64,
    pub segment: String,
    pub offset: i64,
    pub length: i64,
}

/// One request the edge served, as stored. Mirrors `gateway.usage.v1.UsageEvent`
/// without the audit bodies, which live in segment files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageRecord {
    pub event_id: String,
    pub occurred_at_micros: i64,
    pub tenant_id: String,
    pub user_id: String,
    pub key_id: String,
    pub client_id: String,
    pub group_id: String,
    pub api_id: String,
    pub model: String,
    pub upstream_model: String,
    pub channel_id: String,
    pub method: String,
    pub path: String,
    pub status: i32,
    pub latency_micros: i64,
    pub upstream_latency_micros: i64,
    pub bytes_in: i64,
    pub bytes_out: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cached_tokens: i64,
    pub cost_micros: i64,
    pub request_id: String,
    pub trace_id: String,
    pub stream: bool,
    pub error_message: String,
    pub remote_ip: String,
    pub user_agent: String,
    pub route: String,
    pub attempts: i32,
    pub provider: String,
    pub estimated: bool,
    pub ttft_micros: i64,
    pub finish_reason: String,
    pub cache_hit: bool,
}

impl UsageRecord {
    /// Every text column, for scrubbing before the insert.
    pub fn text_fields_mut(&mut self) -> [&mut String; 20] {
        [
            &mut self.event_id,
            &mut self.tenant_id,
            &mut self.user_id,
            &mut self.key_id,
            &mut self.client_id,
            &mut self.group_id,
            &mut self.api_id,
            &mut self.model,
            &mut self.upstream_model,
            &mut self.channel_id,
            &mut self.method,
            &mut self.path,
            &mut self.request_id,
            &mut self.trace_id,
            &mut self.error_message,
            &mut self.remote_ip,
            &mut self.user_agent,
            &mut self.route,
            &mut self.provider,
            &mut self.finish_reason,
        ]
    }
}

const COLUMNS: &str = "event_id, occurred_at, ingested_at, tenant_id, user_id, key_id, client_id, \
     group_id, api_id, model, upstream_model, channel_id, method, path, status, latency_micros, \
     upstream_latency_micros, bytes_in, bytes_out, prompt_tokens, completion_tokens, \
     cached_tokens, cost_micros, request_id, trace_id, is_stream, error_message, remote_ip, \
     user_agent, route, attempts, provider, estimated, ttft_micros, finish_reason, cache_hit";
const COLUMN_COUNT: usize = 36;

/// The audit index's columns, in the order both backends write them.
const AUDIT_COLUMNS: &str =
    "event_id, tenant_id, occurred_at, segment, record_offset, record_length";

/// Rows per INSERT statement: large ones are fastest on both (measured
/// with `examples/ingest_load`), within the bound-parameter limits (SQLite
/// 32,766, PostgreSQL 65,535).
const ROWS_PER_STATEMENT: usize = 500;

/// The `n`th bind parameter (1-based). SQLite gets anonymous `?`: sqlx
/// looks up every parameter's name when binding, and SQLite's lookup is a
/// linear scan, so `$n` names made a 500-row insert quadratic (1.4k
/// events/s against 30k+ with `?`).
fn placeholder(backend: Backend, n: usize) -> String {
    match backend {
        Backend::Sqlite => "?".to_owned(),
        Backend::Postgres => format!("${n}"),
    }
}

/// The outcome of storing a batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Newly stored events.
    pub stored: u64,
    /// Events whose id was already stored (a replay).
    pub duplicates: u64,
}

impl BatchOutcome {
    fn of(records: &[UsageRecord], stored: u64) -> Self {
        Self {
            stored,
            duplicates: records.len() as u64 - stored,
        }
    }
}

#[derive(Debug, Clone)]
pub struct UsageStore {
    db: Database,
}

impl UsageStore {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Stores `records` in one transaction with multi-row inserts; events
    /// already stored are skipped. Once this returns, the batch is durable.
    pub async fn insert_batch(
        &self,
        records: &[UsageRecord],
    ) -> Result<BatchOutcome, StorageError> {
        self.insert_batch_with_audit(records, &[]).await
    }

    /// Stores `records` and the index of their audit bodies in one
    /// transaction; a replayed event keeps its first index entry.
    pub async fn insert_batch_with_audit(
        &self,
        records: &[UsageRecord],
        audit: &[AuditEntry],
    ) -> Result<BatchOutcome, StorageError> {
        if let Some(pool) = self.db.postgres() {
            // First as if no event were stored yet: `COPY`, which has no
            // `ON CONFLICT` (its speculative insertion probes the key's
            // index once more per row: 5% of the server's CPU on ingest,
            // under perf). A replayed batch fails on the key, and is
            // written again skipping stored events.
            match postgres::copy_batch(pool, records, audit, now_micros()).await {
                Ok(stored) => return Ok(BatchOutcome::of(records, stored)),
                Err(error) if error.is_already_exists() => {}
                Err(error) => return Err(error),
            }
        }
        self.write_skipping_stored(records, audit).await
    }

    /// One transaction of [`Self::insert_batch_with_audit`] that skips
    /// the events already stored.
    async fn write_skipping_stored(
        &self,
        records: &[UsageRecord],
        audit: &[AuditEntry],
    ) -> Result<BatchOutcome, StorageError> {
        let ingested_at = now_micros();
        let mut transaction = self.db.begin_write().await?;
        for chunk in audit.chunks(ROWS_PER_STATEMENT) {
            let mut sql = format!("INSERT INTO audit_index ({AUDIT_COLUMNS}) VALUES ");
            let backend = self.db.backend();
            for row in 0..chunk.len() {
                let values: Vec<String> = (1..=6)
                    .map(|column| placeholder(backend, row * 6 + column))
                    .collect();
                sql.push_str(if row == 0 { "(" } else { ", (" });
                sql.push_str(&values.join(", "));
                sql.push(')');
            }
            sql.push_str(" ON CONFLICT (event_id) DO NOTHING");
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for entry in chunk {
                query = query
                    .bind(entry.event_id.as_str())
                    .bind(entry.tenant_id.as_str())
                    .bind(entry.occurred_at)
                    .bind(entry.segment.as_str())
                    .bind(entry.offset)
                    .bind(entry.length);
            }
            query.execute(&mut *transaction).await?;
        }
        let stored = match self.db.backend() {
            Backend::Postgres => {
                postgres::insert_skipping_stored(&mut transaction, records, ingested_at).await?
            }
            Backend::Sqlite => insert_rows(&mut transaction, records, ingested_at).await?,
        };
        transaction.commit().await?;
        Ok(BatchOutcome::of(records, stored))
    }

    pub async fn count(&self) -> Result<i64, StorageError> {
        let count = sqlx::query_scalar("SELECT COUNT(*) FROM usage_events")
            .fetch_one(self.db.pool())
            .await?;
        Ok(count)
    }
}

type Transaction = sqlx::Transaction<'static, sqlx::Any>;

/// SQLite: multi-row inserts of `ROWS_PER_STATEMENT` rows.
async fn insert_rows(
    transaction: &mut Transaction,
    records: &[UsageRecord],
    ingested_at: i64,
) -> Result<u64, StorageError> {
    let mut stored = 0;
    for chunk in records.chunks(ROWS_PER_STATEMENT) {
        let sql = insert_statement(chunk.len());
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for record in chunk {
            query = query
                .bind(record.event_id.as_str())
                .bind(record.occurred_at_micros)
                .bind(ingested_at)
                .bind(record.tenant_id.as_str())
                .bind(record.user_id.as_str())
                .bind(record.key_id.as_str())
                .bind(record.client_id.as_str())
                .bind(record.group_id.as_str())
                .bind(record.api_id.as_str())
                .bind(record.model.as_str())
                .bind(record.upstream_model.as_str())
                .bind(record.channel_id.as_str())
                .bind(record.method.as_str())
                .bind(record.path.as_str())
                .bind(record.status)
                .bind(record.latency_micros)
                .bind(record.upstream_latency_micros)
                .bind(record.bytes_in)
                .bind(record.bytes_out)
                .bind(record.prompt_tokens)
                .bind(record.completion_tokens)
                .bind(record.cached_tokens)
                .bind(record.cost_micros)
                .bind(record.request_id.as_str())
                .bind(record.trace_id.as_str())
                .bind(record.stream)
                .bind(record.error_message.as_str())
                .bind(record.remote_ip.as_str())
                .bind(record.user_agent.as_str())
                .bind(record.route.as_str())
                .bind(record.attempts)
                .bind(record.provider.as_str())
                .bind(record.estimated)
                .bind(record.ttft_micros)
                .bind(record.finish_reason.as_str())
                .bind(record.cache_hit);
        }
        stored += query.execute(&mut **transaction).await?.rows_affected();
    }
    Ok(stored)
}

/// SQLite's `INSERT ... VALUES (?, ...), (...), ... ON CONFLICT DO NOTHING`.
fn insert_statement(rows: usize) -> String {
    let mut sql = format!("INSERT INTO usage_events ({COLUMNS}) VALUES ");
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..COLUMN_COUNT {
            if column > 0 {
                sql.push_str(", ");
            }
            sql.push('?');
        }
        sql.push(')');
    }
    sql.push_str(" ON CONFLICT (event_id) DO NOTHING");
    sql
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_storage::ConnectOptions;

    async fn open(url: &str) -> UsageStore {
        let db = Database::connect(url, &ConnectOptions::default())
            .await
            .unwrap();
        db.migrate(&MIGRATIONS).await.unwrap();
        UsageStore::new(db)
    }

    fn record(index: usize) -> UsageRecord {
        UsageRecord {
            event_id: format!("event-{index:05}"),
            occurred_at_micros: 1_700_000_000_000_000 + index as i64,
            tenant_id: "tenant-a".to_owned(),
            model: "gpt-4o".to_owned(),
            status: 200,
            prompt_tokens: 10,
            cost_micros: 42,
            stream: index.is_multiple_of(2),
            ..UsageRecord::default()
        }
    }

    #[test]
    fn both_backends_have_the_same_migration_versions() {
        let (sqlite, postgres) = MIGRATIONS.versions();
        assert_eq!(sqlite, postgres);
    }

    #[test]
    fn column_list_matches_the_placeholder_count() {
        assert_eq!(COLUMNS.split(',').count(), COLUMN_COUNT);
        assert_eq!(insert_statement(2).matches('?').count(), 2 * COLUMN_COUNT);
    }

    /// Every field set to a distinct value, so a column swapped or
    /// dropped by either insert shows.
    fn full_record() -> UsageRecord {
        let mut record = UsageRecord {
            event_id: "0190f1d2-3c4b-7a00-8000-000000000001".to_owned(),
            occurred_at_micros: 1_700_000_000_000_001,
            status: 201,
            latency_micros: 2,
            upstream_latency_micros: 3,
            bytes_in: 4,
            bytes_out: 5,
            prompt_tokens: 6,
            completion_tokens: 7,
            cached_tokens: 8,
            cost_micros: 9,
            stream: true,
            attempts: 10,
            estimated: true,
            ttft_micros: 11,
            cache_hit: true,
            ..UsageRecord::default()
        };
        for (index, field) in record.text_fields_mut().into_iter().enumerate().skip(1) {
            *field = format!("text-{index} \"quoted\" \\ é");
        }
        record
    }

    gateway_testkit::test_on_every_backend! {
        async fn every_column_round_trips(db) {
            let store = open(db.url()).await;
            let record = full_record();
            store.insert_batch(std::slice::from_ref(&record)).await.unwrap();
            let row = store.log(&record.event_id).await.unwrap();
            assert_eq!(row.record, record);
        }
    }

    gateway_testkit::test_on_every_backend! {
        async fn replayed_events_are_stored_once(db) {
            let store = open(db.url()).await;
            let first: Vec<_> = (0..1_200).map(record).collect();
            let outcome = store.insert_batch(&first).await.unwrap();
            assert_eq!(outcome, BatchOutcome { stored: 1_200, duplicates: 0 });

            // A resend after a lost ack overlaps the stored events.
            let second: Vec<_> = (1_000..1_500).map(record).collect();
            let outcome = store.insert_batch(&second).await.unwrap();
            assert_eq!(outcome, BatchOutcome { stored: 300, duplicates: 200 });
            assert_eq!(store.count().await.unwrap(), 1_500);

            // One event twice in a batch of new ones (PostgreSQL's first,
            // conflict-free COPY fails on it; the batch still lands).
            let twice = [record(1_600), record(1_601), record(1_600)];
            let outcome = store.insert_batch(&twice).await.unwrap();
            assert_eq!(outcome, BatchOutcome { stored: 2, duplicates: 1 });
            assert_eq!(store.count().await.unwrap(), 1_502);
        }
    }

    fn audit_entry(record: &UsageRecord, offset: i64) -> AuditEntry {
        AuditEntry {
            event_id: record.event_id.clone(),
            tenant_id: record.tenant_id.clone(),
            occurred_at: record.occurred_at_micros,
            segment: "2023_11_14/segment-1".to_owned(),
            offset,
            length: 99,
        }
    }

    gateway_testkit::test_on_every_backend! {
        async fn audit_entries_land_with_their_events_and_keep_the_first(db) {
            let store = open(db.url()).await;
            let records: Vec<_> = (0..3).map(record).collect();
            let audit = [audit_entry(&records[0], 10), audit_entry(&records[2], 20)];
            let outcome = store.insert_batch_with_audit(&records, &audit).await.unwrap();
            assert_eq!(outcome, BatchOutcome { stored: 3, duplicates: 0 });
            assert_eq!(store.audit_entry(&records[2].event_id).await.unwrap(), audit[1]);
            assert!(matches!(
                store.audit_entry(&records[1].event_id).await,
                Err(StorageError::NotFound)
            ));

            // A resend whose bodies were written again elsewhere keeps the
            // first index entry; the new event's entry lands.
            let resent = [records[2].clone(), record(3)];
            let audit_again = [audit_entry(&resent[0], 30), audit_entry(&resent[1], 40)];
            let outcome = store.insert_batch_with_audit(&resent, &audit_again).await.unwrap();
            assert_eq!(outcome, BatchOutcome { stored: 1, duplicates: 1 });
            assert_eq!(store.audit_entry(&records[2].event_id).await.unwrap(), audit[1]);
            assert_eq!(store.audit_entry(&resent[1].event_id).await.unwrap(), audit_again[1]);
        }
    }

    /// The native pool pings a connection only after it sat idle (no
    /// round trip per batch): one the server closed while it sat idle is
    /// replaced at checkout, and the batch lands.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_lands_after_the_server_closed_the_idle_connections() {
        let Some(db) = gateway_testkit::TestDatabase::postgres().await else {
            return;
        };
        let store = open(db.url()).await;
        store.insert_batch(&[record(1)]).await.unwrap();
        let closed: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .fetch_all(store.database().pool())
        .await
        .unwrap();
        assert!(!closed.is_empty(), "the COPY's connection was open");
        tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
        let outcome = store.insert_batch(&[record(2)]).await.unwrap();
        assert_eq!(
            outcome,
            BatchOutcome {
                stored: 1,
                duplicates: 0
            }
        );
        assert_eq!(store.count().await.unwrap(), 2);
    }
}
