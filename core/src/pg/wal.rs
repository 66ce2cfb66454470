//! PostgreSQL WAL archiving: `wal-push` (`archive_command`) and
//! `wal-fetch` (`restore_command`), `repo-format.md` §10.
//!
//! A WAL file is cut into 1 MiB pieces, deduplicated, compressed and
//! sealed like a backed-up file's chunks (its blobs go into packs,
//! indexed as usual); then a WAL
//! record (`wal/<id>`) names it. The record's object name is a keyed hash
//! of the WAL file name, so a fetch is one request for the record, with no
//! listing, and the storage does not learn WAL file names. The record is
//! the commit point: it is written last and create-only, so a WAL file is
//! archived exactly once, a retried push of the same contents succeeds,
//! and a push of different contents under an archived name is refused.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

use crate::backend::claim::Exclusive;
use crate::backend::ObjectKind;
use crate::chunk::chunker::read_full;
use crate::error::{Error, ErrorKind, Result};
use crate::format::tree::{Node, NodeKind, Tree};
use crate::id::Id;
use crate::repo::appender::CanAdd;
use crate::repo::commit::verify_referenced;
use crate::repo::packer::BlobWriter;
use crate::repo::reader::write_chunks;
use crate::repo::repository::Repository;
pub use crate::repo::wal_record::{load, WalList, WalRecord};
use crate::time::SnapshotTime;

/// WAL files are cut into pieces of this many bytes, not by content: a
/// segment's contents never shift (PostgreSQL writes each page at its
/// place), so content-defined cuts find no more duplicates than fixed
/// ones, and a larger piece compresses better: zstd sees more of the
/// segment at once (`docs/design.md` §3.4).
const WAL_PIECE: usize = 1 << 20;
/// Pieces read, compressed and sealed at once (in parallel).
const PIECES_AT_ONCE: usize = 16;

/// The zstd level of WAL pieces: at least 3 unless compression is off. On
/// a 1 MiB piece of WAL, level 3 is as fast as level 1 (on 2 cores, a
/// segment's pieces compress in parallel) and about 9 % smaller
/// (`benches/wal-push.sh`, `docs/design.md` §3.4).
fn wal_level(repository_level: i32) -> i32 {
    if repository_level == 0 {
        0
    } else {
        repository_level.max(WAL_MIN_LEVEL)
    }
}
const WAL_MIN_LEVEL: i32 = 3;

/// Checks a WAL file name: what PostgreSQL archives (`%f`) is a plain file
/// name of letters, digits, `.`, `_` and `-`.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{name:?} is not a WAL file name (expected a name like 000000010000000000000003)"
        )))
    }
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutcome {
    /// Stored now.
    Stored {
        /// The record written.
        record: WalRecord,
        /// Plaintext bytes of the new blobs (the rest deduplicated).
        added: u64,
    },
    /// Already archived with the same contents (a retry): nothing stored.
    AlreadyArchived(WalRecord),
}

/// The stored record object of WAL file `name` (its name and bytes), if
/// there is one.
fn stored_record(repo: &Repository, name: &str) -> Result<Option<(Id, Vec<u8>)>> {
    let id = repo.keys().wal_object_id(name);
    match repo.backend().get(ObjectKind::Wal, &id.to_hex()) {
        Ok(bytes) => Ok(Some((id, bytes))),
        Err(e) if e.kind() == ErrorKind::MissingObject => Ok(None),
        Err(e) => Err(e),
    }
}

/// Reads an archived record, if there is one.
fn existing(repo: &Repository, name: &str) -> Result<Option<WalRecord>> {
    stored_record(repo, name)?
        .map(|(id, bytes)| WalRecord::decode(repo, &bytes, &id))
        .transpose()
}

/// What a push of `name` (`size` bytes, BLAKE3 `hash`) finds archived: a
/// record of the same contents (a retry: done), nothing, or a conflict. A
/// write-only key cannot open the record: it compares the contents tag
/// stored in the clear (`repo-format.md` §10.2), and reports the record
/// from what it pushed.
fn already_archived(
    repo: &Repository,
    name: &str,
    size: u64,
    hash: &str,
    hostname: &str,
) -> Result<Option<PushOutcome>> {
    if !repo.is_write_only() {
        return existing(repo, name)?
            .map(|rec| same_or_conflict(rec, size, hash))
            .transpose();
    }
    let Some((id, bytes)) = stored_record(repo, name)? else {
        return Ok(None);
    };
    if WalRecord::stored_tag(&bytes, &id)? != WalRecord::tag_of(repo.keys(), name, size, hash)? {
        return Err(Error::new(
            ErrorKind::WalConflict,
            format!(
                "WAL file {name} is already archived with different contents (this one: {size} \
                 bytes, BLAKE3 {}…); refusing to replace it",
                &hash[..16.min(hash.len())]
            ),
        ));
    }
    Ok(Some(PushOutcome::AlreadyArchived(WalRecord {
        id,
        name: name.to_string(),
        time: SnapshotTime::now(),
        hostname: hostname.to_string(),
        size,
        blake3: hash.to_string(),
        tree: Id::default(),
    })))
}

