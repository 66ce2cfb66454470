//! The commit check a writer runs before it commits a snapshot or a WAL
//! record, against a prune running at the same time (`repo-format.md`
//! §12.4), and the age below which a pack no index names may belong to a
//! writer still at work.

use std::collections::HashSet;

use crate::error::{Error, ErrorKind, Result};
use crate::id::Id;
use crate::repo::repository::Repository;

/// Youngest age (seconds) at which a pack in no index may be deleted.
pub const MIN_UNINDEXED_AGE: u64 = 3600;

/// The commit check of the two-phase prune (`repo-format.md` §12.4): every
/// blob the snapshot refers to, whether this backup took it from the index
/// or stored it (a prune may have marked this backup's own packs unused
/// when it saw them indexed before this snapshot existed), must still be in
/// a pack in use, or in a pack marked obsolete so recently that no prune
/// can delete it before this snapshot is visible. Otherwise a prune ran
/// during this backup and the snapshot could refer to deleted data:
/// nothing is committed (exit 11, run the backup again).
///
/// The blobs in `whole` are delta bases the snapshot relies on: the copy
/// the index prefers must also be stored whole (a base that is now only
/// in use as a delta, its whole copy marked, could be deleted although the
/// deltas need it whole, §6.8).
pub(crate) fn verify_referenced(
    repo: &Repository,
    referenced: &HashSet<Id>,
    whole: &HashSet<Id>,
) -> Result<()> {
    if referenced.is_empty() && whole.is_empty() {
        return Ok(());
    }
    // Index objects that were unreadable before the backup do not matter
    // here: their blobs looked absent, so the backup stored its own copies.
    let stats = repo.sync_index()?;
    // Nobody else wrote or removed an index object since this process
    // looked the blobs up: what it found live is still live, and what it
    // stored nobody marked. Nothing to look up again.
    if stats.unreadable.is_empty() && !stats.rebuilt && repo.index_unchanged_by_others()? {
        return Ok(());
    }
    let index = repo.index()?;
    let config = repo.config();
    let limit = config
        .prune_grace_seconds
        .saturating_sub(config.grace_margin_seconds());
    let now = jiff::Timestamp::now().as_second();
    // In key order: neighbouring lookups share the cache's pages.
    let mut sorted: Vec<&Id> = referenced.union(whole).collect();
    sorted.sort_unstable();
    for id in sorted {
        let pruned = match index.get(id)? {
            None if !stats.unreadable.is_empty() => {
                return Err(Error::corrupt(format!(
                "blob {} of this backup is no longer indexed and an index object cannot be read \
                     ({}); no snapshot was written",
                id.short(),
                stats.unreadable[0]
            )))
            }
            None => true,
            Some(loc) => {
                loc.obsolete_since
                    .is_some_and(|since| now >= since.saturating_add(limit as i64))
                    || (loc.entry.compression.base().is_some() && whole.contains(id))
            }
        };
        if pruned {
            return Err(Error::new(
                ErrorKind::PruneConflict,
                format!(
                    "a prune removed data this backup reuses (blob {}) while it ran; \
                     no snapshot was written: run the backup again",
                    id.short()
                ),
            ));
        }
    }
    Ok(())
}
