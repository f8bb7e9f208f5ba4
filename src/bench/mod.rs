//! `litetrade bench`: workload scenarios on seeded databases, measured side by side in one run.
//! Figures only; nothing here asserts a time.

mod http;
mod report;

pub use report::{BenchReport, Row};
use report::{Lat, peak_rss_mib};

use crate::Engine;
use crate::cache::{AccountKey, UserKey};
use crate::config::Config;
use crate::domain::model::{AccountType, Id, Side};
use crate::domain::money::Dec;
use crate::domain::rng::Rng;
use crate::engine::accounts::{ConfigPatch, Signal};
use crate::engine::trading::{NewOrder, Tick};
use crate::error::{Error, Result};
use crate::store::tables::{balances, config, orders, positions, trades};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// The scenarios, in the order `--scenario all` runs them.
pub const SCENARIOS: [&str; 6] = ["reads", "orders", "ticks", "fanout", "startup", "http"];

/// What to run and how big.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// One scenario, or all.
    pub scenario: Option<String>,
    /// Work directory for the databases.
    pub dir: PathBuf,
    /// Users seeded for `reads`.
    pub users: u64,
    /// Resting orders and open positions for `ticks` and `startup` (largest size).
    pub book: u64,
    /// Followers for `fanout`.
    pub followers: u64,
    /// Concurrent clients for `orders` and `http`.
    pub clients: usize,
    /// Seconds per HTTP route.
    pub http_seconds: u64,
    /// Store and cache settings for every scenario's engine (`--config`, `LITETRADE_*`); each
    /// scenario uses its own file in `dir` in place of `settings.db`.
    pub settings: Config,
}

impl BenchOptions {
    /// Full-size figures (BENCHMARKS.md).
    pub fn full(dir: PathBuf) -> BenchOptions {
        BenchOptions {
            scenario: None,
            dir,
            users: 100_000,
            book: 100_000,
            followers: 10_000,
            clients: 64,
            http_seconds: 5,
            settings: Config::default(),
        }
    }

    /// A small run that finishes in seconds (tests, smoke).
    pub fn quick(dir: PathBuf) -> BenchOptions {
        BenchOptions {
            scenario: None,
            dir,
            users: 2_000,
            book: 2_000,
            followers: 500,
            clients: 16,
            http_seconds: 1,
            settings: Config::default(),
        }
    }
}

pub(super) fn fresh(opts: &BenchOptions, name: &str) -> Result<Config> {
    let db = opts.dir.join(name);
    for suffix in ["", "-wal", "-shm", ".key", ".lock"] {
        let _ = std::fs::remove_file(crate::store::files::with_suffix(&db, suffix));
    }
    Ok(Config {
        db,
        ..opts.settings.clone()
    })
}

/// Runs the chosen scenarios; `progress(line)` reports what is running.
pub async fn run(opts: &BenchOptions, progress: &(dyn Fn(&str) + Sync)) -> Result<BenchReport> {
    std::fs::create_dir_all(&opts.dir)
        .map_err(|e| Error::Invalid(format!("cannot create {}: {e}", opts.dir.display())))?;
    let want = |s: &str| {
        opts.scenario
            .as_deref()
            .is_none_or(|x| x == "all" || x == s)
    };
    if let Some(s) = opts
        .scenario
        .as_ref()
        .filter(|s| *s != "all" && !SCENARIOS.contains(&s.as_str()))
    {
        return Err(Error::Invalid(format!(
            "unknown scenario {s}; one of {}",
            SCENARIOS.join(", ")
        )));
    }
    let mut rep = BenchReport::default();
    if want("reads") {
        progress("reads: seeding");
        reads(opts, &mut rep, progress).await?;
    }
    if want("orders") {
        progress("orders");
        orders_scenario(opts, &mut rep).await?;
    }
    if want("ticks") || want("startup") {
        progress("ticks: building books");
        ticks_and_startup(opts, &mut rep, want("ticks"), want("startup"), progress).await?;
    }
    if want("fanout") {
        progress("fanout");
        fanout(opts, &mut rep).await?;
    }
    if want("http") {
        progress("http");
        http::scenario(opts, &mut rep).await?;
    }
    rep.peak_rss_mib = peak_rss_mib();
    Ok(rep)
}

