//! `cairn restore`.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use serde_json::json;

use cairn_core::ops::restore;

use crate::commands::{load_snapshots, FilterArgs};
use crate::exit::ExitCode;
use crate::output::{byte_progress_to, size};
use crate::{print_json, GlobalArgs, CANCEL};

#[derive(Args)]
pub struct RestoreArgs {
    /// Snapshot ID, unique ID prefix, or "latest"
    #[arg(value_name = "SNAPSHOT")]
    snapshot: String,

    /// Directory to restore into (created if missing; files of the same name are replaced)
    #[arg(short, long, value_name = "DIR")]
    target: PathBuf,

    #[command(flatten)]
    filter: FilterArgs,
}

pub fn run(global: &GlobalArgs, args: RestoreArgs) -> anyhow::Result<ExitCode> {
    let repo = global.open()?;
    let loaded = load_snapshots(&repo)?;
    let snap = loaded.resolve(&args.snapshot, &args.filter.filter())?;
    let started = Instant::now();
    let progress = byte_progress_to(
        global.quiet || global.json,
        "restored",
        snap.summary.total_bytes_processed,
    );
    let stats = restore::restore(&repo, snap, &args.target, &progress, &CANCEL);
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
            "bytes_restored": stats.bytes,
            "total_duration": secs,
            "warnings": stats.warnings,
        }))?;
    } else {
        global.say(format!(
            "restored snapshot {} to {}: {} files, {} in {:.1}s",
            snap.id.short(),
            args.target.display(),
            stats.files,
            size(stats.bytes),
            secs
        ));
    }
    if stats.warnings.is_empty() {
        Ok(ExitCode::Success)
    } else {
        eprintln!(
            "cairn: {} entries were skipped (special files, paths too long for this system) or are damaged (marked by a repair)",
            stats.warnings.len()
        );
        Ok(ExitCode::PartialBackup)
    }
}
