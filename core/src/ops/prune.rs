//! Prune: remove data that no snapshot needs, safely next to backups that
//! run at the same time, from this or another machine (`docs/design.md`
//! §6, "Two-phase prune").
//!
//! Plan first, then act. [`plan`] reads every snapshot, walks their trees
//! to find the blobs in use, reads every index object and lists the packs,
//! and decides for each pack:
//!
//! - all blobs in use: keep; some in use: keep, or repack while the
//!   unused data exceeds `--max-unused`;
//! - none in use: mark it obsolete (write it into the new index as such);
//! - obsolete for at least the grace period and still unused: delete it;
//!   obsolete but in use again (a backup that started before the mark
//!   referenced it): revive it;
//! - not in any index (left by an interrupted backup, or one still
//!   running): delete once older than the grace period.
//!
//! [`execute`] then writes repacked packs, then the new index objects, and
//! only then deletes the index objects it replaced and the packs it
//! condemned: a crash at any point leaves every snapshot restorable.
//!
//! A backup only deduplicates against packs in use and, before it commits,
//! checks that none of the packs it took blobs from has been obsolete for
//! longer than the grace period less a margin; so no snapshot can appear
//! that refers to a pack a prune is allowed to delete.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;
use serde::Serialize;

use crate::backend::ObjectKind;
use crate::error::{Error, ErrorKind, Result};
use crate::format::index::{merged_mark, IndexPack};
use crate::format::pack::{self, BlobEntry, FinishedPack};
use crate::id::Id;
use crate::repo::commit::MIN_UNINDEXED_AGE;
use crate::repo::packer::Packer;
use crate::repo::repository::{verify_name, Repository};
use crate::repo::walker;
use crate::units::parse_size;

/// How much unused data may stay in partly used packs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MaxUnused {
    /// Never repack.
    Unlimited,
    /// At most this percentage of the repository's size after pruning.
    Percent(f64),
    /// At most this many bytes.
    Bytes(u64),
}

impl Default for MaxUnused {
    /// restic's default: 5 %.
    fn default() -> Self {
        MaxUnused::Percent(5.0)
    }
}

impl FromStr for MaxUnused {
    type Err = Error;

    /// `5%`, `100M`, `2G` (k/m/g/t, powers of 1024), or `unlimited`.
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        if s == "unlimited" {
            return Ok(MaxUnused::Unlimited);
        }
        if let Some(p) = s.strip_suffix('%') {
            let v: f64 = p
                .trim()
                .parse()
                .map_err(|_| Error::invalid(format!("invalid percentage {s:?}")))?;
            if !(0.0..100.0).contains(&v) {
                return Err(Error::invalid(format!(
                    "--max-unused {s}: must be 0% to below 100%"
                )));
            }
            return Ok(MaxUnused::Percent(v));
        }
        parse_size(s).map(MaxUnused::Bytes)
    }
}

/// Options of a prune. With the `clap` feature, the options `cairn prune`
/// shows.
#[derive(Debug, Clone, Default)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
#[non_exhaustive]
pub struct PruneOptions {
    /// Repack partly used packs until at most this much unused data stays.
    #[cfg_attr(
        feature = "clap",
        arg(
            long,
            value_name = "LIMIT",
            default_value = "5%",
            help = "Tolerate this much unused data in partly used packs: a percentage of the repository, a size (100M, 2G), or `unlimited`"
        )
    )]
    pub max_unused: MaxUnused,
    /// Repack at most this many bytes of packs in one run.
    #[cfg_attr(
        feature = "clap",
        arg(
            long,
            value_name = "SIZE",
            value_parser = crate::units::parse_size,
            help = "Repack at most this much data in one run (e.g. 2G)"
        )
    )]
    pub max_repack_size: Option<u64>,
    /// Override the repository's grace period (seconds). Shorter than the
    /// repository's is only safe when no backup runs at the same time.
    #[cfg_attr(
        feature = "clap",
        arg(
            long = "grace",
            value_name = "DURATION",
            value_parser = crate::units::parse_duration,
            help = "Grace period before obsolete packs are deleted (e.g. 24h, 30m, 0); default: the repository's"
        )
    )]
    pub grace_seconds: Option<u64>,
}

/// What happens to one pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PackAction {
    /// In use; stays.
    Keep,
    /// Partly used: its used blobs are copied to new packs, it becomes
    /// obsolete.
    Repack,
    /// Unused: marked obsolete now, deleted by a later prune.
    Mark,
    /// Obsolete, still within its grace period.
    KeepMarked,
    /// Obsolete but in use again: back in use.
    Revive,
    /// Obsolete for the grace period and unused: deleted now.
    Delete,
    /// In no index and older than the grace period: deleted now.
    DeleteUnindexed,
    /// In no index but recent (maybe a running backup's): left alone.
    KeepUnindexed,
    /// In an index but not in storage, and holding nothing in use: dropped
    /// from the index.
    DropMissing,
}

/// One pack in the plan.
#[derive(Debug, Clone)]
pub struct PackPlan {
    /// The pack.
    pub id: Id,
    /// Its stored size (0 when missing).
    pub size: u64,
    /// Blobs listed for it.
    pub blobs: usize,
    /// Blobs in use that this pack provides.
    pub used_blobs: usize,
    /// Stored bytes of those blobs.
    pub used_bytes: u64,
    /// When it was marked obsolete, if it was.
    pub obsolete_since: Option<i64>,
    /// The decision.
    pub action: PackAction,
    /// What the pack holds, by its index record.
    contents: Vec<PlannedBlob>,
}

/// A blob a pack holds, and whether the plan takes this copy of it.
#[derive(Debug, Clone)]
struct PlannedBlob {
    entry: BlobEntry,
    claimed: bool,
}

impl PackPlan {
    /// What the pack holds, none of it claimed yet.
    fn unclaimed(entries: Vec<BlobEntry>) -> Vec<PlannedBlob> {
        entries
            .into_iter()
            .map(|entry| PlannedBlob {
                entry,
                claimed: false,
            })
            .collect()
    }

    /// The blobs the pack holds.
    fn entries(&self) -> impl Iterator<Item = &BlobEntry> {
        self.contents.iter().map(|b| &b.entry)
    }

