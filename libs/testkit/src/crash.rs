//! Crash tests' load: complete answers counted until a `kill -9`, and a
//! child process that dies with the test.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request; `Some(request id)` for a complete 200 answer.
pub fn call(edge: SocketAddr, path: &str, key: &str) -> Option<String> {
    match get(edge, path, key) {
        (200, id) => id,
        _ => None,
    }
}

/// One GET on a fresh connection: the status of a complete answer (0 for
/// none: refused, reset, cut short) and its request id.
pub fn get(edge: SocketAddr, path: &str, key: &str) -> (u16, Option<String>) {
    let attempt = || -> Option<(u16, Option<String>)> {
        let mut stream = TcpStream::connect_timeout(&edge, Duration::from_secs(2)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {edge}\r\nX-API-Key: {key}\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).ok()?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).ok()?;
        let (head, body) = answer.split_once("\r\n\r\n")?;
        let status = head.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()?;
        let header = |name: &str| {
            head.lines().find_map(|line| {
                let (key, value) = line.split_once(':')?;
                key.eq_ignore_ascii_case(name)
                    .then(|| value.trim().to_owned())
            })
        };
        // Complete: as long as it said, or to the last chunk.
        let complete = match header("content-length") {
            Some(length) => length.parse() == Ok(body.len()),
            None => body.ends_with("0\r\n\r\n"),
        };
        complete.then(|| (status, header("x-request-id")))
    };
    attempt().unwrap_or((0, None))
}

/// GETs `path` from 8 threads until `answers` complete 200 answers, then
/// `SIGKILL`s `child`; answers the request ids of the answers read before
/// the kill (those whose events must survive it).
pub fn load_then_kill(
    edge: SocketAddr,
    path: &str,
    key: &str,
    answers: usize,
    child: &mut Child,
) -> Vec<String> {
    let answered = Arc::new(Mutex::new(Vec::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let killed = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (answered, count, killed) = (answered.clone(), count.clone(), killed.clone());
            let (key, path) = (key.to_owned(), path.to_owned());
            std::thread::spawn(move || {
                while !killed.load(Ordering::SeqCst) {
                    let Some(id) = call(edge, &path, &key) else {
                        continue;
                    };
                    let mut answered = answered.lock().expect("answers");
                    if !killed.load(Ordering::SeqCst) {
                        answered.push(id);
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    while count.load(Ordering::SeqCst) < answers {
        assert!(
            Instant::now() < deadline,
            "the load never reached {answers} answers"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
    // The lock keeps any answer from counting between the flag and the kill.
    let answered_now = answered.lock().expect("answers");
    killed.store(true, Ordering::SeqCst);
    child.kill().expect("SIGKILL"); // Child::kill is SIGKILL
    child.wait().expect("the killed child");
    let ids = answered_now.clone();
    drop(answered_now);
    for worker in workers {
        worker.join().expect("a load thread");
    }
    ids
}

/// Waits (up to a minute) until `stored` (request id -> stored events)
/// holds every answered request, then asserts each has exactly one event.
pub async fn assert_each_stored_once<F, Fut>(answered: &[String], mut stored: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::collections::HashMap<String, usize>>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    let counts = loop {
        let counts = stored().await;
        if answered.iter().all(|id| counts.contains_key(id)) || Instant::now() > deadline {
            break counts;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let missing = answered
        .iter()
        .filter(|id| !counts.contains_key(*id))
        .count();
    let doubled = answered
        .iter()
        .filter(|id| counts.get(*id).is_some_and(|stored| *stored > 1))
        .count();
    assert_eq!(
        (missing, doubled),
        (0, 0),
        "of {} answered requests: missing events, events stored twice",
        answered.len()
    );
}

/// Kills the child when dropped, so a failed test leaves no process behind.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
