//! The HTTP API of API.md §2 (axum): routes, auth, JSON errors, SSE, metrics, OpenAPI.

pub mod auth;
pub mod error;
pub mod listen;
pub mod metrics;
pub mod openapi;
pub mod routes;
pub mod sse;

use crate::Engine;
use crate::domain::model::Id;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use error::ApiError;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    /// The engine.
    pub engine: Engine,
    /// The admin bearer token.
    pub admin_token: Arc<str>,
    /// token SHA-256 → user id (a token never changes owner, so entries never go stale).
    pub token_cache: Arc<quick_cache::sync::Cache<Vec<u8>, Id>>,
    /// Request metrics.
    pub http: Arc<metrics::HttpMetrics>,
    /// The most bytes a request body may hold.
    pub body_limit: usize,
    /// How long a request body may take to arrive once its head has (`header_timeout_ms`).
    pub body_timeout: Duration,
}

/// Every route: (method, path) — the router and the OpenAPI document are checked against it.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/api/v1/health"),
    ("post", "/api/v1/users"),
    ("get", "/api/v1/users"),
    ("get", "/api/v1/users/{id}"),
    ("get", "/api/v1/users/{id}/config"),
    ("put", "/api/v1/users/{id}/config"),
    ("get", "/api/v1/users/{id}/bot"),
    ("put", "/api/v1/users/{id}/bot"),
    ("post", "/api/v1/users/{id}/deposit"),
    ("get", "/api/v1/users/{id}/balance"),
    ("post", "/api/v1/users/{id}/orders"),
    ("get", "/api/v1/users/{id}/orders"),
    ("get", "/api/v1/users/{id}/orders/{oid}"),
    ("delete", "/api/v1/users/{id}/orders/{oid}"),
    ("get", "/api/v1/users/{id}/positions"),
    ("post", "/api/v1/users/{id}/positions/{pid}/close"),
    ("get", "/api/v1/users/{id}/trades"),
    ("put", "/api/v1/users/{id}/credentials/{exchange}"),
    ("get", "/api/v1/users/{id}/credentials/{exchange}"),
    ("post", "/api/v1/users/{id}/redeem"),
    ("get", "/api/v1/users/{id}/license"),
    ("get", "/api/v1/users/{id}/events"),
    ("post", "/api/v1/market/ticks"),
    ("get", "/api/v1/market/{symbol}/ticker"),
    ("get", "/api/v1/symbols"),
    ("put", "/api/v1/symbols/{symbol}"),
    ("post", "/api/v1/signals"),
    ("post", "/api/v1/promo-codes"),
    ("get", "/api/v1/admin/dashboard"),
    ("get", "/api/v1/stats/cache"),
    ("get", "/api/v1/health/db-pool"),
    ("get", "/api/v1/openapi.json"),
    ("get", "/metrics"),
];

