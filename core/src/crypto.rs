//! Keys and authenticated encryption.
//!
//! Everything secret in a repository is sealed with XChaCha20-Poly1305 under
//! a random 24-byte nonce. A random 32-byte master key is the root of every
//! other key: sub-keys come from `blake3::derive_key` with distinct contexts,
//! and the master key itself is stored only wrapped, in key files, under a
//! key derived from a password with Argon2id (see [`crate::format::keyfile`]).

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};
use std::sync::Arc;

use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::{Error, Result};
use crate::id::Id;

/// Length of the random nonce in front of every sealed value.
pub const NONCE_LEN: usize = 24;
/// Length of the Poly1305 tag behind every sealed value.
pub const TAG_LEN: usize = 16;
/// Bytes a sealed value adds to its plaintext.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// `blake3::derive_key` contexts; changing one changes the format.
const CONTEXT_DATA: &str = "cairn 2026-11-27 v1 data encryption key";
const CONTEXT_CHUNK_ID: &str = "cairn 2026-11-27 v1 chunk id key";
const CONTEXT_CHUNKER_SEED: &str = "cairn 2026-11-27 v1 chunker gear seed";
const CONTEXT_KEY_INFO: &str = "cairn 2026-11-27 v1 key file info key";
const CONTEXT_METADATA_ID: &str = "cairn 2026-11-27 v1 metadata blob id key";
const CONTEXT_WAL_NAME: &str = "cairn 2026-11-27 v1 wal file name key";
const CONTEXT_INDEX: &str = "cairn 2026-11-27 v1 index encryption key";
const CONTEXT_INDEX_AUTH: &str = "cairn 2026-11-28 v1 index authentication key";
/// A write-only client's stand-in for the key-info key (unused).
const CONTEXT_WRITER_KEY_INFO: &str = "cairn 2026-11-28 v1 write-only client key info key";

/// Fills a fixed-size array from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(|e| {
        Error::new(
            crate::error::ErrorKind::Io,
            format!("no randomness from the OS: {e}"),
        )
    })?;
    Ok(out)
}

/// The repository's random master key. Never stored in the clear.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MasterKey([u8; 32]);

impl MasterKey {
    /// A fresh random master key.
    pub fn generate() -> Result<Self> {
        Ok(MasterKey(random_bytes()?))
    }

    /// Wraps raw bytes (from an opened key file).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        MasterKey(bytes)
    }

    /// The raw bytes, for wrapping into a key file.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// A symmetric AEAD key: XChaCha20-Poly1305.
#[derive(Clone)]
pub struct SealingKey {
    cipher: XChaCha20Poly1305,
}

impl SealingKey {
    /// A sealing key from 32 raw bytes.
    pub fn new(key: &[u8; 32]) -> Self {
        SealingKey {
            cipher: XChaCha20Poly1305::new(&(*key).into()),
        }
    }

    /// Appends `nonce || ciphertext || tag` for `plaintext` to `out`, with
    /// `ad` as associated data.
    pub fn seal_into(&self, ad: &[u8], plaintext: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let nonce: [u8; NONCE_LEN] = random_bytes()?;
        out.extend_from_slice(&nonce);
        let start = out.len();
        out.extend_from_slice(plaintext);
        let tag = self
            .cipher
            .encrypt_inout_detached(&XNonce::from(nonce), ad, (&mut out[start..]).into())
            .map_err(|_| Error::invalid("plaintext too long to encrypt"))?;
        out.extend_from_slice(tag.as_slice());
        Ok(())
    }

    /// `nonce || ciphertext || tag` for `plaintext`.
    pub fn seal(&self, ad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(plaintext.len() + SEAL_OVERHEAD);
        self.seal_into(ad, plaintext, &mut out)?;
        Ok(out)
    }

