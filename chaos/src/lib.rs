//! bulwark-chaos: kill actors and nodes under load and prove nothing is
//! lost.
//!
//! A run ([`run`]) drives a seeded workload through the nodes' HTTP edges —
//! concurrent clients creating users and products, placing orders (half
//! with an `Idempotency-Key`, retried with it after an unknown outcome),
//! cancelling and reading some — while a nemesis kills random actors
//! through the admin API at a set rate and, with [`Nodes`], SIGKILLs node
//! processes and restarts them on their data. Every operation goes into a
//! Jepsen-style [`History`] (`ok`, `fail` or `info`). Then the nemesis
//! stops, the run waits for quiescence (no order pending, every outbox
//! drained), reads the shop back through read-only endpoints and checks
//! seven invariants ([`checker`]); the [`Report`] prints the requests,
//! kills and restarts and each invariant's verdict with counterexamples.
//!
//! The crate knows the shop only through HTTP: it can run against any
//! Bulwark deployment that has an admin key.
//!
//! Layout: `client.rs` (HTTP and the classification of answers),
//! `history.rs`, `workload.rs` (the clients), `nemesis.rs`, `nodes.rs`
//! (`bulwark serve` child processes), `checker.rs`, `report.rs`.

pub mod checker;
mod client;
pub mod history;
mod nemesis;
mod nodes;
mod report;
mod workload;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use tokio::time::Instant;

pub use checker::{Observed, Verdict};
pub use client::Target;
pub use history::{History, Op, OpKind, Outcome};
pub use nemesis::{NemesisConfig, NemesisCounts};
pub use nodes::{NODE_START_TIMEOUT, Nodes};
pub use report::{Report, Tally};

use client::Api;
use nemesis::stop_flag::Stop;
use nemesis::{Counters, kill_actors};

/// Why a run could not be carried out (an invariant that fails is not an
/// error: it is in the [`Report`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChaosError {
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    /// Nodes could not be started or the initial data created.
    #[error("cannot set the run up: {0}")]
    Setup(String),
    /// The shop could not be read back for checking.
    #[error("cannot read the shop back: {0}")]
    Read(String),
}

/// A run's settings.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Seeds every random choice: the clients' operations, the nemesis'
    /// pauses and victims.
    pub seed: u64,
    /// How long the clients run.
    pub duration: Duration,
    /// Concurrent clients.
    pub clients: usize,
    /// A client's request timeout; past it the operation is `info`.
    pub request_timeout: Duration,
    /// Actor kills; `None` for no actor nemesis.
    pub nemesis: Option<NemesisConfig>,
    /// Node kills (SIGKILL, then a restart on the same data), spread evenly
    /// over the run; needs [`Nodes`].
    pub node_kills: u32,
    /// How long a killed node stays down.
    pub node_down: Duration,
    /// Bound on the wait for quiescence and on the reads of the check.
    pub settle_timeout: Duration,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            duration: Duration::from_secs(60),
            clients: 8,
            request_timeout: Duration::from_secs(2),
            nemesis: Some(NemesisConfig::default()),
            node_kills: 0,
            node_down: Duration::from_secs(2),
            settle_timeout: Duration::from_secs(120),
        }
    }
}

