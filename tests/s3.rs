//! The real binary against a real S3 server (s3s-fs on 127.0.0.1): nightly
//! backups, restore, forget + prune, check --read-data, and an outage in
//! the middle of a backup.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::garage::Garage;
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
    nightly_round(&env, &|| server.log());
}

/// The same on Garage, which is S3 but not quite (it ignores
/// `If-None-Match`, lists in its own way).
#[test]
fn nightly_backups_restore_prune_and_check_on_garage() {
    let Some(server) = Garage::start() else {
        return;
    };
    let env = Env::init_at(
        &server.location("nightly"),
        &server.env(),
        &["--pack-size", "1MiB"],
    );
    nightly_round(&env, &|| server.log());
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
    let (child, writer) = long_backup(&env);
    std::thread::sleep(Duration::from_millis(300));
    server.kill();
    fails_cleanly(child, writer);

    // Back up: nothing referenced is lost, the old snapshot restores,
    // check finds no damage, and the backup works again.
    server.restart();
    nothing_lost_after_an_outage(&env, &old_id, &old);
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
    assert_code(&out, 13, &["wrong secret"]);
    assert_eq!(
        stderr(&out).trim_end().lines().count(),
        1,
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("access denied"), "{}", stderr(&out));
    // Nothing listening: an I/O error after the retries, not "no
    // repository" (which would send the admin looking for a lost bucket).
    let out = cairn()
        .args(["-r", "s3:http://127.0.0.1:9/bucket/x", "snapshots"])
        .envs(server.env())
        .output()
        .unwrap();
    assert_code(&out, 1, &["nothing listening"]);
    assert!(
        stderr(&out).contains("Connection refused"),
        "{}",
        stderr(&out)
    );
    // A bucket that does not exist: init says so.
    let out = cairn()
        .args([
            "-r",
            &server.location("x").replace("/cairn/", "/no-such-bucket/"),
            "init",
        ])
        .envs(server.env())
        .output()
        .unwrap();
    assert_code(&out, 1, &["init in a missing bucket"]);
    assert!(
        stderr(&out).contains("the bucket does not exist"),
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

/// `cairn -r SRC copy --to DST` with the target's own password.
fn copy_cmd(src: &Env, to: &str, vars: &[(&str, &str)]) -> std::process::Command {
    let mut c = src.cmd();
    c.args(["copy", "--to", to])
        .env("CAIRN_PASSWORD2", "another password")
        .envs(vars.iter().copied());
    c
}

#[test]
fn copy_local_to_s3_and_back_is_identical_and_idempotent() {
    let Some(server) = S3Server::start() else {
        return;
    };
    let local = Env::init_with(&["--pack-size", "1MiB"]);
    let mut nights = Vec::new();
    for n in 0..3u64 {
        let mut dump = fake_dump(20_000, 300 * (n + 1));
        dump.extend(pseudo_random(200_000, 900 * (n + 1)));
        nights.push((
            local.backup_stdin(&dump, &["--stdin-filename", "shop.sql"]),
            dump,
        ));
    }
    // The target has its own password and keys.
    let mut s3 = Env::empty();
    s3.location = Some(server.location("offsite"));
    s3.vars = server
        .env()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let out = s3
        .cmd()
        .args(["init", "--kdf-memory", "64KiB", "--kdf-iterations", "1"])
        .env("CAIRN_PASSWORD", "another password")
        .output()
        .unwrap();
    assert_code(&out, 0, &["init s3"]);
    let to = server.location("offsite");
    let out = copy_cmd(&local, &to, &server.env()).output().unwrap();
    assert_code(&out, 0, &["copy"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("3 snapshots copied"));
    // Twice: nothing new.
    let out = copy_cmd(&local, &to, &server.env())
        .arg("--json")
        .output()
        .unwrap();
    assert_code(&out, 0, &["copy again"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["chunks_read"], 0);
    assert!(v["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["skipped"] == true));

    let on_s3 = |args: &[&str]| {
        let out = s3
            .cmd()
            .args(args)
            .env("CAIRN_PASSWORD", "another password")
            .output()
            .unwrap();
        assert_code(&out, 0, args);
        out.stdout
    };
    let snaps: Vec<serde_json::Value> =
        serde_json::from_slice(&on_s3(&["--json", "snapshots"])).unwrap();
    assert_eq!(snaps.len(), 3);
    for (id, dump) in &nights {
        let copy = snaps.iter().find(|s| s["original"] == id.as_str()).unwrap();
        assert_eq!(
            &on_s3(&["dump", copy["id"].as_str().unwrap(), "shop.sql"]),
            dump
        );
    }
    on_s3(&["check", "--read-data"]);

    // And back, from S3 into a third repository.
    let back = Env::init();
    let out = s3
        .cmd()
        .args(["copy", "--to", back.repo.to_str().unwrap()])
        .env("CAIRN_PASSWORD", "another password")
        .env("CAIRN_PASSWORD2", PASSWORD)
        .output()
        .unwrap();
    assert_code(&out, 0, &["copy back"]);
    let snaps = back.snapshots();
    assert_eq!(snaps.len(), 3);
    for (id, dump) in &nights {
        // A copy of a copy names the first original.
        let copy = snaps.iter().find(|s| s["original"] == id.as_str()).unwrap();
        assert_eq!(&back.dump(copy["id"].as_str().unwrap(), "shop.sql"), dump);
    }
    back.ok(&["check", "--read-data"]);

    // Copying back to where they came from copies nothing.
    let out = s3
        .cmd()
        .args(["--json", "copy", "--to", local.repo.to_str().unwrap()])
        .env("CAIRN_PASSWORD", "another password")
        .env("CAIRN_PASSWORD2", PASSWORD)
        .output()
        .unwrap();
    assert_code(&out, 0, &["copy home"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["chunks_read"], 0, "{v}");
    assert_eq!(local.snapshots().len(), 3);
}

#[test]
fn an_interrupted_copy_resumes() {
    let src = Env::init_with(&["--pack-size", "1MiB"]);
    let data = pseudo_random(6 << 20, 4242);
    let id = src.backup_stdin(&data, &["--stdin-filename", "big.bin"]);
    let dst = Env::init();
    let to = dst.repo.to_str().unwrap().to_string();
    // Kill copies at growing delays until one finishes on its own; the
    // target stays whole whatever was interrupted.
    let kills = kill_until_done(
        || {
            let mut c = copy_cmd(&src, &to, &[]);
            c.env("CAIRN_PASSWORD2", PASSWORD);
            c
        },
        Duration::from_millis(20),
        Duration::from_millis(20),
        || assert_code(&dst.run(&["check"]), 0, &["check target"]),
    );
    let snaps = dst.snapshots();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["original"], id.as_str());
    assert_eq!(dst.dump(snaps[0]["id"].as_str().unwrap(), "big.bin"), data);
    eprintln!("copy killed {kills} times before it finished");
}

/// `data_added` of a `backup --json` of `data` as `shop.sql`.
fn data_added(env: &Env, data: &[u8]) -> u64 {
    let out = env.run_stdin(
        &["--json", "backup", "-", "--stdin-filename", "shop.sql"],
        data,
    );
    assert_code(&out, 0, &["backup"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["data_added"].as_u64().unwrap()
}

#[test]
fn a_target_with_the_sources_chunker_params_dedups_copies_against_its_own_backups() {
    let src = Env::init_with(&["--chunk-size", "4KiB"]);
    let night1 = fake_dump(40_000, 11);
    let mut night2 = night1.clone();
    night2.splice(
        1000..1000,
        b"a row inserted near the start\n".iter().copied(),
    );
    src.backup_stdin(&night1, &["--stdin-filename", "shop.sql"]);
    let holder = tempfile::tempdir().unwrap();
    let from = src.repo.to_str().unwrap();
    let second = [("CAIRN_PASSWORD2", PASSWORD)];

    // The twin cuts like the source; a repository made without the option
    // (same chunk size, its own seed) does not.
    let twin_dir = holder.path().join("twin");
    let twin = Env::init_at(
        twin_dir.to_str().unwrap(),
        &second,
        &["--copy-chunker-params", "--from", from],
    );
    let other_dir = holder.path().join("other");
    let other = Env::init_at(other_dir.to_str().unwrap(), &[], &["--chunk-size", "4KiB"]);
    for dst in [&twin, &other] {
        let mut c = copy_cmd(&src, dst.location.as_deref().unwrap(), &[]);
        c.env("CAIRN_PASSWORD2", PASSWORD);
        assert_code(&c.output().unwrap(), 0, &["copy"]);
    }
    // The next night, backed up directly into each target: the twin
    // stores only the chunks around the insert.
    let twin_added = data_added(&twin, &night2);
    let other_added = data_added(&other, &night2);
    assert!(
        twin_added < 64 * 1024,
        "twin stored {twin_added} bytes of a {} byte dump",
        night2.len()
    );
    assert!(
        other_added > night2.len() as u64 / 2,
        "a repository with its own seed stored only {other_added} bytes"
    );
    assert_eq!(twin.dump("latest", "shop.sql"), night2);
    twin.ok(&["check", "--read-data"]);

    // The options go together, and a wrong source password changes nothing.
    let lone = Env::empty();
    let out = lone.run(&["init", "--copy-chunker-params"]);
    assert_code(&out, 2, &["--copy-chunker-params without --from"]);
    let out = lone
        .cmd()
        .args(["init", "--copy-chunker-params", "--from", from])
        .env("CAIRN_PASSWORD2", "not it")
        .output()
        .unwrap();
    assert_code(&out, 12, &["wrong source password"]);
    assert!(
        stderr(&out).contains("source repository"),
        "{}",
        stderr(&out)
    );
    assert!(!lone.repo.exists());
}

#[test]
fn a_nightly_copy_reads_only_what_changed() {
    let src = Env::init();
    // About 130 chunks of the default 32 KiB.
    let night1 = fake_dump(100_000, 5);
    let mut night2 = night1.clone();
    night2.splice(500_000..500_000, b"one new row\n".iter().copied());
    night2.extend(fake_dump(500, 6));
    let first = src.backup_stdin(&night1, &["--stdin-filename", "shop.sql"]);
    src.backup_stdin(&night2, &["--stdin-filename", "shop.sql"]);
    let dst = Env::init();
    let to = dst.repo.to_str().unwrap().to_string();
    let copy = |ids: &[&str]| {
        let mut c = copy_cmd(&src, &to, &[("CAIRN_PASSWORD2", PASSWORD)]);
        c.arg("--json").args(ids);
        let out = c.output().unwrap();
        assert_code(&out, 0, &["copy"]);
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let v = copy(&[&first]);
    let all = v["chunks_read"].as_u64().unwrap();
    assert!(all > 100, "{v}");
    // The second night: only the chunks around the insert and the tail.
    let v = copy(&[]);
    let read = v["chunks_read"].as_u64().unwrap();
    let known = v["chunks_known"].as_u64().unwrap();
    assert!(read * 10 < all, "read {read} of about {all} chunks: {v}");
    assert!(known + read >= all, "{v}");
    let snaps = dst.snapshots();
    assert_eq!(snaps.len(), 2);
    for s in &snaps {
        let want = if s["original"] == first.as_str() {
            &night1
        } else {
            &night2
        };
        assert_eq!(&dst.dump(s["id"].as_str().unwrap(), "shop.sql"), want);
    }
    dst.ok(&["check", "--read-data"]);
}

#[test]
fn write_only_backups_on_s3_restore_with_a_full_key() {
    let Some(server) = S3Server::start() else {
        return;
    };
    let env = s3_env(&server, "write-only", &["--pack-size", "1MiB"]);
    let out = env
        .cmd()
        .env("CAIRN_NEW_PASSWORD", "server")
        .args(["key", "add", "--write-only"])
        .args(FAST_KDF)
        .output()
        .unwrap();
    assert_code(&out, 0, &["key add --write-only"]);
    let mut nights = Vec::new();
    for n in 0..3u64 {
        let mut dump = fake_dump(25_000, 7);
        dump.extend(pseudo_random(200_000, 40 + n));
        let mut c = env.cmd();
        c.env("CAIRN_PASSWORD", "server")
            .env("CAIRN_CACHE_DIR", env.path("server-cache"))
            .args(["--json", "backup", "-", "--stdin-filename", "shop.sql"]);
        let out = run_with_stdin(&mut c, &dump);
        assert_code(&out, 0, &["write-only backup on S3"]);
        nights.push((snapshot_id(&out), dump));
    }
    // The full key reads the key blocks with range reads, prunes (sealing
    // the server's blobs again) and checks.
    for (id, dump) in &nights {
        assert_eq!(&env.dump(id, "shop.sql"), dump, "{}", server.log());
    }
    env.ok(&["forget", &nights[0].0]);
    env.ok(&["prune", "--grace", "0", "--max-unused", "0"]);
    env.ok(&["check", "--read-data"]);
    for (id, dump) in &nights[1..] {
        assert_eq!(&env.dump(id, "shop.sql"), dump);
    }
}

/// The two S3 servers the tests run against: a location maker, the
/// credentials, and whether the server honours `If-None-Match: *`.
struct Server {
    location: Box<dyn Fn(&str) -> String>,
    vars: Vec<(&'static str, &'static str)>,
    create_only_probe: bool,
    _keep: Box<dyn std::any::Any>,
}

fn servers() -> Vec<(&'static str, Server)> {
    let mut out = Vec::new();
    if let Some(s) = S3Server::start() {
        let loc = s.location("");
        out.push((
            "s3s-fs",
            Server {
                location: Box::new(move |p| format!("{loc}{p}")),
                vars: s.env().to_vec(),
                create_only_probe: true,
                _keep: Box::new(s),
            },
        ));
    }
    if let Some(g) = Garage::start() {
        let loc = g.location("");
        out.push((
            "garage",
            Server {
                location: Box::new(move |p| format!("{loc}{p}")),
                vars: g.env().to_vec(),
                create_only_probe: false,
                _keep: Box::new(g),
            },
        ));
    }
    out
}

/// Runs `commands` at once; their outputs, in order.
fn all_at_once(commands: Vec<std::process::Command>) -> Vec<std::process::Output> {
    let children: Vec<_> = commands
        .into_iter()
        .map(|mut c| {
            c.stdout(Stdio::piped()).stderr(Stdio::piped());
            c.spawn().unwrap()
        })
        .collect();
    children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect()
}

/// Which of the racing runs `outs` succeeded; each other one must have
/// lost with `lost` (its exit code), nothing else.
fn winners(outs: &[std::process::Output], lost: i32, what: &str) -> Vec<usize> {
    let mut won = Vec::new();
    for (i, out) in outs.iter().enumerate() {
        match out.status.code() {
            Some(0) => won.push(i),
            Some(code) if code == lost => {}
            _ => panic!("{what} {i}: {}", stderr(out)),
        }
    }
    won
}

/// A scratch environment for `location` on `server`, without `init`.
fn env_at(server: &Server, location: &str) -> Env {
    let mut env = Env::empty();
    env.location = Some(location.to_string());
    env.vars = server
        .vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    env
}

/// Issue 19: Garage ignores create-only, so two `wal-push` of different
/// files under one name both exited 0 and one was lost. Through claims,
/// at most one is told it archived the file, and it is the one whose
/// bytes come back; on either server.
#[test]
fn concurrent_wal_pushes_of_different_files_under_one_name_never_both_succeed() {
    for (server_name, server) in servers() {
        let location = (server.location)("walrace");
        let env = Env::init_at(&location, &server.vars, &[]);
        // init tells which kind of server this is.
        let out = env_at(&server, &(server.location)("probe"))
            .cmd()
            .args(["--json", "init"])
            .args(FAST_KDF)
            .output()
            .unwrap();
        assert_code(&out, 0, &[server_name, "init"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            v["create_only"], server.create_only_probe,
            "{server_name}: {v}"
        );

        let mut one_winner = 0;
        for round in 0..4u64 {
            let name = format!("0000000100000000000000{:02X}", 0x10 + round);
            let files: Vec<_> = (0..3u64)
                .map(|w| {
                    let dir = env.path(&format!("r{round}w{w}"));
                    std::fs::create_dir_all(&dir).unwrap();
                    let path = dir.join(&name);
                    // Odd seeds: pseudo_random(n, 2k) equals pseudo_random(n, 2k+1).
                    let seed = 2 * (round * 10 + w) + 1;
                    std::fs::write(&path, pseudo_random(200_000, seed)).unwrap();
                    path
                })
                .collect();
            let outs = all_at_once(
                files
                    .iter()
                    .map(|p| {
                        let mut c = env.cmd();
                        c.args(["--json", "wal-push"]).arg(p);
                        c
                    })
                    .collect(),
            );
            let won = winners(&outs, 28, &format!("{server_name} round {round} wal-push"));
            assert!(
                won.len() <= 1,
                "{server_name} round {round}: writers {won:?} were all told they archived {name}: {:?}",
                outs.iter()
                    .map(|o| (String::from_utf8_lossy(&o.stdout).to_string(), stderr(o)))
                    .collect::<Vec<_>>()
            );
            let dest = env.path("fetched");
            let out = env.run(&["wal-fetch", &name, dest.to_str().unwrap()]);
            match won[..] {
                [w] => {
                    one_winner += 1;
                    assert_code(&out, 0, &[server_name, "wal-fetch"]);
                    assert!(
                        std::fs::read(&dest).unwrap() == std::fs::read(&files[w]).unwrap(),
                        "{server_name} round {round}: the archive holds other bytes than writer {w}'s"
                    );
                }
                _ => {
                    // All refused: nothing archived, and a lone retry works.
                    assert_code(&out, 20, &[server_name, "wal-fetch after a tie"]);
                    env.ok(&["wal-push", files[0].to_str().unwrap()]);
                }
            }
        }
        eprintln!("{server_name}: {one_winner} of 4 rounds had one winner, the rest none");
        env.ok(&["check", "--read-data"]);
    }
}

/// Issue 19: two concurrent `init` on Garage both "succeeded". Now at most
/// one does, its password opens the repository, and the others exit 26.
#[test]
fn of_concurrent_inits_on_one_location_at_most_one_succeeds() {
    for (server_name, server) in servers() {
        for round in 0..3 {
            let location = (server.location)(&format!("initrace{round}"));
            let env = env_at(&server, &location);
            let outs = all_at_once(
                (0..3)
                    .map(|i| {
                        let mut c = env.cmd();
                        c.arg("init")
                            .args(FAST_KDF)
                            .env("CAIRN_PASSWORD", format!("password {i}"));
                        c
                    })
                    .collect(),
            );
            let won = winners(&outs, 26, &format!("{server_name} round {round} init"));
            assert!(
                won.len() <= 1,
                "{server_name} round {round}: inits {won:?} all succeeded"
            );
            let password = match won[..] {
                [i] => format!("password {i}"),
                _ => {
                    let mut init = vec!["init"];
                    init.extend(FAST_KDF);
                    env.ok(&init);
                    PASSWORD.to_string()
                }
            };
            let out = env
                .cmd()
                .arg("snapshots")
                .env("CAIRN_PASSWORD", &password)
                .output()
                .unwrap();
            assert_code(&out, 0, &[server_name, "the winner opens it"]);
            // A loser's password does not (its key file was taken back).
            for i in (0..3).filter(|i| won != [*i]) {
                let out = env
                    .cmd()
                    .arg("snapshots")
                    .env("CAIRN_PASSWORD", format!("password {i}"))
                    .output()
                    .unwrap();
                assert_code(&out, 12, &[server_name, "a loser's password"]);
            }
        }
    }
}
