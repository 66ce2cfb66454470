//! A repository in S3-compatible object storage, through Apache OpenDAL.
//!
//! OpenDAL is async; cairn's storage trait is not (its callers are rayon
//! and plain threads). One process-wide tokio runtime serves every
//! operator, and OpenDAL's blocking operator runs each call on it. Calls
//! go through three layers: a timeout per request, retries with
//! exponential backoff and jitter for transient failures (5xx, throttling,
//! timeouts, dropped connections), and a bound on concurrent requests
//! (`--connections`).

use std::sync::OnceLock;
use std::time::Duration;

use opendal::layers::{
    ConcurrentLimitLayer, RetryEvent, RetryInterceptor, RetryLayer, TimeoutLayer,
};
use opendal::options::{ListOptions, ReadOptions, WriteOptions};

use super::{Backend, ObjectInfo, ObjectKind, ObjectStoreOptions};
use crate::error::{Error, ErrorKind, Result};
use crate::id::is_object_name;

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
}

fn runtime() -> Result<&'static tokio::runtime::Runtime> {
    static RT: OnceLock<std::result::Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .thread_name("cairn-io")
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|e| Error::new(ErrorKind::Io, format!("starting the I/O runtime: {e}")))
}

/// A repository under a prefix of an S3 bucket.
pub struct ObjectStoreBackend {
    op: opendal::blocking::Operator,
    location: String,
    connections: usize,
}

impl ObjectStoreBackend {
    /// Connects to S3-compatible storage. Credentials and region come from
    /// the usual AWS variables (`AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_DEFAULT_REGION`
    /// or `AWS_REGION`, `AWS_PROFILE` and the shared config files).
    pub fn s3(loc: &S3Location, opts: &ObjectStoreOptions) -> Result<Self> {
        let region = std::env::var("AWS_DEFAULT_REGION")
            .or_else(|_| std::env::var("AWS_REGION"))
            .unwrap_or_else(|_| "us-east-1".to_string());
        let builder = opendal::services::S3::default()
            .endpoint(&loc.endpoint)
            .bucket(&loc.bucket)
            .root(&format!("/{}", loc.prefix))
            .region(&region)
            .disable_ec2_metadata();
        let location = format!(
            "s3:{}/{}{}{}",
            loc.endpoint,
            loc.bucket,
            if loc.prefix.is_empty() { "" } else { "/" },
            loc.prefix
        );
        let op = opendal::Operator::new(builder)
            .map_err(|e| map_err(&location, "configuring", e))?
            .layer(
                TimeoutLayer::new()
                    .with_timeout(opts.timeout)
                    .with_io_timeout(opts.timeout),
            )
            .layer(
                RetryLayer::new()
                    .with_notify(RetryNotice(opts.on_retry))
                    .with_max_times(opts.attempts.saturating_sub(1))
                    .with_jitter()
                    .with_factor(2.0)
                    .with_min_delay(Duration::from_millis(200))
                    .with_max_delay(Duration::from_secs(10)),
            )
            .layer(ConcurrentLimitLayer::new(opts.connections.max(1)));
        let rt = runtime()?;
        let _entered = rt.enter();
        let op = opendal::blocking::Operator::new(op)
            .map_err(|e| map_err(&location, "configuring", e))?;
        Ok(ObjectStoreBackend {
            op,
            location,
            connections: opts.connections.max(1),
        })
    }

    fn missing(&self, kind: ObjectKind, name: &str) -> Error {
        Error::new(
            ErrorKind::MissingObject,
            format!(
                "{} {name} is missing ({}/{})",
                kind.noun(),
                self.location,
                kind.path(name)
            ),
        )
    }

    fn err(&self, what: &str, kind: ObjectKind, name: &str, e: opendal::Error) -> Error {
        if e.kind() == opendal::ErrorKind::NotFound {
            return self.missing(kind, name);
        }
        map_err(&self.location, &format!("{what} {}", kind.path(name)), e)
    }
}

/// Passes each retry, in words, to [`super::ObjectStoreOptions::on_retry`].
struct RetryNotice(Option<fn(&str)>);

