//! zstd compression of blobs and objects, and bounded decompression.

use std::cell::RefCell;

use crate::error::{Error, Result};

thread_local! {
    /// One zstd compression context per thread and level: creating one
    /// costs as much as compressing a small chunk.
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { RefCell::new(None) };
    /// One zstd decompression context per thread.
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { RefCell::new(None) };
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

/// How a stored payload is compressed. One byte in the format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Compression {
    /// Stored as is (it did not shrink, or compression is off).
    None = 0,
    /// A single zstd frame.
    Zstd = 1,
}

impl Compression {
    /// Decodes the format byte.
    pub fn from_byte(b: u8) -> Result<Self> {
        match b {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Zstd),
            other => Err(Error::new(
                crate::ErrorKind::Unsupported,
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

/// Decompresses a payload whose stated raw length is `raw_len`. The output
/// is bounded by `raw_len`, and `raw_len` by `max_len`, so a hostile zstd
/// frame cannot exhaust memory. The result must be exactly `raw_len` long.
pub fn decompress(
    compression: Compression,
    data: &[u8],
    raw_len: usize,
    max_len: usize,
) -> Result<Vec<u8>> {
    if raw_len > max_len {
        return Err(Error::corrupt(format!(
            "stated size {raw_len} exceeds the limit of {max_len} bytes"
        )));
    }
    let out = match compression {
        Compression::None => data.to_vec(),
        Compression::Zstd => zstd_decompress(data, raw_len)
            .map_err(|e| Error::corrupt(format!("zstd data does not decompress: {e}")))?,
    };
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
