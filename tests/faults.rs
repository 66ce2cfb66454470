//! Bad input and faults through the real binary: each gets a clear
//! one-line error, its own exit code, and loses nothing.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{assert_code, fake_dump, pseudo_random, stderr, Env, PASSWORD};

fn one_line(s: &str) {
    let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected a one-line error, got:\n{s}");
}

#[test]
fn wrong_password_exits_12_and_writes_nothing() {
    let env = Env::init();
    env.backup_stdin(b"keep me", &[]);
    let before = env.repo_listing();
    for args in [
        &["snapshots"][..],
        &["backup", "-"],
        &["restore", "latest", "--target", "/tmp/x"],
    ] {
        let out = env
            .cmd()
            .env("CAIRN_PASSWORD", "not the password")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_code(&out, 12, args);
        assert!(stderr(&out).contains("wrong password"), "{}", stderr(&out));
        one_line(&stderr(&out));
    }
    assert_eq!(
        env.repo_listing(),
        before,
        "a wrong password changed the repository"
    );
    // No password at all, not on a terminal: 12 with advice.
    let out = env
        .cmd()
        .env_remove("CAIRN_PASSWORD")
        .args(["snapshots"])
        .output()
        .unwrap();
    assert_code(&out, 12, &["snapshots without password"]);
    assert!(stderr(&out).contains("CAIRN_PASSWORD"));
    // Password from a file and from a command work.
    let pwfile = env.path("pw");
    std::fs::write(&pwfile, format!("{PASSWORD}\n")).unwrap();
    let out = env
        .cmd()
        .env_remove("CAIRN_PASSWORD")
        .env("CAIRN_PASSWORD_FILE", &pwfile)
        .args(["snapshots"])
        .output()
        .unwrap();
    assert_code(&out, 0, &["password file"]);
    let out = env
        .cmd()
        .env_remove("CAIRN_PASSWORD")
        .args([
            "--password-command",
            &format!("echo '{PASSWORD}'"),
            "snapshots",
        ])
        .output()
        .unwrap();
    assert_code(&out, 0, &["password command"]);
}

#[test]
fn missing_repository_and_non_repositories() {
    let env = Env::empty();
    let out = env.run(&["snapshots"]);
    assert_code(&out, 10, &["snapshots on nothing"]);
    one_line(&stderr(&out));
    std::fs::create_dir_all(&env.repo).unwrap();
    std::fs::write(env.repo.join("config"), b"not a cairn config at all").unwrap();
    let out = env.run(&["backup", "-"]);
    assert_code(&out, 10, &["backup into a non-repository"]);
    assert!(
        stderr(&out).contains("not a cairn repository"),
        "{}",
        stderr(&out)
    );
    // init refuses an existing repository.
    let env = Env::init();
    let out = env.run(&["init", "--kdf-memory", "64KiB", "--kdf-iterations", "1"]);
    assert_code(&out, 26, &["init twice"]);
}

#[test]
fn flipped_byte_in_a_pack_fails_restore_naming_the_pack() {
    let env = Env::init();
    let data = pseudo_random(3 << 20, 9);
    let id = env.backup_stdin(&data, &["--stdin-filename", "db.dump"]);
    let packs: Vec<_> = env
        .repo_listing()
        .into_iter()
        .filter(|(p, _)| p.to_string_lossy().contains("/data/"))
        .collect();
    // The largest pack holds the data.
    let (pack, len) = packs.iter().max_by_key(|(_, l)| *l).unwrap().clone();
    let mut bytes = std::fs::read(&pack).unwrap();
    bytes[(len / 2) as usize] ^= 0x20;
    std::fs::write(&pack, &bytes).unwrap();
    let target = env.path("restore");
    let out = env.run(&["restore", &id, "--target", target.to_str().unwrap()]);
    assert_code(&out, 22, &["restore of a corrupt pack"]);
    let err = stderr(&out);
    let pack_name = pack.file_name().unwrap().to_string_lossy().to_string();
    assert!(
        err.contains(&pack_name),
        "error does not name the pack: {err}"
    );
    one_line(&err);
    assert!(
        !target.join("db.dump").exists(),
        "a wrong file was left behind"
    );
    let leftovers: Vec<_> = std::fs::read_dir(&target).unwrap().flatten().collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    // dump refuses too, without writing wrong bytes.
    let out = env.run(&["dump", &id, "db.dump"]);
    assert_code(&out, 22, &["dump of a corrupt pack"]);
    assert!(out.stdout.len() < data.len());
    // Whatever was written before the damaged chunk is verified data.
    assert_eq!(out.stdout[..], data[..out.stdout.len()]);
}

