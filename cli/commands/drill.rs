//! `cairn drill`: a restore drill. Restores a snapshot into a scratch
//! directory, verifies every byte, checks a dump in it, measures the
//! recovery time and records the outcome in the repository.

use std::path::PathBuf;

use clap::Args;
use serde_json::json;

use cairn_core::ops::drill::{self, DumpCheck};

use crate::commands::{load_snapshots, FilterArgs};
use crate::exit::ExitCode;
use crate::output::size;
use crate::{print_json, GlobalArgs, CANCEL};

pub const LONG_ABOUT: &str = "\
A restore drill: prove that a snapshot restores, and how long that takes.

cairn restores the snapshot (default: latest) into a new directory under
--scratch, reads back every byte it wrote and compares it with the chunk
IDs the snapshot names, and checks a database dump in it like backup does
(a plain pg_dump must end with its completion line; pg_restore must read
every block of a custom or tar archive). With --pg it also loads the dump
into a new scratch database on the PostgreSQL server that the libpq
environment names (PGHOST, PGPORT, PGUSER...) and drops it afterwards.
For a base backup (cairn pg basebackup), --pg recovers it instead: a private
PostgreSQL on the restored data directory (a Unix socket in the scratch
directory only) replays the archived WAL to the end of the archive,
promotes and answers a query; run it as the server's user.

The outcome, the time it took (the real recovery time) and what was checked
are recorded in the repository (drills/), so `cairn snapshots` and `cairn
status` show when each series was last proven restorable, and `forget
--keep-drilled` never removes the newest snapshot that passed a drill. A
failed drill is recorded too, and exits with the code of what failed (22:
damaged data, 27: the dump is incomplete or does not load). A drill that
could not run (no space for the scratch copy, no permission to create the
scratch database, a missing tool) records nothing. --pg refuses a plain dump
made with pg_dump -C, which would connect to the real database.

    cairn drill                       # the newest snapshot
    cairn drill --host db1 --pg       # db1's newest, loaded into PostgreSQL";

#[derive(Args)]
pub struct DrillArgs {
    /// Snapshot ID, unique ID prefix, or "latest"
    #[arg(value_name = "SNAPSHOT", default_value = "latest")]
    snapshot: String,

    /// Directory to restore under (a new cairn-drill-* directory is made in it and removed afterwards)
    #[arg(long, value_name = "DIR", env = "CAIRN_DRILL_DIR")]
    scratch: Option<PathBuf>,

    /// Also load the dump into a scratch PostgreSQL database (libpq environment: PGHOST, PGPORT, PGUSER)
    #[arg(long)]
    pg: bool,

    /// Keep the restored copy (its path is printed)
    #[arg(long)]
    keep: bool,

    /// Do not record the outcome in the repository
    #[arg(long)]
    no_record: bool,

    #[command(flatten)]
    filter: FilterArgs,
}

pub fn run(global: &GlobalArgs, args: DrillArgs) -> anyhow::Result<ExitCode> {
    let repo = global.open()?;
    let loaded = load_snapshots(&repo)?;
    let snap = loaded.resolve(&args.snapshot, &args.filter.filter())?;
    let scratch = args.scratch.clone().unwrap_or_else(std::env::temp_dir);
    let check = if args.pg {
        DumpCheck::Load
    } else {
        DumpCheck::Complete
    };
    let progress = crate::output::byte_progress_to(
        global.quiet || global.json,
        "restored",
        snap.summary.total_bytes_processed,
    );
    // A base backup's recovery ends at the first gap in the archive, and
    // PostgreSQL then promotes: said before the drill "passes".
    if args.pg && cairn_core::pg::pitr::is_base_backup(snap) {
        if let Some(w) =
            crate::commands::pg::past_the_archive(&repo, snap, &cairn_core::pg::pitr::Target::End)?
        {
            eprintln!("cairn: warning: {w}");
        }
    }
    let mut opts = drill::DrillOptions::default();
    opts.dump_check = Some(check);
    opts.keep = args.keep;
    opts.restore_command = Some(crate::commands::pg::drill_restore_command(global)?);
    let outcome = repo.drill(snap, &scratch, &opts, &progress, &CANCEL);
    progress.0.finish_and_clear();
    let outcome = outcome?;
    for w in &outcome.warnings {
        eprintln!("cairn: warning: {w}");
    }
    let r = &outcome.record;
    let recorded = if args.no_record {
        None
    } else {
        match cairn_core::repo::drill_record::save(&repo, r) {
            Ok(id) => Some(id),
            Err(e) => {
                eprintln!("cairn: warning: the drill's outcome could not be recorded: {e}");
                None
            }
        }
    };
    if global.json {
        let mut v = serde_json::to_value(r)?;
        if let serde_json::Value::Object(map) = &mut v {
            map.insert("id".into(), json!(recorded.map(|id| id.to_hex())));
        }
        print_json(&v)?;
    } else if r.ok {
        let checked = match r.dump_check.as_deref() {
            Some("loaded") => ", dump complete and loaded into a scratch database",
            Some("recovered") => {
                ", base backup recovered by a private PostgreSQL replaying the archived WAL"
            }
            Some("complete") => ", dump complete",
            _ => "",
        };
        global.say(format!(
            "drill of snapshot {} ({}) passed: {} files, {} restored in {:.1}s and verified in {:.1}s{checked}; recovery time {:.1}s{}",
            snap.id.short(),
            snap.time.local_display(),
            r.files,
            size(r.bytes),
            r.restore_seconds,
            r.verify_seconds,
            r.seconds,
            recorded
                .map(|id| format!(" (recorded as {})", id.short()))
                .unwrap_or_default()
        ));
    }
    if let Some(dir) = &outcome.kept {
        global.say(format!("the restored copy is kept in {}", dir.display()));
    }
    match &outcome.failure {
        None => Ok(ExitCode::Success),
        Some(e) => {
            eprintln!(
                "cairn: error: drill of snapshot {} failed after {:.1}s: {e}",
                snap.id.short(),
                r.seconds
            );
            Ok(ExitCode::of(e.kind()))
        }
    }
}
