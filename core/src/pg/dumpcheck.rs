//! What a backed-up dump stream is, and whether it is whole.
//!
//! A dump command can exit 0 and still have written half a dump (a pipeline
//! whose last command succeeded, `pg_dump | cairn backup -` where cairn
//! never sees pg_dump's status). [`Inspector`] watches the stream as it is
//! read, recognises the format from its first bytes, and before the
//! snapshot is committed checks that the dump is complete:
//!
//! - plain `pg_dump` / `pg_dumpall` SQL must end with PostgreSQL's
//!   completion line (`-- PostgreSQL database dump complete`), followed at
//!   most by blank lines, `--` and `\unrestrict`;
//! - custom and tar archives are fed, as they are read, to
//!   `pg_restore -f /dev/null`, which reads the table of contents and every
//!   data block and fails on a truncated or damaged archive; a tar archive
//!   must also end with tar's end-of-archive blocks (pg_restore does not
//!   notice a tar archive cut short);
//! - `mysqldump` output must end with its `-- Dump completed` line.
//!
//! It also records what was dumped (format, database, server and pg_dump
//! versions) and notices input that is already compressed, which defeats
//! deduplication.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};

use crate::error::{Error, ErrorKind, Result};
use crate::format::snapshot::DumpInfo;

/// Bytes kept from the start of the stream (format, header, and the table
/// of contents of a custom archive for `pg_restore --list`).
const HEAD_MAX: usize = 1 << 20;
/// Bytes kept from the end of the stream (completion lines).
const TAIL_MAX: usize = 64 * 1024;

/// Variables that hold repository passwords or say where they are: never
/// handed to a dump command or a PostgreSQL tool that cairn starts.
const SECRET_VARS: [&str; 8] = [
    "CAIRN_PASSWORD",
    "CAIRN_PASSWORD2",
    "CAIRN_NEW_PASSWORD",
    "CAIRN_PASSWORD_FILE",
    "CAIRN_PASSWORD_FILE2",
    "CAIRN_NEW_PASSWORD_FILE",
    "CAIRN_PASSWORD_COMMAND",
    "CAIRN_PASSWORD_COMMAND2",
];

/// Removes the password variables of every repository but the one being
/// worked on from a child's environment: for the private PostgreSQL of a
/// base backup drill, whose `restore_command` runs `cairn wal-fetch` on
/// that repository.
pub fn without_secrets_but_cairn(cmd: &mut Command) -> &mut Command {
    for v in SECRET_VARS {
        if !matches!(
            v,
            "CAIRN_PASSWORD" | "CAIRN_PASSWORD_FILE" | "CAIRN_PASSWORD_COMMAND"
        ) {
            cmd.env_remove(v);
        }
    }
    cmd
}

/// Removes cairn's password variables from the environment of a child
/// process (`cairn run` hands the password to its steps in one).
pub fn without_secrets(cmd: &mut Command) -> &mut Command {
    for v in SECRET_VARS {
        cmd.env_remove(v);
    }
    cmd
}

/// The formats told apart by their first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    PgPlain,
    PgDumpall,
    PgCustom,
    PgTar,
    /// `pg_basebackup -Ft -D -`: a tar of the data directory whose first
    /// member is `backup_label`.
    PgBaseBackup,
    MysqlDump,
    /// The whole stream is compressed (gzip, zstd...).
    Compressed(&'static str),
    /// Anything else: not checked.
    Unknown,
}

/// Recognises a stream from its first bytes (at least 512 if the stream is
/// that long).
fn detect(head: &[u8]) -> Format {
    const MAGICS: [(&[u8], &str); 5] = [
        (&[0x1f, 0x8b], "gzip"),
        (&[0x28, 0xb5, 0x2f, 0xfd], "zstd"),
        (&[0xfd, b'7', b'z', b'X', b'Z', 0], "xz"),
        (b"BZh", "bzip2"),
        (&[0x04, 0x22, 0x4d, 0x18], "lz4"),
    ];
    if head.starts_with(b"PGDMP") {
        return Format::PgCustom;
    }
    // A pg_dump tar archive: a ustar header whose first member is toc.dat.
    if head.len() >= 512 && &head[257..262] == b"ustar" && head.starts_with(b"toc.dat\0") {
        return Format::PgTar;
    }
    if head.len() >= 512 && &head[257..262] == b"ustar" && head.starts_with(b"backup_label\0") {
        return Format::PgBaseBackup;
    }
    if let Some((_, name)) = MAGICS.iter().find(|(m, _)| head.starts_with(m)) {
        return Format::Compressed(name);
    }
    let text = String::from_utf8_lossy(&head[..head.len().min(4096)]);
    let first_lines: Vec<&str> = text.lines().take(12).collect();
    let has = |needle: &str| first_lines.iter().any(|l| l.trim_end() == needle);
    if has("-- PostgreSQL database dump") {
        Format::PgPlain
    } else if has("-- PostgreSQL database cluster dump") {
        Format::PgDumpall
    } else if first_lines
        .iter()
        .any(|l| l.starts_with("-- MySQL dump") || l.starts_with("-- MariaDB dump"))
    {
        Format::MysqlDump
    } else {
        Format::Unknown
    }
}

