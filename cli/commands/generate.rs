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
        let mut page = Vec::new();
        clap_mangen::Man::new(command).render(&mut page)?;
        std::io::stdout().write_all(&page)?;
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
    let mut buf = Vec::new();
    clap_mangen::Man::new(command.clone()).render(&mut buf)?;
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
