//! A throwaway Azure Blob Storage for tests: Azurite, Microsoft's storage
//! emulator (`npm install -g azurite`), on 127.0.0.1 with its own account
//! and data directory, stopped on drop. It can be killed and started again
//! on the same port and data, to test outages.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::{find_installed, free_port, in_ci};

pub const ACCOUNT: &str = "cairntest";
/// Base64 of `cairn-test-key-cairn-test-key-01`.
pub const KEY: &str = "Y2Fpcm4tdGVzdC1rZXktY2Fpcm4tdGVzdC1rZXktMDE=";
pub const CONTAINER: &str = "cairn";

pub struct Azurite {
    dir: TempDir,
    pub port: u16,
    bin: PathBuf,
    child: Option<Child>,
}

/// Creates a container with a SharedKey-signed request (Python's standard
/// library: the tests need no Azure SDK). cairn expects the container to
/// exist, as it expects an S3 bucket to.
const CREATE_CONTAINER: &str = r#"
import base64, hashlib, hmac, sys, urllib.request
from email.utils import formatdate
port, account, key, container = sys.argv[1:5]
date = formatdate(usegmt=True)
version = "2021-08-06"
resource = f"/{account}/{account}/{container}\nrestype:container"
sign = "PUT\n" + "\n" * 11 + f"x-ms-date:{date}\nx-ms-version:{version}\n" + resource
mac = hmac.new(base64.b64decode(key), sign.encode(), hashlib.sha256).digest()
req = urllib.request.Request(
    f"http://127.0.0.1:{port}/{account}/{container}?restype=container", method="PUT",
    headers={"x-ms-date": date, "x-ms-version": version,
             "Authorization": f"SharedKey {account}:{base64.b64encode(mac).decode()}"})
urllib.request.urlopen(req).read()
"#;

impl Azurite {
    /// Starts Azurite with one empty container, or `None` (after printing
    /// SKIPPED) when it is not installed, except when CI=true, where that
    /// is a failure.
    pub fn start() -> Option<Azurite> {
        let Some(bin) = find_installed("azurite-blob") else {
            assert!(
                !in_ci(),
                "CI=true but Azurite is not installed: .ci/run must install it"
            );
            eprintln!("SKIPPED: Azurite is not installed (npm install -g azurite)");
            return None;
        };
        let dir = tempfile::Builder::new()
            .prefix("cairn-azurite-")
            .tempdir()
            .unwrap();
        let mut s = Azurite {
            dir,
            port: free_port(),
            bin,
            child: None,
        };
        s.restart();
        let out = Command::new("python3")
            .arg("-c")
            .arg(CREATE_CONTAINER)
            .args([&s.port.to_string(), ACCOUNT, KEY, CONTAINER])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "creating the container: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            s.log()
        );
        Some(s)
    }

    /// (Re)starts the emulator and waits until it accepts connections.
    pub fn restart(&mut self) {
        self.kill();
        let child = super::spawn_logged(
            Command::new(&self.bin)
                .args([
                    "--blobHost",
                    "127.0.0.1",
                    "--blobPort",
                    &self.port.to_string(),
                ])
                .args(["--disableTelemetry", "--skipApiVersionCheck", "--silent"])
                .arg("--location")
                .arg(self.dir.path().join("data"))
                .env("AZURITE_ACCOUNTS", format!("{ACCOUNT}:{KEY}")),
            &self.dir.path().join("azurite.log"),
        );
        self.child = Some(child);
        super::wait_for_port(self.port, 60, "Azurite", &|| self.log());
    }

    /// Stops the emulator. With SIGTERM: Azurite keeps its metadata in
    /// memory and writes it out every few seconds and when it stops, so
    /// a SIGKILL loses the newest objects (the storage, not cairn).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A repository location in the container.
    pub fn location(&self, prefix: &str) -> String {
        format!("azure:{CONTAINER}:/{prefix}")
    }

    /// The environment cairn needs to reach the emulator.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("AZURE_ACCOUNT_NAME".into(), ACCOUNT.into()),
            ("AZURE_ACCOUNT_KEY".into(), KEY.into()),
            (
                "AZURE_ENDPOINT".into(),
                format!("http://127.0.0.1:{}/{ACCOUNT}", self.port),
            ),
        ]
    }

    /// The emulator's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("azurite.log")).unwrap_or_default()
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        self.kill();
    }
}
