//! The exit-code table of `cairn --help` and the README, tested against
//! the behaviour (issue 21 item 5): the two tables list the same codes,
//! and each code is produced by the situation the table gives it, either
//! here (the ones cheap to cause) or by the named end-to-end test that
//! causes it with what it needs (PostgreSQL, a full file system, an S3
//! server that answers 503).

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use common::{assert_code, fake_dump, stderr, Env};

/// The codes of the table at the end of `cairn --help`.
fn help_codes() -> BTreeSet<i32> {
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("--help")
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let table = text
        .split("Exit codes:")
        .nth(1)
        .expect("--help ends with the exit-code table");
    table
        .lines()
        .filter_map(|l| {
            let t = l.trim_start();
            // A row starts with the code, then at least two spaces.
            let (code, rest) = t.split_once("  ")?;
            (l.len() - t.len() <= 4 && !rest.is_empty())
                .then(|| code.parse().ok())
                .flatten()
        })
        .collect()
}

/// The codes of the README's table (`| 12 | ... |`).
fn readme_codes() -> BTreeSet<i32> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split("### Exit codes")
        .nth(1)
        .expect("README has an Exit codes section");
    section
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| l.split('|').nth(1)?.trim().parse().ok())
        .collect()
}

/// Codes whose situation needs more than a scratch repository, with the
/// end-to-end test (file, function) that causes each and asserts it.
const ELSEWHERE: &[(i32, &str, &str)] = &[
    (
        1,
        "hostile.rs",
        "a_503_from_object_storage_is_named_and_retries_are_shown_with_v",
    ),
    (
        3,
        "faults.rs",
        "unreadable_file_gives_exit_3_and_a_snapshot_without_it",
    ),
    (
        11,
        "prune.rs",
        "backup_refuses_to_commit_when_reused_data_was_deleted",
    ),
    (23, "faults.rs", "full_disk_during_backup"),
    (
        25,
        "wal.rs",
        "a_base_backup_taken_from_a_standby_restores_with_the_primarys_archive",
    ),
    (
        28,
        "wal.rs",
        "postgres_archives_through_wal_push_and_wal_fetch_restores_it",
    ),
    (
        29,
        "wal.rs",
        "wal_of_another_cluster_is_refused_and_the_primary_keeps_archiving",
    ),
    (
        30,
        "wal.rs",
        "pg_check_confirms_archiving_end_to_end_and_names_what_is_wrong",
    ),
    (31, "mount.rs", "mount_refuses_clearly_where_it_cannot"),
    (
        130,
        "faults.rs",
        "interrupted_backup_exits_130_and_commits_nothing",
    ),
];

/// The body of test `name` in `tests/<file>` (to the next `#[test]`).
fn test_body(file: &str, name: &str) -> String {
    let path = format!("{}/tests/{file}", env!("CARGO_MANIFEST_DIR"));
    let src = std::fs::read_to_string(&path).unwrap();
    let start = src
        .find(&format!("fn {name}("))
        .unwrap_or_else(|| panic!("{path} has no test {name}"));
    let rest = &src[start..];
    let end = rest.find("#[test]").unwrap_or(rest.len());
    rest[..end].to_string()
}

#[test]
fn the_help_and_readme_tables_list_the_same_codes_and_each_is_caused() {
    let help = help_codes();
    assert!(help.len() > 15, "parsed the table: {help:?}");
    assert_eq!(
        help,
        readme_codes(),
        "--help and README list the same codes"
    );

    let here = caused_here();
    for (code, file, name) in ELSEWHERE {
        let body = test_body(file, name);
        assert!(
            body.contains(&format!("assert_code(&out, {code},")),
            "{file}::{name} does not assert exit {code}"
        );
    }
    let covered: BTreeSet<i32> = here
        .iter()
        .copied()
        .chain(ELSEWHERE.iter().map(|(c, _, _)| *c))
        .collect();
    assert_eq!(
        covered, help,
        "every documented code is caused by a test, and no test relies on an undocumented one"
    );
}

