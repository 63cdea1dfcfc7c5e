//! The checker catches a skipped stock release: with the injected
//! `skip-release` bug, a cancelled order's compensation records
//! `stock_released` without giving the stock back, and invariant 3 (stock
//! conservation) fails naming the product and the cancelled orders that
//! had reserved it. Proof that the checker can fail.
#![allow(clippy::unwrap_used)]

mod support;

use bulwark_actors::injected::{InjectedBug, select};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skipped_stock_release_breaks_stock_conservation() {
    assert!(select(InjectedBug::SkipRelease));
    let node = support::start().await;
    let report = bulwark_chaos::run(&support::short_run(11), node.target.clone(), None)
        .await
        .unwrap();
    println!("{report}");
    let stock = report.verdict(3).unwrap();
    assert!(!stock.passed(), "{report}");
    assert!(
        stock.counterexamples[0].contains("cancelled orders that had reserved it"),
        "{report}"
    );
    node.stop().await;
}
