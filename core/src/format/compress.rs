//! zstd compression of blobs and objects, bounded decompression, and
//! delta compression of a chunk against a similar one (its base).

use std::cell::RefCell;

use zstd::zstd_safe;

use crate::error::{Error, Result};
use crate::id::Id;

thread_local! {
    /// One zstd compression context per thread and level: creating one
    /// costs as much as compressing a small chunk.
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { RefCell::new(None) };
    /// One zstd decompression context per thread.
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { RefCell::new(None) };
    /// Contexts for deltas: the base is passed with each call.
    static DELTA_CCTX: RefCell<Option<zstd_safe::CCtx<'static>>> = const { RefCell::new(None) };
    static DELTA_DCTX: RefCell<Option<zstd_safe::DCtx<'static>>> = const { RefCell::new(None) };
}

fn zstd_err(code: zstd_safe::ErrorCode) -> String {
    zstd_safe::get_error_name(code).to_string()
}

fn zstd_compress(data: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let compressor = match &mut *slot {
            Some((l, c)) if *l == level => c,
            other => &mut other.insert((level, zstd::bulk::Compressor::new(level)?)).1,
        };
        compressor.compress(data)
    })
}

fn zstd_decompress(data: &[u8], capacity: usize) -> std::io::Result<Vec<u8>> {
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let decompressor = match &mut *slot {
            Some(d) => d,
            empty => empty.insert(zstd::bulk::Decompressor::new()?),
        };
        decompressor.decompress(data, capacity)
    })
}

/// How a stored payload is compressed. One byte in the format (a delta's
/// base ID follows its entry, `repo-format.md` §6.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Stored as is (it did not shrink, or compression is off).
    None,
    /// A single zstd frame.
    Zstd,
    /// A single zstd frame compressed with the plaintext of the data blob
    /// `base` (always stored whole) as its dictionary ([`compress_delta`]).
    Delta(Id),
}

/// Format byte of [`Compression::Delta`].
pub const DELTA_BYTE: u8 = 2;

/// The first bytes of a zstd dictionary. A base that starts with them is
/// never used: zstd would read it as a dictionary, not as content.
const ZSTD_DICT_MAGIC: [u8; 4] = [0x37, 0xa4, 0x30, 0xec];

impl Compression {
    /// The format byte.
    pub fn byte(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Zstd => 1,
            Compression::Delta(_) => DELTA_BYTE,
        }
    }

    /// The base of a delta.
    pub fn base(self) -> Option<Id> {
        match self {
            Compression::Delta(base) => Some(base),
            _ => None,
        }
    }

    /// Decodes the format byte of a whole payload (not a delta, which
    /// needs its base: see [`crate::format::pack::BlobEntry::decode_prefix`]).
    pub fn from_byte(b: u8) -> Result<Self> {
        match b {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Zstd),
            other => Err(Error::new(
                crate::error::ErrorKind::Unsupported,
                format!("unknown compression type {other}"),
            )),
        }
    }
}

/// Compresses `data` with zstd at `level`, or keeps it raw when compression
/// does not make it smaller (or `level` is 0).
pub fn compress(level: i32, data: &[u8]) -> (Compression, Vec<u8>) {
    if level == 0 || data.is_empty() {
        return (Compression::None, data.to_vec());
    }
    match zstd_compress(data, level) {
        Ok(packed) if packed.len() < data.len() => (Compression::Zstd, packed),
        _ => (Compression::None, data.to_vec()),
    }
}

/// Can `base` serve as the base of a delta?
pub fn usable_base(base: &[u8]) -> bool {
    !base.is_empty() && !base.starts_with(&ZSTD_DICT_MAGIC)
}

/// Compresses `data` as a zstd frame with `base` as its dictionary (raw
/// content, as `ZSTD_compress_usingDict` reads any dictionary that does
/// not start with the dictionary magic). `None` when the frame is not
/// strictly shorter than `limit` bytes or `base` is not usable.
pub fn compress_delta(level: i32, base: &[u8], data: &[u8], limit: usize) -> Option<Vec<u8>> {
    if !usable_base(base) || data.is_empty() {
        return None;
    }
    DELTA_CCTX.with(|cell| {
        let mut slot = cell.borrow_mut();
        let cctx = match &mut *slot {
            Some(c) => c,
            empty => empty.insert(zstd_safe::CCtx::try_create()?),
        };
        let mut out = Vec::with_capacity(zstd_safe::compress_bound(data.len()));
        cctx.compress_using_dict(&mut out, data, base, level.max(1))
            .ok()?;
        (out.len() < limit).then_some(out)
    })
}

