//! Maps a GraphQL request body to its checks: never panics, and a mapped document has a
//! catalogue operation for every root field.
#![no_main]

use gitgate_policy::api::analyse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(fields) = analyse(data) {
        assert!(!fields.is_empty());
        assert!(fields.iter().all(|f| !f.operations.is_empty()));
    }
});
