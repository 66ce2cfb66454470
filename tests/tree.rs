//! Directory trees: files, directories, symlinks, modes, mtimes, odd names;
//! several backups with changes in between, each restored identically.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::{pseudo_random, Env};

#[derive(Debug, PartialEq, Eq)]
enum Entry {
    File {
        mode: u32,
        mtime: i64,
        content: Vec<u8>,
    },
    Dir {
        mode: u32,
        mtime: i64,
    },
    Link {
        target: PathBuf,
        mtime: i64,
    },
}

fn scan(root: &Path) -> BTreeMap<PathBuf, Entry> {
    let mut out = BTreeMap::new();
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Entry>) {
        for e in fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            let m = fs::symlink_metadata(&p).unwrap();
            if m.file_type().is_symlink() {
                out.insert(
                    rel,
                    Entry::Link {
                        target: fs::read_link(&p).unwrap(),
                        mtime: m.mtime(),
                    },
                );
            } else if m.is_dir() {
                walk(root, &p, out);
                // After the walk: reading a directory does not change its mtime.
                out.insert(
                    rel,
                    Entry::Dir {
                        mode: m.mode() & 0o7777,
                        mtime: m.mtime(),
                    },
                );
            } else {
                out.insert(
                    rel,
                    Entry::File {
                        mode: m.mode() & 0o7777,
                        mtime: m.mtime(),
                        content: fs::read(&p).unwrap(),
                    },
                );
            }
        }
    }
    walk(root, root, &mut out);
    out
}

