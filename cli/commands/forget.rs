//! `cairn forget`: remove snapshots by retention policy or by ID.

use std::io::Write;

use clap::Args;
use serde_json::{json, Value};

use cairn_core::backend::ObjectKind;
use cairn_core::format::snapshot::Snapshot;
use cairn_core::ops::forget::{self, GroupBy, KeepDuration, RetentionPolicy};
use cairn_core::Error;

use crate::commands::{load_snapshots, FilterArgs};
use crate::exit::ExitCode;
use crate::output::{group_label, snapshot_json, table};
use crate::{print_json, GlobalArgs};

#[derive(Args)]
#[command(after_help = "\
Rules and their corner cases are restic's: snapshots are taken newest first; each keep-N rule
keeps the newest snapshot of each of the N newest hours/days/ISO weeks/months/years that have
snapshots (and, while it still has count left, the oldest snapshot too); -1 means no limit;
--keep-within* durations count back from the newest snapshot. Each group (--group-by) gets the
policy on its own. Forgetting removes snapshots only; `cairn prune` removes their data.")]
pub struct ForgetArgs {
    /// Snapshots to forget by ID (or prefix), instead of a policy
    #[arg(value_name = "SNAPSHOT")]
    snapshots: Vec<String>,

    /// Keep the N newest snapshots
    #[arg(
        short = 'l',
        long,
        value_name = "N",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    keep_last: i64,
    /// Keep the newest snapshot of each of the N newest hours
    #[arg(
        short = 'H',
        long,
        value_name = "N",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    keep_hourly: i64,
    /// Keep the newest snapshot of each of the N newest days
    #[arg(
        short = 'd',
        long,
        value_name = "N",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    keep_daily: i64,
    /// Keep the newest snapshot of each of the N newest ISO weeks
    #[arg(
        short = 'w',
        long,
        value_name = "N",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    keep_weekly: i64,
    /// Keep the newest snapshot of each of the N newest months
    #[arg(
        short = 'm',
        long,
        value_name = "N",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    keep_monthly: i64,
    /// Keep the newest snapshot of each of the N newest years
    #[arg(
        short = 'y',
        long,
        value_name = "N",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    keep_yearly: i64,
    /// Keep every snapshot within this duration of the newest (e.g. 7d, 2y5m, 1y2m3d4h)
    #[arg(long, value_name = "DURATION")]
    keep_within: Option<KeepDuration>,
    /// Keep hourly snapshots within this duration of the newest
    #[arg(long, value_name = "DURATION")]
    keep_within_hourly: Option<KeepDuration>,
    /// Keep daily snapshots within this duration of the newest
    #[arg(long, value_name = "DURATION")]
    keep_within_daily: Option<KeepDuration>,
    /// Keep weekly snapshots within this duration of the newest
    #[arg(long, value_name = "DURATION")]
    keep_within_weekly: Option<KeepDuration>,
    /// Keep monthly snapshots within this duration of the newest
    #[arg(long, value_name = "DURATION")]
    keep_within_monthly: Option<KeepDuration>,
    /// Keep yearly snapshots within this duration of the newest
    #[arg(long, value_name = "DURATION")]
    keep_within_yearly: Option<KeepDuration>,
    /// Keep snapshots with all of these comma-separated tags (repeatable: any of the lists)
    #[arg(long, value_name = "TAG[,TAG...]")]
    keep_tag: Vec<String>,
    /// Keep the newest snapshot of each group that passed a restore drill (cairn drill)
    #[arg(long)]
    keep_drilled: bool,

    /// Apply the policy to each group of snapshots with the same host, paths and/or tags
    #[arg(
        short = 'g',
        long,
        value_name = "host,paths,tags",
        default_value = "host,paths"
    )]
    group_by: GroupBy,

    /// Show what would be removed and why the rest is kept; change nothing
    #[arg(short = 'n', long)]
    dry_run: bool,

    /// Allow a policy that keeps nothing, removing every selected snapshot
    #[arg(long)]
    unsafe_allow_remove_all: bool,

    /// Run prune afterwards (with the prune options below)
    #[arg(long)]
    prune: bool,

    #[command(flatten, next_help_heading = "Prune options (with --prune)")]
    prune_options: crate::commands::prune::PruneOptionArgs,

    #[command(flatten)]
    filter: FilterArgs,
}

