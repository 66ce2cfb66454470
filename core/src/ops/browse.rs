//! Looking into snapshots without restoring them: listing (`ls`),
//! searching by name (`find`), comparing two snapshots (`diff`) and
//! measuring what the repository stores for them (`stats`). Nothing here
//! writes to the repository.

use std::collections::HashSet;
use std::sync::atomic::AtomicBool;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::snapshot::Snapshot;
use crate::format::tree::{Node, NodeKind};
use crate::id::Id;
use crate::repo::cache::CacheReader;
use crate::repo::repository::Repository;
use crate::repo::walker::{check_cancel, for_each_new_blob};

/// One entry of a snapshot, with its path from the snapshot's root
/// (`/shop.sql`, `/etc/hosts`).
#[derive(Debug, Clone)]
pub struct Entry {
    /// Absolute path inside the snapshot; lossy where a name is not UTF-8.
    pub path: String,
    /// The entry itself.
    pub node: Node,
}

fn join(parent: &str, name: &str) -> String {
    if parent.ends_with('/') {
        format!("{parent}{name}")
    } else {
        format!("{parent}/{name}")
    }
}

/// Visits every entry under tree `root` (whose own path is `prefix`),
/// depth first, in name order. `visit` returns whether to go into a
/// directory.
///
/// Without recursion: one path buffer and a stack of the directories
/// open on the way down, so a tree nested a million deep (which a
/// modified client can store) costs memory in proportion, never the
/// call stack (`docs/design.md` §8.3).
pub fn walk(
    repo: &Repository,
    index: &CacheReader,
    root: &Id,
    prefix: &str,
    cancel: &AtomicBool,
    visit: &mut dyn FnMut(&str, &Node) -> Result<bool>,
) -> Result<()> {
    check_cancel(cancel)?;
    let mut path = prefix.to_string();
    // Per open directory: its remaining entries, and the length of its
    // own path in `path`.
    let mut stack = vec![(repo.load_tree(index, root)?.nodes.into_iter(), path.len())];
    while let Some((nodes, base)) = stack.last_mut() {
        let base = *base;
        let Some(node) = nodes.next() else {
            stack.pop();
            continue;
        };
        path.truncate(base);
        if !path.ends_with('/') {
            path.push('/');
        }
        path.push_str(&node.name);
        let descend = visit(&path, &node)?;
        if descend && node.kind == NodeKind::Dir {
            if let Some(sub) = &node.subtree {
                check_cancel(cancel)?;
                stack.push((repo.load_tree(index, sub)?.nodes.into_iter(), path.len()));
            }
        }
    }
    Ok(())
}

/// The entries of `snapshot` at and under `path` (`/` or empty: the whole
/// snapshot). A directory is listed with its contents, all the way down
/// when `recursive`, else one level; a file alone.
pub fn list(
    repo: &Repository,
    index: &CacheReader,
    snapshot: &Snapshot,
    path: &str,
    recursive: bool,
    cancel: &AtomicBool,
) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    let trimmed = path.trim_end_matches('/');
    let (root, prefix) = if trimmed.is_empty() {
        (snapshot.tree, "/".to_string())
    } else {
        let node =
            crate::repo::walker::find_node(repo, index, snapshot, std::path::Path::new(trimmed))?;
        let prefix = if trimmed.starts_with('/') {
            trimmed.to_string()
        } else {
            format!("/{trimmed}")
        };
        let subtree = match (node.kind, node.subtree) {
            (NodeKind::Dir, Some(sub)) => Some(sub),
            _ => None,
        };
        out.push(Entry {
            path: prefix.clone(),
            node,
        });
        match subtree {
            Some(sub) => (sub, prefix),
            None => return Ok(out),
        }
    };
    walk(repo, index, &root, &prefix, cancel, &mut |p, n| {
        out.push(Entry {
            path: p.to_string(),
            node: n.clone(),
        });
        Ok(recursive)
    })?;
    Ok(out)
}

/// What `find` looks for: glob patterns (`*.sql`, `/var/lib/**/pg_*`). A
/// pattern with a `/` is matched against the whole path, others against
/// the entry's name.
pub struct Pattern {
    names: globset::GlobSet,
    paths: globset::GlobSet,
}

