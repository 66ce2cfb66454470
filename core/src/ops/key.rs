//! Key management (`docs/design.md` §2.3): the key files of a repository,
//! each wrapping the master key under its own password. Listing, adding,
//! removing, and changing the password of the key in use.
//!
//! Adding a key writes a new key file; removing one deletes it. Changing a
//! password adds the new key file before it deletes the old one, so an
//! interruption leaves both (either password opens the repository), never
//! neither.

use rayon::prelude::*;
use serde::Serialize;

use crate::backend::ObjectKind;
use crate::error::{Error, ErrorKind, Result};
use crate::format::keyfile::{self, KdfParams, KeyInfo};
use crate::id::Id;
use crate::repo::repository::{verify_name, Repository};

/// One key file, as `key list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct KeyEntry {
    /// The key file's object name.
    pub id: String,
    /// Whether this key opened the repository.
    pub current: bool,
    /// What the key file says about itself (absent when unreadable).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub info: Option<KeyInfo>,
    /// Its Argon2id parameters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kdf: Option<KdfParams>,
    /// Why it cannot be read, if it cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl KeyEntry {
    /// Whether the key gives full access (reads, writes, deletes).
    pub fn is_full(&self) -> bool {
        self.info.as_ref().is_some_and(|i| i.kind == "full")
    }
}

/// Every key file of the repository, oldest first (by `created`), with
/// unreadable ones listed with their error.
pub fn list(repo: &Repository) -> Result<Vec<KeyEntry>> {
    let names = repo.backend().list(ObjectKind::Key)?;
    let mut out: Vec<KeyEntry> = names
        .par_iter()
        .map(|o| {
            let what = format!("key {}", o.name);
            let read = repo.backend().get(ObjectKind::Key, &o.name).and_then(|b| {
                verify_name(ObjectKind::Key, &o.name, &b)?;
                keyfile::info(&b, repo.id(), repo.keys(), &what)
            });
            let (info, kdf, error) = match read {
                Ok((kdf, info)) => (Some(info), Some(kdf), None),
                Err(e) => (None, None, Some(e.to_string())),
            };
            KeyEntry {
                current: o.name == repo.key_name(),
                id: o.name.clone(),
                info,
                kdf,
                error,
            }
        })
        .collect();
    out.sort_by(|a, b| {
        let created = |e: &KeyEntry| e.info.as_ref().map(|i| i.created.clone());
        created(a).cmp(&created(b)).then(a.id.cmp(&b.id))
    });
    Ok(out)
}

/// Adds a full-access key file opened by `password`; returns its name.
pub fn add(repo: &Repository, password: &[u8], kdf: KdfParams, info: &KeyInfo) -> Result<String> {
    if password.is_empty() {
        return Err(Error::invalid("an empty password is not a password"));
    }
    kdf.check()?;
    let bytes = keyfile::create(repo.master_key()?, repo.id(), password, kdf, info)?;
    let name = Id::of_bytes(&bytes).to_hex();
    repo.backend().put(ObjectKind::Key, &name, &bytes)?;
    Ok(name)
}

/// Adds a write-only key file opened by `password` (`repo-format.md`
/// §3.3 kind 2): it names, deduplicates and seals new data, and holds
/// nothing that reads or removes what is stored. Returns its name.
pub fn add_write_only(
    repo: &Repository,
    password: &[u8],
    kdf: KdfParams,
    info: &KeyInfo,
) -> Result<String> {
    if password.is_empty() {
        return Err(Error::invalid("an empty password is not a password"));
    }
    kdf.check()?;
    let master = repo.master_key()?;
    let config_json =
        serde_json::to_vec(repo.config()).map_err(|e| Error::invalid(format!("config: {e}")))?;
    let key = keyfile::WriteOnlyKey {
        keys: crate::crypto::WriterKeys::derive(master),
        public: crate::crypto::RepoKeyPair::derive(master).public(),
        config_json,
    };
    let mut info = info.clone();
    info.kind = "write-only".into();
    let bytes = keyfile::create_write_only(
        &key,
        repo.keys().key_info(),
        repo.id(),
        password,
        kdf,
        &info,
    )?;
    let name = Id::of_bytes(&bytes).to_hex();
    repo.backend().put(ObjectKind::Key, &name, &bytes)?;
    Ok(name)
}

