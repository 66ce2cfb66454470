//! `cairn-core`: the repository logic of cairn, a content-addressed,
//! deduplicating, encrypted backup tool for database dumps and file trees.
//!
//! Organised in layers; a module imports only from the layers below it:
//!
//! | layer | job |
//! |---|---|
//! | [`ops`] | the operations: backup, restore, browse, prune, check, repair, copy, forget, tag, key, drill; none imports another |
//! | [`pg`] | dump checks, PostgreSQL WAL archiving, base backups and point-in-time recovery |
//! | [`repo`] | the repository handle, the index cache, the packer, the reader, the tree walker, the commit check, deltas, WAL and drill records |
//! | [`backend`] | where objects are stored: a local directory, S3 |
//! | [`format`] | the byte format: object header and sealing, compression, key files, packs, index, trees, snapshots, config |
//! | [`crypto`], [`chunk`] | keys and sealing; the chunker and sketches |
//! | [`error`], [`id`], [`time`], [`units`], [`sys`] | errors, object IDs, snapshot times, sizes, facts about this machine |
//!
//! The byte-level format is specified in `repo-format.md` at the root of
//! the project.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod backend;
pub mod chunk;
pub mod crypto;
pub mod error;
pub mod format;
pub mod id;
pub mod ops;
pub mod pg;
pub mod repo;
pub mod sys;
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod testing;
pub mod time;
pub mod units;

pub use error::{Error, ErrorKind, Result};
pub use id::Id;
