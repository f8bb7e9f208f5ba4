//! The handlers of API.md §2, one per route.

use super::AppState;
use super::auth::{Admin, Caller, Owner, path_id as id};
use super::error::{ApiError, ApiResult, Body, Object, Params};
use crate::domain::model::AccountType;
use crate::domain::money::{Dec, parse_whole};
use crate::domain::symbol::SymbolPatch;
use crate::engine::accounts::{ConfigPatch, NewPromo, Signal};
use crate::engine::trading::{NewOrder, Tick};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The header on a `POST …/orders` answer that repeats an earlier request's order (a repeated
/// `client_order_id`), as Stripe and others name it; a new order's answer has none.
pub const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// A one-field JSON object, `{"name": value}`, serialized straight from the value.
pub struct Field<T>(&'static str, T);

impl<T: Serialize> Serialize for Field<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(1))?;
        map.serialize_entry(self.0, &self.1)?;
        map.end()
    }
}

/// Query of routes that take an account type.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountQuery {
    account_type: Option<AccountType>,
}

/// `GET /health`.
pub async fn health() -> impl IntoResponse {
    Json(Field("status", "ok"))
}

/// Request shape of its route (see API.md §2).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    name: String,
    #[serde(default)]
    telegram_id: Option<i64>,
}

/// `POST /users` (admin).
pub async fn create_user(
    State(st): State<AppState>,
    _admin: Admin,
    Body(b): Body<NewUser>,
) -> ApiResult<impl IntoResponse> {
    let (u, token) = st.engine.create_user(&b.name, b.telegram_id).await?;
    let body = json!({"id": u.id, "name": u.name, "telegram_id": u.telegram_id, "token": token, "created_at": u.created_at});
    Ok((StatusCode::CREATED, Json(body)))
}

/// The query of `GET /users`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FindUsers {
    telegram_id: i64,
}

/// `GET /users?telegram_id=N` (admin): the users created with that Telegram id, oldest first
/// (none is an empty list). A bot that lost the ids it stored finds its users again, and acts
/// for them with the admin token.
pub async fn find_users(
    State(st): State<AppState>,
    _admin: Admin,
    Params(q): Params<FindUsers>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(Field(
        "users",
        st.engine.users_by_telegram(q.telegram_id)?,
    )))
}

/// `GET /users/{id}`.
pub async fn get_user(
    State(st): State<AppState>,
    Owner { id: uid, .. }: Owner,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(st.engine.user(uid)?))
}

/// `GET /users/{id}/config`.
pub async fn get_config(
    State(st): State<AppState>,
    Owner { id: uid, .. }: Owner,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(st.engine.user_config(uid)?))
}

/// `PUT /users/{id}/config`.
pub async fn put_config(
    State(st): State<AppState>,
    Owner { id: uid, .. }: Owner,
    Body(patch): Body<ConfigPatch>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(st.engine.set_config(uid, patch).await?))
}

/// Request shape of its route (see API.md §2).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BotSwitch {
    enabled: bool,
}

/// `GET /users/{id}/bot`.
pub async fn get_bot(
    State(st): State<AppState>,
    Owner { id: uid, .. }: Owner,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(Field("enabled", st.engine.bot_enabled(uid)?)))
}

/// `PUT /users/{id}/bot`.
pub async fn put_bot(
    State(st): State<AppState>,
    Owner { id: uid, .. }: Owner,
    Body(b): Body<BotSwitch>,
) -> ApiResult<impl IntoResponse> {
    let enabled = st.engine.set_bot_enabled(uid, b.enabled).await?;
    Ok(Json(Field("enabled", enabled)))
}

/// Request shape of its route (see API.md §2).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DepositBody {
    amount: Dec,
    #[serde(default)]
    account_type: Option<AccountType>,
}

/// `POST /users/{id}/deposit` (users: demo only).
pub async fn deposit(
    State(st): State<AppState>,
    Owner { id: uid, caller }: Owner,
    Body(b): Body<DepositBody>,
) -> ApiResult<impl IntoResponse> {
    let acct = b.account_type.unwrap_or_default();
    if acct == AccountType::Real {
        caller.admin().map_err(|_| {
            ApiError::new(403, "forbidden", "only the admin deposits to real accounts")
        })?;
    }
    Ok(Json(st.engine.deposit(uid, b.amount, acct).await?))
}

