//! Tenant isolation as a matrix over every RPC in `proto/`, from both
//! sides: an admin of one tenant probes each RPC with the other tenant's
//! ids (see `isolation/matrix.rs`) and is refused with NOT_FOUND or
//! PERMISSION_DENIED, lists never show the other tenant's rows, and the
//! other tenant's state is the same afterwards. A new RPC without an
//! entry fails the test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "isolation/call.rs"]
mod call;
#[path = "isolation/fixtures.rs"]
mod fixtures;
#[path = "isolation/matrix.rs"]
mod matrix;

use gateway_e2e::{Backend, TestSuite};
use serde_json::Value;
use tonic::Code;

use crate::call::call;
use crate::fixtures::{Fixtures, fill, superadmin};
use crate::matrix::{MATRIX, Probe};

/// `CatalogService/GetApi` → `gateway.catalog.v1.CatalogService/GetApi`.
fn full_name(rpc: &str) -> String {
    let service = rpc.split('/').next().unwrap();
    let package = service.trim_end_matches("Service").to_lowercase();
    format!("gateway.{package}.v1.{rpc}")
}

async fn channel_for(suite: &TestSuite, rpc: &str) -> tonic::transport::Channel {
    let addresses = &suite.addresses;
    let addr = match rpc.split('/').next().unwrap() {
        "IdentityService" => addresses.identity,
        "CatalogService" => addresses.catalog,
        "QuotaService" => addresses.quota,
        "UsageService" => addresses.usage,
        other => panic!("no address for {other}"),
    };
    suite.channel(addr).await
}

#[test]
fn every_rpc_has_exactly_one_entry() {
    let named: Vec<String> = MATRIX.iter().map(|(rpc, _)| full_name(rpc)).collect();
    for rpc in call::every_rpc() {
        let entries = named.iter().filter(|name| **name == rpc).count();
        assert_eq!(entries, 1, "{rpc} needs one isolation entry, has {entries}");
    }
    for (rpc, probe) in MATRIX {
        call::method(&full_name(rpc));
        if let Probe::Exempt(why) = probe {
            assert!(!why.is_empty(), "{rpc}: an exemption says why");
        }
    }
}

/// Runs every probe of the matrix as `caller`'s admin against `victim`.
async fn probe_all(suite: &TestSuite, caller: &Fixtures, victim: &Fixtures) {
    for (rpc, probe) in MATRIX {
        let template = match probe {
            Probe::Refused(template) | Probe::Read(template) | Probe::List(template) => template,
            Probe::Exempt(_) => continue,
        };
        let request = fill(&serde_json::from_str(template).unwrap(), victim, caller);
        let channel = channel_for(suite, rpc).await;
        let name = full_name(rpc);
        let answer = call(&channel, &caller.admin, &name, &request).await;
        match probe {
            Probe::List(_) => {
                if let Ok(answer) = &answer {
                    assert_shows_nothing_of(victim, rpc, answer);
                }
                let root = call(&channel, &superadmin(), &name, &request).await;
                let root = root.unwrap_or_else(|status| panic!("{rpc} as superadmin: {status:?}"));
                assert!(
                    victim
                        .secrets()
                        .any(|id| root.to_string().contains(id.as_str())),
                    "{rpc}: the superadmin's list shows none of the fixtures, so the probe proves nothing: {root}"
                );
            }
            _ => assert_refused(rpc, &answer),
        }
        if let Probe::Read(_) = probe {
            let own = call(&channel, &victim.admin, &name, &request).await;
            assert!(own.is_ok(), "{rpc}: the owner's same call fails: {own:?}");
        }
    }
}

fn assert_refused(rpc: &str, answer: &Result<Value, tonic::Status>) {
    match answer {
        Err(status) if matches!(status.code(), Code::NotFound | Code::PermissionDenied) => {}
        other => {
            panic!("{rpc} across tenants: expected NOT_FOUND or PERMISSION_DENIED, got {other:?}")
        }
    }
}

fn assert_shows_nothing_of(victim: &Fixtures, rpc: &str, answer: &Value) {
    let text = answer.to_string();
    for id in victim.secrets() {
        assert!(
            !text.contains(id.as_str()),
            "{rpc} shows the other tenant's {id}: {text}"
        );
    }
}

async fn isolation_holds_for_every_rpc_both_ways(backend: Backend) {
    let Some(suite) = TestSuite::start(backend).await else {
        return;
    };
    let acme_tenant = suite.tenant("acme").await;
    let globex_tenant = suite.tenant("globex").await;
    let acme = fixtures::make(&suite, "acme", &acme_tenant).await;
    let globex = fixtures::make(&suite, "globex", &globex_tenant).await;
    let before = (
        fixtures::state(&suite, &acme).await,
        fixtures::state(&suite, &globex).await,
    );
    probe_all(&suite, &globex, &acme).await;
    probe_all(&suite, &acme, &globex).await;
    let after = (
        fixtures::state(&suite, &acme).await,
        fixtures::state(&suite, &globex).await,
    );
    assert_eq!(before.0, after.0, "acme changed under globex's probes");
    assert_eq!(before.1, after.1, "globex changed under acme's probes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolation_holds_for_every_rpc_both_ways_on_sqlite() {
    isolation_holds_for_every_rpc_both_ways(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolation_holds_for_every_rpc_both_ways_on_postgres() {
    isolation_holds_for_every_rpc_both_ways(Backend::Postgres).await;
}