    /// Opens `nonce || ciphertext || tag`. Fails when the value is too short,
    /// was modified, or was sealed with another key or associated data.
    pub fn open(&self, ad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, AuthError> {
        let mut buf = sealed.to_vec();
        let len = self.open_in_place(ad, &mut buf)?.len();
        buf.copy_within(NONCE_LEN..NONCE_LEN + len, 0);
        buf.truncate(len);
        Ok(buf)
    }

    /// Opens `nonce || ciphertext || tag` where it lies, without a copy:
    /// the plaintext is the returned part of `sealed`. On failure `sealed`
    /// may be left partly decrypted.
    pub fn open_in_place<'a>(
        &self,
        ad: &[u8],
        sealed: &'a mut [u8],
    ) -> Result<&'a [u8], AuthError> {
        if sealed.len() < SEAL_OVERHEAD {
            return Err(AuthError);
        }
        let (nonce, rest) = sealed.split_at_mut(NONCE_LEN);
        let split = rest.len() - TAG_LEN;
        let (ciphertext, tag) = rest.split_at_mut(split);
        let nonce = XNonce::try_from(&*nonce).map_err(|_| AuthError)?;
        let tag = Tag::try_from(&*tag).map_err(|_| AuthError)?;
        self.cipher
            .decrypt_inout_detached(&nonce, ad, (&mut *ciphertext).into(), &tag)
            .map_err(|_| AuthError)?;
        Ok(ciphertext)
    }
}

/// A sealed value did not authenticate: wrong key, wrong associated data, or
/// modified bytes. Callers turn it into an error that names the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthError;

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("authentication failed (wrong key, or the bytes were modified)")
    }
}

impl std::error::Error for AuthError {}

/// What a write-only key holds of the repository's keys: enough to name
/// and deduplicate what it adds, nothing that reads what is stored.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct WriterKeys {
    /// Names data blobs.
    pub chunk_id_key: [u8; 32],
    /// Names trees and chunk lists.
    pub metadata_id_key: [u8; 32],
    /// Names WAL records.
    pub wal_name_key: [u8; 32],
    /// Seals index objects (read for deduplication, written after a backup).
    pub index_key: [u8; 32],
    /// The chunker's seed (derived; a config's `chunker.seed` overrides it).
    pub chunker_seed: u64,
}

impl WriterKeys {
    /// The writer keys of the repository with master key `master`.
    pub fn derive(master: &MasterKey) -> Self {
        let seed = blake3::derive_key(CONTEXT_CHUNKER_SEED, master.as_bytes());
        let mut seed8 = [0u8; 8];
        seed8.copy_from_slice(&seed[..8]);
        WriterKeys {
            chunk_id_key: blake3::derive_key(CONTEXT_CHUNK_ID, master.as_bytes()),
            metadata_id_key: blake3::derive_key(CONTEXT_METADATA_ID, master.as_bytes()),
            wal_name_key: blake3::derive_key(CONTEXT_WAL_NAME, master.as_bytes()),
            index_key: blake3::derive_key(CONTEXT_INDEX, master.as_bytes()),
            chunker_seed: u64::from_le_bytes(seed8),
        }
    }
}

/// What the keys of an opened repository can open besides their own data
/// key.
#[derive(Clone)]
enum Access {
    /// A full key: the repository's key pair opens every key block.
    Full(Arc<RepoKeyPair>),
    /// A write-only key: its data key is a random session key, sealed to
    /// the repository's public key in a key block in front of what it seals.
    Writer {
        session: zeroize::Zeroizing<[u8; 32]>,
        public: [u8; 32],
    },
}

/// The working keys of an opened repository: derived from the master key,
/// or for a write-only key, from what its key file holds.
#[derive(Clone)]
pub struct Keys {
    data: SealingKey,
    access: Access,
    /// Seals index objects: write-only keys hold it too, so that their
    /// backups deduplicate against the index without reading any data.
    index: SealingKey,
    /// Authenticates index objects written by full keys (none for a
    /// write-only key): readers can tell them from a writer's.
    index_auth: Option<[u8; 32]>,
    key_info: SealingKey,
    chunk_id_key: [u8; 32],
    metadata_id_key: [u8; 32],
    wal_name_key: [u8; 32],
    chunker_seed: u64,
}

