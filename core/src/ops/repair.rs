//! `repair index` and `repair snapshots`: plan, then (unless a dry run)
//! act, always writing the replacement before removing what it replaces.
//!
//! - `repair index` rebuilds the index from the packs: entries of readable
//!   index objects are kept for packs that are stored with the size they
//!   imply; every other stored pack is listed from its own trailer; records
//!   of packs that are gone are dropped. New index objects are written,
//!   then the old ones are deleted.
//! - `repair snapshots` rewrites snapshots that reference blobs which are
//!   not indexed or whose pack is gone (with `read_data`, also blobs that do
//!   not verify): a damaged file is renamed `NAME.damaged` and keeps its
//!   length (lost chunks read back as zeros where their length is known), a
//!   directory whose listing is lost becomes an empty `NAME.damaged`; each
//!   is marked with a [`Damage`] record. The repaired snapshot is a new
//!   snapshot tagged `repaired` that names its original; the original stays
//!   unless `forget` is set.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

use crate::backend::ObjectKind;
use crate::error::{Error, ErrorKind, Result};
use crate::format::index::{merged_mark, IndexPack};
use crate::format::pack::{self, BlobType};
use crate::format::snapshot::Snapshot;
use crate::format::snapshot::REPAIRED_TAG;
use crate::format::tree::{self, Damage, Node, NodeKind, Tree, DAMAGED_SUFFIX};
use crate::id::Id;
use crate::repo::cache::CacheReader;
use crate::repo::commit::verify_referenced;
use crate::repo::packer::BlobWriter;
use crate::repo::packer::INDEX_FLUSH_BLOBS;
use crate::repo::repository::Repository;
use crate::repo::walker;

/// Whether a failed read means the data is lost (damaged or gone), as
/// opposed to a reason to stop (storage unreachable, disk full, Ctrl-C, a
/// newer format): repairs must never treat the latter as loss.
fn lost(e: &Error) -> bool {
    matches!(e.kind(), ErrorKind::Corrupt | ErrorKind::MissingObject)
}

/// `Ok(None)` when `r` failed because the data is lost; other failures
/// are passed on.
fn lost_or<T>(r: Result<T>) -> Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if lost(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

fn check_cancel(cancel: &AtomicBool) -> Result<()> {
    if cancel.load(Ordering::SeqCst) {
        return Err(Error::interrupted());
    }
    Ok(())
}

/// What `repair index` found and did.
#[derive(Debug, Default, Serialize)]
pub struct IndexRepair {
    /// Index objects read.
    pub index_objects: usize,
    /// Index objects that could not be read: name and why.
    pub unreadable_indexes: Vec<(String, String)>,
    /// Packs stored.
    pub packs: usize,
    /// Packs whose records were kept from the old index.
    pub kept: usize,
    /// Packs listed afresh from their trailers (not indexed before, or
    /// indexed wrongly).
    pub added: Vec<String>,
    /// Packs the old index listed that are not stored: their blobs are
    /// gone (`repair snapshots` deals with the snapshots that need them).
    pub dropped: Vec<String>,
    /// Stored packs whose trailer cannot be read: name and why. They stay
    /// unindexed (their blobs count as lost) and are left in place.
    pub unreadable_packs: Vec<(String, String)>,
    /// Whether the index needed changing.
    pub changed: bool,
    /// Index objects written.
    pub written: usize,
    /// Old index objects deleted.
    pub deleted: usize,
}

/// Options of `repair index`.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct IndexRepairOptions {
    /// Read the trailer of every pack, not only of packs the index lacks
    /// or gets wrong.
    pub read_all_packs: bool,
    /// Change nothing; report what would change.
    pub dry_run: bool,
}

