//! Synthetic data: the library behind `litetrade seed --db PATH --users N --trades-per-user M
//! --open-positions P --pending-orders Q`.
//!
//! [`seed`] appends realistic users to a file (created and migrated if needed) so that the engine
//! opens it as if it had made every row itself:
//! - ids continue after the highest ids already in the file, sequentially;
//! - every amount comes from the engine's own formulas in [`crate::domain::math`] (margin, fee,
//!   reserve, gross PnL, liquidation price) with the file's symbol specs (the defaults of
//!   [`SymbolSpec::default_for`] on a fresh file), prices sit on the tick, quantities on the lot
//!   and at least `min_qty`;
//! - each seeded user has one `demo` balance row whose ledger holds exactly:
//!   `wallet = deposited + Σ pnl(trade_logs) − Σ open_fee(open positions)`,
//!   `margin_used = Σ margin(open positions)`, `order_reserved = Σ reserve(pending orders)`,
//!   `available = wallet − margin_used − order_reserved ≥ 0` (the deposit covers every loss, fee,
//!   margin and reserve, so no prefix of the history ever went below zero), and one `payments`
//!   deposit row per deposit;
//! - each open position is also the only record of the market order that opened it (same id,
//!   `order_id = id`, as the engine writes it; the `orders` view shows that order); their
//!   liquidation, stop-loss and take-profit prices are on the safe side of the last price, and
//!   pending limit buys rest below the last price, sells above, so nothing triggers or
//!   fills on the first tick. Historical trade logs stand alone (their opening orders are not
//!   generated: that would double the row count and no query needs them);
//! - `trade_logs.closed_at` spreads over the last 30 days, with some in the last 24 h so the
//!   dashboard has numbers; `symbols.last_price` is set (kept when the file already has one).
//!
//! Seeded users cannot log in: their `token_hash` is SHA-256 of a deterministic byte string
//! that starts with `0xFF`, which no UTF-8 bearer token can equal. Create real users through the
//! API (or admin) to get tokens.
//!
//! Speed: rows go through the tables' own cached prepared statements, about `batch_rows` rows per
//! transaction (`synchronous` stays as configured: durability is not relaxed). Each transaction
//! holds whole users (the user, its trades, positions, orders, deposit and balance), so if a run
//! stops half-way every committed user is still consistent. Run it with the server stopped: a
//! running engine keeps its own id counters.

use super::tables::{balances, config, orders, positions, symbols, trades, users};
use super::{StoreConfig, StoreError, open_write_connection};
use crate::domain::math;
use crate::domain::model::{
    AccountType, CloseReason, Id, Ledger, Millis, Order, OrderStatus, OrderType, Position,
    PositionSide, Side, Trade, UserConfig, now_ms,
};
use crate::domain::money::{Dec, SCALE};
use crate::domain::rng::Rng;
use crate::domain::symbol::{DEFAULT_SYMBOLS, SymbolSpec};
use rusqlite::Connection;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::path::Path;
use std::time::Instant;

const S: i128 = SCALE as i128;
const MINUTE: Millis = 60_000;
const HOUR: Millis = 60 * MINUTE;
const DAY: Millis = 24 * HOUR;
/// Largest single deposit the engine accepts (1e9 USDT); bigger deposits are split.
const MAX_DEPOSIT_RAW: i64 = 1_000_000_000 * SCALE;
const LEVERAGES: [u32; 6] = [1, 2, 3, 5, 10, 20];
const STRATEGIES: [&str; 3] = ["trend", "mean_reversion", "breakout"];

/// What `litetrade seed` should make.
#[derive(Clone, Debug)]
pub struct SeedOptions {
    /// Users to add.
    pub users: u64,
    /// Closed trades (trade_logs rows) per user.
    pub trades_per_user: u64,
    /// Open positions in all, spread at random over the new users.
    pub open_positions: u64,
    /// Pending limit orders in all, spread at random over the new users.
    pub pending_orders: u64,
    /// Rows per transaction, roughly (whole users per transaction).
    pub batch_rows: usize,
    /// Seed of the pseudo-random generator (same seed and file → same data).
    pub rng_seed: u64,
    /// "Now" for the generated times (default: the clock).
    pub now_ms: Option<Millis>,
}

