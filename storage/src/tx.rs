//! Write transactions ([`Tx`]) and the journal that makes them atomic.
//!
//! Why not sled's own transactions: in sled 0.34.7 every transaction (and every
//! `apply_batch`) seals the log's I/O buffer before and after it (`pin_log`), so each one
//! issues two `pwrite` + `sync_file_range` of its own. Every write would pay device writes
//! before any fsync, which defeats group commit, and all of them serialize on one
//! process-wide lock shared by every store of the node.
//!
//! Instead a store's writers take the store's writer lock and run their closure against
//! an in-memory write set (reads see the transaction's own writes first, then the trees).
//! On success the write set is committed in three steps:
//!
//! 1. one *journal record* — the whole write set — is inserted into the `journal` tree
//!    under the write's generation. A single insert is atomic in sled.
//! 2. the writes are applied to their trees with plain inserts and removes, while the
//!    store's visibility lock keeps readers from seeing half of them.
//! 3. once a sync covers the write, the committer removes its journal record.
//!
//! sled recovers a prefix of its log: recovery stops at the first torn message. So after
//! a crash either the record is gone, and so is every write after it, or the record is
//! there, and [`recover_journal`] replays it on open (puts and removes are idempotent and
//! replayed in generation order). A record is kept below sled's blob threshold
//! ([`WRITE_SET_LEN_MAX_BYTES`]) so that it always lies inline in the log: recovery
//! skips a message whose blob file is missing instead of stopping there.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::io;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::codec::{self, DecodeFailure};
use crate::commit::Syncer;
use crate::error::StoreError;
use crate::key::Key;
use crate::store::TreeHandle;

/// The largest encoded write set (journal record) of one transaction. sled moves a log
/// message above a quarter of its 512 KiB segment (~128 KiB) into a blob file; 96 KiB
/// keeps every record inline with room for the engine's framing.
pub const WRITE_SET_LEN_MAX_BYTES: usize = 96 * 1024;

/// The engine tree holding journal records, keyed by big-endian generation.
pub(crate) const JOURNAL_TREE: &str = "journal";

/// Staged writes of a transaction by (tree slot, key); `None` removes the key.
type WriteSet = BTreeMap<(usize, Vec<u8>), Option<Vec<u8>>>;

/// One write of a journal record.
#[derive(Debug, Serialize, Deserialize)]
struct JournalWrite {
    /// The engine tree's name.
    tree: String,
    key: Vec<u8>,
    /// `None` removes the key.
    value: Option<Vec<u8>>,
}

/// One write transaction, passed to the closure of [`Store::write`](crate::Store::write).
///
/// Every table, index, log, outbox and inbox of the store can be used in it through their
/// methods that take `&Tx`; all their writes commit together or not at all, and the
/// transaction's reads see its own writes.
pub struct Tx<'a> {
    store_id: u64,
    value_len_max: usize,
    /// Serializes this transaction with every other write of the store while it runs.
    _writer: std::sync::MutexGuard<'a, ()>,
    writes: RefCell<WriteSet>,
    /// The trees written, by slot.
    trees: RefCell<BTreeMap<usize, TreeHandle>>,
}

impl fmt::Debug for Tx<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tx")
            .field("writes", &self.writes.borrow().len())
            .finish_non_exhaustive()
    }
}

impl<'a> Tx<'a> {
    pub(crate) fn new(
        store_id: u64,
        value_len_max: usize,
        writer: std::sync::MutexGuard<'a, ()>,
    ) -> Self {
        Self {
            store_id,
            value_len_max,
            _writer: writer,
            writes: RefCell::new(BTreeMap::new()),
            trees: RefCell::new(BTreeMap::new()),
        }
    }

    fn check_store(&self, tree: &TreeHandle) -> Result<(), StoreError> {
        if tree.store_id() == self.store_id {
            Ok(())
        } else {
            Err(StoreError::ForeignTable {
                table: tree.name().to_owned(),
            })
        }
    }

