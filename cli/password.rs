//! Where the repository password comes from, in restic's order:
//! `--password-command` / `CAIRN_PASSWORD_COMMAND` (its output),
//! `--password-file` / `CAIRN_PASSWORD_FILE` (the file's contents), the
//! `CAIRN_PASSWORD` variable, else a terminal prompt. A command and a file
//! together are refused.

use std::io::IsTerminal;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;

use anyhow::Context;
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

fn no_password() -> anyhow::Error {
    Error::new(
        ErrorKind::WrongPassword,
        "no password given: set CAIRN_PASSWORD, CAIRN_PASSWORD_FILE or CAIRN_PASSWORD_COMMAND, or run on a terminal",
    )
    .into()
}

fn prompt(text: &str) -> anyhow::Result<String> {
    rpassword::prompt_password(text).map_err(|_| {
        if CANCEL.load(Ordering::SeqCst) {
            Error::interrupted().into()
        } else {
            no_password()
        }
    })
}

/// Where one repository's password may come from.
pub struct Source<'a> {
    pub command: Option<&'a str>,
    pub file: Option<&'a std::path::Path>,
    /// The variable holding the password itself.
    pub var: &'static str,
    /// "repository" or "target repository", for the prompt.
    pub what: &'static str,
}

/// Reads the password; `confirm` asks twice on a terminal (init).
pub fn read(args: &GlobalArgs, confirm: bool) -> anyhow::Result<Vec<u8>> {
    read_from(
        &Source {
            command: args.password_command.as_deref(),
            file: args.password_file.as_deref(),
            var: "CAIRN_PASSWORD",
            what: "repository",
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
            .with_context(|| format!("running password command `{cmd}`"))?;
        if !out.status.success() {
            return Err(Error::new(
                ErrorKind::WrongPassword,
                format!("password command `{cmd}` failed ({})", out.status),
            )
            .into());
        }
        strip_newline(out.stdout)
    } else if let Some(file) = src.file {
        let bytes = std::fs::read(file)
            .with_context(|| format!("reading password file {}", file.display()))?;
        strip_newline(bytes)
    } else if let Some(p) = std::env::var_os(src.var) {
        std::os::unix::ffi::OsStringExt::into_vec(p)
    } else if std::io::stderr().is_terminal() || std::io::stdin().is_terminal() {
        let first = prompt(&format!("enter password for {}: ", src.what))?;
        if confirm && prompt("enter password again: ")? != first {
            anyhow::bail!(Error::invalid("passwords do not match"));
        }
        first.into_bytes()
    } else {
        return Err(no_password());
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
