//! Repository locations, spelled as restic spells them: a local
//! directory, `s3:…`, `azure:CONTAINER:/PATH` or `sftp:[USER@]HOST:/PATH`.
//! Parsing only: nothing here connects to anything.

use crate::error::{Error, Result};

/// Where a repository is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A local directory.
    Local(String),
    /// A prefix of an S3 bucket.
    S3(S3Location),
    /// A path in an Azure Blob Storage container.
    Azure(AzureLocation),
    /// A directory on an SSH server, through SFTP.
    Sftp(SftpLocation),
}

impl Location {
    /// Parses a repository location.
    pub fn parse(location: &str) -> Result<Location> {
        if let Some(rest) = location.strip_prefix("s3:") {
            return S3Location::parse(rest).map(Location::S3);
        }
        if let Some(rest) = location.strip_prefix("azure:") {
            return AzureLocation::parse(rest).map(Location::Azure);
        }
        if let Some(rest) = location.strip_prefix("sftp:") {
            return SftpLocation::parse(rest).map(Location::Sftp);
        }
        // restic's spelling of a local repository.
        if let Some(path) = location.strip_prefix("local:") {
            return Ok(Location::Local(path.to_string()));
        }
        if let Some(scheme) = scheme(location) {
            return Err(Error::invalid(format!(
                "{location}: unknown repository type `{scheme}:`; cairn supports a local \
                 directory, s3:https://host[:port]/bucket[/prefix], azure:CONTAINER:/PATH and \
                 sftp:[USER@]HOST:/PATH (a local path containing a colon can be written \
                 ./{location})"
            )));
        }
        Ok(Location::Local(location.to_string()))
    }
}

/// The `word` of a location that starts like `word:` (restic's `rest:`,
/// `b2:`, `gs:`, `rclone:`, `swift:`, or a URL): a letter, then letters,
/// digits, `+`, `-` or `.`, then a colon. A path (`./a:b`, `/srv/a:b`)
/// never starts so.
fn scheme(location: &str) -> Option<&str> {
    let (word, _) = location.split_once(':')?;
    let mut chars = word.chars();
    let first = chars.next()?;
    (first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
    .then_some(word)
}

/// Where an S3 repository is: `s3:https://host:port/bucket/prefix`, or
/// restic's `s3:host/bucket/prefix` (HTTPS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    /// `https://host[:port]` or `http://host[:port]`.
    pub endpoint: String,
    /// Bucket name.
    pub bucket: String,
    /// Key prefix inside the bucket (no leading or trailing `/`; may be
    /// empty).
    pub prefix: String,
}

impl S3Location {
    /// Parses what follows `s3:`.
    pub fn parse(rest: &str) -> Result<Self> {
        let bad = |why: &str| {
            Error::invalid(format!(
                "invalid S3 location s3:{rest}: {why} (use s3:https://host[:port]/bucket[/prefix])"
            ))
        };
        let (scheme, after) = if let Some(r) = rest.strip_prefix("https://") {
            ("https", r)
        } else if let Some(r) = rest.strip_prefix("http://") {
            ("http", r)
        } else {
            ("https", rest)
        };
        let (host, path) = after.split_once('/').ok_or_else(|| bad("no bucket"))?;
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let path = path.trim_matches('/');
        let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
        if bucket.is_empty() {
            return Err(bad("no bucket"));
        }
        Ok(S3Location {
            endpoint: format!("{scheme}://{host}"),
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
        })
    }

    /// The location as it parses back.
    pub fn display(&self) -> String {
        format!(
            "s3:{}/{}{}{}",
            self.endpoint,
            self.bucket,
            if self.prefix.is_empty() { "" } else { "/" },
            self.prefix
        )
    }
}

/// Where an Azure Blob Storage repository is: restic's
/// `azure:CONTAINER:/PATH`. The account and its endpoint come from the
/// environment (`AZURE_ACCOUNT_NAME`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureLocation {
    /// Container name.
    pub container: String,
    /// Path inside the container (no leading or trailing `/`; may be
    /// empty).
    pub prefix: String,
}

