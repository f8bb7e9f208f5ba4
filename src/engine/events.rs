//! Events published on a broadcast bus after their write has committed.

use crate::domain::model::{AccountType, Id, Order, Position, Trade};
use serde::Serialize;

/// Something that happened to one user's state (committed before it is published).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// An order was accepted (pending or about to fill).
    OrderPlaced {
        /// The order.
        order: Order,
    },
    /// An order filled.
    OrderFilled {
        /// The order.
        order: Order,
    },
    /// An order was cancelled.
    OrderCancelled {
        /// The order.
        order: Order,
    },
    /// A position opened.
    PositionOpened {
        /// The position.
        position: Position,
    },
    /// A position closed (the trade says why).
    PositionClosed {
        /// The trade record.
        trade: Trade,
    },
    /// A balance changed.
    BalanceChanged {
        /// User.
        user_id: Id,
        /// Account.
        account_type: AccountType,
    },
    /// The user's config changed.
    ConfigChanged {
        /// User.
        user_id: Id,
    },
    /// Credentials for an exchange changed.
    CredentialsChanged {
        /// User.
        user_id: Id,
        /// Exchange.
        exchange: String,
    },
    /// A license was granted or extended.
    LicenseChanged {
        /// User.
        user_id: Id,
    },
    /// The bot was switched on or off.
    BotToggled {
        /// User.
        user_id: Id,
        /// New state.
        enabled: bool,
    },
}

impl Event {
    /// The user this event belongs to.
    pub fn user_id(&self) -> Id {
        match self {
            Event::OrderPlaced { order }
            | Event::OrderFilled { order }
            | Event::OrderCancelled { order } => order.user_id,
            Event::PositionOpened { position } => position.user_id,
            Event::PositionClosed { trade } => trade.user_id,
            Event::BalanceChanged { user_id, .. }
            | Event::ConfigChanged { user_id }
            | Event::CredentialsChanged { user_id, .. }
            | Event::LicenseChanged { user_id }
            | Event::BotToggled { user_id, .. } => *user_id,
        }
    }

    /// The event's name (`type` in JSON).
    pub fn kind(&self) -> &'static str {
        match self {
            Event::OrderPlaced { .. } => "order_placed",
            Event::OrderFilled { .. } => "order_filled",
            Event::OrderCancelled { .. } => "order_cancelled",
            Event::PositionOpened { .. } => "position_opened",
            Event::PositionClosed { .. } => "position_closed",
            Event::BalanceChanged { .. } => "balance_changed",
            Event::ConfigChanged { .. } => "config_changed",
            Event::CredentialsChanged { .. } => "credentials_changed",
            Event::LicenseChanged { .. } => "license_changed",
            Event::BotToggled { .. } => "bot_toggled",
        }
    }
}
