//! Index objects: which pack holds which blob (`repo-format.md` §7).
//!
//! An index object is a sealed object (type 4) whose payload is a run of
//! pack records:
//!
//! ```text
//! 0   1   kind: 1 = pack in use, 2 = pack obsolete (deletion pending)
//! 1   32  pack ID
//! 33  8   obsolete since: Unix seconds (i64 LE), 0 for kind 1
//! 41  4   n, number of blobs (u32 LE)
//! 45  ..  n blob entries, exactly as in the pack trailer (48 bytes each,
//!         80 for a delta: the entry and its base's ID)
//! ```
//!
//! Index objects are immutable and written by each backup after its packs,
//! and by prune. They are the source of truth; the local redb cache is
//! built from them. An obsolete pack's blobs can still be read (a backup
//! that started before prune marked it may have referenced them) but are
//! never deduplicated against; prune deletes the pack only after the grace
//! period (`docs/design.md` §6).

use crate::crypto::Keys;
use crate::error::{Error, Result};
use crate::format::pack::{decode_n_entries, BlobEntry};
use crate::format::{self, ObjectType};
use crate::id::Id;

/// Largest index payload accepted (about 22 million blobs).
pub const MAX_INDEX_LEN: usize = 1024 * 1024 * 1024;

/// Largest raw payload an index object of `stored` bytes may state
/// (`repo-format.md` §7.1): 8 times its size plus 1 MiB, and at most
/// [`MAX_INDEX_LEN`]. Every entry carries a 32-byte keyed hash, which no
/// compressor shrinks, so an honest index never compresses 8:1; a frame
/// that claims more is refused before any memory is set aside for it.
pub fn max_payload_len(stored: usize) -> usize {
    stored
        .saturating_mul(8)
        .saturating_add(1024 * 1024)
        .min(MAX_INDEX_LEN)
}

/// Length of a pack record's header.
const RECORD_HEADER: usize = 45;
/// Record kind: a pack in use.
const KIND_LIVE: u8 = 1;
/// Record kind: a pack marked obsolete by prune.
const KIND_OBSOLETE: u8 = 2;

/// The blobs of one pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexPack {
    /// The pack's object name.
    pub pack_id: Id,
    /// When prune marked the pack obsolete (Unix seconds), if it did.
    pub obsolete_since: Option<i64>,
    /// Its blobs.
    pub blobs: Vec<BlobEntry>,
}

impl IndexPack {
    /// A pack in use.
    pub fn live(pack_id: Id, blobs: Vec<BlobEntry>) -> Self {
        IndexPack {
            pack_id,
            obsolete_since: None,
            blobs,
        }
    }
}

/// The mark of a pack that two index objects list with marks `a` and
/// `b`: listed in use in either, it is in use; marked in both, the later
/// mark counts (repo-format.md §7.2).
pub fn merged_mark(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        _ => None,
    }
}

/// Encodes the payload of an index object.
pub fn encode_payload(packs: &[IndexPack]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for p in packs {
        match p.obsolete_since {
            None => out.push(KIND_LIVE),
            Some(_) => out.push(KIND_OBSOLETE),
        }
        out.extend_from_slice(p.pack_id.as_bytes());
        out.extend_from_slice(&p.obsolete_since.unwrap_or(0).to_le_bytes());
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
        if bytes.len() < RECORD_HEADER {
            return Err(Error::corrupt("truncated pack record"));
        }
        let pack_id = Id::from_slice(&bytes[1..33])?;
        let mut since = [0u8; 8];
        since.copy_from_slice(&bytes[33..41]);
        let since = i64::from_le_bytes(since);
        let obsolete_since = match bytes[0] {
            KIND_LIVE if since == 0 => None,
            KIND_OBSOLETE => Some(since),
            KIND_LIVE => {
                return Err(Error::corrupt(format!(
                    "pack record {} has a time but is in use",
                    pack_id.short()
                )))
            }
            other => {
                return Err(Error::new(
                    crate::error::ErrorKind::Unsupported,
                    format!("unknown index record kind {other}"),
                ))
            }
        };
        let n = u32::from_le_bytes([bytes[41], bytes[42], bytes[43], bytes[44]]) as usize;
        let (blobs, len) = decode_n_entries(&bytes[RECORD_HEADER..], n)
            .map_err(|e| e.context(format!("pack record {}", pack_id.short())))?;
        packs.push(IndexPack {
            pack_id,
            obsolete_since,
            blobs,
        });
        bytes = &bytes[RECORD_HEADER + len..];
    }
    Ok(packs)
}