impl RetryInterceptor for RetryNotice {
    fn intercept(&self, event: RetryEvent<'_>) {
        if let Some(tell) = self.0 {
            tell(&format!(
                "storage request {} failed ({}); retry {} in {:.1}s",
                event.op.into_static(),
                describe(event.err),
                event.attempt,
                event.retry_after.as_secs_f64()
            ));
        }
    }
}

/// The HTTP status of a storage error response, from the response context
/// opendal attaches (`response: Parts { status: 503, ... }`).
fn http_status(e: &opendal::Error) -> Option<u16> {
    let text = e.to_string();
    let at = text.find("status: ")? + "status: ".len();
    text.get(at..at + 3)?.parse().ok()
}

/// `503 Service Unavailable`.
fn status_words(code: u16) -> String {
    let reason = match code {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        409 => "Conflict",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    };
    format!("{code} {reason}").trim_end().to_string()
}

/// One line for a storage error: what failed, and the cause in words
/// (opendal's own text lists the whole request context).
fn map_err(location: &str, what: &str, e: opendal::Error) -> Error {
    use opendal::ErrorKind as K;
    let (kind, cause) = match e.kind() {
        K::PermissionDenied => (
            ErrorKind::AccessDenied,
            "access denied: check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or the profile) \
             and the bucket's permissions"
                .to_string(),
        ),
        K::RateLimited => (
            ErrorKind::Io,
            "the storage is throttling requests (still, after every retry)".to_string(),
        ),
        _ => (ErrorKind::Io, describe(&e)),
    };
    Error::new(kind, format!("{location}: {what}: {cause}"))
}

/// The code and message of an S3 error response, from opendal's
/// `S3Error { code: "NoSuchBucket", message: "...", ... }` text.
fn s3_error_code(message: &str) -> Option<(&str, &str)> {
    let field = |name: &str| {
        let start = message.find(&format!("{name}: \""))? + name.len() + 3;
        let len = message[start..].find('"')?;
        Some(&message[start..start + len])
    };
    if !message.starts_with("S3Error") {
        return None;
    }
    Some((field("code")?, field("message").unwrap_or("")))
}

/// opendal's message and the innermost cause of an error ("error sending
/// request: tcp connect error: Connection refused (os error 111)" is
/// reduced to its last part), without the request context.
fn describe(e: &opendal::Error) -> String {
    let mut root: Option<String> = None;
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        root = Some(s.to_string());
        source = s.source();
    }
    let status = http_status(e).map(status_words);
    let message = match (s3_error_code(e.message()), status) {
        (Some(("NoSuchBucket", _)), _) => "the bucket does not exist (create it first)".to_string(),
        (Some((code, "")), _) => format!("S3 error {code}"),
        (Some((code, text)), _) => format!("S3 error {code}: {text}"),
        // An answer without an S3 error body (a proxy's or an overloaded
        // server's 503): its status says what happened.
        (None, Some(status)) if e.message().trim().is_empty() => {
            format!("the storage answered HTTP {status}")
        }
        (None, Some(status)) => format!(
            "the storage answered HTTP {status}: {}",
            e.message().replace('\n', " ")
        ),
        (None, None) => e.message().replace('\n', " "),
    };
    match root {
        Some(r) if !r.is_empty() && r != message => format!("{message}: {r}"),
        _ if message.is_empty() => e.kind().to_string(),
        _ => message,
    }
}

impl Backend for ObjectStoreBackend {
    fn location(&self) -> String {
        self.location.clone()
    }

    /// Every connection may carry a pack upload: a single stream to object
    /// storage is limited by latency, not bandwidth.
    fn parallel_requests(&self) -> usize {
        self.connections
    }

    /// Not trusted, whatever the server says: see the trait.
    fn atomic_create_only(&self) -> bool {
        false
    }

    fn create(&self) -> Result<()> {
        // The bucket must exist; listing it proves it does and that the
        // credentials work, before a key file is written.
        self.op
            .list_options("/", ListOptions::default())
            .map(|_| ())
            .map_err(|e| map_err(&self.location, "listing the bucket", e))
    }

