//! Classifies `METHOD\nTARGET`; an accepted request's canonical target classifies to itself.
#![no_main]

use gitgate_policy::git::request::classify;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((method, target)) = std::str::from_utf8(data)
        .ok()
        .and_then(|s| s.split_once('\n'))
    else {
        return;
    };
    if let Ok(request) = classify(method, target) {
        assert_eq!(classify(method, &request.canonical_target()), Ok(request));
    }
});
