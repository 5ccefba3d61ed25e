//! Decodes a stream of pkt-lines; every encoded payload must decode back to itself; the
//! boundary follower agrees with the decoder, fed whole or split in two.
#![no_main]

use gitgate_policy::git::pktline::{Boundaries, Decoded, Pkt, decode, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Decoded::Complete { consumed, .. }) = decode(rest) {
        rest = &rest[consumed..];
    }
    // The decoder stopped at a boundary exactly when it used every byte.
    let mut whole = Boundaries::default();
    whole.feed(data);
    assert_eq!(whole.at_boundary(), rest.is_empty());
    let split = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    let mut halves = Boundaries::default();
    halves.feed(&data[..split]);
    halves.feed(&data[split..]);
    assert_eq!(halves.at_boundary(), whole.at_boundary());
    let mut encoded = Vec::new();
    if encode(data, &mut encoded).is_ok() {
        let want = Decoded::Complete {
            pkt: Pkt::Data(data),
            consumed: encoded.len(),
        };
        assert_eq!(decode(&encoded), Ok(want));
    }
});
