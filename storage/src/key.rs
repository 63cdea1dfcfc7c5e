//! Order-preserving key encodings.
//!
//! Keys are compared as raw bytes by the engine, so each key type encodes to bytes whose
//! lexicographic order is the type's own order: unsigned integers big-endian, signed
//! integers big-endian with the sign bit flipped, strings and byte strings as they are.
//! Inside a tuple every component but fixed-width integers must be self-delimiting; a
//! string there is escaped the way the `FoundationDB` tuple layer does it (`00` becomes
//! `00 FF`, and `00 00` ends it), which keeps the order and lets a tuple prefix select
//! every key that starts with it.
//!
//! The trait is sealed: a wrong encoding would silently break range scans, so the crate
//! keeps the set of key types to the ones it has tested.

use std::fmt::Debug;

/// Byte that ends an escaped string inside a tuple, after [`ESCAPE`].
const TERMINATOR: u8 = 0x00;
/// Byte that follows a literal `00` inside an escaped string.
const ESCAPE: u8 = 0xFF;

mod sealed {
    // Sealing pattern: the trait must be public to be a supertrait of `Key`, yet is not
    // reachable from outside the crate.
    #[allow(unreachable_pub)]
    pub trait Sealed {}
}

/// A key type of a table: encodes to bytes that sort in the key's own order.
///
/// Implemented for `u64`, `u128`, `i64`, `String`, `Vec<u8>` and pairs and triples of
/// those. Sealed.
pub trait Key: Sized + Clone + Debug + sealed::Sealed {
    /// Appends the key's bytes when it is the whole key (or the last tuple component).
    #[doc(hidden)]
    fn encode_key(&self, out: &mut Vec<u8>);

    /// Decodes a whole key; `None` if the bytes are not a valid encoding.
    #[doc(hidden)]
    fn decode_key(bytes: &[u8]) -> Option<Self>;

    /// Appends the key's self-delimiting form, used for components inside a tuple.
    #[doc(hidden)]
    fn encode_nested(&self, out: &mut Vec<u8>);

    /// Decodes a self-delimiting form and returns the bytes after it.
    #[doc(hidden)]
    fn decode_nested(bytes: &[u8]) -> Option<(Self, &[u8])>;
}

/// Encodes `key` as the whole key of a record.
pub(crate) fn to_bytes<K: Key>(key: &K) -> Vec<u8> {
    let mut out = Vec::new();
    key.encode_key(&mut out);
    out
}

/// Encodes `key` as a tuple prefix: every key `(key, ..)` starts with these bytes.
pub(crate) fn to_prefix<K: Key>(key: &K) -> Vec<u8> {
    let mut out = Vec::new();
    key.encode_nested(&mut out);
    out
}

/// Formats raw key bytes for an error message when they cannot be decoded.
pub(crate) fn describe_raw(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(2 + 2 * bytes.len());
    out.push_str("0x");
    for &b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out
}

/// Formats raw key bytes of type `K` for an error message.
pub(crate) fn describe<K: Key>(bytes: &[u8]) -> String {
    match K::decode_key(bytes) {
        Some(key) => format!("{key:?}"),
        None => describe_raw(bytes),
    }
}

macro_rules! fixed_width {
    ($ty:ty, $len:expr, $to:expr, $from:expr) => {
        impl sealed::Sealed for $ty {}

        impl Key for $ty {
            fn encode_key(&self, out: &mut Vec<u8>) {
                let to: fn($ty) -> [u8; $len] = $to;
                out.extend_from_slice(&to(*self));
            }

            fn decode_key(bytes: &[u8]) -> Option<Self> {
                let from: fn([u8; $len]) -> $ty = $from;
                Some(from(<[u8; $len]>::try_from(bytes).ok()?))
            }

            fn encode_nested(&self, out: &mut Vec<u8>) {
                self.encode_key(out);
            }

            fn decode_nested(bytes: &[u8]) -> Option<(Self, &[u8])> {
                if bytes.len() < $len {
                    return None;
                }
                let (head, rest) = bytes.split_at($len);
                Some((Self::decode_key(head)?, rest))
            }
        }
    };
}

fixed_width!(u64, 8, u64::to_be_bytes, u64::from_be_bytes);
fixed_width!(u128, 16, u128::to_be_bytes, u128::from_be_bytes);
fixed_width!(
    i64,
    8,
    |v| (v.cast_unsigned() ^ (1 << 63)).to_be_bytes(),
    |b| (u64::from_be_bytes(b) ^ (1 << 63)).cast_signed()
);

fn encode_escaped(bytes: &[u8], out: &mut Vec<u8>) {
    for &b in bytes {
        out.push(b);
        if b == TERMINATOR {
            out.push(ESCAPE);
        }
    }
    out.extend_from_slice(&[TERMINATOR, TERMINATOR]);
}

fn decode_escaped(bytes: &[u8]) -> Option<(Vec<u8>, &[u8])> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == TERMINATOR {
            match bytes.get(i + 1) {
                Some(&ESCAPE) => {
                    out.push(TERMINATOR);
                    i += 2;
                }
                Some(&TERMINATOR) => return Some((out, &bytes[i + 2..])),
                _ => return None,
            }
        } else {
            out.push(b);
            i += 1;
        }
    }
    None
}

