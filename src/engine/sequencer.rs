//! The sequencer: one thread owns the trading [`State`] and applies commands strictly one at a
//! time. Each command validates first (a refusal changes nothing), then mutates memory, then
//! hands its row changes to the writer. The caller is answered from the writer's completion:
//! after COMMIT, after the caches were invalidated and after the events went out, so a stream
//! opened after an answer never gets that command's events.

use super::events::{Event, EventBus};
use super::hold::WriteHold;
use super::state::State;
use crate::cache::{AccountKey, Caches, CredKey, LastPrice, Secret, SymbolKey, UserKey};
use crate::domain::model::{AccountType, Id, Ledger, Millis};
use crate::domain::money::Dec;
use crate::error::{Error, Result};
use crate::store::Store;
use crate::store::ops::Op;
use crate::store::writer::Job;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Where a command's answer goes.
pub type Reply<T> = oneshot::Sender<Result<T>>;
/// A command: a closure run on the sequencer thread, or given the error that refused it
/// unrun (while writes keep failing, see [`super::hold`]).
pub type Command = Box<dyn FnOnce(Result<&mut Sequencer>) + Send>;

/// Counters of the sequencer, for `/metrics`.
#[derive(Debug, Default)]
pub struct SequencerStats {
    /// Commands sent and not yet taken.
    pub depth: AtomicU64,
    /// Whole-state reloads after a failed write.
    pub reloads: AtomicU64,
    /// Commands answered `unavailable` unrun, during a hold.
    pub held: AtomicU64,
}

/// A cache entry a committed command changed.
#[derive(Debug, Clone)]
pub enum Inval {
    /// The user's profile (user, config, bot, license).
    Profile(Id),
    /// A ledger's new value (write-through; the user's other balance entries go stale).
    Ledger(Id, AccountType, Ledger),
    /// The user's open positions.
    Positions(Id),
    /// The user's pending orders.
    Orders(Id),
    /// The user's credentials for one exchange (write-through with the decrypted value).
    Creds(Id, String, Arc<Secret>),
    /// A symbol's spec.
    Symbol(String),
    /// A symbol's new last price (write-through).
    Price(String, Dec, Millis),
}

/// The row changes, cache invalidations and events of one command.
pub struct Tx {
    /// Row changes.
    pub ops: Vec<Op>,
    /// Ledgers touched; saved (and the set cleared) by each `commit_part` and by `commit`.
    pub dirty: BTreeSet<(Id, AccountType)>,
    /// Cache entries to invalidate after COMMIT.
    pub inval: Vec<Inval>,
    /// Events to publish after the caller is answered.
    pub events: Vec<Event>,
    /// The command's time.
    pub now: Millis,
}

impl Tx {
    /// An empty change set at time `now`.
    pub fn new(now: Millis) -> Tx {
        Tx {
            ops: Vec::new(),
            dirty: BTreeSet::new(),
            inval: Vec::new(),
            events: Vec::new(),
            now,
        }
    }

    /// Marks a ledger changed.
    pub fn touch(&mut self, user: Id, acct: AccountType) {
        self.dirty.insert((user, acct));
    }
}

/// The single owner of trading state.
pub struct Sequencer {
    /// The state.
    pub st: State,
    /// The store.
    pub store: Arc<Store>,
    /// The caches.
    pub caches: Arc<Caches>,
    /// The event bus.
    pub events: Arc<EventBus>,
    /// Whether placing orders needs an active license.
    pub require_license: bool,
    epoch: i64,
    hold: WriteHold,
    /// The sequencer's own read connection: client order ids that memory no longer holds.
    lookup: rusqlite::Connection,
}

impl Sequencer {
    /// Loads the state from the database.
    pub fn new(
        store: Arc<Store>,
        caches: Arc<Caches>,
        events: Arc<EventBus>,
        require_license: bool,
    ) -> Result<Sequencer> {
        let st = store.read_all("load_state", State::load)?;
        let lookup = store.own_reader()?;
        Ok(Sequencer {
            st,
            lookup,
            store,
            caches,
            events,
            require_license,
            epoch: 0,
            hold: WriteHold::default(),
        })
    }

