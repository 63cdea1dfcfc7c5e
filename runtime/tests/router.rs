//! The router and node through their public API: calls and their typed
//! errors, restarts, bulkheads, topics, context propagation, self-healing
//! and graceful shutdown.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::time::Duration;

use bulwark_runtime::{
    ActorState, CallContext, CallError, CorrelationId, Node, OverloadedBound, PublishError,
    ServiceConfig, ServiceStatus, TraceContext, UnavailableReason,
};
use common::{DEADLINE, Greetings, Refused, Req, Shared, Svc, eventually, node};
use tokio::time::Instant;

#[tokio::test]
async fn a_call_returns_the_reply_or_the_services_own_error() {
    let shared = Shared::default();
    let node = node(&shared).await;
    let router = node.router();
    assert_eq!(router.call::<Svc<0>>(Req::Echo(7)).await, Ok(7));
    assert_eq!(
        router.call::<Svc<0>>(Req::Fail).await,
        Err(CallError::Service {
            service: "svc-0",
            error: Refused
        })
    );
    node.shutdown().await;
}

#[tokio::test]
async fn a_panicking_worker_is_restarted_and_the_next_call_succeeds() {
    let shared = Shared::default();
    let node = node(&shared).await;
    let router = node.router();
    assert_eq!(
        router.call::<Svc<0>>(Req::Panic).await,
        Err(CallError::Restarted { service: "svc-0" })
    );
    // No wait needed: a call that finds the entry restarting waits for it.
    assert_eq!(router.call::<Svc<0>>(Req::Echo(1)).await, Ok(1));
    let entry = node.actor("svc-0/entry").expect("listed");
    assert_eq!(entry.restarts, 1);
    assert_eq!(entry.state, ActorState::Running);
    assert_eq!(entry.service(), "svc-0");
    assert_eq!(node.actor("svc-1/entry").map(|a| a.restarts), Some(0));
    node.shutdown().await;
}

#[tokio::test]
async fn a_call_whose_target_is_killed_mid_request_returns_restarted_before_its_deadline() {
    let shared = Shared::default();
    let node = node(&shared).await;
    let router = node.router().clone();
    let deadline = Instant::now() + Duration::from_secs(3600);
    let call = tokio::spawn(async move {
        router
            .call_with::<Svc<0>>(
                CallContext::new(Duration::ZERO).with_deadline(deadline),
                Req::Block,
            )
            .await
    });
    eventually("the call reached the handler", || {
        node.router()
            .load("svc-0")
            .is_some_and(|l| l.in_flight == 1 && l.mailbox_len == 0)
    })
    .await;
    node.kill("svc-0/entry").expect("kill by path");
    let result = tokio::time::timeout(DEADLINE, call)
        .await
        .expect("the call never hangs")
        .unwrap();
    assert_eq!(result, Err(CallError::Restarted { service: "svc-0" }));
    assert!(Instant::now() < deadline);
    eventually("the killed entry is restarted", || {
        node.actor("svc-0/entry").is_some_and(|a| a.restarts == 1)
    })
    .await;
    assert_eq!(node.router().call::<Svc<0>>(Req::Echo(2)).await, Ok(2));
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_call_past_its_deadline_times_out_and_the_late_reply_is_dropped() {
    let shared = Shared::default();
    let node = node(&shared).await;
    let router = node.router();
    let ctx = CallContext::new(Duration::from_millis(100));
    let started = Instant::now();
    let result = router
        .call_with::<Svc<0>>(ctx, Req::Sleep(Duration::from_secs(1)))
        .await;
    assert_eq!(result, Err(CallError::Timeout { service: "svc-0" }));
    assert_eq!(started.elapsed(), Duration::from_millis(100));
    // The handler finishes later; its reply finds nobody waiting.
    eventually("the late reply was attempted", || {
        !shared.late_replies.lock().unwrap().is_empty()
    })
    .await;
    assert_eq!(*shared.late_replies.lock().unwrap(), vec![false]);
    // Nothing leaked: the bulkhead is empty and the service still serves.
    let load = router.load("svc-0").unwrap();
    assert_eq!((load.in_flight, load.mailbox_len), (0, 0));
    assert_eq!(router.call::<Svc<0>>(Req::Echo(3)).await, Ok(3));
    node.shutdown().await;
}

#[tokio::test]
async fn a_call_with_an_expired_deadline_times_out_without_being_sent() {
    let shared = Shared::default();
    let node = node(&shared).await;
    let ctx = CallContext::new(Duration::ZERO);
    assert_eq!(
        node.router().call_with::<Svc<0>>(ctx, Req::Echo(1)).await,
        Err(CallError::Timeout { service: "svc-0" })
    );
    assert!(shared.contexts.lock().unwrap().is_empty());
    node.shutdown().await;
}

#[tokio::test]
async fn a_flooded_service_sheds_extra_callers_while_another_keeps_serving() {
    let shared = Shared::default();
    let bounds = ServiceConfig {
        mailbox_len_max: 4,
        in_flight_max: 8,
    };
    let node = Node::builder(common::config())
        .service(Svc::<0>::new(&shared), bounds)
        .service(Svc::<1>::new(&shared), ServiceConfig::default())
        .start()
        .await
        .unwrap();
    let router = node.router().clone();

    // svc-0 blocks on the gate: one call in its handler, the rest queue.
    let flood: Vec<_> = (0..50)
        .map(|_| {
            let router = router.clone();
            let ctx = CallContext::new(Duration::from_secs(3600));
            tokio::spawn(async move { router.call_with::<Svc<0>>(ctx, Req::Block).await })
        })
        .collect();
    // Every caller is either admitted (in flight) or has already returned.
    eventually("every flood call admitted or refused", || {
        let finished = flood.iter().filter(|c| c.is_finished()).count();
        router
            .load("svc-0")
            .is_some_and(|l| l.in_flight + finished == 50)
    })
    .await;
    let load = router.load("svc-0").unwrap();
    assert!(load.mailbox_len <= 4 && load.in_flight <= 5, "{load:?}");

    // While svc-0 is stuck, svc-1 answers every call within its deadline.
    for i in 0..100 {
        let ctx = CallContext::new(Duration::from_secs(10));
        assert_eq!(router.call_with::<Svc<1>>(ctx, Req::Echo(i)).await, Ok(i));
    }
    // The extra callers of svc-0 were refused at once: they finished while
    // the gate is still closed, with a typed error.
    let mut refused = 0;
    let mut admitted = Vec::new();
    for call in flood {
        if call.is_finished() {
            assert_eq!(
                call.await.unwrap(),
                Err(CallError::Overloaded {
                    service: "svc-0",
                    bound: OverloadedBound::Mailbox
                })
            );
            refused += 1;
        } else {
            admitted.push(call);
        }
    }
    assert!(refused >= 45, "only {refused} refused");

    shared.open_gate();
    for call in admitted {
        match call.await.unwrap() {
            Ok(0) => {}
            other => panic!("an admitted call must succeed, got {other:?}"),
        }
    }
    node.shutdown().await;
}

#[tokio::test]
async fn an_event_reaches_every_subscriber_in_different_services() {
    let shared = Shared::default();
    let node = node(&shared).await;
    let published = node.router().publish::<Greetings>("hello".to_owned());
    assert_eq!(published.delivered, 3);
    assert!(published.dropped.is_empty());
    eventually("all three services saw the event", || {
        shared.events.lock().unwrap().len() == 3
    })
    .await;
    let mut seen: Vec<usize> = shared
        .events
        .lock()
        .unwrap()
        .iter()
        .map(|(n, text)| {
            assert_eq!(text, "hello");
            *n
        })
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, vec![0, 1, 2]);
    node.shutdown().await;
}

