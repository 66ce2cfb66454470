//! The one reader: locating chunks through the index cache, reading them
//! in batches of merged ranges, undoing deltas, verifying every blob
//! against its ID, and writing files and trees out.
//!
//! Every blob is decrypted, decompressed and checked against its ID before
//! a byte of it is written; a file is written under a temporary name and
//! renamed into place only when all of it was verified, so a damaged
//! repository never leaves a silently wrong file behind.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;

use crate::backend::ObjectKind;
use crate::error::{Error, ErrorKind, Result};
use crate::format::pack::{self, BlobEntry, BlobType};
use crate::id::Id;
use crate::repo::cache::{BlobLocation, CacheReader};
use crate::repo::repository::Repository;

/// Reads, opens and (unless a delta) decodes located blobs, in order.
fn fetch_runs(repo: &Repository, locs: &[BlobLocation]) -> Result<Vec<Fetched>> {
    // Runs of blobs close together in one pack: one range read each.
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for i in 0..locs.len() {
        match runs.last_mut() {
            Some((start, end))
                if locs[*start].pack_id == locs[i].pack_id
                    && locs[i].entry.offset as u64 >= locs[*end - 1].entry.end()
                    && (locs[i].entry.offset as u64) <= locs[*end - 1].entry.end() + MERGE_GAP
                    && locs[i].entry.end() - u64::from(locs[*start].entry.offset) <= MAX_RUN =>
            {
                *end = i + 1
            }
            _ => runs.push((i, i + 1)),
        }
    }
    // One run of a few blobs (a small file): read and decoded on this
    // thread. Waking the read threads for it cost more than the read (a
    // restore of 100 000 small files spent most of its time in futex and
    // sched_yield).
    if let [(start, end)] = runs[..] {
        if end - start <= INLINE_BLOBS {
            return fetch_run(repo, locs, start, end, false);
        }
    }
    let decoded: Vec<Vec<Fetched>> = repo.with_io_threads(|| {
        runs.par_iter()
            .map(|&(start, end)| fetch_run(repo, locs, start, end, true))
            .collect::<Result<_>>()
    })??;
    Ok(decoded.into_iter().flatten().collect())
}

/// Runs of at most this many blobs are read without the read threads.
const INLINE_BLOBS: usize = 8;

/// Reads one run of blobs `locs[start..end]` (one range read) and opens
/// each, on the read threads' pool when `parallel`.
fn fetch_run(
    repo: &Repository,
    locs: &[BlobLocation],
    start: usize,
    end: usize,
    parallel: bool,
) -> Result<Vec<Fetched>> {
    let first = &locs[start];
    let base = u64::from(first.entry.offset);
    let len = locs[end - 1].entry.end() - base;
    let mut bytes =
        repo.backend()
            .get_range(ObjectKind::Pack, &first.pack_id.to_hex(), base, len)?;
    // A backend that returns fewer bytes than asked for must not
    // make the slicing below panic.
    if bytes.len() as u64 != len {
        return Err(Error::corrupt(format!(
            "pack {}: a read of {len} bytes at offset {base} returned {} bytes",
            first.pack_id,
            bytes.len()
        )));
    }
    // The blobs of a run are disjoint and in order: each is
    // decrypted where it was read.
    let mut sealed: Vec<&mut [u8]> = Vec::with_capacity(end - start);
    let mut rest = bytes.as_mut_slice();
    let mut at = base;
    for loc in &locs[start..end] {
        let skip = (u64::from(loc.entry.offset) - at) as usize;
        let (blob, tail) = rest[skip..].split_at_mut(loc.entry.length as usize);
        sealed.push(blob);
        rest = tail;
        at = loc.entry.end();
    }
    let open = |(loc, blob): (&BlobLocation, &mut [u8])| {
        let keys = repo.blob_keys(&loc.pack_id, &loc.entry)?;
        let (keys, id) = (keys.as_ref(), repo.id());
        if loc.entry.compression.base().is_some() {
            pack::open_delta_in_place(keys, id, &loc.entry, blob, &loc.pack_id)
                .map(|frame| Fetched::Delta(frame.to_vec()))
        } else {
            pack::decode_blob_in_place(keys, id, &loc.entry, blob, &loc.pack_id).map(Fetched::Plain)
        }
    };
    if parallel {
        locs[start..end].par_iter().zip(sealed).map(open).collect()
    } else {
        locs[start..end].iter().zip(sealed).map(open).collect()
    }
}

/// [`fetch_batch`] for blobs stored whole (delta bases).
pub(crate) fn fetch_whole(repo: &Repository, locs: &[BlobLocation]) -> Result<Vec<Vec<u8>>> {
    fetch_runs(repo, locs)?
        .into_iter()
        .zip(locs)
        .map(|(f, loc)| match f {
            Fetched::Plain(p) => Ok(p),
            Fetched::Delta(_) => Err(Error::corrupt(format!(
                "blob {} is a delta where a whole blob was expected",
                loc.entry.id
            ))),
        })
        .collect()
}

