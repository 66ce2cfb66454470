//! A repository opened to add backups, by a full key or a write-only one.
//!
//! [`LockedRepository::unlock`](super::repository::LockedRepository::unlock)
//! gives a [`Repository`], which reads and writes everything and which a
//! write-only key never opens.
//! [`LockedRepository::unlock_to_add`](super::repository::LockedRepository::unlock_to_add)
//! gives an [`Appender`]: whatever key opened it, its methods are what
//! adding a backup needs (the index, to deduplicate; writing packs, index
//! objects and snapshots). Reading a snapshot, a tree or a chunk is not
//! something an `Appender` can be asked to do.
//!
//! The type narrows what code can ask for; the key is the security
//! boundary. A write-only key holds nothing that decrypts stored data, so
//! beneath the `Appender` the repository refuses every read as well, a
//! second wall (`docs/design.md` §8.2). A full key opened this way still
//! reads what adding needs (the parent snapshot, delta bases), and its
//! [`Appender::keys`] are the full keys: narrowing a full key is about
//! the interface, not about secrecy.
//!
//! The operations that add ([`crate::ops::backup::backup`],
//! [`crate::pg::wal::push`]) take either handle through [`CanAdd`].

use std::sync::Arc;

use crate::backend::Backend;
use crate::crypto::Keys;
use crate::error::Result;
use crate::format::config::RepoConfig;
use crate::format::index::IndexPack;
use crate::format::snapshot::Snapshot;
use crate::id::Id;
use crate::repo::cache::{CacheReader, IndexCache};
use crate::repo::repository::{CacheLocation, LockedRepository, Repository};

/// A repository opened to add backups only: see the [module](self).
///
/// It has no way to read what is stored:
///
/// ```compile_fail
/// fn list(adder: &cairn_core::repo::appender::Appender) {
///     let _ = adder.load_snapshots();
/// }
/// ```
///
/// ```compile_fail
/// fn read(adder: &cairn_core::repo::appender::Appender, id: &cairn_core::Id) {
///     let index = adder.index().unwrap();
///     let _ = adder.read_blob(&index, id, cairn_core::format::pack::BlobType::Data);
/// }
/// ```
pub struct Appender {
    repo: Repository,
}

impl Appender {
    pub(crate) fn new(repo: Repository) -> Self {
        Appender { repo }
    }

    /// Opened with a write-only key: backups it adds have no parent and
    /// no deltas, since both need reading what is stored.
    pub fn is_write_only(&self) -> bool {
        self.repo.is_write_only()
    }

    /// The repository ID.
    pub fn id(&self) -> &Id {
        self.repo.id()
    }

    /// The name of the key file whose password opened the repository.
    pub fn key_name(&self) -> &str {
        self.repo.key_name()
    }

    /// The repository's parameters (a write-only key file holds a copy).
    pub fn config(&self) -> &RepoConfig {
        self.repo.config()
    }

    /// The working keys: with a write-only key, those that seal and name
    /// new data, and nothing that opens stored data; with a full key, all
    /// of them.
    pub fn keys(&self) -> &Keys {
        self.repo.keys()
    }

    /// The storage.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        self.repo.backend()
    }

    /// Problems found while opening (damaged index objects), one line each.
    pub fn warnings(&self) -> &[String] {
        self.repo.warnings()
    }

    /// Where warnings raised later go: see [`Repository::set_warning_sink`].
    pub fn set_warning_sink(&mut self, sink: impl Fn(&str) + Send + Sync + 'static) {
        self.repo.set_warning_sink(sink)
    }

    /// The index cache.
    pub fn cache(&self) -> Arc<IndexCache> {
        self.repo.cache()
    }

    /// A read view of the index: what is stored, for deduplication.
    pub fn index(&self) -> Result<CacheReader> {
        self.repo.index()
    }

    /// Reads and decodes index object `id` (a write-only key reads the
    /// index: `repo-format.md` §7).
    pub fn load_index(&self, id: &Id) -> Result<Vec<IndexPack>> {
        self.repo.load_index(id)
    }

    /// Writes a snapshot: the commit point of a backup.
    pub fn save_snapshot(&self, snapshot: &Snapshot) -> Result<Id> {
        self.repo.save_snapshot(snapshot)
    }

    /// The repository beneath, with its runtime refusals as the only
    /// guard: for tests that check those refusals hold on their own.
    #[cfg(feature = "testing")]
    #[doc(hidden)]
    pub fn unguarded(&self) -> &Repository {
        &self.repo
    }
}

impl LockedRepository {
    /// [`Self::unlock`] for adding backups only: a write-only key opens it
    /// too (`repo-format.md` §3.3). The [`Appender`] it gives names,
    /// deduplicates and seals new data; with a write-only key it reads
    /// nothing but the index.
    pub fn unlock_to_add(self, password: &[u8], cache: &CacheLocation) -> Result<Appender> {
        self.unlock_as(password, cache, true).map(Appender::new)
    }
}

/// A handle that may add backups: a [`Repository`] or an [`Appender`].
/// Sealed: cairn's two handles are the only ones, and the repository
/// beneath an `Appender` cannot be reached through it:
///
/// ```compile_fail
/// fn leak<T: cairn_core::CanAdd>(h: &T) -> &cairn_core::Repository {
///     h.repository()
/// }
/// ```
///
/// ```compile_fail
/// fn leak<T: cairn_core::CanAdd>(h: &T) -> &cairn_core::Repository {
///     h.repository(Default::default())
/// }
/// ```
pub trait CanAdd: sealed::Sealed {}

impl CanAdd for Repository {}
impl CanAdd for Appender {}

pub(crate) mod sealed {
    use super::{Appender, Repository};

    /// Reaches the repository beneath a handle. The trait cannot be named
    /// outside the crate, but a supertrait's method can still be called
    /// through a `T: CanAdd` bound, so the method also takes a [`Token`],
    /// which only this crate can make: outside it, the method cannot be
    /// called at all.
    pub trait Sealed {
        fn repository(&self, token: Token) -> &Repository;
    }

    /// Proof that the caller is inside the crate (its field is private).
    #[derive(Clone, Copy)]
    pub struct Token(());

    /// The token, for the crate's own calls.
    pub(crate) const TOKEN: Token = Token(());

    impl Sealed for Repository {
        fn repository(&self, _: Token) -> &Repository {
            self
        }
    }

    impl Sealed for Appender {
        fn repository(&self, _: Token) -> &Repository {
            &self.repo
        }
    }
}
