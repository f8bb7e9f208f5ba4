//! The store on real SQLite files in temporary directories: pragmas, migrations, `optimize`
//! (index migration, idempotence, page-size conversion, damaged files, concurrent writers), the
//! EXPLAIN QUERY PLAN test, the group-committing writer, and `seed`'s ledger invariants.

use litetrade::domain::model::{
    AccountType, CloseReason, Ledger, Order, OrderStatus, OrderType, Position, PositionSide, Side,
    Trade,
};
use litetrade::domain::money::Dec;
use litetrade::domain::symbol::{DEFAULT_SYMBOLS, SymbolSpec};
use litetrade::store::ops::Op;
use litetrade::store::optimize::{OptimizeOptions, OptimizeReport, optimize};
use litetrade::store::seed::{SeedOptions, SeedReport, seed};
use litetrade::store::tables::symbols;
use litetrade::store::tables::trades::Opening;
use litetrade::store::writer::Job;
use litetrade::store::{Store, StoreConfig, StoreError, SyncMode, hot, schema};
use litetrade::{Config, Engine, NewOrder, Tick};
use rusqlite::{Connection, OpenFlags, params};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

fn no_progress(_: &str, _: u64, _: u64) {}

/// Fast measurement settings: the tests check shapes and plans, not latencies.
fn quick() -> OptimizeOptions {
    OptimizeOptions {
        runs: 5,
        query_budget_ms: 5,
        ..OptimizeOptions::default()
    }
}

fn db_in(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

fn plain(path: &Path) -> Connection {
    let c = Connection::open(path).expect("open");
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    c
}

fn read_only(path: &Path) -> Connection {
    let c = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open read-only");
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    c
}

fn pragma_text(c: &Connection, p: &str) -> String {
    c.query_row(&format!("PRAGMA {p}"), [], |r| {
        r.get::<_, rusqlite::types::Value>(0)
    })
    .map(|v| match v {
        rusqlite::types::Value::Integer(i) => i.to_string(),
        rusqlite::types::Value::Text(t) => t.to_ascii_lowercase(),
        other => format!("{other:?}"),
    })
    .unwrap()
}

fn count(c: &Connection, sql: &str) -> i64 {
    c.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// A file as an earlier deployment made it: the tables, no index, user_version 0.
fn legacy_file(path: &Path, page_size: u32, wal: bool) {
    let c = plain(path);
    c.execute_batch(&format!("PRAGMA page_size={page_size};"))
        .unwrap();
    if wal {
        c.query_row("PRAGMA journal_mode=WAL", [], |r| r.get::<_, String>(0))
            .unwrap();
    }
    // the tables as an older deployment had them (an `orders` table, no order links)
    c.execute_batch(schema::tables_sql()).unwrap();
    c.execute_batch(BEFORE_VERSION_4).unwrap();
    c.execute_batch(
        "INSERT INTO users (id, name, token_hash, created_at) VALUES (1, 'old', x'00', 1), (2, 'older', x'01', 2);
         INSERT INTO payments (user_id, kind, amount, account_type, created_at) VALUES (1, 'deposit', 100, 'demo', 3);",
    )
    .unwrap();
    assert_eq!(pragma_text(&c, "user_version"), "0");
    assert_eq!(
        schema::missing_indexes(&c).unwrap().len(),
        schema::index_statements().len()
    );
}

/// 200 users with 5 trades each, 50 open positions and 50 pending orders.
fn small_opts() -> SeedOptions {
    SeedOptions {
        users: 200,
        trades_per_user: 5,
        open_positions: 50,
        pending_orders: 50,
        batch_rows: 500,
        ..SeedOptions::default()
    }
}

fn small_seed(path: &Path) -> SeedReport {
    seed(path, &small_opts(), &no_progress).expect("seed")
}

// ---------------------------------------------------------------------------------------------
// pragmas and migrations

/// The writer's connection (the one whose commits are acknowledged) keeps the configured
/// durability: NORMAL by default, FULL when asked. kill -9 cannot tell these apart from OFF.
#[test]
fn the_write_connection_has_the_configured_synchronous_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_in(&dir, "sync.db");
    for (mode, want) in [(SyncMode::Normal, 1), (SyncMode::Full, 2)] {
        let cfg = StoreConfig {
            synchronous: mode,
            ..StoreConfig::default()
        };
        let c = litetrade::store::open_write_connection(&path, &cfg).unwrap();
        let got: i64 = c.query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap();
        assert_eq!(got, want, "{mode:?}");
    }
}

#[test]
fn fresh_file_has_the_designed_pragmas() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_in(&dir, "fresh.db");
    let store = Store::open(&path, StoreConfig::default()).expect("open");
    // file-level settings, seen by any new connection
    let c = plain(&path);
    assert_eq!(pragma_text(&c, "journal_mode"), "wal");
    assert_eq!(pragma_text(&c, "page_size"), "8192");
    assert_eq!(
        pragma_text(&c, "user_version"),
        schema::SCHEMA_VERSION.to_string()
    );
    assert!(schema::missing_indexes(&c).unwrap().is_empty());
    drop(c);
    // connection-level settings of the pool's read connections
    let (fk, query_only, sync, busy, cache, temp, mmap) = store
        .read("pragmas", |c| {
            let g = |p: &str| c.query_row(&format!("PRAGMA {p}"), [], |r| r.get::<_, i64>(0));
            Ok((
                g("foreign_keys")?,
                g("query_only")?,
                g("synchronous")?,
                g("busy_timeout")?,
                g("cache_size")?,
                g("temp_store")?,
                g("mmap_size")?,
            ))
        })
        .unwrap();
    assert_eq!(fk, 1, "foreign_keys on");
    assert_eq!(query_only, 1, "read connections are query_only");
    assert_eq!(sync, 1, "synchronous=NORMAL");
    assert_eq!(busy, 10_000);
    assert_eq!(cache, -131_072, "128 MiB page cache");
    assert_eq!(temp, 2, "temp_store=MEMORY");
    assert_eq!(mmap, 536_870_912);
    assert!(
        store
            .read("write", |c| c.execute("DELETE FROM users", []))
            .is_err(),
        "read connections refuse writes"
    );
    // foreign keys are enforced on the writer's connection: a deposit for a missing user fails
    let (tx, rx) = mpsc::channel();
    store.writer().submit(Job {
        ops: vec![Op::InsertDeposit(
            424242,
            AccountType::Demo,
            Dec::from_int(1),
            1,
        )],
        epoch: 0,
        continues: false,
        done: Box::new(move |r| tx.send(r).unwrap()),
    });
    let res = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(
        res.is_err(),
        "a payment of a missing user must violate its foreign key"
    );
    store.shutdown();
}

#[test]
fn an_old_version_file_is_migrated_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_in(&dir, "old.db");
    legacy_file(&path, 4096, false);
    let store = Store::open(&path, StoreConfig::default()).expect("open migrates");
    store.shutdown();
    drop(store);
    let c = plain(&path);
    assert_eq!(
        pragma_text(&c, "user_version"),
        schema::SCHEMA_VERSION.to_string()
    );
    assert_eq!(pragma_text(&c, "journal_mode"), "wal");
    let missing = schema::missing_indexes(&c).unwrap();
    assert!(
        missing.is_empty(),
        "indexes still missing after migration: {missing:?}"
    );
    for s in DEFAULT_SYMBOLS {
        assert_eq!(
            count(
                &c,
                &format!("SELECT COUNT(*) FROM symbols WHERE symbol = '{s}'")
            ),
            1,
            "{s}"
        );
    }
    assert_eq!(
        count(&c, "SELECT COUNT(*) FROM users"),
        2,
        "existing rows survive"
    );
    assert_eq!(count(&c, "SELECT COUNT(*) FROM payments"), 1);
    // opening again is a no-op
    drop(c);
    Store::open(&path, StoreConfig::default())
        .expect("reopen")
        .shutdown();
}

/// Versions 1 to 3 had an `orders` table where version 4 has the `order_rows` table and the
/// `orders` view, and no order link on positions and trade logs. Turns a file made from
/// (a variant of) the current schema.sql into that layout.
const BEFORE_VERSION_4: &str = "DROP VIEW orders;
     ALTER TABLE order_rows RENAME TO orders;
     ALTER TABLE active_positions DROP COLUMN order_id;
     ALTER TABLE trade_logs DROP COLUMN order_id;
     ALTER TABLE trade_logs DROP COLUMN sl;
     ALTER TABLE trade_logs DROP COLUMN tp;";

