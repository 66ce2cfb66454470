//! Throughput of each stage of a backup and a restore: chunking (stream
//! and block chunkers), chunk IDs, compression, sealing, whole packs
//! (build + verify before upload), index lookups (hits and misses in the
//! on-disk index cache), decoding blobs for a restore, and resemblance
//! sketches (for delta compression, issue 8).
//!
//! `cargo bench --bench throughput`; under `cargo test` each runs once.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

use cairn_core::chunk::chunker::{BlockChunker, Chunker, ChunkerParams};
use cairn_core::chunk::sketch::Sketcher;
use cairn_core::crypto::{Keys, MasterKey};
use cairn_core::format::compress;
use cairn_core::format::index::IndexPack;
use cairn_core::format::pack::{self, BlobEntry, BlobType, PackWriter};
use cairn_core::id::Id;
use cairn_core::repo::cache::IndexCache;

/// Text shaped like a pg_dump COPY block: compressible, but not trivially.
fn dump_like(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 128);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut i = 0u64;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(
            format!(
                "{i}\t{}\t2026-11-{:02} 03:{:02}:00+00\tshipped\t{}.{:02}\t{:x}\n",
                x % 200_000,
                1 + x % 28,
                x % 60,
                x % 999,
                x % 100,
                x
            )
            .as_bytes(),
        );
        i += 1;
    }
    out.truncate(len);
    out
}

fn keys() -> Keys {
    Keys::derive(&MasterKey::from_bytes([7u8; 32]))
}

fn chunking(c: &mut Criterion) {
    let data = dump_like(32 << 20);
    let mut g = c.benchmark_group("chunking");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.sample_size(10);
    for avg in [4 * 1024u32, 8 * 1024, 64 * 1024] {
        let params = ChunkerParams::with_average(avg);
        g.bench_with_input(BenchmarkId::from_parameter(avg), &params, |b, p| {
            b.iter(|| {
                let mut ch = Chunker::new(&data[..], p, 42);
                let mut n = 0usize;
                while let Ok(Some(c)) = ch.next_chunk() {
                    n += c.len();
                }
                assert_eq!(n, data.len());
            })
        });
    }
    let params = ChunkerParams::default_for(false);
    g.bench_function("block_chunker_8KiB", |b| {
        b.iter(|| {
            let mut ch = BlockChunker::new(&params, 42);
            let mut n = 0u64;
            for block in data.chunks(ch.block_size()) {
                n += ch.push(block.to_vec()).bytes();
            }
            n += ch.finish().map_or(0, |b| b.bytes());
            assert_eq!(n, data.len() as u64);
        })
    });
    g.finish();
}

fn per_chunk(c: &mut Criterion) {
    let keys = keys();
    let repo = Id::of_bytes(b"bench");
    let chunk = dump_like(8 * 1024);
    let mut g = c.benchmark_group("per_8KiB_chunk");
    g.throughput(Throughput::Bytes(chunk.len() as u64));
    g.bench_function("chunk_id_keyed_blake3", |b| {
        b.iter(|| keys.chunk_id(&chunk))
    });
    let sketcher = Sketcher::new();
    g.bench_function("resemblance_sketch", |b| b.iter(|| sketcher.sketch(&chunk)));
    for level in [1, 3, 9] {
        g.bench_function(BenchmarkId::new("zstd_compress", level), |b| {
            b.iter(|| compress::compress(level, &chunk))
        });
    }
    let (c3, packed) = compress::compress(3, &chunk);
    g.bench_function("zstd_decompress", |b| {
        b.iter(|| compress::decompress(c3, &packed, chunk.len(), 1 << 20))
    });
    // A night's typical change: one row of the chunk rewritten.
    let mut changed = chunk.clone();
    let at = changed.len() / 2;
    changed[at..at + 40].copy_from_slice(&[b'7'; 40]);
    g.bench_function("delta_compress_level_1", |b| {
        b.iter(|| compress::compress_delta(1, &chunk, &changed, usize::MAX))
    });
    let delta = compress::compress_delta(1, &chunk, &changed, usize::MAX).expect("a delta");
    g.bench_function("delta_decompress", |b| {
        b.iter(|| compress::decompress_delta(&delta, &chunk, changed.len(), 1 << 20))
    });
    g.bench_function("seal_xchacha20poly1305", |b| {
        b.iter(|| keys.data().seal(b"ad", &chunk))
    });
    let sealed = keys.data().seal(b"ad", &chunk).unwrap_or_default();
    g.bench_function("open_xchacha20poly1305", |b| {
        b.iter(|| keys.data().open(b"ad", &sealed))
    });
    g.bench_function("encode_blob_level3", |b| {
        let id = keys.chunk_id(&chunk);
        b.iter(|| pack::encode_blob(&keys, &repo, BlobType::Data, id, &chunk, 3))
    });
    g.finish();
}

