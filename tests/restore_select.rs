//! Choosing what a restore writes (issue 23, item 3), through the real
//! binary: SNAPSHOT:PATH, --include/--exclude with restic's patterns,
//! --dry-run, --overwrite and --verify.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use common::{assert_code, Env};
use serde_json::Value;

/// Every file and directory under `dir`, relative to it.
fn listing(dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            out.insert(p.strip_prefix(dir).unwrap().display().to_string());
            if p.is_dir() && !p.is_symlink() {
                stack.push(p);
            }
        }
    }
    out
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// A source tree backed up; returns (source, snapshot ID).
fn backed_up(env: &Env) -> (PathBuf, String) {
    let src = env.path("src");
    for (p, body) in [
        ("etc/app.conf", "conf"),
        ("etc/app.conf.bak", "old"),
        ("data/a.sql", "a"),
        ("data/B.SQL", "b"),
        ("data/logs/x.log", "log"),
        ("empty/.keep", ""),
    ] {
        let path = src.join(p);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, body).unwrap();
    }
    let out: Value =
        serde_json::from_str(&env.ok(&["--json", "backup", src.to_str().unwrap()])).unwrap();
    (src, out["snapshot_id"].as_str().unwrap().to_string())
}

fn restore(env: &Env, args: &[&str]) -> Value {
    let mut all = vec!["--json", "restore"];
    all.extend(args);
    serde_json::from_str(&env.ok(&all)).unwrap()
}

#[test]
fn a_subfolder_include_and_exclude_restore_only_what_they_name() {
    let env = Env::init();
    let (src, snap) = backed_up(&env);
    let s = src.display().to_string();

    // SNAPSHOT:PATH, a directory: its contents straight into the target.
    let t = env.path("t1");
    restore(
        &env,
        &[&format!("{snap}:{s}/data"), "-t", t.to_str().unwrap()],
    );
    assert_eq!(listing(&t), set(&["a.sql", "B.SQL", "logs", "logs/x.log"]));
    // SNAPSHOT:PATH, a file: into the target under its name.
    let t = env.path("t2");
    restore(
        &env,
        &[
            &format!("latest:{s}/etc/app.conf"),
            "-t",
            t.to_str().unwrap(),
        ],
    );
    assert_eq!(listing(&t), set(&["app.conf"]));
    assert_eq!(fs::read_to_string(t.join("app.conf")).unwrap(), "conf");

    // --include: what matches, the directories above it, nothing else.
    let t = env.path("t3");
    let out = restore(
        &env,
        &[
            &snap,
            "-t",
            t.to_str().unwrap(),
            "--include",
            "*.sql",
            "--iinclude",
            "*.conf",
        ],
    );
    let base = s.trim_start_matches('/');
    let under = |p: &str| format!("{base}/{p}");
    let got: BTreeSet<String> = listing(&t)
        .into_iter()
        .filter_map(|p| p.strip_prefix(&format!("{base}/")).map(str::to_string))
        .collect();
    assert_eq!(got, set(&["data", "data/a.sql", "etc", "etc/app.conf"]));
    assert!(t.join(under("data/a.sql")).is_file());
    assert_eq!(out["files_restored"], 2, "{out}");

    // --exclude wins, and a directory it matches goes whole; ignoring case.
    let t = env.path("t4");
    let out = restore(
        &env,
        &[
            &snap,
            "-t",
            t.to_str().unwrap(),
            "--exclude",
            "logs",
            "--iexclude",
            "*.bak",
            "--exclude",
            "b.sql",
        ],
    );
    let got: BTreeSet<String> = listing(&t)
        .into_iter()
        .filter_map(|p| p.strip_prefix(&format!("{base}/")).map(str::to_string))
        .collect();
    // b.sql is case-sensitive: B.SQL stays.
    assert_eq!(
        got,
        set(&[
            "data",
            "data/a.sql",
            "data/B.SQL",
            "empty",
            "empty/.keep",
            "etc",
            "etc/app.conf"
        ])
    );
    assert_eq!(out["excluded"], 2, "{out}");
}