/// Writes a file as schema `version` (1 to 3) made it (`schema_sql` in the layout before
/// version 4, with user 1 and its filled order 7), opens it (which migrates it), and returns a
/// plain connection to it with foreign keys on.
fn migrated(path: &Path, schema_sql: &str, version: i64) -> Connection {
    let c = plain(path);
    c.execute_batch(schema_sql).unwrap();
    c.execute_batch(BEFORE_VERSION_4).unwrap();
    c.execute_batch(&format!(
        "INSERT INTO users (id, name, token_hash, created_at) VALUES (1, 'u', x'00', 1);
         INSERT INTO orders (id, user_id, symbol, side, type, qty, leverage, account_type, status, created_at, updated_at)
         VALUES (7, 1, 'BTCUSDT', 'buy', 'market', 100, 1, 'demo', 'filled', 1, 1);
         PRAGMA user_version = {version};"
    ))
    .unwrap();
    drop(c);
    Store::open(path, StoreConfig::default())
        .expect("open migrates")
        .shutdown();
    let c = plain(path);
    c.execute_batch("PRAGMA foreign_keys = ON").unwrap();
    assert_eq!(
        pragma_text(&c, "user_version"),
        schema::SCHEMA_VERSION.to_string()
    );
    c
}

/// The file passes `PRAGMA integrity_check` and `PRAGMA foreign_key_check`.
fn assert_sound(c: &Connection) {
    assert_eq!(pragma_text(c, "integrity_check"), "ok");
    assert_eq!(count(c, "SELECT COUNT(*) FROM pragma_foreign_key_check"), 0);
}

/// The CREATE TABLE text the file stores for `table`.
fn table_sql(c: &Connection, table: &str) -> String {
    c.query_row(
        "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?1",
        [table],
        |r| r.get(0),
    )
    .unwrap()
}

/// Version 1 wrote the orders status CHECK as an `IN` list, which SQLite evaluates through an
/// ephemeral table on every row; version 2 edits it in place into comparisons. The rows stay,
/// the constraint still refuses a bad status, and an insert plans without an ephemeral table.
#[test]
fn a_version_1_file_gets_the_cheaper_status_check() {
    const V1: &str = "CHECK (status IN ('pending', 'filled', 'cancelled'))";
    const V2: &str = "CHECK (status = 'pending' OR status = 'filled' OR status = 'cancelled')";
    let dir = tempfile::tempdir().unwrap();
    let path = db_in(&dir, "v1.db");
    assert!(schema::SCHEMA_SQL.contains(V2));
    // version 1's foreign keys were all checked at once, too (version 3 defers some)
    let v1 = schema::SCHEMA_SQL
        .replace(V2, V1)
        .replace(" DEFERRABLE INITIALLY DEFERRED", "");
    let c = migrated(&path, &v1, 1);
    let sql = table_sql(&c, "order_rows");
    assert!(sql.contains(V2) && !sql.contains(V1), "{sql}");
    assert!(sql.contains("DEFERRABLE INITIALLY DEFERRED"), "{sql}");
    assert_eq!(count(&c, "SELECT COUNT(*) FROM orders WHERE id = 7"), 1);
    assert_eq!(pragma_text(&c, "integrity_check"), "ok");
    let insert = |status: &str| {
        c.execute(
            "INSERT INTO order_rows (user_id, symbol, side, type, qty, leverage, account_type, status, created_at, updated_at)
             VALUES (1, 'BTCUSDT', 'buy', 'market', 100, 1, 'demo', ?1, 1, 1)",
            [status],
        )
    };
    assert!(insert("done").is_err(), "a bad status is still refused");
    insert("pending").expect("a good status is accepted");
    let plan: Vec<String> = c
        .prepare("EXPLAIN INSERT INTO order_rows (user_id, symbol, side, type, qty, leverage, account_type, status, created_at, updated_at) VALUES (1, 'BTCUSDT', 'buy', 'market', 100, 1, 'demo', 'filled', 1, 1)")
        .unwrap()
        .query_map([], |r| r.get::<_, String>(1))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(!plan.iter().any(|op| op == "OpenEphemeral"), "{plan:?}");
}

/// Version 3 checks the foreign keys of the four tables the writer fills with multi-row
/// INSERTs at COMMIT, so SQLite keeps no statement journal for those statements. A version-2
/// file gets the new table texts in place: its rows stay, and each of those keys still
/// refuses an orphan row, now when the transaction commits.
#[test]
fn a_version_2_file_checks_its_trading_foreign_keys_at_commit() {
    const DEFERRED: &str = " DEFERRABLE INITIALLY DEFERRED";
    let dir = tempfile::tempdir().unwrap();
    let path = db_in(&dir, "v2.db");
    assert_eq!(schema::SCHEMA_SQL.matches(DEFERRED).count(), 4);
    let c = migrated(&path, &schema::SCHEMA_SQL.replace(DEFERRED, ""), 2);
    let orphans = [
        (
            "balances",
            "INSERT INTO balances (user_id, account_type, updated_at) VALUES (99, 'demo', 1)",
        ),
        (
            "order_rows",
            "INSERT INTO order_rows (user_id, symbol, side, type, qty, leverage, account_type, status, created_at, updated_at) \
             VALUES (99, 'BTCUSDT', 'buy', 'market', 100, 1, 'demo', 'filled', 1, 1)",
        ),
        (
            "active_positions",
            "INSERT INTO active_positions (user_id, symbol, side, qty, entry_price, leverage, margin, liquidation_price, open_fee, account_type, opened_at) \
             VALUES (99, 'BTCUSDT', 'long', 1, 1, 1, 1, 1, 0, 'demo', 1)",
        ),
        (
            "trade_logs",
            "INSERT INTO trade_logs (position_id, user_id, symbol, side, qty, entry_price, exit_price, open_fee, close_fee, pnl, reason, account_type, leverage, opened_at, closed_at) \
             VALUES (1, 99, 'BTCUSDT', 'long', 1, 1, 1, 0, 0, 0, 'manual', 'demo', 1, 1, 1)",
        ),
    ];
    for (table, insert) in orphans {
        let sql = table_sql(&c, table);
        assert!(sql.contains(DEFERRED), "{table}: {sql}");
        c.execute_batch("BEGIN").unwrap();
        c.execute(insert, [])
            .unwrap_or_else(|e| panic!("{table}: the statement itself passes: {e}"));
        let err = c.execute_batch("COMMIT").expect_err(table);
        assert!(err.to_string().contains("FOREIGN KEY"), "{table}: {err}");
        c.execute_batch("ROLLBACK").unwrap();
        assert_eq!(
            count(
                &c,
                &format!("SELECT COUNT(*) FROM {table} WHERE user_id = 99")
            ),
            0,
            "{table}"
        );
    }
    assert_eq!(count(&c, "SELECT COUNT(*) FROM orders WHERE id = 7"), 1);
    assert_sound(&c);
    // the other tables' keys are still checked at once
    let err = c
        .execute(
            "INSERT INTO payments (user_id, kind, created_at) VALUES (99, 'deposit', 1)",
            [],
        )
        .expect_err("an orphan payment");
    assert!(err.to_string().contains("FOREIGN KEY"), "{err}");
}

/// `v3.db` in `dir` as a version-3 engine left it (user 1, market order 7 that opened
/// position 9, as ids were counted apart, limit order 8 cancelled, and position 12 closed),
/// and an engine config for it.
fn version_3_file(dir: &tempfile::TempDir) -> (PathBuf, Config) {
    let path = db_in(dir, "v3.db");
    let c = plain(&path);
    c.execute_batch(schema::SCHEMA_SQL).unwrap();
    c.execute_batch(BEFORE_VERSION_4).unwrap();
    for s in DEFAULT_SYMBOLS {
        symbols::save(&c, &SymbolSpec::default_for(s)).unwrap();
    }
    c.execute_batch(
        "INSERT INTO users (id, name, token_hash, created_at) VALUES (1, 'u', x'00', 1);
         INSERT INTO balances (user_id, account_type, wallet, margin_used, deposited, updated_at)
         VALUES (1, 'demo', 100000000000, 1000000000, 100000000000, 1);
         INSERT INTO orders (id, user_id, symbol, side, type, qty, leverage, account_type, status, fill_price, fee, position_id, created_at, filled_at, updated_at)
         VALUES (7, 1, 'BTCUSDT', 'buy', 'market', 100000000, 10, 'demo', 'filled', 10000000000, 5500000, 9, 1, 1, 1);
         INSERT INTO orders (id, user_id, symbol, side, type, qty, price, leverage, account_type, status, created_at, updated_at)
         VALUES (8, 1, 'BTCUSDT', 'buy', 'limit', 100000000, 9000000000, 10, 'demo', 'cancelled', 1, 1);
         INSERT INTO active_positions (id, user_id, symbol, side, qty, entry_price, leverage, margin, liquidation_price, open_fee, account_type, opened_at)
         VALUES (9, 1, 'BTCUSDT', 'long', 100000000, 10000000000, 10, 1000000000, 9050000000, 5500000, 'demo', 1);
         INSERT INTO trade_logs (id, position_id, user_id, symbol, side, qty, entry_price, exit_price, open_fee, close_fee, pnl, reason, account_type, leverage, opened_at, closed_at)
         VALUES (1, 12, 1, 'BTCUSDT', 'long', 100000000, 10000000000, 10000000000, 0, 0, 0, 'manual', 'demo', 10, 1, 2);
         PRAGMA user_version = 3;",
    )
    .unwrap();
    drop(c);
    let cfg = Config {
        db: path.clone(),
        ..Config::default()
    };
    (path, cfg)
}

