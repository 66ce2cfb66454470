//! `cairn run`: the jobs of the configuration file. Each job is backup →
//! forget → prune (when due) → copy, each step the same `cairn` command
//! an admin would type, run as a child process with `--json` so that its
//! outcome can be summed up in one line and one exit code.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use clap::Args;
use serde_json::{json, Value};

use cairn_core::repo::repository::CacheLocation;
use cairn_core::Error;

use crate::exit::ExitCode;
use crate::jobs::{ConfigFile, CopyJob, Job};
use crate::output::size;
use crate::{print_json, GlobalArgs};

pub const LONG_ABOUT: &str = "\
Run jobs of the configuration file: for each, a backup, then forget by the
job's retention rules (over this job's snapshots only: its host, paths and
tags), prune when due, a copy to another repository and forget there by the
copy's own rules, and a restore drill of the newest snapshot when due; each
step only if the ones before it succeeded. One line per job says what happened; the exit
code is that of the first step that failed (0 when all succeeded). With no
JOB every job runs, in name order; one failing does not stop the others.

The file is --config, else ~/.config/cairn/cairn.toml, else
/etc/cairn/cairn.toml. An example is in contrib/cairn.toml; a systemd timer
and a cron line are in contrib/ too.

    cairn run shop              # cron: 0 3 * * * cairn -q run shop
    cairn run --dry-run         # the plan: the commands each step runs";

#[derive(Args)]
pub struct RunArgs {
    /// Jobs to run (default: all)
    #[arg(value_name = "JOB")]
    jobs: Vec<String>,

    /// Show the steps each job would run, and whether prune and drill are due; change nothing
    #[arg(short = 'n', long)]
    dry_run: bool,
}

/// The configuration file `run` reads: `--config`, else the first of the
/// default locations that exists.
fn config_path(global: &GlobalArgs) -> anyhow::Result<PathBuf> {
    if let Some(p) = &global.config {
        return Ok(p.clone());
    }
    let places = crate::jobs::default_locations();
    places.iter().find(|p| p.exists()).cloned().ok_or_else(|| {
        let list: Vec<String> = places.iter().map(|p| p.display().to_string()).collect();
        anyhow::anyhow!(Error::invalid(format!(
            "no configuration file: give --config FILE or create one of {}",
            list.join(", ")
        )))
    })
}

/// Quotes `s` for a shell if it needs it (for showing command lines).
fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// One step of a job: a cairn command line.
struct Step {
    name: &'static str,
    args: Vec<String>,
    /// The repository the step works on, when it is not the job's (the
    /// copy target), with its own password source.
    target: Option<Target>,
}

/// A second repository and where its password comes from.
#[derive(Clone)]
struct Target {
    location: String,
    password_file: Option<PathBuf>,
    password_command: Option<String>,
}

impl Step {
    fn new(name: &'static str, args: Vec<String>) -> Step {
        Step {
            name,
            args,
            target: None,
        }
    }

    /// The command line as `--dry-run` shows it: one that does what the
    /// step does when pasted into a shell (as the user `run` runs as): the
    /// job's own variables, `--config` for the repository, password and
    /// `[env]`, and the copy target's password option.
    fn display(&self, config: &Path, job: &Job, no_cache: bool, repo: Option<&str>) -> String {
        // Through env(1), which takes any variable name a shell could not
        // assign (the file's names need only lack `=` and NUL).
        let mut line: Vec<String> = Vec::new();
        if !job.env.is_empty() {
            line.push("env".into());
            line.extend(job.env.iter().map(|(k, v)| quote(&format!("{k}={v}"))));
        }
        let mut words: Vec<String> = vec!["--config".into(), config.display().to_string()];
        if no_cache {
            words.push("--no-cache".into());
        }
        if let (None, Some(r)) = (&self.target, repo) {
            words.extend(["-r".to_string(), r.to_string()]);
        }
        if let Some(t) = &self.target {
            words.extend(["-r".to_string(), t.location.clone()]);
            match t.password() {
                TargetPassword::File(f) => {
                    words.extend(["--password-file".into(), f.to_string_lossy().into()])
                }
                TargetPassword::Command(c) => {
                    words.extend(["--password-command".into(), c.to_string_lossy().into()])
                }
                TargetPassword::Variable(_) => {
                    if line.is_empty() {
                        line.push("env".into());
                    }
                    line.push("CAIRN_PASSWORD=\"$CAIRN_PASSWORD2\"".into())
                }
                TargetPassword::None => {}
            }
        }
        words.extend(self.args.iter().cloned());
        line.push("cairn".into());
        line.extend(words.iter().map(|a| quote(a)));
        line.join(" ")
    }
}