impl Default for SeedOptions {
    fn default() -> Self {
        SeedOptions {
            users: 1000,
            trades_per_user: 10,
            open_positions: 100,
            pending_orders: 100,
            batch_rows: 10_000,
            rng_seed: 0x5eed,
            now_ms: None,
        }
    }
}

/// What `seed` wrote.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SeedReport {
    /// Users added.
    pub users: u64,
    /// Id of the first user added (0 when none).
    pub first_user_id: Id,
    /// Id of the last user added (0 when none).
    pub last_user_id: Id,
    /// Trade log rows added.
    pub trades: u64,
    /// Of which closed in the last 24 h.
    pub trades_24h: u64,
    /// Open positions added.
    pub open_positions: u64,
    /// Filled orders added (one per open position).
    pub filled_orders: u64,
    /// Pending limit orders added.
    pub pending_orders: u64,
    /// Deposit rows added to `payments`.
    pub payments: u64,
    /// Balance rows added.
    pub balances: u64,
    /// `user_config` rows added (users following a strategy).
    pub configs: u64,
    /// Rows written in all.
    pub rows: u64,
    /// Transactions committed.
    pub transactions: u64,
    /// Wall time, ms.
    pub elapsed_ms: u64,
    /// Rows per second.
    pub rows_per_sec: u64,
}

/// A symbol to trade: its spec (from the file) and the centre price of the generated data.
struct Sym {
    spec: SymbolSpec,
    last: Dec,
}

/// A realistic price for a default symbol without a last price.
fn default_price(symbol: &str) -> Dec {
    match symbol {
        "BTCUSDT" => Dec::from_int(30_000),
        "ETHUSDT" => Dec::from_int(2_000),
        "SOLUSDT" => Dec::from_int(20),
        "XRPUSDT" => Dec(SCALE / 2),
        _ => Dec::from_int(100),
    }
}

/// `price × (1 + hundredths/10000)` on the tick (`hundredths` of a percent), at least one tick.
fn offset(price: Dec, hundredths: i64, tick: Dec) -> Dec {
    let p = math::offset_to_tick(price, Dec(hundredths * (SCALE / 100)), tick);
    if p.raw() < tick.raw() { tick } else { p }
}

/// A quantity worth 20..=2000 USDT at `price`, on the lot, at least `min_qty`.
fn qty_for(rng: &mut Rng, spec: &SymbolSpec, price: Dec) -> Dec {
    let notional = rng.range(20, 2000) as i128;
    let lot = spec.lot_size.raw() as i128;
    let raw = notional * S * S / price.raw() as i128;
    Dec(((raw / lot) * lot).max(spec.min_qty.raw() as i128) as i64)
}

fn leverage(rng: &mut Rng, spec: &SymbolSpec) -> u32 {
    rng.pick(&LEVERAGES).min(spec.max_leverage).max(1)
}

/// The stored form of a seeded user's token: SHA-256 of bytes no UTF-8 token can spell.
pub fn seeded_token_hash(user: Id) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update([0xFF]);
    h.update(b"litetrade-seed-user:");
    h.update(user.to_le_bytes());
    h.finalize().to_vec()
}

/// Per-user sums for the ledger.
#[derive(Default)]
struct Sums {
    pnl: i128,
    losses: i128,
    open_fees: i128,
    margin: i128,
    reserve: i128,
}

/// Transaction batching: commits every `limit` rows, at a user boundary.
struct Batch<'c> {
    c: &'c Connection,
    rows: usize,
    limit: usize,
    commits: u64,
}

impl<'c> Batch<'c> {
    fn begin(c: &'c Connection, limit: usize) -> rusqlite::Result<Self> {
        c.execute_batch("BEGIN IMMEDIATE")?;
        Ok(Batch {
            c,
            rows: 0,
            limit: limit.max(1),
            commits: 0,
        })
    }

    /// Counts rows; at a user boundary, commits when the batch is full. True when it committed.
    fn user_done(&mut self, rows: usize) -> rusqlite::Result<bool> {
        self.rows += rows;
        if self.rows < self.limit {
            return Ok(false);
        }
        self.c.execute_batch("COMMIT; BEGIN IMMEDIATE")?;
        self.rows = 0;
        self.commits += 1;
        Ok(true)
    }

