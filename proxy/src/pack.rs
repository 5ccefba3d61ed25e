//! Reads the facts the content rules need ([`PackFacts`]) out of a pushed pack, with
//! gitoxide's pack and object parsers: every commit and its parents, and the objects over
//! `maxBlobSize` with their paths. Blocking and CPU-bound: run it off the async runtime.
//!
//! Memory stays bounded whatever the pack holds. A first pass streams the whole pack
//! through gix's entry iterator, which checks the trailing checksum and lists the
//! entries without keeping their data. Then only commits, trees and tags (and the deltas
//! they are made of) are decoded, through a memory map that touches just their pages
//! (with an allocation limit); blobs are read with positioned reads and inflated in 64 KiB
//! steps, and only when they are over the limit, to learn their id. Deltas against
//! objects outside the pack (a thin pack's bases, which the server has) cannot be
//! resolved here; such an object's size still comes from its delta header.

use std::collections::{HashMap, HashSet};

use gitgate_policy::{LargeObject, ObjectFormat, ObjectId, PackFacts, TreeEntry};
use gix_object::Kind;
use gix_pack::data::{self, entry::Header};

/// The hash of a push's objects, from its object format.
pub(crate) fn hash_kind(format: ObjectFormat) -> gix_hash::Kind {
    match format {
        ObjectFormat::Sha1 => gix_hash::Kind::Sha1,
        ObjectFormat::Sha256 => gix_hash::Kind::Sha256,
    }
}
/// Inflate and read step for objects that are not kept in memory.
const STEP: usize = 64 * 1024;
/// The largest commit, tree or tag gitgate decodes; larger ones fail the read.
const MAX_DECODED: usize = 64 << 20;
/// The most bytes one pack's decoding may produce and work through (objects and the
/// delta chains applied to make them), whatever the pack's size: bounds the memory and
/// CPU a crafted pack of small deltas can cost.
const DECODE_BUDGET: u64 = 512 << 20;

/// Takes the memory that holding one more thing read out of a pack costs, or refuses it
/// (past the push's share of what checks may hold).
pub(crate) type Charge<'a> = &'a mut dyn FnMut(u64) -> Result<(), PackError>;

/// What holding each thing read out of a pack costs in memory, roughly: the value, its
/// heap allocation, and the growth of the collection holding it (twice the value).
mod cost {
    use std::mem::size_of;

    /// gitgate's object id: a `String` and its heap block of hex digits.
    pub(super) const ID: u64 = (size_of::<super::ObjectId>() + 80) as u64;
    /// An entry of the first pass's list.
    pub(super) const LISTED: u64 = 2 * size_of::<super::Listed>() as u64;
    /// A large object found.
    pub(super) const LARGE: u64 = 2 * size_of::<super::LargeObject>() as u64 + ID;
    /// A listed entry's kind, remembered by offset.
    pub(super) const KIND: u64 =
        2 * size_of::<(u64, Result<gix_object::Kind, gix_hash::ObjectId>)>() as u64;
    /// A decoded object's entry, remembered by id.
    pub(super) const SEEN: u64 =
        2 * size_of::<(gix_hash::ObjectId, gix_pack::data::Entry)>() as u64;
    /// A tree, or commit, or tag, as a map entry (beside what it holds).
    pub(super) const OBJECT: u64 = 2 * (ID + 48);
    /// One entry of a tree kept whole, beside its name.
    pub(super) const TREE_ENTRY: u64 = size_of::<super::TreeEntry>() as u64 + ID + 32;
}

/// Why a pack could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the pushed pack: {0}")]
pub(crate) struct PackError(String);

pub(crate) fn fail(what: impl std::fmt::Display) -> PackError {
    PackError(what.to_string())
}

/// Positioned reads of the pack's bytes, for objects streamed without a memory map.
pub(crate) trait ReadAt {
    /// Fills `buf` from `offset` as far as the data goes; returns the bytes read.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize>;

    /// Told by the first pass that the bytes before `end` belong to the pack's objects:
    /// none of them is the trailing checksum or anything after it.
    fn objects_reach(&self, _end: u64) {}
}

impl ReadAt for bytes::Bytes {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.len());
        let n = buf.len().min(self.len() - start);
        buf[..n].copy_from_slice(&self[start..start + n]);
        Ok(n)
    }
}

impl ReadAt for std::fs::File {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(self, buf, offset)
    }
}

/// A pack held in memory, as the second pass reads it.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn in_memory(
    bytes: &bytes::Bytes,
    hash: gix_hash::Kind,
) -> Result<data::File<bytes::Bytes>, PackError> {
    data::File::from_data(bytes.clone(), "pushed pack".into(), hash).map_err(fail)
}

/// An entry the second pass decodes or follows: not an undeltified blob.
#[derive(Debug)]
struct Listed {
    header: Header,
    pack_offset: u64,
}

/// What to read out of a pack.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Wants {
    /// List objects over this size.
    pub(crate) max_blob: Option<u64>,
    /// Keep every tree (for the protected-paths diff).
    pub(crate) trees: bool,
    /// Keep every commit's signature and signed bytes.
    pub(crate) signatures: bool,
}

/// A pushed commit's signature material.
#[derive(Clone, Debug)]
pub(crate) struct SignedCommit {
    pub(crate) id: ObjectId,
    pub(crate) committer_email: String,
    /// The `gpgsig` header's value, if any.
    pub(crate) signature: Option<Vec<u8>>,
    /// Whether another signature header is left in `payload`.
    pub(crate) extra_signature: bool,
    /// The commit without its signature: what was signed.
    pub(crate) payload: Vec<u8>,
}

