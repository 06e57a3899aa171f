//! Operator channels: a superadmin offers a channel of the system tenant
//! to listed tenants; they reach it after their own channels and pay the
//! global prices, while tenants not listed, and the operator's own
//! callers, see nothing of it or of the tenants' channels.

use super::*;

/// The bootstrap superadmin's token and user id.
async fn superadmin(suite: &TestSuite) -> (String, String) {
    let mut identity = suite.identity_as(Credentials::admin_key()).await;
    let login = identity
        .login(id::LoginRequest {
            tenant_slug: "system".to_owned(),
            username: "admin".to_owned(),
            password: gateway_e2e::BOOTSTRAP_PASSWORD.to_owned(),
            method: 0,
        })
        .await
        .unwrap()
        .into_inner();
    (login.access_token, login.user.unwrap_or_default().id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_channels_serve_listed_tenants_at_global_prices_and_nobody_else() {
    let suite = TestSuite::start(Backend::Sqlite).await.unwrap();
    let (operator_token, operator_id) = superadmin(&suite).await;
    let operator = Credentials::bearer(&operator_token);
    let acme = suite.tenant("acme").await;
    let globex = suite.tenant("globex").await;
    let (upstream, operator_mock) = mock::start(Behaviour::Answer).await;
    let shared = cat::Channel {
        provider: cat::Provider::Openai.into(),
        models: vec![MODEL.to_owned()],
        shared_tenant_ids: vec![acme.id.clone()],
        ..channel_named("operator", upstream, 1)
    };

    // A tenant admin may not share a channel.
    let mut acme_catalog = suite
        .catalog_as(Credentials::bearer(&acme.admin_token))
        .await;
    let refused = acme_catalog
        .create_channel(cat::CreateChannelRequest {
            channel: Some(cat::Channel {
                shared_tenant_ids: vec![globex.id.clone()],
                ..shared.clone()
            }),
            secret: "sk-x".to_owned(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");

    let mut operator_catalog = suite.catalog_as(operator).await;
    let offered = operator_catalog
        .create_channel(cat::CreateChannelRequest {
            channel: Some(shared),
            secret: "sk-operator".to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
        .channel
        .unwrap();
    // The global price: what acme pays on the operator's channel.
    operator_catalog
        .create_model_price(cat::CreateModelPriceRequest {
            model_price: Some(cat::ModelPrice {
                model: MODEL.to_owned(),
                input_micros_per_million_tokens: INPUT_PRICE,
                output_micros_per_million_tokens: OUTPUT_PRICE,
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let listed = acme_catalog
        .list_channels(cat::ListChannelsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .channels;
    assert!(listed.is_empty(), "tenants do not list operator channels");
    let seen = acme_catalog
        .get_channel(cat::GetChannelRequest {
            id: offered.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(seen.code(), tonic::Code::NotFound);

    credit(&suite, &acme, 10_000_000).await;
    let acme_key = key(&suite, &acme, None).await;
    let globex_key = key(&suite, &globex, None).await;
    let edge = suite.addresses.edge;
    until_served(&http_client(), edge, &acme_key).await;
    let answer = post(
        &http_client(),
        edge,
        Some(&acme_key),
        chat(false, serde_json::json!({})),
    )
    .await;
    assert_eq!(answer.0, StatusCode::OK, "{answer:?}");
    assert_eq!(operator_mock.received().len(), 1);
    assert_eq!(
        operator_mock.received()[0].headers["authorization"],
        "Bearer sk-operator"
    );
    let events = ai_events(&suite, &acme, 1).await;
    let event = &events[0];
    assert_eq!(event.channel_id, offered.id);
    assert_eq!(
        event.cost_micros,
        cost(event.prompt_tokens, event.completion_tokens)
    );

    // globex is not listed: the model does not exist for it.
    assert_eq!(listed_models(edge, &globex_key).await, 0);
    let refused = post(
        &http_client(),
        edge,
        Some(&globex_key),
        chat(false, serde_json::json!({})),
    )
    .await;
    assert_eq!(refused.0, StatusCode::NOT_FOUND, "{refused:?}");

    // acme's own channel wins; the operator's callers never reach it.
    let (own, own_mock) = mock::start(Behaviour::Answer).await;
    channel(&suite, &acme, "own", own, 1).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while own_mock.received().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the own channel never served"
        );
        post(
            &http_client(),
            edge,
            Some(&acme_key),
            chat(false, serde_json::json!({})),
        )
        .await;
    }
    let before = operator_mock.received().len();
    post(
        &http_client(),
        edge,
        Some(&acme_key),
        chat(false, serde_json::json!({})),
    )
    .await;
    assert_eq!(operator_mock.received().len(), before, "own channels win");
    let own_calls = own_mock.received().len();
    let operator_key = operator_key(&suite, &operator_token, &operator_id).await;
    for _ in 0..3 {
        let answer = post(
            &http_client(),
            edge,
            Some(&operator_key),
            chat(false, serde_json::json!({})),
        )
        .await;
        assert_eq!(
            answer.0,
            StatusCode::OK,
            "the operator reaches its own channel: {answer:?}"
        );
    }
    assert_eq!(operator_mock.received().len(), before + 3);
    assert_eq!(own_mock.received().len(), own_calls, "never acme's channel");

    // Offered to every tenant, globex reaches it too.
    operator_catalog
        .update_channel(cat::UpdateChannelRequest {
            channel: Some(cat::Channel {
                id: offered.id.clone(),
                shared_with_all_tenants: true,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["shared_with_all_tenants".to_owned()],
            }),
            secret: None,
        })
        .await
        .unwrap();
    credit(&suite, &globex, 10_000_000).await;
    until_served(&http_client(), edge, &globex_key).await;
    let answer = post(
        &http_client(),
        edge,
        Some(&globex_key),
        chat(false, serde_json::json!({})),
    )
    .await;
    assert_eq!(answer.0, StatusCode::OK, "{answer:?}");
    suite.stop().await.unwrap();
}

async fn listed_models(edge: SocketAddr, key: &str) -> usize {
    models(&http_client(), edge, key).await["data"]
        .as_array()
        .map_or(0, Vec::len)
}

/// A personal key of the superadmin, its balance credited.
async fn operator_key(suite: &TestSuite, token: &str, user_id: &str) -> String {
    use gateway_proto::quota::v1 as quota;
    let mut quota_admin = suite.quota_as(Credentials::bearer(token)).await;
    quota_admin
        .adjust_balance(quota::AdjustBalanceRequest {
            owner: Some(quota::BalanceOwner {
                kind: quota::BalanceOwnerKind::User.into(),
                id: user_id.to_owned(),
            }),
            amount_micros: 10_000_000,
            reason: "test credit".to_owned(),
            idempotency_key: uuid::Uuid::now_v7().to_string(),
        })
        .await
        .unwrap();
    let api_key = id::ApiKey {
        name: "operator".to_owned(),
        ..Default::default()
    };
    key_with(suite, token, api_key).await
}
