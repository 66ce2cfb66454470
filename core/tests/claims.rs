//! Create-only writes on storage that ignores create-only puts
//! (`repo-format.md` §15.4): concurrent `wal-push` of different contents
//! under one name and concurrent `init`, on an in-memory store whose puts
//! overwrite (as Garage 2.5's do). The real-server version of these
//! races is in the root `tests/s3.rs`.

#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use cairn_core::backend::claim::{self, put_exclusive, Claim, Exclusive, STALE_SECONDS};
use cairn_core::backend::{Backend, ObjectInfo, ObjectKind};
use cairn_core::pg::wal::{self, PushOutcome};
use cairn_core::repo::repository::{self, CacheLocation, Repository};
use cairn_core::{ErrorKind, Result};

use common::{init_small, key_info, pseudo_random, MemBackend, FAST_KDF};

const PASSWORD: &[u8] = b"claims";
const NAME: &str = "000000010000000000000042";

type PutHook = Box<dyn Fn(&MemBackend, ObjectKind, &str, &[u8]) -> Result<bool> + Send + Sync>;

/// An in-memory store whose puts go through `put` (to slow them down or
/// make them fail), and that says its create-only puts are atomic or not
/// as `atomic` says (to show what claims prevent, by claiming it falsely).
struct Store {
    inner: MemBackend,
    atomic: bool,
    put: PutHook,
}