    /// Runs commands until the channel closes. During a hold (writes keep failing) a command
    /// is answered `unavailable` without running; the hold is checked before and after the
    /// resync, so no reload happens while one lasts.
    pub fn run(mut self, rx: std::sync::mpsc::Receiver<Command>, stats: Arc<SequencerStats>) {
        while let Ok(cmd) = rx.recv() {
            stats.depth.fetch_sub(1, Ordering::Relaxed);
            let mut held = self.held();
            if held.is_none() {
                self.resync_if_a_write_failed(&stats);
                held = self.held();
            }
            match held {
                Some(left) => {
                    stats.held.fetch_add(1, Ordering::Relaxed);
                    cmd(Err(Error::Unavailable(format!(
                        "the database is refusing writes ({} failed in a row); commands are \
                         refused for {} ms more, then tried again",
                        self.hold.in_a_row(),
                        left.as_millis().max(1)
                    ))));
                }
                None => cmd(Ok(&mut self)),
            }
        }
    }

    /// How much longer the hold refuses commands, if one is on.
    fn held(&mut self) -> Option<Duration> {
        if !self.hold.is_on() {
            return None;
        }
        let batches = self.store.stats().batches.load(Ordering::Relaxed);
        self.hold.remaining(batches, Instant::now())
    }

    /// After a failed batch, memory is ahead of the database: reload it and start a new epoch.
    /// From the third failure in a row, this also starts a hold.
    fn resync_if_a_write_failed(&mut self, stats: &SequencerStats) {
        if let Some(failed_epoch) = self.store.writer().take_failure() {
            stats.reloads.fetch_add(1, Ordering::Relaxed);
            let t0 = Instant::now();
            let reloaded = self.store.read_all("reload_state", State::load);
            let load_ms = t0.elapsed().as_millis() as u64;
            let batches = self.store.stats().batches.load(Ordering::Relaxed);
            if let Some(hold) = self.hold.failed(batches, Instant::now()) {
                tracing::warn!(
                    in_a_row = self.hold.in_a_row(),
                    hold_ms = hold.as_millis() as u64,
                    "writes keep failing; refusing commands for a while before trying again"
                );
            }
            match reloaded {
                Ok(st) => {
                    self.st = st;
                    self.epoch = failed_epoch + 1;
                    self.caches.clear_all();
                    tracing::warn!(
                        epoch = self.epoch,
                        load_ms,
                        "state reloaded after a failed write"
                    );
                }
                Err(e) => {
                    // keep refusing writes of the failed epoch until a reload succeeds
                    tracing::error!(error = %e, "state reload failed; will retry");
                    self.store.writer().flag_failure();
                }
            }
        }
    }

    /// Sends the row changes gathered so far as one part of a unit that the command's final
    /// [`commit`](Self::commit) completes: the writer starts on them while the command goes on,
    /// and commits them together with the rest. The part's cache invalidations and events stay
    /// in `tx`, so the final commit invalidates the whole unit and publishes its events, then
    /// answers. A [`commit`](Self::commit) of the same `tx` must follow:
    /// until it arrives, the writer holds the write transaction open.
    pub fn commit_part(&mut self, tx: &mut Tx) {
        self.save_dirty_ledgers(tx);
        // start the next part at this one's size (after a signal's small first part, its
        // parts are equal)
        let next = Vec::with_capacity(tx.ops.len());
        self.store.writer().submit(Job {
            ops: std::mem::replace(&mut tx.ops, next),
            epoch: self.epoch,
            continues: true,
            done: Box::new(drop),
        });
    }

    /// Adds a save of each ledger `tx` touched, with its invalidation and event, and clears
    /// the touched set.
    fn save_dirty_ledgers(&mut self, tx: &mut Tx) {
        for (user, acct) in std::mem::take(&mut tx.dirty) {
            if let Some(u) = self.st.users.get_mut(&user) {
                let ledger = *u.ledger(acct);
                tx.ops.push(Op::SaveBalance(user, acct, ledger, tx.now));
                tx.inval.push(Inval::Ledger(user, acct, ledger));
            }
            tx.events.push(Event::BalanceChanged {
                user_id: user,
                account_type: acct,
            });
        }
    }

