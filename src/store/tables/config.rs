//! `user_config` and `bot_state`: what a user's bot trades, and whether it is on.

use super::{opt_dec, text_enum};
use crate::domain::model::{AccountType, Id, Millis, UserConfig};
use rusqlite::{Connection, OptionalExtension, Row, params};

/// Hot query: one user's config and bot switch.
pub const BY_USER: &str = "SELECT c.strategy, c.leverage, c.risk_pct, c.sl_pct, c.tp_pct, c.account_type, \
     COALESCE(b.enabled, 0) FROM users u LEFT JOIN user_config c ON c.user_id = u.id \
     LEFT JOIN bot_state b ON b.user_id = u.id WHERE u.id = ?1";

fn map(r: &Row<'_>, o: usize) -> rusqlite::Result<UserConfig> {
    let acct: Option<String> = r.get(o + 5)?;
    Ok(UserConfig {
        strategy: r.get(o)?,
        leverage: r.get(o + 1)?,
        risk_pct: opt_dec(r, o + 2)?,
        sl_pct: opt_dec(r, o + 3)?,
        tp_pct: opt_dec(r, o + 4)?,
        account_type: match acct {
            Some(_) => text_enum(r, o + 5, AccountType::parse)?,
            None => AccountType::Demo,
        },
    })
}

/// Replaces a user's config.
pub fn save(c: &Connection, user: Id, cfg: &UserConfig, at: Millis) -> rusqlite::Result<()> {
    c.prepare_cached(
        "INSERT INTO user_config (user_id, strategy, leverage, risk_pct, sl_pct, tp_pct, account_type, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT(user_id) DO UPDATE SET strategy = ?2, leverage = ?3, \
         risk_pct = ?4, sl_pct = ?5, tp_pct = ?6, account_type = ?7, updated_at = ?8",
    )?
    .execute(params![
        user,
        cfg.strategy,
        cfg.leverage,
        cfg.risk_pct.map(|d| d.raw()),
        cfg.sl_pct.map(|d| d.raw()),
        cfg.tp_pct.map(|d| d.raw()),
        cfg.account_type.as_str(),
        at
    ])
    .map(drop)
}

/// Turns a user's bot on or off.
pub fn set_bot(c: &Connection, user: Id, on: bool, at: Millis) -> rusqlite::Result<()> {
    c.prepare_cached(
        "INSERT INTO bot_state (user_id, enabled, updated_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT(user_id) DO UPDATE SET enabled = ?2, updated_at = ?3",
    )?
    .execute(params![user, on, at])
    .map(drop)
}

/// One user's config and bot switch (`None`: no such user).
pub fn get(c: &Connection, user: Id) -> rusqlite::Result<Option<(UserConfig, bool)>> {
    c.prepare_cached(BY_USER)?
        .query_row([user], |r| Ok((map(r, 0)?, r.get(6)?)))
        .optional()
}

/// Every user's config and bot switch (engine start-up).
pub fn all(c: &Connection) -> rusqlite::Result<Vec<(Id, UserConfig, bool)>> {
    let mut st = c.prepare(
        "SELECT u.id, c.strategy, c.leverage, c.risk_pct, c.sl_pct, c.tp_pct, c.account_type, COALESCE(b.enabled, 0) \
         FROM users u LEFT JOIN user_config c ON c.user_id = u.id LEFT JOIN bot_state b ON b.user_id = u.id",
    )?;
    st.query_map([], |r| Ok((r.get(0)?, map(r, 1)?, r.get(7)?)))?
        .collect()
}
