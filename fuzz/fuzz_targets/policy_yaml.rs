//! Loads a policy from YAML and, if it compiles, renders it and asks it a few questions.
#![no_main]

use gitgate_policy::{HostName, Policy, RepoPath};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(yaml) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(policy) = Policy::from_yaml(yaml, &["github.com".to_owned()]) else {
        return;
    };
    let _ = policy.to_string();
    let _ = policy.decide_repo(&RepoPath::from_parts("acme", "app").expect("valid repo"));
    let _ = policy.decide_connect(&HostName::parse("crates.io").expect("valid host"), 443);
    let _ = policy.token_scope("acme");
});
