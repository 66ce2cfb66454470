//! Retention policies: which snapshots `forget` keeps, by restic's rules.
//!
//! Admins move their cron lines over from restic unchanged, so the rules are
//! restic's, including its corner cases:
//!
//! - Snapshots are considered newest first (ties: by ID). Each `keep-N`
//!   bucket keeps the newest snapshot of every hour/day/ISO week/month/year
//!   it has not seen yet, until its count is used up (`-1`: no limit). When
//!   a bucket still has count left at the oldest snapshot, that one is kept
//!   too ("oldest daily snapshot"), to keep the longest history.
//! - Calendar buckets use the wall clock at the offset the snapshot was
//!   taken at.
//! - `within` durations (`1y2m3d4h`) count back from the newest snapshot that
//!   is not in the future, by calendar arithmetic (Go's `AddDate`, so that
//!   March 31 minus one month is March 3, as in restic) and then hours.
//! - `keep-tag` keeps snapshots having all tags of any of the given lists.
//! - Groups: by host, paths and/or tags (default host and paths); each group
//!   gets the policy on its own.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};
use serde::Serialize;

use crate::backend::ObjectKind;
use crate::error::{Error, Result};
use crate::format::snapshot::{Snapshot, SnapshotFilter};
use crate::id::Id;
use crate::pg::pitr;
use crate::pg::wal::{self, WalExpiry};
use crate::repo::drill_record;
use crate::repo::repository::{Repository, SnapshotList};
use crate::repo::wal_record;
use crate::time::SnapshotTime;

/// A calendar duration: years, months, days and hours (`2y5m`, `7d`, `36h`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeepDuration {
    /// Years.
    pub years: i32,
    /// Months.
    pub months: i32,
    /// Days.
    pub days: i32,
    /// Hours.
    pub hours: i32,
}

impl KeepDuration {
    /// All parts zero: the option is off.
    pub fn is_zero(&self) -> bool {
        *self == KeepDuration::default()
    }

    /// The instant this long before `t`: calendar parts first, with Go's
    /// normalisation of days that overflow a month, then hours.
    pub fn before(&self, t: &SnapshotTime) -> Timestamp {
        let tz = zone_of(t);
        let dt = t.timestamp().to_zoned_datetime(tz.clone()).datetime();
        let months = i64::from(dt.year()) * 12 + i64::from(dt.month())
            - 1
            - i64::from(self.years) * 12
            - i64::from(self.months);
        let year = months.div_euclid(12);
        let month = months.rem_euclid(12) + 1;
        let days = i64::from(dt.day()) - 1 - i64::from(self.days);
        let shifted = i16::try_from(year)
            .ok()
            .and_then(|y| Date::new(y, month as i8, 1).ok())
            .and_then(|first| first.checked_add(days.days()).ok())
            .map(|date| DateTime::from_parts(date, dt.time()))
            .and_then(|dt| dt.to_zoned_datetime(tz).ok())
            .map(|z| z.timestamp())
            .unwrap_or(Timestamp::MIN);
        shifted
            .checked_sub(i64::from(self.hours).hours())
            .unwrap_or(Timestamp::MIN)
    }
}

impl FromStr for KeepDuration {
    type Err = Error;

    /// restic's format: numbers each followed by `y`, `m`, `d` or `h`.
    fn from_str(s: &str) -> Result<Self> {
        let bad = |why: &str| {
            Error::invalid(format!(
                "invalid duration {s:?}: {why} (use e.g. 7d, 2y5m, 1y2m3d4h)"
            ))
        };
        let mut d = KeepDuration::default();
        let mut rest = s.trim();
        if rest.is_empty() {
            return Err(bad("empty"));
        }
        while !rest.is_empty() {
            let (negative, digits_from) = match rest.strip_prefix('-') {
                Some(r) => (true, r),
                None => (false, rest),
            };
            let digits = digits_from.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(bad("no number found"));
            }
            let n: i32 = digits_from[..digits]
                .parse()
                .map_err(|_| bad("number too large"))?;
            let n = if negative { -n } else { n };
            let unit = digits_from[digits..]
                .chars()
                .next()
                .ok_or_else(|| bad("no unit after the number"))?;
            match unit {
                'y' => d.years = n,
                'm' => d.months = n,
                'd' => d.days = n,
                'h' => d.hours = n,
                _ => return Err(bad(&format!("unknown unit {unit:?}"))),
            }
            rest = &digits_from[digits + unit.len_utf8()..];
        }
        Ok(d)
    }
}

impl fmt::Display for KeepDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, unit) in [
            (self.years, 'y'),
            (self.months, 'm'),
            (self.days, 'd'),
            (self.hours, 'h'),
        ] {
            if n != 0 {
                write!(f, "{n}{unit}")?;
            }
        }
        Ok(())
    }
}

/// The zone a snapshot's wall clock is read in: the system zone when it had
/// the recorded offset at that instant (as Go's time parser does), else
/// the fixed offset itself.
fn zone_of(t: &SnapshotTime) -> TimeZone {
    let system = crate::time::system_zone();
    if system.to_offset(t.timestamp()) == t.offset() {
        system
    } else {
        TimeZone::fixed(t.offset())
    }
}

