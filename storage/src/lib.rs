//! bulwark-storage: one durable store per service instance.
//!
//! A [`Store`] is one sled 0.34.7 database in its own directory, locked against a second
//! opener. On it a service opens typed handles — [`Table`]s with a [`UniqueIndex`] or
//! two, an [`EventLog`], an [`Outbox`], an [`Inbox`], an [`IdGenerator`] — and changes
//! any of them together in one atomic [`Store::write`]. In the default
//! [`Durability::Durable`] mode `write` returns only after the fsync that covers the
//! write; concurrent writers share that fsync (group commit). Reads are synchronous.
//!
//! sled appears only inside this crate: its errors are wrapped ([`EngineError`]) and no
//! public signature mentions it, so the engine can be replaced here alone.
//!
//! # Layout
//!
//! - `store.rs` — [`Store`], [`StoreConfig`], [`Durability`], the directory lock and the
//!   tree registry.
//! - `tx.rs` — write transactions ([`Tx`]) and the journal that makes a write set
//!   atomic without sled's transactions, and why.
//! - `commit.rs` — the group committer: one thread per store that flushes the engine and
//!   fsyncs its files for every waiting writer at once, and why both are needed.
//! - `codec.rs` — the value encoding: a format-version byte, then bincode 2.
//! - `key.rs` — the sealed [`Key`] trait: order-preserving key encodings.
//! - `table.rs` — [`Table`], [`Rows`] and [`UniqueIndex`].
//! - `event_log.rs` — [`EventLog`]: streams, expected-version appends, snapshots.
//! - `outbox.rs` — [`Outbox`]: events written with the state change, drained and
//!   confirmed at least once.
//! - `inbox.rs` — [`Inbox`]: processed message ids with retention pruning.
//! - `ids.rs` — [`IdGenerator`]: ids below 2^53 from durably reserved blocks.
//! - `error.rs` — [`StoreError`].
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), bulwark_storage::StoreError> {
//! use bulwark_storage::{Store, StoreConfig};
//!
//! let dir = tempfile::tempdir().expect("temp dir");
//! let store = Store::open(dir.path(), StoreConfig::default())?;
//! let users = store.table::<u64, String>("users")?;
//! let by_name = store.unique_index::<String>("users_by_name")?;
//! let outbox = store.outbox::<String>("events")?;
//! let id = store.id_generator("users")?.next_id().await?;
//!
//! // Returns once durable.
//! store
//!     .write(|tx| {
//!         by_name.claim(tx, &"ada".to_owned(), id)?;
//!         users.insert(tx, &id, &"ada".to_owned())?;
//!         outbox.push(tx, &format!("user.created {id}"))
//!     })
//!     .await?;
//! assert_eq!(users.get(&id)?, Some("ada".to_owned()));
//! # Ok(())
//! # }
//! ```

#![warn(clippy::pedantic)]

mod codec;
mod commit;
mod error;
mod event_log;
mod ids;
mod inbox;
mod key;
mod outbox;
mod store;
mod table;
mod tx;

pub use commit::{StoreHealth, SyncStats};
pub use error::{CodecError, EngineError, StoreError};
pub use event_log::{EventLog, Events};
pub use ids::{ID_MAX, IdGenerator};
pub use inbox::{Inbox, unix_time_ms};
pub use key::Key;
pub use outbox::{DRAIN_LEN_MAX, Outbox, OutboxEntry};
pub use store::{
    CommitStats, Durability, KEY_LEN_MAX, Store, StoreConfig, VALUE_LEN_CEILING_BYTES,
};
pub use table::{Rows, Table, UniqueIndex};
pub use tx::{Tx, WRITE_SET_LEN_MAX_BYTES};
