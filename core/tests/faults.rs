//! Library-level proof that faults and crashes lose nothing.
//!
//! Every operation of a backup and of a prune is made to fail in turn; the
//! process is made to "crash" at every put and delete of a backup and of a
//! prune (the operation landing or not); every read of a restore is
//! shortened or has a bit flipped; and a model test runs random sequences
//! of backups, forgets, prunes and crashes against an in-memory model of
//! what each snapshot must restore to. After each, the repository must
//! open, every committed snapshot must restore byte-identical, and running
//! the operation again must work.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use cairn_core::backend::{Backend, LocalBackend, ObjectKind};
use cairn_core::format::keyfile::{KdfParams, KeyInfo};
use cairn_core::format::snapshot::{Snapshot, SourceKind};
use cairn_core::ops::backup::{self, BackupOptions, BackupSource, NoProgress};
use cairn_core::ops::check::{self as integrity, CheckOptions, DataSubset, NoCheckProgress};
use cairn_core::ops::prune::{self, MaxUnused, PruneOptions, PruneStats};
use cairn_core::ops::restore;
use cairn_core::repo::repository::{self, CacheLocation, InitOptions, Repository};
use cairn_core::repo::restorer::NoRestoreProgress;
use cairn_core::{ErrorKind, Id, Result};
use proptest::prelude::*;

use common::{
    dump_text, pseudo_random, Damage, Failure, Fault, FaultBackend, Fired, MemBackend, Op, OPS,
};

const PASSWORD: &[u8] = b"correct horse battery staple";
/// The file name of stream backups.
const FILE: &str = "db.dump";

/// What a snapshot restores to: path relative to the restore target →
/// contents.
type Files = BTreeMap<PathBuf, Vec<u8>>;
/// Snapshot → what it must restore to.
type Model = BTreeMap<Id, Files>;

// ---------------------------------------------------------------------------
// Repository helpers

/// A new repository in memory: 1 MiB packs (the smallest allowed), 4 KiB
/// chunks, and a cheap KDF.
fn init_repo() -> MemBackend {
    let mem = MemBackend::new();
    common::init_small(Arc::new(mem.clone()), PASSWORD, false);
    mem
}

fn open(backend: Arc<dyn Backend>, cache: &CacheLocation) -> Result<Repository> {
    repository::locate(backend)?.unlock(PASSWORD, cache)
}

/// Opens the repository on an undisturbed view of `storage`.
fn open_clean(storage: &MemBackend, cache: &CacheLocation, what: &str) -> Repository {
    open(Arc::new(storage.clone()), cache)
        .unwrap_or_else(|e| panic!("{what}: the repository does not open: {e}"))
}

fn backup_options() -> BackupOptions {
    common::backup_options()
}

fn backup_stream(repo: &Repository, data: &[u8]) -> Result<Snapshot> {
    common::backup_stream(repo, FILE, data, true)
}

fn backup_paths(repo: &Repository, dir: &Path) -> Result<Snapshot> {
    let source = BackupSource::Paths(vec![dir.to_path_buf()]);
    let cancel = AtomicBool::new(false);
    backup::backup(repo, source, &backup_options(), &NoProgress, &cancel).map(|o| o.snapshot)
}

/// `cairn forget ID`: the snapshot object goes, nothing else.
fn forget(storage: &MemBackend, id: &Id) {
    storage.delete(ObjectKind::Snapshot, &id.to_hex()).unwrap();
}

fn prune_with(repo: &Repository, max_unused: MaxUnused, grace: Option<u64>) -> Result<PruneStats> {
    let mut opts = PruneOptions::default();
    opts.max_unused = max_unused;
    opts.grace_seconds = grace;
    let cancel = AtomicBool::new(false);
    let plan = prune::plan(repo, &opts, &cancel)?;
    prune::execute(repo, &plan, &cancel)
}

/// `cairn prune --grace 0`: delete and repack at once.
fn prune_now(repo: &Repository) -> Result<PruneStats> {
    prune_with(repo, MaxUnused::default(), Some(0))
}

/// Panics, showing the work, unless a prune would find nothing to do.
fn assert_prune_is_noop(repo: &Repository, what: &str) {
    let mut opts = PruneOptions::default();
    opts.grace_seconds = Some(0);
    let plan = prune::plan(repo, &opts, &AtomicBool::new(false)).unwrap();
    assert!(
        plan.is_noop(),
        "{what}: a second prune has work: {:?}",
        plan.packs
            .iter()
            .map(|p| (p.action, p.blobs, p.used_blobs, p.size, p.used_bytes))
            .collect::<Vec<_>>()
    );
}

// ---------------------------------------------------------------------------
// Contents and checks

fn stream_files(data: &[u8]) -> Files {
    [(PathBuf::from(FILE), data.to_vec())].into()
}

/// Every regular file under `root`, by path relative to `root`.
fn read_files(root: &Path) -> Files {
    fn walk(root: &Path, dir: &Path, out: &mut Files) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                walk(root, &path, out);
            } else if meta.is_file() {
                let rel = path.strip_prefix(root).unwrap().to_path_buf();
                out.insert(rel, fs::read(&path).unwrap());
            }
        }
    }
    let mut out = Files::new();
    walk(root, root, &mut out);
    out
}

/// What a backup of directory `dir` restores to: its files under the
/// absolute path of `dir` inside the target.
fn files_of_dir(dir: &Path) -> Files {
    let base = dir.strip_prefix("/").unwrap();
    read_files(dir)
        .into_iter()
        .map(|(p, b)| (base.join(p), b))
        .collect()
}

/// Restores a snapshot into `target`: a stream with `dump`, files with
/// `restore`.
fn restore_into(repo: &Repository, snap: &Snapshot, target: &Path) -> Result<()> {
    let cancel = AtomicBool::new(false);
    if snap.source.kind == SourceKind::Stdin {
        let mut out = Vec::new();
        let result = restore::dump(
            repo,
            snap,
            Path::new(FILE),
            &mut out,
            &NoRestoreProgress,
            &cancel,
        );
        fs::write(target.join(FILE), &out).unwrap();
        result.map(drop)
    } else {
        restore::restore(
            repo,
            snap,
            target,
            &Default::default(),
            &NoRestoreProgress,
            &cancel,
        )
        .map(drop)
    }
}

/// Restores a snapshot; what it restored to.
fn restore_files(repo: &Repository, snap: &Snapshot) -> Result<Files> {
    let target = tempfile::tempdir().unwrap();
    restore_into(repo, snap, target.path())?;
    Ok(read_files(target.path()))
}

