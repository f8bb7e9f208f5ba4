//! Events published after their write has committed, on an [`EventBus`].

use crate::domain::model::{AccountType, Id, Order, Position, Trade};
use parking_lot::Mutex;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::broadcast;
pub use tokio::sync::broadcast::error::RecvError;

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

/// Events the stream of every user's events holds for a listener that falls behind.
pub const ALL_CAPACITY: usize = 4096;
/// Events one user's stream holds for a listener that falls behind. A stream allocates all
/// its slots up front, about 40 bytes each, so each listened-to user costs about 10 KiB.
pub const USER_CAPACITY: usize = 256;

/// Where committed events go: one stream of every user's events, and one stream per user that
/// someone listens to (SSE).
///
/// Why per user: a signal to 10,000 followers commits 40,000 events at once. On one shared
/// stream, every single-user listener had to receive and discard all of them to find its
/// four, and a 4,096-event ring overwrote its own events before it got to them (`lagged`). A
/// user's stream holds only that user's events, and an event nobody listens to is dropped
/// without being wrapped or sent.
#[derive(Debug)]
pub struct EventBus {
    streams: Mutex<Streams>,
}

#[derive(Debug)]
struct Streams {
    /// Every user's events; `None` once the bus is closed.
    all: Option<broadcast::Sender<Arc<Event>>>,
    /// The streams of users with a listener.
    users: HashMap<Id, broadcast::Sender<Arc<Event>>>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus {
            streams: Mutex::new(Streams {
                all: Some(broadcast::channel(ALL_CAPACITY).0),
                users: HashMap::new(),
            }),
        }
    }
}

impl EventBus {
    /// Publishes `events` in order: each to the stream of every user, if anyone listens, and
    /// to its user's stream, if that user has a listener. The streams are looked up under
    /// the lock; sending (which wakes listeners) and dropping the unwanted events happen
    /// after it. Only the writer thread publishes, so the order holds.
    pub fn publish(&self, events: Vec<Event>) {
        let (all, users) = {
            let streams = self.streams.lock();
            let all = streams
                .all
                .as_ref()
                .filter(|tx| tx.receiver_count() > 0)
                .cloned();
            let users: Vec<_> = if streams.users.is_empty() {
                Vec::new()
            } else {
                events
                    .iter()
                    .map(|e| streams.users.get(&e.user_id()).cloned())
                    .collect()
            };
            (all, users)
        };
        if all.is_none() && users.is_empty() {
            return;
        }
        let mut users = users.into_iter();
        for e in events {
            let user = users.next().flatten();
            if all.is_none() && user.is_none() {
                continue;
            }
            let e = Arc::new(e);
            if let Some(tx) = user {
                let _ = tx.send(e.clone());
            }
            if let Some(tx) = &all {
                let _ = tx.send(e);
            }
        }
    }

    /// Every user's events from now on; a listener more than [`ALL_CAPACITY`] events behind
    /// gets [`RecvError::Lagged`].
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        match &self.streams.lock().all {
            Some(tx) => tx.subscribe(),
            // a receiver whose sender is gone: Closed at once
            None => broadcast::channel(1).1,
        }
    }

    /// One user's events from now on; a listener more than [`USER_CAPACITY`] of that user's
    /// events behind gets [`RecvError::Lagged`]. The id is not checked: a user who does not
    /// exist simply has no events.
    pub fn subscribe_user(self: &Arc<Self>, user: Id) -> UserEvents {
        let mut streams = self.streams.lock();
        let rx = match streams.all {
            Some(_) => streams
                .users
                .entry(user)
                .or_insert_with(|| broadcast::channel(USER_CAPACITY).0)
                .subscribe(),
            // closed: a receiver whose sender is gone, Closed at once
            None => broadcast::channel(1).1,
        };
        UserEvents {
            user,
            rx: Some(rx),
            bus: self.clone(),
        }
    }

    /// Ends every stream: listeners get what was published, then [`RecvError::Closed`]; later
    /// subscribers get `Closed` at once. Run at shutdown, so that SSE responses end.
    pub fn close(&self) {
        let mut streams = self.streams.lock();
        streams.all = None;
        streams.users.clear();
    }
}

/// A listener to one user's events; its user's stream is dropped with its last listener.
#[derive(Debug)]
pub struct UserEvents {
    user: Id,
    /// Some until drop.
    rx: Option<broadcast::Receiver<Arc<Event>>>,
    bus: Arc<EventBus>,
}

impl UserEvents {
    /// The next event, [`RecvError::Lagged`] with the number missed, or
    /// [`RecvError::Closed`] once the bus is closed.
    pub async fn recv(&mut self) -> Result<Arc<Event>, RecvError> {
        match self.rx.as_mut() {
            Some(rx) => rx.recv().await,
            None => Err(RecvError::Closed),
        }
    }
}

impl Drop for UserEvents {
    fn drop(&mut self) {
        // under the lock, so that a listener subscribing at the same time keeps the stream
        let mut streams = self.bus.streams.lock();
        drop(self.rx.take());
        if streams
            .users
            .get(&self.user)
            .is_some_and(|tx| tx.receiver_count() == 0)
        {
            streams.users.remove(&self.user);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(bus: &EventBus) -> usize {
        bus.streams.lock().users.len()
    }

    #[tokio::test]
    async fn a_users_stream_goes_with_its_last_listener() {
        let bus = Arc::new(EventBus::default());
        let (mut a, b) = (bus.subscribe_user(1), bus.subscribe_user(1));
        let other = bus.subscribe_user(2);
        assert_eq!(users(&bus), 2);
        drop(b);
        assert_eq!(users(&bus), 2, "user 1 still has a listener");
        bus.publish(vec![
            Event::ConfigChanged { user_id: 2 },
            Event::ConfigChanged { user_id: 1 },
        ]);
        assert_eq!(a.recv().await.unwrap().user_id(), 1);
        drop(a);
        assert_eq!(users(&bus), 1);
        drop(other);
        assert_eq!(users(&bus), 0, "a stream outlived its listeners");
        bus.close();
        assert!(matches!(
            bus.subscribe_user(1).recv().await,
            Err(RecvError::Closed)
        ));
        assert_eq!(users(&bus), 0, "a stream was made after the close");
    }
}