/// Rebuilds the index from the packs (see the module documentation).
/// `progress(done, total)` is called as pack trailers are read.
pub fn repair_index(
    repo: &Repository,
    opts: IndexRepairOptions,
    progress: &(dyn Fn(u64, u64) + Sync),
    cancel: &AtomicBool,
) -> Result<IndexRepair> {
    let backend = repo.backend();
    let mut out = IndexRepair::default();
    let (old, old_ids) = read_old_index(repo, cancel, &mut out)?;
    let stored = backend.list(ObjectKind::Pack)?;
    out.packs = stored.len();
    let mut stored_ids = HashSet::new();
    let mut new_records: Vec<IndexPack> = Vec::new();
    let mut to_read: Vec<(Id, u64)> = Vec::new();
    for o in &stored {
        let id = Id::parse(&o.name)?;
        stored_ids.insert(id);
        match old.get(&id) {
            Some(p)
                if !opts.read_all_packs && pack::expected_pack_len(&p.blobs) == Some(o.size) =>
            {
                new_records.push(p.clone());
                out.kept += 1;
            }
            _ => to_read.push((id, o.size)),
        }
    }
    for (id, r) in read_trailers(repo, &to_read, progress, cancel)? {
        match r {
            Ok(entries) => {
                let previous = old.get(&id);
                let same = previous.is_some_and(|p| {
                    pack::entries_digest(&p.blobs) == pack::entries_digest(&entries)
                });
                if same {
                    out.kept += 1;
                } else {
                    out.added.push(id.to_hex());
                }
                new_records.push(IndexPack {
                    pack_id: id,
                    // A pack prune marked unused stays marked, so the
                    // grace period it is in keeps running.
                    obsolete_since: previous.filter(|_| same).and_then(|p| p.obsolete_since),
                    blobs: entries,
                });
            }
            Err(e) if e.kind() == ErrorKind::MissingObject => {}
            // A damaged trailer: the old record, if any, is still the best
            // description of the pack (its blobs are sealed one by one and
            // still readable), so it is kept.
            Err(e) if e.kind() == ErrorKind::Corrupt => {
                if let Some(p) = old.get(&id) {
                    new_records.push(p.clone());
                    out.kept += 1;
                }
                out.unreadable_packs.push((id.to_hex(), e.to_string()));
            }
            Err(e) => return Err(e),
        }
    }
    let mut dropped: Vec<String> = old
        .iter()
        .filter(|(id, p)| !stored_ids.contains(id) && p.obsolete_since.is_none())
        .map(|(id, _)| id.to_hex())
        .collect();
    dropped.sort();
    out.dropped = dropped;
    out.added.sort();
    let final_ids: HashSet<Id> = new_records.iter().map(|p| p.pack_id).collect();
    out.changed = !out.unreadable_indexes.is_empty()
        || !out.added.is_empty()
        || old.keys().any(|id| !final_ids.contains(id));
    if !out.changed || opts.dry_run {
        return Ok(out);
    }

    // New index objects first, then the old ones go.
    new_records.sort_by_key(|p| p.pack_id);
    out.written = repo.save_index_records(new_records, INDEX_FLUSH_BLOBS)?;
    for id in &old_ids {
        backend.delete(ObjectKind::Index, &id.to_hex())?;
        out.deleted += 1;
    }
    repo.sync_index()?;
    Ok(out)
}

