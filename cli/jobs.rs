//! The configuration file (`cairn.toml`): the repository, its password
//! source, and named jobs for `cairn run`. Read strictly: an unknown key,
//! a bad duration or a job that is neither a command nor paths is an
//! error naming the key, before anything runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;

use cairn_core::ops::forget::KeepDuration;
use cairn_core::ops::prune::MaxUnused;
use cairn_core::Error;

/// Where `cairn run` looks when `--config` is not given, in this order.
pub fn default_locations() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(dir) = dirs_config_home() {
        out.push(dir.join("cairn/cairn.toml"));
    }
    out.push(PathBuf::from("/etc/cairn/cairn.toml"));
    out
}

fn dirs_config_home() -> Option<PathBuf> {
    match std::env::var_os("XDG_CONFIG_HOME") {
        Some(d) if !d.is_empty() => Some(PathBuf::from(d)),
        _ => std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")),
    }
}

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Repository location (a directory, s3:..., azure:... or sftp:...).
    pub repository: Option<String>,
    /// File holding the repository password.
    pub password_file: Option<PathBuf>,
    /// Command printing the repository password.
    pub password_command: Option<String>,
    /// Index cache directory.
    pub cache_dir: Option<PathBuf>,
    /// Object storage requests at once.
    pub connections: Option<u16>,
    /// Environment for every step (S3 credentials, PGHOST...).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The jobs, by name.
    #[serde(default)]
    pub jobs: BTreeMap<String, Job>,
}

/// One job: what to back up and what to do afterwards.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Job {
    /// A dump command whose standard output is backed up.
    pub command: Option<String>,
    /// The file name the command's output is stored under.
    pub stdin_filename: Option<String>,
    /// Or: absolute paths to back up.
    #[serde(default)]
    pub paths: Vec<String>,
    /// With paths: patterns left out (`backup --exclude`).
    #[serde(default)]
    pub exclude: Vec<String>,
    /// With paths: files of patterns (`backup --exclude-file`).
    #[serde(default)]
    pub exclude_file: Vec<String>,
    /// With paths: leave out cache directories (`backup --exclude-caches`).
    #[serde(default)]
    pub exclude_caches: bool,
    /// With paths: stay on each path's file system (`backup -x`).
    #[serde(default)]
    pub one_file_system: bool,
    /// Host name recorded (default: this machine's).
    pub host: Option<String>,
    /// Tags recorded.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Check that a dump is complete before committing (default true).
    pub validate: Option<bool>,
    /// Environment for this job's steps (on top of the file's `env`).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Retention: `forget` after the backup, over this job's snapshots.
    pub keep: Option<Keep>,
    /// Prune when due.
    pub prune: Option<PruneJob>,
    /// Copy this job's snapshots to another repository.
    pub copy: Option<CopyJob>,
    /// A restore drill of the job's newest snapshot, when due.
    pub drill: Option<DrillJob>,
    /// Write the job's outcome to this Prometheus textfile.
    pub prometheus: Option<PathBuf>,
}

/// When and how to drill.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrillJob {
    /// Drill when the last drill of this job (by `cairn run` on this
    /// machine) is at least this old; `0`: every run.
    pub every: String,
    /// Also load the dump into a scratch PostgreSQL database.
    #[serde(default)]
    pub pg: bool,
    /// Where to restore (default: the temporary directory).
    pub scratch: Option<PathBuf>,
}

/// Retention rules, as `forget --keep-*`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keep {
    pub last: Option<i64>,
    pub hourly: Option<i64>,
    pub daily: Option<i64>,
    pub weekly: Option<i64>,
    pub monthly: Option<i64>,
    pub yearly: Option<i64>,
    pub within: Option<String>,
    pub within_hourly: Option<String>,
    pub within_daily: Option<String>,
    pub within_weekly: Option<String>,
    pub within_monthly: Option<String>,
    pub within_yearly: Option<String>,
    /// Tag lists (`"a,b"`): keep snapshots with all tags of any.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Keep the newest snapshot that passed a restore drill.
    #[serde(default)]
    pub drilled: bool,
}