/// Runs the workload and the nemesis against `target`, then waits for
/// quiescence and checks. With `nodes`, also kills and restarts node
/// processes (`config.node_kills` times).
///
/// # Errors
/// [`ChaosError::Setup`] when the initial products cannot be created or a
/// killed node does not come back; [`ChaosError::Read`] when the shop
/// cannot be read back within `config.settle_timeout`.
pub async fn run(
    config: &RunConfig,
    target: Target,
    nodes: Option<&mut Nodes>,
) -> Result<Report, ChaosError> {
    let api = Api::new(target.clone(), config.request_timeout)?;
    let history = History::new();
    let catalog: workload::Catalog = Arc::new(Mutex::new(Vec::new()));
    workload::setup(
        &api,
        &history,
        &catalog,
        config.seed,
        Instant::now() + config.settle_timeout,
    )
    .await
    .map_err(ChaosError::Setup)?;

    let live: Arc<Vec<AtomicBool>> =
        Arc::new(target.edges.iter().map(|_| AtomicBool::new(true)).collect());
    let stop = Stop::new();
    let counters = Arc::new(Counters::default());
    let nemesis = config.nemesis.clone().map(|nemesis| {
        let live = Arc::clone(&live);
        tokio::spawn(kill_actors(
            api.clone(),
            nemesis,
            config.seed,
            Arc::clone(&counters),
            stop.clone(),
            Arc::new(move |edge| live.get(edge).is_some_and(|l| l.load(Ordering::SeqCst))),
        ))
    });

    let started = Instant::now();
    let until = started + config.duration;
    let clients: Vec<_> = (0..config.clients)
        .map(|index| {
            let client = workload::Client::new(
                index,
                config.seed,
                api.clone(),
                history.clone(),
                Arc::clone(&catalog),
            );
            tokio::spawn(client.run(until))
        })
        .collect();

    let mut counts = NemesisCounts::default();
    if let Some(nodes) = nodes
        && config.node_kills > 0
        && !nodes.is_empty()
    {
        let mut rng = StdRng::seed_from_u64(config.seed ^ 0x6e6f_6465_6b69_6c6c);
        for k in 1..=config.node_kills {
            let at = started + config.duration * k / (config.node_kills + 1);
            tokio::time::sleep_until(at).await;
            let victim = rng.random_range(0..nodes.len());
            live[victim].store(false, Ordering::SeqCst);
            nodes.kill(victim);
            counts.node_kills += 1;
            tracing::info!(node = nodes.name(victim), "node killed");
            tokio::time::sleep(config.node_down).await;
            nodes.restart(victim).await?;
            live[victim].store(true, Ordering::SeqCst);
            counts.node_restarts += 1;
            tracing::info!(node = nodes.name(victim), "node restarted");
        }
    }
    for client in clients {
        let _ = client.await;
    }
    let workload = started.elapsed();
    stop.stop();
    if let Some(nemesis) = nemesis {
        let _ = nemesis.await;
    }
    counts.actor_kills = counters.kills.load(Ordering::Relaxed);
    counts.actor_kills_missed = counters.missed.load(Ordering::Relaxed);

    let settling = Instant::now();
    let deadline = settling + config.settle_timeout;
    let ops = history.ops();
    let observed = settle(&api, &ops, deadline).await?;
    let quiescence = settling.elapsed();
    let verdicts = checker::check(&ops, &observed);
    let actor_restarts = restarts(&api).await;
    Ok(Report {
        seed: config.seed,
        nodes: target.edges.len(),
        clients: config.clients,
        workload,
        quiescence,
        requests: Report::tally(&ops),
        nemesis: counts,
        actor_restarts,
        verdicts,
    })
}

/// Waits until no order is pending and every outbox is drained (or the
/// deadline passes: the checker then reports what is stuck), and reads the
/// shop back.
///
/// One read of everything is not a snapshot: a notification read early may
/// arrive before the outbox is read drained. Once one read finds the shop
/// quiet (every order final, every outbox empty) nothing changes any more,
/// so a second read is consistent, and that is the one checked.
async fn settle(api: &Api, ops: &[Op], deadline: Instant) -> Result<Observed, ChaosError> {
    let mut quiet = false;
    loop {
        let observed = checker::collect(api, ops, deadline)
            .await
            .map_err(ChaosError::Read)?;
        if quiet || Instant::now() > deadline {
            return Ok(observed);
        }
        let pending = observed
            .orders
            .values()
            .any(|o| o.order["status"] == "pending");
        let undrained = observed.outboxes.iter().any(|(_, n)| *n > 0);
        if !pending && !undrained {
            quiet = true;
            continue;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Actor restarts across the nodes' listings.
async fn restarts(api: &Api) -> u64 {
    let mut total = 0;
    for edge in 0..api.edges() {
        if let Ok(listing) = api.admin_read(edge, "/admin/actors").await {
            total += listing["actors"]
                .as_array()
                .map(|actors| {
                    actors
                        .iter()
                        .filter_map(|a| a["restarts"].as_u64())
                        .sum::<u64>()
                })
                .unwrap_or(0);
        }
    }
    total
}
