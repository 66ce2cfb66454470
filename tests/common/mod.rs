//! Helpers for end-to-end tests of the real `cairn` binary.

#![allow(dead_code, clippy::unwrap_used)]

pub mod azurite;
pub mod garage;
pub mod pg;
pub mod s3;
pub mod sftp;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

pub const PASSWORD: &str = "correct horse battery staple";

/// A scratch directory with a repository path and a cache directory.
pub struct Env {
    pub dir: TempDir,
    pub repo: PathBuf,
    pub cache: PathBuf,
    /// A repository location other than the `repo` directory (`s3:...`).
    pub location: Option<String>,
    /// Extra environment for every run (credentials).
    pub vars: Vec<(String, String)>,
    /// Every run is as the PostgreSQL server's user (see `as_postgres`).
    pub as_postgres: bool,
}

/// Fast key derivation for tests; real repositories use the defaults.
pub const FAST_KDF: [&str; 4] = ["--kdf-memory", "64KiB", "--kdf-iterations", "1"];

impl Env {
    /// A scratch directory without a repository.
    pub fn empty() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        let cache = dir.path().join("cache");
        Env {
            dir,
            repo,
            cache,
            location: None,
            vars: Vec::new(),
            as_postgres: false,
        }
    }

    /// A scratch directory without a repository, whose commands all run
    /// as `postgres` when we are root (CI), the way the guide says to
    /// run cairn next to PostgreSQL: root reads and writes everything,
    /// which hides permission bugs. The directory is given to `postgres`.
    pub fn empty_as_postgres() -> Env {
        let mut env = Env::empty();
        if is_root() {
            let out = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(env.dir.path())
                .output()
                .unwrap();
            assert!(out.status.success(), "chown: {out:?}");
        }
        env.as_postgres = true;
        env
    }

    /// A scratch directory (for the cache) with a repository initialised
    /// at `location`, reached with the environment `vars`.
    pub fn init_at(location: &str, vars: &[(&str, &str)], extra: &[&str]) -> Env {
        let mut env = Env::empty();
        env.location = Some(location.to_string());
        env.vars = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut args = vec!["init"];
        args.extend(FAST_KDF);
        args.extend(extra);
        env.ok(&args);
        env
    }

    /// Like `init`, every command as the server's user (`empty_as_postgres`).
    pub fn init_as_postgres() -> Env {
        let env = Env::empty_as_postgres();
        let mut args = vec!["init"];
        args.extend(FAST_KDF);
        env.ok(&args);
        env
    }

    /// A scratch directory with an initialised repository.
    pub fn init() -> Env {
        Self::init_with(&[])
    }

    /// Like `init`, with extra `init` options.
    pub fn init_with(extra: &[&str]) -> Env {
        let env = Env::empty();
        let mut args = vec!["init"];
        args.extend(FAST_KDF);
        args.extend(extra);
        env.ok(&args);
        env
    }

    /// A path inside the scratch directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `cairn -r REPO` with the test password and cache, and no inherited
    /// CAIRN_* settings.
    pub fn cmd(&self) -> Command {
        match &self.location {
            Some(l) => self.cmd_at(l),
            None => self.cmd_at(&self.repo.display().to_string()),
        }
    }

    /// Like `cmd`, on another repository location.
    pub fn cmd_at(&self, location: &str) -> Command {
        let exe = env!("CARGO_BIN_EXE_cairn");
        let mut c = if self.as_postgres && is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", exe]);
            c
        } else {
            Command::new(exe)
        };
        if self.as_postgres {
            c.env("HOME", self.dir.path());
        }
        for (k, _) in std::env::vars() {
            if k.starts_with("CAIRN_") {
                c.env_remove(k);
            }
        }
        c.arg("-r").arg(location);
        c.envs(self.vars.iter().map(|(k, v)| (k, v)))
            .env("CAIRN_PASSWORD", PASSWORD)
            .env("CAIRN_CACHE_DIR", &self.cache)
            .stdin(Stdio::null());
        c
    }

    /// Runs cairn with `args`; returns the output whatever the exit code.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// Runs cairn with `stdin` as standard input.
    pub fn run_stdin(&self, args: &[&str], stdin: &[u8]) -> Output {
        run_with_stdin(self.cmd().args(args), stdin)
    }

    /// Runs cairn and insists on exit 0; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_code(&out, 0, args);
        String::from_utf8(out.stdout).unwrap()
    }

    /// Backs up `data` from stdin; returns the snapshot ID.
    pub fn backup_stdin(&self, data: &[u8], extra: &[&str]) -> String {
        let mut args = vec!["--json", "backup", "-"];
        args.extend(extra);
        let out = self.run_stdin(&args, data);
        assert_code(&out, 0, &args);
        snapshot_id(&out)
    }

    /// `snapshots --json`.
    pub fn snapshots(&self) -> Vec<Value> {
        let out = self.ok(&["--json", "snapshots"]);
        match serde_json::from_str(&out).unwrap() {
            Value::Array(a) => a,
            other => panic!("snapshots --json is not an array: {other}"),
        }
    }

    /// `stats SNAPSHOT --json`'s `delta_bases_stored`: the stored bytes of
    /// the bases its deltas need that it does not hold itself (0 when all
    /// its chunks are stored whole).
    pub fn delta_bases_stored(&self, snapshot: &str) -> u64 {
        let out = self.ok(&["--json", "stats", snapshot]);
        let stats: Value = serde_json::from_str(&out).unwrap();
        stats["delta_bases_stored"]
            .as_u64()
            .unwrap_or_else(|| panic!("no delta_bases_stored in {stats}"))
    }

    /// `dump SNAPSHOT FILE` to memory.
    pub fn dump(&self, snapshot: &str, file: &str) -> Vec<u8> {
        let out = self.run(&["dump", snapshot, file]);
        assert_code(&out, 0, &["dump", snapshot, file]);
        out.stdout
    }

    /// Every file under the repository, with its size.
    pub fn repo_listing(&self) -> Vec<(PathBuf, u64)> {
        let mut out = Vec::new();
        walk(&self.repo, &mut out);
        out.sort();
        out
    }
}

