//! `cairn status`: the newest snapshot per series and its age, and exit 14
//! when a series is older than `--max-age` (or there is none).

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::{assert_code, stderr, Env};
use serde_json::Value;

/// An RFC 3339 time `ago` before now (`date -d` syntax, e.g. "3 days ago").
fn time_ago(ago: &str) -> String {
    let out = Command::new("date")
        .args(["-u", "-d", ago, "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn status_json(env: &Env, extra: &[&str], code: i32) -> Value {
    let mut args = vec!["--json", "status"];
    args.extend(extra);
    let out = env.run(&args);
    assert_code(&out, code, &args);
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn status_reports_each_series_and_exits_14_when_one_is_late() {
    let env = Env::init();
    // Nothing yet: fine without a limit, late with one.
    assert_eq!(status_json(&env, &[], 0)["series"], Value::Array(vec![]));
    assert_eq!(status_json(&env, &["--max-age", "1h"], 14)["ok"], false);

    let old = time_ago("3 days ago");
    env.backup_stdin(
        b"old\n",
        &[
            "--stdin-filename",
            "shop.sql",
            "--host",
            "db1",
            "--time",
            &old,
        ],
    );
    let recent = time_ago("2 hours ago");
    env.backup_stdin(
        b"older\n",
        &[
            "--stdin-filename",
            "shop.sql",
            "--host",
            "db2",
            "--time",
            &old,
        ],
    );
    env.backup_stdin(
        b"new\n",
        &[
            "--stdin-filename",
            "shop.sql",
            "--host",
            "db2",
            "--time",
            &recent,
        ],
    );

    let all = status_json(&env, &[], 0);
    let series = all["series"].as_array().unwrap();
    assert_eq!(series.len(), 2, "{all}");
    let db1 = series.iter().find(|s| s["host"] == "db1").unwrap();
    let db2 = series.iter().find(|s| s["host"] == "db2").unwrap();
    assert_eq!(db2["snapshots"], 2);
    let age = |s: &Value| s["age_seconds"].as_i64().unwrap();
    assert!(
        (3 * 86_400 - 60..3 * 86_400 + 600).contains(&age(db1)),
        "{db1}"
    );
    assert!(
        (2 * 3600 - 60..2 * 3600 + 600).contains(&age(db2)),
        "{db2}: the newest counts"
    );

    let late = status_json(&env, &["--max-age", "26h"], 14);
    let stale: Vec<&str> = late["series"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["stale"] == true)
        .map(|s| s["host"].as_str().unwrap())
        .collect();
    assert_eq!(stale, ["db1"]);
    status_json(&env, &["--max-age", "96h"], 0);
    status_json(&env, &["--max-age", "26h", "--host", "db2"], 0);

    // Under cron: silent when fine, one line per late series when not.
    let out = env.run(&["-q", "status", "--max-age", "96h"]);
    assert_code(&out, 0, &["-q status"]);
    assert!(out.stdout.is_empty() && out.stderr.is_empty());
    let out = env.run(&["-q", "status", "--max-age", "26h"]);
    assert_code(&out, 14, &["-q status late"]);
    assert!(out.stdout.is_empty());
    let err = stderr(&out);
    assert!(
        err.contains("stale") && err.contains("db1") && !err.contains("db2"),
        "{err}"
    );

    // The human table names both series and marks the late one.
    let out = env.run(&["status", "--max-age", "26h"]);
    assert_code(&out, 14, &["status"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("STALE")
            && text.contains("db2")
            && text.contains("2 series, 1 older than 1d 2h"),
        "{text}"
    );

    // A bad duration is a usage error.
    let out = env.run(&["status", "--max-age", "soon"]);
    assert_code(&out, 2, &["status --max-age soon"]);
}
