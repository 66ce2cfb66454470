//! The one error type of `cairn-core`.
//!
//! Every error carries an [`ErrorKind`] (what went wrong, used by the CLI to
//! pick an exit code) and a one-line message naming the thing involved: the
//! file, the object ID, the snapshot.

use std::fmt;
use std::io;

/// What kind of failure an [`Error`] is. The CLI maps kinds to exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// There is no repository at the given location (no `config` object).
    RepositoryNotFound,
    /// `init` was asked to create a repository where one already exists.
    RepositoryExists,
    /// No key file of the repository opens with the given password.
    WrongPassword,
    /// A stored object failed verification: bad hash, bad header, failed
    /// authentication, undecodable contents.
    Corrupt,
    /// An object that the repository refers to is missing from storage.
    MissingObject,
    /// The repository (or one of its objects) uses a format this version of
    /// cairn does not understand.
    Unsupported,
    /// A path given as backup source does not exist.
    SourceNotFound,
    /// The dump command exited non-zero or was killed by a signal.
    CommandFailed,
    /// A database dump is incomplete or unreadable (validation failed).
    DumpInvalid,
    /// A WAL file name is already archived with other contents.
    WalConflict,
    /// A WAL file comes from another PostgreSQL cluster than the one
    /// whose WAL the repository archives.
    WrongCluster,
    /// `pg check`: the WAL segment it made the server switch to did not
    /// reach the repository in time (archiving is off or failing).
    ArchiveNotWorking,
    /// No snapshot matches the given ID, prefix or filter.
    SnapshotNotFound,
    /// A snapshot ID prefix matches more than one snapshot.
    AmbiguousSnapshot,
    /// The storage or the restore target ran out of space.
    NoSpace,
    /// The operation was interrupted (Ctrl-C, SIGTERM).
    Interrupted,
    /// A prune running at the same time condemned (or deleted) data this
    /// backup refers to: nothing was committed; run the backup again.
    /// cairn takes no locks (`docs/design.md` §6).
    PruneConflict,
    /// An argument or option value is invalid.
    InvalidInput,
    /// The storage refused access: wrong credentials (S3 403), or a
    /// repository directory this user may not read or write.
    AccessDenied,
    /// The local index cache failed (it is only a cache: callers fall back
    /// to one in memory where they can).
    LocalCache,
    /// Any other I/O failure.
    Io,
}

impl ErrorKind {
    /// A failure of the surroundings (storage unreachable, disk full,
    /// Ctrl-C), not of the data: reads that fail this way say nothing
    /// about whether the repository is damaged, so `check` and `prune`
    /// must not report them as damage.
    pub fn is_passing(self) -> bool {
        matches!(
            self,
            ErrorKind::Io
                | ErrorKind::LocalCache
                | ErrorKind::NoSpace
                | ErrorKind::Interrupted
                | ErrorKind::AccessDenied
        )
    }
}

/// The error type of every fallible function in `cairn-core`.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error of `kind` with a one-line message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// A corrupt-object error.
    pub fn corrupt(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Corrupt, message)
    }

    /// A JSON document from the repository that does not decode: an
    /// unknown enum value means a newer writer (unsupported), anything else
    /// is damage.
    pub fn decode(what: impl fmt::Display, err: serde_json::Error) -> Self {
        let text = err.to_string();
        // serde's message for an enum value it does not know; a value quoted
        // inside another message cannot start the text.
        let kind = if text.starts_with("unknown variant") {
            ErrorKind::Unsupported
        } else {
            ErrorKind::Corrupt
        };
        Error::new(kind, format!("{what}: {text}"))
    }

    /// An invalid-input error.
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::InvalidInput, message)
    }

    /// Wraps an I/O error with what was being done. A full disk becomes
    /// [`ErrorKind::NoSpace`] so that it gets its own exit code.
    pub fn io(context: impl Into<String>, err: io::Error) -> Self {
        let kind = match err.kind() {
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => ErrorKind::NoSpace,
            io::ErrorKind::Interrupted => ErrorKind::Interrupted,
            _ => ErrorKind::Io,
        };
        Error {
            kind,
            message: context.into(),
            source: Some(Box::new(err)),
        }
    }

    /// Like [`Error::io`] for an operation on the repository's storage,
    /// where a permission error is [`ErrorKind::AccessDenied`] (its own
    /// exit code: running as the wrong user is the usual cause).
    pub fn storage_io(context: impl Into<String>, err: io::Error) -> Self {
        let mut e = Error::io(context, err);
        let denied = matches!(&e.source, Some(s) if s
            .downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::PermissionDenied));
        if denied {
            e.kind = ErrorKind::AccessDenied;
        }
        e
    }

    /// Attaches an underlying cause.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Prefixes the message with more context, keeping kind and source.
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message without the underlying cause.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The kind of the underlying I/O error, if the cause was one (lets
    /// the CLI treat a broken pipe as a quiet exit).
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        self.source
            .as_ref()
            .and_then(|s| s.downcast_ref::<io::Error>())
            .map(io::Error::kind)
    }

    /// The interruption error, raised when a cancel flag is seen.
    pub fn interrupted() -> Self {
        Error::new(ErrorKind::Interrupted, "interrupted")
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

/// The cause is part of `Display` (one complete line), so it is not also
/// reported as `source()`: error-chain printers would show it twice.
impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_disk_has_its_own_kind() {
        let err = Error::io("writing pack", io::Error::from(io::ErrorKind::StorageFull));
        assert_eq!(err.kind(), ErrorKind::NoSpace);
        assert!(err.to_string().starts_with("writing pack: "));
    }

    #[test]
    fn context_keeps_kind() {
        let err = Error::corrupt("bad tag").context("pack 1234");
        assert_eq!(err.kind(), ErrorKind::Corrupt);
        assert_eq!(err.to_string(), "pack 1234: bad tag");
    }
}
