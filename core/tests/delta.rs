//! Delta compression through the library: a series of nightly dumps is
//! stored with deltas, restores byte for byte, survives a prune that
//! forgets the night its bases came from, and a damaged base is reported
//! for every delta that needs it.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use cairn_core::backend::{Backend, LocalBackend, ObjectKind};
use cairn_core::format::pack::BlobEntry;
use cairn_core::format::snapshot::Snapshot;
use cairn_core::ops::check::{self as integrity};
use cairn_core::ops::prune::{self, MaxUnused, PruneOptions};
use cairn_core::repo::repository::{self, CacheLocation, Repository};
use cairn_core::{ErrorKind, Id};

const PASSWORD: &[u8] = b"delta";
const FILE: &str = "db.sql";

/// A dump-like night: numbered rows, a few of which change each night
/// (every chunk of about 4 KiB holds one or two changed rows).
fn night(n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..9_000u64 {
        let value = if (i * 7 + n * 13) % 61 < n {
            i * 31 + n
        } else {
            i * 31
        };
        out.extend_from_slice(
            format!(
                "{i}\tcustomer {}\t{}\t2026-11-{:02}\tsome notes about row {i}\n",
                i % 997,
                value,
                1 + i % 28
            )
            .as_bytes(),
        );
    }
    out
}

fn init(backend: Arc<dyn Backend>, delta: bool) {
    common::init_small(backend, PASSWORD, delta);
}

fn open(backend: Arc<dyn Backend>, cache: &Path) -> Repository {
    repository::locate(backend)
        .unwrap()
        .unlock(PASSWORD, &CacheLocation::Dir(cache.to_path_buf()))
        .unwrap()
}

fn backup(repo: &Repository, data: &[u8]) -> Snapshot {
    common::backup_stream(repo, FILE, data, false).unwrap()
}

fn restore_bytes(repo: &Repository, snap: &Snapshot) -> cairn_core::Result<Vec<u8>> {
    common::restore_file(repo, snap, FILE)
}

fn check(repo: &Repository) -> integrity::CheckReport {
    common::check_read_data(repo).unwrap()
}

/// Every stored pack's entries, by pack.
fn entries(repo: &Repository) -> BTreeMap<Id, Vec<BlobEntry>> {
    repo.backend()
        .list(ObjectKind::Pack)
        .unwrap()
        .into_iter()
        .map(|o| {
            let id = Id::parse(&o.name).unwrap();
            (id, repo.read_pack_trailer(&id, o.size).unwrap())
        })
        .collect()
}

fn deltas(repo: &Repository) -> Vec<(Id, BlobEntry)> {
    entries(repo)
        .into_iter()
        .flat_map(|(p, es)| es.into_iter().map(move |e| (p, e)))
        .filter(|(_, e)| e.compression.base().is_some())
        .collect()
}

/// A local repository with deltas on, its directory, its cache directory
/// and an open handle.
fn delta_repo() -> (
    tempfile::TempDir,
    tempfile::TempDir,
    Arc<dyn Backend>,
    Repository,
) {
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let backend: Arc<dyn Backend> = Arc::new(LocalBackend::new(dir.path()));
    init(backend.clone(), true);
    let repo = open(backend.clone(), cache.path());
    (dir, cache, backend, repo)
}

/// The data chunks of a snapshot's one file.
fn chunks_of(repo: &Repository, snap: &Snapshot) -> HashSet<Id> {
    let index = repo.index().unwrap();
    let tree = repo.load_tree(&index, &snap.tree).unwrap();
    tree.nodes
        .iter()
        .flat_map(|n| repo.file_chunks(&index, n).unwrap())
        .collect()
}

#[test]
fn a_series_with_deltas_restores_byte_identical_and_is_much_smaller() {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let caches = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let mut growth = [0u64; 2];
    let mut repos = Vec::new();
    for (k, delta) in [true, false].into_iter().enumerate() {
        let backend: Arc<dyn Backend> = Arc::new(LocalBackend::new(dirs[k].path()));
        init(backend.clone(), delta);
        repos.push(open(backend, caches[k].path()));
    }
    let mut snaps = Vec::new();
    for n in 0..4 {
        let data = night(n);
        for (k, repo) in repos.iter().enumerate() {
            let before: u64 = repo
                .backend()
                .list(ObjectKind::Pack)
                .unwrap()
                .iter()
                .map(|o| o.size)
                .sum();
            let s = backup(repo, &data);
            let after: u64 = repo
                .backend()
                .list(ObjectKind::Pack)
                .unwrap()
                .iter()
                .map(|o| o.size)
                .sum();
            if n > 0 {
                growth[k] += after - before;
            }
            if k == 0 {
                snaps.push((s, data.clone()));
            }
        }
    }
    let with = &repos[0];
    assert!(
        deltas(with).len() > 20,
        "deltas stored: {}",
        deltas(with).len()
    );
    assert!(
        deltas(&repos[1]).is_empty(),
        "--no-delta repository has deltas"
    );
    assert!(
        growth[0] * 2 < growth[1],
        "nights 2-4 added {} bytes with deltas, {} without",
        growth[0],
        growth[1]
    );
    for (s, data) in &snaps {
        assert!(
            restore_bytes(with, s).unwrap() == *data,
            "snapshot {} differs",
            s.id.short()
        );
    }
    let report = check(with);
    assert!(report.is_ok(), "{:?}", report.problems);
    // No delta's base is a delta, and every base is a data blob indexed.
    let index = with.index().unwrap();
    for (_, d) in deltas(with) {
        let base = index.get(&d.compression.base().unwrap()).unwrap().unwrap();
        assert!(base.entry.compression.base().is_none(), "a chain of deltas");
    }
}

