//! `cairn wal-push` and `cairn wal-fetch`: PostgreSQL's `archive_command`
//! and `restore_command`.

use std::path::PathBuf;

use clap::Args;
use serde_json::json;

use cairn_core::pg::wal::{self, PushOutcome};
use cairn_core::pg::wal_spool::{self, Spool};
use cairn_core::Error;

use crate::exit::ExitCode;
use crate::output::size;
use crate::{print_json, GlobalArgs, CANCEL};

pub const PUSH_ABOUT: &str = "\
Archive one PostgreSQL WAL file: use as archive_command.

    archive_mode = on
    archive_command = 'cairn -r /srv/backup wal-push %p'

The file is chunked, deduplicated, compressed and encrypted into the
repository like any backup, then recorded under its name (%f). cairn exits 0
only once the WAL file is durably stored; PostgreSQL keeps the segment and
retries while it exits non-zero. Pushing a file that is already archived with
the same contents succeeds without storing anything (a retry); a different
file under an archived name is refused (exit 28). Silent on success.

The password must come without a terminal: CAIRN_PASSWORD_FILE or
CAIRN_PASSWORD_COMMAND, e.g. in the environment of the PostgreSQL service.";

pub const FETCH_ABOUT: &str = "\
Restore one archived WAL file: use as restore_command.

    restore_command = 'cairn -r /srv/backup wal-fetch %f %p'

The file is written through a temporary file next to DEST, verified against
the size and BLAKE3 hash recorded when it was archived, and renamed into
place. A file that is not in the archive exits 20, which is how PostgreSQL
recovery learns that it reached the end of the archive.

With --prefetch N (as pgBackRest's asynchronous archive-get), a background
cairn keeps the next N segments fetched and verified in a spool directory
while PostgreSQL replays, and the next call only renames one into place:

    restore_command = 'cairn -r /srv/backup wal-fetch --prefetch 8 %f %p'

The spool is pg_wal/.cairn-prefetch (DEST's directory; --spool DIR to
choose), about N segments, each synced before it is handed over; `cairn pg
restore` configures it and removes it when recovery ends
(recovery_end_command). A spool that fails only turns prefetching off.";

#[derive(Args)]
pub struct PushArgs {
    /// The WAL file to archive (PostgreSQL's %p)
    #[arg(value_name = "PATH")]
    path: PathBuf,

    /// Archive it under this name [default: the file name of PATH, which is %f]
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
}

#[derive(Args)]
pub struct FetchArgs {
    /// The WAL file to restore (PostgreSQL's %f)
    #[arg(value_name = "NAME")]
    name: String,

    /// Where to write it (PostgreSQL's %p)
    #[arg(value_name = "DEST")]
    dest: PathBuf,

    /// Keep the next N WAL segments fetched ahead, by a background cairn,
    /// in the spool directory (0: off)
    #[arg(long, value_name = "N", default_value_t = 0)]
    prefetch: u32,

    /// The spool directory of --prefetch [default: .cairn-prefetch in DEST's
    /// directory]
    #[arg(long, value_name = "DIR", requires = "prefetch")]
    spool: Option<PathBuf>,
}

/// Set in the environment of the background cairn that `wal-fetch
/// --prefetch` starts with its own command line: it fills the spool
/// instead of fetching NAME.
const FILLER: &str = "CAIRN_INTERNAL_WAL_PREFETCH_FILLER";

pub fn push(global: &GlobalArgs, args: PushArgs) -> anyhow::Result<ExitCode> {
    let name = match args.name {
        Some(n) => n,
        None => args
            .path
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "{} has no file name to archive it under",
                    args.path.display()
                ))
            })?,
    };
    wal::check_name(&name)?;
    // A write-only key may archive WAL files too (a database server that
    // archives its own WAL).
    let repo = global.open_to_add()?;
    let host = cairn_core::sys::hostname();
    let started = std::time::Instant::now();
    let outcome = wal::push(&repo, &name, &args.path, &host, &CANCEL)?;
    let (record, added, already) = match &outcome {
        PushOutcome::Stored { record, added } => (record, *added, false),
        PushOutcome::AlreadyArchived(record) => (record, 0, true),
    };
    if global.json {
        print_json(&json!({
            "message_type": "wal_push",
            "name": record.name,
            "size": record.size,
            "added": added,
            "already_archived": already,
            "seconds": started.elapsed().as_secs_f64(),
        }))?;
    } else {
        global.verbose(format!(
            "{} {} ({}, {} new) in {:.2}s",
            if already {
                "already archived:"
            } else {
                "archived"
            },
            record.name,
            size(record.size),
            size(added),
            started.elapsed().as_secs_f64()
        ));
    }
    Ok(ExitCode::Success)
}

