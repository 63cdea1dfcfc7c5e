//! The inbox: ids of processed messages, so that a consumer applies each message once.
//!
//! Record the id with [`Inbox::check_and_record`] in the same transaction as the
//! message's effect: either both commit or neither does, so a redelivered message is
//! recognised exactly when its effect exists. Ids are kept `retention_ms` and then pruned
//! through a second tree ordered by processing time, so pruning reads only what it
//! removes. Choose a retention longer than any redelivery delay of the producer: a
//! duplicate arriving after its id was pruned would be applied again.

use std::fmt;
use std::marker::PhantomData;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::StoreError;
use crate::key::Key;
use crate::store::TreeHandle;
use crate::tx::Tx;

/// Ids removed per pruning transaction: bounds the transaction's size and the time the
/// store's writer lock is held.
const PRUNE_BATCH_LEN: usize = 512;

/// Key bytes removed per pruning transaction: half the write-set limit, so that a batch
/// of long ids never makes the pruning transaction too large.
const PRUNE_BATCH_KEY_BYTES_MAX: usize = crate::tx::WRITE_SET_LEN_MAX_BYTES / 2;

/// Milliseconds since the Unix epoch, the clock [`Inbox`] methods expect (0 if the
/// system clock is before 1970).
#[must_use]
pub fn unix_time_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A named inbox of a store, keyed by message ids of type `K`.
pub struct Inbox<K> {
    /// id -> processed-at (ms).
    ids: TreeHandle,
    /// (processed-at, id) -> (), for pruning in time order.
    by_time: TreeHandle,
    retention_ms: u64,
    _key: PhantomData<fn() -> K>,
}

impl<K> Clone for Inbox<K> {
    fn clone(&self) -> Self {
        Self {
            ids: self.ids.clone(),
            by_time: self.by_time.clone(),
            retention_ms: self.retention_ms,
            _key: PhantomData,
        }
    }
}

impl<K> fmt::Debug for Inbox<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inbox")
            .field("name", &self.ids.name())
            .field("retention_ms", &self.retention_ms)
            .finish_non_exhaustive()
    }
}

impl<K: Key> Inbox<K> {
    pub(crate) fn new(ids: TreeHandle, by_time: TreeHandle, retention_ms: u64) -> Self {
        Self {
            ids,
            by_time,
            retention_ms,
            _key: PhantomData,
        }
    }

    /// Records `id` as processed at `now_ms` unless it already is. Returns `true` the
    /// first time (apply the message in this transaction) and `false` for a duplicate
    /// (skip it).
    ///
    /// # Errors
    ///
    /// [`StoreError::KeyTooLarge`] for an oversized id; engine errors.
    pub fn check_and_record(&self, tx: &Tx<'_>, id: &K, now_ms: u64) -> Result<bool, StoreError> {
        if tx.get::<K, u64>(&self.ids, id)?.is_some() {
            return Ok(false);
        }
        tx.put(&self.ids, id, &now_ms)?;
        tx.put(&self.by_time, &(now_ms, id.clone()), &())?;
        Ok(true)
    }

    /// Whether `id` is recorded.
    ///
    /// # Errors
    ///
    /// Engine errors.
    pub fn contains(&self, id: &K) -> Result<bool, StoreError> {
        self.ids.contains(id)
    }

    /// Removes every id processed before `now_ms - retention_ms`, in bounded
    /// transactions; returns how many it removed.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] if a time-index key does not decode; write or sync errors.
    pub async fn prune(&self, now_ms: u64) -> Result<usize, StoreError> {
        let cutoff = now_ms.saturating_sub(self.retention_ms);
        let mut removed = 0;
        loop {
            // (time, id) keys start with the time big-endian, so every key of an id
            // processed before `cutoff` sorts below `cutoff`'s eight bytes.
            let mut batch = Vec::with_capacity(PRUNE_BATCH_LEN);
            let mut batch_key_bytes = 0;
            let mut more = false;
            {
                let _visible = self.by_time.read_guard();
                for item in self.by_time.raw().range(..cutoff.to_be_bytes().to_vec()) {
                    if batch.len() == PRUNE_BATCH_LEN
                        || batch_key_bytes >= PRUNE_BATCH_KEY_BYTES_MAX
                    {
                        more = true;
                        break;
                    }
                    let (key, _) = item.map_err(|e| StoreError::engine(self.by_time.name(), e))?;
                    // The time key, and the id key (8 bytes shorter).
                    batch_key_bytes +=
                        2 * key.len() + self.by_time.name().len() + self.ids.name().len();
                    batch.push(self.by_time.decode_key::<(u64, K)>(&key)?);
                }
            }
            if batch.is_empty() {
                return Ok(removed);
            }
            let batch_len = batch.len();
            self.ids
                .store()
                .write(|tx| {
                    for entry in &batch {
                        tx.delete(&self.by_time, entry)?;
                        // Only if the id was not recorded again since (it cannot be, but
                        // a stale time entry must never remove a fresh record).
                        if tx.get::<K, u64>(&self.ids, &entry.1)? == Some(entry.0) {
                            tx.delete(&self.ids, &entry.1)?;
                        }
                    }
                    Ok::<_, StoreError>(())
                })
                .await?;
            removed += batch_len;
            if !more {
                return Ok(removed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Store, StoreConfig};

    #[tokio::test]
    async fn a_message_is_applied_once_and_its_duplicate_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
        let inbox = store.inbox::<String>("payments", 60_000).unwrap();
        let balance = store.table::<u64, i64>("balance").unwrap();
        for _delivery in 0..3 {
            store
                .write(|tx| {
                    if inbox.check_and_record(tx, &"msg-1".to_owned(), 1_000)? {
                        let old = balance.get_in(tx, &1)?.unwrap_or(0);
                        balance.insert(tx, &1, &(old + 10))?;
                    }
                    Ok::<_, StoreError>(())
                })
                .await
                .unwrap();
        }
        assert_eq!(balance.get(&1).unwrap(), Some(10));
        assert!(inbox.contains(&"msg-1".to_owned()).unwrap());
    }

    #[tokio::test]
    async fn ids_older_than_the_retention_are_pruned_and_newer_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
        let inbox = store.inbox::<u128>("events", 1_000).unwrap();
        // 1200 old ids (more than two pruning batches) and 5 recent ones.
        for chunk in 0..12_u128 {
            store
                .write(|tx| {
                    for i in 0..100 {
                        inbox.check_and_record(
                            tx,
                            &(chunk * 100 + i),
                            5_000 + u64::try_from(i).unwrap(),
                        )?;
                    }
                    Ok::<_, StoreError>(())
                })
                .await
                .unwrap();
        }
        store
            .write(|tx| {
                for i in 0..5 {
                    inbox.check_and_record(tx, &(10_000 + i), 9_500)?;
                }
                Ok::<_, StoreError>(())
            })
            .await
            .unwrap();
        assert_eq!(inbox.prune(10_000).await.unwrap(), 1200);
        assert!(!inbox.contains(&0).unwrap());
        assert!(!inbox.contains(&1199).unwrap());
        assert!(inbox.contains(&10_004).unwrap());
        assert_eq!(inbox.prune(10_000).await.unwrap(), 0);
        assert_eq!(inbox.prune(10_501).await.unwrap(), 5);
    }
}