fn describe(files: &Files) -> String {
    files
        .iter()
        .map(|(p, b)| {
            format!(
                "{} ({} bytes, {})",
                p.display(),
                b.len(),
                Id::of_bytes(b).short()
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn assert_files(actual: &Files, expected: &Files, what: &str) {
    assert!(
        actual == expected,
        "{what}: restored [{}], expected [{}]",
        describe(actual),
        describe(expected)
    );
}

/// Checks that the snapshots of `repo` are exactly those of `expected`,
/// plus at most one more holding `maybe` (a backup that failed or crashed
/// may have committed), that none is damaged, and that each restores
/// byte-identical. Returns the ID of the additional snapshot, if any.
fn check(repo: &Repository, expected: &Model, maybe: Option<&Files>, what: &str) -> Option<Id> {
    assert!(
        repo.warnings().is_empty(),
        "{what}: warnings on open: {:?}",
        repo.warnings()
    );
    // `check --read-data` finds nothing wrong: a fault or crash leaves at
    // most leftovers, never damage.
    let report =
        common::check_read_data(repo).unwrap_or_else(|e| panic!("{what}: check cannot run: {e}"));
    assert!(
        report.is_ok(),
        "{what}: check found damage: {:?}",
        report.problems
    );
    let list = repo
        .load_snapshots()
        .unwrap_or_else(|e| panic!("{what}: cannot list snapshots: {e}"));
    assert!(
        list.damaged.is_empty(),
        "{what}: damaged snapshots: {:?}",
        list.damaged
    );
    let mut extra = None;
    for s in &list.good {
        let files = restore_files(repo, s)
            .unwrap_or_else(|e| panic!("{what}: snapshot {} does not restore: {e}", s.id.short()));
        let want = match (expected.get(&s.id), maybe) {
            (Some(files), _) => files,
            (None, Some(files)) => {
                assert!(extra.is_none(), "{what}: two unexpected snapshots");
                extra = Some(s.id);
                files
            }
            (None, None) => panic!("{what}: unexpected snapshot {}", s.id.short()),
        };
        assert_files(&files, want, &format!("{what}: snapshot {}", s.id.short()));
    }
    for id in expected.keys() {
        assert!(
            list.good.iter().any(|s| s.id == *id),
            "{what}: snapshot {} is lost",
            id.short()
        );
    }
    extra
}

/// Runs `op` once without faults on a copy of `storage`: how many
/// operations of each kind it makes, and how many puts and deletes.
fn count_ops(
    storage: &MemBackend,
    op: impl Fn(&Repository) -> Result<()>,
) -> (BTreeMap<Op, usize>, usize) {
    let fb = Arc::new(FaultBackend::new(Arc::new(storage.fork())));
    let repo = open(fb.clone(), &CacheLocation::Temporary).unwrap();
    fb.arm(Fault::None);
    op(&repo).unwrap();
    let counts = OPS.iter().map(|&o| (o, fb.count(o))).collect();
    (counts, fb.mutations())
}

/// The failures tried for each kind of operation.
fn failures(op: Op) -> &'static [Failure] {
    match op {
        Op::Put => &[Failure::Io, Failure::NoSpace, Failure::IoAfterApplying],
        Op::Delete => &[Failure::Io, Failure::IoAfterApplying],
        Op::Get | Op::GetRange | Op::List => &[Failure::Io],
    }
}

// ---------------------------------------------------------------------------
// Data

/// Replaces 64 bytes at `at` (wrapped) by 96 others.
fn edit(data: &mut Vec<u8>, at: usize, seed: u64) {
    if data.is_empty() {
        data.extend(pseudo_random(64, seed));
        return;
    }
    let at = at % data.len();
    let patch = pseudo_random(96, seed);
    let end = (at + 64).min(data.len());
    data.splice(at..end, patch);
}

/// Versions of a database dump: random data and compressible text, edited
/// and grown. v2 edits v1 and appends 2.4 MiB (three packs' worth); v3
/// edits elsewhere and keeps three 400 KiB pieces of that, so each of v2's
/// packs is partly used; v4 grows v3.
struct Versions {
    v1: Vec<u8>,
    v2: Vec<u8>,
    v3: Vec<u8>,
    v4: Vec<u8>,
}

fn versions() -> Versions {
    let mut v1 = pseudo_random(2_560 << 10, 1);
    v1.extend(dump_text(512 << 10, 1));
    let mut v2 = v1.clone();
    for (i, at) in [100_000, 700_000, 1_300_000, 1_900_000, 2_900_000]
        .into_iter()
        .enumerate()
    {
        edit(&mut v2, at, 10 + i as u64);
    }
    let base = v2.len();
    v2.extend(pseudo_random(2_400 << 10, 2));
    let mut v3 = v2[..base].to_vec();
    for (i, at) in [400_000, 1_600_000, 2_950_000].into_iter().enumerate() {
        edit(&mut v3, at, 20 + i as u64);
    }
    for piece in [0usize, 800 << 10, 1_600 << 10] {
        v3.extend_from_slice(&v2[base + piece..base + piece + (400 << 10)]);
    }
    let mut v4 = v3.clone();
    v4.extend(pseudo_random(300 << 10, 4));
    Versions { v1, v2, v3, v4 }
}

/// A repository with snapshots of v1, v2, v3 and of unrelated data, v2 and
/// the unrelated one forgotten; and what the two left restore to. A prune
/// (`--grace 0`) then repacks v2's packs into two, deletes the other
/// snapshot's packs and both snapshots' tree packs, and replaces four
/// index objects.
fn forgotten_repo(v: &Versions) -> (MemBackend, Model) {
    let mem = init_repo();
    let repo = open(Arc::new(mem.clone()), &CacheLocation::Temporary).unwrap();
    let a = backup_stream(&repo, &v.v1).unwrap();
    let b = backup_stream(&repo, &v.v2).unwrap();
    let c = backup_stream(&repo, &v.v3).unwrap();
    let d = backup_stream(&repo, &pseudo_random(1_200 << 10, 5)).unwrap();
    forget(&mem, &b.id);
    forget(&mem, &d.id);
    let model = [(a.id, stream_files(&v.v1)), (c.id, stream_files(&v.v3))].into();
    (mem, model)
}

/// A directory tree to back up, and a changed version of it.
fn write_tree(dir: &Path, version: u32) {
    let sub = dir.join("sub");
    fs::create_dir_all(&sub).unwrap();
    let mut big = pseudo_random(1_400 << 10, 30);
    let mut sql = dump_text(400 << 10, 31);
    if version == 1 {
        fs::write(sub.join("a.txt"), b"first version only\n").unwrap();
    } else {
        edit(&mut big, 200_000, 32);
        edit(&mut big, 1_000_000, 33);
        sql.extend(dump_text(50 << 10, 34));
        let _ = fs::remove_file(sub.join("a.txt"));
        fs::write(sub.join("c.bin"), pseudo_random(600 << 10, 35)).unwrap();
    }
    fs::write(dir.join("big.bin"), big).unwrap();
    fs::write(dir.join("dump.sql"), sql).unwrap();
    fs::write(sub.join("b.bin"), pseudo_random(40 << 10, 36)).unwrap();
}

fn cache_in(dir: &tempfile::TempDir) -> CacheLocation {
    CacheLocation::Dir(dir.path().to_path_buf())
}

// ---------------------------------------------------------------------------
// The test backends themselves

#[test]
fn mem_backend_behaves_like_local_backend() {
    let dir = tempfile::tempdir().unwrap();
    let local = LocalBackend::new(dir.path().join("repo"));
    let mem = MemBackend::new();
    for b in [&local as &dyn Backend, &mem] {
        b.create().unwrap();
        let name = Id::of_bytes(b"one").to_hex();
        assert!(b.put(ObjectKind::Pack, &name, b"one").unwrap());
        assert!(!b.put(ObjectKind::Pack, &name, b"different").unwrap());
        assert_eq!(b.get(ObjectKind::Pack, &name).unwrap(), b"one");
        assert_eq!(b.get_range(ObjectKind::Pack, &name, 1, 2).unwrap(), b"ne");
        let short = b.get_range(ObjectKind::Pack, &name, 1, 20).unwrap_err();
        assert_eq!(short.kind(), ErrorKind::Corrupt);
        let listed = b.list(ObjectKind::Pack).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(
            (listed[0].name.as_str(), listed[0].size),
            (name.as_str(), 3)
        );
        assert!(listed[0].modified.is_some());
        assert!(b.list(ObjectKind::Index).unwrap().is_empty());
        let missing = b.get(ObjectKind::Index, &name).unwrap_err();
        assert_eq!(missing.kind(), ErrorKind::MissingObject);
        let missing = b.get_range(ObjectKind::Index, &name, 0, 1).unwrap_err();
        assert_eq!(missing.kind(), ErrorKind::MissingObject);
        // Larger than any key file: refused on read.
        let huge = vec![0u8; ObjectKind::Key.max_size() as usize + 1];
        let huge_name = Id::of_bytes(&huge).to_hex();
        assert!(b.put(ObjectKind::Key, &huge_name, &huge).unwrap());
        let refused = b.get(ObjectKind::Key, &huge_name).unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::Corrupt);
        b.delete(ObjectKind::Pack, &name).unwrap();
        b.delete(ObjectKind::Pack, &name).unwrap();
        assert!(b.list(ObjectKind::Pack).unwrap().is_empty());
    }
}

#[test]
fn fault_backend_injects_what_it_is_told() {
    let put = |fb: &FaultBackend, n: u8| fb.put(ObjectKind::Index, &format!("{n:064x}"), &[n]);
    for applied in [false, true] {
        let mem = MemBackend::new();
        let fb = FaultBackend::new(Arc::new(mem.clone()));
        fb.arm(Fault::Crash { at: 1, applied });
        assert!(put(&fb, 0).unwrap());
        assert_eq!(put(&fb, 1).unwrap_err().kind(), ErrorKind::Io);
        assert!(put(&fb, 2).is_err());
        assert!(fb
            .delete(ObjectKind::Index, &format!("{:064x}", 0))
            .is_err());
        let mut expected = vec![format!("{:064x}", 0)];
        if applied {
            expected.push(format!("{:064x}", 1));
        }
        assert_eq!(mem.names(ObjectKind::Index), expected);
        assert_eq!(fb.fired().len(), 3);
        assert_eq!(fb.mutations(), 4);
    }
    let mem = MemBackend::new();
    let fb = FaultBackend::new(Arc::new(mem.clone()));
    fb.arm(Fault::Fail {
        op: Op::Put,
        nth: 1,
        failure: Failure::NoSpace,
    });
    assert!(put(&fb, 0).is_ok());
    assert_eq!(put(&fb, 1).unwrap_err().kind(), ErrorKind::NoSpace);
    assert!(put(&fb, 2).is_ok());
    assert_eq!(mem.names(ObjectKind::Index).len(), 2);
    let name = format!("{:064x}", 0);
    fb.arm(Fault::Damage {
        nth: 1,
        damage: Damage::Short(1),
    });
    assert_eq!(fb.get(ObjectKind::Index, &name).unwrap(), [0]);
    assert!(fb.get(ObjectKind::Index, &name).unwrap().is_empty());
    fb.arm(Fault::Damage {
        nth: 0,
        damage: Damage::Flip { permille: 1000 },
    });
    assert_eq!(
        fb.get_range(ObjectKind::Index, &name, 0, 1).unwrap(),
        [0x80]
    );
    assert_eq!(fb.reads(), 1);
}

// ---------------------------------------------------------------------------
// Every operation fails in turn

/// What one run with a fault armed left behind.
struct FaultyRun<T> {
    /// The storage as the fault left it (a fork of the original).
    storage: MemBackend,
    /// The cache directory the run used, kept as a crash would keep it.
    cache: tempfile::TempDir,
    result: Result<T>,
    /// What the fault hit.
    fired: Vec<Fired>,
}

/// Runs `run` against a fork of `storage` with `fault` armed, through a
/// cache in a new directory.
fn run_with_fault<T>(
    storage: &MemBackend,
    fault: Fault,
    run: impl FnOnce(&Repository) -> Result<T>,
) -> FaultyRun<T> {
    let storage = storage.fork();
    let cache = tempfile::tempdir().unwrap();
    let fb = Arc::new(FaultBackend::new(Arc::new(storage.clone())));
    let repo = open(fb.clone(), &cache_in(&cache)).unwrap();
    fb.arm(fault);
    let result = run(&repo);
    FaultyRun {
        storage,
        cache,
        result,
        fired: fb.fired(),
    }
}

/// The last check of a backup fault test: through a new cache, the
/// repository holds `before`, the snapshot the faulty run committed (if
/// any) and the retried one, each restoring to `new`.
fn assert_after_retry(
    storage: &MemBackend,
    before: &Model,
    new: &Files,
    committed: Option<Id>,
    retried: &Snapshot,
    what: &str,
) {
    let mut after = before.clone();
    after.extend(committed.map(|id| (id, new.clone())));
    after.insert(retried.id, new.clone());
    let repo = open_clean(storage, &CacheLocation::Temporary, what);
    assert_eq!(check(&repo, &after, None, what), None);
}

/// Runs `run` (a backup that stores `new`) against a copy of `storage`
/// (whose snapshots are `before`) with each of its operations failing in
/// turn, each way; then checks the storage left through the failed run's
/// cache, runs the backup again, and checks again through a new cache.
/// Returns the number of failures tried.
fn fail_backup_everywhere(
    storage: &MemBackend,
    before: &Model,
    new: &Files,
    run: impl Fn(&Repository) -> Result<Snapshot>,
    label: &str,
) -> usize {
    let (counts, _) = count_ops(storage, |repo| run(repo).map(drop));
    assert!(
        counts[&Op::Put] >= 4,
        "{label}: too few puts to be interesting: {counts:?}"
    );
    let mut tried = 0;
    for op in OPS {
        for nth in 0..counts[&op] {
            for &failure in failures(op) {
                let what = format!("{label}, {op:?} #{nth} fails ({failure:?})");
                let FaultyRun {
                    storage,
                    cache,
                    result,
                    fired,
                } = run_with_fault(storage, Fault::Fail { op, nth, failure }, &run);
                assert_eq!(fired.len(), 1, "{what}: the fault hit {fired:?}");
                let hit = &fired[0];
                match &result {
                    Err(e) => assert_eq!(e.kind(), failure.kind(), "{what}: {e}"),
                    // By design: an unreadable snapshot only costs the
                    // parent link, an unreadable delta base (a range read
                    // of a pack) a chunk stored whole, and a failure while
                    // a new cache sketches the newest snapshot (listing
                    // and reading snapshots, trees, chunks) a night of
                    // deltas.
                    Ok(_) => assert!(
                        (matches!(hit.op, Op::Get | Op::List) && hit.kind == ObjectKind::Snapshot)
                            || (hit.op == Op::GetRange && hit.kind == ObjectKind::Pack),
                        "{what}: the backup succeeded despite a failed {hit:?}"
                    ),
                }

                // The storage as the fault left it, with the cache the
                // failed run used.
                let repo = open_clean(&storage, &cache_in(&cache), &what);
                let committed = check(&repo, before, Some(new), &what);
                let snapshot_landed = result.is_ok()
                    || (hit.kind == ObjectKind::Snapshot && failure == Failure::IoAfterApplying);
                assert_eq!(committed.is_some(), snapshot_landed, "{what}");
                let retried =
                    run(&repo).unwrap_or_else(|e| panic!("{what}: the backup fails again: {e}"));
                drop(repo);
                assert_after_retry(&storage, before, new, committed, &retried, &what);
                tried += 1;
            }
        }
    }
    eprintln!("{label}: {tried} failed operations tried (operations of a clean run: {counts:?})");
    tried
}

/// A repository with a first snapshot of `first`: the storage and its
/// model.
fn first_stream(first: &[u8]) -> (MemBackend, Model) {
    let mem = init_repo();
    let snap = {
        let repo = open(Arc::new(mem.clone()), &CacheLocation::Temporary).unwrap();
        backup_stream(&repo, first).unwrap()
    };
    (mem, [(snap.id, stream_files(first))].into())
}

/// A repository with a first snapshot of a directory at version 1, which
/// is then changed to version 2: the storage, its model, and what the
/// directory now holds.
fn first_dir(dir: &Path) -> (MemBackend, Model, Files) {
    let mem = init_repo();
    write_tree(dir, 1);
    let snap = {
        let repo = open(Arc::new(mem.clone()), &CacheLocation::Temporary).unwrap();
        backup_paths(&repo, dir).unwrap()
    };
    let before: Model = [(snap.id, files_of_dir(dir))].into();
    write_tree(dir, 2);
    let new = files_of_dir(dir);
    assert_ne!(before[&snap.id], new);
    (mem, before, new)
}

#[test]
fn failing_any_operation_of_a_backup_loses_nothing() {
    let v = versions();
    let (mem, before) = first_stream(&v.v1);
    let new = stream_files(&v.v2);
    fail_backup_everywhere(&mem, &before, &new, |r| backup_stream(r, &v.v2), "backup");
}

#[test]
fn failing_any_operation_of_a_directory_backup_loses_nothing() {
    let src = tempfile::tempdir().unwrap();
    let dir = src.path().join("data");
    let (mem, before, new) = first_dir(&dir);
    fail_backup_everywhere(
        &mem,
        &before,
        &new,
        |r| backup_paths(r, &dir),
        "directory backup",
    );
}

#[test]
fn parallel_uploads_overlap_and_any_failed_one_loses_nothing() {
    let v = versions();
    let (mem, before) = first_stream(&v.v1);
    let big = pseudo_random(6 << 20, 77); // six 1 MiB packs or more
    let new = stream_files(&big);
    let delay = std::time::Duration::from_millis(40);
    let parallel = |storage: &MemBackend| {
        Arc::new(FaultBackend::with_parallel_requests(
            Arc::new(storage.clone()),
            4,
            delay,
        ))
    };

    // Without a fault: the packs go up several at a time.
    let storage = mem.fork();
    let fb = parallel(&storage);
    let repo = open(fb.clone(), &CacheLocation::Temporary).unwrap();
    fb.arm(Fault::None);
    let snap = backup_stream(&repo, &big).unwrap();
    let puts = fb.count(Op::Put);
    assert!(
        fb.max_puts_in_flight() >= 2,
        "at most {} put at a time",
        fb.max_puts_in_flight()
    );
    let mut after = before.clone();
    after.insert(snap.id, new.clone());
    assert_eq!(check(&repo, &after, None, "parallel backup"), None);

    // Each put failing in turn, while others are in flight: no snapshot,
    // nothing lost, and the retry works.
    for nth in 0..puts {
        let what = format!("parallel backup, put #{nth} fails");
        let storage = mem.fork();
        let fb = parallel(&storage);
        let cache = tempfile::tempdir().unwrap();
        let repo = open(fb.clone(), &cache_in(&cache)).unwrap();
        fb.arm(Fault::Fail {
            op: Op::Put,
            nth,
            failure: Failure::Io,
        });
        let result = backup_stream(&repo, &big);
        let e = result
            .err()
            .unwrap_or_else(|| panic!("{what}: the backup succeeded"));
        assert_eq!(e.kind(), ErrorKind::Io, "{what}: {e}");
        drop(repo);
        let repo = open_clean(&storage, &cache_in(&cache), &what);
        assert_eq!(check(&repo, &before, None, &what), None);
        let retried = backup_stream(&repo, &big)
            .unwrap_or_else(|e| panic!("{what}: the backup fails again: {e}"));
        drop(repo);
        assert_after_retry(&storage, &before, &new, None, &retried, &what);
    }
}

#[test]
fn failing_any_operation_of_a_prune_loses_nothing() {
    let v = versions();
    let (mem, kept) = forgotten_repo(&v);
    let (counts, _) = count_ops(&mem, |repo| {
        let stats = prune_now(repo)?;
        assert!(
            stats.packs_written >= 2
                && stats.packs_deleted > stats.packs_written
                && stats.index_deleted >= 4,
            "not the prune this test wants: {stats:?}"
        );
        Ok(())
    });
    let old_indexes = mem.names(ObjectKind::Index);
    let mut tried = 0;
    for op in OPS {
        for nth in 0..counts[&op] {
            for &failure in failures(op) {
                let what = format!("prune, {op:?} #{nth} fails ({failure:?})");
                let FaultyRun {
                    storage,
                    cache,
                    result,
                    fired,
                } = run_with_fault(&mem, Fault::Fail { op, nth, failure }, prune_now);
                assert_eq!(fired.len(), 1, "{what}: the fault hit {fired:?}");
                match &result {
                    Err(e) if matches!(op, Op::Put | Op::Delete) => {
                        assert_eq!(e.kind(), failure.kind(), "{what}: {e}")
                    }
                    // A failed read is often reported as damage (Corrupt):
                    // prune stops either way.
                    Err(_) => {}
                    // Everything was done; only the final refresh of the
                    // cache could not read the new index object (it is
                    // read at the next open).
                    Ok(_) => assert!(
                        fired[0].op == Op::Get
                            && fired[0].kind == ObjectKind::Index
                            && !old_indexes.contains(&fired[0].name),
                        "{what}: prune succeeded despite a failed {:?}",
                        fired[0]
                    ),
                }

                let repo = open_clean(&storage, &cache_in(&cache), &what);
                assert_eq!(check(&repo, &kept, None, &what), None);
                prune_now(&repo).unwrap_or_else(|e| panic!("{what}: prune fails again: {e}"));
                assert_prune_is_noop(&repo, &what);
                let v4 = backup_stream(&repo, &v.v4).unwrap();
                drop(repo);

                let mut after = kept.clone();
                after.insert(v4.id, stream_files(&v.v4));
                let repo = open_clean(&storage, &CacheLocation::Temporary, &what);
                assert_eq!(check(&repo, &after, None, &what), None);
                tried += 1;
            }
        }
    }
    eprintln!("prune: {tried} failed operations tried (operations of a clean run: {counts:?})");
}

// ---------------------------------------------------------------------------
// The process dies at every put and delete

/// Runs `run` (a backup that stores `new`) against a copy of `storage`
/// (whose snapshots are `before`) crashing at each of its puts in turn,
/// landed or lost; then checks the storage left, through a new cache and
/// through the crashed run's cache, runs the backup again and a prune.
/// Returns the number of crash points tried.
fn crash_backup_everywhere(
    storage: &MemBackend,
    before: &Model,
    new: &Files,
    run: impl Fn(&Repository) -> Result<Snapshot>,
    label: &str,
) -> usize {
    let (counts, mutations) = count_ops(storage, |repo| run(repo).map(drop));
    assert!(mutations >= 4, "{label}: too few puts to be interesting");
    assert_eq!(counts[&Op::Delete], 0);
    let mut tried = 0;
    for at in 0..mutations {
        for applied in [false, true] {
            let what = format!(
                "{label}, crash at put {at} of {mutations} ({})",
                if applied { "landed" } else { "lost" }
            );
            let FaultyRun {
                storage,
                cache,
                result,
                fired,
            } = run_with_fault(storage, Fault::Crash { at, applied }, &run);
            assert!(result.is_err(), "{what}: the backup succeeded");
            assert!(!fired.is_empty(), "{what}: no crash");
            // The snapshot is the last write: it exists iff it landed.
            let snapshot_landed = applied && at + 1 == mutations;

            // A new machine (no cache)...
            let repo = open_clean(&storage, &CacheLocation::Temporary, &what);
            let committed = check(&repo, before, Some(new), &format!("{what}, new cache"));
            assert_eq!(committed.is_some(), snapshot_landed, "{what}");
            drop(repo);
            // ...and the same machine, with the cache the crash left.
            let repo = open_clean(&storage, &cache_in(&cache), &what);
            let again = check(&repo, before, Some(new), &format!("{what}, old cache"));
            assert_eq!(again, committed, "{what}");
            let retried =
                run(&repo).unwrap_or_else(|e| panic!("{what}: the backup fails again: {e}"));
            // A prune clears what the crash left; nothing committed goes.
            prune_now(&repo).unwrap_or_else(|e| panic!("{what}: prune after the crash: {e}"));
            assert_prune_is_noop(&repo, &what);
            drop(repo);
            assert_after_retry(&storage, before, new, committed, &retried, &what);
            tried += 1;
        }
    }
    eprintln!("{label}: {tried} crash points tried ({mutations} puts, each landed or lost)");
    tried
}

#[test]
fn crash_at_any_point_of_a_backup_loses_nothing() {
    let v = versions();
    let (mem, before) = first_stream(&v.v1);
    let new = stream_files(&v.v2);
    crash_backup_everywhere(&mem, &before, &new, |r| backup_stream(r, &v.v2), "backup");
}

#[test]
fn crash_at_any_point_of_a_directory_backup_loses_nothing() {
    let src = tempfile::tempdir().unwrap();
    let dir = src.path().join("data");
    let (mem, before, new) = first_dir(&dir);
    crash_backup_everywhere(
        &mem,
        &before,
        &new,
        |r| backup_paths(r, &dir),
        "directory backup",
    );
}

/// A backup of more than 16 packs writes an index object midway: a crash
/// after it leaves indexed packs that no snapshot uses, which the next
/// backup reuses and a prune deletes.
#[test]
fn crash_at_any_point_of_a_long_backup_loses_nothing() {
    let small = pseudo_random(100 << 10, 50);
    let (mem, before) = first_stream(&small);
    let mut long = small.clone();
    long.extend(pseudo_random(17 << 20, 51));
    let new = stream_files(&long);
    let probe = mem.fork();
    let repo = open(Arc::new(probe.clone()), &CacheLocation::Temporary).unwrap();
    backup_stream(&repo, &long).unwrap();
    let indexes = probe.names(ObjectKind::Index).len() - mem.names(ObjectKind::Index).len();
    assert!(indexes >= 2, "no index object midway");
    crash_backup_everywhere(
        &mem,
        &before,
        &new,
        |r| backup_stream(r, &long),
        "long backup",
    );
}

#[test]
fn crash_at_any_point_of_a_prune_loses_nothing() {
    let v = versions();
    let (mem, kept) = forgotten_repo(&v);
    let (counts, mutations) = count_ops(&mem, |repo| prune_now(repo).map(drop));
    assert!(counts[&Op::Delete] > 0 && counts[&Op::Put] > 0);
    let mut tried = 0;
    for at in 0..mutations {
        for applied in [false, true] {
            let what = format!(
                "prune, crash at mutation {at} of {mutations} ({})",
                if applied { "landed" } else { "lost" }
            );
            let FaultyRun {
                storage,
                cache,
                result,
                fired,
            } = run_with_fault(&mem, Fault::Crash { at, applied }, prune_now);
            assert!(result.is_err(), "{what}: the prune succeeded");
            assert!(!fired.is_empty(), "{what}: no crash");

            let repo = open_clean(&storage, &CacheLocation::Temporary, &what);
            assert_eq!(
                check(&repo, &kept, None, &format!("{what}, new cache")),
                None
            );
            drop(repo);
            let repo = open_clean(&storage, &cache_in(&cache), &what);
            assert_eq!(
                check(&repo, &kept, None, &format!("{what}, old cache")),
                None
            );
            // A backup before the prune is run again, then the prune.
            let v4 = backup_stream(&repo, &v.v4)
                .unwrap_or_else(|e| panic!("{what}: backup after the crash: {e}"));
            prune_now(&repo).unwrap_or_else(|e| panic!("{what}: prune fails again: {e}"));
            assert_prune_is_noop(&repo, &what);
            drop(repo);

            let mut after = kept.clone();
            after.insert(v4.id, stream_files(&v.v4));
            let repo = open_clean(&storage, &CacheLocation::Temporary, &what);
            assert_eq!(check(&repo, &after, None, &what), None);
            tried += 1;
        }
    }
    eprintln!(
        "prune: {tried} crash points tried ({mutations} puts and deletes, each landed or lost; {counts:?})"
    );
}

#[test]
fn crash_during_init_leaves_no_half_repository() {
    let opts = || {
        let mut o = InitOptions::default();
        o.kdf = KdfParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        };
        o
    };
    let info = || KeyInfo {
        created: "2025-01-01T00:00:00Z".into(),
        host: "test".into(),
        user: "test".into(),
        kind: "full".into(),
    };
    let mut tried = 0;
    // init writes a key file, then the config.
    for at in 0..2 {
        for applied in [false, true] {
            let what = format!("init, crash at put {at} ({applied})");
            let mem = MemBackend::new();
            let fb = Arc::new(FaultBackend::new(Arc::new(mem.clone())));
            fb.arm(Fault::Crash { at, applied });
            assert!(repository::init(fb.clone(), PASSWORD, &opts(), info()).is_err());
            let config_landed = at == 1 && applied;
            match open(Arc::new(mem.clone()), &CacheLocation::Temporary) {
                Ok(repo) => {
                    assert!(config_landed, "{what}: a repository without config opens");
                    check(&repo, &Model::new(), None, &what);
                }
                Err(e) => {
                    assert!(!config_landed, "{what}: {e}");
                    assert_eq!(e.kind(), ErrorKind::RepositoryNotFound, "{what}: {e}");
                    repository::init(Arc::new(mem.clone()), PASSWORD, &opts(), info())
                        .unwrap_or_else(|e| panic!("{what}: init again: {e}"));
                }
            }
            // Whichever key files are there, the password opens it.
            let repo = open_clean(&mem, &CacheLocation::Temporary, &what);
            let data = pseudo_random(50_000, 60);
            let s = backup_stream(&repo, &data).unwrap();
            check(&repo, &[(s.id, stream_files(&data))].into(), None, &what);
            tried += 1;
        }
    }
    eprintln!("init: {tried} crash points tried");
}

// ---------------------------------------------------------------------------
// Damaged reads

const DAMAGES: [Damage; 8] = [
    Damage::Short(1),
    Damage::Short(100),
    Damage::Short(5000),
    Damage::Short(usize::MAX),
    Damage::Flip { permille: 0 },
    Damage::Flip { permille: 1 },
    Damage::Flip { permille: 500 },
    Damage::Flip { permille: 1000 },
];

/// A repository with a stream snapshot and a snapshot of a directory, all
/// of unique random data: a restore reads only bytes it uses (no gaps
/// between the blobs it merges into one read), so any damage must show.
fn damage_repo() -> (MemBackend, tempfile::TempDir, Model) {
    let mem = init_repo();
    let src = tempfile::tempdir().unwrap();
    let dir = src.path().join("tree");
    fs::create_dir_all(dir.join("sub")).unwrap();
    fs::write(dir.join("one.bin"), pseudo_random(700 << 10, 40)).unwrap();
    fs::write(dir.join("sub/two.bin"), pseudo_random(300 << 10, 41)).unwrap();
    fs::write(dir.join("sub/three.bin"), pseudo_random(5000, 42)).unwrap();
    let stream = pseudo_random(1_300 << 10, 43);
    let repo = open(Arc::new(mem.clone()), &CacheLocation::Temporary).unwrap();
    let a = backup_stream(&repo, &stream).unwrap();
    let b = backup_paths(&repo, &dir).unwrap();
    let model = [(a.id, stream_files(&stream)), (b.id, files_of_dir(&dir))].into();
    (mem, src, model)
}

#[test]
fn damaged_reads_during_a_restore_are_errors() {
    let (mem, _src, model) = damage_repo();
    let fb = Arc::new(FaultBackend::new(Arc::new(mem.clone())));
    let repo = open(fb.clone(), &CacheLocation::Temporary).unwrap();
    let snapshots = repo.load_snapshots().unwrap().good;
    assert_eq!(snapshots.len(), 2);
    let mut tried = 0;
    for snap in &snapshots {
        let expected = &model[&snap.id];
        fb.arm(Fault::None);
        assert_files(&restore_files(&repo, snap).unwrap(), expected, "clean");
        let reads = fb.reads();
        assert!(reads >= 3, "too few reads to be interesting: {reads}");
        for nth in 0..reads {
            for damage in DAMAGES {
                let what = format!(
                    "{:?} snapshot, read {nth} of {reads} damaged ({damage:?})",
                    snap.source.kind
                );
                let target = tempfile::tempdir().unwrap();
                fb.arm(Fault::Damage { nth, damage });
                let result = restore_into(&repo, snap, target.path());
                assert_eq!(fb.fired().len(), 1, "{what}: no damage done");
                let err = result
                    .err()
                    .unwrap_or_else(|| panic!("{what}: restore succeeded"));
                assert_eq!(err.kind(), ErrorKind::Corrupt, "{what}: {err}");
                // Nothing wrong is left behind: each file there is whole
                // (dump: what was written is a verified prefix).
                for (path, bytes) in read_files(target.path()) {
                    let want = expected
                        .get(&path)
                        .unwrap_or_else(|| panic!("{what}: stray file {}", path.display()));
                    let whole = bytes == *want;
                    let prefix = path == Path::new(FILE) && want.starts_with(&bytes);
                    assert!(
                        whole || prefix,
                        "{what}: {} restored wrong ({} bytes)",
                        path.display(),
                        bytes.len()
                    );
                }
                tried += 1;
            }
        }
    }
    eprintln!("restore: {tried} damaged reads tried, each refused");
}

#[test]
fn damaged_reads_from_open_to_restore_never_give_wrong_bytes() {
    let (mem, _src, model) = damage_repo();
    // Open with a new cache, list, restore everything.
    let run = |fb: &Arc<FaultBackend>| -> Result<(Model, usize)> {
        let repo = open(fb.clone(), &CacheLocation::Temporary)?;
        let list = repo.load_snapshots()?;
        let mut out = Model::new();
        for s in &list.good {
            out.insert(s.id, restore_files(&repo, s)?);
        }
        Ok((out, list.damaged.len()))
    };
    let fb = Arc::new(FaultBackend::new(Arc::new(mem.clone())));
    fb.arm(Fault::None);
    assert_eq!(run(&fb).unwrap(), (model.clone(), 0));
    let reads = fb.reads();
    let (mut refused, mut recovered, mut reported) = (0, 0, 0);
    for nth in 0..reads {
        for damage in DAMAGES {
            let what = format!("read {nth} of {reads} damaged ({damage:?})");
            let fb = Arc::new(FaultBackend::new(Arc::new(mem.clone())));
            fb.arm(Fault::Damage { nth, damage });
            let result = run(&fb);
            let fired = fb.fired();
            assert_eq!(fired.len(), 1, "{what}: damage done {fired:?}");
            match result {
                Err(_) => refused += 1,
                Ok((restored, damaged)) => {
                    // Only a snapshot that was reported damaged may be
                    // missing; every one restored is right.
                    for (id, files) in &restored {
                        assert_files(files, &model[id], &what);
                    }
                    assert_eq!(restored.len() + damaged, model.len(), "{what}");
                    if damaged > 0 {
                        reported += 1;
                    } else {
                        // The damaged read was of an index object: it was
                        // read again when a blob was not found.
                        assert_eq!(fired[0].kind, ObjectKind::Index, "{what}: not noticed");
                        recovered += 1;
                    }
                }
            }
        }
    }
    eprintln!(
        "open+restore: {} damaged reads tried: {refused} refused, {reported} reported a damaged snapshot, {recovered} recovered by reading again",
        refused + recovered + reported
    );
}

// ---------------------------------------------------------------------------
// Model test

#[derive(Debug, Clone)]
enum Change {
    Edit { at: u32, seed: u64 },
    Append { len: u32, seed: u64 },
    Fresh { len: u32, seed: u64 },
    Cut { keep_permille: u32 },
}

#[derive(Debug, Clone)]
enum Step {
    Backup(Change),
    Forget(u8),
    Prune(PruneKind),
    CrashBackup {
        change: Change,
        at: u8,
        applied: bool,
    },
    CrashPrune {
        kind: PruneKind,
        at: u8,
        applied: bool,
    },
}

/// Largest content of the model test.
const MODEL_MAX: usize = 1_536 << 10;

fn apply(change: &Change, data: &mut Vec<u8>) {
    match *change {
        Change::Edit { at, seed } => edit(data, at as usize, seed),
        Change::Append { len, seed } => data.extend(pseudo_random(len as usize, seed)),
        Change::Fresh { len, seed } => {
            *data = pseudo_random(len as usize, seed);
            data.extend(dump_text(len as usize / 4, seed));
        }
        Change::Cut { keep_permille } => data.truncate(data.len() * keep_permille as usize / 1000),
    }
    data.truncate(MODEL_MAX);
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        (any::<u32>(), any::<u64>()).prop_map(|(at, seed)| Change::Edit { at, seed }),
        (1u32..400_000, any::<u64>()).prop_map(|(len, seed)| Change::Append { len, seed }),
        (50_000u32..900_000, any::<u64>()).prop_map(|(len, seed)| Change::Fresh { len, seed }),
        (200u32..1000).prop_map(|keep_permille| Change::Cut { keep_permille }),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => change().prop_map(Step::Backup),
        2 => any::<u8>().prop_map(Step::Forget),
        2 => prune_kind().prop_map(Step::Prune),
        2 => (change(), 0u8..6, any::<bool>())
            .prop_map(|(change, at, applied)| Step::CrashBackup { change, at, applied }),
        2 => (prune_kind(), 0u8..16, any::<bool>())
            .prop_map(|(kind, at, applied)| Step::CrashPrune { kind, at, applied }),
    ]
}