fn format_name(f: Format) -> Option<String> {
    Some(
        match f {
            Format::PgPlain => "pg_dump-plain",
            Format::PgDumpall => "pg_dumpall",
            Format::PgCustom => "pg_dump-custom",
            Format::PgTar => "pg_dump-tar",
            Format::PgBaseBackup => "pg_basebackup",
            Format::MysqlDump => "mysqldump",
            Format::Compressed(name) => name,
            Format::Unknown => return None,
        }
        .to_string(),
    )
}

/// The value of a `-- Label: value` header line of a plain dump.
fn header_value(text: &str, label: &str) -> Option<String> {
    text.lines()
        .take(40)
        .find_map(|l| l.strip_prefix(label))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// Whether plain SQL ends with `complete_line`, followed only by blank
/// lines, `--` and `\unrestrict KEY` (PostgreSQL 17.6, 16.10, 15.14 and
/// later end their dumps with it).
fn ends_with_completion(tail: &[u8], complete_line: &str) -> bool {
    let text = String::from_utf8_lossy(tail);
    let mut lines = text.lines().rev().skip_while(|l| {
        let l = l.trim_end();
        l.is_empty() || l == "--" || l.starts_with("\\unrestrict ")
    });
    lines.next().map(str::trim_end) == Some(complete_line)
}

/// Whether a tar stream ends with the end-of-archive marker: its length is
/// a multiple of 512 and its last 1024 bytes are zero.
fn tar_is_whole(tail: &[u8], total: u64) -> bool {
    total.is_multiple_of(512)
        && tail.len() >= 1024
        && tail[tail.len() - 1024..].iter().all(|b| *b == 0)
}

/// A WAL location `X/Y` (hex) as a number.
pub fn parse_lsn(s: &str) -> Result<u64> {
    let bad = || Error::invalid(format!("{s:?} is not a WAL location (like 0/3000060)"));
    let (hi, lo) = s.split_once('/').ok_or_else(bad)?;
    let hi = u64::from_str_radix(hi, 16).map_err(|_| bad())?;
    let lo = u64::from_str_radix(lo, 16).map_err(|_| bad())?;
    if hi > u64::from(u32::MAX) || lo > u64::from(u32::MAX) {
        return Err(bad());
    }
    Ok(hi << 32 | lo)
}

/// Finds the first bytes of one member of a tar stream as it goes by,
/// without buffering the stream: it reads each 512-byte header, and skips
/// each member's data by its size.
#[derive(Debug)]
struct TarScan {
    names: &'static [&'static str],
    want: usize,
    /// Stream position of the next byte fed.
    offset: u64,
    /// Where the next header starts.
    next_header: u64,
    header: Vec<u8>,
    /// Where the wanted member's data starts.
    capture_at: Option<u64>,
    found: Vec<u8>,
    done: bool,
}

impl TarScan {
    fn new(names: &'static [&'static str], want: usize) -> Self {
        TarScan {
            names,
            want,
            offset: 0,
            next_header: 0,
            header: Vec::with_capacity(512),
            capture_at: None,
            found: Vec::new(),
            done: false,
        }
    }

    fn feed(&mut self, data: &[u8]) {
        let mut i = 0usize;
        while i < data.len() && !self.done {
            let pos = self.offset + i as u64;
            let left = data.len() - i;
            if self.capture_at.is_some_and(|at| pos >= at) {
                let take = (self.want - self.found.len()).min(left);
                self.found.extend_from_slice(&data[i..i + take]);
                i += take;
                self.done = self.found.len() >= self.want;
                continue;
            }
            let until = self
                .capture_at
                .filter(|at| *at < self.next_header)
                .unwrap_or(self.next_header);
            if pos < until {
                i += usize::try_from(until - pos).unwrap_or(usize::MAX).min(left);
                continue;
            }
            let take = (512 - self.header.len()).min(left);
            self.header.extend_from_slice(&data[i..i + take]);
            i += take;
            if self.header.len() == 512 {
                self.header_done();
            }
        }
        self.offset += data.len() as u64;
    }

    fn header_done(&mut self) {
        let h = std::mem::take(&mut self.header);
        let data_start = self.next_header + 512;
        if h.iter().all(|b| *b == 0) {
            self.done = true; // the end of the archive
            return;
        }
        let field = |r: std::ops::Range<usize>| {
            let f = &h[r];
            let end = f.iter().position(|b| *b == 0).unwrap_or(f.len());
            String::from_utf8_lossy(&f[..end]).into_owned()
        };
        let (name, prefix) = (field(0..100), field(345..500));
        let full = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let size = tar_size(&h[124..136]);
        let Some(size) = size else {
            self.done = true; // not a tar header: stop looking
            return;
        };
        if self.names.contains(&full.as_str()) && matches!(h[156], b'0' | 0) {
            self.capture_at = Some(data_start);
        }
        self.next_header = data_start.saturating_add(size.div_ceil(512).saturating_mul(512));
    }
}

