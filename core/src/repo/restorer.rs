//! Writing a snapshot's tree into a directory (`restore`, drills): what
//! to restore (a subfolder, include and exclude patterns), what to do with
//! files already there, and reading restored files back to verify them.
//!
//! Every blob is checked against its ID before a byte of it is written
//! ([`crate::repo::reader`]). A small file is read whole before it is
//! created; a large one, or one replacing a file already there, is written
//! under a temporary name and renamed into place only when all of it was
//! verified: a damaged repository never leaves a silently wrong file
//! behind. Small files are written several at a time, and a directory's
//! metadata is set once everything below it is written.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use filetime::FileTime;
use rayon::prelude::*;

use crate::error::{Error, ErrorKind, Result};
use crate::format::pack::{blob_id, BlobType};
use crate::format::snapshot::Snapshot;
use crate::format::tree::{HardLink, Node, NodeKind};
use crate::id::Id;
use crate::pattern::Patterns;
use crate::repo::cache::CacheReader;
use crate::repo::reader::write_chunks;
use crate::repo::repository::Repository;
use crate::repo::walker::find_node;
use crate::sys::running_as_root;

/// Receives progress from a running restore.
pub trait RestoreProgress: Sync {
    /// `n` more bytes were written.
    fn bytes_written(&self, _n: u64) {}
    /// Something was skipped; the restore goes on.
    fn warning(&self, _message: &str) {}
}

/// Reports nothing.
pub struct NoRestoreProgress;
impl RestoreProgress for NoRestoreProgress {}

/// Counts of a finished restore.
#[derive(Debug, Default, Clone)]
pub struct RestoreStats {
    /// Regular files written (with a dry run: that would be).
    pub files: u64,
    /// Directories created or updated.
    pub dirs: u64,
    /// Symlinks created.
    pub symlinks: u64,
    /// FIFOs and device nodes created.
    pub specials: u64,
    /// Files restored as another hard link of a file restored before
    /// (counted in `files` too).
    pub hardlinks: u64,
    /// Extended attributes only root may set (`security.*`, `trusted.*`,
    /// SELinux labels among them), left out by a restore not run as root.
    pub xattrs_not_root: u64,
    /// Bytes of file content written.
    pub bytes: u64,
    /// Files already at the target and left as they were (`overwrite`).
    pub files_kept: u64,
    /// Entries left out by the include and exclude patterns.
    pub excluded: u64,
    /// Files read back and found equal to the snapshot (`verify`).
    pub verified: u64,
    /// Entries skipped (special files) or restored damaged (marked by
    /// `repair snapshots`), one message each.
    pub warnings: Vec<String>,
}

/// What to do with a file that is already at the target (restic's
/// `--overwrite`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Overwrite {
    /// Replace it.
    #[default]
    Always,
    /// Replace it unless its size and modification time are the
    /// snapshot's (the quick check of rsync).
    IfChanged,
    /// Replace it only if the snapshot's copy is newer.
    IfNewer,
    /// Never replace it.
    Never,
}

impl std::str::FromStr for Overwrite {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "always" => Ok(Overwrite::Always),
            "if-changed" => Ok(Overwrite::IfChanged),
            "if-newer" => Ok(Overwrite::IfNewer),
            "never" => Ok(Overwrite::Never),
            _ => Err(Error::invalid(format!(
                "--overwrite {s:?}: use always, if-changed, if-newer or never"
            ))),
        }
    }
}

/// What to restore, and how.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct RestoreOptions {
    /// Only this path of the snapshot (`SNAPSHOT:PATH`): a directory's
    /// contents go straight into the target, a file into the target
    /// under its name.
    pub subfolder: Option<PathBuf>,
    /// Only entries these patterns match (with what is under them, and the
    /// directories above them); patterns are matched against the paths in
    /// the snapshot ([`Patterns`]).
    pub include: Patterns,
    /// Not the entries these patterns match.
    pub exclude: Patterns,
    /// Files already at the target.
    pub overwrite: Overwrite,
    /// Write nothing; count what would be restored.
    pub dry_run: bool,
    /// Read every restored file back and check it against the snapshot.
    pub verify: bool,
}

impl RestoreOptions {
    fn included(&self, path: &Path) -> bool {
        self.include.is_empty() || self.include.matches(path)
    }
}

