//! WAL fetched ahead for a recovery (`wal-fetch --prefetch N`), as
//! pgBackRest's asynchronous `archive-get` does: PostgreSQL asks for one
//! segment at a time and waits for each, so while it replays one, a
//! background process fetches the next `N` into a spool directory, and the
//! next `restore_command` is a rename (`docs/design.md` §11.1).
//!
//! A spool belongs to one repository location (a subdirectory named by a
//! hash of it) and one repository (a mark with its ID; a spool of another
//! repository made at the same location is emptied). A spooled file is
//! complete or absent: it is fetched and verified like any `wal-fetch` (a
//! temporary file, checked against the record's size and hash), synced,
//! and renamed; an archived WAL file never changes (records are
//! create-only), so a spooled copy stays right. At most one filler runs
//! per spool (a lock file); the requests go through a mark each fetch
//! leaves (`requested.NAME.SIZE`), and each fetch drops the spooled
//! segments before its own.

use std::fs::{self, File};
use std::io::ErrorKind as IoKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use crate::error::{Error, ErrorKind, Result};
use crate::pg::wal::{self, segment_of, Numbering};
use crate::repo::repository::Repository;

/// The prefix of the mark naming the newest requested WAL file and its size.
const REQUESTED: &str = "requested";
/// The filler's lock.
const LOCK: &str = "lock";
/// The prefix of the mark naming the repository the spool holds WAL of.
const REPOSITORY: &str = "repository";

/// The spool of one repository location.
pub struct Spool {
    dir: PathBuf,
}

impl Spool {
    /// The spool of repository `location` under `root`.
    pub fn new(root: &Path, location: &str) -> Spool {
        let key = blake3::hash(location.as_bytes()).to_hex();
        Spool {
            dir: root.join(&key.as_str()[..16]),
        }
    }

