//! The engine: the embedding API of litetrade. Writes go through the sequencer and answer after
//! COMMIT; reads go through the nine caches.
//!
//! ```no_run
//! # async fn demo() -> litetrade::Result<()> {
//! use litetrade::{Config, Engine, NewOrder, Tick};
//! use litetrade::domain::{model::{AccountType, Side}, money::Dec};
//! let engine = Engine::open(&Config { db: "bot.db".into(), ..Config::default() })?;
//! let (user, _token) = engine.create_user("alice", None).await?;
//! engine.deposit(user.id, Dec::from_int(1000), AccountType::Demo).await?;
//! engine.ingest_ticks(vec![Tick { symbol: "BTCUSDT".into(), price: Dec::from_int(30000), ts: None }]).await?;
//! let order = engine.place_order(user.id, NewOrder::market("BTCUSDT", Side::Buy, Dec::parse("0.01").unwrap())).await?;
//! println!("filled at {:?}", order.fill_price);
//! println!("{:?}", engine.balance(user.id, AccountType::Demo)?);
//! engine.close().await;
//! # Ok(()) }
//! ```

pub mod accounts;
pub mod book;
pub mod client_ids;
pub mod events;
pub mod hold;
pub mod reads;
pub mod restore;
pub mod secrets;
pub mod sequencer;
pub mod state;
pub mod trading;

use crate::cache::ttl::CacheStats;
use crate::cache::{Caches, Secret};
use crate::config::Config;
use crate::domain::model::{AccountType, Id, License, Order, Promo, Trade, User, UserConfig};
use crate::domain::money::Dec;
use crate::domain::symbol::{SymbolPatch, SymbolSpec};
use crate::error::{Error, Result};
use crate::store::Store;
use crate::store::stats::DbStatsSnapshot;
use accounts::{ConfigPatch, NewPromo, Signal, SignalOutcome};
use events::{Event, EventBus, UserEvents};
use parking_lot::Mutex;
use secrets::Vault;
use sequencer::{Command, Reply, Sequencer, SequencerStats};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use tokio::sync::{broadcast, oneshot};
use trading::{NewOrder, Placed, Placement, Tick, TickOutcome};

/// Masked view of stored credentials.
#[derive(Clone, Debug, serde::Serialize, PartialEq, Eq)]
pub struct MaskedCredentials {
    /// Exchange.
    pub exchange: String,
    /// The key with its middle hidden.
    pub api_key_masked: String,
}

/// A handle to a running engine; cheap to clone, `Send + Sync`.
///
/// **From async code.** The `async` methods are the writes: each sends one command to the
/// sequencer and answers once it has committed. A command once sent runs to its end even if
/// its future is dropped, so a `timeout` around [`Engine::place_order`] may still place the
/// order: give orders a `client_order_id` and retry with the same one. The plain methods are
/// the reads: a cache hit takes well under a microsecond, and a miss is one indexed query on
/// the read pool (waiting for a free connection, when all are busy, up to
/// `store.busy_timeout_ms`, at least a second); both are fine on an async worker.
/// [`Engine::open`] loads the
/// whole trading state and [`Engine::shutdown`] joins threads: call the first from a blocking
/// thread when the database is large, and use [`Engine::close`] rather than the second.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<Store>,
    caches: Arc<Caches>,
    vault: Vault,
    commands: Mutex<Option<std::sync::mpsc::Sender<Command>>>,
    seq_stats: Arc<SequencerStats>,
    events: Arc<EventBus>,
    thread: Mutex<Option<JoinHandle<()>>>,
    cfg: Config,
    /// Held until shutdown: one engine per database file.
    lock: Mutex<Option<std::fs::File>>,
    sweeper: Sweeper,
}

