//! Index objects: which pack holds which blob (`repo-format.md` §8).
//!
//! An index object is a sealed object (type 4) whose payload is a run of
//! pack records:
//!
//! ```text
//! 32  pack ID
//! 4   n, number of blobs (u32 LE)
//! n × 48  blob entries, exactly as in the pack trailer
//! ```
//!
//! Index objects are immutable and written by each backup after its packs.
//! They are the source of truth; the local redb cache is built from them.

use crate::crypto::Keys;
use crate::error::{Error, Result};
use crate::format::{self, ObjectType};
use crate::id::Id;
use crate::pack::{decode_entries, BlobEntry, ENTRY_LEN};

/// Largest index payload accepted (about 22 million blobs).
pub const MAX_INDEX_LEN: usize = 1024 * 1024 * 1024;

/// The blobs of one pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexPack {
    /// The pack's object name.
    pub pack_id: Id,
    /// Its blobs.
    pub blobs: Vec<BlobEntry>,
}

/// Encodes the payload of an index object.
pub fn encode_payload(packs: &[IndexPack]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for p in packs {
        out.extend_from_slice(p.pack_id.as_bytes());
        let n = u32::try_from(p.blobs.len()).map_err(|_| Error::invalid("too many blobs"))?;
        out.extend_from_slice(&n.to_le_bytes());
        for b in &p.blobs {
            b.encode(&mut out);
        }
    }
    Ok(out)
}

/// Decodes the payload of an index object.
pub fn decode_payload(mut bytes: &[u8]) -> Result<Vec<IndexPack>> {
    let mut packs = Vec::new();
    while !bytes.is_empty() {
        if bytes.len() < 36 {
            return Err(Error::corrupt("truncated pack record"));
        }
        let pack_id = Id::from_slice(&bytes[..32])?;
        let n = u32::from_le_bytes([bytes[32], bytes[33], bytes[34], bytes[35]]) as usize;
        let len = n
            .checked_mul(ENTRY_LEN)
            .filter(|l| *l <= bytes.len() - 36)
            .ok_or_else(|| {
                Error::corrupt(format!("pack record {} is truncated", pack_id.short()))
            })?;
        let blobs = decode_entries(&bytes[36..36 + len])?;
        packs.push(IndexPack { pack_id, blobs });
        bytes = &bytes[36 + len..];
    }
    Ok(packs)
}

/// Seals an index object.
pub fn encode(keys: &Keys, repo_id: &Id, packs: &[IndexPack]) -> Result<Vec<u8>> {
    format::seal_object(
        keys.data(),
        repo_id,
        ObjectType::Index,
        &encode_payload(packs)?,
        0,
    )
}

/// Opens an index object; `id` names it in errors.
pub fn decode(keys: &Keys, repo_id: &Id, bytes: &[u8], id: &Id) -> Result<Vec<IndexPack>> {
    let what = format!("index {id}");
    let payload = format::open_object(
        keys.data(),
        repo_id,
        ObjectType::Index,
        bytes,
        MAX_INDEX_LEN,
        &what,
    )?;
    decode_payload(&payload).map_err(|e| e.context(what))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compress::Compression;
    use crate::crypto::MasterKey;
    use crate::pack::BlobType;

    #[test]
    fn round_trip_and_truncation() -> Result<()> {
        let keys = Keys::derive(&MasterKey::from_bytes([5u8; 32]));
        let repo = Id::of_bytes(b"r");
        let packs = vec![
            IndexPack {
                pack_id: Id::of_bytes(b"p1"),
                blobs: vec![BlobEntry {
                    id: Id::of_bytes(b"b"),
                    blob_type: BlobType::Data,
                    compression: Compression::None,
                    offset: 8,
                    length: 50,
                    raw_length: 10,
                }],
            },
            IndexPack {
                pack_id: Id::of_bytes(b"p2"),
                blobs: vec![],
            },
        ];
        let bytes = encode(&keys, &repo, &packs)?;
        let id = Id::of_bytes(&bytes);
        assert_eq!(decode(&keys, &repo, &bytes, &id)?, packs);
        assert!(decode(&keys, &repo, &bytes[..bytes.len() - 1], &id).is_err());
        let payload = encode_payload(&packs)?;
        assert!(decode_payload(&payload[..payload.len() - 1]).is_err());
        assert!(decode_payload(&payload[..40]).is_err());
        Ok(())
    }
}
