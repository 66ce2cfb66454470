//! The local index cache: a redb database under the user's cache directory,
//! keyed by repository ID, built from the repository's index objects.
//!
//! It is only a cache. It records which index objects it was built from; on
//! every open it is compared with the repository's listing: new index
//! objects are added, and if any index object it knows has gone (prune), it
//! is rebuilt from scratch. Delete it at any time; it comes back.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use redb::{
    ConcurrencyMode, Database, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition,
};

use crate::error::{Error, ErrorKind, Result};
use crate::format::compress::Compression;
use crate::format::index::IndexPack;
use crate::format::pack::{BlobEntry, BlobType};
use crate::id::Id;

/// blob ID → pack ID (32) || type (1) || compression (1) || offset, length,
/// raw length (3 × u32 LE) || obsolete (1) || obsolete since (i64 LE) ||
/// a delta's base ID (32; zeros otherwise).
const BLOBS: TableDefinition<[u8; 32], [u8; LOCATION_LEN]> = TableDefinition::new("blobs");
const LOCATION_LEN: usize = 87;
/// Flags in byte 46 of a location: the pack is marked obsolete (the time
/// in 47..55)...
const OBSOLETE: u8 = 1;
/// ...the blob is sealed with its pack's session key.
const SESSION: u8 = 2;
/// Resemblance sketch feature → a data blob stored whole that has it
/// (`crate::chunk::sketch`): candidate bases for delta compression. Not built
/// from index objects (blob plaintexts are needed): filled as backups
/// store blobs, and checked against the index before use.
const SKETCHES: TableDefinition<u64, [u8; 32]> = TableDefinition::new("sketches");
/// index object ID → number of blobs it listed.
const INDEXES: TableDefinition<[u8; 32], u64> = TableDefinition::new("indexes");
/// "version" → layout version of this cache file.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// redb's page cache. Its default (1 GiB) let a full rebuild of a large
/// index take hundreds of MiB; the cache is read in runs, so a small page
/// cache costs little speed.
const CACHE_MEMORY: usize = 16 * 1024 * 1024;
/// Bump when the table layout changes; old caches are then rebuilt.
const CACHE_VERSION: u64 = 4;

/// Where a blob is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobLocation {
    /// The pack holding it.
    pub pack_id: Id,
    /// Its entry in that pack.
    pub entry: BlobEntry,
    /// When prune marked that pack obsolete, if it did (and the blob is in
    /// no pack in use).
    pub obsolete_since: Option<i64>,
}

fn encode_location(pack_id: &Id, e: &BlobEntry, obsolete_since: Option<i64>) -> [u8; LOCATION_LEN] {
    let mut v = [0u8; LOCATION_LEN];
    v[..32].copy_from_slice(pack_id.as_bytes());
    v[32] = e.blob_type as u8;
    v[33] = e.compression.byte();
    if let Some(base) = e.compression.base() {
        v[55..87].copy_from_slice(base.as_bytes());
    }
    v[34..38].copy_from_slice(&e.offset.to_le_bytes());
    v[38..42].copy_from_slice(&e.length.to_le_bytes());
    v[42..46].copy_from_slice(&e.raw_length.to_le_bytes());
    if let Some(since) = obsolete_since {
        v[46] = OBSOLETE;
        v[47..55].copy_from_slice(&since.to_le_bytes());
    }
    if e.session {
        v[46] |= SESSION;
    }
    v
}

fn decode_location(id: Id, v: &[u8; LOCATION_LEN]) -> Result<BlobLocation> {
    let u32_at = |at: usize| u32::from_le_bytes([v[at], v[at + 1], v[at + 2], v[at + 3]]);
    let compression = if v[33] == crate::format::compress::DELTA_BYTE {
        Compression::Delta(Id::from_slice(&v[55..87])?)
    } else {
        Compression::from_byte(v[33])?
    };
    Ok(BlobLocation {
        pack_id: Id::from_slice(&v[..32])?,
        entry: BlobEntry {
            id,
            blob_type: BlobType::from_byte(v[32])?,
            compression,
            offset: u32_at(34),
            length: u32_at(38),
            raw_length: u32_at(42),
            session: v[46] & SESSION != 0,
        },
        obsolete_since: (v[46] & OBSOLETE != 0).then(|| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&v[47..55]);
            i64::from_le_bytes(b)
        }),
    })
}