/// Every index object's records, merged by pack as prune reads them, and
/// the index objects to replace (those read, and the damaged ones, noted
/// in `out`). Anything but damage (unreachable storage, a newer format)
/// stops the repair: such an object must never be deleted.
fn read_old_index(
    repo: &Repository,
    cancel: &AtomicBool,
    out: &mut IndexRepair,
) -> Result<(HashMap<Id, IndexPack>, Vec<Id>)> {
    let old_indexes = repo.backend().list(ObjectKind::Index)?;
    out.index_objects = old_indexes.len();
    let mut old: HashMap<Id, IndexPack> = HashMap::new();
    let mut old_ids = Vec::new();
    for o in &old_indexes {
        check_cancel(cancel)?;
        let id = Id::parse(&o.name)?;
        match repo.load_index(&id) {
            Ok(packs) => {
                old_ids.push(id);
                for p in packs {
                    match old.get_mut(&p.pack_id) {
                        Some(existing) => {
                            existing.obsolete_since =
                                merged_mark(existing.obsolete_since, p.obsolete_since);
                        }
                        None => {
                            old.insert(p.pack_id, p);
                        }
                    }
                }
            }
            Err(e) if e.kind() == ErrorKind::MissingObject => {}
            // Damaged: replaced.
            Err(e) if e.kind() == ErrorKind::Corrupt => {
                old_ids.push(id);
                out.unreadable_indexes.push((o.name.clone(), e.to_string()));
            }
            Err(e) => return Err(e),
        }
    }
    Ok((old, old_ids))
}

/// Reads the trailers of the packs `to_read` (ID, stored size), in
/// parallel, telling `progress`.
#[allow(clippy::type_complexity)]
fn read_trailers(
    repo: &Repository,
    to_read: &[(Id, u64)],
    progress: &(dyn Fn(u64, u64) + Sync),
    cancel: &AtomicBool,
) -> Result<Vec<(Id, Result<Vec<pack::BlobEntry>>)>> {
    use rayon::prelude::*;
    let total = to_read.len() as u64;
    let done = std::sync::atomic::AtomicU64::new(0);
    let read = to_read
        .par_iter()
        .map(|(id, size)| {
            let r = if cancel.load(Ordering::SeqCst) {
                Err(Error::interrupted())
            } else {
                repo.read_pack_trailer(id, *size)
            };
            progress(done.fetch_add(1, Ordering::Relaxed) + 1, total);
            (*id, r)
        })
        .collect();
    check_cancel(cancel)?;
    Ok(read)
}

/// Options of `repair snapshots`.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct SnapshotRepairOptions {
    /// Also read every data chunk the snapshots use and treat those that
    /// do not verify as lost.
    pub read_data: bool,
    /// Delete each original after its repaired copy is written (and
    /// unreadable snapshot objects).
    pub forget: bool,
    /// Change nothing; report what would change.
    pub dry_run: bool,
}

/// One damaged entry of a snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct DamagedEntry {
    /// Path inside the snapshot, before it was renamed.
    pub path: String,
    /// What was lost.
    pub damage: Damage,
}

/// What happened to one snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotRepair {
    /// The snapshot examined (hex).
    pub snapshot: String,
    /// `intact`, `repaired` or `unrepairable`.
    pub outcome: &'static str,
    /// The repaired copy (hex), when one was written.
    pub repaired: Option<String>,
    /// Entries that were damaged.
    pub damaged: Vec<DamagedEntry>,
    /// Why it cannot be repaired (its root tree is lost).
    pub reason: Option<String>,
    /// Whether the original was deleted (`--forget`).
    pub forgotten: bool,
}

/// What `repair snapshots` found and did.
#[derive(Debug, Default, Serialize)]
pub struct SnapshotsRepair {
    /// One entry per snapshot examined.
    pub snapshots: Vec<SnapshotRepair>,
    /// Snapshot objects that cannot be read: name, why, and whether they
    /// were deleted (`--forget` deletes corrupt ones, never ones of a newer
    /// format).
    pub unreadable: Vec<(String, String, bool)>,
}