    fn finish(mut self) -> rusqlite::Result<u64> {
        self.c.execute_batch("COMMIT")?;
        self.commits += 1;
        Ok(self.commits)
    }
}

/// Seeds the file at `path` (created and migrated when needed) and reports what it wrote.
///
/// `progress(step, done, total)` is called after each transaction (`"users"`, users done of all)
/// and for the final `"checkpoint"`. Errors: the file cannot be opened or written (nothing of the
/// transaction in progress is kept; users committed before stay, each one consistent).
pub fn seed(
    path: &Path,
    opts: &SeedOptions,
    progress: &dyn Fn(&str, u64, u64),
) -> Result<SeedReport, StoreError> {
    let t0 = Instant::now();
    let conn = open_write_connection(path, &StoreConfig::default())?;
    let mut rep = SeedReport::default();
    let result = write_all(&conn, opts, progress, &mut rep);
    if result.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    result?;
    progress("checkpoint", 0, 1);
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
    progress("checkpoint", 1, 1);
    rep.elapsed_ms = t0.elapsed().as_millis() as u64;
    rep.rows_per_sec = (rep.rows as u128 * 1000 / t0.elapsed().as_millis().max(1)) as u64;
    Ok(rep)
}

fn max_id(c: &Connection, sql: &str) -> rusqlite::Result<Id> {
    c.query_row(sql, [], |r| r.get(0))
}

