//! Group commit onto the spool: every event is appended as `send` hands it
//! over, so a process crash right after a response loses nothing, yet
//! concurrent requests share one write. The first caller to find no write
//! in progress becomes the writer and appends everything that is pending,
//! again and again until nothing is; the others only add to the pending
//! list and return. An event waits at most for the write in progress.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use gateway_proto::usage::v1::UsageEvent;
use tokio::sync::Notify;

use crate::spool::Spool;

pub(crate) struct Journal {
    spool: Arc<Spool>,
    pending: Mutex<Vec<UsageEvent>>,
    writing: AtomicBool,
    /// Wakes the stream task: there is more to read.
    appended: Arc<Notify>,
}

impl Journal {
    pub(crate) fn new(spool: Arc<Spool>, appended: Arc<Notify>) -> Self {
        Self {
            spool,
            pending: Mutex::new(Vec::new()),
            writing: AtomicBool::new(false),
            appended,
        }
    }

    pub(crate) fn push(&self, event: UsageEvent) {
        self.pending().push(event);
        // Whoever wins the flag writes for everyone until nothing is left;
        // a push that lands after the writer's last look finds the flag
        // free and writes itself.
        while self
            .writing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            let batch = std::mem::take(&mut *self.pending());
            if !batch.is_empty() {
                // `append` logs and counts what it could not keep.
                self.spool.append(&batch);
                self.appended.notify_one();
            }
            self.writing.store(false, Ordering::Release);
            if self.pending().is_empty() {
                return;
            }
        }
    }

    fn pending(&self) -> MutexGuard<'_, Vec<UsageEvent>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
