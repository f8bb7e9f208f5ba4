//! `symbols`: trading rules per symbol and its last price.

use super::{dec, opt_dec};
use crate::domain::model::Millis;
use crate::domain::money::Dec;
use crate::domain::symbol::{Bps, SymbolSpec};
use rusqlite::{Connection, OptionalExtension, Row, params};

const COLS: &str = "symbol, tick_size, lot_size, min_qty, max_leverage, maker_fee_cbps, taker_fee_cbps, mmr_cbps, last_price, last_ts";
/// Hot query: one symbol.
pub const BY_SYMBOL: &str = "SELECT symbol, tick_size, lot_size, min_qty, max_leverage, maker_fee_cbps, taker_fee_cbps, mmr_cbps, last_price, last_ts FROM symbols WHERE symbol = ?1";

/// A symbol row: its spec and last price.
pub type SymbolRow = (SymbolSpec, Option<Dec>, Option<Millis>);

fn map(r: &Row<'_>) -> rusqlite::Result<SymbolRow> {
    Ok((
        SymbolSpec {
            symbol: r.get(0)?,
            tick_size: dec(r, 1)?,
            lot_size: dec(r, 2)?,
            min_qty: dec(r, 3)?,
            max_leverage: r.get(4)?,
            maker_fee_bps: Bps(r.get(5)?),
            taker_fee_bps: Bps(r.get(6)?),
            mmr_bps: Bps(r.get(7)?),
        },
        opt_dec(r, 8)?,
        r.get(9)?,
    ))
}

/// Inserts or updates a spec, keeping the last price.
pub fn save(c: &Connection, s: &SymbolSpec) -> rusqlite::Result<()> {
    c.prepare_cached(
        "INSERT INTO symbols (symbol, tick_size, lot_size, min_qty, max_leverage, maker_fee_cbps, taker_fee_cbps, mmr_cbps) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT(symbol) DO UPDATE SET tick_size = ?2, lot_size = ?3, \
         min_qty = ?4, max_leverage = ?5, maker_fee_cbps = ?6, taker_fee_cbps = ?7, mmr_cbps = ?8",
    )?
    .execute(params![
        s.symbol,
        s.tick_size.raw(),
        s.lot_size.raw(),
        s.min_qty.raw(),
        s.max_leverage,
        s.maker_fee_bps.0,
        s.taker_fee_bps.0,
        s.mmr_bps.0
    ])
    .map(drop)
}

/// Records the last price.
pub fn set_last(c: &Connection, symbol: &str, price: Dec, ts: Millis) -> rusqlite::Result<()> {
    c.prepare_cached("UPDATE symbols SET last_price = ?2, last_ts = ?3 WHERE symbol = ?1")?
        .execute(params![symbol, price.raw(), ts])
        .map(drop)
}

/// One symbol.
pub fn get(c: &Connection, symbol: &str) -> rusqlite::Result<Option<SymbolRow>> {
    c.prepare_cached(BY_SYMBOL)?
        .query_row([symbol], map)
        .optional()
}

/// Every symbol, by name.
pub fn all(c: &Connection) -> rusqlite::Result<Vec<SymbolRow>> {
    let mut st = c.prepare_cached(&format!("SELECT {COLS} FROM symbols ORDER BY symbol"))?;
    st.query_map([], map)?.collect()
}
