//! `active_positions`: open positions only; a close deletes the row and writes a trade log.

use super::{MultiInsert, bind_row, dec, opt_dec, text_enum};
use crate::domain::model::{AccountType, Id, Position, PositionSide};
use crate::domain::money::Dec;
use rusqlite::{Connection, Row, params};

/// The columns `map` reads, in its order: every query of a whole position selects these.
macro_rules! cols {
    () => {
        "id, user_id, symbol, side, qty, entry_price, leverage, margin, sl, tp, liquidation_price, \
         open_fee, account_type, opened_at, order_id"
    };
}
const COLS: &str = cols!();
static INSERT: MultiInsert = MultiInsert::new(
    concat!("INSERT OR FAIL INTO active_positions (", cols!(), ")"),
    15,
    "",
);
/// Hot query: a user's open positions on one account, oldest first.
pub const BY_USER: &str = concat!(
    "SELECT ",
    cols!(),
    " FROM active_positions WHERE user_id = ?1 AND account_type = ?2 ORDER BY id"
);
/// Hot query: open positions of a symbol.
pub const BY_SYMBOL: &str = "SELECT id FROM active_positions WHERE symbol = ?1";

fn map(r: &Row<'_>) -> rusqlite::Result<Position> {
    Ok(Position {
        id: r.get(0)?,
        user_id: r.get(1)?,
        symbol: r.get(2)?,
        side: text_enum(r, 3, PositionSide::parse)?,
        qty: dec(r, 4)?,
        entry_price: dec(r, 5)?,
        leverage: r.get(6)?,
        margin: dec(r, 7)?,
        sl: opt_dec(r, 8)?,
        tp: opt_dec(r, 9)?,
        liquidation_price: dec(r, 10)?,
        open_fee: dec(r, 11)?,
        unrealized_pnl: Dec::ZERO,
        account_type: text_enum(r, 12, AccountType::parse)?,
        opened_at: r.get(13)?,
        order_id: r.get(14)?,
    })
}

/// Inserts newly opened positions.
pub fn insert_many(c: &Connection, rows: &[&Position]) -> rusqlite::Result<()> {
    INSERT.run(c, rows, |st, at, p| {
        bind_row!(st, at;
            p.id,
            p.user_id,
            p.symbol.as_str(),
            p.side.as_str(),
            p.qty.raw(),
            p.entry_price.raw(),
            p.leverage,
            p.margin.raw(),
            p.sl.map(|d| d.raw()),
            p.tp.map(|d| d.raw()),
            p.liquidation_price.raw(),
            p.open_fee.raw(),
            p.account_type.as_str(),
            p.opened_at,
            p.order_id
        )
    })
}

/// Removes a closed position.
pub fn delete(c: &Connection, id: Id) -> rusqlite::Result<()> {
    c.prepare_cached("DELETE FROM active_positions WHERE id = ?1")?
        .execute([id])
        .map(drop)
}

/// A user's open positions on one account, oldest first.
pub fn by_user(c: &Connection, user: Id, acct: AccountType) -> rusqlite::Result<Vec<Position>> {
    c.prepare_cached(BY_USER)?
        .query_map(params![user, acct.as_str()], map)?
        .collect()
}

/// Every open position, oldest first (engine start-up).
pub fn all(c: &Connection) -> rusqlite::Result<Vec<Position>> {
    c.prepare(&format!("SELECT {COLS} FROM active_positions ORDER BY id"))?
        .query_map([], map)?
        .collect()
}
