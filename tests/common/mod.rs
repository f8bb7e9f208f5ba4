//! Helpers shared by the black-box test files: a minimal std-only HTTP/1.1 client, and a
//! `litetrade serve` child process that is up when returned and killed on drop.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// One HTTP/1.1 request with `Connection: close` and an optional raw `Authorization` header
/// value: (status, body, de-chunked).
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(10))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(a) = auth {
        head.push_str(&format!("Authorization: {a}\r\n"));
    }
    let b = body.unwrap_or("");
    if body.is_some() {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    s.write_all(b.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (h, rest) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no headers in {text:?}")))?;
    let status = h
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("bad status line"))?;
    let body = if h
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut r = rest;
        while let Some((size, tail)) = r.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            out.push_str(&tail[..n.min(tail.len())]);
            r = tail.get(n + 2..).unwrap_or("");
        }
        out
    } else {
        rest.to_string()
    };
    Ok((status, body))
}

/// A free loopback port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The `litetrade` binary with none of the caller's `LITETRADE_*` variables or `RUST_LOG`.
pub fn litetrade() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_litetrade"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("LITETRADE_") {
            c.env_remove(k);
        }
    }
    c.env_remove("RUST_LOG");
    c
}

/// Waits up to `limit` for `child` to exit (killing it if it has not) and reads what it wrote
/// to its piped stderr: (its exit status, `None` if it had to be killed; its stderr).
pub fn finish(child: &mut Child, limit: Duration) -> (Option<ExitStatus>, String) {
    let status = wait_for(child, limit);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        std::io::Read::read_to_string(&mut e, &mut err).unwrap();
    }
    (status, err)
}

/// Waits up to `limit` for `child` to exit.
pub fn wait_for(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return Some(st);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running `litetrade serve` with its output in a log file; killed on drop.
pub struct Serve {
    child: Option<Child>,
    /// `host:port` it listens on.
    pub addr: String,
    /// The file its stdout/stderr go to.
    pub log: PathBuf,
}

impl Serve {
    /// Starts `litetrade serve --db db` on a free loopback port, stdout and stderr going to a
    /// log file beside `db`. `configure` adds arguments and variables (none of the caller's
    /// `LITETRADE_*` is inherited). Returns once `GET /api/v1/health` answers 200 (panics with
    /// the log if the server exits or takes over 60 s).
    pub fn start(db: &Path, configure: impl FnOnce(&mut Command)) -> Serve {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let log = db.with_extension(format!("serve-{port}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let mut cmd = litetrade();
        cmd.arg("serve")
            .arg("--db")
            .arg(db)
            .arg("--listen")
            .arg(&addr)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        configure(&mut cmd);
        let mut s = Serve {
            child: Some(cmd.spawn().unwrap()),
            addr,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(st) = s.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("serve exited with {st}: {}", s.log_text());
            }
            if matches!(
                http(&s.addr, "GET", "/api/v1/health", None, None),
                Ok((200, _))
            ) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "serve did not start: {}",
                s.log_text()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// A request with `Authorization: Bearer token` (a token with a space is sent as the raw
    /// header value) and an optional JSON body: (status, body as JSON, `Null` when
    /// empty; any other body that is not JSON panics). Panics with the server's log if the request fails.
    #[track_caller]
    pub fn req(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&dyn std::fmt::Display>,
    ) -> (u16, serde_json::Value) {
        let auth = token.map(|t| {
            if t.contains(' ') {
                t.to_string()
            } else {
                format!("Bearer {t}")
            }
        });
        let b = body.map(|v| v.to_string());
        let (st, text) = http(&self.addr, method, path, auth.as_deref(), b.as_deref())
            .unwrap_or_else(|e| panic!("{method} {path}: {e}; log: {}", self.log_text()));
        let v = if text.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{method} {path} ({st}): not JSON ({e}): {text}"))
        };
        (st, v)
    }

    /// A request that must answer 2xx: its body (see [`Serve::req`]).
    #[track_caller]
    pub fn ok(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<&dyn std::fmt::Display>,
    ) -> serde_json::Value {
        let (st, v) = self.req(method, path, Some(token), body);
        assert!((200..300).contains(&st), "{method} {path}: {st} {v}");
        v
    }

    /// What the server has logged so far.
    pub fn log_text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// Sends SIGTERM and waits up to 20 s for a clean exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let pid = self.child.as_ref().unwrap().id();
        assert!(
            Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status()
                .unwrap()
                .success()
        );
        let mut c = self.child.take().unwrap();
        wait_for(&mut c, Duration::from_secs(20)).unwrap_or_else(|| {
            let _ = c.kill();
            let _ = c.wait();
            panic!(
                "serve did not exit within 20 s of SIGTERM: {}",
                self.log_text()
            );
        })
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
