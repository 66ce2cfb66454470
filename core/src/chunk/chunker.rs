//! Content-defined chunking: FastCDC (2020) with a per-repository gear seed
//! (`repo-format.md` §5).
//!
//! The cut-point function is `fastcdc::v2020::cut_gear` with normalization
//! level 1 and the crate's gear table XORed with the repository's 64-bit seed.
//! This module only streams: it keeps a buffer of at least `max_size` bytes
//! in front of every cut, so cut points depend on the data and parameters
//! alone, never on how reads happen to be split.
//!
//! One front end cuts: [`BlockChunker`], fed blocks of the stream (by a
//! reader thread in a backup, by a small file's single read, or by
//! [`Chunker`], which reads them from an `io::Read` for callers that pull
//! one chunk at a time).

use std::io::{self, Read};

use fastcdc::v2020::{cut_gear, get_gear_with_seed, select_masks, Normalization};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Smallest allowed `min_size`.
pub const MIN_MIN_SIZE: u32 = 64;
/// Largest allowed `max_size`, also the largest data blob.
pub const MAX_MAX_SIZE: u32 = 16 * 1024 * 1024;

/// Chunk size bounds, fixed per repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerParams {
    /// Always "fastcdc2020" in format version 1.
    #[serde(default = "algorithm_name")]
    pub algorithm: ChunkerAlgorithm,
    /// No chunk is shorter, except the last one of a stream.
    pub min_size: u32,
    /// The average the cut-point masks aim at.
    pub avg_size: u32,
    /// No chunk is longer.
    pub max_size: u32,
    /// The gear table's seed, when it is not the one derived from the
    /// master key (`repo-format.md` §3.1): a repository made with
    /// `init --copy-chunker-params` keeps its source's seed here, so that
    /// both cut the same data into the same chunks.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "hex_seed")]
    pub seed: Option<u64>,
}

/// A seed is written as 16 hex digits (a JSON number would lose bits in
/// readers that parse numbers as doubles).
mod hex_seed {
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(seed: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match seed {
            Some(v) => s.serialize_str(&format!("{v:016x}")),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        let text = String::deserialize(d)?;
        let digits_ok = text.len() == 16
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !digits_ok {
            return Err(D::Error::custom(format!(
                "chunker seed {text:?} is not 16 lowercase hex digits"
            )));
        }
        u64::from_str_radix(&text, 16)
            .map(Some)
            .map_err(D::Error::custom)
    }
}

/// The chunking algorithm; one variant in format version 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChunkerAlgorithm {
    /// FastCDC 2020, normalization level 1, seeded gear table.
    #[serde(rename = "fastcdc2020")]
    FastCdc2020,
}

fn algorithm_name() -> ChunkerAlgorithm {
    ChunkerAlgorithm::FastCdc2020
}

/// Average chunk size of a new repository, which has delta compression
/// on: 32 KiB. With deltas a changed chunk costs its changes plus about
/// 200 bytes (seal, entries, its ID in a chunk list), so fewer, larger
/// chunks store a night of a pg_dump series in the least: 2.5 MB at
/// 32 KiB against 3.2 MB at 8 KiB, 2.7 MB at 24 KiB and 3.2 MB at 48 KiB
/// (docs/benchmarks.md; `docs/design.md` §3.1).
pub const DEFAULT_AVERAGE: u32 = 32 * 1024;

/// Average chunk size of a new repository without delta compression:
/// 8 KiB, where every changed chunk is stored whole, so small chunks store
/// less (`benches/chunk-sizes.sh`; `docs/design.md` §3.1).
pub const WHOLE_AVERAGE: u32 = 8 * 1024;

impl Default for ChunkerParams {
    /// 8 KiB / 32 KiB / 128 KiB, the default of a repository with deltas.
    fn default() -> Self {
        ChunkerParams::default_for(true)
    }
}

impl ChunkerParams {
    /// The default parameters of a new repository with delta compression
    /// on or off ([`DEFAULT_AVERAGE`], [`WHOLE_AVERAGE`]).
    pub fn default_for(delta: bool) -> Self {
        ChunkerParams::with_average(if delta {
            DEFAULT_AVERAGE
        } else {
            WHOLE_AVERAGE
        })
    }

