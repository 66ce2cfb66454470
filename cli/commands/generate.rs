//! `cairn completions` and `cairn man`: shell completions and man pages,
//! generated from the same definitions as `--help`.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use crate::exit::ExitCode;
use crate::GlobalArgs;

#[derive(Args)]
pub struct CompletionsArgs {
    /// The shell
    #[arg(value_enum, value_name = "SHELL")]
    shell: clap_complete::Shell,
}

pub const COMPLETIONS_ABOUT: &str = "\
Print a completion script for SHELL on standard output. To install:

    bash:  cairn completions bash > /etc/bash_completion.d/cairn
    zsh:   cairn completions zsh > \"${fpath[1]}/_cairn\"
    fish:  cairn completions fish > ~/.config/fish/completions/cairn.fish";

#[derive(Args)]
pub struct ManArgs {
    /// Write cairn.1 and one page per subcommand (cairn-backup.1, ...)
    /// into this directory instead of printing cairn.1
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

pub const MAN_ABOUT: &str = "\
Print the man page cairn(1) on standard output, or with --dir write it and a
page for each subcommand into a directory:

    cairn man | man -l -
    cairn man --dir /usr/local/share/man/man1";

pub fn completions(_global: &GlobalArgs, args: CompletionsArgs) -> anyhow::Result<ExitCode> {
    let mut command = crate::cli_command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "cairn", &mut script);
    std::io::stdout().write_all(&script)?;
    Ok(ExitCode::Success)
}

pub fn man(global: &GlobalArgs, args: ManArgs) -> anyhow::Result<ExitCode> {
    let command = crate::cli_command();
    let Some(dir) = args.dir else {
        std::io::stdout().write_all(&main_page(&command)?)?;
        return Ok(ExitCode::Success);
    };
    std::fs::create_dir_all(&dir).map_err(|e| {
        anyhow::anyhow!(cairn_core::Error::io(
            format!("creating {}", dir.display()),
            e
        ))
    })?;
    let written = write_pages(&command, "cairn", "cairn", &dir)?;
    global.say(format!("wrote {written} man pages to {}", dir.display()));
    Ok(ExitCode::Success)
}

/// The environment variables cairn reads (or passes on), for the man
/// page's ENVIRONMENT section.
pub const ENVIRONMENT: &[(&str, &str)] = &[
    ("CAIRN_REPOSITORY", "The repository location (-r, --repo)."),
    ("CAIRN_PASSWORD", "The repository password itself."),
    ("CAIRN_PASSWORD_FILE", "A file holding the repository password (--password-file)."),
    ("CAIRN_PASSWORD_COMMAND", "A command printing the repository password (--password-command)."),
    ("CAIRN_REPOSITORY2", "The repository copy copies to (copy --to)."),
    ("CAIRN_PASSWORD2", "The other repository's password (copy --to, init --from)."),
    ("CAIRN_PASSWORD_FILE2", "A file holding the other repository's password (--password-file2)."),
    ("CAIRN_PASSWORD_COMMAND2", "A command printing the other repository's password (--password-command2)."),
    ("CAIRN_NEW_PASSWORD", "The password of a new key (key add, key passwd)."),
    ("CAIRN_NEW_PASSWORD_FILE", "A file holding the password of a new key (--new-password-file)."),
    ("CAIRN_CACHE_DIR", "The index cache directory (--cache-dir)."),
    ("CAIRN_CONNECTIONS", "Object storage requests in flight at once, SFTP's SSH connections (--connections)."),
    ("CAIRN_CONFIG", "The configuration file (--config)."),
    ("CAIRN_DRILL_DIR", "Where drill restores its scratch copy (drill --scratch)."),
    ("CAIRN_INTERNAL_WAL_PREFETCH_FILLER", "Set by wal-fetch --prefetch in the environment of the background cairn it starts (with its own command line), which then fills the spool; not for users."),
    ("AWS_ACCESS_KEY_ID", "S3 access key."),
    ("AWS_SECRET_ACCESS_KEY", "S3 secret key."),
    ("AWS_SESSION_TOKEN", "S3 session token, with temporary credentials."),
    ("AWS_DEFAULT_REGION", "S3 region (default us-east-1); AWS_REGION is read when it is unset."),
    ("AWS_REGION", "S3 region, when AWS_DEFAULT_REGION is unset."),
    ("AWS_PROFILE", "The profile of ~/.aws/credentials and ~/.aws/config to use."),
    ("AZURE_ACCOUNT_NAME", "Azure storage account (azure: repositories)."),
    ("AZURE_ACCOUNT_KEY", "Azure storage account key."),
    ("AZURE_ACCOUNT_SAS", "Azure shared access signature, instead of the account key."),
    ("AZURE_ENDPOINT_SUFFIX", "Azure endpoint suffix (default core.windows.net): the blob endpoint is https://ACCOUNT.blob.SUFFIX."),
    ("AZURE_ENDPOINT", "The whole blob endpoint URL instead (Azurite: http://127.0.0.1:10000/devstoreaccount1)."),
    ("PGHOST, PGPORT, PGUSER, PGDATABASE", "libpq's settings, for the pg_dump a --command runs, drill --pg's scratch database and the pg commands."),
    ("XDG_CACHE_HOME, HOME", "The default cache directory: $XDG_CACHE_HOME/cairn, else ~/.cache/cairn."),
    ("XDG_CONFIG_HOME", "Where cairn run looks for cairn/cairn.toml first (else ~/.config)."),
    ("TMPDIR", "The default scratch directory of drill, and of --no-cache's cache."),
];

