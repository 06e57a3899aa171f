//! Steady traffic through the edge from a few threads, tallied by status;
//! the request ids of the 200 answers are kept to find their usage events.

use std::collections::BTreeMap;
use std::net::SocketAddr;
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
                        let (status, id) = gateway_testkit::crash::get(edge, &path, &key);
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
