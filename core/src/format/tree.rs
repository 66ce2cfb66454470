//! Trees: directory listings stored as JSON blobs (`repo-format.md` §8).
//!
//! A tree lists the entries of one directory, sorted by name, each with its
//! metadata and either its content (files), its subtree (directories) or
//! its target (symlinks). A file's content is a list of chunk IDs; for
//! large files the list is itself cut into chunk-list blobs at
//! content-defined points, so that a night's changes to a large dump store
//! only the parts of the list that changed, and a tree's size depends on
//! the number of entries in its directory, not on the size of its files.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::Id;

/// Split the chunk-ID list after an ID whose first four bytes (u32 LE)
/// are 0 modulo this: about 4096 IDs (128 KiB) per list blob.
pub const LIST_SPLIT_MODULUS: u32 = 4096;
/// Hard upper bound on IDs per chunk-list blob.
pub const LIST_MAX_IDS: usize = 16384;
/// Files of at most this many chunks keep their chunk IDs inline in the
/// tree; larger ones always use chunk-list blobs, so a tree node stays small
/// whatever the file size.
pub const INLINE_MAX_IDS: usize = 64;

/// What a tree entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    /// A regular file (or the stdin stream).
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A named pipe.
    Fifo,
    /// A Unix socket.
    Socket,
    /// A character device.
    Chardev,
    /// A block device.
    Blockdev,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One extended attribute of an entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Xattr {
    /// Its name, with its namespace (`user.mime_type`,
    /// `system.posix_acl_access`, `security.selinux`).
    pub name: String,
    /// Hex of its value bytes.
    pub value: String,
}

/// Where a file with several hard links lived: the nodes of one snapshot
/// with the same `HardLink` are links of one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HardLink {
    /// `st_dev` of its file system.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
}

/// One entry of a tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// The entry's name; lossy when the real name is not UTF-8.
    pub name: String,
    /// Hex of the raw name bytes, present only when they are not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_raw: Option<String>,
    /// What the entry is.
    #[serde(rename = "type")]
    pub kind: NodeKind,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Owner user ID.
    pub uid: u32,
    /// Owner group ID.
    pub gid: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Nanoseconds part of the modification time.
    #[serde(default)]
    pub mtime_nsec: u32,
    /// Size in bytes (files).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub size: u64,
    /// Chunk IDs of the content, when it fits one list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub content: Vec<Id>,
    /// IDs of chunk-list blobs holding the content's chunk IDs, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub content_lists: Vec<Id>,
    /// The tree of a directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtree: Option<Id>,
    /// A symlink's target; lossy when not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Hex of the raw target bytes, present only when they are not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_raw: Option<String>,
    /// Device number of a device node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<u64>,
    /// A regular file with more than one hard link: the file system and
    /// inode it had, shared by its other links, so that a restore links
    /// them again (`repo-format.md` §8.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardlink: Option<HardLink>,
    /// Extended attributes (POSIX ACLs and SELinux labels among them),
    /// sorted by name (`repo-format.md` §8.2).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub xattrs: Vec<Xattr>,
    /// Set by `repair snapshots` on an entry whose content was lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub damage: Option<Damage>,
}

/// What `repair snapshots` could not save of one entry. A damaged file
/// keeps its length where the lost chunks' lengths were known (they read
/// back as zero bytes); chunks of unknown length are left out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Damage {
    /// The entry's name before it was marked (`shop.sql` for
    /// `shop.sql.damaged`).
    pub original_name: String,
    /// Chunks lost.
    pub lost_chunks: u64,
    /// Bytes lost and replaced by zeros.
    pub zeroed_bytes: u64,
    /// Lost chunks whose length was unknown, left out (the file is shorter
    /// than it was by that much).
    pub dropped_chunks: u64,
    /// A directory whose listing was lost (it is restored empty).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub listing_lost: bool,
}

