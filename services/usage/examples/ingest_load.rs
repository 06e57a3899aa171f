//! Ingest throughput: events per second into SQLite and, when given, into
//! PostgreSQL, through the real gRPC Ingest stream (batches of 500, at
//! most 16 unacked, as the edge's sender keeps), measured in one run.
//!
//! ```text
//! cargo run --release -p gateway-usage --example ingest_load -- \
//!     [--postgres postgres://postgres@127.0.0.1:5432/test] [--events 200000] [--bodies-every 0]
//! ```
//!
//! `--bodies-every N` attaches 2 KiB request / response bodies to every
//! N-th event (0 = none), so the audit writers are measured too.

#![allow(clippy::print_stdout, clippy::expect_used, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use gateway_auth::AuthConfig;
use gateway_proto::timestamp_from_micros;
use gateway_proto::usage::v1 as pb;
use gateway_proto::usage::v1::usage_service_client::UsageServiceClient;
use gateway_runtime::CancellationToken;
use gateway_runtime::process::RuntimeConfig;
use gateway_usage::{Config, Usage};

const ADMIN_KEY: &str = "bench-admin-key-0123456789";
const BATCH: usize = 500;
const IN_FLIGHT: usize = 16;

struct Options {
    postgres: Option<String>,
    events: usize,
    bodies_every: usize,
}

fn options() -> Options {
    let mut options = Options {
        postgres: None,
        events: 200_000,
        bodies_every: 0,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().expect("every option takes a value");
        match arg.as_str() {
            "--postgres" => options.postgres = Some(value),
            "--events" => options.events = value.parse().expect("--events: a number"),
            "--bodies-every" => {
                options.bodies_every = value.parse().expect("--bodies-every: a number");
            }
            other => panic!("unknown option {other}"),
        }
    }
    options
}

fn event(index: usize, bodies_every: usize) -> pb::UsageEvent {
    let now = gateway_storage::now_micros();
    pb::UsageEvent {
        event_id: uuid::Uuid::now_v7().to_string(),
        time: Some(timestamp_from_micros(now)),
        tenant_id: format!("tenant-{}", index % 10),
        user_id: format!("user-{}", index % 100),
        key_id: format!("key-{}", index % 1000),
        model: "gpt-4o-mini".to_owned(),
        method: "POST".to_owned(),
        path: "/v1/chat/completions".to_owned(),
        status: 200,
        prompt_tokens: 120,
        completion_tokens: 380,
        cost_micros: 1_234,
        request_id: uuid::Uuid::now_v7().to_string(),
        bodies: (bodies_every > 0 && index.is_multiple_of(bodies_every)).then(|| pb::AuditBodies {
            request_body: format!(
                "{{\"messages\":[{{\"role\":\"user\",\"content\":\"{}\"}}]}}",
                "hello ".repeat(340)
            )
            .into_bytes(),
            response_body: format!(
                "{{\"choices\":[{{\"message\":{{\"content\":\"{}\"}}}}]}}",
                "world ".repeat(340)
            )
            .into_bytes(),
            ..pb::AuditBodies::default()
        }),
        ..pb::UsageEvent::default()
    }
}

async fn run(database_url: &str, options: &Options) -> (f64, i64) {
    let audit = tempfile_dir();
    let config = Config {
        database_url: database_url.to_owned(),
        audit_dir: audit.display().to_string(),
        ..Config::default()
    };
    let auth = AuthConfig {
        admin_key: ADMIN_KEY.into(),
        jwt_secret: "a-bench-only-jwt-secret-of-32-bytes!!".into(),
        ..AuthConfig::default()
    };
    let usage = Usage::open(&config, &auth).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let server = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            usage
                .serve(listener, shutdown, &RuntimeConfig::default())
                .await
                .unwrap();
        }
    });
    gateway_testkit::wait_for_grpc_health(
        &url,
        gateway_usage::GRPC_SERVICE_NAME,
        Duration::from_secs(10),
    )
    .await;
    let channel = tonic::transport::Endpoint::from_shared(url)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client =
        UsageServiceClient::with_interceptor(channel, |mut request: tonic::Request<()>| {
            request.metadata_mut().insert(
                gateway_auth::ADMIN_KEY_HEADER,
                tonic::metadata::MetadataValue::from_static(ADMIN_KEY),
            );
            Ok(request)
        })
        .max_decoding_message_size(64 * 1024 * 1024)
        .max_encoding_message_size(64 * 1024 * 1024);

    // Events are built before the clock starts: the store is measured.
    let batches: Vec<pb::IngestRequest> = (0..options.events)
        .map(|index| event(index, options.bodies_every))
        .collect::<Vec<_>>()
        .chunks(BATCH)
        .enumerate()
        .map(|(index, events)| pb::IngestRequest {
            sequence: index as i64 + 1,
            events: events.to_vec(),
        })
        .collect();
    let total = batches.len();
    let (sender, receiver) = tokio::sync::mpsc::channel(IN_FLIGHT);
    // A batch is sent only while fewer than IN_FLIGHT are unacked.
    let window = std::sync::Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let started = Instant::now();
    let mut acks = client
        .ingest(tokio_stream::wrappers::ReceiverStream::new(receiver))
        .await
        .unwrap()
        .into_inner();
    let feeder = tokio::spawn({
        let window = std::sync::Arc::clone(&window);
        async move {
            for batch in batches {
                window.acquire().await.unwrap().forget();
                if sender.send(batch).await.is_err() {
                    return;
                }
            }
        }
    });
    let mut stored = 0_i64;
    for _ in 0..total {
        let ack = acks.message().await.unwrap().expect("an ack per batch");
        window.add_permits(1);
        stored += i64::from(ack.stored_count);
    }
    let elapsed = started.elapsed();
    feeder.abort();
    shutdown.cancel();
    let _ = server.await;
    let _ = std::fs::remove_dir_all(&audit);
    (options.events as f64 / elapsed.as_secs_f64(), stored)
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("gwbench-usage-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::main]
async fn main() {
    let options = options();
    let sqlite_dir = tempfile_dir();
    let sqlite_url = format!("sqlite://{}", sqlite_dir.join("usage.db").display());
    let (sqlite, stored) = run(&sqlite_url, &options).await;
    assert_eq!(stored, options.events as i64, "every event stored");
    let _ = std::fs::remove_dir_all(&sqlite_dir);
    println!(
        "Ingest of {} events, batches of {BATCH}, {IN_FLIGHT} in flight, bodies every {}",
        options.events, options.bodies_every
    );
    println!("| store      | events/s | vs SQLite |");
    println!("|------------|----------|-----------|");
    println!("| SQLite     | {sqlite:>8.0} | {:>8.2}x |", 1.0);
    if let Some(postgres) = &options.postgres {
        // A fresh database, so earlier runs do not slow this one.
        let name = format!("gwbench_{}", uuid::Uuid::now_v7().simple());
        let admin = sqlx::postgres::PgPool::connect(postgres).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await
            .unwrap();
        let url = match postgres.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{name}"),
            None => panic!("--postgres: expected a URL ending in /database"),
        };
        let (pg, stored) = run(&url, &options).await;
        assert_eq!(stored, options.events as i64, "every event stored");
        println!("| PostgreSQL | {pg:>8.0} | {:>8.2}x |", pg / sqlite);
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE {name} WITH (FORCE)"
        )))
        .execute(&admin)
        .await;
    }
}
