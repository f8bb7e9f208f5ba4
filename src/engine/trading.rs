//! Order entry, the matcher and the monitor: the commands of API.md §1 that move money.

use super::book::Trigger;
use super::events::Event;
use super::sequencer::{Inval, Reply, Sequencer, Tx, ensure};
use crate::domain::math;
use crate::domain::model::{
    AccountType, CloseReason, Id, Millis, Order, OrderStatus, OrderType, Position, Side, Trade,
    UserConfig,
};
use crate::domain::money::Dec;
use crate::domain::symbol::SymbolSpec;
use crate::error::{Error, Result};
use crate::store::ops::Op;
use crate::store::tables::trades;

/// Largest wallet an account may hold: 10^10 USDT (deposits beyond it are refused).
pub const MAX_WALLET: Dec = Dec(10_000_000_000 * crate::domain::money::SCALE);
use serde::Deserialize;

/// An order request (API.md §2 `POST /users/{id}/orders`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NewOrder {
    /// Symbol.
    pub symbol: String,
    /// `buy` or `sell`.
    pub side: Side,
    /// `market` or `limit`.
    #[serde(rename = "type")]
    pub order_type: OrderType,
    /// Quantity.
    pub qty: Dec,
    /// Limit price (limit orders only).
    #[serde(default)]
    pub price: Option<Dec>,
    /// Leverage (default: the user's config, else 1).
    #[serde(default)]
    pub leverage: Option<u32>,
    /// Stop loss.
    #[serde(default)]
    pub sl: Option<Dec>,
    /// Take profit.
    #[serde(default)]
    pub tp: Option<Dec>,
    /// Account (default demo).
    #[serde(default)]
    pub account_type: Option<AccountType>,
    /// Idempotency key.
    #[serde(default)]
    pub client_order_id: Option<String>,
}

impl NewOrder {
    /// A market order of `qty` on the demo account.
    pub fn market(symbol: &str, side: Side, qty: Dec) -> NewOrder {
        NewOrder {
            symbol: symbol.into(),
            side,
            order_type: OrderType::Market,
            qty,
            price: None,
            leverage: None,
            sl: None,
            tp: None,
            account_type: None,
            client_order_id: None,
        }
    }

    /// A limit order of `qty` at `price` on the demo account.
    pub fn limit(symbol: &str, side: Side, qty: Dec, price: Dec) -> NewOrder {
        NewOrder {
            order_type: OrderType::Limit,
            price: Some(price),
            ..NewOrder::market(symbol, side, qty)
        }
    }
}

/// What placing an order did.
#[derive(Debug)]
pub enum Placed {
    /// A new order (filled or pending).
    New(Box<Order>),
    /// The order an earlier request with the same client_order_id made.
    Existing(Id),
}

/// The answer to placing an order: the order, and whether an earlier request made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The order as it is now.
    pub order: Order,
    /// True when the request repeated a `client_order_id` and `order` is the first request's
    /// order (API.md: an idempotent retry), not a new one.
    pub replayed: bool,
}

/// One tick of the market feed.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Tick {
    /// Symbol.
    pub symbol: String,
    /// Price, > 0.
    pub price: Dec,
    /// Time, ms (default now).
    #[serde(default)]
    pub ts: Option<Millis>,
}

/// What a tick batch did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TickOutcome {
    /// Ticks applied.
    pub accepted: usize,
    /// Limit orders filled.
    pub fills: usize,
    /// Positions liquidated.
    pub liquidations: usize,
    /// Stop losses hit.
    pub stop_losses: usize,
    /// Take profits hit.
    pub take_profits: usize,
    /// Resting orders cancelled instead of filled, because the symbol's spec changed after
    /// they were placed: their owner could no longer pay for the fill (higher fees), or their
    /// leverage is above the symbol's new `max_leverage`.
    pub cancelled: usize,
}

/// The leverage an order or signal uses when it names none: the user's configured leverage
/// (default 1), capped by the symbol's `max_leverage`, since one config serves every symbol.
pub(super) fn configured_leverage(config: &UserConfig, spec: &SymbolSpec) -> u32 {
    config.leverage.unwrap_or(1).clamp(1, spec.max_leverage)
}