/// Restores `snapshot` (or the part `opts` names) into `target` (created
/// if missing).
pub fn restore_tree(
    repo: &Repository,
    snapshot: &Snapshot,
    target: &Path,
    opts: &RestoreOptions,
    progress: &dyn RestoreProgress,
    cancel: &AtomicBool,
) -> Result<RestoreStats> {
    if !opts.dry_run {
        fs::create_dir_all(target)
            .map_err(|e| Error::io(format!("creating {}", target.display()), e))?;
    }
    let index = repo.index()?;
    let mut r = Restorer {
        repo,
        index,
        progress,
        cancel,
        stats: RestoreStats::default(),
        is_root: running_as_root(),
        opts,
        links: HashMap::new(),
        pending: Vec::new(),
        pool: None,
        dirs_done: Vec::new(),
    };
    match &opts.subfolder {
        None => {
            r.restore_tree(&snapshot.tree, target, Path::new("/"))?;
        }
        Some(sub) => {
            let node = find_node(repo, &r.index, snapshot, sub)?;
            let in_snapshot = Path::new("/").join(sub);
            match (node.kind, node.subtree) {
                (NodeKind::Dir, Some(tree)) => {
                    r.restore_tree(&tree, target, &in_snapshot)?;
                }
                _ => {
                    let name = OsStr::from_bytes(&node.name_bytes()?).to_os_string();
                    r.restore_node(&node, &target.join(name), &in_snapshot)?;
                }
            }
        }
    }
    r.write_pending()?;
    Ok(r.stats)
}

/// Small files are written this many at a time, in parallel
/// ([`Restorer::write_pending`]).
const FILE_BATCH: usize = 1024;

/// What writing one file did, for the restore's counts.
#[derive(Default)]
struct Written {
    bytes: u64,
    xattrs_not_root: u64,
    verified: bool,
    warnings: Vec<String>,
}

struct Restorer<'a> {
    repo: &'a Repository,
    index: CacheReader,
    progress: &'a dyn RestoreProgress,
    cancel: &'a AtomicBool,
    stats: RestoreStats,
    is_root: bool,
    opts: &'a RestoreOptions,
    /// The first restored link of each file with several hard links.
    links: HashMap<HardLink, PathBuf>,
    /// Small files waiting to be written, in parallel, before the
    /// metadata of the directories above them is set.
    pending: Vec<(Node, PathBuf)>,
    /// The threads that write them.
    pool: Option<rayon::ThreadPool>,
    /// Directories whose metadata is set once the files pending are
    /// written.
    dirs_done: Vec<(Node, PathBuf)>,
}