/// Records every blob of one index object and the object itself.
fn record_index(
    blobs: &mut redb::Table<[u8; 32], [u8; LOCATION_LEN]>,
    indexes: &mut redb::Table<[u8; 32], u64>,
    index_id: &Id,
    packs: &[IndexPack],
) -> Result<()> {
    let mut n = 0u64;
    for p in packs {
        for e in &p.blobs {
            insert_location(blobs, p, e)?;
            n += 1;
        }
    }
    indexes
        .insert(*index_id.as_bytes(), n)
        .map_err(|e| db_err("insert", e))?;
    Ok(())
}

/// Records `e` of pack `p` unless the blob already has a better location:
/// readers and deduplication prefer packs in use, then blobs a full key
/// sealed over those of a write-only key (which a full key never trusts
/// more than it must, `docs/design.md` §8.2), then blobs stored whole
/// over deltas (a delta's base must be stored whole, and whole blobs need
/// one read).
fn insert_location(
    blobs: &mut redb::Table<[u8; 32], [u8; LOCATION_LEN]>,
    p: &IndexPack,
    e: &BlobEntry,
) -> Result<()> {
    let rank = |obsolete: bool, session: bool, delta: bool| (obsolete, session, delta);
    let new = rank(
        p.obsolete_since.is_some(),
        e.session,
        e.compression.base().is_some(),
    );
    if new != rank(false, false, false) {
        let existing = blobs
            .get(*e.id.as_bytes())
            .map_err(|e| db_err("lookup", e))?
            .map(|v| {
                let v = v.value();
                rank(
                    v[46] & OBSOLETE != 0,
                    v[46] & SESSION != 0,
                    v[33] == crate::format::compress::DELTA_BYTE,
                )
            });
        if existing.is_some_and(|old| old < new) {
            return Ok(());
        }
    }
    blobs
        .insert(
            *e.id.as_bytes(),
            encode_location(&p.pack_id, e, p.obsolete_since),
        )
        .map_err(|e| db_err("insert", e))?;
    Ok(())
}

fn db_err(context: &str, e: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::LocalCache,
        format!("index cache: {context}: {e}"),
    )
}

/// What [`IndexCache::sync`] did.
#[derive(Debug, Default)]
pub struct SyncStats {
    /// Index objects read from the repository.
    pub loaded: usize,
    /// Whether the cache was dropped and rebuilt.
    pub rebuilt: bool,
    /// Index objects that could not be read. They are left out (their blobs
    /// look absent: a backup stores them again, a restore that needs them
    /// fails naming the blob) and retried at the next open.
    pub unreadable: Vec<Error>,
    /// Index objects deleted (by a prune) between listing and reading:
    /// the caller should list and sync again.
    pub vanished: usize,
}

/// The redb index cache of one repository.
pub struct IndexCache {
    db: Database,
    path: PathBuf,
    _temp: Option<tempfile::TempDir>,
    /// Kept in memory only (no room for a file, see [`IndexCache::in_memory`]).
    memory: bool,
}

/// Free space a file system must have for a cache to be kept on it: below
/// this, a command keeps its cache in memory rather than fail half way
/// when the disk fills (`docs/design.md` §7).
pub const MIN_FREE_SPACE: u64 = 64 * 1024 * 1024;

