//! The snapshots of a repository as one read-only directory tree, for
//! `cairn mount`: what a FUSE front end asks (attributes, lookups,
//! directory listings, link targets, file bytes at an offset), answered
//! from the repository. Nothing here knows FUSE, and nothing writes.
//!
//! ```text
//! /snapshots/2026-12-07T01:00:00/…   each snapshot's tree, by local time
//! /snapshots/latest -> 2026-12-07T01:00:00
//! /ids/1a2b3c4d -> ../snapshots/2026-12-07T01:00:00
//! /hosts/db1/2026-12-07T01:00:00 -> ../../snapshots/2026-12-07T01:00:00
//! /hosts/db1/latest -> 2026-12-07T01:00:00
//! /tags/nightly/…                    as /hosts, per tag
//! ```
//!
//! Inode numbers are handed out as entries are first seen and stay valid
//! while the view lives. Directories of snapshots are loaded when first
//! listed or looked into. A file's chunk lengths are looked up when it is
//! first read; chunks are read through the one reader (verified against
//! their IDs, deltas undone), a megabyte ahead, and the last 64 MiB of
//! them are kept.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use crate::error::{Error, ErrorKind, Result};
use crate::format::snapshot::{Snapshot, SnapshotFilter};
use crate::format::tree::{Node, NodeKind};
use crate::id::Id;
use crate::repo::cache::CacheReader;
use crate::repo::reader::{fetch_batch, locate_batch};
use crate::repo::repository::{Repository, SnapshotList};
use crate::sys::lock;

/// The inode number of the root directory.
pub const ROOT: u64 = 1;

/// What a front end shows of one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    /// Inode number.
    pub ino: u64,
    /// What it is.
    pub kind: NodeKind,
    /// Bytes (files), or the length of a symlink's target.
    pub size: u64,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Nanoseconds of the modification time.
    pub mtime_nsec: u32,
    /// Device number of a device node.
    pub rdev: u64,
}

/// One entry of a directory: its name (raw bytes) and attributes.
pub type DirEntry = (Vec<u8>, Attr);

enum Inode {
    /// A directory of the view itself (`/`, `/hosts/db1`).
    Virtual {
        children: Vec<(Vec<u8>, u64)>,
        mtime: i64,
    },
    /// A symlink of the view (`latest`, `/ids/…`).
    Link { target: Vec<u8>, mtime: i64 },
    /// An entry of a snapshot; a directory's children once loaded.
    Node {
        node: Box<Node>,
        children: Option<Vec<(Vec<u8>, u64)>>,
    },
}

/// A file's chunks and where each ends, from its first read on.
struct FileMap {
    chunks: Vec<Id>,
    ends: Vec<u64>,
}

/// A snapshot's directory: its name and inode.
struct Named<'a> {
    name: Vec<u8>,
    ino: u64,
    snap: &'a Snapshot,
}

/// The name of the newest of `of`, as `latest` means everywhere: not a
/// snapshot dated after it was stored.
fn latest(of: &[&Named]) -> Option<Vec<u8>> {
    of.iter()
        .filter(|n| !n.snap.future_dated)
        .max_by(|a, b| {
            a.snap
                .time
                .cmp(&b.snap.time)
                .then(a.snap.id.cmp(&b.snap.id))
        })
        .map(|n| n.name.clone())
}

/// The chunk maps of the files read last, at most [`FILE_MAPS`].
#[derive(Default)]
struct FileMaps {
    maps: HashMap<u64, Arc<FileMap>>,
    order: VecDeque<u64>,
}

/// Decoded chunks, oldest out first, up to a byte budget.
struct ChunkCache {
    chunks: HashMap<Id, Arc<Vec<u8>>>,
    order: VecDeque<Id>,
    bytes: usize,
}

const CACHE_BYTES: usize = 64 * 1024 * 1024;
/// How far past a read chunks are fetched with it, in plaintext bytes.
const READ_AHEAD: u64 = 1024 * 1024;
/// Open files whose chunk maps are kept.
const FILE_MAPS: usize = 256;

impl ChunkCache {
    fn get(&self, id: &Id) -> Option<Arc<Vec<u8>>> {
        self.chunks.get(id).cloned()
    }

