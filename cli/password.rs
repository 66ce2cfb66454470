//! Where the repository password comes from, in restic's order:
//! `--password-command` / `CAIRN_PASSWORD_COMMAND` (its output),
//! `--password-file` / `CAIRN_PASSWORD_FILE` (the file's contents), the
//! `CAIRN_PASSWORD` variable, else a terminal prompt. A command and a file
//! together are refused.

use std::io::IsTerminal;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;

use cairn_core::{Error, ErrorKind};

use crate::{GlobalArgs, CANCEL};

/// Drops one trailing newline (`\n` or `\r\n`): files and commands end
/// their output with one, passwords do not.
fn strip_newline(mut s: Vec<u8>) -> Vec<u8> {
    if s.last() == Some(&b'\n') {
        s.pop();
        if s.last() == Some(&b'\r') {
            s.pop();
        }
    }
    s
}

/// The error when `src` gives no password: it names the variables and
/// options of that password (the second repository's, the new key's),
/// not the first repository's, which may well be set.
fn no_password(src: &Source) -> anyhow::Error {
    let mut ways = vec![format!("{}", src.var)];
    ways.push(format!("{} (or {})", src.file_var, src.file_opt));
    if let Some((var, opt)) = src.command_names {
        ways.push(format!("{var} (or {opt})"));
    }
    Error::new(
        ErrorKind::WrongPassword,
        format!(
            "no password given for the {}: set {}, or run on a terminal",
            src.what,
            ways.join(", ")
        ),
    )
    .into()
}

fn prompt(text: &str, src: &Source) -> anyhow::Result<String> {
    rpassword::prompt_password(text).map_err(|_| {
        if CANCEL.load(Ordering::SeqCst) {
            Error::interrupted().into()
        } else {
            no_password(src)
        }
    })
}

/// Where one repository's password may come from.
pub struct Source<'a> {
    pub command: Option<&'a str>,
    pub file: Option<&'a std::path::Path>,
    /// The variable holding the password itself.
    pub var: &'static str,
    /// The variable and option naming the password file.
    pub file_var: &'static str,
    pub file_opt: &'static str,
    /// The variable and option of the password command, if there is one.
    pub command_names: Option<(&'static str, &'static str)>,
    /// "repository" or "target repository", for the prompt.
    pub what: &'static str,
}

impl Source<'_> {
    /// The repository's own password (`CAIRN_PASSWORD`…).
    pub const FIRST: Source<'static> = Source {
        command: None,
        file: None,
        var: "CAIRN_PASSWORD",
        file_var: "CAIRN_PASSWORD_FILE",
        file_opt: "--password-file",
        command_names: Some(("CAIRN_PASSWORD_COMMAND", "--password-command")),
        what: "repository",
    };
    /// The other repository's password (`copy --to`, `init --from`).
    pub const SECOND: Source<'static> = Source {
        command: None,
        file: None,
        var: "CAIRN_PASSWORD2",
        file_var: "CAIRN_PASSWORD_FILE2",
        file_opt: "--password-file2",
        command_names: Some(("CAIRN_PASSWORD_COMMAND2", "--password-command2")),
        what: "other repository",
    };
    /// A new key's password (`key add`, `key passwd`).
    pub const NEW: Source<'static> = Source {
        command: None,
        file: None,
        var: "CAIRN_NEW_PASSWORD",
        file_var: "CAIRN_NEW_PASSWORD_FILE",
        file_opt: "--new-password-file",
        command_names: None,
        what: "new key",
    };
}

/// Reads the password; `confirm` asks twice on a terminal (init).
pub fn read(args: &GlobalArgs, confirm: bool) -> anyhow::Result<Vec<u8>> {
    read_from(
        &Source {
            command: args.password_command.as_deref(),
            file: args.password_file.as_deref(),
            ..Source::FIRST
        },
        confirm,
    )
}

/// Reads a password from `src`, in restic's order.
pub fn read_from(src: &Source, confirm: bool) -> anyhow::Result<Vec<u8>> {
    if src.command.is_some() && src.file.is_some() {
        anyhow::bail!(Error::invalid(
            "a password command and a password file (or their CAIRN_ variables) are mutually exclusive"
        ));
    }
    let pw = if let Some(cmd) = src.command {
        let out = Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| {
                Error::new(
                    ErrorKind::WrongPassword,
                    format!("running password command `{cmd}`: {e}"),
                )
            })?;
        if !out.status.success() {
            return Err(Error::new(
                ErrorKind::WrongPassword,
                format!("password command `{cmd}` failed ({})", out.status),
            )
            .into());
        }
        strip_newline(out.stdout)
    } else if let Some(file) = src.file {
        let bytes = std::fs::read(file).map_err(|e| {
            Error::new(
                ErrorKind::WrongPassword,
                format!(
                    "reading the {} password file {} ({}): {e}",
                    src.what,
                    file.display(),
                    src.file_opt
                ),
            )
        })?;
        strip_newline(bytes)
    } else if let Some(p) = std::env::var_os(src.var).filter(|p| !p.is_empty()) {
        std::os::unix::ffi::OsStringExt::into_vec(p)
    } else if std::io::stderr().is_terminal() || std::io::stdin().is_terminal() {
        let first = prompt(&format!("enter password for {}: ", src.what), src)?;
        if confirm && prompt("enter password again: ", src)? != first {
            anyhow::bail!(Error::invalid("passwords do not match"));
        }
        first.into_bytes()
    } else {
        return Err(no_password(src));
    };
    if pw.is_empty() {
        return Err(Error::new(
            ErrorKind::WrongPassword,
            "an empty password is not a password",
        )
        .into());
    }
    Ok(pw)
}
