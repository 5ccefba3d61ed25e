//! Rendering untrusted input inside messages.

use std::fmt::Write as _;

/// Renders `bytes` for an error message: printable ASCII as is, everything else as `\xNN`,
/// cut after `max` input bytes with a trailing `…`.
pub(crate) fn printable(bytes: &[u8], max: usize) -> String {
    let mut out = String::with_capacity(bytes.len().min(max) + 3);
    for &b in bytes.iter().take(max) {
        if b == b' ' || b.is_ascii_graphic() {
            out.push(char::from(b));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    if bytes.len() > max {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn renders_untrusted_bytes() {
        for (input, max, want) in [
            (&b"refs/heads/main"[..], 64, "refs/heads/main"),
            (b"a\nb\x00", 64, "a\\x0ab\\x00"),
            (b"caf\xc3\xa9", 64, "caf\\xc3\\xa9"),
            (b"abcdef", 3, "abc…"),
            (b"abc", 3, "abc"),
        ] {
            assert_eq!(printable(input, max), want, "{input:?}");
        }
    }
}
