//! Reads the facts the content rules need ([`PackFacts`]) out of a pushed pack, with
//! gitoxide's pack and object parsers: every commit and its parents, and the objects over
//! `maxBlobSize` with their paths. Blocking and CPU-bound: run it off the async runtime.
//!
//! Memory stays bounded whatever the pack holds: commits and trees are decoded (with an
//! allocation limit), blobs are only inflated in 64 KiB steps to learn their size and, when
//! they are over the limit, their id. Deltas against objects outside the pack (a thin
//! pack's bases, which the server has) cannot be resolved here; such an object's size still
//! comes from its delta header.

use std::collections::HashMap;

use gitgate_policy::{LargeObject, ObjectId, PackFacts};
use gix_object::Kind;
use gix_pack::data::{self, entry::Header};

/// The object format of the packs gitgate reads.
const HASH: gix_hash::Kind = gix_hash::Kind::Sha1;
/// Inflate step for objects that are not kept in memory.
const STEP: usize = 64 * 1024;
/// The largest commit, tree or tag gitgate decodes; larger ones fail the read.
pub(crate) const MAX_DECODED: usize = 64 << 20;

/// Why a pack could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the pushed pack: {0}")]
pub(crate) struct PackError(String);

fn fail(what: impl std::fmt::Display) -> PackError {
    PackError(what.to_string())
}

/// What one pack entry turned out to be.
enum Seen {
    /// A commit, tree or tag, decoded.
    Decoded(Kind, Vec<u8>),
    /// A blob, or a delta whose base is outside the pack: only its size (and id, when known
    /// and wanted) matter.
    Sized { size: u64, id: Option<ObjectId> },
}

/// Reads `pack` (a whole pack: header, entries, trailer) and returns its facts; objects
/// over `max_blob` bytes are listed.
pub(crate) fn facts<T: gix_pack::FileData>(
    pack: &data::File<T>,
    max_blob: Option<u64>,
) -> Result<PackFacts, PackError> {
    verify_trailer(pack)?;
    let mut inflate = gix_zlib::Inflate::default();
    let mut by_id: HashMap<gix_hash::ObjectId, data::Entry> = HashMap::new();
    let mut facts = PackFacts {
        pack_bytes: pack.data_len() as u64,
        ..PackFacts::default()
    };
    let mut trees: HashMap<ObjectId, Vec<(String, bool, ObjectId)>> = HashMap::new();
    let mut roots: Vec<ObjectId> = Vec::new();
    let mut offset = data::header::SIZE as u64;
    for _ in 0..pack.num_objects() {
        let entry = pack.entry(offset).map_err(fail)?;
        let kind = kind_of(pack, &entry, &by_id)?;
        let (seen, consumed) = match kind {
            Some(kind @ (Kind::Commit | Kind::Tree | Kind::Tag)) => {
                let mut out = Vec::new();
                let resolve = |id: &gix_hash::oid, _: &mut Vec<u8>| {
                    Ok(by_id
                        .get(id)
                        .cloned()
                        .map(gix_pack::data::decode::entry::ResolvedBase::InPack))
                };
                pack.decode_entry(
                    entry.clone(),
                    &mut out,
                    &mut inflate,
                    &resolve,
                    &mut gix_pack::cache::Never,
                )
                .map_err(fail)?;
                let consumed = inflate_len(pack, &entry, &mut inflate, |_| {})?;
                (Seen::Decoded(kind, out), consumed)
            }
            _ => sized(pack, &entry, kind, max_blob, &mut inflate)?,
        };
        match seen {
            Seen::Decoded(kind, bytes) => {
                let id = gix_object::compute_hash(HASH, kind, &bytes).map_err(fail)?;
                let ours = convert(&id)?;
                match kind {
                    Kind::Commit => {
                        let commit =
                            gix_object::CommitRef::from_bytes(&bytes, HASH).map_err(fail)?;
                        roots.push(convert(&commit.tree())?);
                        let parents = commit
                            .parents()
                            .map(|p| convert(&p))
                            .collect::<Result<_, _>>()?;
                        facts.commits.insert(ours, parents);
                    }
                    Kind::Tree if max_blob.is_some() => {
                        trees.insert(ours, tree_entries(&bytes)?);
                    }
                    _ => {}
                }
                by_id.insert(id, entry.clone());
            }
            Seen::Sized { size, id } => {
                if max_blob.is_some_and(|max| size > max) {
                    facts.large_objects.push(LargeObject {
                        id,
                        size,
                        path: None,
                    });
                }
            }
        }
        offset = entry.data_offset + consumed;
    }
    if offset != pack.pack_end() as u64 {
        return Err(fail(format!(
            "{} bytes after the last object",
            pack.pack_end() as u64 - offset
        )));
    }
    name_paths(&mut facts.large_objects, &trees, &roots);
    facts.large_objects.sort_by(|a, b| b.size.cmp(&a.size));
    Ok(facts)
}