#[tokio::test]
async fn a_confirmed_publish_waits_for_every_subscriber_to_ack() {
    let shared = Shared::default();
    let node = node(&shared).await;
    let ctx = node.router().context();
    let confirmed = node
        .router()
        .publish_confirmed::<Greetings>(&ctx, "hi".to_owned())
        .await;
    assert_eq!(confirmed, Ok(3));
    assert_eq!(
        shared.events.lock().unwrap().len(),
        3,
        "all applied before Ok"
    );
    let unconfirmed = node
        .router()
        .publish_confirmed::<Greetings>(&ctx, "unconfirmed".to_owned())
        .await;
    assert_eq!(unconfirmed, Err(PublishError::Unconfirmed));
    node.shutdown().await;
}

#[tokio::test]
async fn correlation_and_trace_context_reach_the_handler_and_its_further_calls() {
    let shared = Shared::default();
    let node = node(&shared).await;
    let trace =
        TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
    let ctx = CallContext::new(Duration::from_secs(20))
        .with_correlation_id(CorrelationId::external("req-42"))
        .with_trace(trace);
    let deadline = ctx.deadline;
    assert_eq!(
        node.router()
            .call_with::<Svc<0>>(ctx, Req::Forward(5))
            .await,
        Ok(5)
    );
    let contexts = shared.contexts.lock().unwrap().clone();
    let hops: Vec<usize> = contexts.iter().map(|(n, _)| *n).collect();
    assert_eq!(hops, vec![0, 1], "svc-0 handled it and called svc-1");
    for (_, seen) in &contexts {
        assert_eq!(seen.correlation_id.to_string(), "req-42");
        assert_eq!(seen.trace, Some(trace));
        assert_eq!(
            seen.deadline, deadline,
            "the remaining deadline carries over"
        );
    }
    node.shutdown().await;
}