    /// The copies the plan takes from this pack.
    fn claimed(&self) -> impl Iterator<Item = &BlobEntry> {
        self.contents.iter().filter(|b| b.claimed).map(|b| &b.entry)
    }

    /// Takes (`yes`) or gives back the copy at `i`, keeping the counts of
    /// used blobs and bytes.
    fn set_claimed(&mut self, i: usize, yes: bool) {
        let Some(b) = self.contents.get_mut(i) else {
            return;
        };
        if b.claimed == yes {
            return;
        }
        b.claimed = yes;
        let len = u64::from(b.entry.length);
        if yes {
            self.used_blobs += 1;
            self.used_bytes += len;
        } else {
            self.used_blobs -= 1;
            self.used_bytes -= len;
        }
    }

    /// Stored bytes of the pack that no snapshot uses.
    fn unused_bytes(&self) -> u64 {
        self.size.saturating_sub(self.used_bytes)
    }
}

/// Sums over the plan.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PruneTotals {
    /// Snapshots whose data is kept.
    pub snapshots: usize,
    /// Distinct blobs in use.
    pub used_blobs: usize,
    /// Packs in storage or in the index.
    pub packs: usize,
    /// Bytes in packs.
    pub bytes: u64,
    /// Stored bytes of blobs in use.
    pub used_bytes: u64,
    /// Stored bytes of everything else.
    pub unused_bytes: u64,
    /// Packs deleted by this run, and their bytes.
    pub delete_packs: usize,
    /// Bytes freed by this run.
    pub delete_bytes: u64,
    /// Packs repacked, and their bytes.
    pub repack_packs: usize,
    /// Bytes of packs read to repack.
    pub repack_bytes: u64,
    /// Packs marked obsolete (freed by a later prune), and their bytes.
    pub mark_packs: usize,
    /// Bytes marked obsolete.
    pub mark_bytes: u64,
    /// Packs still waiting for their grace period.
    pub waiting_packs: usize,
    /// Packs in use again.
    pub revive_packs: usize,
    /// Packs in no index left alone because they are recent.
    pub recent_unindexed_packs: usize,
    /// Packs listed in the index but missing from storage.
    pub missing_packs: usize,
    /// Unused bytes left in packs that stay in use.
    pub unused_bytes_after: u64,
}

/// The decisions of a prune, before anything is changed.
#[derive(Debug, Clone)]
pub struct PrunePlan {
    /// When the plan was made (Unix seconds): the mark time.
    pub time: i64,
    /// Grace period used (seconds).
    pub grace_seconds: u64,
    /// Every pack and its fate, sorted by ID.
    pub packs: Vec<PackPlan>,
    /// The index objects this prune read and replaces.
    pub index_objects: Vec<Id>,
    /// Sums.
    pub totals: PruneTotals,
}

impl PrunePlan {
    /// Packs with `action`.
    pub fn with_action(&self, action: PackAction) -> impl Iterator<Item = &PackPlan> {
        self.packs.iter().filter(move |p| p.action == action)
    }

    /// Does executing this plan change anything?
    pub fn is_noop(&self) -> bool {
        self.packs.iter().all(|p| {
            matches!(
                p.action,
                PackAction::Keep | PackAction::KeepMarked | PackAction::KeepUnindexed
            )
        })
    }
}

fn damaged(message: String) -> Error {
    Error::new(ErrorKind::Corrupt, message)
}

/// Prune stops because reading failed: damage, unless the read failed for
/// a passing reason (storage unreachable, disk full, Ctrl-C), which keeps
/// its own kind and exit code.
fn stop(cause: &Error, message: String) -> Error {
    if cause.kind().is_passing() {
        Error::new(cause.kind(), message)
    } else {
        damaged(message)
    }
}

/// Every blob that some snapshot needs: trees, chunk lists, data.
///
/// Snapshots are listed first and the index read after: a snapshot is
/// written after its index objects, so everything a listed snapshot needs
/// is in an index object this prune reads. Snapshots committed later are
/// protected by the grace period instead.
fn used_blobs(repo: &Repository, cancel: &AtomicBool) -> Result<(HashSet<Id>, usize)> {
    let list = repo.load_snapshots()?;
    if let Some((name, e)) = list.damaged.first() {
        return Err(stop(e, format!(
            "snapshot {name} cannot be read ({e}); prune needs every snapshot to know what is in use, so it stops without changing anything"
        )));
    }
    // Archived WAL files are roots like snapshots (listed before the
    // index for the same reason).
    let wal = crate::repo::wal_record::load(repo)?;
    if let Some((name, e)) = wal.damaged.first() {
        return Err(stop(e, format!(
            "WAL record {name} cannot be read ({e}); prune needs every WAL record to know what is in use, so it stops without changing anything"
        )));
    }
    let stats = repo.sync_index()?;
    if let Some(e) = stats.unreadable.first() {
        return Err(stop(
            e,
            format!("{e}; prune needs the whole index and stops without changing anything"),
        ));
    }
    let index = repo.index()?;
    let mut used = HashSet::new();
    let roots = list.good.iter().map(|s| s.tree);
    for root in roots.chain(wal.good.iter().map(|w| w.tree)) {
        walker::for_each_new_blob(repo, &index, &root, &mut used, cancel, &mut |_, _| {}).map_err(
            |e| match e.kind() {
                ErrorKind::Interrupted => e,
                _ => stop(&e, format!("{e}; prune stops without changing anything")),
            },
        )?;
    }
    Ok((used, list.good.len()))
}

