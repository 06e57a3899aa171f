//! Group commit onto the spool: `send` returns only once its event is
//! appended (in the page cache, or on disk under `FsyncPolicy::Always`), so
//! no answer reaches a client before its event can survive a crash, yet
//! concurrent requests share one write. Whoever finds no write in progress
//! writes everything pending; the others wait for that write (or the next).

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use gateway_proto::usage::v1::UsageEvent;
use tokio::sync::Notify;

use crate::spool::Spool;

#[derive(Default)]
struct State {
    pending: Vec<UsageEvent>,
    /// Tickets handed out (one per event) and those appended, in order.
    issued: u64,
    written: u64,
    writing: bool,
    /// Callers waiting on `written`: std's `notify_all` is a futex syscall
    /// whether or not anyone waits, which every request paid.
    waiters: usize,
}

pub(crate) struct Journal {
    spool: Arc<Spool>,
    state: Mutex<State>,
    /// Signalled after each write.
    written: Condvar,
    /// Wakes the stream task: there is more to read.
    appended: Arc<Notify>,
}

impl Journal {
    pub(crate) fn new(spool: Arc<Spool>, appended: Arc<Notify>) -> Self {
        Self {
            spool,
            state: Mutex::new(State::default()),
            written: Condvar::new(),
            appended,
        }
    }

    pub(crate) fn push(&self, event: UsageEvent) {
        let mut state = self.lock();
        state.pending.push(event);
        state.issued += 1;
        let ticket = state.issued;
        while state.written < ticket {
            if state.writing {
                state.waiters += 1;
                state = self
                    .written
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
                state.waiters -= 1;
                continue;
            }
            state.writing = true;
            let batch = std::mem::take(&mut state.pending);
            let upto = state.issued;
            drop(state);
            // `append` logs and counts what it could not keep.
            self.spool.append(&batch);
            self.appended.notify_one();
            state = self.lock();
            state.written = upto;
            state.writing = false;
            if state.waiters > 0 {
                self.written.notify_all();
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::Duration;

    use prost::Message as _;

    use super::*;
    use crate::FsyncPolicy;
    use crate::spool::SpoolOptions;
    use crate::stats::Stats;

    /// Pushes from many threads at once, with a slow write (fsync each)
    /// so that most callers wait on another's write: every call returns
    /// (no lost wakeup, now that waking is skipped when nobody waits) and
    /// every event is in the spool once.
    #[test]
    fn concurrent_pushes_all_return_with_their_events_appended() {
        let dir = tempfile::tempdir().unwrap();
        let options = SpoolOptions {
            dir: dir.path().to_path_buf(),
            max_bytes: 1 << 30,
            segment_bytes: 1 << 20,
            fsync: FsyncPolicy::Always,
        };
        let spool = Arc::new(Spool::open(options, Arc::new(Stats::default())).unwrap());
        let journal = Arc::new(Journal::new(Arc::clone(&spool), Arc::new(Notify::new())));
        let (done, finished) = std::sync::mpsc::channel();
        for thread in 0..8 {
            let (journal, done) = (Arc::clone(&journal), done.clone());
            std::thread::spawn(move || {
                for index in 0..50 {
                    journal.push(UsageEvent {
                        event_id: format!("event-{thread}-{index}"),
                        ..UsageEvent::default()
                    });
                }
                done.send(()).unwrap();
            });
        }
        for _ in 0..8 {
            finished
                .recv_timeout(Duration::from_secs(60))
                .expect("a push never returned");
        }
        assert_eq!(spool.appended(), 400);
        let read = spool.read(spool.cursor(), 1_000, usize::MAX).unwrap();
        let mut ids: Vec<_> = read
            .events
            .into_iter()
            .map(|payload| UsageEvent::decode(payload).unwrap().event_id)
            .collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 400);
    }
}
