//! The pre-pack header of a `git-receive-pack` request body, read incrementally and bounded:
//!
//! ```text
//! *shallow ( command-list / push-cert ) [push-options] [PACK…]
//! ```
//!
//! [`CommandReader::feed`] takes the body in pieces of any size and answers once the header
//! is complete; the pack after it is never examined. Lines may or may not end in LF.
//!
//! The reader must never see fewer ref updates than git's `receive-pack` would execute, so
//! where git is lenient it is either mirrored exactly or refused: a push certificate is
//! reassembled and split into commands the way `read_head_info` and
//! `queue_commands_from_cert` do it (`builtin/receive-pack.c`), while shallow lines after a
//! command, capabilities on later commands, commands after `push-cert-end`, uppercase hex
//! and refnames with spaces or control characters, which git tolerates or reinterprets, are
//! errors here.

use std::collections::HashSet;
use std::fmt;

use crate::git::pktline::{Decoded, Pkt, PktError, chomp, decode};
pub use crate::git::sideband::SideBand;
use crate::object_id::{ObjectFormat, ObjectId, ObjectIdError};
use crate::ref_update::RefUpdate;
use crate::text::printable;

/// How much of a bad line is echoed in an error.
const SHOW: usize = 100;

/// Bounds on what the reader accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most ref updates in one push.
    pub max_commands: usize,
    /// Most bytes before the pack (shallow lines, commands, certificate, push options).
    pub max_header_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_commands: 1000,
            max_header_bytes: 1 << 20,
        }
    }
}

/// Everything before the pack.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PushHeader {
    /// The ref updates, in request order (from the certificate when `push_cert`).
    pub commands: Vec<RefUpdate>,
    /// Capabilities sent after the NUL of the first line.
    pub capabilities: Vec<String>,
    /// Push options (`git push -o`), the plain copies after the command list.
    pub push_options: Vec<String>,
    /// `shallow` lines of a push from a shallow clone.
    pub shallow: Vec<ObjectId>,
    /// Whether the commands came in a push certificate (`git push --signed`).
    pub push_cert: bool,
    /// Length of the header in bytes: the pack, if any, starts here.
    pub header_len: usize,
}

impl PushHeader {
    /// The side-band the client asked for.
    pub fn side_band(&self) -> SideBand {
        SideBand::from_capabilities(&self.capabilities)
    }

    /// Whether the client asked for `report-status` or `report-status-v2`.
    pub fn wants_report(&self) -> bool {
        self.has_capability("report-status") || self.has_capability("report-status-v2")
    }

    /// Whether the capability was asked for, as git reads it (`atomic`, or with a value:
    /// `push-options=x`).
    pub fn has_capability(&self, name: &str) -> bool {
        self.capabilities.iter().any(|c| super::asks_for(c, name))
    }

    /// Whether this is git's `0000` probe before a large (chunked) push: no commands, no
    /// shallow lines, no certificate.
    pub fn is_probe(&self) -> bool {
        self.commands.is_empty() && self.shallow.is_empty() && !self.push_cert
    }
}

/// A line of the header, for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// The n-th `shallow` line (from 1).
    Shallow(usize),
    /// The n-th command (from 1).
    Command(usize),
    /// The n-th push option (from 1).
    PushOption(usize),
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Shallow(n) => write!(f, "shallow line {n}"),
            Place::Command(n) => write!(f, "command {n}"),
            Place::PushOption(n) => write!(f, "push option {n}"),
        }
    }
}

/// Why a receive-pack body was refused. Errors are final.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReceivePackError {
    /// Broken pkt-line framing.
    #[error("pkt-line at byte {offset}: {source}")]
    Pkt {
        /// Where the packet starts in the body.
        offset: usize,
        /// The framing error.
        source: PktError,
    },
    /// A packet that does not belong here (e.g. `0001` or a flush inside a certificate).
    #[error("unexpected {found} at byte {offset}: expected {expected}")]
    UnexpectedPkt {
        /// Where the packet starts in the body.
        offset: usize,
        /// What was found.
        found: &'static str,
        /// What was expected instead.
        expected: &'static str,
    },
    /// A line of the wrong shape.
    #[error("{at}: {why}: \"{line}\"")]
    BadLine {
        /// Which line.
        at: Place,
        /// What is wrong.
        why: &'static str,
        /// The line (shortened, escaped).
        line: String,
    },
    /// An object id that is not hex of a known length.
    #[error("{at}: {source}")]
    BadObjectId {
        /// Which line.
        at: Place,
        /// The id error.
        source: ObjectIdError,
    },
    /// An object id whose length differs from the request's object format.
    #[error("{at}: object id has {found} hex digits, expected {expected}")]
    ObjectIdLength {
        /// Which line.
        at: Place,
        /// The length seen.
        found: usize,
        /// The length of the request's object format.
        expected: usize,
    },
    /// A ref name with a space, control or non-ASCII character, or an empty one.
    #[error(
        "{at}: ref name \"{name}\" is empty or contains a space, control or non-ASCII character"
    )]
    BadRefName {
        /// Which line.
        at: Place,
        /// The name (escaped).
        name: String,
    },
    /// The same ref twice.
    #[error("{at}: duplicate ref name {name}")]
    DuplicateRef {
        /// Which line.
        at: Place,
        /// The name.
        name: String,
    },
    /// A capability list that is not printable ASCII.
    #[error("capability list is not printable ASCII: \"{0}\"")]
    BadCapabilities(String),
    /// An `object-format=` other than `sha1` or `sha256`.
    #[error("unknown object-format \"{0}\"")]
    UnknownObjectFormat(String),
    /// A push certificate git would refuse.
    #[error("push certificate: {0}")]
    BadPushCert(&'static str),
    /// A push option that is not UTF-8.
    #[error("{0}: not UTF-8")]
    BadPushOption(Place),
    /// More commands than [`Limits::max_commands`].
    #[error("more than {0} commands")]
    TooManyCommands(usize),
    /// A header longer than [`Limits::max_header_bytes`].
    #[error("push header exceeds {0} bytes")]
    HeaderTooLarge(usize),
    /// The body was empty.
    #[error("empty request body")]
    Empty,
    /// The body ended before the header did.
    #[error("request body ended inside {0}")]
    Truncated(&'static str),
}

/// Where the reader is in the grammar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Shallow lines, then the first command, a certificate, or a flush.
    Start,
    /// More commands until a flush.
    Commands,
    /// Certificate lines until `push-cert-end\n` or a flush.
    Cert,
    /// The flush after `push-cert-end`.
    CertEnd,
    /// Push options until a flush.
    Options,
}