    /// Reads raw bytes: the transaction's own write if any, else the tree.
    pub(crate) fn get_raw(
        &self,
        tree: &TreeHandle,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.check_store(tree)?;
        if let Some(staged) = self.writes.borrow().get(&(tree.slot(), key.to_vec())) {
            return Ok(staged.clone());
        }
        // Holding the writer lock: no other transaction is applying writes.
        tree.raw()
            .get(key)
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(|e| StoreError::engine(tree.name(), e))
    }

    fn stage(&self, tree: &TreeHandle, key: Vec<u8>, value: Option<Vec<u8>>) {
        self.trees
            .borrow_mut()
            .entry(tree.slot())
            .or_insert_with(|| tree.clone());
        self.writes.borrow_mut().insert((tree.slot(), key), value);
    }

    /// Stages raw bytes.
    pub(crate) fn insert_raw(
        &self,
        tree: &TreeHandle,
        key: Vec<u8>,
        value: Vec<u8>,
    ) -> Result<(), StoreError> {
        self.check_store(tree)?;
        self.stage(tree, key, Some(value));
        Ok(())
    }

    /// Reads and decodes one value.
    pub(crate) fn get<K: Key, V: DeserializeOwned>(
        &self,
        tree: &TreeHandle,
        key: &K,
    ) -> Result<Option<V>, StoreError> {
        let key = tree.key_bytes(key)?;
        match self.get_raw(tree, &key)? {
            Some(value) => tree.decode::<K, V>(&key, &value).map(Some),
            None => Ok(None),
        }
    }

    /// Encodes and stages one value, refusing it if it exceeds the store's value limit.
    pub(crate) fn put<K: Key, V: Serialize + ?Sized>(
        &self,
        tree: &TreeHandle,
        key: &K,
        value: &V,
    ) -> Result<(), StoreError> {
        let key_bytes = tree.key_bytes(key)?;
        let value = codec::encode(value).map_err(|source| StoreError::Encode {
            table: tree.name().to_owned(),
            key: format!("{key:?}"),
            source,
        })?;
        if value.len() > self.value_len_max {
            return Err(StoreError::ValueTooLarge {
                table: tree.name().to_owned(),
                key: format!("{key:?}"),
                len: value.len(),
                max: self.value_len_max,
            });
        }
        self.insert_raw(tree, key_bytes, value)
    }

    /// Stages the removal of one key; returns whether it was present.
    pub(crate) fn delete<K: Key>(&self, tree: &TreeHandle, key: &K) -> Result<bool, StoreError> {
        let key = tree.key_bytes(key)?;
        let present = self.get_raw(tree, &key)?.is_some();
        self.stage(tree, key, None);
        Ok(present)
    }

    /// Stages the removal of one key without reading it first (an absent
    /// key stays absent): for callers that need no answer, it saves an
    /// engine read per key.
    pub(crate) fn discard<K: Key>(&self, tree: &TreeHandle, key: &K) -> Result<(), StoreError> {
        self.check_store(tree)?;
        let key = tree.key_bytes(key)?;
        self.stage(tree, key, None);
        Ok(())
    }

