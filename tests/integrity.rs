//! `check`, `repair index`, `repair snapshots`, and the corruption matrix,
//! through the real binary: every kind of damage is found by `check` and by
//! `restore`/`dump` with a one-line error and exit 22, nothing panics, and
//! no command ever hands back wrong bytes.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::*;
use serde_json::Value;

/// Three nightly dumps, each with data of its own, in 1 MiB packs, stored
/// whole (the same rows with other values could be deltas of an older
/// night, and damage to it would spread; core/tests/delta.rs covers that).
struct Fixture {
    env: Env,
    nights: Vec<(String, Vec<u8>)>,
    /// Packs written by each night's backup.
    packs: Vec<Vec<PathBuf>>,
}

fn data_files(env: &Env, dir: &str) -> Vec<PathBuf> {
    env.repo_listing()
        .into_iter()
        .filter(|(p, _)| p.strip_prefix(&env.repo).unwrap().starts_with(dir))
        .map(|(p, _)| p)
        .collect()
}

fn fixture() -> Fixture {
    let env = Env::init_with(&["--pack-size", "1MiB", "--no-delta"]);
    let mut nights = Vec::new();
    let mut packs = Vec::new();
    for n in 0..3u64 {
        let before = data_files(&env, "data");
        let mut dump = fake_dump(30_000, 1000 * (n + 1));
        dump.extend(pseudo_random(600_000, 7000 * (n + 1)));
        let id = env.backup_stdin(&dump, &["--stdin-filename", "shop.sql"]);
        packs.push(
            data_files(&env, "data")
                .into_iter()
                .filter(|p| !before.contains(p))
                .collect(),
        );
        nights.push((id, dump));
    }
    Fixture { env, nights, packs }
}

/// A copy of the fixture's repository with an empty cache.
fn copy_of(f: &Fixture) -> Env {
    let env = Env::empty();
    let st = Command::new("cp")
        .arg("-a")
        .arg(&f.env.repo)
        .arg(&env.repo)
        .status()
        .unwrap();
    assert!(st.success());
    env
}

fn flip(path: &Path, at: usize) {
    let mut b = std::fs::read(path).unwrap();
    let i = at % b.len();
    b[i] ^= 0x10;
    std::fs::write(path, b).unwrap();
}

fn largest(files: &[PathBuf]) -> PathBuf {
    files
        .iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap()
        .clone()
}

