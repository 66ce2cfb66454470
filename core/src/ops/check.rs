//! `check`: proves, without trusting the local cache, that the repository
//! is whole and every snapshot can be restored, and names what is broken
//! and which snapshots it affects.
//!
//! Phases, each over the repository's own objects:
//! 1. key files: name = hash, header, KDF bounds, sealed description;
//! 2. index objects: read and decoded one by one into a fresh temporary
//!    index (the user's cache is only compared with it at the end);
//! 3. packs: every indexed pack exists with the size its entries imply and a
//!    trailer that lists exactly those entries; with `--read-data` the
//!    chosen packs are read whole, hashed against their names, and every
//!    blob is decrypted and hashed against its ID;
//! 4. snapshots: every snapshot decodes, and everything it references
//!    (trees, chunk lists, data) is indexed in a pack that is not broken,
//!    with file sizes that add up. Trees and chunk lists are read and
//!    verified; each is walked once however many snapshots share it.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use rayon::prelude::*;
use serde::Serialize;

use crate::backend::ObjectKind;
use crate::crypto::Keys;
use crate::error::{Error, ErrorKind, Result};
use crate::format::index::IndexPack;
use crate::format::keyfile;
use crate::format::pack::{self, BlobType};
use crate::format::tree::{self, NodeKind};
use crate::id::Id;
use crate::repo::cache::{CacheReader, IndexCache};
use crate::repo::commit::MIN_UNINDEXED_AGE;
use crate::repo::repository::{verify_name, Repository, SnapshotList};
use crate::repo::walker;
use crate::sys::lock;

/// Which packs `--read-data-subset` reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DataSubset {
    /// Every pack.
    All,
    /// Group `n` of `m` (1-based): packs whose ID falls in that group.
    /// Running `1/m` … `m/m` on successive nights reads every pack once.
    Slice {
        /// The group, 1 ≤ n ≤ m.
        n: u64,
        /// Number of groups.
        m: u64,
    },
    /// A random share of the packs (0 < f ≤ 1).
    Fraction(f64),
    /// Random packs until this many bytes are chosen.
    Bytes(u64),
}

impl FromStr for DataSubset {
    type Err = Error;

    /// `n/m`, `x%` or a size (`500M`, `10G`), as restic's
    /// `--read-data-subset`.
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        let bad = || {
            Error::invalid(format!(
                "invalid subset {s:?}: use n/m (e.g. 2/7), a percentage (e.g. 10%) or a size (e.g. 50G)"
            ))
        };
        if let Some((n, m)) = s.split_once('/') {
            let n: u64 = n.trim().parse().map_err(|_| bad())?;
            let m: u64 = m.trim().parse().map_err(|_| bad())?;
            if n == 0 || m == 0 || n > m {
                return Err(Error::invalid(format!(
                    "invalid subset {s:?}: n/m needs 1 <= n <= m"
                )));
            }
            return Ok(DataSubset::Slice { n, m });
        }
        if let Some(p) = s.strip_suffix('%') {
            let p: f64 = p.trim().parse().map_err(|_| bad())?;
            if !(p > 0.0 && p <= 100.0) {
                return Err(Error::invalid(format!(
                    "invalid subset {s:?}: the percentage must be above 0 and at most 100"
                )));
            }
            return Ok(DataSubset::Fraction(p / 100.0));
        }
        let bytes = crate::units::parse_size(s).map_err(|_| bad())?;
        if bytes == 0 {
            return Err(bad());
        }
        Ok(DataSubset::Bytes(bytes))
    }
}

/// What to check.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct CheckOptions {
    /// Read (part of) the pack data too.
    pub read_data: Option<DataSubset>,
}

/// What kind of object a problem is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// A key file is damaged.
    Key,
    /// An index object cannot be read, or index objects disagree.
    Index,
    /// A pack the index lists is not stored.
    MissingPack,
    /// A pack is damaged: wrong size, bad trailer, contents that do not
    /// match its name, or blobs that do not decrypt.
    Pack,
    /// A snapshot object cannot be read.
    Snapshot,
    /// A tree or chunk list a snapshot needs cannot be read or is wrong.
    Tree,
    /// A blob a snapshot needs is in no index (or has the wrong type).
    Blob,
    /// An archived WAL record cannot be read.
    Wal,
    /// WAL segments are missing between the oldest base backup and the
    /// newest archived segment: point-in-time recovery cannot pass them.
    WalGap,
    /// A restore drill record cannot be read.
    Drill,
}

/// One thing that is wrong.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// What kind of object.
    pub kind: ProblemKind,
    /// Its name (object or blob ID in hex), or empty.
    pub id: String,
    /// One line saying what is wrong.
    pub message: String,
    /// Snapshots that cannot be fully restored because of it (hex IDs).
    pub snapshots: Vec<String>,
}

/// Counts of what was checked.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckStats {
    /// Key files.
    pub keys: usize,
    /// Index objects.
    pub index_objects: usize,
    /// Packs stored.
    pub packs: usize,
    /// Bytes of packs stored.
    pub pack_bytes: u64,
    /// Blobs indexed.
    pub blobs: u64,
    /// Packs stored but in no index.
    pub unindexed_packs: usize,
    /// Snapshots.
    pub snapshots: usize,
    /// Archived WAL files.
    pub wal_files: usize,
    /// Restore drill records.
    pub drills: usize,
    /// Distinct trees walked.
    pub trees: usize,
    /// Packs read whole (`--read-data`).
    pub packs_read: usize,
    /// Bytes read whole.
    pub bytes_read: u64,
    /// Blobs decrypted and verified.
    pub blobs_verified: u64,
}

