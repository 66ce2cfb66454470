//! Restore drills (`repo-format.md` §11): restore a snapshot into a
//! scratch directory, read back every byte written and compare it with
//! the chunk IDs the snapshot names, check that a database dump in it is
//! complete (and, when asked, that it loads into a scratch database),
//! time all of it, and record the outcome in the repository as a drill
//! record, so that `snapshots` and `status` can say when each series was
//! last proven restorable and how long that took.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::error::{Error, ErrorKind, Result};
use crate::format::snapshot::{Snapshot, SourceKind};
use crate::format::tree::NodeKind;
use crate::id::Id;
use crate::pg::dumpcheck::{self, Inspector};
use crate::repo::cache::CacheReader;
use crate::repo::drill_record::DrillRecord;
use crate::repo::repository::Repository;
use crate::repo::restorer::{self, RestoreOptions, RestoreProgress};
use crate::sys::running_as_root;
use crate::time::SnapshotTime;

/// How far a drill checks a database dump found in the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DumpCheck {
    /// Run the dump checker of backup on the restored copy (a plain
    /// pg_dump's completion line, `pg_restore` reading every block of an
    /// archive).
    Complete,
    /// Also load it into a scratch PostgreSQL database (reached through
    /// the libpq environment: `PGHOST`, `PGPORT`, `PGUSER`...), dropped
    /// afterwards.
    Load,
}

/// What a finished drill found, before it is recorded.
#[derive(Debug)]
pub struct Outcome {
    /// The record to store.
    pub record: DrillRecord,
    /// The error behind `record.error`, with its kind, for the exit code.
    pub failure: Option<Error>,
    /// Entries restore skipped or marked, one message each.
    pub warnings: Vec<String>,
    /// Where the restored copy is, when it was kept.
    pub kept: Option<PathBuf>,
}

/// Runs a drill of `snapshot` in a new directory under `scratch` (removed
/// afterwards unless `keep`). A failure of the snapshot (damaged data, a
/// dump that does not load) is an `Outcome` with `ok` false; only an
/// interruption is an error, and nothing is recorded for it.
pub fn run(
    repo: &Repository,
    snapshot: &Snapshot,
    scratch: &Path,
    opts: &DrillOptions,
    progress: &dyn RestoreProgress,
    cancel: &AtomicBool,
) -> Result<Outcome> {
    let (dump_check, keep) = (opts.dump_check, opts.keep);
    let started = Instant::now();
    let time = SnapshotTime::now();
    let mut record = DrillRecord {
        id: Id::from_bytes([0; 32]),
        snapshot: snapshot.id,
        hostname: snapshot.hostname.clone(),
        paths: snapshot.paths.clone(),
        tags: snapshot.tags.clone(),
        snapshot_time: snapshot.time,
        time,
        drill_host: crate::sys::hostname(),
        ok: false,
        error: None,
        seconds: 0.0,
        restore_seconds: 0.0,
        verify_seconds: 0.0,
        recovery_seconds: None,
        files: 0,
        bytes: 0,
        dump_check: None,
        program_version: format!("cairn {}", env!("CARGO_PKG_VERSION")),
    };
    let not_run = |e: Error| {
        e.context(format!(
            "the drill of snapshot {} could not run; nothing was recorded",
            snapshot.id.short()
        ))
    };
    std::fs::create_dir_all(scratch)
        .map_err(|e| not_run(Error::io(format!("creating {}", scratch.display()), e)))?;
    let dir = tempfile::Builder::new()
        .prefix("cairn-drill-")
        .tempdir_in(scratch)
        .map_err(|e| {
            not_run(Error::io(
                format!("creating a directory in {}", scratch.display()),
                e,
            ))
        })?;
    let mut warnings = Vec::new();
    let result = drill_in(
        repo,
        snapshot,
        dir.path(),
        dump_check,
        opts.restore_command.as_deref(),
        progress,
        cancel,
        started,
        &mut record,
        &mut warnings,
    );
    record.seconds = started.elapsed().as_secs_f64();
    let kept = keep.then(|| dir.keep());
    let failure = match result {
        Ok(()) => {
            record.ok = true;
            None
        }
        // A tool killed by the terminal's Ctrl-C fails too: that is an
        // interruption, not a verdict on the snapshot.
        Err(_) if cancel.load(Ordering::SeqCst) => return Err(Error::interrupted()),
        // What says the snapshot does not restore is recorded; a drill
        // that could not run (no space, no scratch database, a missing
        // tool) records nothing and says why.
        Err(e) if snapshot_failed(e.kind()) => {
            record.error = Some(e.to_string());
            Some(e)
        }
        Err(e) => return Err(not_run(e)),
    };
    Ok(Outcome {
        record,
        failure,
        warnings,
        kept,
    })
}

