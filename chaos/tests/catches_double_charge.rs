//! The checker catches a retried charge applied twice: with the injected
//! `double-charge` bug, the payments service loses the answer of some
//! applied charges and charges again when the saga retries, and invariant
//! 4 (money moves once) fails naming the order and its movements. Proof
//! that the checker can fail.
#![allow(clippy::unwrap_used)]

mod support;

use bulwark_actors::injected::{InjectedBug, select};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_charge_applied_twice_breaks_the_money_invariant() {
    assert!(select(InjectedBug::DoubleCharge));
    let node = support::start().await;
    let report = bulwark_chaos::run(&support::short_run(12), node.target.clone(), None)
        .await
        .unwrap();
    println!("{report}");
    let money = report.verdict(4).unwrap();
    assert!(!money.passed(), "{report}");
    assert!(money.counterexamples[0].contains("charges ["), "{report}");
    node.stop().await;
}