impl Engine {
    /// Opens (creating and migrating if needed) the database, rebuilds the books from it and
    /// starts the sequencer, the writer and the cache cleanup. A configuration that
    /// [`Config::check`] refuses is an `Invalid` error, before any file is touched.
    ///
    /// Beside the database it takes `<db>.lock` for as long as the engine runs (another
    /// engine on the same file is refused with [`Error::Locked`]) and keeps the key that seals
    /// stored credentials in `<db>.key` (created on first use), unless the process has
    /// `LITETRADE_SECRET_KEY` set: that one variable it reads itself. Every other setting comes
    /// from `cfg` alone; [`Config::apply_env`] applies the `LITETRADE_*` variables as `serve`
    /// does. It blocks for as long as loading the open orders and positions takes.
    pub fn open(cfg: &Config) -> Result<Engine> {
        cfg.check().map_err(|e| Error::Invalid(e.to_string()))?;
        let lock = lock_database(cfg)?;
        let store = Arc::new(Store::open(&cfg.db, cfg.store.clone())?);
        let caches = Arc::new(Caches::new(&cfg.caches));
        let sealed = store.read("credentials_sample", crate::store::tables::credentials::any)?;
        let vault = Vault::open(
            std::env::var("LITETRADE_SECRET_KEY").ok().as_deref(),
            &cfg.beside_db("key"),
            sealed
                .as_ref()
                .map(|(u, ex, nonce, ct)| (*u, ex.as_str(), nonce.as_slice(), ct.as_slice())),
        )?;
        let events = Arc::new(EventBus::default());
        let seq = Sequencer::new(
            store.clone(),
            caches.clone(),
            events.clone(),
            cfg.require_license,
        )?;
        let (tx, rx) = std::sync::mpsc::channel();
        let seq_stats = Arc::new(SequencerStats::default());
        let stats = seq_stats.clone();
        let thread = std::thread::Builder::new()
            .name("litetrade-sequencer".into())
            .spawn(move || seq.run(rx, stats))
            .map_err(|e| Error::Internal(format!("cannot start the sequencer: {e}")))?;
        let sweeper = Sweeper::start(&caches, cfg.caches.cleanup_interval_ms);
        Ok(Engine {
            inner: Arc::new(Inner {
                store,
                caches,
                vault,
                commands: Mutex::new(Some(tx)),
                seq_stats,
                events,
                thread: Mutex::new(Some(thread)),
                cfg: cfg.clone(),
                lock: Mutex::new(Some(lock)),
                sweeper,
            }),
        })
    }

    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Sequencer, Reply<T>) + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        let cmd: Command = Box::new(move |seq| match seq {
            Ok(seq) => f(seq, tx),
            Err(refused) => {
                let _ = tx.send(Err(refused));
            }
        });
        {
            let guard = self.inner.commands.lock();
            let sender = guard
                .as_ref()
                .ok_or(Error::Stopped("the engine is shutting down"))?;
            self.inner.seq_stats.depth.fetch_add(1, Ordering::Relaxed);
            if sender.send(cmd).is_err() {
                self.inner.seq_stats.depth.fetch_sub(1, Ordering::Relaxed);
                return Err(Error::Stopped("the engine has stopped"));
            }
        }
        rx.await
            .map_err(|_| Error::Stopped("the engine stopped before answering"))?
    }

    /// The configuration the engine runs with.
    pub fn config(&self) -> &Config {
        &self.inner.cfg
    }

    /// The store. Not public: its writer and its shutdown would let a caller write behind the
    /// sequencer's back, or stop the writer under a running sequencer.
    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The nine caches. Not public: a caller could plant an entry, or read a cached secret.
    pub(crate) fn caches(&self) -> &Caches {
        &self.inner.caches
    }

    /// Runs `f` on one of the engine's pooled read-only connections (`PRAGMA query_only`), for
    /// a report of your own: under the `store.query_timeout_ms` limit, in the query counters
    /// and the slow-query log under `name`. It bypasses the caches but never sees a write before
    /// its commit. It blocks while it waits for a connection and runs the query: in async
    /// code, run a long one on a blocking thread (`tokio::task::spawn_blocking`).
    pub fn read<T>(
        &self,
        name: &'static str,
        f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T>,
    ) -> Result<T> {
        Ok(self.inner.store.read(name, f)?)
    }

    /// The database's counters now: queries, slow queries, failures, pool waits, writer
    /// batches, checkpoints and WAL resets (as `GET /health/db-pool` and `/metrics` show them).
    pub fn db_stats(&self) -> DbStatsSnapshot {
        self.inner.store.stats().snapshot()
    }

    /// After [`Engine::shutdown`]: true when its last checkpoint could not empty the WAL (a
    /// full disk, for one), so `<db>-wal` still holds committed writes and must stay beside
    /// the database file. False while the engine runs.
    pub fn wal_left(&self) -> bool {
        self.inner.store.stats().wal_left.load(Ordering::Relaxed)
    }

    /// The read pool: its size, the connections open and those idle.
    pub fn pool_state(&self) -> (u32, u32, u32) {
        self.inner.store.pool_state()
    }

    /// Each cache's counters, by its API.md name (as `GET /stats/cache` shows them).
    pub fn cache_stats(&self) -> BTreeMap<&'static str, CacheStats> {
        self.inner.caches.stats()
    }

    /// Commands waiting for the sequencer.
    pub fn queue_depth(&self) -> u64 {
        self.inner.seq_stats.depth.load(Ordering::Relaxed)
    }

    /// The sequencer's counters: queue depth, state reloads after failed writes, and commands
    /// refused unrun while writes kept failing.
    pub fn sequencer_stats(&self) -> &SequencerStats {
        &self.inner.seq_stats
    }

    /// Events of every user, published after their write committed (see [`EventBus`]). The
    /// stream is one ring of [`events::ALL_CAPACITY`] events shared by every listener: a
    /// signal to many followers publishes several events per follower at once, and a listener
    /// that falls that far behind gets `Lagged` and has lost them. To notify users reliably,
    /// listen per user ([`Engine::subscribe_user`]) or re-read state after a `Lagged`.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.inner.events.subscribe()
    }

    /// One user's events, published after their write committed (see [`EventBus`]).
    pub fn subscribe_user(&self, user: Id) -> UserEvents {
        self.inner.events.subscribe_user(user)
    }

    /// Creates a user; returns it and its bearer token (shown only here; stored hashed).
    pub async fn create_user(
        &self,
        name: &str,
        telegram_id: Option<i64>,
    ) -> Result<(User, String)> {
        let token = secrets::new_token();
        let hash = secrets::hash_token(&token);
        let name = name.to_string();
        let user = self
            .call(move |s, r| s.create_user(name, telegram_id, hash, r))
            .await?;
        Ok((user, token))
    }

    /// Credits `amount` to a user's account; returns the new balance.
    pub async fn deposit(
        &self,
        user: Id,
        amount: Dec,
        acct: AccountType,
    ) -> Result<crate::domain::model::Balance> {
        self.call(move |s, r| s.deposit(user, amount, acct, r))
            .await?;
        // the credit is committed: an error now would invite a retry that credits it twice
        match self.balance(user, acct) {
            Ok(b) => Ok(b),
            Err(e) => {
                tracing::warn!(user, error = %e, "balance read after a deposit failed; answering from the sequencer's memory");
                self.call(move |s, r| s.balance_in_memory(user, acct, r))
                    .await
            }
        }
    }

    /// Applies a partial config update; returns the whole config.
    pub async fn set_config(&self, user: Id, patch: ConfigPatch) -> Result<UserConfig> {
        self.call(move |s, r| s.set_config(user, patch, r)).await
    }

    /// Switches a user's bot on or off (effective for the next signal).
    pub async fn set_bot_enabled(&self, user: Id, enabled: bool) -> Result<bool> {
        self.call(move |s, r| s.set_bot(user, enabled, r)).await
    }

    /// Places an order (API.md §1). A repeated client_order_id returns the first order.
    pub async fn place_order(&self, user: Id, order: NewOrder) -> Result<Order> {
        Ok(self.place_order_once(user, order).await?.order)
    }

    /// Places an order like [`Engine::place_order`], and also says whether the answer is the
    /// order an earlier request with the same client_order_id made (`replayed`).
    pub async fn place_order_once(&self, user: Id, order: NewOrder) -> Result<Placement> {
        Ok(
            match self.call(move |s, r| s.place_order(user, order, r)).await? {
                Placed::New(o) => Placement {
                    order: *o,
                    replayed: false,
                },
                Placed::Existing(id) => Placement {
                    order: self.order(user, id)?,
                    replayed: true,
                },
            },
        )
    }

    /// Cancels a pending order; its reserve is released.
    pub async fn cancel_order(&self, user: Id, order: Id) -> Result<Order> {
        self.call(move |s, r| s.cancel_order(user, order, r)).await
    }

    /// Closes an open position at the symbol's last price.
    pub async fn close_position(&self, user: Id, position: Id) -> Result<Trade> {
        self.call(move |s, r| s.close_position(user, position, r))
            .await
    }

    /// Applies price ticks in order; returns once every effect is committed and visible. One
    /// tick that is refused (an unknown symbol, a price out of range) refuses the whole batch.
    pub async fn ingest_ticks(&self, ticks: Vec<Tick>) -> Result<TickOutcome> {
        self.call(move |s, r| s.ingest_ticks(ticks, r)).await
    }

    /// Fans a strategy signal out to its followers.
    pub async fn submit_signal(&self, signal: Signal) -> Result<SignalOutcome> {
        self.call(move |s, r| s.submit_signal(signal, r)).await
    }

    /// Inserts or updates a symbol.
    pub async fn upsert_symbol(&self, spec: SymbolSpec) -> Result<SymbolSpec> {
        self.call(move |s, r| s.upsert_symbol(spec, r)).await
    }

    /// Updates the fields of a symbol's spec that `patch` names (a new symbol starts from the
    /// defaults); returns the whole spec. The merge happens on the sequencer, against the spec
    /// in force, so no concurrent update is lost.
    pub async fn patch_symbol(&self, symbol: &str, patch: SymbolPatch) -> Result<SymbolSpec> {
        let symbol = symbol.to_string();
        self.call(move |s, r| s.patch_symbol(symbol, patch, r))
            .await
    }

    /// Creates a promo code.
    pub async fn create_promo(&self, promo: NewPromo) -> Result<Promo> {
        self.call(move |s, r| s.create_promo(promo, r)).await
    }

    /// Redeems a promo code for a user.
    pub async fn redeem_promo(&self, user: Id, code: &str) -> Result<License> {
        let code = code.to_string();
        self.call(move |s, r| s.redeem_promo(user, code, r)).await
    }

    /// Stores exchange credentials encrypted; returns the masked view.
    pub async fn set_credentials(
        &self,
        user: Id,
        exchange: &str,
        api_key: &str,
        api_secret: &str,
    ) -> Result<MaskedCredentials> {
        let ok = !exchange.is_empty()
            && exchange.len() <= 32
            && exchange
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        sequencer::ensure(ok, || {
            "exchange must be 1-32 characters of A-Z, a-z, 0-9, _ or -".into()
        })?;
        sequencer::ensure(
            !api_key.is_empty()
                && api_key.chars().count() <= 512
                && api_secret.chars().count() <= 512,
            || "api_key must be 1-512 characters, api_secret at most 512".into(),
        )?;
        let secret = Arc::new(Secret {
            api_key: api_key.into(),
            api_secret: api_secret.into(),
        });
        let sealed = self.inner.vault.seal(user, exchange, &secret);
        let masked = MaskedCredentials {
            exchange: exchange.into(),
            api_key_masked: secrets::mask(api_key),
        };
        let ex = exchange.to_string();
        self.call(move |s, r| s.set_credentials(user, ex, sealed, secret, r))
            .await?;
        Ok(masked)
    }

    /// Writes a consistent copy of the live database, and its key, to `dest` (see
    /// [`backup_database`]).
    pub fn backup_to(&self, dest: &std::path::Path) -> Result<()> {
        backup_database(self.config(), dest, &|_, _| {}).map(drop)
    }

    /// [`Engine::shutdown`] for async code: the same stop, run on tokio's blocking pool so that
    /// no runtime worker waits for the engine's threads to join.
    pub async fn close(&self) {
        let engine = self.clone();
        // the task fails only if `shutdown` panicked, and then there is nothing left to stop
        let _ = tokio::task::spawn_blocking(move || engine.shutdown()).await;
    }

    /// Stops the sequencer, commits everything queued, checkpoints the WAL, ends the event
    /// streams and releases the database's lock. Idempotent. Writes called afterwards answer
    /// [`Error::Stopped`]; reads still answer from the caches and the database. It blocks
    /// while the threads finish: from async code use [`Engine::close`]. Dropping the last
    /// handle does the same.
    pub fn shutdown(&self) {
        drop(self.inner.commands.lock().take());
        if let Some(t) = self.inner.thread.lock().take() {
            let _ = t.join();
        }
        self.inner.store.shutdown();
        self.inner.sweeper.stop();
        self.close_events();
        drop(self.inner.lock.lock().take());
    }

    /// Ends every event stream: listeners get what was already published, then the end (SSE
    /// responses finish). Later subscribers get the end at once. `api::serve` runs it when
    /// told to stop, so open SSE connections do not hold up a graceful shutdown.
    pub fn close_events(&self) {
        self.inner.events.close();
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        drop(self.commands.lock().take());
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
        self.store.shutdown();
        self.sweeper.stop();
        // listeners hold the bus, not the engine: end their streams
        self.events.close();
    }
}

