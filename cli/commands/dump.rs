//! `cairn dump`.

use std::io::Write;

use clap::Args;

use cairn_core::restore;

use crate::commands::{load_snapshots, FilterArgs};
use crate::exit::ExitCode;
use crate::{GlobalArgs, CANCEL};

#[derive(Args)]
pub struct DumpArgs {
    /// Snapshot ID, unique ID prefix, or "latest"
    #[arg(value_name = "SNAPSHOT")]
    snapshot: String,

    /// Path of the file in the snapshot (e.g. shop.sql, or /etc/hosts)
    #[arg(value_name = "FILE")]
    file: std::path::PathBuf,

    #[command(flatten)]
    filter: FilterArgs,
}

pub fn run(global: &GlobalArgs, args: DumpArgs) -> anyhow::Result<ExitCode> {
    let repo = global.open()?;
    let loaded = load_snapshots(&repo)?;
    let snap = loaded.resolve(&args.snapshot, &args.filter.filter())?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
    restore::dump(&repo, snap, &args.file, &mut out, &CANCEL)?;
    out.flush()?;
    // A file `repair snapshots` marked: the bytes are what could be
    // saved, and the exit code says so.
    let node = restore::find_node(&repo, &repo.index()?, snap, &args.file)?;
    if let Some(d) = &node.damage {
        eprintln!(
            "cairn: warning: {}: {}",
            args.file.display(),
            restore::damage_note(d)
        );
        return Ok(ExitCode::PartialBackup);
    }
    Ok(ExitCode::Success)
}
