//! PostgreSQL's batch writes. A batch is first `COPY`'d in binary, as if
//! none of its events were stored yet; a batch holding a stored event (a
//! resend) fails that on the key, and is inserted again from one array per
//! column with `ON CONFLICT DO NOTHING`.

use std::sync::LazyLock;

use gateway_storage::StorageError;
use sqlx::PgPool;

use super::{AUDIT_COLUMNS, AuditEntry, COLUMN_COUNT, COLUMNS, UsageRecord};

/// How a column's value is read from a record.
#[derive(Clone, Copy)]
enum Field {
    Text(fn(&UsageRecord) -> &str),
    BigInt(fn(&UsageRecord) -> i64),
    Integer(fn(&UsageRecord) -> i32),
    Boolean(fn(&UsageRecord) -> bool),
}

impl Field {
    fn sql_type(self) -> &'static str {
        match self {
            Self::Text(_) => "text",
            Self::BigInt(_) => "bigint",
            Self::Integer(_) => "integer",
            Self::Boolean(_) => "boolean",
        }
    }
}

/// Every column but `ingested_at` (one value for the whole batch), in
/// `COLUMNS` order.
const FIELDS: [(&str, Field); COLUMN_COUNT - 1] = [
    ("event_id", Field::Text(|r| &r.event_id)),
    ("occurred_at", Field::BigInt(|r| r.occurred_at_micros)),
    ("tenant_id", Field::Text(|r| &r.tenant_id)),
    ("user_id", Field::Text(|r| &r.user_id)),
    ("key_id", Field::Text(|r| &r.key_id)),
    ("client_id", Field::Text(|r| &r.client_id)),
    ("group_id", Field::Text(|r| &r.group_id)),
    ("api_id", Field::Text(|r| &r.api_id)),
    ("model", Field::Text(|r| &r.model)),
    ("upstream_model", Field::Text(|r| &r.upstream_model)),
    ("channel_id", Field::Text(|r| &r.channel_id)),
    ("method", Field::Text(|r| &r.method)),
    ("path", Field::Text(|r| &r.path)),
    ("status", Field::Integer(|r| r.status)),
    ("latency_micros", Field::BigInt(|r| r.latency_micros)),
    (
        "upstream_latency_micros",
        Field::BigInt(|r| r.upstream_latency_micros),
    ),
    ("bytes_in", Field::BigInt(|r| r.bytes_in)),
    ("bytes_out", Field::BigInt(|r| r.bytes_out)),
    ("prompt_tokens", Field::BigInt(|r| r.prompt_tokens)),
    ("completion_tokens", Field::BigInt(|r| r.completion_tokens)),
    ("cached_tokens", Field::BigInt(|r| r.cached_tokens)),
    ("cost_micros", Field::BigInt(|r| r.cost_micros)),
    ("request_id", Field::Text(|r| &r.request_id)),
    ("trace_id", Field::Text(|r| &r.trace_id)),
    ("is_stream", Field::Boolean(|r| r.stream)),
    ("error_message", Field::Text(|r| &r.error_message)),
    ("remote_ip", Field::Text(|r| &r.remote_ip)),
    ("user_agent", Field::Text(|r| &r.user_agent)),
    ("route", Field::Text(|r| &r.route)),
    ("attempts", Field::Integer(|r| r.attempts)),
    ("provider", Field::Text(|r| &r.provider)),
    ("estimated", Field::Boolean(|r| r.estimated)),
    ("ttft_micros", Field::BigInt(|r| r.ttft_micros)),
    ("finish_reason", Field::Text(|r| &r.finish_reason)),
    ("cache_hit", Field::Boolean(|r| r.cache_hit)),
];

/// Stores a batch with `COPY`, in one transaction with its audit index.
/// An event already stored fails it with `AlreadyExists`.
pub(super) async fn copy_batch(
    pool: &PgPool,
    records: &[UsageRecord],
    audit: &[AuditEntry],
    ingested_at: i64,
) -> Result<u64, StorageError> {
    static EVENTS: LazyLock<String> = LazyLock::new(|| {
        let names: Vec<&str> = FIELDS.iter().map(|(name, _)| *name).collect();
        format!(
            "COPY usage_events (ingested_at, {}) FROM STDIN (FORMAT binary)",
            names.join(", ")
        )
    });
    let events = event_rows(records, ingested_at);
    if audit.is_empty() {
        // One statement is its own transaction, committed (durably) before
        // the server says it is done: no BEGIN and COMMIT round trips.
        let mut connection = pool.acquire().await?;
        return send_all(connection.copy_in_raw(&EVENTS).await?, events).await;
    }
    static AUDIT: LazyLock<String> =
        LazyLock::new(|| format!("COPY audit_index ({AUDIT_COLUMNS}) FROM STDIN (FORMAT binary)"));
    let mut transaction = pool.begin().await?;
    let copy = transaction.copy_in_raw(&AUDIT).await?;
    send_all(copy, audit_rows(audit)).await?;
    let stored = send_all(transaction.copy_in_raw(&EVENTS).await?, events).await?;
    transaction.commit().await?;
    Ok(stored)
}

