//! Security checks as tests (issue 7, part 6):
//! - no token, secret or API key ever appears in the logs (debug level) or in the database file;
//! - the key file and the admin-token file are mode 0600;
//! - a user token reaches no other user's data through any route of the OpenAPI document, and
//!   no admin-only route;
//! - every SQL statement in `src/` is parameterized: string-built SQL is found by a scan, with
//!   an explicit allow-list of the few places that splice compile-time constants.

use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const API_KEY: &str = "AKIA-LITETRADE-KEY-7d41c9e2b8a3";
const API_SECRET: &str = "SECRET-litetrade-5a9f3e1c7b0d-do-not-log";

mod common;
use common::{Serve, http};

/// Starts `litetrade serve` on `db` with `env` (see `common::Serve`).
fn start_server(db: &Path, env: &[(&str, &str)]) -> Serve {
    Serve::start(db, |c| {
        c.envs(env.iter().copied());
    })
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

fn beside(db: &Path, suffix: &str) -> PathBuf {
    PathBuf::from(format!("{}.{suffix}", db.display()))
}

/// The database file and its WAL and shared-memory files, as bytes.
fn db_bytes(db: &Path) -> Vec<(String, Vec<u8>)> {
    ["", "-wal", "-shm"]
        .iter()
        .filter_map(|sfx| {
            let p = PathBuf::from(format!("{}{sfx}", db.display()));
            std::fs::read(&p).ok().map(|b| (p.display().to_string(), b))
        })
        .collect()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

// =============================================================================================
// secrets in logs and files

#[test]
fn no_token_key_or_secret_in_logs_or_in_the_database_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sec.db");
    // no LITETRADE_ADMIN_TOKEN and no LITETRADE_SECRET_KEY: both files are created
    let mut s = start_server(&db, &[("LITETRADE_LOG", "debug")]);
    let admin_file = beside(&db, "admin-token");
    let key_file = beside(&db, "key");
    let admin = std::fs::read_to_string(&admin_file)
        .unwrap()
        .trim()
        .to_string();
    let key_hex = std::fs::read_to_string(&key_file)
        .unwrap()
        .trim()
        .to_string();
    assert!(
        admin.len() >= 32,
        "admin token too short: {} chars",
        admin.len()
    );
    #[cfg(unix)]
    {
        assert_eq!(mode(&admin_file), 0o600, "{}", admin_file.display());
        assert_eq!(mode(&key_file), 0o600, "{}", key_file.display());
    }

    // users, credentials, trading, with good and bad tokens
    let u = s.ok(
        "POST",
        "/api/v1/users",
        &admin,
        Some(&json!({"name": "alice", "telegram_id": 42})),
    );
    let (a, ta) = (
        u["id"].as_i64().unwrap(),
        u["token"].as_str().unwrap().to_string(),
    );
    let u = s.ok(
        "POST",
        "/api/v1/users",
        &admin,
        Some(&json!({"name": "bob"})),
    );
    let (b, tb) = (
        u["id"].as_i64().unwrap(),
        u["token"].as_str().unwrap().to_string(),
    );
    let ua = format!("/api/v1/users/{a}");
    s.ok(
        "POST",
        &format!("{ua}/deposit"),
        &ta,
        Some(&json!({"amount": "1000"})),
    );
    let put = s.ok(
        "PUT",
        &format!("{ua}/credentials/binance"),
        &ta,
        Some(&json!({"api_key": API_KEY, "api_secret": API_SECRET})),
    );
    assert!(
        !put.to_string().contains(API_KEY) && !put.to_string().contains(API_SECRET),
        "{put}"
    );
    let got = s.ok("GET", &format!("{ua}/credentials/binance"), &ta, None);
    assert!(
        !got.to_string().contains(API_KEY) && !got.to_string().contains(API_SECRET),
        "{got}"
    );
    s.ok("GET", &format!("{ua}/credentials/binance"), &admin, None);
    s.ok(
        "POST",
        "/api/v1/market/ticks",
        &admin,
        Some(&json!({"ticks": [{"symbol": "BTCUSDT", "price": "30000"}]})),
    );
    s.ok(
        "POST",
        &format!("{ua}/orders"),
        &ta,
        Some(&json!({"symbol": "BTCUSDT", "side": "buy", "type": "market", "qty": "0.001"})),
    );
    s.ok("GET", &format!("{ua}/balance"), &ta, None);
    s.ok("GET", "/api/v1/stats/cache", &admin, None);
    s.ok("GET", "/api/v1/openapi.json", &ta, None);
    // bad tokens: near misses of the real ones, the wrong scheme, another user's path
    let near_admin = format!("{}x", &admin[..admin.len() - 1]);
    // the user token with its last character changed (to one it does not already have)
    let last = if ta.ends_with('0') { '1' } else { '0' };
    let near_user = format!("{}{last}", &ta[..ta.len() - 1]);
    let bad = [
        near_admin.clone(),
        near_user.clone(),
        format!("Basic {ta}"),
        format!("Token {admin}"),
        format!("Bearer  {ta}x"),
        "Bearer".to_string(),
    ];
    for t in &bad {
        let (st, v) = s.req("GET", &format!("{ua}/balance"), Some(t), None);
        assert_eq!(st, 401, "{t}: {v}");
    }
    let (st, _) = s.req("GET", &format!("{ua}/credentials/binance"), Some(&tb), None);
    assert_eq!(st, 404);
    // a refused credentials write: the secret is in a body that fails to parse
    let (st, _) = s.req(
        "PUT",
        &format!("/api/v1/users/{b}/credentials/kraken"),
        Some(&tb),
        Some(&json!({"api_key": API_KEY, "api_secret": API_SECRET, "extra": 1})),
    );
    assert!((400..500).contains(&st), "{st}");
    let (st, _) = s.req(
        "PUT",
        &format!("{ua}/credentials/kraken"),
        Some(&tb),
        Some(&json!({"api_key": API_KEY, "api_secret": API_SECRET})),
    );
    assert_eq!(st, 404);
    // metrics and health need no token and must not carry one
    let (_, m) = http(&s.addr, "GET", "/metrics", None, None).unwrap();
    for secret in [&admin, &ta, &tb] {
        assert!(!m.contains(secret.as_str()), "a token in /metrics");
    }

    // the live WAL and database: tokens only as hashes, credentials only sealed
    let live = db_bytes(&db);
    assert_eq!(
        s.terminate().code(),
        Some(0),
        "serve did not stop cleanly: {}",
        s.log_text()
    );
    let after = db_bytes(&db);

    let log = std::fs::read(&s.log).unwrap();
    let log_text = String::from_utf8_lossy(&log);
    assert!(
        log_text.contains("DEBUG"),
        "debug logging was not on, so this test proves nothing:\n{log_text}"
    );
    let secrets: Vec<(&str, String)> = vec![
        ("admin token", admin.clone()),
        ("alice's token", ta.clone()),
        ("bob's token", tb.clone()),
        ("api_key", API_KEY.to_string()),
        ("api_secret", API_SECRET.to_string()),
        ("secret key (hex)", key_hex.clone()),
        ("near-miss admin token", near_admin.clone()),
        ("near-miss user token", near_user.clone()),
    ];
    for (what, v) in &secrets {
        assert!(
            !contains(&log, v.as_bytes()),
            "the {what} appears in the log:\n{log_text}"
        );
    }
    // the same values as raw bytes (a hex token decoded) must not be stored either
    let mut needles: Vec<(String, Vec<u8>)> = secrets
        .iter()
        .map(|(w, v)| (w.to_string(), v.as_bytes().to_vec()))
        .collect();
    for (what, v) in [
        ("admin token", &admin),
        ("alice's token", &ta),
        ("bob's token", &tb),
        ("secret key", &key_hex),
    ] {
        if let Ok(raw) = hex::decode(v) {
            needles.push((format!("{what} (raw bytes)"), raw));
        }
    }
    assert!(!live.is_empty() && !after.is_empty());
    for (file, bytes) in live.iter().chain(after.iter()) {
        for (what, n) in &needles {
            assert!(!contains(bytes, n), "the {what} is stored in {file}");
        }
    }
    // and the token hash is what is stored (so the scan above looked at the right bytes)
    let conn =
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let stored: Vec<u8> = conn
        .query_row("SELECT token_hash FROM users WHERE id = ?1", [a], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(stored.len(), 32, "token_hash is not a SHA-256");
    let all: Vec<u8> = after.iter().flat_map(|(_, b)| b.clone()).collect();
    assert!(
        contains(&all, &stored),
        "the scan did not see the users table"
    );
    assert!(
        contains(&all, b"alice"),
        "the scan did not see the users table"
    );
    drop(conn);

    // a start with a key that cannot open the sealed credentials is refused at once (not a
    // 500 on the first read), naming where the key came from and never the key
    for (env, names) in [
        (Some("not-the-key"), "LITETRADE_SECRET_KEY"),
        (None, "missing"),
    ] {
        if env.is_none() {
            std::fs::rename(&key_file, beside(&db, "key.away")).unwrap();
        }
        let mut cmd = common::litetrade();
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--db"])
            .arg(&db)
            .env("LITETRADE_ADMIN_TOKEN", &admin)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        if let Some(k) = env {
            cmd.env("LITETRADE_SECRET_KEY", k);
        }
        let mut child = cmd.spawn().unwrap();
        let (status, err) = common::finish(&mut child, std::time::Duration::from_secs(60));
        assert_eq!(status.and_then(|s| s.code()), Some(1), "{err}");
        assert!(
            err.contains(names) && err.trim().lines().count() == 1,
            "{err}"
        );
        assert!(
            !err.contains("not-the-key") && !err.contains(&key_hex),
            "{err}"
        );
    }
    assert!(!key_file.exists(), "no new key replaces the missing one");
}

#[test]
fn the_admin_token_and_key_files_are_private_and_stable() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("files.db");
    let admin_file = beside(&db, "admin-token");
    let key_file = beside(&db, "key");

    // with LITETRADE_ADMIN_TOKEN set, no admin-token file is written at all
    let mut s = start_server(
        &db,
        &[("LITETRADE_ADMIN_TOKEN", "env-admin-token-0123456789abcdef")],
    );
    assert!(
        !admin_file.exists(),
        "an admin-token file was written although the env var is set"
    );
    s.ok(
        "GET",
        "/api/v1/stats/cache",
        "env-admin-token-0123456789abcdef",
        None,
    );
    assert!(s.terminate().success());
    assert!(
        !s.log_text().contains("shorter than 32"),
        "a 32-character token is long enough: {}",
        s.log_text()
    );
    #[cfg(unix)]
    assert_eq!(mode(&key_file), 0o600);
    let key1 = std::fs::read(&key_file).unwrap();

    // without it, the file is created 0600; a restart reuses the same token and key
    let mut s = start_server(&db, &[]);
    #[cfg(unix)]
    assert_eq!(mode(&admin_file), 0o600);
    let token = std::fs::read_to_string(&admin_file)
        .unwrap()
        .trim()
        .to_string();
    s.ok("GET", "/api/v1/stats/cache", &token, None);
    let (st, _) = s.req(
        "GET",
        "/api/v1/stats/cache",
        Some("env-admin-token-0123456789abcdef"),
        None,
    );
    assert_eq!(st, 401, "the old env token still works");
    assert!(s.terminate().success());
    let mut s = start_server(&db, &[]);
    assert_eq!(
        std::fs::read_to_string(&admin_file).unwrap().trim(),
        token,
        "the admin token changed on restart"
    );
    assert_eq!(
        std::fs::read(&key_file).unwrap(),
        key1,
        "the key changed on restart"
    );
    #[cfg(unix)]
    {
        assert_eq!(mode(&admin_file), 0o600);
        assert_eq!(mode(&key_file), 0o600);
    }
    assert!(s.terminate().success());
    // the log of a fresh token file names the file, never the token
    assert!(!s.log_text().contains(&token));

    // a token file others may read is made private again, with a warning, and so are the
    // database and a WAL left from an earlier run (a new one then gets the database's mode);
    // an unknown LITETRADE_ variable is named in a warning too
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let wal = PathBuf::from(format!("{}-wal", db.display()));
        std::fs::write(&wal, b"").unwrap();
        for f in [&admin_file, &db, &wal] {
            std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        let mut s = start_server(&db, &[("LITETRADE_CACHE_BALANCE_TTL", "5")]);
        // a write, so that the WAL is in use
        s.ok(
            "POST",
            "/api/v1/users",
            &token,
            Some(&r#"{"name":"wal-writer"}"#),
        );
        for f in [&admin_file, &db, &wal] {
            assert_eq!(mode(f), 0o600, "{}", f.display());
        }
        assert!(s.terminate().success());
        let log = s.log_text();
        assert!(log.contains("now 0600") && !log.contains(&token), "{log}");
        assert!(
            log.contains("the database file was readable by others"),
            "{log}"
        );
        assert!(log.contains("LITETRADE_CACHE_BALANCE_TTL"), "{log}");
    }

    // a short admin token starts, with a warning that never shows it
    let mut s = start_server(&db, &[("LITETRADE_ADMIN_TOKEN", "guessable")]);
    s.ok("GET", "/api/v1/stats/cache", "guessable", None);
    assert!(s.terminate().success());
    let log = s.log_text();
    assert!(log.contains("shorter than 32 characters"), "{log}");
    assert!(!log.contains("guessable"), "{log}");
}

#[test]
fn an_admin_token_too_long_to_present_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("long.db");
    let long = "a".repeat(257);
    let run = |env: Option<&str>| {
        let mut c = common::litetrade();
        c.args(["serve", "--db"]).arg(&db);
        c.args(["--listen", "127.0.0.1:0"]);
        if let Some(t) = env {
            c.env("LITETRADE_ADMIN_TOKEN", t);
        }
        let mut child = c
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        if common::wait_for(&mut child, std::time::Duration::from_secs(60)).is_none() {
            child.kill().unwrap();
            panic!("serve started and kept running with a 257-byte admin token");
        }
        child.wait_with_output().unwrap()
    };
    // from the environment
    let out = run(Some(&long));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "serve started with a 257-byte admin token"
    );
    assert!(
        err.contains("admin token in LITETRADE_ADMIN_TOKEN is 257 bytes")
            && err.contains("at most 256"),
        "{err}"
    );
    assert!(!err.contains(&long), "the token was printed: {err}");
    // from the file beside the database
    std::fs::write(beside(&db, "admin-token"), &long).unwrap();
    let out = run(None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "serve started with a 257-byte token file"
    );
    assert!(
        err.contains("admin token in the file is 257 bytes") && err.contains("at most 256"),
        "{err}"
    );
    assert!(!err.contains(&long), "the token was printed: {err}");
}