/// Trees from the server that a thin pack's deltas are made against, by id, in git's
/// format.
pub(crate) type Bases = HashMap<gix_hash::ObjectId, Vec<u8>>;

/// A pack's facts, and the bases of the deltas that could not be decoded (outside the
/// pack and the given bases: blobs or trees the server has).
#[derive(Debug, Default)]
pub(crate) struct Decoded {
    pub(crate) facts: PackFacts,
    pub(crate) unresolved: Vec<ObjectId>,
    /// With `wants.signatures`: every commit's signature material.
    pub(crate) signed: Vec<SignedCommit>,
}

/// What the first pass found: the entries to decode, and the large objects.
#[derive(Debug)]
pub(crate) struct Listing {
    listed: Vec<Listed>,
    large_objects: Vec<LargeObject>,
}

/// Reads the pack in memory and returns its facts; objects over `wants.max_blob` bytes
/// are listed.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn facts(
    bytes: &bytes::Bytes,
    wants: Wants,
    bases: &Bases,
    hash: gix_hash::Kind,
) -> Result<Decoded, PackError> {
    let unmetered = &mut |_| Ok(());
    let listing =
        list_stream(bytes, wants.max_blob, hash, unmetered)?.ok_or_else(|| fail("empty"))?;
    decode(in_memory(bytes, hash)?, &listing, wants, bases, unmetered)
}

/// The second pass: decodes the listed commits and trees of `pack` (memory-mapped, so
/// that only their pages are touched; with `bases` for a thin pack's deltas) under the
/// allocation limit, and returns the facts, charging what it holds to `charge`. Cheap to
/// repeat with more bases.
pub(crate) fn decode<T: gix_pack::FileData>(
    pack: data::File<T>,
    listing: &Listing,
    wants: Wants,
    bases: &Bases,
    charge: Charge,
) -> Result<Decoded, PackError> {
    let max_blob = wants.max_blob;
    let pack = &pack.with_alloc_limit_bytes(Some(MAX_DECODED));
    let hash = pack.object_hash();
    let mut inflate = gix_zlib::Inflate::default();
    let mut facts = PackFacts {
        pack_bytes: pack.data_len() as u64,
        large_objects: listing.large_objects.clone(),
        ..PackFacts::default()
    };
    let mut by_id: HashMap<gix_hash::ObjectId, data::Entry> = HashMap::new();
    let mut kinds: HashMap<u64, Result<Kind, gix_hash::ObjectId>> = HashMap::new();
    let mut unresolved = Vec::new();
    let mut signed = Vec::new();
    let mut budget = DECODE_BUDGET;
    let mut largest = 0;
    let keep_trees = max_blob.is_some() || wants.trees;
    for item in &listing.listed {
        // A delta against an object outside the pack and `bases` stays undecoded: a
        // commit or tree that matters then shows up missing to the rules, which deny.
        charge(cost::KIND)?;
        let kind = kind_of(pack, item, &by_id, bases, &mut kinds)?;
        let kind = match kind {
            Ok(kind @ (Kind::Commit | Kind::Tag)) => kind,
            Ok(Kind::Tree) if keep_trees => Kind::Tree,
            Ok(_) => continue,
            Err(base) => {
                charge(cost::ID)?;
                unresolved.push(convert(&base)?);
                continue;
            }
        };
        charge(cost::SEEN + cost::OBJECT)?;
        let entry = pack.entry(item.pack_offset).map_err(fail)?;
        // The object's buffers (its bytes, and the base and delta it was made from) live
        // only while it is read: the largest is charged once, for all of them, before
        // they are allocated (at the size its header or its delta's header gives).
        let size = object_size(pack, &entry, &mut inflate, &by_id, bases)?;
        if size > largest {
            charge(3 * (size - largest))?;
            largest = size;
        }
        let mut out = Vec::new();
        let resolve = |id: &gix_hash::oid, out: &mut Vec<u8>| {
            use gix_pack::data::decode::entry::ResolvedBase;
            if let Some(entry) = by_id.get(id) {
                return Ok(Some(ResolvedBase::InPack(entry.clone())));
            }
            Ok(bases.get(id).map(|raw| {
                out.clear();
                out.extend_from_slice(raw);
                ResolvedBase::OutOfPack {
                    kind: Kind::Tree,
                    end: raw.len(),
                }
            }))
        };
        let outcome = pack
            .decode_entry(
                entry.clone(),
                &mut out,
                &mut inflate,
                &resolve,
                &mut gix_pack::cache::Never,
            )
            .map_err(fail)?;
        // Whatever its header said, the object's own size is charged.
        if outcome.object_size > largest {
            charge(3 * (outcome.object_size - largest))?;
            largest = outcome.object_size;
        }
        let cost = outcome
            .decompressed_size
            .saturating_add(outcome.object_size);
        budget = budget.checked_sub(cost).ok_or_else(|| {
            fail(format!(
                "its commits and trees take more than {} MiB to decode",
                DECODE_BUDGET >> 20
            ))
        })?;
        let id = gix_object::compute_hash(hash, kind, &out).map_err(fail)?;
        let ours = convert(&id)?;
        match kind {
            Kind::Commit => {
                let commit = gix_object::CommitRef::from_bytes(&out, hash).map_err(fail)?;
                let parents: Vec<ObjectId> = commit
                    .parents()
                    .map(|p| convert(&p))
                    .collect::<Result<_, _>>()?;
                charge(cost::OBJECT + cost::ID * parents.len() as u64)?;
                facts
                    .commit_trees
                    .insert(ours.clone(), convert(&commit.tree())?);
                if wants.signatures {
                    let material = signed_commit(&ours, &commit, &out, hash)?;
                    let held = material.payload.len()
                        + material.signature.as_ref().map_or(0, Vec::len)
                        + material.committer_email.len();
                    charge(2 * std::mem::size_of::<SignedCommit>() as u64 + held as u64)?;
                    signed.push(material);
                }
                facts.commits.insert(ours, parents);
            }
            Kind::Tree if max_blob.is_some() || wants.trees => {
                let entries = tree_entries(&out, hash)?;
                let names: usize = entries.iter().map(|e| e.name.len()).sum();
                charge(cost::TREE_ENTRY * entries.len() as u64 + names as u64)?;
                facts.trees.insert(ours, entries);
            }
            // A tag gitgate cannot parse is not peeled: what it names is then asked of
            // GitHub like any commit outside the pack, and refused if unknown.
            Kind::Tag => {
                if let Ok(tag) = gix_object::TagRef::from_bytes(&out, hash) {
                    facts.tags.insert(ours, convert(&tag.target())?);
                }
            }
            _ => {}
        }
        by_id.insert(id, entry);
    }
    name_paths(&mut facts);
    facts
        .large_objects
        .sort_by_key(|o| std::cmp::Reverse(o.size));
    unresolved.sort();
    unresolved.dedup();
    Ok(Decoded {
        facts,
        unresolved,
        signed,
    })
}

