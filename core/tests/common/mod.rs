//! Test backends for library-level tests: [`MemBackend`], an in-memory
//! store that behaves like `LocalBackend`, and [`FaultBackend`], a wrapper
//! that counts operations and injects failures, crashes and damaged reads.

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use cairn_core::backend::{Backend, ObjectInfo, ObjectKind};
use cairn_core::chunk::chunker::ChunkerParams;
use cairn_core::format::config::MIN_PACK_SIZE;
use cairn_core::format::keyfile::{KdfParams, KeyInfo};
use cairn_core::repo::repository::{self, InitOptions};
use cairn_core::{Error, ErrorKind, Result};

/// `ObjectKind` is not `Ord`: a sort key per kind.
fn kind_key(kind: ObjectKind) -> u8 {
    match kind {
        ObjectKind::Config => 0,
        ObjectKind::Key => 1,
        ObjectKind::Pack => 2,
        ObjectKind::Index => 3,
        ObjectKind::Snapshot => 4,
        ObjectKind::Wal => 5,
        ObjectKind::Drill => 6,
        ObjectKind::Claim => 7,
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[derive(Clone)]
struct Stored {
    /// Shared: forking a store copies no object bytes.
    data: Arc<Vec<u8>>,
    modified: i64,
}

type Objects = BTreeMap<(u8, String), Stored>;

/// Objects in memory, with `LocalBackend`'s semantics: create-only put,
/// `max_size` refused on get, short range reads are corrupt, deleting a
/// missing object is fine. Clones share the store; [`MemBackend::fork`]
/// copies it (a snapshot of the storage at one instant).
#[derive(Clone, Default)]
pub struct MemBackend {
    objects: Arc<Mutex<Objects>>,
    /// Puts overwrite, like a server that ignores `If-None-Match: *`.
    overwrites: bool,
}

impl MemBackend {
    pub fn new() -> Self {
        Self::default()
    }

    /// A store whose puts overwrite an object of the same name and report
    /// it created (Garage 2.5 ignoring create-only).
    pub fn ignoring_create_only() -> Self {
        MemBackend {
            overwrites: true,
            ..Self::default()
        }
    }

    /// Stores an object as if written at `modified` (Unix seconds).
    pub fn put_at(&self, kind: ObjectKind, name: &str, data: &[u8], modified: i64) {
        self.objects.lock().unwrap().insert(
            (kind_key(kind), name.to_string()),
            Stored {
                data: Arc::new(data.to_vec()),
                modified,
            },
        );
    }

    /// An independent copy of the storage as it is now.
    pub fn fork(&self) -> MemBackend {
        let copy = self.objects.lock().unwrap().clone();
        MemBackend {
            objects: Arc::new(Mutex::new(copy)),
            overwrites: self.overwrites,
        }
    }

    /// Object names of `kind`, sorted.
    pub fn names(&self, kind: ObjectKind) -> Vec<String> {
        let k = kind_key(kind);
        self.objects
            .lock()
            .unwrap()
            .keys()
            .filter(|(kk, _)| *kk == k)
            .map(|(_, n)| n.clone())
            .collect()
    }

    /// Stored bytes of every object of `kind`.
    pub fn bytes_of(&self, kind: ObjectKind) -> u64 {
        let k = kind_key(kind);
        self.objects
            .lock()
            .unwrap()
            .iter()
            .filter(|((kk, _), _)| *kk == k)
            .map(|(_, s)| s.data.len() as u64)
            .sum()
    }

    fn missing(kind: ObjectKind, name: &str) -> Error {
        Error::new(
            ErrorKind::MissingObject,
            format!("{} {name} is missing (mem)", kind.noun()),
        )
    }

    fn lookup(&self, kind: ObjectKind, name: &str) -> Result<Arc<Vec<u8>>> {
        self.objects
            .lock()
            .unwrap()
            .get(&(kind_key(kind), name.to_string()))
            .map(|s| Arc::clone(&s.data))
            .ok_or_else(|| Self::missing(kind, name))
    }
}

impl Backend for MemBackend {
    fn location(&self) -> String {
        "mem:".to_string()
    }

    fn create(&self) -> Result<()> {
        Ok(())
    }

    fn put(&self, kind: ObjectKind, name: &str, data: &[u8]) -> Result<bool> {
        let mut objects = self.objects.lock().unwrap();
        let key = (kind_key(kind), name.to_string());
        if objects.contains_key(&key) && !self.overwrites {
            return Ok(false);
        }
        objects.insert(
            key,
            Stored {
                data: Arc::new(data.to_vec()),
                modified: now(),
            },
        );
        Ok(true)
    }

    fn atomic_create_only(&self) -> bool {
        !self.overwrites
    }

    fn get(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>> {
        let data = self.lookup(kind, name)?;
        let len = data.len() as u64;
        if len > kind.max_size() {
            return Err(Error::corrupt(format!(
                "{} {name} is {len} bytes, more than any valid {} ({} bytes)",
                kind.noun(),
                kind.noun(),
                kind.max_size()
            )));
        }
        Ok(data.to_vec())
    }

    fn get_range(&self, kind: ObjectKind, name: &str, offset: u64, length: u64) -> Result<Vec<u8>> {
        let data = self.lookup(kind, name)?;
        let end = offset.checked_add(length);
        match end {
            Some(end) if end <= data.len() as u64 => {
                Ok(data[offset as usize..end as usize].to_vec())
            }
            _ => Err(Error::corrupt(format!(
                "{} {name} is truncated: cannot read {length} bytes at offset {offset}",
                kind.noun()
            ))),
        }
    }

    fn list(&self, kind: ObjectKind) -> Result<Vec<ObjectInfo>> {
        if kind == ObjectKind::Config {
            return Ok(Vec::new());
        }
        let k = kind_key(kind);
        Ok(self
            .objects
            .lock()
            .unwrap()
            .iter()
            .filter(|((kk, _), _)| *kk == k)
            .map(|((_, name), s)| ObjectInfo {
                name: name.clone(),
                size: s.data.len() as u64,
                modified: Some(s.modified),
            })
            .collect())
    }

    fn delete(&self, kind: ObjectKind, name: &str) -> Result<()> {
        self.objects
            .lock()
            .unwrap()
            .remove(&(kind_key(kind), name.to_string()));
        Ok(())
    }
}

/// The operations of a backend (besides `location` and `create`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    Get,
    GetRange,
    Put,
    List,
    Delete,
}

pub const OPS: [Op; 5] = [Op::Get, Op::GetRange, Op::Put, Op::List, Op::Delete];

/// How an injected failure looks to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// An I/O error; nothing happened.
    Io,
    /// The device is full; nothing was stored.
    NoSpace,
    /// The operation took effect but an I/O error was reported (a
    /// connection lost after the server stored the object).
    IoAfterApplying,
}

impl Failure {
    fn error(self, what: &str) -> Error {
        let cause = match self {
            Failure::NoSpace => io::Error::from(io::ErrorKind::StorageFull),
            Failure::Io | Failure::IoAfterApplying => io::Error::other("injected I/O error"),
        };
        Error::io(format!("injected fault: {what}"), cause)
    }

    /// The error kind the caller should see.
    pub fn kind(self) -> ErrorKind {
        match self {
            Failure::NoSpace => ErrorKind::NoSpace,
            Failure::Io | Failure::IoAfterApplying => ErrorKind::Io,
        }
    }
}

/// Damage done to the bytes of one read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damage {
    /// Drop this many bytes from the end (saturating: `usize::MAX` returns
    /// nothing).
    Short(usize),
    /// Flip one bit, at this position in per mille of the bits returned.
    Flip { permille: u64 },
}