impl Stage {
    fn description(self) -> &'static str {
        match self {
            Stage::Start | Stage::Commands => "the command list",
            Stage::Cert | Stage::CertEnd => "the push certificate",
            Stage::Options => "the push options",
        }
    }

    fn expected(self) -> &'static str {
        match self {
            Stage::Start => "a shallow line, a command, push-cert or flush-pkt",
            Stage::Commands => "a command or flush-pkt",
            Stage::Cert => "a certificate line or push-cert-end",
            Stage::CertEnd => "flush-pkt",
            Stage::Options => "a push option or flush-pkt",
        }
    }
}

/// Reads the pre-pack header of a receive-pack request body incrementally.
#[derive(Debug)]
pub struct CommandReader {
    limits: Limits,
    /// Bytes of an incomplete packet.
    pending: Vec<u8>,
    /// Body bytes consumed by complete packets.
    offset: usize,
    parser: Parser,
    /// Set once the header is complete or an error occurred.
    outcome: Option<Result<PushHeader, ReceivePackError>>,
}

/// The grammar state, apart from buffering.
#[derive(Debug)]
struct Parser {
    max_commands: usize,
    stage: Stage,
    header: PushHeader,
    /// Set by `object-format=` or by the first object id.
    id_len: Option<usize>,
    names: HashSet<String>,
    /// The push certificate as git assembles it.
    cert: Vec<u8>,
}

impl CommandReader {
    /// A reader with the given limits.
    pub fn new(limits: Limits) -> CommandReader {
        CommandReader {
            limits,
            pending: Vec::new(),
            offset: 0,
            parser: Parser {
                max_commands: limits.max_commands,
                stage: Stage::Start,
                header: PushHeader::default(),
                id_len: None,
                names: HashSet::new(),
                cert: Vec::new(),
            },
            outcome: None,
        }
    }

    /// Feeds the next bytes of the (already un-gzipped) request body. Returns `Ok(Some(header))`
    /// once the whole header is read; bytes after it (the pack) are never examined, and
    /// later calls return the same header again. Errors are final.
    pub fn feed(&mut self, data: &[u8]) -> Result<Option<PushHeader>, ReceivePackError> {
        if let Some(outcome) = &self.outcome {
            return outcome.clone().map(Some);
        }
        let room = self
            .limits
            .max_header_bytes
            .saturating_sub(self.offset + self.pending.len());
        self.pending
            .extend_from_slice(&data[..data.len().min(room)]);
        match self.parse_pending() {
            Ok(None) if self.offset + self.pending.len() >= self.limits.max_header_bytes => self
                .fail(ReceivePackError::HeaderTooLarge(
                    self.limits.max_header_bytes,
                )),
            Ok(None) => Ok(None),
            Ok(Some(header)) => {
                self.outcome = Some(Ok(header.clone()));
                self.pending = Vec::new();
                Ok(Some(header))
            }
            Err(e) => self.fail(e),
        }
    }

    /// The side-band the client asked for in its first command (`None` before it): what a
    /// refusal of a header that never completes is framed in.
    pub fn side_band(&self) -> SideBand {
        match &self.outcome {
            Some(Ok(header)) => header.side_band(),
            _ => self.parser.header.side_band(),
        }
    }

    /// Whether the capabilities the client asked for are read (they come with the first
    /// command, or the push certificate): enough to frame a refusal.
    pub fn knows_capabilities(&self) -> bool {
        self.outcome.is_some()
            || !self.parser.header.commands.is_empty()
            || self.parser.header.push_cert
    }

    /// The body ended: the header if it is complete, else an error.
    pub fn finish(&mut self) -> Result<PushHeader, ReceivePackError> {
        if let Some(outcome) = &self.outcome {
            return outcome.clone();
        }
        let error = if self.offset == 0 && self.pending.is_empty() {
            ReceivePackError::Empty
        } else {
            ReceivePackError::Truncated(self.parser.stage.description())
        };
        self.fail(error)
    }

    fn fail<T>(&mut self, error: ReceivePackError) -> Result<T, ReceivePackError> {
        self.outcome = Some(Err(error.clone()));
        Err(error)
    }

    /// Handles every complete packet in `pending`.
    fn parse_pending(&mut self) -> Result<Option<PushHeader>, ReceivePackError> {
        let mut pos = 0;
        let done = loop {
            let at = self.offset + pos;
            let decoded = decode(&self.pending[pos..])
                .map_err(|source| ReceivePackError::Pkt { offset: at, source })?;
            let Decoded::Complete { pkt, consumed } = decoded else {
                break false;
            };
            pos += consumed;
            if self.parser.handle(pkt, at)? {
                break true;
            }
        };
        self.pending.drain(..pos);
        self.offset += pos;
        Ok(done.then(|| PushHeader {
            header_len: self.offset,
            ..std::mem::take(&mut self.parser.header)
        }))
    }
}