/// The outcome of a check.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    /// Everything wrong: empty means the repository is whole.
    pub problems: Vec<Problem>,
    /// Things worth knowing that are not damage.
    pub warnings: Vec<String>,
    /// Snapshots that cannot be fully restored (hex IDs, oldest first).
    pub damaged_snapshots: Vec<String>,
    /// WAL files that cannot be fully fetched (their names).
    pub damaged_wal: Vec<String>,
    /// What was looked at.
    pub stats: CheckStats,
}

impl CheckReport {
    /// No problems found?
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Progress of a check: phases with a count of steps.
pub trait CheckProgress: Sync {
    /// A phase begins with `total` steps (bytes when `bytes` is true).
    fn phase(&self, _name: &str, _total: u64, _bytes: bool) {}
    /// `n` more steps done.
    fn advance(&self, _n: u64) {}
}

/// Reports nothing.
pub struct NoCheckProgress;
impl CheckProgress for NoCheckProgress {}

/// What reading one pack whole found.
#[derive(Default)]
struct PackRead {
    /// Its damage, if any.
    finding: Option<PackFinding>,
    /// Blobs verified.
    verified: u64,
    /// Deltas in a pack in use left unverified: their base is not there.
    baseless: u64,
}

/// What the index says one pack must be.
struct ExpectedPack {
    size: Option<u64>,
    digest: [u8; 32],
    blobs: usize,
    live: bool,
}

/// An index object read: its ID and records.
type LoadedIndex = Result<(Id, Vec<IndexPack>)>;

/// A referenced blob's state: fine, or broken by problem `n`.
type Culprits = Vec<usize>;

struct Checker<'a> {
    repo: &'a Repository,
    progress: &'a dyn CheckProgress,
    cancel: &'a AtomicBool,
    report: CheckReport,
    /// Packs found broken or missing → their problem.
    bad_packs: HashMap<Id, usize>,
    /// Blobs found broken by reading data → their problem.
    bad_blobs: HashMap<(Id, Id), usize>,
    /// Problem per blob that is referenced but not indexed.
    unindexed_blobs: HashMap<Id, usize>,
    /// Trees and chunk lists walked → the problems under them.
    walked: HashMap<Id, Culprits>,
    /// Snapshots affected, per problem.
    affected: HashMap<usize, BTreeSet<String>>,
    /// The first read that failed for a passing reason (storage
    /// unreachable, disk full): the check then fails instead of reporting
    /// damage that is not there.
    passing: Mutex<Option<Error>>,
    /// Packs marked obsolete that are no longer stored.
    gone_obsolete: HashSet<Id>,
    /// Byte counts of the chunk lists walked.
    list_sizes: HashMap<Id, u64>,
    /// Referenced blobs found only in packs prune has marked obsolete.
    in_obsolete: u64,
}

/// Checks the repository; see the module documentation. Returns an error
/// only when the check itself cannot go on (storage unreachable, Ctrl-C);
/// damage is reported in [`CheckReport::problems`].
pub fn check(
    repo: &Repository,
    opts: &CheckOptions,
    progress: &dyn CheckProgress,
    cancel: &AtomicBool,
) -> Result<CheckReport> {
    let mut c = Checker {
        repo,
        progress,
        cancel,
        report: CheckReport::default(),
        bad_packs: HashMap::new(),
        bad_blobs: HashMap::new(),
        unindexed_blobs: HashMap::new(),
        walked: HashMap::new(),
        affected: HashMap::new(),
        list_sizes: HashMap::new(),
        gone_obsolete: HashSet::new(),
        in_obsolete: 0,
        passing: Mutex::new(None),
    };
    c.check_keys()?;
    // Snapshots before the index, as prune reads them (docs/design.md §6.2): a snapshot
    // is written after its index objects, so everything a listed snapshot
    // needs is in an index object read below, even if a backup commits
    // meanwhile.
    let snapshots = repo.load_snapshots()?;
    let wal = crate::repo::wal_record::load(repo)?;
    let fresh = IndexCache::temporary()?;
    let expected = c.check_index(&fresh)?;
    let index = fresh.reader()?;
    c.report.stats.blobs = index.len()?;
    c.check_packs(&index, &expected, opts.read_data)?;
    c.check_archive_gaps(&snapshots, &wal);
    c.check_snapshots(&index, snapshots)?;
    c.check_wal(&index, wal)?;
    c.check_drills()?;
    if c.in_obsolete > 0 {
        c.report.warnings.push(format!(
            "{} referenced blobs are only in packs prune marked unused; the next prune keeps them",
            c.in_obsolete
        ));
    }
    if let Some(e) = lock(&c.passing).take() {
        return Err(e.context("check could not read the repository"));
    }
    compare_user_cache(repo, &index, &mut c.report)?;
    let mut report = c.report;
    for (n, snaps) in c.affected {
        if let Some(p) = report.problems.get_mut(n) {
            p.snapshots = snaps.into_iter().collect();
        }
    }
    Ok(report)
}

