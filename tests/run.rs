//! `cairn run`: jobs from a configuration file, through the binary —
//! backup, forget over the job's own snapshots, prune when due, copy; one
//! summary line and one exit code; a plan with --dry-run; strict
//! validation of the file; a Prometheus file per job.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::{assert_code, stderr, Env, FAST_KDF, PASSWORD};
use serde_json::Value;

/// A repository at `env.repo`, an off-site one beside it, password files
/// for both, and a config with a dump job and a file job.
fn setup(env: &Env, dump_command: &str) -> std::path::PathBuf {
    let dir = env.dir.path();
    std::fs::write(dir.join("pw"), PASSWORD).unwrap();
    std::fs::write(dir.join("pw2"), "offsite password").unwrap();
    let off = dir.join("off");
    let mut init = vec!["init"];
    init.extend(FAST_KDF);
    let out = at(env, &off, "offsite password")
        .args(&init)
        .output()
        .unwrap();
    assert_code(&out, 0, &["init offsite"]);
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(dir.join("src/a.txt"), "a").unwrap();
    let config = format!(
        r#"
repository = "{repo}"
password_file = "{dir}/pw"

[env]
NIGHT_NAME = "tuesday"

[jobs.shop]
command = "{dump_command}"
stdin_filename = "shop.sql"
tags = ["nightly"]
host = "db1"
prometheus = "{dir}/prom/shop.prom"
keep = {{ last = 2 }}
prune = {{ every = "7d" }}
drill = {{ every = "1d", scratch = "{dir}/scratch" }}
copy = {{ to = "{dir}/off", password_file = "{dir}/pw2", keep = {{ last = 2 }} }}

[jobs.files]
paths = ["{dir}/src"]
host = "db1"
keep = {{ last = 1 }}
"#,
        repo = env.repo.display(),
        dir = dir.display(),
    );
    let file = dir.join("cairn.toml");
    std::fs::write(&file, config).unwrap();
    file
}

