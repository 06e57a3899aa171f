//! Every catalog RPC through a real tonic client, with identity running
//! beside it, on SQLite and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use gateway_proto::catalog::v1 as pb;
use gateway_proto::catalog::v1::watch_snapshot_response::Event;
use gateway_testkit::TestDatabase;
use prost_types::FieldMask;
use support::{Suite, code};
use tokio_stream::StreamExt as _;
use tonic::Code;

fn mask(paths: &[&str]) -> Option<FieldMask> {
    Some(FieldMask {
        paths: paths.iter().map(|path| (*path).to_owned()).collect(),
    })
}

fn api(slug: &str) -> pb::Api {
    pb::Api {
        name: "Orders".to_owned(),
        slug: slug.to_owned(),
        upstreams: vec![pb::UpstreamTarget {
            url: "http://127.0.0.1:9000/v1".to_owned(),
            weight: 1,
        }],
        upstream_auth: Some(pb::UpstreamAuth {
            header_name: "x-upstream-key".to_owned(),
            secret_hint: String::new(),
        }),
        enabled: true,
        ..Default::default()
    }
}

fn create_api(slug: &str, secret: &str) -> pb::CreateApiRequest {
    pb::CreateApiRequest {
        api: Some(api(slug)),
        upstream_auth_secret: secret.to_owned(),
    }
}

fn channel(name: &str, groups: Vec<String>) -> pb::CreateChannelRequest {
    pb::CreateChannelRequest {
        channel: Some(pb::Channel {
            name: name.to_owned(),
            provider: pb::Provider::Openai.into(),
            base_url: "https://api.openai.example".to_owned(),
            models: vec!["gpt-4o".to_owned(), "gpt-4o-mini".to_owned()],
            model_mapping: [("gpt-4o".to_owned(), "gpt-4o-2024-08-06".to_owned())].into(),
            weight: 10,
            priority: 1,
            allowed_group_ids: groups,
            enabled: true,
            ..Default::default()
        }),
        secret: "sk-upstream-provider-key-7890".to_owned(),
    }
}

fn price(tenant_id: &str, model: &str, input: i64, output: i64) -> pb::CreateModelPriceRequest {
    pb::CreateModelPriceRequest {
        model_price: Some(pb::ModelPrice {
            tenant_id: tenant_id.to_owned(),
            model: model.to_owned(),
            input_micros_per_million_tokens: input,
            output_micros_per_million_tokens: output,
            ..Default::default()
        }),
    }
}

async fn suite(db: &TestDatabase) -> Suite {
    let identity_db = if db.is_postgres() {
        TestDatabase::postgres().await.unwrap()
    } else {
        TestDatabase::sqlite().await
    };
    let catalog_db = if db.is_postgres() {
        TestDatabase::postgres().await.unwrap()
    } else {
        TestDatabase::sqlite().await
    };
    Suite::start(identity_db, catalog_db).await
}