/// What to inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    #[default]
    None,
    /// The `nth` (from 0) operation of kind `op` fails.
    Fail {
        op: Op,
        nth: usize,
        failure: Failure,
    },
    /// The process dies at mutating operation `at` (put or delete, from 0):
    /// it takes effect if `applied`; it and every later put or delete fail,
    /// and nothing after it reaches storage.
    Crash { at: usize, applied: bool },
    /// The `nth` read (get or get_range, counted together, from 0) returns
    /// damaged bytes.
    Damage { nth: usize, damage: Damage },
}

/// What an injected fault hit.
#[derive(Debug, Clone)]
pub struct Fired {
    pub op: Op,
    pub kind: ObjectKind,
    pub name: String,
}

/// Wraps a backend: counts operations per kind and injects one [`Fault`].
pub struct FaultBackend {
    inner: Arc<dyn Backend>,
    counts: [AtomicUsize; 5],
    mutations: AtomicUsize,
    reads: AtomicUsize,
    fault: Mutex<Fault>,
    fired: Mutex<Vec<Fired>>,
    /// What `parallel_requests` answers, and how long each pack put takes.
    parallel: usize,
    put_delay: std::time::Duration,
    puts_in_flight: AtomicUsize,
    max_puts_in_flight: AtomicUsize,
}