async fn reads(
    opts: &BenchOptions,
    rep: &mut BenchReport,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<()> {
    let cfg = fresh(opts, "reads.db")?;
    let seed_opts = crate::store::seed::SeedOptions {
        users: opts.users,
        trades_per_user: 10,
        open_positions: opts.users,
        pending_orders: opts.users,
        ..Default::default()
    };
    let t0 = Instant::now();
    let sr = crate::store::seed::seed(&cfg.db, &seed_opts, &|_, _, _| {})?;
    rep.add(
        "reads",
        format!("seed {} users, {} trades", sr.users, sr.trades),
        None,
        Some(sr.rows_per_sec as f64),
        format!("{:.1} s", t0.elapsed().as_secs_f64()),
    );
    progress("reads: hot queries through the pool");
    let engine = Engine::open(&cfg)?;
    for h in crate::store::hot::hot_queries() {
        let mut lat = Lat::default();
        let runs = if h.name == "trades_closed_24h" {
            20
        } else {
            2000
        };
        for _ in 0..runs {
            lat.time(|| {
                engine.store().read(h.name, |c| {
                    let mut st = c.prepare_cached(h.sql)?;
                    let mut rows = st.query(rusqlite::params_from_iter(h.params.iter()))?;
                    let mut n = 0u64;
                    while rows.next()?.is_some() {
                        n += 1;
                    }
                    Ok(n)
                })
            })?;
        }
        rep.add(
            "hot queries",
            h.name,
            Some(&lat),
            None,
            "uncached, through the pool",
        );
    }
    progress("reads: measuring");
    let store = engine.store();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let sample: Vec<Id> = (0..2000)
        .map(|_| sr.first_user_id + (rng.next_u64() % sr.users.max(1)) as Id)
        .collect();
    let demo = AccountType::Demo;
    type Uncached<'a> = Box<dyn Fn(Id) + 'a>;
    let cases: Vec<(&str, Uncached, Uncached)> = vec![
        (
            "balance",
            Box::new(|u| drop(store.read("balance", |c| balances::get(c, u, demo)))),
            Box::new(|u| hit(&engine.caches().balance, &AccountKey(u, demo))),
        ),
        (
            "positions",
            Box::new(|u| drop(store.read("positions", |c| positions::by_user(c, u, demo)))),
            Box::new(|u| hit(&engine.caches().position, &AccountKey(u, demo))),
        ),
        (
            "pending orders",
            Box::new(|u| drop(store.read("orders", |c| orders::pending_by_user(c, u, demo)))),
            Box::new(|u| hit(&engine.caches().order, &AccountKey(u, demo))),
        ),
        (
            "config",
            Box::new(|u| drop(store.read("config", |c| config::get(c, u)))),
            Box::new(|u| hit(&engine.caches().user_config, &UserKey(u))),
        ),
    ];
    // warm the caches through the engine's read path
    for &u in &sample {
        let _ = engine.balance(u, demo);
        let _ = engine.orders(u, Some(demo));
        let _ = engine.user_config(u);
    }
    for (name, uncached, cached) in &cases {
        let (mut a, mut b) = (Lat::default(), Lat::default());
        for _ in 0..3 {
            for &u in &sample {
                a.time(|| uncached(u));
                b.time(|| cached(u));
            }
        }
        let ratio = a.median_us() / b.median_us().max(0.001);
        rep.add(
            "reads",
            format!("{name}: uncached (pool)"),
            Some(&a),
            None,
            "",
        );
        rep.add(
            "reads",
            format!("{name}: cache hit"),
            Some(&b),
            None,
            format!("{ratio:.0}× faster (median)"),
        );
    }
    let mut a = Lat::default();
    let mut b = Lat::default();
    for &u in &sample {
        a.time(|| drop(store.read("trades", |c| trades::page(c, u, None, 100, 0))));
        b.time(|| drop(engine.balance(u, demo)));
    }
    rep.add(
        "reads",
        "trade page (100 rows max, pool)",
        Some(&a),
        None,
        "never cached: see DESIGN-NOTES.md",
    );
    rep.add(
        "reads",
        "engine.balance (cached, + unrealized PnL)",
        Some(&b),
        None,
        "balance + positions + price caches",
    );
    // mixed workload: 95 % reads, 5 % deposits, invalidation on
    let before = engine.caches().stats();
    let t0 = Instant::now();
    let ops = 50_000;
    for i in 0..ops {
        let u = sample[(rng.next_u64() % sample.len() as u64) as usize];
        if i % 20 == 0 {
            engine.deposit(u, Dec::from_int(1), demo).await?;
        } else if i % 2 == 0 {
            engine.balance(u, demo)?;
        } else {
            engine.user_config(u)?;
        }
    }
    let after = engine.caches().stats();
    let rate = |n: &str| {
        let h = after[n].hits - before[n].hits;
        let m = after[n].misses - before[n].misses;
        100.0 * h as f64 / (h + m).max(1) as f64
    };
    rep.add(
        "reads",
        "mixed 95 % reads / 5 % deposits",
        None,
        Some(ops as f64 / t0.elapsed().as_secs_f64()),
        format!(
            "hit rate balance {:.1} %, config {:.1} %",
            rate("balance"),
            rate("user_config")
        ),
    );
    // a burst of 1,000 concurrent misses on one key runs one query
    let loads = Arc::new(AtomicU64::new(0));
    let barrier = Arc::new(std::sync::Barrier::new(1000));
    let cache = Arc::new(crate::cache::ttl::TtlCache::<UserKey, u64>::new(
        10, 60_000, 16,
    ));
    let hs: Vec<_> = (0..1000)
        .map(|_| {
            let (loads, barrier, cache) = (loads.clone(), barrier.clone(), cache.clone());
            std::thread::spawn(move || {
                barrier.wait();
                cache.get_or_load(&UserKey(1), || {
                    loads.fetch_add(1, Relaxed);
                    std::thread::sleep(Duration::from_millis(20));
                    Ok::<_, ()>(1)
                })
            })
        })
        .collect();
    for h in hs {
        let _ = h.join();
    }
    rep.add(
        "reads",
        "1,000 concurrent misses on one key",
        None,
        None,
        format!("{} load(s) ran", loads.load(Relaxed)),
    );
    rep.add(
        "reads",
        "peak RSS after reads",
        None,
        None,
        format!("{:.0} MiB with {} users", peak_rss_mib(), sr.users),
    );
    engine.shutdown();
    Ok(())
}

/// One cache read that must hit (the entry was warmed); a miss would not load.
fn hit<K: crate::cache::ttl::CacheKey, V: Clone + Send + Sync + 'static>(
    c: &crate::cache::ttl::TtlCache<K, V>,
    k: &K,
) {
    let _ = std::hint::black_box(c.get_or_load(k, || Err(())));
}

