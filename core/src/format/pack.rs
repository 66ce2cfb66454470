//! Pack files: many sealed blobs and a sealed trailer listing them
//! (`repo-format.md` §6).
//!
//! ```text
//! 0      8   header (type 3)
//! (8     104 key block, only with key scheme 1: a write-only client's pack)
//! ..     ..  blob 0, blob 1, ...: each nonce || seal(payload) || tag,
//!            AD = header || repository ID || blob type (1) || blob ID (32)
//! ..     T   trailer: nonce || seal(n × 48-byte entries) || tag,
//!            AD = header || repository ID || 0xFF
//! end-4  4   T, the trailer length (u32 LE)
//! ```
//!
//! A blob's payload is its plaintext, compressed or not as its entry says.
//! A pack is verified from the exact buffer that will be stored before it is
//! handed to the backend (restic #4677: corrupt packs from bad RAM).

use rayon::prelude::*;
use zeroize::Zeroize;

use crate::format::compress::{self, Compression};
use std::borrow::Cow;

use crate::crypto::{Keys, KEY_BLOCK_LEN, SEAL_OVERHEAD};
use crate::error::{Error, ErrorKind, Result};
use crate::format::{self, ObjectType, HEADER_LEN};
use crate::id::Id;

/// Size of one trailer (and index) entry...
pub const ENTRY_LEN: usize = 48;
/// ...followed, for a delta, by its base's ID.
pub const DELTA_BASE_LEN: usize = 32;
/// Context byte of the trailer's associated data.
const TRAILER_CONTEXT: u8 = 0xFF;
/// Largest raw size of a tree or chunk-list blob.
pub const MAX_METADATA_BLOB: usize = 256 * 1024 * 1024;

/// What a blob holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum BlobType {
    /// A chunk of file or stream content.
    Data = 0,
    /// A directory listing (JSON).
    Tree = 1,
    /// A run of chunk IDs of one large file (32 bytes each).
    ChunkList = 2,
}

impl BlobType {
    /// Decodes the format byte.
    pub fn from_byte(b: u8) -> Result<Self> {
        match b {
            0 => Ok(BlobType::Data),
            1 => Ok(BlobType::Tree),
            2 => Ok(BlobType::ChunkList),
            other => Err(Error::new(
                ErrorKind::Unsupported,
                format!("unknown blob type {other}"),
            )),
        }
    }

    /// The largest raw size a blob of this type may claim.
    pub fn max_raw_len(self) -> usize {
        match self {
            BlobType::Data => crate::chunk::chunker::MAX_MAX_SIZE as usize,
            BlobType::Tree | BlobType::ChunkList => MAX_METADATA_BLOB,
        }
    }

    /// Lower-case name for messages.
    pub fn name(self) -> &'static str {
        match self {
            BlobType::Data => "data",
            BlobType::Tree => "tree",
            BlobType::ChunkList => "chunk list",
        }
    }
}

/// Where one blob is inside its pack, and how to decode it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobEntry {
    /// The blob's ID: a keyed hash of its plaintext ([`blob_id`]).
    pub id: Id,
    /// What the blob holds.
    pub blob_type: BlobType,
    /// How the payload is compressed.
    pub compression: Compression,
    /// Offset of the sealed blob in the pack.
    pub offset: u32,
    /// Length of the sealed blob (nonce and tag included).
    pub length: u32,
    /// Length of the plaintext.
    pub raw_length: u32,
    /// Sealed with the session key in its pack's key block (a pack of a
    /// write-only client, key scheme 1), not the data key.
    pub session: bool,
}

