//! The embedded schema and its versioned migrations (`PRAGMA user_version`).

use crate::domain::symbol::{DEFAULT_SYMBOLS, SymbolSpec};
use rusqlite::{Connection, OptionalExtension};

/// The whole schema, tables then indexes.
pub const SCHEMA_SQL: &str = include_str!("../../schema.sql");
/// The version a fully migrated file carries.
pub const SCHEMA_VERSION: i64 = 2;
const INDEX_MARKER: &str = "-- @indexes";

/// The table part of the schema.
pub fn tables_sql() -> &'static str {
    SCHEMA_SQL.split(INDEX_MARKER).next().unwrap_or(SCHEMA_SQL)
}

/// Each index of the schema as `(name, CREATE statement)`.
pub fn index_statements() -> Vec<(&'static str, &'static str)> {
    let part = SCHEMA_SQL.split(INDEX_MARKER).nth(1).unwrap_or("");
    part.lines()
        .map(str::trim)
        .filter(|l| l.starts_with("CREATE"))
        .filter_map(|l| {
            let name = l.split(" EXISTS ").nth(1)?.split_whitespace().next()?;
            Some((name, l))
        })
        .collect()
}

/// Names of the schema's indexes that the file lacks.
pub fn missing_indexes(conn: &Connection) -> rusqlite::Result<Vec<&'static str>> {
    let mut st = conn.prepare("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?1")?;
    let mut out = Vec::new();
    for (name, _) in index_statements() {
        if !st.exists([name])? {
            out.push(name);
        }
    }
    Ok(out)
}

/// Creates every missing index; returns how many it made.
pub fn create_missing_indexes(conn: &Connection) -> rusqlite::Result<usize> {
    let missing = missing_indexes(conn)?;
    for (name, sql) in index_statements() {
        if missing.contains(&name) {
            conn.execute_batch(sql)?;
        }
    }
    Ok(missing.len())
}

/// The orders status CHECK of schema version 1. SQLite evaluates an `IN` list of three or more
/// constants through an ephemeral table that it builds and frees on every row written, which
/// cost 15–25 % of the writer's time on order rows (BENCHMARKS.md §9).
const OLD_STATUS_CHECK: &str = "CHECK (status IN ('pending', 'filled', 'cancelled'))";
/// The same constraint as plain comparisons (version 2).
const NEW_STATUS_CHECK: &str =
    "CHECK (status = 'pending' OR status = 'filled' OR status = 'cancelled')";

/// Version 1 -> 2: swaps the orders status CHECK for its equivalent without an `IN` list. Every
/// stored row satisfies both, so the table's text is edited in place, the procedure SQLite's
/// ALTER TABLE documentation gives for changing a CHECK constraint (no table rebuild).
fn rewrite_orders_status_check(conn: &Connection) -> rusqlite::Result<()> {
    let sql: Option<String> = conn
        .query_row(
            "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = 'orders'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if !sql.is_some_and(|s| s.contains(OLD_STATUS_CHECK)) {
        return Ok(());
    }
    let schema_version: i64 = conn.query_row("PRAGMA schema_version", [], |r| r.get(0))?;
    conn.execute_batch("PRAGMA writable_schema = ON")?;
    let edited = conn.execute(
        "UPDATE sqlite_schema SET sql = replace(sql, ?1, ?2) WHERE type = 'table' AND name = 'orders'",
        [OLD_STATUS_CHECK, NEW_STATUS_CHECK],
    );
    conn.execute_batch(&format!(
        "PRAGMA schema_version = {}; PRAGMA writable_schema = OFF",
        schema_version + 1
    ))?;
    edited.map(drop)
}

/// Why the file is some other program's database, or `None` when litetrade may open it: a
/// new file (version 0, no tables) or one of litetrade's, which has a `users` table at every
/// version. Checked before anything in the file is changed; litetrade must not fill another
/// program's file with its own tables.
pub fn foreign_file(conn: &Connection) -> rusqlite::Result<Option<String>> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let (tables, users): (i64, i64) = conn.query_row(
        "SELECT count(*), count(*) FILTER (WHERE name = 'users') FROM sqlite_schema \
         WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let new_file = version == 0 && tables == 0;
    Ok((users == 0 && !new_file).then(|| {
        format!(
            "not a litetrade database: it has no users table ({tables} other tables, \
             user_version {version})"
        )
    }))
}

/// Brings the file to [`SCHEMA_VERSION`] in one transaction. A file at version 0 (new, or made
/// by an older deployment with some tables and no indexes) gains every table, every index and
/// the default symbols. A file from a newer litetrade is refused.
pub fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version == SCHEMA_VERSION {
        return Ok(());
    }
    if version > SCHEMA_VERSION {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(1),
            Some(format!(
                "database schema version {version} is newer than this litetrade ({SCHEMA_VERSION})"
            )),
        ));
    }
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let run = || -> rusqlite::Result<()> {
        if version < 1 {
            // the baseline schema
            conn.execute_batch(tables_sql())?;
            create_missing_indexes(conn)?;
            for s in DEFAULT_SYMBOLS {
                if super::tables::symbols::get(conn, s)?.is_none() {
                    super::tables::symbols::save(conn, &SymbolSpec::default_for(s))?;
                }
            }
        }
        if version < 2 {
            rewrite_orders_status_check(conn)?;
        }
        conn.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))?;
        Ok(())
    };
    match run() {
        Ok(()) => conn.execute_batch("COMMIT"),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}
