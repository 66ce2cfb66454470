//! Restore drills through the binary: a drill restores and verifies a
//! snapshot, records its outcome, and `snapshots`, `status` (with
//! `--max-drill-age` and `--prometheus`) and `forget --keep-drilled` use
//! the record; a corrupted pack or an incomplete dump fails the drill.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;

use common::{assert_code, pseudo_random, stderr, Env};
use serde_json::Value;

/// A plain pg_dump as far as the dump checker is concerned.
fn plain_dump(rows: usize, seed: u64, complete: bool) -> Vec<u8> {
    let mut d = b"--\n-- PostgreSQL database dump\n--\n\nCREATE TABLE t (a int, b text);\nCOPY t (a, b) FROM stdin;\n".to_vec();
    let body = common::fake_dump(rows, seed);
    d.extend_from_slice(&body);
    if complete {
        d.extend_from_slice(b"\n--\n-- PostgreSQL database dump complete\n--\n\n");
    }
    d
}

fn json(env: &Env, args: &[&str], code: i32) -> Value {
    let mut all = vec!["--json"];
    all.extend(args);
    let out = env.run(&all);
    assert_code(&out, code, &all);
    serde_json::from_slice(&out.stdout).unwrap()
}

fn drill_records(env: &Env) -> usize {
    std::fs::read_dir(env.repo.join("drills"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn pack_files(env: &Env) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for sub in std::fs::read_dir(env.repo.join("data")).unwrap() {
        for f in std::fs::read_dir(sub.unwrap().path()).unwrap() {
            out.push(f.unwrap().path());
        }
    }
    out
}

#[test]
fn a_drill_is_recorded_and_shown_by_snapshots_status_and_prometheus() {
    let env = Env::init();
    let scratch = env.path("scratch");
    let dump = plain_dump(20_000, 1, true);
    let id = env.backup_stdin(&dump, &["--stdin-filename", "shop.sql", "--host", "db1"]);
    env.backup_stdin(
        b"other\n",
        &["--stdin-filename", "notes.txt", "--host", "db2"],
    );

    // Not drilled yet: with --max-drill-age every series is unproven.
    let out = env.run(&["-q", "status", "--max-drill-age", "1d"]);
    assert_code(&out, 14, &["status", "--max-drill-age"]);
    assert!(
        stderr(&out).contains("cairn: unproven: db1"),
        "{}",
        stderr(&out)
    );

    let d = json(
        &env,
        &[
            "drill",
            "--host",
            "db1",
            "--scratch",
            scratch.to_str().unwrap(),
        ],
        0,
    );
    assert_eq!(d["ok"], true);
    assert_eq!(d["snapshot"].as_str().unwrap(), id);
    assert_eq!(d["bytes"].as_u64().unwrap(), dump.len() as u64);
    assert_eq!(d["files"], 1);
    assert_eq!(d["dump_check"], "complete");
    assert!(d["seconds"].as_f64().unwrap() >= d["restore_seconds"].as_f64().unwrap());
    // The scratch copy is gone; the record is stored.
    assert_eq!(std::fs::read_dir(&scratch).unwrap().count(), 0);
    assert_eq!(drill_records(&env), 1);

    // snapshots shows it on the drilled snapshot only.
    let snaps = env.snapshots();
    let drilled: Vec<_> = snaps.iter().filter(|s| s["drill"]["ok"] == true).collect();
    assert_eq!(drilled.len(), 1);
    assert_eq!(drilled[0]["id"].as_str().unwrap(), id);
    assert!(env.ok(&["snapshots"]).contains(" ok "));

    // status: db1 proven, db2 not; the exit code says so.
    let st = json(&env, &["status", "--max-drill-age", "1d"], 14);
    let series = st["series"].as_array().unwrap();
    let db1 = series.iter().find(|s| s["host"] == "db1").unwrap();
    let db2 = series.iter().find(|s| s["host"] == "db2").unwrap();
    assert_eq!(db1["unproven"], false);
    assert_eq!(db1["last_passed_drill"]["snapshot"].as_str().unwrap(), id);
    assert_eq!(db2["unproven"], true);
    assert_eq!(db2["last_drill"], Value::Null);
    assert_code(
        &env.run(&["status", "--host", "db1", "--max-drill-age", "1d"]),
        0,
        &["status db1"],
    );

    // The Prometheus file: one sample per series and metric, replaced
    // atomically (no temporary file left beside it).
    let prom = env.path("textfile/cairn.prom");
    std::fs::create_dir_all(prom.parent().unwrap()).unwrap();
    env.run(&["status", "--prometheus", prom.to_str().unwrap()]);
    let text = std::fs::read_to_string(&prom).unwrap();
    let sample = |metric: &str, host: &str| -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(&format!("{metric}{{host=\"{host}\"")))
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
    };
    assert_eq!(sample("cairn_series_snapshots", "db1"), Some(1.0));
    assert_eq!(
        sample("cairn_series_last_snapshot_size_bytes", "db1"),
        Some(dump.len() as f64)
    );
    assert_eq!(sample("cairn_series_last_drill_success", "db1"), Some(1.0));
    assert_eq!(sample("cairn_series_last_drill_success", "db2"), None);
    assert!(sample("cairn_series_last_backup_duration_seconds", "db1").unwrap() >= 0.0);
    let now = jiff::Timestamp::now().as_second() as f64;
    let t = sample("cairn_series_last_snapshot_timestamp_seconds", "db2").unwrap();
    assert!((now - t).abs() < 600.0, "{t} vs {now}");
    assert!(text.contains("cairn_status_success 1"));
    assert_eq!(
        std::fs::read_dir(prom.parent().unwrap()).unwrap().count(),
        1
    );

    // A repository that cannot be read still gives monitoring a file.
    let broken = Env::empty();
    let out = broken.run(&["status", "--prometheus", prom.to_str().unwrap()]);
    assert_code(&out, 10, &["status on a missing repository"]);
    assert!(std::fs::read_to_string(&prom)
        .unwrap()
        .contains("cairn_status_success 0"));

    // forget --keep-drilled keeps the drilled snapshot beside the newest.
    let newer = env.backup_stdin(
        &plain_dump(20_000, 2, true),
        &["--stdin-filename", "shop.sql", "--host", "db1"],
    );
    env.ok(&[
        "forget",
        "--host",
        "db1",
        "--keep-last",
        "1",
        "--keep-drilled",
    ]);
    let left: Vec<String> = env
        .snapshots()
        .iter()
        .filter(|s| s["host"] == "db1")
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.contains(&id) && left.contains(&newer));
    env.ok(&["forget", "--host", "db1", "--keep-last", "1"]);
    assert_eq!(
        env.snapshots()
            .iter()
            .filter(|s| s["host"] == "db1")
            .count(),
        1
    );

    // A drill that cannot run (nowhere to restore to) says so and
    // records nothing: it is no verdict on the snapshot.
    let out = env.run(&["drill", "--scratch", "/proc/no-such-dir"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("nothing was recorded"),
        "{}",
        stderr(&out)
    );
    assert_eq!(drill_records(&env), 1);

    // --no-record leaves no record; check reads the records.
    env.ok(&[
        "drill",
        "--no-record",
        "--scratch",
        scratch.to_str().unwrap(),
    ]);
    assert_eq!(drill_records(&env), 1);
    assert!(env.ok(&["check"]).contains("1 drill records"));
}