/// Repairs `snapshots` (see the module documentation). `unreadable` are
/// snapshot objects that failed to load (name and error).
pub fn repair_snapshots(
    repo: &Repository,
    snapshots: &[Snapshot],
    unreadable: &[(String, Error)],
    opts: SnapshotRepairOptions,
    cancel: &AtomicBool,
) -> Result<SnapshotsRepair> {
    let mut out = SnapshotsRepair::default();
    // Blobs of an unreadable index object would look lost, and be zeroed.
    let stats = repo.sync_index()?;
    if let Some(e) = stats.unreadable.first() {
        return Err(Error::corrupt(format!(
            "{e}; run `cairn repair index` first: repair snapshots needs the whole index"
        )));
    }
    let stored: HashSet<Id> = repo
        .backend()
        .list(ObjectKind::Pack)?
        .iter()
        .filter_map(|o| Id::parse(&o.name).ok())
        .collect();
    let mut r = Rewriter {
        repo,
        index: repo.index()?,
        stored,
        read_data: opts.read_data,
        usable: HashMap::new(),
        trees: HashMap::new(),
        writer: BlobWriter::new(repo, opts.dry_run)?,
        cancel,
        depth: 0,
    };
    let mut repaired: Vec<(usize, Snapshot)> = Vec::new();
    for s in snapshots {
        check_cancel(cancel)?;
        let (entry, copy) = r.snapshot(s)?;
        if let Some(copy) = copy {
            repaired.push((out.snapshots.len(), copy));
        }
        out.snapshots.push(entry);
    }
    for (name, e) in unreadable {
        out.unreadable.push((name.clone(), e.to_string(), false));
    }
    if opts.dry_run {
        return Ok(out);
    }
    let referenced = r.writer.finish()?;
    if !repaired.is_empty() {
        verify_referenced(repo, &referenced.0, &referenced.1)?;
    }
    save_repaired(repo, repaired, &mut out, opts.forget)?;
    if opts.forget {
        for entry in out
            .snapshots
            .iter_mut()
            .filter(|e| e.outcome == "unrepairable")
        {
            repo.backend()
                .delete(ObjectKind::Snapshot, &entry.snapshot)?;
            entry.forgotten = true;
        }
        for ((name, _, deleted), (_, e)) in out.unreadable.iter_mut().zip(unreadable) {
            if e.kind() == ErrorKind::Corrupt {
                repo.backend().delete(ObjectKind::Snapshot, name)?;
                *deleted = true;
            }
        }
    }
    Ok(out)
}

/// Saves the repaired copies (`out.snapshots` index, copy), each
/// replacing its original when `forget`. A copy an earlier run already
/// wrote (same original, same tree) is reused: running repair again must
/// not pile up duplicates.
fn save_repaired(
    repo: &Repository,
    repaired: Vec<(usize, Snapshot)>,
    out: &mut SnapshotsRepair,
    forget: bool,
) -> Result<()> {
    let existing = repo.load_snapshots()?.good;
    for (i, copy) in repaired {
        let done = existing
            .iter()
            .find(|e| e.original == copy.original && e.tree == copy.tree)
            .map(|e| e.id);
        let id = match done {
            Some(id) => id,
            None => repo.save_snapshot(&copy)?,
        };
        let entry = &mut out.snapshots[i];
        entry.repaired = Some(id.to_hex());
        if forget {
            repo.backend()
                .delete(ObjectKind::Snapshot, &entry.snapshot)?;
            entry.forgotten = true;
        }
    }
    Ok(())
}

/// Rewrites trees, remembering what it has done (snapshots share trees).
struct Rewriter<'a> {
    repo: &'a Repository,
    index: CacheReader,
    stored: HashSet<Id>,
    read_data: bool,
    usable: HashMap<Id, Option<u64>>,
    /// Tree → its repaired ID and the damage under it (paths relative to
    /// it), or `None` when it is lost.
    trees: HashMap<Id, Option<(Id, Vec<DamagedEntry>)>>,
    writer: BlobWriter<'a>,
    cancel: &'a AtomicBool,
    /// How many directories deep the walk is.
    depth: usize,
}

/// What is known of a lost chunk: its length, if the index has it.
enum Chunk {
    Good(Id),
    Lost(Option<u32>),
}