impl Restorer<'_> {
    fn warn(&mut self, msg: String) {
        self.progress.warning(&msg);
        self.stats.warnings.push(msg);
    }

    /// Restores the entries of tree `tree_id` into `dir`, which is
    /// `in_snapshot` in the snapshot. Returns whether it restored any.
    fn restore_tree(&mut self, tree_id: &Id, dir: &Path, in_snapshot: &Path) -> Result<bool> {
        let tree = self.repo.load_tree(&self.index, tree_id)?;
        let mut any = false;
        for node in &tree.nodes {
            if self.cancel.load(Ordering::SeqCst) {
                return Err(Error::interrupted());
            }
            let name = OsStr::from_bytes(&node.name_bytes()?).to_os_string();
            any |= self.restore_node(node, &dir.join(&name), &in_snapshot.join(&name))?;
        }
        Ok(any)
    }

    /// Restores one entry to `path`; `in_snapshot` is its path in the
    /// snapshot. Returns whether it restored it (or something under it).
    fn restore_node(&mut self, node: &Node, path: &Path, in_snapshot: &Path) -> Result<bool> {
        if self.opts.exclude.matches(in_snapshot) {
            self.stats.excluded += 1;
            return Ok(false);
        }
        let included = self.opts.included(in_snapshot);
        if !included && node.kind != NodeKind::Dir {
            self.stats.excluded += 1;
            return Ok(false);
        }
        if let Some(why) = unrestorable_path(path) {
            // The system cannot name it: skip it (and what is below it)
            // and restore the rest, like tar and rsync do.
            self.warn(format!("{}: skipped: {why}", path.display()));
            return Ok(false);
        }
        if let Some(d) = &node.damage {
            self.warn(format!("{}: {}", path.display(), damage_note(d)));
        }
        match node.kind {
            NodeKind::Dir => self.restore_dir(node, path, in_snapshot, included),
            NodeKind::File => {
                self.make_parent(path)?;
                self.restore_file(node, path)?;
                Ok(true)
            }
            NodeKind::Symlink => {
                self.make_parent(path)?;
                if !self.opts.dry_run {
                    clear(path)?;
                    let target = node.target_bytes()?;
                    std::os::unix::fs::symlink(OsStr::from_bytes(&target), path).map_err(|e| {
                        Error::io(format!("creating symlink {}", path.display()), e)
                    })?;
                    self.set_metadata(path, node, true)?;
                }
                self.stats.symlinks += 1;
                Ok(true)
            }
            NodeKind::Fifo | NodeKind::Chardev | NodeKind::Blockdev => {
                self.restore_special(node, path)
            }
            NodeKind::Socket => {
                self.warn(format!(
                    "{}: socket not restored (the program that listens on it creates it)",
                    path.display()
                ));
                Ok(false)
            }
        }
    }

    /// A FIFO, or (as root) a device node, created with `mknod`.
    fn restore_special(&mut self, node: &Node, path: &Path) -> Result<bool> {
        use rustix::fs::FileType;
        let (file_type, dev) = match (node.kind, node.device) {
            (NodeKind::Fifo, _) => (FileType::Fifo, 0),
            (NodeKind::Chardev, Some(dev)) => (FileType::CharacterDevice, dev),
            (NodeKind::Blockdev, Some(dev)) => (FileType::BlockDevice, dev),
            (kind, _) => {
                self.warn(format!(
                    "{}: {kind:?} not restored: the snapshot has no device number",
                    path.display()
                ));
                return Ok(false);
            }
        };
        if file_type != FileType::Fifo && !self.is_root {
            self.warn(format!(
                "{}: device node not restored: only root can create one",
                path.display()
            ));
            return Ok(false);
        }
        self.make_parent(path)?;
        if !self.opts.dry_run {
            clear(path)?;
            let mode = rustix::fs::Mode::from_raw_mode(node.mode & 0o7777);
            rustix::fs::mknodat(rustix::fs::CWD, path, file_type, mode, dev)
                .map_err(|e| Error::io(format!("creating {}", path.display()), e.into()))?;
            self.set_metadata(path, node, false)?;
        }
        self.stats.specials += 1;
        Ok(true)
    }

    /// A directory: created when it is included (an empty one too), or
    /// when something under it is.
    fn restore_dir(
        &mut self,
        node: &Node,
        path: &Path,
        in_snapshot: &Path,
        included: bool,
    ) -> Result<bool> {
        let subtree = node.subtree.ok_or_else(|| {
            Error::corrupt(format!("directory {} has no subtree", path.display()))
        })?;
        if included {
            self.make_dir(path)?;
        }
        let any = self.restore_tree(&subtree, path, in_snapshot)?;
        if !(included || any) {
            return Ok(false);
        }
        if !self.opts.dry_run {
            // Once the files below it are written (a time set before
            // would change again, a read-only mode would stop them).
            self.dirs_done.push((node.clone(), path.to_path_buf()));
            if self.pending.is_empty() {
                self.finish_dirs()?;
            }
        }
        self.stats.dirs += 1;
        Ok(true)
    }

    /// Sets the metadata of the directories whose entries are all
    /// written, deepest first.
    fn finish_dirs(&mut self) -> Result<()> {
        for (node, path) in std::mem::take(&mut self.dirs_done) {
            self.set_metadata(&path, &node, false)?;
        }
        Ok(())
    }

    /// Creates directory `path` (and those above it), replacing a file of
    /// that name; a read-only directory restored again is made writable
    /// until its mode is set at its end.
    fn make_dir(&self, path: &Path) -> Result<()> {
        if self.opts.dry_run {
            return Ok(());
        }
        match fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() => {
                let mode = m.permissions().mode() | 0o700;
                let _ = fs::set_permissions(path, fs::Permissions::from_mode(mode));
            }
            Ok(_) => remove(path)?,
            Err(_) => {}
        }
        fs::create_dir_all(path).map_err(|e| Error::io(format!("creating {}", path.display()), e))
    }

    /// The directories above an entry restored alone (with include
    /// patterns), created as needed; their metadata is set when each is
    /// done.
    fn make_parent(&self, path: &Path) -> Result<()> {
        // Without include patterns every directory is created before its
        // entries (restore_dir), and the target before everything: no
        // stat per entry is needed.
        if self.opts.dry_run || self.opts.include.is_empty() {
            return Ok(());
        }
        match path.parent() {
            Some(dir) if !dir.is_dir() => self.make_dir(dir),
            _ => Ok(()),
        }
    }

    /// Whether the file at `path` stays as it is (`overwrite`).
    fn keep_existing(&self, node: &Node, path: &Path) -> bool {
        if self.opts.overwrite == Overwrite::Always {
            return false;
        }
        let Ok(m) = fs::symlink_metadata(path) else {
            return false;
        };
        if !m.is_file() {
            return false;
        }
        match self.opts.overwrite {
            Overwrite::Always => false,
            Overwrite::Never => true,
            Overwrite::IfNewer => {
                (m.mtime(), m.mtime_nsec()) >= (node.mtime, i64::from(node.mtime_nsec))
            }
            Overwrite::IfChanged => {
                m.len() == node.size
                    && m.mtime() == node.mtime
                    && m.mtime_nsec() == i64::from(node.mtime_nsec)
            }
        }
    }

    fn restore_file(&mut self, node: &Node, path: &Path) -> Result<()> {
        if self.keep_existing(node, path) {
            self.stats.files_kept += 1;
            // Kept on the quick check of size and time: verified too (a
            // file changed in place without changing either is caught).
            if self.opts.verify && !self.opts.dry_run && self.opts.overwrite == Overwrite::IfChanged
            {
                self.verify_file(node, path)?;
                self.stats.verified += 1;
            }
            return Ok(());
        }
        if self.opts.dry_run {
            self.stats.files += 1;
            self.stats.bytes += node.size;
            return Ok(());
        }
        if self.link_again(node, path)? {
            self.stats.files += 1;
            self.stats.hardlinks += 1;
            if self.opts.verify {
                self.verify_file(node, path)?;
                self.stats.verified += 1;
            }
            return Ok(());
        }
        let small = is_small(node);
        if small && node.hardlink.is_none() {
            self.pending.push((node.clone(), path.to_path_buf()));
            if self.pending.len() >= FILE_BATCH {
                self.write_pending()?;
            }
            return Ok(());
        }
        let written = self.write_whole(node, path)?;
        self.count(written);
        if let Some(l) = node.hardlink {
            self.links.entry(l).or_insert_with(|| path.to_path_buf());
        }
        Ok(())
    }

    /// Writes the small files waiting, several at once: a restore of many
    /// small files spends its time creating files and decoding one blob
    /// each, work that spreads over the cores (and, on object storage,
    /// over requests). A batch spans directories, so that threads seldom
    /// wait on one directory's lock (2.1 s against 2.3 for batches of one
    /// directory, docs/benchmarks.md §12).
    /// Counts and warnings are taken in their order; then the metadata
    /// of the directories finished is set.
    fn write_pending(&mut self) -> Result<()> {
        let batch = std::mem::take(&mut self.pending);
        if batch.len() <= 1 {
            for (node, path) in &batch {
                let written = self.write_whole(node, path)?;
                self.count(written);
            }
            return self.finish_dirs();
        }
        let pool = match self.pool.take() {
            Some(pool) => pool,
            None => {
                let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
                rayon::ThreadPoolBuilder::new()
                    .num_threads(cores.max(self.repo.backend().parallel_requests()))
                    .thread_name(|i| format!("cairn-restore-{i}"))
                    .build()
                    .map_err(|e| {
                        Error::new(ErrorKind::Io, format!("starting the restore threads: {e}"))
                    })?
            }
        };
        let this = &*self;
        let outcomes: Vec<Result<Written>> = pool.install(|| {
            batch
                .par_iter()
                .map(|(node, path)| {
                    if this.cancel.load(Ordering::SeqCst) {
                        return Err(Error::interrupted());
                    }
                    this.write_whole(node, path)
                })
                .collect()
        });
        self.pool = Some(pool);
        for outcome in outcomes {
            let written = outcome?;
            self.count(written);
        }
        self.finish_dirs()
    }

    /// Adds a written file to the counts, and says its warnings.
    fn count(&mut self, w: Written) {
        self.stats.files += 1;
        self.stats.bytes += w.bytes;
        self.stats.xattrs_not_root += w.xattrs_not_root;
        self.stats.verified += u64::from(w.verified);
        for msg in w.warnings {
            self.warn(msg);
        }
    }

    /// Writes file `node` to `path` with its metadata and extended
    /// attributes, and reads it back with `--verify`.
    fn write_whole(&self, node: &Node, path: &Path) -> Result<Written> {
        let mut w = Written {
            bytes: self.write_file(node, path)?,
            ..Written::default()
        };
        // After the time was set: an extended attribute changes only the
        // ctime.
        self.restore_xattrs(path, node, &mut w);
        if self.opts.verify {
            self.verify_file(node, path)?;
            w.verified = true;
        }
        Ok(w)
    }

    /// Sets the entry's extended attributes. Those only root may set
    /// (`security.*`, `trusted.*`) are counted and left when not root;
    /// any other that cannot be set is a warning.
    fn restore_xattrs(&self, path: &Path, node: &Node, w: &mut Written) {
        for x in &node.xattrs {
            let privileged = x.name.starts_with("security.") || x.name.starts_with("trusted.");
            if privileged && !self.is_root {
                w.xattrs_not_root += 1;
                continue;
            }
            let set = hex::decode(&x.value)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
                .and_then(|v| crate::sys::write_xattr(path, x.name.as_bytes(), &v));
            if let Err(e) = set {
                w.warnings.push(format!(
                    "{}: extended attribute {} not restored: {e}",
                    path.display(),
                    x.name
                ));
            }
        }
    }

    /// Another link of a file restored earlier in this run: linked to it
    /// (its content and metadata are the file's). `false` when there is no
    /// earlier link, or linking fails (another file system): then the
    /// caller writes the content.
    fn link_again(&mut self, node: &Node, path: &Path) -> Result<bool> {
        let Some(first) = node.hardlink.and_then(|l| self.links.get(&l)) else {
            return Ok(false);
        };
        if !first.is_file() {
            return Ok(false);
        }
        clear(path)?;
        Ok(fs::hard_link(first, path).is_ok())
    }

    /// Reads a restored file back against the snapshot ([`read_back`]).
    fn verify_file(&self, node: &Node, path: &Path) -> Result<()> {
        let ids = self.repo.file_chunks(&self.index, node)?;
        let size = node.size;
        read_back(
            self.repo,
            &self.index,
            (path, path),
            (&ids, size),
            self.cancel,
            &mut |_| {},
        )
        .map(drop)
    }

    /// Writes file `node` to `path`, with its owner, mode and time;
    /// returns the bytes written. Nothing at the target sees a byte that
    /// was not verified: a small file is read (and every chunk checked)
    /// before it is created; a large one, or one replacing what is at
    /// `path`, is written under a temporary name and renamed into place
    /// when whole.
    fn write_file(&self, node: &Node, path: &Path) -> Result<u64> {
        let ids = self.repo.file_chunks(&self.index, node)?;
        let progress = self.progress;
        let on_bytes = |n| progress.bytes_written(n);
        let read = |out: &mut dyn Write| {
            write_chunks(self.repo, &self.index, &ids, out, &on_bytes, self.cancel)
                .map_err(|e| e.context(format!("restoring {}", path.display())))
        };
        let small = is_small(node);
        let data = if small {
            let mut data = Vec::with_capacity(usize::try_from(node.size).unwrap_or(0));
            read(&mut data)?;
            check_size(data.len() as u64, node, path)?;
            // Nothing there (a restore into an empty directory): created
            // under its name and written whole. Without the temporary name
            // and the rename, 100 000 small files restored in 3.0 s
            // instead of 3.5 (docs/benchmarks.md §12).
            if let Some(f) = create_new(path)? {
                let done =
                    write_out_all(&f, &data, path).and_then(|_| self.finish_file(&f, node, path));
                if done.is_err() {
                    let _ = fs::remove_file(path);
                }
                return done.map(|_| data.len() as u64);
            }
            Some(data)
        } else {
            None
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut tmp = tempfile::Builder::new()
            .prefix(".cairn-restore-")
            .tempfile_in(dir)
            .map_err(|e| Error::io(format!("creating a file in {}", dir.display()), e))?;
        let written = match &data {
            Some(data) => {
                write_out_all(tmp.as_file(), data, path)?;
                data.len() as u64
            }
            None => {
                let mut out = io::BufWriter::with_capacity(1 << 20, tmp.as_file_mut());
                let n = read(&mut out)?;
                out.flush()
                    .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
                n
            }
        };
        check_size(written, node, path)?;
        self.finish_file(tmp.as_file(), node, path)?;
        if let Ok(m) = fs::symlink_metadata(path) {
            if m.is_dir() {
                remove(path)?;
            }
        }
        let file = tmp.persist(path).map_err(|e| {
            Error::io(
                format!("moving restored file to {}", path.display()),
                e.error,
            )
        })?;
        drop(file);
        Ok(written)
    }

    /// Sets the owner, mode and time of restored file `f` through the
    /// open file: by path each would look the file up again (a restore of
    /// 100 000 small files spent a fifth of its system time opening
    /// files).
    fn finish_file(&self, f: &fs::File, node: &Node, path: &Path) -> Result<()> {
        let set = |what: &str, r: io::Result<()>| {
            r.map_err(|e| Error::io(format!("setting the {what} of {}", path.display()), e))
        };
        if self.is_root {
            let _ = std::os::unix::fs::fchown(f, Some(node.uid), Some(node.gid));
        }
        set(
            "permissions",
            f.set_permissions(fs::Permissions::from_mode(node.mode & 0o7777)),
        )?;
        let mtime = FileTime::from_unix_time(node.mtime, node.mtime_nsec);
        set(
            "time",
            filetime::set_file_handle_times(f, None, Some(mtime)),
        )
    }

    fn set_metadata(&mut self, path: &Path, node: &Node, symlink: bool) -> Result<()> {
        let mut w = Written::default();
        self.restore_xattrs(path, node, &mut w);
        self.stats.xattrs_not_root += w.xattrs_not_root;
        for msg in w.warnings {
            self.warn(msg);
        }
        if self.is_root {
            let _ = std::os::unix::fs::lchown(path, Some(node.uid), Some(node.gid));
        }
        if !symlink {
            fs::set_permissions(path, fs::Permissions::from_mode(node.mode & 0o7777))
                .map_err(|e| Error::io(format!("setting permissions of {}", path.display()), e))?;
        }
        let mtime = FileTime::from_unix_time(node.mtime, node.mtime_nsec);
        // set_file_mtime opens the file: a FIFO would block until a writer
        // came. Everything but files and directories is set by path.
        let by_path = symlink || !matches!(node.kind, NodeKind::File | NodeKind::Dir);
        let set = if by_path {
            filetime::set_symlink_file_times(path, mtime, mtime)
        } else {
            filetime::set_file_mtime(path, mtime)
        };
        set.map_err(|e| Error::io(format!("setting the time of {}", path.display()), e))
    }
}

