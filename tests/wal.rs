//! PostgreSQL WAL archiving through the real binary: a real cluster with
//! `archive_command = 'cairn wal-push %p'`, then `wal-fetch` of what it
//! archived, retries, conflicts, and prune next to archived WAL.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::pg::Postgres;
use common::{assert_code, stderr, Env, PASSWORD};
use serde_json::Value;

/// A cluster archiving into a fresh repository at `{dir}/archive`, and an
/// `Env` that runs every cairn command on it as the server's user (as
/// the guide says; CI runs as root, which would hide permission bugs).
fn archiving_cluster() -> Option<(Postgres, Env)> {
    archiving_cluster_with(&[])
}

/// `archiving_cluster` with more server settings.
fn archiving_cluster_with(settings: &[(&str, &str)]) -> Option<(Postgres, Env)> {
    let cairn = env!("CARGO_BIN_EXE_cairn");
    let command = format!(
        "CAIRN_PASSWORD='{PASSWORD}' CAIRN_CACHE_DIR={{dir}}/cache {cairn} -q -r {{dir}}/archive wal-push %p"
    );
    let mut all = vec![
        ("archive_mode", "on"),
        ("archive_command", command.as_str()),
        ("wal_level", "replica"),
    ];
    all.extend(settings);
    let pg = Postgres::start_with(&all)?;
    let mut env = Env::empty_as_postgres();
    env.location = Some(pg.socket_dir().join("archive").display().to_string());
    let mut init = vec!["init"];
    init.extend(common::FAST_KDF);
    env.ok(&init);
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

    // With --prefetch, a background cairn fetches the segments after the
    // one asked for into a spool beside DEST, and the next call takes its
    // segment from there.
    let before_last = {
        let seg = u32::from_str_radix(&last[16..], 16).unwrap() - 1;
        format!("{}{seg:08X}", &last[..16])
    };
    let ahead = env.path("ahead");
    let fetch_ahead = |name: &str| {
        let _ = std::fs::remove_file(&ahead);
        let out = env.run(&[
            "--json",
            "wal-fetch",
            "--prefetch",
            "2",
            name,
            ahead.to_str().unwrap(),
        ]);
        assert_code(&out, 0, &["wal-fetch --prefetch", name]);
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    assert_eq!(fetch_ahead(&before_last)["prefetched"], false);
    let spool = env.dir.path().join(".cairn-prefetch");
    let deadline = Instant::now() + Duration::from_secs(30);
    let spooled = |name: &str| {
        std::fs::read_dir(&spool)
            .unwrap()
            .flatten()
            .any(|d| d.path().join(name).exists())
    };
    while !spooled(&last) {
        assert!(Instant::now() < deadline, "{last} was not fetched ahead");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(fetch_ahead(&last)["prefetched"], true);
    assert_eq!(std::fs::read(&ahead).unwrap(), original);
    // Taken from the spool, not copied out of it.
    assert!(!spooled(&last));

    // An off-site copy takes the archived WAL along, once.
    let offsite = Env::init_as_postgres();
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
    let auto = std::fs::read_to_string(pgdata.join("postgresql.auto.conf")).unwrap();
    // Into a directory that is not empty: refused.
    let out = env.run(&["pg", "restore", "--pgdata", pgdata.to_str().unwrap()]);
    assert_ne!(out.status.code(), Some(0));
    // Nothing is left beside it.
    let beside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".cairn"))
        .collect();
    assert!(beside.is_empty(), "{beside:?}");
    let restored = Postgres::adopt(dir);
    let deadline = Instant::now() + Duration::from_secs(120);
    while restored.psql("postgres", "SELECT pg_is_in_recovery()") == "t" {
        assert!(Instant::now() < deadline, "recovery did not finish");
        std::thread::sleep(Duration::from_millis(200));
    }
    // WAL was fetched ahead into pg_wal/.cairn-prefetch, which
    // recovery_end_command removed.
    assert!(auto.contains("wal-fetch --prefetch 8 %f %p"), "{auto}");
    assert!(
        auto.contains(
            "recovery_end_command = 'for i in 1 2 3 4 5; do rm -rf pg_wal/.cairn-prefetch"
        ),
        "{auto}"
    );
    assert!(!pgdata.join("pg_wal/.cairn-prefetch").exists());
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
    assert!(auto.contains("recovery_target_time"), "{auto}");
    // Only "not archived" may end recovery; any other failure stops it.
    assert!(
        auto.contains("[ $rc -eq 20 ] && exit 1; exit 255;"),
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
    assert_code(&out, 0, &["pg basebackup", &stderr(&out)]);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `source.dump` of snapshot `id` (a JSON string), as `snapshots --json`
/// lists it.
fn dump_info(env: &Env, id: &Value) -> Value {
    env.snapshots()
        .into_iter()
        .find(|s| s["id"] == *id)
        .unwrap()["source"]["dump"]
        .clone()
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

/// Issue 20, defect 1: as the server's user (the way the guide says to
/// run it) `pg restore` used to fail on the owners pg_basebackup records,
/// leaving a half-filled directory that made the retry fail as "not
/// empty". A restore that fails or is killed now leaves --pgdata as it
/// was, says why (the OS error), and the retry works.
#[test]
fn a_failed_or_killed_pg_restore_leaves_nothing_and_the_retry_works() {
    let Some((pg, env)) = archiving_cluster() else {
        return;
    };
    pg.psql("postgres", "CREATE TABLE t (id int, v text)");
    basebackup(&pg, &env);
    archive_segments(&pg, 1);
    let (dir, _) = Postgres::scratch_dir();
    let restore = |pgdata: &std::path::Path| {
        let mut c = env.cmd();
        c.args(["pg", "restore", "--pgdata", pgdata.to_str().unwrap()])
            .args(["--restore-command", "false"]);
        c
    };
    let listing = |d: &std::path::Path| -> Vec<String> {
        std::fs::read_dir(d)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };

    // A file system too small for the data directory: the cause is named,
    // and neither the target nor a scratch directory is left there.
    let small = dir.path().join("small");
    std::fs::create_dir(&small).unwrap();
    if let Some(_mounted) = common::mount_tmpfs(&small, "4m", "pg restore onto a full disk") {
        pg.give(&small);
        let out = restore(&small.join("data")).output().unwrap();
        assert_code(&out, 23, &["pg restore onto a full file system"]);
        let err = stderr(&out);
        assert!(err.contains("No space left on device"), "{err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(listing(&small).is_empty(), "{:?}", listing(&small));
        // Into an existing empty directory (a mount point): left empty.
        let out = restore(&small).output().unwrap();
        assert_code(&out, 23, &["pg restore into a full mount point"]);
        assert!(listing(&small).is_empty(), "{:?}", listing(&small));
    }

    // Killed at any moment: the target never exists half-filled, and the
    // next run restores it.
    let pgdata = dir.path().join("data");
    let mut kills = 0;
    for ms in [30u64, 80, 150, 300, 600] {
        let mut child = restore(&pgdata)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(ms));
        if child.try_wait().unwrap().is_none() {
            // As root, the child is runuser: cairn is its child.
            let _ = std::process::Command::new("pkill")
                .args(["-KILL", "-P", &child.id().to_string()])
                .status();
            child.kill().ok();
            kills += 1;
        }
        let status = child.wait().unwrap();
        if status.success() {
            break;
        }
        // Absent, or whole: killed after the final rename (while the file
        // system is synced), the restore had finished its work.
        if pgdata.exists() {
            let names = listing(&pgdata);
            assert!(
                ["PG_VERSION", "recovery.signal", "backup_label", "global"]
                    .iter()
                    .all(|n| names.iter().any(|m| m == n))
                    && !names.iter().any(|m| m.starts_with(".cairn")),
                "killed after {ms} ms: {names:?}"
            );
            break;
        }
    }
    eprintln!("restores killed: {kills}");
    if pgdata.exists() {
        std::fs::remove_dir_all(&pgdata).unwrap();
    }
    let out = restore(&pgdata).output().unwrap();
    assert_code(&out, 0, &["pg restore after the kills"]);
    assert!(pgdata.join("PG_VERSION").is_file());
    // As the server's user, everything belongs to it.
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(dir.path()).unwrap().uid();
    for name in ["PG_VERSION", "backup_manifest", "global"] {
        let uid = std::fs::metadata(pgdata.join(name)).unwrap().uid();
        assert_eq!(uid, owner, "{name}");
    }
    // Scratch directories of killed runs beside it are the only leftovers.
    for name in listing(dir.path()) {
        assert!(
            name == "data" || name == "small" || name.starts_with(".cairn-pg-restore-"),
            "{name}"
        );
    }

    // Killed while moving into an existing directory (a mount point, which
    // cannot be renamed over): the state that leaves is some entries moved
    // in, the rest in the scratch directory inside it, and the list of
    // what was being moved. The next run removes exactly what the list
    // names and restores; a file the list does not name stops it.
    let mount = dir.path().join("mount");
    std::fs::create_dir(&mount).unwrap();
    let scratch = mount.join(".cairn-pg-restore-killed");
    std::fs::create_dir(&scratch).unwrap();
    let mut names = listing(&pgdata);
    names.sort();
    for (i, name) in names.iter().enumerate() {
        let to = if i % 2 == 0 { &mount } else { &scratch };
        let copied = std::process::Command::new("cp")
            .arg("-a")
            .arg(pgdata.join(name))
            .arg(to.join(name))
            .status()
            .unwrap();
        assert!(copied.success());
    }
    std::fs::write(
        mount.join(".cairn-pg-restore-moving"),
        names.join("\n") + "\n",
    )
    .unwrap();
    std::fs::write(mount.join("notes.txt"), "the admin's").unwrap();
    pg.give(&mount);
    let out = restore(&mount).output().unwrap();
    assert_code(
        &out,
        2,
        &["pg restore into a half-moved restore and a file"],
    );
    assert!(stderr(&out).contains("interrupted"), "{}", stderr(&out));
    assert!(mount.join("notes.txt").exists() && mount.join(&names[0]).exists());
    std::fs::remove_file(mount.join("notes.txt")).unwrap();
    let out = restore(&mount).output().unwrap();
    assert_code(&out, 0, &["pg restore into a half-moved restore"]);
    let mut now = listing(&mount);
    now.sort();
    assert_eq!(now, names, "exactly a restored data directory");
    assert!(mount.join("PG_VERSION").is_file());
}

/// Issue 20, defect 2: a restored copy kept the backup's archive_command
/// and archived its own new timeline into the repository it came from.
/// Now it does not archive unless asked (--archive-mode preserve).
#[test]
fn a_restored_copy_does_not_archive_into_the_repository_it_came_from() {
    let Some((pg, env)) = archiving_cluster() else {
        return;
    };
    pg.psql("postgres", "CREATE TABLE t (id int, v text)");
    pg.psql("postgres", "CREATE TABLE marks (label text)");
    basebackup(&pg, &env);
    pg.psql("postgres", "INSERT INTO marks VALUES ('original')");
    archive_segments(&pg, 1);
    let before = pg_status(&env).0["wal"]["wal_files"].as_u64().unwrap();

    let (copy, auto) = restore_and_start(&pg, &env, &["--target-timeline", "current"]);
    assert!(auto.contains("archive_mode = 'off'"), "{auto}");
    assert!(
        auto.contains("recovery_target_timeline = 'current'"),
        "{auto}"
    );
    assert_eq!(copy.psql("postgres", "SHOW archive_mode"), "off");
    // The copy is promoted (timeline 2) and written to, and switches WAL.
    copy.psql("postgres", "INSERT INTO marks VALUES ('copy')");
    copy.psql("postgres", "SELECT pg_switch_wal()");
    copy.psql("postgres", "CHECKPOINT");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        copy.psql("postgres", "SELECT archived_count FROM pg_stat_archiver"),
        "0"
    );
    drop(copy);
    let (st, code) = pg_status(&env);
    assert_eq!(code, 0, "{st}");
    assert_eq!(st["wal"]["wal_files"].as_u64().unwrap(), before, "{st}");
    // So a restore of the original still returns the original.
    let (again, _) = restore_and_start(&pg, &env, &[]);
    assert_eq!(
        again.psql("postgres", "SELECT string_agg(label, ',') FROM marks"),
        "original"
    );
    drop(again);

    // Asked for, the copy keeps archiving (a new primary).
    let (dir, _) = Postgres::scratch_dir();
    let pgdata = dir.path().join("data");
    let out = env
        .cmd()
        .args([
            "--json",
            "pg",
            "restore",
            "--pgdata",
            pgdata.to_str().unwrap(),
        ])
        .args(["--archive-mode", "preserve", "--restore-command", "false"])
        .output()
        .unwrap();
    assert_code(&out, 0, &["pg restore --archive-mode preserve"]);
    let auto = std::fs::read_to_string(pgdata.join("postgresql.auto.conf")).unwrap();
    assert!(!auto.contains("archive_mode = 'off'"), "{auto}");
    assert!(auto.contains("wal-push"), "{auto}");
    // A bad timeline is refused before anything is written.
    let other = dir.path().join("other");
    let out = env
        .cmd()
        .args(["pg", "restore", "--pgdata", other.to_str().unwrap()])
        .args([
            "--target-timeline",
            "sideways",
            "--restore-command",
            "false",
        ])
        .output()
        .unwrap();
    assert_code(&out, 2, &["pg restore --target-timeline sideways"]);
    assert!(!other.exists());
}

/// Issue 20, defect 4: an LSN target inside a base backup's window (after
/// its start, before the end of its WAL) picked that backup, and
/// PostgreSQL stopped with "requested recovery stop point is before
/// consistent recovery point". The snapshot now records where the
/// backup's WAL ends, and the restore starts from the newest backup that
/// is consistent before the target.
#[test]
fn an_lsn_target_inside_a_base_backups_window_restores_from_the_one_before() {
    let Some((pg, env)) = archiving_cluster() else {
        return;
    };
    pg.psql("postgres", "CREATE TABLE t (id int, v text)");
    pg.psql("postgres", "CREATE TABLE marks (label text)");
    let first = basebackup(&pg, &env);
    pg.psql("postgres", "INSERT INTO marks VALUES ('one')");
    archive_segments(&pg, 1);
    let second = basebackup(&pg, &env);
    pg.psql("postgres", "INSERT INTO marks VALUES ('two')");
    archive_segments(&pg, 1);

    let dump_of = |id: &Value| dump_info(&env, id);
    let (a, b) = (
        dump_of(&first["snapshot_id"]),
        dump_of(&second["snapshot_id"]),
    );
    let lsn = |v: &Value| {
        let (hi, lo) = v.as_str().unwrap().split_once('/').unwrap();
        u64::from_str_radix(hi, 16).unwrap() << 32 | u64::from_str_radix(lo, 16).unwrap()
    };
    for d in [&a, &b] {
        assert!(lsn(&d["stop_lsn"]) > lsn(&d["start_lsn"]), "{d}");
        assert!(d["start_time"].as_str().is_some(), "{d}");
    }
    let (st, _) = pg_status(&env);
    assert_eq!(st["newest_base_backup"]["stop_lsn"], b["stop_lsn"], "{st}");

    // The second backup's own start: inside its window. The first one is
    // used, and the restore stops there: 'one' but not 'two'.
    let inside = b["start_lsn"].as_str().unwrap();
    let (restored, auto) = restore_and_start(&pg, &env, &["--target-lsn", inside]);
    assert!(auto.contains(inside), "{auto}");
    assert_eq!(
        restored.psql("postgres", "SELECT string_agg(label, ',') FROM marks"),
        "one"
    );
    drop(restored);
    let (dir, _) = Postgres::scratch_dir();
    let pick = |target: &str| {
        let pgdata = dir.path().join(format!("d{}", target.replace('/', "-")));
        env.cmd()
            .args([
                "--json",
                "pg",
                "restore",
                "--pgdata",
                pgdata.to_str().unwrap(),
            ])
            .args(["--target-lsn", target, "--restore-command", "false"])
            .output()
            .unwrap()
    };
    let out = pick(inside);
    assert_code(&out, 0, &["pg restore inside the window"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["base_backup"], first["snapshot_id"], "{v}");
    // At the end of its window, the second backup is the one.
    let out = pick(b["stop_lsn"].as_str().unwrap());
    assert_code(&out, 0, &["pg restore at the end of the window"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["base_backup"], second["snapshot_id"], "{v}");
    // Before any backup is consistent: refused, naming the earliest point.
    let out = pick(a["start_lsn"].as_str().unwrap());
    assert_code(&out, 24, &["pg restore before every backup"]);
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "earliest restorable point is WAL location {}",
            a["stop_lsn"].as_str().unwrap()
        )),
        "{err}"
    );
}

/// Deletes the record of archived WAL file `name` from the repository of
/// `pg` (records are named by a keyed hash: found by hiding each in turn).
fn lose_archived(pg: &Postgres, env: &Env, name: &str) {
    let wal_dir = pg.socket_dir().join("archive").join("wal");
    let probe = env.path("probe");
    let fetch = || env.run(&["wal-fetch", name, probe.to_str().unwrap()]);
    assert_code(&fetch(), 0, &["wal-fetch before losing it"]);
    let victim = std::fs::read_dir(&wal_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            std::fs::rename(p, p.with_extension("away")).unwrap();
            let gone = fetch().status.code() == Some(20);
            std::fs::rename(p.with_extension("away"), p).unwrap();
            gone
        })
        .unwrap();
    std::fs::remove_file(&victim).unwrap();
}

