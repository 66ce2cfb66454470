//! `cairn pg`: PostgreSQL base backups and point-in-time restore.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use cairn_core::format::snapshot::Snapshot;
use cairn_core::ops::backup::{BackupOptions, BackupSource};
use cairn_core::pg::dumpcheck::find_pg_tool;
use cairn_core::pg::pitr::{self, ArchiveMode, Target};
use cairn_core::time::SnapshotTime;
use cairn_core::Error;

use crate::commands::{load_snapshots, FilterArgs};
use crate::exit::ExitCode;
use crate::{print_json, GlobalArgs, CANCEL};

pub const RESTORE_ABOUT: &str = "\
Restore PostgreSQL to a point in time: the newest base backup that finished
before the target is unpacked into --pgdata (a new or empty directory), and
recovery is configured (recovery.signal, and restore_command, the target and
the target action appended to postgresql.auto.conf) so that starting
PostgreSQL on that directory replays the archived WAL up to the target.

    cairn pg restore --pgdata /var/lib/postgresql/16/restored --target-time '2026-11-27 14:05:00'
    pg_ctl -D /var/lib/postgresql/16/restored start

Without --target-time or --target-lsn, recovery replays all archived WAL.
The restored copy does not archive (archive_mode = off is appended), so a
copy started for a look at yesterday's data never writes its own timeline
into the repository it came from; --archive-mode preserve keeps the
backup's archive settings for a copy that is to become the new primary.
--target-timeline sets recovery_target_timeline (current, latest, or N).

Run it as the server's user (postgres): the files then belong to it. As
root, they keep the owners recorded in the base backup. The backup is
unpacked into a scratch directory beside --pgdata and renamed into place,
so a failed or interrupted restore leaves --pgdata as it was. Into an
existing empty directory (a mount point) the entries are moved one by one
after their names are written down, and a run killed in between is cleaned
up by the next one, which removes exactly those names.
restore_command is `cairn -r REPO wal-fetch --prefetch 8 %f %p`, with this
run's CAIRN_PASSWORD_FILE, CAIRN_PASSWORD_COMMAND and CAIRN_CACHE_DIR (a
password given in CAIRN_PASSWORD is never written into the configuration:
use a password file, or --restore-command): the next 8 segments are fetched
ahead into pg_wal/.cairn-prefetch while the server replays, and
recovery_end_command removes that spool when recovery ends.";

#[derive(Subcommand)]
pub enum PgCommand {
    /// Take a base backup with pg_basebackup, streamed into a snapshot
    Basebackup(BasebackupArgs),
    /// Restore a base backup and configure recovery to a point in time
    #[command(long_about = RESTORE_ABOUT)]
    Restore(RestoreArgs),
    /// Newest base backup, newest archived WAL, and any gap in the archive (exit 22 on a gap)
    Status,
    /// Make the server switch WAL segments and wait until the segment is archived; check that
    /// the server's cluster is the one this repository archives (pgBackRest's check)
    #[command(long_about = CHECK_ABOUT)]
    Check(CheckArgs),
}

pub const CHECK_ABOUT: &str = "\
Check that WAL archiving works end to end, as pgBackRest's check does: connect
with psql, create a restore point and switch to a new WAL segment (so the
server archives the one it leaves), then wait until that segment is in the
repository. Also checks that the server's system identifier is the cluster
this repository archives, and that archive_mode is on.

    cairn pg check -- -h /run/postgresql -U postgres

Exit 0 when the segment arrived; 30 when it did not within --timeout (the
error says how often archive_command failed, from pg_stat_archiver); 29 when
the server is another cluster. Run it as the server's user, after setting up
archive_command, and from monitoring.";

#[derive(Args)]
pub struct CheckArgs {
    /// psql to run [default: on PATH, else the newest /usr/lib/postgresql/*/bin]
    #[arg(long, value_name = "PATH")]
    psql: Option<PathBuf>,

    /// Seconds to wait for the segment to arrive
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    timeout: u64,