impl BlobEntry {
    /// Appends the encoding: 48 bytes, then for a delta its base's ID.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.blob_type as u8);
        out.push(self.compression.byte());
        out.extend_from_slice(&[u8::from(self.session), 0]);
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.length.to_le_bytes());
        out.extend_from_slice(&self.raw_length.to_le_bytes());
        out.extend_from_slice(self.id.as_bytes());
        if let Some(base) = self.compression.base() {
            out.extend_from_slice(base.as_bytes());
        }
    }

    /// Length of the encoding.
    pub fn encoded_len(&self) -> usize {
        ENTRY_LEN
            + if self.compression.base().is_some() {
                DELTA_BASE_LEN
            } else {
                0
            }
    }

    /// Decodes the entry at the start of `b`, checking every field; returns
    /// it and the number of bytes it took (48, or 80 for a delta).
    pub fn decode_prefix(b: &[u8]) -> Result<(Self, usize)> {
        if b.len() < ENTRY_LEN {
            return Err(Error::corrupt("blob entry is truncated"));
        }
        if b[1] != compress::DELTA_BYTE {
            return Ok((Self::decode(&b[..ENTRY_LEN])?, ENTRY_LEN));
        }
        let len = ENTRY_LEN + DELTA_BASE_LEN;
        let base = b
            .get(ENTRY_LEN..len)
            .ok_or_else(|| Error::corrupt("delta blob entry is truncated"))?;
        let base = Id::from_slice(base)?;
        let mut plain = [0u8; ENTRY_LEN];
        plain.copy_from_slice(&b[..ENTRY_LEN]);
        plain[1] = Compression::Zstd.byte();
        let entry = BlobEntry {
            compression: Compression::Delta(base),
            ..Self::decode(&plain)?
        };
        if base == entry.id {
            return Err(Error::corrupt(format!(
                "blob entry {} is a delta that cannot be one",
                entry.id.short()
            )));
        }
        Ok((entry, len))
    }

    /// Decodes one 48-byte entry that is not a delta, checking every field.
    pub fn decode(b: &[u8]) -> Result<Self> {
        if b.len() != ENTRY_LEN {
            return Err(Error::corrupt("blob entry has the wrong length"));
        }
        if b[2] > 1 || b[3] != 0 {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "blob entry has unknown flags set",
            ));
        }
        let u32_at = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let entry = BlobEntry {
            blob_type: BlobType::from_byte(b[0])?,
            compression: Compression::from_byte(b[1])?,
            offset: u32_at(4),
            length: u32_at(8),
            raw_length: u32_at(12),
            id: Id::from_slice(&b[16..48])?,
            session: b[2] == 1,
        };
        if (entry.length as usize) < SEAL_OVERHEAD || (entry.offset as usize) < HEADER_LEN {
            return Err(Error::corrupt(format!(
                "blob entry {} has an impossible place",
                entry.id.short()
            )));
        }
        // Payloads are stored raw when zstd does not shrink them, so a
        // sealed blob is never longer than its plaintext plus the seal.
        let max_len = u64::from(entry.raw_length) + SEAL_OVERHEAD as u64;
        let exact = entry.compression == Compression::None;
        if u64::from(entry.length) > max_len || (exact && u64::from(entry.length) != max_len) {
            return Err(Error::corrupt(format!(
                "blob entry {} has length {} for {} raw bytes",
                entry.id.short(),
                entry.length,
                entry.raw_length
            )));
        }
        if entry.raw_length as usize > entry.blob_type.max_raw_len() {
            return Err(Error::corrupt(format!(
                "blob entry {} claims {} bytes",
                entry.id.short(),
                entry.raw_length
            )));
        }
        Ok(entry)
    }

    /// End offset of the sealed blob.
    pub fn end(&self) -> u64 {
        u64::from(self.offset) + u64::from(self.length)
    }
}

/// Decodes a run of entries that fills `bytes` exactly.
pub fn decode_entries(mut bytes: &[u8]) -> Result<Vec<BlobEntry>> {
    let mut out = Vec::with_capacity(bytes.len() / ENTRY_LEN);
    while !bytes.is_empty() {
        let (e, used) = BlobEntry::decode_prefix(bytes)?;
        out.push(e);
        bytes = &bytes[used..];
    }
    Ok(out)
}

/// Decodes exactly `n` entries from the start of `bytes`; returns them and
/// the bytes they took.
pub fn decode_n_entries(bytes: &[u8], n: usize) -> Result<(Vec<BlobEntry>, usize)> {
    // Bounded by what the bytes can hold, not by the stated count.
    let mut out = Vec::with_capacity(n.min(bytes.len() / ENTRY_LEN));
    let mut at = 0;
    for _ in 0..n {
        let (e, used) = BlobEntry::decode_prefix(&bytes[at..])?;
        out.push(e);
        at += used;
    }
    Ok((out, at))
}

/// A blob compressed and sealed, ready to be appended to a pack.
#[derive(Debug, Clone)]
pub struct EncodedBlob {
    /// The blob ID.
    pub id: Id,
    /// What it holds.
    pub blob_type: BlobType,
    /// How its payload is compressed.
    pub compression: Compression,
    /// Plaintext length.
    pub raw_length: u32,
    /// `nonce || ciphertext || tag`.
    pub sealed: Vec<u8>,
}

/// A blob's associated data: its type and ID, and for a delta its base.
fn blob_ad(repo_id: &Id, blob_type: BlobType, id: &Id, compression: Compression) -> Vec<u8> {
    let mut ctx = Vec::with_capacity(65);
    ctx.push(blob_type as u8);
    ctx.extend_from_slice(id.as_bytes());
    if let Some(base) = compression.base() {
        ctx.extend_from_slice(base.as_bytes());
    }
    format::associated_data(&format::header(ObjectType::Pack), repo_id, &ctx)
}

/// The ID of a blob: data chunks are named by [`Keys::chunk_id`], tree and
/// chunk-list blobs by [`Keys::metadata_id`] with their type byte, so the
/// three kinds can never collide (an empty directory's tree is also a
/// perfectly possible file).
pub fn blob_id(keys: &Keys, blob_type: BlobType, plaintext: &[u8]) -> Id {
    match blob_type {
        BlobType::Data => keys.chunk_id(plaintext),
        other => keys.metadata_id(other as u8, plaintext),
    }
}