/// When and how to prune.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PruneJob {
    /// Prune when the last prune of this repository (by `cairn run` on
    /// this machine) is at least this old; `0`: every run.
    pub every: String,
    /// As `prune --max-unused`.
    pub max_unused: Option<String>,
    /// As `prune --max-repack-size`.
    pub max_repack_size: Option<String>,
}

/// Where to copy.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CopyJob {
    /// Target repository location.
    pub to: String,
    /// File holding the target's password.
    pub password_file: Option<PathBuf>,
    /// Command printing the target's password.
    pub password_command: Option<String>,
    /// Retention in the target (forget there after the copy, over this
    /// job's snapshots); without it the target keeps every copy.
    pub keep: Option<Keep>,
}

fn invalid(file: &Path, key: &str, why: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!(Error::invalid(format!("{}: {key}: {why}", file.display())))
}

impl ConfigFile {
    /// Reads and checks `file`.
    pub fn load(file: &Path) -> anyhow::Result<ConfigFile> {
        let text = std::fs::read_to_string(file).map_err(|e| {
            let kind = if e.kind() == std::io::ErrorKind::NotFound {
                cairn_core::ErrorKind::InvalidInput
            } else {
                cairn_core::ErrorKind::Io
            };
            anyhow::anyhow!(Error::new(
                kind,
                format!("reading configuration {}: {e}", file.display())
            ))
        })?;
        let config: ConfigFile = toml::from_str(&text).map_err(|e| {
            // toml's message spans lines (a caret under the spot); the
            // first line plus the location is what cron mails need.
            let at = e
                .span()
                .map(|s| {
                    let line = text[..s.start].matches('\n').count() + 1;
                    format!(" (line {line})")
                })
                .unwrap_or_default();
            let msg = e.message().replace('\n', " ");
            anyhow::anyhow!(Error::invalid(format!("{}{at}: {msg}", file.display())))
        })?;
        config.validate(file)?;
        Ok(config)
    }

    fn validate(&self, file: &Path) -> anyhow::Result<()> {
        // Environment variables: a name the environment can hold.
        let envs = std::iter::once(("env".to_string(), &self.env)).chain(
            self.jobs
                .iter()
                .map(|(name, job)| (format!("jobs.{name}.env"), &job.env)),
        );
        for (table, env) in envs {
            for (k, v) in env {
                if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
                    return Err(invalid(
                        file,
                        &format!("{table}.{k}"),
                        "an environment variable's name is not empty and has no = or NUL (nor its value a NUL)",
                    ));
                }
            }
        }
        for (name, job) in &self.jobs {
            job.validate(file, name)?;
        }
        if self.password_file.is_some() && self.password_command.is_some() {
            return Err(invalid(
                file,
                "password_file",
                "password_file and password_command are mutually exclusive",
            ));
        }
        Ok(())
    }
}

