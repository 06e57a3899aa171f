//! A throwaway OpenLDAP server (Debian's `slapd`) on a loopback port, for
//! LDAP / Active Directory login tests.
//!
//! Each [`Slapd`] has its own temp dir: a `slapd.conf`, an `mdb` database
//! filled by `slapadd` before the server starts (no network needed), and the
//! server's log. Without `slapd` installed the test is skipped, or fails
//! under CI (`CI` set).

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// The directory's suffix.
pub const BASE_DN: &str = "dc=example,dc=org";
/// The branch holding the test users.
pub const PEOPLE_DN: &str = "ou=people,dc=example,dc=org";
/// The directory manager (`rootdn`), for search-then-bind flows.
pub const ADMIN_DN: &str = "cn=admin,dc=example,dc=org";
/// The directory manager's password.
pub const ADMIN_PASSWORD: &str = "admin-ldap-password";
/// A test user: `uid=alice,ou=people,dc=example,dc=org`.
pub const ALICE: &str = "alice";
/// Alice's password.
pub const ALICE_PASSWORD: &str = "alice-ldap-password";
/// Alice's `mail` attribute.
pub const ALICE_EMAIL: &str = "alice@example.org";
/// A second test user: `uid=bob,ou=people,dc=example,dc=org`.
pub const BOB: &str = "bob";
/// Bob's password.
pub const BOB_PASSWORD: &str = "bob-ldap-password";
/// Bob's `mail` attribute.
pub const BOB_EMAIL: &str = "bob@example.org";

/// Where Debian puts the schemas and the backend modules.
const SCHEMA_DIR: &str = "/etc/ldap/schema";
const MODULE_DIR: &str = "/usr/lib/ldap";
/// How long one start may take before the test fails.
const START_LIMIT: Duration = Duration::from_secs(10);
/// The free port is found then released, so another process may take it
/// before slapd binds: retry on a fresh port.
const PORT_ATTEMPTS: usize = 3;

/// (uid, password, cn, sn, mail) of each test user.
const USERS: [(&str, &str, &str, &str, &str); 2] = [
    (
        ALICE,
        ALICE_PASSWORD,
        "Alice Example",
        "Example",
        ALICE_EMAIL,
    ),
    (BOB, BOB_PASSWORD, "Bob Example", "Example", BOB_EMAIL),
];

/// A running `slapd` holding `dc=example,dc=org`, the test users and the
/// admin; killed, and its files removed, on drop.
pub struct Slapd {
    child: Child,
    port: u16,
    // Kept for its Drop, which runs after `Slapd::drop` has killed the child.
    _dir: TempDir,
}

