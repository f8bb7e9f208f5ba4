//! Maintenance: the library behind `litetrade optimize [--db PATH] [--vacuum] [--json]`.
//!
//! [`optimize`] runs, on its own connection (busy timeout, WAL), the steps below and returns an
//! [`OptimizeReport`]; it never prints. Progress goes to a callback `(step, done, total)` so the
//! binary can draw bars (or plain lines when stdout is not a terminal).
//!
//! 0. a file that is not litetrade's, is from a newer litetrade or is empty is refused before
//!    anything is written (an empty file is `serve`'s to create a database in);
//! 1. a file from an older litetrade is migrated to the current schema as opening it would
//!    ([`schema::migrate_tables`]: missing tables created, old ones edited in place, no row
//!    rewritten), then every hot query of [`super::hot::hot_queries`] is measured: its plan, whether
//!    it uses an index, and its median latency through a prepared statement on a fresh read-only
//!    connection (the way the server's pool runs it);
//! 2. index migration: every index of the schema that the file lacks is created (idempotent);
//! 3. `ANALYZE` (one table per transaction, so another writer waits at most one table's worth),
//!    then the STAT4 decision (see [`Stat4`]), then `PRAGMA optimize`;
//! 4. `PRAGMA integrity_check` (full) and `PRAGMA foreign_key_check`: any finding makes
//!    [`OptimizeReport::integrity`] something other than `"ok"` and is listed in
//!    [`OptimizeReport::problems`]; the binary exits with status 2 then;
//! 5. `PRAGMA wal_checkpoint(TRUNCATE)`;
//! 6. with [`OptimizeOptions::vacuum`]: `VACUUM`; a file whose page size is not 8192 is converted
//!    (`journal_mode=DELETE; page_size=8192; VACUUM; journal_mode=WAL`: SQLite cannot change the
//!    page size of a WAL file);
//! 7. the hot queries are measured again, with the file size and free pages.
//!
//! Safe with another process writing to the same file: every write step is a short transaction
//! taken through the 10 s busy timeout, so concurrent writers wait instead of failing and nothing
//! they commit is lost (SQLite's locking serializes the transactions). Creating an index on a very
//! large table holds the write lock while it builds, so run the first migration of a big legacy
//! file at a quiet time. Changing the page size needs the file to itself (leaving WAL mode); when
//! another connection has it open, the conversion is skipped with a warning and a plain VACUUM runs.
//!
//! A damaged file is never "repaired" and never panics: the first corruption error stops the run
//! and the report carries `integrity != "ok"` with the messages of `PRAGMA integrity_check`.

use super::hot::{self, HotQuery};
use super::schema;
use super::{StoreConfig, StoreError, apply_pragmas, open_error};
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

/// The page size `optimize --vacuum` converts files to (DESIGN.md: 8 KiB pages).
pub const TARGET_PAGE_SIZE: u32 = 8192;
/// At most this many messages of each check are kept in the report.
const MAX_MESSAGES: usize = 100;

/// What `litetrade optimize` should do.
#[derive(Clone, Debug)]
pub struct OptimizeOptions {
    /// Run VACUUM (and convert the page size to 8192 when it differs).
    pub vacuum: bool,
    /// Keep the `sqlite_stat4` histograms after ANALYZE instead of clearing them (see [`Stat4`]).
    pub keep_stat4: bool,
    /// Most timed runs per hot query and measurement (the median is reported).
    pub runs: u32,
    /// Time budget per hot query and measurement, ms: a slow query (a full scan of a large
    /// legacy table) gets fewer runs, at least 5.
    pub query_budget_ms: u64,
    /// SQLite busy timeout, ms (how long to wait for another writer).
    pub busy_timeout_ms: u64,
}

impl Default for OptimizeOptions {
    fn default() -> Self {
        OptimizeOptions {
            vacuum: false,
            keep_stat4: false,
            runs: 200,
            query_budget_ms: 300,
            busy_timeout_ms: 10_000,
        }
    }
}

