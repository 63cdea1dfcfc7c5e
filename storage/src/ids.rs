//! Stable id generation: positive integers below 2^53, never reused, even after a crash.
//!
//! A generator hands out ids from a block it has reserved *durably*: the block's end (the
//! high-water mark) is written to the store's metadata and fsynced before the first id
//! of the block is issued. After a crash the generator starts at the persisted mark, so
//! the ids of a block that was partly used are skipped, never repeated. Ids stay below
//! 2^53 because they travel as JSON numbers, which are exact only up to there.

use std::fmt;
use std::sync::Arc;

use tokio::sync::Mutex;

use crate::error::StoreError;
use crate::store::TreeHandle;

/// The largest id a generator issues: 2^53 - 1, the largest integer a JSON number (an
/// IEEE double) represents exactly.
pub const ID_MAX: u64 = (1 << 53) - 1;

/// Ids reserved per durable write. One fsync per 1024 ids keeps reservation off the
/// write path; a crash wastes at most one block, so 2^53 ids last for 2^43 crashes.
const ID_BLOCK_LEN: u64 = 1024;

/// The ids of the current block that are still free: `next..end`.
#[derive(Debug, Default)]
struct Block {
    next: u64,
    end: u64,
}

/// A named id generator of a store. Cheap to clone; clones share the reserved block.
#[derive(Clone)]
pub struct IdGenerator {
    meta: TreeHandle,
    name: Arc<str>,
    /// The key of the high-water mark in the metadata tree.
    mark_key: String,
    /// A tokio mutex because reserving a block awaits a durable write while holding it,
    /// so that concurrent callers wait for one reservation instead of making several.
    block: Arc<Mutex<Block>>,
}

impl fmt::Debug for IdGenerator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdGenerator")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl IdGenerator {
    pub(crate) fn new(meta: TreeHandle, name: &str) -> Self {
        Self {
            meta,
            name: Arc::from(name),
            mark_key: format!("ids/{name}"),
            block: Arc::new(Mutex::new(Block::default())),
        }
    }

    /// The next id: unique in this store, in `1..=ID_MAX`, increasing within a process.
    ///
    /// Returns at once while the current block lasts; otherwise waits for the durable
    /// reservation of the next block (in any durability mode).
    ///
    /// # Errors
    ///
    /// [`StoreError::IdsExhausted`] after `ID_MAX`; a write or sync error while reserving.
    pub async fn next_id(&self) -> Result<u64, StoreError> {
        let mut block = self.block.lock().await;
        if block.next >= block.end {
            *block = self.reserve().await?;
        }
        let id = block.next;
        block.next += 1;
        Ok(id)
    }

    /// Durably moves the high-water mark one block up and returns the block below it.
    async fn reserve(&self) -> Result<Block, StoreError> {
        let store = self.meta.store();
        let block = store
            .write(|tx| {
                let next = tx
                    .get::<String, u64>(&self.meta, &self.mark_key)?
                    .unwrap_or(1);
                if next > ID_MAX {
                    return Err(StoreError::IdsExhausted {
                        generator: self.name.to_string(),
                    });
                }
                let end = next.saturating_add(ID_BLOCK_LEN).min(ID_MAX + 1);
                tx.put(&self.meta, &self.mark_key, &end)?;
                Ok(Block { next, end })
            })
            .await?;
        // Durable even when the store is in the periodic mode.
        store.sync().await?;
        tracing::debug!(generator = %self.name, next = block.next, end = block.end, "id block reserved");
        Ok(block)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Store, StoreConfig};
    use std::collections::HashSet;

    #[tokio::test]
    async fn ids_are_positive_unique_and_survive_a_reopen_without_reuse() {
        let dir = tempfile::tempdir().unwrap();
        let mut seen = HashSet::new();
        for _ in 0..3 {
            let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
            let ids = store.id_generator("users").unwrap();
            for _ in 0..10 {
                let id = ids.next_id().await.unwrap();
                assert!((1..=ID_MAX).contains(&id));
                assert!(seen.insert(id), "id {id} issued twice");
            }
        }
        // Each reopen skips the rest of the previous block.
        assert!(seen.iter().max().unwrap() > &(2 * ID_BLOCK_LEN));
    }

    #[tokio::test]
    async fn concurrent_callers_get_distinct_ids_across_block_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
        let ids = store.id_generator("orders").unwrap();
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let ids = ids.clone();
                tokio::spawn(async move {
                    let mut mine = Vec::new();
                    for _ in 0..300 {
                        mine.push(ids.next_id().await.unwrap());
                    }
                    mine
                })
            })
            .collect();
        let mut all = HashSet::new();
        for task in tasks {
            for id in task.await.unwrap() {
                assert!(all.insert(id));
            }
        }
        assert_eq!(all.len(), 2400);
    }

    #[tokio::test]
    async fn the_generator_stops_at_two_to_the_fifty_three() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
        let ids = store.id_generator("big").unwrap();
        let meta = store.meta().unwrap();
        store
            .write(|tx| tx.put(&meta, &"ids/big".to_owned(), &(ID_MAX - 1)))
            .await
            .unwrap();
        assert_eq!(ids.next_id().await.unwrap(), ID_MAX - 1);
        assert_eq!(ids.next_id().await.unwrap(), ID_MAX);
        assert!(matches!(
            ids.next_id().await,
            Err(StoreError::IdsExhausted { .. })
        ));
    }
}