/// Errors that are the snapshot's: damaged or missing data, a dump that
/// is not complete or does not load.
fn snapshot_failed(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::Corrupt | ErrorKind::MissingObject | ErrorKind::DumpInvalid
    )
}

#[allow(clippy::too_many_arguments)]
fn drill_in(
    repo: &Repository,
    snapshot: &Snapshot,
    dir: &Path,
    dump_check: Option<DumpCheck>,
    restore_command: Option<&str>,
    progress: &dyn RestoreProgress,
    cancel: &AtomicBool,
    started: Instant,
    record: &mut DrillRecord,
    warnings: &mut Vec<String>,
) -> Result<()> {
    let stats = restorer::restore_tree(
        repo,
        snapshot,
        dir,
        &RestoreOptions::default(),
        progress,
        cancel,
    )?;
    record.restore_seconds = started.elapsed().as_secs_f64();
    warnings.extend(stats.warnings.iter().cloned());

    let verify_start = Instant::now();
    let index = repo.index()?;
    let mut v = Verifier {
        repo,
        index: &index,
        cancel,
        dump_file: dump_file(snapshot),
        damaged: 0,
        files: 0,
        bytes: 0,
    };
    v.tree(&snapshot.tree, dir, Path::new("/"))?;
    record.files = v.files;
    record.bytes = v.bytes;
    record.verify_seconds = verify_start.elapsed().as_secs_f64();
    if v.damaged > 0 {
        return Err(Error::corrupt(format!(
            "snapshot {} has {} entries that a repair marked damaged: it does not restore as it was backed up",
            snapshot.id.short(),
            v.damaged
        )));
    }
    // A stream saved empty (`backup --allow-empty`, or by an older cairn)
    // restores, but proves nothing: no dump to load.
    if snapshot.source.kind != crate::format::snapshot::SourceKind::Paths && v.bytes == 0 {
        return Err(Error::new(
            ErrorKind::DumpInvalid,
            format!(
                "snapshot {} holds an empty stream ({}): there is nothing to restore or load",
                snapshot.id.short(),
                snapshot.paths.join(", ")
            ),
        ));
    }

    // The dump: checked like at backup, then loaded if asked.
    let Some(info) = &snapshot.source.dump else {
        return Ok(());
    };
    let Some(check) = dump_check else {
        return Ok(());
    };
    let dump_path = dump_path(snapshot, dir);
    if info.format == "pg_dump-directory" {
        dumpcheck::check_directory_dump(&dump_path, true)?;
    } else if let Some(inspection) = v.dump_file.take().and_then(|(_, i)| i) {
        inspection.finish(&dump_path.display().to_string())?;
    }
    record.dump_check = Some("complete".into());
    if check == DumpCheck::Load && info.format == crate::pg::pitr::BASE_BACKUP_FORMAT {
        let command = restore_command.ok_or_else(|| {
            Error::invalid("a drill of a base backup needs a restore_command for its WAL")
        })?;
        recover_base_backup(repo, snapshot, (&dump_path, dir), command, cancel, record)?;
        record.dump_check = Some("recovered".into());
    } else if check == DumpCheck::Load {
        load_into_scratch_database(&info.format, &dump_path, snapshot)?;
        record.dump_check = Some("loaded".into());
    }
    Ok(())
}

