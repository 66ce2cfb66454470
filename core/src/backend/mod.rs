//! Storage backends: something that can put, get, list and delete whole,
//! immutable objects. Nothing in the format needs rename, append or
//! overwrite.

pub mod claim;
mod local;
#[cfg(feature = "s3")]
mod object_store;

pub use local::LocalBackend;
#[cfg(feature = "s3")]
pub use object_store::{ObjectStoreBackend, S3Location};

/// Settings of object storage backends.
#[derive(Debug, Clone, Copy)]
pub struct ObjectStoreOptions {
    /// Requests in flight at once, at most.
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

use crate::error::{Error, Result};

/// Opens a repository location: `s3:https://host[:port]/bucket[/prefix]`
/// (or restic's `s3:host/bucket/prefix`), else a local directory.
pub fn open(location: &str, opts: &ObjectStoreOptions) -> Result<Arc<dyn Backend>> {
    if let Some(rest) = location.strip_prefix("s3:") {
        #[cfg(feature = "s3")]
        return Ok(Arc::new(ObjectStoreBackend::s3(
            &S3Location::parse(rest)?,
            opts,
        )?));
        #[cfg(not(feature = "s3"))]
        let _ = opts;
        #[cfg(not(feature = "s3"))]
        return Err(Error::new(
            crate::error::ErrorKind::Unsupported,
            format!("s3:{rest}: this cairn was built without S3 support (feature `s3`)"),
        ));
    }
    // restic's spelling of a local repository.
    if let Some(path) = location.strip_prefix("local:") {
        return Ok(Arc::new(LocalBackend::new(path)));
    }
    if let Some(scheme) = scheme(location) {
        return Err(Error::invalid(format!(
            "{location}: unknown repository type `{scheme}:`; cairn supports a local directory \
             and s3:https://host[:port]/bucket[/prefix] (a local path containing a colon can be \
             written ./{location})"
        )));
    }
    Ok(Arc::new(LocalBackend::new(location)))
}

/// The `word` of a location that starts like `word:` (restic's `rest:`,
/// `b2:`, `azure:`, `gs:`, `rclone:`, `swift:`, `sftp:`, or a URL): a
/// letter, then letters, digits, `+`, `-` or `.`, then a colon. A path
/// (`./a:b`, `/srv/a:b`) never starts so.
fn scheme(location: &str) -> Option<&str> {
    let (word, _) = location.split_once(':')?;
    let mut chars = word.chars();
    let first = chars.next()?;
    (first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
    .then_some(word)
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