/// Decides what to do; changes nothing. In phases, each its own function:
/// what is in use (`used_blobs`), what is stored and indexed
/// (`inventory`), which copy of each used blob is kept
/// (`claim_used`), each pack's fate (`decide_packs`), which packs are
/// repacked (`decide_repacks`), packs in no index (`add_unindexed`),
/// and the sums (`totals_of`).
pub fn plan(repo: &Repository, opts: &PruneOptions, cancel: &AtomicBool) -> Result<PrunePlan> {
    if let Some(w) = repo.warnings().first() {
        return Err(damaged(format!(
            "{w}; prune needs the whole index and stops without changing anything"
        )));
    }
    let time = jiff::Timestamp::now().as_second();
    let grace = opts
        .grace_seconds
        .unwrap_or(repo.config().prune_grace_seconds);
    let (used, snapshots) = used_blobs(repo, cancel)?;
    let Inventory {
        index_objects,
        mut packs,
        unindexed,
        present,
    } = inventory(repo)?;
    // Sorted for a deterministic plan.
    let mut ids: Vec<Id> = packs.keys().copied().collect();
    ids.sort();
    let used = claim_used(repo, &mut packs, &ids, &present, used, cancel)?;
    let candidates = decide_packs(&mut packs, &ids, &present, time, grace);
    let unused_left = decide_repacks(&mut packs, candidates, opts);
    let mut list: Vec<PackPlan> = packs.into_values().collect();
    add_unindexed(&mut list, unindexed, time, grace);
    list.sort_by_key(|p| p.id);
    let totals = totals_of(&list, snapshots, used.len(), unused_left);
    Ok(PrunePlan {
        time,
        grace_seconds: grace,
        packs: list,
        index_objects,
        totals,
    })
}

/// What storage and the index hold, read in that order: index objects
/// first, then packs, so a backup that finishes in between has its packs
/// listed (recent, in no index read: left alone).
struct Inventory {
    /// The index objects read.
    index_objects: Vec<Id>,
    /// Every pack some index object lists, merged over index objects.
    packs: HashMap<Id, PackPlan>,
    /// Stored packs no index object lists.
    unindexed: Vec<UnindexedPack>,
    /// Every stored pack.
    present: HashSet<Id>,
}

/// A stored pack that no index object lists.
struct UnindexedPack {
    id: Id,
    size: u64,
    /// When it was stored (Unix seconds), if storage says.
    modified: Option<i64>,
}

fn inventory(repo: &Repository) -> Result<Inventory> {
    let backend = repo.backend();
    let index_objects: Vec<Id> = backend
        .list(ObjectKind::Index)?
        .iter()
        .map(|o| Id::parse(&o.name))
        .collect::<Result<_>>()?;
    let mut packs: HashMap<Id, PackPlan> = HashMap::new();
    for id in &index_objects {
        for p in repo.load_index(id).map_err(|e| {
            stop(
                &e,
                format!("{e}; prune needs the whole index and stops without changing anything"),
            )
        })? {
            merge_index_record(&mut packs, p);
        }
    }
    let mut unindexed = Vec::new();
    let mut present = HashSet::new();
    for o in &backend.list(ObjectKind::Pack)? {
        let id = Id::parse(&o.name)?;
        present.insert(id);
        match packs.get_mut(&id) {
            Some(p) => p.size = o.size,
            None => unindexed.push(UnindexedPack {
                id,
                size: o.size,
                modified: o.modified,
            }),
        }
    }
    Ok(Inventory {
        index_objects,
        packs,
        unindexed,
        present,
    })
}

/// Adds one index object's record of a pack to what other index objects
/// said of it.
fn merge_index_record(packs: &mut HashMap<Id, PackPlan>, p: IndexPack) {
    let entry = packs.entry(p.pack_id).or_insert_with(|| PackPlan {
        id: p.pack_id,
        size: 0,
        blobs: p.blobs.len(),
        used_blobs: 0,
        used_bytes: 0,
        obsolete_since: p.obsolete_since,
        action: PackAction::Keep,
        contents: PackPlan::unclaimed(p.blobs.clone()),
    });
    // A full key's record of a pack beats a write-only key's: a writer
    // could list another pack's blobs as its own.
    let trusted_now = entry.entries().all(|e| !e.session);
    if !trusted_now && p.blobs.iter().all(|e| !e.session) {
        entry.blobs = p.blobs.len();
        entry.contents = PackPlan::unclaimed(p.blobs);
    }
    entry.obsolete_since = merged_mark(entry.obsolete_since, p.obsolete_since);
}

/// Claims each blob in use once: packs in use first, then obsolete ones
/// (which are then revived); within each, copies stored whole before
/// deltas (a whole copy needs nothing else). Then the bases of claimed
/// deltas, and the check of copies a write-only key stored. Returns the
/// blobs in use with those bases; an error (damage) when some used blob
/// has no stored copy.
fn claim_used(
    repo: &Repository,
    packs: &mut HashMap<Id, PackPlan>,
    ids: &[Id],
    present: &HashSet<Id>,
    mut used: HashSet<Id>,
    cancel: &AtomicBool,
) -> Result<HashSet<Id>> {
    let mut claimed: HashSet<Id> = HashSet::with_capacity(used.len());
    let no_rejects = HashSet::new();
    claim_copies(packs, ids, present, &used, &mut claimed, true, &no_rejects);
    // A claimed delta needs its base, claimed from a copy stored whole (a
    // base is never a delta). Only the claimed copies count: a delta copy
    // nothing claims may name a base that is long gone. A base that is in
    // use itself and was claimed as a delta moves to a whole copy.
    let mut need_whole: HashSet<Id> = HashSet::new();
    for p in packs.values() {
        need_whole.extend(p.claimed().filter_map(|e| e.compression.base()));
    }
    if !need_whole.is_empty() {
        for p in packs.values_mut() {
            for i in 0..p.contents.len() {
                let b = &p.contents[i];
                let id = b.entry.id;
                if b.claimed && b.entry.compression.base().is_some() && need_whole.contains(&id) {
                    p.set_claimed(i, false);
                    claimed.remove(&id);
                }
            }
        }
        used.extend(need_whole.iter().copied());
        claim_copies(
            packs,
            ids,
            present,
            &need_whole,
            &mut claimed,
            false,
            &no_rejects,
        );
    }
    verify_writer_claims(repo, packs, ids, present, &mut claimed, cancel)?;
    if claimed.len() != used.len() {
        return Err(unclaimed_error(
            packs,
            present,
            &used,
            &claimed,
            &need_whole,
        ));
    }
    Ok(used)
}