fn build(src: &Path) {
    fs::create_dir_all(src.join("etc/conf.d")).unwrap();
    fs::create_dir_all(src.join("var/lib/empty")).unwrap();
    fs::write(src.join("etc/hosts"), b"127.0.0.1 localhost\n").unwrap();
    fs::write(src.join("etc/conf.d/app.toml"), b"[app]\nport = 5432\n").unwrap();
    fs::write(src.join("var/lib/big.bin"), pseudo_random(5 << 20, 3)).unwrap();
    fs::write(src.join("var/lib/zero"), b"").unwrap();
    fs::write(
        src.join(OsStr::from_bytes(b"caf\xe9-latin1.txt")),
        b"not utf-8 name",
    )
    .unwrap();
    fs::write(src.join("run.sh"), b"#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(src.join("run.sh"), fs::Permissions::from_mode(0o750)).unwrap();
    fs::set_permissions(src.join("etc/conf.d"), fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::symlink("etc/hosts", src.join("hosts-link")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/target", src.join("dangling")).unwrap();
    filetime::set_file_mtime(
        src.join("etc/hosts"),
        filetime::FileTime::from_unix_time(1_600_000_000, 0),
    )
    .unwrap();
}

#[test]
fn directory_tree_round_trips_across_changes() {
    let env = Env::init();
    let src = env.path("src");
    build(&src);
    let src_s = src.to_str().unwrap();
    let before = scan(&src);
    let first = common::snapshot_id(&env.run(&["--json", "backup", src_s]));

    // Night two: edit, add, delete, grow the big file.
    fs::write(src.join("etc/hosts"), b"127.0.0.1 localhost db1\n").unwrap();
    fs::remove_file(src.join("var/lib/zero")).unwrap();
    fs::write(src.join("var/lib/new.txt"), b"new").unwrap();
    let mut big = fs::read(src.join("var/lib/big.bin")).unwrap();
    big.splice(1000..1000, b"inserted".iter().copied());
    fs::write(src.join("var/lib/big.bin"), &big).unwrap();
    let after = scan(&src);
    let out = env.run(&["--json", "backup", src_s]);
    common::assert_code(&out, 0, &["second backup"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["data_added"].as_u64().unwrap() < 1 << 20,
        "an insert in a 5 MiB file re-stored too much: {v}"
    );
    let second = common::snapshot_id(&out);

    for (id, expected) in [(&first, &before), (&second, &after)] {
        let target = env.path(&format!("restore-{}", &id[..8]));
        env.ok(&["restore", id, "--target", target.to_str().unwrap()]);
        let restored = scan(&target.join(src.strip_prefix("/").unwrap()));
        assert_eq!(&restored, expected, "snapshot {id}");
    }
    // Single files come out with dump, by absolute path.
    let hosts = format!("{}/etc/hosts", src_s);
    assert_eq!(env.dump(&first, &hosts), b"127.0.0.1 localhost\n");
    assert_eq!(env.dump(&second, &hosts), b"127.0.0.1 localhost db1\n");
    let out = env.run(&["dump", &second, &format!("{src_s}/etc")]);
    common::assert_code(&out, 2, &["dump of a directory"]);
}

#[test]
fn several_paths_and_restore_over_existing_files() {
    let env = Env::init();
    let a = env.path("a");
    let b = env.path("b/nested");
    fs::create_dir_all(&a).unwrap();
    fs::create_dir_all(&b).unwrap();
    fs::write(a.join("one"), b"1").unwrap();
    fs::write(b.join("two"), b"2").unwrap();
    let single = env.path("single.txt");
    fs::write(&single, b"just a file").unwrap();
    let id = common::snapshot_id(&env.run(&[
        "--json",
        "backup",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        single.to_str().unwrap(),
    ]));
    let target = env.path("t");
    let inner = |p: &Path| target.join(p.strip_prefix("/").unwrap());
    fs::create_dir_all(inner(&a)).unwrap();
    fs::write(inner(&a).join("one"), b"stale content").unwrap();
    env.ok(&["restore", &id, "--target", target.to_str().unwrap()]);
    assert_eq!(fs::read(inner(&a).join("one")).unwrap(), b"1");
    assert_eq!(fs::read(inner(&b).join("two")).unwrap(), b"2");
    assert_eq!(fs::read(inner(&single)).unwrap(), b"just a file");
    let snap = &env.snapshots()[0];
    assert_eq!(snap["paths"].as_array().unwrap().len(), 3);
}

/// Regression: a file whose bytes equal an empty directory's tree blob
/// (`{"nodes":[]}`) once shared its blob ID, and restore failed.
#[test]
fn file_with_the_bytes_of_an_empty_tree() {
    let env = Env::init();
    let src = env.path("src");
    fs::create_dir_all(src.join("empty-dir")).unwrap();
    fs::write(src.join("looks-like-a-tree.json"), br#"{"nodes":[]}"#).unwrap();
    let id = common::snapshot_id(&env.run(&["--json", "backup", src.to_str().unwrap()]));
    let target = env.path("t");
    env.ok(&["restore", &id, "--target", target.to_str().unwrap()]);
    let inner = target.join(src.strip_prefix("/").unwrap());
    assert!(inner.join("empty-dir").is_dir());
    assert_eq!(
        fs::read(inner.join("looks-like-a-tree.json")).unwrap(),
        br#"{"nodes":[]}"#
    );
}

/// Thousands of small files are written several at a time, in batches
/// that span directories; a directory's mode and time are set only once
/// everything below it is written. Run as `nobody`, so that a read-only
/// directory whose mode came too early stops the restore; restored twice
/// (the second time every file is there already), then with `--verify`.
#[test]
fn many_small_files_across_batches_keep_directory_times_and_modes() {
    use common::{assert_code, unprivileged};
    let env = Env::empty();
    let src = env.path("src");
    let mut n = 0u64;
    for d in 0..6 {
        for e in 0..5 {
            let dir = src.join(format!("d{d}/e{e}"));
            fs::create_dir_all(&dir).unwrap();
            for f in 0..90 {
                n += 1;
                let len = (n * 37 % 3000) as usize;
                fs::write(dir.join(format!("f{f}")), pseudo_random(len, n)).unwrap();
            }
        }
    }
    // Around the line between files read whole before they are created
    // and files streamed under a temporary name.
    fs::write(src.join("d0/exactly-1m"), pseudo_random(1 << 20, 1)).unwrap();
    fs::write(src.join("d0/above-1m"), pseudo_random((1 << 20) + 1, 2)).unwrap();
    for d in 0..6 {
        for e in 0..5 {
            let dir = src.join(format!("d{d}/e{e}"));
            let t = filetime::FileTime::from_unix_time(1_500_000_000 + d * 1000 + e, 0);
            filetime::set_file_mtime(&dir, t).unwrap();
            if (d + e) % 3 == 0 {
                fs::set_permissions(&dir, fs::Permissions::from_mode(0o555)).unwrap();
            }
        }
        let t = filetime::FileTime::from_unix_time(1_400_000_000 + d, 0);
        filetime::set_file_mtime(src.join(format!("d{d}")), t).unwrap();
    }
    fs::set_permissions(&src, fs::Permissions::from_mode(0o755)).unwrap();
    let expected = scan(&src);
    assert!(expected.len() > 2 * 1024, "{} entries", expected.len());

    let run = |args: &[&str]| unprivileged(&env).args(args).output().unwrap();
    let id = common::unprivileged_backup(&env, &src);
    let target = env.path("t");
    let restored = target.join(src.strip_prefix("/").unwrap());
    for (round, extra) in [(0, None), (1, None), (2, Some("--verify"))] {
        let mut args = vec![
            "--json",
            "restore",
            &id,
            "--target",
            target.to_str().unwrap(),
        ];
        args.extend(extra);
        let out = run(&args);
        assert_code(&out, 0, &["restore round", &round.to_string()]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            v["files_restored"].as_u64(),
            Some(n + 2),
            "round {round}: {v}"
        );
        let verified = if extra.is_some() { n + 2 } else { 0 };
        assert_eq!(
            v["files_verified"].as_u64(),
            Some(verified),
            "round {round}"
        );
        assert_eq!(scan(&restored), expected, "round {round}");
        let stray = common::files_under(&restored)
            .into_iter()
            .filter(|p| p.to_string_lossy().contains(".cairn-restore-"))
            .count();
        assert_eq!(stray, 0, "round {round}: temporary files left");
    }
    // A clean restore leaves target directories writable for the test's
    // own clean-up.
    for d in 0..6 {
        for e in 0..5 {
            let dir = restored.join(format!("d{d}/e{e}"));
            let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(0o755));
        }
    }
}
