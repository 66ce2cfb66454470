//! A repository in a local directory.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{Backend, ObjectInfo, ObjectKind};
use crate::error::{Error, ErrorKind, Result};
use crate::id::is_object_name;
use crate::sys::lock;

/// Largest range read accepted (a tree blob is at most 256 MiB).
const MAX_RANGE: u64 = 512 * 1024 * 1024;

/// A repository in a local directory. Objects are written to a temporary
/// file, fsynced, and then hard-linked to their name, which fails if the
/// name exists: an object is never overwritten.
#[derive(Debug)]
pub struct LocalBackend {
    root: PathBuf,
    /// The packs read from last, kept open: a restore of many small files
    /// reads one pack a few bytes at a time, and opened it for each read.
    open_packs: Mutex<VecDeque<(String, Arc<File>)>>,
}

impl Clone for LocalBackend {
    fn clone(&self) -> Self {
        LocalBackend::new(self.root.clone())
    }
}

/// Packs kept open for range reads.
const OPEN_PACKS: usize = 8;

impl LocalBackend {
    /// A backend rooted at `root` (which need not exist yet).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalBackend {
            root: root.into(),
            open_packs: Mutex::new(VecDeque::new()),
        }
    }

    /// The pack `name`, open; from the few kept open when it is one of
    /// them. (A pack is never changed; one deleted while open still reads
    /// as it was, and every blob read is checked against its ID.)
    fn open_pack(&self, name: &str, path: &Path) -> Result<Arc<File>> {
        if let Some((_, f)) = lock(&self.open_packs).iter().find(|(n, _)| n == name) {
            return Ok(f.clone());
        }
        let file = Arc::new(self.open(ObjectKind::Pack, name, path)?);
        let mut open = lock(&self.open_packs);
        open.push_back((name.to_string(), file.clone()));
        if open.len() > OPEN_PACKS {
            open.pop_front();
        }
        Ok(file)
    }

    fn path(&self, kind: ObjectKind, name: &str) -> PathBuf {
        self.root.join(kind.path(name))
    }

    /// Opens the object's file at `path` for reading (see
    /// [`open_object_file`]).
    fn open(&self, kind: ObjectKind, name: &str, path: &Path) -> Result<File> {
        match open_object_file(path) {
            Ok(Ok(file)) => Ok(file),
            Ok(Err(what)) => Err(Error::corrupt(format!(
                "{} {name} is {what}, not an object ({})",
                kind.noun(),
                path.display()
            ))),
            // Below a file, not a directory: nothing is stored there.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                Err(self.missing(kind, name))
            }
            Err(e) => Err(Error::storage_io(format!("opening {}", path.display()), e)),
        }
    }

    fn missing(&self, kind: ObjectKind, name: &str) -> Error {
        Error::new(
            ErrorKind::MissingObject,
            format!(
                "{} {name} is missing ({})",
                kind.noun(),
                self.path(kind, name).display()
            ),
        )
    }
}

/// Creates `dir` and its missing parents with mode 0700 whatever the
/// umask, like the objects (0600): other local users must not be able to
/// delete or plant objects (`repo-format.md` §15.2).
fn create_dirs(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Opens an object's file for reading without blocking, and only if it is
/// a regular file: a FIFO planted in place of an object would block
/// `open()` forever, a device would read without end (`repo-format.md`
/// §15.2, docs/design.md §8.3).
fn open_object_file(path: &Path) -> io::Result<Result<File, &'static str>> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    Ok(if meta.is_file() {
        Ok(file)
    } else if meta.is_dir() {
        Err("a directory")
    } else {
        Err("not a regular file (a FIFO, socket or device)")
    })
}

impl Backend for LocalBackend {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    /// Two: one pack is written and synced while the next is verified;
    /// two reads keep a disk busy.
    fn parallel_requests(&self) -> usize {
        2
    }

