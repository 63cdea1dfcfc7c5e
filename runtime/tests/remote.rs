//! Location transparency over a node link: a node calls a service that runs
//! on another node (two nodes in this process, a real TCP link on
//! 127.0.0.1) with the same `call` API, and gets the same typed results —
//! replies, domain errors, deadlines, correlation and trace context — and a
//! fast `Unavailable` once the link is gone.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bulwark_runtime::cluster::handshake::Cookie;
use bulwark_runtime::cluster::link::Link;
use bulwark_runtime::cluster::{ConnectError, accept_links, connect};
use bulwark_runtime::{
    CallContext, CallError, CastError, CorrelationId, Node, ServiceConfig, TraceContext,
    UnavailableReason,
};
use common::{DEADLINE, Greetings, Refused, Req, Shared, Svc};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

struct Pair {
    a: Node,
    b: Node,
    shared_a: Shared,
    link_at_b: Link,
    links_at_a: Arc<Mutex<Vec<Link>>>,
    stop: CancellationToken,
}

/// Node "a" runs svc-0 and listens; node "b" runs svc-1 and dials a.
async fn pair(cookie_b: &str) -> Result<Pair, ConnectError> {
    let shared_a = Shared::default();
    let shared_b = Shared::default();
    let a = Node::builder(bulwark_runtime::NodeConfig::new("a"))
        .service(Svc::<0>::new(&shared_a), ServiceConfig::default())
        .start()
        .await
        .unwrap();
    let b = Node::builder(bulwark_runtime::NodeConfig::new("b"))
        .service(Svc::<1>::new(&shared_b), ServiceConfig::default())
        .start()
        .await
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let links_at_a = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&links_at_a);
    tokio::spawn(accept_links(
        listener,
        "a".to_owned(),
        Cookie::new("cluster-secret").unwrap(),
        None,
        a.router().clone(),
        Arc::new(move |link| sink.lock().unwrap().push(link)),
        stop.clone(),
    ));
    let link_at_b = connect(addr, "b", &Cookie::new(cookie_b).unwrap(), None, b.router()).await?;
    b.router().add_remote("svc-0", link_at_b.clone());
    Ok(Pair {
        a,
        b,
        shared_a,
        link_at_b,
        links_at_a,
        stop,
    })
}

#[tokio::test]
async fn a_remote_service_answers_through_the_same_call_api() {
    let p = pair("cluster-secret").await.unwrap();
    assert_eq!(p.link_at_b.peer(), "a");
    assert_eq!(p.b.router().call::<Svc<0>>(Req::Echo(41)).await, Ok(41));
    assert_eq!(
        p.b.router().call::<Svc<0>>(Req::Fail).await,
        Err(CallError::Service {
            service: "svc-0",
            error: Refused
        })
    );
    // It ran on a: a's handler saw it.
    assert_eq!(p.shared_a.contexts.lock().unwrap().len(), 2);
    p.stop.cancel();
    p.b.shutdown().await;
    p.a.shutdown().await;
}

#[tokio::test]
async fn correlation_trace_and_the_remaining_deadline_cross_the_link() {
    let p = pair("cluster-secret").await.unwrap();
    let trace =
        TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
    let ctx = CallContext::new(Duration::from_secs(20))
        .with_correlation_id(CorrelationId::external("req-remote-1"))
        .with_trace(trace);
    let deadline = ctx.deadline;
    assert_eq!(
        p.b.router().call_with::<Svc<0>>(ctx, Req::Echo(1)).await,
        Ok(1)
    );
    let (_, seen) = p.shared_a.contexts.lock().unwrap()[0].clone();
    assert_eq!(seen.correlation_id.to_string(), "req-remote-1");
    assert_eq!(seen.trace, Some(trace));
    // Same process, same clock: the deadline arrives within the transit
    // time (and the millisecond rounding) of the caller's.
    assert!(seen.deadline <= deadline + Duration::from_millis(1));
    assert!(deadline.duration_since(seen.deadline) < Duration::from_secs(5));
    p.stop.cancel();
    p.b.shutdown().await;
    p.a.shutdown().await;
}

