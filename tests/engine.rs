//! The engine end to end, on real SQLite files in temporary directories:
//!
//! 1. a differential property test against an independent reference model of API.md §1,
//! 2. recovery (shutdown / reopen in the middle of a scenario changes nothing),
//! 3. concurrency (many writers and a tick stream keep every ledger invariant),
//! 4. read-after-write through the caches,
//! 5. concurrent promo redemption,
//! 6. rejected input changes nothing,
//! 7. client_order_id idempotency,
//! 8. signals,
//! 9. events,
//!
//! plus the venue floor (a loss beyond what the account holds is capped).

use litetrade::domain::model::{
    AccountType, Balance, CloseReason, License, Order, OrderStatus, OrderType, Position,
    PositionSide, Side, Trade,
};
use litetrade::domain::money::Dec;
use litetrade::domain::symbol::{Bps, SymbolPatch, SymbolSpec};
use litetrade::engine::events::Event;
use litetrade::{
    Config, ConfigPatch, Engine, Error, NewOrder, NewPromo, Signal, Tick, TickOutcome,
};
use proptest::prelude::*;
use proptest::sample::Index;
use reference::{Counts, MOrder, MPos, MTrade, Model, Req, Spec};
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tempfile::TempDir;

const DEMO: AccountType = AccountType::Demo;
const DAY_MS: i64 = 86_400_000;
const BTC: &str = "BTCUSDT";
const ETH: &str = "ETHUSDT";

fn d(s: &str) -> Dec {
    Dec::parse(s).unwrap_or_else(|e| panic!("bad decimal {s:?}: {e}"))
}

fn cfg_for(dir: &TempDir, require_license: bool) -> Config {
    Config {
        db: dir.path().join("t.db"),
        require_license,
        ..Default::default()
    }
}

fn open(dir: &TempDir) -> Engine {
    Engine::open(&cfg_for(dir, false)).expect("open engine")
}

/// Shuts an engine down and opens its database again with the same configuration. The handle
/// must go first: the database lock is held until the last handle is dropped, not released by
/// `shutdown()`.
fn reopen(e: Engine, dir: &TempDir) -> Engine {
    let cfg = e.config().clone();
    assert!(cfg.db.starts_with(dir.path()));
    e.shutdown();
    drop(e);
    Engine::open(&cfg).expect("reopen engine")
}

fn open_licensed(dir: &TempDir) -> Engine {
    Engine::open(&cfg_for(dir, true)).expect("open engine")
}

/// The error code of a call that must fail.
fn code<T: std::fmt::Debug>(r: litetrade::Result<T>) -> &'static str {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.code(),
    }
}

async fn tick(e: &Engine, symbol: &str, price: &str) -> TickOutcome {
    e.ingest_ticks(vec![Tick {
        symbol: symbol.into(),
        price: d(price),
        ts: None,
    }])
    .await
    .expect("tick")
}

async fn user_with(e: &Engine, name: &str, deposit: &str) -> i64 {
    let (u, _token) = e.create_user(name, None).await.expect("create user");
    if deposit != "0" {
        e.deposit(u.id, d(deposit), DEMO).await.expect("deposit");
    }
    u.id
}

fn order(
    symbol: &str,
    side: Side,
    qty: &str,
    price: Option<&str>,
    lev: u32,
    sl: Option<&str>,
    tp: Option<&str>,
) -> NewOrder {
    let mut o = match price {
        Some(p) => NewOrder::limit(symbol, side, d(qty), d(p)),
        None => NewOrder::market(symbol, side, d(qty)),
    };
    o.leverage = Some(lev);
    o.sl = sl.map(d);
    o.tp = tp.map(d);
    o
}

/// A tiny deterministic generator (splitmix64) for the concurrency test.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }
}

/// An independent reference implementation of API.md §1: exact rationals in `i128`, rounded
/// once with its own half-away-from-zero / floor / ceil. It shares no code with
/// `litetrade::domain::math`.
mod reference {
    use litetrade::domain::model::{CloseReason, OrderStatus, OrderType, PositionSide, Side};
    use std::collections::BTreeMap;
    use std::ops::{Add, Div, Mul, Sub};

    /// Raw units per whole unit.
    pub const S: i128 = 100_000_000;

    fn gcd(a: i128, b: i128) -> i128 {
        let (mut a, mut b) = (a.abs(), b.abs());
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    }

    /// n / d rounded half away from zero, d > 0.
    fn half_away(n: i128, d: i128) -> i128 {
        assert!(d > 0);
        let (q, r) = (n.abs() / d, n.abs() % d);
        let q = if 2 * r >= d { q + 1 } else { q };
        if n < 0 { -q } else { q }
    }

    fn floor_div(n: i128, d: i128) -> i128 {
        assert!(d > 0);
        if n >= 0 { n / d } else { -((-n + d - 1) / d) }
    }

    fn ceil_div(n: i128, d: i128) -> i128 {
        -floor_div(-n, d)
    }

    /// An exact rational number of whole units.
    #[derive(Clone, Copy, Debug)]
    pub struct Q {
        n: i128,
        d: i128,
    }

    impl Q {
        pub fn new(n: i128, d: i128) -> Q {
            assert!(d != 0);
            let s = if d < 0 { -1 } else { 1 };
            let g = gcd(n, d).max(1);
            Q {
                n: s * n / g,
                d: s * d / g,
            }
        }
        pub fn int(n: i128) -> Q {
            Q::new(n, 1)
        }
        /// From raw 10^-8 units.
        pub fn dec(raw: i64) -> Q {
            Q::new(raw as i128, S)
        }
        /// In raw units, rounded half away from zero.
        pub fn round8(self) -> i64 {
            i64::try_from(half_away(self.n * S, self.d)).unwrap()
        }
        /// value / step where step is in raw units: (numerator, denominator).
        fn per(self, step: i64) -> (i128, i128) {
            (self.n * S, self.d * step as i128)
        }
        /// Up to a multiple of `step` (raw), in raw units.
        pub fn ceil_to(self, step: i64) -> i64 {
            let (a, b) = self.per(step);
            i64::try_from(ceil_div(a, b) * step as i128).unwrap()
        }
        /// Down to a multiple of `step` (raw), in raw units.
        pub fn floor_to(self, step: i64) -> i64 {
            let (a, b) = self.per(step);
            i64::try_from(floor_div(a, b) * step as i128).unwrap()
        }
        /// To the nearest multiple of `step` (raw), ties away from zero, in raw units.
        pub fn round_to(self, step: i64) -> i64 {
            let (a, b) = self.per(step);
            i64::try_from(half_away(a, b) * step as i128).unwrap()
        }
    }

    impl Add for Q {
        type Output = Q;
        fn add(self, o: Q) -> Q {
            Q::new(self.n * o.d + o.n * self.d, self.d * o.d)
        }
    }
    impl Sub for Q {
        type Output = Q;
        fn sub(self, o: Q) -> Q {
            Q::new(self.n * o.d - o.n * self.d, self.d * o.d)
        }
    }
    impl Mul for Q {
        type Output = Q;
        fn mul(self, o: Q) -> Q {
            Q::new(self.n * o.n, self.d * o.d)
        }
    }
    impl Div for Q {
        type Output = Q;
        fn div(self, o: Q) -> Q {
            Q::new(self.n * o.d, self.d * o.n)
        }
    }

    /// A rate given in hundredths of a basis point.
    pub fn rate(cbps: i64) -> Q {
        Q::new(cbps as i128, 1_000_000)
    }
    pub fn margin(price: i64, qty: i64, lev: u32) -> i64 {
        (Q::dec(price) * Q::dec(qty) / Q::int(lev as i128)).round8()
    }
    pub fn fee(price: i64, qty: i64, cbps: i64) -> i64 {
        (Q::dec(price) * Q::dec(qty) * rate(cbps)).round8()
    }
    /// A resting order's reserve: margin and taker fee at the limit, each rounded.
    pub fn reserve(limit: i64, qty: i64, lev: u32, taker: i64) -> i64 {
        margin(limit, qty, lev) + fee(limit, qty, taker)
    }
    pub fn liquidation(long: bool, entry: i64, lev: u32, mmr: i64, tick: i64) -> i64 {
        let inv = Q::new(1, lev as i128);
        let f = if long {
            Q::int(1) - inv + rate(mmr)
        } else {
            Q::int(1) + inv - rate(mmr)
        };
        let v = Q::dec(entry) * f;
        let on_tick = if long {
            v.ceil_to(tick)
        } else {
            v.floor_to(tick)
        };
        // an off-grid entry: rounding to the tick must not cross it (no liquidation at a profit)
        match (long, on_tick) {
            (true, l) if l > entry => v.ceil_to(1),
            (false, l) if l < entry => v.floor_to(1),
            _ => on_tick,
        }
    }
    pub fn gross(long: bool, entry: i64, exit: i64, qty: i64) -> i64 {
        let diff = if long { exit - entry } else { entry - exit };
        (Q::dec(diff) * Q::dec(qty)).round8()
    }
    /// price × (1 + pct/100) to the nearest tick (`pct` raw, signed).
    pub fn offset(price: i64, pct: i64, tick: i64) -> i64 {
        (Q::dec(price) * (Q::int(1) + Q::dec(pct) / Q::int(100))).round_to(tick)
    }
    /// available × risk/100 × leverage / last, down to the lot.
    pub fn signal_qty(available: i64, risk: i64, lev: u32, last: i64, lot: i64) -> i64 {
        if available <= 0 {
            return 0;
        }
        (Q::dec(available) * Q::dec(risk) / Q::int(100) * Q::int(lev as i128) / Q::dec(last))
            .floor_to(lot)
    }

    #[derive(Clone, Debug)]
    pub struct Spec {
        pub name: String,
        pub tick: i64,
        pub lot: i64,
        pub min_qty: i64,
        pub max_lev: u32,
        pub maker: i64,
        pub taker: i64,
        pub mmr: i64,
    }

    impl Spec {
        /// API.md §1 defaults: tick 0.01, lot 0.001, min 0.001, x100, 2 / 5.5 / 50 bps.
        pub fn default_named(name: &str) -> Spec {
            Spec {
                name: name.into(),
                tick: 1_000_000,
                lot: 100_000,
                min_qty: 100_000,
                max_lev: 100,
                maker: 200,
                taker: 550,
                mmr: 5000,
            }
        }
    }

    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct Ledger {
        pub wallet: i64,
        pub margin: i64,
        pub reserved: i64,
        pub deposits: i64,
    }

    impl Ledger {
        pub fn available(&self) -> i64 {
            self.wallet - self.margin - self.reserved
        }
    }

    #[derive(Clone, Debug)]
    pub struct MOrder {
        pub id: i64,
        pub user: i64,
        pub sym: usize,
        pub side: Side,
        pub kind: OrderType,
        pub qty: i64,
        pub price: Option<i64>,
        pub lev: u32,
        pub sl: Option<i64>,
        pub tp: Option<i64>,
        pub status: OrderStatus,
        pub reserve: i64,
        pub fill_price: Option<i64>,
        pub fee: Option<i64>,
        pub position_id: Option<i64>,
    }

    #[derive(Clone, Debug)]
    pub struct MPos {
        pub id: i64,
        pub user: i64,
        pub sym: usize,
        pub side: PositionSide,
        pub qty: i64,
        pub entry: i64,
        pub lev: u32,
        pub margin: i64,
        pub liq: i64,
        pub sl: Option<i64>,
        pub tp: Option<i64>,
        pub open_fee: i64,
    }

    #[derive(Clone, Debug)]
    pub struct MTrade {
        pub id: i64,
        pub position_id: i64,
        pub user: i64,
        pub sym: usize,
        pub side: PositionSide,
        pub qty: i64,
        pub entry: i64,
        pub exit: i64,
        pub open_fee: i64,
        pub close_fee: i64,
        pub pnl: i64,
        pub reason: CloseReason,
    }

    #[derive(Clone, Debug)]
    pub struct Req {
        pub symbol: String,
        pub side: Side,
        pub kind: OrderType,
        pub qty: i64,
        pub price: Option<i64>,
        pub lev: Option<u32>,
        pub sl: Option<i64>,
        pub tp: Option<i64>,
    }

    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct Counts {
        pub fills: usize,
        pub liquidations: usize,
        pub stop_losses: usize,
        pub take_profits: usize,
    }

    pub type R<T> = Result<T, &'static str>;
    const INVALID: &str = "invalid_request";
    const MAX_DEPOSIT: i64 = 1_000_000_000 * S as i64;

    pub struct Model {
        pub specs: Vec<Spec>,
        pub last: Vec<Option<i64>>,
        pub ledgers: BTreeMap<i64, Ledger>,
        /// Every order ever accepted, by id.
        pub orders: BTreeMap<i64, MOrder>,
        /// Open positions, by id.
        pub positions: BTreeMap<i64, MPos>,
        pub trades: Vec<MTrade>,
        /// Closes whose loss the venue floor capped.
        pub capped: usize,
        /// Orders and positions share one id sequence.
        next_id: i64,
        next_trade: i64,
    }

    impl Model {
        pub fn new(specs: Vec<Spec>, users: &[i64]) -> Model {
            Model {
                last: vec![None; specs.len()],
                specs,
                ledgers: users.iter().map(|&u| (u, Ledger::default())).collect(),
                orders: BTreeMap::new(),
                positions: BTreeMap::new(),
                trades: Vec::new(),
                capped: 0,
                next_id: 0,
                next_trade: 0,
            }
        }

        pub fn sym(&self, name: &str) -> Option<usize> {
            self.specs.iter().position(|s| s.name == name)
        }

        pub fn ledger(&self, user: i64) -> Ledger {
            self.ledgers[&user]
        }

        pub fn deposit(&mut self, user: i64, amount: i64) -> R<()> {
            if amount <= 0 || amount > MAX_DEPOSIT {
                return Err(INVALID);
            }
            let l = self.ledgers.get_mut(&user).ok_or("not_found")?;
            l.wallet += amount;
            l.deposits += amount;
            Ok(())
        }

        /// API.md §1 "Orders", checks in the engine's order (input, price, sl/tp, balance).
        pub fn place(&mut self, user: i64, r: &Req) -> R<MOrder> {
            if !self.ledgers.contains_key(&user) {
                return Err("not_found");
            }
            let si = self.sym(&r.symbol).ok_or("unknown_symbol")?;
            let spec = self.specs[si].clone();
            if r.qty <= 0 || r.qty % spec.lot != 0 || r.qty < spec.min_qty {
                return Err(INVALID);
            }
            let lev = r.lev.unwrap_or(1);
            if lev < 1 || lev > spec.max_lev {
                return Err(INVALID);
            }
            let last = self.last[si];
            let reference = match r.kind {
                OrderType::Market => {
                    if r.price.is_some() {
                        return Err(INVALID);
                    }
                    last.ok_or("no_price")?
                }
                OrderType::Limit => {
                    let p = r.price.ok_or(INVALID)?;
                    if p <= 0 || p % spec.tick != 0 {
                        return Err(INVALID);
                    }
                    p
                }
            };
            for v in [r.sl, r.tp].into_iter().flatten() {
                if v <= 0 || v % spec.tick != 0 {
                    return Err(INVALID);
                }
            }
            let long = r.side == Side::Buy;
            if let Some(sl) = r.sl
                && ((long && sl >= reference) || (!long && sl <= reference))
            {
                return Err(INVALID);
            }
            if let Some(tp) = r.tp
                && ((long && tp <= reference) || (!long && tp >= reference))
            {
                return Err(INVALID);
            }
            let fill_now = match r.kind {
                OrderType::Market => last,
                OrderType::Limit => {
                    last.filter(|&l| if long { l <= reference } else { l >= reference })
                }
            };
            let needed = match fill_now {
                Some(px) => margin(px, r.qty, lev) + fee(px, r.qty, spec.taker),
                None => reserve(reference, r.qty, lev, spec.taker),
            };
            if self.ledgers[&user].available() < needed {
                return Err("insufficient_balance");
            }
            self.next_id += 1;
            let id = self.next_id;
            let mut o = MOrder {
                id,
                user,
                sym: si,
                side: r.side,
                kind: r.kind,
                qty: r.qty,
                price: r.price,
                lev,
                sl: r.sl,
                tp: r.tp,
                status: OrderStatus::Pending,
                reserve: 0,
                fill_price: None,
                fee: None,
                position_id: None,
            };
            match fill_now {
                Some(px) => {
                    self.orders.insert(id, o);
                    self.fill(id, px, spec.taker);
                }
                None => {
                    o.reserve = needed;
                    self.ledgers.get_mut(&user).unwrap().reserved += needed;
                    self.orders.insert(id, o);
                }
            }
            Ok(self.orders[&id].clone())
        }

        fn fill(&mut self, id: i64, px: i64, fee_cbps: i64) {
            let o = self.orders.get_mut(&id).unwrap();
            // a market order (the model places none with a client id) shares its position's id
            let pid = if o.kind == OrderType::Market {
                id
            } else {
                self.next_id += 1;
                self.next_id
            };
            let spec = &self.specs[o.sym];
            let m = margin(px, o.qty, o.lev);
            let f = fee(px, o.qty, fee_cbps);
            let long = o.side == Side::Buy;
            let l = self.ledgers.get_mut(&o.user).unwrap();
            l.reserved -= o.reserve;
            l.margin += m;
            l.wallet -= f;
            o.reserve = 0;
            o.status = OrderStatus::Filled;
            o.fill_price = Some(px);
            o.fee = Some(f);
            o.position_id = Some(pid);
            let p = MPos {
                id: pid,
                user: o.user,
                sym: o.sym,
                side: if long {
                    PositionSide::Long
                } else {
                    PositionSide::Short
                },
                qty: o.qty,
                entry: px,
                lev: o.lev,
                margin: m,
                liq: liquidation(long, px, o.lev, spec.mmr, spec.tick),
                sl: o.sl,
                tp: o.tp,
                open_fee: f,
            };
            self.positions.insert(pid, p);
        }

        pub fn cancel(&mut self, user: i64, id: i64) -> R<MOrder> {
            match self.orders.get_mut(&id) {
                Some(o) if o.user == user => {
                    if o.status != OrderStatus::Pending {
                        return Err("conflict");
                    }
                    let r = o.reserve;
                    o.reserve = 0;
                    o.status = OrderStatus::Cancelled;
                    let o = o.clone();
                    self.ledgers.get_mut(&user).unwrap().reserved -= r;
                    Ok(o)
                }
                _ => Err("not_found"),
            }
        }

        pub fn close_request(&mut self, user: i64, pid: i64) -> R<MTrade> {
            match self.positions.get(&pid) {
                Some(p) if p.user == user => {
                    let exit = self.last[p.sym].ok_or("no_price")?;
                    Ok(self.close(pid, exit, CloseReason::Manual))
                }
                _ => {
                    if self
                        .trades
                        .iter()
                        .any(|t| t.position_id == pid && t.user == user)
                    {
                        Err("conflict")
                    } else {
                        Err("not_found")
                    }
                }
            }
        }

