//! `cairn ls`: the entries of a snapshot, without restoring it.

use std::io::Write;

use clap::Args;
use serde_json::json;

use cairn_core::format::tree::NodeKind;
use cairn_core::ops::browse::{self, Entry};

use crate::commands::{load_snapshots, FilterArgs};
use crate::exit::ExitCode;
use crate::output::{mode_string, mtime_display, node_json, size, snapshot_json};
use crate::{print_json, GlobalArgs, CANCEL};

#[derive(Args)]
pub struct LsArgs {
    /// Snapshot ID, unique ID prefix, or "latest"
    #[arg(value_name = "SNAPSHOT")]
    snapshot: String,

    /// List only this directory (or file) of the snapshot
    #[arg(value_name = "PATH", default_value = "/")]
    path: String,

    /// Long listing: type and mode, owner, size, modification time
    #[arg(short, long)]
    long: bool,

    /// Only the first level of a directory, not everything under it
    #[arg(long)]
    no_recursive: bool,

    #[command(flatten)]
    filter: FilterArgs,
}

/// One line of `ls -l`: `-rw-r--r--  1000 1000  12.3 MiB 2026-11-27 01:00:00  /shop.sql`.
pub fn long_line(e: &Entry) -> String {
    let n = &e.node;
    let mut line = format!(
        "{} {:>5} {:>5} {:>10} {}  {}",
        mode_string(n.kind, n.mode),
        n.uid,
        n.gid,
        if n.kind == NodeKind::File {
            size(n.size)
        } else {
            String::new()
        },
        mtime_display(n.mtime),
        e.path
    );
    if let Some(t) = &n.target {
        line.push_str(&format!(" -> {t}"));
    }
    line
}

pub fn run(global: &GlobalArgs, args: LsArgs) -> anyhow::Result<ExitCode> {
    let repo = global.open()?;
    let loaded = load_snapshots(&repo)?;
    let snap = loaded.resolve(&args.snapshot, &args.filter.filter())?;
    let index = repo.index()?;
    let entries = browse::list(&repo, &index, snap, &args.path, !args.no_recursive, &CANCEL)?;
    if global.json {
        let list: Vec<_> = entries.iter().map(node_json).collect();
        print_json(&json!({ "snapshot": snapshot_json(snap), "entries": list }))?;
    } else if !global.quiet {
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        for e in &entries {
            if args.long {
                writeln!(out, "{}", long_line(e))?;
            } else {
                writeln!(out, "{}", e.path)?;
            }
        }
        out.flush()?;
    }
    let damaged = entries.iter().any(|e| e.node.damage.is_some());
    Ok(if damaged {
        ExitCode::PartialBackup
    } else {
        ExitCode::Success
    })
}
