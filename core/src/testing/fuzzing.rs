//! Entry points for the fuzz targets in `fuzz/` and for the test that
//! replays their corpora. Each takes arbitrary bytes and must never panic,
//! hang or allocate without bound; errors are the expected outcome.

use crate::chunk::chunker::{Chunker, ChunkerParams};
use crate::crypto::{Keys, MasterKey};
use crate::format::keyfile;
use crate::format::snapshot::Snapshot;
use crate::format::tree::{self, Tree};
use crate::format::{self, ObjectType};
use crate::format::{config, index, pack};
use crate::id::Id;

/// The fixed key material the targets decode under.
pub fn fixed_keys() -> (Keys, Id) {
    (
        Keys::derive(&MasterKey::from_bytes([0x5a; 32])),
        Id::from_bytes([0xa5; 32]),
    )
}

/// Object headers and whole sealed objects of every type.
pub fn object(data: &[u8]) {
    let (keys, repo) = fixed_keys();
    for ty in [
        ObjectType::Config,
        ObjectType::Key,
        ObjectType::Pack,
        ObjectType::Index,
        ObjectType::Snapshot,
    ] {
        let _ = format::check_header(data, ty, "fuzz");
        let key = if ty == ObjectType::Index {
            keys.index()
        } else {
            keys.data()
        };
        let _ = format::open_object(key, &repo, ty, data, 1 << 20, "fuzz");
        let _ = format::open_data_object(&keys, &repo, ty, data, 1 << 20, "fuzz");
    }
}

/// The compression frame of sealed payloads (zstd bombs live here).
pub fn frame(data: &[u8]) {
    let _ = format::unframe_payload(data, 1 << 20);
}

/// Key files: parsing and KDF bounds. Derivation runs only for tiny
/// parameters, so the fuzzer stays fast.
pub fn key_file(data: &[u8]) {
    let (keys, repo) = fixed_keys();
    let _ = keyfile::info(data, &repo, &keys, "fuzz");
    if let Ok(params) = keyfile::kdf_params(data, "fuzz") {
        if params.check().is_ok() && params.memory_kib <= 64 && params.iterations <= 1 {
            let _ = keyfile::open(data, &repo, b"fuzz", "fuzz");
        }
    }
}

/// The config object.
pub fn config(data: &[u8]) {
    let (keys, _) = fixed_keys();
    let _ = config::repo_id(data);
    let _ = config::decode(data, keys.data());
}

/// Whole packs: trailer, entries, every blob.
pub fn pack(data: &[u8]) {
    let (keys, repo) = fixed_keys();
    let id = Id::of_bytes(data);
    // The tail of a larger pack, as `check` reads it with a range read.
    let claimed = (data.len() as u64).saturating_add(u64::from(data.first().copied().unwrap_or(0)));
    if let Ok(entries) = pack::open_trailer(&keys, &repo, data, claimed, &id) {
        let _ = pack::expected_pack_len(&entries);
    }
    if let Ok((entries, keys)) = pack::read_trailer(&keys, &repo, data, &id) {
        let _ = pack::expected_pack_len(&entries);
        let _ = pack::entries_digest(&entries);
        let entries_copy = entries.clone();
        for e in entries {
            if let Some(sealed) = data.get(e.offset as usize..e.end() as usize) {
                let _ = pack::decode_blob(&keys, &repo, &e, sealed, &id);
                // A delta whose base is in the same pack (as in the seed).
                let base = e
                    .compression
                    .base()
                    .and_then(|b| entries_copy.iter().find(|x| x.id == b))
                    .and_then(|b| {
                        data.get(b.offset as usize..b.end() as usize)
                            .map(|s| (b, s))
                    })
                    .and_then(|(b, s)| pack::decode_blob(&keys, &repo, b, s, &id).ok());
                if let Some(base) = base {
                    let mut copy = sealed.to_vec();
                    let _ = pack::decode_delta_in_place(&keys, &repo, &e, &mut copy, &id, &base);
                }
            }
        }
    }
    let _ = pack::decode_entries(data);
}

