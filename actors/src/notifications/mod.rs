//! The notifications service: one notification per shop event, by user,
//! and optionally their delivery to a webhook (`webhook.rs`).

mod actor;
pub(crate) mod messages;
mod store;
pub(crate) mod webhook;

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};

use bulwark_runtime::{
    ChildSpec, MetricSample, Restart, Service, ServiceContext, ServiceTree, Strategy, Topic,
};
use bulwark_storage::{Inbox, Store, StoreError};

use crate::common::{ShopError, ShopEvents, now_ms};
use crate::worker::Kick;
use crate::worker::WorkerActor;
use actor::{NotificationsActor, NotificationsState};
use messages::{NotificationsRequest, NotificationsResponse};
use store::NotificationsStore;
use webhook::{Webhook, WebhookConfig, WebhookStats};

/// How often applied event ids older than the retention are pruned.
const INBOX_PRUNE_INTERVAL: Duration = Duration::from_secs(600);

/// The notifications service.
#[derive(Debug)]
pub struct Notifications {
    store: NotificationsStore,
    webhook: Option<(Arc<WebhookConfig>, reqwest::Client)>,
    /// The webhook worker's counters, shared across its restarts.
    webhook_stats: Arc<WebhookStats>,
    /// Wakes the webhook worker after new notifications.
    kick: Kick,
}

impl Notifications {
    /// The service on an open store.
    ///
    /// # Errors
    /// A [`StoreError`] when the store's tables cannot be opened.
    pub fn new(store: Store) -> Result<Self, StoreError> {
        Ok(Self {
            store: NotificationsStore::open(store)?,
            webhook: None,
            webhook_stats: Arc::default(),
            kick: Kick::default(),
        })
    }

    /// A metrics source (`NodeBuilder::metrics`) for the webhook:
    /// `bulwark_webhook_attempts_total{outcome}` (delivered, retried,
    /// given_up); nothing without a webhook.
    pub fn metrics(&self) -> impl Fn() -> Vec<MetricSample> + Send + Sync + 'static {
        let stats = Arc::clone(&self.webhook_stats);
        let configured = self.webhook.is_some();
        move || {
            if configured {
                stats.samples()
            } else {
                Vec::new()
            }
        }
    }

    /// Delivers every notification recorded from now on to a webhook
    /// (deliveries pending from earlier runs go on either way once a
    /// webhook is configured).
    ///
    /// # Errors
    /// The HTTP client could not be set up (its TLS backend found no usable
    /// CA certificates).
    pub fn with_webhook(mut self, config: WebhookConfig) -> Result<Self, reqwest::Error> {
        let client = webhook::client()?;
        self.store.deliver_to_webhook();
        self.webhook = Some((Arc::new(config), client));
        Ok(self)
    }
}

impl Service for Notifications {
    const NAME: &'static str = "notifications";
    type Request = NotificationsRequest;
    type Response = NotificationsResponse;
    type Error = ShopError;

    /// Reads are retried after a crash of the serving actor.
    fn idempotent_copy(request: &NotificationsRequest) -> Option<NotificationsRequest> {
        matches!(request, NotificationsRequest::ListByUser { .. }).then(|| request.clone())
    }

    fn tree(&self, ctx: &ServiceContext) -> ServiceTree<Self> {
        let state = NotificationsState {
            store: self.store.clone(),
            tasks: ctx.tasks.clone(),
            kick: self.kick.clone(),
        };
        let inbox = self.store.inbox.clone();
        let tree = ServiceTree::new(Strategy::OneForOne)
            .entry("entry", move || (NotificationsActor::new(), state.clone()))
            .child(ChildSpec::actor(
                "inbox-pruner",
                Restart::Permanent,
                move || (InboxPruner, (inbox.clone(), INBOX_PRUNE_INTERVAL)),
            ));
        match &self.webhook {
            Some((config, client)) => {
                let worker = Webhook {
                    store: self.store.clone(),
                    config: Arc::clone(config),
                    client: client.clone(),
                    kick: self.kick.clone(),
                    stats: Arc::clone(&self.webhook_stats),
                };
                tree.child(ChildSpec::actor("webhook", Restart::Permanent, move || {
                    (WorkerActor::<Webhook>::new(), worker.clone())
                }))
            }
            None => tree,
        }
    }

    fn topics(&self) -> Vec<&'static str> {
        vec![ShopEvents::NAME]
    }
}

/// Prunes applied event ids older than the retention, periodically.
#[derive(Debug)]
struct InboxPruner;

impl Actor for InboxPruner {
    type Msg = ();
    type State = (Inbox<String>, Duration);
    type Arguments = (Inbox<String>, Duration);

    async fn pre_start(
        &self,
        myself: ActorRef<()>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        myself.send_after(args.1, || ());
        Ok(args)
    }

    async fn handle(
        &self,
        myself: ActorRef<()>,
        (): (),
        (inbox, interval): &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let Err(err) = inbox.prune(now_ms()).await {
            tracing::warn!(error = %err, "inbox prune failed");
        }
        myself.send_after(*interval, || ());
        Ok(())
    }
}