fn name_of(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

fn no_panic(out: &Output, what: &str) {
    let err = stderr(out);
    assert!(
        !err.contains("panicked") && out.status.code().is_some(),
        "{what}: crashed: {err}"
    );
}

/// Every snapshot either dumps its exact bytes or fails with exit 22 and a
/// one-line error; returns how many failed.
fn dumps_are_right_or_refused(env: &Env, f: &Fixture, case: &str) -> usize {
    let mut failed = 0;
    for (id, data) in &f.nights {
        let out = env.run(&["dump", id, "shop.sql"]);
        no_panic(&out, case);
        match out.status.code() {
            Some(0) => assert!(
                out.stdout == *data,
                "{case}: dump of {id} returned wrong bytes"
            ),
            Some(22) => {
                let err = stderr(&out);
                assert_eq!(
                    err.lines()
                        .filter(|l| l.starts_with("cairn: error:"))
                        .count(),
                    1,
                    "{case}: not one error line: {err}"
                );
                failed += 1;
            }
            other => panic!("{case}: dump of {id}: exit {other:?}: {}", stderr(&out)),
        }
    }
    failed
}

#[test]
fn check_passes_a_whole_repository_and_reads_subsets() {
    let f = fixture();
    let env = &f.env;
    let out = env.ok(&["check"]);
    assert!(out.contains("no errors were found"), "{out}");

    let json = |args: &[&str]| -> Value {
        let mut a = vec!["--json", "check"];
        a.extend(args);
        serde_json::from_str(&env.ok(&a)).unwrap()
    };
    let all = json(&["--read-data"]);
    assert_eq!(all["ok"], true);
    let stats = &all["stats"];
    assert_eq!(stats["snapshots"], 3);
    assert_eq!(stats["packs_read"], stats["packs"]);
    assert_eq!(stats["blobs_verified"], stats["blobs"]);
    assert!(stats["packs"].as_u64().unwrap() >= 6);

    // n/m groups partition the packs: three nights of 1/3, 2/3, 3/3 read
    // each pack exactly once.
    let total: u64 = (1..=3)
        .map(|n| {
            json(&["--read-data-subset", &format!("{n}/3")])["stats"]["packs_read"]
                .as_u64()
                .unwrap()
        })
        .sum();
    assert_eq!(total, stats["packs"].as_u64().unwrap());
    let half = json(&["--read-data-subset", "50%"]);
    let packs = stats["packs"].as_u64().unwrap();
    assert_eq!(
        half["stats"]["packs_read"].as_u64().unwrap(),
        packs.div_ceil(2)
    );
    let some = json(&["--read-data-subset", "1K"]);
    assert_eq!(some["stats"]["packs_read"], 1);

    for bad in ["0/3", "4/3", "0%", "150%", "x"] {
        let out = env.run(&["check", "--read-data-subset", bad]);
        assert_code(&out, 2, &["check --read-data-subset", bad]);
    }
}

/// Damages a copy of the fixture; returns what `check` must name.
type Damager = Box<dyn Fn(&Fixture, &Env) -> String>;

/// One kind of damage: what to do to the repository, what `check` must
/// name, and whether only `--read-data` can see it.
struct Case {
    name: &'static str,
    damage: Damager,
    needs_read_data: bool,
    /// Commands fail before they can look at snapshots (key, config).
    fatal: bool,
}

#[test]
fn corruption_matrix_is_detected_by_check_and_restore() {
    let f = fixture();
    let other = Env::init();
    let foreign_id = other.backup_stdin(b"another repository\n", &["--stdin-filename", "shop.sql"]);
    let foreign = other.repo.join("snapshots").join(&foreign_id);

    let cases: Vec<Case> = vec![
        Case {
            name: "truncated pack",
            damage: Box::new(|f, env| {
                let p = env
                    .repo
                    .join(largest(&f.packs[1]).strip_prefix(&f.env.repo).unwrap());
                let len = std::fs::metadata(&p).unwrap().len();
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&p)
                    .unwrap()
                    .set_len(len / 2)
                    .unwrap();
                name_of(&p)
            }),
            needs_read_data: false,
            fatal: false,
        },
        Case {
            name: "flipped byte in a pack",
            damage: Box::new(|f, env| {
                let p = env
                    .repo
                    .join(largest(&f.packs[1]).strip_prefix(&f.env.repo).unwrap());
                flip(&p, 5000);
                name_of(&p)
            }),
            needs_read_data: true,
            fatal: false,
        },
        Case {
            name: "flipped byte in a pack trailer",
            damage: Box::new(|f, env| {
                let p = env
                    .repo
                    .join(largest(&f.packs[2]).strip_prefix(&f.env.repo).unwrap());
                let len = std::fs::metadata(&p).unwrap().len() as usize;
                flip(&p, len - 30);
                name_of(&p)
            }),
            needs_read_data: false,
            fatal: false,
        },
        Case {
            name: "missing pack",
            damage: Box::new(|f, env| {
                let p = env
                    .repo
                    .join(largest(&f.packs[0]).strip_prefix(&f.env.repo).unwrap());
                std::fs::remove_file(&p).unwrap();
                name_of(&p)
            }),
            needs_read_data: false,
            fatal: false,
        },
        Case {
            name: "flipped byte in an index object",
            damage: Box::new(|_, env| {
                let p = data_files(env, "index").remove(0);
                flip(&p, 100);
                name_of(&p)
            }),
            needs_read_data: false,
            fatal: false,
        },
        Case {
            name: "flipped byte in a snapshot",
            damage: Box::new(|f, env| {
                let p = env.repo.join("snapshots").join(&f.nights[1].0);
                flip(&p, 50);
                f.nights[1].0.clone()
            }),
            needs_read_data: false,
            fatal: false,
        },
        Case {
            name: "index object stored as a snapshot",
            damage: Box::new(|_, env| {
                let p = data_files(env, "index").remove(0);
                let name = name_of(&p);
                std::fs::copy(&p, env.repo.join("snapshots").join(&name)).unwrap();
                name
            }),
            needs_read_data: false,
            fatal: false,
        },
        Case {
            name: "snapshot of another repository",
            damage: Box::new(move |_, env| {
                std::fs::copy(&foreign, env.repo.join("snapshots").join(&foreign_id)).unwrap();
                foreign_id.clone()
            }),
            needs_read_data: false,
            fatal: false,
        },
        Case {
            name: "flipped byte in the key file",
            damage: Box::new(|_, env| {
                let p = data_files(env, "keys").remove(0);
                flip(&p, 60);
                "key".to_string()
            }),
            needs_read_data: false,
            fatal: true,
        },
        Case {
            name: "flipped byte in the config",
            damage: Box::new(|_, env| {
                flip(&env.repo.join("config"), 20);
                "config is damaged".to_string()
            }),
            needs_read_data: false,
            fatal: true,
        },
    ];

    let mut tried = 0;
    for case in &cases {
        let env = copy_of(&f);
        // A cache synced before the damage, as on a real machine.
        env.ok(&["snapshots"]);
        let named = (case.damage)(&f, &env);
        let mut args = vec!["check"];
        if case.needs_read_data {
            let plain = env.run(&args);
            no_panic(&plain, case.name);
            args.push("--read-data");
        }
        let out = env.run(&args);
        no_panic(&out, case.name);
        assert_code(&out, 22, &[case.name]);
        let err = stderr(&out);
        assert!(
            err.contains(&named),
            "{}: check does not name {named}: {err}",
            case.name
        );
        if case.fatal {
            assert_eq!(err.trim_end().lines().count(), 1, "{}: {err}", case.name);
        }
        let failed = dumps_are_right_or_refused(&env, &f, case.name);
        // Blobs are sealed one by one: a damaged trailer (needed only to
        // rebuild the index) and planted objects leave every snapshot
        // restorable, and dumps still return the exact bytes.
        let snapshots_hit = !matches!(
            case.name,
            "index object stored as a snapshot"
                | "snapshot of another repository"
                | "flipped byte in a pack trailer"
        );
        if snapshots_hit {
            assert!(failed >= 1, "{}: no restore noticed the damage", case.name);
        }
        tried += 1;
    }
    eprintln!(
        "corruption matrix: {tried} kinds of damage, each found by check and refused by dump"
    );
}

