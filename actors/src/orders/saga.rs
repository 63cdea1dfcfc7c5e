//! The order saga, orchestrated by the orders service: validate user →
//! reserve stock → charge → commit stock → completed; after a failure,
//! compensation in reverse (refund, release) → cancelled.
//!
//! Each order's saga is a task that folds the order's stream (at its start,
//! and again after a conflict, a failure or a retry; otherwise it goes on
//! from the state its last append returned), takes the next step
//! (`OrderState::next_step`), calls the service that does it, and records
//! the outcome as an event with an expected-version append — with the
//! events of the steps after it that call no one, in the same append
//! (`OrderState::with_local_steps`). Every
//! step is idempotent by order id, so a step repeated after a crash or a
//! timeout is harmless. Progress lives in the store, not in the task: a
//! restarted service resumes every pending order.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bulwark_runtime::{CallError, CorrelationId, Router, UnavailableReason};
use dashmap::DashMap;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use super::messages::OrderStatus;
use super::state::{OrderEvent, OrderState, Step};
use super::store::{OrdersStore, RecordError};
use crate::common::ShopError;
use crate::payments::messages::{PaymentStatus, PaymentsRequest, PaymentsResponse};
use crate::products::messages::ProductsRequest;
use crate::users::messages::UsersRequest;
use crate::users::shards::{UserShards, call_users};
use crate::worker::Kick;
use crate::{Payments, Products};

/// Deadline of one step's call.
const STEP_TIMEOUT: Duration = Duration::from_secs(5);
/// Failed attempts of a forward step before the saga gives up and
/// compensates. Compensation steps are retried without limit: they must
/// finish.
const FORWARD_ATTEMPTS_MAX: u32 = 8;
/// First retry delay; doubles per attempt up to `RETRY_DELAY_MAX`.
const RETRY_DELAY_INITIAL: Duration = Duration::from_millis(50);
/// Longest retry delay.
const RETRY_DELAY_MAX: Duration = Duration::from_secs(2);

/// What [`Sagas::reserve_after_validation`] came to.
enum AfterCheck {
    /// Append these events (the check's, and the reservation's when it ran).
    Append(Vec<OrderEvent>),
    /// The reservation failed and is to be retried: append the check alone,
    /// then back off as after a reservation's first failure.
    ReserveFailed,
    /// The node is shutting down: append nothing; the next start checks the
    /// user again.
    Stop,
}

enum Outcome {
    Record(OrderEvent),
    Retry(String),
    /// The node is shutting down: stop; the saga resumes at the next start.
    Stop,
}

/// What outlives the entry actor's restarts: the orders whose saga task
/// is running (so a restarted entry never starts a second task for the
/// same order), and what this node's sagas did since it started
/// (`/metrics`).
#[derive(Debug, Default)]
pub(crate) struct SagaShared {
    /// Orders whose saga task is running.
    pub(crate) running: DashMap<u64, ()>,
    /// Sagas that ended `completed`.
    pub(crate) completed: AtomicU64,
    /// Sagas that ended `cancelled` (declined, out of stock, cancelled by
    /// the client, or given up on after failed attempts).
    pub(crate) cancelled: AtomicU64,
    /// Failed step attempts that were retried.
    pub(crate) step_retries: AtomicU64,
}

impl SagaShared {
    fn finished(&self, status: OrderStatus) {
        match status {
            OrderStatus::Completed => &self.completed,
            OrderStatus::Cancelled => &self.cancelled,
            OrderStatus::Pending => return,
        }
        .fetch_add(1, Ordering::Relaxed);
    }
}

/// Runs order sagas; one task per pending order at most.
#[derive(Debug, Clone)]
pub(crate) struct Sagas {
    store: OrdersStore,
    router: Router,
    /// How users is split, to reach an order's user on its shard.
    users: UserShards,
    kick: Kick,
    /// Running sagas and counters, shared across actor restarts.
    shared: Arc<SagaShared>,
    /// Cancelled when the node starts shutting the service down; sagas
    /// resume from the store at the next start.
    stop: CancellationToken,
    /// The service's task tracker: the node waits for saga tasks to end.
    tasks: TaskTracker,
}

/// Removes an order from the running set when its task ends, however.
struct Running(Arc<SagaShared>, u64);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.remove(&self.1);
    }
}

/// Steps that may give up and compensate. Committing is past the point of
/// no return (`CommitStarted` is recorded first and blocks cancellation):
/// like the compensation steps, it is retried until it is done.
fn may_compensate(step: &Step) -> bool {
    matches!(step, Step::ValidateUser | Step::Reserve | Step::Charge)
}

