//! login / whoami / logout, contexts, completions and the exit codes.

use std::os::unix::fs::PermissionsExt;

use gateway_e2e::{Backend, TestSuite};

use super::{Ctl, admin_key_args};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_stores_a_private_token_whoami_confirms_it_and_logout_forgets_it() {
    let suite = TestSuite::start(Backend::Sqlite).await.unwrap();
    let ctl = Ctl::new(&suite);
    let error = ctl.run(&["whoami"]).await.fails(3);
    assert!(error.contains("not logged in"), "{error}");

    let wrong = [
        "login",
        "--tenant",
        "system",
        "--username",
        "admin",
        "--password-stdin",
    ];
    let error = ctl
        .run_with_stdin(&wrong, "not-the-password")
        .await
        .fails(3);
    assert!(error.contains("UNAUTHENTICATED"), "{error}");

    ctl.login_superadmin().await;
    let credentials = ctl.dir.path().join("credentials.yaml");
    let mode = std::fs::metadata(&credentials)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the token file is private");
    let who = ctl.run(&["whoami", "-o", "json"]).await.json();
    assert_eq!(who["user"], "admin");
    assert_eq!(who["tenant"], "system");
    assert_eq!(who["role"], "SUPERADMIN");
    assert_eq!(who["context"], "default");

    // A second context, made current, has no token until it logs in.
    let identity = gateway_e2e::url(suite.addresses.identity);
    ctl.run(&[
        "context",
        "set",
        "staging",
        "--identity-url",
        &identity,
        "--use",
    ])
    .await
    .ok();
    assert_eq!(
        ctl.run(&["context", "current"]).await.ok().trim(),
        "staging"
    );
    ctl.run(&["whoami"]).await.fails(3);
    let listed = ctl.run(&["context", "list"]).await.ok();
    assert!(
        listed
            .lines()
            .any(|line| line.starts_with('*') && line.contains("staging")),
        "{listed}"
    );
    assert_eq!(
        ctl.run(&["--context", "default", "whoami", "-o", "json"])
            .await
            .json()["user"],
        "admin"
    );
    ctl.run(&["--context", "nowhere", "whoami"]).await.fails(5);
    ctl.run(&["context", "use", "default"]).await.ok();

    // --token (or GATEWAYCTL_TOKEN) stands in for a stored token, as in CI.
    let stored = std::fs::read_to_string(&credentials).unwrap();
    let token = stored.split("default: ").nth(1).unwrap().trim().to_owned();
    ctl.run(&["logout"]).await.ok();
    ctl.run(&["whoami"]).await.fails(3);
    assert_eq!(
        ctl.run(&["--token", &token, "whoami", "-o", "json"])
            .await
            .json()["user"],
        "admin"
    );
    let mut by_key = vec!["whoami"];
    by_key.extend(admin_key_args());
    assert!(ctl.run(&by_key).await.ok().contains("admin key"));
    suite.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_usage_errors_and_unreachable_services_have_their_exit_codes() {
    let suite = TestSuite::start(Backend::Sqlite).await.unwrap();
    let ctl = Ctl::new(&suite);
    for shell in ["bash", "zsh", "fish"] {
        let script = ctl.run(&["completion", shell]).await.ok();
        assert!(
            script.contains("gatewayctl") && script.contains("channels"),
            "{shell}: {script}"
        );
    }
    ctl.run(&["apis", "frobnicate"]).await.fails(2);
    ctl.login_superadmin().await;
    let error = ctl
        .run(&["apis", "create", "x", "--user", "someone"])
        .await
        .fails(2);
    assert!(error.contains("takes no --user"), "{error}");
    let error = ctl
        .run(&["channels", "create", "x", "--set", "nmae=y"])
        .await
        .fails(2);
    assert!(error.contains("nmae"), "{error}");
    let error = ctl.run(&["apis", "get", "no-such-api"]).await.fails(5);
    assert!(error.contains("NOT_FOUND"), "{error}");
    let error = ctl
        .run(&["apis", "create", "Bad", "--set", "slug=UPPER CASE"])
        .await
        .fails(7);
    assert!(
        error.contains("INVALID_ARGUMENT") && error.contains("slug"),
        "{error}"
    );

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let nowhere = gateway_e2e::url(closed);
    let error = ctl
        .run(&[
            "--catalog-url",
            &nowhere,
            "--timeout-ms",
            "500",
            "apis",
            "list",
        ])
        .await
        .fails(8);
    assert!(error.contains("UNAVAILABLE"), "{error}");
    suite.stop().await.unwrap();
}

/// `login --ldap` through a real OpenLDAP server (Debian's slapd).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldap_users_log_in_through_the_directory() {
    use gateway_testkit::ldap::{ALICE, ALICE_PASSWORD, Slapd};
    let Some(slapd) = Slapd::start().await else {
        return;
    };
    let suite = TestSuite::start_with(Backend::Sqlite, |config| {
        config.identity.ldap = gateway_identity::config::LdapConfig {
            url: slapd.url(),
            user_dn_template: slapd.user_dn_template(),
            tenant_slug: "corp".to_owned(),
            timeout_ms: 3000,
        };
    })
    .await
    .unwrap();
    let ctl = Ctl::new(&suite);
    let login = ["login", "--ldap", "--username", ALICE, "--password-stdin"];
    let error = ctl.run_with_stdin(&login, "wrong-password").await.fails(3);
    assert!(error.contains("UNAUTHENTICATED"), "{error}");
    ctl.run_with_stdin(&login, ALICE_PASSWORD).await.ok();
    let who = ctl.run(&["whoami", "-o", "json"]).await.json();
    assert_eq!(who["user"], ALICE);
    assert_eq!(who["role"], "USER");
    let mut corp = vec!["tenants", "get", "corp", "-o", "json"];
    corp.extend(admin_key_args());
    let corp = ctl.run(&corp).await.json();
    assert_eq!(
        who["tenant_id"], corp["id"],
        "provisioned in the configured tenant"
    );
    suite.stop().await.unwrap();
}
