//! `cairn mount`, through the kernel: the real binary mounts a repository
//! with FUSE, and the test reads it with ordinary file calls. Where the
//! machine has no /dev/fuse the mounting tests say so (SKIPPED) and test
//! only that cairn refuses clearly: nothing is pretended.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn have_fuse() -> bool {
    if Path::new("/dev/fuse").exists() {
        return true;
    }
    eprintln!("SKIPPED: this machine has no /dev/fuse, so nothing can be mounted here");
    false
}

/// Starts `cairn mount MNT ARGS` and waits until the mount answers.
fn mount(env: &Env, mnt: &Path, args: &[&str]) -> Child {
    mount_seen_by(env, mnt, args, &|p| p.is_dir())
}

/// `mount`, where `is_dir` tells whether the mount's user sees a
/// directory (only that user may look into a FUSE mount).
fn mount_seen_by(env: &Env, mnt: &Path, args: &[&str], is_dir: &dyn Fn(&Path) -> bool) -> Child {
    let mut child = env
        .cmd()
        .arg("mount")
        .arg(mnt)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !is_dir(&mnt.join("snapshots")) {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("cairn mount exited with {status}: {err}");
        }
        assert!(Instant::now() < deadline, "the mount did not appear");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

/// Waits for `cairn mount` to end; returns its stderr.
fn ended(mut child: Child) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "cairn mount did not end");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{:?}: {err}", out.status);
    err
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    v.sort();
    v
}

fn inside(root: &Path, src: &Path) -> PathBuf {
    root.join(src.strip_prefix("/").unwrap())
}

