//! `cairn copy`.

use clap::Args;
use serde_json::json;

use cairn_core::ops::copy;

use crate::commands::{load_snapshots, FilterArgs, SecondPasswordArgs};
use crate::exit::ExitCode;
use crate::{print_json, GlobalArgs, CANCEL};

pub const LONG_ABOUT: &str = "\
Copy snapshots to another repository (an off-site copy), which has keys of
its own.

Every chunk of the chosen snapshots is read, named with the target's key and
stored only if the target lacks it; trees are rewritten. Chunks of files
that an earlier copied snapshot of the same host and paths already holds
are mapped through that copy instead of being read, so a nightly copy reads
little more than what changed. Archived PostgreSQL WAL (wal-push) is copied
too, when no SNAPSHOT is named (--no-wal skips it), so that the copy can
restore to a point in time. Each copy records
the source snapshot's ID in `original`, and a snapshot already copied is
skipped: running copy every night sends only what is new, and a copy that
was interrupted resumes where it stopped.

The target's password comes from --password-command2 / CAIRN_PASSWORD_COMMAND2,
--password-file2 / CAIRN_PASSWORD_FILE2, CAIRN_PASSWORD2, else a prompt.
    cairn -r /srv/backup copy --to s3:https://s3.example.com/offsite/db1";

#[derive(Args)]
pub struct CopyArgs {
    /// Target repository location (a directory, s3:..., azure:... or sftp:...)
    #[arg(long = "to", env = "CAIRN_REPOSITORY2", value_name = "LOCATION")]
    to: String,

    #[command(flatten)]
    password2: SecondPasswordArgs,

    /// Snapshots to copy (IDs, prefixes or "latest"); all matching the filters if none
    #[arg(value_name = "SNAPSHOT")]
    snapshots: Vec<String>,

    #[command(flatten)]
    filter: FilterArgs,

    /// Do not copy archived PostgreSQL WAL (copied by default, when no SNAPSHOT is named)
    #[arg(long)]
    no_wal: bool,
}

pub fn run(global: &GlobalArgs, args: CopyArgs) -> anyhow::Result<ExitCode> {
    let src = global.open()?;
    let loaded = load_snapshots(&src)?;
    let filter = args.filter.filter();
    let chosen: Vec<_> = if args.snapshots.is_empty() {
        loaded
            .good
            .iter()
            .filter(|s| filter.matches(s))
            .cloned()
            .collect()
    } else {
        let mut v: Vec<cairn_core::format::snapshot::Snapshot> = Vec::new();
        for spec in &args.snapshots {
            let s = loaded.resolve(spec, &filter)?;
            if !v.iter().any(|c| c.id == s.id) {
                v.push(s.clone());
            }
        }
        v
    };

    let dst = args
        .password2
        .open(global, &args.to, "target repository", Some(src.id()))?;
    let progress = crate::output::byte_progress_to(
        global.quiet || global.json,
        "copied",
        copy::progress_total(&chosen),
    );
    let stats = src.copy_to(&dst, &chosen, &progress, &CANCEL);
    progress.0.finish_and_clear();
    let stats = stats?;
    for w in &stats.warnings {
        eprintln!("cairn: warning: target repository: {w}");
    }
    // Archived WAL goes along: an off-site copy can then restore to a
    // point in time too.
    let wal = if args.no_wal || !args.snapshots.is_empty() {
        None
    } else {
        Some(copy::copy_wal(&src, &dst, &CANCEL)?)
    };
    if global.json {
        print_json(&json!({
            "message_type": "summary",
            "snapshots": stats.snapshots,
            "chunks_read": stats.chunks_read,
            "bytes_read": stats.bytes_read,
            "chunks_known": stats.chunks_known,
            "wal": wal,
        }))?;
        return Ok(ExitCode::Success);
    }
    let mut copied = 0;
    for s in &stats.snapshots {
        if s.skipped {
            global.say(format!(
                "snapshot {} is already in the target as {}",
                &s.source[..8],
                &s.target[..8]
            ));
        } else {
            copied += 1;
            global.say(format!(
                "copied snapshot {} as {}",
                &s.source[..8],
                &s.target[..8]
            ));
        }
    }
    global.say(format!(
        "{copied} snapshots copied, {} already there; {} chunks read, {} already in the target",
        stats.snapshots.len() - copied,
        stats.chunks_read,
        stats.chunks_known
    ));
    if let Some(w) = wal.filter(|w| w.copied + w.present > 0) {
        global.say(format!(
            "{} archived WAL files copied, {} already there",
            w.copied, w.present
        ));
    }
    Ok(ExitCode::Success)
}
