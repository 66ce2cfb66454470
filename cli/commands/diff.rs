//! `cairn diff`: what changed between two snapshots.

use std::io::Write;

use clap::Args;
use serde_json::json;

use cairn_core::ops::browse::{self, Change};

use crate::commands::{load_snapshots, FilterArgs};
use crate::exit::ExitCode;
use crate::output::{size, snapshot_json};
use crate::{print_json, GlobalArgs, CANCEL};

pub const LONG_ABOUT: &str = "\
Compare two snapshots: the entries added (+), removed (-), changed in content
(M), changed in kind (T) and, with --metadata, changed only in mode, owner or
time (U); then the counts, and the bytes of data the second snapshot has that
the first lacks (what backing it up added) and the other way round.

    cairn diff 1a2b3c4d latest";

#[derive(Args)]
pub struct DiffArgs {
    /// The older snapshot: ID, unique ID prefix, or \"latest\"
    #[arg(value_name = "SNAPSHOT1")]
    first: String,

    /// The newer snapshot
    #[arg(value_name = "SNAPSHOT2")]
    second: String,

    /// Also list entries whose mode, owner or time only changed (U)
    #[arg(long)]
    metadata: bool,

    #[command(flatten)]
    filter: FilterArgs,
}

pub fn run(global: &GlobalArgs, args: DiffArgs) -> anyhow::Result<ExitCode> {
    let repo = global.open()?;
    let loaded = load_snapshots(&repo)?;
    let filter = args.filter.filter();
    let a = loaded.resolve(&args.first, &filter)?;
    let b = loaded.resolve(&args.second, &filter)?;
    let index = repo.index()?;
    let d = browse::diff(&repo, &index, a, b, &CANCEL)?;
    let shown: Vec<_> = d
        .changes
        .iter()
        .filter(|c| args.metadata || c.change != Change::Metadata)
        .collect();
    if global.json {
        print_json(&json!({
            "first": snapshot_json(a),
            "second": snapshot_json(b),
            "changes": shown,
            "counts": d.counts,
            "added": d.added,
            "removed": d.removed,
        }))?;
    } else if !global.quiet {
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        writeln!(
            out,
            "comparing snapshot {} ({}) to {} ({}):",
            a.id.short(),
            a.time.local_display(),
            b.id.short(),
            b.time.local_display()
        )?;
        for c in &shown {
            let slash = if c.kind == cairn_core::format::tree::NodeKind::Dir {
                "/"
            } else {
                ""
            };
            writeln!(out, "{}    {}{slash}", c.change.marker(), c.path)?;
        }
        let n = &d.counts;
        writeln!(out)?;
        writeln!(
            out,
            "Files:       {} new, {} removed, {} changed",
            n.files_added, n.files_removed, n.files_changed
        )?;
        writeln!(
            out,
            "Dirs:        {} new, {} removed",
            n.dirs_added, n.dirs_removed
        )?;
        if args.metadata {
            writeln!(out, "Metadata:    {} changed", n.metadata_changed)?;
        }
        writeln!(
            out,
            "Data added:   {} in {} blobs ({} stored)",
            size(d.added.raw),
            d.added.blobs,
            size(d.added.stored)
        )?;
        writeln!(
            out,
            "Data removed: {} in {} blobs ({} stored)",
            size(d.removed.raw),
            d.removed.blobs,
            size(d.removed.stored)
        )?;
        out.flush()?;
    }
    Ok(ExitCode::Success)
}
