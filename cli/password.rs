//! Where the repository password comes from: `CAIRN_PASSWORD`,
//! `--password-command` / `CAIRN_PASSWORD_COMMAND`, `--password-file` /
//! `CAIRN_PASSWORD_FILE`, else a terminal prompt.

use std::io::IsTerminal;
use std::process::{Command, Stdio};

use anyhow::Context;
use cairn_core::{Error, ErrorKind};

use crate::GlobalArgs;

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

/// Reads the password; `confirm` asks twice on a terminal (init).
pub fn read(args: &GlobalArgs, confirm: bool) -> anyhow::Result<Vec<u8>> {
    let pw = if let Ok(p) = std::env::var("CAIRN_PASSWORD") {
        p.into_bytes()
    } else if let Some(cmd) = &args.password_command {
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
    } else if std::io::stderr().is_terminal() || std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("enter password for repository: ")
            .map_err(|_| no_password())?;
        if confirm {
            let again =
                rpassword::prompt_password("enter password again: ").map_err(|_| no_password())?;
            if again != first {
                anyhow::bail!(Error::invalid("passwords do not match"));
            }
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
