//! Databases: recognising dumps and checking that they are complete
//! ([`dumpcheck`]), PostgreSQL WAL archiving ([`wal`], [`wal_spool`]), and
//! base backups with point-in-time recovery ([`pitr`]).

pub mod dumpcheck;
pub mod pitr;
pub mod wal;
pub mod wal_spool;
