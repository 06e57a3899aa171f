//! The console in a real browser (headless Chromium through chromedriver;
//! `.ci/run` installs both): a new tenant signs up, registers an API on a
//! local upstream, creates a key and reads it once, calls the edge with
//! it, and sees the request in the logs and on the dashboard. A USER is
//! refused admin actions by URL, another tenant's admin sees nothing of
//! the first, and forms without the session's CSRF token change nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use gateway_e2e::{Backend, TestSuite};
use gateway_testkit::browser::{self, Browser};

mod edge_support;

const PASSWORD: &str = "a-long-enough-password";

/// Where screenshots go: the test's temporary directory, or the one
/// `GATEWAY_TEST_SCREENSHOTS` names (to keep them and look at them).
fn screenshots() -> (tempfile::TempDir, std::path::PathBuf) {
    let temporary = tempfile::tempdir().unwrap();
    let dir = std::env::var_os("GATEWAY_TEST_SCREENSHOTS")
        .map_or_else(|| temporary.path().to_owned(), std::path::PathBuf::from);
    (temporary, dir)
}

/// Saves a screenshot of the page and checks it is not blank.
async fn snap(browser: &Browser, dir: &Path, name: &str) {
    let path = browser.screenshot(dir, name).await.unwrap();
    let colours = browser::colours(&std::fs::read(&path).unwrap()).unwrap();
    assert!(
        colours > 8,
        "{name}: the page looks blank ({colours} colours)"
    );
}

async fn sign_up(browser: &Browser, console: &str, tenant: &str) {
    browser.goto(&format!("{console}/signup")).await.unwrap();
    browser.fill("#tenant", tenant).await.unwrap();
    browser.fill("#username", "owner").await.unwrap();
    browser
        .fill("#email", &format!("owner@{tenant}.example"))
        .await
        .unwrap();
    browser.fill("#password", PASSWORD).await.unwrap();
    browser
        .click("form[action='/signup'] button")
        .await
        .unwrap();
    browser.until_text("main h1", "Dashboard").await.unwrap();
}

async fn log_in(browser: &Browser, console: &str, tenant: &str, username: &str) {
    browser.goto(&format!("{console}/login")).await.unwrap();
    browser.fill("#tenant", tenant).await.unwrap();
    browser.fill("#username", username).await.unwrap();
    browser.fill("#password", PASSWORD).await.unwrap();
    browser.click("form[action='/login'] button").await.unwrap();
    browser.until_text("main h1", "Dashboard").await.unwrap();
}

/// Registers `echo` on `upstream` through the APIs page.
async fn register_api(browser: &Browser, console: &str, upstream: std::net::SocketAddr) {
    browser.goto(&format!("{console}/apis")).await.unwrap();
    browser.fill("#name", "Echo").await.unwrap();
    browser.fill("#slug", "echo").await.unwrap();
    browser
        .fill("#upstreams", &format!("http://{upstream}/base 1"))
        .await
        .unwrap();
    browser.click("form[action='/apis'] button").await.unwrap();
    browser.until_text("main table", "Echo").await.unwrap();
}

/// Sets a read timeout and CORS on the API; a bad upstream is refused by
/// the catalog, its message shown, nothing saved.
async fn edit_policies(browser: &Browser) {
    browser.click("main table a").await.unwrap();
    browser.until_text("main h1", "API Echo").await.unwrap();
    browser.fill("#read_ms", "2500").await.unwrap();
    browser.fill("#add_prefix", "/v2").await.unwrap();
    browser.fill("#routes", "all prefix / get").await.unwrap();
    browser.click("#cors_enabled").await.unwrap();
    browser
        .fill("#cors_origins", "https://app.example")
        .await
        .unwrap();
    browser
        .click("main form button[type=submit]")
        .await
        .unwrap();
    browser.until_text("main h1", "API Echo").await.unwrap();
    assert_eq!(browser.value("#read_ms").await.unwrap(), "2500");
    assert_eq!(browser.value("#routes").await.unwrap(), "all prefix / GET");
    assert_eq!(
        browser.value("#cors_origins").await.unwrap(),
        "https://app.example"
    );
    browser
        .fill("#upstreams", "ftp://nowhere.example 1")
        .await
        .unwrap();
    browser
        .click("main form button[type=submit]")
        .await
        .unwrap();
    // The catalog's refusal, under the input it names.
    let refusal = browser.text("#upstreams ~ p.error").await.unwrap();
    assert!(!refusal.is_empty());
    let url = browser.url().await.unwrap();
    browser.goto(&url).await.unwrap();
    let upstreams = browser.value("#upstreams").await.unwrap();
    assert!(
        upstreams.starts_with("http://127.0.0.1:"),
        "{refusal}: {upstreams}"
    );
}

