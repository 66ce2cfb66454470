//! `cairn key`: several passwords for one repository, through the binary.

#![allow(clippy::unwrap_used)]

mod common;

use common::{assert_code, stderr, Env, PASSWORD};
use serde_json::Value;

const FAST: [&str; 4] = ["--kdf-memory", "64KiB", "--kdf-iterations", "1"];

fn keys(env: &Env, password: &str) -> Vec<Value> {
    let out = env
        .cmd()
        .env("CAIRN_PASSWORD", password)
        .args(["--json", "key", "list"])
        .output()
        .unwrap();
    assert_code(&out, 0, &["key list"]);
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// Runs `snapshots` with `password`; returns the exit code.
fn opens(env: &Env, password: &str) -> i32 {
    env.cmd()
        .env("CAIRN_PASSWORD", password)
        .args(["-q", "snapshots"])
        .output()
        .unwrap()
        .status
        .code()
        .unwrap()
}

fn add_key(env: &Env, new: &str, extra: &[&str]) -> String {
    let mut args = vec!["--json", "key", "add"];
    args.extend(FAST);
    args.extend(extra);
    let out = env
        .cmd()
        .env("CAIRN_NEW_PASSWORD", new)
        .args(&args)
        .output()
        .unwrap();
    assert_code(&out, 0, &args);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["added"].as_str().unwrap().to_string()
}

#[test]
fn keys_are_added_listed_removed_and_changed() {
    let env = Env::init();
    let id = env.backup_stdin(b"data\n", &["--stdin-filename", "a.txt"]);

    let list = keys(&env, PASSWORD);
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["current"], true);
    assert_eq!(list[0]["info"]["kind"], "full");
    assert_eq!(list[0]["kdf"]["memory_kib"], 64);
    let first = list[0]["id"].as_str().unwrap().to_string();

    // A second password, recorded for another user and host.
    let second = add_key(
        &env,
        "second password",
        &["--user", "alice", "--host", "laptop"],
    );
    let list = keys(&env, PASSWORD);
    assert_eq!(list.len(), 2);
    let alice = list.iter().find(|k| k["id"] == second.as_str()).unwrap();
    assert_eq!(alice["info"]["user"], "alice");
    assert_eq!(alice["info"]["host"], "laptop");
    assert_eq!(alice["current"], false);
    // Both open the same repository and read the same data.
    assert_eq!(opens(&env, "second password"), 0);
    assert_eq!(
        keys(&env, "second password")
            .iter()
            .filter(|k| k["current"] == true)
            .count(),
        1
    );
    let out = env
        .cmd()
        .env("CAIRN_PASSWORD", "second password")
        .args(["dump", &id, "a.txt"])
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"data\n");
    // The table marks the key in use.
    let text = env.ok(&["key", "list"]);
    assert!(text.contains(&format!("*{}", &first[..8])), "{text}");
    assert!(text.contains("alice") && text.contains("2 keys"), "{text}");

    // The key in use is not removed without --force.
    let out = env.run(&["key", "remove", &first[..8]]);
    assert_code(&out, 2, &["key remove current"]);
    assert!(stderr(&out).contains("in use"), "{}", stderr(&out));
    assert_eq!(keys(&env, PASSWORD).len(), 2);
    // Another one is; its password then no longer opens anything.
    env.ok(&["key", "remove", &second[..10]]);
    assert_eq!(opens(&env, "second password"), 12);
    assert_eq!(opens(&env, PASSWORD), 0);

    // passwd: the new password works, the old one does not, one key left.
    let mut args = vec!["key", "passwd"];
    args.extend(FAST);
    let out = env
        .cmd()
        .env("CAIRN_NEW_PASSWORD", "new password")
        .args(&args)
        .output()
        .unwrap();
    assert_code(&out, 0, &["key passwd"]);
    assert_eq!(opens(&env, PASSWORD), 12);
    assert_eq!(opens(&env, "new password"), 0);
    let list = keys(&env, "new password");
    assert_eq!(list.len(), 1);
    assert_ne!(list[0]["id"].as_str().unwrap(), first);
}

