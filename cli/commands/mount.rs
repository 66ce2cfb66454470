//! `cairn mount`: the repository's snapshots as a read-only file system
//! (FUSE, through the `fuser` crate), browsed by time, ID, host and tag.
//! The tree and every byte come from `cairn_core::ops::mount::MountView`;
//! this file only speaks FUSE.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, Generation, INodeNo, LockOwner, MountOption,
    OpenAccMode, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEntry, ReplyOpen,
    ReplyXattr, Request,
};

use cairn_core::format::tree::NodeKind;
use cairn_core::ops::mount::{Attr, MountView};

use crate::commands::{load_snapshots, FilterArgs};
use crate::exit::{Coded, ExitCode};
use crate::{GlobalArgs, CANCEL};

pub const LONG_ABOUT: &str = "\
Mount the repository's snapshots as a read-only file system (FUSE), to browse
them and copy out single files with ordinary tools:

  MOUNTPOINT/snapshots/2026-12-07T01:00:00/...   each snapshot, by local time
  MOUNTPOINT/snapshots/latest                    the newest
  MOUNTPOINT/ids/1a2b3c4d                        by ID
  MOUNTPOINT/hosts/HOST/..., MOUNTPOINT/tags/TAG/...   by host and tag, each with latest

Every byte read is verified against its chunk ID; a damaged chunk reads as an
I/O error, never as wrong bytes. cairn stays in the foreground until Ctrl-C
(or SIGTERM, or umount MOUNTPOINT), then unmounts. Needs /dev/fuse, and as a
user other than root the fusermount3 program (Debian's fuse3 package).
--host, --tag and --path limit the snapshots shown.

Example:
  cairn -r /srv/backup mount /mnt/cairn &
  cp /mnt/cairn/hosts/db1/latest/shop.sql /tmp/";

#[derive(Args)]
pub struct MountArgs {
    /// Empty directory to mount the snapshots on
    #[arg(value_name = "MOUNTPOINT")]
    mountpoint: PathBuf,

    /// Let other users read the mount too (for users other than root, needs
    /// user_allow_other in /etc/fuse.conf)
    #[arg(long)]
    allow_other: bool,

    #[command(flatten)]
    filter: FilterArgs,
}

/// How long the kernel may keep what it was told: the view never changes.
const TTL: Duration = Duration::from_secs(3600);

struct Fs {
    view: MountView,
}

fn time(secs: i64, nsec: u32) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs.unsigned_abs(), nsec)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + Duration::from_nanos(nsec.into())
    }
}

fn file_type(kind: NodeKind) -> FileType {
    match kind {
        NodeKind::File => FileType::RegularFile,
        NodeKind::Dir => FileType::Directory,
        NodeKind::Symlink => FileType::Symlink,
        NodeKind::Fifo => FileType::NamedPipe,
        NodeKind::Socket => FileType::Socket,
        NodeKind::Chardev => FileType::CharDevice,
        NodeKind::Blockdev => FileType::BlockDevice,
    }
}

fn file_attr(a: &Attr) -> FileAttr {
    let t = time(a.mtime, a.mtime_nsec);
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: t,
        mtime: t,
        ctime: t,
        crtime: t,
        kind: file_type(a.kind),
        perm: (a.mode & 0o7777) as u16,
        nlink: if a.kind == NodeKind::Dir { 2 } else { 1 },
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev as u32,
        blksize: 4096,
        flags: 0,
    }
}

/// The errno of a failed request; the cause goes to stderr, since FUSE
/// can only pass a number to the reader.
fn errno(e: &cairn_core::Error) -> Errno {
    use cairn_core::ErrorKind as K;
    eprintln!("cairn: mount: {e}");
    match e.kind() {
        K::InvalidInput => Errno::EINVAL,
        _ => Errno::EIO,
    }
}

