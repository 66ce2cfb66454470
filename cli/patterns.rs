//! Pattern and path lists given on the command line or in files
//! (`backup --exclude-file`, `--files-from`, `restore --include-file`).

use std::path::{Path, PathBuf};

use cairn_core::pattern::Patterns;
use cairn_core::{Error, ErrorKind};

/// `--exclude`, `--iexclude`, `--exclude-file`, `--iexclude-file`, as
/// `backup`, `restore` and `rewrite` take them.
#[derive(clap::Args)]
pub struct ExcludeArgs {
    /// Leave out what matches PATTERN (repeatable; restic's rules, see --help)
    #[arg(
        short = 'e',
        long = "exclude",
        value_name = "PATTERN",
        long_help = "Leave out what matches PATTERN (repeatable), with restic's rules: `*` and \
                     `?` match within one path component, `**` any number of components, \
                     `[...]` a character class. A pattern that starts with / is matched \
                     against the whole absolute path, any other at any depth (`*.tmp`, \
                     `node_modules`, `cache/*`). A pattern matches whole components, and a \
                     directory it matches is left out with everything in it. `!PATTERN` \
                     includes again what an earlier pattern excluded: the last pattern that \
                     matches a path (or a directory above it) decides; a directory left out is \
                     not entered, so to keep one thing inside, exclude `dir/*` and then \
                     `!dir/keep`."
    )]
    pub exclude: Vec<String>,

    /// Like --exclude, ignoring case
    #[arg(long = "iexclude", value_name = "PATTERN")]
    pub iexclude: Vec<String>,

    /// Read --exclude patterns from FILE (one per line; # comments; $VAR expanded)
    #[arg(long = "exclude-file", value_name = "FILE")]
    pub exclude_file: Vec<PathBuf>,

    /// Read --iexclude patterns from FILE
    #[arg(long = "iexclude-file", value_name = "FILE")]
    pub iexclude_file: Vec<PathBuf>,
}

impl ExcludeArgs {
    /// Nothing given.
    pub fn is_empty(&self) -> bool {
        self.exclude.is_empty()
            && self.iexclude.is_empty()
            && self.exclude_file.is_empty()
            && self.iexclude_file.is_empty()
    }

    /// The patterns of the options and of the files named.
    pub fn patterns(&self) -> anyhow::Result<Patterns> {
        Ok(Patterns::new(
            &read(&self.exclude, &self.exclude_file)?,
            &read(&self.iexclude, &self.iexclude_file)?,
        )?)
    }
}

/// Lines of a pattern or path list: `#` comments and empty lines skipped,
/// surrounding white space trimmed.
pub fn list_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
}

pub fn read_list_file(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        let kind = if e.kind() == std::io::ErrorKind::NotFound {
            ErrorKind::SourceNotFound
        } else {
            ErrorKind::Io
        };
        Error::new(kind, format!("{what} {}: {e}", path.display())).into()
    })
}

/// `$VAR` and `${VAR}` replaced by the variable's value (empty when unset),
/// as restic does in exclude files.
fn expand_env(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, len) = if let Some(braced) = after.strip_prefix('{') {
            match braced.find('}') {
                Some(end) => (&braced[..end], end + 2),
                None => ("", 0),
            }
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], end)
        };
        if name.is_empty() {
            out.push('$');
            rest = after;
        } else {
            out.push_str(&std::env::var(name).unwrap_or_default());
            rest = &after[len..];
        }
    }
    out.push_str(rest);
    out
}

/// The patterns given, then those of each file named (one per line).
pub fn read(given: &[String], files: &[PathBuf]) -> anyhow::Result<Vec<String>> {
    let mut out = given.to_vec();
    for f in files {
        let bytes = read_list_file(f, "pattern file")?;
        let text = String::from_utf8_lossy(&bytes);
        out.extend(list_lines(&text).map(expand_env));
    }
    Ok(out)
}
