//! Decodes a stream of pkt-lines; every encoded payload must decode back to itself.
#![no_main]

use gitgate_policy::git::pktline::{Decoded, Pkt, decode, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Decoded::Complete { consumed, .. }) = decode(rest) {
        rest = &rest[consumed..];
    }
    let mut encoded = Vec::new();
    if encode(data, &mut encoded).is_ok() {
        let want = Decoded::Complete {
            pkt: Pkt::Data(data),
            consumed: encoded.len(),
        };
        assert_eq!(decode(&encoded), Ok(want));
    }
});