/// One tick: `symbol` at `whole` units.
pub(super) async fn set_price(engine: &Engine, symbol: &str, whole: i64) -> Result<()> {
    let tick = Tick {
        symbol: symbol.into(),
        price: Dec::from_int(whole),
        ts: None,
    };
    engine.ingest_ticks(vec![tick]).await.map(drop)
}

async fn make_users(engine: &Engine, n: u64, deposit: i64, clients: usize) -> Result<Vec<Id>> {
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..clients.max(1) {
        let (e, next) = (engine.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            while next.fetch_add(1, Relaxed) < n {
                let (u, _) = e.create_user("bench", None).await?;
                e.deposit(u.id, Dec::from_int(deposit), AccountType::Demo)
                    .await?;
                ids.push(u.id);
            }
            Ok::<_, Error>(ids)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.map_err(|e| Error::Internal(e.to_string()))??);
    }
    all.sort_unstable();
    Ok(all)
}

async fn orders_scenario(opts: &BenchOptions, rep: &mut BenchReport) -> Result<()> {
    let cfg = fresh(opts, "orders.db")?;
    let engine = Engine::open(&cfg)?;
    let users = make_users(&engine, opts.clients as u64, 1_000_000, opts.clients).await?;
    set_price(&engine, "BTCUSDT", 30_000).await?;
    let per_client = 300;
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for &u in &users {
        let e = engine.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per_client);
            for _ in 0..per_client {
                let t = Instant::now();
                e.place_order(
                    u,
                    NewOrder::market("BTCUSDT", Side::Buy, Dec::parse("0.001").expect("literal")),
                )
                .await?;
                lat.push(t.elapsed().as_nanos() as u64);
            }
            Ok::<_, Error>(lat)
        }));
    }
    let mut lat = Lat::default();
    for t in tasks {
        lat.0
            .extend(t.await.map_err(|e| Error::Internal(e.to_string()))??);
    }
    let secs = t0.elapsed().as_secs_f64();
    let s = engine.store().stats().snapshot();
    rep.add(
        "orders",
        format!(
            "place_order (market, fills) × {} concurrent callers",
            users.len()
        ),
        Some(&lat),
        Some(lat.0.len() as f64 / secs),
        format!(
            "durable fills/s; mean batch {:.1} jobs",
            s.writer_jobs as f64 / s.writer_batches.max(1) as f64
        ),
    );
    engine.shutdown();
    Ok(())
}

