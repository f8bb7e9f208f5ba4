//! OHLC CSV: the header's columns in any order and case, and its three date forms.

use super::numbers::{parse_exact_int, parse_iso_utc_ms};
use super::rows::{Candle, text_price};
use super::{FeedError, MAX_TS_MS};

pub(super) struct CsvColumns {
    date: usize,
    open: usize,
    high: usize,
    low: usize,
    close: usize,
}

impl CsvColumns {
    fn from_header(line: &str) -> Result<CsvColumns, FeedError> {
        let names: Vec<String> = line
            .split(',')
            .map(|f| unquote(f).to_ascii_lowercase())
            .collect();
        let find = |wanted: &[&str]| names.iter().position(|n| wanted.contains(&n.as_str()));
        let missing = |col: &str| {
            FeedError::BadHeader(format!(
                "no {col:?} column in {:?}; expected Date,Open,High,Low,Close,Volume",
                line.trim()
            ))
        };
        Ok(CsvColumns {
            date: find(&["date", "timestamp", "time", "datetime"])
                .ok_or_else(|| missing("Date"))?,
            open: find(&["open"]).ok_or_else(|| missing("Open"))?,
            high: find(&["high"]).ok_or_else(|| missing("High"))?,
            low: find(&["low"]).ok_or_else(|| missing("Low"))?,
            close: find(&["close"]).ok_or_else(|| missing("Close"))?,
        })
    }
}

pub(super) fn unquote(field: &str) -> &str {
    let f = field.trim();
    f.strip_prefix('"')
        .and_then(|f| f.strip_suffix('"'))
        .unwrap_or(f)
        .trim()
}

pub(super) fn parse_csv(text: &str) -> Result<Vec<Candle>, FeedError> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((_, header)) = lines.next() else {
        return Err(FeedError::Empty);
    };
    let cols = CsvColumns::from_header(header)?;
    let needed = [cols.date, cols.open, cols.high, cols.low, cols.close]
        .into_iter()
        .max()
        .unwrap_or(0)
        + 1;
    let mut candles = Vec::new();
    for (row, line) in lines {
        let fields: Vec<&str> = line.split(',').map(unquote).collect();
        if fields.len() < needed {
            return Err(FeedError::BadRow {
                row,
                reason: format!("expected at least {needed} fields, found {}", fields.len()),
            });
        }
        candles.push(Candle {
            ts: csv_ts(row, fields[cols.date])?,
            open: text_price(row, "open", fields[cols.open])?,
            high: text_price(row, "high", fields[cols.high])?,
            low: text_price(row, "low", fields[cols.low])?,
            close: text_price(row, "close", fields[cols.close])?,
        });
    }
    if candles.is_empty() {
        return Err(FeedError::Empty);
    }
    Ok(candles)
}

/// Integer ms, integer seconds (below 10^11), or an ISO date in UTC.
pub(super) fn csv_ts(row: usize, field: &str) -> Result<i64, FeedError> {
    let ms = match parse_exact_int(field) {
        Some(n) if (0..100_000_000_000).contains(&n) => Some(n * 1000),
        Some(n) => Some(n),
        None => parse_iso_utc_ms(field),
    };
    match ms {
        Some(ms) if (0..=MAX_TS_MS).contains(&ms) => Ok(ms),
        _ => Err(FeedError::BadTimestamp {
            row,
            value: field.to_string(),
        }),
    }
}

/// Whether the first non-blank line of `text` is a CSV header this module reads.
pub(super) fn csv_header_like(text: &str) -> bool {
    let Some(line) = text.lines().find(|l| !l.trim().is_empty()) else {
        return false;
    };
    CsvColumns::from_header(line).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_seconds_milliseconds_or_iso_utc() {
        assert!(matches!(
            csv_ts(4, "1969-12-31"),
            Err(FeedError::BadTimestamp { row: 4, .. })
        ));
        assert!(csv_ts(1, "yesterday").is_err());
        assert_eq!(csv_ts(1, "0").ok(), Some(0));
        assert_eq!(csv_ts(1, "99999999999").ok(), Some(99_999_999_999_000));
        assert_eq!(csv_ts(1, "100000000000").ok(), Some(100_000_000_000));
    }
}