        fn close(&mut self, pid: i64, exit: i64, reason: CloseReason) -> MTrade {
            let p = self.positions.remove(&pid).unwrap();
            let mut close_fee = fee(exit, p.qty, self.specs[p.sym].taker);
            let mut g = gross(p.side == PositionSide::Long, p.entry, exit, p.qty);
            let l = self.ledgers.get_mut(&p.user).unwrap();
            // the venue floor: an account loses at most what it holds (available + this margin);
            // the close fee is waived first, then the loss
            let can_lose = l.available() + p.margin;
            if g - close_fee < -can_lose {
                g = g.max(-can_lose);
                close_fee = close_fee.min(g + can_lose);
                self.capped += 1;
            }
            l.wallet += g - close_fee;
            l.margin -= p.margin;
            self.next_trade += 1;
            let t = MTrade {
                id: self.next_trade,
                position_id: pid,
                user: p.user,
                sym: p.sym,
                side: p.side,
                qty: p.qty,
                entry: p.entry,
                exit,
                open_fee: p.open_fee,
                close_fee,
                pnl: g - p.open_fee - close_fee,
                reason,
            };
            self.trades.push(t.clone());
            t
        }

        /// API.md §1 "Ticks"; a batch is refused whole when one tick is bad.
        pub fn ticks(&mut self, ticks: &[(String, i64)]) -> R<Counts> {
            let mut checked = Vec::new();
            for (s, p) in ticks {
                let si = self.sym(s).ok_or("unknown_symbol")?;
                if *p <= 0 {
                    return Err(INVALID);
                }
                checked.push((si, *p));
            }
            let mut c = Counts::default();
            for (si, p) in checked {
                self.last[si] = Some(p);
                let crossed: Vec<i64> = self
                    .orders
                    .values()
                    .filter(|o| o.status == OrderStatus::Pending && o.sym == si)
                    .filter(|o| {
                        let limit = o.price.unwrap();
                        if o.side == Side::Buy {
                            p <= limit
                        } else {
                            p >= limit
                        }
                    })
                    .map(|o| o.id)
                    .collect();
                for id in crossed {
                    let limit = self.orders[&id].price.unwrap();
                    self.fill(id, limit, self.specs[si].maker);
                    c.fills += 1;
                }
                // (kind, id): 0 liquidation, 1 stop loss, 2 take profit; one per position
                let mut hits: Vec<(u8, i64)> = Vec::new();
                for pos in self.positions.values().filter(|x| x.sym == si) {
                    let long = pos.side == PositionSide::Long;
                    let kind = if (long && p <= pos.liq) || (!long && p >= pos.liq) {
                        Some(0)
                    } else if pos
                        .sl
                        .is_some_and(|sl| if long { p <= sl } else { p >= sl })
                    {
                        Some(1)
                    } else if pos
                        .tp
                        .is_some_and(|tp| if long { p >= tp } else { p <= tp })
                    {
                        Some(2)
                    } else {
                        None
                    };
                    if let Some(k) = kind {
                        hits.push((k, pos.id));
                    }
                }
                hits.sort();
                for (k, pid) in hits {
                    let pos = &self.positions[&pid];
                    let (exit, reason) = match k {
                        0 => {
                            c.liquidations += 1;
                            (pos.liq, CloseReason::Liquidation)
                        }
                        1 => {
                            c.stop_losses += 1;
                            (p, CloseReason::StopLoss)
                        }
                        _ => {
                            c.take_profits += 1;
                            (pos.tp.unwrap(), CloseReason::TakeProfit)
                        }
                    };
                    self.close(pid, exit, reason);
                }
            }
            Ok(c)
        }

        pub fn upnl(&self, user: i64) -> i64 {
            self.open_positions(user)
                .iter()
                .map(|p| self.pos_upnl(p))
                .sum()
        }

        pub fn pos_upnl(&self, p: &MPos) -> i64 {
            match self.last[p.sym] {
                Some(last) => gross(p.side == PositionSide::Long, p.entry, last, p.qty),
                None => 0,
            }
        }

        pub fn pending(&self, user: i64) -> Vec<&MOrder> {
            self.orders
                .values()
                .filter(|o| o.user == user && o.status == OrderStatus::Pending)
                .collect()
        }

        pub fn open_positions(&self, user: i64) -> Vec<&MPos> {
            self.positions.values().filter(|p| p.user == user).collect()
        }

