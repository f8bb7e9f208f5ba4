//! SQLite persistence: opening and tuning the file, the read pool, the single group-committing
//! writer, the schema and its migrations, and one module per table.

pub mod checkpoint;
pub mod files;
pub mod hot;
pub mod ops;
pub mod optimize;
pub mod schema;
pub mod seed;
pub mod stats;
pub mod tables;
pub mod writer;

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, OpenFlags};
use serde::{Deserialize, Serialize};
use stats::DbStats;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Durability of a commit in WAL mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// `synchronous=NORMAL`: a commit survives a process crash (kill -9) but the last commits
    /// before a power loss or OS crash may roll back. The file is never corrupted.
    #[default]
    Normal,
    /// `synchronous=FULL`: every commit is fsynced; survives power loss; ~3× slower commits.
    Full,
}

/// Store tunables.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Read connections in the pool.
    pub pool_size: u32,
    /// `synchronous` mode.
    pub synchronous: SyncMode,
    /// Reads slower than this are logged (ms).
    pub slow_query_ms: u64,
    /// A read is interrupted after this long (ms).
    pub query_timeout_ms: u64,
    /// SQLite busy timeout (ms).
    pub busy_timeout_ms: u64,
    /// Retries of a busy write transaction after the busy timeout.
    pub busy_retries: u32,
    /// Most jobs in one writer transaction.
    pub max_batch: usize,
    /// Group commit: how long (µs) the writer keeps collecting after the last job arrived
    /// before it commits. 0 commits whatever is queued at once.
    pub commit_delay_us: u64,
    /// A cap on the file size in pages (`PRAGMA max_page_count`): a quota, and the way the
    /// disk-full tests make the disk "full". None: no cap.
    pub max_page_count: Option<u64>,
    /// The WAL's size budget in MiB. The writer restarts the WAL from its start once it holds
    /// 7/8 of this (see `checkpoint`), and SQLite trims a longer file back to it. A larger
    /// budget makes the writer's short checkpoint pause rarer and costs disk space.
    pub wal_max_mb: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            pool_size: 8,
            synchronous: SyncMode::Normal,
            slow_query_ms: 50,
            query_timeout_ms: 5000,
            busy_timeout_ms: 10_000,
            busy_retries: 3,
            max_batch: 4096,
            commit_delay_us: 0,
            max_page_count: None,
            wal_max_mb: 256,
        }
    }
}

/// What can go wrong in the store.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database cannot take writes now (disk full, locked by another process, I/O error).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The file could not be opened or is not a litetrade database.
    #[error("cannot open database {path}: {reason}")]
    Open {
        /// File path.
        path: String,
        /// Why.
        reason: String,
    },
    /// Any other SQLite error.
    #[error("database error: {0}")]
    Sqlite(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode::*;
        match e.sqlite_error_code() {
            Some(
                DiskFull | DatabaseBusy | DatabaseLocked | SystemIoFailure | ReadOnly | CannotOpen,
            ) => StoreError::Unavailable(e.to_string()),
            _ => StoreError::Sqlite(e.to_string()),
        }
    }
}

impl From<r2d2::Error> for StoreError {
    fn from(e: r2d2::Error) -> Self {
        StoreError::Unavailable(format!("no read connection: {e}"))
    }
}

/// The store: a tuned SQLite file, a pool of read-only connections and the single writer.
pub struct Store {
    path: PathBuf,
    pool: r2d2::Pool<SqliteConnectionManager>,
    writer: writer::Writer,
    stats: Arc<DbStats>,
    cfg: StoreConfig,
    checkpointer: parking_lot::Mutex<checkpoint::Checkpointer>,
}

/// Applies the connection pragmas of DESIGN.md (page_size only matters for new files).
pub fn apply_pragmas(
    conn: &Connection,
    cfg: &StoreConfig,
    read_only: bool,
) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::from_millis(cfg.busy_timeout_ms))?;
    let sync = match cfg.synchronous {
        SyncMode::Normal => "NORMAL",
        SyncMode::Full => "FULL",
    };
    conn.execute_batch(&format!(
        "PRAGMA synchronous={sync}; PRAGMA cache_size=-131072; PRAGMA mmap_size=536870912; \
         PRAGMA foreign_keys=ON; PRAGMA temp_store=MEMORY;"
    ))?;
    if read_only {
        conn.execute_batch("PRAGMA query_only=ON;")?;
    } else if let Some(n) = cfg.max_page_count {
        conn.query_row(&format!("PRAGMA max_page_count={n}"), [], |_| Ok(()))?;
    }
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

