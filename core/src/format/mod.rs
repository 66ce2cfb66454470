//! The plaintext object header and sealed objects (`repo-format.md` §2).
//!
//! Every stored object starts with the same 8 bytes:
//!
//! ```text
//! 0..5  magic "CAIRN"
//! 5     format version (1)
//! 6     object type
//! 7     key scheme (0: sealed with the repository's data key;
//!       1: a key block follows, sealing the key of a write-only client)
//! ```
//!
//! The header plus the repository ID (plus a per-use context) is the AEAD
//! associated data of everything sealed inside the object, so an object
//! cannot be passed off as another type, version or repository.

pub mod compress;
pub mod config;
pub mod index;
pub mod keyfile;
pub mod pack;
pub mod snapshot;
pub mod tree;

use crate::crypto::{Keys, SealingKey, KEY_BLOCK_LEN};
use crate::error::{Error, ErrorKind, Result};
use crate::format::compress::Compression;
use crate::id::Id;

/// The magic bytes at the start of every object.
pub const MAGIC: &[u8; 5] = b"CAIRN";
/// The format version this code writes and reads.
pub const FORMAT_VERSION: u8 = 1;
/// Length of the object header.
pub const HEADER_LEN: usize = 8;
/// Key scheme 0: sealed with the data key derived from the master key.
pub const KEY_SCHEME_MASTER: u8 = 0;
/// Key scheme 1: written by a write-only client. Packs, snapshots, WAL
/// records and drill records are then sealed with its random session key,
/// which the [`KEY_BLOCK_LEN`]-byte key block after the header seals to the
/// repository's public key; index objects carry no authentication tag
/// (`repo-format.md` §2.3, §7.1). Other objects may not use it.
pub const KEY_SCHEME_SESSION: u8 = 1;
/// Context of a key block's associated data.
const KEY_BLOCK_CONTEXT: &[u8] = b"key block";

/// The type byte of the object header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ObjectType {
    /// `config`: repository ID and parameters.
    Config = 1,
    /// `keys/<id>`: a password-wrapped master key.
    Key = 2,
    /// `data/<xx>/<id>`: a pack of blobs.
    Pack = 3,
    /// `index/<id>`: where blobs live.
    Index = 4,
    /// `snapshots/<id>`: one backup.
    Snapshot = 5,
    /// `wal/<id>`: one archived PostgreSQL WAL file.
    WalRecord = 6,
    /// `drills/<id>`: the outcome of one restore drill.
    Drill = 7,
}

impl ObjectType {
    fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            1 => ObjectType::Config,
            2 => ObjectType::Key,
            3 => ObjectType::Pack,
            4 => ObjectType::Index,
            5 => ObjectType::Snapshot,
            6 => ObjectType::WalRecord,
            7 => ObjectType::Drill,
            _ => return None,
        })
    }

    /// Lower-case name used in messages.
    pub fn name(self) -> &'static str {
        match self {
            ObjectType::Config => "config",
            ObjectType::Key => "key",
            ObjectType::Pack => "pack",
            ObjectType::Index => "index",
            ObjectType::Snapshot => "snapshot",
            ObjectType::WalRecord => "WAL record",
            ObjectType::Drill => "drill record",
        }
    }
}

/// The 8-byte header of a new object of type `ty` sealed with the data
/// key (key scheme 0).
pub fn header(ty: ObjectType) -> [u8; HEADER_LEN] {
    header_with(ty, KEY_SCHEME_MASTER)
}

/// The 8-byte header of a new object of type `ty` and key scheme `scheme`.
pub fn header_with(ty: ObjectType, scheme: u8) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..5].copy_from_slice(MAGIC);
    h[5] = FORMAT_VERSION;
    h[6] = ty as u8;
    h[7] = scheme;
    h
}

/// May objects of type `ty` carry a key block (key scheme 1)?
fn may_use_session(ty: ObjectType) -> bool {
    matches!(
        ty,
        ObjectType::Pack
            | ObjectType::Index
            | ObjectType::Snapshot
            | ObjectType::WalRecord
            | ObjectType::Drill
    )
}

/// The header and, for a write-only client, the key block that start a
/// new object of type `ty` whose contents `keys.data()` seals
/// (`repo-format.md` §2.3): the header, and the bytes so far.
pub fn data_object_start(
    keys: &Keys,
    repo_id: &Id,
    ty: ObjectType,
) -> Result<([u8; HEADER_LEN], Vec<u8>)> {
    let h = header_with(ty, KEY_SCHEME_SESSION);
    match keys.key_block(&key_block_ad(&h, repo_id))? {
        None => Ok((header(ty), header(ty).to_vec())),
        Some(block) => {
            let mut out = Vec::with_capacity(HEADER_LEN + KEY_BLOCK_LEN);
            out.extend_from_slice(&h);
            out.extend_from_slice(&block);
            Ok((h, out))
        }
    }
}