impl FaultBackend {
    pub fn new(inner: Arc<dyn Backend>) -> Self {
        FaultBackend {
            inner,
            counts: Default::default(),
            mutations: AtomicUsize::new(0),
            reads: AtomicUsize::new(0),
            fault: Mutex::new(Fault::None),
            fired: Mutex::new(Vec::new()),
            parallel: 1,
            put_delay: std::time::Duration::ZERO,
            puts_in_flight: AtomicUsize::new(0),
            max_puts_in_flight: AtomicUsize::new(0),
        }
    }

    /// Like [`FaultBackend::new`], asking for `n` parallel writes, with
    /// every pack put taking at least `delay` (so that they overlap).
    pub fn with_parallel_requests(
        inner: Arc<dyn Backend>,
        n: usize,
        delay: std::time::Duration,
    ) -> Self {
        FaultBackend {
            parallel: n,
            put_delay: delay,
            ..Self::new(inner)
        }
    }

    /// The most puts that ran at the same time.
    pub fn max_puts_in_flight(&self) -> usize {
        self.max_puts_in_flight.load(SeqCst)
    }

    /// Resets the counters and injects `fault` from now on.
    pub fn arm(&self, fault: Fault) {
        for c in &self.counts {
            c.store(0, SeqCst);
        }
        self.mutations.store(0, SeqCst);
        self.reads.store(0, SeqCst);
        self.fired.lock().unwrap().clear();
        *self.fault.lock().unwrap() = fault;
    }

    /// Operations of kind `op` since [`FaultBackend::arm`].
    pub fn count(&self, op: Op) -> usize {
        self.counts[op as usize].load(SeqCst)
    }

    /// Puts and deletes since [`FaultBackend::arm`].
    pub fn mutations(&self) -> usize {
        self.mutations.load(SeqCst)
    }

    /// Gets and range gets since [`FaultBackend::arm`].
    pub fn reads(&self) -> usize {
        self.reads.load(SeqCst)
    }

    /// The operations the fault hit (for a crash: every dropped mutation).
    pub fn fired(&self) -> Vec<Fired> {
        self.fired.lock().unwrap().clone()
    }

    fn fault(&self) -> Fault {
        *self.fault.lock().unwrap()
    }

    fn fire(&self, op: Op, kind: ObjectKind, name: &str) {
        self.fired.lock().unwrap().push(Fired {
            op,
            kind,
            name: name.to_string(),
        });
    }

    /// Counts an operation; the failure to inject, if this is the one.
    fn failure(&self, op: Op) -> Option<Failure> {
        let n = self.counts[op as usize].fetch_add(1, SeqCst);
        match self.fault() {
            Fault::Fail {
                op: o,
                nth,
                failure,
            } if o == op && nth == n => Some(failure),
            _ => None,
        }
    }

