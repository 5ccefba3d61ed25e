//! Diffs fuzzed trees under fuzzed protectedPaths patterns: never panics, stays within
//! its bounds, and gives the same answer twice.
#![no_main]

use std::collections::HashMap;

use gitgate_policy::{ObjectId, PackFacts, Policy, ServerObjects, TreeEntry};
use libfuzzer_sys::fuzz_target;

fn id(n: u8) -> ObjectId {
    ObjectId::parse(&format!("{n:02x}").repeat(20)).expect("hex id")
}

const NAMES: [&str; 6] = [".github", "workflows", "ci.yml", "CODEOWNERS", "src", "x"];
const PATTERNS: [&str; 4] = [".github/workflows/**", "CODEOWNERS", "**/x", "src"];

/// A policy per subset of [`PATTERNS`] (bit i: pattern i), compiled once.
fn policies() -> &'static [Option<Policy>; 16] {
    static POLICIES: std::sync::OnceLock<[Option<Policy>; 16]> = std::sync::OnceLock::new();
    POLICIES.get_or_init(|| {
        std::array::from_fn(|choice| {
            let patterns: Vec<&str> = PATTERNS
                .iter()
                .enumerate()
                .filter(|(i, _)| choice & (1 << i) != 0)
                .map(|(_, p)| *p)
                .collect();
            if patterns.is_empty() {
                return None;
            }
            let yaml = format!("allowedRefs: ['*']\nprotectedPaths: {patterns:?}\n");
            Policy::from_yaml(&yaml, &["github.com".to_owned()]).ok()
        })
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&choice, rest)) = data.split_first() else { return };
    let Some(policy) = &policies()[usize::from(choice) % 16] else { return };
    // Each 4 bytes: tree, name, kind (tree or file), target; trees 0-15 are the pack's,
    // 16-31 the server's; commit 100 has tree 0 and parent 101 (tree 16).
    let mut facts = PackFacts {
        commits: HashMap::from([(id(100), vec![id(101)])]),
        commit_trees: HashMap::from([(id(100), id(0))]),
        ..PackFacts::default()
    };
    let mut server = ServerObjects {
        commit_trees: HashMap::from([(id(101), id(16))]),
        ..ServerObjects::default()
    };
    for entry in rest.chunks_exact(4) {
        let tree = entry[0] % 32;
        let name = NAMES[usize::from(entry[1]) % NAMES.len()].to_owned();
        let mode = if entry[2] % 2 == 0 { 0o040000 } else { 0o100644 };
        let target = id(entry[3] % 32);
        let side = if tree < 16 { &mut facts.trees } else { &mut server.trees };
        let entries = side.entry(id(tree)).or_default();
        if !entries.iter().any(|e: &TreeEntry| e.name == name) {
            entries.push(TreeEntry { name, mode, id: target });
        }
    }
    let first = policy.protected_changes(&facts, &server, &[]);
    assert_eq!(first, policy.protected_changes(&facts, &server, &[]));
});
