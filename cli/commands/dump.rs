//! `cairn dump`.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;

use cairn_core::format::snapshot::Snapshot;
use cairn_core::ops::restore;
use cairn_core::{Error, ErrorKind};

use crate::commands::{load_snapshots, snapshot_and_path, FilterArgs};
use crate::exit::ExitCode;
use crate::{GlobalArgs, CANCEL};

#[derive(Args)]
pub struct DumpArgs {
    /// Snapshot ID, unique ID prefix, or "latest" (the newest that holds FILE); SNAPSHOT:PATH names a file or folder in it
    #[arg(
        value_name = "SNAPSHOT",
        long_help = "Snapshot ID, unique ID prefix, or \"latest\". With \"latest\", the newest \
                     snapshot (after the filters) that holds FILE: with several series (a dump \
                     of another database, a file tree), `dump latest shop.sql` takes the newest \
                     snapshot of shop.sql. As in restic, SNAPSHOT:PATH names a file (then FILE may \
                     be left out) or a folder that FILE is relative to: `latest:shop.sql`, \
                     `1a2b3c4d:/etc hosts`."
    )]
    snapshot: String,

    /// Path of the file in the snapshot (e.g. shop.sql, or /etc/hosts)
    #[arg(value_name = "FILE")]
    file: Option<PathBuf>,

    #[command(flatten)]
    filter: FilterArgs,
}

/// SNAPSHOT[:PATH] and FILE: the snapshot spec and the file's path.
fn split(args: &DumpArgs) -> anyhow::Result<(&str, PathBuf)> {
    let (spec, inside) = snapshot_and_path(&args.snapshot);
    let path = match (inside, &args.file) {
        (Some(dir), Some(file)) => dir.join(file),
        (Some(path), None) => path,
        (None, Some(file)) => file.clone(),
        (None, None) => anyhow::bail!(Error::invalid(
            "give the file to write: cairn dump SNAPSHOT FILE (or SNAPSHOT:FILE)"
        )),
    };
    Ok((spec, path))
}

pub fn run(global: &GlobalArgs, args: DumpArgs) -> anyhow::Result<ExitCode> {
    let (spec, path) = split(&args)?;
    let repo = global.open()?;
    let loaded = load_snapshots(&repo)?;
    let filter = args.filter.filter();
    // Refuses `latest` while a snapshot cannot be read, as everywhere.
    let mut snap = loaded.resolve(spec, &filter)?;
    if spec == "latest" {
        let candidates: Vec<&Snapshot> = loaded
            .good
            .iter()
            .filter(|s| filter.matches(s) && !s.future_dated)
            .collect();
        let found = restore::newest_holding(&repo, &candidates, &path)?.ok_or_else(|| {
            Error::new(
                ErrorKind::SourceNotFound,
                format!(
                    "{} is in none of the {} snapshots searched (latest)",
                    Path::new("/").join(&path).display(),
                    candidates.len()
                ),
            )
        })?;
        // Deleted since: the bytes come from an older snapshot; say which.
        if let Some(newer) = found.newer_without {
            eprintln!(
                "cairn: warning: {} is not in snapshot {} ({}), the newest of its path; writing it from snapshot {} ({})",
                Path::new("/").join(&path).display(),
                newer.id.short(),
                newer.time.local_display(),
                found.snapshot.id.short(),
                found.snapshot.time.local_display()
            );
        }
        snap = found.snapshot;
    }
    let stdout = std::io::stdout();
    let node = cairn_core::repo::walker::find_node(&repo, &repo.index()?, snap, &path)?;
    // Towards the file's size, on stderr when it is a terminal.
    let progress =
        crate::output::byte_progress_to(global.quiet || global.json, "dumped", node.size);
    let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
    let dumped = repo
        .dump(snap, &path, &mut out, &progress, &CANCEL)
        .and_then(|_| {
            out.flush()
                .map_err(|e| cairn_core::Error::io("writing to stdout", e))
        });
    progress.0.finish_and_clear();
    dumped?;
    // A file `repair snapshots` marked: the bytes are what could be
    // saved, and the exit code says so.
    if let Some(d) = &node.damage {
        eprintln!(
            "cairn: warning: {}: {}",
            path.display(),
            cairn_core::repo::restorer::damage_note(d)
        );
        return Ok(ExitCode::PartialBackup);
    }
    Ok(ExitCode::Success)
}
