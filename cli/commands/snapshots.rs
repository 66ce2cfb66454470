//! `cairn snapshots`.

use std::io::Write;

use clap::Args;

use crate::commands::{load_drills, load_snapshots, FilterArgs};
use crate::exit::ExitCode;
use crate::output::{drill_cell, drill_json, size, snapshot_json, table};
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
    let drills = load_drills(&repo)?;
    // The newest drill of a snapshot, passed or not.
    let drill_of = |id| {
        drills
            .good
            .iter()
            .filter(|d| d.snapshot == id)
            .max_by(|a, b| a.time.cmp(&b.time))
    };
    if global.json {
        let list: Vec<_> = shown
            .iter()
            .map(|s| {
                let mut v = snapshot_json(s);
                if let (serde_json::Value::Object(map), Some(d)) = (&mut v, drill_of(s.id)) {
                    map.insert("drill".into(), drill_json(d));
                }
                v
            })
            .collect();
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
                if !drills.good.is_empty() {
                    row.push(drill_cell(drill_of(s.id)));
                }
                row
            })
            .collect();
        let mut header = vec!["ID", "Time", "Host", "Tags", "Paths", "Size"];
        if dumps {
            header.push("Dump");
        }
        if !drills.good.is_empty() {
            header.push("Drill");
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
