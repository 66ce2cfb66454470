//! Choosing what a path backup stores (issue 23, item 2), through the
//! real binary: restic's exclude options and pattern rules, path lists,
//! staying on one file system, and a dry run that stores nothing.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use common::{assert_code, Env};
use serde_json::Value;

fn json(env: &Env, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend(args);
    serde_json::from_str(&env.ok(&all)).unwrap()
}

/// Every path in snapshot `snap`, relative to `base` (which must be in it).
fn stored(env: &Env, snap: &str, base: &Path) -> BTreeSet<String> {
    let prefix = format!("{}/", base.display());
    json(env, &["ls", snap])["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| {
            e["path"]
                .as_str()?
                .strip_prefix(&prefix)
                .map(str::to_string)
        })
        .collect()
}

fn write(path: &Path, bytes: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
}

/// A tree with something for every exclude option.
fn tree(env: &Env) -> std::path::PathBuf {
    let src = env.path("src");
    write(&src.join("keep.txt"), b"keep");
    write(&src.join("scratch.tmp"), b"tmp");
    write(&src.join("deep/er/also.tmp"), b"tmp");
    write(&src.join("deep/er/kept.sql"), b"sql");
    write(&src.join("photos/A.JPG"), b"jpg");
    write(&src.join("photos/b.png"), b"png");
    write(
        &src.join("cache/CACHEDIR.TAG"),
        b"Signature: 8a477f597d28d172789f06886806bc55\n# a cache",
    );
    write(&src.join("cache/blob"), b"cached");
    // A tag without the signature is no cache tag.
    write(&src.join("notcache/CACHEDIR.TAG"), b"something else");
    write(&src.join("notcache/data"), b"data");
    write(&src.join("private/.nobackup"), b"");
    write(&src.join("private/secret"), b"secret");
    write(&src.join("node_modules/x/index.js"), b"js");
    write(&src.join("logs/a.log"), b"log");
    write(&src.join("logs/important.log"), b"log");
    src
}