/// Compresses and seals one blob whose ID is already known.
pub fn encode_blob(
    keys: &Keys,
    repo_id: &Id,
    blob_type: BlobType,
    id: Id,
    plaintext: &[u8],
    level: i32,
) -> Result<EncodedBlob> {
    if plaintext.len() > blob_type.max_raw_len() {
        return Err(Error::invalid(format!(
            "{} blob of {} bytes is too large",
            blob_type.name(),
            plaintext.len()
        )));
    }
    let (compression, payload) = compress::compress(level, plaintext);
    let sealed = keys
        .data()
        .seal(&blob_ad(repo_id, blob_type, &id, compression), &payload)?;
    Ok(EncodedBlob {
        id,
        blob_type,
        compression,
        raw_length: plaintext.len() as u32,
        sealed,
    })
}

/// Opens a sealed blob, decompresses it (bounded by its entry) and checks
/// that its plaintext hashes to its ID. `pack` names the pack in errors.
pub fn decode_blob(
    keys: &Keys,
    repo_id: &Id,
    entry: &BlobEntry,
    sealed: &[u8],
    pack: &Id,
) -> Result<Vec<u8>> {
    decode_blob_in_place(keys, repo_id, entry, &mut sealed.to_vec(), pack)
}

/// [`decode_blob`] decrypting where the sealed bytes lie (a buffer read
/// for this purpose): one copy fewer. `sealed` is left decrypted.
pub fn decode_blob_in_place(
    keys: &Keys,
    repo_id: &Id,
    entry: &BlobEntry,
    sealed: &mut [u8],
    pack: &Id,
) -> Result<Vec<u8>> {
    let what = || blob_what(entry, pack);
    if let Compression::Delta(base) = entry.compression {
        return Err(Error::corrupt(format!(
            "{}: a delta needs its base {base} to be decoded",
            what()
        )));
    }
    let payload = open_blob_in_place(keys, repo_id, entry, sealed, pack)?;
    let plain = compress::decompress(
        entry.compression,
        payload,
        entry.raw_length as usize,
        entry.blob_type.max_raw_len(),
    )
    .map_err(|e| e.context(what()))?;
    check_id(keys, entry, plain, pack)
}

/// `plain` if it hashes to `entry`'s ID, else corrupt.
fn check_id(keys: &Keys, entry: &BlobEntry, plain: Vec<u8>, pack: &Id) -> Result<Vec<u8>> {
    if blob_id(keys, entry.blob_type, &plain) != entry.id {
        return Err(Error::corrupt(format!(
            "{}: contents do not match the ID",
            blob_what(entry, pack)
        )));
    }
    Ok(plain)
}

/// Encodes `plaintext` as a delta against `base` (the plaintext of blob
/// `base_id`, of the same type, stored whole), if that is smaller than
/// `whole`, the same blob encoded on its own. The delta is
/// opened, decompressed and hashed again before it is returned, while the
/// base is at hand: a pack's check before upload can only check a delta's
/// seal (its base is elsewhere).
pub fn encode_delta(
    keys: &Keys,
    repo_id: &Id,
    whole: &EncodedBlob,
    plaintext: &[u8],
    base: (Id, &[u8]),
    level: i32,
) -> Result<Option<EncodedBlob>> {
    let limit = whole.sealed.len().saturating_sub(SEAL_OVERHEAD);
    let target = (whole.blob_type, whole.id, plaintext);
    encode_delta_within(keys, repo_id, target, base, level, limit)
}

/// A delta's payload at most this fraction of its plaintext is taken
/// without compressing the blob whole to compare: zstd alone never gets a
/// chunk of a dump that small, and a typical delta of a nightly change is
/// 1-2 % of its chunk.
const CLEARLY_SMALL: usize = 16;

/// Encodes a blob of `blob_type` and ID `id` whichever way is smaller: as
/// a delta against `base` when one is given (and small enough to need no
/// comparison, `CLEARLY_SMALL`), else whole.
pub fn encode_best(
    keys: &Keys,
    repo_id: &Id,
    (blob_type, id, plaintext): (BlobType, Id, &[u8]),
    base: Option<(Id, &[u8])>,
    level: i32,
) -> Result<EncodedBlob> {
    if let Some(base) = base {
        let limit = plaintext.len() / CLEARLY_SMALL + 1;
        let target = (blob_type, id, plaintext);
        if let Some(d) = encode_delta_within(keys, repo_id, target, base, level, limit)? {
            return Ok(d);
        }
        let whole = encode_blob(keys, repo_id, blob_type, id, plaintext, level)?;
        return Ok(encode_delta(keys, repo_id, &whole, plaintext, base, level)?.unwrap_or(whole));
    }
    encode_blob(keys, repo_id, blob_type, id, plaintext, level)
}

