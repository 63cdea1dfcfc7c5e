//! The wire codec: the one place that knows how values become bytes between
//! nodes (bincode 2 with serde, standard configuration). Swapping the codec
//! means changing this file only.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The largest frame a node sends or accepts, in bytes. Far above any shop
/// message (bodies are capped at 64 KiB at the edge), and small enough that
/// a hostile length prefix cannot make a node allocate much: the framing
/// layer refuses a longer frame before reading it.
pub const FRAME_LEN_MAX: usize = 1 << 20;

/// A value that could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The value could not be encoded (or would exceed [`FRAME_LEN_MAX`]).
    #[error("cannot encode {what}: {reason}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// The codec's message.
        reason: String,
    },
    /// The bytes are not a valid encoding of the expected type.
    #[error("cannot decode {what}: {reason}")]
    Decode {
        /// What was being decoded.
        what: &'static str,
        /// The codec's message.
        reason: String,
    },
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<FRAME_LEN_MAX>()
}

/// Encodes `value`.
///
/// # Errors
/// [`WireError::Encode`] when serde refuses the value or it exceeds
/// [`FRAME_LEN_MAX`].
pub fn encode<T: Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>, WireError> {
    let bytes = bincode::serde::encode_to_vec(value, config()).map_err(|e| WireError::Encode {
        what,
        reason: e.to_string(),
    })?;
    if bytes.len() > FRAME_LEN_MAX {
        return Err(WireError::Encode {
            what,
            reason: format!(
                "{} bytes exceed the frame limit of {FRAME_LEN_MAX}",
                bytes.len()
            ),
        });
    }
    Ok(bytes)
}

/// Decodes a `T` that must fill `bytes` exactly.
///
/// # Errors
/// [`WireError::Decode`] for truncated, garbled or trailing bytes, or a
/// length inside them above [`FRAME_LEN_MAX`].
pub fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, WireError> {
    let (value, read) =
        bincode::serde::decode_from_slice(bytes, config()).map_err(|e| WireError::Decode {
            what,
            reason: e.to_string(),
        })?;
    if read != bytes.len() {
        return Err(WireError::Decode {
            what,
            reason: format!("{} trailing bytes", bytes.len() - read),
        });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Sample {
        id: u64,
        name: String,
        tags: Vec<String>,
    }

    fn sample() -> Sample {
        Sample {
            id: 7,
            name: "ada".into(),
            tags: vec!["a".into(), "b".into()],
        }
    }

    #[test]
    fn values_round_trip() {
        let bytes = encode("sample", &sample()).unwrap();
        assert_eq!(decode::<Sample>("sample", &bytes).unwrap(), sample());
    }

    #[test]
    fn truncated_garbled_and_trailing_bytes_are_typed_errors() {
        let bytes = encode("sample", &sample()).unwrap();
        for cut in 0..bytes.len() {
            assert!(
                decode::<Sample>("sample", &bytes[..cut]).is_err(),
                "cut {cut}"
            );
        }
        let mut trailing = bytes;
        trailing.push(0);
        assert!(decode::<Sample>("sample", &trailing).is_err());
        // A string length claiming far more than the limit fails without
        // allocating it.
        let hostile = [7_u8, 0xfc, 0xff, 0xff, 0xff, 0x7f, b'a'];
        assert!(decode::<Sample>("sample", &hostile).is_err());
    }

    #[test]
    fn values_over_the_frame_limit_are_refused() {
        let big = vec![0_u8; FRAME_LEN_MAX + 1];
        assert!(matches!(encode("big", &big), Err(WireError::Encode { .. })));
    }
}
