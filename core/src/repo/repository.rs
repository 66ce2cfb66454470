//! Opening, creating and reading a repository.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;

use crate::backend::claim::{put_exclusive, Claim, Exclusive};
use crate::backend::{Backend, ObjectKind};
use crate::chunk::chunker::ChunkerParams;
use crate::crypto::{random_bytes, Keys, MasterKey};
use crate::error::{Error, ErrorKind, Result};
use crate::format;
use crate::format::config::{self, RepoConfig};
use crate::format::index::{self, IndexPack};
use crate::format::keyfile::{self, KdfParams, KeyInfo};
use crate::format::pack::{self, BlobEntry, BlobType};
use crate::format::snapshot::{self, Snapshot, SnapshotFilter};
use crate::format::tree::{self, Node, Tree};
use crate::id::Id;
use crate::repo::cache::{check_room, CacheReader, IndexCache, SyncStats};
use crate::time::SnapshotTime;

/// Settings of a new repository.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct InitOptions {
    /// Chunk size bounds.
    pub chunker: ChunkerParams,
    /// zstd level.
    pub compression_level: i32,
    /// Delta compression of new chunks against similar stored ones.
    pub delta: bool,
    /// Target pack size in bytes.
    pub pack_size: u32,
    /// Argon2id cost of the first key.
    pub kdf: KdfParams,
    /// Seconds between prune marking a pack and deleting it.
    pub prune_grace_seconds: u64,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            chunker: ChunkerParams::default(),
            compression_level: config::DEFAULT_COMPRESSION_LEVEL,
            delta: true,
            pack_size: config::DEFAULT_PACK_SIZE,
            kdf: KdfParams::default(),
            prune_grace_seconds: config::DEFAULT_PRUNE_GRACE,
        }
    }
}

/// Receives warnings raised after opening ([`Repository::set_warning_sink`]).
type WarningSink = Box<dyn Fn(&str) + Send + Sync>;

/// Where the index cache lives.
#[derive(Debug, Clone, Default)]
pub enum CacheLocation {
    /// `<dir>/<repository ID>/index.redb`.
    Dir(PathBuf),
    /// A temporary directory removed on exit.
    #[default]
    Temporary,
}

impl CacheLocation {
    /// The user's cache directory (`$XDG_CACHE_HOME/cairn`, usually
    /// `~/.cache/cairn`), or a temporary one when there is none.
    pub fn user_default() -> Self {
        match dirs::cache_dir() {
            Some(d) => CacheLocation::Dir(d.join("cairn")),
            None => CacheLocation::Temporary,
        }
    }
}

/// Marks the cache directory for backup tools that honour CACHEDIR.TAG
/// (cairn's own cache need not be backed up). Best effort.
fn tag_cache_dir(dir: &std::path::Path) {
    let tag = dir.join("CACHEDIR.TAG");
    if !tag.exists() && std::fs::create_dir_all(dir).is_ok() {
        let _ = std::fs::write(
            tag,
            "Signature: 8a477f597d28d172789f06886806bc55\n# This file is a cache directory tag created by cairn.\n",
        );
    }
}

/// The warning when the index cache in `dir` cannot be used because of `e`.
fn cache_fallback_warning(dir: &Path, e: &Error) -> String {
    format!(
        "index cache in {} unusable ({e}): working with one in memory (slower: every index object is read)",
        dir.display()
    )
}

/// `Ok` unless `bytes` do not hash to the object's name.
pub fn verify_name(kind: ObjectKind, name: &str, bytes: &[u8]) -> Result<()> {
    let actual = Id::of_bytes(bytes);
    if actual.to_hex() != name {
        return Err(Error::corrupt(format!(
            "{} {name}: contents do not match the name (hash is {actual})",
            kind.noun()
        )));
    }
    Ok(())
}

