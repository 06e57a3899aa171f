//! The suite as separate processes (the workspace's service binaries) on
//! fixed loopback ports, so each can be killed (SIGKILL) and restarted on
//! the same address; a private Redis, killed and restarted for real; and
//! PostgreSQL behind a TCP proxy that can cut every connection and refuse
//! new ones (the CI server is shared with other tests, so it is not
//! stopped itself).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use gateway_e2e::free_addr;
use gateway_e2e::{ADMIN_KEY, LOOPBACK_UPSTREAMS, url, workspace_binary};
use gateway_testkit::TestDatabase;
use tokio::task::JoinSet;

pub const SERVICES: [&str; 4] = ["identity", "catalog", "quota", "usage"];
const MASTER_KEY: &str = "2222222222222222222222222222222222222222222222222222222222222222";

/// A TCP proxy that can be cut (every connection closed, new ones
/// refused) and restored on the same port.
pub struct Proxy {
    pub addr: SocketAddr,
    upstream: SocketAddr,
    tasks: Option<JoinSet<()>>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let mut proxy = Self {
            addr: free_addr(),
            upstream,
            tasks: None,
        };
        proxy.restore().await;
        proxy
    }

    pub fn cut(&mut self) {
        // Dropping the set aborts the accept loop and, with it, the
        // connection tasks it owns.
        self.tasks = None;
    }

    pub async fn restore(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        let upstream = self.upstream;
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            let mut connections = JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                connections.spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        self.tasks = Some(tasks);
    }
}

/// The whole suite as processes, plus its stores.
pub struct Cluster {
    pub addrs: HashMap<&'static str, SocketAddr>,
    pub edge: SocketAddr,
    pub postgres: Proxy,
    pub redis_port: u16,
    children: HashMap<&'static str, Child>,
    redis: Option<Child>,
    databases: Vec<TestDatabase>,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// `None` when PostgreSQL is not configured (skipped; CI sets it).
    pub async fn start() -> Option<Self> {
        let mut databases = Vec::new();
        for _ in SERVICES {
            databases.push(TestDatabase::postgres().await?);
        }
        let server: SocketAddr = {
            let url = url::Url::parse(databases[0].url()).unwrap();
            let host = url.host_str().unwrap().to_owned();
            tokio::net::lookup_host((host, url.port().unwrap_or(5432)))
                .await
                .unwrap()
                .next()
                .unwrap()
        };
        let mut cluster = Self {
            addrs: SERVICES.iter().map(|name| (*name, free_addr())).collect(),
            edge: free_addr(),
            postgres: Proxy::start(server).await,
            redis_port: free_addr().port(),
            children: HashMap::new(),
            redis: None,
            databases,
            dir: tempfile::tempdir().unwrap(),
        };
        cluster.start_redis();
        for name in SERVICES {
            cluster.start_service(name);
            cluster.wait_serving(name).await;
        }
        cluster.start_service("edge");
        Some(cluster)
    }

    fn database_url(&self, name: &str) -> String {
        let index = SERVICES
            .iter()
            .position(|service| *service == name)
            .unwrap();
        let mut url = url::Url::parse(self.databases[index].url()).unwrap();
        url.set_port(Some(self.postgres.addr.port())).unwrap();
        url.to_string()
    }

    pub fn start_redis(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.redis_port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts (apt-get install redis-server)");
        self.redis = Some(child);
    }

    pub fn kill_redis(&mut self) {
        if let Some(mut child) = self.redis.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts `name` (a service or `edge`) on its address.
    pub fn start_service(&mut self, name: &'static str) {
        let mut command = Command::new(workspace_binary(&format!("gateway-{name}")));
        command
            .env_clear()
            .env("GATEWAY_AUTH_ADMIN_KEY", ADMIN_KEY)
            .env("GATEWAY_RUNTIME_OPS_ADDR", free_addr().to_string())
            .env("GATEWAY_TELEMETRY_LOG_FILTER", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file(self.dir.path(), name));
        for (key, value) in self.env_of(name) {
            command.env(key, value);
        }
        self.children.insert(name, command.spawn().unwrap());
    }

    fn env_of(&self, name: &str) -> Vec<(String, String)> {
        let identity = url(self.addrs["identity"]);
        let upper = name.to_uppercase();
        let mut env = vec![("GATEWAY_AUTH_IDENTITY_URL".to_owned(), identity.clone())];
        if name == "edge" {
            let spool = self.dir.path().join("edge-spool").display().to_string();
            env.extend([
                ("GATEWAY_EDGE_LISTEN_ADDR".to_owned(), self.edge.to_string()),
                ("GATEWAY_EDGE_SPOOL_DIR".to_owned(), spool),
                (
                    "GATEWAY_EGRESS_ALLOW".to_owned(),
                    LOOPBACK_UPSTREAMS.to_owned(),
                ),
            ]);
            for service in SERVICES {
                let key = format!("GATEWAY_EDGE_{}_URL", service.to_uppercase());
                env.push((key, url(self.addrs[service])));
            }
            return env;
        }
        env.extend([
            (
                format!("GATEWAY_{upper}_LISTEN_ADDR"),
                self.addrs[name].to_string(),
            ),
            (
                format!("GATEWAY_{upper}_DATABASE_URL"),
                self.database_url(name),
            ),
            (
                "GATEWAY_SECRETS_MASTER_KEY".to_owned(),
                MASTER_KEY.to_owned(),
            ),
            (
                "GATEWAY_BOOTSTRAP_PASSWORD".to_owned(),
                "chaos-bootstrap-password".to_owned(),
            ),
            (
                "GATEWAY_EGRESS_ALLOW".to_owned(),
                LOOPBACK_UPSTREAMS.to_owned(),
            ),
        ]);
        match name {
            "quota" => env.extend([
                (
                    "GATEWAY_QUOTA_REDIS_URL".to_owned(),
                    format!("redis://127.0.0.1:{}", self.redis_port),
                ),
                (
                    "GATEWAY_QUOTA_REDIS_TIMEOUT_MS".to_owned(),
                    "100".to_owned(),
                ),
            ]),
            "usage" => {
                let audit = self.dir.path().join("audit").display().to_string();
                env.push(("GATEWAY_USAGE_AUDIT_DIR".to_owned(), audit));
            }
            _ => {}
        }
        env
    }

    /// SIGKILL: no drain, no goodbye, as a crash or an OOM kill.
    pub fn kill(&mut self, name: &str) {
        if let Some(mut child) = self.children.remove(name) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether `name` is still running (it did not crash on its own).
    pub fn alive(&mut self, name: &str) -> bool {
        self.children
            .get_mut(name)
            .is_some_and(|child| child.try_wait().ok().flatten().is_none())
    }

    pub async fn wait_serving(&self, name: &str) {
        let service = match name {
            "identity" => gateway_identity::GRPC_SERVICE_NAME,
            "catalog" => gateway_catalog::GRPC_SERVICE_NAME,
            "quota" => gateway_quota::GRPC_SERVICE_NAME,
            _ => gateway_usage::GRPC_SERVICE_NAME,
        };
        let endpoint = url(self.addrs[name]);
        gateway_testkit::wait_for_grpc_health(&endpoint, service, Duration::from_secs(30)).await;
    }

    /// The log of `name`, for a failure message.
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.children.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.kill_redis();
    }
}

fn log_file(dir: &Path, name: &str) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{name}.log")))
        .unwrap()
}

/// Polls `ready` every 20 ms for up to `limit`; how long it took.
pub async fn time_until<F, Fut>(limit: Duration, mut ready: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < limit {
        if ready().await {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}