impl Checker<'_> {
    fn problem(&mut self, kind: ProblemKind, id: impl Into<String>, message: String) -> usize {
        self.report.problems.push(Problem {
            kind,
            id: id.into(),
            message,
            snapshots: Vec::new(),
        });
        self.report.problems.len() - 1
    }

    /// Remembers `e` if it is not damage; passes it on.
    fn note<'e>(&self, e: &'e Error) -> &'e Error {
        if e.kind().is_passing() {
            lock(&self.passing).get_or_insert_with(|| Error::new(e.kind(), e.to_string()));
        }
        e
    }

    fn cancelled(&self) -> Result<()> {
        if self.cancel.load(Ordering::SeqCst) {
            return Err(Error::interrupted());
        }
        Ok(())
    }

    fn check_keys(&mut self) -> Result<()> {
        let backend = self.repo.backend();
        let keys = backend.list(ObjectKind::Key)?;
        self.report.stats.keys = keys.len();
        for info in keys {
            let what = format!("key {}", info.name);
            let bytes = backend.get(ObjectKind::Key, &info.name).and_then(|bytes| {
                verify_name(ObjectKind::Key, &info.name, &bytes)?;
                keyfile::kdf_params(&bytes, &what)?;
                Ok(bytes)
            });
            let bytes = match bytes {
                Ok(b) => b,
                Err(e) if e.kind() == ErrorKind::MissingObject => continue,
                Err(e) => {
                    self.note(&e);
                    self.problem(ProblemKind::Key, info.name.clone(), e.to_string());
                    continue;
                }
            };
            // Its bytes are what was written (the name matched), yet it
            // does not open with this repository's keys: not damage, but a
            // key file of another master key, e.g. left by an init that
            // crashed before writing `config`.
            if let Err(e) = keyfile::info(&bytes, self.repo.id(), self.repo.keys(), &what) {
                self.report.warnings.push(format!(
                    "{e}: key {} belongs to another repository or master key (left by an interrupted init?); it is never used and can be deleted",
                    info.name
                ));
            }
        }
        Ok(())
    }

    /// Reads every index object into `fresh`; returns what each indexed
    /// pack must look like.
    fn check_index(&mut self, fresh: &IndexCache) -> Result<HashMap<Id, ExpectedPack>> {
        let mut expected: HashMap<Id, ExpectedPack> = HashMap::new();
        let mut disagreeing: BTreeSet<Id> = BTreeSet::new();
        let mut done: HashSet<String> = HashSet::new();
        // A prune that replaces index objects while they are read writes
        // their successors first: list again (a few times) until nothing
        // listed has vanished.
        for _ in 0..5 {
            let names: Vec<_> = self
                .repo
                .backend()
                .list(ObjectKind::Index)?
                .into_iter()
                .filter(|o| !done.contains(&o.name))
                .collect();
            if names.is_empty() {
                break;
            }
            self.progress.phase("index", names.len() as u64, false);
            let vanished =
                self.read_index_objects(&names, fresh, &mut expected, &mut disagreeing, &mut done)?;
            if !vanished {
                break;
            }
        }
        self.report.stats.index_objects = done.len();
        for pack_id in disagreeing {
            let n = self.problem(
                ProblemKind::Index,
                pack_id.to_hex(),
                format!("index objects list different blobs for pack {pack_id}"),
            );
            self.bad_packs.insert(pack_id, n);
        }
        Ok(expected)
    }

    /// Reads one listing's worth of index objects; returns whether any had
    /// vanished (replaced by a prune meanwhile).
    fn read_index_objects(
        &mut self,
        names: &[crate::backend::ObjectInfo],
        fresh: &IndexCache,
        expected: &mut HashMap<Id, ExpectedPack>,
        disagreeing: &mut BTreeSet<Id>,
        done: &mut HashSet<String>,
    ) -> Result<bool> {
        let mut vanished = false;
        for batch in names.chunks(16) {
            self.cancelled()?;
            let loaded: Vec<(String, LoadedIndex)> = batch
                .par_iter()
                .map(|o| {
                    let r = Id::parse(&o.name)
                        .and_then(|id| self.repo.load_index(&id).map(|p| (id, p)));
                    (o.name.clone(), r)
                })
                .collect();
            for (name, r) in loaded {
                self.progress.advance(1);
                let (id, packs) = match r {
                    Ok(v) => v,
                    // Replaced by a prune since the listing.
                    Err(e) if e.kind() == ErrorKind::MissingObject => {
                        vanished = true;
                        continue;
                    }
                    Err(e) => {
                        self.note(&e);
                        done.insert(name.clone());
                        self.problem(ProblemKind::Index, name, e.to_string());
                        continue;
                    }
                };
                done.insert(name);
                fresh.add_index(&id, &packs)?;
                for p in &packs {
                    let digest = pack::entries_digest(&p.blobs);
                    let size = pack::expected_pack_len(&p.blobs);
                    if size.is_none() {
                        self.problem(
                            ProblemKind::Index,
                            id.to_hex(),
                            format!(
                                "index {id}: the entries of pack {} overlap or leave gaps",
                                p.pack_id
                            ),
                        );
                    }
                    let e = expected.entry(p.pack_id).or_insert(ExpectedPack {
                        size,
                        digest,
                        blobs: p.blobs.len(),
                        live: false,
                    });
                    e.live |= p.obsolete_since.is_none();
                    if e.digest != digest {
                        disagreeing.insert(p.pack_id);
                    }
                }
            }
        }
        Ok(vanished)
    }

    fn check_packs(
        &mut self,
        index: &CacheReader,
        expected: &HashMap<Id, ExpectedPack>,
        read_data: Option<DataSubset>,
    ) -> Result<()> {
        let mut present = self.inventory(expected)?;
        let chosen = match read_data {
            Some(subset) => choose(&present, subset)?,
            None => HashSet::new(),
        };
        present.sort_by_key(|(id, _)| *id);
        self.progress.phase("packs", present.len() as u64, false);
        let found: Mutex<Vec<PackFinding>> = Mutex::new(Vec::new());
        let read: Vec<(Id, u64)> = present
            .iter()
            .filter(|(id, _)| chosen.contains(id))
            .copied()
            .collect();
        // Sizes and trailers of the packs not read whole.
        present
            .par_iter()
            .filter(|(id, _)| !chosen.contains(id))
            .try_for_each(|(id, size)| -> Result<()> {
                self.cancelled()?;
                if let Some(f) = self.check_pack_trailer(id, *size, &expected[id]) {
                    lock(&found).push(f);
                }
                self.progress.advance(1);
                Ok(())
            })?;
        if !read.is_empty() {
            let total: u64 = read.iter().map(|(_, s)| s).sum();
            self.progress.phase("read data", total, true);
        }
        let verified = std::sync::atomic::AtomicU64::new(0);
        let baseless = std::sync::atomic::AtomicU64::new(0);
        let baseless_packs = std::sync::atomic::AtomicU64::new(0);
        read.par_iter().try_for_each(|(id, size)| -> Result<()> {
            self.cancelled()?;
            let PackRead {
                finding: f,
                verified: blobs,
                baseless: without_base,
            } = self.read_pack(index, id, *size, &expected[id]);
            verified.fetch_add(blobs, Ordering::Relaxed);
            if without_base > 0 {
                baseless.fetch_add(without_base, Ordering::Relaxed);
                baseless_packs.fetch_add(1, Ordering::Relaxed);
            }
            if let Some(f) = f {
                lock(&found).push(f);
            }
            self.progress.advance(*size);
            Ok(())
        })?;
        self.report.stats.packs_read = read.len();
        self.report.stats.bytes_read = read.iter().map(|(_, s)| s).sum();
        self.report.stats.blobs_verified = verified.into_inner();
        let baseless = baseless.into_inner();
        if baseless > 0 {
            self.report.warnings.push(format!(
                "{baseless} delta blobs in {} packs in use were not verified: their base is not \
                 there (in no index, or its pack is gone: left by an interrupted prune); a \
                 snapshot that needs one is reported as damaged, and the next prune removes the \
                 rest",
                baseless_packs.into_inner()
            ));
        }
        let found = found.into_inner().unwrap_or_else(|p| p.into_inner());
        self.record_findings(found);
        Ok(())
    }

    /// The stored packs the index lists (ID, size); counts the others
    /// (a warning for those old enough not to be a running backup's),
    /// reports the packs in use that are missing, and notes the obsolete
    /// ones that are gone.
    fn inventory(&mut self, expected: &HashMap<Id, ExpectedPack>) -> Result<Vec<(Id, u64)>> {
        let stored = self.repo.backend().list(ObjectKind::Pack)?;
        let now = jiff::Timestamp::now().as_second();
        let mut present: Vec<(Id, u64)> = Vec::new();
        let mut unindexed_bytes = 0u64;
        let mut unindexed_old = 0usize;
        for o in &stored {
            let Ok(id) = Id::parse(&o.name) else { continue };
            self.report.stats.packs += 1;
            self.report.stats.pack_bytes += o.size;
            if expected.contains_key(&id) {
                present.push((id, o.size));
            } else {
                self.report.stats.unindexed_packs += 1;
                let age = o
                    .modified
                    .map(|m| now.saturating_sub(m))
                    .unwrap_or(i64::MAX);
                if age >= MIN_UNINDEXED_AGE as i64 {
                    unindexed_old += 1;
                    unindexed_bytes += o.size;
                }
            }
        }
        if unindexed_old > 0 {
            self.report.warnings.push(format!(
                "{} packs ({} bytes) are in no index: left by interrupted backups (prune removes them) or listed by a lost index object (`cairn repair index` adds them back)",
                unindexed_old, unindexed_bytes
            ));
        }
        let present_ids: HashSet<Id> = present.iter().map(|(id, _)| *id).collect();
        let mut missing: Vec<(&Id, &ExpectedPack)> = expected
            .iter()
            .filter(|(id, e)| e.live && !present_ids.contains(id))
            .collect();
        missing.sort_by_key(|(id, _)| **id);
        for (id, e) in missing {
            let n = self.problem(
                ProblemKind::MissingPack,
                id.to_hex(),
                format!("pack {id} is missing ({} blobs lost)", e.blobs),
            );
            self.bad_packs.insert(*id, n);
        }
        // Packs prune marked unused and then deleted: fine, unless a
        // snapshot still needs a blob only they held (see `blob_status`).
        self.gone_obsolete = expected
            .iter()
            .filter(|(id, e)| !e.live && !present_ids.contains(id))
            .map(|(id, _)| *id)
            .collect();

        Ok(present)
    }

    /// Records what reading packs found: problems, and the packs and
    /// blobs they make bad.
    fn record_findings(&mut self, mut found: Vec<PackFinding>) {
        found.sort_by_key(|f| f.pack);
        for f in found {
            let n = self.problem(ProblemKind::Pack, f.pack.to_hex(), f.message);
            if f.bad_blobs.is_empty() && f.whole_pack {
                self.bad_packs.insert(f.pack, n);
            }
            for b in f.bad_blobs {
                self.bad_blobs.insert((f.pack, b), n);
            }
        }
    }

    /// Size and trailer of one pack, against the index.
    fn check_pack_trailer(&self, id: &Id, size: u64, exp: &ExpectedPack) -> Option<PackFinding> {
        if let Some(want) = exp.size {
            if want != size {
                return Some(PackFinding::whole(
                    *id,
                    format!("pack {id} has {size} bytes, its index entries need {want}"),
                ));
            }
        }
        match self.repo.read_pack_trailer(id, size) {
            Ok(entries) if pack::entries_digest(&entries) == exp.digest => None,
            Ok(_) => Some(PackFinding::whole(
                *id,
                format!("pack {id}: its trailer does not list the blobs the index says"),
            )),
            Err(e) if e.kind() == ErrorKind::MissingObject && !exp.live => None,
            Err(e) => Some(PackFinding::whole(*id, self.note(&e).to_string())),
        }
    }

    /// The plaintexts of the bases of the deltas among `entries`, read
    /// together like a restore reads them (nearby blobs in one request,
    /// requests in parallel) instead of one request per delta. Empty when
    /// any cannot be read: each delta then reads its own base, so that
    /// each damage is named.
    fn prefetch_bases(
        &self,
        index: &CacheReader,
        entries: &[pack::BlobEntry],
    ) -> HashMap<Id, Vec<u8>> {
        let Ok(locs) = crate::repo::reader::locate_bases(index, entries) else {
            return HashMap::new();
        };
        match crate::repo::reader::fetch_whole(self.repo, &locs) {
            Ok(plain) => locs.iter().map(|l| l.entry.id).zip(plain).collect(),
            Err(_) => HashMap::new(),
        }
    }

    /// Reads one pack whole: name, trailer, every blob.
    fn read_pack(&self, index: &CacheReader, id: &Id, size: u64, exp: &ExpectedPack) -> PackRead {
        let whole = |message: String| PackRead {
            finding: Some(PackFinding::whole(*id, message)),
            ..PackRead::default()
        };
        let name = id.to_hex();
        let bytes = match self.repo.backend().get(ObjectKind::Pack, &name) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::MissingObject && !exp.live => {
                return PackRead::default()
            }
            Err(e) => return whole(self.note(&e).to_string()),
        };
        if bytes.len() as u64 != size {
            return whole(format!("pack {id} changed size while being read"));
        }
        let name_ok = verify_name(ObjectKind::Pack, &name, &bytes);
        let (entries, keys) = match pack::read_trailer(self.repo.keys(), self.repo.id(), &bytes, id)
        {
            Ok(e) => e,
            Err(e) => return whole(self.note(&e).to_string()),
        };
        if pack::entries_digest(&entries) != exp.digest {
            return whole(format!(
                "pack {id}: its trailer does not list the blobs the index says"
            ));
        }
        let bases = self.prefetch_bases(index, &entries);
        let mut bad = Vec::new();
        let mut first_error = None;
        let mut unverifiable = 0;
        let mut baseless = 0;
        for e in &entries {
            let sealed = &bytes[e.offset as usize..e.end() as usize];
            match self.check_blob(index, (&keys, id), &bases, e, sealed) {
                Ok(true) => {}
                Ok(false) => {
                    unverifiable += 1;
                    if exp.live {
                        baseless += 1;
                    }
                }
                Err(err) => {
                    bad.push(e.id);
                    first_error.get_or_insert(err);
                }
            }
        }
        let verified = (entries.len() - bad.len() - unverifiable) as u64;
        let finding = match (first_error, name_ok) {
            (Some(err), _) => Some(PackFinding {
                pack: *id,
                message: format!(
                    "pack {id}: {} of {} blobs are damaged (first: {err})",
                    bad.len(),
                    entries.len()
                ),
                bad_blobs: bad,
                whole_pack: false,
            }),
            // Every blob is fine but the bytes are not what was stored:
            // header or padding damage. Restores still work.
            (None, Err(err)) => Some(PackFinding {
                pack: *id,
                message: format!("{err} (every blob in it still verifies)"),
                bad_blobs: Vec::new(),
                whole_pack: false,
            }),
            (None, Ok(())) => None,
        };
        PackRead {
            finding,
            verified,
            baseless,
        }
    }

    /// Opens blob `e` of pack `id` (`sealed`, its bytes) with the pack's
    /// `keys`; a delta against its base, from `bases` or read where the
    /// index says (a damaged base damages every delta of it). `false`:
    /// a delta whose base is not there, unverified.
    fn check_blob(
        &self,
        index: &CacheReader,
        (keys, id): (&Keys, &Id),
        bases: &HashMap<Id, Vec<u8>>,
        e: &pack::BlobEntry,
        sealed: &[u8],
    ) -> Result<bool> {
        let Some(base) = e.compression.base() else {
            return pack::decode_blob(keys, self.repo.id(), e, sealed, id).map(|_| true);
        };
        let plain = match bases
            .get(&base)
            .cloned()
            .map_or_else(|| self.repo.read_blob_once(index, &base, e.blob_type), Ok)
        {
            // A base that is not there is not by itself damage: a pack
            // that only awaits deletion (obsolete in every index that
            // lists it) may outlive its deltas' bases, which prune deleted
            // first; and a `--grace 0` prune killed while deleting old
            // index objects leaves a pack in use by a stale record whose
            // deltas' bases sit in a pack no index lists any more. A
            // snapshot that needs such a delta is reported by the walk
            // (its base is in no index), the bases' packs if they are
            // lost; the rest only waits for a prune.
            Err(err) if err.kind() == ErrorKind::MissingObject => return Ok(false),
            other => other,
        }
        .map_err(|err| {
            Error::corrupt(format!(
                "pack {id}: delta blob {}: its base {base} cannot be used: {err}",
                e.id
            ))
        })?;
        pack::decode_delta_in_place(keys, self.repo.id(), e, &mut sealed.to_vec(), id, &plain)
            .map(|_| true)
    }

    fn check_snapshots(&mut self, index: &CacheReader, mut list: SnapshotList) -> Result<()> {
        // Forgotten between listing and reading: not damage.
        list.damaged
            .retain(|(_, e)| e.kind() != ErrorKind::MissingObject);
        self.report.stats.snapshots = list.good.len() + list.damaged.len();
        for (name, e) in &list.damaged {
            self.note(e);
            let n = self.problem(ProblemKind::Snapshot, name.clone(), e.to_string());
            self.affected.entry(n).or_default().insert(name.clone());
            self.report.damaged_snapshots.push(name.clone());
        }
        self.progress
            .phase("snapshots", list.good.len() as u64, false);
        for s in &list.good {
            self.cancelled()?;
            let damage = self.walk_tree(index, &s.tree, 0)?;
            let hex = s.id.to_hex();
            for n in &damage {
                self.affected.entry(*n).or_default().insert(hex.clone());
            }
            if !damage.is_empty() {
                self.report.damaged_snapshots.push(hex);
            }
            self.progress.advance(1);
        }
        Ok(())
    }

    /// Drill records must read; they name no data, so nothing else is
    /// checked (a record of a forgotten snapshot is not a problem).
    fn check_drills(&mut self) -> Result<()> {
        let list = crate::repo::drill_record::load(self.repo)?;
        self.report.stats.drills = list.good.len() + list.damaged.len();
        for (name, e) in &list.damaged {
            if e.kind() == ErrorKind::MissingObject {
                continue;
            }
            self.note(e);
            self.problem(ProblemKind::Drill, name.clone(), e.to_string());
        }
        Ok(())
    }

    /// The archive must be continuous from the oldest base backup's first
    /// WAL file to the newest archived segment (`pg status` shows the
    /// windows this leaves).
    fn check_archive_gaps(
        &mut self,
        snapshots: &SnapshotList,
        wal: &crate::repo::wal_record::WalList,
    ) {
        let bases: Vec<_> = snapshots
            .good
            .iter()
            .filter(|s| crate::pg::pitr::is_base_backup(s))
            .collect();
        let st = crate::pg::wal::status(wal, &bases);
        if let Some(first) = st.missing.first() {
            self.problem(
                ProblemKind::WalGap,
                first.clone(),
                format!(
                    "{} archived WAL segments are missing, the first {first}: point-in-time \
                     recovery cannot pass the gap (cairn pg status shows what can be restored)",
                    st.missing.len()
                ),
            );
        }
    }

    /// Archived WAL files are checked like snapshots: each record must
    /// read, and its tree, chunk lists and blobs must be whole. Problems
    /// name the WAL files they affect as `wal:<name>`.
    fn check_wal(
        &mut self,
        index: &CacheReader,
        mut list: crate::repo::wal_record::WalList,
    ) -> Result<()> {
        list.damaged
            .retain(|(_, e)| e.kind() != ErrorKind::MissingObject);
        self.report.stats.wal_files = list.good.len() + list.damaged.len();
        for (name, e) in &list.damaged {
            self.note(e);
            let n = self.problem(ProblemKind::Wal, name.clone(), e.to_string());
            self.affected
                .entry(n)
                .or_default()
                .insert(format!("wal:{name}"));
            self.report.damaged_wal.push(name.clone());
        }
        self.progress.phase("WAL", list.good.len() as u64, false);
        for w in &list.good {
            self.cancelled()?;
            let damage = self.walk_tree(index, &w.tree, 0)?;
            for n in &damage {
                self.affected
                    .entry(*n)
                    .or_default()
                    .insert(format!("wal:{}", w.name));
            }
            if !damage.is_empty() {
                self.report.damaged_wal.push(w.name.clone());
            }
            self.progress.advance(1);
        }
        Ok(())
    }

    /// The problems under tree `id` (memoised: shared subtrees are walked
    /// once).
    fn walk_tree(&mut self, index: &CacheReader, id: &Id, depth: usize) -> Result<Culprits> {
        if let Some(d) = self.walked.get(id) {
            return Ok(d.clone());
        }
        self.cancelled()?;
        for t in walker::below_when_deep(self.repo, index, id, depth, self.cancel)? {
            self.walk_tree(index, &t, depth + 1)?;
        }
        let mut damage: BTreeSet<usize> = BTreeSet::new();
        match self.read_metadata(index, id, BlobType::Tree) {
            Err(n) => {
                damage.insert(n);
            }
            Ok(bytes) => {
                self.report.stats.trees += 1;
                match tree::Tree::decode(&bytes) {
                    Err(e) => {
                        damage.insert(self.problem(
                            ProblemKind::Tree,
                            id.to_hex(),
                            format!("tree {id}: {e}"),
                        ));
                    }
                    Ok(t) => {
                        for node in &t.nodes {
                            match node.kind {
                                NodeKind::Dir => match node.subtree {
                                    Some(sub) => {
                                        damage.extend(self.walk_tree(index, &sub, depth + 1)?);
                                    }
                                    None => {
                                        damage.insert(self.problem(
                                            ProblemKind::Tree,
                                            id.to_hex(),
                                            format!(
                                                "tree {id}: directory {:?} has no subtree",
                                                node.name
                                            ),
                                        ));
                                    }
                                },
                                NodeKind::File => {
                                    let (d, size) = self.walk_file(index, node)?;
                                    let size_known = d.is_empty();
                                    damage.extend(d);
                                    if size_known && size != node.size {
                                        damage.insert(self.problem(
                                            ProblemKind::Tree,
                                            id.to_hex(),
                                            format!(
                                                "tree {id}: file {:?} has {} bytes of chunks, the tree says {}",
                                                node.name, size, node.size
                                            ),
                                        ));
                                    }
                                }
                                _ => {}
                            }
                        }
                    }
                }
            }
        }
        let damage: Culprits = damage.into_iter().collect();
        self.walked.insert(*id, damage.clone());
        Ok(damage)
    }

    /// The problems under one file's content, and its size from the index.
    fn walk_file(&mut self, index: &CacheReader, node: &tree::Node) -> Result<(Culprits, u64)> {
        let mut damage = BTreeSet::new();
        let mut size = 0u64;
        // `content` counts only when there are no chunk lists (§8.2).
        let inline: &[Id] = if node.content_lists.is_empty() {
            &node.content
        } else {
            &[]
        };
        for id in inline {
            match self.blob_status(index, id, BlobType::Data)? {
                Ok(len) => size += len,
                Err(n) => {
                    damage.insert(n);
                }
            }
        }
        for list in &node.content_lists {
            let (d, len) = self.walk_list(index, list)?;
            damage.extend(d);
            size += len;
        }
        Ok((damage.into_iter().collect(), size))
    }

    /// A chunk list's problems and byte count (memoised: unchanged parts
    /// of a nightly dump share their lists).
    fn walk_list(&mut self, index: &CacheReader, id: &Id) -> Result<(Culprits, u64)> {
        if let Some(d) = self.walked.get(id) {
            let size = self.list_sizes.get(id).copied().unwrap_or(0);
            return Ok((d.clone(), size));
        }
        let mut damage = BTreeSet::new();
        let mut size = 0u64;
        match self.read_metadata(index, id, BlobType::ChunkList) {
            Err(n) => {
                damage.insert(n);
            }
            Ok(bytes) => match tree::decode_chunk_list(&bytes) {
                Err(e) => {
                    damage.insert(self.problem(
                        ProblemKind::Tree,
                        id.to_hex(),
                        format!("chunk list {id}: {e}"),
                    ));
                }
                Ok(ids) => {
                    for c in &ids {
                        match self.blob_status(index, c, BlobType::Data)? {
                            Ok(len) => size += len,
                            Err(n) => {
                                damage.insert(n);
                            }
                        }
                    }
                }
            },
        }
        let damage: Culprits = damage.into_iter().collect();
        self.walked.insert(*id, damage.clone());
        self.list_sizes.insert(*id, size);
        Ok((damage, size))
    }

    /// Reads a tree or chunk list; `Err(problem)` when it cannot.
    fn read_metadata(
        &mut self,
        index: &CacheReader,
        id: &Id,
        blob_type: BlobType,
    ) -> std::result::Result<Vec<u8>, usize> {
        match self.blob_status(index, id, blob_type) {
            Err(e) => {
                self.note(&e);
                Err(self.problem(ProblemKind::Tree, id.to_hex(), e.to_string()))
            }
            Ok(Err(n)) => Err(n),
            Ok(Ok(_)) => self.repo.read_blob_once(index, id, blob_type).map_err(|e| {
                self.note(&e);
                self.problem(
                    ProblemKind::Tree,
                    id.to_hex(),
                    format!("{} {id}: {e}", blob_type.name()),
                )
            }),
        }
    }

    /// Whether a referenced blob is indexed in a pack that is not broken:
    /// `Ok(raw length)` or `Err(problem)`.
    fn blob_status(
        &mut self,
        index: &CacheReader,
        id: &Id,
        blob_type: BlobType,
    ) -> Result<std::result::Result<u64, usize>> {
        if let Some(n) = self.unindexed_blobs.get(id) {
            return Ok(Err(*n));
        }
        let Some(loc) = index.get(id)? else {
            let n = self.problem(
                ProblemKind::Blob,
                id.to_hex(),
                format!(
                    "{} blob {id} is referenced but in no index",
                    blob_type.name()
                ),
            );
            self.unindexed_blobs.insert(*id, n);
            return Ok(Err(n));
        };
        if loc.entry.blob_type != blob_type {
            let n = self.problem(
                ProblemKind::Blob,
                id.to_hex(),
                format!(
                    "blob {id} is referenced as {} but indexed as {}",
                    blob_type.name(),
                    loc.entry.blob_type.name()
                ),
            );
            self.unindexed_blobs.insert(*id, n);
            return Ok(Err(n));
        }
        if let Some(n) = self.bad_packs.get(&loc.pack_id) {
            return Ok(Err(*n));
        }
        if let Some(n) = self.bad_blobs.get(&(loc.pack_id, *id)) {
            return Ok(Err(*n));
        }
        if self.gone_obsolete.contains(&loc.pack_id) {
            let pack_id = loc.pack_id;
            let n = self.problem(
                ProblemKind::MissingPack,
                pack_id.to_hex(),
                format!(
                    "pack {pack_id} was deleted by a prune, but snapshots still need its blobs"
                ),
            );
            self.bad_packs.insert(pack_id, n);
            self.gone_obsolete.remove(&pack_id);
            return Ok(Err(n));
        }
        if let Some(base) = loc.entry.compression.base() {
            // A delta is as good as its base, which must be stored whole.
            match index.get(&base)? {
                Some(b) if b.entry.compression.base().is_some() => {
                    let n = self.problem(
                        ProblemKind::Blob,
                        base.to_hex(),
                        format!("blob {base}, the base of delta {id}, is itself a delta"),
                    );
                    self.unindexed_blobs.insert(*id, n);
                    return Ok(Err(n));
                }
                _ => {
                    if let Err(n) = self.blob_status(index, &base, blob_type)? {
                        return Ok(Err(n));
                    }
                }
            }
        }
        if loc.obsolete_since.is_some() {
            self.in_obsolete += 1;
        }
        Ok(Ok(u64::from(loc.entry.raw_length)))
    }
}

