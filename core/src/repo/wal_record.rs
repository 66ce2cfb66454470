//! WAL records (`repo-format.md` §10.2): the object that names one
//! archived PostgreSQL WAL file, and listing them. Storing and fetching
//! WAL files is the WAL archive's (`pg::wal`).

use serde::{Deserialize, Serialize};

use crate::backend::claim::{put_exclusive, Claim, Exclusive};
use crate::backend::ObjectKind;
use crate::crypto::Keys;
use crate::error::{Error, Result};
use crate::format::{self, ObjectType};
use crate::id::Id;
use crate::repo::repository::Repository;
use crate::time::SnapshotTime;

/// Largest WAL record payload accepted.
const MAX_RECORD_LEN: usize = 64 * 1024 * 1024;
/// Length of the contents tag between the header (and key block) and the
/// sealed payload.
pub const CONTENTS_TAG_LEN: usize = 32;

/// One archived WAL file (or timeline history, backup label, partial
/// segment: whatever PostgreSQL archives).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalRecord {
    /// The object name; not part of the stored JSON.
    #[serde(skip)]
    pub id: Id,
    /// The file name PostgreSQL gave, e.g. `000000010000000000000003`.
    pub name: String,
    /// When it was archived.
    pub time: SnapshotTime,
    /// The host that archived it.
    pub hostname: String,
    /// Its size in bytes.
    pub size: u64,
    /// BLAKE3 (unkeyed) of its contents, hex: a retried push compares it.
    pub blake3: String,
    /// A tree with one file node, `name`, holding the contents.
    pub tree: Id,
}

impl WalRecord {
    /// The contents tag of a WAL file `name` of `size` bytes whose BLAKE3
    /// is `blake3_hex` (`repo-format.md` §10.2).
    pub fn tag_of(keys: &Keys, name: &str, size: u64, blake3_hex: &str) -> Result<[u8; 32]> {
        let hash = blake3::Hash::from_hex(blake3_hex)
            .map_err(|_| Error::corrupt(format!("WAL file {name}: bad BLAKE3 {blake3_hex:?}")))?;
        Ok(keys.wal_contents_tag(name, size, hash.as_bytes()))
    }

    /// Seals and stores the record, create-only (on storage that ignores
    /// create-only puts, through a claim: `repo-format.md` §15.4).
    pub fn store(&self, repo: &Repository) -> Result<Exclusive> {
        let bytes = self.encode(repo)?;
        let tag = Self::tag_of(repo.keys(), &self.name, self.size, &self.blake3)?;
        let claim = Claim::new(self.id.as_bytes(), &tag);
        put_exclusive(
            repo.backend().as_ref(),
            ObjectKind::Wal,
            &self.id.to_hex(),
            &bytes,
            &claim,
        )
    }

    /// Seals the record as an object: header (and key block), contents
    /// tag, sealed JSON (the tag in its associated data).
    pub fn encode(&self, repo: &Repository) -> Result<Vec<u8>> {
        let keys = repo.keys();
        let json =
            serde_json::to_vec(self).map_err(|e| Error::invalid(format!("WAL record: {e}")))?;
        let tag = Self::tag_of(keys, &self.name, self.size, &self.blake3)?;
        let (h, mut out) = format::data_object_start(keys, repo.id(), ObjectType::WalRecord)?;
        out.extend_from_slice(&tag);
        let level = repo.config().compression.level;
        format::seal_payload_into(keys.data(), (repo.id(), &h, &tag), &json, level, &mut out)?;
        Ok(out)
    }

    /// The contents tag of a stored record, read without opening it (a
    /// write-only key cannot).
    pub fn stored_tag(bytes: &[u8], id: &Id) -> Result<[u8; 32]> {
        let what = format!("WAL record {id}");
        let (_, start) = format::data_object_body_start(bytes, ObjectType::WalRecord, &what)?;
        bytes
            .get(start..start + CONTENTS_TAG_LEN)
            .and_then(|t| t.try_into().ok())
            .ok_or_else(|| Error::corrupt(format!("{what}: truncated")))
    }

    /// Opens WAL record object `id`; its name must be the one `id` is
    /// derived from, and its contents tag the one of its fields.
    pub fn decode(repo: &Repository, bytes: &[u8], id: &Id) -> Result<Self> {
        let what = format!("WAL record {id}");
        let (keys, h, start) =
            format::data_object_keys(repo.keys(), repo.id(), ObjectType::WalRecord, bytes, &what)?;
        let tag = bytes
            .get(start..start + CONTENTS_TAG_LEN)
            .ok_or_else(|| Error::corrupt(format!("{what}: truncated")))?;
        let sealed = &bytes[start + CONTENTS_TAG_LEN..];
        let json = format::open_payload(
            keys.data(),
            (repo.id(), &h, tag),
            sealed,
            MAX_RECORD_LEN,
            &what,
        )?;
        let mut rec: WalRecord =
            serde_json::from_slice(&json).map_err(|e| Error::decode(&what, e))?;
        if repo.keys().wal_object_id(&rec.name) != *id {
            return Err(Error::corrupt(format!(
                "{what} holds WAL file {:?}, which is not the file its name is for",
                rec.name
            )));
        }
        if Self::tag_of(repo.keys(), &rec.name, rec.size, &rec.blake3)? != tag {
            return Err(Error::corrupt(format!(
                "{what}: its contents tag does not match its size and hash"
            )));
        }
        rec.id = *id;
        Ok(rec)
    }
}

/// The archived WAL records: the readable ones (by name), and the object
/// names of those that cannot be read, with why.
#[derive(Debug, Default)]
pub struct WalList {
    /// Readable records, sorted by name.
    pub good: Vec<WalRecord>,
    /// Object name and error of each unreadable record.
    pub damaged: Vec<(String, Error)>,
}

/// Lists and reads every WAL record.
pub fn load(repo: &Repository) -> Result<WalList> {
    // Named by the WAL file name, not by a hash: `decode` checks that.
    let (mut good, damaged) = repo.read_all(ObjectKind::Wal, |_, id, bytes| {
        WalRecord::decode(repo, bytes, id)
    })?;
    good.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(WalList { good, damaged })
}
