//! `cairn backup`.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use serde_json::json;

use cairn_core::format::snapshot::SourceKind;
use cairn_core::ops::backup::{self, BackupOptions, BackupSource};
use cairn_core::time::SnapshotTime;
use cairn_core::Error;

use crate::exit::ExitCode;
use crate::output::{byte_progress, size};
use crate::{print_json, GlobalArgs, CANCEL};

#[derive(Args)]
pub struct BackupArgs {
    /// Files and directories to back up, or - to read standard input
    #[arg(value_name = "PATH")]
    paths: Vec<PathBuf>,

    /// Run this shell command and back up its standard output
    #[arg(
        long,
        value_name = "COMMAND",
        conflicts_with = "paths",
        long_help = "Run COMMAND with `sh -c` and back up its standard output as one file \
                     (named by --stdin-filename). The snapshot is committed only if the command \
                     exits 0; otherwise nothing is committed, the command's stderr is shown, and \
                     cairn exits 21. Prefer this to `pg_dump | cairn backup -`, where a failing \
                     pg_dump cannot be noticed. In a pipeline inside COMMAND, only the last \
                     command's status counts unless you use `set -o pipefail` (bash -c)."
    )]
    command: Option<String>,

    /// File name for data read from stdin or --command
    #[arg(long, value_name = "NAME", default_value = "stdin")]
    stdin_filename: String,

    /// Host name to record [default: this machine's]
    #[arg(long, value_name = "HOST")]
    host: Option<String>,

    /// Tag the snapshot (repeatable, or comma-separated)
    #[arg(long = "tag", value_name = "TAG", value_delimiter = ',')]
    tags: Vec<String>,

    /// Record this time instead of now ("2026-11-20 03:00:00" or RFC 3339), to import old dumps; not more than 15 minutes ahead of the clock
    #[arg(long, value_name = "TIME")]
    time: Option<String>,

    /// Do not check that a database dump is complete before committing
    #[arg(
        long,
        long_help = "Do not check that a database dump is complete before committing. By default \
                     a stream (stdin or --command) that is a database dump is checked as it is \
                     read: a plain pg_dump or pg_dumpall must end with PostgreSQL's completion \
                     line, a custom or tar archive must be readable to the end by `pg_restore` \
                     (it is fed to `pg_restore -f /dev/null` while being backed up), mysqldump \
                     output must end with `-- Dump completed`; a single directory given as PATH \
                     that is a directory-format dump (toc.dat) is read by pg_restore first. A dump \
                     that fails is not committed (exit 27). Its format, database and versions \
                     are recorded either way. Compressed input (gzip, zstd, pg_dump -Fc's default \
                     compression) gets a warning: it defeats deduplication."
    )]
    no_validate: bool,

    /// Store this backup's new chunks whole, not as deltas against similar stored chunks
    #[arg(
        long,
        long_help = "Store this backup's new chunks whole, even if the repository has delta \
                     compression on (the default; `init --no-delta` creates one without). With \
                     it on, a new \
                     chunk that resembles a stored one is kept as a zstd delta against it; the \
                     stored one (its base) is read back from the repository during the backup."
    )]
    no_delta: bool,

    /// Save a stream (stdin, --command) that is empty; by default it is refused (exit 27)
    #[arg(
        long,
        long_help = "Save a stream (stdin or --command) that ends without a single byte. By \
                     default an empty stream is refused with exit 27 and no snapshot: `pg_dump \
                     -d nosuchdb | cairn backup -` or a dump command that exits 0 without output \
                     looks exactly like that, and a saved empty snapshot would satisfy `status \
                     --max-age` while holding nothing to restore. Saved with this option, the \
                     snapshot records that it is empty on purpose (`status` does not flag it; a \
                     drill of it fails: there is nothing to restore)."
    )]
    allow_empty: bool,
}

