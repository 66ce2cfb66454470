//! `cairn forget`: remove snapshots by retention policy or by ID.

use std::io::Write;

use clap::Args;
use serde_json::{json, Value};

use cairn_core::format::snapshot::Snapshot;
use cairn_core::ops::forget::{
    self, ForgetOptions, ForgetPlan, GroupBy, KeepDuration, RetentionPolicy,
};

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
    let mut opts = ForgetOptions::default();
    opts.snapshots = args.snapshots.clone();
    opts.policy = args.policy();
    opts.filter = args.filter.filter();
    opts.group_by = args.group_by;
    opts.allow_remove_all = args.unsafe_allow_remove_all;
    opts.validate()?;
    let repo = global.open()?;
    let list = load_snapshots(&repo)?;
    let plan = repo.forget_plan(&list, &opts, jiff::Timestamp::now())?;
    if args.snapshots.is_empty() {
        global.say(format!("Applying policy: {}", opts.policy.describe()));
        if !global.json && !global.quiet {
            print_groups(&plan, args.group_by)?;
        }
    }
    if args.dry_run {
        global.say(format!(
            "\nwould remove {} snapshots (dry run: nothing changed)",
            plan.remove.len()
        ));
    } else {
        let stats = repo.forget(&plan)?;
        for name in &plan.remove_damaged {
            global.say(format!(
                "removed damaged snapshot {}",
                &name[..8.min(name.len())]
            ));
        }
        if !args.snapshots.is_empty() {
            for s in &plan.remove {
                global.say(format!("removed snapshot {}", s.id.short()));
            }
        } else {
            global.say(format!("\nremoved {} snapshots", stats.removed));
        }
    }
    // Archived WAL that no kept base backup needs goes with them.
    if let Some(wal) = &plan.wal {
        if let (Some(from), false) = (&wal.keep_from, wal.expired.is_empty()) {
            if args.dry_run {
                global.say(format!(
                    "would remove {} archived WAL files older than {from}, the first one the oldest kept base backup needs",
                    wal.expired.len()
                ));
            } else {
                global.say(format!(
                    "removed {} archived WAL files older than {from}, the first one the oldest kept base backup needs; {} kept",
                    wal.expired.len(),
                    wal.kept
                ));
            }
        }
    }
    if global.json {
        if args.snapshots.is_empty() {
            print_json(&groups_json(&plan, args.group_by))?;
        } else {
            let ids: Vec<String> = plan.remove.iter().map(|s| s.id.to_hex()).collect();
            print_json(&json!({
                "removed": if args.dry_run { Vec::new() } else { ids.clone() },
                "would_remove": ids,
            }))?;
        }
    }
    if args.prune && !args.dry_run {
        global.say("");
        return crate::commands::prune::run_on(global, &repo, &args.prune_options, false);
    }
    Ok(ExitCode::Success)
}

/// Each group's kept and removed snapshots, as tables.
fn print_groups(plan: &ForgetPlan, by: GroupBy) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let header = ["ID", "Time", "Host", "Tags", "Reasons", "Paths"];
    for (key, result) in &plan.groups {
        writeln!(out, "\nsnapshots for ({}):", group_label(key, by))?;
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
    Ok(())
}

/// `--json` of a policy run: one object per group.
fn groups_json(plan: &ForgetPlan, by: GroupBy) -> Vec<Value> {
    plan.groups
        .iter()
        .map(|(key, result)| {
            let reasons: Vec<Value> = result
                .reasons
                .iter()
                .map(|r| json!({"snapshot": snapshot_json(&r.snapshot), "matches": r.matches, "counters": r.counters}))
                .collect();
            json!({
                "tags": if by.tags { Some(&key.tags) } else { None },
                "host": key.hostname,
                "paths": if by.paths { Some(&key.paths) } else { None },
                "keep": result.keep.iter().map(snapshot_json).collect::<Vec<_>>(),
                "remove": if result.remove.is_empty() { None } else { Some(result.remove.iter().map(snapshot_json).collect::<Vec<_>>()) },
                "reasons": reasons,
            })
        })
        .collect()
}
