//! Counters of the store: reads through the pool, the writer's batches and commits.

use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

/// Lock-free counters shared by the pool users and the writer.
#[derive(Default, Debug)]
pub struct DbStats {
    /// Read queries run.
    pub queries: AtomicU64,
    /// Read or write failures.
    pub failures: AtomicU64,
    /// SQLITE_BUSY retries.
    pub retries: AtomicU64,
    /// Queries above the slow threshold.
    pub slow_queries: AtomicU64,
    /// Σ read latency in µs.
    pub query_us_total: AtomicU64,
    /// Max read latency in µs.
    pub query_us_max: AtomicU64,
    /// Check-outs that had to wait for a connection (> 1 ms).
    pub pool_waits: AtomicU64,
    /// Batches committed.
    pub batches: AtomicU64,
    /// Jobs committed (Σ batch sizes).
    pub batched_jobs: AtomicU64,
    /// Largest batch.
    pub batch_max: AtomicU64,
    /// Σ commit latency (BEGIN..COMMIT) in µs.
    pub commit_us_total: AtomicU64,
    /// Max commit latency in µs.
    pub commit_us_max: AtomicU64,
    /// Jobs waiting for the writer.
    pub writer_queue: AtomicU64,
    /// Checkpoints the writer ran itself to let the WAL restart from its start.
    pub wal_resets: AtomicU64,
    /// Passes of the background checkpoint thread.
    pub checkpoint_passes: AtomicU64,
    /// Set when the writer's last checkpoint, at shutdown, could not empty the WAL (a full
    /// disk, a reader that held on): `<db>-wal` then still holds committed writes.
    pub wal_left: AtomicBool,
}

impl DbStats {
    /// Records one read's latency.
    pub fn record_query(&self, us: u64, slow: bool) {
        self.queries.fetch_add(1, Relaxed);
        self.query_us_total.fetch_add(us, Relaxed);
        self.query_us_max.fetch_max(us, Relaxed);
        if slow {
            self.slow_queries.fetch_add(1, Relaxed);
        }
    }

    /// Records one committed batch.
    pub fn record_batch(&self, jobs: u64, us: u64) {
        self.batches.fetch_add(1, Relaxed);
        self.batched_jobs.fetch_add(jobs, Relaxed);
        self.batch_max.fetch_max(jobs, Relaxed);
        self.commit_us_total.fetch_add(us, Relaxed);
        self.commit_us_max.fetch_max(us, Relaxed);
    }

    /// A serializable copy.
    pub fn snapshot(&self) -> DbStatsSnapshot {
        let q = self.queries.load(Relaxed);
        let b = self.batches.load(Relaxed);
        DbStatsSnapshot {
            queries: q,
            failures: self.failures.load(Relaxed),
            retries: self.retries.load(Relaxed),
            slow_queries: self.slow_queries.load(Relaxed),
            avg_query_us: self
                .query_us_total
                .load(Relaxed)
                .checked_div(q)
                .unwrap_or(0),
            max_query_us: self.query_us_max.load(Relaxed),
            pool_waits: self.pool_waits.load(Relaxed),
            writer_batches: b,
            writer_jobs: self.batched_jobs.load(Relaxed),
            writer_batch_max: self.batch_max.load(Relaxed),
            writer_avg_commit_us: self
                .commit_us_total
                .load(Relaxed)
                .checked_div(b)
                .unwrap_or(0),
            writer_max_commit_us: self.commit_us_max.load(Relaxed),
            writer_queue: self.writer_queue.load(Relaxed),
            wal_resets: self.wal_resets.load(Relaxed),
            checkpoint_passes: self.checkpoint_passes.load(Relaxed),
        }
    }
}

/// A point-in-time copy of [`DbStats`].
#[derive(Clone, Debug, Serialize)]
pub struct DbStatsSnapshot {
    /// Read queries run.
    pub queries: u64,
    /// Failures.
    pub failures: u64,
    /// Busy retries.
    pub retries: u64,
    /// Slow queries.
    pub slow_queries: u64,
    /// Mean read latency, µs.
    pub avg_query_us: u64,
    /// Max read latency, µs.
    pub max_query_us: u64,
    /// Check-outs that waited.
    pub pool_waits: u64,
    /// Writer batches committed.
    pub writer_batches: u64,
    /// Writer jobs committed.
    pub writer_jobs: u64,
    /// Largest batch.
    pub writer_batch_max: u64,
    /// Mean commit latency, µs.
    pub writer_avg_commit_us: u64,
    /// Max commit latency, µs.
    pub writer_max_commit_us: u64,
    /// Jobs queued for the writer now.
    pub writer_queue: u64,
    /// Completed checkpoints run by the writer to restart the WAL.
    pub wal_resets: u64,
    /// Passes of the background checkpoint thread.
    pub checkpoint_passes: u64,
}
