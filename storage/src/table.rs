//! Typed tables ([`Table`]) and secondary unique indexes ([`UniqueIndex`]).

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::StoreError;
use crate::key::{self, Key};
use crate::store::TreeHandle;
use crate::tx::Tx;

/// A table of `V` values keyed by `K`, in key order.
///
/// Reads outside a transaction ([`Table::get`], [`Table::iter`], …) see every applied
/// write. Writes take a [`Tx`] and happen inside [`Store::write`](crate::Store::write).
pub struct Table<K, V> {
    tree: TreeHandle,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> Clone for Table<K, V> {
    fn clone(&self) -> Self {
        Self {
            tree: self.tree.clone(),
            _types: PhantomData,
        }
    }
}

impl<K, V> fmt::Debug for Table<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Table")
            .field("name", &self.tree.name())
            .finish_non_exhaustive()
    }
}

impl<K: Key, V: Serialize + DeserializeOwned> Table<K, V> {
    pub(crate) fn new(tree: TreeHandle) -> Self {
        Self {
            tree,
            _types: PhantomData,
        }
    }

    /// The table's name as errors report it (`table/<name>`).
    #[must_use]
    pub fn name(&self) -> &str {
        self.tree.name()
    }

    /// Reads the value at `key`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] or [`StoreError::UnsupportedVersion`] if the stored bytes
    /// do not decode; [`StoreError::Engine`] if the engine fails.
    pub fn get(&self, key: &K) -> Result<Option<V>, StoreError> {
        self.tree.get(key)
    }

    /// Whether `key` is present.
    ///
    /// # Errors
    ///
    /// [`StoreError::Engine`] if the engine fails.
    pub fn contains_key(&self, key: &K) -> Result<bool, StoreError> {
        self.tree.contains(key)
    }

    /// Every row, in key order (reverse with `.rev()`).
    #[must_use]
    pub fn iter(&self) -> Rows<K, V> {
        Rows::new(self.tree.clone(), self.tree.raw().iter())
    }

    /// The first `n` rows in key order, read as one snapshot: no write applies while
    /// they are read (the scan holds the store's visibility lock, so keep `n` small).
    pub(crate) fn first_rows(&self, n: usize) -> Result<Vec<(K, V)>, StoreError> {
        let raw = {
            let _visible = self.tree.read_guard();
            self.tree
                .raw()
                .iter()
                .take(n)
                .collect::<sled::Result<Vec<_>>>()
                .map_err(|e| StoreError::engine(self.tree.name(), e))?
        };
        raw.into_iter()
            .map(|(key, value)| {
                Ok((
                    self.tree.decode_key::<K>(&key)?,
                    self.tree.decode::<K, V>(&key, &value)?,
                ))
            })
            .collect()
    }

    /// The rows whose keys fall in `range`, in key order.
    #[must_use]
    pub fn range<R: RangeBounds<K>>(&self, range: R) -> Rows<K, V> {
        let bound = |b: Bound<&K>| match b {
            Bound::Included(k) => Bound::Included(key::to_bytes(k)),
            Bound::Excluded(k) => Bound::Excluded(key::to_bytes(k)),
            Bound::Unbounded => Bound::Unbounded,
        };
        let bounds = (bound(range.start_bound()), bound(range.end_bound()));
        Rows::new(self.tree.clone(), self.tree.raw().range(bounds))
    }

    /// The rows of a tuple-keyed table whose first key component is `first` — e.g. every
    /// `(user_id, order_id)` of one user — in key order.
    #[must_use]
    pub fn with_first<P: Key>(&self, first: &P) -> Rows<K, V> {
        Rows::new(
            self.tree.clone(),
            self.tree.raw().scan_prefix(key::to_prefix(first)),
        )
    }

    /// Reads the value at `key` inside a transaction (seeing the transaction's writes).
    ///
    /// # Errors
    ///
    /// As [`Table::get`].
    pub fn get_in(&self, tx: &Tx<'_>, key: &K) -> Result<Option<V>, StoreError> {
        tx.get(&self.tree, key)
    }

    /// Sets `key` to `value`.
    ///
    /// # Errors
    ///
    /// [`StoreError::ValueTooLarge`] if the encoded value exceeds the store's limit,
    /// [`StoreError::KeyTooLarge`], [`StoreError::Encode`], or an engine error.
    pub fn insert(&self, tx: &Tx<'_>, key: &K, value: &V) -> Result<(), StoreError> {
        tx.put(&self.tree, key, value)
    }

    /// Removes `key`; returns whether it was present.
    ///
    /// # Errors
    ///
    /// [`StoreError::KeyTooLarge`] or an engine error.
    pub fn remove(&self, tx: &Tx<'_>, key: &K) -> Result<bool, StoreError> {
        tx.delete(&self.tree, key)
    }