impl AzureLocation {
    /// Parses what follows `azure:`.
    pub fn parse(rest: &str) -> Result<Self> {
        let bad = |why: &str| {
            Error::invalid(format!(
                "invalid Azure location azure:{rest}: {why} (use azure:CONTAINER:/PATH)"
            ))
        };
        let (container, path) = rest.split_once(':').unwrap_or((rest, ""));
        // Azure's rule: 3 to 63 of lower-case letters, digits and dashes.
        let valid = (3..=63).contains(&container.len())
            && container
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !container.starts_with('-')
            && !container.ends_with('-')
            && !container.contains("--");
        if container.is_empty() {
            return Err(bad("no container"));
        }
        if !valid {
            return Err(bad(
                "a container name is 3 to 63 lower-case letters, digits and single dashes",
            ));
        }
        Ok(AzureLocation {
            container: container.to_string(),
            prefix: path.trim_matches('/').to_string(),
        })
    }

    /// The location as it parses back.
    pub fn display(&self) -> String {
        format!("azure:{}:/{}", self.container, self.prefix)
    }
}

/// Where an SFTP repository is: restic's `sftp:[USER@]HOST:/PATH` or
/// `sftp://[USER@]HOST[:PORT]/PATH`. HOST may be a `Host` of
/// `~/.ssh/config`: cairn runs the system's `ssh`, which reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SftpLocation {
    /// Login name, when the location gives one.
    pub user: Option<String>,
    /// Host name, address or `~/.ssh/config` alias (an IPv6 address
    /// without its brackets).
    pub host: String,
    /// Port, when the location gives one.
    pub port: Option<u16>,
    /// Absolute path of the repository's directory on the server (no
    /// trailing `/`, unless it is `/`).
    pub path: String,
}

impl SftpLocation {
    /// Parses what follows `sftp:`.
    pub fn parse(rest: &str) -> Result<Self> {
        let bad = |why: &str| {
            Error::invalid(format!(
                "invalid SFTP location sftp:{rest}: {why} (use sftp:[USER@]HOST:/PATH or \
                 sftp://[USER@]HOST[:PORT]/PATH)"
            ))
        };
        let (authority, path, url) = if let Some(r) = rest.strip_prefix("//") {
            let (authority, path) = match r.find('/') {
                Some(at) => r.split_at(at),
                None => (r, ""),
            };
            // restic writes an absolute path as `//srv/repo`; `/srv/repo`
            // is the same here.
            let path = if path.starts_with("//") {
                &path[1..]
            } else {
                path
            };
            (authority, path, true)
        } else {
            // scp's `[user@]host:path`, where host may be `[v6]`.
            let split = if rest.contains('[') {
                rest.find("]:").map(|at| at + 1)
            } else {
                rest.find(':')
            };
            let at = split.ok_or_else(|| bad("no path"))?;
            (&rest[..at], &rest[at + 1..], false)
        };
        let (user, hostport) = match authority.rsplit_once('@') {
            Some((user, host)) if !user.is_empty() => (Some(user.to_string()), host),
            Some(_) => return Err(bad("empty user name")),
            None => (None, authority),
        };
        let (host, port) = split_host_port(hostport, url).ok_or_else(|| bad("bad port"))?;
        if host.is_empty() {
            return Err(bad("no host"));
        }
        if path.is_empty() {
            return Err(bad("no path"));
        }
        if !path.starts_with('/') {
            return Err(bad(
                "the path must be absolute (a path relative to the login directory is not \
                 supported; write the whole path)",
            ));
        }
        let path = match path.trim_end_matches('/') {
            "" => "/",
            p => p,
        };
        Ok(SftpLocation {
            user,
            host: host.to_string(),
            port,
            path: path.to_string(),
        })
    }

    /// The location as it parses back.
    pub fn display(&self) -> String {
        let user = self
            .user
            .as_deref()
            .map(|u| format!("{u}@"))
            .unwrap_or_default();
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match self.port {
            Some(port) => format!("sftp://{user}{host}:{port}{}", self.path),
            None => format!("sftp:{user}{host}:{}", self.path),
        }
    }
}

