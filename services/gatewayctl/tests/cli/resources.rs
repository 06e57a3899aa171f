//! Each noun's verbs, by names people know, as a superadmin, a tenant
//! admin and a USER.

use std::time::Duration;

use gateway_e2e::{Backend, TestSuite};
use serde_json::Value;

use super::{Ctl, PASSWORD};

/// The README walkthrough: a tenant, an admin, a key, and the key checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_nouns_by_name_with_keys_shown_once() {
    let suite = TestSuite::start(Backend::Sqlite).await.unwrap();
    let ctl = Ctl::new(&suite);
    ctl.login_superadmin().await;
    ctl.run(&["tenants", "create", "acme", "--set", "name=Acme"])
        .await
        .ok();
    let listed = ctl.run(&["tenants", "list"]).await.ok();
    assert!(
        listed.lines().next().unwrap().starts_with("ID "),
        "{listed}"
    );
    assert!(
        listed.contains("acme") && listed.contains("Acme"),
        "{listed}"
    );
    ctl.run(&["tenants", "update", "acme", "--set", "name=Acme Corp"])
        .await
        .ok();
    assert_eq!(
        ctl.run(&["tenants", "get", "acme", "-o", "json"])
            .await
            .json()["name"],
        "Acme Corp"
    );

    let create_user = [
        "--tenant",
        "acme",
        "users",
        "create",
        "ada",
        "--set",
        "role=ADMIN",
        "--secret-stdin",
    ];
    ctl.run_with_stdin(&create_user, PASSWORD).await.ok();
    let users = ctl
        .run(&["--tenant", "acme", "users", "list", "-o", "yaml"])
        .await
        .ok();
    assert!(
        users.contains("username: ada") && users.contains("role: ROLE_ADMIN"),
        "{users}"
    );

    let acme = ["--tenant", "acme"];
    let run = |args: &[&str]| {
        let mut all = acme.to_vec();
        all.extend_from_slice(args);
        let owned: Vec<String> = all.iter().map(|arg| (*arg).to_owned()).collect();
        let ctl = &ctl;
        async move {
            ctl.run(&owned.iter().map(String::as_str).collect::<Vec<_>>())
                .await
        }
    };
    run(&["groups", "create", "gold", "--set", "priority=10"])
        .await
        .ok();
    run(&["members", "add", "gold", "ada"]).await.ok();
    assert!(run(&["members", "list", "gold"]).await.ok().contains("ada"));
    run(&[
        "plans",
        "create",
        "basic",
        "--set",
        "requests_per_minute=60",
    ])
    .await
    .ok();
    let created = run(&[
        "keys",
        "create",
        "ci",
        "--user",
        "ada",
        "--group",
        "gold",
        "--plan",
        "basic",
        "--spend-limit",
        "2.50",
        "-o",
        "json",
    ])
    .await
    .json();
    let plaintext = created["key"].as_str().unwrap().to_owned();
    assert_eq!(created["key"].as_str().unwrap().len(), plaintext.len());
    assert_eq!(created["key"].as_str().map(str::is_empty), Some(false));
    assert_eq!(created["api_key"]["spend_limit_micros"], 2_500_000);
    let keys = run(&["keys", "list", "--user", "ada"]).await.ok();
    assert!(keys.contains("ci") && keys.contains("$2.50"), "{keys}");
    assert!(
        !keys.contains(&plaintext),
        "a list never shows a key's plaintext"
    );
    // The walkthrough's last step: the key as the edge resolves it.
    let authenticate = ["keys", "authenticate", "-o", "json"];
    let checked = ctl.run_with_stdin(&authenticate, &plaintext).await.json();
    assert_eq!(checked["status"], "KEY_STATUS_ACTIVE", "{checked}");
    assert_eq!(checked["principal"]["role"], "ROLE_ADMIN", "{checked}");
    assert_eq!(
        run(&["keys", "freeze", "ci", "-o", "json"]).await.json()["frozen"],
        true
    );
    let checked = ctl.run_with_stdin(&authenticate, &plaintext).await.json();
    assert_eq!(checked["status"], "KEY_STATUS_FROZEN", "{checked}");
    assert_eq!(
        run(&["keys", "unfreeze", "ci", "-o", "json"]).await.json()["frozen"],
        Value::Null
    );
    let unknown = ctl
        .run_with_stdin(&authenticate, "gw-not-a-key")
        .await
        .json();
    assert_eq!(unknown["status"], "KEY_STATUS_UNKNOWN", "{unknown}");
    run(&[
        "keys",
        "update",
        "ci",
        "--set",
        "allowed_models=[gpt-4o-mini]",
    ])
    .await
    .ok();
    assert_eq!(
        run(&["keys", "get", "ci", "-o", "json"]).await.json()["allowed_models"][0],
        "gpt-4o-mini"
    );
    run(&[
        "clients",
        "create",
        "mobile",
        "--set",
        "client_id=mobile-app",
        "--plan",
        "basic",
    ])
    .await
    .ok();
    assert!(run(&["clients", "list"]).await.ok().contains("mobile-app"));

    // The key authenticates as identity's AuthenticateKey sees it: through the edge later.
    run(&["keys", "delete", "ci"]).await.ok();
    let error = run(&["keys", "get", "ci"]).await.fails(5);
    assert!(error.contains("NOT_FOUND"), "{error}");
    run(&["members", "remove", "gold", "ada"]).await.ok();
    assert!(!run(&["members", "list", "gold"]).await.ok().contains("ada"));
    suite.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_quota_and_money_nouns_in_usd() {
    let suite = TestSuite::start(Backend::Sqlite).await.unwrap();
    let tenant = suite.tenant("acme").await;
    let ctl = Ctl::new(&suite);
    ctl.login("acme", "acme-admin", PASSWORD).await;
    ctl.run(&["groups", "create", "gold"]).await.ok();
    ctl.run(&[
        "apis",
        "create",
        "Echo",
        "--set",
        "slug=echo",
        "--set",
        "upstreams=[{url: 'http://127.0.0.1:9'}]",
    ])
    .await
    .ok();
    ctl.run(&[
        "apis",
        "update",
        "Echo",
        "--set",
        "timeouts.connect=2s",
        "--set",
        "timeouts.read=30s",
    ])
    .await
    .ok();
    ctl.run(&["apis", "update", "Echo", "--set", "timeouts.connect=3s"])
        .await
        .ok();
    let api = ctl.run(&["apis", "get", "Echo", "-o", "json"]).await.json();
    assert_eq!(
        api["timeouts"],
        serde_json::json!({"connect": "3s", "read": "30s"}),
        "an update keeps what it does not name"
    );
    assert!(
        ctl.run(&["apis", "list"])
            .await
            .ok()
            .contains("http://127.0.0.1:9")
    );

    let secret = ctl.dir.path().join("channel-key");
    std::fs::write(&secret, "sk-test-channel-key-9876\n").unwrap();
    let secret = secret.display().to_string();
    let channel = [
        "channels",
        "create",
        "main",
        "--set",
        "provider=OPENAI",
        "--set",
        "base_url=http://127.0.0.1:9/v1",
        "--set",
        "models=[gpt-4o-mini]",
        "--group",
        "gold",
        "--secret-file",
        &secret,
    ];
    ctl.run(&channel).await.ok();
    let channels = ctl
        .run(&["channels", "list", "--model", "gpt-4o-mini"])
        .await
        .ok();
    assert!(
        channels.contains("main") && channels.contains("OPENAI") && channels.contains("9876"),
        "{channels}"
    );
    assert!(
        !channels.contains("sk-test-channel-key"),
        "the provider key is write-only"
    );

    ctl.run(&[
        "prices",
        "create",
        "gpt-4o-mini",
        "--input-price",
        "0.15",
        "--output-price",
        "0.60",
    ])
    .await
    .ok();
    let prices = ctl.run(&["prices", "list"]).await.ok();
    assert!(
        prices.contains("$0.15") && prices.contains("$0.60"),
        "{prices}"
    );
    assert_eq!(
        ctl.run(&["prices", "get", "gpt-4o-mini", "-o", "json"])
            .await
            .json()["tenant_id"],
        tenant.id.as_str()
    );
    let error = ctl
        .run(&[
            "prices",
            "create",
            "gpt-4o",
            "--global",
            "--input-price",
            "1",
            "--output-price",
            "1",
        ])
        .await
        .fails(4);
    assert!(error.contains("PERMISSION_DENIED"), "{error}");
    ctl.run(&[
        "multipliers",
        "create",
        "--group",
        "gold",
        "--set",
        "multiplier_ppm=800000",
    ])
    .await
    .ok();
    assert_eq!(
        ctl.run(&["multipliers", "get", "gold", "-o", "json"])
            .await
            .json()["multiplier_ppm"],
        800_000
    );
    ctl.run(&[
        "group-prices",
        "create",
        "gpt-4o-mini",
        "--group",
        "gold",
        "--input-price",
        "0.1",
        "--output-price",
        "0.5",
    ])
    .await
    .ok();
    ctl.run(&[
        "group-prices",
        "update",
        "gold/gpt-4o-mini",
        "--output-price",
        "0.4",
    ])
    .await
    .ok();
    let group_price = ctl
        .run(&["group-prices", "get", "gold/gpt-4o-mini", "-o", "json"])
        .await
        .json();
    assert_eq!(group_price["output_micros_per_million_tokens"], 400_000);
    ctl.run(&[
        "plans",
        "create",
        "basic",
        "--set",
        "requests_per_minute=60",
        "--set",
        "algorithm=GCRA",
    ])
    .await
    .ok();
    ctl.run(&[
        "rules",
        "create",
        "gold-rpm",
        "--group",
        "gold",
        "--set",
        "dimension=REQUESTS",
        "--set",
        "window=MINUTE",
        "--set",
        "limit=100",
        "--set",
        "enabled=true",
    ])
    .await
    .ok();
    let rules = ctl.run(&["rules", "list", "--group", "gold"]).await.ok();
    assert!(
        rules.contains("gold-rpm") && rules.contains("REQUESTS") && rules.contains("MINUTE"),
        "{rules}"
    );

    // Money: adjust once per idempotency key, in USD both ways.
    let adjust = [
        "balances",
        "adjust",
        "--user",
        "acme-user",
        "--amount",
        "5",
        "--reason",
        "top up",
        "--idempotency-key",
        "k-1",
    ];
    ctl.run(&adjust).await.ok();
    ctl.run(&adjust).await.ok();
    let balance = ctl
        .run(&["balances", "show", "--user", "acme-user"])
        .await
        .ok();
    assert!(
        balance.lines().nth(1).unwrap().starts_with("$5.00"),
        "{balance}"
    );
    let ledger = ctl
        .run(&["ledger", "--user", "acme-user", "-o", "json"])
        .await
        .json();
    assert_eq!(
        ledger.as_array().unwrap().len(),
        1,
        "a retried adjustment is written once: {ledger}"
    );
    let debit = [
        "balances",
        "adjust",
        "--user",
        "acme-user",
        "--amount",
        "-9",
        "--reason",
        "x",
        "--idempotency-key",
        "k-2",
    ];
    assert!(
        ctl.run(&debit)
            .await
            .fails(6)
            .contains("FAILED_PRECONDITION")
    );
    let voucher = ctl
        .run(&[
            "vouchers",
            "create",
            "--amount",
            "1.25",
            "--max-uses",
            "2",
            "-o",
            "json",
        ])
        .await
        .json();
    let code = voucher["code"].as_str().unwrap().to_owned();
    assert!(ctl.run(&["vouchers", "list"]).await.ok().contains("$1.25"));
    // Users redeem for themselves.
    let user = Ctl::new(&suite);
    user.login("acme", "acme-user", PASSWORD).await;
    let redeemed = user
        .run(&["vouchers", "redeem", &code, "-o", "json"])
        .await
        .json();
    assert_eq!(redeemed["balance_micros"], 6_250_000);
    let again = user.run(&["vouchers", "redeem", &code]).await.fails(6);
    assert!(again.contains("FAILED_PRECONDITION"), "{again}");

    ctl.run(&["apis", "delete", "Echo"]).await.ok();
    ctl.run(&["apis", "get", "Echo"]).await.fails(5);
    suite.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_is_refused_admin_verbs_and_tenants_never_see_each_other() {
    let suite = TestSuite::start(Backend::Sqlite).await.unwrap();
    let _acme = suite.tenant("acme").await;
    let _globex = suite.tenant("globex").await;
    let admin = Ctl::new(&suite);
    admin.login("acme", "acme-admin", PASSWORD).await;
    admin
        .run(&[
            "apis",
            "create",
            "Secret",
            "--set",
            "slug=secret",
            "--set",
            "upstreams=[{url: 'http://127.0.0.1:9'}]",
        ])
        .await
        .ok();

    let user = Ctl::new(&suite);
    user.login("acme", "acme-user", PASSWORD).await;
    for refused in [
        vec!["tenants", "create", "evil"],
        vec!["apis", "create", "Mine", "--set", "slug=mine"],
        vec!["apis", "delete", "Secret"],
        vec!["plans", "create", "free"],
        vec![
            "balances",
            "adjust",
            "--amount",
            "100",
            "--reason",
            "x",
            "--idempotency-key",
            "k",
        ],
    ] {
        let error = user.run(&refused).await;
        assert!(
            error.code == std::process::ExitCode::from(4)
                || error.code == std::process::ExitCode::from(5),
            "{refused:?}: {error:?}"
        );
        assert!(
            error.stderr.contains("PERMISSION_DENIED") || error.stderr.contains("NOT_FOUND"),
            "{error:?}"
        );
    }
    let error = user.run(&["tenants", "create", "evil"]).await.fails(4);
    assert!(error.starts_with("error: PERMISSION_DENIED: "), "{error}");
    // Their own keys are theirs to manage.
    user.run(&["keys", "create", "mine"]).await.ok();
    assert!(user.run(&["keys", "list"]).await.ok().contains("mine"));

    let other = Ctl::new(&suite);
    other.login("globex", "globex-admin", PASSWORD).await;
    assert!(!other.run(&["apis", "list"]).await.ok().contains("Secret"));
    other.run(&["apis", "get", "Secret"]).await.fails(5);
    other.run(&["apis", "delete", "Secret"]).await.fails(5);
    other
        .run(&["--tenant", "acme", "apis", "list"])
        .await
        .fails(5);
    assert!(
        admin
            .run(&["apis", "get", "Secret"])
            .await
            .ok()
            .contains("secret"),
        "globex changed nothing"
    );
    suite.stop().await.unwrap();
}

/// logs list / show / tail and stats, over traffic through the edge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_edge_traffic_and_stats_count_it() {
    let suite = TestSuite::start(Backend::Sqlite).await.unwrap();
    let _acme = suite.tenant("acme").await;
    let ctl = Ctl::new(&suite);
    ctl.login("acme", "acme-admin", PASSWORD).await;
    let upstream = fixed_upstream().await;
    let upstreams = format!("upstreams=[{{url: 'http://{upstream}', weight: 1}}]");
    ctl.run(&[
        "apis",
        "create",
        "Echo",
        "--set",
        "slug=echo",
        "--set",
        &upstreams,
        "--set",
        "enabled=true",
        "--set",
        "body_capture={enabled: true, max_bytes: 4096}",
    ])
    .await
    .ok();
    let key = ctl
        .run(&["keys", "create", "traffic", "-o", "json"])
        .await
        .json()["key"]
        .as_str()
        .unwrap()
        .to_owned();

    let follower = ctl.sharing();
    let tail = tokio::spawn(async move {
        follower
            .run(&[
                "logs",
                "tail",
                "--count",
                "1",
                "--interval-ms",
                "200",
                "-o",
                "json",
            ])
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut status = (0, String::new());
    for _ in 0..100 {
        status = edge_get(suite.addresses.edge, "/acme/echo/hello", &key).await;
        if status.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        status.0, 200,
        "the edge serves the API and the key: {}",
        status.1
    );
    let mut listed = Value::Null;
    for _ in 0..100 {
        listed = ctl
            .run(&["logs", "list", "--status", "200", "-o", "json"])
            .await
            .json();
        if listed.as_array().is_some_and(|logs| !logs.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let id = listed[0]["event"]["event_id"].as_str().unwrap().to_owned();
    assert_eq!(listed[0]["event"]["path"], "/acme/echo/hello");
    let shown = ctl.run(&["logs", "show", &id]).await.ok();
    assert!(shown.contains("/acme/echo/hello"), "{shown}");
    let bodies = ctl.run(&["logs", "show", &id, "--bodies"]).await.ok();
    assert!(
        bodies.contains("--- response (text/plain, 2 bytes)\nok\n"),
        "{bodies}"
    );
    assert!(
        ctl.run(&["logs", "list", "--status", "500"])
            .await
            .ok()
            .lines()
            .count()
            == 1,
        "only the header"
    );

    let followed = tokio::time::timeout(Duration::from_secs(30), tail)
        .await
        .unwrap()
        .unwrap()
        .ok();
    let line: Value = serde_json::from_str(followed.lines().next().unwrap()).unwrap();
    assert_eq!(line["event"]["path"], "/acme/echo/hello", "{followed}");

    let stats = ctl.run(&["stats", "-o", "json"]).await.json();
    assert!(stats["request_count"].as_i64().unwrap() >= 1, "{stats}");
    assert!(ctl.run(&["stats"]).await.ok().contains("TOP KEYS"));
    suite.stop().await.unwrap();
}

/// An upstream answering every request `200 ok`.
async fn fixed_upstream() -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffer = [0_u8; 4096];
                while let Ok(read) = stream.read(&mut buffer).await {
                    if read == 0 {
                        return;
                    }
                    let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n\r\nok";
                    if stream.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// The status and answer of a GET through the edge with a key.
async fn edge_get(edge: std::net::SocketAddr, path: &str, key: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(edge).await else {
        return (0, String::new());
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nhost: edge\r\nx-api-key: {key}\r\nconnection: close\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).await.is_err() {
        return (0, String::new());
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|status| status.parse().ok())
        .unwrap_or(0);
    (status, text)
}
