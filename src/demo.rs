//! `litetrade demo`: demo users with strategies, a built-in price feed (or a file), periodic
//! signals and resting orders, so a newcomer sees orders fill and positions close in seconds.

use crate::Engine;
use crate::domain::model::{AccountType, CloseReason, Id, Side};
use crate::domain::money::Dec;
use crate::domain::rng::Rng;
use crate::engine::accounts::{ConfigPatch, NewPromo, Signal};
use crate::engine::events::Event;
use crate::engine::trading::{NewOrder, Tick};
use crate::error::{Error, Result};
use crate::feed::{self, FeedTick};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Live counters the status line shows.
#[derive(Default, Debug)]
pub struct DemoStatus {
    /// Ticks ingested.
    pub ticks: AtomicU64,
    /// Orders filled.
    pub fills: AtomicU64,
    /// Positions opened this run.
    pub opened: AtomicU64,
    /// Closes by stop loss.
    pub stop_loss: AtomicU64,
    /// Closes by take profit.
    pub take_profit: AtomicU64,
    /// Liquidations.
    pub liquidation: AtomicU64,
    /// Manual closes.
    pub manual: AtomicU64,
    /// Signals sent.
    pub signals: AtomicU64,
}

impl DemoStatus {
    /// One status line.
    pub fn line(&self) -> String {
        let closed = self.stop_loss.load(Relaxed)
            + self.take_profit.load(Relaxed)
            + self.liquidation.load(Relaxed)
            + self.manual.load(Relaxed);
        format!(
            "ticks {} | signals {} | fills {} | open {} | closed: take_profit {} stop_loss {} liquidation {} manual {}",
            self.ticks.load(Relaxed),
            self.signals.load(Relaxed),
            self.fills.load(Relaxed),
            self.opened.load(Relaxed).saturating_sub(closed),
            self.take_profit.load(Relaxed),
            self.stop_loss.load(Relaxed),
            self.liquidation.load(Relaxed),
            self.manual.load(Relaxed)
        )
    }

    fn count(&self, e: &Event) {
        match e {
            Event::OrderFilled { .. } => self.fills.fetch_add(1, Relaxed),
            Event::PositionOpened { .. } => self.opened.fetch_add(1, Relaxed),
            Event::PositionClosed { trade } => match trade.reason {
                CloseReason::StopLoss => self.stop_loss.fetch_add(1, Relaxed),
                CloseReason::TakeProfit => self.take_profit.fetch_add(1, Relaxed),
                CloseReason::Liquidation => self.liquidation.fetch_add(1, Relaxed),
                CloseReason::Manual => self.manual.fetch_add(1, Relaxed),
            },
            _ => 0,
        };
    }
}

/// Starting prices of the built-in feed.
pub const START_PRICES: [(&str, i64); 4] = [
    ("BTCUSDT", 30_000),
    ("ETHUSDT", 2_000),
    ("SOLUSDT", 20),
    ("XRPUSDT", 1),
];
const STRATEGIES: [&str; 2] = ["trend", "revert"];
/// How many demo users there are: ids 1..=DEMO_USERS, named `{USER_PREFIX}{id}`.
const DEMO_USERS: i64 = 6;
const USER_PREFIX: &str = "demo-";

/// Creates the demo users on a database that has none; returns their ids and tokens (tokens
/// only for users created now). A database holding any user that is not the demo's own (users
/// 1–6, named `demo-1` … `demo-6`) is refused: the demo's price feed would trade its users'
/// positions.
pub async fn ensure_demo_users(engine: &Engine) -> Result<Vec<(Id, Option<String>)>> {
    let outsider = engine.store().read("demo_outsider", |c| {
        crate::store::tables::users::first_outside(c, DEMO_USERS, USER_PREFIX)
    })?;
    if let Some((id, name)) = outsider {
        return Err(crate::Error::Invalid(format!(
            "this database holds users that are not the demo's (user {id} is {name:?}), and \
             the demo's price feed would trade their positions: run the demo on its own file, \
             e.g. --db demo.db"
        )));
    }
    if engine.user(1).is_ok() {
        let ids = (1..=DEMO_USERS)
            .filter(|id| engine.user(*id).is_ok())
            .map(|id| (id, None))
            .collect();
        return Ok(ids);
    }
    let mut out = Vec::new();
    for i in 0..DEMO_USERS as usize {
        let name = format!("{USER_PREFIX}{}", i + 1);
        let (u, token) = engine.create_user(&name, None).await?;
        engine
            .deposit(u.id, Dec::from_int(10_000), AccountType::Demo)
            .await?;
        let trend = i % 2 == 0;
        let pct = |s: &str| Some(Some(Dec::parse(s).expect("literal")));
        engine
            .set_config(
                u.id,
                ConfigPatch {
                    strategy: Some(Some(STRATEGIES[i % 2].to_string())),
                    leverage: Some(Some(if trend { 5 } else { 10 })),
                    risk_pct: pct(if trend { "10" } else { "5" }),
                    sl_pct: pct(if trend { "0.5" } else { "1" }),
                    tp_pct: pct(if trend { "1" } else { "0.5" }),
                    account_type: None,
                },
            )
            .await?;
        engine.set_bot_enabled(u.id, true).await?;
        out.push((u.id, Some(token)));
    }
    Ok(out)
}

