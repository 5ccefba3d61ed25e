//! Side-band multiplexing: each packet's payload starts with a band byte (1 data, 2 progress
//! and messages, 3 fatal error).

use crate::git::pktline::{MAX_PKT_LEN, write_len};

/// Data bytes per packet with `side-band` (git sends packets of at most 1000 bytes).
pub const SIDE_BAND_MAX_DATA: usize = 1000 - 5;
/// Data bytes per packet with `side-band-64k`.
pub const SIDE_BAND_64K_MAX_DATA: usize = MAX_PKT_LEN - 5;

/// Band 1: the multiplexed data stream.
pub const BAND_DATA: u8 = 1;
/// Band 2: progress and messages, shown as `remote: …`.
pub const BAND_PROGRESS: u8 = 2;
/// Band 3: a fatal error message.
pub const BAND_ERROR: u8 = 3;

/// Which side-band the client asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SideBand {
    /// No multiplexing.
    None,
    /// `side-band`: small packets.
    Band,
    /// `side-band-64k`: full-size packets.
    Band64k,
}

impl SideBand {
    /// Picks the side-band from a capability list (`side-band-64k` wins).
    pub fn from_capabilities<S: AsRef<str>>(capabilities: &[S]) -> SideBand {
        let has = |name: &str| {
            capabilities
                .iter()
                .any(|c| super::asks_for(c.as_ref(), name))
        };
        if has("side-band-64k") {
            SideBand::Band64k
        } else if has("side-band") {
            SideBand::Band
        } else {
            SideBand::None
        }
    }

    /// Data bytes per packet, `None` without side-band.
    pub fn max_data(self) -> Option<usize> {
        match self {
            SideBand::None => None,
            SideBand::Band => Some(SIDE_BAND_MAX_DATA),
            SideBand::Band64k => Some(SIDE_BAND_64K_MAX_DATA),
        }
    }
}

/// Frames `data` as packets on `band`, at most `max` data bytes each (clamped to
/// 1..=[`SIDE_BAND_64K_MAX_DATA`]). Empty data gives no packets.
pub fn sideband(band: u8, data: &[u8], max: usize) -> Vec<u8> {
    let max = max.clamp(1, SIDE_BAND_64K_MAX_DATA);
    let mut out = Vec::with_capacity(data.len() + data.len().div_ceil(max) * 5);
    for chunk in data.chunks(max) {
        write_len(chunk.len() + 5, &mut out);
        out.push(band);
        out.extend_from_slice(chunk);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::pktline::{Decoded, Pkt, decode};

    #[test]
    fn frames() {
        assert_eq!(sideband(2, b"hi\n", 995), b"0008\x02hi\n");
        assert_eq!(sideband(1, b"abcde", 2), b"0007\x01ab0007\x01cd0006\x01e");
        assert_eq!(sideband(1, b"", 995), b"");
        assert_eq!(sideband(1, b"ab", 0), b"0006\x01a0006\x01b");
    }

    #[test]
    fn chunks_fit_the_limits() {
        for (mode, data_len) in [(SideBand::Band, 5000), (SideBand::Band64k, 200_000)] {
            let max = mode.max_data().unwrap();
            let data: Vec<u8> = (0..data_len).map(|i| (i % 251) as u8).collect();
            let framed = sideband(BAND_DATA, &data, max);
            let (mut rest, mut joined) = (&framed[..], Vec::new());
            while !rest.is_empty() {
                let Ok(Decoded::Complete {
                    pkt: Pkt::Data(payload),
                    consumed,
                }) = decode(rest)
                else {
                    panic!("bad framing");
                };
                assert!(payload.len() <= max + 1);
                assert_eq!(payload[0], BAND_DATA);
                joined.extend_from_slice(&payload[1..]);
                rest = &rest[consumed..];
            }
            assert_eq!(joined, data);
        }
        assert_eq!(SIDE_BAND_64K_MAX_DATA, 65515);
    }

    #[test]
    fn from_capabilities() {
        for (caps, want) in [
            (&["report-status", "side-band-64k"][..], SideBand::Band64k),
            (&["side-band", "side-band-64k"], SideBand::Band64k),
            (&["side-band"], SideBand::Band),
            (&["report-status"], SideBand::None),
            (&["side-band-64kx"], SideBand::None),
        ] {
            assert_eq!(SideBand::from_capabilities(caps), want, "{caps:?}");
        }
        assert_eq!(SideBand::None.max_data(), None);
    }
}