/// `whole + cents/100`.
fn px(whole: i64, cents: i64) -> Dec {
    Dec(whole * crate::domain::money::SCALE + cents * 1_000_000)
}

/// Builds `n` resting orders and `n` open positions far from the price, with `clients` callers.
async fn build_book(engine: &Engine, n: u64, clients: usize) -> Result<()> {
    let users = make_users(engine, (n / 1000).max(1), 100_000_000, clients).await?;
    set_price(engine, "BTCUSDT", 100).await?;
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for c in 0..clients.max(1) {
        let (e, next, users) = (engine.clone(), next.clone(), users.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Relaxed);
                if i >= n {
                    return Ok::<_, Error>(());
                }
                let u = users[(i as usize + c) % users.len()];
                let qty = Dec::parse("0.001").expect("literal");
                // resting buy far below, spread over 1000 price levels
                let limit = px(10, (i % 1000) as i64);
                e.place_order(u, NewOrder::limit("BTCUSDT", Side::Buy, qty, limit))
                    .await?;
                // an open long with stop loss and take profit far away (liquidation ~0.5)
                let mut o = NewOrder::market("BTCUSDT", Side::Buy, qty);
                o.sl = Some(px(20, (i % 1000) as i64));
                o.tp = Some(px(500, (i % 1000) as i64));
                e.place_order(u, o).await?;
            }
        }));
    }
    for t in tasks {
        t.await.map_err(|e| Error::Internal(e.to_string()))??;
    }
    Ok(())
}

