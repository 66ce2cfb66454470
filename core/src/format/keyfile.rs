//! Key files: the master key wrapped under a password (`repo-format.md` §3).
//!
//! ```text
//! 0    8   header (type 2)
//! 8    1   KDF algorithm: 1 = Argon2id, version 0x13
//! 9    4   memory cost in KiB (u32 LE)
//! 13   4   iterations (u32 LE)
//! 17   4   parallelism (u32 LE)
//! 21   32  salt
//! 53   2   W: length of the wrapped key (u16 LE)
//! 55   W   nonce || seal(kind (1) || master key (32)) || tag
//! 55+W ..  nonce || seal(JSON key info) || tag, under the key-info sub-key
//! ```
//!
//! The wrapping key is Argon2id(password, salt, params), 32 bytes. The KDF
//! parameters are checked against fixed bounds *before* deriving, so a planted
//! key file cannot make cairn allocate terabytes, and they are part of the
//! associated data, so they cannot be lowered without breaking the seal.

use argon2::{Algorithm, Argon2, Params, Version};
use serde::{Deserialize, Serialize};

use crate::crypto::{random_bytes, Keys, MasterKey, SealingKey, WriterKeys};
use crate::error::{Error, ErrorKind, Result};
use crate::format::{self, ObjectType, HEADER_LEN};
use crate::id::Id;

/// KDF algorithm byte for Argon2id v1.3.
const KDF_ARGON2ID: u8 = 1;
/// Key kind byte: full access (reads and writes everything).
const KIND_FULL: u8 = 1;
/// Key kind byte: write-only (adds backups; reads and deletes nothing).
const KIND_WRITE_ONLY: u8 = 2;
/// Fixed part of a write-only key's plaintext after the kind byte: four
/// 32-byte keys, the repository public key, the chunker seed.
const WRITE_ONLY_FIXED: usize = 5 * 32 + 8;
const KDF_BLOCK_END: usize = 53;
const WRAPPED_PLAIN_LEN: usize = 33;
/// Largest key-info section accepted.
const MAX_INFO_LEN: usize = 64 * 1024;

/// Upper bound on Argon2 memory: 2 GiB.
pub const MAX_MEMORY_KIB: u32 = 2 * 1024 * 1024;
/// Upper bound on Argon2 iterations.
pub const MAX_ITERATIONS: u32 = 16;
/// Upper bound on Argon2 lanes.
pub const MAX_PARALLELISM: u32 = 16;

/// Argon2id cost parameters of one key file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory cost in KiB.
    pub memory_kib: u32,
    /// Number of passes.
    pub iterations: u32,
    /// Number of lanes.
    pub parallelism: u32,
}

impl Default for KdfParams {
    /// 48 MiB, 4 passes, 4 lanes: the work of RFC 9106's second
    /// recommended setting (64 MiB × 3 passes = 48 MiB × 4 passes of block
    /// computations, so the same cost per password guess), with a peak
    /// memory that lets every cairn command stay within 64 MB.
    fn default() -> Self {
        KdfParams {
            memory_kib: 48 * 1024,
            iterations: 4,
            parallelism: 4,
        }
    }
}

impl KdfParams {
    /// Refuses parameters outside cairn's bounds. Called before any
    /// derivation, on parameters read from storage as well as from users.
    pub fn check(&self) -> Result<()> {
        let KdfParams {
            memory_kib: m,
            iterations: t,
            parallelism: p,
        } = *self;
        if !(1..=MAX_PARALLELISM).contains(&p) {
            return Err(Error::invalid(format!(
                "Argon2 parallelism {p} is outside 1..={MAX_PARALLELISM}"
            )));
        }
        if !(1..=MAX_ITERATIONS).contains(&t) {
            return Err(Error::invalid(format!(
                "Argon2 iterations {t} is outside 1..={MAX_ITERATIONS}"
            )));
        }
        if m < 8 * p || m > MAX_MEMORY_KIB {
            return Err(Error::invalid(format!(
                "Argon2 memory {m} KiB is outside {}..={MAX_MEMORY_KIB} KiB",
                8 * p
            )));
        }
        Ok(())
    }