/// Suffix `repair snapshots` adds to the name of a damaged entry.
pub const DAMAGED_SUFFIX: &str = ".damaged";

/// Encodes possibly non-UTF-8 bytes as (lossy string, raw hex if needed).
pub fn encode_os_str(s: &OsStr) -> (String, Option<String>) {
    match s.to_str() {
        Some(u) => (u.to_string(), None),
        None => (
            s.to_string_lossy().into_owned(),
            Some(hex::encode(s.as_bytes())),
        ),
    }
}

fn raw_or(lossy: &str, raw: &Option<String>) -> Result<Vec<u8>> {
    match raw {
        Some(h) => hex::decode(h).map_err(|_| Error::corrupt("bad hex in tree")),
        None => Ok(lossy.as_bytes().to_vec()),
    }
}

impl Node {
    /// A node with `name` and no content.
    pub fn new(name: &OsStr, kind: NodeKind) -> Self {
        let (name, name_raw) = encode_os_str(name);
        Node {
            name,
            name_raw,
            kind,
            mode: 0,
            uid: 0,
            gid: 0,
            mtime: 0,
            mtime_nsec: 0,
            size: 0,
            content: Vec::new(),
            content_lists: Vec::new(),
            subtree: None,
            target: None,
            target_raw: None,
            device: None,
            hardlink: None,
            xattrs: Vec::new(),
            damage: None,
        }
    }

    /// Appends `suffix` to the name (raw bytes too, when present).
    pub fn add_suffix(&mut self, suffix: &str) {
        self.name.push_str(suffix);
        if let Some(raw) = &mut self.name_raw {
            raw.push_str(&hex::encode(suffix.as_bytes()));
        }
    }

    /// The exact name bytes.
    pub fn name_bytes(&self) -> Result<Vec<u8>> {
        raw_or(&self.name, &self.name_raw)
    }

    /// The exact symlink target bytes.
    pub fn target_bytes(&self) -> Result<Vec<u8>> {
        match &self.target {
            Some(t) => raw_or(t, &self.target_raw),
            None => Err(Error::corrupt(format!(
                "symlink {} has no target",
                self.name
            ))),
        }
    }
}

/// A directory listing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    /// Entries, sorted by name bytes, names unique.
    pub nodes: Vec<Node>,
}

impl Tree {
    /// Sorts the entries and encodes the tree as JSON.
    pub fn encode(&mut self) -> Result<Vec<u8>> {
        self.nodes.sort_by_key(|n| n.name_bytes().ok());
        serde_json::to_vec(self).map_err(|e| Error::invalid(format!("encoding tree: {e}")))
    }

    /// Decodes a tree and checks every name: restoring it must never write
    /// outside the target directory.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let tree: Tree = serde_json::from_slice(bytes).map_err(|e| Error::decode("tree", e))?;
        let mut prev: Option<Vec<u8>> = None;
        for node in &tree.nodes {
            let name = node.name_bytes()?;
            if name.is_empty()
                || name == b"."
                || name == b".."
                || name.contains(&b'/')
                || name.contains(&0)
            {
                return Err(Error::corrupt(format!(
                    "tree has an unsafe entry name {:?}",
                    node.name
                )));
            }
            if prev.as_ref().is_some_and(|p| *p >= name) {
                return Err(Error::corrupt(format!(
                    "tree entries are not sorted or not unique at {:?}",
                    node.name
                )));
            }
            match node.kind {
                NodeKind::Dir if node.subtree.is_none() => {
                    return Err(Error::corrupt(format!(
                        "directory {:?} has no subtree",
                        node.name
                    )))
                }
                NodeKind::Symlink if node.target.is_none() => {
                    return Err(Error::corrupt(format!(
                        "symlink {:?} has no target",
                        node.name
                    )))
                }
                _ => {}
            }
            prev = Some(name);
        }
        Ok(tree)
    }
}

