//! Every identity RPC through a real tonic client over loopback, on SQLite
//! and on PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use gateway_identity::sha256_hex;
use gateway_proto::identity::v1 as pb;
use prost_types::FieldMask;
use support::{PASSWORD, SUPERADMIN_PASSWORD, Server, code, config, tenant};
use tokio_stream::StreamExt as _;
use tonic::Code;

fn mask(paths: &[&str]) -> Option<FieldMask> {
    Some(FieldMask {
        paths: paths.iter().map(|path| (*path).to_owned()).collect(),
    })
}

fn new_key(user_id: &str) -> pb::CreateApiKeyRequest {
    pb::CreateApiKeyRequest {
        api_key: Some(pb::ApiKey {
            user_id: user_id.to_owned(),
            name: "ci".to_owned(),
            ..Default::default()
        }),
    }
}

async fn authenticate(
    server: &Server,
    plaintext: &str,
    client_id: Option<&str>,
    ip: Option<&str>,
) -> pb::AuthenticateKeyResponse {
    server
        .admin_key()
        .await
        .authenticate_key(pb::AuthenticateKeyRequest {
            key_sha256: sha256_hex(plaintext),
            client_id: client_id.map(str::to_owned),
            remote_ip: ip.map(str::to_owned),
        })
        .await
        .unwrap()
        .into_inner()
}

fn status(response: &pb::AuthenticateKeyResponse) -> pb::KeyStatus {
    pb::KeyStatus::try_from(response.status).unwrap()
}