/// Recovers the restored base backup `tar` in `dir` with a private
/// server replaying the archive through `command` (the time it took goes
/// into `record`), and checks that it replayed into the archive's last
/// segment.
fn recover_base_backup(
    repo: &Repository,
    snapshot: &Snapshot,
    (tar, dir): (&Path, &Path),
    command: &str,
    cancel: &AtomicBool,
    record: &mut DrillRecord,
) -> Result<()> {
    // Where the archive this base backup can reach ends (before the first
    // gap): recovery must replay into its last segment. Only for an
    // archive of one timeline: after a failover, recovery follows the
    // newest timeline, which may end before the old one's last segment
    // (the window takes the highest segment of any).
    let list = crate::repo::wal_record::load(repo)?;
    let timelines: std::collections::BTreeSet<u32> = list
        .good
        .iter()
        .filter_map(|r| crate::pg::wal::segment_of(&r.name).map(|(tl, _)| tl))
        .collect();
    let one_timeline =
        timelines.len() == 1 && !list.good.iter().any(|r| r.name.ends_with(".history"));
    let reach = crate::pg::wal::status(&list, &[snapshot])
        .windows
        .into_iter()
        .next()
        .filter(|_| one_timeline)
        .and_then(|w| {
            let size = list.good.iter().find(|r| r.name == w.latest_wal)?.size;
            let end = dumpcheck::parse_lsn(&w.latest_lsn).ok()?;
            Some((w, end.saturating_sub(size)))
        });
    let recovery_start = Instant::now();
    let replayed = recover_in_scratch(tar, dir, command, cancel)?;
    record.recovery_seconds = Some(recovery_start.elapsed().as_secs_f64());
    if let (Some((w, last_segment_start)), Some(replayed)) = (reach, replayed) {
        // Past the start: a segment closed by a switch ends its last
        // record exactly at the next one's start, so reaching it replays
        // nothing of the next.
        let at = dumpcheck::parse_lsn(&replayed)?;
        if at <= last_segment_start {
            return Err(Error::corrupt(format!(
                "recovery stopped at {replayed}, short of the end of the archive (WAL file {}, \
                 up to {}): PostgreSQL could not replay a WAL file after that point and \
                 promoted early",
                w.latest_wal, w.latest_lsn
            )));
        }
    }
    Ok(())
}

/// What a drill does besides restoring and verifying.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct DrillOptions {
    /// What to check of a dump in the snapshot.
    pub dump_check: Option<DumpCheck>,
    /// Keep the restored copy.
    pub keep: bool,
    /// For a base backup with [`DumpCheck::Load`]: the `restore_command`
    /// the private server fetches archived WAL with.
    pub restore_command: Option<String>,
}

