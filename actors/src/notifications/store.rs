//! The notifications service's tables: notifications by (user, id), and
//! the inbox of applied event ids that makes each event count once.

use bulwark_storage::{IdGenerator, Inbox, Store, StoreError, Table};

use super::messages::Notification;
use crate::common::{EventKind, Page, PageRequest, ShopError, ShopEvent, now_ms};

/// How long an applied event id is remembered. Redeliveries come from an
/// outbox relay within seconds; a week is a wide margin.
pub(crate) const INBOX_RETENTION_MS: u64 = 7 * 24 * 3600 * 1000;

/// Notifications written in one store write: at most ~1 KiB each (texts
/// are bounded by `TEXT_LEN_MAX`), so a chunk stays well under the store's
/// 96 KiB write-set limit.
const NOTIFICATIONS_PER_WRITE_MAX: usize = 32;

/// The notifications store.
#[derive(Debug, Clone)]
pub(crate) struct NotificationsStore {
    store: Store,
    notifications: Table<(u64, u64), Notification>,
    pub(crate) inbox: Inbox<String>,
    ids: IdGenerator,
}

/// The notification an event makes, if any: (user, kind, order, text).
fn describe(kind: &EventKind) -> Option<(u64, Option<u64>, String)> {
    match kind {
        EventKind::UserCreated { user_id, username } => {
            Some((*user_id, None, format!("Welcome, {username}!")))
        }
        EventKind::OrderCompleted {
            order_id,
            user_id,
            total_cents,
        } => Some((
            *user_id,
            Some(*order_id),
            format!(
                "Order {order_id} is complete: {}.{:02} charged.",
                total_cents / 100,
                total_cents % 100
            ),
        )),
        EventKind::OrderCancelled {
            order_id,
            user_id,
            reason,
        } => Some((
            *user_id,
            Some(*order_id),
            format!("Order {order_id} was cancelled: {reason}."),
        )),
        _ => None,
    }
}

impl NotificationsStore {
    pub(crate) fn open(store: Store) -> Result<Self, StoreError> {
        Ok(Self {
            notifications: store.table("notifications")?,
            inbox: store.inbox("events", INBOX_RETENTION_MS)?,
            ids: store.id_generator("notifications")?,
            store,
        })
    }

    /// Applies a batch of events in one write: records each event's
    /// notification unless that event was applied before (its id is in the
    /// inbox). Returns once durable.
    pub(crate) async fn apply(&self, events: &[ShopEvent]) -> Result<(), ShopError> {
        let mut fresh = Vec::new();
        for event in events {
            let Some((user_id, order_id, message)) = describe(&event.kind) else {
                continue;
            };
            if self.inbox.contains(&event.id)? {
                continue;
            }
            fresh.push(Notification {
                id: self.ids.next_id().await?,
                user_id,
                kind: event.kind.name().to_owned(),
                order_id,
                message,
                event_id: event.id.clone(),
                created_at_ms: now_ms(),
            });
        }
        if fresh.is_empty() {
            // Every event was seen; the writes that recorded them may not be
            // durable yet, and the ack lets the relay forget the events.
            return Ok(self.store.sync().await?);
        }
        // Chunks keep each write set far below the store's limit, however
        // long the events' texts.
        for chunk in fresh.chunks(NOTIFICATIONS_PER_WRITE_MAX) {
            self.write_chunk(chunk).await?;
        }
        Ok(())
    }

    async fn write_chunk(&self, fresh: &[Notification]) -> Result<(), ShopError> {
        self.store
            .write(|tx| {
                for notification in fresh {
                    if self
                        .inbox
                        .check_and_record(tx, &notification.event_id, now_ms())?
                    {
                        self.notifications.insert(
                            tx,
                            &(notification.user_id, notification.id),
                            notification,
                        )?;
                    }
                }
                Ok::<_, ShopError>(())
            })
            .await
    }

    pub(crate) fn list_by_user(
        &self,
        user_id: u64,
        page: PageRequest,
    ) -> Result<Page<Notification>, ShopError> {
        Page::collect(self.notifications.with_first(&user_id), page, |(_, n)| {
            Ok(n)
        })
    }
}
