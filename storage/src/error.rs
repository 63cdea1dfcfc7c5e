//! The one error type of the crate, [`StoreError`], and the opaque causes it carries.
//!
//! The storage engine's and the codec's own error types never appear in the public API:
//! they are wrapped in [`EngineError`] and [`CodecError`], which only implement
//! [`std::error::Error`], so the engine can be replaced inside this crate alone.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// Everything that can go wrong in a store.
///
/// Variants name the directory, table, key or stream involved so that a log line is
/// enough to find the record.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Another live store — in this process or another — holds the directory.
    #[error("store directory {} is locked by another live process or store", dir.display())]
    Locked {
        /// The store directory.
        dir: PathBuf,
    },

    /// A file or directory of the store could not be created, opened or locked.
    #[error("i/o error on {}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// The storage engine refused to open the directory (for example a corrupt log).
    #[error("cannot open store {}", dir.display())]
    Open {
        /// The store directory.
        dir: PathBuf,
        /// The engine's error.
        #[source]
        source: EngineError,
    },

    /// The storage engine failed during a read or a write.
    #[error("storage engine error in table {table}")]
    Engine {
        /// The table being read or written.
        table: String,
        /// The engine's error.
        #[source]
        source: EngineError,
    },

    /// A flush or fsync failed. The store accepts no more writes: after a failed fsync
    /// the kernel may have dropped dirty pages, so nothing written since the last good
    /// sync can be trusted. Reopen the store (or restart the service).
    #[error("sync of store {} failed; the store accepts no more writes", dir.display())]
    SyncFailed {
        /// The store directory.
        dir: PathBuf,
        /// The error of the failed flush or fsync (shared by every waiter it failed).
        #[source]
        source: Arc<io::Error>,
    },

    /// The store's committer has stopped (the store is being closed).
    #[error("store {} is closed", dir.display())]
    Closed {
        /// The store directory.
        dir: PathBuf,
    },

    /// A stored value could not be decoded: truncated, garbled, or of another type.
    #[error("corrupt record in table {table} at key {key}: {reason}")]
    Corrupt {
        /// The table holding the record.
        table: String,
        /// The record's key, formatted for humans.
        key: String,
        /// What the decoder found wrong.
        reason: String,
    },

    /// A stored value carries a format version this build does not know (written by a
    /// newer version of the software).
    #[error("record in table {table} at key {key} has unsupported format version {version}")]
    UnsupportedVersion {
        /// The table holding the record.
        table: String,
        /// The record's key, formatted for humans.
        key: String,
        /// The version byte found.
        version: u8,
    },

    /// A value could not be encoded (its `Serialize` implementation failed).
    #[error("cannot encode value for table {table} at key {key}")]
    Encode {
        /// The table being written.
        table: String,
        /// The record's key, formatted for humans.
        key: String,
        /// The codec's error.
        #[source]
        source: CodecError,
    },

    /// An encoded value is larger than the store's `value_len_max`; nothing was written.
    #[error("value of {len} bytes for table {table} at key {key} exceeds the limit of {max} bytes")]
    ValueTooLarge {
        /// The table being written.
        table: String,
        /// The record's key, formatted for humans.
        key: String,
        /// The encoded length.
        len: usize,
        /// The configured limit.
        max: usize,
    },

    /// An encoded key is longer than [`KEY_LEN_MAX`](crate::KEY_LEN_MAX).
    #[error("key of {len} bytes for table {table} exceeds the limit of {max} bytes")]
    KeyTooLarge {
        /// The table being read or written.
        table: String,
        /// The encoded length.
        len: usize,
        /// The limit.
        max: usize,
    },

    /// An append found the stream at another version than the one expected.
    #[error("stream {stream}: expected version {expected}, found {actual}")]
    Conflict {
        /// The stream appended to.
        stream: String,
        /// The version the writer expected.
        expected: u64,
        /// The stream's actual version.
        actual: u64,
    },

    /// A snapshot was saved at a version the stream has not reached.
    #[error(
        "stream {stream}: snapshot at version {version} is ahead of the stream's version {actual}"
    )]
    SnapshotAhead {
        /// The stream.
        stream: String,
        /// The snapshot's version.
        version: u64,
        /// The stream's actual version.
        actual: u64,
    },

    /// A unique index already maps the key to another owner.
    #[error("unique index {index}: key {key} is already taken by {owner}")]
    Duplicate {
        /// The index.
        index: String,
        /// The key, formatted for humans.
        key: String,
        /// The id that owns the key.
        owner: u64,
    },

    /// An id generator has issued every id below 2^53.
    #[error("id generator {generator} is exhausted")]
    IdsExhausted {
        /// The generator.
        generator: String,
    },

    /// A handle of one store was used in a transaction of another store.
    #[error("table {table} belongs to another store")]
    ForeignTable {
        /// The table.
        table: String,
    },

    /// A configuration value is out of range.
    #[error("invalid store configuration: {reason}")]
    InvalidConfig {
        /// What is wrong and what the bound is.
        reason: String,
    },

    /// The encoded write set of a transaction exceeds
    /// [`WRITE_SET_LEN_MAX_BYTES`](crate::WRITE_SET_LEN_MAX_BYTES); nothing was written.
    #[error("transaction write set of {len} bytes exceeds the limit of {max} bytes")]
    TransactionTooLarge {
        /// The encoded length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// An error of the storage engine, kept opaque so that the engine is not part of the API.
#[derive(Debug)]
pub struct EngineError(pub(crate) sled::Error);

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for EngineError {}

/// An error of the value codec, kept opaque so that the codec is not part of the API.
#[derive(Debug)]
pub struct CodecError(pub(crate) String);

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CodecError {}

impl StoreError {
    pub(crate) fn engine(table: &str, source: sled::Error) -> Self {
        Self::Engine {
            table: table.to_owned(),
            source: EngineError(source),
        }
    }
}