/// Checks the pack's trailing checksum against its contents.
fn verify_trailer<T: gix_pack::FileData>(pack: &data::File<T>) -> Result<(), PackError> {
    let body = pack
        .entry_slice(0..pack.pack_end() as u64)
        .ok_or_else(|| fail("truncated"))?;
    let mut hasher = gix_hash::hasher(HASH);
    hasher.update(body);
    let actual = hasher.try_finalize().map_err(fail)?;
    if actual != pack.checksum() {
        return Err(fail("its checksum does not match its contents"));
    }
    Ok(())
}

/// The kind an entry decodes to, following offset deltas within the pack and reference
/// deltas to objects already seen; `None` when the chain leaves the pack.
fn kind_of<T: gix_pack::FileData>(
    pack: &data::File<T>,
    entry: &data::Entry,
    by_id: &HashMap<gix_hash::ObjectId, data::Entry>,
) -> Result<Option<Kind>, PackError> {
    let mut cursor = entry.clone();
    for _ in 0..=pack.num_objects() {
        cursor = match cursor.header {
            Header::Commit => return Ok(Some(Kind::Commit)),
            Header::Tree => return Ok(Some(Kind::Tree)),
            Header::Blob => return Ok(Some(Kind::Blob)),
            Header::Tag => return Ok(Some(Kind::Tag)),
            Header::OfsDelta { base_distance } => {
                let base = cursor
                    .checked_base_pack_offset(base_distance)
                    .ok_or_else(|| fail("a delta points before the start of the pack"))?;
                pack.entry(base).map_err(fail)?
            }
            Header::RefDelta { base_id } => match by_id.get(&base_id) {
                Some(base) => base.clone(),
                None => return Ok(None),
            },
        };
    }
    Err(fail("a delta chain loops"))
}

/// Size (and, when over `max_blob` and cheaply known, id) of a blob or of an object whose
/// delta base is outside the pack; returns the compressed bytes the entry takes.
fn sized<T: gix_pack::FileData>(
    pack: &data::File<T>,
    entry: &data::Entry,
    kind: Option<Kind>,
    max_blob: Option<u64>,
    inflate: &mut gix_zlib::Inflate,
) -> Result<(Seen, u64), PackError> {
    if !entry.header.is_delta() {
        let size = entry.decompressed_size;
        if max_blob.is_some_and(|max| size > max) {
            let mut hasher = gix_hash::hasher(HASH);
            hasher.update(&gix_object::encode::loose_header(
                kind.unwrap_or(Kind::Blob),
                size,
            ));
            let consumed = inflate_len(pack, entry, inflate, |chunk| hasher.update(chunk))?;
            let id = convert(&hasher.try_finalize().map_err(fail)?)?;
            return Ok((Seen::Sized { size, id: Some(id) }, consumed));
        }
        let consumed = inflate_len(pack, entry, inflate, |_| {})?;
        return Ok((Seen::Sized { size, id: None }, consumed));
    }
    // A delta starts with two sizes (base, result), each a little-endian base-128 number.
    let mut head = Vec::with_capacity(32);
    let consumed = inflate_len(pack, entry, inflate, |chunk| {
        let room = 32 - head.len().min(32);
        head.extend_from_slice(&chunk[..chunk.len().min(room)]);
    })?;
    let (_, rest) = varint(&head).ok_or_else(|| fail("a delta header is truncated"))?;
    let (size, _) = varint(rest).ok_or_else(|| fail("a delta header is truncated"))?;
    Ok((Seen::Sized { size, id: None }, consumed))
}