/// Writes a consistent copy of `cfg.db` to `dest` with SQLite's online backup (safe beside a
/// running engine), and copies the key that seals its stored credentials, `<db>.key`, to
/// `<dest>.key`: a copy without it could not open them. Both copies are mode 0600; an existing
/// destination is refused before anything is written, and nothing is left at `dest` when either
/// copy fails. Returns the key copy's path (`None` without a key file, as when the key comes
/// from `LITETRADE_SECRET_KEY`). `progress(done_pages, total_pages)`.
pub fn backup_database(
    cfg: &Config,
    dest: &std::path::Path,
    progress: &dyn Fn(u64, u64),
) -> Result<Option<std::path::PathBuf>> {
    let key = cfg.beside_db("key");
    let dest_key = key
        .exists()
        .then(|| crate::store::files::with_suffix(dest, ".key"));
    if let Some(k) = dest_key.as_ref().filter(|k| k.exists()) {
        // name every target that is in the way, so one fix clears them all
        let taken = if dest.exists() {
            format!("{} and {} already exist", dest.display(), k.display())
        } else {
            format!("{} already exists", k.display())
        };
        return Err(Error::Unavailable(format!(
            "backup to {}: {taken}",
            dest.display()
        )));
    }
    refuse_hard_links(&cfg.db)?;
    crate::store::backup_file(&cfg.db, dest, progress)?;
    if let Some(k) = &dest_key {
        let copied = std::fs::read(&key)
            .and_then(|bytes| crate::store::files::write_private_file(k, &bytes))
            .map_err(|e| {
                Error::Unavailable(format!("cannot copy the key file to {}: {e}", k.display()))
            });
        if let Err(e) = copied {
            let _ = std::fs::remove_file(dest);
            return Err(e);
        }
    }
    Ok(dest_key)
}

