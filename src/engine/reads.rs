//! Reads: every one goes through its cache; a miss loads through the read pool.

use super::{Engine, MaskedCredentials, secrets};
use crate::cache::{AccountKey, CredKey, LastPrice, Profile, RouteKey, SymbolKey, UserKey};
use crate::domain::math;
use crate::domain::model::{
    AccountType, Balance, Id, License, Order, Position, Ticker, Trade, TradeTotals, User,
    UserConfig, now_ms,
};
use crate::domain::money::Dec;
use crate::domain::symbol::SymbolSpec;
use crate::error::{Error, Result};
use crate::store::tables::{
    analytics, balances, config, credentials, licenses, orders, positions, symbols, trades, users,
};
use serde::Serialize;
use std::sync::Arc;

/// A page of trades (API.md §2 `GET /users/{id}/trades`).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct TradePage {
    /// Newest first.
    pub trades: Vec<Trade>,
    /// Page number, from 1.
    pub page: u64,
    /// Page size.
    pub limit: u32,
    /// Trades in all.
    pub total: u64,
    /// Pages in all.
    pub pages: u64,
}

impl Engine {
    fn profile(&self, user: Id) -> Result<Arc<Profile>> {
        let store = self.store();
        self.caches().user_config.get_or_load(&UserKey(user), || {
            store
                .read("profile", |c| {
                    let Some(u) = users::get(c, user)? else {
                        return Ok(None);
                    };
                    let (config, bot_enabled) = config::get(c, user)?.unwrap_or_default();
                    let now = now_ms();
                    let license = licenses::by_user(c, user)?.into_iter().next().map(
                        |(license_type, _, end)| License {
                            license_type,
                            end_date: end,
                            active: end > now,
                        },
                    );
                    Ok(Some(Arc::new(Profile {
                        user: u,
                        config,
                        bot_enabled,
                        license,
                    })))
                })?
                .ok_or(Error::NotFound("user"))
        })
    }

    /// A user (never its token).
    pub fn user(&self, user: Id) -> Result<User> {
        Ok(self.profile(user)?.user.clone())
    }

    /// A user's config.
    pub fn user_config(&self, user: Id) -> Result<UserConfig> {
        Ok(self.profile(user)?.config.clone())
    }

    /// Whether a user's bot is on.
    pub fn bot_enabled(&self, user: Id) -> Result<bool> {
        Ok(self.profile(user)?.bot_enabled)
    }

    /// A user's license with the latest end (`active` computed now).
    pub fn license(&self, user: Id) -> Result<License> {
        let p = self.profile(user)?;
        let mut l = p.license.clone().ok_or(Error::NotFound("license"))?;
        l.active = l.end_date > now_ms();
        Ok(l)
    }

    /// The user whose token has this SHA-256 ([`secrets::hash_token`]).
    pub fn user_by_token_hash(&self, hash: &[u8]) -> Result<Option<Id>> {
        Ok(self
            .store()
            .read("user_by_token", |c| users::id_by_token_hash(c, hash))?)
    }

    /// A symbol's last price, through the price cache.
    pub fn last_price(&self, symbol: &str) -> Result<Option<Dec>> {
        let store = self.store();
        self.caches()
            .price
            .get_or_load(&SymbolKey(Some(symbol.to_string())), || {
                Ok(store
                    .read("last_price", |c| symbols::get(c, symbol))?
                    .and_then(|(_, last, _)| last))
            })
    }

    fn cached_positions(&self, user: Id, acct: AccountType) -> Result<Arc<Vec<Position>>> {
        let store = self.store();
        self.caches()
            .position
            .get_or_load(&AccountKey(user, acct), || {
                Ok(Arc::new(store.read("positions", |c| {
                    positions::by_user(c, user, acct)
                })?))
            })
    }

