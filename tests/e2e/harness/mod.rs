//! Building blocks for end-to-end tests: the stand-in, gitgate, and the sandbox.

pub mod gitgate;
pub mod raw;
pub mod relay;
pub mod sandbox;

pub use gitgate::{Gitgate, app_config, limited_config, upstream};
pub use sandbox::{Sandbox, text};

use gitgate_standin::StandIn;

/// A stand-in with the default installations and repositories.
pub fn standin() -> StandIn {
    StandIn::start(Default::default()).expect("start the GitHub stand-in")
}

/// Asserts that `text` (from `what`) holds no credential in any form the stand-in knows:
/// a token raw or base64-encoded in a `Basic` value, or an App JWT.
#[track_caller]
pub fn assert_no_secret(standin: &StandIn, what: &str, text: &str) {
    for secret in standin.secrets() {
        assert!(
            !text.contains(&secret),
            "{what} holds a credential ({secret}):\n{text}"
        );
    }
}

/// The usual policy: acme/app and acme/lib-* readable, pushes to main, release/* and v* tags.
pub const POLICY: &str = "{allowedRepos: [acme/app, acme/lib-*, bob/tools], allowedRefs: [main, release/*, refs/tags/v*], allowHosts: [tunnel.test]}";

/// Writes `mib` MiB of incompressible bytes to `path`.
pub fn write_noise(path: &std::path::Path, mib: usize) {
    use std::io::Write;
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut chunk = vec![0u8; 1 << 20];
    for _ in 0..mib {
        for byte in chunk.iter_mut() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *byte = state as u8;
        }
        file.write_all(&chunk).expect("write");
    }
    file.flush().expect("flush");
}

/// The largest receive-pack body (bytes) the stand-in has read so far.
pub fn largest_receive_pack_body(standin: &StandIn) -> u64 {
    standin
        .requests()
        .iter()
        .filter(|r| r.target.ends_with("/git-receive-pack"))
        .map(|r| r.body_bytes)
        .max()
        .unwrap_or(0)
}

/// How many receive-pack POSTs reached the stand-in.
pub fn receive_pack_posts(standin: &StandIn) -> usize {
    standin
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.target.ends_with("/git-receive-pack"))
        .count()
}
