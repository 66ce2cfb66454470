//! The `config` object: repository ID and the parameters every writer must
//! share (`repo-format.md` §4).
//!
//! ```text
//! 0   8   header (type 1)
//! 8   32  repository ID, in the clear (it is needed to open key files)
//! 40  ..  nonce || seal(framed JSON) || tag, AD = header || repository ID
//! end-32  BLAKE3 of everything before it
//! ```
//!
//! `config` is the one object not named by its hash, so it carries its
//! hash: a damaged repository ID would otherwise make every key file fail
//! to open, and cairn would blame the password.

use serde::{Deserialize, Serialize};

use crate::chunk::chunker::ChunkerParams;
use crate::crypto::SealingKey;
use crate::error::{Error, ErrorKind, Result};
use crate::format::{self, ObjectType, HEADER_LEN};
use crate::id::Id;

/// Largest config payload accepted.
const MAX_CONFIG_LEN: usize = 1024 * 1024;

/// Default target pack size: 16 MiB.
pub const DEFAULT_PACK_SIZE: u32 = 16 * 1024 * 1024;
/// Smallest allowed target pack size.
pub const MIN_PACK_SIZE: u32 = 1024 * 1024;
/// Largest allowed target pack size (offsets in packs are u32).
pub const MAX_PACK_SIZE: u32 = 1024 * 1024 * 1024;
/// Default zstd level. Level 1 beats level 3 on nightly plain pg_dumps cut
/// into 8 KiB chunks, in size (4% smaller repository over the benchmark's
/// six nights) and in speed (10% less CPU for a first backup); on file
/// trees level 3 is 1.5% smaller (docs/benchmarks.md). With deltas and
/// 32 KiB chunks (the default) level 1 is still the smallest: 60.6 MB
/// after the six nights against 61.8 MB at level 3.
pub const DEFAULT_COMPRESSION_LEVEL: i32 = 1;

/// The zstd settings of a repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompressionConfig {
    /// Always "zstd" in version 1.
    pub algorithm: String,
    /// zstd level, 0 (off) to 22.
    pub level: i32,
    /// Store new data chunks that resemble a stored one as deltas against
    /// it (`repo-format.md` §6.8). Absent in older configs: off.
    #[serde(default)]
    pub delta: bool,
}

impl CompressionConfig {
    /// Whether writers store deltas: `delta` on, and compression at all
    /// (deltas are zstd frames; `repo-format.md` §4.2 ignores `delta` at
    /// level 0).
    pub fn deltas_on(&self) -> bool {
        self.delta && self.level > 0
    }
}

/// The sealed part of `config`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoConfig {
    /// Format version; 1.
    pub version: u32,
    /// When the repository was created (RFC 3339).
    pub created: String,
    /// How data is cut into chunks; fixed for the life of the repository so
    /// that every writer produces the same chunks for the same data.
    pub chunker: ChunkerParams,
    /// How blobs are compressed.
    pub compression: CompressionConfig,
    /// Target size of pack files in bytes.
    pub pack_size: u32,
    /// Seconds between prune marking a pack obsolete and deleting it; a
    /// backup that references a pack marked longer ago than this (less a
    /// margin) refuses to commit. Every writer must agree on it, so it is
    /// part of the config.
    #[serde(default = "default_grace")]
    pub prune_grace_seconds: u64,
}

/// Default grace period: 24 hours.
pub const DEFAULT_PRUNE_GRACE: u64 = 24 * 3600;

fn default_grace() -> u64 {
    DEFAULT_PRUNE_GRACE
}

impl RepoConfig {
    /// A config with default parameters.
    pub fn new(created: String) -> Self {
        RepoConfig {
            version: u32::from(format::FORMAT_VERSION),
            created,
            chunker: ChunkerParams::default(),
            compression: CompressionConfig {
                algorithm: "zstd".into(),
                level: DEFAULT_COMPRESSION_LEVEL,
                delta: true,
            },
            pack_size: DEFAULT_PACK_SIZE,
            prune_grace_seconds: DEFAULT_PRUNE_GRACE,
        }
    }