impl Parser {
    /// Handles one packet starting at body offset `at`; `Ok(true)` when the header is done.
    fn handle(&mut self, pkt: Pkt<'_>, at: usize) -> Result<bool, ReceivePackError> {
        let payload = match pkt {
            Pkt::Data(payload) => payload,
            Pkt::Flush => return self.flush(),
            Pkt::Delim | Pkt::ResponseEnd => {
                return Err(self.unexpected(at, "special packet 0001/0002"));
            }
        };
        let line = chomp(payload);
        match self.stage {
            Stage::Start => self.first_line(line)?,
            Stage::Commands => {
                if line.contains(&0) {
                    return Err(
                        self.bad_line("capabilities are only allowed on the first command", line)
                    );
                }
                self.command(line)?;
            }
            Stage::Cert => {
                // Like git: the raw line up to a NUL, newline kept, lines simply appended.
                let raw = payload.split(|&b| b == 0).next().unwrap_or_default();
                if raw == b"push-cert-end\n" {
                    self.cert_commands()?;
                    self.stage = Stage::CertEnd;
                } else {
                    self.cert.extend_from_slice(raw);
                }
            }
            Stage::CertEnd => return Err(self.unexpected(at, "a data packet")),
            Stage::Options => {
                let n = self.header.push_options.len() + 1;
                let option = String::from_utf8(line.to_vec())
                    .map_err(|_| ReceivePackError::BadPushOption(Place::PushOption(n)))?;
                self.header.push_options.push(option);
            }
        }
        Ok(false)
    }

    fn flush(&mut self) -> Result<bool, ReceivePackError> {
        match self.stage {
            // The `0000` probe, or shallow lines without commands.
            Stage::Start => Ok(true),
            // git ends an unterminated certificate at the flush.
            Stage::Cert => {
                self.cert_commands()?;
                Ok(self.commands_done())
            }
            Stage::Commands | Stage::CertEnd => Ok(self.commands_done()),
            Stage::Options => Ok(true),
        }
    }

    /// After the command list: push options follow if the client announced them.
    fn commands_done(&mut self) -> bool {
        if self.has_capability("push-options") {
            self.stage = Stage::Options;
            false
        } else {
            true
        }
    }

    /// The commands of a push certificate, found as git finds them: after the first blank
    /// line (`\n\n`), before the last line that starts a signature in a format git knows,
    /// one per line. Every line there must be a valid command (git dies on any other), so
    /// an unknown `-----BEGIN` line among them fails to parse. A signature that begins
    /// before the blank line leaves git no commands: refused, never read as none.
    fn cert_commands(&mut self) -> Result<(), ReceivePackError> {
        let cert = std::mem::take(&mut self.cert);
        if cert.is_empty() {
            return Ok(());
        }
        let begin =
            cert.windows(2)
                .position(|w| w == b"\n\n")
                .ok_or(ReceivePackError::BadPushCert(
                    "no blank line after the header",
                ))?
                + 2;
        let end = line_starts(&cert)
            .filter(|&start| {
                SIGNATURE_STARTS
                    .iter()
                    .any(|marker| cert[start..].starts_with(marker))
            })
            .last()
            .unwrap_or(cert.len());
        if end < begin {
            return Err(ReceivePackError::BadPushCert(
                "a signature begins before the commands",
            ));
        }
        let mut rest = &cert[begin..end];
        while !rest.is_empty() {
            let (line, next) = match rest.iter().position(|&b| b == b'\n') {
                Some(eol) => (&rest[..eol], &rest[eol + 1..]),
                None => (rest, &b""[..]),
            };
            self.command(line)?;
            rest = next;
        }
        Ok(())
    }

    fn first_line(&mut self, line: &[u8]) -> Result<(), ReceivePackError> {
        if let Some(id) = line.strip_prefix(b"shallow ") {
            let at = Place::Shallow(self.header.shallow.len() + 1);
            let id = self.object_id(at, id)?;
            self.header.shallow.push(id);
            return Ok(());
        }
        let (first, caps) = match line.iter().position(|&b| b == 0) {
            Some(nul) => (&line[..nul], &line[nul + 1..]),
            None => (line, &b""[..]),
        };
        self.capabilities(caps)?;
        if first == b"push-cert" {
            self.header.push_cert = true;
            self.stage = Stage::Cert;
            return Ok(());
        }
        self.stage = Stage::Commands;
        self.command(first)
    }

    fn capabilities(&mut self, caps: &[u8]) -> Result<(), ReceivePackError> {
        if !caps.iter().all(|b| *b == b' ' || b.is_ascii_graphic()) {
            return Err(ReceivePackError::BadCapabilities(printable(caps, SHOW)));
        }
        self.header.capabilities = caps
            .split(|&b| b == b' ')
            .filter(|token| !token.is_empty())
            .map(|token| token.iter().map(|&b| char::from(b)).collect())
            .collect();
        let format = self
            .header
            .capabilities
            .iter()
            .find_map(|c| c.strip_prefix("object-format="));
        if let Some(name) = format {
            let format = ObjectFormat::from_capability(name).ok_or_else(|| {
                ReceivePackError::UnknownObjectFormat(printable(name.as_bytes(), SHOW))
            })?;
            let expected = format.hex_len();
            // Only shallow lines come before the capabilities.
            if let Some(found) = self.id_len.filter(|len| *len != expected) {
                return Err(ReceivePackError::ObjectIdLength {
                    at: Place::Shallow(1),
                    found,
                    expected,
                });
            }
            self.id_len = Some(expected);
        }
        Ok(())
    }

