//! `cairn repair index` and `cairn repair snapshots`.

use clap::{Args, Subcommand};
use indicatif::ProgressBar;

use cairn_core::ops::repair::{self, IndexRepairOptions, SnapshotRepairOptions};
use cairn_core::repo::restorer::damage_note;

use crate::commands::FilterArgs;
use crate::exit::ExitCode;
use crate::{print_json, GlobalArgs, CANCEL};

#[derive(Args)]
pub struct RepairArgs {
    #[command(subcommand)]
    what: RepairCommand,
}

#[derive(Subcommand)]
enum RepairCommand {
    /// Rebuild the index from the packs (lost or damaged index objects)
    #[command(long_about = "\
Rebuild the index from the packs, for lost or damaged index objects.

Records of readable index objects are kept for packs stored with the size
they imply; every other pack is listed from its own trailer; records of packs
that are gone are dropped. The new index objects are written first, then the
old ones are deleted, so an interruption loses nothing. Packs whose trailer
cannot be read are reported and left in place. Do not run it while a prune
runs; backups may run.")]
    Index(IndexArgs),
    /// Save what is left of snapshots that reference lost data
    #[command(long_about = "\
Save what is left of snapshots that reference missing or damaged data.

Run `cairn check` first, and `cairn repair index` if it reports index
problems. For each snapshot that references a blob that is in no index or
whose pack is gone (with --read-data, also data that does not verify), a
repaired copy is written, tagged `repaired`, recording the original's ID:
- a damaged file is renamed NAME.damaged; lost chunks of known length read
  back as zeros (the file keeps its length and offsets), lost pieces of
  unknown length are left out; nothing is silently truncated;
- a directory whose listing is lost becomes an empty NAME.damaged.
Restore and dump print a warning for each damaged entry and exit 3.
The originals stay until --forget (which also deletes snapshot objects that
cannot be decrypted, never ones written by a newer cairn). It refuses to run
while an index object cannot be read (run `repair index` first), and stops
(never guessing) when storage cannot be read. Exits 22 when damaged snapshots
remain (unrepairable or unreadable ones kept), 0 otherwise.")]
    Snapshots(SnapshotsArgs),
}

#[derive(Args)]
struct IndexArgs {
    /// Read the trailer of every pack, not only of packs the index lacks or gets wrong
    #[arg(long)]
    read_all_packs: bool,
    /// Print what would change; change nothing
    #[arg(short = 'n', long)]
    dry_run: bool,
}

#[derive(Args)]
struct SnapshotsArgs {
    /// Snapshots to repair (IDs, prefixes or "latest"); all if none
    #[arg(value_name = "SNAPSHOT")]
    snapshots: Vec<String>,
    /// Delete the originals after writing their repaired copies
    #[arg(long)]
    forget: bool,
    /// Also read every data chunk and treat chunks that do not verify as lost
    #[arg(long)]
    read_data: bool,
    /// Print what would change; change nothing
    #[arg(short = 'n', long)]
    dry_run: bool,
    #[command(flatten)]
    filter: FilterArgs,
}

pub fn run(global: &GlobalArgs, args: RepairArgs) -> anyhow::Result<ExitCode> {
    match args.what {
        RepairCommand::Index(a) => index(global, a),
        RepairCommand::Snapshots(a) => snapshots(global, a),
    }
}

fn short(hex: &str) -> &str {
    &hex[..8.min(hex.len())]
}

fn index(global: &GlobalArgs, args: IndexArgs) -> anyhow::Result<ExitCode> {
    let repo = global.open_quietly()?;
    let bar =
        if global.quiet || global.json || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(0)
        };
    let mut opts = IndexRepairOptions::default();
    opts.read_all_packs = args.read_all_packs;
    opts.dry_run = args.dry_run;
    let r = repair::repair_index(
        &repo,
        opts,
        &|done, total| {
            bar.set_length(total);
            bar.set_position(done);
        },
        &CANCEL,
    );
    bar.finish_and_clear();
    let r = r?;
    if global.json {
        print_json(&r)?;
        return Ok(ExitCode::Success);
    }
    for (name, e) in &r.unreadable_indexes {
        global.say(format!("unreadable index object {}: {e}", short(name)));
    }
    for (name, e) in &r.unreadable_packs {
        eprintln!("cairn: warning: pack {} left unindexed: {e}", short(name));
    }
    for name in &r.dropped {
        global.say(format!("pack {name} is gone: dropped from the index"));
    }
    global.say(format!(
        "{} index objects ({} unreadable); {} packs: {} indexed correctly, {} listed from their trailers, {} unreadable, {} gone",
        r.index_objects,
        r.unreadable_indexes.len(),
        r.packs,
        r.kept,
        r.added.len(),
        r.unreadable_packs.len(),
        r.dropped.len()
    ));
    if !r.changed {
        global.say("the index is complete: nothing to do");
    } else if args.dry_run {
        global.say(format!(
            "dry run: would write a new index and delete the {} old index objects",
            r.index_objects
        ));
    } else {
        global.say(format!(
            "wrote {} index objects, deleted {} old ones",
            r.written, r.deleted
        ));
    }
    Ok(ExitCode::Success)
}