impl ForgetArgs {
    fn policy(&self) -> RetentionPolicy {
        RetentionPolicy {
            last: self.keep_last,
            hourly: self.keep_hourly,
            daily: self.keep_daily,
            weekly: self.keep_weekly,
            monthly: self.keep_monthly,
            yearly: self.keep_yearly,
            within: self.keep_within.unwrap_or_default(),
            within_hourly: self.keep_within_hourly.unwrap_or_default(),
            within_daily: self.keep_within_daily.unwrap_or_default(),
            within_weekly: self.keep_within_weekly.unwrap_or_default(),
            within_monthly: self.keep_within_monthly.unwrap_or_default(),
            within_yearly: self.keep_within_yearly.unwrap_or_default(),
            tags: self
                .keep_tag
                .iter()
                .map(|t| t.split(',').map(|s| s.trim().to_string()).collect())
                .collect(),
            keep_drilled: self.keep_drilled,
            drilled: Vec::new(),
        }
    }
}

fn rows(list: &[Snapshot], reasons: Option<&[forget::KeepReason]>) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for (i, s) in list.iter().enumerate() {
        let why = reasons.map(|r| r[i].matches.clone()).unwrap_or_default();
        let lines = why.len().max(1);
        for line in 0..lines {
            let first = line == 0;
            rows.push(vec![
                if first { s.id.short() } else { String::new() },
                if first {
                    s.time.local_display()
                } else {
                    String::new()
                },
                if first {
                    s.hostname.clone()
                } else {
                    String::new()
                },
                if first {
                    s.tags.join(",")
                } else {
                    String::new()
                },
                why.get(line).cloned().unwrap_or_default(),
                if first {
                    s.paths.join(",")
                } else {
                    String::new()
                },
            ]);
        }
    }
    rows
}