impl Keys {
    /// Derives every sub-key from the master key.
    pub fn derive(master: &MasterKey) -> Self {
        let data = blake3::derive_key(CONTEXT_DATA, master.as_bytes());
        let index = blake3::derive_key(CONTEXT_INDEX, master.as_bytes());
        let key_info = blake3::derive_key(CONTEXT_KEY_INFO, master.as_bytes());
        let chunk_id_key = blake3::derive_key(CONTEXT_CHUNK_ID, master.as_bytes());
        let metadata_id_key = blake3::derive_key(CONTEXT_METADATA_ID, master.as_bytes());
        let wal_name_key = blake3::derive_key(CONTEXT_WAL_NAME, master.as_bytes());
        let seed = blake3::derive_key(CONTEXT_CHUNKER_SEED, master.as_bytes());
        let mut seed8 = [0u8; 8];
        seed8.copy_from_slice(&seed[..8]);
        Keys {
            data: SealingKey::new(&data),
            access: Access::Full(Arc::new(RepoKeyPair::derive(master))),
            index: SealingKey::new(&index),
            index_auth: Some(blake3::derive_key(CONTEXT_INDEX_AUTH, master.as_bytes())),
            key_info: SealingKey::new(&key_info),
            chunk_id_key,
            metadata_id_key,
            wal_name_key,
            chunker_seed: u64::from_le_bytes(seed8),
        }
    }

    /// The key that seals packs, blobs, indexes, snapshots and the config.
    pub fn data(&self) -> &SealingKey {
        &self.data
    }

    /// The keys of a client that adds data it cannot read back
    /// (write-only keys, `repo-format.md` §3.3): the naming keys and the
    /// index key of the repository, and as data key its own
    /// random `session` key, which it seals to the repository's `public`
    /// key for full keys to read ([`Self::key_block`]).
    pub fn for_writer(w: &WriterKeys, session: &[u8; 32], public: &[u8; 32]) -> Self {
        Keys {
            data: SealingKey::new(session),
            access: Access::Writer {
                session: zeroize::Zeroizing::new(*session),
                public: *public,
            },
            index: SealingKey::new(&w.index_key),
            index_auth: None,
            // Not the repository's key-info key (a writer neither reads nor
            // writes key info: it could otherwise plant a key file whose
            // info claims a full key, docs/design.md §8.2).
            key_info: SealingKey::new(&blake3::derive_key(CONTEXT_WRITER_KEY_INFO, session)),
            chunk_id_key: w.chunk_id_key,
            metadata_id_key: w.metadata_id_key,
            wal_name_key: w.wal_name_key,
            chunker_seed: w.chunker_seed,
        }
    }

    /// Keys of a write-only client, which cannot read what others sealed?
    pub fn is_write_only(&self) -> bool {
        matches!(self.access, Access::Writer { .. })
    }

    /// For a write-only client, a fresh key block sealing its session key
    /// to the repository's public key with `ad` (`repo-format.md` §2.3):
    /// what it writes in front of each object its data key seals. `None`
    /// for a full key, whose data key needs no block.
    pub fn key_block(&self, ad: &[u8]) -> Result<Option<[u8; KEY_BLOCK_LEN]>> {
        match &self.access {
            Access::Full(_) => Ok(None),
            Access::Writer { session, public } => seal_to(public, session, ad).map(Some),
        }
    }

    /// The keys to open an object whose key block is `block` (sealed with
    /// `ad`): these keys with the block's session key as data key. Only a
    /// full key holds the secret that opens a block; a write-only key gets
    /// access denied.
    pub fn open_key_block(&self, block: &[u8], ad: &[u8]) -> Result<Keys> {
        match &self.access {
            Access::Full(pair) => {
                let mut session = pair.open(block, ad)?;
                let keys = Keys {
                    data: SealingKey::new(&session),
                    ..self.clone()
                };
                session.zeroize();
                Ok(keys)
            }
            Access::Writer { .. } => Err(Error::new(
                crate::error::ErrorKind::AccessDenied,
                "this object was written with a write-only key and only a full key can read it",
            )),
        }
    }

    /// The tag that authenticates an index object written by a full key
    /// (`repo-format.md` §7.1): BLAKE3 keyed with the index authentication
    /// key over the object's bytes. `None` for a write-only key, which has
    /// no such key.
    pub fn index_tag(&self, bytes: &[u8]) -> Option<[u8; 32]> {
        self.index_auth
            .as_ref()
            .map(|k| *blake3::keyed_hash(k, bytes).as_bytes())
    }

    /// The key that seals index objects.
    pub fn index(&self) -> &SealingKey {
        &self.index
    }

