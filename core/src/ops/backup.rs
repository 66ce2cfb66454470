//! Backing up a stream, a command's output, or files and directories.
//!
//! Order of writes (the commit protocol): packs, then index objects, then
//! the snapshot. Until the snapshot is written nothing refers to the new
//! data, so a crash, a failed upload or a failed dump command leaves at
//! most unreferenced packs and index entries, never a half snapshot.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, Metadata};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use rayon::prelude::*;

use crate::chunk::chunker::{read_block, BlockChunker, ChunkBatch};
use crate::error::{Error, ErrorKind, Result};
use crate::format::index::IndexPack;
use crate::format::pack::{self, BlobType, EncodedBlob, FinishedPack};
use crate::format::snapshot::{check_labels, DumpInfo};
use crate::format::snapshot::{Snapshot, SnapshotSource, SnapshotSummary, SourceKind};
use crate::format::tree::{self, HardLink, Node, NodeKind, Tree, Xattr};
use crate::id::Id;
use crate::pattern::Patterns;
use crate::pg::dumpcheck::{check_directory_dump, InspectingReader, Inspector};
use crate::repo::appender::CanAdd;
use crate::repo::cache::{CacheReader, LiveCopy};
use crate::repo::commit::verify_referenced;
use crate::repo::delta::DeltaEncoder;
use crate::repo::packer::{Packer, INDEX_FLUSH_BLOBS};
use crate::repo::repository::Repository;
use crate::time::SnapshotTime;

const INDEX_FLUSH_PACKS: usize = 16;
const INDEX_FLUSH_INTERVAL: Duration = Duration::from_secs(60);
/// Files at least this large are read on their own thread.
const THREADED_FILE_SIZE: u64 = 4 << 20;

/// Receives progress from a running backup.
pub trait BackupProgress: Sync {
    /// `n` more bytes of content were read.
    fn bytes_read(&self, _n: u64) {}
    /// A file or directory was skipped; the backup goes on.
    fn warning(&self, _message: &str) {}
}

/// Reports nothing.
pub struct NoProgress;
impl BackupProgress for NoProgress {}

/// What to back up.
pub enum BackupSource {
    /// Files and directories, recursively.
    Paths(Vec<PathBuf>),
    /// A stream (stdin), stored as one file named `filename`.
    Stream {
        /// The data.
        reader: Box<dyn Read + Send>,
        /// Name of the file in the snapshot.
        filename: String,
    },
    /// The standard output of `sh -c command`, stored as one file named
    /// `filename`; committed only if the command exits 0.
    Command {
        /// Shell command line.
        command: String,
        /// Name of the file in the snapshot.
        filename: String,
    },
}

/// Metadata of a new snapshot.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BackupOptions {
    /// Host name recorded.
    pub hostname: String,
    /// User name recorded.
    pub username: String,
    /// Tags recorded.
    pub tags: Vec<String>,
    /// Snapshot time; `None` for now.
    pub time: Option<SnapshotTime>,
    /// Check that a stream or command output that is a database dump is
    /// complete before committing (`dumpcheck`); with `false` its format
    /// is still recorded.
    pub validate_dumps: bool,
    /// Store every new chunk whole, even in a repository with delta
    /// compression on.
    pub no_delta: bool,
    /// Save a stream (stdin, `--command`) that ended without a byte; by
    /// default it is refused: an empty dump is almost always a dump that
    /// failed (`pg_dump -d nosuchdb | cairn backup -`).
    pub allow_empty: bool,
    /// What a path backup leaves out.
    pub exclude: Excludes,
    /// Read and pack everything, store nothing: no pack, index object or
    /// snapshot is written ([`BackupOutcome::committed`] is `false`).
    pub dry_run: bool,
}

/// What a path backup leaves out: restic's exclude options.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Excludes {
    /// Paths matching these patterns ([`Patterns`]; `--exclude`,
    /// `--iexclude`).
    pub patterns: Patterns,
    /// A directory that holds a file of this name (and, if given, whose
    /// first bytes are this header) is left out, whole
    /// (`--exclude-if-present NAME[:HEADER]`, `--exclude-caches`).
    pub if_present: Vec<(String, Option<String>)>,
    /// Stay on each source's file system: a directory on another (a mount
    /// point) is stored empty, other entries there are left out.
    pub one_file_system: bool,
}

/// The marker of a cache directory (<https://bford.info/cachedir/>): the
/// file `--exclude-caches` looks for, and the header it must begin with.
pub const CACHEDIR_TAG: (&str, &str) = (
    "CACHEDIR.TAG",
    "Signature: 8a477f597d28d172789f06886806bc55",
);

impl Excludes {
    /// Is the directory `dir` excluded by a marker file inside it?
    fn by_marker(&self, dir: &Path) -> bool {
        self.if_present.iter().any(|(name, header)| {
            let marker = dir.join(name);
            match header {
                None => fs::symlink_metadata(&marker).is_ok_and(|m| m.is_file()),
                Some(h) => {
                    let mut buf = vec![0u8; h.len()];
                    File::open(&marker)
                        .and_then(|mut f| f.read_exact(&mut buf))
                        .is_ok_and(|()| buf == h.as_bytes())
                }
            }
        })
    }
}

impl Default for BackupOptions {
    /// This machine's host name and user, no tags, now, dumps checked,
    /// deltas as the repository says, an empty stream refused.
    fn default() -> Self {
        BackupOptions {
            hostname: crate::sys::hostname(),
            username: crate::sys::username(),
            tags: Vec::new(),
            time: None,
            validate_dumps: true,
            no_delta: false,
            allow_empty: false,
            exclude: Excludes::default(),
            dry_run: false,
        }
    }
}

/// The result of a backup.
#[derive(Debug)]
pub struct BackupOutcome {
    /// The snapshot written (with a dry run, the one that would have been:
    /// its ID is all zeros).
    pub snapshot: Snapshot,
    /// Files and directories that were skipped, one message each.
    pub warnings: Vec<String>,
    /// Entries left out by [`BackupOptions::exclude`] (a directory counts
    /// once, with everything in it).
    pub excluded: u64,
    /// Whether the snapshot was written (`false` for a dry run).
    pub committed: bool,
}