/// Where the bases of the deltas among `entries` are, each once, in pack
/// and offset order (for [`fetch_whole`]). Each must be indexed, and stored
/// whole as a blob of its delta's type.
pub(crate) fn locate_bases<'a>(
    index: &CacheReader,
    entries: impl IntoIterator<Item = &'a BlobEntry>,
) -> Result<Vec<BlobLocation>> {
    let mut wanted: Vec<BlobLocation> = Vec::new();
    let mut seen: HashSet<Id> = HashSet::new();
    for entry in entries {
        let Some(base) = entry.compression.base() else {
            continue;
        };
        if !seen.insert(base) {
            continue;
        }
        let found = index.get(&base)?.ok_or_else(|| {
            Error::new(
                ErrorKind::MissingObject,
                format!(
                    "data blob {base}, the base of delta {}, is not in the index",
                    entry.id
                ),
            )
        })?;
        if found.entry.blob_type != entry.blob_type || found.entry.compression.base().is_some() {
            return Err(Error::corrupt(format!(
                "blob {base}, the base of delta {}, is not a data blob stored whole",
                entry.id
            )));
        }
        wanted.push(found);
    }
    wanted.sort_by_key(|l| (l.pack_id, l.entry.offset));
    Ok(wanted)
}

/// Fetches (merging nearby blobs of a pack into one read), decrypts and
/// verifies located data chunks, in order. A delta's base is located
/// through `index` and read after the batch (bases are always stored
/// whole: one more read at most, never a chain).
pub(crate) fn fetch_batch(
    repo: &Repository,
    index: &CacheReader,
    locs: &[BlobLocation],
) -> Result<Vec<Vec<u8>>> {
    let fetched = fetch_runs(repo, locs)?;
    let wanted = locate_bases(index, locs.iter().map(|l| &l.entry))?;
    if wanted.is_empty() {
        return Ok(fetched
            .into_iter()
            .map(|f| match f {
                Fetched::Plain(p) | Fetched::Delta(p) => p,
            })
            .collect());
    }
    let bases: Vec<Vec<u8>> = fetch_whole(repo, &wanted)?;
    let base_at: HashMap<Id, usize> = wanted
        .iter()
        .enumerate()
        .map(|(i, w)| (w.entry.id, i))
        .collect();
    let base_of = |id: &Id| base_at.get(id).map(|&i| &bases[i]);
    fetched
        .into_par_iter()
        .zip(locs.par_iter())
        .map(|(f, loc)| match f {
            Fetched::Plain(p) => Ok(p),
            Fetched::Delta(frame) => {
                let base_id = loc.entry.compression.base().unwrap_or_default();
                let base = base_of(&base_id).ok_or_else(|| {
                    Error::corrupt(format!("the base of delta {} was not read", loc.entry.id))
                })?;
                pack::finish_delta(repo.keys(), &loc.entry, &frame, base, &loc.pack_id)
                    .map_err(|e| e.context(format!("against its base {base_id}")))
            }
        })
        .collect()
}

/// A fetched blob: decoded, or a delta opened and waiting for its base.
enum Fetched {
    Plain(Vec<u8>),
    Delta(Vec<u8>),
}

/// Writes the chunks `ids` to `out` in order, verifying each. If a pack
/// named by the cache is gone (repacked and deleted by a prune since the
/// cache was synced), the cache is synced and the batch read again.
pub fn write_chunks(
    repo: &Repository,
    index: &CacheReader,
    ids: &[Id],
    out: &mut dyn Write,
    on_bytes: &dyn Fn(u64),
    cancel: &AtomicBool,
) -> Result<u64> {
    let mut written = 0u64;
    // A small file (a few chunks): read on this thread, with no reader
    // thread to start. A pack gone since the cache was synced is left to
    // the loop below, which syncs and reads again; any other error is
    // the file's.
    if ids.len() <= INLINE_BLOBS && !cancel.load(Ordering::SeqCst) {
        let first = match read_next_batch(repo, index, ids) {
            Err(e) if e.kind() == ErrorKind::MissingObject => None,
            other => Some(other?),
        };
        if let Some((n, chunks)) = first {
            if n == ids.len() {
                return write_out(out, &chunks, on_bytes);
            }
        }
    }
    // Batches are fetched on a thread of their own, one ahead of the one
    // being written: on object storage, requests are slow to answer but
    // cheap to overlap.
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Vec<Vec<u8>>>>(1);
        let reader = scope.spawn(move || {
            let mut fresh: Option<CacheReader> = None;
            let mut resyncs = 0;
            let mut pos = 0;
            while pos < ids.len() {
                if cancel.load(Ordering::SeqCst) {
                    let _ = tx.send(Err(Error::interrupted()));
                    return;
                }
                let rest = &ids[pos..];
                let batch = match read_next_batch(repo, fresh.as_ref().unwrap_or(index), rest) {
                    // A few times per file: several prunes may pass during a
                    // long one.
                    Err(e) if e.kind() == ErrorKind::MissingObject && resyncs < 3 => {
                        resyncs += 1;
                        repo.sync_index().and_then(|_| repo.index()).and_then(|r| {
                            let b = read_next_batch(repo, &r, rest);
                            fresh = Some(r);
                            b
                        })
                    }
                    other => other,
                };
                let batch = batch.map(|(n, chunks)| {
                    pos += n;
                    chunks
                });
                let failed = batch.is_err();
                if tx.send(batch).is_err() || failed {
                    return;
                }
            }
        });
        for chunks in rx {
            written += write_out(out, &chunks?, on_bytes)?;
        }
        reader
            .join()
            .map_err(|_| Error::new(ErrorKind::Io, "the restore reader thread panicked"))
    })?;
    Ok(written)
}