impl Filesystem for Fs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.view.lookup(parent.into(), name.as_bytes()) {
            Ok(Some(a)) => reply.entry(&TTL, &file_attr(&a), Generation(0)),
            Ok(None) => reply.error(Errno::ENOENT),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.view.attr(ino.into()) {
            Ok(a) => reply.attr(&TTL, &file_attr(&a)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.view.read_link(ino.into()) {
            Ok(target) => reply.data(&target),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn open(&self, _req: &Request, _ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.acc_mode() != OpenAccMode::O_RDONLY {
            reply.error(Errno::EROFS);
            return;
        }
        reply.opened(FileHandle(0), fuser::FopenFlags::FOPEN_KEEP_CACHE);
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.view.read(ino.into(), offset, size) {
            Ok(bytes) => reply.data(&bytes),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let entries = match self.view.read_dir(ino.into()) {
            Ok(e) => e,
            Err(e) => return reply.error(errno(&e)),
        };
        let dots = [
            (u64::from(ino), FileType::Directory, b".".to_vec()),
            (u64::from(ino), FileType::Directory, b"..".to_vec()),
        ];
        let all = dots.into_iter().chain(
            entries
                .into_iter()
                .map(|(name, a)| (a.ino, file_type(a.kind), name)),
        );
        for (i, (child, kind, name)) in all.enumerate().skip(offset as usize) {
            if reply.add(INodeNo(child), i as u64 + 1, kind, OsStr::from_bytes(&name)) {
                break;
            }
        }
        reply.ok();
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let xattrs = match self.view.xattrs(ino.into()) {
            Ok(x) => x,
            Err(e) => return reply.error(errno(&e)),
        };
        match xattrs.iter().find(|(n, _)| n.as_slice() == name.as_bytes()) {
            None => reply.error(Errno::ENODATA),
            Some((_, value)) => xattr_reply(reply, size, value),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let xattrs = match self.view.xattrs(ino.into()) {
            Ok(x) => x,
            Err(e) => return reply.error(errno(&e)),
        };
        let mut names = Vec::new();
        for (n, _) in &xattrs {
            names.extend_from_slice(n);
            names.push(0);
        }
        xattr_reply(reply, size, &names);
    }
}

/// getxattr/listxattr's protocol: the size when asked with 0, the bytes
/// when they fit, else ERANGE.
fn xattr_reply(reply: ReplyXattr, size: u32, bytes: &[u8]) {
    if size == 0 {
        reply.size(bytes.len() as u32);
    } else if bytes.len() <= size as usize {
        reply.data(bytes);
    } else {
        reply.error(Errno::ERANGE);
    }
}

fn refused(what: String) -> anyhow::Error {
    Coded(ExitCode::MountFailed, what).into()
}

pub fn run(global: &GlobalArgs, args: MountArgs) -> anyhow::Result<ExitCode> {
    let at = &args.mountpoint;
    if !std::path::Path::new("/dev/fuse").exists() {
        return Err(refused(
            "cannot mount: this machine has no /dev/fuse (no FUSE in its kernel, or a \
             container started without --device /dev/fuse)"
                .to_string(),
        ));
    }
    if rustix::fs::access(
        "/dev/fuse",
        rustix::fs::Access::READ_OK | rustix::fs::Access::WRITE_OK,
    )
    .is_err()
    {
        return Err(refused(
            "cannot mount: /dev/fuse is not open to this user (Debian makes it mode 0666; \
             this machine does not)"
                .to_string(),
        ));
    }
    let empty = std::fs::read_dir(at)
        .map(|mut entries| entries.next().is_none())
        .map_err(|e| refused(format!("cannot mount on {}: {e}", at.display())))?;
    if !empty {
        return Err(refused(format!(
            "cannot mount on {}: the directory is not empty",
            at.display()
        )));
    }
    let repo = global.open()?;
    let list = load_snapshots(&repo)?;
    let owner = (
        rustix::process::getuid().as_raw(),
        rustix::process::getgid().as_raw(),
    );
    let filter = args.filter.filter();
    let shown = list.good.iter().filter(|s| filter.matches(s)).count();
    let view = MountView::new(repo, &list, &filter, owner)?;
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        MountOption::RO,
        MountOption::NoAtime,
        MountOption::FSName("cairn".to_string()),
        MountOption::Subtype("cairn".to_string()),
    ];
    if args.allow_other {
        config.acl = fuser::SessionACL::All;
    }
    let session = fuser::spawn_mount2(Fs { view }, at, &config)
        .map_err(|e| refused(format!("cannot mount on {}: {e}", at.display())))?;
    if !global.quiet {
        eprintln!(
            "cairn: {shown} snapshot{} mounted on {}; Ctrl-C or `umount {}` ends it",
            if shown == 1 { "" } else { "s" },
            at.display(),
            at.display()
        );
    }
    while !CANCEL.load(Ordering::SeqCst) && !session.guard.is_finished() {
        std::thread::sleep(Duration::from_millis(100));
    }
    if session.guard.is_finished() {
        // Unmounted from outside (umount, fusermount -u).
        session
            .join()
            .map_err(|e| refused(format!("{}: {e}", at.display())))?;
    } else if let Err(e) = session.umount_and_join() {
        if e.raw_os_error() != Some(rustix::io::Errno::BUSY.raw_os_error()) {
            return Err(refused(format!("unmounting {}: {e}", at.display())));
        }
        // A shell still in it, a file still open: detached now, gone
        // for good when the last one lets go (they then read errors), so
        // that no dead mount is left behind when cairn exits.
        detach(at).map_err(|e| refused(format!("unmounting {}: {e}", at.display())))?;
        eprintln!(
            "cairn: {} was busy (a file open or a shell in it): detached; it is gone once              they let go",
            at.display()
        );
    }
    Ok(ExitCode::Success)
}

/// Lazy unmount (`umount -l`): as root directly, otherwise through
/// fusermount3.
fn detach(at: &std::path::Path) -> std::io::Result<()> {
    if rustix::mount::unmount(at, rustix::mount::UnmountFlags::DETACH).is_ok() {
        return Ok(());
    }
    let out = std::process::Command::new("fusermount3")
        .args(["-u", "-z"])
        .arg(at)
        .output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}