/// The damage error for used blobs that no stored pack holds.
fn unclaimed_error(
    packs: &HashMap<Id, PackPlan>,
    present: &HashSet<Id>,
    used: &HashSet<Id>,
    claimed: &HashSet<Id>,
    need_whole: &HashSet<Id>,
) -> Error {
    let missing = used
        .iter()
        .find(|id| !claimed.contains(id))
        .copied()
        .unwrap_or_default();
    // A delta base with only delta copies left says more than "lost".
    let deltas_of_it = packs
        .values()
        .filter(|p| present.contains(&p.id))
        .flat_map(|p| p.entries())
        .filter(|e| e.id == missing && e.compression.base().is_some())
        .count();
    let missing = if need_whole.contains(&missing) && deltas_of_it > 0 {
        format!("{missing}, a delta base stored only as a delta ({deltas_of_it} copies)")
    } else if need_whole.contains(&missing) {
        format!("{missing}, a delta base")
    } else {
        missing.to_string()
    };
    damaged(format!(
        "{} blobs that snapshots use are in no stored pack (first: {missing}); the repository is damaged. \
         prune stops without changing anything",
        used.len() - claimed.len()
    ))
}

/// Each indexed pack's fate from what it holds in use, whether it is
/// stored, and how long ago it was marked obsolete. Returns the packs in
/// use that hold unused blobs too: the candidates for repacking.
fn decide_packs(
    packs: &mut HashMap<Id, PackPlan>,
    ids: &[Id],
    present: &HashSet<Id>,
    time: i64,
    grace: u64,
) -> Vec<Id> {
    let mut candidates: Vec<Id> = Vec::new();
    for id in ids {
        let Some(p) = packs.get_mut(id) else { continue };
        let all_used = p.used_blobs == p.contents.len();
        p.action = if !present.contains(id) {
            PackAction::DropMissing
        } else if let Some(since) = p.obsolete_since {
            if p.used_blobs > 0 {
                PackAction::Revive
            } else if time.saturating_sub(since) >= grace as i64 {
                PackAction::Delete
            } else {
                PackAction::KeepMarked
            }
        } else if p.used_blobs == 0 {
            if grace == 0 {
                PackAction::Delete
            } else {
                PackAction::Mark
            }
        } else {
            if !all_used {
                candidates.push(*id);
            }
            PackAction::Keep
        };
    }
    candidates
}

/// Unused bytes in packs that stay in use.
fn unused_in_kept(packs: &HashMap<Id, PackPlan>) -> u64 {
    packs
        .values()
        .filter(|p| matches!(p.action, PackAction::Keep | PackAction::Revive))
        .map(PackPlan::unused_bytes)
        .sum()
}

/// Repacks the emptiest `candidates` until the unused data left is within
/// `max_unused` (and the bytes read within `max_repack_size`), then the
/// packs that must be repacked whatever the limits (orphaned deltas,
/// copies kept elsewhere). Returns the unused bytes left in packs that
/// stay.
fn decide_repacks(
    packs: &mut HashMap<Id, PackPlan>,
    mut candidates: Vec<Id>,
    opts: &PruneOptions,
) -> u64 {
    let used_total: u64 = packs.values().map(|p| p.used_bytes).sum();
    let mut unused_left = unused_in_kept(packs);
    let max_unused = match opts.max_unused {
        MaxUnused::Unlimited => u64::MAX,
        MaxUnused::Bytes(b) => b,
        MaxUnused::Percent(pct) => (used_total as f64 * pct / (100.0 - pct)) as u64,
    };
    candidates.sort_by(|a, b| {
        let ratio = |id: &Id| {
            packs
                .get(id)
                .map(|p| p.unused_bytes() as f64 / p.size.max(1) as f64)
                .unwrap_or(0.0)
        };
        ratio(b).total_cmp(&ratio(a)).then(a.cmp(b))
    });
    let mut repack_size = 0u64;
    for id in candidates {
        if unused_left <= max_unused {
            break;
        }
        let Some(p) = packs.get_mut(&id) else {
            continue;
        };
        if opts
            .max_repack_size
            .is_some_and(|limit| repack_size + p.size > limit)
        {
            continue;
        }
        p.action = PackAction::Repack;
        repack_size += p.size;
        unused_left -= p.unused_bytes();
    }
    let orphans = repack_orphan_deltas(packs);
    if prefer_kept_copies(packs) || orphans {
        unused_left = unused_in_kept(packs);
    }
    unused_left
}

/// Adds the packs in no index. A running backup's packs are in no index
/// until its next index flush (at most 16 packs or a minute later,
/// timer-driven): an unindexed pack younger than an hour is never
/// deleted, however short the grace period (except 0, where the caller
/// vouched that nothing runs).
fn add_unindexed(list: &mut Vec<PackPlan>, unindexed: Vec<UnindexedPack>, time: i64, grace: u64) {
    let unindexed_age = if grace == 0 {
        0
    } else {
        grace.max(MIN_UNINDEXED_AGE)
    };
    for u in unindexed {
        let old = u
            .modified
            .is_some_and(|m| time.saturating_sub(m) >= unindexed_age as i64);
        list.push(PackPlan {
            id: u.id,
            size: u.size,
            blobs: 0,
            used_blobs: 0,
            used_bytes: 0,
            obsolete_since: None,
            action: if old {
                PackAction::DeleteUnindexed
            } else {
                PackAction::KeepUnindexed
            },
            contents: Vec::new(),
        });
    }
}

/// The sums over a plan's packs.
fn totals_of(
    list: &[PackPlan],
    snapshots: usize,
    used_blobs: usize,
    unused_left: u64,
) -> PruneTotals {
    let mut totals = PruneTotals {
        snapshots,
        used_blobs,
        ..PruneTotals::default()
    };
    for p in list {
        totals.packs += 1;
        totals.bytes += p.size;
        totals.used_bytes += p.used_bytes;
        match p.action {
            PackAction::Delete | PackAction::DeleteUnindexed => {
                totals.delete_packs += 1;
                totals.delete_bytes += p.size;
            }
            PackAction::Repack => {
                totals.repack_packs += 1;
                totals.repack_bytes += p.size;
            }
            PackAction::Mark => {
                totals.mark_packs += 1;
                totals.mark_bytes += p.size;
            }
            PackAction::KeepMarked => totals.waiting_packs += 1,
            PackAction::Revive => totals.revive_packs += 1,
            PackAction::KeepUnindexed => totals.recent_unindexed_packs += 1,
            PackAction::DropMissing => totals.missing_packs += 1,
            PackAction::Keep => {}
        }
    }
    totals.unused_bytes = totals.bytes.saturating_sub(totals.used_bytes);
    totals.unused_bytes_after = unused_left;
    totals
}