    fn derive(&self, password: &[u8], salt: &[u8; 32]) -> Result<SealingKey> {
        self.check()?;
        let params = Params::new(self.memory_kib, self.iterations, self.parallelism, Some(32))
            .map_err(|e| Error::invalid(format!("Argon2 parameters: {e}")))?;
        let mut out = [0u8; 32];
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_into(password, salt, &mut out)
            .map_err(|e| Error::invalid(format!("Argon2: {e}")))?;
        let key = SealingKey::new(&out);
        zeroize::Zeroize::zeroize(&mut out);
        Ok(key)
    }
}

/// What a key file says about itself, readable by any full key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    /// When the key was added (RFC 3339).
    pub created: String,
    /// Host it was added on.
    pub host: String,
    /// User who added it.
    pub user: String,
    /// "full" (the only kind of format version 1).
    pub kind: String,
}

/// What a write-only key file holds (`repo-format.md` §3.3).
#[derive(Clone, PartialEq, Eq)]
pub struct WriteOnlyKey {
    /// The naming and index keys.
    pub keys: WriterKeys,
    /// The repository's X25519 public key (see [`crate::crypto::RepoKeyPair`]).
    pub public: [u8; 32],
    /// The repository's config JSON (the config is sealed with the data
    /// key, which a write-only key does not have; it never changes).
    pub config_json: Vec<u8>,
}

/// An opened key file.
pub enum Unwrapped {
    /// A full key: the master key.
    Full(MasterKey),
    /// A write-only key.
    WriteOnly(WriteOnlyKey),
}

/// Writes a new key file wrapping `master` under `password`.
pub fn create(
    master: &MasterKey,
    repo_id: &Id,
    password: &[u8],
    params: KdfParams,
    info: &KeyInfo,
) -> Result<Vec<u8>> {
    let mut plain = Vec::with_capacity(WRAPPED_PLAIN_LEN);
    plain.push(KIND_FULL);
    plain.extend_from_slice(master.as_bytes());
    let key_info = Keys::derive(master).key_info().clone();
    let out = create_with(&plain, &key_info, repo_id, password, params, info);
    zeroize::Zeroize::zeroize(&mut plain);
    out
}

/// Writes a new write-only key file under `password`.
pub fn create_write_only(
    key: &WriteOnlyKey,
    key_info: &SealingKey,
    repo_id: &Id,
    password: &[u8],
    params: KdfParams,
    info: &KeyInfo,
) -> Result<Vec<u8>> {
    let k = &key.keys;
    let mut plain = Vec::with_capacity(1 + WRITE_ONLY_FIXED + key.config_json.len());
    plain.push(KIND_WRITE_ONLY);
    for part in [
        &k.chunk_id_key,
        &k.metadata_id_key,
        &k.wal_name_key,
        &k.index_key,
        &key.public,
    ] {
        plain.extend_from_slice(part);
    }
    plain.extend_from_slice(&k.chunker_seed.to_le_bytes());
    plain.extend_from_slice(&key.config_json);
    let out = create_with(&plain, key_info, repo_id, password, params, info);
    zeroize::Zeroize::zeroize(&mut plain);
    out
}

