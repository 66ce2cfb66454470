//! Attacks by a write-only key and by a hostile world (issue 19): each test
//! does the attack against the real binary and checks that nothing is
//! lost, nothing panics and nothing hangs (`docs/design.md` §8).

#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::process::Command;

use cairn_core::backend::{self, ObjectKind};
use cairn_core::format::{self, ObjectType};
use cairn_core::repo::appender::Appender;
use cairn_core::repo::repository::{self, CacheLocation, Repository};
use common::{assert_code, stderr, Env, FAST_KDF};

const WRITER: &str = "writer password";

/// Adds a write-only key with password [`WRITER`].
fn add_writer(env: &Env) {
    let mut args = vec!["key", "add", "--write-only"];
    args.extend(FAST_KDF);
    let out = env
        .cmd()
        .env("CAIRN_NEW_PASSWORD", WRITER)
        .args(&args)
        .output()
        .unwrap();
    assert_code(&out, 0, &args);
}

/// The repository as the library sees it, unlocked to add with `password`: how an
/// attacker holding that key writes whatever objects they like (beneath the
/// [`Appender`], with [`Appender::unguarded`], as code of their own would).
fn unlock(env: &Env, password: &str) -> Appender {
    locked(env)
        .unlock_to_add(password.as_bytes(), &CacheLocation::Temporary)
        .unwrap()
}

/// The repository as the library sees it, unlocked with the full key.
fn unlock_full(env: &Env) -> Repository {
    locked(env)
        .unlock(common::PASSWORD.as_bytes(), &CacheLocation::Temporary)
        .unwrap()
}

fn locked(env: &Env) -> repository::LockedRepository {
    let backend = backend::open(env.repo.to_str().unwrap(), &Default::default()).unwrap();
    repository::locate(backend).unwrap()
}

/// `program pre_args...` running cairn with `env`'s arguments and
/// environment (under `sh -c`, `faketime`, GNU `time`).
fn wrapped(env: &Env, program: &str, pre_args: &[&str]) -> Command {
    let cairn = env.cmd();
    let mut c = Command::new(program);
    c.args(pre_args)
        .arg(cairn.get_program())
        .args(cairn.get_args());
    for (k, v) in cairn.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    c
}

/// Peak resident memory of `cmd` in KiB (GNU time), with its output.
fn peak_kib(env: &Env, args: &[&str]) -> (u64, std::process::Output) {
    let report = env.path("time.txt");
    let time_args = ["-f", "%M", "-o", report.to_str().unwrap()];
    let out = wrapped(env, "/usr/bin/time", &time_args)
        .args(args)
        .output()
        .unwrap();
    let text = std::fs::read_to_string(&report).unwrap();
    let kib = text.trim().lines().last().unwrap().parse().unwrap();
    (kib, out)
}

/// 3. An index object of a few KB whose zstd frame unpacks to 1 GiB: a
///    full key's commands refuse it from its stated size, before setting
///    any memory aside, and go on without it.
#[test]
fn an_index_object_that_unpacks_to_a_gigabyte_is_refused_unread() {
    let env = Env::init();
    let id = env.backup_stdin(&common::fake_dump(2000, 1), &["--stdin-filename", "db.sql"]);
    add_writer(&env);
    let repo = unlock(&env, WRITER);

    // frame: compression 1, raw length, a zstd frame of 1 GiB of zeros.
    const GIB: u64 = 1 << 30;
    let mut framed = vec![1u8];
    framed.extend_from_slice(&GIB.to_le_bytes());
    let mut enc = zstd::stream::Encoder::new(framed, 19).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..1024 {
        enc.write_all(&zeros).unwrap();
    }
    let framed = enc.finish().unwrap();
    assert!(framed.len() < 64 * 1024, "{} bytes", framed.len());
    let h = format::header_with(ObjectType::Index, format::KEY_SCHEME_SESSION);
    let mut object = h.to_vec();
    let ad = format::associated_data(&h, repo.id(), &[]);
    repo.keys()
        .index()
        .seal_into(&ad, &framed, &mut object)
        .unwrap();
    let name = cairn_core::id::Id::of_bytes(&object).to_hex();
    assert!(repo
        .backend()
        .put(ObjectKind::Index, &name, &object)
        .unwrap());

    for args in [
        &["snapshots"][..],
        &["check"],
        &["restore", &id, "--target", "out"],
    ] {
        let mut args = args.to_vec();
        let to = env.path("out");
        if args[0] == "restore" {
            args[3] = to.to_str().unwrap();
        }
        let (kib, out) = peak_kib(&env, &args);
        assert!(kib < 200 * 1024, "{args:?} peaked at {kib} KiB");
        let err = stderr(&out);
        if args[0] == "check" {
            assert!(
                err.contains(&name) && err.contains("exceeds the limit"),
                "{err}"
            );
        } else {
            assert_code(&out, 0, &args);
        }
    }
    assert!(std::fs::read(env.path("out").join("db.sql")).unwrap() == common::fake_dump(2000, 1));
}