    fn cached_orders(&self, user: Id, acct: AccountType) -> Result<Arc<Vec<Order>>> {
        let store = self.store();
        self.caches()
            .order
            .get_or_load(&AccountKey(user, acct), || {
                Ok(Arc::new(store.read("pending_orders", |c| {
                    orders::pending_by_user(c, user, acct)
                })?))
            })
    }

    fn with_upnl(&self, p: &Position) -> Result<Position> {
        let mut p = p.clone();
        if let Some(last) = self.last_price(&p.symbol)? {
            p.unrealized_pnl = math::gross_pnl(p.side, p.entry_price, last, p.qty);
        }
        Ok(p)
    }

    /// A user's balance on one account, with unrealized PnL at the last prices.
    pub fn balance(&self, user: Id, acct: AccountType) -> Result<Balance> {
        self.profile(user)?;
        let store = self.store();
        let l = self
            .caches()
            .balance
            .get_or_load(&AccountKey(user, acct), || {
                Ok::<_, Error>(store.read("balance", |c| balances::get(c, user, acct))?)
            })?;
        let mut sum = 0i128;
        for p in self.cached_positions(user, acct)?.iter() {
            sum += self.with_upnl(p)?.unrealized_pnl.raw() as i128;
        }
        Ok(Balance::of(acct, &l, sum))
    }

    /// Open positions, oldest first, on one account or (None) on both.
    pub fn positions(&self, user: Id, acct: Option<AccountType>) -> Result<Vec<Position>> {
        self.profile(user)?;
        let mut out = Vec::new();
        for a in acct
            .map(|a| vec![a])
            .unwrap_or_else(|| AccountType::ALL.to_vec())
        {
            for p in self.cached_positions(user, a)?.iter() {
                out.push(self.with_upnl(p)?);
            }
        }
        out.sort_by_key(|p| p.id);
        Ok(out)
    }

    /// Pending orders, oldest first, on one account or (None) on both.
    pub fn orders(&self, user: Id, acct: Option<AccountType>) -> Result<Vec<Order>> {
        self.profile(user)?;
        let mut out = Vec::new();
        for a in acct
            .map(|a| vec![a])
            .unwrap_or_else(|| AccountType::ALL.to_vec())
        {
            out.extend(self.cached_orders(user, a)?.iter().cloned());
        }
        out.sort_by_key(|o| o.id);
        Ok(out)
    }

    /// One of a user's orders, any status (pending ones from the cache).
    pub fn order(&self, user: Id, order: Id) -> Result<Order> {
        for a in AccountType::ALL {
            if let Some(o) = self.cached_orders(user, a)?.iter().find(|o| o.id == order) {
                return Ok(o.clone());
            }
        }
        self.store()
            .read("order", |c| orders::get(c, order))?
            .filter(|o| o.user_id == user)
            .ok_or(Error::NotFound("order"))
    }

    /// A page of a user's trades of both accounts, newest first; `limit` is clamped to
    /// 1..=1000, `page` ≥ 1.
    pub fn trades(&self, user: Id, page: u64, limit: u32) -> Result<TradePage> {
        self.trades_of(user, None, page, limit)
    }

    /// Like [`Engine::trades`], of one account when `acct` names one.
    pub fn trades_of(
        &self,
        user: Id,
        acct: Option<AccountType>,
        page: u64,
        limit: u32,
    ) -> Result<TradePage> {
        self.profile(user)?;
        let limit = limit.clamp(1, 1000);
        let page = page.max(1);
        // SQLite takes OFFSET as i64: past that every page is empty anyway
        let offset = (page - 1).saturating_mul(limit as u64).min(i64::MAX as u64);
        let (rows, total) = self.store().read("trades_page", |c| {
            trades::page(c, user, acct, limit, offset)
        })?;
        Ok(TradePage {
            trades: rows,
            page,
            limit,
            total,
            pages: total.div_ceil(limit as u64),
        })
    }

    /// The users created with Telegram id `tg`, oldest first: how a bot that lost its stored
    /// ids finds its users again (an admin may act for any of them).
    pub fn users_by_telegram(&self, tg: i64) -> Result<Vec<User>> {
        Ok(self
            .store()
            .read("users_by_telegram", |c| users::by_telegram(c, tg))?)
    }

