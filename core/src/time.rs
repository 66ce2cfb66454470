//! Snapshot times: an instant plus the UTC offset it was taken at, written
//! as RFC 3339 (`2026-11-27T03:00:00.123456789+01:00`).

use std::cmp::Ordering;
use std::fmt;

use jiff::tz::{Offset, TimeZone};
use jiff::Timestamp;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

const RFC3339: &str = "%Y-%m-%dT%H:%M:%S%.f%:z";

/// The system time zone, looked up once per process. Without `TZ`, read
/// from `/etc/localtime` directly: jiff's own lookup lists the whole
/// zoneinfo tree to name the zone (about 5 ms, on every `wal-push`), and
/// only the offsets are needed.
pub fn system_zone() -> TimeZone {
    static ZONE: std::sync::OnceLock<TimeZone> = std::sync::OnceLock::new();
    ZONE.get_or_init(|| {
        if std::env::var_os("TZ").is_none() {
            if let Ok(bytes) = std::fs::read("/etc/localtime") {
                if let Ok(zone) = TimeZone::tzif("Local", &bytes) {
                    return zone;
                }
            }
        }
        TimeZone::system()
    })
    .clone()
}

/// A point in time with the offset of the place it was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SnapshotTime {
    timestamp: Timestamp,
    offset: Offset,
}

impl SnapshotTime {
    /// Now, in the system's time zone.
    pub fn now() -> Self {
        Self::from_timestamp(Timestamp::now())
    }

    /// An instant, with the system time zone's offset at that instant.
    pub fn from_timestamp(timestamp: Timestamp) -> Self {
        let offset = system_zone().to_offset(timestamp);
        SnapshotTime { timestamp, offset }
    }

    /// The instant.
    pub fn timestamp(&self) -> Timestamp {
        self.timestamp
    }

    /// The recorded UTC offset.
    pub fn offset(&self) -> Offset {
        self.offset
    }

    /// RFC 3339 with nanoseconds and offset.
    pub fn to_rfc3339(&self) -> String {
        self.timestamp
            .to_zoned_datetime(TimeZone::fixed(self.offset))
            .strftime(RFC3339)
            .to_string()
    }

    /// Parses RFC 3339 with an explicit offset or `Z`, and nothing else: the
    /// form stored in snapshots, which must mean the same instant to every
    /// reader whatever its time zone.
    pub fn parse_rfc3339(s: &str) -> Result<Self> {
        if let Ok(tm) = jiff::fmt::strtime::parse(RFC3339, s) {
            if let (Ok(ts), Some(offset)) = (tm.to_timestamp(), tm.offset()) {
                return Ok(SnapshotTime {
                    timestamp: ts,
                    offset,
                });
            }
        }
        if s.ends_with('Z') || s.ends_with('z') {
            if let Ok(ts) = s.parse::<Timestamp>() {
                return Ok(SnapshotTime {
                    timestamp: ts,
                    offset: Offset::UTC,
                });
            }
        }
        Err(Error::corrupt(format!(
            "{s:?} is not an RFC 3339 time with an offset"
        )))
    }

    /// Parses RFC 3339 (`2026-11-20T03:00:00Z`, `...+01:00`), or a local
    /// civil time `2026-11-20 03:00[:00]` / `2026-11-20T03:00:00` /
    /// `2026-11-20` in the system time zone (for `backup --time`).
    pub fn parse(s: &str) -> Result<Self> {
        let s = s.trim();
        if let Ok(t) = SnapshotTime::parse_rfc3339(s) {
            return Ok(t);
        }
        let civil = s
            .replace(' ', "T")
            .parse::<jiff::civil::DateTime>()
            .or_else(|_| s.parse::<jiff::civil::Date>().map(|d| d.to_datetime(jiff::civil::Time::midnight())))
            .map_err(|_| {
                Error::invalid(format!(
                    "cannot parse time {s:?}: use RFC 3339 (2026-11-20T03:00:00+01:00) or \"2026-11-20 03:00:00\""
                ))
            })?;
        let zoned = civil
            .to_zoned_datetime(system_zone())
            .map_err(|e| Error::invalid(format!("time {s:?}: {e}")))?;
        Ok(SnapshotTime {
            timestamp: zoned.timestamp(),
            offset: zoned.offset(),
        })
    }

    /// `YYYY-MM-DD HH:MM:SS` in the system time zone, for tables.
    pub fn local_display(&self) -> String {
        self.timestamp
            .to_zoned_datetime(system_zone())
            .strftime("%Y-%m-%d %H:%M:%S")
            .to_string()
    }
}

impl PartialOrd for SnapshotTime {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SnapshotTime {
    fn cmp(&self, other: &Self) -> Ordering {
        self.timestamp
            .cmp(&other.timestamp)
            .then(self.offset.seconds().cmp(&other.offset.seconds()))
    }
}

impl fmt::Display for SnapshotTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for SnapshotTime {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for SnapshotTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        SnapshotTime::parse_rfc3339(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_offset_and_nanoseconds() -> Result<()> {
        let t = SnapshotTime::parse("2026-11-20T03:00:00.123456789+01:00")?;
        assert_eq!(t.offset().seconds(), 3600);
        assert_eq!(t.to_rfc3339(), "2026-11-20T03:00:00.123456789+01:00");
        let z = SnapshotTime::parse("2026-11-20T02:00:00.123456789Z")?;
        assert_eq!(z.timestamp(), t.timestamp());
        assert_eq!(SnapshotTime::parse(&z.to_rfc3339())?, z);
        Ok(())
    }

    #[test]
    fn civil_times_and_garbage() {
        assert!(SnapshotTime::parse("2026-11-20 03:00:00").is_ok());
        assert!(SnapshotTime::parse("2026-11-20").is_ok());
        assert!(SnapshotTime::parse("yesterday").is_err());
        // Stored times must carry an offset.
        assert!(SnapshotTime::parse_rfc3339("2026-11-20T03:00:00").is_err());
        assert!(serde_json::from_str::<SnapshotTime>("\"2026-11-20 03:00:00\"").is_err());
    }
}