/// Every RPC an admin of `this` could aim at `other`'s resources fails as if
/// they did not exist, and changes nothing.
async fn isolated_from(this: &mut support::TenantFixture, other: &mut support::TenantFixture) {
    let theirs = other
        .admin
        .create_api_key(new_key(&other.user_user.id))
        .await
        .unwrap()
        .into_inner()
        .api_key
        .unwrap();
    let their_group = other
        .admin
        .create_group(pb::CreateGroupRequest {
            group: Some(pb::Group {
                name: format!("g-{}", other.tenant.slug),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .group
        .unwrap();
    let their_client = other
        .admin
        .create_client(pb::CreateClientRequest {
            client: Some(pb::Client {
                name: "c".to_owned(),
                client_id: format!("c-{}", other.tenant.slug),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .client
        .unwrap();
    let admin = &mut this.admin;
    let tenant_id = other.tenant.id.clone();
    assert_eq!(
        code(
            admin
                .get_tenant(pb::GetTenantRequest {
                    id: tenant_id.clone()
                })
                .await
        ),
        Code::NotFound
    );
    assert_eq!(
        code(
            admin
                .get_tenant_by_slug(pb::GetTenantBySlugRequest {
                    slug: other.tenant.slug.clone()
                })
                .await
        ),
        Code::NotFound
    );
    assert_eq!(
        code(
            admin
                .update_tenant(pb::UpdateTenantRequest {
                    tenant: Some(pb::Tenant {
                        id: tenant_id.clone(),
                        name: "pwned".to_owned(),
                        ..Default::default()
                    }),
                    update_mask: mask(&["name"]),
                })
                .await
        ),
        Code::NotFound
    );
    let tenants = admin
        .list_tenants(pb::ListTenantsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .tenants;
    assert_eq!(
        tenants
            .iter()
            .map(|tenant| tenant.id.as_str())
            .collect::<Vec<_>>(),
        [this.tenant.id.as_str()]
    );

    assert_eq!(
        code(
            admin
                .get_user(pb::GetUserRequest {
                    id: other.user_user.id.clone()
                })
                .await
        ),
        Code::NotFound
    );
    assert_eq!(
        code(
            admin
                .update_user(pb::UpdateUserRequest {
                    user: Some(pb::User {
                        id: other.user_user.id.clone(),
                        disabled: true,
                        ..Default::default()
                    }),
                    update_mask: mask(&["disabled"]),
                })
                .await
        ),
        Code::NotFound
    );
    assert_eq!(
        code(
            admin
                .delete_user(pb::DeleteUserRequest {
                    id: other.user_user.id.clone()
                })
                .await
        ),
        Code::NotFound
    );
    assert_eq!(
        code(
            admin
                .change_password(pb::ChangePasswordRequest {
                    user_id: other.user_user.id.clone(),
                    current_password: String::new(),
                    new_password: "hijacked-password-1".to_owned(),
                })
                .await
        ),
        Code::NotFound
    );
    assert_eq!(
        code(
            admin
                .list_users(pb::ListUsersRequest {
                    tenant_id: tenant_id.clone(),
                    ..Default::default()
                })
                .await
        ),
        Code::NotFound
    );
    let users = admin
        .list_users(pb::ListUsersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .users;
    assert!(users.iter().all(|user| user.tenant_id == this.tenant.id));
    assert_eq!(
        code(
            admin
                .create_user(pb::CreateUserRequest {
                    user: Some(pb::User {
                        tenant_id: tenant_id.clone(),
                        username: "planted".to_owned(),
                        ..Default::default()
                    }),
                    password: PASSWORD.to_owned(),
                })
                .await
        ),
        Code::NotFound
    );

    assert_eq!(
        code(
            admin
                .get_group(pb::GetGroupRequest {
                    id: their_group.id.clone()
                })
                .await
        ),
        Code::NotFound
    );
    assert_eq!(
        code(
            admin
                .update_group(pb::UpdateGroupRequest {
                    group: Some(pb::Group {
                        id: their_group.id.clone(),
                        priority: 99,
                        ..Default::default()
                    }),
                    update_mask: mask(&["priority"]),
                })
                .await
        ),
        Code::NotFound
    );
    assert_eq!(
        code(
            admin
                .list_group_members(pb::ListGroupMembersRequest {
                    group_id: their_group.id.clone(),
                    ..Default::default()
                })
                .await
        ),
        Code::NotFound
    );
    assert_eq!(
        code(
            admin
                .remove_group_member(pb::RemoveGroupMemberRequest {
                    group_id: their_group.id.clone(),
                    user_id: other.user_user.id.clone()
                })
                .await
        ),
        Code::NotFound
    );
    assert_eq!(
        code(
            admin
                .delete_group(pb::DeleteGroupRequest {
                    id: their_group.id.clone()
                })
                .await
        ),
        Code::NotFound
    );
    assert_eq!(
        code(
            admin
                .add_group_member(pb::AddGroupMemberRequest {
                    group_id: their_group.id.clone(),
                    user_id: this.user_user.id.clone()
                })
                .await
        ),
        Code::NotFound
    );
    let own_group = admin
        .create_group(pb::CreateGroupRequest {
            group: Some(pb::Group {
                name: format!("mine-{}", this.tenant.slug),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .group
        .unwrap();
    assert_eq!(
        code(
            admin
                .add_group_member(pb::AddGroupMemberRequest {
                    group_id: own_group.id.clone(),
                    user_id: other.user_user.id.clone()
                })
                .await
        ),
        Code::NotFound
    );
    assert!(
        admin
            .list_groups(pb::ListGroupsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .groups
            .iter()
            .all(|group| group.tenant_id == this.tenant.id)
    );

    assert_eq!(
        code(
            admin
                .get_api_key(pb::GetApiKeyRequest {
                    id: theirs.id.clone()
                })
                .await
        ),
        Code::NotFound
    );
    assert_eq!(
        code(
            admin
                .freeze_api_key(pb::FreezeApiKeyRequest {
                    id: theirs.id.clone()
                })
                .await
        ),
        Code::NotFound
    );
    assert_eq!(
        code(
            admin
                .unfreeze_api_key(pb::UnfreezeApiKeyRequest {
                    id: theirs.id.clone()
                })
                .await
        ),
        Code::NotFound
    );
    assert_eq!(
        code(
            admin
                .update_api_key(pb::UpdateApiKeyRequest {
                    api_key: Some(pb::ApiKey {
                        id: theirs.id.clone(),
                        name: "pwned".to_owned(),
                        ..Default::default()
                    }),
                    update_mask: mask(&["name"]),
                })
                .await
        ),
        Code::NotFound
    );
    assert_eq!(
        code(
            admin
                .delete_api_key(pb::DeleteApiKeyRequest {
                    id: theirs.id.clone()
                })
                .await
        ),
        Code::NotFound
    );
    assert_eq!(
        code(admin.create_api_key(new_key(&other.user_user.id)).await),
        Code::NotFound
    );
    let bound_elsewhere = pb::CreateApiKeyRequest {
        api_key: Some(pb::ApiKey {
            group_id: Some(their_group.id.clone()),
            ..Default::default()
        }),
    };
    assert_eq!(
        code(admin.create_api_key(bound_elsewhere).await),
        Code::InvalidArgument
    );
    assert!(
        admin
            .list_api_keys(pb::ListApiKeysRequest::default())
            .await
            .unwrap()
            .into_inner()
            .api_keys
            .iter()
            .all(|key| key.tenant_id == this.tenant.id)
    );

    assert_eq!(
        code(
            admin
                .get_client(pb::GetClientRequest {
                    id: their_client.id.clone()
                })
                .await
        ),
        Code::NotFound
    );
    assert_eq!(
        code(
            admin
                .delete_client(pb::DeleteClientRequest {
                    id: their_client.id.clone()
                })
                .await
        ),
        Code::NotFound
    );
    assert_eq!(
        code(
            admin
                .update_client(pb::UpdateClientRequest {
                    client: Some(pb::Client {
                        id: their_client.id.clone(),
                        plan_id: "free-ride".to_owned(),
                        ..Default::default()
                    }),
                    update_mask: mask(&["plan_id"]),
                })
                .await
        ),
        Code::NotFound
    );
    // A user of this tenant sees nothing of the other either.
    assert_eq!(
        code(
            this.user
                .get_api_key(pb::GetApiKeyRequest {
                    id: theirs.id.clone()
                })
                .await
        ),
        Code::NotFound
    );
    assert_eq!(
        code(
            this.user
                .get_group(pb::GetGroupRequest {
                    id: their_group.id.clone()
                })
                .await
        ),
        Code::NotFound
    );
    assert_eq!(
        code(
            this.user
                .get_user(pb::GetUserRequest {
                    id: other.user_user.id.clone()
                })
                .await
        ),
        Code::NotFound
    );
    assert_eq!(
        code(
            admin
                .list_clients(pb::ListClientsRequest {
                    tenant_id: tenant_id.clone(),
                    ..Default::default()
                })
                .await
        ),
        Code::NotFound
    );

    // The other tenant's resources are untouched.
    let still = other
        .admin
        .get_api_key(pb::GetApiKeyRequest {
            id: theirs.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .api_key
        .unwrap();
    assert!(!still.frozen);
}

gateway_testkit::test_on_every_backend! {
    async fn tenants_are_created_validated_listed_updated_and_deleted(db) {
        let server = Server::start(config(db.url())).await;
        let mut root = server.admin_key().await;
        let create = |slug: &str| pb::CreateTenantRequest {
            tenant: Some(pb::Tenant { slug: slug.to_owned(), name: "Acme".to_owned(), ..Default::default() }),
        };
        let acme = root.create_tenant(create("acme")).await.unwrap().into_inner().tenant.unwrap();
        assert_eq!(code(root.create_tenant(create("acme")).await), Code::AlreadyExists);
        let bad = root.create_tenant(create("Acme Corp")).await.unwrap_err();
        assert_eq!(bad.code(), Code::InvalidArgument);
        assert!(bad.message().starts_with("tenant.slug:"), "{}", bad.message());

        let by_slug = root
            .get_tenant_by_slug(pb::GetTenantBySlugRequest { slug: "acme".to_owned() })
            .await.unwrap().into_inner().tenant.unwrap();
        assert_eq!(by_slug, acme);

        for index in 0..3 {
            root.create_tenant(create(&format!("t-{index}"))).await.unwrap();
        }
        // acme, t-0..t-2 and the system tenant, two at a time.
        let mut slugs = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = root
                .list_tenants(pb::ListTenantsRequest { page_size: 2, page_token: page_token.clone() })
                .await.unwrap().into_inner();
            assert!(page.tenants.len() <= 2);
            slugs.extend(page.tenants.into_iter().map(|tenant| tenant.slug));
            page_token = page.next_page_token;
            if page_token.is_empty() { break; }
        }
        slugs.sort();
        assert_eq!(slugs, ["acme", "system", "t-0", "t-1", "t-2"]);
        assert_eq!(
            code(root.list_tenants(pb::ListTenantsRequest { page_size: 2, page_token: "forged".to_owned() }).await),
            Code::InvalidArgument
        );

        let renamed = root
            .update_tenant(pb::UpdateTenantRequest {
                tenant: Some(pb::Tenant { id: acme.id.clone(), name: "Acme Renamed".to_owned(), slug: "ignored".to_owned(), ..Default::default() }),
                update_mask: mask(&["name"]),
            })
            .await.unwrap().into_inner().tenant.unwrap();
        assert_eq!((renamed.name.as_str(), renamed.slug.as_str()), ("Acme Renamed", "acme"));
        let unknown_path = root
            .update_tenant(pb::UpdateTenantRequest {
                tenant: Some(pb::Tenant { id: acme.id.clone(), ..Default::default() }),
                update_mask: mask(&["id"]),
            })
            .await.unwrap_err();
        assert_eq!(unknown_path.code(), Code::InvalidArgument);
        assert!(unknown_path.message().starts_with("update_mask:"));

        let owner = root
            .create_user(pb::CreateUserRequest {
                user: Some(pb::User { tenant_id: acme.id.clone(), username: "owner".to_owned(), ..Default::default() }),
                password: PASSWORD.to_owned(),
            })
            .await.unwrap().into_inner().user.unwrap();
        let key = root.create_api_key(new_key(&owner.id)).await.unwrap().into_inner().key;
        assert_eq!(status(&authenticate(&server, &key, None, None).await), pb::KeyStatus::Active);
        root.delete_tenant(pb::DeleteTenantRequest { id: acme.id.clone() }).await.unwrap();
        assert_eq!(status(&authenticate(&server, &key, None, None).await), pb::KeyStatus::Unknown, "deleting a tenant revokes its keys");
        assert_eq!(code(root.get_tenant(pb::GetTenantRequest { id: acme.id }).await), Code::NotFound);
        let system = root
            .get_tenant_by_slug(pb::GetTenantBySlugRequest { slug: "system".to_owned() })
            .await.unwrap().into_inner().tenant.unwrap();
        assert_eq!(code(root.delete_tenant(pb::DeleteTenantRequest { id: system.id }).await), Code::FailedPrecondition);
        server.stop().await;
    }

    async fn sign_up_creates_a_tenant_and_its_admin_unless_switched_off(db) {
        let server = Server::start(config(db.url())).await;
        let mut anonymous = server.anonymous().await;
        let signed_up = anonymous
            .sign_up(pb::SignUpRequest {
                tenant_slug: "startup".to_owned(),
                tenant_name: "Startup".to_owned(),
                username: "founder".to_owned(),
                email: "founder@startup.example.org".to_owned(),
                password: PASSWORD.to_owned(),
            })
            .await.unwrap().into_inner();
        let user = signed_up.user.unwrap();
        assert_eq!(user.role, i32::from(pb::Role::Admin));
        assert_eq!(signed_up.token_type, "Bearer");
        let mut founder = server.with_token(&signed_up.access_token).await;
        let own = founder.get_tenant(pb::GetTenantRequest { id: user.tenant_id.clone() }).await.unwrap();
        assert_eq!(own.into_inner().tenant.unwrap().slug, "startup");

        let weak = anonymous
            .sign_up(pb::SignUpRequest {
                tenant_slug: "other".to_owned(),
                username: "x".to_owned(),
                password: "short".to_owned(),
                ..Default::default()
            })
            .await.unwrap_err();
        assert_eq!(weak.code(), Code::InvalidArgument);
        assert_eq!(weak.message(), "password: must be at least 12 characters");
        server.stop().await;

        let mut switched_off = config(db.url());
        switched_off.identity.signup_enabled = false;
        let server = Server::start(switched_off).await;
        let refused = server.anonymous().await.sign_up(pb::SignUpRequest {
            tenant_slug: "later".to_owned(),
            username: "someone".to_owned(),
            password: PASSWORD.to_owned(),
            ..Default::default()
        }).await;
        assert_eq!(code(refused), Code::FailedPrecondition);
        server.stop().await;
    }

    async fn login_issues_an_eddsa_jwt_that_the_published_key_verifies(db) {
        let server = Server::start(config(db.url())).await;
        let mut anonymous = server.anonymous().await;
        let login = anonymous
            .login(pb::LoginRequest {
                tenant_slug: "system".to_owned(),
                username: "admin".to_owned(),
                password: SUPERADMIN_PASSWORD.into(),
                method: 0,
            })
            .await.unwrap().into_inner();
        let keys = anonymous.get_public_keys(pb::GetPublicKeysRequest {}).await.unwrap().into_inner();
        assert_eq!(keys.keys.len(), 1);
        let key = &keys.keys[0];
        assert_eq!(key.algorithm, "EdDSA");
        let header = jsonwebtoken::decode_header(&login.access_token).unwrap();
        assert_eq!(header.kid.as_deref(), Some(key.kid.as_str()));
        let public = <ed25519_dalek::VerifyingKey as ed25519_dalek::pkcs8::DecodePublicKey>::from_public_key_pem(&key.public_key_pem).unwrap();
        let decoding = jsonwebtoken::DecodingKey::from_ed_der(public.as_bytes());
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
        validation.set_issuer(&[keys.issuer.as_str()]);
        let claims = jsonwebtoken::decode::<serde_json::Value>(&login.access_token, &decoding, &validation).unwrap().claims;
        let user = login.user.unwrap();
        assert_eq!(claims["sub"], user.id.as_str());
        assert_eq!(claims["tenant"], user.tenant_id.as_str());
        assert_eq!(claims["role"], "SUPERADMIN");
        assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 24 * 3600);
        assert!(!claims["jti"].as_str().unwrap().is_empty());

        // The token works as a bearer credential for an admin RPC.
        let mut superadmin = server.with_token(&login.access_token).await;
        superadmin.list_tenants(pb::ListTenantsRequest::default()).await.unwrap();
        server.stop().await;
    }

    async fn wrong_password_and_unknown_user_look_the_same_and_are_throttled(db) {
        let server = Server::start(config(db.url())).await;
        let fixture = tenant(&server, "acme").await;
        let mut anonymous = server.anonymous().await;
        let attempt = |username: &str, password: &str| pb::LoginRequest {
            tenant_slug: "acme".to_owned(),
            username: username.to_owned(),
            password: password.to_owned(),
            method: 0,
        };
        let wrong = anonymous.login(attempt(&fixture.user_user.username, "not-the-password")).await.unwrap_err();
        let unknown = anonymous.login(attempt("nobody", "not-the-password")).await.unwrap_err();
        assert_eq!((wrong.code(), unknown.code()), (Code::Unauthenticated, Code::Unauthenticated));
        assert_eq!(wrong.message(), unknown.message());

        // Three failures (the test limit) lock the user out, even with the
        // right password; other users are unaffected.
        anonymous.login(attempt(&fixture.user_user.username, "still-wrong-password")).await.unwrap_err();
        anonymous.login(attempt(&fixture.user_user.username, "still-wrong-password")).await.unwrap_err();
        let locked = anonymous.login(attempt(&fixture.user_user.username, PASSWORD)).await.unwrap_err();
        assert_eq!(locked.code(), Code::ResourceExhausted);
        anonymous.login(attempt(&fixture.admin_user.username, PASSWORD)).await.unwrap();
        server.stop().await;
    }

    async fn credentials_are_checked_before_any_rpc_runs(db) {
        let server = Server::start(config(db.url())).await;
        let fixture = tenant(&server, "acme").await;
        let mut anonymous = server.anonymous().await;
        assert_eq!(code(anonymous.list_tenants(pb::ListTenantsRequest::default()).await), Code::Unauthenticated);
        let mut forged = server.with_token("eyJhbGciOiJub25lIn0.e30.").await;
        assert_eq!(code(forged.list_tenants(pb::ListTenantsRequest::default()).await), Code::Unauthenticated);
        let mut wrong_key = gateway_proto::identity::v1::identity_service_client::IdentityServiceClient::with_interceptor(
            tonic::transport::Endpoint::from_shared(server.endpoint.clone()).unwrap().connect().await.unwrap(),
            support::Credentials::admin_key("not-the-admin-key-at-all"),
        );
        assert_eq!(code(wrong_key.list_tenants(pb::ListTenantsRequest::default()).await), Code::Unauthenticated);
        // Roles: a USER cannot call admin RPCs, an ADMIN not superadmin ones.
        let mut user = fixture.user;
        assert_eq!(code(user.list_users(pb::ListUsersRequest::default()).await), Code::PermissionDenied);
        let mut admin = fixture.admin;
        assert_eq!(
            code(admin.create_tenant(pb::CreateTenantRequest { tenant: Some(pb::Tenant { slug: "x1".to_owned(), ..Default::default() }) }).await),
            Code::PermissionDenied
        );
        assert_eq!(
            code(admin.authenticate_key(pb::AuthenticateKeyRequest { key_sha256: "0".repeat(64), ..Default::default() }).await),
            Code::PermissionDenied
        );
        server.stop().await;
    }

    async fn users_follow_the_password_policy_and_change_their_password(db) {
        let server = Server::start(config(db.url())).await;
        let fixture = tenant(&server, "acme").await;
        let mut admin = fixture.admin;
        let weak = admin
            .create_user(pb::CreateUserRequest {
                user: Some(pb::User { username: "weak".to_owned(), ..Default::default() }),
                password: "weakweak-weak".replace("-", "").to_owned(),
            })
            .await.unwrap_err();
        assert_eq!(weak.code(), Code::InvalidArgument);
        assert!(weak.message().starts_with("password:"), "{}", weak.message());
        let duplicate = admin
            .create_user(pb::CreateUserRequest {
                user: Some(pb::User { username: fixture.user_user.username.clone(), ..Default::default() }),
                password: PASSWORD.to_owned(),
            })
            .await;
        assert_eq!(code(duplicate), Code::AlreadyExists);
        let escalate = admin
            .create_user(pb::CreateUserRequest {
                user: Some(pb::User { username: "root2".to_owned(), role: pb::Role::Superadmin.into(), ..Default::default() }),
                password: PASSWORD.to_owned(),
            })
            .await;
        assert_eq!(code(escalate), Code::PermissionDenied);

        let mut user = fixture.user;
        let change = |current: &str, new: &str| pb::ChangePasswordRequest {
            user_id: String::new(),
            current_password: current.to_owned(),
            new_password: new.to_owned(),
        };
        let wrong = user.change_password(change("wrong-current-password", "a-brand-new-password")).await.unwrap_err();
        assert_eq!(wrong.code(), Code::InvalidArgument);
        assert!(wrong.message().starts_with("current_password:"));
        user.change_password(change(PASSWORD, "a-brand-new-password")).await.unwrap();
        server.login("acme", &fixture.user_user.username, "a-brand-new-password").await;

        let fetched = admin.get_user(pb::GetUserRequest { id: fixture.user_user.id.clone() }).await.unwrap().into_inner().user.unwrap();
        assert_eq!(fetched.username, fixture.user_user.username);
        assert_eq!(code(user.get_user(pb::GetUserRequest { id: fixture.admin_user.id.clone() }).await), Code::PermissionDenied);
        user.get_user(pb::GetUserRequest { id: fixture.user_user.id.clone() }).await.unwrap();

        // Updating and disabling: a disabled user can no longer log in.
        admin
            .update_user(pb::UpdateUserRequest {
                user: Some(pb::User { id: fixture.user_user.id.clone(), disabled: true, ..Default::default() }),
                update_mask: mask(&["disabled"]),
            })
            .await.unwrap();
        let login = server.anonymous().await.login(pb::LoginRequest {
            tenant_slug: "acme".to_owned(),
            username: fixture.user_user.username.clone(),
            password: "a-brand-new-password".to_owned(),
            method: 0,
        }).await;
        assert_eq!(code(login), Code::Unauthenticated);

        // Deleting a user revokes their keys; the last superadmin stays.
        let doomed = admin
            .create_user(pb::CreateUserRequest {
                user: Some(pb::User { username: "doomed".to_owned(), ..Default::default() }),
                password: PASSWORD.to_owned(),
            })
            .await.unwrap().into_inner().user.unwrap();
        let key = admin.create_api_key(new_key(&doomed.id)).await.unwrap().into_inner().key;
        admin.delete_user(pb::DeleteUserRequest { id: doomed.id.clone() }).await.unwrap();
        assert_eq!(status(&authenticate(&server, &key, None, None).await), pb::KeyStatus::Unknown);
        assert_eq!(code(admin.get_user(pb::GetUserRequest { id: doomed.id }).await), Code::NotFound);
        let mut root = server.admin_key().await;
        let system = root.get_tenant_by_slug(pb::GetTenantBySlugRequest { slug: "system".to_owned() }).await.unwrap().into_inner().tenant.unwrap();
        let superadmins = root.list_users(pb::ListUsersRequest { tenant_id: system.id, ..Default::default() }).await.unwrap().into_inner().users;
        assert_eq!(code(root.delete_user(pb::DeleteUserRequest { id: superadmins[0].id.clone() }).await), Code::FailedPrecondition);
        server.stop().await;
    }

    async fn api_keys_are_shown_once_and_authenticate_to_a_full_principal(db) {
        let server = Server::start(config(db.url())).await;
        let fixture = tenant(&server, "acme").await;
        let mut admin = fixture.admin;
        let group = |name: &str, priority: i32| pb::CreateGroupRequest {
            group: Some(pb::Group { name: name.to_owned(), priority, ..Default::default() }),
        };
        let low = admin.create_group(group("low", 1)).await.unwrap().into_inner().group.unwrap();
        let high = admin.create_group(group("high", 9)).await.unwrap().into_inner().group.unwrap();
        assert_eq!(code(admin.create_group(group("low", 3)).await), Code::AlreadyExists);
        for group in [&low, &high] {
            admin.add_group_member(pb::AddGroupMemberRequest { group_id: group.id.clone(), user_id: fixture.user_user.id.clone() }).await.unwrap();
        }
        let created = admin
            .create_api_key(pb::CreateApiKeyRequest {
                api_key: Some(pb::ApiKey {
                    user_id: fixture.user_user.id.clone(),
                    name: "prod".to_owned(),
                    plan_id: "plan-gold".to_owned(),
                    spend_limit_micros: Some(25_000_000),
                    allowed_models: vec!["gpt-4o".to_owned()],
                    ..Default::default()
                }),
            })
            .await.unwrap().into_inner();
        let plaintext = created.key.clone();
        assert!(plaintext.starts_with("sk-") && plaintext.len() >= 46, "{plaintext}");
        let key = created.api_key.unwrap();
        assert!(plaintext.starts_with(&key.prefix) && key.prefix.len() < 12);

        // Never again: neither get nor list carries the plaintext.
        let fetched = admin.get_api_key(pb::GetApiKeyRequest { id: key.id.clone() }).await.unwrap().into_inner();
        let listed = admin.list_api_keys(pb::ListApiKeysRequest::default()).await.unwrap().into_inner();
        assert!(!format!("{fetched:?}{listed:?}").contains(&plaintext[8..]));

        let answer = authenticate(&server, &plaintext, None, None).await;
        assert_eq!(status(&answer), pb::KeyStatus::Active);
        let principal = answer.principal.unwrap();
        assert_eq!(principal.tenant_slug, "acme");
        assert_eq!(principal.user_id, fixture.user_user.id);
        assert_eq!(principal.key_id, key.id);
        assert_eq!(principal.plan_id, "plan-gold");
        assert_eq!(principal.spend_limit_micros, Some(25_000_000));
        assert_eq!(principal.allowed_models, ["gpt-4o"]);
        let groups: Vec<&str> = principal.groups.iter().map(|group| group.name.as_str()).collect();
        assert_eq!(groups, ["high", "low"], "groups come ordered by priority");

        assert_eq!(status(&authenticate(&server, "sk-not-a-real-key", None, None).await), pb::KeyStatus::Unknown);
        let malformed = server.admin_key().await.authenticate_key(pb::AuthenticateKeyRequest {
            key_sha256: "not-hex".to_owned(), ..Default::default()
        }).await;
        assert_eq!(code(malformed), Code::InvalidArgument);

        admin.freeze_api_key(pb::FreezeApiKeyRequest { id: key.id.clone() }).await.unwrap();
        assert_eq!(status(&authenticate(&server, &plaintext, None, None).await), pb::KeyStatus::Frozen);
        admin.unfreeze_api_key(pb::UnfreezeApiKeyRequest { id: key.id.clone() }).await.unwrap();
        assert_eq!(status(&authenticate(&server, &plaintext, None, None).await), pb::KeyStatus::Active);

        // Allowed IPs, client ids.
        admin
            .update_api_key(pb::UpdateApiKeyRequest {
                api_key: Some(pb::ApiKey { id: key.id.clone(), allowed_ips: vec!["10.0.0.0/8".to_owned()], ..Default::default() }),
                update_mask: mask(&["allowed_ips"]),
            })
            .await.unwrap();
        assert_eq!(status(&authenticate(&server, &plaintext, None, Some("10.2.3.4")).await), pb::KeyStatus::Active);
        assert_eq!(status(&authenticate(&server, &plaintext, None, Some("192.168.0.1")).await), pb::KeyStatus::IpNotAllowed);
        admin
            .create_client(pb::CreateClientRequest {
                client: Some(pb::Client { name: "mobile".to_owned(), client_id: "mobile-app".to_owned(), plan_id: "plan-mobile".to_owned(), ..Default::default() }),
            })
            .await.unwrap();
        let with_client = authenticate(&server, &plaintext, Some("mobile-app"), None).await;
        assert_eq!(status(&with_client), pb::KeyStatus::Active);
        assert_eq!(with_client.principal.unwrap().client.unwrap().plan_id, "plan-mobile");
        assert_eq!(status(&authenticate(&server, &plaintext, Some("unknown-app"), None).await), pb::KeyStatus::ClientUnknown);

        // A key bound to one group reports only that group.
        admin
            .update_api_key(pb::UpdateApiKeyRequest {
                api_key: Some(pb::ApiKey { id: key.id.clone(), group_id: Some(low.id.clone()), ..Default::default() }),
                update_mask: mask(&["group_id"]),
            })
            .await.unwrap();
        let bound = authenticate(&server, &plaintext, None, None).await.principal.unwrap();
        assert_eq!(bound.groups.len(), 1);
        assert_eq!(bound.key_group_id.as_deref(), Some(low.id.as_str()));

        // Disabling the owner, then deleting the key.
        admin
            .update_user(pb::UpdateUserRequest {
                user: Some(pb::User { id: fixture.user_user.id.clone(), disabled: true, ..Default::default() }),
                update_mask: mask(&["disabled"]),
            })
            .await.unwrap();
        assert_eq!(status(&authenticate(&server, &plaintext, None, None).await), pb::KeyStatus::UserDisabled);
        admin.delete_api_key(pb::DeleteApiKeyRequest { id: key.id.clone() }).await.unwrap();
        assert_eq!(status(&authenticate(&server, &plaintext, None, None).await), pb::KeyStatus::Unknown);
        server.stop().await;
    }

    async fn expired_keys_are_refused_and_last_use_is_recorded_in_batches(db) {
        let server = Server::start(config(db.url())).await;
        let fixture = tenant(&server, "acme").await;
        let mut user = fixture.user;
        let soon = std::time::SystemTime::now() + Duration::from_millis(1500);
        let soon = soon.duration_since(std::time::UNIX_EPOCH).unwrap();
        let created = user
            .create_api_key(pb::CreateApiKeyRequest {
                api_key: Some(pb::ApiKey {
                    name: "short-lived".to_owned(),
                    expire_time: Some(prost_types::Timestamp { seconds: soon.as_secs() as i64, nanos: soon.subsec_nanos() as i32 }),
                    ..Default::default()
                }),
            })
            .await.unwrap().into_inner();
        assert_eq!(status(&authenticate(&server, &created.key, None, None).await), pb::KeyStatus::Active);
        let id = created.api_key.unwrap().id;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let key = user.get_api_key(pb::GetApiKeyRequest { id: id.clone() }).await.unwrap().into_inner().api_key.unwrap();
            if key.last_used_time.is_some() { break; }
            assert!(tokio::time::Instant::now() < deadline, "last-used time never written");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        loop {
            if status(&authenticate(&server, &created.key, None, None).await) == pb::KeyStatus::Expired { break; }
            assert!(tokio::time::Instant::now() < deadline, "key never expired");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let past = user
            .create_api_key(pb::CreateApiKeyRequest {
                api_key: Some(pb::ApiKey { expire_time: Some(prost_types::Timestamp { seconds: 1, nanos: 0 }), ..Default::default() }),
            })
            .await.unwrap_err();
        assert_eq!(past.code(), Code::InvalidArgument);
        assert!(past.message().starts_with("api_key.expire_time:"));
        server.stop().await;
    }

    async fn users_manage_only_their_own_keys(db) {
        let server = Server::start(config(db.url())).await;
        let fixture = tenant(&server, "acme").await;
        let mut admin = fixture.admin;
        let mut user = fixture.user;
        let own = user.create_api_key(new_key("")).await.unwrap().into_inner().api_key.unwrap();
        assert_eq!(own.user_id, fixture.user_user.id);
        let admins_key = admin.create_api_key(new_key("")).await.unwrap().into_inner().api_key.unwrap();

        assert_eq!(code(user.create_api_key(new_key(&fixture.admin_user.id)).await), Code::PermissionDenied);
        let with_plan = pb::CreateApiKeyRequest {
            api_key: Some(pb::ApiKey { plan_id: "plan-unlimited".to_owned(), ..Default::default() }),
        };
        assert_eq!(code(user.create_api_key(with_plan).await), Code::PermissionDenied);
        assert_eq!(code(user.get_api_key(pb::GetApiKeyRequest { id: admins_key.id.clone() }).await), Code::NotFound);
        assert_eq!(code(user.freeze_api_key(pb::FreezeApiKeyRequest { id: admins_key.id.clone() }).await), Code::NotFound);
        assert_eq!(code(user.delete_api_key(pb::DeleteApiKeyRequest { id: admins_key.id.clone() }).await), Code::NotFound);
        let listed = user.list_api_keys(pb::ListApiKeysRequest::default()).await.unwrap().into_inner().api_keys;
        assert_eq!(listed.iter().map(|key| key.id.as_str()).collect::<Vec<_>>(), [own.id.as_str()]);
        let raise_limit = pb::UpdateApiKeyRequest {
            api_key: Some(pb::ApiKey { id: own.id.clone(), spend_limit_micros: Some(1), ..Default::default() }),
            update_mask: mask(&["spend_limit_micros"]),
        };
        assert_eq!(code(user.update_api_key(raise_limit).await), Code::PermissionDenied);
        user.freeze_api_key(pb::FreezeApiKeyRequest { id: own.id.clone() }).await.unwrap();
        // The admin sees and manages both.
        let all = admin.list_api_keys(pb::ListApiKeysRequest::default()).await.unwrap().into_inner().api_keys;
        assert_eq!(all.len(), 2);
        admin.delete_api_key(pb::DeleteApiKeyRequest { id: own.id }).await.unwrap();
        server.stop().await;
    }

    async fn groups_members_and_clients_are_managed_by_admins(db) {
        let server = Server::start(config(db.url())).await;
        let fixture = tenant(&server, "acme").await;
        let mut admin = fixture.admin;
        let group = admin
            .create_group(pb::CreateGroupRequest { group: Some(pb::Group { name: "vip".to_owned(), priority: 5, ..Default::default() }) })
            .await.unwrap().into_inner().group.unwrap();
        let member = pb::AddGroupMemberRequest { group_id: group.id.clone(), user_id: fixture.user_user.id.clone() };
        admin.add_group_member(member.clone()).await.unwrap();
        admin.add_group_member(member).await.unwrap();
        let members = admin
            .list_group_members(pb::ListGroupMembersRequest { group_id: group.id.clone(), ..Default::default() })
            .await.unwrap().into_inner().members;
        assert_eq!(members.len(), 1);
        let mut user = fixture.user;
        let mine = user.list_groups(pb::ListGroupsRequest::default()).await.unwrap().into_inner().groups;
        assert_eq!(mine.len(), 1);
        user.get_group(pb::GetGroupRequest { id: group.id.clone() }).await.unwrap();
        let updated = admin
            .update_group(pb::UpdateGroupRequest {
                group: Some(pb::Group { id: group.id.clone(), priority: 50, ..Default::default() }),
                update_mask: mask(&["priority"]),
            })
            .await.unwrap().into_inner().group.unwrap();
        assert_eq!((updated.priority, updated.name.as_str()), (50, "vip"));
        admin.remove_group_member(pb::RemoveGroupMemberRequest { group_id: group.id.clone(), user_id: fixture.user_user.id.clone() }).await.unwrap();
        assert_eq!(code(user.get_group(pb::GetGroupRequest { id: group.id.clone() }).await), Code::PermissionDenied);
        admin.delete_group(pb::DeleteGroupRequest { id: group.id.clone() }).await.unwrap();
        assert_eq!(code(admin.get_group(pb::GetGroupRequest { id: group.id }).await), Code::NotFound);

        let client = admin
            .create_client(pb::CreateClientRequest { client: Some(pb::Client { name: "web".to_owned(), client_id: "web-1".to_owned(), ..Default::default() }) })
            .await.unwrap().into_inner().client.unwrap();
        let duplicate = admin
            .create_client(pb::CreateClientRequest { client: Some(pb::Client { name: "web".to_owned(), client_id: "web-1".to_owned(), ..Default::default() }) })
            .await;
        assert_eq!(code(duplicate), Code::AlreadyExists);
        let bad = admin
            .create_client(pb::CreateClientRequest { client: Some(pb::Client { name: "web".to_owned(), client_id: "has space".to_owned(), ..Default::default() }) })
            .await.unwrap_err();
        assert!(bad.message().starts_with("client.client_id:"));
        let renamed = admin
            .update_client(pb::UpdateClientRequest {
                client: Some(pb::Client { id: client.id.clone(), plan_id: "plan-2".to_owned(), ..Default::default() }),
                update_mask: mask(&["plan_id"]),
            })
            .await.unwrap().into_inner().client.unwrap();
        assert_eq!((renamed.plan_id.as_str(), renamed.client_id.as_str()), ("plan-2", "web-1"));
        let fetched = admin.get_client(pb::GetClientRequest { id: client.id.clone() }).await.unwrap().into_inner().client.unwrap();
        assert_eq!(fetched, renamed);
        assert_eq!(admin.list_clients(pb::ListClientsRequest::default()).await.unwrap().into_inner().clients.len(), 1);
        admin.delete_client(pb::DeleteClientRequest { id: client.id.clone() }).await.unwrap();
        assert_eq!(code(admin.get_client(pb::GetClientRequest { id: client.id }).await), Code::NotFound);
        server.stop().await;
    }

    async fn nothing_of_one_tenant_is_visible_or_changeable_from_the_other(db) {
        let server = Server::start(config(db.url())).await;
        let mut a = tenant(&server, "tenant-a").await;
        let mut b = tenant(&server, "tenant-b").await;
        isolated_from(&mut a, &mut b).await;
        isolated_from(&mut b, &mut a).await;
        server.stop().await;
    }

    async fn a_freeze_reaches_a_watching_client_within_one_second(db) {
        let server = Server::start(config(db.url())).await;
        let fixture = tenant(&server, "acme").await;
        let mut admin = fixture.admin;
        let created = admin.create_api_key(new_key(&fixture.user_user.id)).await.unwrap().into_inner();
        let key = created.api_key.unwrap();
        let mut watcher = server.admin_key().await;
        let mut stream = watcher.watch_keys(pb::WatchKeysRequest { from_version: 0 }).await.unwrap().into_inner();
        let first = stream.next().await.unwrap().unwrap();
        assert!(first.changes.is_empty() && !first.reset);
        let start_version = first.version;

        admin.freeze_api_key(pb::FreezeApiKeyRequest { id: key.id.clone() }).await.unwrap();
        let started = tokio::time::Instant::now();
        let change = tokio::time::timeout(Duration::from_secs(1), async {
            loop {
                let batch = stream.next().await.unwrap().unwrap();
                if let Some(change) = batch.changes.into_iter().next() { return change; }
            }
        })
        .await
        .expect("the freeze arrives within one second");
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(change.kind, i32::from(pb::KeyChangeKind::KeyFrozen));
        assert_eq!(change.key_sha256, sha256_hex(&created.key));
        assert_eq!(change.version, start_version + 1);

        // Resuming from an older version replays what was missed.
        let mut replay = watcher.watch_keys(pb::WatchKeysRequest { from_version: start_version }).await.unwrap().into_inner();
        let batch = replay.next().await.unwrap().unwrap();
        assert_eq!(batch.changes[0].kind, i32::from(pb::KeyChangeKind::KeyFrozen));
        // A version from the future (a reset store) forces a resync.
        let mut ahead = watcher.watch_keys(pb::WatchKeysRequest { from_version: start_version + 1000 }).await.unwrap().into_inner();
        let batch = ahead.next().await.unwrap().unwrap();
        assert!(batch.reset);
        assert_eq!(batch.version, start_version + 1);
        drop((stream, replay, ahead));
        server.stop().await;
    }

    async fn two_replicas_on_one_database_share_keys_tokens_and_changes(db) {
        let first = Server::start(config(db.url())).await;
        let second = Server::start(config(db.url())).await;
        let fixture = tenant(&first, "acme").await;
        // A token from one replica is accepted by the other: one signing key.
        let token_user = second.login("acme", &fixture.user_user.username, PASSWORD).await;
        drop(token_user);
        let mut on_second = second.admin_key().await;
        let created = fixture.admin.clone().create_api_key(new_key(&fixture.user_user.id)).await.unwrap().into_inner();
        assert_eq!(status(&authenticate(&second, &created.key, None, None).await), pb::KeyStatus::Active);

        let mut stream = first.admin_key().await.watch_keys(pb::WatchKeysRequest { from_version: 0 }).await.unwrap().into_inner();
        stream.next().await.unwrap().unwrap();
        on_second.freeze_api_key(pb::FreezeApiKeyRequest { id: created.api_key.unwrap().id }).await.unwrap();
        let change = tokio::time::timeout(Duration::from_secs(1), async {
            loop {
                let batch = stream.next().await.unwrap().unwrap();
                if let Some(change) = batch.changes.into_iter().next() { return change; }
            }
        })
        .await
        .expect("a freeze through the other replica arrives within one second");
        assert_eq!(change.kind, i32::from(pb::KeyChangeKind::KeyFrozen));
        drop(stream);
        first.stop().await;
        second.stop().await;
    }
}

#[tokio::test]
async fn hs256_mode_signs_with_the_configured_secret_and_publishes_no_keys() {
    let db = gateway_testkit::TestDatabase::sqlite().await;
    let mut config = config(db.url());
    config.auth.jwt_secret = "an-hs256-secret-of-at-least-32-bytes".into();
    let server = Server::start(config).await;
    let mut anonymous = server.anonymous().await;
    let login = anonymous
        .login(pb::LoginRequest {
            tenant_slug: "system".to_owned(),
            username: "admin".to_owned(),
            password: SUPERADMIN_PASSWORD.into(),
            method: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_issuer(&["gateway-identity"]);
    let key = jsonwebtoken::DecodingKey::from_secret(b"an-hs256-secret-of-at-least-32-bytes");
    jsonwebtoken::decode::<serde_json::Value>(&login.access_token, &key, &validation).unwrap();
    let keys = anonymous
        .get_public_keys(pb::GetPublicKeysRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(keys.keys.is_empty());
    server
        .with_token(&login.access_token)
        .await
        .list_tenants(pb::ListTenantsRequest::default())
        .await
        .unwrap();
    server.stop().await;
}

#[test]
fn every_identity_rpc_has_an_access_rule() {
    let names = gateway_proto::rpc_names("IdentityService");
    assert!(names.len() >= 37);
    for name in &names {
        assert!(
            gateway_identity::access_policy(name).is_some(),
            "{name} has no access rule"
        );
    }
    assert!(gateway_identity::access_policy("NoSuchRpc").is_none());
}

#[tokio::test]
async fn other_services_verify_tokens_with_the_published_keys() {
    let db = gateway_testkit::TestDatabase::sqlite().await;
    let server = Server::start(config(db.url())).await;
    let auth = gateway_auth::AuthConfig {
        identity_url: server.endpoint.clone(),
        ..gateway_auth::AuthConfig::default()
    };
    let verifier = auth.verifier();
    let login = server
        .anonymous()
        .await
        .login(pb::LoginRequest {
            tenant_slug: "system".to_owned(),
            username: "admin".to_owned(),
            password: SUPERADMIN_PASSWORD.into(),
            method: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(verifier.verify(&login.access_token).is_err(), "no keys yet");
    let count = gateway_auth::remote::fetch_identity_keys(&server.endpoint, &verifier)
        .await
        .unwrap();
    assert_eq!(count, 1);
    let claims = verifier.verify(&login.access_token).unwrap();
    assert_eq!(claims.role, gateway_auth::Role::Superadmin);
    server.stop().await;
    let unreachable =
        gateway_auth::remote::fetch_identity_keys(&server_url_closed(), &verifier).await;
    assert!(matches!(
        unreachable,
        Err(gateway_auth::remote::FetchError::Unreachable { .. })
    ));
}

fn server_url_closed() -> String {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    format!("http://{addr}")
}

#[tokio::test]
async fn signing_keys_are_sealed_at_rest_with_the_master_key() {
    use sqlx::Row as _;
    let db = gateway_testkit::TestDatabase::sqlite().await;
    let server = Server::start(config(db.url())).await;
    server.stop().await;
    let database =
        gateway_storage::Database::connect(db.url(), &gateway_storage::ConnectOptions::default())
            .await
            .unwrap();
    let row = sqlx::query("SELECT kid, private_key FROM signing_keys")
        .fetch_one(database.pool())
        .await
        .unwrap();
    let kid: String = row.get("kid");
    let sealed: Vec<u8> = row.get("private_key");
    let context = format!("identity.signing_key:{kid}");
    assert_eq!(sealed[0], 1, "a sealed value, not PKCS#8 DER (0x30)");
    let opened = gateway_secrets::SecretBox::new(&support::MASTER_KEY)
        .open(&context, &sealed)
        .unwrap();
    assert_eq!(opened[0], 0x30);
    assert!(
        gateway_secrets::SecretBox::new(&[9; 32])
            .open(&context, &sealed)
            .is_err()
    );
}
