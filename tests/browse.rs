//! Looking into snapshots through the binary: `ls`, `find`, `diff`,
//! `stats`, and the generated completions and man pages.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{assert_code, pseudo_random, Env};
use serde_json::Value;

fn json(env: &Env, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend(args);
    serde_json::from_str(&env.ok(&all)).unwrap()
}

fn paths(entries: &Value) -> BTreeSet<String> {
    entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_string())
        .collect()
}

/// A source tree: a.txt, docs/b.txt, docs/deep/c.sql, link -> a.txt.
fn source(env: &Env) -> std::path::PathBuf {
    let src = env.path("src");
    std::fs::create_dir_all(src.join("docs/deep")).unwrap();
    std::fs::write(src.join("a.txt"), b"alpha\n").unwrap();
    std::fs::write(src.join("docs/b.txt"), pseudo_random(100_000, 1)).unwrap();
    std::fs::write(src.join("docs/deep/c.sql"), b"select 1;\n").unwrap();
    std::os::unix::fs::symlink("a.txt", src.join("link")).unwrap();
    src
}

fn backup(env: &Env, src: &Path) -> String {
    let out = env.run(&["--json", "backup", src.to_str().unwrap()]);
    assert_code(&out, 0, &["backup"]);
    common::snapshot_id(&out)
}