/// A tar header's size field: octal digits (space or NUL ended), or
/// base-256 when its first byte has the high bit set.
fn tar_size(f: &[u8]) -> Option<u64> {
    if f.first().is_some_and(|b| b & 0x80 != 0) {
        let mut n: u64 = u64::from(f[0] & 0x7f);
        for b in &f[1..] {
            n = n.checked_mul(256)?.checked_add(u64::from(*b))?;
        }
        return Some(n);
    }
    let digits: Vec<u8> = f
        .iter()
        .copied()
        .skip_while(|b| *b == b' ')
        .take_while(|b| (b'0'..=b'7').contains(b))
        .collect();
    if digits.is_empty() {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(&digits).ok()?, 8).ok()
}

/// The largest `End-LSN` of the WAL ranges of the `backup_manifest` that ends
/// a base backup's tar, from the stream's tail: the ranges come last in
/// the manifest, just before its checksum.
fn manifest_end_lsn(tail: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Range {
        #[serde(rename = "End-LSN")]
        end: String,
    }
    let text = String::from_utf8_lossy(tail);
    let at = text.rfind("\"WAL-Ranges\"")?;
    let rest = &text[at..];
    let open = rest.find('[')?;
    let close = rest.find(']')?;
    let ranges: Vec<Range> = serde_json::from_str(rest.get(open..=close)?).ok()?;
    // PostgreSQL lists the newest timeline first; the backup ends where the
    // furthest range does.
    ranges
        .into_iter()
        .filter_map(|r| parse_lsn(&r.end).ok().map(|n| (n, r.end)))
        .max_by_key(|(n, _)| *n)
        .map(|(_, end)| end)
}

/// The text of the first tar member (`backup_label`), from the head.
fn backup_label(head: &[u8]) -> Option<String> {
    let size_field = std::str::from_utf8(head.get(124..136)?).ok()?;
    let size =
        usize::from_str_radix(size_field.trim_matches(|c: char| c == '\0' || c == ' '), 8).ok()?;
    let data = head.get(512..512 + size.min(64 * 1024))?;
    Some(String::from_utf8_lossy(data).into_owned())
}

/// Finds a PostgreSQL client tool: on PATH, else the newest
/// `/usr/lib/postgresql/<version>/bin` (Debian keeps them there).
pub fn find_pg_tool(tool: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(tool);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let p = e.path().join("bin").join(tool);
            p.is_file().then_some((v, p))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, p)| p)
}

/// How long pg_restore may take after the end of the stream (it has then
/// read all but a pipe's worth). pg_restore 15 spins forever on some
/// truncated tar archives read from a pipe; a hung check must not hang the
/// backup.
const RESTORE_GRACE: std::time::Duration = std::time::Duration::from_secs(120);

