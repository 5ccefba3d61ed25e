//! A pushed pack, read as gitgate reads one (both passes, every want): any bytes are read
//! or refused, never a panic, a hang or unbounded memory. The first byte picks whether the
//! trailing checksum is computed for the rest (so that crafted entries get past it) and
//! the blob size limit.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [mode, pack @ ..] = data else { return };
    let max_blob = match (mode >> 1) & 3 {
        0 => None,
        1 => Some(0),
        2 => Some(16),
        _ => Some(4096),
    };
    gitgate_proxy::fuzzing::pushed_pack(pack, mode & 1 == 1, max_blob);
});
