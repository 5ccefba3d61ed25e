//! Building blocks for end-to-end tests: the stand-in, gitgate, and the sandbox.

pub mod gitgate;
pub mod raw;
pub mod relay;
pub mod sandbox;

pub use gitgate::{Gitgate, app_config, upstream};
pub use sandbox::{Sandbox, text};

use gitgate_standin::StandIn;

/// A stand-in with the default installations and repositories.
pub fn standin() -> StandIn {
    StandIn::start(Default::default()).expect("start the GitHub stand-in")
}

/// The usual policy: acme/app and acme/lib-* readable, pushes to main, release/* and v* tags.
pub const POLICY: &str = "{allowedRepos: [acme/app, acme/lib-*, bob/tools], allowedRefs: [main, release/*, refs/tags/v*], allowHosts: [tunnel.test]}";

/// How many receive-pack POSTs reached the stand-in.
pub fn receive_pack_posts(standin: &StandIn) -> usize {
    standin
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.target.ends_with("/git-receive-pack"))
        .count()
}