#[test]
fn a_replayed_forgotten_snapshot_is_found_by_check() {
    let f = fixture();
    let env = &f.env;
    let (old_id, _) = &f.nights[0];
    let path = env.repo.join("snapshots").join(old_id);
    let bytes = std::fs::read(&path).unwrap();
    env.ok(&["forget", old_id]);
    env.ok(&["prune", "--grace", "0", "--max-unused", "0"]);
    env.ok(&["check", "--read-data"]);
    // A storage provider puts the old object back.
    std::fs::write(&path, bytes).unwrap();
    let out = env.run(&["check"]);
    assert_code(&out, 22, &["check after replay"]);
    assert!(stderr(&out).contains(&old_id[..8]), "{}", stderr(&out));
    let out = env.run(&["dump", old_id, "shop.sql"]);
    assert_code(&out, 22, &["dump replayed"]);
    // The other snapshots are untouched.
    for (id, data) in &f.nights[1..] {
        assert_eq!(&env.dump(id, "shop.sql"), data);
    }
}

#[test]
fn a_cache_that_disagrees_is_reported_and_rebuilt() {
    let f = fixture();
    let env = &f.env;
    env.ok(&["snapshots"]);
    // The cache now trusts index objects it read; replace one with garbage.
    let idx = data_files(env, "index").remove(0);
    std::fs::write(&idx, b"garbage").unwrap();
    let out = env.run(&["check"]);
    assert_code(&out, 22, &["check"]);
    assert!(stderr(&out).contains("disagreed"), "{}", stderr(&out));
    // Repair the index: the check is then clean, and so is the cache.
    env.ok(&["repair", "index"]);
    let out = env.run(&["check", "--read-data"]);
    assert_code(&out, 0, &["check after repair"]);
    assert!(!stderr(&out).contains("disagreed"), "{}", stderr(&out));
    for (id, data) in &f.nights {
        assert_eq!(&env.dump(id, "shop.sql"), data);
    }
}

