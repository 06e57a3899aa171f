//! Budget leases: a caller with room in every limit and on its balance is
//! admitted from slices the edge leased, without a quota call per request,
//! and billed exactly: once the slices go back, the balance is the credit
//! less the cost of every request, and the ledger has fewer debits than
//! there were requests.

use gateway_proto::quota::v1 as quota;

use super::*;

async fn usage_debits(suite: &TestSuite, tenant: &TenantFixture) -> usize {
    let mut quota_admin = suite
        .quota_as(Credentials::bearer(&tenant.admin_token))
        .await;
    let entries = quota_admin
        .list_ledger_entries(quota::ListLedgerEntriesRequest {
            owner: admin_balance(tenant),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    entries
        .iter()
        .filter(|entry| entry.amount_micros < 0)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_roomy_caller_is_admitted_from_leased_budget_and_billed_exactly() {
    let suite = TestSuite::start(Backend::Sqlite).await.unwrap();
    let (acme, _gpt, key) = served_tenant(&suite, "acme", Behaviour::Answer, 10_000_000).await;
    let (client, edge) = (http_client(), suite.addresses.edge);
    const REQUESTS: usize = 40;
    for _ in 0..REQUESTS {
        let answer = post(
            &client,
            edge,
            Some(&key),
            chat(false, serde_json::json!({})),
        )
        .await;
        assert_eq!(answer.0, StatusCode::OK, "{answer:?}");
    }
    let events = ai_events(&suite, &acme, REQUESTS).await;
    assert_eq!(events.len(), REQUESTS);
    let spent: i64 = events.iter().map(|event| event.cost_micros).sum();
    // The budget goes back within its lifetime; then every cent is there.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (left, reserved) = balance(&suite, &acme).await;
        if reserved == 0 && left == 10_000_000 - spent {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "balance {left}, reserved {reserved}, expected {}",
            10_000_000 - spent
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let debits = usage_debits(&suite, &acme).await;
    assert!(debits < REQUESTS, "{debits} debits: admitted from a lease");
    suite.stop().await.unwrap();
}
