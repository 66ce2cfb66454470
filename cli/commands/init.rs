//! `cairn init`.

use bytesize::ByteSize;
use clap::Args;
use serde_json::json;

use cairn_core::chunk::chunker::ChunkerParams;
use cairn_core::format::keyfile::{KdfParams, KeyInfo};
use cairn_core::repo::repository::{self, InitOptions};
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
        long_help = "Average chunk size. Chunks are cut between a quarter and four times this \
                     size; fixed for the life of the repository. Default 32KiB, or 8KiB with \
                     --no-delta: chosen by measurement on pg_dump series (docs/benchmarks.md). \
                     With deltas a changed chunk costs about its changes, so larger chunks \
                     mean fewer of them; stored whole, smaller chunks store less."
    )]
    chunk_size: Option<ByteSize>,

    /// zstd compression level, 0 (off) to 22
    #[arg(long, value_name = "LEVEL", default_value_t = cairn_core::format::config::DEFAULT_COMPRESSION_LEVEL)]
    compression: i32,

    /// Store new chunks that resemble stored ones as deltas against them (the default)
    #[arg(
        long,
        conflicts_with = "no_delta",
        long_help = "Store new chunks that resemble stored ones as zstd deltas against them. \
                     This is the default; the flag only says so. On a series of nightly dumps \
                     it makes each night's changes about four times smaller (docs/benchmarks.md). \
                     Each delta's base is read back during the backup and during \
                     restore (a nightly backup took 1.06 times as long on the benchmark). \
                     `backup --no-delta` turns it off for one run."
    )]
    delta: bool,

    /// Store every new chunk whole, never as a delta (default chunk size then 8KiB)
    #[arg(
        long,
        long_help = "Store every new chunk whole, never as a delta against a similar stored \
                     chunk, for good (`backup --no-delta` does it for one run). The default \
                     chunk size is then 8KiB (--copy-chunker-params takes the source's). \
                     Without deltas a backup reads nothing back from the repository and a \
                     restore reads exactly one blob per chunk, at the price of a repository \
                     about 1.6 times larger on nightly dumps. Implied by --compression 0."
    )]
    no_delta: bool,

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
    if args.delta && args.compression == 0 {
        anyhow::bail!(Error::invalid(
            "--delta needs compression: deltas are zstd frames (--compression 1 or more)"
        ));
    }
    let delta = !args.no_delta && args.compression > 0;
    let chunker = match &args.from {
        // The source's parameters, seed included; read before asking for
        // the new password, so a wrong source password fails early.
        Some(from) => args
            .password2
            .open(global, from, "source repository", None)?
            .chunker_identity(),
        None => match args.chunk_size {
            Some(size) => ChunkerParams::with_average(to_u32("chunk size", size)?),
            None => ChunkerParams::default_for(delta),
        },
    };
    let mut opts = InitOptions::default();
    opts.chunker = chunker;
    opts.compression_level = args.compression;
    opts.delta = delta;
    opts.pack_size = to_u32("pack size", args.pack_size)?;
    opts.kdf = args.kdf.params()?;
    opts.prune_grace_seconds = args.prune_grace;
    opts.chunker.validate()?;
    let password = password::read(global, true)?;
    let info = KeyInfo {
        created: SnapshotTime::now().to_rfc3339(),
        host: cairn_core::sys::hostname(),
        user: cairn_core::sys::username(),
        kind: "full".into(),
    };
    let id = repository::init(backend.clone(), &password, &opts, info)?;
    // Reported, not relied on (`docs/design.md` §1.3): a store can honour
    // it one request at a time and still not under concurrency.
    let create_only =
        backend.atomic_create_only() || cairn_core::backend::claim::probe(backend.as_ref())?;
    let avg_chunk = opts.chunker.avg_size;
    if global.json {
        print_json(&json!({
            "message_type": "initialized",
            "id": id.to_hex(),
            "repository": location,
            "delta": opts.delta,
            "chunk_size": avg_chunk,
            "create_only": create_only,
        }))?;
    } else {
        let deltas = if opts.delta { "on" } else { "off" };
        let size = if avg_chunk.is_multiple_of(1024) {
            format!("{} KiB", avg_chunk / 1024)
        } else {
            format!("{avg_chunk} bytes")
        };
        global.say(format!(
            "created cairn repository {} at {location} (delta compression {deltas}, chunks of \
             {size} on average)",
            id.short(),
        ));
        if !create_only {
            global.say(
                "note: this storage overwrites objects instead of refusing a second write of one \
                 name (it ignores If-None-Match); cairn writes its config and WAL records \
                 through claims on object storage (repo-format.md §15.4)",
            );
        }
        global
            .say("Keep the password safe: without it the data in this repository cannot be read.");
    }
    Ok(ExitCode::Success)
}