    /// Every closed trade of a user, of one account when `acct` names one, summed up exactly
    /// (chat's `/pnl`). It reads each of those trades, about 0.3 s a million here (BENCHMARKS
    /// §9t), so it is not for a hot path: call it off an async runtime's workers.
    pub fn trade_totals(&self, user: Id, acct: Option<AccountType>) -> Result<TradeTotals> {
        self.profile(user)?;
        Ok(self
            .store()
            .read("trade_totals", |c| trades::totals(c, user, acct))?)
    }

    /// A symbol's last price and time, through the market_data cache.
    pub fn ticker(&self, symbol: &str) -> Result<Ticker> {
        let store = self.store();
        let lp =
            self.caches()
                .market_data
                .get_or_load(&SymbolKey(Some(symbol.to_string())), || {
                    match store.read("ticker", |c| symbols::get(c, symbol))? {
                        None => Err(Error::UnknownSymbol(symbol.to_string())),
                        Some((_, last, ts)) => Ok(last.map(|price| LastPrice {
                            price,
                            ts: ts.unwrap_or(0),
                        })),
                    }
                })?;
        Ok(Ticker {
            symbol: symbol.to_string(),
            last: lp.map(|l| l.price),
            ts: lp.map(|l| l.ts),
        })
    }

    /// Every symbol spec, by name.
    pub fn symbols(&self) -> Result<Arc<Vec<SymbolSpec>>> {
        let store = self.store();
        self.caches().symbol_info.get_or_load(&SymbolKey(None), || {
            Ok(Arc::new(
                store
                    .read("symbols", symbols::all)?
                    .into_iter()
                    .map(|(s, _, _)| s)
                    .collect(),
            ))
        })
    }

    /// One symbol spec.
    pub fn symbol(&self, symbol: &str) -> Result<SymbolSpec> {
        let store = self.store();
        let v =
            self.caches()
                .symbol_info
                .get_or_load(&SymbolKey(Some(symbol.to_string())), || {
                    Ok::<_, Error>(Arc::new(
                        store
                            .read("symbol", |c| symbols::get(c, symbol))?
                            .into_iter()
                            .map(|(s, _, _)| s)
                            .collect(),
                    ))
                })?;
        v.first()
            .cloned()
            .ok_or_else(|| Error::UnknownSymbol(symbol.to_string()))
    }

    /// The masked view of a user's stored credentials for `exchange`.
    pub fn credentials(&self, user: Id, exchange: &str) -> Result<MaskedCredentials> {
        self.profile(user)?;
        let store = self.store();
        let vault = &self.inner.vault;
        let secret =
            self.caches()
                .credentials
                .get_or_load(&CredKey(user, exchange.to_string()), || {
                    match store.read("credentials", |c| credentials::get(c, user, exchange))? {
                        None => Ok::<_, Error>(None),
                        Some((nonce, ct)) => Ok(Some(Arc::new(
                            vault.open_sealed(user, exchange, &nonce, &ct)?,
                        ))),
                    }
                })?;
        let s = secret.ok_or(Error::NotFound("credentials"))?;
        Ok(MaskedCredentials {
            exchange: exchange.to_string(),
            api_key_masked: secrets::mask(&s.api_key),
        })
    }

    /// The admin dashboard (24 h), served from `api_response` (may lag by its TTL).
    pub fn dashboard(&self) -> Result<Arc<serde_json::Value>> {
        let store = self.store();
        self.caches()
            .api_response
            .get_or_load(&RouteKey("admin/dashboard".into()), || {
                let now = now_ms();
                let d = store.read("dashboard", |c| {
                    analytics::dashboard(c, now - 86_400_000, now)
                })?;
                Ok(Arc::new(
                    serde_json::to_value(d).map_err(|e| Error::Internal(e.to_string()))?,
                ))
            })
    }
}
