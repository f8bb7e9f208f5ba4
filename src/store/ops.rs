//! Row changes the engine hands to the writer. Each variant is applied by its table's module.
//!
//! [`apply_all`] applies one batch. The trading ops (order, position, trade, balance, price and
//! signal rows) commute with each other as long as each row's own changes stay in order, so
//! within a run of them the writer groups them by table and writes each group with multi-row
//! statements; every other op is a barrier that keeps its place. Why that is safe:
//! - each group keeps its ops' relative order, so a row's changes (an order inserted then filled,
//!   a ledger saved twice) apply in the order they were made;
//! - a row is inserted before it is updated or deleted, and the groups go in that order
//!   (order inserts before order updates, position inserts before deletes);
//! - their only foreign keys point at `users`, which trading never deletes and whose inserts are
//!   barriers, and no statement of one table reads another;
//! - the whole batch is one transaction, so no reader sees the intermediate order.

use super::tables::{
    balances, config, credentials, licenses, orders, positions, signals, symbols, trades, users,
};
use crate::domain::model::UserConfig;
use crate::domain::model::{AccountType, Id, Ledger, Millis, Order, Position, Promo, Trade};
use crate::domain::money::Dec;
use crate::domain::symbol::SymbolSpec;
use rusqlite::Connection;

/// One row change.
#[derive(Clone, Debug)]
pub enum Op {
    /// A new user.
    InsertUser {
        /// Id.
        id: Id,
        /// Name.
        name: String,
        /// Telegram chat id.
        telegram_id: Option<i64>,
        /// SHA-256 of the token.
        token_hash: Vec<u8>,
        /// Creation time.
        created_at: Millis,
    },
    /// Replace a user's config.
    SaveConfig(Id, UserConfig, Millis),
    /// Turn a user's bot on or off.
    SetBot(Id, bool, Millis),
    /// Store encrypted credentials.
    SaveCredentials {
        /// User.
        user_id: Id,
        /// Exchange name.
        exchange: String,
        /// AEAD nonce.
        nonce: Vec<u8>,
        /// AEAD ciphertext.
        ciphertext: Vec<u8>,
        /// Time.
        at: Millis,
    },
    /// Replace a balance row.
    SaveBalance(Id, AccountType, Ledger, Millis),
    /// Insert or replace a symbol spec (keeps its last price).
    SaveSymbol(SymbolSpec),
    /// Record a symbol's last price.
    SetLastPrice(String, Dec, Millis),
    /// A new order row.
    InsertOrder(Box<Order>, Millis),
    /// An order's new status, fill and reserve.
    UpdateOrder(Box<Order>, Millis),
    /// A newly opened position.
    InsertPosition(Box<Position>),
    /// A closed position leaves the active table.
    DeletePosition(Id),
    /// A closed position's trade log row (with what it keeps of the position).
    InsertTrade(Box<Trade>, trades::Opening),
    /// A signal and its fan-out counts.
    InsertSignal(signals::SignalRow),
    /// Insert or extend a license.
    SaveLicense {
        /// User.
        user_id: Id,
        /// Type.
        license_type: String,
        /// Start.
        starts_at: Millis,
        /// End.
        ends_at: Millis,
    },
    /// Insert or update a promo code.
    SavePromo(Promo),
    /// A redemption and its payment row.
    InsertRedemption {
        /// Promo id.
        promo_id: Id,
        /// User.
        user_id: Id,
        /// License type granted.
        license_type: String,
        /// Time.
        at: Millis,
    },
    /// A deposit's payment row.
    InsertDeposit(Id, AccountType, Dec, Millis),
}

/// Applies a batch's changes in order inside the writer's transaction (see the module docs).
pub fn apply_all<'a>(
    conn: &Connection,
    ops: impl IntoIterator<Item = &'a Op>,
) -> rusqlite::Result<()> {
    let mut run = TradingRun::default();
    for op in ops {
        if !run.take(op) {
            run.flush(conn)?;
            apply(conn, op)?;
        }
    }
    run.flush(conn)
}