#[test]
fn mounted_snapshots_read_back_byte_for_byte_by_time_id_host_and_tag() {
    if !have_fuse() {
        return;
    }
    let env = Env::init();
    let src = env.path("src");
    std::fs::create_dir_all(src.join("sub/deeper")).unwrap();
    std::fs::write(src.join("a.txt"), b"alpha\n").unwrap();
    std::fs::write(src.join("sub/empty"), b"").unwrap();
    let big = pseudo_random((5 << 20) + 123, 1);
    std::fs::write(src.join("big.bin"), &big).unwrap();
    std::fs::write(src.join("run.sh"), b"#!/bin/sh\n").unwrap();
    std::fs::set_permissions(src.join("run.sh"), std::fs::Permissions::from_mode(0o750)).unwrap();
    std::os::unix::fs::symlink("../a.txt", src.join("sub/link")).unwrap();
    let s = src.to_str().unwrap();
    env.ok(&["backup", "--host", "db1", "--tag", "nightly", s]);
    let first = env.snapshots()[0]["id"].as_str().unwrap().to_string();
    let mut big2 = big.clone();
    big2[3_000_000..3_000_100].fill(7);
    std::fs::write(src.join("big.bin"), &big2).unwrap();
    env.ok(&["backup", "--host", "db1", "--tag", "nightly", s]);
    let dump = fake_dump(30_000, 5);
    env.backup_stdin(&dump, &["--stdin-filename", "shop.sql", "--host", "db2"]);

    let mnt = env.path("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let child = mount(&env, &mnt, &[]);

    // The layout.
    assert_eq!(names(&mnt), ["hosts", "ids", "snapshots", "tags"]);
    let snaps = names(&mnt.join("snapshots"));
    assert_eq!(snaps.len(), 4, "{snaps:?}");
    assert!(snaps.contains(&"latest".to_string()));
    assert_eq!(names(&mnt.join("hosts")), ["db1", "db2"]);
    assert_eq!(names(&mnt.join("hosts/db1")).len(), 3);
    assert_eq!(names(&mnt.join("tags")), ["nightly"]);
    assert_eq!(names(&mnt.join("tags/nightly")).len(), 3);
    let ids = names(&mnt.join("ids"));
    assert_eq!(ids.len(), 3);
    assert!(ids.contains(&first[..8].to_string()), "{ids:?}");
    let target = std::fs::read_link(mnt.join("ids").join(&first[..8])).unwrap();
    assert!(target.starts_with("../snapshots/"), "{target:?}");

    // Bytes: each night's file, through its ID and through latest.
    let by_id = mnt.join("ids").join(&first[..8]);
    assert_eq!(
        std::fs::read(inside(&by_id, &src).join("big.bin")).unwrap(),
        big
    );
    let latest_db1 = mnt.join("hosts/db1/latest");
    let file = inside(&latest_db1, &src).join("big.bin");
    assert_eq!(std::fs::read(&file).unwrap(), big2);
    assert_eq!(
        std::fs::read(mnt.join("hosts/db2/latest/shop.sql")).unwrap(),
        dump
    );
    assert_eq!(
        std::fs::read(inside(&latest_db1, &src).join("a.txt")).unwrap(),
        b"alpha\n"
    );
    assert!(std::fs::read(inside(&latest_db1, &src).join("sub/empty"))
        .unwrap()
        .is_empty());
    // A read in the middle, across chunks.
    let mut f = std::fs::File::open(&file).unwrap();
    f.seek(SeekFrom::Start(2_999_000)).unwrap();
    let mut part = vec![0u8; 300_000];
    f.read_exact(&mut part).unwrap();
    assert_eq!(part, big2[2_999_000..3_299_000]);
    drop(f);

    // Metadata as stored.
    let here = inside(&latest_db1, &src);
    let meta = std::fs::metadata(here.join("run.sh")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o750);
    let orig = std::fs::metadata(src.join("big.bin")).unwrap();
    assert_eq!(std::fs::metadata(&file).unwrap().mtime(), orig.mtime());
    assert_eq!(std::fs::metadata(&file).unwrap().len(), big2.len() as u64);
    assert_eq!(
        std::fs::read_link(here.join("sub/link")).unwrap(),
        PathBuf::from("../a.txt")
    );
    assert_eq!(
        std::fs::read(here.join("sub/link")).unwrap(),
        b"alpha\n",
        "a symlink inside the snapshot resolves inside it"
    );

    // Read-only.
    assert!(std::fs::write(here.join("new"), b"x").is_err());
    assert!(std::fs::OpenOptions::new()
        .write(true)
        .open(here.join("a.txt"))
        .is_err());
    assert!(std::fs::remove_file(here.join("a.txt")).is_err());

    // Ctrl-C unmounts and ends it with success.
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    ended(child);
    assert!(names(&mnt).is_empty(), "still mounted: {:?}", names(&mnt));

    // --host limits what is shown; `umount` from outside ends it too.
    let child = mount(&env, &mnt, &["--host", "db2"]);
    assert_eq!(names(&mnt.join("snapshots")).len(), 2);
    assert_eq!(names(&mnt.join("hosts")), ["db2"]);
    let out = Command::new("umount").arg(&mnt).output().unwrap();
    if !out.status.success() {
        // Not root: the FUSE way.
        let out = Command::new("fusermount3")
            .arg("-u")
            .arg(&mnt)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    ended(child);
    assert!(names(&mnt).is_empty());

    // Ctrl-C while a file is open there: detached at once (no dead mount
    // is left when cairn exits), and the reader gets errors, not bytes.
    let child = mount(&env, &mnt, &[]);
    let mut f = std::fs::File::open(mnt.join("hosts/db2/latest/shop.sql")).unwrap();
    let mut head = [0u8; 10];
    f.read_exact(&mut head).unwrap();
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let log = ended(child);
    assert!(log.contains("was busy"), "{log}");
    assert!(names(&mnt).is_empty());
    let mut rest = Vec::new();
    assert!(f.read_to_end(&mut rest).is_err() || rest.is_empty());
}

#[test]
fn a_damaged_chunk_reads_as_an_io_error_never_as_wrong_bytes() {
    if !have_fuse() {
        return;
    }
    let env = Env::init();
    let data = pseudo_random(2 << 20, 3);
    env.backup_stdin(&data, &["--stdin-filename", "db.sql"]);
    // Flip one byte in the middle of every pack.
    for pack in files_under(&env.repo.join("data")) {
        let mut bytes = std::fs::read(&pack).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x40;
        let mut perm = std::fs::metadata(&pack).unwrap().permissions();
        perm.set_mode(0o600);
        std::fs::set_permissions(&pack, perm).unwrap();
        std::fs::write(&pack, bytes).unwrap();
    }
    let mnt = env.path("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let child = mount(&env, &mnt, &[]);
    let got = std::fs::read(mnt.join("snapshots/latest/db.sql"));
    let err = got.expect_err("a damaged file read back without an error");
    assert_eq!(err.raw_os_error(), Some(5), "{err}"); // EIO
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let log = ended(child);
    assert!(
        log.contains("cairn: mount:"),
        "the cause is not on stderr: {log}"
    );
}

#[test]
fn a_user_other_than_root_mounts_through_fusermount() {
    if !have_fuse() {
        return;
    }
    if !is_root() {
        eprintln!("SKIPPED: not root, so the other tests already mount as a user");
        return;
    }
    if find_installed("fusermount3").is_none() {
        assert!(
            !in_ci(),
            "CI=true but fusermount3 is not installed: .ci/run must install fuse3"
        );
        eprintln!("SKIPPED: fusermount3 is not installed (apt-get install fuse3)");
        return;
    }
    let env = Env::init_as_postgres();
    let dump = fake_dump(20_000, 9);
    env.backup_stdin(&dump, &["--stdin-filename", "shop.sql"]);
    let mnt = env.path("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let chown = Command::new("chown")
        .arg("postgres:")
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(chown.success());
    let as_pg = |args: &[&str]| {
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .args(args)
            .output()
            .unwrap()
    };
    let child = mount_seen_by(&env, &mnt, &[], &|p| {
        as_pg(&["test", "-d", p.to_str().unwrap()]).status.success()
    });
    let file = mnt.join("snapshots/latest/shop.sql");
    let out = as_pg(&["cat", file.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, dump);
    // Only its user may look in (FUSE's rule without --allow-other).
    assert!(
        std::fs::read(&file).is_err(),
        "root read another user's mount"
    );
    // Unmounted by that user from outside: cairn ends with success.
    let out = as_pg(&["fusermount3", "-u", mnt.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    ended(child);
    assert!(names(&mnt).is_empty());
    // And with Ctrl-C.
    let child = mount_seen_by(&env, &mnt, &[], &|p| {
        as_pg(&["test", "-d", p.to_str().unwrap()]).status.success()
    });
    Command::new("pkill")
        .args(["-INT", "-u", "postgres", "-f", "cairn .*mount"])
        .status()
        .unwrap();
    ended(child);
    assert!(names(&mnt).is_empty());
}

#[test]
fn mount_refuses_clearly_where_it_cannot() {
    let env = Env::init();
    env.backup_stdin(b"x", &["--stdin-filename", "x"]);
    // A mount point that is not an empty directory, or is missing.
    let full = env.path("full");
    std::fs::create_dir_all(&full).unwrap();
    std::fs::write(full.join("f"), b"").unwrap();
    for at in [full, env.path("missing")] {
        let out = env.cmd().arg("mount").arg(&at).output().unwrap();
        assert_code(&out, 31, &["mount", at.to_str().unwrap()]);
        let err = stderr(&out);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains("cannot mount"), "{err}");
    }
}