    /// The key that seals the descriptive part of key files.
    pub fn key_info(&self) -> &SealingKey {
        &self.key_info
    }

    /// The ID of a chunk: BLAKE3 keyed with the repository's chunk-ID key,
    /// so that someone with read access to the storage cannot test whether
    /// a known file is in the backup.
    pub fn chunk_id(&self, plaintext: &[u8]) -> Id {
        Id::from_bytes(*blake3::keyed_hash(&self.chunk_id_key, plaintext).as_bytes())
    }

    /// The ID of a metadata blob (tree, chunk list): BLAKE3 keyed with a
    /// separate key over `type byte || plaintext`, so that no file content
    /// can ever have the ID of a tree, nor a tree that of a chunk list.
    pub fn metadata_id(&self, type_byte: u8, plaintext: &[u8]) -> Id {
        let mut h = blake3::Hasher::new_keyed(&self.metadata_id_key);
        h.update(&[type_byte]);
        h.update(plaintext);
        Id::from_bytes(*h.finalize().as_bytes())
    }

    /// The object name of the archived WAL file `name`: BLAKE3 keyed with
    /// the WAL-name key, so that a WAL file is found without listing, and
    /// the storage does not learn which WAL files there are.
    pub fn wal_object_id(&self, name: &str) -> Id {
        Id::from_bytes(*blake3::keyed_hash(&self.wal_name_key, name.as_bytes()).as_bytes())
    }

    /// The **contents tag** of a WAL record (`repo-format.md` §10.2):
    /// BLAKE3 keyed with the WAL-name key over `00 ‖ "contents" ‖ 00 ‖
    /// name ‖ 00 ‖ size (u64 LE) ‖ BLAKE3 of the contents`. Stored in the
    /// clear, so that a retried `wal-push` with a write-only key, which
    /// cannot open the record, can still tell the same file from another.
    /// (WAL names never start with a zero byte, so no name's object ID is
    /// ever a contents tag.)
    pub fn wal_contents_tag(&self, name: &str, size: u64, contents: &[u8; 32]) -> [u8; 32] {
        let mut h = blake3::Hasher::new_keyed(&self.wal_name_key);
        h.update(b"\0contents\0");
        h.update(name.as_bytes());
        h.update(&[0]);
        h.update(&size.to_le_bytes());
        h.update(contents);
        *h.finalize().as_bytes()
    }

    /// The seed of the chunker's gear table.
    pub fn chunker_seed(&self) -> u64 {
        self.chunker_seed
    }
}

// ---- Session keys sealed to the repository public key (write-only keys) ----
//
// The repository's X25519 key pair is derived from the master key, so
// every full key has the secret half. A write-only client holds only the
// public half: it seals the random session key that encrypts what it
// writes into a 104-byte **key block**, which only a full key can open.
//
// ```text
// key block = ephemeral public key (32) || nonce (24) || ciphertext (32) || tag (16)
// wrap key  = BLAKE3-derive("cairn 2026-11-27 v1 sealed session key",
// X25519(ephemeral, public) || ephemeral public || public)
// ```
//
// The session key is sealed with XChaCha20-Poly1305 under the wrap key,
// with the caller's associated data (the object it belongs to).

/// Length of a key block.
pub const KEY_BLOCK_LEN: usize = 32 + 24 + 32 + 16;

const CONTEXT_X25519: &str = "cairn 2026-11-27 v1 x25519 secret key";
const CONTEXT_WRAP: &str = "cairn 2026-11-27 v1 sealed session key";

/// The repository's X25519 key pair (full keys only).
pub struct RepoKeyPair {
    secret: StaticSecret,
    public: [u8; 32],
}

impl RepoKeyPair {
    /// The key pair of the repository with master key `master`.
    pub fn derive(master: &MasterKey) -> Self {
        let mut scalar = blake3::derive_key(CONTEXT_X25519, master.as_bytes());
        let secret = StaticSecret::from(scalar);
        scalar.zeroize();
        let public = PublicKey::from(&secret).to_bytes();
        RepoKeyPair { secret, public }
    }

    /// The public half, which write-only key files carry.
    pub fn public(&self) -> [u8; 32] {
        self.public
    }

