//! Reads LFS batch requests and responses: never panics, and no storage host is granted
//! for longer than the cap.
#![no_main]

use std::time::{Duration, SystemTime};

use gitgate_policy::git::lfs::{MAX_GRANT, batch_request, storage_grants};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = batch_request(data);
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1 << 30);
    if let Ok(grants) = storage_grants(data, now, |_| false) {
        assert!(grants.iter().all(|g| g.until > now && g.until <= now + MAX_GRANT));
    }
});
