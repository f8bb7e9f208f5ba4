//! The Telegram-style command layer: text in, reply text out, transport-free.
//!
//! A frontend (a Telegram bot, the `litetrade chat` terminal) passes each incoming message with
//! the sender's litetrade user id to [`handle`] and sends every page of the returned [`Reply`]
//! as one message. Replies are plain text (no Markdown or HTML), so they need no escaping.
//!
//! * The command word is case-insensitive and may carry a Telegram `@botname` suffix
//!   (`/Balance@my_bot` is `/balance`). [`handle`] answers whatever the name; in a group chat,
//!   where Telegram delivers commands meant for other bots too, use [`handle_for`] with the
//!   bot's own username, and a command addressed to another bot gets no reply and does
//!   nothing. Arguments are separated by whitespace.
//! * Every page holds at most [`PAGE_CHARS`] characters (Unicode scalar values, Telegram's
//!   message limit). Longer output is split on line boundaries (a single overlong line is cut)
//!   and every page of a multi-page reply ends with a `(page i/n)` marker.
//! * Decimal arguments are parsed exactly with [`Dec::parse`](crate::domain::money::Dec::parse); no binary floating point.
//! * Engine errors become one friendly line; a malformed command answers with its usage line
//!   (see [`COMMANDS`]); an unknown command answers `Unknown command. Try /help`; text that is
//!   not a command answers a short hint. No input makes [`handle`] panic.
//!
//! ```no_run
//! # async fn demo(engine: litetrade::Engine, user_id: i64) {
//! let reply = litetrade::chat::handle(&engine, user_id, "/buy BTCUSDT 0.01 x10 sl=29000").await;
//! for page in &reply.pages {
//!     println!("{page}");
//! }
//! # }
//! ```

mod parse;
mod text;

pub use text::{format_timestamp, paginate};

use crate::Engine;
use crate::domain::model::{AccountType, Id, OrderStatus, Side};
use crate::domain::money::div_round_half_away;
use parse::{
    PageAt, one_id, opt_account, opt_account_filter, page_and_account, parse_config, parse_order,
};
use std::fmt::Write as _;
use text::{
    clip, config_text, err_text, fmt_raw, on_off, order_line, placed_text, position_line, quote,
    reason_text, shown, trade_line, usage_err,
};

/// Largest page of a reply, in characters (Telegram's message limit).
pub const PAGE_CHARS: usize = 4096;

/// Longest message [`handle`] interprets, in characters; longer ones are refused unread.
pub const MAX_INPUT_CHARS: usize = 4096;

/// Orders or positions on one page of `/orders` or `/positions`.
pub(super) const MAX_LISTED: usize = 500;
/// Trades per `/trades` page.
const TRADES_PER_PAGE: u32 = 10;

/// The answer to one message: one or more pages of plain text, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The pages to send, each a non-empty text of at most [`PAGE_CHARS`] characters. When
    /// there are several, each ends with a `(page i/n)` line.
    pub pages: Vec<String>,
}

impl Reply {
    /// A reply holding `text`, split into pages by [`paginate`].
    pub fn new(text: impl Into<String>) -> Reply {
        Reply {
            pages: paginate(&text.into()),
        }
    }

    /// All pages joined with a newline (page markers included): handy for terminals and tests.
    pub fn text(&self) -> String {
        self.pages.join("\n")
    }
}

/// One command of the chat layer, as `/help` lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommandInfo {
    /// The command word without the slash, e.g. `buy`.
    pub name: &'static str,
    /// The usage line, e.g. `/cancel ORDER_ID`.
    pub usage: &'static str,
    /// What it does, one short line.
    pub about: &'static str,
}

/// Every command, in `/help` order (also suitable for Telegram's `setMyCommands`).
pub const COMMANDS: &[CommandInfo] = &[
    CommandInfo {
        name: "start",
        usage: "/start",
        about: "welcome and a short help",
    },
    CommandInfo {
        name: "help",
        usage: "/help",
        about: "this list",
    },
    CommandInfo {
        name: "balance",
        usage: "/balance [demo|real]",
        about: "wallet, available, margin, equity",
    },
    CommandInfo {
        name: "positions",
        usage: "/positions [PAGE] [demo|real]",
        about: "open positions, oldest first, 500 a page",
    },
    CommandInfo {
        name: "orders",
        usage: "/orders [PAGE] [demo|real]",
        about: "pending limit orders, oldest first, 500 a page",
    },
    CommandInfo {
        name: "buy",
        usage: "/buy SYMBOL QTY [@PRICE] [xLEV] [sl=PRICE] [tp=PRICE] [demo|real]",
        about: "buy (open a long): market, or limit with @PRICE",
    },
    CommandInfo {
        name: "sell",
        usage: "/sell SYMBOL QTY [@PRICE] [xLEV] [sl=PRICE] [tp=PRICE] [demo|real]",
        about: "sell (open a short): market, or limit with @PRICE",
    },
    CommandInfo {
        name: "cancel",
        usage: "/cancel ORDER_ID",
        about: "cancel a pending order",
    },
    CommandInfo {
        name: "close",
        usage: "/close POSITION_ID",
        about: "close a position at the last price",
    },
    CommandInfo {
        name: "pnl",
        usage: "/pnl [demo|real]",
        about: "realized and unrealized PnL summary (both accounts unless one is named)",
    },
    CommandInfo {
        name: "trades",
        usage: "/trades [PAGE] [demo|real]",
        about: "closed trades, newest first (both accounts unless one is named)",
    },
    CommandInfo {
        name: "redeem",
        usage: "/redeem CODE",
        about: "redeem a promo code for a license",
    },
    CommandInfo {
        name: "bot",
        usage: "/bot [on|off]",
        about: "show or switch the signal bot",
    },
    CommandInfo {
        name: "config",
        usage: "/config [key=value ...]",
        about: "show or set strategy, leverage, risk_pct, sl_pct, tp_pct, account_type (value none clears)",
    },
];

/// The usage line of a command word (without the slash, lower case), if it is one.
pub fn usage(name: &str) -> Option<&'static str> {
    COMMANDS.iter().find(|c| c.name == name).map(|c| c.usage)
}

/// Answers one message from user `user_id`. Never panics; every failure is a reply.
pub async fn handle(engine: &Engine, user_id: Id, text: &str) -> Reply {
    Reply::new(match dispatch(engine, user_id, text).await {
        Ok(s) | Err(s) => s,
    })
}

/// [`handle`] for the bot whose username is `bot` (with or without its `@`). A command
/// addressed to another bot (`/buy@OtherBot …`, as Telegram delivers in groups) is not for this
/// one: it gets `None`, no reply and no effect. Every other message, including a command with
/// no suffix or with this bot's name in any case, gets [`handle`]'s reply.
pub async fn handle_for(engine: &Engine, user_id: Id, text: &str, bot: &str) -> Option<Reply> {
    if addressed_elsewhere(text, bot) {
        return None;
    }
    Some(handle(engine, user_id, text).await)
}

