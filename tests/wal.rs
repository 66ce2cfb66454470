//! PostgreSQL WAL archiving through the real binary: a real cluster with
//! `archive_command = 'cairn wal-push %p'`, then `wal-fetch` of what it
//! archived, retries, conflicts, and prune next to archived WAL.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::pg::Postgres;
use common::{assert_code, stderr, Env, PASSWORD};
use serde_json::Value;

/// A cluster archiving into a fresh repository at `{dir}/archive` (owned
/// by the server's user), and an `Env` to run cairn on it as root.
fn archiving_cluster() -> Option<(Postgres, Env)> {
    let cairn = env!("CARGO_BIN_EXE_cairn");
    let command = format!(
        "CAIRN_PASSWORD='{PASSWORD}' CAIRN_CACHE_DIR={{dir}}/cache {cairn} -q -r {{dir}}/archive wal-push %p"
    );
    let pg = Postgres::start_with(&[
        ("archive_mode", "on"),
        ("archive_command", &command),
        ("wal_level", "replica"),
    ])?;
    let repo = pg.socket_dir().join("archive");
    let env = Env::init_at(repo.to_str().unwrap(), &[], &[]);
    pg.give(&repo);
    Some((pg, env))
}

/// Switches to a new WAL segment `n` times, each after some writes, and
/// waits until PostgreSQL reports them archived; returns the last
/// archived file name.
fn archive_segments(pg: &Postgres, n: usize) -> String {
    let before: u64 = pg
        .psql("postgres", "SELECT archived_count FROM pg_stat_archiver")
        .parse()
        .unwrap();
    for i in 0..n {
        pg.psql(
            "postgres",
            &format!(
                "INSERT INTO t SELECT g, md5((g * {i})::text) FROM generate_series(1, 2000) g"
            ),
        );
        pg.psql("postgres", "SELECT pg_switch_wal()");
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let row = pg.psql(
            "postgres",
            "SELECT archived_count || ',' || failed_count || ',' || coalesce(last_archived_wal, '') \
             FROM pg_stat_archiver",
        );
        let f: Vec<&str> = row.split(',').collect();
        let archived: u64 = f[0].parse().unwrap();
        assert_eq!(
            f[1], "0",
            "archive_command failed; server log has cairn's message"
        );
        if archived >= before + n as u64 {
            return f[2].to_string();
        }
        assert!(Instant::now() < deadline, "WAL not archived in time: {row}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn postgres_archives_through_wal_push_and_wal_fetch_restores_it() {
    let Some((pg, env)) = archiving_cluster() else {
        return;
    };
    pg.psql("postgres", "CREATE TABLE t (id int, v text)");
    let last = archive_segments(&pg, 3);
    let segment = pg.data_dir().join("pg_wal").join(&last);
    let original = std::fs::read(&segment).unwrap();
    assert_eq!(original.len(), 16 << 20);

    // Fetched byte-identical, through a temporary file.
    let dest = env.path("fetched");
    let out = env.run(&["--json", "wal-fetch", &last, dest.to_str().unwrap()]);
    assert_code(&out, 0, &["wal-fetch"]);
    assert_eq!(std::fs::read(&dest).unwrap(), original);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["size"], 16 << 20);

    // A retried push of the same file stores nothing and succeeds.
    let out = env.run(&["--json", "wal-push", segment.to_str().unwrap()]);
    assert_code(&out, 0, &["wal-push again"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["already_archived"], true, "{v}");
    // Different contents under an archived name: refused, 28.
    let other = env.path(&last);
    let mut changed = original.clone();
    changed[100] ^= 1;
    std::fs::write(&other, &changed).unwrap();
    let out = env.run(&["wal-push", other.to_str().unwrap()]);
    assert_code(&out, 28, &["wal-push of other contents"]);
    assert!(stderr(&out).contains(&last), "{}", stderr(&out));
    // Past the end of the archive: 20, one line, nothing written.
    let out = env.run(&[
        "wal-fetch",
        "0000000100000000000000FF",
        dest.to_str().unwrap(),
    ]);
    assert_code(&out, 20, &["wal-fetch of a file not archived"]);
    assert_eq!(std::fs::read(&dest).unwrap(), original);
    // Not a WAL file name: refused before anything is read.
    let out = env.run(&["wal-fetch", "../etc/passwd", dest.to_str().unwrap()]);
    assert_code(&out, 2, &["wal-fetch of a path"]);

    // An off-site copy takes the archived WAL along, once.
    let offsite = Env::init();
    let copy = || {
        let out = env
            .cmd()
            .args(["--json", "copy", "--to", offsite.repo.to_str().unwrap()])
            .env("CAIRN_PASSWORD2", PASSWORD)
            .output()
            .unwrap();
        assert_code(&out, 0, &["copy"]);
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let v = copy();
    assert!(v["wal"]["copied"].as_u64().unwrap() >= 3, "{v}");
    let v = copy();
    assert_eq!(v["wal"]["copied"], 0, "{v}");
    let there = offsite.path("from-offsite");
    let out = offsite.run(&["wal-fetch", &last, there.to_str().unwrap()]);
    assert_code(&out, 0, &["wal-fetch from the copy"]);
    assert_eq!(std::fs::read(&there).unwrap(), original);
    offsite.ok(&["check", "--read-data"]);

    // Archived WAL is what prune must keep, even with no snapshot at all.
    env.ok(&["prune", "--grace", "0"]);
    env.ok(&["prune", "--grace", "0"]);
    let out = env.run(&["wal-fetch", &last, dest.to_str().unwrap()]);
    assert_code(&out, 0, &["wal-fetch after prune"]);
    assert_eq!(std::fs::read(&dest).unwrap(), original);
    let checked = env.ok(&["check", "--read-data"]);
    assert!(checked.contains("archived WAL files"), "{checked}");
}

/// `cairn pg restore` of `pg`'s archive into a new directory with `extra`
/// options, then a server started on it, once recovery is over; and the
/// `postgresql.auto.conf` the restore wrote. The restore_command runs as
/// the server's user: it gets a password file and a cache of its own.
fn restore_and_start(pg: &Postgres, env: &Env, extra: &[&str]) -> (Postgres, String) {
    let (dir, _) = Postgres::scratch_dir();
    let password = pg.socket_dir().join("password");
    std::fs::write(&password, PASSWORD).unwrap();
    pg.give(&password);
    let cache = dir.path().join("cache");
    let pgdata = dir.path().join("data");
    let out = env
        .cmd()
        .args(["pg", "restore", "--pgdata", pgdata.to_str().unwrap()])
        .args(extra)
        .env_remove("CAIRN_PASSWORD")
        .env("CAIRN_PASSWORD_FILE", &password)
        .env("CAIRN_CACHE_DIR", &cache)
        .output()
        .unwrap();
    assert_code(&out, 0, &["pg restore"]);
    pg.give(&cache);
    let auto = std::fs::read_to_string(pgdata.join("postgresql.auto.conf")).unwrap();
    // Into a directory that is not empty: refused.
    let out = env.run(&["pg", "restore", "--pgdata", pgdata.to_str().unwrap()]);
    assert_ne!(out.status.code(), Some(0));
    let restored = Postgres::adopt(dir);
    let deadline = Instant::now() + Duration::from_secs(120);
    while restored.psql("postgres", "SELECT pg_is_in_recovery()") == "t" {
        assert!(Instant::now() < deadline, "recovery did not finish");
        std::thread::sleep(Duration::from_millis(200));
    }
    (restored, auto)
}

#[test]
fn point_in_time_restore_replays_archived_wal_up_to_the_target() {
    let Some((pg, env)) = archiving_cluster() else {
        return;
    };
    pg.psql("postgres", "CREATE TABLE t (id int, v text)");
    pg.psql(
        "postgres",
        "CREATE TABLE marks (label text, at timestamptz DEFAULT clock_timestamp())",
    );
    basebackup(&pg, &env);
    let snaps = env.snapshots();
    let base = &snaps[0]["source"]["dump"];
    assert_eq!(base["format"], "pg_basebackup", "{base}");
    assert!(
        base["start_wal"].as_str().is_some_and(|w| w.len() == 24),
        "{base}"
    );

    // Row "one", then the target time, then row "two"; all archived.
    let utc_now = "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', \
                   'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')";
    pg.psql("postgres", "INSERT INTO marks (label) VALUES ('one')");
    std::thread::sleep(Duration::from_millis(1100));
    let target = pg.psql("postgres", utc_now);
    let lsn = pg.psql("postgres", "SELECT pg_current_wal_insert_lsn()");
    std::thread::sleep(Duration::from_millis(1100));
    pg.psql("postgres", "INSERT INTO marks (label) VALUES ('two')");
    archive_segments(&pg, 2);

    let (restored, auto) = restore_and_start(&pg, &env, &["--target-time", &target]);
    assert!(
        auto.contains("wal-fetch %f %p") && auto.contains("recovery_target_time"),
        "{auto}"
    );
    assert_eq!(
        restored.psql("postgres", "SELECT string_agg(label, ',') FROM marks"),
        "one",
        "the restored cluster has the rows committed before {target}, and only those"
    );
    drop(restored);
    let (restored, auto) = restore_and_start(&pg, &env, &["--target-lsn", &lsn]);
    assert!(auto.contains("recovery_target_lsn"), "{auto}");
    assert_eq!(
        restored.psql("postgres", "SELECT string_agg(label, ',') FROM marks"),
        "one",
        "the restored cluster has the rows committed before WAL location {lsn}, and only those"
    );
    // The original still has both.
    assert_eq!(
        pg.psql(
            "postgres",
            "SELECT string_agg(label, ',' ORDER BY at) FROM marks"
        ),
        "one,two"
    );
}

/// `cairn pg basebackup` of `pg`.
fn basebackup(pg: &Postgres, env: &Env) -> Value {
    let socket = pg.socket_dir().to_str().unwrap().to_string();
    let port = pg.port.to_string();
    let out = env.run(&[
        "--json",
        "pg",
        "basebackup",
        "--",
        "-h",
        &socket,
        "-p",
        &port,
        "-U",
        "postgres",
    ]);
    assert_code(&out, 0, &["pg basebackup"]);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `pg status --json`, and its exit code.
fn pg_status(env: &Env) -> (Value, i32) {
    let out = env.run(&["--json", "pg", "status"]);
    (
        serde_json::from_slice(&out.stdout).unwrap(),
        out.status.code().unwrap(),
    )
}

#[test]
fn retention_drops_only_wal_no_kept_base_backup_needs_and_pitr_still_works() {
    let Some((pg, env)) = archiving_cluster() else {
        return;
    };
    pg.psql("postgres", "CREATE TABLE t (id int, v text)");
    pg.psql("postgres", "CREATE TABLE marks (label text)");
    basebackup(&pg, &env);
    archive_segments(&pg, 2);
    let second = basebackup(&pg, &env);
    pg.psql(
        "postgres",
        "INSERT INTO marks VALUES ('after the second base backup')",
    );
    archive_segments(&pg, 2);

    let (st, code) = pg_status(&env);
    assert_eq!(code, 0, "{st}");
    assert_eq!(
        st["newest_base_backup"]["id"], second["snapshot_id"],
        "{st}"
    );
    assert_eq!(st["wal"]["missing"].as_array().unwrap().len(), 0, "{st}");
    let before = st["wal"]["wal_files"].as_u64().unwrap();
    let start = st["newest_base_backup"]["start_wal"]
        .as_str()
        .unwrap()
        .to_string();

    // Keep the newest base backup only: the WAL before its first file goes.
    let out = env.run(&["forget", "--keep-last", "1", "--dry-run"]);
    assert_code(&out, 0, &["forget --dry-run"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("would remove"));
    assert_eq!(pg_status(&env).0["wal"]["wal_files"], before);
    let out = env.ok(&["forget", "--keep-last", "1"]);
    assert!(out.contains("archived WAL files older than"), "{out}");
    let (st, code) = pg_status(&env);
    assert_eq!(code, 0, "{st}");
    let after = st["wal"]["wal_files"].as_u64().unwrap();
    assert!(after < before, "{before} -> {after}");
    env.ok(&["prune", "--grace", "0"]);
    env.ok(&["prune", "--grace", "0"]);
    env.ok(&["check", "--read-data"]);
    // Prune ran as root here and repacked WAL data into files only root
    // may read; real setups run every cairn command on the repository as
    // the server's user (README).
    pg.give(&pg.socket_dir().join("archive"));

    // The kept base backup still restores, replaying every archived WAL.
    let (restored, _) = restore_and_start(&pg, &env, &[]);
    assert_eq!(restored.psql("postgres", "SELECT count(*) FROM marks"), "1");
    drop(restored);

    // A WAL file lost from the middle of the archive: status says so.
    let wal_dir = pg.socket_dir().join("archive").join("wal");
    let next_after_start = format!(
        "{}{:08X}",
        &start[..16],
        u32::from_str_radix(&start[16..], 16).unwrap() + 1
    );
    let out = env.run(&[
        "wal-fetch",
        &next_after_start,
        env.path("x").to_str().unwrap(),
    ]);
    assert_code(
        &out,
        0,
        &["the segment after the base backup's first is archived"],
    );
    let victim = std::fs::read_dir(&wal_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            std::fs::rename(p, p.with_extension("away")).unwrap();
            let gone = env
                .run(&[
                    "wal-fetch",
                    &next_after_start,
                    env.path("x").to_str().unwrap(),
                ])
                .status
                .code()
                == Some(20);
            std::fs::rename(p.with_extension("away"), p).unwrap();
            gone
        })
        .unwrap();
    std::fs::remove_file(&victim).unwrap();
    let (st, code) = pg_status(&env);
    assert_eq!(code, 22, "{st}");
    assert_eq!(st["wal"]["missing"][0], next_after_start.as_str(), "{st}");
}
