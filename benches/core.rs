//! Criterion micro-benchmarks: money math, the matcher and monitor per tick at 0 / 1k / 10k /
//! 100k resting orders and open positions, cache hit vs miss, and writer batch commits.
//! Run: `cargo bench --bench core`. Figures go to BENCHMARKS.md; nothing here asserts a time.

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use litetrade::cache::ttl::TtlCache;
use litetrade::cache::{AccountKey, UserKey};
use litetrade::domain::math;
use litetrade::domain::model::{AccountType, PositionSide, Side};
use litetrade::domain::money::Dec;
use litetrade::domain::symbol::Bps;
use litetrade::engine::book::{OrderBook, TriggerBook};
use litetrade::store::ops::Op;
use litetrade::store::writer::Job;
use litetrade::store::{Store, StoreConfig};
use std::hint::black_box;
use std::sync::mpsc::channel;

fn d(s: &str) -> Dec {
    Dec::parse(s).unwrap()
}

fn money(c: &mut Criterion) {
    let mut g = c.benchmark_group("money");
    g.bench_function("parse 12345.6789", |b| {
        b.iter(|| Dec::parse(black_box("12345.6789")))
    });
    g.bench_function("format", |b| {
        b.iter(|| black_box(d("12345.6789")).to_string())
    });
    g.bench_function("margin+fee+liq", |b| {
        b.iter(|| {
            let (p, q) = (black_box(d("30123.45")), black_box(d("0.123")));
            (
                math::margin(p, q, 10),
                math::fee(p, q, Bps(550)),
                math::liquidation_price(PositionSide::Long, p, 10, Bps(5000), d("0.01")),
            )
        })
    });
    g.finish();
}

fn position(id: i64) -> litetrade::domain::model::Position {
    let cents = (id % 1000) * 1_000_000;
    litetrade::domain::model::Position {
        id,
        user_id: 1,
        symbol: "BTCUSDT".into(),
        side: PositionSide::Long,
        qty: d("0.001"),
        entry_price: d("100"),
        leverage: 1,
        margin: d("0.1"),
        sl: Some(Dec(20 * 100_000_000 + cents)),
        tp: Some(Dec(500 * 100_000_000 + cents)),
        liquidation_price: d("0.5"),
        open_fee: Dec::ZERO,
        unrealized_pnl: Dec::ZERO,
        account_type: AccountType::Demo,
        opened_at: 0,
        order_id: Some(id),
    }
}

/// The in-memory cost of one tick that crosses nothing: matcher range + monitor range.
fn per_tick(c: &mut Criterion) {
    let mut g = c.benchmark_group("tick (matcher + monitor, no hits)");
    for n in [0i64, 1_000, 10_000, 100_000] {
        let mut book = OrderBook::default();
        let mut triggers = TriggerBook::default();
        for i in 0..n {
            book.insert(Side::Buy, Dec(10 * 100_000_000 + (i % 1000) * 1_000_000), i);
            triggers.insert(&position(i));
        }
        let mut k = 0i64;
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                k = (k + 1) % 200;
                let price = Dec(99 * 100_000_000 + k * 1_000_000);
                (
                    book.crossed_by(black_box(price)),
                    triggers.triggered_by(black_box(price)),
                )
            })
        });
    }
    g.finish();
}

fn caches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("b.db"), StoreConfig::default()).unwrap();
    let cache: TtlCache<AccountKey, litetrade::domain::model::Ledger> =
        TtlCache::new(10_000, 60_000, 1 << 16);
    let key = AccountKey(1, AccountType::Demo);
    let load = || {
        store.read("balance", |c| {
            litetrade::store::tables::balances::get(c, 1, AccountType::Demo)
        })
    };
    cache.get_or_load(&key, load).unwrap();
    let mut g = c.benchmark_group("cache");
    g.bench_function("balance hit", |b| {
        b.iter(|| cache.get_or_load(black_box(&key), load))
    });
    g.bench_function("balance miss (pool read)", |b| {
        b.iter(|| {
            cache.invalidate(&key);
            cache.get_or_load(black_box(&key), load)
        })
    });
    let users: TtlCache<UserKey, u64> = TtlCache::new(10_000, 60_000, 1 << 16);
    users.get_or_load(&UserKey(7), || Ok::<_, ()>(7)).unwrap();
    g.bench_function("user hit", |b| {
        b.iter(|| users.get_or_load(black_box(&UserKey(7)), || Ok::<_, ()>(0)))
    });
    g.finish();
    store.shutdown();
}

fn writer(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("w.db"), StoreConfig::default()).unwrap();
    let mut g = c.benchmark_group("writer");
    for rows in [1usize, 100, 1000] {
        g.throughput(Throughput::Elements(rows as u64));
        g.bench_with_input(
            BenchmarkId::new("one job of N rows", rows),
            &rows,
            |b, &rows| {
                b.iter_batched(
                    || {
                        (0..rows)
                            .map(|i| {
                                Op::SetLastPrice("BTCUSDT".into(), Dec(1 + i as i64), i as i64)
                            })
                            .collect::<Vec<_>>()
                    },
                    |ops| {
                        let (tx, rx) = channel();
                        store.writer().submit(Job {
                            ops,
                            epoch: 0,
                            continues: false,
                            done: Box::new(move |r| tx.send(r.is_ok()).unwrap()),
                        });
                        assert!(rx.recv().unwrap());
                    },
                    BatchSize::SmallInput,
                )
            },
        );
    }
    g.finish();
    store.shutdown();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(3));
    targets = money, per_tick, caches, writer
}
criterion_main!(benches);
