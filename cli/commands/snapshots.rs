//! `cairn snapshots`.

use std::io::Write;

use clap::Args;

use crate::commands::{load_snapshots, FilterArgs};
use crate::exit::ExitCode;
use crate::output::{size, snapshot_json, table};
use crate::{print_json, GlobalArgs};

#[derive(Args)]
pub struct SnapshotsArgs {
    #[command(flatten)]
    filter: FilterArgs,
}

pub fn run(global: &GlobalArgs, args: SnapshotsArgs) -> anyhow::Result<ExitCode> {
    let repo = global.open()?;
    let loaded = load_snapshots(&repo)?;
    let (all, unreadable) = (&loaded.good, loaded.damaged.len());
    let filter = args.filter.filter();
    let shown: Vec<_> = all.iter().filter(|s| filter.matches(s)).collect();
    if global.json {
        let list: Vec<_> = shown.iter().map(|s| snapshot_json(s)).collect();
        print_json(&list)?;
    } else if !global.quiet {
        // A "Dump" column when some snapshot is a recognised dump.
        let dumps = shown.iter().any(|s| s.source.dump.is_some());
        let rows: Vec<Vec<String>> = shown
            .iter()
            .map(|s| {
                let mut row = vec![
                    s.id.short(),
                    s.time.local_display(),
                    s.hostname.clone(),
                    s.tags.join(","),
                    s.paths.join(","),
                    size(s.summary.total_bytes_processed),
                ];
                if dumps {
                    row.push(
                        s.source
                            .dump
                            .as_ref()
                            .map(|d| d.describe())
                            .unwrap_or_default(),
                    );
                }
                row
            })
            .collect();
        let mut header = vec!["ID", "Time", "Host", "Tags", "Paths", "Size"];
        if dumps {
            header.push("Dump");
        }
        let mut out = std::io::stdout().lock();
        write!(out, "{}", table(&header, &rows))?;
        writeln!(out, "{} snapshots", shown.len())?;
    }
    Ok(if unreadable > 0 {
        ExitCode::Damaged
    } else {
        ExitCode::Success
    })
}
