//! litetrade: a multi-user paper trading venue on one tuned SQLite file, for Telegram-style bot
//! frontends. See `README.md` for the tour and `../shared/API.md` for the contract.
//!
//! Layers, each depending only on the ones after it: [`api`] / [`chat`] → [`engine`] →
//! [`cache`] → [`store`] → [`domain`].
#![warn(missing_docs)]

pub mod api;
pub mod bench;
pub mod cache;
pub mod chat;
pub mod config;
pub mod demo;
pub mod domain;
pub mod engine;
pub mod error;
pub mod feed;
pub mod replay;
pub mod store;

pub use config::Config;
pub use engine::Engine;
pub use engine::accounts::{ConfigPatch, NewPromo, Signal, SignalOutcome};
pub use engine::trading::{NewOrder, Placement, Tick, TickOutcome};
pub use error::{Error, Result};
