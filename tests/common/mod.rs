//! Helpers shared by the black-box test files: a minimal std-only HTTP/1.1 client, and a
//! `litetrade serve` child process that is up when returned and killed on drop.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// One HTTP/1.1 request with `Connection: close` and an optional raw `Authorization` header
/// value: (status, body as text).
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let extra: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
    let r = request(addr, method, path, None, body.map(str::as_bytes), &extra)?;
    Ok((r.status, r.text()))
}

/// One HTTP response.
#[derive(Debug)]
pub struct Resp {
    /// Status code.
    pub status: u16,
    /// Header names and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl Resp {
    /// The body as (lossy) UTF-8 text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header's value, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON; panics with the body when it is not.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response ({}) is not JSON: {e}: {}",
                self.status,
                self.text()
            )
        })
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = find(b, b"\r\n") {
        let line = String::from_utf8_lossy(&b[..eol]);
        let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or_else(|_| panic!("bad chunk size line {line:?}"));
        b = &b[eol + 2..];
        if size == 0 {
            break;
        }
        let n = size.min(b.len());
        out.extend_from_slice(&b[..n]);
        b = &b[n..];
        if b.starts_with(b"\r\n") {
            b = &b[2..];
        }
    }
    out
}

fn parse_response(raw: &[u8]) -> std::io::Result<Resp> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let end = find(raw, b"\r\n\r\n").ok_or_else(|| bad("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or_else(|| bad("no status line"))?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(bad(&format!("bad status line {status_line:?}")));
    }
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| bad("bad status code"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let rest = &raw[end + 4..];
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked")
    });
    let body = if chunked {
        dechunk(rest)
    } else if let Some(n) = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        rest[..n.min(rest.len())].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Resp {
        status,
        headers,
        body,
    })
}

/// Sends one request (`Connection: close`, `Authorization: Bearer token`, `extra` headers)
/// and reads the whole response.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&[u8]>,
    extra: &[(&str, &str)],
) -> std::io::Result<Resp> {
    let sock: std::net::SocketAddr = addr.parse().expect("socket address");
    let mut s = TcpStream::connect_timeout(&sock, Duration::from_secs(10))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    s.set_write_timeout(Some(Duration::from_secs(60)))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    let writer = match body {
        Some(b) if b.len() > 64 * 1024 => {
            // a large body is written on a thread while this one reads, so an early answer
            // (413) is read before the server's close can reset the connection
            let mut w = s.try_clone()?;
            let b = b.to_vec();
            Some(std::thread::spawn(move || {
                let _ = w.write_all(&b);
            }))
        }
        Some(b) => {
            s.write_all(b)?;
            None
        }
        None => None,
    };
    let r = read_response(&mut s);
    let _ = s.shutdown(std::net::Shutdown::Both);
    if let Some(w) = writer {
        let _ = w.join();
    }
    r
}

/// Reads one response off `s` until the server closes it. A reset or a read timeout after a
/// whole head still counts as the end (a server that answers early and closes while the
/// request is still being sent may reset the connection).
pub fn read_response(s: &mut TcpStream) -> std::io::Result<Resp> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if !raw.is_empty() && find(&raw, b"\r\n\r\n").is_some() => {
                let _ = e;
                break;
            }
            Err(e) => return Err(e),
        }
    }
    parse_response(&raw)
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
    pub fn start(db: &Path, configure: impl Fn(&mut Command)) -> Serve {
        let mut last = String::new();
        // a port found free can be taken before serve binds it: then try another one
        for _attempt in 0..5 {
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
                    last = format!("serve exited with {st}: {}", s.log_text());
                    s.child = None;
                    break;
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
            if !last.contains("listen") {
                break;
            }
        }
        panic!("{last}");
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
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
        self.stop_with("TERM")
    }

    /// Sends the signal `name` (`TERM`, `HUP`, …) and waits up to 20 s for the exit.
    pub fn stop_with(&mut self, name: &str) -> ExitStatus {
        let pid = self.pid();
        assert!(
            Command::new("kill")
                .arg(format!("-{name}"))
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
                "serve did not exit within 20 s of SIG{name}: {}",
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