    /// Sends a command's changes to the writer (the last part of a unit, if parts went
    /// before). After COMMIT the caches are invalidated, the events go out, and then `reply`
    /// gets `value`.
    pub fn commit<T: Send + 'static>(&mut self, mut tx: Tx, value: T, reply: Reply<T>) {
        self.save_dirty_ledgers(&mut tx);
        let caches = self.caches.clone();
        let bus = self.events.clone();
        let client_ids = self.st.client_ids.seal();
        #[cfg(test)]
        let gate = hold_after_answer::take(&self.caches);
        let Tx {
            ops, inval, events, ..
        } = tx;
        self.store.writer().submit(Job {
            ops,
            epoch: self.epoch,
            continues: false,
            done: Box::new(move |res| match res {
                Ok(()) => {
                    if let Some(ids) = client_ids {
                        ids.committed();
                    }
                    apply_invalidations(&caches, &inval);
                    bus.publish(events);
                    let _ = reply.send(Ok(value));
                    // nothing after the answer may be needed for a read to see this commit
                    #[cfg(test)]
                    if let Some(gate) = gate {
                        gate.park();
                    }
                }
                Err(e) => {
                    let _ = reply.send(Err(Error::from(e)));
                }
            }),
        });
    }

    /// The order `user` placed earlier under `cid`, if any (memory, else SQLite).
    pub fn placed_under(&mut self, user: Id, cid: &str) -> Result<Option<Id>> {
        let found = self.st.client_ids.find(&self.lookup, user, cid);
        Ok(found.map_err(crate::store::StoreError::from)?)
    }

    /// Answers after every earlier command has committed (no changes of its own).
    pub fn barrier<T: Send + 'static>(&mut self, value: T, reply: Reply<T>) {
        self.after_earlier_commits(move |r| {
            let _ = reply.send(r.map(|()| value));
        });
    }

    /// Runs `f` on the writer thread once every command submitted before has committed (or
    /// with the error of a failed batch).
    pub fn after_earlier_commits(&mut self, f: impl FnOnce(Result<()>) + Send + 'static) {
        self.store.writer().submit(Job {
            ops: Vec::new(),
            epoch: self.epoch,
            continues: false,
            done: Box::new(move |r| f(r.map_err(Error::from))),
        });
    }
}

/// Test-only: parks an engine's writer thread right after it has answered a commit, so a test
/// reads while nothing that follows the answer has run. A read-after-write test then fails on
/// every run, not now and then, if the caches were invalidated after the answer.
#[cfg(test)]
pub(crate) mod hold_after_answer {
    use crate::cache::Caches;
    use parking_lot::{Condvar, Mutex};
    use std::sync::Arc;

    /// The engines (by the address of their caches) whose next commit parks their writer.
    static ARMED: Mutex<Vec<(usize, Arc<Gate>)>> = Mutex::new(Vec::new());

    /// What a parked writer waits on: it goes on once `open` is true.
    pub(crate) struct Gate {
        open: Mutex<bool>,
        cv: Condvar,
    }

    impl Gate {
        /// Waits until the gate is opened.
        pub(super) fn park(&self) {
            let mut open = self.open.lock();
            while !*open {
                self.cv.wait(&mut open);
            }
        }
    }

    /// The armed gate: dropping it lets the writer go on.
    pub(crate) struct Armed(Arc<Gate>);

    impl Drop for Armed {
        fn drop(&mut self) {
            *self.0.open.lock() = true;
            self.0.cv.notify_all();
        }
    }

    fn key(caches: &Caches) -> usize {
        caches as *const Caches as usize
    }

    /// Parks the writer of the engine with `caches` after it answers the next command that
    /// commits (not one submitted before), until the result is dropped.
    pub(crate) fn arm(caches: &Caches) -> Armed {
        let gate = Arc::new(Gate {
            open: Mutex::new(false),
            cv: Condvar::new(),
        });
        ARMED.lock().push((key(caches), gate.clone()));
        Armed(gate)
    }

    /// The gate armed for this engine, if any, for the commit being submitted now.
    pub(super) fn take(caches: &Caches) -> Option<Arc<Gate>> {
        let mut armed = ARMED.lock();
        let i = armed.iter().position(|(k, _)| *k == key(caches))?;
        Some(armed.swap_remove(i).1)
    }
}

