//! Stores new blobs (trees, chunk lists, data) outside a backup (`repair
//! snapshots`, `copy`): deduplicated against the index, packed, verified,
//! stored, and each pack indexed as soon as it is stored. With delta
//! compression on ([`BlobWriter::enable_deltas`], for `copy`), new blobs
//! that resemble stored ones are stored as deltas, as a backup does.

use std::collections::HashSet;

use rayon::prelude::*;

use crate::error::Result;
use crate::format::index::IndexPack;
use crate::format::pack::{self, BlobEntry, BlobType, EncodedBlob, FinishedPack, PackWriter};
use crate::format::tree::{self, Tree};
use crate::id::Id;
use crate::repo::cache::{CacheReader, LiveCopy};
use crate::repo::delta::DeltaEncoder;
use crate::repo::repository::Repository;

/// Fills packs: data blobs in one, metadata blobs (trees, chunk lists) in
/// another, each finished when it reaches the repository's pack size. The
/// one pack filler every writer uses (backup, copy, repair, `wal-push`,
/// prune's repacking, the benchmark generator); what becomes of a
/// finished pack (handed to an upload thread, or stored and indexed at
/// once) is the caller's.
pub(crate) struct Packer<'a> {
    repo: &'a Repository,
    data: PackWriter,
    meta: PackWriter,
    pack_size: usize,
}

impl<'a> Packer<'a> {
    pub(crate) fn new(repo: &'a Repository) -> Result<Self> {
        Ok(Packer {
            repo,
            data: PackWriter::new(repo.keys(), repo.id())?,
            meta: PackWriter::new(repo.keys(), repo.id())?,
            pack_size: repo.config().pack_size as usize,
        })
    }

    fn writer(&mut self, data: bool) -> &mut PackWriter {
        if data {
            &mut self.data
        } else {
            &mut self.meta
        }
    }

    /// Adds a blob sealed for this repository; returns the pack it filled,
    /// if it filled one.
    pub(crate) fn add(&mut self, blob: &EncodedBlob) -> Result<Option<FinishedPack>> {
        let data = blob.blob_type == BlobType::Data;
        self.writer(data).add(blob)?;
        self.finish_if_full(data)
    }

    /// Adds a blob as another pack stores it (its seal checked by the
    /// caller); returns the pack it filled, if it filled one.
    pub(crate) fn add_stored(
        &mut self,
        entry: &BlobEntry,
        sealed: &[u8],
    ) -> Result<Option<FinishedPack>> {
        let data = entry.blob_type == BlobType::Data;
        self.writer(data).add_stored(entry, sealed)?;
        self.finish_if_full(data)
    }

    fn finish_if_full(&mut self, data: bool) -> Result<Option<FinishedPack>> {
        if self.writer(data).len() >= self.pack_size {
            self.finish(data)
        } else {
            Ok(None)
        }
    }

    /// Finishes the pending pack of data (or metadata) blobs, if there is
    /// one.
    pub(crate) fn finish(&mut self, data: bool) -> Result<Option<FinishedPack>> {
        if self.writer(data).is_empty() {
            return Ok(None);
        }
        let repo = self.repo;
        let fresh = PackWriter::new(repo.keys(), repo.id())?;
        let full = std::mem::replace(self.writer(data), fresh);
        full.finish(repo.keys(), repo.id()).map(Some)
    }

    /// Finishes both pending packs (data first).
    pub(crate) fn finish_all(&mut self) -> Result<Vec<FinishedPack>> {
        Ok([self.finish(true)?, self.finish(false)?]
            .into_iter()
            .flatten()
            .collect())
    }
}

/// Writes blobs into new packs of one repository.
pub(crate) struct BlobWriter<'a> {
    repo: &'a Repository,
    /// Compute IDs only; store nothing.
    dry_run: bool,
    index: CacheReader,
    seen: HashSet<Id>,
    referenced: HashSet<Id>,
    /// Delta bases relied on (also in `referenced`), to be found whole.
    bases: HashSet<Id>,
    packer: Packer<'a>,
    delta: Option<DeltaEncoder<'a>>,
    /// Warnings of delta compression (bases that could not be read).
    warnings: Vec<String>,
    /// Plaintext bytes of the data chunks stored (not deduplicated).
    new_data_bytes: u64,
    /// zstd level of the data chunks stored whole.
    data_level: i32,
}

