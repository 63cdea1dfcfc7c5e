//! The notifications service's tables: notifications by (user, id), and
//! per event source the highest sequence number applied, which makes each
//! event count once.
//!
//! Events come from outboxes through their relays: ids are
//! `<source>:<sequence>`, and a source's events arrive in sequence order
//! without gaps (`Outbox::drain` reads a gap-free run; a redelivery starts
//! again at the oldest unconfirmed one). So "applied through N" per source
//! dedupes with one write per batch, where an inbox of ids costs two per
//! event. The inbox of earlier versions is still read for sources that have
//! no mark yet, and pruned until empty.

use std::collections::HashMap;

use bulwark_storage::{IdGenerator, Inbox, Store, StoreError, Table};
use serde::{Deserialize, Serialize};

use super::messages::{Delivery, DeliveryStatus, Notification};
use crate::common::{EventKind, Page, PageRequest, ShopError, ShopEvent, money, now_ms};

/// How long an applied event id is remembered. Redeliveries come from an
/// outbox relay within seconds; a week is a wide margin.
pub(crate) const INBOX_RETENTION_MS: u64 = 7 * 24 * 3600 * 1000;

/// Bytes of notifications (by [`len_hint`]) written in one store write:
/// half the store's 96 KiB write-set limit (`WRITE_SET_LEN_MAX_BYTES`),
/// which leaves room for the marks and the engine's framing. A relay batch
/// of typical events fits in one write, so it costs one journal record and
/// one fsync, not one per few events.
const NOTIFICATION_BYTES_PER_WRITE_MAX: usize = 48 * 1024;

/// What one notification adds to a write set beyond its texts: its key, ids
/// and times, the webhook delivery and due entries, and the table names the
/// journal records with each write (~250 bytes at most). The budget's factor
/// of two below the limit is the real margin.
const NOTIFICATION_OVERHEAD_BYTES: usize = 256;

/// An upper bound on what `event`'s notification adds to a write set.
fn len_hint(event: &ShopEvent) -> usize {
    let text = match &event.kind {
        EventKind::UserCreated { username, .. } => username.len(),
        EventKind::OrderCancelled { reason, .. } => reason.len(),
        _ => 0,
    };
    // The fixed part of each message text ("Welcome, …!", "Order … is
    // complete: … charged.") is well under the overhead's margin.
    event.id.len() + event.kind.name().len() + text + NOTIFICATION_OVERHEAD_BYTES
}

/// Splits `events` into runs whose notifications stay within `budget`
/// bytes by [`len_hint`]; an event over the budget by itself is a run of
/// its own.
fn chunks_within<'e, 'a>(
    events: &'e [(&'a str, u64, &'a ShopEvent)],
    budget: usize,
) -> impl Iterator<Item = &'e [(&'a str, u64, &'a ShopEvent)]> {
    let mut rest = events;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut len = 0;
        let mut end = 0;
        while end < rest.len() {
            let next = len_hint(rest[end].2);
            if end > 0 && len + next > budget {
                break;
            }
            len += next;
            end += 1;
        }
        let (chunk, tail) = rest.split_at(end);
        rest = tail;
        Some(chunk)
    })
}

/// A notification as stored: [`Notification`] without its delivery, which
/// lives in a table of its own and changes after the notification is
/// written. (Its layout is the one every version stored.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredNotification {
    pub(crate) id: u64,
    pub(crate) user_id: u64,
    pub(crate) kind: String,
    pub(crate) order_id: Option<u64>,
    pub(crate) message: String,
    pub(crate) event_id: String,
    pub(crate) created_at_ms: u64,
}

impl StoredNotification {
    pub(crate) fn with_delivery(self, delivery: Option<Delivery>) -> Notification {
        Notification {
            id: self.id,
            user_id: self.user_id,
            kind: self.kind,
            order_id: self.order_id,
            message: self.message,
            event_id: self.event_id,
            created_at_ms: self.created_at_ms,
            delivery,
        }
    }
}

/// What one webhook attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// The webhook answered 2xx.
    Delivered,
    /// It failed; try again at `retry_at_ms`, or give up when `None`.
    Failed {
        error: String,
        retry_at_ms: Option<u64>,
    },
}

