//! Facts about the machine and the process cairn runs on, and what the
//! process's threads share.

use std::fs;
use std::os::unix::ffi::OsStrExt;
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

/// The extended attributes of `path` (not following a symlink), sorted by
/// name: name and value bytes. A file system without them gives none.
pub fn read_xattrs(path: &std::path::Path) -> std::io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    use rustix::io::Errno;
    let unsupported = |e: Errno| e == Errno::NOTSUP || e == Errno::NODATA;
    let mut names = vec![0u8; 1024];
    let len = loop {
        match rustix::fs::llistxattr(path, &mut names[..]) {
            Ok(n) => break n,
            Err(Errno::RANGE) => names.resize(names.len() * 4, 0),
            Err(e) if unsupported(e) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        }
    };
    let mut out = Vec::new();
    for name in names[..len].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name_str = std::ffi::OsStr::from_bytes(name);
        let mut value = vec![0u8; 256];
        let got = loop {
            match rustix::fs::lgetxattr(path, name_str, &mut value[..]) {
                Ok(n) => break Some(n),
                Err(Errno::RANGE) => value.resize(value.len() * 4, 0),
                // Removed since it was listed.
                Err(e) if unsupported(e) => break None,
                Err(e) => return Err(e.into()),
            }
        };
        if let Some(n) = got {
            value.truncate(n);
            out.push((name.to_vec(), value));
        }
    }
    out.sort();
    Ok(out)
}

/// Sets extended attribute `name` of `path` (not following a symlink).
pub fn write_xattr(path: &std::path::Path, name: &[u8], value: &[u8]) -> std::io::Result<()> {
    let name = std::ffi::OsStr::from_bytes(name);
    rustix::fs::lsetxattr(path, name, value, rustix::fs::XattrFlags::empty()).map_err(Into::into)
}

/// A mutex's guard, also after another thread panicked holding it: what
/// cairn keeps under a mutex (caches, first errors, lists) stays valid
/// between its updates.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