/// Checks a `--stdin-filename`.
pub fn check_stream_filename(name: &str) -> Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(Error::invalid(format!(
            "invalid file name {name:?} for the stream: use a plain name like shop.sql"
        )));
    }
    Ok(())
}

/// Refuses a snapshot time (`--time`) more than
/// [`crate::format::snapshot::FUTURE_SKEW_SECONDS`] ahead of `now`: a snapshot dated
/// in the future would be `latest` and push real ones out of
/// `forget --keep-last` (a write-only key could use it to do harm;
/// readers also spot one, `repo-format.md` §9.3).
pub fn check_not_future(time: &SnapshotTime, now: &SnapshotTime) -> Result<()> {
    let ahead = time.timestamp().as_second() - now.timestamp().as_second();
    if ahead > crate::format::snapshot::FUTURE_SKEW_SECONDS {
        return Err(Error::invalid(format!(
            "--time {} is {}s ahead of this machine's clock: a snapshot may not be dated in the future",
            time.to_rfc3339(),
            ahead
        )));
    }
    Ok(())
}

/// Runs a backup and writes its snapshot, in three phases: the source and
/// options are checked (`prepare`), its data is stored (`store`),
/// and the snapshot is committed (`commit`).
pub fn backup(
    repo: &impl CanAdd,
    source: BackupSource,
    opts: &BackupOptions,
    progress: &dyn BackupProgress,
    cancel: &AtomicBool,
) -> Result<BackupOutcome> {
    let repo = repo.repository(crate::repo::appender::sealed::TOKEN);
    let start = SnapshotTime::now();
    if let Some(t) = &opts.time {
        check_not_future(t, &start)?;
    }
    check_labels(&opts.hostname, &opts.tags)?;
    let prepared = prepare(&source)?;
    let time = opts.time.unwrap_or(start);
    let stored = store(repo, source, &prepared, opts, time, progress, cancel)?;
    if cancel.load(Ordering::SeqCst) {
        return Err(Error::interrupted());
    }
    commit(repo, prepared, stored, opts, start, time)
}

/// A source checked before anything is read: the paths the snapshot
/// records, the absolute paths to read (a path backup), and the source's
/// metadata so far.
struct Prepared {
    paths: Vec<String>,
    sources: Vec<PathBuf>,
    meta: SnapshotSource,
}

fn prepare(source: &BackupSource) -> Result<Prepared> {
    let meta = |kind, filename: Option<&String>, command: Option<&String>| SnapshotSource {
        kind,
        stdin_filename: filename.cloned(),
        command: command.cloned(),
        exit_status: command.map(|_| 0),
        dump: None,
        empty_allowed: false,
    };
    match source {
        BackupSource::Paths(paths) => {
            if paths.is_empty() {
                return Err(Error::invalid(
                    "nothing to back up: give paths, - for stdin, or --command",
                ));
            }
            let sources = paths
                .iter()
                .map(|p| absolute(p))
                .collect::<Result<Vec<_>>>()?;
            for p in &sources {
                if let Err(e) = fs::symlink_metadata(p) {
                    return Err(if e.kind() == io::ErrorKind::NotFound {
                        Error::new(
                            ErrorKind::SourceNotFound,
                            format!("backup source {} does not exist", p.display()),
                        )
                    } else {
                        Error::io(format!("backup source {}", p.display()), e)
                    });
                }
            }
            Ok(Prepared {
                paths: sources
                    .iter()
                    .map(|p| p.to_string_lossy().into_owned())
                    .collect(),
                sources,
                meta: meta(SourceKind::Paths, None, None),
            })
        }
        BackupSource::Stream { filename, .. } => {
            check_stream_filename(filename)?;
            Ok(Prepared {
                paths: vec![format!("/{filename}")],
                sources: Vec::new(),
                meta: meta(SourceKind::Stdin, Some(filename), None),
            })
        }
        BackupSource::Command { command, filename } => {
            check_stream_filename(filename)?;
            if command.trim().is_empty() {
                return Err(Error::invalid("--command is empty"));
            }
            Ok(Prepared {
                paths: vec![format!("/{filename}")],
                sources: Vec::new(),
                meta: meta(SourceKind::Command, Some(filename), Some(command)),
            })
        }
    }
}

/// What [`store`] stored: the root tree, and what the commit needs.
struct Stored {
    root: Id,
    summary: SnapshotSummary,
    warnings: Vec<String>,
    /// Every blob the snapshot refers to (reused or stored), for the
    /// commit check...
    referenced: HashSet<Id>,
    /// ...and the delta bases among them, which must be stored whole.
    bases: HashSet<Id>,
    /// The packs this backup stored.
    packs: Vec<Id>,
    /// What the dump check found.
    dump: Option<DumpInfo>,
    /// An empty stream saved with `allow_empty`.
    empty_allowed: bool,
    /// Entries left out by the options' excludes.
    excluded: u64,
}

/// Reads the source and stores its data: a reading thread packs blobs,
/// an upload thread stores the packs and indexes them.
fn store(
    repo: &Repository,
    source: BackupSource,
    prepared: &Prepared,
    opts: &BackupOptions,
    time: SnapshotTime,
    progress: &dyn BackupProgress,
    cancel: &AtomicBool,
) -> Result<Stored> {
    let upload_failed = AtomicBool::new(false);
    thread::scope(|scope| -> Result<Stored> {
        let (pack_tx, pack_rx) = sync_channel::<FinishedPack>(0);
        let uploader = scope.spawn(|| {
            if opts.dry_run {
                // Packed, and dropped: nothing is stored.
                pack_rx.iter().for_each(drop);
                return Ok(Vec::new());
            }
            upload_packs(repo, pack_rx, &upload_failed)
        });
        let mut saver = BlobSaver::new(
            repo,
            pack_tx,
            progress,
            cancel,
            &upload_failed,
            &opts.exclude,
        )?;
        // A write-only key reads no stored chunk, so it has no bases.
        if !opts.no_delta && !repo.is_write_only() {
            saver.enable_deltas(&opts.hostname, &prepared.paths)?;
        }
        let mut found = SourceFound::default();
        let saved = save_source(&mut saver, source, prepared, opts, time, &mut found);
        let flushed = saved.and_then(|root| saver.flush_all().map(|_| root));
        // Sketches of what was stored, also after a failure: an entry
        // whose blob never got indexed is skipped when looked up.
        let flushed = match opts.dry_run {
            true => flushed,
            false => flushed.and_then(|root| saver.flush_sketches().map(|_| root)),
        };
        // Everything the snapshot will refer to, for the commit check:
        // what was reused from the index and what this backup stored.
        let mut referenced = std::mem::take(&mut saver.reused);
        referenced.extend(saver.seen.drain());
        let bases = std::mem::take(&mut saver.bases);
        referenced.extend(bases.iter().copied());
        let summary = std::mem::take(&mut saver.stats);
        let warnings = std::mem::take(&mut saver.warnings);
        let excluded = saver.excluded;
        drop(saver); // closes the pack channel: the uploader finishes
        let uploaded = uploader
            .join()
            .map_err(|_| Error::new(ErrorKind::Io, "the upload thread panicked"))?;
        // When storing packs failed, that is the cause; otherwise the
        // reading side's error (dump command, interruption) is.
        let (root, packs) = match (flushed, uploaded) {
            (Ok(root), Ok(packs)) => (root, packs),
            (_, Err(e)) if upload_failed.load(Ordering::SeqCst) => return Err(e),
            (Err(e), _) | (Ok(_), Err(e)) => return Err(e),
        };
        Ok(Stored {
            root,
            summary,
            warnings,
            referenced,
            bases,
            packs,
            dump: found.dump,
            empty_allowed: found.empty_allowed,
            excluded,
        })
    })
}