#[test]
fn a_drill_catches_a_corrupted_pack_and_records_the_failure() {
    let env = Env::init();
    let scratch = env.path("scratch");
    env.backup_stdin(
        &pseudo_random(3 << 20, 5),
        &["--stdin-filename", "data.bin"],
    );
    assert_code(
        &env.run(&["drill", "--scratch", scratch.to_str().unwrap()]),
        0,
        &["drill"],
    );
    // Damage the largest pack in its middle (a data blob).
    let pack = pack_files(&env)
        .into_iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&pack).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&pack, bytes).unwrap();

    let out = env.run(&["drill", "--scratch", scratch.to_str().unwrap()]);
    assert_code(&out, 22, &["drill of a corrupted snapshot"]);
    assert!(stderr(&out).contains("failed"), "{}", stderr(&out));
    // Recorded as failed; nothing left in the scratch directory.
    assert_eq!(drill_records(&env), 2);
    assert_eq!(std::fs::read_dir(&scratch).unwrap().count(), 0);
    let snap = &env.snapshots()[0];
    assert_eq!(snap["drill"]["ok"], false);
    assert!(snap["drill"]["error"].as_str().unwrap().len() > 10);
    assert!(env.ok(&["status"]).contains("FAILED"));
    // The newest drill failed, but an older one passed within the limit:
    // the series was proven restorable a moment ago.
    let st = json(&env, &["status", "--max-drill-age", "1h"], 0);
    assert_eq!(st["series"][0]["last_drill"]["ok"], false);
    assert_eq!(st["series"][0]["last_passed_drill"]["ok"], true);
}

#[test]
fn a_drill_fails_on_a_dump_that_is_not_complete() {
    let env = Env::init();
    let scratch = env.path("scratch");
    // Backed up without validation: the completion line is missing.
    let out = env.run_stdin(
        &[
            "backup",
            "-",
            "--stdin-filename",
            "shop.sql",
            "--no-validate",
        ],
        &plain_dump(5_000, 3, false),
    );
    assert_code(&out, 0, &["backup --no-validate"]);
    let out = env.run(&["drill", "--scratch", scratch.to_str().unwrap()]);
    assert_code(&out, 27, &["drill of an incomplete dump"]);
    assert!(stderr(&out).contains("dump complete"), "{}", stderr(&out));
    // Words of backup's refusal have no place in a drill's verdict.
    assert!(!stderr(&out).contains("no snapshot"), "{}", stderr(&out));
    // Every byte was there, and the record says what failed.
    let d = &env.snapshots()[0]["drill"];
    assert_eq!(d["ok"], false);

    // A snapshot that is not a dump is verified byte for byte only.
    env.backup_stdin(b"just text\n", &["--stdin-filename", "notes.txt"]);
    let d = json(&env, &["drill", "--scratch", scratch.to_str().unwrap()], 0);
    assert_eq!(d["dump_check"], Value::Null);
}
