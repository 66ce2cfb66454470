//! `cairn prune`: remove data no snapshot needs.

use std::io::Write;

use clap::Args;
use serde_json::json;

use cairn_core::ops::prune::{MaxUnused, PackAction, PruneOptions, PrunePlan};
use cairn_core::repo::repository::Repository;
use cairn_core::Error;

use crate::exit::ExitCode;
use crate::output::size;
use crate::{print_json, GlobalArgs, CANCEL};

#[derive(Args, Clone)]
#[command(after_help = "\
Prune is safe while backups run, here or on other machines: packs that no snapshot uses are first
marked obsolete and only deleted by a later prune once the repository's grace period (default
24h, `init --prune-grace`) has passed; a backup that deduplicated against data marked obsolete for
longer than that refuses to commit (exit 11). Space is therefore freed one grace period after
forget. `--grace 0` deletes at once: only when no backup can be running.")]
pub struct PruneArgs {
    #[command(flatten)]
    pub options: PruneOptions,

    /// Print the plan (packs to delete, repack, mark; bytes freed) and change nothing
    #[arg(short = 'n', long)]
    pub dry_run: bool,
}

pub fn parse_size(s: &str) -> Result<u64, String> {
    cairn_core::units::parse_size(s).map_err(|e| e.to_string())
}

/// `0`, `30s`, `15m`, `24h`, `2d`, `1h30m` ([`cairn_core::units::parse_duration`]).
pub fn parse_duration_seconds(s: &str) -> Result<u64, String> {
    cairn_core::units::parse_duration(s).map_err(|e| e.to_string())
}

fn human_grace(seconds: u64) -> String {
    match seconds {
        0 => "0s".into(),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

fn print_plan(global: &GlobalArgs, plan: &PrunePlan) -> anyhow::Result<()> {
    if global.quiet || global.json {
        return Ok(());
    }
    let t = &plan.totals;
    let pct = |n: u64| {
        if t.bytes == 0 {
            0.0
        } else {
            100.0 * n as f64 / t.bytes as f64
        }
    };
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{} snapshots use {} blobs ({})",
        t.snapshots,
        t.used_blobs,
        size(t.used_bytes)
    )?;
    writeln!(
        out,
        "{} packs hold {}; unused {} ({:.1}%)",
        t.packs,
        size(t.bytes),
        size(t.unused_bytes),
        pct(t.unused_bytes)
    )?;
    writeln!(
        out,
        "delete now:   {} packs, {}",
        t.delete_packs,
        size(t.delete_bytes)
    )?;
    writeln!(
        out,
        "repack:       {} packs, {}",
        t.repack_packs,
        size(t.repack_bytes)
    )?;
    writeln!(
        out,
        "mark unused:  {} packs, {} (deleted by a prune after {})",
        t.mark_packs,
        size(t.mark_bytes),
        human_grace(plan.grace_seconds)
    )?;
    if t.waiting_packs > 0 {
        writeln!(
            out,
            "waiting:      {} packs marked earlier, within the grace period",
            t.waiting_packs
        )?;
    }
    if t.revive_packs > 0 {
        writeln!(out, "in use again: {} packs marked earlier", t.revive_packs)?;
    }
    if t.recent_unindexed_packs > 0 {
        writeln!(
            out,
            "left alone:   {} recent packs in no index (a running backup's?)",
            t.recent_unindexed_packs
        )?;
    }
    if t.missing_packs > 0 {
        writeln!(out, "missing:      {} indexed packs not in storage (nothing in use; dropped from the index)", t.missing_packs)?;
    }
    writeln!(out, "unused after: {}", size(t.unused_bytes_after))?;
    Ok(())
}

/// Plans and, unless dry-run, carries out a prune.
pub fn run_on(
    global: &GlobalArgs,
    repo: &Repository,
    opts: &PruneOptions,
    dry_run: bool,
) -> anyhow::Result<ExitCode> {
    if opts
        .grace_seconds
        .is_some_and(|g| g < repo.config().prune_grace_seconds)
    {
        eprintln!(
            "cairn: warning: grace {} is shorter than the repository's {}: safe only if no backup is running",
            human_grace(opts.grace_seconds.unwrap_or(0)),
            human_grace(repo.config().prune_grace_seconds)
        );
    }
    let plan = repo.prune_plan(opts, &CANCEL)?;
    print_plan(global, &plan)?;
    let ids = |a: PackAction| {
        plan.with_action(a)
            .map(|p| p.id.to_hex())
            .collect::<Vec<_>>()
    };
    let done = if dry_run || plan.is_noop() {
        if dry_run {
            global.say("dry run: nothing changed");
        } else {
            global.say("nothing to do");
        }
        None
    } else {
        let stats = repo.prune(&plan, &CANCEL)?;
        global.say(format!(
            "done: deleted {} packs ({}), wrote {} packs ({}), replaced {} index objects by {}",
            stats.packs_deleted,
            size(stats.bytes_deleted),
            stats.packs_written,
            size(stats.bytes_written),
            stats.index_deleted,
            stats.index_written
        ));
        Some(stats)
    };
    if global.json {
        print_json(&json!({
            "message_type": "prune",
            "dry_run": dry_run,
            "grace_seconds": plan.grace_seconds,
            "totals": plan.totals,
            "delete": ids(PackAction::Delete).into_iter().chain(ids(PackAction::DeleteUnindexed)).collect::<Vec<_>>(),
            "repack": ids(PackAction::Repack),
            "mark": ids(PackAction::Mark),
            "revive": ids(PackAction::Revive),
            "done": done,
        }))?;
    }
    Ok(ExitCode::Success)
}

pub fn run(global: &GlobalArgs, args: PruneArgs) -> anyhow::Result<ExitCode> {
    if matches!(args.options.max_unused, MaxUnused::Percent(p) if p.is_nan()) {
        anyhow::bail!(Error::invalid("--max-unused is not a number"));
    }
    let repo = global.open()?;
    run_on(global, &repo, &args.options, args.dry_run)
}
