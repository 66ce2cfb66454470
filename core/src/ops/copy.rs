//! `copy`: snapshots from one repository into another with other keys.
//!
//! Blob IDs are keyed, so every chunk is read from the source, named again
//! with the target's chunk-ID key, and stored only if the target lacks it;
//! trees and chunk lists are rewritten with the new IDs. Chunk boundaries
//! are the source's; the target's own backups cut with its own chunker
//! seed, so they deduplicate only against each other.
//!
//! Keyed IDs mean the target ID of a chunk is only known once the chunk is
//! read, but a snapshot already in both repositories pairs them: its file
//! in the source and its copy in the target have the same chunks in the
//! same order. Each snapshot is copied with such a pair (the nearest
//! earlier snapshot of the same host and paths) as a hint: unchanged
//! subtrees map whole, and the chunks of same-named files map one to one
//! (when sizes, counts and every chunk length agree), so only new chunks
//! are read.
//!
//! A copy records the source snapshot in `original` (the source's own
//! `original` when it is itself a copy) and is skipped when the target
//! already has a snapshot with that `original`, time and tags: running copy
//! twice copies nothing, and after an interruption it resumes, with every
//! chunk already stored and indexed in the target reused.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result};
use crate::format::snapshot::Snapshot;
use crate::format::snapshot::REPAIRED_TAG;
use crate::format::tree::{Node, NodeKind, Tree};
use crate::id::Id;
use crate::repo::cache::CacheReader;
use crate::repo::commit::verify_referenced;
use crate::repo::packer::BlobWriter;
use crate::repo::reader::read_next_batch;
use crate::repo::repository::Repository;
use crate::repo::walker;

/// What happened to one snapshot.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CopiedSnapshot {
    /// The source snapshot (hex).
    pub source: String,
    /// The snapshot written in the target (hex), or the one that was
    /// already there.
    pub target: String,
    /// Whether it was already in the target.
    pub skipped: bool,
}

/// Totals of a copy.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CopyStats {
    /// Per snapshot, in order.
    pub snapshots: Vec<CopiedSnapshot>,
    /// Data chunks read from the source.
    pub chunks_read: u64,
    /// Bytes of those chunks.
    pub bytes_read: u64,
    /// Chunk references resolved without reading: the target already held
    /// the chunk (learnt from an earlier copy of the same files, or read
    /// earlier in the same snapshot).
    pub chunks_known: u64,
    /// Things that did not stop the copy (delta bases that could not be
    /// read in the target: those chunks were stored whole).
    pub warnings: Vec<String>,
}

/// The identity a copy records in `original`.
fn identity(s: &Snapshot) -> Id {
    s.original.unwrap_or(s.id)
}

/// A source tree and its copy in the target (or the tree it was copied
/// from): both have the same names, sizes and chunk boundaries, so what a
/// later snapshot shares with it maps to target IDs without being read.
#[derive(Debug, Clone, Copy)]
struct Pair {
    src: Id,
    dst: Id,
}

/// The nearest earlier snapshot of the same host and paths that both
/// repositories hold (the same backup: same identity, time and tags),
/// as a pair of root trees. Repaired snapshots are never used: their trees
/// differ from their originals'.
fn hint_for(s: &Snapshot, sources: &[Snapshot], targets: &[Snapshot]) -> Option<Pair> {
    let usable = |x: &Snapshot| {
        x.hostname == s.hostname
            && x.sorted_paths() == s.sorted_paths()
            && !x.tags.iter().any(|t| t == REPAIRED_TAG)
    };
    let pairs: Vec<(&Snapshot, Pair)> = targets
        .iter()
        .filter(|t| usable(t))
        .filter_map(|t| {
            let sp = sources.iter().find(|sp| {
                usable(sp) && identity(sp) == identity(t) && sp.time == t.time && sp.tags == t.tags
            })?;
            Some((
                t,
                Pair {
                    src: sp.tree,
                    dst: t.tree,
                },
            ))
        })
        .collect();
    // The latest one not after `s`, else the earliest after it.
    let before = pairs
        .iter()
        .filter(|(t, _)| t.time <= s.time)
        .max_by(|a, b| a.0.time.cmp(&b.0.time));
    before
        .or_else(|| pairs.iter().min_by(|a, b| a.0.time.cmp(&b.0.time)))
        .map(|(_, pair)| *pair)
}