        pub fn user_trades(&self, user: i64) -> Vec<&MTrade> {
            self.trades.iter().filter(|t| t.user == user).collect()
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Comparable views of engine records and model records (timestamps left out).

#[derive(Clone, Debug, PartialEq, Eq)]
struct BalV {
    wallet: Dec,
    margin_used: Dec,
    order_reserved: Dec,
    available: Dec,
    unrealized_pnl: Dec,
    equity: Dec,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct PosV {
    id: i64,
    user: i64,
    symbol: String,
    side: PositionSide,
    qty: Dec,
    entry: Dec,
    leverage: u32,
    margin: Dec,
    liq: Dec,
    sl: Option<Dec>,
    tp: Option<Dec>,
    open_fee: Dec,
    upnl: Dec,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct OrderV {
    id: i64,
    user: i64,
    symbol: String,
    side: Side,
    kind: OrderType,
    qty: Dec,
    price: Option<Dec>,
    leverage: u32,
    sl: Option<Dec>,
    tp: Option<Dec>,
    status: OrderStatus,
    reserve: Dec,
    fill_price: Option<Dec>,
    fee: Option<Dec>,
    position_id: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct TradeV {
    id: i64,
    position_id: i64,
    user: i64,
    symbol: String,
    side: PositionSide,
    qty: Dec,
    entry: Dec,
    exit: Dec,
    open_fee: Dec,
    close_fee: Dec,
    pnl: Dec,
    reason: CloseReason,
}

fn bal_v(b: &Balance) -> BalV {
    BalV {
        wallet: b.wallet,
        margin_used: b.margin_used,
        order_reserved: b.order_reserved,
        available: b.available,
        unrealized_pnl: b.unrealized_pnl,
        equity: b.equity,
    }
}

fn pos_v(p: &Position) -> PosV {
    PosV {
        id: p.id,
        user: p.user_id,
        symbol: p.symbol.clone(),
        side: p.side,
        qty: p.qty,
        entry: p.entry_price,
        leverage: p.leverage,
        margin: p.margin,
        liq: p.liquidation_price,
        sl: p.sl,
        tp: p.tp,
        open_fee: p.open_fee,
        upnl: p.unrealized_pnl,
    }
}

fn order_v(o: &Order) -> OrderV {
    OrderV {
        id: o.id,
        user: o.user_id,
        symbol: o.symbol.clone(),
        side: o.side,
        kind: o.order_type,
        qty: o.qty,
        price: o.price,
        leverage: o.leverage,
        sl: o.sl,
        tp: o.tp,
        status: o.status,
        reserve: o.reserve,
        fill_price: o.fill_price,
        fee: o.fee,
        position_id: o.position_id,
    }
}

fn trade_v(t: &Trade) -> TradeV {
    TradeV {
        id: t.id,
        position_id: t.position_id,
        user: t.user_id,
        symbol: t.symbol.clone(),
        side: t.side,
        qty: t.qty,
        entry: t.entry_price,
        exit: t.exit_price,
        open_fee: t.open_fee,
        close_fee: t.close_fee,
        pnl: t.pnl,
        reason: t.reason,
    }
}

fn m_bal(m: &Model, u: i64) -> BalV {
    let l = m.ledger(u);
    let upnl = m.upnl(u);
    BalV {
        wallet: Dec(l.wallet),
        margin_used: Dec(l.margin),
        order_reserved: Dec(l.reserved),
        available: Dec(l.available()),
        unrealized_pnl: Dec(upnl),
        equity: Dec(l.wallet + upnl),
    }
}

fn m_pos(m: &Model, p: &MPos) -> PosV {
    PosV {
        id: p.id,
        user: p.user,
        symbol: m.specs[p.sym].name.clone(),
        side: p.side,
        qty: Dec(p.qty),
        entry: Dec(p.entry),
        leverage: p.lev,
        margin: Dec(p.margin),
        liq: Dec(p.liq),
        sl: p.sl.map(Dec),
        tp: p.tp.map(Dec),
        open_fee: Dec(p.open_fee),
        upnl: Dec(m.pos_upnl(p)),
    }
}

fn m_order(m: &Model, o: &MOrder) -> OrderV {
    OrderV {
        id: o.id,
        user: o.user,
        symbol: m.specs[o.sym].name.clone(),
        side: o.side,
        kind: o.kind,
        qty: Dec(o.qty),
        price: o.price.map(Dec),
        leverage: o.lev,
        sl: o.sl.map(Dec),
        tp: o.tp.map(Dec),
        status: o.status,
        reserve: Dec(o.reserve),
        fill_price: o.fill_price.map(Dec),
        fee: o.fee.map(Dec),
        position_id: o.position_id,
    }
}

fn m_trade(m: &Model, t: &MTrade) -> TradeV {
    TradeV {
        id: t.id,
        position_id: t.position_id,
        user: t.user,
        symbol: m.specs[t.sym].name.clone(),
        side: t.side,
        qty: Dec(t.qty),
        entry: Dec(t.entry),
        exit: Dec(t.exit),
        open_fee: Dec(t.open_fee),
        close_fee: Dec(t.close_fee),
        pnl: Dec(t.pnl),
        reason: t.reason,
    }
}

/// Everything one user can read, without timestamps.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Snapshot {
    balance: BalV,
    positions: Vec<PosV>,
    orders: Vec<OrderV>,
    trades: Vec<TradeV>,
}

fn snapshot(e: &Engine, u: i64) -> Snapshot {
    let mut trades: Vec<TradeV> = e
        .trades(u, 1, 1000)
        .expect("trades")
        .trades
        .iter()
        .map(trade_v)
        .collect();
    trades.sort_by_key(|t| t.id);
    Snapshot {
        balance: bal_v(&e.balance(u, DEMO).expect("balance")),
        positions: e
            .positions(u, Some(DEMO))
            .expect("positions")
            .iter()
            .map(pos_v)
            .collect(),
        orders: e
            .orders(u, Some(DEMO))
            .expect("orders")
            .iter()
            .map(order_v)
            .collect(),
        trades,
    }
}

/// The ledger invariants of API.md §1 on what the engine answers for one account.
fn assert_ledger_invariants(
    ctx: &str,
    b: &Balance,
    deposits: Dec,
    positions: &[Position],
    pending: &[Order],
    trades: &[Trade],
    taker_of: &dyn Fn(&str) -> i64,
) {
    let pnl: i64 = trades.iter().map(|t| t.pnl.raw()).sum();
    let open_fees: i64 = positions.iter().map(|p| p.open_fee.raw()).sum();
    assert_eq!(
        b.wallet.raw(),
        deposits.raw() + pnl - open_fees,
        "{ctx}: wallet != deposits + Σ pnl of closed trades − Σ open fees of open positions"
    );
    let margins: i64 = positions.iter().map(|p| p.margin.raw()).sum();
    assert_eq!(
        b.margin_used.raw(),
        margins,
        "{ctx}: margin_used != Σ margins"
    );
    let reserves: i64 = pending
        .iter()
        .map(|o| {
            let r = reference::reserve(
                o.price.expect("pending orders are limits").raw(),
                o.qty.raw(),
                o.leverage,
                taker_of(&o.symbol),
            );
            assert_eq!(
                o.reserve.raw(),
                r,
                "{ctx}: reserve of pending order {}",
                o.id
            );
            r
        })
        .sum();
    assert_eq!(
        b.order_reserved.raw(),
        reserves,
        "{ctx}: order_reserved != Σ reserves of pending orders"
    );
    assert_eq!(
        b.available.raw(),
        b.wallet.raw() - b.margin_used.raw() - b.order_reserved.raw(),
        "{ctx}: available != wallet − margin_used − order_reserved"
    );
    assert!(b.available.raw() >= 0, "{ctx}: available < 0: {b:?}");
    assert!(b.wallet.raw() >= 0, "{ctx}: wallet < 0: {b:?}");
    assert_eq!(
        b.equity.raw(),
        b.wallet.raw() + b.unrealized_pnl.raw(),
        "{ctx}: equity"
    );
    for t in trades {
        let taker = taker_of(&t.symbol);
        let (entry, exit, qty) = (t.entry_price.raw(), t.exit_price.raw(), t.qty.raw());
        let fee_formula = reference::fee(exit, qty, taker);
        let formula = reference::gross(t.side == PositionSide::Long, entry, exit, qty);
        let realized = t.pnl.raw() + t.open_fee.raw() + t.close_fee.raw();
        // as computed, unless the venue floor waived what the account could not pay: first the
        // close fee, then part of the loss
        let as_computed = t.close_fee.raw() == fee_formula && realized == formula;
        let fee = t.close_fee.raw();
        let waived = formula - fee_formula < 0
            && (0..=fee_formula).contains(&fee)
            && ((fee < fee_formula && realized == formula) || (fee == 0 && realized > formula));
        assert!(
            as_computed || waived,
            "{ctx}: trade {}: close fee {} (formula {fee_formula}), pnl + fees = {realized} \
             (gross {formula})",
            t.close_fee.raw(),
            t.id
        );
    }
}

/// Compares every read of every user with the model, and checks the ledger invariants.
fn assert_matches(e: &Engine, m: &Model, users: &[i64], ctx: &str) {
    for (i, s) in m.specs.iter().enumerate() {
        let t = e.ticker(&s.name).expect("ticker");
        assert_eq!(
            t.last,
            m.last[i].map(Dec),
            "{ctx}: last price of {}",
            s.name
        );
    }
    let taker_of = |s: &str| m.specs[m.sym(s).expect("known symbol")].taker;
    for &u in users {
        let b = e.balance(u, DEMO).expect("balance");
        assert_eq!(bal_v(&b), m_bal(m, u), "{ctx}: balance of user {u}");
        let positions = e.positions(u, Some(DEMO)).expect("positions");
        let want: Vec<PosV> = m.open_positions(u).iter().map(|p| m_pos(m, p)).collect();
        let got: Vec<PosV> = positions.iter().map(pos_v).collect();
        assert_eq!(got, want, "{ctx}: open positions of user {u}");
        let pending = e.orders(u, Some(DEMO)).expect("orders");
        let want: Vec<OrderV> = m.pending(u).iter().map(|o| m_order(m, o)).collect();
        let got: Vec<OrderV> = pending.iter().map(order_v).collect();
        assert_eq!(got, want, "{ctx}: pending orders of user {u}");
        let page = e.trades(u, 1, 1000).expect("trades");
        assert_eq!(
            page.total as usize,
            page.trades.len(),
            "{ctx}: trades total"
        );
        assert!(
            page.trades
                .windows(2)
                .all(|w| (w[0].closed_at, w[0].id) > (w[1].closed_at, w[1].id)),
            "{ctx}: trades are not newest first"
        );
        let mut got: Vec<TradeV> = page.trades.iter().map(trade_v).collect();
        got.sort_by_key(|t| t.id);
        let want: Vec<TradeV> = m.user_trades(u).iter().map(|t| m_trade(m, t)).collect();
        assert_eq!(got, want, "{ctx}: trades of user {u}");
        assert_ledger_invariants(
            &format!("{ctx}, user {u}"),
            &b,
            Dec(m.ledger(u).deposits),
            &positions,
            &pending,
            &page.trades,
            &taker_of,
        );
    }
}

/// Both answered the same way: both Ok, or both refused with the same code.
fn same_outcome<T: std::fmt::Debug, U: std::fmt::Debug>(
    ctx: &str,
    got: &Result<T, Error>,
    want: &Result<U, &'static str>,
) -> bool {
    match (got, want) {
        (Ok(_), Ok(_)) => true,
        (Err(e), Err(c)) => {
            assert_eq!(e.code(), *c, "{ctx}: refused with another code ({e})");
            false
        }
        (Ok(v), Err(c)) => panic!("{ctx}: engine accepted ({v:?}), reference refuses with {c}"),
        (Err(e), Ok(v)) => panic!(
            "{ctx}: engine refused ({}: {e}), reference accepts ({v:?})",
            e.code()
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Differential property test.

const DIFF_SYMBOLS: [&str; 3] = [BTC, ETH, "DOGEUSDT"];

/// ETHUSDT gets other rates in the differential test: odd fees, and no maintenance margin, so a
/// liquidation loses the whole margin plus the close fee and the venue floor comes into play.
fn eth_spec() -> SymbolSpec {
    SymbolSpec {
        symbol: ETH.into(),
        tick_size: d("0.01"),
        lot_size: d("0.001"),
        min_qty: d("0.001"),
        max_leverage: 100,
        maker_fee_bps: Bps(125),
        taker_fee_bps: Bps(750),
        mmr_bps: Bps(0),
    }
}

fn diff_specs() -> Vec<Spec> {
    let mut eth = Spec::default_named(ETH);
    eth.maker = 125;
    eth.taker = 750;
    eth.mmr = 0;
    vec![Spec::default_named(BTC), eth]
}

#[derive(Clone, Debug)]
enum DOp {
    Deposit {
        user: usize,
        raw: i64,
    },
    /// kind: 0 market, 1 limit, 2 market with a price, 3 limit without one, 4 market sized to
    /// everything available.
    Order {
        user: usize,
        sym: usize,
        buy: bool,
        kind: u8,
        qty: i64,
        price: i64,
        lev: Option<u32>,
        sl: Option<i64>,
        tp: Option<i64>,
    },
    /// pick: (own?, which) among known ids, else `random`.
    Cancel {
        user: usize,
        pick: Option<(bool, Index)>,
        random: i64,
    },
    Close {
        user: usize,
        pick: Option<(bool, Index)>,
        random: i64,
    },
    Ticks(Vec<(usize, i64)>),
}

const CENT: i64 = 1_000_000;

fn dop() -> impl Strategy<Value = DOp> {
    let user = 0usize..3;
    let deposit = (
        user.clone(),
        prop_oneof![1 => Just(0i64), 1 => Just(-CENT), 14 => 1i64..=100_000_000_000],
    )
        .prop_map(|(user, raw)| DOp::Deposit { user, raw });
    let sym = prop_oneof![10 => Just(0usize), 10 => Just(1usize), 1 => Just(2usize)];
    let kind = prop_oneof![8 => Just(0u8), 10 => Just(1u8), 1 => Just(2u8), 1 => Just(3u8), 2 => Just(4u8)];
    let qty = prop_oneof![
        24 => (1i64..=2000).prop_map(|l| l * 100_000),
        4 => (1i64..=5).prop_map(|l| l * 100_000),
        1 => Just(0i64),
        1 => Just(-100_000i64),
        1 => (1i64..=2000).prop_map(|l| l * 100_000 + 50_000),
    ];
    let price = prop_oneof![
        30 => (9000i64..=11000).prop_map(|c| c * CENT),
        1 => (9000i64..=11000).prop_map(|c| c * CENT + CENT / 2),
        1 => Just(0i64),
    ];
    let lev = prop_oneof![
        3 => Just(None),
        16 => (1u32..=20).prop_map(Some),
        1 => Just(Some(0u32)),
        1 => Just(Some(101u32)),
    ];
    let level = || {
        prop::option::weighted(
            0.3,
            prop_oneof![
                30 => (8500i64..=11500).prop_map(|c| c * CENT),
                1 => (8500i64..=11500).prop_map(|c| c * CENT + 300_000),
                1 => Just(0i64),
            ],
        )
    };
    let order = (
        user.clone(),
        sym,
        any::<bool>(),
        kind,
        qty,
        price,
        lev,
        level(),
        level(),
    )
        .prop_map(
            |(user, sym, buy, kind, qty, price, lev, sl, tp)| DOp::Order {
                user,
                sym,
                buy,
                kind,
                qty,
                price,
                lev,
                sl,
                tp,
            },
        );
    let pick = || prop::option::weighted(0.85, (prop::bool::weighted(0.7), any::<Index>()));
    let cancel = (user.clone(), pick(), 1i64..=80).prop_map(|(user, pick, random)| DOp::Cancel {
        user,
        pick,
        random,
    });
    let close = (user, pick(), 1i64..=80).prop_map(|(user, pick, random)| DOp::Close {
        user,
        pick,
        random,
    });
    let one_tick = (
        prop_oneof![40 => Just(0usize), 40 => Just(1usize), 1 => Just(2usize)],
        prop_oneof![
            60 => (8800i64..=11200).prop_map(|c| c * CENT),
            3 => (880_000i64..=1_120_000).prop_map(|c| c * (CENT / 100)),
            1 => Just(0i64),
        ],
    );
    let ticks = prop::collection::vec(one_tick, 1..=3).prop_map(DOp::Ticks);
    prop_oneof![
        3 => deposit,
        10 => order,
        3 => cancel,
        3 => close,
        6 => ticks,
    ]
}

/// The largest quantity (in lots) whose margin and taker fee at `last` fit in `available`.
fn all_in_qty(available: i64, last: i64, lev: u32, spec: &Spec) -> i64 {
    if available <= 0 {
        return spec.lot;
    }
    let per_lot =
        reference::margin(last, spec.lot, lev) + reference::fee(last, spec.lot, spec.taker);
    let mut lots = (available / per_lot.max(1)).max(1) + 2;
    while lots > 1
        && reference::margin(last, lots * spec.lot, lev)
            + reference::fee(last, lots * spec.lot, spec.taker)
            > available
    {
        lots -= 1;
    }
    lots * spec.lot
}

fn pick_id(ids: &[i64], pick: &Option<(bool, Index)>, own: &[i64], random: i64) -> i64 {
    match pick {
        Some((true, ix)) if !own.is_empty() => *ix.get(own),
        Some((_, ix)) if !ids.is_empty() => *ix.get(ids),
        _ => random,
    }
}

async fn apply_diff_op(e: &Engine, m: &mut Model, users: &[i64], op: &DOp, ctx: &str) {
    let n = users.len();
    match op {
        DOp::Deposit { user, raw } => {
            let u = users[user % n];
            let got = e.deposit(u, Dec(*raw), DEMO).await;
            let want = m.deposit(u, *raw);
            if same_outcome(ctx, &got, &want) {
                assert_eq!(bal_v(&got.unwrap()), m_bal(m, u), "{ctx}: deposit's answer");
            }
        }
        DOp::Order {
            user,
            sym,
            buy,
            kind,
            qty,
            price,
            lev,
            sl,
            tp,
        } => {
            let u = users[user % n];
            let side = if *buy { Side::Buy } else { Side::Sell };
            let symbol = DIFF_SYMBOLS[*sym].to_string();
            let mut req = Req {
                symbol: symbol.clone(),
                side,
                kind: if matches!(kind, 1 | 3) {
                    OrderType::Limit
                } else {
                    OrderType::Market
                },
                qty: *qty,
                price: if matches!(kind, 1 | 2) {
                    Some(*price)
                } else {
                    None
                },
                lev: *lev,
                sl: *sl,
                tp: *tp,
            };
            if *kind == 4 {
                // all in: a market order as large as the available balance allows
                let l = lev.filter(|l| (1..=20).contains(l)).unwrap_or(1);
                let si = sym % 2;
                let last = m.last[si].unwrap_or(100 * 100_000_000);
                req = Req {
                    symbol: DIFF_SYMBOLS[si].into(),
                    lev: Some(l),
                    sl: None,
                    tp: None,
                    qty: all_in_qty(m.ledger(u).available(), last, l, &m.specs[si]),
                    ..req
                };
            }
            let o = NewOrder {
                symbol: req.symbol.clone(),
                side,
                order_type: req.kind,
                qty: Dec(req.qty),
                price: req.price.map(Dec),
                leverage: req.lev,
                sl: req.sl.map(Dec),
                tp: req.tp.map(Dec),
                account_type: None,
                client_order_id: None,
            };
            let got = e.place_order(u, o).await;
            let want = m.place(u, &req);
            if same_outcome(ctx, &got, &want) {
                let got = order_v(&got.unwrap());
                assert_eq!(got, m_order(m, &want.unwrap()), "{ctx}: the placed order");
                assert_eq!(
                    order_v(&e.order(u, got.id).expect("order by id")),
                    got,
                    "{ctx}: order read back by id"
                );
            }
        }
        DOp::Cancel { user, pick, random } => {
            let u = users[user % n];
            let all: Vec<i64> = m.orders.keys().copied().collect();
            let mut own: Vec<i64> = m.pending(u).iter().map(|o| o.id).collect();
            if own.is_empty() {
                own = m
                    .orders
                    .values()
                    .filter(|o| o.user == u)
                    .map(|o| o.id)
                    .collect();
            }
            let id = pick_id(&all, pick, &own, *random);
            let ctx = format!("{ctx} (cancel order {id} of user {u})");
            let got = e.cancel_order(u, id).await;
            let want = m.cancel(u, id);
            if same_outcome(&ctx, &got, &want) {
                assert_eq!(
                    order_v(&got.unwrap()),
                    m_order(m, &want.unwrap()),
                    "{ctx}: the cancelled order"
                );
            }
        }
        DOp::Close { user, pick, random } => {
            let u = users[user % n];
            let mut all: Vec<i64> = m.positions.keys().copied().collect();
            all.extend(m.trades.iter().map(|t| t.position_id));
            let mut own: Vec<i64> = m.open_positions(u).iter().map(|p| p.id).collect();
            if own.is_empty() {
                own = m.user_trades(u).iter().map(|t| t.position_id).collect();
            }
            let id = pick_id(&all, pick, &own, *random);
            let ctx = format!("{ctx} (close position {id} of user {u})");
            let got = e.close_position(u, id).await;
            let want = m.close_request(u, id);
            if same_outcome(&ctx, &got, &want) {
                assert_eq!(
                    trade_v(&got.unwrap()),
                    m_trade(m, &want.unwrap()),
                    "{ctx}: the trade"
                );
            }
        }
        DOp::Ticks(ticks) => {
            let batch: Vec<(String, i64)> = ticks
                .iter()
                .map(|&(s, p)| (DIFF_SYMBOLS[s].to_string(), p))
                .collect();
            let got = e
                .ingest_ticks(
                    batch
                        .iter()
                        .map(|(s, p)| Tick {
                            symbol: s.clone(),
                            price: Dec(*p),
                            ts: None,
                        })
                        .collect(),
                )
                .await;
            let want = m.ticks(&batch);
            if same_outcome(ctx, &got, &want) {
                let got = got.unwrap();
                let want = want.unwrap();
                assert_eq!(got.accepted, batch.len(), "{ctx}: accepted");
                assert_eq!(
                    Counts {
                        fills: got.fills,
                        liquidations: got.liquidations,
                        stop_losses: got.stop_losses,
                        take_profits: got.take_profits,
                    },
                    want,
                    "{ctx}: what the ticks did"
                );
            }
        }
    }
}

/// Runs one generated sequence on a fresh engine and on the model; returns how many closes the
/// venue floor capped.
fn run_differential(n_users: usize, ops: &[DOp]) -> usize {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = open(&dir);
        e.upsert_symbol(eth_spec()).await.expect("upsert ETHUSDT");
        let mut users = Vec::new();
        for i in 0..n_users {
            users.push(user_with(&e, &format!("u{i}"), "0").await);
        }
        let mut m = Model::new(diff_specs(), &users);
        assert_matches(&e, &m, &users, "fresh engine");
        for (i, op) in ops.iter().enumerate() {
            let ctx = format!("op #{i} {op:?}");
            apply_diff_op(&e, &mut m, &users, op, &ctx).await;
            assert_matches(&e, &m, &users, &ctx);
        }
        // balances above were read from the cache the sequencer writes through: reopened, they
        // come from the rows the writer saved
        let e = reopen(e, &dir);
        assert_matches(&e, &m, &users, "after reopen");
        e.shutdown();
        m.capped
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 48,
        failure_persistence: None,
        max_shrink_iters: 400,
        ..ProptestConfig::default()
    })]

    #[test]
    fn engine_matches_the_reference_model(
        n_users in 2usize..=3,
        funding in prop::collection::vec(0i64..=100_000_000_000, 3),
        ops in prop::collection::vec(dop(), 36..=44),
    ) {
        let mut all: Vec<DOp> = funding
            .into_iter()
            .enumerate()
            .map(|(user, raw)| DOp::Deposit { user, raw })
            .collect();
        all.extend(ops);
        run_differential(n_users, &all);
    }
}

/// A fixed sequence through the differential harness that is known to reach the venue floor, so
/// the floor branch of the model is exercised on every run, not only when proptest happens to.
#[test]
fn differential_harness_reaches_the_venue_floor() {
    let all_in = |user, buy, lev| DOp::Order {
        user,
        sym: 1,
        buy,
        kind: 4,
        qty: 0,
        price: 0,
        lev: Some(lev),
        sl: None,
        tp: None,
    };
    let ops = vec![
        DOp::Deposit {
            user: 0,
            raw: 100_000_000_000,
        },
        DOp::Deposit {
            user: 1,
            raw: 55_555_555_555,
        },
        DOp::Ticks(vec![(1, 100 * 100 * CENT)]),
        all_in(0, true, 10),
        all_in(1, false, 20),
        // long x10 from 100: liquidation at 90; short x20: at 105
        DOp::Ticks(vec![(1, 8900 * CENT)]),
        DOp::Ticks(vec![(1, 10600 * CENT)]),
    ];
    let capped = run_differential(2, &ops);
    assert_eq!(
        capped, 2,
        "both liquidations lose more than the account holds"
    );
}

// ---------------------------------------------------------------------------------------------
// The venue floor, with the numbers written out.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn venue_floor_caps_a_loss_beyond_what_the_account_holds() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(&dir);
    e.upsert_symbol(eth_spec()).await.unwrap();
    // 1 @ 100 x10: margin 10, taker fee 7.5 bps = 0.075 → nothing left available
    let u = user_with(&e, "floor", "10.075").await;
    tick(&e, ETH, "100").await;
    let o = e
        .place_order(u, order(ETH, Side::Buy, "1", None, 10, None, None))
        .await
        .unwrap();
    assert_eq!(o.fee, Some(d("0.075")));
    let p = &e.positions(u, Some(DEMO)).unwrap()[0];
    assert_eq!(
        p.liquidation_price,
        d("90"),
        "no maintenance margin: 100 × (1 − 1/10)"
    );
    assert_eq!(e.balance(u, DEMO).unwrap().available, Dec::ZERO);
    let out = tick(&e, ETH, "89").await;
    assert_eq!(out.liquidations, 1);
    let t = &e.trades(u, 1, 10).unwrap().trades[0];
    assert_eq!(t.reason, CloseReason::Liquidation);
    assert_eq!(t.exit_price, d("90"));
    // gross −10 and a close fee of 0.0675 would take the wallet to −0.0675: the account holds
    // only the margin, which pays the loss, so the fee is waived and the trade shows what it paid
    assert_eq!(t.close_fee, Dec::ZERO);
    assert_eq!(t.pnl, d("-10.075"));
    let b = e.balance(u, DEMO).unwrap();
    assert_eq!(
        (b.wallet, b.margin_used, b.order_reserved, b.available),
        (Dec::ZERO, Dec::ZERO, Dec::ZERO, Dec::ZERO)
    );
}

/// A feed's price may lie off the tick grid (XRPUSDT's default tick is 0.01). Rounding the
/// liquidation price of such an entry to the tick could put it on the winning side of the entry,
/// and the next tick at the same price would then "liquidate" the position at a profit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_off_grid_entry_is_never_liquidated_at_a_profit() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(&dir);
    let xrp = "XRPUSDT";
    let u = user_with(&e, "xrp", "100").await;
    tick(&e, xrp, "0.5237").await;
    e.place_order(u, order(xrp, Side::Sell, "10000", None, 100, None, None))
        .await
        .unwrap();
    let p = &e.positions(u, Some(DEMO)).unwrap()[0];
    assert_eq!(p.entry_price, d("0.5237"));
    // 0.5237 × (1 + 1/100 − 0.005) = 0.5263185; to the tick (down) it would be 0.52, a profit
    assert_eq!(p.liquidation_price, d("0.5263185"));
    assert_eq!(tick(&e, xrp, "0.5237").await.liquidations, 0);
    let wallet = e.balance(u, DEMO).unwrap().wallet;
    assert_eq!(tick(&e, xrp, "0.5264").await.liquidations, 1);
    let t = &e.trades(u, 1, 10).unwrap().trades[0];
    assert_eq!(t.exit_price, d("0.5263185"));
    // gross −26.185, close fee 0.5263185 × 10000 × 5.5 bps = 2.89475175, open fee 2.88035
    assert_eq!(t.close_fee, d("2.89475175"));
    assert_eq!(t.pnl, d("-31.96010175"));
    assert_eq!(
        e.balance(u, DEMO).unwrap().wallet,
        d("-29.07975175").checked_add(wallet).unwrap()
    );
}

/// Under `--require-license`, the demo gives its users a license, so it still shows trading;
/// a second start redeems nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_licenses_its_users_when_licenses_are_required() {
    let dir = tempfile::tempdir().unwrap();
    let e = open_licensed(&dir);
    let users = litetrade::demo::ensure_demo_users(&e).await.unwrap();
    let ids: Vec<i64> = users.iter().map(|u| u.0).collect();
    tick(&e, BTC, "30000").await;
    let buy = || order(BTC, Side::Buy, "0.01", None, 5, None, None);
    assert_eq!(code(e.place_order(ids[0], buy()).await), "license_required");
    assert_eq!(
        litetrade::demo::license_demo_users(&e, &ids).await.unwrap(),
        6
    );
    e.place_order(ids[0], buy()).await.unwrap();
    assert_eq!(e.license(ids[5]).unwrap().license_type, "demo");
    assert_eq!(
        litetrade::demo::license_demo_users(&e, &ids).await.unwrap(),
        0
    );
    // without the requirement nothing is redeemed
    let dir = tempfile::tempdir().unwrap();
    let e = open(&dir);
    let users = litetrade::demo::ensure_demo_users(&e).await.unwrap();
    let ids: Vec<i64> = users.iter().map(|u| u.0).collect();
    assert_eq!(
        litetrade::demo::license_demo_users(&e, &ids).await.unwrap(),
        0
    );
    assert_eq!(code(e.license(ids[0])), "not_found");
}

/// `demo --feed` keeps a fine feed's prices: the symbol's tick is made fine enough for them,
/// and still divides the old tick, so prices already on its grid stay on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_fits_a_symbols_tick_to_its_feed() {
    use litetrade::feed::FeedTick;
    let dir = tempfile::tempdir().unwrap();
    let e = open(&dir);
    let path = |prices: &[&str]| {
        let ticks = prices
            .iter()
            .map(|p| FeedTick { price: d(p), ts: 0 })
            .collect();
        vec![(BTC.to_string(), ticks)]
    };
    let fit = |prices: &[&str]| {
        let paths = path(prices);
        let e = e.clone();
        async move { litetrade::demo::fit_ticks(&e, &paths).await.unwrap() }
    };
    // on the grid already: unchanged
    assert!(fit(&["30000.01", "29999.5"]).await.is_empty());
    assert_eq!(e.symbol(BTC).unwrap().tick_size, d("0.01"));
    // BTC priced in ETH: to the 8th digit
    assert_eq!(
        fit(&["0.00162008", "0.0016"]).await,
        [(BTC.to_string(), d("0.00000001"))]
    );
    // a tick of 0.025 and prices in cents: their common step, 0.005
    respec_btc(&e, |s| s.tick_size = d("0.025")).await;
    assert_eq!(
        fit(&["100.01", "100.5"]).await,
        [(BTC.to_string(), d("0.005"))]
    );
    assert_eq!(e.symbol(BTC).unwrap().tick_size, d("0.005"));
}

/// Changes BTCUSDT's spec as the admin's `PUT /symbols` would.
async fn respec_btc(e: &Engine, change: impl FnOnce(&mut SymbolSpec)) {
    let mut spec = e.symbol(BTC).unwrap();
    change(&mut spec);
    e.upsert_symbol(spec).await.unwrap();
}

/// A position that a tick opens is checked by that same tick (API.md, Ticks): a resting buy
/// filled at its limit stops out at once when the tick is below its stop loss, and is
/// liquidated at once when the tick is at or below its liquidation price.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_position_a_tick_opens_is_checked_by_that_tick() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(&dir);
    tick(&e, BTC, "101").await;
    let stopped = user_with(&e, "stopped", "1000").await;
    let liquidated = user_with(&e, "liquidated", "1000").await;
    // 1 @ 99 x10, sl 98: liquidation at 99 × (1 − 0.1 + 0.005) = 89.595, up to 89.60
    let o_sl = e
        .place_order(
            stopped,
            order(BTC, Side::Buy, "1", Some("99"), 10, Some("98"), None),
        )
        .await
        .unwrap();
    // 1 @ 100 x50: liquidation at 100 × (1 − 0.02 + 0.005) = 98.5
    let o_liq = e
        .place_order(
            liquidated,
            order(BTC, Side::Buy, "1", Some("100"), 50, None, None),
        )
        .await
        .unwrap();
    assert_eq!(
        (o_sl.status, o_liq.status),
        (OrderStatus::Pending, OrderStatus::Pending)
    );

    let out = tick(&e, BTC, "97").await;
    assert_eq!(
        (
            out.fills,
            out.liquidations,
            out.stop_losses,
            out.take_profits
        ),
        (2, 1, 1, 0),
        "{out:?}"
    );
    let e = reopen(e, &dir);
    // stop loss: in at 99 (maker 2 bps: 0.0198), out at the tick, 97 (taker 5.5 bps: 0.05335)
    let t = &e.trades(stopped, 1, 10).unwrap().trades;
    assert_eq!(t.len(), 1);
    assert_eq!(
        (t[0].reason, t[0].entry_price, t[0].exit_price),
        (CloseReason::StopLoss, d("99"), d("97"))
    );
    assert_eq!(
        (t[0].open_fee, t[0].close_fee, t[0].pnl),
        (d("0.0198"), d("0.05335"), d("-2.07315"))
    );
    // liquidation: in at 100 (0.02), out at the liquidation price 98.5 (0.054175)
    let t = &e.trades(liquidated, 1, 10).unwrap().trades;
    assert_eq!(t.len(), 1);
    assert_eq!(
        (t[0].reason, t[0].entry_price, t[0].exit_price),
        (CloseReason::Liquidation, d("100"), d("98.5"))
    );
    assert_eq!(
        (t[0].open_fee, t[0].close_fee, t[0].pnl),
        (d("0.02"), d("0.054175"), d("-1.574175"))
    );
    for (u, wallet) in [(stopped, "997.92685"), (liquidated, "998.425825")] {
        assert!(e.positions(u, None).unwrap().is_empty());
        let b = e.balance(u, DEMO).unwrap();
        assert_eq!(
            (b.wallet, b.available, b.margin_used, b.order_reserved),
            (d(wallet), d(wallet), Dec::ZERO, Dec::ZERO)
        );
    }
}

