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
//! On success the write set is committed in two steps:
//!
//! 1. one *journal record* — the whole write set — is stored as the value of the one
//!    key of the `journal_last` tree, replacing the previous write's record. A single
//!    insert is atomic in sled.
//! 2. the writes are applied to their trees with plain inserts and removes, while the
//!    store's visibility lock keeps readers from seeing half of them.
//!
//! sled recovers a prefix of its log: recovery stops at the first torn message. Writes
//! run one at a time, so the log holds each write's record before its writes, and all
//! of them before the next write's record. After a crash the recovered prefix therefore
//! ends somewhere in the last write whose record it holds: every earlier write is whole,
//! and that one may be partly applied. [`recover_journal`] replays the record on open:
//! puts and removes are idempotent, so applying its writes again completes it, whether
//! or not they were applied before. One record is all the journal needs to hold, so it
//! costs one in-place update per write — where a record per write, removed once synced,
//! made the journal a queue: two engine operations per write and the node splits and
//! merges of keys that only grow at one end and shrink at the other.
//!
//! The record is removed when the store closes cleanly (after the final sync), so a
//! cleanly closed store carries none; and an open that replayed a record syncs the
//! replay and removes the record before taking any write, so a record is never
//! replayed over writes made after it (by an earlier build that ignores
//! `journal_last`, say). Records of builds that kept one per write (tree `journal`,
//! keyed by generation) are still replayed in generation order, and removed. A store
//! a crash left with a record must be opened again by this build or a later one: an
//! earlier build would not replay it.
//!
//! A write set whose apply fails or panics half-way (an engine error, an engine
//! assertion) poisons the store: every later write is refused, and the close keeps the
//! record, so the next open completes the write.
//!
//! What "a crash" covers: the prefix argument holds for the process dying (kill -9, a
//! panic, OOM): the kernel keeps every byte sled wrote, in order. After a power loss
//! only what the committer fsynced is guaranteed — every acknowledged write, whole —
//! while sled's un-fsynced tail may come back with holes, so a write that was never
//! acknowledged may then be lost in part.
//!
//! A record is kept below sled's blob threshold ([`WRITE_SET_LEN_MAX_BYTES`]) so that it
//! always lies inline in the log: recovery skips a message whose blob file is missing
//! instead of stopping there.

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

/// The engine tree where earlier builds kept a journal record per write, keyed by
/// big-endian generation: replayed and emptied on open.
pub(crate) const JOURNAL_TREE: &str = "journal";

/// The engine tree holding the journal record of the last write, under [`LAST_WRITE_KEY`].
pub(crate) const LAST_WRITE_TREE: &str = "journal_last";

/// The one key of [`LAST_WRITE_TREE`].
pub(crate) const LAST_WRITE_KEY: &[u8] = b"last";

/// Staged writes of a transaction by (tree slot, key); `None` removes the key.
type WriteSet = BTreeMap<(usize, Vec<u8>), Option<Vec<u8>>>;

/// One write of a journal record, as read back by [`recover_journal`].
///
/// The key and value are byte strings to the codec (`serde_bytes`): it writes the
/// length and copies the bytes at once, where serde's default for a `Vec<u8>` is a
/// sequence of one call per byte. The bytes of a record are the same either way (a
/// test pins it), so records written by earlier builds still read.
#[derive(Debug, Deserialize)]
struct JournalWrite {
    /// The engine tree's name.
    tree: String,
    #[serde(with = "serde_bytes")]
    key: Vec<u8>,
    /// `None` removes the key.
    #[serde(with = "serde_bytes")]
    value: Option<Vec<u8>>,
}