/// [`encode_delta`] if the delta's payload is shorter than `limit`.
fn encode_delta_within(
    keys: &Keys,
    repo_id: &Id,
    (blob_type, id, plaintext): (BlobType, Id, &[u8]),
    (base_id, base): (Id, &[u8]),
    level: i32,
    limit: usize,
) -> Result<Option<EncodedBlob>> {
    if base_id == id || plaintext.len() > blob_type.max_raw_len() {
        return Ok(None);
    }
    let Some(frame) = compress::compress_delta(level, base, plaintext, limit) else {
        return Ok(None);
    };
    let compression = Compression::Delta(base_id);
    let sealed = keys
        .data()
        .seal(&blob_ad(repo_id, blob_type, &id, compression), &frame)?;
    let blob = EncodedBlob {
        id,
        blob_type,
        compression,
        raw_length: plaintext.len() as u32,
        sealed,
    };
    let entry = BlobEntry {
        id,
        blob_type,
        compression,
        offset: HEADER_LEN as u32,
        length: blob.sealed.len() as u32,
        raw_length: blob.raw_length,
        session: false,
    };
    decode_delta_in_place(
        keys,
        repo_id,
        &entry,
        &mut blob.sealed.clone(),
        &Id::default(),
        base,
    )
    .map_err(|e| e.context("a delta failed its check before storing"))?;
    Ok(Some(blob))
}

/// Opens a sealed delta blob where it lies and returns its frame (still
/// compressed): the first half of decoding it, before its base is read.
pub fn open_delta_in_place<'a>(
    keys: &Keys,
    repo_id: &Id,
    entry: &BlobEntry,
    sealed: &'a mut [u8],
    pack: &Id,
) -> Result<&'a [u8]> {
    open_blob_in_place(keys, repo_id, entry, sealed, pack)
}

/// Finishes decoding a delta: decompresses its opened `frame` against
/// `base`, the plaintext of its base, and checks the result's ID.
pub fn finish_delta(
    keys: &Keys,
    entry: &BlobEntry,
    frame: &[u8],
    base: &[u8],
    pack: &Id,
) -> Result<Vec<u8>> {
    let what = || blob_what(entry, pack);
    let plain = compress::decompress_delta(
        frame,
        base,
        entry.raw_length as usize,
        entry.blob_type.max_raw_len(),
    )
    .map_err(|e| e.context(what()))?;
    check_id(keys, entry, plain, pack)
}

/// Decodes a delta blob given its base's plaintext.
pub fn decode_delta_in_place(
    keys: &Keys,
    repo_id: &Id,
    entry: &BlobEntry,
    sealed: &mut [u8],
    pack: &Id,
    base: &[u8],
) -> Result<Vec<u8>> {
    let frame = open_delta_in_place(keys, repo_id, entry, sealed, pack)?;
    finish_delta(keys, entry, frame, base, pack)
}

/// Checks that a sealed blob is whole and authentic (its seal opens with
/// its entry's type and ID), without decompressing it: for copying stored
/// bytes into a new pack, which is then verified in full before upload.
pub fn check_blob_seal(
    keys: &Keys,
    repo_id: &Id,
    entry: &BlobEntry,
    sealed: &[u8],
    pack: &Id,
) -> Result<()> {
    open_blob_in_place(keys, repo_id, entry, &mut sealed.to_vec(), pack).map(|_| ())
}

/// A blob sealed with a write-only client's session key (`from`, the
/// keys of its pack), sealed again with `to`'s data key, for a pack of a
/// full key (prune's repacking). It is decoded and its ID checked first:
/// a writer could have sealed anything under any ID, and once resealed
/// the blob is trusted like a full key's (`docs/design.md` §8.2). A
/// writer never stores deltas, so a delta here is refused as damaged.
/// Returns its new entry (place unset) and sealed bytes.
pub fn reseal_blob(
    from: &Keys,
    to: &Keys,
    repo_id: &Id,
    entry: &BlobEntry,
    sealed: &[u8],
    pack: &Id,
) -> Result<(BlobEntry, Vec<u8>)> {
    if entry.compression.base().is_some() {
        return Err(Error::corrupt(format!(
            "{}: a write-only key's blob cannot be a delta",
            blob_what(entry, pack)
        )));
    }
    let mut buf = sealed.to_vec();
    let payload = open_blob_in_place(from, repo_id, entry, &mut buf, pack)?;
    let plain = compress::decompress(
        entry.compression,
        payload,
        entry.raw_length as usize,
        entry.blob_type.max_raw_len(),
    )
    .map_err(|e| e.context(blob_what(entry, pack)))?;
    check_id(from, entry, plain, pack)?.zeroize();
    let ad = blob_ad(repo_id, entry.blob_type, &entry.id, entry.compression);
    let sealed = to.data().seal(&ad, payload)?;
    buf.zeroize();
    let entry = BlobEntry {
        session: to.is_write_only(),
        ..*entry
    };
    Ok((entry, sealed))
}

fn blob_what(entry: &BlobEntry, pack: &Id) -> String {
    format!(
        "{} blob {} in pack {}",
        entry.blob_type.name(),
        entry.id,
        pack
    )
}

/// Opens a sealed blob where it lies; returns its (compressed) payload.
fn open_blob_in_place<'a>(
    keys: &Keys,
    repo_id: &Id,
    entry: &BlobEntry,
    sealed: &'a mut [u8],
    pack: &Id,
) -> Result<&'a [u8]> {
    if sealed.len() != entry.length as usize {
        return Err(Error::corrupt(format!(
            "{}: truncated",
            blob_what(entry, pack)
        )));
    }
    keys.data()
        .open_in_place(
            &blob_ad(repo_id, entry.blob_type, &entry.id, entry.compression),
            sealed,
        )
        .map_err(|e| Error::corrupt(format!("{}: {e}", blob_what(entry, pack))))
}

