//! Write-only keys through the library (issue 10): a write-only client backs
//! up nightly dumps, deduplicating against what is stored, and a full key
//! restores, checks and prunes them; with everything a write-only key file
//! holds, no stored pack or snapshot of anyone else opens, even when the
//! code's own refusals are bypassed.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use cairn_core::backend::{Backend, LocalBackend, ObjectKind};
use cairn_core::crypto::Keys;
use cairn_core::format::index::{self, IndexPack};
use cairn_core::format::keyfile::{self, Unwrapped};
use cairn_core::format::pack;
use cairn_core::format::snapshot::Snapshot;
use cairn_core::ops::key;
use cairn_core::ops::prune::{self, MaxUnused, PruneOptions};
use cairn_core::repo::appender::{Appender, CanAdd};
use cairn_core::repo::repository::{self, CacheLocation, Repository};
use cairn_core::{ErrorKind, Id};

const FULL: &[u8] = b"full password";
const WRITER: &[u8] = b"writer password";
const FILE: &str = "db.sql";

fn open(backend: &Arc<dyn Backend>, password: &[u8]) -> Repository {
    let locked = repository::locate(backend.clone()).unwrap();
    locked.unlock(password, &CacheLocation::Temporary).unwrap()
}

/// Opened to add: by a write-only key, an [`Appender`], which cannot read.
fn open_writer(backend: &Arc<dyn Backend>, password: &[u8]) -> Appender {
    let locked = repository::locate(backend.clone()).unwrap();
    locked
        .unlock_to_add(password, &CacheLocation::Temporary)
        .unwrap()
}

fn backup(repo: &impl CanAdd, data: &[u8]) -> Snapshot {
    common::backup_stream(repo, FILE, data, false).unwrap()
}

fn restore_bytes(repo: &Repository, snap: &Snapshot) -> Vec<u8> {
    common::restore_file(repo, snap, FILE).unwrap()
}

fn check_clean(repo: &Repository) {
    let report = common::check_read_data(repo).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
}

fn add_writer(repo: &Repository) -> String {
    let kdf = common::FAST_KDF;
    let info = common::key_info("db1", "postgres");
    key::add_write_only(repo, WRITER, kdf, &info).unwrap()
}

/// The key scheme byte of every stored pack.
fn pack_schemes(backend: &Arc<dyn Backend>) -> Vec<(String, u8)> {
    backend
        .list(ObjectKind::Pack)
        .unwrap()
        .into_iter()
        .map(|o| {
            let head = backend.get_range(ObjectKind::Pack, &o.name, 0, 8).unwrap();
            (o.name, head[7])
        })
        .collect()
}

fn pruned_fully(repo: &Repository) {
    let mut opts = PruneOptions::default();
    opts.grace_seconds = Some(0);
    opts.max_unused = MaxUnused::Bytes(0);
    let cancel = AtomicBool::new(false);
    let plan = prune::plan(repo, &opts, &cancel).unwrap();
    prune::execute(repo, &plan, &cancel).unwrap();
}