/// Runs `cmd`, killing it if it has not finished within `secs` seconds:
/// returns its output, or `None` if it had to be killed.
fn within(mut cmd: Command, secs: u64) -> Option<std::process::Output> {
    // Output goes to files, so that a command printing much cannot block
    // on a full pipe.
    let (out, err) = (tempfile::tempfile().unwrap(), tempfile::tempfile().unwrap());
    let mut child = cmd
        .stdout(out.try_clone().unwrap())
        .stderr(err.try_clone().unwrap())
        .spawn()
        .unwrap();
    let read = |mut f: std::fs::File| {
        use std::io::{Read, Seek};
        let mut v = Vec::new();
        f.seek(std::io::SeekFrom::Start(0)).unwrap();
        f.read_to_end(&mut v).unwrap();
        v
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(std::process::Output {
                status,
                stdout: read(out),
                stderr: read(err),
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

fn mkfifo(path: &std::path::Path) {
    let status = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(status.success());
}

/// 5. A FIFO (or a directory, or a device) planted in place of the config
///    or of a pack: every command fails at once with exit 22 naming it,
///    instead of blocking in `open()` forever.
#[test]
fn a_fifo_in_place_of_the_config_or_a_pack_fails_at_once() {
    let env = Env::init();
    let data = common::fake_dump(3000, 2);
    let id = env.backup_stdin(&data, &["--stdin-filename", "db.sql"]);

    let config = env.repo.join("config");
    let saved = env.path("config.saved");
    std::fs::rename(&config, &saved).unwrap();
    mkfifo(&config);
    let mut c = env.cmd();
    c.arg("snapshots");
    let out = within(c, 30).expect("snapshots blocked on a FIFO config");
    assert_code(&out, 22, &["snapshots with a FIFO config"]);
    assert!(stderr(&out).contains("FIFO"), "{}", stderr(&out));
    std::fs::remove_file(&config).unwrap();
    std::fs::rename(&saved, &config).unwrap();

    let packs: Vec<_> = env
        .repo_listing()
        .into_iter()
        .filter(|(p, _)| p.starts_with(env.repo.join("data")))
        .collect();
    assert!(!packs.is_empty());
    let (pack, _) = &packs[0];
    std::fs::remove_file(pack).unwrap();
    mkfifo(pack);
    let name = pack.file_name().unwrap().to_str().unwrap().to_string();
    for args in [
        vec!["check", "--read-data"],
        vec!["restore", &id, "--target", "out"],
    ] {
        let mut c = env.cmd();
        c.args(&args).current_dir(env.dir.path());
        let out = within(c, 60).unwrap_or_else(|| panic!("{args:?} blocked on a FIFO pack"));
        assert_code(&out, 22, &args);
        assert!(stderr(&out).contains(&name), "{args:?}: {}", stderr(&out));
    }
    // A directory in its place: the same.
    std::fs::remove_file(pack).unwrap();
    std::fs::create_dir(pack).unwrap();
    let out = env.run(&["check", "--read-data"]);
    assert_code(&out, 22, &["check with a directory for a pack"]);
}

/// 10. Under `umask 000` the repository's directories are still 0700 and
///     its objects 0600: no other local user can delete or plant objects.
#[test]
fn repository_directories_are_private_whatever_the_umask() {
    let env = Env::empty();
    let umask = |env: &Env| wrapped(env, "sh", &["-c", "umask 000 && exec \"$0\" \"$@\""]);
    let out = umask(&env).arg("init").args(FAST_KDF).output().unwrap();
    assert_code(&out, 0, &["init under umask 000"]);
    let mut c = umask(&env);
    c.args(["backup", "-", "--stdin-filename", "db.sql"]);
    let out = common::run_with_stdin(&mut c, &common::fake_dump(500, 3));
    assert_code(&out, 0, &["backup under umask 000"]);
    let mut dirs = 0;
    let mut stack = vec![env.repo.clone()];
    while let Some(dir) = stack.pop() {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", dir.display());
        dirs += 1;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                let mode = meta.permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{}", entry.path().display());
            }
        }
    }
    assert!(dirs > 256, "{dirs} directories");
}

/// 10. A snapshot whose deepest path does not fit under the restore target
///     (more than PATH_MAX bytes): restore skips it with a warning, exit 3,
///     and restores everything else.
#[test]
fn restore_skips_paths_longer_than_path_max() {
    let env = Env::init();
    let src = env.path("src");
    let long = "d".repeat(200);
    let mut deep = src.clone();
    for _ in 0..16 {
        deep.push(&long);
    }
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(deep.join("deep.txt"), b"deep").unwrap();
    std::fs::write(src.join("shallow.txt"), b"shallow").unwrap();
    let out = env.run(&["--json", "backup", src.to_str().unwrap()]);
    assert_code(&out, 0, &["backup of a deep tree"]);
    let id = common::snapshot_id(&out);

    // A target 1000 bytes deep: the deep file's path becomes > 4096 bytes.
    let mut target = env.path("t");
    for _ in 0..5 {
        target.push(&long);
    }
    let out = env.run(&["restore", &id, "--target", target.to_str().unwrap()]);
    assert_code(&out, 3, &["restore of a path over PATH_MAX"]);
    let err = stderr(&out);
    assert!(
        err.contains("skipped") && err.contains("the system allows 4095"),
        "{err}"
    );
    let shallow = target
        .join(src.strip_prefix("/").unwrap())
        .join("shallow.txt");
    assert_eq!(std::fs::read(shallow).unwrap(), b"shallow");
}

/// 10. The cache directory on a full file system: commands keep their index
///     cache in memory with a warning; backup, snapshots, check and
///     restore all succeed. Needs root (mount); under CI=true a failing
///     mount is an error, elsewhere the test is skipped.
#[test]
fn a_full_cache_file_system_falls_back_to_a_cache_in_memory() {
    let env = Env::init();
    let first = common::fake_dump(3000, 4);
    let id = env.backup_stdin(&first, &["--stdin-filename", "db.sql"]);
    std::fs::remove_dir_all(&env.cache).unwrap();
    std::fs::create_dir_all(&env.cache).unwrap();
    let Some(_mounted) = common::mount_tmpfs(&env.cache, "1m", "the full-cache test") else {
        return;
    };
    // Fill it.
    let mut fill = std::fs::File::create(env.cache.join("fill")).unwrap();
    let block = vec![0u8; 4096];
    while fill.write_all(&block).is_ok() {}
    drop(fill);

    let second = common::fake_dump(3500, 5);
    let out = env.run_stdin(
        &["--json", "backup", "-", "--stdin-filename", "db.sql"],
        &second,
    );
    assert_code(&out, 0, &["backup with a full cache disk"]);
    assert!(stderr(&out).contains("in memory"), "{}", stderr(&out));
    let new = common::snapshot_id(&out);
    assert_eq!(env.snapshots().len(), 2);
    let out = env.run(&["check", "--read-data"]);
    assert_code(&out, 0, &["check with a full cache disk"]);
    assert_eq!(env.dump(&id, "db.sql"), first);
    assert_eq!(env.dump(&new, "db.sql"), second);
    let to = env.path("out");
    let out = env.run(&["restore", &new, "--target", to.to_str().unwrap()]);
    assert_code(&out, 0, &["restore with a full cache disk"]);
}

/// 10. The cache's file system fills while a backup runs (it had room
///     when the backup opened the repository): the index object is stored,
///     the cache falls back to one in memory with a warning, the backup
///     exits 0 and its snapshot restores. Needs root (mount), as above.
#[test]
fn a_cache_file_system_that_fills_during_a_backup_falls_back_to_memory() {
    use std::process::Stdio;
    let env = Env::init();
    let first = common::fake_dump(3000, 6);
    env.backup_stdin(&first, &["--stdin-filename", "db.sql"]);
    std::fs::remove_dir_all(&env.cache).unwrap();
    std::fs::create_dir_all(&env.cache).unwrap();
    // Above cairn's 64 MiB floor, so the open finds room and keeps its
    // cache on this disk.
    let Some(_mounted) = common::mount_tmpfs(&env.cache, "80m", "the filling-cache test") else {
        return;
    };
    let second = common::fake_dump(40_000, 7);
    let mut child = env
        .cmd()
        .args(["--json", "backup", "-", "--stdin-filename", "db.sql"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // Once the first half is taken in (far more than a pipe holds), the
    // repository is open and its cache synced on the tmpfs.
    let half = second.len() / 2;
    stdin.write_all(&second[..half]).unwrap();
    let cache_files = walk_files(&env.cache);
    assert!(
        cache_files.iter().any(|p| p.ends_with("index.redb")),
        "the backup keeps its cache on the tmpfs: {cache_files:?}"
    );
    let mut fill = std::fs::File::create(env.cache.join("fill")).unwrap();
    let block = vec![0u8; 1 << 16];
    while fill.write_all(&block).is_ok() {}
    drop(fill);
    stdin.write_all(&second[half..]).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert_code(&out, 0, &["backup whose cache disk fills"]);
    assert!(stderr(&out).contains("in memory"), "{}", stderr(&out));
    let new = common::snapshot_id(&out);
    std::fs::remove_file(env.cache.join("fill")).unwrap();
    assert_eq!(env.dump(&new, "db.sql"), second);
    let out = env.run(&["check", "--read-data"]);
    assert_code(&out, 0, &["check after the cache disk filled"]);
}

/// Every file under `dir`.
fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                todo.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

/// A cairn command run as the writer.
fn as_writer(env: &Env) -> Command {
    let mut c = env.cmd();
    c.env("CAIRN_PASSWORD", WRITER);
    c
}

/// 2. A write-only key may not date a backup in the future; a snapshot
///    forged with a future date (a modified client) is reported, never
///    `latest`, takes no place in `forget`'s rules and never satisfies
///    `status --max-age`.
#[test]
fn snapshots_dated_in_the_future_are_refused_reported_and_ignored() {
    use cairn_core::time::SnapshotTime;
    let env = Env::init();
    add_writer(&env);
    let day = 86_400;
    let now = jiff::Timestamp::now().as_second();
    let at = |secs: i64| {
        SnapshotTime::from_timestamp(jiff::Timestamp::from_second(secs).unwrap()).to_rfc3339()
    };
    let mut real = Vec::new();
    for n in 0..3i64 {
        let data = common::fake_dump(1000, 10 + n as u64);
        let time = at(now - (4 - n) * day);
        let args = [
            "--json",
            "backup",
            "-",
            "--stdin-filename",
            "db.sql",
            "--time",
            &time,
        ];
        let out = common::run_with_stdin(as_writer(&env).args(args), &data);
        assert_code(&out, 0, &["writer backup"]);
        real.push((common::snapshot_id(&out), data));
    }

    // Refused: --time a year ahead, by the writer (and by a full key).
    let year = at(now + 365 * day);
    for mut c in [as_writer(&env), env.cmd()] {
        let args = ["backup", "-", "--stdin-filename", "db.sql", "--time", &year];
        let out = common::run_with_stdin(c.args(args), b"forged\n");
        assert_code(&out, 2, &["backup --time a year ahead"]);
        assert!(
            stderr(&out).contains("ahead of this machine's clock"),
            "{}",
            stderr(&out)
        );
    }
    assert_eq!(env.snapshots().len(), 3);

    // A modified client writes one anyway: the newest real snapshot's
    // contents, under the same host and paths, dated a year ahead.
    let full = unlock_full(&env);
    let list = full.load_snapshots().unwrap().good;
    let mut forged = list
        .iter()
        .find(|s| s.id.to_hex() == real[0].0)
        .unwrap()
        .clone();
    forged.time = SnapshotTime::parse_rfc3339(&year).unwrap();
    let forged_id = unlock(&env, WRITER)
        .save_snapshot(&forged)
        .unwrap()
        .to_hex();

    let out = env.run(&["--json", "snapshots"]);
    assert_code(&out, 0, &["snapshots"]);
    assert!(stderr(&out).contains("dated") && stderr(&out).contains(&forged_id[..8]));
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let flagged: Vec<_> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["future_dated"] == true)
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(flagged, vec![forged_id.clone()]);

    // latest is the newest real one.
    let out = env.run(&["dump", "latest", "db.sql"]);
    assert_code(&out, 0, &["dump latest"]);
    assert!(out.stdout == real[2].1, "latest picked the forged snapshot");

    // status: the real newest is 2 days old, so --max-age 1d fails.
    let out = env.run(&["status", "--max-age", "1d"]);
    assert_code(&out, 14, &["status --max-age with a forged snapshot"]);

    // forget --keep-last 1 keeps the newest real one (and the forged one,
    // which only a forget by ID removes).
    let out = env.run(&["--json", "forget", "--keep-last", "1"]);
    assert_code(&out, 0, &["forget --keep-last 1"]);
    let left: Vec<String> = env
        .snapshots()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert!(
        left.contains(&real[2].0),
        "forget removed the newest real snapshot"
    );
    assert!(left.contains(&forged_id));
    assert_eq!(left.len(), 2, "{left:?}");
    env.ok(&["forget", &forged_id]);
    assert_eq!(env.snapshots().len(), 1);
}

/// 4. A tree nested 10,000 deep (a modified client can store one): every
///    command that walks trees finishes without overflowing the stack.
#[test]
fn trees_nested_ten_thousand_deep_crash_nothing() {
    let env = Env::init();
    let full = unlock_full(&env);
    let id = cairn_core::testing::benchgen::deep_tree(&full, 10_000)
        .unwrap()
        .to_hex();
    let offsite = Env::init();
    let other = offsite.repo.clone();
    let runs: Vec<Vec<String>> = vec![
        vec!["find".into(), "deep.txt".into()],
        vec!["ls".into(), id.clone()],
        vec!["check".into(), "--read-data".into()],
        vec!["stats".into(), id.clone()],
        vec!["diff".into(), id.clone(), id.clone()],
        vec!["repair".into(), "snapshots".into()],
        vec![
            "restore".into(),
            id.clone(),
            "--target".into(),
            "out".into(),
        ],
        vec!["copy".into(), "--to".into(), other.to_str().unwrap().into()],
    ];
    for args in runs {
        let mut c = env.cmd();
        c.args(&args)
            .current_dir(env.dir.path())
            .env("CAIRN_PASSWORD2", common::PASSWORD);
        let out = within(c, 300).unwrap_or_else(|| panic!("{args:?} hung"));
        let code = out.status.code();
        eprintln!(
            "{args:?}: {code:?} {}",
            stderr(&out).lines().last().unwrap_or("")
        );
        assert!(
            matches!(code, Some(0 | 3)),
            "{args:?}: {code:?}\n{}",
            stderr(&out)
        );
    }
    // Where 10,000 levels restored, the path limit stopped them.
    let out = env.run(&[
        "restore",
        &id,
        "--target",
        env.path("again").to_str().unwrap(),
    ]);
    assert_code(&out, 3, &["restore of a tree deeper than PATH_MAX"]);

    // 100,000 deep: find (whose output stays small) and check walk it all.
    let deeper = cairn_core::testing::benchgen::deep_tree(&full, 100_000)
        .unwrap()
        .to_hex();
    let mut c = env.cmd();
    c.args(["find", "deep.txt", "--snapshot", &deeper]);
    let out = within(c, 300).expect("find hung");
    assert_code(&out, 0, &["find in a tree 100,000 deep"]);
    let found = String::from_utf8_lossy(&out.stdout);
    let hit = found
        .lines()
        .find(|l| l.ends_with("/deep.txt"))
        .expect("deep.txt not found");
    assert!(hit.len() > 200_000, "{} bytes", hit.len());
    let mut c = env.cmd();
    c.args(["check"]);
    let out = within(c, 300).expect("check hung");
    assert_code(&out, 0, &["check of a tree 100,000 deep"]);
    assert_eq!(offsite.snapshots().len(), 1);
    offsite.ok(&["check", "--read-data"]);
}

/// 4. A tag of 70,000 characters with terminal escapes (stored by a
///    modified client): `snapshots` and `forget` show it cut short and
///    escaped instead of panicking; cairn itself refuses to store one.
#[test]
fn a_huge_tag_neither_panics_nor_reaches_the_terminal() {
    let env = Env::init();
    add_writer(&env);
    let huge = format!("\u{1b}]0;pwned\u{7}{}", "t".repeat(70_000));
    let args = ["backup", "-", "--stdin-filename", "db.sql", "--tag", &huge];
    let out = common::run_with_stdin(as_writer(&env).args(args), b"x\n");
    assert_code(&out, 2, &["backup with a 70,000-byte tag"]);
    assert!(stderr(&out).contains("at most 255"), "{}", stderr(&out));
    let id = env.backup_stdin(b"data\n", &["--stdin-filename", "db.sql"]);

    let full = unlock_full(&env);
    let mut forged = full.load_snapshots().unwrap().good[0].clone();
    forged.tags = vec![huge.clone()];
    unlock(&env, WRITER).save_snapshot(&forged).unwrap();

    for args in [
        &["snapshots"][..],
        &["forget", "--keep-last", "5", "--dry-run"],
    ] {
        let out = env.run(args);
        assert_code(&out, 0, args);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            !text.contains('\u{1b}'),
            "{args:?} printed an escape sequence"
        );
        assert!(text.contains('…'), "{args:?}: {text}");
        assert!(text.len() < 10_000, "{args:?} printed {} bytes", text.len());
    }
    let out = env.run(&["--json", "snapshots"]);
    assert_code(&out, 0, &["snapshots --json"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&"t".repeat(70_000)));
    assert_eq!(env.dump(&id, "db.sql"), b"data\n");
}

/// 7. Snapshots deleted by a `forget` running next to `snapshots` (listed,
///    then gone when read) are not damage: `snapshots` never exits 22.
#[test]
fn snapshots_deleted_by_a_concurrent_forget_are_not_damage() {
    use cairn_core::time::SnapshotTime;
    let env = Env::init();
    env.backup_stdin(b"data\n", &["--stdin-filename", "db.sql"]);
    let full = unlock_full(&env);
    let first = full.load_snapshots().unwrap().good[0].clone();
    let start = first.time.timestamp().as_second();
    for n in 1..600 {
        let mut s = first.clone();
        let t = jiff::Timestamp::from_second(start - n * 3600).unwrap();
        s.time = SnapshotTime::from_timestamp(t);
        full.save_snapshot(&s).unwrap();
    }
    let mut forget = env.cmd();
    let mut forget = forget
        .args(["forget", "--keep-last", "1"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut runs = 0;
    loop {
        let done = forget.try_wait().unwrap().is_some();
        let out = env.run(&["-q", "snapshots"]);
        assert_code(&out, 0, &["snapshots next to forget"]);
        runs += 1;
        if done {
            break;
        }
    }
    assert!(forget.wait().unwrap().success());
    assert!(runs > 1, "forget finished before snapshots ran twice");
    assert_eq!(env.snapshots().len(), 1);
}

/// The pack files under `data/`.
fn pack_files(env: &Env) -> std::collections::BTreeSet<std::path::PathBuf> {
    env.repo_listing()
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| p.starts_with(env.repo.join("data")))
        .collect()
}

/// 7. A prune interrupted after deleting a delta's base pack but before
///    the delta's own (both awaiting deletion, no snapshot left): `check
///    --read-data` reports no damage, since nothing needs those deltas.
#[test]
fn deltas_awaiting_deletion_without_their_base_are_no_damage() {
    let env = Env::init();
    let night1 = common::fake_dump(20_000, 4);
    let mut night2 = night1.clone();
    let mid = night2.len() / 2;
    night2[mid..mid + 6].copy_from_slice(b"EDITED");
    let first = env.backup_stdin(&night1, &["--stdin-filename", "db.sql"]);
    let bases = pack_files(&env);
    let second = env.backup_stdin(&night2, &["--stdin-filename", "db.sql"]);
    assert!(env.delta_bases_stored(&second) > 0, "no delta was stored");
    env.ok(&["forget", &first, &second]);
    env.ok(&["prune"]);
    // Both nights' packs are now obsolete (deleted a day later). A later
    // prune deletes the first night's, holding the bases, and is killed.
    for p in &bases {
        std::fs::remove_file(p).unwrap();
    }
    for args in [&["check"][..], &["check", "--read-data"]] {
        let out = env.run(args);
        assert_code(&out, 0, args);
    }
}

/// 9. Object storage answering every request with a bare 503: the error
///    names the HTTP status (not "Unexpected"), and `-v` shows each retry.
#[test]
fn a_503_from_object_storage_is_named_and_retries_are_shown_with_v() {
    use std::io::{BufRead, BufReader};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                loop {
                    // One request: headers up to the empty line.
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let answer = "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n";
                    if stream.write_all(answer.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    let mut env = Env::empty();
    env.location = Some(format!("s3:http://127.0.0.1:{port}/bucket"));
    let out = env
        .cmd()
        .args(["-v", "snapshots"])
        .env("AWS_ACCESS_KEY_ID", "id")
        .env("AWS_SECRET_ACCESS_KEY", "secret")
        .output()
        .unwrap();
    assert_code(&out, 1, &["snapshots against a 503"]);
    let err = stderr(&out);
    let last = err.lines().last().unwrap();
    assert!(
        last.contains("reading config: the storage answered HTTP 503 Service Unavailable"),
        "{err}"
    );
    let retries = err.lines().filter(|l| l.contains("retry")).count();
    assert_eq!(retries, 5, "{err}");
}

/// 1. A full key's snapshot whose packs prune has marked obsolete (a
///    backup committed next to a prune) while a write-only key stores
///    garbage under the same blob IDs in a pack in use: prune claims the
///    full key's copies (reviving their packs), never the writer's, and
///    the snapshot survives even a prune with `--grace 0`.
#[test]
fn a_writers_copy_never_outranks_a_full_keys_in_prune() {
    let env = Env::init();
    add_writer(&env);
    let data = common::fake_dump(5000, 21);
    let id = env.backup_stdin(&data, &["--stdin-filename", "db.sql"]);
    // The race, replayed: forget and prune mark the snapshot's packs
    // obsolete, and the snapshot (committed meanwhile) is there after all.
    let snap = env.repo.join("snapshots").join(&id);
    let saved = std::fs::read(&snap).unwrap();
    env.ok(&["forget", &id]);
    env.ok(&["prune"]);
    std::fs::write(&snap, &saved).unwrap();

    // The writer plants garbage under every data blob ID it can see.
    let writer = unlock(&env, WRITER);
    let ids = data_blob_ids(writer.unguarded());
    assert!(!ids.is_empty());
    cairn_core::testing::benchgen::plant_garbage(writer.unguarded(), &ids, 0).unwrap();

    for args in [&["prune"][..], &["prune", "--grace", "0"]] {
        env.ok(args);
        assert!(
            env.dump(&id, "db.sql") == data,
            "{args:?} lost the snapshot's data"
        );
    }
    env.ok(&["check", "--read-data"]);
}

/// `faketime`, or `None` (and a failure under CI=true) without it.
fn faketime() -> Option<&'static str> {
    let found = Command::new("faketime")
        .args(["-f", "+0", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(!common::in_ci(), "CI=true but faketime is not installed");
        eprintln!("SKIPPED: faketime is not installed");
        return None;
    }
    Some("faketime")
}

/// 6. A prune on a machine whose clock runs ahead of the storage
///    by more than the grace period (file times are the storage's clock)
///    would take a running backup's unindexed packs for leftovers: it
///    refuses before deleting anything.
#[test]
fn prune_refuses_to_run_on_a_clock_ahead_of_the_storage() {
    let Some(faketime) = faketime() else { return };
    let env = Env::init_with(&["--pack-size", "1MiB"]);
    let data = common::pseudo_random(3 << 20, 6);
    let id = env.backup_stdin(&data, &["--stdin-filename", "db.bin"]);
    // A backup that crashed after storing packs, before indexing them:
    // what a running backup's packs look like too.
    let before = pack_files(&env);
    let stray = pack_files(&env).into_iter().next().unwrap();
    let copy = stray.with_file_name(format!("{:0>64}", "1"));
    std::fs::copy(&stray, &copy).unwrap();

    // Ahead by more than the grace period (24 h), so that the leftover
    // looks old enough to delete.
    let out = wrapped(&env, faketime, &["-f", "+25h"])
        .arg("prune")
        .output()
        .unwrap();
    assert_code(&out, 1, &["prune with a clock 25 hours ahead"]);
    assert!(
        stderr(&out).contains("ahead of the storage"),
        "{}",
        stderr(&out)
    );
    let mut after = before.clone();
    after.insert(copy.clone());
    assert_eq!(pack_files(&env), after, "a skewed prune deleted packs");
    assert!(env.dump(&id, "db.bin") == data);
    env.ok(&["prune"]);
    assert!(env.dump(&id, "db.bin") == data);
}

/// 6. A backup whose new packs are deleted before its snapshot lands (a
///    skewed prune elsewhere, a snapshot written very late): it withdraws
///    the snapshot and fails with exit 11 instead of reporting success.
#[test]
fn a_backup_whose_packs_vanished_before_the_commit_fails() {
    let env = Env::init_with(&["--pack-size", "1MiB"]);
    let source = env.path("big.bin");
    std::fs::write(&source, common::pseudo_random(4 << 20, 9)).unwrap();
    let before = pack_files(&env);
    let command = format!("cat {} && sleep 3", source.display());
    let child = env
        .cmd()
        .args([
            "backup",
            "--command",
            &command,
            "--stdin-filename",
            "big.bin",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Once the data is stored (the command still sleeping: no new pack
    // for half a second), its packs go.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut seen = 0;
    let mut stable_since = std::time::Instant::now();
    while std::time::Instant::now() < deadline {
        let now = pack_files(&env).difference(&before).count();
        if now != seen {
            (seen, stable_since) = (now, std::time::Instant::now());
        } else if seen >= 3 && stable_since.elapsed() > std::time::Duration::from_millis(500) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(seen >= 3, "only {seen} packs appeared");
    for p in pack_files(&env).difference(&before) {
        std::fs::remove_file(p).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert_code(&out, 11, &["backup whose packs were deleted"]);
    assert!(stderr(&out).contains("withdrawn"), "{}", stderr(&out));
    assert!(
        env.snapshots().is_empty(),
        "a snapshot that cannot be restored was left"
    );
}

/// Every data blob ID the index lists (a write-only key can read it).
fn data_blob_ids(repo: &Repository) -> Vec<cairn_core::id::Id> {
    let mut ids = Vec::new();
    for info in repo.backend().list(ObjectKind::Index).unwrap() {
        let index_id = cairn_core::id::Id::parse(&info.name).unwrap();
        for p in repo.load_index(&index_id).unwrap() {
            ids.extend(
                p.blobs
                    .iter()
                    .filter(|b| b.blob_type == cairn_core::format::pack::BlobType::Data)
                    .map(|b| b.id),
            );
        }
    }
    ids
}

/// 1. Two copies of a write-only key's blobs, the real one and garbage a
///    compromised writer stored under the same IDs in a pack that sorts
///    first: prune checks the writer copy it would keep, passes over the
///    garbage, and the writer's snapshot survives `prune --grace 0`.
#[test]
fn prune_checks_the_writer_copy_it_keeps_instead_of_another() {
    let env = Env::init_with(&["--no-delta"]);
    add_writer(&env);
    let data = common::fake_dump(4000, 31);
    let args = ["--json", "backup", "-", "--stdin-filename", "db.sql"];
    let out = common::run_with_stdin(as_writer(&env).args(args), &data);
    assert_code(&out, 0, &["writer backup"]);
    let id = common::snapshot_id(&out);
    let writer = unlock(&env, WRITER);
    let ids = data_blob_ids(writer.unguarded());
    let real: Vec<String> = pack_files(&env)
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap().to_string())
        .collect();
    let lowest = real.iter().min().unwrap().clone();
    // Packs are made until one sorts first (about 1/share of the name
    // space below the lowest real pack; 200 stored tries failed one run
    // in about a hundred).
    let planted = cairn_core::testing::benchgen::plant_garbage_before(
        writer.unguarded(),
        &ids,
        &lowest,
        1_000_000,
    )
    .unwrap();
    assert!(planted.is_some(), "no garbage pack sorted before {lowest}");
    let out = env.run(&["prune", "--grace", "0"]);
    assert_code(&out, 0, &["prune --grace 0"]);
    assert!(
        env.dump(&id, "db.sql") == data,
        "prune kept the garbage copy"
    );
    env.ok(&["check", "--read-data"]);
}

/// The second wall: beneath a write-only key's `Appender` (reached as code
/// of the attacker's own would, with the key material), the repository
/// itself refuses every read, so the type is not the only guard.
#[test]
fn beneath_a_write_only_appender_the_repository_refuses_reads() {
    let env = Env::init();
    let id = env.backup_stdin(&common::fake_dump(2000, 3), &["--stdin-filename", "db.sql"]);
    add_writer(&env);
    let full = unlock_full(&env);
    let list = full.load_snapshots().unwrap();
    let snap = list.resolve(&id, &Default::default()).unwrap().clone();
    drop(full);

    let writer = unlock(&env, WRITER);
    assert!(writer.is_write_only());
    let beneath = writer.unguarded();
    let seen = beneath.load_snapshots().unwrap();
    assert!(seen.good.is_empty(), "a write-only key read a snapshot");
    assert_eq!(seen.damaged.len(), 1);
    let index = beneath.index().unwrap();
    let tree = beneath.read_blob(&index, &snap.tree, format::pack::BlobType::Tree);
    assert!(tree.is_err(), "a write-only key read a tree");
    let err = beneath.master_key().err().unwrap();
    assert_eq!(err.kind(), cairn_core::ErrorKind::AccessDenied, "{err}");
}
