//! Sealing a key to the repository's public key, for write-only clients
//! (groundwork for issue 10; not used by the format yet).
//!
//! The repository's X25519 key pair is derived from the master key, so
//! every full key has the secret half. A write-only client holds only the
//! public half: it seals the random session key that encrypts what it
//! writes into a 104-byte **key block**, which only a full key can open.
//!
//! ```text
//! key block = ephemeral public key (32) || nonce (24) || ciphertext (32) || tag (16)
//! wrap key  = BLAKE3-derive("cairn 2026-11-27 v1 sealed session key",
//!                           X25519(ephemeral, public) || ephemeral public || public)
//! ```
//!
//! The session key is sealed with XChaCha20-Poly1305 under the wrap key,
//! with the caller's associated data (the object it belongs to).

use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroize;

use crate::crypto::{random_bytes, MasterKey, SealingKey};
use crate::error::{Error, Result};

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
        let plain = wrap
            .open(ad, &block[32..])
            .map_err(|e| Error::corrupt(format!("key block: {e}")))?;
        let mut out = [0u8; 32];
        out.copy_from_slice(&plain);
        Ok(out)
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
