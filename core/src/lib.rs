//! `cairn-core`: the repository logic of cairn, a content-addressed,
//! deduplicating, encrypted backup tool for database dumps and file trees.
//!
//! Organised by concept, one job per module:
//!
//! - [`chunker`]: FastCDC content-defined chunking with a seeded gear table
//! - [`crypto`]: master key, sub-keys, XChaCha20-Poly1305 sealing
//! - [`dumpcheck`]: recognising database dumps and checking they are complete
//! - [`wal`]: PostgreSQL WAL archiving (`wal-push`, `wal-fetch`)
//! - [`wal_record`]: the WAL record object and listing archived WAL
//! - [`pitr`]: base backups and point-in-time restore
//! - [`keyfile`]: password-wrapped master keys (Argon2id)
//! - [`format`]: the object header and sealed objects
//! - [`compress`]: zstd with bounded decompression
//! - [`pack`]: pack files of sealed blobs with a sealed trailer
//! - [`index`]: index objects; [`cache`]: the local redb index cache
//! - [`tree`]: directory listings; [`snapshot`]: the commit point
//! - [`backend`]: where objects are stored (a local directory, S3)
//! - [`repository`]: init, open, read; [`backup`] and [`restore`] do the work
//! - [`browse`]: looking into snapshots (`ls`, `find`, `diff`, `stats`)
//!
//! The byte-level format is specified in `repo-format.md` at the root of
//! the project.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod backend;
pub mod backup;
#[doc(hidden)]
pub mod benchgen;
mod blob_writer;
pub mod browse;
pub mod cache;
pub mod check;
pub mod chunker;
pub mod compress;
pub mod config;
pub mod copy;
pub mod crypto;
mod delta;
pub mod drill;
pub mod dumpcheck;
pub mod error;
pub mod format;
#[doc(hidden)]
pub mod fuzzing;
pub mod id;
pub mod index;
pub mod keyfile;
pub mod keyring;
pub mod pack;
pub mod pitr;
pub mod prune;
pub mod repair;
pub mod repository;
pub mod restore;
pub mod retention;
pub mod sketch;
pub mod snapshot;
pub mod tag;
#[cfg(test)]
mod test_data;
pub mod time;
pub mod tree;
pub mod wal;
pub mod wal_record;
pub mod wal_spool;

pub use error::{Error, ErrorKind, Result};
pub use id::Id;