/// The notifications store.
#[derive(Debug, Clone)]
pub(crate) struct NotificationsStore {
    store: Store,
    notifications: Table<(u64, u64), StoredNotification>,
    /// Webhook delivery of each notification recorded while a webhook was
    /// configured.
    deliveries: Table<u64, Delivery>,
    /// The pending deliveries in the order they fall due:
    /// (next attempt at, notification id) → user id.
    due: Table<(u64, u64), u64>,
    /// Whether new notifications are to be delivered to a webhook.
    webhook: bool,
    /// Per event source, the highest sequence number applied.
    applied: Table<String, u64>,
    /// Applied event ids, as earlier versions recorded them: read (never
    /// written) for sources without a mark, and pruned.
    pub(crate) inbox: Inbox<String>,
    ids: IdGenerator,
}

/// An event id's source and sequence number (`users#1:42` → (`users#1`,
/// 42)); `None` for an id of another shape.
fn source_and_seq(id: &str) -> Option<(&str, u64)> {
    let (source, seq) = id.rsplit_once(':')?;
    Some((source, seq.parse().ok()?))
}

/// The events of a batch with their source and sequence number, sorted by
/// both. Ids of another shape (none are made today) are dropped with a
/// warning: they cannot be deduplicated.
fn events_in(events: &[ShopEvent]) -> Vec<(&str, u64, &ShopEvent)> {
    let mut parsed: Vec<(&str, u64, &ShopEvent)> = events
        .iter()
        .filter_map(|event| match source_and_seq(&event.id) {
            Some((source, seq)) => Some((source, seq, event)),
            None => {
                tracing::warn!(id = %event.id, "event id without a sequence number; ignored");
                None
            }
        })
        .collect();
    parsed.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    parsed
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
                "Order {order_id} is complete: {} charged.",
                money(*total_cents)
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
            applied: store.table("events_applied")?,
            inbox: store.inbox("events", INBOX_RETENTION_MS)?,
            ids: store.id_generator("notifications")?,
            deliveries: store.table("deliveries")?,
            due: store.table("deliveries_due")?,
            webhook: false,
            store,
        })
    }

    /// Makes every notification recorded from now on pending delivery to
    /// the webhook.
    pub(crate) fn deliver_to_webhook(&mut self) {
        self.webhook = true;
    }

    /// Up to `limit` pending deliveries due at `now`, the earliest first:
    /// (notification, delivery); and when the next one after them falls due.
    #[allow(clippy::type_complexity)]
    pub(crate) fn due(
        &self,
        now: u64,
        limit: usize,
    ) -> Result<(Vec<(StoredNotification, Delivery)>, Option<u64>), ShopError> {
        let mut due = Vec::new();
        for row in self.due.iter() {
            let ((at, id), user_id) = row?;
            if at > now || due.len() == limit {
                return Ok((due, Some(at)));
            }
            let notification = self.notifications.get(&(user_id, id))?;
            let delivery = self.deliveries.get(&id)?;
            match (notification, delivery) {
                (Some(notification), Some(delivery))
                    if delivery.status == DeliveryStatus::Pending =>
                {
                    due.push((notification, delivery));
                }
                // Not pending (cannot happen: both tables change in one
                // write); nothing to deliver.
                _ => {}
            }
        }
        Ok((due, None))
    }

    /// Records the outcome of one attempt to deliver notification `id`;
    /// once it is delivered or given up, it is no longer pending. Returns
    /// once durable.
    pub(crate) async fn record_attempt(&self, id: u64, attempt: Attempt) -> Result<(), ShopError> {
        self.store
            .write(|tx| {
                let Some(mut delivery) = self.deliveries.get_in(tx, &id)? else {
                    return Ok::<_, ShopError>(());
                };
                if delivery.status != DeliveryStatus::Pending {
                    return Ok(());
                }
                let Some(user_id) = self.due.get_in(tx, &(delivery.next_attempt_at_ms, id))? else {
                    return Ok(());
                };
                self.due.remove(tx, &(delivery.next_attempt_at_ms, id))?;
                let now = now_ms();
                delivery.attempts = delivery.attempts.saturating_add(1);
                delivery.updated_at_ms = now;
                match attempt {
                    Attempt::Delivered => {
                        delivery.status = DeliveryStatus::Delivered;
                        delivery.last_error = None;
                    }
                    Attempt::Failed { error, retry_at_ms } => {
                        delivery.last_error = Some(error);
                        match retry_at_ms {
                            Some(at) => delivery.next_attempt_at_ms = at,
                            None => delivery.status = DeliveryStatus::Failed,
                        }
                    }
                }
                if delivery.status == DeliveryStatus::Pending {
                    self.due
                        .insert(tx, &(delivery.next_attempt_at_ms, id), &user_id)?;
                }
                self.deliveries.insert(tx, &id, &delivery)?;
                Ok(())
            })
            .await
    }

    /// Applies a batch of events: records each event's notification unless
    /// its source's mark says it was applied before. Returns once durable.
    pub(crate) async fn apply(&self, events: &[ShopEvent]) -> Result<(), ShopError> {
        // In (source, sequence) order, whatever order they came in: a mark
        // only moves forward.
        let events = events_in(events);
        let mut wrote = false;
        // Chunks keep each write set far below the store's limit, however
        // long the events' texts.
        for chunk in chunks_within(&events, NOTIFICATION_BYTES_PER_WRITE_MAX) {
            wrote |= self.write_chunk(chunk).await?;
        }
        if !wrote {
            // Every event was applied before; the write that recorded that
            // may not be durable yet, and the ack lets the relay forget them.
            self.store.sync().await?;
        }
        Ok(())
    }

    /// Applies one chunk in one write; `false` when it had nothing new.
    async fn write_chunk(&self, chunk: &[(&str, u64, &ShopEvent)]) -> Result<bool, ShopError> {
        // Ids for the events that may be new (by the marks as they are now;
        // the write checks again).
        let mut fresh = Vec::with_capacity(chunk.len());
        let mut known: HashMap<&str, Option<u64>> = HashMap::new();
        for &(source, seq, event) in chunk {
            let mark = match known.get(source) {
                Some(mark) => *mark,
                None => {
                    let mark = self.applied.get(&source.to_owned())?;
                    known.insert(source, mark);
                    mark
                }
            };
            if mark.is_some_and(|mark| seq <= mark) {
                continue;
            }
            if let Some((user_id, order_id, message)) = describe(&event.kind) {
                fresh.push((
                    source,
                    seq,
                    Some(StoredNotification {
                        id: self.ids.next_id().await?,
                        user_id,
                        kind: event.kind.name().to_owned(),
                        order_id,
                        message,
                        event_id: event.id.clone(),
                        created_at_ms: now_ms(),
                    }),
                ));
            } else {
                fresh.push((source, seq, None));
            }
        }
        if fresh.is_empty() {
            return Ok(false);
        }
        self.store
            .write(|tx| {
                let mut marks: HashMap<&str, (Option<u64>, u64)> = HashMap::new();
                for (source, seq, notification) in &fresh {
                    let (stored, mark) = match marks.get(source) {
                        Some(known) => *known,
                        None => {
                            let stored = self.applied.get_in(tx, &(*source).to_owned())?;
                            (stored, stored.unwrap_or(0))
                        }
                    };
                    // Applied before: by the mark, or (for a source with no
                    // mark yet) by the inbox of earlier versions.
                    let legacy = match notification {
                        Some(n) if stored.is_none() => self.inbox.contains(&n.event_id)?,
                        _ => false,
                    };
                    let seen = *seq <= mark || legacy;
                    marks.insert(source, (stored, mark.max(*seq)));
                    if seen {
                        continue;
                    }
                    if let Some(notification) = notification {
                        self.notifications.insert(
                            tx,
                            &(notification.user_id, notification.id),
                            notification,
                        )?;
                        if self.webhook {
                            let now = now_ms();
                            let delivery = Delivery {
                                status: DeliveryStatus::Pending,
                                attempts: 0,
                                last_error: None,
                                next_attempt_at_ms: now,
                                updated_at_ms: now,
                            };
                            self.deliveries.insert(tx, &notification.id, &delivery)?;
                            self.due.insert(
                                tx,
                                &(delivery.next_attempt_at_ms, notification.id),
                                &notification.user_id,
                            )?;
                        }
                    }
                }
                for (source, (stored, mark)) in &marks {
                    if stored.is_none_or(|stored| stored < *mark) {
                        self.applied.insert(tx, &(*source).to_owned(), mark)?;
                    }
                }
                Ok::<_, ShopError>(())
            })
            .await?;
        Ok(true)
    }

    pub(crate) fn list_by_user(
        &self,
        user_id: u64,
        page: PageRequest,
    ) -> Result<Page<Notification>, ShopError> {
        Page::collect(self.notifications.with_first(&user_id), page, |(_, n)| {
            let delivery = self.deliveries.get(&n.id)?;
            Ok(n.with_delivery(delivery))
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use bulwark_storage::StoreConfig;

    use super::*;

    fn user_created(source: &str, seq: u64, user_id: u64) -> ShopEvent {
        ShopEvent {
            id: format!("{source}:{seq}"),
            kind: EventKind::UserCreated {
                user_id,
                username: format!("u{user_id}"),
            },
        }
    }

    fn count(store: &NotificationsStore, user_id: u64) -> u64 {
        store
            .list_by_user(
                user_id,
                PageRequest {
                    page: 1,
                    page_size: 100,
                },
            )
            .unwrap()
            .total
    }

    fn open(dir: &std::path::Path) -> NotificationsStore {
        NotificationsStore::open(Store::open(dir, StoreConfig::default()).unwrap()).unwrap()
    }

    #[tokio::test]
    async fn a_relay_batch_of_typical_events_is_applied_in_one_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        // The first event reserves the block of notification ids.
        store.apply(&[user_created("users", 1, 1)]).await.unwrap();
        let before = store.store.commit_stats().commits;
        let batch: Vec<ShopEvent> = (2..=129)
            .map(|seq| user_created("users", seq, seq))
            .collect();
        store.apply(&batch).await.unwrap();
        assert_eq!(store.store.commit_stats().commits - before, 1);
        assert!((1..=129).all(|user| count(&store, user) == 1));
    }

    #[tokio::test]
    async fn a_batch_of_the_longest_events_with_a_webhook_fits_the_write_set_limit() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        // Every notification also writes a delivery and a due entry.
        store.deliver_to_webhook();
        store.apply(&[user_created("users", 1, 1)]).await.unwrap();
        let before = store.store.commit_stats().commits;
        let longest = "u".repeat(crate::common::TEXT_LEN_MAX);
        let batch: Vec<ShopEvent> = (2..=129)
            .map(|seq| ShopEvent {
                id: format!("users:{seq}"),
                kind: EventKind::UserCreated {
                    user_id: seq,
                    username: longest.clone(),
                },
            })
            .collect();
        // Each chunk's real write set stays under the store's limit (the
        // write would fail with TransactionTooLarge otherwise)...
        store.apply(&batch).await.unwrap();
        // ...in a handful of writes, not one per event.
        let writes = store.store.commit_stats().commits - before;
        assert!((2..=4).contains(&writes), "{writes} writes");
        assert!((1..=129).all(|user| count(&store, user) == 1));
    }

    #[test]
    fn chunks_stay_within_their_budget_and_keep_every_event_in_order() {
        let cancelled = |seq: u64, reason_len: usize| ShopEvent {
            id: format!("orders:{seq}"),
            kind: EventKind::OrderCancelled {
                order_id: seq,
                user_id: 1,
                reason: "r".repeat(reason_len),
            },
        };
        let budget = 4096;
        // Mixed sizes, one event over the budget by itself.
        let events: Vec<ShopEvent> = (1..=40)
            .map(|seq| {
                cancelled(
                    seq,
                    if seq == 17 {
                        2 * budget
                    } else {
                        100 * (seq as usize % 7)
                    },
                )
            })
            .collect();
        let parsed = events_in(&events);
        let chunks: Vec<_> = chunks_within(&parsed, budget).collect();
        assert!(chunks.len() > 2, "{} chunks", chunks.len());
        for chunk in &chunks {
            let len: usize = chunk.iter().map(|(_, _, e)| len_hint(e)).sum();
            assert!(
                len <= budget || chunk.len() == 1,
                "{len} bytes in {} events",
                chunk.len()
            );
        }
        let seqs: Vec<u64> = chunks
            .iter()
            .flat_map(|c| c.iter().map(|(_, seq, _)| *seq))
            .collect();
        assert_eq!(seqs, (1..=40).collect::<Vec<_>>());
        assert!(chunks_within(&[], budget).next().is_none());
    }

    #[tokio::test]
    async fn redelivered_and_overlapping_batches_apply_each_event_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let batch = |from: u64, to: u64| -> Vec<ShopEvent> {
            (from..=to)
                .map(|seq| user_created("users", seq, 7))
                .collect()
        };
        store.apply(&batch(1, 2)).await.unwrap();
        store.apply(&batch(1, 3)).await.unwrap();
        store.apply(&batch(2, 2)).await.unwrap();
        assert_eq!(count(&store, 7), 3);
        // Two deliveries of overlapping runs at once (a killed relay's batch
        // still queued while its successor sends a longer one).
        let (short, long) = (batch(3, 40), batch(3, 80));
        let (a, b) = tokio::join!(store.apply(&short), store.apply(&long));
        a.unwrap();
        b.unwrap();
        assert_eq!(count(&store, 7), 80);
        // Out of order within a batch, and several sources at once.
        let mut mixed = vec![user_created("users#1", 2, 8), user_created("users#1", 1, 8)];
        mixed.push(user_created("users", 81, 7));
        store.apply(&mixed).await.unwrap();
        store.apply(&mixed).await.unwrap();
        assert_eq!(count(&store, 8), 2);
        assert_eq!(count(&store, 7), 81);
    }

    #[tokio::test]
    async fn events_recorded_in_the_inbox_by_earlier_versions_are_not_applied_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        // An earlier version applied users:1 and users:2 through the inbox.
        for seq in 1..=2 {
            let event = user_created("users", seq, 9);
            store
                .store
                .write(|tx| {
                    assert!(store.inbox.check_and_record(tx, &event.id, now_ms())?);
                    store.notifications.insert(
                        tx,
                        &(9, seq),
                        &StoredNotification {
                            id: seq,
                            user_id: 9,
                            kind: "user.created".to_owned(),
                            order_id: None,
                            message: "Welcome".to_owned(),
                            event_id: event.id.clone(),
                            created_at_ms: 0,
                        },
                    )?;
                    Ok::<_, ShopError>(())
                })
                .await
                .unwrap();
        }
        assert_eq!(count(&store, 9), 2);
        // Its relay redelivers 1..=3 after the upgrade.
        let redelivered: Vec<ShopEvent> =
            (1..=3).map(|seq| user_created("users", seq, 9)).collect();
        store.apply(&redelivered).await.unwrap();
        assert_eq!(count(&store, 9), 3);
        store.apply(&redelivered).await.unwrap();
        assert_eq!(count(&store, 9), 3);
    }

    #[tokio::test]
    async fn deliveries_fall_due_in_time_order_and_one_in_backoff_holds_up_none() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        store.deliver_to_webhook();
        let events: Vec<ShopEvent> = (1..=3).map(|seq| user_created("users", seq, 5)).collect();
        store.apply(&events).await.unwrap();
        let now = now_ms();
        let (due, next) = store.due(now, 16).unwrap();
        let ids: Vec<u64> = due.iter().map(|(n, _)| n.id).collect();
        assert_eq!(ids.len(), 3);
        assert_eq!(next, None);
        // The oldest fails and backs off for an hour: the others stay due.
        let hour = 3_600_000;
        let failed = |retry_at_ms| Attempt::Failed {
            error: "503".to_owned(),
            retry_at_ms,
        };
        store
            .record_attempt(ids[0], failed(Some(now + hour)))
            .await
            .unwrap();
        let (due, next) = store.due(now, 16).unwrap();
        let due_ids: Vec<u64> = due.iter().map(|(n, _)| n.id).collect();
        assert_eq!(due_ids, ids[1..]);
        assert_eq!(next, Some(now + hour));
        // At most `limit` at once; the rest is reported as due now.
        let (due, next) = store.due(now, 1).unwrap();
        assert_eq!(due.len(), 1);
        assert!(next.unwrap() <= now);
        // Delivered and given up ones are due no more.
        store
            .record_attempt(ids[1], Attempt::Delivered)
            .await
            .unwrap();
        store.record_attempt(ids[2], failed(None)).await.unwrap();
        let (due, next) = store.due(now, 16).unwrap();
        assert!(due.is_empty());
        assert_eq!(next, Some(now + hour));
        let (due, _) = store.due(now + hour, 16).unwrap();
        assert_eq!(due[0].1.attempts, 1);
        let listed = store
            .list_by_user(
                5,
                PageRequest {
                    page: 1,
                    page_size: 10,
                },
            )
            .unwrap();
        let statuses: Vec<DeliveryStatus> = listed
            .items
            .iter()
            .map(|n| n.delivery.as_ref().unwrap().status)
            .collect();
        assert_eq!(
            statuses,
            [
                DeliveryStatus::Pending,
                DeliveryStatus::Delivered,
                DeliveryStatus::Failed
            ]
        );
    }

    #[test]
    fn event_ids_split_into_source_and_sequence() {
        assert_eq!(source_and_seq("users#1:42"), Some(("users#1", 42)));
        assert_eq!(source_and_seq("orders:7"), Some(("orders", 7)));
        assert_eq!(source_and_seq("orders"), None);
        assert_eq!(source_and_seq("orders:x"), None);
    }
}