    fn put(&self, kind: ObjectKind, name: &str, data: &[u8]) -> Result<bool> {
        let path = kind.path(name);
        let opts = WriteOptions {
            if_not_exists: true,
            ..WriteOptions::default()
        };
        match self.op.write_options(&path, data.to_vec(), opts) {
            Ok(_) => Ok(true),
            // Objects are named by their contents (all but `config`,
            // which is created once): one already there is this one.
            Err(e) if e.kind() == opendal::ErrorKind::ConditionNotMatch => Ok(false),
            Err(e) => Err(map_err(&self.location, &format!("storing {path}"), e)),
        }
    }

    fn get(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>> {
        let path = kind.path(name);
        let meta = self
            .op
            .stat(&path)
            .map_err(|e| self.err("reading", kind, name, e))?;
        if meta.content_length() > kind.max_size() {
            return Err(Error::corrupt(format!(
                "{} {name} is {} bytes, more than a {} can be; refusing to read it",
                kind.noun(),
                meta.content_length(),
                kind.noun()
            )));
        }
        let buf = self
            .op
            .read(&path)
            .map_err(|e| self.err("reading", kind, name, e))?;
        if buf.len() as u64 > kind.max_size() {
            return Err(Error::corrupt(format!(
                "{} {name} grew past the limit while being read",
                kind.noun()
            )));
        }
        Ok(buf.to_vec())
    }

    fn get_range(&self, kind: ObjectKind, name: &str, offset: u64, length: u64) -> Result<Vec<u8>> {
        let path = kind.path(name);
        if length == 0 {
            return Ok(Vec::new());
        }
        let end = offset
            .checked_add(length)
            .ok_or_else(|| Error::invalid("range out of bounds"))?;
        let opts = ReadOptions {
            range: (offset..end).into(),
            ..ReadOptions::default()
        };
        let buf = self.op.read_options(&path, opts).map_err(|e| {
            if e.kind() == opendal::ErrorKind::RangeNotSatisfied {
                Error::corrupt(format!(
                    "{} {name} is truncated: cannot read {length} bytes at offset {offset}",
                    kind.noun()
                ))
            } else {
                self.err("reading", kind, name, e)
            }
        })?;
        if buf.len() as u64 != length {
            return Err(Error::corrupt(format!(
                "{} {name} is truncated: cannot read {length} bytes at offset {offset}",
                kind.noun()
            )));
        }
        Ok(buf.to_vec())
    }

    fn list(&self, kind: ObjectKind) -> Result<Vec<ObjectInfo>> {
        if kind == ObjectKind::Config {
            return Ok(Vec::new());
        }
        let dir = format!("{}/", kind.dir());
        let opts = ListOptions {
            recursive: true,
            ..ListOptions::default()
        };
        let entries = self
            .op
            .list_options(&dir, opts)
            .map_err(|e| map_err(&self.location, &format!("listing {dir}"), e))?;
        let mut out = Vec::with_capacity(entries.len());
        for entry in entries {
            let meta = entry.metadata();
            if !meta.is_file() {
                continue;
            }
            let name = entry.name().to_string();
            if !is_object_name(&name) {
                continue;
            }
            out.push(ObjectInfo {
                name,
                size: meta.content_length(),
                modified: meta.last_modified().map(|t| t.into_inner().as_second()),
            });
        }
        Ok(out)
    }

    fn delete(&self, kind: ObjectKind, name: &str) -> Result<()> {
        let path = kind.path(name);
        match self.op.delete(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(map_err(&self.location, &format!("deleting {path}"), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_error_responses_become_short_text() {
        let m = r#"S3Error { code: "NoSuchBucket", message: "", resource: "", request_id: "" }"#;
        assert_eq!(s3_error_code(m), Some(("NoSuchBucket", "")));
        let m = r#"S3Error { code: "SlowDown", message: "Please reduce", resource: "" }"#;
        assert_eq!(s3_error_code(m), Some(("SlowDown", "Please reduce")));
        assert_eq!(s3_error_code("send http request"), None);
        assert_eq!(s3_error_code(r#"S3Error { code: "unterminated"#), None);
    }

    #[test]
    fn locations_parse_like_restic() -> Result<()> {
        let l = S3Location::parse("https://s3.example.com:9000/bucket/some/prefix/")?;
        assert_eq!(l.endpoint, "https://s3.example.com:9000");
        assert_eq!(l.bucket, "bucket");
        assert_eq!(l.prefix, "some/prefix");
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
}