/// Decompresses a delta frame against its base's plaintext, bounded like
/// [`decompress`].
pub fn decompress_delta(
    data: &[u8],
    base: &[u8],
    raw_len: usize,
    max_len: usize,
) -> Result<Vec<u8>> {
    bounded(raw_len, max_len, || {
        if !usable_base(base) {
            return Err(Error::corrupt("a delta's base cannot serve as one"));
        }
        DELTA_DCTX.with(|cell| {
            let mut slot = cell.borrow_mut();
            let dctx = match &mut *slot {
                Some(d) => d,
                empty => empty.insert(zstd_safe::DCtx::try_create().ok_or_else(|| {
                    Error::new(crate::error::ErrorKind::Io, "zstd: out of memory")
                })?),
            };
            let mut out = Vec::with_capacity(raw_len);
            dctx.decompress_using_dict(&mut out, data, base)
                .map_err(|code| {
                    Error::corrupt(format!(
                        "zstd delta does not decompress: {}",
                        zstd_err(code)
                    ))
                })?;
            Ok::<_, Error>(out)
        })
    })
}

/// Decompresses a payload whose stated raw length is `raw_len`. The output
/// is bounded by `raw_len`, and `raw_len` by `max_len`, so a hostile zstd
/// frame cannot exhaust memory. The result must be exactly `raw_len` long.
pub fn decompress(
    compression: Compression,
    data: &[u8],
    raw_len: usize,
    max_len: usize,
) -> Result<Vec<u8>> {
    bounded(raw_len, max_len, || match compression {
        Compression::None => Ok(data.to_vec()),
        Compression::Zstd => zstd_decompress(data, raw_len)
            .map_err(|e| Error::corrupt(format!("zstd data does not decompress: {e}"))),
        Compression::Delta(base) => Err(Error::corrupt(format!(
            "a delta against {base} needs its base to be decompressed"
        ))),
    })
}

/// Runs `decode` only if `raw_len` is within `max_len`, and accepts its
/// output only if it is exactly `raw_len` long.
fn bounded(
    raw_len: usize,
    max_len: usize,
    decode: impl FnOnce() -> Result<Vec<u8>>,
) -> Result<Vec<u8>> {
    if raw_len > max_len {
        return Err(Error::corrupt(format!(
            "stated size {raw_len} exceeds the limit of {max_len} bytes"
        )));
    }
    let out = decode()?;
    if out.len() != raw_len {
        return Err(Error::corrupt(format!(
            "decompressed to {} bytes, expected {raw_len}",
            out.len()
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressible_data_shrinks_and_round_trips() -> Result<()> {
        let data = b"abcabcabc".repeat(1000);
        let (c, packed) = compress(3, &data);
        assert_eq!(c, Compression::Zstd);
        assert!(packed.len() < data.len());
        assert_eq!(decompress(c, &packed, data.len(), 1 << 20)?, data);
        Ok(())
    }

    #[test]
    fn incompressible_data_stays_raw() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let data: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect();
        let (c, packed) = compress(3, &data);
        assert_eq!(c, Compression::None, "random bytes do not shrink");
        assert_eq!(packed, data);
        assert_eq!(compress(0, b"aaaaaaaa").0, Compression::None);
    }

    #[test]
    fn a_small_edit_makes_a_small_delta() -> Result<()> {
        let base: Vec<u8> = (0..300)
            .flat_map(|i| format!("{i}\trow {}\t{}\n", i * 7919 % 1000, i * 31).into_bytes())
            .collect();
        let mut target = base.clone();
        target[1000..1010].copy_from_slice(b"0123456789");
        let whole = compress(1, &target).1;
        let delta = compress_delta(1, &base, &target, whole.len()).expect("a delta");
        assert!(
            delta.len() * 10 < whole.len(),
            "{} vs {}",
            delta.len(),
            whole.len()
        );
        assert_eq!(
            decompress_delta(&delta, &base, target.len(), 1 << 20)?,
            target
        );
        // Bounded like any frame: a lie about the size is refused.
        assert!(decompress_delta(&delta, &base, target.len() - 1, 1 << 20).is_err());
        assert!(decompress_delta(&delta, &base, target.len(), 100).is_err());
        // Not against a base zstd would read as a dictionary, nor an empty one.
        let mut magic = ZSTD_DICT_MAGIC.to_vec();
        magic.extend_from_slice(&base);
        assert!(compress_delta(1, &magic, &target, usize::MAX).is_none());
        assert!(compress_delta(1, b"", &target, usize::MAX).is_none());
        assert!(decompress(
            Compression::Delta(Id::default()),
            &delta,
            target.len(),
            1 << 20
        )
        .is_err());
        Ok(())
    }

    #[test]
    fn bomb_is_refused() {
        let data = vec![0u8; 1 << 20];
        let (c, packed) = compress(3, &data);
        // Lying about the size: the output bound stops it.
        assert!(decompress(c, &packed, 1024, 1 << 30).is_err());
        // Stating a huge size: the limit stops it before allocating.
        assert!(decompress(c, &packed, 1 << 40, 1 << 30).is_err());
        assert!(decompress(c, &packed, 1 << 20, 1 << 30).is_ok());
    }
}