/// What was done with the STAT4 histograms after ANALYZE.
///
/// The bundled SQLite is compiled with `SQLITE_ENABLE_STAT4`. Once `sqlite_stat4` holds samples
/// for an index, every prepared statement whose bound parameter meets that index is marked for
/// re-preparation on each new binding (so the planner can look the value up in the histogram).
/// Our hot queries are point reads and short range reads whose one right index is fixed by the
/// schema; the histograms cannot improve their plans, but re-preparing makes each read ≈ 3×
/// slower (DESIGN.md, and the `stat4_us` column of the report shows it on the file at hand). So
/// by default `optimize` keeps `sqlite_stat1` (row counts and selectivity per index, which the
/// planner needs to choose among indexes) and deletes every row of `sqlite_stat4`, then reloads
/// the statistics (`ANALYZE sqlite_schema`). Connections of a running server still hold the
/// statistics they loaded until they reload the schema (any schema change, or a restart).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stat4 {
    /// `sqlite_stat4` rows were deleted after ANALYZE (the default).
    Cleared,
    /// `sqlite_stat4` rows were kept ([`OptimizeOptions::keep_stat4`]).
    Kept,
    /// ANALYZE produced no `sqlite_stat4` rows (SQLite without STAT4, or empty indexes).
    Absent,
    /// The step did not run (the file is damaged).
    NotRun,
}

/// One hot query before and after.
#[derive(Clone, Debug, Serialize)]
pub struct QueryReport {
    /// The hot query's name (see [`super::hot`]).
    pub name: String,
    /// Its `EXPLAIN QUERY PLAN` after optimizing, detail lines joined with `; `.
    pub plan: String,
    /// Whether that plan reads through an index only (no full table scan).
    pub uses_index: bool,
    /// Median latency before, µs (one decimal).
    pub before_us: f64,
    /// Median latency after, µs (one decimal).
    pub after_us: f64,
    /// The plan before optimizing.
    pub plan_before: String,
    /// Whether the plan before used an index only.
    pub uses_index_before: bool,
    /// Median latency right after ANALYZE while `sqlite_stat4` still held samples, µs: the cost
    /// the STAT4 decision avoids (absent when there were no samples).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stat4_us: Option<f64>,
}

/// Everything `optimize` found and did. Serializes to the `--json` object; the first fields are
/// those of the contract (`integrity` … `queries`), the rest are extras.
#[derive(Clone, Debug, Serialize)]
pub struct OptimizeReport {
    /// `"ok"`, or a one-line summary of what `integrity_check` / `foreign_key_check` found (or
    /// why the file could not be checked). Anything but `"ok"` means: exit with status 2.
    pub integrity: String,
    /// Indexes this run created.
    pub indexes_created: usize,
    /// Indexes the schema defines.
    pub indexes_total: usize,
    /// Main database file size before, bytes.
    pub size_before: u64,
    /// Main database file size after, bytes.
    pub size_after: u64,
    /// Page size after, bytes.
    pub page_size: u32,
    /// Journal mode after (`"wal"`).
    pub journal_mode: String,
    /// The hot queries, before and after.
    pub queries: Vec<QueryReport>,
    /// Every problem found (integrity_check messages, foreign key violations, the corruption
    /// error that stopped the run), at most 100 of each kind.
    pub problems: Vec<String>,
    /// Things that did not go as asked but are not damage (e.g. the page size could not be
    /// converted while another process had the file open; a checkpoint left frames behind).
    pub warnings: Vec<String>,
    /// Page size before, bytes.
    pub page_size_before: u32,
    /// Free (unused) pages before.
    pub free_pages_before: u64,
    /// Free pages after.
    pub free_pages_after: u64,
    /// WAL file size before, bytes (0 when there is none).
    pub wal_size_before: u64,
    /// WAL file size after, bytes.
    pub wal_size_after: u64,
    /// What happened to the STAT4 histograms.
    pub stat4: Stat4,
    /// Whether VACUUM ran.
    pub vacuumed: bool,
    /// The step at which a damaged file stopped the run (`None`: every step ran).
    pub stopped_at: Option<String>,
    /// Wall time of the whole run, ms.
    pub elapsed_ms: u64,
}

