//! Delta compression during a backup (`repo-format.md` §6.8): a new blob
//! that resembles one already stored whole is encoded as a zstd delta
//! against it when that is smaller.
//!
//! Candidates come from the sketch table of the local cache
//! ([`crate::chunk::sketch`] super-features of the blobs stored whole), and are
//! used only when the backup's view of the index has them whole, of the
//! same type, in a pack in use. Every base a stored delta needs is reported
//! to the caller, whose commit check must find it still in use, like a blob
//! it reused (§12.4).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;

use crate::chunk::sketch::{Sketch, Sketcher};
use crate::error::{Error, ErrorKind, Result};
use crate::format::pack::{self, BlobType, EncodedBlob};
use crate::id::Id;
use crate::repo::cache::{BlobLocation, CacheReader, SketchReader};
use crate::repo::repository::Repository;

/// Sketches are written to the cache in runs of this many.
const SKETCH_FLUSH: usize = 50_000;

/// The delta side of one backup.
pub(crate) struct DeltaEncoder<'a> {
    repo: &'a Repository,
    level: i32,
    sketcher: Sketcher,
    sketches: SketchReader,
    /// [`Repository::cache_generation`] when `sketches` was taken.
    generation: u64,
    /// Sketches of blobs stored whole, for the cache.
    pending: Vec<(Id, Sketch)>,
    /// Whether a base read failed already (warned once).
    failed_reads: usize,
}

impl<'a> DeltaEncoder<'a> {
    /// The encoder, if the repository has deltas on (and compresses at
    /// all). A cache without sketches (new, or deleted) is first given
    /// those of the newest snapshot of `hostname` and `paths`; if that
    /// fails (other than by interruption) the backup goes on and the
    /// returned warning says it stores more.
    pub(crate) fn open(
        repo: &'a Repository,
        index: &CacheReader,
        (hostname, paths): (&str, &[String]),
        cancel: &AtomicBool,
    ) -> Result<(Option<Self>, Option<String>)> {
        let c = &repo.config().compression;
        if !c.deltas_on() {
            return Ok((None, None));
        }
        let mut warning = None;
        if repo.cache().sketch_count()? == 0 && !index.is_empty()? {
            if let Err(e) = rebuild_sketches(repo, index, hostname, paths, cancel) {
                if e.kind() == ErrorKind::Interrupted {
                    return Err(e);
                }
                warning = Some(format!(
                    "could not sketch the previous snapshot for delta compression (this backup stores more): {e}"
                ));
            }
        }
        let encoder = DeltaEncoder {
            repo,
            level: c.level,
            sketcher: Sketcher::new(),
            generation: repo.cache_generation(),
            sketches: repo.cache().sketch_reader()?,
            pending: Vec::new(),
            failed_reads: 0,
        };
        Ok((Some(encoder), warning))
    }

    /// Writes the sketches of the blobs stored whole so far to the cache.
    pub(crate) fn flush(&mut self) -> Result<()> {
        self.repo.with_cache(|c| c.add_sketches(&self.pending))?;
        self.pending.clear();
        Ok(())
    }

    /// Writes the pending sketches and reads the sketch table again, so
    /// that the blobs stored whole so far become candidate bases (`copy`
    /// of a series: each night against the one copied before it).
    pub(crate) fn refresh(&mut self) -> Result<()> {
        self.flush()?;
        self.sketches = self.repo.cache().sketch_reader()?;
        Ok(())
    }