/// What `forget` keeps. Counts are 0 (off), N, or -1 (no limit).
///
/// With the `clap` feature it is a set of `--keep-*` options, as `cairn
/// forget` shows them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct RetentionPolicy {
    /// The N newest snapshots.
    #[cfg_attr(
        feature = "clap",
        arg(
            short = 'l',
            long = "keep-last",
            id = "keep_last",
            value_name = "N",
            default_value_t = 0,
            allow_negative_numbers = true,
            help = "Keep the N newest snapshots"
        )
    )]
    pub last: i64,
    /// The newest snapshot of each of the last N hours that have one.
    #[cfg_attr(
        feature = "clap",
        arg(
            short = 'H',
            long = "keep-hourly",
            id = "keep_hourly",
            value_name = "N",
            default_value_t = 0,
            allow_negative_numbers = true,
            help = "Keep the newest snapshot of each of the N newest hours"
        )
    )]
    pub hourly: i64,
    /// ... days.
    #[cfg_attr(
        feature = "clap",
        arg(
            short = 'd',
            long = "keep-daily",
            id = "keep_daily",
            value_name = "N",
            default_value_t = 0,
            allow_negative_numbers = true,
            help = "Keep the newest snapshot of each of the N newest days"
        )
    )]
    pub daily: i64,
    /// ... ISO weeks.
    #[cfg_attr(
        feature = "clap",
        arg(
            short = 'w',
            long = "keep-weekly",
            id = "keep_weekly",
            value_name = "N",
            default_value_t = 0,
            allow_negative_numbers = true,
            help = "Keep the newest snapshot of each of the N newest ISO weeks"
        )
    )]
    pub weekly: i64,
    /// ... months.
    #[cfg_attr(
        feature = "clap",
        arg(
            short = 'm',
            long = "keep-monthly",
            id = "keep_monthly",
            value_name = "N",
            default_value_t = 0,
            allow_negative_numbers = true,
            help = "Keep the newest snapshot of each of the N newest months"
        )
    )]
    pub monthly: i64,
    /// ... years.
    #[cfg_attr(
        feature = "clap",
        arg(
            short = 'y',
            long = "keep-yearly",
            id = "keep_yearly",
            value_name = "N",
            default_value_t = 0,
            allow_negative_numbers = true,
            help = "Keep the newest snapshot of each of the N newest years"
        )
    )]
    pub yearly: i64,
    /// Every snapshot within this duration of the newest.
    #[cfg_attr(
        feature = "clap",
        arg(
            long = "keep-within",
            id = "keep_within",
            value_name = "DURATION",
            default_value = "0h",
            hide_default_value = true,
            help = "Keep every snapshot within this duration of the newest (e.g. 7d, 2y5m, 1y2m3d4h)"
        )
    )]
    pub within: KeepDuration,
    /// The newest snapshot of each hour within this duration.
    #[cfg_attr(
        feature = "clap",
        arg(
            long = "keep-within-hourly",
            id = "keep_within_hourly",
            value_name = "DURATION",
            default_value = "0h",
            hide_default_value = true,
            help = "Keep hourly snapshots within this duration of the newest"
        )
    )]
    pub within_hourly: KeepDuration,
    /// ... day.
    #[cfg_attr(
        feature = "clap",
        arg(
            long = "keep-within-daily",
            id = "keep_within_daily",
            value_name = "DURATION",
            default_value = "0h",
            hide_default_value = true,
            help = "Keep daily snapshots within this duration of the newest"
        )
    )]
    pub within_daily: KeepDuration,
    /// ... ISO week.
    #[cfg_attr(
        feature = "clap",
        arg(
            long = "keep-within-weekly",
            id = "keep_within_weekly",
            value_name = "DURATION",
            default_value = "0h",
            hide_default_value = true,
            help = "Keep weekly snapshots within this duration of the newest"
        )
    )]
    pub within_weekly: KeepDuration,
    /// ... month.
    #[cfg_attr(
        feature = "clap",
        arg(
            long = "keep-within-monthly",
            id = "keep_within_monthly",
            value_name = "DURATION",
            default_value = "0h",
            hide_default_value = true,
            help = "Keep monthly snapshots within this duration of the newest"
        )
    )]
    pub within_monthly: KeepDuration,
    /// ... year.
    #[cfg_attr(
        feature = "clap",
        arg(
            long = "keep-within-yearly",
            id = "keep_within_yearly",
            value_name = "DURATION",
            default_value = "0h",
            hide_default_value = true,
            help = "Keep yearly snapshots within this duration of the newest"
        )
    )]
    pub within_yearly: KeepDuration,
    /// Snapshots having all tags of any of these lists.
    #[cfg_attr(
        feature = "clap",
        arg(
            long = "keep-tag",
            id = "keep_tag",
            value_name = "TAG[,TAG...]",
            value_parser = tag_list,
            help = "Keep snapshots with all of these comma-separated tags (repeatable: any of the lists)"
        )
    )]
    pub tags: Vec<Vec<String>>,
    /// Keep the newest snapshot of each group that passed a restore drill
    /// (its ID is in `drilled`).
    #[cfg_attr(
        feature = "clap",
        arg(
            long = "keep-drilled",
            id = "keep_drilled",
            help = "Keep the newest snapshot of each group that passed a restore drill (cairn drill)"
        )
    )]
    pub keep_drilled: bool,
    /// Snapshots that passed a restore drill (`repo-format.md` §11).
    #[cfg_attr(feature = "clap", arg(skip))]
    pub drilled: Vec<crate::id::Id>,
}

/// The tags of one `--keep-tag a,b`, without the spaces around them.
#[cfg(feature = "clap")]
fn tag_list(s: &str) -> std::result::Result<Vec<String>, std::convert::Infallible> {
    Ok(s.split(',').map(|t| t.trim().to_string()).collect())
}

impl RetentionPolicy {
    /// No rule at all: `forget` refuses to run such a policy.
    pub fn is_empty(&self) -> bool {
        let rules = RetentionPolicy {
            drilled: Vec::new(),
            ..self.clone()
        };
        rules == RetentionPolicy::default()
    }

    /// Checks counts (`-1` or more).
    pub fn validate(&self) -> Result<()> {
        for (name, n) in self.counts() {
            if n < -1 {
                return Err(Error::invalid(format!(
                    "--keep-{name} {n}: use a count, or -1 for no limit"
                )));
            }
        }
        Ok(())
    }