/// What `copy` reports as it goes, in bytes of the snapshots' contents
/// (their `summary.total_bytes_processed`, summed: the total to show).
pub trait CopyProgress: Sync {
    /// `n` more bytes of file contents copied.
    fn advance(&self, _n: u64) {}
    /// The snapshots done so far hold `position` bytes (a snapshot
    /// skipped, or finished with parts reused whole, jumps ahead).
    fn reached(&self, _position: u64) {}
}

/// Reports nothing.
pub struct NoCopyProgress;
impl CopyProgress for NoCopyProgress {}

/// The bytes [`copy`] reports progress towards.
pub fn progress_total(snapshots: &[Snapshot]) -> u64 {
    snapshots
        .iter()
        .map(|s| s.summary.total_bytes_processed)
        .sum()
}

/// Copies `snapshots` of `src` into `dst`.
pub fn copy(
    src: &Repository,
    dst: &Repository,
    snapshots: &[Snapshot],
    progress: &dyn CopyProgress,
    cancel: &AtomicBool,
) -> Result<CopyStats> {
    let mut existing = dst.load_snapshots()?.good;
    let sources = src.load_snapshots()?.good;
    let mut stats = CopyStats::default();
    let mut c = Copier::new(src, dst, progress, cancel)?;
    let mut deltas_tried = false;
    let mut done = 0u64;
    for s in snapshots {
        done += s.summary.total_bytes_processed;
        let id = identity(s);
        // The same backup, however it got there: a copy of it (whose
        // `original` is its identity), or the snapshot itself (copying back
        // to where it came from).
        if let Some(t) = existing
            .iter()
            .find(|t| identity(t) == id && t.time == s.time && t.tags == s.tags)
        {
            stats.snapshots.push(CopiedSnapshot {
                source: s.id.to_hex(),
                target: t.id.to_hex(),
                skipped: true,
            });
            progress.reached(done);
            continue;
        }
        // What was learnt copying the previous snapshot is dropped (memory
        // stays bounded by one snapshot); the nearest snapshot already in
        // both repositories tells what did not change.
        // The target stores deltas if it has them on. Turned on with the
        // first snapshot actually copied: an empty sketch table is filled
        // from the target's newest snapshot of its host and paths, which
        // a night with nothing new to copy should not pay for.
        if !deltas_tried {
            deltas_tried = true;
            c.writer.enable_deltas((&s.hostname, &s.paths), cancel)?;
        }
        c.trees.clear();
        c.chunks.clear();
        c.dst_index = dst.index()?;
        let root = c.tree(&s.tree, hint_for(s, &sources, &existing), 0)?;
        // Everything the snapshot needs is stored and indexed before it is
        // written (the commit point, §12.1), and the target's prune rules
        // hold for what the copy reused (§12.4).
        c.writer.flush_all()?;
        verify_referenced(dst, c.writer.referenced(), c.writer.bases())?;
        stats.warnings.extend(c.writer.take_warnings());
        let mut copy = s.clone();
        copy.tree = root;
        copy.original = Some(id);
        copy.parent = None;
        let new = dst.save_snapshot(&copy)?;
        copy.id = new;
        existing.push(copy);
        stats.snapshots.push(CopiedSnapshot {
            source: s.id.to_hex(),
            target: new.to_hex(),
            skipped: false,
        });
        // The next snapshot (the next night) may store deltas against
        // this one's chunks.
        c.writer.refresh()?;
        progress.reached(done);
    }
    c.writer.finish()?;
    stats.chunks_read = c.chunks_read;
    stats.bytes_read = c.bytes_read;
    stats.chunks_known = c.chunks_known;
    Ok(stats)
}

struct Copier<'a> {
    src: &'a Repository,
    index: CacheReader,
    /// The target's index as of the start of the current snapshot.
    dst_index: CacheReader,
    writer: BlobWriter<'a>,
    /// Source tree → target tree.
    trees: HashMap<Id, Id>,
    /// Source chunk → target chunk.
    chunks: HashMap<Id, Id>,
    progress: &'a dyn CopyProgress,
    cancel: &'a AtomicBool,
    chunks_read: u64,
    bytes_read: u64,
    chunks_known: u64,
}