/// A key file whose wrapped plaintext is `plain`.
fn create_with(
    plain: &[u8],
    key_info: &SealingKey,
    repo_id: &Id,
    password: &[u8],
    params: KdfParams,
    info: &KeyInfo,
) -> Result<Vec<u8>> {
    params.check()?;
    let salt: [u8; 32] = random_bytes()?;
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(&format::header(ObjectType::Key));
    out.push(KDF_ARGON2ID);
    out.extend_from_slice(&params.memory_kib.to_le_bytes());
    out.extend_from_slice(&params.iterations.to_le_bytes());
    out.extend_from_slice(&params.parallelism.to_le_bytes());
    out.extend_from_slice(&salt);
    let ad = ad_of(&out, repo_id)?;

    let wrapping = params.derive(password, &salt)?;
    let wrapped = wrapping.seal(&ad, plain)?;
    let wlen = u16::try_from(wrapped.len()).map_err(|_| Error::invalid("wrapped key too long"))?;
    out.extend_from_slice(&wlen.to_le_bytes());
    out.extend_from_slice(&wrapped);

    let json = serde_json::to_vec(info).map_err(|e| Error::invalid(format!("key info: {e}")))?;
    key_info.seal_into(&info_ad(&ad), &json, &mut out)?;
    Ok(out)
}

/// Tries to open a full key file with `password` (see [`unwrap`]); a
/// write-only key is refused as access denied.
pub fn open(bytes: &[u8], repo_id: &Id, password: &[u8], what: &str) -> Result<Option<MasterKey>> {
    match unwrap(bytes, repo_id, password, what)? {
        None => Ok(None),
        Some(Unwrapped::Full(m)) => Ok(Some(m)),
        Some(Unwrapped::WriteOnly(_)) => Err(Error::new(
            ErrorKind::AccessDenied,
            format!("{what} is a write-only key: it can add backups, not read or remove them"),
        )),
    }
}

/// Tries to open a key file with `password`. `Ok(None)` means the password
/// does not open this key; errors mean the file itself is unusable.
pub fn unwrap(
    bytes: &[u8],
    repo_id: &Id,
    password: &[u8],
    what: &str,
) -> Result<Option<Unwrapped>> {
    let (params, salt, ad, wrapped, _) = parse(bytes, repo_id, what)?;
    params.check().map_err(|e| {
        Error::new(
            ErrorKind::Corrupt,
            format!(
                "{what}: refusing key file with out-of-bounds KDF parameters: {}",
                e.message()
            ),
        )
    })?;
    let wrapping = params.derive(password, &salt)?;
    let Ok(mut plain) = wrapping.open(&ad, wrapped) else {
        return Ok(None);
    };
    let out = match plain.first() {
        Some(&KIND_FULL) if plain.len() == WRAPPED_PLAIN_LEN => {
            let mut mk = [0u8; 32];
            mk.copy_from_slice(&plain[1..]);
            Unwrapped::Full(MasterKey::from_bytes(mk))
        }
        Some(&KIND_WRITE_ONLY) if plain.len() > 1 + WRITE_ONLY_FIXED => {
            let key = |i: usize| -> [u8; 32] {
                let mut k = [0u8; 32];
                k.copy_from_slice(&plain[1 + 32 * i..1 + 32 * (i + 1)]);
                k
            };
            let mut seed = [0u8; 8];
            seed.copy_from_slice(&plain[1 + 5 * 32..1 + WRITE_ONLY_FIXED]);
            Unwrapped::WriteOnly(WriteOnlyKey {
                keys: WriterKeys {
                    chunk_id_key: key(0),
                    metadata_id_key: key(1),
                    wal_name_key: key(2),
                    index_key: key(3),
                    chunker_seed: u64::from_le_bytes(seed),
                },
                public: key(4),
                config_json: plain[1 + WRITE_ONLY_FIXED..].to_vec(),
            })
        }
        Some(&KIND_FULL) | Some(&KIND_WRITE_ONLY) | None => {
            zeroize::Zeroize::zeroize(&mut plain);
            return Err(Error::corrupt(format!(
                "{what}: wrapped key has the wrong length"
            )));
        }
        Some(other) => {
            let other = *other;
            zeroize::Zeroize::zeroize(&mut plain);
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!("{what}: unknown key kind {other}"),
            ));
        }
    };
    zeroize::Zeroize::zeroize(&mut plain);
    Ok(Some(out))
}

