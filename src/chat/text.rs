//! Reply text: engine errors as one friendly line, orders, positions, trades and config as
//! plain text, UTC timestamps, and the split of a long reply into pages.

use super::{PAGE_CHARS, usage};
use crate::domain::model::{
    Order, OrderStatus, OrderType, Position, Side, Trade, UserConfig, breaks_text,
};
use crate::domain::money::{Dec, SCALE};
use crate::error::Error;
use std::fmt::Write as _;

/// Room kept free on each page for the `(page i/n)` marker.
const MARKER_RESERVE: usize = 64;
/// Longest piece of user input echoed back in a reply.
const ECHO_CHARS: usize = 32;

pub(super) fn usage_err(cmd: &str, problem: Option<String>) -> String {
    let u = usage(cmd).unwrap_or("/help");
    match problem {
        Some(p) => format!("{}.\nUsage: {u}", capitalize(&p)),
        None => format!("Usage: {u}"),
    }
}

/// One friendly line for an engine error.
pub(super) fn err_text(e: &Error) -> String {
    let line = match e {
        Error::InsufficientBalance { needed, available } => {
            format!("Insufficient balance: needs {needed} USDT, available {available} USDT.")
        }
        Error::NotFound("user") => {
            "Your account is not registered here; ask an admin to create it.".into()
        }
        Error::NotFound(what) => format!("No such {what}."),
        Error::UnknownSymbol(s) => format!("Unknown symbol {}.", clip(s, ECHO_CHARS)),
        Error::NoPrice(s) => format!(
            "No price yet for {}; try again after the next tick.",
            clip(s, ECHO_CHARS)
        ),
        Error::PromoInvalid(m) => format!("Promo code invalid: {m}."),
        Error::PromoAlreadyRedeemed => "You have already redeemed this promo code.".into(),
        Error::Conflict(m) => format!("Cannot do that: {m}."),
        Error::LicenseRequired => {
            "An active license is required to trade: redeem a promo code with /redeem CODE.".into()
        }
        Error::Invalid(m) => format!("Rejected: {m}."),
        Error::Forbidden(m) => format!("Not allowed: {m}."),
        Error::Unauthorized => "Not authorized.".into(),
        Error::Unavailable(_) | Error::Locked(_) | Error::Stopped(_) => {
            "The service is busy or stopping; please try again in a moment.".into()
        }
        Error::Internal(_) => {
            "Something went wrong on our side (internal error); please try again later.".into()
        }
    };
    clip(&line.replace(['\n', '\r'], " "), 300)
}

pub(super) fn placed_text(o: &Order) -> String {
    let kind = match (o.order_type, o.price) {
        (OrderType::Limit, Some(p)) => format!("limit @ {p}"),
        _ => "market".to_string(),
    };
    let stops = stops_text(o.sl, o.tp);
    match o.status {
        OrderStatus::Filled => {
            let verb = match o.side {
                Side::Buy => "bought",
                Side::Sell => "sold",
            };
            let mut s = format!(
                "Order #{} filled: {verb} {} {} at {} ({kind}, x{}, {}).",
                o.id,
                o.qty,
                o.symbol,
                o.fill_price
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "?".into()),
                o.leverage,
                o.account_type
            );
            if let Some(f) = o.fee {
                let _ = write!(s, "\nFee: {f} USDT.");
            }
            if let Some(pid) = o.position_id {
                let _ = write!(
                    s,
                    "\nPosition #{pid} opened{stops}. Close it with /close {pid}"
                );
            }
            s
        }
        OrderStatus::Pending => format!(
            "Order #{} resting: {} {} {} {kind} (x{}, {}){stops}.\nReserved: {} USDT. Cancel it with /cancel {}",
            o.id, o.side, o.qty, o.symbol, o.leverage, o.account_type, o.reserve, o.id
        ),
        OrderStatus::Cancelled => {
            format!(
                "Order #{} is cancelled: {} {} {} {kind}.",
                o.id, o.side, o.qty, o.symbol
            )
        }
    }
}

pub(super) fn stops_text(sl: Option<Dec>, tp: Option<Dec>) -> String {
    match (sl, tp) {
        (None, None) => String::new(),
        (sl, tp) => format!(" with sl {} and tp {}", opt(sl), opt(tp)),
    }
}