/// Reads back the restored file at `path` (`shown` names it in errors)
/// and checks that its bytes are the data chunks `ids`, in order, `size`
/// bytes in all and nothing more; `feed` sees each chunk. Returns the
/// bytes read. Shared by `restore --verify` and restore drills.
pub(crate) fn read_back(
    repo: &Repository,
    index: &CacheReader,
    (path, shown): (&Path, &Path),
    (ids, size): (&[Id], u64),
    cancel: &AtomicBool,
    feed: &mut dyn FnMut(&[u8]),
) -> Result<u64> {
    let read_error = |e| Error::io(format!("reading back restored {}", path.display()), e);
    let file = fs::File::open(path).map_err(read_error)?;
    let mut reader = io::BufReader::with_capacity(1 << 20, file);
    let mut buf = Vec::new();
    let mut total = 0u64;
    for (n, id) in ids.iter().enumerate() {
        if cancel.load(Ordering::SeqCst) {
            return Err(Error::interrupted());
        }
        let len = index
            .get(id)?
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::MissingObject,
                    format!("chunk {id} of {} is in no pack", shown.display()),
                )
            })?
            .entry
            .raw_length;
        buf.resize(len as usize, 0);
        match reader.read_exact(&mut buf) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(Error::corrupt(format!(
                    "restored {} is shorter than its chunks say (chunk {n}): {e}",
                    shown.display()
                )))
            }
            Err(e) => return Err(read_error(e)),
        }
        if blob_id(repo.keys(), BlobType::Data, &buf) != *id {
            return Err(Error::corrupt(format!(
                "restored {} differs from the snapshot at byte {total} (chunk {n}, {id})",
                shown.display()
            )));
        }
        feed(&buf);
        total += u64::from(len);
    }
    let mut extra = [0u8; 1];
    let more = reader.read(&mut extra).map_err(read_error)?;
    if more > 0 || total != size {
        return Err(Error::corrupt(format!(
            "restored {} has the wrong length ({} bytes, the snapshot says {size})",
            shown.display(),
            total + more as u64
        )));
    }
    Ok(total)
}