    /// `min = avg / 4`, `max = avg * 4`: FastCDC's recommended spread.
    pub fn with_average(avg: u32) -> Self {
        ChunkerParams {
            algorithm: ChunkerAlgorithm::FastCdc2020,
            min_size: avg / 4,
            avg_size: avg,
            max_size: avg.saturating_mul(4),
            seed: None,
        }
    }

    /// Checks the bounds FastCDC needs.
    pub fn validate(&self) -> Result<()> {
        let ChunkerParams {
            min_size,
            avg_size,
            max_size,
            ..
        } = *self;
        let ok = min_size >= MIN_MIN_SIZE
            && (fastcdc::v2020::AVERAGE_MIN as u64..=fastcdc::v2020::AVERAGE_MAX as u64)
                .contains(&u64::from(avg_size))
            && max_size <= MAX_MAX_SIZE
            && min_size < avg_size
            && avg_size < max_size
            && min_size % 2 == 0
            && avg_size % 2 == 0
            && max_size % 2 == 0;
        if ok {
            Ok(())
        } else {
            Err(Error::invalid(format!(
                "chunk sizes min {min_size} / avg {avg_size} / max {max_size} are invalid \
                 (need even sizes, {MIN_MIN_SIZE} <= min < avg < max <= {MAX_MAX_SIZE}, avg >= 256)"
            )))
        }
    }
}

/// The cut-point function with one repository's parameters and seed.
#[derive(Clone)]
struct Cutter {
    min: usize,
    avg: usize,
    max: usize,
    masks: (u64, u64),
    gear: Vec<u64>,
    gear_ls: Vec<u64>,
}

impl Cutter {
    fn new(params: &ChunkerParams, seed: u64) -> Self {
        let (gear, gear_ls) = get_gear_with_seed(seed);
        Cutter {
            min: params.min_size as usize,
            avg: params.avg_size as usize,
            max: params.max_size as usize,
            masks: select_masks(params.avg_size as usize, Normalization::Level1),
            gear: gear.into_owned(),
            gear_ls: gear_ls.into_owned(),
        }
    }

    /// The length of the chunk that starts `data`, which holds at least
    /// `max` bytes or the rest of the stream.
    fn cut(&self, data: &[u8]) -> usize {
        let (mask_s, mask_l) = self.masks;
        let (_, len) = cut_gear(
            data,
            self.min,
            self.avg,
            self.max,
            mask_s,
            mask_l,
            mask_s << 1,
            mask_l << 1,
            &self.gear,
            &self.gear_ls,
        );
        len.max(1).min(data.len())
    }
}

/// Cuts a byte stream read from an `io::Read` into chunks, one at a time:
/// a [`BlockChunker`] fed with the blocks it reads.
pub struct Chunker<R> {
    reader: R,
    blocks: BlockChunker,
    block_size: usize,
    batch: ChunkBatch,
    next: usize,
    ended: bool,
}

impl<R: Read> Chunker<R> {
    /// A chunker over `reader` with the repository's parameters and seed,
    /// reading 4 MiB blocks (or two maximum chunks, if larger).
    pub fn new(reader: R, params: &ChunkerParams, seed: u64) -> Self {
        let blocks = BlockChunker::new(params, seed);
        let size = blocks.block_size();
        Self::over(reader, blocks, size)
    }

    /// Like [`Chunker::new`], reading blocks of `size` bytes (at least
    /// one): cut points never depend on it.
    pub fn with_buffer(reader: R, params: &ChunkerParams, seed: u64, size: usize) -> Self {
        Self::over(reader, BlockChunker::new(params, seed), size)
    }

    fn over(reader: R, blocks: BlockChunker, size: usize) -> Self {
        Chunker {
            reader,
            blocks,
            block_size: size.max(1),
            batch: ChunkBatch::default(),
            next: 0,
            ended: false,
        }
    }