fn apply_invalidations(c: &Caches, inval: &[Inval]) {
    for i in inval {
        match i {
            Inval::Profile(u) => c.user_config.invalidate(&UserKey(*u)),
            Inval::Ledger(u, a, l) => c.balance.put(AccountKey(*u, *a), *l),
            Inval::Positions(u) => c.position.invalidate_stripe(*u as u64),
            Inval::Orders(u) => c.order.invalidate_stripe(*u as u64),
            Inval::Creds(u, ex, secret) => c
                .credentials
                .put(CredKey(*u, ex.clone()), Some(secret.clone())),
            Inval::Symbol(s) => {
                c.symbol_info.invalidate(&SymbolKey(Some(s.clone())));
                c.symbol_info.invalidate(&SymbolKey(None));
            }
            Inval::Price(s, p, ts) => {
                c.price.put(SymbolKey(Some(s.clone())), Some(*p));
                c.market_data.put(
                    SymbolKey(Some(s.clone())),
                    Some(LastPrice { price: *p, ts: *ts }),
                );
            }
        }
    }
}

/// Refuses unless `cond` holds.
pub fn ensure(cond: bool, msg: impl FnOnce() -> String) -> Result<()> {
    if cond {
        Ok(())
    } else {
        Err(Error::Invalid(msg()))
    }
}

#[cfg(test)]
mod tests {
    use super::hold_after_answer;
    use crate::domain::model::{AccountType, OrderStatus, OrderType, Side};
    use crate::domain::money::Dec;
    use crate::{Config, Engine, NewOrder, Tick};

    fn order(side: Side, price: Option<i64>) -> NewOrder {
        NewOrder {
            symbol: "BTCUSDT".into(),
            side,
            order_type: if price.is_some() {
                OrderType::Limit
            } else {
                OrderType::Market
            },
            qty: Dec::from_int(1),
            price: price.map(Dec::from_int),
            leverage: Some(10),
            sl: None,
            tp: None,
            account_type: None,
            client_order_id: None,
        }
    }

    /// Each write is read back through warm caches while its writer is parked just after the
    /// answer: the caches must already be fresh then, not a moment later.
    #[tokio::test]
    async fn the_caches_are_fresh_when_a_write_is_answered() {
        let dir = tempfile::tempdir().unwrap();
        let e = Engine::open(&Config {
            db: dir.path().join("t.db"),
            ..Default::default()
        })
        .unwrap();
        let (u, _) = e.create_user("alice", None).await.unwrap();
        let (u, demo) = (u.id, AccountType::Demo);
        let tick = Tick {
            symbol: "BTCUSDT".into(),
            price: Dec::from_int(100),
            ts: None,
        };
        e.ingest_ticks(vec![tick]).await.unwrap();
        let warm = |e: &Engine| {
            assert!(e.balance(u, demo).is_ok());
            assert!(e.positions(u, None).is_ok());
            assert!(e.orders(u, None).is_ok());
        };

        warm(&e);
        let held = hold_after_answer::arm(e.caches());
        e.deposit(u, Dec::from_int(1000), demo).await.unwrap();
        assert_eq!(e.balance(u, demo).unwrap().wallet, Dec::from_int(1000));
        drop(held);

        warm(&e);
        let held = hold_after_answer::arm(e.caches());
        let p = e.place_order(u, order(Side::Buy, None)).await.unwrap();
        assert_eq!(p.status, OrderStatus::Filled);
        let open = e.positions(u, None).unwrap();
        assert_eq!(open.len(), 1);
        assert_eq!(Some(open[0].id), p.position_id);
        assert_eq!(e.balance(u, demo).unwrap().margin_used, open[0].margin);
        drop(held);

        warm(&e);
        let held = hold_after_answer::arm(e.caches());
        let limit = e.place_order(u, order(Side::Buy, Some(90))).await.unwrap();
        let pending = e.orders(u, None).unwrap();
        assert_eq!(pending.iter().map(|o| o.id).collect::<Vec<_>>(), [limit.id]);
        assert!(e.balance(u, demo).unwrap().order_reserved > Dec::ZERO);
        drop(held);

        warm(&e);
        let held = hold_after_answer::arm(e.caches());
        e.cancel_order(u, limit.id).await.unwrap();
        assert!(e.orders(u, None).unwrap().is_empty());
        assert_eq!(e.balance(u, demo).unwrap().order_reserved, Dec::ZERO);
        drop(held);
    }
}
