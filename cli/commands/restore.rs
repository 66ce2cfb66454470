//! `cairn restore`.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use serde_json::json;

use cairn_core::pattern::Patterns;
use cairn_core::repo::restorer::{Overwrite, RestoreOptions};

use crate::commands::{load_snapshots, snapshot_and_path, FilterArgs};
use crate::exit::ExitCode;
use crate::output::{byte_progress_to, size};
use crate::patterns;
use crate::{print_json, GlobalArgs, CANCEL};

#[derive(Args)]
#[command(after_help = "\
Patterns are restic's (see `cairn backup --help`, --exclude), matched against the paths in the
snapshot (`/home/x/a.txt`), also with SNAPSHOT:PATH. With --include only what a pattern matches
is restored, with everything under it and the directories above it; --exclude leaves out what
its patterns match and wins over --include.")]
pub struct RestoreArgs {
    /// Snapshot ID, unique ID prefix, or "latest"; SNAPSHOT:PATH restores only PATH of it
    #[arg(
        value_name = "SNAPSHOT[:PATH]",
        long_help = "Snapshot ID, unique ID prefix, or \"latest\". SNAPSHOT:PATH restores only \
                     PATH of the snapshot, as restic does: a directory's contents go straight \
                     into the target, a file into the target under its name."
    )]
    snapshot: String,

    /// Directory to restore into (created if missing)
    #[arg(short, long, value_name = "DIR")]
    target: PathBuf,

    /// Restore only what matches PATTERN (repeatable)
    #[arg(long, value_name = "PATTERN")]
    include: Vec<String>,

    /// Like --include, ignoring case
    #[arg(long, value_name = "PATTERN")]
    iinclude: Vec<String>,

    /// Read --include patterns from FILE (one per line; # comments)
    #[arg(long, value_name = "FILE")]
    include_file: Vec<PathBuf>,

    #[command(flatten)]
    exclude: patterns::ExcludeArgs,

    /// Files already at the target: always replaced, if-changed, if-newer, or never
    #[arg(
        long,
        value_name = "WHEN",
        default_value = "always",
        long_help = "What to do with a file already at the target: `always` replace it (the \
                     default), `if-changed` replace it unless its size and modification time are \
                     the snapshot's (rsync's quick check: content is not compared), `if-newer` \
                     replace it only if the snapshot's copy has a later modification time, \
                     `never` leave it. Kept files are counted in the summary."
    )]
    overwrite: String,

    /// Say what would be restored; write nothing
    #[arg(short = 'n', long)]
    dry_run: bool,

    /// Read every restored file back and check it against the snapshot (exit 22 if one differs)
    #[arg(long)]
    verify: bool,

    #[command(flatten)]
    filter: FilterArgs,
}

pub fn run(global: &GlobalArgs, args: RestoreArgs) -> anyhow::Result<ExitCode> {
    let (spec, subfolder) = snapshot_and_path(&args.snapshot);
    let mut opts = RestoreOptions::default();
    opts.subfolder = subfolder.filter(|p| p.components().any(|c| c.as_os_str() != "/"));
    opts.include = Patterns::new(
        &patterns::read(&args.include, &args.include_file)?,
        &args.iinclude,
    )?;
    opts.exclude = args.exclude.patterns()?;
    opts.overwrite = args.overwrite.parse::<Overwrite>()?;
    opts.dry_run = args.dry_run;
    opts.verify = args.verify;
    let repo = global.open()?;
    let loaded = load_snapshots(&repo)?;
    let snap = loaded.resolve(spec, &args.filter.filter())?;
    let started = Instant::now();
    let progress = byte_progress_to(
        global.quiet || global.json,
        "restored",
        snap.summary.total_bytes_processed,
    );
    let stats = repo.restore(snap, &args.target, &opts, &progress, &CANCEL);
    progress.0.finish_and_clear();
    let stats = stats?;
    let secs = started.elapsed().as_secs_f64();
    if global.json {
        print_json(&json!({
            "message_type": "summary",
            "snapshot_id": snap.id.to_hex(),
            "target": args.target.display().to_string(),
            "files_restored": stats.files,
            "dirs_restored": stats.dirs,
            "symlinks_restored": stats.symlinks,
            "specials_restored": stats.specials,
            "hardlinks_restored": stats.hardlinks,
            "xattrs_not_restored_not_root": stats.xattrs_not_root,
            "bytes_restored": stats.bytes,
            "files_kept": stats.files_kept,
            "excluded": stats.excluded,
            "files_verified": stats.verified,
            "dry_run": args.dry_run,
            "total_duration": secs,
            "warnings": stats.warnings,
        }))?;
    } else {
        global.say(format!(
            "{} snapshot {} to {}: {} files, {} in {:.1}s",
            if args.dry_run {
                "would restore"
            } else {
                "restored"
            },
            snap.id.short(),
            args.target.display(),
            stats.files,
            size(stats.bytes),
            secs
        ));
        if stats.files_kept > 0 {
            global.say(format!(
                "  kept {} files already there (--overwrite {})",
                stats.files_kept, args.overwrite
            ));
        }
        if stats.excluded > 0 {
            global.say(format!("  left out {} entries (patterns)", stats.excluded));
        }
        if args.verify {
            global.say(format!(
                "  verified {} files against the snapshot",
                stats.verified
            ));
        }
        if args.dry_run {
            global.say("dry run: nothing was written");
        }
    }
    if stats.xattrs_not_root > 0 && !global.quiet {
        eprintln!(
            "cairn: note: {} extended attributes (security.*, trusted.*: SELinux labels and the \
             like) were not restored: only root can set them",
            stats.xattrs_not_root
        );
    }
    if stats.warnings.is_empty() {
        Ok(ExitCode::Success)
    } else {
        eprintln!(
            "cairn: {} entries were skipped (sockets, device nodes when not root, paths too long for this system) or are damaged (marked by a repair)",
            stats.warnings.len()
        );
        Ok(ExitCode::PartialBackup)
    }
}
