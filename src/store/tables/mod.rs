//! One module per table: its SQL, its row mapping, its reads and the writes the writer applies.

pub mod analytics;
pub mod balances;
pub mod config;
pub mod credentials;
pub mod licenses;
pub mod orders;
pub mod positions;
pub mod signals;
pub mod symbols;
pub mod trades;
pub mod users;

use crate::domain::money::Dec;
use rusqlite::types::{FromSqlError, Type};
use rusqlite::{Connection, Row, Statement};
use std::sync::OnceLock;

/// The most rows one multi-row INSERT carries. A run is split into statements of 32, 16, 8, 4,
/// 2 and 1 rows, so a table has at most six statement shapes in the prepared-statement cache.
const MAX_ROWS: usize = 32;

/// A multi-row INSERT: `{head} VALUES (?, …), (?, …) {tail}`. One statement per run of rows
/// opens the table's and indexes' cursors once instead of once per row (BENCHMARKS.md §9b).
/// The SQL text of its six shapes is built once, on first use.
pub(crate) struct MultiInsert {
    head: &'static str,
    cols: usize,
    tail: &'static str,
    shapes: OnceLock<Vec<String>>,
}

impl MultiInsert {
    /// `head` is `INSERT OR FAIL INTO table (columns)`, `cols` the parameters per row, `tail`
    /// anything after the VALUES list (an `ON CONFLICT` clause) or "". `OR FAIL`, with the
    /// table's foreign keys checked at COMMIT (schema.sql), means no constraint can abort a
    /// plain INSERT half-way, so SQLite keeps no statement journal for it (BENCHMARKS.md §9g;
    /// an upsert's DO UPDATE still runs with ABORT). A failure still fails the writer's
    /// transaction, which is rolled back whole.
    pub(crate) const fn new(head: &'static str, cols: usize, tail: &'static str) -> MultiInsert {
        MultiInsert {
            head,
            cols,
            tail,
            shapes: OnceLock::new(),
        }
    }

    /// Inserts `rows` in order; `bind(statement, first_parameter, row)` binds one row, and
    /// must bind all `cols` of its parameters: a statement is reused from chunk to chunk, so
    /// one left out would keep the previous row's value.
    pub(crate) fn run<T>(
        &self,
        c: &Connection,
        rows: &[T],
        bind: impl Fn(&mut Statement<'_>, usize, &T) -> rusqlite::Result<()>,
    ) -> rusqlite::Result<()> {
        let shapes = self
            .shapes
            .get_or_init(|| (0..=MAX_ROWS.ilog2()).map(|k| self.sql(1 << k)).collect());
        let mut rest = rows;
        while !rest.is_empty() {
            let k = rest.len().min(MAX_ROWS).ilog2();
            let n = 1 << k;
            // every full 32-row chunk shares one statement lookup; a shorter remainder takes
            // each smaller shape at most once
            let chunks = if n == MAX_ROWS { rest.len() / n } else { 1 };
            let mut st = c.prepare_cached(&shapes[k as usize])?;
            for chunk in rest[..chunks * n].chunks_exact(n) {
                for (i, row) in chunk.iter().enumerate() {
                    bind(&mut st, i * self.cols + 1, row)?;
                }
                st.raw_execute()?;
            }
            rest = &rest[chunks * n..];
        }
        Ok(())
    }

    fn sql(&self, rows: usize) -> String {
        let row = format!("({})", vec!["?"; self.cols].join(", "));
        format!(
            "{} VALUES {} {}",
            self.head,
            vec![row; rows].join(", "),
            self.tail
        )
    }
}

/// Binds each value to the next parameter, from `first` on (1-based), and evaluates to
/// `Ok(())`. Each value binds through its own type's `ToSql`, not a `&dyn ToSql` slice:
/// binding was about a fifth of the writer's statement time in a fan-out (BENCHMARKS.md §9g).
macro_rules! bind_row {
    ($st:expr, $first:expr; $($value:expr),+ $(,)?) => {{
        let st: &mut rusqlite::Statement<'_> = $st;
        let mut i: usize = $first;
        $(
            st.raw_bind_parameter(i, $value)?;
            i += 1;
        )+
        let _ = i;
        Ok(())
    }};
}
pub(crate) use bind_row;

/// Reads a fixed-point column.
pub(crate) fn dec(r: &Row<'_>, i: usize) -> rusqlite::Result<Dec> {
    r.get::<_, i64>(i).map(Dec)
}

/// Reads a nullable fixed-point column.
pub(crate) fn opt_dec(r: &Row<'_>, i: usize) -> rusqlite::Result<Option<Dec>> {
    Ok(r.get::<_, Option<i64>>(i)?.map(Dec))
}

/// Reads a text column into one of the domain's text enums.
pub(crate) fn text_enum<T>(
    r: &Row<'_>,
    i: usize,
    parse: fn(&str) -> Option<T>,
) -> rusqlite::Result<T> {
    let s: String = r.get(i)?;
    parse(&s).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            Type::Text,
            Box::new(FromSqlError::Other(
                format!("unexpected value {s:?}").into(),
            )),
        )
    })
}