/// A resting order's reserve pays for its fill at the fees of its placement. When the admin
/// raises the fees in between and the owner cannot pay the rest, the tick cancels the order
/// instead of driving `available` below zero; an owner who can pay is filled by the same tick.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resting_order_its_owner_can_no_longer_pay_for_is_cancelled_not_filled() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(&dir);
    tick(&e, BTC, "100").await;
    // 1 @ 99 x10 reserves 9.9 + 99 × 5.5 bps = 9.95445
    let short = user_with(&e, "short", "10").await;
    let rich = user_with(&e, "rich", "100").await;
    let buy = || order(BTC, Side::Buy, "1", Some("99"), 10, None, None);
    let o_short = e.place_order(short, buy()).await.unwrap();
    let o_rich = e.place_order(rich, buy()).await.unwrap();
    assert_eq!(e.balance(short, DEMO).unwrap().order_reserved, d("9.95445"));
    respec_btc(&e, |spec| {
        spec.maker_fee_bps = Bps(100_000); // 10 %: the fill now costs 9.9 margin + 9.9 fee
        spec.taker_fee_bps = Bps(100_000);
    })
    .await;
    assert_eq!(e.orders(short, None).unwrap().len(), 1, "warms the cache");

    let out = tick(&e, BTC, "98").await;
    assert_eq!((out.fills, out.cancelled), (1, 1), "{out:?}");
    // the tick's cancel reaches the warm caches, then the file
    assert!(e.orders(short, None).unwrap().is_empty());
    assert_eq!(e.balance(short, DEMO).unwrap().order_reserved, Dec::ZERO);
    let e = reopen(e, &dir);
    let cancelled = e.order(short, o_short.id).unwrap();
    assert_eq!(cancelled.status, OrderStatus::Cancelled);
    assert_eq!(cancelled.fill_price, None);
    let b = e.balance(short, DEMO).unwrap();
    assert_eq!(
        (b.wallet, b.order_reserved, b.available, b.margin_used),
        (d("10"), Dec::ZERO, d("10"), Dec::ZERO),
        "the reserve is released and nothing is charged"
    );
    assert!(e.positions(short, None).unwrap().is_empty());

    let filled = e.order(rich, o_rich.id).unwrap();
    assert_eq!(filled.status, OrderStatus::Filled);
    assert_eq!(
        (filled.fill_price, filled.fee),
        (Some(d("99")), Some(d("9.9")))
    );
    let b = e.balance(rich, DEMO).unwrap();
    assert_eq!((b.wallet, b.available), (d("90.1"), d("80.2")));
}

/// Lowering `max_leverage` below a resting order's leverage cancels it at its fill: with the
/// new maintenance margin (9 %, above 1/100) an x100 position would be born past its
/// liquidation price, and the same tick would liquidate it at a profit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resting_order_above_a_lowered_max_leverage_is_cancelled_not_filled() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(&dir);
    tick(&e, BTC, "100").await;
    let u = user_with(&e, "lev", "1000").await;
    let o = e
        .place_order(u, order(BTC, Side::Buy, "1", Some("99"), 100, None, None))
        .await
        .unwrap();
    respec_btc(&e, |spec| {
        spec.max_leverage = 10;
        spec.mmr_bps = Bps(90_000);
    })
    .await;
    let out = tick(&e, BTC, "98").await;
    assert_eq!(
        (out.fills, out.cancelled, out.liquidations),
        (0, 1, 0),
        "{out:?}"
    );
    assert_eq!(e.order(u, o.id).unwrap().status, OrderStatus::Cancelled);
    let b = e.balance(u, DEMO).unwrap();
    assert_eq!(
        (b.wallet, b.order_reserved, b.available),
        (d("1000"), Dec::ZERO, d("1000"))
    );
    assert!(e.positions(u, None).unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------------
// 2. Recovery.

/// Two open positions with sl/tp and three resting limits, for one user.
async fn recovery_setup(e: &Engine) -> i64 {
    let u = user_with(e, "rec", "10000").await;
    tick(e, BTC, "100").await;
    let place = |o| e.place_order(u, o);
    let o1 = place(order(
        BTC,
        Side::Buy,
        "1",
        None,
        10,
        Some("97"),
        Some("104"),
    ))
    .await
    .unwrap();
    let o2 = place(order(
        BTC,
        Side::Sell,
        "1",
        None,
        5,
        Some("103"),
        Some("96"),
    ))
    .await
    .unwrap();
    let o3 = place(order(
        BTC,
        Side::Buy,
        "2",
        Some("95"),
        5,
        Some("93"),
        Some("99"),
    ))
    .await
    .unwrap();
    let o4 = place(order(
        BTC,
        Side::Sell,
        "1",
        Some("105"),
        2,
        Some("110"),
        Some("101"),
    ))
    .await
    .unwrap();
    let o5 = place(order(BTC, Side::Buy, "1", Some("90"), 1, None, None))
        .await
        .unwrap();
    let st = |o: &Order| (o.id, o.status);
    assert_eq!(
        [st(&o1), st(&o2), st(&o3), st(&o4), st(&o5)],
        [
            (1, OrderStatus::Filled),
            (2, OrderStatus::Filled),
            (3, OrderStatus::Pending),
            (4, OrderStatus::Pending),
            (5, OrderStatus::Pending),
        ]
    );
    assert_eq!(o3.reserve, d("38.1045"), "95 × 2 / 5 + 95 × 2 × 5.5 bps");
    u
}

/// 96.5: long SL · 95: buy limit fills, short TP · 92.9: the new long's SL · 105: sell limit
/// fills · 100.5: its TP.
const RECOVERY_TICKS: [&str; 5] = ["96.5", "95", "92.9", "105", "100.5"];

fn full_state(e: &Engine, u: i64) -> (Snapshot, Vec<OrderV>, Option<Dec>) {
    let all_orders = (1..=5)
        .map(|id| order_v(&e.order(u, id).expect("order")))
        .collect();
    (snapshot(e, u), all_orders, e.ticker(BTC).unwrap().last)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopening_changes_nothing_and_ticks_then_fill_and_trigger_as_before() {
    // A: never restarted
    let dir_a = tempfile::tempdir().unwrap();
    let a = open(&dir_a);
    let ua = recovery_setup(&a).await;
    let mut outcomes_a = Vec::new();
    for p in RECOVERY_TICKS {
        outcomes_a.push(tick(&a, BTC, p).await);
    }
    // B: restarted after the setup and again in the middle of the ticks
    let dir_b = tempfile::tempdir().unwrap();
    let mut b = open(&dir_b);
    let ub = recovery_setup(&b).await;
    assert_eq!(ua, ub);
    let mut outcomes_b = Vec::new();
    for (i, p) in RECOVERY_TICKS.iter().enumerate() {
        if i == 0 || i == 2 {
            let before = full_state(&b, ub);
            b = reopen(b, &dir_b);
            assert_eq!(
                full_state(&b, ub),
                before,
                "reopen before tick #{i} changed state"
            );
        }
        outcomes_b.push(tick(&b, BTC, p).await);
    }
    assert_eq!(outcomes_b, outcomes_a);
    let (snap_a, orders_a, last_a) = full_state(&a, ua);
    assert_eq!(full_state(&b, ub), (snap_a.clone(), orders_a, last_a));

    // and what "as before" is, written out
    let c = |fills, liquidations, stop_losses, take_profits| TickOutcome {
        accepted: 1,
        fills,
        liquidations,
        stop_losses,
        take_profits,
        cancelled: 0,
    };
    assert_eq!(
        outcomes_a,
        vec![
            c(0, 0, 1, 0),
            c(1, 0, 0, 1),
            c(0, 0, 1, 0),
            c(1, 0, 0, 0),
            c(0, 0, 0, 1)
        ]
    );
    let t = |id: i64,
             pos: i64,
             side,
             qty: &str,
             entry: &str,
             exit: &str,
             of: &str,
             cf: &str,
             pnl: &str,
             reason| TradeV {
        id,
        position_id: pos,
        user: ua,
        symbol: BTC.into(),
        side,
        qty: d(qty),
        entry: d(entry),
        exit: d(exit),
        open_fee: d(of),
        close_fee: d(cf),
        pnl: d(pnl),
        reason,
    };
    use PositionSide::{Long, Short};
    assert_eq!(
        snap_a.trades,
        vec![
            t(
                1,
                1,
                Long,
                "1",
                "100",
                "96.5",
                "0.055",
                "0.053075",
                "-3.608075",
                CloseReason::StopLoss
            ),
            t(
                2,
                2,
                Short,
                "1",
                "100",
                "96",
                "0.055",
                "0.0528",
                "3.8922",
                CloseReason::TakeProfit
            ),
            t(
                3,
                6,
                Long,
                "2",
                "95",
                "92.9",
                "0.038",
                "0.10219",
                "-4.34019",
                CloseReason::StopLoss
            ),
            t(
                4,
                7,
                Short,
                "1",
                "105",
                "101",
                "0.021",
                "0.05555",
                "3.92345",
                CloseReason::TakeProfit
            ),
        ]
    );
    assert!(snap_a.positions.is_empty());
    assert_eq!(
        snap_a.orders.iter().map(|o| o.id).collect::<Vec<_>>(),
        vec![5]
    );
    assert_eq!(
        snap_a.balance,
        BalV {
            wallet: d("9999.867385"),
            margin_used: Dec::ZERO,
            order_reserved: d("90.0495"),
            available: d("9909.817885"),
            unrealized_pnl: Dec::ZERO,
            equity: d("9999.867385"),
        }
    );
    // ids go on where they stopped: orders 1-5 and the limit fills' positions 6 and 7 (the
    // market orders 1 and 2 share their positions' ids), and so does the next market order
    let next = b
        .place_order(ub, order(BTC, Side::Buy, "0.01", None, 1, None, None))
        .await
        .unwrap();
    assert_eq!((next.id, next.position_id), (8, Some(8)));
    a.shutdown();
    b.shutdown();
}

// ---------------------------------------------------------------------------------------------
// 6. Rejected input changes nothing.

/// Everything two users can read, as text (Debug shows every field, timestamps included).
fn everything(e: &Engine, users: &[i64]) -> String {
    let mut s = String::new();
    for &u in users {
        s += &format!(
            "{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n",
            e.balance(u, DEMO).unwrap(),
            e.balance(u, AccountType::Real).unwrap(),
            e.positions(u, None).unwrap(),
            e.orders(u, None).unwrap(),
            e.trades(u, 1, 1000).unwrap(),
            e.user_config(u).unwrap(),
        );
    }
    for sym in [BTC, ETH, "TESTUSDT"] {
        s += &format!("{:?}\n", e.ticker(sym).unwrap());
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_input_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(&dir);
    e.upsert_symbol(SymbolSpec {
        symbol: "TESTUSDT".into(),
        tick_size: d("0.5"),
        lot_size: d("0.001"),
        min_qty: d("0.01"),
        max_leverage: 50,
        maker_fee_bps: Bps(200),
        taker_fee_bps: Bps(550),
        mmr_bps: Bps(5000),
    })
    .await
    .unwrap();
    let u = user_with(&e, "u", "1000").await;
    let v = user_with(&e, "v", "1000").await;
    tick(&e, BTC, "100").await;
    tick(&e, "TESTUSDT", "100").await;
    // state worth protecting: open positions, a resting order, a trade, a cancelled order
    let open_pos = e
        .place_order(
            u,
            order(BTC, Side::Buy, "1", None, 10, Some("90"), Some("110")),
        )
        .await
        .unwrap();
    let resting = e
        .place_order(u, order(BTC, Side::Buy, "1", Some("90"), 5, None, None))
        .await
        .unwrap();
    let closed = e
        .place_order(u, order(BTC, Side::Sell, "0.5", None, 2, None, None))
        .await
        .unwrap();
    e.close_position(u, closed.position_id.unwrap())
        .await
        .unwrap();
    let cancelled = e
        .place_order(u, order(BTC, Side::Sell, "1", Some("120"), 5, None, None))
        .await
        .unwrap();
    e.cancel_order(u, cancelled.id).await.unwrap();
    let theirs = e
        .place_order(v, order(BTC, Side::Buy, "1", Some("80"), 5, None, None))
        .await
        .unwrap();
    let their_pos = e
        .place_order(v, order(BTC, Side::Sell, "1", None, 5, None, None))
        .await
        .unwrap();
    let last_id = their_pos.id;
    let users = [u, v];
    let before_all = everything(&e, &users);

    let o = |sym: &str,
             side,
             qty: &str,
             price: Option<&str>,
             lev,
             sl: Option<&str>,
             tp: Option<&str>| { order(sym, side, qty, price, lev, sl, tp) };
    let with = |mut n: NewOrder, f: &dyn Fn(&mut NewOrder)| {
        f(&mut n);
        n
    };
    use Side::{Buy, Sell};
    let bad: Vec<(&str, i64, NewOrder, &str)> = vec![
        (
            "qty 0",
            u,
            o(BTC, Buy, "0", None, 1, None, None),
            "invalid_request",
        ),
        (
            "negative qty",
            u,
            o(BTC, Buy, "-1", None, 1, None, None),
            "invalid_request",
        ),
        (
            "qty not a multiple of the lot",
            u,
            o(BTC, Buy, "0.0015", None, 1, None, None),
            "invalid_request",
        ),
        (
            "qty below min_qty",
            u,
            o("TESTUSDT", Buy, "0.005", None, 1, None, None),
            "invalid_request",
        ),
        (
            "leverage 0",
            u,
            o(BTC, Buy, "0.01", None, 0, None, None),
            "invalid_request",
        ),
        (
            "leverage 101",
            u,
            o(BTC, Buy, "0.01", None, 101, None, None),
            "invalid_request",
        ),
        (
            "leverage above the symbol's max",
            u,
            o("TESTUSDT", Buy, "0.01", None, 51, None, None),
            "invalid_request",
        ),
        (
            "limit price not on the tick",
            u,
            o(BTC, Buy, "0.01", Some("99.995"), 1, None, None),
            "invalid_request",
        ),
        (
            "limit price not on a 0.5 tick",
            u,
            o("TESTUSDT", Buy, "0.01", Some("99.25"), 1, None, None),
            "invalid_request",
        ),
        (
            "limit price 0",
            u,
            o(BTC, Buy, "0.01", Some("0"), 1, None, None),
            "invalid_request",
        ),
        (
            "negative limit price",
            u,
            o(BTC, Buy, "0.01", Some("-100"), 1, None, None),
            "invalid_request",
        ),
        (
            "limit without a price",
            u,
            with(o(BTC, Buy, "0.01", None, 1, None, None), &|n| {
                n.order_type = OrderType::Limit
            }),
            "invalid_request",
        ),
        (
            "market with a price",
            u,
            with(o(BTC, Buy, "0.01", None, 1, None, None), &|n| {
                n.price = Some(d("100"))
            }),
            "invalid_request",
        ),
        (
            "long sl above the last price",
            u,
            o(BTC, Buy, "0.01", None, 1, Some("101"), None),
            "invalid_request",
        ),
        (
            "long sl at the last price",
            u,
            o(BTC, Buy, "0.01", None, 1, Some("100"), None),
            "invalid_request",
        ),
        (
            "long tp below the last price",
            u,
            o(BTC, Buy, "0.01", None, 1, None, Some("99")),
            "invalid_request",
        ),
        (
            "long limit tp below the limit",
            u,
            o(BTC, Buy, "0.01", Some("95"), 1, None, Some("94")),
            "invalid_request",
        ),
        (
            "short sl below the last price",
            u,
            o(BTC, Sell, "0.01", None, 1, Some("99"), None),
            "invalid_request",
        ),
        (
            "short tp above the last price",
            u,
            o(BTC, Sell, "0.01", None, 1, None, Some("101")),
            "invalid_request",
        ),
        (
            "short limit sl below the limit",
            u,
            o(BTC, Sell, "0.01", Some("105"), 1, Some("104"), None),
            "invalid_request",
        ),
        (
            "short limit tp above the limit",
            u,
            o(BTC, Sell, "0.01", Some("105"), 1, None, Some("106")),
            "invalid_request",
        ),
        (
            "sl not on the tick",
            u,
            o(BTC, Buy, "0.01", None, 1, Some("95.005"), None),
            "invalid_request",
        ),
        (
            "tp 0",
            u,
            o(BTC, Sell, "0.01", None, 1, None, Some("0")),
            "invalid_request",
        ),
        (
            "unknown symbol",
            u,
            o("DOGEUSDT", Buy, "1", None, 1, None, None),
            "unknown_symbol",
        ),
        (
            "no price yet",
            u,
            o(ETH, Buy, "1", None, 1, None, None),
            "no_price",
        ),
        (
            "insufficient balance (market)",
            u,
            o(BTC, Buy, "100", None, 1, None, None),
            "insufficient_balance",
        ),
        (
            "insufficient balance (resting limit)",
            u,
            o(BTC, Buy, "20", Some("90"), 1, None, None),
            "insufficient_balance",
        ),
        (
            "insufficient balance (marketable limit)",
            u,
            o(BTC, Buy, "10", Some("110"), 1, None, None),
            "insufficient_balance",
        ),
        (
            "insufficient balance (empty real account)",
            u,
            with(o(BTC, Buy, "0.01", None, 1, None, None), &|n| {
                n.account_type = Some(AccountType::Real)
            }),
            "insufficient_balance",
        ),
        (
            "notional too large",
            u,
            o(BTC, Sell, "1000000", Some("1000000000"), 1, None, None),
            "invalid_request",
        ),
        (
            "empty client_order_id",
            u,
            with(o(BTC, Buy, "0.01", None, 1, None, None), &|n| {
                n.client_order_id = Some(String::new())
            }),
            "invalid_request",
        ),
        (
            "client_order_id of 65 characters",
            u,
            with(o(BTC, Buy, "0.01", None, 1, None, None), &|n| {
                n.client_order_id = Some("x".repeat(65))
            }),
            "invalid_request",
        ),
        (
            "unknown user",
            999,
            o(BTC, Buy, "0.01", None, 1, None, None),
            "not_found",
        ),
    ];
    for (name, user, new_order, want) in bad {
        let before = everything(&e, &users);
        let got = e.place_order(user, new_order).await;
        assert_eq!(code(got), want, "{name}");
        assert_eq!(
            everything(&e, &users),
            before,
            "{name}: a refused order changed something"
        );
    }

    // other refused commands: the right code, and nothing changed
    let closed_pid = closed.position_id.unwrap();
    macro_rules! refused {
        ($name:expr, $call:expr, $want:expr) => {{
            let before = everything(&e, &users);
            let got = $call.await.map(|v| format!("{v:?}"));
            assert_eq!(code(got), $want, "{}", $name);
            assert_eq!(
                everything(&e, &users),
                before,
                "{}: a refusal changed something",
                $name
            );
        }};
    }
    refused!(
        "cancel an unknown order",
        e.cancel_order(u, 999),
        "not_found"
    );
    refused!(
        "cancel another user's order",
        e.cancel_order(u, theirs.id),
        "not_found"
    );
    refused!(
        "cancel a filled order",
        e.cancel_order(u, open_pos.id),
        "conflict"
    );
    refused!(
        "cancel a cancelled order",
        e.cancel_order(u, cancelled.id),
        "conflict"
    );
    refused!(
        "close an unknown position",
        e.close_position(u, 999),
        "not_found"
    );
    refused!(
        "close another user's position",
        e.close_position(u, their_pos.position_id.unwrap()),
        "not_found"
    );
    refused!(
        "close a closed position",
        e.close_position(u, closed_pid),
        "conflict"
    );
    refused!(
        "close a position another user closed",
        e.close_position(v, closed_pid),
        "not_found"
    );
    refused!(
        "deposit 0",
        e.deposit(u, Dec::ZERO, DEMO),
        "invalid_request"
    );
    refused!(
        "negative deposit",
        e.deposit(u, d("-5"), DEMO),
        "invalid_request"
    );
    refused!(
        "deposit above the maximum",
        e.deposit(u, d("1000000000.00000001"), DEMO),
        "invalid_request"
    );
    refused!(
        "deposit to an unknown user",
        e.deposit(999, d("5"), DEMO),
        "not_found"
    );
    let bad_ticks: Vec<(&str, Vec<Tick>, &str)> = vec![
        (
            "tick price 0",
            vec![Tick {
                symbol: BTC.into(),
                price: Dec::ZERO,
                ts: None,
            }],
            "invalid_request",
        ),
        (
            "negative tick price",
            vec![Tick {
                symbol: BTC.into(),
                price: d("-1"),
                ts: None,
            }],
            "invalid_request",
        ),
        (
            "negative tick time",
            vec![Tick {
                symbol: BTC.into(),
                price: d("99"),
                ts: Some(-1),
            }],
            "invalid_request",
        ),
        (
            "tick of an unknown symbol",
            vec![Tick {
                symbol: "DOGEUSDT".into(),
                price: d("1"),
                ts: None,
            }],
            "unknown_symbol",
        ),
        (
            // the good first tick would fill u's resting buy at 90 and liquidate v's short
            "a batch with one bad tick",
            vec![
                Tick {
                    symbol: BTC.into(),
                    price: d("80"),
                    ts: None,
                },
                Tick {
                    symbol: BTC.into(),
                    price: d("120"),
                    ts: None,
                },
                Tick {
                    symbol: BTC.into(),
                    price: Dec::ZERO,
                    ts: None,
                },
            ],
            "invalid_request",
        ),
    ];
    for (name, ticks, want) in bad_ticks {
        let before = everything(&e, &users);
        assert_eq!(code(e.ingest_ticks(ticks).await), want, "{name}");
        assert_eq!(
            everything(&e, &users),
            before,
            "{name}: a refused tick batch changed something"
        );
    }
    assert_eq!(
        e.orders(u, Some(DEMO))
            .unwrap()
            .iter()
            .map(|o| o.id)
            .collect::<Vec<_>>(),
        vec![resting.id]
    );
    // the reads above go through caches that no refusal invalidates; the sequencer's memory
    // and the file must be unchanged too. Memory: a refusal reports the available amount the
    // sequencer holds, which must be the one the reads show.
    for who in users {
        let shown = e.balance(who, DEMO).unwrap().available;
        match e
            .place_order(who, order(BTC, Buy, "100", None, 1, None, None))
            .await
        {
            Err(Error::InsufficientBalance { available, .. }) => assert_eq!(available, shown),
            other => panic!("expected insufficient_balance, got {other:?}"),
        }
    }
    // the file: reopened, every read shows what it showed before the first refusal
    let e = reopen(e, &dir);
    assert_eq!(
        everything(&e, &users),
        before_all,
        "the refusals changed the database"
    );

    // the balance check is exact: margin + fee == available passes, one unit less does not
    let exact = user_with(&e, "exact", "100.055").await;
    let short_by_one = user_with(&e, "short", "100.05499999").await;
    let before = everything(&e, &[short_by_one]);
    let err = e
        .place_order(short_by_one, order(BTC, Buy, "1", None, 1, None, None))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        Error::InsufficientBalance {
            needed: d("100.055"),
            available: d("100.05499999")
        }
    );
    assert_eq!(everything(&e, &[short_by_one]), before);
    let ok = e
        .place_order(exact, order(BTC, Buy, "1", None, 1, None, None))
        .await
        .unwrap();
    assert_eq!(e.balance(exact, DEMO).unwrap().available, Dec::ZERO);
    // refusals consumed no ids
    assert_eq!(ok.id, last_id + 1, "a refused order used up an order id");

    // a resting limit needs its reserve, exactly: 1 @ 99 x10 reserves 9.9 + 0.05445
    let rest = || order(BTC, Buy, "1", Some("99"), 10, None, None);
    let rest_short = user_with(&e, "rest-short", "9.95444999").await;
    let before = everything(&e, &[rest_short]);
    assert_eq!(
        code(e.place_order(rest_short, rest()).await),
        "insufficient_balance"
    );
    assert_eq!(everything(&e, &[rest_short]), before);
    let rest_exact = user_with(&e, "rest-exact", "9.95445").await;
    let placed = e.place_order(rest_exact, rest()).await.unwrap();
    assert_eq!(placed.status, OrderStatus::Pending);
    let b = e.balance(rest_exact, DEMO).unwrap();
    assert_eq!((b.order_reserved, b.available), (d("9.95445"), Dec::ZERO));
    // a marketable limit costs what its fill at the last price costs (100 + 0.055), not a
    // reserve at its limit (110 + 0.0605)
    let marketable = user_with(&e, "marketable", "100.055").await;
    let filled = e
        .place_order(marketable, order(BTC, Buy, "1", Some("110"), 1, None, None))
        .await
        .unwrap();
    assert_eq!(
        (filled.status, filled.fill_price),
        (OrderStatus::Filled, Some(d("100")))
    );
    assert_eq!(e.balance(marketable, DEMO).unwrap().available, Dec::ZERO);
}

// ---------------------------------------------------------------------------------------------
// 7. Idempotency.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_client_order_id_returns_the_first_order_also_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(&dir);
    let u = user_with(&e, "u", "1000").await;
    let v = user_with(&e, "v", "1000").await;
    tick(&e, BTC, "100").await;
    let mut mkt = order(BTC, Side::Buy, "1", None, 10, None, None);
    mkt.client_order_id = Some("retry-1".into());
    let first = e.place_order(u, mkt.clone()).await.unwrap();
    assert_eq!(first.status, OrderStatus::Filled);
    let after_first = snapshot(&e, u);
    let second = e.place_order_once(u, mkt.clone()).await.unwrap();
    assert_eq!(second.order, first, "a retry answers the first order");
    assert!(second.replayed);
    assert_eq!(snapshot(&e, u), after_first, "a retry changed something");
    assert_eq!(e.positions(u, None).unwrap().len(), 1);
    // another request under the same key still answers the first order
    let mut other = order(BTC, Side::Sell, "2", Some("120"), 2, None, None);
    other.client_order_id = Some("retry-1".into());
    assert_eq!(e.place_order(u, other).await.unwrap(), first);
    assert_eq!(snapshot(&e, u), after_first);
    // keys are per user
    let theirs = e.place_order_once(v, mkt.clone()).await.unwrap();
    assert!(!theirs.replayed);
    let theirs = theirs.order;
    assert!(
        theirs.id > first.id,
        "a new order, not the first: {theirs:?}"
    );
    assert_eq!(theirs.user_id, v);

    // concurrent retries of a resting order: one order, one reserve
    let mut lim = order(BTC, Side::Buy, "1", Some("90"), 5, None, None);
    lim.client_order_id = Some("retry-2".into());
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let (e, lim) = (e.clone(), lim.clone());
        set.spawn(async move { e.place_order(u, lim).await.unwrap() });
    }
    let answers: Vec<Order> = set.join_all().await;
    let pending = e.orders(u, None).unwrap();
    assert_eq!(pending.len(), 1);
    assert!(answers.iter().all(|o| o.id == pending[0].id), "{answers:?}");
    assert_eq!(e.balance(u, DEMO).unwrap().order_reserved, d("18.0495"));

    let before = (snapshot(&e, u), snapshot(&e, v));
    let e = reopen(e, &dir);
    assert_eq!((snapshot(&e, u), snapshot(&e, v)), before);
    let after = e.place_order_once(u, mkt.clone()).await.unwrap();
    assert_eq!((after.order, after.replayed), (first, true));
    assert_eq!(e.place_order(u, lim).await.unwrap().id, pending[0].id);
    assert_eq!(
        (snapshot(&e, u), snapshot(&e, v)),
        before,
        "a retry after reopen changed something"
    );
    // a new key is a new order, with the next id
    mkt.client_order_id = Some("retry-3".into());
    let fresh = e.place_order(u, mkt).await.unwrap();
    assert_eq!(fresh.id, pending[0].id + 1);
    assert_eq!(e.positions(u, None).unwrap().len(), 2);
    e.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_close_writes_answer_stopped_reads_still_answer_and_the_file_is_free() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(&dir);
    let u = user_with(&e, "u", "1000").await;
    tick(&e, BTC, "100").await;
    let before = snapshot(&e, u);
    e.close().await;
    e.close().await; // idempotent
    let refused = e
        .place_order(u, order(BTC, Side::Buy, "1", None, 10, None, None))
        .await
        .unwrap_err();
    assert!(matches!(refused, Error::Stopped(_)), "{refused:?}");
    assert_eq!((refused.code(), refused.status()), ("unavailable", 503));
    assert!(matches!(
        e.deposit(u, d("1"), DEMO).await,
        Err(Error::Stopped(_))
    ));
    assert_eq!(snapshot(&e, u), before, "reads answer after close");
    // the lock went with the close: another engine opens the file while this handle lives
    let again = open(&dir);
    assert_eq!(snapshot(&again, u), before);
    again.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_of_ones_own_cannot_leave_a_transaction_open() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(&dir);
    let count = |e: &Engine| {
        e.read("count_users", |c| {
            c.query_row("SELECT count(*) FROM users", [], |r| r.get::<_, i64>(0))
        })
        .unwrap()
    };
    assert_eq!(count(&e), 0);
    let left = e.read("left_open", |c| {
        c.execute_batch("BEGIN; SELECT count(*) FROM users;")
    });
    assert!(
        matches!(&left, Err(Error::Internal(m)) if m.contains("left a transaction open")),
        "{left:?}"
    );
    // the connection went back to the pool without the snapshot: the next write is seen
    e.create_user("bob", None).await.unwrap();
    for _ in 0..8 {
        assert_eq!(count(&e), 1);
    }
    e.close().await;
}

