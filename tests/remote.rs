//! The real binary against the other remote backends: an SSH server
//! (Debian's sshd on 127.0.0.1, reached through the system's `ssh` and a
//! `Host` alias) and Azure Blob Storage (Azurite on 127.0.0.1). Nightly
//! backups, restore, forget + prune, check; a backup killed or cut off in
//! the middle; bad locations and credentials.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::azurite::Azurite;
use common::sftp::SshServer;
use common::*;

fn pairs(vars: &[(String, String)]) -> Vec<(&str, &str)> {
    vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

#[test]
fn nightly_backups_restore_prune_and_check_over_sftp() {
    let Some(server) = SshServer::start() else {
        return;
    };
    let vars = server.env();
    let env = Env::init_at(
        &server.location("nightly"),
        &pairs(&vars),
        &["--pack-size", "1MiB"],
    );
    nightly_round(&env, &|| server.log());
    // The directory on the server is the repository a local cairn reads:
    // the same layout, byte for byte.
    let mut local = env.cmd_at(server.path("nightly").to_str().unwrap());
    local.args(["check", "--read-data"]);
    let out = local.output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // No temporary file is left, and every command closed its SSH
    // sessions when it finished.
    let tmp: Vec<_> = files_under(&server.path("nightly"))
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(tmp.is_empty(), "{tmp:?}");
    assert_eq!(server.masters(), Vec::<String>::new());
}

#[test]
fn a_killed_sftp_backup_leaves_no_short_object_and_loses_nothing() {
    let Some(server) = SshServer::start() else {
        return;
    };
    let vars = server.env();
    let env = Env::init_at(
        &server.location("killed"),
        &pairs(&vars),
        &["--pack-size", "1MiB"],
    );
    let old = fake_dump(20_000, 7);
    let old_id = env.backup_stdin(&old, &["--stdin-filename", "db.sql"]);
    let data = server.path("killed").join("data");
    let packs_before = files_under(&data).len();

    // Killed (SIGKILL) once packs are being stored.
    let (mut child, writer) = long_backup(&env);
    let deadline = Instant::now() + Duration::from_secs(60);
    while files_under(&data).len() < packs_before + 3 {
        assert!(Instant::now() < deadline, "no pack was stored");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    writer.join().unwrap();

    // Every object under its final name is whole (check reads them all);
    // the old snapshot restores; the next backup stores what the killed
    // one had left half-written.
    assert_eq!(env.snapshots().len(), 1, "a killed backup left a snapshot");
    assert_eq!(env.dump(&old_id, "db.sql"), old);
    env.ok(&["check", "--read-data"]);
    let mut new = Vec::new();
    for seed in 0..8u64 {
        new.extend(pseudo_random(1 << 20, 1000 + seed));
    }
    let new_id = env.backup_stdin(&new, &["--stdin-filename", "db.sql"]);
    assert_eq!(env.dump(&new_id, "db.sql"), new);
    env.ok(&["check", "--read-data"]);
}

#[test]
fn an_sftp_server_going_down_during_backup_fails_cleanly_and_loses_nothing() {
    let Some(mut server) = SshServer::start() else {
        return;
    };
    let vars = server.env();
    let env = Env::init_at(
        &server.location("outage"),
        &pairs(&vars),
        &["--pack-size", "1MiB"],
    );
    let old = fake_dump(20_000, 7);
    let old_id = env.backup_stdin(&old, &["--stdin-filename", "db.sql"]);

    let (child, writer) = long_backup(&env);
    std::thread::sleep(Duration::from_millis(500));
    server.kill_all();
    fails_cleanly(child, writer);

    server.restart();
    nothing_lost_after_an_outage(&env, &old_id, &old);

    // A server back within the retries (a reboot, a restarted sshd): the
    // backup goes on and succeeds, and -v says what it waited for.
    let mut child = env
        .cmd()
        .args(["-v", "backup", "-", "--stdin-filename", "db.sql"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let mut expected = Vec::new();
    for seed in 0..6u64 {
        expected.extend(pseudo_random(1 << 20, 2000 + seed));
    }
    let parts = expected.clone();
    let writer = std::thread::spawn(move || {
        for part in parts.chunks(1 << 20) {
            input.write_all(part).unwrap();
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    // Down from the second part to after the last one was written.
    std::thread::sleep(Duration::from_millis(300));
    server.kill_all();
    std::thread::sleep(Duration::from_millis(2500));
    server.restart();
    writer.join().unwrap();
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    eprintln!("{err}");
    assert!(err.contains("retry"), "{err}");
    assert_eq!(env.snapshots().len(), 3);
    assert_eq!(env.dump("latest", "db.sql"), expected);
    env.ok(&["check", "--read-data"]);
    assert_eq!(server.masters(), Vec::<String>::new());
}

#[test]
fn sftp_errors_are_one_clear_line() {
    let Some(server) = SshServer::start() else {
        return;
    };
    let vars = server.env();
    let env = Env::init_at(&server.location("errors"), &pairs(&vars), &[]);
    let run = |location: &str| {
        let mut c = env.cmd_at(location);
        c.arg("snapshots");
        let start = Instant::now();
        let out = c.output().unwrap();
        (out, start.elapsed())
    };
    // No repository there.
    let (out, _) = run(&server.location("nothing-here"));
    assert_code(&out, 10, &["snapshots"]);
    // Nothing listening.
    let (out, took) = run(&format!(
        "sftp://127.0.0.1:{}{}",
        free_port(),
        server.path("errors").display()
    ));
    let err = stderr(&out);
    eprintln!("{err}");
    assert!(!out.status.success());
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("sftp://127.0.0.1:"), "{err}");
    assert!(took < Duration::from_secs(60), "{took:?}");
    // A host key that is not the known one: refused, never accepted.
    server.forget_host_key();
    let (out, _) = run(&server.location("errors"));
    let err = stderr(&out);
    eprintln!("{err}");
    assert!(!out.status.success());
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let known =
        std::fs::read_to_string(server.state_dir().parent().unwrap().join("known_hosts")).unwrap();
    assert_eq!(known.lines().count(), 1, "the new host key was added");
    assert_eq!(server.masters(), Vec::<String>::new());
}

fn azure_env(server: &Azurite, prefix: &str) -> Env {
    Env::init_at(
        &server.location(prefix),
        &pairs(&server.env()),
        &["--pack-size", "1MiB"],
    )
}

#[test]
fn nightly_backups_restore_prune_and_check_on_azure() {
    let Some(server) = Azurite::start() else {
        return;
    };
    let env = azure_env(&server, "nightly");
    nightly_round(&env, &|| server.log());
    // A second repository in the same container, under its own path, is
    // its own.
    let other = azure_env(&server, "other/db2");
    assert!(other.snapshots().is_empty());
}

#[test]
fn an_azure_outage_during_backup_fails_cleanly_and_loses_nothing() {
    let Some(mut server) = Azurite::start() else {
        return;
    };
    let env = azure_env(&server, "outage");
    let old = fake_dump(20_000, 7);
    let old_id = env.backup_stdin(&old, &["--stdin-filename", "db.sql"]);

    let (child, writer) = long_backup(&env);
    std::thread::sleep(Duration::from_millis(300));
    server.kill();
    fails_cleanly(child, writer);

    server.restart();
    nothing_lost_after_an_outage(&env, &old_id, &old);
}

#[test]
fn azure_errors_are_one_clear_line() {
    let Some(server) = Azurite::start() else {
        return;
    };
    let env = azure_env(&server, "errors");
    let run = |location: &str, vars: &[(&str, &str)]| {
        let mut c = env.cmd_at(location);
        c.arg("snapshots").envs(vars.iter().copied());
        c.output().unwrap()
    };
    let location = server.location("errors");
    // A wrong key: access refused.
    let out = run(
        &location,
        &[(
            "AZURE_ACCOUNT_KEY",
            "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktMDE=",
        )],
    );
    assert_code(&out, 13, &["snapshots", "(wrong key)"]);
    let err = stderr(&out);
    eprintln!("{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("AZURE_ACCOUNT_KEY"), "{err}");
    // No key at all.
    let mut c = env.cmd_at(&location);
    c.arg("snapshots").env_remove("AZURE_ACCOUNT_KEY");
    let out = c.output().unwrap();
    assert_code(&out, 2, &["snapshots", "(no key)"]);
    assert!(
        stderr(&out).contains("AZURE_ACCOUNT_KEY"),
        "{}",
        stderr(&out)
    );
    // A container that does not exist: init says so.
    let mut c = env.cmd_at("azure:missing:/x");
    c.arg("init");
    let out = c.output().unwrap();
    let err = stderr(&out);
    eprintln!("{err}");
    assert_code(&out, 1, &["init in a missing container"]);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("the container does not exist"), "{err}");
    // Nothing listening: an I/O error after the retries, not "no
    // repository".
    let out = run(
        &location,
        &[(
            "AZURE_ENDPOINT",
            &format!("http://127.0.0.1:{}/x", free_port()),
        )],
    );
    let err = stderr(&out);
    eprintln!("{err}");
    assert_code(&out, 1, &["nothing listening"]);
    assert!(err.contains("Connection refused"), "{err}");
    // A bad container name.
    let out = run("azure:No_Such:/x", &[]);
    assert_code(&out, 2, &["snapshots", "(bad name)"]);
}
