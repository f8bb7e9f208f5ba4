//! Per-symbol ordered books: resting limit orders (the matcher) and SL/TP/liquidation trigger
//! levels of open positions (the monitor). A tick finds what it crosses in O(log n + hits).

use crate::domain::model::{Id, Position, PositionSide, Side};
use crate::domain::money::Dec;
use std::collections::BTreeSet;

/// Resting limit orders of one symbol, by price then id (age).
#[derive(Default, Debug)]
pub struct OrderBook {
    buys: BTreeSet<(Dec, Id)>,
    sells: BTreeSet<(Dec, Id)>,
}

impl OrderBook {
    /// Adds a resting order.
    pub fn insert(&mut self, side: Side, price: Dec, id: Id) {
        match side {
            Side::Buy => self.buys.insert((price, id)),
            Side::Sell => self.sells.insert((price, id)),
        };
    }

    /// Removes a resting order.
    pub fn remove(&mut self, side: Side, price: Dec, id: Id) {
        match side {
            Side::Buy => self.buys.remove(&(price, id)),
            Side::Sell => self.sells.remove(&(price, id)),
        };
    }

    /// Orders a tick at `price` fills (buys with limit ≥ price, sells with limit ≤ price),
    /// oldest first.
    pub fn crossed_by(&self, price: Dec) -> Vec<Id> {
        let mut ids: Vec<Id> = self
            .buys
            .range((price, Id::MIN)..)
            .chain(self.sells.range(..=(price, Id::MAX)))
            .map(|&(_, id)| id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Resting orders in the book.
    pub fn len(&self) -> usize {
        self.buys.len() + self.sells.len()
    }

    /// True when nothing rests.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why a position's trigger fired, in the order a tick checks them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Trigger {
    /// Liquidation price reached (checked first).
    Liquidation,
    /// Stop loss reached.
    StopLoss,
    /// Take profit reached.
    TakeProfit,
}

/// Trigger levels of the open positions of one symbol.
#[derive(Default, Debug)]
pub struct TriggerBook {
    /// Fire when price ≤ level: long liquidation, long stop loss, short take profit.
    down: BTreeSet<(Dec, Id, Trigger)>,
    /// Fire when price ≥ level: short liquidation, short stop loss, long take profit.
    up: BTreeSet<(Dec, Id, Trigger)>,
}

fn levels(p: &Position) -> impl Iterator<Item = (bool, Dec, Trigger)> {
    let long = p.side == PositionSide::Long;
    [
        Some((long, p.liquidation_price, Trigger::Liquidation)),
        p.sl.map(|v| (long, v, Trigger::StopLoss)),
        p.tp.map(|v| (!long, v, Trigger::TakeProfit)),
    ]
    .into_iter()
    .flatten()
}

impl TriggerBook {
    /// Adds a position's levels.
    pub fn insert(&mut self, p: &Position) {
        for (down, level, t) in levels(p) {
            let set = if down { &mut self.down } else { &mut self.up };
            set.insert((level, p.id, t));
        }
    }

    /// Removes a position's levels.
    pub fn remove(&mut self, p: &Position) {
        for (down, level, t) in levels(p) {
            let set = if down { &mut self.down } else { &mut self.up };
            set.remove(&(level, p.id, t));
        }
    }

    /// Positions a tick at `price` triggers, one trigger per position (liquidation before stop
    /// loss before take profit), ordered by trigger kind then position id.
    pub fn triggered_by(&self, price: Dec) -> Vec<(Trigger, Id)> {
        let mut hits: Vec<(Trigger, Id)> = self
            .down
            .range((price, Id::MIN, Trigger::Liquidation)..)
            .chain(self.up.range(..=(price, Id::MAX, Trigger::TakeProfit)))
            .map(|&(_, id, t)| (t, id))
            .collect();
        // keep the first-checked trigger of each position
        hits.sort_unstable_by_key(|&(t, id)| (id, t));
        hits.dedup_by_key(|&mut (_, id)| id);
        hits.sort_unstable();
        hits
    }

    /// Levels held.
    pub fn len(&self) -> usize {
        self.down.len() + self.up.len()
    }

    /// True when no level is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::AccountType;

    fn d(s: &str) -> Dec {
        Dec::parse(s).unwrap()
    }

    fn pos(id: Id, side: PositionSide, liq: &str, sl: Option<&str>, tp: Option<&str>) -> Position {
        Position {
            id,
            user_id: 1,
            symbol: "BTCUSDT".into(),
            side,
            qty: d("1"),
            entry_price: d("100"),
            leverage: 10,
            margin: d("10"),
            sl: sl.map(d),
            tp: tp.map(d),
            liquidation_price: d(liq),
            open_fee: d("0"),
            unrealized_pnl: d("0"),
            account_type: AccountType::Demo,
            opened_at: 0,
            order_id: Some(id),
        }
    }

    #[test]
    fn order_book_crosses_inclusive_and_oldest_first() {
        let mut b = OrderBook::default();
        b.insert(Side::Buy, d("95"), 3);
        b.insert(Side::Buy, d("94"), 1);
        b.insert(Side::Sell, d("96"), 2);
        b.insert(Side::Sell, d("100"), 4);
        assert_eq!(b.crossed_by(d("95.5")), Vec::<Id>::new());
        assert_eq!(b.crossed_by(d("95")), vec![3]);
        assert_eq!(b.crossed_by(d("93")), vec![1, 3]);
        assert_eq!(b.crossed_by(d("96")), vec![2]);
        b.remove(Side::Buy, d("95"), 3);
        assert_eq!(b.crossed_by(d("90")), vec![1]);
        assert_eq!(b.len(), 3);
    }

    #[test]
    fn triggers_fire_in_contract_order() {
        let mut t = TriggerBook::default();
        let long = pos(1, PositionSide::Long, "90.5", Some("93"), Some("110"));
        let short = pos(2, PositionSide::Short, "109.5", Some("105"), Some("90"));
        t.insert(&long);
        t.insert(&short);
        assert!(t.triggered_by(d("100")).is_empty());
        assert_eq!(t.triggered_by(d("93")), vec![(Trigger::StopLoss, 1)]);
        // long liq and sl both crossed: liquidation wins; the short's tp at 90 too
        assert_eq!(
            t.triggered_by(d("90")),
            vec![(Trigger::Liquidation, 1), (Trigger::TakeProfit, 2)]
        );
        assert_eq!(
            t.triggered_by(d("110")),
            vec![(Trigger::Liquidation, 2), (Trigger::TakeProfit, 1)]
        );
        t.remove(&long);
        t.remove(&short);
        assert!(t.is_empty());
    }
}
