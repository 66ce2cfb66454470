//! Throughput of the building blocks of a backup: chunking, chunk IDs,
//! compression, sealing, and whole packs (build + verify).
//!
//! `cargo bench --bench throughput`; under `cargo test` each runs once.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

use cairn_core::chunker::{Chunker, ChunkerParams};
use cairn_core::compress;
use cairn_core::crypto::{Keys, MasterKey};
use cairn_core::id::Id;
use cairn_core::pack::{self, BlobType, PackWriter};

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
    for level in [1, 3, 9] {
        g.bench_function(BenchmarkId::new("zstd_compress", level), |b| {
            b.iter(|| compress::compress(level, &chunk))
        });
    }
    let (c3, packed) = compress::compress(3, &chunk);
    g.bench_function("zstd_decompress", |b| {
        b.iter(|| compress::decompress(c3, &packed, chunk.len(), 1 << 20))
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
            let mut w = PackWriter::new();
            for blob in &blobs {
                let _ = w.add(blob);
            }
            w.finish(&keys, &repo)
        })
    });
    let mut w = PackWriter::new();
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

criterion_group!(benches, chunking, per_chunk, packs);
criterion_main!(benches);
