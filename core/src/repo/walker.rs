//! Walking the trees of snapshots: finding a path, visiting trees bottom
//! up without deep recursion, and visiting every blob a snapshot refers to
//! once.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, ErrorKind, Result};
use crate::format::pack::BlobType;
use crate::format::snapshot::Snapshot;
use crate::format::tree::{self, Node, NodeKind};
use crate::id::Id;
use crate::repo::cache::CacheReader;
use crate::repo::repository::Repository;

/// Finds the node at `path` (`shop.sql`, `/home/x/a.txt`) in a snapshot.
pub fn find_node(
    repo: &Repository,
    index: &CacheReader,
    snapshot: &Snapshot,
    path: &Path,
) -> Result<Node> {
    // Exact name bytes: names need not be UTF-8.
    let parts: Vec<&[u8]> = path
        .as_os_str()
        .as_bytes()
        .split(|b| *b == b'/')
        .filter(|p| !p.is_empty() && *p != b".")
        .collect();
    if parts.is_empty() {
        return Err(Error::invalid("give the path of a file in the snapshot"));
    }
    let mut tree_id = snapshot.tree;
    let mut walked = PathBuf::from("/");
    for (i, part) in parts.iter().enumerate() {
        let tree = repo.load_tree(index, &tree_id)?;
        walked.push(OsStr::from_bytes(part));
        let node = tree
            .nodes
            .into_iter()
            .find(|n| n.name_bytes().is_ok_and(|b| b == *part))
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::SourceNotFound,
                    format!(
                        "{} is not in snapshot {}",
                        walked.display(),
                        snapshot.id.short()
                    ),
                )
            })?;
        if i + 1 == parts.len() {
            return Ok(node);
        }
        tree_id = node.subtree.ok_or_else(|| {
            Error::new(
                ErrorKind::SourceNotFound,
                format!("{} is not a directory", walked.display()),
            )
        })?;
    }
    Err(Error::invalid("empty path"))
}

/// Calls `new_blob` for every blob of the snapshot with root tree `root`
/// that is not yet in `seen` (trees, chunk lists, data), and adds it.
/// A subtree already in `seen` is not read again, so walking the
/// snapshots of a series one after another reads each tree once.
///
/// Its error policy is to stop: a tree or chunk list that cannot be read
/// ends the walk with an error naming it (`cannot read tree <id>: ...`),
/// since every caller (prune's used set, stats, diff, delta bases) would
/// otherwise act on an incomplete set. A walk that must go on past damage
/// and report it is `check`'s, which records each finding instead.
pub fn for_each_new_blob(
    repo: &Repository,
    index: &CacheReader,
    root: &Id,
    seen: &mut HashSet<Id>,
    cancel: &AtomicBool,
    new_blob: &mut dyn FnMut(&Id, BlobType),
) -> Result<()> {
    if !seen.insert(*root) {
        return Ok(());
    }
    new_blob(root, BlobType::Tree);
    let mut stack = vec![*root];
    while let Some(tree_id) = stack.pop() {
        check_cancel(cancel)?;
        let tree = repo
            .load_tree(index, &tree_id)
            .map_err(|e| e.context(format!("cannot read tree {tree_id}")))?;
        for node in tree.nodes {
            match node.kind {
                NodeKind::Dir => {
                    if let Some(sub) = node.subtree {
                        if seen.insert(sub) {
                            new_blob(&sub, BlobType::Tree);
                            stack.push(sub);
                        }
                    }
                }
                NodeKind::File => {
                    for id in &node.content {
                        if seen.insert(*id) {
                            new_blob(id, BlobType::Data);
                        }
                    }
                    for list in &node.content_lists {
                        if !seen.insert(*list) {
                            continue;
                        }
                        new_blob(list, BlobType::ChunkList);
                        let bytes = repo
                            .read_blob(index, list, BlobType::ChunkList)
                            .map_err(|e| e.context(format!("cannot read chunk list {list}")))?;
                        for id in tree::decode_chunk_list(&bytes)? {
                            if seen.insert(id) {
                                new_blob(&id, BlobType::Data);
                            }
                        }
                    }
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// The distinct trees below `root` (not `root` itself), each listed after
/// every tree below it: a memoised recursive walk that visits them in this
/// order never goes more than one level deep, however deep the trees nest.
/// Trees that cannot be read are left out (the walk meets them itself).
pub fn trees_bottom_up(
    repo: &Repository,
    index: &CacheReader,
    root: &Id,
    cancel: &AtomicBool,
) -> Result<Vec<Id>> {
    let mut order = Vec::new();
    let mut seen = HashSet::from([*root]);
    // (tree, whether its subtrees are already on the stack above it)
    let mut stack: Vec<(Id, bool)> = vec![(*root, false)];
    let subtrees = |id: &Id| -> Vec<Id> {
        match repo.load_tree(index, id) {
            Ok(t) => t
                .nodes
                .iter()
                .filter(|n| n.kind == NodeKind::Dir)
                .filter_map(|n| n.subtree)
                .collect(),
            Err(_) => Vec::new(),
        }
    };
    while let Some((id, expanded)) = stack.pop() {
        if expanded {
            order.push(id);
            continue;
        }
        check_cancel(cancel)?;
        stack.push((id, true));
        for sub in subtrees(&id) {
            if seen.insert(sub) {
                stack.push((sub, false));
            }
        }
    }
    // The root comes last in this order; it is not "below" itself.
    order.pop();
    Ok(order)
}

/// A memoised recursive walk that has gone this many directories deep
/// first finishes the subtree below bottom-up ([`trees_bottom_up`]), so
/// that no walk nests deeper than about this on the call stack.
pub const RECURSION_STEP: usize = 256;

/// The depth guard of a memoised recursive walk (check, copy, repair): at
/// tree `id`, `depth` levels down, the trees below it that the walk must
/// visit first, bottom-up, before it goes on with `id` itself; none unless
/// `depth` is a multiple of [`RECURSION_STEP`]. Visited in this order, and
/// memoised, no recursion from `id` goes deeper than one level.
pub fn below_when_deep(
    repo: &Repository,
    index: &CacheReader,
    id: &Id,
    depth: usize,
    cancel: &AtomicBool,
) -> Result<Vec<Id>> {
    if depth > 0 && depth.is_multiple_of(RECURSION_STEP) {
        trees_bottom_up(repo, index, id, cancel)
    } else {
        Ok(Vec::new())
    }
}

pub(crate) fn check_cancel(cancel: &AtomicBool) -> Result<()> {
    if cancel.load(Ordering::SeqCst) {
        return Err(Error::interrupted());
    }
    Ok(())
}