    /// Commits the staged writes: journal record, then the writes, hidden from readers
    /// by `visibility`. Returns the write's generation, or `None` if nothing was staged.
    ///
    /// The caller still holds the writer lock (inside `self`) throughout.
    pub(crate) fn commit(
        self,
        syncer: &Syncer,
        visibility: &std::sync::RwLock<()>,
    ) -> Result<Option<u64>, StoreError> {
        let writes = self.writes.into_inner();
        if writes.is_empty() {
            return Ok(None);
        }
        let trees = self.trees.into_inner();
        let mut targets = Vec::with_capacity(writes.len());
        let mut record = Vec::with_capacity(writes.len());
        for ((slot, key), value) in writes {
            let tree = &trees[&slot];
            targets.push(tree.raw());
            record.push(JournalWrite {
                tree: tree.name().to_owned(),
                key,
                value,
            });
        }
        let bytes = codec::encode(&record).map_err(|source| StoreError::Encode {
            table: JOURNAL_TREE.to_owned(),
            key: "write set".to_owned(),
            source,
        })?;
        if bytes.len() > WRITE_SET_LEN_MAX_BYTES {
            return Err(StoreError::TransactionTooLarge {
                len: bytes.len(),
                max: WRITE_SET_LEN_MAX_BYTES,
            });
        }
        syncer.check_healthy()?;

        // Only writers change `applied`, and they hold the writer lock.
        let generation = syncer.applied() + 1;
        let applied = {
            let _hidden = visibility
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            apply(syncer, generation, bytes, &targets, &record)
        };
        if let Err(source) = applied {
            // The journal record may be in the engine with only some writes applied:
            // only a reopen (which replays it) restores a consistent state.
            let error = StoreError::engine(JOURNAL_TREE, source.clone());
            syncer.poison(io::Error::other(format!(
                "applying write set {generation} failed: {source}"
            )));
            return Err(error);
        }
        let noted = syncer.note_applied();
        debug_assert_eq!(
            noted, generation,
            "generations are assigned under the writer lock"
        );
        Ok(Some(noted))
    }
}

fn apply(
    syncer: &Syncer,
    generation: u64,
    record_bytes: Vec<u8>,
    targets: &[&sled::Tree],
    record: &[JournalWrite],
) -> sled::Result<()> {
    syncer
        .journal()
        .insert(syncer.journal_key(generation), record_bytes)?;
    for (tree, write) in targets.iter().zip(record) {
        match &write.value {
            Some(value) => tree.insert(&write.key, value.as_slice())?,
            None => tree.remove(&write.key)?,
        };
    }
    Ok(())
}