    /// Connection options for psql, after -- (e.g. -- -h /run/postgresql -U postgres)
    #[arg(last = true, value_name = "PSQL_ARGS")]
    args: Vec<String>,
}

#[derive(Args)]
pub struct PgArgs {
    #[command(subcommand)]
    command: PgCommand,
}

#[derive(Args)]
pub struct BasebackupArgs {
    /// pg_basebackup to run [default: on PATH, else the newest /usr/lib/postgresql/*/bin]
    #[arg(long, value_name = "PATH")]
    pg_basebackup: Option<PathBuf>,

    /// Tag the snapshot (repeatable, or comma-separated)
    #[arg(long = "tag", value_name = "TAG", value_delimiter = ',')]
    tags: Vec<String>,

    /// Connection options for pg_basebackup, after -- (e.g. -- -h /run/postgresql -U postgres)
    #[arg(last = true, value_name = "PG_BASEBACKUP_ARGS")]
    args: Vec<String>,
}

#[derive(Args)]
pub struct RestoreArgs {
    /// The data directory to create (must not exist, or be empty)
    #[arg(long, value_name = "DIR")]
    pgdata: PathBuf,

    /// Recover up to this time ("2026-11-27 14:05:00" local time, or RFC 3339)
    #[arg(long, value_name = "TIME", conflicts_with = "target_lsn")]
    target_time: Option<String>,

    /// Recover up to this WAL location (e.g. 0/3000060)
    #[arg(long, value_name = "LSN")]
    target_lsn: Option<String>,

    /// What PostgreSQL does at the target: promote (open for writes), pause, or shutdown
    #[arg(long, value_name = "ACTION", default_value = "promote", value_parser = ["promote", "pause", "shutdown"])]
    target_action: String,

    /// Use this base backup (ID or prefix) instead of choosing one
    #[arg(long, value_name = "SNAPSHOT")]
    snapshot: Option<String>,

    /// restore_command to configure [default: cairn -r REPO wal-fetch --prefetch 8 %f %p]
    #[arg(long, value_name = "COMMAND")]
    restore_command: Option<String>,

    /// Whether the restored copy archives its WAL: off (archive_mode = off, the
    /// default: a copy never writes into this repository), or preserve (keep
    /// the backup's settings, for a copy that becomes the new primary)
    #[arg(long, value_name = "MODE", default_value = "off", value_parser = ["off", "preserve"])]
    archive_mode: String,

    /// Timeline to recover along: current (the base backup's), latest, or a
    /// number [default: PostgreSQL's, latest]
    #[arg(long, value_name = "TIMELINE")]
    target_timeline: Option<String>,

    #[command(flatten)]
    filter: FilterArgs,
}

/// Quotes a word for `sh -c`.
fn sh_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:@%+,".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
}

pub fn run(global: &GlobalArgs, args: PgArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        PgCommand::Basebackup(a) => basebackup(global, a),
        PgCommand::Restore(a) => restore(global, a),
        PgCommand::Status => status(global),
        PgCommand::Check(a) => check(global, a),
    }
}

fn basebackup(global: &GlobalArgs, args: BasebackupArgs) -> anyhow::Result<ExitCode> {
    let tool = pg_tool(args.pg_basebackup, "pg_basebackup")?;
    // One tar of the data directory on stdout; the WAL it needs comes from
    // the archive (wal-push), as for any point-in-time restore.
    let mut command = format!(
        "{} -D - -Ft -X none --checkpoint=fast",
        sh_quote(&tool.to_string_lossy())
    );
    for a in &args.args {
        command.push(' ');
        command.push_str(&sh_quote(a));
    }
    // A backup: a write-only key may take it.
    let repo = global.open_to_add()?;
    let mut opts = BackupOptions::default();
    opts.hostname = cairn_core::sys::hostname();
    opts.username = cairn_core::sys::username();
    opts.tags = args.tags.into_iter().filter(|t| !t.is_empty()).collect();
    opts.time = None;
    opts.validate_dumps = true;
    opts.no_delta = false;
    opts.allow_empty = false;
    let source = BackupSource::Command {
        command,
        filename: pitr::BASE_BACKUP_FILE.to_string(),
    };
    let code = crate::commands::backup::run_backup(global, &repo, source, &opts)?;
    Ok(code)
}

