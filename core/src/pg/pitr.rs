//! Point-in-time restore of PostgreSQL: a base backup (a snapshot of
//! `pg_basebackup -Ft -D -`) unpacked into a new data directory, plus the
//! recovery settings that make PostgreSQL replay archived WAL (fetched
//! with `wal-fetch`) up to the target.

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::AtomicBool;

use crate::error::{Error, ErrorKind, Result};
use crate::format::snapshot::Snapshot;
use crate::format::tree::NodeKind;
pub use crate::pg::dumpcheck::parse_lsn;
use crate::repo::reader::write_chunks;
use crate::repo::repository::Repository;
use crate::repo::walker::find_node;
use crate::sys::running_as_root;
use crate::time::SnapshotTime;

/// The `source.dump.format` of base backups.
pub const BASE_BACKUP_FORMAT: &str = "pg_basebackup";
/// The file name a base backup is stored under.
pub const BASE_BACKUP_FILE: &str = "base.tar";

/// Where recovery stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The end of the archived WAL.
    End,
    /// Just before the first transaction that committed after this time.
    Time(SnapshotTime),
    /// At this WAL location (`0/3000060`).
    Lsn(String),
}

/// Whether `s` is a base backup snapshot.
pub fn is_base_backup(s: &Snapshot) -> bool {
    s.source
        .dump
        .as_ref()
        .is_some_and(|d| d.format == BASE_BACKUP_FORMAT)
}

/// Where recovery from base backup `s` becomes consistent: its stop LSN
/// (from `backup_manifest`), or, for base backups recorded without one,
/// its start LSN.
pub fn consistent_from(s: &Snapshot) -> Option<u64> {
    let dump = s.source.dump.as_ref()?;
    dump.stop_lsn
        .as_deref()
        .or(dump.start_lsn.as_deref())
        .and_then(|l| parse_lsn(l).ok())
}

/// The base backup to start from: the newest one that finished before a
/// time target, whose WAL ends at or before an LSN target (recovery from
/// a backup cannot stop inside the backup's own window: PostgreSQL fails
/// with "requested recovery stop point is before consistent recovery
/// point"), or the newest of all.
pub fn choose_base_backup<'a>(snapshots: &'a [Snapshot], target: &Target) -> Result<&'a Snapshot> {
    let bases = || snapshots.iter().filter(|s| is_base_backup(s));
    let chosen = match target {
        Target::End => bases().max_by(|a, b| a.time.cmp(&b.time)),
        Target::Time(t) => bases()
            .filter(|s| s.summary.backup_end.as_ref().unwrap_or(&s.time) <= t)
            .max_by(|a, b| a.time.cmp(&b.time)),
        Target::Lsn(l) => {
            let target = parse_lsn(l)?;
            bases()
                .filter(|s| consistent_from(s).is_some_and(|c| c <= target))
                .max_by(|a, b| a.time.cmp(&b.time))
        }
    };
    chosen.ok_or_else(|| {
        let oldest = bases().min_by(|a, b| a.time.cmp(&b.time));
        let earliest = match (target, oldest) {
            (_, None) => String::new(),
            (Target::Lsn(_), Some(o)) => match o
                .source
                .dump
                .as_ref()
                .and_then(|d| d.stop_lsn.as_deref().or(d.start_lsn.as_deref()))
            {
                Some(l) => format!("; the earliest restorable point is WAL location {l}"),
                None => String::new(),
            },
            (_, Some(o)) => format!(
                "; the earliest restorable point is {}",
                o.summary
                    .backup_end
                    .as_ref()
                    .unwrap_or(&o.time)
                    .to_rfc3339()
            ),
        };
        Error::new(
            ErrorKind::SnapshotNotFound,
            match target {
                Target::End => "no base backup in the repository (cairn pg basebackup)".into(),
                Target::Time(t) => format!(
                    "no base backup finished before {}{earliest}",
                    t.to_rfc3339()
                ),
                Target::Lsn(l) => {
                    format!("no base backup is consistent before WAL location {l}{earliest}")
                }
            },
        )
    })
}

/// Prefix of the scratch directories a restore unpacks into.
const SCRATCH_PREFIX: &str = ".cairn-pg-restore-";

