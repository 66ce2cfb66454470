//! Drill records (`repo-format.md` §11): what a restore drill of a
//! snapshot found, stored beside the snapshot; saving and listing them.
//! Running a drill is the drill operation's.

use serde::{Deserialize, Serialize};

use crate::backend::ObjectKind;
use crate::error::{Error, Result};
use crate::format::snapshot::Snapshot;
use crate::format::{self, ObjectType};
use crate::id::Id;
use crate::repo::repository::{verify_name, Repository};
use crate::time::SnapshotTime;

/// Lists and reads every drill record.
pub fn load(repo: &Repository) -> Result<DrillList> {
    let (mut good, damaged) = repo.read_all(ObjectKind::Drill, |info, id, bytes| {
        let name = &info.name;
        verify_name(ObjectKind::Drill, name, bytes)?;
        DrillRecord::decode(repo, bytes, id)
    })?;
    good.sort_by(|a, b| a.time.cmp(&b.time).then(a.id.cmp(&b.id)));
    Ok(DrillList { good, damaged })
}

/// The drill records: readable ones oldest first, and the object names
/// of unreadable ones with why.
#[derive(Debug, Default)]
pub struct DrillList {
    /// Readable records, by drill time.
    pub good: Vec<DrillRecord>,
    /// Object name and error of each unreadable record.
    pub damaged: Vec<(String, Error)>,
}

impl DrillList {
    /// The newest passing drill of snapshot `id`.
    pub fn passed(&self, id: &Id) -> Option<&DrillRecord> {
        self.good
            .iter()
            .filter(|r| r.ok && r.snapshot == *id)
            .max_by(|a, b| a.time.cmp(&b.time))
    }

    /// The newest drill (passed or not) in the series of `s`.
    pub fn newest_in_series(&self, s: &Snapshot) -> Option<&DrillRecord> {
        self.good
            .iter()
            .filter(|r| r.same_series(s))
            .max_by(|a, b| a.time.cmp(&b.time))
    }

    /// The newest passing drill in the series of `s`.
    pub fn newest_passed_in_series(&self, s: &Snapshot) -> Option<&DrillRecord> {
        self.good
            .iter()
            .filter(|r| r.ok && r.same_series(s))
            .max_by(|a, b| a.time.cmp(&b.time))
    }
}

/// Writes a drill record (create-only, named by the hash of its bytes).
pub fn save(repo: &Repository, record: &DrillRecord) -> Result<Id> {
    let bytes = record.encode(repo)?;
    let id = Id::of_bytes(&bytes);
    repo.backend()
        .put(ObjectKind::Drill, &id.to_hex(), &bytes)?;
    Ok(id)
}

/// The outcome of one drill, as stored (`repo-format.md` §11).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrillRecord {
    /// The object name; not part of the stored JSON.
    #[serde(skip)]
    pub id: Id,
    /// The snapshot drilled.
    pub snapshot: Id,
    /// Its host, paths and tags: the series it belongs to, kept after the
    /// snapshot itself is forgotten.
    pub hostname: String,
    /// The snapshot's paths.
    pub paths: Vec<String>,
    /// The snapshot's tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// The snapshot's time.
    pub snapshot_time: SnapshotTime,
    /// When the drill started.
    pub time: SnapshotTime,
    /// The host that ran the drill.
    pub drill_host: String,
    /// Whether everything passed.
    pub ok: bool,
    /// What failed first, when something did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Seconds from start to a restored, verified copy: the recovery time.
    pub seconds: f64,
    /// Seconds of the restore alone.
    pub restore_seconds: f64,
    /// Seconds of reading back and comparing every byte.
    pub verify_seconds: f64,
    /// For a base backup: seconds a private PostgreSQL took to replay the
    /// archived WAL and open for queries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_seconds: Option<f64>,
    /// Files restored.
    pub files: u64,
    /// Bytes restored and verified.
    pub bytes: u64,
    /// What was checked of a database dump in the snapshot, if any:
    /// `complete` (the dump checker of backup passed on the restored
    /// copy), `loaded` (also loaded into a scratch database).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dump_check: Option<String>,
    /// `cairn x.y.z`.
    pub program_version: String,
}

impl DrillRecord {
    /// Seals the record as an object.
    pub fn encode(&self, repo: &Repository) -> Result<Vec<u8>> {
        let json =
            serde_json::to_vec(self).map_err(|e| Error::invalid(format!("drill record: {e}")))?;
        format::seal_data_object(
            repo.keys(),
            repo.id(),
            ObjectType::Drill,
            &json,
            repo.config().compression.level,
        )
    }

    /// Opens drill record object `id`.
    pub fn decode(repo: &Repository, bytes: &[u8], id: &Id) -> Result<Self> {
        let what = format!("drill record {id}");
        let json = format::open_data_object(
            repo.keys(),
            repo.id(),
            ObjectType::Drill,
            bytes,
            MAX_RECORD_LEN,
            &what,
        )?;
        let mut rec: DrillRecord =
            serde_json::from_slice(&json).map_err(|e| Error::decode(&what, e))?;
        rec.id = *id;
        Ok(rec)
    }

    /// Does this record belong to the series of `s` (same host, paths and
    /// tags, in any order)?
    pub fn same_series(&self, s: &Snapshot) -> bool {
        let mut paths = self.paths.clone();
        paths.sort();
        let (mut mine, mut theirs) = (self.tags.clone(), s.tags.clone());
        mine.sort();
        theirs.sort();
        self.hostname == s.hostname && paths == s.sorted_paths() && mine == theirs
    }
}

/// Largest drill record payload accepted.
const MAX_RECORD_LEN: usize = 1024 * 1024;