    /// Encodes the fresh data chunks `chunks[i]` (IDs `ids[i]`) for `i` in
    /// `fresh`: each whole, or as a delta against a stored chunk it
    /// resembles. The bases of the deltas go into `relied_on`; a warning is
    /// returned the first time reading bases fails (those chunks are then
    /// stored whole).
    pub(crate) fn encode_chunks(
        &mut self,
        index: &CacheReader,
        (chunks, ids, fresh): (&[&[u8]], &[Id], &[usize]),
        relied_on: &mut HashSet<Id>,
    ) -> Result<(Vec<EncodedBlob>, Option<String>)> {
        self.fresh_sketches()?;
        let sketcher = &self.sketcher;
        let sketches: Vec<Option<Sketch>> = fresh
            .par_iter()
            .map(|&i| sketcher.sketch(chunks[i]))
            .collect();
        let mut base_of: Vec<Option<BlobLocation>> = Vec::with_capacity(sketches.len());
        let mut wanted: Vec<BlobLocation> = Vec::new();
        let mut seen: HashSet<Id> = HashSet::new();
        for sketch in &sketches {
            let found = match sketch {
                Some(s) => self.base_for(index, s, BlobType::Data)?,
                None => None,
            };
            if let Some(loc) = found {
                if seen.insert(loc.entry.id) {
                    wanted.push(loc);
                }
            }
            base_of.push(found);
        }
        let mut warning = None;
        let bases: HashMap<Id, Vec<u8>> = if wanted.is_empty() {
            HashMap::new()
        } else {
            // Read in pack order, so that nearby bases share a read.
            wanted.sort_by_key(|l| (l.pack_id, l.entry.offset));
            match crate::repo::reader::fetch_whole(self.repo, &wanted) {
                Ok(plain) => wanted.iter().map(|l| l.entry.id).zip(plain).collect(),
                Err(e) if e.kind() == ErrorKind::Interrupted => return Err(e),
                Err(e) => {
                    if self.failed_reads == 0 {
                        warning = Some(format!(
                            "reading bases for delta compression failed, chunks stored whole: {e}"
                        ));
                    }
                    self.failed_reads += 1;
                    HashMap::new()
                }
            }
        };
        let (keys, repo_id, level) = (self.repo.keys(), *self.repo.id(), self.level);
        let encoded: Vec<EncodedBlob> = fresh
            .par_iter()
            .zip(base_of.par_iter())
            .map(|(&i, base)| {
                let base = base.as_ref().and_then(|loc| {
                    bases
                        .get(&loc.entry.id)
                        .map(|plain| (loc.entry.id, plain.as_slice()))
                });
                let target = (BlobType::Data, ids[i], chunks[i]);
                pack::encode_best(keys, &repo_id, target, base, level)
            })
            .collect::<Result<_>>()?;
        for (blob, sketch) in encoded.iter().zip(sketches) {
            self.note(blob, sketch, relied_on);
        }
        if self.pending.len() >= SKETCH_FLUSH {
            self.flush()?;
        }
        Ok((encoded, warning))
    }