impl OptimizeReport {
    /// True when integrity and foreign keys are fine (the binary exits 0), false for status 2.
    pub fn is_ok(&self) -> bool {
        self.integrity == "ok" && self.problems.is_empty()
    }

    /// A plain-text before/after table of the hot queries, then sizes, checks and warnings.
    pub fn render_table(&self) -> String {
        let mut out = String::new();
        let name_w = self
            .queries
            .iter()
            .map(|q| q.name.len())
            .max()
            .unwrap_or(5)
            .max(5);
        let stat4 = self.queries.iter().any(|q| q.stat4_us.is_some());
        let yn = |b: bool| if b { "yes" } else { "NO" };
        let _ = write!(
            out,
            "{:<name_w$}  {:<10}  {:>10}  ",
            "query", "index", "before µs"
        );
        if stat4 {
            let _ = write!(out, "{:>10}  ", "stat4 µs");
        }
        let _ = writeln!(out, "{:>10}  plan", "after µs");
        for q in &self.queries {
            let idx = format!("{} → {}", yn(q.uses_index_before), yn(q.uses_index));
            let _ = write!(
                out,
                "{:<name_w$}  {:<10}  {:>10.1}  ",
                q.name, idx, q.before_us
            );
            if stat4 {
                match q.stat4_us {
                    Some(us) => {
                        let _ = write!(out, "{us:>10.1}  ");
                    }
                    None => {
                        let _ = write!(out, "{:>10}  ", "-");
                    }
                }
            }
            let _ = writeln!(out, "{:>10.1}  {}", q.after_us, q.plan);
        }
        let mb = |b: u64| b as f64 / 1_048_576.0;
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "file size:   {:.2} MiB → {:.2} MiB (WAL {:.2} MiB → {:.2} MiB)",
            mb(self.size_before),
            mb(self.size_after),
            mb(self.wal_size_before),
            mb(self.wal_size_after)
        );
        let _ = writeln!(
            out,
            "free pages:  {} → {}",
            self.free_pages_before, self.free_pages_after
        );
        let _ = writeln!(
            out,
            "page size:   {} → {}; journal mode {}{}",
            self.page_size_before,
            self.page_size,
            self.journal_mode,
            if self.vacuumed { "; vacuumed" } else { "" }
        );
        let _ = writeln!(
            out,
            "indexes:     {} created, {} in the schema",
            self.indexes_created, self.indexes_total
        );
        let stat4_text = match self.stat4 {
            Stat4::Cleared => "cleared after ANALYZE (point reads are not re-planned per binding)",
            Stat4::Kept => "kept (--keep-stat4)",
            Stat4::Absent => "none collected",
            Stat4::NotRun => "not run",
        };
        let _ = writeln!(out, "stat4:       {stat4_text}");
        let _ = writeln!(out, "integrity:   {}", self.integrity);
        if let Some(step) = &self.stopped_at {
            let _ = writeln!(
                out,
                "stopped at:  {step} (the file is damaged; restore a backup)"
            );
        }
        for p in &self.problems {
            let _ = writeln!(out, "  problem: {p}");
        }
        for w in &self.warnings {
            let _ = writeln!(out, "  warning: {w}");
        }
        let _ = writeln!(out, "elapsed:     {} ms", self.elapsed_ms);
        out
    }
}

/// How a step failed: damage (reported, status 2) or anything else (an error).
enum Fail {
    Corrupt(String),
    Store(StoreError),
}

