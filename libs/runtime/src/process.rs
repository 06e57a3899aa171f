//! What every gateway binary's `main` shares: the `[runtime]` config
//! section, the command line, and reporting config problems.

use std::collections::HashMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::CONFIG_FILE_ENV;

/// The `[runtime]` section: process-level settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Ops HTTP port (`/health/live`, `/health/ready`, `/metrics`), apart
    /// from traffic ports.
    pub ops_addr: SocketAddr,
    /// How long in-flight requests may take to finish after SIGTERM.
    pub shutdown_grace_secs: u64,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            ops_addr: SocketAddr::from(([127, 0, 0, 1], 9090)),
            shutdown_grace_secs: 10,
        }
    }
}

impl RuntimeConfig {
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }

    pub fn validate(&self, problems: &mut Vec<String>) {
        if self.shutdown_grace_secs > 3600 {
            problems.push("runtime.shutdown_grace_secs: must be at most 3600".to_owned());
        }
    }
}

/// What the command line asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Run, reading the config file if one is named.
    Run {
        config_file: Option<PathBuf>,
        flags: Vec<String>,
    },
    /// Print usage and exit.
    Help,
}

#[derive(Debug, thiserror::Error)]
pub enum CommandLineError {
    #[error("--config needs a file path")]
    MissingConfigPath,
    #[error("unknown argument {0:?} (try --help)")]
    Unknown(String),
}

/// Parses `--config PATH` (else `$GATEWAY_CONFIG`), `--help`, and the
/// boolean `allowed_flags` a binary accepts (e.g. `--demo`).
pub fn parse_command_line(
    args: impl IntoIterator<Item = OsString>,
    env: &HashMap<String, String>,
    allowed_flags: &[&str],
) -> Result<Command, CommandLineError> {
    let mut config_file = env
        .get(CONFIG_FILE_ENV)
        .filter(|path| !path.is_empty())
        .map(PathBuf::from);
    let mut flags = Vec::new();
    let mut args = args.into_iter().skip(1);
    while let Some(arg) = args.next() {
        let arg = arg.to_string_lossy().into_owned();
        match arg.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-c" | "--config" => {
                let path = args.next().ok_or(CommandLineError::MissingConfigPath)?;
                config_file = Some(PathBuf::from(path));
            }
            flag if allowed_flags.contains(&flag) => flags.push(flag.to_owned()),
            _ => {
                if let Some(path) = arg.strip_prefix("--config=") {
                    config_file = Some(PathBuf::from(path));
                } else {
                    return Err(CommandLineError::Unknown(arg));
                }
            }
        }
    }
    Ok(Command::Run { config_file, flags })
}

/// Usage text shared by the service binaries.
pub fn usage(binary: &str, about: &str, extra_flags: &str) -> String {
    format!(
        "{binary}: {about}\n\n\
         usage: {binary} [--config FILE]{extra_flags}\n\n\
         Configuration comes from defaults, then the TOML file (--config or\n\
         ${CONFIG_FILE_ENV}), then GATEWAY_* environment variables: the key\n\
         `section.name` is set by GATEWAY_SECTION_NAME.\n"
    )
}

/// Logs each unknown `GATEWAY_*` variable once telemetry is up.
pub fn warn_unknown_env(unknown: &[String]) {
    for name in unknown {
        tracing::warn!(variable = %name, "ignoring unknown configuration variable");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn config_flag_wins_over_environment() {
        let env = HashMap::from([(CONFIG_FILE_ENV.to_owned(), "/etc/env.toml".to_owned())]);
        let command =
            parse_command_line(args(&["bin", "--config", "/etc/flag.toml"]), &env, &[]).unwrap();
        assert_eq!(
            command,
            Command::Run {
                config_file: Some(PathBuf::from("/etc/flag.toml")),
                flags: vec![]
            }
        );
        let command = parse_command_line(args(&["bin"]), &env, &[]).unwrap();
        assert_eq!(
            command,
            Command::Run {
                config_file: Some(PathBuf::from("/etc/env.toml")),
                flags: vec![]
            }
        );
    }

    #[test]
    fn allowed_flags_pass_and_others_are_refused() {
        let command = parse_command_line(
            args(&["bin", "--demo", "--config=x.toml"]),
            &HashMap::new(),
            &["--demo"],
        )
        .unwrap();
        assert_eq!(
            command,
            Command::Run {
                config_file: Some(PathBuf::from("x.toml")),
                flags: vec!["--demo".to_owned()]
            }
        );
        let error =
            parse_command_line(args(&["bin", "--dmeo"]), &HashMap::new(), &["--demo"]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown argument \"--dmeo\" (try --help)"
        );
        assert!(matches!(
            parse_command_line(args(&["bin", "--config"]), &HashMap::new(), &[]),
            Err(CommandLineError::MissingConfigPath)
        ));
    }
}

/// A binary's configuration: its own sections plus the shared ones.
pub trait ProcessConfig:
    Default + serde::Serialize + serde::de::DeserializeOwned + crate::config::Validate
{
    fn telemetry(&self) -> &gateway_telemetry::TelemetryConfig;
    fn runtime(&self) -> &RuntimeConfig;
}

/// How a binary names and describes itself.
#[derive(Debug, Clone, Copy)]
pub struct BinarySpec {
    /// Executable name, e.g. `gateway-identity`.
    pub binary: &'static str,
    /// `service.name` in traces, e.g. `identity`.
    pub service_name: &'static str,
    pub about: &'static str,
    /// Boolean flags the binary accepts besides `--config`, with usage text.
    pub flags: &'static [&'static str],
    pub flags_usage: &'static str,
}

