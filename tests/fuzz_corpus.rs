//! The fuzz targets' corpora, replayed as ordinary tests: the generated
//! seeds (valid objects of every kind), every file under
//! `fuzz/corpus/<target>/` (including crashes found and fixed), and
//! systematic damage to the seeds: truncation at every length and a bit
//! flipped in every byte.
//!
//! `cargo test --test fuzz_corpus -- --ignored write_seed_files` writes the
//! seeds into `fuzz/corpus/` for cargo-fuzz.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use cairn_core::testing::fuzzing::{seeds, TARGETS};

fn target(name: &str) -> fn(&[u8]) {
    TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, f)| *f)
        .unwrap()
}

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join("corpus")
}

#[test]
fn every_target_has_seeds() {
    let seeds = seeds().unwrap();
    for (name, _) in TARGETS {
        assert!(
            seeds.iter().any(|(n, _)| n == name) || *name == "object",
            "no seed for {name}"
        );
    }
}

#[test]
fn seeds_and_their_damaged_forms_never_panic() {
    for (name, seed) in seeds().unwrap() {
        let f = target(name);
        f(&seed);
        for len in 0..seed.len() {
            f(&seed[..len]);
        }
        // A flipped bit in each byte (the whole input for small seeds).
        let step = (seed.len() / 2048).max(1);
        for i in (0..seed.len()).step_by(step) {
            let mut damaged = seed.clone();
            damaged[i] ^= 1 << (i % 8);
            f(&damaged);
        }
    }
}

#[test]
fn committed_corpus_files_never_panic() {
    let mut replayed = 0;
    for (name, f) in TARGETS {
        let dir = corpus_dir().join(name);
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in rd.flatten() {
            f(&std::fs::read(entry.path()).unwrap());
            replayed += 1;
        }
    }
    eprintln!("replayed {replayed} corpus files");
}

#[test]
#[ignore = "writes files: run by hand or by .ci/run before fuzzing"]
fn write_seed_files() {
    for (i, (name, seed)) in seeds().unwrap().into_iter().enumerate() {
        let dir = corpus_dir().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        // Seeds hold random nonces: keep the committed ones stable.
        let path = dir.join(format!("seed-{i:02}"));
        if !path.exists() {
            std::fs::write(path, seed).unwrap();
        }
    }
}