/// Builds one pack in memory.
pub struct PackWriter {
    buf: Vec<u8>,
    entries: Vec<BlobEntry>,
    /// A write-only client's pack: its blobs are sealed with the session
    /// key in the key block.
    session: bool,
}

/// A finished pack: its bytes, name and entries.
#[derive(Debug)]
pub struct FinishedPack {
    /// BLAKE3 of `bytes`: the object name.
    pub id: Id,
    /// The whole pack as stored.
    pub bytes: Vec<u8>,
    /// Its blobs.
    pub entries: Vec<BlobEntry>,
}

impl PackWriter {
    /// An empty pack for blobs sealed with `keys.data()`: for a write-only
    /// client's keys it starts with a key block (key scheme 1).
    pub fn new(keys: &Keys, repo_id: &Id) -> Result<Self> {
        let (_, mut buf) = format::data_object_start(keys, repo_id, ObjectType::Pack)?;
        buf.reserve(1 << 20);
        Ok(PackWriter {
            buf,
            entries: Vec::new(),
            session: keys.is_write_only(),
        })
    }

    /// Bytes so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// No blobs yet?
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Appends a sealed blob.
    pub fn add(&mut self, blob: &EncodedBlob) -> Result<()> {
        let entry = BlobEntry {
            id: blob.id,
            blob_type: blob.blob_type,
            compression: blob.compression,
            offset: 0,
            length: 0,
            raw_length: blob.raw_length,
            session: self.session,
        };
        self.add_stored(&entry, &blob.sealed)
    }

    /// Appends a blob as another pack stores it: `sealed` are its bytes
    /// there, `entry` its entry there (its offset and length are set anew).
    /// A blob's seal does not name its pack, so it moves as it is, unless
    /// it was sealed with another key than this pack's (a write-only
    /// client's session key: [`reseal_blob`] first).
    pub fn add_stored(&mut self, entry: &BlobEntry, sealed: &[u8]) -> Result<()> {
        if entry.session != self.session {
            return Err(Error::invalid(format!(
                "blob {} is sealed with another key than its new pack's",
                entry.id
            )));
        }
        let offset =
            u32::try_from(self.buf.len()).map_err(|_| Error::invalid("pack exceeds 4 GiB"))?;
        let length =
            u32::try_from(sealed.len()).map_err(|_| Error::invalid("blob exceeds 4 GiB"))?;
        self.buf.extend_from_slice(sealed);
        self.entries.push(BlobEntry {
            offset,
            length,
            ..*entry
        });
        Ok(())
    }

    /// Seals the trailer and names the pack.
    pub fn finish(mut self, keys: &Keys, repo_id: &Id) -> Result<FinishedPack> {
        let mut plain = Vec::with_capacity(self.entries.iter().map(BlobEntry::encoded_len).sum());
        for e in &self.entries {
            e.encode(&mut plain);
        }
        let start = self.buf.len();
        keys.data()
            .seal_into(&trailer_ad(repo_id), &plain, &mut self.buf)?;
        let tlen = u32::try_from(self.buf.len() - start)
            .map_err(|_| Error::invalid("trailer exceeds 4 GiB"))?;
        self.buf.extend_from_slice(&tlen.to_le_bytes());
        u32::try_from(self.buf.len()).map_err(|_| Error::invalid("pack exceeds 4 GiB"))?;
        Ok(FinishedPack {
            id: Id::of_bytes(&self.buf),
            bytes: self.buf,
            entries: self.entries,
        })
    }
}

fn trailer_ad(repo_id: &Id) -> Vec<u8> {
    format::associated_data(
        &format::header(ObjectType::Pack),
        repo_id,
        &[TRAILER_CONTEXT],
    )
}

/// Reads the entries of a whole pack from its trailer; returns them and
/// the keys that open its blobs (for a write-only client's pack, those of
/// its key block, which only a full key opens).
pub fn read_trailer<'k>(
    keys: &'k Keys,
    repo_id: &Id,
    pack: &[u8],
    pack_id: &Id,
) -> Result<(Vec<BlobEntry>, Cow<'k, Keys>)> {
    let keys = pack_keys(keys, repo_id, pack, pack_id)?;
    let entries = open_trailer(&keys, repo_id, pack, pack.len() as u64, pack_id)?;
    check_entry_keys(&entries, pack, pack_id)?;
    Ok((entries, keys))
}

/// Bytes at the start of a pack that hold its header and key block, if it
/// has one: what [`pack_keys`] needs.
pub const PACK_HEAD_LEN: usize = HEADER_LEN + KEY_BLOCK_LEN;

/// The keys that open the blobs and trailer of the pack that starts with
/// `head` (its first [`PACK_HEAD_LEN`] bytes, or all of a shorter pack).
pub fn pack_keys<'k>(
    keys: &'k Keys,
    repo_id: &Id,
    head: &[u8],
    pack_id: &Id,
) -> Result<Cow<'k, Keys>> {
    let what = format!("pack {pack_id}");
    format::data_object_keys(keys, repo_id, ObjectType::Pack, head, &what).map(|(k, _, _)| k)
}

