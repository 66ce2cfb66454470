//! `cairn find`: which snapshots hold entries of a name.

use std::io::Write;

use clap::Args;
use serde_json::json;

use cairn_core::ops::browse::{self, Pattern};

use crate::commands::ls::long_line;
use crate::commands::{load_snapshots, FilterArgs};
use crate::exit::ExitCode;
use crate::output::{node_json, snapshot_json};
use crate::{print_json, GlobalArgs, CANCEL};

#[derive(Args)]
pub struct FindArgs {
    /// Glob patterns (`*.sql`, `shop-*`, `/etc/**/*.conf`): without a `/`
    /// matched against names, with one against whole paths
    #[arg(value_name = "PATTERN", required = true)]
    patterns: Vec<String>,

    /// Look only in this snapshot (repeatable; default: every snapshot
    /// passing the filters)
    #[arg(short, long = "snapshot", value_name = "SNAPSHOT")]
    snapshots: Vec<String>,

    /// Match regardless of case
    #[arg(short = 'i', long)]
    ignore_case: bool,

    /// Long listing: type and mode, owner, size, modification time
    #[arg(short, long)]
    long: bool,

    #[command(flatten)]
    filter: FilterArgs,
}

pub fn run(global: &GlobalArgs, args: FindArgs) -> anyhow::Result<ExitCode> {
    let pattern = Pattern::new(&args.patterns, args.ignore_case)?;
    let repo = global.open()?;
    let loaded = load_snapshots(&repo)?;
    let filter = args.filter.filter();
    let chosen = loaded.select(&args.snapshots, &filter)?;
    let index = repo.index()?;
    let mut found = 0usize;
    let mut results = Vec::new();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for s in chosen {
        let hits = browse::find(&repo, &index, s, &pattern, &CANCEL)?;
        if hits.is_empty() {
            continue;
        }
        found += hits.len();
        if global.json {
            results.push(json!({
                "snapshot": snapshot_json(s),
                "matches": hits.iter().map(node_json).collect::<Vec<_>>(),
            }));
        } else if !global.quiet {
            writeln!(
                out,
                "Found in snapshot {} of {} ({}):",
                s.id.short(),
                s.time.local_display(),
                s.hostname
            )?;
            for e in &hits {
                if args.long {
                    writeln!(out, "  {}", long_line(e))?;
                } else {
                    writeln!(out, "  {}", e.path)?;
                }
            }
        }
    }
    if global.json {
        drop(out);
        print_json(&json!({ "results": results, "matches": found }))?;
    } else {
        if !global.quiet && found == 0 {
            writeln!(out, "no entry matches")?;
        }
        out.flush()?;
    }
    // Like restic (and unlike grep), finding nothing is not an error.
    Ok(ExitCode::Success)
}
