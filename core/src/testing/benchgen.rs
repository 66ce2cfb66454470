//! Synthetic large repositories, for benchmarks of cairn at scale
//! (`benches/scale.rs`): millions of chunks, indexed and referenced by
//! snapshots, written in seconds instead of the days real backups of that
//! size would take.
//!
//! The repository is a valid one (`check` passes): every chunk is a real
//! sealed blob in a real pack, every pack is indexed, and the chunks are
//! the content of one file in each of `snapshots` snapshots tagged
//! `synthetic`, a day apart, ending yesterday. Chunks are small (their
//! size is the caller's), so the packs are small; the index and the
//! snapshot list are as large as a repository of real 8 KiB chunks.

use rayon::prelude::*;

use crate::error::Result;
use crate::format::index::IndexPack;
use crate::format::pack::{self, BlobType, PackWriter};
use crate::format::snapshot::{Snapshot, SnapshotSource, SnapshotSummary, SourceKind};
use crate::format::tree::{self, Node, NodeKind, Tree};
use crate::id::Id;
use crate::repo::packer::Packer;
use crate::repo::repository::Repository;
use crate::time::SnapshotTime;

/// Chunks are encoded in parallel in groups of this many.
const GROUP: u64 = 65_536;

/// What [`generate`] wrote.
#[derive(Debug, Default, Clone, Copy)]
pub struct Generated {
    /// Data chunks.
    pub chunks: u64,
    /// Snapshots.
    pub snapshots: u64,
    /// Packs.
    pub packs: u64,
    /// Index objects.
    pub indexes: u64,
}

/// The content of synthetic chunk `n`: `len` bytes (at least 8), unique
/// per `n`, incompressible.
fn chunk_bytes(n: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len.max(8));
    out.extend_from_slice(&n.to_le_bytes());
    let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while out.len() < len {
        // splitmix64
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        out.extend_from_slice(&z.to_le_bytes());
    }
    out.truncate(len.max(8));
    out
}

/// Stores packs and writes index objects the way a backup does.
struct Writer<'a> {
    repo: &'a Repository,
    packer: Packer<'a>,
    pending: Vec<IndexPack>,
    pending_blobs: usize,
    out: Generated,
}

impl<'a> Writer<'a> {
    fn add(&mut self, blob: &pack::EncodedBlob) -> Result<()> {
        match self.packer.add(blob)? {
            Some(full) => self.store(full),
            None => Ok(()),
        }
    }

    fn save_meta(&mut self, blob_type: BlobType, bytes: &[u8]) -> Result<Id> {
        let keys = self.repo.keys();
        let id = pack::blob_id(keys, blob_type, bytes);
        let level = self.repo.config().compression.level;
        let blob = pack::encode_blob(keys, self.repo.id(), blob_type, id, bytes, level)?;
        self.add(&blob)?;
        Ok(id)
    }

    fn store(&mut self, pack: pack::FinishedPack) -> Result<()> {
        let record = self.repo.store_pack(pack)?;
        self.out.packs += 1;
        self.pending_blobs += record.blobs.len();
        self.pending.push(record);
        if self.pending_blobs >= crate::repo::packer::INDEX_FLUSH_BLOBS {
            self.flush_index()?;
        }
        Ok(())
    }

    fn flush_packs(&mut self) -> Result<()> {
        for pack in self.packer.finish_all()? {
            self.store(pack)?;
        }
        Ok(())
    }

    fn flush_index(&mut self) -> Result<()> {
        let records = std::mem::take(&mut self.pending);
        self.pending_blobs = 0;
        self.out.indexes += self
            .repo
            .save_index_records(records, crate::repo::packer::INDEX_FLUSH_BLOBS)?
            as u64;
        Ok(())
    }
}