/// Reads the descriptive part of a key file with the repository's keys.
pub fn info(bytes: &[u8], repo_id: &Id, keys: &Keys, what: &str) -> Result<(KdfParams, KeyInfo)> {
    let (params, _, ad, _, sealed_info) = parse(bytes, repo_id, what)?;
    if sealed_info.len() > MAX_INFO_LEN {
        return Err(Error::corrupt(format!("{what}: key info too large")));
    }
    let json = keys
        .key_info()
        .open(&info_ad(&ad), sealed_info)
        .map_err(|e| Error::corrupt(format!("{what}: key info: {e}")))?;
    let info = serde_json::from_slice(&json)
        .map_err(|e| Error::corrupt(format!("{what}: key info: {e}")))?;
    Ok((params, info))
}

/// The KDF parameters of a key file, without checking or using them.
pub fn kdf_params(bytes: &[u8], what: &str) -> Result<KdfParams> {
    Ok(parse(bytes, &Id::default(), what)?.0)
}

type Parsed<'a> = (KdfParams, [u8; 32], Vec<u8>, &'a [u8], &'a [u8]);

fn parse<'a>(bytes: &'a [u8], repo_id: &Id, what: &str) -> Result<Parsed<'a>> {
    format::check_header(bytes, ObjectType::Key, what)?;
    if bytes.len() < KDF_BLOCK_END + 2 {
        return Err(Error::corrupt(format!("{what}: truncated key file")));
    }
    if bytes[8] != KDF_ARGON2ID {
        return Err(Error::new(
            ErrorKind::Unsupported,
            format!("{what}: unknown KDF algorithm {}", bytes[8]),
        ));
    }
    let u32_at = |at: usize| -> u32 {
        let mut b = [0u8; 4];
        b.copy_from_slice(&bytes[at..at + 4]);
        u32::from_le_bytes(b)
    };
    let params = KdfParams {
        memory_kib: u32_at(9),
        iterations: u32_at(13),
        parallelism: u32_at(17),
    };
    let mut salt = [0u8; 32];
    salt.copy_from_slice(&bytes[21..53]);
    let ad = ad_of(&bytes[..KDF_BLOCK_END], repo_id)?;
    let wlen = usize::from(u16::from_le_bytes([bytes[53], bytes[54]]));
    let wrapped = bytes
        .get(55..55 + wlen)
        .ok_or_else(|| Error::corrupt(format!("{what}: truncated wrapped key")))?;
    let info = &bytes[55 + wlen..];
    Ok((params, salt, ad, wrapped, info))
}

/// `header || repository ID || KDF block`.
fn ad_of(prefix: &[u8], repo_id: &Id) -> Result<Vec<u8>> {
    let header: [u8; HEADER_LEN] = prefix[..HEADER_LEN]
        .try_into()
        .map_err(|_| Error::corrupt("short key header"))?;
    Ok(format::associated_data(
        &header,
        repo_id,
        &prefix[HEADER_LEN..KDF_BLOCK_END],
    ))
}