/// Creates a repository; returns its ID.
pub fn init(
    backend: Arc<dyn Backend>,
    password: &[u8],
    opts: &InitOptions,
    info: KeyInfo,
) -> Result<Id> {
    match backend.get(ObjectKind::Config, "config") {
        Ok(_) => {
            return Err(Error::new(
                ErrorKind::RepositoryExists,
                format!("a repository already exists at {}", backend.location()),
            ))
        }
        Err(e) if e.kind() == ErrorKind::MissingObject => {}
        Err(e) => return Err(e),
    }
    if password.is_empty() {
        return Err(Error::invalid("an empty password is not a password"));
    }
    let mut config = RepoConfig::new(SnapshotTime::now().to_rfc3339());
    config.chunker = opts.chunker;
    config.compression.level = opts.compression_level;
    // Deltas are zstd frames: no compression, no deltas.
    config.compression.delta = opts.delta && opts.compression_level > 0;
    config.pack_size = opts.pack_size;
    config.prune_grace_seconds = opts.prune_grace_seconds;
    config.validate()?;
    opts.kdf.check()?;

    backend.create()?;
    let master = MasterKey::generate()?;
    let repo_id = Id::from_bytes(random_bytes()?);
    let keys = Keys::derive(&master);
    let key_file = keyfile::create(&master, &repo_id, password, opts.kdf, &info)?;
    backend.put(
        ObjectKind::Key,
        &Id::of_bytes(&key_file).to_hex(),
        &key_file,
    )?;
    // The config is written last: a repository exists once it does.
    // On storage that ignores create-only puts, a claim keeps two
    // concurrent inits from both succeeding (§15.4).
    let config_bytes = config::encode(&config, &repo_id, keys.data())?;
    let claim = Claim::new(
        blake3::hash(b"cairn config").as_bytes(),
        Id::of_bytes(&config_bytes).as_bytes(),
    );
    match put_exclusive(
        backend.as_ref(),
        ObjectKind::Config,
        "config",
        &config_bytes,
        &claim,
    )? {
        Exclusive::Created => Ok(repo_id),
        outcome @ (Exclusive::Exists | Exclusive::Contended) => {
            // Our key file opens nothing: take it back (best effort).
            let _ = backend.delete(ObjectKind::Key, &Id::of_bytes(&key_file).to_hex());
            Err(Error::new(
                ErrorKind::RepositoryExists,
                if outcome == Exclusive::Exists {
                    format!(
                        "a repository was created at {} at the same time",
                        backend.location()
                    )
                } else {
                    format!(
                        "another init is creating a repository at {} at this moment; nothing was \
                         created (run init again if no repository appears there)",
                        backend.location()
                    )
                },
            ))
        }
    }
}

/// A repository found but not yet opened with a key.
pub struct LockedRepository {
    backend: Arc<dyn Backend>,
    id: Id,
    config_bytes: Vec<u8>,
}

/// Finds the repository at `backend` without needing a password.
pub fn locate(backend: Arc<dyn Backend>) -> Result<LockedRepository> {
    let config_bytes = match backend.get(ObjectKind::Config, "config") {
        Ok(b) => b,
        Err(e) if e.kind() == ErrorKind::MissingObject => {
            return Err(Error::new(
                ErrorKind::RepositoryNotFound,
                format!(
                    "no cairn repository at {} (no config object)",
                    backend.location()
                ),
            ))
        }
        Err(e) => return Err(e.context("cannot open the repository")),
    };
    // Not a cairn object at all: not a repository. A cairn config that
    // fails its checksum: a damaged repository.
    if config_bytes.get(..format::MAGIC.len()) != Some(&format::MAGIC[..]) {
        return Err(Error::new(
            ErrorKind::RepositoryNotFound,
            format!(
                "{} is not a cairn repository (config: bad magic)",
                backend.location()
            ),
        ));
    }
    let id = config::repo_id(&config_bytes)
        .map_err(|e| e.context(format!("repository at {}", backend.location())))?;
    Ok(LockedRepository {
        backend,
        id,
        config_bytes,
    })
}

impl LockedRepository {
    /// The repository ID.
    pub fn id(&self) -> Id {
        self.id
    }

    /// Opens the master key with `password` and syncs the index cache. A
    /// password that opens a write-only key gets access denied: see
    /// `unlock_to_add` (in `repo::appender`).
    pub fn unlock(self, password: &[u8], cache: &CacheLocation) -> Result<Repository> {
        self.unlock_as(password, cache, false)
    }

    pub(crate) fn unlock_as(
        self,
        password: &[u8],
        cache: &CacheLocation,
        write_only_ok: bool,
    ) -> Result<Repository> {
        let (unwrapped, key_name) = self.find_key(password, write_only_ok)?;
        let (keys, config, master) = self.keys_and_config(unwrapped, &key_name)?;
        let id = self.id;
        // A write-only key cannot check index tags, so it keeps its own
        // cache: a full key must not find a writer's view there.
        let file = match master {
            Some(_) => "index.redb",
            None => "index-write-only.redb",
        };
        let mut warnings = Vec::new();
        let cache = match cache {
            CacheLocation::Dir(dir) => {
                let dir = dir.join(id.to_hex());
                let opened = check_room(&dir).and_then(|()| {
                    tag_cache_dir(dir.parent().unwrap_or(&dir));
                    IndexCache::open(&dir.join(file))
                });
                match opened {
                    Ok(cache) => cache,
                    Err(e) => {
                        warnings.push(cache_fallback_warning(&dir, &e));
                        IndexCache::in_memory()?
                    }
                }
            }
            CacheLocation::Temporary => IndexCache::temporary()?,
        };
        let mut repo = Repository {
            backend: self.backend,
            id,
            config,
            keys,
            master,
            key_name,
            cache: std::sync::RwLock::new(Arc::new(cache)),
            warnings,
            late_warnings: std::sync::Mutex::new(Vec::new()),
            warning_sink: None,
            cache_generation: std::sync::atomic::AtomicU64::new(0),
            cache_swap: std::sync::Mutex::new(()),
            io_pool: std::sync::OnceLock::new(),
            indexes_at_open: HashSet::new(),
            indexes_written: std::sync::Mutex::new(HashSet::new()),
            session_keys: std::sync::Mutex::new(HashMap::new()),
        };
        // The cache's disk filling (or failing) while it is brought up to
        // date makes it one in memory, with a warning (`with_cache`).
        let stats = repo.sync_index()?;
        let late = repo.take_late_warnings();
        repo.warnings.extend(late);
        repo.indexes_at_open = repo.cache().known_indexes()?;
        repo.warnings.extend(
            stats
                .unreadable
                .iter()
                .map(|e| format!("skipping unreadable index object: {e}")),
        );
        Ok(repo)
    }

