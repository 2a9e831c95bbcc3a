//! Deterministic binary encoding for tradelog: values (commands, events, messages, state) to
//! bytes and back, checksummed versioned envelopes, and the state hash.
//!
//! Owns: the byte format. The same value always encodes to the same bytes (postcard's
//! encoding of the serde data model is canonical for the types we feed it: no maps with
//! unspecified order, no floats). Envelopes carry a magic, a version, the payload length and
//! a CRC32C so that corruption is detected before decoding.
//!
//! Must never depend on: other tradelog crates, I/O, clocks. Callers own files and sockets.

#![forbid(unsafe_code)]

use serde::{de::DeserializeOwned, Serialize};
use sha2::{Digest, Sha256};

/// Largest payload an envelope may carry (1 GiB).
pub const ENVELOPE_PAYLOAD_BYTES_MAX: usize = 1 << 30;

/// Header size of an envelope: magic (8) + version (4) + length (8) + crc32c (4).
pub const ENVELOPE_HEADER_BYTES: usize = 24;

/// Why bytes could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    /// The bytes do not start with the expected magic.
    #[error("bad magic: expected {expected:?}")]
    BadMagic {
        /// The magic the caller expected.
        expected: [u8; 8],
    },
    /// The format version is not one this build reads.
    #[error("unsupported version {found} (this build reads {supported})")]
    UnsupportedVersion {
        /// Found in the bytes.
        found: u32,
        /// Read by this build.
        supported: u32,
    },
    /// Fewer bytes than the header says.
    #[error("truncated: header says {expected} payload bytes, {found} present")]
    Truncated {
        /// Declared.
        expected: u64,
        /// Present.
        found: u64,
    },
    /// Payload is larger than [`ENVELOPE_PAYLOAD_BYTES_MAX`].
    #[error("payload of {0} bytes is over the limit")]
    TooLarge(u64),
    /// The checksum does not match: the bytes were changed.
    #[error("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum {
        /// In the header.
        stored: u32,
        /// Over the payload.
        computed: u32,
    },
    /// The payload is not a valid encoding of the expected type.
    #[error("invalid payload: {0}")]
    Invalid(String),
}

/// Encodes a value canonically.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).expect("encoding to a Vec cannot fail for tradelog types")
}

/// The canonical encoding of a large `value` (a whole state): its size is computed first
/// so the bytes are written once into a buffer of exactly that size, rather than into one
/// that doubles and copies as it grows. The same bytes as [`encode`].
pub fn encode_large<T: Serialize>(value: &T) -> Vec<u8> {
    let len = postcard::experimental::serialized_size(value)
        .expect("sizing cannot fail for tradelog types");
    let out = postcard::to_extend(value, Vec::with_capacity(len))
        .expect("encoding to a Vec cannot fail for tradelog types");
    debug_assert_eq!(out.len(), len);
    out
}

/// Appends the canonical encoding of `value` to `out`.
pub fn encode_into<T: Serialize>(value: &T, out: &mut Vec<u8>) {
    let bytes = postcard::to_extend(value, std::mem::take(out))
        .expect("encoding to a Vec cannot fail for tradelog types");
    *out = bytes;
}

/// Decodes a value; trailing bytes are an error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (value, rest) =
        postcard::take_from_bytes(bytes).map_err(|e| CodecError::Invalid(e.to_string()))?;
    if !rest.is_empty() {
        return Err(CodecError::Invalid(format!(
            "{} trailing bytes",
            rest.len()
        )));
    }
    Ok(value)
}

