//! Human output: sizes, tables, progress bars (terminal only).

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// A snapshot as `--json` shows it: its stored JSON plus `id`, `short_id`
/// and `host` (restic's `hostname`, under the name the issue asked for).
pub fn snapshot_json(s: &cairn_core::format::snapshot::Snapshot) -> serde_json::Value {
    let mut v = serde_json::to_value(s).unwrap_or(serde_json::Value::Null);
    if let serde_json::Value::Object(map) = &mut v {
        map.insert("id".into(), s.id.to_hex().into());
        map.insert("short_id".into(), s.id.short().into());
        map.insert("host".into(), s.hostname.clone().into());
        if s.future_dated {
            map.insert("future_dated".into(), true.into());
        }
    }
    v
}

/// An entry as `ls`/`find --json` show it: its path and its stored
/// fields (restic's `ls --json` names where they overlap).
pub fn node_json(e: &cairn_core::ops::browse::Entry) -> serde_json::Value {
    let mut v = serde_json::to_value(&e.node).unwrap_or(serde_json::Value::Null);
    if let serde_json::Value::Object(map) = &mut v {
        map.insert("path".into(), e.path.clone().into());
        map.insert("mtime".into(), mtime_rfc3339(e.node.mtime).into());
        map.remove("mtime_nsec");
        map.remove("content");
        map.remove("content_lists");
    }
    v
}

/// `-rw-r--r--`, `drwxr-xr-x`, `lrwxrwxrwx`.
pub fn mode_string(kind: cairn_core::format::tree::NodeKind, mode: u32) -> String {
    use cairn_core::format::tree::NodeKind;
    let mut s = String::with_capacity(10);
    s.push(match kind {
        NodeKind::File => '-',
        NodeKind::Dir => 'd',
        NodeKind::Symlink => 'l',
        NodeKind::Fifo => 'p',
        NodeKind::Socket => 's',
        NodeKind::Chardev => 'c',
        NodeKind::Blockdev => 'b',
    });
    for (i, c) in "rwxrwxrwx".chars().enumerate() {
        s.push(if mode & (0o400 >> i) != 0 { c } else { '-' });
    }
    s
}

/// Unix time `seconds` in local time, formatted (the number itself if out
/// of range).
fn local_time(seconds: i64, format: &str) -> String {
    match jiff::Timestamp::from_second(seconds) {
        Ok(ts) => ts
            .to_zoned_datetime(cairn_core::time::system_zone())
            .strftime(format)
            .to_string(),
        Err(_) => seconds.to_string(),
    }
}

/// A file's modification time in local time, `2026-11-27 01:00:00`.
pub fn mtime_display(seconds: i64) -> String {
    local_time(seconds, "%Y-%m-%d %H:%M:%S")
}

fn mtime_rfc3339(seconds: i64) -> String {
    local_time(seconds, "%Y-%m-%dT%H:%M:%S%:z")
}

/// A drill record as `--json` shows it.
pub fn drill_json(d: &cairn_core::repo::drill_record::DrillRecord) -> serde_json::Value {
    serde_json::json!({
        "id": d.id.to_hex(),
        "snapshot": d.snapshot.to_hex(),
        "time": d.time.to_rfc3339(),
        "ok": d.ok,
        "seconds": d.seconds,
        "error": d.error,
        "dump_check": d.dump_check,
    })
}

/// A drill in a table: `2026-11-27 03:10 ok 12.3s`, `... FAILED`.
pub fn drill_cell(d: Option<&cairn_core::repo::drill_record::DrillRecord>) -> String {
    match d {
        None => "-".into(),
        Some(d) => {
            let when: String = d.time.local_display().chars().take(16).collect();
            if d.ok {
                format!("{when} ok {:.1}s", d.seconds)
            } else {
                format!("{when} FAILED")
            }
        }
    }
}

/// `12.3 MiB`.
pub fn size(bytes: u64) -> String {
    bytesize::ByteSize::b(bytes).display().iec().to_string()
}

/// Longest cell a table shows; longer ones end in `…` (`--json` has them
/// whole).
const MAX_CELL_CHARS: usize = 200;

/// A cell as a table shows it: control characters escaped (a tag stored
/// by a hostile writer must not drive the terminal) and at most
/// [`MAX_CELL_CHARS`] characters.
fn cell_text(cell: &str) -> String {
    let mut out = String::new();
    for (n, c) in cell.chars().enumerate() {
        if n == MAX_CELL_CHARS {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// A plain text table with left-aligned columns.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| row.iter().map(|c| cell_text(c)).collect())
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            s.push_str(c);
            if i + 1 < cells.len() {
                // Padding by hand: `format!`'s width is limited to u16.
                let w = widths.get(i).copied().unwrap_or(0);
                let pad = w.saturating_sub(c.chars().count()) + 2;
                s.extend(std::iter::repeat_n(' ', pad));
            }
        }
        s.trim_end().to_string()
    };
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    let mut out = line(&header);
    out.push('\n');
    out.push_str(&"-".repeat(widths.iter().sum::<usize>() + 2 * widths.len().saturating_sub(1)));
    out.push('\n');
    for row in &rows {
        out.push_str(&line(row));
        out.push('\n');
    }
    out
}

