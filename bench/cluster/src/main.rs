//! The cluster benchmark (issue #5): request/reply through the router to a
//! service on another node process over loopback, the same call in-process,
//! and a tonic gRPC unary call with the same payload between two processes,
//! all in one run.
//!
//! `run` (the default) starts `serve` as a child process of this same
//! executable, links to it, measures, prints a table and the ratios against
//! the goals, and kills the child. Layout:
//! - `echo.rs` — the bulwark echo services (one remote, one in-process);
//! - `grpc.rs` — the generated tonic code and its echo service;
//! - `serve.rs` — the child: a node accepting links plus a gRPC server;
//! - `run.rs` — the child process, the measured paths, the report;
//! - `stats.rs` — percentiles and rates.
//!
//! Run: `cargo run --release -p bulwark-bench-cluster`

mod echo;
mod grpc;
mod run;
mod serve;
mod stats;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

/// The serving child's node name.
const SERVER_NODE: &str = "bench-server";
/// The measuring node's name.
const CLIENT_NODE: &str = "bench-client";
/// Both processes' cluster cookie: a fixed one is enough on loopback.
const COOKIE: &str = "bulwark-bench-cluster";

#[derive(Debug, Parser)]
#[command(about = "Router calls across two node processes vs in-process vs tonic gRPC")]
struct Cli {
    #[command(subcommand)]
    mode: Option<Mode>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Measure (the default): starts `serve` as a child process.
    Run,
    /// Serve the echo service on a node link port and a gRPC port (the
    /// child's side); prints both ports, serves until stdin closes.
    Serve,
}

/// What `run` measures.
#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Bytes of payload in each request (echoed back).
    #[arg(long, default_value_t = 64, global = true)]
    payload_bytes: usize,
    /// Sequential calls measured per path.
    #[arg(long, default_value_t = 20_000, global = true)]
    calls: usize,
    /// Sequential calls before measuring each path.
    #[arg(long, default_value_t = 2_000, global = true)]
    warmup_calls: usize,
    /// Concurrent callers (tokio tasks).
    #[arg(long, default_value_t = 64, global = true)]
    concurrency: usize,
    /// Calls measured per path with concurrent callers, split among them.
    #[arg(long, default_value_t = 200_000, global = true)]
    concurrent_calls: usize,
    /// Measure this path only (for profiling one of them); all by default.
    #[arg(long, value_enum, global = true)]
    only: Option<Path>,
}

/// A measured path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Path {
    /// `Router::call` to the service on the child node, over the node link.
    Remote,
    /// `Router::call` to the service on the measuring node.
    Local,
    /// A tonic unary call to the child's gRPC server.
    Grpc,
}

impl Path {
    /// Its row name in the report.
    fn label(self) -> &'static str {
        match self {
            Self::Remote => "router → remote node (TCP link)",
            Self::Local => "router → in-process",
            Self::Grpc => "tonic gRPC unary (HTTP/2)",
        }
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    match cli.mode.unwrap_or(Mode::Run) {
        Mode::Serve => runtime.block_on(serve::serve()),
        Mode::Run => {
            // Dropped (the child killed) after the runtime is done with it,
            // on success and on error alike.
            let child = run::ServeChild::spawn()?;
            runtime.block_on(run::run(&cli.run, &child))
        }
    }
}