    fn counts(&self) -> [(&'static str, i64); 6] {
        [
            ("last", self.last),
            ("hourly", self.hourly),
            ("daily", self.daily),
            ("weekly", self.weekly),
            ("monthly", self.monthly),
            ("yearly", self.yearly),
        ]
    }

    /// A one-line description, as restic prints it.
    pub fn describe(&self) -> String {
        let mut keeps = Vec::new();
        let names = ["latest", "hourly", "daily", "weekly", "monthly", "yearly"];
        for ((_, n), name) in self.counts().iter().zip(names) {
            match n {
                n if *n > 0 => keeps.push(format!("{n} {name}")),
                -1 => keeps.push(format!("all {name}")),
                _ => {}
            }
        }
        let mut within = Vec::new();
        for (d, name) in [
            (self.within_hourly, "hourly"),
            (self.within_daily, "daily"),
            (self.within_weekly, "weekly"),
            (self.within_monthly, "monthly"),
            (self.within_yearly, "yearly"),
        ] {
            if !d.is_zero() {
                within.push(format!("{name} snapshots within {d}"));
            }
        }
        let mut s = String::new();
        if !keeps.is_empty() {
            s = format!("{} snapshots", keeps.join(", "));
        }
        if !within.is_empty() {
            if !s.is_empty() {
                s.push_str(", ");
            }
            s.push_str(&within.join(", "));
        }
        if !self.tags.is_empty() {
            if !s.is_empty() {
                s.push_str(" and ");
            }
            let lists: Vec<String> = self
                .tags
                .iter()
                .map(|l| format!("[{}]", l.join(", ")))
                .collect();
            s.push_str(&format!("all snapshots with tags [{}]", lists.join(" ")));
        }
        if !self.within.is_zero() {
            if !s.is_empty() {
                s.push_str(" and ");
            }
            s.push_str(&format!(
                "all snapshots within {} of the newest",
                self.within
            ));
        }
        if self.keep_drilled {
            if !s.is_empty() {
                s.push_str(" and ");
            }
            s.push_str("the newest snapshot that passed a restore drill");
        }
        if s.is_empty() {
            "remove".into()
        } else {
            format!("keep {s}")
        }
    }
}

/// Does `s` have every tag of `list`? An empty tag in the list matches a
/// snapshot without tags (restic).
pub fn has_tags(s: &Snapshot, list: &[String]) -> bool {
    for tag in list {
        if tag.is_empty() && s.tags.is_empty() {
            return true;
        }
        if !s.tags.contains(tag) {
            return false;
        }
    }
    true
}

/// Counts left in each bucket after a kept snapshot, as restic reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// keep-last left.
    #[serde(skip_serializing_if = "is_zero")]
    pub last: i64,
    /// keep-hourly left.
    #[serde(skip_serializing_if = "is_zero")]
    pub hourly: i64,
    /// keep-daily left.
    #[serde(skip_serializing_if = "is_zero")]
    pub daily: i64,
    /// keep-weekly left.
    #[serde(skip_serializing_if = "is_zero")]
    pub weekly: i64,
    /// keep-monthly left.
    #[serde(skip_serializing_if = "is_zero")]
    pub monthly: i64,
    /// keep-yearly left.
    #[serde(skip_serializing_if = "is_zero")]
    pub yearly: i64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// Why one snapshot is kept.
#[derive(Debug, Clone)]
pub struct KeepReason {
    /// The snapshot.
    pub snapshot: Snapshot,
    /// The rules that keep it ("daily snapshot", "within 7d", ...).
    pub matches: Vec<String>,
    /// Counts left after it.
    pub counters: Counters,
}

/// The outcome of a policy on one group.
#[derive(Debug, Clone, Default)]
pub struct PolicyResult {
    /// Kept, newest first.
    pub keep: Vec<Snapshot>,
    /// Removed, newest first.
    pub remove: Vec<Snapshot>,
    /// One per kept snapshot, in the order of `keep`.
    pub reasons: Vec<KeepReason>,
}

type Bucker = fn(&DateTime, i64) -> i64;

fn ymdh(d: &DateTime, _: i64) -> i64 {
    i64::from(d.year()) * 1_000_000
        + i64::from(d.month()) * 10_000
        + i64::from(d.day()) * 100
        + i64::from(d.hour())
}
fn ymd(d: &DateTime, _: i64) -> i64 {
    i64::from(d.year()) * 10_000 + i64::from(d.month()) * 100 + i64::from(d.day())
}
fn yw(d: &DateTime, _: i64) -> i64 {
    let w = d.date().iso_week_date();
    i64::from(w.year()) * 100 + i64::from(w.week())
}
fn ym(d: &DateTime, _: i64) -> i64 {
    i64::from(d.year()) * 100 + i64::from(d.month())
}
fn y(d: &DateTime, _: i64) -> i64 {
    i64::from(d.year())
}
fn always(_: &DateTime, nr: i64) -> i64 {
    nr
}

/// Why a snapshot dated in the future is kept ([`apply_policy`]).
pub const FUTURE_REASON: &str = "dated in the future (not counted; forget it by ID)";

/// Sorts newest first; ties by ID, for a stable, reproducible order.
pub fn sort_newest_first(list: &mut [Snapshot]) {
    list.sort_by(|a, b| b.time.cmp(&a.time).then(a.id.cmp(&b.id)));
}

/// Applies `p` to one group of snapshots. `now` bounds which snapshot counts
/// as the newest for `within` (one from the future does not).
pub fn apply_policy(list: &[Snapshot], p: &RetentionPolicy, now: Timestamp) -> PolicyResult {
    let mut list = list.to_vec();
    sort_newest_first(&mut list);
    let mut out = PolicyResult::default();
    // Snapshots dated in the future (a forged time, a clock far ahead) are
    // kept, reported, and take no place in any rule: otherwise a forged
    // date would push the real snapshots out of `--keep-last`.
    let (future, list): (Vec<Snapshot>, Vec<Snapshot>) =
        list.into_iter().partition(|s| s.future_dated);
    let untouched = Counters {
        last: p.last,
        hourly: p.hourly,
        daily: p.daily,
        weekly: p.weekly,
        monthly: p.monthly,
        yearly: p.yearly,
    };
    for cur in future {
        out.keep.push(cur.clone());
        out.reasons.push(KeepReason {
            snapshot: cur,
            matches: vec![FUTURE_REASON.to_string()],
            counters: untouched,
        });
    }
    let mut rules = PolicyRun::new(p, &list, now);
    for (nr, cur) in list.iter().enumerate() {
        let reasons = rules.reasons_to_keep(cur, nr);
        if reasons.is_empty() {
            out.remove.push(cur.clone());
            continue;
        }
        out.keep.push(cur.clone());
        out.reasons.push(KeepReason {
            snapshot: cur.clone(),
            matches: reasons,
            counters: rules.counters(),
        });
    }
    out
}

/// A rule that keeps one snapshot per time bucket (hour, day, ...): the
/// newest of each, and the oldest snapshot of all when its bucket was
/// taken already.
struct Bucket {
    limit: Limit,
    bucker: Bucker,
    /// The bucket of the last snapshot kept by this rule.
    last: Option<i64>,
    reason: &'static str,
}

/// How far a [`Bucket`] rule reaches.
enum Limit {
    /// This many buckets more (-1: all), as `--keep-daily N`.
    Count(i64),
    /// Buckets within this long of the newest snapshot, as
    /// `--keep-within-daily 7d`.
    Within(KeepDuration),
}

impl Bucket {
    fn count(count: i64, bucker: Bucker, reason: &'static str) -> Self {
        Bucket {
            limit: Limit::Count(count),
            bucker,
            last: None,
            reason,
        }
    }