    /// The key file that `password` opens, and its name. Cheapest
    /// derivation first, then by name (§3.5): a key made for a command
    /// that runs often (`key add --generate-password`, for
    /// archive_command) opens in a millisecond instead of after every
    /// costlier key has been tried with its password.
    fn find_key(
        &self,
        password: &[u8],
        write_only_ok: bool,
    ) -> Result<(keyfile::Unwrapped, String)> {
        let key_list = self.backend.list(ObjectKind::Key)?;
        if key_list.is_empty() {
            return Err(Error::corrupt(format!(
                "repository at {} has no key files",
                self.backend.location()
            )));
        }
        // Read at once (on object storage each is a request).
        let mut files: Vec<(u64, &crate::backend::ObjectInfo, Result<Vec<u8>>)> = key_list
            .par_iter()
            .map(|info| {
                let bytes = self.backend.get(ObjectKind::Key, &info.name).and_then(|b| {
                    verify_name(ObjectKind::Key, &info.name, &b)?;
                    Ok(b)
                });
                let cost = bytes
                    .as_ref()
                    .ok()
                    .and_then(|b| keyfile::kdf_params(b, &info.name).ok())
                    .map_or(u64::MAX, |k| {
                        u64::from(k.memory_kib) * u64::from(k.iterations)
                    });
                (cost, info, bytes)
            })
            .collect();
        files.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.name.cmp(&b.1.name)));
        let mut unusable: Vec<Error> = Vec::new();
        let mut tried = 0usize;
        for (_, info, bytes) in files {
            let what = format!("key {}", info.name);
            let opened = bytes.and_then(|bytes| keyfile::unwrap(&bytes, &self.id, password, &what));
            match opened {
                Ok(Some(keyfile::Unwrapped::WriteOnly(_))) if !write_only_ok => {
                    // The password opened a key that may not read: say so
                    // (not "wrong password").
                    return Err(Error::new(
                        ErrorKind::AccessDenied,
                        format!(
                            "the password opens write-only key {}: it can add backups (backup, wal-push, pg basebackup), not read, list or remove them",
                            info.name.get(..8).unwrap_or(&info.name)
                        ),
                    ));
                }
                Ok(Some(m)) => return Ok((m, info.name.clone())),
                Ok(None) => tried += 1,
                Err(e) => unusable.push(e),
            }
        }
        if tried == 0 {
            // Every key file was unusable: say why, rather than blame the
            // password.
            return Err(unusable.swap_remove(0));
        }
        let mut msg = "wrong password: no key file of the repository opens with it".to_string();
        if !unusable.is_empty() {
            msg.push_str(&format!(
                " ({} unusable key files skipped: {})",
                unusable.len(),
                unusable[0]
            ));
        }
        Err(Error::new(ErrorKind::WrongPassword, msg))
    }

    /// The keys and config that an opened key file gives: all of them
    /// for a full key (whose master key is returned too), the sealing
    /// keys only and the key file's copy of the config for a write-only
    /// one.
    fn keys_and_config(
        &self,
        unwrapped: keyfile::Unwrapped,
        key_name: &str,
    ) -> Result<(Keys, RepoConfig, Option<MasterKey>)> {
        match unwrapped {
            keyfile::Unwrapped::Full(master) => {
                let keys = Keys::derive(&master);
                let (id, config) = config::decode(&self.config_bytes, keys.data())?;
                if id != self.id {
                    return Err(Error::corrupt("config changed while opening"));
                }
                Ok((keys, config, Some(master)))
            }
            keyfile::Unwrapped::WriteOnly(w) => {
                // The config is sealed with the data key; the key file
                // holds a copy, bound to this repository by its seal.
                let config: RepoConfig = serde_json::from_slice(&w.config_json)
                    .map_err(|e| Error::decode(format!("key {key_name}: config"), e))?;
                config.validate().map_err(|e| {
                    Error::corrupt(format!("key {key_name}: config: {}", e.message()))
                })?;
                let session: [u8; 32] = random_bytes()?;
                Ok((Keys::for_writer(&w.keys, &session, &w.public), config, None))
            }
        }
    }
}

