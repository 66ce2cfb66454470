//! Create-only writes on storage that ignores "create only if absent"
//! (`repo-format.md` §15.4).
//!
//! Two objects are not named by their contents: `config` and the WAL
//! records. Their writers rely on put being create-only, so that of two
//! writers of different contents exactly one wins and the other learns
//! it. Some S3-compatible servers ignore `If-None-Match: *` and overwrite
//! (Garage 2.5), and a probe cannot show that one that honours it does so
//! atomically under concurrency. On object storage, a writer therefore first
//! announces itself with a **claim** (`claims/<subject><contents><random>`),
//! lists the claims, and goes on only if no claim of the same subject with other contents is
//! there and the target object is still absent; it deletes its claim after
//! the write. With a store whose single-object operations and listings are
//! linearizable (what S3 promises since 2020), at most one of several
//! concurrent writers of different contents writes the object; the others
//! (all of them, in a close race) are refused and may retry.

use std::time::{Duration, Instant};

use super::{Backend, ObjectInfo, ObjectKind};
use crate::crypto::random_bytes;
use crate::error::{Error, ErrorKind, Result};

/// A claim older than this (by the storage's own clock, against the
/// claim just written) is left over from a writer that died: ignored.
pub const STALE_SECONDS: i64 = 3600;

/// A writer that took longer than this from its claim to the write gives
/// up before writing: its claim might already count as stale.
const MAX_HOLD: Duration = Duration::from_secs(1800);

/// What [`put_exclusive`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exclusive {
    /// The object was written now.
    Created,
    /// An object of that name exists (its contents may differ: the caller
    /// compares); nothing was written.
    Exists,
    /// Another writer of different contents is writing the same object at
    /// this moment; nothing was written. A retry later resolves it.
    Contended,
}

/// What a claim stands for: 16 bytes naming the object to be written (a
/// keyed hash where the name is secret) and 8 bytes naming its contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    subject: [u8; 16],
    contents: [u8; 8],
}

impl Claim {
    /// A claim from 32-byte hashes of the object and of its contents
    /// (their first 16 and 8 bytes are used).
    pub fn new(subject: &[u8; 32], contents: &[u8; 32]) -> Claim {
        let mut s = [0u8; 16];
        s.copy_from_slice(&subject[..16]);
        let mut c = [0u8; 8];
        c.copy_from_slice(&contents[..8]);
        Claim {
            subject: s,
            contents: c,
        }
    }

    /// The first 48 hex digits of this claim's object names.
    fn prefix(&self) -> String {
        format!("{}{}", hex(&self.subject), hex(&self.contents))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `backend` refuses a second put of one name: puts a random
/// object in `claims/` twice and deletes it.
pub fn probe(backend: &dyn Backend) -> Result<bool> {
    let name = hex(&random_bytes::<32>()?);
    let first = backend.put(ObjectKind::Claim, &name, b"probe")?;
    let second = backend.put(ObjectKind::Claim, &name, b"probe");
    let deleted = backend.delete(ObjectKind::Claim, &name);
    let second = second?;
    deleted?;
    if !first {
        return Err(Error::new(
            ErrorKind::Io,
            format!(
                "{}: a new random object was reported to exist already; the storage does not \
                 behave like object storage",
                backend.location()
            ),
        ));
    }
    Ok(!second)
}

fn exists(backend: &dyn Backend, kind: ObjectKind, name: &str) -> Result<bool> {
    match backend.get(kind, name) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == ErrorKind::MissingObject => Ok(false),
        Err(e) => Err(e),
    }
}

/// Stores `data` as `kind`/`name` only if no object of that name exists,
/// also where the storage ignores create-only puts (then through a claim,
/// see the module documentation).
pub fn put_exclusive(
    backend: &dyn Backend,
    kind: ObjectKind,
    name: &str,
    data: &[u8],
    claim: &Claim,
) -> Result<Exclusive> {
    if backend.atomic_create_only() {
        return Ok(if backend.put(kind, name, data)? {
            Exclusive::Created
        } else {
            Exclusive::Exists
        });
    }
    if exists(backend, kind, name)? {
        return Ok(Exclusive::Exists);
    }
    let started = Clock::start();
    let own = format!("{}{}", claim.prefix(), hex(&random_bytes::<8>()?));
    backend.put(ObjectKind::Claim, &own, b"")?;
    let mut keep_claim = false;
    let outcome = decide_and_put(
        backend,
        kind,
        name,
        data,
        claim,
        &own,
        &started,
        &mut keep_claim,
    );
    // A final put that failed may still land later (a timed-out request
    // the server applied): then the claim stays, and keeps rivals out
    // until it turns stale, after any late write. Otherwise it goes (best
    // effort: one left behind turns stale after an hour).
    if !keep_claim {
        let _ = backend.delete(ObjectKind::Claim, &own);
    }
    outcome
}

/// Time since the claim was written, by two clocks: the monotonic one
/// does not advance while the machine is suspended, the wall clock may
/// jump; the larger of the two counts.
struct Clock {
    mono: Instant,
    wall: std::time::SystemTime,
}

impl Clock {
    fn start() -> Clock {
        Clock {
            mono: Instant::now(),
            wall: std::time::SystemTime::now(),
        }
    }

