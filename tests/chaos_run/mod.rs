//! Runs chaos against nodes of the real binary that it starts itself.

#![allow(clippy::unwrap_used, unreachable_pub)]

use std::path::Path;

use bulwark_chaos::{Nodes, Report, RunConfig, Target};

/// Starts `count` nodes (1, or 3 as a cluster) with payments declining
/// above 20.00, runs `config` against them (killing and restarting nodes as
/// it says), and returns the printed report.
pub async fn run_on_fresh_nodes(count: usize, config: &RunConfig) -> Report {
    let data = tempfile::tempdir().unwrap();
    let key = "chaos-test-key";
    let mut nodes = Nodes::start(
        Path::new(env!("CARGO_BIN_EXE_bulwark")),
        count,
        data.path(),
        key,
        vec!["--payments-decline-over".into(), "20.00".into()],
    )
    .await
    .unwrap();
    let target = Target {
        edges: nodes.edges(),
        admin_key: key.to_owned(),
    };
    let report = bulwark_chaos::run(config, target, Some(&mut nodes))
        .await
        .unwrap();
    println!("{report}");
    report
}