/// Adds `chunks` synthetic data chunks of `chunk_len` bytes to `repo`,
/// split evenly over `snapshots` new snapshots (at least one). `progress`
/// is told the number of chunks written so far.
pub fn generate(
    repo: &Repository,
    chunks: u64,
    snapshots: u64,
    chunk_len: usize,
    progress: &dyn Fn(u64),
) -> Result<Generated> {
    let snapshots = snapshots.max(1);
    let per_snapshot = chunks.div_ceil(snapshots).max(1);
    let (keys, repo_id) = (repo.keys(), *repo.id());
    let level = repo.config().compression.level;
    let mut w = Writer {
        repo,
        packer: Packer::new(repo)?,
        pending: Vec::new(),
        pending_blobs: 0,
        out: Generated::default(),
    };
    let now = SnapshotTime::now().timestamp().as_second();
    let mut made = 0u64;
    let mut trees = Vec::new();
    for s in 0..snapshots {
        let n = per_snapshot.min(chunks - made);
        let mut ids = Vec::with_capacity(n as usize);
        let mut at = made;
        while at < made + n {
            let end = (at + GROUP).min(made + n);
            let blobs = (at..end)
                .into_par_iter()
                .map(|i| {
                    let bytes = chunk_bytes(i, chunk_len);
                    let id = keys.chunk_id(&bytes);
                    pack::encode_blob(keys, &repo_id, BlobType::Data, id, &bytes, level)
                })
                .collect::<Result<Vec<_>>>()?;
            for blob in &blobs {
                ids.push(blob.id);
                w.add(blob)?;
            }
            at = end;
            progress(at);
        }
        made += n;
        let mut node = Node::new(std::ffi::OsStr::new("synthetic.bin"), NodeKind::File);
        node.mode = 0o644;
        node.size = n * chunk_len.max(8) as u64;
        node.mtime = now - (snapshots - s) as i64 * 86_400;
        (node.content, node.content_lists) =
            tree::content_fields(ids, |list| w.save_meta(BlobType::ChunkList, list))?;
        let tree = Tree { nodes: vec![node] }.encode()?;
        trees.push((w.save_meta(BlobType::Tree, &tree)?, n));
    }
    // Packs, then the index, then the snapshots: the commit order of a
    // backup.
    w.flush_packs()?;
    w.flush_index()?;
    let username = crate::sys::username();
    for (s, (tree, n)) in trees.into_iter().enumerate() {
        let time = jiff::Timestamp::from_second(now - (snapshots - s as u64) as i64 * 86_400)
            .map_err(|e| crate::error::Error::invalid(format!("snapshot time: {e}")))?;
        let snapshot = Snapshot {
            id: Id::default(),
            time: SnapshotTime::from_timestamp(time),
            tree,
            paths: vec!["/synthetic.bin".to_string()],
            hostname: "scale-bench".to_string(),
            username: username.clone(),
            tags: vec!["synthetic".to_string()],
            parent: None,
            source: SnapshotSource {
                kind: SourceKind::Stdin,
                stdin_filename: Some("synthetic.bin".to_string()),
                command: None,
                exit_status: None,
                dump: None,
                empty_allowed: false,
            },
            original: None,
            program_version: format!("cairn {} (benchgen)", env!("CARGO_PKG_VERSION")),
            summary: SnapshotSummary {
                total_files_processed: 1,
                total_bytes_processed: n * chunk_len.max(8) as u64,
                ..SnapshotSummary::default()
            },
            future_dated: false,
        };
        repo.save_snapshot(&snapshot)?;
        w.out.snapshots += 1;
    }
    w.out.chunks = made;
    Ok(w.out)
}