/// One write of a journal record as a committing transaction encodes it:
/// [`JournalWrite`] borrowing from the write set, so nothing is copied.
#[derive(Debug, Serialize)]
struct JournalWriteRef<'a> {
    tree: &'a str,
    key: &'a serde_bytes::Bytes,
    value: Option<&'a serde_bytes::Bytes>,
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
        for ((slot, key), value) in &writes {
            let tree = &trees[slot];
            targets.push(tree.raw());
            record.push(JournalWriteRef {
                tree: tree.name(),
                key: serde_bytes::Bytes::new(key),
                value: value.as_deref().map(serde_bytes::Bytes::new),
            });
        }
        // Each write adds its tree's name, key and value, and a few bytes of
        // lengths and tags.
        let len_hint: usize = record
            .iter()
            .map(|w| w.tree.len() + w.key.len() + w.value.map_or(0, |v| v.len()) + 8)
            .sum();
        let bytes =
            codec::encode_sized(&record, len_hint + 8).map_err(|source| StoreError::Encode {
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
            // A panic inside the engine would leave the write set half applied with
            // nothing refusing the next write: poison the store on the way out.
            let _unwinding = PoisonOnUnwind { syncer, generation };
            apply(syncer, bytes, &targets, &record)
        };
        if let Err(source) = applied {
            // The journal record may be in the engine with only some writes applied:
            // only a reopen (which replays it) restores a consistent state, so the
            // poisoned store keeps the record at close (`commit.rs`).
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

/// Poisons the store if dropped while applying a write set unwinds.
struct PoisonOnUnwind<'a> {
    syncer: &'a Syncer,
    generation: u64,
}

impl Drop for PoisonOnUnwind<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        self.syncer.poison(io::Error::other(format!(
            "applying write set {} panicked",
            self.generation
        )));
    }
}

#[cfg(test)]
thread_local! {
    /// Test failpoint: how many tree writes of the next write set on this thread
    /// succeed before the following one fails (`Err`) or panics (`true`).
    static FAIL_AFTER_TREE_WRITES: std::cell::Cell<Option<(usize, bool)>> =
        const { std::cell::Cell::new(None) };
}

#[cfg(test)]
fn failpoint(done: usize) -> sled::Result<()> {
    match FAIL_AFTER_TREE_WRITES.get() {
        Some((after, panics)) if done == after => {
            FAIL_AFTER_TREE_WRITES.set(None);
            assert!(!panics, "failpoint: panic in the engine");
            Err(sled::Error::Unsupported("failpoint".to_owned()))
        }
        _ => Ok(()),
    }
}

fn apply(
    syncer: &Syncer,
    record_bytes: Vec<u8>,
    targets: &[&sled::Tree],
    record: &[JournalWriteRef<'_>],
) -> sled::Result<()> {
    syncer.last_write().insert(LAST_WRITE_KEY, record_bytes)?;
    #[cfg_attr(not(test), expect(unused_variables))]
    for (done, (tree, write)) in targets.iter().zip(record).enumerate() {
        #[cfg(test)]
        failpoint(done)?;
        match write.value {
            Some(value) => tree.insert(&**write.key, &**value)?,
            None => tree.remove(&**write.key)?,
        };
    }
    Ok(())
}

/// Replays what a crash left in the journal: first the records of earlier builds, in
/// generation order (each removed once replayed), then the record of the last write.
/// Returns the tree holding the last write's record and whether a record was replayed;
/// the caller then makes the replay durable and removes that record
/// ([`Syncer::settle_replay`]), so that it is never replayed again over later writes
/// (by a build that ignores it in between, say).
pub(crate) fn recover_journal(db: &sled::Db) -> Result<(sled::Tree, bool), StoreError> {
    let journal = db.open_tree(JOURNAL_TREE).map_err(engine(JOURNAL_TREE))?;
    let mut replayed = 0_usize;
    for item in &journal {
        let (key, bytes) = item.map_err(engine(JOURNAL_TREE))?;
        let generation = u64::decode_key(&key).ok_or_else(|| StoreError::Corrupt {
            table: JOURNAL_TREE.to_owned(),
            key: crate::key::describe::<u64>(&key),
            reason: "journal key is not a generation".to_owned(),
        })?;
        replay(db, JOURNAL_TREE, &generation.to_string(), &bytes)?;
        journal.remove(&key).map_err(engine(JOURNAL_TREE))?;
        replayed += 1;
    }
    let last_write = db
        .open_tree(LAST_WRITE_TREE)
        .map_err(engine(LAST_WRITE_TREE))?;
    if let Some(bytes) = last_write
        .get(LAST_WRITE_KEY)
        .map_err(engine(LAST_WRITE_TREE))?
    {
        replay(db, LAST_WRITE_TREE, "last", &bytes)?;
        replayed += 1;
    }
    if replayed > 0 {
        tracing::info!(replayed, "replayed journal records after a crash");
    }
    Ok((last_write, replayed > 0))
}

fn engine(table: &str) -> impl FnOnce(sled::Error) -> StoreError + '_ {
    move |e| StoreError::engine(table, e)
}