/// Replays every journal record left by a crash, in generation order, then removes it.
/// Returns the highest journal key found (0 if none), above which new records go.
pub(crate) fn recover_journal(db: &sled::Db) -> Result<u64, StoreError> {
    let engine = |table: &str| {
        let table = table.to_owned();
        move |e| StoreError::engine(&table, e)
    };
    let journal = db.open_tree(JOURNAL_TREE).map_err(engine(JOURNAL_TREE))?;
    let mut last = 0;
    let mut replayed = 0_usize;
    for item in &journal {
        let (key, bytes) = item.map_err(engine(JOURNAL_TREE))?;
        let corrupt = |reason: String| StoreError::Corrupt {
            table: JOURNAL_TREE.to_owned(),
            key: crate::key::describe::<u64>(&key),
            reason,
        };
        let generation = u64::decode_key(&key)
            .ok_or_else(|| corrupt("journal key is not a generation".to_owned()))?;
        let record: Vec<JournalWrite> = codec::decode(&bytes).map_err(|f| match f {
            DecodeFailure::Corrupt(reason) => corrupt(reason),
            DecodeFailure::UnsupportedVersion(version) => StoreError::UnsupportedVersion {
                table: JOURNAL_TREE.to_owned(),
                key: generation.to_string(),
                version,
            },
        })?;
        for write in record {
            let tree = db.open_tree(&write.tree).map_err(engine(&write.tree))?;
            match write.value {
                Some(value) => tree.insert(write.key, value),
                None => tree.remove(write.key),
            }
            .map_err(engine(&write.tree))?;
        }
        journal.remove(&key).map_err(engine(JOURNAL_TREE))?;
        last = generation;
        replayed += 1;
    }
    if replayed > 0 {
        tracing::info!(replayed, "replayed journal records after a crash");
    }
    Ok(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Store, StoreConfig};

    fn write(tree: &str, key: u64, value: Option<&str>) -> JournalWrite {
        JournalWrite {
            tree: tree.to_owned(),
            key: key.to_be_bytes().to_vec(),
            value: value.map(|v| codec::encode(&v.to_owned()).unwrap()),
        }
    }

    #[tokio::test]
    async fn journal_records_left_by_a_crash_are_replayed_in_order_on_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
            let kv = store.table::<u64, String>("kv").unwrap();
            store
                .write(|tx| kv.insert(tx, &1, &"old".to_owned()))
                .await
                .unwrap();
            // As if the process died after journalling two write sets but before
            // applying them (or before pruning them): keys above any this run used.
            let first = [
                write("table/kv", 2, Some("two")),
                write("table/kv", 3, Some("three")),
                write("table/other", 9, Some("nine")),
            ];
            let second = [
                write("table/kv", 1, None),
                write("table/kv", 3, Some("THREE")),
            ];
            let journal = store.syncer().journal();
            journal
                .insert(
                    1_000_u64.to_be_bytes(),
                    codec::encode(first.as_slice()).unwrap(),
                )
                .unwrap();
            journal
                .insert(
                    1_001_u64.to_be_bytes(),
                    codec::encode(second.as_slice()).unwrap(),
                )
                .unwrap();
            store.sync().await.unwrap();
        }
        let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
        let kv = store.table::<u64, String>("kv").unwrap();
        let other = store.table::<u64, String>("other").unwrap();
        assert_eq!(kv.get(&1).unwrap(), None);
        assert_eq!(kv.get(&2).unwrap().as_deref(), Some("two"));
        assert_eq!(kv.get(&3).unwrap().as_deref(), Some("THREE"));
        assert_eq!(other.get(&9).unwrap().as_deref(), Some("nine"));
        assert!(store.syncer().journal().is_empty());
        // New records continue above the replayed ones.
        assert_eq!(store.syncer().journal_key(1), 1_002_u64.to_be_bytes());
    }

    #[tokio::test]
    async fn a_corrupt_journal_record_fails_the_open_with_a_typed_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
            let journal = store.syncer().journal();
            let mut bytes = codec::encode([write("table/kv", 1, Some("x"))].as_slice()).unwrap();
            bytes.truncate(bytes.len() - 2);
            journal.insert(77_u64.to_be_bytes(), bytes).unwrap();
            store.sync().await.unwrap();
        }
        match Store::open(dir.path(), StoreConfig::default()) {
            Err(StoreError::Corrupt { table, key, .. }) => {
                assert_eq!((table.as_str(), key.as_str()), (JOURNAL_TREE, "77"));
            }
            other => panic!("unexpected open result {other:?}"),
        }
    }

    #[tokio::test]
    async fn the_journal_is_emptied_once_syncs_cover_its_records() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
        let kv = store.table::<u64, u64>("kv").unwrap();
        for i in 0..20 {
            store.write(|tx| kv.insert(tx, &i, &i)).await.unwrap();
        }
        store.sync().await.unwrap();
        // The committer prunes right after it wakes the writers a sync covered.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !store.syncer().journal().is_empty() {
            assert!(std::time::Instant::now() < deadline, "journal never pruned");
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }

    #[tokio::test]
    async fn a_write_set_over_the_limit_is_refused_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
        let kv = store.table::<u64, String>("kv").unwrap();
        let big = "x".repeat(30 * 1024);
        let err = store
            .write(|tx| {
                for i in 0..4 {
                    kv.insert(tx, &i, &big)?;
                }
                Ok::<_, StoreError>(())
            })
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::TransactionTooLarge {
                    max: WRITE_SET_LEN_MAX_BYTES,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(kv.iter().count(), 0);
        assert_eq!(store.commit_stats().commits, 0);
    }

    #[tokio::test]
    async fn a_transaction_reads_its_own_writes_and_removals() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
        let kv = store.table::<u64, u64>("kv").unwrap();
        store.write(|tx| kv.insert(tx, &1, &10)).await.unwrap();
        let seen = store
            .write(|tx| {
                kv.insert(tx, &2, &20)?;
                let removed = kv.remove(tx, &1)?;
                Ok::<_, StoreError>((removed, kv.get_in(tx, &1)?, kv.get_in(tx, &2)?))
            })
            .await
            .unwrap();
        assert_eq!(seen, (true, None, Some(20)));
        assert_eq!(kv.get(&1).unwrap(), None);
        assert_eq!(kv.get(&2).unwrap(), Some(20));
    }
}
