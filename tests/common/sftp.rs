//! A throwaway SSH server for tests: Debian's `openssh-server` (`sshd`) on
//! 127.0.0.1, with its own host key and one client key, stopped on drop.
//!
//! cairn reaches it as a user would: through the system's `ssh`, with a
//! `Host` alias, an `IdentityFile` and a `known_hosts` file. ssh reads
//! `~/.ssh` from the passwd entry, not `$HOME`, so the tests put an `ssh`
//! first on `PATH` that adds `-F <the test's config>`: the stand-in for a
//! user's `~/.ssh/config`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::{free_port, in_ci};

/// The `Host` alias of the server in the test's ssh config.
pub const HOST: &str = "cairn-sftp-test";

pub struct SshServer {
    dir: TempDir,
    pub port: u16,
    child: Option<Child>,
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {out:?}");
}

impl SshServer {
    /// Starts a server, or `None` (after printing SKIPPED) when sshd is
    /// not installed, except when CI=true, where that is a failure.
    pub fn start() -> Option<SshServer> {
        let sshd = Path::new("/usr/sbin/sshd");
        if !sshd.is_file() {
            assert!(
                !in_ci(),
                "CI=true but sshd is not installed: .ci/run must install openssh-server"
            );
            eprintln!("SKIPPED: sshd is not installed (apt-get install openssh-server)");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("cairn-sshd-")
            .tempdir()
            .unwrap();
        let d = dir.path();
        for key in ["host_key", "id"] {
            run(Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "cairn-test", "-f"])
                .arg(d.join(key)));
        }
        std::fs::copy(d.join("id.pub"), d.join("authorized_keys")).unwrap();
        let port = free_port();
        let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_string();
        std::fs::write(
            d.join("sshd_config"),
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\n\
                 AuthorizedKeysFile {d}/authorized_keys\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n\
                 PermitRootLogin prohibit-password\nPidFile {d}/sshd.pid\n\
                 Subsystem sftp internal-sftp\nMaxStartups 64\nMaxSessions 64\n",
                host_key = d.join("host_key").display(),
                d = d.display(),
            ),
        )
        .unwrap();
        let host_pub = std::fs::read_to_string(d.join("host_key.pub")).unwrap();
        std::fs::write(
            d.join("known_hosts"),
            format!("[127.0.0.1]:{port} {host_pub}"),
        )
        .unwrap();
        std::fs::write(d.join("known_hosts_empty"), "").unwrap();
        std::fs::write(
            d.join("ssh_config"),
            format!(
                "Host {HOST}\n  HostName 127.0.0.1\n  Port {port}\n  User {user}\n\
                 Host *\n  IdentityFile {d}/id\n  IdentitiesOnly yes\n\
                 UserKnownHostsFile {d}/known_hosts\n  StrictHostKeyChecking yes\n\
                 ConnectTimeout 10\n",
                d = d.display(),
            ),
        )
        .unwrap();
        std::fs::create_dir_all(d.join("bin")).unwrap();
        let wrapper = d.join("bin/ssh");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nexec /usr/bin/ssh -F {} \"$@\"\n",
                d.join("ssh_config").display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        // sshd's privilege separation directory, missing until the
        // package's own service has run once.
        if super::is_root() {
            std::fs::create_dir_all("/run/sshd").unwrap();
        }
        let mut s = SshServer {
            dir,
            port,
            child: None,
        };
        s.restart();
        Some(s)
    }

    /// (Re)starts sshd and waits until it accepts connections.
    pub fn restart(&mut self) {
        self.kill();
        let child = super::spawn_logged(
            Command::new("/usr/sbin/sshd")
                .args(["-D", "-e", "-f"])
                .arg(self.dir.path().join("sshd_config")),
            &self.dir.path().join("sshd.log"),
        );
        self.child = Some(child);
        super::wait_for_port(self.port, 20, "sshd", &|| self.log());
    }

    /// Stops the listening sshd (SIGKILL); sessions already open go on.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops sshd and every session it serves (SIGKILL): the server is
    /// gone, as when the machine goes down.
    pub fn kill_all(&mut self) {
        let Some(child) = &self.child else {
            return;
        };
        // sshd's descendants: one monitor per connection, its session
        // process, and the sftp server.
        let mut all = vec![child.id().to_string()];
        let mut i = 0;
        while i < all.len() {
            let out = Command::new("pgrep")
                .args(["-P", &all[i]])
                .output()
                .unwrap();
            all.extend(
                String::from_utf8_lossy(&out.stdout)
                    .split_whitespace()
                    .map(String::from),
            );
            i += 1;
        }
        self.kill();
        let _ = Command::new("kill").arg("-KILL").args(&all[1..]).status();
    }

    /// A directory on the server (this machine) for a repository.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join("srv").join(name)
    }

    /// `sftp:cairn-sftp-test:/…/srv/NAME`, through the `Host` alias.
    pub fn location(&self, name: &str) -> String {
        format!("sftp:{HOST}:{}", self.path(name).display())
    }

    /// Where openssh keeps its control sockets for the cairn it runs
    /// (`$XDG_STATE_HOME`): one `.ssh-connection*` directory per session
    /// still open.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// The environment cairn needs: the `ssh` wrapper first on `PATH`, and
    /// the control-socket directory.
    pub fn env(&self) -> Vec<(String, String)> {
        let path = std::env::var("PATH").unwrap_or_default();
        vec![
            (
                "PATH".to_string(),
                format!("{}:{path}", self.dir.path().join("bin").display()),
            ),
            (
                "XDG_STATE_HOME".to_string(),
                self.state_dir().display().to_string(),
            ),
        ]
    }

    /// Replaces the known host key by another one: the server is no
    /// longer who the client knows.
    pub fn forget_host_key(&self) {
        let d = self.dir.path();
        let _ = std::fs::remove_file(d.join("other_key"));
        run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(d.join("other_key")));
        let other = std::fs::read_to_string(d.join("other_key.pub")).unwrap();
        std::fs::write(
            d.join("known_hosts"),
            format!("[127.0.0.1]:{} {other}", self.port),
        )
        .unwrap();
    }

    /// The server's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// SSH master processes of cairn's sessions still running, after
    /// giving them 5 s to go: a master is told to exit when its session
    /// ends and exits a moment later.
    pub fn masters(&self) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = self.masters_now();
            if left.is_empty() || Instant::now() > deadline {
                return left;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn masters_now(&self) -> Vec<String> {
        let out = Command::new("pgrep")
            .args(["-a", "-f"])
            .arg(self.state_dir().display().to_string())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for SshServer {
    fn drop(&mut self) {
        self.kill();
        // Ends the session processes of the test's sshd and any ssh
        // masters left behind.
        let _ = Command::new("pkill")
            .arg("-f")
            .arg(self.dir.path().display().to_string())
            .status();
    }
}