/// Bytes available to this user on the file system of `dir` (its nearest
/// existing ancestor), or `None` if that cannot be told.
pub fn free_space(dir: &Path) -> Option<u64> {
    let existing = dir.ancestors().find(|d| d.exists())?;
    let st = rustix::fs::statvfs(existing).ok()?;
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Is there [`MIN_FREE_SPACE`] on the file system of `dir`? `Err` names
/// how much there is when there is not.
pub fn check_room(dir: &Path) -> Result<()> {
    match free_space(dir) {
        Some(free) if free < MIN_FREE_SPACE => Err(Error::new(
            ErrorKind::NoSpace,
            format!(
                "only {} KiB free on the file system of {}",
                free / 1024,
                dir.display()
            ),
        )),
        _ => Ok(()),
    }
}

impl IndexCache {
    /// Opens (or creates) the cache file at `path`. A cache that cannot be
    /// opened because it is damaged is deleted and created anew.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::io(format!("creating cache directory {}", dir.display()), e))?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
            }
        }
        let open = || {
            Database::builder()
                .set_concurrency_mode(ConcurrencyMode::MultiWriter)
                .set_cache_size(CACHE_MEMORY)
                .create(path)
        };
        let db = match open() {
            Ok(db) => db,
            Err(redb::DatabaseError::Storage(redb::StorageError::Io(e)))
                if !matches!(
                    e.kind(),
                    std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
                ) =>
            {
                return Err(Error::io(
                    format!("opening index cache {}", path.display()),
                    e,
                ))
            }
            Err(_) => {
                // Damaged or from an incompatible redb: it is only a cache.
                std::fs::remove_file(path).map_err(|e| {
                    Error::io(
                        format!("removing damaged index cache {}", path.display()),
                        e,
                    )
                })?;
                open().map_err(|e| db_err("creating", e))?
            }
        };
        let cache = IndexCache {
            db,
            path: path.to_path_buf(),
            _temp: None,
            memory: false,
        };
        cache.init_tables()?;
        Ok(cache)
    }

    /// A cache held in memory only, for when no file system has room for
    /// one: every command then reads all index objects, but none fails
    /// because a disk it does not write backups to is full.
    pub fn in_memory() -> Result<Self> {
        let db = Database::builder()
            .set_cache_size(CACHE_MEMORY)
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(|e| db_err("creating in memory", e))?;
        let cache = IndexCache {
            db,
            path: PathBuf::from("(in memory)"),
            _temp: None,
            memory: true,
        };
        cache.init_tables()?;
        Ok(cache)
    }

    /// A cache in a temporary directory, removed when dropped (`--no-cache`).
    /// When the temporary directory's file system has no room for one, the
    /// cache is kept in memory instead ([`IndexCache::in_memory`]).
    pub fn temporary() -> Result<Self> {
        let on_disk = || -> Result<Self> {
            check_room(&std::env::temp_dir())?;
            let dir = tempfile::tempdir().map_err(|e| Error::io("creating temporary cache", e))?;
            let mut cache = IndexCache::open(&dir.path().join("index.redb"))?;
            cache._temp = Some(dir);
            Ok(cache)
        };
        on_disk().or_else(|_| IndexCache::in_memory())
    }

    /// The file backing this cache.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Is this a throw-away cache (`--no-cache`, or one built by `check`)?
    pub fn is_temporary(&self) -> bool {
        self._temp.is_some() || self.memory
    }

    /// Is this cache kept in memory only?
    pub fn is_in_memory(&self) -> bool {
        self.memory
    }

    /// Empties the cache, so that the next sync rebuilds it from the
    /// repository.
    pub fn reset(&self) -> Result<()> {
        let tx = self.db.begin_write().map_err(|e| db_err("begin", e))?;
        tx.delete_table(BLOBS).map_err(|e| db_err("reset", e))?;
        tx.delete_table(INDEXES).map_err(|e| db_err("reset", e))?;
        tx.open_table(BLOBS).map_err(|e| db_err("blobs", e))?;
        tx.open_table(INDEXES).map_err(|e| db_err("indexes", e))?;
        tx.commit().map_err(|e| db_err("commit", e))
    }

    /// Whether the tables exist at this layout version: then opening needs
    /// no write transaction (each costs a few fsyncs).
    fn tables_ready(&self) -> bool {
        let Ok(tx) = self.db.begin_read() else {
            return false;
        };
        let version = tx
            .open_table(META)
            .ok()
            .and_then(|meta| meta.get("version").ok().flatten().map(|v| v.value()));
        version == Some(CACHE_VERSION)
            && tx.open_table(BLOBS).is_ok()
            && tx.open_table(INDEXES).is_ok()
            && tx.open_table(SKETCHES).is_ok()
    }

    fn init_tables(&self) -> Result<()> {
        if self.tables_ready() {
            return Ok(());
        }
        let tx = self.db.begin_write().map_err(|e| db_err("begin", e))?;
        {
            let meta = tx.open_table(META).map_err(|e| db_err("meta", e))?;
            let version = meta
                .get("version")
                .map_err(|e| db_err("meta", e))?
                .map(|v| v.value());
            if version != Some(CACHE_VERSION) {
                drop(meta);
                tx.delete_table(BLOBS).map_err(|e| db_err("reset", e))?;
                tx.delete_table(INDEXES).map_err(|e| db_err("reset", e))?;
                tx.delete_table(SKETCHES).map_err(|e| db_err("reset", e))?;
                let mut meta = tx.open_table(META).map_err(|e| db_err("meta", e))?;
                meta.insert("version", CACHE_VERSION)
                    .map_err(|e| db_err("meta", e))?;
            }
            tx.open_table(BLOBS).map_err(|e| db_err("blobs", e))?;
            tx.open_table(INDEXES).map_err(|e| db_err("indexes", e))?;
            tx.open_table(SKETCHES).map_err(|e| db_err("sketches", e))?;
        }
        tx.commit().map_err(|e| db_err("commit", e))
    }

    /// Records that the data blobs `ids[i]`, stored whole, have sketch
    /// features `features[i]` (a later blob with a feature replaces an
    /// earlier one: the newest is the likeliest base).
    pub fn add_sketches(&self, sketches: &[(Id, [u64; 3])]) -> Result<()> {
        if sketches.is_empty() {
            return Ok(());
        }
        // In key order: about twice as fast as random order into the tree.
        let mut rows: Vec<(u64, &Id)> = sketches
            .iter()
            .flat_map(|(id, features)| features.iter().map(move |f| (*f, id)))
            .collect();
        rows.sort_unstable_by_key(|(f, _)| *f);
        let tx = self.db.begin_write().map_err(|e| db_err("begin", e))?;
        {
            let mut table = tx.open_table(SKETCHES).map_err(|e| db_err("sketches", e))?;
            for (f, id) in rows {
                table
                    .insert(f, *id.as_bytes())
                    .map_err(|e| db_err("sketches", e))?;
            }
        }
        tx.commit().map_err(|e| db_err("commit", e))
    }

    /// Number of sketch features recorded.
    pub fn sketch_count(&self) -> Result<u64> {
        let tx = self.db.begin_read().map_err(|e| db_err("begin", e))?;
        let table = tx.open_table(SKETCHES).map_err(|e| db_err("sketches", e))?;
        table.len().map_err(|e| db_err("sketches", e))
    }

    /// A read view of the sketch features.
    pub fn sketch_reader(&self) -> Result<SketchReader> {
        let tx = self.db.begin_read().map_err(|e| db_err("begin", e))?;
        let table = tx.open_table(SKETCHES).map_err(|e| db_err("sketches", e))?;
        Ok(SketchReader { table })
    }

    /// The index object IDs this cache was built from.
    pub fn known_indexes(&self) -> Result<HashSet<Id>> {
        let tx = self.db.begin_read().map_err(|e| db_err("begin", e))?;
        let table = tx.open_table(INDEXES).map_err(|e| db_err("indexes", e))?;
        let mut out = HashSet::new();
        for row in table.iter().map_err(|e| db_err("indexes", e))? {
            let (k, _) = row.map_err(|e| db_err("indexes", e))?;
            out.insert(Id::from_bytes(k.value()));
        }
        Ok(out)
    }

    /// Brings the cache in line with the repository's index objects, in
    /// one write transaction: a concurrent reader sees the old cache or the
    /// new one, never a half-built one. `load` reads and decodes one index
    /// object.
    pub fn sync<F>(&self, repo_indexes: &[Id], load: F) -> Result<SyncStats>
    where
        F: Fn(&Id) -> Result<Vec<IndexPack>> + Sync,
    {
        let known = self.known_indexes()?;
        let wanted: HashSet<Id> = repo_indexes.iter().copied().collect();
        let mut stats = SyncStats {
            rebuilt: known.iter().any(|k| !wanted.contains(k)),
            ..SyncStats::default()
        };
        let missing: Vec<Id> = repo_indexes
            .iter()
            .filter(|id| stats.rebuilt || !known.contains(id))
            .copied()
            .collect();
        if missing.is_empty() && !stats.rebuilt {
            return Ok(stats);
        }
        let tx = self.db.begin_write().map_err(|e| db_err("begin", e))?;
        if stats.rebuilt {
            tx.delete_table(BLOBS).map_err(|e| db_err("clear", e))?;
            tx.delete_table(INDEXES).map_err(|e| db_err("clear", e))?;
        }
        {
            let mut blobs = tx.open_table(BLOBS).map_err(|e| db_err("blobs", e))?;
            let mut indexes = tx.open_table(INDEXES).map_err(|e| db_err("indexes", e))?;
            // Bounded batches keep memory flat on large repositories.
            for batch in missing.chunks(16) {
                let loaded: Vec<(Id, Result<Vec<IndexPack>>)> =
                    batch.par_iter().map(|id| (*id, load(id))).collect();
                for (id, packs) in loaded {
                    let packs = match packs {
                        Ok(p) => p,
                        Err(e) if e.kind() == ErrorKind::MissingObject => {
                            stats.vanished += 1;
                            continue;
                        }
                        Err(e) => {
                            stats.unreadable.push(e);
                            continue;
                        }
                    };
                    record_index(&mut blobs, &mut indexes, &id, &packs)?;
                    stats.loaded += 1;
                }
            }
        }
        tx.commit().map_err(|e| db_err("commit", e))?;
        Ok(stats)
    }

    /// Records the contents of one index object, atomically.
    pub fn add_index(&self, index_id: &Id, packs: &[IndexPack]) -> Result<()> {
        let tx = self.db.begin_write().map_err(|e| db_err("begin", e))?;
        {
            let mut blobs = tx.open_table(BLOBS).map_err(|e| db_err("blobs", e))?;
            let mut indexes = tx.open_table(INDEXES).map_err(|e| db_err("indexes", e))?;
            record_index(&mut blobs, &mut indexes, index_id, packs)?;
        }
        tx.commit().map_err(|e| db_err("commit", e))
    }

    /// A consistent read view for many lookups.
    pub fn reader(&self) -> Result<CacheReader> {
        let tx = self.db.begin_read().map_err(|e| db_err("begin", e))?;
        let table = tx.open_table(BLOBS).map_err(|e| db_err("blobs", e))?;
        Ok(CacheReader {
            table,
            session_live: false,
        })
    }
}

