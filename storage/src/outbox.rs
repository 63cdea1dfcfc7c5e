//! The transactional outbox: events recorded in the same transaction as the state change
//! that caused them, handed to a publisher, and removed only once it confirms delivery.
//!
//! Entries are keyed by a per-outbox sequence number kept in the store's metadata and
//! bumped inside the transaction, so numbers increase and are never reused, even once
//! every entry has been removed. Delivery is at least once: an entry drained but not yet
//! confirmed when the process dies is drained again after the restart. A publisher
//! should therefore carry the sequence number (or an id inside the event) so that
//! consumers can deduplicate (see [`Inbox`](crate::Inbox)).

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::StoreError;
use crate::store::TreeHandle;
use crate::table::Table;
use crate::tx::Tx;

/// The most entries one [`Outbox::drain`] returns, whatever the caller asks: bounds the
/// memory of a drain and the size of the confirming transaction.
pub const DRAIN_LEN_MAX: usize = 1024;

/// One pending outbox entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxEntry<E> {
    /// The entry's sequence number, unique and increasing within the outbox.
    pub seq: u64,
    /// The event to publish.
    pub event: E,
}

/// A named outbox of a store, holding events `E` until their delivery is confirmed.
///
/// Use one publisher per outbox: two concurrent drains would hand out the same entries.
pub struct Outbox<E> {
    entries: Table<u64, E>,
    meta: TreeHandle,
    /// The key of the last issued sequence number in the metadata tree.
    seq_key: String,
}

impl<E> Clone for Outbox<E> {
    fn clone(&self) -> Self {
        Self {
            entries: self.entries.clone(),
            meta: self.meta.clone(),
            seq_key: self.seq_key.clone(),
        }
    }
}

impl<E> fmt::Debug for Outbox<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outbox")
            .field("entries", &self.entries)
            .finish_non_exhaustive()
    }
}

impl<E: Serialize + DeserializeOwned> Outbox<E> {
    pub(crate) fn new(entries: TreeHandle, meta: TreeHandle, name: &str) -> Self {
        Self {
            entries: Table::new(entries),
            meta,
            seq_key: format!("outbox/{name}"),
        }
    }

    /// Records `event` in the enclosing transaction; returns its sequence number.
    ///
    /// # Errors
    ///
    /// [`StoreError::ValueTooLarge`] for an oversized event; engine errors.
    pub fn push(&self, tx: &Tx<'_>, event: &E) -> Result<u64, StoreError> {
        let seq = tx
            .get::<String, u64>(&self.meta, &self.seq_key)?
            .unwrap_or(0)
            + 1;
        tx.put(&self.meta, &self.seq_key, &seq)?;
        self.entries.insert(tx, &seq, event)?;
        Ok(seq)
    }

    /// The oldest pending entries, at most `limit` (and at most [`DRAIN_LEN_MAX`]).
    /// Returns only entries that are durable, so a publisher never sends an event whose
    /// transaction a crash could still undo. Entries stay until [`Outbox::confirm`].
    ///
    /// The entries are a gap-free run of sequence numbers: sequence numbers are assigned
    /// in the order writes apply, and the read holds the store's visibility lock, so no
    /// later entry is seen without every earlier one. A consumer may therefore dedupe by
    /// remembering the highest sequence number it applied per outbox.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] (naming the entry) if an entry does not decode; sync or
    /// engine errors.
    pub async fn drain(&self, limit: usize) -> Result<Vec<OutboxEntry<E>>, StoreError> {
        // One snapshot (at most DRAIN_LEN_MAX rows, so writers wait microseconds).
        let entries: Vec<OutboxEntry<E>> = self
            .entries
            .first_rows(limit.min(DRAIN_LEN_MAX))?
            .into_iter()
            .map(|(seq, event)| OutboxEntry { seq, event })
            .collect();
        if !entries.is_empty() {
            // Everything read above was applied before this call, so this covers it.
            self.entries_store().sync().await?;
        }
        Ok(entries)
    }

    /// Removes delivered entries, durably (in any durability mode): once this returns,
    /// they are never drained again. Unknown sequence numbers are ignored.
    ///
    /// # Errors
    ///
    /// Sync or engine errors; then some entries may be delivered again.
    pub async fn confirm(&self, seqs: &[u64]) -> Result<(), StoreError> {
        let store = self.entries_store();
        store
            .write(|tx| {
                for seq in seqs {
                    self.entries.discard(tx, seq)?;
                }
                Ok::<_, StoreError>(())
            })
            .await?;
        // In durable mode the write above already waited for its fsync; in a
        // relaxed mode the removal must still be made durable here.
        if store.config().durability == crate::Durability::Durable {
            Ok(())
        } else {
            store.sync().await
        }
    }

    /// Whether no entry is pending.
    ///
    /// # Errors
    ///
    /// Engine errors.
    pub fn is_empty(&self) -> Result<bool, StoreError> {
        match self.entries.iter().next() {
            None => Ok(true),
            Some(Ok(_)) => Ok(false),
            Some(Err(e)) => Err(e),
        }
    }

    /// How many entries are pending (written and not yet confirmed). Counts
    /// by iterating: an outbox is drained continuously, so it is short.
    ///
    /// # Errors
    ///
    /// Engine errors.
    pub fn pending_len(&self) -> Result<u64, StoreError> {
        let mut len = 0_u64;
        for row in &self.entries {
            row?;
            len += 1;
        }
        Ok(len)
    }

    fn entries_store(&self) -> &crate::Store {
        self.meta.store()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Store, StoreConfig};

    #[tokio::test]
    async fn entries_written_with_state_are_drained_in_order_until_confirmed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
        let users = store.table::<u64, String>("users").unwrap();
        let outbox = store.outbox::<String>("events").unwrap();
        for id in 1..=5_u64 {
            store
                .write(|tx| {
                    users.insert(tx, &id, &format!("user {id}"))?;
                    outbox.push(tx, &format!("user.created {id}"))
                })
                .await
                .unwrap();
        }
        let first = outbox.drain(3).await.unwrap();
        assert_eq!(
            first.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert_eq!(first[0].event, "user.created 1");
        // Not confirmed yet: drained again.
        assert_eq!(outbox.drain(3).await.unwrap(), first);
        assert_eq!(outbox.pending_len().unwrap(), 5);
        outbox.confirm(&[1, 2, 3]).await.unwrap();
        assert_eq!(outbox.pending_len().unwrap(), 2);
        let rest = outbox.drain(100).await.unwrap();
        assert_eq!(rest.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![4, 5]);
        outbox.confirm(&[4, 5]).await.unwrap();
        assert!(outbox.is_empty().unwrap());
    }

    #[tokio::test]
    async fn sequence_numbers_are_not_reused_after_the_outbox_empties_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
            let outbox = store.outbox::<u32>("events").unwrap();
            store.write(|tx| outbox.push(tx, &1)).await.unwrap();
            outbox.confirm(&[1]).await.unwrap();
        }
        let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
        let outbox = store.outbox::<u32>("events").unwrap();
        assert_eq!(store.write(|tx| outbox.push(tx, &2)).await.unwrap(), 2);
    }

    #[tokio::test]
    async fn an_aborted_transaction_leaves_no_outbox_entry() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
        let outbox = store.outbox::<u32>("events").unwrap();
        let result: Result<(), StoreError> = store
            .write(|tx| {
                outbox.push(tx, &7)?;
                Err(StoreError::Conflict {
                    stream: "s".to_owned(),
                    expected: 0,
                    actual: 1,
                })
            })
            .await;
        assert!(result.is_err());
        assert!(outbox.is_empty().unwrap());
    }
}
