//! A throwaway single-node Garage (crates.io `garage` 2.5, the
//! S3-compatible server that ignores `If-None-Match: *`) on 127.0.0.1,
//! with one bucket and one key, stopped on drop. `.ci/run` installs it:
//! `cargo install garage --version 2.5.0 --locked --debug
//! --no-default-features --features lmdb,bundled-libs`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::{find_installed, free_port, in_ci};

pub const BUCKET: &str = "cairn";
const KEY_ID: &str = "GK0123456789abcdef01234567";
const SECRET: &str = "5e3b3c1f0a2d4e6f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7";
const REGION: &str = "us-east-1";

pub struct Garage {
    dir: TempDir,
    bin: PathBuf,
    pub port: u16,
    child: Child,
}

impl Garage {
    /// Starts a node, lays it out, creates the bucket and the key; `None`
    /// (after printing SKIPPED) when garage is not installed, except when
    /// CI=true, where that is a failure.
    pub fn start() -> Option<Garage> {
        let Some(bin) = find_installed("garage") else {
            assert!(
                !in_ci(),
                "CI=true but garage is not installed: .ci/run must install it"
            );
            eprintln!("SKIPPED: garage is not installed (see tests/common/garage.rs)");
            return None;
        };
        let dir = tempfile::Builder::new()
            .prefix("cairn-garage-")
            .tempdir()
            .unwrap();
        let (port, rpc, admin) = (free_port(), free_port(), free_port());
        let path = dir.path().display();
        let config = format!(
            r#"metadata_dir = "{path}/meta"
data_dir = "{path}/data"
db_engine = "lmdb"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"
rpc_secret = "{SECRET}"

[s3_api]
s3_region = "{REGION}"
api_bind_addr = "127.0.0.1:{port}"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:{admin}"
"#
        );
        std::fs::write(dir.path().join("garage.toml"), config).unwrap();
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let child = Command::new(&bin)
            .arg("-c")
            .arg(dir.path().join("garage.toml"))
            .arg("server")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let g = Garage {
            dir,
            bin,
            port,
            child,
        };
        g.set_up();
        Some(g)
    }

    fn garage(&self, args: &[&str]) -> Output {
        Command::new(&self.bin)
            .arg("-c")
            .arg(self.dir.path().join("garage.toml"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn must(&self, args: &[&str]) -> String {
        let out = self.garage(args);
        assert!(
            out.status.success(),
            "garage {args:?}: {}\n{}\nserver log: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn set_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let node = loop {
            let out = self.garage(&["node", "id", "-q"]);
            if out.status.success() {
                break String::from_utf8(out.stdout).unwrap();
            }
            assert!(
                Instant::now() < deadline,
                "garage did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        let node = node.trim();
        let node = &node[..node.find('@').unwrap_or(node.len())];
        self.must(&["layout", "assign", "-z", "dc1", "-c", "1G", node]);
        self.must(&["layout", "apply", "--version", "1"]);
        self.must(&["key", "import", KEY_ID, SECRET, "-n", "cairn", "--yes"]);
        self.must(&["bucket", "create", BUCKET]);
        self.must(&[
            "bucket", "allow", "--read", "--write", "--owner", BUCKET, "--key", "cairn",
        ]);
        // The S3 endpoint answers once the layout has spread to it.
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "garage's S3 API did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A repository location in the bucket.
    pub fn location(&self, prefix: &str) -> String {
        format!("s3:http://127.0.0.1:{}/{BUCKET}/{prefix}", self.port)
    }

    /// The environment cairn needs to reach the server.
    pub fn env(&self) -> [(&'static str, &'static str); 3] {
        [
            ("AWS_ACCESS_KEY_ID", KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", SECRET),
            ("AWS_DEFAULT_REGION", REGION),
        ]
    }

    /// Where the server keeps its data.
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
