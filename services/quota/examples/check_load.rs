//! Load test of `Check`: throughput and latency percentiles, measured in one
//! run for (1) the admission code called in-process on the memory limiter,
//! (2) gRPC `Check` on the memory backend and (3) gRPC `Check` on Redis.
//!
//! ```text
//! cargo run --release -p gateway-quota --example check_load -- \
//!     [--redis redis://127.0.0.1:6379] [--seconds 10] [--concurrency 32]
//! ```
//!
//! Every Check evaluates a realistic plan (requests per minute and per day,
//! tokens per minute, a concurrency limit) for one of 100 keys, so each
//! admission also keeps a reservation record. Client and server share the
//! machine: compare the rows with each other, not with other machines.

#![allow(clippy::print_stdout, clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway_auth::AuthConfig;
use gateway_proto::quota::v1 as pb;
use gateway_proto::quota::v1::quota_service_client::QuotaServiceClient;
use gateway_quota::admission::{Admissions, Settings};
use gateway_quota::limiter::Limiter;
use gateway_quota::resolve::LimitsCache;
use gateway_quota::store::QuotaStore;
use gateway_quota::store::limits::{LimitConfig, PLAN};
use gateway_quota::{Config, Quota};
use gateway_runtime::CancellationToken;
use gateway_runtime::process::RuntimeConfig;
use gateway_storage::{ConnectOptions, Database};
use prost::Message as _;
use tokio::task::JoinSet;

// The quota binary's allocator, so the rows measure what it runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TENANT: &str = "bench-tenant";
const ADMIN_KEY: &str = "bench-admin-key-0123456789";
const KEYS: usize = 100;

struct Options {
    redis: Option<String>,
    seconds: u64,
    concurrency: usize,
}

fn options() -> Options {
    let mut options = Options {
        redis: None,
        seconds: 10,
        concurrency: 32,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().expect("every option takes a value");
        match arg.as_str() {
            "--redis" => options.redis = Some(value),
            "--seconds" => options.seconds = value.parse().expect("--seconds: a number"),
            "--concurrency" => {
                options.concurrency = value.parse().expect("--concurrency: a number");
            }
            other => panic!("unknown option {other}"),
        }
    }
    options
}

fn plan() -> pb::Plan {
    pb::Plan {
        name: "bench".to_owned(),
        requests_per_minute: Some(1_000_000_000),
        requests_per_day: Some(1_000_000_000),
        tokens_per_minute: Some(1_000_000_000_000),
        max_concurrency: Some(1_000_000),
        ..pb::Plan::default()
    }
}

fn request(plan_id: &str, index: usize) -> pb::CheckRequest {
    pb::CheckRequest {
        request_id: String::new(),
        tenant_id: TENANT.to_owned(),
        scopes: vec![pb::Scope {
            kind: pb::ScopeKind::Key.into(),
            id: format!("key-{}", index % KEYS),
            plan_id: plan_id.to_owned(),
            spend_limit_micros: None,
        }],
        model: "bench-model".to_owned(),
        estimated_tokens: 500,
        estimated_cost_micros: 0,
        balance_owner: None,
        reservation_ttl: Some(prost_types::Duration {
            seconds: 30,
            nanos: 0,
        }),
    }
}

async fn store(url: &str) -> QuotaStore {
    let db = Database::connect(url, &ConnectOptions::default())
        .await
        .unwrap();
    db.migrate(&gateway_quota::store::MIGRATIONS).await.unwrap();
    QuotaStore::new(db)
}

async fn insert_plan(store: &QuotaStore) -> String {
    let id = uuid::Uuid::now_v7().to_string();
    store
        .insert_limit_config(&LimitConfig {
            kind: PLAN,
            id: id.clone(),
            tenant_id: TENANT.to_owned(),
            unique_key: id.clone(),
            group_id: String::new(),
            spec: plan().encode_to_vec(),
            created_at: 0,
            updated_at: 0,
        })
        .await
        .unwrap();
    id
}

/// What one load run measured.
struct Measured {
    throughput: f64,
    p50: Duration,
    p99: Duration,
}

/// Runs `concurrency` loops of `call` for `seconds`; every call must admit.
async fn load<F, Fut>(seconds: u64, concurrency: usize, call: F) -> Measured
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    // Warm up connections, scripts and caches.
    for index in 0..200 {
        assert!(call(index).await, "warm-up check refused");
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut tasks = JoinSet::new();
    for worker in 0..concurrency {
        let call = call.clone();
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            let mut index = worker;
            while Instant::now() < deadline {
                let begun = Instant::now();
                assert!(call(index).await, "check refused under load");
                latencies.push(begun.elapsed());
                index += concurrency;
            }
            latencies
        });
    }
    let mut latencies = Vec::new();
    while let Some(done) = tasks.join_next().await {
        latencies.extend(done.unwrap());
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    let percentile = |p: f64| {
        let rank = ((latencies.len() as f64) * p).ceil() as usize;
        latencies[rank.clamp(1, latencies.len()) - 1]
    };
    Measured {
        throughput: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: percentile(0.50),
        p99: percentile(0.99),
    }
}