#[test]
fn write_only_nightly_backups_restore_with_a_full_key_and_survive_prune() {
    let dir = tempfile::tempdir().unwrap();
    let backend: Arc<dyn Backend> = Arc::new(LocalBackend::new(dir.path()));
    // Deltas on: a full key's later backup may use a writer's chunk as base.
    common::init_small(backend.clone(), FULL, true);
    let full = open(&backend, FULL);
    let nights: Vec<Vec<u8>> = (0..5)
        .map(|n| {
            let mut d = common::dump_text(400_000, 7);
            // Each night changes a different stretch and grows a little.
            let at = 50_000 * n as usize;
            d[at..at + 2_000].copy_from_slice(&common::pseudo_random(2_000, n));
            d.extend_from_slice(&common::dump_text(10_000 * n as usize, 100 + n));
            d
        })
        .collect();
    let first = backup(&full, &nights[0]);
    add_writer(&full);
    drop(full);

    // The writer: opened only with unlock_to_add; unlock says access denied.
    let locked = repository::locate(backend.clone()).unwrap();
    let err = locked
        .unlock(WRITER, &CacheLocation::Temporary)
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::AccessDenied, "{err}");
    let mut written = Vec::new();
    for data in &nights[1..4] {
        let writer = open_writer(&backend, WRITER);
        assert!(writer.is_write_only());
        let snap = backup(&writer, data);
        // No parent (it cannot read snapshots), and deduplicated against
        // what is stored: a night adds far less than its size.
        assert_eq!(snap.parent, None);
        assert!(
            snap.summary.data_added < data.len() as u64 / 4,
            "added {} of {}",
            snap.summary.data_added,
            data.len()
        );
        written.push((snap, data.clone()));
    }
    // What a writer stored, the next writer run finds (in the index, with
    // the session flag): the same night again adds only its tree.
    let writer = open_writer(&backend, WRITER);
    let again = backup(&writer, &nights[3]);
    assert!(again.summary.data_added < 1024, "{:?}", again.summary);
    written.push((again, nights[3].clone()));
    drop(writer);
    let schemes = pack_schemes(&backend);
    assert!(schemes.iter().any(|(_, s)| *s == 1), "{schemes:?}");
    assert!(schemes.iter().any(|(_, s)| *s == 0), "{schemes:?}");

    // The full key reads everything, checks it, and backs up on top.
    let full = open(&backend, FULL);
    let snaps = full.load_snapshots().unwrap();
    assert!(snaps.damaged.is_empty(), "{:?}", snaps.damaged);
    assert_eq!(snaps.good.len(), 5);
    for (snap, data) in &written {
        assert!(restore_bytes(&full, snap) == *data);
    }
    let last = backup(&full, &nights[4]);
    assert!(restore_bytes(&full, &last) == nights[4]);
    check_clean(&full);

    // Forget the first two nights and prune with nothing unused allowed:
    // the writer's packs that are partly used are repacked, their blobs
    // sealed again with the data key.
    for s in [&first, &written[0].0] {
        backend
            .delete(ObjectKind::Snapshot, &s.id.to_hex())
            .unwrap();
    }
    let before = pack_schemes(&backend);
    pruned_fully(&full);
    drop(full);
    let after = pack_schemes(&backend);
    let gone_session = before
        .iter()
        .filter(|(n, s)| *s == 1 && !after.iter().any(|(m, _)| m == n))
        .count();
    assert!(gone_session > 0, "no write-only pack was repacked");
    let full = open(&backend, FULL);
    for (snap, data) in &written[1..] {
        assert!(restore_bytes(&full, snap) == *data);
    }
    assert!(restore_bytes(&full, &last) == nights[4]);
    check_clean(&full);
}

#[test]
fn the_material_of_a_write_only_key_opens_no_stored_data() {
    let dir = tempfile::tempdir().unwrap();
    let backend: Arc<dyn Backend> = Arc::new(LocalBackend::new(dir.path()));
    common::init_small(backend.clone(), FULL, false);
    let full = open(&backend, FULL);
    let old = backup(&full, &common::dump_text(200_000, 1));
    let key_name = add_writer(&full);
    let repo_id = *full.id();
    let old_packs: Vec<String> = pack_schemes(&backend).into_iter().map(|(n, _)| n).collect();
    drop(full);

    // Everything the write-only key file holds, taken out by hand.
    let bytes = backend.get(ObjectKind::Key, &key_name).unwrap();
    let Some(Unwrapped::WriteOnly(w)) = keyfile::unwrap(&bytes, &repo_id, WRITER, "key").unwrap()
    else {
        panic!("not a write-only key");
    };
    let held = [
        w.keys.chunk_id_key,
        w.keys.metadata_id_key,
        w.keys.wal_name_key,
        w.keys.index_key,
        w.public,
    ];
    let writer = open_writer(&backend, WRITER);
    // Every held 32-byte value as data key, and the writer's own keys.
    let mut candidates: Vec<Keys> = held
        .iter()
        .map(|k| Keys::for_writer(&w.keys, k, &w.public))
        .collect();
    candidates.push(writer.keys().clone());

    let old_snapshot = backend.get(ObjectKind::Snapshot, &old.id.to_hex()).unwrap();
    // The writer reads the index objects: where every blob is...
    let indexed: Vec<_> = backend
        .list(ObjectKind::Index)
        .unwrap()
        .iter()
        .flat_map(|o| writer.load_index(&Id::parse(&o.name).unwrap()).unwrap())
        .collect();
    for name in &old_packs {
        let pack_id = Id::parse(name).unwrap();
        let bytes = backend.get(ObjectKind::Pack, name).unwrap();
        let located: Vec<_> = indexed
            .iter()
            .filter(|p| p.pack_id == pack_id)
            .flat_map(|p| p.blobs.clone())
            .collect();
        assert!(!located.is_empty());
        for keys in &candidates {
            // ...but no trailer, blob or snapshot opens.
            assert!(pack::read_trailer(keys, &repo_id, &bytes, &pack_id).is_err());
            for e in &located {
                let sealed = &bytes[e.offset as usize..e.end() as usize];
                assert!(pack::decode_blob(keys, &repo_id, e, sealed, &pack_id).is_err());
            }
            assert!(Snapshot::decode(keys, &repo_id, &old_snapshot, &old.id).is_err());
        }
    }
    // Through the library, an Appender has no method that reads a blob or
    // a snapshot (the keys it holds are those tried above).

    // What the writer itself stores, it cannot read back either: its key
    // blocks open only with the repository's secret key.
    let mine = backup(&writer, &common::dump_text(150_000, 2));
    let new_pack = pack_schemes(&backend)
        .into_iter()
        .find(|(_, s)| *s == 1)
        .unwrap()
        .0;
    let bytes = backend.get(ObjectKind::Pack, &new_pack).unwrap();
    let pack_id = Id::parse(&new_pack).unwrap();
    let err = pack::read_trailer(writer.keys(), &repo_id, &bytes, &pack_id)
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::AccessDenied, "{err}");
    let snap_bytes = backend
        .get(ObjectKind::Snapshot, &mine.id.to_hex())
        .unwrap();
    assert_eq!(snap_bytes[7], 1, "a write-only snapshot has key scheme 1");
    let err = Snapshot::decode(writer.keys(), &repo_id, &snap_bytes, &mine.id)
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::AccessDenied, "{err}");
    // A full key reads both.
    let full = open(&backend, FULL);
    assert!(pack::read_trailer(full.keys(), &repo_id, &bytes, &pack_id).is_ok());
    assert_eq!(
        Snapshot::decode(full.keys(), &repo_id, &snap_bytes, &mine.id)
            .unwrap()
            .tree,
        mine.tree
    );
}

