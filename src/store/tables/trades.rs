//! `trade_logs`: append-only record of closed positions.

use super::{MultiInsert, bind_row, dec, text_enum};
use crate::domain::model::{
    AccountType, CloseReason, Id, Position, PositionSide, Trade, TradeTotals,
};
use crate::domain::money::Dec;
use rusqlite::{Connection, Row, params};

/// The columns `map` reads, in its order: every query of a whole trade selects these.
macro_rules! cols {
    () => {
        "id, position_id, user_id, symbol, side, qty, entry_price, exit_price, open_fee, \
         close_fee, pnl, reason, account_type, opened_at, closed_at"
    };
}
/// Hot query: a page of a user's trades, newest first by close time then id.
pub const PAGE_BY_USER: &str = concat!(
    "SELECT ",
    cols!(),
    " FROM trade_logs WHERE user_id = ?1 ORDER BY closed_at DESC, id DESC LIMIT ?2 OFFSET ?3"
);
/// Hot query: how many trades a user has.
pub const COUNT_BY_USER: &str = "SELECT COUNT(*) FROM trade_logs WHERE user_id = ?1";
/// Hot query: a page of a user's trades of one account (`?4`), newest first.
pub const PAGE_BY_USER_ACCOUNT: &str = concat!(
    "SELECT ",
    cols!(),
    " FROM trade_logs WHERE user_id = ?1 AND account_type = ?4 \
     ORDER BY closed_at DESC, id DESC LIMIT ?2 OFFSET ?3"
);
/// Hot query: how many trades a user has on one account.
pub const COUNT_BY_USER_ACCOUNT: &str =
    "SELECT COUNT(*) FROM trade_logs WHERE user_id = ?1 AND account_type = ?2";

/// The PnL and fees of every trade of a user.
pub const TOTALS_BY_USER: &str =
    "SELECT pnl, open_fee, close_fee FROM trade_logs WHERE user_id = ?1";
/// The PnL and fees of every trade of a user on one account.
pub const TOTALS_BY_USER_ACCOUNT: &str =
    "SELECT pnl, open_fee, close_fee FROM trade_logs WHERE user_id = ?1 AND account_type = ?2";

fn map(r: &Row<'_>) -> rusqlite::Result<Trade> {
    Ok(Trade {
        id: r.get(0)?,
        position_id: r.get(1)?,
        user_id: r.get(2)?,
        symbol: r.get(3)?,
        side: text_enum(r, 4, PositionSide::parse)?,
        qty: dec(r, 5)?,
        entry_price: dec(r, 6)?,
        exit_price: dec(r, 7)?,
        open_fee: dec(r, 8)?,
        close_fee: dec(r, 9)?,
        pnl: dec(r, 10)?,
        reason: text_enum(r, 11, CloseReason::parse)?,
        account_type: text_enum(r, 12, AccountType::parse)?,
        opened_at: r.get(13)?,
        closed_at: r.get(14)?,
    })
}

static INSERT: MultiInsert = MultiInsert::new(
    "INSERT OR FAIL INTO trade_logs (id, position_id, user_id, symbol, side, qty, entry_price, exit_price, open_fee, \
           close_fee, pnl, reason, account_type, leverage, opened_at, closed_at, order_id, sl, tp)",
    19,
    "",
);

/// What a trade log keeps of its position beyond the API's trade object: enough to show the
/// order that opened it when that order has no row of its own (the `orders` view).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Opening {
    /// The position's leverage.
    pub leverage: u32,
    /// The order that opened it (`Position::order_id`).
    pub order_id: Option<Id>,
    /// Its stop loss.
    pub sl: Option<Dec>,
    /// Its take profit.
    pub tp: Option<Dec>,
}

impl Opening {
    /// What `p` leaves on its trade log.
    pub fn of(p: &Position) -> Self {
        Opening {
            leverage: p.leverage,
            order_id: p.order_id,
            sl: p.sl,
            tp: p.tp,
        }
    }
}

/// Appends trades, each with its position's [`Opening`].
pub fn insert_many(c: &Connection, rows: &[(&Trade, Opening)]) -> rusqlite::Result<()> {
    INSERT.run(c, rows, |st, at, (t, o)| {
        bind_row!(st, at;
            t.id,
            t.position_id,
            t.user_id,
            t.symbol.as_str(),
            t.side.as_str(),
            t.qty.raw(),
            t.entry_price.raw(),
            t.exit_price.raw(),
            t.open_fee.raw(),
            t.close_fee.raw(),
            t.pnl.raw(),
            t.reason.as_str(),
            t.account_type.as_str(),
            o.leverage,
            t.opened_at,
            t.closed_at,
            o.order_id,
            o.sl.map(|d| d.raw()),
            o.tp.map(|d| d.raw())
        )
    })
}

/// One page of a user's trades (`offset` rows skipped), of one account or of both, and how
/// many trades that selection holds in all: both read in one transaction, so the count is of
/// the same trades the page was cut from even while closes commit.
pub fn page(
    c: &Connection,
    user: Id,
    acct: Option<AccountType>,
    limit: u32,
    offset: u64,
) -> rusqlite::Result<(Vec<Trade>, u64)> {
    let snapshot = c.unchecked_transaction()?;
    let c: &Connection = &snapshot;
    let offset = offset as i64;
    let (rows, total) = match acct {
        None => (
            c.prepare_cached(PAGE_BY_USER)?
                .query_map(params![user, limit, offset], map)?
                .collect::<rusqlite::Result<Vec<_>>>()?,
            c.prepare_cached(COUNT_BY_USER)?
                .query_row([user], |r| r.get::<_, i64>(0))?,
        ),
        Some(a) => (
            c.prepare_cached(PAGE_BY_USER_ACCOUNT)?
                .query_map(params![user, limit, offset, a.as_str()], map)?
                .collect::<rusqlite::Result<Vec<_>>>()?,
            c.prepare_cached(COUNT_BY_USER_ACCOUNT)?
                .query_row(params![user, a.as_str()], |r| r.get::<_, i64>(0))?,
        ),
    };
    Ok((rows, total as u64))
}

/// Every trade of a user, of one account or of both, summed up in 128-bit integers.
pub fn totals(
    c: &Connection,
    user: Id,
    acct: Option<AccountType>,
) -> rusqlite::Result<TradeTotals> {
    let mut st = match acct {
        None => c.prepare_cached(TOTALS_BY_USER)?,
        Some(_) => c.prepare_cached(TOTALS_BY_USER_ACCOUNT)?,
    };
    let mut rows = match acct {
        None => st.query([user])?,
        Some(a) => st.query(params![user, a.as_str()])?,
    };
    let mut t = TradeTotals::default();
    while let Some(r) = rows.next()? {
        t.add(dec(r, 0)?, dec(r, 1)?, dec(r, 2)?);
    }
    Ok(t)
}

/// The highest trade id (0 for none).
pub fn max_id(c: &Connection) -> rusqlite::Result<Id> {
    c.query_row("SELECT COALESCE(MAX(id), 0) FROM trade_logs", [], |r| {
        r.get(0)
    })
}

/// The trade that closed a position, if it is closed.
pub fn by_position(c: &Connection, position: Id) -> rusqlite::Result<Option<Trade>> {
    use rusqlite::OptionalExtension;
    c.prepare_cached(BY_POSITION)?
        .query_row([position], map)
        .optional()
}

/// Hot query: the trade of a closed position.
pub const BY_POSITION: &str = concat!(
    "SELECT ",
    cols!(),
    " FROM trade_logs WHERE position_id = ?1"
);
