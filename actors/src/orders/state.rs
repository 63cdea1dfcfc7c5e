//! An order's event stream, the state folded from it, and the saga's next
//! step as a pure function of that state.

use serde::{Deserialize, Serialize};

use super::messages::{Order, OrderStatus};
use crate::common::LineItem;

/// What happened to an order. The stream is the source of truth; the read
/// model is derived from it in the same transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum OrderEvent {
    Placed {
        user_id: u64,
        items: Vec<LineItem>,
        total_cents: u64,
        created_at_ms: u64,
    },
    UserValidated,
    StockReserved,
    PaymentCharged,
    /// Recorded before the commit call: from here the order completes, and a
    /// cancel request is refused (it could race the commit).
    CommitStarted,
    StockCommitted,
    Completed,
    CancelRequested {
        reason: String,
    },
    Compensating {
        reason: String,
    },
    PaymentRefunded,
    StockReleased,
    Cancelled {
        reason: String,
    },
}

impl OrderEvent {
    /// The event's name in the API (`OrderEventRecord::name`).
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Placed { .. } => "placed",
            Self::UserValidated => "user_validated",
            Self::StockReserved => "stock_reserved",
            Self::PaymentCharged => "payment_charged",
            Self::CommitStarted => "commit_started",
            Self::StockCommitted => "stock_committed",
            Self::Completed => "completed",
            Self::CancelRequested { .. } => "cancel_requested",
            Self::Compensating { .. } => "compensating",
            Self::PaymentRefunded => "payment_refunded",
            Self::StockReleased => "stock_released",
            Self::Cancelled { .. } => "cancelled",
        }
    }

    /// The reason it carries, if any.
    pub(crate) fn reason(&self) -> Option<&str> {
        match self {
            Self::CancelRequested { reason }
            | Self::Compensating { reason }
            | Self::Cancelled { reason } => Some(reason),
            _ => None,
        }
    }
}

/// The saga's next action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    ValidateUser,
    Reserve,
    Charge,
    StartCommit,
    Commit,
    Complete,
    /// Stop going forward and undo, for this reason.
    Compensate(String),
    Refund,
    Release,
    Cancel(String),
}

/// An order as folded from its events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct OrderState {
    pub(crate) user_id: u64,
    pub(crate) items: Vec<LineItem>,
    pub(crate) total_cents: u64,
    pub(crate) created_at_ms: u64,
    pub(crate) user_validated: bool,
    pub(crate) reserved: bool,
    pub(crate) charged: bool,
    pub(crate) commit_started: bool,
    pub(crate) committed: bool,
    pub(crate) cancel_requested: Option<String>,
    pub(crate) compensating: Option<String>,
    pub(crate) refunded: bool,
    pub(crate) released: bool,
    pub(crate) outcome: Option<(OrderStatus, Option<String>)>,
    /// Events applied so far.
    pub(crate) version: u64,
}

impl OrderState {
    pub(crate) fn apply(&mut self, event: &OrderEvent) {
        self.version += 1;
        match event {
            OrderEvent::Placed {
                user_id,
                items,
                total_cents,
                created_at_ms,
            } => {
                self.user_id = *user_id;
                self.items.clone_from(items);
                self.total_cents = *total_cents;
                self.created_at_ms = *created_at_ms;
            }
            OrderEvent::UserValidated => self.user_validated = true,
            OrderEvent::StockReserved => self.reserved = true,
            OrderEvent::PaymentCharged => self.charged = true,
            OrderEvent::CommitStarted => self.commit_started = true,
            OrderEvent::StockCommitted => self.committed = true,
            OrderEvent::Completed => self.outcome = Some((OrderStatus::Completed, None)),
            OrderEvent::CancelRequested { reason } => {
                self.cancel_requested = Some(reason.clone());
            }
            OrderEvent::Compensating { reason } => self.compensating = Some(reason.clone()),
            OrderEvent::PaymentRefunded => self.refunded = true,
            OrderEvent::StockReleased => self.released = true,
            OrderEvent::Cancelled { reason } => {
                self.outcome = Some((OrderStatus::Cancelled, Some(reason.clone())));
            }
        }
    }

