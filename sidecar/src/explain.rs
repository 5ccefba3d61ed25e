//! `gitgate explain`: what the policy says about a clone or push, without any network.

use gitgate_policy::{Decision, ObjectFormat, ObjectId, Policy, RefName, RefUpdate, RepoPath};

use std::sync::Arc;

use crate::cli::ExplainAction;
use crate::config::Config;

/// The policy `explain` decides with: the profile's, or the single policy.
pub(crate) fn policy_of(config: &Config, profile: Option<&str>) -> Result<Arc<Policy>, String> {
    let (policies, _) = config.policies();
    match (&policies, profile) {
        (gitgate_policy::Policies::Single(policy), None) => Ok(policy.clone()),
        (gitgate_policy::Policies::Single(_), Some(name)) => Err(format!(
            "{} has no profiles; drop --profile {name}",
            config.file.display()
        )),
        (gitgate_policy::Policies::Profiles(set), name) => {
            let known = || format!("profiles: {}", set.listed());
            match name {
                None => Err(format!(
                    "{} has profiles; name one with --profile ({})",
                    config.file.display(),
                    known()
                )),
                Some(name) => set.get(name).map(|p| p.policy.clone()).ok_or_else(|| {
                    format!(
                        "no profile {name} in {} ({})",
                        config.file.display(),
                        known()
                    )
                }),
            }
        }
    }
}

/// One line of an explanation: a decision, or a note.
pub(crate) enum Line {
    /// What was decided, and how.
    Decided(String, Decision),
    /// Something decided only when the request is made.
    Note(String),
}

/// The decisions, as printable lines, and whether everything was allowed.
pub(crate) fn explain(
    policy: &Policy,
    action: ExplainAction,
    repo: &str,
    refs: &[String],
) -> Result<(Vec<String>, bool), String> {
    let mut found = Vec::new();
    match action {
        ExplainAction::Api => {
            crate::explain_api::explain(
                policy,
                repo,
                refs.first().map(String::as_str),
                &mut found,
            )?;
        }
        ExplainAction::Clone | ExplainAction::Push => {
            let repo =
                RepoPath::parse(repo).map_err(|e| format!("{repo:?} is not OWNER/REPO: {e}"))?;
            for spec in refs {
                let name = update(spec).name;
                RefName::parse(&name)
                    .map_err(|e| format!("{spec:?} is not a well-formed ref: {e}"))?;
            }
            git(policy, action, &repo, refs, &mut found);
        }
    }
    let mut lines = Vec::new();
    let mut allowed = true;
    for line in found {
        lines.push(match line {
            Line::Decided(what, decision) => {
                allowed &= decision.allowed;
                let verdict = if decision.allowed { "allow" } else { "deny " };
                format!(
                    "{verdict} {what}: {} [rule: {}]",
                    decision.reason, decision.rule
                )
            }
            Line::Note(note) => format!("note: {note}"),
        });
    }
    if action == ExplainAction::Push && !allowed && refs.len() > 1 {
        lines.push("note: pushes are atomic: a push with a denied ref updates no ref".into());
    }
    if policy.mode() == gitgate_policy::Mode::Report {
        lines.push("note: policy.mode is report: denials are logged, not enforced".into());
    }
    Ok((lines, allowed))
}

/// A clone, or a push of `refs`.
fn git(
    policy: &Policy,
    action: ExplainAction,
    repo: &RepoPath,
    refs: &[String],
    out: &mut Vec<Line>,
) {
    if action != ExplainAction::Push {
        out.push(Line::Decided(
            format!("clone {repo}"),
            policy.decide_repo(repo),
        ));
        return;
    }
    out.push(Line::Decided(
        format!("push to {repo}"),
        policy.decide_push(repo),
    ));
    for update in refs.iter().map(|r| update(r)) {
        let what = if update.is_delete() {
            "delete"
        } else {
            "update"
        };
        out.push(Line::Decided(
            format!("{what} {}", update.name),
            policy.decide_ref_update(&update),
        ));
    }
}

/// A ref update for `spec`: `main` means `refs/heads/main`; a leading `:` deletes.
fn update(spec: &str) -> RefUpdate {
    let (delete, name) = match spec.strip_prefix(':') {
        Some(name) => (true, name),
        None => (false, spec),
    };
    let name = if name.starts_with("refs/") {
        name.to_owned()
    } else {
        format!("refs/heads/{name}")
    };
    let some =
        ObjectId::parse(&"1".repeat(40)).unwrap_or_else(|_| ObjectId::zero(ObjectFormat::Sha1));
    let zero = ObjectId::zero(ObjectFormat::Sha1);
    RefUpdate {
        old: some.clone(),
        new: if delete { zero } else { some },
        name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy::from_yaml(
            "{allowedRepos: [\"acme/*\"], allowedRefs: [main, \"release/*\"]}",
            &["github.com".into()],
        )
        .unwrap()
    }

    #[test]
    fn push_lists_every_ref_and_fails_when_one_is_denied() {
        let (lines, ok) = explain(
            &policy(),
            ExplainAction::Push,
            "acme/app",
            &["main".into(), "dev".into()],
        )
        .unwrap();
        assert!(!ok);
        assert!(lines[0].starts_with("allow push to acme/app"), "{lines:?}");
        assert!(lines.iter().any(|l| l.starts_with("deny  update refs/heads/dev: refs/heads/dev is not in allowedRefs [main, release/*]")), "{lines:?}");
        let (_, ok) = explain(
            &policy(),
            ExplainAction::Push,
            "acme/app",
            &["release/1".into()],
        )
        .unwrap();
        assert!(ok);
    }

    #[test]
    fn deletes_and_clones() {
        let (lines, ok) = explain(
            &policy(),
            ExplainAction::Push,
            "acme/app",
            &[":main".into()],
        )
        .unwrap();
        assert!(
            !ok && lines[1].contains("deleting refs/heads/main"),
            "{lines:?}"
        );
        let (_, ok) = explain(&policy(), ExplainAction::Clone, "other/app", &[]).unwrap();
        assert!(!ok);
        assert!(explain(&policy(), ExplainAction::Clone, "nope", &[]).is_err());
    }

    #[test]
    fn a_ref_that_is_not_well_formed_is_a_mistake_not_a_denial() {
        for spec in ["bad..ref", "a b", "", ":"] {
            let error = explain(&policy(), ExplainAction::Push, "acme/app", &[spec.into()])
                .expect_err(spec);
            assert!(
                error.contains("is not a well-formed ref"),
                "{spec}: {error}"
            );
        }
    }
}
