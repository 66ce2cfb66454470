//! The real binary against a real S3 server (s3s-fs on 127.0.0.1): nightly
//! backups, restore, forget + prune, check --read-data, and an outage in
//! the middle of a backup.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::s3::S3Server;
use common::*;

fn s3_env(server: &S3Server, prefix: &str, extra: &[&str]) -> Env {
    Env::init_at(&server.location(prefix), &server.env(), extra)
}

#[test]
fn nightly_backups_restore_prune_and_check_on_s3() {
    let Some(server) = S3Server::start() else {
        return;
    };
    let env = s3_env(&server, "nightly", &["--pack-size", "1MiB"]);
    let mut nights = Vec::new();
    for n in 0..4u64 {
        let mut dump = fake_dump(25_000, 100 * (n + 1));
        dump.extend(pseudo_random(300_000, 500 * (n + 1)));
        let id = env.backup_stdin(&dump, &["--stdin-filename", "shop.sql"]);
        nights.push((id, dump));
    }
    assert_eq!(env.snapshots().len(), 4);
    for (id, dump) in &nights {
        assert_eq!(&env.dump(id, "shop.sql"), dump, "{}", server.log());
    }
    // A directory, restored.
    let src = env.path("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("a.txt"), b"alpha").unwrap();
    std::fs::write(src.join("sub/b.bin"), pseudo_random(70_000, 9)).unwrap();
    env.ok(&["backup", src.to_str().unwrap()]);
    let target = env.path("restored");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    let inner = target.join(src.strip_prefix("/").unwrap());
    assert_eq!(std::fs::read(inner.join("a.txt")).unwrap(), b"alpha");
    assert_eq!(
        std::fs::read(inner.join("sub/b.bin")).unwrap(),
        pseudo_random(70_000, 9)
    );

    env.ok(&["forget", &nights[0].0, &nights[1].0]);
    env.ok(&["prune", "--grace", "0", "--max-unused", "0"]);
    env.ok(&["check", "--read-data"]);
    for (id, dump) in &nights[2..] {
        assert_eq!(&env.dump(id, "shop.sql"), dump);
    }
    // Without the local cache too.
    let out = env.ok(&["--no-cache", "check"]);
    assert!(out.contains("no errors"), "{out}");
}

#[test]
fn an_s3_outage_during_backup_fails_cleanly_and_loses_nothing() {
    let Some(mut server) = S3Server::start() else {
        return;
    };
    let env = s3_env(&server, "outage", &["--pack-size", "1MiB"]);
    let old = fake_dump(20_000, 7);
    let old_id = env.backup_stdin(&old, &["--stdin-filename", "db.sql"]);

    // A long backup; the server dies while packs are being stored.
    let mut child = env
        .cmd()
        .args(["backup", "-", "--stdin-filename", "db.sql"])
        .env("CAIRN_CONNECTIONS", "2")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        for seed in 0..40u64 {
            if input
                .write_all(&pseudo_random(1 << 20, 1000 + seed))
                .is_err()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    server.kill();
    let start = Instant::now();
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    let err = stderr(&out);
    assert!(
        !out.status.success(),
        "backup succeeded with the server down"
    );
    assert!(
        !err.contains("panicked") && err.trim_end().lines().count() <= 3,
        "{err}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(120),
        "gave up too slowly"
    );

    // Back up: nothing referenced is lost, the old snapshot restores,
    // check finds no damage, and the backup works again.
    server.restart();
    let snaps = env.snapshots();
    assert_eq!(snaps.len(), 1, "a failed backup left a snapshot");
    assert_eq!(env.dump(&old_id, "db.sql"), old);
    env.ok(&["check", "--read-data"]);
    let new = pseudo_random(3 << 20, 77);
    let new_id = env.backup_stdin(&new, &["--stdin-filename", "db.sql"]);
    assert_eq!(env.dump(&new_id, "db.sql"), new);
}

#[test]
fn bad_s3_locations_and_credentials_are_clear_errors() {
    let Some(server) = S3Server::start() else {
        return;
    };
    let env = Env::empty();
    let cairn = || {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"));
        c.env("CAIRN_PASSWORD", PASSWORD)
            .env("CAIRN_CACHE_DIR", &env.cache)
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .stdin(Stdio::null());
        c
    };
    for bad in ["s3:", "s3:http://127.0.0.1:1", "s3:https:///bucket"] {
        let out = cairn().args(["-r", bad, "snapshots"]).output().unwrap();
        assert_code(&out, 2, &[bad]);
    }
    // Wrong secret: one line, not a hang, not "no repository".
    let out = cairn()
        .args(["-r", &server.location("nothing"), "snapshots"])
        .env("AWS_ACCESS_KEY_ID", common::s3::ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", "wrong")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(
        stderr(&out).trim_end().lines().count(),
        1,
        "{}",
        stderr(&out)
    );
    // An empty prefix: no repository there.
    let out = cairn()
        .args(["-r", &server.location("nothing"), "snapshots"])
        .envs(server.env())
        .output()
        .unwrap();
    assert_code(&out, 10, &["snapshots of nothing"]);
}