/// The `content` and `content_lists` fields of a file node with these
/// chunk IDs: inline when few, else content-defined runs stored as
/// chunk-list blobs by `save_list` (which returns the blob's ID).
pub fn content_fields(
    ids: Vec<Id>,
    mut save_list: impl FnMut(&[u8]) -> Result<Id>,
) -> Result<(Vec<Id>, Vec<Id>)> {
    if ids.len() <= INLINE_MAX_IDS {
        return Ok((ids, Vec::new()));
    }
    let runs = split_chunk_list(&ids);
    let mut lists = Vec::with_capacity(runs.len());
    for run in runs {
        lists.push(save_list(&encode_chunk_list(run))?);
    }
    Ok((Vec::new(), lists))
}

/// Cuts a file's chunk-ID list into runs at content-defined points.
pub fn split_chunk_list(ids: &[Id]) -> Vec<&[Id]> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, id) in ids.iter().enumerate() {
        let b = id.as_bytes();
        let v = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        if v % LIST_SPLIT_MODULUS == 0 || i + 1 - start == LIST_MAX_IDS {
            out.push(&ids[start..=i]);
            start = i + 1;
        }
    }
    if start < ids.len() {
        out.push(&ids[start..]);
    }
    out
}

/// Encodes a chunk-list blob: the IDs, 32 bytes each.
pub fn encode_chunk_list(ids: &[Id]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ids.len() * Id::LEN);
    for id in ids {
        out.extend_from_slice(id.as_bytes());
    }
    out
}

/// Decodes a chunk-list blob.
pub fn decode_chunk_list(bytes: &[u8]) -> Result<Vec<Id>> {
    if !bytes.len().is_multiple_of(Id::LEN) {
        return Err(Error::corrupt("chunk list length is not a multiple of 32"));
    }
    bytes.chunks_exact(Id::LEN).map(Id::from_slice).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn non_utf8_names_survive() -> Result<()> {
        let raw = OsStr::from_bytes(b"caf\xe9.sql");
        let mut node = Node::new(raw, NodeKind::File);
        node.mode = 0o644;
        let mut tree = Tree { nodes: vec![node] };
        let back = Tree::decode(&tree.encode()?)?;
        assert_eq!(back.nodes[0].name_bytes()?, b"caf\xe9.sql");
        Ok(())
    }

    #[test]
    fn unsafe_names_are_refused() -> Result<()> {
        for bad in [&b".."[..], b".", b"a/b", b""] {
            let mut tree = Tree {
                nodes: vec![Node::new(OsStr::from_bytes(bad), NodeKind::File)],
            };
            assert!(Tree::decode(&tree.encode()?).is_err(), "{bad:?}");
        }
        let dup = Tree {
            nodes: vec![
                Node::new(OsStr::new("a"), NodeKind::File),
                Node::new(OsStr::new("a"), NodeKind::File),
            ],
        };
        let json = serde_json::to_vec(&dup).map_err(|e| Error::invalid(e.to_string()))?;
        assert!(Tree::decode(&json).is_err());
        Ok(())
    }

    #[test]
    fn list_split_is_content_defined_and_bounded() {
        let ids: Vec<Id> = (0..50_000u32)
            .map(|i| Id::of_bytes(&i.to_le_bytes()))
            .collect();
        let runs = split_chunk_list(&ids);
        assert_eq!(runs.concat(), ids);
        assert!(runs.iter().all(|r| r.len() <= LIST_MAX_IDS));
        assert!(runs.len() > 3);
        // Inserting an ID near the start changes only the run it lands in.
        let mut edited = ids.clone();
        edited.insert(10, Id::of_bytes(b"new"));
        let runs2 = split_chunk_list(&edited);
        let same = runs2.iter().filter(|r| runs.contains(r)).count();
        assert!(same + 2 >= runs.len());
        let enc = encode_chunk_list(&ids[..3]);
        assert_eq!(decode_chunk_list(&enc).ok(), Some(ids[..3].to_vec()));
    }
}
