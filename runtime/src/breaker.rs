//! Circuit breakers, one per call target (service instance): a target whose
//! calls keep passing their deadline is not called for a while, so callers
//! fail fast instead of each waiting out its own timeout.
//!
//! - **Closed**: calls go through. Each one that passes its deadline counts;
//!   any other outcome (a reply, a domain error, a crash of the serving
//!   actor) resets the count — those answer quickly, which is what the
//!   breaker waits for. Only timeouts count: a crash, an overloaded bulkhead
//!   or an unreachable node already fails fast on its own.
//! - **Open**, after [`BreakerConfig::timeouts_to_open`] timeouts in a row:
//!   calls fail at once with `Unavailable { reason: CircuitOpen }`; nothing is
//!   sent, so the request was not applied.
//! - **Half-open**, once [`BreakerConfig::open_for`] has passed: one call goes
//!   through as a probe while the others still fail fast. An answer in time
//!   closes the circuit; another timeout opens it again for `open_for`.
//!
//! State is three atomics per target; the hot path (closed, no timeouts) is a
//! map lookup and two atomic loads.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use tokio::time::Instant;
use tracing::{info, warn};

/// When a target's circuit opens, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive timed-out calls to one target that open its circuit;
    /// 0 turns circuit breaking off.
    pub timeouts_to_open: u32,
    /// How long an open circuit fails calls fast before it lets a probe
    /// through.
    pub open_for: Duration,
}

/// Default for [`BreakerConfig::timeouts_to_open`].
pub const TIMEOUTS_TO_OPEN_DEFAULT: u32 = 5;
/// Default for [`BreakerConfig::open_for`].
pub const OPEN_FOR_DEFAULT: Duration = Duration::from_secs(5);

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            timeouts_to_open: TIMEOUTS_TO_OPEN_DEFAULT,
            open_for: OPEN_FOR_DEFAULT,
        }
    }
}

impl BreakerConfig {
    /// No circuit breaking: every call goes to its target.
    #[must_use]
    pub fn disabled() -> Self {
        Self {
            timeouts_to_open: 0,
            ..Self::default()
        }
    }
}

/// A target's circuit, as [`Router::circuits`](crate::Router::circuits)
/// reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Calls go through.
    Closed,
    /// Calls fail fast until the open period ends.
    Open,
    /// The open period ended: the next call is a probe.
    HalfOpen,
}

/// The breakers of one router.
#[derive(Debug)]
pub(crate) struct Breakers {
    config: BreakerConfig,
    /// Open-until times are kept as nanoseconds since this instant (0 =
    /// closed), so that they fit an atomic.
    epoch: Instant,
    targets: DashMap<Arc<str>, Arc<Breaker>>,
}

#[derive(Debug)]
struct Breaker {
    /// The target's name, for the log.
    target: Arc<str>,
    /// Timed-out calls in a row while closed.
    timeouts: AtomicU32,
    /// 0 while closed, else when the open period ends (see `Breakers::epoch`).
    open_until: AtomicU64,
    /// A half-open probe is in flight.
    probing: AtomicBool,
}

/// A call let through; tell it how the call ended with
/// [`Admission::finish`]. Dropped unfinished (the caller gave up), a probe
/// makes room for the next one.
#[derive(Debug)]
pub(crate) struct Admission {
    breaker: Option<Arc<Breaker>>,
    probe: bool,
    config: BreakerConfig,
    epoch: Instant,
}

impl Breakers {
    pub(crate) fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            epoch: Instant::now(),
            targets: DashMap::new(),
        }
    }

    /// Lets a call to `target` through, or refuses it (`Err`) while its
    /// circuit is open.
    pub(crate) fn admit(&self, target: &str) -> Result<Admission, ()> {
        let mut admission = Admission {
            breaker: None,
            probe: false,
            config: self.config,
            epoch: self.epoch,
        };
        if self.config.timeouts_to_open == 0 {
            return Ok(admission);
        }
        let breaker = match self.targets.get(target) {
            Some(breaker) => Arc::clone(&breaker),
            None => {
                let target: Arc<str> = Arc::from(target);
                let breaker = self.targets.entry(Arc::clone(&target)).or_insert_with(|| {
                    Arc::new(Breaker {
                        target,
                        timeouts: AtomicU32::new(0),
                        open_until: AtomicU64::new(0),
                        probing: AtomicBool::new(false),
                    })
                });
                Arc::clone(&breaker)
            }
        };
        let open_until = breaker.open_until.load(Ordering::Acquire);
        if open_until != 0 {
            if nanos_since(self.epoch) < open_until {
                return Err(());
            }
            // Half-open: one probe at a time.
            if breaker
                .probing
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                return Err(());
            }
            admission.probe = true;
        }
        admission.breaker = Some(breaker);
        Ok(admission)
    }

    /// Every target called so far and the state of its circuit, by name.
    pub(crate) fn states(&self) -> Vec<(Arc<str>, CircuitState)> {
        let now = nanos_since(self.epoch);
        let mut all: Vec<_> = self
            .targets
            .iter()
            .map(|entry| {
                let open_until = entry.open_until.load(Ordering::Acquire);
                let state = if open_until == 0 {
                    CircuitState::Closed
                } else if now < open_until {
                    CircuitState::Open
                } else {
                    CircuitState::HalfOpen
                };
                (Arc::clone(entry.key()), state)
            })
            .collect();
        all.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

impl Admission {
    /// Records how the call ended: `timed_out` when it passed its deadline.
    pub(crate) fn finish(mut self, timed_out: bool) {
        let Some(breaker) = self.breaker.take() else {
            return;
        };
        let target = &breaker.target;
        if timed_out {
            let timeouts = breaker.timeouts.fetch_add(1, Ordering::AcqRel) + 1;
            if self.probe || timeouts >= self.config.timeouts_to_open {
                // At least 1: 0 means closed.
                let until = (nanos_since(self.epoch) + duration_nanos(self.config.open_for)).max(1);
                let was = breaker.open_until.swap(until, Ordering::AcqRel);
                breaker.timeouts.store(0, Ordering::Release);
                if was == 0 {
                    warn!(
                        %target,
                        timeouts,
                        open_ms = self.config.open_for.as_millis(),
                        "circuit opened: calls fail fast"
                    );
                }
            }
        } else {
            if breaker.timeouts.load(Ordering::Acquire) != 0 {
                breaker.timeouts.store(0, Ordering::Release);
            }
            if self.probe {
                breaker.open_until.store(0, Ordering::Release);
                info!(%target, "circuit closed: the probe was answered in time");
            }
        }
        if self.probe {
            breaker.probing.store(false, Ordering::Release);
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        // Unfinished (the caller's future was dropped): free the probe slot.
        if let Some(breaker) = &self.breaker
            && self.probe
        {
            breaker.probing.store(false, Ordering::Release);
        }
    }
}

fn duration_nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX / 2)
}

fn nanos_since(epoch: Instant) -> u64 {
    duration_nanos(Instant::now().saturating_duration_since(epoch))
}
