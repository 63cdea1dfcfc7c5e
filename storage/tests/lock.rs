//! A store directory belongs to one live process. The engine's own lock is taken per
//! process and reported as an untyped I/O error, so the store takes an `flock` of its
//! own on `<dir>/bulwark.lock`; this test pins that a *second process* opening a held
//! directory gets `StoreError::Locked` naming it, and that the lock goes with its holder.
//!
//! The second process is this test binary re-executed with an environment variable that
//! selects the child entry point.

// A test binary: its helpers panic to report a failure, as `#[test]` fns may.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use bulwark_storage::{Store, StoreConfig, StoreError};

/// Set in the child: the directory it must try to open.
const CHILD_DIR_ENV: &str = "BULWARK_STORAGE_LOCK_CHILD_DIR";

/// Runs the child entry point on `dir` and returns its verdict line.
fn open_in_child(dir: &Path) -> String {
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process_entry_point",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR_ENV, dir)
        .output()
        .unwrap();
    assert!(output.status.success(), "child failed: {output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    stdout
        .lines()
        .find(|l| l.starts_with("VERDICT "))
        .unwrap_or_else(|| panic!("no verdict in child output: {stdout}"))
        .to_owned()
}

#[test]
#[ignore = "the child process of another test; it runs only when re-executed by it"]
fn child_process_entry_point() {
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else {
        return; // Not the child: nothing to do.
    };
    // Ends libtest's "test child_process_entry_point ... " so that it prefixes no verdict.
    println!();
    match Store::open(&dir, StoreConfig::default()) {
        Ok(_) => println!("VERDICT opened"),
        Err(StoreError::Locked { dir: locked }) => {
            println!("VERDICT locked {}", locked.display());
        }
        Err(other) => println!("VERDICT error {other}"),
    }
}

#[test]
fn a_directory_held_by_a_live_process_cannot_be_opened_by_another() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreConfig::default()).unwrap();

    let verdict = open_in_child(dir.path());
    assert_eq!(verdict, format!("VERDICT locked {}", dir.path().display()));

    drop(store);
    assert_eq!(open_in_child(dir.path()), "VERDICT opened");
}
