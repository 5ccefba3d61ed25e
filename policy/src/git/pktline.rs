//! pkt-line framing: four lowercase hex digits giving the total length, then the payload.
//!
//! [`decode`] is incremental: it returns [`Decoded::NeedMore`] until a whole packet is in the
//! buffer, and never reads past it. `0004` (an empty data packet, which git itself tolerates)
//! is returned as `Pkt::Data(&[])`; callers decide whether an empty line is meaningful.

/// Largest packet including its 4-byte length prefix (git's `LARGE_PACKET_MAX`).
pub const MAX_PKT_LEN: usize = 65520;
/// Largest payload of a data packet.
pub const MAX_PAYLOAD_LEN: usize = MAX_PKT_LEN - 4;

/// One packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pkt<'a> {
    /// `0000`: end of a list or message.
    Flush,
    /// `0001`: protocol v2 section separator.
    Delim,
    /// `0002`: protocol v2 end of a stateless response.
    ResponseEnd,
    /// A data packet's payload.
    Data(&'a [u8]),
}

/// The result of [`decode`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A whole packet, taking `consumed` bytes of the buffer.
    Complete {
        /// The packet.
        pkt: Pkt<'a>,
        /// Bytes it occupies, length prefix included.
        consumed: usize,
    },
    /// The buffer holds only part of a packet.
    NeedMore,
}

/// A framing error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PktError {
    /// The length prefix is not four hex digits.
    #[error("bad pkt-line length {0:?}")]
    BadLength(String),
    /// `0003`, which no protocol defines.
    #[error("invalid pkt-line length 0003")]
    Reserved,
    /// A length above [`MAX_PKT_LEN`].
    #[error("pkt-line length {0} exceeds 65520")]
    TooLong(usize),
    /// A payload above [`MAX_PAYLOAD_LEN`] given to [`encode`].
    #[error("pkt-line payload of {0} bytes exceeds 65516")]
    PayloadTooLong(usize),
}

/// Decodes the packet at the start of `buf`.
pub fn decode(buf: &[u8]) -> Result<Decoded<'_>, PktError> {
    let Some(prefix) = buf.get(..4) else {
        return Ok(Decoded::NeedMore);
    };
    let len = length(prefix)?;
    let pkt = match len {
        0 => Pkt::Flush,
        1 => Pkt::Delim,
        2 => Pkt::ResponseEnd,
        len => match buf.get(4..len) {
            Some(payload) => Pkt::Data(payload),
            None => return Ok(Decoded::NeedMore),
        },
    };
    Ok(Decoded::Complete {
        pkt,
        consumed: len.max(4),
    })
}

/// The packet length a four-byte prefix gives (`0`–`2` for the special packets).
fn length(prefix: &[u8]) -> Result<usize, PktError> {
    let len = prefix.iter().try_fold(0usize, |acc, &b| {
        char::from(b)
            .to_digit(16)
            .map(|digit| acc * 16 + digit as usize)
    });
    match len.ok_or_else(|| PktError::BadLength(crate::text::printable(prefix, 4)))? {
        3 => Err(PktError::Reserved),
        len if len > MAX_PKT_LEN => Err(PktError::TooLong(len)),
        len => Ok(len),
    }
}

/// Appends `payload` as one data packet.
pub fn encode(payload: &[u8], out: &mut Vec<u8>) -> Result<(), PktError> {
    if payload.len() > MAX_PAYLOAD_LEN {
        return Err(PktError::PayloadTooLong(payload.len()));
    }
    write_len(payload.len() + 4, out);
    out.extend_from_slice(payload);
    Ok(())
}

/// Appends a length prefix (`len` includes the prefix itself; at most [`MAX_PKT_LEN`]).
pub(crate) fn write_len(len: usize, out: &mut Vec<u8>) {
    debug_assert!(len <= MAX_PKT_LEN);
    out.extend_from_slice(format!("{len:04x}").as_bytes());
}

/// Appends a flush packet (`0000`).
pub fn flush(out: &mut Vec<u8>) {
    out.extend_from_slice(b"0000");
}

/// Follows a pkt-line stream passing by, in any split, to tell whether it stands between
/// two packets: the only place something can be added that the reader still parses. Keeps
/// at most a partial length prefix; a malformed prefix ends the following for good.
#[derive(Clone, Debug, Default)]
pub struct Boundaries {
    /// Payload bytes of the current packet still to come.
    left: usize,
    /// A partial length prefix.
    prefix: [u8; 4],
    prefix_len: usize,
    lost: bool,
}

impl Boundaries {
    /// Follows `bytes`, the next part of the stream.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() && !self.lost {
            if self.left > 0 {
                let take = self.left.min(bytes.len());
                self.left -= take;
                bytes = &bytes[take..];
                continue;
            }
            let take = (4 - self.prefix_len).min(bytes.len());
            self.prefix[self.prefix_len..self.prefix_len + take].copy_from_slice(&bytes[..take]);
            self.prefix_len += take;
            bytes = &bytes[take..];
            if self.prefix_len == 4 {
                self.prefix_len = 0;
                match length(&self.prefix) {
                    Ok(len) => self.left = len.saturating_sub(4),
                    Err(_) => self.lost = true,
                }
            }
        }
    }

    /// Whether the bytes so far end exactly after a whole packet (or are none).
    pub fn at_boundary(&self) -> bool {
        !self.lost && self.left == 0 && self.prefix_len == 0
    }
}

