//! The embedded schema and its versioned migrations (`PRAGMA user_version`).

use crate::domain::symbol::{DEFAULT_SYMBOLS, SymbolSpec};
use rusqlite::Connection;

/// The whole schema, tables then indexes.
pub const SCHEMA_SQL: &str = include_str!("../../schema.sql");
/// The version a fully migrated file carries.
pub const SCHEMA_VERSION: i64 = 1;
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
        // version 0 -> 1: the baseline schema
        conn.execute_batch(tables_sql())?;
        create_missing_indexes(conn)?;
        for s in DEFAULT_SYMBOLS {
            if super::tables::symbols::get(conn, s)?.is_none() {
                super::tables::symbols::save(conn, &SymbolSpec::default_for(s))?;
            }
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
