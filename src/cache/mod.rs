//! The nine TTL caches in front of every read (API.md §3), their keys, invalidation and stats.

pub mod clock;
pub mod ttl;

use crate::domain::model::{AccountType, Id, Ledger, License, Order, Position, User, UserConfig};
use crate::domain::money::Dec;
use crate::domain::symbol::SymbolSpec;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use ttl::{CacheKey, CacheStats, TtlCache};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// TTL and capacity of one cache.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CacheSpec {
    /// Time to live, ms.
    pub ttl_ms: u64,
    /// Most entries.
    pub capacity: usize,
}

const fn spec(ttl_s: u64, capacity: usize) -> CacheSpec {
    CacheSpec {
        ttl_ms: ttl_s * 1000,
        capacity,
    }
}

/// Tunables of the nine caches (defaults from API.md §3). In a config file every field is
/// optional, down to a cache's `ttl_ms` or `capacity` alone (see [`CacheConfigFile`]).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(from = "CacheConfigFile")]
pub struct CacheConfig {
    /// user → profile, config, bot switch, licenses.
    pub user_config: CacheSpec,
    /// (user, account) → ledger.
    pub balance: CacheSpec,
    /// (user, account) → open positions.
    pub position: CacheSpec,
    /// (user, account) → pending orders.
    pub order: CacheSpec,
    /// symbol → ticker.
    pub market_data: CacheSpec,
    /// (user, exchange) → decrypted credentials.
    pub credentials: CacheSpec,
    /// symbol → last price.
    pub price: CacheSpec,
    /// symbol → spec (and the list of all).
    pub symbol_info: CacheSpec,
    /// analytics answers (may lag by their TTL).
    pub api_response: CacheSpec,
    /// How often expired entries are swept, ms.
    pub cleanup_interval_ms: u64,
}

/// One cache's settings as a config file gives them: either may be left out.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheSpecFile {
    /// Time to live, ms.
    pub ttl_ms: Option<u64>,
    /// Most entries.
    pub capacity: Option<usize>,
}

impl CacheSpecFile {
    fn over(self, default: CacheSpec) -> CacheSpec {
        CacheSpec {
            ttl_ms: self.ttl_ms.unwrap_or(default.ttl_ms),
            capacity: self.capacity.unwrap_or(default.capacity),
        }
    }
}

/// Declares, from one list of the nine cache names, [`CacheConfigFile`], its conversion to
/// [`CacheConfig`] and [`CacheConfig::specs_mut`], so the config file and the environment
/// variables cannot disagree about which caches exist.
macro_rules! cache_settings {
    ($($name:ident),+ $(,)?) => {
        /// [`CacheConfig`] as a config file gives it; what is left out keeps its default.
        #[derive(Clone, Debug, Default, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct CacheConfigFile {
            $(
                #[doc = concat!("See [`CacheConfig::", stringify!($name), "`].")]
                pub $name: CacheSpecFile,
            )+
            /// See [`CacheConfig::cleanup_interval_ms`].
            pub cleanup_interval_ms: Option<u64>,
        }

        impl From<CacheConfigFile> for CacheConfig {
            fn from(f: CacheConfigFile) -> Self {
                let d = CacheConfig::default();
                CacheConfig {
                    $($name: f.$name.over(d.$name),)+
                    cleanup_interval_ms: f.cleanup_interval_ms.unwrap_or(d.cleanup_interval_ms),
                }
            }
        }

        impl CacheConfig {
            /// Each cache's name (as in API.md §3) with its settings.
            pub fn specs_mut(&mut self) -> Vec<(&'static str, &mut CacheSpec)> {
                vec![$((stringify!($name), &mut self.$name)),+]
            }
        }
    };
}

cache_settings!(
    user_config,
    balance,
    position,
    order,
    market_data,
    credentials,
    price,
    symbol_info,
    api_response,
);

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            user_config: spec(30, 200_000),
            balance: spec(15, 200_000),
            position: spec(10, 200_000),
            order: spec(5, 200_000),
            market_data: spec(5, 10_000),
            credentials: spec(60, 100_000),
            price: spec(5, 10_000),
            symbol_info: spec(3600, 10_000),
            api_response: spec(60, 1_000),
            cleanup_interval_ms: 300_000,
        }
    }
}

/// Key of user-scoped caches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UserKey(pub Id);
/// Key of (user, account)-scoped caches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AccountKey(pub Id, pub AccountType);
/// Key of the credentials cache.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CredKey(pub Id, pub String);
/// Key of symbol-scoped caches (`None`: the list of all symbols).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SymbolKey(pub Option<String>);
/// Key of the api_response cache: the route and its query.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RouteKey(pub String);

impl CacheKey for UserKey {
    fn stripe(&self) -> u64 {
        self.0 as u64
    }
}
impl CacheKey for AccountKey {
    fn stripe(&self) -> u64 {
        self.0 as u64
    }
}
impl CacheKey for CredKey {
    fn stripe(&self) -> u64 {
        self.0 as u64
    }
}
fn hash_str(s: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}
impl CacheKey for SymbolKey {
    fn stripe(&self) -> u64 {
        self.0.as_deref().map(hash_str).unwrap_or(0)
    }
}
impl CacheKey for RouteKey {
    fn stripe(&self) -> u64 {
        hash_str(&self.0)
    }
}

