//! `copy`: snapshots from one repository into another with other keys.
//!
//! Blob IDs are keyed, so every chunk is read from the source, named again
//! with the target's chunk-ID key, and stored only if the target lacks it;
//! trees and chunk lists are rewritten with the new IDs. Chunk boundaries
//! are the source's; the target's own backups cut with its own chunker
//! seed, so they deduplicate only against each other.
//!
//! A copy records the source snapshot in `original` (the source's own
//! `original` when it is itself a copy) and is skipped when the target
//! already has a snapshot with that `original`, time and tags: running copy
//! twice copies nothing, and after an interruption it resumes, with every
//! chunk already stored and indexed in the target reused.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::blob_writer::BlobWriter;
use crate::cache::CacheReader;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::pack::BlobType;
use crate::prune::verify_referenced;
use crate::repository::Repository;
use crate::restore::read_next_batch;
use crate::snapshot::Snapshot;
use crate::tree::NodeKind;

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
}

/// The identity a copy records in `original`.
fn identity(s: &Snapshot) -> Id {
    s.original.unwrap_or(s.id)
}

/// Copies `snapshots` of `src` into `dst`.
pub fn copy(
    src: &Repository,
    dst: &Repository,
    snapshots: &[Snapshot],
    cancel: &AtomicBool,
) -> Result<CopyStats> {
    let mut existing = dst.load_snapshots()?.good;
    let mut stats = CopyStats::default();
    let mut c = Copier {
        src,
        index: src.index()?,
        writer: BlobWriter::new(dst, false)?,
        trees: HashMap::new(),
        chunks: HashMap::new(),
        cancel,
        chunks_read: 0,
        bytes_read: 0,
    };
    for s in snapshots {
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
            continue;
        }
        let root = c.tree(&s.tree, 0)?;
        // Everything the snapshot needs is stored and indexed before it is
        // written (the commit point, §11.1), and the target's prune rules
        // hold for what the copy reused (§12.6).
        c.writer.flush_all()?;
        verify_referenced(dst, c.writer.referenced())?;
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
    }
    c.writer.finish()?;
    stats.chunks_read = c.chunks_read;
    stats.bytes_read = c.bytes_read;
    Ok(stats)
}

struct Copier<'a> {
    src: &'a Repository,
    index: CacheReader,
    writer: BlobWriter<'a>,
    /// Source tree → target tree.
    trees: HashMap<Id, Id>,
    /// Source chunk → target chunk.
    chunks: HashMap<Id, Id>,
    cancel: &'a AtomicBool,
    chunks_read: u64,
    bytes_read: u64,
}

/// Directory nesting beyond this is refused.
const MAX_DEPTH: usize = 4096;

impl Copier<'_> {
    fn tree(&mut self, id: &Id, depth: usize) -> Result<Id> {
        if let Some(t) = self.trees.get(id) {
            return Ok(*t);
        }
        if self.cancel.load(Ordering::SeqCst) {
            return Err(Error::interrupted());
        }
        if depth > MAX_DEPTH {
            return Err(Error::corrupt(format!(
                "tree {id}: directories nest deeper than {MAX_DEPTH}"
            )));
        }
        let mut tree = self.src.load_tree(&self.index, id)?;
        for node in &mut tree.nodes {
            match node.kind {
                NodeKind::Dir => {
                    if let Some(sub) = node.subtree {
                        node.subtree = Some(self.tree(&sub, depth + 1)?);
                    }
                }
                NodeKind::File => {
                    let ids = self.src.file_chunks(&self.index, node)?;
                    let mapped = self.chunks_of(&ids)?;
                    let (content, lists) = self.writer.content_of(mapped)?;
                    node.content = content;
                    node.content_lists = lists;
                }
                _ => {}
            }
        }
        let new = self.writer.save_tree(&mut tree)?;
        self.trees.insert(*id, new);
        Ok(new)
    }

    /// The target IDs of source chunks, storing those the target lacks.
    fn chunks_of(&mut self, ids: &[Id]) -> Result<Vec<Id>> {
        // The chunks not copied yet, each once, in file order (which keeps
        // reads of one pack together), read in batches.
        let mut once = HashSet::new();
        let missing: Vec<Id> = ids
            .iter()
            .filter(|id| !self.chunks.contains_key(id) && once.insert(**id))
            .copied()
            .collect();
        let mut pos = 0;
        while pos < missing.len() {
            if self.cancel.load(Ordering::SeqCst) {
                return Err(Error::interrupted());
            }
            let (n, chunks) = read_next_batch(self.src, &self.index, &missing[pos..])?;
            for (src_id, bytes) in missing[pos..pos + n].iter().zip(&chunks) {
                self.chunks_read += 1;
                self.bytes_read += bytes.len() as u64;
                let new = self.writer.repo().keys().chunk_id(bytes);
                self.writer.save(BlobType::Data, new, bytes)?;
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