/// How a cache differs from one built afresh from the repository.
#[derive(Debug, Default)]
pub struct CacheComparison {
    /// Blobs the cache knows and the repository's index does not.
    pub extra: u64,
    /// Blobs the repository's index has and the cache lacks.
    pub missing: u64,
    /// Blobs both know, at different places.
    pub different: u64,
    /// Some of the differing blobs: ID, place in the cache, place in the
    /// repository's index.
    pub samples: Vec<(Id, Option<BlobLocation>, Option<BlobLocation>)>,
}

/// Lookups of sketch features.
pub struct SketchReader {
    table: redb::ReadOnlyTable<u64, [u8; 32]>,
}

impl SketchReader {
    /// The blobs recorded for `features`, without repeats: those recorded
    /// for more of the features first (the most similar), then in feature
    /// order.
    pub fn candidates(&self, features: &[u64; 3]) -> Result<Vec<Id>> {
        let mut out: Vec<(Id, usize)> = Vec::with_capacity(3);
        for f in features {
            if let Some(v) = self.table.get(*f).map_err(|e| db_err("sketches", e))? {
                let id = Id::from_bytes(v.value());
                match out.iter_mut().find(|(c, _)| *c == id) {
                    Some((_, n)) => *n += 1,
                    None => out.push((id, 1)),
                }
            }
        }
        out.sort_by_key(|c| std::cmp::Reverse(c.1));
        Ok(out.into_iter().map(|(id, _)| id).collect())
    }
}

