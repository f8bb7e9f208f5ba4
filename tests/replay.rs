//! `replay`: a recorded file becomes ticks that fill resting orders and trigger stops, through
//! the library driver and through the binary; the real data in ../shared/data is optional.

use litetrade::domain::model::{AccountType, CloseReason, Side};
use litetrade::domain::money::Dec;
use litetrade::replay::{Pace, replay};
use litetrade::{Config, Engine, NewOrder};
use std::process::Command;

fn d(s: &str) -> Dec {
    Dec::parse(s).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn candles_fill_a_resting_order_and_hit_its_stop() {
    let dir = tempfile::tempdir().unwrap();
    // two 1-minute candles: 100 → 95 → 101 → 98, then 98 → 99 → 93 → 94
    let file = dir.path().join("c.json");
    std::fs::write(
        &file,
        "[[1700000000000,100,101,95,98,1],[1700000060000,98,99,93,94,1]]",
    )
    .unwrap();
    let ticks = litetrade::feed::read_feed(&file).unwrap();
    let prices: Vec<String> = ticks.iter().map(|t| t.price.to_string()).collect();
    // open, the nearer extreme, the other extreme, close
    assert_eq!(prices, ["100", "101", "95", "98", "98", "99", "93", "94"]);

    let e = Engine::open(&Config {
        db: dir.path().join("r.db"),
        ..Config::default()
    })
    .unwrap();
    let (u, _) = e.create_user("r", None).await.unwrap();
    e.deposit(u.id, Dec::from_int(10_000), AccountType::Demo)
        .await
        .unwrap();
    e.ingest_ticks(vec![litetrade::Tick {
        symbol: "BTCUSDT".into(),
        price: d("100"),
        ts: None,
    }])
    .await
    .unwrap();
    let mut o = NewOrder::limit("BTCUSDT", Side::Buy, d("1"), d("96"));
    o.sl = Some(d("94"));
    let order = e.place_order(u.id, o).await.unwrap();

    let summary = replay(&e, "BTCUSDT", &ticks, Pace::Max { batch: 3 }, &|_, _| {})
        .await
        .unwrap();
    assert_eq!(summary.outcome.accepted, 8);
    assert_eq!(summary.outcome.fills, 1, "the 95 tick fills the 96 buy");
    assert_eq!(
        summary.outcome.stop_losses, 1,
        "the 93 tick hits the 94 stop"
    );
    let filled = e.order(u.id, order.id).unwrap();
    assert_eq!(filled.fill_price, Some(d("96")));
    let t = e.trades(u.id, 1, 10).unwrap();
    assert_eq!(t.trades.len(), 1);
    assert_eq!(
        (t.trades[0].reason, t.trades[0].exit_price),
        (CloseReason::StopLoss, d("93"))
    );
    assert_eq!(e.ticker("BTCUSDT").unwrap().last, Some(d("94")));
    e.shutdown();
}

#[test]
fn the_binary_replays_real_data_when_present() {
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/btcusdt-5m-2023.json");
    if !data.exists() {
        eprintln!("SKIP: {} is absent", data.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("real.db");
    let replay = || {
        Command::new(env!("CARGO_BIN_EXE_litetrade"))
            .args(["replay", "--db"])
            .arg(&db)
            .arg("--file")
            .arg(&data)
            .args(["--symbol", "BTCUSDT", "--max"])
            .env("LITETRADE_LOG", "warn")
            .output()
            .unwrap()
    };
    // a mistyped --db is refused in one line, and no file is left behind
    let out = replay();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("does not exist"), "{stderr}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    let seeded = Command::new(env!("CARGO_BIN_EXE_litetrade"))
        .args(["seed", "--db"])
        .arg(&db)
        .args([
            "--users",
            "1",
            "--open-positions",
            "0",
            "--pending-orders",
            "0",
        ])
        .output()
        .unwrap();
    assert!(seeded.status.success(), "{seeded:?}");
    let out = replay();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("replayed 43996 ticks onto BTCUSDT"),
        "{stdout}"
    );
    // stderr is not a terminal here: progress comes as a plain line per tenth, and the 0.01
    // tick keeps this BTC data's price path, so there is no warning
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("replay: "))
        .collect();
    assert_eq!(lines.len(), 10, "{stderr}");
    assert_eq!(lines[9], "replay: 43996 of 43996 ticks");
    assert!(!stderr.contains("WARN"), "{stderr}");
    // the last close of the file is the symbol's last price
    let conn = rusqlite::Connection::open(&db).unwrap();
    let last: i64 = conn
        .query_row(
            "SELECT last_price FROM symbols WHERE symbol = 'BTCUSDT'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(last > 0);
}
