//! `cairn rewrite`: drop paths from stored snapshots.

use std::io::Write;

use clap::Args;
use serde_json::json;

use cairn_core::ops::rewrite::{self, RewriteOptions};

use crate::commands::{load_snapshots, FilterArgs};
use crate::exit::ExitCode;
use crate::patterns;
use crate::{print_json, GlobalArgs, CANCEL};

pub const LONG_ABOUT: &str = "\
Drop paths that should never have been backed up from stored snapshots
(restic's rewrite --exclude):

    cairn rewrite --exclude /home/u/.ssh/id_ed25519 --forget
    cairn rewrite 1a2b3c4d --exclude '*.key' --dry-run

Without SNAPSHOT, every snapshot the filters select. Patterns are backup's
(see `cairn backup --help`), matched against the paths in the snapshot; a
directory matched goes with everything in it. A snapshot's object is never
changed: a copy without the dropped entries is written (with a new ID,
naming the old one as its original); the old one stays unless --forget,
which deletes it once the copy is stored. A snapshot in which nothing
matches is left alone. The dropped data stays in the repository until no
snapshot refers to it and `cairn prune` runs. The copy keeps the old
snapshot's summary (sizes as they were backed up).";

#[derive(Args)]
pub struct RewriteArgs {
    /// Snapshots to rewrite (ID, unique prefix, or latest) [default: all
    /// that the filters select]
    #[arg(value_name = "SNAPSHOT")]
    snapshots: Vec<String>,

    #[command(flatten)]
    filter: FilterArgs,

    #[command(flatten)]
    exclude: patterns::ExcludeArgs,

    /// Delete each rewritten snapshot once its copy is stored
    #[arg(long)]
    forget: bool,

    /// Say what would be dropped; write nothing
    #[arg(short = 'n', long)]
    dry_run: bool,
}

pub fn run(global: &GlobalArgs, args: RewriteArgs) -> anyhow::Result<ExitCode> {
    let mut opts = RewriteOptions::default();
    opts.exclude = args.exclude.patterns()?;
    opts.forget = args.forget;
    opts.dry_run = args.dry_run;
    let repo = global.open()?;
    let loaded = load_snapshots(&repo)?;
    let chosen = loaded.select(&args.snapshots, &args.filter.filter())?;
    let done = rewrite::rewrite(&repo, &chosen, &opts, &CANCEL)?;
    let changed = done.iter().filter(|r| r.dropped > 0).count();
    if global.json {
        print_json(&json!({
            "message_type": "rewrite",
            "selected": chosen.len(),
            "dry_run": args.dry_run,
            "snapshots": done
                .iter()
                .filter(|r| r.dropped > 0)
                .map(|r| json!({
                    "old": r.old.to_hex(),
                    "new": r.new.map(|n| n.to_hex()),
                    "dropped": r.dropped,
                    "forgotten": r.forgotten,
                }))
                .collect::<Vec<_>>(),
        }))?;
    } else if !global.quiet {
        let mut out = std::io::stdout().lock();
        for r in done.iter().filter(|r| r.dropped > 0) {
            let new = match r.new {
                Some(n) if r.forgotten => format!("-> {} (old one removed)", n.short()),
                Some(n) => format!("-> {}", n.short()),
                None => "(dry run)".to_string(),
            };
            writeln!(
                out,
                "{} {new}: dropped {} entries",
                r.old.short(),
                r.dropped
            )?;
        }
        writeln!(
            out,
            "{} {changed} of {} snapshots",
            if args.dry_run {
                "would rewrite"
            } else {
                "rewrote"
            },
            chosen.len()
        )?;
    }
    Ok(ExitCode::Success)
}