fn snapshots(global: &GlobalArgs, args: SnapshotsArgs) -> anyhow::Result<ExitCode> {
    let repo = global.open()?;
    let list = repo.load_snapshots()?;
    let filter = args.filter.filter();
    let filtered = !(args.filter.hosts.is_empty()
        && args.filter.tags.is_empty()
        && args.filter.paths.is_empty());
    let (chosen, unreadable) = if args.snapshots.is_empty() {
        let chosen: Vec<_> = list
            .good
            .iter()
            .filter(|s| filter.matches(s))
            .cloned()
            .collect();
        // Whose an unreadable snapshot is cannot be known: only a repair
        // of everything deals with those.
        let unreadable = if filtered { Vec::new() } else { list.damaged };
        (chosen, unreadable)
    } else {
        let mut chosen: Vec<cairn_core::format::snapshot::Snapshot> = Vec::new();
        for spec in &args.snapshots {
            let s = list.resolve(spec, &filter)?;
            if !chosen.iter().any(|c| c.id == s.id) {
                chosen.push(s.clone());
            }
        }
        (chosen, Vec::new())
    };
    let mut opts = SnapshotRepairOptions::default();
    opts.read_data = args.read_data;
    opts.forget = args.forget;
    opts.dry_run = args.dry_run;
    let r = repair::repair_snapshots(&repo, &chosen, &unreadable, opts, &CANCEL)?;
    // Damage that stays (unrepairable or unreadable snapshots kept) is
    // still damage: exit 22, so a script does not take it for success.
    let left = r
        .snapshots
        .iter()
        .any(|s| s.outcome == "unrepairable" && !s.forgotten)
        || r.unreadable.iter().any(|(_, _, deleted)| !deleted);
    let done = if left && !args.dry_run {
        ExitCode::Damaged
    } else {
        ExitCode::Success
    };
    if global.json {
        print_json(&r)?;
        return Ok(done);
    }
    say_snapshot_repairs(global, &args, &r);
    Ok(done)
}

/// What `repair snapshots` did (or would do), a line per snapshot
/// repaired, lost or unreadable, and the counts.
fn say_snapshot_repairs(global: &GlobalArgs, args: &SnapshotsArgs, r: &repair::SnapshotsRepair) {
    let would = if args.dry_run { "would be " } else { "" };
    let (mut intact, mut repaired, mut lost) = (0, 0, 0);
    for s in &r.snapshots {
        match s.outcome {
            "repaired" => {
                repaired += 1;
                let copy = s
                    .repaired
                    .as_deref()
                    .map(|id| format!(" as {}", short(id)))
                    .unwrap_or_default();
                let original = match (s.forgotten, args.forget && args.dry_run) {
                    (true, _) => "original forgotten",
                    (false, true) => "original would be forgotten",
                    (false, false) => "original kept",
                };
                global.say(format!(
                    "snapshot {}: {would}repaired{copy} ({original})",
                    short(&s.snapshot)
                ));
                for d in &s.damaged {
                    global.say(format!("    {}: {}", d.path, damage_note(&d.damage)));
                }
            }
            "unrepairable" => {
                lost += 1;
                eprintln!(
                    "cairn: snapshot {} cannot be repaired: {} ({})",
                    short(&s.snapshot),
                    s.reason.as_deref().unwrap_or("?"),
                    if s.forgotten {
                        "forgotten"
                    } else {
                        "kept; --forget removes it"
                    }
                );
            }
            _ => intact += 1,
        }
    }
    for (name, e, deleted) in &r.unreadable {
        eprintln!(
            "cairn: snapshot object {} cannot be read: {e} ({})",
            short(name),
            if *deleted { "deleted" } else { "kept" }
        );
    }
    global.say(format!(
        "{} snapshots: {intact} intact, {repaired} {would}repaired, {lost} cannot be repaired{}",
        r.snapshots.len(),
        if args.dry_run {
            "; dry run: nothing changed"
        } else {
            ""
        }
    ));
}