#[test]
fn what_a_write_only_key_lists_in_the_index_cannot_replace_a_full_keys_data() {
    let dir = tempfile::tempdir().unwrap();
    let backend: Arc<dyn Backend> = Arc::new(LocalBackend::new(dir.path()));
    common::init_small(backend.clone(), FULL, false);
    let full = open(&backend, FULL);
    let data = common::dump_text(300_000, 5);
    let snap = backup(&full, &data);
    add_writer(&full);
    drop(full);

    // A compromised writer lists every stored blob again, as its own, in a
    // pack of garbage (sealed under its session key with the right IDs),
    // in a pack whose ID it could grind to sort first.
    let writer = open_writer(&backend, WRITER);
    let repo_id = *writer.id();
    let stored: Vec<pack::BlobEntry> = backend
        .list(ObjectKind::Index)
        .unwrap()
        .iter()
        .flat_map(|o| writer.load_index(&Id::parse(&o.name).unwrap()).unwrap())
        .flat_map(|p| p.blobs)
        .collect();
    assert!(stored.iter().all(|e| !e.session));
    let mut w = pack::PackWriter::new(writer.keys(), &repo_id).unwrap();
    for e in &stored {
        let garbage = vec![0x47; e.raw_length as usize];
        let blob =
            pack::encode_blob(writer.keys(), &repo_id, e.blob_type, e.id, &garbage, 1).unwrap();
        w.add(&blob).unwrap();
    }
    let forged = w.finish(writer.keys(), &repo_id).unwrap();
    backend
        .put(ObjectKind::Pack, &forged.id.to_hex(), &forged.bytes)
        .unwrap();
    let listing = index::encode(
        writer.keys(),
        &repo_id,
        &[IndexPack::live(forged.id, forged.entries.clone())],
    )
    .unwrap();
    backend
        .put(
            ObjectKind::Index,
            &Id::of_bytes(&listing).to_hex(),
            &listing,
        )
        .unwrap();
    // Listing a blob as sealed with the data key, or passing its index
    // object off as a full key's, gets the object refused as damaged.
    let lie = index::encode(
        writer.keys(),
        &repo_id,
        &[IndexPack::live(forged.id, vec![stored[0]])],
    )
    .unwrap();
    let mut posing = lie.clone();
    posing[7] = 0;
    posing.extend_from_slice(&[0u8; 32]);
    drop(writer);
    let full = open(&backend, FULL);
    for bytes in [&lie, &posing] {
        let id = Id::of_bytes(bytes);
        let err = index::decode(full.keys(), &repo_id, bytes, &id)
            .err()
            .unwrap();
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    }
    drop(full);

    // The full key: reads, checks (the forged pack is damage, the real
    // data whole), deduplicates only against its own data, and its prune
    // keeps the real copies and drops the forged ones.
    let full = open(&backend, FULL);
    assert!(restore_bytes(&full, &snap) == data);
    let again = backup(&full, &data);
    assert_eq!(again.summary.data_blobs, 0, "{:?}", again.summary);
    pruned_fully(&full);
    drop(full);
    let full = open(&backend, FULL);
    let schemes = pack_schemes(&backend);
    assert!(
        !schemes.iter().any(|(n, _)| *n == forged.id.to_hex()),
        "the forged pack survived prune"
    );
    assert!(restore_bytes(&full, &snap) == data);
    assert!(restore_bytes(&full, &again) == data);
    check_clean(&full);
}