/// How every read connection opens its file: read-only, used by one thread at a time.
const READ_FLAGS: OpenFlags =
    OpenFlags::SQLITE_OPEN_READ_ONLY.union(OpenFlags::SQLITE_OPEN_NO_MUTEX);

/// Opens a read connection as the pool's are opened (flags and pragmas), outside the pool.
pub(crate) fn open_read_connection(path: &Path, cfg: &StoreConfig) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(path, READ_FLAGS)?;
    apply_pragmas(&conn, cfg, true)?;
    Ok(conn)
}

/// Opens (creating if needed) a file for writing, with WAL on and the schema migrated.
pub fn open_write_connection(path: &Path, cfg: &StoreConfig) -> Result<Connection, StoreError> {
    let open_err = |reason: String| open_error(path, reason);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.is_dir()
    {
        return Err(open_err(format!(
            "directory {} does not exist",
            dir.display()
        )));
    }
    let created = !path.exists();
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| open_err(e.to_string()))?;
    conn.busy_timeout(Duration::from_millis(cfg.busy_timeout_ms))
        .map_err(|e| open_err(e.to_string()))?;
    // SQLite opens a file it may not write read-only, and every write would fail later
    if conn
        .is_readonly(rusqlite::MAIN_DB)
        .map_err(|e| open_err(e.to_string()))?
    {
        return Err(open_err(
            "the file is read-only (check its permissions)".into(),
        ));
    }
    // before anything is changed (WAL mode included)
    if let Some(why) = schema::foreign_file(&conn).map_err(|e| open_err(e.to_string()))? {
        return Err(open_err(why));
    }
    // page_size takes effect only before the first table exists (new files).
    let setup = || -> rusqlite::Result<()> {
        let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
        if pages == 0 {
            conn.execute_batch("PRAGMA page_size=8192;")?;
        }
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(rusqlite::Error::InvalidQuery);
        }
        Ok(())
    };
    setup().map_err(|e| open_err(format!("not a usable SQLite database ({e})")))?;
    // the file holds balances, hashed tokens and sealed credentials: owner only. SQLite gives
    // new -wal and -shm files the database's mode; ones left from an earlier run keep theirs.
    #[cfg(unix)]
    if created {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
    let real = files::real_path(path);
    for (suffix, what) in [
        ("", "the database file"),
        ("-wal", "the database's WAL file"),
        ("-shm", "the database's shared-memory file"),
    ] {
        files::keep_private(&files::with_suffix(&real, suffix), what);
    }
    apply_pragmas(&conn, cfg, false).map_err(|e| open_err(e.to_string()))?;
    schema::migrate(&conn).map_err(|e| open_err(e.to_string()))?;
    Ok(conn)
}

/// `PRAGMA optimize` at open: re-analyze every table whose size changed tenfold since its
/// statistics were taken ([`refresh_statistics`]).
pub const OPTIMIZE_AT_OPEN: &str = "PRAGMA optimize=0x10002;";
/// `PRAGMA optimize` at close: the tables this connection's queries found stale.
pub const OPTIMIZE_AT_CLOSE: &str = "PRAGMA optimize;";

/// Keeps the planner's statistics in step with the tables, once a file has them (`litetrade
/// optimize` writes `sqlite_stat1`; a file never optimized is planned on SQLite's defaults,
/// which favour the indexes). Statistics taken when a table was nearly empty make SQLite scan
/// it once it has grown, so the store runs `PRAGMA optimize` as SQLite advises for long-lived
/// connections: [`OPTIMIZE_AT_OPEN`] and [`OPTIMIZE_AT_CLOSE`]. Both are bounded by SQLite's
/// analysis limit. A failure is only a warning: the statistics stay as they were.
pub fn refresh_statistics(conn: &Connection, pragma: &'static str) {
    let has_stats = conn
        .query_row(
            "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'sqlite_stat1'",
            [],
            |_| Ok(()),
        )
        .is_ok();
    if !has_stats {
        return;
    }
    if let Err(e) = conn.execute_batch(pragma) {
        tracing::warn!(error = %e, "could not refresh the query planner's statistics");
    }
}

