//! `cairn wal-push` and `cairn wal-fetch`: PostgreSQL's `archive_command`
//! and `restore_command`.

use std::path::PathBuf;

use clap::Args;
use serde_json::json;

use cairn_core::wal::{self, PushOutcome};
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
the size and BLAKE3 hash recorded when it was archived, synced, and renamed
into place. A file that is not in the archive exits 20, which is how
PostgreSQL recovery learns that it reached the end of the archive.";

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
}

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
    let host = cairn_core::backup::hostname();
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
    let repo = global.open()?;
    let started = std::time::Instant::now();
    let record = wal::fetch(&repo, &args.name, &args.dest, &CANCEL)?;
    if global.json {
        print_json(&json!({
            "message_type": "wal_fetch",
            "name": record.name,
            "size": record.size,
            "seconds": started.elapsed().as_secs_f64(),
        }))?;
    } else {
        global.verbose(format!(
            "restored {} ({}) in {:.2}s",
            record.name,
            size(record.size),
            started.elapsed().as_secs_f64()
        ));
    }
    Ok(ExitCode::Success)
}