/// Under `--require-license` the demo's users could not trade without a license, and the demo
/// would show nothing: each of `users` without an active license redeems a one-year `demo`
/// license from a promo code made for them. Returns how many did.
pub async fn license_demo_users(engine: &Engine, users: &[Id]) -> Result<usize> {
    let unlicensed: Vec<Id> = users
        .iter()
        .copied()
        .filter(|u| !engine.license(*u).is_ok_and(|l| l.active))
        .collect();
    if !engine.config().require_license || unlicensed.is_empty() {
        return Ok(0);
    }
    let code = format!("demo-{}", crate::domain::model::now_ms());
    engine
        .create_promo(NewPromo {
            code: code.clone(),
            license_type: "demo".into(),
            days: 365,
            max_uses: unlicensed.len() as u32,
            valid_until: None,
        })
        .await?;
    for u in &unlicensed {
        engine.redeem_promo(*u, &code).await?;
    }
    Ok(unlicensed.len())
}

/// The price paths: per symbol, from a file (onto BTCUSDT, prices as they are; see
/// [`fit_ticks`]) or the built-in random walk.
pub fn price_paths(
    file: Option<&std::path::Path>,
) -> std::result::Result<Vec<(String, Vec<FeedTick>)>, feed::FeedError> {
    let tick = Dec::parse("0.01").expect("literal");
    if let Some(path) = file {
        return Ok(vec![("BTCUSDT".to_string(), feed::read_feed(path)?)]);
    }
    Ok(START_PRICES
        .iter()
        .enumerate()
        .map(|(i, (s, p))| {
            (
                s.to_string(),
                feed::synthetic(42 + i as u64, Dec::from_int(*p), 20_000, 15, tick),
            )
        })
        .collect())
}

/// Where a restarted demo picks each walk up, so that prices go on from where the last run left
/// them instead of jumping back to the path's start (which closed most open positions on the
/// first tick). Each path is cut at the step whose price is nearest the symbol's stored last
/// price and turned to run from there, towards the longer of its two ends. The feed walks a
/// path back and forth, so it never jumps. A symbol with no last price keeps its path.
pub fn resume(
    paths: Vec<(String, Vec<FeedTick>)>,
    last: impl Fn(&str) -> Option<Dec>,
) -> Vec<(String, Vec<FeedTick>)> {
    paths
        .into_iter()
        .map(|(symbol, mut path)| {
            let Some(price) = last(&symbol) else {
                return (symbol, path);
            };
            let Some(at) =
                (0..path.len()).min_by_key(|&i| (path[i].price.raw() - price.raw()).abs())
            else {
                return (symbol, path);
            };
            if at < path.len() / 2 {
                path.drain(..at);
            } else {
                path.truncate(at + 1);
                path.reverse();
            }
            (symbol, path)
        })
        .collect()
}

/// Gives each symbol of `paths` a tick fine enough for its prices, when its own is not: the demo
/// owns its database, and rounding a fine feed (BTC priced in ETH, 0.00162008) to 0.01 would
/// turn its path into a flat line that liquidates every position. Returns the symbols changed,
/// with their new tick.
pub async fn fit_ticks(
    engine: &Engine,
    paths: &[(String, Vec<FeedTick>)],
) -> Result<Vec<(String, Dec)>> {
    let mut changed = Vec::new();
    for (symbol, ticks) in paths {
        let mut spec = engine.symbol(symbol)?;
        let tick = spec.tick_size.raw();
        if ticks.iter().all(|t| t.price.raw() % tick == 0) {
            continue;
        }
        // a power of ten fits every price; their common divisor with the tick also fits the
        // tick's own grid (a tick of 0.025 and prices in cents: 0.005)
        let (mut a, mut b) = (tick, feed::finest_step(ticks, spec.tick_size).raw());
        while b != 0 {
            (a, b) = (b, a % b);
        }
        spec.tick_size = Dec(a);
        engine.upsert_symbol(spec).await?;
        changed.push((symbol.clone(), Dec(a)));
    }
    Ok(changed)
}

