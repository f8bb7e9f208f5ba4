//! `users`: identities and hashed bearer tokens.

use crate::domain::model::{Id, Millis, User};
use rusqlite::{Connection, OptionalExtension, params};

/// Hot query: a user by id.
pub const BY_ID: &str = "SELECT id, name, telegram_id, created_at FROM users WHERE id = ?1";
/// Hot query: the users with a Telegram id, oldest first.
pub const BY_TELEGRAM: &str =
    "SELECT id, name, telegram_id, created_at FROM users WHERE telegram_id = ?1 ORDER BY id";
/// Hot query: the user owning a token hash.
pub const BY_TOKEN: &str = "SELECT id FROM users WHERE token_hash = ?1";

/// Inserts a user.
pub fn insert(
    c: &Connection,
    id: Id,
    name: &str,
    tg: Option<i64>,
    hash: &[u8],
    at: Millis,
) -> rusqlite::Result<()> {
    c.prepare_cached("INSERT INTO users (id, name, telegram_id, token_hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5)")?
        .execute(params![id, name, tg, hash, at])
        .map(drop)
}

fn map(r: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: r.get(0)?,
        name: r.get(1)?,
        telegram_id: r.get(2)?,
        created_at: r.get(3)?,
    })
}

/// A user by id.
pub fn get(c: &Connection, id: Id) -> rusqlite::Result<Option<User>> {
    c.prepare_cached(BY_ID)?.query_row([id], map).optional()
}

/// The users created with Telegram id `tg`, oldest first.
pub fn by_telegram(c: &Connection, tg: i64) -> rusqlite::Result<Vec<User>> {
    c.prepare_cached(BY_TELEGRAM)?
        .query_map([tg], map)?
        .collect()
}

/// The user id owning a token hash.
pub fn id_by_token_hash(c: &Connection, hash: &[u8]) -> rusqlite::Result<Option<Id>> {
    c.prepare_cached(BY_TOKEN)?
        .query_row([hash], |r| r.get(0))
        .optional()
}

/// Every user id (engine start-up).
pub fn all_ids(c: &Connection) -> rusqlite::Result<Vec<Id>> {
    let mut st = c.prepare("SELECT id FROM users")?;
    st.query_map([], |r| r.get(0))?.collect()
}

/// The first user (by id) that is not one of `n` users named `{prefix}{id}` with ids 1..=n:
/// what tells a database of `demo`'s own from one that holds somebody else.
pub fn first_outside(
    c: &Connection,
    n: Id,
    prefix: &str,
) -> rusqlite::Result<Option<(Id, String)>> {
    c.prepare_cached(
        "SELECT id, name FROM users WHERE id > ?1 OR name != ?2 || id ORDER BY id LIMIT 1",
    )?
    .query_row(params![n, prefix], |r| Ok((r.get(0)?, r.get(1)?)))
    .optional()
}
