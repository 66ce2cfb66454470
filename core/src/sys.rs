//! Facts about the machine and the process cairn runs on.

use std::fs;
use std::os::unix::fs::MetadataExt;

/// The name of the user running cairn.
pub fn username() -> String {
    for var in ["USER", "LOGNAME"] {
        if let Ok(u) = std::env::var(var) {
            if !u.is_empty() {
                return u;
            }
        }
    }
    let uid = fs::metadata("/proc/self").map(|m| m.uid()).ok();
    if let (Some(uid), Ok(passwd)) = (uid, fs::read_to_string("/etc/passwd")) {
        for line in passwd.lines() {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() > 2 && f[2] == uid.to_string() {
                return f[0].to_string();
            }
        }
    }
    uid.map(|u| u.to_string()).unwrap_or_default()
}

/// The host name of this machine.
pub fn hostname() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

/// Whether this process runs as root (and may give files away).
pub fn running_as_root() -> bool {
    rustix::process::geteuid().is_root()
}