#[test]
fn ls_lists_a_snapshot_and_find_searches_every_snapshot() {
    let env = Env::init();
    let src = source(&env);
    let first = backup(&env, &src);
    std::fs::write(src.join("docs/new.txt"), b"new\n").unwrap();
    let second = backup(&env, &src);
    let s = src.to_str().unwrap();

    // Everything under the source, with the directories leading to it.
    let all = paths(&json(&env, &["ls", &second])["entries"]);
    for p in [
        "a.txt",
        "docs",
        "docs/b.txt",
        "docs/deep/c.sql",
        "docs/new.txt",
        "link",
    ] {
        assert!(
            all.contains(&format!("{s}/{p}")),
            "{p} missing from {all:?}"
        );
    }
    assert!(all.contains(s));
    assert!(!paths(&json(&env, &["ls", &first])["entries"]).contains(&format!("{s}/docs/new.txt")));

    // One directory, one level: the directory and its direct entries.
    let docs = format!("{s}/docs");
    let level = paths(&json(&env, &["ls", &second, &docs, "--no-recursive"])["entries"]);
    let want: BTreeSet<String> = ["", "/b.txt", "/deep", "/new.txt"]
        .iter()
        .map(|p| format!("{docs}{p}"))
        .collect();
    assert_eq!(level, want);

    // The long form shows kind, mode, size and a link's target.
    let long = env.ok(&["ls", "-l", &second]);
    let line = |name: &str| {
        long.lines()
            .find(|l| l.ends_with(name) || l.contains(&format!("{name} ->")))
            .unwrap_or_else(|| panic!("no line for {name} in\n{long}"))
            .to_string()
    };
    assert!(line("/docs").starts_with('d'), "{long}");
    assert!(line("/docs/b.txt").starts_with("-rw"), "{long}");
    assert!(line("/docs/b.txt").contains("97.7 KiB"), "{long}");
    assert!(line("/link").starts_with('l') && line("/link").ends_with("-> a.txt"));

    // A path the snapshot lacks: exit 20, named.
    let out = env.run(&["ls", &second, &format!("{s}/nope")]);
    assert_code(&out, 20, &["ls", "nope"]);
    assert!(common::stderr(&out).contains("nope"));

    // find: names by glob, in every snapshot that has them, oldest first.
    let found = json(&env, &["find", "*.txt"]);
    let results = found["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["snapshot"]["id"].as_str().unwrap(), first);
    assert_eq!(results[0]["matches"].as_array().unwrap().len(), 2);
    assert_eq!(results[1]["matches"].as_array().unwrap().len(), 3);
    assert_eq!(found["matches"], 5);
    // One snapshot; a pattern with a slash matches whole paths.
    let deep = json(&env, &["find", "-s", &first, "**/deep/*"]);
    assert_eq!(deep["matches"], 1);
    assert_eq!(
        deep["results"][0]["matches"][0]["path"].as_str().unwrap(),
        format!("{s}/docs/deep/c.sql")
    );
    // Case, and nothing found (not an error).
    assert_eq!(json(&env, &["find", "C.SQL"])["matches"], 0);
    assert_eq!(json(&env, &["find", "-i", "C.SQL"])["matches"], 2);
    assert!(env.ok(&["find", "nothing*"]).contains("no entry matches"));
    // A malformed pattern is a usage error.
    assert_code(&env.run(&["find", "[a"]), 2, &["find", "[a"]);
}

#[test]
fn diff_names_what_changed_and_the_bytes_it_added() {
    let env = Env::init();
    let src = source(&env);
    let first = backup(&env, &src);
    let s = src.to_str().unwrap();

    // Same content again: nothing differs, and nothing was added but a
    // tree or two (the scratch directory above the source changed time).
    let again = backup(&env, &src);
    let same = json(&env, &["diff", &first, &again]);
    assert_eq!(same["changes"], Value::Array(vec![]));
    assert!(same["added"]["raw"].as_u64().unwrap() < 4096, "{same}");

    std::fs::write(src.join("docs/b.txt"), pseudo_random(100_000, 2)).unwrap();
    std::fs::remove_file(src.join("docs/deep/c.sql")).unwrap();
    std::fs::remove_dir(src.join("docs/deep")).unwrap();
    std::fs::create_dir(src.join("more")).unwrap();
    std::fs::write(src.join("more/d.txt"), b"d\n").unwrap();
    std::fs::set_permissions(src.join("a.txt"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let third = backup(&env, &src);

    let d = json(&env, &["diff", &first, &third, "--metadata"]);
    let changes: BTreeSet<(String, String)> = d["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| {
            // Directories above the source changed time too: left out.
            let p = c["path"].as_str().unwrap().strip_prefix(s)?;
            Some((c["change"].as_str().unwrap().to_string(), p.to_string()))
        })
        .collect();
    let want: BTreeSet<(String, String)> = [
        ("modified", "/docs/b.txt"),
        ("removed", "/docs/deep"),
        ("removed", "/docs/deep/c.sql"),
        ("added", "/more"),
        ("added", "/more/d.txt"),
        ("metadata", "/a.txt"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    // Directories whose entries changed also changed time; ignore those.
    let found: BTreeSet<_> = changes
        .iter()
        .filter(|(c, p)| !(c == "metadata" && p != "/a.txt"))
        .cloned()
        .collect();
    assert_eq!(found, want, "{}", d["changes"]);
    assert_eq!(d["counts"]["files_changed"], 1);
    assert_eq!(d["counts"]["files_added"], 1);
    assert_eq!(d["counts"]["files_removed"], 1);
    assert_eq!(d["counts"]["dirs_added"], 1);
    assert_eq!(d["counts"]["dirs_removed"], 1);
    // The new random content of b.txt is what the third snapshot added
    // (plus trees); the old one is what it no longer has.
    let added = d["added"]["raw"].as_u64().unwrap();
    let removed = d["removed"]["raw"].as_u64().unwrap();
    assert!((100_000..120_000).contains(&added), "added {added}");
    assert!((100_000..120_000).contains(&removed), "removed {removed}");
    assert!(
        d["added"]["stored"].as_u64().unwrap() >= 100_000,
        "random data does not compress"
    );

    // Without --metadata the mode change is not listed; the text form
    // uses restic's markers.
    let text = env.ok(&["diff", &first, &third]);
    assert!(text.contains(&format!("M    {s}/docs/b.txt")), "{text}");
    assert!(text.contains(&format!("-    {s}/docs/deep/")), "{text}");
    assert!(text.contains(&format!("+    {s}/more/d.txt")), "{text}");
    assert!(!text.contains("a.txt"), "{text}");
    assert!(
        text.contains("Files:       1 new, 1 removed, 1 changed"),
        "{text}"
    );
}

#[test]
fn stats_counts_each_blob_once_and_what_each_snapshot_added() {
    // Every blob whole, so that random data stores about its plaintext (a
    // chunk cut anew where the dump grew would be a small delta).
    let env = Env::init_with(&["--no-delta"]);
    let base = pseudo_random(1 << 20, 7);
    let mut grown = base.clone();
    grown.extend(pseudo_random(256 << 10, 8));
    let a = env.backup_stdin(
        &base,
        &[
            "--stdin-filename",
            "db.sql",
            "--time",
            "2026-01-01T00:00:00Z",
        ],
    );
    let b = env.backup_stdin(
        &base,
        &[
            "--stdin-filename",
            "db.sql",
            "--time",
            "2026-01-02T00:00:00Z",
        ],
    );
    let c = env.backup_stdin(
        &grown,
        &[
            "--stdin-filename",
            "db.sql",
            "--time",
            "2026-01-03T00:00:00Z",
        ],
    );

    let st = json(&env, &["stats"]);
    assert_eq!(st["snapshots"], 3);
    let restore = st["restore_size"].as_u64().unwrap();
    assert_eq!(restore, 2 * base.len() as u64 + grown.len() as u64);
    let unique = st["unique"]["raw"].as_u64().unwrap();
    // The grown dump's data once, plus a few small trees (the last chunk
    // before the appended part may be cut differently).
    assert!(
        unique >= grown.len() as u64 && unique < grown.len() as u64 + 200_000,
        "{unique}"
    );
    let dedup = st["dedup_ratio"].as_f64().unwrap();
    assert!((restore as f64 / unique as f64 - dedup).abs() < 1e-9);
    assert!(dedup > 2.0, "{dedup}");
    // Stored bytes of random data are about the plaintext, and within what
    // the packs hold.
    let stored = st["stored"].as_u64().unwrap();
    assert!(stored >= unique && stored <= st["pack_bytes"].as_u64().unwrap());

    let per = st["per_snapshot"].as_array().unwrap();
    let ids: Vec<&str> = per.iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [a.as_str(), b.as_str(), c.as_str()], "oldest first");
    assert!(per[0]["added"]["raw"].as_u64().unwrap() >= base.len() as u64);
    assert!(
        per[1]["added"]["raw"].as_u64().unwrap() < 4096,
        "same data again adds only a tree"
    );
    let third = per[2]["added"]["raw"].as_u64().unwrap();
    assert!(
        (256 << 10..(256 << 10) + 200_000).contains(&third),
        "{third}"
    );

    // One snapshot alone: its own data, no dedup across nights.
    let one = json(&env, &["stats", &b]);
    assert_eq!(one["snapshots"], 1);
    assert!(one["dedup_ratio"].as_f64().unwrap() < 1.01);
    // The table names every snapshot and the totals.
    let text = env.ok(&["stats"]);
    for id in [&a, &b, &c] {
        assert!(text.contains(&id[..8]), "{text}");
    }
    assert!(text.contains("Dedup ratio:"), "{text}");
}

#[test]
fn completions_and_man_pages_cover_every_subcommand() {
    let env = Env::empty();
    let help = env.ok(&["--help"]);
    let subcommands: Vec<String> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        // Long descriptions wrap onto lines indented further.
        .filter(|l| !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect();
    assert!(subcommands.len() > 15, "{help}");

    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = env.ok(&["completions", shell]);
        for sub in &subcommands {
            assert!(
                script.contains(sub.as_str()),
                "{shell} completion lacks {sub}"
            );
        }
    }
    assert_code(
        &env.run(&["completions", "tcsh"]),
        2,
        &["completions", "tcsh"],
    );

    let page = env.ok(&["man"]);
    assert!(page.contains(".TH cairn 1"), "{page}");
    let dir = env.path("man");
    env.ok(&["man", "--dir", dir.to_str().unwrap()]);
    for sub in &subcommands {
        let p = dir.join(format!("cairn-{sub}.1"));
        let text = std::fs::read_to_string(&p).unwrap_or_else(|_| panic!("no {}", p.display()));
        // roff escapes the dash of wal-push.
        let synopsis = format!("cairn {}", sub.replace('-', "\\-"));
        assert!(text.contains(&synopsis), "{}: {synopsis}", p.display());
    }
    assert!(dir.join("cairn-repair-index.1").exists());
}