/// Everything placing an order needs, validated.
struct Checked {
    user: Id,
    acct: AccountType,
    leverage: u32,
    /// Set when it fills at once.
    fill_now: Option<FillAt>,
}

/// A fill's price with the margin and fee it costs there, worked out once when the fill is
/// checked and used as they are when it is applied.
struct FillAt {
    /// The fill price.
    px: Dec,
    /// The position's margin at that price.
    margin: Dec,
    /// The fee charged at that price.
    fee: Dec,
}

impl FillAt {
    /// The cost of filling `qty` at `px` with `leverage`; `None` when it does not fit the
    /// money range.
    fn of(px: Dec, qty: Dec, leverage: u32, fee_bps: crate::domain::symbol::Bps) -> Option<FillAt> {
        Some(FillAt {
            px,
            margin: math::margin(px, qty, leverage)?,
            fee: math::fee(px, qty, fee_bps)?,
        })
    }

    /// Margin plus fee, in i128 so that two values near the range's edge cannot overflow.
    fn cost(&self) -> i128 {
        self.margin.raw() as i128 + self.fee.raw() as i128
    }
}

impl Sequencer {
    fn check_license(&self, user: Id, now: Millis) -> Result<()> {
        let ok = !self.require_license || self.st.users.get(&user).is_some_and(|u| u.licensed(now));
        if ok {
            Ok(())
        } else {
            Err(Error::LicenseRequired)
        }
    }

    fn validate_order(&self, user: Id, o: &NewOrder, now: Millis) -> Result<Checked> {
        let u = self.st.users.get(&user).ok_or(Error::NotFound("user"))?;
        self.check_license(user, now)?;
        let sym = self
            .st
            .symbols
            .get(&o.symbol)
            .ok_or_else(|| Error::UnknownSymbol(o.symbol.clone()))?;
        let spec = &sym.spec;
        ensure(o.qty.is_positive(), || "qty must be > 0".into())?;
        ensure(o.qty.is_multiple_of(spec.lot_size), || {
            format!("qty must be a multiple of lot_size {}", spec.lot_size)
        })?;
        ensure(o.qty >= spec.min_qty, || {
            format!("qty must be at least min_qty {}", spec.min_qty)
        })?;
        // the configured leverage is a default, capped by the symbol like a signal's
        let leverage = o
            .leverage
            .unwrap_or_else(|| configured_leverage(&u.config, spec));
        ensure((1..=spec.max_leverage).contains(&leverage), || {
            format!("leverage must be a whole number 1..={}", spec.max_leverage)
        })?;
        if let Some(c) = &o.client_order_id {
            ensure(!c.is_empty() && c.chars().count() <= 64, || {
                "client_order_id must be 1-64 characters".into()
            })?;
        }
        let reference = match o.order_type {
            OrderType::Market => {
                ensure(o.price.is_none(), || "a market order takes no price".into())?;
                sym.last.ok_or_else(|| Error::NoPrice(o.symbol.clone()))?
            }
            OrderType::Limit => {
                let p = o
                    .price
                    .ok_or_else(|| Error::Invalid("a limit order needs a price".into()))?;
                ensure(p.is_positive() && p <= math::MAX_PRICE, || {
                    format!("price must be > 0 and <= {}", math::MAX_PRICE)
                })?;
                ensure(p.is_multiple_of(spec.tick_size), || {
                    format!("price must be a multiple of tick_size {}", spec.tick_size)
                })?;
                p
            }
        };
        let long = o.side == Side::Buy;
        for (name, v) in [("sl", o.sl), ("tp", o.tp)] {
            if let Some(v) = v {
                ensure(
                    v.is_positive() && v <= math::MAX_PRICE && v.is_multiple_of(spec.tick_size),
                    || {
                        format!(
                            "{name} must be > 0, <= {} and a multiple of tick_size {}",
                            math::MAX_PRICE,
                            spec.tick_size
                        )
                    },
                )?;
            }
        }
        if let Some(sl) = o.sl {
            ensure(if long { sl < reference } else { sl > reference }, || {
                format!(
                    "sl must be {} the reference price {reference}",
                    if long { "below" } else { "above" }
                )
            })?;
        }
        if let Some(tp) = o.tp {
            ensure(if long { tp > reference } else { tp < reference }, || {
                format!(
                    "tp must be {} the reference price {reference}",
                    if long { "above" } else { "below" }
                )
            })?;
        }
        let fill_now = match (o.order_type, sym.last) {
            (OrderType::Market, last) => last,
            (OrderType::Limit, Some(last))
                if (long && last <= reference) || (!long && last >= reference) =>
            {
                Some(last)
            }
            _ => None,
        };
        let acct = o.account_type.unwrap_or_default();
        let too_large = || Error::Invalid("order notional too large".into());
        let fill_now = fill_now
            .map(|px| FillAt::of(px, o.qty, leverage, spec.taker_fee_bps).ok_or_else(too_large))
            .transpose()?;
        let needed = match &fill_now {
            Some(f) => Dec(i64::try_from(f.cost()).map_err(|_| too_large())?),
            None => math::reserve(reference, o.qty, leverage, spec.taker_fee_bps)
                .ok_or_else(too_large)?,
        };
        let available = u.ledgers[acct.index()].available();
        if available < needed {
            return Err(Error::InsufficientBalance { needed, available });
        }
        Ok(Checked {
            user,
            acct,
            leverage,
            fill_now,
        })
    }

