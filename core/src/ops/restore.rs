//! Restoring a snapshot into a directory, dumping one file of it, and
//! finding the snapshot that holds a file. The reading and the writing of
//! the tree are [`crate::repo::reader`]'s and [`crate::repo::restorer`]'s.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use crate::error::{Error, ErrorKind, Result};
use crate::format::snapshot::Snapshot;
use crate::format::tree::NodeKind;
use crate::repo::reader::write_chunks;
use crate::repo::repository::Repository;
use crate::repo::restorer::{self, RestoreOptions, RestoreProgress, RestoreStats};
use crate::repo::walker::find_node;

/// Restores `snapshot` (or the part `opts` names) into `target` (created
/// if missing); files already there are replaced or kept as
/// `opts.overwrite` says.
pub fn restore(
    repo: &Repository,
    snapshot: &Snapshot,
    target: &Path,
    opts: &RestoreOptions,
    progress: &dyn RestoreProgress,
    cancel: &AtomicBool,
) -> Result<RestoreStats> {
    restorer::restore_tree(repo, snapshot, target, opts, progress, cancel)
}

/// What [`newest_holding`] found.
#[derive(Debug)]
pub struct Holding<'a> {
    /// The newest snapshot that holds the path.
    pub snapshot: &'a Snapshot,
    /// A newer snapshot whose paths cover the path but that does not hold
    /// it (the file was deleted since): the caller should say which
    /// snapshot the file came from.
    pub newer_without: Option<&'a Snapshot>,
}

/// The newest of `snapshots` that holds `path` (`dump latest shop.sql`
/// while other series exist: restic's `latest` with a file). A snapshot
/// whose paths cannot contain `path` is passed over without reading its
/// trees; one whose trees cannot be read is an error, not passed over
/// (an older file must not stand in for a newer one silently).
pub fn newest_holding<'a>(
    repo: &Repository,
    snapshots: &[&'a Snapshot],
    path: &Path,
) -> Result<Option<Holding<'a>>> {
    let wanted = PathBuf::from("/").join(path);
    let mut newest_first = snapshots.to_vec();
    newest_first.sort_by(|a, b| b.time.cmp(&a.time).then(b.id.cmp(&a.id)));
    let index = repo.index()?;
    let mut newer_without = None;
    for snapshot in newest_first {
        let covers = snapshot
            .paths
            .iter()
            .any(|p| wanted.starts_with(Path::new(p)));
        if !covers {
            continue;
        }
        match find_node(repo, &index, snapshot, path) {
            Ok(_) => {
                return Ok(Some(Holding {
                    snapshot,
                    newer_without,
                }))
            }
            Err(e) if e.kind() == ErrorKind::SourceNotFound => {
                newer_without.get_or_insert(snapshot);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// Writes the content of one file of a snapshot to `out`.
pub fn dump(
    repo: &Repository,
    snapshot: &Snapshot,
    path: &Path,
    out: &mut dyn Write,
    progress: &dyn RestoreProgress,
    cancel: &AtomicBool,
) -> Result<u64> {
    let index = repo.index()?;
    let node = find_node(repo, &index, snapshot, path)?;
    if node.kind != NodeKind::File {
        return Err(Error::invalid(format!(
            "{} is not a regular file; use restore for directories",
            path.display()
        )));
    }
    let ids = repo.file_chunks(&index, &node)?;
    let n = write_chunks(
        repo,
        &index,
        &ids,
        out,
        &|n| progress.bytes_written(n),
        cancel,
    )?;
    if n != node.size {
        return Err(Error::corrupt(format!(
            "{}: got {n} bytes, the snapshot says {}",
            path.display(),
            node.size
        )));
    }
    Ok(n)
}

/// The operations as methods: `repo.restore(...)`, `repo.dump(...)`.
impl Repository {
    /// Restores `snapshot` into `target`: see [`restore`].
    pub fn restore(
        &self,
        snapshot: &Snapshot,
        target: &Path,
        opts: &RestoreOptions,
        progress: &dyn RestoreProgress,
        cancel: &AtomicBool,
    ) -> Result<RestoreStats> {
        restore(self, snapshot, target, opts, progress, cancel)
    }

    /// Writes one file of `snapshot` to `out`: see [`dump`].
    pub fn dump(
        &self,
        snapshot: &Snapshot,
        path: &Path,
        out: &mut dyn Write,
        progress: &dyn RestoreProgress,
        cancel: &AtomicBool,
    ) -> Result<u64> {
        dump(self, snapshot, path, out, progress, cancel)
    }
}