#[test]
fn bad_key_requests_are_refused_clearly() {
    let env = Env::init();
    // No such key, an empty password, KDF costs out of bounds.
    assert_code(
        &env.run(&["key", "remove", "ffffffff"]),
        2,
        &["remove unknown"],
    );
    let out = env
        .cmd()
        .env("CAIRN_NEW_PASSWORD", "")
        .args(["key", "add"])
        .args(FAST)
        .output()
        .unwrap();
    assert_code(&out, 12, &["add empty password"]);
    let out = env
        .cmd()
        .env("CAIRN_NEW_PASSWORD", "x")
        .args(["key", "add", "--kdf-memory", "8GiB"])
        .output()
        .unwrap();
    assert_code(&out, 2, &["add huge kdf"]);
    assert_eq!(keys(&env, PASSWORD).len(), 1);
    // Without a new password source and no terminal: exit 12, nothing added.
    let out = env.cmd().args(["key", "add"]).args(FAST).output().unwrap();
    assert_code(&out, 12, &["add without password"]);
    assert_eq!(keys(&env, PASSWORD).len(), 1);
    // The only key can be removed only with --force, and then nothing
    // opens the repository any more.
    let id = keys(&env, PASSWORD)[0]["id"].as_str().unwrap().to_string();
    assert_code(&env.run(&["key", "remove", &id]), 2, &["remove last"]);
    env.ok(&["key", "remove", &id, "--force"]);
    let out = env.run(&["snapshots"]);
    assert_ne!(out.status.code(), Some(0));
}

/// Runs cairn with the write-only key's password and its own cache (as on
/// the database server that holds it).
fn as_writer(env: &Env, args: &[&str], stdin: Option<&[u8]>) -> std::process::Output {
    let mut c = env.cmd();
    c.env("CAIRN_PASSWORD", "writer password")
        .env("CAIRN_CACHE_DIR", env.path("writer-cache"))
        .args(args);
    match stdin {
        Some(data) => common::run_with_stdin(&mut c, data),
        None => c.output().unwrap(),
    }
}

#[test]
fn a_write_only_key_adds_backups_and_can_do_nothing_else() {
    let env = Env::init();
    let base = common::fake_dump(20_000, 1);
    let old = env.backup_stdin(&base, &["--stdin-filename", "db.sql"]);
    let writer = add_key(&env, "writer password", &["--write-only"]);
    let listed = keys(&env, PASSWORD);
    let entry = listed.iter().find(|k| k["id"] == writer.as_str()).unwrap();
    assert_eq!(entry["info"]["kind"], "write-only");
    let text = env.ok(&["key", "list"]);
    assert!(text.contains("write-only"), "{text}");

    // Backups with it work, deduplicated against what a full key stored.
    let mut nights = Vec::new();
    for n in 0..2u64 {
        let mut data = base.clone();
        data.extend_from_slice(&common::fake_dump(300, 10 + n));
        let args = ["--json", "backup", "-", "--stdin-filename", "db.sql"];
        let out = as_writer(&env, &args, Some(&data));
        assert_code(&out, 0, &["write-only backup"]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let added = v["data_added"].as_u64().unwrap();
        assert!(added < data.len() as u64 / 4, "added {added}");
        nights.push((common::snapshot_id(&out), data));
    }

    // WAL archiving (archive_command on the database server) works too; a
    // retry of the same file is fine, other contents under the same name
    // are refused, compared without opening the record.
    let segment = env.path("000000010000000000000007");
    let wal = common::pseudo_random(64 * 1024, 7);
    std::fs::write(&segment, &wal).unwrap();
    let seg = segment.to_str().unwrap();
    for round in 0..2 {
        let out = as_writer(&env, &["--json", "wal-push", seg], None);
        assert_code(&out, 0, &["write-only wal-push"]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["already_archived"], round == 1, "{v}");
    }
    std::fs::write(&segment, common::pseudo_random(64 * 1024, 8)).unwrap();
    assert_code(
        &as_writer(&env, &["wal-push", seg], None),
        28,
        &["wal-push of other contents"],
    );
    let fetched = env.path("fetched");
    env.ok(&[
        "wal-fetch",
        "000000010000000000000007",
        fetched.to_str().unwrap(),
    ]);
    assert!(std::fs::read(&fetched).unwrap() == wal);
    let elsewhere = env.path("fetched-by-writer");
    let out = as_writer(
        &env,
        &[
            "wal-fetch",
            "000000010000000000000007",
            elsewhere.to_str().unwrap(),
        ],
        None,
    );
    assert_code(&out, 13, &["write-only wal-fetch"]);

    // Every other command: exit 13, one line that says why.
    let target = env.path("restored");
    let target = target.to_str().unwrap();
    let copy_to = env.path("elsewhere");
    let refused: [&[&str]; 12] = [
        &["snapshots"],
        &["restore", &old, "--target", target],
        &["dump", "latest", "db.sql"],
        &["forget", "--keep-last", "1"],
        &["prune"],
        &["check"],
        &["ls", &old],
        &["stats"],
        &["key", "list"],
        &["key", "add"],
        &["drill", &old],
        &["copy", "--to", copy_to.to_str().unwrap()],
    ];
    for args in refused {
        let out = as_writer(&env, args, None);
        assert_code(&out, 13, args);
        let err = stderr(&out);
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains("write-only key"), "{args:?}: {err}");
    }
    assert!(!std::path::Path::new(target).exists());

    // The full key sees, restores and checks everything.
    assert_eq!(env.snapshots().len(), 3);
    for (id, data) in &nights {
        assert!(&env.dump(id, "db.sql") == data, "dump of {id}");
        let s = env
            .snapshots()
            .into_iter()
            .find(|s| s["id"] == id.as_str())
            .unwrap();
        assert_eq!(s["parent"], Value::Null);
    }
    env.ok(&["check", "--read-data"]);
    // Removing the write-only key: the full key is still the last full key.
    env.ok(&["key", "remove", &writer[..8]]);
    assert_code(
        &as_writer(&env, &["backup", "-"], Some(b"x")),
        12,
        &["removed writer"],
    );
}

