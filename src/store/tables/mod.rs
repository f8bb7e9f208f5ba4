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
use rusqlite::Row;
use rusqlite::types::{FromSqlError, Type};

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
