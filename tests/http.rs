//! Black-box tests of the real `litetrade` binary over HTTP (API.md §2) and its command line
//! (API.md §4): every route on its success path, the error codes, auth isolation, bad input
//! that must change nothing, SSE, read-your-writes through the caches, graceful shutdown with a
//! checkpointed WAL, the database lock, the chat REPL and the CLI's user errors.
//!
//! Each test starts its own `litetrade serve` on a fresh database in a temporary directory and
//! a free port, and talks to it with the minimal blocking HTTP/1.1 client below (no
//! dependencies beyond `serde_json` and `tempfile`).

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

mod common;
use common::{Resp, Serve, free_port, request as http, wait_for};
use litetrade::api::ROUTES;
const ADMIN: &str = "test-admin-token-7f3a9c0e5b1d";
const SECRET: &str = "s3cr3t-API-secret-never-shown-0xC0FFEE";

const USER_KEYS: &[&str] = &["id", "name", "telegram_id", "created_at"];
const CONFIG_KEYS: &[&str] = &[
    "strategy",
    "leverage",
    "risk_pct",
    "sl_pct",
    "tp_pct",
    "account_type",
];
const BALANCE_KEYS: &[&str] = &[
    "account_type",
    "currency",
    "wallet",
    "margin_used",
    "order_reserved",
    "available",
    "unrealized_pnl",
    "equity",
];
const ORDER_KEYS: &[&str] = &[
    "id",
    "user_id",
    "symbol",
    "side",
    "type",
    "qty",
    "price",
    "leverage",
    "sl",
    "tp",
    "account_type",
    "status",
    "fill_price",
    "fee",
    "position_id",
    "client_order_id",
    "created_at",
    "filled_at",
];
const POSITION_KEYS: &[&str] = &[
    "id",
    "user_id",
    "symbol",
    "side",
    "qty",
    "entry_price",
    "leverage",
    "margin",
    "sl",
    "tp",
    "liquidation_price",
    "open_fee",
    "unrealized_pnl",
    "account_type",
    "opened_at",
];
const TRADE_KEYS: &[&str] = &[
    "id",
    "position_id",
    "user_id",
    "symbol",
    "side",
    "qty",
    "entry_price",
    "exit_price",
    "open_fee",
    "close_fee",
    "pnl",
    "reason",
    "account_type",
    "opened_at",
    "closed_at",
];
const SYMBOL_KEYS: &[&str] = &[
    "symbol",
    "tick_size",
    "lot_size",
    "min_qty",
    "max_leverage",
    "maker_fee_bps",
    "taker_fee_bps",
    "mmr_bps",
];
const CACHE_NAMES: &[(&str, u64)] = &[
    ("user_config", 30_000),
    ("balance", 15_000),
    ("position", 10_000),
    ("order", 5_000),
    ("market_data", 5_000),
    ("credentials", 60_000),
    ("price", 5_000),
    ("symbol_info", 3_600_000),
    ("api_response", 60_000),
];
const CACHE_FIELDS: &[&str] = &[
    "hits",
    "misses",
    "hit_rate",
    "size",
    "capacity",
    "ttl_ms",
    "invalidations",
    "expired",
];

// =============================================================================================
// the server under test

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The binary with a clean `LITETRADE_*` environment, the known admin token and quiet logs.
fn litetrade() -> Command {
    let mut c = common::litetrade();
    c.env("LITETRADE_ADMIN_TOKEN", ADMIN)
        .env("LITETRADE_LOG", "warn");
    c
}

/// Runs the CLI to completion (killed after `limit`): (status, stdout, stderr).
fn run_cli(
    args: &[&str],
    stdin: impl AsRef<[u8]>,
    limit: Duration,
) -> (ExitStatus, String, String) {
    let mut child = litetrade()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn litetrade");
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.as_ref().to_vec();
    let w = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let ro = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let re = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let status = match wait_for(&mut child, limit) {
        Some(s) => s,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("litetrade {args:?} still running after {limit:?}");
        }
    };
    let _ = w.join();
    (status, ro.join().unwrap(), re.join().unwrap())
}

/// A running `litetrade serve`; killed on drop.
struct Server {
    serve: Serve,
    addr: String,
    /// (request, status) of every request made through [`Server::call`].
    seen: Mutex<Vec<(String, u16)>>,
    /// Every response body, to check that secrets never leak.
    bodies: Mutex<String>,
}

impl Server {
    fn start(db: &Path) -> Server {
        Server::start_with(db, &[])
    }

    /// `serve` with the known admin token, quiet logs and `extra` arguments.
    fn start_with(db: &Path, extra: &[&str]) -> Server {
        Server::start_with_env(db, extra, &[])
    }

    /// [`Server::start_with`], with `env` variables set too.
    fn start_with_env(db: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let serve = Serve::start(db, |c| {
            c.args(extra)
                .env("LITETRADE_ADMIN_TOKEN", ADMIN)
                .env("LITETRADE_LOG", "warn")
                .envs(env.iter().copied());
        });
        Server {
            addr: serve.addr.clone(),
            serve,
            seen: Mutex::new(Vec::new()),
            bodies: Mutex::new(String::new()),
        }
    }

    fn stderr_text(&self) -> String {
        self.serve.log_text()
    }

    fn terminate(&mut self) -> ExitStatus {
        self.serve.terminate()
    }

    fn raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&[u8]>,
        extra: &[(&str, &str)],
    ) -> Resp {
        let r = http(&self.addr, method, path, token, body, extra)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}; server log: {}", self.stderr_text()));
        self.seen
            .lock()
            .unwrap()
            .push((format!("{method} {path}"), r.status));
        self.bodies.lock().unwrap().push_str(&r.text());
        r
    }

    fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<&Value>) -> Resp {
        let b = body.map(|v| serde_json::to_vec(v).unwrap());
        self.raw(method, path, token, b.as_deref(), &[])
    }

    fn get(&self, path: &str, token: Option<&str>) -> Resp {
        self.call("GET", path, token, None)
    }

    fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Resp {
        self.call("POST", path, token, Some(body))
    }

    fn put(&self, path: &str, token: Option<&str>, body: &Value) -> Resp {
        self.call("PUT", path, token, Some(body))
    }

    fn delete(&self, path: &str, token: Option<&str>) -> Resp {
        self.call("DELETE", path, token, None)
    }

    /// No 5xx answered, and the credentials secret never appeared in a response.
    #[track_caller]
    fn assert_clean(&self) {
        let bad: Vec<_> = self
            .seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, s)| *s >= 500)
            .cloned()
            .collect();
        assert!(bad.is_empty(), "5xx answers: {bad:?}");
        assert!(
            !self.bodies.lock().unwrap().contains(SECRET),
            "the api_secret appeared in a response"
        );
        let r = http(&self.addr, "GET", "/api/v1/health", None, None, &[]).expect("health");
        assert_eq!(r.status, 200, "server no longer healthy");
    }

    // ---- shortcuts

    fn create_user(&self, name: &str) -> (i64, String) {
        let u = ok(
            &self.post("/api/v1/users", Some(ADMIN), &json!({"name": name})),
            201,
        );
        (
            u["id"].as_i64().expect("id"),
            u["token"].as_str().expect("token").to_string(),
        )
    }

    fn deposit(&self, uid: i64, tok: &str, amount: &str) -> Value {
        ok(
            &self.post(
                &format!("/api/v1/users/{uid}/deposit"),
                Some(tok),
                &json!({"amount": amount}),
            ),
            200,
        )
    }

    fn tick(&self, symbol: &str, price: &str) {
        let r = ok(
            &self.post(
                "/api/v1/market/ticks",
                Some(ADMIN),
                &json!({"ticks": [{"symbol": symbol, "price": price}]}),
            ),
            200,
        );
        assert_eq!(r, json!({"accepted": 1}));
    }

    fn order(&self, uid: i64, tok: &str, body: &Value) -> Value {
        ok(
            &self.post(&format!("/api/v1/users/{uid}/orders"), Some(tok), body),
            201,
        )
    }

    fn balance(&self, uid: i64, tok: &str) -> Value {
        ok(
            &self.get(&format!("/api/v1/users/{uid}/balance"), Some(tok)),
            200,
        )
    }

    fn positions(&self, uid: i64, tok: &str) -> Vec<Value> {
        let v = ok(
            &self.get(&format!("/api/v1/users/{uid}/positions"), Some(tok)),
            200,
        );
        keys(&v, &["positions"]);
        v["positions"].as_array().unwrap().clone()
    }

    fn orders(&self, uid: i64, tok: &str) -> Vec<Value> {
        let v = ok(
            &self.get(&format!("/api/v1/users/{uid}/orders"), Some(tok)),
            200,
        );
        keys(&v, &["orders"]);
        v["orders"].as_array().unwrap().clone()
    }

    /// Everything a rejected request must leave unchanged for one user.
    fn snapshot(&self, uid: i64, tok: &str) -> Value {
        let g = |p: &str| {
            ok(
                &self.get(&format!("/api/v1/users/{uid}{p}"), Some(tok)),
                200,
            )
        };
        json!({
            "user": g(""),
            "config": g("/config"),
            "demo": g("/balance"),
            "real": g("/balance?account_type=real"),
            "orders": g("/orders"),
            "positions": g("/positions"),
            "trades": g("/trades"),
            "license": self.get(&format!("/api/v1/users/{uid}/license"), Some(tok)).text(),
            "symbols": ok(&self.get("/api/v1/symbols", Some(tok)), 200),
            "btc": ok(&self.get("/api/v1/market/BTCUSDT/ticker", Some(tok)), 200),
            "eth": ok(&self.get("/api/v1/market/ETHUSDT/ticker", Some(tok)), 200),
        })
    }
}

// =============================================================================================
// assertions

/// Asserts the status and returns the JSON body.
#[track_caller]
fn ok(r: &Resp, status: u16) -> Value {
    assert_eq!(r.status, status, "unexpected status; body: {}", r.text());
    let ct = r.header("content-type").unwrap_or("");
    assert!(
        ct.starts_with("application/json"),
        "content-type {ct:?} is not JSON"
    );
    r.json()
}

/// Asserts an error answer: the status, JSON `{"error":{"code","message"}}` and the code.
#[track_caller]
fn err(r: &Resp, status: u16, code: &str) {
    assert_eq!(r.status, status, "unexpected status; body: {}", r.text());
    err_shape(r, code);
}

#[track_caller]
fn err_shape(r: &Resp, code: &str) {
    let ct = r.header("content-type").unwrap_or("");
    assert!(
        ct.starts_with("application/json"),
        "error content-type {ct:?} is not JSON; body: {}",
        r.text()
    );
    let v = r.json();
    keys(&v, &["error"]);
    keys(&v["error"], &["code", "message"]);
    assert_eq!(v["error"]["code"], code, "wrong error code: {v}");
    let msg = v["error"]["message"].as_str().expect("message is a string");
    assert!(!msg.trim().is_empty(), "empty error message");
}

/// The object has exactly these keys, in this order (API.md §2 lists each object's keys in the
/// order the server writes them; the tests' serde_json keeps the order it reads).
#[track_caller]
fn keys(v: &Value, expected: &[&str]) {
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"));
    let got: Vec<&str> = obj.keys().map(String::as_str).collect();
    assert_eq!(got, expected, "keys of {v}");
}

/// The object has at least these keys.
#[track_caller]
fn has_keys(v: &Value, expected: &[&str]) {
    for k in expected {
        assert!(v.get(k).is_some(), "missing key {k:?} in {v}");
    }
}

/// A decimal as the contract writes it: a JSON string, plain notation; trailing zeros ignored.
fn norm(s: &str) -> String {
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    };
    if s == "-0" { "0".into() } else { s.into() }
}

#[track_caller]
fn dec(v: &Value, expected: &str) {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("decimal {v} is not a JSON string"));
    assert!(
        !s.contains(['e', 'E']) && !s.is_empty(),
        "decimal {s:?} not in plain notation"
    );
    assert_eq!(norm(s), norm(expected), "decimal value");
}

/// A decimal string as raw 10^-8 units (exact).
#[track_caller]
fn raw(v: &Value) -> i128 {
    let s = v.as_str().unwrap_or_else(|| panic!("{v} is not a string"));
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (i, f) = s.split_once('.').unwrap_or((s, ""));
    assert!(f.len() <= 8, "more than 8 fractional digits: {s}");
    let n: i128 = format!("{i}{f:0<8}").parse().expect("decimal digits");
    if neg { -n } else { n }
}

#[track_caller]
fn recent(v: &Value) {
    let t = v
        .as_i64()
        .unwrap_or_else(|| panic!("timestamp {v} not an integer"));
    assert!(
        (t - now_ms()).abs() < 3_600_000,
        "timestamp {t} is not ms since the epoch near now"
    );
}

// =============================================================================================
// every route on its success path

