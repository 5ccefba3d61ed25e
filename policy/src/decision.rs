//! Outcomes of policy checks.

use crate::ref_update::RefUpdate;

/// A policy decision: whether it is allowed, which rule decided, and a message for the user
/// (without a `gitgate: ` prefix).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Decision {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// The matching pattern (`allowedRepos[acme/*]`, `allowHosts[*.crates.io]`,
    /// `githubHost`), or the list or rule that did not allow it (`allowedRepos`,
    /// `allowedRefs`, `allowDeletes`, `allowHosts`, `refName`, `atomic`).
    pub rule: String,
    /// A short human message.
    pub reason: String,
}

impl Decision {
    /// The rule of a ref that was allowed on its own but refused with the rest of an atomic
    /// push.
    pub const ATOMIC_RULE: &'static str = "atomic";
    /// The reason given with [`Decision::ATOMIC_RULE`].
    pub const ATOMIC_REASON: &'static str = "atomic push rejected: another ref was denied";

    /// An allowing decision.
    pub fn allow(rule: impl Into<String>, reason: impl Into<String>) -> Decision {
        Decision {
            allowed: true,
            rule: rule.into(),
            reason: reason.into(),
        }
    }

    /// A denying decision.
    pub fn deny(rule: impl Into<String>, reason: impl Into<String>) -> Decision {
        Decision {
            allowed: false,
            rule: rule.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn atomic() -> Decision {
        Decision::deny(Decision::ATOMIC_RULE, Decision::ATOMIC_REASON)
    }

    /// Whether this is the denial of an allowed ref caused by another ref of the same push.
    pub fn is_atomic_rejection(&self) -> bool {
        !self.allowed && self.rule == Decision::ATOMIC_RULE
    }
}

/// What to do with a `CONNECT host:port`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ConnectDecision {
    /// A GitHub host on port 443: terminate TLS and apply the git policy.
    Intercept,
    /// An `allowHosts` match: tunnel the bytes untouched.
    Tunnel(Decision),
    /// Refuse.
    Deny(Decision),
}

/// The decision on all commands of one push. Pushes are atomic: if any ref is denied, all are.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PushVerdict {
    /// Whether every command is allowed.
    pub allowed: bool,
    /// One entry per command, in input order.
    pub refs: Vec<(RefUpdate, Decision)>,
}

impl PushVerdict {
    /// The verdict on `refs` decided one by one: if any is denied, the allowed ones are
    /// denied too (rule `atomic`).
    pub(crate) fn atomic(mut refs: Vec<(RefUpdate, Decision)>) -> PushVerdict {
        let allowed = refs.iter().all(|(_, decision)| decision.allowed);
        if !allowed {
            for (_, decision) in refs.iter_mut().filter(|(_, d)| d.allowed) {
                *decision = Decision::atomic();
            }
        }
        PushVerdict { allowed, refs }
    }

    /// Every update denied with the same decision, e.g. when the repository itself is not
    /// allowed to be pushed to.
    pub fn reject_all(updates: &[RefUpdate], decision: &Decision) -> PushVerdict {
        PushVerdict {
            allowed: false,
            refs: updates
                .iter()
                .map(|update| (update.clone(), decision.clone()))
                .collect(),
        }
    }

    /// The first ref denied for its own sake (not merely for atomicity).
    pub fn first_denied(&self) -> Option<&(RefUpdate, Decision)> {
        self.refs
            .iter()
            .find(|(_, decision)| !decision.allowed && !decision.is_atomic_rejection())
    }
}