/// Version 4 writes no row for a market order placed without a client id: the position it
/// opens takes its id and is its record (then its trade log), and the `orders` view shows it.
/// A version-3 file numbered orders and positions apart. Migrated, it keeps every order it
/// had, none of its old positions or trades passes for an order, new ids start above every
/// old order and position, and a new market order reads back as it was placed, open and
/// closed, from the file (after a reopen, so no cache answers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_3_file_keeps_its_orders_and_new_ids_start_above_all_old_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (path, cfg) = version_3_file(&dir);
    let e = Engine::open(&cfg).expect("open migrates");
    let old = e.order(1, 7).unwrap();
    assert_eq!(
        (old.order_type, old.status, old.position_id),
        (OrderType::Market, OrderStatus::Filled, Some(9))
    );
    assert_eq!(e.order(1, 8).unwrap().status, OrderStatus::Cancelled);
    for not_an_order in [9, 12] {
        assert_eq!(e.order(1, not_an_order).unwrap_err().code(), "not_found");
    }
    let tick = Tick {
        symbol: "BTCUSDT".into(),
        price: Dec::from_int(100),
        ts: None,
    };
    e.ingest_ticks(vec![tick]).await.unwrap();
    let mut mkt = NewOrder::market("BTCUSDT", Side::Buy, Dec::from_int(1));
    mkt.sl = Some(Dec::from_int(95));
    mkt.tp = Some(Dec::from_int(120));
    let placed = e.place_order(1, mkt).await.unwrap();
    assert_eq!((placed.id, placed.position_id), (13, Some(13)));
    let reopen = |e: Engine| {
        e.shutdown();
        drop(e);
        Engine::open(&cfg).expect("reopen")
    };
    let e = reopen(e);
    assert_eq!(
        e.order(1, 13).unwrap(),
        placed,
        "read back from its open position"
    );
    assert_eq!(e.cancel_order(1, 13).await.unwrap_err().code(), "conflict");
    e.close_position(1, 13).await.unwrap();
    let e = reopen(e);
    assert_eq!(
        e.order(1, 13).unwrap(),
        placed,
        "read back from its trade log"
    );
    assert_eq!(e.order(1, 7).unwrap(), old);
    e.shutdown();
    drop(e);

    let c = read_only(&path);
    assert_eq!(count(&c, "SELECT COUNT(*) FROM order_rows"), 2);
    assert_eq!(count(&c, "SELECT COUNT(*) FROM orders"), 3);
    assert_eq!(
        count(
            &c,
            "SELECT COUNT(*) FROM trade_logs WHERE order_id = 13 AND sl = 9500000000 AND tp = 12000000000"
        ),
        1
    );
    assert!(schema::missing_indexes(&c).unwrap().is_empty());
    assert_sound(&c);
}

/// `optimize` migrates a version-3 file as opening it would, before it measures (the hot
/// queries need the new columns). From the command line it first takes the engine lock, so
/// while another process (an older server) holds the file it refuses and changes nothing.
#[test]
fn optimize_migrates_a_version_3_file_but_not_under_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let (path, cfg) = version_3_file(&dir);
    let cli = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_litetrade"))
            .args(["optimize", "--db", path.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let table_names = || {
        let c = read_only(&path);
        let names = c
            .prepare("SELECT type || ' ' || name FROM sqlite_schema WHERE name IN ('orders', 'order_rows') ORDER BY 1")
            .unwrap()
            .query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        (pragma_text(&c, "user_version"), names)
    };
    let lock = litetrade::engine::lock_database(&cfg).expect("lock");
    let out = cli();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("schema version 3"), "{err}");
    assert_eq!(table_names(), ("3".into(), vec!["table orders".into()]));
    drop(lock);

    let out = cli();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        table_names(),
        (
            schema::SCHEMA_VERSION.to_string(),
            vec!["table order_rows".into(), "view orders".into()]
        )
    );
    let c = read_only(&path);
    assert_eq!(count(&c, "SELECT COUNT(*) FROM orders"), 2);
    assert!(schema::missing_indexes(&c).unwrap().is_empty());
    drop(c);
    let e = Engine::open(&cfg).expect("the engine opens the migrated file");
    assert_eq!(e.order(1, 7).unwrap().position_id, Some(9));
    e.shutdown();
}

#[test]
fn a_file_from_a_newer_litetrade_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_in(&dir, "newer.db");
    legacy_file(&path, 8192, true);
    plain(&path)
        .execute_batch(&format!(
            "PRAGMA user_version = {}",
            schema::SCHEMA_VERSION + 1
        ))
        .unwrap();
    assert!(Store::open(&path, StoreConfig::default()).is_err());
    assert!(matches!(
        optimize(&path, &quick(), &no_progress),
        Err(StoreError::Open { .. })
    ));
}

/// `optimize` does not make an empty file (0 bytes, or a bare SQLite header) into a database:
/// it refuses, naming why, and writes nothing.
#[test]
fn an_empty_file_is_refused_by_optimize_and_left_empty() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_in(&dir, "empty.db");
    std::fs::write(&path, b"").unwrap();
    let refused = |len: u64| {
        let err = optimize(&path, &quick(), &no_progress).expect_err("refused");
        assert!(matches!(err, StoreError::Open { .. }), "{err}");
        assert!(err.to_string().contains("nothing to optimize"), "{err}");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), len);
        assert_eq!(
            count(&plain(&path), "SELECT count(*) FROM sqlite_schema"),
            0
        );
    };
    refused(0);
    // a header SQLite wrote, with no table behind it
    plain(&path).execute_batch("VACUUM").unwrap();
    let len = std::fs::metadata(&path).unwrap().len();
    assert!(len > 0, "VACUUM wrote no header");
    refused(len);
}

/// Another program's SQLite file is left exactly as it was: not switched to WAL, not given
/// litetrade's tables.
#[test]
fn another_programs_database_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_in(&dir, "notes.db");
    // serve and optimize both refuse, naming why, and the file keeps its journal mode and its
    // `tables` schema entries
    let refused_untouched = |why: &str, tables: i64| {
        let err = Store::open(&path, StoreConfig::default())
            .err()
            .expect("refused");
        assert!(err.to_string().contains(why), "{err}");
        assert!(matches!(
            optimize(&path, &quick(), &no_progress),
            Err(StoreError::Open { .. })
        ));
        let c = plain(&path);
        assert_eq!(pragma_text(&c, "journal_mode"), "delete");
        assert_eq!(count(&c, "SELECT count(*) FROM sqlite_schema"), tables);
        c
    };
    let c = Connection::open(&path).unwrap();
    c.execute_batch("CREATE TABLE notes(body TEXT); INSERT INTO notes VALUES ('keep me');")
        .unwrap();
    drop(c);
    let c = refused_untouched("not a litetrade database", 1);
    // a program that versions its own schema too
    c.execute_batch("PRAGMA user_version = 1").unwrap();
    drop(c);
    let c = refused_untouched("not a litetrade database", 1);
    assert_eq!(count(&c, "PRAGMA user_version"), 1);
    // a program with a users table of its own
    c.execute_batch("PRAGMA user_version = 0; CREATE TABLE users(name TEXT);")
        .unwrap();
    drop(c);
    let c = refused_untouched(
        "its table users lacks the columns id, telegram_id, token_hash, created_at",
        2,
    );
    // one whose users table looks like litetrade's, but whose orders table (the name of
    // order_rows before version 4) does not
    c.execute_batch(
        "DROP TABLE users; CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT, \
         telegram_id INTEGER, token_hash BLOB, created_at INTEGER); CREATE TABLE orders(item TEXT);",
    )
    .unwrap();
    drop(c);
    refused_untouched("its table orders lacks the columns id, user_id", 3);
}

// ---------------------------------------------------------------------------------------------
// optimize

