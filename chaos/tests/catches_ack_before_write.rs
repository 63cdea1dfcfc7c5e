//! The checker catches an acknowledgement sent before the write: with the
//! injected `ack-before-write` bug, the orders service answers 201 first
//! and writes a moment later, unless its entry actor was killed meanwhile;
//! with the nemesis killing `orders/entry` every 5–20 ms, acknowledged
//! orders are lost and invariant 1 fails naming them. Proof that the
//! checker can fail.
#![allow(clippy::unwrap_used)]

mod support;

use bulwark_actors::injected::{InjectedBug, select};
use bulwark_chaos::NemesisConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_order_lost_with_its_actor_breaks_invariant_one() {
    assert!(select(InjectedBug::AckBeforeWrite));
    let node = support::start().await;
    let mut config = support::short_run(13);
    config.nemesis = Some(NemesisConfig {
        kill_interval_ms: (5, 20),
        targets: vec!["orders/entry".to_owned()],
    });
    let report = bulwark_chaos::run(&config, node.target.clone(), None)
        .await
        .unwrap();
    println!("{report}");
    let creates = report.verdict(1).unwrap();
    assert!(!creates.passed(), "{report}");
    assert!(
        creates
            .counterexamples
            .iter()
            .any(|c| c.contains("was acknowledged (2xx) but is not found")),
        "{report}"
    );
    node.stop().await;
}
