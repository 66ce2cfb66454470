//! `cairn`: content-addressed, deduplicating, encrypted backups for
//! database dumps and file trees. The repository logic lives in
//! `cairn-core`; this binary parses arguments, prints, and picks exit codes.

#![forbid(unsafe_code)]

mod commands;
mod exit;
mod jobs;
mod output;
mod password;
mod patterns;

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::{Args, CommandFactory, FromArgMatches, Parser};

use cairn_core::backend::{self, Backend, ObjectStoreOptions};
use cairn_core::repo::appender::Appender;
use cairn_core::repo::repository::{self, CacheLocation, Repository};

use crate::exit::{ExitCode, EXIT_CODES_HELP};

/// Set by Ctrl-C / SIGTERM; long operations stop at the next check.
pub static CANCEL: AtomicBool = AtomicBool::new(false);

const ABOUT: &str = "Encrypted, deduplicating backups of database dumps and file trees";

const LONG_ABOUT: &str = "\
cairn backs up database dumps (from stdin, or a command it runs itself) and
file trees into an encrypted, deduplicating repository. Every snapshot
restores like a full backup; the repository stores only what changed.

A nightly pg_dump, committed only if pg_dump succeeds:
    cairn -r /srv/backup backup --command 'pg_dump -d shop' --stdin-filename shop.sql
List, restore:
    cairn -r /srv/backup snapshots
    cairn -r /srv/backup restore latest --target /tmp/restore
    cairn -r /srv/backup dump 1a2b3c4d shop.sql | psql -d shop_copy

The password comes from CAIRN_PASSWORD, CAIRN_PASSWORD_COMMAND,
CAIRN_PASSWORD_FILE (or the --password-* options), else a terminal prompt.";

#[derive(Parser)]
#[command(
    name = "cairn",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = EXIT_CODES_HELP,
    propagate_version = true
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: commands::Command,
}