/// What reading the source found besides its data.
#[derive(Default)]
struct SourceFound {
    dump: Option<DumpInfo>,
    empty_allowed: bool,
}

/// Saves the source's trees and data; returns the root tree. A dump is
/// checked as it is read; a stream is judged once it ended (and, for a
/// command, once it exited 0): an incomplete dump fails the backup before
/// the snapshot.
fn save_source(
    saver: &mut BlobSaver,
    source: BackupSource,
    prepared: &Prepared,
    opts: &BackupOptions,
    time: SnapshotTime,
    found: &mut SourceFound,
) -> Result<Id> {
    let progress = saver.progress;
    let inspector = Arc::new(Mutex::new(Inspector::new(opts.validate_dumps)));
    let mut judge = |saved: Result<Id>, filename: &str| {
        let root = saved?;
        let taken = match inspector.lock() {
            Ok(mut i) => std::mem::replace(&mut *i, Inspector::new(false)),
            Err(_) => return Err(Error::new(ErrorKind::Io, "dump inspection poisoned")),
        };
        if taken.total() == 0 {
            if !opts.allow_empty {
                return Err(empty_stream(filename, &prepared.meta));
            }
            progress.warning(&format!("{filename} is empty (saved: --allow-empty)"));
            found.empty_allowed = true;
        }
        let checked = taken.finish(filename).map_err(not_written)?;
        for w in &checked.warnings {
            progress.warning(w);
        }
        found.dump = checked.info;
        Ok(root)
    };
    match source {
        BackupSource::Paths(_) => {
            // One directory-format dump (pg_dump -Fd) is checked first.
            if let [one] = prepared.sources.as_slice() {
                let info = check_directory_dump(one, opts.validate_dumps).map_err(not_written)?;
                if let Some(i) = &info {
                    let name = one.display().to_string();
                    if let Some(w) = crate::pg::dumpcheck::compression_warning(&name, i) {
                        progress.warning(&w);
                    }
                }
                found.dump = info;
            }
            saver.save_paths(&prepared.sources)
        }
        BackupSource::Stream { reader, filename } => {
            let reader = InspectingReader::new(reader, Arc::clone(&inspector));
            let saved = saver.save_stream_file(reader, &filename, time, &|| {});
            judge(saved, &filename)
        }
        BackupSource::Command { command, filename } => {
            let saved = saver.save_command(&command, &filename, time, &inspector);
            judge(saved, &filename)
        }
    }
}

/// Writes the snapshot: its parent, its summary, then (last, right before
/// the commit point, so that as little time as possible passes between
/// the check and the snapshot becoming visible) the commit check, the
/// snapshot, and the check that this backup's packs are still stored.
fn commit(
    repo: &Repository,
    prepared: Prepared,
    stored: Stored,
    opts: &BackupOptions,
    start: SnapshotTime,
    time: SnapshotTime,
) -> Result<BackupOutcome> {
    let mut source = prepared.meta;
    source.dump = stored.dump;
    source.empty_allowed = stored.empty_allowed;
    // Damaged snapshots only cost the parent link; backups must go on. A
    // write-only key cannot read snapshots: no parent link.
    let existing = match repo.is_write_only() {
        true => Vec::new(),
        false => repo.load_snapshots()?.good,
    };
    let mut sorted_paths = prepared.paths.clone();
    sorted_paths.sort();
    let parent = existing
        .iter()
        .filter(|s| {
            !s.future_dated && s.hostname == opts.hostname && s.sorted_paths() == sorted_paths
        })
        .max_by(|a, b| a.time.cmp(&b.time))
        .map(|s| s.id);
    let mut summary = stored.summary;
    summary.backup_start = Some(start);
    summary.backup_end = Some(SnapshotTime::now());
    let mut snapshot = Snapshot {
        id: Id::default(),
        time,
        tree: stored.root,
        paths: prepared.paths,
        hostname: opts.hostname.clone(),
        username: opts.username.clone(),
        tags: opts.tags.clone(),
        parent,
        source,
        original: None,
        program_version: format!("cairn {}", env!("CARGO_PKG_VERSION")),
        summary,
        future_dated: false,
    };
    let mut warnings = stored.warnings;
    if opts.dry_run {
        return Ok(BackupOutcome {
            snapshot,
            warnings,
            excluded: stored.excluded,
            committed: false,
        });
    }
    verify_referenced(repo, &stored.referenced, &stored.bases)?;
    snapshot.id = repo.save_snapshot(&snapshot)?;
    warnings.extend(confirm_packs_stored(repo, &stored.packs, &snapshot.id)?);
    Ok(BackupOutcome {
        snapshot,
        warnings,
        excluded: stored.excluded,
        committed: true,
    })
}

