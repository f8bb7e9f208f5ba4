//! WAL checkpoints kept off the commit path.
//!
//! - A background thread runs `PRAGMA wal_checkpoint(PASSIVE)` on its own connection at most
//!   every [`BACKGROUND_EVERY`] while there are commits to copy: it copies new frames into the
//!   database and fsyncs both files while the writer goes on committing. Running often keeps
//!   each pass (and its fsyncs) small. The writer wakes it after each batch; once a pass has
//!   copied everything, it sleeps until the next commit (an idle server does not poll).
//! - A PASSIVE pass never catches up with a writer that is never idle, and SQLite restarts the
//!   WAL from its start only once every frame is copied. So the writer itself runs one
//!   checkpoint, after acknowledging its batch, when the WAL holds 7/8 of its budget
//!   (`StoreConfig::wal_max_mb`, see [`WalReset`]); the next transaction then rewinds the WAL.
//!
//! Why not SQLite's automatic checkpoint (every 1,000 pages, inside the committing call)? Each one
//! costs the writer two or three fsyncs (the WAL, the database, the rewound WAL's header), and on
//! a shared disk an fsync takes 1–30 ms: every order queued behind it waited. Measured side by
//! side (BENCHMARKS.md §9c, medians of six runs): POST orders p99 at 10 % load fell from 12.4
//! to 1.95 ms. `journal_size_limit` equals the budget, so a rewound WAL is reused in place
//! instead of being truncated: truncating a 100–500 MiB file stalled the writer for 0.1–1 s.

use super::stats::DbStats;
use super::{StoreConfig, apply_pragmas};
use parking_lot::{Condvar, Mutex};
use rusqlite::Connection;
use std::cell::Cell;
use std::ffi::c_int;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The shortest time between two passes of the background thread.
pub const BACKGROUND_EVERY: Duration = Duration::from_millis(50);

/// While passes keep failing, the background thread warns at most this often.
const WARN_EVERY: Duration = Duration::from_secs(60);

thread_local! {
    /// Frames in the WAL after this thread's last commit (set by [`note_frames`]).
    static WAL_FRAMES: Cell<c_int> = const { Cell::new(0) };
}

/// SQLite's WAL hook on the write connection: runs after each commit, on the committing thread.
fn note_frames(_: &rusqlite::hooks::Wal, frames: c_int) -> rusqlite::Result<()> {
    WAL_FRAMES.with(|f| f.set(frames));
    Ok(())
}

/// The writer's side: decides after each batch whether to run the checkpoint that lets the WAL
/// restart. Owned by the writer thread.
pub struct WalReset {
    /// Wakes the background thread after each batch.
    wake: Arc<Wake>,
    /// Frames at which the writer checkpoints (7/8 of the budget).
    at: c_int,
    /// Frames at which it tries next: a checkpoint that could not finish (a reader still used
    /// old frames) or a rewind a reader prevented is retried only after another 1/8 of growth,
    /// never after every batch. One that met the background pass (busy) is retried after the
    /// next batch: the writer does not wait for the pass, so the WAL grows past the reset
    /// point by what is committed while the pass copies and syncs.
    next: c_int,
}

impl WalReset {
    /// Turns SQLite's automatic checkpoint off on the write connection `conn`, sets
    /// `journal_size_limit` to `budget_mb` MiB and installs the hook that counts frames.
    /// `background` is the thread that the writer wakes after each batch.
    pub fn install(
        conn: &Connection,
        budget_mb: u64,
        background: &Checkpointer,
    ) -> rusqlite::Result<WalReset> {
        let budget = budget_mb.clamp(1, 1 << 20) << 20;
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        conn.pragma_update(None, "journal_size_limit", budget as i64)?;
        // after the pragma: wal_autocheckpoint replaces any WAL hook
        conn.wal_hook(Some(note_frames));
        let page: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        let frames = (budget / 8 * 7).saturating_sub(32) / (page.max(512) as u64 + 24);
        let at = c_int::try_from(frames.max(1)).unwrap_or(c_int::MAX);
        Ok(WalReset {
            wake: background.wake.clone(),
            at,
            next: at,
        })
    }

    /// Called by the writer after a batch is acknowledged: checkpoints itself when the WAL is
    /// due, then wakes the background thread (after, so that a pass it wakes cannot take the
    /// checkpoint lock first and make the writer's own checkpoint busy).
    pub fn after_batch(&mut self, conn: &Connection, stats: &DbStats) {
        self.reset_if_due(conn, stats);
        self.wake.committed();
    }

    fn reset_if_due(&mut self, conn: &Connection, stats: &DbStats) {
        let frames = WAL_FRAMES.with(Cell::get);
        if frames < self.at {
            self.next = self.at;
            return;
        }
        if frames < self.next {
            return;
        }
        match passive(conn) {
            // the background thread is in a pass (it holds the checkpoint lock): try again
            // after the next batch, the pass takes milliseconds
            Ok((1, _, _)) => return,
            Ok((0, log, copied)) if log == copied => {
                stats.wal_resets.fetch_add(1, Ordering::Relaxed);
            }
            Ok((_, log, copied)) => tracing::debug!(
                log,
                copied,
                "WAL checkpoint incomplete; a reader holds old frames"
            ),
            Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed"),
        }
        self.next = frames.saturating_add(self.at / 8);
    }
}