/// An archived record against the contents being pushed: the same is a
/// successful retry, anything else is refused.
fn same_or_conflict(rec: WalRecord, size: u64, hash: &str) -> Result<PushOutcome> {
    if rec.size == size && rec.blake3 == hash {
        Ok(PushOutcome::AlreadyArchived(rec))
    } else {
        Err(Error::new(
            ErrorKind::WalConflict,
            format!(
                "WAL file {} is already archived with different contents ({} bytes, BLAKE3 {}…; \
                 this one: {size} bytes, {}…); refusing to replace it",
                rec.name,
                rec.size,
                &rec.blake3[..16.min(rec.blake3.len())],
                &hash[..16.min(hash.len())]
            ),
        ))
    }
}

/// BLAKE3 of a file, and its size.
fn hash_file(path: &Path) -> Result<(u64, String)> {
    let file = File::open(path).map_err(|e| open_error(path, e))?;
    let mut hasher = blake3::Hasher::new();
    let size = io::copy(&mut io::BufReader::new(file), &mut hasher)
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    Ok((size, hasher.finalize().to_hex().to_string()))
}

fn open_error(path: &Path, e: io::Error) -> Error {
    if e.kind() == io::ErrorKind::NotFound {
        Error::new(
            ErrorKind::SourceNotFound,
            format!("WAL file {} does not exist", path.display()),
        )
    } else {
        Error::io(format!("opening {}", path.display()), e)
    }
}

/// The archived pseudo-file that names the PostgreSQL cluster whose WAL
/// the repository archives: its contents are the system identifier in
/// decimal and a newline (`repo-format.md` §10.6). PostgreSQL never
/// archives a file of that name.
pub const IDENTITY: &str = "cairn.system_identifier";

/// The system identifier in the long page header that starts every WAL
/// segment (PostgreSQL's `XLogLongPageHeaderData`: magic u16, info u16,
/// timeline u32, page address u64, remaining length u32, 4 bytes of
/// padding, system identifier u64, segment size u32, block size u32;
/// little-endian here). `None` when `name` is not a segment's (history
/// and backup-label files have no header) or the header does not look
/// like one.
pub fn system_identifier(name: &str, path: &Path) -> Result<Option<u64>> {
    Ok(long_header(name, path)?
        .and_then(|(head, (timeline, _))| parse_long_header(&head, timeline)))
}

/// The first 40 bytes of segment file `path` archived as `name`, with the
/// name's timeline and position; `None` when `name` is not a segment's or
/// the file is shorter.
fn long_header(name: &str, path: &Path) -> Result<Option<([u8; 40], Segment)>> {
    let is_segment =
        name.len() == 24 || name.strip_suffix(".partial").is_some_and(|n| n.len() == 24);
    let Some((timeline, position)) = segment_of(name).filter(|_| is_segment) else {
        return Ok(None);
    };
    let mut head = [0u8; 40];
    let mut file = File::open(path).map_err(|e| open_error(path, e))?;
    if io::Read::read_exact(&mut file, &mut head).is_err() {
        return Ok(None);
    }
    Ok(Some((head, (timeline, position))))
}

/// Refuses a segment whose valid long header says it holds the WAL of
/// another position than `name`'s (its page address;
/// [`ErrorKind::DumpInvalid`]): archived under this name, PostgreSQL
/// would take it for the end of WAL and end a recovery there.
fn check_page_address(name: &str, path: &Path) -> Result<()> {
    let Some((head, (timeline, (log, seg)))) = long_header(name, path)? else {
        return Ok(());
    };
    if parse_long_header(&head, timeline).is_none() {
        return Ok(());
    }
    let seg_size = u64::from(u32::from_le_bytes([head[32], head[33], head[34], head[35]]));
    let mut addr = [0u8; 8];
    addr.copy_from_slice(&head[8..16]);
    let addr = u64::from_le_bytes(addr);
    let expected = (u64::from(log) << 32) + u64::from(seg) * seg_size;
    if addr != expected {
        return Err(Error::new(
            ErrorKind::DumpInvalid,
            format!(
                "{} is not WAL file {name}: its first page holds the WAL at {:X}/{:X}, and {name} \
                 starts at {:X}/{:X} (a file renamed or copied under the wrong name); refusing to \
                 archive it, which would end a recovery there",
                path.display(),
                addr >> 32,
                addr & 0xFFFF_FFFF,
                expected >> 32,
                expected & 0xFFFF_FFFF
            ),
        ));
    }
    Ok(())
}