    /// Runs a put or delete, unless a crash or failure says otherwise.
    fn mutate<T>(
        &self,
        op: Op,
        kind: ObjectKind,
        name: &str,
        run: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        let failure = self.failure(op);
        let m = self.mutations.fetch_add(1, SeqCst);
        if let Fault::Crash { at, applied } = self.fault() {
            if m >= at {
                if m == at && applied {
                    run()?;
                }
                self.fire(op, kind, name);
                return Err(Error::new(
                    ErrorKind::Io,
                    format!("injected crash at mutation {at}: the process is gone"),
                ));
            }
        }
        match failure {
            Some(f) => {
                if f == Failure::IoAfterApplying {
                    run()?;
                }
                self.fire(op, kind, name);
                Err(f.error(&format!("{op:?} {} {name}", kind.noun())))
            }
            None => run(),
        }
    }

    /// Runs a get or range get, failing or damaging it if told to.
    fn read(
        &self,
        op: Op,
        kind: ObjectKind,
        name: &str,
        run: impl FnOnce() -> Result<Vec<u8>>,
    ) -> Result<Vec<u8>> {
        let failure = self.failure(op);
        let r = self.reads.fetch_add(1, SeqCst);
        if let Some(f) = failure {
            self.fire(op, kind, name);
            return Err(f.error(&format!("{op:?} {} {name}", kind.noun())));
        }
        let mut bytes = run()?;
        if let Fault::Damage { nth, damage } = self.fault() {
            if nth == r {
                self.fire(op, kind, name);
                match damage {
                    Damage::Short(n) => bytes.truncate(bytes.len().saturating_sub(n)),
                    Damage::Flip { permille } => {
                        let bits = bytes.len() as u64 * 8;
                        if bits > 0 {
                            let bit = (bits - 1) * permille.min(1000) / 1000;
                            bytes[(bit / 8) as usize] ^= 1 << (bit % 8);
                        }
                    }
                }
            }
        }
        Ok(bytes)
    }
}

impl Backend for FaultBackend {
    fn location(&self) -> String {
        format!("faulty {}", self.inner.location())
    }

    fn create(&self) -> Result<()> {
        self.inner.create()
    }

    fn put(&self, kind: ObjectKind, name: &str, data: &[u8]) -> Result<bool> {
        let now = self.puts_in_flight.fetch_add(1, SeqCst) + 1;
        self.max_puts_in_flight.fetch_max(now, SeqCst);
        if kind == ObjectKind::Pack {
            std::thread::sleep(self.put_delay);
        }
        let r = self.mutate(Op::Put, kind, name, || self.inner.put(kind, name, data));
        self.puts_in_flight.fetch_sub(1, SeqCst);
        r
    }

    fn parallel_requests(&self) -> usize {
        self.parallel
    }

    fn atomic_create_only(&self) -> bool {
        self.inner.atomic_create_only()
    }