/// The first pass, streaming through the whole pack with bounded memory, in order, so it
/// can follow a pack that is still arriving: finds every entry's extent by inflating it,
/// measures the objects over `max_blob` on the way (hashing undeltified ones for their
/// id), and checks the trailing checksum and that nothing follows it. Returns the entries
/// the second pass needs and the large objects; `None` for an empty input (a push
/// without a pack).
pub(crate) fn list_stream(
    reads: &dyn ReadAt,
    max_blob: Option<u64>,
    hash: gix_hash::Kind,
    charge: Charge,
) -> Result<Option<Listing>, PackError> {
    let mut window = Window::new(reads);
    let head = window.bytes(0, data::header::SIZE)?;
    if head.is_empty() {
        return Ok(None);
    }
    let header: &[u8; data::header::SIZE] = head
        .get(..data::header::SIZE)
        .and_then(|h| h.try_into().ok())
        .ok_or_else(|| fail("truncated header"))?;
    let (_, objects) = data::header::decode(header).map_err(fail)?;
    let mut checksum = Checksum::new(reads, hash);
    let mut inflate = gix_zlib::Inflate::default();
    let (mut listed, mut large) = (Vec::new(), Vec::new());
    let mut out = vec![0u8; STEP];
    let mut offset = data::header::SIZE as u64;
    for _ in 0..objects {
        let head = window.bytes(offset, 64)?;
        let entry = data::Entry::from_bytes(head, offset, hash).map_err(fail)?;
        let size = entry.decompressed_size;
        let over = max_blob.is_some_and(|max| size > max);
        let mut inflating = Inflating {
            window: &mut window,
            inflate: &mut inflate,
            out: &mut out,
        };
        let (consumed, object) = match entry.header {
            Header::Blob | Header::Tree | Header::Commit | Header::Tag if over => {
                let kind = entry.header.as_kind().unwrap_or(Kind::Blob);
                let mut hasher = gix_hash::hasher(hash);
                hasher.update(&gix_object::encode::loose_header(kind, size));
                let consumed = inflating.run(&entry, |chunk| {
                    hasher.update(chunk);
                    true
                })?;
                let id = convert(&hasher.try_finalize().map_err(fail)?)?;
                (
                    consumed,
                    Some(LargeObject {
                        id: Some(id),
                        size,
                        path: None,
                    }),
                )
            }
            Header::OfsDelta { .. } | Header::RefDelta { .. } if max_blob.is_some() => {
                // A delta starts with two sizes (base, result), each a little-endian
                // base-128 number.
                let mut sizes = Vec::with_capacity(20);
                let consumed = inflating.run(&entry, |chunk| {
                    sizes.extend_from_slice(&chunk[..chunk.len().min(20 - sizes.len())]);
                    true
                })?;
                let (_, rest) =
                    varint(&sizes).ok_or_else(|| fail("a delta header is truncated"))?;
                let (result, _) =
                    varint(rest).ok_or_else(|| fail("a delta header is truncated"))?;
                let object = max_blob.filter(|max| result > *max).map(|_| LargeObject {
                    id: None,
                    size: result,
                    path: None,
                });
                (consumed, object)
            }
            _ => (inflating.run(&entry, |_| true)?, None),
        };
        if entry.header != Header::Blob {
            charge(cost::LISTED)?;
            listed.push(Listed {
                header: entry.header,
                pack_offset: offset,
            });
        }
        if object.is_some() {
            charge(cost::LARGE)?;
        }
        large.extend(object);
        offset = entry.data_offset + consumed;
        checksum.upto(offset)?;
    }
    checksum.upto(offset)?;
    checksum.trailer(offset)?;
    Ok(Some(Listing {
        listed,
        large_objects: large,
    }))
}

