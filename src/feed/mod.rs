//! Market data files (Freqtrade candles and trades, OHLC CSV) read as ticks for `replay` and
//! `demo --feed`, plus the deterministic synthetic feed that `demo` uses when no file is given.
//!
//! Formats understood by [`read_feed`] (a `.gz` file, or any gzip data, is decompressed first):
//!
//! - **Candles**, JSON array of `[ts_ms, open, high, low, close, volume]` rows (Freqtrade's
//!   candle files), pandas column JSON `{"date":{"0":ts_ms,…},"open":{…},"high":{…},"low":{…},
//!   "close":{…}}`, or pandas record JSON `[{"date":ts_ms,"open":…,…},…]`.
//! - **Trades**, JSON array of `[ts_ms, id, type, side, price, amount, cost]` rows (Freqtrade's
//!   trade files): one tick per trade at its price.
//! - **CSV** with a header `Date,Open,High,Low,Close,Volume` (any case, any column order, Volume
//!   optional), read as candles. `Date` is integer milliseconds, integer seconds (values below
//!   10^11 are taken as seconds), or an ISO date in UTC: `YYYY-MM-DD`, `YYYY-MM-DD HH:MM:SS` or
//!   `YYYY-MM-DDTHH:MM:SSZ` (optional `.fff` fraction and `±HH:MM` offset).
//!
//! A candle becomes four ticks: open, the extreme nearer to the open (high on a tie), the other
//! extreme, close, spread over the candle's interval (the gap to the next candle, or
//! [`LAST_CANDLE_INTERVAL_MS`] for the last one).
//!
//! Prices are exact [`Dec`]s read from the number's text, never through binary floating point.
//! A price with more than 8 fractional digits is rounded half away from zero to 8 digits; a
//! missing, NaN, zero or negative price is an error naming its row.

mod csv;
mod numbers;
mod rows;

use crate::domain::money::{Dec, ParseDecError, div_round_half_away};
use csv::{csv_header_like, parse_csv};
use rows::{
    candles_to_ticks, parse_candle_columns, parse_candle_records, parse_candle_rows,
    parse_trade_rows,
};
use serde_json::{Map, Value};
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Interval (ms) over which the four ticks of the last candle of a file are spread.
pub const LAST_CANDLE_INTERVAL_MS: i64 = 60_000;

/// Largest accepted timestamp: 9999-12-31T23:59:59.999Z in ms.
pub const MAX_TS_MS: i64 = 253_402_300_799_999;

/// Largest accepted size of decompressed gzip data (1 GiB), a guard against gzip bombs.
pub const MAX_DECOMPRESSED_BYTES: u64 = 1 << 30;

/// Time between two ticks of [`synthetic`], in ms.
pub const SYNTHETIC_TICK_MS: i64 = 250;

/// The kind of data a feed file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FeedFormat {
    /// OHLCV candles in JSON: Freqtrade rows `[ts, o, h, l, c, v]` or pandas column/record JSON.
    Candles,
    /// Freqtrade trade rows `[ts, id, type, side, price, amount, cost]` in JSON.
    Trades,
    /// OHLC candles as CSV with a `Date,Open,High,Low,Close,Volume` header.
    Csv,
}

impl fmt::Display for FeedFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FeedFormat::Candles => "candles",
            FeedFormat::Trades => "trades",
            FeedFormat::Csv => "csv",
        })
    }
}

impl FeedFormat {
    /// Detects the format of a feed from its file name (only the `.csv` / `.csv.gz` extension
    /// matters) and its content (gzip data is decompressed first). JSON content is parsed, so
    /// invalid JSON is reported here too.
    pub fn detect(file_name: &str, bytes: &[u8]) -> Result<FeedFormat, FeedError> {
        let (name, data) = decompress(file_name, bytes)?;
        let text = as_text(&data)?;
        Ok(classify(&name, text)?.format())
    }
}

/// One price observation replayed into the venue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FeedTick {
    /// The traded price, always > 0.
    pub price: Dec,
    /// Milliseconds since the Unix epoch (UTC).
    pub ts: i64,
}

