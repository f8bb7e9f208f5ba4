//! Bearer-token authentication: the admin token (constant-time comparison) or a user token
//! (looked up by its SHA-256; the user↔token link never changes, so hits are cached).

use super::AppState;
use super::error::ApiError;
use crate::domain::model::Id;
use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::request::Parts;
use subtle::ConstantTimeEq;

/// The longest bearer token accepted, in bytes; a longer one answers 401 unread.
pub const MAX_TOKEN_LEN: usize = 256;

/// Who is calling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caller {
    /// The admin token.
    Admin,
    /// A user's token.
    User(Id),
}

impl Caller {
    /// Admin, or the user whose path this is; any other user gets 404 (no information leaks).
    pub fn may_access(self, user: Id) -> Result<(), ApiError> {
        match self {
            Caller::Admin => Ok(()),
            Caller::User(id) if id == user => Ok(()),
            Caller::User(_) => Err(ApiError::new(404, "not_found", "user not found")),
        }
    }

    /// Admin only.
    pub fn admin(self) -> Result<(), ApiError> {
        match self {
            Caller::Admin => Ok(()),
            Caller::User(_) => Err(ApiError::new(403, "forbidden", "admin token required")),
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Self::Rejection> {
        let unauthorized = || ApiError::new(401, "unauthorized", "missing or invalid bearer token");
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(unauthorized)?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= MAX_TOKEN_LEN)
            .ok_or_else(unauthorized)?;
        if bool::from(token.as_bytes().ct_eq(st.admin_token.as_bytes())) {
            return Ok(Caller::Admin);
        }
        let hash = crate::engine::secrets::hash_token(token);
        if let Some(id) = st.token_cache.get(&hash) {
            return Ok(Caller::User(id));
        }
        match st
            .engine
            .user_by_token_hash(&hash)
            .map_err(ApiError::from)?
        {
            Some(id) => {
                st.token_cache.insert(hash, id);
                Ok(Caller::User(id))
            }
            None => Err(unauthorized()),
        }
    }
}

/// A path id: a positive integer, else 404 naming `what`.
pub fn path_id(raw: &str, what: &'static str) -> Result<Id, ApiError> {
    raw.parse::<Id>()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| ApiError::new(404, "not_found", format!("{what} not found")))
}

/// The admin, checked from the request's head alone. As an extractor it runs before any body
/// or query is read, so a user token gets 403 whatever else the request holds.
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Self::Rejection> {
        Caller::from_request_parts(parts, st).await?.admin()?;
        Ok(Admin)
    }
}

/// The user of a `/users/{id}/…` route, checked against the caller from the request's head
/// alone. As an extractor it runs before any body or query is read, so another user's route
/// answers 404 even when its body or query is malformed (API.md §2).
pub struct Owner {
    /// The path's user id.
    pub id: Id,
    /// Who is calling: that user or the admin.
    pub caller: Caller,
}

impl FromRequestParts<AppState> for Owner {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, st).await?;
        let params = RawPathParams::from_request_parts(parts, st)
            .await
            .map_err(|_| {
                ApiError::new(404, "not_found", "no such resource: the path is not UTF-8")
            })?;
        let raw = params
            .iter()
            .find(|(k, _)| *k == "id")
            .map_or("", |(_, v)| v);
        let id = path_id(raw, "user")?;
        caller.may_access(id)?;
        Ok(Owner { id, caller })
    }
}
