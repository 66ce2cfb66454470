//! Regression tests, each named after the bug it covers (found in review).

#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{assert_code, fake_dump, stderr, unprivileged, Env, FAST_KDF, PASSWORD};

fn flip_byte(path: &std::path::Path) {
    let mut b = fs::read(path).unwrap();
    let i = b.len() / 2;
    b[i] ^= 0x01;
    fs::write(path, b).unwrap();
}

fn only_file_in(dir: &std::path::Path) -> std::path::PathBuf {
    let mut files: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    files.pop().unwrap()
}

/// `dump latest` once printed the previous night's dump, exit 0, when the
/// newest snapshot object was damaged.
#[test]
fn latest_refuses_to_guess_when_a_snapshot_is_damaged() {
    let env = Env::init();
    let old = env.backup_stdin(b"old", &["--time", "2026-01-01 03:00:00"]);
    let new = env.backup_stdin(b"new", &["--time", "2026-01-02 03:00:00"]);
    flip_byte(&env.repo.join("snapshots").join(&new));
    let out = env.run(&["dump", "latest", "stdin"]);
    assert_code(&out, 22, &["dump latest with a damaged newest snapshot"]);
    assert!(stderr(&out).contains(&new[..8]), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    assert_code(
        &env.run(&["dump", &new[..12], "stdin"]),
        22,
        &["damaged by prefix"],
    );
    // The intact one is still reachable by ID, and listing shows it (exit 22: damage).
    assert_eq!(env.dump(&old, "stdin"), b"old");
    let out = env.run(&["snapshots"]);
    assert_code(&out, 22, &["snapshots with a damaged one"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&old[..8]));
    // A policy over an incomplete list is refused; forgetting the damaged one by name works.
    assert_code(
        &env.run(&["forget", "--keep-last", "1"]),
        22,
        &["forget with damage"],
    );
    env.ok(&["forget", &new]);
    assert_eq!(env.dump("latest", "stdin"), b"old");
}

/// A symlink in the middle of a backup path was stored with the link's own
/// lstat metadata and restored as a world-writable directory.
#[test]
fn symlinked_parent_directory_restores_as_its_target() {
    let env = Env::init();
    let real = env.path("real");
    fs::create_dir_all(real.join("sub")).unwrap();
    fs::set_permissions(&real, fs::Permissions::from_mode(0o750)).unwrap();
    fs::write(real.join("sub/f"), b"data").unwrap();
    let link = env.path("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let id =
        common::snapshot_id(&env.run(&["--json", "backup", link.join("sub").to_str().unwrap()]));
    let target = env.path("out");
    env.ok(&["restore", &id, "--target", target.to_str().unwrap()]);
    let restored = target.join(link.strip_prefix("/").unwrap());
    let meta = fs::metadata(&restored).unwrap();
    assert!(meta.is_dir());
    assert_eq!(
        meta.mode() & 0o7777,
        0o750,
        "the directory's mode, not the symlink's 0777"
    );
    assert_eq!(fs::read(restored.join("sub/f")).unwrap(), b"data");
}

/// A second restore into the same target failed for non-root users when
/// the snapshot had read-only directories.
#[test]
fn restore_again_over_read_only_directories() {
    let env = Env::empty();
    let src = env.path("src");
    fs::create_dir_all(src.join("ro")).unwrap();
    fs::write(src.join("ro/f"), b"x").unwrap();
    fs::set_permissions(src.join("ro"), fs::Permissions::from_mode(0o555)).unwrap();
    fs::set_permissions(&src, fs::Permissions::from_mode(0o755)).unwrap();
    let run = |args: &[&str]| unprivileged(&env).args(args).output().unwrap();
    let id = common::unprivileged_backup(&env, &src);
    let target = env.path("t");
    for round in 0..2 {
        let out = run(&["restore", &id, "--target", target.to_str().unwrap()]);
        assert_code(&out, 0, &["restore round", &round.to_string()]);
    }
    let ro = target.join(src.strip_prefix("/").unwrap()).join("ro");
    assert_eq!(fs::metadata(&ro).unwrap().mode() & 0o777, 0o555);
    assert_eq!(fs::read(ro.join("f")).unwrap(), b"x");
}

/// Backing up only unreadable sources committed an empty snapshot.
#[test]
fn only_unreadable_sources_write_no_snapshot() {
    let env = Env::empty();
    let secret = env.path("secret");
    fs::write(&secret, b"s").unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o000)).unwrap();
    let run = |args: &[&str]| unprivileged(&env).args(args).output().unwrap();
    let mut init = vec!["init"];
    init.extend(FAST_KDF);
    assert_code(&run(&init), 0, &["init"]);
    let out = run(&["backup", secret.to_str().unwrap()]);
    assert_code(&out, 20, &["backup of an unreadable file only"]);
    assert!(
        stderr(&out).contains("no snapshot was written"),
        "{}",
        stderr(&out)
    );
    let out = run(&["--json", "snapshots"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");
}

/// Output into a closed pipe panicked (exit 101) or failed (exit 1).
#[test]
fn closed_stdout_is_a_quiet_exit() {
    let env = Env::init();
    for i in 0..30u8 {
        env.backup_stdin(&[i], &[]);
    }
    for args in [
        &["snapshots"][..],
        &["--json", "snapshots"],
        &["forget", "--keep-last", "1", "--dry-run"],
        &["dump", "latest", "stdin"],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader); // every write now fails with EPIPE
        let out = env
            .cmd()
            .args(args)
            .stdout(Stdio::from(writer))
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert_code(&out, 0, args);
        assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    }
}

/// One damaged index object made every command fail, even `snapshots`.
#[test]
fn damaged_index_object_does_not_block_the_repository() {
    let env = Env::init();
    let first = env.backup_stdin(&fake_dump(3000, 1), &["--stdin-filename", "a.sql"]);
    let index = only_file_in(&env.repo.join("index"));
    flip_byte(&index);
    fs::remove_dir_all(&env.cache).unwrap();
    let out = env.run(&["snapshots"]);
    assert_code(&out, 0, &["snapshots with a damaged index object"]);
    assert!(
        stderr(&out).contains("unreadable index object"),
        "{}",
        stderr(&out)
    );
    // Its blobs look absent: restore says so, naming what is missing...
    let out = env.run(&["dump", &first, "a.sql"]);
    assert_code(&out, 22, &["dump needing the damaged index"]);
    assert!(
        stderr(&out).contains("not in the index"),
        "{}",
        stderr(&out)
    );
    // ...and a new backup stores them again and restores.
    let again = env.backup_stdin(&fake_dump(3000, 1), &["--stdin-filename", "a.sql"]);
    assert_eq!(env.dump(&again, "a.sql"), fake_dump(3000, 1));
}

/// Planted files of any size were read whole into memory.
#[test]
fn planted_huge_objects_are_refused_without_being_read() {
    let env = Env::init();
    env.backup_stdin(b"x", &[]);
    for (dir, name) in [
        ("keys", "0".repeat(64)),
        ("snapshots", "1".repeat(64)),
        ("index", "f".repeat(64)),
    ] {
        let f = fs::File::create(env.repo.join(dir).join(name)).unwrap();
        f.set_len(3 << 30).unwrap(); // sparse: 3 GiB without using disk
    }
    let start = Instant::now();
    let out = env.run(&["snapshots"]);
    let took = start.elapsed();
    // The planted snapshot is reported as damage; the real key still opens.
    assert_code(&out, 22, &["snapshots with planted objects"]);
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(
        stderr(&out).contains("more than any valid"),
        "{}",
        stderr(&out)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 snapshots"));
}

/// The password file must win over CAIRN_PASSWORD (restic's order), and a
/// file plus a command is a usage error.
#[test]
fn password_sources_follow_restics_order() {
    let env = Env::init();
    let file = env.path("pw");
    fs::write(&file, format!("{PASSWORD}\n")).unwrap();
    let out = env
        .cmd()
        .env("CAIRN_PASSWORD", "wrong")
        .env("CAIRN_PASSWORD_FILE", &file)
        .arg("snapshots")
        .output()
        .unwrap();
    assert_code(&out, 0, &["file beats env"]);
    let out = env
        .cmd()
        .env("CAIRN_PASSWORD_FILE", &file)
        .env("CAIRN_PASSWORD_COMMAND", "echo x")
        .arg("snapshots")
        .output()
        .unwrap();
    assert_code(&out, 2, &["file and command"]);
}

/// A cache built for one copy of a repository (same ID) must not be
/// trusted for another copy that lacks some of its index objects.
#[test]
fn cache_of_a_copy_with_more_indexes_is_rebuilt() {
    let env = Env::init();
    env.backup_stdin(&fake_dump(2000, 1), &[]);
    let copy = env.path("copy");
    assert!(Command::new("cp")
        .arg("-a")
        .arg(&env.repo)
        .arg(&copy)
        .status()
        .unwrap()
        .success());
    // The original gains an index object the copy never had; the cache learns it.
    env.backup_stdin(&fake_dump(2000, 2), &[]);
    // Same cache directory, the copy: its own backup and restore are right.
    let on_copy = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cairn"));
        c.arg("-r")
            .arg(&copy)
            .env("CAIRN_PASSWORD", PASSWORD)
            .env("CAIRN_CACHE_DIR", &env.cache);
        c
    };
    let out = common::run_with_stdin(
        on_copy().args(["--json", "backup", "-"]),
        &fake_dump(2000, 2),
    );
    assert_code(&out, 0, &["backup into the copy"]);
    let id = common::snapshot_id(&out);
    let out = on_copy().args(["dump", &id, "stdin"]).output().unwrap();
    assert_code(&out, 0, &["dump from the copy"]);
    assert_eq!(out.stdout, fake_dump(2000, 2));
}