impl Rewriter<'_> {
    /// Repairs snapshot `s`: what became of it, and the repaired copy to
    /// save, if it needs one.
    fn snapshot(&mut self, s: &Snapshot) -> Result<(SnapshotRepair, Option<Snapshot>)> {
        let mut entry = SnapshotRepair {
            snapshot: s.id.to_hex(),
            outcome: "intact",
            repaired: None,
            damaged: Vec::new(),
            reason: None,
            forgotten: false,
        };
        let copy = match self.tree(&s.tree, "/")? {
            None => {
                entry.outcome = "unrepairable";
                entry.reason = Some(format!("its root tree {} is lost", s.tree));
                None
            }
            Some((root, damaged)) if !damaged.is_empty() => {
                entry.outcome = "repaired";
                entry.damaged = damaged;
                let mut copy = s.clone();
                copy.tree = root;
                copy.original = Some(s.id);
                if !copy.tags.iter().any(|t| t == REPAIRED_TAG) {
                    copy.tags.push(REPAIRED_TAG.to_string());
                }
                Some(copy)
            }
            Some(_) => None,
        };
        Ok((entry, copy))
    }

    /// Whether a blob can be read: indexed, its pack stored, and (with
    /// `read_data`, for data) verified.
    fn chunk(&mut self, id: &Id, blob_type: BlobType) -> Result<Chunk> {
        if let Some(ok) = self.usable.get(id) {
            return Ok(match ok {
                Some(_) => Chunk::Good(*id),
                None => Chunk::Lost(self.index.get(id)?.map(|l| l.entry.raw_length)),
            });
        }
        let loc = self.index.get(id)?;
        let ok = match &loc {
            None => false,
            Some(l) if l.entry.blob_type != blob_type || !self.stored.contains(&l.pack_id) => false,
            Some(_) if self.read_data && blob_type == BlobType::Data => {
                lost_or(self.repo.read_blob_once(&self.index, id, blob_type))?.is_some()
            }
            // A delta is usable only with its base.
            Some(l) => match l.entry.compression.base() {
                Some(base) => matches!(self.chunk(&base, blob_type)?, Chunk::Good(_)),
                None => true,
            },
        };
        self.usable.insert(
            *id,
            ok.then(|| loc.map(|l| u64::from(l.entry.raw_length)).unwrap_or(0)),
        );
        Ok(if ok {
            Chunk::Good(*id)
        } else {
            Chunk::Lost(loc.map(|l| l.entry.raw_length))
        })
    }

    /// A tree or chunk list's bytes; `None` when lost.
    fn read(&mut self, id: &Id, blob_type: BlobType) -> Result<Option<Vec<u8>>> {
        match self.chunk(id, blob_type)? {
            Chunk::Good(_) => lost_or(self.repo.read_blob_once(&self.index, id, blob_type)),
            Chunk::Lost(_) => Ok(None),
        }
    }

    /// The repaired tree `id` (at `path`), or `None` when its listing is
    /// lost.
    fn tree(&mut self, id: &Id, path: &str) -> Result<Option<(Id, Vec<DamagedEntry>)>> {
        check_cancel(self.cancel)?;
        if let Some(done) = self.trees.get(id) {
            return Ok(done.clone().map(|(new, dmg)| (new, prefixed(path, dmg))));
        }
        let below = walker::below_when_deep(self.repo, &self.index, id, self.depth, self.cancel)?;
        self.depth += 1;
        for t in below {
            self.tree(&t, "")?;
        }
        self.depth -= 1;
        let tree = match self.read(id, BlobType::Tree)? {
            Some(b) => lost_or(Tree::decode(&b))?,
            None => None,
        };
        let Some(tree) = tree else {
            self.trees.insert(*id, None);
            return Ok(None);
        };
        let mut damaged: Vec<DamagedEntry> = Vec::new();
        let mut nodes = Vec::with_capacity(tree.nodes.len());
        let names: HashSet<String> = tree.nodes.iter().map(|n| n.name.clone()).collect();
        for mut node in tree.nodes {
            let damage = match node.kind {
                NodeKind::Dir => {
                    let (own, below) = self.dir(&mut node)?;
                    damaged.extend(below);
                    own
                }
                NodeKind::File => self.file(&mut node)?,
                _ => None,
            };
            if let Some(mut damage) = damage {
                damage.original_name = node.name.clone();
                let mut suffix = DAMAGED_SUFFIX.to_string();
                let mut n = 1;
                while names.contains(&format!("{}{suffix}", node.name)) {
                    n += 1;
                    suffix = format!("{DAMAGED_SUFFIX}{n}");
                }
                damaged.push(DamagedEntry {
                    path: node.name.clone(),
                    damage: damage.clone(),
                });
                node.add_suffix(&suffix);
                node.damage = Some(damage);
            }
            nodes.push(node);
        }
        let result = if damaged.is_empty() {
            (*id, Vec::new())
        } else {
            let mut t = Tree { nodes };
            (self.writer.save_tree(&mut t)?, damaged)
        };
        self.trees.insert(*id, Some(result.clone()));
        Ok(Some((result.0, prefixed(path, result.1))))
    }

    /// Repairs a directory entry: its own damage (listing lost: it
    /// becomes empty) and the damage below it (paths relative to the
    /// directory holding it).
    fn dir(&mut self, node: &mut Node) -> Result<(Option<Damage>, Vec<DamagedEntry>)> {
        let Some(sub) = node.subtree else {
            return Ok((None, Vec::new()));
        };
        self.depth += 1;
        let repaired = self.tree(&sub, &node.name);
        self.depth -= 1;
        match repaired? {
            Some((new, below)) => {
                node.subtree = Some(new);
                Ok((None, below))
            }
            None => {
                node.subtree = Some(self.writer.save_tree(&mut Tree::default())?);
                Ok((
                    Some(Damage {
                        listing_lost: true,
                        ..Damage::default()
                    }),
                    Vec::new(),
                ))
            }
        }
    }

    /// Repairs a file entry in place; its damage, if any.
    fn file(&mut self, node: &mut Node) -> Result<Option<Damage>> {
        let mut damage = Damage::default();
        // `content` counts only when there are no chunk lists (§8.2).
        let mut ids = if node.content_lists.is_empty() {
            node.content.clone()
        } else {
            Vec::new()
        };
        for list in node.content_lists.clone() {
            let decoded = match self.read(&list, BlobType::ChunkList)? {
                Some(b) => lost_or(tree::decode_chunk_list(&b))?,
                None => None,
            };
            match decoded {
                Some(more) => ids.extend(more),
                None => {
                    damage.lost_chunks += 1;
                    damage.dropped_chunks += 1;
                }
            }
        }
        let mut kept = Vec::with_capacity(ids.len());
        let mut size = 0u64;
        for id in &ids {
            match self.chunk(id, BlobType::Data)? {
                Chunk::Good(id) => {
                    size += self.usable.get(&id).copied().flatten().unwrap_or(0);
                    kept.push(id);
                }
                Chunk::Lost(Some(len)) => {
                    damage.lost_chunks += 1;
                    damage.zeroed_bytes += u64::from(len);
                    size += u64::from(len);
                    kept.push(self.writer.save_zeros(len as usize)?);
                }
                Chunk::Lost(None) => {
                    damage.lost_chunks += 1;
                    damage.dropped_chunks += 1;
                }
            }
        }
        if damage.lost_chunks == 0 {
            return Ok(None);
        }
        let (content, lists) = self.writer.content_of(kept)?;
        node.content = content;
        node.content_lists = lists;
        node.size = size;
        Ok(Some(damage))
    }
}

fn prefixed(path: &str, entries: Vec<DamagedEntry>) -> Vec<DamagedEntry> {
    let path = path.trim_end_matches('/');
    entries
        .into_iter()
        .map(|mut e| {
            e.path = format!("{path}/{}", e.path);
            e
        })
        .collect()
}