/// An admin adds a user and a group with that user in it; roles are not
/// theirs to change (identity keeps role changes for superadmins).
async fn people(browser: &Browser, console: &str, shots: &Path) {
    browser.goto(&format!("{console}/users")).await.unwrap();
    browser.until_text("#users", "acme-admin").await.unwrap();
    assert_eq!(
        browser.count("#users select").await.unwrap(),
        0,
        "an admin got a role select"
    );
    browser.fill("#username", "acme-new").await.unwrap();
    browser.fill("#email", "new@acme.example").await.unwrap();
    browser.fill("#password", PASSWORD).await.unwrap();
    browser.click("form[action='/users'] button").await.unwrap();
    let users = browser.until_text("#users", "acme-new").await.unwrap();
    let new_id = users
        .lines()
        .find(|line| line.contains("acme-new"))
        .and_then(|line| line.split_whitespace().find(|word| word.len() == 36))
        .unwrap()
        .to_owned();
    browser.goto(&format!("{console}/groups")).await.unwrap();
    browser.fill("#name", "vip").await.unwrap();
    browser.fill("#priority", "5").await.unwrap();
    browser
        .click("form[action='/groups'] button")
        .await
        .unwrap();
    browser
        .until_text("main", "vip (priority 5)")
        .await
        .unwrap();
    browser
        .fill("section.group input[type=text]", &new_id)
        .await
        .unwrap();
    browser.click("section.group button").await.unwrap();
    browser
        .until_text("section.group ul", "acme-new")
        .await
        .unwrap();
    snap(browser, shots, "groups").await;
    let group_id = browser.text("section.group p code").await.unwrap();
    limits(browser, console, &group_id).await;
    snap(browser, shots, "limits").await;
}

/// A plan, a group rule, a group multiplier and a group price, each in
/// its list once created; a bad number is refused with its field named.
async fn limits(browser: &Browser, console: &str, group_id: &str) {
    let url = format!("{console}/limits");
    browser.goto(&url).await.unwrap();
    browser.fill("#plan_name", "starter").await.unwrap();
    browser.fill("#requests_per_minute", "60").await.unwrap();
    browser.fill("#spend_per_day", "1.25").await.unwrap();
    browser
        .click("form[action='/limits/plans'] button")
        .await
        .unwrap();
    let plans = browser.until_text("#plans", "starter").await.unwrap();
    assert!(plans.contains("$1.250000"), "{plans}");
    browser.fill("#client_name", "mobile app").await.unwrap();
    browser.fill("#client_id", "mobile-1").await.unwrap();
    browser
        .click("form[action='/limits/clients'] button")
        .await
        .unwrap();
    browser.until_text("#clients", "mobile-1").await.unwrap();
    browser.fill("#rule_name", "vip-tokens").await.unwrap();
    browser.fill("#rule_group_id", group_id).await.unwrap();
    browser.fill("#limit", "1000").await.unwrap();
    browser
        .click("form[action='/limits/rules'] button")
        .await
        .unwrap();
    browser.until_text("#rules", "vip-tokens").await.unwrap();
    browser
        .fill("#multiplier_group_id", group_id)
        .await
        .unwrap();
    browser.fill("#multiplier", "0.8").await.unwrap();
    browser
        .click("form[action='/limits/multipliers'] button")
        .await
        .unwrap();
    browser.until_text("#multipliers", "0.800×").await.unwrap();
    browser.fill("#price_group_id", group_id).await.unwrap();
    browser.fill("#price_model", "gpt-test").await.unwrap();
    browser.fill("#price_input", "1").await.unwrap();
    browser.fill("#price_output", "4").await.unwrap();
    browser
        .click("form[action='/limits/group-prices'] button")
        .await
        .unwrap();
    browser
        .until_text("#group-prices", "$4.000000")
        .await
        .unwrap();
    browser.fill("#plan_name", "broken").await.unwrap();
    browser.fill("#spend_per_day", "lots").await.unwrap();
    browser
        .click("form[action='/limits/plans'] button")
        .await
        .unwrap();
    browser
        .until_text(".notice.error", "spend per day")
        .await
        .unwrap();
    let plans = browser.text("#plans").await.unwrap();
    assert!(!plans.contains("broken"), "{plans}");
}