    /// Places an order: fills it at once or rests it (API.md §1).
    pub fn place_order(&mut self, user: Id, o: NewOrder, reply: Reply<Placed>) {
        let now = crate::domain::model::now_ms();
        if let Some(cid) = &o.client_order_id {
            match self.placed_under(user, cid) {
                Ok(Some(id)) => return self.barrier(Placed::Existing(id), reply),
                Ok(None) => {}
                // whether this is a retry cannot be told: refuse rather than risk a second order
                Err(e) => {
                    let _ = reply.send(Err(e));
                    return;
                }
            }
        }
        match self.validate_order(user, &o, now) {
            Err(e) => {
                let _ = reply.send(Err(e));
            }
            Ok(c) => {
                let mut tx = Tx::new(now);
                let order = self.accept_order(&mut tx, c, o);
                self.commit(tx, Placed::New(Box::new(order)), reply);
            }
        }
    }

    /// Applies a validated order; returns it as stored.
    fn accept_order(&mut self, tx: &mut Tx, c: Checked, o: NewOrder) -> Order {
        self.st.last_ids.order += 1;
        let id = self.st.last_ids.order;
        let spec = &self.st.symbols[&o.symbol].spec;
        let mut order = Order {
            id,
            user_id: c.user,
            symbol: o.symbol,
            side: o.side,
            order_type: o.order_type,
            qty: o.qty,
            price: o.price,
            leverage: c.leverage,
            sl: o.sl,
            tp: o.tp,
            account_type: c.acct,
            status: OrderStatus::Pending,
            reserve: Dec::ZERO,
            fill_price: None,
            fee: None,
            position_id: None,
            client_order_id: o.client_order_id,
            created_at: tx.now,
            filled_at: None,
        };
        if let Some(cid) = &order.client_order_id {
            self.st.client_ids.insert(c.user, cid.clone(), id);
        }
        tx.events.push(Event::OrderPlaced {
            order: order.clone(),
        });
        match c.fill_now {
            Some(at) => self.fill(tx, &mut order, at, false),
            None => {
                let limit = order.price.expect("validated limit price");
                order.reserve = math::reserve(limit, order.qty, order.leverage, spec.taker_fee_bps)
                    .expect("validated size");
                let u = self.st.users.get_mut(&c.user).expect("validated user");
                u.ledger(c.acct).order_reserved =
                    Dec(u.ledger(c.acct).order_reserved.raw() + order.reserve.raw());
                tx.touch(c.user, c.acct);
                tx.inval.push(Inval::Orders(c.user));
                let sym = self
                    .st
                    .symbols
                    .get_mut(&order.symbol)
                    .expect("validated symbol");
                sym.book.insert(order.side, limit, id);
                self.st.orders.insert(id, order.clone());
                tx.ops
                    .push(Op::InsertOrder(Box::new(order.clone()), tx.now));
            }
        }
        order
    }

