//! apply / dry-run / prune / idempotence / export round trip, on the
//! sample file in deploy/examples.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use gateway_e2e::{Backend, TestSuite};

use super::{Ctl, PASSWORD};

const SAMPLE: &str = include_str!("../../../../deploy/examples/gateway.yaml");
const SECRETS: [(&str, &str); 4] = [
    ("DEMO_ADMIN_PASSWORD", "correct-horse-battery-1"),
    ("DEMO_DEV_PASSWORD", "staple-gun-lantern-22"),
    ("HTTPBIN_TOKEN", "httpbin-token-3333"),
    ("OPENAI_API_KEY", "sk-openai-key-4444"),
];

/// The sample with its `{env: ...}` secrets read from files in `dir`
/// (tests may not set environment variables).
fn sample_in(dir: &Path) -> String {
    let mut text = SAMPLE.to_owned();
    for (variable, value) in SECRETS {
        let path = dir.join(variable);
        std::fs::write(&path, value).unwrap();
        text = text.replace(
            &format!("{{env: {variable}}}"),
            &format!("{{file: {}}}", path.display()),
        );
    }
    let mut live = text
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'));
    assert!(
        !live.any(|line| line.contains("{env:")),
        "every secret of the sample is replaced"
    );
    text
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sample_applies_re_applies_as_no_changes_and_exports_round_trip() {
    let suite = TestSuite::start(Backend::Sqlite).await.unwrap();
    let ctl = Ctl::new(&suite);
    ctl.login_superadmin().await;
    let dir = tempfile::tempdir().unwrap();
    let sample = write(dir.path(), "gateway.yaml", &sample_in(dir.path()));

    let plan = ctl.run(&["apply", "-f", &sample, "--dry-run"]).await.ok();
    for line in [
        "+ tenant demo",
        "+ demo: api HTTPBin",
        "+ demo: channel openai-main",
        "+ demo: key demo-dev/ci",
        "+ demo: member gold/demo-dev",
    ] {
        assert!(
            plan.lines().any(|shown| shown.starts_with(line)),
            "{line:?} in {plan}"
        );
    }
    assert!(
        plan.contains("    timeouts.connect: \"2s\""),
        "creates list their fields: {plan}"
    );
    assert!(plan.contains("(dry run: nothing was changed)"), "{plan}");
    assert!(
        !ctl.run(&["tenants", "list"]).await.ok().contains("demo"),
        "a dry run changes nothing"
    );
    let counted = ctl
        .run(&["apply", "-f", &sample, "--dry-run", "-o", "json"])
        .await
        .json();
    assert_eq!(counted["update"], 0);
    assert!(counted["create"].as_u64().unwrap() >= 15, "{counted}");

    let keys_out = dir.path().join("keys.yaml");
    let applied = ctl
        .run(&[
            "apply",
            "-f",
            &sample,
            "--keys-out",
            &keys_out.display().to_string(),
        ])
        .await;
    assert!(applied.stderr.contains("Applied:"), "{applied:?}");
    let keys = std::fs::read_to_string(&keys_out).unwrap();
    assert!(keys.contains("demo/demo-dev/ci: "), "{keys}");
    assert_eq!(
        std::fs::metadata(&keys_out).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let demo = |args: &[&str]| {
        let mut all = vec!["--tenant", "demo"];
        all.extend_from_slice(args);
        all.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let api = ctl
        .run(
            &demo(&["apis", "get", "HTTPBin", "-o", "json"])
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        )
        .await
        .json();
    assert_eq!(api["timeouts"]["connect"], "2s");
    assert_eq!(api["upstream_auth"]["secret_hint"], "3333");
    assert_eq!(api["auth"]["mode"], "AUTH_MODE_KEY");
    let members = ctl
        .run(
            &demo(&["members", "list", "gold"])
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        )
        .await
        .ok();
    assert!(members.contains("demo-dev"), "{members}");
    // The people it made can log in with the passwords from their files.
    let dev = Ctl::new(&suite);
    dev.login("demo", "demo-dev", "staple-gun-lantern-22").await;

    assert_eq!(
        ctl.run(&["apply", "-f", &sample]).await.ok(),
        "no changes\n",
        "a second apply changes nothing"
    );

    // A changed field is an update, field by field; a removed price stays until --prune.
    let changed = std::fs::read_to_string(&sample)
        .unwrap()
        .replace("connect: 2s", "connect: 5s");
    let changed = changed.replace("      - {model: gpt-4o, input_micros_per_million_tokens: 2500000, output_micros_per_million_tokens: 10000000}\n", "");
    let changed = write(dir.path(), "changed.yaml", &changed);
    let plan = ctl.run(&["apply", "-f", &changed]).await.ok();
    assert!(
        plan.contains("~ demo: api HTTPBin\n    timeouts.connect: \"2s\" -> \"5s\"\n"),
        "{plan}"
    );
    assert!(
        plan.contains("Plan: 0 to create, 1 to update, 0 to delete."),
        "{plan}"
    );
    let plan = ctl.run(&["apply", "-f", &changed, "--prune"]).await.ok();
    assert!(plan.contains("- demo: price gpt-4o\n"), "{plan}");
    assert!(plan.contains("0 to update, 1 to delete"), "{plan}");
    assert_eq!(
        ctl.run(&["apply", "-f", &changed, "--prune"]).await.ok(),
        "no changes\n"
    );

    // A new secret is seen by its hint and sent; the old one is never shown.
    std::fs::write(dir.path().join("OPENAI_API_KEY"), "sk-rotated-key-5555").unwrap();
    let plan = ctl.run(&["apply", "-f", &changed]).await.ok();
    assert!(
        plan.contains(
            "~ demo: channel openai-main\n    secret: \"(secret ...4444)\" -> \"(secret ...5555)\""
        ),
        "{plan}"
    );
    let channel = ctl
        .run(
            &demo(&["channels", "get", "openai-main", "-o", "json"])
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        )
        .await
        .json();
    assert_eq!(channel["secret_hint"], "5555");

    // Export, then apply the export: nothing to do; no secret in the file.
    let exported = ctl.run(&["--tenant", "demo", "export"]).await.ok();
    for (_, value) in SECRETS {
        assert!(
            !exported.contains(value),
            "export holds no secret: {exported}"
        );
    }
    assert!(
        exported.contains("stored: '5555'") || exported.contains("stored: \"5555\""),
        "{exported}"
    );
    assert!(
        exported.contains("allowed_groups:\n      - gold") || exported.contains("- gold"),
        "{exported}"
    );
    let exported = write(dir.path(), "exported.yaml", &exported);
    assert_eq!(
        ctl.run(&["apply", "-f", &exported, "--prune"]).await.ok(),
        "no changes\n"
    );

    // The operator's export: every tenant and the global prices.
    let price = ["prices", "create", "gpt-4o", "--global"];
    let price = [
        &price[..],
        &["--input-price", "2.5", "--output-price", "10"],
    ]
    .concat();
    ctl.run(&price).await.ok();
    let everything = ctl.run(&["export"]).await.ok();
    assert!(
        everything.contains("- slug: system") && everything.contains("- slug: demo"),
        "{everything}"
    );
    assert!(everything.contains("global:\n  prices:"), "{everything}");
    let everything = write(dir.path(), "everything.yaml", &everything);
    assert_eq!(
        ctl.run(&["apply", "-f", &everything]).await.ok(),
        "no changes\n"
    );
    suite.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_refuses_inline_secrets_unknown_names_and_users() {
    let suite = TestSuite::start(Backend::Sqlite).await.unwrap();
    let _acme = suite.tenant("acme").await;
    let admin = Ctl::new(&suite);
    admin.login("acme", "acme-admin", PASSWORD).await;
    let dir = tempfile::tempdir().unwrap();

    let inline = "tenants:\n  - slug: acme\n    channels:\n      - {name: c, provider: OPENAI, base_url: 'https://api.openai.com/v1', secret: sk-inline}\n";
    let error = admin
        .run(&["apply", "-f", &write(dir.path(), "inline.yaml", inline)])
        .await
        .fails(2);
    assert!(error.contains("never inline"), "{error}");
    let unknown = "tenants:\n  - slug: acme\n    rules:\n      - {name: r, group: nosuch, dimension: REQUESTS, window: MINUTE, limit: 5}\n";
    let error = admin
        .run(&["apply", "-f", &write(dir.path(), "unknown.yaml", unknown)])
        .await
        .fails(5);
    assert!(error.contains("no group named \"nosuch\""), "{error}");
    let jwt = |secret: &str| {
        format!(
            "tenants:\n  - slug: acme\n    apis:\n      - {{name: j, slug: jwt-api, upstreams: [{{url: 'http://127.0.0.1:9', weight: 1}}], \
             auth: {{mode: JWT, jwt: {{algorithms: [HS256], hs256_secret: {secret}}}}}}}\n      \
             - {{name: b, slug: basic-api, upstreams: [{{url: 'http://127.0.0.1:9', weight: 1}}], \
             auth: {{mode: BASIC, basic: {{users: [{{username: bob, password: {{file: {}}}}}]}}}}}}\n",
            dir.path().join("bob").display()
        )
    };
    let error = admin
        .run(&[
            "apply",
            "-f",
            &write(
                dir.path(),
                "jwt.yaml",
                &jwt("an-inline-hs256-secret-of-32-bytes-or-more"),
            ),
        ])
        .await
        .fails(2);
    assert!(error.contains("never inline"), "{error}");
    // Secrets inside the message: sent, compared by their hint, never shown.
    std::fs::write(dir.path().join("bob"), "bob-basic-password").unwrap();
    std::fs::write(
        dir.path().join("hs"),
        "an-hs256-secret-of-32-bytes-or-more-aaaa",
    )
    .unwrap();
    let by_file = write(
        dir.path(),
        "jwt.yaml",
        &jwt(&format!("{{file: {}}}", dir.path().join("hs").display())),
    );
    admin.run(&["apply", "-f", &by_file]).await.ok();
    assert_eq!(
        admin.run(&["apply", "-f", &by_file]).await.ok(),
        "no changes\n"
    );
    std::fs::write(
        dir.path().join("hs"),
        "an-hs256-secret-of-32-bytes-or-more-bbbb",
    )
    .unwrap();
    let plan = admin.run(&["apply", "-f", &by_file]).await.ok();
    assert!(
        plan.contains(
            "~ acme: api j\n    auth.jwt.hs256_secret: \"(secret ...aaaa)\" -> \"(secret ...bbbb)\""
        ),
        "{plan}"
    );
    assert_eq!(
        admin.run(&["apply", "-f", &by_file]).await.ok(),
        "no changes\n"
    );

    let typo = "tenants:\n  - slug: acme\n    plans:\n      - {name: p, requests_per_minut: 5}\n";
    let error = admin
        .run(&["apply", "-f", &write(dir.path(), "typo.yaml", typo)])
        .await
        .fails(2);
    assert!(error.contains("requests_per_minut"), "{error}");

    // A tenant admin applies their own tenant; a USER is refused.
    let plans = "tenants:\n  - slug: acme\n    plans:\n      - {name: p, requests_per_minute: 5}\n";
    let plans = write(dir.path(), "plans.yaml", plans);
    admin.run(&["apply", "-f", &plans]).await.ok();
    assert_eq!(
        admin.run(&["apply", "-f", &plans]).await.ok(),
        "no changes\n"
    );
    let user = Ctl::new(&suite);
    user.login("acme", "acme-user", PASSWORD).await;
    let refused = user.run(&["apply", "-f", &plans]).await.fails(4);
    assert!(refused.contains("PERMISSION_DENIED"), "{refused}");
    suite.stop().await.unwrap();
}