#[test]
fn repair_index_rebuilds_a_lost_index() {
    let f = fixture();
    let env = &f.env;
    for p in data_files(env, "index") {
        std::fs::remove_file(p).unwrap();
    }
    assert_code(&env.run(&["check"]), 22, &["check without index"]);
    let dry = env.ok(&["repair", "index", "--dry-run"]);
    assert!(dry.contains("dry run"), "{dry}");
    assert!(
        data_files(env, "index").is_empty(),
        "dry run wrote something"
    );
    let out = env.ok(&["--json", "repair", "index"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["changed"], true);
    assert_eq!(
        v["added"].as_array().unwrap().len(),
        data_files(env, "data").len()
    );
    env.ok(&["check", "--read-data"]);
    for (id, data) in &f.nights {
        assert_eq!(&env.dump(id, "shop.sql"), data);
    }
    let again = env.ok(&["repair", "index"]);
    assert!(again.contains("nothing to do"), "{again}");
}

#[test]
fn repair_snapshots_marks_damage_and_keeps_the_length() {
    let f = fixture();
    let env = &f.env;
    // Lose one data pack of the last night only.
    let lost = largest(&f.packs[2]);
    std::fs::remove_file(&lost).unwrap();
    let (last_id, last) = &f.nights[2];

    let before = env.snapshots().len();
    let dry = env.ok(&["repair", "snapshots", "--dry-run"]);
    assert!(dry.contains("would be repaired"), "{dry}");
    assert_eq!(env.snapshots().len(), before);

    let out = env.ok(&["--json", "repair", "snapshots"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    let entries = v["snapshots"].as_array().unwrap();
    let hit: Vec<&Value> = entries
        .iter()
        .filter(|e| e["outcome"] == "repaired")
        .collect();
    assert_eq!(hit.len(), 1, "{out}");
    assert_eq!(hit[0]["snapshot"], last_id.as_str());
    let copy = hit[0]["repaired"].as_str().unwrap().to_string();
    let damage = &hit[0]["damaged"][0];
    assert_eq!(damage["path"], "/shop.sql");
    let zeroed = damage["damage"]["zeroed_bytes"].as_u64().unwrap();
    assert!(zeroed > 0);

    // The copy is tagged, names its original, and the original stays.
    let snaps = env.snapshots();
    assert_eq!(snaps.len(), before + 1);
    let c = snaps.iter().find(|s| s["id"] == copy.as_str()).unwrap();
    assert!(c["tags"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t == "repaired"));
    assert_eq!(c["original"], last_id.as_str());

    // Restoring it: same length, every surviving byte right, the lost ones
    // zero, a warning, exit 3.
    let out = env.run(&["dump", &copy, "shop.sql.damaged"]);
    assert_code(&out, 3, &["dump damaged"]);
    assert!(stderr(&out).contains("damaged"), "{}", stderr(&out));
    let got = out.stdout;
    assert_eq!(got.len(), last.len());
    let differing = got.iter().zip(last).filter(|(a, b)| a != b).count();
    assert!(differing > 0 && differing as u64 <= zeroed);
    assert!(got.iter().zip(last).all(|(a, b)| a == b || *a == 0));
    let target = env.path("out");
    let out = env.run(&["restore", &copy, "--target", target.to_str().unwrap()]);
    assert_code(&out, 3, &["restore damaged"]);
    assert_eq!(std::fs::read(target.join("shop.sql.damaged")).unwrap(), got);
    assert!(!target.join("shop.sql").exists());

    // Running it again writes no duplicate; --forget drops the original.
    env.ok(&["repair", "snapshots", "--forget"]);
    let snaps = env.snapshots();
    assert_eq!(snaps.len(), before);
    assert!(snaps.iter().all(|s| s["id"] != last_id.as_str()));
    env.ok(&["prune", "--grace", "0"]);
    env.ok(&["check", "--read-data"]);
    for (id, data) in &f.nights[..2] {
        assert_eq!(&env.dump(id, "shop.sql"), data);
    }
}

#[test]
fn kill_9_during_prune_loses_nothing() {
    // Twelve nights of unique data beside a shared part, in small packs:
    // prune has many packs to delete and some to repack.
    let env = &Env::init_with(&["--pack-size", "1MiB"]);
    let shared = fake_dump(20_000, 5);
    let mut ids = Vec::new();
    let mut kept = (String::new(), Vec::new());
    for n in 0..12u64 {
        let mut dump = shared.clone();
        dump.extend(pseudo_random(400_000, 3000 * (n + 1)));
        let id = env.backup_stdin(&dump, &["--stdin-filename", "shop.sql"]);
        kept = (id.clone(), dump);
        ids.push(id);
    }
    let mut forget = vec!["forget"];
    forget.extend(ids[..11].iter().map(String::as_str));
    env.ok(&forget);
    let kept = &kept;
    // Kill prune at growing delays until one run finishes on its own.
    let kills = kill_until_done(
        || {
            let mut c = env.cmd();
            c.args(["prune", "--grace", "0", "--max-unused", "0"]);
            c
        },
        Duration::from_millis(5),
        Duration::from_millis(1),
        // Whatever was interrupted, the kept snapshot restores exactly and
        // check finds nothing worse than leftovers.
        || {
            assert_eq!(&env.dump(&kept.0, "shop.sql"), &kept.1);
            assert_code(&env.run(&["check"]), 0, &["check after killed prune"]);
        },
    );
    env.ok(&["check", "--read-data"]);
    assert_eq!(env.snapshots().len(), 1);
    eprintln!("prune killed {kills} times at growing delays; nothing lost");
}

#[test]
fn repair_snapshots_refuses_while_an_index_object_is_damaged() {
    let f = fixture();
    let env = &f.env;
    let idx = data_files(env, "index").remove(0);
    flip(&idx, 100);
    let before = env.repo_listing();
    // Without a cache that already knows the damaged object's contents.
    let out = env.run(&["--no-cache", "repair", "snapshots", "--forget"]);
    assert_code(&out, 22, &["repair snapshots"]);
    assert!(stderr(&out).contains("repair index"), "{}", stderr(&out));
    assert_eq!(
        env.repo_listing(),
        before,
        "something was written or deleted"
    );
    env.ok(&["repair", "index"]);
    let out = env.ok(&["repair", "snapshots"]);
    assert!(out.contains("0 repaired"), "{out}");
    for (id, data) in &f.nights {
        assert_eq!(&env.dump(id, "shop.sql"), data);
    }
}

#[test]
fn repair_index_keeps_a_pack_whose_trailer_is_damaged() {
    let f = fixture();
    let env = &f.env;
    let p = largest(&f.packs[1]);
    let len = std::fs::metadata(&p).unwrap().len() as usize;
    flip(&p, len - 30);
    env.ok(&["repair", "index", "--read-all-packs"]);
    // The pack stays indexed, so prune keeps it and every blob in it is
    // still read (each is sealed on its own).
    env.ok(&["prune", "--grace", "0"]);
    assert!(p.exists(), "prune deleted a pack whose blobs are in use");
    for (id, data) in &f.nights {
        assert_eq!(&env.dump(id, "shop.sql"), data);
    }
    // check still says the trailer is damaged.
    let out = env.run(&["check"]);
    assert_code(&out, 22, &["check"]);
    assert!(stderr(&out).contains(&name_of(&p)), "{}", stderr(&out));
}