    /// Fills `order` as `at` says: opens its position, charges the fee, releases any reserve.
    fn fill(
        &mut self,
        tx: &mut Tx,
        order: &mut Order,
        FillAt { px, margin, fee }: FillAt,
        was_resting: bool,
    ) {
        let spec = &self.st.symbols[&order.symbol].spec;
        let side = order.side.position_side();
        let liq = math::liquidation_price(side, px, order.leverage, spec.mmr_bps, spec.tick_size);
        // A market order placed without a client id is recorded only by its position, which
        // takes the order's id (schema.sql, the `orders` view): one row fewer per fill, which
        // is most of a signal fan-out's writing. The others keep their rows; their position
        // takes the next id of the sequence orders and positions share.
        let own_row =
            was_resting || order.order_type != OrderType::Market || order.client_order_id.is_some();
        let id = if own_row {
            self.st.last_ids.order += 1;
            self.st.last_ids.order
        } else {
            order.id
        };
        let position = Position {
            id,
            user_id: order.user_id,
            symbol: order.symbol.clone(),
            side,
            qty: order.qty,
            entry_price: px,
            leverage: order.leverage,
            margin,
            sl: order.sl,
            tp: order.tp,
            liquidation_price: liq,
            open_fee: fee,
            unrealized_pnl: Dec::ZERO,
            account_type: order.account_type,
            opened_at: tx.now,
            order_id: Some(order.id),
        };
        let l = self
            .st
            .users
            .get_mut(&order.user_id)
            .expect("order owner exists")
            .ledger(order.account_type);
        l.order_reserved = Dec(l.order_reserved.raw() - order.reserve.raw());
        l.margin_used = Dec(l.margin_used.raw() + margin.raw());
        l.wallet = Dec(l.wallet.raw() - fee.raw());
        tx.touch(order.user_id, order.account_type);
        order.reserve = Dec::ZERO;
        order.status = OrderStatus::Filled;
        order.fill_price = Some(px);
        order.fee = Some(fee);
        order.position_id = Some(position.id);
        order.filled_at = Some(tx.now);
        if was_resting {
            tx.ops
                .push(Op::UpdateOrder(Box::new(order.clone()), tx.now));
        } else if own_row {
            tx.ops
                .push(Op::InsertOrder(Box::new(order.clone()), tx.now));
        }
        tx.ops.push(Op::InsertPosition(Box::new(position.clone())));
        tx.inval.push(Inval::Positions(order.user_id));
        tx.events.push(Event::OrderFilled {
            order: order.clone(),
        });
        tx.events.push(Event::PositionOpened {
            position: position.clone(),
        });
        self.st
            .symbols
            .get_mut(&order.symbol)
            .expect("symbol")
            .triggers
            .insert(&position);
        self.st.positions.insert(position.id, position);
    }

    /// Cancels a pending order of `user`.
    pub fn cancel_order(&mut self, user: Id, id: Id, reply: Reply<Order>) {
        let Some(order) = self
            .st
            .orders
            .get(&id)
            .filter(|o| o.user_id == user)
            .cloned()
        else {
            let get = crate::store::tables::orders::get;
            return self.refuse_not_open("order", get, id, move |o| o.user_id == user, reply);
        };
        let mut tx = Tx::new(crate::domain::model::now_ms());
        let mut order = self.st.orders.remove(&id).unwrap_or(order);
        if let (Some(sym), Some(px)) = (self.st.symbols.get_mut(&order.symbol), order.price) {
            sym.book.remove(order.side, px, id);
        }
        self.cancel(&mut tx, &mut order);
        self.commit(tx, order, reply);
    }

    /// Cancels `order`, already taken out of the pending map and the book: releases its
    /// reserve and records the change.
    fn cancel(&mut self, tx: &mut Tx, order: &mut Order) {
        let l = self
            .st
            .users
            .get_mut(&order.user_id)
            .expect("order owner exists")
            .ledger(order.account_type);
        l.order_reserved = Dec(l.order_reserved.raw() - order.reserve.raw());
        tx.touch(order.user_id, order.account_type);
        order.reserve = Dec::ZERO;
        order.status = OrderStatus::Cancelled;
        tx.ops
            .push(Op::UpdateOrder(Box::new(order.clone()), tx.now));
        tx.inval.push(Inval::Orders(order.user_id));
        tx.events.push(Event::OrderCancelled {
            order: order.clone(),
        });
    }