/// Causes each cheap code against a scratch repository; returns the codes.
fn caused_here() -> Vec<i32> {
    let env = Env::init();
    let mut seen = Vec::new();
    let mut expect = |out: std::process::Output, code: i32, what: &str| {
        assert_code(&out, code, &[what]);
        assert!(
            code == 0 || !stderr(&out).trim().is_empty() || !out.stdout.is_empty(),
            "{what}: says why"
        );
        seen.push(code);
    };
    let dump = fake_dump(300, 41);

    expect(
        env.run_stdin(&["backup", "-", "--stdin-filename", "shop.sql"], &dump),
        0,
        "a backup",
    );
    expect(
        env.run(&["snapshots", "--no-such-option"]),
        2,
        "an unknown option",
    );
    expect(
        Command::new(env!("CARGO_BIN_EXE_cairn"))
            .env("CAIRN_PASSWORD", common::PASSWORD)
            .arg("-r")
            .arg(env.path("nowhere"))
            .arg("snapshots")
            .output()
            .unwrap(),
        10,
        "a repository that does not exist",
    );
    expect(
        env.cmd()
            .env("CAIRN_PASSWORD", "wrong")
            .arg("snapshots")
            .output()
            .unwrap(),
        12,
        "a wrong password",
    );
    let mut add = vec!["key", "add", "--write-only"];
    add.extend(common::FAST_KDF);
    let out = env
        .cmd()
        .env("CAIRN_NEW_PASSWORD", "writer")
        .args(&add)
        .output()
        .unwrap();
    assert_code(&out, 0, &add);
    expect(
        env.cmd()
            .env("CAIRN_PASSWORD", "writer")
            .arg("snapshots")
            .output()
            .unwrap(),
        13,
        "a write-only key listing snapshots",
    );
    expect(
        env.run(&["status", "--max-age", "1d", "--host", "no-such-host"]),
        14,
        "status --max-age with no snapshot",
    );
    expect(
        env.run(&["backup", env.path("missing").to_str().unwrap()]),
        20,
        "a missing backup source",
    );
    expect(
        env.run(&["backup", "--command", "exit 3", "--stdin-filename", "x.sql"]),
        21,
        "a dump command that fails",
    );
    expect(
        env.run(&["restore", "0000dead", "--target", "/tmp/x"]),
        24,
        "an unknown snapshot",
    );
    let mut init = vec!["init"];
    init.extend(common::FAST_KDF);
    expect(env.run(&init), 26, "init over a repository");
    expect(
        env.run_stdin(&["backup", "-", "--stdin-filename", "shop.sql"], b""),
        27,
        "an empty stream",
    );

    // Damage: every pack's last byte flipped.
    let mut flipped = 0;
    let mut todo = vec![env.repo.join("data")];
    while let Some(dir) = todo.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                let mut bytes = std::fs::read(&p).unwrap();
                let last = bytes.len() - 1;
                bytes[last] ^= 0xff;
                std::fs::write(&p, bytes).unwrap();
                flipped += 1;
            }
        }
    }
    assert!(flipped > 0);
    expect(env.run(&["check", "--read-data"]), 22, "a corrupt pack");

    // A repository of a format version this cairn does not read: the
    // version byte of the config's header, with the config's checksum
    // (BLAKE3 of the rest, at its end) made again as a newer cairn would.
    let config = env.repo.join("config");
    let mut bytes = std::fs::read(&config).unwrap();
    bytes[5] = 99;
    let body = bytes.len() - 32;
    let sum = blake3::hash(&bytes[..body]);
    bytes[body..].copy_from_slice(sum.as_bytes());
    std::fs::write(&config, bytes).unwrap();
    expect(env.run(&["snapshots"]), 25, "a newer repository format");
    seen
}

/// Every `"CAIRN_…"` and `"AWS_…"` string in the sources under `dir`.
fn variables_in(dir: &std::path::Path, out: &mut BTreeSet<String>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            variables_in(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            let src = std::fs::read_to_string(&p).unwrap();
            for prefix in ["\"CAIRN_", "\"AWS_"] {
                for (at, _) in src.match_indices(prefix) {
                    let rest = &src[at + 1..];
                    let end = rest
                        .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
                        .unwrap_or(rest.len());
                    if rest[end..].starts_with('"') && end > prefix.len() {
                        out.insert(rest[..end].to_string());
                    }
                }
            }
        }
    }
}

/// Issue 21 item 8: the table is printed once (`cairn --help`, the man
/// page's EXIT STATUS), each subcommand's help points to it, global options
/// have their own heading, and the man page's ENVIRONMENT lists every
/// variable the sources read.
#[test]
fn the_table_is_printed_once_and_the_man_page_lists_every_variable() {
    let cairn = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
            .args(args)
            .output()
            .unwrap();
        assert_code(&out, 0, args);
        String::from_utf8(out.stdout).unwrap()
    };
    let marker = "repository format not supported";
    assert_eq!(cairn(&["--help"]).matches(marker).count(), 1);
    for sub in [
        &["backup", "--help"][..],
        &["repair", "index", "--help"],
        &["status", "-h"],
    ] {
        let help = cairn(sub);
        assert!(!help.contains(marker), "{sub:?} repeats the table");
        assert!(help.contains("EXIT STATUS"), "{sub:?} points to the table");
        assert_eq!(
            help.matches("Global options:").count(),
            1,
            "{sub:?}: {help}"
        );
    }

    let page = cairn(&["man"]);
    let section = |name: &str| {
        let start = page
            .find(&format!(".SH \"{name}\""))
            .or_else(|| page.find(&format!(".SH {name}")))
            .unwrap_or_else(|| panic!("no {name} section"));
        let rest = &page[start + 4..];
        rest[..rest.find(".SH").unwrap_or(rest.len())].to_string()
    };
    let status = section("EXIT STATUS");
    for code in help_codes() {
        assert!(
            status.contains(&format!(".TP\n\\fB{code}\\fR")),
            "EXIT STATUS lacks {code}"
        );
    }
    let environment = section("ENVIRONMENT");
    let mut used = BTreeSet::new();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    variables_in(&root.join("cli"), &mut used);
    variables_in(&root.join("core/src"), &mut used);
    assert!(used.len() > 15, "{used:?}");
    for var in &used {
        assert!(
            environment.contains(var.as_str()),
            "ENVIRONMENT lacks {var}"
        );
    }
}