/// Inflates `entry`'s data in steps, handing each piece to `sink`; returns how many
/// compressed bytes it took.
fn inflate_len<T: gix_pack::FileData>(
    pack: &data::File<T>,
    entry: &data::Entry,
    inflate: &mut gix_zlib::Inflate,
    mut sink: impl FnMut(&[u8]),
) -> Result<u64, PackError> {
    let input = pack
        .entry_slice(entry.data_offset..pack.pack_end() as u64)
        .ok_or_else(|| fail("an object runs past the end of the pack"))?;
    inflate.reset();
    let mut out = vec![0u8; STEP.min(entry.decompressed_size as usize + 1).max(1)];
    let (mut read, mut written) = (0usize, 0u64);
    loop {
        let (status, used, produced) = inflate.once(&input[read..], &mut out).map_err(fail)?;
        read += used;
        written += produced as u64;
        sink(&out[..produced]);
        if written > entry.decompressed_size {
            return Err(fail("an object inflates to more than its header says"));
        }
        match status {
            gix_zlib::Status::StreamEnd => break,
            _ if used == 0 && produced == 0 => {
                return Err(fail("an object's compressed data is truncated"));
            }
            _ => {}
        }
    }
    if written != entry.decompressed_size {
        return Err(fail("an object inflates to less than its header says"));
    }
    Ok(read as u64)
}

/// A delta header number: 7 bits per byte, least significant first.
fn varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut value = 0u64;
    for (i, byte) in bytes.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, &bytes[i + 1..]));
        }
    }
    None
}

/// A tree's entries: name, whether it is a subtree, id.
fn tree_entries(bytes: &[u8]) -> Result<Vec<(String, bool, ObjectId)>, PackError> {
    let tree = gix_object::TreeRef::from_bytes(bytes, HASH).map_err(fail)?;
    tree.entries
        .iter()
        .map(|e| {
            Ok((
                e.filename.to_string(),
                e.mode.is_tree(),
                convert(&e.oid.to_owned())?,
            ))
        })
        .collect()
}

/// Fills in the path of each large object that a pushed commit's tree (as far as the
/// pack holds its subtrees) names.
fn name_paths(
    large: &mut [LargeObject],
    trees: &HashMap<ObjectId, Vec<(String, bool, ObjectId)>>,
    roots: &[ObjectId],
) {
    if large.iter().all(|o| o.id.is_none()) {
        return;
    }
    let mut paths: HashMap<&ObjectId, String> = HashMap::new();
    let mut stack: Vec<(&ObjectId, String)> = roots.iter().map(|r| (r, String::new())).collect();
    let mut visited = std::collections::HashSet::new();
    while let Some((tree, prefix)) = stack.pop() {
        if !visited.insert(tree) {
            continue;
        }
        for (name, is_tree, id) in trees.get(tree).into_iter().flatten() {
            let path = format!("{prefix}{name}");
            if *is_tree {
                stack.push((id, format!("{path}/")));
            } else {
                paths.entry(id).or_insert(path);
            }
        }
    }
    for object in large.iter_mut() {
        object.path = object.id.as_ref().and_then(|id| paths.get(id)).cloned();
    }
}

