//! Steady traffic through the edge from a few threads, tallied by status;
//! the request ids of the 200 answers are kept to find their usage events.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

#[derive(Default)]
pub struct Tally {
    /// Status -> count; 0 is no answer (refused or reset connection).
    pub statuses: BTreeMap<u16, usize>,
    /// Request ids of the complete 200 answers.
    pub answered: Vec<String>,
}

impl Tally {
    pub fn ok(&self) -> usize {
        self.statuses.get(&200).copied().unwrap_or(0)
    }

    /// Everything but 200 (and, for a limited key, 429), as `503 x 4`.
    pub fn errors(&self, expected: &[u16]) -> String {
        let errors: Vec<String> = self
            .statuses
            .iter()
            .filter(|(status, _)| !expected.contains(status))
            .map(|(status, count)| match status {
                0 => format!("no answer x {count}"),
                _ => format!("{status} x {count}"),
            })
            .collect();
        if errors.is_empty() {
            "none".to_owned()
        } else {
            errors.join(", ")
        }
    }

    fn merge(&mut self, other: Tally) {
        for (status, count) in other.statuses {
            *self.statuses.entry(status).or_default() += count;
        }
        self.answered.extend(other.answered);
    }
}

pub struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Tally>>,
}

impl Load {
    /// `threads` callers, each pausing `pause` between requests.
    pub fn start(edge: SocketAddr, path: &str, key: &str, threads: usize, pause: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..threads)
            .map(|_| {
                let (stop, path, key) = (stop.clone(), path.to_owned(), key.to_owned());
                std::thread::spawn(move || {
                    let mut tally = Tally::default();
                    while !stop.load(Ordering::Relaxed) {
                        let (status, id) = request(edge, &path, &key);
                        *tally.statuses.entry(status).or_default() += 1;
                        if let (200, Some(id)) = (status, id) {
                            tally.answered.push(id);
                        }
                        std::thread::sleep(pause);
                    }
                    tally
                })
            })
            .collect();
        Self { stop, threads }
    }

    pub fn stop(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = Tally::default();
        for thread in self.threads {
            total.merge(thread.join().unwrap());
        }
        total
    }
}

/// One GET; its status (0 without a complete answer) and request id.
pub fn request(edge: SocketAddr, path: &str, key: &str) -> (u16, Option<String>) {
    let attempt = || -> Option<(u16, Option<String>)> {
        let mut stream = TcpStream::connect_timeout(&edge, Duration::from_secs(2)).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .ok()?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {edge}\r\nX-API-Key: {key}\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).ok()?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).ok()?;
        let (head, body) = answer.split_once("\r\n\r\n")?;
        let status = head.get(9..12)?.parse().ok()?;
        let header = |name: &str| {
            head.lines().find_map(|line| {
                let (key, value) = line.split_once(':')?;
                key.eq_ignore_ascii_case(name)
                    .then(|| value.trim().to_owned())
            })
        };
        let complete = match header("content-length") {
            Some(length) => length.parse() == Ok(body.len()),
            None => body.ends_with("0\r\n\r\n"),
        };
        complete.then(|| (status, header("x-request-id")))
    };
    attempt().unwrap_or((0, None))
}