/// Strips one trailing LF, which pkt-line text may or may not carry.
pub fn chomp(payload: &[u8]) -> &[u8] {
    payload.strip_suffix(b"\n").unwrap_or(payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn complete(pkt: Pkt<'_>, consumed: usize) -> Result<Decoded<'_>, PktError> {
        Ok(Decoded::Complete { pkt, consumed })
    }

    #[test]
    fn decodes() {
        for (input, want) in [
            (&b""[..], Ok(Decoded::NeedMore)),
            (b"00", Ok(Decoded::NeedMore)),
            (b"0000", complete(Pkt::Flush, 4)),
            (b"0000rest", complete(Pkt::Flush, 4)),
            (b"0001", complete(Pkt::Delim, 4)),
            (b"0002", complete(Pkt::ResponseEnd, 4)),
            (b"0003", Err(PktError::Reserved)),
            (b"0004", complete(Pkt::Data(b""), 4)),
            (b"0006a\n", complete(Pkt::Data(b"a\n"), 6)),
            (b"0006a\nxx", complete(Pkt::Data(b"a\n"), 6)),
            (b"0006a", Ok(Decoded::NeedMore)),
            (b"000A123456", complete(Pkt::Data(b"123456"), 10)),
            (b"fff0", Ok(Decoded::NeedMore)),
            (b"fff1", Err(PktError::TooLong(65521))),
            (b"ffff", Err(PktError::TooLong(65535))),
            (b"00g0", Err(PktError::BadLength("00g0".into()))),
            (b"+001", Err(PktError::BadLength("+001".into()))),
            (b" 001", Err(PktError::BadLength(" 001".into()))),
            (b"PACK", Err(PktError::BadLength("PACK".into()))),
        ] {
            assert_eq!(decode(input), want, "{input:?}");
        }
    }

    #[test]
    fn encodes() {
        let mut out = Vec::new();
        encode(b"unpack ok\n", &mut out).unwrap();
        flush(&mut out);
        encode(b"", &mut out).unwrap();
        assert_eq!(out, b"000eunpack ok\n00000004");
        let mut out = Vec::new();
        encode(&[b'x'; MAX_PAYLOAD_LEN], &mut out).unwrap();
        assert_eq!(&out[..4], b"fff0");
        assert_eq!(
            encode(&[0; MAX_PAYLOAD_LEN + 1], &mut out),
            Err(PktError::PayloadTooLong(65517))
        );
        assert_eq!(chomp(b"a\n"), b"a");
        assert_eq!(chomp(b"a\n\n"), b"a\n");
        assert_eq!(chomp(b"a"), b"a");
    }

    /// Every prefix of every captured push decodes to a prefix of the same packets.
    #[test]
    fn every_prefix_of_the_captures() {
        fn packets(mut buf: &[u8]) -> Vec<Pkt<'_>> {
            let mut out = Vec::new();
            // Stop at the pack, which is not pkt-line framed.
            while let Ok(Decoded::Complete { pkt, consumed }) = decode(buf) {
                out.push(pkt);
                buf = &buf[consumed..];
            }
            out
        }
        for (name, body) in crate::git::receive_pack::tests::CAPTURES {
            let all = packets(body);
            assert!(all.contains(&Pkt::Flush), "{name}");
            for cut in 0..=body.len() {
                let some = packets(&body[..cut]);
                assert_eq!(some[..], all[..some.len()], "{name} at {cut}");
            }
        }
    }

    #[test]
    fn boundaries_follow_packets_in_any_split() {
        let stream = b"000eunpack ok\n00000013\x01000eunpack ok\n00000004";
        let ends = [14usize, 18, 37, 41, 45];
        for split in 0..=stream.len() {
            let mut seen = Boundaries::default();
            seen.feed(&stream[..split]);
            assert_eq!(
                seen.at_boundary(),
                split == 0 || ends.contains(&split),
                "after {split} bytes"
            );
            seen.feed(&stream[split..]);
            assert!(seen.at_boundary());
        }
        for bad in [&b"zzzz"[..], b"0003", b"fff1"] {
            let mut seen = Boundaries::default();
            seen.feed(bad);
            assert!(!seen.at_boundary(), "{bad:?}");
            seen.feed(b"0000");
            assert!(!seen.at_boundary(), "lost for good after {bad:?}");
        }
    }

    proptest! {
        /// Whatever the packets and however the bytes come, the follower is at a boundary
        /// exactly where a packet ends.
        #[test]
        fn boundaries_agree_with_the_encoder(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8),
            cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..6),
        ) {
            let mut stream = Vec::new();
            let mut ends = vec![0];
            for payload in &payloads {
                encode(payload, &mut stream).unwrap();
                ends.push(stream.len());
            }
            flush(&mut stream);
            ends.push(stream.len());
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
            cuts.push(stream.len());
            cuts.sort_unstable();
            let (mut seen, mut at) = (Boundaries::default(), 0);
            for cut in cuts {
                seen.feed(&stream[at..cut]);
                at = cut;
                prop_assert_eq!(seen.at_boundary(), ends.contains(&at), "after {} bytes", at);
            }
        }

        #[test]
        fn roundtrip(payload in proptest::collection::vec(any::<u8>(), 0..2000), tail in proptest::collection::vec(any::<u8>(), 0..8)) {
            let mut buf = Vec::new();
            encode(&payload, &mut buf).unwrap();
            let len = buf.len();
            for cut in 0..len {
                prop_assert_eq!(decode(&buf[..cut]), Ok(Decoded::NeedMore));
            }
            buf.extend_from_slice(&tail);
            prop_assert_eq!(decode(&buf), Ok(Decoded::Complete { pkt: Pkt::Data(&payload), consumed: len }));
        }

        #[test]
        fn decode_never_panics_and_stays_in_bounds(buf in proptest::collection::vec(any::<u8>(), 0..70)) {
            if let Ok(Decoded::Complete { consumed, .. }) = decode(&buf) {
                prop_assert!(consumed <= buf.len());
                prop_assert!(consumed >= 4);
            }
        }
    }
}