#[test]
fn absurd_kdf_cost_is_refused_fast() {
    let env = Env::init();
    let keys_dir = env.repo.join("keys");
    let key = std::fs::read_dir(&keys_dir)
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&key).unwrap();
    // Memory cost field (u32 LE KiB at offset 9): the largest value, ~4 TiB.
    bytes[9..13].copy_from_slice(&u32::MAX.to_le_bytes());
    std::fs::remove_file(&key).unwrap();
    let name = blake3::hash(&bytes).to_hex().to_string();
    std::fs::write(keys_dir.join(name), &bytes).unwrap();
    let start = Instant::now();
    let out = env.run(&["snapshots"]);
    let took = start.elapsed();
    assert_code(&out, 22, &["open with a planted key file"]);
    assert!(took < Duration::from_millis(900), "took {took:?}");
    let err = stderr(&out);
    assert!(err.contains("KDF") && err.contains("memory"), "{err}");
    one_line(&err);
}

#[test]
fn missing_source_path_is_an_error_and_no_snapshot() {
    let env = Env::init();
    let missing = env.path("no/such/dir");
    let out = env.run(&["backup", missing.to_str().unwrap()]);
    assert_code(&out, 20, &["backup of a missing path"]);
    one_line(&stderr(&out));
    assert!(stderr(&out).contains("does not exist"));
    assert!(env.snapshots().is_empty());
}

#[test]
fn unreadable_file_gives_exit_3_and_a_snapshot_without_it() {
    let env = Env::empty();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("ok.txt"), b"fine").unwrap();
    std::fs::write(src.join("secret.txt"), b"unreadable").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        src.join("secret.txt"),
        std::fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    // Root reads everything: run cairn unprivileged.
    let run = |args: &[&str]| common::unprivileged(&env).args(args).output().unwrap();
    assert_code(
        &run(&["init", "--kdf-memory", "64KiB", "--kdf-iterations", "1"]),
        0,
        &["init"],
    );
    let out = run(&["--json", "backup", src.to_str().unwrap()]);
    assert_code(&out, 3, &["backup with an unreadable file"]);
    assert!(stderr(&out).contains("secret.txt"), "{}", stderr(&out));
    let id = common::snapshot_id(&out);
    let restored = env.path("restored");
    std::fs::create_dir_all(&restored).unwrap();
    std::fs::set_permissions(&restored, std::fs::Permissions::from_mode(0o777)).unwrap();
    assert_code(
        &run(&["restore", &id, "--target", restored.to_str().unwrap()]),
        0,
        &["restore"],
    );
    let inner = restored.join(src.strip_prefix("/").unwrap());
    assert_eq!(std::fs::read(inner.join("ok.txt")).unwrap(), b"fine");
    assert!(!inner.join("secret.txt").exists());
}

#[test]
fn a_repository_the_user_may_not_write_or_read_is_exit_13() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::empty();
    let run = |args: &[&str]| common::unprivileged(&env).args(args).output().unwrap();
    assert_code(
        &run(&["init", "--kdf-memory", "64KiB", "--kdf-iterations", "1"]),
        0,
        &["init"],
    );
    let repo = env.path("repo-unprivileged");
    let chmod_all = |mode: u32| {
        for entry in walk(&repo) {
            if entry.is_dir() {
                std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(mode)).unwrap();
            }
        }
    };
    // Read-only: the backup fails with 13 and writes nothing; reading works.
    chmod_all(0o555);
    let out = common::run_with_stdin(
        common::unprivileged(&env).args(["backup", "-"]),
        b"some data",
    );
    assert_code(&out, 13, &["backup into a read-only repository"]);
    one_line(&stderr(&out));
    assert!(
        stderr(&out).contains("ermission denied"),
        "{}",
        stderr(&out)
    );
    assert_code(
        &run(&["snapshots"]),
        0,
        &["snapshots of a read-only repository"],
    );
    // Unreadable: 13, not "no repository" (10) or "wrong password" (12).
    std::fs::set_permissions(&repo, std::fs::Permissions::from_mode(0o000)).unwrap();
    let out = run(&["snapshots"]);
    assert_code(&out, 13, &["snapshots of an unreadable repository"]);
    one_line(&stderr(&out));
    std::fs::set_permissions(&repo, std::fs::Permissions::from_mode(0o755)).unwrap();
    chmod_all(0o755);
    assert_code(
        &run(&["check"]),
        0,
        &["check after the permissions are back"],
    );
}

/// Every path under `dir`, `dir` included.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.path().is_dir() {
                out.extend(walk(&e.path()));
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

