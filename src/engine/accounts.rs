//! Commands on users, configs, credentials, symbols, promo codes and signals.

use super::events::Event;
use super::sequencer::{Inval, Reply, Sequencer, Tx, ensure};
use super::state::{SymState, UserState};
use super::trading::NewOrder;
use crate::cache::Secret;
use crate::domain::math;
use crate::domain::model::{
    AccountType, Balance, Id, License, Millis, Promo, Side, User, UserConfig, breaks_text,
};
use crate::domain::money::Dec;
use crate::domain::symbol::{SymbolPatch, SymbolSpec};
use crate::error::{Error, Result};
use crate::store::ops::Op;
use crate::store::tables::signals::SignalRow;
use serde::{Deserialize, Deserializer, Serialize};
use std::sync::Arc;

/// Largest single deposit.
pub const MAX_DEPOSIT: Dec = Dec(1_000_000_000 * crate::domain::money::SCALE);
const DAY_MS: Millis = 86_400_000;
/// Followers per part of a signal's fan-out: the writer inserts one part while the sequencer
/// sizes the next, and the parts commit as one transaction.
pub const SIGNAL_PART: usize = 1000;
/// Followers in the first part, smaller so the writer starts sooner; the later parts hold
/// [`SIGNAL_PART`] each. The writer is the slower side, so it then never waits for a part.
pub const SIGNAL_FIRST_PART: usize = 100;

fn double<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> std::result::Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// A present field where `null` means the default value (for a field that cannot be empty).
fn null_is_default<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(
    d: D,
) -> std::result::Result<Option<T>, D::Error> {
    Option::<T>::deserialize(d).map(|v| Some(v.unwrap_or_default()))
}

/// A stop-loss percentage (of a config or a signal) is in (0, 100): a long's stop at 100 % or
/// more below the price would be at or below zero.
fn sl_pct_ok(p: Dec) -> bool {
    p.is_positive() && p < Dec::from_int(100)
}

/// A take-profit percentage is in (0, 1000]. For a short it moves the price down, so one of
/// 100 or more is left out of that short's order (README).
fn tp_pct_ok(p: Dec) -> bool {
    p.is_positive() && p <= Dec::from_int(1000)
}

const SL_PCT_RANGE: &str = "sl_pct must be > 0 and < 100";
const TP_PCT_RANGE: &str = "tp_pct must be > 0 and <= 1000";

/// A partial config update: absent fields stay, `null` clears.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ConfigPatch {
    /// Strategy to follow.
    #[serde(default, deserialize_with = "double")]
    pub strategy: Option<Option<String>>,
    /// Default leverage.
    #[serde(default, deserialize_with = "double")]
    pub leverage: Option<Option<u32>>,
    /// Percent of available a signal risks.
    #[serde(default, deserialize_with = "double")]
    pub risk_pct: Option<Option<Dec>>,
    /// Default stop-loss distance, percent.
    #[serde(default, deserialize_with = "double")]
    pub sl_pct: Option<Option<Dec>>,
    /// Default take-profit distance, percent.
    #[serde(default, deserialize_with = "double")]
    pub tp_pct: Option<Option<Dec>>,
    /// Account signals trade on (`null` clears it back to the default, `demo`).
    #[serde(default, deserialize_with = "null_is_default")]
    pub account_type: Option<AccountType>,
}

/// What a name or strategy may not hold ([`breaks_text`]).
const PLAIN: &str = "with no control, line-separator or text-direction characters";

/// Whether `s` holds a character that [`breaks_text`]: shown in a chat reply or a bot message,
/// it would forge lines or make Telegram refuse the message, and no name a person types holds
/// one.
fn breaks_any(s: &str) -> bool {
    s.chars().any(breaks_text)
}

/// A strategy name, as a config or a signal gives it.
fn check_strategy(s: &str) -> Result<()> {
    ensure(
        !s.is_empty() && s.chars().count() <= 64 && !breaks_any(s),
        || format!("strategy must be 1-64 characters, {PLAIN}"),
    )
}

