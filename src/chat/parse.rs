//! Parsing a command's arguments: orders, config changes, symbols, exact decimals, ids and
//! account names. Every parser answers a usage line on bad input instead of failing.

use super::text::{quote, usage_err};
use crate::domain::model::{AccountType, Id, OrderType, Side};
use crate::domain::money::{Dec, ParseDecError, parse_whole};
use crate::engine::accounts::ConfigPatch;
use crate::engine::trading::NewOrder;

pub(super) fn parse_order(side: Side, args: &[&str]) -> Result<NewOrder, String> {
    let name = match side {
        Side::Buy => "buy",
        Side::Sell => "sell",
    };
    let [sym, qty, rest @ ..] = args else {
        return Err(usage_err(name, None));
    };
    let symbol = parse_symbol(name, sym)?;
    let qty = parse_dec(name, "QTY", qty)?;
    let mut o = NewOrder::market(&symbol, side, qty);
    let dup = |what: &str| usage_err(name, Some(format!("{what} given twice")));
    for tok in rest {
        let lower = tok.to_lowercase();
        if let Some(p) = tok.strip_prefix('@') {
            if o.price.is_some() {
                return Err(dup("PRICE"));
            }
            o.price = Some(parse_dec(name, "PRICE", p)?);
            o.order_type = OrderType::Limit;
        } else if let Some(l) = lower.strip_prefix('x') {
            if o.leverage.is_some() {
                return Err(dup("LEV"));
            }
            match parse_whole(l) {
                Some(n) => o.leverage = Some(u32::try_from(n).unwrap_or(u32::MAX)),
                None => {
                    return Err(usage_err(
                        name,
                        Some(format!(
                            "LEV must be a whole number like x10, got {}",
                            quote(tok)
                        )),
                    ));
                }
            }
        } else if let Some(v) = lower.strip_prefix("sl=") {
            if o.sl.is_some() {
                return Err(dup("SL"));
            }
            o.sl = Some(parse_dec(name, "SL", v)?);
        } else if let Some(v) = lower.strip_prefix("tp=") {
            if o.tp.is_some() {
                return Err(dup("TP"));
            }
            o.tp = Some(parse_dec(name, "TP", v)?);
        } else if let Some(a) = AccountType::parse(&lower) {
            if o.account_type.is_some() {
                return Err(dup("Account"));
            }
            o.account_type = Some(a);
        } else {
            return Err(usage_err(name, Some(format!("unexpected {}", quote(tok)))));
        }
    }
    Ok(o)
}

pub(super) fn parse_config(args: &[&str]) -> Result<ConfigPatch, String> {
    let mut p = ConfigPatch::default();
    let mut seen: Vec<String> = Vec::new();
    for arg in args {
        let Some((k, v)) = arg.split_once('=') else {
            return Err(usage_err(
                "config",
                Some(format!("expected key=value, got {}", quote(arg))),
            ));
        };
        let key = k.to_lowercase();
        if seen.contains(&key) {
            return Err(usage_err(
                "config",
                Some(format!("Key {} given twice", quote(k))),
            ));
        }
        if v.is_empty() && !k.is_empty() {
            return Err(usage_err(
                "config",
                Some(format!("Key {} needs a value (none clears it)", quote(k))),
            ));
        }
        let clear = v.eq_ignore_ascii_case("none");
        match key.as_str() {
            "strategy" => p.strategy = Some((!clear).then(|| v.to_string())),
            "leverage" => {
                p.leverage = Some(if clear {
                    None
                } else {
                    let t = v.strip_prefix(['x', 'X']).unwrap_or(v);
                    let n = parse_whole(t).ok_or_else(|| {
                        usage_err(
                            "config",
                            Some(format!(
                                "The value of leverage must be a whole number, got {}",
                                quote(v)
                            )),
                        )
                    })?;
                    Some(u32::try_from(n).unwrap_or(u32::MAX))
                })
            }
            "risk_pct" | "sl_pct" | "tp_pct" => {
                let val = if clear {
                    None
                } else {
                    Some(parse_dec(
                        "config",
                        &format!("The value of {key}"),
                        v.strip_suffix('%').unwrap_or(v),
                    )?)
                };
                match key.as_str() {
                    "risk_pct" => p.risk_pct = Some(val),
                    "sl_pct" => p.sl_pct = Some(val),
                    _ => p.tp_pct = Some(val),
                }
            }
            "account_type" => {
                // the account type always has a value; clearing restores the default (demo)
                p.account_type = Some(if clear {
                    AccountType::default()
                } else {
                    AccountType::parse(&v.to_lowercase()).ok_or_else(|| {
                        usage_err(
                            "config",
                            Some(format!(
                                "The value of account_type must be demo or real, got {}",
                                quote(v)
                            )),
                        )
                    })?
                })
            }
            _ => {
                return Err(usage_err(
                    "config",
                    Some(format!(
                        "unknown key {}; keys: strategy, leverage, risk_pct, sl_pct, tp_pct, account_type",
                        quote(k)
                    )),
                ));
            }
        }
        seen.push(key);
    }
    Ok(p)
}