/// The owner changes their password, logs out, and logs in with the new
/// one; the old one no longer works.
async fn change_password(browser: &Browser, console: &str) {
    let new = "an-even-longer-password";
    browser.goto(&format!("{console}/password")).await.unwrap();
    browser.fill("#current", PASSWORD).await.unwrap();
    browser.fill("#new", new).await.unwrap();
    browser
        .click("form[action='/password'] button")
        .await
        .unwrap();
    browser
        .until_text("main", "Your password is changed.")
        .await
        .unwrap();
    browser.click("header form button").await.unwrap();
    browser.until_text("main h1", "Log in").await.unwrap();
    for (password, css, expected) in [
        (PASSWORD, "main", "Wrong tenant"),
        (new, "main h1", "Dashboard"),
    ] {
        browser.fill("#tenant", "acme").await.unwrap();
        browser.fill("#username", "owner").await.unwrap();
        browser.fill("#password", password).await.unwrap();
        browser.click("form[action='/login'] button").await.unwrap();
        browser.until_text(css, expected).await.unwrap();
    }
}

/// Creates a key through the keys page; its plaintext, read once.
async fn create_key(browser: &Browser, console: &str, spend_limit: Option<&str>) -> String {
    browser.goto(&format!("{console}/keys")).await.unwrap();
    browser.fill("#name", "from-the-browser").await.unwrap();
    if let Some(limit) = spend_limit {
        browser.fill("#spend_limit", limit).await.unwrap();
    }
    browser.click("form[action='/keys'] button").await.unwrap();
    browser.until_text("main h1", "Your new key").await.unwrap();
    browser.text("#new-key").await.unwrap()
}

