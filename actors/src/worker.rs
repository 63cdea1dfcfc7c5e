//! Background workers run as supervised actors: the outbox relay and the
//! webhook delivery. A worker does its job in passes, one per message; after
//! a pass that may have left work the next runs at once, otherwise after a
//! kick (a write that gave it work) or a bounded wait, so nothing is left
//! behind when a kick is missed (a crash, a failed pass).

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::Notify;

/// Wakes a worker as soon as a write gave it something to do.
#[derive(Debug, Clone, Default)]
pub(crate) struct Kick(Arc<Notify>);

impl Kick {
    pub(crate) fn kick(&self) {
        self.0.notify_one();
    }

    /// Resolves at the next kick (or at once, for a kick nobody waited for).
    async fn kicked(&self) {
        self.0.notified().await;
    }
}

/// When a worker's next pass runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// At once: the pass may have left work.
    Now,
    /// After a kick, or `at_most` without one; after a kick, `linger`
    /// more, so that a burst of writes is taken in one pass.
    Wait { at_most: Duration, linger: Duration },
}

/// A worker's job.
pub(crate) trait Worker: Clone + Send + Sync + 'static {
    /// One pass; says when the next should run. Handles its own errors
    /// (a failed pass is retried by a later one).
    fn pass(&mut self) -> impl Future<Output = Next> + Send;

    /// What wakes the worker.
    fn kick(&self) -> &Kick;
}

/// The actor that runs a [`Worker`]'s passes.
#[derive(Debug)]
pub(crate) struct WorkerActor<W>(PhantomData<fn() -> W>);

impl<W> WorkerActor<W> {
    pub(crate) fn new() -> Self {
        Self(PhantomData)
    }
}

/// The one message: run a pass.
#[derive(Debug)]
pub(crate) struct Pass;

impl<W: Worker> Actor for WorkerActor<W> {
    type Msg = Pass;
    type State = W;
    type Arguments = W;

    async fn pre_start(&self, myself: ActorRef<Pass>, worker: W) -> Result<W, ActorProcessingErr> {
        myself.send_message(Pass)?;
        Ok(worker)
    }

    async fn handle(
        &self,
        myself: ActorRef<Pass>,
        Pass: Pass,
        worker: &mut W,
    ) -> Result<(), ActorProcessingErr> {
        match worker.pass().await {
            Next::Now => myself.send_message(Pass)?,
            Next::Wait { at_most, linger } => {
                // Off the actor, so a stop or kill is never delayed by it.
                let kick = worker.kick().clone();
                tokio::spawn(async move {
                    if tokio::time::timeout(at_most, kick.kicked()).await.is_ok() {
                        tokio::time::sleep(linger).await;
                    }
                    let _ = myself.send_message(Pass);
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    /// Counts passes; asks for `now` more at once, then waits.
    #[derive(Debug, Clone)]
    struct Counter {
        passes: Arc<AtomicU32>,
        now: u32,
        kick: Kick,
    }

    impl Worker for Counter {
        async fn pass(&mut self) -> Next {
            self.passes.fetch_add(1, Ordering::SeqCst);
            if self.now > 0 {
                self.now -= 1;
                return Next::Now;
            }
            Next::Wait {
                at_most: Duration::from_secs(60),
                linger: Duration::from_millis(10),
            }
        }

        fn kick(&self) -> &Kick {
            &self.kick
        }
    }

    async fn until(passes: &AtomicU32, n: u32) {
        while passes.load(Ordering::SeqCst) < n {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn passes_run_back_to_back_then_on_a_kick_or_after_the_wait() {
        let passes = Arc::new(AtomicU32::new(0));
        let kick = Kick::default();
        let worker = Counter {
            passes: Arc::clone(&passes),
            now: 2,
            kick: kick.clone(),
        };
        let (actor, handle) = Actor::spawn(None, WorkerActor::<Counter>::new(), worker)
            .await
            .unwrap();
        // The first pass and the two it asked for at once.
        until(&passes, 3).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(passes.load(Ordering::SeqCst), 3);
        // A kick brings the next pass, after the linger and long before
        // the wait's bound.
        let kicked_at = tokio::time::Instant::now();
        kick.kick();
        tokio::time::timeout(Duration::from_secs(1), until(&passes, 4))
            .await
            .unwrap();
        assert!(kicked_at.elapsed() >= Duration::from_millis(10));
        // Without one, the wait's bound does.
        let waiting_from = tokio::time::Instant::now();
        until(&passes, 5).await;
        assert!(waiting_from.elapsed() >= Duration::from_secs(59));
        actor.stop(None);
        handle.await.unwrap();
    }
}
