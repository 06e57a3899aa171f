//! The completion cache: opted in by a key, a group or a channel; a
//! repeated request is answered by the edge (JSON or a well-formed stream,
//! in any protocol) without calling the provider, billed at the hit's
//! share of the price and marked in usage; entries expire, never cross
//! tenants, and are shared by edges through Redis.

use super::translation::answer_text;
use super::*;

/// A key of the tenant's admin that opts in to the cache (`group_id` to
/// route through one group).
async fn cached_key(suite: &TestSuite, tenant: &TenantFixture, group_id: Option<String>) -> String {
    let api_key = id::ApiKey {
        name: "cached".to_owned(),
        group_id,
        completion_cache: true,
        ..Default::default()
    };
    key_with(suite, &tenant.admin_token, api_key).await
}

fn asking(text: &str, stream: bool) -> serde_json::Value {
    serde_json::json!({"model": MODEL, "max_tokens": 50, "stream": stream,
        "messages": [{"role": "user", "content": text}]})
}

async fn ask(
    edge: SocketAddr,
    key: &str,
    body: serde_json::Value,
    headers: &[(&str, &str)],
) -> Answer {
    let bearer = format!("Bearer {key}");
    let mut all = vec![("authorization", bearer.as_str())];
    all.extend_from_slice(headers);
    post_json(&http_client(), edge, "/v1/chat/completions", &all, body).await
}