fn parse_long_header(head: &[u8; 40], timeline: u32) -> Option<u64> {
    let u16_at = |i: usize| u16::from_le_bytes([head[i], head[i + 1]]);
    let u32_at = |i: usize| u32::from_le_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
    let mut sysid = [0u8; 8];
    sysid.copy_from_slice(&head[24..32]);
    let sysid = u64::from_le_bytes(sysid);
    const XLP_LONG_HEADER: u16 = 0x0002;
    let (seg_size, block) = (u32_at(32), u32_at(36));
    let plausible = u16_at(2) & XLP_LONG_HEADER != 0
        // A segment that begins a timeline starts with a page copied from
        // its parent's: its header may name an older timeline.
        && (1..=timeline).contains(&u32_at(4))
        && seg_size.is_power_of_two()
        && (1 << 20..=1 << 30).contains(&seg_size)
        && block.is_power_of_two()
        && (1 << 10..=1 << 16).contains(&block)
        && sysid != 0;
    plausible.then_some(sysid)
}

/// The contents of [`IDENTITY`] for cluster `sysid`: the text, its size
/// and its BLAKE3 (hex).
fn identity_contents(sysid: u64) -> (String, u64, String) {
    let text = format!("{sysid}\n");
    let hash = blake3::hash(text.as_bytes()).to_hex().to_string();
    let size = text.len() as u64;
    (text, size, hash)
}

/// Makes sure the repository archives the WAL of cluster `sysid`: the
/// first segment pushed records it (as [`IDENTITY`]); a segment of another
/// cluster is refused. Works with a write-only key: it compares the
/// stored contents tag.
fn check_cluster(
    repo: &Repository,
    name: &str,
    sysid: u64,
    hostname: &str,
    cancel: &AtomicBool,
) -> Result<()> {
    let (text, size, hash) = identity_contents(sysid);
    let other = |theirs: Option<String>| {
        Error::new(
            ErrorKind::WrongCluster,
            format!(
                "WAL file {name} is from PostgreSQL cluster {sysid} (its system identifier), but \
                 this repository archives the WAL of {}: refusing it (one repository, or S3 \
                 prefix, per cluster: repo-format.md §10.6)",
                theirs.map_or("another cluster".to_string(), |t| format!("cluster {t}"))
            ),
        )
    };
    let known = match already_archived(repo, IDENTITY, size, &hash, hostname) {
        Ok(known) => known,
        Err(e) if e.kind() == ErrorKind::WalConflict => {
            return Err(other(archived_identity(repo).ok().flatten()))
        }
        Err(e) => return Err(e),
    };
    if known.is_some() {
        return Ok(());
    }
    // The first segment: record the cluster.
    let mut tmp =
        tempfile::NamedTempFile::new().map_err(|e| Error::io("creating a temporary file", e))?;
    tmp.write_all(text.as_bytes())
        .map_err(|e| Error::io("writing a temporary file", e))?;
    match push(repo, IDENTITY, tmp.path(), hostname, cancel) {
        Ok(_) => Ok(()),
        // Another cluster's first push won the race.
        // Refused: another first push won (of this cluster: fine; of
        // another: refused), or is still recording its cluster (a retry
        // decides: the conflict error, exit 28, says so).
        Err(e) if e.kind() == ErrorKind::WalConflict => match cluster_matches(repo, sysid)? {
            Some(true) => Ok(()),
            Some(false) => Err(other(archived_identity(repo).ok().flatten())),
            None => Err(e),
        },
        Err(e) => Err(e),
    }
}

/// Whether WAL file `name` is archived (one request; any key).
pub fn is_archived(repo: &impl CanAdd, name: &str) -> Result<bool> {
    let repo = repo.repository(crate::repo::appender::sealed::TOKEN);
    Ok(stored_record(repo, name)?.is_some())
}

/// Whether the repository archives the WAL of cluster `sysid`: `None`
/// when no cluster is recorded yet. Any key (by contents tag).
pub fn cluster_matches(repo: &impl CanAdd, sysid: u64) -> Result<Option<bool>> {
    let repo = repo.repository(crate::repo::appender::sealed::TOKEN);
    let Some((id, bytes)) = stored_record(repo, IDENTITY)? else {
        return Ok(None);
    };
    let (_, size, hash) = identity_contents(sysid);
    let ours = WalRecord::tag_of(repo.keys(), IDENTITY, size, &hash)?;
    Ok(Some(WalRecord::stored_tag(&bytes, &id)? == ours))
}