/// After the commit: are the packs this backup stored still there? A
/// prune whose clock runs ahead of the storage's (or a snapshot that
/// landed very late) can take a running backup's packs, not yet indexed
/// long enough, for a crashed backup's leftovers and delete them
/// (`repo-format.md` §12.4). Then the snapshot cannot be restored: it is
/// withdrawn and the backup fails (exit 11) instead of reporting success.
/// A read that fails otherwise (the storage unreachable) proves nothing:
/// the committed snapshot stays, with a warning.
fn confirm_packs_stored(repo: &Repository, packs: &[Id], snapshot: &Id) -> Result<Option<String>> {
    use rayon::prelude::*;
    let found: Vec<Result<Option<Id>>> = repo.with_io_threads(|| {
        packs
            .par_iter()
            .map(|id| {
                match repo
                    .backend()
                    .get_range(crate::backend::ObjectKind::Pack, &id.to_hex(), 0, 8)
                {
                    Ok(_) => Ok(None),
                    Err(e) if e.kind() == ErrorKind::MissingObject => Ok(Some(*id)),
                    Err(e) => Err(e),
                }
            })
            .collect()
    })?;
    let mut gone = None;
    let mut unknown = None;
    for r in found {
        match r {
            Ok(Some(id)) => gone = gone.or(Some(id)),
            Ok(None) => {}
            Err(e) => unknown = unknown.or(Some(e)),
        }
    }
    let Some(pack) = gone else {
        return Ok(unknown.map(|e| {
            format!("could not confirm that the packs of this backup are still stored: {e}")
        }));
    };
    repo.backend()
        .delete(crate::backend::ObjectKind::Snapshot, &snapshot.to_hex())?;
    Err(Error::new(
        ErrorKind::PruneConflict,
        format!(
            "pack {pack}, stored by this backup, was deleted before its snapshot became visible \
             (a prune on a machine whose clock runs ahead?); the snapshot was withdrawn, \
             nothing was committed: check the clocks and run the backup again"
        ),
    ))
}