/// `program` without the caller's `CAIRN_*` variables (a test sets its own).
fn clean(program: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
    let mut cmd = std::process::Command::new(program);
    for (k, _) in std::env::vars() {
        if k.starts_with("CAIRN_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// `cairn -r LOCATION` with `password`.
fn at(env: &Env, location: &Path, password: &str) -> std::process::Command {
    let mut cmd = clean(env!("CARGO_BIN_EXE_cairn"));
    cmd.arg("-r")
        .arg(location)
        .env("CAIRN_PASSWORD", password)
        .env("CAIRN_CACHE_DIR", &env.cache);
    cmd
}

/// `cairn --config FILE ARGS` without -r and without a password variable:
/// the file gives both.
fn run(env: &Env, config: &Path, args: &[&str]) -> std::process::Output {
    let mut cmd = clean(env!("CARGO_BIN_EXE_cairn"));
    cmd.arg("--config")
        .arg(config)
        .args(args)
        .env("CAIRN_CACHE_DIR", &env.cache)
        .output()
        .unwrap()
}

fn snapshots_of(env: &Env, location: &Path, password: &str) -> Vec<Value> {
    let out = at(env, location, password)
        .args(["--json", "snapshots"])
        .output()
        .unwrap();
    assert_code(&out, 0, &["snapshots"]);
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn a_job_backs_up_forgets_prunes_when_due_and_copies() {
    let env = Env::init();
    let config = setup(&env, "printf 'night %s\\n' $NIGHT_NAME");

    // The plan changes nothing.
    let out = run(&env, &config, &["run", "--dry-run"]);
    assert_code(&out, 0, &["run --dry-run"]);
    let plan = String::from_utf8(out.stdout).unwrap();
    let off = env.dir.path().join("off");
    for want in [
        "job shop".to_string(),
        format!("cairn --config {} backup --command", config.display()),
        format!(
            "cairn --config {} forget --keep-last 2 --exact --host db1 --path /shop.sql --tag nightly",
            config.display()
        ),
        format!("cairn --config {} prune", config.display()),
        format!("cairn --config {} copy --to", config.display()),
        format!(
            "forget-copy cairn --config {} -r {} --password-file {}/pw2 forget --keep-last 2",
            config.display(),
            off.display(),
            env.dir.path().display()
        ),
        "prune due (no prune recorded".to_string(),
        "drill due (no drill recorded".to_string(),
        "job files".to_string(),
    ] {
        assert!(plan.contains(&want), "{want:?} not in\n{plan}");
    }
    assert!(snapshots_of(&env, &env.repo, PASSWORD).is_empty());

    // A snapshot of the same host and file with one more tag is another
    // series: the job's rules must not touch it.
    let weekly = env.backup_stdin(
        b"weekly\n",
        &[
            "--stdin-filename",
            "shop.sql",
            "--host",
            "db1",
            "--tag",
            "nightly,weekly",
            "--time",
            "2026-01-01T00:00:00Z",
        ],
    );

    // Three nights.
    for night in 0..3 {
        let out = run(&env, &config, &["run"]);
        assert_code(&out, 0, &["run", &night.to_string()]);
        let text = String::from_utf8(out.stdout).unwrap();
        let shop = text
            .lines()
            .find(|l| l.starts_with("shop: ok"))
            .unwrap_or_else(|| panic!("{text}"));
        if night == 0 {
            assert!(
                shop.contains("pruned")
                    && shop.contains("copied 1 snapshots")
                    && shop.contains("passed (recovery time"),
                "{shop}"
            );
        } else {
            assert!(
                shop.contains("prune not due") && shop.contains("drill not due"),
                "{shop}"
            );
        }
        assert!(text.lines().any(|l| l.starts_with("files: ok")), "{text}");
    }
    // forget kept 2 of the dump job and 1 of the file job, each counted
    // apart (same host, other paths).
    let snaps = snapshots_of(&env, &env.repo, PASSWORD);
    assert!(
        snaps.iter().any(|s| s["id"] == weekly.as_str()),
        "another series was forgotten"
    );
    let shop: Vec<_> = snaps
        .iter()
        .filter(|s| s["paths"][0] == "/shop.sql" && s["id"] != weekly.as_str())
        .collect();
    assert_eq!(shop.len(), 2);
    assert_eq!(snaps.len() - shop.len(), 2);
    assert_eq!(shop[0]["tags"][0], "nightly");
    // The job's environment reached the dump command.
    assert_eq!(env.dump("latest", "shop.sql"), b"night tuesday\n");
    // Every night was copied off-site, and the off-site retention (with
    // the target's own password) kept two.
    assert_eq!(
        snapshots_of(&env, &env.dir.path().join("off"), "offsite password").len(),
        2
    );
    // The prune and drill times are remembered per repository and job;
    // the first night's snapshot was drilled.
    assert!(env.cache.join("run-state.json").exists());
    let drilled = snapshots_of(&env, &env.repo, PASSWORD)
        .iter()
        .filter(|s| s["drill"]["ok"] == true)
        .count();
    assert_eq!(
        drilled, 0,
        "the drilled night was forgotten since (keep last 2)"
    );
    assert_eq!(
        std::fs::read_dir(env.repo.join("drills")).unwrap().count(),
        1,
        "one drill in three nights with every = 1d"
    );

    // Prometheus: success, and what the backup added.
    let prom = std::fs::read_to_string(env.dir.path().join("prom/shop.prom")).unwrap();
    assert!(prom.contains("cairn_job_success{job=\"shop\"} 1"), "{prom}");
    assert!(
        prom.contains("cairn_job_backup_bytes_processed{job=\"shop\"} 14"),
        "{prom}"
    );

    // JSON: one report per job with each step's own output.
    let out = run(&env, &config, &["--json", "run", "files"]);
    assert_code(&out, 0, &["run --json files"]);
    let reports: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(reports.as_array().unwrap().len(), 1);
    assert_eq!(reports[0]["steps"][0]["step"], "backup");
    assert!(reports[0]["steps"][0]["output"]["snapshot_id"].is_string());
}

#[test]
fn a_failing_dump_fails_the_job_and_runs_nothing_after_it() {
    let env = Env::init();
    let config = setup(&env, "echo pg_dump: connection refused >&2; exit 1");
    let out = run(&env, &config, &["-q", "run"]);
    // The file job still ran; the exit code is the dump job's.
    assert_code(&out, 21, &["run with a failing dump"]);
    let err = stderr(&out);
    assert!(err.contains("pg_dump: connection refused"), "{err}");
    assert!(
        err.contains("cairn: job shop failed at backup (exit 21)")
            && err.contains("not run: forget, prune, copy"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "quiet");
    let snaps = snapshots_of(&env, &env.repo, PASSWORD);
    assert_eq!(snaps.len(), 1, "only the file job's snapshot");
    assert!(snapshots_of(&env, &env.dir.path().join("off"), "offsite password").is_empty());
    let prom = std::fs::read_to_string(env.dir.path().join("prom/shop.prom")).unwrap();
    assert!(prom.contains("cairn_job_success{job=\"shop\"} 0"), "{prom}");
    assert!(
        prom.contains("cairn_job_exit_code{job=\"shop\"} 21"),
        "{prom}"
    );
}

#[test]
fn the_configuration_file_is_checked_strictly() {
    let env = Env::empty();
    let bad = |text: &str, want: &str| {
        let file = env.path("bad.toml");
        std::fs::write(&file, text).unwrap();
        let out = run(&env, &file, &["run", "--dry-run"]);
        assert_code(&out, 2, &["run", text]);
        let err = stderr(&out);
        assert!(err.contains(want), "{want:?} not in {err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
    };
    let job = "repository = \"/x\"\n[jobs.a]\ncommand = \"true\"\n";
    bad(
        &format!("{job}kep = {{ daily = 7 }}\n"),
        "(line 4): unknown field `kep`",
    );
    bad(
        &format!("{job}prune = {{ every = \"soon\" }}\n"),
        "jobs.a.prune.every: invalid duration",
    );
    bad(
        &format!("{job}keep = {{ within = \"2 weeks\" }}\n"),
        "jobs.a.keep.within",
    );
    bad(
        &format!("{job}keep = {{ daily = 0 }}\n"),
        "jobs.a.keep: no rule",
    );
    bad(
        &format!("{job}paths = [\"/etc\"]\n"),
        "give command or paths, not both",
    );
    bad(
        "repository = \"/x\"\n[jobs.a]\npaths = [\"etc\"]\n",
        "not an absolute path",
    );
    bad(
        "repository = \"/x\"\n[jobs.\"a b\"]\ncommand = \"true\"\n",
        "a job name is",
    );
    bad("repository = [1]\n", "invalid type");
    bad(
        &format!("{job}exclude = [\"*.tmp\"]\n"),
        "jobs.a.exclude: only with paths",
    );
    // Naming a job that does not exist.
    let file = env.path("ok.toml");
    std::fs::write(&file, job).unwrap();
    let out = run(&env, &file, &["run", "b"]);
    assert_code(&out, 2, &["run b"]);
    assert!(stderr(&out).contains("no job \"b\""));
    // A missing file.
    let out = run(&env, &env.path("none.toml"), &["run"]);
    assert_code(&out, 2, &["run without a file"]);
    // The example in contrib/ is valid.
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/cairn.toml");
    let out = run(&env, &example, &["run", "--dry-run"]);
    assert_code(&out, 0, &["run --dry-run of contrib/cairn.toml"]);
    assert!(String::from_utf8(out.stdout).unwrap().contains("job shop"));
}

#[test]
fn other_commands_take_the_repository_from_the_configuration_file() {
    let env = Env::init();
    let config = setup(&env, "printf x");
    env.backup_stdin(b"hello\n", &["--stdin-filename", "h.txt"]);
    let out = run(&env, &config, &["--json", "snapshots"]);
    assert_code(&out, 0, &["--config snapshots"]);
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
}

#[test]
fn a_dump_command_never_sees_the_repository_password() {
    let env = Env::init();
    let out = env.run(&[
        "backup",
        "--command",
        "printf '%s %s' \"${CAIRN_PASSWORD:-none}\" \"${CAIRN_PASSWORD_FILE:-none}\"",
        "--stdin-filename",
        "env.txt",
    ]);
    assert_code(&out, 0, &["backup --command"]);
    assert_eq!(env.dump("latest", "env.txt"), b"none none");
}

/// Issue 21 item 6: `run --dry-run` prints commands that, pasted into a
/// shell, do what the steps do: the backup lands in the repository, the
/// copy and the off-site forget reach the off-site one with its own
/// password.
#[test]
fn dry_run_prints_commands_that_run_as_printed() {
    let env = Env::init();
    // The job's own variable, printed through env(1).
    let config = setup(&env, "printenv NIGHT_KIND");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[jobs.shop]\n",
        "[jobs.shop]\nenv = { \"NIGHT_KIND\" = \"full\" }\n",
    );
    std::fs::write(&config, text).unwrap();
    let out = run(&env, &config, &["run", "--dry-run"]);
    assert_code(&out, 0, &["run --dry-run"]);
    let text = String::from_utf8(out.stdout).unwrap();
    let exe = Path::new(env!("CARGO_BIN_EXE_cairn"));
    let mut ran = Vec::new();
    for line in text.lines() {
        // "  step        cairn ..." (notes have no command).
        let Some((step, command)) = line.trim_start().split_once(' ') else {
            continue;
        };
        let command = command.trim_start();
        if !command.starts_with("cairn ") && !command.contains(" cairn ") {
            continue;
        }
        let mut sh = clean("sh");
        let path = format!(
            "{}:{}",
            exe.parent().unwrap().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let out = sh
            .args(["-c", command])
            .env("PATH", path)
            .env("CAIRN_CACHE_DIR", &env.cache)
            .output()
            .unwrap();
        assert_code(&out, 0, &[step, command]);
        ran.push(step.to_string());
    }
    for step in ["backup", "forget", "copy", "forget-copy", "drill", "prune"] {
        assert!(
            ran.iter().any(|s| s == step),
            "{step} printed and run: {text}"
        );
    }
    let dir = env.dir.path();
    assert_eq!(
        snapshots_of(&env, &env.repo, PASSWORD).len(),
        2,
        "shop and files"
    );
    assert_eq!(
        snapshots_of(&env, &dir.join("off"), "offsite password").len(),
        1
    );
    let out = run(&env, &config, &["dump", "latest", "shop.sql"]);
    assert_eq!(
        out.stdout, b"full\n",
        "the printed backup had the job's variable"
    );
}

/// Issue 21 item 6: `--config FILE` gives every command the file's `[env]`,
/// not only `cairn run` (a dump command sees it here; S3 credentials
/// likewise).
#[test]
fn the_configuration_files_env_applies_to_every_command() {
    let env = Env::init();
    let config = setup(&env, "printf x");
    let out = run(
        &env,
        &config,
        &[
            "backup",
            "--command",
            "test \"$NIGHT_NAME\" = tuesday && printf night",
            "--stdin-filename",
            "n.sql",
        ],
    );
    assert_code(&out, 0, &["--config backup whose command reads [env]"]);
    let out = run(&env, &config, &["dump", "latest", "n.sql"]);
    assert_eq!(out.stdout, b"night");
    // The real environment wins over the file's [env], as over its other
    // settings.
    let mut cmd = clean(env!("CARGO_BIN_EXE_cairn"));
    let out = cmd
        .arg("--config")
        .arg(&config)
        .args([
            "backup",
            "--command",
            "printf \"$NIGHT_NAME\"",
            "--stdin-filename",
            "w.sql",
        ])
        .env("NIGHT_NAME", "wednesday")
        .env("CAIRN_CACHE_DIR", &env.cache)
        .output()
        .unwrap();
    assert_code(&out, 0, &["backup with NIGHT_NAME set"]);
    let out = run(&env, &config, &["dump", "latest", "w.sql"]);
    assert_eq!(out.stdout, b"wednesday");
    // A CAIRN_ variable in [env] counts like a real one: here the cache.
    let with_cache = env.path("with-cache.toml");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[env]\n",
        &format!(
            "[env]\nCAIRN_CACHE_DIR = \"{}\"\n",
            env.path("env-cache").display()
        ),
    );
    std::fs::write(&with_cache, text).unwrap();
    let mut cmd = clean(env!("CARGO_BIN_EXE_cairn"));
    let out = cmd
        .arg("--config")
        .arg(&with_cache)
        .arg("snapshots")
        .output()
        .unwrap();
    assert_code(&out, 0, &["snapshots with CAIRN_CACHE_DIR from [env]"]);
    assert!(
        env.path("env-cache").is_dir(),
        "the cache went where [env] said"
    );
    // A name the environment cannot hold is an error in the file.
    let bad = env.path("bad.toml");
    std::fs::write(&bad, "[env]\n\"A=B\" = \"x\"\n").unwrap();
    let out = run(&env, &bad, &["snapshots"]);
    assert_code(&out, 2, &["an [env] name with ="]);
    assert!(stderr(&out).contains("env.A=B"), "{}", stderr(&out));
}

/// Issue 21 item 6: the shipped examples agree with each other and work as
/// written: cron's lines run as the postgres user with cron's PATH plus the
/// PATH line of the file (the binary's own directory standing in for
/// /usr/local/bin), the file's status check passes after one night of
/// `cairn run` with a config shaped like contrib/cairn.toml (every job
/// drills), and the systemd unit has systemd create the cache directory
/// it names.
#[test]
fn the_contrib_examples_work_as_written() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cron = std::fs::read_to_string(root.join("contrib/cron")).unwrap();
    let unit = std::fs::read_to_string(root.join("contrib/systemd/cairn@.service")).unwrap();
    let example = std::fs::read_to_string(root.join("contrib/cairn.toml")).unwrap();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();

    // systemd: CacheDirectory=X makes /var/cache/X, the cache it names;
    // the binary is where the README installs it.
    let value = |key: &str| {
        unit.lines()
            .filter_map(|l| l.strip_prefix(key))
            .collect::<Vec<_>>()
    };
    let cache_dirs = value("CacheDirectory=");
    assert_eq!(cache_dirs.len(), 1, "the unit has systemd create the cache");
    let envs = value("Environment=");
    assert!(
        envs.contains(&format!("CAIRN_CACHE_DIR=/var/cache/{}", cache_dirs[0]).as_str()),
        "{envs:?}"
    );
    let exec = value("ExecStart=");
    assert!(exec[0].starts_with("/usr/local/bin/cairn "), "{exec:?}");
    assert!(readme.contains("cargo install --locked --path . --root /usr/local"));

    // cron: a PATH with /usr/local/bin; --max-drill-age only if every job
    // of the example drills.
    let path_line = cron
        .lines()
        .find_map(|l| l.strip_prefix("PATH="))
        .expect("contrib/cron sets PATH (cron's is /usr/bin:/bin)");
    assert!(path_line.split(':').any(|d| d == "/usr/local/bin"));
    let parsed: toml::Table = toml::from_str(&example).unwrap();
    let jobs = parsed["jobs"].as_table().unwrap();
    if cron.contains("--max-drill-age") {
        for (name, job) in jobs {
            assert!(job.get("drill").is_some(), "job {name} never drills");
        }
    }

    // The cron lines, as the postgres user, against a scratch config with
    // the example's shape: a dump job and a file job, each drilling.
    let env = Env::init_as_postgres();
    let dir = env.dir.path();
    std::fs::write(dir.join("pw"), PASSWORD).unwrap();
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    std::fs::write(dir.join("etc/hosts"), "127.0.0.1 localhost\n").unwrap();
    let config = dir.join("cairn.toml");
    std::fs::write(
        &config,
        format!(
            r#"repository = "{repo}"
password_file = "{dir}/pw"
cache_dir = "{dir}/cache"

[jobs.shop]
command = "printf 'select 1;\n'"
stdin_filename = "shop.sql"
keep = {{ daily = 7 }}
prune = {{ every = "7d" }}
drill = {{ every = "7d" }}

[jobs.etc]
paths = ["{dir}/etc"]
drill = {{ every = "7d" }}
"#,
            repo = env.repo.display(),
            dir = dir.display()
        ),
    )
    .unwrap();
    if common::is_root() {
        let out = std::process::Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir)
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    let exe_dir = Path::new(env!("CARGO_BIN_EXE_cairn")).parent().unwrap();
    let prom = dir.join("cairn.prom");
    for line in cron
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains(" cairn "))
    {
        // minute hour day month weekday user command
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields[5], "postgres", "{line}");
        let command = fields[6..]
            .join(" ")
            .replace("/etc/cairn/cairn.toml", config.to_str().unwrap())
            .replace(
                "/var/lib/prometheus/node-exporter/cairn.prom",
                prom.to_str().unwrap(),
            );
        let mut sh = if common::is_root() {
            // By its path: PATH below is cron's, without /usr/sbin.
            let mut c = clean("/usr/sbin/runuser");
            c.args(["-u", "postgres", "--", "sh", "-c", &command]);
            c
        } else {
            let mut c = clean("sh");
            c.args(["-c", &command]);
            c
        };
        let out = sh
            .env("PATH", format!("{}:{path_line}", exe_dir.display()))
            .env("HOME", dir)
            .output()
            .unwrap();
        assert_code(&out, 0, &[&command]);
        assert!(
            out.stdout.is_empty() && stderr(&out).is_empty(),
            "cron lines are silent when all is well: {command}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            stderr(&out)
        );
    }
    let prom = std::fs::read_to_string(prom).unwrap();
    assert_eq!(prom.matches("cairn_series_ok{").count(), 2, "{prom}");
    for line in prom.lines().filter(|l| l.starts_with("cairn_series_ok{")) {
        assert!(
            line.ends_with(" 1"),
            "every job backed up and drilled: {line}"
        );
    }
}

/// The copy target's password from CAIRN_PASSWORD2 (the file names none):
/// the printed off-site forget uses it, not the file's password_file.
#[test]
fn dry_run_of_a_copy_whose_password_comes_from_the_environment() {
    let env = Env::init();
    let config = setup(&env, "printf x");
    let text = std::fs::read_to_string(&config).unwrap();
    let dir = env.dir.path().display().to_string();
    let text = text.replace(&format!(", password_file = \"{dir}/pw2\""), "");
    std::fs::write(&config, text).unwrap();
    let mut plan = clean(env!("CARGO_BIN_EXE_cairn"));
    let out = plan
        .arg("--config")
        .arg(&config)
        .args(["run", "--dry-run"])
        .env("CAIRN_PASSWORD2", "offsite password")
        .env("CAIRN_CACHE_DIR", &env.cache)
        .output()
        .unwrap();
    assert_code(&out, 0, &["run --dry-run"]);
    let text = String::from_utf8(out.stdout).unwrap();
    let exe_dir = Path::new(env!("CARGO_BIN_EXE_cairn")).parent().unwrap();
    // The shop job's steps (the files job is listed first).
    let shop = &text[text.find("job shop").unwrap()..];
    for step in ["backup", "copy", "forget-copy"] {
        let line = shop
            .lines()
            .find_map(|l| l.trim_start().strip_prefix(&format!("{step} ")))
            .unwrap_or_else(|| panic!("no {step} in {text}"))
            .trim_start();
        let mut sh = clean("sh");
        let out = sh
            .args(["-c", line])
            .env("PATH", format!("{}:/usr/bin:/bin", exe_dir.display()))
            .env("CAIRN_PASSWORD2", "offsite password")
            .env("CAIRN_CACHE_DIR", &env.cache)
            .output()
            .unwrap();
        assert_code(&out, 0, &[step, line]);
    }
    assert_eq!(
        snapshots_of(&env, &env.dir.path().join("off"), "offsite password").len(),
        1
    );
}

/// A paths job's exclude settings reach its backup: `exclude`,
/// `exclude_file` and `exclude_caches` leave out what they name.
#[test]
fn a_paths_job_leaves_out_what_its_excludes_name() {
    let env = Env::init();
    let dir = env.dir.path();
    std::fs::write(dir.join("pw"), PASSWORD).unwrap();
    let src = dir.join("tree");
    std::fs::create_dir_all(src.join("cache")).unwrap();
    std::fs::write(src.join("a.txt"), "a").unwrap();
    std::fs::write(src.join("b.tmp"), "b").unwrap();
    std::fs::write(src.join("c.log"), "c").unwrap();
    std::fs::write(
        src.join("cache/CACHEDIR.TAG"),
        "Signature: 8a477f597d28d172789f06886806bc55",
    )
    .unwrap();
    std::fs::write(dir.join("excludes"), "# logs\n*.log\n").unwrap();
    let config = dir.join("cairn.toml");
    std::fs::write(
        &config,
        format!(
            "repository = \"{repo}\"\npassword_file = \"{d}/pw\"\n[jobs.files]\npaths = [\"{src}\"]\n\
             exclude = [\"*.tmp\"]\nexclude_file = [\"{d}/excludes\"]\nexclude_caches = true\n",
            repo = env.repo.display(),
            d = dir.display(),
            src = src.display()
        ),
    )
    .unwrap();
    let out = run(&env, &config, &["run", "files"]);
    assert_code(&out, 0, &["run files"]);
    let listing = env.ok(&["ls", "latest"]);
    assert!(listing.contains("a.txt"), "{listing}");
    for gone in ["b.tmp", "c.log", "cache"] {
        assert!(!listing.contains(gone), "{gone} in {listing}");
    }
}