// =============================================================================================
// a user token reaches only its own data

/// Fills `{id}`, `{oid}`, `{pid}`, `{exchange}` and `{symbol}` of an OpenAPI path.
fn fill(path: &str, id: i64, oid: i64, pid: i64) -> String {
    path.replace("{id}", &id.to_string())
        .replace("{oid}", &oid.to_string())
        .replace("{pid}", &pid.to_string())
        .replace("{exchange}", "binance")
        .replace("{symbol}", "BTCUSDT")
}

/// A valid body for each write route (so a refusal cannot come from the body).
fn body_for(method: &str, path: &str) -> Option<Value> {
    let b = match (method, path.rsplit('/').next().unwrap_or("")) {
        ("put", "config") => json!({"leverage": 3}),
        ("put", "bot") => json!({"enabled": true}),
        ("post", "deposit") => json!({"amount": "5"}),
        ("post", "orders") => {
            json!({"symbol": "BTCUSDT", "side": "buy", "type": "market", "qty": "0.001"})
        }
        ("post", "close") => json!({}),
        ("put", "{exchange}") => {
            json!({"api_key": "stolen-key-1234567890", "api_secret": "stolen"})
        }
        ("post", "redeem") => json!({"code": "ISO1"}),
        ("post", "users") => json!({"name": "intruder"}),
        ("post", "ticks") => json!({"ticks": [{"symbol": "BTCUSDT", "price": "1"}]}),
        ("put", "{symbol}") => json!({"max_leverage": 2}),
        ("post", "signals") => json!({"strategy": "s", "symbol": "BTCUSDT", "side": "buy"}),
        ("post", "promo-codes") => {
            json!({"code": "HACK", "license_type": "pro", "days": 1, "max_uses": 1})
        }
        ("get", _) | ("delete", _) => return None,
        _ => json!({}),
    };
    Some(b)
}