/// Makes `p` absolute and removes `.` and `..` without following links.
fn absolute(p: &Path) -> Result<PathBuf> {
    let abs =
        std::path::absolute(p).map_err(|e| Error::io(format!("resolving {}", p.display()), e))?;
    let mut out = PathBuf::from("/");
    for c in abs.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Verifies and stores packs on `repo.backend().parallel_requests()`
/// threads, then records them in index objects: every 200 000 blobs or 16
/// packs, and at least once a minute even when no new pack arrives (a
/// stored pack must not stay unindexed for long: prune treats old unindexed
/// packs as leftovers of crashed backups).
///
/// The channel has no buffer, so at most one pack per upload thread is in
/// flight, besides the ones the saver is filling: memory is bounded by the
/// pack size times the connections, whatever the size of the dump.
fn upload_packs(
    repo: &Repository,
    rx: Receiver<FinishedPack>,
    failed: &AtomicBool,
) -> Result<Vec<Id>> {
    let rx = Mutex::new(rx);
    let (stored_tx, stored_rx) = mpsc::channel::<Result<IndexPack>>();
    thread::scope(|scope| {
        for _ in 0..repo.backend().parallel_requests().max(1) {
            let stored_tx = stored_tx.clone();
            let rx = &rx;
            scope.spawn(move || loop {
                // One thread waits for the next pack; the others wait for
                // the lock. A poisoned lock means a thread panicked: stop.
                let Ok(next) = rx.lock().map(|r| r.recv()) else {
                    break;
                };
                let Ok(pack) = next else {
                    break; // the saver is done
                };
                if failed.load(Ordering::SeqCst) {
                    continue; // after a failure, drain without storing
                }
                let stored = repo.store_pack(pack);
                if stored.is_err() {
                    failed.store(true, Ordering::SeqCst);
                }
                if stored_tx.send(stored).is_err() {
                    break;
                }
            });
        }
        drop(stored_tx);
        index_stored_packs(repo, &stored_rx, failed)
    })
}

/// Writes index objects for the packs the upload threads stored, until
/// they are all done; returns the packs, or the first error.
fn index_stored_packs(
    repo: &Repository,
    stored: &Receiver<Result<IndexPack>>,
    failed: &AtomicBool,
) -> Result<Vec<Id>> {
    let mut packs: Vec<Id> = Vec::new();
    let mut pending: Vec<IndexPack> = Vec::new();
    let mut pending_blobs = 0usize;
    let mut last_flush = std::time::Instant::now();
    let mut first_err: Option<Error> = None;
    let flush = |pending: &mut Vec<IndexPack>, first_err: &mut Option<Error>| {
        if let Err(e) = repo.save_index(pending) {
            failed.store(true, Ordering::SeqCst);
            first_err.get_or_insert(e);
        }
        pending.clear();
    };
    loop {
        let record = match stored.recv_timeout(Duration::from_secs(5)) {
            Ok(Ok(record)) => record,
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
                continue;
            }
            Err(RecvTimeoutError::Timeout) => {
                if !pending.is_empty() && last_flush.elapsed() >= INDEX_FLUSH_INTERVAL {
                    flush(&mut pending, &mut first_err);
                    pending_blobs = 0;
                    last_flush = std::time::Instant::now();
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        pending_blobs += record.blobs.len();
        packs.push(record.pack_id);
        pending.push(record);
        if pending_blobs >= INDEX_FLUSH_BLOBS
            || pending.len() >= INDEX_FLUSH_PACKS
            || last_flush.elapsed() >= INDEX_FLUSH_INTERVAL
        {
            flush(&mut pending, &mut first_err);
            pending_blobs = 0;
            last_flush = std::time::Instant::now();
        }
    }
    // Index what did land, even after an error: it is valid data that the
    // next run can deduplicate against.
    if !pending.is_empty() {
        if let Err(e) = repo.save_index(&pending) {
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(packs), Err)
}

/// Deduplicates, compresses, seals and packs blobs.
struct BlobSaver<'a> {
    repo: &'a Repository,
    index: CacheReader,
    /// [`Repository::cache_generation`] when `index` was taken.
    index_generation: u64,
    seen: HashSet<Id>,
    reused: HashSet<Id>,
    /// Delta bases the snapshot relies on (also in `reused`): the commit
    /// check must find them stored whole.
    bases: HashSet<Id>,
    packer: Packer<'a>,
    tx: SyncSender<FinishedPack>,
    level: i32,
    stats: SnapshotSummary,
    warnings: Vec<String>,
    sources_skipped: usize,
    sources_tried: usize,
    progress: &'a dyn BackupProgress,
    cancel: &'a AtomicBool,
    upload_failed: &'a AtomicBool,
    delta: Option<DeltaEncoder<'a>>,
    exclude: &'a Excludes,
    /// The device of the source being read (`one_file_system`).
    source_dev: Option<u64>,
    /// Entries left out by `exclude`.
    excluded: u64,
    /// Files with several hard links already stored in this backup: their
    /// content fields and size, for their other links.
    linked: HashMap<HardLink, (Vec<Id>, Vec<Id>, u64)>,
}

impl<'a> BlobSaver<'a> {
    fn new(
        repo: &'a Repository,
        tx: SyncSender<FinishedPack>,
        progress: &'a dyn BackupProgress,
        cancel: &'a AtomicBool,
        upload_failed: &'a AtomicBool,
        exclude: &'a Excludes,
    ) -> Result<Self> {
        Ok(BlobSaver {
            repo,
            index_generation: repo.cache_generation(),
            index: repo.index()?,
            seen: HashSet::new(),
            reused: HashSet::new(),
            bases: HashSet::new(),
            packer: Packer::new(repo)?,
            tx,
            level: repo.config().compression.level,
            stats: SnapshotSummary::default(),
            warnings: Vec::new(),
            sources_skipped: 0,
            sources_tried: 0,
            progress,
            cancel,
            upload_failed,
            delta: None,
            exclude,
            source_dev: None,
            excluded: 0,
            linked: HashMap::new(),
        })
    }

    /// Turns delta compression on if the repository has it on.
    fn enable_deltas(&mut self, hostname: &str, paths: &[String]) -> Result<()> {
        let (encoder, warning) =
            DeltaEncoder::open(self.repo, &self.index, (hostname, paths), self.cancel)?;
        if let Some(w) = warning {
            self.warn(w);
        }
        self.delta = encoder;
        Ok(())
    }

    fn flush_sketches(&mut self) -> Result<()> {
        match &mut self.delta {
            Some(d) => d.flush(),
            None => Ok(()),
        }
    }

    /// Encodes fresh data chunks: each on its own, or as a delta against a
    /// stored chunk it resembles when that is smaller.
    fn encode_fresh(
        &mut self,
        chunks: &[&[u8]],
        ids: &[Id],
        fresh: &[usize],
    ) -> Result<Vec<EncodedBlob>> {
        let Some(delta) = &mut self.delta else {
            let (keys, repo_id, level) = (self.repo.keys(), *self.repo.id(), self.level);
            return fresh
                .par_iter()
                .map(|&i| {
                    pack::encode_blob(keys, &repo_id, BlobType::Data, ids[i], chunks[i], level)
                })
                .collect();
        };
        let (encoded, warning) =
            delta.encode_chunks(&self.index, (chunks, ids, fresh), &mut self.bases)?;
        if let Some(w) = warning {
            self.progress.warning(&w);
        }
        Ok(encoded)
    }

    fn check_running(&self) -> Result<()> {
        if self.cancel.load(Ordering::SeqCst) {
            return Err(Error::interrupted());
        }
        if self.upload_failed.load(Ordering::SeqCst) {
            return Err(Error::new(ErrorKind::Io, "storing packs failed"));
        }
        Ok(())
    }

    /// Counts and reports an entry that cannot be read; the backup goes on
    /// without it.
    fn skip<T>(&mut self, path: &Path, err: impl std::fmt::Display) -> Result<Option<T>> {
        self.stats.files_unreadable += 1;
        self.warn(format!("{}: {err}", path.display()));
        Ok(None)
    }

    fn warn(&mut self, message: String) {
        self.progress.warning(&message);
        self.warnings.push(message);
    }

    /// Whether blob `id` must be stored. Blobs found in the index are
    /// remembered: before committing, the backup checks that no prune has
    /// marked their packs for too long (see [`verify_referenced`]).
    fn is_new(&mut self, id: &Id) -> Result<bool> {
        self.fresh_index()?;
        let live = match self.index.live(id) {
            Err(e) => {
                self.index = self.repo.index_after(e)?;
                self.index.live(id)?
            }
            Ok(live) => live,
        };
        Ok(self.is_new_given(id, live))
    }

    /// Takes a new index reader when the cache was replaced since this
    /// one was taken (its disk failed: [`Repository::index_after`]).
    fn fresh_index(&mut self) -> Result<()> {
        let now = self.repo.cache_generation();
        if now != self.index_generation {
            self.index = self.repo.index()?;
            self.index_generation = now;
        }
        Ok(())
    }

    /// [`Self::is_new`] for a blob already looked up: `live` says whether
    /// the index has it in a pack in use, and if it is a delta, its base
    /// ([`CacheReader::live`]), which is then relied on too.
    fn is_new_given(&mut self, id: &Id, live: Option<LiveCopy>) -> bool {
        if self.seen.contains(id) || self.reused.contains(id) {
            return false;
        }
        if let Some(copy) = live {
            self.reused.insert(*id);
            self.bases.extend(copy.base());
            return false;
        }
        self.seen.insert(*id);
        true
    }

    /// Stores a batch of data chunks; returns their IDs in order.
    fn save_chunks(&mut self, chunks: &[&[u8]]) -> Result<Vec<Id>> {
        self.check_running()?;
        self.fresh_index()?;
        let keys = self.repo.keys();
        // Hashed and looked up in the index on all cores: with millions of
        // chunks indexed, a lookup costs as much as hashing a chunk.
        let look = |index: &CacheReader| -> Vec<(Id, Result<Option<LiveCopy>>)> {
            chunks
                .par_iter()
                .map(|c| {
                    let id = keys.chunk_id(c);
                    (id, index.live(&id))
                })
                .collect()
        };
        let mut looked = look(&self.index);
        // The cache's disk failed under this reader: again on a new one.
        if let Some(pos) = looked.iter().position(|(_, r)| r.is_err()) {
            let (_, failed) = looked.swap_remove(pos);
            if let Err(e) = failed {
                self.index = self.repo.index_after(e)?;
                self.index_generation = self.repo.cache_generation();
            }
            looked = look(&self.index);
        }
        let mut ids = Vec::with_capacity(looked.len());
        let mut fresh = Vec::new();
        for (i, (id, live)) in looked.into_iter().enumerate() {
            if self.is_new_given(&id, live?) {
                fresh.push(i);
            }
            ids.push(id);
        }
        let encoded = self.encode_fresh(chunks, &ids, &fresh)?;
        for blob in encoded {
            self.add(blob)?;
        }
        Ok(ids)
    }

    /// Stores one tree or chunk-list blob.
    fn save_metadata(&mut self, blob_type: BlobType, bytes: &[u8]) -> Result<Id> {
        let id = pack::blob_id(self.repo.keys(), blob_type, bytes);
        if self.is_new(&id)? {
            let blob = pack::encode_blob(
                self.repo.keys(),
                self.repo.id(),
                blob_type,
                id,
                bytes,
                self.level,
            )?;
            let blob = match &mut self.delta {
                Some(d) => d.encode_metadata(&self.index, blob, bytes, &mut self.bases)?,
                None => blob,
            };
            self.add(blob)?;
        }
        Ok(id)
    }

    fn save_tree(&mut self, mut tree: Tree) -> Result<Id> {
        let bytes = tree.encode()?;
        self.save_metadata(BlobType::Tree, &bytes)
    }

    fn add(&mut self, blob: EncodedBlob) -> Result<()> {
        if blob.blob_type == BlobType::Data {
            self.stats.data_blobs += 1;
        } else {
            self.stats.tree_blobs += 1;
        }
        self.stats.data_added += u64::from(blob.raw_length);
        self.stats.data_added_packed += blob.sealed.len() as u64;
        match self.packer.add(&blob)? {
            Some(full) => self.send(full),
            None => Ok(()),
        }
    }

    /// Hands a finished pack to the upload thread.
    fn send(&self, pack: FinishedPack) -> Result<()> {
        self.tx
            .send(pack)
            .map_err(|_| Error::new(ErrorKind::Io, "storing packs failed"))
    }

    fn flush_all(&mut self) -> Result<()> {
        for pack in self.packer.finish_all()? {
            self.send(pack)?;
        }
        Ok(())
    }

    /// The content fields of a file node for these chunk IDs.
    fn content_of(&mut self, ids: Vec<Id>) -> Result<(Vec<Id>, Vec<Id>)> {
        tree::content_fields(ids, |list| self.save_metadata(BlobType::ChunkList, list))
    }

    /// Chunks and stores a stream. Three stages overlap: a thread reads
    /// blocks, a thread cuts them into chunks (without copying them), and
    /// this thread hashes, deduplicates, compresses and seals them (on all
    /// cores) and fills packs. The queues between the stages hold no block
    /// (a block is handed over when the next stage takes it), and used
    /// blocks go back to the reader: memory stays the same whatever the
    /// size of the stream. `abort` is called if storing fails, to unblock
    /// the reader (kill a command).
    fn save_stream<R: Read + Send + 'static>(
        &mut self,
        mut reader: R,
        abort: &dyn Fn(),
    ) -> Result<(Vec<Id>, u64)> {
        let mut chunker = BlockChunker::new(&self.repo.config().chunker, self.repo.chunker_seed());
        let block_size = chunker.block_size();
        let (block_tx, block_rx) = sync_channel::<io::Result<Vec<u8>>>(0);
        let (batch_tx, batch_rx) = sync_channel::<io::Result<ChunkBatch>>(0);
        let (recycle_tx, recycle_rx) = sync_channel::<Vec<u8>>(1);
        // Not scoped threads: when the backup is interrupted while the
        // reader is blocked on a silent pipe, the backup must still end; the
        // threads then exit at their next send, when they find no receiver.
        let reader_thread = thread::spawn(move || loop {
            let mut block = recycle_rx.try_recv().unwrap_or_default();
            block.resize(block_size, 0);
            match read_block(&mut reader, &mut block) {
                Ok(ended) => {
                    if !block.is_empty() && block_tx.send(Ok(block)).is_err() {
                        return;
                    }
                    if ended {
                        return;
                    }
                }
                Err(e) => {
                    let _ = block_tx.send(Err(e));
                    return;
                }
            }
        });
        let chunker_thread = thread::spawn(move || {
            for block in block_rx {
                let batch = block.map(|b| chunker.push(b));
                let failed = batch.is_err();
                if batch_tx.send(batch).is_err() || failed {
                    return;
                }
            }
            if let Some(last) = chunker.finish() {
                let _ = batch_tx.send(Ok(last));
            }
        });
        let result = (|| {
            let mut ids = Vec::new();
            let mut total = 0u64;
            loop {
                let batch = match batch_rx.recv_timeout(Duration::from_millis(200)) {
                    Ok(batch) => batch.map_err(|e| Error::io("reading the backup stream", e))?,
                    Err(RecvTimeoutError::Timeout) => {
                        self.check_running()?;
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                };
                let n = batch.bytes();
                ids.extend(self.save_chunks(&batch.chunks())?);
                total += n;
                self.progress.bytes_read(n);
                let _ = recycle_tx.try_send(batch.into_block());
            }
            Ok((ids, total))
        })();
        drop(batch_rx);
        if result.is_err() {
            abort();
        } else {
            for t in [reader_thread, chunker_thread] {
                t.join()
                    .map_err(|_| Error::new(ErrorKind::Io, "the reading thread panicked"))?;
            }
        }
        result
    }

    /// Chunks and stores a small file on this thread: read in one block
    /// of its size and cut without copying a chunk (more blocks only if
    /// it grew since it was listed).
    fn save_small<R: Read>(&mut self, mut reader: R, size_hint: u64) -> Result<(Vec<Id>, u64)> {
        let mut chunker = BlockChunker::new(&self.repo.config().chunker, self.repo.chunker_seed());
        let mut block_size = usize::try_from(size_hint)
            .unwrap_or(usize::MAX)
            .saturating_add(1);
        let mut ids = Vec::new();
        let mut total = 0u64;
        loop {
            let mut block = vec![0u8; block_size];
            let ended = read_block(&mut reader, &mut block).map_err(|e| Error::io("reading", e))?;
            let batch = match ended {
                true => chunker.push_last(block),
                false => chunker.push(block),
            };
            let n = batch.bytes();
            if !batch.is_empty() {
                ids.extend(self.save_chunks(&batch.chunks())?);
            }
            total += n;
            self.progress.bytes_read(n);
            if ended {
                return Ok((ids, total));
            }
            block_size = chunker.block_size();
        }
    }

    /// Stores a stream as the single file of a snapshot.
    fn save_stream_file<R: Read + Send + 'static>(
        &mut self,
        reader: R,
        filename: &str,
        time: SnapshotTime,
        abort: &dyn Fn(),
    ) -> Result<Id> {
        let (ids, size) = self.save_stream(reader, abort)?;
        self.stats.total_files_processed += 1;
        self.stats.total_bytes_processed += size;
        let mut node = Node::new(OsStr::new(filename), NodeKind::File);
        node.mode = 0o644;
        let me = fs::metadata("/proc/self").ok();
        node.uid = me.as_ref().map(|m| m.uid()).unwrap_or(0);
        node.gid = me.as_ref().map(|m| m.gid()).unwrap_or(0);
        node.mtime = time.timestamp().as_second();
        node.mtime_nsec = time.timestamp().subsec_nanosecond().max(0) as u32;
        node.size = size;
        (node.content, node.content_lists) = self.content_of(ids)?;
        self.save_tree(Tree { nodes: vec![node] })
    }

    /// Runs `sh -c command` and stores its standard output.
    fn save_command(
        &mut self,
        command: &str,
        filename: &str,
        time: SnapshotTime,
        inspector: &Arc<Mutex<Inspector>>,
    ) -> Result<Id> {
        let mut child = crate::pg::dumpcheck::without_secrets(&mut Command::new("sh"))
            .arg("-c")
            .arg(command)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| {
                Error::new(
                    ErrorKind::CommandFailed,
                    format!("cannot start `{command}`"),
                )
                .with_source(e)
            })?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| Error::new(ErrorKind::CommandFailed, "no stdout from the command"))?;
        let child = Mutex::new(child);
        let kill = || {
            if let Ok(mut c) = child.lock() {
                let _ = c.kill();
            }
        };
        let stdout = InspectingReader::new(stdout, Arc::clone(inspector));
        let saved = self.save_stream_file(stdout, filename, time, &kill);
        let mut child: Child = child
            .into_inner()
            .map_err(|_| Error::new(ErrorKind::Io, "command state poisoned"))?;
        if saved.is_err() {
            let _ = child.kill();
            let _ = child.wait();
            return saved;
        }
        let status = child.wait().map_err(|e| {
            Error::new(ErrorKind::CommandFailed, format!("waiting for `{command}`")).with_source(e)
        })?;
        if !status.success() {
            let how = match (
                status.code(),
                std::os::unix::process::ExitStatusExt::signal(&status),
            ) {
                (Some(code), _) => format!("exited with status {code}"),
                (None, Some(sig)) => format!("was killed by signal {sig}"),
                _ => "failed".to_string(),
            };
            return Err(Error::new(
                ErrorKind::CommandFailed,
                format!("dump command `{command}` {how}; no snapshot was written"),
            ));
        }
        saved
    }

    /// Stores files and directories; returns the root tree.
    fn save_paths(&mut self, paths: &[PathBuf]) -> Result<Id> {
        let mut root = Trie::default();
        for p in paths {
            let mut node = &mut root;
            for c in p.components() {
                if let Component::Normal(name) = c {
                    node = node.children.entry(name.to_os_string()).or_default();
                }
            }
            node.is_source = true;
        }
        if root.is_source {
            // "/" itself was given.
            self.source_dev = fs::symlink_metadata("/").ok().map(|m| m.dev());
            return self
                .save_dir(Path::new("/"))?
                .ok_or_else(|| Error::new(ErrorKind::SourceNotFound, "cannot read directory /"));
        }
        let root = self.save_trie(Path::new("/"), &root)?;
        // Duplicate and nested sources merge in the trie: compare with the
        // sources actually tried.
        if self.sources_skipped >= self.sources_tried {
            return Err(Error::new(
                ErrorKind::SourceNotFound,
                "none of the backup sources could be read; no snapshot was written",
            ));
        }
        Ok(root)
    }

    fn save_trie(&mut self, dir: &Path, trie: &Trie) -> Result<Id> {
        let mut nodes = Vec::new();
        for (name, child) in &trie.children {
            let path = dir.join(name);
            if child.is_source {
                if self.exclude.patterns.matches(&path) {
                    self.excluded += 1;
                    continue;
                }
                self.sources_tried += 1;
                self.source_dev = fs::symlink_metadata(&path).ok().map(|m| m.dev());
                match self.save_entry(&path, name)? {
                    Some(node) => nodes.push(node),
                    None => self.sources_skipped += 1,
                }
            } else {
                // A directory on the way to a source; follow a symlink here,
                // as reading the source did, and store what it points to.
                let meta = fs::metadata(&path)
                    .map_err(|e| Error::io(format!("stat {}", path.display()), e))?;
                let mut node = node_from_meta(name, &meta, NodeKind::Dir);
                node.subtree = Some(self.save_trie(&path, child)?);
                nodes.push(node);
            }
        }
        self.save_tree(Tree { nodes })
    }

    /// Stores a directory; `None` if it cannot be listed (a warning).
    fn save_dir(&mut self, dir: &Path) -> Result<Option<Id>> {
        let mut names: Vec<OsString> = Vec::new();
        let rd = match fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) => return self.skip(dir, e),
        };
        for entry in rd {
            match entry {
                Ok(e) => names.push(e.file_name()),
                Err(e) => {
                    self.stats.files_unreadable += 1;
                    self.warn(format!("{}: {e}", dir.display()));
                }
            }
        }
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        let mut nodes = Vec::with_capacity(names.len());
        for name in names {
            let path = dir.join(&name);
            if self.exclude.patterns.matches(&path) {
                self.excluded += 1;
                continue;
            }
            if let Some(node) = self.save_entry(&path, &name)? {
                nodes.push(node);
            }
        }
        self.save_tree(Tree { nodes }).map(Some)
    }

    /// Stores one entry with its extended attributes; `None` if it could
    /// not be read (a warning).
    fn save_entry(&mut self, path: &Path, name: &OsStr) -> Result<Option<Node>> {
        let Some(mut node) = self.save_entry_itself(path, name)? else {
            return Ok(None);
        };
        match crate::sys::read_xattrs(path) {
            Ok(attrs) => {
                node.xattrs = attrs
                    .into_iter()
                    .filter_map(|(name, value)| {
                        Some(Xattr {
                            name: String::from_utf8(name).ok()?,
                            value: hex::encode(value),
                        })
                    })
                    .collect();
            }
            Err(e) => self.warn(format!(
                "{}: extended attributes not read: {e}",
                path.display()
            )),
        }
        Ok(Some(node))
    }

    fn save_entry_itself(&mut self, path: &Path, name: &OsStr) -> Result<Option<Node>> {
        self.check_running()?;
        let meta = match fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) => return self.skip(path, e),
        };
        let ft = meta.file_type();
        if self.exclude.one_file_system && self.source_dev.is_some_and(|d| d != meta.dev()) {
            // Another file system: a mount point is kept, empty.
            if !ft.is_dir() {
                self.excluded += 1;
                return Ok(None);
            }
            let mut node = node_from_meta(name, &meta, NodeKind::Dir);
            node.subtree = Some(self.save_tree(Tree { nodes: Vec::new() })?);
            self.excluded += 1;
            return Ok(Some(node));
        }
        if ft.is_dir() {
            if self.exclude.by_marker(path) {
                self.excluded += 1;
                return Ok(None);
            }
            let mut node = node_from_meta(name, &meta, NodeKind::Dir);
            match self.save_dir(path)? {
                Some(id) => node.subtree = Some(id),
                None => return Ok(None),
            }
            self.stats.total_dirs_processed += 1;
            Ok(Some(node))
        } else if ft.is_file() {
            let link = (meta.nlink() > 1).then(|| HardLink {
                dev: meta.dev(),
                ino: meta.ino(),
            });
            if let Some((content, lists, size)) = link.and_then(|l| self.linked.get(&l)) {
                // Another link of a file stored in this backup: read once.
                let mut node = node_from_meta(name, &meta, NodeKind::File);
                (node.content, node.content_lists, node.size) =
                    (content.clone(), lists.clone(), *size);
                node.hardlink = link;
                self.stats.total_files_processed += 1;
                return Ok(Some(node));
            }
            let file = match File::open(path) {
                Ok(f) => f,
                Err(e) => return self.skip(path, e),
            };
            let saved = if meta.len() >= THREADED_FILE_SIZE {
                self.save_stream(file, &|| {})
            } else {
                self.save_small(file, meta.len())
            };
            let (ids, size) = match saved {
                Ok(v) => v,
                Err(e)
                    if e.kind() == ErrorKind::Io && !self.upload_failed.load(Ordering::SeqCst) =>
                {
                    return self.skip(path, e);
                }
                Err(e) => return Err(e),
            };
            let mut node = node_from_meta(name, &meta, NodeKind::File);
            node.size = size;
            (node.content, node.content_lists) = self.content_of(ids)?;
            if let Some(l) = link {
                node.hardlink = link;
                self.linked
                    .insert(l, (node.content.clone(), node.content_lists.clone(), size));
            }
            self.stats.total_files_processed += 1;
            self.stats.total_bytes_processed += size;
            Ok(Some(node))
        } else if ft.is_symlink() {
            let target = match fs::read_link(path) {
                Ok(t) => t,
                Err(e) => return self.skip(path, e),
            };
            let mut node = node_from_meta(name, &meta, NodeKind::Symlink);
            let (t, raw) = tree::encode_os_str(target.as_os_str());
            node.target = Some(t);
            node.target_raw = raw;
            Ok(Some(node))
        } else {
            let kind = if ft.is_fifo() {
                NodeKind::Fifo
            } else if ft.is_socket() {
                NodeKind::Socket
            } else if ft.is_char_device() {
                NodeKind::Chardev
            } else {
                NodeKind::Blockdev
            };
            let mut node = node_from_meta(name, &meta, kind);
            if matches!(kind, NodeKind::Chardev | NodeKind::Blockdev) {
                node.device = Some(meta.rdev());
            }
            Ok(Some(node))
        }
    }
}