#[test]
fn a_dry_run_writes_nothing() {
    let env = Env::init();
    let (_, snap) = backed_up(&env);
    let t = env.path("nothing");
    let out = restore(&env, &[&snap, "-t", t.to_str().unwrap(), "--dry-run"]);
    assert!(!t.exists(), "a dry run created the target");
    assert_eq!(out["dry_run"], true);
    assert_eq!(out["files_restored"], 6, "{out}");
    let text = env.ok(&["restore", &snap, "-t", t.to_str().unwrap(), "-n"]);
    assert!(
        text.contains("would restore") && text.contains("nothing was written"),
        "{text}"
    );
}

#[test]
fn overwrite_decides_about_files_already_there() {
    let env = Env::init();
    let (src, snap) = backed_up(&env);
    let t = env.path("t");
    let ts = t.to_str().unwrap();
    restore(&env, &[&snap, "-t", ts]);
    let rel = src.strip_prefix("/").unwrap();
    let conf = t.join(rel).join("etc/app.conf");
    let sql = t.join(rel).join("data/a.sql");

    // Changed locally: never and if-newer (the local copy is newer) keep it.
    fs::write(&conf, "local edit").unwrap();
    let out = restore(&env, &[&snap, "-t", ts, "--overwrite", "never"]);
    assert_eq!(fs::read_to_string(&conf).unwrap(), "local edit");
    assert_eq!(out["files_kept"], 6, "{out}");
    restore(&env, &[&snap, "-t", ts, "--overwrite", "if-newer"]);
    assert_eq!(fs::read_to_string(&conf).unwrap(), "local edit");
    // if-changed: size or time differ, so it is replaced; the untouched
    // ones are kept.
    let out = restore(&env, &[&snap, "-t", ts, "--overwrite", "if-changed"]);
    assert_eq!(fs::read_to_string(&conf).unwrap(), "conf");
    assert_eq!(out["files_restored"], 1, "{out}");
    assert_eq!(out["files_kept"], 5, "{out}");
    // An older local copy: if-newer replaces it.
    fs::write(&sql, "x").unwrap();
    let old = filetime::FileTime::from_unix_time(1_000_000, 0);
    filetime::set_file_mtime(&sql, old).unwrap();
    restore(&env, &[&snap, "-t", ts, "--overwrite", "if-newer"]);
    assert_eq!(fs::read_to_string(&sql).unwrap(), "a");
    // always (the default) replaces.
    fs::write(&sql, "y").unwrap();
    restore(&env, &[&snap, "-t", ts]);
    assert_eq!(fs::read_to_string(&sql).unwrap(), "a");
    let out = env.run(&["restore", &snap, "-t", ts, "--overwrite", "sometimes"]);
    assert_code(&out, 2, &["--overwrite sometimes"]);
}

#[test]
fn verify_reads_every_restored_file_back() {
    let env = Env::init();
    let src = env.path("big");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("dump.sql"), common::pseudo_random(3 << 20, 7)).unwrap();
    fs::write(src.join("small"), "s").unwrap();
    let out: Value =
        serde_json::from_str(&env.ok(&["--json", "backup", src.to_str().unwrap()])).unwrap();
    let snap = out["snapshot_id"].as_str().unwrap();
    let t = env.path("t");
    let out = restore(&env, &[snap, "-t", t.to_str().unwrap(), "--verify"]);
    assert_eq!(out["files_verified"], 2, "{out}");
    let text = env.ok(&["restore", snap, "-t", t.to_str().unwrap(), "--verify"]);
    assert!(text.contains("verified 2 files"), "{text}");
}

