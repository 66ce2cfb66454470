//! Exit codes, restic's where they overlap.

use cairn_core::ErrorKind;

/// The process exit codes of cairn. Documented in `--help` and README.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    Success = 0,
    Error = 1,
    Usage = 2,
    PartialBackup = 3,
    RepositoryNotFound = 10,
    PruneConflict = 11,
    WrongPassword = 12,
    AccessDenied = 13,
    Stale = 14,
    SourceNotFound = 20,
    CommandFailed = 21,
    Damaged = 22,
    NoSpace = 23,
    SnapshotNotFound = 24,
    Unsupported = 25,
    RepositoryExists = 26,
    DumpInvalid = 27,
    WalConflict = 28,
    WrongCluster = 29,
    ArchiveNotWorking = 30,
    MountFailed = 31,
    Interrupted = 130,
}

impl ExitCode {
    /// The exit code with number `code`, if cairn has one.
    pub fn from_code(code: i32) -> Option<ExitCode> {
        use ExitCode::*;
        [
            Success,
            Error,
            Usage,
            PartialBackup,
            RepositoryNotFound,
            PruneConflict,
            WrongPassword,
            AccessDenied,
            Stale,
            SourceNotFound,
            CommandFailed,
            Damaged,
            NoSpace,
            SnapshotNotFound,
            Unsupported,
            RepositoryExists,
            DumpInvalid,
            WalConflict,
            WrongCluster,
            ArchiveNotWorking,
            MountFailed,
            Interrupted,
        ]
        .into_iter()
        .find(|c| *c as i32 == code)
    }

    pub fn of(kind: ErrorKind) -> ExitCode {
        match kind {
            ErrorKind::RepositoryNotFound => ExitCode::RepositoryNotFound,
            ErrorKind::RepositoryExists => ExitCode::RepositoryExists,
            ErrorKind::WrongPassword => ExitCode::WrongPassword,
            ErrorKind::Corrupt | ErrorKind::MissingObject => ExitCode::Damaged,
            ErrorKind::Unsupported => ExitCode::Unsupported,
            ErrorKind::SourceNotFound => ExitCode::SourceNotFound,
            ErrorKind::CommandFailed => ExitCode::CommandFailed,
            ErrorKind::DumpInvalid => ExitCode::DumpInvalid,
            ErrorKind::WalConflict => ExitCode::WalConflict,
            ErrorKind::WrongCluster => ExitCode::WrongCluster,
            ErrorKind::ArchiveNotWorking => ExitCode::ArchiveNotWorking,
            ErrorKind::SnapshotNotFound | ErrorKind::AmbiguousSnapshot => {
                ExitCode::SnapshotNotFound
            }
            ErrorKind::NoSpace => ExitCode::NoSpace,
            ErrorKind::Interrupted => ExitCode::Interrupted,
            ErrorKind::PruneConflict => ExitCode::PruneConflict,
            ErrorKind::InvalidInput => ExitCode::Usage,
            ErrorKind::AccessDenied => ExitCode::AccessDenied,
            _ => ExitCode::Error,
        }
    }
}

/// The table printed at the end of `--help`.
/// An error of the command line's own (not of the repository), with the
/// exit code it ends with.
#[derive(Debug)]
pub struct Coded(pub ExitCode, pub String);

impl std::fmt::Display for Coded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.1)
    }
}

impl std::error::Error for Coded {}

pub const EXIT_CODES_HELP: &str = "\
Exit codes:
    0    success
    1    error not listed below
    2    invalid command line or option value
    3    finished, but some entries were skipped (listed on stderr): backup saved a
         snapshot without unreadable files; restore left out sockets, device
         nodes (when not root) or paths too long for this system, or restored
         files a repair marked damaged
   10    repository does not exist (or is not a cairn repository)
   11    repository busy: a prune ran during this backup and condemned (or deleted)
         data it refers to; nothing was committed (run the backup again)
   12    wrong password, or no password given (empty, or its file or command failed)
   13    access refused: wrong S3 or Azure credentials, no permission on the repository
         directory, or a write-only key used for anything but backup, wal-push
         and pg basebackup
   14    status --max-age: a series' newest snapshot is older than allowed, or there
         is none (the recovery point objective was missed); status --max-drill-age:
         a series has no restore drill that passed within the time allowed;
         status: a series' newest snapshot is an empty stream not saved with
         --allow-empty
   20    backup source not found or unreadable (nothing written), file not in snapshot,
         or WAL file not in the archive (wal-fetch)
   21    dump command failed (non-zero exit or killed): no snapshot written
   22    repository data damaged: an object is corrupt or missing
   23    no space left on the repository or restore target
   24    no snapshot matches, or the ID prefix is ambiguous
   25    repository format not supported by this version of cairn (pg check: the
         server is a standby, which does not switch WAL)
   26    init: a repository already exists there
   27    the dump is empty, incomplete or unreadable (a stream without a byte, unless
         --allow-empty; a plain pg_dump without its completion line, an archive
         pg_restore cannot read): no snapshot written; wal-push: the segment's first
         page belongs to another position than its name
   28    wal-push: a WAL file of that name is already archived with different contents
   29    wal-push: the WAL file is from another PostgreSQL cluster (system identifier)
         than the one this repository archives (pg check: the server's cluster)
   30    pg check: the WAL segment the server switched to did not reach the repository
         in time (archive_mode off, or archive_command failing)
   31    mount: FUSE is not available (no /dev/fuse, no permission to mount) or the
         mount point is not an empty directory
  130    interrupted (Ctrl-C, SIGTERM)";
