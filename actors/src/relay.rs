//! The outbox relay: moves a service's outbox to the event topic, at least
//! once. An entry leaves the outbox only after every subscriber confirmed it
//! (`Router::publish_confirmed`); subscribers dedupe on the event id.

use std::sync::Arc;
use std::time::Duration;

use bulwark_runtime::{ChildSpec, Restart, Router, Service, ServiceTree};
use bulwark_storage::Outbox;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::Notify;
use tracing::{debug, warn};

use crate::common::{EventKind, ShopEvent, ShopEvents};

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

/// Wakes a relay as soon as a write put something in its outbox.
#[derive(Debug, Clone, Default)]
pub(crate) struct Kick(Arc<Notify>);

impl Kick {
    pub(crate) fn kick(&self) {
        self.0.notify_one();
    }

    /// Resolves at the next kick (or at once, for a kick nobody waited for).
    pub(crate) async fn kicked(&self) {
        self.0.notified().await;
    }
}

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
        (RelayActor, args.clone())
    }))
}

/// The relay actor: one pass per message, then it schedules the next.
#[derive(Debug)]
pub(crate) struct RelayActor;

#[derive(Debug)]
pub(crate) enum RelayMsg {
    Pass,
}

impl RelayActor {
    /// Publishes one drained batch as one event batch and, once every
    /// subscriber acknowledged it, removes it from the outbox. On failure
    /// the batch stays for the next pass (a subscriber that got it twice
    /// dedupes by event id). Returns whether a full batch went out (there
    /// may be more).
    async fn pass(args: &RelayArgs) -> Result<bool, ActorProcessingErr> {
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

impl Actor for RelayActor {
    type Msg = RelayMsg;
    type State = RelayArgs;
    type Arguments = RelayArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<RelayMsg>,
        args: RelayArgs,
    ) -> Result<RelayArgs, ActorProcessingErr> {
        myself.send_message(RelayMsg::Pass)?;
        Ok(args)
    }

    async fn handle(
        &self,
        myself: ActorRef<RelayMsg>,
        RelayMsg::Pass: RelayMsg,
        args: &mut RelayArgs,
    ) -> Result<(), ActorProcessingErr> {
        let more = match Self::pass(args).await {
            Ok(more) => more,
            Err(err) => {
                warn!(service = %args.service, error = %err, "relay pass failed");
                tokio::time::sleep(RETRY_DELAY).await;
                false
            }
        };
        if more {
            myself.send_message(RelayMsg::Pass)?;
        } else {
            // Wait for a kick or the idle interval, off the actor so a stop
            // or kill is never delayed by it.
            let kick = args.kick.clone();
            tokio::spawn(async move {
                if tokio::time::timeout(IDLE_PASS_INTERVAL, kick.kicked())
                    .await
                    .is_ok()
                {
                    // Let the writes that follow the first one join its batch.
                    tokio::time::sleep(KICK_LINGER).await;
                }
                let _ = myself.send_message(RelayMsg::Pass);
            });
        }
        Ok(())
    }
}