pub(super) fn parse_symbol(cmd: &str, s: &str) -> Result<String, String> {
    let ok = (1..=32).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric());
    if !ok {
        return Err(usage_err(
            cmd,
            Some(format!(
                "SYMBOL must be letters and digits like BTCUSDT, got {}",
                quote(s)
            )),
        ));
    }
    Ok(s.to_ascii_uppercase())
}

/// A decimal as a person types it: digits and one point only. A typo such as `1e3` is refused
/// here (it would buy 1,000), though JSON requests accept exponents as JSON numbers do.
pub(super) fn parse_dec(cmd: &str, what: &str, s: &str) -> Result<Dec, String> {
    let plain = |s: &str| {
        let digits = s.strip_prefix('-').unwrap_or(s);
        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit() || b == b'.')
    };
    if !s.is_empty() && !plain(s) {
        return Err(usage_err(
            cmd,
            Some(format!("{what} must be a decimal number, got {}", quote(s))),
        ));
    }
    Dec::parse(s).map_err(|e| {
        let why = match e {
            ParseDecError::Empty => "is missing".to_string(),
            ParseDecError::Invalid(_) => format!("must be a decimal number, got {}", quote(s)),
            ParseDecError::TooPrecise(_) => format!("has more than 8 decimal places: {}", quote(s)),
            ParseDecError::Overflow(_) => format!("is out of range: {}", quote(s)),
        };
        usage_err(cmd, Some(format!("{what} {why}")))
    })
}

/// An id, with or without one leading `#`.
pub(super) fn parse_id(s: &str) -> Option<Id> {
    parse_whole(s.strip_prefix('#').unwrap_or(s))
        .map(|n| Id::try_from(n).unwrap_or(Id::MAX))
        .filter(|&n| n > 0)
}

pub(super) fn one_id(cmd: &str, args: &[&str]) -> Result<Id, String> {
    match args {
        [a] => parse_id(a).ok_or_else(|| {
            usage_err(
                cmd,
                Some(format!(
                    "the id must be a whole number >= 1, got {}",
                    quote(a)
                )),
            )
        }),
        _ => Err(usage_err(cmd, None)),
    }
}

/// A page of a listing command and the account it lists, from `[PAGE] [demo|real]`.
pub(super) struct PageAt {
    /// The command word, for the next page's hint.
    pub cmd: &'static str,
    /// The page, from 1 (one beyond u64 saturates).
    pub page: u64,
    /// The page as typed, for "Page N does not exist".
    pub typed: String,
    /// The account named, if any (default both).
    pub acct: Option<AccountType>,
}

/// `[PAGE] [demo|real]`, in either order (`/trades demo 2` is `/trades 2 demo`); the page is
/// a whole number ≥ 1 with an optional leading `#`.
pub(super) fn page_and_account(cmd: &'static str, args: &[&str]) -> Result<PageAt, String> {
    let mut acct = None;
    let mut rest = Vec::with_capacity(args.len());
    for a in args {
        match AccountType::parse(&a.to_lowercase()) {
            Some(t) if acct.is_none() => acct = Some(t),
            _ => rest.push(*a),
        }
    }
    let (page, typed) = match rest[..] {
        [] => (1, "1"),
        [p] => {
            let digits = p.strip_prefix('#').unwrap_or(p);
            match parse_whole(digits) {
                Some(n) if n >= 1 => (n, digits),
                _ => {
                    return Err(usage_err(
                        cmd,
                        Some(format!(
                            "expected a page number (1, 2, ...) or demo|real, got {}",
                            quote(p)
                        )),
                    ));
                }
            }
        }
        _ => return Err(usage_err(cmd, None)),
    };
    Ok(PageAt {
        cmd,
        page,
        typed: typed.to_string(),
        acct,
    })
}

/// `[demo|real]`, default demo.
pub(super) fn opt_account(cmd: &str, args: &[&str]) -> Result<AccountType, String> {
    Ok(opt_account_filter(cmd, args)?.unwrap_or_default())
}

/// `[demo|real]`, default both (None).
pub(super) fn opt_account_filter(cmd: &str, args: &[&str]) -> Result<Option<AccountType>, String> {
    match args {
        [] => Ok(None),
        [a] => AccountType::parse(&a.to_lowercase())
            .map(Some)
            .ok_or_else(|| {
                usage_err(
                    cmd,
                    Some(format!("expected demo or real, got {}", quote(a))),
                )
            }),
        _ => Err(usage_err(cmd, None)),
    }
}
