//! `cairn forget` through the real binary: restic's rules and output shapes,
//! dry runs that change nothing, and forgetting that never touches the data
//! of the snapshots that stay.

#![allow(clippy::unwrap_used)]

mod common;

use common::{assert_code, stderr, Env};
use serde_json::Value;

/// 45 nightly snapshots of host db1 (with a gap and a second run on one
/// day), 5 of host db2, one tagged `keep`.
fn schedule(env: &Env) -> Vec<(String, String)> {
    let mut made = Vec::new();
    for day in 1..=45u32 {
        if (20..=24).contains(&day) {
            continue; // a week without backups
        }
        let date = jiff::civil::date(2026, 9, 1)
            .checked_add(jiff::Span::new().days(i64::from(day - 1)))
            .unwrap();
        let time = format!("{date} 03:00:00");
        let mut args = vec![
            "--host",
            "db1",
            "--time",
            time.as_str(),
            "--stdin-filename",
            "shop.sql",
        ];
        if day == 3 {
            args.extend(["--tag", "keep"]);
        }
        let id = env.backup_stdin(format!("night {day}").as_bytes(), &args);
        made.push((time.clone(), id));
        if day == 40 {
            let evening = format!("{date} 21:00:00");
            let id = env.backup_stdin(
                b"evening run",
                &[
                    "--host",
                    "db1",
                    "--time",
                    &evening,
                    "--stdin-filename",
                    "shop.sql",
                ],
            );
            made.push((evening, id));
        }
    }
    for day in 1..=5 {
        let time = format!("2026-10-0{day} 04:00:00");
        let id = env.backup_stdin(
            b"other host",
            &[
                "--host",
                "db2",
                "--time",
                &time,
                "--stdin-filename",
                "shop.sql",
            ],
        );
        made.push((time, id));
    }
    made
}

fn group_for<'a>(groups: &'a [Value], host: &str) -> &'a Value {
    groups.iter().find(|g| g["host"] == host).unwrap()
}