    /// The directory spooled files are in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates the spool (private to this user).
    pub fn create(&self) -> Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| Error::io(format!("creating {}", self.dir.display()), e))
    }

    /// Moves spooled WAL file `name` to `dest`; `None` when it is not
    /// spooled, else its size.
    pub fn take(&self, name: &str, dest: &Path) -> Result<Option<u64>> {
        wal::check_name(name)?;
        let from = self.dir.join(name);
        let size = match fs::metadata(&from) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == IoKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("reading {}", from.display()), e)),
        };
        match fs::rename(&from, dest) {
            Ok(()) => Ok(Some(size)),
            // Taken by a concurrent fetch of the same name.
            Err(e) if e.kind() == IoKind::NotFound => Ok(None),
            // Another file system: copied next to `dest`, then renamed.
            Err(e) if e.kind() == IoKind::CrossesDevices => {
                let dir = match dest.parent() {
                    Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                    _ => PathBuf::from("."),
                };
                let tmp = tempfile::Builder::new()
                    .prefix(".cairn-wal-")
                    .tempfile_in(&dir)
                    .map_err(|e| Error::io(format!("creating a file in {}", dir.display()), e))?;
                fs::copy(&from, tmp.path())
                    .map_err(|e| Error::io(format!("copying {}", from.display()), e))?;
                tmp.persist(dest)
                    .map_err(|e| Error::io(format!("writing {}", dest.display()), e.error))?;
                let _ = fs::remove_file(&from);
                Ok(Some(size))
            }
            Err(e) => Err(Error::io(format!("moving {}", from.display()), e)),
        }
    }

    /// Records `name` (of `size` bytes) as the newest WAL file requested,
    /// and removes the spooled segments before it: recovery goes forward.
    /// The request is an empty file named `requested.NAME.SIZE` (no data
    /// to write, nothing to sync), and replaces the older ones.
    pub fn requested(&self, name: &str, size: u64) -> Result<()> {
        let mark = format!("{REQUESTED}.{name}.{size}");
        let path = self.dir.join(&mark);
        File::create(&path).map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        for (old, _) in self.requests() {
            if old != mark {
                let _ = fs::remove_file(self.dir.join(old));
            }
        }
        self.drop_before(name)
    }

    /// The request marks present: file name, and (WAL name, size).
    fn requests(&self) -> Vec<(String, (String, u64))> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| {
                let file = e.file_name().to_str()?.to_string();
                let rest = file.strip_prefix(REQUESTED)?.strip_prefix('.')?;
                let (name, size) = rest.rsplit_once('.')?;
                let req = (name.to_string(), size.parse().ok()?);
                Some((file, req))
            })
            .collect()
    }

    /// The newest request (the greatest name, should two marks meet).
    fn read_requested(&self) -> Option<(String, u64)> {
        self.requests().into_iter().map(|(_, req)| req).max()
    }

    /// Removes the spooled segments whose names sort before `name`.
    fn drop_before(&self, name: &str) -> Result<()> {
        let Some(_) = segment_of(name) else {
            return Ok(());
        };
        let entries = fs::read_dir(&self.dir)
            .map_err(|e| Error::io(format!("reading {}", self.dir.display()), e))?;
        for entry in entries.flatten() {
            let file = entry.file_name();
            let Some(file) = file.to_str() else { continue };
            if segment_of(file).is_some() && file < name {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(())
    }

    /// Whether no filler holds the spool now (a foreground fetch starts
    /// one only then; the filler checks before it opens the repository).
    pub fn is_free(&self) -> bool {
        matches!(self.try_lock(), Ok(Some(_)))
    }

    /// The spool's lock, when no other filler holds it.
    fn try_lock(&self) -> Result<Option<File>> {
        let lock_path = self.dir.join(LOCK);
        let lock = File::create(&lock_path)
            .map_err(|e| Error::io(format!("opening {}", lock_path.display()), e))?;
        match lock.try_lock() {
            Ok(()) => Ok(Some(lock)),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => {
                Err(Error::io(format!("locking {}", lock_path.display()), e))
            }
        }
    }

    /// Ties the spool to repository `id`: a spool left by another
    /// repository at the same location (made again since) is emptied.
    pub fn bind(&self, id: &crate::id::Id) -> Result<()> {
        let mark = format!("{REPOSITORY}.{}", id.to_hex());
        if self.dir.join(&mark).exists() {
            return Ok(());
        }
        if let Ok(entries) = fs::read_dir(&self.dir) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                if segment_of(name).is_some() || name.starts_with(REPOSITORY) {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
        let path = self.dir.join(mark);
        File::create(&path).map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        Ok(())
    }

    /// The filler: fetches the `count` segments after the newest requested
    /// one that are not spooled yet, in order, until the end of the archive,
    /// and again while newer requests come. Returns at once when another
    /// filler holds the spool. Returns how many it fetched.
    pub fn fill(&self, repo: &Repository, count: u32, cancel: &AtomicBool) -> Result<usize> {
        let mut fetched = 0;
        loop {
            let Some(lock) = self.try_lock()? else {
                return Ok(fetched);
            };
            self.bind(repo.id())?;
            self.remove_partial_files();
            let (n, done_for) = self.fill_locked(repo, count, cancel)?;
            fetched += n;
            drop(lock);
            // A request that came while the lock was held: its fetch saw
            // the lock and started no filler.
            if self.read_requested() == done_for {
                return Ok(fetched);
            }
        }
    }

    fn fill_locked(
        &self,
        repo: &Repository,
        count: u32,
        cancel: &AtomicBool,
    ) -> Result<(usize, Option<(String, u64)>)> {
        let mut fetched = 0;
        let mut done_for: Option<(String, u64)> = None;
        while let Some(req) = self.read_requested() {
            if done_for.as_ref() == Some(&req) {
                break;
            }
            for next in following(&req.0, req.1, count) {
                if self.read_requested().as_ref() != Some(&req) {
                    break; // a newer request: start from it
                }
                if self.dir.join(&next).exists() {
                    continue;
                }
                // Synced: the spool outlives a crash, and a spooled file
                // is handed over as it is.
                match wal::fetch_to(repo, &next, &self.dir.join(&next), true, cancel) {
                    Ok(_) => fetched += 1,
                    // The end of the archive, for now.
                    Err(e) if e.kind() == ErrorKind::SourceNotFound => break,
                    Err(e) => return Err(e),
                }
            }
            done_for = Some(req);
        }
        Ok((fetched, done_for))
    }

    /// Temporary files a killed filler left (none is being written while
    /// the lock is held).
    fn remove_partial_files(&self) {
        if let Ok(entries) = fs::read_dir(&self.dir) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                if name.to_str().is_some_and(|n| n.starts_with(".cairn-wal-")) {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
    }
}

/// The names of the `count` segments after segment `name` of `size`
/// bytes, on its timeline; none when `name` is not a segment.
pub fn following(name: &str, size: u64, count: u32) -> Vec<String> {
    let Some((tl, (log, seg))) = segment_of(name) else {
        return Vec::new();
    };
    let Some(numbering) = Numbering::for_size(size).filter(|_| name.len() == 24) else {
        return Vec::new();
    };
    let n = numbering.number((log, seg));
    (1..=u64::from(count))
        .map(|k| numbering.name(tl, n + k))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_segments_that_follow_cross_into_the_next_log_file() {
        let next = following("0000000200000003000000FE", 16 << 20, 3);
        assert_eq!(
            next,
            [
                "0000000200000003000000FF",
                "000000020000000400000000",
                "000000020000000400000001"
            ]
        );
        // 64 MiB segments: 64 per log file.
        assert_eq!(
            following("00000001000000000000003F", 64 << 20, 1),
            ["000000010000000100000000"]
        );
        assert!(following("00000002.history", 41, 3).is_empty());
        assert!(following("000000010000000000000001.partial", 16 << 20, 3).is_empty());
    }

    #[test]
    fn a_spooled_file_is_taken_once_and_older_ones_are_dropped() {
        let dir = tempfile::tempdir().expect("test");
        let spool = Spool::new(dir.path(), "/srv/backup");
        spool.create().expect("test");
        for n in ["000000010000000000000001", "000000010000000000000002"] {
            fs::write(spool.dir().join(n), n).expect("test");
        }
        let dest = dir.path().join("RECOVERYXLOG");
        assert_eq!(
            spool.take("000000010000000000000003", &dest).expect("test"),
            None
        );
        assert_eq!(
            spool.take("000000010000000000000002", &dest).expect("test"),
            Some(24)
        );
        assert_eq!(fs::read(&dest).expect("test"), b"000000010000000000000002");
        assert_eq!(
            spool.take("000000010000000000000002", &dest).expect("test"),
            None
        );
        spool
            .requested("000000010000000000000002", 16 << 20)
            .expect("test");
        assert!(!spool.dir().join("000000010000000000000001").exists());
        assert_eq!(
            spool.read_requested(),
            Some(("000000010000000000000002".to_string(), 16 << 20))
        );
        // Bound to one repository: another repository's spool is emptied.
        let (a, b) = (
            crate::id::Id::from_bytes([1; 32]),
            crate::id::Id::from_bytes([2; 32]),
        );
        spool.bind(&a).expect("test");
        fs::write(spool.dir().join("000000010000000000000007"), "x").expect("test");
        spool.bind(&a).expect("test");
        assert!(spool.dir().join("000000010000000000000007").exists());
        spool.bind(&b).expect("test");
        assert!(!spool.dir().join("000000010000000000000007").exists());
        // Another location has another spool.
        assert_ne!(Spool::new(dir.path(), "s3:https://x/b").dir(), spool.dir());
    }
}
