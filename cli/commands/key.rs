//! `cairn key list | add | remove | passwd`: the key files of a repository,
//! each wrapping the master key under its own password.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::json;

use cairn_core::format::keyfile::{KdfParams, KeyInfo};
use cairn_core::ops::key;
use cairn_core::repo::repository::Repository;
use cairn_core::time::SnapshotTime;
use cairn_core::Error;

use crate::commands::init::KdfArgs;
use crate::exit::ExitCode;
use crate::output::table;
use crate::password::{read_from, Source};
use crate::{print_json, GlobalArgs};

#[derive(Args)]
pub struct KeyArgs {
    #[command(subcommand)]
    what: KeyCommand,
}

#[derive(Subcommand)]
enum KeyCommand {
    /// List the key files: ID, kind, user, host, when added, KDF cost; * marks the one in use
    List,
    /// Add a key (a new password for the same repository), or a write-only key
    #[command(long_about = "\
Add a key: a new key file that wraps the repository's master key under a new
password, with its own Argon2id cost. A full key opens everything; give each
admin or machine its own and remove it when it leaves. The new password comes
from --new-password-file, CAIRN_NEW_PASSWORD, or a prompt (asked twice).

With --write-only the key can only add backups: `cairn backup`, `cairn
wal-push` and `cairn pg basebackup` work with it (deduplicating against what
is stored), every other command is refused with exit 13. It holds no key that decrypts stored data: what it writes is sealed
with a fresh key per run that only a full key can open, and old packs and
snapshots stay unreadable to it even outside cairn. Give it to a database
server that backs itself up; keep a full key elsewhere. It cannot stop a
storage-level delete: use object lock or append-only storage for that.
A write-only key cannot read the bases of deltas, so it stores every changed
chunk whole: a repository written mainly by write-only keys stores less when
created with `cairn init --no-delta` (8 KiB chunks, not 32 KiB).")]
    Add(AddArgs),
    /// Remove a key file (by ID or unique prefix)
    #[command(long_about = "\
Remove a key file, by ID or unique prefix. Removing the key in use (the one
whose password opened the repository) or the last key with full access needs
--force: without a full key nothing in the repository can be read again.")]
    Remove(RemoveArgs),
    /// Change the password of the key in use (adds the new key, then removes the old)
    Passwd(PasswdArgs),
}

/// Where the new password comes from, and the new key's KDF cost.
#[derive(Args)]
struct NewKeyArgs {
    /// Read the new password from this file (a trailing newline is ignored)
    #[arg(long, value_name = "FILE", env = "CAIRN_NEW_PASSWORD_FILE")]
    new_password_file: Option<PathBuf>,

    /// Make a random password, write it to FILE (new, mode 0600), and give the key the lightest Argon2 cost
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with_all = ["kdf_memory", "kdf_iterations", "kdf_parallelism"],
        long_help = "Make a password of 32 random bytes (64 hex digits), write it to FILE (which \
                     must not exist; created with mode 0600), and give the key the lightest \
                     Argon2id cost (64 KiB, one pass) instead of --kdf-*: stretching protects a \
                     password a person chose against guessing, and adds nothing to 256 random \
                     bits. A key that opens in a millisecond suits commands that run often, like \
                     archive_command's `cairn wal-push` (with --write-only) and restore_command's \
                     `cairn wal-fetch`: point CAIRN_PASSWORD_FILE at FILE. Whoever can read FILE \
                     holds the key, as with any password file. It takes the place of \
                     --new-password-file and CAIRN_NEW_PASSWORD."
    )]
    generate_password: Option<PathBuf>,

    #[command(flatten)]
    kdf: KdfArgs,
}

/// The Argon2id cost of a key whose password is random (64 KiB, one
/// pass, one lane): the least cairn accepts.
const RANDOM_PASSWORD_KDF: KdfParams = KdfParams {
    memory_kib: 64,
    iterations: 1,
    parallelism: 1,
};

impl NewKeyArgs {
    /// The new password and the KDF cost to wrap the key with.
    fn password_and_kdf(&self) -> anyhow::Result<(Vec<u8>, KdfParams)> {
        if let Some(file) = &self.generate_password {
            let random: [u8; 32] = cairn_core::crypto::random_bytes()?;
            let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
            write_secret(file, format!("{hex}\n").as_bytes())?;
            return Ok((hex.into_bytes(), RANDOM_PASSWORD_KDF));
        }
        let kdf = self.kdf.params()?;
        let password = read_from(
            &Source {
                file: self.new_password_file.as_deref(),
                ..Source::NEW
            },
            true,
        )?;
        Ok((password, kdf))
    }
}

impl NewKeyArgs {
    /// `result`; a failure names the generated password file (if any),
    /// which is kept: the key may have been stored before the failure (a
    /// put whose answer was lost; `key passwd` failing to remove the old
    /// key after adding the new), and then only that file opens it.
    fn unless_failed<T>(&self, result: cairn_core::Result<T>) -> anyhow::Result<T> {
        match (result, &self.generate_password) {
            (Err(e), Some(file)) => Err(anyhow::anyhow!(e).context(format!(
                "the new password is in {} (kept: `cairn key list` shows whether its key was added)",
                file.display()
            ))),
            (result, _) => Ok(result?),
        }
    }
}

