//! `gatewayd`: all five services in one process on the embedded default
//! (SQLite files under `./data`, in-memory limits), for a one-command start.
//! Tests start the same suite in-process on ephemeral ports.

use std::net::SocketAddr;

use anyhow::Context as _;
use gateway_catalog::Catalog;
use gateway_edge::Edge;
use gateway_identity::{BootstrapConfig, BootstrapOutcome, Identity};
use gateway_quota::Quota;
use gateway_runtime::CancellationToken;
use gateway_runtime::ops::Readiness;
use gateway_runtime::process::RuntimeConfig;
use gateway_usage::Usage;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

gateway_runtime::process_config! {
    /// `gatewayd`'s configuration: every service's section in one file.
    pub struct SuiteConfig {
        auth: gateway_auth::AuthConfig,
        secrets: gateway_secrets::SecretsConfig,
        egress: gateway_egress::EgressConfig,
        bootstrap: BootstrapConfig,
        identity: gateway_identity::Config,
        catalog: gateway_catalog::Config,
        quota: gateway_quota::Config,
        usage: gateway_usage::Config,
        edge: gateway_edge::Config,
        console: gateway_console::Config,
        demo: demo::DemoConfig,
    }
}

pub mod demo;

/// The readiness component of the in-process edge's catalog snapshot.
pub const EDGE_CATALOG: &str = "edge.catalog";

/// The suite's bound listeners, one per service.
pub struct Listeners {
    pub identity: TcpListener,
    pub catalog: TcpListener,
    pub quota: TcpListener,
    pub usage: TcpListener,
    pub edge: TcpListener,
    pub console: TcpListener,
}

/// Where each service of a running suite listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addresses {
    pub identity: SocketAddr,
    pub catalog: SocketAddr,
    pub quota: SocketAddr,
    pub usage: SocketAddr,
    pub edge: SocketAddr,
    pub console: SocketAddr,
}

impl Listeners {
    /// Binds the addresses the config names.
    pub async fn bind(config: &SuiteConfig) -> anyhow::Result<Self> {
        Ok(Self {
            identity: gateway_runtime::bind("identity grpc", config.identity.listen_addr).await?,
            catalog: gateway_runtime::bind("catalog grpc", config.catalog.listen_addr).await?,
            quota: gateway_runtime::bind("quota grpc", config.quota.listen_addr).await?,
            usage: gateway_runtime::bind("usage grpc", config.usage.listen_addr).await?,
            edge: gateway_runtime::bind("edge http", config.edge.listen_addr).await?,
            console: gateway_runtime::bind("console http", config.console.listen_addr).await?,
        })
    }

    /// Binds every service to an ephemeral loopback port (tests).
    pub async fn ephemeral() -> anyhow::Result<Self> {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        Ok(Self {
            identity: gateway_runtime::bind("identity grpc", any).await?,
            catalog: gateway_runtime::bind("catalog grpc", any).await?,
            quota: gateway_runtime::bind("quota grpc", any).await?,
            usage: gateway_runtime::bind("usage grpc", any).await?,
            edge: gateway_runtime::bind("edge http", any).await?,
            console: gateway_runtime::bind("console http", any).await?,
        })
    }

    pub fn addresses(&self) -> anyhow::Result<Addresses> {
        Ok(Addresses {
            identity: self.identity.local_addr()?,
            catalog: self.catalog.local_addr()?,
            quota: self.quota.local_addr()?,
            usage: self.usage.local_addr()?,
            edge: self.edge.local_addr()?,
            console: self.console.local_addr()?,
        })
    }
}

/// The suite with every store opened and migrated, ready to serve.
pub struct Suite {
    identity: Identity,
    catalog: Catalog,
    quota: Quota,
    usage: Usage,
    edge_config: gateway_edge::Config,
    console_config: gateway_console::Config,
    egress: gateway_egress::EgressPolicy,
    auth: gateway_auth::AuthConfig,
    runtime: RuntimeConfig,
    /// What the first-start bootstrap did (a generated password is shown once).
    pub bootstrap: BootstrapOutcome,
}

impl Suite {
    /// Opens every store. Services that call identity are pointed at
    /// `addresses.identity`, whatever `auth.identity_url` says.
    pub async fn open(config: &SuiteConfig, addresses: &Addresses) -> anyhow::Result<Self> {
        let mut auth = gateway_auth::AuthConfig {
            identity_url: loopback_url(addresses.identity),
            ..config.auth.clone()
        };
        // The edge calls the services as superadmin with the admin key. With
        // none configured, the process makes one up: random, held in memory
        // only, never logged, gone at exit.
        if auth.admin_key.is_empty() {
            use rand::RngCore as _;
            let mut bytes = [0_u8; 32];
            rand::rng().fill_bytes(&mut bytes);
            let key: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
            auth.admin_key = key.as_str().into();
        }
        let secrets = gateway_secrets::SecretBox::from_config(&config.secrets)?;
        let egress = gateway_egress::EgressPolicy::from_config(&config.egress)
            .map_err(|message| anyhow::anyhow!("egress.allow: {message}"))?;
        let identity = Identity::open(&config.identity, &auth, &secrets)
            .await
            .context("failed to open identity")?;
        let bootstrap = identity.bootstrap(&config.bootstrap).await?;
        Ok(Self {
            identity,
            catalog: Catalog::open(&config.catalog, &auth, &secrets, egress.clone())
                .await
                .context("failed to open catalog")?,
            quota: Quota::open(&config.quota, &auth)
                .await
                .context("failed to open quota")?,
            usage: Usage::open(&config.usage, &auth)
                .await
                .context("failed to open usage")?,
            edge_config: config.edge.clone(),
            console_config: config.console.clone(),
            egress,
            auth: auth.clone(),
            runtime: config.runtime.clone(),
            bootstrap,
        })
    }