/// The WAL file name `n` segments after `name`.
fn segment_after(name: &str, n: u32) -> String {
    let seg = u32::from_str_radix(&name[16..], 16).unwrap() + n;
    format!("{}{seg:08X}", &name[..16])
}

/// Issue 20, defect 5: a gap between older base backups was reported
/// healthy by `pg status` and `check` (exit 0), although it breaks
/// recovery into that window. Now both exit 22, `pg status` shows the
/// windows that can be restored, and `pg restore` warns when the target
/// lies past the gap.
#[test]
fn a_gap_between_older_base_backups_is_reported_with_the_windows_left() {
    let Some((pg, env)) = archiving_cluster() else {
        return;
    };
    pg.psql("postgres", "CREATE TABLE t (id int, v text)");
    let first = basebackup(&pg, &env);
    archive_segments(&pg, 3);
    let second = basebackup(&pg, &env);
    archive_segments(&pg, 2);
    let (st, code) = pg_status(&env);
    assert_eq!(code, 0, "{st}");
    assert_eq!(st["wal"]["windows"].as_array().unwrap().len(), 1, "{st}");
    assert_eq!(st["wal"]["windows"][0]["base_backup"], first["snapshot_id"]);

    let start = dump_info(&env, &first["snapshot_id"])["start_wal"]
        .as_str()
        .unwrap()
        .to_string();
    let lost = segment_after(&start, 1);
    lose_archived(&pg, &env, &lost);

    let (st, code) = pg_status(&env);
    assert_eq!(code, 22, "{st}");
    assert_eq!(st["wal"]["missing"][0], lost.as_str(), "{st}");
    let windows = st["wal"]["windows"].as_array().unwrap();
    assert_eq!(windows.len(), 2, "{st}");
    assert_eq!(windows[0]["base_backup"], first["snapshot_id"], "{st}");
    assert_eq!(windows[0]["latest_wal"], start.as_str(), "{st}");
    assert_eq!(windows[0]["gap_after"], true, "{st}");
    assert_eq!(windows[1]["base_backup"], second["snapshot_id"], "{st}");
    assert_eq!(windows[1]["gap_after"], false, "{st}");
    let human = env.run(&["pg", "status"]);
    assert_code(&human, 22, &["pg status"]);
    let text = String::from_utf8_lossy(&human.stdout);
    assert_eq!(text.matches("restorable:").count(), 2, "{text}");

    let out = env.run(&["--json", "check"]);
    assert_code(&out, 22, &["check with a gap"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let problems = v["problems"].as_array().unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p["kind"] == "wal_gap" && p["id"] == lost.as_str()),
        "{v}"
    );

    // Restoring the first base backup to the end: it stops at the gap,
    // and says so before anything is written.
    let (dir, _) = Postgres::scratch_dir();
    let pgdata = dir.path().join("data");
    let first_id = first["snapshot_id"].as_str().unwrap();
    let out = env
        .cmd()
        .args(["pg", "restore", "--pgdata", pgdata.to_str().unwrap()])
        .args(["--snapshot", first_id, "--restore-command", "false"])
        .output()
        .unwrap();
    assert_code(&out, 0, &["pg restore past a gap"]);
    let err = stderr(&out);
    assert!(
        err.contains(&format!("gap after WAL file {start}")),
        "{err}"
    );
    // From the second one: nothing to warn about.
    let out = env
        .cmd()
        .args([
            "pg",
            "restore",
            "--pgdata",
            dir.path().join("d2").to_str().unwrap(),
        ])
        .args(["--restore-command", "false"])
        .output()
        .unwrap();
    assert_code(&out, 0, &["pg restore of the newest"]);
    assert!(!stderr(&out).contains("gap"), "{}", stderr(&out));
}