fn info_ad(ad: &[u8]) -> Vec<u8> {
    let mut v = ad.to_vec();
    v.extend_from_slice(b"info");
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: KdfParams = KdfParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };

    fn sample_info() -> KeyInfo {
        KeyInfo {
            created: "2026-11-27T10:00:00Z".into(),
            host: "db1".into(),
            user: "postgres".into(),
            kind: "full".into(),
        }
    }

    #[test]
    fn wrap_and_unwrap() -> Result<()> {
        let master = MasterKey::generate()?;
        let repo = Id::of_bytes(b"r");
        let file = create(&master, &repo, b"pw", FAST, &sample_info())?;
        let opened = open(&file, &repo, b"pw", "key")?;
        assert_eq!(opened.map(|k| *k.as_bytes()), Some(*master.as_bytes()));
        assert!(open(&file, &repo, b"wrong", "key")?.is_none());
        // Bound to the repository.
        assert!(open(&file, &Id::of_bytes(b"other"), b"pw", "key")?.is_none());
        let (params, i) = super::info(&file, &repo, &Keys::derive(&master), "key")?;
        assert_eq!((params, i), (FAST, sample_info()));
        Ok(())
    }

    #[test]
    fn a_write_only_key_file_round_trips_and_holds_no_master_key() -> Result<()> {
        let master = MasterKey::generate()?;
        let repo = Id::of_bytes(b"r");
        let key = WriteOnlyKey {
            keys: WriterKeys::derive(&master),
            public: crate::crypto::RepoKeyPair::derive(&master).public(),
            config_json: br#"{"version":1}"#.to_vec(),
        };
        let mut info = sample_info();
        info.kind = "write-only".into();
        let full = Keys::derive(&master);
        let file = create_write_only(&key, full.key_info(), &repo, b"pw", FAST, &info)?;
        match unwrap(&file, &repo, b"pw", "key")? {
            Some(Unwrapped::WriteOnly(w)) => assert!(w == key),
            _ => panic!("not a write-only key"),
        }
        // `open`, which wants a full key (a master key), refuses it as
        // access denied.
        let err = open(&file, &repo, b"pw", "key").err().map(|e| e.kind());
        assert_eq!(err, Some(ErrorKind::AccessDenied));
        assert!(open(&file, &repo, b"wrong", "key")?.is_none());
        // Full keys read its info, with the same key-info key.
        let (_, read) = super::info(&file, &repo, &full, "key")?;
        assert_eq!(read.kind, "write-only");
        // A writer's keys cannot read key info (nor write any a full key
        // would believe: a planted file cannot claim to be a full key).
        let writer = Keys::for_writer(&key.keys, &[1u8; 32], &key.public);
        assert!(super::info(&file, &repo, &writer, "key").is_err());
        // A plaintext with an empty config is corrupt.
        let short = WriteOnlyKey {
            config_json: Vec::new(),
            ..key
        };
        let file = create_write_only(&short, full.key_info(), &repo, b"pw", FAST, &info)?;
        let err = unwrap(&file, &repo, b"pw", "key").err().map(|e| e.kind());
        assert_eq!(err, Some(ErrorKind::Corrupt));
        Ok(())
    }

    #[test]
    fn lowering_the_cost_breaks_the_seal() -> Result<()> {
        let master = MasterKey::generate()?;
        let repo = Id::of_bytes(b"r");
        let mut file = create(
            &master,
            &repo,
            b"pw",
            KdfParams {
                memory_kib: 128,
                ..FAST
            },
            &sample_info(),
        )?;
        file[9..13].copy_from_slice(&64u32.to_le_bytes());
        assert!(open(&file, &repo, b"pw", "key")?.is_none());
        Ok(())
    }

    #[test]
    fn absurd_memory_cost_is_refused_before_deriving() -> Result<()> {
        let master = MasterKey::generate()?;
        let repo = Id::of_bytes(b"r");
        let mut file = create(&master, &repo, b"pw", FAST, &sample_info())?;
        // 64 TiB expressed in KiB does not fit u32; use the largest u32.
        file[9..13].copy_from_slice(&u32::MAX.to_le_bytes());
        let start = std::time::Instant::now();
        let err = open(&file, &repo, b"pw", "key").err();
        assert!(start.elapsed() < std::time::Duration::from_millis(200));
        assert_eq!(err.map(|e| e.kind()), Some(ErrorKind::Corrupt));
        Ok(())
    }

    #[test]
    fn bounds() {
        assert!(KdfParams::default().check().is_ok());
        assert!(KdfParams {
            parallelism: 0,
            ..FAST
        }
        .check()
        .is_err());
        assert!(KdfParams {
            iterations: 17,
            ..FAST
        }
        .check()
        .is_err());
        assert!(KdfParams {
            memory_kib: MAX_MEMORY_KIB + 1,
            ..FAST
        }
        .check()
        .is_err());
    }
}
