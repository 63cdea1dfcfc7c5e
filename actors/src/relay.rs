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

/// Entries published per pass.
const BATCH_LEN_MAX: usize = 64;
/// A pass runs at least this often even without a kick, so entries left by
/// a crash or a failed publish are retried.
const IDLE_PASS_INTERVAL: Duration = Duration::from_millis(250);
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
}

/// What a relay is started with.
#[derive(Debug, Clone)]
pub(crate) struct RelayArgs {
    /// Prefix of the event ids: the owning service's name.
    pub(crate) service: &'static str,
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
    let args = RelayArgs {
        service: S::NAME,
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
    async fn pass(args: &RelayArgs) -> Result<bool, ActorProcessingErr> {
        let entries = args.outbox.drain(BATCH_LEN_MAX).await?;
        let full = entries.len() == BATCH_LEN_MAX;
        let mut confirmed = Vec::with_capacity(entries.len());
        for entry in entries {
            let event = ShopEvent {
                id: format!("{}:{}", args.service, entry.seq),
                kind: entry.event,
            };
            let ctx = args
                .router
                .context()
                .with_deadline(tokio::time::Instant::now() + PUBLISH_TIMEOUT);
            match args
                .router
                .publish_confirmed::<ShopEvents>(&ctx, event)
                .await
            {
                Ok(_) => confirmed.push(entry.seq),
                Err(err) => {
                    warn!(service = args.service, seq = entry.seq, error = %err, "event not confirmed; will retry");
                    break;
                }
            }
        }
        let progressed = !confirmed.is_empty();
        if progressed {
            args.outbox.confirm(&confirmed).await?;
            debug!(
                service = args.service,
                count = confirmed.len(),
                "events relayed"
            );
        }
        Ok(full && progressed)
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
                warn!(service = args.service, error = %err, "relay pass failed");
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
                let _ = tokio::time::timeout(IDLE_PASS_INTERVAL, kick.0.notified()).await;
                let _ = myself.send_message(RelayMsg::Pass);
            });
        }
        Ok(())
    }
}
