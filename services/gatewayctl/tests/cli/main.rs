//! gatewayctl against the suite in-process: every command runs through
//! `gatewayctl::run` with its streams captured, as a script would see it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod apply;
mod resources;
mod session;

use std::io::Write;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gateway_e2e::{ADMIN_KEY, BOOTSTRAP_PASSWORD, TestSuite, url};

/// A captured stream.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Buffer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// What one command did.
#[derive(Debug)]
pub struct Outcome {
    pub code: ExitCode,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    /// Asserts success and answers stdout.
    #[track_caller]
    pub fn ok(self) -> String {
        assert_eq!(self.code, ExitCode::SUCCESS, "{self:?}");
        self.stdout
    }

    /// Asserts the exit code and answers stderr.
    #[track_caller]
    pub fn fails(self, code: u8) -> String {
        assert_eq!(self.code, ExitCode::from(code), "{self:?}");
        self.stderr
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|error| panic!("{error}: {self:?}"))
    }
}

/// gatewayctl pointed at a suite, with its own config directory.
pub struct Ctl {
    base: Vec<String>,
    pub dir: tempfile::TempDir,
}

impl Ctl {
    pub fn new(suite: &TestSuite) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut base: Vec<String> = vec![
            "gatewayctl".into(),
            "--config-dir".into(),
            dir.path().display().to_string(),
        ];
        for (flag, addr) in [
            ("--identity-url", suite.addresses.identity),
            ("--catalog-url", suite.addresses.catalog),
            ("--quota-url", suite.addresses.quota),
            ("--usage-url", suite.addresses.usage),
        ] {
            base.push(flag.into());
            base.push(url(addr));
        }
        Self { base, dir }
    }

    /// Another gatewayctl with the same config directory (this one keeps it).
    pub fn sharing(&self) -> Self {
        Self {
            base: self.base.clone(),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub async fn run(&self, args: &[&str]) -> Outcome {
        self.run_with_stdin(args, "").await
    }

    pub async fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Outcome {
        let (stdout, stderr) = (Buffer::default(), Buffer::default());
        let io = gatewayctl::Io {
            stdout: Box::new(stdout.clone()),
            stderr: Box::new(stderr.clone()),
            stdin: Box::new(std::io::Cursor::new(stdin.as_bytes().to_vec())),
            interactive: false,
        };
        let mut all = self.base.clone();
        all.extend(args.iter().map(|arg| (*arg).to_owned()));
        let code = gatewayctl::run(all, io).await;
        Outcome {
            code,
            stdout: stdout.text(),
            stderr: stderr.text(),
        }
    }

    /// Logs in (retrying while identity's signing keys reach the other
    /// services, as they do in the first moments of a start).
    pub async fn login(&self, tenant: &str, username: &str, password: &str) {
        let args = [
            "login",
            "--tenant",
            tenant,
            "--username",
            username,
            "--password-stdin",
        ];
        self.run_with_stdin(&args, password).await.ok();
        for _ in 0..100 {
            if self.run(&["apis", "list"]).await.code == ExitCode::SUCCESS {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the services never accepted the token");
    }

    pub async fn login_superadmin(&self) {
        self.login("system", "admin", BOOTSTRAP_PASSWORD).await;
    }
}

pub const PASSWORD: &str = "a-long-enough-password";

/// Unused here but kept for readers: the admin key also works (`--admin-key`).
pub fn admin_key_args() -> [&'static str; 2] {
    ["--admin-key", ADMIN_KEY]
}