pub fn run(global: &GlobalArgs, args: ForgetArgs) -> anyhow::Result<ExitCode> {
    let mut policy = args.policy();
    policy.validate()?;
    if !args.snapshots.is_empty() && !policy.is_empty() {
        anyhow::bail!(Error::invalid(
            "give either snapshot IDs or --keep-* options, not both"
        ));
    }
    if args.snapshots.is_empty() && policy.is_empty() && !args.unsafe_allow_remove_all {
        anyhow::bail!(Error::invalid(
            "no policy given: nothing would be kept. Use --keep-* options, give snapshot IDs, \
             or --unsafe-allow-remove-all to forget every selected snapshot"
        ));
    }
    let repo = global.open()?;
    let loaded = load_snapshots(&repo)?;
    let all = &loaded.good;
    if policy.keep_drilled {
        // An unreadable drill record might be the one that protects a
        // snapshot: stop rather than guess.
        let drills = cairn_core::repo::drill_record::load(&repo)?;
        if let Some((name, e)) = drills.damaged.first() {
            anyhow::bail!(Error::corrupt(format!(
                "drill record {name} cannot be read ({e}); --keep-drilled needs every drill record"
            )));
        }
        policy.drilled = drills
            .good
            .iter()
            .filter(|d| d.ok)
            .map(|d| d.snapshot)
            .collect();
    }

    let mut to_remove: Vec<Snapshot> = Vec::new();
    let mut damaged_by_name: Vec<String> = Vec::new();
    let mut json_groups: Vec<Value> = Vec::new();
    if !args.snapshots.is_empty() {
        let none = Default::default();
        for spec in &args.snapshots {
            // A damaged snapshot can be forgotten by its full name.
            if let Some(name) = loaded.damaged.iter().find(|n| *n == spec) {
                damaged_by_name.push(name.clone());
                continue;
            }
            let s = loaded.resolve(spec, &none)?;
            if !to_remove.iter().any(|r| r.id == s.id) {
                to_remove.push(s.clone());
            }
        }
    } else {
        if let Some(name) = loaded.damaged.first() {
            anyhow::bail!(Error::corrupt(format!(
                "snapshot {} cannot be read; a policy over an incomplete list could remove the \
                 wrong snapshots. Forget it by its full ID first ({name})",
                &name[..8.min(name.len())]
            )));
        }
        let filter = args.filter.filter();
        let selected: Vec<Snapshot> = all.iter().filter(|s| filter.matches(s)).cloned().collect();
        global.say(format!("Applying policy: {}", policy.describe()));
        let now = jiff::Timestamp::now();
        for (key, group) in forget::group(&selected, args.group_by) {
            let result = forget::apply_policy(&group, &policy, now);
            if global.json {
                let reasons: Vec<Value> = result
                    .reasons
                    .iter()
                    .map(|r| json!({"snapshot": snapshot_json(&r.snapshot), "matches": r.matches, "counters": r.counters}))
                    .collect();
                json_groups.push(json!({
                    "tags": if args.group_by.tags { Some(&key.tags) } else { None },
                    "host": key.hostname,
                    "paths": if args.group_by.paths { Some(&key.paths) } else { None },
                    "keep": result.keep.iter().map(snapshot_json).collect::<Vec<_>>(),
                    "remove": if result.remove.is_empty() { None } else { Some(result.remove.iter().map(snapshot_json).collect::<Vec<_>>()) },
                    "reasons": reasons,
                }));
            } else if !global.quiet {
                let mut out = std::io::stdout().lock();
                writeln!(
                    out,
                    "\nsnapshots for ({}):",
                    group_label(&key, args.group_by)
                )?;
                let header = ["ID", "Time", "Host", "Tags", "Reasons", "Paths"];
                writeln!(out, "keep {} snapshots:", result.keep.len())?;
                write!(
                    out,
                    "{}",
                    table(&header, &rows(&result.keep, Some(&result.reasons)))
                )?;
                if !result.remove.is_empty() {
                    writeln!(out, "remove {} snapshots:", result.remove.len())?;
                    write!(out, "{}", table(&header, &rows(&result.remove, None)))?;
                }
            }
            to_remove.extend(result.remove);
        }
    }

    let mut removed = 0usize;
    if args.dry_run {
        global.say(format!(
            "\nwould remove {} snapshots (dry run: nothing changed)",
            to_remove.len()
        ));
    } else {
        for s in &to_remove {
            repo.backend()
                .delete(ObjectKind::Snapshot, &s.id.to_hex())
                .map_err(|e| e.context(format!("forgetting snapshot {}", s.id.short())))?;
            removed += 1;
        }
        for name in &damaged_by_name {
            repo.backend()
                .delete(ObjectKind::Snapshot, name)
                .map_err(|e| e.context(format!("forgetting damaged snapshot {name}")))?;
            global.say(format!("removed damaged snapshot {}", &name[..8]));
        }
        if !args.snapshots.is_empty() {
            for s in &to_remove {
                global.say(format!("removed snapshot {}", s.id.short()));
            }
        } else {
            global.say(format!("\nremoved {removed} snapshots"));
        }
    }
    // Archived WAL that no kept base backup needs goes with them.
    if all.iter().any(cairn_core::pg::pitr::is_base_backup) {
        let kept: Vec<Snapshot> = all
            .iter()
            .filter(|s| !to_remove.iter().any(|r| r.id == s.id))
            .cloned()
            .collect();
        let records = cairn_core::repo::wal_record::load(&repo)?;
        let plan = cairn_core::pg::wal::expiry(records.good, &kept);
        if let (Some(from), false) = (&plan.keep_from, plan.expired.is_empty()) {
            if args.dry_run {
                global.say(format!(
                    "would remove {} archived WAL files older than {from}, the first one the oldest kept base backup needs",
                    plan.expired.len()
                ));
            } else {
                let n = cairn_core::pg::wal::expire(&repo, &plan)?;
                global.say(format!(
                    "removed {n} archived WAL files older than {from}, the first one the oldest kept base backup needs; {} kept",
                    plan.kept
                ));
            }
        }
    }
    if global.json {
        if args.snapshots.is_empty() {
            print_json(&json_groups)?;
        } else {
            print_json(&json!({
                "removed": if args.dry_run { Vec::new() } else { to_remove.iter().map(|s| s.id.to_hex()).collect::<Vec<_>>() },
                "would_remove": to_remove.iter().map(|s| s.id.to_hex()).collect::<Vec<_>>(),
            }))?;
        }
    }
    if args.prune && !args.dry_run {
        global.say("");
        return crate::commands::prune::run_on(global, &repo, &args.prune_options, false);
    }
    Ok(ExitCode::Success)
}
