//! JSON rows: Freqtrade candle arrays, pandas column and record candles, and trade rows, each
//! checked field by field; and candles expanded into four ticks each.

use super::numbers::{parse_dec_rounded, parse_exact_int, parse_iso_utc_ms};
use super::{
    CANDLE_KEYS, CANDLE_ROW, FeedError, FeedTick, LAST_CANDLE_INTERVAL_MS, MAX_TS_MS, TRADE_ROW,
};
use crate::domain::money::Dec;
use serde_json::{Map, Value};

/// One candle of any source, read exactly.
pub(super) struct Candle {
    pub(super) ts: i64,
    pub(super) open: Dec,
    pub(super) high: Dec,
    pub(super) low: Dec,
    pub(super) close: Dec,
}

/// Expands candles (any order) into ticks: open, nearer extreme, other extreme, close.
pub(super) fn candles_to_ticks(mut candles: Vec<Candle>) -> Vec<FeedTick> {
    candles.sort_by_key(|c| c.ts); // stable
    let mut out = Vec::with_capacity(candles.len() * 4);
    for (i, c) in candles.iter().enumerate() {
        let interval = candles
            .get(i + 1)
            .map_or(LAST_CANDLE_INTERVAL_MS, |next| next.ts - c.ts);
        let open = i128::from(c.open.raw());
        let to_high = (i128::from(c.high.raw()) - open).abs();
        let to_low = (open - i128::from(c.low.raw())).abs();
        let (first, second) = if to_high <= to_low {
            (c.high, c.low)
        } else {
            (c.low, c.high)
        };
        // ts <= MAX_TS_MS and interval <= MAX_TS_MS + 60_000: no overflow
        for (k, price) in [c.open, first, second, c.close].into_iter().enumerate() {
            out.push(FeedTick {
                price,
                ts: c.ts + interval * k as i64 / 4,
            });
        }
    }
    out
}

pub(super) fn row_shape<'v>(
    row: usize,
    v: &'v Value,
    len: usize,
    shape: &str,
) -> Result<&'v [Value], FeedError> {
    match v {
        Value::Array(a) if a.len() == len => Ok(a),
        Value::Array(a) => Err(FeedError::BadRow {
            row,
            reason: format!("expected {len} values {shape}, found {}", a.len()),
        }),
        other => Err(FeedError::BadRow {
            row,
            reason: format!("expected an array {shape}, found {}", json_kind(other)),
        }),
    }
}

pub(super) fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

pub(super) fn parse_candle_rows(rows: &[Value]) -> Result<Vec<Candle>, FeedError> {
    rows.iter()
        .enumerate()
        .map(|(i, v)| {
            let row = i + 1;
            let a = row_shape(row, v, 6, CANDLE_ROW)?;
            Ok(Candle {
                ts: json_ts(row, &a[0])?,
                open: json_price(row, "open", &a[1])?,
                high: json_price(row, "high", &a[2])?,
                low: json_price(row, "low", &a[3])?,
                close: json_price(row, "close", &a[4])?,
            })
        })
        .collect()
}

pub(super) fn parse_candle_records(rows: &[Value]) -> Result<Vec<Candle>, FeedError> {
    rows.iter()
        .enumerate()
        .map(|(i, v)| {
            let row = i + 1;
            let Value::Object(o) = v else {
                return Err(FeedError::BadRow {
                    row,
                    reason: format!(
                        "expected an object with {CANDLE_KEYS:?}, found {}",
                        json_kind(v)
                    ),
                });
            };
            let get = |key: &str| {
                o.get(key).ok_or_else(|| FeedError::BadRow {
                    row,
                    reason: format!("missing key {key:?}"),
                })
            };
            Ok(Candle {
                ts: json_ts(row, get("date")?)?,
                open: json_price(row, "open", get("open")?)?,
                high: json_price(row, "high", get("high")?)?,
                low: json_price(row, "low", get("low")?)?,
                close: json_price(row, "close", get("close")?)?,
            })
        })
        .collect()
}