    /// The admin key the suite's services accept (configured or generated).
    pub fn admin_key(&self) -> String {
        self.auth.admin_key.expose().to_owned()
    }

    /// Serves every service until `shutdown` fires or one of them fails;
    /// a failure stops the others, and the first error is returned.
    /// `readiness` gains `edge.catalog`, ready once the edge has loaded the
    /// catalog snapshot (before that every API would answer 404).
    pub async fn serve(
        self,
        listeners: Listeners,
        shutdown: CancellationToken,
        readiness: Readiness,
    ) -> anyhow::Result<()> {
        let addresses = listeners.addresses()?;
        // In one process the edge calls the services where they really
        // listen, whatever the [edge] URLs say.
        let edge_config = gateway_edge::Config {
            identity_url: loopback_url(addresses.identity),
            catalog_url: loopback_url(addresses.catalog),
            quota_url: loopback_url(addresses.quota),
            usage_url: loopback_url(addresses.usage),
            ..self.edge_config
        };
        // The console calls the services, and shows the edge, where they
        // really listen.
        let console = gateway_console::Console::new(gateway_console::Config {
            identity_url: loopback_url(addresses.identity),
            catalog_url: loopback_url(addresses.catalog),
            quota_url: loopback_url(addresses.quota),
            usage_url: loopback_url(addresses.usage),
            edge_url: loopback_url(addresses.edge),
            ..self.console_config
        })
        .context("failed to start the console")?;
        let runtime = self.runtime;
        let grace = runtime.shutdown_grace();
        let edge = Edge::new(edge_config, &self.auth, self.egress, &shutdown)
            .context("failed to start the edge")?;
        readiness.register(EDGE_CATALOG);
        readiness.add_view("/admin/edge", edge.admin_view());
        let catalog = edge.catalog();
        tokio::spawn(async move {
            while !catalog.is_primed() {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            readiness.set_ready(EDGE_CATALOG, true);
        });
        let mut tasks = JoinSet::new();
        tasks.spawn({
            let (shutdown, runtime) = (shutdown.clone(), runtime.clone());
            async move {
                self.identity
                    .serve(listeners.identity, shutdown, &runtime)
                    .await
                    .context("identity")
            }
        });
        tasks.spawn({
            let (shutdown, runtime) = (shutdown.clone(), runtime.clone());
            async move {
                self.catalog
                    .serve(listeners.catalog, shutdown, &runtime)
                    .await
                    .context("catalog")
            }
        });
        tasks.spawn({
            let (shutdown, runtime) = (shutdown.clone(), runtime.clone());
            async move {
                self.quota
                    .serve(listeners.quota, shutdown, &runtime)
                    .await
                    .context("quota")
            }
        });
        tasks.spawn({
            let (shutdown, runtime) = (shutdown.clone(), runtime.clone());
            async move {
                self.usage
                    .serve(listeners.usage, shutdown, &runtime)
                    .await
                    .context("usage")
            }
        });
        tasks.spawn({
            let shutdown = shutdown.clone();
            async move {
                edge.serve(listeners.edge, shutdown, grace).await;
                Ok(())
            }
        });
        tasks.spawn({
            let shutdown = shutdown.clone();
            async move {
                console
                    .serve(listeners.console, shutdown)
                    .await
                    .context("console")
            }
        });

        let mut first_error = None;
        while let Some(joined) = tasks.join_next().await {
            let result = joined
                .context("a service task panicked")
                .and_then(|result| result);
            if let Err(error) = result {
                tracing::error!(error = %format!("{error:#}"), "service failed; stopping the suite");
                shutdown.cancel();
                first_error.get_or_insert(error);
            } else if !shutdown.is_cancelled() {
                // A service that stops on its own leaves the suite half up.
                tracing::error!("a service stopped unexpectedly; stopping the suite");
                shutdown.cancel();
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// `http://127.0.0.1:port` for a listener bound to any address.
fn loopback_url(addr: SocketAddr) -> String {
    let host = if addr.ip().is_unspecified() {
        std::net::IpAddr::from([127, 0, 0, 1])
    } else {
        addr.ip()
    };
    format!("http://{}", SocketAddr::new(host, addr.port()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_bind_address_is_called_on_loopback() {
        assert_eq!(
            loopback_url("0.0.0.0:50051".parse().unwrap()),
            "http://127.0.0.1:50051"
        );
        assert_eq!(
            loopback_url("10.1.2.3:8080".parse().unwrap()),
            "http://10.1.2.3:8080"
        );
        assert_eq!(loopback_url("[::1]:80".parse().unwrap()), "http://[::1]:80");
    }
}
