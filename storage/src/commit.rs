//! Group commit: one committer thread per store makes applied writes durable.
//!
//! Every write transaction that changed something takes a *generation*, a counter bumped
//! right after the engine applied it. A durable writer asks the committer for its
//! generation and waits. The committer reads the newest applied generation `G`, runs one
//! engine flush and one fsync of the store's files, and then publishes "synced up to `G`",
//! which wakes every writer whose generation is at most `G`. Writers that arrive while a
//! sync runs are covered by the next one, so under load one fsync serves many writes.
//!
//! Why a flush *and* an fsync: on Linux, sled 0.34.7's `flush()` writes its log buffers
//! with `sync_file_range`, which survives a process kill but not a power loss (it neither
//! flushes the drive cache nor the file's metadata), and it never syncs the blob files
//! it writes for large pages. So after `flush()` the committer fsyncs every new or grown
//! blob file (and the blob directory), then `sync_all()`s the data file `<dir>/db` through
//! its own descriptor — fsync acts on the inode, whichever descriptor calls it.
//!
//! When the store closes, the committer's last sync is followed by the removal of the
//! journal's record of the last write (see `tx.rs`) and one more sync, so a cleanly
//! closed store carries no record to replay.
//!
//! The flush is blocking, so it runs on this dedicated thread, never on a tokio worker;
//! and it is only ever called from here (sled's `flush_async` from several tasks can hang,
//! sled issue #1308).
//!
//! A failed flush or fsync poisons the store: the kernel may have dropped the dirty pages,
//! so a retry could report success for data that is gone. Every waiter, present and
//! future, gets [`StoreError::SyncFailed`].

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::error::StoreError;

/// Name of the committer threads, as shown by `top -H` and in panics.
const COMMITTER_THREAD_NAME: &str = "bulwark-commit";

/// What the committer publishes after each sync.
#[derive(Clone, Debug, Default)]
struct Synced {
    /// Every write with a generation at most this is durable.
    generation: u64,
    /// Set once a sync failed; the store is poisoned from then on.
    failure: Option<Arc<io::Error>>,
    /// Completed flush + fsync rounds, and the time they took.
    syncs: u64,
    sync_time: Duration,
}

/// Counters of a store's syncs ([`StoreHealth::sync_stats`]): the mean batch
/// is `synced_writes / syncs`, the mean sync time `sync_time / syncs`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SyncStats {
    /// Completed flush + fsync rounds.
    pub syncs: u64,
    /// Writes made durable by them.
    pub synced_writes: u64,
    /// Time spent in them (flush, blob files, fsync).
    pub sync_time: Duration,
}

/// Requests to the committer, guarded by [`Syncer::control`].
#[derive(Debug, Default)]
struct Control {
    /// The highest generation some writer waits for.
    wanted: u64,
    /// The store is closing: sync what is applied, then exit.
    shutdown: bool,
    /// The committer sleeps on the condvar; only then does a writer pay for a wake-up
    /// (a futex syscall). A busy committer re-checks `wanted` before it sleeps again.
    committer_idle: bool,
}

/// State shared by the writers and the committer thread of one store.
#[derive(Debug)]
pub(crate) struct Syncer {
    dir: PathBuf,
    db: sled::Db,
    /// `<dir>/db`, opened separately so the committer can fsync it (sled only calls
    /// `sync_file_range` on its own descriptor).
    data_file: File,
    blob_dir: PathBuf,
    /// The journal record of the last write (`tx.rs`), removed at a clean close.
    last_write: sled::Tree,
    /// `Some(interval)` in the relaxed mode: sync on a timer instead of on request.
    periodic: Option<Duration>,
    /// Generation of the newest applied write; bumped after the engine applied it.
    applied: AtomicU64,
    /// Completed flush + fsync rounds.
    syncs: AtomicU64,
    /// Writers record what they wait for here and wake the committer through `wake`;
    /// a mutex + condvar because the committer is a plain thread that must sleep.
    control: Mutex<Control>,
    wake: Condvar,
    /// Writers await this (async) to learn their generation is durable; a watch channel
    /// because one value, "synced up to", answers every waiter at once.
    synced: watch::Sender<Synced>,
}

fn failure(dir: &Path, synced: &Synced) -> Result<(), StoreError> {
    match &synced.failure {
        Some(source) => Err(StoreError::SyncFailed {
            dir: dir.to_path_buf(),
            source: Arc::clone(source),
        }),
        None => Ok(()),
    }
}

/// Whether a store can still make writes durable, readable without keeping
/// the store open ([`Store::health_view`](crate::Store::health_view)): for a
/// readiness probe that lives as long as the process.
#[derive(Clone, Debug)]
pub struct StoreHealth {
    dir: PathBuf,
    synced: watch::Receiver<Synced>,
}