/// The pack's SHA-1, taken over what the entries have covered so far, then compared with
/// the trailer that must end the input.
struct Checksum<'a> {
    reads: &'a dyn ReadAt,
    hasher: gix_hash::Hasher,
    len: usize,
    done: u64,
    buf: Vec<u8>,
}

impl<'a> Checksum<'a> {
    fn new(reads: &'a dyn ReadAt, hash: gix_hash::Kind) -> Self {
        Checksum {
            reads,
            hasher: gix_hash::hasher(hash),
            len: hash.len_in_bytes(),
            done: 0,
            buf: vec![0u8; STEP],
        }
    }

    /// Hashes the bytes up to `end`.
    fn upto(&mut self, end: u64) -> Result<(), PackError> {
        while self.done < end {
            let want = (end - self.done).min(STEP as u64) as usize;
            let n = self
                .reads
                .read_at(self.done, &mut self.buf[..want])
                .map_err(fail)?;
            if n == 0 {
                return Err(fail("truncated"));
            }
            self.hasher.update(&self.buf[..n]);
            self.done += n as u64;
        }
        Ok(())
    }

    /// Compares the hash with the trailer at `end`, which must be the last bytes.
    fn trailer(self, end: u64) -> Result<(), PackError> {
        let mut trailer = vec![0u8; self.len + 1];
        let mut got = 0;
        while got < trailer.len() {
            let n = self
                .reads
                .read_at(end + got as u64, &mut trailer[got..])
                .map_err(fail)?;
            if n == 0 {
                break;
            }
            got += n;
        }
        if got > self.len {
            return Err(fail("bytes follow its checksum"));
        }
        if got < self.len {
            return Err(fail("its checksum is missing"));
        }
        let actual = self.hasher.try_finalize().map_err(fail)?;
        if actual.as_bytes() != &trailer[..self.len] {
            return Err(fail("its checksum does not match its contents"));
        }
        Ok(())
    }
}

/// Sequential reads through the pack with one buffer, reused from entry to entry.
struct Window<'a> {
    reads: &'a dyn ReadAt,
    buf: Vec<u8>,
    /// The pack offset of `buf[0]`.
    at: u64,
    filled: usize,
}

impl<'a> Window<'a> {
    fn new(reads: &'a dyn ReadAt) -> Self {
        Window {
            reads,
            buf: vec![0u8; STEP],
            at: 0,
            filled: 0,
        }
    }

    /// The buffered bytes from `offset` on, read ahead so that at least `min` are there
    /// when the input has them.
    fn bytes(&mut self, offset: u64, min: usize) -> Result<&[u8], PackError> {
        if offset >= self.at && offset <= self.at + self.filled as u64 {
            let skip = (offset - self.at) as usize;
            self.buf.copy_within(skip..self.filled, 0);
            self.filled -= skip;
        } else {
            self.filled = 0;
        }
        self.at = offset;
        while self.filled < min.min(STEP) {
            let from = self.at + self.filled as u64;
            let n = self
                .reads
                .read_at(from, &mut self.buf[self.filled..])
                .map_err(fail)?;
            if n == 0 {
                break;
            }
            self.filled += n;
        }
        Ok(&self.buf[..self.filled])
    }
}

/// One entry's inflation, with the first pass's buffers.
struct Inflating<'w, 'a> {
    window: &'w mut Window<'a>,
    inflate: &'w mut gix_zlib::Inflate,
    out: &'w mut [u8],
}

impl Inflating<'_, '_> {
    /// Inflates the entry's data in steps, handing each piece to `sink` (which returns
    /// whether it wants more); checks the inflated size against the entry's header and
    /// returns how many compressed bytes the entry takes.
    fn run(
        &mut self,
        entry: &data::Entry,
        mut sink: impl FnMut(&[u8]) -> bool,
    ) -> Result<u64, PackError> {
        self.inflate.reset();
        let (mut used_total, mut written, mut wanted) = (0u64, 0u64, true);
        loop {
            let input = self.window.bytes(entry.data_offset + used_total, 4096)?;
            let (status, used, produced) = self.inflate.once(input, self.out).map_err(fail)?;
            used_total += used as u64;
            written += produced as u64;
            self.window
                .reads
                .objects_reach(entry.data_offset + used_total);
            if written > entry.decompressed_size {
                return Err(fail("an object inflates to more than its header says"));
            }
            if wanted {
                wanted = sink(&self.out[..produced]);
            }
            if status == gix_zlib::Status::StreamEnd {
                break;
            }
            if used == 0 && produced == 0 {
                return Err(fail("an object's compressed data is truncated"));
            }
        }
        if written != entry.decompressed_size {
            return Err(fail("an object inflates to less than its header says"));
        }
        Ok(used_total)
    }
}

/// A decoded commit's signature material.
fn signed_commit(
    id: &ObjectId,
    commit: &gix_object::CommitRef<'_>,
    bytes: &[u8],
    hash: gix_hash::Kind,
) -> Result<SignedCommit, PackError> {
    let committer_email = commit.committer().map_err(fail)?.email.to_string();
    let (signature, payload) =
        match gix_object::CommitRefIter::signature(bytes, hash).map_err(fail)? {
            Some((signature, signed)) => (Some(signature.to_vec()), signed.to_bstring().to_vec()),
            None => (None, bytes.to_vec()),
        };
    // git strips every signature header before verifying: one left in what was "signed"
    // makes a commit git would not call verified.
    let extra_signature = payload
        .split(|b| *b == b'\n')
        .take_while(|line| !line.is_empty())
        .any(|line| line.starts_with(b"gpgsig ") || line.starts_with(b"gpgsig-sha256 "));
    Ok(SignedCommit {
        id: id.clone(),
        committer_email,
        signature,
        extra_signature,
        payload,
    })
}