/// A file changed in place, same size and time: `--overwrite if-changed`
/// keeps it on the quick check, and `--verify` catches it (exit 22, the
/// file named).
#[test]
fn verify_catches_a_file_the_quick_check_kept() {
    let env = Env::init();
    let (src, snap) = backed_up(&env);
    let t = env.path("t");
    let ts = t.to_str().unwrap();
    restore(&env, &[&snap, "-t", ts]);
    let conf = t.join(src.strip_prefix("/").unwrap()).join("etc/app.conf");
    let mtime = filetime::FileTime::from_last_modification_time(&fs::metadata(&conf).unwrap());
    fs::write(&conf, "CONF").unwrap();
    filetime::set_file_mtime(&conf, mtime).unwrap();
    let out = env.run(&[
        "restore",
        &snap,
        "-t",
        ts,
        "--overwrite",
        "if-changed",
        "--verify",
    ]);
    assert_code(&out, 22, &["verify of a file changed in place"]);
    let err = common::stderr(&out);
    assert!(err.contains("app.conf") && err.contains("differs"), "{err}");
    // Replaced by a restore that does not skip it, it verifies.
    let out = restore(&env, &[&snap, "-t", ts, "--verify"]);
    assert_eq!(out["files_verified"], 6, "{out}");
    assert_eq!(fs::read_to_string(&conf).unwrap(), "conf");
}

/// FIFOs come back as FIFOs, device nodes as device nodes (as root; else
/// each is named as not restored), and a socket is named as not restored:
/// nothing special is dropped without a word (issue 23, item 1, part).
#[test]
fn fifos_and_device_nodes_come_back_and_sockets_are_named() {
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
    let env = Env::init();
    let src = env.path("special");
    fs::create_dir_all(&src).unwrap();
    let status = std::process::Command::new("mkfifo")
        .args(["-m", "0640"])
        .arg(src.join("pipe"))
        .status()
        .unwrap();
    assert!(status.success());
    let root = common::is_root();
    if root {
        let status = std::process::Command::new("mknod")
            .arg(src.join("null"))
            .args(["c", "1", "3"])
            .status()
            .unwrap();
        assert!(status.success(), "mknod as root");
    }
    let _listener = std::os::unix::net::UnixListener::bind(src.join("sock")).unwrap();
    let out: Value =
        serde_json::from_str(&env.ok(&["--json", "backup", src.to_str().unwrap()])).unwrap();
    let snap = out["snapshot_id"].as_str().unwrap();

    let t = env.path("t");
    let out = env.run(&["--json", "restore", snap, "-t", t.to_str().unwrap()]);
    assert_code(&out, 3, &["restore with a socket"]);
    let err = common::stderr(&out);
    assert!(err.contains("sock: socket not restored"), "{err}");
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    let base = t.join(src.strip_prefix("/").unwrap());
    let pipe = fs::symlink_metadata(base.join("pipe")).unwrap();
    assert!(pipe.file_type().is_fifo(), "{pipe:?}");
    assert_eq!(pipe.permissions().mode() & 0o7777, 0o640);
    assert!(!base.join("sock").exists());
    if root {
        let null = fs::symlink_metadata(base.join("null")).unwrap();
        assert!(null.file_type().is_char_device());
        assert_eq!(null.rdev(), fs::metadata("/dev/null").unwrap().rdev());
        assert_eq!(summary["specials_restored"], 2, "{summary}");
    } else {
        assert_eq!(summary["specials_restored"], 1, "{summary}");
    }
}

