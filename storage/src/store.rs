//! [`Store`]: one engine database per service instance, its configuration, its directory
//! lock, the table registry and write transactions ([`Tx`]).

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use fs2::FileExt;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::{self, DecodeFailure};
use crate::commit::{Committer, StoreHealth, Syncer};
use crate::error::StoreError;
use crate::event_log::EventLog;
use crate::ids::IdGenerator;
use crate::inbox::Inbox;
use crate::key::{self, Key};
use crate::outbox::Outbox;
use crate::table::{Table, UniqueIndex};
use crate::tx::{self, Tx};

/// The hard ceiling of [`StoreConfig::value_len_max`].
///
/// sled 0.34.7 stores a log message larger than a quarter of its 512 KiB segment (about
/// 128 KiB) as a separate blob file, which its flush never fsyncs. Half of that leaves
/// room for the key and the engine's framing, so a single record always stays in the
/// log. (Pages of several records can still exceed it; the committer fsyncs those blob
/// files itself.)
pub const VALUE_LEN_CEILING_BYTES: usize = 64 * 1024;

/// The longest encoded key. Keys live in the engine's index nodes, which hold many of
/// them; 1 KiB fits any id, name or email with room to spare.
pub const KEY_LEN_MAX: usize = 1024;

/// The longest accepted `Durability::Periodic` interval: a relaxed store should still
/// lose at most a minute of writes.
const PERIODIC_INTERVAL_MS_MAX: u64 = 60_000;

/// The smallest accepted cache: below this the engine thrashes on its own index.
const CACHE_CAPACITY_BYTES_MIN: u64 = 1024 * 1024;

/// The default cache per store. sled's own default is 1 GiB *per database*, far too much
/// for a node running a handful of services.
const CACHE_CAPACITY_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;

/// The default value limit: every record of the shop is far smaller.
const VALUE_LEN_MAX_DEFAULT: usize = 32 * 1024;

/// The advisory lock file in the store directory.
const LOCK_FILE_NAME: &str = "bulwark.lock";

/// sled 0.34.7's data file (`Config::db_path`), fsynced by the committer.
const DATA_FILE_NAME: &str = "db";

/// sled 0.34.7's configuration file, which it writes without syncing.
const CONF_FILE_NAME: &str = "conf";

/// sled 0.34.7's directory of blob files (`Config::blob_path`).
pub(crate) const BLOB_DIR_NAME: &str = "blobs";

/// How long `open` waits for the engine's file lock when it already holds the store's own
/// lock: that happens only when a store of this process on the same directory was just
/// dropped and the engine is still tearing down its background threads.
const ENGINE_LOCK_WAIT_MS: u64 = 5_000;

/// Poll interval while waiting for that engine lock.
const ENGINE_LOCK_POLL_MS: u64 = 10;

/// Source of [`StoreInner::id`], which ties table handles to their store.
static NEXT_STORE_ID: AtomicU64 = AtomicU64::new(1);

/// When a write is acknowledged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Durability {
    /// [`Store::write`] returns only after the flush + fsync covering the write (the
    /// default). Concurrent writes share one fsync (group commit).
    #[default]
    Durable,
    /// [`Store::write`] returns once the write is applied; the committer syncs every
    /// `interval_ms`. A crash or power loss can lose the writes of the last interval.
    /// [`Store::sync`] still waits for durability on demand.
    Periodic {
        /// Time between syncs, at most one minute.
        interval_ms: u64,
    },
}

/// How a store is opened.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreConfig {
    /// The engine's page cache for this store (default 64 MiB, at least 1 MiB).
    pub cache_capacity_bytes: u64,
    /// When writes are acknowledged (default [`Durability::Durable`]).
    pub durability: Durability,
    /// The largest encoded value a write may store (default 32 KiB, at most
    /// [`VALUE_LEN_CEILING_BYTES`]). Larger values are refused with
    /// [`StoreError::ValueTooLarge`].
    pub value_len_max: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            cache_capacity_bytes: CACHE_CAPACITY_BYTES_DEFAULT,
            durability: Durability::Durable,
            value_len_max: VALUE_LEN_MAX_DEFAULT,
        }
    }
}

impl StoreConfig {
    /// Sets [`StoreConfig::cache_capacity_bytes`].
    #[must_use]
    pub fn with_cache_capacity_bytes(mut self, bytes: u64) -> Self {
        self.cache_capacity_bytes = bytes;
        self
    }