/// The request of `method path` made malformed: a body that is not JSON for a write, a query
/// of unknown values for a read.
fn malformed(method: &str, path: &str) -> (String, Option<&'static dyn std::fmt::Display>) {
    match method {
        "get" | "delete" => (format!("{path}?account_type=zzz&limit=x&page=-"), None),
        _ => (path.to_string(), Some(&"{\"not\": json")),
    }
}

/// Sends `method path` with `token`, once with `body` and once [`malformed`], and asserts that
/// both answer `want` (status, error code): who may call is settled before the body or query
/// is read.
#[track_caller]
fn assert_refused(
    s: &Serve,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&Value>,
    want: (u16, &str),
) {
    let (bad_path, bad_body) = malformed(method, path);
    let tries = [
        (path.to_string(), body.map(|b| b as &dyn std::fmt::Display)),
        (bad_path, bad_body),
    ];
    for (p, b) in tries {
        let (st, v) = s.req(&method.to_uppercase(), &p, Some(token), b);
        assert_eq!(
            (st, v["error"]["code"].as_str()),
            (want.0, Some(want.1)),
            "{method} {p} with another's token: {v}"
        );
    }
}

/// What the admin sees of a user: everything a route could change.
fn state_of(s: &Serve, admin: &str, uid: i64, oid: i64) -> Vec<Value> {
    let u = format!("/api/v1/users/{uid}");
    let mut out = Vec::new();
    for p in [
        "",
        "/config",
        "/balance",
        "/orders",
        "/positions",
        "/trades",
        "/credentials/binance",
        "/license",
    ] {
        out.push(s.req("GET", &format!("{u}{p}"), Some(admin), None).1);
    }
    out.push(
        s.req("GET", &format!("{u}/orders/{oid}"), Some(admin), None)
            .1,
    );
    out
}