    /// The next chunk, or `None` at the end of the stream.
    pub fn next_chunk(&mut self) -> io::Result<Option<&[u8]>> {
        while self.next >= self.batch.len() && !self.ended {
            let mut block = std::mem::take(&mut self.batch).into_block();
            block.resize(self.block_size, 0);
            self.ended = read_block(&mut self.reader, &mut block)?;
            self.batch = match self.ended {
                true => self.blocks.push_last(block),
                false => self.blocks.push(block),
            };
            self.next = 0;
        }
        let chunk = self.batch.get(self.next);
        self.next += 1;
        Ok(chunk)
    }
}

/// Reads `reader` into `block` until it is full or the stream ends;
/// `block` is cut to what was read. Returns whether the stream ended.
pub fn read_block<R: Read + ?Sized>(reader: &mut R, block: &mut Vec<u8>) -> io::Result<bool> {
    let n = read_full(reader, block)?;
    let ended = n < block.len();
    block.truncate(n);
    Ok(ended)
}

/// Reads until `buf` is full or the stream ends; returns the bytes read
/// (fewer than `buf.len()` only at the end of the stream).
pub(crate) fn read_full<R: Read + ?Sized>(reader: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Cuts a stream that arrives in large blocks (read elsewhere, so reading
/// and cutting overlap) into the same chunks as [`Chunker`], without
/// copying them: a chunk is a range of its block, except the few that
/// start in the tail of one block and end in the next.
pub struct BlockChunker {
    cutter: Cutter,
    /// The part of the stream not cut yet (less than `max` bytes).
    carry: Vec<u8>,
}

/// The chunks cut from one block.
#[derive(Default)]
pub struct ChunkBatch {
    /// Chunks that began in an earlier block, copied.
    head: Vec<Vec<u8>>,
    /// The block; the other chunks are `ranges` of it, in order.
    block: Vec<u8>,
    ranges: Vec<(usize, usize)>,
}

impl ChunkBatch {
    /// Number of chunks.
    pub fn len(&self) -> usize {
        self.head.len() + self.ranges.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The chunks, in stream order.
    pub fn chunks(&self) -> Vec<&[u8]> {
        let mut out: Vec<&[u8]> = self.head.iter().map(Vec::as_slice).collect();
        out.extend(
            self.ranges
                .iter()
                .map(|&(at, len)| &self.block[at..at + len]),
        );
        out
    }

    /// Chunk `i`, in stream order.
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        match self.head.get(i) {
            Some(c) => Some(c),
            None => {
                let &(at, len) = self.ranges.get(i - self.head.len())?;
                self.block.get(at..at + len)
            }
        }
    }

    /// Bytes in the chunks.
    pub fn bytes(&self) -> u64 {
        let head: usize = self.head.iter().map(Vec::len).sum();
        let ranges: usize = self.ranges.iter().map(|r| r.1).sum();
        (head + ranges) as u64
    }

    /// The block's buffer, to be read into again.
    pub fn into_block(self) -> Vec<u8> {
        self.block
    }
}

impl BlockChunker {
    /// A block chunker with the repository's parameters and seed.
    pub fn new(params: &ChunkerParams, seed: u64) -> Self {
        BlockChunker {
            cutter: Cutter::new(params, seed),
            carry: Vec::new(),
        }
    }

    /// The block size to read: 4 MiB, or two maximum chunks if larger.
    pub fn block_size(&self) -> usize {
        (4 << 20).max(2 * self.cutter.max)
    }

    /// Cuts the next `block` of the stream (any size; the last chunk or so
    /// waits for the next block, or for [`BlockChunker::push_last`]).
    pub fn push(&mut self, block: Vec<u8>) -> ChunkBatch {
        self.cut(block, false)
    }

    /// Cuts the last `block` of the stream (any size, empty too) and what
    /// was left of the earlier ones: every byte pushed is in a chunk after
    /// it. A stream read in one block (a small file) is cut without
    /// copying any chunk.
    pub fn push_last(&mut self, block: Vec<u8>) -> ChunkBatch {
        self.cut(block, true)
    }

    /// The stream ended after the last [`BlockChunker::push`]: the chunks
    /// of what is left, if anything.
    pub fn finish(&mut self) -> Option<ChunkBatch> {
        let last = self.push_last(Vec::new());
        (!last.is_empty()).then_some(last)
    }

    /// Cuts every chunk that lies whole in the carry and `block` (all of
    /// them when the stream ends with `block`).
    fn cut(&mut self, block: Vec<u8>, last: bool) -> ChunkBatch {
        let max = self.cutter.max;
        let mut head = Vec::new();
        let mut pos = 0;
        if !self.carry.is_empty() {
            // The chunks that start in the carry are cut from the carry
            // followed by at most `max` bytes of the block: at least `max`
            // bytes in front of each cut, or the whole rest of the stream.
            let carried = self.carry.len();
            self.carry.extend_from_slice(&block[..block.len().min(max)]);
            let rest_of_stream = last && block.len() <= max;
            let mut p = 0;
            while p < carried && (rest_of_stream || self.carry.len() - p >= max) {
                let len = self.cutter.cut(&self.carry[p..]);
                head.push(self.carry[p..p + len].to_vec());
                p += len;
            }
            if p < carried {
                // A block too short to cut the carry: keep all of it.
                self.carry.truncate(carried);
                self.carry.drain(..p);
                self.carry.extend_from_slice(&block);
                return ChunkBatch {
                    head,
                    block,
                    ranges: Vec::new(),
                };
            }
            pos = p - carried;
            self.carry.clear();
        }
        let mut ranges = Vec::new();
        while pos < block.len() && (last || block.len() - pos >= max) {
            let len = self.cutter.cut(&block[pos..]);
            ranges.push((pos, len));
            pos += len;
        }
        self.carry.extend_from_slice(&block[pos..]);
        ChunkBatch {
            head,
            block,
            ranges,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::test_data::pseudo_random;
    use proptest::prelude::*;

    /// Reads at most `step` bytes per call, to show that read sizes do not
    /// move cut points.
    struct Dribble<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Dribble<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.step.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    fn chunks(data: &[u8], params: &ChunkerParams, seed: u64, step: usize) -> Vec<Vec<u8>> {
        // Blocks much smaller than a chunk, so that most chunks are cut
        // from the carry of several blocks.
        let mut c = Chunker::with_buffer(Dribble { data, step }, params, seed, 777);
        let mut out = Vec::new();
        while let Ok(Some(chunk)) = c.next_chunk() {
            out.push(chunk.to_vec());
        }
        out
    }

    const SMALL: ChunkerParams = ChunkerParams {
        algorithm: ChunkerAlgorithm::FastCdc2020,
        min_size: 256,
        avg_size: 1024,
        max_size: 4096,
        seed: None,
    };

    fn block_chunks(data: &[u8], params: &ChunkerParams, seed: u64, block: usize) -> Vec<Vec<u8>> {
        let mut c = BlockChunker::new(params, seed);
        let mut out = Vec::new();
        let mut collect = |b: &ChunkBatch| {
            let chunks = b.chunks();
            assert_eq!(chunks.len(), b.len());
            assert_eq!(
                chunks.iter().map(|c| c.len() as u64).sum::<u64>(),
                b.bytes()
            );
            out.extend(chunks.iter().map(|c| c.to_vec()));
        };
        for piece in data.chunks(block.max(1)) {
            collect(&c.push(piece.to_vec()));
        }
        if let Some(last) = c.finish() {
            collect(&last);
        }
        out
    }

    /// [`block_chunks`] with the stream's last block given to `push_last`.
    fn last_block_chunks(data: &[u8], seed: u64, block: usize) -> Vec<Vec<u8>> {
        let mut c = BlockChunker::new(&SMALL, seed);
        let mut out = Vec::new();
        let pieces: Vec<&[u8]> = data.chunks(block.max(1)).collect();
        for (i, piece) in pieces.iter().enumerate() {
            let batch = match i + 1 == pieces.len() {
                true => c.push_last(piece.to_vec()),
                false => c.push(piece.to_vec()),
            };
            out.extend((0..batch.len()).map(|k| batch.get(k).unwrap_or_default().to_vec()));
            assert!(batch.get(batch.len()).is_none());
        }
        assert!(c.finish().is_none(), "push_last left bytes uncut");
        out
    }

    proptest! {
        #[test]
        fn block_chunker_cuts_like_the_stream_chunker(len in 0usize..60_000, seed: u64, block in 1usize..20_000) {
            let data = pseudo_random(len, seed);
            prop_assert_eq!(block_chunks(&data, &SMALL, seed, block), chunks(&data, &SMALL, seed, 1 << 20));
        }

        #[test]
        fn the_last_block_pushed_as_last_cuts_the_same(len in 1usize..60_000, seed: u64, block in 1usize..20_000) {
            let data = pseudo_random(len, seed);
            prop_assert_eq!(last_block_chunks(&data, seed, block), block_chunks(&data, &SMALL, seed, 70_000));
        }

        #[test]
        fn chunks_cover_the_input_within_bounds(len in 0usize..200_000, seed: u64, step in 1usize..70_000) {
            let data = pseudo_random(len, seed);
            let got = chunks(&data, &SMALL, seed, step);
            prop_assert_eq!(got.concat(), data);
            for (i, c) in got.iter().enumerate() {
                prop_assert!(c.len() <= 4096);
                if i + 1 < got.len() {
                    prop_assert!(c.len() >= 256);
                }
            }
        }

        #[test]
        fn cut_points_do_not_depend_on_read_sizes(seed: u64, a in 1usize..10_000, b in 1usize..10_000) {
            let data = pseudo_random(100_000, seed);
            prop_assert_eq!(chunks(&data, &SMALL, 7, a), chunks(&data, &SMALL, 7, b));
        }
    }

    #[test]
    fn same_as_fastcdc_reference() {
        let data = pseudo_random(300_000, 42);
        let ours: Vec<usize> = chunks(&data, &SMALL, 99, 4096)
            .iter()
            .map(Vec::len)
            .collect();
        let reference: Vec<usize> = fastcdc::v2020::FastCDC::with_level_and_seed(
            &data,
            256,
            1024,
            4096,
            Normalization::Level1,
            99,
        )
        .map(|c| c.length)
        .collect();
        assert_eq!(ours, reference);
    }

    #[test]
    fn seed_moves_boundaries_and_edits_stay_local() {
        let data = pseudo_random(200_000, 5);
        let a = chunks(&data, &SMALL, 1, 1 << 20);
        let b = chunks(&data, &SMALL, 2, 1 << 20);
        assert_ne!(a, b);
        let mut edited = data.clone();
        edited.splice(100_000..100_000, b"inserted row".iter().copied());
        let c = chunks(&edited, &SMALL, 1, 1 << 20);
        let shared = c.iter().filter(|x| a.contains(x)).count();
        assert!(
            shared + 4 >= a.len(),
            "an insert should change only a few chunks"
        );
    }

    #[test]
    fn seed_is_sixteen_hex_digits_and_optional() {
        let with = ChunkerParams {
            seed: Some(0x0123_4567_89ab_cdef),
            ..SMALL
        };
        let json = serde_json::to_string(&with).unwrap_or_default();
        assert!(json.contains(r#""seed":"0123456789abcdef""#), "{json}");
        assert_eq!(
            serde_json::from_str::<ChunkerParams>(&json).ok(),
            Some(with)
        );
        let without = serde_json::to_string(&SMALL).unwrap_or_default();
        assert!(!without.contains("seed"), "{without}");
        assert_eq!(
            serde_json::from_str::<ChunkerParams>(&without).ok(),
            Some(SMALL)
        );
        for bad in [
            "\"123\"",
            "\"0123456789ABCDEF\"",
            "\"0123456789abcdeg\"",
            "81985529216486895",
        ] {
            let j = format!(r#"{{"min_size":256,"avg_size":1024,"max_size":4096,"seed":{bad}}}"#);
            assert!(serde_json::from_str::<ChunkerParams>(&j).is_err(), "{j}");
        }
    }

    #[test]
    fn params_validation() {
        assert!(ChunkerParams::default().validate().is_ok());
        assert!(ChunkerParams::default_for(false).validate().is_ok());
        assert_eq!(ChunkerParams::default().avg_size, DEFAULT_AVERAGE);
        assert!(ChunkerParams::with_average(100).validate().is_err());
        assert!(ChunkerParams {
            max_size: MAX_MAX_SIZE * 2,
            ..SMALL
        }
        .validate()
        .is_err());
    }
}