/// The prunes of the model test.
#[derive(Debug, Clone, Copy)]
enum PruneKind {
    /// `--grace 0`: delete and repack at once.
    Now,
    /// `--grace 0 --max-unused 0`: repack every partly used pack.
    RepackAll,
    /// The repository's grace period: only mark unused packs (a later
    /// prune with grace 0 deletes them).
    Mark,
}

impl PruneKind {
    fn run(self, repo: &Repository) -> Result<PruneStats> {
        match self {
            PruneKind::Now => prune_with(repo, MaxUnused::default(), Some(0)),
            PruneKind::RepackAll => prune_with(repo, MaxUnused::Bytes(0), Some(0)),
            PruneKind::Mark => prune_with(repo, MaxUnused::default(), None),
        }
    }
}

fn prune_kind() -> impl Strategy<Value = PruneKind> {
    prop_oneof![
        Just(PruneKind::Now),
        Just(PruneKind::RepackAll),
        Just(PruneKind::Mark)
    ]
}

/// Runs `steps`, each as a new process on one machine (one cache
/// directory), and checks the repository against the model after each.
fn run_model(steps: &[Step]) -> (usize, usize) {
    let mem = init_repo();
    let cache = tempfile::tempdir().unwrap();
    let mut model = Model::new();
    let mut data = pseudo_random(512 << 10, 7);
    data.extend(dump_text(128 << 10, 7));
    let (mut crashes, mut landed) = (0, 0);
    for (i, step) in steps.iter().enumerate() {
        let what = format!("step {i}: {step:?}");
        let fb = Arc::new(FaultBackend::new(Arc::new(mem.clone())));
        let repo = open(fb.clone(), &cache_in(&cache)).unwrap();
        let mut maybe = None;
        match step {
            Step::Backup(change) => {
                apply(change, &mut data);
                let s = backup_stream(&repo, &data).unwrap_or_else(|e| panic!("{what}: {e}"));
                model.insert(s.id, stream_files(&data));
            }
            Step::Forget(k) => {
                if let Some(&id) = model.keys().nth(*k as usize % model.len().max(1)) {
                    forget(&mem, &id);
                    model.remove(&id);
                }
            }
            Step::Prune(kind) => {
                kind.run(&repo).unwrap_or_else(|e| panic!("{what}: {e}"));
            }
            Step::CrashBackup {
                change,
                at,
                applied,
            } => {
                apply(change, &mut data);
                fb.arm(Fault::Crash {
                    at: *at as usize,
                    applied: *applied,
                });
                let result = backup_stream(&repo, &data);
                if fb.fired().is_empty() {
                    let s = result.unwrap_or_else(|e| panic!("{what}: {e}"));
                    model.insert(s.id, stream_files(&data));
                } else {
                    assert!(result.is_err(), "{what}: the backup succeeded");
                    maybe = Some(stream_files(&data));
                    crashes += 1;
                }
            }
            Step::CrashPrune { kind, at, applied } => {
                fb.arm(Fault::Crash {
                    at: *at as usize,
                    applied: *applied,
                });
                let result = kind.run(&repo);
                if fb.fired().is_empty() {
                    result.unwrap_or_else(|e| panic!("{what}: {e}"));
                } else {
                    assert!(result.is_err(), "{what}: the prune succeeded");
                    crashes += 1;
                }
            }
        }
        drop(repo);
        // Checked the way the next run sees it: the same cache directory.
        let repo = open_clean(&mem, &cache_in(&cache), &what);
        if let Some(id) = check(&repo, &model, maybe.as_ref(), &what) {
            model.insert(id, maybe.unwrap_or_default());
            landed += 1;
        }
    }
    // From scratch, and after a prune that repacks everything.
    let repo = open_clean(&mem, &CacheLocation::Temporary, "end");
    assert_eq!(check(&repo, &model, None, "end, new cache"), None);
    PruneKind::RepackAll.run(&repo).unwrap();
    assert_prune_is_noop(&repo, "end");
    assert_eq!(check(&repo, &model, None, "end, after a prune"), None);
    (crashes, landed)
}