impl<'a> Copier<'a> {
    fn new(
        src: &'a Repository,
        dst: &'a Repository,
        progress: &'a dyn CopyProgress,
        cancel: &'a AtomicBool,
    ) -> Result<Self> {
        Ok(Copier {
            src,
            index: src.index()?,
            dst_index: dst.index()?,
            writer: BlobWriter::new(dst, false)?,
            trees: HashMap::new(),
            chunks: HashMap::new(),
            progress,
            cancel,
            chunks_read: 0,
            bytes_read: 0,
            chunks_known: 0,
        })
    }

    fn tree(&mut self, id: &Id, hint: Option<Pair>, depth: usize) -> Result<Id> {
        if let Some(t) = self.trees.get(id) {
            return Ok(*t);
        }
        if let Some(h) = hint {
            if h.src == *id && self.writer.reuse(&h.dst)? {
                self.trees.insert(*id, h.dst);
                return Ok(h.dst);
            }
        }
        if self.cancel.load(Ordering::SeqCst) {
            return Err(Error::interrupted());
        }
        let below = walker::below_when_deep(self.src, &self.index, id, depth, self.cancel)?;
        for t in below {
            self.tree(&t, None, depth + 1)?;
        }
        let mut tree = self.src.load_tree(&self.index, id)?;
        let partners = hint.and_then(|h| self.hint_trees(h));
        for node in &mut tree.nodes {
            let partner = partners.as_ref().and_then(|(a, b)| {
                let find = |t: &Tree| {
                    t.nodes
                        .iter()
                        .find(|n| {
                            n.name == node.name
                                && n.name_raw == node.name_raw
                                && n.kind == node.kind
                                && n.damage.is_none()
                        })
                        .cloned()
                };
                Some((find(a)?, find(b)?))
            });
            match node.kind {
                NodeKind::Dir => {
                    if let Some(sub) = node.subtree {
                        let hint = partner.and_then(|(a, b)| {
                            Some(Pair {
                                src: a.subtree?,
                                dst: b.subtree?,
                            })
                        });
                        node.subtree = Some(self.tree(&sub, hint, depth + 1)?);
                    }
                }
                NodeKind::File => {
                    if let Some((a, b)) = &partner {
                        if node.damage.is_none() {
                            self.learn_file(a, b)?;
                        }
                    }
                    let ids = self.src.file_chunks(&self.index, node)?;
                    let mapped = self.chunks_of(&ids)?;
                    let (content, lists) = self.writer.content_of(mapped)?;
                    node.content = content;
                    node.content_lists = lists;
                    self.progress.advance(node.size);
                }
                _ => {}
            }
        }
        let new = self.writer.save_tree(&mut tree)?;
        self.trees.insert(*id, new);
        Ok(new)
    }

    /// The trees of a hint pair; `None` when either cannot be read (a hint
    /// only saves work, so a damaged one is passed over).
    fn hint_trees(&self, h: Pair) -> Option<(Tree, Tree)> {
        let a = self.src.load_tree(&self.index, &h.src).ok()?;
        let b = self.writer.repo().load_tree(&self.dst_index, &h.dst).ok()?;
        Some((a, b))
    }

    /// Learns source → target chunk IDs from a file and its copy: the
    /// same chunks in the same order, when sizes, counts and every chunk's
    /// length agree (anything else and the file is read as usual).
    fn learn_file(&mut self, a: &Node, b: &Node) -> Result<()> {
        if a.size != b.size {
            return Ok(());
        }
        let (Ok(from), Ok(to)) = (
            self.src.file_chunks(&self.index, a),
            self.writer.repo().file_chunks(&self.dst_index, b),
        ) else {
            return Ok(());
        };
        if from.len() != to.len() {
            return Ok(());
        }
        let mut learnt = Vec::with_capacity(from.len());
        for (s, d) in from.iter().zip(&to) {
            match (self.index.get(s)?, self.dst_index.get(d)?) {
                (Some(x), Some(y)) if x.entry.raw_length == y.entry.raw_length => {
                    learnt.push((*s, *d))
                }
                _ => return Ok(()),
            }
        }
        self.chunks.extend(learnt);
        Ok(())
    }