/// Options every subcommand takes, listed under their own heading.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Repository location: a directory (./a:b if it has a colon), s3:https://host[:port]/bucket[/prefix], azure:CONTAINER:/PATH or sftp:[USER@]HOST:/PATH
    #[arg(
        short = 'r',
        long = "repo",
        env = "CAIRN_REPOSITORY",
        global = true,
        value_name = "LOCATION"
    )]
    pub repo: Option<String>,

    /// Object storage: requests in flight at once, at most (SFTP: SSH connections)
    #[arg(
        long,
        env = "CAIRN_CONNECTIONS",
        global = true,
        value_name = "N",
        default_value_t = 8,
        value_parser = clap::value_parser!(u16).range(1..=256)
    )]
    pub connections: u16,

    /// Read the password from this file (a trailing newline is ignored)
    #[arg(long, env = "CAIRN_PASSWORD_FILE", global = true, value_name = "FILE")]
    pub password_file: Option<PathBuf>,

    /// Run this shell command and use its output as the password
    #[arg(
        long,
        env = "CAIRN_PASSWORD_COMMAND",
        global = true,
        value_name = "COMMAND",
        hide_env_values = true
    )]
    pub password_command: Option<String>,

    /// Directory of the local index cache [default: ~/.cache/cairn]
    #[arg(long, env = "CAIRN_CACHE_DIR", global = true, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Use a temporary index cache, removed on exit
    #[arg(long, global = true)]
    pub no_cache: bool,

    /// Print nothing but errors (and skipped-file warnings)
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Print more (repeat for even more)
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Print machine-readable JSON on stdout
    #[arg(long, global = true)]
    pub json: bool,

    /// Configuration file: its repository, password and cache settings
    /// apply where no option or variable gives them, and its [env] is set
    /// (cairn run: default ~/.config/cairn/cairn.toml, then
    /// /etc/cairn/cairn.toml)
    #[arg(long, env = "CAIRN_CONFIG", global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl GlobalArgs {
    /// These options with the configuration file's settings filled in
    /// where none was given (options and variables win over the file).
    pub fn with_config(&self, config: &jobs::ConfigFile) -> GlobalArgs {
        let mut g = self.clone();
        if g.repo.as_deref().is_none_or(str::is_empty) {
            g.repo = config.repository.clone();
        }
        // CAIRN_PASSWORD wins over the file's password settings too.
        let password_var = std::env::var_os("CAIRN_PASSWORD").is_some_and(|p| !p.is_empty());
        if g.password_file.is_none() && g.password_command.is_none() && !password_var {
            g.password_file = config.password_file.clone();
            g.password_command = config.password_command.clone();
        }
        if g.cache_dir.is_none() {
            g.cache_dir = config.cache_dir.clone();
        }
        if let (Some(n), true) = (config.connections, self.connections == 8) {
            g.connections = n;
        }
        g
    }

    /// The repository location given.
    pub fn location(&self) -> anyhow::Result<&str> {
        match &self.repo {
            Some(r) if !r.is_empty() => Ok(r),
            _ => anyhow::bail!(cairn_core::Error::invalid(
                "no repository given: use -r/--repo or set CAIRN_REPOSITORY"
            )),
        }
    }

    /// The storage at the repository location.
    pub fn backend(&self) -> anyhow::Result<Arc<dyn Backend>> {
        Ok(backend::open(self.location()?, &self.store_options())?)
    }

    /// Object storage settings from the command line (`--connections`),
    /// for this repository and a second one (copy, init --from).
    pub fn store_options(&self) -> ObjectStoreOptions {
        let mut o = ObjectStoreOptions::default();
        o.connections = usize::from(self.connections);
        o.on_retry = (self.verbose > 0).then_some(tell_retry as fn(&str));
        o
    }

    pub fn cache(&self) -> CacheLocation {
        if self.no_cache {
            CacheLocation::Temporary
        } else if let Some(dir) = &self.cache_dir {
            CacheLocation::Dir(dir.clone())
        } else {
            CacheLocation::user_default()
        }
    }

    /// Finds the repository, reads the password, opens it.
    pub fn open(&self) -> anyhow::Result<Repository> {
        let repo = self.open_quietly()?;
        for w in repo.warnings() {
            eprintln!("cairn: warning: {w}");
        }
        Ok(repo)
    }

    /// [`GlobalArgs::open`] for adding backups: a write-only key opens the
    /// repository too (`cairn key add --write-only`), and what it gives
    /// cannot read.
    pub fn open_to_add(&self) -> anyhow::Result<Appender> {
        let (locked, password, started) = self.unlock_prelude()?;
        let mut repo = locked.unlock_to_add(&password, &self.cache())?;
        repo.set_warning_sink(|w| eprintln!("cairn: warning: {w}"));
        if repo.is_write_only() {
            self.verbose("opened with a write-only key: no parent snapshot, no deltas");
        }
        self.opened(repo.id(), started, &repo.cache(), || repo.index())?;
        for w in repo.warnings() {
            eprintln!("cairn: warning: {w}");
        }
        Ok(repo)
    }

    /// [`GlobalArgs::open`] without printing the warnings of opening
    /// (damaged index objects), for commands that report them themselves.
    pub fn open_quietly(&self) -> anyhow::Result<Repository> {
        let (locked, password, started) = self.unlock_prelude()?;
        let mut repo = locked.unlock(&password, &self.cache())?;
        repo.set_warning_sink(|w| eprintln!("cairn: warning: {w}"));
        self.opened(repo.id(), started, &repo.cache(), || repo.index())?;
        Ok(repo)
    }

    /// The repository found, its password read, and when opening began.
    fn unlock_prelude(
        &self,
    ) -> anyhow::Result<(repository::LockedRepository, Vec<u8>, std::time::Instant)> {
        let locked = repository::locate(self.backend()?)?;
        let password = password::read(self, false)?;
        Ok((locked, password, std::time::Instant::now()))
    }

    /// With -v: how long opening took and what the index cache holds.
    fn opened(
        &self,
        id: &cairn_core::Id,
        started: std::time::Instant,
        cache: &cairn_core::repo::cache::IndexCache,
        index: impl FnOnce() -> cairn_core::Result<cairn_core::repo::cache::CacheReader>,
    ) -> anyhow::Result<()> {
        if self.verbose > 0 {
            self.verbose(format!(
                "opened repository {} in {:.2}s; index cache {} ({} blobs)",
                id.short(),
                started.elapsed().as_secs_f64(),
                cache.path().display(),
                index()?.len()?
            ));
        }
        Ok(())
    }

    /// Prints a line unless quiet or JSON. Best effort: a reader that went
    /// away must not turn a finished backup into a failure.
    pub fn say(&self, line: impl AsRef<str>) {
        if !self.quiet && !self.json {
            let _ = writeln!(std::io::stdout(), "{}", line.as_ref());
        }
    }

    /// Prints a line only with -v.
    pub fn verbose(&self, line: impl AsRef<str>) {
        if self.verbose > 0 && !self.json {
            eprintln!("{}", line.as_ref());
        }
    }
}

/// Prints JSON on stdout (an I/O error stays an I/O error, so a closed
/// pipe is recognised as one).
pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut buf = serde_json::to_vec(value)?;
    buf.push(b'\n');
    std::io::stdout().lock().write_all(&buf)?;
    Ok(())
}

/// Whether the error is a closed standard output (`cairn dump latest f |
/// head`), which is the reader's choice and not a failure. Only then: a
/// broken pipe cairn meets anywhere else (psql gone in the middle of a
/// drill, a tar reader that stopped on a full disk) is a failure, so the
/// error must be a broken pipe *and* stdout's reader must be gone.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    is_broken_pipe_error(err) && stdout_reader_gone()
}

/// Whether stdout is a pipe or socket whose reading end is closed (poll
/// reports an error condition on it).
fn stdout_reader_gone() -> bool {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let stdout = std::io::stdout();
    let mut fds = [PollFd::new(&stdout, PollFlags::OUT)];
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    poll(&mut fds, Some(&now)).is_ok()
        && fds[0].revents().intersects(PollFlags::ERR | PollFlags::HUP)
}

