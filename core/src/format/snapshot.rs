//! Snapshots: the commit point of a backup (`repo-format.md` §9).
//!
//! A snapshot is a sealed object (type 5) holding JSON: when, where from,
//! what (the root tree), and a summary. It is written last, after every
//! pack and index object it depends on, so a snapshot that exists is
//! complete.

use serde::{Deserialize, Serialize};

use crate::crypto::Keys;
use crate::error::{Error, ErrorKind, Result};
use crate::format::{self, ObjectType};
use crate::id::Id;
use crate::time::SnapshotTime;

/// Largest snapshot payload accepted.
const MAX_SNAPSHOT_LEN: usize = 64 * 1024 * 1024;

/// Where a snapshot's data came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// Files and directories.
    Paths,
    /// Standard input.
    Stdin,
    /// The standard output of a command cairn ran.
    Command,
}

/// The source of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotSource {
    /// Paths, stdin or command.
    pub kind: SourceKind,
    /// Name the stream was stored under (stdin, command).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin_filename: Option<String>,
    /// The command line (command).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// The command's exit status; always 0 in a stored snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_status: Option<i32>,
    /// What database dump the stream (or the one source directory) is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dump: Option<crate::format::snapshot::DumpInfo>,
    /// An empty stream saved on purpose (`backup --allow-empty`): not
    /// flagged by `status`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_allowed: bool,
}

/// Sizes and counts of one backup run. Field names follow restic's
/// summary where they mean the same thing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotSummary {
    /// When the backup started.
    pub backup_start: Option<SnapshotTime>,
    /// When it finished (just before the snapshot was written).
    pub backup_end: Option<SnapshotTime>,
    /// Regular files (or streams) read.
    pub total_files_processed: u64,
    /// Directories read.
    pub total_dirs_processed: u64,
    /// Bytes of content read.
    pub total_bytes_processed: u64,
    /// Files that could not be read and are missing from the snapshot.
    #[serde(default)]
    pub files_unreadable: u64,
    /// New data blobs stored.
    pub data_blobs: u64,
    /// New tree and chunk-list blobs stored.
    pub tree_blobs: u64,
    /// Plaintext bytes of new blobs.
    pub data_added: u64,
    /// Stored (compressed, encrypted) bytes of new blobs.
    pub data_added_packed: u64,
}

/// One backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The object name; not part of the stored JSON.
    #[serde(skip)]
    pub id: Id,
    /// When the backup was taken (or `--time`).
    pub time: SnapshotTime,
    /// Root tree.
    pub tree: Id,
    /// Absolute source paths, or `/<stdin filename>` for streams.
    pub paths: Vec<String>,
    /// Host name.
    pub hostname: String,
    /// User who ran the backup.
    pub username: String,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// The previous snapshot of the same host and paths, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Id>,
    /// Where the data came from.
    pub source: SnapshotSource,
    /// The snapshot this one is a repaired copy of (`repair snapshots`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<Id>,
    /// `cairn x.y.z`.
    pub program_version: String,
    /// Sizes and counts.
    pub summary: SnapshotSummary,
    /// Dated more than [`FUTURE_SKEW_SECONDS`] after it was stored (or
    /// after now): a forged time or a clock far ahead. Set by readers
    /// ([`Snapshot::mark_future_dated`]); not part of the stored JSON.
    #[serde(skip)]
    pub future_dated: bool,
}

/// How far a snapshot's time may lie after the time its object was stored
/// (the storage's own clock: file mtime, S3 `Last-Modified`), or after the
/// reader's clock, before it counts as dated in the future
/// (`repo-format.md` §9.3, docs/design.md §8.3): 15 minutes of clock skew.
pub const FUTURE_SKEW_SECONDS: i64 = 15 * 60;

impl Snapshot {
    /// Sets [`Snapshot::future_dated`]: is the snapshot's time more than
    /// [`FUTURE_SKEW_SECONDS`] after `now` or after `stored`, when its
    /// object was stored (Unix seconds, when the storage says)?
    pub fn mark_future_dated(&mut self, stored: Option<i64>, now: i64) {
        let reference = stored.map_or(now, |t| t.min(now));
        self.future_dated =
            self.time.timestamp().as_second() > reference.saturating_add(FUTURE_SKEW_SECONDS);
    }