fn write_all(
    c: &Connection,
    opts: &SeedOptions,
    progress: &dyn Fn(&str, u64, u64),
    rep: &mut SeedReport,
) -> Result<(), StoreError> {
    let now = opts.now_ms.unwrap_or_else(now_ms);
    let mut rng = Rng(opts.rng_seed);
    let mut syms = Vec::new();
    for name in DEFAULT_SYMBOLS {
        if let Some((spec, last, _)) = symbols::get(c, name)? {
            let last = last
                .filter(|p| p.is_positive())
                .unwrap_or_else(|| default_price(name));
            // on the tick, at least one tick
            let last = offset(last, 0, spec.tick_size);
            syms.push(Sym { spec, last });
        }
    }
    if syms.is_empty() {
        return Err(StoreError::Sqlite(
            "no default symbol in the symbols table".into(),
        ));
    }
    let n = opts.users;
    let first_user = max_id(c, "SELECT COALESCE(MAX(id), 0) FROM users")? + 1;
    let mut next_trade = trades::max_id(c)? + 1;
    // orders and positions share one sequence (as in the engine)
    let mut next_id = orders::max_id(c)? + 1;
    // Spread positions and orders over the users (counts per user).
    let (mut pos_count, mut ord_count) = (vec![0u32; n as usize], vec![0u32; n as usize]);
    if n > 0 {
        for _ in 0..opts.open_positions {
            pos_count[rng.below(n) as usize] += 1;
        }
        for _ in 0..opts.pending_orders {
            ord_count[rng.below(n) as usize] += 1;
        }
    }
    let m = opts.trades_per_user;
    let per_user_rows = (m + 4) as usize;
    let mut batch = Batch::begin(c, opts.batch_rows.max(per_user_rows))?;
    for s in &syms {
        symbols::set_last(c, &s.spec.symbol, s.last, now)?;
    }
    progress("users", 0, n);
    let span = 30 * DAY;
    let start = now - span;
    // Reused row buffers: no allocation per trade row.
    let mut t = Trade {
        id: 0,
        position_id: 0,
        user_id: 0,
        symbol: String::new(),
        side: PositionSide::Long,
        qty: Dec::ZERO,
        entry_price: Dec::ZERO,
        exit_price: Dec::ZERO,
        open_fee: Dec::ZERO,
        close_fee: Dec::ZERO,
        pnl: Dec::ZERO,
        reason: CloseReason::Manual,
        account_type: AccountType::Demo,
        opened_at: 0,
        closed_at: 0,
    };
    for i in 0..n {
        let uid = first_user + i as Id;
        let mut rows = 0usize;
        let created = now - 60 * DAY + rng.range(0, 20 * DAY);
        let tg = rng.pct(70).then(|| 100_000_000 + uid);
        users::insert(
            c,
            uid,
            &format!("trader{uid}"),
            tg,
            &seeded_token_hash(uid),
            created,
        )?;
        rows += 1;
        if rng.pct(20) {
            let cfg = UserConfig {
                strategy: Some(rng.pick(&STRATEGIES).to_string()),
                leverage: Some(rng.pick(&[2u32, 5, 10])),
                risk_pct: Some(Dec::from_int(rng.range(1, 5))),
                sl_pct: Some(Dec::from_int(2)),
                tp_pct: Some(Dec::from_int(4)),
                account_type: AccountType::Demo,
            };
            config::save(c, uid, &cfg, created)?;
            config::set_bot(c, uid, rng.pct(50), created)?;
            rep.configs += 1;
            rows += 2;
        }
        let mut sums = Sums::default();
        // Closed trades: one per slot of the 30 days, in time order; some users traded today.
        let recent_last = rng.pct(20);
        for j in 0..m {
            let slot = span / m.max(1) as i64;
            let mut closed = start + j as i64 * slot + rng.range(0, slot.max(1) - 1);
            if recent_last && j + 1 == m {
                closed = now - rng.range(MINUTE, DAY - MINUTE);
            }
            let sym = &syms[rng.below(syms.len() as u64) as usize];
            let lev = gen_trade(&mut rng, sym, &mut t);
            t.id = next_trade;
            t.position_id = next_id;
            t.user_id = uid;
            t.closed_at = closed.min(now - 1);
            t.opened_at = t.closed_at - rng.range(MINUTE, 2 * DAY);
            let opening = trades::Opening {
                leverage: lev,
                order_id: None,
                sl: None,
                tp: None,
            };
            trades::insert_many(c, &[(&t, opening)])?;
            next_trade += 1;
            next_id += 1;
            rows += 1;
            rep.trades += 1;
            rep.trades_24h += u64::from(t.closed_at >= now - DAY);
            sums.pnl += t.pnl.raw() as i128;
            sums.losses += (t.pnl.raw() as i128).min(0).abs();
        }
        for _ in 0..pos_count[i as usize] {
            let sym = &syms[rng.below(syms.len() as u64) as usize];
            let opened = now - 3 * DAY + rng.range(0, 2 * DAY);
            let p = gen_position(&mut rng, sym, uid, next_id, opened);
            positions::insert_many(c, &[&p])?;
            next_id += 1;
            rows += 1;
            rep.open_positions += 1;
            rep.filled_orders += 1;
            sums.open_fees += p.open_fee.raw() as i128;
            sums.margin += p.margin.raw() as i128;
        }
        for _ in 0..ord_count[i as usize] {
            let sym = &syms[rng.below(syms.len() as u64) as usize];
            let created_at = now - DAY + rng.range(0, DAY - MINUTE);
            let o = gen_pending(&mut rng, sym, uid, next_id, created_at);
            orders::insert_many(c, &[(&o, created_at)])?;
            next_id += 1;
            rows += 1;
            rep.pending_orders += 1;
            sums.reserve += o.reserve.raw() as i128;
        }
        // Deposit enough for every loss, fee, margin and reserve, plus a cushion.
        let need = sums.losses
            + sums.open_fees
            + sums.margin
            + sums.reserve
            + rng.range(5, 50) as i128 * 1000 * S;
        let step = 100 * S;
        let deposited = (need + step - 1) / step * step;
        let deposited = i64::try_from(deposited).map_err(|_| {
            StoreError::Sqlite(format!("user {uid}: generated deposit out of range"))
        })?;
        let mut left = deposited;
        let mut at = created + MINUTE;
        while left > 0 {
            let amount = left.min(MAX_DEPOSIT_RAW);
            balances::insert_deposit(c, uid, AccountType::Demo, Dec(amount), at)?;
            left -= amount;
            at += 1;
            rows += 1;
            rep.payments += 1;
        }
        let to_i64 = |v: i128| {
            i64::try_from(v).map_err(|_| {
                StoreError::Sqlite(format!("user {uid}: generated ledger out of range"))
            })
        };
        let ledger = Ledger {
            wallet: Dec(to_i64(deposited as i128 + sums.pnl - sums.open_fees)?),
            margin_used: Dec(to_i64(sums.margin)?),
            order_reserved: Dec(to_i64(sums.reserve)?),
            deposited: Dec(deposited),
        };
        debug_assert!(ledger.available().raw() >= 0);
        balances::save_many(c, &[(uid, AccountType::Demo, &ledger, now)])?;
        rows += 1;
        rep.balances += 1;
        rep.users += 1;
        rep.rows += rows as u64;
        if batch.user_done(rows)? {
            progress("users", i + 1, n);
        }
    }
    rep.transactions = batch.finish()?;
    progress("users", n, n);
    if n > 0 {
        rep.first_user_id = first_user;
        rep.last_user_id = first_user + n as Id - 1;
    }
    Ok(())
}

