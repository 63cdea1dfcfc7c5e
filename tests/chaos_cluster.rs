//! Chaos on a three-node cluster: real `bulwark serve` processes (users;
//! products; orders, payments and notifications) under a seeded workload
//! sent to every node's edge, actors killed every 10–50 ms, and one node
//! killed with SIGKILL mid-run and restarted on its data. Pinned: once
//! the cluster settles, every invariant holds.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use bulwark_chaos::{NemesisConfig, Nodes, RunConfig, Target};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_and_restarted_under_load_loses_nothing() {
    let data = tempfile::tempdir().unwrap();
    let key = "chaos-cluster-key";
    let mut nodes = Nodes::start(
        Path::new(env!("CARGO_BIN_EXE_bulwark")),
        3,
        data.path(),
        key,
        vec!["--payments-decline-over".into(), "20.00".into()],
    )
    .await
    .unwrap();
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
    let target = Target {
        edges: nodes.edges(),
        admin_key: key.to_owned(),
    };
    let report = bulwark_chaos::run(&config, target, Some(&mut nodes))
        .await
        .unwrap();
    println!("{report}");
    assert_eq!(report.nemesis.node_kills, 1, "{report}");
    assert_eq!(report.nemesis.node_restarts, 1, "{report}");
    assert!(report.requests["place-order"].ok > 0, "{report}");
    assert!(report.passed(), "{report}");
}
