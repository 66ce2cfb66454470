//! `cairn init`.

use bytesize::ByteSize;
use clap::Args;
use serde_json::json;

use cairn_core::chunker::ChunkerParams;
use cairn_core::keyfile::{KdfParams, KeyInfo};
use cairn_core::repository::{self, InitOptions};
use cairn_core::time::SnapshotTime;
use cairn_core::Error;

use crate::commands::SecondPasswordArgs;
use crate::exit::ExitCode;
use crate::{password, print_json, GlobalArgs};

#[derive(Args)]
pub struct InitArgs {
    /// Average chunk size; chunks are between a quarter and four times this
    #[arg(
        long,
        conflicts_with = "copy_chunker_params",
        value_name = "SIZE",
        default_value = "8KiB",
        long_help = "Average chunk size. Chunks are cut between a quarter and four times this \
                     size. Smaller chunks deduplicate nightly dumps better (see README: 8 KiB \
                     was chosen by measurement on pg_dump series); fixed for the life of the \
                     repository."
    )]
    chunk_size: ByteSize,

    /// zstd compression level, 0 (off) to 22
    #[arg(long, value_name = "LEVEL", default_value_t = cairn_core::config::DEFAULT_COMPRESSION_LEVEL)]
    compression: i32,

    /// Store new chunks that resemble stored ones as deltas against them (experimental)
    #[arg(
        long,
        long_help = "Store new chunks that resemble stored ones as zstd deltas against them \
                     (experimental, off by default). On a series of nightly dumps this makes \
                     each night's changes about three times smaller (README, Benchmarks). Each \
                     delta's base is read back during the backup and during restore. \
                     `backup --no-delta` turns it off for one run."
    )]
    delta: bool,

    /// Target size of pack files
    #[arg(long, value_name = "SIZE", default_value = "16MiB")]
    pack_size: ByteSize,

    #[command(flatten)]
    kdf: KdfArgs,

    /// How long prune keeps a pack marked obsolete before deleting it; backups must finish within it
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = crate::commands::prune::parse_duration_seconds)]
    prune_grace: u64,

    /// Cut data exactly like the repository given with --from (same chunk sizes and seed)
    #[arg(
        long,
        requires = "from",
        long_help = "Cut data exactly like the repository given with --from: the same chunk \
                     sizes and the same chunker seed. Snapshots copied from it with `cairn \
                     copy` then deduplicate against backups made directly into this \
                     repository (the same dump cuts into the same chunks in both). The keys \
                     stay this repository's own."
    )]
    copy_chunker_params: bool,

    /// The repository to take the chunker parameters from (its password: CAIRN_PASSWORD2, --password-file2, --password-command2)
    #[arg(long, value_name = "LOCATION", requires = "copy_chunker_params")]
    from: Option<String>,

    #[command(flatten)]
    password2: SecondPasswordArgs,
}

/// The Argon2id cost of a new key (`init`, `key add`, `key passwd`).
#[derive(Args)]
pub(crate) struct KdfArgs {
    /// Argon2id memory cost of the key
    #[arg(long, value_name = "SIZE", default_value = "48MiB")]
    kdf_memory: ByteSize,

    /// Argon2id passes
    #[arg(long, value_name = "N", default_value_t = KdfParams::default().iterations)]
    kdf_iterations: u32,

    /// Argon2id lanes
    #[arg(long, value_name = "N", default_value_t = KdfParams::default().parallelism)]
    kdf_parallelism: u32,
}

impl KdfArgs {
    /// The parameters, checked against cairn's bounds.
    pub(crate) fn params(&self) -> anyhow::Result<KdfParams> {
        let kdf = KdfParams {
            memory_kib: to_u32("KDF memory", ByteSize::b(self.kdf_memory.as_u64() / 1024))?,
            iterations: self.kdf_iterations,
            parallelism: self.kdf_parallelism,
        };
        kdf.check()?;
        Ok(kdf)
    }
}

fn to_u32(what: &str, size: ByteSize) -> anyhow::Result<u32> {
    u32::try_from(size.as_u64())
        .map_err(|_| Error::invalid(format!("{what} {size} is too large")).into())
}

pub fn run(global: &GlobalArgs, args: InitArgs) -> anyhow::Result<ExitCode> {
    let location = global.location()?;
    let backend = global.backend()?;
    if repository::locate(backend.clone()).is_ok() {
        anyhow::bail!(Error::new(
            cairn_core::ErrorKind::RepositoryExists,
            format!("a repository already exists at {location}")
        ));
    }
    let chunker = match &args.from {
        // The source's parameters, seed included; read before asking for
        // the new password, so a wrong source password fails early.
        Some(from) => args
            .password2
            .open(global, from, "source repository", None)?
            .chunker_identity(),
        None => ChunkerParams::with_average(to_u32("chunk size", args.chunk_size)?),
    };
    let opts = InitOptions {
        chunker,
        compression_level: args.compression,
        delta: args.delta,
        pack_size: to_u32("pack size", args.pack_size)?,
        kdf: args.kdf.params()?,
        prune_grace_seconds: args.prune_grace,
    };
    opts.chunker.validate()?;
    let password = password::read(global, true)?;
    let info = KeyInfo {
        created: SnapshotTime::now().to_rfc3339(),
        host: cairn_core::backup::hostname(),
        user: cairn_core::backup::username(),
        kind: "full".into(),
    };
    let id = repository::init(backend, &password, &opts, info)?;
    if global.json {
        print_json(&json!({
            "message_type": "initialized",
            "id": id.to_hex(),
            "repository": location,
        }))?;
    } else {
        global.say(format!(
            "created cairn repository {} at {}",
            id.short(),
            location
        ));
        global
            .say("Keep the password safe: without it the data in this repository cannot be read.");
    }
    Ok(ExitCode::Success)
}