// ---------------------------------------------------------------------------------------------
// 3. Concurrency.

#[derive(Default)]
struct WorkerLog {
    user: i64,
    deposits: Dec,
    placed: Vec<Order>,
    cancelled: Vec<Order>,
    closed: Vec<Trade>,
}

async fn trading_worker(e: Engine, user: i64, seed: u64) -> WorkerLog {
    let mut rng = Rng(seed);
    let mut log = WorkerLog {
        user,
        ..Default::default()
    };
    log.deposits = d("5000");
    e.deposit(user, log.deposits, DEMO).await.expect("deposit");
    for _ in 0..50 {
        let sym = if rng.below(2) == 0 { BTC } else { ETH };
        match rng.below(10) {
            0..=5 => {
                let last = e.ticker(sym).unwrap().last.expect("streamed").raw();
                let buy = rng.below(2) == 0;
                let side = if buy { Side::Buy } else { Side::Sell };
                let qty = Dec(rng.range(1, 300) * 100_000);
                let mut o = if rng.below(2) == 0 {
                    NewOrder::market(sym, side, qty)
                } else {
                    NewOrder::limit(sym, side, qty, Dec(last + rng.range(-200, 200) * CENT))
                };
                o.leverage = Some(rng.range(1, 20) as u32);
                if rng.below(3) == 0 {
                    let dist = rng.range(50, 500) * CENT;
                    let (sl, tp) = if buy {
                        (last - dist, last + dist)
                    } else {
                        (last + dist, last - dist)
                    };
                    (o.sl, o.tp) = (Some(Dec(sl)), Some(Dec(tp)));
                }
                match e.place_order(user, o).await {
                    Ok(placed) => {
                        assert_eq!(placed.user_id, user);
                        assert_ne!(placed.status, OrderStatus::Cancelled);
                        log.placed.push(placed);
                    }
                    // sl/tp on the wrong side of a price that moved, or not enough money
                    Err(err) => assert!(
                        matches!(err.code(), "invalid_request" | "insufficient_balance"),
                        "user {user}: unexpected refusal {err:?}"
                    ),
                }
            }
            6..=7 => {
                let pending = e.orders(user, Some(DEMO)).unwrap();
                let id = if !pending.is_empty() && rng.below(4) != 0 {
                    pending[rng.below(pending.len())].id
                } else if !log.placed.is_empty() {
                    log.placed[rng.below(log.placed.len())].id
                } else {
                    continue;
                };
                match e.cancel_order(user, id).await {
                    Ok(o) => {
                        assert_eq!((o.id, o.status), (id, OrderStatus::Cancelled));
                        assert_eq!((o.fill_price, o.position_id), (None, None));
                        log.cancelled.push(o);
                    }
                    // filled by a tick, or cancelled before
                    Err(err) => {
                        assert_eq!(err.code(), "conflict", "user {user}: cancel {id}: {err:?}")
                    }
                }
            }
            _ => {
                let open_now = e.positions(user, Some(DEMO)).unwrap();
                let id = if !open_now.is_empty() && rng.below(4) != 0 {
                    open_now[rng.below(open_now.len())].id
                } else if let Some(pid) = log
                    .placed
                    .iter()
                    .filter_map(|o| o.position_id)
                    .nth(rng.below(log.placed.len().max(1)))
                {
                    pid
                } else {
                    continue;
                };
                match e.close_position(user, id).await {
                    Ok(t) => {
                        assert_eq!(
                            (t.position_id, t.user_id, t.reason),
                            (id, user, CloseReason::Manual)
                        );
                        log.closed.push(t);
                    }
                    // closed by a trigger, or before
                    Err(err) if err.code() == "conflict" => {}
                    // own positions are never "not found" (see
                    // closing_a_position_a_trigger_just_closed_is_a_conflict)
                    Err(err) => panic!("user {user}: close {id}: {err:?}"),
                }
            }
        }
    }
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_traders_and_a_tick_stream_keep_every_invariant() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(&dir);
    let mut users = Vec::new();
    for i in 0..8 {
        users.push(user_with(&e, &format!("trader{i}"), "0").await);
    }
    e.ingest_ticks(vec![
        Tick {
            symbol: BTC.into(),
            price: d("100"),
            ts: None,
        },
        Tick {
            symbol: ETH.into(),
            price: d("100"),
            ts: None,
        },
    ])
    .await
    .unwrap();
    let streamer = {
        let e = e.clone();
        tokio::spawn(async move {
            let mut rng = Rng(7);
            let mut px = [10_000i64, 10_000];
            let mut total = TickOutcome::default();
            for _ in 0..150 {
                let mut batch = Vec::new();
                for _ in 0..1 + rng.below(3) {
                    let s = rng.below(2);
                    px[s] = (px[s] + rng.range(-60, 60)).clamp(9000, 11000);
                    batch.push(Tick {
                        symbol: [BTC, ETH][s].into(),
                        price: Dec(px[s] * CENT),
                        ts: None,
                    });
                }
                let out = e.ingest_ticks(batch).await.expect("ticks");
                total.fills += out.fills;
                total.liquidations += out.liquidations;
                total.stop_losses += out.stop_losses;
                total.take_profits += out.take_profits;
            }
            total
        })
    };
    let workers: Vec<_> = users
        .iter()
        .enumerate()
        .map(|(i, &u)| tokio::spawn(trading_worker(e.clone(), u, 1000 + i as u64)))
        .collect();
    let mut logs = Vec::new();
    for w in workers {
        logs.push(w.await.expect("worker"));
    }
    let streamed = streamer.await.expect("streamer");

    let taker = |_: &str| 550i64;
    let mut all_order_ids = Vec::new();
    let mut all_position_ids = HashSet::new();
    let mut all_trade_ids = HashSet::new();
    let mut closes = 0;
    for log in &logs {
        let u = log.user;
        let ctx = format!("user {u}");
        let b = e.balance(u, DEMO).unwrap();
        let positions = e.positions(u, Some(DEMO)).unwrap();
        let pending = e.orders(u, Some(DEMO)).unwrap();
        let page = e.trades(u, 1, 1000).unwrap();
        assert_eq!(page.total as usize, page.trades.len());
        assert_ledger_invariants(
            &ctx,
            &b,
            log.deposits,
            &positions,
            &pending,
            &page.trades,
            &taker,
        );

        // no order both filled and cancelled; every cancel answered once
        let cancelled: BTreeSet<i64> = log.cancelled.iter().map(|o| o.id).collect();
        assert_eq!(
            cancelled.len(),
            log.cancelled.len(),
            "{ctx}: an order was cancelled twice"
        );
        let mut filled_positions = BTreeSet::new();
        for placed in &log.placed {
            all_order_ids.push(placed.id);
            let now = e.order(u, placed.id).unwrap();
            match now.status {
                OrderStatus::Cancelled => {
                    assert!(
                        cancelled.contains(&now.id),
                        "{ctx}: order {} cancelled by nobody",
                        now.id
                    );
                    assert_eq!(
                        (now.fill_price, now.fee, now.position_id),
                        (None, None, None)
                    );
                }
                OrderStatus::Filled => {
                    assert!(
                        !cancelled.contains(&now.id),
                        "{ctx}: order {} filled and cancelled",
                        now.id
                    );
                    let pid = now.position_id.expect("a fill opens a position");
                    if now.order_type == OrderType::Market && now.client_order_id.is_none() {
                        assert_eq!(
                            pid, now.id,
                            "{ctx}: a market order shares its position's id"
                        );
                    }
                    assert!(
                        filled_positions.insert(pid),
                        "{ctx}: two orders opened position {pid}"
                    );
                }
                OrderStatus::Pending => {
                    assert!(
                        !cancelled.contains(&now.id),
                        "{ctx}: cancelled order {} still pending",
                        now.id
                    );
                    assert!(pending.iter().any(|o| o.id == now.id));
                }
            }
        }
        assert_eq!(
            pending.iter().map(|o| o.id).collect::<BTreeSet<_>>(),
            log.placed
                .iter()
                .map(|o| o.id)
                .filter(|id| pending.iter().any(|p| p.id == *id))
                .collect::<BTreeSet<_>>(),
            "{ctx}: a pending order nobody placed"
        );
        // no position closed twice, every position from exactly one fill
        let closed: Vec<i64> = page.trades.iter().map(|t| t.position_id).collect();
        let closed_set: BTreeSet<i64> = closed.iter().copied().collect();
        assert_eq!(
            closed_set.len(),
            closed.len(),
            "{ctx}: a position closed twice"
        );
        let open_set: BTreeSet<i64> = positions.iter().map(|p| p.id).collect();
        assert!(
            open_set.is_disjoint(&closed_set),
            "{ctx}: a position both open and closed"
        );
        let mut known: BTreeSet<i64> = open_set.clone();
        known.extend(&closed_set);
        assert_eq!(known, filled_positions, "{ctx}: positions != fills");
        for t in &log.closed {
            assert!(
                page.trades.iter().any(|x| x == t),
                "{ctx}: the trade a close answered is not in the history: {t:?}"
            );
        }
        closes += log.closed.len();
        for pid in known {
            assert!(all_position_ids.insert(pid), "position id {pid} used twice");
        }
        for t in &page.trades {
            assert!(all_trade_ids.insert(t.id), "trade id {} used twice", t.id);
        }
    }
    all_order_ids.sort();
    let placed = all_order_ids.len();
    all_order_ids.dedup();
    assert_eq!(
        all_order_ids.len(),
        placed,
        "an order id was handed out twice"
    );
    // orders and positions share one sequence; a market order and its position share an id
    let mut ids: BTreeSet<i64> = all_order_ids.iter().copied().collect();
    ids.extend(&all_position_ids);
    assert_eq!(
        ids.iter().copied().collect::<Vec<_>>(),
        (1..=ids.len() as i64).collect::<Vec<_>>(),
        "the ids of orders and positions are not 1..=n"
    );
    assert!(
        all_order_ids.len() > 100,
        "too few orders were accepted to test anything"
    );
    assert!(
        closes > 0 && streamed.fills > 0,
        "no manual close or no fill: {streamed:?}"
    );

    // every one of those writes is durable
    let before: Vec<Snapshot> = users.iter().map(|&u| snapshot(&e, u)).collect();
    let e = reopen(e, &dir);
    let after: Vec<Snapshot> = users.iter().map(|&u| snapshot(&e, u)).collect();
    assert_eq!(after, before, "state changed across reopen");
    e.shutdown();
}