/// pandas `to_json(orient="columns")`: one object per column, keyed by the row index label.
pub(super) fn parse_candle_columns(map: &Map<String, Value>) -> Result<Vec<Candle>, FeedError> {
    let mut columns = Vec::with_capacity(5);
    for key in CANDLE_KEYS {
        match map.get(key) {
            Some(Value::Object(col)) => columns.push(col),
            Some(other) => {
                return Err(FeedError::UnknownFormat(format!(
                    "pandas column {key:?} is {}, expected an object of index → value",
                    json_kind(other)
                )));
            }
            None => return Err(FeedError::UnknownFormat(format!("missing column {key:?}"))),
        }
    }
    let dates = columns[0];
    if dates.is_empty() {
        return Err(FeedError::Empty);
    }
    // index labels in numeric order when they are numbers (pandas' default RangeIndex)
    let mut labels: Vec<&String> = dates.keys().collect();
    labels.sort_by(|a, b| match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        _ => a.cmp(b),
    });
    labels
        .into_iter()
        .enumerate()
        .map(|(i, label)| {
            let row = i + 1;
            let cell = |c: usize| {
                columns[c].get(label).ok_or_else(|| FeedError::BadRow {
                    row,
                    reason: format!(
                        "column {:?} has no value for index {label:?}",
                        CANDLE_KEYS[c]
                    ),
                })
            };
            Ok(Candle {
                ts: json_ts(row, cell(0)?)?,
                open: json_price(row, "open", cell(1)?)?,
                high: json_price(row, "high", cell(2)?)?,
                low: json_price(row, "low", cell(3)?)?,
                close: json_price(row, "close", cell(4)?)?,
            })
        })
        .collect()
}

pub(super) fn parse_trade_rows(rows: &[Value]) -> Result<Vec<FeedTick>, FeedError> {
    let mut ticks = rows
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let row = i + 1;
            let a = row_shape(row, v, 7, TRADE_ROW)?;
            Ok(FeedTick {
                ts: json_ts(row, &a[0])?,
                price: json_price(row, "price", &a[4])?,
            })
        })
        .collect::<Result<Vec<_>, FeedError>>()?;
    ticks.sort_by_key(|t| t.ts); // stable
    Ok(ticks)
}

/// A JSON timestamp: an integer number of ms (exact text, `1.6e12` allowed when integral), or a
/// string holding such an integer or an ISO date.
pub(super) fn json_ts(row: usize, v: &Value) -> Result<i64, FeedError> {
    let bad = |value: String| FeedError::BadTimestamp { row, value };
    let ms = match v {
        Value::Number(n) => parse_exact_int(n.as_str()),
        Value::String(s) => parse_exact_int(s).or_else(|| parse_iso_utc_ms(s)),
        other => return Err(bad(other.to_string())),
    };
    match ms {
        Some(ms) if (0..=MAX_TS_MS).contains(&ms) => Ok(ms),
        _ => Err(bad(match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })),
    }
}

pub(super) fn json_price(row: usize, field: &'static str, v: &Value) -> Result<Dec, FeedError> {
    match v {
        Value::Number(n) => text_price(row, field, n.as_str()),
        Value::String(s) => text_price(row, field, s),
        Value::Null => Err(FeedError::MissingPrice { row, field }),
        other => Err(FeedError::BadRow {
            row,
            reason: format!("{field} is {}, expected a number", json_kind(other)),
        }),
    }
}

pub(super) fn text_price(row: usize, field: &'static str, text: &str) -> Result<Dec, FeedError> {
    let t = text.trim();
    if t.is_empty() || t.eq_ignore_ascii_case("nan") {
        return Err(FeedError::MissingPrice { row, field });
    }
    let price = parse_dec_rounded(t).map_err(|source| FeedError::BadPrice {
        row,
        field,
        value: t.to_string(),
        source,
    })?;
    if !price.is_positive() {
        return Err(FeedError::NonPositivePrice { row, field, price });
    }
    Ok(price)
}