fn classify(error: CallError<ShopError>) -> Outcome {
    match error {
        CallError::Unavailable {
            reason: UnavailableReason::ShuttingDown,
            ..
        } => Outcome::Stop,
        CallError::Service {
            error: ShopError::Rejected { reason },
            ..
        } => Outcome::Record(OrderEvent::Compensating { reason }),
        CallError::Service {
            error:
                error @ (ShopError::NotFound { .. }
                | ShopError::Conflict { .. }
                | ShopError::Invalid { .. }),
            ..
        } => Outcome::Record(OrderEvent::Compensating {
            reason: error.to_string(),
        }),
        other => Outcome::Retry(other.to_string()),
    }
}

impl Sagas {
    pub(crate) fn new(
        store: OrdersStore,
        router: Router,
        users: UserShards,
        kick: Kick,
        shared: Arc<SagaShared>,
        stop: CancellationToken,
        tasks: TaskTracker,
    ) -> Self {
        Self {
            store,
            router,
            users,
            kick,
            shared,
            stop,
            tasks,
        }
    }

    /// Starts the saga of `id` unless it is running already.
    pub(crate) fn ensure(&self, id: u64) {
        if self.stop.is_cancelled() || self.shared.running.insert(id, ()).is_some() {
            return;
        }
        let this = self.clone();
        self.tasks.spawn(async move {
            let _running = Running(Arc::clone(&this.shared), id);
            tokio::select! {
                () = this.run(id) => {}
                () = this.stop.cancelled() => {}
            }
        });
    }

    /// Starts the saga of every pending order.
    pub(crate) fn resume_pending(&self) {
        match self.store.pending() {
            Ok(ids) => {
                if !ids.is_empty() {
                    info!(count = ids.len(), "resuming pending order sagas");
                }
                for id in ids {
                    self.ensure(id);
                }
            }
            Err(err) => warn!(error = %err, "cannot list pending orders"),
        }
    }

    async fn run(&self, id: u64) {
        let mut failures = 0_u32;
        // The state this task's last append left the order in: the next
        // step starts from it instead of folding the stream again. Any
        // other writer (a cancel) makes the next append conflict, and a
        // conflict, a failure or a retry folds the stream afresh.
        let mut recorded: Option<OrderState> = None;
        loop {
            let state = match recorded.take().map_or_else(|| self.store.load(id), Ok) {
                Ok(state) => state,
                Err(err) => {
                    // A store error is not the saga's end: retry, or the
                    // order would stay pending until the next restart.
                    failures += 1;
                    warn!(order = id, error = %err, "cannot load order; retrying");
                    tokio::time::sleep(retry_delay(failures)).await;
                    continue;
                }
            };
            let Some(step) = state.next_step() else {
                return;
            };
            let event = match self.execute(&state, id, &step).await {
                Outcome::Record(event) => event,
                Outcome::Stop => return,
                Outcome::Retry(reason) => {
                    failures += 1;
                    if may_compensate(&step) && failures >= FORWARD_ATTEMPTS_MAX {
                        OrderEvent::Compensating {
                            reason: format!("{step:?} failed {failures} times: {reason}"),
                        }
                    } else {
                        self.note_retry(id, &step, &reason, failures);
                        tokio::time::sleep(retry_delay(failures)).await;
                        continue;
                    }
                }
            };
            // Whether the reservation right after the user check failed:
            // that failure counts as the reservation's first, with its
            // backoff, once the check is recorded.
            let mut reserve_failed = false;
            let events = match event {
                OrderEvent::UserValidated => {
                    match self.reserve_after_validation(&state, id).await {
                        AfterCheck::Append(events) => events,
                        AfterCheck::ReserveFailed => {
                            reserve_failed = true;
                            vec![OrderEvent::UserValidated]
                        }
                        AfterCheck::Stop => return,
                    }
                }
                // The steps after it that call no one go in the same append.
                event => state.with_local_steps(event),
            };
            match self.store.record(id, &state, &events).await {
                Ok(next) => {
                    failures = u32::from(reserve_failed);
                    if reserve_failed {
                        tokio::time::sleep(retry_delay(failures)).await;
                    }
                    if next.outcome.is_some() {
                        self.shared.finished(next.status());
                        self.kick.kick();
                        info!(
                            order = id,
                            status = next.status().as_str(),
                            "order saga finished"
                        );
                    }
                    recorded = Some(next);
                }
                Err(RecordError::Conflict) => {}
                Err(RecordError::Failed(err)) => {
                    failures += 1;
                    warn!(order = id, error = %err, "cannot record saga progress; retrying");
                    tokio::time::sleep(retry_delay(failures)).await;
                }
            }
        }
    }

