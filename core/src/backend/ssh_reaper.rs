//! Ending the `ssh` master processes that SFTP sessions leave behind.
//!
//! The `openssh` crate starts each session's master with `ssh -M -f`
//! (`ControlPersist=yes`): it forks into the background and runs until it
//! is told to exit, which a session does when it is dropped. A session
//! being set up when its runtime is dropped never gets that far, and its
//! master (seen under load in `tests/remote.rs`) would idle on for as long
//! as the server keeps the connection.
//!
//! So while an SFTP backend lives, this process is the subreaper of what
//! it starts (`PR_SET_CHILD_SUBREAPER`): a master that forks away stays
//! its child. When the last SFTP backend is dropped (after its runtime),
//! every child of this process that is an `ssh` master of a session is
//! told to end (SIGTERM) and reaped. A cairn killed with SIGKILL runs no
//! code: its masters stay (the guide says how to end them).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rustix::process::{getpid, kill_process, set_child_subreaper, waitpid, Pid, Signal};

/// SFTP backends alive in this process.
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// Held by each SFTP backend, dropped after its runtime.
pub(super) struct MasterReaper;

impl MasterReaper {
    pub(super) fn new() -> MasterReaper {
        // Without it (a kernel without the call), masters are reparented
        // to init as before, and nothing is lost but the cleanup.
        let _ = set_child_subreaper(Some(getpid()));
        LIVE.fetch_add(1, Ordering::SeqCst);
        MasterReaper
    }
}

impl Drop for MasterReaper {
    fn drop(&mut self) {
        if LIVE.fetch_sub(1, Ordering::SeqCst) != 1 {
            return;
        }
        let masters = ssh_masters_of(getpid());
        for &pid in &masters {
            let _ = kill_process(pid, Signal::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        for pid in masters {
            while Instant::now() < deadline {
                match waitpid(Some(pid), rustix::process::WaitOptions::NOHANG) {
                    Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                    _ => break,
                }
            }
        }
    }
}

/// The children of `parent` that are `ssh` masters of the `openssh`
/// crate's sessions (`-M`, a control path in a `.ssh-connection`
/// directory), from `/proc`.
fn ssh_masters_of(parent: Pid) -> Vec<Pid> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let parent = parent.as_raw_nonzero().get();
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may hold spaces and parens.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<i32>().ok());
        if ppid != Some(parent) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        let is_ssh = args
            .first()
            .is_some_and(|a| a.ends_with(b"/ssh") || *a == b"ssh");
        let master = args.iter().any(|a| *a == b"-M");
        let ours = args
            .iter()
            .any(|a| a.windows(15).any(|w| w == b".ssh-connection"));
        if is_ssh && master && ours {
            if let Some(pid) = Pid::from_raw(pid) {
                out.push(pid);
            }
        }
    }
    out
}
