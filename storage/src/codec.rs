//! The value encoding of every record the crate stores.
//!
//! A record is one format-version byte followed by the value encoded with bincode 2
//! (`bincode::config::standard()`, through serde). The version byte lets a later build
//! change the encoding and still read old records, and lets this build refuse records
//! written by a newer one with a typed error instead of misreading them.
//!
//! Decoding never panics and never trusts a length prefix: bincode's allocation limit
//! stops a garbled length from asking for gigabytes.

use bincode::config::{Configuration, Limit, LittleEndian, Varint};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::CodecError;

/// The format version this build writes.
pub(crate) const FORMAT_VERSION: u8 = 1;

/// The most bytes the decoder may allocate for one record. Well above what a record
/// under the value limit can legitimately claim (bincode counts `size_of::<T>()` per
/// element, so a 64 KiB value of tiny strings claims ~1.5 MiB), yet small enough that a
/// corrupt length prefix cannot exhaust memory.
const DECODE_ALLOC_LIMIT_BYTES: usize = 32 * 1024 * 1024;

type Config = Configuration<LittleEndian, Varint, Limit<DECODE_ALLOC_LIMIT_BYTES>>;

fn config() -> Config {
    bincode::config::standard().with_limit::<DECODE_ALLOC_LIMIT_BYTES>()
}

/// Why a record could not be decoded; the caller adds the table and key.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum DecodeFailure {
    /// The version byte is not one this build reads.
    UnsupportedVersion(u8),
    /// The bytes are not a valid encoding of the expected type.
    Corrupt(String),
}

/// Encodes `value` as one record: version byte, then bincode.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    encode_sized(value, ENCODE_CAPACITY_BYTES)
}

/// The buffer [`encode`] starts with: most records of the shop fit, so
/// encoding one does not grow it several times.
const ENCODE_CAPACITY_BYTES: usize = 128;

/// [`encode`] into a buffer that starts with room for `capacity` bytes
/// (a caller that knows about how long the record is).
pub(crate) fn encode_sized<T: Serialize + ?Sized>(
    value: &T,
    capacity: usize,
) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(capacity.max(1));
    out.push(FORMAT_VERSION);
    bincode::serde::encode_into_std_write(value, &mut out, config())
        .map_err(|e| CodecError(e.to_string()))?;
    Ok(out)
}

/// Decodes one record written by [`encode`]; trailing bytes count as corruption.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeFailure> {
    let Some((&version, body)) = bytes.split_first() else {
        return Err(DecodeFailure::Corrupt("empty record".to_owned()));
    };
    if version != FORMAT_VERSION {
        return Err(DecodeFailure::UnsupportedVersion(version));
    }
    let (value, read) = bincode::serde::decode_from_slice::<T, _>(body, config())
        .map_err(|e| DecodeFailure::Corrupt(e.to_string()))?;
    if read != body.len() {
        return Err(DecodeFailure::Corrupt(format!(
            "{} trailing bytes after the value",
            body.len() - read
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct User {
        name: String,
        tags: Vec<String>,
        age: u32,
    }

    fn user() -> User {
        User {
            name: "ada".to_owned(),
            tags: vec!["admin".to_owned()],
            age: 36,
        }
    }

    #[test]
    fn a_record_round_trips_and_starts_with_the_version_byte() {
        let bytes = encode(&user()).unwrap();
        assert_eq!(bytes[0], FORMAT_VERSION);
        assert_eq!(decode::<User>(&bytes).unwrap(), user());
    }

    #[test]
    fn a_newer_version_byte_is_refused_as_unsupported() {
        let mut bytes = encode(&user()).unwrap();
        bytes[0] = FORMAT_VERSION + 1;
        assert_eq!(
            decode::<User>(&bytes),
            Err(DecodeFailure::UnsupportedVersion(FORMAT_VERSION + 1))
        );
    }

    #[test]
    fn every_truncation_of_a_record_is_reported_as_corrupt() {
        let bytes = encode(&user()).unwrap();
        for len in 0..bytes.len() {
            assert!(
                matches!(
                    decode::<User>(&bytes[..len]),
                    Err(DecodeFailure::Corrupt(_))
                ),
                "truncation to {len} bytes decoded"
            );
        }
    }

    #[test]
    fn trailing_bytes_are_reported_as_corrupt() {
        let mut bytes = encode(&user()).unwrap();
        bytes.push(0);
        assert!(matches!(
            decode::<User>(&bytes),
            Err(DecodeFailure::Corrupt(_))
        ));
    }

    #[test]
    fn a_garbled_length_prefix_fails_without_allocating_it() {
        // Version byte, then a varint claiming a string of u64::MAX bytes.
        let bytes = [
            FORMAT_VERSION,
            0xFF,
            0xFF,
            0xFF,
            0xFF,
            0xFF,
            0xFF,
            0xFF,
            0xFF,
            0xFF,
        ];
        assert!(matches!(
            decode::<String>(&bytes),
            Err(DecodeFailure::Corrupt(_))
        ));
        let bytes = [FORMAT_VERSION, 253, 0, 0, 0, 0, 0, 0, 0, 1];
        assert!(matches!(
            decode::<Vec<String>>(&bytes),
            Err(DecodeFailure::Corrupt(_))
        ));
    }
}