/// The snapshots of a repository: the readable ones, oldest first, and the
/// object names of those that cannot be read, with why.
#[derive(Debug)]
pub struct SnapshotList {
    /// Readable snapshots, oldest first.
    pub good: Vec<Snapshot>,
    /// Object name and error of each unreadable snapshot.
    pub damaged: Vec<(String, Error)>,
}

/// The object names of objects that cannot be read, with why.
pub type Damaged = Vec<(String, Error)>;

impl SnapshotList {
    /// Resolves SNAPSHOT (a full ID, a unique prefix, or `latest`, the
    /// newest passing `filter`), refusing to guess: `latest` while some
    /// snapshot cannot be read (it may be the newest), or a prefix of a
    /// damaged snapshot's name, is a damage error naming it.
    pub fn resolve(&self, spec: &str, filter: &SnapshotFilter) -> Result<&Snapshot> {
        let lower = spec.to_ascii_lowercase();
        let hit = self
            .damaged
            .iter()
            .find(|(name, _)| spec == "latest" || (!lower.is_empty() && name.starts_with(&lower)));
        if let Some((name, _)) = hit {
            return Err(Error::corrupt(format!(
                "snapshot {} cannot be read, so {spec:?} cannot be resolved safely; name another \
                 snapshot by ID",
                &name[..8.min(name.len())]
            )));
        }
        snapshot::resolve(&self.good, spec, filter)
    }

    /// The snapshots named by `specs` (each resolved as by
    /// [`SnapshotList::resolve`]), or with none named every one passing
    /// `filter`; oldest first, each once.
    pub fn select(&self, specs: &[String], filter: &SnapshotFilter) -> Result<Vec<&Snapshot>> {
        let mut chosen: Vec<&Snapshot> = if specs.is_empty() {
            self.good.iter().filter(|s| filter.matches(s)).collect()
        } else {
            specs
                .iter()
                .map(|spec| self.resolve(spec, filter))
                .collect::<Result<_>>()?
        };
        chosen.sort_by(|a, b| a.time.cmp(&b.time).then(a.id.cmp(&b.id)));
        chosen.dedup_by(|a, b| a.id == b.id);
        Ok(chosen)
    }

    /// The object name of an unreadable snapshot named in full by `spec`.
    pub fn damaged_named(&self, spec: &str) -> Option<&str> {
        self.damaged
            .iter()
            .map(|(name, _)| name.as_str())
            .find(|name| *name == spec)
    }
}

/// An opened repository.
pub struct Repository {
    backend: Arc<dyn Backend>,
    id: Id,
    config: RepoConfig,
    keys: Keys,
    /// The master key, to wrap it into new key files (`key add`); none
    /// when a write-only key opened the repository.
    master: Option<MasterKey>,
    /// The key file that opened the repository.
    key_name: String,
    /// Swapped for one in memory when its disk fails mid-run
    /// ([`Self::with_cache`]).
    cache: std::sync::RwLock<Arc<IndexCache>>,
    warnings: Vec<String>,
    /// Warnings raised after opening, until a sink takes them.
    late_warnings: std::sync::Mutex<Vec<String>>,
    warning_sink: Option<WarningSink>,
    /// Counts the swaps of `cache`: a holder of a reader takes a new one
    /// when it changed (the old cache's file may be unreadable).
    cache_generation: std::sync::atomic::AtomicU64,
    /// Held while the cache is replaced, so that one thread swaps and the
    /// others wait for the new cache to be complete.
    cache_swap: std::sync::Mutex<()>,
    /// Threads for reads that should overlap (restore, copy): as many as
    /// the backend takes requests at once. Made on first use.
    io_pool: std::sync::OnceLock<std::result::Result<rayon::ThreadPool, String>>,
    /// The index objects the cache knew right after opening...
    indexes_at_open: HashSet<Id>,
    /// ...and those this process wrote since.
    indexes_written: std::sync::Mutex<HashSet<Id>>,
    /// The keys of write-only clients' packs read so far, by pack.
    session_keys: std::sync::Mutex<HashMap<Id, Keys>>,
}

impl Repository {
    /// Problems found while opening that did not stop it (damaged index
    /// objects), one line each, for the caller to show.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Where warnings raised later go (the index cache's disk filling in
    /// the middle of a command), one line each; those raised before are
    /// handed to it at once.
    pub fn set_warning_sink(&mut self, sink: impl Fn(&str) + Send + Sync + 'static) {
        for w in self.take_late_warnings() {
            sink(&w);
        }
        self.warning_sink = Some(Box::new(sink));
    }

    fn take_late_warnings(&self) -> Vec<String> {
        self.late_warnings
            .lock()
            .map(|mut w| std::mem::take(&mut *w))
            .unwrap_or_default()
    }