/// `pg_restore -f /dev/null -`, fed the archive as it is read.
struct RestoreCheck {
    child: Child,
    stdin: Option<ChildStdin>,
    /// pg_restore stopped reading (it failed, or it is done): feed no more.
    closed: bool,
    /// Its stderr, collected on a thread (so that it can never block it).
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl RestoreCheck {
    fn start(pg_restore: &Path) -> Result<Self> {
        let mut child = without_secrets(&mut Command::new(pg_restore))
            .args(["--file=/dev/null", "--exit-on-error"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                Error::new(
                    ErrorKind::DumpInvalid,
                    format!("cannot run {} to validate the dump", pg_restore.display()),
                )
                .with_source(e)
            })?;
        let stdin = child.stdin.take();
        let stderr = child.stderr.take().map(|mut e| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                let _ = e.read_to_end(&mut bytes);
                bytes.truncate(64 * 1024);
                String::from_utf8_lossy(&bytes).into_owned()
            })
        });
        Ok(RestoreCheck {
            child,
            stdin,
            closed: false,
            stderr,
        })
    }

    fn feed(&mut self, data: &[u8]) {
        if self.closed {
            return;
        }
        if let Some(stdin) = self.stdin.as_mut() {
            if stdin.write_all(data).is_err() {
                // Broken pipe: pg_restore exited; its status says why.
                self.closed = true;
                self.stdin = None;
            }
        }
    }

    /// Stops pg_restore: the stream is already known to be bad.
    fn abandon(self) {
        drop(self); // see Drop
    }

    /// Waits for pg_restore (at most [`RESTORE_GRACE`]); its first error
    /// line if it failed.
    fn finish(mut self) -> Result<Option<String>> {
        drop(self.stdin.take());
        let deadline = std::time::Instant::now() + RESTORE_GRACE;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Ok(None) => {
                    return Ok(Some(format!(
                        "pg_restore did not finish reading it within {} s of its end",
                        RESTORE_GRACE.as_secs()
                    )));
                }
                Err(e) => return Err(Error::io("waiting for pg_restore", e)),
            }
        };
        let err = self
            .stderr
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default();
        if status.success() {
            return Ok(None);
        }
        let line = first_line(&err);
        Ok(Some(format!(
            "pg_restore cannot read it ({status}): {line}"
        )))
    }
}

impl Drop for RestoreCheck {
    /// A check abandoned midway (the backup failed) must not leave
    /// pg_restore running.
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What [`Inspector::finish`] found.
#[derive(Debug, Clone, Default)]
pub struct Inspection {
    /// What the dump is; `None` for a stream of no known format.
    pub info: Option<DumpInfo>,
    /// Advice for the user (compressed input).
    pub warnings: Vec<String>,
}

/// Watches a stream as it is read; see the module documentation.
pub struct Inspector {
    validate: bool,
    /// Whether pg_restore may be run (not when fuzzing).
    tools: bool,
    head: Vec<u8>,
    tail: Vec<u8>,
    total: u64,
    format: Option<Format>,
    restore: Option<RestoreCheck>,
    /// A base backup's `global/pg_control`, found as the tar goes by.
    pg_control: Option<TarScan>,
    /// Why validation could not start (pg_restore missing).
    start_error: Option<Error>,
}

impl Inspector {
    /// An inspector; `validate` false only records what the dump is.
    pub fn new(validate: bool) -> Self {
        Inspector {
            validate,
            tools: true,
            head: Vec::new(),
            tail: Vec::new(),
            total: 0,
            format: None,
            restore: None,
            start_error: None,
            pg_control: None,
        }
    }

    /// An inspector that never runs pg_restore: archives are recognised
    /// but not read (for fuzzing the parsing of untrusted streams).
    pub fn without_tools() -> Self {
        Inspector {
            tools: false,
            ..Inspector::new(true)
        }
    }

    /// Bytes of the stream taken so far.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Takes the next bytes of the stream.
    pub fn feed(&mut self, data: &[u8]) {
        self.total += data.len() as u64;
        let mut in_head = 0;
        if self.head.len() < HEAD_MAX {
            in_head = (HEAD_MAX - self.head.len()).min(data.len());
            self.head.extend_from_slice(&data[..in_head]);
        }
        if data.len() >= TAIL_MAX {
            self.tail.clear();
            self.tail.extend_from_slice(&data[data.len() - TAIL_MAX..]);
        } else {
            let keep = TAIL_MAX - data.len();
            if self.tail.len() > keep {
                self.tail.drain(..self.tail.len() - keep);
            }
            self.tail.extend_from_slice(data);
        }
        if self.format.is_none() && self.head.len() >= 512 {
            self.recognise();
            // What arrived before pg_restore started, then the rest.
            if let Some(r) = self.restore.as_mut() {
                r.feed(&self.head);
                r.feed(&data[in_head..]);
            }
            if let Some(t) = self.pg_control.as_mut() {
                t.feed(&self.head);
                t.feed(&data[in_head..]);
            }
        } else {
            if let Some(r) = self.restore.as_mut() {
                r.feed(data);
            }
            if let Some(t) = self.pg_control.as_mut() {
                t.feed(data);
            }
        }
    }

    fn recognise(&mut self) {
        let format = detect(&self.head);
        self.format = Some(format);
        if format == Format::PgBaseBackup {
            self.pg_control = Some(TarScan::new(
                &["global/pg_control", "./global/pg_control"],
                8,
            ));
        }
        if self.validate && self.tools && matches!(format, Format::PgCustom | Format::PgTar) {
            match find_pg_tool("pg_restore") {
                Some(p) => match RestoreCheck::start(&p) {
                    Ok(r) => self.restore = Some(r),
                    Err(e) => self.start_error = Some(e),
                },
                None => self.start_error = Some(no_pg_restore()),
            }
        }
    }