/// How a live blob is stored ([`CacheReader::live`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveCopy {
    /// Whole.
    Whole,
    /// As a delta: a writer that deduplicates against it relies on its
    /// base too.
    Delta {
        /// The blob the delta is against.
        base: Id,
    },
}

impl LiveCopy {
    /// The base of a delta.
    pub fn base(self) -> Option<Id> {
        match self {
            LiveCopy::Whole => None,
            LiveCopy::Delta { base } => Some(base),
        }
    }
}

/// Lookups against one snapshot of the cache.
pub struct CacheReader {
    table: redb::ReadOnlyTable<[u8; 32], [u8; LOCATION_LEN]>,
    /// Deduplicate against blobs of write-only keys too.
    session_live: bool,
}

impl CacheReader {
    /// Whether [`Self::live`] counts blobs sealed with a write-only key's
    /// session key: not for a full key (a writer could list anything there,
    /// `docs/design.md` §8.2), yes for a write-only key.
    pub fn with_session_blobs(mut self, yes: bool) -> Self {
        self.session_live = yes;
        self
    }

    /// Where blob `id` is, if indexed.
    pub fn get(&self, id: &Id) -> Result<Option<BlobLocation>> {
        match self
            .table
            .get(*id.as_bytes())
            .map_err(|e| db_err("lookup", e))?
        {
            Some(v) => decode_location(*id, &v.value()).map(Some),
            None => Ok(None),
        }
    }

