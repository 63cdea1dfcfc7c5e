//! The nemesis: kills a random actor through a random node's admin API at
//! a set rate, until told to stop.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use reqwest::Method;
use stop_flag::Stop;

use crate::client::Api;

/// What the nemesis did.
#[derive(Debug, Clone, Default)]
pub struct NemesisCounts {
    /// Actors killed (the admin API answered 200).
    pub actor_kills: u64,
    /// Kill requests that killed nothing: the actor was between restarts,
    /// or the node did not answer.
    pub actor_kills_missed: u64,
    /// Node processes killed with SIGKILL.
    pub node_kills: u64,
    /// Node processes started again on their data.
    pub node_restarts: u64,
}

/// Counters shared with the nemesis task.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) kills: AtomicU64,
    pub(crate) missed: AtomicU64,
}

/// Which actors the nemesis may kill and how often.
#[derive(Debug, Clone)]
pub struct NemesisConfig {
    /// The pause between two kills is drawn from this range (ms).
    pub kill_interval_ms: (u64, u64),
    /// Only actors whose path starts with one of these (all actors below a
    /// service's root when empty). Roots are never killed: a root killed
    /// is the whole service down, which node kills already exercise.
    pub targets: Vec<String>,
}

impl Default for NemesisConfig {
    fn default() -> Self {
        Self {
            kill_interval_ms: (10, 50),
            targets: Vec::new(),
        }
    }
}

/// A flag the run sets to stop its nemesis.
pub(crate) mod stop_flag {
    use std::sync::Arc;

    use tokio::sync::watch;

    /// Set once; waited on by the nemesis.
    #[derive(Debug, Clone)]
    pub(crate) struct Stop(Arc<watch::Sender<bool>>);

    impl Stop {
        pub(crate) fn new() -> Self {
            Self(Arc::new(watch::Sender::new(false)))
        }

        pub(crate) fn stop(&self) {
            self.0.send_replace(true);
        }

        pub(crate) fn is_stopped(&self) -> bool {
            *self.0.borrow()
        }

        pub(crate) async fn stopped(&self) {
            let mut rx = self.0.subscribe();
            let _ = rx.wait_for(|stopped| *stopped).await;
        }
    }
}

/// Kills actors until `stop`.
pub(crate) async fn kill_actors(
    api: Api,
    config: NemesisConfig,
    seed: u64,
    counters: Arc<Counters>,
    stop: Stop,
    live: Arc<dyn Fn(usize) -> bool + Send + Sync>,
) {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x6e65_6d65_7369_7321);
    let (low, high) = config.kill_interval_ms;
    while !stop.is_stopped() {
        let pause = Duration::from_millis(rng.random_range(low..=high.max(low)));
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = stop.stopped() => return,
        }
        let edge = rng.random_range(0..api.edges().max(1));
        if !live(edge) {
            continue;
        }
        let Ok(listing) = api.admin_read(edge, "/admin/actors").await else {
            counters.missed.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let candidates: Vec<String> = listing["actors"]
            .as_array()
            .map(|actors| {
                actors
                    .iter()
                    .filter(|a| a["state"] == "running")
                    .filter_map(|a| a["path"].as_str())
                    .filter(|path| path.contains('/'))
                    .filter(|path| {
                        config.targets.is_empty()
                            || config.targets.iter().any(|t| path.starts_with(t.as_str()))
                    })
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        if candidates.is_empty() {
            continue;
        }
        let path = &candidates[rng.random_range(0..candidates.len())];
        let killed = api
            .admin(edge, Method::POST, "/admin/actors/kill")
            .query(&[("path", path.as_str())])
            .send()
            .await
            .is_ok_and(|response| response.status().is_success());
        if killed {
            counters.kills.fetch_add(1, Ordering::Relaxed);
        } else {
            counters.missed.fetch_add(1, Ordering::Relaxed);
        }
    }
}
