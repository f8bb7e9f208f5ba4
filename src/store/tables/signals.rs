//! `signals`: append-only record of strategy signals and their fan-out.

use crate::domain::model::{Id, Millis};
use crate::domain::money::Dec;
use rusqlite::{Connection, params};

/// Hot query: recent signals of a symbol.
pub const BY_SYMBOL_TIME: &str = "SELECT id, strategy, side, orders_placed, skipped, created_at FROM signals WHERE symbol = ?1 AND created_at >= ?2 ORDER BY created_at DESC";

/// A signal row.
#[derive(Clone, Debug)]
pub struct SignalRow {
    /// Id.
    pub id: Id,
    /// Strategy name.
    pub strategy: String,
    /// Symbol.
    pub symbol: String,
    /// `buy` or `sell`.
    pub side: String,
    /// Stop-loss distance, percent.
    pub sl_pct: Option<Dec>,
    /// Take-profit distance, percent.
    pub tp_pct: Option<Dec>,
    /// Orders placed.
    pub orders_placed: u32,
    /// Users skipped.
    pub skipped: u32,
    /// Time.
    pub created_at: Millis,
}

/// Appends a signal.
pub fn insert(c: &Connection, s: &SignalRow) -> rusqlite::Result<()> {
    c.prepare_cached(
        "INSERT INTO signals (id, strategy, symbol, side, sl_pct, tp_pct, orders_placed, skipped, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        s.id,
        s.strategy,
        s.symbol,
        s.side,
        s.sl_pct.map(|d| d.raw()),
        s.tp_pct.map(|d| d.raw()),
        s.orders_placed,
        s.skipped,
        s.created_at
    ])
    .map(drop)
}

/// The highest signal id (0 for none).
pub fn max_id(c: &Connection) -> rusqlite::Result<Id> {
    c.query_row("SELECT COALESCE(MAX(id), 0) FROM signals", [], |r| r.get(0))
}