    /// Is blob `id` indexed in a pack in use? (Deduplication may only rely
    /// on those: an obsolete pack may be deleted.) A delta counts only if
    /// its base is in a pack in use too, stored whole.
    pub fn contains_live(&self, id: &Id) -> Result<bool> {
        Ok(self.live(id)?.is_some())
    }

    /// [`Self::contains_live`], saying what a writer that deduplicates
    /// against the blob relies on; `None` when the blob is not live.
    pub fn live(&self, id: &Id) -> Result<Option<LiveCopy>> {
        let Some(v) = self
            .table
            .get(*id.as_bytes())
            .map_err(|e| db_err("lookup", e))?
        else {
            return Ok(None);
        };
        let v = v.value();
        let untrusted = |flags: u8| flags & SESSION != 0 && !self.session_live;
        if v[46] & OBSOLETE != 0 || untrusted(v[46]) {
            return Ok(None);
        }
        if v[33] != crate::format::compress::DELTA_BYTE {
            return Ok(Some(LiveCopy::Whole));
        }
        let base = Id::from_slice(&v[55..87])?;
        let base_whole_and_live = self
            .table
            .get(*base.as_bytes())
            .map_err(|e| db_err("lookup", e))?
            .is_some_and(|b| {
                let b = b.value();
                b[46] & OBSOLETE == 0
                    && !untrusted(b[46])
                    && b[33] != crate::format::compress::DELTA_BYTE
            });
        Ok(base_whole_and_live.then_some(LiveCopy::Delta { base }))
    }

    /// Compares this view with `truth`, one lookup per blob of either.
    /// Entries that differ are returned (at most `limit` of them; all are
    /// counted) for the caller to judge: two live copies of one blob are
    /// both valid, and two caches built in a different order may pick
    /// different ones.
    pub fn compare(&self, truth: &CacheReader, limit: usize) -> Result<CacheComparison> {
        let mut cmp = CacheComparison::default();
        let mut common = 0u64;
        for row in self.table.iter().map_err(|e| db_err("scan", e))? {
            let (k, v) = row.map_err(|e| db_err("scan", e))?;
            let id = Id::from_bytes(k.value());
            let mine = decode_location(id, &v.value())?;
            match truth.get(&id)? {
                None => {
                    cmp.extra += 1;
                    if cmp.samples.len() < limit {
                        cmp.samples.push((id, Some(mine), None));
                    }
                }
                Some(t) => {
                    common += 1;
                    if t != mine {
                        cmp.different += 1;
                        if cmp.samples.len() < limit {
                            cmp.samples.push((id, Some(mine), Some(t)));
                        }
                    }
                }
            }
        }
        cmp.missing = truth.len()?.saturating_sub(common);
        Ok(cmp)
    }

    /// Number of indexed blobs.
    pub fn len(&self) -> Result<u64> {
        self.table.len().map_err(|e| db_err("len", e))
    }

    /// No blobs indexed?
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack(n: u8) -> IndexPack {
        IndexPack {
            pack_id: Id::from_bytes([n; 32]),
            obsolete_since: None,
            blobs: vec![BlobEntry {
                id: Id::from_bytes([n + 100; 32]),
                blob_type: BlobType::Data,
                compression: Compression::Zstd,
                offset: 8,
                length: 64,
                raw_length: 100,
                session: false,
            }],
        }
    }

    #[test]
    fn sync_adds_and_rebuilds() -> Result<()> {
        let cache = IndexCache::temporary()?;
        let (a, b) = (Id::from_bytes([1; 32]), Id::from_bytes([2; 32]));
        let load = |id: &Id| Ok(vec![pack(id.as_bytes()[0])]);
        let s = cache.sync(&[a, b], load)?;
        assert_eq!((s.loaded, s.rebuilt), (2, false));
        assert!(s.unreadable.is_empty());
        let r = cache.reader()?;
        assert_eq!(r.len()?, 2);
        let loc = r.get(&Id::from_bytes([101; 32]))?;
        assert_eq!(loc.map(|l| l.pack_id), Some(Id::from_bytes([1; 32])));
        // Nothing new: nothing loaded.
        assert_eq!(cache.sync(&[a, b], load)?.loaded, 0);
        // Index `a` disappeared (prune): rebuilt from what is left.
        let s = cache.sync(&[b], load)?;
        assert_eq!((s.loaded, s.rebuilt), (1, true));
        assert!(!cache.reader()?.contains_live(&Id::from_bytes([101; 32]))?);
        assert!(cache.reader()?.contains_live(&Id::from_bytes([102; 32]))?);
        Ok(())
    }

