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

/// Reads the password; `confirm` asks twice on a terminal (init).
pub fn read(args: &GlobalArgs, confirm: bool) -> anyhow::Result<Vec<u8>> {
    if args.password_command.is_some() && args.password_file.is_some() {
        anyhow::bail!(Error::invalid(
            "--password-command and --password-file (or their CAIRN_ variables) are mutually exclusive"
        ));
    }
    let pw = if let Some(cmd) = &args.password_command {
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
    } else if let Some(file) = &args.password_file {
        let bytes = std::fs::read(file)
            .with_context(|| format!("reading password file {}", file.display()))?;
        strip_newline(bytes)
    } else if let Some(p) = std::env::var_os("CAIRN_PASSWORD") {
        std::os::unix::ffi::OsStringExt::into_vec(p)
    } else if std::io::stderr().is_terminal() || std::io::stdin().is_terminal() {
        let first = prompt("enter password for repository: ")?;
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
