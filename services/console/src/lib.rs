//! The web console: server-rendered pages (maud templates, htmx vendored
//! as a static file, no front-end build) over the suite's gRPC APIs,
//! called with the signed-in user's own JWT, so RBAC stays in the
//! services. Every answer carries a strict CSP; every state-changing form
//! a CSRF token.

use std::sync::Arc;

use axum::Router;
use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use gateway_runtime::CancellationToken;
use http::{HeaderValue, StatusCode, header};
use tokio::net::TcpListener;

pub mod clients;
pub mod config;
pub mod csrf;
pub mod layout;
pub mod pages;
pub mod session;

pub use config::Config;

gateway_runtime::process_config! {
    /// The configuration of the standalone `gateway-console` binary.
    pub struct BinaryConfig { console: Config }
}

/// What every page handler shares.
pub struct ConsoleState {
    pub config: Config,
    pub clients: clients::Clients,
    /// Keys the CSRF tokens: random per process (a restart asks forms to
    /// be reloaded, never to sign in again).
    pub csrf_key: [u8; 32],
}

pub type AppState = Arc<ConsoleState>;

/// The console, ready to serve.
pub struct Console {
    state: AppState,
}

impl Console {
    pub fn new(config: Config) -> anyhow::Result<Self> {
        use rand::RngCore as _;
        let mut csrf_key = [0_u8; 32];
        rand::rng().fill_bytes(&mut csrf_key);
        let clients = clients::Clients::new(&config)?;
        Ok(Self {
            state: Arc::new(ConsoleState {
                config,
                clients,
                csrf_key,
            }),
        })
    }

    /// Every page and static file.
    pub fn router(&self) -> Router {
        use pages::{
            account, ai, api_edit, apis, dashboard, keys, limits, logs, money, people, playground,
        };
        Router::new()
            .route("/", get(dashboard::show))
            .route("/login", get(account::login_page).post(account::login))
            .route("/signup", get(account::signup_page).post(account::signup))
            .route("/logout", post(account::logout))
            .route(
                "/password",
                get(account::password_page).post(account::change_password),
            )
            .route("/keys", get(keys::list).post(keys::create))
            .route("/keys/{id}/{verb}", post(keys::act))
            .route("/apis", get(apis::list).post(apis::create))
            .route("/apis/{id}", get(api_edit::show).post(api_edit::save))
            .route("/apis/{id}/delete", post(apis::delete))
            .route("/logs", get(logs::list))
            .route("/logs/{id}", get(logs::show))
            .route("/balance", get(money::show))
            .route("/balance/redeem", post(money::redeem))
            .route("/balance/adjust", post(money::adjust))
            .route(
                "/vouchers",
                get(money::vouchers).post(money::create_voucher),
            )
            .route("/channels", get(ai::channels).post(ai::create_channel))
            .route("/channels/{id}/delete", post(ai::delete_channel))
            .route("/prices", post(ai::create_price))
            .route("/prices/{id}/delete", post(ai::delete_price))
            .route("/playground", get(playground::show).post(playground::send))
            .route("/limits", get(limits::show))
            .route("/limits/plans", post(limits::create_plan))
            .route("/limits/clients", post(limits::create_client))
            .route("/limits/rules", post(limits::create_rule))
            .route("/limits/multipliers", post(limits::create_multiplier))
            .route("/limits/group-prices", post(limits::create_group_price))
            .route("/limits/{kind}/{id}/delete", post(limits::delete))
            .route("/users", get(people::users).post(people::create_user))
            .route("/users/{id}/{verb}", post(people::act))
            .route("/groups", get(people::groups).post(people::create_group))
            .route("/groups/{id}/members", post(people::add_member))
            .route("/static/{file}", get(static_file))
            .fallback(not_found)
            .layer(axum::middleware::from_fn_with_state(
                self.state.clone(),
                csrf::guard,
            ))
            .layer(axum::middleware::map_response(secure))
            .with_state(self.state.clone())
    }

    /// Serves until `shutdown` fires.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await?;
        Ok(())
    }
}

/// Only the console's own scripts and styles; no framing, no foreign
/// form targets; pages are never cached.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

async fn secure(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let fixed = [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "same-origin"),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

async fn static_file(Path(file): Path<String>) -> Response {
    let (body, kind): (&'static str, &'static str) = match file.as_str() {
        "htmx.min.js" => (include_str!("../static/htmx.min.js"), "text/javascript"),
        "console.js" => (include_str!("../static/console.js"), "text/javascript"),
        "console.css" => (include_str!("../static/console.css"), "text/css"),
        _ => return not_found().await,
    };
    let headers = [
        (header::CONTENT_TYPE, kind),
        (header::CACHE_CONTROL, "public, max-age=3600"),
    ];
    (headers, body).into_response()
}

async fn not_found() -> Response {
    let body = layout::notice("error", "There is no such page.");
    layout::page_with(StatusCode::NOT_FOUND, None, "Not found", body).into_response()
}