pub(super) fn position_line(p: &Position) -> String {
    format!(
        "#{} {} {} {} @ {} x{} | liq {} | sl {} | tp {} | uPnL {} ({})",
        p.id,
        p.symbol,
        p.side,
        p.qty,
        p.entry_price,
        p.leverage,
        p.liquidation_price,
        opt(p.sl),
        opt(p.tp),
        p.unrealized_pnl,
        p.account_type
    )
}

pub(super) fn order_line(o: &Order) -> String {
    let price = o.price.map(|p| format!(" @ {p}")).unwrap_or_default();
    format!(
        "#{} {} {} {} {}{} x{} | sl {} | tp {} | reserved {} ({})",
        o.id,
        o.side,
        o.qty,
        o.symbol,
        o.order_type,
        price,
        o.leverage,
        opt(o.sl),
        opt(o.tp),
        o.reserve,
        o.account_type
    )
}

pub(super) fn trade_line(t: &Trade) -> String {
    format!(
        "#{} {} {} {} {}: {} -> {}, PnL {} ({}, {})",
        t.id,
        format_timestamp(t.closed_at),
        t.symbol,
        t.side,
        t.qty,
        t.entry_price,
        t.exit_price,
        t.pnl,
        reason_text(t),
        t.account_type
    )
}

pub(super) fn config_text(title: &str, c: &UserConfig, bot: bool) -> String {
    format!(
        "{title}\nstrategy: {}\nleverage: {}\nrisk_pct: {}\nsl_pct: {}\ntp_pct: {}\naccount_type: {}\nbot: {}",
        c.strategy
            .as_deref()
            .map(|s| shown(s, 64))
            .unwrap_or_else(|| "none".into()),
        c.leverage
            .map(|l| l.to_string())
            .unwrap_or_else(|| "none (orders use 1)".into()),
        opt(c.risk_pct),
        opt(c.sl_pct),
        opt(c.tp_pct),
        c.account_type,
        on_off(bot)
    )
}

pub(super) fn reason_text(t: &Trade) -> String {
    t.reason.as_str().replace('_', " ")
}

pub(super) fn opt(d: Option<Dec>) -> String {
    d.map(|d| d.to_string()).unwrap_or_else(|| "-".into())
}

pub(super) fn on_off(b: bool) -> &'static str {
    if b { "on" } else { "off" }
}

/// At most `n` characters of `s`, with `...` when cut.
pub(super) fn clip(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        None => s.to_string(),
        Some((i, _)) => format!("{}...", &s[..i]),
    }
}

/// Stored text (a user's name, a strategy) shown in a reply: clipped to `n` characters, with
/// each character that [`breaks_text`] replaced by U+FFFD. The engine refuses such characters
/// now, but a row written before, or straight into the file, may still hold one.
pub(super) fn shown(s: &str, n: usize) -> String {
    let plain: String = s
        .chars()
        .map(|c| {
            if breaks_text(c) {
                char::REPLACEMENT_CHARACTER
            } else {
                c
            }
        })
        .collect();
    clip(&plain, n)
}

/// User input echoed back: clipped and quoted with escapes (control characters stay visible).
pub(super) fn quote(s: &str) -> String {
    format!("{:?}", clip(s, ECHO_CHARS))
}

pub(super) fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Formats a sum of raw 10^-8 units that may exceed `i64` like [`Dec`]'s `Display`.
pub(super) fn fmt_raw(v: i128) -> String {
    let sign = if v < 0 { "-" } else { "" };
    let a = v.unsigned_abs();
    let (int, frac) = (a / SCALE as u128, a % SCALE as u128);
    if frac == 0 {
        format!("{sign}{int}")
    } else {
        let f = format!("{frac:08}");
        format!("{sign}{int}.{}", f.trim_end_matches('0'))
    }
}

/// Formats milliseconds since the Unix epoch as `YYYY-MM-DD HH:MM UTC` (proleptic Gregorian).
pub fn format_timestamp(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        sod / 3600,
        sod % 3600 / 60
    )
}

