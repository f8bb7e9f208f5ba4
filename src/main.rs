//! The `litetrade` command line: parse, build the Config, call into the library.

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use litetrade::{Config, Engine};
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;

/// `println!` that ignores a closed stdout (output piped into `head`) instead of panicking.
macro_rules! say {
    ($($t:tt)*) => {{
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

/// `print!` and a flush, ignoring a closed stdout like [`say!`].
macro_rules! say_inline {
    ($($t:tt)*) => {{
        let mut out = std::io::stdout();
        let _ = write!(out, $($t)*);
        let _ = out.flush();
    }};
}

/// `eprintln!` that ignores a closed stderr instead of panicking.
macro_rules! note {
    ($($t:tt)*) => {{
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}

/// mimalloc: the sequencer allocates order and position rows that the writer thread frees;
/// glibc malloc serialises those cross-thread frees on an arena lock (see BENCHMARKS.md §9).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "litetrade",
    version,
    about = "A multi-user paper trading venue on one tuned SQLite file"
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    cmd: Cmd,
}

/// The common flags. Their variables are read in [`build_config`], not by clap, so that an
/// empty variable counts as unset rather than as a missing flag value.
#[derive(Args, Clone)]
struct Common {
    /// Database file [default: ./litetrade.db] [env: LITETRADE_DB]
    #[arg(long, global = true)]
    db: Option<PathBuf>,
    /// HTTP listen address of serve and demo [default: 127.0.0.1:8765] [env: LITETRADE_LISTEN]
    #[arg(long, global = true)]
    listen: Option<String>,
    /// TOML config file with every tunable (see README) [env: LITETRADE_CONFIG]
    #[arg(long, global = true)]
    config: Option<PathBuf>,
}

/// A variable's value, `None` when it is unset or empty.
fn env_value(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the HTTP API (creates and migrates the database on first start)
    Serve {
        /// Placing orders needs an active license
        #[arg(long)]
        require_license: bool,
    },
    /// Serve with demo users, a built-in price feed and signals
    Demo {
        /// Replay this Freqtrade candle/trade JSON or OHLC CSV onto BTCUSDT instead
        #[arg(long)]
        feed: Option<PathBuf>,
        /// Stop after this many seconds, at least 1 (default: until Ctrl-C)
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        duration: Option<u64>,
        /// Milliseconds between price ticks (at least 10)
        #[arg(long, default_value_t = 250, value_parser = clap::value_parser!(u64).range(10..))]
        tick_ms: u64,
    },
    /// Database maintenance: indexes, ANALYZE, integrity check, checkpoint, optional VACUUM
    Optimize {
        /// Also VACUUM (and convert the page size to 8192)
        #[arg(long)]
        vacuum: bool,
        /// Print one JSON object instead of tables
        #[arg(long)]
        json: bool,
    },
    /// Replay a recorded market file through the engine
    Replay {
        /// Freqtrade candles/trades (.json, .json.gz) or OHLC CSV
        #[arg(long)]
        file: PathBuf,
        /// Symbol to replay onto
        #[arg(long, default_value = "BTCUSDT")]
        symbol: String,
        /// Replay at this multiple of the recorded pace (a finite number above 0)
        #[arg(long, conflicts_with = "max", value_parser = speed_value)]
        speed: Option<f64>,
        /// As fast as possible (default)
        #[arg(long)]
        max: bool,
    },
    /// Fill a database with consistent synthetic users, trades, positions and orders
    Seed {
        /// Users to create (at least 1)
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
        users: u64,
        /// Closed trades per user
        #[arg(long, default_value_t = 10)]
        trades_per_user: u64,
        /// Open positions in all
        #[arg(long, default_value_t = 1000)]
        open_positions: u64,
        /// Pending limit orders in all
        #[arg(long, default_value_t = 1000)]
        pending_orders: u64,
    },
    /// The Telegram-style command layer on a terminal
    Chat {
        /// The user to act as
        #[arg(long)]
        user: i64,
    },
    /// Measure the workload scenarios (reads, orders, ticks, fanout, startup, http)
    ///
    /// Each scenario runs on a fresh file under --dir; --db is not used.
    Bench {
        /// One scenario: reads, orders, ticks, fanout, startup or http (default: all)
        #[arg(long, value_parser = scenario_name)]
        scenario: Option<String>,
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
        /// Small sizes that finish in seconds
        #[arg(long)]
        quick: bool,
        /// Work directory for the benchmark databases, created if missing [default: a temp dir]
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Write a consistent copy of the database (safe while serving)
    Backup {
        /// Destination file (must not exist)
        #[arg(long)]
        to: PathBuf,
    },
    /// Put a backup in place of the database (stop the server first; the replaced database
    /// is kept as <db>.before-restore)
    Restore {
        /// The backup file (its <FROM>.key, if any, comes with it)
        #[arg(long)]
        from: PathBuf,
    },
}

fn build_config(c: &Common) -> Result<Config> {
    let config_file = c
        .config
        .clone()
        .or_else(|| env_value("LITETRADE_CONFIG").map(PathBuf::from));
    let mut cfg = match &config_file {
        Some(p) => Config::from_file(p)?,
        None => Config::default(),
    };
    cfg.apply_env(env_value)?;
    let names = std::env::vars_os().filter_map(|(k, _)| k.into_string().ok());
    for name in cfg.unknown_env(names) {
        tracing::warn!(variable = %name, "litetrade does not read this variable; it is ignored");
    }
    if let Some(db) =
        c.db.clone()
            .or_else(|| env_value("LITETRADE_DB").map(PathBuf::from))
    {
        cfg.db = db;
    }
    if let Some(l) = c.listen.clone().or_else(|| env_value("LITETRADE_LISTEN")) {
        cfg.listen = l;
    }
    cfg.check()?;
    Ok(cfg)
}

/// Logs go to stderr, filtered by `LITETRADE_LOG`, else `RUST_LOG`, else `info` (an empty
/// variable counts as unset; a filter that does not parse is named and skipped).
fn init_logging() {
    let mut bad = None;
    let filter = ["LITETRADE_LOG", "RUST_LOG"]
        .into_iter()
        .find_map(|name| {
            let v = env_value(name)?;
            tracing_subscriber::EnvFilter::try_new(&v)
                .inspect_err(|e| bad = Some(format!("{name}={v:?} is not a log filter ({e})")))
                .ok()
        })
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .init();
    if let Some(why) = bad {
        tracing::warn!("{why}; it is ignored");
    }
}

fn bar(total: u64, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(total);
    b.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} ({eta})")
            .expect("template")
            .progress_chars("=> "),
    );
    b.set_message(what.to_string());
    b
}

/// Progress of a multi-step command: a bar per step on a terminal, one line per step otherwise
/// (nothing at all when `quiet`).
struct Steps {
    quiet: bool,
    current: std::sync::Mutex<(String, Option<ProgressBar>)>,
}

impl Steps {
    fn new(quiet: bool) -> Steps {
        Steps {
            quiet,
            current: std::sync::Mutex::new((String::new(), None)),
        }
    }

    fn update(&self, step: &str, done: u64, total: u64) {
        let mut g = self.current.lock().expect("progress lock");
        if g.0 != step {
            if let Some(b) = g.1.take() {
                b.finish_and_clear();
            }
            g.0 = step.to_string();
            if !self.quiet && !std::io::stderr().is_terminal() {
                note!("{step}...");
            }
            g.1 = (!self.quiet).then(|| bar(total, step));
        }
        if let Some(b) = &g.1 {
            b.set_length(total);
            b.set_position(done);
        }
    }

    fn finish(&self) {
        if let Some(b) = self.current.lock().expect("progress lock").1.take() {
            b.finish_and_clear();
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let (term, hangup) = (
        unix_signal(tokio::signal::unix::SignalKind::terminate()),
        // a closed terminal, or a service manager's reload: a clean stop too, rather than the
        // default action, an abrupt exit that skips the final checkpoint
        unix_signal(tokio::signal::unix::SignalKind::hangup()),
    );
    #[cfg(not(unix))]
    let (term, hangup) = (std::future::pending::<()>(), std::future::pending::<()>());
    tokio::select! { _ = ctrl_c => {}, _ = term => {}, _ = hangup => {} }
}

/// Resolves when the process receives `kind` (never, if it cannot listen for it).
#[cfg(unix)]
async fn unix_signal(kind: tokio::signal::unix::SignalKind) {
    match tokio::signal::unix::signal(kind) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending::<()>().await,
    }
}

fn open_engine(cfg: &Config) -> Result<Engine> {
    Ok(Engine::open(cfg)?)
}

/// Binds the listen address. It goes first, so that a busy port leaves no new database or
/// token file behind. A server also lifts its open-file limit to the most it may have, since
/// each connection holds one (`api::listen`).
async fn listen(cfg: &Config) -> Result<tokio::net::TcpListener> {
    let files = litetrade::api::listen::raise_open_file_limit();
    tracing::debug!(open_files = ?files, "open-file limit");
    tokio::net::TcpListener::bind(&cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))
}

/// The admin token (from `LITETRADE_ADMIN_TOKEN`, else the file beside the database) and the
/// file's path when it came from the file.
fn admin_token(cfg: &Config) -> Result<(String, Option<PathBuf>)> {
    let token_file = cfg.beside_db("admin-token");
    let (token, source) =
        litetrade::api::admin_token(std::env::var("LITETRADE_ADMIN_TOKEN").ok(), &token_file)
            .with_context(|| {
                format!(
                    "cannot set up the admin token (LITETRADE_ADMIN_TOKEN or the file {})",
                    token_file.display()
                )
            })?;
    let file = (source == litetrade::api::TokenSource::File).then_some(token_file);
    Ok((token, file))
}

/// The address `listener` is bound to (with port 0, the one the system picked).
fn bound(listener: &tokio::net::TcpListener, cfg: &Config) -> String {
    listener
        .local_addr()
        .map_or_else(|_| cfg.listen.to_string(), |a| a.to_string())
}

async fn serve(cfg: Config) -> Result<()> {
    let listener = listen(&cfg).await?;
    let engine = open_engine(&cfg)?;
    let (token, _) = admin_token(&cfg)?;
    tracing::info!(listen = %bound(&listener, &cfg), db = %cfg.db.display(), "serving");
    let stopped = engine.clone();
    litetrade::api::serve(engine, listener, &token, shutdown_signal()).await?;
    if stopped.wal_left() {
        tracing::warn!(
            db = %cfg.db.display(),
            "stopped, but the database's -wal file still holds committed writes: keep it with the database"
        );
    } else {
        tracing::info!("stopped cleanly");
    }
    Ok(())
}

async fn demo(
    cfg: Config,
    feed: Option<PathBuf>,
    duration: Option<u64>,
    tick_ms: u64,
) -> Result<()> {
    let paths = litetrade::demo::price_paths(feed.as_deref()).with_context(|| match &feed {
        Some(f) => format!("feed {}", f.display()),
        None => "the built-in price paths".into(),
    })?;
    let listener = listen(&cfg).await?;
    // the files beside the database that this start may make, and whether each was there
    let real = litetrade::store::files::real_path(&cfg.db);
    let beside: Vec<(PathBuf, bool)> = [
        (&cfg.db, ".key"),
        (&real, ".lock"),
        (&real, "-wal"),
        (&real, "-shm"),
    ]
    .map(|(db, s)| litetrade::store::files::with_suffix(db, s))
    .into_iter()
    .map(|p| {
        let there = p.exists();
        (p, there)
    })
    .collect();
    let engine = open_engine(&cfg)?;
    let users = match litetrade::demo::ensure_demo_users(&engine).await {
        Ok(users) => users,
        Err(refused) => {
            // Leave the file as it was found. The key this start made seals nothing, the lock
            // is released with the engine, and the WAL is empty after the writer's final
            // checkpoint; the read-only pool, closing last, cannot remove it itself.
            engine.close().await;
            drop(engine);
            let wal = litetrade::store::files::with_suffix(&real, "-wal");
            for (file, was_there) in beside {
                // a WAL that still holds frames is never removed
                let holds_frames =
                    file == wal && std::fs::metadata(&file).is_ok_and(|m| m.len() > 0);
                if !was_there && !holds_frames {
                    let _ = std::fs::remove_file(&file);
                }
            }
            return Err(refused.into());
        }
    };
    let paths = litetrade::demo::resume(paths, |s| engine.last_price(s).ok().flatten());
    let ids: Vec<i64> = users.iter().map(|u| u.0).collect();
    let licensed = litetrade::demo::license_demo_users(&engine, &ids).await?;
    for (symbol, tick) in litetrade::demo::fit_ticks(&engine, &paths).await? {
        tracing::info!(%symbol, %tick, "the feed's prices are finer than the symbol's tick: tick_size set to fit them");
    }
    let (token, token_file) = admin_token(&cfg)?;
    let tokens_file = cfg.beside_db("demo-tokens");
    let fresh: Vec<String> = users
        .iter()
        .filter_map(|(id, t)| t.as_ref().map(|t| format!("user {id}: {t}")))
        .collect();
    if !fresh.is_empty() && !tokens_file.exists() {
        litetrade::store::files::write_private_file(
            &tokens_file,
            (fresh.join("\n") + "\n").as_bytes(),
        )?;
    }
    let base = format!("http://{}", bound(&listener, &cfg));
    say!(
        "litetrade demo: serving {base}/api/v1 on {}",
        cfg.db.display()
    );
    // the token to put in the sample commands: the variable when it is set (no file is written
    // then), else the file
    let admin = match &token_file {
        None => {
            say!("admin token: the value of LITETRADE_ADMIN_TOKEN");
            "$LITETRADE_ADMIN_TOKEN".to_string()
        }
        Some(f) => {
            // absolute, so the sample commands work from any directory
            let f = std::path::absolute(f).unwrap_or_else(|_| f.clone());
            say!("admin token: in {}", f.display());
            let quoted = f.display().to_string().replace('\'', r"'\''");
            format!("$(cat '{quoted}')")
        }
    };
    if licensed > 0 {
        say!("licenses are required here: {licensed} demo users redeemed a one-year demo license");
    }
    if tokens_file.exists() {
        say!(
            "demo users {ids:?}; their tokens are in {} (mode 0600)",
            tokens_file.display()
        );
    } else {
        say!(
            "demo users {ids:?} were already in the database; a user's token is shown only when \
             the user is created, so the admin token above is the one to use"
        );
    }
    say!("try:");
    say!("  curl -s {base}/api/v1/health");
    say!("  curl -s -H \"Authorization: Bearer {admin}\" {base}/api/v1/users/1/positions");
    say!("  curl -s -H \"Authorization: Bearer {admin}\" \"{base}/api/v1/users/1/trades?limit=5\"");
    say!("Ctrl-C stops it.");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let status = Arc::new(litetrade::demo::DemoStatus::default());
    let feed_task = tokio::spawn(litetrade::demo::run(
        engine.clone(),
        ids,
        paths,
        std::time::Duration::from_millis(tick_ms),
        status.clone(),
        stop_rx,
    ));
    let st = status.clone();
    let tty = std::io::stdout().is_terminal();
    let printer = tokio::spawn(async move {
        let mut n = 0u64;
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            n += 1;
            if tty {
                say_inline!("\r{}   ", st.line());
            } else if n.is_multiple_of(5) {
                say!("{}", st.line());
            }
        }
    });
    let stop = async move {
        match duration {
            Some(s) => {
                tokio::select! { _ = tokio::time::sleep(std::time::Duration::from_secs(s)) => {}, _ = shutdown_signal() => {} }
            }
            None => shutdown_signal().await,
        }
        let _ = stop_tx.send(true);
    };
    litetrade::api::serve(engine, listener, &token, stop).await?;
    printer.abort();
    // on a terminal, end the progress line the printer kept rewriting
    let nl = if tty { "\n" } else { "" };
    match feed_task.await {
        Ok(Err(e)) => note!("{nl}feed stopped: {e}"),
        Err(e) => note!("{nl}feed task failed: {e}"),
        Ok(Ok(())) => {}
    }
    say!("{nl}{}", status.line());
    say!(
        "demo stopped; everything it did is in {} (run it again to go on)",
        cfg.db.display()
    );
    Ok(())
}

fn optimize(cfg: &Config, vacuum: bool, json: bool) -> Result<i32> {
    if !cfg.db.exists() {
        bail!("database {} does not exist", cfg.db.display());
    }
    litetrade::engine::refuse_hard_links(&cfg.db)?;
    // A file from an older litetrade is migrated first, as `serve` would do. An older engine
    // still serving it would then fail its writes, so migrating needs the engine lock (held
    // until optimize ends, only in that case).
    let version = litetrade::store::schema::file_version(&cfg.db).map_err(|e| {
        anyhow!(
            "optimize {}: not a usable SQLite database ({e})",
            cfg.db.display()
        )
    })?;
    // (an empty file has no version; the library refuses it, naming why)
    let older = version.filter(|&v| v < litetrade::store::schema::SCHEMA_VERSION);
    let _lock = if let Some(version) = older {
        Some(litetrade::engine::lock_database(cfg).map_err(|e| {
            if !matches!(e, litetrade::Error::Locked(_)) {
                return anyhow!("{e}");
            }
            anyhow!(
                "{e}; the file is at schema version {version}, older than this litetrade \
                 ({}): stop that process (or start this version's serve, which migrates \
                 the file), then run optimize again",
                litetrade::store::schema::SCHEMA_VERSION
            )
        })?)
    } else {
        None
    };
    let steps = Steps::new(json);
    let progress = |step: &str, done: u64, total: u64| steps.update(step, done, total);
    let report = litetrade::store::optimize::optimize(
        &cfg.db,
        &litetrade::store::optimize::OptimizeOptions {
            vacuum,
            ..Default::default()
        },
        &progress,
    )
    .with_context(|| format!("optimize {}", cfg.db.display()))?;
    steps.finish();
    if json {
        say!("{}", serde_json::to_string(&report)?);
    } else {
        say!("{}", report.render_table());
    }
    Ok(if report.integrity == "ok" { 0 } else { 2 })
}

fn seed(
    cfg: &Config,
    users: u64,
    trades_per_user: u64,
    open_positions: u64,
    pending_orders: u64,
) -> Result<()> {
    let opts = litetrade::store::seed::SeedOptions {
        users,
        trades_per_user,
        open_positions,
        pending_orders,
        ..Default::default()
    };
    // a running engine would not see the rows and would collide with their ids
    let _lock = litetrade::engine::lock_database(cfg)?;
    let steps = Steps::new(false);
    let progress = |step: &str, done: u64, total: u64| steps.update(step, done, total);
    let report = litetrade::store::seed::seed(&cfg.db, &opts, &progress)
        .with_context(|| format!("seed {}", cfg.db.display()))?;
    steps.finish();
    say!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

async fn replay(cfg: Config, file: PathBuf, symbol: String, speed: Option<f64>) -> Result<()> {
    if !cfg.db.exists() {
        bail!(
            "database {} does not exist: replay works on a database's users and positions \
             (create one with `litetrade serve` or `litetrade seed`)",
            cfg.db.display()
        );
    }
    let ticks =
        litetrade::feed::read_feed(&file).with_context(|| format!("feed {}", file.display()))?;
    let engine = open_engine(&cfg)?;
    let spec = engine
        .symbol(&symbol)
        .with_context(|| format!("symbol {symbol}"))?;
    let mut ticks = ticks;
    let distorted = litetrade::feed::scale_to(&mut ticks, spec.tick_size);
    litetrade::feed::warn_if_distorted(distorted, ticks.len(), &symbol, spec.tick_size);
    if let (Some(first), Ok(Some(last))) = (ticks.first(), engine.last_price(&symbol))
        && litetrade::replay::far_from_last(first.price, last)
    {
        tracing::warn!(
            %symbol, first = %first.price, last = %last,
            "the file's first price is far from the symbol's last price: is --symbol right? \
             (its open positions are checked against these prices)"
        );
    }
    let pace = match speed {
        Some(s) => litetrade::replay::Pace::Speed(s),
        None => litetrade::replay::Pace::Max { batch: 1000 },
    };
    let pb = bar(ticks.len() as u64, "replay");
    // off a terminal the bar is hidden: a plain line at every tenth instead
    let plain = !std::io::stderr().is_terminal();
    let tenth = std::cell::Cell::new(0);
    let summary = litetrade::replay::replay(&engine, &symbol, &ticks, pace, &|done, total| {
        pb.set_position(done);
        let t = done * 10 / total.max(1);
        if plain && t > tenth.get() {
            tenth.set(t);
            note!("replay: {done} of {total} ticks");
        }
    })
    .await;
    pb.finish_and_clear();
    engine.close().await;
    let s = summary?;
    let o = &s.outcome;
    say!(
        "replayed {} ticks onto {symbol} in {:.2} s ({:.0} ticks/s): {} fills ({} cancelled), closes: {} take_profit, {} stop_loss, {} liquidation",
        o.accepted,
        s.seconds,
        s.ticks_per_sec,
        o.fills,
        o.cancelled,
        o.take_profits,
        o.stop_losses,
        o.liquidations
    );
    Ok(())
}

async fn chat(cfg: Config, user: i64) -> Result<()> {
    if !cfg.db.exists() {
        bail!("database {} does not exist", cfg.db.display());
    }
    let engine = open_engine(&cfg)?;
    engine.user(user).with_context(|| format!("user {user}"))?;
    let interactive = std::io::stdin().is_terminal();
    if interactive {
        say!("litetrade chat as user {user}. Type /help; Ctrl-D quits.");
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(16);
    std::thread::spawn(move || {
        // bytes that are not UTF-8 become U+FFFD: the command is answered (as unknown or
        // malformed) and the session goes on
        for line in std::io::stdin().lock().split(b'\n') {
            let Ok(bytes) = line else { break };
            let l = String::from_utf8_lossy(&bytes);
            if tx
                .blocking_send(l.trim_end_matches('\r').to_string())
                .is_err()
            {
                break;
            }
        }
    });
    while let Some(line) = rx.recv().await {
        if line.trim().is_empty() {
            continue;
        }
        let reply = litetrade::chat::handle(&engine, user, &line).await;
        say!("{}", reply.text());
        say!();
    }
    engine.close().await;
    Ok(())
}

fn backup(cfg: &Config, to: &std::path::Path) -> Result<()> {
    if !cfg.db.exists() {
        bail!("database {} does not exist", cfg.db.display());
    }
    let pb = bar(0, "backup");
    let key = litetrade::engine::backup_database(cfg, to, &|done, total| {
        pb.set_length(total);
        pb.set_position(done);
    })
    .with_context(|| format!("backup {} to {}", cfg.db.display(), to.display()))?;
    pb.finish_and_clear();
    say!("backed up {} to {}", cfg.db.display(), to.display());
    match key {
        Some(k) => say!("copied its key file to {} (mode 0600)", k.display()),
        None if std::env::var_os("LITETRADE_SECRET_KEY").is_some() => {
            say!("its credentials are sealed with LITETRADE_SECRET_KEY: keep that with the copy")
        }
        None => {}
    }
    Ok(())
}

fn restore(cfg: &Config, from: &std::path::Path) -> Result<()> {
    if !from.exists() {
        bail!("backup {} does not exist", from.display());
    }
    let pb = bar(0, "restore");
    let done = litetrade::engine::restore::restore_database(cfg, from, &|done, total| {
        pb.set_length(total);
        pb.set_position(done);
    })
    .with_context(|| format!("restore {} from {}", cfg.db.display(), from.display()))?;
    pb.finish_and_clear();
    say!("restored {} from {}", cfg.db.display(), from.display());
    if let Some(kept) = &done.kept {
        say!(
            "the database it replaced is kept as {} (with its -wal and key, if any): delete them once the restored one serves as expected",
            kept.display()
        );
    }
    match &done.key {
        Some(k) => say!("copied the backup's key file {} to its place", k.display()),
        None => say!(
            "the backup has no key file, so {} stays as it was: stored credentials, if any, need the key that sealed them (or its LITETRADE_SECRET_KEY)",
            cfg.beside_db("key").display()
        ),
    }
    Ok(())
}

async fn bench(
    cfg: Config,
    scenario: Option<String>,
    json: bool,
    quick: bool,
    dir: Option<PathBuf>,
) -> Result<()> {
    let tmp = tempfile_dir()?;
    let dir = dir.unwrap_or_else(|| tmp.clone());
    let mut opts = if quick {
        litetrade::bench::BenchOptions::quick(dir)
    } else {
        litetrade::bench::BenchOptions::full(dir)
    };
    opts.scenario = scenario;
    opts.settings = cfg;
    let report = litetrade::bench::run(&opts, &|line| note!("bench: {line}")).await;
    let _ = std::fs::remove_dir_all(&tmp);
    let report = report?;
    if json {
        say!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        say!("{}", report.render_table());
    }
    Ok(())
}

/// `--speed`: a finite number above 0 (anything else is a usage error).
fn speed_value(s: &str) -> std::result::Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("not a number: {s:?}"))?;
    litetrade::replay::check_speed(v).map_err(|e| e.to_string())?;
    Ok(v)
}

/// `--scenario`'s values: `all` or one of [`litetrade::bench::SCENARIOS`] (a usage error
/// otherwise, so a typo exits 64 before any database is built).
fn scenario_name(s: &str) -> std::result::Result<String, String> {
    if s == "all" || litetrade::bench::SCENARIOS.contains(&s) {
        Ok(s.to_string())
    } else {
        Err(format!(
            "one of all, {}",
            litetrade::bench::SCENARIOS.join(", ")
        ))
    }
}

fn tempfile_dir() -> Result<PathBuf> {
    let d = std::env::temp_dir().join(format!("litetrade-bench-{}", std::process::id()));
    std::fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
    Ok(d)
}

fn run(cli: Cli) -> Result<i32> {
    let cfg = build_config(&cli.common)?;
    let rt = || {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("tokio runtime")
    };
    match cli.cmd {
        Cmd::Serve { require_license } => {
            let mut cfg = cfg;
            cfg.require_license |= require_license;
            rt()?.block_on(serve(cfg))?;
        }
        Cmd::Demo {
            feed,
            duration,
            tick_ms,
        } => rt()?.block_on(demo(cfg, feed, duration, tick_ms))?,
        Cmd::Optimize { vacuum, json } => return optimize(&cfg, vacuum, json),
        Cmd::Replay {
            file,
            symbol,
            speed,
            max: _,
        } => rt()?.block_on(replay(cfg, file, symbol, speed))?,
        Cmd::Seed {
            users,
            trades_per_user,
            open_positions,
            pending_orders,
        } => seed(&cfg, users, trades_per_user, open_positions, pending_orders)?,
        Cmd::Chat { user } => rt()?.block_on(chat(cfg, user))?,
        Cmd::Backup { to } => backup(&cfg, &to)?,
        Cmd::Restore { from } => restore(&cfg, &from)?,
        Cmd::Bench {
            scenario,
            json,
            quick,
            dir,
        } => rt()?.block_on(bench(cfg, scenario, json, quick, dir))?,
    }
    Ok(0)
}

fn main() {
    // usage errors exit 64 (EX_USAGE), not clap's 2, which `optimize` keeps for a damaged database
    let cli = Cli::try_parse().unwrap_or_else(|e| {
        let _ = e.print();
        std::process::exit(if e.use_stderr() { 64 } else { 0 });
    });
    init_logging();
    match run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            note!("error: {e:#}");
            std::process::exit(1);
        }
    }
}