/// Why a feed could not be read. Row numbers are 1-based: the row's position in a JSON array
/// (in index order for pandas column JSON), or the line number in a CSV file (header = line 1).
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// The file could not be read.
    #[error("cannot read {}", path.display())]
    Io {
        /// The file that failed.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The data looked like gzip (or the name ends in `.gz`) but did not decompress.
    #[error("cannot decompress gzip data")]
    Gzip(#[source] std::io::Error),
    /// The decompressed data exceeds [`MAX_DECOMPRESSED_BYTES`].
    #[error("decompressed data is larger than {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The content is not UTF-8 text.
    #[error("feed is not UTF-8 text")]
    NotText,
    /// The file (or its JSON array / CSV body) holds no rows.
    #[error("feed is empty: no rows")]
    Empty,
    /// The content is not valid JSON.
    #[error("not valid JSON")]
    Json(#[from] serde_json::Error),
    /// The content is none of the understood formats.
    #[error("unrecognised feed format: {0}")]
    UnknownFormat(String),
    /// The CSV header lacks a required column.
    #[error("bad CSV header: {0}")]
    BadHeader(String),
    /// A row has the wrong shape (wrong number of values, not an array, missing column...).
    #[error("row {row}: {reason}")]
    BadRow {
        /// 1-based row number.
        row: usize,
        /// What is wrong.
        reason: String,
    },
    /// A timestamp is not an integer in ms, seconds or an ISO date, or is out of range.
    #[error(
        "row {row}: bad timestamp {value:?} (expected ms since the Unix epoch, seconds, or an ISO date in UTC, from 1970 to 9999)"
    )]
    BadTimestamp {
        /// 1-based row number.
        row: usize,
        /// The offending text.
        value: String,
    },
    /// A price is not a decimal number (or is out of range).
    #[error("row {row}: {field} {value:?} is not a valid price")]
    BadPrice {
        /// 1-based row number.
        row: usize,
        /// Which price (`open`, `high`, `low`, `close`, `price`).
        field: &'static str,
        /// The offending text.
        value: String,
        /// Why it did not parse.
        #[source]
        source: ParseDecError,
    },
    /// A price is missing: JSON `null`, an empty CSV field or NaN.
    #[error("row {row}: {field} is missing (null, empty or NaN)")]
    MissingPrice {
        /// 1-based row number.
        row: usize,
        /// Which price.
        field: &'static str,
    },
    /// A price is zero or negative.
    #[error("row {row}: {field} {price} is not positive")]
    NonPositivePrice {
        /// 1-based row number.
        row: usize,
        /// Which price.
        field: &'static str,
        /// The price read.
        price: Dec,
    },
}

/// Reads a whole feed file (see the module docs for the formats) and returns its ticks in time
/// order (stable: rows with equal timestamps keep their file order).
///
/// Prices with more than 8 fractional digits are rounded half away from zero to 8 digits.
pub fn read_feed(path: &Path) -> Result<Vec<FeedTick>, FeedError> {
    read_feed_with_format(path).map(|(_, ticks)| ticks)
}