fn walk(dir: &Path, out: &mut Vec<(PathBuf, u64)>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        // A running cairn (tests poll while one writes) removes its
        // temporary files between the listing and the stat.
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if m.is_dir() {
            walk(&p, out);
        } else {
            out.push((p, m.len()));
        }
    }
}

pub fn run_with_stdin(cmd: &mut Command, stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

/// Asserts the exit code, printing stdout and stderr otherwise.
pub fn assert_code(out: &Output, code: i32, what: &[&str]) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "cairn {what:?}: expected exit {code}, got {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The snapshot ID from `backup --json` output.
pub fn snapshot_id(out: &Output) -> String {
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "backup --json output is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    v["snapshot_id"].as_str().unwrap().to_string()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A command's stdout as text.
#[allow(dead_code)]
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Deterministic pseudo-random bytes (xorshift), so tests need no RNG crate.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A dump-like text: `rows` lines of an SQL COPY block.
pub fn fake_dump(rows: usize, seed: u64) -> Vec<u8> {
    let mut s = String::from(
        "-- test data shaped like a pg_dump (not one: no validation applies)\nCOPY public.orders (id, customer, total, note) FROM stdin;\n",
    );
    let mut x = seed | 1;
    for i in 0..rows {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.push_str(&format!(
            "{i}\tcustomer-{}\t{}.{:02}\tnote {:x}\n",
            x % 10_000,
            x % 1000,
            x % 100,
            x
        ));
    }
    s.push_str("\\.\n\n-- end of test data\n");
    s.into_bytes()
}

/// Are we root? (Permission tests then run cairn as `nobody`.)
pub fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

/// A program installed on PATH or by `cargo install` (~/.cargo/bin).
pub fn find_installed(name: &str) -> Option<PathBuf> {
    let mut candidates = vec![];
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join(name)));
    }
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(PathBuf::from(home).join(".cargo/bin").join(name));
    }
    candidates.into_iter().find(|p| p.is_file())
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// When CI=true a missing service is a failure, never a skip.
pub fn in_ci() -> bool {
    std::env::var("CI")
        .map(|v| v == "true" || v == "1")
        .unwrap_or(false)
}