    fn within(within: KeepDuration, bucker: Bucker, reason: &'static str) -> Self {
        Bucket {
            limit: Limit::Within(within),
            bucker,
            last: None,
            reason,
        }
    }

    /// Why this rule keeps snapshot number `nr` (newest first; `oldest`
    /// is the last number), at wall time `wall`, if it does; `after` says
    /// whether the snapshot is after a time within the newest.
    fn keeps(
        &mut self,
        wall: &DateTime,
        (nr, oldest): (usize, usize),
        after: &dyn Fn(&KeepDuration) -> bool,
    ) -> Option<String> {
        let applies = match &self.limit {
            Limit::Count(n) => *n > 0 || *n == -1,
            Limit::Within(d) => !d.is_zero() && after(d),
        };
        if !applies {
            return None;
        }
        let val = (self.bucker)(wall, nr as i64);
        if Some(val) == self.last && nr != oldest {
            return None;
        }
        let reason = if Some(val) == self.last {
            format!("oldest {}", self.reason)
        } else {
            self.reason.to_string()
        };
        self.last = Some(val);
        match &mut self.limit {
            Limit::Count(n) => {
                if *n > 0 {
                    *n -= 1;
                }
                Some(reason)
            }
            Limit::Within(d) => Some(format!("{reason} {d}")),
        }
    }

    /// Buckets this rule may still keep (0 for a `within` rule).
    fn left(&self) -> i64 {
        match self.limit {
            Limit::Count(n) => n,
            Limit::Within(_) => 0,
        }
    }
}

/// A policy applied to a list of snapshots, newest first: the state of
/// its rules so far.
struct PolicyRun<'a> {
    p: &'a RetentionPolicy,
    /// The count rules (last, hourly, ... yearly), then the `within` ones.
    buckets: [Bucket; 11],
    /// The newest snapshot that is not in the future.
    latest: Option<SnapshotTime>,
    newest_drilled: Option<Id>,
    oldest: usize,
}

impl<'a> PolicyRun<'a> {
    fn new(p: &'a RetentionPolicy, list: &[Snapshot], now: Timestamp) -> Self {
        PolicyRun {
            p,
            buckets: [
                Bucket::count(p.last, always, "last snapshot"),
                Bucket::count(p.hourly, ymdh, "hourly snapshot"),
                Bucket::count(p.daily, ymd, "daily snapshot"),
                Bucket::count(p.weekly, yw, "weekly snapshot"),
                Bucket::count(p.monthly, ym, "monthly snapshot"),
                Bucket::count(p.yearly, y, "yearly snapshot"),
                Bucket::within(p.within_hourly, ymdh, "hourly within"),
                Bucket::within(p.within_daily, ymd, "daily within"),
                Bucket::within(p.within_weekly, yw, "weekly within"),
                Bucket::within(p.within_monthly, ym, "monthly within"),
                Bucket::within(p.within_yearly, y, "yearly within"),
            ],
            latest: list
                .iter()
                .filter(|s| s.time.timestamp() < now)
                .map(|s| s.time)
                .max_by_key(|t| t.timestamp()),
            newest_drilled: p
                .keep_drilled
                .then(|| {
                    list.iter()
                        .find(|s| p.drilled.contains(&s.id))
                        .map(|s| s.id)
                })
                .flatten(),
            oldest: list.len().saturating_sub(1),
        }
    }

    /// Why snapshot number `nr` is kept: empty when it is not.
    fn reasons_to_keep(&mut self, cur: &Snapshot, nr: usize) -> Vec<String> {
        let p = self.p;
        let wall = cur
            .time
            .timestamp()
            .to_zoned_datetime(zone_of(&cur.time))
            .datetime();
        let mut reasons = Vec::new();
        for l in &p.tags {
            if has_tags(cur, l) {
                reasons.push(format!("has tags [{}]", l.join(", ")));
            }
        }
        let latest = self.latest;
        let after = |d: &KeepDuration| match &latest {
            Some(latest) => cur.time.timestamp() > d.before(latest),
            // Every snapshot is in the future: restic compares against the
            // zero time, which every snapshot is after.
            None => true,
        };
        if self.newest_drilled == Some(cur.id) {
            reasons.push("newest drilled".to_string());
        }
        if !p.within.is_zero() && after(&p.within) {
            reasons.push(format!("within {}", p.within));
        }
        let oldest = self.oldest;
        reasons.extend(
            self.buckets
                .iter_mut()
                .filter_map(|b| b.keeps(&wall, (nr, oldest), &after)),
        );
        reasons
    }