    /// `event`, followed by the events of the steps that come after it and
    /// call no one (start the commit, complete, compensate, cancel): what
    /// the saga would append one write at a time, appended as one. Each is
    /// decided by the state alone, and the append's expected version proves
    /// that state current, so nothing changes but the number of writes.
    pub(crate) fn with_local_steps(&self, event: OrderEvent) -> Vec<OrderEvent> {
        let mut next = self.clone();
        next.apply(&event);
        let mut events = vec![event];
        loop {
            let local = match next.next_step() {
                Some(Step::StartCommit) => OrderEvent::CommitStarted,
                Some(Step::Complete) => OrderEvent::Completed,
                Some(Step::Compensate(reason)) => OrderEvent::Compensating { reason },
                Some(Step::Cancel(reason)) => OrderEvent::Cancelled { reason },
                _ => return events,
            };
            next.apply(&local);
            events.push(local);
        }
    }

    pub(crate) fn fold<'a>(events: impl IntoIterator<Item = &'a OrderEvent>) -> Self {
        let mut state = Self::default();
        for event in events {
            state.apply(event);
        }
        state
    }

    pub(crate) fn status(&self) -> OrderStatus {
        self.outcome
            .as_ref()
            .map_or(OrderStatus::Pending, |(status, _)| *status)
    }

    pub(crate) fn view(&self, id: u64) -> Order {
        Order {
            id,
            user_id: self.user_id,
            items: self.items.clone(),
            total_cents: self.total_cents,
            status: self.status(),
            reason: self.outcome.as_ref().and_then(|(_, r)| r.clone()),
            created_at_ms: self.created_at_ms,
            version: self.version,
        }
    }

    /// Whether a cancel request can still be honoured: pending, and the
    /// commit not yet started (past that point the order completes).
    pub(crate) fn cancellable(&self) -> bool {
        self.outcome.is_none() && !self.commit_started && self.cancel_requested.is_none()
    }

    /// The saga's next step; `None` once the order is completed or
    /// cancelled. Compensation runs in reverse: refund, then release. Both
    /// are idempotent and safe when the forward step never happened (a
    /// refund with no charge voids the order; a release with no reservation
    /// blocks a late one), so they run whatever the forward steps reached —
    /// a step that timed out may still have been applied.
    pub(crate) fn next_step(&self) -> Option<Step> {
        if self.outcome.is_some() || self.version == 0 {
            return None;
        }
        if let Some(reason) = &self.compensating {
            return Some(if !self.refunded {
                Step::Refund
            } else if !self.released {
                Step::Release
            } else {
                Step::Cancel(reason.clone())
            });
        }
        if let Some(reason) = &self.cancel_requested
            && !self.commit_started
        {
            return Some(Step::Compensate(reason.clone()));
        }
        Some(if !self.user_validated {
            Step::ValidateUser
        } else if !self.reserved {
            Step::Reserve
        } else if !self.charged {
            Step::Charge
        } else if !self.commit_started {
            Step::StartCommit
        } else if !self.committed {
            Step::Commit
        } else {
            Step::Complete
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placed() -> OrderEvent {
        OrderEvent::Placed {
            user_id: 1,
            items: vec![LineItem {
                product_id: 2,
                quantity: 3,
                price_cents: 100,
            }],
            total_cents: 300,
            created_at_ms: 0,
        }
    }

    #[test]
    fn the_happy_path_goes_forward_step_by_step() {
        let mut state = OrderState::fold(&[placed()]);
        let expected = [
            (Step::ValidateUser, OrderEvent::UserValidated),
            (Step::Reserve, OrderEvent::StockReserved),
            (Step::Charge, OrderEvent::PaymentCharged),
            (Step::StartCommit, OrderEvent::CommitStarted),
            (Step::Commit, OrderEvent::StockCommitted),
            (Step::Complete, OrderEvent::Completed),
        ];
        for (step, event) in expected {
            assert_eq!(state.next_step(), Some(step));
            state.apply(&event);
        }
        assert_eq!(state.next_step(), None);
        assert_eq!(state.status(), OrderStatus::Completed);
        assert_eq!(state.version, 7);
    }

    #[test]
    fn the_steps_that_call_no_one_are_appended_with_the_event_before_them() {
        let reserved = OrderState::fold(&[
            placed(),
            OrderEvent::UserValidated,
            OrderEvent::StockReserved,
        ]);
        assert_eq!(
            reserved.with_local_steps(OrderEvent::PaymentCharged),
            [OrderEvent::PaymentCharged, OrderEvent::CommitStarted]
        );
        let mut committing = reserved;
        for event in [OrderEvent::PaymentCharged, OrderEvent::CommitStarted] {
            committing.apply(&event);
        }
        assert_eq!(
            committing.with_local_steps(OrderEvent::StockCommitted),
            [OrderEvent::StockCommitted, OrderEvent::Completed]
        );
        // A step that calls a service ends the run.
        assert_eq!(
            OrderState::fold(&[placed()]).with_local_steps(OrderEvent::UserValidated),
            [OrderEvent::UserValidated]
        );
        // A cancel request already folded in turns into compensation at once.
        let mut cancelling = OrderState::fold(&[placed(), OrderEvent::UserValidated]);
        cancelling.apply(&OrderEvent::CancelRequested {
            reason: "changed my mind".to_owned(),
        });
        assert_eq!(
            cancelling.with_local_steps(OrderEvent::StockReserved),
            [
                OrderEvent::StockReserved,
                OrderEvent::Compensating {
                    reason: "changed my mind".to_owned()
                }
            ]
        );
        // The last compensation is followed by the cancel.
        let mut releasing = cancelling.clone();
        for event in [
            OrderEvent::StockReserved,
            OrderEvent::Compensating {
                reason: "changed my mind".to_owned(),
            },
            OrderEvent::PaymentRefunded,
        ] {
            releasing.apply(&event);
        }
        assert_eq!(
            releasing.with_local_steps(OrderEvent::StockReleased),
            [
                OrderEvent::StockReleased,
                OrderEvent::Cancelled {
                    reason: "changed my mind".to_owned()
                }
            ]
        );
    }

    #[test]
    fn compensation_refunds_then_releases_then_cancels() {
        let mut state = OrderState::fold(&[
            placed(),
            OrderEvent::UserValidated,
            OrderEvent::StockReserved,
            OrderEvent::Compensating {
                reason: "declined".into(),
            },
        ]);
        assert_eq!(state.next_step(), Some(Step::Refund));
        state.apply(&OrderEvent::PaymentRefunded);
        assert_eq!(state.next_step(), Some(Step::Release));
        state.apply(&OrderEvent::StockReleased);
        assert_eq!(state.next_step(), Some(Step::Cancel("declined".into())));
        state.apply(&OrderEvent::Cancelled {
            reason: "declined".into(),
        });
        assert_eq!(state.next_step(), None);
        assert_eq!(state.view(9).reason.as_deref(), Some("declined"));
    }

    #[test]
    fn a_cancel_request_is_honoured_only_before_the_commit_starts() {
        let mut state = OrderState::fold(&[placed(), OrderEvent::UserValidated]);
        assert!(state.cancellable());
        state.apply(&OrderEvent::CancelRequested {
            reason: "by user".into(),
        });
        assert_eq!(state.next_step(), Some(Step::Compensate("by user".into())));
        let committing = OrderState::fold(&[
            placed(),
            OrderEvent::UserValidated,
            OrderEvent::StockReserved,
            OrderEvent::PaymentCharged,
            OrderEvent::CommitStarted,
        ]);
        assert!(!committing.cancellable());
        // Even a cancel recorded concurrently does not turn it back.
        let mut raced = committing;
        raced.apply(&OrderEvent::CancelRequested {
            reason: "late".into(),
        });
        assert_eq!(raced.next_step(), Some(Step::Commit));
    }
}
