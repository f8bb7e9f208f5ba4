//! Read-after-write through the caches under concurrency: the miss/invalidate race is closed.
//!
//! How this was checked to fail without the guard: moving the generation read in
//! `TtlCache::get_or_load` (src/cache/ttl.rs) from before the load to after it — the classic
//! race, where an entry loaded from an old row is stored as current — makes the unit test
//! `cache::ttl::tests::an_entry_loaded_before_an_invalidation_is_never_served_after_it` fail
//! every time and `balance_reads_never_go_back` below fail in about one run in three (debug
//! build, 2 cores) with "stale read: wallet 873 < acknowledged 874".

use litetrade::domain::model::{AccountType, Side};
use litetrade::domain::money::Dec;
use litetrade::{Config, Engine, NewOrder, Tick};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering::SeqCst};

fn engine(dir: &tempfile::TempDir) -> Engine {
    Engine::open(&Config {
        db: dir.path().join("t.db"),
        ..Config::default()
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balance_reads_never_go_back() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(&dir);
    let (u, _) = e.create_user("race", None).await.unwrap();
    let acked = Arc::new(AtomicI64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (e, acked, done) = (e.clone(), acked.clone(), done.clone());
            std::thread::spawn(move || {
                let mut reads = 0u64;
                while !done.load(SeqCst) {
                    let want = acked.load(SeqCst);
                    let got = e.balance(u.id, AccountType::Demo).unwrap().wallet.raw();
                    assert!(
                        got >= want,
                        "stale read: wallet {got} < acknowledged {want}"
                    );
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    for k in 1..=2000i64 {
        e.deposit(u.id, Dec(1), AccountType::Demo).await.unwrap();
        acked.store(k, SeqCst);
    }
    done.store(true, SeqCst);
    let total: u64 = readers.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(total > 0);
    assert_eq!(
        e.balance(u.id, AccountType::Demo).unwrap().wallet,
        Dec(2000)
    );
    let stats = e.cache_stats();
    assert!(stats["balance"].hits > 0, "the balance cache was exercised");
    e.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn positions_and_orders_are_fresh_after_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(&dir);
    let (u, _) = e.create_user("rw", None).await.unwrap();
    e.deposit(u.id, Dec::from_int(1_000_000), AccountType::Demo)
        .await
        .unwrap();
    e.ingest_ticks(vec![Tick {
        symbol: "ETHUSDT".into(),
        price: Dec::from_int(100),
        ts: None,
    }])
    .await
    .unwrap();
    let positions_seen = Arc::new(AtomicI64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (e, seen, done) = (e.clone(), positions_seen.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(SeqCst) {
                let want = seen.load(SeqCst);
                let got = e.positions(u.id, None).unwrap().len() as i64;
                assert!(got >= want, "stale positions: {got} < {want}");
            }
        })
    };
    for k in 1..=300i64 {
        // read first to warm the cache, then write, then the very next read must see it
        let before = e.positions(u.id, None).unwrap().len();
        let o = e
            .place_order(
                u.id,
                NewOrder::market("ETHUSDT", Side::Buy, Dec::parse("0.01").unwrap()),
            )
            .await
            .unwrap();
        positions_seen.store(k, SeqCst);
        assert_eq!(e.positions(u.id, None).unwrap().len(), before + 1);
        let rest = e
            .place_order(
                u.id,
                NewOrder::limit(
                    "ETHUSDT",
                    Side::Buy,
                    Dec::parse("0.01").unwrap(),
                    Dec::from_int(50),
                ),
            )
            .await
            .unwrap();
        assert!(
            e.orders(u.id, None)
                .unwrap()
                .iter()
                .any(|x| x.id == rest.id)
        );
        e.cancel_order(u.id, rest.id).await.unwrap();
        assert!(
            !e.orders(u.id, None)
                .unwrap()
                .iter()
                .any(|x| x.id == rest.id)
        );
        assert_eq!(o.status, litetrade::domain::model::OrderStatus::Filled);
    }
    done.store(true, SeqCst);
    reader.join().unwrap();
    e.shutdown();
}