    fn warn(&self, warning: String) {
        match &self.warning_sink {
            Some(sink) => sink(&warning),
            None => {
                if let Ok(mut w) = self.late_warnings.lock() {
                    w.push(warning);
                }
            }
        }
    }

    /// The master key (for wrapping it under another password); access
    /// denied when a write-only key opened the repository.
    pub fn master_key(&self) -> Result<&MasterKey> {
        self.master.as_ref().ok_or_else(|| {
            Error::new(
                ErrorKind::AccessDenied,
                "a write-only key cannot manage keys",
            )
        })
    }

    /// Opened with a write-only key (only ever inside an `Appender`): it
    /// can add backups (chunks, packs, index objects, snapshots) and read
    /// only the index.
    pub(crate) fn is_write_only(&self) -> bool {
        self.keys.is_write_only()
    }

    /// The name of the key file whose password opened the repository.
    pub fn key_name(&self) -> &str {
        &self.key_name
    }

    /// The storage.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// Runs `f` on the repository's I/O threads, so that the rayon
    /// iterators inside it run as many storage requests at once as the
    /// backend takes ([`Backend::parallel_requests`]), not one per core.
    pub(crate) fn with_io_threads<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        let pool = self.io_pool.get_or_init(|| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(self.backend.parallel_requests().max(1))
                .thread_name(|i| format!("cairn-read-{i}"))
                .build()
                .map_err(|e| e.to_string())
        });
        match pool {
            Ok(pool) => Ok(pool.install(f)),
            Err(e) => Err(Error::new(
                ErrorKind::Io,
                format!("starting the read threads: {e}"),
            )),
        }
    }

    /// The repository ID.
    pub fn id(&self) -> &Id {
        &self.id
    }

    /// Its parameters.
    pub fn config(&self) -> &RepoConfig {
        &self.config
    }

    /// The seed of the chunker's gear table: the config's, when it names
    /// one (`init --copy-chunker-params`), else the one derived from the
    /// master key (`repo-format.md` §3.1, §4.2).
    pub fn chunker_seed(&self) -> u64 {
        self.config
            .chunker
            .seed
            .unwrap_or_else(|| self.keys.chunker_seed())
    }

    /// Its chunker parameters with the seed made explicit: what a new
    /// repository needs to cut data into the same chunks
    /// (`init --copy-chunker-params`).
    pub fn chunker_identity(&self) -> ChunkerParams {
        ChunkerParams {
            seed: Some(self.chunker_seed()),
            ..self.config.chunker
        }
    }

    /// Its working keys.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The index cache.
    pub fn cache(&self) -> Arc<IndexCache> {
        match self.cache.read() {
            Ok(c) => Arc::clone(&c),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Runs `write` on the index cache. When it fails because the cache's
    /// disk is full or failing, the cache becomes one in memory, brought up
    /// to date from the index objects, with a warning, and `write` runs
    /// again there: the repository holds everything a cache holds, so a
    /// command never fails for want of one (`docs/design.md` §7).
    pub(crate) fn with_cache<T>(&self, write: impl Fn(&IndexCache) -> Result<T>) -> Result<T> {
        let cache = self.cache();
        match write(&cache) {
            Err(e) if e.kind() == ErrorKind::LocalCache && !cache.is_in_memory() => {
                self.fall_back_to_memory(cache, &e)?;
                write(&self.cache())
            }
            other => other,
        }
    }

    /// Replaces `failed` (the cache on disk that just failed with `e`) by
    /// one in memory brought up to date from the index objects, once: when
    /// several threads meet the failure, the first swaps, warns and syncs,
    /// the others find it done.
    fn fall_back_to_memory(&self, failed: Arc<IndexCache>, e: &Error) -> Result<()> {
        let _swapping = match self.cache_swap.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if !Arc::ptr_eq(&self.cache(), &failed) {
            return Ok(()); // another thread replaced it, complete
        }
        let dir = failed.path().parent().unwrap_or(Path::new(""));
        self.warn(cache_fallback_warning(dir, e));
        // Complete before anyone sees it: a reader taken from an empty
        // cache would find nothing to deduplicate against.
        let memory = Arc::new(IndexCache::in_memory()?);
        self.sync_into(&memory)?;
        match self.cache.write() {
            Ok(mut c) => *c = memory,
            Err(poisoned) => *poisoned.into_inner() = memory,
        }
        self.cache_generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    /// How many times the cache was replaced by one in memory; a reader
    /// taken before the last change reads a cache that may have failed.
    pub(crate) fn cache_generation(&self) -> u64 {
        self.cache_generation
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// A new reader of the index for one whose lookup failed with `e`:
    /// when the cache's file failed (a full disk), the cache falls back to
    /// memory first ([`Self::with_cache`]). Any other error is returned.
    pub(crate) fn index_after(&self, e: Error) -> Result<CacheReader> {
        if e.kind() != ErrorKind::LocalCache {
            return Err(e);
        }
        let cache = self.cache();
        if !cache.is_in_memory() {
            self.fall_back_to_memory(cache, &e)?;
        }
        self.index()
    }

    /// Brings the index cache up to date with the index objects. When a
    /// prune replaces index objects while they are being read, the listing
    /// is taken again (a few times) until it is stable.
    pub fn sync_index(&self) -> Result<SyncStats> {
        self.with_cache(|c| self.sync_into(c))
    }

    /// [`Self::sync_index`] into `cache`.
    fn sync_into(&self, cache: &IndexCache) -> Result<SyncStats> {
        let mut attempt = 0;
        loop {
            let names: Vec<Id> = self
                .backend
                .list(ObjectKind::Index)?
                .iter()
                .map(|o| Id::parse(&o.name))
                .collect::<Result<_>>()?;
            let stats = cache.sync(&names, |id| self.load_index(id))?;
            attempt += 1;
            if stats.vanished == 0 || attempt >= 5 {
                return Ok(stats);
            }
        }
    }

    /// Reads and decodes index object `id`.
    pub fn load_index(&self, id: &Id) -> Result<Vec<IndexPack>> {
        let name = id.to_hex();
        let bytes = self.backend.get(ObjectKind::Index, &name)?;
        verify_name(ObjectKind::Index, &name, &bytes)?;
        index::decode(&self.keys, &self.id, &bytes, id)
    }

    /// Writes an index object and records it in the cache.
    pub(crate) fn save_index(&self, packs: &[IndexPack]) -> Result<Id> {
        let bytes = index::encode(&self.keys, &self.id, packs)?;
        let id = Id::of_bytes(&bytes);
        self.backend.put(ObjectKind::Index, &id.to_hex(), &bytes)?;
        self.with_cache(|c| c.add_index(&id, packs))?;
        if let Ok(mut written) = self.indexes_written.lock() {
            written.insert(id);
        }
        Ok(id)
    }

    /// The index objects this process wrote.
    pub(crate) fn indexes_written(&self) -> HashSet<Id> {
        self.indexes_written
            .lock()
            .map(|w| w.clone())
            .unwrap_or_default()
    }

    /// Whether the index objects the cache knows now are exactly those it
    /// knew when the repository was opened plus those this process wrote:
    /// then no other process (a prune) changed the index since, and every
    /// lookup made since is still true. Call after [`Self::sync_index`].
    pub(crate) fn index_unchanged_by_others(&self) -> Result<bool> {
        let now = self.cache().known_indexes()?;
        let Ok(written) = self.indexes_written.lock() else {
            return Ok(false);
        };
        Ok(now.len() == self.indexes_at_open.len() + written.len()
            && now
                .iter()
                .all(|id| self.indexes_at_open.contains(id) || written.contains(id)))
    }

    /// Writes `records` as as many index objects as needed, each listing
    /// at most `max_blobs` blobs (a pack is never split, so a pack of more
    /// blobs gets an object of its own); returns how many were written.
    pub(crate) fn save_index_records(
        &self,
        records: Vec<IndexPack>,
        max_blobs: usize,
    ) -> Result<usize> {
        let mut written = 0;
        let mut batch: Vec<IndexPack> = Vec::new();
        let mut blobs = 0usize;
        for p in records {
            if !batch.is_empty() && blobs + p.blobs.len() > max_blobs {
                self.save_index(&batch)?;
                written += 1;
                batch.clear();
                blobs = 0;
            }
            blobs += p.blobs.len();
            batch.push(p);
        }
        if !batch.is_empty() {
            self.save_index(&batch)?;
            written += 1;
        }
        Ok(written)
    }

    /// A read view of the index.
    pub fn index(&self) -> Result<CacheReader> {
        Ok(self
            .cache()
            .reader()?
            .with_session_blobs(self.is_write_only()))
    }

    /// Loads every snapshot, oldest first. Snapshots that cannot be read are
    /// returned beside the good ones (object name and error), so one damaged
    /// snapshot does not hide the others, and callers that must not guess
    /// (`latest`) can refuse.
    pub fn load_snapshots(&self) -> Result<SnapshotList> {
        let now = jiff::Timestamp::now().as_second();
        let (mut good, damaged) = self.read_all(ObjectKind::Snapshot, |info, id, bytes| {
            verify_name(ObjectKind::Snapshot, &info.name, bytes)?;
            let mut snapshot = Snapshot::decode(&self.keys, &self.id, bytes, id)?;
            snapshot.mark_future_dated(info.modified, now);
            Ok(snapshot)
        })?;
        good.sort_by(|a, b| a.time.cmp(&b.time).then(a.id.cmp(&b.id)));
        Ok(SnapshotList { good, damaged })
    }

    /// Lists the objects of `kind` and reads them in parallel, each
    /// decoded by `decode(listing, id, bytes)`: the decoded ones, and the
    /// name and error of each that cannot be read, so that one damaged
    /// object does not hide the others.
    pub(crate) fn read_all<T: Send>(
        &self,
        kind: ObjectKind,
        decode: impl Fn(&crate::backend::ObjectInfo, &Id, &[u8]) -> Result<T> + Sync,
    ) -> Result<(Vec<T>, Damaged)> {
        let names = self.backend.list(kind)?;
        let results: Vec<(String, Result<T>)> = names
            .par_iter()
            .map(|o| {
                let r = Id::parse(&o.name).and_then(|id| {
                    let bytes = self.backend.get(kind, &o.name)?;
                    decode(o, &id, &bytes)
                });
                (o.name.clone(), r)
            })
            .collect();
        // Listed, then gone when read: deleted meanwhile (a `forget` or a
        // prune next to this command) if a new listing agrees. A deleted
        // object is not a damaged one.
        let vanished = results.iter().any(|(_, r)| {
            r.as_ref()
                .is_err_and(|e| e.kind() == ErrorKind::MissingObject)
        });
        let still_listed: HashSet<String> = match vanished {
            true => self
                .backend
                .list(kind)?
                .into_iter()
                .map(|o| o.name)
                .collect(),
            false => HashSet::new(),
        };
        let mut good = Vec::new();
        let mut bad = Vec::new();
        for (name, r) in results {
            match r {
                Ok(t) => good.push(t),
                Err(e) if e.kind() == ErrorKind::MissingObject && !still_listed.contains(&name) => {
                }
                Err(e) => bad.push((name, e)),
            }
        }
        Ok((good, bad))
    }

    /// Writes a snapshot: the commit point of a backup.
    pub fn save_snapshot(&self, snapshot: &Snapshot) -> Result<Id> {
        let bytes = snapshot.encode(&self.keys, &self.id, self.config.compression.level)?;
        let id = Id::of_bytes(&bytes);
        self.backend
            .put(ObjectKind::Snapshot, &id.to_hex(), &bytes)?;
        Ok(id)
    }

    /// Reads one blob through the index, verifying it.
    ///
    /// When the pack the cache names is gone (a prune repacked the blob
    /// elsewhere and deleted it since the cache was last synced), the cache
    /// is brought up to date and the read retried once.
    pub fn read_blob(&self, index: &CacheReader, id: &Id, blob_type: BlobType) -> Result<Vec<u8>> {
        match self.read_blob_once(index, id, blob_type) {
            Err(e) if e.kind() == ErrorKind::MissingObject => {
                self.sync_index()?;
                self.read_blob_once(&self.index()?, id, blob_type)
            }
            other => other,
        }
    }

    /// Reads one blob where `index` says it is, verifying it, without
    /// refreshing the cache on failure (`check` must see what is there).
    pub(crate) fn read_blob_once(
        &self,
        index: &CacheReader,
        id: &Id,
        blob_type: BlobType,
    ) -> Result<Vec<u8>> {
        let loc = index.get(id)?.ok_or_else(|| {
            Error::new(
                ErrorKind::MissingObject,
                format!("{} blob {id} is not in the index", blob_type.name()),
            )
        })?;
        if loc.entry.blob_type != blob_type {
            return Err(Error::corrupt(format!(
                "blob {id} is a {} blob, expected {}",
                loc.entry.blob_type.name(),
                blob_type.name()
            )));
        }
        let mut sealed = self.backend.get_range(
            ObjectKind::Pack,
            &loc.pack_id.to_hex(),
            u64::from(loc.entry.offset),
            u64::from(loc.entry.length),
        )?;
        let keys = self.blob_keys(&loc.pack_id, &loc.entry)?;
        let Some(base_id) = loc.entry.compression.base() else {
            return pack::decode_blob(&keys, &self.id, &loc.entry, &sealed, &loc.pack_id);
        };
        // A delta: its base is read too (stored whole: decode_blob refuses
        // a delta).
        let base = index
            .get(&base_id)?
            .filter(|b| b.entry.blob_type == blob_type)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::MissingObject,
                    format!(
                        "{} blob {base_id}, the base of delta {id}, is not in the index",
                        blob_type.name()
                    ),
                )
            })?;
        let base_sealed = self.backend.get_range(
            ObjectKind::Pack,
            &base.pack_id.to_hex(),
            u64::from(base.entry.offset),
            u64::from(base.entry.length),
        )?;
        let plain = pack::decode_blob(
            &*self.blob_keys(&base.pack_id, &base.entry)?,
            &self.id,
            &base.entry,
            &base_sealed,
            &base.pack_id,
        )
        .map_err(|e| e.context(format!("the base of delta {id}")))?;
        pack::decode_delta_in_place(
            &keys,
            &self.id,
            &loc.entry,
            &mut sealed,
            &loc.pack_id,
            &plain,
        )
    }

    /// Verifies a finished pack from the bytes that will be stored, stores
    /// it, and returns its index record (to be written in an index object).
    pub(crate) fn store_pack(&self, pack: pack::FinishedPack) -> Result<IndexPack> {
        pack::verify(&self.keys, &self.id, &pack)?;
        self.put_pack(pack)
    }

    /// [`Self::store_pack`] for a pack of blobs copied as they were stored
    /// (verified with [`pack::verify_copied`]).
    pub(crate) fn store_copied_pack(&self, pack: pack::FinishedPack) -> Result<IndexPack> {
        pack::verify_copied(&self.keys, &self.id, &pack)?;
        self.put_pack(pack)
    }

    fn put_pack(&self, pack: pack::FinishedPack) -> Result<IndexPack> {
        self.backend
            .put(ObjectKind::Pack, &pack.id.to_hex(), &pack.bytes)
            .map_err(|e| e.context(format!("storing pack {}", pack.id)))?;
        Ok(IndexPack::live(pack.id, pack.entries))
    }

    /// Reads the header and the trailer of a stored pack of `size` bytes
    /// (two small range reads, not the whole pack) and returns its entries.
    pub fn read_pack_trailer(&self, pack_id: &Id, size: u64) -> Result<Vec<BlobEntry>> {
        let name = pack_id.to_hex();
        let what = format!("pack {name}");
        // One read usually covers the trailer: its length is guessed
        // generously and re-read only when it is larger.
        const GUESS: u64 = 64 * 1024;
        if size <= GUESS {
            let bytes = self.backend.get_range(ObjectKind::Pack, &name, 0, size)?;
            return pack::read_trailer(&self.keys, &self.id, &bytes, pack_id).map(|(e, _)| e);
        }
        let head = self.backend.get_range(
            ObjectKind::Pack,
            &name,
            0,
            (pack::PACK_HEAD_LEN as u64).min(size),
        )?;
        let keys =
            pack::pack_keys(&self.keys, &self.id, &head, pack_id).map_err(|e| e.context(&what))?;
        let mut tail = self
            .backend
            .get_range(ObjectKind::Pack, &name, size - GUESS, GUESS)?;
        let tlen = pack::trailer_len(&tail, size, pack_id)?;
        if tlen + 4 > GUESS {
            tail = self
                .backend
                .get_range(ObjectKind::Pack, &name, size - 4 - tlen, tlen + 4)?;
        }
        let entries = pack::open_trailer(&keys, &self.id, &tail, size, pack_id)?;
        pack::check_entry_keys(&entries, &head, pack_id)?;
        Ok(entries)
    }

    /// The keys that open a blob stored at `entry` in pack `pack_id`: the
    /// repository's, or for a blob a write-only client sealed with its
    /// session key, those of its pack's key block (read once per pack and
    /// process: one small range read). A write-only key gets access denied.
    pub(crate) fn blob_keys(&self, pack_id: &Id, entry: &BlobEntry) -> Result<Cow<'_, Keys>> {
        if !entry.session {
            return Ok(Cow::Borrowed(&self.keys));
        }
        let lock = || {
            self.session_keys
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        if let Some(keys) = lock().get(pack_id) {
            return Ok(Cow::Owned(keys.clone()));
        }
        let head = self.backend.get_range(
            ObjectKind::Pack,
            &pack_id.to_hex(),
            0,
            pack::PACK_HEAD_LEN as u64,
        )?;
        if head.get(7) != Some(&format::KEY_SCHEME_SESSION) {
            return Err(Error::corrupt(format!(
                "pack {pack_id} has no key block, but the index says blob {} needs one",
                entry.id
            )));
        }
        let keys = pack::pack_keys(&self.keys, &self.id, &head, pack_id)?.into_owned();
        lock().insert(*pack_id, keys.clone());
        Ok(Cow::Owned(keys))
    }

    /// Loads and checks a tree.
    pub fn load_tree(&self, index: &CacheReader, id: &Id) -> Result<Tree> {
        let bytes = self.read_blob(index, id, BlobType::Tree)?;
        Tree::decode(&bytes).map_err(|e| e.context(format!("tree {id}")))
    }

    /// The chunk IDs of a file node, in order.
    pub fn file_chunks(&self, index: &CacheReader, node: &Node) -> Result<Vec<Id>> {
        if node.content_lists.is_empty() {
            return Ok(node.content.clone());
        }
        let mut ids = Vec::new();
        for list in &node.content_lists {
            let bytes = self.read_blob(index, list, BlobType::ChunkList)?;
            ids.extend(tree::decode_chunk_list(&bytes)?);
        }
        Ok(ids)
    }
}