/// Every RPC an admin of `this` could aim at `other`'s resources fails as if
/// they did not exist, and changes nothing.
async fn isolated_from(this: &mut support::Tenant, other: &mut support::Tenant) {
    let api = other
        .admin
        .create_api(create_api("private", "their-secret-0000"))
        .await
        .unwrap()
        .into_inner()
        .api
        .unwrap();
    let their_channel = other
        .admin
        .create_channel(channel(&format!("ch-{}", other.slug), vec![]))
        .await
        .unwrap()
        .into_inner()
        .channel
        .unwrap();
    let their_price = other
        .admin
        .create_model_price(price(&other.id, "m", 1, 1))
        .await
        .unwrap()
        .into_inner()
        .model_price
        .unwrap();
    let admin = &mut this.admin;
    assert_eq!(
        code(
            admin
                .get_api(pb::GetApiRequest { id: api.id.clone() })
                .await
        ),
        Code::NotFound
    );
    assert_eq!(
        code(
            admin
                .update_api(pb::UpdateApiRequest {
                    api: Some(pb::Api {
                        id: api.id.clone(),
                        enabled: false,
                        ..Default::default()
                    }),
                    update_mask: mask(&["enabled"]),
                    upstream_auth_secret: None,
                })
                .await
        ),
        Code::NotFound
    );
    assert_eq!(
        code(
            admin
                .delete_api(pb::DeleteApiRequest { id: api.id.clone() })
                .await
        ),
        Code::NotFound
    );
    assert_eq!(
        code(
            admin
                .list_apis(pb::ListApisRequest {
                    tenant_id: other.id.clone(),
                    ..Default::default()
                })
                .await
        ),
        Code::NotFound
    );
    let mut planted = create_api("planted", "");
    planted.api.as_mut().unwrap().tenant_id = other.id.clone();
    assert_eq!(code(admin.create_api(planted).await), Code::NotFound);
    assert_eq!(
        code(
            admin
                .get_channel(pb::GetChannelRequest {
                    id: their_channel.id.clone()
                })
                .await
        ),
        Code::NotFound
    );
    assert_eq!(
        code(
            admin
                .delete_channel(pb::DeleteChannelRequest {
                    id: their_channel.id.clone()
                })
                .await
        ),
        Code::NotFound
    );
    assert_eq!(
        code(
            admin
                .get_model_price(pb::GetModelPriceRequest {
                    id: their_price.id.clone()
                })
                .await
        ),
        Code::NotFound
    );
    assert_eq!(
        code(
            admin
                .delete_model_price(pb::DeleteModelPriceRequest {
                    id: their_price.id.clone()
                })
                .await
        ),
        Code::NotFound
    );
    assert_eq!(
        code(
            admin
                .quote(pb::QuoteRequest {
                    tenant_id: other.id.clone(),
                    model: "m".to_owned(),
                    ..Default::default()
                })
                .await
        ),
        Code::NotFound
    );
    assert!(
        admin
            .list_channels(pb::ListChannelsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .channels
            .iter()
            .all(|c| c.tenant_id == this.id)
    );
    assert!(
        admin
            .list_model_prices(pb::ListModelPricesRequest::default())
            .await
            .unwrap()
            .into_inner()
            .model_prices
            .iter()
            .all(|p| p.tenant_id == this.id || p.tenant_id.is_empty())
    );
    // Untouched on the other side.
    assert!(
        other
            .admin
            .get_api(pb::GetApiRequest { id: api.id.clone() })
            .await
            .unwrap()
            .into_inner()
            .api
            .unwrap()
            .enabled
    );
}

gateway_testkit::test_on_every_backend! {
    async fn apis_are_validated_stored_with_sealed_secrets_and_updated_by_mask(db) {
        let suite = suite(&db).await;
        let mut acme = suite.tenant("acme").await;
        let created = acme.admin.create_api(create_api("orders", "upstream-secret-1234")).await.unwrap().into_inner().api.unwrap();
        assert_eq!(created.tenant_id, acme.id);
        assert_eq!(created.upstream_auth.as_ref().unwrap().secret_hint, "1234");
        assert!(!format!("{created:?}").contains("upstream-secret"));
        assert_eq!(code(acme.admin.create_api(create_api("orders", "")).await), Code::AlreadyExists);

        let mut bad = create_api("bad-regex", "");
        bad.api.as_mut().unwrap().routes.push(pb::RouteRule {
            match_kind: pb::MatchKind::Regex.into(),
            pattern: "^/(unclosed".to_owned(),
            ..Default::default()
        });
        let status = acme.admin.create_api(bad).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().starts_with("api.routes[0].pattern:"), "{}", status.message());
        let mut credentials_in_url = create_api("leaky", "");
        credentials_in_url.api.as_mut().unwrap().upstreams[0].url = "http://user:pw@host/".to_owned();
        let status = acme.admin.create_api(credentials_in_url).await.unwrap_err();
        assert!(status.message().starts_with("api.upstreams[0].url:"), "{}", status.message());
        let mut negative = create_api("negative", "");
        negative.api.as_mut().unwrap().upstreams[0].weight = -5;
        assert!(acme.admin.create_api(negative).await.unwrap_err().message().starts_with("api.upstreams[0].weight:"));

        let renamed = acme.admin
            .update_api(pb::UpdateApiRequest {
                api: Some(pb::Api { id: created.id.clone(), name: "Orders v2".to_owned(), slug: "ignored".to_owned(), ..Default::default() }),
                update_mask: mask(&["name"]),
                upstream_auth_secret: None,
            })
            .await.unwrap().into_inner().api.unwrap();
        assert_eq!((renamed.name.as_str(), renamed.slug.as_str()), ("Orders v2", "orders"));
        assert_eq!(renamed.upstream_auth.unwrap().secret_hint, "1234", "the secret stays when not given");
        let rotated = acme.admin
            .update_api(pb::UpdateApiRequest {
                api: Some(pb::Api { id: created.id.clone(), ..Default::default() }),
                update_mask: mask(&["enabled"]),
                upstream_auth_secret: Some("rotated-secret-9999".to_owned()),
            })
            .await.unwrap().into_inner().api.unwrap();
        assert_eq!(rotated.upstream_auth.unwrap().secret_hint, "9999");
        assert!(!rotated.enabled);
        let unknown = acme.admin
            .update_api(pb::UpdateApiRequest { api: Some(pb::Api { id: created.id.clone(), ..Default::default() }), update_mask: mask(&["tenant_id"]), upstream_auth_secret: None })
            .await.unwrap_err();
        assert!(unknown.message().starts_with("update_mask:"));

        // The edge's snapshot carries the decrypted secret; the database does not.
        let snapshot = suite.catalog_root().await.get_snapshot(pb::GetSnapshotRequest {}).await.unwrap().into_inner().snapshot.unwrap();
        assert_eq!(snapshot.apis.len(), 1);
        assert_eq!(snapshot.apis[0].upstream_auth_secret, "rotated-secret-9999");
        let database = gateway_storage::Database::connect(&suite.catalog_database_url, &Default::default()).await.unwrap();
        let rows: Vec<(Vec<u8>, Option<Vec<u8>>)> = {
            use sqlx::Row as _;
            sqlx::query("SELECT spec, secret FROM entries").fetch_all(database.pool()).await.unwrap()
                .into_iter().map(|row| (row.get("spec"), row.get("secret"))).collect()
        };
        for (spec, secret) in rows {
            let everything = [spec, secret.unwrap_or_default()].concat();
            assert!(!String::from_utf8_lossy(&everything).contains("rotated-secret"));
        }
        // Users see enabled APIs of their tenant only.
        assert!(acme.user.list_apis(pb::ListApisRequest::default()).await.unwrap().into_inner().apis.is_empty());
        assert_eq!(code(acme.user.get_api(pb::GetApiRequest { id: created.id.clone() }).await), Code::NotFound);
        assert_eq!(code(acme.user.create_api(create_api("mine", "")).await), Code::PermissionDenied);
        assert_eq!(code(acme.admin.get_snapshot(pb::GetSnapshotRequest {}).await), Code::PermissionDenied);
        acme.admin.delete_api(pb::DeleteApiRequest { id: created.id.clone() }).await.unwrap();
        assert_eq!(code(acme.admin.get_api(pb::GetApiRequest { id: created.id }).await), Code::NotFound);
    }

    async fn channels_check_their_groups_with_identity(db) {
        let suite = suite(&db).await;
        let mut acme = suite.tenant("acme").await;
        let globex = suite.tenant("globex").await;
        let created = acme.admin.create_channel(channel("openai", vec![acme.group_id.clone()])).await.unwrap().into_inner().channel.unwrap();
        assert_eq!(created.secret_hint, "7890");
        assert_eq!(acme.user.get_channel(pb::GetChannelRequest { id: created.id.clone() }).await.unwrap().into_inner().channel.unwrap(), created);
        let unknown = acme.admin.create_channel(channel("bad", vec!["no-such-group".to_owned()])).await.unwrap_err();
        assert_eq!(unknown.code(), Code::InvalidArgument);
        assert!(unknown.message().starts_with("channel.allowed_group_ids:"), "{}", unknown.message());
        let foreign = acme.admin.create_channel(channel("foreign", vec![globex.group_id.clone()])).await.unwrap_err();
        assert_eq!(foreign.code(), Code::InvalidArgument, "another tenant's group is unknown here");
        let mut no_secret = channel("nokey", vec![]);
        no_secret.secret.clear();
        assert!(acme.admin.create_channel(no_secret).await.unwrap_err().message().starts_with("secret:"));

        let by_model = acme.user
            .list_channels(pb::ListChannelsRequest { model: "gpt-4o-mini".to_owned(), ..Default::default() })
            .await.unwrap().into_inner().channels;
        assert_eq!(by_model.len(), 1);
        let updated = acme.admin
            .update_channel(pb::UpdateChannelRequest {
                channel: Some(pb::Channel { id: created.id.clone(), weight: 3, ..Default::default() }),
                update_mask: mask(&["weight"]),
                secret: Some("sk-new-provider-key-4321".to_owned()),
            })
            .await.unwrap().into_inner().channel.unwrap();
        assert_eq!((updated.weight, updated.secret_hint.as_str(), updated.models.len()), (3, "4321", 2));
        let snapshot = suite.catalog_root().await.get_snapshot(pb::GetSnapshotRequest {}).await.unwrap().into_inner().snapshot.unwrap();
        assert_eq!(snapshot.channels[0].secret, "sk-new-provider-key-4321");
        acme.admin.delete_channel(pb::DeleteChannelRequest { id: created.id }).await.unwrap();
    }

    async fn quotes_use_override_then_tenant_then_global_prices_with_the_multiplier(db) {
        let suite = suite(&db).await;
        let mut acme = suite.tenant("acme").await;
        let mut root = suite.catalog_root().await;
        // Global prices are the superadmin's.
        assert_eq!(code(acme.admin.create_model_price(price("", "gpt-4o", 1, 1)).await), Code::PermissionDenied);
        root.create_model_price(price("", "gpt-4o", 2_500_000, 10_000_000)).await.unwrap();
        assert_eq!(code(root.create_model_price(price("", "gpt-4o", 1, 1)).await), Code::AlreadyExists);
        let quote = |group: &str| pb::QuoteRequest {
            tenant_id: String::new(),
            model: "gpt-4o".to_owned(),
            group_id: group.to_owned(),
            prompt_tokens: 1_000,
            completion_tokens: 500,
            cached_tokens: 0,
        };
        let global = acme.user.quote(quote("")).await.unwrap().into_inner();
        assert_eq!(global.price_source, i32::from(pb::PriceSource::Global));
        // 1000 x 2.5 + 500 x 10 = 7_500_000_000 / 10^6 = 7_500 micro-USD.
        assert_eq!(global.cost_micros, 7_500);

        acme.admin.create_model_price(price(&acme.id, "gpt-4o", 1_000_000, 2_000_000)).await.unwrap();
        let tenant = acme.user.quote(quote("")).await.unwrap().into_inner();
        assert_eq!((tenant.price_source, tenant.cost_micros), (i32::from(pb::PriceSource::Tenant), 2_000));

        let multiplier = acme.admin
            .create_group_multiplier(pb::CreateGroupMultiplierRequest {
                group_multiplier: Some(pb::GroupMultiplier { group_id: acme.group_id.clone(), multiplier_ppm: 1_500_000, ..Default::default() }),
            })
            .await.unwrap().into_inner().group_multiplier.unwrap();
        assert_eq!(acme.user.quote(quote(&acme.group_id)).await.unwrap().into_inner().cost_micros, 3_000);
        acme.admin
            .create_group_price(pb::CreateGroupPriceRequest {
                group_price: Some(pb::GroupPrice {
                    group_id: acme.group_id.clone(),
                    model: "gpt-4o".to_owned(),
                    input_micros_per_million_tokens: 100_000,
                    output_micros_per_million_tokens: 100_000,
                    ..Default::default()
                }),
            })
            .await.unwrap();
        let overridden = acme.user.quote(quote(&acme.group_id)).await.unwrap().into_inner();
        assert_eq!(overridden.price_source, i32::from(pb::PriceSource::GroupOverride));
        // 1500 tokens x 0.1 = 150 x 1.5 = 225.
        assert_eq!((overridden.cost_micros, overridden.multiplier_ppm), (225, 1_500_000));
        // The same numbers from the shared pricing function the edge uses.
        let mut table = gateway_pricing::PriceTable::new();
        table.insert_group_price(acme.group_id.clone(), "gpt-4o", gateway_pricing::Price {
            id: "p".to_owned(), input_micros_per_million: 100_000, output_micros_per_million: 100_000, cached_input_micros_per_million: None,
        });
        table.insert_group_multiplier(acme.group_id.clone(), 1_500_000);
        let usage = gateway_pricing::Usage { prompt_tokens: 1_000, completion_tokens: 500, cached_tokens: 0 };
        assert_eq!(table.quote(&acme.id, Some(&acme.group_id), "gpt-4o", &usage).unwrap().cost_micros, overridden.cost_micros);

        assert_eq!(code(acme.user.quote(pb::QuoteRequest { model: "unpriced".to_owned(), ..quote("") }).await), Code::NotFound);
        let updated = acme.admin
            .update_group_multiplier(pb::UpdateGroupMultiplierRequest {
                group_multiplier: Some(pb::GroupMultiplier { id: multiplier.id.clone(), multiplier_ppm: 0, ..Default::default() }),
                update_mask: mask(&["multiplier_ppm"]),
            })
            .await.unwrap_err();
        assert!(updated.message().starts_with("group_multiplier.multiplier_ppm:"));
        let unknown_group = acme.admin
            .create_group_multiplier(pb::CreateGroupMultiplierRequest {
                group_multiplier: Some(pb::GroupMultiplier { group_id: "nope".to_owned(), multiplier_ppm: 1, ..Default::default() }),
            })
            .await.unwrap_err();
        assert!(unknown_group.message().starts_with("group_multiplier.group_id:"));
        let listed = acme.user.list_model_prices(pb::ListModelPricesRequest::default()).await.unwrap().into_inner().model_prices;
        assert_eq!(listed.len(), 2, "the tenant's price and the global one");
    }

    async fn prices_multipliers_and_group_prices_are_read_updated_and_deleted(db) {
        let suite = suite(&db).await;
        let mut acme = suite.tenant("acme").await;
        let admin = &mut acme.admin;
        let created = admin.create_model_price(price(&acme.id, "claude", 3_000_000, 15_000_000)).await.unwrap().into_inner().model_price.unwrap();
        assert_eq!(admin.get_model_price(pb::GetModelPriceRequest { id: created.id.clone() }).await.unwrap().into_inner().model_price.unwrap(), created);
        let cached = admin
            .update_model_price(pb::UpdateModelPriceRequest {
                model_price: Some(pb::ModelPrice { id: created.id.clone(), cached_input_micros_per_million_tokens: Some(300_000), ..Default::default() }),
                update_mask: mask(&["cached_input_micros_per_million_tokens"]),
            })
            .await.unwrap().into_inner().model_price.unwrap();
        assert_eq!((cached.cached_input_micros_per_million_tokens, cached.input_micros_per_million_tokens), (Some(300_000), 3_000_000));
        let negative = admin
            .update_model_price(pb::UpdateModelPriceRequest {
                model_price: Some(pb::ModelPrice { id: created.id.clone(), output_micros_per_million_tokens: -1, ..Default::default() }),
                update_mask: mask(&["output_micros_per_million_tokens"]),
            })
            .await.unwrap_err();
        assert!(negative.message().starts_with("model_price:"), "{}", negative.message());
        let filtered = admin.list_model_prices(pb::ListModelPricesRequest { model: "claude".to_owned(), ..Default::default() }).await.unwrap().into_inner().model_prices;
        assert_eq!(filtered.len(), 1);
        admin.delete_model_price(pb::DeleteModelPriceRequest { id: created.id.clone() }).await.unwrap();
        assert_eq!(code(admin.get_model_price(pb::GetModelPriceRequest { id: created.id }).await), Code::NotFound);

        let multiplier = admin
            .create_group_multiplier(pb::CreateGroupMultiplierRequest {
                group_multiplier: Some(pb::GroupMultiplier { group_id: acme.group_id.clone(), multiplier_ppm: 2_000_000, ..Default::default() }),
            })
            .await.unwrap().into_inner().group_multiplier.unwrap();
        let duplicate = admin
            .create_group_multiplier(pb::CreateGroupMultiplierRequest {
                group_multiplier: Some(pb::GroupMultiplier { group_id: acme.group_id.clone(), multiplier_ppm: 1, ..Default::default() }),
            })
            .await;
        assert_eq!(code(duplicate), Code::AlreadyExists, "one multiplier per group");
        assert_eq!(admin.get_group_multiplier(pb::GetGroupMultiplierRequest { id: multiplier.id.clone() }).await.unwrap().into_inner().group_multiplier.unwrap().multiplier_ppm, 2_000_000);
        let halved = admin
            .update_group_multiplier(pb::UpdateGroupMultiplierRequest {
                group_multiplier: Some(pb::GroupMultiplier { id: multiplier.id.clone(), multiplier_ppm: 500_000, ..Default::default() }),
                update_mask: mask(&["multiplier_ppm"]),
            })
            .await.unwrap().into_inner().group_multiplier.unwrap();
        assert_eq!(halved.multiplier_ppm, 500_000);
        let listed = admin.list_group_multipliers(pb::ListGroupMultipliersRequest { group_id: acme.group_id.clone(), ..Default::default() }).await.unwrap().into_inner().group_multipliers;
        assert_eq!(listed.len(), 1);
        admin.delete_group_multiplier(pb::DeleteGroupMultiplierRequest { id: multiplier.id.clone() }).await.unwrap();
        assert_eq!(code(admin.get_group_multiplier(pb::GetGroupMultiplierRequest { id: multiplier.id }).await), Code::NotFound);

        let group_price = admin
            .create_group_price(pb::CreateGroupPriceRequest {
                group_price: Some(pb::GroupPrice {
                    group_id: acme.group_id.clone(),
                    model: "claude".to_owned(),
                    input_micros_per_million_tokens: 1,
                    output_micros_per_million_tokens: 2,
                    ..Default::default()
                }),
            })
            .await.unwrap().into_inner().group_price.unwrap();
        assert_eq!(admin.get_group_price(pb::GetGroupPriceRequest { id: group_price.id.clone() }).await.unwrap().into_inner().group_price.unwrap(), group_price);
        let raised = admin
            .update_group_price(pb::UpdateGroupPriceRequest {
                group_price: Some(pb::GroupPrice { id: group_price.id.clone(), output_micros_per_million_tokens: 20, ..Default::default() }),
                update_mask: mask(&["output_micros_per_million_tokens"]),
            })
            .await.unwrap().into_inner().group_price.unwrap();
        assert_eq!((raised.input_micros_per_million_tokens, raised.output_micros_per_million_tokens), (1, 20));
        assert_eq!(admin.list_group_prices(pb::ListGroupPricesRequest::default()).await.unwrap().into_inner().group_prices.len(), 1);
        admin.delete_group_price(pb::DeleteGroupPriceRequest { id: group_price.id.clone() }).await.unwrap();
        assert_eq!(code(admin.get_group_price(pb::GetGroupPriceRequest { id: group_price.id }).await), Code::NotFound);
        // Users cannot read the tenant's pricing internals.
        assert_eq!(code(acme.user.list_group_prices(pb::ListGroupPricesRequest::default()).await), Code::PermissionDenied);
    }

    async fn nothing_of_one_tenant_is_visible_or_changeable_from_the_other(db) {
        let suite = suite(&db).await;
        let mut a = suite.tenant("tenant-a").await;
        let mut b = suite.tenant("tenant-b").await;
        isolated_from(&mut a, &mut b).await;
        isolated_from(&mut b, &mut a).await;
    }

    async fn a_change_reaches_a_watcher_within_one_second_through_either_replica(db) {
        let suite = suite(&db).await;
        let mut acme = suite.tenant("acme").await;
        let second_replica = suite.start_catalog().await;
        let mut watcher = suite.catalog_root().await;
        let mut stream = watcher.watch_snapshot(pb::WatchSnapshotRequest { from_version: 0 }).await.unwrap().into_inner();
        let Some(Event::Snapshot(first)) = stream.next().await.unwrap().unwrap().event else { panic!("a full snapshot first") };

        // A write through the other replica, on the same database.
        let mut other = gateway_proto::catalog::v1::catalog_service_client::CatalogServiceClient::with_interceptor(
            tonic::transport::Endpoint::from_shared(second_replica).unwrap().connect().await.unwrap(),
            support::Credentials::admin_key(),
        );
        let mut request = create_api("orders", "s3cr3t-value");
        request.api.as_mut().unwrap().tenant_id = acme.id.clone();
        let created = other.create_api(request).await.unwrap().into_inner().api.unwrap();
        let started = tokio::time::Instant::now();
        let change = tokio::time::timeout(Duration::from_secs(1), async {
            loop {
                if let Some(Event::Change(change)) = stream.next().await.unwrap().unwrap().event { return change; }
            }
        })
        .await
        .expect("the change arrives within one second");
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(change.version, first.version + 1);
        assert_eq!(change.upserted_apis[0].api.as_ref().unwrap().id, created.id);
        assert_eq!(change.upserted_apis[0].upstream_auth_secret, "s3cr3t-value");

        acme.admin.delete_api(pb::DeleteApiRequest { id: created.id.clone() }).await.unwrap();
        let deleted = loop {
            if let Some(Event::Change(change)) = stream.next().await.unwrap().unwrap().event { break change; }
        };
        assert_eq!(deleted.deleted_api_ids, std::slice::from_ref(&created.id));

        // Resuming replays; a version from the future gets a full snapshot.
        let mut resumed = watcher.watch_snapshot(pb::WatchSnapshotRequest { from_version: change.version }).await.unwrap().into_inner();
        let Some(Event::Change(replayed)) = resumed.next().await.unwrap().unwrap().event else { panic!("a replayed change") };
        assert_eq!(replayed.version, change.version + 1);
        assert_eq!(replayed.deleted_api_ids, std::slice::from_ref(&created.id));
        let mut ahead = watcher.watch_snapshot(pb::WatchSnapshotRequest { from_version: 10_000 }).await.unwrap().into_inner();
        let Some(Event::Snapshot(reset)) = ahead.next().await.unwrap().unwrap().event else { panic!("a full snapshot") };
        assert_eq!(reset.version, first.version + 2);
    }
}

#[test]
fn every_catalog_rpc_has_an_access_rule() {
    let names = gateway_proto::rpc_names("CatalogService");
    assert!(!names.is_empty());
    for name in &names {
        assert!(
            gateway_catalog::access_policy(name).is_some(),
            "{name} has no access rule"
        );
    }
}