/// `GET /users/{id}/balance`.
pub async fn balance(
    State(st): State<AppState>,
    Owner { id: uid, .. }: Owner,
    Params(q): Params<AccountQuery>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(
        st.engine.balance(uid, q.account_type.unwrap_or_default())?,
    ))
}

/// `POST /users/{id}/orders`.
pub async fn place_order(
    State(st): State<AppState>,
    Owner { id: uid, .. }: Owner,
    Body(o): Body<NewOrder>,
) -> ApiResult<impl IntoResponse> {
    let placed = st.engine.place_order_once(uid, o).await?;
    // API.md answers a retry like the first request; the header tells the two apart
    let replayed = placed
        .replayed
        .then_some([(REPLAYED, HeaderValue::from_static("true"))]);
    Ok((StatusCode::CREATED, replayed, Json(placed.order)))
}

/// `GET /users/{id}/orders` (pending, oldest first).
pub async fn list_orders(
    State(st): State<AppState>,
    Owner { id: uid, .. }: Owner,
    Params(q): Params<AccountQuery>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(Field(
        "orders",
        st.engine.orders(uid, q.account_type)?,
    )))
}

/// `GET /users/{id}/orders/{oid}`.
pub async fn get_order(
    State(st): State<AppState>,
    Owner { id: uid, .. }: Owner,
    Path((_, oid)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(st.engine.order(uid, id(&oid, "order")?)?))
}

/// The body of a route that takes none: empty or `{}`. Anything else is refused like any bad
/// body, so a client that believes it can close part of a position (`{"qty": …}`) is told
/// instead of having the whole position closed.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoFields {}

/// `DELETE /users/{id}/orders/{oid}`.
pub async fn cancel_order(
    State(st): State<AppState>,
    Owner { id: uid, .. }: Owner,
    Path((_, oid)): Path<(String, String)>,
    _: Body<NoFields>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(st.engine.cancel_order(uid, id(&oid, "order")?).await?))
}

/// `GET /users/{id}/positions` (open, oldest first).
pub async fn positions(
    State(st): State<AppState>,
    Owner { id: uid, .. }: Owner,
    Params(q): Params<AccountQuery>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(Field(
        "positions",
        st.engine.positions(uid, q.account_type)?,
    )))
}

/// `POST /users/{id}/positions/{pid}/close` (the whole position: there is no partial close).
pub async fn close_position(
    State(st): State<AppState>,
    Owner { id: uid, .. }: Owner,
    Path((_, pid)): Path<(String, String)>,
    _: Body<NoFields>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(
        st.engine.close_position(uid, id(&pid, "position")?).await?,
    ))
}

/// Request shape of its route (see API.md §2).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    page: Option<Whole>,
    limit: Option<Whole>,
    account_type: Option<AccountType>,
}

/// A whole number from the query string, saturated into `u64` (a negative one is 0). The
/// trades page and limit are clamped (API.md §2: limit to 1..=1000, page to at least 1), so
/// any whole number is a valid request; anything else is `invalid_request`.
struct Whole(u64);

impl<'de> Deserialize<'de> for Whole {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let (negative, digits) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s.strip_prefix('+').unwrap_or(&s)),
        };
        match parse_whole(digits) {
            None => Err(serde::de::Error::custom(format!(
                "{s:?} is not a whole number"
            ))),
            Some(_) if negative => Ok(Whole(0)),
            Some(n) => Ok(Whole(n)),
        }
    }
}

/// `GET /users/{id}/trades?page=&limit=&account_type=`.
pub async fn trades(
    State(st): State<AppState>,
    Owner { id: uid, .. }: Owner,
    Params(q): Params<PageQuery>,
) -> ApiResult<impl IntoResponse> {
    let limit = q.limit.map_or(100, |w| w.0.clamp(1, 1000) as u32);
    Ok(Json(st.engine.trades_of(
        uid,
        q.account_type,
        q.page.map_or(1, |w| w.0),
        limit,
    )?))
}

/// Request shape of its route (see API.md §2).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialsBody {
    api_key: String,
    api_secret: String,
}

/// `PUT /users/{id}/credentials/{exchange}`.
pub async fn put_credentials(
    State(st): State<AppState>,
    Owner { id: uid, .. }: Owner,
    Path((_, exchange)): Path<(String, String)>,
    Body(b): Body<CredentialsBody>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(
        st.engine
            .set_credentials(uid, &exchange, &b.api_key, &b.api_secret)
            .await?,
    ))
}