fn is_broken_pipe_error(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .map(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            .or_else(|| {
                e.downcast_ref::<cairn_core::Error>()
                    .map(|c| c.io_kind() == Some(std::io::ErrorKind::BrokenPipe))
            })
            .unwrap_or(false)
    })
}

fn exit_code_of(err: &anyhow::Error) -> ExitCode {
    if let Some(coded) = err.chain().find_map(|e| e.downcast_ref::<exit::Coded>()) {
        return coded.0;
    }
    err.chain()
        .find_map(|e| e.downcast_ref::<cairn_core::Error>())
        .map(|e| ExitCode::of(e.kind()))
        .unwrap_or(ExitCode::Error)
}

/// Applies `--config FILE`: its repository, password and cache settings
/// where no option or variable gives them (its `[env]` was applied before
/// the command line was parsed, [`config_env_first`]).
fn with_config_file(global: GlobalArgs) -> anyhow::Result<GlobalArgs> {
    match &global.config {
        Some(file) => Ok(global.with_config(&jobs::ConfigFile::load(file)?)),
        None => Ok(global),
    }
}

/// Sets the `[env]` of the configuration file that `--config FILE`,
/// `--config=FILE` or `CAIRN_CONFIG` names, for the variables the
/// environment lacks (the environment wins, as over the file's other
/// settings): every command then sees them, and so do what it runs (a
/// dump command, the S3 client), as `cairn run` gives them to its steps.
/// Before the command line is parsed, so that `CAIRN_*` variables set
/// there count like real ones; and before any thread exists. A file that
/// cannot be read is left for [`with_config_file`] to report.
fn config_env_first() {
    let mut file: Option<std::ffi::OsString> = None;
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--" {
            break;
        }
        if arg == "--config" {
            file = args.next();
        } else if let Some(v) = arg.to_str().and_then(|a| a.strip_prefix("--config=")) {
            file = Some(v.into());
        }
    }
    let Some(file) = file.or_else(|| std::env::var_os("CAIRN_CONFIG")) else {
        return;
    };
    if let Ok(config) = jobs::ConfigFile::load(std::path::Path::new(&file)) {
        for (name, value) in &config.env {
            if std::env::var_os(name).is_none() {
                std::env::set_var(name, value);
            }
        }
    }
}

/// Where the help of every subcommand (nested ones too: `repair index`)
/// points for the exit codes, which `cairn --help` and the man page's
/// EXIT STATUS list once.
const EXIT_CODES_POINTER: &str =
    "Exit codes: 0 on success; the rest in cairn --help (EXIT STATUS in man cairn).";

fn with_exit_codes(command: clap::Command) -> clap::Command {
    command.mut_subcommands(|sub| {
        let extra = sub
            .get_after_help()
            .map(|h| format!("{h}\n\n{EXIT_CODES_POINTER}"))
            .unwrap_or_else(|| EXIT_CODES_POINTER.to_string());
        with_exit_codes(sub.after_help(extra))
    })
}

/// The whole command line definition, as `--help`, completions and man
/// pages show it.
pub fn cli_command() -> clap::Command {
    // Every subcommand's --help ends with the exit codes too.
    with_exit_codes(Cli::command())
}

fn main() -> std::process::ExitCode {
    // An empty CAIRN_* variable counts as unset, as restic's do
    // (`CAIRN_PASSWORD_FILE=` in a cron file must not be a file named "").
    // Before any thread exists.
    for (name, value) in std::env::vars_os() {
        if value.is_empty() && name.to_str().is_some_and(|n| n.starts_with("CAIRN_")) {
            std::env::remove_var(name);
        }
    }
    config_env_first();
    let command = cli_command();
    let cli = match Cli::from_arg_matches(&command.get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let global = with_config_file(cli.global);
    // First Ctrl-C / SIGTERM: stop cleanly (no snapshot, temp files
    // removed). Second: leave at once.
    let _ = ctrlc::set_handler(|| {
        if CANCEL.swap(true, Ordering::SeqCst) {
            std::process::exit(ExitCode::Interrupted as i32);
        }
    });
    let code = match global.and_then(|g| commands::run(&g, cli.command)) {
        Ok(code) => code,
        Err(err) if is_broken_pipe(&err) => ExitCode::Success,
        Err(err) => {
            let code = exit_code_of(&err);
            if code == ExitCode::Interrupted {
                eprintln!("cairn: interrupted; nothing was committed");
            } else {
                eprintln!("cairn: error: {err:#}");
            }
            code
        }
    };
    // Every code is below 256 (`exit::ExitCode`).
    std::process::ExitCode::from(code as u8)
}

/// Prints a storage retry (`-v`).
fn tell_retry(line: &str) {
    eprintln!("cairn: {line}");
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// clap's own consistency checks over every command: unique argument
    /// names (the option structs flattened from cairn-core share a
    /// namespace with the CLI's), valid defaults, no conflicting shorts.
    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