    fn command(&mut self, line: &[u8]) -> Result<(), ReceivePackError> {
        let n = self.header.commands.len() + 1;
        if n > self.max_commands {
            return Err(ReceivePackError::TooManyCommands(self.max_commands));
        }
        let at = Place::Command(n);
        let mut parts = line.splitn(3, |&b| b == b' ');
        let (Some(old), Some(new), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(self.bad_line("expected \"OLD-ID NEW-ID REFNAME\"", line));
        };
        let old = self.object_id(at, old)?;
        let new = self.object_id(at, new)?;
        if name.is_empty() || !name.iter().all(u8::is_ascii_graphic) {
            return Err(ReceivePackError::BadRefName {
                at,
                name: printable(name, SHOW),
            });
        }
        let name: String = name.iter().map(|&b| char::from(b)).collect();
        if !self.names.insert(name.clone()) {
            return Err(ReceivePackError::DuplicateRef { at, name });
        }
        self.header.commands.push(RefUpdate { old, new, name });
        Ok(())
    }

    fn object_id(&mut self, at: Place, hex: &[u8]) -> Result<ObjectId, ReceivePackError> {
        let id = ObjectId::from_bytes(hex)
            .map_err(|source| ReceivePackError::BadObjectId { at, source })?;
        let found = id.as_str().len();
        match self.id_len {
            Some(expected) if expected != found => Err(ReceivePackError::ObjectIdLength {
                at,
                found,
                expected,
            }),
            _ => {
                self.id_len = Some(found);
                Ok(id)
            }
        }
    }

    fn has_capability(&self, name: &str) -> bool {
        self.header.has_capability(name)
    }

    fn bad_line(&self, why: &'static str, line: &[u8]) -> ReceivePackError {
        ReceivePackError::BadLine {
            at: Place::Command(self.header.commands.len() + 1),
            why,
            line: printable(line, SHOW),
        }
    }

    fn unexpected(&self, offset: usize, found: &'static str) -> ReceivePackError {
        ReceivePackError::UnexpectedPkt {
            offset,
            found,
            expected: self.stage.expected(),
        }
    }
}

/// The lines that begin a signature, in the formats git knows (`gpg-interface.c`,
/// `get_format_by_sig`). Knowing fewer than git is safe (an unknown marker among the
/// commands fails to parse); knowing more would hide commands git runs.
const SIGNATURE_STARTS: [&[u8]; 4] = [
    b"-----BEGIN PGP SIGNATURE-----",
    b"-----BEGIN PGP MESSAGE-----",
    b"-----BEGIN SIGNED MESSAGE-----",
    b"-----BEGIN SSH SIGNATURE-----",
];