static MODEL_TOTALS: std::sync::Mutex<(usize, usize, usize, usize)> =
    std::sync::Mutex::new((0, 0, 0, 0));

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 24,
        max_shrink_iters: 64,
        ..ProptestConfig::default()
    })]

    #[test]
    fn model_backups_forgets_prunes_and_crashes(steps in proptest::collection::vec(step(), 1..=8)) {
        let (crashes, landed) = run_model(&steps);
        let mut t = MODEL_TOTALS.lock().unwrap();
        t.0 += 1;
        t.1 += steps.len();
        t.2 += crashes;
        t.3 += landed;
        eprintln!(
            "model: {} cases so far, {} steps, {} crashes ({} crashed backups committed)",
            t.0, t.1, t.2, t.3
        );
    }
}

/// `check` under faults: a failed read (storage unreachable) makes the
/// check fail, never report damage that is not there; a damaged read is
/// reported as damage, never passed over.
#[test]
fn check_tells_failed_reads_from_damage() {
    let (mem, _src, _model) = damage_repo();
    let fb = Arc::new(FaultBackend::new(Arc::new(mem.clone())));
    let repo = open(fb.clone(), &CacheLocation::Temporary).unwrap();
    let mut opts = CheckOptions::default();
    opts.read_data = Some(DataSubset::All);
    let run = |repo: &Repository| {
        integrity::check(repo, &opts, &NoCheckProgress, &AtomicBool::new(false))
    };
    fb.arm(Fault::None);
    assert!(run(&repo).unwrap().is_ok());
    let (gets, ranges) = (fb.count(Op::Get), fb.count(Op::GetRange));
    let mut tried = 0;
    for (op, n) in [(Op::Get, gets), (Op::GetRange, ranges)] {
        for nth in 0..n {
            fb.arm(Fault::Fail {
                op,
                nth,
                failure: Failure::Io,
            });
            let what = format!("{op:?} {nth} of {n} fails");
            match run(&repo) {
                Err(e) => assert_eq!(e.kind(), ErrorKind::Io, "{what}: {e}"),
                Ok(r) => panic!("{what}: check did not fail: {:?}", r.problems),
            }
            tried += 1;
        }
    }
    for nth in 0..gets + ranges {
        for damage in [Damage::Short(1), Damage::Flip { permille: 500 }] {
            fb.arm(Fault::Damage { nth, damage });
            let what = format!("read {nth} damaged ({damage:?})");
            let report = run(&repo).unwrap_or_else(|e| panic!("{what}: {e}"));
            if fb.fired().is_empty() {
                continue;
            }
            assert!(!report.is_ok(), "{what}: damage passed over");
            tried += 1;
        }
    }
    eprintln!("check under faults: {tried} failed or damaged reads, each told apart");
}