    /// What the count rules may still keep.
    fn counters(&self) -> Counters {
        let b = &self.buckets;
        Counters {
            last: b[0].left(),
            hourly: b[1].left(),
            daily: b[2].left(),
            weekly: b[3].left(),
            monthly: b[4].left(),
            yearly: b[5].left(),
        }
    }
}

/// What snapshots are grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupBy {
    /// By host name.
    pub host: bool,
    /// By the (sorted) set of paths.
    pub paths: bool,
    /// By the (sorted) set of tags.
    pub tags: bool,
}

impl Default for GroupBy {
    /// restic's default: host and paths.
    fn default() -> Self {
        GroupBy {
            host: true,
            paths: true,
            tags: false,
        }
    }
}

impl FromStr for GroupBy {
    type Err = Error;

    /// `host,paths`, `tags`, `` (one group), in any order.
    fn from_str(s: &str) -> Result<Self> {
        let mut g = GroupBy {
            host: false,
            paths: false,
            tags: false,
        };
        for part in s.split(',') {
            match part.trim() {
                "host" | "hosts" => g.host = true,
                "path" | "paths" => g.paths = true,
                "tag" | "tags" => g.tags = true,
                "" => {}
                other => {
                    return Err(Error::invalid(format!(
                        "unknown grouping option {other:?}: use host, paths and/or tags"
                    )))
                }
            }
        }
        Ok(g)
    }
}

/// The key of one group; fields not grouped by are empty.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct GroupKey {
    /// Host name, if grouped by host.
    #[serde(rename = "host")]
    pub hostname: String,
    /// Sorted paths, if grouped by paths.
    pub paths: Vec<String>,
    /// Sorted tags, if grouped by tags.
    pub tags: Vec<String>,
}

/// Splits snapshots into groups, ordered by key.
pub fn group(snapshots: &[Snapshot], by: GroupBy) -> Vec<(GroupKey, Vec<Snapshot>)> {
    let mut groups: BTreeMap<GroupKey, Vec<Snapshot>> = BTreeMap::new();
    for s in snapshots {
        let mut tags = s.tags.clone();
        tags.sort();
        let key = GroupKey {
            hostname: if by.host {
                s.hostname.clone()
            } else {
                String::new()
            },
            paths: if by.paths {
                s.sorted_paths()
            } else {
                Vec::new()
            },
            tags: if by.tags { tags } else { Vec::new() },
        };
        groups.entry(key).or_default().push(s.clone());
    }
    groups.into_iter().collect()
}

/// What `forget` is asked to do: remove the snapshots named, or apply a
/// retention policy to each group of the snapshots passing a filter.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ForgetOptions {
    /// Snapshots by ID or unique prefix (an unreadable one by its full
    /// object name). Given with a policy is an error.
    pub snapshots: Vec<String>,
    /// The rules of what to keep.
    pub policy: RetentionPolicy,
    /// Which snapshots the policy considers.
    pub filter: SnapshotFilter,
    /// How snapshots are grouped; each group gets the policy on its own.
    pub group_by: GroupBy,
    /// With neither snapshots nor a rule, forget every selected snapshot
    /// (otherwise that is refused: nothing would be kept).
    pub allow_remove_all: bool,
}

impl ForgetOptions {
    /// Checks the options alone, before a repository is opened: counts,
    /// IDs and a policy together, and a policy that keeps nothing.
    pub fn validate(&self) -> Result<()> {
        self.policy.validate()?;
        if !self.snapshots.is_empty() && !self.policy.is_empty() {
            return Err(Error::invalid(
                "give either snapshot IDs or --keep-* options, not both",
            ));
        }
        if self.snapshots.is_empty() && self.policy.is_empty() && !self.allow_remove_all {
            return Err(Error::invalid(
                "no policy given: nothing would be kept. Use --keep-* options, give snapshot IDs, \
                 or --unsafe-allow-remove-all to forget every selected snapshot",
            ));
        }
        Ok(())
    }
}

/// What a `forget` removes, decided before anything is removed.
#[derive(Debug, Default)]
pub struct ForgetPlan {
    /// By policy: each group and what the policy keeps and removes in it
    /// (empty when snapshots were named).
    pub groups: Vec<(GroupKey, PolicyResult)>,
    /// The snapshots to remove, each once.
    pub remove: Vec<Snapshot>,
    /// Object names of unreadable snapshots named in full, to remove.
    pub remove_damaged: Vec<String>,
    /// Archived WAL that no kept base backup needs (when the repository
    /// holds base backups).
    pub wal: Option<WalExpiry>,
}

/// Decides what `forget` removes, with its safety rules: a policy is
/// never applied over an incomplete list (an unreadable snapshot could be
/// one the policy would keep), `keep_drilled` needs every drill record,
/// and an empty policy removes nothing unless `allow_remove_all`.
pub fn plan(
    repo: &Repository,
    list: &SnapshotList,
    opts: &ForgetOptions,
    now: Timestamp,
) -> Result<ForgetPlan> {
    opts.validate()?;
    let mut policy = opts.policy.clone();
    if policy.keep_drilled {
        // An unreadable drill record might be the one that protects a
        // snapshot: stop rather than guess.
        let drills = drill_record::load(repo)?;
        if let Some((name, e)) = drills.damaged.first() {
            return Err(Error::corrupt(format!(
                "drill record {name} cannot be read ({e}); --keep-drilled needs every drill record"
            )));
        }
        policy.drilled = drills
            .good
            .iter()
            .filter(|d| d.ok)
            .map(|d| d.snapshot)
            .collect();
    }
    let mut plan = ForgetPlan::default();
    if opts.snapshots.is_empty() {
        if let Some((name, _)) = list.damaged.first() {
            return Err(Error::corrupt(format!(
                "snapshot {} cannot be read; a policy over an incomplete list could remove the \
                 wrong snapshots. Forget it by its full ID first ({name})",
                &name[..8.min(name.len())]
            )));
        }
        let selected: Vec<Snapshot> = list
            .good
            .iter()
            .filter(|s| opts.filter.matches(s))
            .cloned()
            .collect();
        for (key, group) in group(&selected, opts.group_by) {
            let result = apply_policy(&group, &policy, now);
            plan.remove.extend(result.remove.iter().cloned());
            plan.groups.push((key, result));
        }
    } else {
        let none = SnapshotFilter::default();
        for spec in &opts.snapshots {
            if let Some(name) = list.damaged_named(spec) {
                plan.remove_damaged.push(name.to_string());
                continue;
            }
            let s = list.resolve(spec, &none)?;
            if !plan.remove.iter().any(|r| r.id == s.id) {
                plan.remove.push(s.clone());
            }
        }
    }
    if list.good.iter().any(pitr::is_base_backup) {
        let kept: Vec<Snapshot> = list
            .good
            .iter()
            .filter(|s| !plan.remove.iter().any(|r| r.id == s.id))
            .cloned()
            .collect();
        let records = wal_record::load(repo)?;
        plan.wal = Some(wal::expiry(records.good, &kept));
    }
    Ok(plan)
}