/// What [`execute`] did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PruneStats {
    /// Packs deleted.
    pub packs_deleted: usize,
    /// Bytes freed now.
    pub bytes_deleted: u64,
    /// New packs written by repacking.
    pub packs_written: usize,
    /// Bytes written by repacking.
    pub bytes_written: u64,
    /// Index objects written.
    pub index_written: usize,
    /// Index objects deleted.
    pub index_deleted: usize,
}

/// A pack that stays in use must not list a delta whose base is stored
/// whole nowhere that stays: readers might pick that copy of the blob and
/// fail. Such orphans are left behind when a blob has copies that are
/// deltas of different bases (two backups stored it at once) and a prune
/// claimed the other copy and let this base go. Packs holding one are
/// repacked, which drops the unclaimed copy; repacking drops unclaimed
/// whole blobs too, so this runs until nothing changes. Returns whether
/// it changed any action.
fn repack_orphan_deltas(packs: &mut HashMap<Id, PackPlan>) -> bool {
    let mut changed = false;
    loop {
        let mut available: HashSet<Id> = HashSet::new();
        for p in packs.values() {
            let all = match p.action {
                PackAction::Keep
                | PackAction::Revive
                | PackAction::KeepMarked
                | PackAction::Mark => true,
                PackAction::Repack => false,
                _ => continue,
            };
            for b in &p.contents {
                if b.entry.compression.base().is_none() && (all || b.claimed) {
                    available.insert(b.entry.id);
                }
            }
        }
        let mut round = false;
        for p in packs.values_mut() {
            if !matches!(p.action, PackAction::Keep | PackAction::Revive) {
                continue;
            }
            let orphan = p.entries().any(|e| {
                e.compression
                    .base()
                    .is_some_and(|b| !available.contains(&b))
            });
            if orphan {
                p.action = PackAction::Repack;
                round = true;
            }
        }
        if !round {
            return changed;
        }
        changed = true;
    }
}

/// Claims, for each blob of `want` not claimed yet, its first copy: the
/// copies a full key sealed before those of write-only keys (a writer may
/// have listed anything), each in the stored packs in use, then in the
/// obsolete ones; copies stored whole before deltas (deltas only with
/// `deltas`); each in `ids` order.
fn claim_copies(
    packs: &mut HashMap<Id, PackPlan>,
    ids: &[Id],
    present: &HashSet<Id>,
    want: &HashSet<Id>,
    claimed: &mut HashSet<Id>,
    deltas: bool,
    rejected: &HashSet<(Id, usize)>,
) {
    let kinds: &[bool] = if deltas { &[false, true] } else { &[false] };
    // A delta copy is usable only if its base is stored whole somewhere:
    // a delta left behind in a pack that stays, whose base a past prune
    // removed (another copy of the blob was claimed then), is not.
    let mut whole_stored: HashSet<Id> = HashSet::new();
    if deltas {
        for (id, p) in packs.iter() {
            if present.contains(id) {
                whole_stored.extend(
                    p.entries()
                        .filter(|e| e.compression.base().is_none())
                        .map(|e| e.id),
                );
            }
        }
    }
    // A full key's copy, even in an obsolete pack (which is then
    // revived), before any write-only key's: a writer may store garbage
    // under any blob ID it sees in the index (`docs/design.md` §8.2).
    for (session_pass, pass_obsolete) in
        [(false, false), (false, true), (true, false), (true, true)]
    {
        for &delta_pass in kinds {
            for id in ids {
                let Some(p) = packs.get_mut(id) else { continue };
                if p.obsolete_since.is_some() != pass_obsolete || !present.contains(id) {
                    continue;
                }
                for i in 0..p.contents.len() {
                    let e = &p.contents[i].entry;
                    let usable = e
                        .compression
                        .base()
                        .is_none_or(|b| whole_stored.contains(&b));
                    if e.compression.base().is_some() == delta_pass
                        && e.session == session_pass
                        && usable
                        && want.contains(&e.id)
                        && !rejected.contains(&(*id, i))
                        && claimed.insert(e.id)
                    {
                        p.set_claimed(i, true);
                    }
                }
            }
        }
    }
}

/// A write-only key's copy of a blob that prune keeps while another copy
/// of it is stored (another writer's, or garbage a compromised writer
/// stored under the ID) is read and checked first: a copy that does not
/// open to its ID is passed over for the next one (`docs/design.md`
/// §6.3). Full keys' copies need no check (a writer cannot forge them);
/// blobs with a single copy have nothing to choose from.
fn verify_writer_claims(
    repo: &Repository,
    packs: &mut HashMap<Id, PackPlan>,
    ids: &[Id],
    present: &HashSet<Id>,
    claimed: &mut HashSet<Id>,
    cancel: &AtomicBool,
) -> Result<()> {
    let mut copies: HashMap<Id, usize> = HashMap::new();
    for id in ids.iter().filter(|id| present.contains(*id)) {
        if let Some(p) = packs.get(id) {
            for e in p.entries() {
                *copies.entry(e.id).or_default() += 1;
            }
        }
    }
    let mut rejected: HashSet<(Id, usize)> = HashSet::new();
    loop {
        // The claimed writer copies of blobs stored more than once, not
        // yet checked (a rejected copy is never claimed again).
        let mut suspect: Vec<(Id, usize, BlobEntry)> = Vec::new();
        for id in ids {
            let Some(p) = packs.get(id) else { continue };
            for (i, b) in p.contents.iter().enumerate() {
                let e = &b.entry;
                if b.claimed && e.session && copies.get(&e.id).is_some_and(|&n| n > 1) {
                    suspect.push((*id, i, *e));
                }
            }
        }
        let mut bad = Vec::new();
        for (pack_id, i, e) in suspect {
            if cancel.load(Ordering::SeqCst) {
                return Err(Error::interrupted());
            }
            let sealed = repo.backend().get_range(
                ObjectKind::Pack,
                &pack_id.to_hex(),
                u64::from(e.offset),
                u64::from(e.length),
            )?;
            let keys = repo.blob_keys(&pack_id, &e)?;
            match pack::decode_blob(&keys, repo.id(), &e, &sealed, &pack_id) {
                Ok(_) => {
                    // Checked: never again in this loop.
                    copies.insert(e.id, 1);
                }
                Err(err) if err.kind() == ErrorKind::Corrupt => bad.push((pack_id, i, e)),
                Err(err) => return Err(err),
            }
        }
        if bad.is_empty() {
            return Ok(());
        }
        let mut again = HashSet::new();
        for (pack_id, i, e) in bad {
            rejected.insert((pack_id, i));
            if let Some(p) = packs.get_mut(&pack_id) {
                p.set_claimed(i, false);
            }
            claimed.remove(&e.id);
            again.insert(e.id);
        }
        claim_copies(packs, ids, present, &again, claimed, true, &rejected);
    }
}