fn convert(id: &gix_hash::ObjectId) -> Result<ObjectId, PackError> {
    ObjectId::parse(&id.to_hex().to_string()).map_err(fail)
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::process::{Command, Stdio};

    use super::*;

    fn git(dir: &Path, args: &[&str], input: Option<&[u8]>) -> Vec<u8> {
        let mut child = Command::new("git")
            .current_dir(dir)
            .args(args)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", dir)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("git");
        let mut stdin = child.stdin.take().unwrap();
        if let Some(input) = input {
            std::io::Write::write_all(&mut stdin, input).unwrap();
        }
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "git {args:?}");
        out.stdout
    }

    fn rev(dir: &Path, what: &str) -> ObjectId {
        let out = git(dir, &["rev-parse", what], None);
        ObjectId::parse(String::from_utf8(out).unwrap().trim()).unwrap()
    }

    fn read(bytes: Vec<u8>, max_blob: Option<u64>) -> Result<PackFacts, PackError> {
        let pack = data::File::from_data(bytes, "pushed.pack".into(), HASH).map_err(fail)?;
        facts(&pack, max_blob)
    }

    /// A repository with a first commit, then one that edits a file and adds a 3 MB
    /// incompressible blob under `media/`.
    fn repository() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        git(d, &["init", "-q", "-b", "main"], None);
        let text: String = (0..2000).map(|i| format!("line {i}\n")).collect();
        std::fs::write(d.join("a.txt"), &text).unwrap();
        git(d, &["add", "."], None);
        git(d, &["commit", "-qm", "one"], None);
        std::fs::write(d.join("a.txt"), format!("{text}one more\n")).unwrap();
        std::fs::create_dir(d.join("media")).unwrap();
        let mut noise = vec![0u8; 3 << 20];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for byte in &mut noise {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *byte = x as u8;
        }
        std::fs::write(d.join("media/big.bin"), noise).unwrap();
        git(d, &["add", "."], None);
        git(d, &["commit", "-qm", "two"], None);
        dir
    }

    #[test]
    fn reads_commits_and_large_objects_of_a_thin_pack() {
        let dir = repository();
        let d = dir.path();
        // What `git push` sends for main: HEAD~1 -> HEAD, thin, deltas against HEAD~1.
        let pack = git(
            d,
            &["pack-objects", "--thin", "--stdout", "--revs", "-q"],
            Some(b"HEAD\n^HEAD~1\n"),
        );
        let facts = read(pack.clone(), Some(1 << 20)).unwrap();
        assert_eq!(facts.pack_bytes, pack.len() as u64);
        assert_eq!(
            facts.commits,
            HashMap::from([(rev(d, "HEAD"), vec![rev(d, "HEAD~1")])])
        );
        assert_eq!(
            facts.large_objects,
            [LargeObject {
                id: Some(rev(d, "HEAD:media/big.bin")),
                size: 3 << 20,
                path: Some("media/big.bin".into()),
            }]
        );
        // Without a limit nothing is listed; with a higher one neither.
        assert!(read(pack.clone(), None).unwrap().large_objects.is_empty());
        assert!(read(pack, Some(4 << 20)).unwrap().large_objects.is_empty());
    }

    #[test]
    fn reads_a_whole_history_with_deltas() {
        let dir = repository();
        let d = dir.path();
        let pack = git(
            d,
            &["pack-objects", "--stdout", "--revs", "-q"],
            Some(b"HEAD\n"),
        );
        let facts = read(pack, Some(1 << 20)).unwrap();
        assert_eq!(facts.commits.len(), 2);
        assert_eq!(facts.commits[&rev(d, "HEAD~1")], Vec::<ObjectId>::new());
        assert_eq!(facts.large_objects.len(), 1);
    }

    #[test]
    fn refuses_damaged_packs() {
        let dir = repository();
        let pack = git(
            dir.path(),
            &["pack-objects", "--stdout", "--revs", "-q"],
            Some(b"HEAD\n"),
        );
        let mut flipped = pack.clone();
        let middle = flipped.len() / 2;
        flipped[middle] ^= 1;
        let error = read(flipped, None).unwrap_err().to_string();
        assert!(error.contains("checksum does not match"), "{error}");
        let error = read(pack[..pack.len() / 2].to_vec(), None).unwrap_err();
        assert!(error.to_string().starts_with("cannot read the pushed pack"));
    }

    #[test]
    fn delta_header_numbers() {
        assert_eq!(varint(&[0x05, 0x01]), Some((5, &[0x01][..])));
        assert_eq!(varint(&[0x80 | 0x10, 0x01]), Some((0x90, &[][..])));
        assert_eq!(varint(&[0x80, 0x80]), None);
    }
}
