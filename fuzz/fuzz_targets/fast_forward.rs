//! Walks a fuzzed commit graph: `Proven` exactly when `old` is reachable from `new`
//! through the given commits; otherwise every commit where the walk left them is
//! reachable and outside them.
#![no_main]

use std::collections::{HashMap, HashSet};

use gitgate_policy::{FastForward, ObjectId, fast_forward};
use libfuzzer_sys::fuzz_target;

fn id(n: u8) -> ObjectId {
    ObjectId::parse(&format!("{n:02x}").repeat(20)).expect("hex id")
}

fuzz_target!(|data: &[u8]| {
    // Byte pairs are edges child -> parent (cycles allowed: a crafted pack may claim them);
    // the first two bytes are old and new.
    let [old, new, edges @ ..] = data else { return };
    let mut commits: HashMap<ObjectId, Vec<ObjectId>> = HashMap::new();
    for pair in edges.chunks_exact(2) {
        commits.entry(id(pair[0] % 32)).or_default().push(id(pair[1] % 32));
    }
    let (old, new) = (id(old % 32), id(new % 32));
    let mut reachable = HashSet::from([new.clone()]);
    let mut stack = vec![new.clone()];
    while let Some(c) = stack.pop() {
        for p in commits.get(&c).into_iter().flatten() {
            if reachable.insert(p.clone()) {
                stack.push(p.clone());
            }
        }
    }
    match fast_forward(&commits, &old, &new) {
        FastForward::Proven => assert!(reachable.contains(&old)),
        FastForward::Ask(heads) => {
            assert!(!reachable.contains(&old));
            for head in &heads {
                assert!(reachable.contains(head) && !commits.contains_key(head));
            }
        }
    }
});