/// CRC32C (Castagnoli) of `bytes`.
pub fn crc32c(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes)
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Wraps `payload` in an envelope: magic, version, length, CRC32C, payload.
pub fn seal(magic: [u8; 8], version: u32, payload: &[u8]) -> Vec<u8> {
    assert!(
        payload.len() <= ENVELOPE_PAYLOAD_BYTES_MAX,
        "payload too large"
    );
    let mut out = Vec::with_capacity(ENVELOPE_HEADER_BYTES + payload.len());
    out.extend_from_slice(&magic);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Checks an envelope and returns its payload.
pub fn open(magic: [u8; 8], version: u32, bytes: &[u8]) -> Result<&[u8], CodecError> {
    if bytes.len() < ENVELOPE_HEADER_BYTES || bytes[..8] != magic {
        return Err(CodecError::BadMagic { expected: magic });
    }
    let found = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if found != version {
        return Err(CodecError::UnsupportedVersion {
            found,
            supported: version,
        });
    }
    let len = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
    if len > ENVELOPE_PAYLOAD_BYTES_MAX as u64 {
        return Err(CodecError::TooLarge(len));
    }
    let stored = u32::from_le_bytes(bytes[20..24].try_into().expect("4 bytes"));
    let payload = &bytes[ENVELOPE_HEADER_BYTES..];
    if (payload.len() as u64) != len {
        return Err(CodecError::Truncated {
            expected: len,
            found: payload.len() as u64,
        });
    }
    let computed = crc32c(payload);
    if computed != stored {
        return Err(CodecError::Checksum { stored, computed });
    }
    Ok(payload)
}

/// Serde helpers for a large `Vec<u8>` field (a sealed state inside a snapshot file):
/// `#[serde(with = "tradelog_codec::bytes")]`. The field is written and read as one byte
/// string instead of element by element. The encoding is the same bytes as the plain
/// `Vec<u8>` (length, then the bytes), so files written either way read either way; only
/// the per-byte calls are gone.
pub mod bytes {
    use serde::de::{Deserializer, SeqAccess, Visitor};
    use serde::Serializer;
    use std::fmt;

    /// Writes `v` as one byte string.
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    /// Reads a byte string (or, from other formats, a sequence of bytes).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_byte_buf(BytesVisitor)
    }

    struct BytesVisitor;

    impl<'de> Visitor<'de> for BytesVisitor {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a byte string")
        }

        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }

        fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            // Capped like serde's own: a length prefix is not trusted with memory.
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
            while let Some(b) = seq.next_element::<u8>()? {
                out.push(b);
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Plain {
        a: u64,
        engine: Vec<u8>,
        z: u8,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct AsBytes {
        a: u64,
        #[serde(with = "crate::bytes")]
        engine: Vec<u8>,
        z: u8,
    }

    #[test]
    fn byte_strings_encode_as_plain_byte_vectors() {
        for len in [0usize, 1, 127, 128, 300, 70_000] {
            let engine: Vec<u8> = (0..len).map(|i| (i * 7 % 256) as u8).collect();
            let plain = Plain {
                a: 300,
                engine: engine.clone(),
                z: 9,
            };
            let fast = AsBytes {
                a: 300,
                engine,
                z: 9,
            };
            let bytes = encode(&plain);
            assert_eq!(encode(&fast), bytes, "len {len}");
            assert_eq!(encode_large(&fast), bytes, "len {len}");
            assert_eq!(decode::<AsBytes>(&bytes), Ok(fast), "len {len}");
        }
        // A length prefix larger than the bytes present is an error, not an allocation.
        let mut short = encode(&AsBytes {
            a: 1,
            engine: vec![1; 200],
            z: 2,
        });
        short.truncate(50);
        assert!(matches!(
            decode::<AsBytes>(&short),
            Err(CodecError::Invalid(_))
        ));
    }

    const MAGIC: [u8; 8] = *b"TESTMAGC";

    #[test]
    fn roundtrip() {
        let v: (u64, String, Vec<u32>) = (7, "abc".into(), vec![1, 2, 3]);
        let b = encode(&v);
        assert_eq!(decode::<(u64, String, Vec<u32>)>(&b), Ok(v.clone()));
        let mut extra = b.clone();
        extra.push(0);
        assert!(matches!(
            decode::<(u64, String, Vec<u32>)>(&extra),
            Err(CodecError::Invalid(_))
        ));
        let mut into = vec![9u8];
        encode_into(&v, &mut into);
        assert_eq!(&into[1..], &b[..]);
    }

    #[test]
    fn envelope_detects_every_single_bit_flip() {
        let payload = encode(&(1u64, 2u64, "payload".to_string()));
        let sealed = seal(MAGIC, 3, &payload);
        assert_eq!(open(MAGIC, 3, &sealed), Ok(&payload[..]));
        for byte in 0..sealed.len() {
            for bit in 0..8 {
                let mut bad = sealed.clone();
                bad[byte] ^= 1 << bit;
                assert!(
                    open(MAGIC, 3, &bad).is_err(),
                    "flip at {byte}:{bit} accepted"
                );
            }
        }
    }

    #[test]
    fn envelope_errors_are_precise() {
        let sealed = seal(MAGIC, 1, b"hello");
        assert_eq!(
            open(*b"OTHERMAG", 1, &sealed),
            Err(CodecError::BadMagic {
                expected: *b"OTHERMAG"
            })
        );
        assert_eq!(
            open(MAGIC, 2, &sealed),
            Err(CodecError::UnsupportedVersion {
                found: 1,
                supported: 2
            })
        );
        assert_eq!(
            open(MAGIC, 1, &sealed[..sealed.len() - 1]),
            Err(CodecError::Truncated {
                expected: 5,
                found: 4
            })
        );
    }

    #[test]
    fn sha256_known_vector() {
        assert_eq!(
            hex(&sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