/// Builds the router with every route, the body limit, JSON errors and metrics.
pub fn router(engine: Engine, admin_token: &str) -> Router {
    let body_limit = engine.config().body_limit;
    let body_timeout = Duration::from_millis(engine.config().header_timeout_ms);
    let state = AppState {
        engine,
        admin_token: admin_token.into(),
        token_cache: Arc::new(quick_cache::sync::Cache::new(100_000)),
        http: Arc::new(metrics::HttpMetrics::default()),
        body_limit,
        body_timeout,
    };
    use routes as r;
    let v1 = Router::new()
        .route("/health", get(r::health))
        .route("/users", post(r::create_user).get(r::find_users))
        .route("/users/{id}", get(r::get_user))
        .route("/users/{id}/config", get(r::get_config).put(r::put_config))
        .route("/users/{id}/bot", get(r::get_bot).put(r::put_bot))
        .route("/users/{id}/deposit", post(r::deposit))
        .route("/users/{id}/balance", get(r::balance))
        .route(
            "/users/{id}/orders",
            post(r::place_order).get(r::list_orders),
        )
        .route(
            "/users/{id}/orders/{oid}",
            get(r::get_order).delete(r::cancel_order),
        )
        .route("/users/{id}/positions", get(r::positions))
        .route("/users/{id}/positions/{pid}/close", post(r::close_position))
        .route("/users/{id}/trades", get(r::trades))
        .route(
            "/users/{id}/credentials/{exchange}",
            put(r::put_credentials).get(r::get_credentials),
        )
        .route("/users/{id}/redeem", post(r::redeem))
        .route("/users/{id}/license", get(r::license))
        .route("/users/{id}/events", get(sse::events))
        .route("/market/ticks", post(r::ticks))
        .route("/market/{symbol}/ticker", get(r::ticker))
        .route("/symbols", get(r::symbols))
        .route("/symbols/{symbol}", put(r::put_symbol))
        .route("/signals", post(r::signal))
        .route("/promo-codes", post(r::create_promo))
        .route("/admin/dashboard", get(r::dashboard))
        .route("/stats/cache", get(r::cache_stats))
        .route("/health/db-pool", get(r::db_pool))
        .route("/openapi.json", get(openapi::handler));
    Router::new()
        .nest("/api/v1", v1)
        .route("/metrics", get(r::metrics))
        .fallback(r::fallback)
        .layer(middleware::from_fn(json_errors))
        .layer(middleware::from_fn_with_state(
            state.http.clone(),
            metrics::track,
        ))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// Rewrites axum's own plain-text rejections (bad path, wrong method) into the JSON
/// error model, so every 4xx/5xx has the same shape.
async fn json_errors(req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    let st = res.status();
    let is_json = res
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if (st.is_client_error() || st.is_server_error()) && !is_json {
        let (code, msg) = match st.as_u16() {
            404 => ("not_found", "no such route"),
            405 => ("method_not_allowed", "method not allowed on this route"),
            413 => ("payload_too_large", "request body too large"),
            s if s < 500 => ("invalid_request", "invalid request"),
            _ => ("internal", "internal error"),
        };
        let message = match axum::body::to_bytes(res.into_body(), 4096).await {
            Ok(b) if !b.is_empty() => format!("{msg}: {}", String::from_utf8_lossy(&b)),
            _ => msg.to_string(),
        };
        return ApiError::new(st.as_u16(), code, message).into_response();
    }
    res
}

/// An admin token shorter than this gets a warning at start (the generated ones have 64).
pub const MIN_ADMIN_TOKEN_CHARS: usize = 32;

/// Where the admin token came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenSource {
    /// The `LITETRADE_ADMIN_TOKEN` variable (no file is read or written).
    Env,
    /// The file beside the database.
    File,
}

/// The admin token: `LITETRADE_ADMIN_TOKEN` if set, else the token stored in `file` (created
/// with a random token, mode 0600, when missing), and which of the two it is. The token is
/// never logged; the file path is. A token longer than [`auth::MAX_TOKEN_LEN`] could never be
/// presented, so it is refused here rather than at every request.
pub fn admin_token(env: Option<String>, file: &Path) -> std::io::Result<(String, TokenSource)> {
    let usable = |t: String, from: &str| {
        if t.len() > auth::MAX_TOKEN_LEN {
            Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "the admin token in {from} is {} bytes; a bearer token may have at most {}",
                    t.len(),
                    auth::MAX_TOKEN_LEN
                ),
            ))
        } else {
            if t.chars().count() < MIN_ADMIN_TOKEN_CHARS {
                tracing::warn!(
                    "the admin token in {from} is shorter than {MIN_ADMIN_TOKEN_CHARS} \
                     characters, and anyone who can reach the port may guess at it (nothing \
                     limits attempts): use a long random one, such as `openssl rand -hex 32`"
                );
            }
            Ok(t)
        }
    };
    if let Some(t) = env.filter(|t| !t.trim().is_empty()) {
        return Ok((
            usable(t.trim().to_string(), "LITETRADE_ADMIN_TOKEN")?,
            TokenSource::Env,
        ));
    }
    if !file.exists() {
        crate::store::files::write_private_file(
            file,
            crate::engine::secrets::new_token().as_bytes(),
        )?;
        tracing::info!(path = %file.display(), "created a new admin token file (mode 0600)");
    } else {
        tracing::info!(path = %file.display(), "admin token read from file");
        crate::store::files::keep_private(file, "this admin-token file");
    }
    let token = std::fs::read_to_string(file)?.trim().to_string();
    if token.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the file is empty: put a token in it, or delete it and a new one is made",
        ));
    }
    Ok((usable(token, "the file")?, TokenSource::File))
}

