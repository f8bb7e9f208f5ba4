//! Dashboard aggregates over the last 24 hours (served from the `api_response` cache).

use super::{dec, text_enum};
use crate::domain::model::{Id, Millis, PositionSide};
use crate::domain::money::{Dec, SCALE, div_round_half_away};
use rusqlite::{Connection, params};
use serde::Serialize;
use std::collections::{HashMap, HashSet};

/// Hot query: trades closed since a time (24 h analytics).
pub const TRADES_SINCE: &str =
    "SELECT user_id, symbol, side, qty, exit_price, pnl FROM trade_logs WHERE closed_at >= ?1";

/// One row of a leaderboard.
#[derive(Clone, Debug, Serialize)]
pub struct UserFigure {
    /// User.
    pub user_id: Id,
    /// PnL or volume.
    pub value: Dec,
}

/// Per-symbol performance.
#[derive(Clone, Debug, Serialize)]
pub struct SymbolFigure {
    /// Symbol.
    pub symbol: String,
    /// Trades closed.
    pub trades: u64,
    /// Σ exit notional.
    pub volume: Dec,
    /// Σ pnl.
    pub pnl: Dec,
    /// Share of trades with pnl > 0, percent (2 decimals).
    pub win_rate_pct: Dec,
    /// Longs closed.
    pub longs: u64,
    /// Shorts closed.
    pub shorts: u64,
}

/// The admin dashboard.
#[derive(Clone, Debug, Serialize)]
pub struct Dashboard {
    /// Users in all.
    pub users: u64,
    /// Users with a trade in 24 h or an open position.
    pub active_users_24h: u64,
    /// Open positions.
    pub open_positions: u64,
    /// Pending orders.
    pub pending_orders: u64,
    /// Trades closed in 24 h.
    pub trades_24h: u64,
    /// Σ exit notional of trades closed in 24 h.
    pub volume_24h: Dec,
    /// Σ pnl of trades closed in 24 h.
    pub pnl_24h: Dec,
    /// Best users by 24 h pnl.
    pub top_pnl: Vec<UserFigure>,
    /// Busiest users by 24 h volume.
    pub top_volume: Vec<UserFigure>,
    /// Per-symbol figures.
    pub symbols: Vec<SymbolFigure>,
    /// When this was computed.
    pub generated_at: Millis,
}

fn count(c: &Connection, sql: &str) -> rusqlite::Result<u64> {
    c.query_row(sql, [], |r| r.get::<_, i64>(0))
        .map(|n| n as u64)
}

fn top(map: &HashMap<Id, i128>, n: usize) -> Vec<UserFigure> {
    let mut v: Vec<_> = map.iter().map(|(u, x)| (*u, *x)).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v.into_iter()
        .take(n)
        .map(|(user_id, x)| UserFigure {
            user_id,
            value: Dec(x.clamp(i64::MIN as i128, i64::MAX as i128) as i64),
        })
        .collect()
}

/// Computes the dashboard for trades closed since `since`.
pub fn dashboard(c: &Connection, since: Millis, now: Millis) -> rusqlite::Result<Dashboard> {
    let users = count(c, "SELECT COUNT(*) FROM users")?;
    let open_positions = count(c, "SELECT COUNT(*) FROM active_positions")?;
    let pending_orders = count(
        c,
        "SELECT COUNT(*) FROM order_rows WHERE status = 'pending'",
    )?;
    let mut active: HashSet<Id> = c
        .prepare("SELECT DISTINCT user_id FROM active_positions")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let (mut pnl_by_user, mut vol_by_user) = (HashMap::new(), HashMap::new());
    let mut per_symbol: HashMap<String, (u64, i128, i128, u64, u64, u64)> = HashMap::new();
    let (mut trades, mut vol_total, mut pnl_total) = (0u64, 0i128, 0i128);
    let mut st = c.prepare_cached(TRADES_SINCE)?;
    let mut rows = st.query(params![since])?;
    while let Some(r) = rows.next()? {
        let user: Id = r.get(0)?;
        let symbol: String = r.get(1)?;
        let side = text_enum(r, 2, PositionSide::parse)?;
        let notional = div_round_half_away(
            dec(r, 3)?.raw() as i128 * dec(r, 4)?.raw() as i128,
            SCALE as i128,
        );
        let pnl = dec(r, 5)?.raw() as i128;
        active.insert(user);
        trades += 1;
        vol_total += notional;
        pnl_total += pnl;
        *pnl_by_user.entry(user).or_insert(0) += pnl;
        *vol_by_user.entry(user).or_insert(0) += notional;
        let e = per_symbol.entry(symbol).or_insert((0, 0, 0, 0, 0, 0));
        e.0 += 1;
        e.1 += notional;
        e.2 += pnl;
        e.3 += u64::from(pnl > 0);
        e.4 += u64::from(side == PositionSide::Long);
        e.5 += u64::from(side == PositionSide::Short);
    }
    let clamp = |x: i128| Dec(x.clamp(i64::MIN as i128, i64::MAX as i128) as i64);
    let mut symbols: Vec<SymbolFigure> = per_symbol
        .into_iter()
        .map(
            |(symbol, (n, vol, pnl, wins, longs, shorts))| SymbolFigure {
                symbol,
                trades: n,
                volume: clamp(vol),
                pnl: clamp(pnl),
                win_rate_pct: Dec(div_round_half_away(
                    wins as i128 * 100 * SCALE as i128,
                    n as i128 * 1_000_000,
                ) as i64
                    * 1_000_000),
                longs,
                shorts,
            },
        )
        .collect();
    symbols.sort_by(|a, b| a.symbol.cmp(&b.symbol));
    Ok(Dashboard {
        users,
        active_users_24h: active.len() as u64,
        open_positions,
        pending_orders,
        trades_24h: trades,
        volume_24h: clamp(vol_total),
        pnl_24h: clamp(pnl_total),
        top_pnl: top(&pnl_by_user, 10),
        top_volume: top(&vol_by_user, 10),
        symbols,
        generated_at: now,
    })
}