/// (year, month, day) of a count of days since 1970-01-01 (H. Hinnant's algorithm).
pub(super) fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March first
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Splits `text` into pages of at most [`PAGE_CHARS`] characters, on line boundaries where
/// possible (a line longer than a page is cut). Leading and trailing blank lines of each page
/// are dropped. With several pages, each ends with a blank line and `(page i/n)`. Always
/// returns at least one non-empty page.
pub fn paginate(text: &str) -> Vec<String> {
    let text = text.trim_end();
    if text.is_empty() {
        return vec!["(empty reply)".to_string()];
    }
    if text.chars().count() <= PAGE_CHARS {
        return vec![text.to_string()];
    }
    let budget = PAGE_CHARS - MARKER_RESERVE;
    let mut pages: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut cur_len = 0usize;
    let mut flush = |cur: &mut String, cur_len: &mut usize| {
        let page = cur.trim_matches('\n');
        if !page.trim().is_empty() {
            pages.push(page.to_string());
        }
        cur.clear();
        *cur_len = 0;
    };
    for line in text.lines() {
        for chunk in chunks(line, budget) {
            let n = chunk.chars().count();
            if cur_len > 0 && cur_len + 1 + n > budget {
                flush(&mut cur, &mut cur_len);
            }
            if cur_len > 0 || !cur.is_empty() {
                cur.push('\n');
                cur_len += 1;
            }
            cur.push_str(chunk);
            cur_len += n;
        }
    }
    flush(&mut cur, &mut cur_len);
    let n = pages.len();
    if n <= 1 {
        return if pages.is_empty() {
            vec!["(empty reply)".to_string()]
        } else {
            pages
        };
    }
    pages
        .into_iter()
        .enumerate()
        .map(|(i, p)| format!("{p}\n\n(page {}/{n})", i + 1))
        .collect()
}

/// `line` cut into pieces of at most `max` characters (one empty piece for an empty line).
pub(super) fn chunks(line: &str, max: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = line;
    loop {
        match rest.char_indices().nth(max) {
            None => {
                out.push(rest);
                return out;
            }
            Some((i, _)) => {
                out.push(&rest[..i]);
                rest = &rest[i..];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paginate_respects_the_limit() {
        assert_eq!(paginate("short"), vec!["short".to_string()]);
        assert_eq!(paginate(""), vec!["(empty reply)".to_string()]);
        // one huge line of multi-byte characters is cut by characters, not bytes
        let pages = paginate(&"é".repeat(10_000));
        assert_eq!(pages.len(), 3);
        let mut total = 0;
        for (i, p) in pages.iter().enumerate() {
            assert!(p.chars().count() <= PAGE_CHARS);
            let marker = format!("\n\n(page {}/3)", i + 1);
            assert!(p.ends_with(&marker));
            total += p.chars().count() - marker.chars().count();
        }
        assert_eq!(total, 10_000);
        // exactly the limit stays one page
        assert_eq!(paginate(&"z".repeat(PAGE_CHARS)).len(), 1);
        // many lines: split on line boundaries
        let text: String = (0..2000).map(|i| format!("line {i}\n")).collect();
        let pages = paginate(&text);
        assert!(pages.len() > 1);
        let mut seen = 0;
        for p in &pages {
            assert!(p.chars().count() <= PAGE_CHARS);
            for l in p.lines().filter(|l| l.starts_with("line ")) {
                assert_eq!(l, format!("line {seen}"));
                seen += 1;
            }
        }
        assert_eq!(seen, 2000);
    }

    #[test]
    fn stored_text_is_shown_without_what_breaks_a_message() {
        // a forged line, a NUL, a line separator and a right-to-left override each become U+FFFD
        assert_eq!(
            shown("eve\nWallet: 1\u{0}\u{2028}x\u{202E}y", 64),
            "eve\u{FFFD}Wallet: 1\u{FFFD}\u{FFFD}x\u{FFFD}y"
        );
        // emoji sequences (ZWJ), right-to-left scripts and their marks stay as they are
        let fine = "alice 👨\u{200D}👩\u{200D}👧 עברית\u{200F}";
        assert_eq!(shown(fine, 64), fine);
        assert_eq!(shown("abcdef", 3), "abc...");
    }

    #[test]
    fn timestamps_format_as_utc_civil_time() {
        assert_eq!(format_timestamp(0), "1970-01-01 00:00 UTC");
        assert_eq!(format_timestamp(-1), "1969-12-31 23:59 UTC");
        assert_eq!(format_timestamp(951_782_400_000), "2000-02-29 00:00 UTC");
        assert_eq!(format_timestamp(1_700_000_000_000), "2023-11-14 22:13 UTC");
        assert_eq!(format_timestamp(4_107_542_399_000), "2100-02-28 23:59 UTC");
        assert_eq!(format_timestamp(4_107_542_400_000), "2100-03-01 00:00 UTC");
        // extremes do not panic
        let _ = format_timestamp(i64::MAX);
        let _ = format_timestamp(i64::MIN);
    }
}