#[tokio::test]
async fn a_cast_reaches_a_remote_service_with_its_context_and_fails_fast_once_the_link_is_gone() {
    let p = pair("cluster-secret").await.unwrap();
    let ctx = CallContext::new(Duration::from_secs(20))
        .with_correlation_id(CorrelationId::external("cast-remote-1"));
    p.b.router().cast_with::<Svc<0>>(ctx, Req::Echo(5)).unwrap();
    common::eventually("the cast reached svc-0 on node a", || {
        p.shared_a
            .contexts
            .lock()
            .unwrap()
            .iter()
            .any(|(n, c)| *n == 0 && c.correlation_id.to_string() == "cast-remote-1")
    })
    .await;
    p.link_at_b.close();
    assert_eq!(
        p.b.router().cast::<Svc<0>>(Req::Echo(6)),
        Err(CastError::Unavailable {
            service: "svc-0",
            reason: UnavailableReason::Unreachable
        })
    );
    p.stop.cancel();
    p.b.shutdown().await;
    p.a.shutdown().await;
}

#[tokio::test]
async fn a_plain_publish_reaches_subscribers_on_the_other_node() {
    let p = pair("cluster-secret").await.unwrap();
    // Both services subscribe to greetings: svc-1 here on b, svc-0 on a,
    // which b learns from a's announcement.
    common::eventually("b knows a's topics", || {
        p.b.router()
            .publish::<Greetings>("probe".to_owned())
            .delivered
            == 2
    })
    .await;
    let published = p.b.router().publish::<Greetings>("hello from b".to_owned());
    assert_eq!(published.delivered, 2, "svc-1 here and node a");
    common::eventually("svc-0 on a got the event", || {
        p.shared_a
            .events
            .lock()
            .unwrap()
            .iter()
            .any(|(n, text)| *n == 0 && text == "hello from b")
    })
    .await;
    p.stop.cancel();
    p.b.shutdown().await;
    p.a.shutdown().await;
}

#[tokio::test]
async fn a_slow_remote_call_times_out_at_the_callers_deadline() {
    let p = pair("cluster-secret").await.unwrap();
    let ctx = CallContext::new(Duration::from_millis(200));
    let result =
        p.b.router()
            .call_with::<Svc<0>>(ctx, Req::Sleep(Duration::from_secs(2)))
            .await;
    assert_eq!(result, Err(CallError::Timeout { service: "svc-0" }));
    p.stop.cancel();
    p.b.shutdown().await;
    p.a.shutdown().await;
}

#[tokio::test]
async fn calls_fail_fast_once_the_link_is_gone_in_flight_ones_as_outcome_unknown() {
    let p = pair("cluster-secret").await.unwrap();
    // A call blocked on a's gate is in flight when a drops the link.
    let router = p.b.router().clone();
    let in_flight = tokio::spawn(async move {
        let ctx = CallContext::new(Duration::from_secs(3600));
        router.call_with::<Svc<0>>(ctx, Req::Block).await
    });
    common::eventually("a serves the call", || {
        !p.shared_a.contexts.lock().unwrap().is_empty()
    })
    .await;
    for link in p.links_at_a.lock().unwrap().iter() {
        link.close();
    }
    let started = Instant::now();
    let result = tokio::time::timeout(DEADLINE, in_flight)
        .await
        .expect("never hangs")
        .unwrap();
    // It was delivered and may have been applied: not "unavailable".
    assert_eq!(result, Err(CallError::Restarted { service: "svc-0" }));
    assert!(started.elapsed() < DEADLINE);
    common::eventually("b sees the link closed", || p.link_at_b.is_closed()).await;
    // A new call is never sent: nothing was done.
    assert_eq!(
        p.b.router().call::<Svc<0>>(Req::Echo(1)).await,
        Err(CallError::Unavailable {
            service: "svc-0",
            reason: UnavailableReason::Unreachable
        })
    );
    p.shared_a.open_gate();
    p.stop.cancel();
    p.b.shutdown().await;
    p.a.shutdown().await;
}