impl Job {
    /// Checks job `name` of `file`.
    fn validate(&self, file: &Path, name: &str) -> anyhow::Result<()> {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(invalid(
                file,
                &format!("jobs.{name}"),
                "a job name is letters, digits, - and _",
            ));
        }
        self.validate_source(file, name)?;
        self.validate_schedules(file, name)
    }

    /// What the job backs up: a command or paths, and the options that
    /// go with either.
    fn validate_source(&self, file: &Path, name: &str) -> anyhow::Result<()> {
        let key = |k: &str| format!("jobs.{name}.{k}");
        match (&self.command, self.paths.is_empty()) {
            (Some(_), false) => {
                return Err(invalid(
                    file,
                    &format!("jobs.{name}"),
                    "give command or paths, not both",
                ))
            }
            (None, true) => {
                return Err(invalid(
                    file,
                    &format!("jobs.{name}"),
                    "give command (a dump command) or paths",
                ))
            }
            _ => {}
        }
        if self.stdin_filename.is_some() && self.command.is_none() {
            return Err(invalid(file, &key("stdin_filename"), "only with command"));
        }
        if self.command.is_some() {
            let path_only = [
                ("exclude", !self.exclude.is_empty()),
                ("exclude_file", !self.exclude_file.is_empty()),
                ("exclude_caches", self.exclude_caches),
                ("one_file_system", self.one_file_system),
            ];
            if let Some((name, _)) = path_only.iter().find(|(_, set)| *set) {
                return Err(invalid(file, &key(name), "only with paths"));
            }
        }
        if let Some(p) = self.paths.iter().find(|p| !p.starts_with('/')) {
            return Err(invalid(
                file,
                &key("paths"),
                format!("{p:?} is not an absolute path"),
            ));
        }
        // Written as backup records them, so that forget and copy find
        // the job's snapshots by them.
        if let Some(p) = self.paths.iter().find(|p| {
            p.len() > 1
                && (p.ends_with('/')
                    || p.contains("//")
                    || p.split('/').any(|c| c == "." || c == ".."))
        }) {
            return Err(invalid(
                file,
                &key("paths"),
                format!("write {p:?} without a trailing /, //, . or .. components"),
            ));
        }
        Ok(())
    }

    /// What the job does after its backup: keep, prune, drill, copy.
    fn validate_schedules(&self, file: &Path, name: &str) -> anyhow::Result<()> {
        let key = |k: &str| format!("jobs.{name}.{k}");
        let duration = |key: &str, v: &str| {
            crate::commands::prune::parse_duration_seconds(v).map_err(|e| invalid(file, key, e))
        };
        if let Some(keep) = &self.keep {
            keep.validate(file, &key("keep"))?;
        }
        if let Some(p) = &self.prune {
            duration(&key("prune.every"), &p.every)?;
            if let Some(m) = &p.max_unused {
                MaxUnused::from_str(m).map_err(|e| invalid(file, &key("prune.max_unused"), e))?;
            }
            if let Some(s) = &p.max_repack_size {
                crate::commands::prune::parse_size(s)
                    .map_err(|e| invalid(file, &key("prune.max_repack_size"), e))?;
            }
        }
        if let Some(d) = &self.drill {
            duration(&key("drill.every"), &d.every)?;
        }
        if let Some(c) = &self.copy {
            if let Some(keep) = &c.keep {
                keep.validate(file, &key("copy.keep"))?;
            }
            if c.password_file.is_some() && c.password_command.is_some() {
                return Err(invalid(
                    file,
                    &key("copy"),
                    "password_file and password_command are mutually exclusive",
                ));
            }
        }
        Ok(())
    }
}

impl Keep {
    /// Checks counts and durations; `key` names the table in errors.
    fn validate(&self, file: &Path, key: &str) -> anyhow::Result<()> {
        for (k, v) in self.counts() {
            if v < -1 {
                return Err(invalid(
                    file,
                    &format!("{key}.{k}"),
                    "use a count, or -1 for no limit",
                ));
            }
        }
        for (k, v) in self.durations() {
            KeepDuration::from_str(v).map_err(|e| invalid(file, &format!("{key}.{k}"), e))?;
        }
        if self.is_empty() {
            return Err(invalid(file, key, "no rule: it would remove every snapshot of the job; give at least one (e.g. daily = 7)"));
        }
        Ok(())
    }

    fn counts(&self) -> Vec<(&'static str, i64)> {
        [
            ("last", self.last),
            ("hourly", self.hourly),
            ("daily", self.daily),
            ("weekly", self.weekly),
            ("monthly", self.monthly),
            ("yearly", self.yearly),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect()
    }

    fn durations(&self) -> Vec<(&'static str, &str)> {
        [
            ("within", &self.within),
            ("within_hourly", &self.within_hourly),
            ("within_daily", &self.within_daily),
            ("within_weekly", &self.within_weekly),
            ("within_monthly", &self.within_monthly),
            ("within_yearly", &self.within_yearly),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
        .collect()
    }

    fn is_empty(&self) -> bool {
        self.counts().iter().all(|(_, v)| *v == 0)
            && self.durations().is_empty()
            && self.tags.is_empty()
            && !self.drilled
    }

    /// The `forget` options for these rules.
    pub fn args(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (k, v) in self.counts() {
            out.push(format!("--keep-{k}"));
            out.push(v.to_string());
        }
        for (k, v) in self.durations() {
            out.push(format!("--keep-{}", k.replace('_', "-")));
            out.push(v.to_string());
        }
        for t in &self.tags {
            out.push("--keep-tag".into());
            out.push(t.clone());
        }
        if self.drilled {
            out.push("--keep-drilled".into());
        }
        out
    }
}