impl ConfigPatch {
    /// The config after the patch, or why it is invalid.
    pub fn apply_to(&self, cur: &UserConfig) -> Result<UserConfig> {
        let mut c = cur.clone();
        if let Some(v) = &self.strategy {
            if let Some(s) = v {
                check_strategy(s)?;
            }
            c.strategy = v.clone();
        }
        if let Some(v) = self.leverage {
            ensure(v.is_none_or(|l| (1..=1000).contains(&l)), || {
                "leverage must be 1..=1000".into()
            })?;
            c.leverage = v;
        }
        if let Some(v) = self.risk_pct {
            let ok = v.is_none_or(|p| p.is_positive() && p <= Dec::from_int(100));
            ensure(ok, || "risk_pct must be > 0 and <= 100".into())?;
            c.risk_pct = v;
        }
        if let Some(v) = self.sl_pct {
            ensure(v.is_none_or(sl_pct_ok), || SL_PCT_RANGE.into())?;
            c.sl_pct = v;
        }
        if let Some(v) = self.tp_pct {
            ensure(v.is_none_or(tp_pct_ok), || TP_PCT_RANGE.into())?;
            c.tp_pct = v;
        }
        if let Some(a) = self.account_type {
            c.account_type = a;
        }
        Ok(c)
    }
}

/// A new promo code (API.md §2 `POST /promo-codes`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NewPromo {
    /// The code.
    pub code: String,
    /// License type granted.
    pub license_type: String,
    /// Days granted.
    pub days: u32,
    /// Redemptions allowed in all.
    pub max_uses: u32,
    /// Last moment it can be redeemed, ms.
    #[serde(default)]
    pub valid_until: Option<Millis>,
}

/// A strategy signal (API.md §2 `POST /signals`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Signal {
    /// Strategy name.
    pub strategy: String,
    /// Symbol.
    pub symbol: String,
    /// Side.
    pub side: Side,
    /// Stop-loss distance, percent.
    #[serde(default)]
    pub sl_pct: Option<Dec>,
    /// Take-profit distance, percent.
    #[serde(default)]
    pub tp_pct: Option<Dec>,
}

/// What a signal did.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct SignalOutcome {
    /// Id of the recorded signal.
    pub signal_id: Id,
    /// Orders placed.
    pub orders_placed: u32,
    /// Followers skipped (bot off, no license, no risk_pct, too small, insufficient balance).
    pub skipped: u32,
}

fn valid_code(s: &str, what: &str) -> Result<()> {
    ensure(
        !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
        || format!("{what} must be 1-64 characters of A-Z, a-z, 0-9, _ or -"),
    )
}

impl Sequencer {
    fn user_mut(&mut self, user: Id) -> Result<&mut UserState> {
        self.st.users.get_mut(&user).ok_or(Error::NotFound("user"))
    }

    /// Creates a user with the given token hash.
    pub fn create_user(
        &mut self,
        name: String,
        telegram_id: Option<i64>,
        token_hash: Vec<u8>,
        reply: Reply<User>,
    ) {
        if let Err(e) = ensure(
            !name.trim().is_empty() && name.chars().count() <= 128 && !breaks_any(&name),
            || format!("name must be 1-128 characters, {PLAIN}"),
        ) {
            let _ = reply.send(Err(e));
            return;
        }
        let mut tx = Tx::new(crate::domain::model::now_ms());
        self.st.last_ids.user += 1;
        let id = self.st.last_ids.user;
        self.st.users.insert(id, UserState::default());
        tx.ops.push(Op::InsertUser {
            id,
            name: name.clone(),
            telegram_id,
            token_hash,
            created_at: tx.now,
        });
        let user = User {
            id,
            name,
            telegram_id,
            created_at: tx.now,
        };
        tx.inval.push(Inval::Profile(id));
        self.commit(tx, user, reply);
    }