pub fn run(global: &GlobalArgs, args: BackupArgs) -> anyhow::Result<ExitCode> {
    let stdin = args.paths.len() == 1 && args.paths[0].as_os_str() == "-";
    if args.paths.iter().any(|p| p.as_os_str() == "-") && !stdin {
        anyhow::bail!(Error::invalid(
            "- (stdin) cannot be combined with other paths"
        ));
    }
    if args.paths.is_empty() && args.command.is_none() {
        anyhow::bail!(Error::invalid(
            "nothing to back up: give paths, - for stdin, or --command"
        ));
    }
    backup::check_stream_filename(&args.stdin_filename)?;
    let time = args.time.as_deref().map(SnapshotTime::parse).transpose()?;
    // The one command a write-only key may run.
    let repo = global.open_to_add()?;
    let source = if let Some(command) = args.command {
        BackupSource::Command {
            command,
            filename: args.stdin_filename,
        }
    } else if stdin {
        BackupSource::Stream {
            reader: Box::new(std::io::stdin()),
            filename: args.stdin_filename,
        }
    } else {
        BackupSource::Paths(args.paths)
    };
    let opts = BackupOptions {
        hostname: args.host.unwrap_or_else(cairn_core::sys::hostname),
        username: cairn_core::sys::username(),
        tags: args.tags.into_iter().filter(|t| !t.is_empty()).collect(),
        time,
        validate_dumps: !args.no_validate,
        no_delta: args.no_delta,
        allow_empty: args.allow_empty,
    };
    run_backup(global, &repo, source, &opts)
}

/// Runs a backup with a progress bar and reports it (human or JSON);
/// shared with `pg basebackup`.
pub fn run_backup(
    global: &GlobalArgs,
    repo: &cairn_core::repo::repository::Repository,
    source: BackupSource,
    opts: &BackupOptions,
) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let progress = byte_progress(global.quiet || global.json, "read");
    let outcome = backup::backup(repo, source, opts, &progress, &CANCEL);
    progress.0.finish_and_clear();
    let outcome = outcome?;
    let s = &outcome.snapshot;
    let sum = &s.summary;
    let secs = started.elapsed().as_secs_f64();
    if global.json {
        print_json(&json!({
            "message_type": "summary",
            "snapshot_id": s.id.to_hex(),
            "short_id": s.id.short(),
            "parent": s.parent.map(|p| p.to_hex()),
            "time": s.time.to_rfc3339(),
            "total_files_processed": sum.total_files_processed,
            "total_dirs_processed": sum.total_dirs_processed,
            "total_bytes_processed": sum.total_bytes_processed,
            "files_unreadable": sum.files_unreadable,
            "data_blobs": sum.data_blobs,
            "tree_blobs": sum.tree_blobs,
            "data_added": sum.data_added,
            "data_added_packed": sum.data_added_packed,
            "total_duration": secs,
            "warnings": outcome.warnings,
        }))?;
    } else {
        global.say(format!("snapshot {} saved", s.id.short()));
        let what = match s.source.kind {
            SourceKind::Paths => format!(
                "in {} files and {} directories",
                sum.total_files_processed, sum.total_dirs_processed
            ),
            SourceKind::Stdin => "from stdin".to_string(),
            SourceKind::Command => "from the command".to_string(),
        };
        global.say(format!(
            "  read {} {what} in {secs:.1}s",
            size(sum.total_bytes_processed)
        ));
        global.say(format!(
            "  added {} new data ({} stored) in {} new blobs",
            size(sum.data_added),
            size(sum.data_added_packed),
            sum.data_blobs + sum.tree_blobs
        ));
        global.verbose(format!("snapshot ID {}", s.id));
    }
    if outcome.warnings.is_empty() {
        Ok(ExitCode::Success)
    } else {
        eprintln!(
            "cairn: {} files or directories could not be read and are missing from snapshot {}",
            outcome.warnings.len(),
            s.id.short()
        );
        Ok(ExitCode::PartialBackup)
    }
}