/// Issue 20, defect 3: `wal-push` stored a segment of another cluster
/// under the primary's next name, after which the primary's own archiving
/// failed on every retry while `pg status` said healthy. The repository
/// now records the system identifier of the cluster whose WAL it archives
/// (from the first segment's page header) and refuses another cluster's
/// WAL with exit 29.
#[test]
fn wal_of_another_cluster_is_refused_and_the_primary_keeps_archiving() {
    let Some((pg, env)) = archiving_cluster() else {
        return;
    };
    pg.psql("postgres", "CREATE TABLE t (id int, v text)");
    let last = archive_segments(&pg, 1);
    let sysid = pg.psql(
        "postgres",
        "SELECT system_identifier FROM pg_control_system()",
    );
    let (st, code) = pg_status(&env);
    assert_eq!(code, 0, "{st}");
    assert_eq!(st["system_identifier"], sysid.as_str(), "{st}");
    let files = st["wal"]["wal_files"].as_u64().unwrap();

    // Another cluster, with a segment of its own.
    let other = Postgres::start_with(&[("wal_level", "replica")]).unwrap();
    other.psql(
        "postgres",
        "CREATE TABLE x AS SELECT generate_series(1, 1000) g",
    );
    let segment = other.psql("postgres", "SELECT pg_walfile_name(pg_current_wal_lsn())");
    other.psql("postgres", "SELECT pg_switch_wal()");
    let other_sysid = other.psql(
        "postgres",
        "SELECT system_identifier FROM pg_control_system()",
    );
    assert_ne!(other_sysid, sysid);
    let theirs = other.data_dir().join("pg_wal").join(&segment);
    let out = env.run(&["wal-push", theirs.to_str().unwrap()]);
    assert_code(&out, 29, &["wal-push of another cluster's segment"]);
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains(&other_sysid) && err.contains(&sysid), "{err}");
    // The same bytes under the primary's next name: refused too.
    let next = segment_after(&last, 1);
    let disguised = other.socket_dir().join("disguised");
    std::fs::create_dir_all(&disguised).unwrap();
    other.give(&disguised);
    let copy = disguised.join(&next);
    std::fs::copy(&theirs, &copy).unwrap();
    other.give(&copy);
    let out = env.run(&["wal-push", copy.to_str().unwrap()]);
    assert_code(
        &out,
        29,
        &["wal-push of another cluster's segment, renamed"],
    );
    assert_eq!(
        pg_status(&env).0["wal"]["wal_files"].as_u64().unwrap(),
        files,
        "nothing was stored"
    );
    // The primary's own archiving goes on.
    archive_segments(&pg, 2);
    let mine = basebackup(&pg, &env);
    let (st, code) = pg_status(&env);
    assert_eq!(code, 0, "{st}");
    assert_eq!(
        st["newest_base_backup"]["system_identifier"],
        sysid.as_str(),
        "the base backup's pg_control: {st}"
    );

    // A base backup of the other cluster stored here by mistake: it can
    // never be recovered from this archive, so status says so, restore
    // passes it over, and refuses it when named.
    let theirs = basebackup(&other, &env);
    let (st, code) = pg_status(&env);
    assert_eq!(code, 22, "{st}");
    assert_eq!(st["foreign_base_backups"][0], theirs["snapshot_id"], "{st}");
    let (dir, _) = Postgres::scratch_dir();
    let restore = |extra: &[&str], d: &str| {
        env.cmd()
            .args([
                "--json",
                "pg",
                "restore",
                "--restore-command",
                "false",
                "--pgdata",
            ])
            .arg(dir.path().join(d))
            .args(extra)
            .output()
            .unwrap()
    };
    let out = restore(&[], "newest");
    assert_code(
        &out,
        0,
        &["pg restore with another cluster's backup newest"],
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["base_backup"], mine["snapshot_id"], "{v}");
    let out = restore(
        &["--snapshot", theirs["snapshot_id"].as_str().unwrap()],
        "named",
    );
    assert_code(&out, 29, &["pg restore of another cluster's backup"]);
    assert!(!dir.path().join("named").exists());
}