/// `cairn` as an unprivileged user: as root, through `setpriv` as
/// `nobody` (root reads and writes everything, which hides permission
/// bugs); otherwise as ourselves. The scratch directory is opened up so
/// that `nobody` can use it.
pub fn unprivileged(env: &Env) -> Command {
    use std::os::unix::fs::PermissionsExt;
    let mut c = if is_root() {
        std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(env!("CARGO_BIN_EXE_cairn"));
        c
    } else {
        Command::new(env!("CARGO_BIN_EXE_cairn"))
    };
    for (k, _) in std::env::vars() {
        if k.starts_with("CAIRN_") {
            c.env_remove(k);
        }
    }
    c.arg("-r")
        .arg(env.path("repo-unprivileged"))
        .env("CAIRN_PASSWORD", PASSWORD)
        .env("CAIRN_CACHE_DIR", env.path("cache-unprivileged"))
        .env("HOME", env.dir.path())
        .stdin(Stdio::null());
    c
}

/// Makes the repository of [`unprivileged`] and backs up `src` into it,
/// both as `nobody` when root; returns the snapshot's ID.
#[allow(dead_code)]
pub fn unprivileged_backup(env: &Env, src: &std::path::Path) -> String {
    let run = |args: &[&str]| unprivileged(env).args(args).output().unwrap();
    let mut init = vec!["init"];
    init.extend(FAST_KDF);
    assert_code(&run(&init), 0, &["init"]);
    let out = run(&["--json", "backup", src.to_str().unwrap()]);
    assert_code(&out, 0, &["backup"]);
    snapshot_id(&out)
}

/// Starts `cmd` again and again, killing it (SIGKILL) after a delay that
/// grows by `step` each time, until a run finishes on its own (which must
/// succeed). `after` runs after every attempt, killed or not, to check
/// that nothing was lost. Returns how many runs were killed.
pub fn kill_until_done(
    mut cmd: impl FnMut() -> Command,
    first: std::time::Duration,
    step: std::time::Duration,
    mut after: impl FnMut(),
) -> usize {
    let mut delay = first;
    let mut kills = 0;
    loop {
        let mut child = cmd()
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let start = std::time::Instant::now();
        let finished = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break Some(st);
            }
            if start.elapsed() >= delay {
                child.kill().unwrap();
                child.wait().unwrap();
                break None;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        };
        after();
        match finished {
            Some(st) => {
                assert!(st.success(), "the last, uninterrupted run failed: {st}");
                return kills;
            }
            None => kills += 1,
        }
        delay += step;
        assert!(kills < 2000, "the command never finished");
    }
}

/// A tmpfs mounted by [`mount_tmpfs`], unmounted when dropped.
pub struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = as_root("umount").arg(&self.0).output();
    }
}

/// `program` run as root: itself when the tests run as root, else through
/// `sudo -n` (a non-root user with passwordless sudo, as on a developer's
/// machine or a CI runner that is not root).
fn as_root(program: &str) -> Command {
    if is_root() {
        Command::new(program)
    } else {
        let mut c = Command::new("sudo");
        c.args(["-n", program]);
        c
    }
}

/// Mounts a tmpfs of `size` (`3m`) on the directory `dir`, for a test of a
/// full file system (`what`), owned by the user the tests run as. Needs
/// root or passwordless sudo: under CI=true a failing mount is an error
/// saying why, elsewhere `None` (the test is skipped, saying why).
pub fn mount_tmpfs(dir: &Path, size: &str, what: &str) -> Option<Mounted> {
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(dir)
        .map(|m| (m.uid(), m.gid()))
        .unwrap_or((0, 0));
    let options = format!("size={size},uid={},gid={},mode=0700", owner.0, owner.1);
    let why = match as_root("mount")
        .args(["-t", "tmpfs", "-o", &options, "tmpfs"])
        .arg(dir)
        .output()
    {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(String::from_utf8_lossy(&o.stderr).trim().to_string()),
        Err(e) => Some(e.to_string()),
    };
    if let Some(why) = why {
        let how = if is_root() { "mount" } else { "sudo -n mount" };
        assert!(
            !in_ci(),
            "CI=true but a tmpfs cannot be mounted for {what} ({how}: {why}); the test needs root or passwordless sudo"
        );
        eprintln!("SKIPPED: {what}: cannot mount a tmpfs ({how}: {why})");
        return None;
    }
    Some(Mounted(dir.to_path_buf()))
}