    /// The target IDs of source chunks, storing those the target lacks.
    fn chunks_of(&mut self, ids: &[Id]) -> Result<Vec<Id>> {
        // The chunks not known yet, each once, in file order (which keeps
        // reads of one pack together), read in batches. A chunk learnt from
        // an earlier copy is reused if the target still holds it.
        let mut once = HashSet::new();
        let mut missing: Vec<Id> = Vec::new();
        for id in ids {
            if let Some(t) = self.chunks.get(id).copied() {
                if self.writer.reuse(&t)? {
                    self.chunks_known += 1;
                    continue;
                }
                self.chunks.remove(id);
            }
            if once.insert(*id) {
                missing.push(*id);
            }
        }
        let mut pos = 0;
        while pos < missing.len() {
            if self.cancel.load(Ordering::SeqCst) {
                return Err(Error::interrupted());
            }
            let (n, chunks) = read_next_batch(self.src, &self.index, &missing[pos..])?;
            let refs: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
            let new = self.writer.save_chunks(&refs)?;
            for ((src_id, bytes), new) in missing[pos..pos + n].iter().zip(&chunks).zip(new) {
                self.chunks_read += 1;
                self.bytes_read += bytes.len() as u64;
                self.chunks.insert(*src_id, new);
            }
            pos += n;
        }
        ids.iter()
            .map(|id| {
                self.chunks.get(id).copied().ok_or_else(|| {
                    Error::corrupt(format!("chunk {id} was not read from the source"))
                })
            })
            .collect()
    }
}

/// Totals of copying archived WAL.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct WalCopyStats {
    /// WAL files copied now.
    pub copied: usize,
    /// WAL files the target already had.
    pub present: usize,
    /// Data chunks read from the source.
    pub chunks_read: u64,
}

/// Copies every archived WAL file of `src` that `dst` lacks (by name), so
/// that an off-site copy can do point-in-time recovery too. The data of all
/// of them is stored and checked first, then the records are written
/// (each the commit point of its WAL file, §10.1).
pub fn copy_wal(src: &Repository, dst: &Repository, cancel: &AtomicBool) -> Result<WalCopyStats> {
    let list = crate::repo::wal_record::load(src)?;
    if let Some((name, e)) = list.damaged.first() {
        return Err(Error::new(
            e.kind(),
            format!("WAL record {name} of the source cannot be read: {e}"),
        ));
    }
    let present: HashSet<String> = dst
        .backend()
        .list(crate::backend::ObjectKind::Wal)?
        .into_iter()
        .map(|o| o.name)
        .collect();
    let mut stats = WalCopyStats::default();
    let mut c = Copier::new(src, dst, &NoCopyProgress, cancel)?;
    let mut records = Vec::new();
    for rec in list.good {
        let id = dst.keys().wal_object_id(&rec.name);
        if present.contains(&id.to_hex()) {
            stats.present += 1;
            continue;
        }
        c.trees.clear();
        c.chunks.clear();
        let tree = c.tree(&rec.tree, None, 0)?;
        records.push(crate::repo::wal_record::WalRecord { id, tree, ..rec });
    }
    c.writer.flush_all()?;
    verify_referenced(dst, c.writer.referenced(), c.writer.bases())?;
    for rec in &records {
        // Create-only: a record that appeared meanwhile (or is being
        // written by a push right now) is left alone.
        rec.store(dst)?;
        stats.copied += 1;
    }
    c.writer.finish()?;
    stats.chunks_read = c.chunks_read;
    Ok(stats)
}

/// The operation as a method: `src.copy_to(&dst, ...)`.
impl Repository {
    /// Copies `snapshots` into `dst`: see [`copy`].
    pub fn copy_to(
        &self,
        dst: &Repository,
        snapshots: &[Snapshot],
        progress: &dyn CopyProgress,
        cancel: &AtomicBool,
    ) -> Result<CopyStats> {
        copy(self, dst, snapshots, progress, cancel)
    }
}