impl From<rusqlite::Error> for Fail {
    fn from(e: rusqlite::Error) -> Self {
        if is_corruption(&e) {
            Fail::Corrupt(e.to_string())
        } else {
            Fail::Store(StoreError::from(e))
        }
    }
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        Fail::Store(e)
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

fn is_corruption(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
    )
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

fn pragma_i64(c: &Connection, name: &str) -> rusqlite::Result<i64> {
    c.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
}

/// Runs every maintenance step on the file at `path` (which must exist) and reports.
///
/// `progress(step, done, total)` is called as steps advance (`total` 1 for steps that cannot be
/// subdivided). Returns `Err` when the file cannot be opened at all, is from a newer litetrade,
/// or a step fails for a reason other than damage (e.g. another writer held the lock beyond the
/// busy timeout). Damage is not an error: it yields a report whose `integrity` is not `"ok"`.
pub fn optimize(
    path: &Path,
    opts: &OptimizeOptions,
    progress: &dyn Fn(&str, u64, u64),
) -> Result<OptimizeReport, StoreError> {
    let t0 = Instant::now();
    let open_err = |reason: String| open_error(path, reason);
    if !path.is_file() {
        return Err(open_err("no such file".into()));
    }
    let mut rep = OptimizeReport {
        integrity: "ok".into(),
        indexes_created: 0,
        indexes_total: schema::index_statements().len(),
        size_before: file_len(path),
        size_after: 0,
        page_size: 0,
        journal_mode: String::new(),
        queries: Vec::new(),
        problems: Vec::new(),
        warnings: Vec::new(),
        page_size_before: 0,
        free_pages_before: 0,
        free_pages_after: 0,
        wal_size_before: file_len(&super::files::with_suffix(
            &super::files::real_path(path),
            "-wal",
        )),
        wal_size_after: 0,
        stat4: Stat4::NotRun,
        vacuumed: false,
        stopped_at: None,
        elapsed_ms: 0,
    };
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| open_err(e.to_string()))?;
    let mut step = "open";
    let result = run(&conn, path, opts, progress, &mut rep, &mut step);
    match result {
        Ok(()) => {}
        Err(Fail::Store(e)) => {
            // Say which step failed.
            return Err(match e {
                StoreError::Unavailable(m) => {
                    StoreError::Unavailable(format!("optimize step {step}: {m}"))
                }
                StoreError::Sqlite(m) => StoreError::Sqlite(format!("optimize step {step}: {m}")),
                other => other,
            });
        }
        Err(Fail::Corrupt(msg)) => {
            rep.stopped_at = Some(step.to_string());
            rep.problems.push(format!("{step}: {msg}"));
            if step != "integrity_check" {
                // Say what else is damaged, if the file lets us look at all.
                if let Ok(msgs) = integrity_messages(&conn) {
                    rep.problems.extend(msgs.into_iter().filter(|m| m != "ok"));
                }
            }
            rep.integrity = if msg.contains("not a database") {
                "not a database".into()
            } else {
                format!("corrupt ({} problem(s))", rep.problems.len())
            };
            rep.page_size = pragma_i64(&conn, "page_size")
                .map(|v| v as u32)
                .unwrap_or(0);
            rep.journal_mode = conn
                .query_row("PRAGMA journal_mode", [], |r| r.get::<_, String>(0))
                .map(|m| m.to_ascii_lowercase())
                .unwrap_or_else(|_| "unknown".into());
        }
    }
    drop(conn);
    rep.size_after = file_len(path);
    rep.wal_size_after = file_len(&super::files::with_suffix(
        &super::files::real_path(path),
        "-wal",
    ));
    rep.elapsed_ms = t0.elapsed().as_millis() as u64;
    Ok(rep)
}