    /// Credits a deposit.
    pub fn deposit(&mut self, user: Id, amount: Dec, acct: AccountType, reply: Reply<()>) {
        let now = crate::domain::model::now_ms();
        let res = ensure(amount.is_positive() && amount <= MAX_DEPOSIT, || {
            format!("amount must be > 0 and <= {MAX_DEPOSIT}")
        })
        .and_then(|()| self.user_mut(user));
        let u = match res {
            Ok(u) => u,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let l = u.ledger(acct);
        if l.wallet.raw() as i128 + amount.raw() as i128 > super::trading::MAX_WALLET.raw() as i128
        {
            let _ = reply.send(Err(Error::Invalid(format!(
                "a wallet holds at most {}",
                super::trading::MAX_WALLET
            ))));
            return;
        }
        l.wallet = Dec(l.wallet.raw() + amount.raw());
        l.deposited = Dec(l.deposited.raw() + amount.raw());
        let mut tx = Tx::new(now);
        tx.touch(user, acct);
        tx.ops.push(Op::InsertDeposit(user, acct, amount, now));
        self.commit(tx, (), reply);
    }

    /// A balance computed from memory alone (every open position is scanned, so this is for
    /// when the cached read path fails, not for every read).
    pub fn balance_in_memory(&mut self, user: Id, acct: AccountType, reply: Reply<Balance>) {
        let res = self.user_mut(user).map(|u| *u.ledger(acct)).map(|l| {
            let upnl: i128 = self
                .st
                .positions
                .values()
                .filter(|p| p.user_id == user && p.account_type == acct)
                .filter_map(|p| {
                    let last = self.st.symbols.get(&p.symbol)?.last?;
                    Some(math::gross_pnl(p.side, p.entry_price, last, p.qty).raw() as i128)
                })
                .sum();
            Balance::of(acct, &l, upnl)
        });
        let _ = reply.send(res);
    }

    /// Applies a config patch; answers the whole config.
    pub fn set_config(&mut self, user: Id, patch: ConfigPatch, reply: Reply<UserConfig>) {
        let res = self.user_mut(user).and_then(|u| patch.apply_to(&u.config));
        let new = match res {
            Ok(c) => c,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let u = self.st.users.get_mut(&user).expect("checked");
        let old = std::mem::replace(&mut u.config, new.clone());
        if let Some(set) = old
            .strategy
            .as_ref()
            .and_then(|s| self.st.followers.get_mut(s))
        {
            set.remove(&user);
        }
        if let Some(s) = &new.strategy {
            self.st.followers.entry(s.clone()).or_default().insert(user);
        }
        let mut tx = Tx::new(crate::domain::model::now_ms());
        tx.ops.push(Op::SaveConfig(user, new.clone(), tx.now));
        tx.inval.push(Inval::Profile(user));
        tx.events.push(Event::ConfigChanged { user_id: user });
        self.commit(tx, new, reply);
    }

    /// Turns a user's bot on or off; the next signal sees it.
    pub fn set_bot(&mut self, user: Id, enabled: bool, reply: Reply<bool>) {
        match self.user_mut(user) {
            Ok(u) => u.bot = enabled,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        }
        let mut tx = Tx::new(crate::domain::model::now_ms());
        tx.ops.push(Op::SetBot(user, enabled, tx.now));
        tx.inval.push(Inval::Profile(user));
        tx.events.push(Event::BotToggled {
            user_id: user,
            enabled,
        });
        self.commit(tx, enabled, reply);
    }

    /// Stores encrypted credentials; the decrypted value goes write-through into the cache.
    pub fn set_credentials(
        &mut self,
        user: Id,
        exchange: String,
        sealed: (Vec<u8>, Vec<u8>),
        plain: Arc<Secret>,
        reply: Reply<()>,
    ) {
        if let Err(e) = self.user_mut(user) {
            let _ = reply.send(Err(e));
            return;
        }
        let mut tx = Tx::new(crate::domain::model::now_ms());
        let (nonce, ciphertext) = sealed;
        tx.ops.push(Op::SaveCredentials {
            user_id: user,
            exchange: exchange.clone(),
            nonce,
            ciphertext,
            at: tx.now,
        });
        tx.inval.push(Inval::Creds(user, exchange.clone(), plain));
        tx.events.push(Event::CredentialsChanged {
            user_id: user,
            exchange,
        });
        self.commit(tx, (), reply);
    }

    /// Inserts or updates a symbol spec.
    pub fn upsert_symbol(&mut self, spec: SymbolSpec, reply: Reply<SymbolSpec>) {
        if let Err(e) = spec.validate() {
            let _ = reply.send(Err(Error::Invalid(e)));
            return;
        }
        match self.st.symbols.get_mut(&spec.symbol) {
            Some(s) => s.spec = spec.clone(),
            None => {
                self.st.symbols.insert(
                    spec.symbol.clone(),
                    SymState {
                        spec: spec.clone(),
                        last: None,
                        last_ts: None,
                        book: Default::default(),
                        triggers: Default::default(),
                    },
                );
            }
        }
        let mut tx = Tx::new(crate::domain::model::now_ms());
        tx.ops.push(Op::SaveSymbol(spec.clone()));
        tx.inval.push(Inval::Symbol(spec.symbol.clone()));
        self.commit(tx, spec, reply);
    }

    /// Merges `patch` into the symbol's spec in force (or the defaults), then upserts it.
    pub fn patch_symbol(&mut self, symbol: String, patch: SymbolPatch, reply: Reply<SymbolSpec>) {
        let base = match self.st.symbols.get(&symbol) {
            Some(s) => s.spec.clone(),
            None => SymbolSpec::default_for(&symbol),
        };
        self.upsert_symbol(patch.apply_to(base), reply);
    }

    /// Creates a promo code.
    pub fn create_promo(&mut self, p: NewPromo, reply: Reply<Promo>) {
        let now = crate::domain::model::now_ms();
        let check = valid_code(&p.code, "code")
            .and_then(|()| valid_code(&p.license_type, "license_type"))
            .and_then(|()| {
                ensure((1..=36_500).contains(&p.days), || {
                    "days must be 1..=36500".into()
                })
            })
            .and_then(|()| ensure(p.max_uses >= 1, || "max_uses must be >= 1".into()))
            .and_then(|()| {
                if self.st.promos.contains_key(&p.code) {
                    Err(Error::Conflict(format!("promo code {} exists", p.code)))
                } else {
                    Ok(())
                }
            });
        if let Err(e) = check {
            let _ = reply.send(Err(e));
            return;
        }
        self.st.last_ids.promo += 1;
        let promo = Promo {
            id: self.st.last_ids.promo,
            code: p.code,
            license_type: p.license_type,
            days: p.days,
            max_uses: p.max_uses,
            uses: 0,
            valid_until: p.valid_until,
            active: true,
            created_at: now,
        };
        self.st.promos.insert(promo.code.clone(), promo.clone());
        let mut tx = Tx::new(now);
        tx.ops.push(Op::SavePromo(promo.clone()));
        self.commit(tx, promo, reply);
    }

    /// Redeems a promo code: at most once per user, at most `max_uses` in all.
    pub fn redeem_promo(&mut self, user: Id, code: String, reply: Reply<License>) {
        let now = crate::domain::model::now_ms();
        let check = || -> Result<()> {
            self.st.users.get(&user).ok_or(Error::NotFound("user"))?;
            let p = self
                .st
                .promos
                .get(&code)
                .ok_or_else(|| Error::PromoInvalid("no such code".into()))?;
            if self.st.redeemed.contains(&(p.id, user)) {
                return Err(Error::PromoAlreadyRedeemed);
            }
            if !p.active || p.valid_until.is_some_and(|v| v < now) {
                return Err(Error::PromoInvalid("inactive or expired".into()));
            }
            if p.uses >= p.max_uses {
                return Err(Error::PromoInvalid("used up".into()));
            }
            Ok(())
        };
        if let Err(e) = check() {
            let _ = reply.send(Err(e));
            return;
        }
        let p = self.st.promos.get_mut(&code).expect("checked");
        p.uses += 1;
        let promo = p.clone();
        self.st.redeemed.insert((promo.id, user));
        let u = self.st.users.get_mut(&user).expect("checked");
        let end = u.licenses.entry(promo.license_type.clone()).or_insert(0);
        let start = if *end > now { *end } else { now };
        *end = start + promo.days as Millis * DAY_MS;
        let license = License {
            license_type: promo.license_type.clone(),
            end_date: *end,
            active: true,
        };
        let mut tx = Tx::new(now);
        tx.ops.push(Op::SavePromo(promo.clone()));
        tx.ops.push(Op::InsertRedemption {
            promo_id: promo.id,
            user_id: user,
            license_type: promo.license_type.clone(),
            at: now,
        });
        tx.ops.push(Op::SaveLicense {
            user_id: user,
            license_type: promo.license_type,
            starts_at: start,
            ends_at: license.end_date,
        });
        tx.inval.push(Inval::Profile(user));
        tx.events.push(Event::LicenseChanged { user_id: user });
        self.commit(tx, license, reply);
    }

    /// Fans a signal out to every enabled follower of its strategy (API.md §1 "Signals"), in
    /// one transaction sent to the writer in parts: [`SIGNAL_FIRST_PART`] followers, then
    /// [`SIGNAL_PART`] at a time.
    pub fn submit_signal(&mut self, s: Signal, reply: Reply<SignalOutcome>) {
        let now = crate::domain::model::now_ms();
        let last = match self.st.symbols.get(&s.symbol) {
            None => Err(Error::UnknownSymbol(s.symbol.clone())),
            Some(sym) => sym.last.ok_or_else(|| Error::NoPrice(s.symbol.clone())),
        }
        .and_then(|last| {
            check_strategy(&s.strategy)?;
            ensure(s.sl_pct.is_none_or(sl_pct_ok), || SL_PCT_RANGE.into())?;
            ensure(s.tp_pct.is_none_or(tp_pct_ok), || TP_PCT_RANGE.into())?;
            Ok(last)
        });
        let last = match last {
            Ok(l) => l,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let spec = self.st.symbols[&s.symbol].spec.clone();
        let followers: Vec<Id> = self
            .st
            .followers
            .get(&s.strategy)
            .map(|f| f.iter().copied().collect())
            .unwrap_or_default();
        let mut tx = Tx::new(now);
        // a placed follower adds two invalidations (positions, ledger) and four events
        // (placed, filled, opened, balance): reserved once rather than regrown and copied
        tx.inval.reserve(2 * followers.len());
        tx.events.reserve(4 * followers.len());
        let (mut placed, mut skipped) = (0u32, 0u32);
        let long = s.side == Side::Buy;
        for (i, user) in followers.into_iter().enumerate() {
            if i % SIGNAL_PART == SIGNAL_FIRST_PART {
                self.commit_part(&mut tx);
            }
            let u = &self.st.users[&user];
            let cfg = &u.config;
            let risk = match cfg.risk_pct {
                Some(r) if u.bot && (!self.require_license || u.licensed(now)) => r,
                _ => {
                    skipped += 1;
                    continue;
                }
            };
            let leverage = super::trading::configured_leverage(cfg, &spec);
            let available = u.ledgers[cfg.account_type.index()].available();
            let qty = math::signal_qty(available, risk, leverage, last, spec.lot_size);
            if qty < spec.min_qty {
                skipped += 1;
                continue;
            }
            let level = |pct: Option<Dec>, below: bool| {
                pct.map(|p| {
                    math::offset_to_tick(
                        last,
                        if below { Dec(-p.raw()) } else { p },
                        spec.tick_size,
                    )
                })
            };
            let sl = level(s.sl_pct.or(cfg.sl_pct), long)
                .filter(|v| v.is_positive() && (if long { *v < last } else { *v > last }));
            let tp = level(s.tp_pct.or(cfg.tp_pct), !long)
                .filter(|v| v.is_positive() && (if long { *v > last } else { *v < last }));
            let order = NewOrder {
                leverage: Some(leverage),
                sl,
                tp,
                account_type: Some(cfg.account_type),
                ..NewOrder::market(&s.symbol, s.side, qty)
            };
            match self.place_for_signal(&mut tx, user, order) {
                Ok(_) => placed += 1,
                Err(_) => skipped += 1,
            }
        }
        self.st.last_ids.signal += 1;
        let out = SignalOutcome {
            signal_id: self.st.last_ids.signal,
            orders_placed: placed,
            skipped,
        };
        tx.ops.push(Op::InsertSignal(SignalRow {
            id: out.signal_id,
            strategy: s.strategy,
            symbol: s.symbol,
            side: s.side.as_str().into(),
            sl_pct: s.sl_pct,
            tp_pct: s.tp_pct,
            orders_placed: placed,
            skipped,
            created_at: now,
        }));
        self.commit(tx, out, reply);
    }
}
