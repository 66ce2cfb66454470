//! restic's exclude patterns (`backup --exclude`, `restore --include`):
//! globs over absolute paths.
//!
//! - `*` and `?` match within one path component, `[...]` a character
//!   class, `**` any number of components.
//! - A pattern that starts with `/` is matched against the whole path; any
//!   other matches at any depth (as if it began with `**/`): `*.tmp`
//!   matches `/home/x/a.tmp`, `cache/*` matches `/var/cache/x`.
//! - A pattern matches whole components: `foo` matches `/a/foo` and
//!   everything under it, not `/a/foobar`.
//! - `!PATTERN` includes again what an earlier pattern excluded: the last
//!   pattern that matches a path (or a directory above it) decides.

use std::path::Path;

use crate::error::{Error, Result};

/// An ordered list of patterns, each excluding or (`!`) including.
#[derive(Debug, Clone)]
pub struct PatternList {
    set: globset::GlobSet,
    /// Per pattern, in order: does it include (`!`)?
    negated: Vec<bool>,
}

impl Default for PatternList {
    fn default() -> Self {
        PatternList {
            set: globset::GlobSet::empty(),
            negated: Vec::new(),
        }
    }
}

impl PatternList {
    /// Compiles `patterns` (empty lines are skipped); a malformed one is an
    /// invalid-input error naming it.
    pub fn new(patterns: &[String], ignore_case: bool) -> Result<Self> {
        let mut set = globset::GlobSetBuilder::new();
        let mut negated = Vec::new();
        for p in patterns {
            let (neg, body) = match p.strip_prefix('!') {
                Some(rest) => (true, rest),
                None => (false, p.as_str()),
            };
            let body = body.trim_end_matches('/');
            if body.is_empty() {
                continue;
            }
            let anchored = if body.starts_with('/') {
                body.to_string()
            } else {
                format!("**/{body}")
            };
            let glob = globset::GlobBuilder::new(&anchored)
                .literal_separator(true)
                .case_insensitive(ignore_case)
                .backslash_escape(true)
                .build()
                .map_err(|e| Error::invalid(format!("pattern {p:?}: {e}")))?;
            set.add(glob);
            negated.push(neg);
        }
        Ok(PatternList {
            set: set
                .build()
                .map_err(|e| Error::invalid(format!("patterns: {e}")))?,
            negated,
        })
    }

    /// No patterns.
    pub fn is_empty(&self) -> bool {
        self.negated.is_empty()
    }

    /// Whether some pattern includes again (`!`).
    pub fn has_negations(&self) -> bool {
        self.negated.iter().any(|n| *n)
    }

    /// The index of the last pattern that matches `path` or a directory
    /// above it, if one does.
    fn last_match(&self, path: &Path) -> Option<usize> {
        let mut last: Option<usize> = None;
        let mut matches = Vec::new();
        for p in path.ancestors() {
            if p.as_os_str().len() <= 1 {
                break; // "/" or ""
            }
            self.set.matches_into(p, &mut matches);
            if let Some(&m) = matches.iter().max() {
                last = Some(last.map_or(m, |l| l.max(m)));
            }
        }
        last
    }

    /// Does the list match `path` (absolute)? `false` when no pattern
    /// matches it or the last one that does is negated (`!`). For
    /// `--exclude` a match leaves the path out, for `--include` it keeps it.
    pub fn matches(&self, path: &Path) -> bool {
        self.last_match(path).is_some_and(|i| !self.negated[i])
    }
}

/// restic's pair of lists: patterns matched as written (`--exclude`,
/// `--include`) and patterns matched ignoring case (`--iexclude`,
/// `--iinclude`). A path matches when either list matches it.
#[derive(Debug, Clone, Default)]
pub struct Patterns {
    /// Matched as written.
    pub exact: PatternList,
    /// Matched ignoring case.
    pub ignoring_case: PatternList,
}

impl Patterns {
    /// Compiles both lists ([`PatternList::new`]).
    pub fn new(exact: &[String], ignoring_case: &[String]) -> Result<Self> {
        Ok(Patterns {
            exact: PatternList::new(exact, false)?,
            ignoring_case: PatternList::new(ignoring_case, true)?,
        })
    }

    /// No pattern in either list.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.ignoring_case.is_empty()
    }

    /// Does either list match `path` ([`PatternList::matches`])?
    pub fn matches(&self, path: &Path) -> bool {
        self.exact.matches(path) || self.ignoring_case.matches(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(p: &[&str]) -> PatternList {
        let v: Vec<String> = p.iter().map(|s| s.to_string()).collect();
        PatternList::new(&v, false).expect("test")
    }

    #[test]
    fn unanchored_patterns_match_at_any_depth_and_whole_components() {
        let l = list(&["*.tmp", "cache"]);
        assert!(l.matches(Path::new("/home/x/a.tmp")));
        assert!(l.matches(Path::new("/a.tmp")));
        assert!(l.matches(Path::new("/var/cache")));
        assert!(l.matches(Path::new("/var/cache/deep/file")));
        assert!(!l.matches(Path::new("/var/cached")));
        assert!(!l.matches(Path::new("/home/x/a.tmpx")));
    }

    #[test]
    fn anchored_patterns_match_from_the_root() {
        let l = list(&["/home/*/secret", "/srv/**/*.log"]);
        assert!(l.matches(Path::new("/home/x/secret")));
        assert!(l.matches(Path::new("/home/x/secret/key")));
        assert!(!l.matches(Path::new("/other/home/x/secret")));
        assert!(!l.matches(Path::new("/home/x/y/secret")));
        assert!(l.matches(Path::new("/srv/a/b/c.log")));
        assert!(l.matches(Path::new("/srv/c.log")));
    }

    #[test]
    fn the_last_matching_pattern_decides() {
        let l = list(&["/home/u/*", "!/home/u/docs", "/home/u/docs/tmp"]);
        assert!(l.matches(Path::new("/home/u/music")));
        assert!(!l.matches(Path::new("/home/u/docs")));
        assert!(!l.matches(Path::new("/home/u/docs/a.txt")));
        assert!(l.matches(Path::new("/home/u/docs/tmp/x")));
        assert!(!l.matches(Path::new("/home/u")));
        assert!(l.has_negations());
    }

    #[test]
    fn either_list_of_a_pair_matches() {
        let p = Patterns::new(&["*.tmp".to_string()], &["*.JPG".to_string()]).expect("test");
        assert!(p.matches(Path::new("/a/x.tmp")) && p.matches(Path::new("/a/y.jpg")));
        assert!(!p.matches(Path::new("/a/x.TMP")) && !p.is_empty());
        assert!(Patterns::default().is_empty());
    }

    #[test]
    fn case_is_ignored_when_asked() {
        let v = vec!["*.JPG".to_string()];
        let l = PatternList::new(&v, true).expect("test");
        assert!(l.matches(Path::new("/p/a.jpg")));
        assert!(!list(&["*.JPG"]).matches(Path::new("/p/a.jpg")));
    }

    #[test]
    fn a_malformed_pattern_is_named() {
        let v = vec!["a[".to_string()];
        let e = PatternList::new(&v, false).expect_err("test");
        assert!(e.to_string().contains("a["), "{e}");
    }
}
