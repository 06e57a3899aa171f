//! LDAP login against a real OpenLDAP server (Debian `slapd`) on a
//! loopback port: first login provisions the user, the directory decides
//! the password, and identity never stores it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use gateway_proto::identity::v1 as pb;
use gateway_testkit::ldap::{ALICE, ALICE_PASSWORD, BOB, Slapd};
use support::{Server, code, config, ldap_config};
use tonic::Code;

fn ldap_login(username: &str, password: &str) -> pb::LoginRequest {
    pb::LoginRequest {
        tenant_slug: String::new(),
        username: username.to_owned(),
        password: password.to_owned(),
        method: pb::LoginMethod::Ldap.into(),
    }
}

gateway_testkit::test_on_every_backend! {
    async fn first_ldap_login_provisions_a_user_in_the_configured_tenant(db) {
        let Some(slapd) = Slapd::start().await else { return };
        let mut config = config(db.url());
        config.identity.ldap = ldap_config(&slapd.url(), &slapd.user_dn_template());
        let server = Server::start(config).await;
        let mut anonymous = server.anonymous().await;

        let first = anonymous.login(ldap_login(ALICE, ALICE_PASSWORD)).await.unwrap().into_inner();
        let alice = first.user.unwrap();
        assert_eq!(alice.username, ALICE);
        assert_eq!(alice.role, i32::from(pb::Role::User));
        assert_eq!(alice.login_method, i32::from(pb::LoginMethod::Ldap));
        let mut root = server.admin_key().await;
        let corp = root.get_tenant_by_slug(pb::GetTenantBySlugRequest { slug: "corp".to_owned() }).await.unwrap().into_inner().tenant.unwrap();
        assert_eq!(alice.tenant_id, corp.id);

        // The same person next time, not a second account.
        let again = anonymous.login(ldap_login(ALICE, ALICE_PASSWORD)).await.unwrap().into_inner();
        assert_eq!(again.user.unwrap().id, alice.id);
        let users = root.list_users(pb::ListUsersRequest { tenant_id: corp.id.clone(), ..Default::default() }).await.unwrap().into_inner().users;
        assert_eq!(users.len(), 1);

        // The token works like any other.
        let mut alice_client = server.with_token(&first.access_token).await;
        alice_client.create_api_key(pb::CreateApiKeyRequest { api_key: Some(pb::ApiKey::default()) }).await.unwrap();

        // Wrong password, empty password, unknown user: one answer.
        for (username, password) in [(ALICE, "wrong-password"), (ALICE, ""), ("mallory", "whatever-password"), (BOB, ALICE_PASSWORD)] {
            let status = anonymous.login(ldap_login(username, password)).await.unwrap_err();
            assert_eq!(status.code(), Code::Unauthenticated, "{username}");
            assert_eq!(status.message(), "invalid credentials");
        }
        // An injection attempt in the username never reaches the directory.
        assert_eq!(code(anonymous.login(ldap_login("alice,ou=people", ALICE_PASSWORD)).await), Code::Unauthenticated);
        // Directory users have no local password.
        let local = anonymous.login(pb::LoginRequest {
            tenant_slug: "corp".to_owned(),
            username: ALICE.to_owned(),
            password: ALICE_PASSWORD.to_owned(),
            method: pb::LoginMethod::Password.into(),
        }).await;
        assert_eq!(code(local), Code::Unauthenticated);
        server.stop().await;
    }
}

#[tokio::test]
async fn ldap_login_without_configuration_is_a_failed_precondition() {
    let db = gateway_testkit::TestDatabase::sqlite().await;
    let server = Server::start(config(db.url())).await;
    let result = server
        .anonymous()
        .await
        .login(ldap_login(ALICE, ALICE_PASSWORD))
        .await;
    assert_eq!(code(result), Code::FailedPrecondition);
    server.stop().await;
}

#[tokio::test]
async fn unreachable_directory_is_unavailable_not_a_credential_failure() {
    let db = gateway_testkit::TestDatabase::sqlite().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut config = config(db.url());
    config.identity.ldap = ldap_config(
        &format!("ldap://{closed}"),
        "uid={username},ou=people,dc=example,dc=org",
    );
    let server = Server::start(config).await;
    let status = server
        .anonymous()
        .await
        .login(ldap_login(ALICE, ALICE_PASSWORD))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        !status.message().contains("127.0.0.1"),
        "internals stay in the logs: {}",
        status.message()
    );
    server.stop().await;
}
