//! `cairn status`: per series of snapshots (host, paths, tags), the newest
//! one and its age; with `--max-age`, a distinct exit code when a series
//! is older than allowed (the recovery point objective was missed), for
//! cron and monitoring.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::json;

use cairn_core::format::snapshot::{Snapshot, SourceKind};
use cairn_core::repo::drill_record::DrillRecord;
use cairn_core::time::SnapshotTime;

use crate::commands::{load_drills, load_snapshots, FilterArgs};
use crate::exit::ExitCode;
use crate::output::{drill_cell, drill_json, size, table};
use crate::{print_json, GlobalArgs};

#[derive(Args)]
pub struct StatusArgs {
    /// Exit 14 when a series' newest snapshot is older than this (e.g. 26h, 7d), or there is none
    #[arg(
        long,
        value_name = "DURATION",
        value_parser = crate::commands::prune::parse_duration_seconds,
        long_help = "Exit 14 when the newest snapshot of any series (host, paths and tags) is \
                     older than DURATION (such as 26h, 7d or 1h30m; a day is 24 hours): the \
                     recovery point objective was missed. With no snapshot at all (after the \
                     filters), it exits 14 too. Ages are measured from the snapshot's recorded time."
    )]
    max_age: Option<u64>,

    /// Exit 14 when a series has no restore drill that passed within this duration (e.g. 7d)
    #[arg(
        long,
        value_name = "DURATION",
        value_parser = crate::commands::prune::parse_duration_seconds
    )]
    max_drill_age: Option<u64>,

    /// Also write the status as a Prometheus textfile-collector file (replaced atomically)
    #[arg(long, value_name = "FILE")]
    prometheus: Option<PathBuf>,

    #[command(flatten)]
    filter: FilterArgs,
}

/// One series: its key, its newest snapshot, and its drills.
struct Series<'a> {
    host: &'a str,
    paths: Vec<String>,
    tags: Vec<String>,
    newest: &'a Snapshot,
    count: usize,
    /// The newest drill of the series, passed or not.
    drill: Option<&'a DrillRecord>,
    /// The newest drill of the series that passed.
    passed: Option<&'a DrillRecord>,
}

