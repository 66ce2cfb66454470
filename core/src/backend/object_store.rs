//! A repository in S3-compatible object storage, Azure Blob Storage or on
//! an SFTP server, through Apache OpenDAL.
//!
//! OpenDAL is async; cairn's storage trait is not (its callers are rayon
//! and plain threads). Each backend has its own tokio runtime, and
//! OpenDAL's blocking operator runs each call on it. Calls
//! go through three layers: a timeout per request, retries with
//! exponential backoff and jitter for transient failures (5xx, throttling,
//! timeouts, dropped connections), and a bound on concurrent requests
//! (`--connections`).

// Built with only some of the services, the others' pieces are unused.
#![cfg_attr(
    not(all(feature = "s3", feature = "azure", feature = "sftp")),
    allow(dead_code, unused_imports)
)]

use std::time::Duration;

use opendal::layers::{
    ConcurrentLimitLayer, RetryEvent, RetryInterceptor, RetryLayer, TimeoutLayer,
};
use opendal::options::{ListOptions, ReadOptions, WriteOptions};

use super::{AzureLocation, S3Location, SftpLocation};
use super::{Backend, ObjectInfo, ObjectKind, ObjectStoreOptions};
use crate::error::{Error, ErrorKind, Result};
use crate::id::is_object_name;

/// The retry schedule: the first wait, doubling (with the retry layer's
/// jitter) up to the longest.
const RETRY_FIRST_DELAY: Duration = Duration::from_millis(200);
const RETRY_MAX_DELAY: Duration = Duration::from_secs(10);

/// The tokio runtime a backend's calls run on.
fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .thread_name("cairn-io")
        .enable_all()
        .build()
        .map_err(|e| Error::new(ErrorKind::Io, format!("starting the I/O runtime: {e}")))
}

/// Which service a backend talks to: their credentials, error texts and
/// write semantics differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Service {
    S3,
    Azure,
    Sftp,
}

impl Service {
    /// What to check when the service refuses access.
    fn access_hint(self) -> &'static str {
        match self {
            Service::S3 => {
                "access denied: check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or the profile) \
                 and the bucket's permissions"
            }
            Service::Azure => {
                "access denied: check AZURE_ACCOUNT_NAME and AZURE_ACCOUNT_KEY (or \
                 AZURE_ACCOUNT_SAS) and the container's permissions"
            }
            Service::Sftp => {
                "permission denied on the server: check the owner and mode of the repository \
                 directory for the SSH user"
            }
        }
    }
}

/// A repository under a prefix of an S3 bucket, a path of an Azure
/// container, or a directory on an SFTP server.
pub struct ObjectStoreBackend {
    op: opendal::blocking::Operator,
    location: String,
    connections: usize,
    service: Service,
    attempts: usize,
    on_retry: Option<fn(&str)>,
    /// Declared after `op`, so dropped after it: dropping the runtime ends
    /// the tasks that still hold connections. An SSH session ends its
    /// `ssh` master process only when it is dropped, and the master
    /// (`ControlPersist=yes`) would otherwise outlive cairn.
    _rt: tokio::runtime::Runtime,
    /// SFTP only; declared after the runtime, so dropped after it.
    #[cfg(feature = "sftp")]
    _reaper: Option<super::ssh_reaper::MasterReaper>,
}

