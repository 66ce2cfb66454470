//! `cairn forget`: remove snapshots by retention policy or by ID.

use std::io::Write;

use clap::Args;
use serde_json::{json, Value};

use cairn_core::format::snapshot::Snapshot;
use cairn_core::ops::forget::{self, ForgetOptions, ForgetPlan, GroupBy, RetentionPolicy};

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

    #[command(flatten)]
    policy: RetentionPolicy,

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

    #[command(flatten)]
    filter: FilterArgs,

    #[command(flatten, next_help_heading = "Prune options (with --prune)")]
    prune_options: cairn_core::ops::prune::PruneOptions,
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
    opts.policy = args.policy.clone();
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::ForgetArgs;

    #[derive(Parser)]
    struct Forget {
        #[command(flatten)]
        args: ForgetArgs,
    }

    /// The policy and prune options come from cairn-core's derives: each
    /// option lands in its field, `--keep-tag` lists stay apart.
    #[test]
    fn retention_and_prune_options_parse_into_the_core_structs() {
        let argv = [
            "forget",
            "-l",
            "3",
            "--keep-monthly",
            "-1",
            "--keep-within",
            "1y2m",
            "--keep-tag",
            "a, b",
            "--keep-tag",
            "c",
            "--keep-drilled",
            "--prune",
            "--grace",
            "30m",
            "--max-repack-size",
            "2G",
            "--host",
            "db1",
        ];
        let parsed = Forget::try_parse_from(argv).map_err(|e| e.to_string());
        let args = parsed.expect("parses").args;
        let p = &args.policy;
        assert_eq!((p.last, p.monthly, p.daily), (3, -1, 0));
        assert_eq!(p.within.to_string(), "1y2m");
        assert_eq!(p.within_daily.to_string(), "");
        assert_eq!(p.tags, vec![vec!["a", "b"], vec!["c"]]);
        assert!(p.keep_drilled && args.prune);
        assert_eq!(args.prune_options.grace_seconds, Some(1800));
        assert_eq!(args.prune_options.max_repack_size, Some(2 << 30));
        assert_eq!(args.filter.hosts, vec!["db1"]);
        let bad = Forget::try_parse_from(["forget", "--keep-within", "7x"]);
        assert!(bad.is_err());
    }
}
