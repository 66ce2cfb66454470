//! `cairn status`: per series of snapshots (host, paths, tags), the newest
//! one and its age; with `--max-age`, a distinct exit code when a series
//! is older than allowed (the recovery point objective was missed), for
//! cron and monitoring.

use std::collections::BTreeMap;
use std::io::Write;

use clap::Args;
use serde_json::json;

use cairn_core::snapshot::Snapshot;
use cairn_core::time::SnapshotTime;

use crate::commands::{load_snapshots, FilterArgs};
use crate::exit::ExitCode;
use crate::output::{size, table};
use crate::{print_json, GlobalArgs};

#[derive(Args)]
pub struct StatusArgs {
    /// Exit 14 when a series' newest snapshot is older than this (e.g. 26h), or there is none
    #[arg(
        long,
        value_name = "DURATION",
        value_parser = crate::commands::prune::parse_duration_seconds,
        long_help = "Exit 14 when the newest snapshot of any series (host, paths and tags) is \
                     older than DURATION (such as 26h, 168h or 1h30m): the recovery point \
                     objective was missed. With no snapshot at all (after the filters), it \
                     exits 14 too. Ages are measured from the snapshot's recorded time."
    )]
    max_age: Option<u64>,

    #[command(flatten)]
    filter: FilterArgs,
}

/// One series: its key and its newest snapshot.
struct Series<'a> {
    host: &'a str,
    paths: Vec<String>,
    tags: Vec<String>,
    newest: &'a Snapshot,
    count: usize,
}

/// `3d 4h`, `5h 12m`, `12m`, `40s`.
fn age_text(seconds: i64) -> String {
    let s = seconds.max(0);
    let (d, h, m) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

pub fn run(global: &GlobalArgs, args: StatusArgs) -> anyhow::Result<ExitCode> {
    let repo = global.open()?;
    let loaded = load_snapshots(&repo)?;
    let filter = args.filter.filter();
    let now = SnapshotTime::now().timestamp().as_second();

    let mut groups: BTreeMap<(String, Vec<String>, Vec<String>), Series> = BTreeMap::new();
    for s in loaded.good.iter().filter(|s| filter.matches(s)) {
        let mut tags = s.tags.clone();
        tags.sort();
        let key = (s.hostname.clone(), s.sorted_paths(), tags.clone());
        let entry = groups.entry(key).or_insert_with(|| Series {
            host: &s.hostname,
            paths: s.sorted_paths(),
            tags,
            newest: s,
            count: 0,
        });
        entry.count += 1;
        if s.time > entry.newest.time {
            entry.newest = s;
        }
    }
    let age_of = |s: &Series| now - s.newest.time.timestamp().as_second();
    let stale = |s: &Series| args.max_age.is_some_and(|max| age_of(s) > max as i64);
    let any_stale = groups.values().any(stale) || (args.max_age.is_some() && groups.is_empty());

    if global.json {
        let list: Vec<_> = groups
            .values()
            .map(|s| {
                json!({
                    "host": s.host,
                    "paths": s.paths,
                    "tags": s.tags,
                    "snapshots": s.count,
                    "latest_id": s.newest.id.to_hex(),
                    "latest_time": s.newest.time.to_rfc3339(),
                    "age_seconds": age_of(s),
                    "latest_size": s.newest.summary.total_bytes_processed,
                    "stale": stale(s),
                })
            })
            .collect();
        print_json(&json!({
            "max_age_seconds": args.max_age,
            "series": list,
            "ok": !any_stale,
        }))?;
    } else if !global.quiet || any_stale {
        let rows: Vec<Vec<String>> = groups
            .values()
            .map(|s| {
                let mut row = vec![
                    s.host.to_string(),
                    s.paths.join(","),
                    s.tags.join(","),
                    s.count.to_string(),
                    s.newest.id.short(),
                    s.newest.time.local_display(),
                    age_text(age_of(s)),
                    size(s.newest.summary.total_bytes_processed),
                ];
                if args.max_age.is_some() {
                    row.push(if stale(s) { "STALE" } else { "ok" }.to_string());
                }
                row
            })
            .collect();
        let mut header = vec![
            "Host",
            "Paths",
            "Tags",
            "Snapshots",
            "Latest",
            "Time",
            "Age",
            "Size",
        ];
        if args.max_age.is_some() {
            header.push("Status");
        }
        // Quiet: only what is wrong, on stderr, one line each.
        if global.quiet {
            let mut err = std::io::stderr().lock();
            for s in groups.values().filter(|s| stale(s)) {
                writeln!(
                    err,
                    "cairn: stale: {} {} [{}]: newest snapshot {} is {} old",
                    s.host,
                    s.paths.join(","),
                    s.tags.join(","),
                    s.newest.id.short(),
                    age_text(age_of(s))
                )?;
            }
            if groups.is_empty() {
                writeln!(err, "cairn: stale: no snapshot at all")?;
            }
        } else {
            let mut out = std::io::stdout().lock();
            write!(out, "{}", table(&header, &rows))?;
            match (groups.len(), args.max_age) {
                (0, _) => writeln!(out, "no snapshots")?,
                (n, Some(max)) => writeln!(
                    out,
                    "{n} series, {} older than {}",
                    groups.values().filter(|s| stale(s)).count(),
                    age_text(max as i64)
                )?,
                (n, None) => writeln!(out, "{n} series")?,
            }
        }
    }
    Ok(if any_stale {
        ExitCode::Stale
    } else if !loaded.damaged.is_empty() {
        ExitCode::Damaged
    } else {
        ExitCode::Success
    })
}
