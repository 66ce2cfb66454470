//! `cairn stats`: what the repository stores for its snapshots, and what
//! each snapshot added.

use std::io::Write;

use clap::Args;
use serde_json::json;

use cairn_core::backend::ObjectKind;
use cairn_core::ops::browse;

use crate::commands::{load_snapshots, FilterArgs};
use crate::exit::ExitCode;
use crate::output::{size, table};
use crate::{print_json, GlobalArgs, CANCEL};

pub const LONG_ABOUT: &str = "\
What the repository stores for its snapshots (all of them, or those named or
passing the filters):

  restore size    what restoring every one of them writes, added up
  unique data     each blob they use counted once, before compression
  stored          what those blobs take in the repository (compressed,
                  encrypted; deltas and the bases they need)
  dedup ratio     restore size / unique data
  compression     unique data / stored

and per snapshot, oldest first, what it added: the blobs it uses that no
older snapshot counted uses. Packs in the repository (with data no snapshot
uses yet or any more, which prune removes) are shown for comparison.";

#[derive(Args)]
pub struct StatsArgs {
    /// Only these snapshots (ID, unique ID prefix, or \"latest\"; default: all passing the filters)
    #[arg(value_name = "SNAPSHOT")]
    snapshots: Vec<String>,

    #[command(flatten)]
    filter: FilterArgs,
}

pub fn run(global: &GlobalArgs, args: StatsArgs) -> anyhow::Result<ExitCode> {
    let repo = global.open()?;
    let loaded = load_snapshots(&repo)?;
    let filter = args.filter.filter();
    let chosen = loaded.select(&args.snapshots, &filter)?;
    let index = repo.index()?;
    let stats = browse::stats(&repo, &index, &chosen, &CANCEL)?;
    let packs = repo.backend().list(ObjectKind::Pack)?;
    let pack_bytes: u64 = packs.iter().map(|p| p.size).sum();
    let stored = stats.unique.stored + stats.delta_bases_stored;

    if global.json {
        print_json(&json!({
            "snapshots": stats.snapshots,
            "restore_size": stats.restore_size,
            "unique": stats.unique,
            "delta_bases_stored": stats.delta_bases_stored,
            "stored": stored,
            "dedup_ratio": stats.dedup_ratio(),
            "compression_ratio": stats.compression_ratio(),
            "packs": packs.len(),
            "pack_bytes": pack_bytes,
            "per_snapshot": stats.per_snapshot,
        }))?;
    } else if !global.quiet {
        let rows: Vec<Vec<String>> = stats
            .per_snapshot
            .iter()
            .zip(&chosen)
            .map(|(p, s)| {
                vec![
                    p.id.short(),
                    s.time.local_display(),
                    s.hostname.clone(),
                    s.paths.join(","),
                    size(p.restore_size),
                    size(p.added.raw),
                    size(p.added.stored),
                ]
            })
            .collect();
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        write!(
            out,
            "{}",
            table(
                &["ID", "Time", "Host", "Paths", "Size", "Added", "Stored"],
                &rows
            )
        )?;
        writeln!(out)?;
        writeln!(out, "Snapshots:     {}", stats.snapshots)?;
        writeln!(out, "Restore size:  {}", size(stats.restore_size))?;
        writeln!(
            out,
            "Unique data:   {} in {} blobs",
            size(stats.unique.raw),
            stats.unique.blobs
        )?;
        writeln!(out, "Stored:        {}", size(stored))?;
        writeln!(out, "Dedup ratio:   {:.2}x", stats.dedup_ratio())?;
        writeln!(out, "Compression:   {:.2}x", stats.compression_ratio())?;
        writeln!(
            out,
            "Packs:         {} ({}; prune removes what no snapshot uses)",
            packs.len(),
            size(pack_bytes)
        )?;
        if stats.unique.missing > 0 {
            writeln!(
                out,
                "Missing:       {} blobs the index does not have (run cairn check)",
                stats.unique.missing
            )?;
        }
        out.flush()?;
    }
    Ok(if stats.unique.missing > 0 {
        ExitCode::Damaged
    } else {
        ExitCode::Success
    })
}