/// Like [`read_feed`], also returning the detected [`FeedFormat`].
pub fn read_feed_with_format(path: &Path) -> Result<(FeedFormat, Vec<FeedTick>), FeedError> {
    let bytes = std::fs::read(path).map_err(|source| FeedError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    parse_feed(&name, &bytes)
}

/// Parses feed content already in memory; `file_name` is only used for format detection
/// (`.gz`, `.csv`). Returns the detected format and the ticks in time order.
pub fn parse_feed(file_name: &str, bytes: &[u8]) -> Result<(FeedFormat, Vec<FeedTick>), FeedError> {
    let (name, data) = decompress(file_name, bytes)?;
    let text = as_text(&data)?;
    let source = classify(&name, text)?;
    let format = source.format();
    let ticks = match source {
        Source::Csv(text) => candles_to_ticks(parse_csv(text)?),
        Source::CandleRows(rows) => candles_to_ticks(parse_candle_rows(&rows)?),
        Source::CandleRecords(rows) => candles_to_ticks(parse_candle_records(&rows)?),
        Source::CandleColumns(map) => candles_to_ticks(parse_candle_columns(&map)?),
        Source::TradeRows(rows) => parse_trade_rows(&rows)?,
    };
    Ok((format, ticks))
}

/// Rounds every price to the nearest multiple of `tick_size` (half away from zero), never below
/// one tick. A `tick_size` that is not positive leaves the ticks unchanged. Returns how many
/// prices the rounding moved by more than 1 %, for the caller to warn about.
///
/// Needed when a feed is replayed onto a symbol whose tick is coarser than the data, e.g. XRP/ETH
/// trades at 0.0000273 onto a symbol with tick 0.01 (every such price becomes 0.01). Callers that
/// want to keep the price path may prefer to upsert a symbol with a finer tick instead.
pub fn scale_to(ticks: &mut [FeedTick], tick_size: Dec) -> usize {
    if !tick_size.is_positive() {
        return 0;
    }
    let mut distorted = 0;
    for t in ticks {
        let rounded = round_to_tick(t.price, tick_size);
        let moved = (i128::from(rounded.raw()) - i128::from(t.price.raw())).abs();
        if moved * 100 > i128::from(t.price.raw()) {
            distorted += 1;
        }
        t.price = rounded;
    }
    distorted
}

/// The coarsest power-of-ten step, at most `cap`, that every price of `ticks` is a multiple
/// of: the tick a symbol needs to take the feed's prices as they are.
pub fn finest_step(ticks: &[FeedTick], cap: Dec) -> Dec {
    let mut step = 1i64;
    while step < cap.raw() && ticks.iter().all(|t| t.price.raw() % (step * 10) == 0) {
        step *= 10;
    }
    Dec(step.min(cap.raw().max(1)))
}

/// Warns (through `tracing`) when [`scale_to`] moved `distorted` of `total` prices by more
/// than 1 %: the feed is finer than the symbol's tick, and its price path is not kept.
pub fn warn_if_distorted(distorted: usize, total: usize, symbol: &str, tick_size: Dec) {
    if distorted > 0 {
        tracing::warn!(
            "{distorted} of {total} prices moved by more than 1 % when rounded to {symbol}'s \
             tick_size {tick_size}: the feed is finer than the symbol. To keep its price path, \
             give the symbol a finer tick first (PUT /api/v1/symbols/{symbol})"
        );
    }
}

/// A deterministic random walk of `n` ticks for `litetrade demo`: the first tick is `start`,
/// then each step moves the price up or down (equally likely) by a uniformly random amount of
/// up to `step_bps` basis points (capped at 10 000) of the current level. The walk itself is
/// carried with extra precision so that moves smaller than a tick accumulate; each emitted price
/// is rounded to `tick_size` (half away from zero) and is at least one tick. Timestamps are
/// `i * 250` ms from 0. The same arguments always give the same ticks (hand-written splitmix64
/// generator). A `tick_size` that is not positive is taken as 0.00000001; a `start` below one
/// tick starts at one tick.
pub fn synthetic(seed: u64, start: Dec, n: usize, step_bps: u32, tick_size: Dec) -> Vec<FeedTick> {
    // the walk is carried in units of 10^-14 (raw units * FINE)
    const FINE: i128 = 1_000_000;
    const BPS: i128 = 10_000;
    let tick = if tick_size.is_positive() {
        tick_size
    } else {
        Dec(1)
    };
    let span = i128::from(step_bps.min(10_000)) * FINE; // in millionths of a basis point
    let floor = i128::from(tick.raw()) * FINE;
    let ceil = (i128::from(i64::MAX / 2) * FINE).max(floor);
    let mut level = (i128::from(start.raw()) * FINE).max(floor).min(ceil);
    let mut rng = crate::domain::rng::Rng(seed);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        if i > 0 {
            let amount = (u128::from(rng.next_u64()) % (span as u128 + 1)) as i128;
            let delta = level * amount / (BPS * FINE);
            level = if rng.next_u64() & 1 == 0 {
                level + delta
            } else {
                level - delta
            };
            level = level.max(floor).min(ceil);
        }
        let raw = i64::try_from(div_round_half_away(level, FINE)).unwrap_or(i64::MAX / 2);
        out.push(FeedTick {
            price: round_to_tick(Dec(raw), tick),
            ts: i64::try_from(i)
                .unwrap_or(i64::MAX)
                .saturating_mul(SYNTHETIC_TICK_MS),
        });
    }
    out
}

/// Nearest multiple of `step` (> 0), half away from zero, at least one step, within i64.
fn round_to_tick(p: Dec, step: Dec) -> Dec {
    let s = i128::from(step.raw());
    let q = div_round_half_away(i128::from(p.raw()), s).max(1);
    let v = q * s;
    match i64::try_from(v) {
        Ok(v) => Dec(v),
        // rounding up overflowed: take the largest multiple that fits
        Err(_) => Dec(((i128::from(i64::MAX) / s) * s) as i64),
    }
}

// ---------------------------------------------------------------------------------------------
// input decoding and format detection