#[test]
fn prune_keeps_the_base_of_a_kept_delta_when_the_bases_night_is_forgotten() {
    let (_dir, cache, backend, repo) = delta_repo();
    let first = backup(&repo, &night(0));
    let second_data = night(3);
    let second = backup(&repo, &second_data);
    let used = chunks_of(&repo, &second);
    let bases_only_first: HashSet<Id> = deltas(&repo)
        .iter()
        .filter(|(_, d)| used.contains(&d.id))
        .filter_map(|(_, d)| d.compression.base())
        .filter(|b| !used.contains(b))
        .collect();
    assert!(
        bases_only_first.len() > 5,
        "the second night needs {} bases only the first one has",
        bases_only_first.len()
    );
    backend
        .delete(ObjectKind::Snapshot, &first.id.to_hex())
        .unwrap();
    // Grace 0 and nothing unused allowed: every partly used pack is repacked.
    let mut opts = PruneOptions::default();
    opts.grace_seconds = Some(0);
    opts.max_unused = MaxUnused::Bytes(0);
    let cancel = AtomicBool::new(false);
    let plan = prune::plan(&repo, &opts, &cancel).unwrap();
    let stats = prune::execute(&repo, &plan, &cancel).unwrap();
    assert!(
        stats.packs_deleted > 0 && stats.packs_written > 0,
        "{stats:?}"
    );
    drop(repo);

    let repo = open(backend, cache.path());
    let index = repo.index().unwrap();
    for b in &bases_only_first {
        let loc = index
            .get(b)
            .unwrap()
            .unwrap_or_else(|| panic!("base {b} was pruned"));
        assert!(loc.entry.compression.base().is_none());
    }
    assert!(restore_bytes(&repo, &second).unwrap() == second_data);
    let report = check(&repo);
    assert!(report.is_ok(), "{:?}", report.problems);
    let again = prune::plan(&repo, &opts, &cancel).unwrap();
    assert!(
        again.is_noop(),
        "a second prune has work: {:?}",
        again.totals
    );
}