#[test]
fn a_user_token_reaches_no_other_users_data_through_any_route() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("iso.db");
    const ADMIN: &str = "security-admin-token-5f0e9d8c7b6a";
    let s = start_server(
        &db,
        &[("LITETRADE_ADMIN_TOKEN", ADMIN), ("LITETRADE_LOG", "warn")],
    );
    let mk = |name: &str| {
        let u = s.ok("POST", "/api/v1/users", ADMIN, Some(&json!({"name": name})));
        (
            u["id"].as_i64().unwrap(),
            u["token"].as_str().unwrap().to_string(),
        )
    };
    let (a, ta) = mk("alice");
    let (b, tb) = mk("bob");
    let ua = format!("/api/v1/users/{a}");
    // A owns one of everything: balance, a position, a resting order, credentials, a license
    s.ok(
        "POST",
        &format!("{ua}/deposit"),
        &ta,
        Some(&json!({"amount": "1000"})),
    );
    s.ok(
        "POST",
        "/api/v1/market/ticks",
        ADMIN,
        Some(&json!({"ticks": [{"symbol": "BTCUSDT", "price": "30000"}]})),
    );
    let o = s.ok(
        "POST",
        &format!("{ua}/orders"),
        &ta,
        Some(&json!({"symbol": "BTCUSDT", "side": "buy", "type": "market", "qty": "0.001"})),
    );
    let apid = o["position_id"].as_i64().unwrap();
    let o = s.ok("POST",
        &format!("{ua}/orders"),
        &ta,
        Some(
            &json!({"symbol": "BTCUSDT", "side": "buy", "type": "limit", "qty": "0.001", "price": "20000"}),
        ),
    );
    let aoid = o["id"].as_i64().unwrap();
    s.ok(
        "PUT",
        &format!("{ua}/credentials/binance"),
        &ta,
        Some(&json!({"api_key": API_KEY, "api_secret": API_SECRET})),
    );
    s.ok(
        "POST",
        "/api/v1/promo-codes",
        ADMIN,
        Some(&json!({"code": "ISO1", "license_type": "pro", "days": 1, "max_uses": 9})),
    );
    s.ok(
        "POST",
        &format!("{ua}/redeem"),
        &ta,
        Some(&json!({"code": "ISO1"})),
    );
    let before = state_of(&s, ADMIN, a, aoid);
    // B owns something too, so that B's own ids exist
    s.ok(
        "POST",
        &format!("/api/v1/users/{b}/deposit"),
        &tb,
        Some(&json!({"amount": "1000"})),
    );

    // every route of the document
    let doc = s.ok("GET", "/api/v1/openapi.json", ADMIN, None);
    let mut routes: Vec<(String, String)> = Vec::new();
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        for m in ops.as_object().unwrap().keys() {
            if ["get", "put", "post", "delete", "patch"].contains(&m.as_str()) {
                routes.push((m.clone(), path.clone()));
            }
        }
    }
    let user_routes: Vec<_> = routes
        .iter()
        .filter(|(_, p)| p.contains("/users/{id}"))
        .cloned()
        .collect();
    assert!(
        user_routes.len() >= 18,
        "only {} /users/{{id}} routes in the document",
        user_routes.len()
    );
    let mut tried = BTreeSet::new();
    for (m, p) in &user_routes {
        let body = body_for(m, p);
        // B's token on A's path, with A's sub-ids
        let path = fill(p, a, aoid, apid);
        assert_refused(&s, m, &path, &tb, body.as_ref(), (404, "not_found"));
        // B's token on B's own path with A's sub-ids: the object is not B's either
        if p.contains("{oid}") || p.contains("{pid}") {
            let path = fill(p, b, aoid, apid);
            let (st, v) = s.req(
                &m.to_uppercase(),
                &path,
                Some(&tb),
                body.as_ref().map(|b| b as _),
            );
            assert_eq!(
                (st, v["error"]["code"].as_str()),
                (404, Some("not_found")),
                "{m} {path} (A's object): {v}"
            );
        }
        tried.insert(format!("{m} {p}"));
    }
    // the contract's list (API.md §2) is covered, whatever the document says
    for want in [
        "get /api/v1/users/{id}",
        "get /api/v1/users/{id}/config",
        "put /api/v1/users/{id}/config",
        "put /api/v1/users/{id}/bot",
        "post /api/v1/users/{id}/deposit",
        "get /api/v1/users/{id}/balance",
        "post /api/v1/users/{id}/orders",
        "get /api/v1/users/{id}/orders",
        "get /api/v1/users/{id}/orders/{oid}",
        "delete /api/v1/users/{id}/orders/{oid}",
        "get /api/v1/users/{id}/positions",
        "post /api/v1/users/{id}/positions/{pid}/close",
        "get /api/v1/users/{id}/trades",
        "put /api/v1/users/{id}/credentials/{exchange}",
        "get /api/v1/users/{id}/credentials/{exchange}",
        "post /api/v1/users/{id}/redeem",
        "get /api/v1/users/{id}/license",
        "get /api/v1/users/{id}/events",
    ] {
        assert!(
            tried.contains(want),
            "{want} is not in the OpenAPI document, so it was not tried"
        );
    }
    assert_eq!(
        state_of(&s, ADMIN, a, aoid),
        before,
        "B's requests changed A's state"
    );

    // routes any user may call; every other route outside /users/{id} is admin-only
    let shared: BTreeSet<&str> = [
        "get /api/v1/health",
        "get /api/v1/symbols",
        "get /api/v1/market/{symbol}/ticker",
        "get /api/v1/openapi.json",
        "get /metrics",
    ]
    .into_iter()
    .collect();
    let mut admin_only = 0;
    for (m, p) in routes.iter().filter(|(_, p)| !p.contains("/users/{id}")) {
        if shared.contains(format!("{m} {p}").as_str()) {
            continue;
        }
        admin_only += 1;
        let path = fill(p, a, aoid, apid);
        let body = body_for(m, p);
        assert_refused(&s, m, &path, &tb, body.as_ref(), (403, "forbidden"));
    }
    assert!(admin_only >= 8, "only {admin_only} admin-only routes found");
    // nothing of that went through
    let sy = s.ok("GET", "/api/v1/symbols", &tb, None);
    assert!(sy.to_string().contains("\"max_leverage\":100"), "{sy}");
    let t = s.ok("GET", "/api/v1/market/BTCUSDT/ticker", &tb, None);
    assert_eq!(t["last"], "30000", "{t}");
    let (st, _) = s.req(
        "POST",
        &format!("/api/v1/users/{b}/redeem"),
        Some(&tb),
        Some(&json!({"code": "HACK"})),
    );
    assert_eq!(st, 409, "the promo code a user tried to create exists");
    assert_eq!(
        state_of(&s, ADMIN, a, aoid),
        before,
        "B's requests changed A's state"
    );
}