/// Writes `bytes` to a new file readable by its owner only.
fn write_secret(file: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |e: std::io::Error| {
        let kind = if e.kind() == std::io::ErrorKind::AlreadyExists {
            cairn_core::ErrorKind::InvalidInput
        } else {
            cairn_core::ErrorKind::Io
        };
        anyhow::anyhow!(Error::new(
            kind,
            format!("writing the new password to {}: {e}", file.display())
        ))
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
        .map_err(io)?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(io)
}

#[derive(Args)]
struct AddArgs {
    #[command(flatten)]
    new: NewKeyArgs,
    /// A key that can add backups but not read, list, restore, forget or prune them
    #[arg(long)]
    write_only: bool,
    /// Host name recorded in the key (default: this machine's)
    #[arg(long, value_name = "HOST")]
    host: Option<String>,
    /// User name recorded in the key (default: the current user)
    #[arg(long, value_name = "USER")]
    user: Option<String>,
}

#[derive(Args)]
struct RemoveArgs {
    /// Key file ID or unique prefix
    #[arg(value_name = "ID")]
    id: String,
    /// Allow removing the key in use or the last full-access key
    #[arg(long)]
    force: bool,
}

#[derive(Args)]
struct PasswdArgs {
    #[command(flatten)]
    new: NewKeyArgs,
}

fn info(host: Option<String>, user: Option<String>) -> KeyInfo {
    KeyInfo {
        created: SnapshotTime::now().to_rfc3339(),
        host: host.unwrap_or_else(cairn_core::sys::hostname),
        user: user.unwrap_or_else(cairn_core::sys::username),
        kind: "full".into(),
    }
}

pub fn run(global: &GlobalArgs, args: KeyArgs) -> anyhow::Result<ExitCode> {
    let repo = global.open()?;
    match args.what {
        KeyCommand::List => list(global, &repo),
        KeyCommand::Add(a) => add(global, &repo, a),
        KeyCommand::Remove(a) => remove(global, &repo, a),
        KeyCommand::Passwd(a) => passwd(global, &repo, a),
    }
}

fn list(global: &GlobalArgs, repo: &Repository) -> anyhow::Result<ExitCode> {
    let keys = key::list(repo)?;
    if global.json {
        print_json(&keys)?;
    } else if !global.quiet {
        let rows: Vec<Vec<String>> = keys.iter().map(key_row).collect();
        print!(
            "{}",
            table(&[" ID", "Kind", "User", "Host", "Added", "KDF"], &rows)
        );
        println!("{} keys (* the one in use)", keys.len());
    }
    Ok(ExitCode::Success)
}

/// One key's line of `key list`.
fn key_row(k: &key::KeyEntry) -> Vec<String> {
    let mark = if k.current { "*" } else { " " };
    match (&k.info, &k.kdf) {
        (Some(i), Some(kdf)) => vec![
            format!("{mark}{}", &k.id[..8]),
            i.kind.clone(),
            i.user.clone(),
            i.host.clone(),
            SnapshotTime::parse_rfc3339(&i.created)
                .map(|t| t.local_display())
                .unwrap_or_else(|_| i.created.clone()),
            format!(
                "{} MiB, t={}, p={}",
                kdf.memory_kib / 1024,
                kdf.iterations,
                kdf.parallelism
            ),
        ],
        _ => vec![
            format!("{mark}{}", &k.id[..8]),
            "unreadable".into(),
            String::new(),
            String::new(),
            String::new(),
            k.error.clone().unwrap_or_default(),
        ],
    }
}

fn add(global: &GlobalArgs, repo: &Repository, a: AddArgs) -> anyhow::Result<ExitCode> {
    let (password, kdf) = a.new.password_and_kdf()?;
    let info = info(a.host, a.user);
    let added = if a.write_only {
        key::add_write_only(repo, &password, kdf, &info).map(|n| (n, "write-only"))
    } else {
        key::add(repo, &password, kdf, &info).map(|n| (n, "full"))
    };
    let (name, kind) = a.new.unless_failed(added)?;
    if global.json {
        print_json(&json!({ "added": name, "kind": kind }))?;
    }
    global.say(format!("added {kind} key {}", &name[..8]));
    if a.write_only && repo.config().compression.deltas_on() {
        global.say(
            "This repository stores deltas, which a write-only key cannot make (it cannot \
             read their bases): its backups store changed chunks whole. A repository \
             written mainly by write-only keys stores less made with `init --no-delta`.",
        );
    }
    Ok(ExitCode::Success)
}

fn remove(global: &GlobalArgs, repo: &Repository, a: RemoveArgs) -> anyhow::Result<ExitCode> {
    let keys = key::list(repo)?;
    let target = key::resolve(&keys, &a.id)?;
    if let (Some(risk), false) = (key::removal_risk(&keys, target), a.force) {
        anyhow::bail!(Error::invalid(format!(
            "{risk}; use --force to remove it anyway"
        )));
    }
    key::remove(repo, &target.id, !a.force)?;
    if global.json {
        print_json(&json!({ "removed": target.id }))?;
    }
    global.say(format!("removed key {}", &target.id[..8]));
    Ok(ExitCode::Success)
}

fn passwd(global: &GlobalArgs, repo: &Repository, a: PasswdArgs) -> anyhow::Result<ExitCode> {
    let (password, kdf) = a.new.password_and_kdf()?;
    // The new key records who changed it; it keeps full access.
    let changed = key::change_password(repo, &password, kdf, &info(None, None));
    let (new, old) = a.new.unless_failed(changed)?;
    if global.json {
        print_json(&json!({ "added": new, "removed": old }))?;
    }
    global.say(format!(
        "password changed: key {} replaces key {}",
        &new[..8],
        &old[..8]
    ));
    Ok(ExitCode::Success)
}