/// Restores base backup `snap` as the data directory `pgdata`, which must
/// not exist or be empty; `finish` (writing the recovery settings) runs on
/// the unpacked directory before it takes `pgdata`'s place, so a failure
/// or an interruption at any point leaves `pgdata` as it was (absent or
/// empty), never half-filled.
///
/// The tar is unpacked into a scratch directory beside `pgdata` (inside
/// it, when `pgdata` is an existing empty directory, which may be a mount
/// point), then renamed into place. As root the files keep the owners
/// they had on the server, and `pgdata` gets the owner of `PG_VERSION`;
/// otherwise everything belongs to the user running the restore (the
/// server's user, as docs/guide.md says to run it).
pub fn unpack_base_backup(
    repo: &Repository,
    snap: &Snapshot,
    pgdata: &Path,
    cancel: &AtomicBool,
    finish: impl FnOnce(&Path) -> Result<()>,
) -> Result<u64> {
    let exists = match fs::symlink_metadata(pgdata) {
        Ok(m) if m.is_dir() => true,
        Ok(_) => {
            return Err(Error::invalid(format!(
                "{} exists and is not a directory",
                pgdata.display()
            )))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(Error::io(format!("reading {}", pgdata.display()), e)),
    };
    let scratch_parent = if exists {
        remove_stale_scratch(pgdata)?;
        pgdata.to_path_buf()
    } else {
        let parent = match pgdata.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        };
        fs::create_dir_all(&parent)
            .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
        parent
    };
    let scratch = tempfile::Builder::new()
        .prefix(SCRATCH_PREFIX)
        .tempdir_in(&scratch_parent)
        .map_err(|e| {
            Error::io(
                format!("creating a directory in {}", scratch_parent.display()),
                e,
            )
        })?;
    let written = unpack_into(repo, snap, scratch.path(), cancel)?;
    set_data_dir_owner_and_mode(scratch.path())?;
    finish(scratch.path())?;
    // Durable before it takes the target's place (pg_basebackup syncs too).
    sync_file_system(scratch.path())?;
    if exists {
        // Entry by entry into the existing directory (renames within one
        // file system), then the scratch directory goes. The names moved
        // are written down first: a run killed in between leaves them
        // listed, and the next run removes exactly those.
        let mut names = Vec::new();
        for entry in fs::read_dir(scratch.path())
            .map_err(|e| Error::io(format!("reading {}", scratch.path().display()), e))?
        {
            let entry =
                entry.map_err(|e| Error::io(format!("reading {}", scratch.path().display()), e))?;
            names.push(entry.file_name());
        }
        let moving = pgdata.join(MOVING);
        let mut list = Vec::new();
        for name in &names {
            list.extend_from_slice(name.as_encoded_bytes());
            list.push(b'\n');
        }
        write_synced(&moving, &list)?;
        for name in &names {
            let to = pgdata.join(name);
            fs::rename(scratch.path().join(name), &to)
                .map_err(|e| Error::io(format!("moving into {}", to.display()), e))?;
        }
        set_data_dir_owner_and_mode(pgdata)?;
        drop(scratch);
        sync_file_system(pgdata)?;
        fs::remove_file(&moving)
            .map_err(|e| Error::io(format!("removing {}", moving.display()), e))?;
    } else {
        let kept = scratch.keep();
        fs::rename(&kept, pgdata).map_err(|e| {
            let _ = fs::remove_dir_all(&kept);
            Error::io(
                format!("renaming the restored data into {}", pgdata.display()),
                e,
            )
        })?;
    }
    sync_file_system(pgdata)?;
    Ok(written)
}

/// Flushes the file system holding `dir` (every file unpacked, and the
/// renames).
fn sync_file_system(dir: &Path) -> Result<()> {
    let f = fs::File::open(dir).map_err(|e| Error::io(format!("opening {}", dir.display()), e))?;
    rustix::fs::syncfs(&f).map_err(|e| Error::io(format!("syncing {}", dir.display()), e.into()))
}

/// The list of the entries a restore is moving into an existing
/// `--pgdata`, one name per line, written (and synced) before the first
/// move and removed after the last.
const MOVING: &str = ".cairn-pg-restore-moving";

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f =
        fs::File::create(path).map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// Checks that the existing `pgdata` is empty but for what an interrupted
/// restore left behind (scratch directories, and the entries it listed as
/// moving into place), and removes that.
fn remove_stale_scratch(pgdata: &Path) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let moving = pgdata.join(MOVING);
    let listed: HashSet<Vec<u8>> = match fs::read(&moving) {
        Ok(list) => list
            .split(|&b| b == b'\n')
            .filter(|n| !n.is_empty())
            .map(<[u8]>::to_vec)
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => HashSet::new(),
        Err(e) => return Err(Error::io(format!("reading {}", moving.display()), e)),
    };
    let entries =
        fs::read_dir(pgdata).map_err(|e| Error::io(format!("reading {}", pgdata.display()), e))?;
    let mut stale = Vec::new();
    let mut moved = Vec::new();
    let mut other = false;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("reading {}", pgdata.display()), e))?;
        let name = entry.file_name();
        if name.as_bytes() == MOVING.as_bytes() {
            continue;
        } else if listed.contains(name.as_bytes()) {
            moved.push(entry.path());
        } else if name.to_str().is_some_and(|n| n.starts_with(SCRATCH_PREFIX)) {
            stale.push(entry.path());
        } else {
            other = true;
        }
    }
    if other && (!stale.is_empty() || !moved.is_empty()) {
        return Err(Error::invalid(format!(
            "{} holds part of a restore that was interrupted while moving into place, and \
             other files; empty it and run the restore again",
            pgdata.display()
        )));
    }
    if other {
        return Err(Error::invalid(format!(
            "{} is not empty; restore into a new or empty directory",
            pgdata.display()
        )));
    }
    // What an interrupted restore moved in, then its scratch directories,
    // then the list: a kill in between leaves a state this handles again.
    for path in moved.iter().chain(&stale) {
        let removed = if fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
            fs::remove_dir_all(path)
        } else {
            fs::remove_file(path)
        };
        removed.map_err(|e| Error::io(format!("removing {}", path.display()), e))?;
    }
    if moving.exists() {
        sync_file_system(pgdata)?;
        fs::remove_file(&moving)
            .map_err(|e| Error::io(format!("removing {}", moving.display()), e))?;
    }
    Ok(())
}

