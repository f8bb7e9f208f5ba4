//! HTTP request metrics (latency histograms by route) and the Prometheus text exposition of
//! every counter: HTTP, caches, pool, writer, sequencer queue.

use crate::Engine;
use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use parking_lot::RwLock;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;
use tracing::Instrument;

/// Upper bounds of the latency buckets, seconds.
const BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5,
];

#[derive(Default)]
struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

/// Request counters by (method, route, status class).
#[derive(Default)]
pub struct HttpMetrics {
    latency: RwLock<BTreeMap<(String, String), Arc<Histogram>>>,
    statuses: RwLock<BTreeMap<(String, String, u16), Arc<AtomicU64>>>,
}

impl HttpMetrics {
    fn observe(&self, method: &str, route: &str, status: u16, secs: f64) {
        let key = (method.to_string(), route.to_string());
        let h = self.latency.read().get(&key).cloned();
        let h = h.unwrap_or_else(|| self.latency.write().entry(key).or_default().clone());
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                h.counts[i].fetch_add(1, Relaxed);
            }
        }
        h.count.fetch_add(1, Relaxed);
        h.sum_us.fetch_add((secs * 1e6) as u64, Relaxed);
        let skey = (method.to_string(), route.to_string(), status);
        let c = self.statuses.read().get(&skey).cloned();
        let c = c.unwrap_or_else(|| self.statuses.write().entry(skey).or_default().clone());
        c.fetch_add(1, Relaxed);
    }
}

/// Middleware: a tracing span per request and the latency histogram by matched route.
pub async fn track(State(m): State<Arc<HttpMetrics>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = method_label(req.method());
    let span = tracing::info_span!("http", %method, %route);
    let t0 = Instant::now();
    let res = next.run(req).instrument(span).await;
    let secs = t0.elapsed().as_secs_f64();
    tracing::debug!(%method, %route, status = res.status().as_u16(), elapsed_us = (secs * 1e6) as u64, "request");
    m.observe(method, &route, res.status().as_u16(), secs);
    res
}

/// The method as a metrics label: the standard ones by name, anything else as `other`, so that
/// requests with made-up methods cannot add series without end.
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Everything in Prometheus text format.
pub fn render(engine: &Engine, http: &HttpMetrics) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# HELP litetrade_http_request_duration_seconds HTTP request latency by route."
    );
    let _ = writeln!(
        o,
        "# TYPE litetrade_http_request_duration_seconds histogram"
    );
    for ((m, r), h) in http.latency.read().iter() {
        let (m, r) = (esc(m), esc(r));
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                o,
                "litetrade_http_request_duration_seconds_bucket{{method=\"{m}\",route=\"{r}\",le=\"{b}\"}} {}",
                h.counts[i].load(Relaxed)
            );
        }
        let n = h.count.load(Relaxed);
        let _ = writeln!(
            o,
            "litetrade_http_request_duration_seconds_bucket{{method=\"{m}\",route=\"{r}\",le=\"+Inf\"}} {n}"
        );
        let _ = writeln!(
            o,
            "litetrade_http_request_duration_seconds_sum{{method=\"{m}\",route=\"{r}\"}} {}",
            h.sum_us.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(
            o,
            "litetrade_http_request_duration_seconds_count{{method=\"{m}\",route=\"{r}\"}} {n}"
        );
    }
    let _ = writeln!(
        o,
        "# HELP litetrade_http_responses_total HTTP responses by route and status."
    );
    let _ = writeln!(o, "# TYPE litetrade_http_responses_total counter");
    for ((m, r, s), c) in http.statuses.read().iter() {
        let _ = writeln!(
            o,
            "litetrade_http_responses_total{{method=\"{}\",route=\"{}\",status=\"{s}\"}} {}",
            esc(m),
            esc(r),
            c.load(Relaxed)
        );
    }
    let stats = engine.cache_stats();
    for (metric, kind, help) in [
        ("hits", "counter", "Cache hits."),
        ("misses", "counter", "Cache misses."),
        ("invalidations", "counter", "Invalidations by writes."),
        ("expired", "counter", "Expired entries dropped."),
        ("evictions", "counter", "Entries evicted for capacity."),
        ("size", "gauge", "Entries held."),
        ("capacity", "gauge", "Most entries held."),
    ] {
        let _ = writeln!(o, "# HELP litetrade_cache_{metric} {help}");
        let _ = writeln!(o, "# TYPE litetrade_cache_{metric} {kind}");
        for (name, s) in &stats {
            let v = match metric {
                "hits" => s.hits,
                "misses" => s.misses,
                "invalidations" => s.invalidations,
                "expired" => s.expired,
                "evictions" => s.evictions,
                "size" => s.size,
                _ => s.capacity,
            };
            let _ = writeln!(o, "litetrade_cache_{metric}{{cache=\"{name}\"}} {v}");
        }
    }
    let db = engine.db_stats();
    let (size, open, idle) = engine.pool_state();
    let (sqlite_now, sqlite_peak) = crate::store::Store::sqlite_memory();
    // the files as they are on disk now (the WAL beside the real file, where SQLite keeps it)
    let file = crate::store::files::real_path(&engine.config().db);
    let bytes = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len());
    for (name, kind, v) in [
        ("db_file_bytes", "gauge", bytes(&file)),
        (
            "wal_file_bytes",
            "gauge",
            bytes(&crate::store::files::with_suffix(&file, "-wal")),
        ),
        ("sqlite_memory_bytes", "gauge", sqlite_now),
        ("sqlite_memory_peak_bytes", "gauge", sqlite_peak),
        ("db_pool_size", "gauge", size as u64),
        ("db_pool_open", "gauge", open as u64),
        ("db_pool_idle", "gauge", idle as u64),
        ("db_pool_in_use", "gauge", open.saturating_sub(idle) as u64),
        ("db_pool_waits_total", "counter", db.pool_waits),
        ("db_queries_total", "counter", db.queries),
        ("db_failures_total", "counter", db.failures),
        ("db_busy_retries_total", "counter", db.retries),
        ("db_slow_queries_total", "counter", db.slow_queries),
        ("db_query_avg_us", "gauge", db.avg_query_us),
        ("db_query_max_us", "gauge", db.max_query_us),
        ("writer_batches_total", "counter", db.writer_batches),
        ("writer_jobs_total", "counter", db.writer_jobs),
        ("writer_batch_max", "gauge", db.writer_batch_max),
        ("writer_commit_avg_us", "gauge", db.writer_avg_commit_us),
        ("writer_commit_max_us", "gauge", db.writer_max_commit_us),
        ("writer_queue_depth", "gauge", db.writer_queue),
        ("wal_resets_total", "counter", db.wal_resets),
        ("checkpoint_passes_total", "counter", db.checkpoint_passes),
        ("sequencer_queue_depth", "gauge", engine.queue_depth()),
        (
            "state_reloads_total",
            "counter",
            engine.sequencer_stats().reloads.load(Relaxed),
        ),
        (
            "commands_held_total",
            "counter",
            engine.sequencer_stats().held.load(Relaxed),
        ),
    ] {
        let _ = writeln!(o, "# TYPE litetrade_{name} {kind}");
        let _ = writeln!(o, "litetrade_{name} {v}");
    }
    o
}