/// `3d 4h`, `5h 12m`, `12m`, `40s`.
fn age_text(seconds: i64) -> String {
    let s = seconds.max(0);
    let (d, h, m) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

pub fn run(global: &GlobalArgs, args: StatusArgs) -> anyhow::Result<ExitCode> {
    let result = status(global, &args);
    if let (Err(e), Some(file)) = (&result, &args.prometheus) {
        // Monitoring must see that the status itself failed.
        let now = SnapshotTime::now().timestamp().as_second();
        let text = format!(
            "# HELP cairn_status_success Whether cairn status could read the repository.\n\
             # TYPE cairn_status_success gauge\n\
             cairn_status_success 0\n\
             # HELP cairn_status_timestamp_seconds When cairn status ran.\n\
             # TYPE cairn_status_timestamp_seconds gauge\n\
             cairn_status_timestamp_seconds {now}\n"
        );
        if let Err(w) = write_atomically(file, text.as_bytes()) {
            eprintln!("cairn: warning: {w:#} (after: {e:#})");
        }
    }
    result
}

fn status(global: &GlobalArgs, args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let repo = global.open()?;
    let loaded = load_snapshots(&repo)?;
    let drills = load_drills(&repo)?;
    let filter = args.filter.filter();
    let now = SnapshotTime::now().timestamp().as_second();

    let mut groups: BTreeMap<(String, Vec<String>, Vec<String>), Series> = BTreeMap::new();
    // A snapshot dated in the future (warned about when loaded) never
    // satisfies --max-age: a forged date would satisfy it for ever.
    for s in loaded
        .good
        .iter()
        .filter(|s| filter.matches(s) && !s.future_dated)
    {
        let mut tags = s.tags.clone();
        tags.sort();
        let key = (s.hostname.clone(), s.sorted_paths(), tags.clone());
        let entry = groups.entry(key).or_insert_with(|| Series {
            host: &s.hostname,
            paths: s.sorted_paths(),
            tags,
            newest: s,
            count: 0,
            drill: drills.newest_in_series(s),
            passed: drills.newest_passed_in_series(s),
        });
        entry.count += 1;
        if s.time > entry.newest.time {
            entry.newest = s;
        }
    }
    let series: Vec<&Series> = groups.values().collect();
    let judge = Judge { args, now };
    let any_bad = series.iter().any(|s| judge.bad(s)) || (judge.limits() && series.is_empty());

    if let Some(file) = &args.prometheus {
        let text = prometheus_text(
            groups.values(),
            now,
            &|s| judge.stale(s) || judge.empty(s),
            &|s| judge.unproven(s),
        );
        write_atomically(file, text.as_bytes())?;
    }
    if global.json {
        print_json(&json!({
            "max_age_seconds": args.max_age,
            "max_drill_age_seconds": args.max_drill_age,
            "series": series.iter().map(|s| judge.json(s)).collect::<Vec<_>>(),
            "ok": !any_bad,
        }))?;
    } else if global.quiet {
        judge.complain(&series)?;
    } else {
        judge.table(&series)?;
    }
    Ok(if any_bad {
        ExitCode::Stale
    } else if !loaded.damaged.is_empty() {
        ExitCode::Damaged
    } else {
        ExitCode::Success
    })
}

/// The limits of `status` (`--max-age`, `--max-drill-age`) applied to a
/// series at time `now`.
struct Judge<'a> {
    args: &'a StatusArgs,
    now: i64,
}