    fn put(&mut self, id: Id, bytes: Vec<u8>) {
        if self.chunks.contains_key(&id) {
            return;
        }
        self.bytes += bytes.len();
        self.chunks.insert(id, Arc::new(bytes));
        self.order.push_back(id);
        while self.bytes > CACHE_BYTES {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(b) = self.chunks.remove(&old) {
                self.bytes -= b.len();
            }
        }
    }
}

/// The read-only tree of a repository's snapshots.
pub struct MountView {
    repo: Repository,
    index: CacheReader,
    owner: (u32, u32),
    inodes: Mutex<Vec<Inode>>,
    files: Mutex<FileMaps>,
    cache: Mutex<ChunkCache>,
}

/// A file name of a host name or tag: `/` and NUL cannot be in one.
fn label(s: &str) -> Vec<u8> {
    let s = s.replace(['/', '\0'], "_");
    match s.as_str() {
        "" | "." | ".." => format!("_{s}").into_bytes(),
        _ => s.into_bytes(),
    }
}

/// The raw bytes of a node's name.
fn raw_name(node: &Node) -> Vec<u8> {
    node.name_raw
        .as_deref()
        .and_then(|h| hex::decode(h).ok())
        .unwrap_or_else(|| node.name.clone().into_bytes())
}

impl MountView {
    /// The view of the readable snapshots of `list` that pass `filter`.
    /// Entries of the view itself belong to `owner` (user, group).
    pub fn new(
        repo: Repository,
        list: &SnapshotList,
        filter: &SnapshotFilter,
        owner: (u32, u32),
    ) -> Result<Self> {
        let index = repo.index()?;
        let view = MountView {
            repo,
            index,
            owner,
            inodes: Mutex::new(Vec::new()),
            files: Mutex::new(FileMaps::default()),
            cache: Mutex::new(ChunkCache {
                chunks: HashMap::new(),
                order: VecDeque::new(),
                bytes: 0,
            }),
        };
        let snaps: Vec<&Snapshot> = list.good.iter().filter(|s| filter.matches(s)).collect();
        view.build(&snaps);
        Ok(view)
    }

    fn push(inodes: &mut Vec<Inode>, inode: Inode) -> u64 {
        inodes.push(inode);
        inodes.len() as u64
    }

    /// The fixed part of the tree: `/`, `/snapshots`, `/ids`, `/hosts`,
    /// `/tags`, their links, and one directory per snapshot.
    fn build(&self, snaps: &[&Snapshot]) {
        let mut inodes = lock(&self.inodes);
        let mtime = snaps
            .iter()
            .map(|s| s.time.timestamp().as_second())
            .max()
            .unwrap_or(0);
        // Root first: inode 1.
        Self::push(
            &mut inodes,
            Inode::Virtual {
                children: Vec::new(),
                mtime,
            },
        );
        let named = self.snapshot_dirs(&mut inodes, snaps);
        let all: Vec<&Named> = named.iter().collect();
        let mut snapshots: Vec<(Vec<u8>, u64)> =
            named.iter().map(|n| (n.name.clone(), n.ino)).collect();
        if let Some(newest) = latest(&all) {
            snapshots.push((b"latest".to_vec(), Self::link(&mut inodes, newest, mtime)));
        }
        let ids: Vec<(Vec<u8>, u64)> = named
            .iter()
            .map(|n| {
                let target = [b"../snapshots/".as_slice(), &n.name].concat();
                (
                    n.snap.id.short().into_bytes(),
                    Self::link(&mut inodes, target, mtime),
                )
            })
            .collect();
        let hosts = Self::groups(&mut inodes, &named, mtime, &|s| vec![label(&s.hostname)]);
        let tags = Self::groups(&mut inodes, &named, mtime, &|s| {
            s.tags.iter().map(|t| label(t)).collect()
        });
        let mut dir = |children| Self::push(&mut inodes, Inode::Virtual { children, mtime });
        let snapshots = dir(snapshots);
        let ids = dir(ids);
        if let Some(Inode::Virtual { children, .. }) = inodes.first_mut() {
            *children = vec![
                (b"hosts".to_vec(), hosts),
                (b"ids".to_vec(), ids),
                (b"snapshots".to_vec(), snapshots),
                (b"tags".to_vec(), tags),
            ];
        }
    }

