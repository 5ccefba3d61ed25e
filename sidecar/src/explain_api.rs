//! `gitgate explain … api 'METHOD PATH' [BODY]`: what the policy says about one GitHub API
//! call, REST or GraphQL, without any network. What gitgate looks up when the call is
//! made (a default branch, a pull request's base, a node id) is named, not decided.

use gitgate_policy::api::{self, ChangeKind, Effect, RefChange, RefTarget, RepoRef};
use gitgate_policy::{Policy, RepoPath};
use serde_json::Value;

use crate::explain::Line;

/// Explains `call` (`METHOD PATH`, a GHES `/api/v3` prefix allowed) with `body`.
pub(crate) fn explain(
    policy: &Policy,
    call: &str,
    body: Option<&str>,
    out: &mut Vec<Line>,
) -> Result<(), String> {
    let (method, path) = call
        .split_once(' ')
        .ok_or_else(|| format!("{call:?} is not 'METHOD PATH', e.g. 'GET /repos/acme/app'"))?;
    let method = method.to_ascii_uppercase();
    let path = path.trim();
    let path = path.strip_prefix("/api/v3").unwrap_or(path);
    if matches!(path, "/graphql" | "/api/graphql") {
        let body = body.ok_or("a GraphQL call needs its JSON body as the next argument")?;
        return graphql(policy, body, out);
    }
    let what = format!("{method} {path}");
    let rest = match api::classify(&method, path) {
        Ok(rest) => rest,
        Err(reason) => {
            out.push(Line::Decided(
                what,
                gitgate_policy::Decision::deny("api", reason),
            ));
            return Ok(());
        }
    };
    out.push(Line::Decided(
        what.clone(),
        policy.decide_operation(rest.operations, &what),
    ));
    let Some(repo) = &rest.repo else {
        return Ok(());
    };
    out.push(Line::Decided(
        format!("repository {repo}"),
        policy.decide_repo(repo),
    ));
    let writes = Line::Decided(format!("writes to {repo}"), policy.decide_push(repo));
    if rest.effect == Effect::None {
        if rest.writes_contents() {
            out.push(writes);
        }
        return Ok(());
    }
    let body = match body {
        Some(text) => api::parse_strict(text.as_bytes())?,
        None => Value::Null,
    };
    // As the proxy decides it: before the body for contents and merges, else once the
    // body shows the call moves a ref.
    let moves_refs = rest.effect.changes(&body).is_ok_and(|c| !c.is_empty());
    if rest.writes_contents() || moves_refs {
        out.push(writes);
    }
    // Blobs written without a ref, as the proxy decides them.
    match policy.decide_blobs(&rest.effect, &body) {
        Ok(None) => {}
        Ok(Some(denial)) => out.push(Line::Decided(format!("{what} body"), denial)),
        Err(reason) => out.push(Line::Decided(
            format!("{what} body"),
            gitgate_policy::Decision::deny("api", reason),
        )),
    }
    match rest.effect.changes(&body) {
        Ok(changes) => changes
            .iter()
            .for_each(|c| change(policy, Some(repo), c, out)),
        Err(reason) => out.push(Line::Decided(
            format!("{what} body"),
            gitgate_policy::Decision::deny("api", reason),
        )),
    }
    Ok(())
}

fn graphql(policy: &Policy, body: &str, out: &mut Vec<Line>) -> Result<(), String> {
    let fields = match api::analyse(body.as_bytes()) {
        Ok(fields) => fields,
        Err(reason) => {
            out.push(Line::Decided(
                "POST /graphql".into(),
                gitgate_policy::Decision::deny("api", reason),
            ));
            return Ok(());
        }
    };
    for field in &fields {
        out.push(Line::Decided(
            field.field.clone(),
            policy.decide_operation(field.operations, &field.field),
        ));
        let mut named: Option<RepoPath> = None;
        for repo in &field.repos {
            match repo {
                RepoRef::Named(repo) => {
                    out.push(Line::Decided(format!("repository {repo}"), policy.decide_repo(repo)));
                    named.get_or_insert_with(|| repo.clone());
                }
                RepoRef::Node(id) => out.push(Line::Note(format!(
                    "{}: the repository of node {id} is looked up when the call is made, then checked against allowedRepos",
                    field.field
                ))),
            }
        }
        if let (Some(repo), false) = (&named, field.changes.is_empty()) {
            out.push(Line::Decided(
                format!("writes to {repo}"),
                policy.decide_push(repo),
            ));
        }
        for c in &field.changes {
            change(policy, named.as_ref(), c, out);
        }
    }
    Ok(())
}

