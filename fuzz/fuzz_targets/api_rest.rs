//! Classifies `METHOD\nPATH` as a REST call; an accepted call's upstream target
//! classifies to the same call.
#![no_main]

use gitgate_policy::api::classify;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((method, path)) = std::str::from_utf8(data)
        .ok()
        .and_then(|s| s.split_once('\n'))
    else {
        return;
    };
    if let Ok(call) = classify(method, path) {
        assert_eq!(classify(method, &call.target), Ok(call));
    }
});
