//! `litetrade replay`: feeds a recorded market file through the engine as ticks.

use crate::Engine;
use crate::domain::money::Dec;
use crate::engine::trading::{Tick, TickOutcome};
use crate::error::{Error, Result};
use crate::feed::FeedTick;
use std::time::{Duration, Instant};

/// How fast to replay.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pace {
    /// As fast as the engine takes them (batches of `batch` ticks).
    Max {
        /// Ticks per `ingest_ticks` call.
        batch: usize,
    },
    /// `speed` × the recorded time between ticks (2.0 = twice as fast).
    Speed(f64),
}

/// What a replay did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ReplaySummary {
    /// Totals of the tick batches.
    pub outcome: TickOutcome,
    /// Wall time, seconds.
    pub seconds: f64,
    /// Ticks per second.
    pub ticks_per_sec: f64,
}

/// A replay speed must be a finite number above 0.
pub fn check_speed(speed: f64) -> Result<()> {
    if speed > 0.0 && speed.is_finite() {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "speed must be a finite number above 0, not {speed}"
        )))
    }
}

/// True when a file's first price is more than twice, or less than half, the symbol's last
/// price: most likely a file of another market replayed onto the wrong `--symbol`, which would
/// close that symbol's open positions at prices they never traded at.
pub fn far_from_last(first: Dec, last: Dec) -> bool {
    let (a, b) = (i128::from(first.raw()), i128::from(last.raw()));
    a > 2 * b || 2 * a < b
}

/// Replays `ticks` onto `symbol`; `progress(done, total)` after each batch.
pub async fn replay(
    engine: &Engine,
    symbol: &str,
    ticks: &[FeedTick],
    pace: Pace,
    progress: &dyn Fn(u64, u64),
) -> Result<ReplaySummary> {
    engine.symbol(symbol)?;
    let t0 = Instant::now();
    let mut total = TickOutcome::default();
    let to_tick = |f: &FeedTick| Tick {
        symbol: symbol.to_string(),
        price: f.price,
        ts: Some(f.ts),
    };
    let mut i = 0;
    while i < ticks.len() {
        let end = match pace {
            Pace::Max { batch } => (i + batch.max(1)).min(ticks.len()),
            Pace::Speed(speed) => {
                check_speed(speed)?;
                if i > 0 {
                    let gap_ms = (ticks[i].ts - ticks[i - 1].ts).max(0) as f64 / speed;
                    tokio::time::sleep(Duration::from_micros((gap_ms * 1000.0).min(60e6) as u64))
                        .await;
                }
                i + 1
            }
        };
        let out = engine
            .ingest_ticks(ticks[i..end].iter().map(to_tick).collect())
            .await?;
        total.accepted += out.accepted;
        total.fills += out.fills;
        total.liquidations += out.liquidations;
        total.stop_losses += out.stop_losses;
        total.take_profits += out.take_profits;
        total.cancelled += out.cancelled;
        i = end;
        progress(i as u64, ticks.len() as u64);
    }
    let seconds = t0.elapsed().as_secs_f64();
    Ok(ReplaySummary {
        ticks_per_sec: total.accepted as f64 / seconds.max(1e-9),
        outcome: total,
        seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_first_price_beyond_half_or_double_the_last_is_far() {
        let d = |s: &str| Dec::parse(s).unwrap();
        assert!(far_from_last(d("1.02"), d("30000")));
        assert!(far_from_last(d("60000.01"), d("30000")));
        assert!(!far_from_last(d("60000"), d("30000")));
        assert!(!far_from_last(d("15000"), d("30000")));
        assert!(!far_from_last(d("29000"), d("30000")));
        assert!(check_speed(f64::INFINITY).is_err() && check_speed(0.0).is_err());
        assert!(check_speed(f64::NAN).is_err() && check_speed(72_000.0).is_ok());
    }
}