#[test]
fn kill_9_during_backup_loses_nothing() {
    let env = Env::init_with(&["--pack-size", "1MiB"]);
    let old = fake_dump(40_000, 11);
    let old_id = env.backup_stdin(&old, &["--stdin-filename", "db.sql"]);
    let packs_before = env
        .repo_listing()
        .iter()
        .filter(|(p, _)| p.to_string_lossy().contains("/data/"))
        .count();

    // A slow, endless dump: cairn is killed while it is storing packs.
    let mut child = env
        .cmd()
        .args(["backup", "-", "--stdin-filename", "db.sql"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seed = 100;
    loop {
        input.write_all(&pseudo_random(1 << 20, seed)).unwrap();
        seed += 1;
        let packs = env
            .repo_listing()
            .iter()
            .filter(|(p, _)| p.to_string_lossy().contains("/data/"))
            .count();
        if packs >= packs_before + 3 {
            break;
        }
        assert!(Instant::now() < deadline, "backup never stored packs");
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    drop(input);

    // The repository opens, the old snapshot restores byte-identical...
    let snaps = env.snapshots();
    assert_eq!(snaps.len(), 1);
    assert_eq!(env.dump(&old_id, "db.sql"), old);
    // ...and the next backup succeeds.
    let new = fake_dump(40_000, 12);
    let new_id = env.backup_stdin(&new, &["--stdin-filename", "db.sql"]);
    assert_eq!(env.dump(&new_id, "db.sql"), new);
    assert_eq!(env.dump(&old_id, "db.sql"), old);
}

#[test]
fn deleted_cache_is_rebuilt_and_a_stale_one_is_not_trusted() {
    let env = Env::init();
    let a = env.backup_stdin(&fake_dump(10_000, 1), &[]);
    std::fs::remove_dir_all(&env.cache).unwrap();
    assert_eq!(env.dump(&a, "stdin"), fake_dump(10_000, 1));
    // A second, independent cache (another machine) sees the first's backups.
    let other = env.path("other-cache");
    let b = env.backup_stdin(&fake_dump(10_000, 2), &[]);
    let out = env
        .cmd()
        .env("CAIRN_CACHE_DIR", &other)
        .args(["dump", &b, "stdin"])
        .output()
        .unwrap();
    assert_code(&out, 0, &["dump with another cache"]);
    assert_eq!(out.stdout, fake_dump(10_000, 2));
    assert_code(
        &env.run(&["--no-cache", "dump", &a, "stdin"]),
        0,
        &["--no-cache"],
    );
}

/// A tmpfs of a few MiB as the repository: the backup that does not fit
/// fails with exit 23 and a one-line error; nothing older is lost and a
/// backup that fits still works. Needs root (mount); under CI=true a
/// failing mount is an error, elsewhere the test is skipped.
#[test]
fn full_disk_during_backup() {
    let env = Env::empty();
    std::fs::create_dir_all(&env.repo).unwrap();
    let Some(_mounted) = common::mount_tmpfs(&env.repo, "3m", "the disk-full test") else {
        return;
    };
    let mut init = vec!["init", "--pack-size", "1MiB"];
    init.extend(common::FAST_KDF);
    env.ok(&init);
    let small = fake_dump(2_000, 5);
    let kept = env.backup_stdin(&small, &["--stdin-filename", "db.sql"]);
    let out = env.run_stdin(
        &["backup", "-", "--stdin-filename", "db.sql"],
        &pseudo_random(8 << 20, 77),
    );
    assert_code(&out, 23, &["backup into a full repository"]);
    let err = stderr(&out);
    assert!(err.contains("No space left"), "{err}");
    one_line(&err);
    assert_eq!(env.snapshots().len(), 1, "a failed backup made a snapshot");
    assert_eq!(env.dump(&kept, "db.sql"), small);
    let tiny = env.backup_stdin(b"still works", &["--stdin-filename", "t.sql"]);
    assert_eq!(env.dump(&tiny, "t.sql"), b"still works");
}

/// Ctrl-C (SIGINT) or SIGTERM while the dump is still streaming: exit 130,
/// no snapshot, no temporary files left, even when the input pipe has gone
/// silent.
#[test]
fn interrupted_backup_exits_130_and_commits_nothing() {
    for signal in ["-INT", "-TERM"] {
        let env = Env::init_with(&["--pack-size", "1MiB"]);
        let mut child = env
            .cmd()
            .args(["backup", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        for seed in 0..3 {
            input.write_all(&pseudo_random(1 << 20, seed)).unwrap();
        }
        std::thread::sleep(Duration::from_millis(500));
        // The pipe stays open and silent: cairn must not wait for it.
        let killed = Command::new("kill")
            .arg(signal)
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(killed.success());
        let start = Instant::now();
        let out = child.wait_with_output().unwrap();
        assert!(start.elapsed() < Duration::from_secs(10));
        assert_code(&out, 130, &["backup interrupted by", signal]);
        assert!(stderr(&out).contains("interrupted"), "{}", stderr(&out));
        drop(input);
        assert!(env.snapshots().is_empty());
        let temp: Vec<_> = env
            .repo_listing()
            .into_iter()
            .filter(|(p, _)| p.file_name().unwrap().to_string_lossy().starts_with(".tmp"))
            .collect();
        assert!(temp.is_empty(), "temporary files left: {temp:?}");
    }
}
