use super::*;

fn policy(vary: &[&str]) -> CachePolicy {
    CachePolicy::compile(
        Some(&pb::CachePolicy {
            enabled: true,
            ttl: Some(prost_types::Duration {
                seconds: 60,
                nanos: 0,
            }),
            vary_headers: vary.iter().map(|name| (*name).to_owned()).collect(),
            ..Default::default()
        }),
        Arc::default(),
    )
    .unwrap()
}

fn lookup<'a>(api_id: &'a str, path: &'a str, headers: &'a HeaderMap) -> Lookup<'a> {
    Lookup {
        api_id,
        method: &Method::GET,
        path,
        query: None,
        headers,
    }
}

fn answer(body: &'static str, pairs: &[(&'static str, &'static str)]) -> Response<EdgeBody> {
    let mut response = Response::new(crate::body::full(Bytes::from_static(body.as_bytes())));
    for (name, value) in pairs {
        response
            .headers_mut()
            .append(*name, HeaderValue::from_static(value));
    }
    response
}

/// A miss, answered with `body` and read to its end (so it is stored).
async fn fill(
    cache: &ResponseCache,
    policy: &CachePolicy,
    lookup: &Lookup<'_>,
    body: &'static str,
) {
    let Consulted::Miss(Some(fill)) = cache.consult(policy, lookup, Duration::ZERO).await else {
        panic!("expected a miss that fills");
    };
    let kept = fill.keep(answer(body, &[("etag", "\"v1\"")]));
    kept.into_body().collect().await.unwrap();
}

async fn hit_body(
    cache: &ResponseCache,
    policy: &CachePolicy,
    lookup: &Lookup<'_>,
) -> Option<Bytes> {
    match cache.consult(policy, lookup, Duration::ZERO).await {
        Consulted::Hit(entry) => Some(
            entry
                .answer(&Method::GET, lookup.headers)
                .into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes(),
        ),
        _ => None,
    }
}

#[tokio::test]
async fn a_stored_answer_is_served_to_the_same_api_and_path_only() {
    let cache = ResponseCache::new(1 << 20, 1 << 16);
    let policy = policy(&[]);
    let headers = HeaderMap::new();
    fill(&cache, &policy, &lookup("api-a", "/items", &headers), "a").await;
    assert_eq!(
        hit_body(&cache, &policy, &lookup("api-a", "/items", &headers))
            .await
            .as_deref(),
        Some(&b"a"[..])
    );
    assert!(
        hit_body(&cache, &policy, &lookup("api-b", "/items", &headers))
            .await
            .is_none()
    );
    assert!(
        hit_body(&cache, &policy, &lookup("api-a", "/other", &headers))
            .await
            .is_none()
    );
}

#[tokio::test]
async fn vary_headers_split_the_key_and_the_upstreams_vary_is_honoured() {
    let cache = ResponseCache::new(1 << 20, 1 << 16);
    let policy = policy(&["accept-language"]);
    let mut english = HeaderMap::new();
    english.insert("accept-language", HeaderValue::from_static("en"));
    let mut french = HeaderMap::new();
    french.insert("accept-language", HeaderValue::from_static("fr"));
    fill(&cache, &policy, &lookup("api", "/", &english), "hello").await;
    assert!(
        hit_body(&cache, &policy, &lookup("api", "/", &english))
            .await
            .is_some()
    );
    assert!(
        hit_body(&cache, &policy, &lookup("api", "/", &french))
            .await
            .is_none()
    );

    // The upstream's own Vary: a different Accept is not served.
    let mut json = HeaderMap::new();
    json.insert("accept", HeaderValue::from_static("application/json"));
    let Consulted::Miss(Some(fill)) = cache
        .consult(&policy, &lookup("api", "/doc", &json), Duration::ZERO)
        .await
    else {
        panic!("miss");
    };
    let kept = fill.keep(answer("{}", &[("vary", "Accept")]));
    kept.into_body().collect().await.unwrap();
    assert!(
        hit_body(&cache, &policy, &lookup("api", "/doc", &json))
            .await
            .is_some()
    );
    let mut xml = HeaderMap::new();
    xml.insert("accept", HeaderValue::from_static("text/xml"));
    assert!(
        hit_body(&cache, &policy, &lookup("api", "/doc", &xml))
            .await
            .is_none()
    );
}

#[tokio::test]
async fn a_write_invalidates_the_path_under_every_query() {
    let cache = ResponseCache::new(1 << 20, 1 << 16);
    let policy = policy(&[]);
    let headers = HeaderMap::new();
    let paged = Lookup {
        query: Some("page=2"),
        ..lookup("api", "/items", &headers)
    };
    fill(&cache, &policy, &paged, "page two").await;
    fill(&cache, &policy, &lookup("api", "/other", &headers), "other").await;
    cache.invalidate("api", "/items");
    assert!(hit_body(&cache, &policy, &paged).await.is_none());
    assert!(
        hit_body(&cache, &policy, &lookup("api", "/other", &headers))
            .await
            .is_some()
    );
    // Stored again after the write, it is served again.
    fill(&cache, &policy, &paged, "fresh").await;
    assert_eq!(
        hit_body(&cache, &policy, &paged).await.as_deref(),
        Some(&b"fresh"[..])
    );
}

#[tokio::test]
async fn a_fetch_that_started_before_a_write_is_not_stored_as_fresh() {
    let cache = ResponseCache::new(1 << 20, 1 << 16);
    let policy = policy(&[]);
    let headers = HeaderMap::new();
    let Consulted::Miss(Some(fill)) = cache
        .consult(&policy, &lookup("api", "/items", &headers), Duration::ZERO)
        .await
    else {
        panic!("miss");
    };
    cache.invalidate("api", "/items");
    fill.keep(answer("old", &[]))
        .into_body()
        .collect()
        .await
        .unwrap();
    assert!(
        hit_body(&cache, &policy, &lookup("api", "/items", &headers))
            .await
            .is_none()
    );
}

