//! Spotting HTTP/1 request heads that carry both `Content-Length` and `Transfer-Encoding`,
//! in the raw bytes a client sends (an ambiguous framing used to smuggle requests).
//!
//! The scan is line-based: a line ending in ` HTTP/1.0` or ` HTTP/1.1` starts a head, a
//! blank line ends it, and header lines in between are matched by name, case-insensitively.
//! Inside a head such a line is a header like any other (`User-Agent: x HTTP/1.1`): it
//! must not wipe what the head carried so far.
//! It is incremental (any split of the stream gives the same answer), keeps a fixed 27
//! bytes of state whatever the input, and can only err towards flagging: a body that
//! itself contains such a head is flagged too.

/// The longest header-name prefix the scan needs, `transfer-encoding:`.
const PREFIX: usize = 18;
/// The longest line ending the scan needs, ` http/1.1` (the `\r` is kept apart).
const TAIL: usize = 9;

/// Incremental, bounded scanner over the bytes of an HTTP/1 request stream.
#[derive(Debug, Default)]
pub struct HeadScan {
    prefix: [u8; PREFIX],
    tail: [u8; TAIL],
    len: usize,
    carriage_return: bool,
    head: Option<Fields>,
    conflict: bool,
}

/// Framing headers seen in the head being read.
#[derive(Debug, Default, Clone, Copy)]
struct Fields {
    content_length: bool,
    transfer_encoding: bool,
}