impl Judge<'_> {
    /// Whether any limit was given.
    fn limits(&self) -> bool {
        self.args.max_age.is_some() || self.args.max_drill_age.is_some()
    }

    /// Seconds since the newest snapshot.
    fn age(&self, s: &Series) -> i64 {
        self.now - s.newest.time.timestamp().as_second()
    }

    /// Older than `--max-age`.
    fn stale(&self, s: &Series) -> bool {
        self.args
            .max_age
            .is_some_and(|max| self.age(s) > max as i64)
    }

    /// Seconds since the last drill that passed.
    fn drill_age(&self, s: &Series) -> Option<i64> {
        s.passed.map(|d| self.now - d.time.timestamp().as_second())
    }

    /// No drill passed within `--max-drill-age`.
    fn unproven(&self, s: &Series) -> bool {
        self.args
            .max_drill_age
            .is_some_and(|max| self.drill_age(s).is_none_or(|age| age > max as i64))
    }

    /// A stream saved empty by an older cairn (or by one whose empty
    /// stream was not saved on purpose with --allow-empty): dated like a
    /// good one, but nothing to restore.
    fn empty(&self, s: &Series) -> bool {
        s.newest.source.kind != SourceKind::Paths
            && s.newest.summary.total_bytes_processed == 0
            && !s.newest.source.empty_allowed
    }

    fn bad(&self, s: &Series) -> bool {
        self.stale(s) || self.unproven(s) || self.empty(s)
    }

    fn json(&self, s: &Series) -> serde_json::Value {
        json!({
            "host": s.host,
            "paths": s.paths,
            "tags": s.tags,
            "snapshots": s.count,
            "latest_id": s.newest.id.to_hex(),
            "latest_time": s.newest.time.to_rfc3339(),
            "age_seconds": self.age(s),
            "latest_size": s.newest.summary.total_bytes_processed,
            "stale": self.stale(s),
            "empty": self.empty(s),
            "last_drill": s.drill.map(drill_json),
            "last_passed_drill": s.passed.map(drill_json),
            "unproven": self.unproven(s),
        })
    }

    /// Quiet: only what is wrong, on stderr, one line each.
    fn complain(&self, series: &[&Series]) -> std::io::Result<()> {
        let mut err = std::io::stderr().lock();
        for s in series {
            let name = format!("{} {} [{}]", s.host, s.paths.join(","), s.tags.join(","));
            if self.stale(s) {
                writeln!(
                    err,
                    "cairn: stale: {name}: newest snapshot {} is {} old",
                    s.newest.id.short(),
                    age_text(self.age(s))
                )?;
            }
            if self.empty(s) {
                writeln!(
                    err,
                    "cairn: empty: {name}: newest snapshot {} holds an empty stream",
                    s.newest.id.short()
                )?;
            }
            if self.unproven(s) {
                let why = match self.drill_age(s) {
                    Some(age) => format!("the last passed restore drill was {} ago", age_text(age)),
                    None => "no restore drill has passed".to_string(),
                };
                writeln!(err, "cairn: unproven: {name}: {why}")?;
            }
        }
        if self.limits() && series.is_empty() {
            writeln!(err, "cairn: stale: no snapshot at all")?;
        }
        Ok(())
    }

    /// The table on stdout, and a line of counts.
    fn table(&self, series: &[&Series]) -> std::io::Result<()> {
        let any_empty = series.iter().any(|s| self.empty(s));
        let with_status = self.limits() || any_empty;
        let rows: Vec<Vec<String>> = series
            .iter()
            .map(|s| {
                let mut row = vec![
                    s.host.to_string(),
                    s.paths.join(","),
                    s.tags.join(","),
                    s.count.to_string(),
                    s.newest.id.short(),
                    s.newest.time.local_display(),
                    age_text(self.age(s)),
                    size(s.newest.summary.total_bytes_processed),
                    drill_cell(s.drill),
                ];
                if with_status {
                    row.push(
                        match (self.empty(s), self.stale(s), self.unproven(s)) {
                            (true, _, _) => "EMPTY",
                            (_, true, _) => "STALE",
                            (_, _, true) => "UNPROVEN",
                            _ => "ok",
                        }
                        .to_string(),
                    );
                }
                row
            })
            .collect();
        let mut header = vec![
            "Host",
            "Paths",
            "Tags",
            "Snapshots",
            "Latest",
            "Time",
            "Age",
            "Size",
            "Last drill",
        ];
        if with_status {
            header.push("Status");
        }
        let mut out = std::io::stdout().lock();
        write!(out, "{}", table(&header, &rows))?;
        if series.is_empty() {
            return writeln!(out, "no snapshots");
        }
        let count = |f: &dyn Fn(&Series) -> bool| series.iter().filter(|s| f(s)).count();
        let mut line = format!("{} series", series.len());
        if let Some(max) = self.args.max_age {
            let n = count(&|s| self.stale(s));
            line.push_str(&format!(", {n} older than {}", age_text(max as i64)));
        }
        if any_empty {
            let n = count(&|s| self.empty(s));
            line.push_str(&format!(", {n} whose newest snapshot is empty"));
        }
        if let Some(max) = self.args.max_drill_age {
            let n = count(&|s| self.unproven(s));
            line.push_str(&format!(
                ", {n} without a passing drill within {}",
                age_text(max as i64)
            ));
        }
        writeln!(out, "{line}")
    }
}