fn x_cache(answer: &Answer) -> &str {
    answer
        .1
        .get("x-cache")
        .map_or("", |value| value.to_str().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_requests_are_answered_from_the_cache_in_any_shape_until_they_expire() {
    let suite = TestSuite::start_with(Backend::Sqlite, |config| {
        config.edge.ai_cache_ttl_secs = 2;
    })
    .await
    .unwrap();
    let (acme, acme_mock, plain_key) =
        served_tenant(&suite, "acme", Behaviour::Answer, 10_000_000).await;
    let key = cached_key(&suite, &acme, None).await;
    let edge = suite.addresses.edge;
    let calls = || acme_mock.received().len();

    let first = ask(edge, &key, asking("Say hello.", false), &[]).await;
    assert_eq!(
        (first.0, x_cache(&first)),
        (StatusCode::OK, "MISS"),
        "{first:?}"
    );
    assert_eq!(calls(), 1);
    let again = ask(edge, &key, asking("Say hello.", false), &[]).await;
    assert_eq!(
        (again.0, x_cache(&again)),
        (StatusCode::OK, "HIT"),
        "{again:?}"
    );
    assert_eq!(calls(), 1, "a hit never reaches the provider");
    assert_eq!(answer_text("openai", &again), providers::TEXT);
    assert_eq!(json(&again)["usage"], json(&first)["usage"]);
    assert_ne!(
        json(&again)["id"],
        json(&first)["id"],
        "each answer has its own id"
    );

    // A streamed request is served from the JSON answer as a whole stream.
    let streamed = ask(edge, &key, asking("Say hello.", true), &[]).await;
    assert_eq!(x_cache(&streamed), "HIT");
    assert_eq!(streamed.1["content-type"], "text/event-stream");
    assert_eq!(answer_text("openai", &streamed), providers::TEXT);
    let events = String::from_utf8_lossy(&streamed.2).into_owned();
    assert!(events.contains("\"finish_reason\":\"stop\""), "{events}");
    assert!(events.ends_with("data: [DONE]\n\n"), "{events}");
    // And Anthropic's client, asking the same, gets it in its own shape.
    let anthropic = anthropic_post(&http_client(), edge, &key, asking("Say hello.", true)).await;
    assert_eq!(x_cache(&anthropic), "HIT", "{anthropic:?}");
    assert_eq!(answer_text("anthropic", &anthropic), providers::TEXT);
    assert!(String::from_utf8_lossy(&anthropic.2).contains("event: message_stop"));
    assert_eq!(calls(), 1);

    // A stream fills the cache for a JSON request.
    let told = ask(edge, &key, asking("Tell me more.", true), &[]).await;
    assert_eq!(x_cache(&told), "MISS");
    let retold = ask(edge, &key, asking("Tell me more.", false), &[]).await;
    assert_eq!(x_cache(&retold), "HIT", "{retold:?}");
    assert_eq!(answer_text("openai", &retold), answer_text("openai", &told));
    assert_eq!(calls(), 2);

    // Not for a key that did not opt in, nor when the client says no-cache.
    let plain = ask(edge, &plain_key, asking("Say hello.", false), &[]).await;
    assert_eq!((plain.0, x_cache(&plain)), (StatusCode::OK, ""));
    let fresh = ask(
        edge,
        &key,
        asking("Say hello.", false),
        &[("cache-control", "no-cache")],
    )
    .await;
    assert_eq!(x_cache(&fresh), "MISS");
    assert_eq!(calls(), 4);

    // Another tenant asking the same is never served acme's answer.
    let (globex, globex_mock, _) =
        served_tenant(&suite, "globex", Behaviour::Answer, 10_000_000).await;
    let globex_key = cached_key(&suite, &globex, None).await;
    let theirs = ask(edge, &globex_key, asking("Say hello.", false), &[]).await;
    assert_eq!((theirs.0, x_cache(&theirs)), (StatusCode::OK, "MISS"));
    assert_eq!(globex_mock.received().len(), 1);

    // Expired after the TTL.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let later = ask(edge, &key, asking("Say hello.", false), &[]).await;
    assert_eq!(x_cache(&later), "MISS");
    assert_eq!(calls(), 5);

    // Hits are free (the default share), keep their tokens, name no channel.
    let events = ai_events(&suite, &acme, 9).await;
    let (hits, misses): (Vec<_>, Vec<_>) = events.iter().partition(|event| event.cache_hit);
    assert_eq!((hits.len(), misses.len()), (4, 5), "{events:?}");
    for hit in &hits {
        assert_eq!(hit.cost_micros, 0, "{hit:?}");
        assert!(
            hit.completion_tokens > 0 && hit.channel_id.is_empty(),
            "{hit:?}"
        );
        assert_eq!(hit.status, 200);
    }
    assert!(misses.iter().all(|miss| miss.cost_micros > 0), "{misses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_or_a_channel_opts_its_traffic_in() {
    let suite = TestSuite::start(Backend::Sqlite).await.unwrap();
    let edge = suite.addresses.edge;

    // acme: the key's group opts in.
    let acme = suite.tenant("acme").await;
    let (acme_upstream, acme_mock) = mock::start(Behaviour::Answer).await;
    create_channel(&suite, &acme, openai_channel(acme_upstream)).await;
    price(&suite, &acme).await;
    let group = cached_group(&suite, &acme).await;
    assert!(group.completion_cache);
    let group_key = key_in_group(&suite, &acme, &group.id).await;
    until_served(&http_client(), edge, &group_key).await;
    ask(edge, &group_key, asking("Group?", false), &[]).await;
    let hit = ask(edge, &group_key, asking("Group?", false), &[]).await;
    assert_eq!(x_cache(&hit), "HIT", "{hit:?}");
    assert_eq!(acme_mock.received().len(), 1);

    // globex: a key that did not opt in, once its channel does.
    let globex = suite.tenant("globex").await;
    let (upstream, mock) = mock::start(Behaviour::Answer).await;
    let channel_id = create_channel(&suite, &globex, openai_channel(upstream)).await;
    price(&suite, &globex).await;
    credit(&suite, &globex, 10_000_000).await;
    let plain = key(&suite, &globex, None).await;
    until_served(&http_client(), edge, &plain).await;
    for _ in 0..2 {
        let answer = ask(edge, &plain, asking("Channel?", false), &[]).await;
        assert_eq!((answer.0, x_cache(&answer)), (StatusCode::OK, ""));
    }
    let mut catalog = suite
        .catalog_as(Credentials::bearer(&globex.admin_token))
        .await;
    let updated = catalog
        .update_channel(cat::UpdateChannelRequest {
            channel: Some(cat::Channel {
                id: channel_id,
                completion_cache: true,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["completion_cache".to_owned()],
            }),
            secret: None,
        })
        .await
        .unwrap()
        .into_inner()
        .channel
        .unwrap();
    assert!(updated.completion_cache && updated.enabled, "{updated:?}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while x_cache(&ask(edge, &plain, asking("Channel?", false), &[]).await) != "HIT" {
        assert!(
            std::time::Instant::now() < deadline,
            "the channel's opt-in never applied"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let misses = mock.received().len();
    assert!(misses >= 3, "the first after the opt-in fills it");
    ask(edge, &plain, asking("Channel?", false), &[]).await;
    assert_eq!(mock.received().len(), misses);
}

fn openai_channel(upstream: SocketAddr) -> cat::Channel {
    cat::Channel {
        provider: cat::Provider::Openai.into(),
        models: vec![MODEL.to_owned()],
        ..channel_named("mock", upstream, 1)
    }
}

/// A group of the tenant that opts in, with the tenant's admin in it.
async fn cached_group(suite: &TestSuite, tenant: &TenantFixture) -> id::Group {
    let mut identity = suite
        .identity_as(Credentials::bearer(&tenant.admin_token))
        .await;
    let group = identity
        .create_group(id::CreateGroupRequest {
            group: Some(id::Group {
                name: "cached".to_owned(),
                completion_cache: true,
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .group
        .unwrap();
    identity
        .add_group_member(id::AddGroupMemberRequest {
            group_id: group.id.clone(),
            user_id: tenant.admin_id.clone(),
        })
        .await
        .unwrap();
    group
}

async fn key_in_group(suite: &TestSuite, tenant: &TenantFixture, group_id: &str) -> String {
    let api_key = id::ApiKey {
        name: "grouped".to_owned(),
        group_id: Some(group_id.to_owned()),
        ..Default::default()
    };
    key_with(suite, &tenant.admin_token, api_key).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edges_share_the_cache_through_redis_and_a_failing_redis_is_a_miss() {
    let Some(redis_url) = gateway_testkit::server_url(gateway_testkit::REDIS_URL_ENV) else {
        return;
    };
    let shared = redis_url.clone();
    let suite = TestSuite::start_with(Backend::Sqlite, move |config| {
        config.edge.ai_cache_redis_url = shared;
    })
    .await
    .unwrap();
    let (acme, mock, _) = served_tenant(&suite, "acme", Behaviour::Answer, 10_000_000).await;
    let key = cached_key(&suite, &acme, None).await;
    let shutdown = gateway_runtime::CancellationToken::new();
    let grace = Duration::from_secs(1);
    let other = edge_support::side_edge(&suite, &shutdown, grace, |config| {
        config.ai_cache_redis_url = redis_url;
        config.ai_cache_hit_cost_percent = 50;
    })
    .await;
    let broken = edge_support::side_edge(&suite, &shutdown, grace, |config| {
        config.ai_cache_redis_url = "redis://127.0.0.1:1".to_owned();
    })
    .await;
    until_served(&http_client(), other.addr, &key).await;
    until_served(&http_client(), broken.addr, &key).await;

    let first = ask(suite.addresses.edge, &key, asking("Shared?", false), &[]).await;
    assert_eq!(x_cache(&first), "MISS");
    // Stored in the background: the other edge finds it soon after.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let hit = loop {
        let answer = ask(other.addr, &key, asking("Shared?", false), &[]).await;
        if x_cache(&answer) == "HIT" {
            break answer;
        }
        assert!(std::time::Instant::now() < deadline, "{answer:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(answer_text("openai", &hit), providers::TEXT);
    let calls = mock.received().len();
    let served = ask(broken.addr, &key, asking("Shared?", false), &[]).await;
    assert_eq!(
        (served.0, x_cache(&served)),
        (StatusCode::OK, "MISS"),
        "{served:?}"
    );
    assert_eq!(mock.received().len(), calls + 1, "served by the provider");

    let events = ai_events(&suite, &acme, calls + 2).await;
    let full = events
        .iter()
        .find(|event| !event.cache_hit)
        .unwrap()
        .cost_micros;
    let hit = events.iter().find(|event| event.cache_hit).unwrap();
    assert_eq!(
        hit.cost_micros,
        full * 50 / 100,
        "a hit costs the configured share"
    );
    shutdown.cancel();
}