/// One ref change: decided when the request names the ref, noted when it is looked up.
fn change(policy: &Policy, repo: Option<&RepoPath>, change: &RefChange, out: &mut Vec<Line>) {
    let repo = repo.map_or("the repository".to_owned(), ToString::to_string);
    let looked_up = match &change.target {
        RefTarget::Named(name) => {
            let kind = match change.kind {
                ChangeKind::Create => "create",
                ChangeKind::Update { force: false } => "update",
                ChangeKind::Update { force: true } => "forced update of",
                ChangeKind::Delete => "delete",
                ChangeKind::Retarget => "move a pull request's base to",
            };
            out.push(Line::Decided(
                format!("{kind} {name}"),
                policy.decide_ref_change(name, change.kind, &change.content),
            ));
            return;
        }
        RefTarget::DefaultBranch => format!("{repo}'s default branch"),
        RefTarget::PullBase(n) => format!("the base branch of pull request #{n} of {repo}"),
        RefTarget::PullHead(n) => format!("the head branch of pull request #{n} of {repo}"),
        RefTarget::RefNode(id) => format!("the ref of node {id}"),
        RefTarget::PullNodeBase(id) => format!("the base branch of pull request node {id}"),
        RefTarget::ReleaseTag(id) => format!("the tag of release {id} of {repo}"),
    };
    out.push(Line::Note(format!(
        "the ref changed is {looked_up}, looked up when the call is made, then decided like a push"
    )));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::ExplainAction;
    use crate::explain::explain as run;

    fn policy() -> Policy {
        Policy::from_yaml(
            "{allowedRepos: [acme/app], allowedRefs: [main, 'agent/*'], api: [read, contents.write, pulls.create]}",
            &["github.com".into()],
        )
        .unwrap()
    }

    fn lines(call: &str, body: Option<&str>) -> (Vec<String>, bool) {
        let refs: Vec<String> = body.into_iter().map(str::to_owned).collect();
        run(&policy(), ExplainAction::Api, call, &refs).unwrap()
    }

    #[test]
    fn rest_calls_are_explained_with_their_refs() {
        let (out, ok) = lines(
            "PATCH /repos/acme/app/git/refs/heads/release",
            Some(r#"{"sha": "a"}"#),
        );
        assert!(!ok);
        assert!(
            out[0].starts_with("allow PATCH /repos/acme/app/git/refs/heads/release"),
            "{out:?}"
        );
        assert!(
            out.iter().any(|l| l.starts_with(
                "deny  update refs/heads/release: refs/heads/release is not in allowedRefs"
            )),
            "{out:?}"
        );
        let (out, ok) = lines(
            "PUT /api/v3/repos/acme/app/contents/a.md",
            Some(r#"{"message": "m", "content": "aGk="}"#),
        );
        assert!(ok, "{out:?}");
        assert!(
            out.last()
                .unwrap()
                .contains("acme/app's default branch, looked up"),
            "{out:?}"
        );
        // Opening a pull request writes nothing the push rules decide, as in the proxy.
        let (out, ok) = lines(
            "POST /repos/acme/app/pulls",
            Some(r#"{"title": "t", "head": "agent/x", "base": "main"}"#),
        );
        assert!(
            ok && !out.iter().any(|l| l.contains("writes to")),
            "{out:?}"
        );
        let (out, ok) = lines("DELETE /repos/acme/app", None);
        assert!(
            !ok && out[0].contains("not an operation in gitgate's API catalogue"),
            "{out:?}"
        );
        let (out, ok) = lines("GET /repos/acme/secret/pulls", None);
        assert!(
            !ok && out[1].contains("acme/secret is not in allowedRepos"),
            "{out:?}"
        );
    }

    #[test]
    fn blobs_written_without_a_ref_are_explained_under_max_blob_size() {
        let policy = Policy::from_yaml(
            "{allowedRepos: [acme/app], allowedRefs: ['agent/*'], api: [contents.write], maxBlobSize: 1KB}",
            &["github.com".into()],
        )
        .unwrap();
        let explain = |call: &str, body: &str| {
            run(&policy, ExplainAction::Api, call, &[body.to_owned()]).unwrap()
        };
        let big = format!(r#"{{"content": "{}"}}"#, "x".repeat(1001));
        let (out, ok) = explain("POST /repos/acme/app/git/blobs", &big);
        assert!(!ok, "{out:?}");
        assert!(
            out.iter().any(|l| l.starts_with("deny")
                && l.contains("a file of 1001 bytes is larger than maxBlobSize")),
            "{out:?}"
        );
        let (out, ok) = explain("POST /repos/acme/app/git/blobs", r#"{"content": "small"}"#);
        assert!(ok, "{out:?}");
        let (out, ok) = explain("POST /repos/acme/app/git/trees", r#"{"tree": "a"}"#);
        assert!(
            !ok && out.iter().any(|l| l.contains("not a list of entries")),
            "{out:?}"
        );
    }

    #[test]
    fn graphql_calls_are_explained_field_by_field() {
        let body = r#"{"query": "mutation { createCommitOnBranch(input: {branch: {repositoryNameWithOwner: \"acme/app\", branchName: \"agent/x\"}, message: {headline: \"h\"}, fileChanges: {}}) { commit { oid } } }"}"#;
        let (out, ok) = lines("POST /graphql", Some(body));
        assert!(ok, "{out:?}");
        let body = r#"{"query": "mutation { updateRef(input: {refId: \"R1\", oid: \"a\"}) { clientMutationId } }"}"#;
        let (out, _) = lines("POST /graphql", Some(body));
        assert!(
            out.iter().any(|l| l.contains("node R1 is looked up")),
            "{out:?}"
        );
        assert!(
            out.iter()
                .any(|l| l.contains("the ref of node R1, looked up")),
            "{out:?}"
        );
        let (out, ok) = lines(
            "POST /graphql",
            Some(r#"{"query": "mutation { deleteRepository(input: {}) { x } }"}"#),
        );
        assert!(
            !ok && out[0].contains("not in gitgate's API catalogue"),
            "{out:?}"
        );
        assert!(run(&policy(), ExplainAction::Api, "POST /graphql", &[]).is_err());
        assert!(run(&policy(), ExplainAction::Api, "nonsense", &[]).is_err());
    }
}
