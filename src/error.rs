//! The library's error type; each variant maps one-to-one onto an API.md error code.

use crate::domain::money::Dec;
use crate::store::StoreError;

/// Everything an engine call can refuse or fail with. A refused call changed nothing.
/// Non-exhaustive: a later version may add a variant, so a `match` outside this crate needs a
/// catch-all arm (use [`Error::code`] or [`Error::status`] to treat kinds alike).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// Bad input: wrong type, out of range, not a multiple of its step, unknown field...
    #[error("{0}")]
    Invalid(String),
    /// No such user, order, position, license... (or not yours).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The symbol is not listed.
    #[error("unknown symbol {0}")]
    UnknownSymbol(String),
    /// The symbol has no last price yet.
    #[error("no price yet for {0}")]
    NoPrice(String),
    /// Not enough available balance.
    #[error("insufficient balance: needs {needed}, available {available}")]
    InsufficientBalance {
        /// What the operation needs.
        needed: Dec,
        /// What is available.
        available: Dec,
    },
    /// The promo code does not exist, is inactive, expired or used up.
    #[error("promo code invalid: {0}")]
    PromoInvalid(String),
    /// This user already redeemed this code.
    #[error("promo code already redeemed by this user")]
    PromoAlreadyRedeemed,
    /// The request conflicts with the current state (cancel a filled order, close a closed
    /// position, duplicate promo code...).
    #[error("{0}")]
    Conflict(String),
    /// Trading needs an active license on this server.
    #[error("an active license is required to trade")]
    LicenseRequired,
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// Missing or wrong credentials.
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// The database cannot take the write now (disk full, locked); nothing was applied.
    #[error("{0}")]
    Unavailable(String),
    /// Another process holds the database's lock (`engine::lock_database`).
    #[error("{0}")]
    Locked(String),
    /// The engine has been shut down: no command runs on it again, so retrying is pointless
    /// (unlike [`Error::Unavailable`]). Whether a command that was already on its way ran is
    /// told by reading its effect (or, for an order, by its `client_order_id`).
    #[error("{0}")]
    Stopped(&'static str),
    /// A bug or an unexpected database error.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// The API.md error code.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Invalid(_) => "invalid_request",
            Error::NotFound(_) => "not_found",
            Error::UnknownSymbol(_) => "unknown_symbol",
            Error::NoPrice(_) => "no_price",
            Error::InsufficientBalance { .. } => "insufficient_balance",
            Error::PromoInvalid(_) => "promo_invalid",
            Error::PromoAlreadyRedeemed => "promo_already_redeemed",
            Error::Conflict(_) => "conflict",
            Error::LicenseRequired => "license_required",
            Error::Forbidden(_) => "forbidden",
            Error::Unauthorized => "unauthorized",
            Error::Unavailable(_) | Error::Locked(_) | Error::Stopped(_) => "unavailable",
            Error::Internal(_) => "internal",
        }
    }

    /// The HTTP status for this error.
    pub fn status(&self) -> u16 {
        match self {
            Error::Invalid(_) | Error::UnknownSymbol(_) => 422,
            Error::NotFound(_) => 404,
            Error::NoPrice(_)
            | Error::InsufficientBalance { .. }
            | Error::PromoInvalid(_)
            | Error::PromoAlreadyRedeemed
            | Error::Conflict(_) => 409,
            Error::LicenseRequired | Error::Forbidden(_) => 403,
            Error::Unauthorized => 401,
            Error::Unavailable(_) | Error::Locked(_) | Error::Stopped(_) => 503,
            Error::Internal(_) => 500,
        }
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e.clone() {
            StoreError::Unavailable(m) => Error::Unavailable(m),
            StoreError::Open { .. } => Error::Unavailable(e.to_string()),
            other => Error::Internal(other.to_string()),
        }
    }
}

/// Result with the library's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