fn restore(global: &GlobalArgs, args: RestoreArgs) -> anyhow::Result<ExitCode> {
    let target = match (&args.target_time, &args.target_lsn) {
        (Some(t), _) => Target::Time(SnapshotTime::parse(t)?),
        (None, Some(l)) => {
            pitr::parse_lsn(l)?;
            Target::Lsn(l.clone())
        }
        (None, None) => Target::End,
    };
    let timeline = args
        .target_timeline
        .as_deref()
        .map(pitr::parse_timeline)
        .transpose()?;
    let (restore_command, end_command) = match args.restore_command.clone() {
        Some(c) => (c, None),
        None => (
            default_restore_command(global)?,
            Some(pitr::REMOVE_PREFETCH_SPOOL.to_string()),
        ),
    };
    let repo = global.open()?;
    let loaded = load_snapshots(&repo)?;
    let cluster = cairn_core::pg::wal::archived_identity(&repo)?;
    let base = choose_base(&loaded, &args, cluster.as_deref(), &target)?;
    let reach_warning = past_the_archive(&repo, &base, &target)?;
    let recovery = pitr::Recovery {
        restore_command: restore_command.clone(),
        target: target.clone(),
        action: args.target_action.clone(),
        archive: if args.archive_mode == "preserve" {
            ArchiveMode::Preserve
        } else {
            ArchiveMode::Off
        },
        timeline,
        end_command,
    };
    if let Some(w) = &reach_warning {
        eprintln!("cairn: warning: {w}");
    }
    let bytes = pitr::unpack_base_backup(&repo, &base, &args.pgdata, &CANCEL, |dir| {
        pitr::configure_recovery(dir, &recovery)
    })?;
    if global.json {
        print_json(&serde_json::json!({
            "message_type": "pg_restore",
            "base_backup": base.id.to_hex(),
            "pgdata": args.pgdata,
            "bytes": bytes,
            "restore_command": restore_command,
            "archive_mode": args.archive_mode,
            "warning": reach_warning,
            "target_timeline": recovery.timeline,
        }))?;
    } else {
        global.say(format!(
            "restored base backup {} of {} into {}",
            base.id.short(),
            base.time.local_display(),
            args.pgdata.display()
        ));
        global.say(format!(
            "start PostgreSQL on it to replay archived WAL{}",
            match &target {
                Target::End => " to the end of the archive".to_string(),
                Target::Time(t) => format!(" up to {}", t.local_display()),
                Target::Lsn(l) => format!(" up to {l}"),
            }
        ));
        if recovery.archive == ArchiveMode::Off {
            global.say(
                "archiving is off in the restored copy (archive_mode = off), so it never writes \
                 into this repository; for a copy that becomes the new primary, restore with \
                 --archive-mode preserve",
            );
        }
    }
    Ok(ExitCode::Success)
}

/// The base backup to restore: the one named (which must be a base
/// backup of the archived cluster), or the newest of that cluster that
/// reaches `target`.
fn choose_base(
    loaded: &cairn_core::repo::repository::SnapshotList,
    args: &RestoreArgs,
    cluster: Option<&str>,
    target: &Target,
) -> anyhow::Result<Snapshot> {
    let filter = args.filter.filter();
    let Some(spec) = &args.snapshot else {
        let candidates: Vec<_> = loaded
            .good
            .iter()
            .filter(|s| filter.matches(s) && same_cluster(s, cluster))
            .cloned()
            .collect();
        return Ok(pitr::choose_base_backup(&candidates, target)?.clone());
    };
    let s = loaded.resolve(spec, &filter)?;
    if !pitr::is_base_backup(s) {
        anyhow::bail!(Error::invalid(format!(
            "snapshot {} is not a base backup (cairn pg basebackup)",
            s.id.short()
        )));
    }
    if !same_cluster(s, cluster) {
        anyhow::bail!(Error::new(
            cairn_core::ErrorKind::WrongCluster,
            format!(
                "base backup {} is of another PostgreSQL cluster than the WAL archived here \
                 (cluster {}): it cannot be recovered from this archive",
                s.id.short(),
                cluster.unwrap_or("?")
            )
        ));
    }
    Ok(s.clone())
}

