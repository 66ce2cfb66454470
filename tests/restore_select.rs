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