    /// Opens a key block sealed to this key pair with `ad`.
    pub fn open(&self, block: &[u8], ad: &[u8]) -> Result<[u8; 32]> {
        if block.len() != KEY_BLOCK_LEN {
            return Err(Error::corrupt(format!(
                "key block is {} bytes, not {KEY_BLOCK_LEN}",
                block.len()
            )));
        }
        let mut eph = [0u8; 32];
        eph.copy_from_slice(&block[..32]);
        let shared = self.secret.diffie_hellman(&PublicKey::from(eph));
        if !shared.was_contributory() {
            return Err(Error::corrupt("key block has a low-order ephemeral key"));
        }
        let wrap = wrap_key(shared.as_bytes(), &eph, &self.public);
        let mut plain = wrap
            .open(ad, &block[32..])
            .map_err(|e| Error::corrupt(format!("key block: {e}")))?;
        // A 104-byte block's ciphertext is 32 bytes: so is the plaintext.
        let out: Option<[u8; 32]> = plain.as_slice().try_into().ok();
        plain.zeroize();
        out.ok_or_else(|| Error::corrupt("key block: wrong length"))
    }
}

fn wrap_key(shared: &[u8; 32], eph: &[u8; 32], public: &[u8; 32]) -> SealingKey {
    let mut material = [0u8; 96];
    material[..32].copy_from_slice(shared);
    material[32..64].copy_from_slice(eph);
    material[64..].copy_from_slice(public);
    let mut key = blake3::derive_key(CONTEXT_WRAP, &material);
    material.zeroize();
    let sealing = SealingKey::new(&key);
    key.zeroize();
    sealing
}

