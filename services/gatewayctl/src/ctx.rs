//! What every command runs with: the services' clients carrying the
//! caller's credentials, the output format, the tenant to act in, and
//! where text goes (a terminal, or a test's buffer).

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gateway_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use gateway_proto::identity::v1::identity_service_client::IdentityServiceClient;
use gateway_proto::quota::v1::quota_service_client::QuotaServiceClient;
use gateway_proto::usage::v1::usage_service_client::UsageServiceClient;
use tokio::sync::OnceCell;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::error::{CliError, CliResult};
use crate::output::Format;

/// Standard streams, replaceable so tests run commands in-process.
pub struct Io {
    pub stdout: Box<dyn Write + Send>,
    pub stderr: Box<dyn Write + Send>,
    pub stdin: Box<dyn Read + Send>,
    /// Whether stderr is a terminal (progress bars are drawn only there).
    pub interactive: bool,
}

impl Io {
    pub fn system() -> Self {
        use std::io::IsTerminal;
        Self {
            stdout: Box::new(std::io::stdout()),
            stderr: Box::new(std::io::stderr()),
            stdin: Box::new(std::io::stdin()),
            interactive: std::io::stderr().is_terminal(),
        }
    }
}

/// The service endpoints, resolved from flags, env and the context.
#[derive(Clone, Debug)]
pub struct Endpoints {
    pub identity: String,
    pub catalog: String,
    pub quota: String,
    pub usage: String,
}

/// How calls prove who the caller is.
#[derive(Clone, Debug)]
pub enum Credential {
    Bearer(String),
    AdminKey(String),
    Anonymous,
}

/// Adds the credential to every call.
#[derive(Clone)]
pub struct Auth(Option<(&'static str, tonic::metadata::AsciiMetadataValue)>);

impl tonic::service::Interceptor for Auth {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some((name, value)) = &self.0 {
            request.metadata_mut().insert(*name, value.clone());
        }
        Ok(request)
    }
}

pub type Authed = InterceptedService<Channel, Auth>;

/// A writer several owners print to (stderr: the command and `run`'s error).
pub type Shared = Arc<Mutex<Box<dyn Write + Send>>>;

pub struct Ctx {
    pub format: Format,
    pub credential: Credential,
    pub interactive: bool,
    auth: Auth,
    channels: [Channel; 4],
    tenant_flag: Option<String>,
    tenant: OnceCell<Option<String>>,
    stdout: Mutex<Box<dyn Write + Send>>,
    stderr: Shared,
    stdin: Mutex<Box<dyn Read + Send>>,
}

impl Ctx {
    pub fn new(
        endpoints: &Endpoints,
        credential: Credential,
        format: Format,
        tenant_flag: Option<String>,
        timeout: Duration,
        io: Io,
        stderr: Shared,
    ) -> CliResult<Self> {
        let channel = |url: &str| -> CliResult<Channel> {
            Ok(Endpoint::from_shared(url.to_owned())
                .map_err(|error| CliError::usage(format!("{url:?} is not a URL: {error}")))?
                .connect_timeout(timeout)
                .timeout(timeout)
                .connect_lazy())
        };
        let header = match &credential {
            Credential::Bearer(token) => Some(("authorization", format!("Bearer {token}"))),
            Credential::AdminKey(key) => Some(("x-admin-key", key.clone())),
            Credential::Anonymous => None,
        };
        let header = header
            .map(|(name, value)| {
                value.parse().map(|value| (name, value)).map_err(|_| {
                    CliError::usage("the token or admin key holds characters a header cannot")
                })
            })
            .transpose()?;
        Ok(Self {
            format,
            credential,
            interactive: io.interactive,
            auth: Auth(header),
            channels: [
                channel(&endpoints.identity)?,
                channel(&endpoints.catalog)?,
                channel(&endpoints.quota)?,
                channel(&endpoints.usage)?,
            ],
            tenant_flag,
            tenant: OnceCell::new(),
            stdout: Mutex::new(io.stdout),
            stderr,
            stdin: Mutex::new(io.stdin),
        })
    }

    pub fn identity(&self) -> IdentityServiceClient<Authed> {
        IdentityServiceClient::with_interceptor(self.channels[0].clone(), self.auth.clone())
    }

    pub fn catalog(&self) -> CatalogServiceClient<Authed> {
        CatalogServiceClient::with_interceptor(self.channels[1].clone(), self.auth.clone())
    }

    pub fn quota(&self) -> QuotaServiceClient<Authed> {
        QuotaServiceClient::with_interceptor(self.channels[2].clone(), self.auth.clone())
    }

    pub fn usage(&self) -> UsageServiceClient<Authed> {
        UsageServiceClient::with_interceptor(self.channels[3].clone(), self.auth.clone())
    }

    /// The id of the tenant `--tenant` names (slug or id), if it was given.
    pub async fn tenant(&self) -> CliResult<Option<String>> {
        self.tenant
            .get_or_try_init(|| async {
                match &self.tenant_flag {
                    Some(reference) => crate::resolve::tenant_id(self, reference).await.map(Some),
                    None => Ok(None),
                }
            })
            .await
            .cloned()
    }

    /// `--tenant`'s id, else the caller's own tenant (from the token).
    pub async fn tenant_or_own(&self) -> CliResult<String> {
        if let Some(tenant) = self.tenant().await? {
            return Ok(tenant);
        }
        crate::session::claims(self)
            .map(|claims| claims.tenant)
            .ok_or_else(|| {
                CliError::usage("name the tenant with --tenant (the admin key has none)")
            })
    }

    pub fn print(&self, text: &str) -> CliResult<()> {
        let mut stdout = self
            .stdout
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        stdout.write_all(text.as_bytes())?;
        stdout.flush()?;
        Ok(())
    }

    /// A notice for people (stderr), kept out of what scripts parse.
    pub fn note(&self, text: &str) -> CliResult<()> {
        let mut stderr = self
            .stderr
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        writeln!(stderr, "{text}")?;
        Ok(())
    }

    pub fn read_stdin(&self) -> CliResult<String> {
        let mut text = String::new();
        let mut stdin = self
            .stdin
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        stdin.read_to_string(&mut text)?;
        Ok(text)
    }
}