/// `repair index` and `repair snapshots` under failed reads: they stop
/// with the I/O error and change nothing; an outage is never taken for
/// lost data.
#[test]
fn repairs_stop_on_failed_reads_and_change_nothing() {
    use cairn_core::ops::repair::{self, IndexRepairOptions, SnapshotRepairOptions};
    let (mem, _src, model) = damage_repo();
    // Something to repair: one index object gone (repair index) ...
    let index = mem.names(ObjectKind::Index);
    let fb = Arc::new(FaultBackend::new(Arc::new(mem.clone())));
    let no = AtomicBool::new(false);
    let mut tried = 0;
    for (op, what) in [(Op::Get, "get"), (Op::GetRange, "get_range")] {
        for nth in 0.. {
            let copy = mem.fork();
            copy.delete(ObjectKind::Index, &index[0]).unwrap();
            let fb = Arc::new(FaultBackend::new(Arc::new(copy.clone())));
            let repo = open(fb.clone(), &CacheLocation::Temporary).unwrap();
            let before: Vec<_> = [ObjectKind::Index, ObjectKind::Pack, ObjectKind::Snapshot]
                .iter()
                .map(|k| copy.names(*k))
                .collect();
            fb.arm(Fault::Fail {
                op,
                nth,
                failure: Failure::Io,
            });
            let r = repair::repair_index(&repo, IndexRepairOptions::default(), &|_, _| {}, &no);
            if fb.fired().is_empty() {
                r.unwrap();
                break;
            }
            // A read that fails after the work is done (the closing cache
            // refresh) cannot undo it: the repair must then be complete.
            if r.is_ok() {
                let fresh = open(Arc::new(copy.clone()), &CacheLocation::Temporary).unwrap();
                check(
                    &fresh,
                    &model,
                    None,
                    &format!("repair index, late {what} {nth} failed"),
                );
                tried += 1;
                continue;
            }
            let e = r
                .err()
                .unwrap_or_else(|| panic!("repair index, {what} {nth} failed: no error"));
            assert_eq!(e.kind(), ErrorKind::Io, "{e}");
            let after: Vec<_> = [ObjectKind::Index, ObjectKind::Pack, ObjectKind::Snapshot]
                .iter()
                .map(|k| copy.names(*k))
                .collect();
            assert_eq!(
                before, after,
                "repair index, {what} {nth} failed: storage changed"
            );
            tried += 1;
        }
    }
    // ... and a pack gone (repair snapshots, which must stop, not zero).
    for nth in 0.. {
        let copy = mem.fork();
        let pack = largest_pack(&copy);
        copy.delete(ObjectKind::Pack, &pack).unwrap();
        let fb = Arc::new(FaultBackend::new(Arc::new(copy.clone())));
        let repo = open(fb.clone(), &CacheLocation::Temporary).unwrap();
        let list = repo.load_snapshots().unwrap();
        let before = copy.names(ObjectKind::Snapshot);
        fb.arm(Fault::Fail {
            op: Op::GetRange,
            nth,
            failure: Failure::Io,
        });
        let mut opts = SnapshotRepairOptions::default();
        opts.read_data = true;
        opts.forget = true;
        opts.dry_run = false;
        let r = repair::repair_snapshots(&repo, &list.good, &[], opts, &no);
        if fb.fired().is_empty() {
            r.unwrap();
            break;
        }
        let e = r
            .err()
            .unwrap_or_else(|| panic!("repair snapshots, read {nth} failed: no error"));
        assert_eq!(e.kind(), ErrorKind::Io, "{e}");
        assert_eq!(
            copy.names(ObjectKind::Snapshot),
            before,
            "snapshots changed"
        );
        tried += 1;
    }
    let _ = (fb, model);
    eprintln!("repairs under failed reads: {tried} tried, each stopped and changed nothing");
}