/// A run of trading ops, grouped by table, in the order the groups are written.
#[derive(Default)]
struct TradingRun<'a> {
    new_orders: Vec<(&'a Order, Millis)>,
    new_positions: Vec<&'a Position>,
    trades: Vec<(&'a Trade, trades::Opening)>,
    balances: Vec<(Id, AccountType, &'a Ledger, Millis)>,
    order_updates: Vec<(&'a Order, Millis)>,
    closed_positions: Vec<Id>,
    prices: Vec<(&'a str, Dec, Millis)>,
    signals: Vec<&'a signals::SignalRow>,
}

impl<'a> TradingRun<'a> {
    /// Adds a trading op to the run; false for a barrier op.
    fn take(&mut self, op: &'a Op) -> bool {
        match op {
            Op::InsertOrder(o, at) => self.new_orders.push((o, *at)),
            Op::InsertPosition(p) => self.new_positions.push(p),
            Op::InsertTrade(t, opening) => self.trades.push((t, *opening)),
            Op::SaveBalance(u, a, l, at) => self.balances.push((*u, *a, l, *at)),
            Op::UpdateOrder(o, at) => self.order_updates.push((o, *at)),
            Op::DeletePosition(id) => self.closed_positions.push(*id),
            Op::SetLastPrice(sym, p, ts) => self.prices.push((sym, *p, *ts)),
            Op::InsertSignal(row) => self.signals.push(row),
            _ => return false,
        }
        true
    }

    /// Writes the run, group by group (inserts before updates and deletes), and empties it.
    fn flush(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        orders::insert_many(conn, &self.new_orders)?;
        positions::insert_many(conn, &self.new_positions)?;
        trades::insert_many(conn, &self.trades)?;
        balances::save_many(conn, &self.balances)?;
        for &(o, at) in &self.order_updates {
            orders::update(conn, o, at)?;
        }
        for &id in &self.closed_positions {
            positions::delete(conn, id)?;
        }
        for &(sym, p, ts) in &self.prices {
            symbols::set_last(conn, sym, p, ts)?;
        }
        for row in &self.signals {
            signals::insert(conn, row)?;
        }
        *self = TradingRun::default();
        Ok(())
    }
}

/// Applies one change inside the writer's transaction. `apply_all` sends trading ops through
/// a [`TradingRun`] instead; a trading op given here on its own is a run of one.
fn apply(conn: &Connection, op: &Op) -> rusqlite::Result<()> {
    match op {
        Op::InsertUser {
            id,
            name,
            telegram_id,
            token_hash,
            created_at,
        } => users::insert(conn, *id, name, *telegram_id, token_hash, *created_at),
        Op::SaveConfig(u, c, at) => config::save(conn, *u, c, *at),
        Op::SetBot(u, on, at) => config::set_bot(conn, *u, *on, *at),
        Op::SaveCredentials {
            user_id,
            exchange,
            nonce,
            ciphertext,
            at,
        } => credentials::save(conn, *user_id, exchange, nonce, ciphertext, *at),
        Op::SaveSymbol(s) => symbols::save(conn, s),
        Op::SaveLicense {
            user_id,
            license_type,
            starts_at,
            ends_at,
        } => licenses::save_license(conn, *user_id, license_type, *starts_at, *ends_at),
        Op::SavePromo(p) => licenses::save_promo(conn, p),
        Op::InsertRedemption {
            promo_id,
            user_id,
            license_type,
            at,
        } => licenses::insert_redemption(conn, *promo_id, *user_id, license_type, *at),
        Op::InsertDeposit(u, a, amount, at) => balances::insert_deposit(conn, *u, *a, *amount, *at),
        Op::InsertOrder(..)
        | Op::InsertPosition(_)
        | Op::InsertTrade(..)
        | Op::SaveBalance(..)
        | Op::UpdateOrder(..)
        | Op::DeletePosition(_)
        | Op::SetLastPrice(..)
        | Op::InsertSignal(_) => {
            let mut run = TradingRun::default();
            run.take(op);
            run.flush(conn)
        }
    }
}