/// How the copy target's password reaches a step: as `copy` got it.
enum TargetPassword {
    File(OsString),
    Command(OsString),
    /// `CAIRN_PASSWORD2`'s value.
    Variable(OsString),
    None,
}

impl Target {
    fn password(&self) -> TargetPassword {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        if let Some(f) = &self.password_file {
            TargetPassword::File(f.clone().into_os_string())
        } else if let Some(c) = &self.password_command {
            TargetPassword::Command(c.into())
        } else if let Some(f) = var("CAIRN_PASSWORD_FILE2") {
            TargetPassword::File(f)
        } else if let Some(c) = var("CAIRN_PASSWORD_COMMAND2") {
            TargetPassword::Command(c)
        } else if let Some(pw) = var("CAIRN_PASSWORD2") {
            TargetPassword::Variable(pw)
        } else {
            TargetPassword::None
        }
    }
}

/// Where `run` remembers when it last pruned each repository.
fn state_file(global: &GlobalArgs) -> Option<PathBuf> {
    match global.cache() {
        CacheLocation::Dir(d) => Some(d.join("run-state.json")),
        CacheLocation::Temporary => None,
    }
}

fn read_state(path: Option<&Path>) -> BTreeMap<String, i64> {
    path.and_then(|p| std::fs::read(p).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// The steps of `job`, and notes on whether its prune and drill are due.
/// The state key of a job's last drill.
fn drill_key(location: &str, job: &str) -> String {
    format!("{location}#drill:{job}")
}

/// Whether a step run every `every` is due after the last one at `last`,
/// and a note saying so (`due (last prune 8d 2h ago)`).
fn due(what: &str, every: &str, last: Option<i64>) -> anyhow::Result<(bool, String)> {
    let secs = crate::commands::prune::parse_duration_seconds(every)
        .map_err(|e| anyhow::anyhow!(Error::invalid(e)))? as i64;
    Ok(match last {
        None => (true, format!("due (no {what} recorded on this machine)")),
        Some(t) if now() - t >= secs => (true, format!("due (last {what} {} ago)", ago(now() - t))),
        Some(t) => (
            false,
            format!(
                "not due (last {what} {} ago, every {every})",
                ago(now() - t)
            ),
        ),
    })
}

fn plan(
    name: &str,
    job: &Job,
    location: &str,
    state: &BTreeMap<String, i64>,
) -> anyhow::Result<(Vec<Step>, Vec<String>)> {
    let (backup, series) = backup_args(name, job);
    let mut steps = vec![Step::new("backup", backup)];
    if let Some(keep) = &job.keep {
        let mut forget = vec!["forget".to_string()];
        forget.extend(keep.args());
        forget.extend(series.iter().cloned());
        steps.push(Step::new("forget", forget));
    }
    let mut notes: Vec<String> = Vec::new();
    if let Some(p) = &job.prune {
        let (due, note) = due("prune", &p.every, state.get(location).copied())?;
        notes.push(format!("prune {note}"));
        if due {
            let mut prune = vec!["prune".to_string()];
            if let Some(m) = &p.max_unused {
                prune.extend(["--max-unused".into(), m.clone()]);
            }
            if let Some(s) = &p.max_repack_size {
                prune.extend(["--max-repack-size".into(), s.clone()]);
            }
            steps.push(Step::new("prune", prune));
        }
    }
    if let Some(c) = &job.copy {
        if c.to == location {
            anyhow::bail!(Error::invalid(format!(
                "jobs.{name}.copy.to is the job's own repository"
            )));
        }
        steps.extend(copy_steps(c, &series));
    }
    if let Some(d) = &job.drill {
        let (due, note) = due(
            "drill",
            &d.every,
            state.get(&drill_key(location, name)).copied(),
        )?;
        notes.push(format!("drill {note}"));
        if due {
            let mut drill = vec!["drill".to_string(), "latest".to_string()];
            if d.pg {
                drill.push("--pg".into());
            }
            if let Some(dir) = &d.scratch {
                drill.extend(["--scratch".into(), dir.display().to_string()]);
            }
            drill.extend(series.iter().cloned());
            steps.push(Step::new("drill", drill));
        }
    }
    Ok((steps, notes))
}

/// The arguments of job `name`'s backup, and the options that select
/// the job's own series, exactly (`--exact --host H --path P... --tag
/// T`): another job with more paths or tags on the same host is not
/// touched by this one's rules.
fn backup_args(name: &str, job: &Job) -> (Vec<String>, Vec<String>) {
    let host = job.host.clone().unwrap_or_else(cairn_core::sys::hostname);
    let mut backup = vec!["backup".to_string()];
    let mut series = vec!["--exact".to_string(), "--host".to_string(), host.clone()];
    if let Some(cmd) = &job.command {
        let file = job
            .stdin_filename
            .clone()
            .unwrap_or_else(|| format!("{name}.dump"));
        backup.extend([
            "--command".into(),
            cmd.clone(),
            "--stdin-filename".into(),
            file.clone(),
        ]);
        series.extend(["--path".into(), format!("/{file}")]);
    } else {
        backup.extend(job.paths.iter().cloned());
        for p in &job.paths {
            series.extend(["--path".into(), p.clone()]);
        }
        for e in &job.exclude {
            backup.extend(["--exclude".into(), e.clone()]);
        }
        for f in &job.exclude_file {
            backup.extend(["--exclude-file".into(), f.clone()]);
        }
        if job.exclude_caches {
            backup.push("--exclude-caches".into());
        }
        if job.one_file_system {
            backup.push("--one-file-system".into());
        }
    }
    backup.extend(["--host".into(), host]);
    if !job.tags.is_empty() {
        backup.extend(["--tag".into(), job.tags.join(",")]);
        series.extend(["--tag".into(), job.tags.join(",")]);
    }
    if job.validate == Some(false) {
        backup.push("--no-validate".into());
    }
    (backup, series)
}

/// The copy of a job's `series` to a second repository, and the forget
/// there by the copy's own rules.
fn copy_steps(c: &CopyJob, series: &[String]) -> Vec<Step> {
    let mut copy = vec!["copy".to_string(), "--to".into(), c.to.clone()];
    if let Some(f) = &c.password_file {
        copy.extend(["--password-file2".into(), f.display().to_string()]);
    }
    if let Some(cmd) = &c.password_command {
        copy.extend(["--password-command2".into(), cmd.clone()]);
    }
    copy.extend(series.iter().cloned());
    let mut steps = vec![Step::new("copy", copy)];
    if let Some(keep) = &c.keep {
        let mut forget = vec!["forget".to_string()];
        forget.extend(keep.args());
        forget.extend(series.iter().cloned());
        steps.push(Step {
            name: "forget-copy",
            args: forget,
            target: Some(Target {
                location: c.to.clone(),
                password_file: c.password_file.clone(),
                password_command: c.password_command.clone(),
            }),
        });
    }
    steps
}

fn ago(seconds: i64) -> String {
    let s = seconds.max(0);
    match (s / 86_400, s % 86_400 / 3600, s % 3600 / 60) {
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

/// What one step did.
struct StepResult {
    name: &'static str,
    code: i32,
    seconds: f64,
    output: Value,
    /// The first line the step printed as an error.
    error: Option<String>,
}

pub fn run(global: &GlobalArgs, args: RunArgs) -> anyhow::Result<ExitCode> {
    let file = config_path(global)?;
    let config = ConfigFile::load(&file)?;
    let global = global.with_config(&config);
    let location = global.location()?.to_string();
    let names = job_names(&config, &args, &file)?;
    let state_path = state_file(&global);
    let state = read_state(state_path.as_deref());

    if args.dry_run {
        show_plans(&global, &config, &file, &names, &location, &state)?;
        return Ok(ExitCode::Success);
    }
    let password = crate::password::read(&global, false)?;
    let password = String::from_utf8(password).map_err(|_| {
        anyhow::anyhow!(Error::invalid(
            "cairn run hands the password to its steps in CAIRN_PASSWORD, so it must be UTF-8"
        ))
    })?;
    let exe = std::env::current_exe()
        .map_err(|e| anyhow::anyhow!(Error::io("finding the cairn executable", e)))?;
    // Every job's plan is made before any runs: a job that cannot be
    // planned is an error in the file, found before anything changes.
    for name in &names {
        plan(name, &config.jobs[name], &location, &BTreeMap::new())?;
    }
    // The global options every step gets; the password is read once and
    // handed down in CAIRN_PASSWORD.
    let mut base = vec!["--json".to_string()];
    if global.no_cache {
        base.push("--no-cache".into());
    } else if let Some(d) = &global.cache_dir {
        base.extend(["--cache-dir".into(), d.display().to_string()]);
    }
    base.extend(["--connections".into(), global.connections.to_string()]);
    let mut runner = Runner {
        global: &global,
        config: &config,
        location: &location,
        exe,
        base,
        password,
        state,
        state_path,
    };
    let cancelled = || crate::CANCEL.load(std::sync::atomic::Ordering::SeqCst);
    let mut first_failure: Option<ExitCode> = None;
    let mut reports = Vec::new();
    for name in &names {
        if cancelled() {
            // Jobs not started are not reported as done.
            first_failure.get_or_insert(ExitCode::Interrupted);
            break;
        }
        let (code, report) = runner.run_job(name)?;
        if code != ExitCode::Success {
            first_failure.get_or_insert(code);
        }
        reports.push(report);
    }
    if global.json {
        print_json(&reports)?;
    }
    Ok(first_failure.unwrap_or(ExitCode::Success))
}

/// The jobs to run: those named, or all of the file's; an error for a
/// name the file does not define.
fn job_names(config: &ConfigFile, args: &RunArgs, file: &Path) -> anyhow::Result<Vec<String>> {
    let names: Vec<String> = if args.jobs.is_empty() {
        config.jobs.keys().cloned().collect()
    } else {
        args.jobs.clone()
    };
    if names.is_empty() {
        anyhow::bail!(Error::invalid(format!(
            "{} defines no jobs ([jobs.NAME])",
            file.display()
        )));
    }
    for n in &names {
        if !config.jobs.contains_key(n) {
            let known: Vec<&str> = config.jobs.keys().map(String::as_str).collect();
            anyhow::bail!(Error::invalid(format!(
                "no job {n:?} in {} (jobs: {})",
                file.display(),
                known.join(", ")
            )));
        }
    }
    Ok(names)
}

/// `run --dry-run`: each job's steps, as the commands they would run.
fn show_plans(
    global: &GlobalArgs,
    config: &ConfigFile,
    file: &Path,
    names: &[String],
    location: &str,
    state: &BTreeMap<String, i64>,
) -> anyhow::Result<()> {
    let shown_file = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
    let mut plans = Vec::new();
    for name in names {
        let job = &config.jobs[name];
        let (steps, notes) = plan(name, job, location, state)?;
        if global.json {
            plans.push(json!({
                "job": name,
                "steps": steps.iter().map(|s| json!({"step": s.name, "args": s.args})).collect::<Vec<_>>(),
                "notes": notes,
            }));
        } else if !global.quiet {
            let mut out = std::io::stdout().lock();
            writeln!(out, "job {name} (repository {location}):")?;
            for s in &steps {
                // A -r given to run overrides the file's repository.
                let repo = (config.repository.as_deref() != Some(location)).then_some(location);
                let line = s.display(&shown_file, job, global.no_cache, repo);
                writeln!(out, "  {:<11} {line}", s.name)?;
            }
            for n in &notes {
                writeln!(out, "  {n}")?;
            }
        }
    }
    if global.json {
        print_json(&plans)?;
    }
    Ok(())
}

/// What the jobs of one `cairn run` share.
struct Runner<'a> {
    global: &'a GlobalArgs,
    config: &'a ConfigFile,
    location: &'a str,
    /// This executable, which runs each step.
    exe: PathBuf,
    /// The global options every step gets.
    base: Vec<String>,
    password: String,
    /// When each repository was last pruned and each job last drilled.
    state: BTreeMap<String, i64>,
    state_path: Option<PathBuf>,
}

impl Runner<'_> {
    /// Runs job `name`'s steps until one fails; says how it went (a line,
    /// or the failure on stderr; its Prometheus file). Returns its exit
    /// code and its JSON report.
    fn run_job(&mut self, name: &str) -> anyhow::Result<(ExitCode, Value)> {
        let job = &self.config.jobs[name];
        let started = Instant::now();
        let (steps, notes) = plan(name, job, self.location, &self.state)?;
        let mut results: Vec<StepResult> = Vec::new();
        for step in &steps {
            if crate::CANCEL.load(std::sync::atomic::Ordering::SeqCst) {
                results.push(StepResult {
                    name: step.name,
                    code: ExitCode::Interrupted as i32,
                    seconds: 0.0,
                    output: Value::Null,
                    error: Some("interrupted before it started".into()),
                });
                break;
            }
            let r = run_step(
                &self.exe,
                &self.base,
                self.location,
                step,
                self.config,
                job,
                &self.password,
            )?;
            let failed = r.code != 0;
            if !failed && (r.name == "prune" || r.name == "drill") {
                let key = if r.name == "prune" {
                    self.location.to_string()
                } else {
                    drill_key(self.location, name)
                };
                self.state.insert(key, now());
                write_state(self.state_path.as_deref(), &self.state);
            }
            results.push(r);
            if failed {
                break;
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        let failed = results.iter().find(|r| r.code != 0);
        let code = failed.map(|r| code_of(r.code)).unwrap_or(ExitCode::Success);
        let summary = summary_line(name, &results, &notes, seconds);
        if let Some(f) = failed {
            let skipped: Vec<&str> = steps.iter().skip(results.len()).map(|s| s.name).collect();
            let mut line = format!(
                "cairn: job {name} failed at {} (exit {}) after {seconds:.1}s",
                f.name, f.code
            );
            if let Some(e) = &f.error {
                line.push_str(&format!(": {e}"));
            }
            if !skipped.is_empty() {
                line.push_str(&format!("; not run: {}", skipped.join(", ")));
            }
            eprintln!("{line}");
        } else if !self.global.quiet && !self.global.json {
            println!("{summary}");
        }
        if let Some(prom) = &job.prometheus {
            if let Err(e) = write_prometheus(prom, name, &results, code, seconds) {
                eprintln!("cairn: warning: {e:#}");
            }
        }
        let report = json!({
            "job": name,
            "ok": failed.is_none(),
            "exit_code": code as i32,
            "seconds": seconds,
            "summary": summary,
            "notes": notes,
            "steps": results.iter().map(|r| json!({
                "step": r.name,
                "exit_code": r.code,
                "seconds": r.seconds,
                "error": r.error,
                "output": r.output,
            })).collect::<Vec<_>>(),
        });
        Ok((code, report))
    }
}

fn write_state(path: Option<&Path>, state: &BTreeMap<String, i64>) {
    let Some(path) = path else { return };
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Ok(bytes) = serde_json::to_vec_pretty(state) {
        if let Err(e) = crate::commands::status::write_atomically(path, &bytes) {
            eprintln!("cairn: warning: could not record the prune time: {e:#}");
        }
    }
}

/// The exit code a step's process returned, as ours.
fn code_of(code: i32) -> ExitCode {
    ExitCode::from_code(code).unwrap_or(ExitCode::Error)
}

#[allow(clippy::too_many_arguments)]
fn run_step(
    exe: &Path,
    base: &[String],
    location: &str,
    step: &Step,
    config: &ConfigFile,
    job: &Job,
    password: &str,
) -> anyhow::Result<StepResult> {
    let started = Instant::now();
    let mut cmd = Command::new(exe);
    // The file's [env] where the environment lacks the variable (it wins,
    // as for every command given --config); the job's own env over both.
    let file_env = config
        .env
        .iter()
        .filter(|(k, _)| std::env::var_os(k).is_none());
    cmd.args(base)
        .envs(file_env)
        .envs(&job.env)
        .env_remove("CAIRN_PASSWORD_FILE")
        .env_remove("CAIRN_PASSWORD_COMMAND")
        .env_remove("CAIRN_CONFIG");
    match &step.target {
        None => {
            cmd.args(["-r", location]).env("CAIRN_PASSWORD", password);
        }
        // The copy target: its own password, as copy got it.
        Some(t) => {
            cmd.args(["-r", &t.location]).env_remove("CAIRN_PASSWORD");
            match t.password() {
                TargetPassword::File(f) => {
                    cmd.arg("--password-file").arg(f);
                }
                TargetPassword::Command(c) => {
                    cmd.arg("--password-command").arg(c);
                }
                TargetPassword::Variable(pw) => {
                    cmd.env("CAIRN_PASSWORD", pw);
                }
                TargetPassword::None => {}
            }
        }
    }
    cmd.args(&step.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = cmd
        .output()
        .map_err(|e| anyhow::anyhow!(Error::io(format!("running {}", exe.display()), e)))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let error = stderr
        .lines()
        .find_map(|l| l.strip_prefix("cairn: error: "))
        .map(str::to_string);
    // Warnings of the step and what its dump command printed, as they
    // came; its error goes into the job's failure line instead.
    let mut err = std::io::stderr().lock();
    for line in stderr.lines().filter(|l| !l.starts_with("cairn: error: ")) {
        let _ = writeln!(err, "{line}");
    }
    let code = out.status.code().unwrap_or(ExitCode::Interrupted as i32);
    // Most steps print one JSON document; forget prints one too.
    let output = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    Ok(StepResult {
        name: step.name,
        code,
        seconds: started.elapsed().as_secs_f64(),
        output,
        error,
    })
}

/// `shop: ok in 5.2s: backup 1a2b3c4d (203.4 MiB read, 2.1 MiB added); forget removed 1; prune not due; copy 1 snapshot`.
fn summary_line(name: &str, results: &[StepResult], notes: &[String], seconds: f64) -> String {
    let ok = results.iter().all(|r| r.code == 0);
    let mut parts = Vec::new();
    for r in results {
        let o = &r.output;
        let u = |k: &str| o[k].as_u64().unwrap_or(0);
        parts.push(match (r.name, r.code) {
            ("backup", 0) => format!(
                "backup {} ({} read, {} added)",
                o["short_id"].as_str().unwrap_or("?"),
                size(u("total_bytes_processed")),
                size(u("data_added_packed"))
            ),
            ("forget" | "forget-copy", 0) => {
                let removed: usize = o
                    .as_array()
                    .map(|groups| {
                        groups
                            .iter()
                            .map(|g| g["remove"].as_array().map_or(0, Vec::len))
                            .sum()
                    })
                    .unwrap_or(0);
                if r.name == "forget" {
                    format!("forget removed {removed}")
                } else {
                    format!("off-site forget removed {removed}")
                }
            }
            ("prune", 0) => "pruned".to_string(),
            ("drill", 0) => format!(
                "drill of {} passed (recovery time {:.1}s)",
                o["snapshot"].as_str().map_or("?", |s| &s[..8.min(s.len())]),
                o["seconds"].as_f64().unwrap_or(0.0)
            ),
            ("copy", 0) => {
                let copied = o["snapshots"]
                    .as_array()
                    .map_or(0, |l| l.iter().filter(|s| s["skipped"] == false).count());
                format!("copied {copied} snapshots")
            }
            (step, code) => format!("{step} failed (exit {code})"),
        });
    }
    // Steps not due say so ("prune not due (last prune 2d 3h ago, every 7d)").
    if ok {
        for note in notes {
            let step = note.split(' ').next().unwrap_or("");
            if !results.iter().any(|r| r.name == step) {
                parts.push(note.clone());
            }
        }
    }
    format!(
        "{name}: {} in {seconds:.1}s: {}",
        if ok { "ok" } else { "FAILED" },
        parts.join("; ")
    )
}

/// Writes the job's outcome as a Prometheus textfile. The time of the
/// last success is carried over from the file when this run failed.
fn write_prometheus(
    file: &Path,
    job: &str,
    results: &[StepResult],
    code: ExitCode,
    seconds: f64,
) -> anyhow::Result<()> {
    let ok = code == ExitCode::Success;
    let now = now();
    let last_success = if ok {
        Some(now)
    } else {
        std::fs::read_to_string(file).ok().and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("cairn_job_last_success_timestamp_seconds"))
                .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        })
    };
    let label = format!("{{job=\"{job}\"}}");
    let mut text = String::new();
    let mut metric = |name: &str, help: &str, value: String| {
        text.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{label} {value}\n"
        ));
    };
    metric(
        "cairn_job_last_run_timestamp_seconds",
        "When the job last ran.",
        now.to_string(),
    );
    metric(
        "cairn_job_success",
        "Whether the job's last run succeeded.",
        u8::from(ok).to_string(),
    );
    metric(
        "cairn_job_exit_code",
        "The exit code of the job's last run.",
        (code as i32).to_string(),
    );
    metric(
        "cairn_job_duration_seconds",
        "How long the job's last run took.",
        format!("{seconds:.3}"),
    );
    if let Some(t) = last_success {
        metric(
            "cairn_job_last_success_timestamp_seconds",
            "When the job last succeeded.",
            t.to_string(),
        );
    }
    if let Some(b) = results.iter().find(|r| r.name == "backup" && r.code == 0) {
        metric(
            "cairn_job_backup_bytes_processed",
            "Bytes the job's last backup read.",
            b.output["total_bytes_processed"]
                .as_u64()
                .unwrap_or(0)
                .to_string(),
        );
        metric(
            "cairn_job_backup_bytes_added",
            "Bytes the job's last backup stored (compressed, encrypted).",
            b.output["data_added_packed"]
                .as_u64()
                .unwrap_or(0)
                .to_string(),
        );
    }
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!(Error::io(format!("creating {}", dir.display()), e)))?;
    }
    crate::commands::status::write_atomically(file, text.as_bytes())
}
