//! Point-in-time restore of PostgreSQL: a base backup (a snapshot of
//! `pg_basebackup -Ft -D -`) unpacked into a new data directory, plus the
//! recovery settings that make PostgreSQL replay archived WAL (fetched
//! with `wal-fetch`) up to the target.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::AtomicBool;

use crate::error::{Error, ErrorKind, Result};
use crate::repository::Repository;
use crate::restore::{find_node, write_chunks};
use crate::snapshot::Snapshot;
use crate::time::SnapshotTime;
use crate::tree::NodeKind;

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

/// A WAL location `X/Y` (hex) as a number.
pub fn parse_lsn(s: &str) -> Result<u64> {
    let bad = || Error::invalid(format!("{s:?} is not a WAL location (like 0/3000060)"));
    let (hi, lo) = s.split_once('/').ok_or_else(bad)?;
    let hi = u64::from_str_radix(hi, 16).map_err(|_| bad())?;
    let lo = u64::from_str_radix(lo, 16).map_err(|_| bad())?;
    if hi > u64::from(u32::MAX) || lo > u64::from(u32::MAX) {
        return Err(bad());
    }
    Ok(hi << 32 | lo)
}

/// Whether `s` is a base backup snapshot.
pub fn is_base_backup(s: &Snapshot) -> bool {
    s.source
        .dump
        .as_ref()
        .is_some_and(|d| d.format == BASE_BACKUP_FORMAT)
}

/// The base backup to start from: the newest one that finished before a
/// time target, that started before an LSN target, or the newest of all.
pub fn choose_base_backup<'a>(snapshots: &'a [Snapshot], target: &Target) -> Result<&'a Snapshot> {
    let bases = snapshots.iter().filter(|s| is_base_backup(s));
    let chosen = match target {
        Target::End => bases.max_by(|a, b| a.time.cmp(&b.time)),
        Target::Time(t) => bases
            .filter(|s| s.summary.backup_end.as_ref().unwrap_or(&s.time) <= t)
            .max_by(|a, b| a.time.cmp(&b.time)),
        Target::Lsn(l) => {
            let target = parse_lsn(l)?;
            bases
                .filter(|s| {
                    s.source
                        .dump
                        .as_ref()
                        .and_then(|d| d.start_lsn.as_deref())
                        .and_then(|x| parse_lsn(x).ok())
                        .is_some_and(|start| start <= target)
                })
                .max_by(|a, b| a.time.cmp(&b.time))
        }
    };
    chosen.ok_or_else(|| {
        Error::new(
            ErrorKind::SnapshotNotFound,
            match target {
                Target::End => "no base backup in the repository (cairn pg basebackup)".into(),
                Target::Time(t) => format!("no base backup finished before {}", t.to_rfc3339()),
                Target::Lsn(l) => format!("no base backup started before WAL location {l}"),
            },
        )
    })
}

/// Unpacks base backup `snap` into `pgdata`, which must not exist or be
/// empty. As root, the files keep the owner they had on the server, and
/// `pgdata` gets that owner too.
pub fn unpack_base_backup(
    repo: &Repository,
    snap: &Snapshot,
    pgdata: &Path,
    cancel: &AtomicBool,
) -> Result<u64> {
    if pgdata.exists() {
        let mut entries = fs::read_dir(pgdata)
            .map_err(|e| Error::io(format!("reading {}", pgdata.display()), e))?;
        if entries.next().is_some() {
            return Err(Error::invalid(format!(
                "{} is not empty; restore into a new or empty directory",
                pgdata.display()
            )));
        }
    }
    fs::create_dir_all(pgdata)
        .map_err(|e| Error::io(format!("creating {}", pgdata.display()), e))?;
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
        archive.set_preserve_ownerships(true);
        archive.set_overwrite(false);
        let unpacked = archive.unpack(pgdata).map_err(|e| {
            Error::io(
                format!("unpacking the base backup into {}", pgdata.display()),
                e,
            )
        });
        // Whatever the reader left unread must not block the feeder.
        drop(archive);
        let fed = feeder
            .join()
            .map_err(|_| Error::new(ErrorKind::Io, "the restore reader thread panicked"))?;
        let n = fed?;
        unpacked?;
        Ok::<u64, Error>(n)
    })?;
    if written != node.size {
        return Err(Error::corrupt(format!(
            "{BASE_BACKUP_FILE}: got {written} bytes, the snapshot says {}",
            node.size
        )));
    }
    // The data directory itself: the server's owner, private.
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if let Ok(meta) = fs::metadata(pgdata.join("PG_VERSION")) {
        let _ = std::os::unix::fs::chown(pgdata, Some(meta.uid()), Some(meta.gid()));
    }
    fs::set_permissions(pgdata, fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::io(format!("setting the mode of {}", pgdata.display()), e))?;
    Ok(written)
}

/// PostgreSQL's quoting of a configuration value.
fn quote_conf(v: &str) -> String {
    format!("'{}'", v.replace('\'', "''"))
}

/// Makes `pgdata` recover from the archive on its next start: writes
/// `recovery.signal` and appends the recovery settings to
/// `postgresql.auto.conf` (which PostgreSQL reads last, so they win).
pub fn configure_recovery(
    pgdata: &Path,
    restore_command: &str,
    target: &Target,
    action: &str,
) -> Result<()> {
    let mut conf = String::from("\n# Added by cairn pg restore\n");
    conf.push_str(&format!(
        "restore_command = {}\n",
        quote_conf(restore_command)
    ));
    match target {
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
    if *target != Target::End {
        conf.push_str(&format!(
            "recovery_target_action = {}\n",
            quote_conf(action)
        ));
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