/// Writes `chunks` to `out` in order, telling `on_bytes` of each;
/// returns the bytes written.
fn write_out(out: &mut dyn Write, chunks: &[Vec<u8>], on_bytes: &dyn Fn(u64)) -> Result<u64> {
    let mut written = 0;
    for chunk in chunks {
        out.write_all(chunk)
            .map_err(|e| Error::io("writing restored data", e))?;
        written += chunk.len() as u64;
        on_bytes(chunk.len() as u64);
    }
    Ok(written)
}

/// ...of at most this many bytes.
const MAX_RUN: u64 = 1024 * 1024;

/// Blobs this close together in one pack are read with one request...
const MERGE_GAP: u64 = 64 * 1024;

/// Locates and fetches the next batch of `ids` through `index`: the
/// number of chunks it covers and their plaintexts, in order.
pub(crate) fn read_next_batch(
    repo: &Repository,
    index: &CacheReader,
    ids: &[Id],
) -> Result<(usize, Vec<Vec<u8>>)> {
    let requests = repo.backend().parallel_requests().max(1);
    let max_bytes = (READ_BATCH_BYTES_PER_REQUEST * requests as u64).min(READ_BATCH_BYTES);
    let locs = locate_batch(index, ids, (READ_BATCH_PER_REQUEST * requests, max_bytes))?;
    let chunks = fetch_batch(repo, index, &locs)?;
    Ok((locs.len(), chunks))
}

/// The location of data chunk `id` as the index gave it, or why it has
/// none usable.
fn data_location(id: &Id, found: Result<Option<BlobLocation>>) -> Result<BlobLocation> {
    let loc = found?.ok_or_else(|| {
        Error::new(
            ErrorKind::MissingObject,
            format!("data blob {id} is not in the index"),
        )
    })?;
    if loc.entry.blob_type != BlobType::Data {
        return Err(Error::corrupt(format!(
            "blob {id} is a {} blob where file data was expected",
            loc.entry.blob_type.name()
        )));
    }
    Ok(loc)
}

/// Locates the next batch of the data chunks `ids` (a prefix of them): at
/// most `max_chunks` chunks and `max_bytes` plaintext bytes, always at
/// least one chunk when `ids` is not empty. A chunk no index knows, or
/// that is not a data blob, is an error when it would be the batch's
/// first; otherwise the batch ends before it (so the chunks before it are
/// written first, and an index synced in between may still know it).
pub(crate) fn locate_batch(
    index: &CacheReader,
    ids: &[Id],
    (max_chunks, max_bytes): (usize, u64),
) -> Result<Vec<BlobLocation>> {
    let mut locs = Vec::new();
    let mut bytes = 0u64;
    let ids = &ids[..ids.len().min(max_chunks.max(1))];
    // Looked up a window at a time on all cores (with the index on disk a
    // lookup costs about as much as decoding a chunk), and no further than
    // the batch reaches.
    for window in ids.chunks(LOOKUP_WINDOW) {
        // A few: looked up here (waking the pool costs more).
        let found: Vec<Result<Option<BlobLocation>>> = if window.len() <= INLINE_BLOBS {
            window.iter().map(|id| index.get(id)).collect()
        } else {
            window.par_iter().map(|id| index.get(id)).collect()
        };
        for (id, loc) in window.iter().zip(found) {
            let loc = match data_location(id, loc) {
                Ok(loc) => loc,
                Err(e) if locs.is_empty() => return Err(e),
                Err(_) => return Ok(locs),
            };
            let len = u64::from(loc.entry.raw_length);
            if !locs.is_empty() && bytes + len > max_bytes {
                return Ok(locs);
            }
            bytes += len;
            locs.push(loc);
        }
    }
    Ok(locs)
}

/// Chunks looked up together, on all cores, while a batch fills.
const LOOKUP_WINDOW: usize = 64;

/// ...and at most this many in all, however many requests run at once.
const READ_BATCH_BYTES: u64 = 64 * 1024 * 1024;

/// ...and at most this many plaintext bytes per request (4 MiB: 512
/// chunks of 8 KiB; with 32 KiB chunks a batch of 512 per request held
/// 32 MiB on a local disk, and a restore peaked at 136 MiB and ran 1.5
/// times as long, its reading and writing overlapping less)...
const READ_BATCH_BYTES_PER_REQUEST: u64 = 4 * 1024 * 1024;

/// Chunks fetched and decoded together, at most this many per request the
/// backend takes at once (enough for several reads of [`MAX_RUN`] each)...
const READ_BATCH_PER_REQUEST: usize = 512;
