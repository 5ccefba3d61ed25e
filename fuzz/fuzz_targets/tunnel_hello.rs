//! A tunnel's first bytes, in any pieces, are read without panicking, and split
//! differently they give the same answer.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, stream)) = data.split_first() else {
        return;
    };
    let cut = usize::from(cut) * stream.len() / 255;
    let whole = gitgate_proxy::fuzzing::tunnel_hello(&[stream], "tunnel.example");
    let split =
        gitgate_proxy::fuzzing::tunnel_hello(&[&stream[..cut], &stream[cut..]], "tunnel.example");
    // Fed whole, the reader may decide on bytes that, split, it decides on at the first
    // piece (a first byte that is no handshake); it never decides differently.
    if let (Some(whole), Some(split)) = (whole, split) {
        assert_eq!(whole, split);
    }
});