    /// Seals the snapshot as an object.
    pub fn encode(&self, keys: &Keys, repo_id: &Id, level: i32) -> Result<Vec<u8>> {
        let json =
            serde_json::to_vec(self).map_err(|e| Error::invalid(format!("snapshot: {e}")))?;
        format::seal_data_object(keys, repo_id, ObjectType::Snapshot, &json, level)
    }

    /// Opens snapshot object `id`.
    pub fn decode(keys: &Keys, repo_id: &Id, bytes: &[u8], id: &Id) -> Result<Self> {
        let what = format!("snapshot {id}");
        let json = format::open_data_object(
            keys,
            repo_id,
            ObjectType::Snapshot,
            bytes,
            MAX_SNAPSHOT_LEN,
            &what,
        )?;
        let mut snap: Snapshot =
            serde_json::from_slice(&json).map_err(|e| Error::decode(&what, e))?;
        snap.id = *id;
        Ok(snap)
    }

    /// Paths sorted, for grouping and parent lookup.
    pub fn sorted_paths(&self) -> Vec<String> {
        let mut p = self.paths.clone();
        p.sort();
        p
    }
}

/// Which snapshots a command considers (`--host`, `--tag`, `--path`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotFilter {
    /// Any of these hosts (empty: any host).
    pub hosts: Vec<String>,
    /// Any of these tag sets, each of which must be fully present
    /// (`--tag a,b --tag c`: (a and b) or c).
    pub tags: Vec<Vec<String>>,
    /// All of these paths must be among the snapshot's paths.
    pub paths: Vec<String>,
    /// One series exactly: the snapshot's paths must be `paths` and its
    /// tags the first tag set (none when there is none), no more, no
    /// fewer (as a job of `cairn run` backs them up).
    pub exact: bool,
}

impl SnapshotFilter {
    /// Does `s` pass?
    pub fn matches(&self, s: &Snapshot) -> bool {
        if self.exact {
            let mut paths = self.paths.clone();
            paths.sort();
            paths.dedup();
            let mut tags = self.tags.first().cloned().unwrap_or_default();
            tags.sort();
            tags.dedup();
            let mut theirs = s.tags.clone();
            theirs.sort();
            theirs.dedup();
            let mut their_paths = s.sorted_paths();
            their_paths.dedup();
            return (self.hosts.is_empty() || self.hosts.contains(&s.hostname))
                && paths == their_paths
                && tags == theirs;
        }
        (self.hosts.is_empty() || self.hosts.contains(&s.hostname))
            && (self.tags.is_empty()
                || self
                    .tags
                    .iter()
                    .any(|set| set.iter().all(|t| s.tags.contains(t))))
            && self.paths.iter().all(|p| s.paths.contains(p))
    }
}

/// Finds the snapshot named by `spec`: a full ID, a unique ID prefix, or
/// `latest` (the newest snapshot passing `filter`).
pub fn resolve<'a>(
    snapshots: &'a [Snapshot],
    spec: &str,
    filter: &SnapshotFilter,
) -> Result<&'a Snapshot> {
    if spec == "latest" {
        // A snapshot dated in the future is never the latest: a forged
        // date must not make `latest` (and `restore latest`) pick it.
        return snapshots
            .iter()
            .filter(|s| filter.matches(s) && !s.future_dated)
            .max_by(|a, b| a.time.cmp(&b.time).then(a.id.cmp(&b.id)))
            .ok_or_else(|| {
                Error::new(ErrorKind::SnapshotNotFound, "no snapshot matches (latest)")
            });
    }
    let prefix = spec.to_ascii_lowercase();
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) || prefix.len() > 64 {
        return Err(Error::new(
            ErrorKind::SnapshotNotFound,
            format!("{spec:?} is not a snapshot ID, ID prefix or \"latest\""),
        ));
    }
    let found: Vec<&Snapshot> = snapshots
        .iter()
        .filter(|s| s.id.to_hex().starts_with(&prefix))
        .collect();
    match found.as_slice() {
        [one] => Ok(one),
        [] => Err(Error::new(
            ErrorKind::SnapshotNotFound,
            format!("no snapshot with ID {spec}"),
        )),
        many => {
            let list: Vec<String> = many
                .iter()
                .map(|s| {
                    let hex = s.id.to_hex();
                    let shown = hex.get(..prefix.len().max(8) + 4).unwrap_or(&hex);
                    format!("{shown} ({})", s.time.local_display())
                })
                .collect();
            Err(Error::new(
                ErrorKind::AmbiguousSnapshot,
                format!(
                    "snapshot ID prefix {spec} is ambiguous: {}",
                    list.join(", ")
                ),
            ))
        }
    }
}