fn run(
    conn: &Connection,
    path: &Path,
    opts: &OptimizeOptions,
    progress: &dyn Fn(&str, u64, u64),
    rep: &mut OptimizeReport,
    step: &mut &'static str,
) -> Result<(), Fail> {
    let cfg = StoreConfig {
        busy_timeout_ms: opts.busy_timeout_ms,
        ..StoreConfig::default()
    };
    // 0. open: WAL, pragmas, refuse a newer schema, migrate an older one.
    *step = "open";
    conn.busy_timeout(Duration::from_millis(opts.busy_timeout_ms))?;
    let version = pragma_i64(conn, "user_version")?;
    if version > schema::SCHEMA_VERSION {
        return Err(Fail::Store(open_error(
            path,
            format!(
                "database schema version {version} is newer than this litetrade ({})",
                schema::SCHEMA_VERSION
            ),
        )));
    }
    // before anything is changed (WAL mode included)
    if let Some(why) = schema::foreign_file(conn)? {
        return Err(Fail::Store(open_error(path, why)));
    }
    // An empty file (0 bytes, or SQLite's header and nothing else) holds nothing to optimize;
    // turning it into a litetrade database is `serve`'s job, not maintenance's.
    if schema::is_empty(conn)? {
        return Err(Fail::Store(open_error(
            path,
            "the file is empty (no tables): there is nothing to optimize; `litetrade serve` \
             creates a database",
        )));
    }
    // (progress starts once the file is known to be one to work on: a refusal is one line)
    progress("open", 0, 1);
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Fail::Store(StoreError::Unavailable(format!(
            "cannot switch {} to WAL (journal mode stays {mode})",
            path.display()
        ))));
    }
    apply_pragmas(conn, &cfg, false)?;
    rep.page_size_before = pragma_i64(conn, "page_size")? as u32;
    rep.free_pages_before = pragma_i64(conn, "freelist_count")? as u64;
    // an older file is migrated as opening it would (the caller makes sure no older engine
    // still serves it); missing indexes are left to step 2, after the "before" measurement
    schema::migrate_tables(conn)?;
    progress("open", 1, 1);

    // 1. measure before.
    *step = "measure_before";
    let hot = hot::hot_queries();
    let before = measure(path, &cfg, &hot, opts, "measure before", progress)?;

    // 2. index migration.
    *step = "indexes";
    let missing = schema::missing_indexes(conn)?;
    let total = missing.len() as u64;
    progress("indexes", 0, total);
    for (i, (_, sql)) in schema::index_statements()
        .into_iter()
        .filter(|(n, _)| missing.contains(n))
        .enumerate()
    {
        conn.execute_batch(sql)?;
        rep.indexes_created += 1;
        progress("indexes", i as u64 + 1, total);
    }

    // 3. ANALYZE, the STAT4 decision, PRAGMA optimize.
    *step = "analyze";
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let n = tables.len() as u64;
    progress("analyze", 0, n);
    for (i, t) in tables.iter().enumerate() {
        conn.execute_batch(&format!("ANALYZE \"{}\";", t.replace('"', "\"\"")))?;
        progress("analyze", i as u64 + 1, n);
    }
    let stat4_rows: i64 = if table_exists(conn, "sqlite_stat4")? {
        conn.query_row("SELECT COUNT(*) FROM sqlite_stat4", [], |r| r.get(0))?
    } else {
        0
    };
    let mut with_stat4 = None;
    if stat4_rows == 0 {
        rep.stat4 = Stat4::Absent;
    } else if opts.keep_stat4 {
        rep.stat4 = Stat4::Kept;
    } else {
        *step = "measure_stat4";
        with_stat4 = Some(measure(
            path,
            &cfg,
            &hot,
            opts,
            "measure with stat4",
            progress,
        )?);
        *step = "analyze";
        conn.execute_batch("DELETE FROM sqlite_stat4;")?;
        rep.stat4 = Stat4::Cleared;
    }
    progress("pragma optimize", 0, 1);
    conn.execute_batch("PRAGMA optimize;")?;
    if rep.stat4 == Stat4::Cleared {
        // PRAGMA optimize re-analyzes with an analysis limit, which collects no STAT4; make
        // sure, then reload the statistics into this connection.
        conn.execute_batch("DELETE FROM sqlite_stat4; ANALYZE sqlite_schema;")?;
    }
    progress("pragma optimize", 1, 1);

    // 4. integrity and foreign keys.
    *step = "integrity_check";
    progress("integrity check", 0, 1);
    let msgs = integrity_messages(conn)?;
    let corrupt = !(msgs.len() == 1 && msgs[0] == "ok");
    if corrupt {
        rep.problems.extend(msgs);
    }
    progress("integrity check", 1, 1);
    *step = "foreign_key_check";
    progress("foreign key check", 0, 1);
    let (fk_msgs, fk_total) = foreign_key_messages(conn)?;
    rep.problems.extend(fk_msgs);
    progress("foreign key check", 1, 1);
    rep.integrity = match (corrupt, fk_total) {
        (false, 0) => "ok".into(),
        (true, 0) => format!(
            "corrupt ({} problem(s) from integrity_check)",
            rep.problems.len()
        ),
        (false, n) => format!("{n} foreign key violation(s)"),
        (true, n) => format!("corrupt, and {n} foreign key violation(s)"),
    };
    if corrupt {
        // Do not checkpoint, vacuum or time a damaged file: report and stop.
        rep.stopped_at = Some("integrity_check".into());
        rep.page_size = pragma_i64(conn, "page_size")? as u32;
        rep.journal_mode = journal_mode(conn)?;
        rep.free_pages_after = pragma_i64(conn, "freelist_count").unwrap_or(0) as u64;
        return Ok(());
    }

    // 5. checkpoint.
    *step = "checkpoint";
    progress("checkpoint", 0, 1);
    checkpoint(conn, rep)?;
    progress("checkpoint", 1, 1);

    // 6. VACUUM.
    if opts.vacuum {
        *step = "vacuum";
        progress("vacuum", 0, 1);
        vacuum(conn, rep)?;
        checkpoint(conn, rep)?;
        progress("vacuum", 1, 1);
    }

    // 7. measure after.
    *step = "measure_after";
    rep.page_size = pragma_i64(conn, "page_size")? as u32;
    rep.journal_mode = journal_mode(conn)?;
    rep.free_pages_after = pragma_i64(conn, "freelist_count")? as u64;
    let after = measure(path, &cfg, &hot, opts, "measure after", progress)?;
    rep.queries = before
        .into_iter()
        .zip(after)
        .enumerate()
        .map(|(i, (b, a))| QueryReport {
            name: a.name.to_string(),
            plan: a.plan,
            uses_index: a.uses_index,
            before_us: b.median_us,
            after_us: a.median_us,
            plan_before: b.plan,
            uses_index_before: b.uses_index,
            stat4_us: with_stat4.as_ref().map(|s| s[i].median_us),
        })
        .collect();
    Ok(())
}