#[derive(Default)]
struct Trie {
    is_source: bool,
    children: BTreeMap<OsString, Trie>,
}

fn node_from_meta(name: &OsStr, meta: &Metadata, kind: NodeKind) -> Node {
    let mut node = Node::new(name, kind);
    node.mode = meta.mode() & 0o7777;
    node.uid = meta.uid();
    node.gid = meta.gid();
    node.mtime = meta.mtime();
    node.mtime_nsec = meta.mtime_nsec().clamp(0, 999_999_999) as u32;
    node
}

/// The error for a stream that ended without a byte.
fn empty_stream(filename: &str, source: &SnapshotSource) -> Error {
    let from = match &source.command {
        Some(_) => "the command exited 0 but wrote nothing to its standard output",
        None => "standard input ended without a byte",
    };
    Error::new(
        ErrorKind::DumpInvalid,
        format!(
            "{filename} is empty: {from}, which is what a failed dump looks like; no snapshot \
             was written (--allow-empty saves an empty one on purpose)"
        ),
    )
}

/// A dump that failed validation at backup: no snapshot is written, and
/// the message says so (a drill of a stored dump says only what is wrong).
fn not_written(e: Error) -> Error {
    if e.kind() == ErrorKind::DumpInvalid {
        Error::new(
            ErrorKind::DumpInvalid,
            format!(
                "{}; no snapshot was written (--no-validate skips this check)",
                e.message()
            ),
        )
    } else {
        e
    }
}

/// The operation as methods on both handles: `repo.backup(...)`.
impl Repository {
    /// Backs up `source` and writes its snapshot: see [`backup`].
    pub fn backup(
        &self,
        source: BackupSource,
        opts: &BackupOptions,
        progress: &dyn BackupProgress,
        cancel: &AtomicBool,
    ) -> Result<BackupOutcome> {
        backup(self, source, opts, progress, cancel)
    }
}

impl crate::repo::appender::Appender {
    /// Backs up `source` and writes its snapshot: see [`backup`]. With a
    /// write-only key, without a parent and without deltas.
    pub fn backup(
        &self,
        source: BackupSource,
        opts: &BackupOptions,
        progress: &dyn BackupProgress,
        cancel: &AtomicBool,
    ) -> Result<BackupOutcome> {
        backup(self, source, opts, progress, cancel)
    }
}