// =============================================================================================
// every SQL statement is parameterized

/// SQL keywords that start or shape a statement (upper case, as the code base writes SQL).
const SQL_WORDS: &[&str] = &[
    "SELECT", "INSERT", "UPDATE", "DELETE", "REPLACE", "PRAGMA", "CREATE", "DROP", "ALTER",
    "ANALYZE", "VACUUM", "EXPLAIN", "ATTACH", "WHERE", "VALUES", "ORDER BY", "LIMIT",
];

/// Places where `format!` splices only compile-time constants or typed numbers into SQL:
/// (file, a snippet of the call, why it is safe). Anything else that builds SQL text at run
/// time fails the test; add an entry here only with a reason.
const ALLOWED: &[(&str, &str, &str)] = &[
    (
        "src/store/mod.rs",
        "PRAGMA synchronous={sync}",
        "sync is a &'static str chosen by a match on SyncMode",
    ),
    (
        "src/store/mod.rs",
        "PRAGMA max_page_count={n}",
        "n is a u64 from the typed config",
    ),
    (
        "src/store/schema.rs",
        "PRAGMA user_version = {SCHEMA_VERSION}",
        "a const",
    ),
    (
        "src/store/schema.rs",
        "PRAGMA schema_version = {}; PRAGMA writable_schema = OFF",
        "an i64 read from PRAGMA schema_version (a PRAGMA takes no parameters)",
    ),
    (
        "src/store/tables/mod.rs",
        "\"{} VALUES {} {}\", self.head, vec![row; rows].join(\", \"), self.tail",
        "head and tail are &'static str of a const MultiInsert; row is only \"?\" placeholders",
    ),
    (
        "src/store/hot.rs",
        "EXPLAIN QUERY PLAN {}",
        "h.sql is one of the constant hot queries (tables::*::CONST)",
    ),
    (
        "src/store/tables/positions.rs",
        "SELECT {COLS} FROM active_positions",
        "COLS is a const column list",
    ),
    (
        "src/store/tables/symbols.rs",
        "SELECT {COLS} FROM symbols",
        "COLS is a const column list",
    ),
    (
        "src/store/tables/orders.rs",
        "SELECT {COLS} FROM order_rows",
        "COLS is a const column list",
    ),
    (
        "src/store/schema.rs",
        "ALTER TABLE {table} ADD COLUMN {column} INTEGER",
        "table and column come from the constant ORDER_LINK_COLUMNS",
    ),
    (
        "src/store/optimize.rs",
        "PRAGMA {name}",
        "name is a literal pragma name at every call of pragma_i64",
    ),
    (
        "src/store/optimize.rs",
        "PRAGMA page_size={TARGET_PAGE_SIZE}",
        "a const",
    ),
    (
        "src/store/optimize.rs",
        "PRAGMA integrity_check({MAX_MESSAGES})",
        "a const",
    ),
    (
        "src/store/optimize.rs",
        "ANALYZE \\\"{}\\\"",
        "a table name read from sqlite_master, quoted as an identifier",
    ),
];