    fn create(&self) -> Result<()> {
        let mk = |p: &Path| {
            create_dirs(p).map_err(|e| Error::storage_io(format!("creating {}", p.display()), e))
        };
        mk(&self.root)?;
        for kind in [ObjectKind::Key, ObjectKind::Index, ObjectKind::Snapshot] {
            mk(&self.root.join(kind.dir()))?;
        }
        let data = self.root.join("data");
        for i in 0..=255u8 {
            mk(&data.join(format!("{i:02x}")))?;
        }
        for dir in [data.as_path(), self.root.as_path()] {
            sync_dir(dir)
                .map_err(|e| Error::storage_io(format!("syncing {}", dir.display()), e))?;
        }
        if let Some(parent) = self.root.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent)
                .map_err(|e| Error::storage_io(format!("syncing {}", parent.display()), e))?;
        }
        Ok(())
    }

    fn put(&self, kind: ObjectKind, name: &str, data: &[u8]) -> Result<bool> {
        let path = self.path(kind, name);
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        let ctx = || format!("writing {}", path.display());
        let mut tmp = match tempfile::Builder::new().prefix(".tmp-").tempfile_in(&dir) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                create_dirs(&dir).map_err(|e| Error::storage_io(ctx(), e))?;
                if let Some(parent) = dir.parent() {
                    sync_dir(parent).map_err(|e| Error::storage_io(ctx(), e))?;
                }
                tempfile::Builder::new()
                    .prefix(".tmp-")
                    .tempfile_in(&dir)
                    .map_err(|e| Error::storage_io(ctx(), e))?
            }
            Err(e) => return Err(Error::storage_io(ctx(), e)),
        };
        tmp.write_all(data)
            .map_err(|e| Error::storage_io(ctx(), e))?;
        tmp.as_file()
            .sync_all()
            .map_err(|e| Error::storage_io(ctx(), e))?;
        let created = match fs::hard_link(tmp.path(), &path) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
            // File systems without hard links (EPERM, ENOSYS, EOPNOTSUPP):
            // an exclusive rename instead.
            Err(e) if matches!(e.raw_os_error(), Some(1 | 38 | 95)) => {
                match tmp.persist_noclobber(&path) {
                    Ok(_) => {
                        sync_dir(&dir).map_err(|e| Error::storage_io(ctx(), e))?;
                        return Ok(true);
                    }
                    Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
                    Err(e) => return Err(Error::storage_io(ctx(), e.error)),
                }
            }
            Err(e) => return Err(Error::storage_io(ctx(), e)),
        };
        drop(tmp);
        if created {
            sync_dir(&dir).map_err(|e| Error::storage_io(ctx(), e))?;
        }
        Ok(created)
    }

    fn get(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>> {
        let path = self.path(kind, name);
        let ctx = || format!("reading {}", path.display());
        let mut file = self.open(kind, name, &path)?;
        let len = file
            .metadata()
            .map_err(|e| Error::storage_io(ctx(), e))?
            .len();
        if len > kind.max_size() {
            return Err(Error::corrupt(format!(
                "{} {name} is {len} bytes, more than any valid {} ({} bytes)",
                kind.noun(),
                kind.noun(),
                kind.max_size()
            )));
        }
        let mut buf = Vec::with_capacity(len as usize);
        // Bounded even if the file grows after the size check.
        io::Read::read_to_end(
            &mut io::Read::take(&mut file, kind.max_size() + 1),
            &mut buf,
        )
        .map_err(|e| Error::storage_io(ctx(), e))?;
        if buf.len() as u64 > kind.max_size() {
            return Err(Error::corrupt(format!(
                "{} {name} grew beyond the size limit while being read",
                kind.noun()
            )));
        }
        Ok(buf)
    }

    fn get_range(&self, kind: ObjectKind, name: &str, offset: u64, length: u64) -> Result<Vec<u8>> {
        let path = self.path(kind, name);
        let file = match kind {
            ObjectKind::Pack => self.open_pack(name, &path)?,
            _ => Arc::new(self.open(kind, name, &path)?),
        };
        if length > MAX_RANGE {
            return Err(Error::invalid(format!(
                "range of {length} bytes is too large"
            )));
        }
        let len = usize::try_from(length).map_err(|_| Error::invalid("range too large"))?;
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, offset)
            .map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof => Error::corrupt(format!(
                    "{} {name} is truncated: cannot read {length} bytes at offset {offset}",
                    kind.noun()
                )),
                _ => Error::storage_io(format!("reading {}", path.display()), e),
            })?;
        Ok(buf)
    }

    fn list(&self, kind: ObjectKind) -> Result<Vec<ObjectInfo>> {
        let dirs: Vec<PathBuf> = match kind {
            ObjectKind::Config => return Ok(Vec::new()),
            ObjectKind::Pack => {
                let data = self.root.join("data");
                let mut v = Vec::new();
                match fs::read_dir(&data) {
                    Ok(rd) => {
                        for entry in rd {
                            let entry = entry.map_err(|e| {
                                Error::storage_io(format!("listing {}", data.display()), e)
                            })?;
                            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                                v.push(entry.path());
                            }
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(Error::storage_io(format!("listing {}", data.display()), e))
                    }
                }
                v
            }
            other => vec![self.root.join(other.dir())],
        };
        let mut out = Vec::new();
        for dir in dirs {
            let rd = match fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::storage_io(format!("listing {}", dir.display()), e)),
            };
            for entry in rd {
                let entry = entry
                    .map_err(|e| Error::storage_io(format!("listing {}", dir.display()), e))?;
                let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                if !is_object_name(&name) {
                    continue;
                }
                let meta = match entry.metadata() {
                    Ok(m) => m,
                    // Deleted (by a prune) between listing and stat.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => {
                        return Err(Error::storage_io(
                            format!("stat {}", entry.path().display()),
                            e,
                        ))
                    }
                };
                if meta.is_file() {
                    let modified = meta
                        .modified()
                        .ok()
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .and_then(|d| i64::try_from(d.as_secs()).ok());
                    out.push(ObjectInfo {
                        name,
                        size: meta.len(),
                        modified,
                    });
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn delete(&self, kind: ObjectKind, name: &str) -> Result<()> {
        let path = self.path(kind, name);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::storage_io(format!("deleting {}", path.display()), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::Id;

    #[test]
    fn put_is_create_only_and_listing_skips_temp_files() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::storage_io("tempdir", e))?;
        let b = LocalBackend::new(dir.path().join("repo"));
        b.create()?;
        let name = Id::of_bytes(b"one").to_hex();
        assert!(b.put(ObjectKind::Pack, &name, b"one")?);
        assert!(!b.put(ObjectKind::Pack, &name, b"different")?);
        assert_eq!(b.get(ObjectKind::Pack, &name)?, b"one");
        assert_eq!(b.get_range(ObjectKind::Pack, &name, 1, 2)?, b"ne");
        assert!(b.get_range(ObjectKind::Pack, &name, 1, 20).is_err());
        fs::write(dir.path().join("repo/data/00/.tmp-junk"), b"x")
            .map_err(|e| Error::storage_io("w", e))?;
        let listed = b.list(ObjectKind::Pack)?;
        assert_eq!(listed.len(), 1);
        assert_eq!(
            (listed[0].name.as_str(), listed[0].size),
            (name.as_str(), 3)
        );
        assert!(listed[0].modified.is_some());
        let missing = b.get(ObjectKind::Index, &name).err().map(|e| e.kind());
        assert_eq!(missing, Some(ErrorKind::MissingObject));
        b.delete(ObjectKind::Pack, &name)?;
        b.delete(ObjectKind::Pack, &name)?;
        assert!(b.list(ObjectKind::Pack)?.is_empty());
        Ok(())
    }
}