    fn link(inodes: &mut Vec<Inode>, target: Vec<u8>, mtime: i64) -> u64 {
        Self::push(inodes, Inode::Link { target, mtime })
    }

    /// One directory per snapshot, named by its local time, oldest first
    /// (so a clash of local times gives `-1` to the later one).
    fn snapshot_dirs<'a>(&self, inodes: &mut Vec<Inode>, snaps: &[&'a Snapshot]) -> Vec<Named<'a>> {
        let mut ordered: Vec<&Snapshot> = snaps.to_vec();
        ordered.sort_by(|a, b| a.time.cmp(&b.time).then(a.id.cmp(&b.id)));
        let mut taken: HashMap<String, usize> = HashMap::new();
        let mut named = Vec::with_capacity(ordered.len());
        for snap in ordered {
            let base = snap.time.local_display().replace(' ', "T");
            let n = taken.entry(base.clone()).or_insert(0);
            let name = if *n == 0 { base } else { format!("{base}-{n}") };
            *n += 1;
            let mut root = Node::new(std::ffi::OsStr::new(&name), NodeKind::Dir);
            root.mode = 0o755;
            (root.uid, root.gid) = self.owner;
            root.mtime = snap.time.timestamp().as_second();
            root.subtree = Some(snap.tree);
            let ino = Self::push(
                inodes,
                Inode::Node {
                    node: Box::new(root),
                    children: None,
                },
            );
            named.push(Named {
                name: name.into_bytes(),
                ino,
                snap,
            });
        }
        named
    }

    /// `/hosts` or `/tags`: a directory per key, of links to the
    /// snapshots with that key, and `latest`.
    fn groups(
        inodes: &mut Vec<Inode>,
        named: &[Named],
        mtime: i64,
        keys: &dyn Fn(&Snapshot) -> Vec<Vec<u8>>,
    ) -> u64 {
        let mut by: BTreeMap<Vec<u8>, Vec<&Named>> = BTreeMap::new();
        for n in named {
            for k in keys(n.snap) {
                by.entry(k).or_default().push(n);
            }
        }
        let mut dirs = Vec::new();
        for (key, members) in by {
            let mut children: Vec<(Vec<u8>, u64)> = Vec::new();
            for n in &members {
                let target = [b"../../snapshots/".as_slice(), &n.name].concat();
                children.push((n.name.clone(), Self::link(inodes, target, mtime)));
            }
            if let Some(newest) = latest(&members) {
                children.push((b"latest".to_vec(), Self::link(inodes, newest, mtime)));
            }
            dirs.push((key, Self::push(inodes, Inode::Virtual { children, mtime })));
        }
        Self::push(
            inodes,
            Inode::Virtual {
                children: dirs,
                mtime,
            },
        )
    }

    fn attr_of(&self, ino: u64, inode: &Inode) -> Attr {
        let (uid, gid) = self.owner;
        let fixed = |kind, size, mode, mtime| Attr {
            ino,
            kind,
            size,
            mode,
            uid,
            gid,
            mtime,
            mtime_nsec: 0,
            rdev: 0,
        };
        match inode {
            Inode::Virtual { mtime, .. } => fixed(NodeKind::Dir, 0, 0o555, *mtime),
            Inode::Link { target, mtime } => {
                fixed(NodeKind::Symlink, target.len() as u64, 0o777, *mtime)
            }
            Inode::Node { node, .. } => Attr {
                ino,
                kind: node.kind,
                size: match node.kind {
                    NodeKind::File => node.size,
                    NodeKind::Symlink => link_target(node).len() as u64,
                    _ => 0,
                },
                mode: node.mode,
                uid: node.uid,
                gid: node.gid,
                mtime: node.mtime,
                mtime_nsec: node.mtime_nsec,
                rdev: node.device.unwrap_or(0),
            },
        }
    }

    /// The attributes of inode `ino`.
    pub fn attr(&self, ino: u64) -> Result<Attr> {
        let inodes = lock(&self.inodes);
        let inode = inode_at(&inodes, ino)?;
        Ok(self.attr_of(ino, inode))
    }

    /// Loads a snapshot directory's entries, once.
    fn children_of(&self, ino: u64) -> Result<Vec<(Vec<u8>, u64)>> {
        let subtree = {
            let inodes = lock(&self.inodes);
            match inode_at(&inodes, ino)? {
                Inode::Virtual { children, .. } => return Ok(children.clone()),
                Inode::Node {
                    children: Some(c), ..
                } => return Ok(c.clone()),
                Inode::Node { node, .. } if node.kind == NodeKind::Dir => node.subtree,
                _ => {
                    return Err(Error::new(
                        ErrorKind::InvalidInput,
                        format!("inode {ino} is not a directory"),
                    ))
                }
            }
        };
        // A directory stored without a tree is empty.
        let nodes = match subtree {
            Some(tree) => self.repo.load_tree(&self.index, &tree)?.nodes,
            None => Vec::new(),
        };
        let mut inodes = lock(&self.inodes);
        // Loaded meanwhile by another request: keep the first.
        if let Some(Inode::Node {
            children: Some(c), ..
        }) = inodes.get(ino as usize - 1)
        {
            return Ok(c.clone());
        }
        let mut children = Vec::with_capacity(nodes.len());
        for node in nodes {
            let name = raw_name(&node);
            let child = Self::push(
                &mut inodes,
                Inode::Node {
                    node: Box::new(node),
                    children: None,
                },
            );
            children.push((name, child));
        }
        if let Some(Inode::Node { children: c, .. }) = inodes.get_mut(ino as usize - 1) {
            *c = Some(children.clone());
        }
        Ok(children)
    }

    /// The entries of directory `ino`, in stored order.
    pub fn read_dir(&self, ino: u64) -> Result<Vec<DirEntry>> {
        let children = self.children_of(ino)?;
        let inodes = lock(&self.inodes);
        children
            .into_iter()
            .map(|(name, child)| Ok((name, self.attr_of(child, inode_at(&inodes, child)?))))
            .collect()
    }

    /// The entry `name` of directory `parent`, if there is one.
    pub fn lookup(&self, parent: u64, name: &[u8]) -> Result<Option<Attr>> {
        let children = self.children_of(parent)?;
        let Some((_, child)) = children.iter().find(|(n, _)| n == name) else {
            return Ok(None);
        };
        self.attr(*child).map(Some)
    }

    /// The target of symlink `ino`.
    pub fn read_link(&self, ino: u64) -> Result<Vec<u8>> {
        let inodes = lock(&self.inodes);
        match inode_at(&inodes, ino)? {
            Inode::Link { target, .. } => Ok(target.clone()),
            Inode::Node { node, .. } if node.kind == NodeKind::Symlink => Ok(link_target(node)),
            _ => Err(Error::new(
                ErrorKind::InvalidInput,
                format!("inode {ino} is not a symlink"),
            )),
        }
    }

    /// The extended attributes of inode `ino`, as stored.
    pub fn xattrs(&self, ino: u64) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let inodes = lock(&self.inodes);
        Ok(match inode_at(&inodes, ino)? {
            Inode::Node { node, .. } => node
                .xattrs
                .iter()
                .filter_map(|x| Some((x.name.clone().into_bytes(), hex::decode(&x.value).ok()?)))
                .collect(),
            _ => Vec::new(),
        })
    }

    /// Where each chunk of file `ino` ends, computed once per open file.
    fn file_map(&self, ino: u64) -> Result<Arc<FileMap>> {
        if let Some(m) = lock(&self.files).maps.get(&ino) {
            return Ok(m.clone());
        }
        let node = {
            let inodes = lock(&self.inodes);
            match inode_at(&inodes, ino)? {
                Inode::Node { node, .. } if node.kind == NodeKind::File => node.clone(),
                _ => {
                    return Err(Error::new(
                        ErrorKind::InvalidInput,
                        format!("inode {ino} is not a file"),
                    ))
                }
            }
        };
        let chunks = self.repo.file_chunks(&self.index, &node)?;
        let mut ends = Vec::with_capacity(chunks.len());
        let mut end = 0u64;
        for id in &chunks {
            let loc = self.index.get(id)?.ok_or_else(|| {
                Error::new(
                    ErrorKind::MissingObject,
                    format!(
                        "data blob {id} of {} is not in the index",
                        String::from_utf8_lossy(&raw_name(&node))
                    ),
                )
            })?;
            end += u64::from(loc.entry.raw_length);
            ends.push(end);
        }
        let map = Arc::new(FileMap { chunks, ends });
        let mut files = lock(&self.files);
        files.maps.insert(ino, map.clone());
        files.order.push_back(ino);
        while files.order.len() > FILE_MAPS {
            if let Some(old) = files.order.pop_front() {
                files.maps.remove(&old);
            }
        }
        Ok(map)
    }

    /// At most `size` bytes of file `ino` from `offset` (fewer only at
    /// the end of the file). Every chunk is verified against its ID.
    pub fn read(&self, ino: u64, offset: u64, size: u32) -> Result<Vec<u8>> {
        let map = self.file_map(ino)?;
        let total = map.ends.last().copied().unwrap_or(0);
        if offset >= total || size == 0 {
            return Ok(Vec::new());
        }
        let stop = (offset + u64::from(size)).min(total);
        let first = map.ends.partition_point(|&e| e <= offset);
        let last = map.ends.partition_point(|&e| e < stop);
        // Fetched together: the chunks not cached from `first` on, to a
        // megabyte past the read.
        let ahead = map.ends.partition_point(|&e| e < stop + READ_AHEAD);
        let upto = ahead.min(map.chunks.len() - 1).max(last);
        let missing: Vec<Id> = {
            let cache = lock(&self.cache);
            let mut seen = std::collections::HashSet::new();
            map.chunks[first..=upto]
                .iter()
                .filter(|id| cache.get(id).is_none() && seen.insert(**id))
                .copied()
                .collect()
        };
        let mut pos = 0;
        while pos < missing.len() {
            let locs = locate_batch(&self.index, &missing[pos..], (512, 8 * READ_AHEAD))?;
            let bytes = fetch_batch(&self.repo, &self.index, &locs)?;
            let mut cache = lock(&self.cache);
            for (loc, b) in locs.iter().zip(bytes) {
                cache.put(loc.entry.id, b);
            }
            pos += locs.len();
        }
        let mut out = Vec::with_capacity((stop - offset) as usize);
        let cache = lock(&self.cache);
        for i in first..=last {
            let chunk = cache.get(&map.chunks[i]).ok_or_else(|| {
                Error::new(
                    ErrorKind::Io,
                    format!("chunk {} fell out of the cache while read", map.chunks[i]),
                )
            })?;
            let start = if i == 0 { 0 } else { map.ends[i - 1] };
            let from = offset.max(start) - start;
            let to = stop.min(map.ends[i]) - start;
            let slice = chunk.get(from as usize..to as usize).ok_or_else(|| {
                Error::corrupt(format!(
                    "chunk {} is {} bytes, not the {} the index gives",
                    map.chunks[i],
                    chunk.len(),
                    map.ends[i] - start
                ))
            })?;
            out.extend_from_slice(slice);
        }
        Ok(out)
    }
}