    #[test]
    fn packs_in_use_win_over_obsolete_ones() -> Result<()> {
        let cache = IndexCache::temporary()?;
        let live = pack(1);
        let mut obsolete = pack(2);
        obsolete.blobs = live.blobs.clone();
        obsolete.obsolete_since = Some(1_800_000_000);
        let blob = live.blobs[0].id;
        // Obsolete first, then in use: the pack in use wins...
        cache.add_index(&Id::from_bytes([9; 32]), std::slice::from_ref(&obsolete))?;
        assert!(!cache.reader()?.contains_live(&blob)?);
        assert_eq!(
            cache.reader()?.get(&blob)?.and_then(|l| l.obsolete_since),
            Some(1_800_000_000)
        );
        cache.add_index(&Id::from_bytes([8; 32]), std::slice::from_ref(&live))?;
        assert!(cache.reader()?.contains_live(&blob)?);
        // ...and keeps winning when another obsolete copy arrives.
        cache.add_index(&Id::from_bytes([7; 32]), &[obsolete])?;
        let loc = cache.reader()?.get(&blob)?;
        assert_eq!(
            loc.map(|l| (l.pack_id, l.obsolete_since)),
            Some((live.pack_id, None))
        );
        Ok(())
    }

    #[test]
    fn a_full_keys_copy_wins_over_a_write_only_keys_and_only_writers_dedup_against_theirs(
    ) -> Result<()> {
        for full_first in [true, false] {
            let cache = IndexCache::temporary()?;
            let full = pack(1);
            let mut writer = pack(2);
            writer.blobs[0].id = full.blobs[0].id;
            writer.blobs[0].session = true;
            writer.blobs[0].offset = 112;
            let blob = full.blobs[0].id;
            let (first, second) = match full_first {
                true => (&full, &writer),
                false => (&writer, &full),
            };
            cache.add_index(&Id::from_bytes([9; 32]), std::slice::from_ref(first))?;
            cache.add_index(&Id::from_bytes([8; 32]), std::slice::from_ref(second))?;
            let loc = cache.reader()?.get(&blob)?;
            assert_eq!(loc.map(|l| l.pack_id), Some(full.pack_id));
        }
        // A blob only a writer lists: read from there, deduplicated against
        // by writers only.
        let cache = IndexCache::temporary()?;
        let mut writer = pack(3);
        writer.blobs[0].session = true;
        let blob = writer.blobs[0].id;
        cache.add_index(&Id::from_bytes([7; 32]), &[writer])?;
        let loc = cache.reader()?.get(&blob)?;
        assert_eq!(loc.map(|l| l.entry.session), Some(true));
        assert!(!cache.reader()?.contains_live(&blob)?);
        assert!(cache
            .reader()?
            .with_session_blobs(true)
            .contains_live(&blob)?);
        Ok(())
    }

    #[test]
    fn unreadable_index_is_skipped_and_retried() -> Result<()> {
        let cache = IndexCache::temporary()?;
        let (a, b) = (Id::from_bytes([1; 32]), Id::from_bytes([2; 32]));
        let flaky = |id: &Id| {
            if *id == b {
                Err(Error::corrupt("index 02: bad tag"))
            } else {
                Ok(vec![pack(id.as_bytes()[0])])
            }
        };
        let s = cache.sync(&[a, b], flaky)?;
        assert_eq!((s.loaded, s.unreadable.len()), (1, 1));
        assert!(cache.reader()?.contains_live(&Id::from_bytes([101; 32]))?);
        // Repaired later: picked up at the next sync.
        let s = cache.sync(&[a, b], |id: &Id| Ok(vec![pack(id.as_bytes()[0])]))?;
        assert_eq!((s.loaded, s.rebuilt), (1, false));
        assert!(cache.reader()?.contains_live(&Id::from_bytes([102; 32]))?);
        Ok(())
    }

    #[test]
    fn damaged_cache_file_is_replaced() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let path = dir.path().join("index.redb");
        std::fs::write(&path, b"this is not a redb file at all, just junk bytes")
            .map_err(|e| Error::io("write", e))?;
        let cache = IndexCache::open(&path)?;
        assert!(cache.reader()?.is_empty()?);
        Ok(())
    }
}