/// Whether `text` is a command with an `@name` suffix that is not `bot`.
fn addressed_elsewhere(text: &str, bot: &str) -> bool {
    let head = text.split_whitespace().next().unwrap_or("");
    let bot = bot.strip_prefix('@').unwrap_or(bot);
    match head.strip_prefix('/').and_then(|h| h.split_once('@')) {
        // no bot has an empty name: `/buy@` is addressed to nobody in particular
        Some((_, to)) => !to.is_empty() && !to.eq_ignore_ascii_case(bot),
        None => false,
    }
}

/// A reply text; `Err` holds a refusal (usage line or engine error), also sent as-is.
type Out = Result<String, String>;

async fn dispatch(engine: &Engine, user: Id, text: &str) -> Out {
    let text = text.trim();
    if text.chars().count() > MAX_INPUT_CHARS {
        return Err(format!(
            "Message too long (at most {MAX_INPUT_CHARS} characters). Try /help"
        ));
    }
    if !text.starts_with('/') {
        return Err(
            "Commands start with '/', e.g. /balance or /buy BTCUSDT 0.01. Try /help".into(),
        );
    }
    let mut words = text.split_whitespace();
    let head = words.next().unwrap_or("/");
    let args: Vec<&str> = words.collect();
    // `head` starts with the one-byte '/', so slicing after it is on a char boundary
    let word = head[1..].split('@').next().unwrap_or("").to_lowercase();
    match word.as_str() {
        "start" => Ok(start(engine, user)),
        "help" => Ok(help()),
        "balance" => balance(engine, user, &args),
        "positions" => positions(engine, user, &args),
        "orders" => orders(engine, user, &args),
        "buy" => place(engine, user, Side::Buy, &args).await,
        "sell" => place(engine, user, Side::Sell, &args).await,
        "cancel" => cancel(engine, user, &args).await,
        "close" => close(engine, user, &args).await,
        "pnl" => pnl(engine, user, &args).await,
        "trades" => trades(engine, user, &args),
        "redeem" => redeem(engine, user, &args).await,
        "bot" => bot(engine, user, &args).await,
        "config" => config(engine, user, &args).await,
        _ => Err("Unknown command. Try /help".into()),
    }
}

// ---------------------------------------------------------------------------------------------
// commands

fn start(engine: &Engine, user: Id) -> String {
    let greeting = match engine.user(user) {
        Ok(u) => format!("Welcome to litetrade, {}!", shown(&u.name, 64)),
        Err(_) => "Welcome to litetrade!".to_string(),
    };
    format!(
        "{greeting}\nA paper trading venue: trade with demo funds at live-like prices.\n\n\
         Try:\n/balance - your funds\n/buy BTCUSDT 0.01 - a market buy\n\
         /buy BTCUSDT 0.01 @29500 x10 sl=29000 tp=31000 - a limit buy with leverage, stop loss and take profit\n\
         /positions, /orders, /close ID, /pnl\n/help - every command"
    )
}

fn help() -> String {
    let mut s = String::from("Commands:\n");
    for c in COMMANDS {
        let _ = writeln!(s, "{} - {}", c.usage, c.about);
    }
    s.push_str(
        "\nNumbers are exact decimals (e.g. 0.01). The account is demo unless you add real.",
    );
    s
}

fn balance(engine: &Engine, user: Id, args: &[&str]) -> Out {
    let acct = opt_account("balance", args)?;
    let b = engine.balance(user, acct).map_err(|e| err_text(&e))?;
    Ok(format!(
        "Balance ({}, {})\nWallet: {}\nAvailable: {}\nMargin used: {}\nReserved: {}\nUnrealized PnL: {}\nEquity: {}",
        b.account_type,
        b.currency,
        b.wallet,
        b.available,
        b.margin_used,
        b.order_reserved,
        b.unrealized_pnl,
        b.equity
    ))
}

fn positions(engine: &Engine, user: Id, args: &[&str]) -> Out {
    let at = page_and_account("positions", args)?;
    let list = engine.positions(user, at.acct).map_err(|e| err_text(&e))?;
    list_page(
        &at,
        ["Open positions", "No open positions.", "open positions"],
        &list,
        position_line,
    )
}

fn orders(engine: &Engine, user: Id, args: &[&str]) -> Out {
    let at = page_and_account("orders", args)?;
    let list = engine.orders(user, at.acct).map_err(|e| err_text(&e))?;
    list_page(
        &at,
        ["Pending orders", "No pending orders.", "pending orders"],
        &list,
        order_line,
    )
}

/// One page of a list, oldest first, [`MAX_LISTED`] items a page, one line each: `[title,
/// empty, what]` are its heading, its text when there is nothing, and what it lists.
fn list_page<T>(
    at: &PageAt,
    [title, empty, what]: [&str; 3],
    list: &[T],
    line: fn(&T) -> String,
) -> Out {
    if list.is_empty() {
        return Ok(empty.into());
    }
    let pages = list.len().div_ceil(MAX_LISTED) as u64;
    if at.page > pages {
        return Err(no_such_page(at, pages, what));
    }
    let mut s = if pages == 1 {
        format!("{title} ({}):\n", list.len())
    } else {
        format!(
            "{title}, page {}/{pages} ({} in all, oldest first):\n",
            at.page,
            list.len()
        )
    };
    // the page is at most `pages`, so the skip fits in usize
    let skip = (at.page as usize - 1) * MAX_LISTED;
    for item in list.iter().skip(skip).take(MAX_LISTED) {
        s.push_str(&line(item));
        s.push('\n');
    }
    next_page(&mut s, at, pages);
    Ok(s)
}

async fn place(engine: &Engine, user: Id, side: Side, args: &[&str]) -> Out {
    let order = parse_order(side, args)?;
    let o = engine
        .place_order(user, order)
        .await
        .map_err(|e| err_text(&e))?;
    Ok(placed_text(&o))
}

async fn cancel(engine: &Engine, user: Id, args: &[&str]) -> Out {
    let id = one_id("cancel", args)?;
    // best effort: the reserve the cancel releases (the returned order has it zeroed)
    let reserve = engine
        .order(user, id)
        .ok()
        .filter(|o| o.status == OrderStatus::Pending)
        .map(|o| o.reserve);
    let o = engine
        .cancel_order(user, id)
        .await
        .map_err(|e| err_text(&e))?;
    let mut s = format!(
        "Order #{} cancelled: {} {} {}{}.",
        o.id,
        o.side,
        o.qty,
        o.symbol,
        o.price.map(|p| format!(" @ {p}")).unwrap_or_default()
    );
    if let Some(r) = reserve {
        let _ = write!(s, "\nReleased: {r} USDT.");
    }
    Ok(s)
}

