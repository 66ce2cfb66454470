//! `cairn-core`: the repository logic of cairn, a content-addressed,
//! deduplicating, encrypted backup tool for database dumps and file trees.
//!
//! Organised in layers; a module imports only from the layers below it:
//!
//! | layer | job |
//! |---|---|
//! | [`ops`] | the operations: backup, restore, browse, prune, check, repair, copy, forget, tag, key, drill; none imports another |
//! | [`pg`] | dump checks, PostgreSQL WAL archiving, base backups and point-in-time recovery |
//! | [`repo`] | the repository handle and the add-only [`repo::appender::Appender`], the index cache, the packer, the reader, the restorer, the tree walker, the commit check, deltas, WAL and drill records |
//! | [`backend`] | where objects are stored: a local directory, S3 |
//! | [`mod@format`] | the byte format: object header and sealing, compression, key files, packs, index, trees, snapshots, config |
//! | [`crypto`], [`chunk`] | keys and sealing; the chunker and sketches |
//! | [`error`], [`id`], [`time`], [`units`], [`pattern`], [`sys`] | errors, object IDs, snapshot times, sizes, restic's path patterns, facts about this machine |
//!
//! The operations are methods of the opened repository
//! ([`Repository::backup`], [`Repository::restore`],
//! [`Repository::forget_plan`] and [`Repository::forget`],
//! [`Repository::prune_plan`] and [`Repository::prune`],
//! [`Repository::check`], [`Repository::copy_to`], [`Repository::drill`]),
//! each taking an option struct built from `Default`; a write-only key
//! opens an [`Appender`], which can only add backups. With the `clap`
//! feature, [`RetentionPolicy`] and [`PruneOptions`] derive `clap::Args`,
//! so a command line can flatten them as cairn's own does.
//!
//! The byte-level format is specified in `repo-format.md` at the root of
//! the project; the reasons behind it in `docs/design.md`.
//!
//! # Example
//!
//! A repository in a directory, one backup of a stream, and a restore of
//! the newest snapshot:
//!
//! ```
//! use std::sync::atomic::AtomicBool;
//! use std::sync::Arc;
//!
//! use cairn_core::{
//!     BackupOptions, BackupSource, CacheLocation, InitOptions, KdfParams, KeyInfo,
//!     LocalBackend, NoProgress, NoRestoreProgress, RestoreOptions, SnapshotFilter,
//! };
//!
//! # fn main() -> cairn_core::Result<()> {
//! let dir = tempfile::tempdir().map_err(|e| cairn_core::Error::io("tempdir", e))?;
//! let backend = Arc::new(LocalBackend::new(dir.path().join("repo")));
//! let password = b"correct horse battery staple";
//!
//! // init: a new repository with one key (a light key derivation, for
//! // the example; the default costs about 0.1 s per open).
//! let mut init = InitOptions::default();
//! init.kdf = KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 };
//! let key = KeyInfo {
//!     created: "2026-12-06T00:00:00Z".into(),
//!     host: "db1".into(),
//!     user: "postgres".into(),
//!     kind: "full".into(),
//! };
//! cairn_core::init(backend.clone(), password, &init, key)?;
//!
//! // backup: a stream, as `cairn backup -` stores stdin.
//! let repo = cairn_core::locate(backend)?.unlock(password, &CacheLocation::Temporary)?;
//! let dump = b"-- a dump\nCREATE TABLE t (x int);\n".to_vec();
//! let source = BackupSource::Stream {
//!     reader: Box::new(std::io::Cursor::new(dump.clone())),
//!     filename: "shop.sql".into(),
//! };
//! let cancel = AtomicBool::new(false);
//! let done = repo.backup(source, &BackupOptions::default(), &NoProgress, &cancel)?;
//!
//! // snapshots: `latest` is the one just written.
//! let list = repo.load_snapshots()?;
//! let latest = list.resolve("latest", &SnapshotFilter::default())?;
//! assert_eq!(latest.id, done.snapshot.id);
//!
//! // restore: every byte verified against its ID before it is written.
//! let target = dir.path().join("restored");
//! let opts = RestoreOptions::default();
//! repo.restore(latest, &target, &opts, &NoRestoreProgress, &cancel)?;
//! assert_eq!(std::fs::read(target.join("shop.sql")).ok(), Some(dump));
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod backend;
pub mod chunk;
pub mod crypto;
pub mod error;
pub mod format;
pub mod id;
pub mod ops;
pub mod pattern;
pub mod pg;
pub mod repo;
pub mod sys;
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod testing;
pub mod time;
pub mod units;

pub use backend::{Backend, LocalBackend};
pub use error::{Error, ErrorKind, Result};
pub use format::keyfile::{KdfParams, KeyInfo};
pub use format::snapshot::{Snapshot, SnapshotFilter};
pub use id::Id;
pub use ops::backup::{BackupOptions, BackupOutcome, BackupSource, NoProgress};
pub use ops::check::{CheckOptions, CheckReport};
pub use ops::copy::CopyStats;
pub use ops::forget::{ForgetOptions, ForgetPlan, ForgetStats, RetentionPolicy};
pub use ops::prune::{PruneOptions, PrunePlan, PruneStats};
pub use repo::appender::{Appender, CanAdd};
pub use repo::repository::{
    init, locate, CacheLocation, InitOptions, LockedRepository, Repository, SnapshotList,
};
pub use repo::restorer::{NoRestoreProgress, Overwrite, RestoreOptions, RestoreStats};