    fn get(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>> {
        self.read(Op::Get, kind, name, || self.inner.get(kind, name))
    }

    fn get_range(&self, kind: ObjectKind, name: &str, offset: u64, length: u64) -> Result<Vec<u8>> {
        self.read(Op::GetRange, kind, name, || {
            self.inner.get_range(kind, name, offset, length)
        })
    }

    fn list(&self, kind: ObjectKind) -> Result<Vec<ObjectInfo>> {
        if let Some(f) = self.failure(Op::List) {
            self.fire(Op::List, kind, "");
            return Err(f.error(&format!("list {}", kind.noun())));
        }
        self.inner.list(kind)
    }

    fn delete(&self, kind: ObjectKind, name: &str) -> Result<()> {
        self.mutate(Op::Delete, kind, name, || self.inner.delete(kind, name))
    }
}

/// Deterministic pseudo-random bytes (SplitMix64).
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Compressible, repetitive text like a SQL dump.
pub fn dump_text(len: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    let mut i = 0u64;
    while out.len() < len {
        out.extend_from_slice(
            format!(
                "INSERT INTO t VALUES ({i}, 'row {}', {});\n",
                i.wrapping_mul(seed | 1) % 977,
                i % 13
            )
            .as_bytes(),
        );
        i += 1;
    }
    out.truncate(len);
    out
}

/// Creates a repository on `backend` for tests: 1 MiB packs (the smallest
/// allowed), 4 KiB chunks, zstd level 1, delta compression as `delta`
/// says, and a cheap KDF.
/// The cheapest Argon2id the bounds allow, for tests.
pub const FAST_KDF: KdfParams = KdfParams {
    memory_kib: 64,
    iterations: 1,
    parallelism: 1,
};

/// Key info of a full key added by `user` on `host`.
pub fn key_info(host: &str, user: &str) -> KeyInfo {
    KeyInfo {
        created: "2026-11-28T00:00:00Z".into(),
        host: host.into(),
        user: user.into(),
        kind: "full".into(),
    }
}

pub fn init_small(backend: Arc<dyn Backend>, password: &[u8], delta: bool) {
    let mut opts = InitOptions::default();
    opts.chunker = ChunkerParams::with_average(4096);
    opts.compression_level = 1;
    opts.delta = delta;
    opts.pack_size = MIN_PACK_SIZE;
    opts.kdf = FAST_KDF;
    let info = key_info("test", "test");
    repository::init(backend, password, &opts, info).unwrap();
}

/// Backup options of the tests: host and user `test`, the rest default.
#[allow(dead_code)]
pub fn backup_options() -> cairn_core::ops::backup::BackupOptions {
    let mut o = cairn_core::ops::backup::BackupOptions::default();
    o.hostname = "test".into();
    o.username = "test".into();
    o
}

/// Backs `data` up from a stream stored as `filename`, host and user
/// `test` (dumps checked when `validate`).
pub fn backup_stream(
    repo: &impl cairn_core::repo::appender::CanAdd,
    filename: &str,
    data: &[u8],
    validate: bool,
) -> Result<cairn_core::format::snapshot::Snapshot> {
    let mut opts = backup_options();
    opts.validate_dumps = validate;
    let source = cairn_core::ops::backup::BackupSource::Stream {
        reader: Box::new(io::Cursor::new(data.to_vec())),
        filename: filename.into(),
    };
    let cancel = std::sync::atomic::AtomicBool::new(false);
    cairn_core::ops::backup::backup(
        repo,
        source,
        &opts,
        &cairn_core::ops::backup::NoProgress,
        &cancel,
    )
    .map(|o| o.snapshot)
}

/// Restores `snap` into a temporary directory and reads back `filename`.
pub fn restore_file(
    repo: &repository::Repository,
    snap: &cairn_core::format::snapshot::Snapshot,
    filename: &str,
) -> Result<Vec<u8>> {
    let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
    let cancel = std::sync::atomic::AtomicBool::new(false);
    cairn_core::ops::restore::restore(
        repo,
        snap,
        dir.path(),
        &Default::default(),
        &cairn_core::repo::restorer::NoRestoreProgress,
        &cancel,
    )?;
    std::fs::read(dir.path().join(filename)).map_err(|e| Error::io(filename, e))
}

/// `check --read-data` of `repo`.
pub fn check_read_data(
    repo: &repository::Repository,
) -> Result<cairn_core::ops::check::CheckReport> {
    let mut opts = cairn_core::ops::check::CheckOptions::default();
    opts.read_data = Some(cairn_core::ops::check::DataSubset::All);
    let cancel = std::sync::atomic::AtomicBool::new(false);
    cairn_core::ops::check::check(
        repo,
        &opts,
        &cairn_core::ops::check::NoCheckProgress,
        &cancel,
    )
}
