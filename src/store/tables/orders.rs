//! Orders: the `order_rows` table (limit orders, and market orders with a client id) and the
//! `orders` view, which adds the market orders that only their position records (schema.sql).
//! Pending limit orders are what the matcher rebuilds; they are always in `order_rows`.

use super::{MultiInsert, bind_row, dec, opt_dec, text_enum};
use crate::domain::model::{AccountType, Id, Millis, Order, OrderStatus, OrderType, Side};
use rusqlite::{Connection, OptionalExtension, Row, params};

/// The columns `map` reads, in its order: every query of a whole order selects these.
macro_rules! cols {
    () => {
        "id, user_id, symbol, side, type, qty, price, leverage, sl, tp, account_type, status, \
         reserve, fill_price, fee, position_id, client_order_id, created_at, filled_at"
    };
}
const COLS: &str = cols!();
static INSERT: MultiInsert = MultiInsert::new(
    concat!("INSERT OR FAIL INTO order_rows (", cols!(), ", updated_at)"),
    20,
    "",
);
/// Hot query: one order, in any status, through the `orders` view.
pub const BY_ID: &str = concat!("SELECT ", cols!(), " FROM orders WHERE id = ?1 LIMIT 1");
/// Hot query: a user's pending orders on one account, oldest first.
pub const PENDING_BY_USER: &str = concat!(
    "SELECT ",
    cols!(),
    " FROM order_rows WHERE user_id = ?1 AND account_type = ?2 AND status = 'pending' ORDER BY id"
);
/// Hot query: pending orders of a symbol by price (rebuilding the book).
pub const PENDING_BY_SYMBOL: &str =
    "SELECT id FROM order_rows WHERE symbol = ?1 AND status = 'pending' ORDER BY price";
/// Hot query: an order by its client id.
pub const BY_CLIENT_ID: &str =
    "SELECT id FROM order_rows WHERE user_id = ?1 AND client_order_id = ?2";

fn map(r: &Row<'_>) -> rusqlite::Result<Order> {
    Ok(Order {
        id: r.get(0)?,
        user_id: r.get(1)?,
        symbol: r.get(2)?,
        side: text_enum(r, 3, Side::parse)?,
        order_type: text_enum(r, 4, OrderType::parse)?,
        qty: dec(r, 5)?,
        price: opt_dec(r, 6)?,
        leverage: r.get(7)?,
        sl: opt_dec(r, 8)?,
        tp: opt_dec(r, 9)?,
        account_type: text_enum(r, 10, AccountType::parse)?,
        status: text_enum(r, 11, OrderStatus::parse)?,
        reserve: dec(r, 12)?,
        fill_price: opt_dec(r, 13)?,
        fee: opt_dec(r, 14)?,
        position_id: r.get(15)?,
        client_order_id: r.get(16)?,
        created_at: r.get(17)?,
        filled_at: r.get(18)?,
    })
}

/// Inserts new rows into `order_rows`, each with its update time. (A plain INSERT: an UPSERT here made
/// SQLite open two ephemeral tables per row, which cost a third of the writer's time.)
pub fn insert_many(c: &Connection, rows: &[(&Order, Millis)]) -> rusqlite::Result<()> {
    INSERT.run(c, rows, |st, at, (o, updated)| {
        bind_row!(st, at;
            o.id,
            o.user_id,
            o.symbol.as_str(),
            o.side.as_str(),
            o.order_type.as_str(),
            o.qty.raw(),
            o.price.map(|d| d.raw()),
            o.leverage,
            o.sl.map(|d| d.raw()),
            o.tp.map(|d| d.raw()),
            o.account_type.as_str(),
            o.status.as_str(),
            o.reserve.raw(),
            o.fill_price.map(|d| d.raw()),
            o.fee.map(|d| d.raw()),
            o.position_id,
            o.client_order_id.as_deref(),
            o.created_at,
            o.filled_at,
            updated
        )
    })
}

/// Records an order's new status, reserve and fill.
pub fn update(c: &Connection, o: &Order, at: Millis) -> rusqlite::Result<()> {
    c.prepare_cached(
        "UPDATE order_rows SET status = ?2, reserve = ?3, fill_price = ?4, fee = ?5, position_id = ?6, filled_at = ?7, \
         updated_at = ?8 WHERE id = ?1",
    )?
    .execute(params![
        o.id,
        o.status.as_str(),
        o.reserve.raw(),
        o.fill_price.map(|d| d.raw()),
        o.fee.map(|d| d.raw()),
        o.position_id,
        o.filled_at,
        at
    ])
    .map(drop)
}

/// One order by id.
pub fn get(c: &Connection, id: Id) -> rusqlite::Result<Option<Order>> {
    c.prepare_cached(BY_ID)?.query_row([id], map).optional()
}

/// A user's pending orders on one account, oldest first.
pub fn pending_by_user(
    c: &Connection,
    user: Id,
    acct: AccountType,
) -> rusqlite::Result<Vec<Order>> {
    c.prepare_cached(PENDING_BY_USER)?
        .query_map(params![user, acct.as_str()], map)?
        .collect()
}

/// Every pending order, oldest first (engine start-up).
pub fn all_pending(c: &Connection) -> rusqlite::Result<Vec<Order>> {
    c.prepare(&format!(
        "SELECT {COLS} FROM order_rows WHERE status = 'pending' ORDER BY id"
    ))?
    .query_map([], map)?
    .collect()
}

/// Calls `f` with every (user, client_order_id) pair used, streamed from the index without
/// holding them all (engine start-up).
pub fn each_client_id(c: &Connection, mut f: impl FnMut(Id, &str)) -> rusqlite::Result<()> {
    let mut stmt = c.prepare(
        "SELECT user_id, client_order_id FROM order_rows WHERE client_order_id IS NOT NULL",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        f(r.get(0)?, r.get_ref(1)?.as_str()?);
    }
    Ok(())
}

/// The id of `user`'s order placed under `client_order_id`, if any (one probe of the unique
/// index `orders_client_id`).
pub fn id_by_client_id(
    c: &Connection,
    user: Id,
    client_order_id: &str,
) -> rusqlite::Result<Option<Id>> {
    c.prepare_cached(BY_CLIENT_ID)?
        .query_row(params![user, client_order_id], |r| r.get(0))
        .optional()
}

/// The highest id that orders and positions have used (0 for none): they share one sequence,
/// so it is the largest of the ids in `order_rows`, of the open positions and of the closed
/// ones (their trade logs).
pub fn max_id(c: &Connection) -> rusqlite::Result<Id> {
    c.query_row(
        "SELECT MAX(COALESCE((SELECT MAX(id) FROM order_rows), 0), \
                    COALESCE((SELECT MAX(id) FROM active_positions), 0), \
                    COALESCE((SELECT MAX(position_id) FROM trade_logs), 0))",
        [],
        |r| r.get(0),
    )
}