/// A byte-counting progress spinner on stderr (hidden when stderr is not a
/// terminal or output is quiet) that also prints warnings above itself.
pub struct Bar(pub ProgressBar);

impl Bar {
    fn warn(&self, message: &str) {
        self.0.suspend(|| eprintln!("cairn: warning: {message}"));
    }
}

impl cairn_core::ops::backup::BackupProgress for Bar {
    fn bytes_read(&self, n: u64) {
        self.0.inc(n);
    }
    fn warning(&self, message: &str) {
        self.warn(message);
    }
}

impl cairn_core::repo::restorer::RestoreProgress for Bar {
    fn bytes_written(&self, n: u64) {
        self.0.inc(n);
    }
    fn warning(&self, message: &str) {
        self.warn(message);
    }
}

/// A [`Bar`] labelled with `verb` ("read", "restored").
pub fn byte_progress(quiet: bool, verb: &str) -> Bar {
    if quiet || !std::io::stderr().is_terminal() {
        return Bar(ProgressBar::hidden());
    }
    let pb = ProgressBar::new_spinner();
    let template = format!("{{spinner}} {verb} {{bytes}} ({{bytes_per_sec}}) {{elapsed}}");
    if let Ok(style) = ProgressStyle::with_template(&template) {
        pb.set_style(style);
    }
    pb.enable_steady_tick(Duration::from_millis(200));
    Bar(pb)
}

/// A [`Bar`] towards a known `total` of bytes (restore, dump, drill, copy):
/// percent done, rate and time left.
pub fn byte_progress_to(quiet: bool, verb: &str, total: u64) -> Bar {
    if quiet || !std::io::stderr().is_terminal() {
        return Bar(ProgressBar::hidden());
    }
    let pb = ProgressBar::new(total);
    let template = format!(
        "{verb} [{{bar:30}}] {{percent:>3}}% {{bytes}}/{{total_bytes}} ({{bytes_per_sec}}, {{eta}} left)"
    );
    if let Ok(style) = ProgressStyle::with_template(&template) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.enable_steady_tick(Duration::from_millis(200));
    Bar(pb)
}

impl cairn_core::ops::copy::CopyProgress for Bar {
    fn advance(&self, n: u64) {
        self.0.inc(n);
    }
    fn reached(&self, position: u64) {
        if position > self.0.position() {
            self.0.set_position(position);
        }
    }
}

/// A progress bar over the phases of a long command (`check`), on stderr
/// when it is a terminal.
pub struct PhaseBar(ProgressBar);

impl PhaseBar {
    pub fn new(quiet: bool) -> Self {
        if quiet || !std::io::stderr().is_terminal() {
            return PhaseBar(ProgressBar::hidden());
        }
        let pb = ProgressBar::new(0);
        pb.enable_steady_tick(Duration::from_millis(200));
        PhaseBar(pb)
    }

    pub fn finish(&self) {
        self.0.finish_and_clear();
    }
}

impl cairn_core::ops::check::CheckProgress for PhaseBar {
    fn phase(&self, name: &str, total: u64, bytes: bool) {
        let template = if bytes {
            format!("{name:>10} [{{bar:30}}] {{bytes}}/{{total_bytes}} ({{bytes_per_sec}}, {{eta}} left)")
        } else {
            format!("{name:>10} [{{bar:30}}] {{pos}}/{{len}} {{elapsed}}")
        };
        if let Ok(style) = ProgressStyle::with_template(&template) {
            self.0.set_style(style.progress_chars("=> "));
        }
        self.0.set_length(total);
        self.0.set_position(0);
    }

    fn advance(&self, n: u64) {
        self.0.inc(n);
    }
}

/// "host [db1], paths [/shop.sql]": what a group has in common.
pub fn group_label(
    key: &cairn_core::ops::forget::GroupKey,
    by: cairn_core::ops::forget::GroupBy,
) -> String {
    let mut what = Vec::new();
    if by.host {
        what.push(format!("host [{}]", key.hostname));
    }
    if by.tags {
        what.push(format!("tags [{}]", key.tags.join(", ")));
    }
    if by.paths {
        what.push(format!("paths [{}]", key.paths.join(", ")));
    }
    what.join(", ")
}