fn inode_at(inodes: &[Inode], ino: u64) -> Result<&Inode> {
    (ino as usize)
        .checked_sub(1)
        .and_then(|i| inodes.get(i))
        .ok_or_else(|| Error::invalid(format!("no inode {ino}")))
}

fn link_target(node: &Node) -> Vec<u8> {
    node.target_raw
        .as_deref()
        .and_then(|h| hex::decode(h).ok())
        .or_else(|| node.target.clone().map(String::into_bytes))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    use super::*;
    use crate::backend::LocalBackend;
    use crate::chunk::test_data::pseudo_random;
    use crate::format::keyfile::{KdfParams, KeyInfo};
    use crate::ops::backup::{backup, BackupOptions, BackupSource, NoProgress};
    use crate::repo::repository::{init, locate, CacheLocation, InitOptions};

    fn find(view: &MountView, path: &str) -> Attr {
        let mut ino = ROOT;
        for part in path.split('/').filter(|p| !p.is_empty()) {
            let attr = view.lookup(ino, part.as_bytes()).expect("test");
            ino = attr.unwrap_or_else(|| panic!("{part} not in {path}")).ino;
            // Links of the view are followed, as the kernel would.
            if view.attr(ino).expect("test").kind == NodeKind::Symlink {
                let target = view.read_link(ino).expect("test");
                let target = String::from_utf8(target).expect("test");
                if target.starts_with("..") {
                    let name = target.rsplit('/').next().expect("test");
                    return find(view, &format!("/snapshots/{name}{}", rest(path, part)));
                }
                let dir = &path[..path.find(part).expect("test")];
                return find(view, &format!("{dir}{target}{}", rest(path, part)));
            }
        }
        view.attr(ino).expect("test")
    }

    fn rest<'a>(path: &'a str, part: &str) -> &'a str {
        &path[path.find(part).expect("test") + part.len()..]
    }

    fn names(view: &MountView, ino: u64) -> Vec<String> {
        let mut v: Vec<String> = view
            .read_dir(ino)
            .expect("test")
            .into_iter()
            .map(|(n, _)| String::from_utf8(n).expect("test"))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn the_view_lists_by_time_id_host_and_tag_and_reads_any_range() {
        let dir = tempfile::tempdir().expect("test");
        let backend = Arc::new(LocalBackend::new(dir.path().join("repo")));
        let init_opts = InitOptions {
            kdf: KdfParams {
                memory_kib: 64,
                iterations: 1,
                parallelism: 1,
            },
            ..InitOptions::default()
        };
        let key = KeyInfo {
            created: "2026-12-07T00:00:00Z".into(),
            host: "t".into(),
            user: "t".into(),
            kind: "full".into(),
        };
        init(backend.clone(), b"pw", &init_opts, key).expect("test");
        let repo = locate(backend)
            .expect("test")
            .unlock(b"pw", &CacheLocation::Temporary)
            .expect("test");
        let cancel = AtomicBool::new(false);
        let data = pseudo_random(3 << 20, 5);
        for (host, tags) in [("db1", vec!["nightly".to_string()]), ("db2", vec![])] {
            let opts = BackupOptions {
                hostname: host.into(),
                tags,
                ..BackupOptions::default()
            };
            let source = BackupSource::Stream {
                reader: Box::new(std::io::Cursor::new(data.clone())),
                filename: "shop.sql".into(),
            };
            backup(&repo, source, &opts, &NoProgress, &cancel).expect("test");
        }
        let list = repo.load_snapshots().expect("test");
        let view = MountView::new(repo, &list, &SnapshotFilter::default(), (7, 8)).expect("test");

        assert_eq!(names(&view, ROOT), ["hosts", "ids", "snapshots", "tags"]);
        let snapshots = find(&view, "/snapshots").ino;
        assert_eq!(names(&view, snapshots).len(), 3);
        assert_eq!(names(&view, find(&view, "/hosts").ino), ["db1", "db2"]);
        assert_eq!(names(&view, find(&view, "/tags/nightly").ino).len(), 2);
        assert_eq!(names(&view, find(&view, "/ids").ino).len(), 2);
        let root = view.attr(ROOT).expect("test");
        assert_eq!((root.uid, root.gid, root.kind), (7, 8, NodeKind::Dir));

        let file = find(&view, "/hosts/db2/latest/shop.sql");
        assert_eq!((file.kind, file.size), (NodeKind::File, data.len() as u64));
        // Whole, in kernel-sized reads.
        let mut back = Vec::new();
        while (back.len() as u64) < file.size {
            let got = view
                .read(file.ino, back.len() as u64, 131_072)
                .expect("test");
            assert!(!got.is_empty());
            back.extend(got);
        }
        assert_eq!(back, data);
        // Any range, past the end, and nothing.
        for (off, len) in [(1_000_003u64, 77_777u32), (0, 1), (3 << 20, 10), (5, 0)] {
            let got = view.read(file.ino, off, len).expect("test");
            let start = (off as usize).min(data.len());
            let end = (start + len as usize).min(data.len());
            assert_eq!(got, data[start..end], "{off} {len}");
        }
        assert!(view.lookup(ROOT, b"nothing").expect("test").is_none());
        assert!(view.read(ROOT, 0, 10).is_err());
        assert!(view.attr(9_999_999).is_err());
    }
}