    /// Sets [`StoreConfig::durability`].
    #[must_use]
    pub fn with_durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Sets [`StoreConfig::value_len_max`].
    #[must_use]
    pub fn with_value_len_max(mut self, bytes: usize) -> Self {
        self.value_len_max = bytes;
        self
    }

    fn validate(&self) -> Result<(), StoreError> {
        let invalid = |reason: String| Err(StoreError::InvalidConfig { reason });
        if self.cache_capacity_bytes < CACHE_CAPACITY_BYTES_MIN {
            return invalid(format!(
                "cache_capacity_bytes {} is below {CACHE_CAPACITY_BYTES_MIN}",
                self.cache_capacity_bytes
            ));
        }
        if self.value_len_max == 0 || self.value_len_max > VALUE_LEN_CEILING_BYTES {
            return invalid(format!(
                "value_len_max {} is not in 1..={VALUE_LEN_CEILING_BYTES}",
                self.value_len_max
            ));
        }
        if let Durability::Periodic { interval_ms } = self.durability
            && (interval_ms == 0 || interval_ms > PERIODIC_INTERVAL_MS_MAX)
        {
            return invalid(format!(
                "durability interval_ms {interval_ms} is not in 1..={PERIODIC_INTERVAL_MS_MAX}"
            ));
        }
        Ok(())
    }
}

/// Counters of a store's group commit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CommitStats {
    /// Write transactions applied (each one that changed something).
    pub commits: u64,
    /// Flush + fsync rounds completed by the committer.
    pub syncs: u64,
    /// Every write up to this many commits is durable.
    pub synced_generation: u64,
}

/// A store: one engine database in one directory, owned by one service instance.
///
/// Cheap to clone (an `Arc` inside); handles ([`Table`], [`EventLog`], …) keep it open.
/// When the last clone and handle are dropped the committer syncs what was applied, and
/// the directory is unlocked.
///
/// Reads are synchronous and see every applied write, durable or not. Writes go through
/// [`Store::write`], which returns only after durability in the default mode.
#[derive(Clone, Debug)]
pub struct Store {
    inner: Arc<StoreInner>,
}

struct StoreInner {
    /// Unique in the process: a handle carries it so that using it in a transaction of
    /// another store fails instead of writing to the wrong tree.
    id: u64,
    dir: PathBuf,
    config: StoreConfig,
    /// Dropped first: syncs what is applied and stops the committer thread.
    committer: Committer,
    /// Held by a write transaction from its first read to its last write: transactions
    /// of one store run one at a time, so they are serializable.
    writer: Mutex<()>,
    /// Taken exclusively while a committing transaction applies its writes, and shared by
    /// reads outside transactions, which therefore see all of a write set or none of it.
    visibility: RwLock<()>,
    registry: RwLock<Registry>,
    /// Held for the store's lifetime; dropped last, after the engine, so that the
    /// directory is unlocked only once nothing of this store touches it.
    _lock: File,
}

impl fmt::Debug for StoreInner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.dir)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The trees opened on a store, each once; a tree's slot identifies it in a write set.
#[derive(Default)]
struct Registry {
    slots: HashMap<String, usize>,
    trees: Vec<sled::Tree>,
}

/// A named tree of a store, as the typed handles hold it.
#[derive(Clone)]
pub(crate) struct TreeHandle {
    store: Store,
    slot: usize,
    name: Arc<str>,
    tree: sled::Tree,
}

impl fmt::Debug for TreeHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TreeHandle")
            .field("name", &self.name)
            .field("dir", &self.store.inner.dir)
            .finish_non_exhaustive()
    }
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Takes the store's own advisory lock. It is an `flock`, tied to this open file
/// description: a second open in the same process fails like one in another process,
/// and the kernel releases it when the process dies, however it dies.
fn lock_dir(dir: &Path) -> Result<File, StoreError> {
    let path = dir.join(LOCK_FILE_NAME);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_error(&path))?;
    match file.try_lock_exclusive() {
        Ok(()) => Ok(file),
        Err(e) if e.raw_os_error() == fs2::lock_contended_error().raw_os_error() => {
            Err(StoreError::Locked {
                dir: dir.to_path_buf(),
            })
        }
        Err(e) => Err(io_error(&path)(e)),
    }
}

