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
                state = self
                    .written
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
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
            self.written.notify_all();
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