/// Applies the writes of one journal record (`table` and `key` name it in errors).
fn replay(db: &sled::Db, table: &str, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
    let record: Vec<JournalWrite> = codec::decode(bytes).map_err(|f| match f {
        DecodeFailure::Corrupt(reason) => StoreError::Corrupt {
            table: table.to_owned(),
            key: key.to_owned(),
            reason,
        },
        DecodeFailure::UnsupportedVersion(version) => StoreError::UnsupportedVersion {
            table: table.to_owned(),
            key: key.to_owned(),
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Store, StoreConfig};

    /// A journal write as the builds before `serde_bytes` encoded it:
    /// plain `Vec<u8>` fields, which serde writes as sequences of bytes.
    #[derive(Debug, Serialize)]
    struct LegacyWrite {
        tree: String,
        key: Vec<u8>,
        value: Option<Vec<u8>>,
    }

    fn write(tree: &str, key: u64, value: Option<&str>) -> LegacyWrite {
        LegacyWrite {
            tree: tree.to_owned(),
            key: key.to_be_bytes().to_vec(),
            value: value.map(|v| codec::encode(&v.to_owned()).unwrap()),
        }
    }

    #[test]
    fn a_record_encodes_to_the_same_bytes_as_earlier_builds_wrote_and_reads_back() {
        let legacy = [
            write("table/kv", 7, Some("seven")),
            write("index/x", 8, None),
        ];
        let borrowed: Vec<JournalWriteRef<'_>> = legacy
            .iter()
            .map(|w| JournalWriteRef {
                tree: &w.tree,
                key: serde_bytes::Bytes::new(&w.key),
                value: w.value.as_deref().map(serde_bytes::Bytes::new),
            })
            .collect();
        let old_bytes = codec::encode(legacy.as_slice()).unwrap();
        assert_eq!(codec::encode(borrowed.as_slice()).unwrap(), old_bytes);
        let read: Vec<JournalWrite> = codec::decode(&old_bytes).unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!(read[0].tree, "table/kv");
        assert_eq!(read[0].key, 7_u64.to_be_bytes());
        assert_eq!(read[0].value, legacy[0].value);
        assert_eq!(
            (read[1].tree.as_str(), read[1].value.as_ref()),
            ("index/x", None)
        );
    }

    /// Opens the engine of a closed store directly, as the store would find it
    /// after a crash; waits out the engine lock of a store just dropped.
    fn engine_of(dir: &std::path::Path) -> sled::Db {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match sled::Config::new().path(dir).open() {
                Ok(db) => return db,
                Err(e) if std::time::Instant::now() < deadline => {
                    assert!(e.to_string().contains("lock"), "{e}");
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => panic!("engine never unlocked: {e}"),
            }
        }
    }

    /// Leaves `records` in the journal of the closed store in `dir`: the last
    /// write's record, or with `legacy` one record per write as earlier builds
    /// kept them (keys 1000, 1001, ...).
    fn leave_records(dir: &std::path::Path, records: &[&[LegacyWrite]], legacy: bool) {
        let db = engine_of(dir);
        for (i, record) in records.iter().enumerate() {
            let bytes = codec::encode(*record).unwrap();
            if legacy {
                let key = (1_000 + i as u64).to_be_bytes();
                db.open_tree(JOURNAL_TREE)
                    .unwrap()
                    .insert(key, bytes)
                    .unwrap();
            } else {
                db.open_tree(LAST_WRITE_TREE)
                    .unwrap()
                    .insert(LAST_WRITE_KEY, bytes)
                    .unwrap();
            }
        }
        db.flush().unwrap();
    }

    async fn store_with_old_value(dir: &std::path::Path) {
        let store = Store::open(dir, StoreConfig::default()).unwrap();
        let kv = store.table::<u64, String>("kv").unwrap();
        store
            .write(|tx| kv.insert(tx, &1, &"old".to_owned()))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn the_last_writes_record_left_by_a_crash_completes_that_write_on_open() {
        let dir = tempfile::tempdir().unwrap();
        store_with_old_value(dir.path()).await;
        // As if the process died while applying a write set: its record is in
        // the log, its writes only in part (here none).
        let record = [
            write("table/kv", 1, None),
            write("table/kv", 3, Some("three")),
            write("table/other", 9, Some("nine")),
        ];
        leave_records(dir.path(), &[&record], false);
        let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
        let kv = store.table::<u64, String>("kv").unwrap();
        let other = store.table::<u64, String>("other").unwrap();
        assert_eq!(kv.get(&1).unwrap(), None);
        assert_eq!(kv.get(&3).unwrap().as_deref(), Some("three"));
        assert_eq!(other.get(&9).unwrap().as_deref(), Some("nine"));
        // The open made the replay durable and removed the record, so nothing
        // (a build that ignores the record, then this one again) can replay it
        // over later writes.
        let last = store.syncer().last_write().get(LAST_WRITE_KEY).unwrap();
        assert!(last.is_none(), "the replayed record is still there");
        // Replaying it again changes nothing: the next write's record replaces it.
        store
            .write(|tx| kv.insert(tx, &3, &"THREE".to_owned()))
            .await
            .unwrap();
        drop((kv, other, store));
        let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
        let kv = store.table::<u64, String>("kv").unwrap();
        assert_eq!(kv.get(&3).unwrap().as_deref(), Some("THREE"));
    }

    /// A store with `kv` 1 = "one", then a write of `kv` 1 = "ONE" and `other`
    /// 9 = "nine" whose second tree write fails (or panics, with `panics`)
    /// after the first was applied. Returns the store and the outcome.
    async fn write_failing_half_way(
        dir: &std::path::Path,
        panics: bool,
    ) -> (Store, Result<(), StoreError>) {
        let store = Store::open(dir, StoreConfig::default()).unwrap();
        let kv = store.table::<u64, String>("kv").unwrap();
        let other = store.table::<u64, String>("other").unwrap();
        store
            .write(|tx| kv.insert(tx, &1, &"one".to_owned()))
            .await
            .unwrap();
        // The write set applies `kv` (opened first, the lower slot) before `other`.
        FAIL_AFTER_TREE_WRITES.set(Some((1, panics)));
        let writer = store.clone();
        // The current-thread test runtime runs the task on this thread, where the
        // failpoint is set.
        let outcome = tokio::spawn(async move {
            writer
                .write(|tx| {
                    kv.insert(tx, &1, &"ONE".to_owned())?;
                    other.insert(tx, &9, &"nine".to_owned())
                })
                .await
        })
        .await;
        FAIL_AFTER_TREE_WRITES.set(None);
        let outcome = match outcome {
            Ok(result) => result,
            Err(join) => {
                assert!(join.is_panic(), "{join}");
                assert!(panics, "the write panicked without the panic failpoint");
                Ok(())
            }
        };
        (store, outcome)
    }

    async fn assert_failed_write_is_completed_on_reopen(dir: &std::path::Path, store: Store) {
        // The store refuses every write from now on.
        let kv = store.table::<u64, String>("kv").unwrap();
        let refused = store
            .write(|tx| kv.insert(tx, &2, &"two".to_owned()))
            .await
            .unwrap_err();
        assert!(
            matches!(refused, StoreError::SyncFailed { .. }),
            "{refused:?}"
        );
        drop((kv, store));
        // The close kept the record, so the open completes the write.
        let store = Store::open(dir, StoreConfig::default()).unwrap();
        let kv = store.table::<u64, String>("kv").unwrap();
        let other = store.table::<u64, String>("other").unwrap();
        assert_eq!(kv.get(&1).unwrap().as_deref(), Some("ONE"));
        assert_eq!(other.get(&9).unwrap().as_deref(), Some("nine"));
        assert_eq!(kv.get(&2).unwrap(), None);
    }

    #[tokio::test]
    async fn a_write_set_that_fails_half_way_poisons_the_store_and_is_completed_at_the_next_open() {
        let dir = tempfile::tempdir().unwrap();
        let (store, outcome) = write_failing_half_way(dir.path(), false).await;
        let err = outcome.unwrap_err();
        assert!(matches!(err, StoreError::Engine { .. }), "{err:?}");
        assert_failed_write_is_completed_on_reopen(dir.path(), store).await;
    }

    #[tokio::test]
    async fn a_write_set_that_panics_half_way_poisons_the_store_and_is_completed_at_the_next_open()
    {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = write_failing_half_way(dir.path(), true).await;
        assert_failed_write_is_completed_on_reopen(dir.path(), store).await;
    }

    #[tokio::test]
    async fn records_of_earlier_builds_left_by_a_crash_are_replayed_in_order_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        store_with_old_value(dir.path()).await;
        let first = [
            write("table/kv", 2, Some("two")),
            write("table/kv", 3, Some("three")),
            write("table/other", 9, Some("nine")),
        ];
        let second = [
            write("table/kv", 1, None),
            write("table/kv", 3, Some("THREE")),
        ];
        leave_records(dir.path(), &[&first, &second], true);
        let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
        let kv = store.table::<u64, String>("kv").unwrap();
        let other = store.table::<u64, String>("other").unwrap();
        assert_eq!(kv.get(&1).unwrap(), None);
        assert_eq!(kv.get(&2).unwrap().as_deref(), Some("two"));
        assert_eq!(kv.get(&3).unwrap().as_deref(), Some("THREE"));
        assert_eq!(other.get(&9).unwrap().as_deref(), Some("nine"));
        let journal = store.syncer().db().open_tree(JOURNAL_TREE).unwrap();
        assert!(journal.is_empty());
    }

    #[tokio::test]
    async fn a_corrupt_journal_record_fails_the_open_with_a_typed_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        store_with_old_value(dir.path()).await;
        let mut bytes = codec::encode([write("table/kv", 1, Some("x"))].as_slice()).unwrap();
        bytes.truncate(bytes.len() - 2);
        {
            let db = engine_of(dir.path());
            let last = db.open_tree(LAST_WRITE_TREE).unwrap();
            last.insert(LAST_WRITE_KEY, bytes).unwrap();
            db.flush().unwrap();
        }
        match Store::open(dir.path(), StoreConfig::default()) {
            Err(StoreError::Corrupt { table, key, .. }) => {
                assert_eq!((table.as_str(), key.as_str()), (LAST_WRITE_TREE, "last"));
            }
            other => panic!("unexpected open result {other:?}"),
        }
    }

    #[tokio::test]
    async fn the_journal_holds_the_last_writes_record_until_a_clean_close_removes_it() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
            let kv = store.table::<u64, u64>("kv").unwrap();
            for i in 0..20 {
                store.write(|tx| kv.insert(tx, &i, &i)).await.unwrap();
            }
            let last = store.syncer().last_write();
            assert_eq!(last.len(), 1, "one record, however many writes");
            let bytes = last.get(LAST_WRITE_KEY).unwrap().unwrap();
            let record: Vec<JournalWrite> = codec::decode(&bytes).unwrap();
            assert_eq!(record.len(), 1);
            assert_eq!(record[0].key, 19_u64.to_be_bytes());
        }
        let db = engine_of(dir.path());
        assert!(db.open_tree(LAST_WRITE_TREE).unwrap().is_empty());
        assert!(db.open_tree(JOURNAL_TREE).unwrap().is_empty());
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