/// A string-building site that puts SQL text together at run time.
#[derive(Debug, Clone)]
struct Site {
    file: String,
    line: usize,
    text: String,
}

fn line_of(src: &str, at: usize) -> usize {
    src[..at].matches('\n').count() + 1
}

/// The end (exclusive) of a parenthesized group starting at `open` (`(`), skipping string and
/// char literals, raw strings and comments.
fn group_end(b: &[u8], open: usize) -> usize {
    let mut depth = 0i32;
    let mut i = open;
    while i < b.len() {
        match b[i] {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            b'"' => i = string_end(b, i) - 1,
            // a char literal ('"', '\'', '(') is not a quote or a bracket; a lifetime is left alone
            b'\'' if b.get(i + 1) == Some(&b'\\') => {
                i += 2;
                while i < b.len() && b[i] != b'\'' {
                    i += 1;
                }
            }
            b'\'' if b.get(i + 2) == Some(&b'\'') => i += 2,
            b'r' if b.get(i + 1) == Some(&b'#') || b.get(i + 1) == Some(&b'"') => {
                if let Some(e) = raw_string_end(b, i) {
                    i = e - 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    b.len()
}

fn string_end(b: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    b.len()
}

fn raw_string_end(b: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    let mut hashes = 0;
    while b.get(i) == Some(&b'#') {
        hashes += 1;
        i += 1;
    }
    if b.get(i) != Some(&b'"') {
        return None;
    }
    i += 1;
    while i < b.len() {
        if b[i] == b'"'
            && b[i + 1..]
                .iter()
                .take(hashes)
                .filter(|&&c| c == b'#')
                .count()
                == hashes
        {
            return Some(i + 1 + hashes);
        }
        i += 1;
    }
    Some(b.len())
}

/// The spans (start, end exclusive, quotes included) of the string literals in a piece of code.
fn literal_spans(code: &str) -> Vec<(usize, usize)> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let ident_before = i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
        if b[i] == b'\'' && b.get(i + 1) == Some(&b'\\') {
            i += 2;
            while i < b.len() && b[i] != b'\'' {
                i += 1;
            }
            i += 1;
        } else if b[i] == b'\'' && b.get(i + 2) == Some(&b'\'') {
            i += 3;
        } else if b[i] == b'"' {
            let e = string_end(b, i);
            out.push((i, e));
            i = e;
        } else if b[i] == b'r' && !ident_before && matches!(b.get(i + 1), Some(b'"' | b'#')) {
            match raw_string_end(b, i) {
                Some(e) => {
                    out.push((i, e));
                    i = e;
                }
                None => i += 1,
            }
        } else {
            i += 1;
        }
    }
    out
}

/// The string literals (with their quotes) inside a piece of code.
fn literals(code: &str) -> Vec<String> {
    literal_spans(code)
        .into_iter()
        .map(|(a, b)| code[a..b].to_string())
        .collect()
}

fn has_sql(s: &str) -> bool {
    SQL_WORDS.iter().any(|w| {
        s.match_indices(w).any(|(at, _)| {
            let before = s[..at].chars().next_back();
            let after = s[at + w.len()..].chars().next();
            !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                && !after.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        })
    })
}

/// Every place in `src` (one file's text) that builds SQL text at run time: a formatting macro
/// whose template holds SQL, or a `+` / `push_str` / `concat` joining SQL text to something.
fn string_built_sql(file: &str, src: &str) -> Vec<Site> {
    let mut out = Vec::new();
    // comment lines are not code
    let code: String = src
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("//") {
                " ".repeat(l.len())
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let cb = code.as_bytes();
    for mac in [
        "format!",
        "format_args!",
        "write!",
        "writeln!",
        "print!",
        "concat_idents!",
    ] {
        for (at, _) in code.match_indices(mac) {
            if at > 0 && (cb[at - 1].is_ascii_alphanumeric() || cb[at - 1] == b'_') {
                continue;
            }
            let Some(open) = code[at + mac.len()..]
                .find(|c: char| !c.is_whitespace())
                .map(|o| at + mac.len() + o)
            else {
                continue;
            };
            if cb[open] != b'(' {
                continue;
            }
            let end = group_end(cb, open);
            let text = &code[at..end];
            if literals(text).iter().any(|l| has_sql(l)) {
                out.push(Site {
                    file: file.into(),
                    line: line_of(src, at),
                    text: text.to_string(),
                });
            }
        }
    }
    // "…SQL…" + x, x + "…SQL…", s += "…SQL…", s.push_str("…SQL…"), String::from("…SQL…") + x
    for (a, e) in literal_spans(&code) {
        if !has_sql(&code[a..e]) {
            continue;
        }
        let before = code[..a].trim_end();
        let after = code[e..].trim_start();
        let after = ["to_string()", "to_owned()", "into()"]
            .iter()
            .find_map(|m| after.strip_prefix('.').and_then(|x| x.strip_prefix(m)))
            .map_or(after, |x| x.trim_start());
        let from = before.ends_with("String::from(") || before.ends_with("str::to_string(");
        let joined = before.ends_with('+')
            || before.ends_with("+=")
            || before.ends_with("push_str(")
            || after.starts_with('+')
            || (from
                && after
                    .strip_prefix(')')
                    .is_some_and(|x| x.trim_start().starts_with('+')));
        if joined {
            let ls = code[..a].rfind('\n').map_or(0, |x| x + 1);
            let le = code[e..].find('\n').map_or(code.len(), |x| e + x);
            out.push(Site {
                file: file.into(),
                line: line_of(src, a),
                text: code[ls..le].trim().to_string(),
            });
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn normalize(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn every_sql_statement_is_parameterized() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    files.sort();
    assert!(files.len() > 10, "src/ not found");
    let mut offending = Vec::new();
    let mut used = vec![0usize; ALLOWED.len()];
    let mut sites = 0;
    for f in &files {
        let rel = f
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let src = std::fs::read_to_string(f).unwrap();
        for site in string_built_sql(&rel, &src) {
            sites += 1;
            let norm = normalize(&site.text);
            match ALLOWED
                .iter()
                .position(|(file, snippet, _)| *file == rel && norm.contains(&normalize(snippet)))
            {
                Some(i) => {
                    used[i] += 1;
                    eprintln!("allowed {}:{}: {}", site.file, site.line, ALLOWED[i].2);
                }
                None => offending.push(site),
            }
        }
    }
    for (i, (file, snippet, _)) in ALLOWED.iter().enumerate() {
        if used[i] == 0 {
            eprintln!("note: allow-list entry no longer matches anything: {file}: {snippet}");
        }
    }
    eprintln!(
        "{sites} string-built SQL sites found, {} allow-listed",
        sites - offending.len()
    );
    assert!(
        offending.is_empty(),
        "SQL text built at run time (use ?N parameters, or allow-list a constant splice in tests/security.rs with a reason):\n{}",
        offending
            .iter()
            .map(|s| format!("  {}:{}: {}", s.file, s.line, normalize(&s.text)))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // the reasons of the allow-list still hold
    let read = |f: &str| std::fs::read_to_string(root.join(f)).unwrap_or_default();
    for (file, snippet, _) in ALLOWED {
        if snippet.contains("{COLS}") {
            assert!(
                read(file).contains("const COLS: &str"),
                "{file}: COLS is not a const &str"
            );
        }
    }
    let hot = read("src/store/hot.rs");
    assert!(
        !hot.contains("EXPLAIN QUERY PLAN") || normalize(&hot).contains("pub sql: &'static str"),
        "HotQuery::sql is no longer a &'static str"
    );
    let opt = read("src/store/optimize.rs");
    for (at, _) in opt.match_indices("pragma_i64(") {
        if opt[..at].ends_with("fn ") {
            continue;
        }
        let call = &opt[at..at + opt[at..].find(')').unwrap_or(0)];
        let arg = call.split_once(',').map(|(_, a)| a.trim()).unwrap_or("");
        assert!(
            arg.starts_with('"'),
            "src/store/optimize.rs: pragma_i64 called with a non-literal name: {call})"
        );
    }
}

#[test]
fn the_sql_scan_finds_string_built_queries() {
    let bad = r#"
fn a(c: &Connection, name: &str) {
    c.execute(&format!("SELECT * FROM users WHERE name = '{name}'"), [])?;
    c.execute(&format!(
        "DELETE FROM orders WHERE id = {}",
        id
    ), [])?;
    let q = "UPDATE balances SET wallet = ".to_string() + &amount;
    let mut s = String::new();
    s.push_str("INSERT INTO t VALUES (");
    let r = format!(r"SELECT x FROM t WHERE y = {y}");
}
"#;
    let found = string_built_sql("src/x.rs", bad);
    let lines: BTreeSet<usize> = found.iter().map(|s| s.line).collect();
    assert_eq!(lines, [3, 4, 8, 10, 11].into_iter().collect(), "{found:#?}");
    let good = r##"
fn b(c: &Connection, name: &str) {
    c.execute("SELECT * FROM users WHERE name = ?1", [name])?;
    let msg = format!("cannot create key file {}", p.display());
    let next = max_id(c, "SELECT COALESCE(MAX(id), 0) FROM users")? + 1;
    let q = r#"ANALYZE"#;
    let quote = '"'; let s = format!("{quote} not sql");
    let e = format!("user {id} not found; delete it first");
    // format!("SELECT {x}") in a comment is not code
}
"##;
    assert!(
        string_built_sql("src/y.rs", good).is_empty(),
        "{:#?}",
        string_built_sql("src/y.rs", good)
    );
}