fn short_ids(list: &Value) -> Vec<String> {
    list.as_array()
        .map(|a| {
            a.iter()
                .map(|s| s["short_id"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn forget_policy_groups_reasons_and_dry_run() {
    let env = Env::init();
    let made = schedule(&env);
    assert_eq!(env.snapshots().len(), made.len());
    let before = env.repo_listing();

    // The policy of this test, asked first as a dry run, then for real.
    const POLICY: [&str; 8] = [
        "--keep-daily",
        "7",
        "--keep-weekly",
        "4",
        "--keep-monthly",
        "-1",
        "--keep-tag",
        "keep",
    ];
    let args = [&["--json", "forget"][..], &POLICY, &["--dry-run"]].concat();
    let out = env.ok(&args);
    assert_eq!(
        env.repo_listing(),
        before,
        "--dry-run changed the repository"
    );
    let groups: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(groups.len(), 2, "grouped by host and paths");
    let db1 = group_for(&groups, "db1");
    assert_eq!(db1["paths"], serde_json::json!(["/shop.sql"]));
    assert_eq!(db1["tags"], Value::Null);
    let keep = short_ids(&db1["keep"]);
    let remove = short_ids(&db1["remove"]);
    assert_eq!(keep.len() + remove.len(), 41);
    let id_at = |t: &str| {
        made.iter()
            .find(|(time, _)| time == t)
            .map(|(_, id)| id[..8].to_string())
            .unwrap()
    };
    // 7 days with backups: Oct 15 back to Oct 9; day 40 (Oct 10) kept its evening run.
    for t in [
        "2026-10-15 03:00:00",
        "2026-10-09 03:00:00",
        "2026-10-10 21:00:00",
    ] {
        assert!(keep.contains(&id_at(t)), "{t} should be kept");
    }
    assert!(
        remove.contains(&id_at("2026-10-10 03:00:00")),
        "the earlier run of a day goes"
    );
    // Weekly: newest of each of 4 ISO weeks; monthly -1: newest of every month, and the oldest.
    assert!(
        keep.contains(&id_at("2026-09-30 03:00:00")),
        "last of September (monthly)"
    );
    assert!(keep.contains(&id_at("2026-09-03 03:00:00")), "tagged keep");
    assert!(
        keep.contains(&id_at("2026-09-01 03:00:00")),
        "oldest, while the monthly count is unlimited"
    );
    let reasons = db1["reasons"].as_array().unwrap();
    assert_eq!(reasons.len(), keep.len());
    let tagged = reasons
        .iter()
        .find(|r| r["snapshot"]["short_id"] == id_at("2026-09-03 03:00:00"))
        .unwrap();
    assert_eq!(tagged["matches"], serde_json::json!(["has tags [keep]"]));
    let newest = &reasons[0];
    assert_eq!(
        newest["matches"],
        serde_json::json!(["daily snapshot", "weekly snapshot", "monthly snapshot"])
    );
    assert_eq!(newest["counters"]["daily"], 6);
    // db2's five snapshots are their own group.
    assert_eq!(short_ids(&group_for(&groups, "db2")["keep"]).len(), 5);

    // For real this time: exactly the planned snapshots go, their data stays.
    let out = env.run(&[&["forget"][..], &POLICY].concat());
    assert_code(&out, 0, &["forget"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "keep 7 daily, 4 weekly, all monthly snapshots and all snapshots with tags [[keep]]"
        ),
        "{text}"
    );
    assert!(
        text.contains("daily snapshot")
            && text.contains(&format!("removed {} snapshots", remove.len())),
        "{text}"
    );
    let left: Vec<String> = env
        .snapshots()
        .iter()
        .map(|s| s["short_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(left.len(), made.len() - remove.len());
    for id in &remove {
        assert!(!left.contains(id));
    }
    assert_eq!(
        env.dump(&id_at("2026-09-03 03:00:00"), "shop.sql"),
        b"night 3"
    );
    assert_eq!(env.dump("latest", "shop.sql"), b"night 45");
}

#[test]
fn forget_refuses_an_empty_policy_and_forgets_by_id() {
    let env = Env::init();
    let a = env.backup_stdin(b"a", &["--time", "2026-01-01 03:00:00"]);
    let b = env.backup_stdin(b"b", &["--time", "2026-01-02 03:00:00"]);
    let out = env.run(&["forget"]);
    assert_code(&out, 2, &["forget without policy"]);
    assert!(stderr(&out).contains("--unsafe-allow-remove-all"));
    assert_code(
        &env.run(&["forget", &a, "--keep-last", "1"]),
        2,
        &["ids and policy"],
    );
    assert_code(
        &env.run(&["forget", "--keep-within", "7x"]),
        2,
        &["bad duration"],
    );
    assert_code(
        &env.run(&["forget", "--group-by", "hostname", "--keep-last", "1"]),
        2,
        &["bad group"],
    );
    assert_eq!(env.snapshots().len(), 2);
    let out = env.ok(&["forget", &a[..8]]);
    assert!(out.contains(&format!("removed snapshot {}", &a[..8])));
    let left = env.snapshots();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["id"], Value::String(b.clone()));
    assert_code(
        &env.run(&["forget", &a[..8]]),
        24,
        &["forget a forgotten snapshot"],
    );
    env.ok(&["forget", "--unsafe-allow-remove-all"]);
    assert!(env.snapshots().is_empty());
}

#[test]
fn forget_keep_within_counts_from_the_newest_snapshot() {
    let env = Env::init();
    for (i, t) in [
        "2020-01-01T00:00:00Z",
        "2020-01-02T00:00:00Z",
        "2020-01-08T00:00:00Z",
    ]
    .iter()
    .enumerate()
    {
        env.backup_stdin(&[i as u8], &["--time", t]);
    }
    // Years ago, yet within 7 days of the newest: only the first goes.
    env.ok(&["forget", "--keep-within", "7d"]);
    let left: Vec<String> = env
        .snapshots()
        .iter()
        .map(|s| s["time"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        left,
        ["2020-01-02T00:00:00+00:00", "2020-01-08T00:00:00+00:00"]
    );
}