/// What reading one pack found.
struct PackFinding {
    pack: Id,
    message: String,
    /// Blobs that failed to verify (empty when the whole pack is unusable
    /// or only its bytes outside the blobs are damaged).
    bad_blobs: Vec<Id>,
    /// The whole pack is unusable (missing, wrong size, bad trailer).
    whole_pack: bool,
}

impl PackFinding {
    fn whole(pack: Id, message: String) -> Self {
        PackFinding {
            pack,
            message,
            bad_blobs: Vec::new(),
            whole_pack: true,
        }
    }
}

/// The packs `--read-data-subset` reads. Random choices order the packs by
/// a keyed hash with a fresh random key.
fn choose(packs: &[(Id, u64)], subset: DataSubset) -> Result<HashSet<Id>> {
    let random_order = || -> Result<Vec<(Id, u64)>> {
        let key: [u8; 32] = crate::crypto::random_bytes()?;
        let mut v = packs.to_vec();
        v.sort_by_cached_key(|(id, _)| *blake3::keyed_hash(&key, id.as_bytes()).as_bytes());
        Ok(v)
    };
    Ok(match subset {
        DataSubset::All => packs.iter().map(|(id, _)| *id).collect(),
        DataSubset::Slice { n, m } => packs
            .iter()
            .filter(|(id, _)| slice_of(id, m) == n - 1)
            .map(|(id, _)| *id)
            .collect(),
        DataSubset::Fraction(f) => {
            let k = ((packs.len() as f64) * f).ceil() as usize;
            random_order()?
                .into_iter()
                .take(k)
                .map(|(id, _)| id)
                .collect()
        }
        DataSubset::Bytes(limit) => {
            let mut total = 0u64;
            let mut out = HashSet::new();
            for (id, size) in random_order()? {
                if total >= limit {
                    break;
                }
                total += size;
                out.insert(id);
            }
            out
        }
    })
}