/// One line on what `repair snapshots` could not save of an entry.
pub fn damage_note(d: &crate::format::tree::Damage) -> String {
    if d.listing_lost {
        return format!(
            "damaged: the listing of directory {:?} was lost in a repair; restored empty",
            d.original_name
        );
    }
    let mut s = format!(
        "damaged: {} chunks of {:?} were lost in a repair",
        d.lost_chunks, d.original_name
    );
    if d.zeroed_bytes > 0 {
        s.push_str(&format!("; {} bytes read back as zeros", d.zeroed_bytes));
    }
    if d.dropped_chunks > 0 {
        s.push_str(&format!(
            "; {} pieces of unknown length are missing (the file is shorter)",
            d.dropped_chunks
        ));
    }
    s
}

/// A file of at most this many bytes is read whole, and verified, before
/// it is created.
const SMALL_FILE_BYTES: u64 = 1 << 20;

/// Whether file `node` is small: read whole, and verified, before it is
/// created; written in parallel with others.
fn is_small(node: &Node) -> bool {
    node.content_lists.is_empty() && node.size <= SMALL_FILE_BYTES
}

/// Creates `path` for writing, new and private until its mode is set;
/// `None` when something is there already.
fn create_new(path: &Path) -> Result<Option<fs::File>> {
    use std::os::unix::fs::OpenOptionsExt;
    match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(None),
        Err(e) => Err(Error::io(format!("creating {}", path.display()), e)),
    }
}