/// Hard links come back as links of one file (one inode), also when the
/// first link is restored again; restored alone, a link is a file of its
/// own with the content (issue 23, item 1, part).
#[test]
fn hard_links_come_back_as_one_file() {
    use std::os::unix::fs::MetadataExt;
    let env = Env::init();
    let src = env.path("links");
    fs::create_dir_all(src.join("a")).unwrap();
    fs::create_dir_all(src.join("b")).unwrap();
    fs::write(src.join("a/x"), common::pseudo_random(100_000, 3)).unwrap();
    fs::hard_link(src.join("a/x"), src.join("b/y")).unwrap();
    fs::hard_link(src.join("a/x"), src.join("b/z")).unwrap();
    fs::write(src.join("single"), "one link").unwrap();
    let out: Value =
        serde_json::from_str(&env.ok(&["--json", "backup", src.to_str().unwrap()])).unwrap();
    let snap = out["snapshot_id"].as_str().unwrap().to_string();
    // Read once: the other links add no bytes read.
    assert_eq!(out["total_bytes_processed"], 100_000 + 8, "{out}");

    let t = env.path("t");
    for round in 0..2 {
        let out = restore(&env, &[&snap, "-t", t.to_str().unwrap()]);
        assert_eq!(out["hardlinks_restored"], 2, "round {round}: {out}");
        let base = t.join(src.strip_prefix("/").unwrap());
        let ino = |p: &str| fs::metadata(base.join(p)).unwrap().ino();
        assert_eq!(ino("a/x"), ino("b/y"));
        assert_eq!(ino("a/x"), ino("b/z"));
        assert_ne!(ino("a/x"), ino("single"));
        assert_eq!(fs::metadata(base.join("a/x")).unwrap().nlink(), 3);
        assert_eq!(
            fs::read(base.join("b/z")).unwrap(),
            common::pseudo_random(100_000, 3)
        );
    }
    // Only one link: a file of its own.
    let t = env.path("alone");
    let out = restore(
        &env,
        &[&snap, "-t", t.to_str().unwrap(), "--include", "b/z"],
    );
    assert_eq!(out["hardlinks_restored"], 0, "{out}");
    let z = t.join(src.strip_prefix("/").unwrap()).join("b/z");
    assert_eq!(fs::read(&z).unwrap(), common::pseudo_random(100_000, 3));
}

/// `path` attribute `name` set to `value` (python3's os.setxattr: no
/// xattr tool is assumed).
fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    let hex: String = value.iter().map(|b| format!("{b:02x}")).collect();
    let status = std::process::Command::new("python3")
        .args([
            "-c",
            "import os,sys; os.setxattr(sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3]), follow_symlinks=False)",
        ])
        .arg(path)
        .args([name, &hex])
        .status()
        .unwrap();
    assert!(status.success(), "setxattr {name} on {}", path.display());
}

fn get_xattrs(path: &Path) -> String {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import os,sys; p=sys.argv[1]; print(sorted((n, os.getxattr(p, n).hex()) for n in os.listxattr(p) if not n.startswith('security.')))",
        ])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

/// Extended attributes of files and directories come back, binary values
/// too; `trusted.*` (only root may set it) too when restoring as root
/// (issue 23, item 1, part).
#[test]
fn extended_attributes_come_back() {
    let env = Env::init();
    let src = env.path("attrs");
    fs::create_dir_all(src.join("dir")).unwrap();
    fs::write(src.join("dir/file"), "x").unwrap();
    set_xattr(&src.join("dir/file"), "user.mime_type", b"text/plain");
    set_xattr(&src.join("dir/file"), "user.binary", &[0, 255, 10, 0]);
    set_xattr(&src.join("dir"), "user.dir", b"d");
    let root = common::is_root();
    if root {
        set_xattr(&src.join("dir/file"), "trusted.cairn", b"t");
    }
    let out: Value =
        serde_json::from_str(&env.ok(&["--json", "backup", src.to_str().unwrap()])).unwrap();
    let snap = out["snapshot_id"].as_str().unwrap();
    let t = env.path("t");
    let out = restore(&env, &[snap, "-t", t.to_str().unwrap()]);
    let base = t.join(src.strip_prefix("/").unwrap());
    assert_eq!(
        get_xattrs(&base.join("dir/file")),
        get_xattrs(&src.join("dir/file"))
    );
    assert_eq!(get_xattrs(&base.join("dir")), get_xattrs(&src.join("dir")));
    let got = get_xattrs(&base.join("dir/file"));
    assert!(
        got.contains("user.binary") && got.contains("00ff0a00"),
        "{got}"
    );
    assert_eq!(got.contains("trusted.cairn"), root, "{got}");
    assert_eq!(out["xattrs_not_restored_not_root"], 0, "{out}");
}