#[test]
fn every_route_answers_its_success_shape() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("t.db"));

    // GET /health
    let h = s.get("/api/v1/health", None);
    assert_eq!(ok(&h, 200), json!({"status": "ok"}));

    // POST /users
    let u = ok(
        &s.post(
            "/api/v1/users",
            Some(ADMIN),
            &json!({"name": "alice", "telegram_id": 123456789}),
        ),
        201,
    );
    keys(&u, &["id", "name", "telegram_id", "token", "created_at"]);
    assert_eq!(u["name"], "alice");
    assert_eq!(u["telegram_id"], 123456789);
    recent(&u["created_at"]);
    let uid = u["id"].as_i64().expect("integer id");
    assert!(uid > 0);
    let tok = u["token"].as_str().unwrap().to_string();
    assert!(tok.len() >= 16, "token too short: {tok}");
    let u2 = ok(
        &s.post("/api/v1/users", Some(ADMIN), &json!({"name": "bob"})),
        201,
    );
    assert_eq!(u2["telegram_id"], Value::Null);
    assert_ne!(u2["id"], u["id"]);
    assert_ne!(u2["token"], u["token"]);

    // GET /users/{id}: never the token
    let g = s.get(&format!("/api/v1/users/{uid}"), Some(&tok));
    let gv = ok(&g, 200);
    keys(&gv, USER_KEYS);
    assert_eq!(gv["id"], uid);
    assert_eq!(gv["name"], "alice");
    assert_eq!(gv["created_at"], u["created_at"]);
    assert!(
        !g.text().contains(&tok),
        "GET /users/{{id}} shows the token"
    );

    // GET, PUT /users/{id}/config
    let c = ok(
        &s.get(&format!("/api/v1/users/{uid}/config"), Some(&tok)),
        200,
    );
    keys(&c, CONFIG_KEYS);
    assert_eq!(c["account_type"], "demo");
    assert_eq!(c["strategy"], Value::Null);
    let c2 = ok(
        &s.put(
            &format!("/api/v1/users/{uid}/config"),
            Some(&tok),
            &json!({"strategy": "trend", "leverage": 5, "risk_pct": "10", "sl_pct": 2, "tp_pct": "4.5"}),
        ),
        200,
    );
    keys(&c2, CONFIG_KEYS);
    assert_eq!(c2["strategy"], "trend");
    assert_eq!(c2["leverage"], 5);
    dec(&c2["risk_pct"], "10");
    dec(&c2["sl_pct"], "2");
    dec(&c2["tp_pct"], "4.5");
    assert_eq!(c2["account_type"], "demo");
    // a partial update keeps the rest; null clears
    let c3 = ok(
        &s.put(
            &format!("/api/v1/users/{uid}/config"),
            Some(&tok),
            &json!({"sl_pct": null}),
        ),
        200,
    );
    assert_eq!(c3["sl_pct"], Value::Null);
    assert_eq!(c3["strategy"], "trend");
    assert_eq!(
        ok(
            &s.get(&format!("/api/v1/users/{uid}/config"), Some(&tok)),
            200
        ),
        c3
    );
    // account_type cannot be empty: null puts it back to its default
    let cfg_path = format!("/api/v1/users/{uid}/config");
    let real = ok(
        &s.put(&cfg_path, Some(&tok), &json!({"account_type": "real"})),
        200,
    );
    assert_eq!(real["account_type"], "real");
    let reset = ok(
        &s.put(&cfg_path, Some(&tok), &json!({"account_type": null})),
        200,
    );
    assert_eq!(reset["account_type"], "demo");
    assert_eq!(reset["strategy"], "trend", "the rest stays");

    // GET, PUT /users/{id}/bot: a new user's bot is off
    let bot = format!("/api/v1/users/{uid}/bot");
    assert_eq!(ok(&s.get(&bot, Some(&tok)), 200), json!({"enabled": false}));
    let b = ok(&s.put(&bot, Some(&tok), &json!({"enabled": true})), 200);
    assert_eq!(b, json!({"enabled": true}));
    assert_eq!(ok(&s.get(&bot, Some(&tok)), 200), json!({"enabled": true}));

    // POST /users/{id}/deposit → balance
    let d = s.deposit(uid, &tok, "10000");
    keys(&d, BALANCE_KEYS);
    assert_eq!(d["account_type"], "demo");
    assert_eq!(d["currency"], "USDT");
    dec(&d["wallet"], "10000");
    dec(&d["available"], "10000");
    dec(&d["margin_used"], "0");
    dec(&d["order_reserved"], "0");
    dec(&d["unrealized_pnl"], "0");
    dec(&d["equity"], "10000");
    // the admin deposits to a real account
    let real = ok(
        &s.post(
            &format!("/api/v1/users/{uid}/deposit"),
            Some(ADMIN),
            &json!({"amount": 250.5, "account_type": "real"}),
        ),
        200,
    );
    assert_eq!(real["account_type"], "real");
    dec(&real["wallet"], "250.5");

    // GET /users/{id}/balance
    let bal = s.balance(uid, &tok);
    assert_eq!(bal, d);
    let bal_real = ok(
        &s.get(
            &format!("/api/v1/users/{uid}/balance?account_type=real"),
            Some(&tok),
        ),
        200,
    );
    assert_eq!(bal_real, real);

    // POST /market/ticks, GET /market/{symbol}/ticker
    let t = ok(
        &s.post(
            "/api/v1/market/ticks",
            Some(ADMIN),
            &json!({"ticks": [
                {"symbol": "BTCUSDT", "price": "30000"},
                {"symbol": "ETHUSDT", "price": 2000, "ts": 1_700_000_000_000i64},
            ]}),
        ),
        200,
    );
    assert_eq!(t, json!({"accepted": 2}));
    let tk = ok(&s.get("/api/v1/market/BTCUSDT/ticker", Some(&tok)), 200);
    keys(&tk, &["symbol", "last", "ts"]);
    assert_eq!(tk["symbol"], "BTCUSDT");
    dec(&tk["last"], "30000");
    recent(&tk["ts"]);
    let te = ok(&s.get("/api/v1/market/ETHUSDT/ticker", Some(&tok)), 200);
    dec(&te["last"], "2000");
    assert_eq!(te["ts"], 1_700_000_000_000i64);
    let ts = ok(&s.get("/api/v1/market/SOLUSDT/ticker", Some(&tok)), 200);
    assert_eq!(ts, json!({"symbol": "SOLUSDT", "last": null, "ts": null}));

    // POST /users/{id}/orders: a market buy fills at the last price with the taker fee
    let o = s.order(
        uid,
        &tok,
        &json!({"symbol": "BTCUSDT", "side": "buy", "type": "market", "qty": "0.01", "leverage": 10}),
    );
    keys(&o, ORDER_KEYS);
    assert_eq!(o["user_id"], uid);
    assert_eq!(o["symbol"], "BTCUSDT");
    assert_eq!(o["side"], "buy");
    assert_eq!(o["type"], "market");
    assert_eq!(o["status"], "filled");
    assert_eq!(o["leverage"], 10);
    assert_eq!(o["account_type"], "demo");
    dec(&o["qty"], "0.01");
    dec(&o["fill_price"], "30000");
    dec(&o["fee"], "0.165"); // 300 × 5.5 bps
    for k in ["price", "sl", "tp", "client_order_id"] {
        assert_eq!(o[k], Value::Null, "{k}");
    }
    recent(&o["created_at"]);
    recent(&o["filled_at"]);
    let pid = o["position_id"].as_i64().expect("position id");

    let bal = s.balance(uid, &tok);
    dec(&bal["wallet"], "9999.835");
    dec(&bal["margin_used"], "30");
    dec(&bal["order_reserved"], "0");
    dec(&bal["available"], "9969.835");
    dec(&bal["unrealized_pnl"], "0");
    dec(&bal["equity"], "9999.835");

    // GET /users/{id}/positions
    let ps = s.positions(uid, &tok);
    assert_eq!(ps.len(), 1);
    let p = &ps[0];
    keys(p, POSITION_KEYS);
    assert_eq!(p["id"], pid);
    assert_eq!(p["user_id"], uid);
    assert_eq!(p["symbol"], "BTCUSDT");
    assert_eq!(p["side"], "long");
    assert_eq!(p["leverage"], 10);
    assert_eq!(p["account_type"], "demo");
    assert_eq!(p["sl"], Value::Null);
    assert_eq!(p["tp"], Value::Null);
    dec(&p["qty"], "0.01");
    dec(&p["entry_price"], "30000");
    dec(&p["margin"], "30");
    dec(&p["open_fee"], "0.165");
    dec(&p["liquidation_price"], "27150"); // 30000 × (1 − 1/10 + 0.005)
    dec(&p["unrealized_pnl"], "0");
    recent(&p["opened_at"]);

    // a resting limit order reserves limit×qty/lev + limit×qty×taker
    let lo_body = json!({"symbol": "BTCUSDT", "side": "buy", "type": "limit", "qty": 0.01,
        "price": "29000", "leverage": 10, "sl": "28000", "tp": 31000, "client_order_id": "cid-1"});
    let placed = s.post(&format!("/api/v1/users/{uid}/orders"), Some(&tok), &lo_body);
    assert_eq!(placed.header("idempotent-replayed"), None);
    let lo = ok(&placed, 201);
    keys(&lo, ORDER_KEYS);
    assert_eq!(lo["status"], "pending");
    assert_eq!(lo["type"], "limit");
    dec(&lo["price"], "29000");
    dec(&lo["sl"], "28000");
    dec(&lo["tp"], "31000");
    assert_eq!(lo["client_order_id"], "cid-1");
    for k in ["fill_price", "fee", "position_id", "filled_at"] {
        assert_eq!(lo[k], Value::Null, "{k}");
    }
    let oid = lo["id"].as_i64().unwrap();
    let bal = s.balance(uid, &tok);
    dec(&bal["order_reserved"], "29.1595");
    dec(&bal["available"], "9940.6755");
    // a repeated client_order_id returns the first order, marked as a replay
    let again = s.post(&format!("/api/v1/users/{uid}/orders"), Some(&tok), &lo_body);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(ok(&again, 201), lo);
    assert_eq!(s.balance(uid, &tok), bal);

    // GET /users/{id}/orders, GET /users/{id}/orders/{oid}
    let os = s.orders(uid, &tok);
    assert_eq!(os.len(), 1, "{os:?}");
    assert_eq!(os[0], lo);
    assert_eq!(
        ok(
            &s.get(&format!("/api/v1/users/{uid}/orders/{oid}"), Some(&tok)),
            200
        ),
        lo
    );
    // a filled order is readable too
    let filled = ok(
        &s.get(
            &format!("/api/v1/users/{uid}/orders/{}", o["id"]),
            Some(&tok),
        ),
        200,
    );
    assert_eq!(filled, o);

    // DELETE /users/{id}/orders/{oid}
    let cx = ok(
        &s.delete(&format!("/api/v1/users/{uid}/orders/{oid}"), Some(&tok)),
        200,
    );
    keys(&cx, ORDER_KEYS);
    assert_eq!(cx["id"], oid);
    assert_eq!(cx["status"], "cancelled");
    let bal = s.balance(uid, &tok);
    dec(&bal["order_reserved"], "0");
    dec(&bal["available"], "9969.835");
    assert!(s.orders(uid, &tok).is_empty());
    let cx2 = ok(
        &s.get(&format!("/api/v1/users/{uid}/orders/{oid}"), Some(&tok)),
        200,
    );
    assert_eq!(cx2["status"], "cancelled");

    // unrealized PnL at the last price
    s.tick("BTCUSDT", "31000");
    let bal = s.balance(uid, &tok);
    dec(&bal["unrealized_pnl"], "10");
    dec(&bal["equity"], "10009.835");
    dec(&s.positions(uid, &tok)[0]["unrealized_pnl"], "10");

    // POST /users/{id}/positions/{pid}/close → trade
    let tr = ok(
        &s.post(
            &format!("/api/v1/users/{uid}/positions/{pid}/close"),
            Some(&tok),
            &json!({}),
        ),
        200,
    );
    keys(&tr, TRADE_KEYS);
    assert_eq!(tr["position_id"], pid);
    assert_eq!(tr["user_id"], uid);
    assert_eq!(tr["symbol"], "BTCUSDT");
    assert_eq!(tr["side"], "long");
    assert_eq!(tr["reason"], "manual");
    assert_eq!(tr["account_type"], "demo");
    assert_eq!(tr["opened_at"], p["opened_at"]);
    dec(&tr["qty"], "0.01");
    dec(&tr["entry_price"], "30000");
    dec(&tr["exit_price"], "31000");
    dec(&tr["open_fee"], "0.165");
    dec(&tr["close_fee"], "0.1705");
    dec(&tr["pnl"], "9.6645"); // 10 − 0.165 − 0.1705
    recent(&tr["closed_at"]);
    let bal = s.balance(uid, &tok);
    dec(&bal["wallet"], "10009.6645");
    dec(&bal["margin_used"], "0");
    dec(&bal["available"], "10009.6645");
    assert!(s.positions(uid, &tok).is_empty());

    // two more trades (shorts) for the paging checks
    let mut trade_ids = vec![tr["id"].as_i64().unwrap()];
    for _ in 0..2 {
        let o = s.order(
            uid,
            &tok,
            &json!({"symbol": "BTCUSDT", "side": "sell", "type": "market", "qty": "0.001"}),
        );
        let p = o["position_id"].as_i64().unwrap();
        let t = ok(
            &s.post(
                &format!("/api/v1/users/{uid}/positions/{p}/close"),
                Some(&tok),
                &json!({}),
            ),
            200,
        );
        assert_eq!(t["side"], "short");
        trade_ids.push(t["id"].as_i64().unwrap());
    }

    // GET /users/{id}/trades?page=&limit=
    let trades = |q: &str| {
        let v = ok(
            &s.get(&format!("/api/v1/users/{uid}/trades{q}"), Some(&tok)),
            200,
        );
        keys(&v, &["trades", "page", "limit", "total", "pages"]);
        v
    };
    let all = trades("");
    assert_eq!(all["page"], 1);
    assert_eq!(all["limit"], 100);
    assert_eq!(all["total"], 3);
    assert_eq!(all["pages"], 1);
    let ids: Vec<i64> = all["trades"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            keys(t, TRADE_KEYS);
            t["id"].as_i64().unwrap()
        })
        .collect();
    let mut newest_first = trade_ids.clone();
    newest_first.reverse();
    assert_eq!(ids, newest_first, "trades are newest first");
    // one account only: all three are demo trades
    assert_eq!(trades("?account_type=demo")["trades"], all["trades"]);
    let real = trades("?account_type=real&limit=2");
    assert_eq!(
        (
            real["trades"].clone(),
            real["total"].clone(),
            real["pages"].clone()
        ),
        (json!([]), json!(0), json!(0))
    );
    let p1 = trades("?page=1&limit=2");
    assert_eq!(
        (
            p1["page"].clone(),
            p1["limit"].clone(),
            p1["total"].clone(),
            p1["pages"].clone()
        ),
        (json!(1), json!(2), json!(3), json!(2))
    );
    assert_eq!(p1["trades"].as_array().unwrap().len(), 2);
    let p2 = trades("?page=2&limit=2");
    assert_eq!(p2["page"], 2);
    assert_eq!(p2["trades"].as_array().unwrap().len(), 1);
    assert_eq!(p2["trades"][0]["id"], trade_ids[0]);
    let l0 = trades("?limit=0");
    assert_eq!(l0["limit"], 1, "limit=0 is clamped to 1");
    assert_eq!(l0["pages"], 3);
    assert_eq!(l0["trades"].as_array().unwrap().len(), 1);
    let l5000 = trades("?limit=5000");
    assert_eq!(l5000["limit"], 1000, "limit=5000 is clamped to 1000");
    // any whole number is clamped, however far out of range
    for (q, page, limit) in [
        ("?limit=-1", 1, 1),
        ("?limit=99999999999999999999999", 1, 1000),
        ("?page=-3&limit=2", 1, 2),
        ("?page=0&limit=2", 1, 2),
        ("?page=%2B2&limit=%2B2", 2, 2),
    ] {
        let v = trades(q);
        assert_eq!(
            (&v["page"], &v["limit"]),
            (&json!(page), &json!(limit)),
            "{q}: {v}"
        );
    }
    assert_eq!(l5000["pages"], 1);
    assert_eq!(l5000["trades"].as_array().unwrap().len(), 3);
    let beyond = trades("?page=7&limit=2");
    assert_eq!(beyond["page"], 7);
    assert_eq!(beyond["total"], 3);
    assert_eq!(beyond["trades"], json!([]));

    // PUT, GET /users/{id}/credentials/{exchange}: masked key, never the secret
    let cr = ok(
        &s.put(
            &format!("/api/v1/users/{uid}/credentials/binance"),
            Some(&tok),
            &json!({"api_key": "AKIA1234567890XYZW", "api_secret": SECRET}),
        ),
        200,
    );
    keys(&cr, &["exchange", "api_key_masked"]);
    assert_eq!(cr["exchange"], "binance");
    let masked = cr["api_key_masked"].as_str().unwrap();
    assert_ne!(masked, "AKIA1234567890XYZW");
    assert!(!masked.contains("1234567890"), "key not masked: {masked}");
    let cg = ok(
        &s.get(
            &format!("/api/v1/users/{uid}/credentials/binance"),
            Some(&tok),
        ),
        200,
    );
    assert_eq!(cg, cr);
    let ca = ok(
        &s.get(
            &format!("/api/v1/users/{uid}/credentials/binance"),
            Some(ADMIN),
        ),
        200,
    );
    assert_eq!(ca, cr);

    // GET /users/{id}/license: 404 before any
    err(
        &s.get(&format!("/api/v1/users/{uid}/license"), Some(&tok)),
        404,
        "not_found",
    );

    // POST /promo-codes (201), POST /users/{id}/redeem, GET /users/{id}/license
    let promo = ok(
        &s.post(
            "/api/v1/promo-codes",
            Some(ADMIN),
            &json!({"code": "WELCOME-30", "license_type": "pro", "days": 30, "max_uses": 10}),
        ),
        201,
    );
    assert_eq!(promo["code"], "WELCOME-30");
    assert_eq!(promo["license_type"], "pro");
    assert_eq!(promo["days"], 30);
    assert_eq!(promo["max_uses"], 10);
    let before = now_ms();
    let lic = ok(
        &s.post(
            &format!("/api/v1/users/{uid}/redeem"),
            Some(&tok),
            &json!({"code": "WELCOME-30"}),
        ),
        200,
    );
    keys(&lic, &["license_type", "end_date", "active"]);
    assert_eq!(lic["license_type"], "pro");
    assert_eq!(lic["active"], true);
    let end = lic["end_date"].as_i64().unwrap();
    let thirty = 30 * 86_400_000i64;
    assert!(
        end >= before + thirty - 5_000 && end <= now_ms() + thirty + 5_000,
        "end_date {end} is not now + 30 days"
    );
    assert_eq!(
        ok(
            &s.get(&format!("/api/v1/users/{uid}/license"), Some(&tok)),
            200
        ),
        lic
    );

    // GET /symbols: the four defaults of API.md §1
    let sy = ok(&s.get("/api/v1/symbols", Some(&tok)), 200);
    let list = sy["symbols"].as_array().expect("symbols array");
    for name in ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"] {
        let spec = list
            .iter()
            .find(|x| x["symbol"] == name)
            .unwrap_or_else(|| panic!("{name} missing from {sy}"));
        keys(spec, SYMBOL_KEYS);
        dec(&spec["tick_size"], "0.01");
        dec(&spec["lot_size"], "0.001");
        dec(&spec["min_qty"], "0.001");
        assert_eq!(spec["max_leverage"], 100);
        dec(&spec["maker_fee_bps"], "2");
        dec(&spec["taker_fee_bps"], "5.5");
        dec(&spec["mmr_bps"], "50");
    }
    // PUT /symbols/{symbol} (admin)
    let doge = ok(
        &s.put(
            "/api/v1/symbols/DOGEUSDT",
            Some(ADMIN),
            &json!({"tick_size": "0.00001", "lot_size": "1", "min_qty": 10, "max_leverage": 20,
                    "maker_fee_bps": "1", "taker_fee_bps": "2.5", "mmr_bps": 100}),
        ),
        200,
    );
    keys(&doge, SYMBOL_KEYS);
    assert_eq!(doge["symbol"], "DOGEUSDT");
    dec(&doge["tick_size"], "0.00001");
    dec(&doge["min_qty"], "10");
    dec(&doge["taker_fee_bps"], "2.5");
    assert_eq!(doge["max_leverage"], 20);
    let sy = ok(&s.get("/api/v1/symbols", Some(&tok)), 200);
    let listed = sy["symbols"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["symbol"] == "DOGEUSDT")
        .cloned();
    assert_eq!(listed, Some(doge));

    // POST /signals (admin): alice follows "trend" with risk 10 %, leverage 5, bot on
    let avail = raw(&s.balance(uid, &tok)["available"]);
    let sig = ok(
        &s.post(
            "/api/v1/signals",
            Some(ADMIN),
            &json!({"strategy": "trend", "symbol": "BTCUSDT", "side": "buy", "sl_pct": "1", "tp_pct": 2}),
        ),
        200,
    );
    keys(&sig, &["signal_id", "orders_placed", "skipped"]);
    assert!(sig["signal_id"].as_i64().unwrap() > 0);
    assert_eq!(sig["orders_placed"], 1);
    assert_eq!(sig["skipped"], 0);
    let ps = s.positions(uid, &tok);
    assert_eq!(ps.len(), 1);
    let sp = &ps[0];
    // qty = available × 10/100 × 5 / 31000, rounded down to the lot 0.001
    let lot = 100_000i128;
    let want_qty = avail * 5 / (10 * 31_000) / lot * lot;
    assert_eq!(raw(&sp["qty"]), want_qty, "signal qty");
    assert_eq!(sp["leverage"], 5);
    dec(&sp["sl"], "30690");
    dec(&sp["tp"], "31620");

    // GET /admin/dashboard
    let dash = ok(&s.get("/api/v1/admin/dashboard", Some(ADMIN)), 200);
    assert!(
        dash.as_object().is_some_and(|o| !o.is_empty()),
        "dashboard: {dash}"
    );

    // GET /stats/cache: the nine caches with their default TTLs
    let cs = ok(&s.get("/api/v1/stats/cache", Some(ADMIN)), 200);
    keys(&cs, &["caches"]);
    let mut names: Vec<&str> = CACHE_NAMES.iter().map(|(n, _)| *n).collect();
    names.sort(); // listed by name
    keys(&cs["caches"], &names);
    for (name, ttl) in CACHE_NAMES {
        let c = &cs["caches"][name];
        has_keys(c, CACHE_FIELDS);
        for f in CACHE_FIELDS {
            assert!(c[f].is_number(), "{name}.{f} is not a number: {c}");
        }
        assert_eq!(c["ttl_ms"], *ttl, "{name} default TTL");
        let hr = c["hit_rate"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&hr), "{name} hit_rate {hr}");
    }
    let total_hits: u64 = CACHE_NAMES
        .iter()
        .map(|(n, _)| cs["caches"][n]["hits"].as_u64().unwrap())
        .sum();
    assert!(total_hits > 0, "no cache hit after all those reads: {cs}");

    // GET /health/db-pool
    let dp = ok(&s.get("/api/v1/health/db-pool", Some(ADMIN)), 200);
    has_keys(
        &dp,
        &[
            "pool_size",
            "in_use",
            "idle",
            "queries",
            "failures",
            "retries",
            "slow_queries",
        ],
    );
    assert!(dp["pool_size"].as_u64().unwrap() >= 1);
    assert!(dp["queries"].as_u64().unwrap() > 0);

    // GET /metrics: Prometheus text, no token needed. Made-up methods are counted under one
    // label, so that they cannot add series without end.
    for method in ["FOO1", "BAR2"] {
        assert_eq!(s.raw(method, "/api/v1/health", None, None, &[]).status, 405);
    }
    let m = s.get("/metrics", None);
    assert_eq!(m.status, 200);
    assert!(
        m.header("content-type")
            .unwrap_or("")
            .starts_with("text/plain"),
        "metrics content-type {:?}",
        m.header("content-type")
    );
    let text = m.text();
    assert!(text.contains("# TYPE "), "no # TYPE line");
    // SQLite's own heap: the server has read and written, so its page caches hold pages
    let sample = |name: &str| -> u64 {
        let line = text
            .lines()
            .find(|l| l.split(' ').next() == Some(name))
            .unwrap_or_else(|| panic!("no {name} in {text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let (now, peak) = (
        sample("litetrade_sqlite_memory_bytes"),
        sample("litetrade_sqlite_memory_peak_bytes"),
    );
    assert!(now > 0 && peak >= now, "sqlite memory {now}, peak {peak}");
    // the files' sizes on disk, for watching growth (a checkpoint may grow the file since)
    let db_bytes = sample("litetrade_db_file_bytes");
    let on_disk = std::fs::metadata(dir.path().join("t.db")).unwrap().len();
    assert!(
        db_bytes > 0 && db_bytes <= on_disk,
        "{db_bytes} of {on_disk}"
    );
    assert!(
        sample("litetrade_wal_file_bytes") > 0,
        "the server has written"
    );
    assert!(!text.contains("FOO1") && !text.contains("BAR2"), "{text}");
    assert!(
        text.contains(r#"litetrade_http_responses_total{method="other",route="/api/v1/health",status="405"} 2"#),
        "{text}"
    );
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let v = line.rsplit(' ').next().unwrap();
        assert!(v.parse::<f64>().is_ok(), "bad sample line {line:?}");
    }
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let kind = line.split(' ').nth(3).unwrap_or("");
        assert!(
            ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
            "bad TYPE line {line:?}"
        );
    }

    // GET /api/v1/openapi.json: every route documented
    let oa = ok(&s.get("/api/v1/openapi.json", Some(ADMIN)), 200);
    assert!(
        oa["openapi"].as_str().is_some_and(|v| v.starts_with('3')),
        "openapi version: {}",
        oa["openapi"]
    );
    for (method, path) in ROUTES {
        assert!(
            oa["paths"][path][method].is_object(),
            "{method} {path} missing from openapi.json"
        );
    }

    s.assert_clean();
}