/// The group (0-based, of `m`) pack `id` belongs to for `n/m` subsets:
/// its first 8 bytes as a number, modulo `m`. Pack IDs are hashes, so the
/// groups are even.
pub fn slice_of(id: &Id, m: u64) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&id.as_bytes()[..8]);
    u64::from_be_bytes(b) % m.max(1)
}

/// Compares the user's index cache (when the repository was opened with
/// one) with the index just built from the repository. A cache that
/// disagrees is emptied so the next command rebuilds it, and a warning
/// says so.
fn compare_user_cache(
    repo: &Repository,
    truth: &CacheReader,
    report: &mut CheckReport,
) -> Result<()> {
    let cache = repo.cache();
    if cache.is_temporary() {
        return Ok(());
    }
    let cmp = cache.reader()?.compare(truth, 10_000)?;
    let mut different = cmp.different;
    let mut trailers: HashMap<Id, Option<Vec<pack::BlobEntry>>> = HashMap::new();
    let sizes: HashMap<String, u64> = if cmp.samples.is_empty() {
        HashMap::new()
    } else {
        repo.backend()
            .list(ObjectKind::Pack)?
            .into_iter()
            .map(|o| (o.name, o.size))
            .collect()
    };
    // A different place is fine when the cache's place is a real copy of
    // the blob: the caches just picked different duplicates.
    for (_, mine, theirs) in &cmp.samples {
        // ...and both agree on whether its pack is in use: a cache that
        // thinks an obsolete pack is in use would let backups deduplicate
        // against data a prune deletes.
        let (Some(mine), Some(theirs)) = (mine, theirs) else {
            continue;
        };
        if mine.obsolete_since.is_some() != theirs.obsolete_since.is_some() {
            continue;
        }
        let entries = trailers.entry(mine.pack_id).or_insert_with(|| {
            sizes
                .get(&mine.pack_id.to_hex())
                .and_then(|s| repo.read_pack_trailer(&mine.pack_id, *s).ok())
        });
        if entries.as_ref().is_some_and(|es| es.contains(&mine.entry)) {
            different -= 1;
        }
    }
    if cmp.extra + cmp.missing + different > 0 {
        cache.reset()?;
        report.warnings.push(format!(
            "the local index cache {} disagreed with the repository ({} blobs it should not have, {} missing, {} at wrong places); it was emptied and will be rebuilt",
            cache.path().display(),
            cmp.extra,
            cmp.missing,
            different
        ));
    }
    Ok(())
}

/// The operation as a method: `repo.check(...)`.
impl Repository {
    /// Checks the repository: see [`check`].
    pub fn check(
        &self,
        opts: &CheckOptions,
        progress: &dyn CheckProgress,
        cancel: &AtomicBool,
    ) -> Result<CheckReport> {
        check(self, opts, progress, cancel)
    }
}
