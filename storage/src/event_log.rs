//! The event log: append-only streams of events with optimistic concurrency, and
//! snapshots so that rebuilding a long stream is cheap.
//!
//! Layout (three trees per log): `events/<log>` maps `(stream, version)` to one event,
//! so one stream's events are contiguous and in version order; `stream_heads/<log>` maps
//! a stream to its current version, read and bumped by every append inside the
//! transaction (an append never scans); `snapshots/<log>` maps a stream to its latest
//! snapshot `(version, state)`.
//!
//! Versions count events: an empty stream is at version 0, its first event is version 1.

use std::fmt;
use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::StoreError;
use crate::store::TreeHandle;
use crate::table::{Rows, Table};
use crate::tx::Tx;

/// A named event log of a store, holding many streams of events `E`.
pub struct EventLog<E> {
    events: Table<(String, u64), E>,
    heads: TreeHandle,
    snapshots: TreeHandle,
    _event: PhantomData<fn() -> E>,
}

impl<E> Clone for EventLog<E> {
    fn clone(&self) -> Self {
        Self {
            events: self.events.clone(),
            heads: self.heads.clone(),
            snapshots: self.snapshots.clone(),
            _event: PhantomData,
        }
    }
}

impl<E> fmt::Debug for EventLog<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventLog")
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

impl<E: Serialize + DeserializeOwned> EventLog<E> {
    pub(crate) fn new(events: TreeHandle, heads: TreeHandle, snapshots: TreeHandle) -> Self {
        Self {
            events: Table::new(events),
            heads,
            snapshots,
            _event: PhantomData,
        }
    }

    /// The stream's current version (0 if it has no events).
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] if the stored head does not decode, or an engine error.
    pub fn version(&self, stream: &str) -> Result<u64, StoreError> {
        Ok(self.heads.get(&stream.to_owned())?.unwrap_or(0))
    }

    /// The stream's current version inside a transaction.
    ///
    /// # Errors
    ///
    /// As [`EventLog::version`].
    pub fn version_in(&self, tx: &Tx<'_>, stream: &str) -> Result<u64, StoreError> {
        Ok(tx.get(&self.heads, &stream.to_owned())?.unwrap_or(0))
    }

    /// Appends `events` to `stream` if the stream is at `expected_version`, and returns
    /// the new version. Part of the enclosing transaction: state changes and outbox
    /// entries written with it commit together.
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] if the stream is at another version (return it to abort
    /// the transaction); [`StoreError::ValueTooLarge`] for an oversized event; engine
    /// errors.
    pub fn append(
        &self,
        tx: &Tx<'_>,
        stream: &str,
        expected_version: u64,
        events: &[E],
    ) -> Result<u64, StoreError> {
        let stream = stream.to_owned();
        let actual = tx.get(&self.heads, &stream)?.unwrap_or(0);
        if actual != expected_version {
            return Err(StoreError::Conflict {
                stream,
                expected: expected_version,
                actual,
            });
        }
        let mut version = actual;
        for event in events {
            version += 1;
            self.events.insert(tx, &(stream.clone(), version), event)?;
        }
        if version != actual {
            tx.put(&self.heads, &stream, &version)?;
        }
        Ok(version)
    }

    /// The stream's events with versions from `from_version` on, in order, each with its
    /// version.
    #[must_use]
    pub fn read(&self, stream: &str, from_version: u64) -> Events<E> {
        let stream = stream.to_owned();
        Events {
            rows: self
                .events
                .range((stream.clone(), from_version)..=(stream, u64::MAX)),
        }
    }

    /// Saves `state` as the stream's snapshot at `version` (the state after applying
    /// events `1..=version`), replacing any older one.
    ///
    /// # Errors
    ///
    /// [`StoreError::SnapshotAhead`] if the stream has not reached `version`;
    /// [`StoreError::ValueTooLarge`] for an oversized state; engine errors.
    pub fn save_snapshot<S: Serialize>(
        &self,
        tx: &Tx<'_>,
        stream: &str,
        version: u64,
        state: &S,
    ) -> Result<(), StoreError> {
        let actual = self.version_in(tx, stream)?;
        if version > actual {
            return Err(StoreError::SnapshotAhead {
                stream: stream.to_owned(),
                version,
                actual,
            });
        }
        tx.put(&self.snapshots, &stream.to_owned(), &(version, state))
    }

    /// The stream's latest snapshot and its version. Rebuild with it and
    /// `read(stream, version + 1)`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] if the snapshot does not decode as `S`, or an engine error.
    pub fn load_snapshot<S: DeserializeOwned>(
        &self,
        stream: &str,
    ) -> Result<Option<(u64, S)>, StoreError> {
        self.snapshots.get(&stream.to_owned())
    }
}

/// The events of one stream, as `(version, event)`; see [`EventLog::read`].
pub struct Events<E> {
    rows: Rows<(String, u64), E>,
}

impl<E> fmt::Debug for Events<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Events").field("rows", &self.rows).finish()
    }
}

impl<E: DeserializeOwned> Iterator for Events<E> {
    type Item = Result<(u64, E), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        Some(
            self.rows
                .next()?
                .map(|((_, version), event)| (version, event)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Store, StoreConfig};
    use serde::Deserialize;
    use std::sync::Arc;

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    enum CartEvent {
        Added { sku: String, qty: u32 },
        Removed { sku: String },
    }

    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    struct Cart {
        lines: Vec<(String, u32)>,
    }

    impl Cart {
        fn apply(&mut self, event: &CartEvent) {
            match event {
                CartEvent::Added { sku, qty } => self.lines.push((sku.clone(), *qty)),
                CartEvent::Removed { sku } => self.lines.retain(|(s, _)| s != sku),
            }
        }
    }

    fn open() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
        (dir, store)
    }