/// The routes of API.md §2's table, as (method, full path): `GET, PUT /users/{id}/config`
/// gives two, and so does `GET /symbols, PUT /symbols/{symbol}`. `None` when
/// `../shared/API.md` is absent.
fn contract_routes() -> Option<Vec<(String, String)>> {
    const METHODS: [&str; 5] = ["GET", "POST", "PUT", "DELETE", "PATCH"];
    let api = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/API.md");
    let text = std::fs::read_to_string(api).ok()?;
    let mut routes = Vec::new();
    for cell in text.lines().filter_map(|l| l.strip_prefix("| ")) {
        let first = cell.split(" | ").next().unwrap_or("");
        // read right to left: a bare method shares the path of the part after it
        let mut path = None;
        for part in first.split(", ").collect::<Vec<_>>().into_iter().rev() {
            let (method, p) = match part.split_once(' ') {
                Some((m, p)) => (m, Some(p.split('?').next().unwrap_or(p))),
                None => (part, path),
            };
            let Some(p) = p.filter(|p| p.starts_with('/') && METHODS.contains(&method)) else {
                break;
            };
            path = Some(p);
            let full = if p == "/metrics" {
                p.to_string()
            } else {
                format!("/api/v1{p}")
            };
            routes.push((method.to_ascii_lowercase(), full));
        }
    }
    Some(routes)
}

#[test]
fn the_router_serves_every_route_of_the_contract() {
    let Some(contract) = contract_routes() else {
        eprintln!("SKIP: ../shared/API.md is absent");
        return;
    };
    assert!(contract.len() >= 30, "read only {contract:?} from API.md");
    for (method, path) in &contract {
        assert!(
            ROUTES.contains(&(method.as_str(), path.as_str())),
            "API.md's {method} {path} is not in litetrade::api::ROUTES"
        );
    }
}

// =============================================================================================
// the error codes of API.md §2

#[test]
fn error_codes_match_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("t.db"));
    let (a, ta) = s.create_user("alice");
    let (b, tb) = s.create_user("bob");
    s.deposit(a, &ta, "100");
    s.deposit(b, &tb, "100");
    let bal = format!("/api/v1/users/{a}/balance");
    let orders = format!("/api/v1/users/{a}/orders");

    // unauthorized (401)
    err(&s.get(&bal, None), 401, "unauthorized");
    err(&s.get(&bal, Some("not-a-token")), 401, "unauthorized");
    err(
        &s.raw(
            "GET",
            &bal,
            None,
            None,
            &[("Authorization", "Basic YWRtaW46YWRtaW4=")],
        ),
        401,
        "unauthorized",
    );
    err(
        &s.raw("GET", &bal, None, None, &[("Authorization", "Bearer ")]),
        401,
        "unauthorized",
    );
    let long = format!("Bearer {}", "a".repeat(300));
    err(
        &s.raw("GET", &bal, None, None, &[("Authorization", long.as_str())]),
        401,
        "unauthorized",
    );
    let admin_prefix = format!("Bearer {}", &ADMIN[..ADMIN.len() - 1]);
    err(
        &s.raw(
            "GET",
            "/api/v1/stats/cache",
            None,
            None,
            &[("Authorization", admin_prefix.as_str())],
        ),
        401,
        "unauthorized",
    );

    // forbidden (403)
    err(
        &s.post("/api/v1/users", Some(&ta), &json!({"name": "mallory"})),
        403,
        "forbidden",
    );
    err(
        &s.post(
            &format!("/api/v1/users/{a}/deposit"),
            Some(&ta),
            &json!({"amount": "5", "account_type": "real"}),
        ),
        403,
        "forbidden",
    );
    dec(
        &ok(&s.get(&format!("{bal}?account_type=real"), Some(&ta)), 200)["wallet"],
        "0",
    );

    // not_found (404)
    err(&s.get("/api/v1/users/999", Some(ADMIN)), 404, "not_found");
    err(
        &s.get("/api/v1/users/999/balance", Some(ADMIN)),
        404,
        "not_found",
    );
    err(
        &s.post(
            "/api/v1/users/999/deposit",
            Some(ADMIN),
            &json!({"amount": "1"}),
        ),
        404,
        "not_found",
    );
    err(
        &s.get(&format!("{orders}/999"), Some(&ta)),
        404,
        "not_found",
    );
    err(
        &s.delete(&format!("{orders}/999"), Some(&ta)),
        404,
        "not_found",
    );
    err(
        &s.post(
            &format!("/api/v1/users/{a}/positions/999/close"),
            Some(&ta),
            &json!({}),
        ),
        404,
        "not_found",
    );
    err(
        &s.get(&format!("/api/v1/users/{a}/license"), Some(&ta)),
        404,
        "not_found",
    );
    err(
        &s.get(&format!("/api/v1/users/{a}/credentials/kraken"), Some(&ta)),
        404,
        "not_found",
    );

    // unknown_symbol (422)
    err(
        &s.post(
            &orders,
            Some(&ta),
            &json!({"symbol": "FOOUSDT", "side": "buy", "type": "market", "qty": "1"}),
        ),
        422,
        "unknown_symbol",
    );
    err(
        &s.get("/api/v1/market/FOOUSDT/ticker", Some(&ta)),
        422,
        "unknown_symbol",
    );
    err(
        &s.post(
            "/api/v1/market/ticks",
            Some(ADMIN),
            &json!({"ticks": [{"symbol": "FOOUSDT", "price": "1"}]}),
        ),
        422,
        "unknown_symbol",
    );
    err(
        &s.post(
            "/api/v1/signals",
            Some(ADMIN),
            &json!({"strategy": "x", "symbol": "FOOUSDT", "side": "buy"}),
        ),
        422,
        "unknown_symbol",
    );

    // no_price (409): no tick for ETHUSDT yet
    err(
        &s.post(
            &orders,
            Some(&ta),
            &json!({"symbol": "ETHUSDT", "side": "buy", "type": "market", "qty": "0.01"}),
        ),
        409,
        "no_price",
    );

    // insufficient_balance (409): nothing changes
    s.tick("BTCUSDT", "30000");
    let before = s.snapshot(a, &ta);
    err(
        &s.post(
            &orders,
            Some(&ta),
            &json!({"symbol": "BTCUSDT", "side": "buy", "type": "market", "qty": "0.01"}),
        ),
        409,
        "insufficient_balance",
    );
    err(
        &s.post(
            &orders,
            Some(&ta),
            &json!({"symbol": "BTCUSDT", "side": "sell", "type": "limit", "qty": "1", "price": "40000", "leverage": 100}),
        ),
        409,
        "insufficient_balance",
    );
    assert_eq!(s.snapshot(a, &ta), before, "a rejected order changed state");

    // promo_invalid (409): unknown, expired, used up
    err(
        &s.post(
            &format!("/api/v1/users/{a}/redeem"),
            Some(&ta),
            &json!({"code": "NOPE"}),
        ),
        409,
        "promo_invalid",
    );
    ok(
        &s.post(
            "/api/v1/promo-codes",
            Some(ADMIN),
            &json!({"code": "OLD", "license_type": "pro", "days": 7, "max_uses": 5, "valid_until": 1000}),
        ),
        201,
    );
    err(
        &s.post(
            &format!("/api/v1/users/{a}/redeem"),
            Some(&ta),
            &json!({"code": "OLD"}),
        ),
        409,
        "promo_invalid",
    );
    ok(
        &s.post(
            "/api/v1/promo-codes",
            Some(ADMIN),
            &json!({"code": "ONCE", "license_type": "pro", "days": 7, "max_uses": 1}),
        ),
        201,
    );
    ok(
        &s.post(
            &format!("/api/v1/users/{b}/redeem"),
            Some(&tb),
            &json!({"code": "ONCE"}),
        ),
        200,
    );
    err(
        &s.post(
            &format!("/api/v1/users/{a}/redeem"),
            Some(&ta),
            &json!({"code": "ONCE"}),
        ),
        409,
        "promo_invalid",
    );
    err(
        &s.get(&format!("/api/v1/users/{a}/license"), Some(&ta)),
        404,
        "not_found",
    );

    // promo_already_redeemed (409): the license is not extended twice
    ok(
        &s.post(
            "/api/v1/promo-codes",
            Some(ADMIN),
            &json!({"code": "TWICE", "license_type": "pro", "days": 7, "max_uses": 100}),
        ),
        201,
    );
    let l1 = ok(
        &s.post(
            &format!("/api/v1/users/{a}/redeem"),
            Some(&ta),
            &json!({"code": "TWICE"}),
        ),
        200,
    );
    err(
        &s.post(
            &format!("/api/v1/users/{a}/redeem"),
            Some(&ta),
            &json!({"code": "TWICE"}),
        ),
        409,
        "promo_already_redeemed",
    );
    assert_eq!(
        ok(
            &s.get(&format!("/api/v1/users/{a}/license"), Some(&ta)),
            200
        ),
        l1
    );

    // conflict (409): duplicate promo code, cancel a filled / cancelled order, close a closed
    // position
    err(
        &s.post(
            "/api/v1/promo-codes",
            Some(ADMIN),
            &json!({"code": "TWICE", "license_type": "pro", "days": 1, "max_uses": 1}),
        ),
        409,
        "conflict",
    );
    let filled = s.order(
        a,
        &ta,
        &json!({"symbol": "BTCUSDT", "side": "buy", "type": "market", "qty": "0.001"}),
    );
    assert_eq!(filled["status"], "filled");
    err(
        &s.delete(&format!("{orders}/{}", filled["id"]), Some(&ta)),
        409,
        "conflict",
    );
    let rest = s.order(
        a,
        &ta,
        &json!({"symbol": "BTCUSDT", "side": "buy", "type": "limit", "qty": "0.001", "price": "20000"}),
    );
    assert_eq!(rest["status"], "pending");
    ok(
        &s.delete(&format!("{orders}/{}", rest["id"]), Some(&ta)),
        200,
    );
    err(
        &s.delete(&format!("{orders}/{}", rest["id"]), Some(&ta)),
        409,
        "conflict",
    );
    let pid = filled["position_id"].as_i64().unwrap();
    let close = format!("/api/v1/users/{a}/positions/{pid}/close");
    ok(&s.post(&close, Some(&ta), &json!({})), 200);
    let snap = s.snapshot(a, &ta);
    err(&s.post(&close, Some(&ta), &json!({})), 409, "conflict");
    assert_eq!(s.snapshot(a, &ta), snap);

    s.assert_clean();
}

#[test]
fn require_license_refuses_orders_until_a_license_is_redeemed() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(&dir.path().join("t.db"), &["--require-license"]);
    let (a, ta) = s.create_user("alice");
    s.deposit(a, &ta, "1000");
    s.tick("BTCUSDT", "30000");
    let body = json!({"symbol": "BTCUSDT", "side": "buy", "type": "market", "qty": "0.001"});
    let before = s.snapshot(a, &ta);
    err(
        &s.post(&format!("/api/v1/users/{a}/orders"), Some(&ta), &body),
        403,
        "license_required",
    );
    err(
        &s.post(
            &format!("/api/v1/users/{a}/orders"),
            Some(&ta),
            &json!({"symbol": "BTCUSDT", "side": "buy", "type": "limit", "qty": "0.001", "price": "100"}),
        ),
        403,
        "license_required",
    );
    assert_eq!(s.snapshot(a, &ta), before);
    // a signal skips the unlicensed follower
    ok(
        &s.put(
            &format!("/api/v1/users/{a}/config"),
            Some(&ta),
            &json!({"strategy": "lic", "risk_pct": 10}),
        ),
        200,
    );
    ok(
        &s.put(
            &format!("/api/v1/users/{a}/bot"),
            Some(&ta),
            &json!({"enabled": true}),
        ),
        200,
    );
    let sig = ok(
        &s.post(
            "/api/v1/signals",
            Some(ADMIN),
            &json!({"strategy": "lic", "symbol": "BTCUSDT", "side": "buy"}),
        ),
        200,
    );
    assert_eq!(sig["orders_placed"], 0);
    assert_eq!(sig["skipped"], 1);
    assert!(s.positions(a, &ta).is_empty());

    ok(
        &s.post(
            "/api/v1/promo-codes",
            Some(ADMIN),
            &json!({"code": "TRY", "license_type": "basic", "days": 1, "max_uses": 1}),
        ),
        201,
    );
    ok(
        &s.post(
            &format!("/api/v1/users/{a}/redeem"),
            Some(&ta),
            &json!({"code": "TRY"}),
        ),
        200,
    );
    let o = s.order(a, &ta, &body);
    assert_eq!(o["status"], "filled");
    s.assert_clean();
}

// =============================================================================================
// auth isolation