/// A pack's entries must all say what its header says: sealed with the
/// key block's session key (key scheme 1), or all with the data key.
pub fn check_entry_keys(entries: &[BlobEntry], head: &[u8], pack_id: &Id) -> Result<()> {
    let session = head.get(7) == Some(&format::KEY_SCHEME_SESSION);
    let first = if session { PACK_HEAD_LEN } else { HEADER_LEN } as u64;
    match entries
        .iter()
        .find(|e| e.session != session || u64::from(e.offset) < first)
    {
        Some(e) => Err(Error::corrupt(format!(
            "pack {pack_id}: blob {} does not match the pack's key scheme",
            e.id.short()
        ))),
        None => Ok(()),
    }
}

/// The smallest possible pack: a header, an empty sealed trailer and its
/// length.
pub const MIN_PACK_LEN: u64 = (HEADER_LEN + SEAL_OVERHEAD + 4) as u64;

/// Decodes the trailer from `tail`, the last `tail.len()` bytes of a pack
/// of `pack_len` bytes (the whole pack, or just enough of its end to hold
/// the trailer and its length). Fails as corrupt when the tail is too
/// short for the trailer it announces; [`trailer_len`] says how much is
/// needed.
pub fn open_trailer(
    keys: &Keys,
    repo_id: &Id,
    tail: &[u8],
    pack_len: u64,
    pack_id: &Id,
) -> Result<Vec<BlobEntry>> {
    let what = format!("pack {pack_id}");
    let tlen = trailer_len(tail, pack_len, pack_id)?;
    let n = tail.len();
    let tstart_in_tail = (n - 4)
        .checked_sub(tlen as usize)
        .ok_or_else(|| Error::corrupt(format!("{what}: trailer not within the bytes read")))?;
    let tstart = pack_len - 4 - tlen;
    let plain = keys
        .data()
        .open(&trailer_ad(repo_id), &tail[tstart_in_tail..n - 4])
        .map_err(|e| Error::corrupt(format!("{what}: trailer: {e}")))?;
    let entries = decode_entries(&plain).map_err(|e| e.context(&what))?;
    for e in &entries {
        if e.end() > tstart {
            return Err(Error::corrupt(format!(
                "{what}: blob {} lies outside the blob area",
                e.id.short()
            )));
        }
    }
    Ok(entries)
}

/// The sealed trailer's length, read from the last four bytes of `tail`
/// (the end of a pack of `pack_len` bytes), checked against the pack's
/// size.
pub fn trailer_len(tail: &[u8], pack_len: u64, pack_id: &Id) -> Result<u64> {
    let n = tail.len();
    if pack_len < MIN_PACK_LEN || n < 4 || n as u64 > pack_len {
        return Err(Error::corrupt(format!(
            "pack {pack_id}: truncated ({pack_len} bytes)"
        )));
    }
    let tlen = u64::from(u32::from_le_bytes([
        tail[n - 4],
        tail[n - 3],
        tail[n - 2],
        tail[n - 1],
    ]));
    if tlen < SEAL_OVERHEAD as u64 || tlen + 4 + HEADER_LEN as u64 > pack_len {
        return Err(Error::corrupt(format!(
            "pack {pack_id}: trailer length {tlen} is impossible for {pack_len} bytes"
        )));
    }
    Ok(tlen)
}

/// The size a pack holding exactly `entries` must have: blobs are stored
/// back to back after the header, then the trailer and its length. `None`
/// when the entries do not tile the blob area that way.
pub fn expected_pack_len(entries: &[BlobEntry]) -> Option<u64> {
    let mut sorted: Vec<&BlobEntry> = entries.iter().collect();
    sorted.sort_by_key(|e| e.offset);
    let session = entries.iter().any(|e| e.session);
    let mut end = if session { PACK_HEAD_LEN } else { HEADER_LEN } as u64;
    for e in sorted {
        if u64::from(e.offset) != end {
            return None;
        }
        end = e.end();
    }
    let trailer: usize = entries.iter().map(BlobEntry::encoded_len).sum();
    Some(end + (trailer + SEAL_OVERHEAD) as u64 + 4)
}

/// A digest of a pack's entry list, independent of order: two lists with
/// the same digest describe the same blobs at the same places.
pub fn entries_digest(entries: &[BlobEntry]) -> [u8; 32] {
    let mut sorted: Vec<&BlobEntry> = entries.iter().collect();
    sorted.sort_by_key(|e| (e.offset, e.id));
    let mut h = blake3::Hasher::new();
    let mut buf = Vec::with_capacity(ENTRY_LEN + DELTA_BASE_LEN);
    for e in sorted {
        buf.clear();
        e.encode(&mut buf);
        h.update(&buf);
    }
    *h.finalize().as_bytes()
}

/// Verifies a finished pack from its bytes: the name is the hash, the
/// trailer lists exactly `expected`, and every blob decrypts,
/// decompresses and hashes to its ID. A delta's seal is checked (its base
/// is in another pack; [`encode_delta`] checked the rest from the sealed
/// bytes).
pub fn verify(keys: &Keys, repo_id: &Id, pack: &FinishedPack) -> Result<()> {
    verify_with(keys, repo_id, pack, true)
}

