//! Resemblance sketches of chunks, the first part of delta compression
//! (issue 8): two chunks that share a super-feature are probably similar,
//! so a new chunk can be stored as a delta against an old one.
//!
//! The sketch is Finesse-style, with Odess's content-defined sampling:
//! a gear rolling hash runs over the chunk; at the positions where its top
//! [`SAMPLE_BITS`] bits are zero (one in 64), [`FEATURES`] features each
//! keep the maximum of `a_k · hash + b_k`; the features are grouped
//! [`FEATURES_PER_SUPER`] at a time into [`SUPER_FEATURES`]
//! super-features, each the BLAKE3 hash of its group. A small edit changes
//! few sampled positions, so most super-features survive it.
//!
//! Measured on the benchmark's nightly pg_dumps with a throw-away
//! prototype of these parameters: 80 % of night 2's new chunks found a
//! base among night 1's chunks, and storing them as zstd deltas against it
//! took 1.21 MB instead of 4.98 MB.

/// Features per chunk.
pub const FEATURES: usize = 12;
/// Features per super-feature.
pub const FEATURES_PER_SUPER: usize = 4;
/// Super-features per chunk.
pub const SUPER_FEATURES: usize = FEATURES / FEATURES_PER_SUPER;
/// A position is sampled when the top this-many bits of the rolling hash
/// are zero.
pub const SAMPLE_BITS: u32 = 6;
/// Bytes hashed before the first position may be sampled (the gear hash
/// depends on the last 64 bytes; after 48 it is well mixed).
const WARM_UP: usize = 48;
/// A chunk with fewer sampled positions has no sketch: its features would
/// be too few to mean anything, and every such chunk would look alike.
const MIN_SAMPLES: usize = 4;

/// The super-features of one chunk.
pub type Sketch = [u64; SUPER_FEATURES];

/// Computes sketches. Its tables are fixed: sketches of the same bytes are
/// the same in every repository and every version that keeps these
/// constants.
pub struct Sketcher {
    gear: [u64; 256],
    mul: [u64; FEATURES],
    add: [u64; FEATURES],
}

impl Default for Sketcher {
    fn default() -> Self {
        Self::new()
    }
}

impl Sketcher {
    /// The sketcher with cairn's fixed tables.
    pub fn new() -> Self {
        let mut x: u64 = 0x1234_5678_9abc_def1;
        let gear = std::array::from_fn(|_| {
            // xorshift64
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        });
        Sketcher {
            gear,
            mul: std::array::from_fn(|k| 0x9E37_79B9_7F4A_7C15u64.wrapping_mul(2 * k as u64 + 1)),
            add: std::array::from_fn(|k| 0xBF58_476D_1CE4_E5B9u64.wrapping_mul(k as u64 + 7)),
        }
    }

    /// The sketch of `chunk`, or `None` when it is too short or too
    /// uniform to have one.
    pub fn sketch(&self, chunk: &[u8]) -> Option<Sketch> {
        let mut features = [0u64; FEATURES];
        let mut samples = 0usize;
        let mut h: u64 = 0;
        for (i, &byte) in chunk.iter().enumerate() {
            h = (h << 1).wrapping_add(self.gear[byte as usize]);
            if i < WARM_UP || (h >> (64 - SAMPLE_BITS)) != 0 {
                continue;
            }
            samples += 1;
            for (f, (m, a)) in features.iter_mut().zip(self.mul.iter().zip(&self.add)) {
                *f = (*f).max(m.wrapping_mul(h).wrapping_add(*a));
            }
        }
        if samples < MIN_SAMPLES {
            return None;
        }
        Some(std::array::from_fn(|g| {
            let mut hasher = blake3::Hasher::new();
            for f in &features[g * FEATURES_PER_SUPER..(g + 1) * FEATURES_PER_SUPER] {
                hasher.update(&f.to_le_bytes());
            }
            let digest = hasher.finalize();
            let mut first = [0u8; 8];
            first.copy_from_slice(&digest.as_bytes()[..8]);
            u64::from_le_bytes(first)
        }))
    }
}

/// Whether two sketches share a super-feature: the test for "probably
/// similar".
pub fn resemble(a: &Sketch, b: &Sketch) -> bool {
    a.iter().zip(b).any(|(x, y)| x == y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::test_data::pseudo_random;

    /// Text shaped like a table in a pg_dump, with a seed.
    fn rows(len: usize, seed: u64) -> Vec<u8> {
        let mut out = Vec::new();
        let mut i = seed * 1_000_000;
        while out.len() < len {
            out.extend_from_slice(
                format!("{i}\tCustomer {i}\tcustomer{i}@example.org\tOslo\t2026-01-01\n")
                    .as_bytes(),
            );
            i += 1;
        }
        out.truncate(len);
        out
    }

    #[test]
    fn sketches_are_deterministic_and_short_chunks_have_none() {
        let s = Sketcher::new();
        let c = pseudo_random(8192, 1);
        assert_eq!(s.sketch(&c), Sketcher::default().sketch(&c));
        assert!(s.sketch(&c).is_some());
        assert_eq!(s.sketch(b"short"), None);
        assert_eq!(s.sketch(&pseudo_random(WARM_UP, 2)), None);
    }

    #[test]
    fn small_edits_keep_a_super_feature() {
        let s = Sketcher::new();
        let mut kept = 0;
        for seed in 0..200u64 {
            let base = rows(8192, seed);
            let mut edited = base.clone();
            let at = 1000 + (seed as usize * 37) % 6000;
            edited.splice(at..at + 10, b"UPDATED ROW".iter().copied());
            if let (Some(a), Some(b)) = (s.sketch(&base), s.sketch(&edited)) {
                if resemble(&a, &b) {
                    kept += 1;
                }
            }
        }
        assert!(
            kept >= 180,
            "only {kept} of 200 edited chunks resemble their original"
        );
    }

    #[test]
    fn unrelated_chunks_do_not_resemble() {
        let s = Sketcher::new();
        let sketches: Vec<Sketch> = (0..200u64)
            .filter_map(|seed| s.sketch(&pseudo_random(8192, seed + 1000)))
            .collect();
        assert!(sketches.len() >= 190);
        for (i, a) in sketches.iter().enumerate() {
            for b in &sketches[i + 1..] {
                assert!(!resemble(a, b));
            }
        }
    }
}