fn assert_healthy(rep: &OptimizeReport) {
    assert!(
        rep.is_ok(),
        "optimize found problems:\n{}",
        rep.render_table()
    );
    assert_eq!(rep.integrity, "ok");
    assert_eq!(rep.journal_mode, "wal");
    assert_eq!(rep.queries.len(), hot::hot_queries().len());
    for q in &rep.queries {
        assert!(
            q.uses_index,
            "{} scans a table after optimize: {}",
            q.name, q.plan
        );
        assert!(
            q.before_us > 0.0 && q.after_us > 0.0,
            "{} not timed",
            q.name
        );
    }
}

#[test]
fn optimize_migrates_a_legacy_file_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_in(&dir, "legacy.db");
    legacy_file(&path, 8192, false);
    let steps = std::sync::Mutex::new(Vec::<String>::new());
    let progress = |s: &str, done: u64, total: u64| {
        assert!(done <= total, "{s}: {done}/{total}");
        steps.lock().unwrap().push(s.to_string());
    };
    let rep = optimize(&path, &quick(), &progress).expect("optimize");
    assert_healthy(&rep);
    let total = schema::index_statements().len();
    assert_eq!(rep.indexes_total, total);
    assert_eq!(
        rep.indexes_created, total,
        "every index of the schema is created"
    );
    assert_eq!(rep.page_size, 8192);
    // the legacy file scanned tables before
    assert!(
        rep.queries.iter().any(|q| !q.uses_index_before),
        "{}",
        rep.render_table()
    );
    let steps = steps.into_inner().unwrap();
    for s in [
        "indexes",
        "analyze",
        "integrity check",
        "foreign key check",
        "checkpoint",
        "measure after",
    ] {
        assert!(
            steps.iter().any(|x| x == s),
            "no progress for {s}: {steps:?}"
        );
    }
    let c = plain(&path);
    assert!(schema::missing_indexes(&c).unwrap().is_empty());
    assert_eq!(count(&c, "SELECT COUNT(*) FROM users"), 2, "rows survive");
    let stat4 = count(
        &c,
        "SELECT COUNT(*) FROM sqlite_schema WHERE name = 'sqlite_stat4'",
    );
    if stat4 == 1 {
        assert_eq!(
            count(&c, "SELECT COUNT(*) FROM sqlite_stat4"),
            0,
            "stat4 samples are cleared by default"
        );
    }
    assert!(
        count(&c, "SELECT COUNT(*) FROM sqlite_stat1") > 0,
        "ANALYZE ran"
    );
    drop(c);

    // the JSON object has the contract's fields first, in order
    let json = serde_json::to_string(&rep).unwrap();
    let keys = [
        "\"integrity\":\"ok\"",
        "\"indexes_created\":",
        "\"indexes_total\":",
        "\"size_before\":",
        "\"size_after\":",
        "\"page_size\":8192",
        "\"journal_mode\":\"wal\"",
        "\"queries\":[{\"name\":",
        "\"plan\":",
        "\"uses_index\":true",
        "\"before_us\":",
        "\"after_us\":",
    ];
    let mut at = 0;
    for k in keys {
        let pos = json[at..]
            .find(k)
            .unwrap_or_else(|| panic!("{k} missing or out of order in {json}"));
        at += pos + k.len();
    }
    let text = rep.render_table();
    for q in &rep.queries {
        assert!(text.contains(&q.name), "table lacks {}", q.name);
    }
    assert!(text.contains("free pages") && text.contains("integrity"));

    // a second run creates nothing
    let again = optimize(&path, &quick(), &no_progress).expect("optimize again");
    assert_healthy(&again);
    assert_eq!(again.indexes_created, 0);
    assert_eq!(again.indexes_total, total);
    // the migrated file opens as usual (and gains its version and symbols)
    Store::open(&path, StoreConfig::default())
        .expect("open")
        .shutdown();
}

#[test]
fn optimize_vacuum_converts_the_page_size_and_returns_to_wal() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_in(&dir, "small_pages.db");
    legacy_file(&path, 4096, true);
    {
        let c = plain(&path);
        assert_eq!(pragma_text(&c, "page_size"), "4096");
        assert_eq!(pragma_text(&c, "journal_mode"), "wal");
        // some garbage to reclaim
        c.execute_batch(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)
             INSERT INTO signals (strategy, symbol, side, orders_placed, skipped, created_at)
             SELECT 'trend', 'BTCUSDT', 'buy', 0, 0, i FROM n;
             DELETE FROM signals WHERE id % 2 = 0;",
        )
        .unwrap();
    }
    let opts = OptimizeOptions {
        vacuum: true,
        ..quick()
    };
    let rep = optimize(&path, &opts, &no_progress).expect("optimize --vacuum");
    assert_healthy(&rep);
    assert!(rep.vacuumed);
    assert_eq!(rep.page_size_before, 4096);
    assert_eq!(rep.page_size, 8192, "{}", rep.render_table());
    assert_eq!(rep.free_pages_after, 0, "VACUUM leaves no free page");
    assert!(rep.warnings.is_empty(), "{:?}", rep.warnings);
    let c = plain(&path);
    assert_eq!(pragma_text(&c, "page_size"), "8192");
    assert_eq!(pragma_text(&c, "journal_mode"), "wal");
    assert_eq!(count(&c, "SELECT COUNT(*) FROM signals"), 1500);
    assert_eq!(count(&c, "SELECT COUNT(*) FROM users"), 2);
    assert_eq!(pragma_text(&c, "integrity_check"), "ok");
}

#[test]
fn optimize_on_a_missing_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_in(&dir, "nope.db");
    assert!(matches!(
        optimize(&path, &quick(), &no_progress),
        Err(StoreError::Open { .. })
    ));
    assert!(!path.exists(), "optimize must not create a file");
}

/// Either an error or a report that says "not ok"; never a panic, never a clean bill of health.
fn assert_detected(res: Result<OptimizeReport, StoreError>, what: &str) -> String {
    match res {
        Ok(rep) => {
            assert!(
                !rep.is_ok(),
                "{what} passed as healthy:\n{}",
                rep.render_table()
            );
            assert_ne!(rep.integrity, "ok");
            assert!(!rep.problems.is_empty());
            let json = serde_json::to_string(&rep).unwrap();
            assert!(json.contains("\"integrity\":"));
            rep.render_table()
        }
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_file_of_random_bytes_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_in(&dir, "random.db");
    let mut x: u64 = 0x1234_5678_9abc_def0;
    let bytes: Vec<u8> = (0..64 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(&path, &bytes).unwrap();
    let msg = assert_detected(optimize(&path, &quick(), &no_progress), "random bytes");
    assert!(msg.contains("not a database"), "unclear message: {msg}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "a damaged file is left as it was"
    );
    assert!(Store::open(&path, StoreConfig::default()).is_err());
}

#[test]
fn a_damaged_copy_of_a_seeded_file_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_in(&dir, "good.db");
    small_seed(&path);
    let healthy = optimize(&path, &quick(), &no_progress).expect("optimize");
    assert_healthy(&healthy);
    // copy the checkpointed file and overwrite bytes in the middle pages
    let bad = db_in(&dir, "bad.db");
    let mut bytes = std::fs::read(&path).unwrap();
    let page = 8192;
    let pages = bytes.len() / page;
    assert!(pages > 10, "seeded file too small: {pages} pages");
    for p in pages / 3..pages / 3 + 4 {
        for (i, b) in bytes[p * page + 8..p * page + 8 + 600]
            .iter_mut()
            .enumerate()
        {
            *b = (i as u8).wrapping_mul(37) ^ 0x5a;
        }
    }
    std::fs::write(&bad, &bytes).unwrap();
    let text = assert_detected(optimize(&bad, &quick(), &no_progress), "a damaged copy");
    assert!(
        text.contains("corrupt") || text.contains("malformed") || text.contains("integrity"),
        "unclear report: {text}"
    );
}

/// Runs `optimize` while the store's writer commits deposits one by one; returns the report, the
/// acknowledged amounts and how many were acknowledged while `optimize` ran.
fn optimize_under_load(path: &Path, opts: &OptimizeOptions) -> (OptimizeReport, Vec<i64>, usize) {
    let store = Store::open(path, StoreConfig::default()).expect("open");
    let stop = AtomicBool::new(false);
    let acks = AtomicUsize::new(0);
    let (rep, acked, during) = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let mut acked = Vec::new();
            let mut n = 0i64;
            while !stop.load(Ordering::Relaxed) || n < 50 {
                n += 1;
                let (tx, rx) = mpsc::channel();
                store.writer().submit(Job {
                    ops: vec![Op::InsertDeposit(1, AccountType::Real, Dec(n), n)],
                    epoch: 0,
                    continues: false,
                    done: Box::new(move |r| tx.send(r).unwrap()),
                });
                if rx
                    .recv_timeout(Duration::from_secs(60))
                    .expect("completion")
                    .is_ok()
                {
                    acked.push(n);
                    acks.fetch_add(1, Ordering::Relaxed);
                }
            }
            acked
        });
        // stop the writer even when an assertion below fails
        struct Stop<'a>(&'a AtomicBool);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let guard = Stop(&stop);
        // let the writer get going first
        while acks.load(Ordering::Relaxed) < 5 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let before = acks.load(Ordering::Relaxed);
        let rep = optimize(path, opts, &no_progress).expect("optimize under load");
        let during = acks.load(Ordering::Relaxed) - before;
        drop(guard);
        (rep, writer.join().unwrap(), during)
    });
    store.shutdown();
    drop(store);
    let c = read_only(path);
    let got: Vec<i64> = c
        .prepare("SELECT amount FROM payments WHERE account_type = 'real' ORDER BY amount")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for n in &acked {
        assert!(
            got.binary_search(n).is_ok(),
            "acknowledged deposit {n} lost"
        );
    }
    assert_eq!(
        got.len(),
        acked.len(),
        "only acknowledged deposits are there"
    );
    assert_eq!(pragma_text(&c, "integrity_check"), "ok");
    assert_eq!(pragma_text(&c, "journal_mode"), "wal");
    (rep, acked, during)
}