/// Runs the feed, the signals and the resting orders until `stop` flips; counts into `status`.
/// While the database refuses writes (a full disk), the feed skips its steps with one warning
/// and goes on once writes succeed again.
pub async fn run(
    engine: Engine,
    users: Vec<Id>,
    paths: Vec<(String, Vec<FeedTick>)>,
    tick_every: Duration,
    status: Arc<DemoStatus>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<()> {
    let mut events = engine.subscribe();
    let st = status.clone();
    tokio::spawn(async move {
        while let Ok(e) = events.recv().await {
            st.count(&e);
        }
    });
    let mut rng = Rng(7);
    let mut step: usize = 0;
    let mut refused_since: Option<std::time::Instant> = None;
    let mut interval = tokio::time::interval(tick_every);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.changed() => return Ok(()),
        }
        if *stop.borrow() {
            return Ok(());
        }
        // ping-pong along each path so the walk continues without a jump
        let ticks: Vec<Tick> = paths
            .iter()
            .filter(|(_, p)| !p.is_empty())
            .map(|(s, p)| {
                let n = p.len();
                let k = step % (2 * n);
                let idx = if k < n { k } else { 2 * n - 1 - k };
                Tick {
                    symbol: s.clone(),
                    price: p[idx].price,
                    ts: None,
                }
            })
            .collect();
        let n = ticks.len() as u64;
        match engine.ingest_ticks(ticks).await {
            Ok(_) => {
                if let Some(since) = refused_since.take() {
                    tracing::info!(
                        after_s = since.elapsed().as_secs(),
                        "demo feed: the database takes writes again"
                    );
                }
            }
            Err(Error::Unavailable(why)) => {
                if refused_since.is_none() {
                    tracing::warn!(error = %why, "demo feed: ticks refused; trying again on the next step");
                    refused_since = Some(std::time::Instant::now());
                }
                continue;
            }
            Err(e) => return Err(e),
        }
        status.ticks.fetch_add(n, Relaxed);
        step += 1;
        let per_second = (1000 / tick_every.as_millis().max(1)) as usize;
        if step.is_multiple_of(3 * per_second.max(1)) {
            let (symbol, _) = &paths[rng.next_u64() as usize % paths.len()];
            let side = if rng.next_u64().is_multiple_of(2) {
                Side::Buy
            } else {
                Side::Sell
            };
            let strategy = STRATEGIES[rng.next_u64() as usize % 2].to_string();
            if engine
                .submit_signal(Signal {
                    strategy,
                    symbol: symbol.clone(),
                    side,
                    sl_pct: None,
                    tp_pct: None,
                })
                .await
                .is_ok()
            {
                status.signals.fetch_add(1, Relaxed);
            }
        }
        if step.is_multiple_of(2 * per_second.max(1)) && !users.is_empty() {
            let user = users[rng.next_u64() as usize % users.len()];
            let (symbol, _) = &paths[rng.next_u64() as usize % paths.len()];
            if let (Ok(Some(last)), Ok(spec)) = (engine.last_price(symbol), engine.symbol(symbol)) {
                let buy = rng.next_u64().is_multiple_of(2);
                // 0.2 % away from the last price, on the tick
                let tick = spec.tick_size.raw();
                let off = Dec(last.raw() / 500 / tick * tick);
                let price = if buy {
                    Dec(last.raw() - off.raw())
                } else {
                    Dec(last.raw() + off.raw())
                };
                // about 1000 USDT of notional, floored to the 0.001 lot
                let scale = crate::domain::money::SCALE as i128;
                let raw = (1_000 * scale * scale / last.raw().max(1) as i128).min(i64::MAX as i128)
                    as i64;
                let qty = Dec((raw / 100_000 * 100_000).max(100_000));
                let mut o =
                    NewOrder::limit(symbol, if buy { Side::Buy } else { Side::Sell }, qty, price);
                o.leverage = Some(5);
                let _ = engine.place_order(user, o).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(prices: &[i64]) -> Vec<FeedTick> {
        prices
            .iter()
            .map(|&p| FeedTick {
                price: Dec::from_int(p),
                ts: 0,
            })
            .collect()
    }

    fn prices(p: &[FeedTick]) -> Vec<i64> {
        p.iter()
            .map(|t| t.price.raw() / Dec::from_int(1).raw())
            .collect()
    }

    #[test]
    fn a_restarted_walk_goes_on_from_the_stored_last_price() {
        let walk = || vec![("X".to_string(), path(&[10, 11, 12, 13, 14, 15, 16, 17]))];
        // early in the path: on towards its end
        let r = resume(walk(), |_| Some(Dec::from_int(12)));
        assert_eq!(prices(&r[0].1), [12, 13, 14, 15, 16, 17]);
        // late in the path: back towards its start, the longer way
        let r = resume(walk(), |_| Some(Dec::from_int(16)));
        assert_eq!(prices(&r[0].1), [16, 15, 14, 13, 12, 11, 10]);
        // a price off the path: the nearest step
        let r = resume(walk(), |_| Some(Dec::from_int(100)));
        assert_eq!(prices(&r[0].1), [17, 16, 15, 14, 13, 12, 11, 10]);
        // no last price (a new database): the path as it is
        let r = resume(walk(), |_| None);
        assert_eq!(prices(&r[0].1), [10, 11, 12, 13, 14, 15, 16, 17]);
        // the built-in walks: each starts at the price its symbol was left at
        let built_in = price_paths(None).unwrap();
        let left: Vec<(String, Dec)> = built_in
            .iter()
            .map(|(s, p)| (s.clone(), p[p.len() * 3 / 4].price))
            .collect();
        let resumed = resume(built_in, |s| {
            left.iter().find(|(n, _)| n == s).map(|(_, p)| *p)
        });
        for ((s, p), (_, at)) in resumed.iter().zip(&left) {
            assert_eq!(p[0].price, *at, "{s}");
            assert!(p.len() > 1000, "{s}: {} steps left", p.len());
        }
    }
}
