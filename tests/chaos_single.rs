//! Chaos on one node: a real `bulwark serve` process under a seeded
//! workload for 60 seconds while the nemesis kills a random actor through
//! the admin API every 10–50 ms. Pinned: after the run settles, every
//! invariant holds — no acknowledged write lost, no operation applied
//! twice, every saga finished with its compensations, stock and money
//! conserved, one notification per event, outboxes drained, no status
//! going backwards.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use bulwark_chaos::{NemesisConfig, Nodes, RunConfig, Target};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_seconds_of_actor_kills_lose_nothing() {
    let data = tempfile::tempdir().unwrap();
    let key = "chaos-single-key";
    let mut nodes = Nodes::start(
        Path::new(env!("CARGO_BIN_EXE_bulwark")),
        1,
        data.path(),
        key,
        vec!["--payments-decline-over".into(), "20.00".into()],
    )
    .await
    .unwrap();
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
    let target = Target {
        edges: nodes.edges(),
        admin_key: key.to_owned(),
    };
    let report = bulwark_chaos::run(&config, target, Some(&mut nodes))
        .await
        .unwrap();
    println!("{report}");
    assert!(report.nemesis.actor_kills > 100, "{report}");
    assert!(report.requests["place-order"].ok > 0, "{report}");
    assert!(report.passed(), "{report}");
}