/// Streams the snapshot's tar into the tar reader, unpacking into `dir`.
fn unpack_into(repo: &Repository, snap: &Snapshot, dir: &Path, cancel: &AtomicBool) -> Result<u64> {
    let index = repo.index()?;
    let node = find_node(repo, &index, snap, Path::new(BASE_BACKUP_FILE))?;
    if node.kind != NodeKind::File {
        return Err(Error::corrupt(format!(
            "snapshot {}: {BASE_BACKUP_FILE} is not a file",
            snap.id.short()
        )));
    }
    let ids = repo.file_chunks(&index, &node)?;
    let (reader, mut writer) =
        std::io::pipe().map_err(|e| Error::io("creating a pipe".to_string(), e))?;
    let written = std::thread::scope(|scope| {
        let feeder = scope.spawn(move || {
            let n = write_chunks(repo, &index, &ids, &mut writer, &|_| {}, cancel);
            drop(writer);
            n
        });
        let mut archive = tar::Archive::new(reader);
        archive.set_preserve_permissions(true);
        // Only root may give files away; anyone else owns what it unpacks
        // (pg_basebackup stores the server's uid, which is not ours).
        archive.set_preserve_ownerships(running_as_root());
        archive.set_overwrite(false);
        let unpacked = archive
            .unpack(dir)
            .map_err(|e| Error::io("unpacking the base backup", with_causes(e)));
        // The tar reader stops at the first end block: the rest of the
        // stream (the second end block, padding) is read to its end, so
        // that the feeder is not cut off mid-write; after a failure it is
        // dropped, which stops the feeder.
        let mut rest = archive.into_inner();
        if unpacked.is_ok() {
            let _ = std::io::copy(&mut rest, &mut std::io::sink());
        }
        drop(rest);
        let fed = feeder
            .join()
            .map_err(|_| Error::new(ErrorKind::Io, "the restore reader thread panicked"))?;
        // The unpacker's error first: the feeder's is then only the
        // broken pipe it met when the unpacker stopped reading.
        unpacked?;
        fed
    })?;
    if written != node.size {
        return Err(Error::corrupt(format!(
            "{BASE_BACKUP_FILE}: got {written} bytes, the snapshot says {}",
            node.size
        )));
    }
    Ok(written)
}

/// The tar reader's error names the entry, its cause (the OS error) is
/// one level down: both, in one line.
fn with_causes(e: std::io::Error) -> std::io::Error {
    let mut text = e.to_string();
    let mut cause = e.get_ref().and_then(|inner| inner.source());
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    std::io::Error::new(e.kind(), text)
}

/// A data directory: the server's owner (as root: the owner of
/// `PG_VERSION`), private.
fn set_data_dir_owner_and_mode(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if running_as_root() {
        let version = dir.join("PG_VERSION");
        let meta = fs::metadata(&version)
            .map_err(|e| Error::io(format!("reading {}", version.display()), e))?;
        std::os::unix::fs::chown(dir, Some(meta.uid()), Some(meta.gid()))
            .map_err(|e| Error::io(format!("setting the owner of {}", dir.display()), e))?;
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::io(format!("setting the mode of {}", dir.display()), e))
}

/// PostgreSQL's quoting of a configuration value.
fn quote_conf(v: &str) -> String {
    format!("'{}'", v.replace('\'', "''"))
}

/// How a restored copy archives its own WAL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ArchiveMode {
    /// `archive_mode = off`: the copy never writes into the repository it
    /// came from (its new timeline would otherwise mix with the
    /// original's). The default.
    #[default]
    Off,
    /// Keep the base backup's archiving settings: for a copy that becomes
    /// the new primary.
    Preserve,
}

