//! `balances`: one ledger row per (user, account type); deposits also go to `payments`.

use super::{MultiInsert, bind_row, dec, text_enum};
use crate::domain::model::{AccountType, Id, Ledger, Millis};
use crate::domain::money::Dec;
use rusqlite::{Connection, OptionalExtension, params};

/// Hot query: one balance row.
pub const BY_USER_ACCOUNT: &str = "SELECT wallet, margin_used, order_reserved, deposited FROM balances WHERE user_id = ?1 AND account_type = ?2";

static SAVE: MultiInsert = MultiInsert::new(
    "INSERT OR FAIL INTO balances (user_id, account_type, wallet, margin_used, order_reserved, deposited, updated_at)",
    7,
    "ON CONFLICT(user_id, account_type) DO UPDATE SET wallet = excluded.wallet, \
           margin_used = excluded.margin_used, order_reserved = excluded.order_reserved, \
           deposited = excluded.deposited, updated_at = excluded.updated_at",
);

/// Replaces balance rows (a later row for the same ledger wins).
pub fn save_many(
    c: &Connection,
    rows: &[(Id, AccountType, &Ledger, Millis)],
) -> rusqlite::Result<()> {
    SAVE.run(c, rows, |st, at, (user, acct, l, updated)| {
        bind_row!(st, at;
            user,
            acct.as_str(),
            l.wallet.raw(),
            l.margin_used.raw(),
            l.order_reserved.raw(),
            l.deposited.raw(),
            updated
        )
    })
}

/// Records a deposit in `payments`.
pub fn insert_deposit(
    c: &Connection,
    user: Id,
    acct: AccountType,
    amount: Dec,
    at: Millis,
) -> rusqlite::Result<()> {
    c.prepare_cached(
        "INSERT INTO payments (user_id, kind, amount, account_type, created_at) VALUES (?1, 'deposit', ?2, ?3, ?4)",
    )?
    .execute(params![user, amount.raw(), acct.as_str(), at])
    .map(drop)
}

/// One balance row (zero when the user never had one).
pub fn get(c: &Connection, user: Id, acct: AccountType) -> rusqlite::Result<Ledger> {
    Ok(c.prepare_cached(BY_USER_ACCOUNT)?
        .query_row(params![user, acct.as_str()], |r| {
            Ok(Ledger {
                wallet: dec(r, 0)?,
                margin_used: dec(r, 1)?,
                order_reserved: dec(r, 2)?,
                deposited: dec(r, 3)?,
            })
        })
        .optional()?
        .unwrap_or_default())
}

/// Every balance row (engine start-up).
pub fn all(c: &Connection) -> rusqlite::Result<Vec<(Id, AccountType, Ledger)>> {
    let mut st = c.prepare("SELECT user_id, account_type, wallet, margin_used, order_reserved, deposited FROM balances")?;
    st.query_map([], |r| {
        Ok((
            r.get(0)?,
            text_enum(r, 1, AccountType::parse)?,
            Ledger {
                wallet: dec(r, 2)?,
                margin_used: dec(r, 3)?,
                order_reserved: dec(r, 4)?,
                deposited: dec(r, 5)?,
            },
        ))
    })?
    .collect()
}
