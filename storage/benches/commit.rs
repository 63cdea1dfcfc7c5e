//! Acknowledged durable commits per second, in one run:
//!
//! - **group commit**: `Store::write` in the default durable mode — writers share the
//!   committer's flush + fsync;
//! - **own sync**: each writer inserts the same row straight into the engine (one plain
//!   insert, cheaper than the store's journalled write) and then does its own `flush()` +
//!   `sync_all()` of the data file, as a store without group commit would. The engine is
//!   used directly here, the only place outside `src/` that names it;
//! - the **raw fsync floor** of the disk: 100-byte append + `sync_all()` in a loop.
//!
//! at 1, 8 and 64 concurrent writers. Goal: group commit at 64 writers ≥ 10× one writer
//! syncing every commit, and ≥ 3× 64 writers syncing for themselves.
//!
//! `cargo bench -p bulwark-storage --bench commit`; `BULWARK_BENCH_SECS` sets the
//! seconds per measurement (default 3), `BULWARK_BENCH_DIR` the parent of the temporary
//! store directories (default: the system temp dir; it must be on a real disk, not tmpfs).

use std::error::Error;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bulwark_storage::{Store, StoreConfig};

/// Concurrent writer counts measured.
const WRITER_COUNTS: [u64; 3] = [1, 8, 64];
/// Seconds per measurement unless `BULWARK_BENCH_SECS` says otherwise: 7 measurements
/// keep the whole run around half a minute.
const RUN_SECS_DEFAULT: f64 = 3.0;
/// Bytes per written value: a small record, so that the sync dominates.
const VALUE_LEN: usize = 100;
/// Engine cache for the own-sync baseline, as the store's default.
const CACHE_CAPACITY_BYTES: u64 = 64 * 1024 * 1024;

type BenchResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

struct Measured {
    commits: u64,
    syncs: u64,
    elapsed: Duration,
}

impl Measured {
    fn per_sec(&self) -> f64 {
        // Counts stay far below 2^52: exact as f64.
        #[allow(clippy::cast_precision_loss)]
        let commits = self.commits as f64;
        commits / self.elapsed.as_secs_f64()
    }
}

fn key(writer: u64, i: u64) -> u64 {
    (writer << 32) | i
}

fn raw_fsync_floor(dir: &Path, run: Duration) -> BenchResult<Measured> {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("fsync-floor"))?;
    let started = Instant::now();
    let mut syncs = 0;
    while started.elapsed() < run {
        file.write_all(&[7; VALUE_LEN])?;
        file.sync_all()?;
        syncs += 1;
    }
    Ok(Measured {
        commits: syncs,
        syncs,
        elapsed: started.elapsed(),
    })
}

fn group_commit(dir: &Path, writers: u64, run: Duration) -> BenchResult<Measured> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(std::thread::available_parallelism()?.get())
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let store = Store::open(dir, StoreConfig::default())?;
        let table = store.table::<u64, Vec<u8>>("kv")?;
        let value = vec![7_u8; VALUE_LEN];
        let before = store.commit_stats();
        let started = Instant::now();
        let tasks: Vec<_> = (0..writers)
            .map(|writer| {
                let (store, table, value) = (store.clone(), table.clone(), value.clone());
                tokio::spawn(async move {
                    let mut i = 0;
                    while started.elapsed() < run {
                        store
                            .write(|tx| table.insert(tx, &key(writer, i), &value))
                            .await?;
                        i += 1;
                    }
                    Ok::<_, bulwark_storage::StoreError>(())
                })
            })
            .collect();
        for task in tasks {
            task.await??;
        }
        let elapsed = started.elapsed();
        let after = store.commit_stats();
        Ok(Measured {
            commits: after.commits - before.commits,
            syncs: after.syncs - before.syncs,
            elapsed,
        })
    })
}

fn own_sync(dir: &Path, writers: u64, run: Duration) -> BenchResult<Measured> {
    let db = sled::Config::new()
        .path(dir)
        .cache_capacity(CACHE_CAPACITY_BYTES)
        .open()?;
    let tree = db.open_tree("kv")?;
    let data_file = File::open(dir.join("db"))?;
    let commits = AtomicU64::new(0);
    let started = Instant::now();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..writers)
            .map(|writer| {
                let (db, tree, data_file, commits) = (&db, &tree, &data_file, &commits);
                scope.spawn(move || -> BenchResult<()> {
                    let value = vec![7_u8; VALUE_LEN];
                    let mut i = 0;
                    while started.elapsed() < run {
                        tree.insert(key(writer, i).to_be_bytes(), value.as_slice())?;
                        db.flush()?;
                        data_file.sync_all()?;
                        commits.fetch_add(1, Ordering::Relaxed);
                        i += 1;
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().map_err(|_| "writer panicked")?)
    })?;
    let commits = commits.load(Ordering::Relaxed);
    Ok(Measured {
        commits,
        syncs: commits,
        elapsed: started.elapsed(),
    })
}

fn main() -> BenchResult<()> {
    let run = Duration::from_secs_f64(
        std::env::var("BULWARK_BENCH_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(RUN_SECS_DEFAULT),
    );
    let parent =
        std::env::var_os("BULWARK_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let root = tempfile::tempdir_in(&parent)?;
    println!(
        "bench dir {} ({:.1} s per measurement)",
        root.path().display(),
        run.as_secs_f64()
    );

    let floor = raw_fsync_floor(root.path(), run)?;
    println!("raw fsync floor: {:.0} fsync/s", floor.per_sec());
    println!();
    println!(
        "| writers | group commit/s | fsyncs | commits per fsync | own flush+fsync commits/s | group ÷ own |"
    );
    println!(
        "|--------:|---------------:|-------:|------------------:|--------------------------:|------------:|"
    );
    let mut group_64 = 0.0;
    let mut own_1 = 0.0;
    let mut own_64 = 0.0;
    for writers in WRITER_COUNTS {
        let group = group_commit(&root.path().join(format!("group-{writers}")), writers, run)?;
        let own = own_sync(&root.path().join(format!("own-{writers}")), writers, run)?;
        #[allow(clippy::cast_precision_loss)]
        let per_sync = group.commits as f64 / group.syncs.max(1) as f64;
        println!(
            "| {writers:>7} | {:>14.0} | {:>6} | {per_sync:>17.1} | {:>25.0} | {:>11.1} |",
            group.per_sec(),
            group.syncs,
            own.per_sec(),
            group.per_sec() / own.per_sec(),
        );
        match writers {
            1 => own_1 = own.per_sec(),
            64 => {
                group_64 = group.per_sec();
                own_64 = own.per_sec();
            }
            _ => {}
        }
    }
    println!();
    println!(
        "group commit at 64 writers: {:.1}x one writer syncing every commit (goal >= 10x), \
         {:.1}x 64 writers syncing for themselves (goal >= 3x)",
        group_64 / own_1,
        group_64 / own_64
    );
    Ok(())
}