/// The keys that open the contents of an object of type `ty` that starts
/// with `head` (at least its header, and its key block if it has one):
/// `keys` for key scheme 0, else `keys` with the key block's session key,
/// which only a full key can open. Also returns the header and where the
/// contents start.
pub fn data_object_keys<'k>(
    keys: &'k Keys,
    repo_id: &Id,
    ty: ObjectType,
    head: &[u8],
    what: &str,
) -> Result<(std::borrow::Cow<'k, Keys>, [u8; HEADER_LEN], usize)> {
    let (h, start) = data_object_body_start(head, ty, what)?;
    if h[7] == KEY_SCHEME_MASTER {
        return Ok((std::borrow::Cow::Borrowed(keys), h, start));
    }
    let opened = keys
        .open_key_block(&head[HEADER_LEN..start], &key_block_ad(&h, repo_id))
        .map_err(|e| e.context(what))?;
    Ok((std::borrow::Cow::Owned(opened), h, start))
}

/// The checked header of an object of type `ty`, and where its contents
/// start, after the key block if it has one, without opening anything.
pub fn data_object_body_start(
    bytes: &[u8],
    ty: ObjectType,
    what: &str,
) -> Result<([u8; HEADER_LEN], usize)> {
    let h = check_header(bytes, ty, what)?;
    let start = match h[7] {
        KEY_SCHEME_SESSION => HEADER_LEN + KEY_BLOCK_LEN,
        _ => HEADER_LEN,
    };
    if bytes.len() < start {
        return Err(Error::corrupt(format!("{what}: truncated key block")));
    }
    Ok((h, start))
}

/// The associated data of a key block: `header || repository ID || "key
/// block"`.
fn key_block_ad(h: &[u8; HEADER_LEN], repo_id: &Id) -> Vec<u8> {
    associated_data(h, repo_id, KEY_BLOCK_CONTEXT)
}

/// Checks the header at the start of `bytes` against the expected type and
/// returns it. `what` names the object in errors.
pub fn check_header(bytes: &[u8], ty: ObjectType, what: &str) -> Result<[u8; HEADER_LEN]> {
    let h: [u8; HEADER_LEN] = bytes
        .get(..HEADER_LEN)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| Error::corrupt(format!("{what}: truncated ({} bytes)", bytes.len())))?;
    if &h[..5] != MAGIC {
        return Err(Error::corrupt(format!(
            "{what}: not a cairn object (bad magic)"
        )));
    }
    if h[5] != FORMAT_VERSION {
        return Err(Error::new(
            ErrorKind::Unsupported,
            format!(
                "{what}: format version {} is not supported by this cairn (it reads version {FORMAT_VERSION}); upgrade cairn",
                h[5]
            ),
        ));
    }
    match ObjectType::from_byte(h[6]) {
        Some(t) if t == ty => {}
        Some(t) => {
            return Err(Error::corrupt(format!(
                "{what}: is a {} object, expected a {}",
                t.name(),
                ty.name()
            )))
        }
        None => {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!("{what}: unknown object type {}", h[6]),
            ))
        }
    }
    let session_ok = h[7] == KEY_SCHEME_SESSION && may_use_session(ty);
    if h[7] != KEY_SCHEME_MASTER && !session_ok {
        return Err(Error::new(
            ErrorKind::Unsupported,
            format!("{what}: unknown key scheme {}", h[7]),
        ));
    }
    Ok(h)
}

/// The associated data for a value sealed in an object:
/// `header || repository ID || context`.
pub fn associated_data(header: &[u8; HEADER_LEN], repo_id: &Id, context: &[u8]) -> Vec<u8> {
    let mut ad = Vec::with_capacity(HEADER_LEN + Id::LEN + context.len());
    ad.extend_from_slice(header);
    ad.extend_from_slice(repo_id.as_bytes());
    ad.extend_from_slice(context);
    ad
}

/// Frames a payload for sealing: `compression (1) || raw length (u64 LE) ||
/// bytes`.
pub fn frame_payload(level: i32, payload: &[u8]) -> Vec<u8> {
    let (compression, bytes) = compress::compress(level, payload);
    let mut out = Vec::with_capacity(9 + bytes.len());
    out.push(compression.byte());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&bytes);
    out
}

/// Undoes [`frame_payload`], refusing payloads larger than `max_len`.
pub fn unframe_payload(framed: &[u8], max_len: usize) -> Result<Vec<u8>> {
    if framed.len() < 9 {
        return Err(Error::corrupt("payload frame truncated"));
    }
    let compression = Compression::from_byte(framed[0])?;
    let mut len = [0u8; 8];
    len.copy_from_slice(&framed[1..9]);
    let raw_len = usize::try_from(u64::from_le_bytes(len))
        .map_err(|_| Error::corrupt("payload length overflows"))?;
    compress::decompress(compression, &framed[9..], raw_len, max_len)
}

/// A whole sealed object (index, snapshot): `header || nonce || ciphertext
/// || tag`, where the plaintext is a framed payload and the associated data
/// is `header || repository ID`.
pub fn seal_object(
    key: &SealingKey,
    repo_id: &Id,
    ty: ObjectType,
    payload: &[u8],
    level: i32,
) -> Result<Vec<u8>> {
    seal_object_as(key, repo_id, header(ty), payload, level)
}