async fn ticks_and_startup(
    opts: &BenchOptions,
    rep: &mut BenchReport,
    do_ticks: bool,
    do_startup: bool,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<()> {
    let mut sizes: Vec<u64> = [0, 1_000, 10_000, 100_000]
        .into_iter()
        .filter(|&s| s <= opts.book)
        .collect();
    if !sizes.contains(&opts.book) {
        sizes.push(opts.book);
    }
    if !do_ticks {
        sizes = vec![opts.book];
    }
    let mut per_size = Vec::new();
    for &n in &sizes {
        progress(&format!("ticks: {n} resting orders + {n} open positions"));
        let cfg = fresh(opts, &format!("ticks-{n}.db"))?;
        let engine = Engine::open(&cfg)?;
        let t0 = Instant::now();
        build_book(&engine, n, opts.clients).await?;
        let build_s = t0.elapsed().as_secs_f64();
        if do_ticks {
            let batches = 200;
            let mut lat = Lat::default();
            let t0 = Instant::now();
            for b in 0..batches {
                let ticks: Vec<Tick> = (0..1000)
                    .map(|i| Tick {
                        symbol: "BTCUSDT".into(),
                        price: px(99, (b * 1000 + i) % 200),
                        ts: None,
                    })
                    .collect();
                let t = Instant::now();
                let out = engine.ingest_ticks(ticks).await?;
                lat.0.push(t.elapsed().as_nanos() as u64);
                debug_assert_eq!(
                    out.fills + out.stop_losses + out.take_profits + out.liquidations,
                    0
                );
            }
            let tps = (batches * 1000) as f64 / t0.elapsed().as_secs_f64();
            per_size.push((n, tps));
            rep.add(
                "ticks",
                format!("{n} resting + {n} open, batches of 1000, no fills"),
                Some(&lat),
                Some(tps),
                format!("ticks/s end to end (commit included); book built in {build_s:.1} s"),
            );
        }
        if do_startup && n == opts.book {
            engine.shutdown();
            drop(engine);
            let mut lat = Lat::default();
            for _ in 0..3 {
                let e = lat.time(|| Engine::open(&cfg))?;
                e.shutdown();
            }
            rep.add(
                "startup",
                format!("reopen with {n} resting orders + {n} open positions"),
                Some(&lat),
                None,
                "Engine::open, books rebuilt",
            );
        } else {
            engine.shutdown();
        }
    }
    if let (Some(small), Some(big)) = (per_size.iter().find(|(n, _)| *n == 1_000), per_size.last())
    {
        rep.add(
            "ticks",
            format!("cost growth 1k → {}", big.0),
            None,
            None,
            format!("{:.2}× per tick", small.1 / big.1),
        );
    }
    Ok(())
}

async fn fanout(opts: &BenchOptions, rep: &mut BenchReport) -> Result<()> {
    let cfg = fresh(opts, "fanout.db")?;
    let engine = Engine::open(&cfg)?;
    let users = make_users(&engine, opts.followers, 10_000, opts.clients).await?;
    let pct = |s: &str| Some(Some(Dec::parse(s).expect("literal")));
    for &u in &users {
        engine
            .set_config(
                u,
                ConfigPatch {
                    strategy: Some(Some("bench".into())),
                    leverage: Some(Some(5)),
                    risk_pct: pct("1"),
                    sl_pct: pct("2"),
                    tp_pct: pct("4"),
                    account_type: None,
                },
            )
            .await?;
        engine.set_bot_enabled(u, true).await?;
    }
    set_price(&engine, "ETHUSDT", 2000).await?;
    let (lat, placed) = signals(&engine, 10).await?;
    rep.add(
        "fanout",
        format!("one signal → {} followers, committed", users.len()),
        Some(&lat),
        None,
        format!("{placed} orders placed per signal"),
    );
    // the same with an SSE-style listener on each of the first followers' event streams
    let listeners = users.len().min(FANOUT_LISTENERS);
    let got = Arc::new(AtomicU64::new(0));
    let lagged = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = users[..listeners]
        .iter()
        .map(|&u| {
            let mut rx = engine.subscribe_user(u);
            let (got, lagged) = (got.clone(), lagged.clone());
            tokio::spawn(async move {
                loop {
                    match rx.recv().await {
                        Ok(_) => got.fetch_add(1, Relaxed),
                        Err(crate::engine::events::RecvError::Lagged(_)) => {
                            lagged.fetch_add(1, Relaxed)
                        }
                        Err(_) => return,
                    };
                }
            })
        })
        .collect();
    let (lat, placed) = signals(&engine, 10).await?;
    // a follower whose order is placed gets four events (placed, filled, opened, balance)
    let want = 10 * 4 * listeners as u64;
    let skipped = if (placed as usize) < users.len() {
        " (some followers were skipped: fewer are due)"
    } else {
        ""
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.load(Relaxed) < want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    rep.add(
        "fanout",
        format!("the same, {listeners} followers listening"),
        Some(&lat),
        None,
        format!(
            "{} of {want} events delivered, {} lagged{skipped}",
            got.load(Relaxed),
            lagged.load(Relaxed)
        ),
    );
    for t in tasks {
        t.abort();
    }
    engine.shutdown();
    Ok(())
}

/// Followers of `fanout` that listen to their events in its second run.
const FANOUT_LISTENERS: usize = 1_000;

/// Sends `n` signals of the `bench` strategy on ETHUSDT, alternating buy and sell: their
/// latencies, and the fewest orders one of them placed.
async fn signals(engine: &Engine, n: usize) -> Result<(Lat, u32)> {
    let mut lat = Lat::default();
    let mut placed = u32::MAX;
    for i in 0..n {
        let side = if i % 2 == 0 { Side::Buy } else { Side::Sell };
        let t = Instant::now();
        let out = engine
            .submit_signal(Signal {
                strategy: "bench".into(),
                symbol: "ETHUSDT".into(),
                side,
                sl_pct: None,
                tp_pct: None,
            })
            .await?;
        lat.0.push(t.elapsed().as_nanos() as u64);
        placed = placed.min(out.orders_placed);
    }
    Ok((lat, placed))
}
