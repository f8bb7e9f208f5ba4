//! The figures of a run: rows, the markdown table, latency samples and peak RSS.

use serde::Serialize;
use std::time::Instant;

/// One measured figure.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// Scenario.
    pub scenario: &'static str,
    /// What was measured.
    pub metric: String,
    /// Median latency, µs.
    pub median_us: Option<f64>,
    /// 99th percentile latency, µs.
    pub p99_us: Option<f64>,
    /// Operations per second.
    pub per_sec: Option<f64>,
    /// Anything else (ratios, counts).
    pub note: String,
}

/// Everything one run measured.
#[derive(Clone, Debug, Serialize, Default)]
pub struct BenchReport {
    /// The figures.
    pub rows: Vec<Row>,
    /// Peak resident set size of the process, MiB.
    pub peak_rss_mib: f64,
}

impl BenchReport {
    pub(super) fn add(
        &mut self,
        scenario: &'static str,
        metric: impl Into<String>,
        lat: Option<&Lat>,
        per_sec: Option<f64>,
        note: impl Into<String>,
    ) {
        self.rows.push(Row {
            scenario,
            metric: metric.into(),
            median_us: lat.map(|l| l.median_us()),
            p99_us: lat.map(|l| l.p99_us()),
            per_sec,
            note: note.into(),
        });
    }

    /// A markdown table of the rows.
    pub fn render_table(&self) -> String {
        let f = |v: Option<f64>| {
            v.map(|x| {
                if x >= 100.0 {
                    format!("{x:.0}")
                } else {
                    format!("{x:.2}")
                }
            })
            .unwrap_or_else(|| "".into())
        };
        let mut s = String::from(
            "| scenario | metric | median µs | p99 µs | per second | note |\n|---|---|---:|---:|---:|---|\n",
        );
        for r in &self.rows {
            s += &format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                r.scenario,
                r.metric,
                f(r.median_us),
                f(r.p99_us),
                f(r.per_sec),
                r.note
            );
        }
        s += &format!("\npeak RSS: {:.0} MiB\n", self.peak_rss_mib);
        s
    }
}

/// Latency samples in nanoseconds.
#[derive(Default)]
pub(super) struct Lat(pub(super) Vec<u64>);

impl Lat {
    pub(super) fn time<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let t0 = Instant::now();
        let v = f();
        self.0.push(t0.elapsed().as_nanos() as u64);
        v
    }
    fn pct(&self, p: f64) -> f64 {
        let mut v = self.0.clone();
        v.sort_unstable();
        if v.is_empty() {
            return 0.0;
        }
        let i = ((v.len() as f64 - 1.0) * p).round() as usize;
        v[i] as f64 / 1000.0
    }
    pub(super) fn median_us(&self) -> f64 {
        self.pct(0.5)
    }
    pub(super) fn p99_us(&self) -> f64 {
        self.pct(0.99)
    }
}

pub(super) fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}