fn table_exists(c: &Connection, name: &str) -> rusqlite::Result<bool> {
    c.query_row(
        "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?1",
        [name],
        |_| Ok(()),
    )
    .optional()
    .map(|o| o.is_some())
}

fn journal_mode(c: &Connection) -> rusqlite::Result<String> {
    c.query_row("PRAGMA journal_mode", [], |r| r.get::<_, String>(0))
        .map(|m| m.to_ascii_lowercase())
}

/// `PRAGMA integrity_check` messages (`["ok"]` for a sound file), at most 100.
fn integrity_messages(c: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut st = c.prepare(&format!("PRAGMA integrity_check({MAX_MESSAGES})"))?;
    let rows = st.query_map([], |r| r.get::<_, String>(0))?;
    rows.collect()
}

/// Foreign key violations as messages (at most 100) and their total count.
fn foreign_key_messages(c: &Connection) -> rusqlite::Result<(Vec<String>, u64)> {
    let mut st = c.prepare("PRAGMA foreign_key_check")?;
    let mut rows = st.query([])?;
    let (mut out, mut n) = (Vec::new(), 0u64);
    while let Some(r) = rows.next()? {
        n += 1;
        if out.len() < MAX_MESSAGES {
            let table: String = r.get(0)?;
            let rowid: Option<i64> = r.get(1)?;
            let parent: String = r.get(2)?;
            out.push(format!(
                "foreign key: {table} row {} references a missing {parent} row",
                rowid.map_or_else(|| "?".to_string(), |v| v.to_string())
            ));
        }
    }
    if n as usize > out.len() {
        out.push(format!(
            "… and {} more foreign key violation(s)",
            n as usize - out.len()
        ));
    }
    Ok((out, n))
}

fn checkpoint(c: &Connection, rep: &mut OptimizeReport) -> rusqlite::Result<()> {
    let (busy, log, done): (i64, i64, i64) =
        c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
    if busy != 0 {
        // SQLite gives -1 for both counts when it could not start the checkpoint at all
        let how_far = if log < 0 {
            "not started".to_string()
        } else {
            format!("{done} of {log} frames")
        };
        rep.warnings.push(format!(
            "WAL checkpoint incomplete ({how_far}): another connection was busy; the server checkpoints later"
        ));
    }
    Ok(())
}

