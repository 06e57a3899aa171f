//! A throwaway Redis Cluster on loopback ports: `masters` nodes started with
//! `redis-server --cluster-enabled yes`, joined by `redis-cli --cluster
//! create` (no replicas), in their own temp dir. Killed on drop. Without
//! `redis-server` the test is skipped, or fails under CI (`CI` set).

use std::fs::File;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long starting the nodes and forming the cluster may take.
const START_LIMIT: Duration = Duration::from_secs(20);

pub struct RedisCluster {
    nodes: Vec<Node>,
    _dir: TempDir,
}

struct Node {
    port: u16,
    child: Option<Child>,
}

impl RedisCluster {
    /// Starts and joins `masters` nodes (at least 3, as Redis requires), or
    /// `None` (skipped) when Redis is not installed; panics under CI.
    pub fn start(masters: usize) -> Option<RedisCluster> {
        if !installed("redis-server") || !installed("redis-cli") {
            let why = "redis-server and redis-cli are not installed (apt-get install redis-server)";
            assert!(
                std::env::var_os("CI").is_none(),
                "{why} but CI is set: this test may not be skipped"
            );
            eprintln!("skipping: {why}");
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let mut nodes = Vec::new();
        for port in free_port_pairs(masters) {
            nodes.push(Node {
                port,
                child: Some(spawn_node(&dir, port)),
            });
        }
        let cluster = RedisCluster { nodes, _dir: dir };
        for node in &cluster.nodes {
            wait_until(|| cli(node.port, &["PING"]).is_some_and(|out| out == "PONG"));
        }
        cluster.create();
        for node in &cluster.nodes {
            wait_until(|| {
                cli(node.port, &["CLUSTER", "INFO"])
                    .is_some_and(|info| info.contains("cluster_state:ok"))
            });
        }
        Some(cluster)
    }

    /// `redis://127.0.0.1:port` of every node, as seeds.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|node| format!("redis://127.0.0.1:{}", node.port))
            .collect()
    }

    /// Kills (SIGKILL) the master holding `key`'s slot; returns its port.
    pub fn kill_master_of(&mut self, key: &str) -> u16 {
        let port = self.master_of(key);
        let node = self
            .nodes
            .iter_mut()
            .find(|node| node.port == port)
            .expect("the owner is one of ours");
        if let Some(mut child) = node.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        port
    }

    /// The port of the master that holds `key`'s slot.
    pub fn master_of(&self, key: &str) -> u16 {
        let port = self.nodes[0].port;
        let slot: u16 = cli(port, &["CLUSTER", "KEYSLOT", key])
            .and_then(|slot| slot.parse().ok())
            .expect("CLUSTER KEYSLOT answers");
        let nodes = cli(port, &["CLUSTER", "NODES"]).expect("CLUSTER NODES answers");
        owner(&nodes, slot).expect("every slot has an owner")
    }

    fn create(&self) {
        let mut command = Command::new("redis-cli");
        command.arg("--cluster").arg("create");
        for node in &self.nodes {
            command.arg(format!("127.0.0.1:{}", node.port));
        }
        let mut child = command
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-cli runs");
        // redis-cli waits for ever on a node that died: bound it.
        let deadline = Instant::now() + START_LIMIT;
        let status = loop {
            if let Some(status) = child.try_wait().expect("redis-cli wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("redis-cli --cluster create did not finish within {START_LIMIT:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(status.success(), "redis-cli --cluster create failed");
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// The port of the master whose slot ranges in `CLUSTER NODES` hold `slot`.
fn owner(nodes: &str, slot: u16) -> Option<u16> {
    nodes.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let address = fields.get(1)?;
        let port = address
            .split('@')
            .next()?
            .rsplit(':')
            .next()?
            .parse()
            .ok()?;
        let holds = fields.iter().skip(8).any(|range| {
            let (low, high) = range.split_once('-').unwrap_or((range, range));
            match (low.parse::<u16>(), high.parse::<u16>()) {
                (Ok(low), Ok(high)) => (low..=high).contains(&slot),
                _ => false,
            }
        });
        holds.then_some(port)
    })
}

fn spawn_node(dir: &TempDir, port: u16) -> Child {
    let log = File::create(dir.path().join(format!("redis-{port}.log"))).expect("log file");
    Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"])
        .arg("--cluster-config-file")
        .arg(dir.path().join(format!("nodes-{port}.conf")))
        .arg("--dir")
        .arg(dir.path())
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server starts")
}

/// `count` ports whose cluster bus port (+10000) is free too, below the
/// ephemeral range so neither collides with an outgoing connection. Each
/// search starts past the last one's, so clusters of one process (tests
/// run in parallel) never pick the same ports.
fn free_port_pairs(count: usize) -> Vec<u16> {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let seed = u16::try_from(std::process::id() % 2000).unwrap_or(0) * 5;
    let mut ports = Vec::new();
    while ports.len() < count {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed) % 10_000;
        let candidate = 20_000 + (seed + offset) % 10_000;
        let free = |port: u16| TcpListener::bind(("127.0.0.1", port)).is_ok();
        if free(candidate) && free(candidate + 10_000) {
            ports.push(candidate);
        }
    }
    ports
}

fn installed(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// One `redis-cli` command's trimmed output, or `None` if it failed.
fn cli(port: u16, args: &[&str]) -> Option<String> {
    let output = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn wait_until(mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + START_LIMIT;
    while !ready() {
        assert!(
            Instant::now() < deadline,
            "the redis cluster did not come up within {START_LIMIT:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    #[test]
    fn the_owner_of_a_slot_is_read_from_cluster_nodes() {
        let nodes = "\
a1 127.0.0.1:20001@30001 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:20002@30002 master - 0 1 2 connected 5461-10922
c3 127.0.0.1:20003@30003 master - 0 1 3 connected 10923-16383";
        assert_eq!(super::owner(nodes, 0), Some(20001));
        assert_eq!(super::owner(nodes, 5461), Some(20002));
        assert_eq!(super::owner(nodes, 16383), Some(20003));
        assert_eq!(super::owner("garbage line", 3), None);
    }
}