impl HeadScan {
    /// Scans the next bytes of the stream, in any split.
    ///
    /// Work is per line, not per byte: only a line's first [`PREFIX`] and last [`TAIL`]
    /// bytes matter, and line ends are found with `memchr`, so a pushed pack costs little
    /// more than the search for its newlines.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while let Some(end) = memchr::memchr(b'\n', bytes) {
            self.extend(&bytes[..end]);
            self.end_line();
            bytes = &bytes[end + 1..];
        }
        self.extend(bytes);
    }

    /// Adds a piece of the current line (no `\n` in it). One `\r` right before the line's
    /// `\n` is not part of the line; it is held back until the next byte shows whether it is.
    fn extend(&mut self, piece: &[u8]) {
        let Some((&last, rest)) = piece.split_last() else {
            return;
        };
        if std::mem::take(&mut self.carriage_return) {
            self.push(b"\r");
        }
        if last == b'\r' {
            self.push(rest);
            self.carriage_return = true;
        } else {
            self.push(piece);
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        if self.len < PREFIX {
            let n = bytes.len().min(PREFIX - self.len);
            self.prefix[self.len..self.len + n].copy_from_slice(&bytes[..n]);
            self.prefix[self.len..self.len + n].make_ascii_lowercase();
        }
        if bytes.len() >= TAIL {
            self.tail.copy_from_slice(&bytes[bytes.len() - TAIL..]);
        } else {
            self.tail.copy_within(bytes.len().., 0);
            self.tail[TAIL - bytes.len()..].copy_from_slice(bytes);
        }
        self.tail[TAIL - bytes.len().min(TAIL)..].make_ascii_lowercase();
        self.len = self.len.saturating_add(bytes.len());
    }

    /// Whether any head so far carried both `Content-Length` and `Transfer-Encoding`.
    pub fn conflict(&self) -> bool {
        self.conflict
    }

    fn end_line(&mut self) {
        let len = std::mem::take(&mut self.len);
        self.carriage_return = false;
        let prefix = &self.prefix[..len.min(PREFIX)];
        if len == 0 {
            self.head = None;
        } else if len >= TAIL
            && (&self.tail == b" http/1.1" || &self.tail == b" http/1.0")
            && self.head.is_none()
        {
            self.head = Some(Fields::default());
        } else if let Some(fields) = &mut self.head {
            if prefix.starts_with(b"content-length:") {
                fields.content_length = true;
            } else if prefix.starts_with(b"transfer-encoding:") {
                fields.transfer_encoding = true;
            }
            self.conflict |= fields.content_length && fields.transfer_encoding;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn scan(bytes: &[u8]) -> bool {
        let mut scan = HeadScan::default();
        scan.feed(bytes);
        scan.conflict()
    }

    const BOTH: &str = "POST /a.git/git-upload-pack HTTP/1.1\r\nHost: github.com\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n";

    #[test]
    fn flags_a_head_with_both_headers_in_either_order_and_case() {
        assert!(scan(BOTH.as_bytes()));
        assert!(scan(
            b"POST / HTTP/1.1\nTRANSFER-ENCODING: chunked\nhost: x\ncontent-length: 4\n\n"
        ));
        assert!(scan(
            b"GET / HTTP/1.0\r\ncontent-length:4\r\ntransfer-encoding:chunked\r\n\r\n"
        ));
    }

    #[test]
    fn leaves_ordinary_heads_alone() {
        assert!(!scan(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n0000"
        ));
        assert!(!scan(
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n0000\r\n0\r\n\r\n"
        ));
        assert!(!scan(
            b"POST / HTTP/1.1\r\nX-Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
        ));
    }

    #[test]
    fn a_blank_line_ends_the_head() {
        // Content-Length in one request, Transfer-Encoding in the next: no conflict.
        assert!(!scan(
            b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\nPOST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        ));
        // Header-like lines in a body, outside any head, are ignored.
        assert!(!scan(
            b"POST / HTTP/1.1\r\nContent-Length: 50\r\n\r\nContent-Length: 1\r\nTransfer-Encoding: x\r\n"
        ));
    }

    #[test]
    fn a_head_glued_to_the_previous_body_is_still_seen() {
        assert!(scan(
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcPOST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
        ));
    }

    #[test]
    fn only_the_carriage_return_before_a_line_feed_ends_a_line_in_any_split() {
        // "HTTP/1.1\r\r\n" is not a request line: one \r is part of it.
        let stream =
            b"POST / HTTP/1.1\r\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n";
        for cut in 0..stream.len() {
            let mut s = HeadScan::default();
            s.feed(&stream[..cut]);
            s.feed(&stream[cut..]);
            assert!(!s.conflict(), "cut at {cut}");
        }
        assert!(!model(stream));
    }

    #[test]
    fn a_header_ending_like_a_request_line_does_not_hide_the_other_framing_header() {
        for pad in ["X-Pad: HTTP/1.1", "User-Agent: curl http/1.0"] {
            assert!(scan(
                format!("POST / HTTP/1.1\r\nContent-Length: 4\r\n{pad}\r\nTransfer-Encoding: chunked\r\n\r\n").as_bytes()
            ), "{pad}");
            assert!(scan(
                format!("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n{pad}\r\nContent-Length: 4\r\n\r\n").as_bytes()
            ), "{pad}");
        }
    }

    #[test]
    fn the_flag_is_sticky() {
        let mut s = HeadScan::default();
        s.feed(BOTH.as_bytes());
        s.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(s.conflict());
    }

    /// The scan's definition, line by line over the whole stream: a line is what lies
    /// between `\n`s, less one `\r` at its end, compared case-insensitively.
    fn model(stream: &[u8]) -> bool {
        let mut lines: Vec<&[u8]> = stream.split(|&b| b == b'\n').collect();
        lines.pop(); // an unfinished last line has not ended yet
        let (mut head, mut conflict) = (None::<(bool, bool)>, false);
        for line in lines {
            let line = line
                .strip_suffix(b"\r")
                .unwrap_or(line)
                .to_ascii_lowercase();
            if line.is_empty() {
                head = None;
            } else if head.is_none()
                && (line.ends_with(b" http/1.1") || line.ends_with(b" http/1.0"))
            {
                head = Some((false, false));
            } else if let Some((length, encoding)) = &mut head {
                *length |= line.starts_with(b"content-length:");
                *encoding |= line.starts_with(b"transfer-encoding:");
                conflict |= *length && *encoding;
            }
        }
        conflict
    }

    fn header_soup() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(&b"POST / HTTP/1.1"[..]),
            Just(&b"get /x http/1.0"[..]),
            Just(&b"Content-Length: 4"[..]),
            Just(&b"TRANSFER-ENCODING: chunked"[..]),
            Just(&b"transfer-encoding:"[..]),
            Just(&b"Host: x"[..]),
            Just(&b"X: HTTP/1.1"[..]),
            Just(&b"\r\n"[..]),
            Just(&b"\n"[..]),
            Just(&b"\r"[..]),
            Just(&b" "[..]),
            Just(&b"\x00\xff"[..]),
        ];
        proptest::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #[test]
        fn the_scan_agrees_with_the_line_by_line_model_in_any_split(
            stream in prop_oneof![header_soup(), proptest::collection::vec(any::<u8>(), 0..400)],
            cuts in proptest::collection::vec(0usize..400, 0..6),
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(stream.len())).collect();
            cuts.sort_unstable();
            let mut scan = HeadScan::default();
            let mut from = 0;
            for cut in cuts.into_iter().chain([stream.len()]) {
                scan.feed(&stream[from..cut]);
                from = cut;
            }
            prop_assert_eq!(scan.conflict(), model(&stream));
        }

        #[test]
        fn any_split_gives_the_same_answer(
            bytes in proptest::collection::vec(any::<u8>(), 0..300),
            cut in 0usize..300,
            glue in proptest::sample::select(vec![BOTH, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", ""]),
        ) {
            let mut whole = bytes.clone();
            whole.extend_from_slice(glue.as_bytes());
            let cut = cut.min(whole.len());
            let mut split = HeadScan::default();
            split.feed(&whole[..cut]);
            split.feed(&whole[cut..]);
            prop_assert_eq!(split.conflict(), scan(&whole));
        }

        #[test]
        fn a_conflicting_head_after_any_bytes_ending_a_line_is_flagged(
            bytes in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let mut whole = bytes;
            whole.extend_from_slice(b"\r\n");
            whole.extend_from_slice(BOTH.as_bytes());
            prop_assert!(scan(&whole));
        }
    }
}
