//! The real `gatewayd` binary with `--demo`: `/health/ready` on the ops
//! port answers 200 only once the in-process edge has loaded the catalog
//! snapshot, the printed curl line works through an egress policy that
//! opens exactly the demo's upstream, and `/admin/edge` shows its target.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// One HTTP/1.1 GET; `(status, body)`, or `None` while nothing listens.
fn get(addr: SocketAddr, path: &str, key: Option<&str>) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let key = key.map_or(String::new(), |key| format!("X-API-Key: {key}\r\n"));
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{key}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let status = answer.get(9..12)?.parse().ok()?;
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())?;
    Some((status, body))
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn gatewayd_is_ready_once_its_edge_has_the_snapshot_and_the_demo_answers() {
    let data = tempfile::tempdir().unwrap();
    let (ops, edge) = (free_addr(), free_addr());
    let mut command = Command::new(env!("CARGO_BIN_EXE_gatewayd"));
    command
        .arg("--demo")
        .current_dir(data.path())
        .env_clear()
        .env("GATEWAY_RUNTIME_OPS_ADDR", ops.to_string())
        .env("GATEWAY_EDGE_LISTEN_ADDR", edge.to_string())
        .env("GATEWAY_BOOTSTRAP_PASSWORD", "process-test-password")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    // Every listener on a free port: the console's default, 8000, may be taken.
    for service in ["identity", "catalog", "quota", "usage", "console"] {
        command.env(
            format!("GATEWAY_{}_LISTEN_ADDR", service.to_uppercase()),
            free_addr().to_string(),
        );
    }
    let mut child = Running(command.spawn().unwrap());
    let stdout = BufReader::new(child.0.stdout.take().unwrap());

    let deadline = Instant::now() + Duration::from_secs(60);
    let ready = loop {
        if let Some((200, body)) = get(ops, "/health/ready", None) {
            break body;
        }
        assert!(Instant::now() < deadline, "gatewayd never became ready");
        std::thread::sleep(Duration::from_millis(100));
    };
    let ready: serde_json::Value = serde_json::from_str(&ready).unwrap();
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["components"][gatewayd::EDGE_CATALOG], true, "{ready}");

    // Ready comes after the demo is seeded: its key works at once or
    // within the snapshot's propagation.
    let key = stdout
        .lines()
        .map_while(Result::ok)
        .find_map(|line| {
            line.split_once("X-API-Key: ")
                .and_then(|(_, rest)| rest.split('\'').next().map(str::to_owned))
        })
        .expect("the demo's curl line");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let answer = get(edge, "/demo/echo/hello?name=world", Some(&key));
        if let Some((200, body)) = &answer {
            assert!(body.contains("/hello"), "{body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the demo never answered: {answer:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // The ops port's view of the data plane has the demo's upstream.
    let (status, body) = get(ops, "/admin/edge", None).expect("/admin/edge answers");
    assert_eq!(status, 200);
    let view: serde_json::Value = serde_json::from_str(&body).unwrap();
    let apis = view["apis"].as_object().unwrap();
    let demo = apis
        .values()
        .find(|api| api["slug"] == "echo")
        .unwrap_or_else(|| panic!("{view}"));
    let target = demo["targets"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap();
    assert!(target["requests"].as_u64().unwrap() >= 1, "{target}");
    assert_eq!(target["breaker"], "closed");
    assert!(target["p99_ms"].as_f64().unwrap() > 0.0, "{target}");
}
