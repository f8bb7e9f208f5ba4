//! Every tunable in one place: built from defaults, then a TOML file, then `LITETRADE_*`
//! environment variables, then command-line flags (the binary applies the last two).

use crate::cache::CacheConfig;
use crate::store::StoreConfig;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// litetrade's configuration (the `--config FILE` TOML has these keys).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Database file.
    pub db: PathBuf,
    /// HTTP listen address.
    pub listen: String,
    /// Placing orders needs an active license.
    pub require_license: bool,
    /// Largest request body, bytes.
    pub body_limit: usize,
    /// How long a request's head may take to arrive, then its body, and how long a keep-alive
    /// connection may stay idle, in milliseconds.
    pub header_timeout_ms: u64,
    /// The most HTTP connections open at once; without it, the open-file limit less the
    /// descriptors SQLite needs (`api::listen::Limits::from_config`).
    pub max_connections: Option<usize>,
    /// SQLite and pool settings.
    pub store: StoreConfig,
    /// The nine caches.
    pub caches: CacheConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            db: PathBuf::from("litetrade.db"),
            listen: "127.0.0.1:8765".into(),
            require_license: false,
            body_limit: 1 << 20,
            header_timeout_ms: 30_000,
            max_connections: None,
            store: StoreConfig::default(),
            caches: CacheConfig::default(),
        }
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {0}: {1}")]
    Read(String, std::io::Error),
    /// The file is not valid TOML for [`Config`].
    #[error("invalid config file {0}: {1}")]
    Parse(String, String),
    /// An environment variable has a bad value.
    #[error("invalid environment variable {0}: {1}")]
    Env(String, String),
    /// A setting has a value that cannot work.
    #[error("invalid setting: {0}")]
    Invalid(String),
}