/// What `main` hands to a binary's body once the process is set up.
pub struct Process {
    /// Cancelled by SIGINT / SIGTERM, or when the body returns.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Shown on the ops port's `/health/ready`.
    pub readiness: crate::ops::Readiness,
    /// The boolean flags given on the command line.
    pub flags: Vec<String>,
    /// The environment the config was loaded from.
    pub env: HashMap<String, String>,
    name: &'static str,
}

impl Process {
    /// Reports the binary ready on `/health/ready`: call once its stores
    /// are open and its listeners bound.
    pub fn mark_ready(&self) {
        self.readiness.set_ready(self.name, true);
    }
}

/// The whole of a binary's `main`: command line, config, telemetry, ops
/// port, signals; then `body`; then a drain and an exit code.
pub async fn run<C, F, Fut>(spec: BinarySpec, body: F) -> std::process::ExitCode
where
    C: ProcessConfig,
    F: FnOnce(C, Process) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    match run_inner(spec, body).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // Logging may not be up (a config error), so stderr it is.
            #[allow(clippy::print_stderr)]
            {
                eprintln!("{}: {error:#}", spec.binary);
            }
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run_inner<C, F, Fut>(spec: BinarySpec, body: F) -> anyhow::Result<()>
where
    C: ProcessConfig,
    F: FnOnce(C, Process) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    use anyhow::Context as _;

    let env = crate::config::process_env();
    let (config_file, flags) = match parse_command_line(std::env::args_os(), &env, spec.flags)? {
        Command::Help => {
            #[allow(clippy::print_stdout)]
            {
                print!("{}", usage(spec.binary, spec.about, spec.flags_usage));
            }
            return Ok(());
        }
        Command::Run { config_file, flags } => (config_file, flags),
    };
    let loaded = crate::config::load::<C>(config_file.as_deref(), &env)?;
    let config = loaded.config;
    let otlp_endpoint = env.get("OTEL_EXPORTER_OTLP_ENDPOINT").map(String::as_str);
    let _telemetry = gateway_telemetry::init(spec.service_name, config.telemetry(), otlp_endpoint)?;
    warn_unknown_env(&loaded.unknown_env);

    let shutdown = crate::shutdown::token_on_signal();
    let readiness = crate::ops::Readiness::new();
    readiness.register(spec.service_name);
    // The recorder before the body: handles the services take once at
    // start would otherwise be no-ops.
    let _ = crate::metrics::handle();
    let ops_listener = crate::bind("ops", config.runtime().ops_addr).await?;
    let ops = tokio::spawn(crate::ops::serve(
        ops_listener,
        readiness.clone(),
        shutdown.clone(),
    ));
    let process = Process {
        shutdown: shutdown.clone(),
        readiness,
        flags,
        env,
        name: spec.service_name,
    };
    let result = body(config, process).await;
    shutdown.cancel();
    ops.await.context("ops server task failed")?;
    result
}

pub use gateway_telemetry::TelemetryConfig;

/// Declares a binary's configuration: the shared `[telemetry]` and
/// `[runtime]` sections plus the binary's own, every section validated.
/// Each listed section type has `fn validate(&self, &mut Vec<String>)`.
///
/// ```text
/// gateway_runtime::process_config! {
///     /// The configuration of the standalone `gateway-quota` binary.
///     pub struct BinaryConfig { auth: AuthConfig, quota: Config }
/// }
/// ```
#[macro_export]
macro_rules! process_config {
    ($(#[$meta:meta])* $vis:vis struct $name:ident { $($field:ident: $type:ty),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        #[serde(default, deny_unknown_fields)]
        $vis struct $name {
            pub telemetry: $crate::process::TelemetryConfig,
            pub runtime: $crate::process::RuntimeConfig,
            $(pub $field: $type,)*
        }

        impl $crate::process::ProcessConfig for $name {
            fn telemetry(&self) -> &$crate::process::TelemetryConfig {
                &self.telemetry
            }

            fn runtime(&self) -> &$crate::process::RuntimeConfig {
                &self.runtime
            }
        }

        impl $crate::config::Validate for $name {
            fn validate(&self, problems: &mut Vec<String>) {
                if let Err(problem) = self.telemetry.validate() {
                    problems.push(format!("telemetry.{problem}"));
                }
                self.runtime.validate(problems);
                $(self.$field.validate(problems);)*
            }
        }
    };
}
