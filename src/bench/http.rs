//! The `http` scenario and its built-in keep-alive HTTP/1.1 load generator (closed and open
//! loop) against the real router on a loopback port.

use super::report::{BenchReport, Lat};
use super::{BenchOptions, fresh, set_price};
use crate::Engine;
use crate::domain::model::AccountType;
use crate::domain::money::Dec;
use crate::error::{Error, Result};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

/// GET /health, GET balance and GET positions, then POST orders in a closed loop and in open
/// loops at shares of its saturation, each against the real router on a loopback port.
pub(super) async fn scenario(opts: &BenchOptions, rep: &mut BenchReport) -> Result<()> {
    let cfg = fresh(opts, "http.db")?;
    let engine = Engine::open(&cfg)?;
    let (user, token) = engine.create_user("http", None).await?;
    engine
        .deposit(user.id, Dec::from_int(100_000_000), AccountType::Demo)
        .await?;
    set_price(&engine, "BTCUSDT", 30_000).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| Error::Internal(e.to_string()))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Internal(e.to_string()))?;
    let app = crate::api::router(engine.clone(), "bench-admin-token");
    let limits = crate::api::listen::Limits::from_config(engine.config());
    let server = tokio::spawn(crate::api::listen::run(
        listener,
        app,
        limits,
        std::future::pending(),
    ));
    let uid = user.id;
    let mut floor = None;
    for (name, path) in [
        ("GET /health", "/api/v1/health".to_string()),
        ("GET balance", format!("/api/v1/users/{uid}/balance")),
        ("GET positions", format!("/api/v1/users/{uid}/positions")),
    ] {
        let req = request("GET", &path, None, &token);
        let (lat, n, secs) = load(addr, &[req], opts.clients, http_time(opts), None).await?;
        let per_sec = n as f64 / secs;
        rep.add(
            "http",
            format!("{name}, {} connections", opts.clients),
            Some(&lat),
            Some(per_sec),
            "built-in loopback client, same process",
        );
        match name {
            "GET /health" => floor = Some(per_sec),
            "GET balance" => rep.add(
                "http",
                "GET balance vs GET health",
                None,
                None,
                format!(
                    "{:.0} % of the HTTP floor",
                    100.0 * per_sec / floor.unwrap_or(per_sec)
                ),
            ),
            _ => {}
        }
    }
    // POST orders: one user per connection, as 64 bot users would be
    let order = r#"{"symbol":"BTCUSDT","side":"buy","type":"market","qty":"0.001"}"#;
    let mut reqs = Vec::new();
    for i in 0..opts.clients {
        let (u, t) = engine.create_user(&format!("http-{i}"), None).await?;
        engine
            .deposit(u.id, Dec::from_int(100_000_000), AccountType::Demo)
            .await?;
        reqs.push(request(
            "POST",
            &format!("/api/v1/users/{}/orders", u.id),
            Some(order),
            &t,
        ));
    }
    // WAL resets, writer batches and the jobs in them, so far
    let counters = || {
        let s = engine.store().stats();
        [&s.wal_resets, &s.batches, &s.batched_jobs].map(|c| c.load(Relaxed))
    };
    // "{resets} WAL resets, mean batch {jobs / batches} jobs" since `before`
    let writes = |before: [u64; 3]| {
        let [r, b, j] = counters();
        format!(
            "{} WAL resets, mean batch {:.1} jobs",
            r - before[0],
            (j - before[2]) as f64 / (b - before[1]).max(1) as f64
        )
    };
    let before = counters();
    let (lat, n, secs) = load(addr, &reqs, opts.clients, http_time(opts), None).await?;
    let saturated = n as f64 / secs;
    rep.add(
        "http",
        format!(
            "POST orders (market, fills), {} connections, closed loop",
            opts.clients
        ),
        Some(&lat),
        Some(saturated),
        format!(
            "as fast as answered: latency ≈ connections / throughput; {}",
            writes(before)
        ),
    );
    for share in [0.1, 0.25, 0.5, 0.75] {
        let rate = (saturated * share).round().max(1.0);
        let before = counters();
        let (lat, n, secs) = load(addr, &reqs, opts.clients, http_time(opts), Some(rate)).await?;
        rep.add(
            "http",
            format!(
                "POST orders, {} connections, open loop at {rate:.0}/s ({:.0} % of saturation)",
                opts.clients,
                share * 100.0
            ),
            Some(&lat),
            Some(n as f64 / secs),
            format!(
                "latency from each request's scheduled send time; {}",
                writes(before)
            ),
        );
    }
    server.abort();
    engine.shutdown();
    Ok(())
}

