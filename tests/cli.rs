//! The nightly loop through the real binary: init, backup from stdin and
//! from a command, snapshots, restore and dump by ID, prefix and latest.

#![allow(clippy::unwrap_used)]

mod common;

use common::{assert_code, fake_dump, stderr, stdout, Env};
use serde_json::Value;
use std::process::Command;

#[test]
fn stdin_backups_restore_by_id_prefix_and_latest() {
    let env = Env::init();
    let nights: Vec<Vec<u8>> = (0..3)
        .map(|n| fake_dump(20_000 + n * 300, 7 + n as u64))
        .collect();
    let ids: Vec<String> = nights
        .iter()
        .map(|d| env.backup_stdin(d, &["--stdin-filename", "shop.sql"]))
        .collect();
    for (id, dump) in ids.iter().zip(&nights) {
        assert_eq!(&env.dump(id, "shop.sql"), dump);
        assert_eq!(&env.dump(&id[..6], "/shop.sql"), dump);
    }
    assert_eq!(&env.dump("latest", "shop.sql"), nights.last().unwrap());
    let target = env.path("out");
    env.ok(&[
        "restore",
        &ids[0][..8],
        "--target",
        target.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read(target.join("shop.sql")).unwrap(), nights[0]);
}

#[test]
fn stdin_with_a_parent_still_stores_what_was_read() {
    // rustic 0.11 stored nothing new for `backup -` with a parent.
    let env = Env::init();
    let first = fake_dump(5_000, 1);
    let second = fake_dump(5_000, 2);
    let a = env.backup_stdin(&first, &[]);
    let b = env.backup_stdin(&second, &[]);
    let snaps = env.snapshots();
    let sb = snaps
        .iter()
        .find(|s| s["id"] == Value::String(b.clone()))
        .unwrap();
    assert_eq!(
        sb["parent"],
        Value::String(a.clone()),
        "the first is the parent"
    );
    assert_eq!(env.dump(&b, "stdin"), second);
    assert_eq!(env.dump(&a, "stdin"), first);
}

/// Issue 21 item 1: `pg_dump -d nosuchdb | cairn backup -` gives cairn an
/// empty stream, as does a dump command that exits 0 without output: both
/// are refused (exit 27, no snapshot). Saved on purpose (`--allow-empty`),
/// `status` flags the series (exit 14) and a drill of it fails.
#[test]
fn an_empty_stream_is_refused_unless_allowed_and_then_flagged() {
    let env = Env::init();
    let out = env.run_stdin(&["backup", "-", "--stdin-filename", "shop.sql"], b"");
    assert_code(&out, 27, &["backup of an empty stdin"]);
    let err = stderr(&out);
    assert!(
        err.contains("shop.sql is empty") && err.contains("--allow-empty"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    let args = [
        "backup",
        "--command",
        "true",
        "--stdin-filename",
        "shop.sql",
    ];
    let out = env.run(&args);
    assert_code(&out, 27, &args);
    assert!(stderr(&out).contains("wrote nothing"), "{}", stderr(&out));
    assert!(env.snapshots().is_empty(), "no snapshot of an empty dump");

    let good = env.backup_stdin(&fake_dump(500, 3), &["--stdin-filename", "shop.sql"]);
    let out = env.run(&["status", "--max-age", "1d"]);
    assert_code(&out, 0, &["status of a good series"]);

    let out = env.run_stdin(
        &[
            "--json",
            "backup",
            "-",
            "--stdin-filename",
            "shop.sql",
            "--allow-empty",
        ],
        b"",
    );
    assert_code(&out, 0, &["backup --allow-empty"]);
    assert!(stderr(&out).contains("empty"), "{}", stderr(&out));
    let empty = common::snapshot_id(&out);
    assert!(env.dump(&empty, "shop.sql").is_empty());
    assert_ne!(empty, good);

    // Saved on purpose: recorded so, and not flagged.
    let snaps = env.snapshots();
    let saved = snaps.iter().find(|s| s["id"] == empty.as_str()).unwrap();
    assert_eq!(
        saved["source"]["empty_allowed"],
        Value::Bool(true),
        "{saved}"
    );
    let out = env.run(&["status", "--max-age", "1d"]);
    assert_code(&out, 0, &["status after an empty stream saved on purpose"]);

    // An empty stream saved without the mark (an older cairn saved them
    // unasked): status flags the series.
    let empty = {
        use cairn_core::repo::repository::{self, CacheLocation};
        let backend =
            cairn_core::backend::open(env.repo.to_str().unwrap(), &Default::default()).unwrap();
        let repo = repository::locate(backend)
            .unwrap()
            .unlock(common::PASSWORD.as_bytes(), &CacheLocation::Temporary)
            .unwrap();
        let mut old = repo
            .load_snapshots()
            .unwrap()
            .good
            .into_iter()
            .find(|s| s.id.to_hex() == empty)
            .unwrap();
        old.source.empty_allowed = false;
        old.time = cairn_core::time::SnapshotTime::now();
        repo.save_snapshot(&old).unwrap().to_hex()
    };
    for args in [&["status"][..], &["status", "--max-age", "1d"]] {
        let out = env.run(args);
        assert_code(&out, 14, args);
        assert!(stdout(&out).contains("EMPTY"), "{}", stdout(&out));
    }
    let out = env.run(&["--json", "status"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["series"][0]["empty"], Value::Bool(true), "{v}");
    let out = env.run(&["-q", "status"]);
    assert!(stderr(&out).contains("cairn: empty:"), "{}", stderr(&out));

    let out = env.run(&["drill", &empty]);
    assert_ne!(
        out.status.code(),
        Some(0),
        "a drill of an empty stream fails"
    );
    assert!(stderr(&out).contains("empty stream"), "{}", stderr(&out));
    let out = env.run(&["drill", &good]);
    assert_code(&out, 0, &["drill of the good snapshot"]);
}

#[test]
fn command_backup_commits_only_on_success() {
    let env = Env::init();
    let args = [
        "--json",
        "backup",
        "--command",
        "printf 'hello\\n'; printf 'world\\n'",
        "--stdin-filename",
        "x.sql",
    ];
    let out = env.run(&args);
    assert_code(&out, 0, &args);
    let id = common::snapshot_id(&out);
    assert_eq!(env.dump(&id, "x.sql"), b"hello\nworld\n");
    let snap = &env.snapshots()[0];
    assert_eq!(snap["source"]["kind"], "command");
    assert_eq!(snap["source"]["exit_status"], 0);

    // Fails after writing output: no snapshot, the command's stderr shown.
    let args = [
        "backup",
        "--command",
        "seq 1 100000; echo 'dump broke' >&2; exit 3",
    ];
    let out = env.run(&args);
    assert_code(&out, 21, &args);
    assert!(stderr(&out).contains("dump broke"));
    assert!(stderr(&out).contains("exited with status 3"));
    // Killed by a signal: no snapshot either.
    let args = ["backup", "--command", "seq 1 1000; kill -9 $$"];
    let out = env.run(&args);
    assert_code(&out, 21, &args);
    assert!(stderr(&out).contains("signal 9"), "{}", stderr(&out));
    // A command that does not exist.
    let args = ["backup", "--command", "/no/such/pg_dump"];
    assert_code(&env.run(&args), 21, &args);
    assert_eq!(env.snapshots().len(), 1);
}

#[test]
fn snapshots_table_json_and_filters() {
    let env = Env::init();
    env.backup_stdin(
        b"a",
        &[
            "--host",
            "db1",
            "--tag",
            "nightly",
            "--time",
            "2026-01-02 03:00:00",
        ],
    );
    env.backup_stdin(
        b"b",
        &[
            "--host",
            "db2",
            "--tag",
            "nightly,weekly",
            "--time",
            "2026-01-03T03:00:00+01:00",
        ],
    );
    env.backup_stdin(b"c", &["--host", "db1", "--time", "2026-01-04T03:00:00Z"]);
    let all = env.snapshots();
    assert_eq!(all.len(), 3);
    for s in &all {
        for key in [
            "id", "short_id", "time", "host", "hostname", "tags", "paths", "summary",
        ] {
            assert!(s.get(key).is_some(), "snapshots --json lacks {key}: {s}");
        }
        assert_eq!(
            s["short_id"].as_str().unwrap(),
            &s["id"].as_str().unwrap()[..8]
        );
        assert!(s["summary"]["total_bytes_processed"].as_u64().is_some());
    }
    assert_eq!(all[1]["time"], "2026-01-03T03:00:00+01:00");
    assert_eq!(all[2]["time"], "2026-01-04T03:00:00+00:00");
    let only = |args: &[&str]| -> usize {
        let mut a = vec!["--json", "snapshots"];
        a.extend(args);
        serde_json::from_str::<Vec<Value>>(&env.ok(&a))
            .unwrap()
            .len()
    };
    assert_eq!(only(&["--host", "db1"]), 2);
    assert_eq!(only(&["--tag", "nightly"]), 2);
    assert_eq!(only(&["--tag", "nightly,weekly"]), 1);
    assert_eq!(only(&["--path", "/stdin"]), 3);
    // latest honours filters.
    assert_eq!(env.dump("latest", "stdin"), b"c");
    let out = env.run(&["dump", "latest", "stdin", "--host", "db2"]);
    assert_code(&out, 0, &["dump latest --host db2"]);
    assert_eq!(out.stdout, b"b");
    let out = env.run(&["dump", "latest", "stdin", "--tag", "weekly"]);
    assert_eq!(out.stdout, b"b");
    // The human table names every snapshot.
    let table = env.ok(&["snapshots"]);
    for s in &all {
        assert!(table.contains(s["short_id"].as_str().unwrap()), "{table}");
    }
    assert!(table.contains("3 snapshots"));
}

#[test]
fn ambiguous_and_unknown_snapshot_ids() {
    let env = Env::init();
    // Enough snapshots that two share a first hex digit.
    let ids: Vec<String> = (0..20u8).map(|i| env.backup_stdin(&[i], &[])).collect();
    let digit = (0..16)
        .map(|d| format!("{d:x}"))
        .find(|d| ids.iter().filter(|id| id.starts_with(d.as_str())).count() >= 2)
        .unwrap();
    let out = env.run(&["dump", &digit, "stdin"]);
    assert_code(&out, 24, &["dump", &digit]);
    let err = stderr(&out);
    assert!(err.contains("ambiguous"), "{err}");
    for id in ids.iter().filter(|id| id.starts_with(digit.as_str())) {
        assert!(err.contains(&id[..8]), "candidate {id} not listed: {err}");
    }
    let out = env.run(&["restore", "zz", "--target", "/tmp/never"]);
    assert_code(&out, 24, &["restore zz"]);
    let unknown = if ids.iter().any(|i| i.starts_with("0000")) {
        "ffff"
    } else {
        "0000"
    };
    assert_code(&env.run(&["dump", unknown, "stdin"]), 24, &["dump unknown"]);
    assert_code(
        &env.run(&["dump", "latest", "no-such-file"]),
        20,
        &["dump missing file"],
    );
}

#[test]
fn backup_json_reports_sizes() {
    let env = Env::init();
    let data = fake_dump(30_000, 3);
    let out = env.run_stdin(
        &["--json", "backup", "-", "--stdin-filename", "d.sql"],
        &data,
    );
    assert_code(&out, 0, &["backup --json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["total_bytes_processed"].as_u64(), Some(data.len() as u64));
    let added = v["data_added"].as_u64().unwrap();
    let packed = v["data_added_packed"].as_u64().unwrap();
    assert!(added >= data.len() as u64);
    assert!(packed < added, "text compresses: {packed} < {added}");
    // Human output, and -q silence.
    let out = env.run_stdin(&["backup", "-"], &data);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("snapshot ") && text.contains(" saved"),
        "{text}"
    );
    let out = env.run_stdin(&["-q", "backup", "-"], &data);
    assert!(out.stdout.is_empty() && out.stderr.is_empty());
}

#[test]
fn help_documents_exit_codes() {
    let env = Env::empty();
    let out = env.ok(&["--help"]);
    for code in ["10", "11", "12", "21", "22", "130"] {
        assert!(
            out.contains(&format!("  {code} ")) || out.contains(&format!(" {code}    ")),
            "exit code {code} missing in --help"
        );
    }
    assert!(env.ok(&["backup", "--help"]).contains("--command"));
}

#[test]
fn usage_errors() {
    let env = Env::init();
    assert_code(&env.run(&["backup"]), 2, &["backup without source"]);
    assert_code(
        &env.run(&["backup", "-", "/etc"]),
        2,
        &["backup - and path"],
    );
    assert_code(
        &env.run(&["backup", "-", "--stdin-filename", "a/b"]),
        2,
        &["bad stdin filename"],
    );
    assert_code(
        &env.run(&["backup", "-", "--time", "yesterday"]),
        2,
        &["bad time"],
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["snapshots"])
        .env_remove("CAIRN_REPOSITORY")
        .env("CAIRN_PASSWORD", "x")
        .output()
        .unwrap();
    assert_code(&out, 2, &["snapshots without repo"]);
    assert!(stderr(&out).contains("CAIRN_REPOSITORY"));
}

/// `init` turns delta compression on with 32 KiB chunks unless told
/// otherwise, and a night that changed one row then stores a delta, not
/// the chunk: what `init --json` says is what the repository does.
#[test]
fn init_defaults_to_deltas_in_32k_chunks_and_no_delta_stores_chunks_whole() {
    let night1 = fake_dump(20_000, 4);
    let mut night2 = night1.clone();
    let mid = night2.len() / 2;
    night2[mid..mid + 6].copy_from_slice(b"EDITED");
    for (extra, delta, avg) in [
        (&[][..], true, 32 * 1024),
        (&["--delta"][..], true, 32 * 1024),
        (&["--no-delta"][..], false, 8 * 1024),
        (&["--compression", "0"][..], false, 8 * 1024),
        (&["--chunk-size", "16KiB"][..], true, 16 * 1024),
    ] {
        let env = Env::empty();
        let mut args = vec!["--json", "init"];
        args.extend(common::FAST_KDF);
        args.extend(extra);
        let v: Value = serde_json::from_str(&env.ok(&args)).unwrap();
        assert_eq!(v["delta"], delta, "{extra:?}: {v}");
        assert_eq!(v["chunk_size"], avg, "{extra:?}: {v}");
        env.backup_stdin(&night1, &["--stdin-filename", "db.sql"]);
        let out = env.run_stdin(
            &["--json", "backup", "-", "--stdin-filename", "db.sql"],
            &night2,
        );
        assert_code(&out, 0, &["second backup"]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let second = v["snapshot_id"].as_str().unwrap();
        // The second night alone needs the base of its delta, a chunk of
        // the first night it does not contain; stored whole, nothing else.
        let bases = env.delta_bases_stored(second);
        assert_eq!(bases > 0, delta, "{extra:?}: {bases}");
        let restored = env.ok(&["dump", "latest", "db.sql"]);
        assert!(restored.as_bytes() == night2, "{extra:?}");
    }
    // Contradictions are usage errors, and create nothing.
    for bad in [
        &["--delta", "--no-delta"][..],
        &["--delta", "--compression", "0"][..],
    ] {
        let env = Env::empty();
        let mut args = vec!["init"];
        args.extend(common::FAST_KDF);
        args.extend(bad);
        assert_code(&env.run(&args), 2, &args);
        assert!(!env.repo.exists(), "{bad:?}");
    }
}

/// `cairn dump latest f | head` is the reader's choice: exit 0, silent.
/// A broken pipe anywhere else is a failure (the check that tells them
/// apart looks at stdout itself; see also the full-disk `pg restore` in
/// tests/wal.rs, which used to exit 0 on its own internal pipe).
#[test]
fn a_dump_into_a_reader_that_stops_early_exits_0_quietly() {
    use std::io::Read;
    let env = Env::init();
    let dump = fake_dump(200_000, 3);
    assert!(dump.len() > 4 << 20, "{}", dump.len());
    env.backup_stdin(&dump, &["--stdin-filename", "shop.sql"]);
    let mut child = env
        .cmd()
        .args(["dump", "latest", "shop.sql"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 1000];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    // The pipe's reader is gone now.
    let out = child.wait_with_output().unwrap();
    assert_code(&out, 0, &["dump into a closed pipe"]);
    assert_eq!(stderr(&out), "");
    assert_eq!(&first[..], &dump[..1000]);
}

/// Issue 21 item 2: a location of another tool's type (`rest:`, `b2:`, …)
/// is an error naming what cairn supports, never a local folder named
/// `rest:http:`; a local path with a colon is written `./a:b`, and
/// restic's `local:` prefix means a local directory.
#[test]
fn unknown_location_types_are_errors_not_local_folders() {
    let env = Env::init();
    let cwd = env.path("cwd");
    std::fs::create_dir_all(&cwd).unwrap();
    let password = common::PASSWORD;
    let cairn = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_cairn"))
            .current_dir(&cwd)
            .env("CAIRN_PASSWORD", password)
            .env_remove("CAIRN_REPOSITORY")
            .args(args)
            .output()
            .unwrap()
    };
    for location in [
        "rest:http://host/repo",
        "b2:bucket:path",
        "gs:bucket:/path",
        "rclone:remote:path",
        "swift:container:/path",
        "https://host/repo",
    ] {
        for args in [
            &["-r", location, "init"][..],
            &["-r", location, "snapshots"],
        ] {
            let out = cairn(args);
            assert_code(&out, 2, args);
            let err = stderr(&out);
            assert!(
                err.contains("unknown repository type") && err.contains("s3:https://"),
                "{err}"
            );
            assert_eq!(err.trim().lines().count(), 1, "{err}");
        }
        // copy --to names its own location.
        let args = ["copy", "--to", location];
        let out = env.cmd().args(args).current_dir(&cwd).output().unwrap();
        assert_code(&out, 2, &args);
    }
    let left: Vec<_> = std::fs::read_dir(&cwd).unwrap().collect();
    assert!(
        left.is_empty(),
        "nothing created in the working directory: {left:?}"
    );

    let mut init = vec!["-r", "./a:b", "init"];
    init.extend(common::FAST_KDF);
    let out = cairn(&init);
    assert_code(&out, 0, &init);
    assert!(cwd.join("a:b").join("config").is_file());
    let local = format!("local:{}", cwd.join("a:b").display());
    let out = cairn(&["-r", &local, "snapshots"]);
    assert_code(&out, 0, &["snapshots of local:…"]);
}

/// Issue 21 item 3: `dump latest shop.sql` is the newest snapshot that
/// holds shop.sql, whatever other series were backed up since; restic's
/// `latest:path` works too.
#[test]
fn dump_latest_takes_the_newest_snapshot_holding_the_file() {
    let env = Env::init();
    let shop_old = fake_dump(400, 21);
    let shop_new = fake_dump(400, 22);
    let crm = fake_dump(300, 23);
    env.backup_stdin(&shop_old, &["--stdin-filename", "shop.sql"]);
    env.backup_stdin(&shop_new, &["--stdin-filename", "shop.sql"]);
    env.backup_stdin(&crm, &["--stdin-filename", "crm.sql"]);
    let tree = env.path("etc");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("hosts"), b"127.0.0.1 localhost\n").unwrap();
    let out = env.run(&["backup", tree.to_str().unwrap()]);
    assert_code(&out, 0, &["backup of a tree"]);

    let dump = |args: &[&str]| {
        let out = env.run(args);
        assert_code(&out, 0, args);
        out.stdout
    };
    assert_eq!(dump(&["dump", "latest", "shop.sql"]), shop_new);
    assert_eq!(dump(&["dump", "latest", "/shop.sql"]), shop_new);
    assert_eq!(dump(&["dump", "latest:shop.sql"]), shop_new);
    assert_eq!(dump(&["dump", "latest", "crm.sql"]), crm);
    let hosts = tree.join("hosts");
    assert_eq!(
        dump(&["dump", "latest", hosts.to_str().unwrap()]),
        b"127.0.0.1 localhost\n"
    );
    let folder = format!("latest:{}", tree.display());
    assert_eq!(dump(&["dump", &folder, "hosts"]), b"127.0.0.1 localhost\n");
    // Deleted since: the older copy comes with a warning naming both
    // snapshots.
    std::fs::write(tree.join("other"), b"x").unwrap();
    std::fs::remove_file(&hosts).unwrap();
    let out = env.run(&["backup", tree.to_str().unwrap()]);
    assert_code(&out, 0, &["backup of the tree without hosts"]);
    let out = env.run(&["dump", "latest", hosts.to_str().unwrap()]);
    assert_code(&out, 0, &["dump latest of a deleted file"]);
    assert_eq!(out.stdout, b"127.0.0.1 localhost\n");
    assert!(
        stderr(&out).contains("is not in snapshot") && stderr(&out).contains("writing it from"),
        "{}",
        stderr(&out)
    );

    let out = env.run(&["dump", "latest", "nothing.sql"]);
    assert_code(&out, 20, &["dump latest of a file no snapshot holds"]);
    assert!(
        stderr(&out).contains("/nothing.sql is in none of the 5 snapshots"),
        "{}",
        stderr(&out)
    );
    let out = env.run(&["dump", "latest"]);
    assert_code(&out, 2, &["dump without a file"]);
}

/// Issue 21 items 4 and 5: a missing second or new password names its own
/// variable and option, not CAIRN_PASSWORD (which is set); an empty
/// variable counts as unset; an unreadable password file exits 12.
#[test]
fn password_errors_name_the_password_that_is_missing() {
    let env = Env::init();
    env.backup_stdin(&fake_dump(100, 31), &["--stdin-filename", "shop.sql"]);
    let target = Env::init();
    let other = target.repo.to_str().unwrap();
    let fresh = env.path("fresh");
    let fresh = fresh.to_str().unwrap();
    let one_line = |out: &std::process::Output| {
        let err = stderr(out);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        err
    };

    let out = env.run(&["copy", "--to", other]);
    assert_code(&out, 12, &["copy --to without CAIRN_PASSWORD2"]);
    let err = one_line(&out);
    assert!(
        err.contains("CAIRN_PASSWORD2") && err.contains("--password-file2"),
        "{err}"
    );
    assert!(!err.contains("set CAIRN_PASSWORD,"), "{err}");

    let mut init = vec![
        "init",
        "--from",
        env.repo.to_str().unwrap(),
        "--copy-chunker-params",
    ];
    init.extend(common::FAST_KDF);
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .env("CAIRN_PASSWORD", common::PASSWORD)
        .arg("--repo")
        .arg(fresh)
        .args(&init)
        .output()
        .unwrap();
    assert_code(&out, 12, &init);
    assert!(
        one_line(&out).contains("CAIRN_PASSWORD2"),
        "{}",
        stderr(&out)
    );

    let out = env.run(&["key", "add"]);
    assert_code(&out, 12, &["key add without a new password"]);
    let err = one_line(&out);
    assert!(
        err.contains("CAIRN_NEW_PASSWORD") && err.contains("--new-password-file"),
        "{err}"
    );

    // An empty variable is unset: the password comes from CAIRN_PASSWORD.
    for var in [
        "CAIRN_PASSWORD_FILE",
        "CAIRN_PASSWORD_COMMAND",
        "CAIRN_CACHE_DIR",
    ] {
        let out = env.cmd().env(var, "").arg("snapshots").output().unwrap();
        assert_code(&out, 0, &[var, "= (empty)"]);
    }
    let out = env
        .cmd()
        .env("CAIRN_PASSWORD", "")
        .arg("snapshots")
        .output()
        .unwrap();
    assert_code(&out, 12, &["CAIRN_PASSWORD= (empty)"]);
    assert!(
        one_line(&out).contains("no password given"),
        "{}",
        stderr(&out)
    );

    let missing = env.path("no-such-password-file");
    let out = env
        .cmd()
        .env("CAIRN_PASSWORD_FILE", &missing)
        .arg("snapshots")
        .output()
        .unwrap();
    assert_code(&out, 12, &["an unreadable password file"]);
    assert!(
        one_line(&out).contains("no-such-password-file"),
        "{}",
        stderr(&out)
    );
}

/// Issue 21 item 9: on a terminal, restore, dump and copy show percent done
/// and time left (their totals are known); `script` gives cairn a terminal.
#[test]
fn progress_with_a_known_total_shows_percent_and_time_left() {
    if Command::new("script").arg("--version").output().is_err() {
        assert!(!common::in_ci(), "CI=true but script(1) is missing");
        eprintln!("SKIPPED: no script(1) to give cairn a terminal");
        return;
    }
    let env = Env::init();
    let data = fake_dump(200_000, 51);
    env.backup_stdin(&data, &["--stdin-filename", "big.sql"]);
    let target = Env::init();
    let exe = env!("CARGO_BIN_EXE_cairn");
    let on_terminal = |line: String| {
        let out = Command::new("script")
            .args(["-qec", &line, "/dev/null"])
            .env("CAIRN_PASSWORD", common::PASSWORD)
            .env("CAIRN_PASSWORD2", common::PASSWORD)
            .env("CAIRN_CACHE_DIR", &env.cache)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert_code(&out, 0, &[&line]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let repo = env.repo.display();
    let restored = env.path("restored");
    for (what, line) in [
        (
            "restored",
            format!(
                "{exe} -r {repo} restore latest --target {}",
                restored.display()
            ),
        ),
        (
            "dumped",
            format!(
                "{exe} -r {repo} dump latest big.sql > {}",
                env.path("big.out").display()
            ),
        ),
        (
            "copied",
            format!("{exe} -r {repo} copy --to {}", target.repo.display()),
        ),
    ] {
        let screen = on_terminal(line);
        assert!(
            screen.contains(what) && screen.contains('%') && screen.contains("left"),
            "{what}: {screen}"
        );
    }
    assert_eq!(std::fs::read(env.path("big.out")).unwrap(), data);
    assert_eq!(std::fs::read(restored.join("big.sql")).unwrap(), data);
}

/// Issue 23 item 4: `snapshots --latest N` keeps the newest N of each
/// host and paths (or --group-by) group, and `--group-by` lists groups,
/// each with its key in --json, as restic does.
#[test]
fn snapshots_latest_and_group_by() {
    let env = Env::init();
    let mut ids = Vec::new();
    for (host, file, day, tag) in [
        ("db1", "shop.sql", 1, "nightly"),
        ("db1", "shop.sql", 2, "nightly"),
        ("db1", "shop.sql", 3, "weekly"),
        ("db1", "crm.sql", 2, "nightly"),
        ("db2", "shop.sql", 1, "nightly"),
        ("db2", "shop.sql", 4, "nightly"),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (h, f, d, t))| (h, f, (d, i), t))
    {
        let time = format!("2026-11-0{}T0{}:00:00Z", day.0, day.1);
        let args = [
            "--stdin-filename",
            file,
            "--host",
            host,
            "--time",
            &time,
            "--tag",
            tag,
        ];
        ids.push(env.backup_stdin(&fake_dump(50, day.1 as u64), &args));
    }
    let listed = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["--json", "snapshots"];
        all.extend(args);
        let v: Value = serde_json::from_str(&env.ok(&all)).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_string())
            .collect()
    };
    // The newest of each host and paths, oldest first.
    assert_eq!(
        listed(&["--latest", "1"]),
        [ids[3].clone(), ids[2].clone(), ids[5].clone()]
    );
    assert_eq!(
        listed(&["--latest", "2"]),
        [
            ids[4].clone(),
            ids[1].clone(),
            ids[3].clone(),
            ids[2].clone(),
            ids[5].clone()
        ]
    );
    assert_eq!(listed(&[]).len(), 6);
    assert_eq!(
        listed(&["--latest", "1", "--host", "db2"]),
        [ids[5].clone()]
    );

    // Groups by host: keys, and the latest per group.
    let out = env.ok(&["--json", "snapshots", "--group-by", "host", "--latest", "2"]);
    let groups: Value = serde_json::from_str(&out).unwrap();
    let groups = groups.as_array().unwrap();
    assert_eq!(groups.len(), 2, "{out}");
    assert_eq!(groups[0]["group_key"]["hostname"], "db1");
    assert_eq!(groups[0]["group_key"]["paths"], Value::Null);
    let in_group = |g: &Value| -> Vec<String> {
        g["snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(in_group(&groups[0]), [ids[3].clone(), ids[2].clone()]);
    assert_eq!(in_group(&groups[1]), [ids[4].clone(), ids[5].clone()]);
    // By tags, as tables.
    let text = env.ok(&["snapshots", "-g", "tags"]);
    assert!(text.contains("snapshots for (tags [nightly]):"), "{text}");
    assert!(text.contains("snapshots for (tags [weekly]):"), "{text}");
    assert!(
        text.contains("5 snapshots") && text.contains("1 snapshots"),
        "{text}"
    );
    // A grouping cairn does not know: a usage error.
    let out = env.run(&["snapshots", "--group-by", "hostname"]);
    assert_code(&out, 2, &["snapshots --group-by hostname"]);
}

/// Issue 23 item 4: `tag --add/--remove/--set` write each changed
/// snapshot again with its new tags (new ID, the old one as `original`)
/// and delete the old one; the data restores as before.
#[test]
fn tag_adds_removes_and_sets_tags() {
    let env = Env::init();
    let data: Vec<Vec<u8>> = (0..3).map(|i| fake_dump(80, 10 + i)).collect();
    let a = env.backup_stdin(
        &data[0],
        &[
            "--stdin-filename",
            "a.sql",
            "--host",
            "db1",
            "--tag",
            "nightly",
        ],
    );
    let b = env.backup_stdin(
        &data[1],
        &[
            "--stdin-filename",
            "b.sql",
            "--host",
            "db1",
            "--tag",
            "nightly",
        ],
    );
    let c = env.backup_stdin(
        &data[2],
        &[
            "--stdin-filename",
            "c.sql",
            "--host",
            "db2",
            "--tag",
            "nightly",
        ],
    );
    let tags_of = |file: &str| -> (String, Vec<String>, Value) {
        let s = env
            .snapshots()
            .into_iter()
            .find(|s| s["paths"][0] == format!("/{file}"))
            .unwrap();
        let tags = s["tags"]
            .as_array()
            .map(|t| t.iter().map(|x| x.as_str().unwrap().to_string()).collect())
            .unwrap_or_default();
        (
            s["id"].as_str().unwrap().to_string(),
            tags,
            s["original"].clone(),
        )
    };
    let tag = |args: &[&str]| -> Value {
        let mut all = vec!["--json", "tag"];
        all.extend(args);
        serde_json::from_str(&env.ok(&all)).unwrap()
    };

    let v = tag(&["--add", "weekly", &a[..8]]);
    assert_eq!(v["changed"].as_array().unwrap().len(), 1, "{v}");
    let (id, tags, original) = tags_of("a.sql");
    assert_ne!(id, a);
    assert_eq!(tags, ["nightly", "weekly"]);
    assert_eq!(original, a.as_str());
    assert_eq!(env.snapshots().len(), 3);
    assert_eq!(env.dump(&id, "a.sql"), data[0]);
    // The same change again: nothing to write.
    let v = tag(&["--add", "weekly", &id]);
    assert_eq!(v["changed"].as_array().unwrap().len(), 0, "{v}");

    // By filter: db1's snapshots only; remove, then add.
    let v = tag(&["--host", "db1", "--remove", "nightly", "--add", "daily"]);
    assert_eq!(v["selected"], 2, "{v}");
    assert_eq!(tags_of("a.sql").1, ["weekly", "daily"]);
    assert_eq!(tags_of("b.sql").1, ["daily"]);
    assert_eq!(tags_of("c.sql").1, ["nightly"]);
    assert_eq!(tags_of("b.sql").2, b.as_str());
    // --set '' clears them.
    tag(&["--set", "", &c[..8]]);
    assert!(tags_of("c.sql").1.is_empty());
    env.ok(&["check", "--read-data"]);
    for (file, d) in ["a.sql", "b.sql", "c.sql"].iter().zip(&data) {
        assert_eq!(&env.dump("latest", file), d);
    }
    // Nothing asked: a usage error.
    let out = env.run(&["tag", &c[..8]]);
    assert_code(&out, 2, &["tag without a change"]);
}