/// What recovery does.
#[derive(Debug, Clone)]
pub struct Recovery {
    /// `restore_command`.
    pub restore_command: String,
    /// Where it stops.
    pub target: Target,
    /// `recovery_target_action` at a target: promote, pause or shutdown.
    pub action: String,
    /// Whether the copy archives.
    pub archive: ArchiveMode,
    /// `recovery_target_timeline` (`current`, `latest` or a number);
    /// `None` leaves PostgreSQL's default (`latest`).
    pub timeline: Option<String>,
    /// `recovery_end_command` (run once when recovery ends): removes the
    /// spool of `wal-fetch --prefetch`.
    pub end_command: Option<String>,
}

/// The `recovery_end_command` that removes the spool `wal-fetch
/// --prefetch` keeps in `pg_wal` (its default place, next to `%p`). A
/// filler still at work may add a file while `rm` empties the directory
/// (then `rmdir` fails): it tries again, and the filler stops once the
/// directory is gone (it never creates it).
pub const REMOVE_PREFETCH_SPOOL: &str =
    "for i in 1 2 3 4 5; do rm -rf pg_wal/.cairn-prefetch && exit 0; sleep 1; done; exit 1";

/// Checks a `--target-timeline` value: `current`, `latest`, or a timeline
/// number (decimal, or hex with `0x`).
pub fn parse_timeline(s: &str) -> Result<String> {
    let ok = matches!(s, "current" | "latest")
        || s.parse::<u32>().is_ok_and(|n| n > 0)
        || s.strip_prefix("0x")
            .is_some_and(|h| u32::from_str_radix(h, 16).is_ok_and(|n| n > 0));
    if ok {
        Ok(s.to_string())
    } else {
        Err(Error::invalid(format!(
            "{s:?} is not a timeline (current, latest, or a number like 2)"
        )))
    }
}

/// Makes `pgdata` recover from the archive on its next start: writes
/// `recovery.signal` and appends the recovery settings to
/// `postgresql.auto.conf` (which PostgreSQL reads last, so they win).
pub fn configure_recovery(pgdata: &Path, recovery: &Recovery) -> Result<()> {
    let mut conf = String::from("\n# Added by cairn pg restore\n");
    conf.push_str(&format!(
        "restore_command = {}\n",
        quote_conf(&recovery.restore_command)
    ));
    match &recovery.target {
        Target::End => {}
        Target::Time(t) => {
            conf.push_str(&format!(
                "recovery_target_time = {}\n",
                quote_conf(&t.to_rfc3339())
            ));
        }
        Target::Lsn(l) => {
            conf.push_str(&format!("recovery_target_lsn = {}\n", quote_conf(l)));
        }
    }
    if recovery.target != Target::End {
        conf.push_str(&format!(
            "recovery_target_action = {}\n",
            quote_conf(&recovery.action)
        ));
    }
    if let Some(tl) = &recovery.timeline {
        conf.push_str(&format!("recovery_target_timeline = {}\n", quote_conf(tl)));
    }
    if let Some(end) = &recovery.end_command {
        conf.push_str(&format!("recovery_end_command = {}\n", quote_conf(end)));
    }
    if recovery.archive == ArchiveMode::Off {
        conf.push_str(
            "# A restored copy does not archive into the repository it came from\n\
             # (cairn pg restore --archive-mode preserve keeps the original setting).\n\
             archive_mode = 'off'\n",
        );
    }
    let auto = pgdata.join("postgresql.auto.conf");
    let mut f = fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&auto)
        .map_err(|e| Error::io(format!("opening {}", auto.display()), e))?;
    f.write_all(conf.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::io(format!("writing {}", auto.display()), e))?;
    // A base backup taken from a standby carries its standby.signal:
    // left there, the restored copy would stay a standby of whatever
    // primary_conninfo names and never finish recovering.
    let standby = pgdata.join("standby.signal");
    match fs::remove_file(&standby) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(format!("removing {}", standby.display()), e)),
    }
    let signal = pgdata.join("recovery.signal");
    fs::write(&signal, b"").map_err(|e| Error::io(format!("writing {}", signal.display()), e))?;
    // Same owner as the rest.
    use std::os::unix::fs::MetadataExt;
    if let Ok(meta) = fs::metadata(pgdata) {
        for p in [&auto, &signal] {
            let _ = std::os::unix::fs::chown(p, Some(meta.uid()), Some(meta.gid()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsns_parse_and_order() -> Result<()> {
        assert_eq!(parse_lsn("0/3000060")?, 0x3000060);
        assert_eq!(parse_lsn("1/0")?, 1 << 32);
        assert!(parse_lsn("0/3000060")? < parse_lsn("1/0")?);
        for bad in ["", "3000060", "0/", "x/1", "100000000/0"] {
            assert!(parse_lsn(bad).is_err(), "{bad}");
        }
        Ok(())
    }

    #[test]
    fn recovery_values_are_quoted() {
        assert_eq!(quote_conf("it's"), "'it''s'");
    }
}