    fn added(i: u32) -> CartEvent {
        CartEvent::Added {
            sku: format!("sku-{}", i % 7),
            qty: i,
        }
    }

    #[tokio::test]
    async fn appends_advance_the_version_and_read_returns_events_in_order() {
        let (_dir, store) = open();
        let log = store.event_log::<CartEvent>("carts").unwrap();
        let v = store
            .write(|tx| log.append(tx, "cart-1", 0, &[added(1), added(2)]))
            .await
            .unwrap();
        assert_eq!(v, 2);
        store
            .write(|tx| log.append(tx, "cart-2", 0, &[added(9)]))
            .await
            .unwrap();
        let v = store
            .write(|tx| log.append(tx, "cart-1", 2, &[added(3)]))
            .await
            .unwrap();
        assert_eq!(v, 3);
        assert_eq!(log.version("cart-1").unwrap(), 3);
        assert_eq!(log.version("cart-unknown").unwrap(), 0);
        let events: Vec<_> = log.read("cart-1", 2).map(Result::unwrap).collect();
        assert_eq!(events, vec![(2, added(2)), (3, added(3))]);
        let all: Vec<_> = log.read("cart-1", 0).map(Result::unwrap).collect();
        assert_eq!(all.len(), 3);
    }

    #[tokio::test]
    async fn an_append_at_a_stale_version_is_a_typed_conflict_and_writes_nothing() {
        let (_dir, store) = open();
        let log = store.event_log::<CartEvent>("carts").unwrap();
        store
            .write(|tx| log.append(tx, "c", 0, &[added(1)]))
            .await
            .unwrap();
        let err = store
            .write(|tx| log.append(tx, "c", 0, &[added(2)]))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::Conflict { stream, expected: 0, actual: 1 } if stream == "c"),
            "{err:?}"
        );
        assert_eq!(log.read("c", 0).count(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_writers_appending_at_the_same_version_exactly_one_wins() {
        let (_dir, store) = open();
        let log = store.event_log::<CartEvent>("carts").unwrap();
        for round in 0..20_u64 {
            let stream = format!("race-{round}");
            let barrier = Arc::new(tokio::sync::Barrier::new(2));
            let tasks: Vec<_> = (0..2_u32)
                .map(|writer| {
                    let (store, log, stream, barrier) = (
                        store.clone(),
                        log.clone(),
                        stream.clone(),
                        Arc::clone(&barrier),
                    );
                    tokio::spawn(async move {
                        barrier.wait().await;
                        store
                            .write(|tx| log.append(tx, &stream, 0, &[added(writer)]))
                            .await
                    })
                })
                .collect();
            let mut wins = 0;
            let mut conflicts = 0;
            for task in tasks {
                match task.await.unwrap() {
                    Ok(1) => wins += 1,
                    Err(StoreError::Conflict {
                        expected: 0,
                        actual: 1,
                        ..
                    }) => conflicts += 1,
                    other => panic!("unexpected outcome {other:?}"),
                }
            }
            assert_eq!((wins, conflicts), (1, 1), "round {round}");
            assert_eq!(log.read(&stream, 0).count(), 1);
        }
    }

    #[tokio::test]
    async fn a_snapshot_plus_later_events_rebuilds_the_same_state_as_the_full_stream() {
        let (_dir, store) = open();
        let log = store.event_log::<CartEvent>("carts").unwrap();
        let mut version = 0;
        for i in 0..200_u32 {
            let event = if i % 5 == 4 {
                CartEvent::Removed {
                    sku: format!("sku-{}", i % 7),
                }
            } else {
                added(i)
            };
            version = store
                .write(|tx| log.append(tx, "cart", version, std::slice::from_ref(&event)))
                .await
                .unwrap();
            if i == 149 {
                let mut state = Cart::default();
                for item in log.read("cart", 1) {
                    state.apply(&item.unwrap().1);
                }
                store
                    .write(|tx| log.save_snapshot(tx, "cart", version, &state))
                    .await
                    .unwrap();
            }
        }

        let mut full = Cart::default();
        for item in log.read("cart", 1) {
            full.apply(&item.unwrap().1);
        }

        let (snap_version, mut rebuilt): (u64, Cart) = log.load_snapshot("cart").unwrap().unwrap();
        assert_eq!(snap_version, 150);
        let mut replayed = 0;
        for item in log.read("cart", snap_version + 1) {
            rebuilt.apply(&item.unwrap().1);
            replayed += 1;
        }
        assert_eq!(replayed, 50);
        assert_eq!(rebuilt, full);
    }

    #[tokio::test]
    async fn a_snapshot_ahead_of_the_stream_is_refused() {
        let (_dir, store) = open();
        let log = store.event_log::<CartEvent>("carts").unwrap();
        let err = store
            .write(|tx| log.save_snapshot(tx, "empty", 3, &Cart::default()))
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            StoreError::SnapshotAhead {
                version: 3,
                actual: 0,
                ..
            }
        ));
        assert!(log.load_snapshot::<Cart>("empty").unwrap().is_none());
    }
}