/// `host`, `host:port` (URL form only), `[v6]` or `[v6]:port`.
fn split_host_port(hostport: &str, url: bool) -> Option<(&str, Option<u16>)> {
    if let Some(r) = hostport.strip_prefix('[') {
        let (host, after) = r.split_once(']')?;
        return match after.strip_prefix(':') {
            Some(port) if url => Some((host, Some(port.parse().ok()?))),
            Some(_) => None,
            None if after.is_empty() => Some((host, None)),
            None => None,
        };
    }
    match hostport.rsplit_once(':') {
        Some((host, port)) if url => Some((host, Some(port.parse().ok()?))),
        Some(_) => None,
        None => Some((hostport, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_locations_parse_like_restic() -> Result<()> {
        let l = S3Location::parse("https://s3.example.com:9000/bucket/some/prefix/")?;
        assert_eq!(l.endpoint, "https://s3.example.com:9000");
        assert_eq!(l.bucket, "bucket");
        assert_eq!(l.prefix, "some/prefix");
        assert_eq!(
            l.display(),
            "s3:https://s3.example.com:9000/bucket/some/prefix"
        );
        let l = S3Location::parse("http://127.0.0.1:9000/b")?;
        assert_eq!(
            (l.endpoint.as_str(), l.bucket.as_str(), l.prefix.as_str()),
            ("http://127.0.0.1:9000", "b", "")
        );
        let l = S3Location::parse("s3.amazonaws.com/bucket/p")?;
        assert_eq!(l.endpoint, "https://s3.amazonaws.com");
        for bad in ["", "host", "https://host", "https://host/", "/bucket"] {
            assert!(S3Location::parse(bad).is_err(), "{bad}");
        }
        Ok(())
    }

    #[test]
    fn azure_locations_parse_like_restic() -> Result<()> {
        let l = AzureLocation::parse("backups:/db1/nightly/")?;
        assert_eq!(
            (l.container.as_str(), l.prefix.as_str()),
            ("backups", "db1/nightly")
        );
        assert_eq!(l.display(), "azure:backups:/db1/nightly");
        let l = AzureLocation::parse("backups")?;
        assert_eq!(l.prefix, "");
        let l = AzureLocation::parse("back-ups:/")?;
        assert_eq!(l.prefix, "");
        for bad in [
            "",
            ":/x",
            "ab:/x",
            "Backups:/x",
            "-ab:/x",
            "a--b:/x",
            "a_b:/x",
        ] {
            assert!(AzureLocation::parse(bad).is_err(), "{bad}");
        }
        Ok(())
    }

    #[test]
    fn sftp_locations_parse_like_restic() -> Result<()> {
        let l = SftpLocation::parse("backup@db1.example.com:/srv/cairn/")?;
        assert_eq!(l.user.as_deref(), Some("backup"));
        assert_eq!((l.host.as_str(), l.port), ("db1.example.com", None));
        assert_eq!(l.path, "/srv/cairn");
        assert_eq!(l.display(), "sftp:backup@db1.example.com:/srv/cairn");
        let l = SftpLocation::parse("offsite:/")?;
        assert_eq!(
            (l.user, l.host.as_str(), l.path.as_str()),
            (None, "offsite", "/")
        );
        let l = SftpLocation::parse("//u@127.0.0.1:2222//srv/repo")?;
        assert_eq!((l.host.as_str(), l.port), ("127.0.0.1", Some(2222)));
        assert_eq!(l.path, "/srv/repo");
        assert_eq!(l.display(), "sftp://u@127.0.0.1:2222/srv/repo");
        assert_eq!(SftpLocation::parse(&l.display()[5..])?, l);
        let l = SftpLocation::parse("//[::1]:22/r")?;
        assert_eq!(
            (l.host.as_str(), l.port, l.path.as_str()),
            ("::1", Some(22), "/r")
        );
        let l = SftpLocation::parse("u@[::1]:/r")?;
        assert_eq!((l.host.as_str(), l.port), ("::1", None));
        assert_eq!(SftpLocation::parse(&l.display()[5..])?, l);
        for bad in [
            "",
            "host",
            "host:",
            "host:relative/path",
            ":/x",
            "@host:/x",
            "//host",
            "//host:notaport/x",
            "//host:99999/x",
            "[::1:/x",
        ] {
            assert!(SftpLocation::parse(bad).is_err(), "{bad}");
        }
        Ok(())
    }

    #[test]
    fn other_schemes_are_refused_and_paths_stay_paths() -> Result<()> {
        for bad in [
            "rest:http://h/",
            "b2:bucket:/p",
            "gs:b:/",
            "swift:c:/p",
            "https://x",
        ] {
            let e = Location::parse(bad)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.contains("unknown repository type"), "{bad}: {e}");
        }
        for path in ["/srv/a:b", "./a:b", "repo", "C"] {
            assert_eq!(Location::parse(path)?, Location::Local(path.to_string()));
        }
        assert_eq!(Location::parse("local:/x")?, Location::Local("/x".into()));
        assert!(matches!(
            Location::parse("azure:abc:/x")?,
            Location::Azure(_)
        ));
        assert!(matches!(Location::parse("sftp:h:/x")?, Location::Sftp(_)));
        assert!(matches!(Location::parse("s3:h/b")?, Location::S3(_)));
        Ok(())
    }
}