/// Fills `t` with a closed trade on `sym` (ids and times are set by the caller); returns the
/// position's leverage (stored beside the trade).
fn gen_trade(rng: &mut Rng, sym: &Sym, t: &mut Trade) -> u32 {
    let spec = &sym.spec;
    let tick = spec.tick_size;
    let side = if rng.pct(50) {
        PositionSide::Long
    } else {
        PositionSide::Short
    };
    let lev = leverage(rng, spec);
    let entry = offset(sym.last, rng.range(-500, 500), tick);
    let qty = qty_for(rng, spec, entry);
    // +1 when a rising price is good for the position
    let good: i64 = if side == PositionSide::Long { 1 } else { -1 };
    let roll = rng.below(100);
    let (reason, mut exit) = match roll {
        0..40 => (
            CloseReason::Manual,
            offset(entry, rng.range(-300, 300), tick),
        ),
        40..65 => (
            CloseReason::TakeProfit,
            offset(entry, good * rng.range(50, 400), tick),
        ),
        97..100 if lev >= 5 => (
            CloseReason::Liquidation,
            math::liquidation_price(side, entry, lev, spec.mmr_bps, tick),
        ),
        _ => (
            CloseReason::StopLoss,
            offset(entry, -good * rng.range(50, 300), tick),
        ),
    };
    // A take profit gains and a stop loss loses at least one tick (coarse ticks on cheap coins).
    let up = Dec(entry.raw() + tick.raw());
    let down = Dec((entry.raw() - tick.raw()).max(tick.raw()));
    match (reason, side) {
        (CloseReason::TakeProfit, PositionSide::Long)
        | (CloseReason::StopLoss, PositionSide::Short)
            if exit <= entry =>
        {
            exit = up
        }
        (CloseReason::TakeProfit, PositionSide::Short)
        | (CloseReason::StopLoss, PositionSide::Long)
            if exit >= entry =>
        {
            exit = down
        }
        _ => {}
    }
    let open_bps = if rng.pct(30) {
        spec.maker_fee_bps
    } else {
        spec.taker_fee_bps
    };
    let open_fee = math::fee(entry, qty, open_bps).expect("bounded notional");
    let close_fee = math::fee(exit, qty, spec.taker_fee_bps).expect("bounded notional");
    let gross = math::gross_pnl(side, entry, exit, qty);
    t.symbol.clear();
    t.symbol.push_str(&spec.symbol);
    t.side = side;
    t.qty = qty;
    t.entry_price = entry;
    t.exit_price = exit;
    t.open_fee = open_fee;
    t.close_fee = close_fee;
    t.pnl = Dec(gross.raw() - open_fee.raw() - close_fee.raw());
    t.reason = reason;
    t.account_type = AccountType::Demo;
    lev
}