/// Opens the engine. Holding the store lock, a failure of the engine's own file lock
/// can only come from a store of this process on the same directory that is still
/// shutting down, so that one is waited out for a bounded time.
fn open_engine(dir: &Path, config: &StoreConfig) -> Result<sled::Db, StoreError> {
    let engine_config = sled::Config::new()
        .path(dir)
        .cache_capacity(config.cache_capacity_bytes);
    let deadline = Instant::now() + Duration::from_millis(ENGINE_LOCK_WAIT_MS);
    loop {
        match engine_config.open() {
            Ok(db) => return Ok(db),
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(ENGINE_LOCK_POLL_MS));
            }
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                return Err(StoreError::Locked {
                    dir: dir.to_path_buf(),
                });
            }
            Err(source) => {
                return Err(StoreError::Open {
                    dir: dir.to_path_buf(),
                    source: crate::error::EngineError(source),
                });
            }
        }
    }
}

/// Fsyncs a file or directory so that a new entry or an unsynced write survives power loss.
fn sync_path(path: &Path) -> Result<(), StoreError> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io_error(path))
}

impl Store {
    /// Opens (creating if needed) the store in `dir` and starts its committer thread.
    ///
    /// Blocking: it reads the engine's log. Call it from `spawn_blocking` or at start-up.
    ///
    /// # Errors
    ///
    /// [`StoreError::Locked`] if another live store holds `dir` (in this or another
    /// process); [`StoreError::InvalidConfig`] for out-of-range settings;
    /// [`StoreError::Io`] or [`StoreError::Open`] if the directory or the engine cannot
    /// be opened.
    pub fn open(dir: impl AsRef<Path>, config: StoreConfig) -> Result<Self, StoreError> {
        config.validate()?;
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        let lock = lock_dir(&dir)?;
        let db = open_engine(&dir, &config)?;

        // The engine creates these entries and its config file without syncing them.
        sync_path(&dir.join(CONF_FILE_NAME))?;
        sync_path(&dir.join(BLOB_DIR_NAME))?;
        sync_path(&dir)?;
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_path(parent)?;
        }

        let (last_write, replayed) = tx::recover_journal(&db)?;