/// [`verify`] for a pack of blobs copied as they were stored (prune's
/// repacking): each blob's seal must open, which proves its bytes are the
/// ones its first writer sealed, and verified in full, before its first
/// upload; decompressing and hashing it again would prove nothing more.
pub fn verify_copied(keys: &Keys, repo_id: &Id, pack: &FinishedPack) -> Result<()> {
    verify_with(keys, repo_id, pack, false)
}

fn verify_with(keys: &Keys, repo_id: &Id, pack: &FinishedPack, full: bool) -> Result<()> {
    if Id::of_bytes(&pack.bytes) != pack.id {
        return Err(Error::corrupt(format!(
            "pack {}: bytes changed after hashing",
            pack.id
        )));
    }
    // The writer's own keys: a write-only client checks what it sealed
    // with its session key without opening its key block.
    format::check_header(&pack.bytes, ObjectType::Pack, &format!("pack {}", pack.id))?;
    let entries = open_trailer(
        keys,
        repo_id,
        &pack.bytes,
        pack.bytes.len() as u64,
        &pack.id,
    )?;
    check_entry_keys(&entries, &pack.bytes, &pack.id)?;
    if entries != pack.entries {
        return Err(Error::corrupt(format!(
            "pack {}: trailer does not match its blobs",
            pack.id
        )));
    }
    entries.par_iter().try_for_each(|e| {
        let sealed = &pack.bytes[e.offset as usize..e.end() as usize];
        if full && e.compression.base().is_none() {
            decode_blob(keys, repo_id, e, sealed, &pack.id).map(|_| ())
        } else {
            check_blob_seal(keys, repo_id, e, sealed, &pack.id)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKey;
    use proptest::prelude::*;

    fn keys() -> Keys {
        Keys::derive(&MasterKey::from_bytes([4u8; 32]))
    }

    fn build(blobs: &[Vec<u8>]) -> Result<(Keys, Id, FinishedPack)> {
        let keys = keys();
        let repo = Id::of_bytes(b"repo");
        let mut w = PackWriter::new(&keys, &repo)?;
        for b in blobs {
            let id = keys.chunk_id(b);
            w.add(&encode_blob(&keys, &repo, BlobType::Data, id, b, 3)?)?;
        }
        let pack = w.finish(&keys, &repo)?;
        Ok((keys, repo, pack))
    }

    proptest! {
        #[test]
        fn pack_round_trip(blobs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..3000), 0..20)) {
            let (keys, repo, pack) = build(&blobs).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(verify(&keys, &repo, &pack).is_ok());
            let (entries, _) = read_trailer(&keys, &repo, &pack.bytes, &pack.id).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(entries.len(), blobs.len());
            for (e, b) in entries.iter().zip(&blobs) {
                let got = decode_blob(&keys, &repo, e, &pack.bytes[e.offset as usize..e.end() as usize], &pack.id)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(&got, b);
            }
        }

        /// A delta decodes to its chunk exactly, is only kept when smaller
        /// than the chunk stored whole, and against any other base it
        /// either fails or still gives exactly the chunk.
        #[test]
        fn delta_round_trip(
            base in proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'b'), Just(b'\n'), any::<u8>()], 1..20_000),
            at in any::<prop::sample::Index>(),
            cut in any::<prop::sample::Index>(),
            insert in proptest::collection::vec(any::<u8>(), 0..3000),
            flip in any::<prop::sample::Index>(),
        ) {
            let fail = |e: Error| TestCaseError::fail(e.to_string());
            let keys = keys();
            let repo = Id::of_bytes(b"repo");
            let at = at.index(base.len());
            let end = at + cut.index(base.len() - at + 1);
            let mut target = base[..at].to_vec();
            target.extend_from_slice(&insert);
            target.extend_from_slice(&base[end..]);
            prop_assume!(!target.is_empty());
            let id = keys.chunk_id(&target);
            let base_id = keys.chunk_id(&base);
            let whole = encode_blob(&keys, &repo, BlobType::Data, id, &target, 1).map_err(fail)?;
            let Some(delta) = encode_delta(&keys, &repo, &whole, &target, (base_id, &base), 1).map_err(fail)? else {
                return Ok(());
            };
            prop_assert!(delta.sealed.len() < whole.sealed.len());
            prop_assert_eq!(delta.compression, Compression::Delta(base_id));
            let mut w = PackWriter::new(&keys, &repo).map_err(fail)?;
            w.add(&delta).map_err(fail)?;
            let pack = w.finish(&keys, &repo).map_err(fail)?;
            prop_assert!(verify(&keys, &repo, &pack).is_ok());
            let (entries, _) = read_trailer(&keys, &repo, &pack.bytes, &pack.id).map_err(fail)?;
            prop_assert_eq!(entries.len(), 1);
            let e = entries[0];
            prop_assert_eq!(e.compression, Compression::Delta(base_id));
            let sealed = &pack.bytes[e.offset as usize..e.end() as usize];
            let got = decode_delta_in_place(&keys, &repo, &e, &mut sealed.to_vec(), &pack.id, &base).map_err(fail)?;
            prop_assert!(got == target);
            prop_assert!(decode_blob(&keys, &repo, &e, sealed, &pack.id).is_err(), "decoded without its base");
            let mut other = base.clone();
            let i = flip.index(other.len());
            other[i] ^= 0x01;
            if let Ok(wrong) = decode_delta_in_place(&keys, &repo, &e, &mut sealed.to_vec(), &pack.id, &other) {
                prop_assert!(wrong == target, "wrong bytes from a wrong base");
            }
            // The entry names its base: another base ID fails the seal.
            let moved = BlobEntry { compression: Compression::Delta(id), ..e };
            prop_assert!(decode_delta_in_place(&keys, &repo, &moved, &mut sealed.to_vec(), &pack.id, &base).is_err());
        }

        #[test]
        fn any_flipped_bit_is_caught(pos in any::<prop::sample::Index>(), bit in 0u8..8) {
            let (keys, repo, mut pack) = build(&[b"alpha".repeat(100), b"beta".repeat(50)])
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let i = pos.index(pack.bytes.len());
            pack.bytes[i] ^= 1 << bit;
            prop_assert!(verify(&keys, &repo, &pack).is_err());
        }
    }

    #[test]
    fn entry_encoding_is_48_bytes_and_strict() -> Result<()> {
        let e = BlobEntry {
            id: Id::of_bytes(b"x"),
            blob_type: BlobType::Tree,
            compression: Compression::Zstd,
            offset: 8,
            length: 100,
            raw_length: 500,
            session: false,
        };
        let mut long = Vec::new();
        BlobEntry { length: 541, ..e }.encode(&mut long);
        assert!(BlobEntry::decode(&long).is_err(), "longer than raw + seal");
        let mut b = Vec::new();
        e.encode(&mut b);
        assert_eq!(b.len(), ENTRY_LEN);
        assert_eq!(BlobEntry::decode(&b)?, e);
        b[0] = 9;
        assert_eq!(
            BlobEntry::decode(&b).err().map(|e| e.kind()),
            Some(ErrorKind::Unsupported)
        );
        Ok(())
    }

    #[test]
    fn delta_entries_carry_their_base_and_are_strict() -> Result<()> {
        let base = Id::of_bytes(b"base");
        let e = BlobEntry {
            id: Id::of_bytes(b"x"),
            blob_type: BlobType::Data,
            compression: Compression::Delta(base),
            offset: 8,
            length: 100,
            raw_length: 500,
            session: false,
        };
        let mut b = Vec::new();
        e.encode(&mut b);
        assert_eq!(b.len(), ENTRY_LEN + DELTA_BASE_LEN);
        assert_eq!(b[1], 2);
        assert_eq!(&b[48..], base.as_bytes());
        assert_eq!(BlobEntry::decode_prefix(&b)?, (e, 80));
        assert_eq!(decode_entries(&b)?, vec![e]);
        assert!(decode_entries(&b[..79]).is_err(), "truncated base");
        // Never a delta of itself.
        let mut own = Vec::new();
        BlobEntry {
            compression: Compression::Delta(e.id),
            ..e
        }
        .encode(&mut own);
        assert!(BlobEntry::decode_prefix(&own).is_err());
        // A delta longer than its plaintext is refused like any blob.
        let mut long = Vec::new();
        BlobEntry { length: 541, ..e }.encode(&mut long);
        assert!(BlobEntry::decode_prefix(&long).is_err());
        // Mixed lists: whole, delta, whole.
        let whole = BlobEntry {
            compression: Compression::Zstd,
            ..e
        };
        let mut mixed = Vec::new();
        for x in [whole, e, whole] {
            x.encode(&mut mixed);
        }
        assert_eq!(decode_entries(&mixed)?, vec![whole, e, whole]);
        assert_eq!(decode_n_entries(&mixed, 2)?, (vec![whole, e], 128));
        Ok(())
    }

    #[test]
    fn data_and_tree_blobs_with_equal_bytes_have_different_ids() {
        let keys = keys();
        let empty_tree = br#"{"nodes":[]}"#;
        assert_ne!(
            blob_id(&keys, BlobType::Data, empty_tree),
            blob_id(&keys, BlobType::Tree, empty_tree)
        );
        assert_ne!(
            blob_id(&keys, BlobType::Tree, b""),
            blob_id(&keys, BlobType::ChunkList, b"")
        );
    }

    #[test]
    fn blob_cannot_be_relabelled() -> Result<()> {
        let keys = keys();
        let repo = Id::of_bytes(b"repo");
        let id = keys.chunk_id(b"data");
        let blob = encode_blob(&keys, &repo, BlobType::Data, id, b"data", 3)?;
        let entry = BlobEntry {
            id,
            blob_type: BlobType::Tree,
            compression: blob.compression,
            offset: 8,
            length: blob.sealed.len() as u32,
            raw_length: 4,
            session: false,
        };
        assert!(decode_blob(&keys, &repo, &entry, &blob.sealed, &Id::default()).is_err());
        Ok(())
    }
}
