//! `cairn rewrite`: dropping paths that should never have been backed up
//! from stored snapshots, as restic's `rewrite --exclude` does. The trees
//! above each dropped entry are written anew; the data of the entries kept
//! is referred to as it is. A snapshot object is never modified: a copy
//! naming the old one in `original` is written, and the old one is deleted
//! only when asked (`forget`), after the copy is stored.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::backend::ObjectKind;
use crate::error::{Error, Result};
use crate::format::snapshot::Snapshot;
use crate::format::tree::{Node, NodeKind, Tree};
use crate::id::Id;
use crate::pattern::Patterns;
use crate::repo::cache::CacheReader;
use crate::repo::commit::verify_referenced;
use crate::repo::packer::BlobWriter;
use crate::repo::repository::Repository;

/// What to drop from snapshots.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct RewriteOptions {
    /// Entries these patterns match are dropped, with everything under
    /// them ([`Patterns`], against the paths in the snapshot).
    pub exclude: Patterns,
    /// Delete each rewritten snapshot once its copy is stored.
    pub forget: bool,
    /// Decide and count, write nothing.
    pub dry_run: bool,
}

/// What rewriting one snapshot did.
#[derive(Debug, Clone)]
pub struct Rewritten {
    /// The snapshot rewritten.
    pub old: Id,
    /// Its copy, when something was dropped (with a dry run: `None`).
    pub new: Option<Id>,
    /// Entries dropped (a directory counts once, with everything in it).
    pub dropped: u64,
    /// Whether the old snapshot was deleted.
    pub forgotten: bool,
}

/// Drops what `opts` names from each of `snapshots`. A snapshot in which
/// nothing matches is left as it is.
pub fn rewrite(
    repo: &Repository,
    snapshots: &[&Snapshot],
    opts: &RewriteOptions,
    cancel: &AtomicBool,
) -> Result<Vec<Rewritten>> {
    if opts.exclude.is_empty() {
        return Err(Error::invalid(
            "nothing to drop: give --exclude, --iexclude or an exclude file",
        ));
    }
    let index = repo.index()?;
    let mut writer = BlobWriter::new(repo, opts.dry_run)?;
    let mut planned: Vec<(Rewritten, Option<Snapshot>)> = Vec::new();
    for s in snapshots {
        let mut walk = Walk {
            repo,
            index: &index,
            writer: &mut writer,
            opts,
            cancel,
            dropped: 0,
        };
        let root = walk.tree(s.tree)?;
        let dropped = walk.dropped;
        let copy = (dropped > 0).then(|| {
            let mut copy = (*s).clone();
            copy.tree = root;
            copy.original = Some(s.original.unwrap_or(s.id));
            copy
        });
        planned.push((
            Rewritten {
                old: s.id,
                new: None,
                dropped,
                forgotten: false,
            },
            copy,
        ));
    }
    if opts.dry_run {
        return Ok(planned.into_iter().map(|(r, _)| r).collect());
    }
    let (referenced, bases) = writer.finish()?;
    if planned.iter().any(|(_, c)| c.is_some()) {
        verify_referenced(repo, &referenced, &bases)?;
    }
    let mut out = Vec::with_capacity(planned.len());
    for (mut r, copy) in planned {
        if let Some(copy) = copy {
            let id = repo.save_snapshot(&copy)?;
            r.new = Some(id);
            // Written first, deleted second: a crash in between leaves
            // both, never neither.
            if opts.forget && id != r.old {
                repo.backend()
                    .delete(ObjectKind::Snapshot, &r.old.to_hex())
                    .map_err(|e| {
                        e.context(format!(
                            "snapshot {} was rewritten as {}, but the old one could not be \
                             deleted",
                            r.old.short(),
                            id.short()
                        ))
                    })?;
                r.forgotten = true;
            }
        }
        out.push(r);
    }
    Ok(out)
}

/// One snapshot's walk: trees rewritten bottom-up with an explicit stack,
/// so that no depth of directories overflows the call stack.
struct Walk<'a, 'w> {
    repo: &'a Repository,
    index: &'a CacheReader,
    writer: &'w mut BlobWriter<'a>,
    opts: &'a RewriteOptions,
    cancel: &'a AtomicBool,
    dropped: u64,
}

/// A directory being rewritten: its entries, how far it got, the entries
/// kept so far, and the node that names it in its parent.
struct Frame {
    nodes: std::vec::IntoIter<Node>,
    path: PathBuf,
    kept: Vec<Node>,
    changed: bool,
    node: Option<Node>,
    id: Id,
}

impl Walk<'_, '_> {
    fn excluded(&self, path: &Path) -> bool {
        self.opts.exclude.matches(path)
    }

    fn frame(&self, id: Id, path: PathBuf, node: Option<Node>) -> Result<Frame> {
        let tree = self.repo.load_tree(self.index, &id)?;
        Ok(Frame {
            nodes: tree.nodes.into_iter(),
            path,
            kept: Vec::new(),
            changed: false,
            node,
            id,
        })
    }

    /// The ID of tree `root` with the excluded entries dropped (`root`
    /// itself when nothing under it is).
    fn tree(&mut self, root: Id) -> Result<Id> {
        let mut stack = vec![self.frame(root, PathBuf::from("/"), None)?];
        loop {
            if self.cancel.load(Ordering::SeqCst) {
                return Err(Error::interrupted());
            }
            let Some(top) = stack.last_mut() else {
                return Err(Error::invalid("rewrite: empty walk"));
            };
            if let Some(node) = top.nodes.next() {
                let path = top.path.join(OsStr::from_bytes(&node.name_bytes()?));
                if self.excluded(&path) {
                    top.changed = true;
                    self.dropped += 1;
                    continue;
                }
                match (node.kind, node.subtree) {
                    (NodeKind::Dir, Some(sub)) => {
                        let child = self.frame(sub, path, Some(node))?;
                        stack.push(child);
                    }
                    _ => top.kept.push(node),
                }
                continue;
            }
            let Some(done) = stack.pop() else {
                return Err(Error::invalid("rewrite: empty walk"));
            };
            let id = if done.changed {
                self.writer.save_tree(&mut Tree { nodes: done.kept })?
            } else {
                done.id
            };
            match (stack.last_mut(), done.node) {
                (Some(parent), Some(mut node)) => {
                    parent.changed |= done.changed;
                    node.subtree = Some(id);
                    parent.kept.push(node);
                }
                _ => return Ok(id),
            }
        }
    }
}