impl<'a> BlobWriter<'a> {
    pub(crate) fn new(repo: &'a Repository, dry_run: bool) -> Result<Self> {
        Ok(BlobWriter {
            repo,
            dry_run,
            index: repo.index()?,
            seen: HashSet::new(),
            referenced: HashSet::new(),
            bases: HashSet::new(),
            packer: Packer::new(repo)?,
            delta: None,
            warnings: Vec::new(),
            new_data_bytes: 0,
            data_level: repo.config().compression.level,
        })
    }

    /// Compresses the data chunks it stores whole at `level` instead of the
    /// repository's level.
    pub(crate) fn with_data_level(mut self, level: i32) -> Self {
        self.data_level = level;
        self
    }

    /// Stores new blobs as deltas where the repository has delta
    /// compression on (the sketch table is rebuilt from the newest
    /// snapshot of `hostname` and `paths` if the cache has none).
    pub(crate) fn enable_deltas(
        &mut self,
        (hostname, paths): (&str, &[String]),
        cancel: &std::sync::atomic::AtomicBool,
    ) -> Result<()> {
        let (encoder, warning) =
            DeltaEncoder::open(self.repo, &self.index, (hostname, paths), cancel)?;
        self.warnings.extend(warning);
        self.delta = encoder;
        Ok(())
    }