/// The kind an entry decodes to, following offset deltas within the pack and reference
/// deltas to objects already seen or to the given bases; `Err(id)` names the base where
/// the chain leaves both.
fn kind_of<T: gix_pack::FileData>(
    pack: &data::File<T>,
    item: &Listed,
    by_id: &HashMap<gix_hash::ObjectId, data::Entry>,
    bases: &Bases,
    known: &mut HashMap<u64, Result<Kind, gix_hash::ObjectId>>,
) -> Result<Result<Kind, gix_hash::ObjectId>, PackError> {
    let kind = chain_kind(pack, item, by_id, bases, known)?;
    known.insert(item.pack_offset, kind);
    Ok(kind)
}

/// The size `entry` decodes to, read from its header, or from the header of its delta
/// (the first bytes of it inflated) without decoding the chain.
fn object_size<T: gix_pack::FileData>(
    pack: &data::File<T>,
    entry: &data::Entry,
    inflate: &mut gix_zlib::Inflate,
    by_id: &HashMap<gix_hash::ObjectId, data::Entry>,
    bases: &Bases,
) -> Result<u64, PackError> {
    use gix_pack::data::decode::header::ResolvedBase;
    if !entry.header.is_delta() {
        return Ok(entry.decompressed_size);
    }
    let resolve = |id: &gix_hash::oid| {
        Ok(match by_id.get(id) {
            Some(base) => Some(ResolvedBase::InPack(base.clone())),
            None => bases.contains_key(id).then_some(ResolvedBase::OutOfPack {
                kind: Kind::Tree,
                num_deltas: None,
            }),
        })
    };
    pack.decode_header(entry.clone(), inflate, &resolve)
        .map(|outcome| outcome.object_size)
        .map_err(fail)
}