#[test]
fn a_user_token_reaches_only_its_own_routes() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("t.db"));
    let (a, ta) = s.create_user("alice");
    let (b, tb) = s.create_user("bob");
    s.deposit(b, &tb, "1000");
    s.tick("BTCUSDT", "30000");
    let bo = s.order(
        b,
        &tb,
        &json!({"symbol": "BTCUSDT", "side": "buy", "type": "market", "qty": "0.001"}),
    );
    let bpid = bo["position_id"].as_i64().unwrap();
    let bl = s.order(
        b,
        &tb,
        &json!({"symbol": "BTCUSDT", "side": "buy", "type": "limit", "qty": "0.001", "price": "20000"}),
    );
    let boid = bl["id"].as_i64().unwrap();
    ok(
        &s.put(
            &format!("/api/v1/users/{b}/credentials/binance"),
            Some(&tb),
            &json!({"api_key": "BOBKEY-1234567890", "api_secret": SECRET}),
        ),
        200,
    );
    ok(
        &s.post(
            "/api/v1/promo-codes",
            Some(ADMIN),
            &json!({"code": "P1", "license_type": "pro", "days": 1, "max_uses": 9}),
        ),
        201,
    );
    let bsnap = s.snapshot(b, &tb);

    let ub = format!("/api/v1/users/{b}");
    let order_body = json!({"symbol": "BTCUSDT", "side": "buy", "type": "market", "qty": "0.001"});
    // (method, path, body): every /users/{id}/… route of B
    let b_routes: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", ub.clone(), None),
        ("GET", format!("{ub}/config"), None),
        ("PUT", format!("{ub}/config"), Some(json!({"leverage": 3}))),
        ("GET", format!("{ub}/bot"), None),
        ("PUT", format!("{ub}/bot"), Some(json!({"enabled": true}))),
        (
            "POST",
            format!("{ub}/deposit"),
            Some(json!({"amount": "5"})),
        ),
        ("GET", format!("{ub}/balance"), None),
        ("POST", format!("{ub}/orders"), Some(order_body.clone())),
        ("GET", format!("{ub}/orders"), None),
        ("GET", format!("{ub}/orders/{boid}"), None),
        ("DELETE", format!("{ub}/orders/{boid}"), None),
        ("GET", format!("{ub}/positions"), None),
        (
            "POST",
            format!("{ub}/positions/{bpid}/close"),
            Some(json!({})),
        ),
        ("GET", format!("{ub}/trades"), None),
        (
            "PUT",
            format!("{ub}/credentials/binance"),
            Some(json!({"api_key": "x", "api_secret": "y"})),
        ),
        ("GET", format!("{ub}/credentials/binance"), None),
        ("POST", format!("{ub}/redeem"), Some(json!({"code": "P1"}))),
        ("GET", format!("{ub}/license"), None),
        ("GET", format!("{ub}/events"), None),
    ];
    // the same routes of a user that does not exist: indistinguishable
    let ghost: Vec<(&str, String, Option<Value>)> = b_routes
        .iter()
        .map(|(m, p, body)| (*m, p.replacen(&ub, "/api/v1/users/424242", 1), body.clone()))
        .collect();
    for (m, p, body) in b_routes.iter().chain(ghost.iter()) {
        let r = s.call(m, p, Some(&ta), body.as_ref());
        err(&r, 404, "not_found");
    }
    // with no token at all: 401
    for (m, p, body) in &b_routes {
        err(&s.call(m, p, None, body.as_ref()), 401, "unauthorized");
    }
    // B's ids through A's own path: 404 too
    let ua = format!("/api/v1/users/{a}");
    err(
        &s.get(&format!("{ua}/orders/{boid}"), Some(&ta)),
        404,
        "not_found",
    );
    err(
        &s.delete(&format!("{ua}/orders/{boid}"), Some(&ta)),
        404,
        "not_found",
    );
    err(
        &s.post(
            &format!("{ua}/positions/{bpid}/close"),
            Some(&ta),
            &json!({}),
        ),
        404,
        "not_found",
    );
    err(
        &s.get(&format!("{ua}/credentials/binance"), Some(&ta)),
        404,
        "not_found",
    );
    assert_eq!(s.snapshot(b, &tb), bsnap, "A's requests changed B's state");

    // admin-only routes with a user token: 403 forbidden; with none: 401
    let admin_routes: Vec<(&str, &str, Option<Value>)> = vec![
        ("POST", "/api/v1/users", Some(json!({"name": "x"}))),
        (
            "POST",
            "/api/v1/market/ticks",
            Some(json!({"ticks": [{"symbol": "BTCUSDT", "price": "1"}]})),
        ),
        (
            "PUT",
            "/api/v1/symbols/BTCUSDT",
            Some(json!({"max_leverage": 2})),
        ),
        (
            "POST",
            "/api/v1/signals",
            Some(json!({"strategy": "s", "symbol": "BTCUSDT", "side": "buy"})),
        ),
        (
            "POST",
            "/api/v1/promo-codes",
            Some(json!({"code": "HACK", "license_type": "pro", "days": 1, "max_uses": 1})),
        ),
        ("GET", "/api/v1/admin/dashboard", None),
        ("GET", "/api/v1/stats/cache", None),
        ("GET", "/api/v1/health/db-pool", None),
    ];
    for (m, p, body) in &admin_routes {
        err(&s.call(m, p, Some(&ta), body.as_ref()), 403, "forbidden");
        err(&s.call(m, p, None, body.as_ref()), 401, "unauthorized");
    }
    // shared reads need a token too
    for p in ["/api/v1/symbols", "/api/v1/market/BTCUSDT/ticker"] {
        err(&s.get(p, None), 401, "unauthorized");
        ok(&s.get(p, Some(&ta)), 200);
    }
    // nothing of that went through
    dec(
        &ok(&s.get("/api/v1/market/BTCUSDT/ticker", Some(&ta)), 200)["last"],
        "30000",
    );
    let sy = ok(&s.get("/api/v1/symbols", Some(&ta)), 200);
    assert!(
        sy["symbols"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["symbol"] == "BTCUSDT" && x["max_leverage"] == 100)
    );
    err(
        &s.post(&format!("{ua}/redeem"), Some(&ta), &json!({"code": "HACK"})),
        409,
        "promo_invalid",
    );

    // the admin may read (and act for) any user
    for p in [
        ub.clone(),
        format!("{ub}/config"),
        format!("{ub}/balance"),
        format!("{ub}/orders"),
        format!("{ub}/orders/{boid}"),
        format!("{ub}/positions"),
        format!("{ub}/trades"),
        format!("{ub}/credentials/binance"),
    ] {
        let mine = ok(&s.get(&p, Some(&tb)), 200);
        let admin = ok(&s.get(&p, Some(ADMIN)), 200);
        assert_eq!(admin, mine, "admin view of {p}");
    }
    err(
        &s.get(&format!("{ub}/license"), Some(ADMIN)),
        404,
        "not_found",
    );
    s.assert_clean();
}

#[test]
fn openapi_json_needs_a_token_like_every_route_but_health_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("t.db"));
    err(&s.get("/api/v1/openapi.json", None), 401, "unauthorized");
    // and the document says so: only /health and /metrics are marked public (`security: []`)
    let doc = ok(&s.get("/api/v1/openapi.json", Some(ADMIN)), 200);
    let mut public = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            if op["security"] == json!([]) {
                public.push(format!("{method} {path}"));
            }
        }
    }
    public.sort();
    assert_eq!(public, ["get /api/v1/health", "get /metrics"]);
}

// =============================================================================================
// bad input answers 4xx JSON and changes nothing

#[derive(Clone, Copy, Debug)]
enum Want {
    /// 400 or 422 `invalid_request`.
    Invalid,
    /// Exactly this status and code.
    Is(u16, &'static str),
    /// Exactly this status, any code (the JSON error shape still).
    Status(u16),
}

#[test]
fn a_wrongly_shaped_body_is_answered_with_the_field_at_fault() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("t.db"));
    let (a, ta) = s.create_user("alice");
    let message = |method: &str, path: &str, tok: &str, body: Value| {
        let r = s.call(method, path, Some(tok), Some(&body));
        err(&r, 422, "invalid_request");
        r.json()["error"]["message"].as_str().unwrap().to_string()
    };
    let ord = format!("/api/v1/users/{a}/orders");
    let order = |extra: Value| {
        let mut o = json!({"symbol": "BTCUSDT", "side": "buy", "type": "market", "qty": "0.001"});
        o.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        message("POST", &ord, &ta, o)
    };
    let expect = [
        (
            order(json!({"leverage": "10"})),
            "invalid JSON body: leverage: invalid type: string \"10\", expected a whole number \
             from 0 to 4294967295",
        ),
        (
            order(json!({"qty": "x"})),
            "invalid JSON body: qty: not a decimal number: \"x\"",
        ),
        (
            order(json!({"side": "up"})),
            "invalid JSON body: side: unknown variant `up`, expected `buy` or `sell`",
        ),
        (
            message("POST", &ord, &ta, json!({"symbol": "BTCUSDT"})),
            "invalid JSON body: missing field `side`",
        ),
        (
            message(
                "POST",
                "/api/v1/market/ticks",
                ADMIN,
                json!({"ticks": [{"symbol": "BTCUSDT", "price": "1"}, {"symbol": "BTCUSDT"}]}),
            ),
            "invalid JSON body: ticks[1]: missing field `price`",
        ),
        (
            message(
                "PUT",
                &format!("/api/v1/users/{a}/config"),
                &ta,
                json!({"risk_pct": true}),
            ),
            "invalid JSON body: risk_pct: expected a decimal string or number, got true",
        ),
    ];
    for (got, want) in expect {
        assert_eq!(got, want);
    }
    // malformed JSON keeps serde's position, which is where the fault is
    let r = s.raw("POST", &ord, Some(&ta), Some(b"{\"symbol\":"), &[]);
    err(&r, 400, "invalid_request");
    assert_eq!(
        r.json()["error"]["message"],
        "invalid JSON body: EOF while parsing a value at line 1 column 10"
    );
    // the query string's faults name their parameter, without axum's preamble
    let r = s.get(&format!("/api/v1/users/{a}/trades?page=x"), Some(&ta));
    err(&r, 400, "invalid_request");
    assert_eq!(
        r.json()["error"]["message"],
        "invalid query string: page: \"x\" is not a whole number"
    );
    for (query, want) in [
        (
            "trades?pge=2",
            "invalid query string: pge: unknown field `pge`, expected one of `page`, `limit`, \
             `account_type`",
        ),
        (
            "balance?account_type=paper",
            "invalid query string: account_type: unknown variant `paper`, expected `demo` or \
             `real`",
        ),
    ] {
        let r = s.get(&format!("/api/v1/users/{a}/{query}"), Some(&ta));
        err(&r, 400, "invalid_request");
        assert_eq!(r.json()["error"]["message"], want, "{query}");
    }
    s.assert_clean();
}

