//! The single writer: one thread owns the only write connection, takes whatever jobs are queued,
//! applies them in one transaction (group commit) and only then runs each job's completion.
//!
//! A job marked `continues` is one part of a larger unit (a signal's fan-out is sent in parts,
//! so the writer inserts the first part while the sequencer computes the next). The writer
//! applies it at once but does not commit until a job without the mark has been applied too,
//! so the unit commits or fails as a whole. If the writer stops before the unit is complete,
//! the transaction is rolled back and every part fails.
//!
//! When a batch fails (disk full, lock held too long, I/O error) nothing of it is committed, every
//! job in it completes with the error, and every later job of the same or an older *epoch* is
//! refused too: the sequencer that produced them had already applied them in memory, so it must
//! reload its state from the database (see `Writer::take_failure`) and continue in a new epoch.

use super::checkpoint::WalReset;
use super::ops::{Op, apply_all};
use super::stats::DbStats;
use super::{StoreConfig, StoreError};
use parking_lot::Mutex;
use rusqlite::{Connection, TransactionBehavior};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What runs after the batch holding a job has committed (or failed).
pub type Completion = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// One unit of work: row changes applied atomically with the rest of its batch.
pub struct Job {
    /// Row changes, in order.
    pub ops: Vec<Op>,
    /// The submitter's epoch (see the module docs).
    pub epoch: i64,
    /// More parts of the same unit follow; commit only together with them (see the module
    /// docs). A submitter that sets it must always send a last part without it.
    pub continues: bool,
    /// Called once, after COMMIT (Ok) or after the rollback (Err).
    pub done: Completion,
}

enum Msg {
    Job(Job),
    Shutdown(Sender<()>),
}

/// Handle to the writer thread.
pub struct Writer {
    tx: Mutex<Option<Sender<Msg>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    shared: Arc<Shared>,
}

struct Shared {
    rejected_upto: AtomicI64,
    failed: AtomicBool,
    stats: Arc<DbStats>,
}

impl Writer {
    /// Starts the writer thread on `conn`, which `reset` was installed on. Fails only when the
    /// system cannot start another thread.
    pub fn start(
        conn: Connection,
        reset: WalReset,
        cfg: StoreConfig,
        stats: Arc<DbStats>,
    ) -> Result<Writer, std::io::Error> {
        let (tx, rx) = channel();
        let shared = Arc::new(Shared {
            rejected_upto: AtomicI64::new(-1),
            failed: AtomicBool::new(false),
            stats,
        });
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name("litetrade-writer".into())
            .spawn(move || run(conn, reset, rx, cfg, sh))?;
        Ok(Writer {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            shared,
        })
    }

    /// Queues a job. If the writer has stopped, the job completes at once with an error.
    pub fn submit(&self, job: Job) {
        self.shared
            .stats
            .writer_queue
            .fetch_add(1, Ordering::Relaxed);
        let guard = self.tx.lock();
        let rejected = match guard.as_ref() {
            Some(tx) => tx.send(Msg::Job(job)).err().map(|e| match e.0 {
                Msg::Job(j) => j,
                Msg::Shutdown(_) => unreachable!(),
            }),
            None => Some(job),
        };
        drop(guard);
        if let Some(job) = rejected {
            self.shared
                .stats
                .writer_queue
                .fetch_sub(1, Ordering::Relaxed);
            (job.done)(Err(StoreError::Unavailable(
                "the writer has stopped".into(),
            )));
        }
    }

    /// Returns the last failed epoch once after a batch failed, else `None`.
    pub fn take_failure(&self) -> Option<i64> {
        self.shared
            .failed
            .swap(false, Ordering::SeqCst)
            .then(|| self.shared.rejected_upto.load(Ordering::SeqCst))
    }

    /// Raises the failure flag again (the sequencer could not reload; it will retry).
    pub fn flag_failure(&self) {
        self.shared.failed.store(true, Ordering::SeqCst);
    }