/// An environment variable, when it is set and not empty.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl ObjectStoreBackend {
    /// Connects to S3-compatible storage. Credentials and region come from
    /// the usual AWS variables (`AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_DEFAULT_REGION`
    /// or `AWS_REGION`, `AWS_PROFILE` and the shared config files).
    #[cfg(feature = "s3")]
    pub fn s3(loc: &S3Location, opts: &ObjectStoreOptions) -> Result<Self> {
        let region = env("AWS_DEFAULT_REGION")
            .or_else(|| env("AWS_REGION"))
            .unwrap_or_else(|| "us-east-1".to_string());
        let builder = opendal::services::S3::default()
            .endpoint(&loc.endpoint)
            .bucket(&loc.bucket)
            .root(&format!("/{}", loc.prefix))
            .region(&region)
            .disable_ec2_metadata();
        let location = loc.display();
        let op = opendal::Operator::new(builder)
            .map_err(|e| map_err(&location, Service::S3, "configuring", e))?;
        Self::with_layers(op, location, Service::S3, opts)
    }

    /// Connects to Azure Blob Storage, as restic does: the account from
    /// `AZURE_ACCOUNT_NAME`, its key from `AZURE_ACCOUNT_KEY` or a SAS token
    /// from `AZURE_ACCOUNT_SAS`, the endpoint
    /// `https://ACCOUNT.blob.core.windows.net` (another cloud's suffix from
    /// `AZURE_ENDPOINT_SUFFIX`, or a whole URL from `AZURE_ENDPOINT`, as
    /// for Azurite or a private endpoint).
    #[cfg(feature = "azure")]
    pub fn azure(loc: &AzureLocation, opts: &ObjectStoreOptions) -> Result<Self> {
        let location = loc.display();
        let need = |what: &str| {
            Error::invalid(format!(
                "{location}: {what} is not set (Azure needs AZURE_ACCOUNT_NAME, and \
                 AZURE_ACCOUNT_KEY or AZURE_ACCOUNT_SAS)"
            ))
        };
        let account = env("AZURE_ACCOUNT_NAME").ok_or_else(|| need("AZURE_ACCOUNT_NAME"))?;
        let endpoint = env("AZURE_ENDPOINT").unwrap_or_else(|| {
            let suffix =
                env("AZURE_ENDPOINT_SUFFIX").unwrap_or_else(|| "core.windows.net".to_string());
            format!("https://{account}.blob.{suffix}")
        });
        let mut builder = opendal::services::Azblob::default()
            .endpoint(endpoint.trim_end_matches('/'))
            .container(&loc.container)
            .root(&format!("/{}", loc.prefix))
            .account_name(&account);
        builder = match (env("AZURE_ACCOUNT_KEY"), env("AZURE_ACCOUNT_SAS")) {
            (Some(key), _) => builder.account_key(&key),
            (None, Some(sas)) => builder.sas_token(sas.trim_start_matches('?')),
            (None, None) => return Err(need("AZURE_ACCOUNT_KEY (or AZURE_ACCOUNT_SAS)")),
        };
        let op = opendal::Operator::new(builder)
            .map_err(|e| map_err(&location, Service::Azure, "configuring", e))?;
        Self::with_layers(op, location, Service::Azure, opts)
    }

    /// Connects to an SSH server and speaks SFTP, through the system's
    /// `ssh` (so `~/.ssh/config`, the agent and `known_hosts` apply, and
    /// an unknown host key is refused). Each connection of
    /// `opts.connections` is one SSH session.
    #[cfg(feature = "sftp")]
    pub fn sftp(loc: &SftpLocation, opts: &ObjectStoreOptions) -> Result<Self> {
        let location = loc.display();
        let host = if loc.host.contains(':') {
            format!("[{}]", loc.host)
        } else {
            loc.host.clone()
        };
        let endpoint = match loc.port {
            Some(port) => format!("ssh://{host}:{port}"),
            None => host,
        };
        let mut builder = opendal::services::Sftp::default()
            .endpoint(&endpoint)
            .root(&loc.path)
            .known_hosts_strategy("strict");
        if let Some(user) = &loc.user {
            builder = builder.user(user);
        }
        let op = opendal::Operator::new(builder)
            .map_err(|e| map_err(&location, Service::Sftp, "configuring", e))?;
        Self::with_layers(op, location, Service::Sftp, opts)
    }

    /// Time limits, retries and the bound on requests in flight, then the
    /// blocking front.
    fn with_layers(
        op: opendal::Operator,
        location: String,
        service: Service,
        opts: &ObjectStoreOptions,
    ) -> Result<Self> {
        let op = op
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
                    .with_min_delay(RETRY_FIRST_DELAY)
                    .with_max_delay(RETRY_MAX_DELAY),
            )
            .layer(ConcurrentLimitLayer::new(opts.connections.max(1)));
        let rt = runtime()?;
        let _entered = rt.enter();
        let op = opendal::blocking::Operator::new(op)
            .map_err(|e| map_err(&location, service, "configuring", e))?;
        drop(_entered);
        Ok(ObjectStoreBackend {
            op,
            location,
            connections: opts.connections.max(1),
            service,
            attempts: opts.attempts.max(1),
            on_retry: opts.on_retry,
            _rt: rt,
            #[cfg(feature = "sftp")]
            _reaper: (service == Service::Sftp).then(super::ssh_reaper::MasterReaper::new),
        })
    }

    /// `put` on SFTP. OpenDAL writes an SFTP file in place, so an upload
    /// cut off (a dropped connection, a killed backup) would leave a
    /// short object under its final name, which a later `put` would then
    /// take for the whole one. The object is written under a temporary
    /// name, `.tmp-` and 16 hex digits, in its own directory (listing
    /// skips it, as in a local repository) and renamed into place whole. An object already there is
    /// kept: objects are named by their contents, and the ones that are
    /// not are written under claims on remote storage (see the trait).
    fn put_by_rename(&self, path: &str, data: &[u8]) -> Result<bool> {
        let storing = |e| map_err(&self.location, self.service, &format!("storing {path}"), e);
        if self.call("stat", |op| op.exists(path)).map_err(storing)? {
            return Ok(false);
        }
        let nonce = crate::crypto::random_bytes::<8>()?;
        let tmp = match path.rsplit_once('/') {
            Some((dir, _)) => format!("{dir}/.tmp-{}", hex::encode(nonce)),
            None => format!(".tmp-{}", hex::encode(nonce)),
        };
        let written = self
            .call("write", |op| op.write(&tmp, data.to_vec()))
            .and_then(|_| self.call("rename", |op| op.rename(&tmp, path)));
        if let Err(e) = written {
            // Best effort: a leftover temporary file is never read.
            let _ = self.op.delete(&tmp);
            return Err(storing(e));
        }
        Ok(true)
    }

    /// Runs one storage call. On SFTP, a failure to (re)connect is tried
    /// again as the retry layer tries a transient error: OpenDAL marks
    /// it permanent, so a server rebooting during a backup would
    /// otherwise fail it at once where S3 would wait for it. A refused
    /// host key or login is not tried again.
    fn call<T>(
        &self,
        what: &str,
        f: impl Fn(&opendal::blocking::Operator) -> opendal::Result<T>,
    ) -> opendal::Result<T> {
        let mut delay = RETRY_FIRST_DELAY;
        let mut attempt = 1;
        loop {
            match f(&self.op) {
                Err(e) if attempt < self.attempts && self.reconnect_may_help(&e) => {
                    if let Some(tell) = self.on_retry {
                        tell(&format!(
                            "storage request {what} failed ({}); retry {attempt} in {:.1}s",
                            describe(&e),
                            delay.as_secs_f64()
                        ));
                    }
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(RETRY_MAX_DELAY);
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Whether `e` is SFTP's failure to connect that a later attempt may
    /// not meet.
    fn reconnect_may_help(&self, e: &opendal::Error) -> bool {
        if self.service != Service::Sftp || e.is_temporary() || e.message() != "ssh error" {
            return false;
        }
        let text = describe(e);
        ![
            "Host key",
            "host key",
            "Permission denied",
            "Too many authentication failures",
        ]
        .iter()
        .any(|refusal| text.contains(refusal))
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
        map_err(
            &self.location,
            self.service,
            &format!("{what} {}", kind.path(name)),
            e,
        )
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
fn map_err(location: &str, service: Service, what: &str, e: opendal::Error) -> Error {
    use opendal::ErrorKind as K;
    let (kind, cause) = match e.kind() {
        K::PermissionDenied => (ErrorKind::AccessDenied, service.access_hint().to_string()),
        K::RateLimited => (
            ErrorKind::Io,
            "the storage is throttling requests (still, after every retry)".to_string(),
        ),
        _ => (ErrorKind::Io, describe(&e)),
    };
    Error::new(kind, format!("{location}: {what}: {cause}"))
}

/// The code and message of an S3 or Azure error response, from
/// opendal's `S3Error { code: "NoSuchBucket", message: "...", ... }` (or
/// `AzblobError {...}`) text. Azure's message ends with a request ID and
/// a time, which are left out.
fn s3_error_code(message: &str) -> Option<(&str, &str)> {
    let field = |name: &str| {
        let start = message.find(&format!("{name}: \""))? + name.len() + 3;
        let len = message[start..].find('"')?;
        Some(&message[start..start + len])
    };
    if !message.starts_with("S3Error") && !message.starts_with("AzblobError") {
        return None;
    }
    let text = field("message").unwrap_or("");
    let text = text.split(" RequestId:").next().unwrap_or(text);
    Some((field("code")?, text))
}

/// The last line that says something of a text of several lines: ssh's
/// log ends with what failed ("Host key verification failed.",
/// "Permission denied (publickey).") after banners of `@`.
fn last_line(text: &str) -> &str {
    text.lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("")
}

/// Whose error response `e` carries: "S3" or "Azure".
fn error_label(e: &opendal::Error) -> &'static str {
    if e.message().starts_with("AzblobError") {
        "Azure"
    } else {
        "S3"
    }
}

/// opendal's message and the innermost cause of an error ("error sending
/// request: tcp connect error: Connection refused (os error 111)" is
/// reduced to its last part), without the request context.
fn describe(e: &opendal::Error) -> String {
    let mut root: Option<String> = None;
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        root = Some(last_line(&s.to_string()).to_string());
        source = s.source();
    }
    let status = http_status(e).map(status_words);
    let message = match (s3_error_code(e.message()), status) {
        (Some(("NoSuchBucket", _)), _) => "the bucket does not exist (create it first)".to_string(),
        (Some(("ContainerNotFound", _)), _) => {
            "the container does not exist (create it first)".to_string()
        }
        (Some((code, "")), _) => format!("{} error {code}", error_label(e)),
        (Some((code, text)), _) => format!("{} error {code}: {text}", error_label(e)),
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
        self.call("list", |op| op.list_options("/", ListOptions::default()))
            .map(|_| ())
            .map_err(|e| {
                let what = match self.service {
                    Service::S3 => "listing the bucket",
                    Service::Azure => "listing the container",
                    Service::Sftp => "listing the directory",
                };
                map_err(&self.location, self.service, what, e)
            })
    }

    fn put(&self, kind: ObjectKind, name: &str, data: &[u8]) -> Result<bool> {
        let path = kind.path(name);
        if self.service == Service::Sftp {
            return self.put_by_rename(&path, data);
        }
        let opts = WriteOptions {
            if_not_exists: true,
            ..WriteOptions::default()
        };
        match self.call("write", |op| {
            op.write_options(&path, data.to_vec(), opts.clone())
        }) {
            Ok(_) => Ok(true),
            // Objects are named by their contents (all but `config`,
            // which is created once): one already there is this one.
            Err(e) if e.kind() == opendal::ErrorKind::ConditionNotMatch => Ok(false),
            Err(e) => Err(map_err(
                &self.location,
                self.service,
                &format!("storing {path}"),
                e,
            )),
        }
    }

    fn get(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>> {
        let path = kind.path(name);
        let meta = self
            .call("stat", |op| op.stat(&path))
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
            .call("read", |op| op.read(&path))
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
        let buf = self
            .call("read", |op| op.read_options(&path, opts.clone()))
            .map_err(|e| {
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
            .call("list", |op| op.list_options(&dir, opts.clone()))
            .map_err(|e| map_err(&self.location, self.service, &format!("listing {dir}"), e))?;
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
        match self.call("delete", |op| op.delete(&path)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(map_err(
                &self.location,
                self.service,
                &format!("deleting {path}"),
                e,
            )),
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
        let m = r#"AzblobError { code: "ContainerNotFound", message: "The specified container does not exist. RequestId:ae1f Time:2026-12-07T01:38:48.285Z" }"#;
        assert_eq!(
            s3_error_code(m),
            Some((
                "ContainerNotFound",
                "The specified container does not exist."
            ))
        );
        assert_eq!(s3_error_code(r#"S3Error { code: "unterminated"#), None);
    }
}
