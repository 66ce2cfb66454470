//! `cairn snapshots`.

use std::io::Write;

use clap::Args;

use cairn_core::format::snapshot::Snapshot;
use cairn_core::ops::forget::{self, GroupBy, GroupKey};
use cairn_core::repo::drill_record::DrillRecord;

use crate::commands::{load_drills, load_snapshots, FilterArgs};
use crate::exit::ExitCode;
use crate::output::{drill_cell, drill_json, group_label, size, snapshot_json, table};
use crate::{print_json, GlobalArgs};

#[derive(Args)]
pub struct SnapshotsArgs {
    #[command(flatten)]
    filter: FilterArgs,

    /// Only the newest N snapshots of each group (host and paths, or
    /// --group-by)
    #[arg(long, value_name = "N")]
    latest: Option<usize>,

    /// List the snapshots in groups with the same host, paths and/or tags
    /// (restic's --group-by); --json then gives each group's key
    #[arg(short = 'g', long, value_name = "host,paths,tags")]
    group_by: Option<GroupBy>,
}

/// The snapshots of each group, newest `latest` only when given, oldest
/// first.
fn grouped(
    shown: &[Snapshot],
    by: GroupBy,
    latest: Option<usize>,
) -> Vec<(GroupKey, Vec<Snapshot>)> {
    let mut groups = forget::group(shown, by);
    for (_, list) in &mut groups {
        list.sort_by(|a, b| a.time.cmp(&b.time).then(a.id.cmp(&b.id)));
        if let Some(n) = latest {
            let cut = list.len().saturating_sub(n);
            list.drain(..cut);
        }
    }
    groups
}

pub fn run(global: &GlobalArgs, args: SnapshotsArgs) -> anyhow::Result<ExitCode> {
    let repo = global.open()?;
    let loaded = load_snapshots(&repo)?;
    let (all, unreadable) = (&loaded.good, loaded.damaged.len());
    let filter = args.filter.filter();
    let matching: Vec<Snapshot> = all.iter().filter(|s| filter.matches(s)).cloned().collect();
    let drills = load_drills(&repo)?;
    let show = Shown {
        drills: &drills.good,
    };
    let json_of = |s: &Snapshot| show.json(s);
    let table_of = |list: &[Snapshot]| show.table(list);
    let by = args.group_by.unwrap_or_default();
    let groups = grouped(&matching, by, args.latest);
    let mut out = std::io::stdout().lock();
    if args.group_by.is_some() {
        if global.json {
            let list: Vec<_> = groups
                .iter()
                .map(|(key, list)| {
                    serde_json::json!({
                        "group_key": {
                            "hostname": if by.host { Some(&key.hostname) } else { None },
                            "paths": if by.paths { Some(&key.paths) } else { None },
                            "tags": if by.tags { Some(&key.tags) } else { None },
                        },
                        "snapshots": list.iter().map(json_of).collect::<Vec<_>>(),
                    })
                })
                .collect();
            print_json(&list)?;
        } else if !global.quiet {
            for (key, list) in &groups {
                writeln!(out, "snapshots for ({}):", group_label(key, by))?;
                write!(out, "{}", table_of(list))?;
                writeln!(out, "{} snapshots\n", list.len())?;
            }
        }
    } else {
        let mut shown: Vec<Snapshot> = groups.into_iter().flat_map(|(_, l)| l).collect();
        shown.sort_by(|a, b| a.time.cmp(&b.time).then(a.id.cmp(&b.id)));
        if global.json {
            print_json(&shown.iter().map(json_of).collect::<Vec<_>>())?;
        } else if !global.quiet {
            write!(out, "{}", table_of(&shown))?;
            writeln!(out, "{} snapshots", shown.len())?;
        }
    }
    Ok(if unreadable > 0 {
        ExitCode::Damaged
    } else {
        ExitCode::Success
    })
}

/// How snapshots are shown, with their drills.
struct Shown<'a> {
    drills: &'a [DrillRecord],
}

impl Shown<'_> {
    /// The newest drill of snapshot `id`, passed or not.
    fn drill_of(&self, id: cairn_core::Id) -> Option<&DrillRecord> {
        self.drills
            .iter()
            .filter(|d| d.snapshot == id)
            .max_by(|a, b| a.time.cmp(&b.time))
    }

    fn json(&self, s: &Snapshot) -> serde_json::Value {
        let mut v = snapshot_json(s);
        if let (serde_json::Value::Object(map), Some(d)) = (&mut v, self.drill_of(s.id)) {
            map.insert("drill".into(), drill_json(d));
        }
        v
    }

    /// The table of `shown`: a "Dump" column when some snapshot is a
    /// recognised dump, a "Drill" one when the repository has drills.
    fn table(&self, shown: &[Snapshot]) -> String {
        let dumps = shown.iter().any(|s| s.source.dump.is_some());
        let drills = !self.drills.is_empty();
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
                if drills {
                    row.push(drill_cell(self.drill_of(s.id)));
                }
                row
            })
            .collect();
        let mut header = vec!["ID", "Time", "Host", "Tags", "Paths", "Size"];
        if dumps {
            header.push("Dump");
        }
        if drills {
            header.push("Drill");
        }
        table(&header, &rows)
    }
}