    /// Warnings so far (each once), for the caller to show.
    pub(crate) fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    /// Stores data chunks (those not stored yet); returns their IDs.
    pub(crate) fn save_chunks(&mut self, chunks: &[&[u8]]) -> Result<Vec<Id>> {
        let keys = self.repo.keys();
        let ids: Vec<Id> = chunks.par_iter().map(|c| keys.chunk_id(c)).collect();
        let mut fresh = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            self.referenced.insert(*id);
            if self.seen.contains(id) || self.relies_on(id)? {
                continue;
            }
            self.seen.insert(*id);
            fresh.push(i);
        }
        self.new_data_bytes += fresh.iter().map(|&i| chunks[i].len() as u64).sum::<u64>();
        if self.dry_run || fresh.is_empty() {
            return Ok(ids);
        }
        let encoded: Vec<EncodedBlob> = match &mut self.delta {
            Some(d) => {
                let mut bases = std::collections::HashSet::new();
                let (encoded, warning) =
                    d.encode_chunks(&self.index, (chunks, &ids, &fresh), &mut bases)?;
                self.warnings.extend(warning);
                self.referenced.extend(bases.iter().copied());
                self.bases.extend(bases);
                encoded
            }
            None => {
                let (repo_id, level) = (*self.repo.id(), self.data_level);
                fresh
                    .par_iter()
                    .map(|&i| {
                        pack::encode_blob(keys, &repo_id, BlobType::Data, ids[i], chunks[i], level)
                    })
                    .collect::<Result<_>>()?
            }
        };
        for blob in encoded {
            self.add(&blob)?;
        }
        Ok(ids)
    }

    fn add(&mut self, blob: &EncodedBlob) -> Result<()> {
        if let Some(full) = self.packer.add(blob)? {
            self.index_now(&[self.repo.store_pack(full)?])?;
        }
        Ok(())
    }

    /// Indexes stored packs at once: a pack in no index for long looks
    /// like a crashed backup's leftover to prune (§12.3).
    fn index_now(&self, records: &[IndexPack]) -> Result<()> {
        if !records.is_empty() {
            self.repo.save_index(records)?;
        }
        Ok(())
    }

    /// After [`Self::flush_all`]: sees the index as it is now and makes
    /// the blobs stored whole so far candidate delta bases.
    pub(crate) fn refresh(&mut self) -> Result<()> {
        if let Some(d) = &mut self.delta {
            d.refresh()?;
            self.index = self.repo.index()?;
        }
        Ok(())
    }

    pub(crate) fn save(&mut self, blob_type: BlobType, id: Id, bytes: &[u8]) -> Result<Id> {
        self.referenced.insert(id);
        if self.seen.contains(&id) || self.relies_on(&id)? {
            return Ok(id);
        }
        self.seen.insert(id);
        if self.dry_run {
            return Ok(id);
        }
        let mut blob = pack::encode_blob(
            self.repo.keys(),
            self.repo.id(),
            blob_type,
            id,
            bytes,
            self.repo.config().compression.level,
        )?;
        if let (Some(d), false) = (&mut self.delta, blob_type == BlobType::Data) {
            let mut bases = std::collections::HashSet::new();
            blob = d.encode_metadata(&self.index, blob, bytes, &mut bases)?;
            self.referenced.extend(bases.iter().copied());
            self.bases.extend(bases);
        }
        self.add(&blob)?;
        Ok(id)
    }

    /// Refers to a blob the repository is known to hold (`id` was learnt
    /// from an earlier copy), if it does: stored by this writer or live in
    /// the index. Returns `false` when it does not, and the caller must
    /// store it.
    pub(crate) fn reuse(&mut self, id: &Id) -> Result<bool> {
        if self.seen.contains(id) || self.relies_on(id)? {
            self.referenced.insert(*id);
            return Ok(true);
        }
        Ok(false)
    }

    /// Whether `id` is live in the index; if it is a delta, its base is
    /// referenced too (the commit check must cover it).
    fn relies_on(&mut self, id: &Id) -> Result<bool> {
        let live = match self.index.live(id) {
            // The cache's disk failed: again on a cache in memory.
            Err(e) => {
                self.index = self.repo.index_after(e)?;
                self.index.live(id)?
            }
            Ok(live) => live,
        };
        match live.map(LiveCopy::base) {
            Some(base) => {
                self.referenced.extend(base);
                self.bases.extend(base);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Stores both pending packs and indexes them in one index object (a
    /// `wal-push` writes one of each: one object and one cache commit
    /// fewer than two).
    fn store_both(&mut self) -> Result<()> {
        let records = self
            .packer
            .finish_all()?
            .into_iter()
            .map(|pack| self.repo.store_pack(pack))
            .collect::<Result<Vec<_>>>()?;
        self.index_now(&records)
    }

    /// Plaintext bytes of the data chunks [`Self::save_chunks`] found new.
    pub(crate) fn new_data_bytes(&self) -> u64 {
        self.new_data_bytes
    }

    /// The repository written to.
    pub(crate) fn repo(&self) -> &Repository {
        self.repo
    }

    /// Every blob saved or found indexed so far (for the commit check).
    pub(crate) fn referenced(&self) -> &HashSet<Id> {
        &self.referenced
    }

    /// The delta bases among [`Self::referenced`], for the commit check.
    pub(crate) fn bases(&self) -> &HashSet<Id> {
        &self.bases
    }

    /// Stores and indexes what is pending.
    pub(crate) fn flush_all(&mut self) -> Result<()> {
        if self.dry_run {
            return Ok(());
        }
        self.store_both()
    }

    pub(crate) fn save_tree(&mut self, tree: &mut Tree) -> Result<Id> {
        let bytes = tree.encode()?;
        let id = pack::blob_id(self.repo.keys(), BlobType::Tree, &bytes);
        self.save(BlobType::Tree, id, &bytes)
    }

    pub(crate) fn save_zeros(&mut self, len: usize) -> Result<Id> {
        let zeros = vec![0u8; len];
        let id = self.repo.keys().chunk_id(&zeros);
        self.save(BlobType::Data, id, &zeros)
    }

    pub(crate) fn content_of(&mut self, ids: Vec<Id>) -> Result<(Vec<Id>, Vec<Id>)> {
        tree::content_fields(ids, |list| {
            let id = pack::blob_id(self.repo.keys(), BlobType::ChunkList, list);
            self.save(BlobType::ChunkList, id, list)
        })
    }

    /// Stores what is pending and indexes it; returns every blob the
    /// repaired trees refer to that this writer saved or found indexed.
    pub(crate) fn finish(mut self) -> Result<(HashSet<Id>, HashSet<Id>)> {
        self.store_both()?;
        if let Some(d) = &mut self.delta {
            d.flush()?;
        }
        Ok((self.referenced, self.bases))
    }
}

/// An index object is written whenever this many blobs, or packs, are
/// pending, or this much time has passed, so that a backup killed midway
/// leaves most of what it uploaded reusable by the next one.
pub(crate) const INDEX_FLUSH_BLOBS: usize = 200_000;