/// Takes an exclusive lock on `<db>.lock` so that two engines never own one database (each would
/// hold its own in-memory books and they would diverge). `seed`, which writes rows behind an
/// engine's back, takes it too. The lock lasts as long as the returned file is open.
///
/// The lock is named after the file's real path, so a symlink to a database in use is refused
/// like the database itself. A database file with more than one hard link is refused outright:
/// the lock could not follow every name, and SQLite names its `-wal` and `-shm` files after
/// the path it is given, so two names would each get a WAL of their own and corrupt the file.
pub fn lock_database(cfg: &Config) -> Result<std::fs::File> {
    if let Some(dir) = cfg
        .db
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && !d.is_dir())
    {
        return Err(Error::Unavailable(format!(
            "cannot open database {}: directory {} does not exist",
            cfg.db.display(),
            dir.display()
        )));
    }
    refuse_hard_links(&cfg.db)?;
    let real = crate::store::files::real_path(&cfg.db);
    let path = crate::store::files::with_suffix(&real, ".lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| {
            Error::Unavailable(format!("cannot open lock file {}: {e}", path.display()))
        })?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Locked(format!(
            "another litetrade process is using {} (lock {} is held)",
            cfg.db.display(),
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::Unavailable(format!(
            "cannot lock {}: {e}",
            path.display()
        ))),
    }
}

