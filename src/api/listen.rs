//! The accept loop in front of the router.
//!
//! `axum::serve` reads a request's head for as long as the client likes and accepts every
//! connection the kernel hands it. So a client that opened connections and sent half a
//! request (slowloris) held each one forever, and ten thousand of them used up the process's
//! file descriptors. From then on the server answered nobody, and SQLite could no longer open
//! its files. This loop serves each connection with hyper directly and adds two limits:
//! - **A head timeout** ([`Limits::header_timeout`]). A request's head (request line and
//!   headers) must arrive within it, counted from when the connection starts waiting for one.
//!   That includes a keep-alive connection waiting for its next request, so an idle
//!   connection is closed after the same time. A response in progress, such as an SSE stream,
//!   is not limited.
//! - **A connection cap** ([`Limits::max_connections`]). At the cap the loop stops accepting.
//!   New connections wait in the kernel's backlog until one closes, and a warning is logged
//!   at most once a minute.
//!
//! Every accepted connection gets `TCP_NODELAY`. A request body has its own deadline, kept by
//! the body extractor (`api::error::Body`), since hyper's head timer stops at the end of the
//! head.

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

/// File descriptors kept back from the connection cap for SQLite (the database, its WAL and
/// shared memory on every pooled connection), the lock and key files and the logs.
pub const RESERVED_FDS: u64 = 256;

/// The fewest connections the derived cap allows, however low the open-file limit.
const MIN_CONNECTIONS: u64 = 64;

/// While the cap is reached, the loop warns at most this often.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// The limits the accept loop keeps.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// The most connections open at once.
    pub max_connections: usize,
    /// How long a request's head may take to arrive, and how long a keep-alive connection may
    /// stay idle.
    pub header_timeout: Duration,
}

impl Limits {
    /// The limits `cfg` sets. Without `max_connections`, the cap is the process's open-file
    /// limit less [`RESERVED_FDS`], and at least 64.
    pub fn from_config(cfg: &crate::Config) -> Limits {
        Limits {
            max_connections: cfg
                .max_connections
                .unwrap_or_else(|| derived_cap(open_file_limit())),
            header_timeout: Duration::from_millis(cfg.header_timeout_ms),
        }
    }
}

/// The cap for an open-file limit (`None`: unlimited).
fn derived_cap(limit: Option<u64>) -> usize {
    let fds = limit.unwrap_or(1 << 20);
    let cap = fds.saturating_sub(RESERVED_FDS).max(MIN_CONNECTIONS);
    usize::try_from(cap).unwrap_or(usize::MAX)
}

/// The process's soft limit on open files (`None`: unlimited).
#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
fn open_file_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

/// The process's soft limit on open files (`None`: unlimited).
#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
fn open_file_limit() -> Option<u64> {
    None
}

/// Raises the process's soft limit on open files to its hard limit (as Go's runtime does),
/// so that the derived connection cap is not held at a default of 1,024 that a system sets
/// for old `select()` programs. Returns the limit now in force.
#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
pub fn raise_open_file_limit() -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let lim = getrlimit(Resource::Nofile);
    if lim.current != lim.maximum {
        let raised = rustix::process::Rlimit {
            current: lim.maximum,
            maximum: lim.maximum,
        };
        if let Err(err) = setrlimit(Resource::Nofile, raised) {
            tracing::debug!(error = %err, "cannot raise the open-file limit");
        }
    }
    open_file_limit()
}

/// Raises the process's soft limit on open files (nothing to do here).
#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
pub fn raise_open_file_limit() -> Option<u64> {
    None
}

/// Serves `app` on `listener` within `limits` until `stop` resolves. Then it stops
/// accepting, asks every open connection to close once its request in flight is answered,
/// and returns when all have closed.
pub async fn run(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    stop: impl Future<Output = ()>,
) {
    tracing::info!(
        max_connections = limits.max_connections,
        header_timeout_ms = limits.header_timeout.as_millis() as u64,
        "accepting connections"
    );
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    // each connection holds a receiver: the sender's `closed()` is "every connection ended"
    let (stopping, stop_seen) = watch::channel(false);
    let mut warned: Option<Instant> = None;
    tokio::pin!(stop);
    loop {
        let permit = match permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if warned.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
                    warned = Some(Instant::now());
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        "connection limit reached: new connections wait until one closes"
                    );
                }
                tokio::select! {
                    p = permits.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                    () = &mut stop => break,
                }
            }
        };
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(err) => {
                    accept_failed(err).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        set_nodelay(&tcp);
        let conn = serve_connection(tcp, app.clone(), limits.header_timeout);
        let mut stop_seen = stop_seen.clone();
        tokio::spawn(async move {
            let _permit = permit;
            tokio::pin!(conn);
            let mut asked = false;
            loop {
                tokio::select! {
                    res = conn.as_mut() => {
                        if let Err(err) = res {
                            tracing::trace!(error = %err, "connection ended with an error");
                        }
                        break;
                    }
                    _ = stop_seen.changed(), if !asked => {
                        asked = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
        });
    }
    stopping.send_replace(true);
    drop(stop_seen);
    stopping.closed().await;
}

/// The hyper connection serving `app` on `tcp`.
fn serve_connection(
    tcp: TcpStream,
    app: Router,
    header_timeout: Duration,
) -> hyper::server::conn::http1::Connection<TokioIo<TcpStream>, TowerToHyperService<Router>> {
    hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(tcp), TowerToHyperService::new(app))
}

/// Sets `TCP_NODELAY`: small answers and SSE events go out at once, not held back by Nagle's
/// algorithm until the client acknowledges the previous segment (which a delayed ACK can put
/// off for up to 40 ms).
fn set_nodelay(tcp: &TcpStream) {
    if let Err(err) = tcp.set_nodelay(true) {
        tracing::debug!(error = %err, "cannot set TCP_NODELAY on a connection");
    }
}

/// An accept that failed: a connection the client already reset is skipped; anything else
/// (out of file descriptors, above all) is logged, and the loop waits a second before trying
/// again rather than spin.
async fn accept_failed(err: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        err.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %err, "cannot accept a connection; trying again in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_connections_send_without_nagle() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        // what a plain accept gives, so the check below is not vacuous
        assert!(!accepted.nodelay().unwrap());
        set_nodelay(&accepted);
        assert!(accepted.nodelay().unwrap());
        drop(client);
    }

    #[test]
    fn the_derived_cap_keeps_descriptors_back_for_sqlite() {
        assert_eq!(derived_cap(Some(20_000)), 20_000 - 256);
        assert_eq!(derived_cap(Some(1_024)), 768);
        assert_eq!(derived_cap(Some(100)), 64);
        assert_eq!(derived_cap(None), (1 << 20) - 256);
    }
}