#[test]
fn exclude_options_follow_restics_rules() {
    let env = Env::init();
    let src = tree(&env);
    let list = env.path("excludes");
    fs::write(
        &list,
        "# comment\n\n  $CAIRN_TEST_SUB/node_modules  \n/nowhere/at/all\n",
    )
    .unwrap();
    let out = env
        .cmd()
        .env("CAIRN_TEST_SUB", src.to_str().unwrap())
        .args(["--json", "backup"])
        .arg(&src)
        .args([
            "--exclude",
            "*.tmp",
            "--iexclude",
            "*.jpg",
            "--exclude-caches",
        ])
        .args(["--exclude-if-present", ".nobackup", "--exclude-file"])
        .arg(&list)
        .args(["--exclude", "logs/*", "--exclude", "!logs/important.log"])
        .output()
        .unwrap();
    assert_code(&out, 0, &["backup with excludes"]);
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    let snap = summary["snapshot_id"].as_str().unwrap().to_string();
    let got = stored(&env, &snap, &src);
    let want: BTreeSet<String> = [
        "keep.txt",
        "deep",
        "deep/er",
        "deep/er/kept.sql",
        "photos",
        "photos/b.png",
        "notcache",
        "notcache/CACHEDIR.TAG",
        "notcache/data",
        "logs",
        "logs/important.log",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(got, want);
    // scratch.tmp, also.tmp, A.JPG, cache, private, node_modules,
    // logs/a.log: a directory counts once.
    assert_eq!(summary["excluded"], 7, "{summary}");
    assert_eq!(summary["dry_run"], false);

    // Without options everything is stored.
    let all = env.ok(&["--json", "backup", src.to_str().unwrap()]);
    let all: Value = serde_json::from_str(&all).unwrap();
    let every = stored(&env, all["snapshot_id"].as_str().unwrap(), &src);
    assert!(every.contains("cache/blob") && every.contains("private/secret"));
    assert_eq!(all["excluded"], 0);
}

#[test]
fn a_malformed_pattern_or_a_missing_exclude_file_is_refused() {
    let env = Env::init();
    let src = tree(&env);
    let s = src.to_str().unwrap();
    let out = env.run(&["backup", s, "--exclude", "a[b"]);
    assert_code(&out, 2, &["malformed pattern"]);
    assert!(
        common::stderr(&out).contains("a[b"),
        "{}",
        common::stderr(&out)
    );
    let out = env.run(&["backup", s, "--exclude-file", "/no/such/file"]);
    assert_code(&out, 20, &["missing exclude file"]);
    assert!(common::stderr(&out).contains("/no/such/file"));
    // Excludes are for paths, not streams.
    let out = env.run_stdin(&["backup", "-", "--exclude", "*.tmp"], b"data");
    assert_code(&out, 2, &["exclude with stdin"]);
    assert!(env.snapshots().is_empty(), "nothing was written");
}

#[test]
fn files_from_lists_are_backed_up() {
    let env = Env::init();
    let src = tree(&env);
    let list = env.path("list");
    fs::write(
        &list,
        format!(
            "# what to keep\n{}\n\n{}\n",
            src.join("keep.txt").display(),
            src.join("deep/er").display()
        ),
    )
    .unwrap();
    let raw = env.path("raw");
    let mut bytes = src
        .join("photos/b.png")
        .as_os_str()
        .as_encoded_bytes()
        .to_vec();
    bytes.push(0);
    fs::write(&raw, bytes).unwrap();
    let out = env.run(&[
        "--json",
        "backup",
        "--files-from",
        list.to_str().unwrap(),
        "--files-from-raw",
        raw.to_str().unwrap(),
        "--exclude",
        "*.tmp",
    ]);
    assert_code(&out, 0, &["backup --files-from"]);
    let snap: Value = serde_json::from_slice(&out.stdout).unwrap();
    let snap = snap["snapshot_id"].as_str().unwrap();
    let got = stored(&env, snap, &src);
    let want: BTreeSet<String> = [
        "keep.txt",
        "deep",
        "deep/er",
        "deep/er/kept.sql",
        "photos",
        "photos/b.png",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(got, want);
    let empty = env.path("empty-list");
    fs::write(&empty, "# nothing\n").unwrap();
    let out = env.run(&["backup", "--files-from", empty.to_str().unwrap()]);
    assert_code(&out, 2, &["empty --files-from"]);
}

#[test]
fn a_dry_run_stores_nothing_and_says_what_it_would_add() {
    let env = Env::init();
    let src = tree(&env);
    let before = env.repo_listing();
    let out = env.run(&["--json", "backup", src.to_str().unwrap(), "--dry-run"]);
    assert_code(&out, 0, &["backup --dry-run"]);
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["dry_run"], true, "{summary}");
    assert!(summary["data_added"].as_u64().unwrap() > 0, "{summary}");
    assert_eq!(
        env.repo_listing(),
        before,
        "a dry run wrote to the repository"
    );
    assert!(env.snapshots().is_empty());
    let out = env.run(&["backup", src.to_str().unwrap(), "-n", "--exclude", "photos"]);
    assert_code(&out, 0, &["backup -n"]);
    let text = common::stdout(&out);
    assert!(
        text.contains("dry run: nothing was stored") && text.contains("would add"),
        "{text}"
    );
    assert!(text.contains("left out 1 entries"), "{text}");
    // The real backup afterwards stores what the dry run read.
    env.ok(&["backup", src.to_str().unwrap()]);
    assert_eq!(env.snapshots().len(), 1);
}

#[test]
fn one_file_system_keeps_mount_points_empty() {
    let env = Env::init();
    let src = env.path("fs");
    write(&src.join("here.txt"), b"here");
    let mnt = src.join("mnt");
    fs::create_dir_all(&mnt).unwrap();
    let Some(_mounted) = common::mount_tmpfs(&mnt, "1m", "backup --one-file-system") else {
        return;
    };
    write(&mnt.join("there.txt"), b"on another file system");
    let s = src.to_str().unwrap();
    let snap: Value = json(&env, &["backup", s, "--one-file-system"]);
    let got = stored(&env, snap["snapshot_id"].as_str().unwrap(), &src);
    assert_eq!(
        got,
        ["here.txt", "mnt"].iter().map(|s| s.to_string()).collect()
    );
    let snap: Value = json(&env, &["backup", s]);
    let got = stored(&env, snap["snapshot_id"].as_str().unwrap(), &src);
    assert!(got.contains("mnt/there.txt"), "{got:?}");
}

/// `rewrite --exclude` drops a file that should never have been backed up
/// from stored snapshots: a dry run changes nothing, the copies lack it
/// and restore and check cleanly, `--forget` removes the old ones, and a
/// snapshot with nothing to drop is left alone.
#[test]
fn rewrite_drops_paths_from_stored_snapshots() {
    let env = Env::init();
    let src = tree(&env);
    let s = src.to_str().unwrap();
    env.ok(&["backup", s]);
    fs::write(src.join("keep.txt"), "changed").unwrap();
    env.ok(&["backup", s]);
    let ids = |env: &Env| -> BTreeSet<String> {
        env.snapshots()
            .iter()
            .map(|v| v["id"].as_str().unwrap().to_string())
            .collect()
    };
    let before = ids(&env);
    assert_eq!(before.len(), 2);

    let secret = format!("{s}/private");
    let out = env.ok(&[
        "rewrite",
        "--exclude",
        &secret,
        "--exclude",
        "*.tmp",
        "--dry-run",
    ]);
    assert!(out.contains("would rewrite 2 of 2"), "{out}");
    assert_eq!(ids(&env), before, "a dry run changed snapshots");

    let done = json(
        &env,
        &[
            "rewrite",
            "--exclude",
            &secret,
            "--exclude",
            "*.tmp",
            "--forget",
        ],
    );
    let rewritten = done["snapshots"].as_array().unwrap();
    assert_eq!(rewritten.len(), 2, "{done}");
    for r in rewritten {
        // private (a directory, once) and the two .tmp files.
        assert_eq!(r["dropped"], 3, "{r}");
        assert_eq!(r["forgotten"], true);
    }
    let after = ids(&env);
    assert_eq!(after.len(), 2);
    assert!(after.is_disjoint(&before), "the old snapshots are gone");
    for snap in env.snapshots() {
        assert!(
            before.contains(snap["original"].as_str().unwrap()),
            "{snap}"
        );
        let got = stored(&env, snap["id"].as_str().unwrap(), &src);
        assert!(
            got.contains("keep.txt") && got.contains("cache/blob"),
            "{got:?}"
        );
        assert!(
            !got.iter()
                .any(|p| p.starts_with("private") || p.ends_with(".tmp")),
            "{got:?}"
        );
    }
    let found = json(&env, &["find", "secret"]);
    assert!(!found.to_string().contains("private/secret"), "{found}");
    assert_eq!(env.dump("latest", &format!("{s}/keep.txt")), b"changed");
    env.ok(&["check", "--read-data"]);

    // Nothing left to drop: left alone.
    let out = env.ok(&["rewrite", "--exclude", &secret]);
    assert!(out.contains("rewrote 0 of 2"), "{out}");
    assert_eq!(ids(&env), after);
    // No pattern: an error, nothing written.
    let out = env.run(&["rewrite"]);
    assert_code(&out, 2, &["rewrite without patterns"]);
}
