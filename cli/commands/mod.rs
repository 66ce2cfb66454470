//! One module per subcommand.

mod backup;
mod check;
mod copy;
mod dump;
mod forget;
mod init;
mod prune;
mod repair;
mod restore;
mod snapshots;

use clap::{Args, Subcommand};

use cairn_core::repository::Repository;
use cairn_core::snapshot::{self, Snapshot, SnapshotFilter};
use cairn_core::Error;

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
    /// Remove data that no snapshot needs (safe next to running backups)
    Prune(prune::PruneArgs),
    /// Verify the repository: structure, and with --read-data every blob
    #[command(long_about = check::LONG_ABOUT)]
    Check(check::CheckArgs),
    /// Rebuild a lost index, or save what is left of damaged snapshots
    Repair(repair::RepairArgs),
    /// Copy snapshots to another repository (off-site copy)
    #[command(long_about = copy::LONG_ABOUT)]
    Copy(copy::CopyArgs),
}

pub fn run(global: &GlobalArgs, command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Init(a) => init::run(global, a),
        Command::Backup(a) => backup::run(global, a),
        Command::Snapshots(a) => snapshots::run(global, a),
        Command::Restore(a) => restore::run(global, a),
        Command::Dump(a) => dump::run(global, a),
        Command::Forget(a) => forget::run(global, a),
        Command::Prune(a) => prune::run(global, a),
        Command::Check(a) => check::run(global, a),
        Command::Repair(a) => repair::run(global, a),
        Command::Copy(a) => copy::run(global, a),
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
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .collect(),
            paths: self.paths.clone(),
        }
    }
}

/// Snapshots loaded for a command: the readable ones and the object names
/// of those that cannot be read.
pub struct Loaded {
    pub good: Vec<Snapshot>,
    pub damaged: Vec<String>,
}

/// Loads snapshots, warning about any that cannot be read.
pub fn load_snapshots(repo: &Repository) -> anyhow::Result<Loaded> {
    let list = repo.load_snapshots()?;
    for (_, e) in &list.damaged {
        eprintln!("cairn: warning: skipping unreadable snapshot: {e}");
    }
    Ok(Loaded {
        good: list.good,
        damaged: list.damaged.into_iter().map(|(name, _)| name).collect(),
    })
}

impl Loaded {
    /// Resolves SNAPSHOT, refusing to guess: `latest` while some snapshot
    /// cannot be read (it may be the newest), or a prefix of a damaged
    /// snapshot's name, is a damage error naming it.
    pub fn resolve(&self, spec: &str, filter: &SnapshotFilter) -> anyhow::Result<&Snapshot> {
        let lower = spec.to_ascii_lowercase();
        let hit = self
            .damaged
            .iter()
            .find(|name| spec == "latest" || (!lower.is_empty() && name.starts_with(&lower)));
        if let Some(name) = hit {
            anyhow::bail!(Error::corrupt(format!(
                "snapshot {} cannot be read, so {spec:?} cannot be resolved safely; name another snapshot by ID",
                &name[..8.min(name.len())]
            )));
        }
        Ok(snapshot::resolve(&self.good, spec, filter)?)
    }
}
