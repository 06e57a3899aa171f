//! Test helpers shared by every crate's tests.
//!
//! PostgreSQL and Redis tests use the servers named by
//! `GATEWAY_TEST_POSTGRES_URL` / `GATEWAY_TEST_REDIS_URL`. Without the
//! variable such a test is skipped on a developer machine, and fails under
//! CI (`CI` set): CI must never pass by skipping. LDAP tests start their
//! own `slapd` ([`ldap::Slapd`]) under the same rule, and Redis Cluster
//! tests their own cluster ([`redis_cluster::RedisCluster`]).

#![allow(clippy::expect_used, clippy::print_stderr)]

pub mod browser;
pub mod crash;
mod database;
pub mod ldap;
pub mod providers;
pub mod redis_cluster;

pub use database::TestDatabase;

use std::time::Duration;

/// Environment variable naming the PostgreSQL server for tests.
pub const POSTGRES_URL_ENV: &str = "GATEWAY_TEST_POSTGRES_URL";
/// Environment variable naming the Redis server for tests.
pub const REDIS_URL_ENV: &str = "GATEWAY_TEST_REDIS_URL";

/// The URL in `variable`, `None` to skip, or a panic under CI.
pub fn server_url(variable: &str) -> Option<String> {
    match std::env::var(variable) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => {
            panic!("{variable} must be set when CI is set: this test may not be skipped")
        }
        _ => {
            eprintln!("skipping: {variable} is not set");
            None
        }
    }
}

/// Polls `grpc.health.v1.Health/Check` at `endpoint` until it answers
/// SERVING, for at most `limit`. Tests wait on readiness, never on a sleep.
pub async fn wait_for_grpc_health(endpoint: &str, service: &str, limit: Duration) {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let attempt = async {
            let channel = tonic::transport::Endpoint::from_shared(endpoint.to_owned())
                .ok()?
                .connect()
                .await
                .ok()?;
            let mut client = HealthClient::new(channel);
            let response = client
                .check(HealthCheckRequest {
                    service: service.to_owned(),
                })
                .await
                .ok()?;
            Some(response.into_inner().status())
        };
        if attempt.await == Some(ServingStatus::Serving) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{endpoint} did not report {service:?} SERVING within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Declares one test per backend for each body:
///
/// ```ignore
/// gateway_testkit::test_on_every_backend! {
///     async fn inserts_and_reads(db) { /* db: TestDatabase */ }
/// }
/// ```
/// expands to `inserts_and_reads::sqlite` and `inserts_and_reads::postgres`.
#[macro_export]
macro_rules! test_on_every_backend {
    ($(async fn $name:ident($db:ident) $body:block)*) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    let $db = $crate::TestDatabase::sqlite().await;
                    $body
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    let Some($db) = $crate::TestDatabase::postgres().await else {
                        return;
                    };
                    $body
                }
            }
        )*
    };
}