impl Backend for Store {
    fn location(&self) -> String {
        "test store:".into()
    }
    fn create(&self) -> Result<()> {
        self.inner.create()
    }
    fn put(&self, kind: ObjectKind, name: &str, data: &[u8]) -> Result<bool> {
        (self.put)(&self.inner, kind, name, data)
    }
    fn get(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>> {
        self.inner.get(kind, name)
    }
    fn get_range(&self, kind: ObjectKind, name: &str, offset: u64, length: u64) -> Result<Vec<u8>> {
        self.inner.get_range(kind, name, offset, length)
    }
    fn list(&self, kind: ObjectKind) -> Result<Vec<ObjectInfo>> {
        self.inner.list(kind)
    }
    fn delete(&self, kind: ObjectKind, name: &str) -> Result<()> {
        self.inner.delete(kind, name)
    }
    fn atomic_create_only(&self) -> bool {
        self.atomic
    }
}

/// Slow to write objects of `kind` (widening the window between a
/// writer's check and its write); `claims_skipped` claims atomic puts.
fn slow(inner: &MemBackend, kind: ObjectKind, delay: Duration, claims_skipped: bool) -> Store {
    Store {
        atomic: claims_skipped || inner.atomic_create_only(),
        inner: inner.clone(),
        put: Box::new(move |m, k, name, data| {
            if k == kind {
                std::thread::sleep(delay);
            }
            m.put(k, name, data)
        }),
    }
}

fn open(backend: Arc<dyn Backend>) -> Repository {
    repository::locate(backend)
        .unwrap()
        .unlock(PASSWORD, &CacheLocation::Temporary)
        .unwrap()
}

fn small_repo(mem: &MemBackend) {
    init_small(Arc::new(mem.clone()), PASSWORD, false);
}

/// `writers` threads push different contents as [`NAME`] at once; returns
/// which of them exited successfully, and what a fetch then returns.
fn race(backend: Arc<dyn Backend>, writers: usize, round: u64) -> (Vec<usize>, Option<Vec<u8>>) {
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<_> = (0..writers)
        .map(|w| {
            let path = dir.path().join(format!("seg{w}"));
            fs::write(&path, pseudo_random(64 << 10, round * 100 + w as u64)).unwrap();
            path
        })
        .collect();
    let repos: Vec<_> = (0..writers).map(|_| open(backend.clone())).collect();
    let barrier = Barrier::new(writers);
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = repos
            .iter()
            .zip(&files)
            .map(|(repo, path)| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    wal::push(repo, NAME, path, "test", &AtomicBool::new(false))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut won = Vec::new();
    for (w, r) in results.iter().enumerate() {
        match r {
            Ok(PushOutcome::Stored { .. }) => won.push(w),
            Ok(other) => panic!("writer {w}: pushed new contents, told {other:?}"),
            Err(e) => assert_eq!(e.kind(), ErrorKind::WalConflict, "writer {w}: {e}"),
        }
    }
    let repo = open(backend);
    let dest = dir.path().join("fetched");
    let fetched = match wal::fetch(&repo, NAME, &dest, &AtomicBool::new(false)) {
        Ok(_) => Some(fs::read(&dest).unwrap()),
        Err(e) if e.kind() == ErrorKind::SourceNotFound => None,
        Err(e) => panic!("fetch: {e}"),
    };
    // What the winner pushed is what comes back.
    if let [w] = won[..] {
        assert!(
            fetched.as_deref() == Some(&fs::read(&files[w]).unwrap()[..]),
            "round {round}: writer {w} was told it archived the file, the archive holds other bytes"
        );
    }
    (won, fetched)
}

#[test]
fn the_probe_tells_a_store_that_overwrites_from_one_that_does_not() {
    assert!(claim::probe(&MemBackend::new()).unwrap());
    let overwriting = MemBackend::ignoring_create_only();
    assert!(!claim::probe(&overwriting).unwrap());
    // The probe leaves nothing behind.
    assert!(overwriting.names(ObjectKind::Claim).is_empty());
}

#[test]
fn concurrent_pushes_of_different_wal_contents_never_both_succeed() {
    // First the attack without claims, on a store that ignores
    // create-only: both pushes are told they archived the file.
    let mem = MemBackend::ignoring_create_only();
    small_repo(&mem);
    let liar: Arc<dyn Backend> = Arc::new(slow(
        &mem,
        ObjectKind::Wal,
        Duration::from_millis(300),
        true,
    ));
    let (won, _) = race(liar, 2, 0);
    assert_eq!(
        won.len(),
        2,
        "the control race did not reproduce the overwrite"
    );

    // With claims: whatever the timing, at most one is told it succeeded,
    // and it is the one whose bytes come back.
    let mut outcomes = [0usize; 3];
    for round in 1..=12u64 {
        let mem = MemBackend::ignoring_create_only();
        small_repo(&mem);
        let (kind, delay) = match round % 3 {
            0 => (ObjectKind::Wal, 50),
            1 => (ObjectKind::Claim, 50),
            _ => (ObjectKind::Pack, round),
        };
        let backend: Arc<dyn Backend> =
            Arc::new(slow(&mem, kind, Duration::from_millis(delay), false));
        let (won, fetched) = race(backend.clone(), 3, round);
        assert!(
            won.len() <= 1,
            "round {round}: writers {won:?} all succeeded"
        );
        outcomes[won.len()] += 1;
        assert_eq!(won.is_empty(), fetched.is_none(), "round {round}");
        // No claim is left behind, and a lone retry settles a tie.
        assert!(mem.names(ObjectKind::Claim).is_empty(), "round {round}");
        if won.is_empty() {
            let (won, _) = race(backend, 1, round + 1000);
            assert_eq!(won, vec![0], "round {round}: the retry alone did not win");
        }
    }
    eprintln!(
        "rounds with one winner / none: {} / {}",
        outcomes[1], outcomes[0]
    );
}

#[test]
fn a_stale_claim_is_ignored_and_a_live_one_blocks_other_contents() {
    let mem = MemBackend::ignoring_create_only();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let subject = [7u8; 32];
    let rival = format!("{}{}{}", "07".repeat(16), "ee".repeat(8), "00".repeat(8));
    let claim = Claim::new(&subject, &[1u8; 32]);
    // A live claim of other contents: refused, nothing written.
    mem.put_at(ObjectKind::Claim, &rival, b"", now - 5);
    let r = put_exclusive(&mem, ObjectKind::Drill, &"ab".repeat(32), b"x", &claim).unwrap();
    assert_eq!(r, Exclusive::Contended);
    assert!(mem.names(ObjectKind::Drill).is_empty());
    // The same claim, left by a writer that died an hour ago: ignored.
    mem.put_at(ObjectKind::Claim, &rival, b"", now - STALE_SECONDS - 60);
    let r = put_exclusive(&mem, ObjectKind::Drill, &"ab".repeat(32), b"x", &claim).unwrap();
    assert_eq!(r, Exclusive::Created);
    // Now it exists: a second writer is told so, and nothing changes.
    let r = put_exclusive(&mem, ObjectKind::Drill, &"ab".repeat(32), b"y", &claim).unwrap();
    assert_eq!(r, Exclusive::Exists);
    assert_eq!(mem.get(ObjectKind::Drill, &"ab".repeat(32)).unwrap(), b"x");
    // Only the dead writer's claim remains.
    assert_eq!(mem.names(ObjectKind::Claim), vec![rival]);
}

#[test]
fn of_concurrent_inits_on_a_store_that_overwrites_one_succeeds_and_it_opens() {
    for round in 0..6 {
        let mem = MemBackend::ignoring_create_only();
        let backend: Arc<dyn Backend> = Arc::new(slow(
            &mem,
            if round % 2 == 0 {
                ObjectKind::Config
            } else {
                ObjectKind::Claim
            },
            Duration::from_millis(50),
            false,
        ));
        let barrier = Barrier::new(3);
        let results: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..3)
                .map(|i| {
                    let (backend, barrier) = (backend.clone(), &barrier);
                    s.spawn(move || {
                        barrier.wait();
                        let mut opts = repository::InitOptions::default();
                        opts.kdf = FAST_KDF;
                        let password = format!("password {i}");
                        repository::init(backend, password.as_bytes(), &opts, key_info("h", "u"))
                            .map(|_| password)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let ok: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert!(ok.len() <= 1, "round {round}: {} inits succeeded", ok.len());
        for r in &results {
            if let Err(e) = r {
                assert_eq!(e.kind(), ErrorKind::RepositoryExists, "round {round}: {e}");
            }
        }
        // The one that succeeded opens the repository; a loser's key file
        // was taken back.
        if let [password] = ok[..] {
            repository::locate(backend.clone())
                .unwrap()
                .unlock(password.as_bytes(), &CacheLocation::Temporary)
                .unwrap_or_else(|e| panic!("round {round}: the winner's password: {e}"));
            assert_eq!(mem.names(ObjectKind::Key).len(), 1, "round {round}");
        } else {
            assert!(mem.names(ObjectKind::Key).is_empty(), "round {round}");
            // Nothing there: a plain retry creates it.
            let mut opts = repository::InitOptions::default();
            opts.kdf = FAST_KDF;
            repository::init(backend, b"retry", &opts, key_info("h", "u")).unwrap();
        }
    }
}

/// Refuses puts of `kind` as timed out, after applying them or not.
fn failing_put(inner: &MemBackend, kind: ObjectKind, applied: bool) -> Store {
    Store {
        inner: inner.clone(),
        atomic: false,
        put: Box::new(move |m, k, name, data| {
            if k != kind {
                return m.put(k, name, data);
            }
            if applied {
                m.put(k, name, data)?;
            }
            Err(cairn_core::Error::new(ErrorKind::Io, "timed out (test)"))
        }),
    }
}

#[test]
fn a_failed_final_write_keeps_its_claim_so_no_rival_can_win_meanwhile() {
    let name = "cd".repeat(32);
    for applied in [false, true] {
        let mem = MemBackend::ignoring_create_only();
        let failing = failing_put(&mem, ObjectKind::Drill, applied);
        let mine = Claim::new(&[9u8; 32], &[1u8; 32]);
        let e = put_exclusive(&failing, ObjectKind::Drill, &name, b"mine", &mine).unwrap_err();
        assert!(e.to_string().contains("claim stays"), "{e}");
        // The write may still land: the claim stays, and a rival of other
        // contents is kept out until it is stale.
        assert_eq!(mem.names(ObjectKind::Claim).len(), 1);
        let theirs = Claim::new(&[9u8; 32], &[2u8; 32]);
        let r = put_exclusive(&mem, ObjectKind::Drill, &name, b"theirs", &theirs).unwrap();
        let expected = if applied {
            Exclusive::Exists
        } else {
            Exclusive::Contended
        };
        assert_eq!(r, expected, "applied: {applied}");
    }
}

/// A store that honours If-None-Match but is not trusted to do so
/// atomically: a refused put is compared, not taken as success. Someone
/// else's drill record appears between a writer's check and its write.
fn honouring(inner: &MemBackend) -> Store {
    Store {
        inner: inner.clone(),
        atomic: false,
        put: Box::new(|m, kind, name, data| {
            if kind == ObjectKind::Drill && m.names(ObjectKind::Drill).is_empty() {
                m.put(kind, name, b"someone else's")?;
            }
            m.put(kind, name, data)
        }),
    }
}

#[test]
fn a_write_the_store_refuses_as_existing_is_compared_not_taken_as_ours() {
    let mem = MemBackend::new();
    let store = honouring(&mem);
    let claim = Claim::new(&[5u8; 32], &[6u8; 32]);
    let name = "ef".repeat(32);
    let r = put_exclusive(&store, ObjectKind::Drill, &name, b"mine", &claim).unwrap();
    assert_eq!(r, Exclusive::Exists);
    assert_eq!(
        mem.get(ObjectKind::Drill, &name).unwrap(),
        b"someone else's"
    );
    // Our own bytes already there (a retried request that landed): ours.
    let other = "ab".repeat(32);
    mem.put(ObjectKind::Drill, &other, b"x").unwrap();
    let r = put_exclusive(&store, ObjectKind::Drill, &other, b"x", &claim).unwrap();
    assert_eq!(r, Exclusive::Exists, "found at step 1, before any claim");
}
