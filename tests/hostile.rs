//! Attacks by a write-only key and by a hostile world (issue 19): each test
//! does the attack against the real binary and checks that nothing is
//! lost, nothing panics and nothing hangs (`repo-format.md` §14).

#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::process::Command;

use cairn_core::backend::{self, ObjectKind};
use cairn_core::format::{self, ObjectType};
use cairn_core::repository::{self, CacheLocation, Repository};
use common::{assert_code, stderr, Env, FAST_KDF};

const WRITER: &str = "writer password";

/// Adds a write-only key with password [`WRITER`].
fn add_writer(env: &Env) {
    let mut args = vec!["key", "add", "--write-only"];
    args.extend(FAST_KDF);
    let out = env
        .cmd()
        .env("CAIRN_NEW_PASSWORD", WRITER)
        .args(&args)
        .output()
        .unwrap();
    assert_code(&out, 0, &args);
}

/// The repository as the library sees it, unlocked to add with `password`: how an
/// attacker holding that key writes whatever objects they like.
fn unlock(env: &Env, password: &str) -> Repository {
    let backend = backend::open(env.repo.to_str().unwrap(), &Default::default()).unwrap();
    repository::locate(backend)
        .unwrap()
        .unlock_to_add(password.as_bytes(), &CacheLocation::Temporary)
        .unwrap()
}

/// A cairn command run as the writer.
fn as_writer(env: &Env) -> Command {
    let mut c = env.cmd();
    c.env("CAIRN_PASSWORD", WRITER);
    c
}

/// Peak resident memory of `cmd` in KiB (GNU time), with its output.
fn peak_kib(env: &Env, args: &[&str]) -> (u64, std::process::Output) {
    let report = env.path("time.txt");
    let cairn = env.cmd();
    let mut c = Command::new("/usr/bin/time");
    c.arg("-f").arg("%M").arg("-o").arg(&report);
    c.arg(cairn.get_program());
    c.args(cairn.get_args()).args(args);
    for (k, v) in cairn.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    let out = c.output().unwrap();
    let text = std::fs::read_to_string(&report).unwrap();
    let kib = text.trim().lines().last().unwrap().parse().unwrap();
    (kib, out)
}

/// 3. An index object of a few KB whose zstd frame unpacks to 1 GiB: a
///    full key's commands refuse it from its stated size, before setting
///    any memory aside, and go on without it.
#[test]
fn an_index_object_that_unpacks_to_a_gigabyte_is_refused_unread() {
    let env = Env::init();
    let id = env.backup_stdin(&common::fake_dump(2000, 1), &["--stdin-filename", "db.sql"]);
    add_writer(&env);
    let repo = unlock(&env, WRITER);

    // frame: compression 1, raw length, a zstd frame of 1 GiB of zeros.
    const GIB: u64 = 1 << 30;
    let mut framed = vec![1u8];
    framed.extend_from_slice(&GIB.to_le_bytes());
    let mut enc = zstd::stream::Encoder::new(framed, 19).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..1024 {
        enc.write_all(&zeros).unwrap();
    }
    let framed = enc.finish().unwrap();
    assert!(framed.len() < 64 * 1024, "{} bytes", framed.len());
    let h = format::header_with(ObjectType::Index, format::KEY_SCHEME_SESSION);
    let mut object = h.to_vec();
    let ad = format::associated_data(&h, repo.id(), &[]);
    repo.keys()
        .index()
        .seal_into(&ad, &framed, &mut object)
        .unwrap();
    let name = cairn_core::id::Id::of_bytes(&object).to_hex();
    assert!(repo
        .backend()
        .put(ObjectKind::Index, &name, &object)
        .unwrap());

    for args in [
        &["snapshots"][..],
        &["check"],
        &["restore", &id, "--target", "out"],
    ] {
        let mut args = args.to_vec();
        let to = env.path("out");
        if args[0] == "restore" {
            args[3] = to.to_str().unwrap();
        }
        let (kib, out) = peak_kib(&env, &args);
        assert!(kib < 200 * 1024, "{args:?} peaked at {kib} KiB");
        let err = stderr(&out);
        if args[0] == "check" {
            assert!(
                err.contains(&name) && err.contains("exceeds the limit"),
                "{err}"
            );
        } else {
            assert_code(&out, 0, &args);
        }
    }
    assert!(std::fs::read(env.path("out").join("db.sql")).unwrap() == common::fake_dump(2000, 1));
}

/// Runs `cmd`, killing it if it has not finished within `secs` seconds:
/// returns its output, or `None` if it had to be killed.
fn within(mut cmd: Command, secs: u64) -> Option<std::process::Output> {
    use std::process::Stdio;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return Some(child.wait_with_output().unwrap());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

fn mkfifo(path: &std::path::Path) {
    let status = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(status.success());
}

/// 5. A FIFO (or a directory, or a device) planted in place of the config
///    or of a pack: every command fails at once with exit 22 naming it,
///    instead of blocking in `open()` forever.
#[test]
fn a_fifo_in_place_of_the_config_or_a_pack_fails_at_once() {
    let env = Env::init();
    let data = common::fake_dump(3000, 2);
    let id = env.backup_stdin(&data, &["--stdin-filename", "db.sql"]);

    let config = env.repo.join("config");
    let saved = env.path("config.saved");
    std::fs::rename(&config, &saved).unwrap();
    mkfifo(&config);
    let mut c = env.cmd();
    c.arg("snapshots");
    let out = within(c, 30).expect("snapshots blocked on a FIFO config");
    assert_code(&out, 22, &["snapshots with a FIFO config"]);
    assert!(stderr(&out).contains("FIFO"), "{}", stderr(&out));
    std::fs::remove_file(&config).unwrap();
    std::fs::rename(&saved, &config).unwrap();

    let packs: Vec<_> = env
        .repo_listing()
        .into_iter()
        .filter(|(p, _)| p.starts_with(env.repo.join("data")))
        .collect();
    assert!(!packs.is_empty());
    let (pack, _) = &packs[0];
    std::fs::remove_file(pack).unwrap();
    mkfifo(pack);
    let name = pack.file_name().unwrap().to_str().unwrap().to_string();
    for args in [
        vec!["check", "--read-data"],
        vec!["restore", &id, "--target", "out"],
    ] {
        let mut c = env.cmd();
        c.args(&args).current_dir(env.dir.path());
        let out = within(c, 60).unwrap_or_else(|| panic!("{args:?} blocked on a FIFO pack"));
        assert_code(&out, 22, &args);
        assert!(stderr(&out).contains(&name), "{args:?}: {}", stderr(&out));
    }
    // A directory in its place: the same.
    std::fs::remove_file(pack).unwrap();
    std::fs::create_dir(pack).unwrap();
    let out = env.run(&["check", "--read-data"]);
    assert_code(&out, 22, &["check with a directory for a pack"]);
}