fn vacuum(c: &Connection, rep: &mut OptimizeReport) -> rusqlite::Result<()> {
    let ps = pragma_i64(c, "page_size")? as u32;
    if ps == TARGET_PAGE_SIZE {
        c.execute_batch("VACUUM;")?;
        rep.vacuumed = true;
        return Ok(());
    }
    // Changing the page size needs a rollback journal during the VACUUM. Leaving WAL needs an
    // exclusive lock: while another connection has the file open (each WAL connection holds a
    // shared lock), SQLite refuses at once with SQLITE_BUSY and the file stays in WAL.
    let left_wal = match c.query_row("PRAGMA journal_mode=DELETE", [], |r| r.get::<_, String>(0)) {
        Ok(mode) => mode.eq_ignore_ascii_case("delete"),
        Err(e) if is_busy(&e) => false,
        Err(e) => return Err(e),
    };
    if !left_wal {
        rep.warnings.push(format!(
            "page size stays {ps}: changing it needs the file to itself (another connection has it open; \
             stop the server and run `optimize --vacuum` again)"
        ));
        c.execute_batch("VACUUM;")?;
        rep.vacuumed = true;
        return Ok(());
    }
    let res = c.execute_batch(&format!("PRAGMA page_size={TARGET_PAGE_SIZE}; VACUUM;"));
    // Back to WAL whatever happened.
    let back: rusqlite::Result<String> = c.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0));
    res?;
    rep.vacuumed = true;
    let back = back?;
    // Open the new WAL with a read: a checkpoint right after the switch would otherwise open it
    // from inside its own statement and fail with SQLITE_LOCKED ("database table is locked").
    c.query_row("SELECT COUNT(*) FROM sqlite_schema", [], |r| {
        r.get::<_, i64>(0)
    })?;
    if !back.eq_ignore_ascii_case("wal") {
        rep.warnings.push(format!(
            "the file is left in journal_mode {back}; the server switches it back to WAL when it opens it"
        ));
    }
    Ok(())
}

/// One hot query's measurement.
struct Measured {
    name: &'static str,
    plan: String,
    uses_index: bool,
    median_us: f64,
}

/// Plans and times every hot query on a fresh read-only connection (the server pool's setup).
fn measure(
    path: &Path,
    cfg: &StoreConfig,
    hot: &[HotQuery],
    opts: &OptimizeOptions,
    label: &str,
    progress: &dyn Fn(&str, u64, u64),
) -> Result<Vec<Measured>, Fail> {
    let c = super::open_read_connection(path, cfg)?;
    let n = hot.len() as u64;
    progress(label, 0, n);
    let mut out = Vec::with_capacity(hot.len());
    for (i, h) in hot.iter().enumerate() {
        let plan = hot::plan(&c, h)?;
        let median_us = time_query(&c, h, opts)?;
        out.push(Measured {
            name: h.name,
            uses_index: !hot::plan_scans_table(&plan),
            plan,
            median_us,
        });
        progress(label, i as u64 + 1, n);
    }
    Ok(out)
}

/// Median wall time of running `h` to its last row, µs with one decimal.
fn time_query(c: &Connection, h: &HotQuery, opts: &OptimizeOptions) -> rusqlite::Result<f64> {
    let mut st = c.prepare_cached(h.sql)?;
    let mut once = || -> rusqlite::Result<Duration> {
        let t = Instant::now();
        let mut rows = st.query(rusqlite::params_from_iter(h.params.iter()))?;
        while rows.next()?.is_some() {}
        Ok(t.elapsed())
    };
    let warm = once()?;
    let budget = Duration::from_millis(opts.query_budget_ms.max(1));
    let fit = (budget.as_nanos() / warm.as_nanos().max(1)) as u32;
    let runs = fit.clamp(5, opts.runs.max(5));
    let mut samples = Vec::with_capacity(runs as usize);
    for _ in 0..runs {
        samples.push(once()?);
    }
    samples.sort_unstable();
    let mid = samples[samples.len() / 2];
    Ok((mid.as_nanos() as f64 / 100.0).round() / 10.0)
}
