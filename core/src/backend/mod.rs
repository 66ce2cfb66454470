//! Storage backends: something that can put, get, list and delete whole,
//! immutable objects. Nothing in the format needs rename, append or
//! overwrite.

pub mod claim;
mod local;
mod location;
#[cfg(feature = "remote")]
mod object_store;
#[cfg(feature = "sftp")]
mod ssh_reaper;

pub use local::LocalBackend;
pub use location::{AzureLocation, Location, S3Location, SftpLocation};
#[cfg(feature = "remote")]
pub use object_store::ObjectStoreBackend;

/// Settings of remote backends (object storage and SFTP).
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct ObjectStoreOptions {
    /// Requests in flight at once, at most (for SFTP: SSH connections).
    pub connections: usize,
    /// Attempts of a request that fails transiently, first one included.
    pub attempts: usize,
    /// Time limit of one request.
    pub timeout: std::time::Duration,
    /// Told of each retry, one line (`cairn -v` prints them).
    pub on_retry: Option<fn(&str)>,
}

impl Default for ObjectStoreOptions {
    fn default() -> Self {
        ObjectStoreOptions {
            connections: 8,
            attempts: 6,
            timeout: std::time::Duration::from_secs(120),
            on_retry: None,
        }
    }
}

use std::sync::Arc;

use crate::error::{Error, ErrorKind, Result};

/// Opens a repository location ([`Location::parse`]): a local directory,
/// `s3:https://host[:port]/bucket[/prefix]` (or restic's
/// `s3:host/bucket/prefix`), `azure:CONTAINER:/PATH` or
/// `sftp:[USER@]HOST:/PATH`.
pub fn open(location: &str, opts: &ObjectStoreOptions) -> Result<Arc<dyn Backend>> {
    let unsupported = |feature: &str| {
        Error::new(
            ErrorKind::Unsupported,
            format!("{location}: this cairn was built without the `{feature}` feature"),
        )
    };
    let _ = (opts, &unsupported);
    match Location::parse(location)? {
        Location::Local(path) => Ok(Arc::new(LocalBackend::new(path))),
        #[cfg(feature = "s3")]
        Location::S3(l) => Ok(Arc::new(ObjectStoreBackend::s3(&l, opts)?)),
        #[cfg(feature = "azure")]
        Location::Azure(l) => Ok(Arc::new(ObjectStoreBackend::azure(&l, opts)?)),
        #[cfg(feature = "sftp")]
        Location::Sftp(l) => Ok(Arc::new(ObjectStoreBackend::sftp(&l, opts)?)),
        #[cfg(not(feature = "s3"))]
        Location::S3(_) => Err(unsupported("s3")),
        #[cfg(not(feature = "azure"))]
        Location::Azure(_) => Err(unsupported("azure")),
        #[cfg(not(feature = "sftp"))]
        Location::Sftp(_) => Err(unsupported("sftp")),
    }
}

/// The kinds of stored objects, one directory (prefix) each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    /// The single `config` object.
    Config,
    /// `keys/<id>`.
    Key,
    /// `data/<first two hex digits>/<id>`.
    Pack,
    /// `index/<id>`.
    Index,
    /// `snapshots/<id>`.
    Snapshot,
    /// `wal/<id>`: one archived PostgreSQL WAL file (`repo-format.md` §10).
    Wal,
    /// `drills/<id>`: the outcome of one restore drill (`repo-format.md` §11).
    Drill,
    /// `claims/<name>`: a writer's announcement on storage that ignores
    /// create-only puts (`repo-format.md` §15.4), deleted after the write.
    Claim,
}

impl ObjectKind {
    /// The directory (prefix) of this kind.
    pub fn dir(self) -> &'static str {
        match self {
            ObjectKind::Config => "",
            ObjectKind::Key => "keys",
            ObjectKind::Pack => "data",
            ObjectKind::Index => "index",
            ObjectKind::Snapshot => "snapshots",
            ObjectKind::Wal => "wal",
            ObjectKind::Drill => "drills",
            ObjectKind::Claim => "claims",
        }
    }

    /// The relative path of object `name` of this kind.
    pub fn path(self, name: &str) -> String {
        match self {
            ObjectKind::Config => "config".to_string(),
            ObjectKind::Pack => format!("data/{}/{name}", name.get(..2).unwrap_or("00")),
            other => format!("{}/{name}", other.dir()),
        }
    }

    /// The largest object of this kind a reader accepts: a planted file of
    /// terabytes must not be read into memory.
    pub fn max_size(self) -> u64 {
        const MIB: u64 = 1024 * 1024;
        match self {
            ObjectKind::Claim => 1024,
            ObjectKind::Config | ObjectKind::Key | ObjectKind::Drill => 2 * MIB,
            ObjectKind::Snapshot | ObjectKind::Wal => 65 * MIB,
            ObjectKind::Index => 1025 * MIB,
            ObjectKind::Pack => u64::from(u32::MAX),
        }
    }

    /// Singular noun for messages.
    pub fn noun(self) -> &'static str {
        match self {
            ObjectKind::Config => "config",
            ObjectKind::Key => "key",
            ObjectKind::Pack => "pack",
            ObjectKind::Index => "index",
            ObjectKind::Snapshot => "snapshot",
            ObjectKind::Wal => "WAL record",
            ObjectKind::Drill => "drill record",
            ObjectKind::Claim => "claim",
        }
    }
}

/// One listed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Its name (64 hex digits, or `config`).
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// When it was stored, if the backend knows (Unix seconds).
    pub modified: Option<i64>,
}

/// A place to keep a repository.
///
/// Errors: a missing object is [`crate::error::ErrorKind::MissingObject`]; a full
/// device is [`crate::error::ErrorKind::NoSpace`].
pub trait Backend: Send + Sync {
    /// Where this is, for messages.
    fn location(&self) -> String;

    /// Prepares an empty location for a new repository.
    fn create(&self) -> Result<()>;

    /// Stores an object durably, only if no object of that name exists.
    /// Returns `false` (and changes nothing) when one already did.
    fn put(&self, kind: ObjectKind, name: &str, data: &[u8]) -> Result<bool>;

    /// Reads a whole object; one larger than [`ObjectKind::max_size`] is
    /// refused as corrupt without being read.
    fn get(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>>;

    /// Reads `length` bytes at `offset` of an object.
    fn get_range(&self, kind: ObjectKind, name: &str, offset: u64, length: u64) -> Result<Vec<u8>>;

    /// Lists the objects of a kind (not `Config`), skipping anything whose
    /// name is not a valid object name (temporary files).
    fn list(&self, kind: ObjectKind) -> Result<Vec<ObjectInfo>>;

    /// Deletes an object; deleting a missing object is not an error.
    fn delete(&self, kind: ObjectKind, name: &str) -> Result<()>;

    /// Whether `put` is create-only *atomically*: of concurrent puts of
    /// one name, exactly one reports "created". True of the local backend
    /// (link or exclusive rename). Not trusted of object storage: some
    /// servers ignore `If-None-Match: *` (Garage 2.5), and one that
    /// honours it request by request may still not be atomic; probing
    /// cannot prove atomicity, and a probe per process would cost about
    /// what a claim costs. Where this is false, writers of objects not
    /// named by their contents use [`claim::put_exclusive`]'s claims.
    fn atomic_create_only(&self) -> bool {
        true
    }

    /// How many requests are worth running at once: backup uploads this
    /// many packs in parallel (holding one pack in memory each), restore
    /// and copy run this many reads.
    fn parallel_requests(&self) -> usize {
        1
    }
}
