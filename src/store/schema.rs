//! The embedded schema and its versioned migrations (`PRAGMA user_version`).

use crate::domain::symbol::{DEFAULT_SYMBOLS, SymbolSpec};
use rusqlite::Connection;

/// The whole schema, tables then indexes.
pub const SCHEMA_SQL: &str = include_str!("../../schema.sql");
/// The version a fully migrated file carries.
pub const SCHEMA_VERSION: i64 = 4;
const INDEX_MARKER: &str = "-- @indexes";

/// The table part of the schema (the tables and the `orders` view).
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

/// The foreign key of the writer's multi-row tables, as versions 1 and 2 wrote it: checked
/// at each statement, so a multi-row INSERT kept a statement journal (BENCHMARKS.md §9g).
const IMMEDIATE_USER_FK: &str = "REFERENCES users(id),";
/// The same key checked at COMMIT (version 3).
const DEFERRED_USER_FK: &str = "REFERENCES users(id) DEFERRABLE INITIALLY DEFERRED,";
/// The tables whose rows the writer inserts many to a statement.
const MULTI_ROW_TABLES: [&str; 4] = ["balances", "order_rows", "active_positions", "trade_logs"];

/// The columns version 4 added, by table: what ties a position and its trade log to the order
/// that opened it, so that a market order without a client id needs no row of its own.
const ORDER_LINK_COLUMNS: [(&str, &str); 4] = [
    ("active_positions", "order_id"),
    ("trade_logs", "order_id"),
    ("trade_logs", "sl"),
    ("trade_logs", "tp"),
];

/// Version 4: the `orders` table becomes `order_rows` (its indexes follow it; the `orders`
/// view of schema.sql replaces it) and positions and trade logs gain [`ORDER_LINK_COLUMNS`].
/// Only tables that exist are changed: a new file gets them from schema.sql. Adding a
/// nullable column and renaming a table rewrite no rows.
fn link_orders_to_positions(conn: &Connection) -> rusqlite::Result<()> {
    let is_table = |name: &str| {
        conn.prepare_cached("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?1")?
            .exists([name])
    };
    if is_table("orders")? {
        conn.execute_batch("ALTER TABLE orders RENAME TO order_rows")?;
    }
    let has_column = |table: &str, column: &str| {
        conn.prepare_cached("SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2")?
            .exists([table, column])
    };
    for (table, column) in ORDER_LINK_COLUMNS {
        if is_table(table)? && !has_column(table, column)? {
            // names from the constant above, not input
            conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} INTEGER"))?;
        }
    }
    Ok(())
}

/// Replaces `from` with `to` in the stored CREATE TABLE text of each of `tables` that holds
/// it. This is the procedure SQLite's ALTER TABLE documentation gives for a change that
/// leaves every stored row valid and as it is on disk, such as a CHECK's form or when a
/// foreign key is checked: no table rebuild, however many rows.
fn edit_tables_sql(
    conn: &Connection,
    tables: &[&str],
    from: &str,
    to: &str,
) -> rusqlite::Result<()> {
    let schema_version: i64 = conn.query_row("PRAGMA schema_version", [], |r| r.get(0))?;
    conn.execute_batch("PRAGMA writable_schema = ON")?;
    let edited = tables.iter().try_for_each(|table| {
        conn.execute(
            "UPDATE sqlite_schema SET sql = replace(sql, ?1, ?2) \
             WHERE type = 'table' AND name = ?3 AND instr(sql, ?1) > 0",
            [from, to, table],
        )
        .map(drop)
    });
    conn.execute_batch(&format!(
        "PRAGMA schema_version = {}; PRAGMA writable_schema = OFF",
        schema_version + 1
    ))?;
    edited
}

