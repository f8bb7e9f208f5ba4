//! The records of the venue: users, configs, orders, positions, trades, balances, licenses.
//! Serialized exactly as API.md §2 "Objects" shows them.

use super::money::Dec;
use serde::{Deserialize, Serialize};

/// Row ids are SQLite INTEGER PRIMARY KEYs.
pub type Id = i64;
/// Milliseconds since the Unix epoch.
pub type Millis = i64;

macro_rules! text_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $var:ident = $txt:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vm])* $var),+ }
        impl $name {
            /// The text stored in SQLite and used in JSON.
            pub fn as_str(self) -> &'static str { match self { $($name::$var => $txt),+ } }
            /// Parses the stored / JSON text.
            pub fn parse(s: &str) -> Option<Self> { match s { $($txt => Some($name::$var),)+ _ => None } }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str(self.as_str()) }
        }
    };
}

text_enum!(
    /// Order side.
    Side { /// Buy, opens a long.
        Buy = "buy", /// Sell, opens a short.
        Sell = "sell" }
);
text_enum!(
    /// Position direction.
    PositionSide { /// Profits when the price rises.
        Long = "long", /// Profits when the price falls.
        Short = "short" }
);
text_enum!(
    /// Order type.
    OrderType { /// Fills at once at the last price.
        Market = "market", /// Fills at its price or better.
        Limit = "limit" }
);
text_enum!(
    /// Order lifecycle.
    OrderStatus { /// Resting in the book.
        Pending = "pending", /// Filled; opened a position.
        Filled = "filled", /// Cancelled by its owner.
        Cancelled = "cancelled" }
);
text_enum!(
    /// Which balance an operation uses.
    AccountType { /// Demo funds (default).
        Demo = "demo", /// Real-money bookkeeping; deposits by admin only.
        Real = "real" }
);
text_enum!(
    /// Why a position closed.
    CloseReason { /// A close request.
        Manual = "manual", /// The stop loss triggered.
        StopLoss = "stop_loss", /// The take profit triggered.
        TakeProfit = "take_profit", /// The liquidation price was reached.
        Liquidation = "liquidation" }
);

impl Side {
    /// The position a fill of this side opens.
    pub fn position_side(self) -> PositionSide {
        match self {
            Side::Buy => PositionSide::Long,
            Side::Sell => PositionSide::Short,
        }
    }
}

// the enum comes from `text_enum!`, which cannot mark a `#[default]` variant
#[allow(clippy::derivable_impls)]
impl Default for AccountType {
    fn default() -> Self {
        AccountType::Demo
    }
}

impl AccountType {
    /// Both account types, in index order.
    pub const ALL: [AccountType; 2] = [AccountType::Demo, AccountType::Real];
    /// Dense index (demo 0, real 1).
    pub fn index(self) -> usize {
        self as usize
    }
}

/// A user as returned by the API (never with its token).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct User {
    /// Id.
    pub id: Id,
    /// Display name.
    pub name: String,
    /// Optional Telegram chat id.
    pub telegram_id: Option<i64>,
    /// Creation time.
    pub created_at: Millis,
}

/// A user's trading configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Default)]
pub struct UserConfig {
    /// Strategy whose signals this user follows.
    pub strategy: Option<String>,
    /// Default leverage.
    pub leverage: Option<u32>,
    /// Percent of available balance a signal risks.
    pub risk_pct: Option<Dec>,
    /// Default stop-loss distance in percent.
    pub sl_pct: Option<Dec>,
    /// Default take-profit distance in percent.
    pub tp_pct: Option<Dec>,
    /// Account a signal trades on.
    pub account_type: AccountType,
}

/// Stored balance of one (user, account type).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ledger {
    /// Deposits + realized gross PnL − fees.
    pub wallet: Dec,
    /// Σ margins of open positions.
    pub margin_used: Dec,
    /// Σ reserves of pending orders.
    pub order_reserved: Dec,
    /// Σ deposits.
    pub deposited: Dec,
}

impl Ledger {
    /// wallet − margin_used − order_reserved.
    pub fn available(&self) -> Dec {
        Dec(self.wallet.raw() - self.margin_used.raw() - self.order_reserved.raw())
    }
}

/// A balance as the API returns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Balance {
    /// Account type.
    pub account_type: AccountType,
    /// Always USDT.
    pub currency: &'static str,
    /// See [`Ledger::wallet`].
    pub wallet: Dec,
    /// See [`Ledger::margin_used`].
    pub margin_used: Dec,
    /// See [`Ledger::order_reserved`].
    pub order_reserved: Dec,
    /// wallet − margin_used − order_reserved.
    pub available: Dec,
    /// Σ unrealized PnL of open positions at last prices.
    pub unrealized_pnl: Dec,
    /// wallet + unrealized_pnl.
    pub equity: Dec,
}

impl Balance {
    /// An account's balance from its ledger and the sum of its open positions' unrealized PnL
    /// (raw 10^-8 units, which may exceed `i64` before it is clamped like any amount).
    pub fn of(account_type: AccountType, l: &Ledger, upnl_raw: i128) -> Balance {
        let upnl = super::math::to_dec(upnl_raw).raw();
        Balance {
            account_type,
            currency: "USDT",
            wallet: l.wallet,
            margin_used: l.margin_used,
            order_reserved: l.order_reserved,
            available: l.available(),
            unrealized_pnl: Dec(upnl),
            equity: super::math::to_dec(l.wallet.raw() as i128 + upnl as i128),
        }
    }
}

