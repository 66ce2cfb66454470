//! One module per subcommand.

pub(crate) mod backup;
mod check;
mod copy;
mod diff;
mod drill;
mod dump;
mod find;
mod forget;
mod generate;
pub(crate) mod init;
mod key;
pub(crate) mod ls;
mod mount;
mod pg;
pub(crate) mod prune;
mod repair;
mod restore;
mod rewrite;
mod run;
mod snapshots;
mod stats;
pub(crate) mod status;
mod tag;
mod wal;

use std::path::PathBuf;

use clap::{Args, Subcommand};

use cairn_core::backend;
use cairn_core::format::snapshot::SnapshotFilter;
use cairn_core::repo::repository::{self, Repository, SnapshotList};
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
    /// Per series (host, paths, tags): the newest snapshot and its age; --max-age alerts
    Status(status::StatusArgs),
    /// Restore a snapshot into a directory
    Restore(restore::RestoreArgs),
    /// Write one file of a snapshot to standard output
    Dump(dump::DumpArgs),
    /// Restore drill: restore into scratch, verify every byte and the dump, record the recovery time
    #[command(long_about = drill::LONG_ABOUT)]
    Drill(drill::DrillArgs),
    /// List the entries of a snapshot
    Ls(ls::LsArgs),
    /// Find entries by name (glob) in snapshots
    Find(find::FindArgs),
    /// Browse the snapshots as a read-only file system (FUSE)
    #[command(long_about = mount::LONG_ABOUT)]
    Mount(mount::MountArgs),
    /// Show what changed between two snapshots
    #[command(long_about = diff::LONG_ABOUT)]
    Diff(diff::DiffArgs),
    /// Sizes: restore size, unique and stored data, dedup ratio, what each snapshot added
    #[command(long_about = stats::LONG_ABOUT)]
    Stats(stats::StatsArgs),
    /// Add, remove or set the tags of snapshots
    #[command(long_about = tag::LONG_ABOUT)]
    Tag(tag::TagArgs),
    /// Drop paths that should never have been backed up from stored snapshots
    #[command(long_about = rewrite::LONG_ABOUT)]
    Rewrite(rewrite::RewriteArgs),
    /// Manage keys: list, add, remove, passwd
    Key(key::KeyArgs),
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
    /// PostgreSQL base backups and point-in-time restore
    Pg(pg::PgArgs),
    /// Archive a PostgreSQL WAL file (archive_command = 'cairn wal-push %p')
    #[command(name = "wal-push", long_about = wal::PUSH_ABOUT)]
    WalPush(wal::PushArgs),
    /// Restore an archived WAL file (restore_command = 'cairn wal-fetch %f %p')
    #[command(name = "wal-fetch", long_about = wal::FETCH_ABOUT)]
    WalFetch(wal::FetchArgs),
    /// Run jobs from the configuration file: backup, forget, prune when due, copy
    #[command(long_about = run::LONG_ABOUT)]
    Run(run::RunArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    #[command(long_about = generate::COMPLETIONS_ABOUT)]
    Completions(generate::CompletionsArgs),
    /// Print the man page, or write one per subcommand with --dir
    #[command(long_about = generate::MAN_ABOUT)]
    Man(generate::ManArgs),
}

pub fn run(global: &GlobalArgs, command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Init(a) => init::run(global, a),
        Command::Backup(a) => backup::run(global, a),
        Command::Snapshots(a) => snapshots::run(global, a),
        Command::Status(a) => status::run(global, a),
        Command::Restore(a) => restore::run(global, a),
        Command::Dump(a) => dump::run(global, a),
        Command::Drill(a) => drill::run(global, a),
        Command::Ls(a) => ls::run(global, a),
        Command::Find(a) => find::run(global, a),
        Command::Mount(a) => mount::run(global, a),
        Command::Diff(a) => diff::run(global, a),
        Command::Stats(a) => stats::run(global, a),
        Command::Tag(a) => tag::run(global, a),
        Command::Rewrite(a) => rewrite::run(global, a),
        Command::Key(a) => key::run(global, a),
        Command::Forget(a) => forget::run(global, a),
        Command::Prune(a) => prune::run(global, a),
        Command::Check(a) => check::run(global, a),
        Command::Repair(a) => repair::run(global, a),
        Command::Copy(a) => copy::run(global, a),
        Command::Pg(a) => pg::run(global, a),
        Command::WalPush(a) => wal::push(global, a),
        Command::WalFetch(a) => wal::fetch(global, a),
        Command::Run(a) => run::run(global, a),
        Command::Completions(a) => generate::completions(global, a),
        Command::Man(a) => generate::man(global, a),
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
    /// Only snapshots whose paths and tags are exactly --path and --tag (one series)
    #[arg(long = "exact")]
    pub exact: bool,
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
            exact: self.exact,
        }
    }
}