impl Config {
    /// Reads a TOML file over the defaults.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Read(path.display().to_string(), e))?;
        toml::from_str(&text).map_err(|e| {
            // one line: the message and where (toml's own text adds a snippet of the file)
            let at =
                e.span()
                    .and_then(|span| text.get(..span.start))
                    .map_or(String::new(), |before| {
                        let line = before.matches('\n').count() + 1;
                        // in characters, as an editor counts them
                        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
                        let column = before[line_start..].chars().count() + 1;
                        format!(" (line {line}, column {column})")
                    });
            ConfigError::Parse(
                path.display().to_string(),
                format!("{}{at}", e.message().trim_end()),
            )
        })
    }

    /// Refuses settings that parse but cannot work, naming the key: an empty `db` or one that
    /// is a directory; a body limit below 1 KiB
    /// answers every request with 413; a pool of no connections serves no read; a query time
    /// limit of 0 interrupts every read; a cache of capacity 0 holds nothing (and would be
    /// taken as 1). Beyond their upper bounds a setting would hang writes (`commit_delay_us`,
    /// `busy_timeout_ms`, which SQLite also cannot hold past 2^31 ms) or reserve memory for
    /// nothing (`pool_size`, `body_limit`). A head timeout under 100 ms would cut off slow but
    /// honest clients, and a cap of no connections would serve nobody.
    pub fn check(&self) -> Result<(), ConfigError> {
        const GIB: usize = 1 << 30;
        let st = &self.store;
        let rules: [(bool, &str, String); 11] = [
            (
                self.body_limit >= 1024,
                "body_limit",
                "at least 1024 bytes (an order needs that)".into(),
            ),
            (
                self.body_limit <= GIB,
                "body_limit",
                format!("at most {GIB} bytes (1 GiB)"),
            ),
            (st.pool_size >= 1, "store.pool_size", "at least 1".into()),
            (st.pool_size <= 256, "store.pool_size", "at most 256".into()),
            (
                st.query_timeout_ms >= 1,
                "store.query_timeout_ms",
                "at least 1".into(),
            ),
            (
                st.busy_timeout_ms <= 3_600_000,
                "store.busy_timeout_ms",
                "at most 3600000 (an hour)".into(),
            ),
            (
                st.commit_delay_us <= 1_000_000,
                "store.commit_delay_us",
                "at most 1000000 (a second)".into(),
            ),
            (st.max_batch >= 1, "store.max_batch", "at least 1".into()),
            (
                self.header_timeout_ms >= 100,
                "header_timeout_ms",
                "at least 100".into(),
            ),
            (
                self.header_timeout_ms <= 3_600_000,
                "header_timeout_ms",
                "at most 3600000 (an hour)".into(),
            ),
            (
                self.max_connections != Some(0),
                "max_connections",
                "at least 1".into(),
            ),
        ];
        if self.db.as_os_str().is_empty() {
            return Err(ConfigError::Invalid("db must name a file".into()));
        }
        if self.db.is_dir() {
            return Err(ConfigError::Invalid(format!(
                "db {} is a directory; name a file in it",
                self.db.display()
            )));
        }
        if let Some((_, key, want)) = rules.into_iter().find(|(ok, _, _)| !ok) {
            return Err(ConfigError::Invalid(format!("{key} must be {want}")));
        }
        let mut caches = self.caches.clone();
        if let Some((name, _)) = caches
            .specs_mut()
            .into_iter()
            .find(|(_, c)| c.capacity == 0)
        {
            return Err(ConfigError::Invalid(format!(
                "caches.{name}.capacity must be at least 1"
            )));
        }
        Ok(())
    }

    /// Applies the `LITETRADE_*` variables that mirror settings without a flag of their own:
    /// `LITETRADE_REQUIRE_LICENSE`, `LITETRADE_POOL_SIZE`, `LITETRADE_SYNCHRONOUS`,
    /// `LITETRADE_SLOW_QUERY_MS`, `LITETRADE_BODY_LIMIT`, `LITETRADE_HEADER_TIMEOUT_MS`,
    /// `LITETRADE_MAX_CONNECTIONS`, and `LITETRADE_CACHE_<NAME>_TTL_MS`.
    /// An empty (or blank) variable counts as unset.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let get = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        fn num<T: std::str::FromStr>(name: &str, v: &str) -> Result<T, ConfigError> {
            v.trim()
                .parse()
                .map_err(|_| ConfigError::Env(name.into(), format!("not a number: {v:?}")))
        }
        if let Some(v) = get("LITETRADE_REQUIRE_LICENSE") {
            self.require_license = match v.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => true,
                "0" | "false" | "no" | "off" => false,
                _ => {
                    return Err(ConfigError::Env(
                        "LITETRADE_REQUIRE_LICENSE".into(),
                        format!("use 1 or 0 (true/false, yes/no, on/off), not {v:?}"),
                    ));
                }
            };
        }
        if let Some(v) = get("LITETRADE_POOL_SIZE") {
            self.store.pool_size = num("LITETRADE_POOL_SIZE", &v)?;
        }
        if let Some(v) = get("LITETRADE_SLOW_QUERY_MS") {
            self.store.slow_query_ms = num("LITETRADE_SLOW_QUERY_MS", &v)?;
        }
        if let Some(v) = get("LITETRADE_BODY_LIMIT") {
            self.body_limit = num("LITETRADE_BODY_LIMIT", &v)?;
        }
        if let Some(v) = get("LITETRADE_HEADER_TIMEOUT_MS") {
            self.header_timeout_ms = num("LITETRADE_HEADER_TIMEOUT_MS", &v)?;
        }
        if let Some(v) = get("LITETRADE_MAX_CONNECTIONS") {
            self.max_connections = Some(num("LITETRADE_MAX_CONNECTIONS", &v)?);
        }
        if let Some(v) = get("LITETRADE_SYNCHRONOUS") {
            self.store.synchronous = match v.trim().to_ascii_lowercase().as_str() {
                "normal" => crate::store::SyncMode::Normal,
                "full" => crate::store::SyncMode::Full,
                _ => {
                    return Err(ConfigError::Env(
                        "LITETRADE_SYNCHRONOUS".into(),
                        "use normal or full".into(),
                    ));
                }
            };
        }
        for (cache, spec) in self.caches.specs_mut() {
            let name = format!("LITETRADE_CACHE_{}_TTL_MS", cache.to_ascii_uppercase());
            if let Some(v) = get(&name) {
                spec.ttl_ms = num(&name, &v)?;
            }
        }
        Ok(())
    }

    /// The `LITETRADE_*` names among `names` that litetrade does not read (a typo such as
    /// `LITETRADE_CACHE_BALANCE_TTL` would otherwise be ignored without a word).
    pub fn unknown_env(&self, names: impl IntoIterator<Item = String>) -> Vec<String> {
        // the common flags', the secrets' and the log filter's, then whatever apply_env asks for
        let mut known: Vec<String> = [
            "LITETRADE_DB",
            "LITETRADE_LISTEN",
            "LITETRADE_CONFIG",
            "LITETRADE_ADMIN_TOKEN",
            "LITETRADE_SECRET_KEY",
            "LITETRADE_LOG",
        ]
        .map(String::from)
        .into();
        let asked = std::cell::RefCell::new(Vec::new());
        let _ = self.clone().apply_env(|k| {
            asked.borrow_mut().push(k.to_string());
            None
        });
        known.extend(asked.into_inner());
        names
            .into_iter()
            .filter(|n| n.starts_with("LITETRADE_") && !known.contains(n))
            .collect()
    }

    /// A file beside the database: `<db>.<suffix>`.
    pub fn beside_db(&self, suffix: &str) -> PathBuf {
        crate::store::files::with_suffix(&self.db, &format!(".{suffix}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_and_env_override_defaults() {
        let c: Config = toml::from_str(
            "require_license = true\n[store]\npool_size = 3\nsynchronous = \"full\"\n[caches.balance]\nttl_ms = 1000\ncapacity = 5\n",
        )
        .unwrap();
        assert!(c.require_license);
        assert_eq!(c.store.pool_size, 3);
        assert_eq!(c.caches.balance.capacity, 5);
        assert_eq!(c.caches.price, CacheConfig::default().price);
        assert!(
            toml::from_str::<Config>("nope = 1").is_err(),
            "unknown keys are refused"
        );
        // one setting of one cache: the rest keep their defaults
        let c: Config = toml::from_str("[caches.order]\nttl_ms = 250\n").unwrap();
        let d = CacheConfig::default();
        assert_eq!(
            (c.caches.order.ttl_ms, c.caches.order.capacity),
            (250, d.order.capacity)
        );
        assert_eq!(c.caches.balance, d.balance);
        assert!(toml::from_str::<Config>("[caches.order]\nttl = 1\n").is_err());
        assert!(toml::from_str::<Config>("[caches.nine]\nttl_ms = 1\n").is_err());
        let mut c = Config::default();
        c.apply_env(|k| (k == "LITETRADE_CACHE_PRICE_TTL_MS").then(|| "42".to_string()))
            .unwrap();
        assert_eq!(c.caches.price.ttl_ms, 42);
        let names = [
            "LITETRADE_CACHE_PRICE_TTL_MS",
            "LITETRADE_CACHE_PRICE_TTL",
            "LITETRADE_SECRET_KEY",
            "LITETRADE_REQUIRE_LICENSE",
            "LITETRADE_CACHE_API_RESPONSE_CAPACITY",
            "PATH",
        ];
        assert_eq!(
            c.unknown_env(names.map(String::from)),
            [
                "LITETRADE_CACHE_PRICE_TTL",
                "LITETRADE_CACHE_API_RESPONSE_CAPACITY"
            ]
        );
        // every one of API.md's nine names has its variable
        let nine = [
            "USER_CONFIG",
            "BALANCE",
            "POSITION",
            "ORDER",
            "MARKET_DATA",
            "CREDENTIALS",
            "PRICE",
            "SYMBOL_INFO",
            "API_RESPONSE",
        ];
        let mut c = Config::default();
        c.apply_env(|k| {
            nine.iter()
                .position(|n| k == format!("LITETRADE_CACHE_{n}_TTL_MS"))
                .map(|i| (1000 + i).to_string())
        })
        .unwrap();
        let ttls: Vec<u64> = c.caches.specs_mut().iter().map(|(_, s)| s.ttl_ms).collect();
        assert_eq!(ttls, (1000..1009).collect::<Vec<u64>>());
        assert!(
            c.apply_env(|k| (k == "LITETRADE_POOL_SIZE").then(|| "x".to_string()))
                .is_err()
        );
        let license = |v: &str| {
            let mut c = Config::default();
            c.apply_env(|k| (k == "LITETRADE_REQUIRE_LICENSE").then(|| v.to_string()))
                .map(|()| c.require_license)
        };
        assert!(license("YES").unwrap());
        assert!(!license("0").unwrap());
        assert!(license("maybe").is_err(), "a typo is not silently false");
        // every variable set but empty (or blank) counts as unset: nothing changes
        let mut c = Config {
            require_license: true,
            ..Config::default()
        };
        c.store.pool_size = 3;
        let before = format!("{c:?}");
        c.apply_env(|k| k.starts_with("LITETRADE_").then(|| " ".to_string()))
            .unwrap();
        assert_eq!(format!("{c:?}"), before);
        let mut c = Config::default();
        assert!(c.check().is_ok());
        c.body_limit = 0;
        assert!(c.check().is_err());
        // each bound names its key
        let refused = |change: &dyn Fn(&mut Config)| {
            let mut c = Config::default();
            change(&mut c);
            c.check().unwrap_err().to_string()
        };
        assert!(refused(&|c| c.body_limit = usize::MAX).contains("body_limit"));
        assert!(refused(&|c| c.store.pool_size = 0).contains("store.pool_size"));
        assert!(refused(&|c| c.store.pool_size = u32::MAX).contains("store.pool_size"));
        assert!(refused(&|c| c.store.query_timeout_ms = 0).contains("store.query_timeout_ms"));
        assert!(refused(&|c| c.store.busy_timeout_ms = 1 << 31).contains("store.busy_timeout_ms"));
        assert!(refused(&|c| c.store.commit_delay_us = u64::MAX).contains("store.commit_delay_us"));
        assert!(refused(&|c| c.store.max_batch = 0).contains("store.max_batch"));
        assert!(refused(&|c| c.caches.price.capacity = 0).contains("caches.price.capacity"));
        assert!(refused(&|c| c.header_timeout_ms = 99).contains("header_timeout_ms"));
        assert!(refused(&|c| c.header_timeout_ms = u64::MAX).contains("header_timeout_ms"));
        assert!(refused(&|c| c.max_connections = Some(0)).contains("max_connections"));
        assert!(refused(&|c| c.db = PathBuf::new()).contains("db must name a file"));
        assert!(refused(&|c| c.db = std::env::temp_dir()).contains("is a directory"));
        // the largest values still allowed
        let mut c = Config::default();
        c.store.busy_timeout_ms = 3_600_000;
        c.store.commit_delay_us = 1_000_000;
        c.store.pool_size = 256;
        c.body_limit = 1 << 30;
        assert!(c.check().is_ok());
    }

    #[test]
    fn a_bad_file_is_one_line_naming_where_in_characters() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("litetrade.toml");
        std::fs::write(&path, "# réglages\nlisten = 1234\n").unwrap();
        let msg = Config::from_file(&path).unwrap_err().to_string();
        assert!(msg.contains("(line 2, column 10)"), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
        // the stray `x` is the 14th character of its line and its 15th byte
        std::fs::write(&path, "listen = \"é\" x\n").unwrap();
        let msg = Config::from_file(&path).unwrap_err().to_string();
        assert!(msg.contains("(line 1, column 14)"), "{msg}");
    }
}