// ---------------------------------------------------------------------------------------------
// 4. Read-after-write through the caches.

fn warm(e: &Engine, u: i64) {
    let _ = e.balance(u, DEMO).unwrap();
    let _ = e.positions(u, Some(DEMO)).unwrap();
    let _ = e.orders(u, Some(DEMO)).unwrap();
    let _ = e.ticker(BTC).unwrap();
    let _ = e.user_config(u).unwrap();
    let _ = e.bot_enabled(u).unwrap();
    let _ = e.license(u);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_read_after_a_write_sees_it_through_the_caches() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(&dir);
    let u = user_with(&e, "raw", "0").await;
    let mut m = Model::new(
        vec![Spec::default_named(BTC), Spec::default_named(ETH)],
        &[u],
    );
    // a reader hammering the same keys, so loads are in flight while writes invalidate
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (e, stop) = (e.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut rounds = 0u64;
            while !stop.load(Ordering::Relaxed) {
                warm(&e, u);
                rounds += 1;
            }
            rounds
        })
    };
    let mut license: Option<License> = None;
    for i in 0..30i64 {
        let ctx = |step: &str| format!("iteration {i}, {step}");
        let p = 100 + i % 5;
        let px = |units: i64| units * 100_000_000;

        warm(&e, u);
        let amount = 100 * 100_000_000 + i * 12_345;
        let b = e.deposit(u, Dec(amount), DEMO).await.unwrap();
        m.deposit(u, amount).unwrap();
        assert_eq!(bal_v(&b), m_bal(&m, u));
        assert_matches(&e, &m, &[u], &ctx("deposit"));

        warm(&e, u);
        let ts = 1_700_000_000_000 + i;
        e.ingest_ticks(vec![Tick {
            symbol: BTC.into(),
            price: Dec(px(p)),
            ts: Some(ts),
        }])
        .await
        .unwrap();
        m.ticks(&[(BTC.into(), px(p))]).unwrap();
        let t = e.ticker(BTC).unwrap();
        assert_eq!(
            (t.last, t.ts),
            (Some(Dec(px(p))), Some(ts)),
            "{}",
            ctx("ticker")
        );
        assert_matches(&e, &m, &[u], &ctx("tick"));

        let mut req = Req {
            symbol: BTC.into(),
            side: Side::Buy,
            kind: OrderType::Market,
            qty: 1_000_000,
            price: None,
            lev: Some(10),
            sl: None,
            tp: None,
        };
        warm(&e, u);
        let mkt = e
            .place_order(u, order(BTC, Side::Buy, "0.01", None, 10, None, None))
            .await
            .unwrap();
        let want = m.place(u, &req).unwrap();
        assert_eq!(order_v(&mkt), m_order(&m, &want));
        assert_matches(&e, &m, &[u], &ctx("market order"));

        req = Req {
            kind: OrderType::Limit,
            qty: 2_000_000,
            price: Some(px(p - 1)),
            lev: Some(5),
            ..req
        };
        warm(&e, u);
        let buy = e
            .place_order(
                u,
                NewOrder {
                    leverage: Some(5),
                    ..NewOrder::limit(BTC, Side::Buy, d("0.02"), Dec(px(p - 1)))
                },
            )
            .await
            .unwrap();
        let want = m.place(u, &req).unwrap();
        assert_eq!(order_v(&buy), m_order(&m, &want));
        assert_matches(&e, &m, &[u], &ctx("resting buy"));

        req = Req {
            side: Side::Sell,
            qty: 1_000_000,
            price: Some(px(p + 50)),
            ..req
        };
        warm(&e, u);
        let sell = e
            .place_order(
                u,
                NewOrder {
                    leverage: Some(5),
                    ..NewOrder::limit(BTC, Side::Sell, d("0.01"), Dec(px(p + 50)))
                },
            )
            .await
            .unwrap();
        let want = m.place(u, &req).unwrap();
        assert_eq!(order_v(&sell), m_order(&m, &want));
        assert_matches(&e, &m, &[u], &ctx("resting sell"));

        warm(&e, u);
        let out = tick(&e, BTC, &(p - 1).to_string()).await;
        assert_eq!(out.fills, 1);
        m.ticks(&[(BTC.into(), px(p - 1))]).unwrap();
        assert_matches(&e, &m, &[u], &ctx("tick that fills"));
        assert_eq!(e.order(u, buy.id).unwrap().status, OrderStatus::Filled);

        warm(&e, u);
        let c = e.cancel_order(u, sell.id).await.unwrap();
        let want = m.cancel(u, sell.id).unwrap();
        assert_eq!(order_v(&c), m_order(&m, &want));
        assert_matches(&e, &m, &[u], &ctx("cancel"));
        assert_eq!(e.order(u, sell.id).unwrap().status, OrderStatus::Cancelled);

        warm(&e, u);
        let tr = e.close_position(u, mkt.position_id.unwrap()).await.unwrap();
        let want = m.close_request(u, mkt.position_id.unwrap()).unwrap();
        assert_eq!(trade_v(&tr), m_trade(&m, &want));
        assert_matches(&e, &m, &[u], &ctx("close"));

        warm(&e, u);
        let lev = (i % 20 + 1) as u32;
        let patch = ConfigPatch {
            strategy: Some(Some(format!("s{i}"))),
            leverage: Some(Some(lev)),
            risk_pct: Some(Some(Dec::from_int(i % 50 + 1))),
            ..ConfigPatch::default()
        };
        let cfg = e.set_config(u, patch).await.unwrap();
        assert_eq!(cfg.leverage, Some(lev));
        assert_eq!(e.user_config(u).unwrap(), cfg, "{}", ctx("config"));

        warm(&e, u);
        let on = i % 2 == 0;
        assert_eq!(e.set_bot_enabled(u, on).await.unwrap(), on);
        assert_eq!(e.bot_enabled(u).unwrap(), on, "{}", ctx("bot"));

        warm(&e, u);
        e.create_promo(NewPromo {
            code: format!("RAW{i}"),
            license_type: "pro".into(),
            days: 1,
            max_uses: 1,
            valid_until: None,
        })
        .await
        .unwrap();
        let l = e.redeem_promo(u, &format!("RAW{i}")).await.unwrap();
        if let Some(prev) = &license {
            assert_eq!(l.end_date, prev.end_date + DAY_MS, "{}", ctx("extension"));
        }
        assert_eq!(e.license(u).unwrap(), l, "{}", ctx("license"));
        license = Some(l);

        warm(&e, u);
        let masked = e
            .set_credentials(u, "binance", &format!("key-{i}-abcdefgh"), "secret")
            .await
            .unwrap();
        assert_eq!(
            e.credentials(u, "binance").unwrap(),
            masked,
            "{}",
            ctx("credentials")
        );
    }
    stop.store(true, Ordering::Relaxed);
    assert!(reader.join().unwrap() > 0);
    // the reads above were served by the caches, not around them
    let stats = e.cache_stats();
    for name in ["balance", "position", "order", "market_data", "user_config"] {
        let s = &stats[name];
        assert!(s.hits > 0 && s.invalidations > 0, "{name}: {s:?}");
    }
    e.shutdown();
}

// ---------------------------------------------------------------------------------------------
// 5. Concurrent promo redemption.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promo_code_is_never_used_more_than_max_uses_or_twice_by_one_user() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(&dir);
    let mut users = Vec::new();
    for i in 0..42 {
        users.push(user_with(&e, &format!("p{i}"), "0").await);
    }
    let promo = |code: &str, license_type: &str, days, max_uses, valid_until| NewPromo {
        code: code.into(),
        license_type: license_type.into(),
        days,
        max_uses,
        valid_until,
    };
    e.create_promo(promo("FIVE", "pro", 30, 5, None))
        .await
        .unwrap();
    let mut set = tokio::task::JoinSet::new();
    for &u in &users[..40] {
        let e = e.clone();
        set.spawn(async move { (u, e.redeem_promo(u, "FIVE").await) });
    }
    let results = set.join_all().await;
    let winners: Vec<i64> = results
        .iter()
        .filter(|(_, r)| r.is_ok())
        .map(|(u, _)| *u)
        .collect();
    assert_eq!(winners.len(), 5, "{results:?}");
    for (u, r) in &results {
        match r {
            Ok(l) => {
                assert_eq!((l.license_type.as_str(), l.active), ("pro", true));
                assert_eq!(&e.license(*u).unwrap(), l);
            }
            Err(err) => {
                assert_eq!(err.code(), "promo_invalid", "user {u}: {err:?}");
                assert_eq!(
                    code(e.license(*u)),
                    "not_found",
                    "user {u} got a license anyway"
                );
            }
        }
    }

    // one user, sixteen times at once: one redemption, and the refused ones extend nothing
    e.create_promo(promo("TWICE", "pro", 7, 100, None))
        .await
        .unwrap();
    let x = users[40];
    let t0 = litetrade::domain::model::now_ms();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let e = e.clone();
        set.spawn(async move { e.redeem_promo(x, "TWICE").await });
    }
    let mut codes: Vec<&str> = set
        .join_all()
        .await
        .into_iter()
        .map(|r| r.map_or_else(|e| e.code(), |_| "ok"))
        .collect();
    let t1 = litetrade::domain::model::now_ms();
    codes.sort();
    let mut want = vec!["promo_already_redeemed"; 15];
    want.insert(0, "ok");
    assert_eq!(codes, want);
    assert_eq!(
        code(e.redeem_promo(x, "TWICE").await),
        "promo_already_redeemed"
    );
    let one_week = e.license(x).unwrap();
    assert!(
        (t0 + 7 * DAY_MS..=t1 + 7 * DAY_MS).contains(&one_week.end_date),
        "seven days, once: {one_week:?}"
    );

    // a second code of the same type extends from the end
    e.create_promo(promo("TEN", "pro", 10, 10, None))
        .await
        .unwrap();
    e.create_promo(promo("FIVEDAYS", "pro", 5, 10, None))
        .await
        .unwrap();
    let l10 = e.redeem_promo(x, "TEN").await.unwrap();
    assert_eq!(l10.end_date, one_week.end_date + 10 * DAY_MS);
    let l5 = e.redeem_promo(x, "FIVEDAYS").await.unwrap();
    assert_eq!(l5.end_date, one_week.end_date + 15 * DAY_MS);
    assert_eq!(e.license(x).unwrap(), l5);
    // a fresh user starts now
    let y = users[41];
    let t0 = litetrade::domain::model::now_ms();
    let ly = e.redeem_promo(y, "TEN").await.unwrap();
    let t1 = litetrade::domain::model::now_ms();
    assert!(
        (t0 + 10 * DAY_MS..=t1 + 10 * DAY_MS).contains(&ly.end_date),
        "{ly:?}"
    );

    // refused codes
    e.create_promo(promo("OLD", "pro", 5, 10, Some(1)))
        .await
        .unwrap();
    assert_eq!(code(e.redeem_promo(y, "OLD").await), "promo_invalid");
    assert_eq!(code(e.redeem_promo(y, "NOSUCH").await), "promo_invalid");
    assert_eq!(
        e.license(y).unwrap(),
        ly,
        "a refused code changed the license"
    );

    // uses survive a reopen
    let first = e.license(winners[0]).unwrap();
    let e = reopen(e, &dir);
    assert_eq!(code(e.redeem_promo(y, "FIVE").await), "promo_invalid");
    assert_eq!(
        code(e.redeem_promo(winners[0], "FIVE").await),
        "promo_already_redeemed"
    );
    assert_eq!(
        code(e.redeem_promo(x, "TWICE").await),
        "promo_already_redeemed"
    );
    assert_eq!(e.license(winners[0]).unwrap(), first);
    assert_eq!(e.license(x).unwrap(), l5);
    e.shutdown();
}

// ---------------------------------------------------------------------------------------------
// 8. Signals.

async fn follower(e: &Engine, name: &str, patch: ConfigPatch, bot: bool, licensed: bool) -> i64 {
    let u = user_with(e, name, "1000").await;
    e.set_config(u, patch).await.unwrap();
    e.set_bot_enabled(u, bot).await.unwrap();
    if licensed {
        e.redeem_promo(u, "LIC").await.unwrap();
    }
    u
}

/// A BTC buy signal of `strategy` with the followers' own stop-loss and take-profit.
fn buy_signal(strategy: &str) -> Signal {
    Signal {
        strategy: strategy.into(),
        symbol: BTC.into(),
        side: Side::Buy,
        sl_pct: None,
        tp_pct: None,
    }
}