/// The password options of a second repository (the target of `copy`,
/// the source of `init --from`); its password itself comes from
/// `CAIRN_PASSWORD2`.
#[derive(Args, Debug, Clone, Default)]
pub struct SecondPasswordArgs {
    /// Read the other repository's password from this file
    #[arg(long, env = "CAIRN_PASSWORD_FILE2", value_name = "FILE")]
    pub password_file2: Option<PathBuf>,

    /// Run this shell command and use its output as the other repository's password
    #[arg(
        long,
        env = "CAIRN_PASSWORD_COMMAND2",
        value_name = "COMMAND",
        hide_env_values = true
    )]
    pub password_command2: Option<String>,
}

impl SecondPasswordArgs {
    /// Opens the repository at `location` with the second password;
    /// `what` names it in the prompt and in messages ("target repository").
    /// The repository with ID `not` (the first one, if it exists) is
    /// refused: copying a repository onto itself is a mistake.
    pub fn open(
        &self,
        global: &GlobalArgs,
        location: &str,
        what: &'static str,
        not: Option<&cairn_core::Id>,
    ) -> anyhow::Result<Repository> {
        let locked = repository::locate(backend::open(location, &global.store_options())?)
            .map_err(|e| e.context(what))?;
        if Some(&locked.id()) == not {
            anyhow::bail!(Error::invalid(format!(
                "{location} is the same repository as {}",
                global.location()?
            )));
        }
        let pw = crate::password::read_from(
            &crate::password::Source {
                command: self.password_command2.as_deref(),
                file: self.password_file2.as_deref(),
                what,
                ..crate::password::Source::SECOND
            },
            false,
        )?;
        let mut repo = locked
            .unlock(&pw, &global.cache())
            .map_err(|e| e.context(what))?;
        for w in repo.warnings() {
            eprintln!("cairn: warning: {what}: {w}");
        }
        let what = what.to_string();
        repo.set_warning_sink(move |w| eprintln!("cairn: warning: {what}: {w}"));
        Ok(repo)
    }
}

/// `SNAPSHOT[:PATH]`, as restic writes it: the snapshot and the path in
/// it, if one is given.
pub fn snapshot_and_path(spec: &str) -> (&str, Option<PathBuf>) {
    match spec.split_once(':') {
        Some((snapshot, path)) => (snapshot, Some(PathBuf::from(path))),
        None => (spec, None),
    }
}

/// Drill records, warning about any that cannot be read.
pub fn load_drills(repo: &Repository) -> anyhow::Result<cairn_core::repo::drill_record::DrillList> {
    let list = cairn_core::repo::drill_record::load(repo)?;
    for (_, e) in &list.damaged {
        eprintln!("cairn: warning: skipping unreadable drill record: {e}");
    }
    Ok(list)
}

/// Loads snapshots, warning about any that cannot be read or that are
/// dated in the future.
pub fn load_snapshots(repo: &Repository) -> anyhow::Result<SnapshotList> {
    let list = repo.load_snapshots()?;
    for (_, e) in &list.damaged {
        eprintln!("cairn: warning: skipping unreadable snapshot: {e}");
    }
    for s in list.good.iter().filter(|s| s.future_dated) {
        eprintln!(
            "cairn: warning: snapshot {} (host {:?}) is dated {}, later than it was stored: a forged time or a clock far ahead; latest, forget's rules and status ignore it (forget it by ID)",
            s.id.short(),
            s.hostname,
            s.time.to_rfc3339()
        );
    }
    Ok(list)
}