/// A blob that a repacked pack claims may also be in a pack that stays
/// (an earlier prune that failed after its new index landed leaves such
/// copies). Copying it again would make one more duplicate, and which copy
/// the next plan claims depends on the new pack's ID: that plan would then
/// find a new pack it does not need. So the claim moves to the pack that
/// stays (a repacked pack left with nothing to copy is still retired as
/// planned). Returns whether any claim moved.
fn prefer_kept_copies(packs: &mut HashMap<Id, PackPlan>) -> bool {
    let stays = |p: &PackPlan| matches!(p.action, PackAction::Keep | PackAction::Revive);
    // Each blob a repacked pack claims, and how it is stored there (its
    // base, for a delta). Its first copy in a pack that stays, by pack ID,
    // stored the same way (whole, or as a delta against the same base: a
    // claimed delta's base is in use, another base may not be), takes the
    // claim.
    // A full key's copy never moves to a writer's (session) copy.
    let copied: HashMap<Id, (Option<Id>, bool)> = packs
        .values()
        .filter(|p| p.action == PackAction::Repack)
        .flat_map(|p| {
            p.claimed()
                .map(|e| (e.id, (e.compression.base(), e.session)))
        })
        .collect();
    if copied.is_empty() {
        return false;
    }
    let mut kept_at: HashMap<Id, (Id, usize)> = HashMap::new();
    let mut ids: Vec<Id> = packs.values().filter(|p| stays(p)).map(|p| p.id).collect();
    ids.sort();
    for id in ids {
        let Some(p) = packs.get(&id) else { continue };
        for (i, e) in p.entries().enumerate() {
            let same = copied.get(&e.id).is_some_and(|&(base, session)| {
                base == e.compression.base() && (session || !e.session)
            });
            if same {
                kept_at.entry(e.id).or_insert((id, i));
            }
        }
    }
    if kept_at.is_empty() {
        return false;
    }
    for p in packs
        .values_mut()
        .filter(|p| p.action == PackAction::Repack)
    {
        for i in 0..p.contents.len() {
            if kept_at.contains_key(&p.contents[i].entry.id) {
                p.set_claimed(i, false);
            }
        }
    }
    for (blob, (pack, i)) in kept_at {
        let Some(p) = packs.get_mut(&pack) else {
            continue;
        };
        debug_assert_eq!(p.contents.get(i).map(|b| b.entry.id), Some(blob));
        p.set_claimed(i, true);
    }
    true
}

/// Refuses to go on when this machine's clock (`now`) is ahead of the
/// storage's by more than the grace margin (at least a minute): the
/// storage's time is the modification time it gives the index objects this
/// prune just wrote (`docs/design.md` §6.5). A storage that gives no
/// times cannot be compared with.
pub fn check_clock(repo: &Repository, now: i64) -> Result<()> {
    let written = repo.indexes_written();
    if written.is_empty() {
        return Ok(());
    }
    let storage_now = repo
        .backend()
        .list(ObjectKind::Index)?
        .into_iter()
        .filter(|o| Id::parse(&o.name).is_ok_and(|id| written.contains(&id)))
        .filter_map(|o| o.modified)
        .max();
    let Some(storage_now) = storage_now else {
        return Ok(());
    };
    let allowed = (repo.config().grace_margin_seconds() as i64).max(60);
    let ahead = now - storage_now;
    if ahead > allowed {
        return Err(Error::new(
            ErrorKind::Io,
            format!(
                "this machine's clock is {ahead}s ahead of the storage's (more than the {allowed}s allowed): \
                 prune would delete a running backup's data; nothing was deleted, fix the clock (NTP) and run it again"
            ),
        ));
    }
    Ok(())
}

/// Most blobs per new index object.
const INDEX_CHUNK_BLOBS: usize = 1_000_000;

/// Carries out a plan. Order: new packs, new index, then deletions.
pub fn execute(repo: &Repository, plan: &PrunePlan, cancel: &AtomicBool) -> Result<PruneStats> {
    let mut stats = PruneStats::default();
    // 1. Copy the used blobs of partly used packs into new packs.
    let new_packs = repack(repo, plan, cancel, &mut stats)?;
    if cancel.load(Ordering::SeqCst) {
        return Err(Error::interrupted());
    }
    // 2. The new index: everything that stays, obsolete packs as such.
    let records = new_index_records(plan, new_packs);
    stats.index_written += repo.save_index_records(records, INDEX_CHUNK_BLOBS)?;
    // Before anything is deleted: does this machine's clock agree with the
    // storage's? Ahead, it would take a running backup's new packs for a
    // crashed one's leftovers and start grace periods early.
    check_clock(repo, jiff::Timestamp::now().as_second())?;

    // 3. Only now: remove what the new index replaces...
    for id in &plan.index_objects {
        repo.backend().delete(ObjectKind::Index, &id.to_hex())?;
        stats.index_deleted += 1;
    }
    // 4. ...and the condemned packs; 5. with grace 0, repacked packs go at
    // once too (nothing else can need them: the caller vouched that no
    // backup runs).
    for p in &plan.packs {
        let condemned = match p.action {
            PackAction::Delete | PackAction::DeleteUnindexed => true,
            PackAction::Repack => plan.grace_seconds == 0,
            _ => false,
        };
        if condemned {
            repo.backend().delete(ObjectKind::Pack, &p.id.to_hex())?;
            stats.packs_deleted += 1;
            stats.bytes_deleted += p.size;
        }
    }
    repo.sync_index()?;
    Ok(stats)
}

