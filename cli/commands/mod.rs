//! One module per subcommand.

mod backup;
mod dump;
mod forget;
mod init;
mod restore;
mod snapshots;

use clap::{Args, Subcommand};

use cairn_core::snapshot::SnapshotFilter;

use crate::exit::ExitCode;
use crate::GlobalArgs;

#[derive(Subcommand)]
pub enum Command {
    /// Create a new repository
    Init(init::InitArgs),
    /// Back up files, standard input, or the output of a dump command
    Backup(backup::BackupArgs),
    /// List snapshots
    Snapshots(snapshots::SnapshotsArgs),
    /// Restore a snapshot into a directory
    Restore(restore::RestoreArgs),
    /// Write one file of a snapshot to standard output
    Dump(dump::DumpArgs),
    /// Remove snapshots by retention policy (restic's rules) or by ID
    Forget(forget::ForgetArgs),
}

pub fn run(global: &GlobalArgs, command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Init(a) => init::run(global, a),
        Command::Backup(a) => backup::run(global, a),
        Command::Snapshots(a) => snapshots::run(global, a),
        Command::Restore(a) => restore::run(global, a),
        Command::Dump(a) => dump::run(global, a),
        Command::Forget(a) => forget::run(global, a),
    }
}

/// `--host`, `--tag`, `--path`: which snapshots to consider.
#[derive(Args, Debug, Clone, Default)]
pub struct FilterArgs {
    /// Only snapshots of this host (repeatable)
    #[arg(long = "host", value_name = "HOST")]
    pub hosts: Vec<String>,
    /// Only snapshots with all of these comma-separated tags (repeatable: any of the sets)
    #[arg(long = "tag", value_name = "TAG[,TAG...]")]
    pub tags: Vec<String>,
    /// Only snapshots that include this path (repeatable: all of them)
    #[arg(long = "path", value_name = "PATH")]
    pub paths: Vec<String>,
}

impl FilterArgs {
    pub fn filter(&self) -> SnapshotFilter {
        SnapshotFilter {
            hosts: self.hosts.clone(),
            tags: self
                .tags
                .iter()
                .map(|t| {
                    t.split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .collect(),
            paths: self.paths.clone(),
        }
    }
}

/// Loads snapshots, warning about any that cannot be read.
pub fn load_snapshots(
    repo: &cairn_core::repository::Repository,
) -> anyhow::Result<(Vec<cairn_core::snapshot::Snapshot>, usize)> {
    let (good, bad) = repo.load_snapshots()?;
    for e in &bad {
        eprintln!("cairn: warning: skipping unreadable snapshot: {e}");
    }
    Ok((good, bad.len()))
}