#[tokio::test]
async fn concurrent_misses_wait_for_the_first_fetch() {
    let cache = ResponseCache::new(1 << 20, 1 << 16);
    let policy = Arc::new(policy(&[]));
    let headers = HeaderMap::new();
    let Consulted::Miss(Some(fill)) = cache
        .consult(&policy, &lookup("api", "/slow", &headers), Duration::ZERO)
        .await
    else {
        panic!("miss");
    };
    let follower = {
        let (cache, policy) = (cache.clone(), Arc::clone(&policy));
        tokio::spawn(async move {
            let headers = HeaderMap::new();
            matches!(
                cache
                    .consult(
                        &policy,
                        &lookup("api", "/slow", &headers),
                        Duration::from_secs(10)
                    )
                    .await,
                Consulted::Hit(_)
            )
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!follower.is_finished(), "the follower waits for the leader");
    fill.keep(answer("once", &[]))
        .into_body()
        .collect()
        .await
        .unwrap();
    assert!(follower.await.unwrap(), "and is served what it stored");
}

#[tokio::test]
async fn uncacheable_answers_release_followers_without_storing() {
    let cache = ResponseCache::new(1 << 20, 1 << 16);
    let policy = policy(&[]);
    let headers = HeaderMap::new();
    let Consulted::Miss(Some(fill)) = cache
        .consult(&policy, &lookup("api", "/", &headers), Duration::ZERO)
        .await
    else {
        panic!("miss");
    };
    drop(fill.keep(answer("x", &[("cache-control", "no-store")])));
    // The key is free again: the next miss leads.
    assert!(matches!(
        cache
            .consult(&policy, &lookup("api", "/", &headers), Duration::ZERO)
            .await,
        Consulted::Miss(Some(_))
    ));
}

#[tokio::test]
async fn bodies_over_the_cap_and_request_directives_are_respected() {
    let cache = ResponseCache::new(1 << 20, 4);
    let policy = policy(&[]);
    let headers = HeaderMap::new();
    fill(
        &cache,
        &policy,
        &lookup("api", "/big", &headers),
        "too long",
    )
    .await;
    assert!(
        hit_body(&cache, &policy, &lookup("api", "/big", &headers))
            .await
            .is_none()
    );

    fill(&cache, &policy, &lookup("api", "/small", &headers), "ok").await;
    let mut no_cache = HeaderMap::new();
    no_cache.insert("cache-control", HeaderValue::from_static("no-cache"));
    assert!(matches!(
        cache
            .consult(&policy, &lookup("api", "/small", &no_cache), Duration::ZERO)
            .await,
        Consulted::Miss(_)
    ));
    let mut only = HeaderMap::new();
    only.insert("cache-control", HeaderValue::from_static("only-if-cached"));
    assert!(matches!(
        cache
            .consult(&policy, &lookup("api", "/none", &only), Duration::ZERO)
            .await,
        Consulted::Absent
    ));
}

#[tokio::test]
async fn conditional_requests_get_304_from_the_stored_validators() {
    let cache = ResponseCache::new(1 << 20, 1 << 16);
    let policy = policy(&[]);
    let headers = HeaderMap::new();
    fill(&cache, &policy, &lookup("api", "/", &headers), "body").await;
    let Consulted::Hit(entry) = cache
        .consult(&policy, &lookup("api", "/", &headers), Duration::ZERO)
        .await
    else {
        panic!("hit");
    };
    let mut conditional = HeaderMap::new();
    conditional.insert("if-none-match", HeaderValue::from_static("\"v1\""));
    let answer = entry.answer(&Method::GET, &conditional);
    assert_eq!(answer.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(answer.headers()["etag"], "\"v1\"");
    assert_eq!(answer.headers()[X_CACHE], "HIT");
    assert!(answer.headers().contains_key(header::AGE));
    let head = entry.answer(&Method::HEAD, &headers);
    assert_eq!(head.status(), StatusCode::OK);
    assert!(
        head.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .is_empty()
    );
}

#[test]
fn the_byte_bound_evicts() {
    let cache = ResponseCache::new(64 * 1024, 1 << 20);
    for index in 0..64 {
        let entry = Entry {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: Bytes::from(vec![0_u8; 4096]),
            stored: Instant::now(),
            aged: Duration::ZERO,
            lifetime: Duration::from_secs(60),
            seq: 1,
            path_key: String::new(),
            varies: Vec::new(),
        };
        cache
            .inner
            .entries
            .insert(format!("k{index}"), Arc::new(entry));
    }
    let snapshot = cache.snapshot();
    assert!(
        snapshot["bytes"].as_u64().unwrap() <= 64 * 1024,
        "{snapshot}"
    );
    assert!(snapshot["entries"].as_u64().unwrap() < 64, "{snapshot}");
}

#[test]
fn only_get_and_head_compile() {
    let only_post = pb::CachePolicy {
        enabled: true,
        methods: vec!["POST".to_owned()],
        ..Default::default()
    };
    assert!(CachePolicy::compile(Some(&only_post), Arc::default()).is_none());
    let compiled = CachePolicy::compile(
        Some(&pb::CachePolicy {
            enabled: true,
            ..Default::default()
        }),
        Arc::default(),
    )
    .unwrap();
    assert!(compiled.applies(&Method::HEAD) && !compiled.applies(&Method::POST));
    assert_eq!(compiled.ttl, DEFAULT_TTL);
}