/// The PostgreSQL tool `name`: the one given with `--NAME PATH`, else one
/// found on PATH or under /usr/lib/postgresql.
fn pg_tool(given: Option<PathBuf>, name: &str) -> anyhow::Result<PathBuf> {
    match given {
        Some(p) => Ok(p),
        None => Ok(find_pg_tool(name).ok_or_else(|| {
            Error::new(
                cairn_core::ErrorKind::SourceNotFound,
                format!(
                    "{name} is not installed (or give --{} PATH)",
                    name.replace('_', "-")
                ),
            )
        })?),
    }
}

/// Runs `sql` through psql with the connection `args`; its unaligned,
/// tuples-only output.
fn psql(tool: &std::path::Path, args: &[String], sql: &str) -> anyhow::Result<String> {
    let out = cairn_core::pg::dumpcheck::without_secrets(&mut std::process::Command::new(tool))
        .args(["-X", "-A", "-t", "-q", "-F", "|", "-v", "ON_ERROR_STOP=1"])
        .args(args)
        .args(["-c", sql])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| Error::io(format!("running {}", tool.display()), e))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        anyhow::bail!(Error::new(
            cairn_core::ErrorKind::CommandFailed,
            format!(
                "psql failed ({}): {}",
                out.status,
                err.lines().next().unwrap_or("").trim()
            )
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn check(global: &GlobalArgs, args: CheckArgs) -> anyhow::Result<ExitCode> {
    let tool = pg_tool(args.psql, "psql")?;
    // Reads only: a write-only key may check too.
    let repo = global.open_to_add()?;
    let row = psql(
        &tool,
        &args.args,
        "SELECT system_identifier, current_setting('archive_mode'), pg_is_in_recovery() \
         FROM pg_control_system()",
    )?;
    let fields: Vec<&str> = row.split('|').collect();
    let (Some(sysid), Some(mode), Some(recovery)) = (
        fields.first().and_then(|s| s.parse::<u64>().ok()),
        fields.get(1),
        fields.get(2),
    ) else {
        anyhow::bail!("psql answered {row:?}, not the system identifier and archive_mode");
    };
    if cairn_core::pg::wal::cluster_matches(&repo, sysid)? == Some(false) {
        let theirs = cairn_core::pg::wal::archived_identity(&repo).ok().flatten();
        anyhow::bail!(Error::new(
            cairn_core::ErrorKind::WrongCluster,
            format!(
                "the server is PostgreSQL cluster {sysid}, but this repository archives the WAL of \
                 {}",
                theirs.map_or("another cluster".to_string(), |t| format!("cluster {t}"))
            )
        ));
    }
    if *mode == "off" {
        anyhow::bail!(Error::new(
            cairn_core::ErrorKind::ArchiveNotWorking,
            "archive_mode is off on the server: nothing is archived (set archive_mode = on and \
             archive_command, then restart it)"
        ));
    }
    if *recovery == "t" {
        anyhow::bail!(Error::new(
            cairn_core::ErrorKind::Unsupported,
            "the server is a standby (in recovery), which does not switch WAL: run pg check \
             against the primary"
        ));
    }
    let started = std::time::Instant::now();
    let segment = psql(
        &tool,
        &args.args,
        "SELECT pg_create_restore_point('cairn pg check'); \
         SELECT pg_walfile_name(pg_switch_wal());",
    )?;
    let segment = segment.lines().last().unwrap_or("").trim().to_string();
    cairn_core::pg::wal::check_name(&segment)?;
    let deadline = started + std::time::Duration::from_secs(args.timeout);
    while !cairn_core::pg::wal::is_archived(&repo, &segment)? {
        if std::time::Instant::now() >= deadline {
            let failures = psql(
                &tool,
                &args.args,
                "SELECT failed_count || ' times, last for ' || coalesce(last_failed_wal, '?') \
                 || ' at ' || coalesce(last_failed_time::text, '?') FROM pg_stat_archiver",
            )
            .unwrap_or_else(|_| "?".into());
            anyhow::bail!(Error::new(
                cairn_core::ErrorKind::ArchiveNotWorking,
                format!(
                    "WAL segment {segment} did not reach the repository within {} s \
                     (archive_command failed {failures}; see the server log)",
                    args.timeout
                )
            ));
        }
        if CANCEL.load(std::sync::atomic::Ordering::SeqCst) {
            anyhow::bail!(Error::interrupted());
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    let seconds = started.elapsed().as_secs_f64();
    if global.json {
        print_json(&serde_json::json!({
            "message_type": "pg_check",
            "segment": segment,
            "seconds": seconds,
            "system_identifier": sysid.to_string(),
        }))?;
    } else {
        global.say(format!(
            "WAL segment {segment} archived {seconds:.1} s after the switch; the server is \
             cluster {sysid}, the one this repository archives"
        ));
    }
    Ok(ExitCode::Success)
}

/// Whether base backup `b` is of cluster `cluster` (the archive's); a
/// base backup or an archive without a recorded identity matches any.
fn same_cluster(b: &cairn_core::format::snapshot::Snapshot, cluster: Option<&str>) -> bool {
    let theirs = b
        .source
        .dump
        .as_ref()
        .and_then(|d| d.system_identifier.as_deref());
    match (theirs, cluster) {
        (Some(t), Some(c)) => t == c,
        _ => true,
    }
}

/// Where recovery from `base` would stop short of `target` for want of
/// archived WAL (a gap, or the base backup's first WAL file missing): a
/// warning, since the restore itself can still be what the admin wants.
pub fn past_the_archive(
    repo: &cairn_core::repo::repository::Repository,
    base: &cairn_core::format::snapshot::Snapshot,
    target: &Target,
) -> anyhow::Result<Option<String>> {
    let list = cairn_core::repo::wal_record::load(repo)?;
    let st = cairn_core::pg::wal::status(&list, &[base]);
    let Some(w) = st.windows.first() else {
        let first = base
            .source
            .dump
            .as_ref()
            .and_then(|d| d.start_wal.clone())
            .unwrap_or_else(|| "?".into());
        return Ok(Some(format!(
            "WAL file {first}, the first this base backup needs, is not archived: PostgreSQL \
             cannot recover from it until it is (cairn pg status)"
        )));
    };
    if !w.gap_after {
        return Ok(None);
    }
    let beyond = match target {
        Target::End => true,
        Target::Time(t) => *t > w.latest_time,
        Target::Lsn(l) => pitr::parse_lsn(l)? >= pitr::parse_lsn(&w.latest_lsn)?,
    };
    Ok(beyond.then(|| {
        format!(
            "the archive has a gap after WAL file {} (archived {}, ends at {}): recovery from \
             this base backup stops there, short of the target (cairn pg status)",
            w.latest_wal,
            w.latest_time.local_display(),
            w.latest_lsn
        )
    }))
}

/// The repository location as a restore_command must name it: local paths
/// made absolute (the server runs it in its data directory).
fn absolute_location(global: &GlobalArgs) -> anyhow::Result<String> {
    let location = global.location()?;
    Ok(if location.contains(':') {
        location.to_string()
    } else {
        std::path::absolute(location)?
            .to_string_lossy()
            .into_owned()
    })
}

/// The restore_command of a drill's private server: the configured one
/// when the password comes from a file or a command, else `cairn -r REPO
/// wal-fetch %f %p` reading `CAIRN_PASSWORD`, which the private server
/// inherits from this process (and never writes anywhere).
pub fn drill_restore_command(global: &GlobalArgs) -> anyhow::Result<String> {
    if global.password_file.is_some() || global.password_command.is_some() {
        return default_restore_command(global);
    }
    let exe = std::env::current_exe()?;
    let location = absolute_location(global)?;
    let cache = match &global.cache_dir {
        Some(dir) => format!(
            "CAIRN_CACHE_DIR={} ",
            sh_quote(&std::path::absolute(dir)?.to_string_lossy())
        ),
        None => String::new(),
    };
    Ok(fetch_command(
        &cache,
        &format!(
            "{} -q -r {} wal-fetch --prefetch {PREFETCH} %f %p",
            sh_quote(&exe.to_string_lossy()),
            sh_quote(&location)
        ),
    ))
}

/// Segments a generated restore_command keeps fetched ahead (`wal-fetch
/// --prefetch`): 128 MiB of 16 MiB segments in pg_wal/.cairn-prefetch.
const PREFETCH: u32 = 8;

/// A restore_command around `fetch` (a wal-fetch command line, `env`
/// assignments before it): PostgreSQL takes any exit status up to 125 as
/// "not archived", ends recovery there and promotes, so only wal-fetch's
/// "not archived" (20) becomes 1; any other failure (damaged data, storage
/// down after the retries) becomes 255, which stops recovery with a FATAL
/// error instead of a copy that silently ends early.
fn fetch_command(env: &str, fetch: &str) -> String {
    format!("{env}{fetch} || {{ rc=$?; [ $rc -eq 20 ] && exit 1; exit 255; }}")
}

/// `cairn -r REPO wal-fetch %f %p` with this run's password source and
/// cache directory.
fn default_restore_command(global: &GlobalArgs) -> anyhow::Result<String> {
    let mut env = Vec::new();
    if let Some(f) = &global.password_file {
        let abs = std::path::absolute(f)?;
        env.push(format!(
            "CAIRN_PASSWORD_FILE={}",
            sh_quote(&abs.to_string_lossy())
        ));
    } else if let Some(c) = &global.password_command {
        env.push(format!("CAIRN_PASSWORD_COMMAND={}", sh_quote(c)));
    } else {
        anyhow::bail!(Error::invalid(
            "the restore_command needs the password without a terminal: give it with \
             --password-file / CAIRN_PASSWORD_FILE or --password-command (never written \
             into the configuration as such), or pass --restore-command"
        ));
    }
    if let Some(dir) = &global.cache_dir {
        let abs = std::path::absolute(dir)?;
        env.push(format!(
            "CAIRN_CACHE_DIR={}",
            sh_quote(&abs.to_string_lossy())
        ));
    }
    let exe = std::env::current_exe()?;
    let location = absolute_location(global)?;
    Ok(fetch_command(
        &format!("{} ", env.join(" ")),
        &format!(
            "{} -q -r {} wal-fetch --prefetch {PREFETCH} %f %p",
            sh_quote(&exe.to_string_lossy()),
            sh_quote(&location)
        ),
    ))
}

fn status(global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let repo = global.open()?;
    let loaded = load_snapshots(&repo)?;
    let bases: Vec<_> = loaded
        .good
        .iter()
        .filter(|s| pitr::is_base_backup(s))
        .collect();
    let newest = bases.iter().copied().max_by(|a, b| a.time.cmp(&b.time));
    let list = cairn_core::repo::wal_record::load(&repo)?;
    let cluster = cairn_core::pg::wal::archived_identity(&repo)?;
    // Base backups of another cluster than the archive's: no WAL here
    // can recover them, and they say nothing about its continuity.
    let (ours, theirs): (Vec<&Snapshot>, Vec<_>) = bases
        .iter()
        .copied()
        .partition(|b| same_cluster(b, cluster.as_deref()));
    let st = PgStatus {
        base_backups: bases.len(),
        newest,
        start_wal: newest.and_then(|b| b.source.dump.as_ref()?.start_wal.clone()),
        wal: cairn_core::pg::wal::status(&list, &ours),
        foreign: theirs.iter().map(|b| b.id.to_hex()).collect(),
        cluster,
    };
    if global.json {
        print_json(&st.json())?;
    } else if !global.quiet {
        st.say(global);
    }
    let whole = st.wal.missing.is_empty() && st.wal.unreadable == 0 && st.foreign.is_empty();
    Ok(if whole {
        ExitCode::Success
    } else {
        ExitCode::Damaged
    })
}

/// What `pg status` reports.
struct PgStatus<'a> {
    base_backups: usize,
    newest: Option<&'a Snapshot>,
    /// The WAL file the newest base backup starts at.
    start_wal: Option<String>,
    wal: cairn_core::pg::wal::ArchiveStatus,
    /// Base backups of another cluster than the archived WAL's.
    foreign: Vec<String>,
    /// The archived cluster's system identifier.
    cluster: Option<String>,
}

impl PgStatus<'_> {
    fn healthy(&self) -> bool {
        self.newest.is_some()
            && self.wal.missing.is_empty()
            && self.wal.unreadable == 0
            && self.foreign.is_empty()
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "base_backups": self.base_backups,
            "newest_base_backup": self.newest.map(|b| serde_json::json!({
                "id": b.id.to_hex(),
                "time": b.time.to_rfc3339(),
                "start_wal": self.start_wal,
                "start_lsn": b.source.dump.as_ref().and_then(|d| d.start_lsn.clone()),
                "stop_lsn": b.source.dump.as_ref().and_then(|d| d.stop_lsn.clone()),
                "system_identifier": b.source.dump.as_ref().and_then(|d| d.system_identifier.clone()),
                "size": b.summary.total_bytes_processed,
            })),
            "wal": self.wal,
            "system_identifier": self.cluster,
            "foreign_base_backups": self.foreign,
            "healthy": self.healthy(),
        })
    }

    /// The human report, a line per fact.
    fn say(&self, global: &GlobalArgs) {
        let st = &self.wal;
        global.say(format!(
            "cluster:             {}",
            self.cluster.as_deref().map_or(
                "none recorded yet (the first wal-push records it)".to_string(),
                |c| format!("system identifier {c}")
            )
        ));
        match self.newest {
            Some(b) => global.say(format!(
                "newest base backup:  {} of {} ({} base backups), starts at WAL {}",
                b.id.short(),
                b.time.local_display(),
                self.base_backups,
                self.start_wal.as_deref().unwrap_or("?")
            )),
            None => global.say("newest base backup:  none (cairn pg basebackup)"),
        }
        match (&st.newest_wal, &st.newest_wal_time) {
            (Some(w), Some(t)) => global.say(format!(
                "newest archived WAL: {w}, archived {} ({} WAL files, {})",
                t.local_display(),
                st.wal_files,
                crate::output::size(st.wal_bytes)
            )),
            _ => global.say(format!(
                "newest archived WAL: none ({} WAL files)",
                st.wal_files
            )),
        }
        if st.missing.is_empty() {
            global.say("archive gap:         none since the oldest base backup");
        } else {
            global.say(format!(
                "archive gap:         {} WAL segments missing, first {}: recovery cannot pass it",
                st.missing.len(),
                st.missing[0]
            ));
        }
        for w in &st.windows {
            global.say(format!(
                "restorable:          {} to {} (from base backup {}, WAL up to {}{})",
                w.earliest_time.local_display(),
                w.latest_time.local_display(),
                &w.base_backup[..8.min(w.base_backup.len())],
                w.latest_wal,
                if w.gap_after { ", then a gap" } else { "" }
            ));
        }
        if st.unreadable > 0 {
            global.say(format!(
                "unreadable WAL records: {} (run cairn check)",
                st.unreadable
            ));
        }
        if let Some(first) = self.foreign.first() {
            global.say(format!(
                "other clusters:      {} base backups are of another cluster than the archived \
                 WAL (first {}): they cannot be recovered from this archive",
                self.foreign.len(),
                &first[..8.min(first.len())]
            ));
        }
    }
}
