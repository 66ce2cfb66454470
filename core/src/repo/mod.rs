//! The repository: opening it, its local index cache, and the shared
//! machinery every operation uses to read and write it: the one packer
//! (`packer`), the one reader ([`reader`]), the tree walker
//! ([`walker`]), the commit check ([`commit`]), delta compression, and the
//! records kept beside snapshots (WAL files, drills).

pub mod appender;
pub mod cache;
pub mod commit;
pub(crate) mod delta;
pub mod drill_record;
pub(crate) mod packer;
pub mod reader;
pub mod repository;
pub mod restorer;
pub mod wal_record;
pub mod walker;