/// Says which of the multi-row tables kept foreign keys checked at each statement: a table
/// text written differently by an older deployment. Those keys still hold; that table's
/// multi-row writes are just slower.
fn warn_if_not_deferred(conn: &Connection) -> rusqlite::Result<()> {
    let mut st = conn.prepare(
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name = ?1 \
         AND instr(sql, 'REFERENCES') > 0 AND instr(sql, ?2) = 0",
    )?;
    for table in MULTI_ROW_TABLES {
        if st.exists([table, DEFERRED_USER_FK])? {
            tracing::warn!(
                table,
                "its foreign key to users is not in the form litetrade writes; it stays \
                 checked at each statement (correct, but multi-row writes are slower)"
            );
        }
    }
    Ok(())
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
    if users == 0 && !new_file {
        return Ok(Some(format!(
            "not a litetrade database: it has no users table ({tables} other tables, \
             user_version {version})"
        )));
    }
    if new_file || version >= SCHEMA_VERSION {
        return Ok(None);
    }
    lacking_columns(conn)
}

/// For a file the migration is about to change: the first of litetrade's tables that the file
/// holds in some other form (without a column that every version of it had), described.
fn lacking_columns(conn: &Connection) -> rusqlite::Result<Option<String>> {
    let want = Connection::open_in_memory()?;
    want.execute_batch(tables_sql())?;
    let columns = |c: &Connection, table: &str| -> rusqlite::Result<Vec<String>> {
        c.prepare("SELECT name FROM pragma_table_info(?1)")?
            .query_map([table], |r| r.get(0))?
            .collect()
    };
    let tables: Vec<String> = want
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table'")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for table in tables {
        let mut name = table.as_str();
        let mut have = columns(conn, name)?;
        if have.is_empty() && table == "order_rows" {
            name = "orders"; // its name before version 4
            have = columns(conn, name)?;
        }
        if have.is_empty() {
            continue; // absent: the migration creates it
        }
        let added_later = |c: &str| ORDER_LINK_COLUMNS.contains(&(table.as_str(), c));
        let lacking: Vec<String> = columns(&want, &table)?
            .into_iter()
            .filter(|c| !have.contains(c) && !added_later(c))
            .collect();
        if !lacking.is_empty() {
            return Ok(Some(format!(
                "not a litetrade database: its table {name} lacks the columns {}",
                lacking.join(", ")
            )));
        }
    }
    Ok(None)
}

/// Whether the file holds no schema at all (a 0-byte file, or one SQLite has only created).
pub fn is_empty(conn: &Connection) -> rusqlite::Result<bool> {
    conn.query_row("SELECT count(*) = 0 FROM sqlite_schema", [], |r| r.get(0))
}

/// The `user_version` of the file at `path`, read without changing anything; `None` for an
/// empty file ([`is_empty`]), which has nothing to migrate.
pub fn file_version(path: &std::path::Path) -> rusqlite::Result<Option<i64>> {
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    if is_empty(&conn)? {
        return Ok(None);
    }
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
        .map(Some)
}

/// Brings the file to [`SCHEMA_VERSION`] ([`migrate_tables`]) and creates every index it
/// lacks: what opening a store does.
pub fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    migrate_tables(conn)?;
    create_missing_indexes(conn).map(drop)
}

/// Brings the file's tables, view and rows to [`SCHEMA_VERSION`] in one transaction, without
/// creating indexes (`optimize` creates them after measuring the file as it found it). A file
/// at version 0 (new, or made by an older deployment with some tables and no indexes) gains
/// every table and the default symbols. A file from a newer litetrade is refused.
pub fn migrate_tables(conn: &Connection) -> rusqlite::Result<()> {
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
        // A file made at version 0 by an older deployment may hold some tables in their old
        // form: each step edits what exists, then schema.sql adds whatever is missing.
        if version < 4 {
            link_orders_to_positions(conn)?;
        }
        if version < 2 {
            edit_tables_sql(conn, &["order_rows"], OLD_STATUS_CHECK, NEW_STATUS_CHECK)?;
        }
        if version < 3 {
            edit_tables_sql(conn, &MULTI_ROW_TABLES, IMMEDIATE_USER_FK, DEFERRED_USER_FK)?;
            warn_if_not_deferred(conn)?;
        }
        conn.execute_batch(tables_sql())?;
        if version < 1 {
            // the baseline's symbols
            for s in DEFAULT_SYMBOLS {
                if super::tables::symbols::get(conn, s)?.is_none() {
                    super::tables::symbols::save(conn, &SymbolSpec::default_for(s))?;
                }
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