#[test]
fn optimize_is_safe_while_another_connection_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_in(&dir, "busy.db");
    small_seed(&path);
    let opts = OptimizeOptions {
        vacuum: true,
        ..quick()
    };
    let (rep, acked, during) = optimize_under_load(&path, &opts);
    assert!(rep.is_ok(), "{}", rep.render_table());
    assert!(rep.vacuumed);
    assert!(acked.len() >= 50);
    assert!(during > 0, "the writer made no progress while optimize ran");
}

#[test]
fn page_size_conversion_waits_for_exclusive_access() {
    // Leaving WAL needs the file to itself: with the server's connections open, optimize keeps
    // the page size, says so, vacuums in WAL and loses nothing.
    let dir = tempfile::tempdir().unwrap();
    let path = db_in(&dir, "busy4k.db");
    legacy_file(&path, 4096, true);
    let opts = OptimizeOptions {
        vacuum: true,
        ..quick()
    };
    let (rep, _, during) = optimize_under_load(&path, &opts);
    assert!(rep.is_ok(), "{}", rep.render_table());
    assert!(during > 0);
    assert!(rep.vacuumed);
    assert_eq!(
        rep.page_size, 4096,
        "the conversion cannot happen under the server's feet"
    );
    assert!(
        rep.warnings
            .iter()
            .any(|w| w.contains("page size stays 4096")),
        "{:?}",
        rep.warnings
    );
    // once alone, the conversion happens
    let rep = optimize(&path, &opts, &no_progress).expect("optimize alone");
    assert_eq!(rep.page_size, 8192, "{}", rep.render_table());
    assert_eq!(rep.journal_mode, "wal");
}

// ---------------------------------------------------------------------------------------------
// the EXPLAIN QUERY PLAN test

#[test]
fn every_hot_query_uses_an_index_on_an_analyzed_seeded_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_in(&dir, "plans.db");
    small_seed(&path);
    let rep = optimize(&path, &quick(), &no_progress).expect("optimize (ANALYZE)");
    assert!(rep.is_ok(), "{}", rep.render_table());
    let c = read_only(&path);
    assert!(
        count(&c, "SELECT COUNT(*) FROM sqlite_stat1") > 0,
        "the file is analyzed"
    );
    let mut bad = Vec::new();
    let mut all = String::new();
    for h in hot::hot_queries() {
        let plan = hot::plan(&c, &h).unwrap();
        all.push_str(&format!("{:<32} {plan}\n", h.name));
        if hot::plan_scans_table(&plan) {
            bad.push(h.name);
        }
    }
    assert!(bad.is_empty(), "full table scans in {bad:?}; plans:\n{all}");
    // and the same on a fresh, never analyzed file
    let fresh = db_in(&dir, "fresh.db");
    Store::open(&fresh, StoreConfig::default())
        .unwrap()
        .shutdown();
    let c = read_only(&fresh);
    for h in hot::hot_queries() {
        let plan = hot::plan(&c, &h).unwrap();
        assert!(
            !hot::plan_scans_table(&plan),
            "{} scans on a fresh file: {plan}",
            h.name
        );
    }
}

/// `(table, index name, key columns without ASC/DESC, WHERE clause)` of each schema index.
fn parse_indexes() -> Vec<(String, String, Vec<String>, Option<String>)> {
    schema::index_statements()
        .into_iter()
        .map(|(name, sql)| {
            let on = sql
                .split(" ON ")
                .nth(1)
                .unwrap_or_else(|| panic!("no ON in {sql}"));
            let table = on.split('(').next().unwrap().trim().to_string();
            let open = on.find('(').unwrap();
            let close = on.find(')').unwrap();
            let cols = on[open + 1..close]
                .split(',')
                .map(|c| c.split_whitespace().next().unwrap().to_ascii_lowercase())
                .collect();
            let filter = on[close + 1..]
                .split_once("WHERE")
                .map(|(_, w)| w.trim().trim_end_matches(';').trim().to_string());
            (table, name.to_string(), cols, filter)
        })
        .collect()
}

fn is_prefix(a: &[String], b: &[String]) -> bool {
    a.len() <= b.len() && b[..a.len()] == *a
}