/// Copies the claimed blobs of the packs to repack into new packs, and
/// stores them; returns their index records.
fn repack(
    repo: &Repository,
    plan: &PrunePlan,
    cancel: &AtomicBool,
    stats: &mut PruneStats,
) -> Result<Vec<IndexPack>> {
    let mut new_packs: Vec<IndexPack> = Vec::new();
    let mut packer = Packer::new(repo)?;
    let mut store = |finished: FinishedPack| -> Result<()> {
        stats.packs_written += 1;
        stats.bytes_written += finished.bytes.len() as u64;
        new_packs.push(repo.store_copied_pack(finished)?);
        Ok(())
    };
    for p in plan.with_action(PackAction::Repack) {
        if cancel.load(Ordering::SeqCst) {
            return Err(Error::interrupted());
        }
        let name = p.id.to_hex();
        let bytes = repo.backend().get(ObjectKind::Pack, &name)?;
        verify_name(ObjectKind::Pack, &name, &bytes)?;
        for (e, sealed) in claimed_blobs(repo, p, &bytes)? {
            if let Some(full) = packer.add_stored(&e, &sealed)? {
                store(full)?;
            }
        }
    }
    for full in packer.finish_all()? {
        store(full)?;
    }
    Ok(new_packs)
}

/// The blobs pack `p` (its bytes) gives to the new packs, each as it
/// will be stored. Each claimed blob's seal is checked (on all cores),
/// then the blob is copied as it is stored: its seal binds the
/// repository, its type and its ID, not its pack, so it needs no new
/// compression nor encryption. A blob a write-only client sealed with
/// its session key is sealed again with the data key instead (the new
/// pack has no key block). Before it is stored, the new pack is checked
/// from the buffer that is written: every seal must open again there.
fn claimed_blobs<'b>(
    repo: &Repository,
    p: &PackPlan,
    bytes: &'b [u8],
) -> Result<Vec<(BlobEntry, std::borrow::Cow<'b, [u8]>)>> {
    let keys = repo.keys();
    let pack_keys = pack::pack_keys(keys, repo.id(), bytes, &p.id)?;
    p.claimed()
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|e| {
            let sealed = bytes
                .get(e.offset as usize..e.end() as usize)
                .ok_or_else(|| {
                    damaged(format!(
                        "pack {}: blob {} lies outside the pack",
                        p.id, e.id
                    ))
                })?;
            if e.session {
                let (e, sealed) = pack::reseal_blob(&pack_keys, keys, repo.id(), e, sealed, &p.id)?;
                return Ok((e, std::borrow::Cow::Owned(sealed)));
            }
            pack::check_blob_seal(keys, repo.id(), e, sealed, &p.id)?;
            Ok((*e, std::borrow::Cow::Borrowed(sealed)))
        })
        .collect()
}

/// The records of the new index: the new packs, and every pack that
/// stays, obsolete ones as such. The mark time is now, when the marks
/// become visible, not when planning began: the grace period must not
/// start before backups can see it.
fn new_index_records(plan: &PrunePlan, new_packs: Vec<IndexPack>) -> Vec<IndexPack> {
    let mark_time = jiff::Timestamp::now().as_second().max(plan.time);
    let mut records = new_packs;
    for p in &plan.packs {
        let obsolete_since = match p.action {
            PackAction::Keep | PackAction::Revive => None,
            // With grace 0 repacked packs are deleted at once: no record.
            PackAction::Repack if plan.grace_seconds == 0 => continue,
            PackAction::Mark | PackAction::Repack => Some(mark_time),
            PackAction::KeepMarked => p.obsolete_since,
            PackAction::Delete
            | PackAction::DeleteUnindexed
            | PackAction::KeepUnindexed
            | PackAction::DropMissing => continue,
        };
        records.push(IndexPack {
            pack_id: p.id,
            obsolete_since,
            blobs: p.entries().copied().collect(),
        });
    }
    records
}

/// The operation as methods: `repo.prune_plan(...)`, then `repo.prune(&plan, ...)`.
impl Repository {
    /// Decides what to delete and repack: see [`plan`].
    pub fn prune_plan(&self, opts: &PruneOptions, cancel: &AtomicBool) -> Result<PrunePlan> {
        plan(self, opts, cancel)
    }