fn follows(strategy: &str, leverage: Option<u32>, risk: Option<&str>) -> ConfigPatch {
    ConfigPatch {
        strategy: Some(Some(strategy.into())),
        leverage: Some(leverage),
        risk_pct: Some(risk.map(d)),
        ..ConfigPatch::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_place_sized_protected_orders_for_enabled_licensed_followers() {
    let dir = tempfile::tempdir().unwrap();
    let e = open_licensed(&dir);
    e.create_promo(NewPromo {
        code: "LIC".into(),
        license_type: "pro".into(),
        days: 30,
        max_uses: 100,
        valid_until: None,
    })
    .await
    .unwrap();
    let with_pcts = ConfigPatch {
        sl_pct: Some(Some(d("2"))),
        tp_pct: Some(Some(d("3"))),
        ..follows("trend", Some(5), Some("10"))
    };
    let a = follower(&e, "a", with_pcts, true, true).await;
    let b = follower(&e, "b", follows("trend", None, Some("10")), false, true).await;
    let c = follower(&e, "c-no-risk", follows("trend", Some(3), None), true, true).await;
    let dd = follower(
        &e,
        "d-unlicensed",
        follows("trend", None, Some("10")),
        true,
        false,
    )
    .await;
    let tiny = follower(
        &e,
        "e-tiny",
        follows("trend", None, Some("0.01")),
        true,
        true,
    )
    .await;
    let other = follower(
        &e,
        "f-other",
        follows("other", None, Some("10")),
        true,
        true,
    )
    .await;
    let all_in = follower(
        &e,
        "g-all-in",
        follows("trend", Some(1), Some("100")),
        true,
        true,
    )
    .await;
    tick(&e, BTC, "123.45").await;

    // placing needs a license
    let before = snapshot(&e, dd);
    let err = e
        .place_order(dd, order(BTC, Side::Buy, "0.01", None, 1, None, None))
        .await;
    assert_eq!(code(err), "license_required");
    assert_eq!(snapshot(&e, dd), before);

    let signal = |side, sl: Option<&str>, tp: Option<&str>| Signal {
        strategy: "trend".into(),
        symbol: BTC.into(),
        side,
        sl_pct: sl.map(d),
        tp_pct: tp.map(d),
    };
    // a: placed · b: bot off · c: no risk_pct · d: no license · e: below min_qty ·
    // g: 100 % at x1 leaves nothing for the fee
    let out = e
        .submit_signal(signal(Side::Buy, Some("1.5"), None))
        .await
        .unwrap();
    assert_eq!((out.signal_id, out.orders_placed, out.skipped), (1, 1, 5));
    let pa = e.positions(a, None).unwrap();
    assert_eq!(pa.len(), 1);
    let p = &pa[0];
    // 1000 × 10 % × 5 / 123.45 = 4.0502… → 4.05; sl 123.45 × 0.985 = 121.59825 → 121.6 (the
    // signal's pct); tp 123.45 × 1.03 = 127.1535 → 127.15 (the config's)
    assert_eq!(
        (p.side, p.qty, p.leverage, p.entry_price, p.sl, p.tp),
        (
            PositionSide::Long,
            d("4.05"),
            5,
            d("123.45"),
            Some(d("121.6")),
            Some(d("127.15"))
        )
    );
    assert_eq!(
        p.qty.raw(),
        reference::signal_qty(
            1000 * 100_000_000,
            10 * 100_000_000,
            5,
            p.entry_price.raw(),
            100_000
        )
    );
    assert_eq!(
        p.sl.unwrap().raw(),
        reference::offset(p.entry_price.raw(), -150_000_000, CENT)
    );
    for u in [b, c, dd, tiny, other, all_in] {
        assert!(
            e.positions(u, None).unwrap().is_empty(),
            "user {u} got a position"
        );
        assert!(e.orders(u, None).unwrap().is_empty());
    }

    // a toggle counts for the very next signal
    e.set_bot_enabled(b, true).await.unwrap();
    e.set_bot_enabled(a, false).await.unwrap();
    let out = e
        .submit_signal(signal(Side::Sell, None, None))
        .await
        .unwrap();
    assert_eq!((out.signal_id, out.orders_placed, out.skipped), (2, 1, 5));
    assert_eq!(e.positions(a, None).unwrap().len(), 1, "a's bot is off");
    let pb = e.positions(b, None).unwrap();
    assert_eq!(pb.len(), 1);
    assert_eq!(
        (pb[0].side, pb[0].qty, pb[0].leverage, pb[0].sl, pb[0].tp),
        (PositionSide::Short, d("0.81"), 1, None, None),
        "1000 × 10 % × 1 / 123.45 = 0.81004 → 0.81; no pct anywhere → no sl/tp"
    );

    // a license makes d a follower who may trade; sizes come from what is available now
    e.redeem_promo(dd, "LIC").await.unwrap();
    tick(&e, BTC, "120.07").await;
    let avail_b = e.balance(b, DEMO).unwrap().available;
    let avail_d = e.balance(dd, DEMO).unwrap().available;
    let out = e
        .submit_signal(signal(Side::Buy, None, Some("5")))
        .await
        .unwrap();
    assert_eq!((out.signal_id, out.orders_placed, out.skipped), (3, 2, 4));
    let last = d("120.07").raw();
    let tp = reference::offset(last, 500_000_000, CENT);
    assert_eq!(tp, d("126.07").raw(), "120.07 × 1.05 = 126.0735 → 126.07");
    for (u, avail) in [(b, avail_b), (dd, avail_d)] {
        let ps = e.positions(u, None).unwrap();
        let p = ps.last().unwrap();
        let want_qty = reference::signal_qty(avail.raw(), 10 * 100_000_000, 1, last, 100_000);
        assert_eq!(
            (p.side, p.qty.raw(), p.entry_price.raw(), p.sl, p.tp),
            (PositionSide::Long, want_qty, last, None, Some(Dec(tp))),
            "user {u}"
        );
    }
    e.shutdown();
}

/// One config serves every symbol: its leverage is a default that the symbol's maximum caps, for
/// a manual order that names none as for a signal; and a config and a signal take the same
/// stop-loss and take-profit percentages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_leverage_and_percentages_mean_the_same_to_orders_and_signals() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(&dir);
    let cfg = ConfigPatch {
        sl_pct: Some(Some(d("99.5"))),
        ..follows("lev", Some(200), Some("10"))
    };
    let u = follower(&e, "lev", cfg, true, false).await;
    tick(&e, BTC, "100").await;

    let o = e
        .place_order(u, NewOrder::market(BTC, Side::Buy, d("0.01")))
        .await
        .expect("the configured x200 is capped at BTC's x100, not refused");
    assert_eq!(o.leverage, 100);
    let explicit = e
        .place_order(u, order(BTC, Side::Buy, "0.01", None, 200, None, None))
        .await;
    assert_eq!(
        code(explicit),
        "invalid_request",
        "a leverage asked for is checked"
    );

    let avail = e.balance(u, DEMO).unwrap().available;
    let signal = |side, sl: Option<&str>, tp: Option<&str>| Signal {
        strategy: "lev".into(),
        symbol: BTC.into(),
        side,
        sl_pct: sl.map(d),
        tp_pct: tp.map(d),
    };
    let out = e
        .submit_signal(signal(Side::Buy, None, Some("150")))
        .await
        .expect("a +150 % take profit on a long is valid");
    assert_eq!((out.orders_placed, out.skipped), (1, 0));
    let p = e.positions(u, None).unwrap().pop().unwrap();
    let want_qty =
        reference::signal_qty(avail.raw(), 10 * 100_000_000, 100, d("100").raw(), 100_000);
    assert_eq!(
        (p.leverage, p.qty.raw(), p.sl, p.tp),
        (100, want_qty, Some(d("0.5")), Some(d("250"))),
        "x100; sl 100 × (1 − 99.5 %) from the config; tp 100 × (1 + 150 %) from the signal"
    );
    // for a short the same +150 % would put the take profit below zero: it is left out
    e.submit_signal(signal(Side::Sell, None, Some("150")))
        .await
        .unwrap();
    let p = e.positions(u, None).unwrap().pop().unwrap();
    assert_eq!(
        (p.side, p.sl, p.tp),
        (PositionSide::Short, Some(d("199.5")), None)
    );

    for (sl, tp) in [
        (Some("100"), None),
        (None, Some("1000.00000001")),
        (Some("0"), None),
    ] {
        let before = snapshot(&e, u);
        assert_eq!(
            code(e.submit_signal(signal(Side::Buy, sl, tp)).await),
            "invalid_request",
            "signal sl {sl:?} tp {tp:?}"
        );
        // with good fields beside the bad one: none of them is applied
        let config = e.user_config(u).unwrap();
        let patch = ConfigPatch {
            strategy: Some(Some("other".into())),
            leverage: Some(Some(7)),
            sl_pct: sl.map(|v| Some(d(v))),
            tp_pct: tp.map(|v| Some(d(v))),
            ..ConfigPatch::default()
        };
        assert_eq!(code(e.set_config(u, patch).await), "invalid_request");
        assert_eq!(snapshot(&e, u), before);
        assert_eq!(e.user_config(u).unwrap(), config);
    }
    let (before, config) = (snapshot(&e, u), e.user_config(u).unwrap());
    let e = reopen(e, &dir);
    assert_eq!(
        (snapshot(&e, u), e.user_config(u).unwrap()),
        (before, config)
    );
    e.shutdown();
}

// ---------------------------------------------------------------------------------------------
// 9. Events.

/// What a listener saw for one event of the watched user: the event, and that user's state read
/// through the caches the moment the event arrived.
type Seen = (Arc<Event>, Option<(BalV, Vec<i64>, Vec<i64>)>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_come_after_the_commit_and_belong_to_their_user() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(&dir);
    let x = user_with(&e, "x", "1000").await;
    let y = user_with(&e, "y", "1000").await;
    let z = user_with(&e, "z", "0").await;
    tick(&e, BTC, "100").await;
    let mut rx = e.subscribe();
    let (fwd, mut seen) = tokio::sync::mpsc::unbounded_channel::<Seen>();
    let listener = {
        let e = e.clone();
        tokio::spawn(async move {
            while let Ok(ev) = rx.recv().await {
                let state = (ev.user_id() == x).then(|| {
                    (
                        bal_v(&e.balance(x, DEMO).unwrap()),
                        e.positions(x, None).unwrap().iter().map(|p| p.id).collect(),
                        e.orders(x, None).unwrap().iter().map(|o| o.id).collect(),
                    )
                });
                if fwd.send((ev, state)).is_err() {
                    return;
                }
            }
        })
    };
    // Runs a write, then a deposit of z as a sentinel: events go out in commit order, so once
    // z's arrives every event of the write has been seen.
    let mut sentinel = 0;
    macro_rules! phase {
        ($write:expr) => {{
            let answer = $write;
            sentinel += 1;
            e.deposit(z, Dec::from_int(sentinel), DEMO).await.unwrap();
            let mut got: Vec<Seen> = Vec::new();
            loop {
                let (ev, st) =
                    tokio::time::timeout(std::time::Duration::from_secs(20), seen.recv())
                        .await
                        .expect("events stopped coming")
                        .expect("listener ended");
                if ev.user_id() == z {
                    assert_eq!(ev.kind(), "balance_changed");
                    break;
                }
                got.push((ev, st));
            }
            (answer, got)
        }};
    }
    let kinds = |got: &[Seen], u: i64| -> Vec<&'static str> {
        got.iter()
            .filter(|(ev, _)| ev.user_id() == u)
            .map(|(ev, _)| ev.kind())
            .collect()
    };
    let state_now = |e: &Engine| {
        (
            bal_v(&e.balance(x, DEMO).unwrap()),
            e.positions(x, None)
                .unwrap()
                .iter()
                .map(|p| p.id)
                .collect::<Vec<_>>(),
            e.orders(x, None)
                .unwrap()
                .iter()
                .map(|o| o.id)
                .collect::<Vec<_>>(),
        )
    };

    // a market order that fills
    let (o, got) = phase!(
        e.place_order(x, order(BTC, Side::Buy, "1", None, 10, None, None))
            .await
            .unwrap()
    );
    assert_eq!(
        kinds(&got, x),
        [
            "order_placed",
            "order_filled",
            "position_opened",
            "balance_changed"
        ]
    );
    assert_eq!(got.len(), 4, "events of other users: {got:?}");
    match (&*got[0].0, &*got[1].0, &*got[2].0, &*got[3].0) {
        (
            Event::OrderPlaced { order: placed },
            Event::OrderFilled { order: filled },
            Event::PositionOpened { position },
            Event::BalanceChanged {
                user_id,
                account_type,
            },
        ) => {
            assert_eq!(placed.id, o.id);
            assert_eq!(filled, &o);
            assert_eq!(Some(position.id), o.position_id);
            assert_eq!((*user_id, *account_type), (x, DEMO));
        }
        other => panic!("unexpected events {other:?}"),
    }
    let after = state_now(&e);
    assert_eq!(after.1, vec![o.position_id.unwrap()]);
    for (ev, st) in &got {
        assert_eq!(
            st.as_ref(),
            Some(&after),
            "{} seen before its write was visible",
            ev.kind()
        );
    }

    // another user's write is not x's
    let (_, got) = phase!(e.deposit(y, d("50"), DEMO).await.unwrap());
    assert_eq!(kinds(&got, x), Vec::<&str>::new());
    assert_eq!(kinds(&got, y), ["balance_changed"]);

    // a resting order, then the tick that fills it
    let (rest, got) = phase!(
        e.place_order(x, order(BTC, Side::Buy, "1", Some("95"), 5, None, None))
            .await
            .unwrap()
    );
    assert_eq!(kinds(&got, x), ["order_placed", "balance_changed"]);
    let after = state_now(&e);
    assert_eq!(after.2, vec![rest.id]);
    assert!(got.iter().all(|(_, st)| st.as_ref() == Some(&after)));

    let (_, got) = phase!(tick(&e, BTC, "95").await);
    assert_eq!(
        kinds(&got, x),
        ["order_filled", "position_opened", "balance_changed"]
    );
    assert_eq!(got.len(), 3);
    let after = state_now(&e);
    assert_eq!((after.1.len(), after.2.len()), (2, 0));
    assert!(got.iter().all(|(_, st)| st.as_ref() == Some(&after)));

    let (t, got) = phase!(e.close_position(x, o.position_id.unwrap()).await.unwrap());
    assert_eq!(kinds(&got, x), ["position_closed", "balance_changed"]);
    match &*got[0].0 {
        Event::PositionClosed { trade } => assert_eq!(trade, &t),
        other => panic!("unexpected event {other:?}"),
    }
    let after = state_now(&e);
    assert!(got.iter().all(|(_, st)| st.as_ref() == Some(&after)));

    listener.abort();
    e.shutdown();
}

// ---------------------------------------------------------------------------------------------
// Accounts, default leverage, paging.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_are_separate_leverage_defaults_to_the_config_and_trades_page() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(&dir);
    let u = user_with(&e, "acct", "1000").await;
    e.deposit(u, d("500"), AccountType::Real).await.unwrap();
    tick(&e, BTC, "100").await;

    // no leverage given, none configured: 1
    let o = e
        .place_order(u, NewOrder::market(BTC, Side::Buy, d("0.1")))
        .await
        .unwrap();
    assert_eq!(o.leverage, 1);
    // the configured leverage is the default
    e.set_config(
        u,
        ConfigPatch {
            leverage: Some(Some(7)),
            ..ConfigPatch::default()
        },
    )
    .await
    .unwrap();
    let o7 = e
        .place_order(u, NewOrder::market(BTC, Side::Buy, d("1")))
        .await
        .unwrap();
    assert_eq!(o7.leverage, 7);
    let p7 = e.positions(u, Some(DEMO)).unwrap().pop().unwrap();
    assert_eq!(
        p7.margin,
        d("14.28571429"),
        "100 / 7 = 14.285714285… rounded half away"
    );
    assert_eq!(
        p7.liquidation_price,
        d("86.22"),
        "100 × (1 − 1/7 + 0.005) = 86.2142… up to the tick"
    );
    // (a configured leverage above the symbol's maximum is capped: see
    // configured_leverage_and_percentages_mean_the_same_to_orders_and_signals)

    // the real account is its own ledger
    let demo_before = e.balance(u, DEMO).unwrap();
    let mut real = order(BTC, Side::Sell, "1", None, 2, None, None);
    real.account_type = Some(AccountType::Real);
    let r = e.place_order(u, real).await.unwrap();
    assert_eq!(r.account_type, AccountType::Real);
    assert_eq!(e.balance(u, DEMO).unwrap(), demo_before);
    let rb = e.balance(u, AccountType::Real).unwrap();
    assert_eq!(
        (rb.wallet, rb.margin_used, rb.available),
        (d("499.945"), d("50"), d("449.945"))
    );
    assert_eq!(e.positions(u, Some(AccountType::Real)).unwrap().len(), 1);
    assert_eq!(e.positions(u, Some(DEMO)).unwrap().len(), 2);
    let both: Vec<i64> = e.positions(u, None).unwrap().iter().map(|p| p.id).collect();
    assert_eq!(both, vec![1, 2, 3], "both accounts, oldest first");

    // a signal trades on the configured account with the configured leverage
    e.set_config(
        u,
        ConfigPatch {
            strategy: Some(Some("realbot".into())),
            leverage: Some(Some(3)),
            risk_pct: Some(Some(d("10"))),
            account_type: Some(AccountType::Real),
            ..ConfigPatch::default()
        },
    )
    .await
    .unwrap();
    e.set_bot_enabled(u, true).await.unwrap();
    let demo_before = e.balance(u, DEMO).unwrap();
    let out = e.submit_signal(buy_signal("realbot")).await.unwrap();
    assert_eq!((out.orders_placed, out.skipped), (1, 0));
    let p = e
        .positions(u, Some(AccountType::Real))
        .unwrap()
        .pop()
        .unwrap();
    let want = reference::signal_qty(
        d("449.945").raw(),
        d("10").raw(),
        3,
        d("100").raw(),
        100_000,
    );
    assert_eq!(
        (p.qty.raw(), p.leverage, p.account_type),
        (want, 3, AccountType::Real)
    );
    assert_eq!(
        p.qty,
        d("1.349"),
        "449.945 × 10 % × 3 / 100 = 1.349835 → 1.349"
    );
    assert_eq!(e.balance(u, DEMO).unwrap(), demo_before);

    // closes realize on the position's account; history pages newest first
    let ids: Vec<i64> = e.positions(u, None).unwrap().iter().map(|p| p.id).collect();
    for id in &ids {
        e.close_position(u, *id).await.unwrap();
    }
    let real_trades = e.trades(u, 1, 100).unwrap();
    assert_eq!(real_trades.total, 4);
    assert_eq!(
        real_trades
            .trades
            .iter()
            .map(|t| (t.position_id, t.account_type))
            .collect::<Vec<_>>(),
        vec![
            (4, AccountType::Real),
            (3, AccountType::Real),
            (2, AccountType::Demo),
            (1, AccountType::Demo)
        ]
    );
    let rb = e.balance(u, AccountType::Real).unwrap();
    assert_eq!((rb.margin_used, rb.available), (Dec::ZERO, rb.wallet));
    let page2 = e.trades(u, 2, 3).unwrap();
    assert_eq!(
        (page2.page, page2.limit, page2.total, page2.pages),
        (2, 3, 4, 2)
    );
    assert_eq!(page2.trades, real_trades.trades[3..].to_vec());
    let clamped = e.trades(u, 0, 0).unwrap();
    assert_eq!((clamped.page, clamped.limit, clamped.pages), (1, 1, 4));
    assert_eq!(clamped.trades, real_trades.trades[..1].to_vec());
    assert_eq!(e.trades(u, 1, 5000).unwrap().limit, 1000);
    assert!(e.trades(u, 9, 10).unwrap().trades.is_empty());
    // one account's trades: its own rows, count and pages
    for (acct, want) in [(AccountType::Real, [4, 3]), (DEMO, [2, 1])] {
        let p = e.trades_of(u, Some(acct), 1, 1).unwrap();
        assert_eq!((p.total, p.pages), (2, 2), "{acct:?}");
        let all = e.trades_of(u, Some(acct), 1, 100).unwrap();
        let ids: Vec<i64> = all.trades.iter().map(|t| t.position_id).collect();
        assert_eq!(ids, want, "{acct:?}");
        assert_eq!(p.trades[..], all.trades[..1]);
    }
    e.shutdown();
}

// ---------------------------------------------------------------------------------------------
// Known engine bug, found by the concurrency test.

/// A close request queued right behind the tick that liquidates the position, or behind another
/// close of the same position (a client's retry), must answer `conflict` (API.md §2: "closing a closed position" is 409 `conflict`). The engine decides
/// "closed or never mine?" by reading the trade row from SQLite (`why_not_open` in
/// src/engine/trading.rs), while the tick's trade row may still sit uncommitted in the writer's
/// queue: the position is gone from memory and the trade is not yet on disk, so it answers 404
/// `not_found` for the caller's own position.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_a_position_a_trigger_just_closed_is_a_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(&dir);
    let u = user_with(&e, "racer", "100000").await;
    tick(&e, BTC, "100").await;
    let mut wrong = Vec::new();
    for round in 0..20 {
        let mut ids = Vec::new();
        for _ in 0..10 {
            let o = e
                .place_order(u, order(BTC, Side::Buy, "0.1", None, 20, None, None))
                .await
                .unwrap();
            ids.push(o.position_id.unwrap());
        }
        // queued in this order: the tick that liquidates them all, then a close of each
        let liquidate = e.ingest_ticks(vec![Tick {
            symbol: BTC.into(),
            price: d("90"),
            ts: None,
        }]);
        let closes = futures_util::future::join_all(ids.iter().map(|&id| e.close_position(u, id)));
        let (out, answers) = tokio::join!(liquidate, closes);
        assert_eq!(out.unwrap().liquidations, 10);
        for (id, a) in ids.iter().zip(answers) {
            let c = code(a);
            if c != "conflict" {
                wrong.push((round, *id, c));
            }
        }
        tick(&e, BTC, "100").await;
        // the same with a retried manual close
        let o = e
            .place_order(u, order(BTC, Side::Buy, "0.1", None, 20, None, None))
            .await
            .unwrap();
        let id = o.position_id.unwrap();
        let (first, retry) = tokio::join!(e.close_position(u, id), e.close_position(u, id));
        assert_eq!(first.unwrap().reason, CloseReason::Manual);
        let c = code(retry);
        if c != "conflict" {
            wrong.push((round, id, c));
        }
    }
    assert!(wrong.is_empty(), "own closed positions answered: {wrong:?}");
    e.shutdown();
}

/// `n` users with 1,000 on demo, each following `strategy` with its bot on (leverage 2, 10 %).
async fn followers(e: &Engine, n: usize, strategy: &str) -> Vec<i64> {
    let mut users = Vec::with_capacity(n);
    for i in 0..n {
        let u = user_with(e, &format!("f{i}"), "1000").await;
        e.set_config(u, follows(strategy, Some(2), Some("10")))
            .await
            .unwrap();
        e.set_bot_enabled(u, true).await.unwrap();
        users.push(u);
    }
    users
}