/// How long a graceful shutdown waits for open connections to finish before it closes them:
/// a client that stopped reading its SSE stream (whose last bytes then never leave), or a
/// request body that never ends, must not keep a stopping server alive.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// Serves until `shutdown` resolves, then stops accepting, drains in-flight requests (for at
/// most [`DRAIN_LIMIT`]) and shuts the engine down (commit of everything queued, final WAL
/// checkpoint). Connections still open after the limit are no longer waited for: they end when
/// their client goes or when their runtime is dropped.
pub async fn serve(
    engine: Engine,
    listener: tokio::net::TcpListener,
    admin_token: &str,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_draining(engine, listener, admin_token, shutdown, DRAIN_LIMIT).await
}

/// [`serve`] with the drain limit as a parameter.
async fn serve_draining(
    engine: Engine,
    listener: tokio::net::TcpListener,
    admin_token: &str,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    drain: Duration,
) -> std::io::Result<()> {
    let app = router(engine.clone(), admin_token);
    let limits = listen::Limits::from_config(engine.config());
    let e = engine.clone();
    let (told, stopping) = tokio::sync::oneshot::channel::<()>();
    let server = listen::run(listener, app, limits, async move {
        shutdown.await;
        // SSE responses end only when their stream does
        e.close_events();
        let _ = told.send(());
    });
    // the drain starts with the shutdown signal (never, if the server ends on its own)
    let limit = async move {
        match stopping.await {
            Ok(()) => tokio::time::sleep(drain).await,
            Err(_) => std::future::pending().await,
        }
    };
    let res = tokio::select! {
        () = server => Ok(()),
        () = limit => {
            // the connections left end with their client or their runtime (the binary exits
            // next); a write they asked for was answered (durable) or is committed below
            tracing::warn!(
                limit = ?drain,
                "connections still open after the shutdown signal (a client not reading?): no longer waiting for them"
            );
            Ok(())
        }
    };
    engine.close().await;
    res
}

#[cfg(test)]
mod tests {
    /// A client that asks for its events and never reads them: once the socket buffers are
    /// full, the stream's last bytes cannot leave, and a graceful shutdown that waited for
    /// every connection would wait for as long as the client stays connected.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_that_stops_reading_does_not_hold_up_shutdown() {
        use crate::domain::model::AccountType;
        use crate::domain::money::Dec;
        use std::time::Duration;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::Config {
            db: dir.path().join("t.db"),
            ..Default::default()
        };
        let engine = crate::Engine::open(&cfg).unwrap();
        let (user, token) = engine.create_user("slow", None).await.unwrap();
        // small socket buffers on both ends (an accepted socket inherits the listener's), so
        // a few hundred events fill them
        let listening = tokio::net::TcpSocket::new_v4().unwrap();
        listening.set_send_buffer_size(4096).unwrap();
        listening.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = listening.listen(16).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(super::serve_draining(
            engine.clone(),
            listener,
            "admin",
            async move {
                let _ = stopped.await;
            },
            Duration::from_millis(200),
        ));
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.set_recv_buffer_size(4096).unwrap();
        let mut client = sock.connect(addr).await.unwrap();
        let head = format!(
            "GET /api/v1/users/{}/events HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\n\r\n",
            user.id
        );
        client.write_all(head.as_bytes()).await.unwrap();
        // the answer's head means the stream is subscribed; nothing is read after it
        let mut got = Vec::new();
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut b = [0u8; 512];
            let n = client.read(&mut b).await.unwrap();
            assert!(n > 0, "closed before the answer's head");
            got.extend_from_slice(&b[..n]);
        }
        assert!(
            got.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&got)
        );
        // thousands of balance events: far more than both sockets' buffers hold
        let deposits: Vec<_> = (0..16)
            .map(|_| {
                let e = engine.clone();
                tokio::spawn(async move {
                    for _ in 0..250 {
                        e.deposit(user.id, Dec::from_int(1), AccountType::Demo)
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for d in deposits {
            d.await.unwrap();
        }
        stop.send(()).unwrap();
        let done = tokio::time::timeout(Duration::from_secs(60), server).await;
        assert!(
            matches!(done, Ok(Ok(Ok(())))),
            "serve did not return while a client that does not read stayed connected: {done:?}"
        );
        drop(client);
    }
}