    /// A tree or chunk list, `whole` as encoded on its own, as a delta
    /// against a similar one of its type if that is smaller: a night's
    /// chunk lists differ from the night before's in the IDs of the chunks
    /// that changed, and stored whole they would be rewritten every night.
    pub(crate) fn encode_metadata(
        &mut self,
        index: &CacheReader,
        whole: EncodedBlob,
        bytes: &[u8],
        relied_on: &mut HashSet<Id>,
    ) -> Result<EncodedBlob> {
        self.fresh_sketches()?;
        let sketch = self.sketcher.sketch(bytes);
        let mut out = whole;
        let base = match &sketch {
            Some(s) => self.base_for(index, s, out.blob_type)?,
            None => None,
        };
        if let Some(loc) = base {
            let blob_type = out.blob_type;
            // Chunk lists are long runs of random IDs, and zstd's level 1
            // misses most matches in a base of a few hundred KiB; level 3
            // finds them (deltas 35 % smaller over the benchmark series,
            // for a few lists a night).
            let metadata_level = self.level.max(3);
            match self.repo.read_blob_once(index, &loc.entry.id, blob_type) {
                Ok(plain) => {
                    let (keys, repo_id) = (self.repo.keys(), self.repo.id());
                    let base = (loc.entry.id, plain.as_slice());
                    if let Some(d) =
                        pack::encode_delta(keys, repo_id, &out, bytes, base, metadata_level)?
                    {
                        out = d;
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => return Err(e),
                Err(_) => self.failed_reads += 1,
            }
        }
        self.note(&out, sketch, relied_on);
        Ok(out)
    }

    /// Reads the sketch table again when the cache was replaced (its disk
    /// failed) since it was last read.
    fn fresh_sketches(&mut self) -> Result<()> {
        let now = self.repo.cache_generation();
        if now != self.generation {
            self.sketches = self.repo.cache().sketch_reader()?;
            self.generation = now;
        }
        Ok(())
    }

    /// The base for a blob of `blob_type` with sketch `sketch`: the first
    /// candidate the index has whole, of that type, in a pack in use
    /// (never a delta: one level only).
    fn base_for(
        &self,
        index: &CacheReader,
        sketch: &Sketch,
        blob_type: BlobType,
    ) -> Result<Option<BlobLocation>> {
        // A cache whose disk failed under these readers (it falls back
        // to memory, `Repository::with_cache`) gives no base: the blob is
        // stored whole, which is always right.
        let Ok(candidates) = self.sketches.candidates(sketch) else {
            return Ok(None);
        };
        for c in candidates {
            let Ok(found) = index.get(&c) else {
                return Ok(None);
            };
            if let Some(loc) = found {
                // Never a write-only key's blob: nothing proves it holds
                // what its entry says (docs/design.md §8.2).
                if loc.obsolete_since.is_none()
                    && loc.entry.blob_type == blob_type
                    && loc.entry.compression.base().is_none()
                    && !loc.entry.session
                {
                    return Ok(Some(loc));
                }
            }
        }
        Ok(None)
    }

    /// After encoding `blob`: a blob stored whole becomes a candidate base
    /// (its sketch goes to the cache); a delta's base is relied on.
    fn note(&mut self, blob: &EncodedBlob, sketch: Option<Sketch>, relied_on: &mut HashSet<Id>) {
        match (sketch, blob.compression.base()) {
            (Some(s), None) => self.pending.push((blob.id, s)),
            (_, Some(base)) => {
                relied_on.insert(base);
            }
            (None, None) => {}
        }
    }
}

/// Fills an empty sketch table from the repository: the blobs stored whole
/// of the newest snapshot of `hostname` and `paths` (or the newest
/// snapshot), the likeliest bases of tonight's changes. About the cost of
/// restoring that snapshot, once per new cache. Returns how many blobs
/// were sketched.
fn rebuild_sketches(
    repo: &Repository,
    index: &CacheReader,
    hostname: &str,
    paths: &[String],
    cancel: &AtomicBool,
) -> Result<usize> {
    let snapshots = repo.load_snapshots()?.good;
    let mut sorted = paths.to_vec();
    sorted.sort();
    let newest = |same: bool| {
        snapshots
            .iter()
            .filter(|s| !same || (s.hostname == hostname && s.sorted_paths() == sorted))
            .max_by(|a, b| a.time.cmp(&b.time))
    };
    let Some(snapshot) = newest(true).or_else(|| newest(false)) else {
        return Ok(0);
    };
    // Every blob of the snapshot: its trees, chunk lists and chunks.
    let mut ids: Vec<Id> = Vec::new();
    crate::repo::walker::for_each_new_blob(
        repo,
        index,
        &snapshot.tree,
        &mut HashSet::new(),
        cancel,
        &mut |id, _| ids.push(*id),
    )?;
    let sketcher = Sketcher::new();
    let mut sketched = 0;
    let mut pending: Vec<(Id, Sketch)> = Vec::new();
    for batch in ids.chunks(1024) {
        if cancel.load(Ordering::SeqCst) {
            return Err(Error::interrupted());
        }
        let mut locs: Vec<BlobLocation> = Vec::with_capacity(batch.len());
        for id in batch {
            if let Some(l) = index.get(id)? {
                if l.obsolete_since.is_none() && l.entry.compression.base().is_none() {
                    locs.push(l);
                }
            }
        }
        locs.sort_by_key(|l| (l.pack_id, l.entry.offset));
        let plain = crate::repo::reader::fetch_whole(repo, &locs)?;
        let found: Vec<(Id, Sketch)> = locs
            .par_iter()
            .zip(plain.par_iter())
            .filter_map(|(l, p)| sketcher.sketch(p).map(|s| (l.entry.id, s)))
            .collect();
        sketched += found.len();
        pending.extend(found);
        if pending.len() >= SKETCH_FLUSH {
            repo.with_cache(|c| c.add_sketches(&pending))?;
            pending.clear();
        }
    }
    repo.with_cache(|c| c.add_sketches(&pending))?;
    Ok(sketched)
}