    /// At the end of the stream: what it is, and an error if it is not a
    /// complete dump (validation on). `name` is the file name stored.
    pub fn finish(mut self, name: &str) -> Result<Inspection> {
        if self.format.is_none() {
            self.recognise();
            if let Some(r) = self.restore.as_mut() {
                r.feed(&self.head);
            }
        }
        let format = self.format.unwrap_or(Format::Unknown);
        if let Some(e) = self.start_error.take() {
            return Err(e);
        }
        // A tar archive cut short is known bad without pg_restore (which
        // may never finish reading it).
        let tar_cut = matches!(format, Format::PgTar | Format::PgBaseBackup)
            && !tar_is_whole(&self.tail, self.total);
        let restore_failure = match self.restore.take() {
            Some(r) if tar_cut => {
                r.abandon();
                None
            }
            Some(r) => r.finish()?,
            None => None,
        };
        if self.validate {
            if let Some(why) = self.incomplete(format, tar_cut, restore_failure) {
                return Err(Error::new(
                    ErrorKind::DumpInvalid,
                    format!("{name} is not a complete dump: {why}"),
                ));
            }
        }
        let Some(format_name) = format_name(format) else {
            return Ok(Inspection::default());
        };
        let validated = self.validate && !matches!(format, Format::Compressed(_));
        let info = DumpInfo {
            format: format_name,
            validated,
            ..DumpInfo::default()
        };
        Ok(self.describe(format, name, info))
    }

    /// Why the stream, of `format`, is not a whole dump, if it is not.
    /// `tar_cut`: a tar archive without its end; `restore_failure`: what
    /// `pg_restore --list` said of a custom or tar archive.
    fn incomplete(
        &self,
        format: Format,
        tar_cut: bool,
        restore_failure: Option<String>,
    ) -> Option<String> {
        if self.total == 0 && format == Format::Unknown {
            // Nothing at all: the caller warns about an empty stream.
            return None;
        }
        let missing_end =
            |line: &str| Some(format!("it does not end with \"{line}\" (cut short?)"));
        match format {
            Format::PgPlain
                if !ends_with_completion(&self.tail, "-- PostgreSQL database dump complete") =>
            {
                missing_end("-- PostgreSQL database dump complete")
            }
            Format::PgDumpall
                if !ends_with_completion(
                    &self.tail,
                    "-- PostgreSQL database cluster dump complete",
                ) =>
            {
                missing_end("-- PostgreSQL database cluster dump complete")
            }
            Format::MysqlDump
                if !String::from_utf8_lossy(&self.tail)
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .is_some_and(|l| l.starts_with("-- Dump completed")) =>
            {
                missing_end("-- Dump completed")
            }
            Format::PgTar | Format::PgBaseBackup if tar_cut => {
                Some("the tar archive has no end-of-archive blocks (cut short?)".into())
            }
            Format::PgCustom | Format::PgTar => restore_failure,
            _ => None,
        }
    }

    /// What the dump's headers say of it (versions, database, WAL
    /// positions), and advice about it, added to `info`.
    fn describe(&self, format: Format, name: &str, mut info: DumpInfo) -> Inspection {
        let mut warnings = Vec::new();
        let head_text = || String::from_utf8_lossy(&self.head[..self.head.len().min(8192)]);
        match format {
            Format::PgPlain | Format::PgDumpall => {
                let text = head_text();
                info.server_version = header_value(&text, "-- Dumped from database version");
                info.dump_version = header_value(&text, "-- Dumped by pg_dump version")
                    .or_else(|| header_value(&text, "-- Dumped by pg_dumpall version"));
            }
            Format::MysqlDump => {
                let text = head_text();
                info.server_version = header_value(&text, "-- Server version");
                info.database = text
                    .lines()
                    .take(10)
                    .find_map(|l| l.split("Database: ").nth(1))
                    .map(|d| d.trim().to_string())
                    .filter(|d| !d.is_empty());
            }
            Format::PgCustom | Format::PgTar => {
                if let Some(list) = self.tools.then(|| list_header(&self.head)).flatten() {
                    info = info_from_list(&list, info);
                }
                warnings.extend(compression_warning(name, &info));
            }
            Format::Compressed(c) => warnings.push(format!(
                "{name} is {c}-compressed: compression defeats deduplication, so each \
                 night is stored almost whole; back up the dump uncompressed (drop the \
                 compressor, or use `pg_dump -Z0`): cairn compresses with zstd itself"
            )),
            Format::PgBaseBackup => self.base_backup_info(&mut info),
            Format::Unknown => {}
        }
        Inspection {
            info: Some(info),
            warnings,
        }
    }

