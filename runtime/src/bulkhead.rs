//! Per-service bulkheads: two counted bounds checked without waiting, so a
//! flooded service turns extra callers away at once instead of queueing
//! them without bound, and never starves another service.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::error::OverloadedBound;

/// A counter with a ceiling. `try_acquire` never waits.
#[derive(Debug)]
struct Gauge {
    value: AtomicUsize,
    max: usize,
}

impl Gauge {
    fn try_acquire(&self) -> bool {
        // Optimistic increment: cheaper than a CAS loop on the hot path, and
        // the transient overshoot is undone before anyone is admitted on it.
        if self.value.fetch_add(1, Ordering::AcqRel) >= self.max {
            self.value.fetch_sub(1, Ordering::AcqRel);
            false
        } else {
            true
        }
    }

    fn release(&self) {
        self.value.fetch_sub(1, Ordering::AcqRel);
    }

    fn get(&self) -> usize {
        self.value.load(Ordering::Acquire).min(self.max)
    }
}

/// The two bounds of one service.
#[derive(Debug)]
pub(crate) struct Bulkhead {
    /// Messages enqueued and not yet taken out by the service's entry actor:
    /// the mailbox bound (ractor's own mailbox is unbounded).
    mailbox: Gauge,
    /// Calls sent and not yet answered, however the service processes them
    /// (in its actor or in tasks it spawns).
    in_flight: Gauge,
}

impl Bulkhead {
    pub(crate) fn new(mailbox_len_max: usize, in_flight_max: usize) -> Arc<Self> {
        Arc::new(Self {
            mailbox: Gauge {
                value: AtomicUsize::new(0),
                max: mailbox_len_max,
            },
            in_flight: Gauge {
                value: AtomicUsize::new(0),
                max: in_flight_max,
            },
        })
    }

    pub(crate) fn try_in_flight(&self) -> Result<InFlightPermit<'_>, OverloadedBound> {
        if self.in_flight.try_acquire() {
            Ok(InFlightPermit(&self.in_flight))
        } else {
            Err(OverloadedBound::InFlight)
        }
    }

    pub(crate) fn try_mailbox(self: &Arc<Self>) -> Result<MailboxPermit, OverloadedBound> {
        if self.mailbox.try_acquire() {
            Ok(MailboxPermit(Some(Arc::clone(self))))
        } else {
            Err(OverloadedBound::Mailbox)
        }
    }

    pub(crate) fn mailbox_len(&self) -> usize {
        self.mailbox.get()
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.get()
    }
}

/// Held by the caller from send until the reply (or error) arrives.
#[derive(Debug)]
pub(crate) struct InFlightPermit<'a>(&'a Gauge);

impl Drop for InFlightPermit<'_> {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// Travels inside a message; released when the entry actor takes the
/// message out of its envelope, or when the message is dropped unread.
#[derive(Debug)]
pub(crate) struct MailboxPermit(Option<Arc<Bulkhead>>);

impl MailboxPermit {
    pub(crate) fn release(&mut self) {
        if let Some(b) = self.0.take() {
            b.mailbox.release();
        }
    }
}

impl Drop for MailboxPermit {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_admit_up_to_their_max_and_recover_on_release() {
        let b = Bulkhead::new(2, 1);
        let m1 = b.try_mailbox().unwrap();
        let _m2 = b.try_mailbox().unwrap();
        assert_eq!(b.try_mailbox().err(), Some(OverloadedBound::Mailbox));
        drop(m1);
        assert!(b.try_mailbox().is_ok());
        let f = b.try_in_flight().unwrap();
        assert_eq!(b.try_in_flight().err(), Some(OverloadedBound::InFlight));
        assert_eq!(b.in_flight(), 1);
        drop(f);
        assert_eq!(b.in_flight(), 0);
    }
}
