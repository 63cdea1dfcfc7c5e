//! Chaos on a three-node cluster: real `bulwark serve` processes (users;
//! products; orders, payments and notifications) under a seeded workload
//! sent to every node's edge, actors killed every 10–50 ms, and one node
//! killed with SIGKILL mid-run and restarted on its data. Pinned: once
//! the cluster settles, every invariant holds.
#![allow(clippy::unwrap_used)]

mod chaos_run;

use std::time::Duration;

use bulwark_chaos::{NemesisConfig, RunConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_and_restarted_under_load_loses_nothing() {
    let config = RunConfig {
        seed: 3,
        duration: Duration::from_secs(30),
        clients: 6,
        nemesis: Some(NemesisConfig {
            kill_interval_ms: (10, 50),
            targets: Vec::new(),
        }),
        node_kills: 1,
        ..RunConfig::default()
    };
    let report = chaos_run::run_on_fresh_nodes(3, &config).await;
    assert_eq!(report.nemesis.node_kills, 1, "{report}");
    assert_eq!(report.nemesis.node_restarts, 1, "{report}");
    assert!(report.requests["place-order"].ok > 0, "{report}");
    assert!(report.passed(), "{report}");
}
