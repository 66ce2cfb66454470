//! The operations, one module each. An operation uses the layers below it
//! (`repo`, `pg`, `format`, ...) and never another operation.

pub mod backup;
pub mod browse;
pub mod check;
pub mod copy;
pub mod drill;
pub mod forget;
pub mod key;
pub mod mount;
pub mod prune;
pub mod repair;
pub mod restore;
pub mod rewrite;
pub mod tag;