/// [`kind_of`] without remembering; an offset delta's base comes earlier in the pack, so
/// its kind is usually known already and the chain is not walked again.
fn chain_kind<T: gix_pack::FileData>(
    pack: &data::File<T>,
    item: &Listed,
    by_id: &HashMap<gix_hash::ObjectId, data::Entry>,
    bases: &Bases,
    known: &HashMap<u64, Result<Kind, gix_hash::ObjectId>>,
) -> Result<Result<Kind, gix_hash::ObjectId>, PackError> {
    let mut header = item.header;
    let mut at = item.pack_offset;
    for _ in 0..=pack.num_objects() {
        if at != item.pack_offset
            && let Some(kind) = known.get(&at)
        {
            return Ok(*kind);
        }
        let base = match header {
            Header::Commit => return Ok(Ok(Kind::Commit)),
            Header::Tree => return Ok(Ok(Kind::Tree)),
            Header::Blob => return Ok(Ok(Kind::Blob)),
            Header::Tag => return Ok(Ok(Kind::Tag)),
            Header::OfsDelta { base_distance } => {
                let offset = Header::verified_base_pack_offset(at, base_distance)
                    .ok_or_else(|| fail("a delta points before the start of the pack"))?;
                pack.entry(offset).map_err(fail)?
            }
            Header::RefDelta { base_id } => match by_id.get(&base_id) {
                Some(base) => base.clone(),
                None if bases.contains_key(&base_id) => return Ok(Ok(Kind::Tree)),
                None => return Ok(Err(base_id)),
            },
        };
        header = base.header;
        at = base.pack_offset();
    }
    Err(fail("a delta chain loops"))
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

/// A tree's entries.
fn tree_entries(bytes: &[u8], hash: gix_hash::Kind) -> Result<Vec<TreeEntry>, PackError> {
    let tree = gix_object::TreeRef::from_bytes(bytes, hash).map_err(fail)?;
    // git's fsck refuses these, but gitgate would read the last of two entries of one
    // name where git reads the first.
    let mut names = HashSet::with_capacity(tree.entries.len());
    if let Some(twice) = tree.entries.iter().find(|e| !names.insert(e.filename)) {
        return Err(fail(format!(
            "a tree names {:?} twice",
            entry_name(twice.filename)
        )));
    }
    tree.entries
        .iter()
        .map(|e| {
            Ok(TreeEntry {
                name: entry_name(e.filename),
                mode: u32::from(e.mode.value()),
                id: convert(&e.oid.to_owned())?,
            })
        })
        .collect()
}

/// A tree entry's name as text, one-to-one: a name that is not UTF-8 becomes a NUL (which
/// no git name contains) and its bytes in hex, so distinct names stay distinct.
fn entry_name(name: &[u8]) -> String {
    match std::str::from_utf8(name) {
        Ok(text) => text.to_owned(),
        Err(_) => name.iter().fold(String::from("\0"), |mut out, b| {
            out.push_str(&format!("{b:02x}"));
            out
        }),
    }
}

/// Fills in the path of each large object that a pushed commit's tree (as far as the
/// pack holds its subtrees) names. Paths are spelled out only for those objects, from
/// links to each entry's parent directory, so deep trees cost no more than their size.
fn name_paths(facts: &mut PackFacts) {
    let wanted: HashSet<&ObjectId> = facts
        .large_objects
        .iter()
        .filter_map(|o| o.id.as_ref())
        .collect();
    if wanted.is_empty() {
        return;
    }
    // (name, parent directory's index) per visited directory; roots have no parent.
    let mut dirs: Vec<(&str, Option<usize>)> = Vec::new();
    let mut found: HashMap<&ObjectId, (&str, Option<usize>)> = HashMap::new();
    let mut stack: Vec<(&ObjectId, Option<usize>)> =
        facts.commit_trees.values().map(|r| (r, None)).collect();
    let mut visited = HashSet::new();
    while let Some((tree, dir)) = stack.pop() {
        if !visited.insert(tree) {
            continue;
        }
        for entry in facts.trees.get(tree).into_iter().flatten() {
            if entry.is_tree() {
                dirs.push((&entry.name, dir));
                stack.push((&entry.id, Some(dirs.len() - 1)));
            } else if wanted.contains(&entry.id) {
                found.entry(&entry.id).or_insert((&entry.name, dir));
            }
        }
    }
    let spell = |(name, mut dir): (&str, Option<usize>)| {
        let mut parts = vec![name];
        while let Some(i) = dir {
            parts.push(dirs[i].0);
            dir = dirs[i].1;
        }
        parts.reverse();
        parts.join("/")
    };
    let paths: HashMap<ObjectId, String> = found
        .into_iter()
        .map(|(id, place)| (id.clone(), spell(place)))
        .collect();
    for object in facts.large_objects.iter_mut() {
        object.path = object.id.as_ref().and_then(|id| paths.get(id)).cloned();
    }
}

/// The id of an object of `kind` with these bytes.
pub(crate) fn object_id(
    hash: gix_hash::Kind,
    kind: Kind,
    bytes: &[u8],
) -> Result<ObjectId, PackError> {
    convert(&gix_object::compute_hash(hash, kind, bytes).map_err(fail)?)
}

/// gitgate's object id as gix's.
pub(crate) fn raw_id(id: &ObjectId) -> Result<gix_hash::ObjectId, PackError> {
    gix_hash::ObjectId::from_hex(id.to_string().as_bytes()).map_err(fail)
}

fn convert(id: &gix_hash::ObjectId) -> Result<ObjectId, PackError> {
    ObjectId::parse(&id.to_hex().to_string()).map_err(fail)
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::Path;
    use std::process::{Command, Stdio};

    use super::*;

    const SHA1: gix_hash::Kind = gix_hash::Kind::Sha1;

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
        let bytes = bytes::Bytes::from(bytes);
        let wants = Wants {
            max_blob,
            ..Wants::default()
        };
        Ok(facts(&bytes, wants, &Bases::new(), SHA1)?.facts)
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
        assert!(facts.tags.is_empty());
        // Without a limit nothing is listed; with a higher one neither.
        assert!(read(pack.clone(), None).unwrap().large_objects.is_empty());
        assert!(read(pack, Some(4 << 20)).unwrap().large_objects.is_empty());
    }

    #[test]
    fn a_tree_naming_an_entry_twice_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        git(d, &["init", "-q"], None);
        let blob = git(d, &["hash-object", "-w", "--stdin"], Some(b"x\n"));
        let blob = std::str::from_utf8(&blob).unwrap().trim();
        let raw: Vec<u8> = (0..blob.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&blob[i..i + 2], 16).unwrap())
            .collect();
        let mut tree = Vec::new();
        for _ in 0..2 {
            tree.extend_from_slice(b"100644 a.txt\0");
            tree.extend_from_slice(&raw);
        }
        let args = ["hash-object", "-w", "-t", "tree", "--literally", "--stdin"];
        let id = git(d, &args, Some(&tree));
        let pack = git(d, &["pack-objects", "--stdout", "-q"], Some(&id));
        let error = read(pack, Some(1 << 20)).unwrap_err();
        assert!(
            error.to_string().contains("a tree names \"a.txt\" twice"),
            "{error}"
        );
    }

    #[test]
    fn annotated_tags_are_recorded_with_what_they_name() {
        let dir = repository();
        let d = dir.path();
        git(d, &["tag", "-a", "v1", "-m", "one", "HEAD~1"], None);
        git(d, &["tag", "-a", "v1-of-v1", "-m", "nested", "v1"], None);
        let pack = git(
            d,
            &["pack-objects", "--stdout", "--revs", "-q"],
            Some(b"v1-of-v1\n"),
        );
        let facts = read(pack, None).unwrap();
        let (outer, inner) = (rev(d, "v1-of-v1"), rev(d, "v1"));
        assert_eq!(
            facts.tags,
            HashMap::from([(outer.clone(), inner.clone()), (inner, rev(d, "HEAD~1"))])
        );
        assert_eq!(facts.peeled(&outer), &rev(d, "HEAD~1"));
    }

    #[test]
    fn thin_tree_deltas_decode_once_their_base_is_given() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        git(d, &["init", "-q", "-b", "main"], None);
        for i in 0..300 {
            std::fs::write(d.join(format!("f{i}.txt")), format!("file {i}\n")).unwrap();
        }
        git(d, &["add", "."], None);
        git(d, &["commit", "-qm", "one"], None);
        std::fs::write(d.join("f7.txt"), "changed\n").unwrap();
        git(d, &["commit", "-qam", "two"], None);
        let pack = git(
            d,
            &["pack-objects", "--thin", "--stdout", "--revs", "-q"],
            Some(b"HEAD\n^HEAD~1\n"),
        );
        let bytes = bytes::Bytes::from(pack);
        let wants = Wants {
            trees: true,
            ..Wants::default()
        };
        let unmetered = &mut |_| Ok(());
        let listing = list_stream(&bytes, wants.max_blob, SHA1, unmetered)
            .unwrap()
            .unwrap();
        let root = rev(d, "HEAD^{tree}");
        let without = decode(
            in_memory(&bytes, SHA1).unwrap(),
            &listing,
            wants,
            &Bases::new(),
            unmetered,
        )
        .unwrap();
        assert_eq!(without.facts.commit_trees[&rev(d, "HEAD")], root);
        assert!(
            !without.facts.trees.contains_key(&root),
            "the root tree is a thin delta"
        );
        let old_root = rev(d, "HEAD~1^{tree}");
        let raw = git(d, &["cat-file", "tree", &old_root.to_string()], None);
        let bases = Bases::from([(raw_id(&old_root).unwrap(), raw)]);
        assert_eq!(without.unresolved, std::slice::from_ref(&old_root));
        let with = decode(
            in_memory(&bytes, SHA1).unwrap(),
            &listing,
            wants,
            &bases,
            unmetered,
        )
        .unwrap();
        assert!(with.unresolved.is_empty());
        assert_eq!(with.facts.trees[&root].len(), 300);
    }

    #[test]
    fn reads_sha256_packs() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        git(
            d,
            &["init", "-q", "-b", "main", "--object-format=sha256"],
            None,
        );
        std::fs::write(d.join("a.txt"), "one\n").unwrap();
        git(d, &["add", "."], None);
        git(d, &["commit", "-qm", "one"], None);
        std::fs::write(d.join("big.bin"), vec![7u8; 3000]).unwrap();
        git(d, &["add", "."], None);
        git(d, &["commit", "-qm", "two"], None);
        let pack = git(
            d,
            &["pack-objects", "--stdout", "--revs", "-q"],
            Some(b"HEAD\n"),
        );
        let wants = Wants {
            max_blob: Some(1000),
            ..Wants::default()
        };
        let bytes = bytes::Bytes::from(pack);
        let read = facts(&bytes, wants, &Bases::new(), gix_hash::Kind::Sha256).unwrap();
        let head = rev(d, "HEAD");
        assert_eq!(head.to_string().len(), 64);
        assert_eq!(read.facts.commits[&head], [rev(d, "HEAD~1")]);
        assert_eq!(read.facts.large_objects[0].id, Some(rev(d, "HEAD:big.bin")));
        assert_eq!(read.facts.large_objects[0].path.as_deref(), Some("big.bin"));
        // Read as SHA-1, the same bytes are refused, never misread.
        assert!(facts(&bytes, wants, &Bases::new(), SHA1).is_err());
    }

    /// A pack of one tree delta against `base` (outside the pack) whose header says it
    /// takes a base of 10 bytes and makes one of `result` bytes; it makes one.
    fn pack_of_one_delta(base: &gix_hash::ObjectId, result: u64) -> Vec<u8> {
        use std::io::Write;
        fn varint(mut n: u64, out: &mut Vec<u8>) {
            while n >= 0x80 {
                out.push(0x80 | (n & 0x7f) as u8);
                n >>= 7;
            }
            out.push(n as u8);
        }
        let mut delta = Vec::new();
        varint(10, &mut delta);
        varint(result, &mut delta);
        delta.extend([0x01, b'x']);
        let mut pack = b"PACK\0\0\0\x02\0\0\0\x01".to_vec();
        // Type 7 (a reference delta) and the delta's size, which fits the first byte.
        pack.push(0x70 | delta.len() as u8);
        pack.extend(base.as_slice());
        let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        zlib.write_all(&delta).unwrap();
        pack.extend(zlib.finish().unwrap());
        let sum = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &pack);
        pack.extend(sum.as_ref());
        pack
    }

    #[test]
    fn an_objects_size_is_charged_before_it_is_decoded() {
        let base =
            gix_hash::ObjectId::from_hex(b"1111111111111111111111111111111111111111").unwrap();
        // The base is not the 10 bytes the delta asks for: decoding it would fail.
        let bases = Bases::from([(base, b"12345".to_vec())]);
        let wants = Wants {
            trees: true,
            ..Wants::default()
        };
        let read = |result: u64, charge: Charge| {
            let bytes = bytes::Bytes::from(pack_of_one_delta(&base, result));
            let listing = list_stream(&bytes, None, SHA1, &mut |_| Ok(()))
                .unwrap()
                .unwrap();
            let pack = in_memory(&bytes, SHA1).unwrap();
            match decode(pack, &listing, wants, &bases, charge) {
                Ok(_) => panic!("decoded"),
                Err(refused) => refused.to_string(),
            }
        };
        let mut left = 16_u64 << 20;
        let mut capped = |n: u64| {
            left = left.checked_sub(n).ok_or_else(|| fail("over the share"))?;
            Ok(())
        };
        // A small result is decoded, and fails on its base.
        let small = read(100, &mut capped);
        assert!(!small.contains("over the share"), "{small}");
        // 32 MiB: refused before any of it is made.
        let large = read(32 << 20, &mut capped);
        assert!(large.contains("over the share"), "{large}");
    }

    #[test]
    fn what_reading_a_pack_holds_is_charged_and_a_refused_charge_stops_it() {
        // A tree of 2,000 entries: kept whole (for protected paths), it is charged for each.
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        git(d, &["init", "-q", "-b", "main"], None);
        for i in 0..2000 {
            std::fs::write(d.join(format!("f{i:04}")), "x").unwrap();
        }
        git(d, &["add", "."], None);
        git(d, &["commit", "-qm", "many"], None);
        let pack = git(
            d,
            &["pack-objects", "--stdout", "--revs", "-q"],
            Some(b"HEAD\n"),
        );
        let bytes = bytes::Bytes::from(pack);
        let wants = Wants {
            trees: true,
            ..Wants::default()
        };
        let mut charged = 0;
        let mut count = |n: u64| {
            charged += n;
            Ok(())
        };
        let listing = list_stream(&bytes, None, SHA1, &mut count)
            .unwrap()
            .unwrap();
        let decoded = decode(
            in_memory(&bytes, SHA1).unwrap(),
            &listing,
            wants,
            &Bases::new(),
            &mut count,
        )
        .unwrap();
        assert_eq!(decoded.facts.trees[&rev(d, "HEAD^{tree}")].len(), 2000);
        assert!(charged > 2000 * cost::TREE_ENTRY, "{charged}");
        // Refused halfway: the reading stops with the refusal's reason.
        let mut left = charged / 2;
        let mut capped = |n: u64| {
            left = left.checked_sub(n).ok_or_else(|| fail("over the share"))?;
            Ok(())
        };
        let listing = list_stream(&bytes, None, SHA1, &mut capped)
            .unwrap()
            .unwrap();
        let refused = decode(
            in_memory(&bytes, SHA1).unwrap(),
            &listing,
            wants,
            &Bases::new(),
            &mut capped,
        );
        assert_eq!(
            refused.unwrap_err().to_string(),
            "cannot read the pushed pack: over the share"
        );
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

    /// Re-seals `pack` with a correct trailer, as an attacker crafting one would.
    fn reseal(mut pack: Vec<u8>) -> Vec<u8> {
        let end = pack.len() - 20;
        let mut hasher = gix_hash::hasher(SHA1);
        hasher.update(&pack[..end]);
        let id = hasher.try_finalize().unwrap();
        pack[end..].copy_from_slice(id.as_bytes());
        pack
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// A crafted pack (any bytes changed, a valid trailer) is read or refused, never a
        /// panic, and never past the allocation limit.
        #[test]
        fn crafted_packs_are_read_or_refused(
            edits in proptest::collection::vec((proptest::prelude::any::<proptest::sample::Index>(), proptest::prelude::any::<u8>()), 1..6),
        ) {
            let pack = small_pack();
            let mut crafted = pack.clone();
            let body = crafted.len() - 20;
            for (at, byte) in &edits {
                crafted[at.index(body)] = *byte;
            }
            let _ = read(reseal(crafted), Some(10));
        }
    }

    /// A small history's pack, made once.
    pub(crate) fn small_pack() -> Vec<u8> {
        static PACK: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        PACK.get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let d = dir.path();
            git(d, &["init", "-q", "-b", "main"], None);
            for i in 0..4 {
                std::fs::write(d.join("a.txt"), format!("{}\n", "text ".repeat(40 + i))).unwrap();
                std::fs::create_dir_all(d.join(format!("dir{i}"))).unwrap();
                std::fs::write(d.join(format!("dir{i}/b.txt")), "b\n".repeat(i + 1)).unwrap();
                git(d, &["add", "."], None);
                git(d, &["commit", "-qm", &format!("c{i}")], None);
            }
            git(
                d,
                &["pack-objects", "--stdout", "--revs", "-q"],
                Some(b"HEAD\n"),
            )
        })
        .clone()
    }

    #[test]
    fn refuses_damaged_packs() {
        let dir = repository();
        let pack = git(
            dir.path(),
            &["pack-objects", "--stdout", "--revs", "-q"],
            Some(b"HEAD\n"),
        );
        // A byte of the trailer, of the data, and a cut anywhere.
        let mut flipped = pack.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        let error = read(flipped, None).unwrap_err().to_string();
        assert!(error.contains("checksum does not match"), "{error}");
        let mut flipped = pack.clone();
        let middle = flipped.len() / 2;
        flipped[middle] ^= 1;
        let error = read(flipped, None).unwrap_err().to_string();
        assert!(error.starts_with("cannot read the pushed pack"), "{error}");
        let error = read(pack[..pack.len() - 10].to_vec(), None).unwrap_err();
        assert!(error.to_string().contains("checksum is missing"), "{error}");
        let error = read(pack[..pack.len() / 2].to_vec(), None).unwrap_err();
        assert!(error.to_string().starts_with("cannot read the pushed pack"));
        let mut longer = pack.clone();
        longer.push(0);
        let error = read(longer, None).unwrap_err();
        assert!(
            error.to_string().contains("bytes follow its checksum"),
            "{error}"
        );
    }

    #[test]
    fn entry_names_stay_distinct_when_they_are_not_utf8() {
        assert_eq!(entry_name(b"ci.yml"), "ci.yml");
        assert_ne!(entry_name(b"x\xff"), entry_name(b"x\xfe"));
        assert_ne!(entry_name(b"x\xff"), "x\u{fffd}");
        assert!(entry_name(b"x\xff").starts_with('\0'));
    }

    #[test]
    fn delta_header_numbers() {
        assert_eq!(varint(&[0x05, 0x01]), Some((5, &[0x01][..])));
        assert_eq!(varint(&[0x80 | 0x10, 0x01]), Some((0x90, &[][..])));
        assert_eq!(varint(&[0x80, 0x80]), None);
    }
}
