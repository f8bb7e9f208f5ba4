//! WAL checkpoints mostly off the commit path: this thread runs `PRAGMA wal_checkpoint(PASSIVE)`
//! on its own connection every interval, copying frames and fsyncing while the writer commits.
//! The writer's own automatic checkpoint then finds little left to copy; because it runs
//! between batches it completes, and the next transaction rewinds the WAL (bounded size, see
//! `tests/faults.rs`). The writer truncates the WAL at shutdown.

use super::{StoreConfig, apply_pragmas};
use parking_lot::{Condvar, Mutex};
use rusqlite::Connection;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Handle to the checkpoint thread; stops it on drop.
pub struct Checkpointer {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts checkpointing `path` every `every`.
    pub fn start(
        path: &Path,
        cfg: &StoreConfig,
        every: Duration,
    ) -> rusqlite::Result<Checkpointer> {
        let conn = Connection::open(path)?;
        apply_pragmas(&conn, cfg, false)?;
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name("litetrade-checkpoint".into())
            .spawn(move || {
                let (lock, cv) = &*s;
                let mut stopped = lock.lock();
                while !*stopped {
                    cv.wait_for(&mut stopped, every);
                    if *stopped {
                        break;
                    }
                    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        tracing::warn!(error = %e, "WAL checkpoint failed");
                    }
                }
            })
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        Ok(Checkpointer {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread (idempotent).
    pub fn stop(&mut self) {
        *self.stop.0.lock() = true;
        self.stop.1.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop();
    }
}
