//! A committed repository of format version 1 (`tests/fixtures/repo-v1/`),
//! made once by the code of its day, must stay readable by every later
//! version of cairn: listed, restored byte for byte, checked, extended by a
//! new backup and a prune, and its damaged copies reported as damage.
//! restic keeps `internal/repository/testdata/test-repo.tar.gz` for the
//! same reason.
//!
//! `repo.tar.gz` holds the repository; `manifest.json` what a reader must
//! find in it (snapshot IDs, and each file's size, mode and BLAKE3 hash
//! computed from the input, not by cairn). Never regenerate them for a
//! format version that has been released: a new format version gets a new
//! fixture beside this one. They were made with
//! `cargo test --test fixture -- --ignored make_fixture`.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::{json, Value};

const FIXTURE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/repo-v1");
/// The write-only key's password.
const WRITER_PASSWORD: &str = "a writer that cannot read";
const HISTORY: &str = "00000002.history";

/// A scratch directory holding a fresh copy of the fixture repository.
fn fixture() -> (Env, Value) {
    let env = Env::empty();
    let status = Command::new("tar")
        .arg("-xzf")
        .arg(Path::new(FIXTURE_DIR).join("repo.tar.gz"))
        .arg("-C")
        .arg(env.dir.path())
        .status()
        .unwrap();
    assert!(status.success(), "tar -xzf repo.tar.gz");
    assert!(env.repo.join("config").is_file());
    let manifest = std::fs::read(Path::new(FIXTURE_DIR).join("manifest.json")).unwrap();
    (env, serde_json::from_slice(&manifest).unwrap())
}

fn hash(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// Every entry under `root`: relative path → kind, mode, size, hash or
/// link target, as the manifest records them.
fn describe_tree(root: &Path) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let mode = m.permissions().mode() & 0o7777;
            let v = if m.file_type().is_symlink() {
                let target = std::fs::read_link(&p).unwrap();
                json!({"kind": "symlink", "target": target.to_string_lossy()})
            } else if m.is_dir() {
                todo.push(p.clone());
                json!({"kind": "dir", "mode": mode})
            } else {
                let bytes = std::fs::read(&p).unwrap();
                json!({"kind": "file", "mode": mode, "size": bytes.len(), "blake3": hash(&bytes)})
            };
            out.insert(rel, v);
        }
    }
    out
}