/// Offsets at which the lines of `text` start.
fn line_starts(text: &[u8]) -> impl Iterator<Item = usize> + '_ {
    std::iter::once(0).chain(
        text.iter()
            .enumerate()
            .filter(|&(i, &b)| b == b'\n' && i + 1 < text.len())
            .map(|(i, _)| i + 1),
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The real request bodies of `tests/captures/` (see `make-captures.sh` there).
    pub(crate) const CAPTURES: &[(&str, &[u8])] = &[
        (
            "create-main",
            include_bytes!("../../tests/captures/create-main.bin"),
        ),
        (
            "fast-forward",
            include_bytes!("../../tests/captures/fast-forward.bin"),
        ),
        (
            "new-branch-and-tag",
            include_bytes!("../../tests/captures/new-branch-and-tag.bin"),
        ),
        (
            "push-options",
            include_bytes!("../../tests/captures/push-options.bin"),
        ),
        ("atomic", include_bytes!("../../tests/captures/atomic.bin")),
        (
            "atomic-options-delete",
            include_bytes!("../../tests/captures/atomic-options-delete.bin"),
        ),
        (
            "delete-only",
            include_bytes!("../../tests/captures/delete-only.bin"),
        ),
        (
            "delete-with-options",
            include_bytes!("../../tests/captures/delete-with-options.bin"),
        ),
        ("probe", include_bytes!("../../tests/captures/probe.bin")),
        (
            "shallow",
            include_bytes!("../../tests/captures/shallow.bin"),
        ),
        (
            "sha256-create",
            include_bytes!("../../tests/captures/sha256-create.bin"),
        ),
        (
            "sha256-update",
            include_bytes!("../../tests/captures/sha256-update.bin"),
        ),
        ("signed", include_bytes!("../../tests/captures/signed.bin")),
    ];

    pub(crate) fn capture(name: &str) -> &'static [u8] {
        CAPTURES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, body)| *body)
            .unwrap_or_else(|| panic!("no capture {name}"))
    }

    fn read_all(body: &[u8]) -> Result<PushHeader, ReceivePackError> {
        let mut reader = CommandReader::new(Limits::default());
        match reader.feed(body)? {
            Some(header) => Ok(header),
            None => reader.finish(),
        }
    }

    /// A body from pkt-line payloads; `"0000"` and `"0001"` are written as is.
    fn body(parts: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        for part in parts {
            if matches!(*part, "0000" | "0001" | "0002") {
                out.extend_from_slice(part.as_bytes());
            } else {
                crate::git::pktline::encode(part.as_bytes(), &mut out).unwrap();
            }
        }
        out
    }

    const A: &str = "1111111111111111111111111111111111111111";
    const B: &str = "2222222222222222222222222222222222222222";
    const Z: &str = "0000000000000000000000000000000000000000";

    #[test]
    fn reads_the_captures() {
        struct Want {
            refs: &'static [&'static str],
            deletes: usize,
            shallow: usize,
            options: &'static [&'static str],
            cert: bool,
            pack: bool,
            format: ObjectFormat,
        }
        let sha1 = |refs, deletes, options, pack| Want {
            refs,
            deletes,
            shallow: 0,
            options,
            cert: false,
            pack,
            format: ObjectFormat::Sha1,
        };
        for (name, want) in [
            ("create-main", sha1(&["refs/heads/main"], 0, &[], true)),
            ("fast-forward", sha1(&["refs/heads/main"], 0, &[], true)),
            (
                "new-branch-and-tag",
                sha1(&["refs/heads/feature/b1", "refs/tags/v1"], 0, &[], true),
            ),
            (
                "push-options",
                sha1(
                    &["refs/heads/with-options"],
                    0,
                    &["ci.skip", "note=hello world"],
                    true,
                ),
            ),
            (
                "atomic",
                sha1(
                    &["refs/heads/main", "refs/heads/atomic-a", "refs/tags/t2"],
                    0,
                    &[],
                    true,
                ),
            ),
            (
                "atomic-options-delete",
                sha1(
                    &[
                        "refs/heads/feature/b1",
                        "refs/heads/newbranch",
                        "refs/tags/t3",
                    ],
                    1,
                    &["ci.skip", "note=hello world"],
                    true,
                ),
            ),
            (
                "delete-only",
                sha1(&["refs/heads/newbranch", "refs/tags/t3"], 2, &[], false),
            ),
            (
                "delete-with-options",
                sha1(&["refs/heads/with-options"], 1, &["ci.skip"], false),
            ),
            (
                "shallow",
                Want {
                    shallow: 1,
                    ..sha1(&["refs/heads/from-shallow"], 0, &[], true)
                },
            ),
            (
                "sha256-create",
                Want {
                    format: ObjectFormat::Sha256,
                    ..sha1(&["refs/heads/main"], 0, &[], true)
                },
            ),
            (
                "sha256-update",
                Want {
                    format: ObjectFormat::Sha256,
                    ..sha1(&["refs/heads/main", "refs/heads/feature"], 0, &[], true)
                },
            ),
            (
                "signed",
                Want {
                    cert: true,
                    ..sha1(&["refs/heads/main"], 0, &["opt1"], true)
                },
            ),
        ] {
            let body = capture(name);
            let header = read_all(body).unwrap_or_else(|e| panic!("{name}: {e}"));
            let refs: Vec<&str> = header.commands.iter().map(|c| c.name.as_str()).collect();
            assert_eq!(refs, want.refs, "{name}");
            assert_eq!(
                header.commands.iter().filter(|c| c.is_delete()).count(),
                want.deletes,
                "{name}"
            );
            assert!(
                header
                    .commands
                    .iter()
                    .all(|c| c.old.format() == want.format),
                "{name}"
            );
            assert_eq!(header.shallow.len(), want.shallow, "{name}");
            assert_eq!(header.push_options, want.options, "{name}");
            assert_eq!(header.push_cert, want.cert, "{name}");
            assert!(!header.is_probe(), "{name}");
            assert_eq!(header.side_band(), SideBand::Band64k, "{name}");
            assert!(
                header.wants_report() && header.has_capability("report-status-v2"),
                "{name}"
            );
            assert!(
                header.has_capability(&format!("object-format={}", want.format.as_str())),
                "{name}"
            );
            if want.pack {
                assert_eq!(
                    &body[header.header_len..header.header_len + 4],
                    b"PACK",
                    "{name}"
                );
            } else {
                assert_eq!(header.header_len, body.len(), "{name}");
            }
        }
        let probe = read_all(capture("probe")).unwrap();
        assert!(probe.is_probe());
        assert_eq!(probe.header_len, 4);
        assert_eq!(probe.side_band(), SideBand::None);
        assert!(!probe.wants_report());
    }

    #[test]
    fn capabilities_and_ids() {
        let header = read_all(capture("atomic")).unwrap();
        assert_eq!(
            header.capabilities,
            [
                "report-status-v2",
                "side-band-64k",
                "quiet",
                "atomic",
                "object-format=sha1",
                "agent=git/2.47.3"
            ]
        );
        let main = &header.commands[0];
        assert_eq!(
            main.old.as_str(),
            "d65ef3bb597e4bb22d034c9779035723141d00bf"
        );
        assert_eq!(
            main.new.as_str(),
            "722b42669de118ee1980de97a95e99b0013d83a4"
        );
        assert!(header.commands[1].is_create());
    }

    /// Every split point of every capture: nothing until the header is complete, then the
    /// same header as in one piece; a body cut short of its header fails at `finish`.
    #[test]
    fn every_prefix_of_every_capture() {
        for (name, body) in CAPTURES {
            let whole = read_all(body).unwrap();
            for cut in 0..=body.len() {
                let mut reader = CommandReader::new(Limits::default());
                let first = reader.feed(&body[..cut]).unwrap();
                // Once the capabilities are known, the side-band is the final one.
                if reader.knows_capabilities() {
                    assert_eq!(reader.side_band(), whole.side_band(), "{name} at {cut}");
                }
                if cut < whole.header_len {
                    assert_eq!(first, None, "{name} at {cut}");
                    let mut truncated = CommandReader::new(Limits::default());
                    truncated.feed(&body[..cut]).unwrap();
                    let err = truncated.finish().unwrap_err();
                    let want = if cut == 0 {
                        ReceivePackError::Empty
                    } else {
                        err.clone()
                    };
                    assert_eq!(err, want, "{name} at {cut}");
                    assert!(matches!(
                        err,
                        ReceivePackError::Empty | ReceivePackError::Truncated(_)
                    ));
                    let second = reader.feed(&body[cut..]).unwrap();
                    assert_eq!(second.as_ref(), Some(&whole), "{name} at {cut}");
                } else {
                    assert!(reader.knows_capabilities(), "{name} at {cut}");
                    assert_eq!(first.as_ref(), Some(&whole), "{name} at {cut}");
                    // Later feeds and finish keep the answer.
                    assert_eq!(reader.feed(b"garbage").unwrap().as_ref(), Some(&whole));
                }
                assert_eq!(reader.finish().as_ref(), Ok(&whole), "{name} at {cut}");
            }
        }
    }

    #[test]
    fn byte_by_byte() {
        for (name, body) in CAPTURES {
            let whole = read_all(body).unwrap();
            let mut reader = CommandReader::new(Limits::default());
            let found = body.iter().enumerate().find_map(|(i, b)| {
                reader
                    .feed(std::slice::from_ref(b))
                    .unwrap()
                    .map(|h| (i + 1, h))
            });
            assert_eq!(found, Some((whole.header_len, whole.clone())), "{name}");
        }
    }

    proptest! {
        #[test]
        fn random_splits_give_identical_headers(
            index in 0..CAPTURES.len(),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let (name, body) = CAPTURES[index];
            let whole = read_all(body).unwrap();
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(body.len() + 1)).collect();
            cuts.sort_unstable();
            cuts.push(body.len());
            let mut reader = CommandReader::new(Limits::default());
            let mut start = 0;
            let mut got = None;
            for cut in cuts {
                got = got.or(reader.feed(&body[start..cut]).unwrap());
                start = cut;
            }
            prop_assert_eq!(got.as_ref(), Some(&whole), "{}", name);
        }

        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..600), split in any::<prop::sample::Index>()) {
            let mut reader = CommandReader::new(Limits { max_commands: 4, max_header_bytes: 300 });
            let cut = split.index(data.len() + 1);
            let first = reader.feed(&data[..cut]);
            if first.is_ok() {
                let _ = reader.feed(&data[cut..]);
            }
            if let Ok(header) = reader.finish() {
                prop_assert!(header.header_len <= data.len());
                prop_assert!(header.commands.len() <= 4);
            }
        }
    }

    #[test]
    fn accepts_edge_cases() {
        let shallow_only = read_all(&body(&[&format!("shallow {A}\n"), "0000"])).unwrap();
        assert_eq!(
            (shallow_only.commands.len(), shallow_only.shallow.len()),
            (0, 1)
        );
        assert!(!shallow_only.is_probe());

        // Caps without a leading space, empty tokens, LF on the command, no caps at all.
        let h = read_all(&body(&[
            &format!("{A} {B} refs/heads/x\0report-status  side-band\n"),
            "0000",
        ]))
        .unwrap();
        assert_eq!(h.capabilities, ["report-status", "side-band"]);
        assert_eq!(h.side_band(), SideBand::Band);
        let h = read_all(&body(&[&format!("{A} {B} refs/heads/x"), "0000"])).unwrap();
        assert!(h.capabilities.is_empty() && !h.wants_report());

        // old == new, and zero to zero, are passed to the policy.
        let h = read_all(&body(&[
            &format!("{A} {A} refs/heads/x"),
            &format!("{Z} {Z} refs/heads/y"),
            "0000",
        ]))
        .unwrap();
        assert_eq!(h.commands.len(), 2);

        // Refnames the policy will refuse are still read (the user gets a per-ref reason).
        let h = read_all(&body(&[&format!("{A} {B} refs/heads/a..b"), "0000"])).unwrap();
        assert_eq!(h.commands[0].name, "refs/heads/a..b");

        // An empty push option and one without push-options stops at the flush.
        let h = read_all(&body(&[
            &format!("{A} {B} refs/heads/x\0push-options"),
            "0000",
            "",
            "0000",
        ]))
        .unwrap();
        assert_eq!(h.push_options, [""]);
        // git reads a capability with a value as the capability: push options follow.
        let h = read_all(&body(&[
            &format!("{A} {B} refs/heads/x\0push-options=1 report-status=x"),
            "0000",
            "ci.skip",
            "0000",
        ]))
        .unwrap();
        assert_eq!(h.push_options, ["ci.skip"]);
        assert!(h.wants_report());
        let mut reader = CommandReader::new(Limits::default());
        let mut data = body(&[&format!("{A} {Z} refs/heads/x\0report-status"), "0000"]);
        let header_len = data.len();
        data.extend_from_slice(b"\xff\xffnot pkt-lines");
        assert_eq!(
            reader.feed(&data).unwrap().map(|h| h.header_len),
            Some(header_len)
        );
    }

    #[test]
    fn rejects() {
        let sha256 = "3".repeat(64);
        let first = format!("{A} {B} refs/heads/main\0 report-status");
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"".to_vec(), "empty request body"),
            (b"00".to_vec(), "request body ended inside the command list"),
            (
                body(&[&first]),
                "request body ended inside the command list",
            ),
            (
                body(&["push-cert\0 push-options", "certificate version 0.1\n"]),
                "ended inside the push certificate",
            ),
            (
                body(&[
                    &format!("{A} {B} refs/heads/x\0push-options"),
                    "0000",
                    "opt",
                ]),
                "ended inside the push options",
            ),
            (
                b"PACK".to_vec(),
                "pkt-line at byte 0: bad pkt-line length \"PACK\"",
            ),
            (b"0003".to_vec(), "invalid pkt-line length 0003"),
            (
                [body(&[&first]), b"fff1".to_vec()].concat(),
                "pkt-line at byte 116: pkt-line length 65521 exceeds 65520",
            ),
            (
                body(&["0001"]),
                "unexpected special packet 0001/0002 at byte 0",
            ),
            (
                body(&[&first, "0002"]),
                "unexpected special packet 0001/0002 at byte 116: expected a command or flush-pkt",
            ),
            (
                body(&[&format!("zz{} {B} refs/heads/x", &A[2..]), "0000"]),
                "command 1: bad object id \"zz111",
            ),
            (
                body(&[&format!("{} {B} refs/heads/x", &A[1..]), "0000"]),
                "command 1: bad object id \"111111111111111111111111111111111111111\": expected 40 or 64",
            ),
            (
                body(&[&first, &format!("{A} {sha256} refs/heads/y"), "0000"]),
                "command 2: object id has 64 hex digits, expected 40",
            ),
            (
                body(&[
                    &format!("{sha256} {sha256} refs/heads/x\0object-format=sha1"),
                    "0000",
                ]),
                "command 1: object id has 64 hex digits, expected 40",
            ),
            (
                body(&[&format!("shallow {sha256}"), &first, "0000"]),
                "command 1: object id has 40 hex digits, expected 64",
            ),
            (
                body(&[
                    &format!("shallow {sha256}"),
                    &format!("{A} {B} refs/heads/x\0object-format=sha1"),
                    "0000",
                ]),
                "shallow line 1: object id has 64 hex digits, expected 40",
            ),
            (
                body(&[&format!("{A} {B} refs/heads/x\0object-format=md5"), "0000"]),
                "unknown object-format \"md5\"",
            ),
            (
                body(&[&format!("{A} {B} refs/heads/x\0caps\x01"), "0000"]),
                "capability list is not printable ASCII",
            ),
            (
                body(&["shallow xyz", "0000"]),
                "shallow line 1: bad object id \"xyz\"",
            ),
            (
                body(&[&first, &format!("{A} {B} refs/heads/y\0caps"), "0000"]),
                "command 2: capabilities are only allowed on the first command",
            ),
            (
                body(&[&first, "hello", "0000"]),
                "command 2: expected \"OLD-ID NEW-ID REFNAME\": \"hello\"",
            ),
            (
                body(&[""]),
                "command 1: expected \"OLD-ID NEW-ID REFNAME\": \"\"",
            ),
            (
                body(&[&format!("{A} {B} refs/heads/a b"), "0000"]),
                "command 1: ref name \"refs/heads/a b\" is empty or contains",
            ),
            (
                body(&[&format!("{A} {B} "), "0000"]),
                "command 1: ref name \"\" is empty",
            ),
            (
                body(&[&format!("{A} {B} refs/heads/\u{e9}"), "0000"]),
                "ref name \"refs/heads/\\xc3\\xa9\"",
            ),
            (
                body(&[&format!("{A} {B} refs/heads/a\x7f"), "0000"]),
                "ref name \"refs/heads/a\\x7f\"",
            ),
            (
                body(&[&first, &format!("{A} {B} refs/heads/main"), "0000"]),
                "command 2: duplicate ref name refs/heads/main",
            ),
        ];
        for (input, want) in &cases {
            let err = read_all(input).expect_err(want).to_string();
            assert!(err.contains(want), "{}: {err}", printable(input, 200));
        }
        let mut bad = body(&[&format!("{A} {B} refs/heads/x\0push-options"), "0000"]);
        bad.extend_from_slice(b"0006\xff\xfe0000");
        assert_eq!(
            read_all(&bad).unwrap_err(),
            ReceivePackError::BadPushOption(Place::PushOption(1))
        );
    }

    /// Certificates are read the way git reads them, so a crafted one cannot carry a command
    /// that the policy does not see.
    #[test]
    fn push_certificates_like_git() {
        let a = format!("{A} {B} refs/heads/a");
        let secret = format!("{Z} {B} refs/heads/secret\n");
        let cert = |lines: &[&str]| {
            let mut parts = vec![
                "push-cert\0 report-status",
                "certificate version 0.1\n",
                "pusher x\n",
            ];
            parts.extend_from_slice(lines);
            body(&parts)
        };
        let sig = [
            "-----BEGIN PGP SIGNATURE-----\n",
            "c2ln\n",
            "-----END PGP SIGNATURE-----\n",
        ];
        let with_sig = |lines: &[&str]| {
            let mut all = lines.to_vec();
            all.extend_from_slice(&sig);
            all.extend_from_slice(&["push-cert-end\n", "0000"]);
            cert(&all)
        };
        let a_lf = format!("{a}\n");
        let ok: Vec<(Vec<u8>, Vec<&str>)> = vec![
            (with_sig(&["\n", &a_lf]), vec!["refs/heads/a"]),
            // A command split over two packets, two commands in one packet.
            (
                with_sig(&["\n", &a_lf[..50], &a_lf[50..]]),
                vec!["refs/heads/a"],
            ),
            (
                with_sig(&["\n", &format!("{a_lf}{secret}")]),
                vec!["refs/heads/a", "refs/heads/secret"],
            ),
            // The blank line is found in the joined text, not per packet.
            (
                with_sig(&["certificate-ish", "\n", "\n", &a_lf]),
                vec!["refs/heads/a"],
            ),
            // Ended by a flush instead of push-cert-end; no signature.
            (cert(&["\n", &a_lf, "0000"]), vec!["refs/heads/a"]),
            // Bytes after a NUL are dropped, as git's strbuf_addstr does.
            (
                with_sig(&["\n", &format!("{a_lf}\0{secret}")]),
                vec!["refs/heads/a"],
            ),
            // An empty certificate has no commands.
            (body(&["push-cert\0 report-status", "0000"]), vec![]),
            // Nor does one in the header: git runs every command after the blank line.
            (
                cert(&["-----BEGIN X\n", "\n", &secret, "push-cert-end\n", "0000"]),
                vec!["refs/heads/secret"],
            ),
            // A signature in a format git knows ends the commands.
            (
                cert(&[
                    "\n",
                    &a_lf,
                    "-----BEGIN SSH SIGNATURE-----\n",
                    "push-cert-end\n",
                    "0000",
                ]),
                vec!["refs/heads/a"],
            ),
        ];
        for (input, want) in ok {
            let header =
                read_all(&input).unwrap_or_else(|e| panic!("{}: {e}", printable(&input, 400)));
            let names: Vec<&str> = header.commands.iter().map(|c| c.name.as_str()).collect();
            assert_eq!(names, want, "{}", printable(&input, 400));
            assert!(header.push_cert);
        }
        let bad: Vec<(Vec<u8>, &str)> = vec![
            // A command without LF runs into a fake signature line: git would see
            // "refs/heads/a-----BEGIN PGP SIGNATURE-----" and then refs/heads/secret.
            (
                with_sig(&["\n", &a, "-----BEGIN PGP SIGNATURE-----\n", &secret]),
                "command 1: ref name \"refs/heads/a-----BEGIN PGP SIGNATURE-----\"",
            ),
            // A second signature start: the first one is a command line for git.
            (
                with_sig(&["\n", &a_lf, "-----BEGIN PGP SIGNATURE-----\n", &secret]),
                "command 2: bad object id \"-----BEGIN\"",
            ),
            (
                with_sig(&["no blank line\n", &a_lf]),
                "push certificate: no blank line after the header",
            ),
            // An unknown -----BEGIN line does not end the commands: git would run those
            // after it.
            (
                cert(&[
                    "\n",
                    &a_lf,
                    "-----BEGIN NOTHING-----\n",
                    &secret,
                    "push-cert-end\n",
                    "0000",
                ]),
                "command 2: expected \"OLD-ID NEW-ID REFNAME\": \"-----BEGIN NOTHING-----\"",
            ),
            // A signature before the blank line leaves git no commands: refused.
            (
                cert(&[
                    "-----BEGIN PGP SIGNATURE-----\n",
                    "\n",
                    &secret,
                    "push-cert-end\n",
                    "0000",
                ]),
                "push certificate: a signature begins before the commands",
            ),
            (
                with_sig(&["\n", &a_lf, "-----BEGIN NOTHING-----\n", &secret]),
                "command 2: expected \"OLD-ID NEW-ID REFNAME\": \"-----BEGIN NOTHING-----\"",
            ),
            (with_sig(&["\n", &a_lf, "\n"]), "command 2: expected"),
            // "push-cert-end" without LF does not end the certificate.
            (
                cert(&["\n", &a_lf, "push-cert-end", "0000"]),
                "command 2: expected \"OLD-ID NEW-ID REFNAME\": \"push-cert-end\"",
            ),
            (
                cert(&["\n", &a_lf, "push-cert-end\n", &secret, "0000"]),
                "unexpected a data packet",
            ),
            (cert(&["\n", &a_lf, "0001"]), "unexpected special packet"),
            (
                cert(&["\n", &a_lf]),
                "request body ended inside the push certificate",
            ),
            (
                cert(&["\n", &a_lf, &a_lf, "0000"]),
                "command 2: duplicate ref name refs/heads/a",
            ),
        ];
        for (input, want) in bad {
            let err = read_all(&input).expect_err(want).to_string();
            assert!(err.contains(want), "{}: {err}", printable(&input, 400));
        }
    }

    #[test]
    fn errors_are_final() {
        let mut reader = CommandReader::new(Limits::default());
        let err = reader.feed(b"0003").unwrap_err();
        assert_eq!(reader.feed(capture("fast-forward")), Err(err.clone()));
        assert_eq!(reader.finish(), Err(err));
    }

    #[test]
    fn limits() {
        let lines: Vec<String> = (0..4).map(|i| format!("{A} {B} refs/heads/b{i}")).collect();
        let mut parts: Vec<&str> = lines.iter().map(String::as_str).collect();
        parts.push("0000");
        let four = body(&parts);
        let read = |max_commands, max_header_bytes, data: &[u8]| {
            let mut reader = CommandReader::new(Limits {
                max_commands,
                max_header_bytes,
            });
            reader.feed(data)
        };
        assert_eq!(
            read(4, four.len(), &four)
                .unwrap()
                .map(|h| h.commands.len()),
            Some(4)
        );
        assert_eq!(
            read(3, 1 << 20, &four),
            Err(ReceivePackError::TooManyCommands(3))
        );
        assert_eq!(
            read(4, four.len() - 1, &four),
            Err(ReceivePackError::HeaderTooLarge(four.len() - 1))
        );
        // A refusal is framed in the side-band the first command asked for.
        let first = format!("{}\0report-status side-band-64k", lines[0]);
        let asked = body(&[first.as_str(), &lines[1], &lines[2], &lines[3], "0000"]);
        let mut reader = CommandReader::new(Limits {
            max_commands: 3,
            max_header_bytes: 1 << 20,
        });
        assert_eq!(reader.side_band(), SideBand::None);
        assert_eq!(
            reader.feed(&asked),
            Err(ReceivePackError::TooManyCommands(3))
        );
        assert_eq!(reader.side_band(), SideBand::Band64k);
        let mut reader = CommandReader::new(Limits::default());
        assert!(reader.feed(&asked).unwrap().is_some());
        assert_eq!(reader.side_band(), SideBand::Band64k);
        // The limit holds however the body is split, and bytes past it are not buffered.
        let mut reader = CommandReader::new(Limits {
            max_commands: 10,
            max_header_bytes: 100,
        });
        assert_eq!(reader.feed(&four[..99]), Ok(None));
        assert_eq!(
            reader.feed(&four[99..]),
            Err(ReceivePackError::HeaderTooLarge(100))
        );
        let mut reader = CommandReader::new(Limits {
            max_commands: 10,
            max_header_bytes: 100,
        });
        let huge = [&b"fff0"[..], &[b'x'; 1 << 20]].concat();
        assert_eq!(
            reader.feed(&huge),
            Err(ReceivePackError::HeaderTooLarge(100))
        );
        assert!(reader.pending.len() <= 100);
    }

    #[test]
    fn defaults() {
        assert_eq!(
            Limits::default(),
            Limits {
                max_commands: 1000,
                max_header_bytes: 1048576
            }
        );
    }
}