/// A stdin snapshot of `/shop.sql` for tests.
#[cfg(test)]
pub(crate) fn sample(id: Id, time: SnapshotTime, host: &str, tags: &[&str]) -> Snapshot {
    Snapshot {
        id,
        time,
        tree: Id::default(),
        paths: vec!["/shop.sql".into()],
        hostname: host.into(),
        username: "postgres".into(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        parent: None,
        source: SnapshotSource {
            kind: SourceKind::Stdin,
            stdin_filename: Some("shop.sql".into()),
            command: None,
            exit_status: None,
            dump: None,
            empty_allowed: false,
        },
        original: None,
        program_version: "cairn test".into(),
        summary: SnapshotSummary::default(),
        future_dated: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKey;

    fn snap(id_byte: u8, host: &str, tags: &[&str], time: &str) -> Result<Snapshot> {
        let mut id = [id_byte; 32];
        id[1] = 0;
        Ok(sample(
            Id::from_bytes(id),
            SnapshotTime::parse(time)?,
            host,
            tags,
        ))
    }

    #[test]
    fn unknown_source_kind_is_unsupported_not_corrupt() {
        let json = br#"{"time":"2026-11-20T03:00:00Z","tree":"0000000000000000000000000000000000000000000000000000000000000000","paths":[],"hostname":"h","username":"u","source":{"kind":"s3-stream"},"program_version":"cairn 9","summary":{"total_files_processed":0,"total_dirs_processed":0,"total_bytes_processed":0,"data_blobs":0,"tree_blobs":0,"data_added":0,"data_added_packed":0}}"#;
        let err =
            serde_json::from_slice::<Snapshot>(json).map_err(|e| Error::decode("snapshot", e));
        assert_eq!(err.err().map(|e| e.kind()), Some(ErrorKind::Unsupported));
    }

    #[test]
    fn encode_decode() -> Result<()> {
        let keys = Keys::derive(&MasterKey::from_bytes([1; 32]));
        let repo = Id::of_bytes(b"r");
        let s = snap(1, "db1", &["nightly"], "2026-11-20T03:00:00+01:00")?;
        let bytes = s.encode(&keys, &repo, 3)?;
        let back = Snapshot::decode(&keys, &repo, &bytes, &s.id)?;
        assert_eq!(back, s);
        Ok(())
    }

    #[test]
    fn resolve_prefix_latest_and_ambiguity() -> Result<()> {
        let list = vec![
            snap(0xab, "db1", &["nightly"], "2026-11-20T03:00:00Z")?,
            snap(0xac, "db2", &[], "2026-11-21T03:00:00Z")?,
            snap(0x12, "db1", &["weekly", "nightly"], "2026-11-19T03:00:00Z")?,
        ];
        let none = SnapshotFilter::default();
        assert_eq!(resolve(&list, "ab", &none)?.hostname, "db1");
        assert_eq!(resolve(&list, "latest", &none)?.hostname, "db2");
        let db1 = SnapshotFilter {
            hosts: vec!["db1".into()],
            ..Default::default()
        };
        assert_eq!(resolve(&list, "latest", &db1)?.id, list[0].id);
        let weekly = SnapshotFilter {
            tags: vec![vec!["weekly".into(), "nightly".into()]],
            ..Default::default()
        };
        assert_eq!(resolve(&list, "latest", &weekly)?.id, list[2].id);
        let amb = resolve(&list, "a", &none).err();
        assert_eq!(
            amb.as_ref().map(|e| e.kind()),
            Some(ErrorKind::AmbiguousSnapshot)
        );
        assert!(amb.map(|e| e.to_string().contains("abab")).unwrap_or(false));
        assert_eq!(
            resolve(&list, "ff", &none).err().map(|e| e.kind()),
            Some(ErrorKind::SnapshotNotFound)
        );
        assert_eq!(
            resolve(&list, "xyz", &none).err().map(|e| e.kind()),
            Some(ErrorKind::SnapshotNotFound)
        );
        Ok(())
    }
}

/// Refuses a host name or tags a snapshot should not hold: longer than
/// [`MAX_LABEL_LEN`] bytes, more than [`MAX_TAGS`] tags, or with control
/// characters (`repo-format.md` §9.2). Readers cope with any (a modified
/// client can store anything), but cairn does not write them.
pub fn check_labels(hostname: &str, tags: &[String]) -> Result<()> {
    if tags.len() > MAX_TAGS {
        return Err(Error::invalid(format!(
            "{} tags given, at most {MAX_TAGS} are allowed",
            tags.len()
        )));
    }
    for (what, label) in
        std::iter::once(("host name", hostname)).chain(tags.iter().map(|t| ("tag", t.as_str())))
    {
        if label.len() > MAX_LABEL_LEN {
            return Err(Error::invalid(format!(
                "{what} of {} bytes: at most {MAX_LABEL_LEN} are allowed",
                label.len()
            )));
        }
        if label.chars().any(char::is_control) {
            return Err(Error::invalid(format!(
                "{what} {label:?} contains control characters"
            )));
        }
    }
    Ok(())
}

/// Most tags a backup stores.
pub const MAX_TAGS: usize = 100;

/// Longest tag or host name a backup stores, in bytes.
pub const MAX_LABEL_LEN: usize = 255;

/// Tag added to repaired snapshots.
pub const REPAIRED_TAG: &str = "repaired";

/// What a backed-up dump is, recorded in the snapshot (`repo-format.md`
/// §9.2).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DumpInfo {
    /// `pg_dump-plain`, `pg_dump-custom`, `pg_dump-tar`,
    /// `pg_dump-directory`, `pg_dumpall`, `mysqldump`, or a compression
    /// (`gzip`, `zstd`, `xz`, `bzip2`, `lz4`) when the stream is compressed
    /// as a whole.
    pub format: String,
    /// The database dumped, when the dump says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// The server's version, as the dump states it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,
    /// The dump tool's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dump_version: Option<String>,
    /// The compression inside the dump (custom format), when not none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<String>,
    /// Whether the dump was checked to be complete before the snapshot
    /// was written.
    #[serde(default)]
    pub validated: bool,
    /// A base backup's start: its WAL location (LSN, `0/2000028`)...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_lsn: Option<String>,
    /// ...the WAL file holding it (recovery needs it and all later ones)...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_wal: Option<String>,
    /// ...and its timeline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<u32>,
    /// When the base backup started (`backup_label`'s `START TIME`, as
    /// PostgreSQL wrote it: `2026-12-06 03:40:11 UTC`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// Where the base backup's WAL ends (the `End-LSN` of the last range in
    /// `backup_manifest`'s `WAL-Ranges`, PostgreSQL 13 and later): recovery
    /// is consistent only from this location on, so no recovery target
    /// before it can be reached from this backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_lsn: Option<String>,
    /// The cluster's system identifier (decimal), from the base backup's
    /// `global/pg_control` (`repo-format.md` §10.6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_identifier: Option<String>,
}

impl DumpInfo {
    /// One short description for listings: `pg_dump-plain shop (PostgreSQL 16.4)`.
    pub fn describe(&self) -> String {
        let mut s = self.format.clone();
        if let Some(db) = &self.database {
            s.push(' ');
            s.push_str(db);
        }
        if let Some(v) = &self.server_version {
            // "15.18 (Debian 15.18-0+deb12u1)" → "15.18"
            let short = v.split_whitespace().next().unwrap_or(v);
            s.push_str(&format!(" (server {short})"));
        }
        s
    }
}