/// Escapes a Prometheus label value.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The status in the Prometheus text exposition format, one sample per
/// series and metric.
fn prometheus_text<'a>(
    series: impl Iterator<Item = &'a Series<'a>> + Clone,
    now: i64,
    stale: &dyn Fn(&Series) -> bool,
    unproven: &dyn Fn(&Series) -> bool,
) -> String {
    type Metric<'m> = (&'m str, &'m str, Box<dyn Fn(&Series) -> Option<f64> + 'm>);
    let secs = |t: &SnapshotTime| t.timestamp().as_second() as f64;
    let metrics: Vec<Metric> = vec![
        (
            "cairn_series_snapshots",
            "Snapshots in the series.",
            Box::new(|s: &Series| Some(s.count as f64)),
        ),
        (
            "cairn_series_last_snapshot_timestamp_seconds",
            "Time of the newest snapshot.",
            Box::new(move |s: &Series| Some(secs(&s.newest.time))),
        ),
        (
            "cairn_series_last_snapshot_size_bytes",
            "Bytes the newest snapshot restores.",
            Box::new(|s: &Series| Some(s.newest.summary.total_bytes_processed as f64)),
        ),
        (
            "cairn_series_last_snapshot_added_bytes",
            "Bytes the newest backup stored (compressed, encrypted).",
            Box::new(|s: &Series| Some(s.newest.summary.data_added_packed as f64)),
        ),
        (
            "cairn_series_last_backup_duration_seconds",
            "How long the newest backup took.",
            Box::new(|s: &Series| {
                let (a, b) = (s.newest.summary.backup_start?, s.newest.summary.backup_end?);
                Some(
                    (b.timestamp().as_millisecond() - a.timestamp().as_millisecond()) as f64
                        / 1000.0,
                )
            }),
        ),
        (
            "cairn_series_last_drill_timestamp_seconds",
            "Time of the newest restore drill.",
            Box::new(move |s: &Series| s.drill.map(|d| secs(&d.time))),
        ),
        (
            "cairn_series_last_drill_success",
            "Whether the newest restore drill passed.",
            Box::new(|s: &Series| s.drill.map(|d| if d.ok { 1.0 } else { 0.0 })),
        ),
        (
            "cairn_series_last_drill_duration_seconds",
            "Recovery time measured by the newest restore drill.",
            Box::new(|s: &Series| s.drill.map(|d| d.seconds)),
        ),
        (
            "cairn_series_last_passed_drill_timestamp_seconds",
            "Time of the newest restore drill that passed.",
            Box::new(move |s: &Series| s.passed.map(|d| secs(&d.time))),
        ),
        (
            "cairn_series_ok",
            "1 unless the series is older than --max-age, its newest snapshot is empty, or it is unproven beyond --max-drill-age.",
            Box::new(|s: &Series| Some(if stale(s) || unproven(s) { 0.0 } else { 1.0 })),
        ),
    ];
    let mut out = String::new();
    for (name, help, value) in &metrics {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
        for s in series.clone() {
            if let Some(v) = value(s) {
                out.push_str(&format!(
                    "{name}{{host=\"{}\",paths=\"{}\",tags=\"{}\"}} {v}\n",
                    label(s.host),
                    label(&s.paths.join(",")),
                    label(&s.tags.join(","))
                ));
            }
        }
    }
    out.push_str(&format!(
        "# HELP cairn_status_success Whether cairn status could read the repository.\n\
         # TYPE cairn_status_success gauge\n\
         cairn_status_success 1\n\
         # HELP cairn_status_timestamp_seconds When cairn status ran.\n\
         # TYPE cairn_status_timestamp_seconds gauge\n\
         cairn_status_timestamp_seconds {now}\n"
    ));
    out
}

/// Replaces `file` with `data` atomically: a reader (node_exporter) sees
/// the old file or the new one, never half of it.
pub fn write_atomically(file: &Path, data: &[u8]) -> anyhow::Result<()> {
    let dir = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let io = |what: &str, e: std::io::Error| {
        anyhow::anyhow!(cairn_core::Error::io(
            format!("{what} {}", file.display()),
            e
        ))
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".cairn-")
        .tempfile_in(dir)
        .map_err(|e| io("writing", e))?;
    tmp.write_all(data).map_err(|e| io("writing", e))?;
    // Readable by node_exporter, which usually runs as another user.
    let _ = tmp
        .as_file()
        .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644));
    tmp.persist(file).map_err(|e| io("replacing", e.error))?;
    Ok(())
}