/// Writes all of `data` to `f`, restored file `path`.
fn write_out_all(mut f: &fs::File, data: &[u8], path: &Path) -> Result<()> {
    f.write_all(data)
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// Fails unless `written` is the size of `node`, restored to `path`.
fn check_size(written: u64, node: &Node, path: &Path) -> Result<()> {
    if written == node.size {
        return Ok(());
    }
    Err(Error::corrupt(format!(
        "restoring {}: got {written} bytes, the snapshot says {}",
        path.display(),
        node.size
    )))
}

/// Removes whatever is at `path`, if anything is.
fn clear(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(_) => remove(path),
        Err(_) => Ok(()),
    }
}

fn remove(path: &Path) -> Result<()> {
    let meta =
        fs::symlink_metadata(path).map_err(|e| Error::io(format!("stat {}", path.display()), e))?;
    let r = if meta.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    };
    r.map_err(|e| Error::io(format!("removing {}", path.display()), e))
}

/// Why the system cannot create `path`, if it cannot: a path of
/// `PATH_MAX` (4096) bytes or more, or a name longer than `NAME_MAX`
/// (255), which a snapshot taken elsewhere (or restored into a deep
/// target directory) can hold.
fn unrestorable_path(path: &Path) -> Option<String> {
    let len = path.as_os_str().len();
    let limit = libc::PATH_MAX as usize;
    if len >= limit {
        return Some(format!(
            "its path is {len} bytes long, the system allows {}",
            limit - 1
        ));
    }
    let name = path.file_name().map_or(0, |n| n.len());
    let name_max = 255;
    (name > name_max)
        .then(|| format!("its name is {name} bytes long, the system allows {name_max}"))
}