/// A private PostgreSQL on a restored data directory (a Unix socket in
/// `dir` only, trust for this user only), stopped on drop.
struct PrivateServer {
    pg_ctl: PathBuf,
    psql: PathBuf,
    pgdata: PathBuf,
    dir: PathBuf,
    log: PathBuf,
    user: String,
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let _ = Command::new(&self.pg_ctl)
            .arg("-D")
            .arg(&self.pgdata)
            .args(["-m", "immediate", "-w", "stop"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl PrivateServer {
    /// Starts PostgreSQL (of the data directory's version, if installed)
    /// on `pgdata`, with its socket, log and `pg_hba.conf` in `dir`.
    fn start(pgdata: &Path, dir: &Path) -> Result<Self> {
        let hba = dir.join("pg_hba.conf");
        std::fs::write(&hba, "local all all trust\n")
            .map_err(|e| Error::io(format!("writing {}", hba.display()), e))?;
        let version = std::fs::read_to_string(pgdata.join("PG_VERSION")).unwrap_or_default();
        let tool = |name: &str| {
            let own = PathBuf::from(format!("/usr/lib/postgresql/{}/bin/{name}", version.trim()));
            if own.is_file() {
                return Ok(own);
            }
            dumpcheck::find_pg_tool(name).ok_or_else(|| {
                Error::new(
                    ErrorKind::SourceNotFound,
                    format!(
                        "{name} not found: a drill of a base backup needs the PostgreSQL server"
                    ),
                )
            })
        };
        let server = PrivateServer {
            pg_ctl: tool("pg_ctl")?,
            psql: tool("psql")?,
            pgdata: pgdata.to_path_buf(),
            dir: dir.to_path_buf(),
            log: dir.join("server.log"),
            user: crate::sys::username(),
        };
        let opts = format!(
            "-p 5432 -k '{}' -c listen_addresses='' -c hba_file='{}' -c archive_mode=off",
            dir.display(),
            hba.display()
        );
        let started = dumpcheck::without_secrets_but_cairn(&mut Command::new(&server.pg_ctl))
            .arg("-D")
            .arg(pgdata)
            .arg("-l")
            .arg(&server.log)
            .args(["-w", "-t", "3600", "-o", &opts, "start"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| Error::io(format!("running {}", server.pg_ctl.display()), e))?;
        if !started.success() {
            return Err(server.failed("the recovered server did not start"));
        }
        Ok(server)
    }

    /// The error `what`, with the server log's last FATAL or PANIC line.
    fn failed(&self, what: &str) -> Error {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let line = text
            .lines()
            .rev()
            .find(|l| l.contains("FATAL") || l.contains("PANIC"))
            .or_else(|| text.lines().last())
            .unwrap_or("")
            .trim()
            .to_string();
        Error::new(ErrorKind::DumpInvalid, format!("{what}: {line}"))
    }

    /// Runs `sql` with psql: its output, or psql's complaint. The private
    /// server only: none of the libpq settings meant for the real one
    /// (PGHOST, PGUSER... of a dump drill) apply.
    fn query(&self, sql: &str) -> Result<std::result::Result<String, String>> {
        let mut cmd = Command::new(&self.psql);
        for v in [
            "PGHOST",
            "PGHOSTADDR",
            "PGPORT",
            "PGUSER",
            "PGDATABASE",
            "PGSERVICE",
        ] {
            cmd.env_remove(v);
        }
        let out = dumpcheck::without_secrets(&mut cmd)
            .args(["-X", "-A", "-t", "-q", "-h"])
            .arg(&self.dir)
            .args(["-p", "5432", "-U", &self.user, "-d", "template1", "-c", sql])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Error::io(format!("running {}", self.psql.display()), e))?;
        Ok(if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        })
    }

    /// Whether the server still runs.
    fn alive(&self) -> bool {
        Command::new(&self.pg_ctl)
            .arg("-D")
            .arg(&self.pgdata)
            .arg("status")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Waits until the server has replayed the whole archive and promoted.
    /// psql failing while the server runs (no such role) is this drill's
    /// problem, not the backup's: after a minute of it the drill stops
    /// without a verdict.
    fn wait_for_promotion(&self, cancel: &AtomicBool) -> Result<()> {
        let mut refused = 0u32;
        loop {
            if cancel.load(Ordering::SeqCst) {
                return Err(Error::interrupted());
            }
            match self.query("SELECT pg_is_in_recovery()")? {
                Ok(answer) if answer == "f" => return Ok(()),
                Ok(_) => refused = 0,
                Err(why) => {
                    refused += 1;
                    if refused > 300 {
                        return Err(Error::new(
                            ErrorKind::Io,
                            format!(
                                "the recovered server does not answer psql as {}: {}",
                                self.user,
                                why.lines().next().unwrap_or("")
                            ),
                        ));
                    }
                    if !self.alive() {
                        return Err(self.failed("recovery of the base backup failed"));
                    }
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
}

/// Unpacks the restored base backup `tar_path` into `dir/pgdata` (mode
/// 0700, as PostgreSQL requires) and configures recovery to the end of
/// the archive through `restore_command`, then promotion.
fn unpack_for_recovery(tar_path: &Path, dir: &Path, restore_command: &str) -> Result<PathBuf> {
    let pgdata = dir.join("pgdata");
    std::fs::create_dir(&pgdata)
        .map_err(|e| Error::io(format!("creating {}", pgdata.display()), e))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&pgdata, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(format!("setting the mode of {}", pgdata.display()), e))?;
    }
    let file = File::open(tar_path)
        .map_err(|e| Error::io(format!("opening {}", tar_path.display()), e))?;
    let mut archive = tar::Archive::new(BufReader::new(file));
    archive.set_preserve_permissions(true);
    archive.unpack(&pgdata).map_err(|e| {
        Error::io(
            format!("unpacking the base backup into {}", pgdata.display()),
            e,
        )
    })?;
    crate::pg::pitr::configure_recovery(
        &pgdata,
        &crate::pg::pitr::Recovery {
            restore_command: restore_command.to_string(),
            target: crate::pg::pitr::Target::End,
            action: "promote".into(),
            archive: crate::pg::pitr::ArchiveMode::Off,
            timeline: None,
            end_command: Some(crate::pg::pitr::REMOVE_PREFETCH_SPOOL.to_string()),
        },
    )?;
    // Debian keeps postgresql.conf in /etc: without one the server does
    // not start. Empty is enough (defaults, plus what is set on the
    // command line).
    let conf = pgdata.join("postgresql.conf");
    if !conf.exists() {
        std::fs::write(&conf, "")
            .map_err(|e| Error::io(format!("writing {}", conf.display()), e))?;
    }
    Ok(pgdata)
}

/// The real recovery test of a base backup: unpack the restored `base.tar`
/// into `dir/pgdata`, configure recovery to the end of the archive through
/// `restore_command`, start a private PostgreSQL on it, wait until it has
/// replayed every archived WAL file and promoted, run a query, and stop
/// it. Returns the last WAL location replayed.
fn recover_in_scratch(
    tar_path: &Path,
    dir: &Path,
    restore_command: &str,
    cancel: &AtomicBool,
) -> Result<Option<String>> {
    if running_as_root() {
        return Err(Error::invalid(
            "PostgreSQL does not run as root: run the drill of a base backup as the server's user \
             (postgres)",
        ));
    }
    let pgdata = unpack_for_recovery(tar_path, dir, restore_command)?;
    let server = PrivateServer::start(&pgdata, dir)?;
    server.wait_for_promotion(cancel)?;
    let databases = server
        .query("SELECT count(*) FROM pg_database")?
        .unwrap_or_default();
    if databases.parse::<u32>().map_or(true, |n| n == 0) {
        return Err(server.failed("the recovered server answers no query"));
    }
    // The last WAL location recovery replayed (it stays after promotion).
    let replayed = server
        .query("SELECT pg_last_wal_replay_lsn()")?
        .ok()
        .filter(|l| !l.is_empty());
    drop(server);
    Ok(replayed)
}

/// The stream file of a stdin or command snapshot (`/shop.sql`), with an
/// inspector to feed its bytes to as they are verified.
fn dump_file(snapshot: &Snapshot) -> Option<(PathBuf, Option<Inspector>)> {
    if snapshot.source.dump.is_none() || snapshot.source.kind == SourceKind::Paths {
        return None;
    }
    let path = snapshot.paths.first()?;
    Some((PathBuf::from(path), Some(Inspector::new(true))))
}

/// Where the dump (file or directory) is in the restored copy.
fn dump_path(snapshot: &Snapshot, dir: &Path) -> PathBuf {
    let first = snapshot.paths.first().map(String::as_str).unwrap_or("/");
    dir.join(first.trim_start_matches('/'))
}

struct Verifier<'a> {
    repo: &'a Repository,
    index: &'a CacheReader,
    cancel: &'a AtomicBool,
    dump_file: Option<(PathBuf, Option<Inspector>)>,
    damaged: u64,
    files: u64,
    bytes: u64,
}

impl Verifier<'_> {
    /// Compares the restored directory `dir` (the snapshot's `inside`)
    /// with tree `id`, and everything below it. Without recursion: a
    /// stack of the directories still to compare, so a tree nested
    /// however deep costs memory, never the call stack
    /// (`docs/design.md` §8.3).
    fn tree(&mut self, id: &Id, dir: &Path, inside: &Path) -> Result<()> {
        let mut pending = vec![(*id, dir.to_path_buf(), inside.to_path_buf())];
        while let Some((id, dir, inside)) = pending.pop() {
            let tree = self.repo.load_tree(self.index, &id)?;
            for node in &tree.nodes {
                if self.cancel.load(Ordering::SeqCst) {
                    return Err(Error::interrupted());
                }
                let name = node.name_bytes()?;
                let path = dir.join(OsStr::from_bytes(&name));
                let inside = inside.join(OsStr::from_bytes(&name));
                if node.damage.is_some() {
                    self.damaged += 1;
                }
                match node.kind {
                    NodeKind::Dir => {
                        if let Some(sub) = node.subtree {
                            pending.push((sub, path, inside));
                        }
                    }
                    NodeKind::File => {
                        let ids = self.repo.file_chunks(self.index, node)?;
                        self.file(&path, &inside, &ids, node.size)?;
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// Reads back restored file `path` ([`restorer::read_back`]), feeding
    /// the dump inspector when it is the dump.
    fn file(&mut self, path: &Path, inside: &Path, ids: &[Id], size: u64) -> Result<()> {
        let mut inspector = match &mut self.dump_file {
            Some((p, i)) if p == inside => i.as_mut(),
            _ => None,
        };
        let total = restorer::read_back(
            self.repo,
            self.index,
            (path, inside),
            (ids, size),
            self.cancel,
            &mut |chunk| {
                if let Some(i) = inspector.as_mut() {
                    i.feed(chunk);
                }
            },
        )?;
        self.files += 1;
        self.bytes += total;
        Ok(())
    }
}

/// Loads the dump at `path` into a new scratch database and drops it
/// again. The database server is the one the libpq environment names.
fn load_into_scratch_database(format: &str, path: &Path, snapshot: &Snapshot) -> Result<()> {
    let tool = |name: &str| {
        dumpcheck::find_pg_tool(name).ok_or_else(|| {
            Error::new(
                ErrorKind::SourceNotFound,
                format!("{name} not found: install the PostgreSQL client tools to load the dump"),
            )
        })
    };
    let db = format!("cairn_drill_{}_{}", snapshot.id.short(), std::process::id());
    let run = |program: PathBuf, args: Vec<String>, what: &str, kind: ErrorKind| -> Result<()> {
        let out = dumpcheck::without_secrets(&mut Command::new(&program))
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Error::io(format!("running {}", program.display()), e))?;
        if out.status.success() {
            return Ok(());
        }
        let err = String::from_utf8_lossy(&out.stderr);
        let first = err
            .lines()
            .find(|l| l.contains("ERROR") || l.contains("FATAL") || l.contains("error"))
            .or_else(|| err.lines().next())
            .unwrap_or("")
            .trim()
            .to_string();
        Err(Error::new(
            kind,
            format!("{what} failed ({}): {first}", out.status),
        ))
    };
    let load = match format {
        "pg_dump-plain" => {
            refuse_database_switch(path)?;
            (
            tool("psql")?,
            vec![
                "-X".into(),
                "-q".into(),
                "-v".into(),
                "ON_ERROR_STOP=1".into(),
                "-d".into(),
                db.clone(),
                "-f".into(),
                path.display().to_string(),
            ],
            )
        }
        "pg_dump-custom" | "pg_dump-tar" | "pg_dump-directory" => (
            tool("pg_restore")?,
            vec![
                "--exit-on-error".into(),
                "--no-owner".into(),
                "--no-acl".into(),
                "-d".into(),
                db.clone(),
                path.display().to_string(),
            ],
        ),
        other => {
            return Err(Error::invalid(format!(
                "--pg loads pg_dump plain, custom, tar and directory dumps into a scratch database; this snapshot holds a {other} dump (a drill without --pg restores and verifies it)"
            )))
        }
    };
    // Not reaching the server, or not being allowed to create a
    // database, is the drill's problem, not the dump's.
    run(
        tool("createdb")?,
        vec![db.clone()],
        &format!("creating scratch database {db} (createdb)"),
        ErrorKind::Io,
    )?;
    let loaded = run(
        load.0,
        load.1,
        &format!("loading the dump into scratch database {db}"),
        ErrorKind::DumpInvalid,
    );
    let dropped = run(
        tool("dropdb")?,
        vec!["--if-exists".into(), db.clone()],
        &format!("dropping scratch database {db} (dropdb)"),
        ErrorKind::Io,
    );
    loaded?;
    dropped
}

/// Lines of a plain dump before which its data starts, searched for
/// statements that would leave the scratch database.
const HEAD_SCAN: u64 = 64 * 1024 * 1024;

/// Refuses a plain dump that creates, drops or connects to a database
/// (`pg_dump -C`, `-c -C`): loaded with psql, it would run against the
/// database it names, on the server the drill uses, not in the scratch
/// database. Such statements come before the data, which starts with the
/// first `COPY`.
fn refuse_database_switch(path: &Path) -> Result<()> {
    use std::io::BufRead;
    let file = File::open(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let mut reader = BufReader::new(file).take(HEAD_SCAN);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        if n == 0 || line.starts_with(b"COPY ") {
            return Ok(());
        }
        let upper = String::from_utf8_lossy(&line).to_ascii_uppercase();
        if upper.starts_with("\\CONNECT")
            || upper.starts_with("CREATE DATABASE")
            || upper.starts_with("DROP DATABASE")
        {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "{} creates or connects to its own database ({}): loading it would not stay in the scratch database; make the dump without -C, or in custom format (-Fc)",
                    path.display(),
                    String::from_utf8_lossy(&line).trim()
                ),
            ));
        }
    }
}

/// The operation as a method: `repo.drill(...)`.
impl Repository {
    /// Restores `snapshot` into `scratch` and proves it: see [`run`].
    pub fn drill(
        &self,
        snapshot: &Snapshot,
        scratch: &Path,
        opts: &DrillOptions,
        progress: &dyn RestoreProgress,
        cancel: &AtomicBool,
    ) -> Result<Outcome> {
        run(self, snapshot, scratch, opts, progress, cancel)
    }
}
