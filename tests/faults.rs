//! Fault injection (issue 7, part 2): the disk fills up, another process holds the write lock,
//! the database cannot be opened at all. In every case a write fails with a clear
//! `unavailable` error (HTTP 503 JSON), nothing is half-applied, reads keep working, the
//! service resumes by itself once the cause is gone, and a start-up that cannot work exits
//! with one clear line instead of a panic.
//!
//! "Disk full" is a file-size quota: `StoreConfig::max_page_count` (`[store] max_page_count`),
//! which SQLite enforces exactly like a full disk (`SQLITE_FULL`) on the writer connection.
//! "Locked" is a second connection (in this process, or in a child process) holding
//! `BEGIN IMMEDIATE`.

use litetrade::domain::model::{AccountType, Side};
use litetrade::domain::money::Dec;
use litetrade::store::StoreConfig;
use litetrade::{Config, Engine, Error, NewOrder, Tick};
use rusqlite::{Connection, OpenFlags};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_litetrade");
const ADMIN: &str = "faults-admin-token-2b7e151628aed2a6";

fn cfg(db: &Path, store: StoreConfig) -> Config {
    Config {
        db: db.to_path_buf(),
        store,
        ..Config::default()
    }
}

fn d(s: &str) -> Dec {
    Dec::parse(s).unwrap()
}

fn tick(px: &str) -> Vec<Tick> {
    vec![Tick {
        symbol: "BTCUSDT".into(),
        price: d(px),
        ts: None,
    }]
}