/// Gunzips when the name ends in `.gz` or the data starts with the gzip magic; returns the name
/// without `.gz` (lower-cased) and the data.
fn decompress<'a>(
    file_name: &str,
    bytes: &'a [u8],
) -> Result<(String, std::borrow::Cow<'a, [u8]>), FeedError> {
    let lower = file_name.to_ascii_lowercase();
    let named_gz = lower.ends_with(".gz");
    let name = lower.strip_suffix(".gz").unwrap_or(&lower).to_string();
    let magic = bytes.starts_with(&[0x1f, 0x8b]);
    if !named_gz && !magic {
        return Ok((name, std::borrow::Cow::Borrowed(bytes)));
    }
    if bytes.is_empty() {
        return Err(FeedError::Empty);
    }
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .take(MAX_DECOMPRESSED_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(FeedError::Gzip)?;
    if out.len() as u64 > MAX_DECOMPRESSED_BYTES {
        return Err(FeedError::TooLarge {
            limit: MAX_DECOMPRESSED_BYTES,
        });
    }
    Ok((name, std::borrow::Cow::Owned(out)))
}

fn as_text(data: &[u8]) -> Result<&str, FeedError> {
    let text = std::str::from_utf8(data).map_err(|_| FeedError::NotText)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        return Err(FeedError::Empty);
    }
    Ok(text)
}

/// Parsed content, ready for row conversion.
enum Source<'a> {
    Csv(&'a str),
    CandleRows(Vec<Value>),
    CandleRecords(Vec<Value>),
    CandleColumns(Map<String, Value>),
    TradeRows(Vec<Value>),
}

impl Source<'_> {
    fn format(&self) -> FeedFormat {
        match self {
            Source::Csv(_) => FeedFormat::Csv,
            Source::CandleRows(_) | Source::CandleRecords(_) | Source::CandleColumns(_) => {
                FeedFormat::Candles
            }
            Source::TradeRows(_) => FeedFormat::Trades,
        }
    }
}

const CANDLE_KEYS: [&str; 5] = ["date", "open", "high", "low", "close"];
const CANDLE_ROW: &str = "[ts, open, high, low, close, volume]";
const TRADE_ROW: &str = "[ts, id, type, side, price, amount, cost]";

