//! The notifications service's logic: list requests, and shop events
//! applied once each and acknowledged only once durable.

use bulwark_runtime::TopicEvent;
use tracing::warn;

use super::Notifications;
use super::messages::{NotificationsRequest, NotificationsResponse};
use super::store::NotificationsStore;
use crate::common::{ShopError, ShopEvents};
use crate::entry::{EntryActor, Handler};
use crate::worker::Kick;
use tokio_util::task::TaskTracker;

/// The notifications entry actor.
pub(crate) type NotificationsActor = EntryActor<NotificationsState>;

/// What each request's task works with.
#[derive(Debug, Clone)]
pub(crate) struct NotificationsState {
    pub(crate) tasks: TaskTracker,
    pub(crate) store: NotificationsStore,
    /// Wakes the webhook worker (if any) after new notifications.
    pub(crate) kick: Kick,
}

impl Handler for NotificationsState {
    fn tasks(&self) -> &TaskTracker {
        &self.tasks
    }

    type Service = Notifications;

    async fn serve(
        &self,
        request: NotificationsRequest,
    ) -> Result<NotificationsResponse, ShopError> {
        match request {
            NotificationsRequest::ListByUser { user_id, page } => self
                .store
                .list_by_user(user_id, page)
                .map(NotificationsResponse::Page),
        }
    }

    async fn on_event(&self, mut event: TopicEvent) {
        let Some(batch) = event.get::<ShopEvents>().cloned() else {
            event.ack();
            return;
        };
        match self.store.apply(&batch).await {
            Ok(()) => {
                event.ack();
                self.kick.kick();
            }
            // Unacknowledged: the relay publishes the batch again.
            Err(err) => warn!(events = batch.len(), error = %err, "events not applied"),
        }
    }
}