/// Delta frames against a base: `raw length (u32 LE) ‖ base length (u32
/// LE) ‖ base ‖ frame`. The output stays bounded by the stated length
/// (at most 1 MiB here) whatever the frame says.
pub fn delta(data: &[u8]) {
    let u32_at = |at: usize| {
        data.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let (Some(raw), Some(base_len)) = (u32_at(0), u32_at(4)) else {
        return;
    };
    let rest = &data[8..];
    let base_len = base_len.min(rest.len());
    let (base, frame) = rest.split_at(base_len);
    if let Ok(out) = crate::format::compress::decompress_delta(frame, base, raw, 1 << 20) {
        assert_eq!(out.len(), raw);
    }
}

/// Index payloads (after decryption) and whole index objects.
pub fn index(data: &[u8]) {
    let (keys, repo) = fixed_keys();
    let _ = index::decode_payload(data);
    let _ = index::decode(&keys, &repo, data, &Id::default());
}

/// Tree JSON and chunk-list blobs.
pub fn tree(data: &[u8]) {
    if let Ok(t) = Tree::decode(data) {
        for n in &t.nodes {
            let _ = n.name_bytes();
            let _ = n.target_bytes();
        }
    }
    let _ = tree::decode_chunk_list(data);
}

/// Snapshot JSON (after decryption) and whole snapshot objects; drill
/// record JSON (sealed the same way, §11).
pub fn snapshot(data: &[u8]) {
    let (keys, repo) = fixed_keys();
    let _ = serde_json::from_slice::<Snapshot>(data);
    let _ = serde_json::from_slice::<crate::repo::drill_record::DrillRecord>(data);
    let _ = Snapshot::decode(&keys, &repo, data, &Id::default());
}

/// The chunker: chunks cover the input and respect the size bounds.
pub fn chunker(data: &[u8]) {
    let params = ChunkerParams {
        min_size: 64,
        avg_size: 256,
        max_size: 1024,
        ..ChunkerParams::default()
    };
    let seed = data.first().copied().unwrap_or(0) as u64;
    let mut c = Chunker::new(data, &params, seed);
    let mut total = 0usize;
    while let Ok(Some(chunk)) = c.next_chunk() {
        assert!(chunk.len() <= 1024 && !chunk.is_empty());
        total += chunk.len();
    }
    assert_eq!(total, data.len());
}

/// A fuzz target: arbitrary bytes in, no panic out.
pub type Target = fn(&[u8]);

/// Dump inspection: recognising and checking a backed-up stream never
/// panics, however it is split into reads.
pub fn dump(data: &[u8]) {
    let step = usize::from(data.first().copied().unwrap_or(0)).max(1) * 97;
    let mut i = crate::pg::dumpcheck::Inspector::without_tools();
    for piece in data.chunks(step) {
        i.feed(piece);
    }
    if let Ok(found) = i.finish("fuzz.sql") {
        if let Some(info) = found.info {
            let _ = info.describe();
        }
    }
}

/// Every target by name, for the corpus replay test.
pub const TARGETS: &[(&str, Target)] = &[
    ("object", object),
    ("frame", frame),
    ("key_file", key_file),
    ("config", config),
    ("pack", pack),
    ("index", index),
    ("tree", tree),
    ("snapshot", snapshot),
    ("chunker", chunker),
    ("dump", dump),
    ("delta", delta),
];

/// Valid inputs for every target, made under [`fixed_keys`]: the seeds of
/// the fuzz corpora, so fuzzing starts past authentication.
pub fn seeds() -> crate::error::Result<Vec<(&'static str, Vec<u8>)>> {
    use crate::format::snapshot::{SnapshotSource, SnapshotSummary, SourceKind};
    use crate::format::tree::{Node, NodeKind};
    use crate::time::SnapshotTime;

    let (keys, repo) = fixed_keys();
    let master = MasterKey::from_bytes([0x5a; 32]);
    let mut out: Vec<(&'static str, Vec<u8>)> = Vec::new();

    let cfg = config::RepoConfig::new("2026-11-27T00:00:00Z".into());
    out.push(("config", config::encode(&cfg, &repo, keys.data())?));
    let tiny = keyfile::KdfParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };
    let info = keyfile::KeyInfo {
        created: "2026-11-27T00:00:00Z".into(),
        host: "fuzz".into(),
        user: "fuzz".into(),
        kind: "full".into(),
    };
    out.push((
        "key_file",
        keyfile::create(&master, &repo, b"fuzz", tiny, &info)?,
    ));

    let mut node = Node::new(std::ffi::OsStr::new("shop.sql"), NodeKind::File);
    let chunk = b"COPY public.orders (id) FROM stdin;\n1\n2\n\\.\n".to_vec();
    node.content = vec![keys.chunk_id(&chunk)];
    node.size = chunk.len() as u64;
    node.mode = 0o644;
    let mut dir = Node::new(std::ffi::OsStr::new("etc"), NodeKind::Dir);
    dir.subtree = Some(Id::from_bytes([1; 32]));
    let mut link = Node::new(std::ffi::OsStr::new("link"), NodeKind::Symlink);
    link.target = Some("etc".into());
    let mut t = Tree {
        nodes: vec![node, dir, link],
    };
    let tree_json = t.encode()?;
    out.push(("tree", tree_json.clone()));
    out.push((
        "tree",
        tree::encode_chunk_list(&[Id::from_bytes([2; 32]); 3]),
    ));

    let mut w = pack::PackWriter::new(&keys, &repo)?;
    let data_id = keys.chunk_id(&chunk);
    w.add(&pack::encode_blob(
        &keys,
        &repo,
        pack::BlobType::Data,
        data_id,
        &chunk,
        3,
    )?)?;
    let tree_id = pack::blob_id(&keys, pack::BlobType::Tree, &tree_json);
    w.add(&pack::encode_blob(
        &keys,
        &repo,
        pack::BlobType::Tree,
        tree_id,
        &tree_json,
        3,
    )?)?;
    // A pack whose second blob is a delta of its first, so that the
    // targets reach delta decoding.
    let base = chunk.repeat(4);
    let long_edit = [base.as_slice(), b"4\n"].concat();
    let long_whole = pack::encode_blob(
        &keys,
        &repo,
        pack::BlobType::Data,
        keys.chunk_id(&long_edit),
        &long_edit,
        3,
    )?;
    let base_whole = pack::encode_blob(
        &keys,
        &repo,
        pack::BlobType::Data,
        keys.chunk_id(&base),
        &base,
        0,
    )?;
    let mut wd = pack::PackWriter::new(&keys, &repo)?;
    wd.add(&base_whole)?;
    let d = pack::encode_delta(
        &keys,
        &repo,
        &long_whole,
        &long_edit,
        (keys.chunk_id(&base), &base),
        3,
    )?
    .ok_or_else(|| crate::error::Error::invalid("the seed's delta is not smaller"))?;
    wd.add(&d)?;
    let with_delta = wd.finish(&keys, &repo)?;
    out.push((
        "index",
        index::encode_payload(&[index::IndexPack::live(
            with_delta.id,
            with_delta.entries.clone(),
        )])?,
    ));
    out.push(("pack", with_delta.bytes));
    if let Some(frame) = crate::format::compress::compress_delta(3, &base, &long_edit, usize::MAX) {
        let mut input = (long_edit.len() as u32).to_le_bytes().to_vec();
        input.extend_from_slice(&(base.len() as u32).to_le_bytes());
        input.extend_from_slice(&base);
        input.extend_from_slice(&frame);
        out.push(("delta", input));
    }

    let finished = w.finish(&keys, &repo)?;
    let ip = index::IndexPack::live(finished.id, finished.entries.clone());
    out.push(("index", index::encode_payload(std::slice::from_ref(&ip))?));
    out.push(("index", index::encode(&keys, &repo, &[ip])?));
    out.push(("pack", finished.bytes));

    let snap = Snapshot {
        id: Id::default(),
        time: SnapshotTime::parse_rfc3339("2026-11-27T03:00:00+01:00")?,
        tree: tree_id,
        paths: vec!["/shop.sql".into()],
        hostname: "db1".into(),
        username: "postgres".into(),
        tags: vec!["nightly".into()],
        parent: None,
        source: SnapshotSource {
            kind: SourceKind::Command,
            stdin_filename: Some("shop.sql".into()),
            command: Some("pg_dump shop".into()),
            exit_status: Some(0),
            dump: Some(crate::format::snapshot::DumpInfo {
                format: "pg_dump-plain".into(),
                database: None,
                server_version: Some("16.4".into()),
                dump_version: Some("16.4".into()),
                compression: None,
                validated: true,
                ..crate::format::snapshot::DumpInfo::default()
            }),
            empty_allowed: false,
        },
        original: None,
        program_version: "cairn fuzz".into(),
        summary: SnapshotSummary::default(),
        future_dated: false,
    };
    let json =
        serde_json::to_vec(&snap).map_err(|e| crate::error::Error::invalid(e.to_string()))?;
    out.push(("snapshot", snap.encode(&keys, &repo, 3)?));
    out.push(("snapshot", json.clone()));
    let drill = crate::repo::drill_record::DrillRecord {
        id: Id::default(),
        snapshot: Id::from_bytes([3; 32]),
        hostname: snap.hostname.clone(),
        paths: snap.paths.clone(),
        tags: snap.tags.clone(),
        snapshot_time: snap.time,
        time: snap.time,
        drill_host: "fuzz".into(),
        ok: false,
        error: Some("restored /shop.sql differs".into()),
        seconds: 1.5,
        restore_seconds: 1.0,
        verify_seconds: 0.5,
        recovery_seconds: None,
        files: 1,
        bytes: 42,
        dump_check: Some("complete".into()),
        program_version: "cairn fuzz".into(),
    };
    out.push((
        "snapshot",
        serde_json::to_vec(&drill).map_err(|e| crate::error::Error::invalid(e.to_string()))?,
    ));
    out.push(("object", snap.encode(&keys, &repo, 3)?));
    // A write-only client's snapshot and pack (key scheme 1, key blocks
    // sealed to the fixed repository's public key).
    let writer = Keys::for_writer(
        &crate::crypto::WriterKeys::derive(&master),
        &[0x77; 32],
        &crate::crypto::RepoKeyPair::derive(&master).public(),
    );
    out.push(("snapshot", snap.encode(&writer, &repo, 3)?));
    out.push(("object", snap.encode(&writer, &repo, 3)?));
    let mut ww = pack::PackWriter::new(&writer, &repo)?;
    let wid = writer.chunk_id(b"written by a write-only key");
    ww.add(&pack::encode_blob(
        &writer,
        &repo,
        pack::BlobType::Data,
        wid,
        b"written by a write-only key",
        3,
    )?)?;
    out.push(("pack", ww.finish(&writer, &repo)?.bytes));
    out.push(("frame", format::frame_payload(3, &json)));
    out.push(("frame", format::frame_payload(0, b"raw")));
    out.push(("chunker", json));
    let plain = "--\n-- PostgreSQL database dump\n--\n\n\
                 -- Dumped from database version 16.4\n-- Dumped by pg_dump version 16.4\n\n\
                 SET x = 0;\n\n--\n-- PostgreSQL database dump complete\n--\n\n";
    out.push(("dump", plain.as_bytes().to_vec()));
    out.push((
        "dump",
        b"-- MySQL dump 10.13\n-- Host: h    Database: shop\n-- Server version\t8.0\n\n-- Dump completed on 2026-11-27\n".to_vec(),
    ));
    let mut tar = vec![0u8; 2048];
    tar[..8].copy_from_slice(b"toc.dat\0");
    tar[257..262].copy_from_slice(b"ustar");
    out.push(("dump", tar));
    out.push(("dump", b"PGDMP\x01\x0e\x00\x04\x08\x01".to_vec()));
    Ok(out)
}