fn largest_pack(mem: &MemBackend) -> String {
    mem.names(ObjectKind::Pack)
        .into_iter()
        .max_by_key(|n| mem.get(ObjectKind::Pack, n).map(|b| b.len()).unwrap_or(0))
        .unwrap()
}

/// Fetches archived WAL file `name` through a new cache: its bytes.
fn fetch_wal(storage: &MemBackend, name: &str, what: &str) -> Option<Vec<u8>> {
    let repo = open_clean(storage, &CacheLocation::Temporary, what);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join(name);
    match cairn_core::pg::wal::fetch(&repo, name, &dest, &AtomicBool::new(false)) {
        Ok(_) => Some(fs::read(&dest).unwrap()),
        Err(e) if e.kind() == ErrorKind::SourceNotFound => None,
        Err(e) => panic!("{what}: fetch fails: {e}"),
    }
}

#[test]
fn crash_at_any_point_of_a_wal_push_loses_nothing_and_the_retry_archives_it() {
    let v = versions();
    let (mem, before) = first_stream(&v.v1);
    let dir = tempfile::tempdir().unwrap();
    let segment = dir.path().join("seg");
    let wal = pseudo_random(3 << 20, 99);
    fs::write(&segment, &wal).unwrap();
    let name = "000000010000000000000007";
    let push = |repo: &Repository| {
        cairn_core::pg::wal::push(repo, name, &segment, "test", &AtomicBool::new(false))
    };
    let (_, mutations) = count_ops(&mem, |repo| push(repo).map(drop));
    assert!(mutations >= 3, "too few puts: {mutations}");
    for at in 0..mutations {
        for applied in [false, true] {
            let what = format!(
                "wal-push, crash at put {at} of {mutations} ({})",
                if applied { "landed" } else { "lost" }
            );
            let run = run_with_fault(&mem, Fault::Crash { at, applied }, push);
            assert!(run.result.is_err(), "{what}: the push succeeded");
            // The record is the last write: the WAL file is archived iff
            // it landed, and then whole.
            let archived = fetch_wal(&run.storage, name, &what);
            assert_eq!(archived.is_some(), applied && at + 1 == mutations, "{what}");
            if let Some(bytes) = archived {
                assert!(bytes == wal, "{what}: wrong bytes");
            }
            let repo = open_clean(&run.storage, &cache_in(&run.cache), &what);
            assert_eq!(check(&repo, &before, None, &what), None);
            // PostgreSQL retries: it works, and the file is then whole.
            push(&repo).unwrap_or_else(|e| panic!("{what}: the retry fails: {e}"));
            prune_now(&repo).unwrap_or_else(|e| panic!("{what}: prune: {e}"));
            drop(repo);
            let fetched = fetch_wal(&run.storage, name, &what);
            assert!(
                fetched.as_deref() == Some(&wal[..]),
                "{what}: not archived whole"
            );
        }
    }
}

