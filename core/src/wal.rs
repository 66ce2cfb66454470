//! PostgreSQL WAL archiving: `wal-push` (`archive_command`) and
//! `wal-fetch` (`restore_command`), `repo-format.md` §18.
//!
//! A WAL file is chunked, deduplicated, compressed and sealed like any
//! backed-up file (its blobs go into packs, indexed as usual); then a WAL
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

use crate::backend::ObjectKind;
use crate::blob_writer::BlobWriter;
use crate::chunker::Chunker;
use crate::error::{Error, ErrorKind, Result};
use crate::pack::BlobType;
use crate::prune::verify_referenced;
use crate::repository::Repository;
use crate::restore::write_chunks;
use crate::time::SnapshotTime;
use crate::tree::{Node, NodeKind, Tree};
pub use crate::wal_record::{load, WalList, WalRecord};

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

/// Reads an archived record, if there is one.
fn existing(repo: &Repository, name: &str) -> Result<Option<WalRecord>> {
    let id = repo.keys().wal_object_id(name);
    match repo.backend().get(ObjectKind::Wal, &id.to_hex()) {
        Ok(bytes) => WalRecord::decode(repo, &bytes, &id).map(Some),
        Err(e) if e.kind() == ErrorKind::MissingObject => Ok(None),
        Err(e) => Err(e),
    }
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

/// Archives the file at `path` as WAL file `name`. Succeeds only once the
/// record is durably stored (or the same contents were archived before).
pub fn push(
    repo: &Repository,
    name: &str,
    path: &Path,
    hostname: &str,
    cancel: &AtomicBool,
) -> Result<PushOutcome> {
    check_name(name)?;
    // Hashed first: a retry of an archived file costs one read and one
    // request, and stores nothing.
    let (size, hash) = hash_file(path)?;
    if let Some(rec) = existing(repo, name)? {
        return same_or_conflict(rec, size, &hash);
    }
    let mut writer = BlobWriter::new(repo, false)?;
    let file = File::open(path).map_err(|e| open_error(path, e))?;
    let mut chunker = Chunker::new(file, &repo.config().chunker, repo.chunker_seed());
    let mut ids = Vec::new();
    let mut hasher = blake3::Hasher::new();
    let mut read = 0u64;
    let mut added = 0u64;
    while let Some(chunk) = chunker
        .next_chunk()
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?
    {
        if cancel.load(Ordering::SeqCst) {
            return Err(Error::interrupted());
        }
        hasher.update(chunk);
        read += chunk.len() as u64;
        let id = repo.keys().chunk_id(chunk);
        if !writer.reuse(&id)? {
            added += chunk.len() as u64;
            writer.save(BlobType::Data, id, chunk)?;
        }
        ids.push(id);
    }
    // The file changed while it was read: PostgreSQL does not do that to a
    // file it archives, so something else is wrong.
    let read_hash = hasher.finalize().to_hex().to_string();
    if read != size || read_hash != hash {
        return Err(Error::new(
            ErrorKind::Io,
            format!(
                "{} changed while it was archived; nothing was archived",
                path.display()
            ),
        ));
    }
    let mut node = Node::new(std::ffi::OsStr::new(name), NodeKind::File);
    node.mode = 0o600;
    node.size = size;
    (node.content, node.content_lists) = writer.content_of(ids)?;
    let mut tree = Tree { nodes: vec![node] };
    let tree_id = writer.save_tree(&mut tree)?;
    let referenced = writer.finish()?;
    verify_referenced(repo, &referenced)?;
    let record = WalRecord {
        id: repo.keys().wal_object_id(name),
        name: name.to_string(),
        time: SnapshotTime::now(),
        hostname: hostname.to_string(),
        size,
        blake3: hash.clone(),
        tree: tree_id,
    };
    let bytes = record.encode(repo)?;
    if !repo
        .backend()
        .put(ObjectKind::Wal, &record.id.to_hex(), &bytes)?
    {
        // Another push of the same name won the race.
        return match existing(repo, name)? {
            Some(rec) => same_or_conflict(rec, size, &hash),
            None => Err(Error::new(
                ErrorKind::Io,
                format!("WAL record for {name} was neither stored nor found"),
            )),
        };
    }
    Ok(PushOutcome::Stored { record, added })
}

/// Writes archived WAL file `name` to `dest` (replacing it): through a
/// temporary file in the same directory, verified against the record's
/// size and hash, synced, then renamed. A file that is not archived is
/// [`ErrorKind::SourceNotFound`] (PostgreSQL asks for files past the end
/// of the archive; that is how recovery knows it reached the end).
pub fn fetch(repo: &Repository, name: &str, dest: &Path, cancel: &AtomicBool) -> Result<WalRecord> {
    check_name(name)?;
    let rec = existing(repo, name)?.ok_or_else(|| {
        Error::new(
            ErrorKind::SourceNotFound,
            format!("WAL file {name} is not in the archive"),
        )
    })?;
    let index = repo.index()?;
    let tree = repo.load_tree(&index, &rec.tree)?;
    let node = tree
        .nodes
        .iter()
        .find(|n| n.name == name && n.kind == NodeKind::File)
        .ok_or_else(|| Error::corrupt(format!("WAL record {}: no file {name}", rec.id)))?;
    let ids = repo.file_chunks(&index, node)?;
    let dir = match dest.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".cairn-wal-")
        .tempfile_in(&dir)
        .map_err(|e| Error::io(format!("creating a file in {}", dir.display()), e))?;
    let mut out = HashingWriter {
        inner: io::BufWriter::new(tmp.as_file_mut()),
        hasher: blake3::Hasher::new(),
    };
    let n = write_chunks(repo, &index, &ids, &mut out, &|_| {}, cancel)?;
    out.inner
        .flush()
        .map_err(|e| Error::io(format!("writing {}", dest.display()), e))?;
    let hash = out.hasher.finalize().to_hex().to_string();
    drop(out);
    if n != rec.size || hash != rec.blake3 {
        return Err(Error::corrupt(format!(
            "WAL file {name}: restored {n} bytes with BLAKE3 {hash}, the record says {} bytes, {}",
            rec.size, rec.blake3
        )));
    }
    tmp.as_file()
        .sync_all()
        .map_err(|e| Error::io(format!("syncing {}", dest.display()), e))?;
    tmp.persist(dest)
        .map_err(|e| Error::io(format!("writing {}", dest.display()), e.error))?;
    Ok(rec)
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