/// What [`execute`] removed.
#[derive(Debug, Default)]
pub struct ForgetStats {
    /// Snapshots removed.
    pub removed: usize,
    /// Unreadable snapshots removed.
    pub removed_damaged: usize,
    /// Archived WAL files removed.
    pub wal_removed: usize,
}

/// Removes what `plan` decided: snapshots, then unreadable snapshots named
/// in full, then the archived WAL no kept base backup needs.
pub fn execute(repo: &Repository, plan: &ForgetPlan) -> Result<ForgetStats> {
    let mut stats = ForgetStats::default();
    for s in &plan.remove {
        repo.backend()
            .delete(ObjectKind::Snapshot, &s.id.to_hex())
            .map_err(|e| e.context(format!("forgetting snapshot {}", s.id.short())))?;
        stats.removed += 1;
    }
    for name in &plan.remove_damaged {
        repo.backend()
            .delete(ObjectKind::Snapshot, name)
            .map_err(|e| e.context(format!("forgetting damaged snapshot {name}")))?;
        stats.removed_damaged += 1;
    }
    if let Some(expiry) = &plan.wal {
        stats.wal_removed = wal::expire(repo, expiry)?;
    }
    Ok(stats)
}

/// The operation as methods: `repo.forget_plan(...)`, then `repo.forget(&plan)`.
impl Repository {
    /// Decides what to remove, with the safety rules: see [`plan`].
    pub fn forget_plan(
        &self,
        list: &SnapshotList,
        opts: &ForgetOptions,
        now: Timestamp,
    ) -> Result<ForgetPlan> {
        plan(self, list, opts, now)
    }