#[tokio::test]
async fn a_cast_is_delivered_with_its_context() {
    let shared = Shared::default();
    let node = node(&shared).await;
    let ctx = node
        .router()
        .context()
        .with_correlation_id(CorrelationId::external("cast-1"));
    node.router()
        .cast_with::<Svc<2>>(ctx, Req::Echo(1))
        .unwrap();
    eventually("cast handled", || {
        shared
            .contexts
            .lock()
            .unwrap()
            .iter()
            .any(|(n, c)| *n == 2 && c.correlation_id.to_string() == "cast-1")
    })
    .await;
    node.shutdown().await;
}

#[tokio::test]
async fn when_a_services_root_gives_up_it_is_reported_down_and_calls_fail_unavailable() {
    let shared = Shared::default();
    let mut config = common::config();
    // Long enough that the node does not bring it back during the test.
    config.service_restart_backoff.initial = Duration::from_secs(3600);
    let fragile = Svc::<0> {
        shared: shared.clone(),
        root_max_restarts: 0,
    };
    let node = Node::builder(config)
        .service(fragile, ServiceConfig::default())
        .service(Svc::<1>::new(&shared), ServiceConfig::default())
        .start()
        .await
        .unwrap();
    let router = node.router();
    assert_eq!(
        router.call::<Svc<0>>(Req::Panic).await,
        Err(CallError::Restarted { service: "svc-0" })
    );
    eventually("svc-0 reported down", || {
        node.status("svc-0") == Some(ServiceStatus::Down)
    })
    .await;
    let started = Instant::now();
    assert_eq!(
        router.call::<Svc<0>>(Req::Echo(1)).await,
        Err(CallError::Unavailable {
            service: "svc-0",
            reason: UnavailableReason::Down
        })
    );
    assert!(
        started.elapsed() < DEADLINE,
        "fails fast, not at the deadline"
    );
    assert_eq!(node.actor("svc-0").map(|a| a.state), Some(ActorState::Down));
    assert!(node.actor("svc-0/entry").is_none());
    assert_eq!(router.call::<Svc<1>>(Req::Echo(1)).await, Ok(1));
    node.shutdown().await;
}

#[tokio::test]
async fn the_node_restarts_a_service_that_went_down_after_a_backoff() {
    let shared = Shared::default();
    let mut config = common::config();
    config.service_restart_backoff.initial = Duration::from_millis(50);
    let fragile = Svc::<0> {
        shared: shared.clone(),
        root_max_restarts: 0,
    };
    let node = Node::builder(config)
        .service(fragile, ServiceConfig::default())
        .start()
        .await
        .unwrap();
    let _ = node.router().call::<Svc<0>>(Req::Panic).await;
    eventually("svc-0 back up with one root restart", || {
        node.status("svc-0") == Some(ServiceStatus::Up)
            && node.actor("svc-0").is_some_and(|a| a.restarts == 1)
    })
    .await;
    assert_eq!(node.router().call::<Svc<0>>(Req::Echo(9)).await, Ok(9));
    node.shutdown().await;
}

#[tokio::test]
async fn a_call_to_an_unknown_service_is_unavailable() {
    let shared = Shared::default();
    let node = Node::builder(common::config())
        .service(Svc::<0>::new(&shared), ServiceConfig::default())
        .start()
        .await
        .unwrap();
    assert_eq!(
        node.router().call::<Svc<2>>(Req::Echo(1)).await,
        Err(CallError::Unavailable {
            service: "svc-2",
            reason: UnavailableReason::NotRegistered
        })
    );
    node.shutdown().await;
}

#[tokio::test]
async fn shutdown_drains_in_flight_calls_then_stops_services_in_reverse_order() {
    let shared = Shared::default();
    let node = node(&shared).await;
    let router = node.router().clone();
    let in_flight = {
        let router = router.clone();
        tokio::spawn(async move { router.call::<Svc<0>>(Req::Block).await })
    };
    eventually("call in the handler", || {
        router.load("svc-0").is_some_and(|l| l.in_flight == 1)
    })
    .await;
    let stopping = {
        let node = node.clone();
        tokio::spawn(async move { node.shutdown().await })
    };
    // New calls are refused while the old one drains.
    let probe = router.clone();
    let mut refused = false;
    let deadline = Instant::now() + DEADLINE;
    while !refused {
        assert!(
            Instant::now() < deadline,
            "shutdown never closed the router"
        );
        refused = probe.call::<Svc<1>>(Req::Echo(1)).await
            == Err(CallError::Unavailable {
                service: "svc-1",
                reason: UnavailableReason::ShuttingDown,
            });
        tokio::task::yield_now().await;
    }
    assert!(
        shared.stopped.lock().unwrap().is_empty(),
        "nothing stopped yet"
    );
    shared.open_gate();
    assert_eq!(
        in_flight.await.unwrap(),
        Ok(0),
        "the in-flight call finished"
    );
    tokio::time::timeout(DEADLINE, stopping)
        .await
        .expect("shutdown completes")
        .unwrap();
    assert_eq!(*shared.stopped.lock().unwrap(), vec![2, 1, 0]);
    assert!(node.actors().is_empty());
}
