//! `cairn tag`: changing the tags of stored snapshots, as restic does. A
//! snapshot object is never modified (its name is the hash of its bytes):
//! a copy with the new tags is written, naming the old one in `original`,
//! and the old one is deleted (`repo-format.md` §9).

use crate::backend::ObjectKind;
use crate::error::{Error, Result};
use crate::format::snapshot::Snapshot;
use crate::id::Id;
use crate::repo::repository::Repository;

/// What to do to each snapshot's tags: `set` first (when given), then
/// `add`, then `remove`.
#[derive(Debug, Clone, Default)]
pub struct TagChange {
    /// Replace the tags with these (`--set`; `Some(empty)` removes all).
    pub set: Option<Vec<String>>,
    /// Add these (`--add`).
    pub add: Vec<String>,
    /// Remove these (`--remove`).
    pub remove: Vec<String>,
}

impl TagChange {
    /// Whether it changes anything at all.
    pub fn is_empty(&self) -> bool {
        self.set.is_none() && self.add.is_empty() && self.remove.is_empty()
    }

    /// The tags `tags` become.
    pub fn apply_to(&self, tags: &[String]) -> Vec<String> {
        let mut out: Vec<String> = match &self.set {
            Some(set) => set.clone(),
            None => tags.to_vec(),
        };
        for t in &self.add {
            out.push(t.clone());
        }
        out.retain(|t| !self.remove.contains(t));
        let mut seen = std::collections::HashSet::new();
        out.retain(|t| seen.insert(t.clone()));
        out
    }
}

/// Applies `change` to `snapshot`: writes the copy with the new tags and
/// deletes the old one. Returns the new ID, or `None` when the tags stay
/// as they are (nothing written).
pub fn retag(repo: &Repository, snapshot: &Snapshot, change: &TagChange) -> Result<Option<Id>> {
    let tags = change.apply_to(&snapshot.tags);
    if tags == snapshot.tags {
        return Ok(None);
    }
    crate::format::snapshot::check_labels(&snapshot.hostname, &tags)?;
    let mut copy = snapshot.clone();
    copy.tags = tags;
    copy.original = Some(snapshot.original.unwrap_or(snapshot.id));
    let id = repo.save_snapshot(&copy)?;
    if id == snapshot.id {
        return Ok(None);
    }
    // Written first, deleted second: a crash in between leaves both (the
    // copy is found again by `original` and the old one can be forgotten),
    // never neither.
    repo.backend()
        .delete(ObjectKind::Snapshot, &snapshot.id.to_hex())
        .map_err(|e| {
            Error::new(
                e.kind(),
                format!(
                    "snapshot {} was written with the new tags, but the old one {} could not be \
                     deleted: {e}",
                    id.short(),
                    snapshot.id.short()
                ),
            )
        })?;
    Ok(Some(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn set_then_add_then_remove_without_duplicates() {
        let add = TagChange {
            add: s(&["weekly", "nightly"]),
            ..Default::default()
        };
        assert_eq!(add.apply_to(&s(&["nightly"])), s(&["nightly", "weekly"]));
        let set = TagChange {
            set: Some(s(&["keep"])),
            remove: s(&["keep", "nightly"]),
            ..Default::default()
        };
        assert!(set.apply_to(&s(&["nightly", "x"])).is_empty());
        let clear = TagChange {
            set: Some(Vec::new()),
            ..Default::default()
        };
        assert!(clear.apply_to(&s(&["a"])).is_empty());
        assert!(!clear.is_empty() && TagChange::default().is_empty());
    }
}