/// Seals `session` to the repository public key `public`, with `ad`.
pub fn seal_to(public: &[u8; 32], session: &[u8; 32], ad: &[u8]) -> Result<[u8; KEY_BLOCK_LEN]> {
    let eph_secret = StaticSecret::from(random_bytes::<32>()?);
    let eph = PublicKey::from(&eph_secret).to_bytes();
    let shared = eph_secret.diffie_hellman(&PublicKey::from(*public));
    if !shared.was_contributory() {
        return Err(Error::invalid(
            "the repository public key is a low-order point",
        ));
    }
    let wrap = wrap_key(shared.as_bytes(), &eph, public);
    let sealed = wrap.seal(ad, session)?;
    let mut block = [0u8; KEY_BLOCK_LEN];
    block[..32].copy_from_slice(&eph);
    block[32..].copy_from_slice(&sealed);
    Ok(block)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SealingKey {
        SealingKey::new(&[7u8; 32])
    }

    #[test]
    fn seal_open_round_trip() -> Result<()> {
        let sealed = key().seal(b"ad", b"secret")?;
        assert_eq!(sealed.len(), 6 + SEAL_OVERHEAD);
        assert_eq!(key().open(b"ad", &sealed), Ok(b"secret".to_vec()));
        Ok(())
    }

    #[test]
    fn wrong_ad_or_flipped_bit_fails() -> Result<()> {
        let mut sealed = key().seal(b"ad", b"secret")?;
        assert_eq!(key().open(b"other", &sealed), Err(AuthError));
        sealed[NONCE_LEN] ^= 1;
        assert_eq!(key().open(b"ad", &sealed), Err(AuthError));
        assert_eq!(key().open(b"ad", &sealed[..10]), Err(AuthError));
        Ok(())
    }

    #[test]
    fn nonces_differ() -> Result<()> {
        let a = key().seal(b"", b"same")?;
        let b = key().seal(b"", b"same")?;
        assert_ne!(a, b);
        Ok(())
    }

    #[test]
    fn a_writer_names_and_indexes_like_a_full_key_but_seals_with_its_own_key() -> Result<()> {
        let master = MasterKey::from_bytes([4u8; 32]);
        let full = Keys::derive(&master);
        let public = RepoKeyPair::derive(&master).public();
        let writer = Keys::for_writer(&WriterKeys::derive(&master), &[9u8; 32], &public);
        assert_eq!(full.chunk_id(b"x"), writer.chunk_id(b"x"));
        assert_eq!(full.metadata_id(2, b"x"), writer.metadata_id(2, b"x"));
        assert_eq!(full.wal_object_id("w"), writer.wal_object_id("w"));
        assert_eq!(full.chunker_seed(), writer.chunker_seed());
        let index = full.index().seal(b"", b"records")?;
        assert_eq!(writer.index().open(b"", &index), Ok(b"records".to_vec()));
        // What the full key seals, the writer cannot open, and back.
        let data = full.data().seal(b"", b"old backup")?;
        assert_eq!(writer.data().open(b"", &data), Err(AuthError));
        let new = writer.data().seal(b"", b"new backup")?;
        assert_eq!(full.data().open(b"", &new), Err(AuthError));
        // Through the writer's key block, and only through it, the full key
        // reads what the writer sealed; the writer opens no block.
        let block = writer
            .key_block(b"obj")?
            .ok_or_else(|| Error::invalid("no block"))?;
        assert_eq!(full.key_block(b"obj")?, None);
        let opened = full.open_key_block(&block, b"obj")?;
        assert_eq!(opened.data().open(b"", &new), Ok(b"new backup".to_vec()));
        assert!(full.open_key_block(&block, b"other").is_err());
        let denied = writer
            .open_key_block(&block, b"obj")
            .err()
            .map(|e| e.kind());
        assert_eq!(denied, Some(crate::error::ErrorKind::AccessDenied));
        assert!(writer.is_write_only() && !full.is_write_only());
        Ok(())
    }

    #[test]
    fn the_index_key_is_not_the_data_key() -> Result<()> {
        let keys = Keys::derive(&MasterKey::from_bytes([3u8; 32]));
        let sealed = keys.index().seal(b"ad", b"index records")?;
        assert_eq!(keys.data().open(b"ad", &sealed), Err(AuthError));
        assert_eq!(
            keys.index().open(b"ad", &sealed),
            Ok(b"index records".to_vec())
        );
        Ok(())
    }

    #[test]
    fn sub_keys_are_distinct_and_deterministic() {
        let master = MasterKey::from_bytes([1u8; 32]);
        let a = Keys::derive(&master);
        let b = Keys::derive(&master);
        assert_eq!(a.chunk_id(b"x"), b.chunk_id(b"x"));
        assert_eq!(a.chunker_seed(), b.chunker_seed());
        let other = Keys::derive(&MasterKey::from_bytes([2u8; 32]));
        assert_ne!(a.chunk_id(b"x"), other.chunk_id(b"x"));
        assert_ne!(a.chunk_id(b"x"), Id::of_bytes(b"x"));
        assert_ne!(a.chunk_id(b"x"), a.metadata_id(1, b"x"));
        assert_ne!(a.metadata_id(1, b"x"), a.metadata_id(2, b"x"));
    }

    fn pair(n: u8) -> RepoKeyPair {
        RepoKeyPair::derive(&MasterKey::from_bytes([n; 32]))
    }

    #[test]
    fn a_sealed_session_key_opens_only_with_the_secret_and_its_ad() -> Result<()> {
        let repo = pair(1);
        let session = [7u8; 32];
        let block = seal_to(&repo.public(), &session, b"pack")?;
        assert_eq!(repo.open(&block, b"pack")?, session);
        // Another repository's secret, other AD, a flipped bit, a cut
        // block: all refused.
        assert!(pair(2).open(&block, b"pack").is_err());
        assert!(repo.open(&block, b"snapshot").is_err());
        for i in [0, 40, 70, KEY_BLOCK_LEN - 1] {
            let mut bad = block;
            bad[i] ^= 1;
            assert!(repo.open(&bad, b"pack").is_err(), "byte {i}");
        }
        assert!(repo.open(&block[..100], b"pack").is_err());
        // Two seals of one key differ (fresh ephemeral key and nonce).
        assert_ne!(block, seal_to(&repo.public(), &session, b"pack")?);
        Ok(())
    }

    #[test]
    fn the_key_pair_is_derived_from_the_master_key() {
        assert_eq!(pair(1).public(), pair(1).public());
        assert_ne!(pair(1).public(), pair(2).public());
    }

    #[test]
    fn a_low_order_ephemeral_key_is_refused() -> Result<()> {
        let repo = pair(1);
        let mut block = seal_to(&repo.public(), &[7u8; 32], b"")?;
        block[..32].copy_from_slice(&[0u8; 32]);
        assert!(repo.open(&block, b"").is_err());
        Ok(())
    }
}