/// The error for a file that cannot be opened (or created) as a store.
pub(crate) fn open_error(path: &Path, reason: impl std::fmt::Display) -> StoreError {
    StoreError::Open {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

impl Store {
    /// Opens the file, migrates it, starts the writer thread and the read pool.
    pub fn open(path: &Path, cfg: StoreConfig) -> Result<Store, StoreError> {
        let conn = open_write_connection(path, &cfg)?;
        // before the read pool opens, so its connections load the refreshed statistics
        refresh_statistics(&conn, OPTIMIZE_AT_OPEN);
        let stats = Arc::new(DbStats::default());
        let open_err = |e: rusqlite::Error| open_error(path, e);
        // Checkpoints stay off the commit path: a thread copies WAL frames in the background,
        // and the writer restarts the WAL only when it nears its budget (see `checkpoint`).
        let checkpointer =
            checkpoint::Checkpointer::start(path, &cfg, stats.clone()).map_err(open_err)?;
        let reset = checkpoint::WalReset::install(&conn, cfg.wal_max_mb, &checkpointer)
            .map_err(open_err)?;
        let writer = writer::Writer::start(conn, reset, cfg.clone(), stats.clone())
            .map_err(|e| open_error(path, format!("cannot start the writer thread: {e}")))?;
        let rcfg = cfg.clone();
        let manager = SqliteConnectionManager::file(path)
            .with_flags(READ_FLAGS)
            .with_init(move |c| apply_pragmas(c, &rcfg, true));
        let pool = r2d2::Pool::builder()
            .max_size(cfg.pool_size.max(1))
            .min_idle(Some(1))
            .test_on_check_out(false)
            .connection_timeout(Duration::from_millis(cfg.busy_timeout_ms.max(1000)))
            .build(manager)
            .map_err(|e| open_error(path, e))?;
        Ok(Store {
            path: path.to_path_buf(),
            pool,
            writer,
            stats,
            cfg,
            checkpointer: parking_lot::Mutex::new(checkpointer),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The writer (submit batches of row changes).
    pub fn writer(&self) -> &writer::Writer {
        &self.writer
    }

    /// Store counters.
    pub fn stats(&self) -> &Arc<DbStats> {
        &self.stats
    }

    /// Bytes of heap SQLite holds now, over every connection of the process (page caches,
    /// prepared statements, schemas), and the most it has held since the process started.
    pub fn sqlite_memory() -> (u64, u64) {
        // SAFETY: both only read SQLite's global memory counters (thread-safe, no pointers);
        // a reset flag of 0 leaves the high-water mark as it is.
        let (now, peak) = unsafe {
            (
                rusqlite::ffi::sqlite3_memory_used(),
                rusqlite::ffi::sqlite3_memory_highwater(0),
            )
        };
        (now.max(0) as u64, peak.max(0) as u64)
    }

    /// A read-only connection of the caller's own, outside the pool, set up like the pool's:
    /// for a thread that must never wait for a pooled one (the sequencer).
    pub fn own_reader(&self) -> Result<Connection, StoreError> {
        open_read_connection(&self.path, &self.cfg).map_err(|e| open_error(&self.path, e))
    }

    /// Pool size, connections open and idle.
    pub fn pool_state(&self) -> (u32, u32, u32) {
        let s = self.pool.state();
        (self.cfg.pool_size, s.connections, s.idle_connections)
    }

    /// Runs `f` on a pooled read-only connection, with the time limit
    /// (`store.query_timeout_ms`), the slow-query log and the counters. `name` identifies the
    /// query in logs.
    pub fn read<T>(
        &self,
        name: &'static str,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        self.read_within(
            name,
            Some(Duration::from_millis(self.cfg.query_timeout_ms)),
            f,
        )
    }

    /// [`Store::read`] without the time limit: for loading the whole trading state (at start
    /// and after a failed write), which reads every open order and position and takes as long
    /// as the venue is large. Cutting it short would leave the engine unable to start. Nor is
    /// it a request read: it is not in the query counters or the slow-query log (its time is
    /// logged at debug level, and the reload after a failed write logs it with its warning).
    pub fn read_all<T>(
        &self,
        name: &'static str,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        self.read_within(name, None, f)
    }

    fn read_within<T>(
        &self,
        name: &'static str,
        limit: Option<Duration>,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let t0 = Instant::now();
        let conn = self.pool.get().inspect_err(|_| {
            self.stats
                .failures
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        })?;
        if t0.elapsed() > Duration::from_millis(1) {
            self.stats
                .pool_waits
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        if let Some(limit) = limit {
            let deadline = t0 + limit;
            conn.progress_handler(50_000, Some(move || Instant::now() > deadline))?;
        }
        let mut out = f(&conn);
        if limit.is_some() {
            conn.progress_handler(0, None::<fn() -> bool>)?;
        }
        if !conn.is_autocommit() {
            // a transaction left open would pin its snapshot on a pooled connection: every
            // later read there would be stale, and the WAL could not be checkpointed
            conn.execute_batch("ROLLBACK")?;
            out = Err(rusqlite::Error::InvalidParameterName(format!(
                "{name} left a transaction open"
            )));
        }
        let us = t0.elapsed().as_micros() as u64;
        let slow = limit.is_some() && us > self.cfg.slow_query_ms * 1000;
        if limit.is_none() {
            // a whole-state load: not a request read, so not in the query figures either
            tracing::debug!(query = name, elapsed_us = us, "bulk read");
        } else {
            if slow {
                tracing::warn!(query = name, elapsed_us = us, "slow query");
            }
            self.stats.record_query(us, slow);
        }
        out.map_err(|e| {
            self.stats
                .failures
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(query = name, error = %e, "query failed");
            StoreError::from(e)
        })
    }

    /// Stops the writer after it has committed everything queued, then checkpoints the WAL.
    pub fn shutdown(&self) {
        self.checkpointer.lock().stop();
        self.writer.shutdown();
    }
}

/// Writes a consistent copy of the database at `src` to `dest` with SQLite's online backup API;
/// safe while another connection or process is writing. `progress(done_pages, total_pages)`.
/// The copy gets mode 0600, like the database.
pub fn backup_file(src: &Path, dest: &Path, progress: &dyn Fn(u64, u64)) -> Result<(), StoreError> {
    let refuse =
        |why: String| StoreError::Unavailable(format!("backup to {}: {why}", dest.display()));
    if let Some(dir) = dest
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && !d.is_dir())
    {
        return Err(refuse(format!(
            "directory {} does not exist",
            dir.display()
        )));
    }
    let from = Connection::open_with_flags(src, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| open_error(src, e))?;
    from.busy_timeout(Duration::from_secs(10))?;
    // a file that is not SQLite, or not litetrade's, is named as such before anything is written
    let foreign = schema::foreign_file(&from)
        .map_err(|e| open_error(src, format!("not a usable SQLite database ({e})")))?;
    if let Some(why) = foreign {
        return Err(open_error(src, why));
    }
    // created here, empty and private, so that an existing file is never overwritten
    let mut file = std::fs::OpenOptions::new();
    file.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut file, 0o600);
    file.open(dest).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => refuse("the file already exists".into()),
        _ => refuse(e.to_string()),
    })?;
    let copied = copy_into(&from, dest, progress);
    if copied.is_err() {
        // no half-written file that looks like a backup
        let _ = std::fs::remove_file(dest);
    }
    copied
}

fn copy_into(
    from: &Connection,
    dest: &Path,
    progress: &dyn Fn(u64, u64),
) -> Result<(), StoreError> {
    let mut to = Connection::open(dest)?;
    {
        // One read snapshot for every step. Without it each step reads the file as it is
        // then, and SQLite restarts the copy whenever another connection has committed in
        // between: under steady writes a backup never finished, and the WAL it pinned grew
        // by gigabytes.
        let snapshot = from.unchecked_transaction()?;
        let pages: i64 = snapshot.query_row("PRAGMA page_count", [], |r| r.get(0))?;
        // about a hundred steps, for the progress bar
        let per_step = i32::try_from(pages / 100).unwrap_or(i32::MAX).max(8);
        let backup = rusqlite::backup::Backup::new(from, &mut to)?;
        loop {
            let more = backup.step(per_step)?;
            let p = backup.progress();
            progress((p.pagecount - p.remaining) as u64, p.pagecount as u64);
            if more == rusqlite::backup::StepResult::Done {
                break;
            }
        }
        drop(backup);
        snapshot.rollback()?;
    }
    let ok: String = to.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    if ok != "ok" {
        return Err(StoreError::Sqlite(format!(
            "backup copy failed its integrity check: {ok}"
        )));
    }
    Ok(())
}
