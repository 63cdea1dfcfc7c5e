//! Circuit breakers: a target whose calls keep timing out fails fast for a
//! while, then lets one probe through.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bulwark_runtime::{
    BreakerConfig, CallContext, CallError, CircuitState, Node, Router, ServiceConfig,
    UnavailableReason,
};
use tokio::time::Instant;

use common::{Req, Shared, Svc, config, eventually};

const OPEN_FOR: Duration = Duration::from_secs(1);
const SHORT: Duration = Duration::from_millis(100);
const CIRCUIT_OPEN: CallError<common::Refused> = CallError::Unavailable {
    service: "svc-0",
    reason: UnavailableReason::CircuitOpen,
};

async fn node_with(shared: &Shared, breaker: BreakerConfig) -> Node {
    let mut config = config();
    config.breaker = breaker;
    Node::builder(config)
        .service(Svc::<0>::new(shared), ServiceConfig::default())
        .service(Svc::<1>::new(shared), ServiceConfig::default())
        .start()
        .await
        .unwrap()
}

fn three_timeouts_open_it() -> BreakerConfig {
    BreakerConfig {
        timeouts_to_open: 3,
        open_for: OPEN_FOR,
    }
}

fn circuit(router: &Router, target: &str) -> Option<CircuitState> {
    router
        .circuits()
        .into_iter()
        .find(|(name, _)| &**name == target)
        .map(|(_, state)| state)
}

async fn call_within(
    router: &Router,
    timeout: Duration,
    request: Req,
) -> Result<u64, CallError<common::Refused>> {
    router
        .call_with::<Svc<0>>(CallContext::new(timeout), request)
        .await
}

fn calls_seen(shared: &Shared) -> usize {
    shared.delivered_to(0).len()
}

#[tokio::test(start_paused = true)]
async fn a_target_that_keeps_timing_out_fails_fast_until_a_probe_is_answered() {
    let shared = Shared::default();
    let node = node_with(&shared, three_timeouts_open_it()).await;
    let router = node.router();
    for _ in 0..3 {
        assert_eq!(
            call_within(router, SHORT, Req::Block).await,
            Err(CallError::Timeout { service: "svc-0" })
        );
    }
    assert_eq!(circuit(router, "svc-0"), Some(CircuitState::Open));

    // Open: refused at once, and never sent.
    let started = Instant::now();
    assert_eq!(
        call_within(router, SHORT, Req::Echo(1)).await,
        Err(CIRCUIT_OPEN)
    );
    assert_eq!(started.elapsed(), Duration::ZERO);
    // Another target is not affected.
    assert_eq!(router.call::<Svc<1>>(Req::Echo(2)).await, Ok(2));

    // The service recovers; the three blocked calls are taken, the refused
    // one never arrives.
    shared.open_gate();
    eventually("the queued calls are taken", || calls_seen(&shared) == 3).await;

    tokio::time::sleep(OPEN_FOR).await;
    assert_eq!(circuit(router, "svc-0"), Some(CircuitState::HalfOpen));
    assert_eq!(call_within(router, SHORT, Req::Echo(3)).await, Ok(3));
    assert_eq!(circuit(router, "svc-0"), Some(CircuitState::Closed));
    assert_eq!(call_within(router, SHORT, Req::Echo(4)).await, Ok(4));
    assert_eq!(calls_seen(&shared), 5);
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_probe_that_times_out_opens_the_circuit_again() {
    let shared = Shared::default();
    let node = node_with(&shared, three_timeouts_open_it()).await;
    let router = node.router();
    let slow = || Req::Sleep(Duration::from_millis(500));
    for _ in 0..3 {
        assert!(matches!(
            call_within(router, SHORT, slow()).await,
            Err(CallError::Timeout { .. })
        ));
    }
    assert_eq!(
        call_within(router, SHORT, Req::Echo(1)).await,
        Err(CIRCUIT_OPEN)
    );

    tokio::time::sleep(OPEN_FOR).await;
    assert!(matches!(
        call_within(router, SHORT, slow()).await,
        Err(CallError::Timeout { .. })
    ));
    assert_eq!(circuit(router, "svc-0"), Some(CircuitState::Open));
    assert_eq!(
        call_within(router, SHORT, Req::Echo(2)).await,
        Err(CIRCUIT_OPEN)
    );

    // Next period: a probe with time to wait for the queued sleeps closes it.
    tokio::time::sleep(OPEN_FOR).await;
    assert_eq!(
        call_within(router, Duration::from_secs(10), Req::Echo(3)).await,
        Ok(3)
    );
    assert_eq!(circuit(router, "svc-0"), Some(CircuitState::Closed));
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn while_half_open_only_one_probe_goes_through_and_an_abandoned_probe_frees_its_place() {
    let shared = Shared::default();
    let node = node_with(&shared, three_timeouts_open_it()).await;
    let router = node.router();
    for _ in 0..3 {
        let _ = call_within(router, SHORT, Req::Block).await;
    }
    tokio::time::sleep(OPEN_FOR).await;

    // A probe is in flight (blocked in the service): others fail fast.
    let probe = tokio::spawn({
        let router = router.clone();
        async move { call_within(&router, Duration::from_secs(60), Req::Block).await }
    });
    eventually("the probe is admitted", || {
        router.load("svc-0").is_some_and(|l| l.in_flight == 1)
    })
    .await;
    assert_eq!(
        call_within(router, SHORT, Req::Echo(1)).await,
        Err(CIRCUIT_OPEN)
    );

    // Its caller gives up: the next call is the probe.
    probe.abort();
    assert!(probe.await.unwrap_err().is_cancelled());
    shared.open_gate();
    assert_eq!(
        call_within(router, Duration::from_secs(10), Req::Echo(2)).await,
        Ok(2)
    );
    assert_eq!(circuit(router, "svc-0"), Some(CircuitState::Closed));
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn domain_errors_and_crashes_answer_fast_and_never_open_the_circuit() {
    let shared = Shared::default();
    let node = node_with(&shared, three_timeouts_open_it()).await;
    let router = node.router();
    // Two timeouts, then a quick answer: the count starts over.
    for _ in 0..2 {
        let _ = call_within(router, SHORT, Req::Sleep(Duration::from_millis(200))).await;
    }
    for _ in 0..5 {
        assert!(matches!(
            call_within(router, Duration::from_secs(10), Req::Fail).await,
            Err(CallError::Service { .. })
        ));
    }
    for _ in 0..3 {
        assert_eq!(
            call_within(router, Duration::from_secs(10), Req::Panic).await,
            Err(CallError::Restarted { service: "svc-0" })
        );
    }
    for _ in 0..2 {
        let _ = call_within(router, SHORT, Req::Sleep(Duration::from_millis(200))).await;
    }
    assert_eq!(circuit(router, "svc-0"), Some(CircuitState::Closed));
    assert_eq!(
        call_within(router, Duration::from_secs(10), Req::Echo(1)).await,
        Ok(1)
    );
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn with_circuit_breaking_off_every_call_is_sent() {
    let shared = Shared::default();
    let node = node_with(&shared, BreakerConfig::disabled()).await;
    let router = node.router();
    for _ in 0..10 {
        assert!(matches!(
            call_within(router, SHORT, Req::Block).await,
            Err(CallError::Timeout { .. })
        ));
    }
    assert!(router.circuits().is_empty());
    shared.open_gate();
    eventually("every call was taken", || calls_seen(&shared) == 10).await;
    node.shutdown().await;
}
