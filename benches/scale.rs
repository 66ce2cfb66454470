//! Fills a repository with millions of synthetic chunks, for the scale
//! benchmark (`benches/scale.sh`): a nightly backup into a repository that
//! already indexes 10 million chunks, compared with one into a fresh
//! repository.
//!
//!   cargo bench --bench scale -- generate REPO CHUNKS [SNAPSHOTS=1000] [CHUNK_BYTES=64]
//!
//! REPO must exist (`cairn init`); its password is read from
//! CAIRN_PASSWORD, its cache goes to CAIRN_CACHE_DIR (as for cairn).
//! The chunks are real sealed blobs in real packs, indexed, and referenced
//! by SNAPSHOTS snapshots tagged `synthetic` (`cairn check` passes).
//!
//! Run without arguments (as `cargo test` does), it checks itself on a
//! small temporary repository.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use cairn_core::backend::{self, ObjectStoreOptions};
use cairn_core::chunk::chunker::ChunkerParams;
use cairn_core::format::keyfile::{KdfParams, KeyInfo};
use cairn_core::ops::check::{self, CheckOptions, NoCheckProgress};
use cairn_core::repo::repository::{self, CacheLocation, InitOptions, Repository};
use cairn_core::testing::benchgen;
use cairn_core::Result;

fn open(location: &str, password: &[u8], cache: CacheLocation) -> Result<Repository> {
    let backend = backend::open(location, &ObjectStoreOptions::default())?;
    repository::locate(backend)?.unlock(password, &cache)
}

fn generate(args: &[String]) -> Result<()> {
    let usage = "usage: scale generate REPO CHUNKS [SNAPSHOTS] [CHUNK_BYTES]";
    let number = |i: usize, default: u64| -> Result<u64> {
        match args.get(i) {
            None => Ok(default),
            Some(s) => s
                .replace('_', "")
                .parse()
                .map_err(|_| cairn_core::Error::invalid(format!("{s:?} is not a number; {usage}"))),
        }
    };
    let location = args
        .first()
        .ok_or_else(|| cairn_core::Error::invalid(usage))?;
    let chunks = number(1, 10_000_000)?;
    let snapshots = number(2, 1000)?;
    let chunk_len = number(3, 64)? as usize;
    let password = std::env::var("CAIRN_PASSWORD")
        .map_err(|_| cairn_core::Error::invalid("set CAIRN_PASSWORD"))?;
    let cache = match std::env::var_os("CAIRN_CACHE_DIR") {
        Some(dir) => CacheLocation::Dir(PathBuf::from(dir)),
        None => CacheLocation::user_default(),
    };
    let repo = open(location, password.as_bytes(), cache)?;
    let started = Instant::now();
    let step = (chunks / 20).max(1);
    let out = benchgen::generate(&repo, chunks, snapshots, chunk_len, &|n| {
        if n % step < 65_536 {
            eprintln!("{n} chunks, {:.0} s", started.elapsed().as_secs_f64());
        }
    })?;
    println!(
        "{} chunks in {} packs, {} index objects, {} snapshots: {:.1} s",
        out.chunks,
        out.packs,
        out.indexes,
        out.snapshots,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `cargo test` mode: a small repository generated and checked.
fn self_test() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| cairn_core::Error::io("temp dir", e))?;
    let location = dir.path().join("repo").display().to_string();
    let mut opts = InitOptions::default();
    opts.chunker = ChunkerParams::with_average(4096);
    opts.kdf = KdfParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };
    let info = KeyInfo {
        created: "2026-11-27T00:00:00Z".into(),
        host: "bench".into(),
        user: "bench".into(),
        kind: "full".into(),
    };
    let backend = backend::open(&location, &ObjectStoreOptions::default())?;
    repository::init(Arc::clone(&backend), b"pw", &opts, info)?;
    let repo = open(&location, b"pw", CacheLocation::Temporary)?;
    let out = benchgen::generate(&repo, 30_000, 3, 64, &|_| {})?;
    assert_eq!((out.chunks, out.snapshots), (30_000, 3));
    let snapshots = repo.load_snapshots()?.good;
    assert_eq!(snapshots.len(), 3);
    assert!(repo.index()?.len()? >= 30_000, "every chunk is indexed");
    let report = check::check(
        &repo,
        &{
            let mut o = CheckOptions::default();
            o.read_data = Some(check::DataSubset::All);
            o
        },
        &NoCheckProgress,
        &AtomicBool::new(false),
    )?;
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    println!("scale: self-test passed ({} packs)", out.packs);
    Ok(())
}

fn main() {
    // `cargo bench` adds --bench to the arguments; `cargo test` gives none.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let result = match args.first().map(String::as_str) {
        Some("generate") => generate(&args[1..]),
        None => self_test(),
        Some(other) => Err(cairn_core::Error::invalid(format!(
            "unknown command {other:?}: scale generate REPO CHUNKS [SNAPSHOTS] [CHUNK_BYTES]"
        ))),
    };
    if let Err(e) = result {
        eprintln!("scale: {e}");
        std::process::exit(1);
    }
}