fn snapshot_ids(env: &Env) -> Vec<String> {
    let mut ids: Vec<String> = env
        .snapshots()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

fn manifest_ids(manifest: &Value) -> Vec<String> {
    let mut ids: Vec<String> = manifest["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

/// Each snapshot restores to exactly what the manifest recorded: a
/// stream through `dump`, a tree through `restore`.
fn assert_restores_as_recorded(env: &Env, manifest: &Value) {
    for s in manifest["snapshots"].as_array().unwrap() {
        let id = s["id"].as_str().unwrap();
        if let Some(name) = s["stdin_filename"].as_str() {
            let bytes = env.dump(id, name);
            assert_eq!(
                bytes.len() as u64,
                s["size"].as_u64().unwrap(),
                "{id} {name}"
            );
            assert_eq!(hash(&bytes), s["blake3"].as_str().unwrap(), "{id} {name}");
        } else {
            let target = env.path(&format!("restore-{id}"));
            env.ok(&["restore", id, "--target", target.to_str().unwrap()]);
            let root = target.join(s["root"].as_str().unwrap());
            let want: BTreeMap<String, Value> = serde_json::from_value(s["tree"].clone()).unwrap();
            assert_eq!(describe_tree(&root), want, "snapshot {id}");
        }
    }
}

#[test]
fn version_1_fixture_lists_the_recorded_snapshots() {
    let (env, manifest) = fixture();
    assert_eq!(snapshot_ids(&env), manifest_ids(&manifest));
    let listed = env.snapshots();
    for want in manifest["snapshots"].as_array().unwrap() {
        let got = listed
            .iter()
            .find(|s| s["id"] == want["id"])
            .unwrap_or_else(|| panic!("{} is not listed", want["id"]));
        for field in ["time", "hostname", "paths", "tags"] {
            assert_eq!(got[field], want[field], "{field} of {}", want["id"]);
        }
    }
    // The write-only key's snapshot is there, and its key cannot read.
    let keys = env.ok(&["--json", "key", "list"]);
    let keys: Value = serde_json::from_str(&keys).unwrap();
    assert_eq!(keys.as_array().unwrap().len(), 2, "{keys}");
    let out = env
        .cmd()
        .env("CAIRN_PASSWORD", WRITER_PASSWORD)
        .arg("snapshots")
        .output()
        .unwrap();
    assert_code(&out, 13, &["snapshots with the write-only key"]);
    let out = env
        .cmd()
        .env("CAIRN_PASSWORD", "not the password")
        .arg("snapshots")
        .output()
        .unwrap();
    assert_code(&out, 12, &["snapshots with a wrong password"]);
}

#[test]
fn version_1_fixture_restores_byte_for_byte_and_checks_clean() {
    let (env, manifest) = fixture();
    assert_restores_as_recorded(&env, &manifest);
    let out = env.run(&["check", "--read-data"]);
    assert_code(&out, 0, &["check --read-data"]);
    let wal = env.path("fetched");
    env.ok(&["wal-fetch", HISTORY, wal.to_str().unwrap()]);
    let bytes = std::fs::read(&wal).unwrap();
    assert_eq!(hash(&bytes), manifest["wal"][HISTORY].as_str().unwrap());
}

#[test]
fn version_1_fixture_takes_new_backups_forget_and_prune() {
    let (env, manifest) = fixture();
    // Tonight's dump, deduplicated against the stored nights.
    let night = fake_dump(20_000, 4);
    let id = env.backup_stdin(
        &night,
        &[
            "--stdin-filename",
            "shop.sql",
            "--host",
            "db1",
            "--tag",
            "nightly",
        ],
    );
    let out = env.run(&[
        "forget",
        "--host",
        "db1",
        "--tag",
        "nightly",
        "--keep-last",
        "1",
    ]);
    assert_code(&out, 0, &["forget"]);
    let out = env.run(&["prune", "--grace", "0", "--max-unused", "0"]);
    assert_code(&out, 0, &["prune --grace 0"]);
    let out = env.run(&["check", "--read-data"]);
    assert_code(&out, 0, &["check --read-data after prune"]);
    assert_eq!(env.dump(&id, "shop.sql"), night);
    // What forget kept of the fixture still restores as recorded.
    let kept = snapshot_ids(&env);
    let mut rest = manifest.clone();
    rest["snapshots"]
        .as_array_mut()
        .unwrap()
        .retain(|s| kept.contains(&s["id"].as_str().unwrap().to_string()));
    assert!(rest["snapshots"].as_array().unwrap().len() >= 3, "{kept:?}");
    assert_restores_as_recorded(&env, &rest);
}

/// The objects under `dir` of the repository, largest first.
fn objects(env: &Env, dir: &str) -> Vec<PathBuf> {
    let mut found: Vec<(u64, PathBuf)> = env
        .repo_listing()
        .into_iter()
        .filter(|(p, _)| p.strip_prefix(&env.repo).unwrap().starts_with(dir))
        .map(|(p, n)| (n, p))
        .collect();
    found.sort_by(|a, b| b.cmp(a));
    found.into_iter().map(|(_, p)| p).collect()
}

fn name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn damaged_copies_of_the_version_1_fixture_are_reported() {
    // Each pack in turn with a byte flipped, then deleted: check (with
    // --read-data for the flip) names the pack and exits 22, or, for a
    // pack a prune marked obsolete, says nothing is wrong, and then every
    // snapshot must still restore as recorded.
    let (env, _) = fixture();
    let packs = objects(&env, "data");
    assert!(packs.len() > 5, "{packs:?}");
    let mut reported = 0;
    for (i, pack) in packs.iter().enumerate() {
        let rel = pack.strip_prefix(&env.repo).unwrap().to_path_buf();
        for damage in ["flip", "delete"] {
            let (env, manifest) = fixture();
            let pack = env.repo.join(&rel);
            let args: &[&str] = if damage == "flip" {
                let mut bytes = std::fs::read(&pack).unwrap();
                let at = bytes.len() / 2;
                bytes[at] ^= 0x40;
                std::fs::write(&pack, &bytes).unwrap();
                &["--no-cache", "check", "--read-data"]
            } else {
                std::fs::remove_file(&pack).unwrap();
                &["--no-cache", "check"]
            };
            let out = env.run(args);
            let what = format!("{damage} pack {i} {}", name(&pack));
            match out.status.code() {
                Some(22) => {
                    assert!(
                        stderr(&out).contains(&name(&pack)),
                        "{what}: {}",
                        stderr(&out)
                    );
                    reported += 1;
                }
                Some(0) => assert_restores_as_recorded(&env, &manifest),
                _ => assert_code(&out, 22, &[&what]),
            }
        }
    }
    // One pack is obsolete: the first night's, which the fixture's prune
    // (default grace) marked; every damage to another is reported.
    assert_eq!(reported, 2 * (packs.len() - 1), "damages reported");

    // An index object cut in half: reported, and `repair index` brings
    // the repository back to a clean check and full restores.
    let (env, manifest) = fixture();
    let index = objects(&env, "index")[0].clone();
    let len = std::fs::metadata(&index).unwrap().len();
    std::fs::File::options()
        .write(true)
        .open(&index)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let out = env.run(&["--no-cache", "check"]);
    assert_code(&out, 22, &["check, an index object truncated"]);
    assert!(
        (stdout(&out) + &stderr(&out)).contains(&name(&index)),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    env.ok(&["repair", "index"]);
    let out = env.run(&["--no-cache", "check", "--read-data"]);
    assert_code(&out, 0, &["check --read-data after repair index"]);
    assert_restores_as_recorded(&env, &manifest);

    // A snapshot object with a flipped byte: that snapshot is damaged,
    // the others still restore.
    let (env, _) = fixture();
    let snap = objects(&env, "snapshots")[0].clone();
    let mut bytes = std::fs::read(&snap).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&snap, &bytes).unwrap();
    let out = env.run(&["check"]);
    assert_code(&out, 22, &["check, a snapshot object damaged"]);
    assert!(
        (stdout(&out) + &stderr(&out)).contains(&name(&snap)[..8]),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
}

/// A night's dump for the fixture: compressible (the fixture is committed)
/// and with a few rows changed in every chunk from one night to the next,
/// so the nights after the first are stored as deltas.
fn night_dump(night: u64, rows: u64) -> Vec<u8> {
    let mut s = String::from("COPY public.orders (id, customer, status) FROM stdin;\n");
    for i in 0..rows {
        let status = if (i * 7 + night).is_multiple_of(97) {
            "returned"
        } else {
            "shipped"
        };
        s.push_str(&format!("{i}\tcustomer-{}\t{status}\n", i % 500));
    }
    s.push_str("\\.\n");
    s.into_bytes()
}

/// Makes `tests/fixtures/repo-v1/` (see the module comment: never again
/// for version 1).
#[test]
#[ignore]
fn make_fixture() {
    let env = Env::init_with(&["--chunk-size", "8KiB"]);
    let mut snapshots = Vec::new();
    let stream = |env: &Env, data: &[u8], name: &str, extra: &[&str]| {
        let mut args = vec!["--stdin-filename", name];
        args.extend(extra);
        let id = env.backup_stdin(data, &args);
        json!({"id": id, "stdin_filename": name, "size": data.len(), "blake3": hash(data)})
    };
    // Three nights of one dump (the first is forgotten below): deltas,
    // deduplicated chunks, and chunk lists (more than 64 chunks).
    for (night, day) in [(1, "01"), (2, "02"), (3, "03")] {
        let time = format!("2026-11-{day}T02:00:00Z");
        let s = stream(
            &env,
            &night_dump(night, 30_000),
            "shop.sql",
            &["--host", "db1", "--tag", "nightly", "--time", &time],
        );
        if night > 1 {
            snapshots.push(s);
        }
    }
    // A dump taken through --command.
    let out = env.run(&[
        "--json",
        "backup",
        "--command",
        "printf 'CREATE TABLE t (x int);\\n'",
        "--stdin-filename",
        "app.sql",
        "--host",
        "app1",
        "--time",
        "2026-11-03T03:00:00Z",
    ]);
    assert_code(&out, 0, &["backup --command"]);
    let data = b"CREATE TABLE t (x int);\n";
    snapshots.push(json!({"id": snapshot_id(&out), "stdin_filename": "app.sql",
        "size": data.len(), "blake3": hash(data)}));

    // A file tree: directories, modes, an empty file, a run of zeros, a
    // symlink, random bytes.
    // At a fixed path, so that the manifest reads the same on any machine.
    let tree = Path::new("/tmp/cairn-fixture-v1/etc").to_path_buf();
    let _ = std::fs::remove_dir_all(tree.parent().unwrap());
    std::fs::create_dir_all(tree.join("app/conf.d")).unwrap();
    std::fs::write(tree.join("app/app.conf"), b"listen = 127.0.0.1\n").unwrap();
    std::fs::write(tree.join("app/conf.d/empty"), b"").unwrap();
    std::fs::write(tree.join("app/zeros"), vec![0u8; 100_000]).unwrap();
    std::fs::write(tree.join("blob"), pseudo_random(20_000, 7)).unwrap();
    std::fs::write(tree.join("run.sh"), b"#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(tree.join("run.sh"), std::fs::Permissions::from_mode(0o750)).unwrap();
    std::fs::set_permissions(
        tree.join("app/conf.d"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    std::os::unix::fs::symlink("app/app.conf", tree.join("current.conf")).unwrap();
    let out = env.run(&[
        "--json",
        "backup",
        tree.to_str().unwrap(),
        "--host",
        "web1",
        "--tag",
        "etc",
        "--time",
        "2026-11-03T04:00:00Z",
    ]);
    assert_code(&out, 0, &["backup of a tree"]);
    let id = snapshot_id(&out);
    let restored = env.path("check-restore");
    env.ok(&["restore", &id, "--target", restored.to_str().unwrap()]);
    // Where restore puts the tree: the snapshot's path under the target.
    let root = tree
        .strip_prefix("/")
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert_eq!(describe_tree(&restored.join(&root)), describe_tree(&tree));
    snapshots.push(json!({"id": id, "root": root, "tree": describe_tree(&tree)}));

    // A write-only key, and a snapshot it wrote.
    let out = env
        .cmd()
        .env("CAIRN_NEW_PASSWORD", WRITER_PASSWORD)
        .args(["key", "add", "--write-only"])
        .args(FAST_KDF)
        .output()
        .unwrap();
    assert_code(&out, 0, &["key add --write-only"]);
    let data = night_dump(9, 2_000);
    let out = run_with_stdin(
        env.cmd()
            .env("CAIRN_PASSWORD", WRITER_PASSWORD)
            .args(["--json", "backup", "-", "--stdin-filename", "audit.sql"])
            .args(["--host", "db2", "--time", "2026-11-03T05:00:00Z"]),
        &data,
    );
    assert_code(&out, 0, &["backup with the write-only key"]);
    snapshots.push(
        json!({"id": snapshot_id(&out), "stdin_filename": "audit.sql",
        "size": data.len(), "blake3": hash(&data)}),
    );

    // An archived WAL history file (a name that is not a segment).
    let history = env.path(HISTORY);
    let text = b"1\t0/3000000\tno recovery target specified\n";
    std::fs::write(&history, text).unwrap();
    env.ok(&["wal-push", history.to_str().unwrap()]);

    // The first night forgotten and pruned with the default grace: its
    // packs stay, marked obsolete in the index.
    env.ok(&["forget", "--host", "db1", "--keep-last", "2"]);
    env.ok(&["prune", "--max-unused", "0"]);
    env.ok(&["check", "--read-data"]);

    // Each snapshot's listed fields, as a reader must find them.
    let listed = env.snapshots();
    for s in &mut snapshots {
        let got = listed.iter().find(|l| l["id"] == s["id"]).unwrap();
        for field in ["time", "hostname", "paths", "tags"] {
            s[field] = got[field].clone();
        }
    }
    let version = String::from_utf8(
        Command::new(env!("CARGO_BIN_EXE_cairn"))
            .arg("--version")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let manifest = json!({
        "format_version": 1,
        "made_by": version.trim(),
        "password": PASSWORD,
        "writer_password": WRITER_PASSWORD,
        "snapshots": snapshots,
        "wal": {HISTORY: hash(text)},
    });
    std::fs::create_dir_all(FIXTURE_DIR).unwrap();
    std::fs::write(
        Path::new(FIXTURE_DIR).join("manifest.json"),
        serde_json::to_string_pretty(&manifest).unwrap() + "\n",
    )
    .unwrap();
    let status = Command::new("tar")
        .args([
            "--sort=name",
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "-czf",
        ])
        .arg(Path::new(FIXTURE_DIR).join("repo.tar.gz"))
        .arg("-C")
        .arg(env.dir.path())
        .arg("repo")
        .status()
        .unwrap();
    assert!(status.success());
}
