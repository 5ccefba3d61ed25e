//! The git smart-HTTP pieces: request classification, pkt-line framing, the receive-pack
//! command list, and the replies gitgate sends itself.

pub mod lfs;
pub mod pktline;
pub mod receive_pack;
pub mod report;
pub mod request;
pub mod sideband;

/// Whether the capability `token` a client sent asks for `name`, as git reads it: the
/// name alone or with a value (`push-options`, `push-options=x`). Reading it any other
/// way than git and GitHub do would make gitgate misread what follows the commands.
pub(crate) fn asks_for(token: &str, name: &str) -> bool {
    token
        .strip_prefix(name)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('='))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_capability_is_asked_for_with_or_without_a_value() {
        assert!(super::asks_for("push-options", "push-options"));
        assert!(super::asks_for("push-options=x", "push-options"));
        assert!(!super::asks_for("push-optionsx", "push-options"));
        assert!(!super::asks_for("side-band-64k", "side-band"));
        assert!(!super::asks_for("push", "push-options"));
    }
}