pub fn fetch(global: &GlobalArgs, args: FetchArgs) -> anyhow::Result<ExitCode> {
    wal::check_name(&args.name)?;
    if args.prefetch > 0 {
        return fetch_prefetching(global, &args);
    }
    let repo = global.open()?;
    let started = std::time::Instant::now();
    let record = wal::fetch(&repo, &args.name, &args.dest, &CANCEL)?;
    report_fetch(global, &record.name, record.size, started, false)
}

fn report_fetch(
    global: &GlobalArgs,
    name: &str,
    bytes: u64,
    started: std::time::Instant,
    spooled: bool,
) -> anyhow::Result<ExitCode> {
    if global.json {
        print_json(&json!({
            "message_type": "wal_fetch",
            "name": name,
            "size": bytes,
            "prefetched": spooled,
            "seconds": started.elapsed().as_secs_f64(),
        }))?;
    } else {
        global.verbose(format!(
            "restored {name} ({}{}) in {:.2}s",
            size(bytes),
            if spooled { ", prefetched" } else { "" },
            started.elapsed().as_secs_f64()
        ));
    }
    Ok(ExitCode::Success)
}

/// `wal-fetch --prefetch N`: NAME from the spool if a filler fetched it,
/// else from the repository; then a filler is started for what follows.
fn fetch_prefetching(global: &GlobalArgs, args: &FetchArgs) -> anyhow::Result<ExitCode> {
    let root = match &args.spool {
        Some(dir) => dir.clone(),
        None => match args.dest.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.join(".cairn-prefetch"),
            _ => PathBuf::from(".cairn-prefetch"),
        },
    };
    let spool = Spool::new(&root, global.location()?);
    if std::env::var_os(FILLER).is_some() {
        // The background filler: no output, nobody waits for it. Another
        // filler at work already: done before the repository is opened
        // (its key derivation may cost 0.1 s).
        if spool.is_free() {
            let repo = global.open()?;
            spool.fill(&repo, args.prefetch, &CANCEL)?;
        }
        return Ok(ExitCode::Success);
    }
    let started = std::time::Instant::now();
    // The spool only saves time: when it fails, the fetch goes on without
    // it (said with -v), never fails because of it.
    let spool = match spool.create() {
        Ok(()) => Some(spool),
        Err(e) => {
            global.verbose(format!("WAL prefetch off: {e}"));
            None
        }
    };
    let taken = match &spool {
        Some(spool) => spool.take(&args.name, &args.dest).unwrap_or_else(|e| {
            global.verbose(format!("WAL prefetch: {e}"));
            None
        }),
        None => None,
    };
    let (bytes, spooled) = match taken {
        Some(bytes) => (bytes, true),
        None => {
            let repo = global.open()?;
            let record = wal::fetch(&repo, &args.name, &args.dest, &CANCEL)?;
            if let Some(Err(e)) = spool.as_ref().map(|s| s.bind(repo.id())) {
                global.verbose(format!("WAL prefetch: {e}"));
            }
            (record.size, false)
        }
    };
    if let Some(spool) = &spool {
        match spool.requested(&args.name, bytes) {
            Ok(()) => {
                let more = !wal_spool::following(&args.name, bytes, args.prefetch).is_empty();
                if more && spool.is_free() {
                    start_filler(global);
                }
            }
            Err(e) => global.verbose(format!("WAL prefetch: {e}")),
        }
    }
    report_fetch(global, &args.name, bytes, started, spooled)
}

/// Starts this command again in the background as the spool's filler (the
/// same options reach the same repository with the same password source).
/// A filler that cannot start only costs speed: said with -v.
fn start_filler(global: &GlobalArgs) {
    use std::os::unix::process::CommandExt;
    let started = std::env::current_exe().and_then(|exe| {
        std::process::Command::new(exe)
            .args(std::env::args_os().skip(1))
            .env(FILLER, "1")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            // Out of the restore_command's process group: PostgreSQL
            // waits for the command, not for the filler.
            .process_group(0)
            .spawn()
    });
    if let Err(e) = started {
        global.verbose(format!("cannot start the WAL prefetcher: {e}"));
    }
}