/// (wallet, deposited) of a user's demo ledger, read from the file.
fn stored_demo_ledger(db: &Path, uid: i64) -> (i64, i64) {
    ro(db)
        .query_row(
            "SELECT wallet, deposited FROM balances WHERE user_id = ?1 AND account_type = 'demo'",
            [uid],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
}

/// A read-only connection beside the engine (WAL: sees every committed write).
fn ro(db: &Path) -> Connection {
    let c = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    c
}

fn integrity(db: &Path) -> String {
    ro(db)
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap()
}

fn page_count(db: &Path) -> u64 {
    ro(db)
        .query_row("PRAGMA page_count", [], |r| r.get::<_, i64>(0))
        .unwrap() as u64
}

#[track_caller]
fn assert_unavailable(e: &Error, what: &str) {
    assert!(
        matches!(e, Error::Unavailable(_)),
        "{what}: expected Error::Unavailable, got {e:?}"
    );
    assert_eq!(e.code(), "unavailable", "{what}");
    assert_eq!(e.status(), 503, "{what}");
    assert!(!e.to_string().is_empty());
}

/// The ledger identities of API.md §1, straight from SQL, for every balance row.
#[track_caller]
fn assert_ledger_invariants(db: &Path) {
    let c = ro(db);
    let mut st = c
        .prepare("SELECT user_id, account_type, wallet, margin_used, order_reserved, deposited FROM balances")
        .unwrap();
    let rows: Vec<(i64, String, i64, i64, i64, i64)> = st
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for (uid, acct, wallet, margin, reserved, deposited) in rows {
        let q = |sql: &str| -> i64 {
            c.query_row(sql, rusqlite::params![uid, acct], |r| r.get(0))
                .unwrap()
        };
        let pnl = q(
            "SELECT COALESCE(SUM(pnl), 0) FROM trade_logs WHERE user_id = ?1 AND account_type = ?2",
        );
        let open_fees = q(
            "SELECT COALESCE(SUM(open_fee), 0) FROM active_positions WHERE user_id = ?1 AND account_type = ?2",
        );
        let margins = q(
            "SELECT COALESCE(SUM(margin), 0) FROM active_positions WHERE user_id = ?1 AND account_type = ?2",
        );
        let reserves = q(
            "SELECT COALESCE(SUM(reserve), 0) FROM orders WHERE user_id = ?1 AND account_type = ?2 AND status = 'pending'",
        );
        assert_eq!(
            wallet,
            deposited + pnl - open_fees,
            "user {uid} {acct}: wallet identity"
        );
        assert_eq!(margin, margins, "user {uid} {acct}: margin_used");
        assert_eq!(reserved, reserves, "user {uid} {acct}: order_reserved");
        assert!(
            wallet - margin - reserved >= 0,
            "user {uid} {acct}: available < 0"
        );
    }
}

// =============================================================================================
// disk full (library)

/// What the acknowledged writes of the disk-full test must have left in the database.
#[derive(Default, Debug)]
struct Model {
    deposited: i64,
    deposits: i64,
    orders: BTreeSet<i64>,
    cancelled: BTreeSet<i64>,
    positions: BTreeSet<i64>,
    closed: BTreeSet<i64>,
    last_price: Option<i64>,
    /// Client order ids of acknowledged orders, and of refused ones.
    client_ids: BTreeMap<String, i64>,
    refused_client_ids: Vec<String>,
}

/// How the database differs from what was acknowledged (empty: nothing lost, nothing
/// half-applied).
fn db_mismatches(db: &Path, uid: i64, m: &Model) -> Vec<String> {
    let c = ro(db);
    let one = |sql: &str| -> i64 { c.query_row(sql, [uid], |r| r.get(0)).unwrap() };
    let ids = |sql: &str| -> BTreeSet<i64> {
        c.prepare(sql)
            .unwrap()
            .query_map([uid], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let mut out = Vec::new();
    let mut check = |what: &str, got: String, want: String| {
        if got != want {
            out.push(format!("{what}: database has {got}, acknowledged {want}"));
        }
    };
    check(
        "deposited",
        one("SELECT COALESCE((SELECT deposited FROM balances WHERE user_id = ?1 AND account_type = 'demo'), 0)").to_string(),
        m.deposited.to_string(),
    );
    check(
        "deposit payments",
        one("SELECT COUNT(*) FROM payments WHERE user_id = ?1 AND kind = 'deposit'").to_string(),
        m.deposits.to_string(),
    );
    check(
        "order rows",
        format!(
            "{:?}",
            ids("SELECT id FROM orders WHERE user_id = ?1 ORDER BY id")
        ),
        format!("{:?}", m.orders),
    );
    check(
        "cancelled orders",
        format!(
            "{:?}",
            ids("SELECT id FROM orders WHERE user_id = ?1 AND status = 'cancelled' ORDER BY id")
        ),
        format!("{:?}", m.cancelled),
    );
    let mut pos = ids("SELECT id FROM active_positions WHERE user_id = ?1");
    let closed = ids("SELECT position_id FROM trade_logs WHERE user_id = ?1");
    check(
        "trade rows",
        format!("{closed:?}"),
        format!("{:?}", m.closed),
    );
    let both: BTreeSet<i64> = pos.intersection(&closed).copied().collect();
    check(
        "positions both open and closed",
        format!("{both:?}"),
        "{}".into(),
    );
    pos.extend(closed);
    check(
        "positions (open and closed)",
        format!("{pos:?}"),
        format!("{:?}", m.positions),
    );
    let last: Option<i64> = c
        .query_row(
            "SELECT last_price FROM symbols WHERE symbol = 'BTCUSDT'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    check(
        "BTCUSDT last price",
        format!("{last:?}"),
        format!("{:?}", m.last_price),
    );
    out
}

/// The database holds exactly what was acknowledged, and the ledgers add up.
#[track_caller]
fn assert_db_matches(db: &Path, uid: i64, m: &Model, when: &str) {
    let bad = db_mismatches(db, uid, m);
    assert!(bad.is_empty(), "{when}: {}", bad.join("; "));
    assert_ledger_invariants(db);
}

/// What the engine's (cached) reads say about a user.
fn snapshot(e: &Engine, uid: i64) -> String {
    let b = e.balance(uid, AccountType::Demo).unwrap();
    let orders: Vec<_> = e
        .orders(uid, None)
        .unwrap()
        .iter()
        .map(|o| (o.id, o.reserve))
        .collect();
    let pos: Vec<_> = e
        .positions(uid, None)
        .unwrap()
        .iter()
        .map(|p| (p.id, p.margin))
        .collect();
    let trades = e.trades(uid, 1, 1000).unwrap().total;
    format!("{b:?} | orders {orders:?} | positions {pos:?} | trades {trades}")
}

/// A resting buy limit order under the client id `cid`.
fn resting_with_client_id(cid: &str) -> NewOrder {
    let mut o = NewOrder::limit("BTCUSDT", Side::Buy, d("0.001"), Dec::from_int(1000));
    o.client_order_id = Some(cid.to_string());
    o
}

/// One write of the fill loop: (what, result with the acknowledged effect).
async fn write_op(e: &Engine, uid: i64, kind: usize, i: usize, m: &mut Model) -> Result<(), Error> {
    match kind {
        0 => {
            e.deposit(uid, Dec::from_int(3), AccountType::Demo).await?;
            m.deposited += Dec::from_int(3).raw();
            m.deposits += 1;
        }
        1 => {
            // a resting limit order with a long client_order_id: a wide row and three index entries
            let cid = format!("{i:07}-{}", "c".repeat(56));
            match e.place_order(uid, resting_with_client_id(&cid)).await {
                Ok(o) => {
                    m.orders.insert(o.id);
                    m.client_ids.insert(cid, o.id);
                }
                Err(err) => {
                    m.refused_client_ids.push(cid);
                    return Err(err);
                }
            }
        }
        2 => {
            let o = e
                .place_order(uid, NewOrder::market("BTCUSDT", Side::Buy, d("0.001")))
                .await?;
            m.orders.insert(o.id);
            m.positions
                .insert(o.position_id.expect("a market order fills"));
        }
        3 => {
            let px = format!("{}", 30_000 + (i % 50));
            e.ingest_ticks(tick(&px)).await?;
            m.last_price = Some(d(&px).raw());
        }
        4 => {
            let open: BTreeSet<i64> = m.positions.difference(&m.closed).copied().collect();
            let Some(&pid) = open.iter().next() else {
                return Ok(());
            };
            e.close_position(uid, pid).await?;
            m.closed.insert(pid);
        }
        5 => {
            let pending: Vec<i64> = e.orders(uid, None).unwrap().iter().map(|o| o.id).collect();
            let Some(&oid) = pending.first() else {
                return Ok(());
            };
            e.cancel_order(uid, oid).await?;
            m.cancelled.insert(oid);
        }
        _ => unreachable!(),
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_fails_writes_cleanly_and_resumes_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("full.db");

    // a fresh file, to learn its size; then the quota is that plus a little
    let e = Engine::open(&cfg(&db, StoreConfig::default())).unwrap();
    let (u, _) = e.create_user("filler", None).await.unwrap();
    let uid = u.id;
    let mut m = Model::default();
    e.deposit(uid, Dec::from_int(1_000_000), AccountType::Demo)
        .await
        .unwrap();
    m.deposited += Dec::from_int(1_000_000).raw();
    m.deposits += 1;
    e.ingest_ticks(tick("30000")).await.unwrap();
    m.last_price = Some(d("30000").raw());
    e.shutdown();
    drop(e);
    let base = page_count(&db);
    let cap = base + 24;
    eprintln!("fresh file: {base} pages; quota {cap} pages");

    let small = StoreConfig {
        max_page_count: Some(cap),
        ..StoreConfig::default()
    };
    let e = Engine::open(&cfg(&db, small.clone())).unwrap();
    assert_db_matches(&db, uid, &m, "after reopen under the quota");

    // fill until a write fails
    let t0 = Instant::now();
    let mut acked = 0usize;
    let mut first_failure = None;
    for i in 0..50_000usize {
        let kind = i % 4;
        let before = snapshot(&e, uid);
        match write_op(&e, uid, kind, i, &mut m).await {
            Ok(()) => acked += 1,
            Err(err) => {
                assert_unavailable(&err, &format!("write {i} (kind {kind})"));
                assert_eq!(
                    snapshot(&e, uid),
                    before,
                    "write {i} (kind {kind}) changed what reads see"
                );
                first_failure = Some((i, err));
                break;
            }
        }
    }
    let (i_fail, err) = first_failure.expect("the quota was never reached");
    eprintln!(
        "{acked} writes acknowledged, then write {i_fail} failed after {:?}: {err}",
        t0.elapsed()
    );
    assert!(
        acked > 20,
        "the quota was hit too early to mean anything ({acked} writes)"
    );
    assert_db_matches(&db, uid, &m, "right after the first failed write");

    // while full: every kind of write either fits or fails cleanly; each failure changes nothing
    let mut failed_kinds = BTreeSet::new();
    for round in 0..3 {
        for kind in 0..6 {
            let i = i_fail + 1 + round * 6 + kind;
            let before = snapshot(&e, uid);
            match write_op(&e, uid, kind, i, &mut m).await {
                Ok(()) => {}
                Err(err) => {
                    assert_unavailable(&err, &format!("full: write kind {kind}"));
                    assert_eq!(
                        snapshot(&e, uid),
                        before,
                        "full: failed write kind {kind} changed reads"
                    );
                    failed_kinds.insert(kind);
                }
            }
            assert_db_matches(&db, uid, &m, &format!("full, after write kind {kind}"));
        }
    }
    eprintln!("while full, these write kinds failed: {failed_kinds:?}");
    assert!(
        failed_kinds.contains(&0) || failed_kinds.contains(&1),
        "nothing failed while full"
    );
    let r = e.create_user("late", None).await;
    if let Err(err) = &r {
        assert_unavailable(err, "create_user while full");
    }

    // reads keep working while full
    let b = e.balance(uid, AccountType::Demo).unwrap();
    assert!(b.wallet.raw() >= 0);
    e.positions(uid, None).unwrap();
    e.orders(uid, None).unwrap();
    e.trades(uid, 1, 10).unwrap();
    e.symbols().unwrap();
    e.ticker("BTCUSDT").unwrap();
    for &oid in m.orders.iter().take(5) {
        e.order(uid, oid).unwrap();
    }
    assert_eq!(integrity(&db), "ok");
    e.shutdown();
    drop(e);
    assert_db_matches(&db, uid, &m, "after shutdown while full");

    // still no space: the engine starts (reads work), writes still fail cleanly
    let e = Engine::open(&cfg(&db, small.clone())).expect("a full database still opens for reads");
    assert_eq!(snapshot(&e, uid), snapshot(&e, uid));
    let mut still_full = false;
    for i in 0..40 {
        if let Err(err) = write_op(&e, uid, 1, 900_000 + i, &mut m).await {
            assert_unavailable(&err, "reopened full: order");
            still_full = true;
            break;
        }
    }
    assert!(still_full, "writes succeeded without more space");
    // the refused order's client id names no order: its retry is tried again (and refused
    // again), not answered with the order that was never committed
    let refused = m
        .refused_client_ids
        .last()
        .expect("a refused order")
        .clone();
    let retry = e.place_order(uid, resting_with_client_id(&refused)).await;
    assert_unavailable(
        &retry.expect_err("a retry while full"),
        "retry of a refused client id",
    );
    assert_db_matches(&db, uid, &m, "reopened full");
    e.shutdown();
    drop(e);

    // space returns: a bigger quota; every acknowledged write is there and writes succeed
    let big = StoreConfig {
        max_page_count: Some(cap * 8),
        ..StoreConfig::default()
    };
    let e = Engine::open(&cfg(&db, big)).unwrap();
    assert_db_matches(&db, uid, &m, "after space returned");
    for kind in 0..6 {
        write_op(&e, uid, kind, 1_000_000 + kind, &mut m)
            .await
            .unwrap_or_else(|err| panic!("write kind {kind} after space returned: {err}"));
    }
    for &oid in &m.orders {
        assert_eq!(
            e.order(uid, oid).unwrap().id,
            oid,
            "acknowledged order {oid}"
        );
    }
    let b = e.balance(uid, AccountType::Demo).unwrap();
    let (_, deposited) = stored_demo_ledger(&db, uid);
    assert_eq!(deposited, m.deposited);
    assert!(b.available.raw() >= 0);
    assert_db_matches(&db, uid, &m, "after writes resumed");
    // a refused client id is free: its retry places one new order, and a second retry answers
    // that order; an acknowledged one answers its first order
    for cid in m.refused_client_ids.clone() {
        let first = e
            .place_order(uid, resting_with_client_id(&cid))
            .await
            .unwrap();
        assert!(
            !m.orders.contains(&first.id),
            "{cid} answered an older order"
        );
        let again = e
            .place_order(uid, resting_with_client_id(&cid))
            .await
            .unwrap();
        assert_eq!(again.id, first.id, "{cid} placed twice");
        m.orders.insert(first.id);
    }
    for (cid, &id) in m.client_ids.iter().take(20) {
        let again = e
            .place_order(uid, resting_with_client_id(cid))
            .await
            .unwrap();
        assert_eq!(again.id, id, "{cid}");
    }
    assert_db_matches(&db, uid, &m, "after client id retries");
    // the books were rebuilt from the file: a crossing tick fills every resting order
    let pending = e.orders(uid, None).unwrap().len();
    let out = e.ingest_ticks(tick("999")).await.unwrap();
    assert_eq!(
        out.fills as usize, pending,
        "resting orders after the reload"
    );
    assert_eq!(integrity(&db), "ok");
    e.shutdown();
}

/// Many writers at once when the disk fills: the sequencer runs ahead of the writer, so one
/// failed batch takes later commands of the same epoch down with it. Whatever the
/// interleaving, the file must hold exactly the writes that were acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_under_concurrent_writers_keeps_exactly_the_acknowledged_writes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("full-conc.db");
    let e = Engine::open(&cfg(&db, StoreConfig::default())).unwrap();
    let mut users = Vec::new();
    for i in 0..4 {
        let (u, _) = e.create_user(&format!("w{i}"), None).await.unwrap();
        e.deposit(u.id, Dec::from_int(1_000_000), AccountType::Demo)
            .await
            .unwrap();
        users.push(u.id);
    }
    e.ingest_ticks(tick("30000")).await.unwrap();
    e.shutdown();
    drop(e);
    let cap = page_count(&db) + 16;
    let e = Engine::open(&cfg(
        &db,
        StoreConfig {
            max_page_count: Some(cap),
            ..StoreConfig::default()
        },
    ))
    .unwrap();

    let mut tasks = Vec::new();
    for (n, &uid) in users.iter().enumerate() {
        let e = e.clone();
        tasks.push(tokio::spawn(async move {
            let mut m = Model {
                deposited: Dec::from_int(1_000_000).raw(),
                deposits: 1,
                last_price: Some(d("30000").raw()),
                ..Model::default()
            };
            let (mut acked, mut failed) = (0, 0);
            for i in 0..20_000usize {
                let kind = [0, 1, 2, 1, 4, 1, 5, 2][(i + n) % 8];
                match write_op(&e, uid, kind, n * 1_000_000 + i, &mut m).await {
                    Ok(()) => acked += 1,
                    Err(err) => {
                        assert_unavailable(&err, &format!("user {uid} write {i} kind {kind}"));
                        failed += 1;
                        if failed >= 25 {
                            break;
                        }
                    }
                }
            }
            (uid, m, acked, failed)
        }));
    }
    let mut models = Vec::new();
    for t in tasks {
        let (uid, m, acked, failed) = t.await.unwrap();
        eprintln!("user {uid}: {acked} writes acknowledged, {failed} refused");
        assert!(failed > 0, "user {uid} never hit the quota");
        models.push((uid, m));
    }
    for (uid, m) in &models {
        assert_db_matches(&db, *uid, m, &format!("user {uid} while full"));
        // the engine's own view agrees with the file
        let b = e.balance(*uid, AccountType::Demo).unwrap();
        let (stored, _) = stored_demo_ledger(&db, *uid);
        assert_eq!(
            b.wallet.raw(),
            stored,
            "user {uid}: the engine's wallet differs from the file"
        );
        let pending: BTreeSet<i64> = e.orders(*uid, None).unwrap().iter().map(|o| o.id).collect();
        let want: BTreeSet<i64> = m
            .orders
            .iter()
            .copied()
            .filter(|o| e.order(*uid, *o).unwrap().status.as_str() == "pending")
            .collect();
        assert_eq!(pending, want, "user {uid}: pending orders");
    }
    e.shutdown();
    drop(e);
    let e = Engine::open(&cfg(
        &db,
        StoreConfig {
            max_page_count: Some(cap * 8),
            ..StoreConfig::default()
        },
    ))
    .unwrap();
    for (uid, m) in &mut models {
        assert_db_matches(&db, *uid, m, &format!("user {uid} after space returned"));
        for kind in [0, 1, 2, 4, 5] {
            write_op(&e, *uid, kind, 9_000_000 + kind, m)
                .await
                .unwrap_or_else(|err| panic!("user {uid} kind {kind} after space returned: {err}"));
        }
    }
    e.ingest_ticks(tick("30001")).await.unwrap();
    for (uid, m) in &mut models {
        m.last_price = Some(d("30001").raw());
        assert_db_matches(&db, *uid, m, &format!("user {uid} after writes resumed"));
    }
    assert_eq!(integrity(&db), "ok");
    e.shutdown();
}

// =============================================================================================
// the WAL under continuous writes

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// A WAL that only grows fills the disk: under a steady stream of writes (and reads beside
/// them) the writer must reset it (restart it from its start) near its budget, so its size
/// stays bounded. A small budget makes the test see many resets.
/// A shutdown whose last checkpoint cannot empty the WAL (here a reader that holds a snapshot;
/// in the field, a full disk) says so through `Engine::wal_left`, so that `serve` does not
/// report a clean stop while `<db>-wal` still holds committed writes (RELIABILITY finding 17).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_that_cannot_empty_the_wal_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let store = StoreConfig {
        busy_timeout_ms: 50,
        ..StoreConfig::default()
    };
    let e = Engine::open(&cfg(&db, store.clone())).unwrap();
    let (alice, _) = e.create_user("alice", None).await.unwrap();
    let reader = ro(&db);
    reader.execute_batch("BEGIN").unwrap();
    let n: i64 = reader
        .query_row("SELECT count(*) FROM users", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);
    e.create_user("bob", None).await.unwrap();
    assert!(!e.wal_left());
    e.close().await;
    assert!(
        e.wal_left(),
        "the reader's snapshot kept the WAL from being emptied"
    );
    let wal = dir.path().join("t.db-wal");
    assert!(std::fs::metadata(&wal).unwrap().len() > 0);
    drop(reader);
    // nothing was lost, and a stop with no reader in the way leaves no WAL behind
    let e = Engine::open(&cfg(&db, store)).unwrap();
    assert!(e.user(alice.id).is_ok());
    e.close().await;
    assert!(!e.wal_left());
    assert!(!wal.exists() || std::fs::metadata(&wal).unwrap().len() == 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_stays_bounded_under_continuous_writes() {
    const BUDGET_MB: u64 = 16;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("wal.db");
    let wal = dir.path().join("wal.db-wal");
    let store = StoreConfig {
        wal_max_mb: BUDGET_MB,
        ..StoreConfig::default()
    };
    let e = Engine::open(&cfg(&db, store)).unwrap();
    let mut users = Vec::new();
    for i in 0..4 {
        users.push(e.create_user(&format!("w{i}"), None).await.unwrap().0.id);
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for &uid in &users {
        let (e, stop) = (e.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                e.deposit(uid, Dec::from_int(1), AccountType::Demo)
                    .await
                    .unwrap();
                e.balance(uid, AccountType::Demo).unwrap();
                n += 1;
            }
            n
        }));
    }
    let t0 = Instant::now();
    let mut samples = Vec::new();
    while t0.elapsed() < Duration::from_secs(12) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        samples.push(file_len(&wal));
    }
    let max_wal = samples.iter().copied().max().unwrap_or(0);
    samples.sort_unstable();
    let median_wal = samples[samples.len() / 2];
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut writes = 0;
    for t in tasks {
        writes += t.await.unwrap();
    }
    let db_len = file_len(&db);
    let resets = e.db_stats().wal_resets;
    eprintln!(
        "{writes} deposits in {:?}: database {} KiB, WAL median {} KiB and largest {} KiB of \
         {} samples, {resets} resets",
        t0.elapsed(),
        db_len / 1024,
        median_wal / 1024,
        max_wal / 1024,
        samples.len()
    );
    e.shutdown();
    assert!(writes > 1000, "too few writes ({writes}) to mean anything");
    assert!(resets > 0, "the writer never reset the WAL");
    // The writer resets at 7/8 of the budget, but the file can pass the budget by what the
    // writer appends while a checkpoint waits on the disk (the background pass holds the
    // checkpoint lock while it fsyncs, and the WAL cannot restart before every frame is
    // copied and synced). This test appends 20-80 MB/s of WAL. A pass usually takes 100-300
    // ms, but with the other tests of this file writing beside it, one fsync stalled for
    // seconds in a CI run and the WAL reached 310 MiB before 198 resets brought it back. So
    // the test judges where the WAL stays, the median of its samples, not its one peak.
    // Without the resets it only grows: it reached 787 MiB (RELIABILITY.md finding 1), and
    // its median would be half of that, so 2x the budget tells them apart.
    assert!(
        median_wal <= (BUDGET_MB << 20) * 2,
        "the WAL stayed at {} KiB (median; largest {} KiB; budget {BUDGET_MB} MiB) for a {} KiB \
         database after {writes} writes",
        median_wal >> 10,
        max_wal >> 10,
        db_len / 1024
    );
}

