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

#[cfg(test)]
mod tests {
    use super::*;

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
