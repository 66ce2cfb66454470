//! WAL records (`repo-format.md` §18.2): the object that names one
//! archived PostgreSQL WAL file, and listing them. Storing and fetching
//! WAL files is in [`crate::wal`].

use serde::{Deserialize, Serialize};

use crate::backend::ObjectKind;
use crate::error::{Error, Result};
use crate::format::{self, ObjectType};
use crate::id::Id;
use crate::repository::Repository;
use crate::time::SnapshotTime;

/// Largest WAL record payload accepted.
const MAX_RECORD_LEN: usize = 64 * 1024 * 1024;

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
    /// Seals the record as an object.
    pub fn encode(&self, repo: &Repository) -> Result<Vec<u8>> {
        let json =
            serde_json::to_vec(self).map_err(|e| Error::invalid(format!("WAL record: {e}")))?;
        format::seal_data_object(
            repo.keys(),
            repo.id(),
            ObjectType::WalRecord,
            &json,
            repo.config().compression.level,
        )
    }

    /// Opens WAL record object `id`; its name must be the one `id` is
    /// derived from.
    pub fn decode(repo: &Repository, bytes: &[u8], id: &Id) -> Result<Self> {
        let what = format!("WAL record {id}");
        let json = format::open_data_object(
            repo.keys(),
            repo.id(),
            ObjectType::WalRecord,
            bytes,
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
