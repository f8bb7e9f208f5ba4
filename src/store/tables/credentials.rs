//! `credentials`: exchange API keys, stored only as AEAD ciphertext and nonce.

use crate::domain::model::{Id, Millis};
use rusqlite::{Connection, OptionalExtension, params};

/// Hot query: one user's credentials for one exchange.
pub const BY_USER_EXCHANGE: &str =
    "SELECT nonce, ciphertext FROM credentials WHERE user_id = ?1 AND exchange = ?2";

/// Stores (replaces) encrypted credentials.
pub fn save(
    c: &Connection,
    user: Id,
    exchange: &str,
    nonce: &[u8],
    ct: &[u8],
    at: Millis,
) -> rusqlite::Result<()> {
    c.prepare_cached(
        "INSERT INTO credentials (user_id, exchange, nonce, ciphertext, updated_at) VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT(user_id, exchange) DO UPDATE SET nonce = ?3, ciphertext = ?4, updated_at = ?5",
    )?
    .execute(params![user, exchange, nonce, ct, at])
    .map(drop)
}

/// The nonce and ciphertext of one user's credentials for `exchange`.
pub fn get(
    c: &Connection,
    user: Id,
    exchange: &str,
) -> rusqlite::Result<Option<(Vec<u8>, Vec<u8>)>> {
    c.prepare_cached(BY_USER_EXCHANGE)?
        .query_row(params![user, exchange], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
}

/// One user's sealed credentials for one exchange: (user, exchange, nonce, ciphertext).
pub type SealedRow = (Id, String, Vec<u8>, Vec<u8>);

/// Some stored credentials, if any. What a start checks its key against.
pub fn any(c: &Connection) -> rusqlite::Result<Option<SealedRow>> {
    c.prepare_cached("SELECT user_id, exchange, nonce, ciphertext FROM credentials LIMIT 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .optional()
}