pub(super) fn http_time(opts: &BenchOptions) -> Duration {
    Duration::from_secs(opts.http_seconds)
}

/// One HTTP/1.1 keep-alive request's bytes.
pub(super) fn request(method: &str, path: &str, body: Option<&str>, token: &str) -> Arc<Vec<u8>> {
    let head =
        format!("{method} {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n");
    Arc::new(
        match body {
            Some(b) => format!(
                "{head}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
                b.len()
            ),
            None => format!("{head}\r\n"),
        }
        .into_bytes(),
    )
}

/// A tiny keep-alive HTTP/1.1 load generator: `clients` connections for `dur`, connection `i`
/// sending `reqs[i % reqs.len()]`. Without `rate` each connection sends its next request as
/// soon as the last is answered (closed loop). With `rate` (requests/s over all connections)
/// each connection sends on a fixed schedule and a request's latency counts from its scheduled
/// time when the connection was still busy with the previous one, so a stall shows up in
/// every request it delayed (no coordinated omission).
pub(super) async fn load(
    addr: std::net::SocketAddr,
    reqs: &[Arc<Vec<u8>>],
    clients: usize,
    dur: Duration,
    rate: Option<f64>,
) -> Result<(Lat, u64, f64)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let clients = clients.max(1);
    let every = rate.map(|r| Duration::from_secs_f64(clients as f64 / r));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..clients {
        let req = reqs[i % reqs.len()].clone();
        // spread the connections' schedules over one interval
        let mut next = every.map(|e| t0 + e.mul_f64(i as f64 / clients as f64));
        tasks.push(tokio::spawn(async move {
            let mut s = tokio::net::TcpStream::connect(addr).await?;
            s.set_nodelay(true)?;
            let mut lat = Vec::new();
            let mut buf = vec![0u8; 64 * 1024];
            while t0.elapsed() < dur {
                let start = match (next.as_mut(), every) {
                    (Some(at), Some(e)) => {
                        let due = *at;
                        *at += e;
                        if Instant::now() >= due {
                            due
                        } else {
                            tokio::time::sleep_until(due.into()).await;
                            Instant::now()
                        }
                    }
                    _ => Instant::now(),
                };
                s.write_all(&req).await?;
                // read one response: headers, then Content-Length bytes
                let mut got = 0;
                let body_end = loop {
                    let n = s.read(&mut buf[got..]).await?;
                    if n == 0 {
                        return Err(std::io::Error::other("connection closed"));
                    }
                    got += n;
                    if let Some(h) = buf[..got].windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..h]).to_ascii_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        break h + 4 + len;
                    }
                };
                while got < body_end {
                    let n = s.read(&mut buf[got..]).await?;
                    if n == 0 {
                        return Err(std::io::Error::other("connection closed"));
                    }
                    got += n;
                }
                lat.push(start.elapsed().as_nanos() as u64);
                if !buf.starts_with(b"HTTP/1.1 2") {
                    let text = String::from_utf8_lossy(&buf[..body_end.min(300)]).into_owned();
                    return Err(std::io::Error::other(format!("not a 2xx answer: {text}")));
                }
            }
            Ok::<_, std::io::Error>(lat)
        }));
    }
    let mut lat = Lat::default();
    for t in tasks {
        lat.0.extend(
            t.await
                .map_err(|e| Error::Internal(e.to_string()))?
                .map_err(|e| Error::Internal(e.to_string()))?,
        );
    }
    let n = lat.0.len() as u64;
    Ok((lat, n, t0.elapsed().as_secs_f64()))
}