#[test]
fn a_damaged_base_is_reported_for_every_delta_that_uses_it() {
    let (dir, _cache, _backend, repo) = delta_repo();
    let first = backup(&repo, &night(0));
    let second = backup(&repo, &night(2));
    let third = backup(&repo, &night(4));

    // The base with the most deltas (nights 2 and 3 each may use it).
    let all = deltas(&repo);
    let mut count: BTreeMap<Id, usize> = BTreeMap::new();
    for (_, d) in &all {
        *count.entry(d.compression.base().unwrap()).or_default() += 1;
    }
    let (&base, &n) = count.iter().max_by_key(|(_, n)| **n).unwrap();
    let users: Vec<(Id, Id)> = all
        .iter()
        .filter(|(_, d)| d.compression.base() == Some(base))
        .map(|(p, d)| (*p, d.id))
        .collect();
    assert_eq!(users.len(), n);

    // Flip one byte in the middle of the base's sealed bytes.
    let index = repo.index().unwrap();
    let loc = index.get(&base).unwrap().unwrap();
    let hex = loc.pack_id.to_hex();
    let path = dir.path().join("data").join(&hex[..2]).join(&hex);
    let mut bytes = fs::read(&path).unwrap();
    bytes[(loc.entry.offset + loc.entry.length / 2) as usize] ^= 0x40;
    let mut perms = fs::metadata(&path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    fs::set_permissions(&path, perms).unwrap();
    fs::write(&path, &bytes).unwrap();
    drop(index);

    let report = check(&repo);
    // Each pack holding a user of the base reports at least as many
    // damaged blobs as it holds users.
    let mut per_pack: BTreeMap<Id, usize> = BTreeMap::new();
    for (p, _) in &users {
        *per_pack.entry(*p).or_default() += 1;
    }
    for (p, k) in &per_pack {
        let problem = report
            .problems
            .iter()
            .find(|pr| pr.id == p.to_hex())
            .unwrap_or_else(|| {
                panic!(
                    "pack {p} with {k} deltas of the damaged base: no problem in {:?}",
                    report.problems
                )
            });
        let damaged: usize = problem
            .message
            .split(": ")
            .nth(1)
            .and_then(|m| m.split(' ').next())
            .and_then(|m| m.parse().ok())
            .unwrap_or_else(|| panic!("no count in {:?}", problem.message));
        assert!(damaged >= *k, "{}: {k} deltas of the base", problem.message);
    }
    // Every snapshot that holds a user of the base (or the base) is named.
    for s in [&first, &second, &third] {
        let chunks = chunks_of(&repo, s);
        let hit = chunks.contains(&base) || users.iter().any(|(_, d)| chunks.contains(d));
        assert_eq!(
            report.damaged_snapshots.contains(&s.id.to_hex()),
            hit,
            "snapshot {} (holds the base or a delta of it: {hit})",
            s.id.short()
        );
        if hit {
            let e = restore_bytes(&repo, s).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
        }
    }
}

#[test]
fn a_new_cache_sketches_the_previous_snapshot_so_the_next_night_still_gets_deltas() {
    let dir = tempfile::tempdir().unwrap();
    let backend: Arc<dyn Backend> = Arc::new(LocalBackend::new(dir.path()));
    init(backend.clone(), true);
    let first_cache = tempfile::tempdir().unwrap();
    backup(&open(backend.clone(), first_cache.path()), &night(0));
    // Another machine, or the cache was deleted: no sketches at all.
    let new_cache = tempfile::tempdir().unwrap();
    let repo = open(backend, new_cache.path());
    assert_eq!(repo.cache().sketch_count().unwrap(), 0);
    let data = night(2);
    let second = backup(&repo, &data);
    assert!(repo.cache().sketch_count().unwrap() > 0);
    let used = chunks_of(&repo, &second);
    let n = deltas(&repo)
        .iter()
        .filter(|(_, d)| used.contains(&d.id))
        .count();
    assert!(n > 20, "the second night has {n} deltas");
    assert!(restore_bytes(&repo, &second).unwrap() == data);
}

/// Stored bytes of every pack.
fn pack_bytes(repo: &Repository) -> u64 {
    repo.backend()
        .list(ObjectKind::Pack)
        .unwrap()
        .iter()
        .map(|o| o.size)
        .sum()
}

#[test]
fn copy_into_a_delta_repository_stores_deltas_and_restores_alike() {
    // The source has no deltas; of two targets, one has them on.
    let src_dir = tempfile::tempdir().unwrap();
    let src_cache = tempfile::tempdir().unwrap();
    let src_backend: Arc<dyn Backend> = Arc::new(LocalBackend::new(src_dir.path()));
    init(src_backend.clone(), false);
    let src = open(src_backend, src_cache.path());
    let mut snaps = Vec::new();
    for n in 0..4 {
        snaps.push(backup(&src, &night(n)));
    }
    let mut targets = Vec::new();
    let mut dirs = Vec::new();
    for delta in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let backend: Arc<dyn Backend> = Arc::new(LocalBackend::new(dir.path()));
        init(backend.clone(), delta);
        targets.push(open(backend, cache.path()));
        dirs.push((dir, cache));
    }
    // The first night alone, then the other three in one run: each night
    // is stored against the one copied before it.
    let mut sizes = Vec::new();
    for t in &targets {
        cairn_core::ops::copy::copy(
            &src,
            t,
            &snaps[..1],
            &cairn_core::ops::copy::NoCopyProgress,
            &AtomicBool::new(false),
        )
        .unwrap();
        let first = pack_bytes(t);
        let stats = cairn_core::ops::copy::copy(
            &src,
            t,
            &snaps,
            &cairn_core::ops::copy::NoCopyProgress,
            &AtomicBool::new(false),
        )
        .unwrap();
        assert!(stats.warnings.is_empty(), "{:?}", stats.warnings);
        sizes.push(pack_bytes(t) - first);
    }
    let (with, without) = (sizes[0], sizes[1]);
    assert!(
        with * 2 < without,
        "three nights copied with deltas {with} B, without {without} B"
    );
    assert!(deltas(&targets[0]).len() > 20);
    assert!(deltas(&targets[1]).is_empty());
    // Every copy restores byte for byte; check reads every delta.
    let copies = targets[0].load_snapshots().unwrap().good;
    assert_eq!(copies.len(), 4);
    for (n, s) in snaps.iter().enumerate() {
        let copy = copies.iter().find(|c| c.time == s.time).unwrap();
        assert_eq!(restore_bytes(&targets[0], copy).unwrap(), night(n as u64));
    }
    let report = check(&targets[0]);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}