async fn close(engine: &Engine, user: Id, args: &[&str]) -> Out {
    let id = one_id("close", args)?;
    let t = engine
        .close_position(user, id)
        .await
        .map_err(|e| err_text(&e))?;
    Ok(format!(
        "Position #{} closed ({}).\n{} {} {}: entry {}, exit {}.\nPnL: {} USDT (fees {} + {}). Trade #{}.",
        t.position_id,
        reason_text(&t),
        t.symbol,
        t.side,
        t.qty,
        t.entry_price,
        t.exit_price,
        t.pnl,
        t.open_fee,
        t.close_fee,
        t.id
    ))
}

async fn pnl(engine: &Engine, user: Id, args: &[&str]) -> Out {
    let acct = opt_account_filter("pnl", args)?;
    // it reads every trade of the user (about 0.3 s a million): on a blocking thread, not on
    // the bot's async workers
    let e = engine.clone();
    let t = tokio::task::spawn_blocking(move || e.trade_totals(user, acct))
        .await
        .map_err(|join| crate::error::Error::Internal(join.to_string()))
        .and_then(|r| r)
        .map_err(|e| err_text(&e))?;
    let mut unrealized = 0i128;
    let mut parts = Vec::new();
    for a in AccountType::ALL
        .into_iter()
        .filter(|a| acct.is_none_or(|x| x == *a))
    {
        let b = engine.balance(user, a).map_err(|e| err_text(&e))?;
        unrealized += b.unrealized_pnl.raw() as i128;
        parts.push(format!("{a} {}", b.unrealized_pnl));
    }
    let mut s = match acct {
        None => String::from("PnL summary\n"),
        Some(a) => format!("PnL summary, {a} account\n"),
    };
    let _ = writeln!(s, "Realized PnL: {} USDT", fmt_raw(t.pnl_raw));
    let _ = writeln!(
        s,
        "Fees paid on closed trades: {} USDT",
        fmt_raw(t.fees_raw)
    );
    let _ = writeln!(s, "Trades: {}", t.count);
    let _ = write!(
        s,
        "Wins: {}, losses: {}, breakeven: {}",
        t.wins,
        t.losses,
        t.count - t.wins - t.losses
    );
    if t.count > 0 {
        let tenths = div_round_half_away(i128::from(t.wins) * 1000, i128::from(t.count));
        let _ = write!(s, " (win rate {}.{}%)", tenths / 10, tenths % 10);
    }
    s.push('\n');
    let _ = writeln!(
        s,
        "Unrealized PnL: {} USDT ({})",
        fmt_raw(unrealized),
        parts.join(", ")
    );
    Ok(s)
}

fn trades(engine: &Engine, user: Id, args: &[&str]) -> Out {
    let at = page_and_account("trades", args)?;
    let (page, acct) = (at.page, at.acct);
    let first = engine
        .trades_of(user, acct, 1, TRADES_PER_PAGE)
        .map_err(|e| err_text(&e))?;
    if first.total == 0 {
        return Ok("No trades yet.".into());
    }
    if page > first.pages {
        return Err(no_such_page(&at, first.pages, "trades"));
    }
    let tp = if page == 1 {
        first
    } else {
        engine
            .trades_of(user, acct, page, TRADES_PER_PAGE)
            .map_err(|e| err_text(&e))?
    };
    let mut s = format!(
        "Trades, page {}/{} ({} in all, newest first):\n",
        tp.page,
        tp.pages.max(1),
        tp.total
    );
    for t in &tp.trades {
        s.push_str(&trade_line(t));
        s.push('\n');
    }
    next_page(&mut s, &at, tp.pages);
    Ok(s)
}

/// "Page N does not exist" for a page beyond the `pages` of `what`.
fn no_such_page(at: &PageAt, pages: u64, what: &str) -> String {
    format!(
        "Page {} does not exist: there {} {pages} page{} of {what}.",
        clip(&at.typed, 32),
        if pages == 1 { "is" } else { "are" },
        if pages == 1 { "" } else { "s" }
    )
}

/// The command for the next page, when there is one.
fn next_page(s: &mut String, at: &PageAt, pages: u64) {
    if at.page < pages {
        let _ = write!(s, "Next: /{} {}", at.cmd, at.page + 1);
        if let Some(a) = at.acct {
            let _ = write!(s, " {a}");
        }
    }
}

async fn redeem(engine: &Engine, user: Id, args: &[&str]) -> Out {
    let [code] = args else {
        return Err(usage_err("redeem", None));
    };
    let l = engine
        .redeem_promo(user, code)
        .await
        .map_err(|e| err_text(&e))?;
    Ok(format!(
        "Promo code redeemed.\nLicense: {}, valid until {}.",
        clip(&l.license_type, 64),
        format_timestamp(l.end_date)
    ))
}

async fn bot(engine: &Engine, user: Id, args: &[&str]) -> Out {
    let enabled = match args {
        [] => {
            let on = engine.bot_enabled(user).map_err(|e| err_text(&e))?;
            return Ok(format!("Bot is {}.", on_off(on)));
        }
        [a] => match a.to_lowercase().as_str() {
            "on" => true,
            "off" => false,
            _ => {
                return Err(usage_err(
                    "bot",
                    Some(format!("expected on or off, got {}", quote(a))),
                ));
            }
        },
        _ => return Err(usage_err("bot", None)),
    };
    let on = engine
        .set_bot_enabled(user, enabled)
        .await
        .map_err(|e| err_text(&e))?;
    let mut s = format!("Bot is now {}.", on_off(on));
    if on {
        match engine.user_config(user) {
            Ok(c) => match c.strategy {
                Some(st) => {
                    let _ = write!(
                        s,
                        " It follows strategy {} on the {} account.",
                        shown(&st, 64),
                        c.account_type
                    );
                }
                None => s.push_str(" No strategy is set yet: use /config strategy=NAME."),
            },
            Err(e) => {
                let _ = write!(s, "\n{}", err_text(&e));
            }
        }
    }
    Ok(s)
}