    /// The WAL positions, timeline, start time and system identifier of a
    /// base backup, from its `backup_label`, `pg_control` and manifest.
    fn base_backup_info(&self, info: &mut DumpInfo) {
        let label = backup_label(&self.head).unwrap_or_default();
        let start = header_value(&label, "START WAL LOCATION:");
        // "0/2000028 (file 000000010000000000000002)"
        info.start_lsn = start
            .as_deref()
            .and_then(|s| s.split_whitespace().next())
            .map(str::to_string);
        info.start_wal = start
            .as_deref()
            .and_then(|s| s.split("(file ").nth(1))
            .map(|s| s.trim_end_matches(')').trim().to_string());
        info.timeline = header_value(&label, "START TIMELINE:").and_then(|t| t.parse().ok());
        info.start_time = header_value(&label, "START TIME:");
        // pg_control starts with the system identifier (u64, the server's
        // byte order: little-endian here).
        info.system_identifier = self
            .pg_control
            .as_ref()
            .and_then(|t| <[u8; 8]>::try_from(t.found.as_slice()).ok())
            .map(u64::from_le_bytes)
            .filter(|id| *id != 0)
            .map(|id| id.to_string());
        info.stop_lsn = manifest_end_lsn(&self.tail);
    }
}

/// The advice for a custom or directory-format dump compressed inside.
pub fn compression_warning(name: &str, info: &DumpInfo) -> Option<String> {
    let c = info.compression.as_ref()?;
    let flag = if info.format == "pg_dump-directory" {
        "-Fd -Z0"
    } else {
        "-Fc -Z0"
    };
    Some(format!(
        "{name} is a {c}-compressed {} dump: compression defeats deduplication, so each \
         night is stored almost whole; dump with `pg_dump {flag}` (cairn compresses with \
         zstd itself)",
        info.format
    ))
}

/// The header lines that `pg_restore --list` prints for the start of a
/// custom archive (it prints them before it reaches the end of a truncated
/// table of contents, so the first megabyte is enough).
fn list_header(head: &[u8]) -> Option<String> {
    let pg_restore = find_pg_tool("pg_restore")?;
    let mut child = without_secrets(&mut Command::new(pg_restore))
        .arg("--list")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut stdin = child.stdin.take()?;
    let head = head.to_vec();
    // Written on a thread: pg_restore may stop reading early.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&head);
    });
    let out = child.wait_with_output().ok()?;
    let _ = writer.join();
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `info` with what the header of `pg_restore --list` output says: database,
/// versions, and the compression inside the archive (`0`/`none`: none;
/// `-1`, PostgreSQL 15's default: gzip).
fn info_from_list(list: &str, info: DumpInfo) -> DumpInfo {
    DumpInfo {
        database: list_value(list, "dbname:"),
        server_version: list_value(list, "Dumped from database version:"),
        dump_version: list_value(list, "Dumped by pg_dump version:"),
        compression: list_value(list, "Compression:")
            .filter(|c| c != "0" && c != "none")
            .map(|c| if c == "-1" { "gzip".to_string() } else { c }),
        ..info
    }
}

/// Validation needs pg_restore and there is none.
fn no_pg_restore() -> Error {
    Error::new(
        ErrorKind::DumpInvalid,
        "cannot validate the dump: pg_restore is not installed \
         (install the PostgreSQL client, or back up with --no-validate)",
    )
}

/// The first non-blank line of a tool's error output.
fn first_line(text: &str) -> String {
    text.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no message")
        .trim()
        .to_string()
}

/// `;     Label value` from `pg_restore --list` output.
fn list_value(list: &str, label: &str) -> Option<String> {
    list.lines()
        .take(30)
        .find_map(|l| l.trim_start_matches(';').trim().strip_prefix(label))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// A reader that shows everything it reads to an [`Inspector`].
pub struct InspectingReader<R> {
    inner: R,
    inspector: Arc<Mutex<Inspector>>,
}

impl<R> InspectingReader<R> {
    /// Wraps `inner`; `inspector` is shared with whoever finishes it.
    pub fn new(inner: R, inspector: Arc<Mutex<Inspector>>) -> Self {
        InspectingReader { inner, inspector }
    }
}

impl<R: Read> Read for InspectingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            if let Ok(mut i) = self.inspector.lock() {
                i.feed(&buf[..n]);
            }
        }
        Ok(n)
    }
}