    /// The fill of resting `order` at `px` with `fee_bps`, if it may still fill under the
    /// symbol's current spec. Its leverage must be within the symbol's `max_leverage`: after
    /// the admin lowers it, the maintenance margin may exceed `1/leverage`, and the position
    /// would be born past its liquidation price. And its owner must be able to pay: the margin
    /// and fee must fit in what is available once the reserve is released. The reserve always
    /// covers them unless the symbol's fees were raised after it was taken.
    fn fill_for(
        &self,
        order: &Order,
        px: Dec,
        fee_bps: crate::domain::symbol::Bps,
    ) -> Option<FillAt> {
        if order.leverage > self.st.symbols[&order.symbol].spec.max_leverage {
            return None;
        }
        let at = FillAt::of(px, order.qty, order.leverage, fee_bps)?;
        let ledger = &self.st.users[&order.user_id].ledgers[order.account_type.index()];
        let room = ledger.available().raw() as i128 + order.reserve.raw() as i128;
        (at.cost() <= room).then_some(at)
    }

    /// Refuses with 409 when the row exists for this user but is no longer open, else 404. The
    /// lookup runs after every earlier command has committed, so a fill or close that is still
    /// on its way to disk is seen (it is already gone from memory).
    fn refuse_not_open<T: 'static, R: Send + 'static>(
        &mut self,
        what: &'static str,
        get: fn(&rusqlite::Connection, Id) -> rusqlite::Result<Option<T>>,
        id: Id,
        mine: impl Fn(&T) -> bool + Send + 'static,
        reply: Reply<R>,
    ) {
        let store = self.store.clone();
        self.after_earlier_commits(move |committed| {
            let found = committed.and_then(|()| Ok(store.read("why_not_open", |c| get(c, id))?));
            let err = match found {
                Ok(Some(row)) if mine(&row) => Error::Conflict(format!("{what} {id} is not open")),
                Ok(_) => Error::NotFound(what),
                Err(e) => e,
            };
            let _ = reply.send(Err(err));
        });
    }

    /// Closes an open position of `user` at the last price.
    pub fn close_position(&mut self, user: Id, id: Id, reply: Reply<Trade>) {
        let Some(p) = self.st.positions.get(&id).filter(|p| p.user_id == user) else {
            let get = crate::store::tables::trades::by_position;
            return self.refuse_not_open("position", get, id, move |t| t.user_id == user, reply);
        };
        let Some(exit) = self.st.symbols.get(&p.symbol).and_then(|s| s.last) else {
            let _ = reply.send(Err(Error::NoPrice(p.symbol.clone())));
            return;
        };
        let mut tx = Tx::new(crate::domain::model::now_ms());
        let trade = self.close(&mut tx, id, exit, CloseReason::Manual);
        self.commit(tx, trade, reply);
    }

    /// Closes position `id` at `exit`: realizes PnL, releases margin, writes the trade.
    fn close(&mut self, tx: &mut Tx, id: Id, exit: Dec, reason: CloseReason) -> Trade {
        let p = self.st.positions.remove(&id).expect("open position");
        let sym = self
            .st
            .symbols
            .get_mut(&p.symbol)
            .expect("symbol of an open position");
        sym.triggers.remove(&p);
        let taker = sym.spec.taker_fee_bps;
        let l = self
            .st
            .users
            .get_mut(&p.user_id)
            .expect("position owner exists")
            .ledger(p.account_type);
        let (gross, close_fee) = math::chargeable(
            math::gross_pnl(p.side, p.entry_price, exit, p.qty),
            math::close_fee(exit, p.qty, taker),
            Dec(l.available().raw() + p.margin.raw()),
            Dec(MAX_WALLET.raw() - l.wallet.raw()),
        );
        l.wallet =
            math::to_dec(l.wallet.raw() as i128 + gross.raw() as i128 - close_fee.raw() as i128);
        l.margin_used = Dec(l.margin_used.raw() - p.margin.raw());
        tx.touch(p.user_id, p.account_type);
        self.st.last_ids.trade += 1;
        let trade = Trade {
            id: self.st.last_ids.trade,
            position_id: p.id,
            user_id: p.user_id,
            symbol: p.symbol.clone(),
            side: p.side,
            qty: p.qty,
            entry_price: p.entry_price,
            exit_price: exit,
            open_fee: p.open_fee,
            close_fee,
            pnl: math::to_dec(
                gross.raw() as i128 - p.open_fee.raw() as i128 - close_fee.raw() as i128,
            ),
            reason,
            account_type: p.account_type,
            opened_at: p.opened_at,
            closed_at: tx.now,
        };
        tx.ops.push(Op::DeletePosition(p.id));
        tx.ops.push(Op::InsertTrade(
            Box::new(trade.clone()),
            trades::Opening::of(&p),
        ));
        tx.inval.push(Inval::Positions(p.user_id));
        tx.events.push(Event::PositionClosed {
            trade: trade.clone(),
        });
        trade
    }