#[test]
fn bad_input_answers_4xx_json_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("t.db"));
    let (a, ta) = s.create_user("alice");
    s.deposit(a, &ta, "1000");
    s.tick("BTCUSDT", "30000");
    let market = s.order(
        a,
        &ta,
        &json!({"symbol": "BTCUSDT", "side": "buy", "type": "market", "qty": "0.001"}),
    );
    let limit = s.order(
        a,
        &ta,
        &json!({"symbol": "BTCUSDT", "side": "buy", "type": "limit", "qty": "0.001", "price": "25000"}),
    );
    let before = s.snapshot(a, &ta);

    let ua = format!("/api/v1/users/{a}");
    let ord = format!("{ua}/orders");
    let dep = format!("{ua}/deposit");
    let cfg = format!("{ua}/config");
    let m = |extra: &str| {
        format!(r#"{{"symbol":"BTCUSDT","side":"buy","type":"market","qty":"0.001"{extra}}}"#)
    };
    let mq =
        |qty: &str| format!(r#"{{"symbol":"BTCUSDT","side":"buy","type":"market","qty":{qty}}}"#);
    let lim = |price: &str| {
        format!(
            r#"{{"symbol":"BTCUSDT","side":"buy","type":"limit","qty":"0.001","price":{price}}}"#
        )
    };
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_obj = format!(r#"{{"symbol":{deep}}}"#);
    use Want::*;
    // (method, path, token, body, want)
    type Case = (String, String, Option<String>, Option<Vec<u8>>, Want);
    let mut cases: Vec<Case> = Vec::new();
    fn case(
        m: &str,
        p: &str,
        t: Option<&str>,
        b: Option<&str>,
        w: Want,
    ) -> (String, String, Option<String>, Option<Vec<u8>>, Want) {
        (
            m.to_string(),
            p.to_string(),
            t.map(str::to_string),
            b.map(|b| b.as_bytes().to_vec()),
            w,
        )
    }
    macro_rules! add {
        ($m:expr, $p:expr, $t:expr, $b:expr, $w:expr $(,)?) => {
            cases.push(case($m, $p, $t, $b, $w))
        };
    }
    let t = Some(ta.as_str());
    let adm = Some(ADMIN);
    // malformed JSON, wrong types, NaN/Infinity/huge/over-precise numbers, non-step and
    // out-of-range values, unknown/missing fields, wrong enums on POST /orders
    for body in [
        mq("true"),
        mq("null"),
        mq("[1]"),
        mq(r#"{"v":1}"#),
        m(r#","leverage":"x""#),
        m(r#","leverage":1.5"#),
        m(r#","leverage":"2""#),
        m(r#","leverage":4294967296"#),
        m(r#","leverage":-1"#),
        m(r#","leverage":0"#),
        m(r#","leverage":101"#),
        mq("NaN"),
        mq(r#""NaN""#),
        mq("Infinity"),
        mq(r#""Infinity""#),
        mq(r#""-inf""#),
        mq("1e999"),
        mq(r#""1e999""#),
        mq("-1e999"),
        mq("99999999999999999999999999999"),
        mq(r#""92233720368.54775808""#),
        mq("0.000000001"),
        mq("1e-30"),
        mq(r#""""#),
        mq(r#""1,5""#),
        mq(r#""0x10""#),
        mq("-0.001"),
        mq("0"),
        mq(r#""0.0015""#),
        mq("0.0001"),
        lim(r#""29000.005""#),
        lim("0"),
        lim("-100"),
        m(r#","price":"30000""#),
        r#"{"symbol":"BTCUSDT","side":"buy","type":"limit","qty":"0.001"}"#.to_string(),
        m(r#","sl":"31000""#),
        m(r#","tp":"29000""#),
        m(r#","sl":"29000.001""#),
        m(r#","sl":"-1""#),
        m(&format!(r#","client_order_id":"{}""#, "c".repeat(100))),
        m(r#","client_order_id":"""#),
        m(r#","foo":1"#),
        r#"{"symbol":"BTCUSDT","side":"buy","type":"market","Qty":"0.001"}"#.to_string(),
        r#"{"symbol":"BTCUSDT","side":"buy","type":"market"}"#.to_string(),
        r#"{"symbol":"BTCUSDT","type":"market","qty":"0.001"}"#.to_string(),
        "{}".to_string(),
        "".to_string(),
        "[]".to_string(),
        r#"["BTCUSDT","buy","market","0.001"]"#.to_string(),
        "null".to_string(),
        "42".to_string(),
        r#"{"symbol":"BTCUSDT","side":"hold","type":"market","qty":"0.001"}"#.to_string(),
        r#"{"symbol":"BTCUSDT","side":"buy","type":"stop","qty":"0.001"}"#.to_string(),
        r#"{"symbol":"BTCUSDT","side":"BUY","type":"market","qty":"0.001"}"#.to_string(),
        m(r#","account_type":"gold""#),
        r#"{"symbol":7,"side":"buy","type":"market","qty":"0.001"}"#.to_string(),
        deep_obj,
        r#"{"symbol":"BTCUSDT","symbol":"ETHUSDT","side":"buy","type":"market","qty":"0.001"}"#
            .to_string(),
    ] {
        add!("POST", &ord, t, Some(&body), Invalid);
    }
    add!(
        "POST",
        &ord,
        t,
        Some(r#"{"symbol":"BTCUSDT","#),
        Is(400, "invalid_request")
    );
    add!(
        "POST",
        &ord,
        t,
        Some("not json"),
        Is(400, "invalid_request")
    );
    add!(
        "POST",
        &ord,
        t,
        Some(&format!("{} trailing", m(""))),
        Is(400, "invalid_request")
    );
    add!("POST", &ord, t, None, Invalid);
    add!(
        "POST",
        &ord,
        t,
        Some(&format!(
            r#"{{"symbol":"{}","side":"buy","type":"market","qty":"0.001"}}"#,
            "X".repeat(10_000)
        )),
        Is(422, "unknown_symbol")
    );
    add!(
        "POST",
        &ord,
        t,
        Some(r#"{"symbol":"btcusdt","side":"buy","type":"market","qty":"0.001"}"#),
        Is(422, "unknown_symbol")
    );
    // deposits
    for amount in [
        r#""abc""#,
        "-5",
        "0",
        "1e999",
        r#""1e400""#,
        "true",
        "NaN",
        r#""0.000000001""#,
        "1000000001",
        "99999999999999999999",
    ] {
        add!(
            "POST",
            &dep,
            t,
            Some(&format!(r#"{{"amount":{amount}}}"#)),
            Invalid
        );
    }
    add!("POST", &dep, t, Some("{}"), Invalid);
    add!("POST", &dep, t, Some("[1]"), Invalid);
    add!("POST", &dep, t, Some(r#" ["1", "demo"]"#), Invalid);
    add!(
        "POST",
        &dep,
        t,
        Some(r#"{"amount":"1","extra":true}"#),
        Invalid
    );
    add!(
        "POST",
        &dep,
        t,
        Some(r#"{"amount":"5","account_type":"real"}"#),
        Is(403, "forbidden")
    );
    add!(
        "POST",
        &dep,
        t,
        Some(r#"{"amount":"5","account_type":"paper"}"#),
        Invalid
    );
    // config, bot, credentials, redeem
    for body in [
        r#"{"leverage":0}"#,
        r#"{"leverage":1001}"#,
        r#"{"leverage":2.5}"#,
        r#"{"risk_pct":101}"#,
        r#"{"risk_pct":0}"#,
        r#"{"risk_pct":"x"}"#,
        r#"{"sl_pct":100}"#,
        r#"{"strategy":""}"#,
        r#"{"account_type":"x"}"#,
        r#"{"unknown":1}"#,
        r#"{"strategy":5}"#,
        r#"{"strategy":"a\nb"}"#,
        r#"{"strategy":"a\u0000b"}"#,
        "[1,2]",
    ] {
        add!("PUT", &cfg, t, Some(body), Invalid);
    }
    add!(
        "PUT",
        &format!("{ua}/bot"),
        t,
        Some(r#"{"enabled":"yes"}"#),
        Invalid
    );
    add!(
        "PUT",
        &format!("{ua}/bot"),
        t,
        Some(r#"{"enabled":1}"#),
        Invalid
    );
    add!("PUT", &format!("{ua}/bot"), t, Some("{}"), Invalid);
    add!(
        "PUT",
        &format!("{ua}/credentials/binance"),
        t,
        Some(r#"{"api_key":"k"}"#),
        Invalid
    );
    add!(
        "PUT",
        &format!("{ua}/credentials/binance"),
        t,
        Some(r#"{"api_key":5,"api_secret":"s"}"#),
        Invalid
    );
    add!(
        "POST",
        &format!("{ua}/redeem"),
        t,
        Some(r#"{"code":5}"#),
        Invalid
    );
    add!("POST", &format!("{ua}/redeem"), t, Some("{}"), Invalid);
    // admin writes with bad input
    let ticks = "/api/v1/market/ticks";
    for body in [
        r#"{"ticks":[{"symbol":"BTCUSDT","price":"0"}]}"#,
        r#"{"ticks":[{"symbol":"BTCUSDT","price":-1}]}"#,
        r#"{"ticks":[{"symbol":"BTCUSDT","price":"NaN"}]}"#,
        r#"{"ticks":[{"symbol":"BTCUSDT","price":1e999}]}"#,
        r#"{"ticks":[{"symbol":"BTCUSDT","price":"35000","ts":-5}]}"#,
        r#"{"ticks":[{"symbol":"BTCUSDT","price":"35000","ts":"x"}]}"#,
        r#"{"ticks":[{"symbol":"BTCUSDT","price":"35000","ts":1.5}]}"#,
        r#"{"ticks":[{"symbol":"BTCUSDT"}]}"#,
        r#"{"ticks":[{"symbol":"BTCUSDT","price":"35000","extra":1}]}"#,
        r#"{"ticks":{"symbol":"BTCUSDT","price":"35000"}}"#,
        // an object inside a body is an object too, not its fields in order
        r#"{"ticks":[["BTCUSDT","35000"]]}"#,
        "{}",
    ] {
        add!("POST", ticks, adm, Some(body), Invalid);
    }
    // a batch with one bad tick applies none of it
    add!(
        "POST",
        ticks,
        adm,
        Some(
            r#"{"ticks":[{"symbol":"BTCUSDT","price":"35000"},{"symbol":"FOOUSDT","price":"1"}]}"#
        ),
        Is(422, "unknown_symbol"),
    );
    add!(
        "POST",
        ticks,
        adm,
        Some(
            r#"{"ticks":[{"symbol":"BTCUSDT","price":"20000"},{"symbol":"ETHUSDT","price":"0"}]}"#
        ),
        Invalid,
    );
    for body in [
        r#"{"tick_size":"0"}"#,
        r#"{"tick_size":"1000000001"}"#,
        r#"{"lot_size":"-1"}"#,
        r#"{"maker_fee_bps":"1.234"}"#,
        r#"{"max_leverage":0}"#,
        r#"{"max_leverage":"x"}"#,
        r#"{"mmr_bps":"5000"}"#,
        r#"{"min_qty":"0.0015"}"#,
        r#"{"maker_fee_bps":"10","taker_fee_bps":"5"}"#,
        r#"{"colour":"red"}"#,
    ] {
        add!("PUT", "/api/v1/symbols/BTCUSDT", adm, Some(body), Invalid);
    }
    add!("PUT", "/api/v1/symbols/btc-usdt", adm, Some("{}"), Invalid);
    for body in [
        r#"{"code":"X1","license_type":"pro","days":0,"max_uses":1}"#,
        r#"{"code":"X1","license_type":"pro","days":"x","max_uses":1}"#,
        r#"{"code":"bad code!","license_type":"pro","days":1,"max_uses":1}"#,
        r#"{"code":"X1","license_type":"pro","days":1}"#,
        r#"{"code":"X1","license_type":"pro","days":1,"max_uses":0}"#,
        r#"{"code":"X1","license_type":"pro","days":-1,"max_uses":1}"#,
    ] {
        add!("POST", "/api/v1/promo-codes", adm, Some(body), Invalid);
    }
    for body in [
        r#"{"strategy":"s","symbol":"BTCUSDT","side":"up"}"#,
        r#"{"strategy":"s","symbol":"BTCUSDT","side":"buy","sl_pct":150}"#,
        r#"{"strategy":"s","symbol":"BTCUSDT","side":"buy","extra":1}"#,
        r#"{"strategy":"","symbol":"BTCUSDT","side":"buy"}"#,
        r#"{"strategy":"a\nb","symbol":"BTCUSDT","side":"buy"}"#,
    ] {
        add!("POST", "/api/v1/signals", adm, Some(body), Invalid);
    }
    for body in [
        r#"{"name":""}"#,
        r#"{"name":"eve\nBalance (demo, USDT)\nWallet: 1000000"}"#,
        r#"{"name":"a\u0000b"}"#,
        r#"{"name":"a\u009bb"}"#,
        r#"{"name":"a\u2028b"}"#,
        r#"{"name":"evil\u202etxt.exe"}"#,
    ] {
        add!("POST", "/api/v1/users", adm, Some(body), Invalid);
    }
    // well-formed JSON of the wrong shape is 422; JSON that does not parse is 400, even when
    // its shape is wrong before its syntax is
    add!(
        "POST",
        "/api/v1/users",
        adm,
        Some(r#"["bob"]"#),
        Is(422, "invalid_request")
    );
    for body in [
        r#"["bob""#,
        r#"{"name":["bob",}"#,
        r#"{"name":"bob"} x"#,
        r#"{"name":"\ud800"}"#,
        r#"{"telegram_id":"x","name":"\ud800"}"#,
    ] {
        add!(
            "POST",
            "/api/v1/users",
            adm,
            Some(body),
            Is(400, "invalid_request")
        );
    }
    add!(
        "POST",
        "/api/v1/users",
        adm,
        Some(r#"{"name":"x","telegram_id":"abc"}"#),
        Invalid
    );
    add!(
        "POST",
        "/api/v1/users",
        adm,
        Some(r#"{"name":"x","admin":true}"#),
        Invalid
    );
    add!(
        "POST",
        "/api/v1/users",
        adm,
        Some(&format!(r#"{{"name":"{}"}}"#, "n".repeat(1000))),
        Invalid
    );
    // non-UTF-8 body
    cases.push((
        "POST".into(),
        ord.clone(),
        Some(ta.clone()),
        Some(vec![0xff, 0xfe, 0x7b]),
        Invalid,
    ));
    // an 8 MB body: 413 JSON
    let mut big = m(r#","client_order_id":""#).into_bytes();
    big.truncate(big.len() - 1);
    big.extend(std::iter::repeat_n(b'x', 8 << 20));
    big.extend_from_slice(br#""}"#);
    cases.push((
        "POST".into(),
        ord.clone(),
        Some(ADMIN.into()),
        Some(big),
        Is(413, "payload_too_large"),
    ));
    // path ids that are not numbers
    for p in [
        "/api/v1/users/abc".to_string(),
        "/api/v1/users/0".to_string(),
        "/api/v1/users/-1/balance".to_string(),
        "/api/v1/users/1.5/balance".to_string(),
        "/api/v1/users/99999999999999999999999/balance".to_string(),
        "/api/v1/users/%00/config".to_string(),
        format!("{ord}/abc"),
        format!("{ord}/-3"),
        format!("{ord}/99999999999999999999999"),
    ] {
        add!("GET", &p, t, None, Is(404, "not_found"));
    }
    add!(
        "DELETE",
        &format!("{ord}/xyz"),
        t,
        None,
        Is(404, "not_found")
    );
    add!(
        "POST",
        &format!("{ua}/positions/1e3/close"),
        t,
        Some("{}"),
        Is(404, "not_found")
    );
    // close and cancel take no body: a field (there is no partial close) or bad JSON is
    // refused, and the position stays open, the order pending
    let close = format!("{ua}/positions/{}/close", market["position_id"]);
    let cancel = format!("{ord}/{}", limit["id"]);
    for body in [
        r#"{"qty":"0.0005"}"#,
        r#"{"reason":"manual"}"#,
        "[]",
        "null",
    ] {
        add!("POST", &close, t, Some(body), Is(422, "invalid_request"));
        add!("DELETE", &cancel, t, Some(body), Is(422, "invalid_request"));
    }
    add!("POST", &close, t, Some("{bad"), Is(400, "invalid_request"));
    add!(
        "DELETE",
        &cancel,
        t,
        Some("{bad"),
        Is(400, "invalid_request")
    );
    // bad queries
    for q in [
        "trades?page=abc",
        "trades?limit=1.5",
        "trades?limit=",
        "trades?page=--1",
        "trades?page=1&limit=2&sort=asc",
        "trades?account_type=paper",
        "balance?account_type=gold",
        "balance?foo=1",
        "positions?account_type=",
    ] {
        add!("GET", &format!("{ua}/{q}"), t, None, Invalid);
    }
    // unknown routes, wrong methods
    add!("GET", "/api/v1/nope", t, None, Is(404, "not_found"));
    add!("GET", "/nope", None, None, Is(404, "not_found"));
    add!(
        "POST",
        &format!("{ua}/nope"),
        t,
        Some("{}"),
        Is(404, "not_found")
    );
    add!("GET", "/api/v2/health", None, None, Is(404, "not_found"));
    add!("DELETE", &format!("{ua}/balance"), t, None, Status(405));
    add!("PATCH", "/api/v1/users", adm, Some("{}"), Status(405));
    add!("GET", ticks, adm, None, Status(405));
    add!("POST", "/api/v1/health", None, Some("{}"), Status(405));
    add!("PUT", &ord, t, Some(&m("")), Status(405));

    // a path segment that is not UTF-8 on the caller's own route: not found, and the message
    // does not claim the caller's own user is missing
    for p in [format!("{ord}/%ff"), format!("{ua}/credentials/%ff")] {
        let r = s.raw("GET", &p, t, None, &[]);
        assert_eq!(r.status, 404, "{p}: {}", r.text());
        err_shape(&r, "not_found");
        assert!(!r.text().contains("user"), "{p}: {}", r.text());
    }
    // a Content-Length over the limit answers 413 at once, without waiting for a body that
    // will never come (the read timeout would fail this)
    let r = s.raw(
        "POST",
        &ord,
        t,
        None,
        &[
            ("Content-Length", "2000000"),
            ("Content-Type", "application/json"),
        ],
    );
    assert_eq!(r.status, 413, "{}", r.text());
    err_shape(&r, "payload_too_large");

    for (method, path, token, body, want) in &cases {
        let r = s.raw(method, path, token.as_deref(), body.as_deref(), &[]);
        let what = format!(
            "{method} {path} {:?}",
            body.as_ref()
                .map(|b| String::from_utf8_lossy(&b[..b.len().min(120)]).into_owned())
        );
        assert!(
            (400..500).contains(&r.status),
            "{what}: status {} body {}",
            r.status,
            r.text()
        );
        match want {
            Invalid => {
                assert!(
                    r.status == 400 || r.status == 422,
                    "{what}: status {} body {}",
                    r.status,
                    r.text()
                );
                err_shape(&r, "invalid_request");
            }
            Is(st, code) => {
                assert_eq!(r.status, *st, "{what}: body {}", r.text());
                err_shape(&r, code);
            }
            Status(st) => {
                assert_eq!(r.status, *st, "{what}: body {}", r.text());
                let v = r.json();
                keys(&v, &["error"]);
                keys(&v["error"], &["code", "message"]);
            }
        }
    }

    // still alive, nothing changed, never a 5xx
    assert_eq!(
        ok(&s.get("/api/v1/health", None), 200),
        json!({"status": "ok"})
    );
    assert_eq!(
        s.snapshot(a, &ta),
        before,
        "a rejected request changed state"
    );
    let users_after = s.get("/api/v1/users/2", Some(ADMIN));
    err(&users_after, 404, "not_found");
    s.assert_clean();
}

#[test]
fn a_page_beyond_the_end_is_empty_even_for_huge_page_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("t.db"));
    let (a, ta) = s.create_user("alice");
    s.deposit(a, &ta, "1000");
    s.tick("BTCUSDT", "30000");
    let o = s.order(
        a,
        &ta,
        &json!({"symbol": "BTCUSDT", "side": "buy", "type": "market", "qty": "0.001"}),
    );
    ok(
        &s.post(
            &format!("/api/v1/users/{a}/positions/{}/close", o["position_id"]),
            Some(&ta),
            &json!({}),
        ),
        200,
    );
    for q in [
        "?page=9223372036854775809&limit=1",
        "?page=18446744073709551615&limit=1000",
        "?page=99999999999999999999999999&limit=1",
    ] {
        let v = ok(
            &s.get(&format!("/api/v1/users/{a}/trades{q}"), Some(&ta)),
            200,
        );
        assert_eq!(v["total"], 1);
        assert_eq!(v["trades"], json!([]), "{q}: {v}");
    }
}

// =============================================================================================
// slow and idle clients

/// Waits up to 10 s for the server to close `sock`: the time it took, or `None` if it answered
/// something or stayed open.
fn closed_by_server(sock: &mut TcpStream) -> Option<Duration> {
    let t0 = Instant::now();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut b = [0u8; 256];
    match sock.read(&mut b) {
        Ok(0) => Some(t0.elapsed()),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Some(t0.elapsed()),
        _ => None,
    }
}

/// A slowloris client (a request head that never ends) and idle keep-alive connections are
/// closed after `header_timeout_ms`, a long SSE stream is not, and connections beyond
/// `max_connections` wait in the backlog instead of using up the server's file descriptors.
#[test]
fn slow_or_idle_connections_are_closed_and_their_number_is_capped() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with_env(
        &dir.path().join("t.db"),
        &[],
        &[
            ("LITETRADE_HEADER_TIMEOUT_MS", "500"),
            ("LITETRADE_MAX_CONNECTIONS", "4"),
        ],
    );
    let (a, ta) = s.create_user("alice");
    let events = format!("/api/v1/users/{a}/events");
    let mut first = SseStream::open(&s.addr, &events, &ta);

    // half a request head: closed after the timeout, not at once and not never
    let mut slow = TcpStream::connect(&s.addr).unwrap();
    slow.write_all(b"GET /api/v1/health HTTP/1.1\r\nHo")
        .unwrap();
    let took = closed_by_server(&mut slow).expect("a half-sent head was never closed");
    assert!(took >= Duration::from_millis(400), "closed after {took:?}");

    // a keep-alive connection left idle after its answer: closed after the timeout too
    let mut idle = TcpStream::connect(&s.addr).unwrap();
    write!(
        idle,
        "GET /api/v1/health HTTP/1.1\r\nHost: t\r\nConnection: keep-alive\r\n\r\n"
    )
    .unwrap();
    let mut head = [0u8; 12];
    idle.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    let mut rest = vec![0u8; 4096];
    let _ = idle.read(&mut rest).unwrap();
    closed_by_server(&mut idle).expect("an idle keep-alive connection was never closed");

    // the stream has been open for over two timeouts and still carries events
    s.deposit(a, &ta, "5");
    let got = first.read_until(Duration::from_secs(20), |evs| {
        evs.iter().any(|e| e.event == "balance_changed")
    });
    assert!(
        got.iter().any(|e| e.event == "balance_changed"),
        "the SSE stream stopped after the head timeout: {got:?}"
    );

    // four streams fill the cap: a fifth connection is not served while they stay open
    let mut streams: Vec<SseStream> = (0..3)
        .map(|_| SseStream::open(&s.addr, &events, &ta))
        .collect();
    streams.push(first);
    let mut fifth = TcpStream::connect(&s.addr).unwrap();
    write!(fifth, "GET /api/v1/health HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    fifth
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let mut b = [0u8; 12];
    let early = fifth.read(&mut b);
    assert!(
        early.as_ref().is_err_and(|e| matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        )),
        "the fifth connection was served beyond max_connections = 4: {early:?}"
    );
    // one stream goes; the server learns it on its next write to it, and the fifth is served
    drop(streams.pop());
    fifth.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut answer = Vec::new();
    while !answer.windows(12).any(|w| w == b"HTTP/1.1 200") {
        assert!(
            Instant::now() < deadline,
            "the fifth connection was not served after a stream closed: {}",
            s.serve.log_text()
        );
        s.deposit(a, &ta, "1");
        let mut buf = [0u8; 512];
        match fifth.read(&mut buf) {
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "{e}"),
        }
    }
    assert!(
        s.serve.log_text().contains("connection limit reached"),
        "{}",
        s.serve.log_text()
    );
}

/// The response the server sends on `sock` (waiting at most 10 s) and the time it took; panics
/// if none comes or the server then leaves the connection open.
fn answer_then_close(sock: &mut TcpStream) -> (Resp, Duration) {
    let t0 = Instant::now();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let r = common::read_response(sock).unwrap_or_else(|e| panic!("no answer: {e}"));
    let took = t0.elapsed();
    assert!(
        closed_by_server(sock).is_some(),
        "the connection stayed open after the answer"
    );
    (r, took)
}

/// A request body must arrive whole within `header_timeout_ms` of its head: stalled or
/// trickled a byte at a time (each byte well inside the limit, so an idle timer alone would
/// never fire), it answers 408 `request_timeout`, the connection is closed, and nothing
/// changes.
#[test]
fn a_body_that_does_not_arrive_in_time_answers_408_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with_env(
        &dir.path().join("t.db"),
        &[],
        &[("LITETRADE_HEADER_TIMEOUT_MS", "500")],
    );
    let (a, ta) = s.create_user("alice");
    s.tick("BTCUSDT", "50000");
    s.deposit(a, &ta, "1000");
    let before = s.snapshot(a, &ta);
    // a valid order, padded so that trickling it takes far longer than the limit
    let body = format!(
        r#"{{"symbol":"BTCUSDT","side":"buy","type":"market","qty":"0.01"{}}}"#,
        " ".repeat(200)
    );
    let head = format!(
        "POST /api/v1/users/{a}/orders HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {ta}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );

    // all but the last byte, then nothing
    let mut stalled = TcpStream::connect(&s.addr).unwrap();
    stalled.write_all(head.as_bytes()).unwrap();
    stalled
        .write_all(&body.as_bytes()[..body.len() - 1])
        .unwrap();
    let (r, took) = answer_then_close(&mut stalled);
    err(&r, 408, "request_timeout");
    assert!(
        took >= Duration::from_millis(450),
        "answered after {took:?}"
    );

    // one byte every 50 ms: 13 s for the whole body
    let mut trickled = TcpStream::connect(&s.addr).unwrap();
    trickled.write_all(head.as_bytes()).unwrap();
    let mut w = trickled.try_clone().unwrap();
    let bytes = body.into_bytes();
    let writer = std::thread::spawn(move || {
        for b in bytes {
            if w.write_all(&[b]).is_err() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        true
    });
    let (r, took) = answer_then_close(&mut trickled);
    err(&r, 408, "request_timeout");
    assert!(
        took >= Duration::from_millis(450),
        "answered after {took:?}"
    );
    assert!(
        !writer.join().unwrap(),
        "the trickled body was sent whole before the server answered"
    );

    assert_eq!(
        s.snapshot(a, &ta),
        before,
        "a timed-out request changed state"
    );
    s.assert_clean();
}

// =============================================================================================
// SSE

struct SseStream {
    rx: mpsc::Receiver<String>,
    sock: TcpStream,
    buf: String,
}

#[derive(Debug, Clone)]
struct SseEvent {
    event: String,
    data: String,
}

impl SseStream {
    /// Opens the stream and waits for the response head (the subscription exists by then).
    fn open(addr: &str, path: &str, token: &str) -> SseStream {
        let mut sock = TcpStream::connect(addr).expect("connect");
        sock.set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        write!(
            sock,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
        )
        .unwrap();
        let (head_tx, head_rx) = mpsc::channel::<(u16, Vec<String>)>();
        let (tx, rx) = mpsc::channel::<String>();
        let reader = sock.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut r = BufReader::new(reader);
            let mut line = String::new();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let status = line
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let mut headers = Vec::new();
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap_or(0) == 0 {
                    return;
                }
                let h = h.trim_end().to_string();
                if h.is_empty() {
                    break;
                }
                headers.push(h);
            }
            let chunked = headers.iter().any(|h| {
                h.to_ascii_lowercase().starts_with("transfer-encoding")
                    && h.to_ascii_lowercase().contains("chunked")
            });
            let _ = head_tx.send((status, headers));
            if chunked {
                loop {
                    let mut size = String::new();
                    if r.read_line(&mut size).unwrap_or(0) == 0 {
                        return;
                    }
                    let Ok(n) =
                        usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
                    else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    let mut data = vec![0u8; n + 2];
                    if r.read_exact(&mut data).is_err() {
                        return;
                    }
                    data.truncate(n);
                    if tx
                        .send(String::from_utf8_lossy(&data).into_owned())
                        .is_err()
                    {
                        return;
                    }
                }
            } else {
                let mut buf = [0u8; 4096];
                loop {
                    match r.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if tx
                                .send(String::from_utf8_lossy(&buf[..n]).into_owned())
                                .is_err()
                            {
                                return;
                            }
                        }
                    }
                }
            }
        });
        let (status, headers) = head_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("SSE response head");
        assert_eq!(status, 200, "SSE status; headers {headers:?}");
        assert!(
            headers
                .iter()
                .any(|h| h.to_ascii_lowercase().starts_with("content-type")
                    && h.contains("text/event-stream")),
            "SSE content-type: {headers:?}"
        );
        SseStream {
            rx,
            sock,
            buf: String::new(),
        }
    }

    /// Reads events until `done` holds for everything received so far, or the timeout.
    fn read_until(
        &mut self,
        timeout: Duration,
        done: impl Fn(&[SseEvent]) -> bool,
    ) -> Vec<SseEvent> {
        let deadline = Instant::now() + timeout;
        loop {
            let events = parse_sse(&self.buf);
            if done(&events) {
                return events;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return events;
            }
            match self.rx.recv_timeout(left) {
                Ok(s) => self.buf.push_str(&s),
                Err(_) => return parse_sse(&self.buf),
            }
        }
    }
}

impl Drop for SseStream {
    fn drop(&mut self) {
        let _ = self.sock.shutdown(std::net::Shutdown::Both);
    }
}

/// Complete events (ended by a blank line) of an SSE text; comments skipped.
fn parse_sse(text: &str) -> Vec<SseEvent> {
    let text = text.replace("\r\n", "\n");
    let mut out = Vec::new();
    let mut blocks: Vec<&str> = text.split("\n\n").collect();
    blocks.pop(); // the last one is incomplete (or empty)
    for b in blocks {
        let mut ev = SseEvent {
            event: "message".into(),
            data: String::new(),
        };
        let mut any = false;
        for line in b.lines() {
            if let Some(v) = line.strip_prefix("event:") {
                ev.event = v.trim().to_string();
                any = true;
            } else if let Some(v) = line.strip_prefix("data:") {
                if !ev.data.is_empty() {
                    ev.data.push('\n');
                }
                ev.data.push_str(v.strip_prefix(' ').unwrap_or(v));
                any = true;
            }
        }
        if any {
            out.push(ev);
        }
    }
    out
}

/// The user an event's data belongs to.
fn event_user(data: &Value) -> Option<i64> {
    data.get("user_id")
        .or_else(|| data.get("order").and_then(|o| o.get("user_id")))
        .or_else(|| data.get("position").and_then(|o| o.get("user_id")))
        .or_else(|| data.get("trade").and_then(|o| o.get("user_id")))
        .and_then(Value::as_i64)
}

#[test]
fn sse_streams_only_the_users_own_events() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start(&dir.path().join("t.db"));
    let (a, ta) = s.create_user("alice");
    let (b, tb) = s.create_user("bob");
    s.deposit(a, &ta, "1000");
    s.deposit(b, &tb, "1000");
    s.tick("BTCUSDT", "30000");

    // another user's stream is 404; no token is 401
    err(
        &s.get(&format!("/api/v1/users/{b}/events"), Some(&ta)),
        404,
        "not_found",
    );
    err(
        &s.get(&format!("/api/v1/users/{a}/events"), None),
        401,
        "unauthorized",
    );

    let mut sse = SseStream::open(&s.addr, &format!("/api/v1/users/{a}/events"), &ta);
    // B trades first: none of it may reach A's stream
    let bo = s.order(
        b,
        &tb,
        &json!({"symbol": "BTCUSDT", "side": "sell", "type": "market", "qty": "0.002"}),
    );
    ok(
        &s.post(
            &format!("/api/v1/users/{b}/positions/{}/close", bo["position_id"]),
            Some(&tb),
            &json!({}),
        ),
        200,
    );
    // then A's order fills
    let o = s.order(
        a,
        &ta,
        &json!({"symbol": "BTCUSDT", "side": "buy", "type": "market", "qty": "0.001"}),
    );
    let oid = o["id"].as_i64().unwrap();
    let pid = o["position_id"].as_i64().unwrap();
    let events = sse.read_until(Duration::from_secs(20), |evs| {
        evs.iter().any(|e| e.event == "order_filled")
            && evs.iter().any(|e| e.event == "position_opened")
    });
    let filled = events
        .iter()
        .find(|e| e.event == "order_filled")
        .unwrap_or_else(|| panic!("no order_filled event within 20 s: {events:?}"));
    let opened = events
        .iter()
        .find(|e| e.event == "position_opened")
        .unwrap_or_else(|| panic!("no position_opened event within 20 s: {events:?}"));
    let fd: Value = serde_json::from_str(&filled.data).expect("order_filled data is JSON");
    assert_eq!(fd["order"]["id"], oid, "{fd}");
    assert_eq!(fd["order"]["user_id"], a);
    assert_eq!(fd["order"]["status"], "filled");
    dec(&fd["order"]["fill_price"], "30000");
    let pd: Value = serde_json::from_str(&opened.data).expect("position_opened data is JSON");
    assert_eq!(pd["position"]["id"], pid, "{pd}");
    assert_eq!(pd["position"]["user_id"], a);
    assert_eq!(pd["position"]["side"], "long");
    for e in &events {
        if e.event == "lagged" {
            continue;
        }
        let d: Value = serde_json::from_str(&e.data)
            .unwrap_or_else(|err| panic!("event data is not JSON ({err}): {e:?}"));
        assert_eq!(
            event_user(&d),
            Some(a),
            "an event of another user (or of nobody) reached A's stream: {e:?}"
        );
    }
    s.assert_clean();
    // an open stream must not hold up a graceful shutdown: SIGTERM ends it and serve exits
    // (terminate fails after 10 s otherwise)
    let st = s.terminate();
    assert!(st.success(), "serve exited with {st} after SIGTERM");
    drop(sse);
}

// =============================================================================================
// read-your-writes through every cache

#[test]
fn every_write_is_visible_to_the_next_read() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("t.db"));
    let (a, ta) = s.create_user("alice");
    let ua = format!("/api/v1/users/{a}");
    s.tick("BTCUSDT", "30000");
    let mut wallet: i128 = 0;
    for i in 0..12i64 {
        // warm every cache first, then write, then read
        let _ = s.balance(a, &ta);
        let _ = s.positions(a, &ta);
        let _ = s.orders(a, &ta);
        let _ = ok(&s.get("/api/v1/market/BTCUSDT/ticker", Some(&ta)), 200);
        let _ = ok(&s.get(&format!("{ua}/config"), Some(&ta)), 200);
        let _ = ok(&s.get("/api/v1/symbols", Some(&ta)), 200);

        // balance after deposit
        let d = s.deposit(a, &ta, "100.5");
        wallet += 10_050_000_000;
        let b = s.balance(a, &ta);
        assert_eq!(b, d, "balance read differs from the deposit's answer");
        assert_eq!(raw(&b["wallet"]), wallet, "round {i}: wallet");

        // positions after a filled order; balance after its fee
        let o = s.order(
            a,
            &ta,
            &json!({"symbol": "BTCUSDT", "side": "buy", "type": "market", "qty": "0.001"}),
        );
        let pid = o["position_id"].clone();
        assert!(
            s.positions(a, &ta).iter().any(|p| p["id"] == pid),
            "round {i}: new position not visible"
        );
        wallet -= raw(&o["fee"]);
        assert_eq!(raw(&s.balance(a, &ta)["wallet"]), wallet, "round {i}: fee");

        // orders after placing and after cancelling a resting limit
        let lo = s.order(
            a,
            &ta,
            &json!({"symbol": "BTCUSDT", "side": "buy", "type": "limit", "qty": "0.001", "price": "1000"}),
        );
        assert!(s.orders(a, &ta).iter().any(|x| x["id"] == lo["id"]));
        assert_eq!(
            ok(&s.get(&format!("{ua}/orders/{}", lo["id"]), Some(&ta)), 200)["status"],
            "pending"
        );
        assert!(raw(&s.balance(a, &ta)["order_reserved"]) > 0);
        ok(
            &s.delete(&format!("{ua}/orders/{}", lo["id"]), Some(&ta)),
            200,
        );
        assert!(
            !s.orders(a, &ta).iter().any(|x| x["id"] == lo["id"]),
            "round {i}: cancelled order still listed"
        );
        assert_eq!(
            ok(&s.get(&format!("{ua}/orders/{}", lo["id"]), Some(&ta)), 200)["status"],
            "cancelled"
        );
        dec(&s.balance(a, &ta)["order_reserved"], "0");

        // ticker, unrealized PnL after ticks
        let px = format!("{}", 30000 + 10 * (i + 1));
        s.tick("BTCUSDT", &px);
        dec(
            &ok(&s.get("/api/v1/market/BTCUSDT/ticker", Some(&ta)), 200)["last"],
            &px,
        );
        let pos = s.positions(a, &ta);
        let p = pos.iter().find(|p| p["id"] == pid).unwrap();
        let want_upnl = (raw(&json!(px)) - raw(&p["entry_price"])) / 1000;
        assert_eq!(raw(&p["unrealized_pnl"]), want_upnl, "round {i}: uPnL");

        // positions and trades after a close
        let tr = ok(
            &s.post(
                &format!("{ua}/positions/{pid}/close"),
                Some(&ta),
                &json!({}),
            ),
            200,
        );
        assert!(
            !s.positions(a, &ta).iter().any(|p| p["id"] == pid),
            "round {i}: closed position still listed"
        );
        let page = ok(&s.get(&format!("{ua}/trades?limit=1"), Some(&ta)), 200);
        assert_eq!(page["trades"][0]["id"], tr["id"], "round {i}: newest trade");
        assert_eq!(page["total"], i + 1);
        wallet += raw(&tr["pnl"]) + raw(&tr["open_fee"]);
        assert_eq!(
            raw(&s.balance(a, &ta)["wallet"]),
            wallet,
            "round {i}: close"
        );
        dec(&s.balance(a, &ta)["margin_used"], "0");

        // config, symbols, credentials, license
        let c = ok(
            &s.put(
                &format!("{ua}/config"),
                Some(&ta),
                &json!({"leverage": i + 1}),
            ),
            200,
        );
        assert_eq!(ok(&s.get(&format!("{ua}/config"), Some(&ta)), 200), c);
        let spec = ok(
            &s.put(
                "/api/v1/symbols/SOLUSDT",
                Some(ADMIN),
                &json!({"max_leverage": 10 + i}),
            ),
            200,
        );
        let sy = ok(&s.get("/api/v1/symbols", Some(&ta)), 200);
        let listed = sy["symbols"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["symbol"] == "SOLUSDT")
            .cloned();
        assert_eq!(listed, Some(spec), "round {i}: symbol spec");
        let key = format!("KEY-{i:04}-abcdefghijkl");
        let _ = s.get(&format!("{ua}/credentials/okx"), Some(&ta));
        let cr = ok(
            &s.put(
                &format!("{ua}/credentials/okx"),
                Some(&ta),
                &json!({"api_key": key, "api_secret": SECRET}),
            ),
            200,
        );
        assert_eq!(
            ok(&s.get(&format!("{ua}/credentials/okx"), Some(&ta)), 200),
            cr
        );
        let code = format!("C{i}");
        ok(
            &s.post(
                "/api/v1/promo-codes",
                Some(ADMIN),
                &json!({"code": code, "license_type": "pro", "days": 1, "max_uses": 1}),
            ),
            201,
        );
        let _ = s.get(&format!("{ua}/license"), Some(&ta));
        let l = ok(
            &s.post(&format!("{ua}/redeem"), Some(&ta), &json!({"code": code})),
            200,
        );
        assert_eq!(ok(&s.get(&format!("{ua}/license"), Some(&ta)), 200), l);
    }
    s.assert_clean();
}

// =============================================================================================
// graceful shutdown, the database lock, restart, the chat REPL

fn wal_len(db: &Path) -> Option<u64> {
    let wal = PathBuf::from(format!("{}-wal", db.display()));
    std::fs::metadata(wal).ok().map(|m| m.len())
}

#[test]
fn sigterm_checkpoints_restart_sees_everything_and_chat_works() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let mut s = Server::start(&db);
    let (a, ta) = s.create_user("alice");
    assert_eq!(a, 1, "first user of a fresh database");
    s.deposit(a, &ta, "5000");
    s.tick("BTCUSDT", "30000");
    s.order(
        a,
        &ta,
        &json!({"symbol": "BTCUSDT", "side": "buy", "type": "market", "qty": "0.01", "leverage": 5}),
    );
    let lo = s.order(
        a,
        &ta,
        &json!({"symbol": "BTCUSDT", "side": "sell", "type": "limit", "qty": "0.002", "price": "35000"}),
    );
    let o2 = s.order(
        a,
        &ta,
        &json!({"symbol": "BTCUSDT", "side": "sell", "type": "market", "qty": "0.003"}),
    );
    ok(
        &s.post(
            &format!("/api/v1/users/{a}/positions/{}/close", o2["position_id"]),
            Some(&ta),
            &json!({}),
        ),
        200,
    );
    let before = s.snapshot(a, &ta);

    // a second server on the same database fails fast with a clear message
    let port = free_port();
    let (st, _out, errtxt) = run_cli(
        &[
            "serve",
            "--db",
            db.to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{port}"),
        ],
        "",
        Duration::from_secs(20),
    );
    assert!(!st.success(), "a second serve on a served db started");
    let low = errtxt.to_lowercase();
    assert!(
        low.contains("lock") || low.contains("another"),
        "second serve's error does not mention the lock: {errtxt}"
    );
    assert!(!low.contains("panicked"), "{errtxt}");
    // and the first one is unharmed
    assert_eq!(s.snapshot(a, &ta), before);
    s.assert_clean();

    // SIGTERM: exit 0 within 10 s, WAL checkpointed
    let st = s.terminate();
    assert!(
        st.success(),
        "serve exited with {st} after SIGTERM: {}",
        s.stderr_text()
    );
    let wal = wal_len(&db);
    assert!(
        wal.is_none_or(|n| n == 0),
        "WAL not checkpointed: {wal:?} bytes"
    );
    assert!(
        !s.stderr_text().to_lowercase().contains("panicked"),
        "{}",
        s.stderr_text()
    );
    drop(s);

    // a restart sees everything; the user token still works
    let mut s2 = Server::start(&db);
    assert_eq!(s2.snapshot(a, &ta), before, "state after restart");
    assert_eq!(s2.orders(a, &ta)[0]["id"], lo["id"]);
    let st = s2.terminate();
    assert!(st.success(), "second SIGTERM exit: {st}");
    drop(s2);

    // the chat REPL on the stopped server's database
    let wallet = before["demo"]["wallet"].as_str().unwrap().to_string();
    let (st, out, errtxt) = run_cli(
        &["chat", "--db", db.to_str().unwrap(), "--user", "1"],
        // a line that is not UTF-8 is answered like any other text, and the session goes on
        b"/balance\n\xff\xfe\n/buy BTCUSDT 0.001\n/positions\n/nonsense\n",
        Duration::from_secs(60),
    );
    assert!(st.success(), "chat exited with {st}: {errtxt}\n{out}");
    assert!(out.contains("Balance"), "no balance in chat output:\n{out}");
    assert!(
        out.contains(&format!("Wallet: {wallet}")),
        "wallet {wallet} not in chat output:\n{out}"
    );
    assert!(
        out.contains("filled: bought 0.001 BTCUSDT at 30000"),
        "no fill in chat output:\n{out}"
    );
    assert!(
        out.contains("Open positions (2)") && out.contains("BTCUSDT long 0.001 @ 30000"),
        "positions not in chat output:\n{out}"
    );
    assert!(
        out.contains("Commands start with '/'") && out.contains("Unknown command"),
        "the bad bytes and /nonsense are each answered:\n{out}"
    );
    assert!(!errtxt.to_lowercase().contains("panicked"), "{errtxt}");

    // and the chat's order is in the database the next server reads
    let s3 = Server::start(&db);
    assert_eq!(s3.positions(a, &ta).len(), 2);
    s3.assert_clean();
}

// =============================================================================================
// command-line user errors

#[track_caller]
fn assert_one_clear_line(args: &[&str], st: ExitStatus, errtxt: &str, mention: &[&str]) {
    assert!(!st.success(), "{args:?} succeeded");
    let low = errtxt.to_lowercase();
    for bad in ["panicked", "backtrace", "rust_backtrace"] {
        assert!(!low.contains(bad), "{args:?}: stderr has {bad:?}: {errtxt}");
    }
    // a slow-query warning depends on how busy the machine is (a read that takes 4 ms can take
    // 60 ms on a loaded CI runner), not on the error being checked
    let lines: Vec<&str> = errtxt
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.contains("slow query"))
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "{args:?}: not one line of error: {errtxt:?}"
    );
    assert!(
        mention.iter().any(|m| low.contains(m)),
        "{args:?}: the error mentions none of {mention:?}: {errtxt}"
    );
}

#[test]
fn cli_user_errors_print_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let t = Duration::from_secs(30);
    let port = format!("127.0.0.1:{}", free_port());

    let args = [
        "serve",
        "--db",
        "/nonexistent/dir/x.db",
        "--listen",
        port.as_str(),
    ];
    let (st, _, e) = run_cli(&args, "", t);
    assert_one_clear_line(&args, st, &e, &["/nonexistent/dir/x.db"]);

    let missing = dir.path().join("missing.db");
    let args = ["optimize", "--db", missing.to_str().unwrap()];
    let (st, _, e) = run_cli(&args, "", t);
    assert_one_clear_line(&args, st, &e, &["does not exist", "missing.db"]);
    assert!(!missing.exists(), "optimize created the missing database");
    // an empty file is not made into a database, and nothing is left beside it
    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    let args = ["optimize", "--db", empty.to_str().unwrap()];
    let (st, _, e) = run_cli(&args, "", t);
    assert_one_clear_line(&args, st, &e, &["nothing to optimize"]);
    assert_eq!(
        std::fs::metadata(&empty).unwrap().len(),
        0,
        "optimize wrote to it"
    );
    let beside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|d| d.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("empty.db"))
        .collect();
    assert_eq!(
        beside,
        ["empty.db"],
        "optimize left files beside an empty one"
    );

    let to = dir.path().join("copy.db");
    let args = [
        "backup",
        "--db",
        missing.to_str().unwrap(),
        "--to",
        to.to_str().unwrap(),
    ];
    let (st, _, e) = run_cli(&args, "", t);
    assert_one_clear_line(&args, st, &e, &["does not exist", "missing.db"]);
    // a file that is not SQLite: named as such, not an "internal error", and no copy is left
    let garbage = dir.path().join("garbage.db");
    std::fs::write(
        &garbage,
        "this is not a database, it is only some text\n".repeat(200),
    )
    .unwrap();
    // backup and optimize each say so in one line, without repeating SQLite's message
    let g = garbage.to_str().unwrap();
    for args in [
        vec!["backup", "--db", g, "--to", to.to_str().unwrap()],
        vec!["optimize", "--db", g],
    ] {
        let (st, _, e) = run_cli(&args, "", t);
        assert_one_clear_line(
            &args,
            st,
            &e,
            &["not a usable SQLite database", "garbage.db"],
        );
        assert!(!e.contains("internal"), "{e}");
        assert_eq!(e.matches("not a database").count(), 1, "{e}");
    }
    assert!(!to.exists());

    // a usage error is not exit 2, which optimize keeps for a damaged database
    let (st, _, e) = run_cli(&["optimize", "--bogus"], "", t);
    assert_eq!(st.code(), Some(64), "{e}");
    // seed needs someone to hold its positions and orders
    let none = dir.path().join("none.db");
    let (st, _, e) = run_cli(
        &["seed", "--db", none.to_str().unwrap(), "--users", "0"],
        "",
        t,
    );
    assert_eq!(st.code(), Some(64), "{e}");
    assert!(e.contains("--users") && !none.exists(), "{e}");
    // every bad flag value is a usage error, checked before any file is made
    for args in [
        vec!["demo", "--tick-ms", "5"],
        vec!["demo", "--tick-ms", "0"],
        vec!["demo", "--duration", "0"],
        vec!["replay", "--file", "x.json", "--speed", "0"],
        vec!["replay", "--file", "x.json", "--speed", "nan"],
        vec!["replay", "--file", "x.json", "--speed", "inf"],
        vec!["replay", "--file", "x.json", "--speed", "fast"],
    ] {
        let mut args = args;
        args.extend(["--db", none.to_str().unwrap()]);
        let (st, _, e) = run_cli(&args, "", t);
        assert_eq!(st.code(), Some(64), "{args:?}: {e}");
        assert!(!none.exists(), "{args:?}: {e}");
    }
    let (st, out, _) = run_cli(&["optimize", "--help"], "", t);
    assert!(st.success() && out.contains("--vacuum"), "{out}");

    // a setting beyond what can work is refused by name before any file exists (SQLite
    // cannot hold this busy timeout: it used to panic after creating the database)
    let huge = dir.path().join("huge.toml");
    std::fs::write(&huge, "[store]\nbusy_timeout_ms = 2147483648\n").unwrap();
    let never = dir.path().join("never.db");
    let args = [
        "serve",
        "--db",
        never.to_str().unwrap(),
        "--config",
        huge.to_str().unwrap(),
    ];
    let (st, _, e) = run_cli(&args, "", t);
    assert_one_clear_line(&args, st, &e, &["store.busy_timeout_ms"]);
    assert!(!never.exists(), "{e}");

    let fresh = dir.path().join("fresh.db");
    let args = ["chat", "--db", fresh.to_str().unwrap(), "--user", "999"];
    let (st, _, e) = run_cli(&args, "/balance\n", t);
    assert_one_clear_line(&args, st, &e, &["does not exist", "fresh.db"]);

    // the address is bound before the database is opened: nothing is left behind
    let args = [
        "serve",
        "--db",
        fresh.to_str().unwrap(),
        "--listen",
        "not-an-address",
    ];
    let (st, _, e) = run_cli(&args, "", t);
    assert_one_clear_line(&args, st, &e, &["not-an-address", "listen"]);
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with("fresh.db"))
        .collect();
    assert!(left.is_empty(), "a failed start left {left:?}");

    let (st, _, e) = run_cli(
        &["seed", "--db", fresh.to_str().unwrap(), "--users", "1"],
        "",
        t,
    );
    assert!(st.success(), "seed: {e}");
    // the demo's feed would trade the seeded users' positions: it wants its own file
    let port = format!("127.0.0.1:{}", free_port());
    let args = [
        "demo",
        "--db",
        fresh.to_str().unwrap(),
        "--listen",
        &port,
        "--duration",
        "1",
    ];
    let beside = || {
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("fresh.db"))
            .collect();
        names.sort();
        names
    };
    let before = beside();
    let (st, _, e) = run_cli(&args, "", t);
    assert_one_clear_line(&args, st, &e, &["not the demo's", "--db demo.db"]);
    // and the refused start leaves the files as it found them: no new key or WAL beside them
    assert_eq!(
        beside(),
        before,
        "a refused demo left files beside its database"
    );
    // so is the demo's own file once someone else's user joined it
    let demo_db = dir.path().join("demo.db");
    let mut args = args;
    args[2] = demo_db.to_str().unwrap();
    let (st, _, e) = run_cli(&args, "", t);
    assert!(st.success(), "demo: {e}");
    let c = rusqlite::Connection::open(&demo_db).unwrap();
    c.execute(
        "INSERT INTO users (id, name, token_hash, created_at) VALUES (7, 'alice', randomblob(32), 0)",
        [],
    )
    .unwrap();
    drop(c);
    let (st, _, e) = run_cli(&args, "", t);
    assert_one_clear_line(&args, st, &e, &["not the demo's", "user 7 is \"alice\""]);
    let args = ["chat", "--db", fresh.to_str().unwrap(), "--user", "999"];
    let (st, _, e) = run_cli(&args, "/balance\n", t);
    assert_one_clear_line(&args, st, &e, &["999", "not found"]);
}

/// `seed` writes rows behind a server's back, so it refuses while one runs. A backup taken while
/// serving carries the key that seals stored credentials, so a server started on the copy can
/// still open them.
#[test]
fn seed_refuses_a_served_database_and_a_backup_keeps_the_credentials_key() {
    let dir = tempfile::tempdir().unwrap();
    let t = Duration::from_secs(60);
    let db = dir.path().join("t.db");
    let mut s = Server::start(&db);
    let (a, ta) = s.create_user("alice");
    let creds = format!("/api/v1/users/{a}/credentials/binance");
    let body = json!({"api_key": "AKIAEXAMPLE0XYZ", "api_secret": "s3cret-value"});
    ok(&s.put(&creds, Some(&ta), &body), 200);

    let dbs = db.to_str().unwrap();
    let args = ["seed", "--db", dbs, "--users", "3"];
    let (st, _, e) = run_cli(&args, "", t);
    assert_one_clear_line(&args, st, &e, &["another litetrade process"]);
    // before, the seeded ids collided with the server's next user (500)
    s.create_user("bob");

    let copy = dir.path().join("copy.db");
    let args = ["backup", "--db", dbs, "--to", copy.to_str().unwrap()];
    let (st, out, e) = run_cli(&args, "", t);
    assert!(st.success(), "backup: {e}");
    let key = dir.path().join("copy.db.key");
    assert!(out.contains("copy.db.key"), "{out}");
    #[cfg(unix)]
    for f in [&copy, &key] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(f).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", f.display());
    }
    let (st, _, e) = run_cli(&args, "", t);
    assert_one_clear_line(&args, st, &e, &["already exist"]);
    // both targets are in the way, and the error names both
    let both = format!("{} and {} already exist", copy.display(), key.display());
    assert!(e.contains(&both), "{e}");
    // a key already at the destination stops the backup before it writes anything
    let copy2 = dir.path().join("copy2.db");
    std::fs::write(dir.path().join("copy2.db.key"), "older key").unwrap();
    let args = ["backup", "--db", dbs, "--to", copy2.to_str().unwrap()];
    let (st, _, e) = run_cli(&args, "", t);
    assert_one_clear_line(&args, st, &e, &["copy2.db.key", "already exists"]);
    assert!(!copy2.exists());
    assert!(s.terminate().success());

    let s2 = Server::start(&copy);
    let c = ok(&s2.get(&creds, Some(&ta)), 200);
    assert_eq!(c["exchange"], "binance", "{c}");
}

/// RELIABILITY finding 17: a backup copied by hand over a database whose `-wal` still held
/// frames came up corrupt (or silently undid the restore), and nothing refused a copy made
/// under a running server.
#[test]
fn restore_puts_a_backup_in_place_and_keeps_the_database_it_replaces() {
    let dir = tempfile::tempdir().unwrap();
    let t = Duration::from_secs(60);
    let db = dir.path().join("t.db");
    let dbs = db.to_str().unwrap();
    let s = Server::start(&db);
    let (a, ta) = s.create_user("alice");
    let creds = format!("/api/v1/users/{a}/credentials/binance");
    let body = json!({"api_key": "AKIAEXAMPLE0XYZ", "api_secret": "s3cret-value"});
    ok(&s.put(&creds, Some(&ta), &body), 200);
    let copy = dir.path().join("copy.db");
    let copys = copy.to_str().unwrap();
    let (st, _, e) = run_cli(&["backup", "--db", dbs, "--to", copys], "", t);
    assert!(st.success(), "backup: {e}");
    let later: Vec<i64> = (0..40).map(|i| s.create_user(&format!("b{i}")).0).collect();

    // refused while the server runs, and nothing changes
    let args = ["restore", "--db", dbs, "--from", copys];
    let (st, _, e) = run_cli(&args, "", t);
    assert_one_clear_line(&args, st, &e, &["another litetrade process"]);
    ok(
        &s.get(&format!("/api/v1/users/{}", later[39]), Some(ADMIN)),
        200,
    );
    // killed, so that the WAL still holds the later users' frames
    drop(s);
    let wal = dir.path().join("t.db-wal");
    assert!(std::fs::metadata(&wal).unwrap().len() > 0);
    // a WAL whose database is gone would be replayed into the restored file: refused
    let away = dir.path().join("away.db");
    std::fs::rename(&db, &away).unwrap();
    let (st, _, e) = run_cli(&args, "", t);
    assert_one_clear_line(&args, st, &e, &["t.db-wal", "no longer there"]);
    assert!(!db.exists());
    std::fs::rename(&away, &db).unwrap();
    // the replaced database's key is kept with it, and the backup's takes its place
    let key = dir.path().join("t.db.key");
    let backup_key = std::fs::read(dir.path().join("copy.db.key")).unwrap();
    std::fs::write(&key, "a key the old database had").unwrap();

    let (st, out, e) = run_cli(&args, "", t);
    assert!(st.success(), "restore: {e}");
    assert!(out.contains("t.db.before-restore"), "{out}");
    assert_eq!(std::fs::read(&key).unwrap(), backup_key);
    assert_eq!(
        std::fs::read(dir.path().join("t.db.before-restore.key")).unwrap(),
        b"a key the old database had"
    );
    assert!(!wal.exists() || std::fs::metadata(&wal).unwrap().len() == 0);
    // the backup is left as it was found: no -wal or -shm of its own beside it
    assert!(!dir.path().join("copy.db-wal").exists());

    let mut s = Server::start(&db);
    ok(
        &s.get(&format!("/api/v1/users/{a}/balance"), Some(&ta)),
        200,
    );
    assert_eq!(ok(&s.get(&creds, Some(&ta)), 200)["exchange"], "binance");
    for u in [later[0], later[39]] {
        err(
            &s.get(&format!("/api/v1/users/{u}"), Some(ADMIN)),
            404,
            "not_found",
        );
    }
    // the venue goes on from the backup: the next user takes the next id after alice
    let (next, _) = s.create_user("carol");
    assert_eq!(next, a + 1);
    assert!(s.terminate().success());

    // the replaced database, with its WAL, holds every user it had
    let kept = dir.path().join("t.db.before-restore");
    let users: i64 = rusqlite::Connection::open(&kept)
        .unwrap()
        .query_row("SELECT count(*) FROM users", [], |r| r.get(0))
        .unwrap();
    assert_eq!(users, 41);
    // a second restore would bury it: refused until it is moved away
    let (st, _, e) = run_cli(&args, "", t);
    assert_one_clear_line(&args, st, &e, &["before-restore", "in the way"]);
    // the database itself is no backup of itself
    std::fs::remove_file(&kept).unwrap();
    let _ = std::fs::remove_file(dir.path().join("t.db.before-restore.key"));
    let selfish = ["restore", "--db", dbs, "--from", dbs];
    let (st, _, e) = run_cli(&selfish, "", t);
    assert_one_clear_line(&selfish, st, &e, &["not a backup"]);
    // nor is a file that is not a litetrade database; neither refusal touched the database
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, "not a database\n".repeat(100)).unwrap();
    let junky = ["restore", "--db", dbs, "--from", junk.to_str().unwrap()];
    let (st, _, e) = run_cli(&junky, "", t);
    assert_one_clear_line(&junky, st, &e, &["junk.db"]);
    assert!(!kept.exists());
    let s = Server::start(&db);
    ok(&s.get(&format!("/api/v1/users/{next}"), Some(ADMIN)), 200);
}

/// A closed terminal or a service manager's reload sends SIGHUP, whose default action ends
/// the process abruptly: `serve` stops on it as cleanly as on SIGTERM.
#[test]
fn a_hangup_stops_the_server_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let mut s = Server::start_with_env(&db, &[], &[("LITETRADE_LOG", "info")]);
    let (a, ta) = s.create_user("alice");
    s.deposit(a, &ta, "100");
    let st = s.serve.stop_with("HUP");
    assert!(st.success(), "{st}: {}", s.stderr_text());
    assert!(
        s.stderr_text().contains("stopped cleanly"),
        "{}",
        s.stderr_text()
    );
    let wal = dir.path().join("t.db-wal");
    assert!(!wal.exists() || std::fs::metadata(&wal).unwrap().len() == 0);
}

#[test]
fn tick_effects_are_visible_to_the_next_read() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("t.db"));
    let (a, ta) = s.create_user("alice");
    let ua = format!("/api/v1/users/{a}");
    s.deposit(a, &ta, "10000");
    s.tick("BTCUSDT", "30000");
    // a resting buy, and a long with sl and tp
    let lo = s.order(
        a,
        &ta,
        &json!({"symbol": "BTCUSDT", "side": "buy", "type": "limit", "qty": "0.01", "price": "29000"}),
    );
    let lp = s.order(
        a,
        &ta,
        &json!({"symbol": "BTCUSDT", "side": "buy", "type": "market", "qty": "0.01", "sl": "28000", "tp": "32000"}),
    );
    let warm = || {
        let _ = s.balance(a, &ta);
        let _ = s.positions(a, &ta);
        let _ = s.orders(a, &ta);
        let _ = ok(&s.get(&format!("{ua}/orders/{}", lo["id"]), Some(&ta)), 200);
        let _ = ok(&s.get(&format!("{ua}/trades"), Some(&ta)), 200);
        let _ = ok(&s.get("/api/v1/market/BTCUSDT/ticker", Some(&ta)), 200);
    };
    warm();
    dec(&s.balance(a, &ta)["order_reserved"], "290.1595");

    // the tick fills the resting limit at its price with the maker fee
    s.tick("BTCUSDT", "29000");
    assert!(s.orders(a, &ta).is_empty(), "filled order still listed");
    let o = ok(&s.get(&format!("{ua}/orders/{}", lo["id"]), Some(&ta)), 200);
    assert_eq!(o["status"], "filled");
    dec(&o["fill_price"], "29000");
    dec(&o["fee"], "0.058"); // 290 × 2 bps
    let ps = s.positions(a, &ta);
    assert_eq!(ps.len(), 2, "{ps:?}");
    assert!(ps.iter().any(|p| p["id"] == o["position_id"]));
    let b = s.balance(a, &ta);
    dec(&b["order_reserved"], "0");
    dec(&b["margin_used"], "590"); // 300 + 290 at leverage 1
    dec(&b["unrealized_pnl"], "-10");
    dec(
        &ok(&s.get("/api/v1/market/BTCUSDT/ticker", Some(&ta)), 200)["last"],
        "29000",
    );

    // the take profit closes the first long at its tp price
    warm();
    s.tick("BTCUSDT", "32500");
    let ps = s.positions(a, &ta);
    assert_eq!(ps.len(), 1, "{ps:?}");
    assert!(!ps.iter().any(|p| p["id"] == lp["position_id"]));
    let tr = ok(&s.get(&format!("{ua}/trades"), Some(&ta)), 200);
    assert_eq!(tr["total"], 1);
    assert_eq!(tr["trades"][0]["reason"], "take_profit");
    dec(&tr["trades"][0]["exit_price"], "32000");
    let b = s.balance(a, &ta);
    dec(&b["margin_used"], "290");
    dec(&b["unrealized_pnl"], "35"); // (32500 − 29000) × 0.01
    s.assert_clean();
}

#[test]
fn symbol_specs_are_fresh_after_put() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("t.db"));
    let (a, ta) = s.create_user("alice");
    // unknown before: reads must not keep that answer once the symbol exists
    err(
        &s.get("/api/v1/market/NEWUSDT/ticker", Some(&ta)),
        422,
        "unknown_symbol",
    );
    let first = ok(
        &s.put(
            "/api/v1/symbols/NEWUSDT",
            Some(ADMIN),
            &json!({"max_leverage": 20}),
        ),
        200,
    );
    assert_eq!(first["max_leverage"], 20);
    // a second partial PUT keeps what the first one set
    let second = ok(
        &s.put(
            "/api/v1/symbols/NEWUSDT",
            Some(ADMIN),
            &json!({"taker_fee_bps": "6"}),
        ),
        200,
    );
    assert_eq!(second["max_leverage"], 20, "{second}");
    dec(&second["taker_fee_bps"], "6");
    assert_eq!(
        ok(&s.get("/api/v1/market/NEWUSDT/ticker", Some(&ta)), 200),
        json!({"symbol": "NEWUSDT", "last": null, "ts": null})
    );
    s.tick("NEWUSDT", "5");
    dec(
        &ok(&s.get("/api/v1/market/NEWUSDT/ticker", Some(&ta)), 200)["last"],
        "5",
    );
    s.deposit(a, &ta, "100");
    let o = s.order(
        a,
        &ta,
        &json!({"symbol": "NEWUSDT", "side": "buy", "type": "market", "qty": "1", "leverage": 20}),
    );
    dec(&o["fee"], "0.003"); // 5 × 6 bps
    err(
        &s.post(
            &format!("/api/v1/users/{a}/orders"),
            Some(&ta),
            &json!({"symbol": "NEWUSDT", "side": "buy", "type": "market", "qty": "1", "leverage": 21}),
        ),
        422,
        "invalid_request",
    );
    s.assert_clean();
}

#[test]
fn concurrent_requests_keep_the_invariants() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("t.db"));
    s.tick("BTCUSDT", "30000");

    // a code with max_uses 5, redeemed by 12 users at once: exactly 5 succeed
    ok(
        &s.post(
            "/api/v1/promo-codes",
            Some(ADMIN),
            &json!({"code": "RUSH", "license_type": "pro", "days": 1, "max_uses": 5}),
        ),
        201,
    );
    let users: Vec<(i64, String)> = (0..12).map(|i| s.create_user(&format!("u{i}"))).collect();
    let statuses: Vec<Resp> = std::thread::scope(|sc| {
        let hs: Vec<_> = users
            .iter()
            .map(|(id, tok)| {
                let s = &s;
                sc.spawn(move || {
                    s.post(
                        &format!("/api/v1/users/{id}/redeem"),
                        Some(tok),
                        &json!({"code": "RUSH"}),
                    )
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let won = statuses.iter().filter(|r| r.status == 200).count();
    assert_eq!(won, 5, "redemptions of a 5-use code");
    for r in statuses.iter().filter(|r| r.status != 200) {
        err(r, 409, "promo_invalid");
    }

    // ten orders at once on a balance that covers three
    let (a, ta) = &users[0];
    let a = *a;
    s.deposit(a, ta, "1000");
    let rs: Vec<Resp> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..10)
            .map(|_| {
                let s = &s;
                sc.spawn(move || {
                    s.post(
                        &format!("/api/v1/users/{a}/orders"),
                        Some(ta),
                        &json!({"symbol": "BTCUSDT", "side": "buy", "type": "market", "qty": "0.01"}),
                    )
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(rs.iter().filter(|r| r.status == 201).count(), 3);
    for r in rs.iter().filter(|r| r.status != 201) {
        err(r, 409, "insufficient_balance");
    }
    let b = s.balance(a, ta);
    dec(&b["available"], "99.505"); // 1000 − 3 × (300 + 0.165)
    dec(&b["margin_used"], "900");
    assert_eq!(s.positions(a, ta).len(), 3);

    // one client_order_id sent eight times at once: one order, seven answers marked replays
    let (c, tc) = &users[1];
    let c = *c;
    s.deposit(c, tc, "1000");
    let rs: Vec<Resp> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..8)
            .map(|_| {
                let s = &s;
                sc.spawn(move || {
                    s.post(
                        &format!("/api/v1/users/{c}/orders"),
                        Some(tc),
                        &json!({"symbol": "BTCUSDT", "side": "sell", "type": "market",
                                "qty": "0.001", "client_order_id": "once"}),
                    )
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let replays = rs
        .iter()
        .filter(|r| r.header("idempotent-replayed") == Some("true"))
        .count();
    assert_eq!(replays, 7);
    let rs: Vec<Value> = rs.iter().map(|r| ok(r, 201)).collect();
    assert!(rs.iter().all(|o| o["id"] == rs[0]["id"]), "{rs:?}");
    assert_eq!(s.positions(c, tc).len(), 1);
    s.assert_clean();
}

/// Sends a request and reports a dropped connection or a 5xx as an error string.
fn answered(s: &Server, method: &str, path: &str, tok: &str, body: &str) -> Result<Resp, String> {
    match http(&s.addr, method, path, Some(tok), Some(body.as_bytes()), &[]) {
        Ok(r) if r.status >= 500 => Err(format!("{method} {path}: {} {}", r.status, r.text())),
        Ok(r) => Ok(r),
        Err(e) => Err(format!("{method} {path}: no answer ({e})")),
    }
}

#[test]
fn deposits_beyond_the_representable_wallet_are_refused_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("t.db"));
    let (a, ta) = s.create_user("alice");
    let (b, tb) = s.create_user("bob");
    let dep = format!("/api/v1/users/{a}/deposit");
    let mut refused = 0;
    for _ in 0..95 {
        // a user may deposit demo funds to itself: 93 × 1e9 exceed what a wallet can hold
        let r = answered(&s, "POST", &dep, &ta, r#"{"amount":"1000000000"}"#).unwrap();
        if r.status != 200 {
            err_shape(&r, "invalid_request");
            refused += 1;
        }
    }
    assert!(refused > 0, "95e9 USDT credited to one wallet");
    let r = answered(
        &s,
        "POST",
        &format!("/api/v1/users/{b}/deposit"),
        &tb,
        r#"{"amount":"1"}"#,
    )
    .unwrap();
    assert_eq!(
        r.status,
        200,
        "the venue stopped taking writes: {}",
        r.text()
    );
}

#[test]
fn a_huge_price_move_neither_drops_reads_nor_stops_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("t.db"));
    let (a, ta) = s.create_user("alice");
    s.deposit(a, &ta, "1000000000");
    s.tick("BTCUSDT", "1");
    let o = s.order(
        a,
        &ta,
        &json!({"symbol": "BTCUSDT", "side": "buy", "type": "market", "qty": "100000000"}),
    );
    s.tick("BTCUSDT", "10000000");
    let mut failures = Vec::new();
    let ua = format!("/api/v1/users/{a}");
    for (m, p, body) in [
        ("GET", format!("{ua}/balance"), ""),
        ("GET", format!("{ua}/positions"), ""),
        (
            "POST",
            format!("{ua}/positions/{}/close", o["position_id"]),
            "{}",
        ),
        ("POST", format!("{ua}/deposit"), r#"{"amount":"1"}"#),
    ] {
        if let Err(e) = answered(&s, m, &p, &ta, body) {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Output piped into something that stops reading (`litetrade demo | head -3`) ends the
/// demo's printing, not the process: no panic, and it still stops cleanly.
#[test]
fn demo_piped_into_head_does_not_panic() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("demo.db");
    let mut child = litetrade()
        .args(["demo", "--duration", "6", "--listen"])
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--db")
        .arg(&db)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert!(first.contains("litetrade demo"), "{first}");
    drop(out); // the reader goes away, like `head` after its lines
    let (status, err) = common::finish(&mut child, Duration::from_secs(60));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// `LITETRADE_DB`, `LITETRADE_LISTEN` and `LITETRADE_CONFIG` stand in for their flags; a flag
/// beats its variable, and an empty variable counts as unset (not as a flag without a value).
#[test]
fn the_common_variables_mirror_their_flags_and_an_empty_one_is_unset() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("env.db");
    let run = |args: &[&str], env: &[(&str, &std::ffi::OsStr)]| {
        let out = litetrade()
            .args(args)
            .envs(env.iter().copied())
            .current_dir(dir.path())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code(), err)
    };
    let seed = ["seed", "--users", "2", "--trades-per-user", "1"];
    let (code, err) = run(&seed, &[("LITETRADE_DB", db.as_os_str())]);
    assert_eq!(code, Some(0), "{err}");
    assert!(db.exists(), "LITETRADE_DB named the file");
    // empty: the default ./litetrade.db, which does not exist here
    let (code, err) = run(&["optimize"], &[("LITETRADE_DB", "".as_ref())]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("litetrade.db does not exist"), "{err}");
    // the flag wins
    let missing = dir.path().join("missing.db");
    let (code, err) = run(
        &["optimize", "--db", db.to_str().unwrap()],
        &[("LITETRADE_DB", missing.as_os_str())],
    );
    assert_eq!(code, Some(0), "{err}");
    // a config file named by the variable is read (this one is refused, naming its key)
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "body_limit = 10\n").unwrap();
    let args = ["optimize", "--db", db.to_str().unwrap()];
    let (code, err) = run(&args, &[("LITETRADE_CONFIG", bad.as_os_str())]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("body_limit"), "{err}");
    let (code, err) = run(&args, &[("LITETRADE_CONFIG", "".as_ref())]);
    assert_eq!(code, Some(0), "{err}");
    // serve listens where LITETRADE_LISTEN says
    let addr = format!("127.0.0.1:{}", free_port());
    let mut child = litetrade()
        .args(["serve", "--db", db.to_str().unwrap()])
        .env("LITETRADE_LISTEN", &addr)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let answered = loop {
        if let Ok(r) = http(&addr, "GET", "/api/v1/health", None, None, &[]) {
            break r.status;
        }
        assert!(Instant::now() < deadline, "serve did not listen on {addr}");
        std::thread::sleep(Duration::from_millis(25));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(answered, 200);
}

/// `litetrade bench --quick --json` (issue 6's command) runs every scenario and reports
/// well-formed figures; the checks that can fail are about correctness, never about speed:
/// every listener got every fan-out event, concurrent misses on one key ran one load, and a
/// mistyped scenario is a usage error before anything is built.
#[test]
fn bench_quick_reports_every_scenario_and_its_correctness_checks() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("bench");
    let t = Duration::from_secs(240);
    let (st, _, e) = run_cli(
        &[
            "bench",
            "--scenario",
            "tickz",
            "--dir",
            work.to_str().unwrap(),
        ],
        "",
        t,
    );
    assert_eq!(st.code(), Some(64), "{e}");
    assert!(e.contains("ticks") && !work.exists(), "{e}");

    let (st, out, e) = run_cli(
        &[
            "bench",
            "--quick",
            "--json",
            "--dir",
            work.to_str().unwrap(),
        ],
        "",
        t,
    );
    assert!(st.success(), "{e}");
    // progress goes to stderr, one line per phase; stdout is the JSON alone
    assert!(
        e.contains("bench: reads") && e.contains("bench: http"),
        "{e}"
    );
    let v: Value = serde_json::from_str(&out).expect("bench --json prints one JSON document");
    let rows = v["rows"].as_array().unwrap();
    for s in [
        "reads",
        "hot queries",
        "orders",
        "ticks",
        "startup",
        "fanout",
        "http",
    ] {
        assert!(rows.iter().any(|r| r["scenario"] == s), "no {s} row: {out}");
    }
    let metric = |prefix: &str| -> &Value {
        rows.iter()
            .find(|r| r["metric"].as_str().unwrap().starts_with(prefix))
            .unwrap_or_else(|| panic!("no row {prefix}: {out}"))
    };
    for r in rows {
        if let (Some(m), Some(p)) = (r["median_us"].as_f64(), r["p99_us"].as_f64()) {
            assert!(m > 0.0 && p >= m, "{r}");
        }
        if let Some(n) = r["per_sec"].as_f64() {
            assert!(n > 0.0, "{r}");
        }
    }
    assert!(v["peak_rss_mib"].as_f64().unwrap() > 0.0, "{out}");
    // every event of every listening follower arrived, none lagged
    let note = metric("the same, ")["note"].as_str().unwrap();
    let words: Vec<&str> = note.split_whitespace().collect();
    assert_eq!(words.get(1), Some(&"of"), "{note}");
    assert_eq!(words[0], words[2], "{note}");
    assert!(
        words[0].parse::<u64>().unwrap() > 0 && note.contains(" 0 lagged"),
        "{note}"
    );
    // a thousand concurrent misses on one cache key ran its load once
    assert_eq!(
        metric("1,000 concurrent misses")["note"],
        "1 load(s) ran",
        "{out}"
    );
    // the three tick sizes of the quick run, each with a rate
    let ticks = rows.iter().filter(|r| r["scenario"] == "ticks").count();
    assert!(ticks >= 4, "{out}");
    // one scenario alone runs only that scenario
    let (st, out, e) = run_cli(
        &[
            "bench",
            "--quick",
            "--json",
            "--scenario",
            "startup",
            "--dir",
            work.to_str().unwrap(),
        ],
        "",
        t,
    );
    assert!(st.success(), "{e}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let names: Vec<&str> = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["scenario"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["startup"], "{out}");
}

/// `GET /users?telegram_id=` (admin) finds every user created with that Telegram id, oldest
/// first, as `GET /users/{id}` shows them (no token), so that a bot that lost the ids it stored
/// finds its users again. A user token is refused, and so is a malformed query.
#[test]
fn users_are_found_by_telegram_id() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("t.db"));
    let make = |name: &str, tg: Option<i64>| {
        ok(
            &s.post(
                "/api/v1/users",
                Some(ADMIN),
                &json!({"name": name, "telegram_id": tg}),
            ),
            201,
        )
    };
    let alice = make("alice", Some(111));
    let bob = make("bob", Some(222));
    let again = make("alice again", Some(111));
    make("carol", None);
    let found = ok(&s.get("/api/v1/users?telegram_id=111", Some(ADMIN)), 200);
    keys(&found, &["users"]);
    let users = found["users"].as_array().unwrap();
    assert_eq!(users.len(), 2, "{found}");
    for (u, made) in users.iter().zip([&alice, &again]) {
        assert_eq!(
            u,
            &ok(
                &s.get(&format!("/api/v1/users/{}", made["id"]), Some(ADMIN)),
                200
            )
        );
    }
    assert_eq!(
        ok(&s.get("/api/v1/users?telegram_id=999", Some(ADMIN)), 200),
        json!({"users": []})
    );
    let bob_token = bob["token"].as_str().unwrap();
    err(
        &s.get("/api/v1/users?telegram_id=222", Some(bob_token)),
        403,
        "forbidden",
    );
    err(
        &s.get("/api/v1/users?telegram_id=111", None),
        401,
        "unauthorized",
    );
    for q in ["", "?telegram_id=x", "?telegram_id=111&x=2", "?id=1"] {
        err(
            &s.get(&format!("/api/v1/users{q}"), Some(ADMIN)),
            400,
            "invalid_request",
        );
    }
    s.assert_clean();
}
