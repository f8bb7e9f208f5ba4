//! The sequencer's in-memory trading state, rebuilt from the database on start and after a
//! failed write.

use super::book::{OrderBook, TriggerBook};
use super::client_ids::ClientIds;
use crate::domain::model::{
    AccountType, Id, Ledger, Millis, Order, OrderStatus, Position, Promo, UserConfig,
};
use crate::domain::money::Dec;
use crate::domain::symbol::SymbolSpec;
use crate::store::tables::{
    balances, config, licenses, orders, positions, signals, symbols, trades, users,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// One symbol: spec, last price, books.
#[derive(Debug)]
pub struct SymState {
    /// Rules.
    pub spec: SymbolSpec,
    /// Last price.
    pub last: Option<Dec>,
    /// Time of the last price.
    pub last_ts: Option<Millis>,
    /// Resting limit orders.
    pub book: OrderBook,
    /// Trigger levels of open positions.
    pub triggers: TriggerBook,
}

/// One user's trading-relevant state.
#[derive(Debug, Default)]
pub struct UserState {
    /// Config.
    pub config: UserConfig,
    /// Bot switch.
    pub bot: bool,
    /// Ledgers by account index.
    pub ledgers: [Ledger; 2],
    /// License type → end time.
    pub licenses: HashMap<String, Millis>,
}

impl UserState {
    /// The ledger of one account.
    pub fn ledger(&mut self, a: AccountType) -> &mut Ledger {
        &mut self.ledgers[a.index()]
    }

    /// True when some license is valid at `now`.
    pub fn licensed(&self, now: Millis) -> bool {
        self.licenses.values().any(|&end| end > now)
    }
}

/// Everything the sequencer owns.
///
/// The maps that grow with use (users, orders, positions) are B-trees: a
/// hash map doubles its table when it fills, and each rehash stopped the sequencer, and so
/// every command behind it: 8–44 ms as open positions grew to 115k (BENCHMARKS.md §9d), and
/// 55–60 ms at about the 114,689th user. A B-tree grows a node at a time. Symbols and promos stay
/// small.
#[derive(Debug, Default)]
pub struct State {
    /// Symbols by name.
    pub symbols: HashMap<String, SymState>,
    /// Users by id.
    pub users: BTreeMap<Id, UserState>,
    /// Pending limit orders by id.
    pub orders: BTreeMap<Id, Order>,
    /// Open positions by id.
    pub positions: BTreeMap<Id, Position>,
    /// Every client order id used: a filter of all of them, the ids whose orders may not be
    /// committed yet, and SQLite's index for the rest.
    pub client_ids: ClientIds,
    /// Promo codes by code.
    pub promos: HashMap<String, Promo>,
    /// (promo id, user) pairs redeemed: one per redemption ever made, so a B-tree like the
    /// other maps that grow (no rehash of the whole set as it grows).
    pub redeemed: BTreeSet<(Id, Id)>,
    /// Strategy → users following it.
    pub followers: HashMap<String, BTreeSet<Id>>,
    /// Last ids handed out.
    pub last_ids: LastIds,
}

/// The highest id of each kind handed out so far.
#[derive(Debug, Default, Clone, Copy)]
pub struct LastIds {
    /// Users.
    pub user: Id,
    /// Orders and positions: one sequence, so that a market order and the position that is
    /// its only record can share an id (schema.sql, the `orders` view).
    pub order: Id,
    /// Trades.
    pub trade: Id,
    /// Signals.
    pub signal: Id,
    /// Promo codes.
    pub promo: Id,
}

impl State {
    /// Loads the whole trading state through one read transaction.
    pub fn load(conn: &rusqlite::Connection) -> rusqlite::Result<State> {
        let tx = conn.unchecked_transaction()?;
        let mut st = State::default();
        for (spec, last, last_ts) in symbols::all(&tx)? {
            st.symbols.insert(
                spec.symbol.clone(),
                SymState {
                    spec,
                    last,
                    last_ts,
                    book: OrderBook::default(),
                    triggers: TriggerBook::default(),
                },
            );
        }
        for id in users::all_ids(&tx)? {
            st.users.insert(id, UserState::default());
            st.last_ids.user = st.last_ids.user.max(id);
        }
        for (id, cfg, bot) in config::all(&tx)? {
            if let Some(strategy) = &cfg.strategy {
                st.followers.entry(strategy.clone()).or_default().insert(id);
            }
            let u = st.users.entry(id).or_default();
            u.config = cfg;
            u.bot = bot;
        }
        for (id, acct, ledger) in balances::all(&tx)? {
            *st.users.entry(id).or_default().ledger(acct) = ledger;
        }
        for (id, lt, end) in licenses::all_licenses(&tx)? {
            st.users.entry(id).or_default().licenses.insert(lt, end);
        }
        for o in orders::all_pending(&tx)? {
            if let (Some(sym), Some(price)) = (st.symbols.get_mut(&o.symbol), o.price) {
                sym.book.insert(o.side, price, o.id);
            }
            st.orders.insert(o.id, o);
        }
        orders::each_client_id(&tx, |user, cid| st.client_ids.load(user, cid))?;
        for p in positions::all(&tx)? {
            if let Some(sym) = st.symbols.get_mut(&p.symbol) {
                sym.triggers.insert(&p);
            }
            st.positions.insert(p.id, p);
        }
        for p in licenses::all_promos(&tx)? {
            st.promos.insert(p.code.clone(), p);
        }
        st.redeemed = licenses::all_redemptions(&tx)?.into_iter().collect();
        st.last_ids.order = orders::max_id(&tx)?;
        st.last_ids.trade = trades::max_id(&tx)?;
        st.last_ids.signal = signals::max_id(&tx)?;
        st.last_ids.promo = licenses::max_promo_id(&tx)?;
        debug_assert!(st.orders.values().all(|o| o.status == OrderStatus::Pending));
        Ok(st)
    }
}