/// The system identifier of the cluster whose WAL the repository
/// archives, if one was recorded (needs a full key).
pub fn archived_identity(repo: &impl CanAdd) -> Result<Option<String>> {
    let repo = repo.repository(crate::repo::appender::sealed::TOKEN);
    if repo.is_write_only() {
        return Ok(None);
    }
    let rec = match archived(repo, IDENTITY) {
        Ok(rec) => rec,
        Err(e) if e.kind() == ErrorKind::SourceNotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut text = Vec::new();
    write_archived(repo, &rec, &mut text, &AtomicBool::new(false))?;
    Ok(Some(String::from_utf8_lossy(&text).trim().to_string()))
}

/// Files up to this size (every WAL segment size up to 64 MiB) are read
/// into memory once, hashed and stored from there.
const READ_WHOLE_MAX: u64 = 64 << 20;

/// The contents of `path` when it is at most [`READ_WHOLE_MAX`] bytes.
fn read_whole(path: &Path) -> Result<Option<Vec<u8>>> {
    use std::io::Read;
    let file = File::open(path).map_err(|e| open_error(path, e))?;
    let len = file
        .metadata()
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?
        .len();
    if len > READ_WHOLE_MAX {
        return Ok(None);
    }
    let mut bytes = Vec::with_capacity(len as usize + 1);
    file.take(READ_WHOLE_MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    Ok((bytes.len() as u64 <= READ_WHOLE_MAX).then_some(bytes))
}

/// Stores `bytes` as pieces of [`WAL_PIECE`] bytes, [`PIECES_AT_ONCE`] at
/// a time; returns their IDs.
fn save_pieces(writer: &mut BlobWriter, bytes: &[u8], cancel: &AtomicBool) -> Result<Vec<Id>> {
    let mut ids = Vec::new();
    for batch in bytes.chunks(WAL_PIECE * PIECES_AT_ONCE) {
        if cancel.load(Ordering::SeqCst) {
            return Err(Error::interrupted());
        }
        let pieces: Vec<&[u8]> = batch.chunks(WAL_PIECE).collect();
        ids.extend(writer.save_chunks(&pieces)?);
    }
    Ok(ids)
}

/// Stores a WAL file larger than [`READ_WHOLE_MAX`] piece by piece as it
/// reads it, and checks that it read what was hashed before (`size`,
/// `hash`); returns the pieces' IDs.
fn store_streaming(
    writer: &mut BlobWriter,
    path: &Path,
    (size, hash): (u64, &str),
    cancel: &AtomicBool,
) -> Result<Vec<Id>> {
    let mut file = File::open(path).map_err(|e| open_error(path, e))?;
    let mut buf = vec![0u8; WAL_PIECE * PIECES_AT_ONCE];
    let mut ids = Vec::new();
    let mut hasher = blake3::Hasher::new();
    let mut read = 0u64;
    loop {
        let n = read_full(&mut file, &mut buf)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        read += n as u64;
        ids.extend(save_pieces(writer, &buf[..n], cancel)?);
        if n < buf.len() {
            break;
        }
    }
    // The file changed while it was read: PostgreSQL does not do that to a
    // file it archives, so something else is wrong.
    if read != size || hasher.finalize().to_hex().as_str() != hash {
        return Err(Error::new(
            ErrorKind::Io,
            format!(
                "{} changed while it was archived; nothing was archived",
                path.display()
            ),
        ));
    }
    Ok(ids)
}

/// Archives the file at `path` as WAL file `name`. Succeeds only once the
/// record is durably stored (or the same contents were archived before).
/// A WAL segment of another cluster than the repository's is refused
/// ([`ErrorKind::WrongCluster`]).
pub fn push(
    repo: &impl CanAdd,
    name: &str,
    path: &Path,
    hostname: &str,
    cancel: &AtomicBool,
) -> Result<PushOutcome> {
    let repo = repo.repository(crate::repo::appender::sealed::TOKEN);
    check_name(name)?;
    if let Some(sysid) = system_identifier(name, path)? {
        // Another cluster's WAL is named as such first (exit 29).
        check_cluster(repo, name, sysid, hostname, cancel)?;
        check_page_address(name, path)?;
    }
    // Hashed first: a retry of an archived file costs one read and one
    // request, and stores nothing. A segment is read once, into memory.
    let whole = read_whole(path)?;
    let (size, hash) = match &whole {
        Some(bytes) => (bytes.len() as u64, blake3::hash(bytes).to_hex().to_string()),
        None => hash_file(path)?,
    };
    if let Some(done) = already_archived(repo, name, size, &hash, hostname)? {
        return Ok(done);
    }
    let mut writer =
        BlobWriter::new(repo, false)?.with_data_level(wal_level(repo.config().compression.level));
    let ids = match &whole {
        Some(bytes) => save_pieces(&mut writer, bytes, cancel)?,
        None => store_streaming(&mut writer, path, (size, &hash), cancel)?,
    };
    let added = writer.new_data_bytes();
    let mut node = Node::new(std::ffi::OsStr::new(name), NodeKind::File);
    node.mode = 0o600;
    node.size = size;
    (node.content, node.content_lists) = writer.content_of(ids)?;
    let mut tree = Tree { nodes: vec![node] };
    let tree_id = writer.save_tree(&mut tree)?;
    let referenced = writer.finish()?;
    verify_referenced(repo, &referenced.0, &referenced.1)?;
    let record = WalRecord {
        id: repo.keys().wal_object_id(name),
        name: name.to_string(),
        time: SnapshotTime::now(),
        hostname: hostname.to_string(),
        size,
        blake3: hash.clone(),
        tree: tree_id,
    };
    match record.store(repo)? {
        Exclusive::Created => Ok(PushOutcome::Stored { record, added }),
        // Another push of the same name won the race.
        Exclusive::Exists => match already_archived(repo, name, size, &hash, hostname)? {
            Some(done) => Ok(done),
            None => Err(Error::new(
                ErrorKind::Io,
                format!("WAL record for {name} was neither stored nor found"),
            )),
        },
        Exclusive::Contended => Err(Error::new(
            ErrorKind::WalConflict,
            format!(
                "another push of WAL file {name} with different contents is running at the same \
                 time; nothing was archived (a retry decides)"
            ),
        )),
    }
}

/// Writes archived WAL file `name` to `dest` (replacing it): through a
/// temporary file in the same directory, verified against the record's
/// size and hash, then renamed, so that PostgreSQL never sees part of it.
/// Not synced (a tenth of the time of a fetch): PostgreSQL treats what
/// restore_command writes as temporary and fetches it again after a
/// crash, as it does with pgBackRest's archive-get. A file that is not archived is
/// [`ErrorKind::SourceNotFound`] (PostgreSQL asks for files past the end
/// of the archive; that is how recovery knows it reached the end).
pub fn fetch(repo: &Repository, name: &str, dest: &Path, cancel: &AtomicBool) -> Result<WalRecord> {
    fetch_to(repo, name, dest, false, cancel)
}

/// [`fetch`], synced before the rename when `sync` (a prefetch spool
/// outlives a crash, and its files are handed over unchecked).
pub(crate) fn fetch_to(
    repo: &Repository,
    name: &str,
    dest: &Path,
    sync: bool,
    cancel: &AtomicBool,
) -> Result<WalRecord> {
    let rec = archived(repo, name)?;
    let dir = match dest.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".cairn-wal-")
        .tempfile_in(&dir)
        .map_err(|e| Error::io(format!("creating a file in {}", dir.display()), e))?;
    let mut out = io::BufWriter::new(tmp.as_file_mut());
    write_archived(repo, &rec, &mut out, cancel)?;
    out.flush()
        .map_err(|e| Error::io(format!("writing {}", dest.display()), e))?;
    drop(out);
    if sync {
        tmp.as_file()
            .sync_all()
            .map_err(|e| Error::io(format!("writing {}", dest.display()), e))?;
    }
    tmp.persist(dest)
        .map_err(|e| Error::io(format!("writing {}", dest.display()), e.error))?;
    Ok(rec)
}

/// The record of archived WAL file `name`; one that is not archived is
/// [`ErrorKind::SourceNotFound`].
fn archived(repo: &Repository, name: &str) -> Result<WalRecord> {
    check_name(name)?;
    existing(repo, name)?.ok_or_else(|| {
        Error::new(
            ErrorKind::SourceNotFound,
            format!("WAL file {name} is not in the archive"),
        )
    })
}

/// Writes the WAL file of record `rec` to `out`, verified against the
/// record's size and hash.
fn write_archived(
    repo: &Repository,
    rec: &WalRecord,
    out: &mut impl Write,
    cancel: &AtomicBool,
) -> Result<()> {
    let name = rec.name.as_str();
    let index = repo.index()?;
    let tree = repo.load_tree(&index, &rec.tree)?;
    let node = tree
        .nodes
        .iter()
        .find(|n| n.name == name && n.kind == NodeKind::File)
        .ok_or_else(|| Error::corrupt(format!("WAL record {}: no file {name}", rec.id)))?;
    let ids = repo.file_chunks(&index, node)?;
    let mut hashing = HashingWriter {
        inner: out,
        hasher: blake3::Hasher::new(),
    };
    let n = write_chunks(repo, &index, &ids, &mut hashing, &|_| {}, cancel)?;
    let hash = hashing.hasher.finalize().to_hex().to_string();
    if n != rec.size || hash != rec.blake3 {
        return Err(Error::corrupt(format!(
            "WAL file {name}: restored {n} bytes with BLAKE3 {hash}, the record says {} bytes, {}",
            rec.size, rec.blake3
        )));
    }
    Ok(())
}

struct HashingWriter<W> {
    inner: W,
    hasher: blake3::Hasher,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A WAL segment's timeline and position (`log`, `seg`).
pub type Segment = (u32, (u32, u32));

/// The timeline and segment position (`log`, `seg`) of a WAL file name
/// that starts with 24 hex digits (segments, and `.partial` and `.backup`
/// files named after one); `None` for anything else (`.history`).
pub fn segment_of(name: &str) -> Option<Segment> {
    let hex = name.get(..24)?;
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let rest = &name[24..];
    if !(rest.is_empty() || rest.starts_with('.')) {
        return None;
    }
    let part = |r: std::ops::Range<usize>| u32::from_str_radix(&hex[r], 16).ok();
    Some((part(0..8)?, (part(8..16)?, part(16..24)?)))
}

/// What retention does to archived WAL.
#[derive(Debug, Clone, Default)]
pub struct WalExpiry {
    /// The oldest kept base backup's first WAL file: everything from it on
    /// is kept. `None`: no base backup is kept, and no WAL expires.
    pub keep_from: Option<String>,
    /// Records of WAL files older than that, to delete.
    pub expired: Vec<WalRecord>,
    /// Records kept.
    pub kept: usize,
}

/// Which WAL files no kept base backup needs: those before the first WAL
/// file of the oldest base backup among `kept` (any timeline: a restore of
/// that base backup may need every later file to reach any point up to
/// the next base backup and beyond). History files are always kept. With
/// no base backup kept, nothing expires (the WAL may serve base backups
/// taken another way).
pub fn expiry(records: Vec<WalRecord>, kept: &[crate::format::snapshot::Snapshot]) -> WalExpiry {
    let oldest = kept
        .iter()
        .filter(|s| crate::pg::pitr::is_base_backup(s))
        .filter_map(|s| s.source.dump.as_ref()?.start_wal.clone())
        .filter_map(|w| segment_of(&w).map(|(_, pos)| (pos, w)))
        .min();
    let Some((from, name)) = oldest else {
        return WalExpiry {
            kept: records.len(),
            ..WalExpiry::default()
        };
    };
    let (expired, keep): (Vec<_>, Vec<_>) = records
        .into_iter()
        .partition(|r| segment_of(&r.name).is_some_and(|(_, pos)| pos < from));
    WalExpiry {
        keep_from: Some(name),
        expired,
        kept: keep.len(),
    }
}

/// Deletes the expired WAL records (their data goes with the next prune).
pub fn expire(repo: &Repository, plan: &WalExpiry) -> Result<usize> {
    for r in &plan.expired {
        repo.backend()
            .delete(ObjectKind::Wal, &r.id.to_hex())
            .map_err(|e| e.context(format!("expiring WAL file {}", r.name)))?;
    }
    Ok(plan.expired.len())
}

/// The state of continuous archiving, for `pg status`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ArchiveStatus {
    /// Archived WAL files, and their total size.
    pub wal_files: usize,
    /// Total bytes of archived WAL files.
    pub wal_bytes: u64,
    /// The newest archived WAL segment (by position) and when it was
    /// archived.
    pub newest_wal: Option<String>,
    /// When the newest segment was archived.
    pub newest_wal_time: Option<SnapshotTime>,
    /// WAL segments missing between the oldest base backup's first WAL
    /// file and the newest archived segment: recovery cannot pass them
    /// (at most 1000 are listed).
    pub missing: Vec<String>,
    /// The stretches of time that can be restored, oldest first.
    pub windows: Vec<Window>,
    /// WAL records that cannot be read.
    pub unreadable: usize,
}

/// A stretch that point-in-time recovery can reach: from the end of a
/// base backup to the last WAL segment archived without a gap after its
/// start (pgBackRest's archive min/max per backup).
#[derive(Debug, Clone, Serialize)]
pub struct Window {
    /// The oldest base backup that starts in it (the ID, hex).
    pub base_backup: String,
    /// The earliest point: that base backup's end...
    pub earliest_time: SnapshotTime,
    /// ...and where its WAL ends, if recorded.
    pub earliest_lsn: Option<String>,
    /// The last WAL segment before the next gap (or the newest).
    pub latest_wal: String,
    /// When that segment was archived: the latest point is about then.
    pub latest_time: SnapshotTime,
    /// The WAL location where that segment ends: no recovery target at or
    /// past it can be reached.
    pub latest_lsn: String,
    /// Whether a gap follows (WAL archived later cannot be reached from
    /// this window).
    pub gap_after: bool,
}

/// Segment numbering: positions as one number, for a segment size.
pub(crate) struct Numbering {
    per_log: u64,
}

impl Numbering {
    fn of(segments: &[(&WalRecord, Segment)]) -> Numbering {
        segments
            .iter()
            .find_map(|(r, _)| Numbering::for_size(r.size))
            .unwrap_or(Numbering {
                per_log: (1u64 << 32) / (16 << 20),
            })
    }

    /// The numbering of segments of `size` bytes, if that is a segment
    /// size PostgreSQL allows (a power of two from 1 MiB to 1 GiB).
    pub(crate) fn for_size(size: u64) -> Option<Numbering> {
        // Segments per log file: 2^32 / segment size (16 MiB: 256).
        (size.is_power_of_two() && (1 << 20..=1 << 30).contains(&size)).then(|| Numbering {
            per_log: (1u64 << 32) / size,
        })
    }

    pub(crate) fn number(&self, (log, seg): (u32, u32)) -> u64 {
        u64::from(log) * self.per_log + u64::from(seg)
    }

    /// The WAL location at the end of segment number `n`.
    fn end_lsn(&self, n: u64) -> String {
        let lsn = (n + 1).saturating_mul((1u64 << 32) / self.per_log.max(1));
        format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
    }

    pub(crate) fn name(&self, tl: u32, n: u64) -> String {
        format!("{tl:08X}{:08X}{:08X}", n / self.per_log, n % self.per_log)
    }
}

/// Looks at the archive from the oldest of `bases` (base backup
/// snapshots) on: missing segments, and the windows that can be restored.
/// A position counts as archived on any timeline (a promotion continues
/// the positions of the timeline it leaves).
pub fn status(list: &WalList, bases: &[&crate::format::snapshot::Snapshot]) -> ArchiveStatus {
    let wal = || list.good.iter().filter(|r| r.name != IDENTITY);
    let mut st = ArchiveStatus {
        wal_files: wal().count(),
        wal_bytes: wal().map(|r| r.size).sum(),
        unreadable: list.damaged.len(),
        ..ArchiveStatus::default()
    };
    let segments: Vec<(&WalRecord, Segment)> = list
        .good
        .iter()
        .filter(|r| r.name.len() == 24)
        .filter_map(|r| segment_of(&r.name).map(|s| (r, s)))
        .collect();
    if let Some((r, _)) = segments.iter().max_by_key(|(_, (tl, pos))| (*pos, *tl)) {
        st.newest_wal = Some(r.name.clone());
        st.newest_wal_time = Some(r.time);
    }
    let numbering = Numbering::of(&segments);
    // Per position, the newest timeline's record.
    let mut present: std::collections::BTreeMap<u64, (&WalRecord, u32)> = Default::default();
    for (r, (tl, pos)) in &segments {
        let n = numbering.number(*pos);
        if present.get(&n).is_none_or(|(_, t)| t < tl) {
            present.insert(n, (r, *tl));
        }
    }
    // Base backups by their first WAL position, oldest first.
    let mut starts: Vec<(u64, u32, &crate::format::snapshot::Snapshot)> = bases
        .iter()
        .filter_map(|b| {
            let (tl, pos) = segment_of(b.source.dump.as_ref()?.start_wal.as_deref()?)?;
            Some((numbering.number(pos), tl, *b))
        })
        .collect();
    starts.sort_by_key(|s| (s.0, s.2.time));
    let Some(&(first, first_tl, _)) = starts.first() else {
        return st;
    };
    let last = present.keys().next_back().copied().unwrap_or(first);
    for n in first..=last.max(first) {
        if !present.contains_key(&n) {
            if st.missing.len() >= 1000 {
                break;
            }
            st.missing.push(numbering.name(first_tl, n));
        }
    }
    for &(start, _, base) in &starts {
        // The run of archived segments from the backup's first one.
        let mut end = start;
        if !present.contains_key(&end) {
            continue;
        }
        while present.contains_key(&(end + 1)) {
            end += 1;
        }
        if st.windows.last().is_some_and(|w: &Window| {
            segment_of(&w.latest_wal).map(|(_, p)| numbering.number(p)) == Some(end)
        }) {
            continue; // an older base backup already opens this window
        }
        let Some((rec, _)) = present.get(&end) else {
            continue;
        };
        // The run must reach the end of the backup's own WAL: before that
        // it cannot become consistent.
        let stop = base
            .source
            .dump
            .as_ref()
            .and_then(|d| d.stop_lsn.as_deref());
        let reached = numbering.end_lsn(end);
        if let (Some(stop), Ok(r)) = (stop, crate::pg::pitr::parse_lsn(&reached)) {
            if crate::pg::pitr::parse_lsn(stop).is_ok_and(|s| s > r) {
                continue;
            }
        }
        st.windows.push(Window {
            base_backup: base.id.to_hex(),
            earliest_time: *base.summary.backup_end.as_ref().unwrap_or(&base.time),
            earliest_lsn: base.source.dump.as_ref().and_then(|d| d.stop_lsn.clone()),
            latest_wal: rec.name.clone(),
            latest_time: rec.time,
            latest_lsn: numbering.end_lsn(end),
            gap_after: end < last,
        });
    }
    st
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(name: &str) -> WalRecord {
        WalRecord {
            id: Id::of_bytes(name.as_bytes()),
            name: name.into(),
            time: SnapshotTime::now(),
            hostname: "db".into(),
            size: 16 << 20,
            blake3: String::new(),
            tree: Id::default(),
        }
    }

    #[test]
    fn the_system_identifier_comes_from_a_segments_long_header() {
        // The first 40 bytes of a PostgreSQL 15 segment of timeline 1.
        let mut head = [0u8; 40];
        head[0..2].copy_from_slice(&0xD110u16.to_le_bytes());
        head[2..4].copy_from_slice(&0x0006u16.to_le_bytes());
        head[4..8].copy_from_slice(&1u32.to_le_bytes());
        head[8..16].copy_from_slice(&0x0300_0000u64.to_le_bytes());
        head[24..32].copy_from_slice(&7_443_197_417_112_065_040u64.to_le_bytes());
        head[32..36].copy_from_slice(&(16u32 << 20).to_le_bytes());
        head[36..40].copy_from_slice(&8192u32.to_le_bytes());
        assert_eq!(parse_long_header(&head, 1), Some(7_443_197_417_112_065_040));
        // The first segment of timeline 2 may start with timeline 1's page;
        // a header of a later timeline than the name's is not a segment's.
        assert_eq!(parse_long_header(&head, 2), Some(7_443_197_417_112_065_040));
        let mut later = head;
        later[4..8].copy_from_slice(&3u32.to_le_bytes());
        assert_eq!(parse_long_header(&later, 2), None);
        let mut short = head;
        short[2] = 0x04;
        assert_eq!(parse_long_header(&short, 1), None);
        let mut odd = head;
        odd[32..36].copy_from_slice(&12345u32.to_le_bytes());
        assert_eq!(parse_long_header(&odd, 1), None);
        assert_eq!(parse_long_header(&[0u8; 40], 1), None);
    }

    #[test]
    fn segment_names_parse() {
        assert_eq!(segment_of("00000002000000010000000A"), Some((2, (1, 10))));
        assert_eq!(
            segment_of("000000010000000000000002.00000028.backup"),
            Some((1, (0, 2)))
        );
        assert_eq!(segment_of("00000002.history"), None);
        assert_eq!(segment_of("00000001000000000000000G"), None);
        assert_eq!(segment_of("000000010000000000000002x"), None);
    }

    #[test]
    fn status_finds_the_newest_segment_and_the_gaps() {
        let list = WalList {
            good: [
                "0000000100000000000000FE",
                "000000010000000100000001",
                "00000002.history",
            ]
            .iter()
            .map(|n| rec(n))
            .collect(),
            damaged: Vec::new(),
        };
        let fd = base("0000000100000000000000FD", "2026-12-01T00:00:00Z");
        let st = status(&list, &[&fd]);
        assert_eq!(st.newest_wal.as_deref(), Some("000000010000000100000001"));
        // FD, FF and 1/00 are missing (256 segments of 16 MiB per log).
        assert_eq!(
            st.missing,
            [
                "0000000100000000000000FD",
                "0000000100000000000000FF",
                "000000010000000100000000"
            ]
        );
        // No window: the base backup's first segment itself is missing.
        assert!(st.windows.is_empty());
        assert!(status(&list, &[]).missing.is_empty());
    }

    fn base(start_wal: &str, end: &str) -> crate::format::snapshot::Snapshot {
        let mut dump = crate::format::snapshot::DumpInfo {
            format: crate::pg::pitr::BASE_BACKUP_FORMAT.into(),
            start_wal: Some(start_wal.into()),
            ..Default::default()
        };
        dump.stop_lsn = Some("0/1".into());
        crate::format::snapshot::Snapshot {
            id: Id::of_bytes(start_wal.as_bytes()),
            time: SnapshotTime::parse_rfc3339(end).unwrap_or_else(|_| SnapshotTime::now()),
            tree: Id::default(),
            paths: vec!["/base.tar".into()],
            hostname: "db".into(),
            username: "postgres".into(),
            tags: Vec::new(),
            parent: None,
            source: crate::format::snapshot::SnapshotSource {
                kind: crate::format::snapshot::SourceKind::Command,
                stdin_filename: Some("base.tar".into()),
                command: None,
                exit_status: Some(0),
                dump: Some(dump),
                empty_allowed: false,
            },
            original: None,
            program_version: "test".into(),
            summary: crate::format::snapshot::SnapshotSummary::default(),
            future_dated: false,
        }
    }

    #[test]
    fn a_gap_between_older_base_backups_splits_the_windows() {
        // Base backups at 10, 20 and 30; segment 15 is lost.
        let names: Vec<String> = (10..=35)
            .filter(|n| *n != 15)
            .map(|n| format!("00000001000000000000{n:04X}"))
            .collect();
        let list = WalList {
            good: names.iter().map(|n| rec(n)).collect(),
            damaged: Vec::new(),
        };
        let b10 = base("00000001000000000000000A", "2026-12-01T00:00:00Z");
        let b20 = base("000000010000000000000014", "2026-12-02T00:00:00Z");
        let b30 = base("00000001000000000000001E", "2026-12-03T00:00:00Z");
        let st = status(&list, &[&b30, &b10, &b20]);
        assert_eq!(st.missing, ["00000001000000000000000F"]);
        let w: Vec<(&str, &str, bool)> = st
            .windows
            .iter()
            .map(|w| (&w.base_backup[..], &w.latest_wal[..], w.gap_after))
            .collect();
        // From the first backup to just before the gap; from the second
        // (the third opens no window of its own) to the newest.
        assert_eq!(
            w,
            [
                (&b10.id.to_hex()[..], "00000001000000000000000E", true),
                (&b20.id.to_hex()[..], "000000010000000000000023", false),
            ]
        );
        assert_eq!(st.windows[0].latest_lsn, "0/F000000");
        // A backup whose own WAL runs past the gap cannot become
        // consistent: no window of its own.
        let mut inside = base("00000001000000000000000E", "2026-12-01T12:00:00Z");
        if let Some(d) = inside.source.dump.as_mut() {
            d.stop_lsn = Some("0/10000100".into());
        }
        let st = status(&list, &[&inside, &b20]);
        assert_eq!(st.windows.len(), 1, "{:?}", st.windows);
        assert_eq!(st.windows[0].base_backup, b20.id.to_hex());
        // Only the newest base backup: no gap in its window.
        assert!(status(&list, &[&b30]).missing.is_empty());
    }
}
