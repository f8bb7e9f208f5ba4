//! kill -9 under concurrent load, then reopen: no acknowledged write is lost, none is
//! half-applied, the ledger invariants hold, the file is intact and the books are rebuilt.
//!
//! The test re-runs its own binary as a child (env `LT_CRASH_CHILD`) that drives the library
//! with concurrent writers and prints one `ACK …` line per acknowledged write; the parent kills
//! it with SIGKILL after a random number of acknowledgements and checks the database.

use litetrade::domain::model::{AccountType, Side};
use litetrade::domain::money::Dec;
use litetrade::{Config, Engine, NewOrder, Tick};
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

const USERS: i64 = 4;

fn cfg(db: &std::path::Path) -> Config {
    Config {
        db: db.to_path_buf(),
        ..Config::default()
    }
}

fn child(db: String) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let e = Engine::open(&cfg(std::path::Path::new(&db))).unwrap();
        if e.user(1).is_err() {
            for i in 0..USERS {
                e.create_user(&format!("u{i}"), None).await.unwrap();
            }
        }
        e.ingest_ticks(vec![Tick {
            symbol: "BTCUSDT".into(),
            price: Dec::from_int(100),
            ts: None,
        }])
        .await
        .unwrap();
        println!("READY");
        let tasks: Vec<_> = (1..=USERS)
            .map(|uid| {
                let e = e.clone();
                tokio::spawn(async move {
                    let mut n: i64 = 0;
                    loop {
                        n += 1;
                        let out = match n % 5 {
                            0 | 1 => e
                                .deposit(uid, Dec::from_int(10), AccountType::Demo)
                                .await
                                .map(|_| "deposit 10".to_string()),
                            2 => e
                                .place_order(
                                    uid,
                                    NewOrder::market(
                                        "BTCUSDT",
                                        Side::Buy,
                                        Dec::parse("0.01").unwrap(),
                                    ),
                                )
                                .await
                                .map(|o| format!("order {} {}", o.id, o.position_id.unwrap_or(0))),
                            3 => e
                                .place_order(
                                    uid,
                                    NewOrder::limit(
                                        "BTCUSDT",
                                        Side::Buy,
                                        Dec::parse("0.01").unwrap(),
                                        Dec::from_int(90),
                                    ),
                                )
                                .await
                                .map(|o| format!("order {} 0", o.id)),
                            _ => {
                                let px = Dec::from_int(95 + (n % 10));
                                e.ingest_ticks(vec![Tick {
                                    symbol: "BTCUSDT".into(),
                                    price: px,
                                    ts: None,
                                }])
                                .await
                                .map(|_| "tick".to_string())
                            }
                        };
                        if let Ok(what) = out {
                            let mut so = std::io::stdout().lock();
                            let _ = writeln!(so, "ACK {uid} {what}");
                            let _ = so.flush();
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            let _ = t.await;
        }
    });
}

#[test]
fn kill_9_under_load_loses_no_acknowledged_write() {
    if let Ok(db) = std::env::var("LT_CRASH_CHILD") {
        child(db);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.db");
    let mut acked_deposits: HashMap<i64, i64> = HashMap::new();
    let mut acked_orders: Vec<(i64, i64, i64)> = Vec::new();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for round in 0..3 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let kill_after = 200 + (seed % 1500) as usize;
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "kill_9_under_load_loses_no_acknowledged_write",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("LT_CRASH_CHILD", &db)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let mut acks = 0;
        for line in out.lines() {
            let Ok(line) = line else { break };
            let parts: Vec<&str> = line.split_whitespace().collect();
            if parts.first() != Some(&"ACK") {
                continue;
            }
            let uid: i64 = parts[1].parse().unwrap();
            match parts[2] {
                "deposit" => {
                    *acked_deposits.entry(uid).or_default() += parts[3].parse::<i64>().unwrap()
                }
                "order" => {
                    acked_orders.push((uid, parts[3].parse().unwrap(), parts[4].parse().unwrap()))
                }
                _ => {}
            }
            acks += 1;
            if acks == kill_after {
                // SIGKILL; keep reading: lines written before the kill are acknowledged writes
                child.kill().unwrap();
            }
        }
        let _ = child.wait();
        assert!(
            acks >= kill_after,
            "round {round}: the child died early after {acks} acks"
        );

        // reopen: everything acknowledged is there, the ledgers add up, the file is intact
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let e = Engine::open(&cfg(&db)).unwrap();
            let conn = rusqlite::Connection::open(&db).unwrap();
            let ok: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
            assert_eq!(ok, "ok");
            for (&uid, &sum) in &acked_deposits {
                let deposited: i64 = conn
                    .query_row("SELECT deposited FROM balances WHERE user_id = ?1 AND account_type = 'demo'", [uid], |r| r.get(0))
                    .unwrap();
                // acknowledged deposits are all there; per round at most one more (in flight at the kill)
                assert!(deposited >= sum * 100_000_000, "user {uid}: deposited {deposited} < acknowledged {sum}");
                let in_flight = 10 * (round as i64 + 1);
                assert!(deposited <= (sum + in_flight) * 100_000_000, "user {uid}: more deposits than were sent");
            }
            for &(uid, oid, pid) in &acked_orders {
                let o = e.order(uid, oid).unwrap_or_else(|err| panic!("acknowledged order {oid} lost: {err}"));
                if pid != 0 {
                    assert_eq!(o.position_id, Some(pid));
                }
            }
            // ledger invariants, straight from SQL
            for uid in 1..=USERS {
                let q = |sql: &str| -> i64 { conn.query_row(sql, [uid], |r| r.get(0)).unwrap() };
                let wallet = q("SELECT COALESCE((SELECT wallet FROM balances WHERE user_id = ?1 AND account_type = 'demo'), 0)");
                let deposited = q("SELECT COALESCE((SELECT deposited FROM balances WHERE user_id = ?1 AND account_type = 'demo'), 0)");
                let margin = q("SELECT COALESCE((SELECT margin_used FROM balances WHERE user_id = ?1 AND account_type = 'demo'), 0)");
                let reserved = q("SELECT COALESCE((SELECT order_reserved FROM balances WHERE user_id = ?1 AND account_type = 'demo'), 0)");
                let pnl = q("SELECT COALESCE(SUM(pnl), 0) FROM trade_logs WHERE user_id = ?1");
                let open_fees = q("SELECT COALESCE(SUM(open_fee), 0) FROM active_positions WHERE user_id = ?1");
                let margins = q("SELECT COALESCE(SUM(margin), 0) FROM active_positions WHERE user_id = ?1");
                let reserves = q("SELECT COALESCE(SUM(reserve), 0) FROM orders WHERE user_id = ?1 AND status = 'pending'");
                assert_eq!(wallet, deposited + pnl - open_fees, "user {uid}: wallet identity");
                assert_eq!(margin, margins, "user {uid}: margin_used");
                assert_eq!(reserved, reserves, "user {uid}: order_reserved");
                assert!(wallet - margin - reserved >= 0, "user {uid}: available < 0");
            }
            // the book was rebuilt: a crossing tick fills every resting order
            let pending: i64 = conn.query_row("SELECT COUNT(*) FROM orders WHERE status = 'pending'", [], |r| r.get(0)).unwrap();
            let out = e.ingest_ticks(vec![Tick { symbol: "BTCUSDT".into(), price: Dec::from_int(89), ts: None }]).await.unwrap();
            assert_eq!(out.fills as i64, pending, "round {round}: resting orders not rebuilt");
            // a rising tick closes nothing by mistake and the engine stays consistent
            e.ingest_ticks(vec![Tick { symbol: "BTCUSDT".into(), price: Dec::from_int(100), ts: None }]).await.unwrap();
            let ids: HashSet<i64> = acked_orders.iter().map(|o| o.1).collect();
            assert_eq!(ids.len(), acked_orders.len(), "order ids are unique");
            e.shutdown();
        });
    }
}