    /// Applies a batch of ticks in order (API.md §1 "Ticks"); answers once all is committed.
    pub fn ingest_ticks(&mut self, ticks: Vec<Tick>, reply: Reply<TickOutcome>) {
        let now = crate::domain::model::now_ms();
        for t in &ticks {
            if !self.st.symbols.contains_key(&t.symbol) {
                let _ = reply.send(Err(Error::UnknownSymbol(t.symbol.clone())));
                return;
            }
            if !t.price.is_positive() || t.price > math::MAX_PRICE || t.ts.is_some_and(|ts| ts < 0)
            {
                let _ = reply.send(Err(Error::Invalid(format!(
                    "a tick needs 0 < price <= {} and ts >= 0",
                    math::MAX_PRICE
                ))));
                return;
            }
        }
        let mut tx = Tx::new(now);
        let mut out = TickOutcome {
            accepted: ticks.len(),
            ..TickOutcome::default()
        };
        let mut last_by_symbol: Vec<(String, Dec, Millis)> = Vec::new();
        for t in ticks {
            let ts = t.ts.unwrap_or(now);
            self.apply_tick(&mut tx, &t.symbol, t.price, ts, &mut out);
            match last_by_symbol.iter_mut().find(|(s, _, _)| *s == t.symbol) {
                Some(e) => (e.1, e.2) = (t.price, ts),
                None => last_by_symbol.push((t.symbol, t.price, ts)),
            }
        }
        for (s, p, ts) in last_by_symbol {
            tx.ops.push(Op::SetLastPrice(s.clone(), p, ts));
            tx.inval.push(Inval::Price(s, p, ts));
        }
        self.commit(tx, out, reply);
    }

    fn apply_tick(
        &mut self,
        tx: &mut Tx,
        symbol: &str,
        price: Dec,
        ts: Millis,
        out: &mut TickOutcome,
    ) {
        let sym = self.st.symbols.get_mut(symbol).expect("validated symbol");
        sym.last = Some(price);
        sym.last_ts = Some(ts);
        let maker = sym.spec.maker_fee_bps;
        for id in sym.book.crossed_by(price) {
            let mut order = self.st.orders.remove(&id).expect("booked order is pending");
            let limit = order.price.expect("resting orders are limits");
            self.st
                .symbols
                .get_mut(symbol)
                .expect("symbol")
                .book
                .remove(order.side, limit, id);
            match self.fill_for(&order, limit, maker) {
                Some(at) => {
                    tx.inval.push(Inval::Orders(order.user_id));
                    self.fill(tx, &mut order, at, true);
                    out.fills += 1;
                }
                None => {
                    self.cancel(tx, &mut order);
                    out.cancelled += 1;
                }
            }
        }
        let hits = self.st.symbols[symbol].triggers.triggered_by(price);
        for (trigger, pid) in hits {
            let p = &self.st.positions[&pid];
            let (exit, reason) = match trigger {
                Trigger::Liquidation => {
                    out.liquidations += 1;
                    (p.liquidation_price, CloseReason::Liquidation)
                }
                Trigger::StopLoss => {
                    out.stop_losses += 1;
                    (price, CloseReason::StopLoss)
                }
                Trigger::TakeProfit => {
                    out.take_profits += 1;
                    (p.tp.expect("tp trigger has a tp"), CloseReason::TakeProfit)
                }
            };
            self.close(tx, pid, exit, reason);
        }
    }

    /// Places a signal's market order for one follower (no reply of its own).
    pub(crate) fn place_for_signal(&mut self, tx: &mut Tx, user: Id, o: NewOrder) -> Result<Order> {
        let c = self.validate_order(user, &o, tx.now)?;
        Ok(self.accept_order(tx, c, o))
    }
}