impl Slapd {
    /// Starts a fresh server, or `None` (test skipped) when `slapd` is not
    /// installed; panics under CI instead of skipping.
    pub async fn start() -> Option<Slapd> {
        let Some(slapd) = find_slapd() else {
            if std::env::var_os("CI").is_some() {
                panic!(
                    "slapd is not installed but CI is set: this test may not be skipped \
                     (apt-get install slapd ldap-utils)"
                );
            }
            eprintln!("skipping: slapd is not installed (apt-get install slapd ldap-utils)");
            return None;
        };
        // slappasswd and slapadd are short-lived processes: keep them off
        // the async worker.
        let setup_slapd = slapd.clone();
        let dir = tokio::task::spawn_blocking(move || prepare(&setup_slapd))
            .await
            .expect("slapd setup task panicked");

        let log_path = dir.path().join("slapd.log");
        for attempt in 1..=PORT_ATTEMPTS {
            let port = free_port();
            let log = File::create(&log_path).expect("create slapd.log");
            let mut child = Command::new(&slapd)
                // Foreground, so the child is ours to kill. `none` still
                // prints errors, which `-d 0` sends only to syslog.
                .args(["-d", "none", "-h"])
                .arg(format!("ldap://127.0.0.1:{port}/"))
                .arg("-f")
                .arg(dir.path().join("slapd.conf"))
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone slapd.log handle"))
                .stderr(log)
                .spawn()
                .expect("spawn slapd");
            match wait_ready(&mut child, port).await {
                Ok(()) => {
                    return Some(Slapd {
                        child,
                        port,
                        _dir: dir,
                    });
                }
                Err(why) => {
                    kill(&mut child);
                    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                    assert!(
                        attempt < PORT_ATTEMPTS,
                        "slapd on port {port} {why}; its log:\n{log}"
                    );
                    eprintln!("slapd on port {port} {why}; retrying on another port:\n{log}");
                }
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// `ldap://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// `dc=example,dc=org`.
    pub fn base_dn(&self) -> &str {
        BASE_DN
    }

    /// `cn=admin,dc=example,dc=org`; its password is [`ADMIN_PASSWORD`].
    pub fn admin_dn(&self) -> &str {
        ADMIN_DN
    }

    /// `uid={username},ou=people,dc=example,dc=org`: a direct-bind template.
    pub fn user_dn_template(&self) -> String {
        format!("uid={{username}},{PEOPLE_DN}")
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

fn kill(child: &mut Child) {
    // SIGKILL is fine: the database is thrown away with the temp dir.
    let _ = child.kill();
    let _ = child.wait();
}

/// `slapd` on PATH, else Debian's `/usr/sbin/slapd` (sbin is often not on a
/// normal user's PATH).
fn find_slapd() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("slapd"))
        .chain([PathBuf::from("/usr/sbin/slapd")])
        .find(|candidate| candidate.is_file())
}

/// A loopback port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind a free loopback port")
        .port()
}

/// Writes `slapd.conf` and loads the entries with `slapadd` into a new
/// temp dir. Blocking.
fn prepare(slapd: &Path) -> TempDir {
    // slapadd and slappasswd ship beside slapd in the same package.
    let tool = |name: &str| slapd.with_file_name(name);
    let dir = tempfile::Builder::new()
        .prefix("gateway-slapd-")
        .tempdir()
        .expect("create slapd temp dir");
    let root = dir.path();
    let db = root.join("db");
    std::fs::create_dir(&db).expect("create slapd db dir");

    let conf = format!(
        r#"# Written by gateway-testkit; thrown away with its temp dir.
include "{SCHEMA_DIR}/core.schema"
include "{SCHEMA_DIR}/cosine.schema"
include "{SCHEMA_DIR}/inetorgperson.schema"
modulepath "{MODULE_DIR}"
moduleload back_mdb
pidfile "{root}/slapd.pid"
argsfile "{root}/slapd.args"

database mdb
suffix "{BASE_DN}"
rootdn "{ADMIN_DN}"
rootpw "{ADMIN_PASSWORD}"
directory "{db}"
# As a real directory would: hashes are never readable, binds still work.
access to attrs=userPassword
  by self write
  by anonymous auth
  by * none
access to *
  by * read
"#,
        root = root.display(),
        db = db.display(),
    );
    let conf_path = root.join("slapd.conf");
    std::fs::write(&conf_path, conf).expect("write slapd.conf");

    let mut ldif = format!(
        "dn: {BASE_DN}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n\n\
         dn: {PEOPLE_DN}\nobjectClass: organizationalUnit\nou: people\n"
    );
    for (uid, password, cn, sn, mail) in USERS {
        let hash = run(Command::new(tool("slappasswd")).args(["-s", password]));
        ldif.push_str(&format!(
            "\ndn: uid={uid},{PEOPLE_DN}\nobjectClass: inetOrgPerson\nuid: {uid}\n\
             cn: {cn}\nsn: {sn}\nmail: {mail}\nuserPassword: {}\n",
            hash.trim()
        ));
    }
    let ldif_path = root.join("base.ldif");
    std::fs::write(&ldif_path, ldif).expect("write base.ldif");
    run(Command::new(tool("slapadd"))
        .arg("-f")
        .arg(&conf_path)
        .arg("-l")
        .arg(&ldif_path));
    dir
}

/// Runs `command` to completion and returns its stdout; panics on failure.
fn run(command: &mut Command) -> String {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|error| panic!("run {command:?}: {error}"));
    assert!(
        output.status.success(),
        "{command:?} failed with {}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("tool output is UTF-8")
}

/// Polls until slapd answers an anonymous bind: an LDAP answer, not just an
/// accepted connection, shows the server is serving.
async fn wait_ready(child: &mut Child, port: u16) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + START_LIMIT;
    loop {
        if let Some(status) = child.try_wait().expect("poll slapd") {
            return Err(format!("exited with {status}"));
        }
        if answers_ldap(port).await {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!("did not answer within {START_LIMIT:?}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends an anonymous simple bind and checks that an LDAP message (a BER
/// SEQUENCE, tag 0x30) comes back.
async fn answers_ldap(port: u16) -> bool {
    // BindRequest { messageID 1, version 3, name "", simple "" }.
    const ANONYMOUS_BIND: [u8; 14] = [
        0x30, 0x0c, 0x02, 0x01, 0x01, 0x60, 0x07, 0x02, 0x01, 0x03, 0x04, 0x00, 0x80, 0x00,
    ];
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        stream.write_all(&ANONYMOUS_BIND).await.ok()?;
        let mut first = [0u8; 1];
        stream.read_exact(&mut first).await.ok()?;
        Some(first[0] == 0x30)
    };
    tokio::time::timeout(Duration::from_secs(1), attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}