    /// Commits everything queued, checkpoints the WAL and stops the thread. Idempotent.
    pub fn shutdown(&self) {
        let tx = self.tx.lock().take();
        if let Some(tx) = tx {
            let (ack_tx, ack_rx) = channel();
            if tx.send(Msg::Shutdown(ack_tx)).is_ok() {
                let _ = ack_rx.recv();
            }
        }
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn run(
    mut conn: Connection,
    mut reset: WalReset,
    rx: Receiver<Msg>,
    cfg: StoreConfig,
    sh: Arc<Shared>,
) {
    let mut batch: Vec<Job> = Vec::new();
    let mut shutdown_ack = None;
    while shutdown_ack.is_none() {
        match rx.recv() {
            Ok(Msg::Job(j)) => batch.push(j),
            Ok(Msg::Shutdown(ack)) => shutdown_ack = Some(ack),
            Err(_) => break,
        }
        // group commit: take what is queued, and keep taking while jobs still arrive (up to
        // `commit_delay_us` after the last one), so a burst shares one transaction
        let mut last_arrival = Instant::now();
        while batch.len() < cfg.max_batch && shutdown_ack.is_none() {
            match rx.try_recv() {
                Ok(Msg::Job(j)) => {
                    batch.push(j);
                    last_arrival = Instant::now();
                }
                Ok(Msg::Shutdown(ack)) => shutdown_ack = Some(ack),
                Err(_) if last_arrival.elapsed() < Duration::from_micros(cfg.commit_delay_us) => {
                    std::thread::yield_now()
                }
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            sh.stats
                .writer_queue
                .fetch_sub(batch.len() as u64, Ordering::Relaxed);
            let rest = || next_part(&rx, &sh, &mut shutdown_ack);
            commit_batch(&mut conn, std::mem::take(&mut batch), rest, &cfg, &sh);
            // after the acknowledgements: a checkpoint's fsyncs delay only what is queued
            reset.after_batch(&conn, &sh.stats);
        }
    }
    super::refresh_statistics(&conn, super::OPTIMIZE_AT_CLOSE);
    // (busy, frames in the WAL, frames copied into the database): busy when a reader held on,
    // which matters only if it kept frames from being copied (the file is whole otherwise)
    let folded = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
        ))
    });
    if !matches!(folded, Ok((busy, log, copied)) if busy == 0 || copied >= log) {
        sh.stats.wal_left.store(true, Ordering::Relaxed);
        let why = folded.map_or_else(|e| e.to_string(), |_| "a reader held on".into());
        tracing::warn!(
            error = %why,
            wal = %format!("{}-wal", conn.path().unwrap_or("the database")),
            "the final WAL checkpoint failed: the -wal file still holds committed writes; \
             keep it beside the database (a copy or move of the database file alone loses \
             them)"
        );
    }
    if let Some(ack) = shutdown_ack {
        let _ = ack.send(());
    }
}

/// Waits for the next part of a unit whose earlier parts are applied but not committed. `None`
/// when the writer is told to stop (or every sender is gone) first.
fn next_part(rx: &Receiver<Msg>, sh: &Shared, shutdown: &mut Option<Sender<()>>) -> Option<Job> {
    if shutdown.is_some() {
        return None;
    }
    loop {
        match rx.recv() {
            Ok(Msg::Job(j)) => {
                sh.stats.writer_queue.fetch_sub(1, Ordering::Relaxed);
                if let Some(j) = refuse_if_stale(j, sh) {
                    return Some(j);
                }
            }
            Ok(Msg::Shutdown(ack)) => {
                *shutdown = Some(ack);
                return None;
            }
            Err(_) => return None,
        }
    }
}

/// Completes a job of a failed epoch with an error; passes a live one through.
fn refuse_if_stale(j: Job, sh: &Shared) -> Option<Job> {
    if j.epoch > sh.rejected_upto.load(Ordering::SeqCst) {
        return Some(j);
    }
    (j.done)(Err(StoreError::Unavailable(
        "an earlier write failed; the engine is reloading, retry".into(),
    )));
    None
}

fn commit_batch(
    conn: &mut Connection,
    batch: Vec<Job>,
    mut rest: impl FnMut() -> Option<Job>,
    cfg: &StoreConfig,
    sh: &Shared,
) {
    let rejected_upto = sh.rejected_upto.load(Ordering::SeqCst);
    let mut live: Vec<Job> = batch
        .into_iter()
        .filter_map(|j| refuse_if_stale(j, sh))
        .collect();
    if live.is_empty() {
        return;
    }
    let t0 = Instant::now();
    let mut attempt = 0;
    let result = loop {
        match try_commit(conn, &mut live, &mut rest) {
            Err(e) if is_busy(&e) && attempt < cfg.busy_retries => {
                attempt += 1;
                sh.stats.retries.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10 << attempt));
            }
            other => break other,
        }
    };
    match result {
        Ok(()) => {
            sh.stats
                .record_batch(live.len() as u64, t0.elapsed().as_micros() as u64);
            // the batch's row changes are freed after all its answers (a fan-out's parts
            // hold tens of thousands of rows)
            let mut spent = Vec::with_capacity(live.len());
            for j in live {
                spent.push(j.ops);
                (j.done)(Ok(()));
            }
            drop(spent);
        }
        Err(e) => {
            let err = StoreError::from(e);
            tracing::error!(error = %err, jobs = live.len(), "write batch failed; rolled back");
            sh.stats.failures.fetch_add(1, Ordering::Relaxed);
            let max_epoch = live.iter().map(|j| j.epoch).max().unwrap_or(rejected_upto);
            sh.rejected_upto.fetch_max(max_epoch, Ordering::SeqCst);
            sh.failed.store(true, Ordering::SeqCst);
            for j in live {
                (j.done)(Err(err.clone()));
            }
        }
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// Applies `jobs` in one transaction, pulling further parts from `rest` while the last job
/// applied `continues`, then commits. Without its last part the unit is rolled back.
fn try_commit(
    conn: &mut Connection,
    jobs: &mut Vec<Job>,
    rest: &mut impl FnMut() -> Option<Job>,
) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut applied = 0;
    loop {
        apply_all(&tx, jobs[applied..].iter().flat_map(|j| &j.ops))?;
        applied = jobs.len();
        if !jobs.last().is_some_and(|j| j.continues) {
            return tx.commit();
        }
        match rest() {
            Some(j) => jobs.push(j),
            None => {
                return Err(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ABORT),
                    Some("the writer stopped before every part of a unit arrived".into()),
                ));
            }
        }
    }
}