impl Pattern {
    /// Compiles `patterns`; a malformed one is an invalid-input error
    /// naming it.
    pub fn new(patterns: &[String], ignore_case: bool) -> Result<Self> {
        let mut names = globset::GlobSetBuilder::new();
        let mut paths = globset::GlobSetBuilder::new();
        for p in patterns {
            let glob = globset::GlobBuilder::new(p)
                .literal_separator(true)
                .case_insensitive(ignore_case)
                .build()
                .map_err(|e| Error::invalid(format!("pattern {p:?}: {e}")))?;
            if p.contains('/') {
                paths.add(glob);
            } else {
                names.add(glob);
            }
        }
        let build = |b: globset::GlobSetBuilder| {
            b.build()
                .map_err(|e| Error::invalid(format!("patterns: {e}")))
        };
        Ok(Pattern {
            names: build(names)?,
            paths: build(paths)?,
        })
    }

    /// Does the entry at `path` named `name` match?
    pub fn matches(&self, path: &str, name: &str) -> bool {
        self.names.is_match(name) || self.paths.is_match(path)
    }
}

/// The entries of `snapshot` that match `pattern`, in path order.
pub fn find(
    repo: &Repository,
    index: &CacheReader,
    snapshot: &Snapshot,
    pattern: &Pattern,
    cancel: &AtomicBool,
) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    walk(repo, index, &snapshot.tree, "/", cancel, &mut |p, n| {
        if pattern.matches(p, &n.name) {
            out.push(Entry {
                path: p.to_string(),
                node: n.clone(),
            });
        }
        Ok(true)
    })?;
    Ok(out)
}

/// Bytes of a set of blobs: their plaintext and what the repository
/// stores for them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BlobBytes {
    /// Blobs counted.
    pub blobs: u64,
    /// Plaintext bytes.
    pub raw: u64,
    /// Stored bytes (compressed and sealed; for a delta, the delta).
    pub stored: u64,
    /// Blobs the index does not know (lost data; see `check`).
    pub missing: u64,
}

impl BlobBytes {
    /// Counts blob `id` as the index describes it.
    pub fn add(&mut self, index: &CacheReader, id: &Id) -> Result<()> {
        self.blobs += 1;
        match index.get(id)? {
            Some(loc) => {
                self.raw += u64::from(loc.entry.raw_length);
                self.stored += u64::from(loc.entry.length);
            }
            None => self.missing += 1,
        }
        Ok(())
    }
}

/// How an entry differs between two snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// Only in the second snapshot.
    Added,
    /// Only in the first.
    Removed,
    /// Content (or a symlink's target) differs.
    Modified,
    /// A file became a directory, or the like.
    Type,
    /// Same content, other metadata (mode, owner, time).
    Metadata,
}

impl Change {
    /// restic's one-letter marker: `+ - M T U`.
    pub fn marker(self) -> char {
        match self {
            Change::Added => '+',
            Change::Removed => '-',
            Change::Modified => 'M',
            Change::Type => 'T',
            Change::Metadata => 'U',
        }
    }
}

/// One line of a diff.
#[derive(Debug, Clone, Serialize)]
pub struct DiffEntry {
    /// Path inside the snapshots.
    pub path: String,
    /// What changed.
    pub change: Change,
    /// The entry's kind (in the second snapshot when it is there).
    #[serde(rename = "type")]
    pub kind: NodeKind,
}

/// Counts of a diff, per kind of change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ChangeCounts {
    /// Files, symlinks and others added.
    pub files_added: u64,
    /// Files removed.
    pub files_removed: u64,
    /// Files whose content changed (or whose kind changed).
    pub files_changed: u64,
    /// Entries whose metadata only changed.
    pub metadata_changed: u64,
    /// Directories added.
    pub dirs_added: u64,
    /// Directories removed.
    pub dirs_removed: u64,
}

/// The difference between two snapshots.
#[derive(Debug, Clone, Serialize)]
pub struct Diff {
    /// Entries that differ, in path order.
    pub changes: Vec<DiffEntry>,
    /// How many of each.
    pub counts: ChangeCounts,
    /// Blobs the second snapshot uses and the first does not: what backing
    /// it up added on top of the first.
    pub added: BlobBytes,
    /// Blobs the first uses and the second does not.
    pub removed: BlobBytes,
}