async fn send_all(
    mut copy: sqlx::postgres::PgCopyIn<&mut sqlx::PgConnection>,
    rows: Vec<u8>,
) -> Result<u64, StorageError> {
    copy.send(rows).await?;
    Ok(copy.finish().await?)
}

fn event_rows(records: &[UsageRecord], ingested_at: i64) -> Vec<u8> {
    let mut rows = CopyRows::with_capacity(records.len() * 400);
    for record in records {
        rows.row(COLUMN_COUNT);
        rows.bigint(ingested_at);
        for (_, field) in FIELDS {
            match field {
                Field::Text(value) => rows.text(value(record)),
                Field::BigInt(value) => rows.bigint(value(record)),
                Field::Integer(value) => rows.integer(value(record)),
                Field::Boolean(value) => rows.boolean(value(record)),
            }
        }
    }
    rows.finish()
}

fn audit_rows(audit: &[AuditEntry]) -> Vec<u8> {
    let mut rows = CopyRows::with_capacity(audit.len() * 128);
    for entry in audit {
        rows.row(6);
        rows.text(&entry.event_id);
        rows.text(&entry.tenant_id);
        rows.bigint(entry.occurred_at);
        rows.text(&entry.segment);
        rows.bigint(entry.offset);
        rows.bigint(entry.length);
    }
    rows.finish()
}

/// PostgreSQL's binary `COPY` format: a signature, then each row as its
/// field count and each field as a length and its bytes, numbers
/// big-endian; -1 as the field count ends it. The server's parse of this
/// is a copy per field, where an array literal is scanned for quotes and
/// escapes byte by byte.
struct CopyRows(Vec<u8>);

impl CopyRows {
    const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

    fn with_capacity(capacity: usize) -> Self {
        let mut out = Vec::with_capacity(capacity + 32);
        out.extend_from_slice(Self::SIGNATURE);
        // Flags, then the length of the header extension: both none.
        out.extend_from_slice(&0i32.to_be_bytes());
        out.extend_from_slice(&0i32.to_be_bytes());
        Self(out)
    }

    fn row(&mut self, fields: usize) {
        let fields = i16::try_from(fields).unwrap_or(i16::MAX);
        self.0.extend_from_slice(&fields.to_be_bytes());
    }

    fn field(&mut self, bytes: &[u8]) {
        // A record comes from a gRPC message of at most 64 MiB. A longer
        // field would fail the COPY, never be stored cut short.
        let length = i32::try_from(bytes.len()).unwrap_or(i32::MAX);
        self.0.extend_from_slice(&length.to_be_bytes());
        self.0.extend_from_slice(bytes);
    }

    fn text(&mut self, value: &str) {
        self.field(value.as_bytes());
    }

    fn bigint(&mut self, value: i64) {
        self.field(&value.to_be_bytes());
    }

    fn integer(&mut self, value: i32) {
        self.field(&value.to_be_bytes());
    }

    fn boolean(&mut self, value: bool) {
        self.field(&[u8::from(value)]);
    }

    fn finish(mut self) -> Vec<u8> {
        self.0.extend_from_slice(&(-1i16).to_be_bytes());
        self.0
    }
}

/// Inserts a batch skipping the events already stored: the whole batch
/// as one array parameter per column, one prepared statement whatever the
/// batch size. Binding 36 parameters per row through sqlx's `Any` driver
/// cost more than the insert itself, and `json_to_recordset` spent a fifth
/// of the server's time hashing keys (both measured with
/// `examples/ingest_load`).
pub(super) async fn insert_skipping_stored(
    transaction: &mut sqlx::Transaction<'static, sqlx::Any>,
    records: &[UsageRecord],
    ingested_at: i64,
) -> Result<u64, StorageError> {
    static SKIPPING: LazyLock<String> = LazyLock::new(insert_statement);
    let mut query = sqlx::query(sqlx::AssertSqlSafe(SKIPPING.as_str()));
    for (_, field) in FIELDS {
        query = query.bind(array(records, field));
    }
    let done = query.bind(ingested_at).execute(&mut **transaction).await?;
    Ok(done.rows_affected())
}

