//! `bulwark serve`: runs the shop until SIGINT or SIGTERM. `bulwark chaos`:
//! a chaos run against nodes it starts (see `src/chaos.rs`).
//!
//! Exit codes: 0 after a clean shutdown, 2 for a bad configuration (the
//! message names the key), 1 when the shop cannot start or fails.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;
use bulwark::config::{Cli, Command, ServeArgs, process_env, unknown_env_keys};
use bulwark::{App, Config};
use clap::Parser as _;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;

/// mimalloc rather than the system allocator: `POST /api/v1/users` on one
/// core +25–29% (docs/BENCHMARKS.md, session 13).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(&args),
        Command::Chaos(args) => chaos(&args),
    }
}

fn chaos(args: &bulwark::chaos::ChaosArgs) -> ExitCode {
    if let Err(err) = bulwark::chaos::kill_interval(&args.kill_interval_ms) {
        eprintln!("error: {err:#}");
        return ExitCode::from(2);
    }
    if let Err(err) = init_logging(&process_env()) {
        eprintln!("error: {err}");
        return ExitCode::from(2);
    }
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .and_then(|runtime| runtime.block_on(bulwark::chaos::run(args)));
    match result {
        Ok(report) => {
            println!("{report}");
            if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The runtime that runs the node's tasks on `threads` threads. On one
/// thread it is tokio's current-thread scheduler: every task (and the
/// main future) runs on the calling thread, where a multi-thread
/// scheduler with one worker adds a second thread, cross-thread wake-ups
/// and shared run queues for nothing. A request passes through several
/// tasks (connection, service entry, request), so that overhead is paid a
/// few times per request (docs/BENCHMARKS.md: +11% on one core).
fn async_runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
}

fn serve(args: &ServeArgs) -> ExitCode {
    let env = process_env();
    let config = match Config::load(args, env.iter().cloned()) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };
    if let Err(err) = init_logging(&env) {
        eprintln!("error: {err}");
        return ExitCode::from(2);
    }
    for name in unknown_env_keys(&env) {
        warn!(variable = %name, "unknown BULWARK_* variable ignored");
    }
    let result = async_runtime(config.worker_threads())
        .context("cannot start the async runtime")
        .and_then(|runtime| runtime.block_on(run(config)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err)
            if err
                .downcast_ref::<bulwark::AppError>()
                .is_some_and(bulwark::AppError::is_bad_setting) =>
        {
            // A bad setting, found before anything started: one line, as
            // for the other bad values.
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
        Err(err) => {
            error!(error = format!("{err:#}"), "bulwark failed");
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    // Signal handlers go in before the address is announced: whoever reads
    // the announcement may signal at once, and an unhandled SIGTERM would
    // kill the process without the graceful shutdown.
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let app = App::build(config).await.context("cannot start")?;
    let addr = app.http_addr();
    info!(%addr, "listening");
    // The one line on stdout: scripts and tests read the real addresses
    // here (they differ from the configured ones with port 0).
    let mut stdout = std::io::stdout().lock();
    match app.cluster_addr() {
        Some(cluster) => writeln!(stdout, "listening on {addr} cluster {cluster}"),
        None => writeln!(stdout, "listening on {addr}"),
    }
    .context("cannot write to stdout")?;
    stdout.flush().context("cannot write to stdout")?;
    drop(stdout);
    let shutdown = async move {
        tokio::select! {
            _ = terminate.recv() => info!("SIGTERM received; shutting down"),
            _ = interrupt.recv() => info!("SIGINT received; shutting down"),
        }
    };
    app.run_until_stopped(shutdown).await?;
    info!("stopped");
    Ok(())
}

/// JSON lines when `BULWARK_LOG_FORMAT=json`, human-readable when it is
/// `text` or unset; the level from `RUST_LOG` (default `info`). Logs go to
/// stderr: stdout carries only the `listening on` line.
///
/// # Errors
/// A `BULWARK_LOG_FORMAT` or `RUST_LOG` that does not parse, naming it
/// (start-up stops rather than log in a way nobody asked for).
fn init_logging(env: &[(String, String)]) -> Result<(), String> {
    let value = |key: &str| {
        env.iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.as_str())
    };
    let filter = match value("RUST_LOG").filter(|v| !v.trim().is_empty()) {
        Some(directives) => EnvFilter::try_new(directives)
            .map_err(|err| format!("RUST_LOG: {err} (e.g. `info`, `warn,bulwark=debug`)"))?,
        None => EnvFilter::new("info"),
    };
    let json = match value("BULWARK_LOG_FORMAT").map(str::trim) {
        None | Some("") => false,
        Some(format) if format.eq_ignore_ascii_case("json") => true,
        Some(format) if format.eq_ignore_ascii_case("text") => false,
        Some(other) => {
            return Err(format!(
                "BULWARK_LOG_FORMAT: must be `json` or `text`, not `{other}`"
            ));
        }
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
    Ok(())
}