/// An open position near the last price, safe from its triggers at that price, and the only
/// record of the market order that opened it (same id, taker fee, as the engine writes it).
fn gen_position(rng: &mut Rng, sym: &Sym, user: Id, id: Id, opened: Millis) -> Position {
    let spec = &sym.spec;
    let tick = spec.tick_size;
    let last = sym.last;
    let side = if rng.pct(50) {
        PositionSide::Long
    } else {
        PositionSide::Short
    };
    let long = side == PositionSide::Long;
    let entry = offset(last, rng.range(-100, 100), tick);
    let qty = qty_for(rng, spec, entry);
    // Highest leverage at or below a random pick whose liquidation price is beyond the last price.
    let mut lev = leverage(rng, spec);
    let liq = loop {
        let liq = math::liquidation_price(side, entry, lev, spec.mmr_bps, tick);
        let safe = if long { liq < last } else { liq > last };
        if safe || lev == 1 {
            break liq;
        }
        lev = LEVERAGES
            .iter()
            .copied()
            .filter(|&l| l < lev)
            .max()
            .unwrap_or(1);
    };
    let margin = math::margin(entry, qty, lev).expect("bounded notional");
    let open_fee = math::fee(entry, qty, spec.taker_fee_bps).expect("bounded notional");
    // Stop loss between the liquidation price and the nearer of entry/last; take profit beyond.
    let (near, far) = if long {
        (entry.min(last), entry.max(last))
    } else {
        (entry.max(last), entry.min(last))
    };
    let dir: i64 = if long { 1 } else { -1 };
    let sl = rng
        .pct(70)
        .then(|| offset(near, -dir * rng.range(100, 300), tick))
        .filter(|&sl| {
            if long {
                sl < near && sl > liq
            } else {
                sl > near && sl < liq
            }
        });
    let tp = rng
        .pct(70)
        .then(|| offset(far, dir * rng.range(200, 600), tick))
        .filter(|&tp| {
            if long {
                tp > far
            } else {
                tp < far && tp.is_positive()
            }
        });
    Position {
        id,
        user_id: user,
        symbol: spec.symbol.clone(),
        side,
        qty,
        entry_price: entry,
        leverage: lev,
        margin,
        sl,
        tp,
        liquidation_price: liq,
        open_fee,
        unrealized_pnl: Dec::ZERO,
        account_type: AccountType::Demo,
        opened_at: opened,
        order_id: Some(id),
    }
}

/// A resting limit order away from the last price (buys below, sells above) with its reserve.
fn gen_pending(rng: &mut Rng, sym: &Sym, user: Id, id: Id, created: Millis) -> Order {
    let spec = &sym.spec;
    let tick = spec.tick_size;
    let last = sym.last;
    let buy = rng.pct(50);
    let dir: i64 = if buy { -1 } else { 1 };
    let mut price = offset(last, dir * rng.range(100, 600), tick);
    if buy && price >= last {
        price = Dec(last.raw() - tick.raw());
    }
    if !buy && price <= last {
        price = Dec(last.raw() + tick.raw());
    }
    if !price.is_positive() {
        // a last price of one tick leaves no room below: rest a sell instead
        return gen_pending_sell(rng, sym, user, id, created);
    }
    make_pending(rng, spec, user, id, created, buy, price)
}

fn gen_pending_sell(rng: &mut Rng, sym: &Sym, user: Id, id: Id, created: Millis) -> Order {
    let price = Dec(sym.last.raw() + sym.spec.tick_size.raw());
    make_pending(rng, &sym.spec, user, id, created, false, price)
}

fn make_pending(
    rng: &mut Rng,
    spec: &SymbolSpec,
    user: Id,
    id: Id,
    created: Millis,
    buy: bool,
    price: Dec,
) -> Order {
    let tick = spec.tick_size;
    let qty = qty_for(rng, spec, price);
    let lev = leverage(rng, spec);
    let reserve = math::reserve(price, qty, lev, spec.taker_fee_bps).expect("bounded notional");
    let dir: i64 = if buy { 1 } else { -1 };
    let sl = rng
        .pct(50)
        .then(|| offset(price, -dir * rng.range(200, 400), tick))
        .filter(|&sl| if buy { sl < price } else { sl > price });
    let tp = rng
        .pct(50)
        .then(|| offset(price, dir * rng.range(200, 600), tick))
        .filter(|&tp| {
            if buy {
                tp > price
            } else {
                tp < price && tp.is_positive()
            }
        });
    Order {
        id,
        user_id: user,
        symbol: spec.symbol.clone(),
        side: if buy { Side::Buy } else { Side::Sell },
        order_type: OrderType::Limit,
        qty,
        price: Some(price),
        leverage: lev,
        sl,
        tp,
        account_type: AccountType::Demo,
        status: OrderStatus::Pending,
        reserve,
        fill_price: None,
        fee: None,
        position_id: None,
        client_order_id: rng.pct(30).then(|| format!("seed-{id}")),
        created_at: created,
        filled_at: None,
    }
}