/// Prune copies the blobs it keeps as they are stored, checking each seal
/// first: a kept blob that no longer opens stops it before anything is
/// deleted, and the error names the pack.
#[test]
fn prune_refuses_to_copy_a_damaged_blob_and_deletes_nothing() {
    let mem = init_repo();
    let repo = open(Arc::new(mem.clone()), &CacheLocation::Temporary).unwrap();
    let a = pseudo_random(600 << 10, 61);
    let mut b = a[..300 << 10].to_vec();
    b.extend(pseudo_random(100 << 10, 62));
    let first = backup_stream(&repo, &a).unwrap();
    let second = backup_stream(&repo, &b).unwrap();
    mem.delete(ObjectKind::Snapshot, &first.id.to_hex())
        .unwrap();
    let cancel = AtomicBool::new(false);
    let mut opts = PruneOptions::default();
    opts.max_unused = MaxUnused::Percent(0.0);
    opts.grace_seconds = Some(0);
    let plan = prune::plan(&repo, &opts, &cancel).unwrap();
    let target = plan
        .with_action(prune::PackAction::Repack)
        .next()
        .expect("a partly used pack to repack");
    // One flipped ciphertext byte in every blob of that pack.
    let name = target.id.to_hex();
    let mut bytes = mem.get(ObjectKind::Pack, &name).unwrap();
    let entries = repo
        .read_pack_trailer(&target.id, bytes.len() as u64)
        .unwrap();
    for e in &entries {
        bytes[e.offset as usize + 30] ^= 0x40;
    }
    mem.delete(ObjectKind::Pack, &name).unwrap();
    mem.put(ObjectKind::Pack, &name, &bytes).unwrap();
    let packs_before = mem.names(ObjectKind::Pack);
    let indexes_before = mem.names(ObjectKind::Index);

    let err = prune::execute(&repo, &plan, &cancel).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(err.to_string().contains(&name), "{err}");
    let packs_after = mem.names(ObjectKind::Pack);
    assert!(
        packs_before.iter().all(|p| packs_after.contains(p)),
        "a failed prune deleted packs"
    );
    assert_eq!(mem.names(ObjectKind::Index), indexes_before);
    // Nothing was committed: the kept snapshot is still listed.
    assert!(repo
        .load_snapshots()
        .unwrap()
        .good
        .iter()
        .any(|s| s.id == second.id));
}