impl sealed::Sealed for Vec<u8> {}

impl Key for Vec<u8> {
    fn encode_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }

    fn decode_key(bytes: &[u8]) -> Option<Self> {
        Some(bytes.to_vec())
    }

    fn encode_nested(&self, out: &mut Vec<u8>) {
        encode_escaped(self, out);
    }

    fn decode_nested(bytes: &[u8]) -> Option<(Self, &[u8])> {
        decode_escaped(bytes)
    }
}

impl sealed::Sealed for String {}

impl Key for String {
    fn encode_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }

    fn decode_key(bytes: &[u8]) -> Option<Self> {
        String::from_utf8(bytes.to_vec()).ok()
    }

    fn encode_nested(&self, out: &mut Vec<u8>) {
        encode_escaped(self.as_bytes(), out);
    }

    fn decode_nested(bytes: &[u8]) -> Option<(Self, &[u8])> {
        let (raw, rest) = decode_escaped(bytes)?;
        Some((String::from_utf8(raw).ok()?, rest))
    }
}

impl<A: Key, B: Key> sealed::Sealed for (A, B) {}

impl<A: Key, B: Key> Key for (A, B) {
    fn encode_key(&self, out: &mut Vec<u8>) {
        self.encode_nested(out);
    }

    fn decode_key(bytes: &[u8]) -> Option<Self> {
        match Self::decode_nested(bytes)? {
            (key, []) => Some(key),
            _ => None,
        }
    }

    fn encode_nested(&self, out: &mut Vec<u8>) {
        self.0.encode_nested(out);
        self.1.encode_nested(out);
    }

    fn decode_nested(bytes: &[u8]) -> Option<(Self, &[u8])> {
        let (a, rest) = A::decode_nested(bytes)?;
        let (b, rest) = B::decode_nested(rest)?;
        Some(((a, b), rest))
    }
}

impl<A: Key, B: Key, C: Key> sealed::Sealed for (A, B, C) {}

impl<A: Key, B: Key, C: Key> Key for (A, B, C) {
    fn encode_key(&self, out: &mut Vec<u8>) {
        self.encode_nested(out);
    }

    fn decode_key(bytes: &[u8]) -> Option<Self> {
        match Self::decode_nested(bytes)? {
            (key, []) => Some(key),
            _ => None,
        }
    }

    fn encode_nested(&self, out: &mut Vec<u8>) {
        self.0.encode_nested(out);
        self.1.encode_nested(out);
        self.2.encode_nested(out);
    }

    fn decode_nested(bytes: &[u8]) -> Option<(Self, &[u8])> {
        let (a, rest) = A::decode_nested(bytes)?;
        let (b, rest) = B::decode_nested(rest)?;
        let (c, rest) = C::decode_nested(rest)?;
        Some(((a, b, c), rest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_order_preserved<K: Key + Ord + Clone>(mut keys: Vec<K>) {
        keys.sort();
        let mut encoded: Vec<Vec<u8>> = keys.iter().map(to_bytes).collect();
        encoded.sort();
        let decoded: Vec<K> = encoded.iter().map(|b| K::decode_key(b).unwrap()).collect();
        assert_eq!(decoded, keys);
    }

    #[test]
    fn unsigned_integers_sort_as_big_endian_bytes() {
        assert_order_preserved(vec![0_u64, 1, 255, 256, 1 << 40, u64::MAX]);
        assert_order_preserved(vec![0_u128, 7, 1 << 64, u128::MAX]);
    }

    #[test]
    fn signed_integers_sort_with_negatives_first() {
        assert_order_preserved(vec![i64::MIN, -300, -1, 0, 1, 300, i64::MAX]);
    }

    #[test]
    fn tuples_with_strings_sort_by_component_even_with_nul_bytes() {
        assert_order_preserved(vec![
            ("a".to_owned(), 5_u64),
            ("a\0".to_owned(), 0),
            ("a\0b".to_owned(), 0),
            ("ab".to_owned(), 0),
            (String::new(), u64::MAX),
            ("b".to_owned(), 1),
        ]);
        assert_order_preserved(vec![
            (1_u64, "x".to_owned(), 3_u64),
            (1, "x".to_owned(), 4),
            (1, "y".to_owned(), 0),
            (2, String::new(), 0),
        ]);
    }

    #[test]
    fn a_tuple_prefix_is_a_byte_prefix_of_every_key_that_starts_with_it() {
        let prefix = to_prefix(&"order-1".to_owned());
        let key = to_bytes(&("order-1".to_owned(), 9_u64));
        let other = to_bytes(&("order-10".to_owned(), 9_u64));
        assert!(key.starts_with(&prefix));
        assert!(!other.starts_with(&prefix));
    }

    #[test]
    fn malformed_key_bytes_decode_to_none_instead_of_panicking() {
        assert_eq!(u64::decode_key(&[1, 2, 3]), None);
        assert_eq!(<(String, u64)>::decode_key(b"abc"), None);
        assert_eq!(<(String, u64)>::decode_key(&[b'a', 0, 7]), None);
        assert_eq!(String::decode_key(&[0xFF, 0xFE]), None);
        assert_eq!(describe::<u64>(&[1, 2]), "0x0102");
        assert_eq!(describe::<u64>(&7_u64.to_be_bytes()), "7");
    }
}
