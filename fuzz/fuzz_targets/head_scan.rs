//! The smuggling scan never panics and gives the same answer for any split of the stream.
#![no_main]

use gitgate_policy::http_framing::HeadScan;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, stream)) = data.split_first() else {
        return;
    };
    let cut = usize::from(cut) * stream.len() / 255;
    let mut whole = HeadScan::default();
    whole.feed(stream);
    let mut split = HeadScan::default();
    split.feed(&stream[..cut]);
    split.feed(&stream[cut..]);
    assert_eq!(whole.conflict(), split.conflict());
});