/// `PRAGMA wal_checkpoint(PASSIVE)`: (busy, frames in the WAL, frames copied).
fn passive(conn: &Connection) -> rusqlite::Result<(i64, i64, i64)> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })
}

/// What the background thread waits on.
struct Wake {
    state: Mutex<WakeState>,
    cv: Condvar,
}

struct WakeState {
    /// Something was committed since the last complete pass (at start: whatever the WAL
    /// still holds, say after a crash).
    pending: bool,
    stopped: bool,
}

impl Wake {
    /// The writer committed a batch.
    fn committed(&self) {
        let mut st = self.state.lock();
        if !st.pending {
            st.pending = true;
            self.cv.notify_one();
        }
    }
}

/// Handle to the checkpoint thread; stops it on drop.
pub struct Checkpointer {
    wake: Arc<Wake>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts the thread that checkpoints `path` (see the module docs); `stats` counts its
    /// passes.
    pub fn start(
        path: &Path,
        cfg: &StoreConfig,
        stats: Arc<DbStats>,
    ) -> rusqlite::Result<Checkpointer> {
        let conn = Connection::open(path)?;
        apply_pragmas(&conn, cfg, false)?;
        let wake = Arc::new(Wake {
            state: Mutex::new(WakeState {
                pending: true,
                stopped: false,
            }),
            cv: Condvar::new(),
        });
        let w = wake.clone();
        let thread = std::thread::Builder::new()
            .name("litetrade-checkpoint".into())
            .spawn(move || background(&conn, &w, &stats))
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        Ok(Checkpointer {
            wake,
            thread: Some(thread),
        })
    }

    /// Stops the thread (idempotent).
    pub fn stop(&mut self) {
        self.wake.state.lock().stopped = true;
        self.wake.cv.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The background thread: a pass when something was committed, at most one per
/// [`BACKGROUND_EVERY`]; a pass that could not copy everything is retried after the interval.
fn background(conn: &Connection, wake: &Wake, stats: &DbStats) {
    let mut failures = Failures::default();
    let mut st = wake.state.lock();
    loop {
        while !st.pending && !st.stopped {
            wake.cv.wait(&mut st);
        }
        if st.stopped {
            return;
        }
        st.pending = false;
        drop(st);
        stats.checkpoint_passes.fetch_add(1, Ordering::Relaxed);
        let done = match passive(conn) {
            Ok((0, log, copied)) => {
                failures.passed();
                log == copied
            }
            // busy: the writer's own checkpoint held the lock; this says nothing either way
            Ok(_) => false,
            Err(e) => {
                if let Some(since) = failures.failed(Instant::now()) {
                    tracing::warn!(error = %e, failed_passes = since, "WAL checkpoint failed");
                }
                false
            }
        };
        st = wake.state.lock();
        st.pending |= !done;
        let until = Instant::now() + BACKGROUND_EVERY;
        while !st.stopped && !wake.cv.wait_until(&mut st, until).timed_out() {}
    }
}

/// A run of failed background passes, so that a pass failing every 50 ms (an I/O error, a
/// full disk) warns once a minute instead of twenty times a second.
#[derive(Default)]
struct Failures {
    /// Failed passes in the current run.
    count: u64,
    /// When the run last warned.
    warned: Option<Instant>,
}

impl Failures {
    /// A pass failed at `now`: `Some(failed passes in this run)` when it should warn (the
    /// first failure of a run, then once per [`WARN_EVERY`]).
    fn failed(&mut self, now: Instant) -> Option<u64> {
        self.count += 1;
        match self.warned {
            Some(t) if now.duration_since(t) < WARN_EVERY => None,
            _ => {
                self.warned = Some(now);
                Some(self.count)
            }
        }
    }

    /// A pass ran: the run of failures, if any, is over (said once, at info).
    fn passed(&mut self) {
        if self.count > 0 {
            tracing::info!(failed_passes = self.count, "WAL checkpoints work again");
        }
        *self = Failures::default();
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_of_failures_warns_at_its_start_then_once_a_minute() {
        let t0 = Instant::now();
        let mut f = Failures::default();
        assert_eq!(f.failed(t0), Some(1), "the first failure warns");
        // a pass every 50 ms for just under a minute: silent
        for i in 1..1_199u32 {
            assert_eq!(f.failed(t0 + BACKGROUND_EVERY * i), None, "failure {i}");
        }
        assert_eq!(
            f.failed(t0 + WARN_EVERY),
            Some(1_200),
            "a minute on, with the count"
        );
        assert_eq!(f.failed(t0 + WARN_EVERY + BACKGROUND_EVERY), None);
        f.passed();
        assert_eq!(
            f.failed(t0 + WARN_EVERY + BACKGROUND_EVERY * 2),
            Some(1),
            "a new run warns at once"
        );
    }
}
