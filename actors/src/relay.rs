//! The outbox relay: moves a service's outbox to the event topic, at least
//! once. An entry leaves the outbox only after every subscriber confirmed it
//! (`Router::publish_confirmed`); subscribers dedupe on the event id.

use std::sync::Arc;
use std::time::Duration;

use bulwark_runtime::{ChildSpec, Restart, Router, Service, ServiceTree};
use bulwark_storage::Outbox;
use ractor::ActorProcessingErr;
use tracing::{debug, warn};

use crate::common::{EventKind, ShopEvent, ShopEvents};
use crate::worker::{Kick, Next, Worker, WorkerActor};

/// Entries published per pass (one event batch); well under the store's
/// drain bound and small enough that the subscriber's one write stays under
/// the store's write-set limit.
const BATCH_LEN_MAX: usize = 128;
/// A pass runs at least this often even without a kick, so entries left by
/// a crash or a failed publish are retried.
const IDLE_PASS_INTERVAL: Duration = Duration::from_millis(250);
/// After a kick, the relay waits this long before draining, so that a burst
/// of writes leaves as one batch (one subscriber write, one confirm) instead
/// of one pass per write. Bounds the extra delivery latency of an event.
const KICK_LINGER: Duration = Duration::from_millis(10);
/// Pause after a failed publish before the next try.
const RETRY_DELAY: Duration = Duration::from_millis(100);
/// Deadline of one confirmed publish.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

/// What a relay is started with.
#[derive(Debug, Clone)]
pub(crate) struct RelayArgs {
    /// Prefix of the event ids: the owning service instance's name (a
    /// shard's own, so two shards' ids never collide).
    pub(crate) service: Arc<str>,
    pub(crate) outbox: Outbox<EventKind>,
    pub(crate) router: Router,
    pub(crate) kick: Kick,
}

/// Adds to `tree` the relay child that moves `outbox` to the event topic;
/// `kick` wakes it after each write that fills the outbox.
pub(crate) fn with_relay<S: Service>(
    tree: ServiceTree<S>,
    outbox: Outbox<EventKind>,
    router: Router,
    kick: Kick,
) -> ServiceTree<S> {
    with_relay_as(tree, Arc::from(S::NAME), outbox, router, kick)
}

/// [`with_relay`] for a service instance named `source` (a shard), whose
/// event ids start with that name.
pub(crate) fn with_relay_as<S: Service>(
    tree: ServiceTree<S>,
    source: Arc<str>,
    outbox: Outbox<EventKind>,
    router: Router,
    kick: Kick,
) -> ServiceTree<S> {
    let args = RelayArgs {
        service: source,
        outbox,
        router,
        kick,
    };
    tree.child(ChildSpec::actor("relay", Restart::Permanent, move || {
        (WorkerActor::<RelayArgs>::new(), args.clone())
    }))
}

impl RelayArgs {
    /// Publishes one drained batch as one event batch and, once every
    /// subscriber acknowledged it, removes it from the outbox. On failure
    /// the batch stays for the next pass (a subscriber that got it twice
    /// dedupes by event id). Returns whether a full batch went out (there
    /// may be more).
    async fn relay_once(args: &RelayArgs) -> Result<bool, ActorProcessingErr> {
        let entries = args.outbox.drain(BATCH_LEN_MAX).await?;
        if entries.is_empty() {
            return Ok(false);
        }
        let full = entries.len() == BATCH_LEN_MAX;
        let seqs: Vec<u64> = entries.iter().map(|e| e.seq).collect();
        let batch: Vec<ShopEvent> = entries
            .into_iter()
            .map(|entry| ShopEvent {
                id: format!("{}:{}", args.service, entry.seq),
                kind: entry.event,
            })
            .collect();
        let ctx = args
            .router
            .context()
            .with_deadline(tokio::time::Instant::now() + PUBLISH_TIMEOUT);
        match args
            .router
            .publish_confirmed::<ShopEvents>(&ctx, batch)
            .await
        {
            // Nobody subscribed (yet): keep the events rather than confirm
            // them to no one.
            Ok(0) => {
                warn!(
                    service = %args.service,
                    count = seqs.len(),
                    "no subscriber for events; will retry"
                );
                tokio::time::sleep(RETRY_DELAY).await;
                Ok(false)
            }
            Ok(_) => {
                args.outbox.confirm(&seqs).await?;
                debug!(service = %args.service, count = seqs.len(), "events relayed");
                Ok(full)
            }
            Err(err) => {
                warn!(service = %args.service, count = seqs.len(), error = %err, "events not confirmed; will retry");
                tokio::time::sleep(RETRY_DELAY).await;
                Ok(false)
            }
        }
    }
}

impl Worker for RelayArgs {
    async fn pass(&mut self) -> Next {
        let more = match Self::relay_once(self).await {
            Ok(more) => more,
            Err(err) => {
                warn!(service = %self.service, error = %err, "relay pass failed");
                tokio::time::sleep(RETRY_DELAY).await;
                false
            }
        };
        if more {
            Next::Now
        } else {
            // Let the writes that follow a kick join its batch.
            Next::Wait {
                at_most: IDLE_PASS_INTERVAL,
                linger: KICK_LINGER,
            }
        }
    }

    fn kick(&self) -> &Kick {
        &self.kick
    }
}
