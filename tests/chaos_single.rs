//! Chaos on one node: a real `bulwark serve` process under a seeded
//! workload for 60 seconds while the nemesis kills a random actor through
//! the admin API every 10–50 ms. Pinned: after the run settles, every
//! invariant holds — no acknowledged write lost, no operation applied
//! twice, every saga finished with its compensations, stock and money
//! conserved, one notification per event, outboxes drained, no status
//! going backwards.
#![allow(clippy::unwrap_used)]

mod chaos_run;

use std::time::Duration;

use bulwark_chaos::{NemesisConfig, RunConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_seconds_of_actor_kills_lose_nothing() {
    let config = RunConfig {
        seed: 6,
        duration: Duration::from_secs(60),
        clients: 6,
        nemesis: Some(NemesisConfig {
            kill_interval_ms: (10, 50),
            targets: Vec::new(),
        }),
        ..RunConfig::default()
    };
    let report = chaos_run::run_on_fresh_nodes(1, &config).await;
    assert!(report.nemesis.actor_kills > 100, "{report}");
    assert!(report.requests["place-order"].ok > 0, "{report}");
    assert!(report.passed(), "{report}");
}
