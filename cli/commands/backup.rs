//! `cairn backup`.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use serde_json::json;

use cairn_core::format::snapshot::SourceKind;
use cairn_core::ops::backup::{self, BackupOptions, BackupSource, Excludes};
use cairn_core::time::SnapshotTime;
use cairn_core::Error;

use crate::exit::ExitCode;
use crate::output::{byte_progress, size};
use crate::patterns;
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

    #[command(flatten)]
    exclude: patterns::ExcludeArgs,

    /// Leave out directories holding a file NAME (beginning with HEADER, if given)
    #[arg(long = "exclude-if-present", value_name = "NAME[:HEADER]")]
    exclude_if_present: Vec<String>,

    /// Leave out cache directories: those holding a CACHEDIR.TAG with its signature
    #[arg(long)]
    exclude_caches: bool,

    /// Back up the paths listed in FILE (one per line; # comments and empty lines skipped)
    #[arg(long = "files-from", value_name = "FILE")]
    files_from: Vec<PathBuf>,

    /// Back up the paths listed in FILE, separated by NUL bytes (`find -print0`)
    #[arg(long = "files-from-raw", value_name = "FILE")]
    files_from_raw: Vec<PathBuf>,

    /// Stay on each path's file system: a mount point below it is stored as an empty directory
    #[arg(short = 'x', long)]
    one_file_system: bool,

    /// Read and pack everything, store nothing: say what a backup would add
    #[arg(
        short = 'n',
        long,
        long_help = "Read, chunk, compress and encrypt everything as a backup would, and store \
                     nothing: no pack, index object or snapshot is written. Prints what would be \
                     added (with --json, the same summary with \"dry_run\": true). Use it to try \
                     --exclude rules."
    )]
    dry_run: bool,
}

/// Whether an option that only applies to path backups was given.
fn exclude_given(args: &BackupArgs) -> bool {
    !(args.exclude.is_empty()
        && args.exclude_if_present.is_empty()
        && args.files_from.is_empty()
        && args.files_from_raw.is_empty())
        || args.exclude_caches
        || args.one_file_system
}

impl BackupArgs {
    fn excludes(&self) -> anyhow::Result<Excludes> {
        let mut exclude = Excludes::default();
        exclude.patterns = self.exclude.patterns()?;
        for spec in &self.exclude_if_present {
            let (name, header) = match spec.split_once(':') {
                Some((n, h)) => (n, Some(h.to_string())),
                None => (spec.as_str(), None),
            };
            if name.is_empty() || name.contains('/') {
                anyhow::bail!(Error::invalid(format!(
                    "--exclude-if-present {spec:?}: give a file name (NAME or NAME:HEADER)"
                )));
            }
            exclude.if_present.push((name.to_string(), header));
        }
        if self.exclude_caches {
            let (name, header) = backup::CACHEDIR_TAG;
            exclude
                .if_present
                .push((name.to_string(), Some(header.to_string())));
        }
        exclude.one_file_system = self.one_file_system;
        Ok(exclude)
    }

    /// The paths given, and those listed in --files-from(-raw) files.
    fn all_paths(&self) -> anyhow::Result<Vec<PathBuf>> {
        use std::os::unix::ffi::OsStrExt;
        let mut out = self.paths.clone();
        for f in &self.files_from {
            let bytes = patterns::read_list_file(f, "--files-from")?;
            let text = std::str::from_utf8(&bytes).map_err(|_| {
                Error::invalid(format!(
                    "--files-from {}: not UTF-8; use --files-from-raw for any bytes",
                    f.display()
                ))
            })?;
            out.extend(patterns::list_lines(text).map(PathBuf::from));
        }
        for f in &self.files_from_raw {
            let bytes = patterns::read_list_file(f, "--files-from-raw")?;
            out.extend(
                bytes
                    .split(|b| *b == 0)
                    .filter(|p| !p.is_empty())
                    .map(|p| PathBuf::from(std::ffi::OsStr::from_bytes(p))),
            );
        }
        Ok(out)
    }
}

pub fn run(global: &GlobalArgs, args: BackupArgs) -> anyhow::Result<ExitCode> {
    let exclude = args.excludes()?;
    let listed = !args.files_from.is_empty() || !args.files_from_raw.is_empty();
    let paths = args.all_paths()?;
    let stdin = paths.len() == 1 && paths[0].as_os_str() == "-";
    if paths.iter().any(|p| p.as_os_str() == "-") && !stdin {
        anyhow::bail!(Error::invalid(
            "- (stdin) cannot be combined with other paths"
        ));
    }
    if listed && paths.is_empty() {
        anyhow::bail!(Error::invalid(
            "the --files-from lists are empty: nothing to back up"
        ));
    }
    if (stdin || args.command.is_some()) && exclude_given(&args) {
        anyhow::bail!(Error::invalid(
            "--exclude, --files-from and --one-file-system apply to paths, not to a stream"
        ));
    }
    if paths.is_empty() && args.command.is_none() {
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
        BackupSource::Paths(paths)
    };
    let mut opts = BackupOptions::default();
    opts.hostname = args.host.unwrap_or_else(cairn_core::sys::hostname);
    opts.username = cairn_core::sys::username();
    opts.tags = args.tags.into_iter().filter(|t| !t.is_empty()).collect();
    opts.time = time;
    opts.validate_dumps = !args.no_validate;
    opts.no_delta = args.no_delta;
    opts.allow_empty = args.allow_empty;
    opts.exclude = exclude;
    opts.dry_run = args.dry_run;
    run_backup(global, &repo, source, &opts)
}

/// Runs a backup with a progress bar and reports it (human or JSON);
/// shared with `pg basebackup`.
pub fn run_backup(
    global: &GlobalArgs,
    repo: &cairn_core::repo::appender::Appender,
    source: BackupSource,
    opts: &BackupOptions,
) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let progress = byte_progress(global.quiet || global.json, "read");
    let outcome = repo.backup(source, opts, &progress, &CANCEL);
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
            "excluded": outcome.excluded,
            "dry_run": !outcome.committed,
        }))?;
    } else {
        if outcome.committed {
            global.say(format!("snapshot {} saved", s.id.short()));
        } else {
            global.say("dry run: nothing was stored");
        }
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
            "  {} {} new data ({} stored) in {} new blobs",
            if outcome.committed {
                "added"
            } else {
                "would add"
            },
            size(sum.data_added),
            size(sum.data_added_packed),
            sum.data_blobs + sum.tree_blobs
        ));
        if outcome.excluded > 0 {
            global.say(format!(
                "  left out {} entries (excludes)",
                outcome.excluded
            ));
        }
        if outcome.committed {
            global.verbose(format!("snapshot ID {}", s.id));
        }
    }
    if outcome.warnings.is_empty() {
        Ok(ExitCode::Success)
    } else {
        let from = match outcome.committed {
            true => format!("are missing from snapshot {}", s.id.short()),
            false => "would be missing from the snapshot".to_string(),
        };
        eprintln!(
            "cairn: {} files or directories could not be read and {from}",
            outcome.warnings.len()
        );
        Ok(ExitCode::PartialBackup)
    }
}