/// An order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Order {
    /// Id.
    pub id: Id,
    /// Owner.
    pub user_id: Id,
    /// Symbol.
    pub symbol: String,
    /// Side.
    pub side: Side,
    /// Type.
    #[serde(rename = "type")]
    pub order_type: OrderType,
    /// Quantity.
    pub qty: Dec,
    /// Limit price (limit orders).
    pub price: Option<Dec>,
    /// Leverage.
    pub leverage: u32,
    /// Stop loss for the position it opens.
    pub sl: Option<Dec>,
    /// Take profit for the position it opens.
    pub tp: Option<Dec>,
    /// Account.
    pub account_type: AccountType,
    /// Status.
    pub status: OrderStatus,
    /// Funds held while pending.
    #[serde(skip)]
    pub reserve: Dec,
    /// Fill price once filled.
    pub fill_price: Option<Dec>,
    /// Fee paid on fill.
    pub fee: Option<Dec>,
    /// Position opened by the fill.
    pub position_id: Option<Id>,
    /// Client-chosen idempotency key.
    pub client_order_id: Option<String>,
    /// Creation time.
    pub created_at: Millis,
    /// Fill time.
    pub filled_at: Option<Millis>,
}

/// An open position.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Position {
    /// Id.
    pub id: Id,
    /// Owner.
    pub user_id: Id,
    /// Symbol.
    pub symbol: String,
    /// Direction.
    pub side: PositionSide,
    /// Quantity.
    pub qty: Dec,
    /// Entry price.
    pub entry_price: Dec,
    /// Leverage.
    pub leverage: u32,
    /// Margin held.
    pub margin: Dec,
    /// Stop loss.
    pub sl: Option<Dec>,
    /// Take profit.
    pub tp: Option<Dec>,
    /// Liquidation price.
    pub liquidation_price: Dec,
    /// Fee paid on opening.
    pub open_fee: Dec,
    /// Unrealized PnL at the last price (filled in on read).
    pub unrealized_pnl: Dec,
    /// Account.
    pub account_type: AccountType,
    /// Open time.
    pub opened_at: Millis,
    /// The order whose fill opened it; `None` for a position stored before schema version 4.
    /// When it equals `id`, the position is that order's only record (a market order without
    /// a client id: see the `orders` view in schema.sql).
    #[serde(skip)]
    pub order_id: Option<Id>,
}

/// Whether `c` would break or forge the text around it where a user's name or strategy is
/// shown (a chat reply, a bot message): a control character (a newline, a NUL, …), a line or
/// paragraph separator, or a bidirectional embedding, override or isolate. Names and
/// strategies may not hold one, and chat replaces one in older stored text.
pub fn breaks_text(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
        )
}

/// A user's closed trades summed up exactly (chat's `/pnl`): every trade counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TradeTotals {
    /// Trades counted.
    pub count: u64,
    /// Trades with a PnL above zero.
    pub wins: u64,
    /// Trades with a PnL below zero.
    pub losses: u64,
    /// The sum of their PnL, in raw units of 10⁻⁸ (`Dec::raw`); 128 bits, so that no number
    /// of trades overflows it.
    pub pnl_raw: i128,
    /// The sum of their open and close fees, in raw units of 10⁻⁸.
    pub fees_raw: i128,
}

impl TradeTotals {
    /// Counts one more trade.
    pub fn add(&mut self, pnl: Dec, open_fee: Dec, close_fee: Dec) {
        self.count += 1;
        match pnl.raw().signum() {
            1 => self.wins += 1,
            -1 => self.losses += 1,
            _ => {}
        }
        self.pnl_raw += i128::from(pnl.raw());
        self.fees_raw += i128::from(open_fee.raw()) + i128::from(close_fee.raw());
    }
}

/// A closed position's record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Trade {
    /// Id.
    pub id: Id,
    /// The closed position.
    pub position_id: Id,
    /// Owner.
    pub user_id: Id,
    /// Symbol.
    pub symbol: String,
    /// The position's direction.
    pub side: PositionSide,
    /// Quantity.
    pub qty: Dec,
    /// Entry price.
    pub entry_price: Dec,
    /// Exit price.
    pub exit_price: Dec,
    /// Fee paid on opening.
    pub open_fee: Dec,
    /// Fee paid on closing.
    pub close_fee: Dec,
    /// gross − open fee − close fee.
    pub pnl: Dec,
    /// Why it closed.
    pub reason: CloseReason,
    /// Account.
    pub account_type: AccountType,
    /// Open time.
    pub opened_at: Millis,
    /// Close time.
    pub closed_at: Millis,
}

/// A user's license.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct License {
    /// License type, e.g. `pro`.
    pub license_type: String,
    /// End of validity.
    pub end_date: Millis,
    /// Whether it is valid now.
    pub active: bool,
}

/// A promo code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Promo {
    /// Id.
    pub id: Id,
    /// The code users type.
    pub code: String,
    /// License type granted.
    pub license_type: String,
    /// Days granted.
    pub days: u32,
    /// Redemptions allowed in all.
    pub max_uses: u32,
    /// Redemptions so far.
    pub uses: u32,
    /// Last moment it can be redeemed.
    pub valid_until: Option<Millis>,
    /// Whether it can be redeemed at all.
    pub active: bool,
    /// Creation time.
    pub created_at: Millis,
}

/// The last price of a symbol.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Ticker {
    /// Symbol.
    pub symbol: String,
    /// Last price (null before the first tick).
    pub last: Option<Dec>,
    /// Time of the last tick.
    pub ts: Option<Millis>,
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}