/// `INSERT ... SELECT unnest($1::text[]), ... ON CONFLICT DO NOTHING`.
/// The set-returning calls sit in the select list, where PostgreSQL steps
/// them in lockstep row by row; `FROM unnest(...)` first copied every row
/// into a tuplestore and read it back (11% of the machine's CPU on
/// ingest, measured with `examples/ingest_load` under perf).
fn insert_statement() -> String {
    let mut arrays = FIELDS
        .iter()
        .enumerate()
        .map(|(index, (_, field))| format!("unnest(${}::{}[])", index + 1, field.sql_type()));
    let ingested_at = format!("${}", FIELDS.len() + 1);
    let selected: Vec<String> = COLUMNS
        .split(", ")
        .map(|name| match name {
            "ingested_at" => ingested_at.clone(),
            _ => arrays.next().unwrap_or_default(),
        })
        .collect();
    format!(
        "INSERT INTO usage_events ({COLUMNS}) SELECT {} ON CONFLICT (event_id) DO NOTHING",
        selected.join(", ")
    )
}

/// A column's values of `records` as a PostgreSQL array literal.
fn array(records: &[UsageRecord], field: Field) -> String {
    let mut out = String::with_capacity(records.len() * 16 + 2);
    out.push('{');
    for (index, record) in records.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        match field {
            Field::Text(value) => text(&mut out, value(record)),
            Field::BigInt(value) => int(&mut out, value(record)),
            Field::Integer(value) => int(&mut out, i64::from(value(record))),
            Field::Boolean(value) => out.push(if value(record) { 't' } else { 'f' }),
        }
    }
    out.push('}');
    out
}

/// A quoted array element: `"`, with `\` and `"` escaped.
fn text(out: &mut String, value: &str) {
    out.push('"');
    for part in value.split_inclusive(['"', '\\']) {
        match part.char_indices().last() {
            Some((index, quote @ ('"' | '\\'))) => {
                out.push_str(&part[..index]);
                out.push('\\');
                out.push(quote);
            }
            _ => out.push_str(part),
        }
    }
    out.push('"');
}

fn int(out: &mut String, value: i64) {
    use std::fmt::Write as _;
    let _ = write!(out, "{value}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_elements_are_quoted_and_escaped() {
        let mut out = String::new();
        text(&mut out, r#"a "b" \c\"#);
        assert_eq!(out, r#""a \"b\" \\c\\""#);
        let records = [
            UsageRecord {
                status: 201,
                stream: true,
                ..UsageRecord::default()
            },
            UsageRecord::default(),
        ];
        assert_eq!(array(&records, Field::Integer(|r| r.status)), "{201,0}");
        assert_eq!(array(&records, Field::Boolean(|r| r.stream)), "{t,f}");
    }

    #[test]
    fn fields_follow_the_column_list() {
        let fields: Vec<&str> = FIELDS.iter().map(|(name, _)| *name).collect();
        let columns: Vec<&str> = COLUMNS
            .split(", ")
            .filter(|name| *name != "ingested_at")
            .collect();
        assert_eq!(fields, columns, "FIELDS in COLUMNS order");
        let insert = insert_statement();
        assert_eq!(insert.matches("unnest(").count(), COLUMN_COUNT - 1);
        assert!(insert.contains("SELECT unnest($1::text[]), unnest($2::bigint[]), $36, "));
        assert!(insert.ends_with(" ON CONFLICT (event_id) DO NOTHING"));
    }

    #[test]
    fn copy_rows_are_postgres_binary_format() {
        let mut rows = CopyRows::with_capacity(0);
        rows.row(4);
        rows.text("é");
        rows.bigint(-2);
        rows.integer(7);
        rows.boolean(true);
        let mut expected = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0".to_vec();
        expected.extend_from_slice(&[0, 4]);
        expected.extend_from_slice(&[0, 0, 0, 2, 0xc3, 0xa9]);
        expected.extend_from_slice(&[0, 0, 0, 8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe]);
        expected.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 7]);
        expected.extend_from_slice(&[0, 0, 0, 1, 1]);
        expected.extend_from_slice(&[0xff, 0xff]);
        assert_eq!(rows.finish(), expected);
    }
}
