//! A throwaway S3 server for tests: s3s-fs (crates.io, `cargo install
//! s3s-fs --version 0.14.1 --features binary --locked`) serving a temp
//! directory on 127.0.0.1, stopped on drop. It can be killed and started
//! again on the same port and data, to test outages.

use std::path::PathBuf;
use std::process::{Child, Command};

use tempfile::TempDir;

use super::{find_installed, free_port, in_ci};

pub const ACCESS_KEY: &str = "cairn-test";
pub const SECRET_KEY: &str = "cairn-test-secret";
pub const BUCKET: &str = "cairn";

pub struct S3Server {
    dir: TempDir,
    pub port: u16,
    bin: PathBuf,
    child: Option<Child>,
}

impl S3Server {
    /// Starts a server with one empty bucket, or `None` (after printing
    /// SKIPPED) when s3s-fs is not installed, except when CI=true, where a
    /// missing server is a failure.
    pub fn start() -> Option<S3Server> {
        let Some(bin) = find_installed("s3s-fs") else {
            assert!(
                !in_ci(),
                "CI=true but s3s-fs is not installed: .ci/run must install it"
            );
            eprintln!(
                "SKIPPED: s3s-fs is not installed (cargo install s3s-fs --version 0.14.1 --features binary --locked)"
            );
            return None;
        };
        let dir = tempfile::Builder::new()
            .prefix("cairn-s3-")
            .tempdir()
            .unwrap();
        std::fs::create_dir_all(dir.path().join(BUCKET)).unwrap();
        let port = free_port();
        let mut s = S3Server {
            dir,
            port,
            bin,
            child: None,
        };
        s.restart();
        Some(s)
    }

    /// (Re)starts the server process and waits until it accepts
    /// connections.
    pub fn restart(&mut self) {
        self.kill();
        let child = super::spawn_logged(
            Command::new(&self.bin)
                .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
                .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
                .arg(self.dir.path()),
            &self.dir.path().join("server.log"),
        );
        self.child = Some(child);
        super::wait_for_port(self.port, 20, "s3s-fs", &|| self.log());
    }

    /// Kills the server (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A repository location in the bucket.
    pub fn location(&self, prefix: &str) -> String {
        format!("s3:http://127.0.0.1:{}/{BUCKET}/{prefix}", self.port)
    }

    /// The environment cairn needs to reach the server.
    pub fn env(&self) -> [(&'static str, &'static str); 3] {
        [
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
            ("AWS_DEFAULT_REGION", "us-east-1"),
        ]
    }

    /// The server's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.kill();
    }
}