/// Length of the authentication tag at the end of a full key's index
/// object.
pub const TAG_LEN: usize = 32;

/// Seals an index object. A full key's (key scheme 0) ends with a tag
/// only full keys can make; a write-only key's has key scheme 1 and no
/// tag (`repo-format.md` §7.1).
pub fn encode(keys: &Keys, repo_id: &Id, packs: &[IndexPack]) -> Result<Vec<u8>> {
    let payload = encode_payload(packs)?;
    let scheme = if keys.is_write_only() {
        format::KEY_SCHEME_SESSION
    } else {
        format::KEY_SCHEME_MASTER
    };
    let h = format::header_with(ObjectType::Index, scheme);
    let mut out = format::seal_object_as(keys.index(), repo_id, h, &payload, 0)?;
    if let Some(tag) = keys.index_tag(&out) {
        out.extend_from_slice(&tag);
    }
    Ok(out)
}

/// Opens an index object; `id` names it in errors.
///
/// A full key checks the tag of a full key's index object, and refuses a
/// write-only key's that lists a blob sealed with the data key: a writer
/// can only have written blobs sealed with its session key, and what it
/// lists is never trusted more than that (`docs/design.md` §8.2). A
/// write-only key cannot check tags.
pub fn decode(keys: &Keys, repo_id: &Id, bytes: &[u8], id: &Id) -> Result<Vec<IndexPack>> {
    let what = format!("index {id}");
    let h = format::check_header(bytes, ObjectType::Index, &what)?;
    let by_writer = h[7] == format::KEY_SCHEME_SESSION;
    let body = if by_writer {
        bytes
    } else {
        let (body, tag) = bytes
            .len()
            .checked_sub(TAG_LEN)
            .filter(|&n| n >= format::HEADER_LEN)
            .map(|n| bytes.split_at(n))
            .ok_or_else(|| Error::corrupt(format!("{what}: truncated")))?;
        if keys.index_tag(body).is_some_and(|t| t[..] != tag[..]) {
            return Err(Error::corrupt(format!(
                "{what}: its authentication tag does not match (damaged, or not written by a full key)"
            )));
        }
        body
    };
    let payload = format::open_object(
        keys.index(),
        repo_id,
        ObjectType::Index,
        body,
        max_payload_len(body.len()),
        &what,
    )?;
    let packs = decode_payload(&payload).map_err(|e| e.context(&what))?;
    if by_writer {
        if let Some(e) = packs.iter().flat_map(|p| &p.blobs).find(|e| !e.session) {
            return Err(Error::corrupt(format!(
                "{what}: written by a write-only key, but lists blob {} as sealed with the data key",
                e.id
            )));
        }
    }
    Ok(packs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKey;
    use crate::format::compress::Compression;
    use crate::format::pack::BlobType;

    #[test]
    fn round_trip_and_truncation() -> Result<()> {
        let keys = Keys::derive(&MasterKey::from_bytes([5u8; 32]));
        let repo = Id::of_bytes(b"r");
        let packs = vec![
            IndexPack {
                pack_id: Id::of_bytes(b"p1"),
                obsolete_since: None,
                blobs: vec![BlobEntry {
                    id: Id::of_bytes(b"b"),
                    blob_type: BlobType::Data,
                    compression: Compression::None,
                    offset: 8,
                    length: 50,
                    raw_length: 10,
                    session: false,
                }],
            },
            IndexPack {
                pack_id: Id::of_bytes(b"p2"),
                obsolete_since: Some(1_790_000_000),
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
        let mut unknown = payload.clone();
        unknown[0] = 9;
        assert_eq!(
            decode_payload(&unknown).err().map(|e| e.kind()),
            Some(crate::error::ErrorKind::Unsupported)
        );
        Ok(())
    }
}