/// The exit codes of [`crate::exit::EXIT_CODES_HELP`] as (code, meaning).
fn exit_codes() -> Vec<(String, String)> {
    let mut rows: Vec<(String, String)> = Vec::new();
    for line in crate::exit::EXIT_CODES_HELP.lines().skip(1) {
        let text = line.trim_start();
        let indent = line.len() - text.len();
        match (indent <= 4, text.split_once("  ")) {
            (true, Some((code, meaning))) if code.parse::<i32>().is_ok() => {
                rows.push((code.to_string(), meaning.trim().to_string()));
            }
            _ => {
                if let Some(last) = rows.last_mut() {
                    last.1.push(' ');
                    last.1.push_str(text);
                }
            }
        }
    }
    rows
}

/// cairn(1): clap_mangen's sections, then EXIT STATUS and ENVIRONMENT
/// instead of the exit-code table `--help` ends with.
fn main_page(command: &clap::Command) -> anyhow::Result<Vec<u8>> {
    use roff::{bold, roman, Roff};
    let man = clap_mangen::Man::new(command.clone().after_help(None::<&str>));
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;
    man.render_subcommands_section(&mut page)?;
    let mut roff = Roff::new();
    roff.control("SH", ["EXIT STATUS"]);
    for (code, meaning) in exit_codes() {
        roff.control("TP", [])
            .text([bold(code)])
            .text([roman(meaning)]);
    }
    roff.control("SH", ["ENVIRONMENT"]);
    roff.text([roman(
        "A variable set to the empty string counts as unset. Options win over variables.",
    )]);
    for (name, meaning) in ENVIRONMENT {
        roff.control("TP", [])
            .text([bold(*name)])
            .text([roman(*meaning)]);
    }
    roff.to_writer(&mut page)?;
    man.render_version_section(&mut page)?;
    Ok(page)
}

/// Writes the page of `command` (`cairn-repair-index.1` for `name`
/// cairn-repair-index, run as `bin` cairn repair index) and of its
/// subcommands, nested ones too; returns how many.
fn write_pages(
    command: &clap::Command,
    name: &str,
    bin: &str,
    dir: &std::path::Path,
) -> anyhow::Result<usize> {
    let command = command
        .clone()
        .name(name.to_string())
        .bin_name(bin.to_string());
    let path = dir.join(format!("{name}.1"));
    let buf = if name == "cairn" {
        main_page(&command)?
    } else {
        let mut buf = Vec::new();
        clap_mangen::Man::new(command.clone()).render(&mut buf)?;
        buf
    };
    std::fs::write(&path, buf).map_err(|e| {
        anyhow::anyhow!(cairn_core::Error::io(
            format!("writing {}", path.display()),
            e
        ))
    })?;
    let mut n = 1;
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        let sub_name = sub.get_name();
        n += write_pages(
            sub,
            &format!("{name}-{sub_name}"),
            &format!("{bin} {sub_name}"),
            dir,
        )?;
    }
    Ok(n)
}