async fn config(engine: &Engine, user: Id, args: &[&str]) -> Out {
    if args.is_empty() {
        let c = engine.user_config(user).map_err(|e| err_text(&e))?;
        let bot = engine.bot_enabled(user).map_err(|e| err_text(&e))?;
        return Ok(config_text("Your config:", &c, bot));
    }
    let patch = parse_config(args)?;
    let c = engine
        .set_config(user, patch)
        .await
        .map_err(|e| err_text(&e))?;
    let bot = engine.bot_enabled(user).map_err(|e| err_text(&e))?;
    Ok(config_text("Config updated:", &c, bot))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::AccountType;
    use crate::domain::money::Dec;
    use crate::engine::accounts::NewPromo;
    use crate::{Config, Tick};

    async fn setup() -> (tempfile::TempDir, Engine, Id) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config {
            db: dir.path().join("t.db"),
            ..Default::default()
        };
        let engine = Engine::open(&cfg).unwrap();
        let (u, _tok) = engine.create_user("alice", None).await.unwrap();
        engine
            .deposit(u.id, Dec::from_int(10000), AccountType::Demo)
            .await
            .unwrap();
        tick(&engine, "BTCUSDT", 100).await;
        (dir, engine, u.id)
    }

    async fn tick(engine: &Engine, symbol: &str, price: i64) {
        engine
            .ingest_ticks(vec![Tick {
                symbol: symbol.into(),
                price: Dec::from_int(price),
                ts: None,
            }])
            .await
            .unwrap();
    }

    async fn say(engine: &Engine, user: Id, text: &str) -> String {
        let r = handle(engine, user, text).await;
        check_pages(&r, text);
        r.text()
    }

    fn check_pages(r: &Reply, input: &str) {
        assert!(!r.pages.is_empty(), "no page for {input:?}");
        for p in &r.pages {
            assert!(!p.trim().is_empty(), "empty page for {input:?}");
            assert!(
                p.chars().count() <= PAGE_CHARS,
                "page too long for {input:?}"
            );
        }
    }

    fn d(s: &str) -> Dec {
        Dec::parse(s).unwrap()
    }

    #[tokio::test]
    async fn start_help_and_balance() {
        let (_dir, e, u) = setup().await;
        let r = say(&e, u, "/start").await;
        assert!(r.contains("Welcome to litetrade, alice!"), "{r}");
        assert!(r.contains("/help"), "{r}");
        let r = say(&e, u, "/help").await;
        for c in COMMANDS {
            assert!(r.contains(c.usage), "{} missing from {r}", c.usage);
        }
        let r = say(&e, u, "/balance").await;
        assert!(r.contains("Balance (demo, USDT)"), "{r}");
        for line in [
            "Wallet: 10000",
            "Available: 10000",
            "Margin used: 0",
            "Reserved: 0",
            "Unrealized PnL: 0",
            "Equity: 10000",
        ] {
            assert!(r.lines().any(|l| l == line), "{line} missing from {r}");
        }
        let r = say(&e, u, "/BALANCE@my_bot real").await;
        assert!(
            r.contains("Balance (real, USDT)") && r.contains("Wallet: 0"),
            "{r}"
        );
        assert_eq!(
            say(&e, u, "/balance gold").await,
            "Expected demo or real, got \"gold\".\nUsage: /balance [demo|real]"
        );
        assert_eq!(
            say(&e, u, "/balance demo real").await,
            "Usage: /balance [demo|real]"
        );
        // an unknown user
        let r = say(&e, 999_999, "/balance").await;
        assert!(r.contains("not registered"), "{r}");
        assert_eq!(
            say(&e, 999_999, "/start").await.lines().next(),
            Some("Welcome to litetrade!")
        );
        e.shutdown();
    }

    #[tokio::test]
    async fn market_buy_shows_in_positions_and_balance() {
        let (_dir, e, u) = setup().await;
        assert_eq!(say(&e, u, "/positions").await, "No open positions.");
        let r = say(&e, u, "/buy btcusdt 0.01").await;
        let pos = e.positions(u, None).unwrap();
        assert_eq!(pos.len(), 1);
        let p = &pos[0];
        assert_eq!(
            (p.symbol.as_str(), p.qty, p.entry_price),
            ("BTCUSDT", d("0.01"), d("100"))
        );
        assert!(
            r.contains("filled: bought 0.01 BTCUSDT at 100 (market, x1, demo)"),
            "{r}"
        );
        assert!(r.contains("Fee: 0.00055 USDT"), "{r}");
        assert!(r.contains(&format!("Position #{} opened", p.id)), "{r}");

        let r = say(&e, u, "/positions").await;
        assert!(r.starts_with("Open positions (1):"), "{r}");
        let want = format!(
            "#{} BTCUSDT long 0.01 @ 100 x1 | liq {} | sl - | tp - | uPnL 0 (demo)",
            p.id, p.liquidation_price
        );
        assert!(r.contains(&want), "{want} not in {r}");

        let r = say(&e, u, "/balance").await;
        assert!(r.contains("Wallet: 9999.99945"), "{r}");
        assert!(r.contains("Available: 9998.99945"), "{r}");
        assert!(r.contains("Margin used: 1\n"), "{r}");

        // a short with leverage, stops and the account named, then the price moves
        let r = say(&e, u, "/SELL@bot BTCUSDT 0.02 x10 sl=110 tp=90 demo").await;
        assert!(
            r.contains("sold 0.02 BTCUSDT at 100 (market, x10, demo)"),
            "{r}"
        );
        assert!(r.contains("with sl 110 and tp 90"), "{r}");
        tick(&e, "BTCUSDT", 95).await;
        let r = say(&e, u, "/positions demo").await;
        assert!(r.contains("short 0.02 @ 100 x10"), "{r}");
        assert!(r.contains("| sl 110 | tp 90 | uPnL 0.1 (demo)"), "{r}");
        assert!(
            r.contains("long 0.01 @ 100 x1") && r.contains("uPnL -0.05 (demo)"),
            "{r}"
        );
        assert_eq!(say(&e, u, "/positions real").await, "No open positions.");

        // engine refusals become one friendly line
        // needed = margin 95000 + fee 52.25 at the last price 95
        let avail = e.balance(u, AccountType::Demo).unwrap().available;
        assert_eq!(avail, d("9998.79835"));
        assert_eq!(
            say(&e, u, "/buy BTCUSDT 1000").await,
            "Insufficient balance: needs 95052.25 USDT, available 9998.79835 USDT."
        );
        assert_eq!(
            say(&e, u, "/buy FOOUSDT 1").await,
            "Unknown symbol FOOUSDT."
        );
        assert_eq!(
            say(&e, u, "/buy ETHUSDT 1").await,
            "No price yet for ETHUSDT; try again after the next tick."
        );
        assert_eq!(
            say(&e, u, "/buy BTCUSDT 0.0001").await,
            "Rejected: qty must be a multiple of lot_size 0.001."
        );
        let r = say(&e, u, "/buy BTCUSDT 0.01 sl=200").await;
        assert!(r.starts_with("Rejected: sl must be below"), "{r}");
        let r = say(&e, u, "/buy BTCUSDT 0.01 x0").await;
        assert!(r.starts_with("Rejected: leverage must be"), "{r}");
        assert_eq!(e.positions(u, None).unwrap().len(), 2);
        e.shutdown();
    }

    #[tokio::test]
    async fn limit_orders_rest_list_and_cancel() {
        let (_dir, e, u) = setup().await;
        assert_eq!(say(&e, u, "/orders").await, "No pending orders.");
        let r = say(&e, u, "/buy BTCUSDT 1 @90 x1 sl=80 tp=120").await;
        let orders = e.orders(u, None).unwrap();
        assert_eq!(orders.len(), 1);
        let o = &orders[0];
        assert_eq!(o.reserve, d("90.0495"));
        assert!(
            r.contains(&format!(
                "Order #{} resting: buy 1 BTCUSDT limit @ 90 (x1, demo) with sl 80 and tp 120",
                o.id
            )),
            "{r}"
        );
        assert!(r.contains("Reserved: 90.0495 USDT"), "{r}");

        let r = say(&e, u, "/orders").await;
        assert!(r.starts_with("Pending orders (1):"), "{r}");
        assert!(
            r.contains(&format!(
                "#{} buy 1 BTCUSDT limit @ 90 x1 | sl 80 | tp 120 | reserved 90.0495 (demo)",
                o.id
            )),
            "{r}"
        );
        assert!(say(&e, u, "/balance").await.contains("Reserved: 90.0495"));

        let r = say(&e, u, &format!("/cancel {}", o.id)).await;
        assert_eq!(
            r,
            format!(
                "Order #{} cancelled: buy 1 BTCUSDT @ 90.\nReleased: 90.0495 USDT.",
                o.id
            )
        );
        assert_eq!(say(&e, u, "/orders").await, "No pending orders.");
        assert!(say(&e, u, "/balance").await.contains("Available: 10000\n"));
        let r = say(&e, u, &format!("/cancel #{}", o.id)).await;
        assert_eq!(r, format!("Cannot do that: order {} is not open.", o.id));
        assert_eq!(say(&e, u, "/cancel 987654").await, "No such order.");

        // a marketable limit fills at once at the last price
        let r = say(&e, u, "/sell BTCUSDT 0.01 @90").await;
        assert!(
            r.contains("filled: sold 0.01 BTCUSDT at 100 (limit @ 90, x1, demo)"),
            "{r}"
        );

        // a resting limit that a later tick fills opens a position at its limit price
        say(&e, u, "/buy BTCUSDT 0.5 @95").await;
        tick(&e, "BTCUSDT", 94).await;
        assert_eq!(say(&e, u, "/orders").await, "No pending orders.");
        let r = say(&e, u, "/positions").await;
        assert!(r.contains("BTCUSDT long 0.5 @ 95 x1"), "{r}");
        e.shutdown();
    }

    #[tokio::test]
    async fn close_then_trades_and_pnl() {
        let (_dir, e, u) = setup().await;
        assert_eq!(say(&e, u, "/trades").await, "No trades yet.");
        say(&e, u, "/buy BTCUSDT 1").await;
        let pid = e.positions(u, None).unwrap()[0].id;
        tick(&e, "BTCUSDT", 110).await;
        let r = say(&e, u, &format!("/close {pid}")).await;
        let t = e.trades(u, 1, 10).unwrap().trades[0].clone();
        assert_eq!(t.pnl, d("9.8845"));
        assert_eq!(
            r,
            format!(
                "Position #{pid} closed (manual).\nBTCUSDT long 1: entry 100, exit 110.\nPnL: 9.8845 USDT (fees 0.055 + 0.0605). Trade #{}.",
                t.id
            )
        );
        assert_eq!(
            say(&e, u, &format!("/close {pid}")).await,
            format!("Cannot do that: position {pid} is not open.")
        );
        assert_eq!(say(&e, u, "/close 4242").await, "No such position.");

        let r = say(&e, u, "/trades").await;
        assert!(
            r.starts_with("Trades, page 1/1 (1 in all, newest first):"),
            "{r}"
        );
        let want = format!(
            "#{} {} BTCUSDT long 1: 100 -> 110, PnL 9.8845 (manual, demo)",
            t.id,
            format_timestamp(t.closed_at)
        );
        assert!(r.contains(&want), "{want} not in {r}");
        assert_eq!(
            say(&e, u, "/trades 2").await,
            "Page 2 does not exist: there is 1 page of trades."
        );

        // a losing trade and an open short for the unrealized part
        say(&e, u, "/buy BTCUSDT 1").await;
        let pid2 = e.positions(u, None).unwrap()[0].id;
        tick(&e, "BTCUSDT", 105).await;
        say(&e, u, &format!("/close {pid2}")).await;
        // a second win: 2 of 3 is 66.7 % rounded (66.6 % cut off)
        say(&e, u, "/buy BTCUSDT 1").await;
        let pid3 = e.positions(u, None).unwrap()[0].id;
        tick(&e, "BTCUSDT", 115).await;
        say(&e, u, &format!("/close {pid3}")).await;
        say(&e, u, "/sell BTCUSDT 2").await;
        tick(&e, "BTCUSDT", 110).await;
        let trades = e.trades(u, 1, 10).unwrap().trades;
        let realized: i64 = trades.iter().map(|t| t.pnl.raw()).sum();
        let fees: i64 = trades
            .iter()
            .map(|t| t.open_fee.raw() + t.close_fee.raw())
            .sum();
        let upnl = e.balance(u, AccountType::Demo).unwrap().unrealized_pnl;
        assert_eq!(upnl, d("10"));
        let r = say(&e, u, "/pnl").await;
        assert!(
            r.contains(&format!("Realized PnL: {} USDT", Dec(realized))),
            "{r}"
        );
        assert!(
            r.contains(&format!("Fees paid on closed trades: {} USDT", Dec(fees))),
            "{r}"
        );
        assert!(
            r.contains("Trades: 3\nWins: 2, losses: 1, breakeven: 0 (win rate 66.7%)"),
            "{r}"
        );
        assert!(
            r.contains("Unrealized PnL: 10 USDT (demo 10, real 0)"),
            "{r}"
        );
        // one account: every trade here is demo
        let demo = say(&e, u, "/pnl demo").await;
        assert!(demo.starts_with("PnL summary, demo account\n"), "{demo}");
        assert!(
            demo.contains("Trades: 3\n") && demo.contains("(demo 10)"),
            "{demo}"
        );
        let real = say(&e, u, "/pnl real").await;
        assert!(
            real.contains("Trades: 0\n") && real.contains("Unrealized PnL: 0 USDT (real 0)"),
            "{real}"
        );
        assert_eq!(say(&e, u, "/trades real").await, "No trades yet.");
        assert_eq!(
            say(&e, u, "/trades 1 demo").await,
            say(&e, u, "/trades").await
        );
        // the page and the account in either order, the account in any case
        assert_eq!(
            say(&e, u, "/trades DEMO 1").await,
            say(&e, u, "/trades").await
        );
        assert_eq!(say(&e, u, "/trades Real 1").await, "No trades yet.");
        assert_eq!(
            say(&e, u, "/pnl now").await,
            "Expected demo or real, got \"now\".\nUsage: /pnl [demo|real]"
        );
        e.shutdown();
    }

    #[tokio::test]
    async fn trades_paginate_newest_first() {
        let (_dir, e, u) = setup().await;
        for _ in 0..12 {
            say(&e, u, "/buy BTCUSDT 0.01").await;
            let pid = e.positions(u, None).unwrap()[0].id;
            let r = say(&e, u, &format!("/close {pid}")).await;
            assert!(r.contains("closed (manual)"), "{r}");
        }
        let all = e.trades(u, 1, 100).unwrap().trades;
        assert_eq!(all.len(), 12);
        let r1 = say(&e, u, "/trades").await;
        assert!(
            r1.starts_with("Trades, page 1/2 (12 in all, newest first):"),
            "{r1}"
        );
        assert!(r1.ends_with("Next: /trades 2"), "{r1}");
        let ids1: Vec<&str> = r1.lines().filter(|l| l.starts_with('#')).collect();
        assert_eq!(ids1.len(), 10);
        assert!(ids1[0].starts_with(&format!("#{} ", all[0].id)), "{r1}");
        let r2 = say(&e, u, "/trades 2").await;
        assert!(
            r2.starts_with("Trades, page 2/2 (12 in all, newest first):"),
            "{r2}"
        );
        assert_eq!(r2.lines().filter(|l| l.starts_with('#')).count(), 2);
        assert!(r2.contains(&format!("#{} ", all[11].id)), "{r2}");
        assert_eq!(
            say(&e, u, "/trades 3").await,
            "Page 3 does not exist: there are 2 pages of trades."
        );
        assert_eq!(
            say(&e, u, "/trades 0").await,
            "Expected a page number (1, 2, ...) or demo|real, got \"0\".\nUsage: /trades [PAGE] [demo|real]"
        );
        for huge in ["18446744073709551615", "99999999999999999999999"] {
            let r = say(&e, u, &format!("/trades {huge}")).await;
            assert!(r.starts_with(&format!("Page {huge} does not exist")), "{r}");
        }
        let r = say(&e, u, "/pnl").await;
        assert!(r.contains("Trades: 12\n"), "{r}");
        e.shutdown();
    }

    #[tokio::test]
    async fn bot_and_config() {
        let (_dir, e, u) = setup().await;
        assert_eq!(say(&e, u, "/bot").await, "Bot is off.");
        let r = say(&e, u, "/bot on").await;
        assert_eq!(
            r,
            "Bot is now on. No strategy is set yet: use /config strategy=NAME."
        );
        assert!(e.bot_enabled(u).unwrap());
        assert_eq!(say(&e, u, "/bot OFF").await, "Bot is now off.");
        assert!(!e.bot_enabled(u).unwrap());
        assert_eq!(
            say(&e, u, "/bot maybe").await,
            "Expected on or off, got \"maybe\".\nUsage: /bot [on|off]"
        );

        let r = say(&e, u, "/config risk_pct=5 strategy=trend").await;
        let c = e.user_config(u).unwrap();
        assert_eq!(
            (c.risk_pct, c.strategy.as_deref()),
            (Some(d("5")), Some("trend"))
        );
        assert!(r.starts_with("Config updated:\nstrategy: trend\n"), "{r}");
        let r = say(&e, u, "/config").await;
        assert_eq!(
            r,
            "Your config:\nstrategy: trend\nleverage: none (orders use 1)\nrisk_pct: 5\nsl_pct: -\ntp_pct: -\naccount_type: demo\nbot: off"
        );
        say(
            &e,
            u,
            "/config leverage=x10 SL_PCT=2.5% tp_pct=7 account_type=REAL",
        )
        .await;
        let c = e.user_config(u).unwrap();
        assert_eq!(c.leverage, Some(10));
        assert_eq!(
            (c.sl_pct, c.tp_pct, c.account_type),
            (Some(d("2.5")), Some(d("7")), AccountType::Real)
        );
        assert_eq!(
            say(&e, u, "/bot on").await,
            "Bot is now on. It follows strategy trend on the real account."
        );
        let r = say(
            &e,
            u,
            "/config strategy=none leverage=none sl_pct=None account_type=none",
        )
        .await;
        assert!(r.contains("strategy: none\nleverage: none (orders use 1)\nrisk_pct: 5\nsl_pct: -\ntp_pct: 7\naccount_type: demo\nbot: on"), "{r}");
        let c = e.user_config(u).unwrap();
        assert_eq!(
            (c.strategy, c.leverage, c.sl_pct, c.account_type),
            (None, None, None, AccountType::Demo)
        );

        // the config leverage is the default for orders
        say(&e, u, "/config leverage=5").await;
        let r = say(&e, u, "/buy BTCUSDT 0.01").await;
        assert!(r.contains("(market, x5, demo)"), "{r}");

        assert_eq!(
            say(&e, u, "/config risk_pct=500").await,
            "Rejected: risk_pct must be > 0 and <= 100."
        );
        let usage = "Usage: /config [key=value ...]";
        for (input, first) in [
            (
                "/config foo=1",
                "Unknown key \"foo\"; keys: strategy, leverage, risk_pct, sl_pct, tp_pct, account_type.",
            ),
            (
                "/config risk_pct=abc",
                "The value of risk_pct must be a decimal number, got \"abc\".",
            ),
            ("/config risk_pct", "Expected key=value, got \"risk_pct\"."),
            (
                "/config risk_pct=",
                "Key \"risk_pct\" needs a value (none clears it).",
            ),
            (
                "/config leverage=ten",
                "The value of leverage must be a whole number, got \"ten\".",
            ),
            (
                "/config leverage=+3",
                "The value of leverage must be a whole number, got \"+3\".",
            ),
            (
                "/config =",
                "Unknown key \"\"; keys: strategy, leverage, risk_pct, sl_pct, tp_pct, account_type.",
            ),
            (
                "/config account_type=gold",
                "The value of account_type must be demo or real, got \"gold\".",
            ),
            (
                "/config risk_pct=1 risk_pct=2",
                "Key \"risk_pct\" given twice.",
            ),
        ] {
            assert_eq!(
                say(&e, u, input).await,
                format!("{first}\n{usage}"),
                "for {input}"
            );
        }
        // too large is out of the engine's range, not "not a whole number"
        assert_eq!(
            say(&e, u, "/config leverage=4294967296").await,
            "Rejected: leverage must be 1..=1000."
        );
        assert_eq!(e.user_config(u).unwrap().risk_pct, Some(d("5")));
        e.shutdown();
    }

    #[tokio::test]
    async fn redeem_promo_codes() {
        let (_dir, e, u) = setup().await;
        e.create_promo(NewPromo {
            code: "WELCOME30".into(),
            license_type: "pro".into(),
            days: 30,
            max_uses: 10,
            valid_until: None,
        })
        .await
        .unwrap();
        let r = say(&e, u, "/redeem WELCOME30").await;
        let l = e.license(u).unwrap();
        assert_eq!(l.license_type, "pro");
        assert_eq!(
            r,
            format!(
                "Promo code redeemed.\nLicense: pro, valid until {}.",
                format_timestamp(l.end_date)
            )
        );
        assert_eq!(
            say(&e, u, "/redeem WELCOME30").await,
            "You have already redeemed this promo code."
        );
        assert_eq!(
            say(&e, u, "/redeem NOPE").await,
            "Promo code invalid: no such code."
        );
        assert_eq!(say(&e, u, "/redeem").await, "Usage: /redeem CODE");
        assert_eq!(say(&e, u, "/redeem A B").await, "Usage: /redeem CODE");
        e.shutdown();
    }

    #[tokio::test]
    async fn malformed_and_unknown_commands() {
        let (_dir, e, u) = setup().await;
        let buy = "Usage: /buy SYMBOL QTY [@PRICE] [xLEV] [sl=PRICE] [tp=PRICE] [demo|real]";
        let sell = "Usage: /sell SYMBOL QTY [@PRICE] [xLEV] [sl=PRICE] [tp=PRICE] [demo|real]";
        let cases: &[(&str, String)] = &[
            ("/buy", buy.into()),
            ("/buy BTCUSDT", buy.into()),
            ("/sell", sell.into()),
            (
                "/buy BTCUSDT NaN",
                format!("QTY must be a decimal number, got \"NaN\".\n{buy}"),
            ),
            (
                "/buy BTCUSDT 99999999999",
                format!("QTY is out of range: \"99999999999\".\n{buy}"),
            ),
            // an exponent is refused in chat: a typo of 1e3 would buy 1,000
            (
                "/buy BTCUSDT 1e3",
                format!("QTY must be a decimal number, got \"1e3\".\n{buy}"),
            ),
            (
                "/buy BTCUSDT 0.01 sl=2.9e4",
                format!("SL must be a decimal number, got \"2.9e4\".\n{buy}"),
            ),
            (
                "/buy BTCUSDT 0.000000001",
                format!("QTY has more than 8 decimal places: \"0.000000001\".\n{buy}"),
            ),
            (
                "/buy BTCUSDT 1 @abc",
                format!("PRICE must be a decimal number, got \"abc\".\n{buy}"),
            ),
            ("/buy BTCUSDT 1 @", format!("PRICE is missing.\n{buy}")),
            (
                "/buy BTCUSDT 1 @90 @91",
                format!("PRICE given twice.\n{buy}"),
            ),
            ("/buy BTCUSDT 1 x10 x20", format!("LEV given twice.\n{buy}")),
            // too large is out of range, not "not a whole number"
            (
                "/buy BTCUSDT 1 x4294967296",
                "Rejected: leverage must be a whole number 1..=100.".into(),
            ),
            // whole numbers are digits only: no sign, at most one leading # on an id
            (
                "/buy BTCUSDT 1 x+5",
                format!("LEV must be a whole number like x10, got \"x+5\".\n{buy}"),
            ),
            (
                "/cancel +5",
                "The id must be a whole number >= 1, got \"+5\".\nUsage: /cancel ORDER_ID".into(),
            ),
            (
                "/cancel ##5",
                "The id must be a whole number >= 1, got \"##5\".\nUsage: /cancel ORDER_ID".into(),
            ),
            ("/cancel 99999999999999999999", "No such order.".into()),
            (
                "/trades +2",
                "Expected a page number (1, 2, ...) or demo|real, got \"+2\".\nUsage: /trades [PAGE] [demo|real]"
                    .into(),
            ),
            ("/buy BTCUSDT 1 sl=", format!("SL is missing.\n{buy}")),
            (
                "/buy BTCUSDT 1 tp=1 tp=2",
                format!("TP given twice.\n{buy}"),
            ),
            (
                "/buy BTCUSDT 1 demo real",
                format!("Account given twice.\n{buy}"),
            ),
            (
                "/buy BTCUSDT 1 moon",
                format!("Unexpected \"moon\".\n{buy}"),
            ),
            (
                "/buy BTC-USDT 1",
                format!("SYMBOL must be letters and digits like BTCUSDT, got \"BTC-USDT\".\n{buy}"),
            ),
            ("/cancel", "Usage: /cancel ORDER_ID".into()),
            (
                "/cancel abc",
                "The id must be a whole number >= 1, got \"abc\".\nUsage: /cancel ORDER_ID".into(),
            ),
            (
                "/cancel -1",
                "The id must be a whole number >= 1, got \"-1\".\nUsage: /cancel ORDER_ID".into(),
            ),
            ("/close", "Usage: /close POSITION_ID".into()),
            ("/close 1 2", "Usage: /close POSITION_ID".into()),
            (
                "/trades x",
                "Expected a page number (1, 2, ...) or demo|real, got \"x\".\nUsage: /trades [PAGE] [demo|real]"
                    .into(),
            ),
            ("/orders a b", "Usage: /orders [PAGE] [demo|real]".into()),
            ("/orders 1 2 demo", "Usage: /orders [PAGE] [demo|real]".into()),
            (
                "/orders demo real",
                "Expected a page number (1, 2, ...) or demo|real, got \"real\".\nUsage: /orders [PAGE] [demo|real]"
                    .into(),
            ),
            (
                "/positions all",
                "Expected a page number (1, 2, ...) or demo|real, got \"all\".\nUsage: /positions [PAGE] [demo|real]"
                    .into(),
            ),
            (
                "/positions 0",
                "Expected a page number (1, 2, ...) or demo|real, got \"0\".\nUsage: /positions [PAGE] [demo|real]"
                    .into(),
            ),
            ("/foo", "Unknown command. Try /help".into()),
            ("/", "Unknown command. Try /help".into()),
            ("/@bot", "Unknown command. Try /help".into()),
            (
                "hello",
                "Commands start with '/', e.g. /balance or /buy BTCUSDT 0.01. Try /help".into(),
            ),
            (
                "",
                "Commands start with '/', e.g. /balance or /buy BTCUSDT 0.01. Try /help".into(),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(&say(&e, u, input).await, want, "for {input:?}");
        }
        // nothing above changed anything
        assert!(e.orders(u, None).unwrap().is_empty() && e.positions(u, None).unwrap().is_empty());
        assert_eq!(
            e.balance(u, AccountType::Demo).unwrap().wallet,
            Dec::from_int(10000)
        );
        // a command for another bot is ignored by handle_for, whatever it asks
        for other in ["/buy@OtherBot BTCUSDT 0.01", "/balance@other_bot", "/@x"] {
            assert_eq!(
                handle_for(&e, u, other, "litetrade_bot").await,
                None,
                "{other}"
            );
        }
        assert!(e.positions(u, None).unwrap().is_empty());
        // no bot has an empty name: a bare `@` addresses nobody else
        for mine in [
            "/balance@LiteTrade_Bot",
            "/balance",
            "/balance@",
            "hello",
            "a@b",
        ] {
            let r = handle_for(&e, u, mine, "@litetrade_bot").await;
            assert_eq!(r, Some(handle(&e, u, mine).await), "{mine}");
        }
        // the command word is case-insensitive and takes a bot suffix
        let r = say(&e, u, "/Buy@litetrade_bot btcusdt 0.01").await;
        assert!(r.contains("filled: bought 0.01 BTCUSDT at 100"), "{r}");
        e.shutdown();
    }

    #[tokio::test]
    async fn orders_beyond_one_page_are_reached_by_page_number() {
        let (_dir, e, u) = setup().await;
        let n = MAX_LISTED + 5;
        for _ in 0..n {
            let r = say(&e, u, "/buy BTCUSDT 0.01 @50").await;
            assert!(r.contains("resting"), "{r}");
        }
        let ids: Vec<Id> = e.orders(u, None).unwrap().iter().map(|o| o.id).collect();
        assert_eq!(ids.len(), n);
        let listed = |text: &str| -> Vec<Id> {
            text.lines()
                .filter_map(|l| l.strip_prefix('#')?.split(' ').next()?.parse().ok())
                .collect()
        };
        let first = say(&e, u, "/orders").await;
        assert!(
            first.starts_with(&format!(
                "Pending orders, page 1/2 ({n} in all, oldest first):"
            )),
            "{first}"
        );
        assert!(first.contains("Next: /orders 2"), "{first}");
        assert_eq!(listed(&first), ids[..MAX_LISTED]);
        for cmd in ["/orders 2", "/orders #2", "/orders 2 demo"] {
            let second = say(&e, u, cmd).await;
            assert!(
                second.starts_with(&format!(
                    "Pending orders, page 2/2 ({n} in all, oldest first):"
                )),
                "{second}"
            );
            assert_eq!(listed(&second), ids[MAX_LISTED..], "{cmd}");
            assert!(!second.contains("Next:"), "{second}");
        }
        assert!(
            say(&e, u, "/orders demo")
                .await
                .contains("Next: /orders 2 demo")
        );
        assert_eq!(
            say(&e, u, "/orders 3").await,
            "Page 3 does not exist: there are 2 pages of pending orders."
        );
        assert_eq!(say(&e, u, "/orders 2 real").await, "No pending orders.");
        assert_eq!(say(&e, u, "/positions 2").await, "No open positions.");
        e.shutdown();
    }

    #[tokio::test]
    async fn long_output_paginates() {
        let (_dir, e, u) = setup().await;
        for i in 0..150 {
            let r = say(&e, u, &format!("/buy BTCUSDT 0.01 @{}", 50 + i % 40)).await;
            assert!(r.contains("resting"), "{r}");
        }
        let orders = e.orders(u, None).unwrap();
        assert_eq!(orders.len(), 150);
        let reply = handle(&e, u, "/orders").await;
        check_pages(&reply, "/orders");
        let n = reply.pages.len();
        assert!(n >= 2, "{n} pages");
        for (i, p) in reply.pages.iter().enumerate() {
            assert!(p.ends_with(&format!("\n\n(page {}/{n})", i + 1)), "{p}");
        }
        assert!(reply.pages[0].starts_with("Pending orders (150):"));
        let text = reply.text();
        for o in &orders {
            let line = format!("#{} buy 0.01 BTCUSDT limit @ {} x1", o.id, o.price.unwrap());
            assert_eq!(text.matches(&format!("{line} ")).count(), 1, "{line}");
        }
        // lines are never split across pages
        for p in &reply.pages {
            for l in p.lines().filter(|l| l.starts_with('#')) {
                assert!(l.ends_with("(demo)"), "cut line {l:?}");
            }
        }
        e.shutdown();
    }

    #[tokio::test]
    async fn junk_never_panics_and_changes_nothing() {
        let (_dir, e, u) = setup().await;
        let long_num = format!("/buy BTCUSDT {}", "9".repeat(3000));
        let long_word = "a".repeat(100_000);
        let long_cmd = format!("/{}", "b".repeat(5000));
        let long_redeem = format!("/redeem {}", "x".repeat(3000));
        let many_args = format!("/config {}", "risk_pct=1 ".repeat(300));
        let many_lines = "/balance\n".repeat(500);
        let junk: Vec<&str> = vec![
            "",
            " ",
            "\n\t",
            "\u{0}",
            "/\u{0}",
            "/buy\u{0} BTCUSDT 1",
            "/buy BTCUSDT \u{0}",
            "//",
            "/@",
            "@",
            "/ buy",
            "/buy BTCUSDT NaN",
            "/buy BTCUSDT inf",
            "/buy BTCUSDT -inf",
            "/buy BTCUSDT 1e999",
            "/buy BTCUSDT 1e2147483647",
            "/buy BTCUSDT 1e-2147483648",
            "/buy BTCUSDT 1e99999999999999999999",
            "/buy BTCUSDT 0e999999999",
            "/buy BTCUSDT -1",
            "/buy BTCUSDT 0",
            "/buy BTCUSDT 1e-8",
            "/sell BTCUSDT 92233720368.54775807",
            "/sell BTCUSDT 92233720368.54775807 @92233720368.54775807 x100",
            "/buy BTCUSDT 92233720368 @0.01 x4294967295",
            "/buy BTCUSDT 1 @-5",
            "/buy BTCUSDT 1 @0",
            "/buy BTCUSDT 1 @1e-999999999",
            "/buy BTCUSDT 1 sl=-1 tp=0",
            "/buy BTCUSDT 1 x",
            "/buy BTCUSDT 1 x-1",
            "/buy BTCUSDT 1 @@1",
            "/buy BTCUSDT 1 ==",
            "/buy 🚀 1",
            "/buy BTCUSDT 🚀",
            "/buy ＢＴＣＵＳＤＴ 1",
            "/bUy BTCUSDT 1,5",
            "/buy BTCUSDT 0x10",
            "/İ",
            "/ß ß",
            "/\u{202e}ecnalab",
            "/balance\u{200b}",
            "/cancel 0",
            "/cancel 9223372036854775807",
            "/cancel 9223372036854775808",
            "/cancel #",
            "/close -9223372036854775808",
            "/close 1e3",
            "/trades 99999999999999999999999",
            "/trades -1",
            "/config =",
            "/config ==",
            "/config =x",
            "/config leverage=0",
            "/config leverage=4294967296",
            "/config risk_pct=NaN",
            "/config risk_pct=1e999",
            "/config strategy=",
            "/redeem \u{0}",
            "/redeem ' OR 1=1 --",
            "/bot 🚀",
            "/balance 🚀",
            "/positions \u{0}",
            &long_num,
            &long_word,
            &long_cmd,
            &long_redeem,
            &many_args,
            &many_lines,
        ];
        for input in &junk {
            let r = handle(&e, u, input).await;
            check_pages(&r, input);
        }
        assert_eq!(
            say(&e, u, &long_word).await,
            "Message too long (at most 4096 characters). Try /help"
        );
        assert!(e.orders(u, None).unwrap().is_empty());
        assert!(e.positions(u, None).unwrap().is_empty());
        let b = e.balance(u, AccountType::Demo).unwrap();
        assert_eq!(
            (b.wallet, b.available),
            (Dec::from_int(10000), Dec::from_int(10000))
        );
        assert!(e.license(u).is_err());
        e.shutdown();
        // after shutdown: still a friendly line, never a panic
        let r = say(&e, u, "/buy BTCUSDT 0.01").await;
        assert!(r.contains("try again"), "{r}");
    }
}