/// [`seal_object`] with header `h` (another key scheme).
pub fn seal_object_as(
    key: &SealingKey,
    repo_id: &Id,
    h: [u8; HEADER_LEN],
    payload: &[u8],
    level: i32,
) -> Result<Vec<u8>> {
    let mut out = h.to_vec();
    seal_payload_into(key, (repo_id, &h, &[]), payload, level, &mut out)?;
    Ok(out)
}

/// Appends `nonce || seal(frame(payload)) || tag` to `out`, with
/// associated data `h || repository ID || context`: the sealed part of
/// every whole object.
pub fn seal_payload_into(
    key: &SealingKey,
    (repo_id, h, context): (&Id, &[u8; HEADER_LEN], &[u8]),
    payload: &[u8],
    level: i32,
    out: &mut Vec<u8>,
) -> Result<()> {
    let framed = frame_payload(level, payload);
    out.reserve(framed.len() + crate::crypto::SEAL_OVERHEAD);
    key.seal_into(&associated_data(h, repo_id, context), &framed, out)
}

/// Opens an object written by [`seal_object`]. `what` names it in errors.
pub fn open_object(
    key: &SealingKey,
    repo_id: &Id,
    ty: ObjectType,
    bytes: &[u8],
    max_len: usize,
    what: &str,
) -> Result<Vec<u8>> {
    let h = check_header(bytes, ty, what)?;
    let sealed = &bytes[HEADER_LEN..];
    open_payload(key, (repo_id, &h, &[]), sealed, max_len, what)
}

/// Undoes [`seal_payload_into`]: opens `sealed` with associated data
/// `h || repository ID || context` and unframes the payload.
pub fn open_payload(
    key: &SealingKey,
    (repo_id, h, context): (&Id, &[u8; HEADER_LEN], &[u8]),
    sealed: &[u8],
    max_len: usize,
    what: &str,
) -> Result<Vec<u8>> {
    let framed = key
        .open(&associated_data(h, repo_id, context), sealed)
        .map_err(|e| Error::corrupt(format!("{what}: {e}")))?;
    unframe_payload(&framed, max_len).map_err(|e| e.context(what))
}

/// A whole object sealed with the data key (snapshot, WAL record, drill
/// record): like [`seal_object`], and for a write-only client with key
/// scheme 1 and its key block between the header and the sealed payload.
pub fn seal_data_object(
    keys: &Keys,
    repo_id: &Id,
    ty: ObjectType,
    payload: &[u8],
    level: i32,
) -> Result<Vec<u8>> {
    let (h, mut out) = data_object_start(keys, repo_id, ty)?;
    seal_payload_into(keys.data(), (repo_id, &h, &[]), payload, level, &mut out)?;
    Ok(out)
}

/// Opens an object written by [`seal_data_object`], of either key scheme.
pub fn open_data_object(
    keys: &Keys,
    repo_id: &Id,
    ty: ObjectType,
    bytes: &[u8],
    max_len: usize,
    what: &str,
) -> Result<Vec<u8>> {
    let (keys, h, start) = data_object_keys(keys, repo_id, ty, bytes, what)?;
    open_payload(
        keys.data(),
        (repo_id, &h, &[]),
        &bytes[start..],
        max_len,
        what,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_object_round_trip_and_binding() -> Result<()> {
        let key = SealingKey::new(&[3u8; 32]);
        let repo = Id::of_bytes(b"repo");
        let obj = seal_object(&key, &repo, ObjectType::Snapshot, b"{\"a\":1}", 3)?;
        assert_eq!(&obj[..5], MAGIC);
        let back = open_object(&key, &repo, ObjectType::Snapshot, &obj, 1024, "snapshot x")?;
        assert_eq!(back, b"{\"a\":1}");
        // Another repository, another type: refused.
        let other = Id::of_bytes(b"other");
        assert!(open_object(&key, &other, ObjectType::Snapshot, &obj, 1024, "x").is_err());
        let err = open_object(&key, &repo, ObjectType::Index, &obj, 1024, "x");
        assert!(matches!(err, Err(e) if e.kind() == ErrorKind::Corrupt));
        // Retyping the header breaks authentication.
        let mut retyped = obj.clone();
        retyped[6] = ObjectType::Index as u8;
        assert!(open_object(&key, &repo, ObjectType::Index, &retyped, 1024, "x").is_err());
        Ok(())
    }

    #[test]
    fn newer_version_is_refused_clearly() -> Result<()> {
        let key = SealingKey::new(&[3u8; 32]);
        let repo = Id::of_bytes(b"repo");
        let mut obj = seal_object(&key, &repo, ObjectType::Index, b"x", 3)?;
        obj[5] = 2;
        match open_object(&key, &repo, ObjectType::Index, &obj, 1024, "index 1") {
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Unsupported);
                assert!(e.to_string().contains("version 2"));
            }
            Ok(_) => panic!("accepted a newer version"),
        }
        Ok(())
    }
}