/// Writes a snapshot (tagged `deep`) of a directory chain `d/d/…/d`
/// nested `depth` deep with a file `deep.txt` at the bottom: the input a
/// modified client could store to crash tools that walk trees
/// recursively (`tests/hostile.rs`). Returns the snapshot's ID.
pub fn deep_tree(repo: &Repository, depth: usize) -> Result<Id> {
    let mut w = crate::repo::packer::BlobWriter::new(repo, false)?;
    let content: &[u8] = b"the bottom of a deep tree\n";
    let ids = w.save_chunks(&[content])?;
    let mut file = Node::new(std::ffi::OsStr::new("deep.txt"), NodeKind::File);
    file.mode = 0o644;
    file.size = content.len() as u64;
    (file.content, file.content_lists) = w.content_of(ids)?;
    let mut id = w.save_tree(&mut Tree { nodes: vec![file] })?;
    for _ in 0..depth {
        let mut dir = Node::new(std::ffi::OsStr::new("d"), NodeKind::Dir);
        dir.mode = 0o755;
        dir.subtree = Some(id);
        id = w.save_tree(&mut Tree { nodes: vec![dir] })?;
    }
    w.finish()?;
    let snapshot = Snapshot {
        id: Id::default(),
        time: SnapshotTime::now(),
        tree: id,
        paths: vec!["/d".to_string()],
        hostname: "deep".to_string(),
        username: crate::sys::username(),
        tags: vec!["deep".to_string()],
        parent: None,
        source: SnapshotSource {
            kind: SourceKind::Paths,
            stdin_filename: None,
            command: None,
            exit_status: None,
            dump: None,
            empty_allowed: false,
        },
        original: None,
        program_version: format!("cairn {} (benchgen)", env!("CARGO_PKG_VERSION")),
        summary: SnapshotSummary::default(),
        future_dated: false,
    };
    repo.save_snapshot(&snapshot)
}

/// Stores garbage under the IDs of the data blobs `ids`, in one new pack,
/// and indexes it: what a compromised write-only host can do to blobs it
/// sees in the index (`tests/hostile.rs`); `seed` varies the garbage.
/// Returns the new pack's ID.
pub fn plant_garbage(repo: &Repository, ids: &[Id], seed: u64) -> Result<Id> {
    store_garbage(repo, garbage_pack(repo, ids, seed)?)
}

/// Like [`plant_garbage`], but plants a garbage pack whose name sorts
/// before `name`: packs are made (and not stored) until one does, at most
/// `tries` of them. `None` when none did.
pub fn plant_garbage_before(
    repo: &Repository,
    ids: &[Id],
    name: &str,
    tries: u64,
) -> Result<Option<Id>> {
    for seed in 1..=tries {
        let pack = garbage_pack(repo, ids, seed)?;
        if pack.id.to_hex().as_str() < name {
            return store_garbage(repo, pack).map(Some);
        }
    }
    Ok(None)
}

/// A pack holding garbage under each of `ids`.
fn garbage_pack(repo: &Repository, ids: &[Id], seed: u64) -> Result<pack::FinishedPack> {
    let (keys, repo_id) = (repo.keys(), *repo.id());
    let mut w = PackWriter::new(keys, &repo_id)?;
    for (n, id) in ids.iter().enumerate() {
        let garbage = chunk_bytes((n as u64 ^ 0xbad).wrapping_add(seed << 32), 1024);
        w.add(&pack::encode_blob(
            keys,
            &repo_id,
            BlobType::Data,
            *id,
            &garbage,
            0,
        )?)?;
    }
    w.finish(keys, &repo_id)
}

/// Stores a pack and indexes it as a modified client would: without the
/// check that every blob opens to its ID.
fn store_garbage(repo: &Repository, pack: pack::FinishedPack) -> Result<Id> {
    let id = pack.id;
    repo.backend()
        .put(crate::backend::ObjectKind::Pack, &id.to_hex(), &pack.bytes)?;
    let record = IndexPack::live(id, pack.entries);
    repo.save_index_records(vec![record], crate::repo::packer::INDEX_FLUSH_BLOBS)?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_unique_and_sized() {
        let a = chunk_bytes(1, 64);
        assert_eq!(a.len(), 64);
        assert_ne!(a, chunk_bytes(2, 64));
        assert_eq!(chunk_bytes(3, 2).len(), 8);
    }
}