/// Starts a quota server on an ephemeral port; returns its URL.
async fn serve(database_url: &str, redis: Option<&str>, shutdown: &CancellationToken) -> String {
    let config = Config {
        database_url: database_url.to_owned(),
        redis_url: redis.unwrap_or_default().to_owned(),
        redis_prefix: format!("gwbench-{}", uuid::Uuid::now_v7().simple()),
        ..Config::default()
    };
    let auth = AuthConfig {
        admin_key: ADMIN_KEY.into(),
        // A shared secret: no identity to fetch keys from in this bench.
        jwt_secret: "a-bench-only-jwt-secret-of-32-bytes!!".into(),
        ..AuthConfig::default()
    };
    let quota = Quota::open(&config, &auth).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        quota
            .serve(listener, shutdown, &RuntimeConfig::default())
            .await
            .unwrap();
    });
    gateway_testkit::wait_for_grpc_health(
        &url,
        gateway_quota::GRPC_SERVICE_NAME,
        Duration::from_secs(10),
    )
    .await;
    url
}

/// Answers that came from a backend other than the one under test (the
/// memory fallback while Redis was too slow): reported, since they would
/// flatter the Redis row.
static OTHER_BACKEND: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

async fn grpc_load(
    url: &str,
    plan_id: &str,
    options: &Options,
    expected: pb::LimiterBackend,
) -> Measured {
    // A few HTTP/2 connections, as an edge would keep.
    let mut clients = Vec::new();
    for _ in 0..4 {
        let channel = tonic::transport::Endpoint::from_shared(url.to_owned())
            .unwrap()
            .connect()
            .await
            .unwrap();
        clients.push(QuotaServiceClient::with_interceptor(
            channel,
            |mut request: tonic::Request<()>| {
                request.metadata_mut().insert(
                    gateway_auth::ADMIN_KEY_HEADER,
                    tonic::metadata::MetadataValue::from_static(ADMIN_KEY),
                );
                Ok(request)
            },
        ));
    }
    let clients = Arc::new(clients);
    let plan_id = plan_id.to_owned();
    load(options.seconds, options.concurrency, move |index| {
        let mut client = clients[index % clients.len()].clone();
        let request = request(&plan_id, index);
        async move {
            let answer = client.check(request).await.unwrap().into_inner();
            if answer.backend() != expected {
                OTHER_BACKEND.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            answer.allowed
        }
    })
    .await
}

fn row(name: &str, measured: &Measured, reference: f64) {
    println!(
        "| {name:<34} | {:>9.0} | {:>7.3} | {:>7.3} | {:>5.2}x |",
        measured.throughput,
        measured.p50.as_secs_f64() * 1e3,
        measured.p99.as_secs_f64() * 1e3,
        measured.throughput / reference,
    );
}

#[tokio::main]
async fn main() {
    let options = options();
    // The metrics recorder the binary installs, so metrics cost what they do there.
    let _ = gateway_runtime::metrics::handle();
    let directory = std::env::temp_dir().join(format!("gwbench-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&directory).unwrap();
    let database_url = format!("sqlite://{}", directory.join("quota.db").display());
    let store = store(&database_url).await;
    let plan_id = insert_plan(&store).await;
    let shutdown = CancellationToken::new();

    let in_process = {
        let limits = LimitsCache::load(store.clone()).await.unwrap();
        let admissions = Arc::new(Admissions::new(
            limits,
            Arc::new(Limiter::memory()),
            store.clone(),
            Settings::default(),
        ));
        let plan_id = plan_id.clone();
        load(options.seconds, options.concurrency, move |index| {
            let admissions = Arc::clone(&admissions);
            let request = request(&plan_id, index);
            async move { admissions.check(&request).await.unwrap().allowed }
        })
        .await
    };
    let memory_url = serve(&database_url, None, &shutdown).await;
    let memory = grpc_load(&memory_url, &plan_id, &options, pb::LimiterBackend::Memory).await;
    let redis = match &options.redis {
        Some(redis_url) => {
            let url = serve(&database_url, Some(redis_url), &shutdown).await;
            Some(grpc_load(&url, &plan_id, &options, pb::LimiterBackend::Redis).await)
        }
        None => None,
    };
    shutdown.cancel();

    println!(
        "Check, {} concurrent callers, {} s per row, {} keys",
        options.concurrency, options.seconds, KEYS
    );
    println!(
        "| path                               | checks/s  | p50 ms  | p99 ms  | vs gRPC memory |"
    );
    println!("|------------------------------------|-----------|---------|---------|--------|");
    row("in-process, memory limiter", &in_process, memory.throughput);
    row("gRPC Check, memory backend", &memory, memory.throughput);
    if let Some(redis) = &redis {
        row("gRPC Check, Redis backend", redis, memory.throughput);
    }
    println!(
        "answers from the memory fallback during the Redis row: {}",
        OTHER_BACKEND.load(std::sync::atomic::Ordering::Relaxed)
    );
    let _ = std::fs::remove_dir_all(&directory);
}