/// Checks a directory-format dump (`pg_dump -Fd`) before it is backed up:
/// `pg_restore -f /dev/null DIR` must read its table of contents and every
/// data file. `Ok(None)` when `dir` is not one (no `toc.dat`).
pub fn check_directory_dump(dir: &Path, validate: bool) -> Result<Option<DumpInfo>> {
    if !dir.join("toc.dat").is_file() {
        return Ok(None);
    }
    let name = dir.display();
    let pg_restore = find_pg_tool("pg_restore").ok_or_else(no_pg_restore)?;
    let run = |args: &[&str]| {
        without_secrets(&mut Command::new(&pg_restore))
            .args(args)
            .arg(dir)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Error::io(format!("running {}", pg_restore.display()), e))
    };
    let listed = run(&["--list"])?;
    let list = String::from_utf8_lossy(&listed.stdout).into_owned();
    if validate {
        let out = run(&["--file=/dev/null", "--exit-on-error"])?;
        if !listed.status.success() || !out.status.success() {
            let err = first_line(&String::from_utf8_lossy(if out.status.success() {
                &listed.stderr
            } else {
                &out.stderr
            }));
            return Err(Error::new(
                ErrorKind::DumpInvalid,
                format!("{name} is not a complete directory-format dump: pg_restore cannot read it: {err}"),
            ));
        }
    }
    Ok(Some(info_from_list(
        &list,
        DumpInfo {
            format: "pg_dump-directory".into(),
            validated: validate,
            ..DumpInfo::default()
        },
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN_HEAD: &str = "--\n-- PostgreSQL database dump\n--\n\n\\restrict abc\n\n\
        -- Dumped from database version 15.18 (Debian 15.18-0+deb12u1)\n\
        -- Dumped by pg_dump version 15.18 (Debian 15.18-0+deb12u1)\n\nSET x = 0;\n";

    fn inspect(data: &[u8], step: usize) -> Result<Inspection> {
        let mut i = Inspector::new(true);
        for piece in data.chunks(step.max(1)) {
            i.feed(piece);
        }
        i.finish("db.sql")
    }

    fn info_of(data: &[u8], step: usize) -> Result<DumpInfo> {
        inspect(data, step)?
            .info
            .ok_or_else(|| Error::invalid("not recognised as a dump"))
    }

    fn refused(data: &[u8], step: usize) -> bool {
        matches!(inspect(data, step), Err(e) if e.kind() == ErrorKind::DumpInvalid
            && e.to_string().contains("db.sql"))
    }

    fn plain(body_len: usize, ending: &str) -> Vec<u8> {
        let mut d = PLAIN_HEAD.as_bytes().to_vec();
        d.extend(std::iter::repeat_n(b'x', body_len));
        d.extend_from_slice(ending.as_bytes());
        d
    }

    #[test]
    fn plain_dumps_must_end_with_the_completion_line() -> Result<()> {
        let complete = "\n--\n-- PostgreSQL database dump complete\n--\n\n\\unrestrict abc\n\n";
        for step in [1, 7, 4096, 1 << 20] {
            let got = inspect(&plain(100_000, complete), step)?;
            assert!(got.warnings.is_empty());
            let info = info_of(&plain(100_000, complete), step)?;
            assert_eq!(info.format, "pg_dump-plain");
            assert_eq!(
                info.server_version.as_deref(),
                Some("15.18 (Debian 15.18-0+deb12u1)")
            );
            assert!(info.validated);
            // Older servers: no \unrestrict.
            inspect(
                &plain(10, "\n-- PostgreSQL database dump complete\n--\n\n"),
                step,
            )?;
        }
        for cut in [
            "",
            "\n--\n-- PostgreSQL database dump compl",
            "\n-- PostgreSQL database dump complete\nSET y = 1;\n",
        ] {
            assert!(refused(&plain(1000, cut), 4096), "{cut:?}");
        }
        // Without validation, only recorded.
        let mut i = Inspector::new(false);
        i.feed(&plain(1000, ""));
        let info = i.finish("db.sql")?.info;
        assert_eq!(info.map(|i| i.validated), Some(false));
        Ok(())
    }

    #[test]
    fn compressed_streams_warn_and_unknown_ones_pass() -> Result<()> {
        let mut gz = vec![0x1f, 0x8b, 8, 0];
        gz.extend(vec![7u8; 2000]);
        let got = inspect(&gz, 100)?;
        assert_eq!(got.info.map(|i| i.format).as_deref(), Some("gzip"));
        assert!(
            got.warnings.iter().any(|w| w.contains("deduplication")),
            "{:?}",
            got.warnings
        );
        let got = inspect(b"just some bytes, not a dump", 5)?;
        assert!(got.info.is_none() && got.warnings.is_empty());
        assert!(inspect(b"", 5)?.info.is_none());
        Ok(())
    }

    #[test]
    fn mysqldump_must_end_with_dump_completed() -> Result<()> {
        let head = "-- MySQL dump 10.13  Distrib 8.0.36, for Linux (x86_64)\n--\n\
                    -- Host: localhost    Database: shop\n\
                    -- ------------------------------------------------------\n\
                    -- Server version\t8.0.36\n";
        let mut d = head.as_bytes().to_vec();
        d.extend(vec![b'y'; 1000]);
        assert!(refused(&d, 64));
        d.extend_from_slice(b"\n-- Dump completed on 2026-11-27 10:00:00\n");
        let info = info_of(&d, 64)?;
        assert_eq!(info.database.as_deref(), Some("shop"));
        assert_eq!(info.server_version.as_deref(), Some("8.0.36"));
        Ok(())
    }

    #[test]
    fn tar_archives_need_their_end_blocks() {
        let mut header = vec![0u8; 512];
        header[..8].copy_from_slice(b"toc.dat\0");
        header[257..262].copy_from_slice(b"ustar");
        assert_eq!(detect(&header), Format::PgTar);
        let mut whole = header.clone();
        whole.extend(vec![0u8; 1024]);
        assert!(tar_is_whole(&whole, whole.len() as u64));
        assert!(!tar_is_whole(&header, header.len() as u64));
        assert!(!tar_is_whole(&whole[..1000], 1000));
    }

    #[test]
    fn pg_control_is_found_in_a_tar_stream_fed_in_any_pieces() {
        let mut b = tar::Builder::new(Vec::new());
        let mut add = |name: &str, data: &[u8]| {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o600);
            h.set_cksum();
            b.append_data(&mut h, name, data)
                .unwrap_or_else(|e| panic!("{e}"));
        };
        add(
            "backup_label",
            b"START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n",
        );
        add("base/1/1259", &vec![7u8; 70_001]);
        let mut control = 7_443_197_417_112_065_040u64.to_le_bytes().to_vec();
        control.extend(vec![1u8; 8184]);
        add("global/pg_control", &control);
        add("backup_manifest", b"{}");
        let stream = b.into_inner().unwrap_or_default();
        for piece in [1usize, 7, 511, 512, 513, 4096, 1 << 20] {
            let mut scan = TarScan::new(&["global/pg_control"], 8);
            for part in stream.chunks(piece) {
                scan.feed(part);
            }
            assert_eq!(scan.found, control[..8], "pieces of {piece}");
        }
        // The whole inspection records it.
        let mut insp = Inspector::without_tools();
        insp.feed(&stream);
        let info = insp.finish("base.tar").map(|i| i.info);
        let id = info.ok().flatten().and_then(|i| i.system_identifier);
        assert_eq!(id.as_deref(), Some("7443197417112065040"));
        // Not a tar after the first header: it gives up, finds nothing.
        let mut scan = TarScan::new(&["global/pg_control"], 8);
        scan.feed(&stream[..512]);
        scan.feed(&[b'x'; 5000]);
        assert!(scan.found.is_empty());
    }

    #[test]
    fn a_base_backups_stop_lsn_comes_from_the_manifest_at_its_end() {
        // The end of a manifest as pg_basebackup 15 writes it, then tar's
        // padding and end blocks.
        let mut tail = br#"{ "Path": "global/pg_control", "Size": 8192, "Checksum": "a1" }
],
"WAL-Ranges": [
{ "Timeline": 1, "Start-LSN": "0/2000028", "End-LSN": "0/2000138" }
],
"Manifest-Checksum": "0f3c"}
"#
        .to_vec();
        tail.extend(vec![0u8; 1536]);
        assert_eq!(manifest_end_lsn(&tail).as_deref(), Some("0/2000138"));
        // Two ranges (a timeline switch during the backup), newest timeline
        // first as PostgreSQL writes them: the furthest end.
        let two = br#""WAL-Ranges": [
{ "Timeline": 2, "Start-LSN": "0/3000000", "End-LSN": "0/3000100" },
{ "Timeline": 1, "Start-LSN": "0/2000028", "End-LSN": "0/3000000" }
],"#;
        assert_eq!(manifest_end_lsn(two).as_deref(), Some("0/3000100"));
        // No manifest (PostgreSQL 12, --no-manifest), a cut one, garbage.
        for bad in [
            &b"no manifest here"[..],
            br#""WAL-Ranges": [ { "Timeline": 1, "Start-LSN": "0/20"#,
            br#""WAL-Ranges": [ { "End-LSN": "not an lsn" } ]"#,
            br#""WAL-Ranges": []"#,
        ] {
            assert_eq!(
                manifest_end_lsn(bad),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