#[tokio::test]
async fn a_node_with_the_wrong_cookie_cannot_open_a_link() {
    let result = pair("not-the-secret").await;
    assert!(
        matches!(result, Err(ConnectError::Handshake { .. })),
        "{:?}",
        result.err()
    );
}

/// Polls `call` until it returns `Ok(expected)`.
async fn until_ok<F, Fut>(what: &str, expected: u64, mut call: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<u64, CallError<Refused>>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if call().await == Ok(expected) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn linked_nodes_route_to_each_other_by_announcement_and_a_dropped_link_is_redialed() {
    let shared = Shared::default();
    let a = Node::builder(bulwark_runtime::NodeConfig::new("a"))
        .service(Svc::<0>::new(&shared), ServiceConfig::default())
        .start()
        .await
        .unwrap();
    let b = Node::builder(bulwark_runtime::NodeConfig::new("b"))
        .service(Svc::<1>::new(&shared), ServiceConfig::default())
        .start()
        .await
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let links_at_a = Arc::new(Mutex::new(Vec::<Link>::new()));
    let sink = Arc::clone(&links_at_a);
    let cookie = Cookie::new("cluster-secret").unwrap();
    tokio::spawn(accept_links(
        listener,
        "a".to_owned(),
        cookie.clone(),
        None,
        a.router().clone(),
        Arc::new(move |link| sink.lock().unwrap().push(link)),
        stop.clone(),
    ));
    tokio::spawn(bulwark_runtime::cluster::maintain_link(
        addr,
        "b".to_owned(),
        cookie,
        None,
        b.router().clone(),
        stop.clone(),
    ));
    // No manual routing: each side learned the other's services.
    until_ok("b reaches svc-0 on a", 1, || {
        b.router().call::<Svc<0>>(Req::Echo(1))
    })
    .await;
    until_ok("a reaches svc-1 on b", 2, || {
        a.router().call::<Svc<1>>(Req::Echo(2))
    })
    .await;

    // a drops the link; b notices, re-dials, and routes again.
    for link in links_at_a.lock().unwrap().iter() {
        link.close();
    }
    until_ok("b reaches svc-0 again", 3, || {
        b.router().call::<Svc<0>>(Req::Echo(3))
    })
    .await;
    assert!(links_at_a.lock().unwrap().len() >= 2, "b dialed again");
    stop.cancel();
    b.shutdown().await;
    a.shutdown().await;
}

#[tokio::test]
async fn a_confirmed_event_reaches_subscribers_on_both_nodes_and_waits_for_their_acks() {
    let p = pair("cluster-secret").await.unwrap();
    // b learned that a subscribes to "greetings" from a's announcement.
    let ctx = p.b.router().context();
    let deadline = Instant::now() + DEADLINE;
    let delivered = loop {
        match p
            .b
            .router()
            .publish_confirmed::<common::Greetings>(&ctx, "hello".to_owned())
            .await
        {
            Ok(2) => break 2,
            other => {
                assert!(
                    Instant::now() < deadline,
                    "never reached both nodes: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    assert_eq!(delivered, 2, "svc-1 here and svc-0 on a");
    assert!(
        p.shared_a
            .events
            .lock()
            .unwrap()
            .iter()
            .any(|(n, text)| *n == 0 && text == "hello"),
        "a's subscriber applied it before the publish returned"
    );
    // An event a remote subscriber drops unacknowledged is not confirmed.
    let unconfirmed =
        p.b.router()
            .publish_confirmed::<common::Greetings>(&ctx, "unconfirmed".to_owned())
            .await;
    assert!(unconfirmed.is_err(), "{unconfirmed:?}");
    p.stop.cancel();
    p.b.shutdown().await;
    p.a.shutdown().await;
}