    /// What follows a successful user check. Checking a user changes
    /// nothing anywhere, so its outcome need not be durable before the
    /// reservation: the reservation runs at once and both outcomes go into
    /// one append. Unless the order moved on meanwhile (a client's cancel
    /// landed during the check): then the check is appended alone, the
    /// append conflicts, and the next round starts from the cancel, having
    /// reserved nothing it must release.
    async fn reserve_after_validation(&self, state: &OrderState, id: u64) -> AfterCheck {
        let mut validated = state.clone();
        validated.apply(&OrderEvent::UserValidated);
        let Some(step @ Step::Reserve) = validated.next_step() else {
            return AfterCheck::Append(state.with_local_steps(OrderEvent::UserValidated));
        };
        // A read of the stream's head, not a fold.
        if !matches!(self.store.version(id), Ok(version) if version == state.version) {
            return AfterCheck::Append(vec![OrderEvent::UserValidated]);
        }
        match self.execute(&validated, id, &step).await {
            Outcome::Record(reserved) => {
                let mut events = vec![OrderEvent::UserValidated];
                events.extend(validated.with_local_steps(reserved));
                AfterCheck::Append(events)
            }
            Outcome::Retry(reason) => {
                self.note_retry(id, &step, &reason, 1);
                AfterCheck::ReserveFailed
            }
            Outcome::Stop => AfterCheck::Stop,
        }
    }

    /// Counts and logs the `failures`-th failed attempt of `step`, which is
    /// to be retried.
    fn note_retry(&self, id: u64, step: &Step, reason: &str, failures: u32) {
        self.shared.step_retries.fetch_add(1, Ordering::Relaxed);
        warn!(order = id, ?step, %reason, failures, "saga step failed; retrying");
    }

    async fn execute(&self, state: &OrderState, id: u64, step: &Step) -> Outcome {
        // Every step of an order's saga carries one correlation id,
        // `order-<id>`, so the services' logs of one saga read together.
        let ctx = self
            .router
            .context()
            .with_correlation_id(CorrelationId::external(&format!("order-{id}")))
            .with_deadline(tokio::time::Instant::now() + STEP_TIMEOUT);
        let router = &self.router;
        let done = |event| Ok::<_, CallError<ShopError>>(Outcome::Record(event));
        let result = match step {
            Step::ValidateUser => {
                call_users(router, self.users, ctx, UsersRequest::Get(state.user_id))
                    .await
                    .and_then(|_| done(OrderEvent::UserValidated))
            }
            Step::Reserve => router
                .call_with::<Products>(
                    ctx,
                    ProductsRequest::Reserve {
                        order_id: id,
                        items: state.items.clone(),
                    },
                )
                .await
                .and_then(|_| done(OrderEvent::StockReserved)),
            Step::Charge => router
                .call_with::<Payments>(
                    ctx,
                    PaymentsRequest::Charge {
                        order_id: id,
                        amount_cents: state.total_cents,
                    },
                )
                .await
                .and_then(|response| match response {
                    PaymentsResponse::Payment(p) if p.status == PaymentStatus::Charged => {
                        done(OrderEvent::PaymentCharged)
                    }
                    _ => done(OrderEvent::Compensating {
                        reason: "the payment was refunded".to_owned(),
                    }),
                }),
            // The steps that call no one are usually appended with the step
            // before them (`with_local_steps`); they run here when a fold starts
            // at them: a client's cancel request, or an append lost to a crash.
            Step::StartCommit => done(OrderEvent::CommitStarted),
            Step::Commit => router
                .call_with::<Products>(ctx, ProductsRequest::Commit { order_id: id })
                .await
                .and_then(|_| done(OrderEvent::StockCommitted)),
            Step::Refund => router
                .call_with::<Payments>(ctx, PaymentsRequest::Refund { order_id: id })
                .await
                .and_then(|_| done(OrderEvent::PaymentRefunded)),
            Step::Release if crate::injected::active(crate::injected::InjectedBug::SkipRelease) => {
                done(OrderEvent::StockReleased)
            }
            Step::Release => router
                .call_with::<Products>(ctx, ProductsRequest::Release { order_id: id })
                .await
                .and_then(|_| done(OrderEvent::StockReleased)),
            Step::Complete => done(OrderEvent::Completed),
            Step::Compensate(reason) => done(OrderEvent::Compensating {
                reason: reason.clone(),
            }),
            Step::Cancel(reason) => done(OrderEvent::Cancelled {
                reason: reason.clone(),
            }),
        };
        match result {
            Ok(outcome) => outcome,
            // Commit and compensation must finish: their failures are
            // always retried.
            Err(error) if !may_compensate(step) => match classify(error) {
                Outcome::Stop => Outcome::Stop,
                Outcome::Record(OrderEvent::Compensating { reason }) | Outcome::Retry(reason) => {
                    Outcome::Retry(reason)
                }
                Outcome::Record(other) => Outcome::Retry(format!("{other:?}")),
            },
            Err(error) => classify(error),
        }
    }
}

fn retry_delay(failures: u32) -> Duration {
    let shift = failures.saturating_sub(1).min(16);
    RETRY_DELAY_INITIAL
        .checked_mul(1 << shift)
        .map_or(RETRY_DELAY_MAX, |d| d.min(RETRY_DELAY_MAX))
}