#[test]
fn no_index_is_a_left_prefix_of_another() {
    // Partial indexes get no exemption: two indexes whose key columns start alike serve the
    // same lookups even with different WHERE clauses, so one of them would be redundant.
    let idx = parse_indexes();
    assert_eq!(idx.len(), schema::index_statements().len());
    for (t1, n1, c1, w1) in &idx {
        assert!(!c1.is_empty(), "{n1}: no columns parsed");
        for (t2, n2, c2, w2) in &idx {
            if n1 != n2 && t1 == t2 {
                assert!(
                    !is_prefix(c1, c2),
                    "{n1} {c1:?} (where {w1:?}) is a left prefix of {n2} {c2:?} (where {w2:?})"
                );
            }
        }
    }
    // The same on a migrated file, primary keys and UNIQUE constraints included.
    let dir = tempfile::tempdir().unwrap();
    let path = db_in(&dir, "prefix.db");
    Store::open(&path, StoreConfig::default())
        .unwrap()
        .shutdown();
    let c = read_only(&path);
    let tables: Vec<String> = c
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite%'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for t in tables {
        let names: Vec<String> = c
            .prepare("SELECT name FROM pragma_index_list(?1)")
            .unwrap()
            .query_map([&t], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let mut keys: HashMap<String, Vec<String>> = HashMap::new();
        for n in &names {
            let cols: Vec<String> = c
                .prepare("SELECT name FROM pragma_index_info(?1) ORDER BY seqno")
                .unwrap()
                .query_map([n], |r| {
                    r.get::<_, Option<String>>(0).map(|s| s.unwrap_or_default())
                })
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            keys.insert(n.clone(), cols);
        }
        for (a, ka) in &keys {
            for (b, kb) in &keys {
                if a != b {
                    assert!(
                        !is_prefix(ka, kb),
                        "on {t}: {a} {ka:?} is a left prefix of {b} {kb:?}"
                    );
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// the writer

#[test]
fn the_writer_acknowledges_concurrent_submitters_only_after_commit() {
    const THREADS: i64 = 8;
    const JOBS: i64 = 200;
    let dir = tempfile::tempdir().unwrap();
    let path = db_in(&dir, "writer.db");
    let store = Store::open(&path, StoreConfig::default()).expect("open");
    let (tx, rx) = mpsc::channel();
    store.writer().submit(Job {
        ops: (1..=THREADS)
            .map(|id| Op::InsertUser {
                id,
                name: format!("u{id}"),
                telegram_id: None,
                token_hash: vec![id as u8; 32],
                created_at: 1,
            })
            .collect(),
        epoch: 0,
        continues: false,
        done: Box::new(move |r| tx.send(r).unwrap()),
    });
    rx.recv_timeout(Duration::from_secs(10))
        .unwrap()
        .expect("users committed");

    std::thread::scope(|s| {
        for t in 1..=THREADS {
            let store = &store;
            let path = &path;
            s.spawn(move || {
                for i in 0..JOBS {
                    let amount = t * 1_000_000 + i + 1;
                    let (tx, rx) = mpsc::channel();
                    store.writer().submit(Job {
                        ops: vec![
                            Op::InsertDeposit(t, AccountType::Demo, Dec(amount), i),
                            Op::SetLastPrice("BTCUSDT".into(), Dec(amount), i),
                        ],
                        epoch: 0,
                        continues: false,
                        done: Box::new(move |r| tx.send(r).unwrap()),
                    });
                    rx.recv_timeout(Duration::from_secs(30)).expect("completion").expect("committed");
                    // acknowledged ⇒ committed: a brand-new connection sees the row
                    let c = read_only(path);
                    let n: i64 = c
                        .query_row(
                            "SELECT COUNT(*) FROM payments WHERE user_id = ?1 AND amount = ?2 AND kind = 'deposit'",
                            params![t, amount],
                            |r| r.get(0),
                        )
                        .unwrap();
                    assert_eq!(n, 1, "thread {t} job {i}: acknowledged but not visible");
                }
            });
        }
    });
    let snap = store.stats().snapshot();
    let total = (THREADS * JOBS + 1) as u64;
    assert_eq!(snap.writer_jobs, total);
    assert!(
        snap.writer_batches < total,
        "no group commit: {} batches for {total} jobs",
        snap.writer_batches
    );
    assert_eq!(snap.failures, 0);
    store.shutdown();
    drop(store);

    // everything is there after a reopen
    let store = Store::open(&path, StoreConfig::default()).expect("reopen");
    let (n, distinct) = store
        .read("count", |c| {
            c.query_row(
                "SELECT COUNT(*), COUNT(DISTINCT amount) FROM payments",
                [],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
            )
        })
        .unwrap();
    assert_eq!(n, THREADS * JOBS);
    assert_eq!(distinct, THREADS * JOBS);
    store.shutdown();
}

// ---------------------------------------------------------------------------------------------
// seed

/// Checks every ledger identity and the shape of every seeded row with SQL.
fn check_seeded(path: &Path) {
    let c = read_only(path);
    // one demo balance per user, and nothing else
    assert_eq!(
        count(&c, "SELECT COUNT(*) FROM users"),
        count(&c, "SELECT COUNT(*) FROM balances")
    );
    assert_eq!(
        count(
            &c,
            "SELECT COUNT(*) FROM balances WHERE account_type <> 'demo'"
        ),
        0
    );
    let mut st = c
        .prepare(
            "SELECT b.user_id, b.wallet, b.margin_used, b.order_reserved, b.deposited,
                (SELECT COALESCE(SUM(pnl), 0) FROM trade_logs t WHERE t.user_id = b.user_id AND t.account_type = 'demo'),
                (SELECT COALESCE(SUM(open_fee), 0) FROM active_positions p WHERE p.user_id = b.user_id AND p.account_type = 'demo'),
                (SELECT COALESCE(SUM(margin), 0) FROM active_positions p WHERE p.user_id = b.user_id AND p.account_type = 'demo'),
                (SELECT COALESCE(SUM(reserve), 0) FROM orders o WHERE o.user_id = b.user_id AND o.account_type = 'demo' AND o.status = 'pending'),
                (SELECT COALESCE(SUM(amount), 0) FROM payments y WHERE y.user_id = b.user_id AND y.kind = 'deposit' AND y.account_type = 'demo')
             FROM balances b",
        )
        .unwrap();
    let mut rows = st.query([]).unwrap();
    let mut n = 0;
    while let Some(r) = rows.next().unwrap() {
        n += 1;
        let g = |i: usize| r.get::<_, i64>(i).unwrap();
        let (user, wallet, margin, reserved, deposited) = (g(0), g(1), g(2), g(3), g(4));
        let (pnl, open_fees, margins, reserves, payments) = (g(5), g(6), g(7), g(8), g(9));
        assert_eq!(wallet, deposited + pnl - open_fees, "user {user}: wallet");
        assert_eq!(margin, margins, "user {user}: margin_used");
        assert_eq!(reserved, reserves, "user {user}: order_reserved");
        assert_eq!(deposited, payments, "user {user}: deposits");
        assert!(
            wallet - margin - reserved >= 0,
            "user {user}: negative available"
        );
    }
    assert!(n > 0);
    // every amount on its step, every trigger on the safe side of the last price
    let specs: HashMap<String, (i64, i64, i64, i64)> = c
        .prepare("SELECT symbol, tick_size, lot_size, min_qty, last_price FROM symbols")
        .unwrap()
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                (
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get::<_, Option<i64>>(4)?.unwrap_or(0),
                ),
            ))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for s in DEFAULT_SYMBOLS {
        assert!(specs[s].3 > 0, "{s}: no last price");
    }
    let on_step = |v: i64, step: i64| v > 0 && v % step == 0;
    let mut st = c
        .prepare("SELECT symbol, side, qty, entry_price, liquidation_price, sl, tp, margin, open_fee, leverage FROM active_positions")
        .unwrap();
    let mut rows = st.query([]).unwrap();
    while let Some(r) = rows.next().unwrap() {
        let sym: String = r.get(0).unwrap();
        let side = PositionSide::parse(&r.get::<_, String>(1).unwrap()).unwrap();
        let (qty, entry, liq): (i64, i64, i64) =
            (r.get(2).unwrap(), r.get(3).unwrap(), r.get(4).unwrap());
        let (sl, tp): (Option<i64>, Option<i64>) = (r.get(5).unwrap(), r.get(6).unwrap());
        let (tick, lot, min_qty, last) = specs[&sym];
        assert!(on_step(qty, lot) && qty >= min_qty, "position qty {qty}");
        assert!(on_step(entry, tick) && on_step(liq, tick));
        let lev: u32 = r.get(9).unwrap();
        let m = litetrade::domain::math::margin(Dec(entry), Dec(qty), lev).unwrap();
        assert_eq!(r.get::<_, i64>(7).unwrap(), m.raw(), "margin formula");
        match side {
            PositionSide::Long => {
                assert!(liq < last, "long liquidated at once");
                assert!(
                    sl.is_none_or(|s| s < last && s > liq),
                    "long sl {sl:?} last {last}"
                );
                assert!(tp.is_none_or(|t| t > last), "long tp");
            }
            PositionSide::Short => {
                assert!(liq > last, "short liquidated at once");
                assert!(
                    sl.is_none_or(|s| s > last && s < liq),
                    "short sl {sl:?} last {last}"
                );
                assert!(tp.is_none_or(|t| t < last), "short tp");
            }
        }
    }
    let mut st = c
        .prepare("SELECT symbol, side, type, qty, price, reserve, leverage FROM orders WHERE status = 'pending'")
        .unwrap();
    let mut rows = st.query([]).unwrap();
    while let Some(r) = rows.next().unwrap() {
        let sym: String = r.get(0).unwrap();
        let side: String = r.get(1).unwrap();
        assert_eq!(r.get::<_, String>(2).unwrap(), "limit");
        let (qty, price, reserve): (i64, i64, i64) =
            (r.get(3).unwrap(), r.get(4).unwrap(), r.get(5).unwrap());
        let (tick, lot, min_qty, last) = specs[&sym];
        assert!(on_step(qty, lot) && qty >= min_qty && on_step(price, tick));
        if side == "buy" {
            assert!(price < last, "a buy limit at {price} would fill at {last}");
        } else {
            assert!(price > last, "a sell limit at {price} would fill at {last}");
        }
        let lev: u32 = r.get(6).unwrap();
        let want = litetrade::domain::math::reserve(
            Dec(price),
            Dec(qty),
            lev,
            litetrade::domain::symbol::Bps(550),
        )
        .unwrap();
        assert_eq!(reserve, want.raw(), "reserve formula");
    }
    // every open position has the filled order that opened it
    assert_eq!(
        count(
            &c,
            "SELECT COUNT(*) FROM active_positions p JOIN orders o ON o.position_id = p.id AND o.status = 'filled'"
        ),
        count(&c, "SELECT COUNT(*) FROM active_positions")
    );
    // trades: pnl = gross − fees, exactly
    let mut st = c
        .prepare(
            "SELECT side, qty, entry_price, exit_price, open_fee, close_fee, pnl FROM trade_logs",
        )
        .unwrap();
    let mut rows = st.query([]).unwrap();
    while let Some(r) = rows.next().unwrap() {
        let side = PositionSide::parse(&r.get::<_, String>(0).unwrap()).unwrap();
        let g = |i: usize| r.get::<_, i64>(i).unwrap();
        let gross = litetrade::domain::math::gross_pnl(side, Dec(g(2)), Dec(g(3)), Dec(g(1)));
        assert_eq!(g(6), gross.raw() - g(4) - g(5), "trade pnl");
    }
    // position ids never collide between open positions and closed ones
    assert_eq!(
        count(
            &c,
            "SELECT COUNT(*) FROM active_positions WHERE id IN (SELECT position_id FROM trade_logs)"
        ),
        0
    );
    assert_eq!(
        count(&c, "SELECT COUNT(*) FROM pragma_foreign_key_check"),
        0
    );
}

#[test]
fn seeded_data_keeps_the_ledger_invariants() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_in(&dir, "seed.db");
    let steps = std::sync::Mutex::new(0u64);
    let opts = small_opts();
    let rep = seed(&path, &opts, &|_, _, _| *steps.lock().unwrap() += 1).expect("seed");
    assert_eq!(rep.users, 200);
    assert_eq!((rep.first_user_id, rep.last_user_id), (1, 200));
    assert_eq!(rep.trades, 1000);
    assert_eq!(rep.open_positions, 50);
    assert_eq!(rep.filled_orders, 50);
    assert_eq!(rep.pending_orders, 50);
    assert_eq!(rep.balances, 200);
    assert!(rep.payments >= 200);
    assert!(
        rep.trades_24h > 0,
        "the dashboard needs trades in the last 24 h"
    );
    assert!(
        rep.transactions > 1,
        "batched: {} transactions",
        rep.transactions
    );
    assert!(*steps.lock().unwrap() > 2);
    check_seeded(&path);
    {
        let c = read_only(&path);
        assert_eq!(
            count(&c, "SELECT MAX(id) FROM trade_logs"),
            1000,
            "ids are sequential"
        );
        // orders and positions share one sequence: the 1,000 closed positions, the 50 open
        // ones (each the record of its market order) and the 50 pending orders
        assert_eq!(
            count(
                &c,
                "SELECT MAX(m) FROM (SELECT MAX(id) AS m FROM order_rows \
                 UNION ALL SELECT MAX(id) FROM active_positions \
                 UNION ALL SELECT MAX(position_id) FROM trade_logs)"
            ),
            1100
        );
        assert_eq!(count(&c, "SELECT COUNT(*) FROM orders"), 100);
        assert_eq!(count(&c, "SELECT COUNT(*) FROM order_rows"), 50);
        assert_eq!(
            count(&c, "SELECT COUNT(DISTINCT token_hash) FROM users"),
            200
        );
        assert_eq!(
            count(
                &c,
                "SELECT COUNT(*) FROM users WHERE length(token_hash) = 32"
            ),
            200
        );
        let day_ago = litetrade::domain::model::now_ms() - 86_400_000;
        let recent: i64 = c
            .query_row(
                "SELECT COUNT(*) FROM trade_logs WHERE closed_at >= ?1",
                [day_ago],
                |r| r.get(0),
            )
            .unwrap();
        assert!(recent > 0);
        let month_ago = litetrade::domain::model::now_ms() - 31 * 86_400_000;
        let old: i64 = c
            .query_row(
                "SELECT COUNT(*) FROM trade_logs WHERE closed_at < ?1",
                [month_ago],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(old, 0, "closed_at within the last 30 days");
    }
    // seeding again appends after the existing ids and stays consistent
    let more = seed(
        &path,
        &SeedOptions {
            users: 20,
            ..opts.clone()
        },
        &no_progress,
    )
    .expect("seed again");
    assert_eq!((more.first_user_id, more.last_user_id), (201, 220));
    check_seeded(&path);
    // and the store opens it
    let store = Store::open(&path, StoreConfig::default()).expect("open seeded file");
    let users = store
        .read("n", |c| {
            c.query_row("SELECT COUNT(*) FROM users", [], |r| r.get::<_, i64>(0))
        })
        .unwrap();
    assert_eq!(users, 220);
    store.shutdown();
}

/// Prints `seed` and `optimize` reports on a larger file (`LITETRADE_SEED_USERS`, default 5000
/// users × 10 trades). Run with `cargo test --test store -- --ignored --nocapture`.
#[test]
#[ignore]
fn report_on_a_larger_seeded_file() {
    let users = std::env::var("LITETRADE_SEED_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let trades = std::env::var("LITETRADE_SEED_TRADES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let dir = tempfile::tempdir().unwrap();
    let path = db_in(&dir, "large.db");
    let opts = SeedOptions {
        users,
        trades_per_user: trades,
        open_positions: users / 2,
        pending_orders: users / 2,
        ..SeedOptions::default()
    };
    let rep = seed(&path, &opts, &no_progress).expect("seed");
    println!("{}", serde_json::to_string_pretty(&rep).unwrap());
    // Drop the indexes and the version to make it a legacy file, then optimize it.
    {
        let c = plain(&path);
        for (name, _) in schema::index_statements() {
            c.execute_batch(&format!("DROP INDEX {name}")).unwrap();
        }
        c.execute_batch("ANALYZE;").unwrap(); // leaves STAT4 samples, as an older optimize did
    }
    let rep = optimize(&path, &OptimizeOptions::default(), &no_progress).expect("optimize");
    println!("{}", rep.render_table());
    let rep = optimize(
        &path,
        &OptimizeOptions {
            vacuum: true,
            ..OptimizeOptions::default()
        },
        &no_progress,
    )
    .unwrap();
    println!("{}", rep.render_table());
    let bad = db_in(&dir, "bad.db");
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    for b in &mut bytes[n / 2..n / 2 + 20_000] {
        *b = 0x5a;
    }
    std::fs::write(&bad, &bytes).unwrap();
    match optimize(&bad, &OptimizeOptions::default(), &no_progress) {
        Ok(r) => println!(
            "{}\n{}",
            r.render_table(),
            serde_json::to_string(&r).unwrap()
        ),
        Err(e) => println!("error: {e}"),
    }
}

// ---------------------------------------------------------------------------------------------
// the writer's grouped, multi-row writes

fn order(id: i64, user: i64, status: OrderStatus) -> Order {
    Order {
        id,
        user_id: user,
        symbol: "BTCUSDT".into(),
        side: Side::Buy,
        order_type: OrderType::Limit,
        qty: Dec::from_int(1),
        price: Some(Dec::from_int(100)),
        leverage: 1,
        sl: None,
        tp: None,
        account_type: AccountType::Demo,
        status,
        reserve: Dec::from_int(100),
        fill_price: None,
        fee: None,
        position_id: None,
        client_order_id: None,
        created_at: id,
        filled_at: None,
    }
}

fn position(id: i64, user: i64) -> Position {
    Position {
        id,
        user_id: user,
        symbol: "BTCUSDT".into(),
        side: PositionSide::Long,
        qty: Dec::from_int(1),
        entry_price: Dec::from_int(100),
        leverage: 1,
        margin: Dec::from_int(100),
        sl: None,
        tp: None,
        liquidation_price: Dec::from_int(1),
        open_fee: Dec::ZERO,
        unrealized_pnl: Dec::ZERO,
        account_type: AccountType::Demo,
        opened_at: id,
        order_id: None,
    }
}

fn ledger(wallet: i64) -> Ledger {
    Ledger {
        wallet: Dec::from_int(wallet),
        deposited: Dec::from_int(wallet),
        ..Ledger::default()
    }
}

fn user(id: i64) -> Op {
    Op::InsertUser {
        id,
        name: format!("u{id}"),
        telegram_id: None,
        token_hash: vec![id as u8; 32],
        created_at: 1,
    }
}

/// Submits one job; its completion arrives on the returned channel.
fn submit(store: &Store, ops: Vec<Op>, continues: bool) -> mpsc::Receiver<Result<(), StoreError>> {
    let (tx, rx) = mpsc::channel();
    store.writer().submit(Job {
        ops,
        epoch: 0,
        continues,
        done: Box::new(move |r| tx.send(r).unwrap()),
    });
    rx
}

fn commit(store: &Store, ops: Vec<Op>) -> Result<(), StoreError> {
    submit(store, ops, false)
        .recv_timeout(Duration::from_secs(10))
        .unwrap()
}

fn users_in(path: &Path) -> i64 {
    count(&read_only(path), "SELECT COUNT(*) FROM users")
}

/// A unit sent in parts commits as a whole: a later part's rows land with the first part's, a
/// failing part takes the parts after it down too, and a writer that stops before the last
/// part arrives commits none of them.
#[test]
fn a_unit_sent_in_parts_commits_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_in(&dir, "parts.db");
    let store = Store::open(&path, StoreConfig::default()).expect("open");
    let wait = |rx: mpsc::Receiver<Result<(), StoreError>>| {
        rx.recv_timeout(Duration::from_secs(10)).unwrap()
    };

    // two parts: both complete only after the one COMMIT, and both are there
    let first = submit(&store, vec![user(1)], true);
    let last = submit(&store, vec![user(2)], false);
    wait(first).expect("first part");
    wait(last).expect("last part");
    assert_eq!(users_in(&path), 2);

    // a failing last part takes the first part down with it
    let first = submit(&store, vec![user(3)], true);
    let last = submit(
        &store,
        vec![Op::InsertPosition(Box::new(position(9, 99)))],
        false,
    );
    assert!(wait(first).is_err(), "the first part fails with its unit");
    assert!(wait(last).is_err(), "a position of a missing user fails");
    assert_eq!(users_in(&path), 2, "user 3 was rolled back");
    // that failure came at COMMIT (the position's key to users is checked there); the
    // writer's next batch, of the epoch after the failed one (as the engine sends once it has
    // reloaded), starts a transaction of its own
    let (tx, rx) = mpsc::channel();
    store.writer().submit(Job {
        ops: vec![user(4)],
        epoch: 1,
        continues: false,
        done: Box::new(move |r| tx.send(r).unwrap()),
    });
    wait(rx).expect("the next batch commits");
    assert_eq!(users_in(&path), 3);
    store.shutdown();
    drop(store);

    // a unit whose last part never comes: nothing is committed, the part fails
    let store = Store::open(&path, StoreConfig::default()).expect("reopen");
    let orphan = submit(&store, vec![user(5)], true);
    store.shutdown();
    assert!(
        wait(orphan).is_err(),
        "an incomplete unit fails at shutdown"
    );
    assert_eq!(users_in(&path), 3);
}

/// The writer groups a batch's trading ops by table into multi-row statements. Each row's own
/// changes must still apply in the order they were made (an order inserted then filled, a
/// position opened then closed, a ledger saved twice), rows made after a barrier op (a new user)
/// must see it, runs longer than one statement must all land, and a failing op must roll the
/// whole batch back.
#[test]
fn grouped_writes_keep_each_rows_changes_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_in(&dir, "grouped.db");
    let store = Store::open(&path, StoreConfig::default()).expect("open");
    let mut filled = order(1, 1, OrderStatus::Filled);
    filled.fill_price = Some(Dec::from_int(99));
    filled.position_id = Some(1);
    let trade = Trade {
        id: 1,
        position_id: 1,
        user_id: 1,
        symbol: "BTCUSDT".into(),
        side: PositionSide::Long,
        qty: Dec::from_int(1),
        entry_price: Dec::from_int(99),
        exit_price: Dec::from_int(90),
        open_fee: Dec::ZERO,
        close_fee: Dec::ZERO,
        pnl: Dec::from_int(-9),
        reason: CloseReason::StopLoss,
        account_type: AccountType::Demo,
        opened_at: 2,
        closed_at: 3,
    };
    let mut ops = vec![
        user(1),
        Op::InsertOrder(Box::new(order(1, 1, OrderStatus::Pending)), 1),
        Op::SaveBalance(1, AccountType::Demo, ledger(1_000), 1),
        Op::InsertPosition(Box::new(position(1, 1))),
        Op::UpdateOrder(Box::new(filled), 2),
        Op::SaveBalance(1, AccountType::Demo, ledger(991), 2),
        Op::DeletePosition(1),
        Op::InsertTrade(Box::new(trade), Opening::of(&position(1, 1))),
        user(2),
    ];
    // 45 rows per table for user 2: statements of 32, 8, 4 and 1 rows
    for i in 0..45 {
        ops.push(Op::InsertOrder(
            Box::new(order(100 + i, 2, OrderStatus::Pending)),
            1,
        ));
        ops.push(Op::InsertPosition(Box::new(position(100 + i, 2))));
        ops.push(Op::SaveBalance(2, AccountType::Demo, ledger(5_000 - i), 1));
    }
    commit(&store, ops).expect("the batch commits");

    // a failing row (user 99 does not exist) takes its whole batch with it
    let bad = commit(
        &store,
        vec![
            Op::InsertOrder(Box::new(order(500, 2, OrderStatus::Pending)), 1),
            Op::SaveBalance(2, AccountType::Demo, ledger(1), 1),
            Op::InsertPosition(Box::new(position(500, 99))),
        ],
    );
    assert!(bad.is_err(), "a position of a missing user must fail");
    store.shutdown();
    drop(store);

    let c = read_only(&path);
    let (status, fill, pid): (String, i64, i64) = c
        .query_row(
            "SELECT status, fill_price, position_id FROM orders WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(
        (status.as_str(), fill, pid),
        ("filled", Dec::from_int(99).raw(), 1)
    );
    let wallet = |u: i64| -> i64 {
        c.query_row("SELECT wallet FROM balances WHERE user_id = ?1", [u], |r| {
            r.get(0)
        })
        .unwrap()
    };
    assert_eq!(wallet(1), Dec::from_int(991).raw(), "the later save wins");
    assert_eq!(
        wallet(2),
        Dec::from_int(5_000 - 44).raw(),
        "the last save wins"
    );
    assert_eq!(
        count(&c, "SELECT COUNT(*) FROM active_positions WHERE id = 1"),
        0
    );
    assert_eq!(
        count(&c, "SELECT COUNT(*) FROM trade_logs WHERE position_id = 1"),
        1
    );
    assert_eq!(
        count(&c, "SELECT COUNT(*) FROM orders WHERE user_id = 2"),
        45
    );
    assert_eq!(
        count(
            &c,
            "SELECT COUNT(*) FROM active_positions WHERE user_id = 2"
        ),
        45
    );
    assert_eq!(
        count(&c, "SELECT COUNT(*) FROM orders WHERE id = 500"),
        0,
        "the failed batch left nothing"
    );
}

/// The per-query time limit guards request reads; loading the whole trading state at start
/// is not one, and takes as long as the venue is large. With a limit far below that load, the
/// engine still opens, and request reads are still limited.
#[test]
fn the_state_load_is_not_cut_short_by_the_query_time_limit() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_in(&dir, "big.db");
    seed(
        &path,
        &SeedOptions {
            users: 2_000,
            trades_per_user: 1,
            open_positions: 20_000,
            pending_orders: 20_000,
            batch_rows: 5_000,
            ..SeedOptions::default()
        },
        &no_progress,
    )
    .expect("seed");
    let mut cfg = Config {
        db: path,
        ..Default::default()
    };
    cfg.store.query_timeout_ms = 1;
    let e = litetrade::Engine::open(&cfg).expect("the load ran to its end");
    let positions: i64 = Connection::open_with_flags(&cfg.db, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap()
        .query_row("SELECT count(*) FROM active_positions", [], |r| r.get(0))
        .unwrap();
    assert_eq!(positions, 20_000);
    // a request read over the limit is still interrupted
    let slow = e.read("slow", |c| {
        c.query_row(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50000000) \
             SELECT count(*) FROM n",
            [],
            |r| r.get::<_, i64>(0),
        )
    });
    assert!(slow.is_err(), "{slow:?}");
}

/// The rows `sqlite_stat1` says `table` has (its first number), from the file.
fn stat1_rows(path: &Path, table: &str) -> i64 {
    let c = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let stat: String = c
        .query_row(
            "SELECT stat FROM sqlite_stat1 WHERE tbl = ?1 AND idx IS NOT NULL LIMIT 1",
            [table],
            |r| r.get(0),
        )
        .unwrap();
    stat.split(' ').next().unwrap().parse().unwrap()
}

/// Statistics taken by `optimize` while a table was nearly empty made SQLite scan it once it
/// had grown (a newcomer audit measured 3,000× slower lookups): opening the store re-analyzes
/// every table that grew tenfold since.
#[test]
fn opening_a_store_refreshes_statistics_taken_when_its_tables_were_small() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grow.db");
    let tiny = SeedOptions {
        users: 1,
        trades_per_user: 2,
        open_positions: 0,
        pending_orders: 0,
        ..SeedOptions::default()
    };
    seed(&path, &tiny, &no_progress).expect("seed");
    optimize(&path, &quick(), &no_progress).expect("optimize");
    assert!(stat1_rows(&path, "trade_logs") <= 2);
    let grown = SeedOptions {
        users: 500,
        trades_per_user: 20,
        ..tiny
    };
    seed(&path, &grown, &no_progress).expect("seed more");
    // the seeding alone leaves the statistics as they were
    assert!(stat1_rows(&path, "trade_logs") <= 2);
    Store::open(&path, StoreConfig::default())
        .expect("open")
        .shutdown();
    let rows = stat1_rows(&path, "trade_logs");
    assert!(rows >= 10_000, "trade_logs still analyzed at {rows} rows");
}