/// Four nightly dumps and a directory on a remote repository: each
/// restores, forget + prune keep the rest whole, and check (also with
/// `--read-data` and without the cache) finds nothing. `log` is the
/// server's log, for failure messages.
pub fn nightly_round(env: &Env, log: &dyn Fn() -> String) {
    let mut nights = Vec::new();
    for n in 0..4u64 {
        let mut dump = fake_dump(25_000, 100 * (n + 1));
        dump.extend(pseudo_random(300_000, 500 * (n + 1)));
        let id = env.backup_stdin(&dump, &["--stdin-filename", "shop.sql"]);
        nights.push((id, dump));
    }
    assert_eq!(env.snapshots().len(), 4);
    for (id, dump) in &nights {
        assert_eq!(&env.dump(id, "shop.sql"), dump, "{}", log());
    }
    // A directory, restored.
    let src = env.path("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("a.txt"), b"alpha").unwrap();
    std::fs::write(src.join("sub/b.bin"), pseudo_random(70_000, 9)).unwrap();
    env.ok(&["backup", src.to_str().unwrap()]);
    let target = env.path("restored");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    let inner = target.join(src.strip_prefix("/").unwrap());
    assert_eq!(std::fs::read(inner.join("a.txt")).unwrap(), b"alpha");
    assert_eq!(
        std::fs::read(inner.join("sub/b.bin")).unwrap(),
        pseudo_random(70_000, 9)
    );

    env.ok(&["forget", &nights[0].0, &nights[1].0]);
    env.ok(&["prune", "--grace", "0", "--max-unused", "0"]);
    env.ok(&["check", "--read-data"]);
    for (id, dump) in &nights[2..] {
        assert_eq!(&env.dump(id, "shop.sql"), dump);
    }
    // Without the local cache too.
    let out = env.ok(&["--no-cache", "check"]);
    assert!(out.contains("no errors"), "{out}");
}

/// A backup of 40 MiB from stdin, fed slowly enough to be interrupted.
pub fn long_backup(env: &Env) -> (Child, std::thread::JoinHandle<()>) {
    let mut child = env
        .cmd()
        .args(["backup", "-", "--stdin-filename", "db.sql"])
        .env("CAIRN_CONNECTIONS", "2")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        for seed in 0..40u64 {
            if input
                .write_all(&pseudo_random(1 << 20, 1000 + seed))
                .is_err()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    (child, writer)
}

/// Files under `dir`, recursively.
pub fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// After a backup that failed because the storage went away, and the
/// storage is back: only the earlier snapshot is there and restores,
/// check reads every blob, and a new backup works.
pub fn nothing_lost_after_an_outage(env: &Env, old_id: &str, old: &[u8]) {
    assert_eq!(env.snapshots().len(), 1, "a failed backup left a snapshot");
    assert_eq!(env.dump(old_id, "db.sql"), old);
    env.ok(&["check", "--read-data"]);
    let new = pseudo_random(3 << 20, 77);
    let new_id = env.backup_stdin(&new, &["--stdin-filename", "db.sql"]);
    assert_eq!(env.dump(&new_id, "db.sql"), new);
}

/// Starts a test server with stdin closed and its output to the file
/// `log`.
pub fn spawn_logged(cmd: &mut Command, log: &Path) -> Child {
    let log = std::fs::File::create(log).unwrap();
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// Waits until something listens on 127.0.0.1:`port`, at most `secs`.
pub fn wait_for_port(port: u16, secs: u64, what: &str, log: &dyn Fn() -> String) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} did not start: {}",
            log()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Waits for a backup started by [`long_backup`] whose storage went away:
/// it fails, within two minutes, in at most three lines and no panic.
pub fn fails_cleanly(child: std::process::Child, writer: std::thread::JoinHandle<()>) {
    let start = std::time::Instant::now();
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    let err = stderr(&out);
    eprintln!("{err}");
    assert!(
        !out.status.success(),
        "backup succeeded with the storage down"
    );
    assert!(
        !err.contains("panicked") && err.trim_end().lines().count() <= 3,
        "{err}"
    );
    assert!(
        start.elapsed() < std::time::Duration::from_secs(120),
        "gave up too slowly"
    );
}