/// `GET /users/{id}/credentials/{exchange}` (masked).
pub async fn get_credentials(
    State(st): State<AppState>,
    Owner { id: uid, .. }: Owner,
    Path((_, exchange)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(st.engine.credentials(uid, &exchange)?))
}

/// Request shape of its route (see API.md §2).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedeemBody {
    code: String,
}

/// `POST /users/{id}/redeem`.
pub async fn redeem(
    State(st): State<AppState>,
    Owner { id: uid, .. }: Owner,
    Body(b): Body<RedeemBody>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(st.engine.redeem_promo(uid, &b.code).await?))
}

/// `GET /users/{id}/license`.
pub async fn license(
    State(st): State<AppState>,
    Owner { id: uid, .. }: Owner,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(st.engine.license(uid)?))
}

/// Request shape of its route (see API.md §2).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicksBody {
    ticks: Vec<Object<Tick>>,
}

/// `POST /market/ticks` (admin): answers once every effect is durable and visible.
pub async fn ticks(
    State(st): State<AppState>,
    _admin: Admin,
    Body(b): Body<TicksBody>,
) -> ApiResult<impl IntoResponse> {
    let ticks = b.ticks.into_iter().map(|Object(t)| t).collect();
    let out = st.engine.ingest_ticks(ticks).await?;
    Ok(Json(Field("accepted", out.accepted)))
}

/// `GET /market/{symbol}/ticker`.
pub async fn ticker(
    State(st): State<AppState>,
    _caller: Caller,
    Path(symbol): Path<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(st.engine.ticker(&symbol)?))
}

/// `GET /symbols`.
pub async fn symbols(State(st): State<AppState>, _caller: Caller) -> ApiResult<impl IntoResponse> {
    Ok(Json(Field("symbols", st.engine.symbols()?)))
}

/// `PUT /symbols/{symbol}` (admin): fields left out keep their current (or default) value. The
/// sequencer merges the patch, so two concurrent updates of different fields both stay.
pub async fn put_symbol(
    State(st): State<AppState>,
    _admin: Admin,
    Path(symbol): Path<String>,
    Body(patch): Body<SymbolPatch>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(st.engine.patch_symbol(&symbol, patch).await?))
}

/// `POST /signals` (admin).
pub async fn signal(
    State(st): State<AppState>,
    _admin: Admin,
    Body(s): Body<Signal>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(st.engine.submit_signal(s).await?))
}

/// `POST /promo-codes` (admin).
pub async fn create_promo(
    State(st): State<AppState>,
    _admin: Admin,
    Body(p): Body<NewPromo>,
) -> ApiResult<impl IntoResponse> {
    let promo = st.engine.create_promo(p).await?;
    Ok((StatusCode::CREATED, Json(promo)))
}

/// `GET /admin/dashboard` (admin; may lag by the api_response TTL).
pub async fn dashboard(State(st): State<AppState>, _admin: Admin) -> ApiResult<impl IntoResponse> {
    Ok(Json(st.engine.dashboard()?))
}

/// `GET /stats/cache` (admin).
pub async fn cache_stats(
    State(st): State<AppState>,
    _admin: Admin,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(Field("caches", st.engine.cache_stats())))
}

/// `GET /health/db-pool` (admin).
pub async fn db_pool(State(st): State<AppState>, _admin: Admin) -> ApiResult<impl IntoResponse> {
    let (size, open, idle) = st.engine.pool_state();
    let s = st.engine.db_stats();
    Ok(Json(json!({
        "pool_size": size, "open": open, "idle": idle, "in_use": open.saturating_sub(idle),
        "waits": s.pool_waits, "queries": s.queries, "failures": s.failures, "retries": s.retries,
        "slow_queries": s.slow_queries, "avg_query_us": s.avg_query_us, "max_query_us": s.max_query_us,
        "writer": {"batches": s.writer_batches, "jobs": s.writer_jobs, "batch_max": s.writer_batch_max,
                   "avg_commit_us": s.writer_avg_commit_us, "max_commit_us": s.writer_max_commit_us, "queue": s.writer_queue,
                   "wal_resets": s.wal_resets, "checkpoint_passes": s.checkpoint_passes},
        "sequencer_queue": st.engine.queue_depth(),
    })))
}

/// `GET /metrics` (Prometheus text).
pub async fn metrics(State(st): State<AppState>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        super::metrics::render(&st.engine, &st.http),
    )
}

/// Any unknown route.
pub async fn fallback() -> ApiError {
    ApiError::new(404, "not_found", "no such route")
}