fn same_content(a: &Node, b: &Node) -> bool {
    a.content == b.content
        && a.content_lists == b.content_lists
        && a.size == b.size
        && a.target == b.target
        && a.target_raw == b.target_raw
        && a.device == b.device
}

fn same_metadata(a: &Node, b: &Node) -> bool {
    a.mode == b.mode
        && a.uid == b.uid
        && a.gid == b.gid
        && a.mtime == b.mtime
        && a.mtime_nsec == b.mtime_nsec
}

struct Differ<'a> {
    repo: &'a Repository,
    index: &'a CacheReader,
    cancel: &'a AtomicBool,
    changes: Vec<DiffEntry>,
    counts: ChangeCounts,
}

impl Differ<'_> {
    fn record(&mut self, path: &str, node: &Node, change: Change) {
        let dir = node.kind == NodeKind::Dir;
        let c = &mut self.counts;
        match (change, dir) {
            (Change::Added, true) => c.dirs_added += 1,
            (Change::Added, false) => c.files_added += 1,
            (Change::Removed, true) => c.dirs_removed += 1,
            (Change::Removed, false) => c.files_removed += 1,
            (Change::Modified | Change::Type, _) => c.files_changed += 1,
            (Change::Metadata, _) => c.metadata_changed += 1,
        }
        self.changes.push(DiffEntry {
            path: path.to_string(),
            change,
            kind: node.kind,
        });
    }

    /// Records `node` and everything under it as added or removed.
    fn whole(&mut self, path: &str, node: &Node, change: Change) -> Result<()> {
        self.record(path, node, change);
        if let (NodeKind::Dir, Some(sub)) = (node.kind, node.subtree) {
            let mut under = Vec::new();
            walk(
                self.repo,
                self.index,
                &sub,
                path,
                self.cancel,
                &mut |p, n| {
                    under.push((p.to_string(), n.clone()));
                    Ok(true)
                },
            )?;
            for (p, n) in under {
                self.record(&p, &n, change);
            }
        }
        Ok(())
    }

    fn trees(&mut self, a: &Id, b: &Id, prefix: &str) -> Result<()> {
        if a == b {
            return Ok(());
        }
        check_cancel(self.cancel)?;
        let ta = self.repo.load_tree(self.index, a)?.nodes;
        let tb = self.repo.load_tree(self.index, b)?.nodes;
        let (mut ia, mut ib) = (ta.iter().peekable(), tb.iter().peekable());
        loop {
            let order = match (ia.peek(), ib.peek()) {
                (None, None) => break,
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some(x), Some(y)) => x.name_bytes()?.cmp(&y.name_bytes()?),
            };
            match order {
                std::cmp::Ordering::Less => {
                    if let Some(x) = ia.next() {
                        self.whole(&join(prefix, &x.name), x, Change::Removed)?;
                    }
                }
                std::cmp::Ordering::Greater => {
                    if let Some(y) = ib.next() {
                        self.whole(&join(prefix, &y.name), y, Change::Added)?;
                    }
                }
                std::cmp::Ordering::Equal => {
                    if let (Some(x), Some(y)) = (ia.next(), ib.next()) {
                        self.pair(&join(prefix, &y.name), x, y)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn pair(&mut self, path: &str, a: &Node, b: &Node) -> Result<()> {
        if a.kind != b.kind {
            self.record(path, b, Change::Type);
            return Ok(());
        }
        if a.kind == NodeKind::Dir {
            if !same_metadata(a, b) {
                self.record(path, b, Change::Metadata);
            }
            if let (Some(sa), Some(sb)) = (a.subtree, b.subtree) {
                self.trees(&sa, &sb, path)?;
            }
        } else if !same_content(a, b) {
            self.record(path, b, Change::Modified);
        } else if !same_metadata(a, b) {
            self.record(path, b, Change::Metadata);
        }
        Ok(())
    }
}

/// Compares snapshot `a` with snapshot `b`: which entries were added,
/// removed or changed going from `a` to `b`, and the bytes of the blobs
/// each one has that the other lacks.
pub fn diff(
    repo: &Repository,
    index: &CacheReader,
    a: &Snapshot,
    b: &Snapshot,
    cancel: &AtomicBool,
) -> Result<Diff> {
    let mut d = Differ {
        repo,
        index,
        cancel,
        changes: Vec::new(),
        counts: ChangeCounts::default(),
    };
    d.trees(&a.tree, &b.tree, "/")?;
    let (changes, counts) = (d.changes, d.counts);

    let mut in_a = HashSet::new();
    for_each_new_blob(repo, index, &a.tree, &mut in_a, cancel, &mut |_, _| {})?;
    let mut in_b = HashSet::new();
    for_each_new_blob(repo, index, &b.tree, &mut in_b, cancel, &mut |_, _| {})?;
    let (mut added, mut removed) = (BlobBytes::default(), BlobBytes::default());
    for id in in_b.difference(&in_a) {
        added.add(index, id)?;
    }
    for id in in_a.difference(&in_b) {
        removed.add(index, id)?;
    }
    Ok(Diff {
        changes,
        counts,
        added,
        removed,
    })
}

/// One snapshot's line of `stats`.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotStats {
    /// The snapshot.
    pub id: Id,
    /// Its time (RFC 3339).
    pub time: String,
    /// Bytes a restore of it writes.
    pub restore_size: u64,
    /// Blobs it uses that no earlier snapshot (of those counted) uses:
    /// what it added to the repository.
    pub added: BlobBytes,
}

/// What the repository stores for a set of snapshots.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    /// Snapshots counted.
    pub snapshots: u64,
    /// Bytes a restore of every one of them writes, added up.
    pub restore_size: u64,
    /// Every blob they use, each counted once.
    pub unique: BlobBytes,
    /// Stored bytes of the bases of deltas they use that they do not use
    /// themselves (bases kept for a delta; `repo-format.md` §6.8).
    pub delta_bases_stored: u64,
    /// Per snapshot, oldest first.
    pub per_snapshot: Vec<SnapshotStats>,
}

impl Stats {
    /// Restore size over plaintext of the unique blobs: how much
    /// deduplication saves (2.0: half).
    pub fn dedup_ratio(&self) -> f64 {
        ratio(self.restore_size, self.unique.raw)
    }

    /// Plaintext over stored bytes of the unique blobs: what compression
    /// (and deltas) save.
    pub fn compression_ratio(&self) -> f64 {
        ratio(
            self.unique.raw,
            self.unique.stored + self.delta_bases_stored,
        )
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Measures `snapshots` (any order; counted oldest first, so each one's
/// "added" is what it has that the ones before it lack).
pub fn stats(
    repo: &Repository,
    index: &CacheReader,
    snapshots: &[&Snapshot],
    cancel: &AtomicBool,
) -> Result<Stats> {
    let mut sorted: Vec<&Snapshot> = snapshots.to_vec();
    sorted.sort_by(|a, b| a.time.cmp(&b.time).then(a.id.cmp(&b.id)));
    let mut seen = HashSet::new();
    let mut unique = BlobBytes::default();
    let mut bases = HashSet::new();
    let mut per_snapshot = Vec::with_capacity(sorted.len());
    for s in &sorted {
        let mut ids = Vec::new();
        for_each_new_blob(repo, index, &s.tree, &mut seen, cancel, &mut |id, _| {
            ids.push(*id)
        })?;
        let mut added = BlobBytes::default();
        for id in &ids {
            added.add(index, id)?;
            if let Some(base) = index.get(id)?.and_then(|l| l.entry.compression.base()) {
                bases.insert(base);
            }
        }
        unique.blobs += added.blobs;
        unique.raw += added.raw;
        unique.stored += added.stored;
        unique.missing += added.missing;
        per_snapshot.push(SnapshotStats {
            id: s.id,
            time: s.time.to_rfc3339(),
            restore_size: s.summary.total_bytes_processed,
            added,
        });
    }
    let mut extra = BlobBytes::default();
    for base in bases.difference(&seen) {
        extra.add(index, base)?;
    }
    Ok(Stats {
        snapshots: sorted.len() as u64,
        restore_size: sorted.iter().map(|s| s.summary.total_bytes_processed).sum(),
        unique,
        delta_bases_stored: extra.stored,
        per_snapshot,
    })
}