    fn elapsed(&self) -> Duration {
        let wall = self.wall.elapsed().unwrap_or_default();
        self.mono.elapsed().max(wall)
    }
}

#[allow(clippy::too_many_arguments)]
fn decide_and_put(
    backend: &dyn Backend,
    kind: ObjectKind,
    name: &str,
    data: &[u8],
    claim: &Claim,
    own: &str,
    started: &Clock,
    keep_claim: &mut bool,
) -> Result<Exclusive> {
    let claims = backend.list(ObjectKind::Claim)?;
    let Some(mine) = claims.iter().find(|c| c.name == own) else {
        return Err(Error::new(
            ErrorKind::Io,
            format!(
                "{}: the listing does not show claim {own} just written, so a {} cannot be \
                 written exclusively on this storage (repo-format.md §15.4)",
                backend.location(),
                kind.noun()
            ),
        ));
    };
    if rivals(&claims, mine, claim) > 0 {
        return Ok(Exclusive::Contended);
    }
    if exists(backend, kind, name)? {
        return Ok(Exclusive::Exists);
    }
    if started.elapsed() > MAX_HOLD {
        return Err(Error::new(
            ErrorKind::Io,
            format!(
                "{}: {} s passed between claiming {} {name} and writing it; not written \
                 (the claim may count as stale by now)",
                backend.location(),
                started.elapsed().as_secs(),
                kind.noun()
            ),
        ));
    }
    let created = backend.put(kind, name, data).map_err(|e| {
        *keep_claim = true;
        e.context(format!(
            "its claim stays for an hour in case the write of {} {name} still lands",
            kind.noun()
        ))
    })?;
    if created {
        return Ok(Exclusive::Created);
    }
    // The store refused it as existing (it does honour If-None-Match, or a
    // retried request of ours landed twice): ours only if the bytes are.
    match backend.get(kind, name) {
        Ok(stored) if stored == data => Ok(Exclusive::Created),
        Ok(_) => Ok(Exclusive::Exists),
        Err(e) => Err(e),
    }
}

/// Live claims of the same subject with other contents.
fn rivals(claims: &[ObjectInfo], mine: &ObjectInfo, claim: &Claim) -> usize {
    let prefix = claim.prefix();
    let subject = &prefix[..32];
    claims
        .iter()
        .filter(|c| c.name.starts_with(subject) && !c.name.starts_with(&prefix))
        .filter(|c| match (c.modified, mine.modified) {
            (Some(theirs), Some(now)) => now - theirs <= STALE_SECONDS,
            _ => true,
        })
        .count()
}