/// `cairn pg check`, as pgBackRest's check: a WAL switch whose segment
/// must arrive, and the server's identity.
#[test]
fn pg_check_confirms_archiving_end_to_end_and_names_what_is_wrong() {
    let Some((pg, env)) = archiving_cluster() else {
        return;
    };
    let conn = |p: &Postgres| {
        vec![
            "-h".to_string(),
            p.socket_dir().to_str().unwrap().to_string(),
            "-p".to_string(),
            p.port.to_string(),
            "-U".to_string(),
            "postgres".to_string(),
        ]
    };
    let check = |env: &Env, p: &Postgres, timeout: &str| {
        let mut c = env.cmd();
        c.args(["--json", "pg", "check", "--timeout", timeout, "--"])
            .args(conn(p));
        c.output().unwrap()
    };
    let out = check(&env, &pg, "60");
    assert_code(&out, 0, &["pg check"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let segment = v["segment"].as_str().unwrap();
    let dest = env.path("checked");
    env.ok(&["wal-fetch", segment, dest.to_str().unwrap()]);
    assert_eq!(
        v["system_identifier"].as_str().unwrap(),
        pg.psql(
            "postgres",
            "SELECT system_identifier FROM pg_control_system()"
        )
    );
    // The identity is recorded now: another cluster is refused.
    let other = Postgres::start_with(&[("wal_level", "replica")]).unwrap();
    let out = check(&env, &other, "5");
    assert_code(&out, 29, &["pg check against another cluster"]);

    // That other cluster does not archive at all: said so, exit 30.
    let fresh = Env::init_as_postgres();
    let out = check(&fresh, &other, "5");
    assert_code(&out, 30, &["pg check with archive_mode off"]);
    assert!(
        stderr(&out).contains("archive_mode is off"),
        "{}",
        stderr(&out)
    );

    // A cluster whose archive_command fails: the segment never arrives.
    let failing = Postgres::start_with(&[
        ("archive_mode", "on"),
        ("archive_command", "false"),
        ("wal_level", "replica"),
    ])
    .unwrap();
    let out = check(&fresh, &failing, "3");
    assert_code(&out, 30, &["pg check with a failing archive_command"]);
    let err = stderr(&out);
    assert!(
        err.contains("did not reach the repository within 3 s"),
        "{err}"
    );
    assert!(err.contains("archive_command failed"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}

/// Base backups taken from a standby (pg_basebackup against it, through
/// `pg basebackup`'s arguments) restore with the WAL the primary archived.
#[test]
fn a_base_backup_taken_from_a_standby_restores_with_the_primarys_archive() {
    // A backup from a standby needs full page writes on the primary.
    let Some((pg, env)) = archiving_cluster_with(&[("full_page_writes", "on")]) else {
        return;
    };
    pg.psql("postgres", "CREATE TABLE t (id int, v text)");
    pg.psql("postgres", "CREATE TABLE marks (label text)");
    pg.psql(
        "postgres",
        "INSERT INTO marks VALUES ('before the standby')",
    );
    let (dir, _) = Postgres::scratch_dir();
    let data = dir.path().join("data");
    let out = pg
        .client("pg_basebackup")
        .arg("-D")
        .arg(&data)
        .args(["-R", "-X", "stream", "-c", "fast"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    pg.give(dir.path());
    let standby = Postgres::adopt(dir);
    pg.psql("postgres", "INSERT INTO marks VALUES ('replicated')");
    let deadline = Instant::now() + Duration::from_secs(60);
    while standby.psql("postgres", "SELECT count(*) FROM marks") != "2" {
        assert!(Instant::now() < deadline, "the standby did not catch up");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(standby.psql("postgres", "SELECT pg_is_in_recovery()"), "t");
    // pg check needs the primary: said, with its own code.
    let out = env
        .cmd()
        .args(["pg", "check", "--timeout", "5", "--", "-h"])
        .arg(standby.socket_dir())
        .args(["-p", &standby.port.to_string(), "-U", "postgres"])
        .output()
        .unwrap();
    assert_code(&out, 25, &["pg check against a standby"]);
    assert!(stderr(&out).contains("standby"), "{}", stderr(&out));

    let taken = basebackup(&standby, &env);
    let dump = &dump_info(&env, &taken["snapshot_id"]);
    assert_eq!(
        dump["system_identifier"].as_str().unwrap(),
        pg.psql(
            "postgres",
            "SELECT system_identifier FROM pg_control_system()"
        ),
        "{dump}"
    );
    assert!(dump["start_wal"].as_str().is_some(), "{dump}");
    pg.psql("postgres", "INSERT INTO marks VALUES ('after the backup')");
    archive_segments(&pg, 2);
    drop(standby);

    let (restored, _) = restore_and_start(&pg, &env, &[]);
    assert_eq!(
        restored.psql("postgres", "SELECT string_agg(label, ',') FROM marks"),
        "before the standby,replicated,after the backup"
    );
}

/// `drill --pg` of base backup `base` (its `pg basebackup --json`
/// output) in `scratch`, with JSON output.
fn drill_pg(env: &Env, scratch: &std::path::Path, base: &Value) -> std::process::Output {
    env.cmd()
        .args(["--json", "drill", "--pg", "--scratch"])
        .arg(scratch)
        .arg(base["snapshot_id"].as_str().unwrap())
        .output()
        .unwrap()
}

/// Issue 20, defect 6: `drill --pg` of a base backup exited 25 and
/// recorded a recovery time without replaying any WAL. Now it is the real
/// recovery test: the base backup restored into scratch, a private
/// PostgreSQL (Unix socket in scratch only) replaying the archived WAL to
/// its end, a query, and the measured time recorded.
#[test]
fn a_drill_of_a_base_backup_recovers_it_with_a_private_server() {
    let Some((pg, env)) = archiving_cluster() else {
        return;
    };
    pg.psql("postgres", "CREATE TABLE t (id int, v text)");
    let base = basebackup(&pg, &env);
    archive_segments(&pg, 2);
    let scratch = env.path("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    pg.give(&scratch);
    let drill = |env: &Env| drill_pg(env, &scratch, &base);
    let out = drill(&env);
    assert_code(&out, 0, &["drill --pg of a base backup", &stderr(&out)]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["dump_check"], "recovered", "{v}");
    assert!(v["recovery_seconds"].as_f64().unwrap() > 0.0, "{v}");
    // Nothing is left running or lying in scratch.
    assert_eq!(std::fs::read_dir(&scratch).unwrap().count(), 0);

    // Without the base backup's first WAL file, it cannot recover: the
    // drill fails, says why, and records the failure.
    let start = dump_info(&env, &base["snapshot_id"])["start_wal"]
        .as_str()
        .unwrap()
        .to_string();
    lose_archived(&pg, &env, &start);
    let out = drill(&env);
    assert_code(&out, 27, &["drill --pg without the first WAL file"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], false, "{v}");
    assert!(v["error"].as_str().unwrap().contains("recover"), "{v}");
    assert_eq!(std::fs::read_dir(&scratch).unwrap().count(), 0);
}

/// Issue 20: the drill checks that recovery reached the end of the
/// archive. A WAL file that PostgreSQL cannot replay (here: the previous
/// segment's bytes archived under the next name, their first page address
/// changed to fit it; PostgreSQL takes it for the end of WAL) made it
/// promote early while the drill passed. Without the change, wal-push
/// refuses the file (its first page names another position).
#[test]
fn a_drill_fails_when_recovery_stops_short_of_the_archive() {
    let Some((pg, env)) = archiving_cluster() else {
        return;
    };
    pg.psql("postgres", "CREATE TABLE t (id int, v text)");
    let base = basebackup(&pg, &env);
    let last = archive_segments(&pg, 2);
    let scratch = env.path("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    pg.give(&scratch);
    let drill = || drill_pg(&env, &scratch, &base);
    assert_code(&drill(), 0, &["drill --pg of the whole archive"]);
    // The next segment's name, holding the last one's bytes, archived
    // before PostgreSQL archives the real one.
    let bogus_dir = env.path("bogus");
    std::fs::create_dir_all(&bogus_dir).unwrap();
    pg.give(&bogus_dir);
    let bogus = bogus_dir.join(segment_after(&last, 1));
    let out = env.run(&["wal-fetch", &last, bogus.to_str().unwrap()]);
    assert_code(&out, 0, &["wal-fetch of the last segment"]);
    // Pushed as it is, its first page names its real position: refused.
    let out = env.run(&["wal-push", bogus.to_str().unwrap()]);
    assert_code(&out, 27, &["wal-push of a segment under another's name"]);
    assert!(stderr(&out).contains("is not WAL file"), "{}", stderr(&out));
    // With the first page's address made to fit the name (the rest still
    // the previous segment's), it is archived; PostgreSQL cannot replay it.
    let mut bytes = std::fs::read(&bogus).unwrap();
    let mut addr = [0u8; 8];
    addr.copy_from_slice(&bytes[8..16]);
    let seg_size = u32::from_le_bytes(bytes[32..36].try_into().unwrap());
    let moved = u64::from_le_bytes(addr) + u64::from(seg_size);
    bytes[8..16].copy_from_slice(&moved.to_le_bytes());
    std::fs::write(&bogus, bytes).unwrap();
    let out = env.run(&["wal-push", bogus.to_str().unwrap()]);
    assert_code(&out, 0, &["wal-push of the bogus segment"]);
    let out = drill();
    assert_code(&out, 22, &["drill --pg whose recovery stops early"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], false, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("short of the end of the archive"),
        "{v}"
    );
}

/// Issue 20, the guide's key for the archive path: archive_command opens
/// the repository with a write-only key whose password `key add
/// --generate-password` wrote to a file only postgres can read; every
/// segment is archived, and a full key fetches it.
#[test]
fn archive_command_with_a_generated_write_only_key() {
    let cairn = env!("CARGO_BIN_EXE_cairn");
    let command = format!(
        "CAIRN_PASSWORD_FILE={{dir}}/wal-password CAIRN_CACHE_DIR={{dir}}/cache {cairn} -q -r {{dir}}/archive wal-push %p"
    );
    let Some(pg) = Postgres::start_with(&[
        ("archive_mode", "on"),
        ("archive_command", command.as_str()),
        ("wal_level", "replica"),
    ]) else {
        return;
    };
    let mut env = Env::empty_as_postgres();
    env.location = Some(pg.socket_dir().join("archive").display().to_string());
    let mut init = vec!["init"];
    init.extend(common::FAST_KDF);
    env.ok(&init);
    let file = pg.socket_dir().join("wal-password");
    env.ok(&[
        "key",
        "add",
        "--write-only",
        "--generate-password",
        file.to_str().unwrap(),
    ]);
    pg.psql("postgres", "CREATE TABLE t (id int, v text)");
    let last = archive_segments(&pg, 3);
    // Archived through the write-only key: the full key reads it back.
    let out = env.run(&["wal-fetch", &last, env.path("fetched").to_str().unwrap()]);
    assert_code(&out, 0, &["wal-fetch with the full key"]);
    assert_eq!(
        std::fs::metadata(env.path("fetched")).unwrap().len(),
        16 << 20
    );
}

/// WAL is stored in 1 MiB pieces (docs/design.md §3.4), so zstd sees what a
/// segment repeats from further back than a content-defined chunk: here a
/// 128 KiB random block comes back 31 times with a byte changed every 4 KiB
/// (no two chunks equal, so deduplication finds nothing). Compressed chunk
/// by chunk it would stay about 4 MiB; in pieces it is a fraction. The
/// file comes back whole.
#[test]
fn wal_files_are_compressed_in_pieces_that_see_their_repetitions() {
    let env = Env::init();
    let block = common::pseudo_random(128 << 10, 11);
    let mut data = Vec::with_capacity(4 << 20);
    for round in 0..32u8 {
        let mut b = block.clone();
        for at in (0..b.len()).step_by(4096) {
            b[at] = b[at].wrapping_add(round);
        }
        data.extend_from_slice(&b);
    }
    let name = "00000001000000000000000A.partial";
    let file = env.path(name);
    std::fs::write(&file, &data).unwrap();
    let before: u64 = env.repo_listing().iter().map(|(_, n)| n).sum();
    env.ok(&["wal-push", file.to_str().unwrap()]);
    let stored: u64 = env.repo_listing().iter().map(|(_, n)| n).sum::<u64>() - before;
    assert!(
        stored < (data.len() / 4) as u64,
        "{stored} bytes stored for {} bytes of WAL",
        data.len()
    );
    let dest = env.path("fetched");
    env.ok(&["wal-fetch", name, dest.to_str().unwrap()]);
    assert!(std::fs::read(&dest).unwrap() == data);
}

/// A WAL file over 64 MiB (segments may be up to 1 GiB) is stored as it is
/// read instead of from memory, and comes back whole.
#[test]
fn a_wal_file_larger_than_64_mib_is_archived_as_it_is_read() {
    let env = Env::init();
    let mut data = vec![0u8; (64 << 20) + 4096 + 17];
    for (i, b) in data.iter_mut().enumerate().step_by(512) {
        *b = (i / 512) as u8;
    }
    let name = "000000010000000000000004.partial";
    let file = env.path(name);
    std::fs::write(&file, &data).unwrap();
    env.ok(&["wal-push", file.to_str().unwrap()]);
    let dest = env.path("fetched");
    env.ok(&["wal-fetch", name, dest.to_str().unwrap()]);
    assert!(std::fs::read(&dest).unwrap() == data);
}