/// A signal with more followers than one part (`SIGNAL_FIRST_PART`, then `SIGNAL_PART` each)
/// is sent to the writer in parts that commit as one transaction: every follower's order,
/// position and ledger is there, read right after the answer (the cache entries of every
/// part, warmed before the signal, were invalidated before it), and again from the file after
/// a reopen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_larger_than_one_part_commits_every_follower() {
    let n = litetrade::engine::accounts::SIGNAL_PART * 2 + 317;
    let dir = tempfile::tempdir().unwrap();
    let e = open(&dir);
    let users = followers(&e, n, "wide").await;
    // some followers' caches are warm before the signal, in every part (0-99, 100-1099,
    // 1100-2099, 2100-2316): they must not go stale
    for &u in users.iter().step_by(250) {
        assert!(e.positions(u, Some(DEMO)).unwrap().is_empty());
        e.balance(u, DEMO).unwrap();
    }
    tick(&e, BTC, "100").await;
    let out = e.submit_signal(buy_signal("wide")).await.unwrap();
    assert_eq!((out.orders_placed, out.skipped), (n as u32, 0));
    let check = |e: &Engine| {
        for &u in &users {
            let pos = e.positions(u, Some(DEMO)).unwrap();
            assert_eq!(pos.len(), 1, "user {u}: one position");
            let b = e.balance(u, DEMO).unwrap();
            assert_eq!(b.margin_used, pos[0].margin, "user {u}: margin booked");
        }
    };
    check(&e);
    let e = reopen(e, &dir);
    check(&e);
    e.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_stream_keeps_its_events_through_a_signal_to_thousands() {
    use litetrade::engine::events::{ALL_CAPACITY, RecvError};
    // four events per follower: more than a shared ring of ALL_CAPACITY events holds
    let n = ALL_CAPACITY / 4 + 100;
    let dir = tempfile::tempdir().unwrap();
    let e = open(&dir);
    let users = followers(&e, n, "crowd").await;
    // every set-up answer came after its events went out, so the streams start after them
    tick(&e, BTC, "100").await;
    let watched = [users[0], users[n / 2], users[n - 1]];
    let mut streams: Vec<_> = watched.iter().map(|&u| e.subscribe_user(u)).collect();
    // nobody reads during the signal: everything it publishes arrives at once
    let out = e.submit_signal(buy_signal("crowd")).await.unwrap();
    assert_eq!(out.orders_placed, n as u32);
    for (rx, &u) in streams.iter_mut().zip(&watched) {
        let mut kinds = Vec::new();
        while kinds.len() < 4 {
            let ev = tokio::time::timeout(std::time::Duration::from_secs(20), rx.recv())
                .await
                .expect("the user's events stopped coming")
                .unwrap_or_else(|err| panic!("user {u}: {err:?} after {kinds:?}"));
            assert_eq!(ev.user_id(), u, "another user's event on {u}'s stream");
            kinds.push(ev.kind());
        }
        assert_eq!(
            kinds,
            [
                "order_placed",
                "order_filled",
                "position_opened",
                "balance_changed"
            ],
            "user {u}"
        );
    }
    e.shutdown();
    // shutting down ends the streams (an SSE response finishes), for late subscribers too
    let end = |rx| tokio::time::timeout(std::time::Duration::from_secs(20), rx);
    for rx in &mut streams {
        let r = end(rx.recv()).await.expect("no end");
        assert!(matches!(r, Err(RecvError::Closed)), "{r:?}");
    }
    let mut late = e.subscribe_user(users[1]);
    let r = end(late.recv()).await.expect("no end");
    assert!(matches!(r, Err(RecvError::Closed)), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_engine_ends_its_event_streams() {
    use litetrade::engine::events::RecvError;
    let dir = tempfile::tempdir().unwrap();
    let e = open(&dir);
    let u = user_with(&e, "u", "10").await;
    let mut one = e.subscribe_user(u);
    let mut all = e.subscribe();
    e.deposit(u, d("1"), DEMO).await.unwrap();
    drop(e);
    // what was published still arrives, then the end (Closed, within 20 s); the set-up
    // deposit's event went out before its answer, so before the subscriptions
    macro_rules! to_the_end {
        ($rx:expr) => {{
            let mut kinds = Vec::new();
            loop {
                let wait = std::time::Duration::from_secs(20);
                match tokio::time::timeout(wait, $rx.recv())
                    .await
                    .expect("no end")
                {
                    Ok(ev) => kinds.push(ev.kind()),
                    Err(err) => break assert!(matches!(err, RecvError::Closed), "{err:?}"),
                }
            }
            kinds
        }};
    }
    let kinds = [to_the_end!(one), to_the_end!(all)];
    for k in &kinds {
        assert!(k.len() == 1 && k[0] == "balance_changed", "{kinds:?}");
    }
}

/// An answered write's events are already out: a stream opened after the answer starts with
/// the next write's events, never with the answered one's (the bench's fan-out count and any
/// client that subscribes after acting rely on it). Each round races a subscription against
/// the publication of the write just answered; were events sent after the answer, some of the
/// 500 rounds would see the stale toggle first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_opened_after_an_answer_never_gets_that_writes_events() {
    use litetrade::engine::events::Event;
    let dir = tempfile::tempdir().unwrap();
    let e = open(&dir);
    let u = user_with(&e, "u", "0").await;
    for round in 0..500 {
        let on = round % 2 == 0;
        e.set_bot_enabled(u, on).await.unwrap();
        let mut rx = e.subscribe_user(u);
        e.set_bot_enabled(u, !on).await.unwrap();
        let first = tokio::time::timeout(std::time::Duration::from_secs(20), rx.recv())
            .await
            .expect("no event")
            .unwrap();
        assert_eq!(
            *first,
            Event::BotToggled {
                user_id: u,
                enabled: !on
            },
            "round {round}: the stream began with the earlier write's event"
        );
    }
    e.shutdown();
}

/// Length limits count characters, as their messages say: a Telegram name of 128 characters
/// is taken however many bytes its letters need, and one more character is refused.
#[tokio::test]
async fn length_limits_count_characters_not_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(&dir);
    let name = "名".repeat(128); // 384 bytes
    let (u, _) = e.create_user(&name, Some(7)).await.expect("128 characters");
    assert_eq!(e.user(u.id).unwrap().name, name);
    assert_eq!(
        code(e.create_user(&"é".repeat(129), None).await),
        "invalid_request"
    );
    e.deposit(u.id, d("1000"), DEMO).await.unwrap();
    tick(&e, "BTCUSDT", "30000").await;
    let mut o = NewOrder::market("BTCUSDT", Side::Buy, d("0.001"));
    o.client_order_id = Some("🚀".repeat(64)); // 256 bytes
    let placed = e.place_order(u.id, o.clone()).await.expect("64 characters");
    assert_eq!(placed.client_order_id, o.client_order_id);
    o.client_order_id = Some("🚀".repeat(65));
    assert_eq!(code(e.place_order(u.id, o).await), "invalid_request");
    let patch = ConfigPatch {
        strategy: Some(Some("策".repeat(64))),
        ..Default::default()
    };
    e.set_config(u.id, patch).await.expect("64 characters");
    let patch = ConfigPatch {
        strategy: Some(Some("策".repeat(65))),
        ..Default::default()
    };
    assert_eq!(code(e.set_config(u.id, patch).await), "invalid_request");
}

/// A symbol patch changes only the fields it names, merged on the sequencer against the spec
/// in force: concurrent patches of different fields never undo each other, and a new symbol
/// starts from the defaults.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_symbol_patches_of_different_fields_all_stay() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(&dir);
    let fresh = e
        .patch_symbol(
            "SOLUSDT",
            SymbolPatch {
                tick_size: Some(d("0.001")),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        fresh,
        SymbolSpec {
            tick_size: d("0.001"),
            ..SymbolSpec::default_for("SOLUSDT")
        }
    );
    // one patch of SOLUSDT on its own task, so that two run concurrently
    let spawn_patch = |p: SymbolPatch| {
        let e = e.clone();
        tokio::spawn(async move { e.patch_symbol("SOLUSDT", p).await.unwrap() })
    };
    for round in 1..=50i64 {
        let (maker, mmr) = (Bps(round), Bps(4000 + round));
        let fee = spawn_patch(SymbolPatch {
            maker_fee_bps: Some(maker),
            ..Default::default()
        });
        let margin = spawn_patch(SymbolPatch {
            mmr_bps: Some(mmr),
            ..Default::default()
        });
        let (a, b) = (fee.await.unwrap(), margin.await.unwrap());
        // whichever ran second saw the other's field
        assert!(
            (a.mmr_bps == mmr) || (b.maker_fee_bps == maker),
            "round {round}: {a:?} / {b:?}"
        );
        let now = e.symbol("SOLUSDT").unwrap();
        assert_eq!(
            (now.maker_fee_bps, now.mmr_bps),
            (maker, mmr),
            "round {round}"
        );
        assert_eq!(now.tick_size, d("0.001"));
    }
    // a refused patch changes nothing
    let before = e.symbol("SOLUSDT").unwrap();
    let bad = SymbolPatch {
        min_qty: Some(d("0.0003")),
        ..Default::default()
    };
    assert_eq!(
        code(e.patch_symbol("SOLUSDT", bad).await),
        "invalid_request"
    );
    assert_eq!(e.symbol("SOLUSDT").unwrap(), before);
}

/// A deposit is committed before its balance is read for the answer. When that read fails
/// (here: the only pool connection is held past the pool's timeout), the answer still comes,
/// from the sequencer's memory: an error would invite a retry that credits twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposit_answers_its_balance_even_when_the_read_pool_is_exhausted() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = cfg_for(&dir, false);
    cfg.store.pool_size = 1;
    cfg.store.busy_timeout_ms = 1000; // the pool waits max(this, 1 s) for a connection
    let e = Engine::open(&cfg).unwrap();
    let a = user_with(&e, "alice", "1000").await;
    tick(&e, "BTCUSDT", "30000").await;
    e.place_order(a, NewOrder::market("BTCUSDT", Side::Buy, d("0.01")))
        .await
        .unwrap();
    tick(&e, "BTCUSDT", "31000").await; // +10 unrealized
    let want = e.balance(a, DEMO).unwrap();
    // a fresh engine on the same file: nothing of alice's is cached yet
    let e = reopen(e, &dir);
    let (held_tx, held_rx) = std::sync::mpsc::channel::<()>();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let hold = {
        let e = e.clone();
        std::thread::spawn(move || {
            e.read("hold", |_| {
                held_tx.send(()).unwrap();
                release_rx.recv().unwrap();
                Ok(())
            })
            .unwrap()
        })
    };
    held_rx.recv().unwrap();
    let got = e
        .deposit(a, d("5"), DEMO)
        .await
        .expect("a committed deposit answers");
    release_tx.send(()).unwrap();
    hold.join().unwrap();
    assert_eq!(got.wallet.raw(), want.wallet.raw() + d("5").raw());
    assert_eq!(got.unrealized_pnl, d("10"));
    assert_eq!(got, e.balance(a, DEMO).unwrap());
}

/// A backup finishes while writes keep committing: it copies one read snapshot, so a commit
/// between two of its steps does not send it back to the start. Here every step waits for
/// one more acknowledged deposit; before the change the copy restarted at each step and never
/// finished (and under steady writes in production it took minutes while the WAL it pinned
/// grew by gigabytes). The copy holds every deposit acknowledged before it began.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_finishes_under_steady_writes_and_holds_every_acknowledged_one() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(&dir);
    let a = user_with(&e, "alice", "1").await;
    // enough pages for several steps
    for _ in 0..10 {
        let users: Vec<_> = (0..50)
            .map(|i| {
                let e = e.clone();
                tokio::spawn(async move { user_with(&e, &format!("u{i}"), "1000").await })
            })
            .collect();
        for u in users {
            u.await.unwrap();
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let writer = {
        let (e, stop, acked) = (e.clone(), stop.clone(), acked.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                e.deposit(a, d("1"), DEMO).await.unwrap();
                acked.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    while acked.load(Ordering::SeqCst) < 10 {
        tokio::task::yield_now().await;
    }
    let before = e.balance(a, DEMO).unwrap().wallet;
    let dest = dir.path().join("copy.db");
    let (cfg, dest2, acked2, stop2) = (
        e.config().clone(),
        dest.clone(),
        acked.clone(),
        stop.clone(),
    );
    let steps = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let steps2 = steps.clone();
    let backup = tokio::task::spawn_blocking(move || {
        litetrade::engine::backup_database(&cfg, &dest2, &|_, _| {
            steps2.fetch_add(1, Ordering::SeqCst);
            // a commit lands between this step and the next
            let seen = acked2.load(Ordering::SeqCst);
            while acked2.load(Ordering::SeqCst) == seen && !stop2.load(Ordering::Relaxed) {
                std::thread::yield_now();
            }
        })
    });
    let mut backup = backup;
    let done = tokio::time::timeout(std::time::Duration::from_secs(60), &mut backup).await;
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    let result = match done {
        Ok(joined) => joined.unwrap(),
        Err(_) => panic!(
            "the backup did not finish while writes went on (it did once they stopped: {:?})",
            backup.await.unwrap()
        ),
    };
    result.unwrap();
    assert!(steps.load(Ordering::SeqCst) >= 3, "too few steps to test");
    let copy = rusqlite::Connection::open(&dest).unwrap();
    let ok: String = copy
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    let users: i64 = copy
        .query_row("SELECT count(*) FROM users", [], |r| r.get(0))
        .unwrap();
    assert_eq!(users, 501);
    let wallet: i64 = copy
        .query_row(
            "SELECT wallet FROM balances WHERE user_id = ?1 AND account_type = 'demo'",
            [a],
            |r| r.get(0),
        )
        .unwrap();
    assert!(wallet >= before.raw(), "{wallet} < {}", before.raw());
}

/// `trade_totals` (chat's `/pnl`) sums every trade of a user exactly: more than the 10,000 the
/// chat once read, sums beyond `i64`, each account apart, and no other user's trades.
#[tokio::test]
async fn trade_totals_count_every_trade_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(&dir);
    let (u, _) = e.create_user("alice", None).await.unwrap();
    let (other, _) = e.create_user("bob", None).await.unwrap();
    let cfg = e.config().clone();
    e.shutdown();
    drop(e);
    const N: i64 = 10_050;
    // three PnLs of i64::MAX / 2 overflow an i64 sum; the rest are small wins, losses and zeros
    let pnl = |i: i64| {
        if i < 3 {
            i64::MAX / 2
        } else {
            (i % 7 - 3) * 1_000_000
        }
    };
    {
        let c = rusqlite::Connection::open(&cfg.db).unwrap();
        let mut st = c
            .prepare(
                "INSERT INTO trade_logs (id, position_id, user_id, symbol, side, qty, entry_price, \
                 exit_price, open_fee, close_fee, pnl, reason, account_type, leverage, opened_at, \
                 closed_at) VALUES (?1, ?1, ?2, 'BTCUSDT', 'long', 100000000, 100, 100, ?3, ?4, \
                 ?5, 'manual', ?6, 1, 0, ?1)",
            )
            .unwrap();
        c.execute_batch("BEGIN").unwrap();
        for i in 0..N {
            let acct = if i % 2 == 0 { "demo" } else { "real" };
            st.execute(rusqlite::params![
                i + 1,
                u.id,
                5_000 + i,
                6_000,
                pnl(i),
                acct
            ])
            .unwrap();
        }
        // another user's trade, which must not count
        st.execute(rusqlite::params![N + 1, other.id, 1, 1, 123, "demo"])
            .unwrap();
        c.execute_batch("COMMIT").unwrap();
    }
    let e = Engine::open(&cfg).unwrap();
    let expect = |keep: &dyn Fn(i64) -> bool| {
        let mut t = litetrade::domain::model::TradeTotals::default();
        for i in (0..N).filter(|&i| keep(i)) {
            t.count += 1;
            t.wins += u64::from(pnl(i) > 0);
            t.losses += u64::from(pnl(i) < 0);
            t.pnl_raw += i128::from(pnl(i));
            t.fees_raw += i128::from(5_000 + i + 6_000);
        }
        t
    };
    let all = e.trade_totals(u.id, None).unwrap();
    assert_eq!(all, expect(&|_| true));
    assert!(all.pnl_raw > i128::from(i64::MAX), "the sum must pass i64");
    assert_eq!(
        e.trade_totals(u.id, Some(DEMO)).unwrap(),
        expect(&|i| i % 2 == 0)
    );
    assert_eq!(
        e.trade_totals(u.id, Some(AccountType::Real)).unwrap(),
        expect(&|i| i % 2 == 1)
    );
    let reply = litetrade::chat::handle(&e, u.id, "/pnl").await.text();
    assert!(reply.contains(&format!("Trades: {N}\n")), "{reply}");
    assert_eq!(code(e.trade_totals(999_999, None)), "not_found");
    e.shutdown();
}

/// A database in use is refused through a symlink too (the lock is named after the real
/// path), and a database file with a second hard link is refused outright: SQLite would keep a
/// `-wal` beside each name, and two servers through two names lost writes in an audit.
#[cfg(unix)]
#[tokio::test]
async fn a_database_is_locked_by_its_real_path_and_hard_links_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(&dir);
    let (u, _) = e.create_user("alice", None).await.unwrap();
    let cfg = e.config().clone();
    let link = Config {
        db: dir.path().join("link.db"),
        ..cfg.clone()
    };
    std::os::unix::fs::symlink(&cfg.db, &link.db).unwrap();
    refused_open(&link, "another litetrade process");
    e.shutdown();
    drop(e);
    // once the first engine is gone, the link opens the same database
    let e = Engine::open(&link).unwrap();
    assert_eq!(e.user(u.id).unwrap().name, "alice");
    e.shutdown();
    drop(e);
    let hard = Config {
        db: dir.path().join("hard.db"),
        ..cfg.clone()
    };
    std::fs::hard_link(&cfg.db, &hard.db).unwrap();
    for c in [&cfg, &hard, &link] {
        refused_open(c, "2 hard links");
    }
    // a backup through either name would read the file without a server's WAL: refused too
    let copy = dir.path().join("copy.db");
    let backup = litetrade::engine::backup_database(&hard, &copy, &|_, _| {});
    assert!(
        matches!(&backup, Err(Error::Unavailable(m)) if m.contains("2 hard links")),
        "{backup:?}"
    );
    assert!(!copy.exists());
    std::fs::remove_file(&hard.db).unwrap();
    let e = Engine::open(&cfg).unwrap();
    assert_eq!(e.user(u.id).unwrap().name, "alice");
    e.shutdown();
    drop(e);

    // a symlink made before its target exists: the first start creates the target, and a
    // second start through the target or the link is refused
    let fresh = Config {
        db: dir.path().join("fresh-link.db"),
        ..cfg.clone()
    };
    let target = dir.path().join("sub").join("fresh.db");
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::os::unix::fs::symlink("sub/fresh.db", &fresh.db).unwrap();
    let first = Engine::open(&fresh).unwrap();
    assert!(target.exists(), "SQLite creates the link's target");
    for c in [
        Config {
            db: target.clone(),
            ..cfg.clone()
        },
        fresh.clone(),
    ] {
        refused_open(&c, "another litetrade process");
    }
    first.shutdown();
}

/// Opening `c` fails, with an error that mentions `why`.
#[track_caller]
fn refused_open(c: &Config, why: &str) {
    match Engine::open(c) {
        Ok(_) => panic!("{} opened", c.db.display()),
        Err(e) => assert!(e.to_string().contains(why), "{e}"),
    }
}