    /// Removes `key` without reading it first (see [`Tx::discard`]).
    pub(crate) fn discard(&self, tx: &Tx<'_>, key: &K) -> Result<(), StoreError> {
        tx.discard(&self.tree, key)
    }
}

impl<K: Key, V: Serialize + DeserializeOwned> IntoIterator for &Table<K, V> {
    type Item = Result<(K, V), StoreError>;
    type IntoIter = Rows<K, V>;

    fn into_iter(self) -> Rows<K, V> {
        self.iter()
    }
}

/// An iterator over rows of a [`Table`]; each item fails alone if its bytes are corrupt.
///
/// Not a snapshot: each row is read whole, but a scan that runs alongside writes may see
/// some rows of a later transaction and not others. Read inside a transaction, or by key,
/// where a consistent view matters.
pub struct Rows<K, V> {
    tree: TreeHandle,
    iter: sled::Iter,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> fmt::Debug for Rows<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rows")
            .field("table", &self.tree.name())
            .finish_non_exhaustive()
    }
}

impl<K: Key, V: DeserializeOwned> Rows<K, V> {
    fn new(tree: TreeHandle, iter: sled::Iter) -> Self {
        Self {
            tree,
            iter,
            _types: PhantomData,
        }
    }

    fn decode(&self, item: sled::Result<(sled::IVec, sled::IVec)>) -> Result<(K, V), StoreError> {
        let (key, value) = item.map_err(|e| StoreError::engine(self.tree.name(), e))?;
        let decoded_key = self.tree.decode_key::<K>(&key)?;
        let decoded_value = self.tree.decode::<K, V>(&key, &value)?;
        Ok((decoded_key, decoded_value))
    }
}

impl<K: Key, V: DeserializeOwned> Iterator for Rows<K, V> {
    type Item = Result<(K, V), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        let item = {
            let _visible = self.tree.read_guard();
            self.iter.next()?
        };
        Some(self.decode(item))
    }
}

impl<K: Key, V: DeserializeOwned> DoubleEndedIterator for Rows<K, V> {
    fn next_back(&mut self) -> Option<Self::Item> {
        let item = {
            let _visible = self.tree.read_guard();
            self.iter.next_back()?
        };
        Some(self.decode(item))
    }
}

/// A secondary unique index: each key (a username, an email) maps to at most one owner id.
///
/// Claim the key in the same transaction that writes the owner's row, and the index and
/// the table cannot disagree.
pub struct UniqueIndex<K> {
    tree: TreeHandle,
    _key: PhantomData<fn() -> K>,
}

impl<K> Clone for UniqueIndex<K> {
    fn clone(&self) -> Self {
        Self {
            tree: self.tree.clone(),
            _key: PhantomData,
        }
    }
}

impl<K> fmt::Debug for UniqueIndex<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UniqueIndex")
            .field("name", &self.tree.name())
            .finish_non_exhaustive()
    }
}

impl<K: Key> UniqueIndex<K> {
    pub(crate) fn new(tree: TreeHandle) -> Self {
        Self {
            tree,
            _key: PhantomData,
        }
    }

    /// The owner of `key`, if any.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] if the stored owner does not decode, or an engine error.
    pub fn owner(&self, key: &K) -> Result<Option<u64>, StoreError> {
        self.tree.get(key)
    }

    /// The owner of `key` inside a transaction.
    ///
    /// # Errors
    ///
    /// As [`UniqueIndex::owner`].
    pub fn owner_in(&self, tx: &Tx<'_>, key: &K) -> Result<Option<u64>, StoreError> {
        tx.get(&self.tree, key)
    }

    /// Makes `owner` the owner of `key`. Claiming a key one already owns succeeds.
    ///
    /// # Errors
    ///
    /// [`StoreError::Duplicate`] if another owner holds `key` (abort the transaction by
    /// returning it), or an engine error.
    pub fn claim(&self, tx: &Tx<'_>, key: &K, owner: u64) -> Result<(), StoreError> {
        match self.owner_in(tx, key)? {
            Some(current) if current == owner => Ok(()),
            Some(current) => Err(StoreError::Duplicate {
                index: self.tree.name().to_owned(),
                key: format!("{key:?}"),
                owner: current,
            }),
            None => tx.put(&self.tree, key, &owner),
        }
    }

    /// Frees `key` if `owner` holds it; returns whether it did.
    ///
    /// # Errors
    ///
    /// As [`UniqueIndex::owner`].
    pub fn release(&self, tx: &Tx<'_>, key: &K, owner: u64) -> Result<bool, StoreError> {
        if self.owner_in(tx, key)? == Some(owner) {
            tx.delete(&self.tree, key)
        } else {
            Ok(false)
        }
    }
}
