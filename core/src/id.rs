//! 32-byte identifiers: object names, chunk IDs, snapshot IDs.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

/// A 32-byte identifier, shown as 64 lowercase hex digits.
///
/// Stored objects are named by the unkeyed BLAKE3 hash of their bytes
/// ([`Id::of_bytes`]); chunks are named by a keyed hash (see
/// [`crate::crypto::Keys::chunk_id`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Id([u8; 32]);

impl Id {
    /// Length in bytes.
    pub const LEN: usize = 32;

    /// Wraps raw bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Id(bytes)
    }

    /// Reads an ID from the first 32 bytes of `bytes`.
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        let arr: [u8; 32] = bytes
            .get(..32)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| Error::corrupt("truncated 32-byte ID"))?;
        Ok(Id(arr))
    }

    /// The unkeyed BLAKE3 hash of `data`: the name of a stored object.
    pub fn of_bytes(data: &[u8]) -> Self {
        Id(*blake3::hash(data).as_bytes())
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// 64 hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 8 hex digits, as shown in tables.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }

    /// Parses exactly 64 hex digits.
    pub fn parse(s: &str) -> Result<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out)
            .map_err(|_| Error::invalid(format!("not a 64-digit hex ID: {s:?}")))?;
        Ok(Id(out))
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.short())
    }
}

impl FromStr for Id {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Id::parse(s)
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Id::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Is `s` a possible object name (64 lowercase hex digits)? Used to skip
/// temporary files and strangers in listings.
pub fn is_object_name(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let id = Id::of_bytes(b"hello");
        assert_eq!(Id::parse(&id.to_hex()).ok(), Some(id));
        assert_eq!(id.short().len(), 8);
        assert!(is_object_name(&id.to_hex()));
        assert!(!is_object_name("abc"));
        assert!(Id::parse("zz").is_err());
    }

    #[test]
    fn json_is_hex_string() {
        let id = Id::of_bytes(b"x");
        let json = serde_json::to_string(&id).ok();
        assert_eq!(json, Some(format!("\"{}\"", id.to_hex())));
    }
}
