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