/// Reloads `path` until `css` shows `text` (usage lands asynchronously).
async fn until_shown(browser: &Browser, url: &str, css: &str, text: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        browser.goto(url).await.unwrap();
        let shown = browser.text(css).await.unwrap_or_default();
        if shown.contains(text) {
            return shown;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{url} never showed {text:?} in {css}: {shown:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_tenant_registers_an_api_creates_a_key_and_sees_its_traffic() {
    let Some(binaries) = browser::binaries() else {
        return;
    };
    let suite = TestSuite::start(Backend::Sqlite).await.unwrap();
    let console = format!("http://{}", suite.addresses.console);
    let (_shots, shots_dir) = screenshots();
    let shots_dir = shots_dir.as_path();
    let browser = Browser::start(&binaries).await.unwrap();
    sign_up(&browser, &console, "acme").await;
    snap(&browser, shots_dir, "dashboard").await;
    // htmx runs within the CSP and has read its configuration.
    let htmx = browser
        .script("return [typeof htmx, htmx.config.allowEval];")
        .await
        .unwrap();
    assert_eq!(htmx, serde_json::json!(["object", false]));
    register_api(&browser, &console, edge_support::start_upstream().await).await;
    snap(&browser, shots_dir, "apis").await;
    edit_policies(&browser).await;
    let key = create_key(&browser, &console, Some("5.00")).await;
    assert!(key.len() > 20, "{key:?}");
    snap(&browser, shots_dir, "new-key").await;
    // Shown once: the list has only its prefix.
    let listed = until_shown(
        &browser,
        &format!("{console}/keys"),
        "main table",
        "from-the-browser",
    )
    .await;
    assert!(!listed.contains(&key), "the key list shows the plaintext");
    assert!(listed.contains("$5.000000"), "{listed}");
    snap(&browser, shots_dir, "keys").await;

    let client = edge_support::http_client();
    let edge = suite.addresses.edge;
    let answer = until_ok(&client, edge, "/acme/echo/hello", &key).await;
    // The path prefix set on the API's page reached the edge.
    assert_eq!(answer["x-upstream-path"], "/base/v2/hello");
    let logs = until_shown(
        &browser,
        &format!("{console}/logs"),
        "main",
        "/acme/echo/hello",
    )
    .await;
    assert!(logs.contains("200"), "{logs}");
    snap(&browser, shots_dir, "logs").await;
    browser.click("#logs tbody a").await.unwrap();
    browser.until_text("main h1", "Request").await.unwrap();
    snap(&browser, shots_dir, "request").await;
    change_password(&browser, &console).await;
    let today = until_shown(&browser, &console, "#today-requests", "").await;
    assert!(today.trim().parse::<u64>().unwrap() >= 1, "{today}");
    browser.close().await;
    suite.stop().await.unwrap();
}

/// Calls the edge until the new key and API have reached it.
async fn until_ok(
    client: &edge_support::HttpClient,
    edge: std::net::SocketAddr,
    path: &str,
    key: &str,
) -> http::HeaderMap {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let answer =
            edge_support::call(client, edge, "GET", path, Some(key), edge_support::empty()).await;
        if answer.0 == http::StatusCode::OK {
            return answer.1;
        }
        assert!(std::time::Instant::now() < deadline, "{path}: {answer:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_and_tenants_see_only_what_the_services_allow() {
    let Some(binaries) = browser::binaries() else {
        return;
    };
    let suite = TestSuite::start(Backend::Sqlite).await.unwrap();
    let console = format!("http://{}", suite.addresses.console);
    let acme = suite.tenant("acme").await;
    suite.tenant("globex").await;
    edge_support::register_api(&suite, &acme, edge_support::start_upstream().await).await;
    let (_shots, shots_dir) = screenshots();
    let shots_dir = shots_dir.as_path();
    let browser = Browser::start(&binaries).await.unwrap();

    // A USER has no APIs section, and the action by URL is refused.
    log_in(&browser, &console, "globex", "globex-user").await;
    let nav = browser.text("header nav").await.unwrap();
    assert!(!nav.contains("APIs"), "{nav}");
    browser.goto(&format!("{console}/apis")).await.unwrap();
    let shown = browser.text("main").await.unwrap();
    if !shown.contains("Not allowed") {
        browser.fill("#name", "Mine").await.unwrap();
        browser.fill("#slug", "mine").await.unwrap();
        browser
            .fill("#upstreams", "http://127.0.0.1:9/")
            .await
            .unwrap();
        browser.click("form[action='/apis'] button").await.unwrap();
        browser.until_text("main", "Not allowed").await.unwrap();
    }
    browser.click("header form button").await.unwrap();
    browser.until_text("main h1", "Log in").await.unwrap();

    // acme's admin sees acme's API; globex's admin sees none of it.
    log_in(&browser, &console, "acme", "acme-admin").await;
    let nav = browser.text("header nav").await.unwrap();
    assert!(nav.contains("APIs"), "an admin has the APIs section: {nav}");
    until_shown(&browser, &format!("{console}/apis"), "main", "Echo").await;
    people(&browser, &console, shots_dir).await;
    browser.click("header form button").await.unwrap();
    log_in(&browser, &console, "globex", "globex-admin").await;
    let apis = until_shown(&browser, &format!("{console}/apis"), "main", "No APIs yet.").await;
    assert!(!apis.contains("Echo"), "{apis}");
    browser.close().await;
    suite.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forms_without_the_csrf_token_change_nothing_and_pages_carry_a_strict_csp() {
    let suite = TestSuite::start(Backend::Sqlite).await.unwrap();
    let acme = suite.tenant("acme").await;
    let client = edge_support::http_client();
    let console = suite.addresses.console;
    let login = edge_support::call(
        &client,
        console,
        "GET",
        "/login",
        None,
        edge_support::empty(),
    )
    .await;
    let csp = login.1["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(login.1["x-frame-options"], "DENY");

    forged_forms_are_refused(&client, console, &acme.admin_token).await;
    let mut identity = suite
        .identity_as(gateway_e2e::Credentials::bearer(&acme.admin_token))
        .await;
    let keys = identity
        .list_api_keys(gateway_proto::identity::v1::ListApiKeysRequest::default())
        .await
        .unwrap()
        .into_inner()
        .api_keys;
    assert!(
        keys.iter().all(|key| key.name != "forged"),
        "a forged form created a key"
    );

    // Without a session, pages send the browser to the login page.
    let page = edge_support::call(
        &client,
        console,
        "GET",
        "/keys",
        None,
        edge_support::empty(),
    )
    .await;
    assert_eq!(page.0, http::StatusCode::SEE_OTHER);
    assert_eq!(page.1["location"], "/login");
    suite.stop().await.unwrap();
}

/// Every state-changing form, whatever its page, without the session's
/// CSRF token: refused by the guard.
async fn forged_forms_are_refused(
    client: &edge_support::HttpClient,
    console: std::net::SocketAddr,
    token: &str,
) {
    let paths = [
        "/keys",
        "/apis",
        "/channels",
        "/vouchers",
        "/users",
        "/balance/adjust",
        "/logout",
    ];
    for path in paths {
        for csrf in ["&csrf=wrong", ""] {
            let form = bytes::Bytes::from(format!("name=forged{csrf}"));
            let forged = http::Request::post(format!("http://{console}{path}"))
                .header("cookie", format!("gw_session={}", token))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(http_body_util::BodyExt::boxed(http_body_util::Full::new(
                    form,
                )))
                .unwrap();
            let answer = client.request(forged).await.unwrap();
            assert_eq!(answer.status(), http::StatusCode::FORBIDDEN, "{path}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_prices_a_channel_and_a_user_redeems_a_voucher_and_chats() {
    use gateway_testkit::providers::{Behaviour, openai};
    let Some(binaries) = browser::binaries() else {
        return;
    };
    let suite = TestSuite::start(Backend::Sqlite).await.unwrap();
    let console = format!("http://{}", suite.addresses.console);
    suite.tenant("acme").await;
    let (upstream, provider) = openai::start(Behaviour::Answer).await;
    let (_shots, shots_dir) = screenshots();
    let shots_dir = shots_dir.as_path();
    let browser = Browser::start(&binaries).await.unwrap();

    offer_operator_channel(&browser, &console, upstream, shots_dir).await;
    redeem_voucher(&browser, &console, shots_dir).await;
    let key = create_key(&browser, &console, None).await;
    chat_in_playground(&browser, &console, &key).await;
    snap(&browser, shots_dir, "playground").await;
    let sent = provider.received();
    assert_eq!(
        sent.last().unwrap().headers["authorization"],
        "Bearer sk-operator-1234"
    );
    browser.close().await;
    suite.stop().await.unwrap();
}

/// The operator offers a channel to every tenant, at a global price; the
/// provider key is shown only by its last four characters.
async fn offer_operator_channel(
    browser: &Browser,
    console: &str,
    upstream: std::net::SocketAddr,
    shots: &Path,
) {
    browser.goto(&format!("{console}/login")).await.unwrap();
    browser.fill("#tenant", "system").await.unwrap();
    browser.fill("#username", "admin").await.unwrap();
    browser
        .fill("#password", gateway_e2e::BOOTSTRAP_PASSWORD)
        .await
        .unwrap();
    browser.click("form[action='/login'] button").await.unwrap();
    browser.until_text("main h1", "Dashboard").await.unwrap();
    browser.goto(&format!("{console}/channels")).await.unwrap();
    browser.fill("#name", "operator-gpt").await.unwrap();
    browser
        .fill("#base_url", &format!("http://{upstream}"))
        .await
        .unwrap();
    browser.fill("#secret", "sk-operator-1234").await.unwrap();
    browser.fill("#models", "gpt-test").await.unwrap();
    browser.click("#shared").await.unwrap();
    browser
        .click("form[action='/channels'] button")
        .await
        .unwrap();
    let channels = browser
        .until_text("#channels", "operator-gpt")
        .await
        .unwrap();
    assert!(
        channels.contains("…1234") && !channels.contains("sk-operator"),
        "{channels}"
    );
    assert!(channels.contains("every tenant"), "{channels}");
    browser.fill("#model", "gpt-test").await.unwrap();
    browser.fill("#input", "2").await.unwrap();
    browser.fill("#output", "8").await.unwrap();
    browser.click("#global").await.unwrap();
    browser
        .click("form[action='/prices'] button")
        .await
        .unwrap();
    browser.until_text("#prices", "global").await.unwrap();
    snap(browser, shots, "channels").await;
    browser.click("header form button").await.unwrap();
}

/// acme's admin makes a voucher; acme's user redeems it.
async fn redeem_voucher(browser: &Browser, console: &str, shots: &Path) {
    log_in(browser, console, "acme", "acme-admin").await;
    // The admin credits their own balance (the form's default user).
    browser.goto(&format!("{console}/balance")).await.unwrap();
    browser.fill("#amount", "2.00").await.unwrap();
    browser.fill("#reason", "welcome credit").await.unwrap();
    browser
        .click("form[action='/balance/adjust'] button")
        .await
        .unwrap();
    browser.until_text("#balance", "$2.000000").await.unwrap();
    let ledger = browser
        .until_text("#ledger", "welcome credit")
        .await
        .unwrap();
    assert!(ledger.contains("adjustment"), "{ledger}");
    browser.goto(&format!("{console}/vouchers")).await.unwrap();
    browser.fill("#amount", "3.50").await.unwrap();
    browser
        .click("form[action='/vouchers'] button")
        .await
        .unwrap();
    let code = browser.text("#new-voucher").await.unwrap();
    browser.click("header form button").await.unwrap();
    log_in(browser, console, "acme", "acme-user").await;
    browser.goto(&format!("{console}/balance")).await.unwrap();
    browser.fill("#code", &code).await.unwrap();
    browser
        .click("form[action='/balance/redeem'] button")
        .await
        .unwrap();
    browser
        .until_text("main", "Redeemed: $3.500000 credited.")
        .await
        .unwrap();
    browser.until_text("#balance", "$3.500000").await.unwrap();
    snap(browser, shots, "balance").await;
}

/// The user's key chats in the playground; the answer streams in.
async fn chat_in_playground(browser: &Browser, console: &str, key: &str) {
    use gateway_testkit::providers;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        browser
            .goto(&format!("{console}/playground"))
            .await
            .unwrap();
        browser.fill("#key", key).await.unwrap();
        browser.fill("#model", "gpt-test").await.unwrap();
        browser.fill("#message", "Say hello.").await.unwrap();
        browser
            .click("form[action='/playground'] button")
            .await
            .unwrap();
        let answer = browser.text("#answer").await.unwrap_or_default();
        if answer.contains(providers::TEXT) {
            break;
        }
        // The new key or channel may not have reached the edge yet.
        assert!(
            std::time::Instant::now() < deadline,
            "the playground answered {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