    /// Checks every parameter; used on creation and on every read.
    pub fn validate(&self) -> Result<()> {
        if self.version != u32::from(format::FORMAT_VERSION) {
            return Err(Error::new(
                crate::error::ErrorKind::Unsupported,
                format!(
                    "repository format version {} is not supported",
                    self.version
                ),
            ));
        }
        self.chunker.validate()?;
        if self.compression.algorithm != "zstd" {
            return Err(Error::new(
                crate::error::ErrorKind::Unsupported,
                format!("unknown compression {:?}", self.compression.algorithm),
            ));
        }
        if !(0..=22).contains(&self.compression.level) {
            return Err(Error::invalid(format!(
                "zstd level {} is outside 0..=22",
                self.compression.level
            )));
        }
        if !(MIN_PACK_SIZE..=MAX_PACK_SIZE).contains(&self.pack_size) {
            return Err(Error::invalid(format!(
                "pack size {} is outside {MIN_PACK_SIZE}..={MAX_PACK_SIZE}",
                self.pack_size
            )));
        }
        if self.prune_grace_seconds > 365 * 24 * 3600 {
            return Err(Error::invalid(format!(
                "prune grace of {} seconds is more than a year",
                self.prune_grace_seconds
            )));
        }
        Ok(())
    }

    /// The safety margin a backup keeps before a pack's grace period ends
    /// (clock skew between machines, times rounded to whole seconds, the
    /// moments between the commit check and the snapshot): 1/24 of the
    /// grace period, at least a second unless the grace period is 0.
    pub fn grace_margin_seconds(&self) -> u64 {
        match self.prune_grace_seconds {
            0 => 0,
            g => (g / 24).max(1),
        }
    }
}

/// Encodes the `config` object.
pub fn encode(config: &RepoConfig, repo_id: &Id, key: &SealingKey) -> Result<Vec<u8>> {
    config.validate()?;
    let h = format::header(ObjectType::Config);
    let json = serde_json::to_vec(config).map_err(|e| Error::invalid(format!("config: {e}")))?;
    let mut out = Vec::new();
    out.extend_from_slice(&h);
    out.extend_from_slice(repo_id.as_bytes());
    key.seal_into(
        &format::associated_data(&h, repo_id, &[]),
        &format::frame_payload(0, &json),
        &mut out,
    )?;
    let sum = blake3::hash(&out);
    out.extend_from_slice(sum.as_bytes());
    Ok(out)
}

/// The config without its checksum, once the checksum matches.
fn checked(bytes: &[u8]) -> Result<&[u8]> {
    let body_len = bytes
        .len()
        .checked_sub(CHECKSUM_LEN)
        .filter(|n| *n >= HEADER_LEN + Id::LEN)
        .ok_or_else(|| Error::corrupt(format!("config: truncated ({} bytes)", bytes.len())))?;
    let (body, sum) = bytes.split_at(body_len);
    if blake3::hash(body).as_bytes() != sum {
        return Err(Error::corrupt(
            "config is damaged: its checksum does not match its contents",
        ));
    }
    // After the checksum: a damaged version byte is damage, not a newer
    // format.
    format::check_header(body, ObjectType::Config, "config")?;
    Ok(body)
}

/// Length of the trailing checksum.
const CHECKSUM_LEN: usize = 32;

/// Reads the repository ID from the clear part of `config`, without a key.
pub fn repo_id(bytes: &[u8]) -> Result<Id> {
    let body = checked(bytes)?;
    Id::from_slice(&body[HEADER_LEN..HEADER_LEN + Id::LEN]).map_err(|e| e.context("config"))
}

/// Opens and validates the sealed part of `config`.
pub fn decode(bytes: &[u8], key: &SealingKey) -> Result<(Id, RepoConfig)> {
    let body = checked(bytes)?;
    let h = format::check_header(body, ObjectType::Config, "config")?;
    let id = repo_id(bytes)?;
    let framed = key
        .open(
            &format::associated_data(&h, &id, &[]),
            &body[HEADER_LEN + Id::LEN..],
        )
        .map_err(|e| Error::corrupt(format!("config: {e}")))?;
    let json = format::unframe_payload(&framed, MAX_CONFIG_LEN)?;
    let config: RepoConfig =
        serde_json::from_slice(&json).map_err(|e| Error::decode("config", e))?;
    config.validate().map_err(|e| match e.kind() {
        ErrorKind::InvalidInput => Error::corrupt(format!("config: {}", e.message())),
        _ => e.context("config"),
    })?;
    Ok((id, config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() -> Result<()> {
        let key = SealingKey::new(&[9u8; 32]);
        let id = Id::of_bytes(b"repo");
        let config = RepoConfig::new("2026-11-27T00:00:00Z".into());
        let bytes = encode(&config, &id, &key)?;
        assert_eq!(repo_id(&bytes)?, id);
        assert_eq!(decode(&bytes, &key)?, (id, config));
        // Any flipped bit is damage, found without a key, never a
        // different repository ID (which would look like a wrong password).
        for i in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[i] ^= 1;
            let e = repo_id(&flipped).expect_err("flipped bit accepted");
            assert_eq!(e.kind(), ErrorKind::Corrupt, "byte {i}: {e}");
        }
        Ok(())
    }
}