/// The checkpoint tests' set-up: an engine on `dir/name.db` with one user, and a count of the
/// background thread's passes so far.
async fn checkpoint_case(
    dir: &Path,
    name: &str,
) -> (Engine, std::path::PathBuf, i64, impl Fn() -> u64) {
    let db = dir.join(format!("{name}.db"));
    let e = Engine::open(&cfg(&db, StoreConfig::default())).unwrap();
    let uid = e.create_user(name, None).await.unwrap().0.id;
    let stats = e.clone();
    let passes = move || stats.db_stats().checkpoint_passes;
    (e, db, uid, passes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checkpointer_runs_after_commits_and_sleeps_while_idle() {
    use litetrade::store::checkpoint::BACKGROUND_EVERY;
    let dir = tempfile::tempdir().unwrap();
    let (e, _, uid, passes) = checkpoint_case(dir.path(), "idle").await;
    let passes = &passes;
    // waits (bounded) until a pass after `before` has run
    let pass_after = |before: u64| async move {
        let deadline = Instant::now() + Duration::from_secs(10);
        while passes() <= before {
            assert!(
                Instant::now() < deadline,
                "no checkpoint pass after a commit"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    for round in 0..2 {
        let before = passes();
        e.deposit(uid, Dec::from_int(1), AccountType::Demo)
            .await
            .unwrap();
        pass_after(before).await;
        // every frame of the deposit is in the database file now; nothing else is committed,
        // so over ten intervals the thread runs at most the one pass a commit racing the
        // last one asked for (it used to run one every interval, idle or not)
        let settled = passes();
        tokio::time::sleep(BACKGROUND_EVERY * 10).await;
        let idle = passes() - settled;
        assert!(idle <= 1, "round {round}: {idle} passes while idle");
    }
    e.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_a_reader_holds_back_is_retried_at_the_pace_then_stops() {
    use litetrade::store::checkpoint::BACKGROUND_EVERY;
    let dir = tempfile::tempdir().unwrap();
    let (e, db, uid, passes) = checkpoint_case(dir.path(), "held").await;
    // a reader inside a transaction keeps its snapshot: frames committed after it cannot be
    // copied into the database until it ends, so every pass is incomplete
    let reader = ro(&db);
    reader.execute_batch("BEGIN").unwrap();
    let _: i64 = reader
        .query_row("SELECT count(*) FROM users", [], |r| r.get(0))
        .unwrap();
    e.deposit(uid, Dec::from_int(1), AccountType::Demo)
        .await
        .unwrap();
    let held = passes();
    tokio::time::sleep(BACKGROUND_EVERY * 10).await;
    let retried = passes() - held;
    // retried while held (about ten in ten intervals), but at the pace, not in a tight loop
    assert!(
        (3..=12).contains(&retried),
        "{retried} passes in ten intervals"
    );
    // once the reader is gone, a pass copies everything and the thread goes back to sleep
    reader.execute_batch("COMMIT").unwrap();
    drop(reader);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let before = passes();
        tokio::time::sleep(BACKGROUND_EVERY * 10).await;
        if passes() - before <= 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the passes did not stop");
    }
    e.shutdown();
}

// =============================================================================================
// disk full (HTTP)

mod common;
use common::{Serve, free_port, litetrade, wait_for};

/// Starts `litetrade serve` on `db`, with a config file if given (see `common::Serve`).
fn start_server(db: &Path, config: Option<&Path>) -> Serve {
    Serve::start(db, |c| {
        if let Some(p) = config {
            c.arg("--config").arg(p);
        }
        c.env("LITETRADE_ADMIN_TOKEN", ADMIN)
            .env("LITETRADE_LOG", "warn");
    })
}

#[test]
fn disk_full_over_http_answers_503_json_and_the_server_stays_up() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("full.db");
    let mut s = start_server(&db, None);
    let (st, u) = s.req(
        "POST",
        "/api/v1/users",
        Some(ADMIN),
        Some(&r#"{"name":"alice"}"#),
    );
    assert_eq!(st, 201, "{u}");
    let uid = u["id"].as_i64().unwrap();
    let tok = u["token"].as_str().unwrap().to_string();
    let ub = format!("/api/v1/users/{uid}");
    assert_eq!(
        s.req(
            "POST",
            &format!("{ub}/deposit"),
            Some(&tok),
            Some(&r#"{"amount":"100"}"#)
        )
        .0,
        200
    );
    assert!(s.terminate().success());
    let base = page_count(&db);

    let cfg_file = dir.path().join("cfg.toml");
    std::fs::write(
        &cfg_file,
        format!("[store]\nmax_page_count = {}\n", base + 12),
    )
    .unwrap();
    let s = start_server(&db, Some(&cfg_file));
    // fill with credentials rows (about 1.1 KB each) until a write answers 503
    let key = "K".repeat(500);
    let secret = "S".repeat(500);
    let mut acked = Vec::new();
    let mut failed = None;
    for i in 0..5000 {
        let ex = format!("ex{i:05}");
        let body = format!(r#"{{"api_key":"{key}{i}","api_secret":"{secret}"}}"#);
        let (st, v) = s.req(
            "PUT",
            &format!("{ub}/credentials/{ex}"),
            Some(&tok),
            Some(&body),
        );
        match st {
            200 => acked.push(ex),
            503 => {
                failed = Some((ex, v));
                break;
            }
            other => panic!("PUT credentials {ex}: {other} {v}"),
        }
    }
    let (failed_ex, v) = failed.expect("the quota was never reached over HTTP");
    eprintln!(
        "{} credential rows acknowledged, then 503: {v}",
        acked.len()
    );
    assert_eq!(v["error"]["code"], "unavailable", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{v}"
    );
    assert_eq!(
        v.as_object().unwrap().len(),
        1,
        "only the error object: {v}"
    );

    // the server stays up; reads work; the failed write is not there
    assert_eq!(s.req("GET", "/api/v1/health", None, None).0, 200);
    let (st, b) = s.req("GET", &format!("{ub}/balance"), Some(&tok), None);
    assert_eq!((st, b["wallet"].as_str()), (200, Some("100")), "{b}");
    assert_eq!(
        s.req(
            "GET",
            &format!("{ub}/credentials/{}", acked[0]),
            Some(&tok),
            None
        )
        .0,
        200
    );
    let (st, v) = s.req(
        "GET",
        &format!("{ub}/credentials/{failed_ex}"),
        Some(&tok),
        None,
    );
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (404, Some("not_found")),
        "half-applied: {v}"
    );
    // other writes fail the same way (or fit); none answers anything but 200 or 503
    let mut saw_503 = false;
    for i in 0..20 {
        let body = format!(r#"{{"api_key":"{key}x{i}","api_secret":"{secret}"}}"#);
        let (st, v) = s.req(
            "PUT",
            &format!("{ub}/credentials/late{i}"),
            Some(&tok),
            Some(&body),
        );
        match st {
            200 => acked.push(format!("late{i}")),
            503 => {
                assert_eq!(v["error"]["code"], "unavailable");
                saw_503 = true;
            }
            other => panic!("late write: {other} {v}"),
        }
    }
    assert!(saw_503, "the disk stopped being full by itself");
    let (st, b) = s.req("GET", &format!("{ub}/balance"), Some(&tok), None);
    assert_eq!((st, b["wallet"].as_str()), (200, Some("100")), "{b}");
    assert_eq!(s.req("GET", "/api/v1/health", None, None).0, 200);
    let mut s = s;
    let st = s.terminate();
    assert!(
        st.success(),
        "serve exited with {st} after SIGTERM while full: {}",
        s.log_text()
    );
    assert_eq!(integrity(&db), "ok");

    // space returns: every acknowledged row is there and writes succeed
    std::fs::write(
        &cfg_file,
        format!("[store]\nmax_page_count = {}\n", (base + 12) * 10),
    )
    .unwrap();
    let mut s = start_server(&db, Some(&cfg_file));
    for ex in &acked {
        let (st, v) = s.req("GET", &format!("{ub}/credentials/{ex}"), Some(&tok), None);
        assert_eq!(st, 200, "acknowledged credentials {ex}: {v}");
    }
    let (st, v) = s.req(
        "PUT",
        &format!("{ub}/credentials/{failed_ex}"),
        Some(&tok),
        Some(&r#"{"api_key":"k-after","api_secret":"s"}"#),
    );
    assert_eq!(st, 200, "{v}");
    let (st, b) = s.req(
        "POST",
        &format!("{ub}/deposit"),
        Some(&tok),
        Some(&r#"{"amount":"1"}"#),
    );
    assert_eq!((st, b["wallet"].as_str()), (200, Some("101")), "{b}");
    assert!(s.terminate().success());
    assert_eq!(integrity(&db), "ok");
}

// =============================================================================================
// the write lock held by someone else

fn lock_cfg(db: &Path) -> Config {
    cfg(
        db,
        StoreConfig {
            busy_timeout_ms: 200,
            busy_retries: 2,
            ..StoreConfig::default()
        },
    )
}

/// Like [`lock_cfg`], but a held lock fails a batch within 20 ms, with no retry.
fn quick_lock_cfg(db: &Path) -> Config {
    cfg(
        db,
        StoreConfig {
            busy_timeout_ms: 20,
            busy_retries: 0,
            ..StoreConfig::default()
        },
    )
}

/// Another connection holding the file's write lock until it rolls back or is dropped.
fn hold_write_lock(db: &Path) -> Connection {
    let other = Connection::open(db).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    other
}

fn deposited(db: &Path, uid: i64) -> i64 {
    ro(db)
        .query_row(
            "SELECT deposited FROM balances WHERE user_id = ?1 AND account_type = 'demo'",
            [uid],
            |r| r.get(0),
        )
        .unwrap()
}

/// Runs `f`, which must finish within `limit` (a hang is the failure this guards against).
async fn bounded<T>(
    limit: Duration,
    what: &str,
    f: impl std::future::Future<Output = T>,
) -> (T, Duration) {
    let t0 = Instant::now();
    let out = tokio::time::timeout(limit, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: still waiting after {limit:?}"));
    (out, t0.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_lock_held_by_another_connection_gives_a_bounded_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("locked.db");
    let e = Engine::open(&lock_cfg(&db)).unwrap();
    let (u, _) = e.create_user("alice", None).await.unwrap();
    e.deposit(u.id, Dec::from_int(100), AccountType::Demo)
        .await
        .unwrap();

    let other = hold_write_lock(&db);

    let (r, took) = bounded(
        Duration::from_secs(10),
        "deposit under a held lock",
        e.deposit(u.id, Dec::from_int(5), AccountType::Demo),
    )
    .await;
    let err = r.expect_err("a deposit committed while another connection held the write lock");
    assert_unavailable(&err, "deposit under a held lock");
    eprintln!("deposit under lock failed after {took:?}: {err}");
    // concurrent writes while locked: each answers unavailable, none blocks forever
    let (rs, took) = bounded(
        Duration::from_secs(20),
        "concurrent writes under a held lock",
        async {
            let mut hs = Vec::new();
            for _ in 0..5 {
                let e = e.clone();
                hs.push(tokio::spawn(async move {
                    e.deposit(u.id, Dec::from_int(1), AccountType::Demo).await
                }));
            }
            let mut out = Vec::new();
            for h in hs {
                out.push(h.await.unwrap());
            }
            out
        },
    )
    .await;
    eprintln!("5 concurrent writes under lock answered after {took:?}");
    for r in rs {
        assert_unavailable(
            &r.expect_err("committed under a held lock"),
            "concurrent deposit",
        );
    }
    // reads keep working, and see nothing of the failed writes
    assert_eq!(
        e.balance(u.id, AccountType::Demo).unwrap().wallet,
        Dec::from_int(100)
    );

    other.execute_batch("ROLLBACK").unwrap();
    drop(other);
    let (r, _) = bounded(
        Duration::from_secs(10),
        "deposit after the lock",
        e.deposit(u.id, Dec::from_int(7), AccountType::Demo),
    )
    .await;
    assert_eq!(r.unwrap().wallet, Dec::from_int(107));
    assert_eq!(
        deposited(&db, u.id),
        Dec::from_int(107).raw(),
        "a failed deposit was applied"
    );
    assert_eq!(integrity(&db), "ok");
    assert_ledger_invariants(&db);
    e.shutdown();
}

/// A write failure that lasts (here a write lock another connection keeps) does not make every
/// command reload the whole state: from the third failure in a row the sequencer holds
/// commands off, answering `unavailable` at once, and tries again after the hold. Without the
/// hold, each of the 40 deposits after the first failure would reload the state. Once the
/// lock goes, a write succeeds within the longest hold, and no refused write was applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lasting_write_failure_holds_commands_off_instead_of_reloading_for_each() {
    use litetrade::engine::hold::MAX_HOLD;
    use std::sync::atomic::Ordering::Relaxed;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("held.db");
    let e = Engine::open(&quick_lock_cfg(&db)).unwrap();
    let (u, _) = e.create_user("alice", None).await.unwrap();
    e.deposit(u.id, Dec::from_int(100), AccountType::Demo)
        .await
        .unwrap();
    let stats = e.sequencer_stats();
    assert_eq!(stats.reloads.load(Relaxed), 0);

    let other = hold_write_lock(&db);
    let mut messages = Vec::new();
    for _ in 0..40 {
        let err = e
            .deposit(u.id, Dec::from_int(1), AccountType::Demo)
            .await
            .expect_err("a deposit committed under a held lock");
        assert_unavailable(&err, "deposit under a lasting lock");
        messages.push(err.to_string());
    }
    let (reloads, held) = (stats.reloads.load(Relaxed), stats.held.load(Relaxed));
    eprintln!("40 deposits under a lasting lock: {reloads} reloads, {held} held");
    // failures 1 and 2 reload and try again; the third starts a hold of 100 ms, within which
    // the rest are answered at once (a stall past a hold adds one try and one reload)
    assert!(
        (3..=10).contains(&reloads),
        "{reloads} reloads for 40 failed deposits"
    );
    assert!(held >= 20, "only {held} of 40 deposits were held off");
    assert!(
        messages.iter().any(|m| m.contains("refusing writes")),
        "{messages:?}"
    );
    assert_eq!(
        e.balance(u.id, AccountType::Demo).unwrap().wallet,
        Dec::from_int(100)
    );

    // the lock goes: a write goes through once the hold has passed (a client retries on 503)
    other.execute_batch("ROLLBACK").unwrap();
    drop(other);
    let deadline = Instant::now() + MAX_HOLD + Duration::from_secs(10);
    let wallet = loop {
        match e.deposit(u.id, Dec::from_int(7), AccountType::Demo).await {
            Ok(b) => break b.wallet,
            Err(err) => {
                assert_unavailable(&err, "deposit after the lock went");
                assert!(Instant::now() < deadline, "still refused: {err}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    assert_eq!(wallet, Dec::from_int(107), "a refused deposit was applied");
    assert_eq!(deposited(&db, u.id), Dec::from_int(107).raw());
    // and the next write goes through at once: a commit ends any hold
    let b = e
        .deposit(u.id, Dec::from_int(1), AccountType::Demo)
        .await
        .unwrap();
    assert_eq!(b.wallet, Dec::from_int(108));
    assert_eq!(integrity(&db), "ok");
    assert_ledger_invariants(&db);
    e.shutdown();
}

/// The demo's feed rides out refused writes: while another connection holds the write lock,
/// its ticks are refused (and soon held off) but the feed keeps running, and once the lock
/// goes its ticks land again. It used to end at its first refused tick.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_feed_goes_on_after_its_ticks_were_refused() {
    use litetrade::demo::{DemoStatus, run};
    use litetrade::feed::FeedTick;
    use std::sync::Arc;
    use std::sync::atomic::Ordering::Relaxed;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("demo-held.db");
    let e = Engine::open(&quick_lock_cfg(&db)).unwrap();
    let other = hold_write_lock(&db);

    let status = Arc::new(DemoStatus::default());
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let path = ["100", "101", "102"].map(|p| FeedTick { price: d(p), ts: 0 });
    let feed = tokio::spawn(run(
        e.clone(),
        Vec::new(),
        vec![("BTCUSDT".into(), path.to_vec())],
        Duration::from_millis(10),
        status.clone(),
        stop_rx,
    ));
    /// Waits (polling) for `done`, failing after 20 s.
    async fn until(what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !done() {
            assert!(Instant::now() < deadline, "{what}: not within 20 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let stats = e.sequencer_stats();
    until("ticks held off", || stats.held.load(Relaxed) > 0).await;
    assert!(!feed.is_finished(), "the feed ended: {:?}", feed.await);
    assert_eq!(
        status.ticks.load(Relaxed),
        0,
        "a tick landed under the lock"
    );

    other.execute_batch("ROLLBACK").unwrap();
    drop(other);
    until("ticks after the lock went", || {
        status.ticks.load(Relaxed) > 0
    })
    .await;
    stop.send(true).unwrap();
    feed.await.unwrap().unwrap();
    assert!(e.last_price("BTCUSDT").unwrap().is_some());
    e.shutdown();
}

/// The child side of the next test: holds `BEGIN IMMEDIATE` on the file until stdin closes or
/// says `rollback`.
fn lock_child(db: &str) {
    let c = Connection::open(db).unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    c.execute_batch("BEGIN IMMEDIATE").unwrap();
    println!("LOCKED");
    std::io::stdout().flush().unwrap();
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    c.execute_batch("ROLLBACK").unwrap();
    println!("RELEASED");
}

fn spawn_locker(db: &Path) -> (Child, BufReader<std::process::ChildStdout>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_write_lock_held_by_another_process_gives_a_bounded_clear_error",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("LT_FAULTS_LOCK_CHILD", db)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let locked = loop {
        line.clear();
        if out.read_line(&mut line).unwrap() == 0 {
            break false;
        }
        if line.trim_end().ends_with("LOCKED") {
            break true;
        }
    };
    if !locked {
        let st = child.wait();
        panic!("the locking child exited early: {st:?}");
    }
    (child, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_lock_held_by_another_process_gives_a_bounded_clear_error() {
    if let Ok(db) = std::env::var("LT_FAULTS_LOCK_CHILD") {
        lock_child(&db);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("locked.db");
    let e = Engine::open(&lock_cfg(&db)).unwrap();
    let (u, _) = e.create_user("alice", None).await.unwrap();
    e.deposit(u.id, Dec::from_int(100), AccountType::Demo)
        .await
        .unwrap();
    e.ingest_ticks(tick("30000")).await.unwrap();
    let o = e
        .place_order(u.id, NewOrder::market("BTCUSDT", Side::Buy, d("0.001")))
        .await
        .unwrap();
    let before = snapshot(&e, u.id);

    // another process holds the lock, then releases it
    let (mut child, out) = spawn_locker(&db);
    let (r, took) = bounded(
        Duration::from_secs(10),
        "order under a held lock",
        e.place_order(u.id, NewOrder::market("BTCUSDT", Side::Buy, d("0.002"))),
    )
    .await;
    assert_unavailable(
        &r.expect_err("an order committed under another process's lock"),
        "order",
    );
    eprintln!("order under another process's lock failed after {took:?}");
    let (r, _) = bounded(
        Duration::from_secs(10),
        "close under a held lock",
        e.close_position(u.id, o.position_id.unwrap()),
    )
    .await;
    assert_unavailable(
        &r.expect_err("a close committed under a held lock"),
        "close",
    );
    assert_eq!(
        snapshot(&e, u.id),
        before,
        "a failed write changed what reads see"
    );
    writeln!(child.stdin.as_mut().unwrap(), "rollback").unwrap();
    // read to the end: the child (a test harness) still reports its result on this pipe
    let rest: Vec<String> = out.lines().map(|l| l.unwrap()).collect();
    let released = rest.iter().any(|l| l.contains("RELEASED"));
    assert!(released, "the locking child did not roll back");
    assert!(child.wait().unwrap().success());
    let (r, _) = bounded(
        Duration::from_secs(10),
        "close after release",
        e.close_position(u.id, o.position_id.unwrap()),
    )
    .await;
    r.expect("close after the lock was released");

    // another process dies (SIGKILL) while holding the lock: the OS drops its locks, writes resume
    let (mut child, _out) = spawn_locker(&db);
    let (r, _) = bounded(
        Duration::from_secs(10),
        "deposit under a held lock",
        e.deposit(u.id, Dec::from_int(5), AccountType::Demo),
    )
    .await;
    assert_unavailable(&r.expect_err("committed under a held lock"), "deposit");
    child.kill().unwrap();
    child.wait().unwrap();
    let (r, _) = bounded(
        Duration::from_secs(10),
        "deposit after the locker died",
        e.deposit(u.id, Dec::from_int(7), AccountType::Demo),
    )
    .await;
    r.expect("deposit after the locking process died");
    assert_eq!(
        deposited(&db, u.id),
        Dec::from_int(107).raw(),
        "a failed deposit was applied"
    );
    assert!(e.positions(u.id, None).unwrap().is_empty());
    assert_eq!(e.trades(u.id, 1, 10).unwrap().total, 1);
    assert_eq!(integrity(&db), "ok");
    assert_ledger_invariants(&db);
    e.shutdown();
}

// =============================================================================================
// start-up errors

fn is_root_like(dir: &Path) -> bool {
    let probe = dir.join(".probe");
    let writable = std::fs::write(&probe, b"x").is_ok();
    let _ = std::fs::remove_file(&probe);
    writable
}

fn random_bytes(n: usize, mut seed: u64) -> Vec<u8> {
    (0..n)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 24) as u8
        })
        .collect()
}

/// `Engine::open` refuses without panicking, naming the path; `serve` exits non-zero with one
/// clear line on stderr.
#[track_caller]
fn assert_refused(db: &Path, mention: &str) {
    let res = std::panic::catch_unwind(|| Engine::open(&cfg(db, StoreConfig::default())));
    let res = res.unwrap_or_else(|_| panic!("Engine::open panicked on {}", db.display()));
    let err = match res {
        Ok(e) => {
            e.shutdown();
            panic!("Engine::open accepted {}", db.display());
        }
        Err(e) => e,
    };
    let msg = err.to_string();
    assert!(
        msg.contains(mention),
        "the error does not name {mention}: {msg}"
    );
    eprintln!("Engine::open({}) -> {msg}", db.display());

    let addr = format!("127.0.0.1:{}", free_port());
    let mut child = litetrade()
        .arg("serve")
        .arg("--db")
        .arg(db)
        .arg("--listen")
        .arg(&addr)
        .env("LITETRADE_ADMIN_TOKEN", ADMIN)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err_pipe = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err_pipe.read_to_string(&mut s);
        s
    });
    let st = wait_for(&mut child, Duration::from_secs(30)).unwrap_or_else(|| {
        let _ = child.kill();
        let _ = child.wait();
        panic!("serve --db {} kept running", db.display());
    });
    let stderr = reader.join().unwrap();
    assert!(!st.success(), "serve --db {} exited 0", db.display());
    assert_eq!(
        st.code(),
        Some(1),
        "serve --db {}: {st} (a signal?) {stderr}",
        db.display()
    );
    let low = stderr.to_lowercase();
    assert!(
        !low.contains("panicked") && !low.contains("backtrace"),
        "serve panicked: {stderr}"
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "serve --db {}: not one line: {stderr:?}",
        db.display()
    );
    assert!(
        stderr.contains(mention),
        "serve's error does not name {mention}: {stderr}"
    );
    eprintln!("serve --db {} -> {}", db.display(), lines[0]);
}

#[test]
fn start_up_errors_are_clear_and_never_panic() {
    let dir = tempfile::tempdir().unwrap();

    // a missing directory
    let missing = dir.path().join("no-such-dir").join("t.db");
    assert_refused(
        &missing,
        &dir.path().join("no-such-dir").display().to_string(),
    );
    assert!(
        !dir.path().join("no-such-dir").exists(),
        "the missing directory was created"
    );

    // a read-only directory (root ignores the mode bits, so there the case is skipped)
    let rodir = dir.path().join("ro");
    std::fs::create_dir(&rodir).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&rodir, std::fs::Permissions::from_mode(0o555)).unwrap();
        if is_root_like(&rodir) {
            eprintln!("SKIP read-only directory: running as root (mode 0555 does not stop root)");
        } else {
            assert_refused(&rodir.join("t.db"), &rodir.display().to_string());
        }
        std::fs::set_permissions(&rodir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    // a directory nobody can create files in, root included (sysfs), when there is one
    let sys = Path::new("/sys");
    if sys.is_dir() && !is_root_like(sys) {
        assert_refused(&sys.join("litetrade-faults-test.db"), "/sys");
    } else {
        eprintln!("SKIP unwritable /sys: not present or writable here");
    }

    // a file that is not a database: random bytes, and text; neither is changed by the attempt
    for (name, bytes) in [
        ("random.db", random_bytes(64 * 1024, 0x9e37_79b9_7f4a_7c15)),
        (
            "text.db",
            b"this is not a database, just some text\n".repeat(200),
        ),
    ] {
        let p = dir.path().join(name);
        std::fs::write(&p, &bytes).unwrap();
        assert_refused(&p, &p.display().to_string());
        assert_eq!(
            std::fs::read(&p).unwrap(),
            bytes,
            "{name} was modified by the failed open"
        );
    }

    // the database path is a directory
    let isdir = dir.path().join("dir.db");
    std::fs::create_dir(&isdir).unwrap();
    assert_refused(&isdir, &isdir.display().to_string());
}

// =============================================================================================
// the crash loop script, short

/// `scripts/crash-test.sh 3` against this build's binary (about 10-15 s): kill -9 of the
/// server under mixed HTTP load, restart, every acknowledged write checked. Skipped without
/// bash or python3.
#[test]
fn crash_script_three_rounds() {
    let has = |cmd: &str| {
        Command::new(cmd)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !has("python3") || !has("bash") {
        eprintln!("SKIP crash_script_three_rounds: python3 or bash is missing");
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/crash-test.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg("3")
        .env("LITETRADE_BIN", BIN)
        .env("CRASH_SEED", "4242")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    assert!(
        out.status.success(),
        "crash-test.sh 3 failed ({}):\n{text}",
        out.status
    );
    assert_eq!(
        text.matches("; ok;").count(),
        3,
        "not three good rounds:\n{text}"
    );
}

// =============================================================================================

/// Not a test of litetrade: makes sure the model above is not vacuous (a broken `Model`
/// would make every "nothing half-applied" check pass).
#[test]
fn the_db_model_detects_a_difference() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("m.db");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let e = Engine::open(&cfg(&db, StoreConfig::default())).unwrap();
        let (u, _) = e.create_user("m", None).await.unwrap();
        let mut m = Model::default();
        write_op(&e, u.id, 0, 0, &mut m).await.unwrap();
        assert_db_matches(&db, u.id, &m, "model");
        m.deposited += 1;
        assert_eq!(
            db_mismatches(&db, u.id, &m).len(),
            1,
            "the model check missed a difference"
        );
        m.deposited -= 1;
        m.orders.insert(424242);
        assert_eq!(
            db_mismatches(&db, u.id, &m).len(),
            1,
            "the model check missed a difference"
        );
        e.shutdown();
    });
}

/// A database file the process may not write is refused at start with one clear line, rather
/// than served with every write failing. As root (which may write any file) the server runs
/// as `nobody` through `setpriv`; the test skips where neither works.
#[test]
fn a_read_only_database_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ro.db");
    drop(Engine::open(&cfg(&db, StoreConfig::default())).unwrap());
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    let mut cmd = if root {
        if Command::new("setpriv").arg("--version").output().is_err() {
            eprintln!("skipped: running as root without setpriv");
            return;
        }
        // nobody owns the directory and its files, so only the file's mode stands in the way
        let chown = Command::new("chown")
            .args(["-R", "65534:65534"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(chown.success());
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(litetrade().get_program());
        c
    } else {
        litetrade()
    };
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("LITETRADE_") {
            cmd.env_remove(k);
        }
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o444)).unwrap();
    let before = std::fs::read(&db).unwrap();
    let mut child = cmd
        .arg("serve")
        .arg("--db")
        .arg(&db)
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .env("LITETRADE_ADMIN_TOKEN", "read-only-test-admin-token")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (status, err) = common::finish(&mut child, Duration::from_secs(30));
    assert_eq!(status.and_then(|s| s.code()), Some(1), "stderr: {err}");
    assert!(err.contains("read-only"), "stderr: {err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert_eq!(std::fs::read(&db).unwrap(), before, "the file is unchanged");
}