        let data_path = dir.join(DATA_FILE_NAME);
        let data_file = File::open(&data_path).map_err(io_error(&data_path))?;
        let periodic = match config.durability {
            Durability::Durable => None,
            Durability::Periodic { interval_ms } => Some(Duration::from_millis(interval_ms)),
        };
        let syncer = Syncer::new(&dir, db, data_file, last_write, periodic);
        if replayed {
            syncer.settle_replay().map_err(io_error(&dir))?;
        }
        let committer = Committer::start(syncer)?;
        tracing::debug!(dir = %dir.display(), ?config, "store opened");
        Ok(Self {
            inner: Arc::new(StoreInner {
                id: NEXT_STORE_ID.fetch_add(1, Ordering::Relaxed),
                dir,
                config,
                committer,
                writer: Mutex::new(()),
                visibility: RwLock::new(()),
                registry: RwLock::new(Registry::default()),
                _lock: lock,
            }),
        })
    }

    /// The store's directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The configuration the store was opened with.
    #[must_use]
    pub fn config(&self) -> &StoreConfig {
        &self.inner.config
    }

    /// The group-commit counters.
    #[must_use]
    pub fn commit_stats(&self) -> CommitStats {
        let syncer = self.syncer();
        CommitStats {
            commits: syncer.applied(),
            syncs: syncer.syncs(),
            synced_generation: syncer.synced_generation(),
        }
    }

    /// Opens the typed table `name` (created empty if new).
    ///
    /// # Errors
    ///
    /// [`StoreError::Engine`] if the engine cannot create the tree.
    pub fn table<K: Key, V: Serialize + DeserializeOwned>(
        &self,
        name: &str,
    ) -> Result<Table<K, V>, StoreError> {
        Ok(Table::new(self.tree(&format!("table/{name}"))?))
    }

    /// Opens the unique index `name`: each key maps to at most one owner id.
    ///
    /// # Errors
    ///
    /// [`StoreError::Engine`] if the engine cannot create the tree.
    pub fn unique_index<K: Key>(&self, name: &str) -> Result<UniqueIndex<K>, StoreError> {
        Ok(UniqueIndex::new(self.tree(&format!("index/{name}"))?))
    }

    /// Opens the event log `name` (its events, stream heads and snapshots).
    ///
    /// # Errors
    ///
    /// [`StoreError::Engine`] if the engine cannot create the trees.
    pub fn event_log<E: Serialize + DeserializeOwned>(
        &self,
        name: &str,
    ) -> Result<EventLog<E>, StoreError> {
        Ok(EventLog::new(
            self.tree(&format!("events/{name}"))?,
            self.tree(&format!("stream_heads/{name}"))?,
            self.tree(&format!("snapshots/{name}"))?,
        ))
    }

    /// Opens the outbox `name`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Engine`] if the engine cannot create the trees.
    pub fn outbox<E: Serialize + DeserializeOwned>(
        &self,
        name: &str,
    ) -> Result<Outbox<E>, StoreError> {
        Ok(Outbox::new(
            self.tree(&format!("outbox/{name}"))?,
            self.meta()?,
            name,
        ))
    }

    /// Opens the inbox `name`, whose processed ids are kept `retention_ms` before
    /// [`Inbox::prune`] may remove them.
    ///
    /// # Errors
    ///
    /// [`StoreError::Engine`] if the engine cannot create the trees.
    pub fn inbox<K: Key>(&self, name: &str, retention_ms: u64) -> Result<Inbox<K>, StoreError> {
        Ok(Inbox::new(
            self.tree(&format!("inbox/{name}"))?,
            self.tree(&format!("inbox_by_time/{name}"))?,
            retention_ms,
        ))
    }

    /// Opens the id generator `name`. Clones share its reserved block.
    ///
    /// # Errors
    ///
    /// [`StoreError::Engine`] if the engine cannot create the tree.
    pub fn id_generator(&self, name: &str) -> Result<IdGenerator, StoreError> {
        Ok(IdGenerator::new(self.meta()?, name))
    }

    /// Runs `f` as one atomic, serializable transaction over any tables of the store and
    /// returns its result — in [`Durability::Durable`] mode only after the flush + fsync
    /// that covers the write (shared with concurrent writers). A transaction that wrote
    /// nothing still waits until everything it could have read is durable.
    ///
    /// `f` runs once, on the calling task, holding the store's writer lock: keep it short
    /// and free of blocking calls, and never start another write of the same store inside
    /// it. Return `Err` to abort: nothing of the transaction is written. Store errors
    /// inside `f` convert into `E` with `?`.
    ///
    /// # Errors
    ///
    /// Whatever `f` returns, or a [`StoreError`] converted into `E`: the write set is too
    /// large ([`StoreError::TransactionTooLarge`]), the engine failed
    /// ([`StoreError::Engine`]), or the sync failed ([`StoreError::SyncFailed`]; the
    /// write may or may not survive a crash).
    pub async fn write<R, E, F>(&self, f: F) -> Result<R, E>
    where
        F: FnOnce(&Tx<'_>) -> Result<R, E>,
        E: From<StoreError>,
    {
        self.write_tracked(f).await.map(|(value, _)| value)
    }

    /// [`Store::write`], also returning the generation the write needed to be durable.
    pub(crate) async fn write_tracked<R, E, F>(&self, f: F) -> Result<(R, u64), E>
    where
        F: FnOnce(&Tx<'_>) -> Result<R, E>,
        E: From<StoreError>,
    {
        let (value, generation) = self.apply(f)?;
        if self.inner.config.durability == Durability::Durable {
            self.syncer().wait_durable(generation).await?;
        }
        Ok((value, generation))
    }

    /// Waits until every write applied so far is durable (also in periodic mode).
    ///
    /// # Errors
    ///
    /// [`StoreError::SyncFailed`] if the sync failed, [`StoreError::Closed`] if the
    /// committer is gone.
    pub async fn sync(&self) -> Result<(), StoreError> {
        let syncer = self.syncer();
        syncer.check_healthy()?;
        syncer.wait_durable(syncer.applied()).await
    }

    /// Whether the store can still make writes durable: `Err`
    /// ([`StoreError::SyncFailed`]) once a flush or fsync failed. That is
    /// permanent for this open store (the kernel may have dropped the data a
    /// retry would report as written): every later write fails too, and only
    /// reopening the store — restarting the process — recovers. Cheap: it reads
    /// one shared value, so a readiness probe may call it on every request.
    ///
    /// # Errors
    ///
    /// [`StoreError::SyncFailed`] naming the store's directory and the cause.
    pub fn health(&self) -> Result<(), StoreError> {
        self.syncer().check_healthy()
    }

    /// [`Store::health`] as a value that does not keep the store open.
    #[must_use]
    pub fn health_view(&self) -> StoreHealth {
        self.syncer().health()
    }

    pub(crate) fn syncer(&self) -> &Syncer {
        self.inner.committer.syncer()
    }

    /// Runs and commits the transaction `f`; returns its result and the generation a
    /// caller must wait for to see it durable.
    fn apply<R, E, F>(&self, f: F) -> Result<(R, u64), E>
    where
        F: FnOnce(&Tx<'_>) -> Result<R, E>,
        E: From<StoreError>,
    {
        let syncer = self.syncer();
        syncer.check_healthy()?;
        // A panic in another writer's closure leaves nothing half-done behind this lock:
        // its write set was never applied.
        let writer = self
            .inner
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let tx = Tx::new(self.inner.id, self.inner.config.value_len_max, writer);
        let value = f(&tx)?;
        let generation = match tx.commit(syncer, &self.inner.visibility)? {
            Some(generation) => generation,
            None => syncer.applied(),
        };
        Ok((value, generation))
    }

    /// The tree `name`, opened once and then reused.
    pub(crate) fn tree(&self, name: &str) -> Result<TreeHandle, StoreError> {
        let handle = |slot: usize, tree: &sled::Tree| TreeHandle {
            store: self.clone(),
            slot,
            name: Arc::from(name),
            tree: tree.clone(),
        };
        {
            let registry = self
                .inner
                .registry
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(&slot) = registry.slots.get(name) {
                return Ok(handle(slot, &registry.trees[slot]));
            }
        }
        let mut registry = self
            .inner
            .registry
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(&slot) = registry.slots.get(name) {
            return Ok(handle(slot, &registry.trees[slot]));
        }
        let tree = self
            .syncer()
            .db()
            .open_tree(name)
            .map_err(|e| StoreError::engine(name, e))?;
        let slot = registry.trees.len();
        registry.trees.push(tree.clone());
        registry.slots.insert(name.to_owned(), slot);
        Ok(handle(slot, &tree))
    }

    /// The store's metadata tree (id generators' high-water marks, outbox sequences).
    pub(crate) fn meta(&self) -> Result<TreeHandle, StoreError> {
        self.tree("meta")
    }
}

impl TreeHandle {
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    pub(crate) fn store_id(&self) -> u64 {
        self.store.inner.id
    }

    pub(crate) fn slot(&self) -> usize {
        self.slot
    }

    /// The raw tree. Outside a transaction, read it under [`TreeHandle::read_guard`].
    pub(crate) fn raw(&self) -> &sled::Tree {
        &self.tree
    }

    /// Shared visibility lock: while held, no write set is half applied.
    pub(crate) fn read_guard(&self) -> RwLockReadGuard<'_, ()> {
        self.store
            .inner
            .visibility
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Encodes a key, refusing one longer than [`KEY_LEN_MAX`].
    pub(crate) fn key_bytes<K: Key>(&self, key: &K) -> Result<Vec<u8>, StoreError> {
        let bytes = key::to_bytes(key);
        if bytes.len() > KEY_LEN_MAX {
            return Err(StoreError::KeyTooLarge {
                table: self.name.to_string(),
                len: bytes.len(),
                max: KEY_LEN_MAX,
            });
        }
        Ok(bytes)
    }

    /// Decodes a stored value, naming the table and the key on failure.
    pub(crate) fn decode<K: Key, V: DeserializeOwned>(
        &self,
        key: &[u8],
        value: &[u8],
    ) -> Result<V, StoreError> {
        codec::decode(value).map_err(|failure| match failure {
            DecodeFailure::UnsupportedVersion(version) => StoreError::UnsupportedVersion {
                table: self.name.to_string(),
                key: key::describe::<K>(key),
                version,
            },
            DecodeFailure::Corrupt(reason) => StoreError::Corrupt {
                table: self.name.to_string(),
                key: key::describe::<K>(key),
                reason,
            },
        })
    }

    /// Decodes a stored key, naming the table on failure.
    pub(crate) fn decode_key<K: Key>(&self, key: &[u8]) -> Result<K, StoreError> {
        K::decode_key(key).ok_or_else(|| StoreError::Corrupt {
            table: self.name.to_string(),
            key: key::describe_raw(key),
            reason: "key is not a valid encoding of the key type".to_owned(),
        })
    }

    /// Reads one value outside any transaction.
    pub(crate) fn get<K: Key, V: DeserializeOwned>(
        &self,
        key: &K,
    ) -> Result<Option<V>, StoreError> {
        let key = self.key_bytes(key)?;
        let value = {
            let _visible = self.read_guard();
            self.tree
                .get(&key)
                .map_err(|e| StoreError::engine(&self.name, e))?
        };
        match value {
            Some(value) => self.decode::<K, V>(&key, &value).map(Some),
            None => Ok(None),
        }
    }

    /// Whether `key` is present, outside any transaction.
    pub(crate) fn contains<K: Key>(&self, key: &K) -> Result<bool, StoreError> {
        let key = self.key_bytes(key)?;
        let _visible = self.read_guard();
        self.tree
            .contains_key(key)
            .map_err(|e| StoreError::engine(&self.name, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    struct User {
        name: String,
        email: String,
    }

    fn user(name: &str) -> User {
        User {
            name: name.to_owned(),
            email: format!("{name}@example.com"),
        }
    }

    fn open(dir: &Path) -> Store {
        Store::open(dir, StoreConfig::default()).unwrap()
    }

    #[tokio::test]
    async fn a_failed_sync_poisons_the_store_for_every_later_write_and_its_health_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let table = store.table::<u64, String>("kv").unwrap();
        store
            .write(|tx| table.insert(tx, &1, &"one".to_owned()))
            .await
            .unwrap();
        assert!(store.health().is_ok());
        let view = store.health_view();
        assert!(view.check().is_ok());
        let stats = view.sync_stats();
        assert!(stats.syncs >= 1, "{stats:?}");
        assert_eq!(stats.synced_writes, 1, "{stats:?}");
        // The committer lists the blob directory in every sync; without it the
        // sync fails, as a failed fsync would.
        fs::remove_dir_all(dir.path().join(BLOB_DIR_NAME)).unwrap();
        let failed = store
            .write(|tx| table.insert(tx, &2, &"two".to_owned()))
            .await
            .unwrap_err();
        assert!(
            matches!(failed, StoreError::SyncFailed { .. }),
            "{failed:?}"
        );
        let health = store.health().unwrap_err();
        assert!(
            matches!(health, StoreError::SyncFailed { .. }),
            "{health:?}"
        );
        assert!(
            health
                .to_string()
                .contains(&dir.path().display().to_string()),
            "{health}"
        );
        // Permanent: restoring the directory does not make the store trust
        // its unsynced writes again.
        fs::create_dir(dir.path().join(BLOB_DIR_NAME)).unwrap();
        let later = store
            .write(|tx| table.insert(tx, &3, &"three".to_owned()))
            .await
            .unwrap_err();
        assert!(matches!(later, StoreError::SyncFailed { .. }), "{later:?}");
        assert!(store.health().is_err());
        drop(table);
        drop(store);
        let closed = view.check().unwrap_err();
        assert!(
            matches!(closed, StoreError::SyncFailed { .. }),
            "{closed:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn group_commit_shares_fsyncs_among_64_writers_and_every_ack_follows_its_fsync() {
        const WRITERS: u64 = 64;
        const WRITES_PER_WRITER: u64 = 20;
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let table = store.table::<u64, String>("kv").unwrap();
        let before = store.commit_stats();
        let tasks: Vec<_> = (0..WRITERS)
            .map(|writer| {
                let (store, table) = (store.clone(), table.clone());
                tokio::spawn(async move {
                    for i in 0..WRITES_PER_WRITER {
                        let key = writer * 1_000 + i;
                        let ((), needed) = store
                            .write_tracked(|tx| table.insert(tx, &key, &format!("v{key}")))
                            .await
                            .unwrap();
                        // Acknowledged: the sync covering this write has completed.
                        let synced = store.commit_stats().synced_generation;
                        assert!(
                            synced >= needed,
                            "ack for generation {needed} before sync (synced {synced})"
                        );
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let after = store.commit_stats();
        let commits = after.commits - before.commits;
        let syncs = after.syncs - before.syncs;
        assert_eq!(commits, WRITERS * WRITES_PER_WRITER);
        assert!(syncs >= 1);
        assert!(
            syncs <= commits / 4,
            "{syncs} syncs for {commits} commits: group commit is not batching"
        );
        assert_eq!(table.iter().count(), usize::try_from(commits).unwrap());
    }

    #[tokio::test]
    async fn a_value_over_the_limit_is_refused_and_nothing_of_the_transaction_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Store::open(dir.path(), StoreConfig::default().with_value_len_max(1024)).unwrap();
        let kv = store.table::<u64, String>("kv").unwrap();
        let commits_before = store.commit_stats().commits;
        let err = store
            .write(|tx| {
                kv.insert(tx, &1, &"small".to_owned())?;
                kv.insert(tx, &2, &"x".repeat(2_000))
            })
            .await
            .unwrap_err();
        match err {
            StoreError::ValueTooLarge {
                table,
                key,
                len,
                max,
            } => {
                assert_eq!((table.as_str(), key.as_str(), max), ("table/kv", "2", 1024));
                assert!(len > 2_000);
            }
            other => panic!("unexpected error {other:?}"),
        }
        assert_eq!(kv.get(&1).unwrap(), None);
        assert_eq!(kv.get(&2).unwrap(), None);
        assert_eq!(store.commit_stats().commits, commits_before);
        // Just under the limit is accepted.
        store
            .write(|tx| kv.insert(tx, &3, &"y".repeat(1_000)))
            .await
            .unwrap();
    }

    #[test]
    fn a_value_limit_at_or_above_the_blob_threshold_is_refused_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig::default().with_value_len_max(VALUE_LEN_CEILING_BYTES + 1);
        assert!(matches!(
            Store::open(dir.path(), config),
            Err(StoreError::InvalidConfig { .. })
        ));
        let config =
            StoreConfig::default().with_durability(Durability::Periodic { interval_ms: 0 });
        assert!(matches!(
            Store::open(dir.path(), config),
            Err(StoreError::InvalidConfig { .. })
        ));
    }

    #[tokio::test]
    async fn corrupt_and_newer_version_records_give_typed_errors_naming_table_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let users = store.table::<u64, User>("users").unwrap();
        let raw = store.tree("table/users").unwrap();
        let good = codec::encode(&user("ada")).unwrap();
        let truncated = good[..good.len() - 3].to_vec();
        let mut newer = good.clone();
        newer[0] = codec::FORMAT_VERSION + 1;
        store
            .write(|tx| {
                users.insert(tx, &1, &user("ada"))?;
                tx.insert_raw(&raw, 7_u64.to_be_bytes().to_vec(), truncated)?;
                tx.insert_raw(&raw, 8_u64.to_be_bytes().to_vec(), newer)?;
                tx.insert_raw(&raw, vec![1, 2, 3], good)?;
                tx.insert_raw(&raw, 9_u64.to_be_bytes().to_vec(), Vec::new())
            })
            .await
            .unwrap();

        assert_eq!(users.get(&1).unwrap(), Some(user("ada")));
        match users.get(&7).unwrap_err() {
            StoreError::Corrupt { table, key, .. } => {
                assert_eq!((table.as_str(), key.as_str()), ("table/users", "7"));
            }
            other => panic!("unexpected error {other:?}"),
        }
        match users.get(&8).unwrap_err() {
            StoreError::UnsupportedVersion {
                table,
                key,
                version,
            } => {
                assert_eq!((table.as_str(), key.as_str()), ("table/users", "8"));
                assert_eq!(version, codec::FORMAT_VERSION + 1);
            }
            other => panic!("unexpected error {other:?}"),
        }
        assert!(matches!(users.get(&9), Err(StoreError::Corrupt { .. })));
        // Inside a transaction too.
        let err = store.write(|tx| users.get_in(tx, &7)).await.unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }));
        // A scan reports each bad row (the malformed key included) and goes on.
        let rows: Vec<_> = users.iter().collect();
        assert_eq!(rows.len(), 5);
        assert_eq!(rows.iter().filter(|r| r.is_ok()).count(), 1);
        let bad_key = rows.iter().find_map(|r| match r {
            Err(StoreError::Corrupt { key, .. }) if key == "0x010203" => Some(()),
            _ => None,
        });
        assert!(bad_key.is_some(), "{rows:?}");
    }

    #[test]
    fn a_second_open_of_a_held_directory_fails_with_locked_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let first = open(dir.path());
        match Store::open(dir.path(), StoreConfig::default()) {
            Err(StoreError::Locked { dir: locked }) => assert_eq!(locked, dir.path()),
            other => panic!("second open did not fail with Locked: {other:?}"),
        }
        let message = StoreError::Locked {
            dir: dir.path().to_path_buf(),
        }
        .to_string();
        assert!(message.contains(&dir.path().display().to_string()));
        drop(first);
        // Released on drop.
        drop(open(dir.path()));
    }

    #[tokio::test]
    async fn acknowledged_writes_are_present_after_the_store_is_dropped_and_reopened() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open(dir.path());
            let users = store.table::<u64, User>("users").unwrap();
            for id in 0..50_u64 {
                store
                    .write(|tx| users.insert(tx, &id, &user(&format!("u{id}"))))
                    .await
                    .unwrap();
            }
            store.write(|tx| users.remove(tx, &10)).await.unwrap();
        }
        let store = open(dir.path());
        let users = store.table::<u64, User>("users").unwrap();
        assert_eq!(users.iter().count(), 49);
        assert_eq!(users.get(&49).unwrap(), Some(user("u49")));
        assert_eq!(users.get(&10).unwrap(), None);
        let keys: Vec<u64> = users.range(20..23).map(|r| r.unwrap().0).collect();
        assert_eq!(keys, vec![20, 21, 22]);
        let last = users.iter().next_back().unwrap().unwrap().0;
        assert_eq!(last, 49);
    }

    #[tokio::test]
    async fn a_unique_index_refuses_a_second_owner_and_frees_a_released_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let users = store.table::<u64, User>("users").unwrap();
        let by_email = store.unique_index::<String>("users_by_email").unwrap();
        let create = |id: u64, name: &str| {
            let (users, by_email, u) = (users.clone(), by_email.clone(), user(name));
            let store = store.clone();
            async move {
                store
                    .write(|tx| {
                        by_email.claim(tx, &u.email, id)?;
                        users.insert(tx, &id, &u)
                    })
                    .await
            }
        };
        create(1, "ada").await.unwrap();
        let err = create(2, "ada").await.unwrap_err();
        assert!(
            matches!(&err, StoreError::Duplicate { owner: 1, key, .. } if key.contains("ada@example.com")),
            "{err:?}"
        );
        assert_eq!(users.get(&2).unwrap(), None);
        let email = user("ada").email;
        store
            .write(|tx| {
                by_email.release(tx, &email, 1)?;
                users.remove(tx, &1)
            })
            .await
            .unwrap();
        create(2, "ada").await.unwrap();
        assert_eq!(by_email.owner(&email).unwrap(), Some(2));
    }

    #[tokio::test]
    async fn tuple_keys_list_one_owners_rows_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let by_user = store.table::<(u64, u64), ()>("orders_by_user").unwrap();
        store
            .write(|tx| {
                for (user, order) in [(2, 5), (1, 9), (2, 1), (3, 4), (2, 3)] {
                    by_user.insert(tx, &(user, order), &())?;
                }
                Ok::<_, StoreError>(())
            })
            .await
            .unwrap();
        let orders: Vec<u64> = by_user.with_first(&2_u64).map(|r| r.unwrap().0.1).collect();
        assert_eq!(orders, vec![1, 3, 5]);
    }

    #[tokio::test]
    async fn a_handle_of_another_store_is_refused_inside_a_transaction() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (store_a, store_b) = (open(a.path()), open(b.path()));
        let table_b = store_b.table::<u64, u64>("kv").unwrap();
        let err = store_a
            .write(|tx| table_b.insert(tx, &1, &1))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::ForeignTable { .. }));
        assert_eq!(table_b.get(&1).unwrap(), None);
    }

    #[tokio::test]
    async fn periodic_mode_acknowledges_before_the_sync_and_sync_waits_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(
            dir.path(),
            // Long enough that the timer never fires during the test.
            StoreConfig::default().with_durability(Durability::Periodic {
                interval_ms: PERIODIC_INTERVAL_MS_MAX,
            }),
        )
        .unwrap();
        let kv = store.table::<u64, u64>("kv").unwrap();
        let synced_before = store.commit_stats().synced_generation;
        for i in 0..10 {
            store.write(|tx| kv.insert(tx, &i, &i)).await.unwrap();
        }
        let stats = store.commit_stats();
        assert_eq!(stats.synced_generation, synced_before);
        store.sync().await.unwrap();
        let stats = store.commit_stats();
        assert_eq!(stats.synced_generation, stats.commits);
    }

    #[tokio::test]
    async fn a_read_only_transaction_does_not_count_as_a_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let kv = store.table::<u64, u64>("kv").unwrap();
        let before = store.commit_stats();
        let value = store.write(|tx| kv.get_in(tx, &1)).await.unwrap();
        assert_eq!(value, None);
        assert_eq!(store.commit_stats().commits, before.commits);
    }
}
