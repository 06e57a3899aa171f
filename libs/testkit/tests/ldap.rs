#![allow(clippy::unwrap_used, clippy::expect_used)]

//! The `Slapd` harness serves real binds and searches.

use gateway_testkit::ldap::{
    ADMIN_PASSWORD, ALICE, ALICE_EMAIL, ALICE_PASSWORD, BOB, BOB_PASSWORD, Slapd,
};
use ldap3::{Ldap, LdapConnAsync, Scope, SearchEntry};

/// LDAP result codes (RFC 4511).
const SUCCESS: u32 = 0;
const INVALID_CREDENTIALS: u32 = 49;
const UNWILLING_TO_PERFORM: u32 = 53;

async fn connect(server: &Slapd) -> Ldap {
    let (conn, ldap) = LdapConnAsync::new(&server.url()).await.unwrap();
    ldap3::drive!(conn);
    ldap
}

fn user_dn(server: &Slapd, username: &str) -> String {
    server.user_dn_template().replace("{username}", username)
}

/// The result code of a simple bind as `dn`.
async fn bind_rc(server: &Slapd, dn: &str, password: &str) -> u32 {
    let mut ldap = connect(server).await;
    let result = ldap.simple_bind(dn, password).await.unwrap();
    ldap.unbind().await.unwrap();
    result.rc
}

#[tokio::test]
async fn users_bind_with_their_passwords() {
    let Some(server) = Slapd::start().await else {
        return;
    };
    assert!(server.url().starts_with("ldap://127.0.0.1:"));
    let alice = user_dn(&server, ALICE);
    assert_eq!(alice, "uid=alice,ou=people,dc=example,dc=org");
    assert_eq!(bind_rc(&server, &alice, ALICE_PASSWORD).await, SUCCESS);
    let bob = user_dn(&server, BOB);
    assert_eq!(bind_rc(&server, &bob, BOB_PASSWORD).await, SUCCESS);

    // `.success()` is how callers see it: Ok for a good bind.
    let mut ldap = connect(&server).await;
    ldap.simple_bind(&alice, ALICE_PASSWORD)
        .await
        .unwrap()
        .success()
        .unwrap();
    ldap.unbind().await.unwrap();
}

#[tokio::test]
async fn wrong_password_is_invalid_credentials() {
    let Some(server) = Slapd::start().await else {
        return;
    };
    let alice = user_dn(&server, ALICE);
    assert_eq!(
        bind_rc(&server, &alice, "not-alices-password").await,
        INVALID_CREDENTIALS
    );
    // Another user's password is wrong too.
    assert_eq!(
        bind_rc(&server, &alice, BOB_PASSWORD).await,
        INVALID_CREDENTIALS
    );

    let mut ldap = connect(&server).await;
    let error = ldap
        .simple_bind(&alice, "not-alices-password")
        .await
        .unwrap()
        .success()
        .unwrap_err();
    match error {
        ldap3::LdapError::LdapResult { result } => assert_eq!(result.rc, INVALID_CREDENTIALS),
        other => panic!("expected an LDAP result error, got {other:?}"),
    }
}

#[tokio::test]
async fn unknown_user_is_invalid_credentials() {
    let Some(server) = Slapd::start().await else {
        return;
    };
    let carol = user_dn(&server, "carol");
    assert_eq!(
        bind_rc(&server, &carol, ALICE_PASSWORD).await,
        INVALID_CREDENTIALS
    );
}

/// slapd refuses an "unauthenticated bind" (a DN with an empty password).
/// Active Directory may accept one as anonymous: login code must reject
/// empty passwords itself.
#[tokio::test]
async fn empty_password_is_refused() {
    let Some(server) = Slapd::start().await else {
        return;
    };
    let alice = user_dn(&server, ALICE);
    assert_eq!(bind_rc(&server, &alice, "").await, UNWILLING_TO_PERFORM);
}

#[tokio::test]
async fn admin_finds_users_but_no_one_reads_password_hashes() {
    let Some(server) = Slapd::start().await else {
        return;
    };
    let mut ldap = connect(&server).await;
    ldap.simple_bind(server.admin_dn(), ADMIN_PASSWORD)
        .await
        .unwrap()
        .success()
        .unwrap();
    let (entries, _) = ldap
        .search(
            server.base_dn(),
            Scope::Subtree,
            "(uid=alice)",
            vec!["cn", "mail"],
        )
        .await
        .unwrap()
        .success()
        .unwrap();
    assert_eq!(entries.len(), 1);
    let alice = SearchEntry::construct(entries.into_iter().next().unwrap());
    assert_eq!(alice.dn, user_dn(&server, ALICE));
    assert_eq!(alice.attrs["mail"], [ALICE_EMAIL]);
    assert_eq!(alice.attrs["cn"], ["Alice Example"]);
    ldap.unbind().await.unwrap();

    // Another user sees the entry but not its userPassword.
    let mut ldap = connect(&server).await;
    ldap.simple_bind(&user_dn(&server, BOB), BOB_PASSWORD)
        .await
        .unwrap()
        .success()
        .unwrap();
    let (entries, _) = ldap
        .search(
            server.base_dn(),
            Scope::Subtree,
            "(uid=alice)",
            vec!["userPassword", "mail"],
        )
        .await
        .unwrap()
        .success()
        .unwrap();
    let alice = SearchEntry::construct(entries.into_iter().next().unwrap());
    assert_eq!(alice.attrs["mail"], [ALICE_EMAIL]);
    assert!(!alice.attrs.contains_key("userPassword"));
    assert!(!alice.bin_attrs.contains_key("userPassword"));
    ldap.unbind().await.unwrap();
}

#[tokio::test]
async fn drop_stops_the_server() {
    let Some(server) = Slapd::start().await else {
        return;
    };
    let url = server.url();
    let address = url.trim_start_matches("ldap://").to_owned();
    drop(server);
    assert!(tokio::net::TcpStream::connect(address).await.is_err());
}