/// A write-only key cannot make deltas: `key add --write-only` says so in
/// a repository with them (the default), and not in one without.
#[test]
fn adding_a_write_only_key_to_a_delta_repository_suggests_no_delta() {
    for (init, warned) in [(&[][..], true), (&["--no-delta"][..], false)] {
        let env = Env::init_with(init);
        let mut args = vec!["key", "add", "--write-only"];
        args.extend(FAST);
        let out = env
            .cmd()
            .env("CAIRN_NEW_PASSWORD", "writer password")
            .args(&args)
            .output()
            .unwrap();
        assert_code(&out, 0, &args);
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains("added write-only key"), "{text}");
        assert_eq!(text.contains("init --no-delta"), warned, "{init:?}: {text}");
    }
}

/// Issue 20 (the archive path's speed): `key add --generate-password FILE`
/// writes 32 random bytes as hex to a new 0600 file and wraps the key with
/// the lightest Argon2 cost; the key works from that file; an existing file
/// is never overwritten (exit 2, no key added).
#[test]
fn a_generated_password_makes_a_light_key_in_a_private_file() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::init();
    let file = env.path("wal-password");
    let args = [
        "--json",
        "key",
        "add",
        "--write-only",
        "--generate-password",
        file.to_str().unwrap(),
    ];
    let out = env.cmd().args(args).output().unwrap();
    assert_code(&out, 0, &args);
    let text = std::fs::read_to_string(&file).unwrap();
    let password = text.strip_suffix('\n').unwrap();
    assert_eq!(password.len(), 64);
    assert!(password.chars().all(|c| c.is_ascii_hexdigit()), "{text}");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    let list = keys(&env, PASSWORD);
    let new = list
        .iter()
        .find(|k| k["info"]["kind"] == "write-only")
        .unwrap();
    assert_eq!(new["kdf"]["memory_kib"], 64, "{new}");
    assert_eq!(new["kdf"]["iterations"], 1, "{new}");

    // The file opens the key: a backup as the writer.
    let out = env
        .cmd()
        .env_remove("CAIRN_PASSWORD")
        .env("CAIRN_PASSWORD_FILE", &file)
        .args(["backup", "-", "--stdin-filename", "w.sql"])
        .stdin(std::process::Stdio::null())
        .args(["--allow-empty"])
        .output()
        .unwrap();
    assert_code(&out, 0, &["backup with the generated password"]);

    // Never over an existing file.
    let before = std::fs::read(&file).unwrap();
    let out = env.cmd().args(args).output().unwrap();
    assert_code(&out, 2, &["key add over an existing password file"]);
    assert!(stderr(&out).contains("exists"), "{}", stderr(&out));
    assert_eq!(std::fs::read(&file).unwrap(), before);
    assert_eq!(keys(&env, PASSWORD).len(), list.len());
}