/// `name` is lower-case and without `.gz`; `text` is not blank.
fn classify<'a>(name: &str, text: &'a str) -> Result<Source<'a>, FeedError> {
    if name.ends_with(".csv") {
        return Ok(Source::Csv(text));
    }
    let first = text.trim_start().as_bytes().first().copied();
    let looks_json = matches!(first, Some(b'[' | b'{')) || name.ends_with(".json");
    if !looks_json {
        if csv_header_like(text) {
            return Ok(Source::Csv(text));
        }
        return Err(FeedError::UnknownFormat(
            "neither JSON nor CSV with a Date,Open,High,Low,Close header".into(),
        ));
    }
    match serde_json::from_str::<Value>(text)? {
        Value::Array(rows) => {
            let Some(first) = rows.first() else {
                return Err(FeedError::Empty);
            };
            match first {
                Value::Array(r) if r.len() == 6 => Ok(Source::CandleRows(rows)),
                Value::Array(r) if r.len() == 7 => Ok(Source::TradeRows(rows)),
                Value::Array(r) => Err(FeedError::UnknownFormat(format!(
                    "JSON rows of {} values; expected 6 {CANDLE_ROW} for candles or 7 {TRADE_ROW} for trades",
                    r.len()
                ))),
                Value::Object(o) if CANDLE_KEYS.iter().all(|k| o.contains_key(*k)) => {
                    Ok(Source::CandleRecords(rows))
                }
                _ => Err(FeedError::UnknownFormat(
                    "JSON array of neither candle nor trade rows".into(),
                )),
            }
        }
        Value::Object(map) if CANDLE_KEYS.iter().all(|k| map.contains_key(*k)) => {
            Ok(Source::CandleColumns(map))
        }
        Value::Object(_) => Err(FeedError::UnknownFormat(
            "JSON object without the keys \"date\", \"open\", \"high\", \"low\", \"close\"".into(),
        )),
        _ => Err(FeedError::UnknownFormat(
            "JSON is neither an array of rows nor a pandas column object".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn dec(s: &str) -> Dec {
        Dec::parse(s).expect("test decimal")
    }

    fn ticks(pairs: &[(&str, i64)]) -> Vec<FeedTick> {
        pairs
            .iter()
            .map(|&(p, ts)| FeedTick { price: dec(p), ts })
            .collect()
    }

    fn write(dir: &Path, name: &str, content: &[u8]) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, content).expect("write fixture");
        path
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).expect("gzip");
        enc.finish().expect("gzip")
    }

    fn read_str(name: &str, content: &str) -> Result<(FeedFormat, Vec<FeedTick>), FeedError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(dir.path(), name, content.as_bytes());
        read_feed_with_format(&path)
    }

    #[test]
    fn array_candles_expand_to_four_ticks_nearer_extreme_first() {
        // candle 1: low nearer (1 vs 2); candle 2: high nearer (0.5 vs 3); candle 3: tie → high
        let json =
            "[[1000, 10, 12, 9, 11, 5],\n [1600, 11, 11.5, 8, 9, 1],\n [2000, 10, 11, 9, 10.5, 0]]";
        let (format, got) = read_str("c.json", json).expect("reads");
        assert_eq!(format, FeedFormat::Candles);
        assert_eq!(
            got,
            ticks(&[
                ("10", 1000),
                ("9", 1150),
                ("12", 1300),
                ("11", 1450),
                ("11", 1600),
                ("11.5", 1700),
                ("8", 1800),
                ("9", 1900),
                ("10", 2000),
                ("11", 17_000),
                ("9", 32_000),
                ("10.5", 47_000),
            ])
        );
    }

    #[test]
    fn candles_are_sorted_and_exact() {
        // out of order; exponent, string and high-precision prices; ts in exponent form
        let json = r#"[[120000, "0.00162008", 2e-3, 0.0016, 1.6E-3, 1],
                       [6e4, 0.000000015, 0.00000002, 0.000000014999, 0.00000001, 0]]"#;
        let got = parse_feed("x.json", json.as_bytes()).expect("reads").1;
        assert_eq!(
            got,
            ticks(&[
                ("0.00000002", 60_000), // 0.000000015 rounded half away
                ("0.00000002", 75_000), // high: distance 0 → high first
                ("0.00000001", 90_000), // 0.000000014999 rounded
                ("0.00000001", 105_000),
                ("0.00162008", 120_000),
                ("0.0016", 135_000),
                ("0.002", 150_000),
                ("0.0016", 165_000),
            ])
        );
    }

    #[test]
    fn pandas_column_candles() {
        // index labels out of order and past 9 (string order would put "10" before "2")
        let json = r#"{
            "date":  {"1": 300000, "0": 0,     "10": 900000, "2": 600000},
            "open":  {"1": 101,    "0": 100,   "10": 103,    "2": 102},
            "high":  {"1": 103,    "0": 100.2, "10": 104,    "2": 102.1},
            "low":   {"1": 100.5,  "0": 99,    "10": 102,    "2": 101},
            "close": {"1": 102,    "0": 101,   "10": 103.5,  "2": 101.5},
            "volume": {}
        }"#;
        let (format, got) = read_str("btc.json", json).expect("reads");
        assert_eq!(format, FeedFormat::Candles);
        assert_eq!(
            got,
            ticks(&[
                ("100", 0),
                ("100.2", 75_000),
                ("99", 150_000),
                ("101", 225_000),
                ("101", 300_000),
                ("100.5", 375_000),
                ("103", 450_000),
                ("102", 525_000),
                ("102", 600_000),
                ("102.1", 675_000),
                ("101", 750_000),
                ("101.5", 825_000),
                ("103", 900_000),
                ("104", 915_000),
                ("102", 930_000),
                ("103.5", 945_000),
            ])
        );
    }

    #[test]
    fn pandas_record_candles() {
        let json = r#"[{"date":"2023-01-02T16:45:00.000Z","open":2,"high":3,"low":1.5,"close":2.5,"volume":1}]"#;
        let (format, got) = read_str("r.json", json).expect("reads");
        assert_eq!(format, FeedFormat::Candles);
        let t0 = 1_672_677_900_000;
        assert_eq!(
            got,
            ticks(&[
                ("2", t0),
                ("1.5", t0 + 15_000),
                ("3", t0 + 30_000),
                ("2.5", t0 + 45_000)
            ])
        );
    }

    const TRADES: &str = r#"[[1570752011620,"13519807",null,"sell",0.00141342,23.0,0.03250866],
        [1570752011620,"13519808",null,"sell",0.00141266,54.0,0.07628364],
        [1570752000000,"13519806",null,"buy",0.001413,1.0,0.001413]]"#;

    fn trade_ticks() -> Vec<FeedTick> {
        ticks(&[
            ("0.001413", 1_570_752_000_000),
            ("0.00141342", 1_570_752_011_620),
            ("0.00141266", 1_570_752_011_620),
        ])
    }

    #[test]
    fn trades_json_one_tick_each_sorted_stably() {
        let (format, got) = read_str("t.json", TRADES).expect("reads");
        assert_eq!(format, FeedFormat::Trades);
        assert_eq!(got, trade_ticks());
    }

    #[test]
    fn trades_json_gz() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(
            dir.path(),
            "XRP_ETH-trades.json.gz",
            &gzip(TRADES.as_bytes()),
        );
        assert_eq!(read_feed(&path).expect("reads"), trade_ticks());
        // gzip is also recognised by its magic bytes, whatever the name
        let path = write(dir.path(), "trades.dat", &gzip(TRADES.as_bytes()));
        assert_eq!(read_feed(&path).expect("reads"), trade_ticks());
        assert_eq!(
            FeedFormat::detect("a.json.gz", &gzip(TRADES.as_bytes())).expect("detects"),
            FeedFormat::Trades
        );
    }

    #[test]
    fn csv_with_each_date_form() {
        let t0 = 1_672_677_900_000; // 2023-01-02 16:45:00 UTC
        let forms = [
            ("1672677900000", "1672678200000"),
            ("1672677900", "1672678200"),
            ("2023-01-02 16:45:00", "2023-01-02 16:50:00"),
            ("2023-01-02T16:45:00Z", "2023-01-02T16:50:00Z"),
            ("\"2023-01-02T17:45:00+01:00\"", "2023-01-02T16:50:00.000Z"),
        ];
        for (a, b) in forms {
            let csv = format!(
                "Date,Open,High,Low,Close,Volume\n{a},100,101,99.5,100.5,10\n\n{b},100.5,101,100,101,3\n"
            );
            let (format, got) = read_str("feed.csv", &csv).expect("reads");
            assert_eq!(format, FeedFormat::Csv);
            assert_eq!(
                got,
                ticks(&[
                    ("100", t0),
                    ("99.5", t0 + 75_000),
                    ("101", t0 + 150_000),
                    ("100.5", t0 + 225_000),
                    ("100.5", t0 + 300_000),
                    ("101", t0 + 315_000),
                    ("100", t0 + 330_000),
                    ("101", t0 + 345_000),
                ]),
                "date form {a}"
            );
        }
        // date only; lower-case header in another order; no volume; gzipped
        let csv = "close,low,high,open,DATE\n2,1,3,2,2024-02-29\n";
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(dir.path(), "daily.csv.gz", &gzip(csv.as_bytes()));
        let day = 1_709_164_800_000;
        assert_eq!(
            read_feed_with_format(&path).expect("reads"),
            (
                FeedFormat::Csv,
                ticks(&[
                    ("2", day),
                    ("3", day + 15_000),
                    ("1", day + 30_000),
                    ("2", day + 45_000)
                ])
            )
        );
        // CSV recognised by its header without a .csv name
        let (format, _) =
            read_str("feed.txt", "Date,Open,High,Low,Close,Volume\n0,1,1,1,1,1\n").expect("reads");
        assert_eq!(format, FeedFormat::Csv);
    }

    #[test]
    fn bad_input_is_a_clear_error() {
        let err = |name: &str, content: &str| match read_str(name, content) {
            Ok(t) => panic!("{name} {content:?} accepted: {t:?}"),
            Err(e) => e,
        };
        assert!(matches!(err("a.json", ""), FeedError::Empty));
        assert!(matches!(err("a", "  \n"), FeedError::Empty));
        assert!(matches!(err("a.json", "[]"), FeedError::Empty));
        assert!(matches!(
            err("a.csv", "Date,Open,High,Low,Close,Volume\n"),
            FeedError::Empty
        ));
        assert!(matches!(
            err(
                "a.json",
                r#"{"date":{},"open":{},"high":{},"low":{},"close":{}}"#
            ),
            FeedError::Empty
        ));
        assert!(matches!(err("a.json", "hello"), FeedError::Json(_)));
        assert!(matches!(
            err("a.json", "[[1,2,3,4,5,6]"),
            FeedError::Json(_)
        ));
        assert!(matches!(err("a.txt", "hello"), FeedError::UnknownFormat(_)));
        assert!(matches!(
            err("a.json", "[[1,2,3]]"),
            FeedError::UnknownFormat(_)
        ));
        assert!(matches!(
            err("a.json", "[1,2]"),
            FeedError::UnknownFormat(_)
        ));
        assert!(matches!(
            err("a.json", r#"{"a":1}"#),
            FeedError::UnknownFormat(_)
        ));
        assert!(matches!(err("a.json", "42"), FeedError::UnknownFormat(_)));
        assert!(matches!(
            err("a.json", "[[0,1,1,1,1,1],[60000,1,1,1,1]]"),
            FeedError::BadRow { row: 2, .. }
        ));
        assert!(matches!(
            err("a.json", "[[0,1,1,1,1,1],7]"),
            FeedError::BadRow { row: 2, .. }
        ));
        let e = err("a.json", "[[0,1,1,1,1,1],[60000,1,1,-1,1,1]]");
        assert!(
            matches!(
                e,
                FeedError::NonPositivePrice {
                    row: 2,
                    field: "low",
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(e.to_string(), "row 2: low -1 is not positive");
        assert!(matches!(
            err("a.json", r#"[[0,"1",null,"buy",0,1,0]]"#),
            FeedError::NonPositivePrice {
                row: 1,
                field: "price",
                ..
            }
        ));
        assert!(matches!(
            err("a.json", "[[0,1,1,null,1,1]]"),
            FeedError::MissingPrice {
                row: 1,
                field: "low"
            }
        ));
        assert!(matches!(
            err("a.json", r#"[[0,"NaN",1,1,1,1]]"#),
            FeedError::MissingPrice {
                row: 1,
                field: "open"
            }
        ));
        assert!(matches!(
            err("a.json", r#"[[0,"1,5",1,1,1,1]]"#),
            FeedError::BadPrice {
                row: 1,
                field: "open",
                ..
            }
        ));
        assert!(matches!(
            err("a.json", "[[0,true,1,1,1,1]]"),
            FeedError::BadRow { row: 1, .. }
        ));
        assert!(matches!(
            err("a.json", "[[-5,1,1,1,1,1]]"),
            FeedError::BadTimestamp { row: 1, .. }
        ));
        assert!(matches!(
            err("a.json", "[[1.5,1,1,1,1,1]]"),
            FeedError::BadTimestamp { row: 1, .. }
        ));
        assert!(matches!(
            err(
                "a.json",
                r#"{"date":{"0":0},"open":{"0":1},"high":{"0":1},"low":{},"close":{"0":1}}"#
            ),
            FeedError::BadRow { row: 1, .. }
        ));
        assert!(matches!(
            err(
                "a.json",
                r#"[{"date":0,"open":1,"high":1,"low":1,"close":1},{"date":0}]"#
            ),
            FeedError::BadRow { row: 2, .. }
        ));
        // CSV: row number = line number (header is line 1, blank lines count)
        let csv = "Date,Open,High,Low,Close,Volume\n0,1,1,1,1,1\n\n60,1,NaN,1,1,1\n";
        let e = err("a.csv", csv);
        assert!(
            matches!(
                e,
                FeedError::MissingPrice {
                    row: 4,
                    field: "high"
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().starts_with("row 4: "));
        assert!(matches!(
            err("a.csv", "Date,Open,High,Low,Close,Volume\n0,1,1,-2,1,1\n"),
            FeedError::NonPositivePrice { row: 2, .. }
        ));
        assert!(matches!(
            err("a.csv", "Date,Open,High,Low,Close,Volume\n0,1,1\n"),
            FeedError::BadRow { row: 2, .. }
        ));
        assert!(matches!(
            err("a.csv", "Date,Open,High,Low,Close,Volume\nsoon,1,1,1,1,1\n"),
            FeedError::BadTimestamp { row: 2, .. }
        ));
        assert!(matches!(
            err("a.csv", "Time,Price\n0,1\n"),
            FeedError::BadHeader(_)
        ));
        assert!(matches!(err("a.json.gz", "not gzip"), FeedError::Gzip(_)));
        assert!(matches!(
            read_feed(Path::new("/nonexistent/feed.json")),
            Err(FeedError::Io { .. })
        ));
        assert!(matches!(
            parse_feed("a.json", &[b'[', 0xff, b']']),
            Err(FeedError::NotText)
        ));
    }

    #[test]
    fn finest_step_is_the_coarsest_power_of_ten_that_fits() {
        let t = |p: &str| FeedTick {
            price: dec(p),
            ts: 0,
        };
        let cent = dec("0.01");
        assert_eq!(
            finest_step(&[t("0.00162008"), t("0.0016")], cent),
            dec("0.00000001")
        );
        assert_eq!(finest_step(&[t("101.5"), t("100.25")], cent), cent);
        assert_eq!(finest_step(&[t("101.5"), t("100.2")], cent), dec("0.01"));
        assert_eq!(finest_step(&[t("101.5"), t("100.2")], Dec::ONE), dec("0.1"));
        assert_eq!(finest_step(&[t("30000"), t("31000")], Dec::ONE), Dec::ONE);
        assert_eq!(finest_step(&[], cent), cent);
    }

    #[test]
    fn scale_to_rounds_half_away_never_to_zero() {
        let mut t = ticks(&[
            ("0.0000273", 0),
            ("1.005", 1),
            ("1.00499999", 2),
            ("2.5", 3),
            ("100", 4),
        ]);
        // only 0.0000273 → 0.01 moves by more than 1 %
        assert_eq!(scale_to(&mut t, dec("0.01")), 1);
        assert_eq!(
            t,
            ticks(&[("0.01", 0), ("1.01", 1), ("1", 2), ("2.5", 3), ("100", 4)])
        );
        // 0.01 → 1 and 2.5 → 3
        assert_eq!(scale_to(&mut t, Dec::ONE), 2);
        assert_eq!(
            t,
            ticks(&[("1", 0), ("1", 1), ("1", 2), ("3", 3), ("100", 4)])
        );
        let before = t.clone();
        assert_eq!(scale_to(&mut t, Dec::ZERO), 0);
        assert_eq!(t, before);
        let mut big = vec![FeedTick {
            price: Dec(i64::MAX),
            ts: 0,
        }];
        scale_to(&mut big, dec("1000"));
        assert!(big[0].price.is_positive() && big[0].price.is_multiple_of(dec("1000")));
    }

    #[test]
    fn synthetic_is_deterministic_and_well_formed() {
        let tick = dec("0.01");
        let a = synthetic(42, dec("100"), 5000, 5, tick);
        assert_eq!(a, synthetic(42, dec("100"), 5000, 5, tick));
        assert_ne!(a, synthetic(43, dec("100"), 5000, 5, tick));
        assert_eq!(a.len(), 5000);
        assert_eq!(a[0].price, dec("100"));
        for (i, t) in a.iter().enumerate() {
            assert_eq!(t.ts, i as i64 * 250);
            assert!(t.price.is_positive() && t.price.is_multiple_of(tick));
        }
        for w in a.windows(2) {
            // at most 5 bps of the level per step, plus rounding
            let diff = (w[1].price.raw() - w[0].price.raw()).abs();
            assert!(diff <= w[0].price.raw() * 5 / 10_000 + tick.raw(), "{w:?}");
        }
        let distinct: std::collections::BTreeSet<_> = a.iter().map(|t| t.price).collect();
        assert!(distinct.len() > 10, "walk hardly moves: {}", distinct.len());
        assert!(synthetic(1, dec("100"), 0, 5, tick).is_empty());
        // a violent walk near zero stays at or above one tick
        let low = synthetic(7, dec("0.01"), 2000, 10_000, tick);
        assert!(low.iter().all(|t| t.price >= tick));
        let odd = synthetic(7, Dec::ZERO, 100, u32::MAX, Dec::ZERO);
        assert!(odd.iter().all(|t| t.price.is_positive()));
    }

    #[test]
    fn shared_real_data_when_present() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            eprintln!("skipping: {} not found", dir.display());
            return;
        };
        let expected = [
            ("btcusdt-5m-2023.json", 4 * 10_999),
            ("xrpusdt-1h-2021.json.gz", 400),
            ("unittest-btc-1m-2017.json", 4 * 13_681),
            ("xrpeth-trades-2019.json.gz", 12_477),
        ];
        let mut checked = 0;
        for entry in entries {
            let path = entry.expect("dir entry").path();
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let is_feed = [".json", ".json.gz", ".csv", ".csv.gz"]
                .iter()
                .any(|ext| name.ends_with(ext));
            if !is_feed {
                continue;
            }
            let got = read_feed(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!got.is_empty(), "{name}");
            assert!(
                got.windows(2).all(|w| w[0].ts <= w[1].ts),
                "{name}: ts order"
            );
            assert!(got.iter().all(|t| t.price.is_positive()), "{name}: prices");
            if let Some((_, n)) = expected.iter().find(|(f, _)| *f == name) {
                assert_eq!(got.len(), *n, "{name}");
                checked += 1;
            }
            match name.as_str() {
                "btcusdt-5m-2023.json" => {
                    let t0 = 1_672_677_900_000;
                    assert_eq!(
                        got[..4],
                        ticks(&[
                            ("16727.3", t0),
                            ("16726", t0 + 75_000),
                            ("16728.8", t0 + 150_000),
                            ("16726.1", t0 + 225_000),
                        ])
                    );
                }
                "xrpeth-trades-2019.json.gz" => {
                    assert_eq!(got[0], ticks(&[("0.00141342", 1_570_752_011_620)])[0]);
                }
                _ => {}
            }
        }
        eprintln!("checked {checked} known data files in {}", dir.display());
    }
}
