//! `cairn check`.

use std::collections::BTreeSet;

use clap::Args;

use cairn_core::ops::check::{CheckOptions, CheckReport, DataSubset, ProblemKind};

use crate::exit::ExitCode;
use crate::output::{size, PhaseBar};
use crate::{print_json, GlobalArgs, CANCEL};

pub const LONG_ABOUT: &str = "\
Check that the repository is whole and every snapshot can be restored.

Without options, check reads every key file, index object, snapshot, tree and
chunk list, and the trailer of every pack: it finds missing and truncated
packs, index entries that point nowhere, chunks no index knows, and damaged
metadata. It builds its own index from the repository and does not trust the
local cache; a cache that disagrees is emptied (it is rebuilt on next use).

--read-data also reads every pack whole and decrypts and verifies every blob:
it finds bit rot in data. --read-data-subset reads part of the packs, so that
a nightly cron job can spread the work:
    --read-data-subset 3/7    group 3 of 7 (by pack ID: 1/7 .. 7/7 on seven
                              nights read every pack once)
    --read-data-subset 10%    a random tenth of the packs
    --read-data-subset 50G    random packs, about 50 GiB

Each problem is printed on stderr on one line, naming the broken object and
the snapshots it affects; the exit code is then 22.";

#[derive(Args)]
pub struct CheckArgs {
    /// Also read all pack data and verify every blob
    #[arg(long)]
    read_data: bool,

    /// Read and verify only part of the data: n/m, a percentage, or a size
    #[arg(long, value_name = "SUBSET", conflicts_with = "read_data")]
    read_data_subset: Option<DataSubset>,
}

pub fn run(global: &GlobalArgs, args: CheckArgs) -> anyhow::Result<ExitCode> {
    let repo = global.open_quietly()?;
    let mut opts = CheckOptions::default();
    opts.read_data = args
        .read_data_subset
        .or(args.read_data.then_some(DataSubset::All));
    let bar = PhaseBar::new(global.quiet || global.json);
    let report = repo.check(&opts, &bar, &CANCEL);
    bar.finish();
    let report = report?;
    for w in &report.warnings {
        eprintln!("cairn: warning: {w}");
    }
    for p in &report.problems {
        eprintln!("error: {}{}", p.message, affects(&p.snapshots));
    }
    if global.json {
        print_json(&serde_json::json!({
            "message_type": "summary",
            "ok": report.is_ok(),
            "problems": report.problems,
            "warnings": report.warnings,
            "damaged_snapshots": report.damaged_snapshots,
            "stats": report.stats,
        }))?;
    } else {
        global.say(summary(&report));
    }
    if report.is_ok() {
        global.say("no errors were found");
        return Ok(ExitCode::Success);
    }
    eprintln!(
        "cairn: {} errors found; {} snapshots cannot be fully restored{}",
        report.problems.len(),
        report.damaged_snapshots.len(),
        advice(&report)
    );
    Ok(ExitCode::Damaged)
}

/// " (affects snapshots 1a2b3c4d, 5e6f7a8b)", at most ten named.
fn affects(snapshots: &[String]) -> String {
    if snapshots.is_empty() {
        return String::new();
    }
    let mut names: Vec<&str> = snapshots
        .iter()
        .take(10)
        .map(|s| &s[..8.min(s.len())])
        .collect();
    let more = snapshots.len().saturating_sub(names.len());
    let mut s = format!(
        " (affects snapshot{} ",
        if snapshots.len() == 1 { "" } else { "s" }
    );
    if more > 0 {
        names.push("…");
    }
    s.push_str(&names.join(", "));
    if more > 0 {
        s.push_str(&format!(" and {more} more"));
    }
    s.push(')');
    s
}

fn summary(r: &CheckReport) -> String {
    let s = &r.stats;
    let mut line = format!(
        "checked {} keys, {} index objects ({} blobs), {} packs ({}), {} snapshots, {} trees",
        s.keys,
        s.index_objects,
        s.blobs,
        s.packs,
        size(s.pack_bytes),
        s.snapshots,
        s.trees
    );
    if s.drills > 0 {
        line.push_str(&format!(", {} drill records", s.drills));
    }
    if s.wal_files > 0 {
        line.push_str(&format!(", {} archived WAL files", s.wal_files));
    }
    if s.packs_read > 0 {
        line.push_str(&format!(
            "; read {} packs ({}) and verified {} blobs",
            s.packs_read,
            size(s.bytes_read),
            s.blobs_verified
        ));
    }
    line
}

/// What to run next, by the kinds of problem found.
fn advice(r: &CheckReport) -> String {
    let kinds: BTreeSet<_> = r.problems.iter().map(|p| p.kind as u8).collect();
    let has = |k: ProblemKind| kinds.contains(&(k as u8));
    let mut steps = Vec::new();
    if has(ProblemKind::Index)
        || has(ProblemKind::MissingPack)
        || has(ProblemKind::Pack)
        || has(ProblemKind::Blob)
    {
        steps.push("`cairn repair index` (rebuilds the index from the packs)");
    }
    if !r.damaged_snapshots.is_empty() {
        steps.push("`cairn repair snapshots` (saves what is left of damaged snapshots)");
    }
    if steps.is_empty() {
        String::new()
    } else {
        format!("; to repair, run {}", steps.join(", then "))
    }
}