/// What the user_config cache holds for one user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    /// The user.
    pub user: User,
    /// Trading config.
    pub config: UserConfig,
    /// Bot switch.
    pub bot_enabled: bool,
    /// The license with the latest end, if any.
    pub license: Option<License>,
}

/// Decrypted exchange credentials; wiped from memory when the last copy drops.
#[derive(Clone, Debug, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct Secret {
    /// API key.
    pub api_key: String,
    /// API secret.
    pub api_secret: String,
}

/// A symbol's last price and its time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LastPrice {
    /// Price.
    pub price: Dec,
    /// Time, ms.
    pub ts: i64,
}

/// The nine caches.
pub struct Caches {
    /// user → profile.
    pub user_config: TtlCache<UserKey, Arc<Profile>>,
    /// (user, account) → ledger.
    pub balance: TtlCache<AccountKey, Ledger>,
    /// (user, account) → open positions (without unrealized PnL; added on read).
    pub position: TtlCache<AccountKey, Arc<Vec<Position>>>,
    /// (user, account) → pending orders.
    pub order: TtlCache<AccountKey, Arc<Vec<Order>>>,
    /// symbol → last price and time (for the ticker route).
    pub market_data: TtlCache<SymbolKey, Option<LastPrice>>,
    /// (user, exchange) → decrypted credentials.
    pub credentials: TtlCache<CredKey, Option<Arc<Secret>>>,
    /// symbol → last price (unrealized PnL), written through by ticks.
    pub price: TtlCache<SymbolKey, Option<Dec>>,
    /// symbol → spec; `SymbolKey(None)` → every spec.
    pub symbol_info: TtlCache<SymbolKey, Arc<Vec<SymbolSpec>>>,
    /// Analytics answers.
    pub api_response: TtlCache<RouteKey, Arc<serde_json::Value>>,
    cfg: CacheConfig,
}

const USER_STRIPES: usize = 1 << 16;
const SYMBOL_STRIPES: usize = 1 << 10;

impl Caches {
    /// Builds the nine caches.
    pub fn new(cfg: &CacheConfig) -> Caches {
        let u = |s: CacheSpec| (s.capacity, s.ttl_ms, USER_STRIPES);
        let s = |s: CacheSpec| (s.capacity, s.ttl_ms, SYMBOL_STRIPES);
        fn mk<K: CacheKey, V: Clone + Send + Sync + 'static>(
            a: (usize, u64, usize),
        ) -> TtlCache<K, V> {
            TtlCache::new(a.0, a.1, a.2)
        }
        Caches {
            user_config: mk(u(cfg.user_config)),
            balance: mk(u(cfg.balance)),
            position: mk(u(cfg.position)),
            order: mk(u(cfg.order)),
            market_data: mk(s(cfg.market_data)),
            credentials: mk(u(cfg.credentials)),
            price: mk(s(cfg.price)),
            symbol_info: mk(s(cfg.symbol_info)),
            api_response: mk(s(cfg.api_response)),
            cfg: cfg.clone(),
        }
    }

    /// The configuration the caches were built with.
    pub fn config(&self) -> &CacheConfig {
        &self.cfg
    }

    /// Invalidates every entry of one user in every user-scoped cache.
    pub fn invalidate_user(&self, user: Id) {
        let s = user as u64;
        self.user_config.invalidate_stripe(s);
        self.balance.invalidate_stripe(s);
        self.position.invalidate_stripe(s);
        self.order.invalidate_stripe(s);
        self.credentials.invalidate_stripe(s);
    }

    /// Drops every entry of all nine (after the engine reloaded its state).
    pub fn clear_all(&self) {
        self.user_config.clear();
        self.balance.clear();
        self.position.clear();
        self.order.clear();
        self.market_data.clear();
        self.credentials.clear();
        self.price.clear();
        self.symbol_info.clear();
        self.api_response.clear();
    }

    /// Sweeps expired entries out of all nine; returns how many.
    pub fn sweep(&self) -> u64 {
        self.user_config.sweep()
            + self.balance.sweep()
            + self.position.sweep()
            + self.order.sweep()
            + self.market_data.sweep()
            + self.credentials.sweep()
            + self.price.sweep()
            + self.symbol_info.sweep()
            + self.api_response.sweep()
    }

    /// Stats of the nine, by name.
    pub fn stats(&self) -> BTreeMap<&'static str, CacheStats> {
        BTreeMap::from([
            ("user_config", self.user_config.stats()),
            ("balance", self.balance.stats()),
            ("position", self.position.stats()),
            ("order", self.order.stats()),
            ("market_data", self.market_data.stats()),
            ("credentials", self.credentials.stats()),
            ("price", self.price.stats()),
            ("symbol_info", self.symbol_info.stats()),
            ("api_response", self.api_response.stats()),
        ])
    }
}
