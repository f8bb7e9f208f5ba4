//! `user_licenses`, `promo_codes`, `promo_redemptions` and their `payments` rows.

use crate::domain::model::{Id, Millis, Promo};
use rusqlite::{Connection, params};

/// Hot query: a user's licenses, latest end first.
pub const BY_USER: &str = "SELECT license_type, starts_at, ends_at FROM user_licenses WHERE user_id = ?1 ORDER BY ends_at DESC";
/// Hot query: a promo code by its text.
pub const PROMO_BY_CODE: &str = "SELECT id, uses, max_uses FROM promo_codes WHERE code = ?1";
/// Hot query: a user's payments, newest first.
pub const PAYMENTS_BY_USER: &str = "SELECT id, kind, amount, created_at FROM payments WHERE user_id = ?1 AND created_at >= ?2 ORDER BY created_at DESC";

/// Inserts or extends a license.
pub fn save_license(
    c: &Connection,
    user: Id,
    lt: &str,
    starts: Millis,
    ends: Millis,
) -> rusqlite::Result<()> {
    c.prepare_cached(
        "INSERT INTO user_licenses (user_id, license_type, starts_at, ends_at) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT(user_id, license_type) DO UPDATE SET starts_at = ?3, ends_at = ?4",
    )?
    .execute(params![user, lt, starts, ends])
    .map(drop)
}

/// A user's licenses as (type, start, end), latest end first.
pub fn by_user(c: &Connection, user: Id) -> rusqlite::Result<Vec<(String, Millis, Millis)>> {
    c.prepare_cached(BY_USER)?
        .query_map([user], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect()
}

/// Every license (engine start-up) as (user, type, end).
pub fn all_licenses(c: &Connection) -> rusqlite::Result<Vec<(Id, String, Millis)>> {
    c.prepare("SELECT user_id, license_type, ends_at FROM user_licenses")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect()
}

/// Inserts or updates a promo code.
pub fn save_promo(c: &Connection, p: &Promo) -> rusqlite::Result<()> {
    c.prepare_cached(
        "INSERT INTO promo_codes (id, code, license_type, days, max_uses, uses, valid_until, active, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT(id) DO UPDATE SET uses = ?6, active = ?8",
    )?
    .execute(params![p.id, p.code, p.license_type, p.days, p.max_uses, p.uses, p.valid_until, p.active, p.created_at])
    .map(drop)
}

/// Every promo code (engine start-up).
pub fn all_promos(c: &Connection) -> rusqlite::Result<Vec<Promo>> {
    c.prepare("SELECT id, code, license_type, days, max_uses, uses, valid_until, active, created_at FROM promo_codes")?
        .query_map([], |r| {
            Ok(Promo {
                id: r.get(0)?,
                code: r.get(1)?,
                license_type: r.get(2)?,
                days: r.get(3)?,
                max_uses: r.get(4)?,
                uses: r.get(5)?,
                valid_until: r.get(6)?,
                active: r.get(7)?,
                created_at: r.get(8)?,
            })
        })?
        .collect()
}

/// Every redemption as (promo id, user) (engine start-up).
pub fn all_redemptions(c: &Connection) -> rusqlite::Result<Vec<(Id, Id)>> {
    c.prepare("SELECT promo_id, user_id FROM promo_redemptions")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect()
}

/// Records a redemption and its payment row.
pub fn insert_redemption(
    c: &Connection,
    promo: Id,
    user: Id,
    lt: &str,
    at: Millis,
) -> rusqlite::Result<()> {
    c.prepare_cached(
        "INSERT INTO promo_redemptions (promo_id, user_id, redeemed_at) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![promo, user, at])?;
    c.prepare_cached(
        "INSERT INTO payments (user_id, kind, amount, promo_id, license_type, created_at) VALUES (?1, 'promo', 0, ?2, ?3, ?4)",
    )?
    .execute(params![user, promo, lt, at])
    .map(drop)
}

/// The highest promo id (0 for none).
pub fn max_promo_id(c: &Connection) -> rusqlite::Result<Id> {
    c.query_row("SELECT COALESCE(MAX(id), 0) FROM promo_codes", [], |r| {
        r.get(0)
    })
}