    /// Removes what `plan` names: see [`execute`].
    pub fn forget(&self, plan: &ForgetPlan) -> Result<ForgetStats> {
        execute(self, plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::Id;
    use proptest::prelude::*;
    use std::collections::{BTreeSet, HashSet};

    fn snap(n: u32, time: &str, host: &str, tags: &[&str]) -> Snapshot {
        let mut id = [0u8; 32];
        id[..4].copy_from_slice(&n.to_be_bytes());
        let time = SnapshotTime::parse_rfc3339(time).expect("test time");
        crate::format::snapshot::sample(Id::from_bytes(id), time, host, tags)
    }

    fn far_future() -> Timestamp {
        Timestamp::from_second(4_000_000_000).expect("valid")
    }

    fn kept_times(r: &PolicyResult) -> Vec<String> {
        r.keep.iter().map(|s| s.time.to_rfc3339()).collect()
    }

    fn reasons_of(r: &PolicyResult, time: &str) -> Vec<String> {
        r.reasons
            .iter()
            .find(|k| k.snapshot.time.to_rfc3339() == time)
            .map(|k| k.matches.clone())
            .unwrap_or_default()
    }

    #[test]
    fn durations_parse_like_restic() -> Result<()> {
        assert_eq!(
            "7d".parse::<KeepDuration>()?,
            KeepDuration {
                days: 7,
                ..Default::default()
            }
        );
        assert_eq!(
            "1y2m3d4h".parse::<KeepDuration>()?,
            KeepDuration {
                years: 1,
                months: 2,
                days: 3,
                hours: 4
            }
        );
        assert_eq!("2y5m".parse::<KeepDuration>()?.to_string(), "2y5m");
        for bad in ["", "5", "5x", "d", "1d2"] {
            assert!(bad.parse::<KeepDuration>().is_err(), "{bad:?}");
        }
        Ok(())
    }

    #[test]
    fn calendar_arithmetic_is_gos_add_date() -> Result<()> {
        // March 31 minus one month is "February 31": March 3 (2026 is not a leap year).
        let t = SnapshotTime::parse_rfc3339("2026-03-31T12:00:00Z")?;
        let back = KeepDuration {
            months: 1,
            ..Default::default()
        }
        .before(&t);
        assert_eq!(
            back,
            SnapshotTime::parse_rfc3339("2026-03-03T12:00:00Z")?.timestamp()
        );
        let back = KeepDuration {
            years: 1,
            days: 1,
            hours: 13,
            ..Default::default()
        }
        .before(&t);
        assert_eq!(
            back,
            SnapshotTime::parse_rfc3339("2025-03-29T23:00:00Z")?.timestamp()
        );
        Ok(())
    }

    #[test]
    fn keep_last_and_daily_with_several_a_day_and_gaps() {
        let list = vec![
            snap(1, "2026-11-20T03:00:00Z", "db", &[]),
            snap(2, "2026-11-20T15:00:00Z", "db", &[]),
            snap(3, "2026-11-21T03:00:00Z", "db", &[]),
            // 22nd and 23rd missing
            snap(4, "2026-11-24T03:00:00Z", "db", &[]),
            snap(5, "2026-11-24T03:30:00Z", "db", &[]),
            snap(6, "2026-11-25T03:00:00Z", "db", &[]),
        ];
        let last2 = apply_policy(
            &list,
            &RetentionPolicy {
                last: 2,
                ..Default::default()
            },
            far_future(),
        );
        assert_eq!(
            kept_times(&last2),
            ["2026-11-25T03:00:00+00:00", "2026-11-24T03:30:00+00:00"]
        );
        assert_eq!(last2.remove.len(), 4);
        // Days with snapshots count, not calendar days; the newest of each day is kept.
        let daily3 = apply_policy(
            &list,
            &RetentionPolicy {
                daily: 3,
                ..Default::default()
            },
            far_future(),
        );
        assert_eq!(
            kept_times(&daily3),
            [
                "2026-11-25T03:00:00+00:00",
                "2026-11-24T03:30:00+00:00",
                "2026-11-21T03:00:00+00:00"
            ]
        );
        // More days asked than exist: every day, plus the very oldest snapshot.
        let daily10 = apply_policy(
            &list,
            &RetentionPolicy {
                daily: 10,
                ..Default::default()
            },
            far_future(),
        );
        assert_eq!(daily10.keep.len(), 5);
        assert_eq!(
            reasons_of(&daily10, "2026-11-20T03:00:00+00:00"),
            ["oldest daily snapshot"]
        );
        assert_eq!(daily10.reasons[0].counters.daily, 9);
    }

    #[test]
    fn weeks_are_iso_weeks_across_the_new_year() {
        // 2026-12-31 (Thu) and 2027-01-03 (Sun) are both in ISO week 2026-W53;
        // 2027-01-04 (Mon) starts 2027-W01.
        let list = vec![
            snap(1, "2026-12-31T03:00:00Z", "db", &[]),
            snap(2, "2027-01-03T03:00:00Z", "db", &[]),
            snap(3, "2027-01-04T03:00:00Z", "db", &[]),
        ];
        let r = apply_policy(
            &list,
            &RetentionPolicy {
                weekly: 2,
                ..Default::default()
            },
            far_future(),
        );
        assert_eq!(
            kept_times(&r),
            ["2027-01-04T03:00:00+00:00", "2027-01-03T03:00:00+00:00"]
        );
        let r = apply_policy(
            &list,
            &RetentionPolicy {
                yearly: 1,
                ..Default::default()
            },
            far_future(),
        );
        assert_eq!(kept_times(&r), ["2027-01-04T03:00:00+00:00"]);
    }

    #[test]
    fn buckets_use_the_recorded_wall_clock() {
        // Same instant; one snapshot taken at +14:00 (next day there), one at -12:00.
        let list = vec![
            snap(1, "2026-11-20T23:30:00-12:00", "a", &[]), // Nov 20 wall clock
            snap(2, "2026-11-22T01:30:00+14:00", "a", &[]), // same instant, Nov 22 wall clock
            snap(3, "2026-11-21T12:00:00+00:00", "a", &[]), // Nov 21
        ];
        let r = apply_policy(
            &list,
            &RetentionPolicy {
                daily: -1,
                ..Default::default()
            },
            far_future(),
        );
        assert_eq!(r.keep.len(), 3, "three different wall-clock days");
    }

    #[test]
    fn within_counts_from_the_newest_snapshot_not_from_now() -> Result<()> {
        let list = vec![
            snap(1, "2020-01-01T00:00:00Z", "db", &[]),
            snap(2, "2020-01-05T00:00:00Z", "db", &[]),
            snap(3, "2020-01-07T23:00:00Z", "db", &[]),
            snap(4, "2020-01-08T00:00:00Z", "db", &[]),
            // From the future: does not count as the newest.
            snap(5, "2099-01-01T00:00:00Z", "db", &[]),
        ];
        let p = RetentionPolicy {
            within: "7d".parse()?,
            ..Default::default()
        };
        let now = SnapshotTime::parse_rfc3339("2026-11-27T00:00:00Z")?.timestamp();
        let r = apply_policy(&list, &p, now);
        // Newest is 2020-01-08; 7 days before is 2020-01-01T00:00, strictly after it.
        assert_eq!(r.keep.len(), 4);
        assert_eq!(r.remove.len(), 1);
        assert_eq!(r.remove[0].time.to_rfc3339(), "2020-01-01T00:00:00+00:00");
        let p = RetentionPolicy {
            within_daily: "3d".parse()?,
            ..Default::default()
        };
        let r = apply_policy(&list, &p, now);
        assert_eq!(
            reasons_of(&r, "2020-01-07T23:00:00+00:00"),
            ["daily within 3d"]
        );
        Ok(())
    }

    #[test]
    fn tags_keep_without_counting() {
        let list = vec![
            snap(1, "2026-11-20T03:00:00Z", "db", &["monthly", "nightly"]),
            snap(2, "2026-11-21T03:00:00Z", "db", &["nightly"]),
            snap(3, "2026-11-22T03:00:00Z", "db", &[]),
        ];
        let p = RetentionPolicy {
            last: 1,
            tags: vec![vec!["monthly".into(), "nightly".into()]],
            ..Default::default()
        };
        let r = apply_policy(&list, &p, far_future());
        assert_eq!(
            kept_times(&r),
            ["2026-11-22T03:00:00+00:00", "2026-11-20T03:00:00+00:00"]
        );
        assert_eq!(
            reasons_of(&r, "2026-11-20T03:00:00+00:00"),
            ["has tags [monthly, nightly]"]
        );
        // An empty tag matches untagged snapshots.
        let p = RetentionPolicy {
            tags: vec![vec![String::new()]],
            ..Default::default()
        };
        assert_eq!(
            kept_times(&apply_policy(&list, &p, far_future())),
            ["2026-11-22T03:00:00+00:00"]
        );
    }

    #[test]
    fn grouping_by_host_paths_and_tags() -> Result<()> {
        let mut a = snap(1, "2026-11-20T03:00:00Z", "db1", &["x"]);
        a.paths = vec!["/b".into(), "/a".into()];
        let mut b = snap(2, "2026-11-20T03:00:00Z", "db1", &["y"]);
        b.paths = vec!["/a".into(), "/b".into()];
        let c = snap(3, "2026-11-20T03:00:00Z", "db2", &["x"]);
        let list = vec![a, b, c];
        assert_eq!(
            group(&list, GroupBy::default()).len(),
            2,
            "paths compare as sets"
        );
        assert_eq!(group(&list, "tags".parse()?).len(), 2);
        assert_eq!(group(&list, "host,paths,tags".parse()?).len(), 3);
        assert_eq!(group(&list, "".parse()?).len(), 1);
        assert!("hostname".parse::<GroupBy>().is_err());
        Ok(())
    }

    #[test]
    fn describe_and_empty() -> Result<()> {
        assert!(RetentionPolicy::default().is_empty());
        let p = RetentionPolicy {
            daily: 7,
            weekly: 5,
            monthly: -1,
            within: "2y".parse()?,
            ..Default::default()
        };
        assert!(!p.is_empty());
        assert_eq!(p.describe(), "keep 7 daily, 5 weekly, all monthly snapshots and all snapshots within 2y of the newest");
        assert!(RetentionPolicy {
            daily: -2,
            ..Default::default()
        }
        .validate()
        .is_err());
        Ok(())
    }

    /// A declarative statement of the keep-N rules, to check the streaming
    /// implementation against: for each rule, the newest snapshot of each of
    /// the N newest buckets; if fewer buckets exist than N, also the oldest
    /// snapshot of all.
    fn declarative(list: &[Snapshot], p: &RetentionPolicy) -> BTreeSet<Id> {
        let mut sorted = list.to_vec();
        sort_newest_first(&mut sorted);
        let mut keep = BTreeSet::new();
        let rules: [(i64, Bucker); 6] = [
            (p.last, always),
            (p.hourly, ymdh),
            (p.daily, ymd),
            (p.weekly, yw),
            (p.monthly, ym),
            (p.yearly, y),
        ];
        for (count, bucker) in rules {
            if count == 0 {
                continue;
            }
            let mut seen = HashSet::new();
            let mut buckets_taken = 0i64;
            for (nr, s) in sorted.iter().enumerate() {
                let wall = s
                    .time
                    .timestamp()
                    .to_zoned_datetime(zone_of(&s.time))
                    .datetime();
                let key = bucker(&wall, nr as i64);
                if count != -1 && buckets_taken == count {
                    break;
                }
                if seen.insert(key) {
                    keep.insert(s.id);
                    buckets_taken += 1;
                }
            }
            if count == -1 || buckets_taken < count {
                if let Some(oldest) = sorted.last() {
                    keep.insert(oldest.id);
                }
            }
        }
        keep
    }

    fn schedule() -> impl Strategy<Value = Vec<Snapshot>> {
        // Up to 400 snapshots over ~3 years: gaps, several a day; one UTC
        // offset per schedule (see `mixed_offsets_follow_restic` for mixed).
        (
            proptest::collection::vec((0i64..(3 * 365 * 24), 0u32..3600), 1..400),
            prop::sample::select(vec![-8i8, 0, 1, 2, 9, 14]),
        )
            .prop_map(|(v, off)| {
                let offset = jiff::tz::Offset::from_hours(off).expect("offset");
                v.into_iter()
                    .enumerate()
                    .map(|(i, (hour, secs))| {
                        let ts =
                            Timestamp::from_second(1_700_000_000 + hour * 3600 + i64::from(secs))
                                .expect("ts");
                        let t = ts
                            .to_zoned_datetime(TimeZone::fixed(offset))
                            .strftime("%Y-%m-%dT%H:%M:%S%:z")
                            .to_string();
                        snap(i as u32, &t, "db", &[])
                    })
                    .collect()
            })
    }

    #[test]
    fn mixed_offsets_follow_restic() {
        // Newest first by instant, the wall-clock days run 9, 8, 9, 7: restic
        // starts a new bucket whenever the day differs from the previous
        // kept one, so the second "9" counts again and day 7 is not reached.
        let list = vec![
            snap(1, "2025-11-09T01:13:20-08:00", "db", &[]), // day 9
            snap(2, "2025-11-08T06:13:20-08:00", "db", &[]), // day 8
            snap(3, "2025-11-09T00:00:00+14:00", "db", &[]), // day 9 again
            snap(4, "2025-11-07T08:00:00-08:00", "db", &[]), // day 7
        ];
        let r = apply_policy(
            &list,
            &RetentionPolicy {
                daily: 3,
                ..Default::default()
            },
            far_future(),
        );
        let ids: Vec<u8> = r.keep.iter().map(|s| s.id.as_bytes()[3]).collect();
        assert_eq!(ids, [1, 2, 3]);
    }

    proptest! {
        #[test]
        fn streaming_rules_match_their_declarative_statement(
            list in schedule(),
            counts in proptest::array::uniform6(prop::sample::select(vec![0i64, 0, 1, 2, 3, 7, 12, -1])),
        ) {
            let p = RetentionPolicy {
                last: counts[0], hourly: counts[1], daily: counts[2],
                weekly: counts[3], monthly: counts[4], yearly: counts[5],
                ..Default::default()
            };
            let r = apply_policy(&list, &p, far_future());
            prop_assert_eq!(r.keep.len() + r.remove.len(), list.len());
            let kept: BTreeSet<Id> = r.keep.iter().map(|s| s.id).collect();
            prop_assert_eq!(kept, declarative(&list, &p));
            prop_assert_eq!(r.reasons.len(), r.keep.len());
        }

        #[test]
        fn raising_a_count_never_removes_more(list in schedule(), n in 1i64..20) {
            let fewer = apply_policy(&list, &RetentionPolicy { daily: n, weekly: 2, ..Default::default() }, far_future());
            let more = apply_policy(&list, &RetentionPolicy { daily: n + 1, weekly: 2, ..Default::default() }, far_future());
            let kept_more: BTreeSet<Id> = more.keep.iter().map(|s| s.id).collect();
            for s in &fewer.keep {
                prop_assert!(kept_more.contains(&s.id));
            }
        }
    }
}