/// Finds the key file named by `spec` (its name or a unique prefix).
pub fn resolve<'a>(keys: &'a [KeyEntry], spec: &str) -> Result<&'a KeyEntry> {
    let lower = spec.to_ascii_lowercase();
    let found: Vec<&KeyEntry> = keys.iter().filter(|k| k.id.starts_with(&lower)).collect();
    match found.as_slice() {
        [one] if !lower.is_empty() => Ok(one),
        [] | [_] => Err(Error::new(
            ErrorKind::InvalidInput,
            format!("no key file {spec:?} (cairn key list shows them)"),
        )),
        many => Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "key ID prefix {spec:?} is ambiguous: {}",
                many.iter()
                    .map(|k| &k.id[..12])
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

/// Why removing `target` needs `--force`, if it does: it is the key in
/// use, or the last key that gives full access.
pub fn removal_risk(keys: &[KeyEntry], target: &KeyEntry) -> Option<String> {
    if target.current {
        return Some(format!(
            "key {} is the one in use (its password opened the repository)",
            &target.id[..8]
        ));
    }
    let other_full = keys
        .iter()
        .filter(|k| k.id != target.id && k.is_full())
        .count();
    if target.is_full() && other_full == 0 {
        return Some(format!(
            "key {} is the last key with full access; without it nothing in the repository can be read again",
            &target.id[..8]
        ));
    }
    None
}

/// Deletes key file `name`. With `keep_a_full_key`, the repository must
/// still have a full key afterwards: two removals at the same moment
/// (each checked a listing from before the other's delete) could
/// otherwise take the last two, so the listing is read again after the
/// delete, and if no full key is left the file is put back.
pub fn remove(repo: &Repository, name: &str, keep_a_full_key: bool) -> Result<()> {
    let bytes = repo.backend().get(ObjectKind::Key, name)?;
    repo.backend().delete(ObjectKind::Key, name)?;
    if keep_a_full_key && !list(repo)?.iter().any(KeyEntry::is_full) {
        repo.backend().put(ObjectKind::Key, name, &bytes)?;
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "key {} was put back: no other key with full access is left (one was removed at the same time)",
                &name[..8.min(name.len())]
            ),
        ));
    }
    Ok(())
}

/// Replaces the key in use by one with `new_password`: the new key file
/// is written first, then the old one deleted. Returns (new, old) names.
pub fn change_password(
    repo: &Repository,
    new_password: &[u8],
    kdf: KdfParams,
    info: &KeyInfo,
) -> Result<(String, String)> {
    let new = add(repo, new_password, kdf, info)?;
    let old = repo.key_name().to_string();
    remove(repo, &old, true).map_err(|e| {
        e.context(format!(
            "the new key {} was added, but the old key {} could not be removed (remove it with cairn key remove)",
            &new[..8],
            &old[..8]
        ))
    })?;
    Ok((new, old))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: char, current: bool, kind: Option<&str>) -> KeyEntry {
        KeyEntry {
            id: id.to_string().repeat(64),
            current,
            info: kind.map(|k| KeyInfo {
                created: "2026-11-27T00:00:00Z".into(),
                host: "h".into(),
                user: "u".into(),
                kind: k.into(),
            }),
            kdf: None,
            error: None,
        }
    }

    #[test]
    fn removing_the_key_in_use_or_the_last_full_key_is_a_risk() {
        let keys = vec![
            entry('a', true, Some("full")),
            entry('b', false, Some("full")),
            entry('c', false, Some("write-only")),
            entry('d', false, None),
        ];
        assert!(removal_risk(&keys, &keys[0]).is_some_and(|r| r.contains("in use")));
        assert_eq!(removal_risk(&keys, &keys[1]), None);
        assert_eq!(removal_risk(&keys, &keys[2]), None);
        assert_eq!(removal_risk(&keys, &keys[3]), None);
        // b is the last full key once a is gone; an unreadable key does
        // not count as one.
        let rest = vec![keys[1].clone(), keys[2].clone(), keys[3].clone()];
        assert!(
            removal_risk(&rest, &rest[0]).is_some_and(|r| r.contains("last key with full access"))
        );
    }

    #[test]
    fn key_prefixes_resolve_uniquely() {
        let keys = vec![
            entry('a', true, Some("full")),
            entry('b', false, Some("full")),
        ];
        assert!(resolve(&keys, "aaaa").is_ok_and(|k| k.id == keys[0].id));
        assert!(resolve(&keys, "BBB").is_ok_and(|k| k.id == keys[1].id));
        assert!(resolve(&keys, "c").is_err());
        assert!(resolve(&keys, "").is_err());
    }
}