fn packs(c: &mut Criterion) {
    let keys = keys();
    let repo = Id::of_bytes(b"bench");
    let data = dump_like(16 << 20);
    let blobs: Vec<_> = data
        .chunks(8 * 1024)
        .filter_map(|c| {
            pack::encode_blob(&keys, &repo, BlobType::Data, keys.chunk_id(c), c, 3).ok()
        })
        .collect();
    let mut g = c.benchmark_group("pack_16MiB");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.sample_size(10);
    g.bench_function("build", |b| {
        b.iter(|| {
            let mut w = PackWriter::new(&keys, &repo)?;
            for blob in &blobs {
                let _ = w.add(blob);
            }
            w.finish(&keys, &repo)
        })
    });
    let Ok(mut w) = PackWriter::new(&keys, &repo) else {
        return;
    };
    for blob in &blobs {
        let _ = w.add(blob);
    }
    if let Ok(finished) = w.finish(&keys, &repo) {
        g.bench_function("verify_before_upload", |b| {
            b.iter(|| pack::verify(&keys, &repo, &finished))
        });
    }
    g.finish();
}

/// Lookups in an index cache of 200 000 blobs (a small repository; the
/// scale benchmark covers 10 million): hits, as for unchanged chunks of a
/// nightly backup, and misses, as for new ones.
fn index_lookups(c: &mut Criterion) {
    let Ok(cache) = IndexCache::temporary() else {
        return;
    };
    let keys = keys();
    let n = 200_000u32;
    let packs: Vec<IndexPack> = (0..n / 2_000)
        .map(|p| {
            let blobs = (0..2_000u32)
                .map(|i| BlobEntry {
                    id: keys.chunk_id(&(p * 2_000 + i).to_le_bytes()),
                    blob_type: BlobType::Data,
                    compression: compress::Compression::Zstd,
                    offset: i * 4_000,
                    length: 4_000,
                    raw_length: 8_192,
                    session: false,
                })
                .collect();
            IndexPack::live(Id::of_bytes(&p.to_le_bytes()), blobs)
        })
        .collect();
    if cache.add_index(&Id::of_bytes(b"index"), &packs).is_err() {
        return;
    }
    let Ok(reader) = cache.reader() else { return };
    let hits: Vec<Id> = (0..1_000u32)
        .map(|i| keys.chunk_id(&(i * 197 % n).to_le_bytes()))
        .collect();
    let misses: Vec<Id> = (0..1_000u32)
        .map(|i| keys.chunk_id(&(n + i).to_le_bytes()))
        .collect();
    let mut g = c.benchmark_group("index_lookup_200k");
    g.throughput(Throughput::Elements(1_000));
    g.bench_function("hits", |b| {
        b.iter(|| {
            hits.iter()
                .filter(|id| reader.contains_live(id).unwrap_or(false))
                .count()
        })
    });
    g.bench_function("misses", |b| {
        b.iter(|| {
            misses
                .iter()
                .filter(|id| reader.contains_live(id).unwrap_or(false))
                .count()
        })
    });
    g.finish();
}

/// Decoding a stored blob for a restore: open, decompress, check the ID.
fn restore_decode(c: &mut Criterion) {
    let keys = keys();
    let repo = Id::of_bytes(b"bench");
    let chunk = dump_like(8 * 1024);
    let id = keys.chunk_id(&chunk);
    let Ok(blob) = pack::encode_blob(&keys, &repo, BlobType::Data, id, &chunk, 1) else {
        return;
    };
    let entry = BlobEntry {
        id,
        blob_type: BlobType::Data,
        compression: blob.compression,
        offset: 0,
        length: blob.sealed.len() as u32,
        raw_length: blob.raw_length,
        session: false,
    };
    let mut g = c.benchmark_group("restore_8KiB_chunk");
    g.throughput(Throughput::Bytes(chunk.len() as u64));
    g.bench_function("decode_blob_in_place", |b| {
        b.iter_batched_ref(
            || blob.sealed.clone(),
            |sealed| pack::decode_blob_in_place(&keys, &repo, &entry, sealed, &repo),
            criterion::BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(
    benches,
    chunking,
    per_chunk,
    packs,
    index_lookups,
    restore_decode
);
criterion_main!(benches);
