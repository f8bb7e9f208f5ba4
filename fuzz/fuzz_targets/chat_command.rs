//! Chat commands against a real engine on a temp database: never panics, every reply page is
//! at most 4096 characters, and the ledger never goes negative.
#![no_main]
use libfuzzer_sys::fuzz_target;
use litetrade::domain::model::AccountType;
use litetrade::domain::money::Dec;
use litetrade::{Config, Engine, Tick};
use std::sync::OnceLock;

struct World {
    rt: tokio::runtime::Runtime,
    engine: Engine,
    user: i64,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("litetrade-fuzz-chat-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let engine = Engine::open(&Config { db: dir.join("f.db"), ..Config::default() }).unwrap();
        let user = rt.block_on(async {
            let (u, _) = engine.create_user("fuzz", None).await.unwrap();
            engine.deposit(u.id, Dec::from_int(1_000_000), AccountType::Demo).await.unwrap();
            engine.ingest_ticks(vec![Tick { symbol: "BTCUSDT".into(), price: Dec::from_int(30_000), ts: None }]).await.unwrap();
            u.id
        });
        World { rt, engine, user }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let w = world();
    let reply = w.rt.block_on(litetrade::chat::handle(&w.engine, w.user, text));
    assert!(!reply.pages.is_empty());
    for p in &reply.pages {
        assert!(p.chars().count() <= 4096, "page of {} chars", p.chars().count());
    }
    let b = w.engine.balance(w.user, AccountType::Demo).unwrap();
    assert!(b.available.raw() >= 0 && b.wallet.raw() >= 0, "{b:?}");
});
