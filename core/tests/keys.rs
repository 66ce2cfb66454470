//! Key management through the library: a removal that would leave no full
//! key, because another removal happened at the same moment, puts the key
//! file back.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use cairn_core::backend::{Backend, LocalBackend, ObjectKind};
use cairn_core::ops::key;
use cairn_core::repo::repository::{self, CacheLocation};

#[test]
fn the_last_full_key_survives_two_removals_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let backend: Arc<dyn Backend> = Arc::new(LocalBackend::new(dir.path()));
    common::init_small(backend.clone(), b"first", false);
    let repo = repository::locate(backend.clone())
        .unwrap()
        .unlock(b"first", &CacheLocation::Temporary)
        .unwrap();
    let kdf = common::FAST_KDF;
    let info = common::key_info("h", "u");
    let second = key::add(&repo, b"second", kdf, &info).unwrap();
    // Both keys listed: removing the second looks safe...
    let keys = key::list(&repo).unwrap();
    let target = key::resolve(&keys, &second).unwrap();
    assert_eq!(key::removal_risk(&keys, target), None);
    // ...but meanwhile another admin removes the first one.
    backend.delete(ObjectKind::Key, repo.key_name()).unwrap();
    let err = key::remove(&repo, &second, true).unwrap_err();
    assert!(err.to_string().contains("put back"), "{err}");
    // The second key is there again and opens the repository.
    repository::locate(backend.clone())
        .unwrap()
        .unlock(b"second", &CacheLocation::Temporary)
        .unwrap();
    // Forced, it goes.
    key::remove(&repo, &second, false).unwrap();
    assert!(backend.list(ObjectKind::Key).unwrap().is_empty());
}

#[test]
fn a_write_only_key_is_listed_and_opens_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let backend: Arc<dyn Backend> = Arc::new(LocalBackend::new(dir.path()));
    common::init_small(backend.clone(), b"full", false);
    let repo = repository::locate(backend.clone())
        .unwrap()
        .unlock(b"full", &CacheLocation::Temporary)
        .unwrap();
    let kdf = common::FAST_KDF;
    let info = common::key_info("db1", "postgres");
    let name = key::add_write_only(&repo, b"writer", kdf, &info).unwrap();
    let keys = key::list(&repo).unwrap();
    let entry = key::resolve(&keys, &name).unwrap();
    assert_eq!(entry.info.as_ref().unwrap().kind, "write-only");
    assert!(!entry.is_full());
    // Not a key that reads: `unlock` refuses it as access denied (exit
    // 13), never as a wrong password (`unlock_to_add` takes it).
    let err = repository::locate(backend.clone())
        .unwrap()
        .unlock(b"writer", &CacheLocation::Temporary)
        .err()
        .unwrap();
    assert_eq!(err.kind(), cairn_core::ErrorKind::AccessDenied);
    // Removing the full key with only a write-only key left is the last
    // full key.
    let full = keys.iter().find(|k| k.current).unwrap();
    assert!(key::removal_risk(&keys, full).is_some());
}
