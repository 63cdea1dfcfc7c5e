//! Idempotent calls are retried when the actor serving them stops before it
//! replies; other calls are not.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bulwark_runtime::{CALL_ATTEMPTS_MAX, CallContext, CallError};

use common::{Req, Shared, Svc, node};

fn deliveries(shared: &Shared) -> Vec<CallContext> {
    shared.delivered_to(0)
}

#[tokio::test(start_paused = true)]
async fn an_idempotent_call_whose_actor_crashes_is_sent_again_and_answered() {
    let shared = Shared::default();
    let node = node(&shared).await;
    let context = CallContext::new(Duration::from_secs(5));
    let result = node
        .router()
        .call_with::<Svc<0>>(context.clone(), Req::PanicOnce(7))
        .await;
    assert_eq!(result, Ok(7));
    // Twice delivered, in the caller's one context (same correlation id).
    let seen = deliveries(&shared);
    assert_eq!(seen.len(), 2);
    for delivered in &seen {
        assert_eq!(delivered.correlation_id, context.correlation_id);
    }
    assert_eq!(node.actor("svc-0/entry").unwrap().restarts, 1);
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_call_that_is_not_idempotent_is_not_sent_again() {
    let shared = Shared::default();
    let node = node(&shared).await;
    assert_eq!(
        node.router().call::<Svc<0>>(Req::Panic).await,
        Err(CallError::Restarted { service: "svc-0" })
    );
    assert_eq!(deliveries(&shared).len(), 1);
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn an_idempotent_call_that_keeps_crashing_its_actor_gives_up_after_the_last_attempt() {
    let shared = Shared::default();
    let node = node(&shared).await;
    assert_eq!(
        node.router().call::<Svc<0>>(Req::PanicIdempotent).await,
        Err(CallError::Restarted { service: "svc-0" })
    );
    assert_eq!(
        deliveries(&shared).len(),
        usize::try_from(CALL_ATTEMPTS_MAX).unwrap()
    );
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn no_retry_is_started_that_the_deadline_would_not_leave_time_for() {
    let shared = Shared::default();
    let node = node(&shared).await;
    // 5 ms left: less than the pause before a retry.
    let context = CallContext::new(Duration::from_millis(5));
    assert_eq!(
        node.router()
            .call_with::<Svc<0>>(context, Req::PanicOnce(1))
            .await,
        Err(CallError::Restarted { service: "svc-0" })
    );
    assert_eq!(deliveries(&shared).len(), 1);
    node.shutdown().await;
}