    /// Carries `plan` out: see [`execute`].
    pub fn prune(&self, plan: &PrunePlan, cancel: &AtomicBool) -> Result<PruneStats> {
        execute(self, plan, cancel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::pack::BlobType;

    /// Which copies of pack `p` are claimed.
    fn flags(p: &PackPlan) -> Vec<bool> {
        p.contents.iter().map(|b| b.claimed).collect()
    }

    fn pack(n: u8, blobs: &[u8], claimed: &[bool], action: PackAction) -> (Id, PackPlan) {
        let contents: Vec<PlannedBlob> = blobs
            .iter()
            .zip(claimed)
            .enumerate()
            .map(|(i, (&b, &claimed))| PlannedBlob {
                claimed,
                entry: BlobEntry {
                    id: Id::from_bytes([b; 32]),
                    blob_type: BlobType::Data,
                    compression: crate::format::compress::Compression::None,
                    offset: 100 * i as u32,
                    length: 100,
                    raw_length: 60,
                    session: false,
                },
            })
            .collect();
        let used = claimed.iter().filter(|&&c| c).count();
        let id = Id::from_bytes([n; 32]);
        let plan = PackPlan {
            id,
            size: 100 * blobs.len() as u64,
            blobs: blobs.len(),
            used_blobs: used,
            used_bytes: 100 * used as u64,
            obsolete_since: None,
            action,
            contents,
        };
        (id, plan)
    }

    #[test]
    fn a_repacked_blob_that_a_kept_pack_also_holds_is_claimed_there_not_copied() {
        // Pack 1 (repacked) claims blobs 7 and 8; pack 2 (kept) also holds
        // 7, unclaimed; pack 4 (deleted) also holds 8.
        let mut packs: HashMap<Id, PackPlan> = [
            pack(1, &[7, 8, 5], &[true, true, false], PackAction::Repack),
            pack(2, &[6, 7], &[true, false], PackAction::Keep),
            pack(3, &[9], &[true], PackAction::Keep),
            pack(4, &[8], &[false], PackAction::Delete),
        ]
        .into();
        assert!(prefer_kept_copies(&mut packs));
        let p1 = &packs[&Id::from_bytes([1; 32])];
        assert_eq!(flags(p1), [false, true, false], "only 8 is left to copy");
        assert_eq!((p1.used_blobs, p1.used_bytes), (1, 100));
        assert_eq!(p1.action, PackAction::Repack);
        let p2 = &packs[&Id::from_bytes([2; 32])];
        assert_eq!(flags(p2), [true, true]);
        assert_eq!((p2.used_blobs, p2.used_bytes), (2, 200));
        // A pack being deleted is no place to keep a blob.
        assert_eq!(flags(&packs[&Id::from_bytes([4; 32])]), [false]);
        // Nothing left to move: no change.
        assert!(!prefer_kept_copies(&mut packs));
    }

    #[test]
    fn a_claim_moves_only_to_a_copy_stored_the_same_way() {
        let base = |n: u8| crate::format::compress::Compression::Delta(Id::from_bytes([n; 32]));
        let (r, mut repacked) = pack(1, &[7, 8, 9], &[true, true, true], PackAction::Repack);
        repacked.contents[0].entry.compression = base(50);
        repacked.contents[1].entry.compression = base(50);
        let (k, mut kept) = pack(2, &[7, 8, 9], &[false, false, false], PackAction::Keep);
        kept.contents[0].entry.compression = base(50); // same base: may move
        kept.contents[1].entry.compression = base(51); // another base: must not
                                                       // entries[2]: whole in both: may move.
        let mut packs: HashMap<Id, PackPlan> = [(r, repacked), (k, kept)].into();
        assert!(prefer_kept_copies(&mut packs));
        assert_eq!(flags(&packs[&r]), [false, true, false]);
        assert_eq!(flags(&packs[&k]), [true, false, true]);
    }

    #[test]
    fn a_kept_pack_with_a_delta_whose_base_goes_is_repacked() {
        let delta = |n: u8| crate::format::compress::Compression::Delta(Id::from_bytes([n; 32]));
        // Blob 7 is stored twice: in pack 1 as a delta of 50 (claimed; 50
        // is whole and claimed in pack 3) and in pack 2 as a delta of 51,
        // unclaimed, whose base is only in pack 4, deleted now.
        let (a, mut p1) = pack(1, &[7, 6], &[true, true], PackAction::Keep);
        p1.contents[0].entry.compression = delta(50);
        let (b, mut p2) = pack(2, &[7, 5], &[false, true], PackAction::Keep);
        p2.contents[0].entry.compression = delta(51);
        let (c, p3) = pack(3, &[50], &[true], PackAction::Keep);
        let (d, p4) = pack(4, &[51], &[false], PackAction::Delete);
        // Pack 5 holds an unclaimed delta of 52, whose base stays in an
        // obsolete pack within its grace period: readable, so left alone.
        let (e, mut p5) = pack(5, &[8, 9], &[false, true], PackAction::Keep);
        p5.contents[0].entry.compression = delta(52);
        let (f, p6) = pack(6, &[52], &[false], PackAction::KeepMarked);
        let mut packs: HashMap<Id, PackPlan> =
            [(a, p1), (b, p2), (c, p3), (d, p4), (e, p5), (f, p6)].into();
        assert!(repack_orphan_deltas(&mut packs));
        assert_eq!(packs[&b].action, PackAction::Repack);
        assert_eq!(packs[&a].action, PackAction::Keep);
        assert_eq!(packs[&e].action, PackAction::Keep);
        assert!(!repack_orphan_deltas(&mut packs));

        // Repacking drops unclaimed whole blobs too: a delta of one of
        // them becomes an orphan in the next round.
        let (g, p7) = pack(7, &[53, 1], &[false, true], PackAction::Repack);
        let (h, mut p8) = pack(8, &[2, 3], &[true, false], PackAction::Keep);
        p8.contents[1].entry.compression = delta(53);
        let mut packs: HashMap<Id, PackPlan> = [(g, p7), (h, p8)].into();
        assert!(repack_orphan_deltas(&mut packs));
        assert_eq!(packs[&h].action, PackAction::Repack);
    }

    #[test]
    fn a_delta_is_claimed_only_if_its_base_is_stored_whole() {
        let delta = |n: u8| crate::format::compress::Compression::Delta(Id::from_bytes([n; 32]));
        // Blob 7: a delta of 51 (gone) in pack 1, a delta of 50 (stored)
        // in pack 2. Pack 1 sorts first, yet pack 2's copy is claimed.
        let (a, mut p1) = pack(1, &[7], &[false], PackAction::Keep);
        p1.contents[0].entry.compression = delta(51);
        let (b, mut p2) = pack(2, &[7], &[false], PackAction::Keep);
        p2.contents[0].entry.compression = delta(50);
        let (c, p3) = pack(3, &[50], &[false], PackAction::Keep);
        let mut packs: HashMap<Id, PackPlan> = [(a, p1), (b, p2), (c, p3)].into();
        for p in packs.values_mut() {
            p.used_blobs = 0;
            p.used_bytes = 0;
        }
        let ids = [a, b, c];
        let present: HashSet<Id> = ids.iter().copied().collect();
        let want: HashSet<Id> = [Id::from_bytes([7; 32])].into();
        let mut claimed = HashSet::new();
        claim_copies(
            &mut packs,
            &ids,
            &present,
            &want,
            &mut claimed,
            true,
            &HashSet::new(),
        );
        assert_eq!(flags(&packs[&a]), [false]);
        assert_eq!(flags(&packs[&b]), [true]);
    }

    #[test]
    fn max_unused_parses_like_restic() -> Result<()> {
        assert_eq!("5%".parse::<MaxUnused>()?, MaxUnused::Percent(5.0));
        assert_eq!("unlimited".parse::<MaxUnused>()?, MaxUnused::Unlimited);
        assert_eq!("100M".parse::<MaxUnused>()?, MaxUnused::Bytes(100 << 20));
        assert_eq!("2g".parse::<MaxUnused>()?, MaxUnused::Bytes(2 << 30));
        assert_eq!("4096".parse::<MaxUnused>()?, MaxUnused::Bytes(4096));
        assert!("100%".parse::<MaxUnused>().is_err());
        assert!("5x".parse::<MaxUnused>().is_err());
        Ok(())
    }
}