impl StoreHealth {
    /// `Err` once a sync of the store failed (see [`Store::health`](crate::Store::health)).
    /// A store closed since keeps its last answer.
    ///
    /// # Errors
    ///
    /// [`StoreError::SyncFailed`] naming the store's directory and the cause.
    pub fn check(&self) -> Result<(), StoreError> {
        failure(&self.dir, &self.synced.borrow())
    }

    /// How many syncs the store ran, how many writes they made durable and
    /// how long they took (for metrics). A store closed since keeps its last
    /// figures.
    #[must_use]
    pub fn sync_stats(&self) -> SyncStats {
        let synced = self.synced.borrow();
        SyncStats {
            syncs: synced.syncs,
            synced_writes: synced.generation,
            sync_time: synced.sync_time,
        }
    }
}

fn lock(control: &Mutex<Control>) -> MutexGuard<'_, Control> {
    // The guarded data are two plain values that are valid at every point, so a panic
    // elsewhere while holding the lock leaves nothing half-updated.
    control.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Syncer {
    pub(crate) fn new(
        dir: &Path,
        db: sled::Db,
        data_file: File,
        last_write: sled::Tree,
        periodic: Option<Duration>,
    ) -> Self {
        Self {
            dir: dir.to_path_buf(),
            db,
            data_file,
            blob_dir: dir.join(crate::store::BLOB_DIR_NAME),
            last_write,
            periodic,
            applied: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            control: Mutex::new(Control::default()),
            wake: Condvar::new(),
            synced: watch::Sender::new(Synced::default()),
        }
    }

    pub(crate) fn db(&self) -> &sled::Db {
        &self.db
    }

    pub(crate) fn last_write(&self) -> &sled::Tree {
        &self.last_write
    }

    /// Marks the store failed: every present and future waiter gets `error`.
    pub(crate) fn poison(&self, error: io::Error) {
        tracing::error!(dir = %self.dir.display(), %error, "store poisoned");
        self.synced.send_modify(|s| {
            s.failure.get_or_insert_with(|| Arc::new(error));
        });
    }

    /// Records that one more write has been applied and returns its generation.
    pub(crate) fn note_applied(&self) -> u64 {
        self.applied.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// The generation of the newest applied write.
    pub(crate) fn applied(&self) -> u64 {
        self.applied.load(Ordering::SeqCst)
    }

    pub(crate) fn synced_generation(&self) -> u64 {
        self.synced.borrow().generation
    }

    pub(crate) fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::SeqCst)
    }

    /// Fails if an earlier sync failed.
    pub(crate) fn check_healthy(&self) -> Result<(), StoreError> {
        failure(&self.dir, &self.synced.borrow())
    }

    /// A health view of this store that does not keep it open.
    pub(crate) fn health(&self) -> StoreHealth {
        StoreHealth {
            dir: self.dir.clone(),
            synced: self.synced.subscribe(),
        }
    }

    /// Returns once every write up to `generation` is durable.
    ///
    /// # Errors
    ///
    /// [`StoreError::SyncFailed`] if the sync that should have covered it failed,
    /// [`StoreError::Closed`] if the committer is gone.
    pub(crate) async fn wait_durable(&self, generation: u64) -> Result<(), StoreError> {
        if self.synced_generation() >= generation {
            return Ok(());
        }
        let committer_idle = {
            let mut control = lock(&self.control);
            control.wanted = control.wanted.max(generation);
            control.committer_idle
        };
        if committer_idle {
            self.wake.notify_one();
        }
        let mut synced = self.synced.subscribe();
        let state = synced
            .wait_for(|s| s.generation >= generation || s.failure.is_some())
            .await
            .map_err(|_| StoreError::Closed {
                dir: self.dir.clone(),
            })?
            .clone();
        match state.failure {
            Some(source) if state.generation < generation => Err(StoreError::SyncFailed {
                dir: self.dir.clone(),
                source,
            }),
            _ => Ok(()),
        }
    }

    /// One flush + fsync of everything applied so far, on the calling thread.
    fn sync_files(&self, synced_blobs: &mut HashMap<OsString, u64>) -> io::Result<()> {
        self.db.flush().map_err(io::Error::other)?;
        self.sync_blobs(synced_blobs)?;
        self.data_file.sync_all()
    }

    /// Fsyncs every blob file that is new or has grown since it was last synced, then
    /// the blob directory if it gained entries. Blob files are immutable once written,
    /// so (name, length) identifies a synced one; a blob still being written when it was
    /// synced is synced again once its length changes.
    fn sync_blobs(&self, synced_blobs: &mut HashMap<OsString, u64>) -> io::Result<()> {
        let mut present = HashMap::with_capacity(synced_blobs.len());
        let mut new_entries = false;
        for entry in fs::read_dir(&self.blob_dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let len = match entry.metadata() {
                Ok(meta) => meta.len(),
                // Removed by the engine's garbage collection since the listing.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if synced_blobs.get(&name) != Some(&len) {
                match File::open(entry.path()) {
                    Ok(file) => file.sync_all()?,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                }
                new_entries |= !synced_blobs.contains_key(&name);
            }
            present.insert(name, len);
        }
        *synced_blobs = present;
        if new_entries {
            File::open(&self.blob_dir)?.sync_all()?;
        }
        Ok(())
    }

    /// Blocks until there is something to sync (or the store closes); returns whether
    /// the store is closing.
    fn wait_for_work(&self) -> bool {
        let mut control = lock(&self.control);
        loop {
            if control.shutdown {
                return true;
            }
            let synced = self.synced_generation();
            if control.wanted > synced {
                return false;
            }
            control.committer_idle = true;
            let timed_out = match self.periodic {
                None => {
                    control = self
                        .wake
                        .wait(control)
                        .unwrap_or_else(PoisonError::into_inner);
                    false
                }
                Some(interval) => {
                    let (guard, timeout) = self
                        .wake
                        .wait_timeout(control, interval)
                        .unwrap_or_else(PoisonError::into_inner);
                    control = guard;
                    timeout.timed_out()
                }
            };
            control.committer_idle = false;
            if timed_out && self.applied() > synced {
                return false;
            }
        }
    }

    /// At a clean close, once every write is durable: removes the last write's journal
    /// record and syncs that, so the next open has nothing to replay.
    fn retire_last_write(&self, synced_blobs: &mut HashMap<OsString, u64>) -> io::Result<()> {
        if self
            .last_write
            .remove(crate::tx::LAST_WRITE_KEY)
            .map_err(io::Error::other)?
            .is_some()
        {
            self.sync_files(synced_blobs)?;
        }
        Ok(())
    }

    /// After the journal replayed a record at open: makes the replayed writes durable,
    /// then removes the record and syncs that, before any new write.
    pub(crate) fn settle_replay(&self) -> io::Result<()> {
        let mut synced_blobs = HashMap::new();
        self.sync_files(&mut synced_blobs)?;
        self.retire_last_write(&mut synced_blobs)
    }

    /// The committer thread's loop.
    fn run(&self) {
        let mut synced_blobs = HashMap::new();
        loop {
            let closing = self.wait_for_work();
            let target = self.applied();
            if target > self.synced_generation() {
                let started = Instant::now();
                if let Err(error) = self.sync_files(&mut synced_blobs) {
                    self.poison(error);
                    return;
                }
                let first = self.synced_generation() + 1;
                let batch_len = target + 1 - first;
                self.syncs.fetch_add(1, Ordering::SeqCst);
                let took = started.elapsed();
                self.synced.send_modify(|s| {
                    s.generation = s.generation.max(target);
                    s.syncs += 1;
                    s.sync_time += took;
                });
                tracing::trace!(
                    dir = %self.dir.display(),
                    batch_len,
                    sync_us = started.elapsed().as_micros(),
                    "store synced"
                );
            }
            if closing {
                // Writers are gone (the last store handle is being dropped). A poisoned
                // store keeps the record: a write set that failed or panicked half-way
                // through is completed by replaying it at the next open.
                if self.check_healthy().is_ok()
                    && let Err(error) = self.retire_last_write(&mut synced_blobs)
                {
                    self.poison(error);
                }
                return;
            }
        }
    }
}

/// Owns the committer thread of one store; dropping it syncs what is applied and joins.
#[derive(Debug)]
pub(crate) struct Committer {
    syncer: Arc<Syncer>,
    thread: Option<JoinHandle<()>>,
}

impl Committer {
    /// Starts the committer thread.
    ///
    /// # Errors
    ///
    /// [`StoreError::Io`] if the thread cannot be spawned.
    pub(crate) fn start(syncer: Syncer) -> Result<Self, StoreError> {
        let syncer = Arc::new(syncer);
        let for_thread = Arc::clone(&syncer);
        let thread = std::thread::Builder::new()
            .name(COMMITTER_THREAD_NAME.to_owned())
            .spawn(move || for_thread.run())
            .map_err(|source| StoreError::Io {
                path: syncer.dir.clone(),
                source,
            })?;
        Ok(Self {
            syncer,
            thread: Some(thread),
        })
    }

    pub(crate) fn syncer(&self) -> &Syncer {
        &self.syncer
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        lock(&self.syncer.control).shutdown = true;
        self.syncer.wake.notify_one();
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!(dir = %self.syncer.dir.display(), "store committer panicked");
        }
    }
}