/// Refuses a database file that more than one directory entry names. SQLite keeps a `-wal`
/// beside each name it is opened by: writes through two names corrupt the file, and a read
/// through the other name (a backup, an integrity check) misses what the server's WAL holds.
/// A file that does not exist yet is fine.
pub fn refuse_hard_links(db: &std::path::Path) -> Result<()> {
    let real = crate::store::files::real_path(db);
    match std::fs::metadata(&real).map(|m| hard_links(&m)) {
        Ok(links) if links > 1 => Err(Error::Unavailable(format!(
            "database {} has {links} hard links: SQLite keeps a -wal file beside each name, so \
             two names would corrupt it or read it without its WAL; keep one name and remove \
             the other links",
            db.display()
        ))),
        _ => Ok(()),
    }
}

/// How many directory entries name the file (1 where the platform does not say).
#[cfg(unix)]
fn hard_links(m: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::nlink(m)
}

/// How many directory entries name the file (1 where the platform does not say).
#[cfg(not(unix))]
fn hard_links(_: &std::fs::Metadata) -> u64 {
    1
}

/// The thread that sweeps expired entries out of the caches every `cleanup_interval_ms`, until
/// the engine shuts down or is dropped.
struct Sweeper {
    /// Dropping it wakes the thread and ends it.
    stop: Mutex<Option<std::sync::mpsc::Sender<()>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Sweeper {
    fn start(caches: &Arc<Caches>, every_ms: u64) -> Sweeper {
        let caches = caches.clone();
        let every = std::time::Duration::from_millis(every_ms.max(10));
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("litetrade-cache-cleanup".into())
            .spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(every)
                {
                    let n = caches.sweep();
                    tracing::debug!(expired = n, "cache sweep");
                }
            })
            .inspect_err(|e| tracing::warn!(error = %e, "cache cleanup thread not started"))
            .ok();
        Sweeper {
            stop: Mutex::new(Some(stop)),
            thread: Mutex::new(thread),
        }
    }

    /// Ends the thread and waits for it (at most one sweep). Idempotent.
    fn stop(&self) {
        drop(self.stop.lock().take());
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }
}
