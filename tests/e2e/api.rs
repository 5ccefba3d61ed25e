//! The GitHub API through gitgate: `gh`, REST and GraphQL with `curl`, under
//! `policy.api`; the ref-changing back doors decided like pushes.

use gitgate_standin::{PullState, StandIn};
use serde_json::{Value, json};

use crate::harness::sandbox::GH_PLACEHOLDER;
use crate::harness::{Gitgate, Sandbox, app_config, standin, text};

const POLICY: &str = "{allowedRepos: [acme/app], allowedRefs: [main, 'agent/*'], api: [read, pulls.create, pulls.comment]}";
const WRITER: &str = "{allowedRepos: [acme/app], allowedRefs: [main, 'agent/*'], api: [read, contents.write, pulls.create, pulls.merge]}";

/// `curl -X METHOD https://api.github.com{path}` with a JSON body: status and JSON answer.
fn call(sandbox: &Sandbox, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let url = format!("https://api.github.com{path}");
    call_raw(sandbox, method, &url, body.map(Value::to_string).as_deref())
}

/// `curl -X METHOD URL` with the body as bytes: status and JSON answer.
fn call_raw(sandbox: &Sandbox, method: &str, url: &str, body: Option<&str>) -> (u16, Value) {
    let mut args = vec![
        "-X",
        method,
        url,
        "-H",
        "Accept: application/vnd.github+json",
        "-w",
        "\n%{http_code}",
    ];
    if let Some(body) = body {
        args.extend([
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            body,
        ]);
    }
    let out = sandbox.curl(&args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let (answer, status) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    let status = status
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{method} {url}: {}", text(&out)));
    (status, serde_json::from_str(answer).unwrap_or(Value::Null))
}

fn graphql(sandbox: &Sandbox, query: &str, variables: Value) -> (u16, Value) {
    call(
        sandbox,
        "POST",
        "/graphql",
        Some(&json!({"query": query, "variables": variables})),
    )
}

/// A 403 from gitgate whose message says `why`.
fn denied(answer: (u16, Value), why: &str) {
    let (status, body) = answer;
    let message = body["message"].as_str().unwrap_or_default();
    assert_eq!(status, 403, "{body}");
    assert!(
        message.starts_with("gitgate: ") && message.contains(why),
        "{message}"
    );
    assert!(body["documentation_url"].is_string(), "{body}");
}

/// How many requests for `path` reached the stand-in.
fn reached(standin: &StandIn, method: &str, path: &str) -> usize {
    standin
        .requests()
        .iter()
        .filter(|r| r.method == method && r.path() == path)
        .count()
}

/// A sandbox with `agent/x` pushed (one commit ahead of main); `release` exists upstream.
fn pushed(standin: &StandIn, gitgate: &Gitgate) -> (Sandbox, String) {
    let sandbox = Sandbox::new(gitgate);
    let repo = sandbox.clone_repo("acme/app", "app");
    sandbox.git_ok(&repo, &["checkout", "-q", "-b", "agent/x"]);
    let head = sandbox.commit(&repo, "fix.txt", "fixed\n");
    sandbox.git_ok(&repo, &["push", "-q", "origin", "agent/x"]);
    standin
        .update_ref("acme", "app", "refs/heads/release", "main")
        .unwrap();
    (sandbox, head)
}

#[test]
fn gh_opens_and_comments_on_a_pull_request_with_no_token_in_the_sandbox() {
    let standin = standin();
    let gitgate = Gitgate::start(&app_config(&standin, POLICY));
    let (sandbox, _) = pushed(&standin, &gitgate);
    let repo = sandbox.path("app");
    let gh = |args: &[&str]| {
        let out = sandbox.gh(&repo, args);
        assert!(out.status.success(), "gh {args:?}:\n{}", text(&out));
        text(&out)
    };
    let created = gh(&[
        "pr",
        "create",
        "--repo",
        "acme/app",
        "--base",
        "main",
        "--head",
        "agent/x",
        "--title",
        "Fix",
        "--body",
        "Done by an agent",
    ]);
    assert!(
        created.contains("https://github.com/acme/app/pull/1"),
        "{created}"
    );
    gh(&[
        "pr",
        "comment",
        "1",
        "--repo",
        "acme/app",
        "--body",
        "Ready for review",
    ]);
    let pulls = standin.pull_requests();
    assert_eq!(pulls.len(), 1);
    assert_eq!(
        (
            pulls[0].base.as_str(),
            pulls[0].head.as_str(),
            pulls[0].title.as_str()
        ),
        ("main", "agent/x", "Fix")
    );
    assert_eq!(pulls[0].comments, ["Ready for review"]);

    // Merging is not in this policy's api list: gh shows gitgate's reason.
    let out = sandbox.gh(
        &repo,
        &["pr", "merge", "1", "--repo", "acme/app", "--merge"],
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("needs pulls.merge in policy.api"),
        "{}",
        text(&out)
    );
    assert_eq!(standin.pull_requests()[0].state, PullState::Open);

    // Every API request upstream carried gitgate's installation token, never the sandbox's
    // placeholder.
    let api: Vec<_> = standin
        .requests()
        .into_iter()
        .filter(|r| r.host == "api.github.com" && r.path() == "/graphql")
        .collect();
    assert!(api.len() >= 2, "{api:?}");
    for request in &api {
        let auth = request.header("authorization").unwrap_or_default();
        assert!(auth.starts_with("Bearer ghs_"), "{auth}");
        assert!(!auth.contains(GH_PLACEHOLDER));
    }
    // git requests carry the narrow token; only API calls carry pull_requests: write.
    let scopes = |service: &str| -> Vec<Value> {
        gitgate
            .decisions()
            .into_iter()
            .filter(|d| d["service"] == service)
            .map(|d| d["token_scope"]["permissions"].clone())
            .collect()
    };
    let git = scopes("receive-pack");
    assert!(!git.is_empty());
    assert!(
        git.iter()
            .all(|p| *p == json!({"contents": "write", "metadata": "read"})),
        "{git:?}"
    );
    let api = scopes("api");
    assert!(api.iter().any(|p| p["pull_requests"] == "write"), "{api:?}");
    gitgate.assert_no_secrets(&standin);
}

#[test]
fn an_app_without_an_api_permission_still_serves_git_and_says_what_to_grant() {
    let mut installation = gitgate_standin::default_installations().remove(0);
    installation.permissions = [("contents", "write"), ("metadata", "read")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let mut config = gitgate_standin::Config::default();
    config.installations = vec![installation];
    let standin = StandIn::start(config).expect("stand-in");
    let gitgate = Gitgate::start(&app_config(&standin, POLICY));
    let (sandbox, _) = pushed(&standin, &gitgate);
    let out = sandbox.gh(
        &sandbox.path("app"),
        &[
            "pr", "create", "--repo", "acme/app", "--base", "main", "--head", "agent/x", "--title",
            "t", "--body", "b",
        ],
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("The permissions requested are not granted to this installation. (gitgate asked for contents: write, issues: read, metadata: read, pull_requests: write on app;"),
        "{}",
        text(&out)
    );
    assert!(standin.pull_requests().is_empty());
}

#[test]
fn rest_calls_that_move_refs_are_decided_like_pushes() {
    let standin = standin();
    let gitgate = Gitgate::start(&app_config(&standin, WRITER));
    let (sandbox, head) = pushed(&standin, &gitgate);
    let main = standin.rev_parse("acme", "app", "refs/heads/main").unwrap();
    let tip = |name: &str| standin.rev_parse("acme", "app", name);

    // git refs: create, update, force, delete.
    denied(
        call(
            &sandbox,
            "POST",
            "/repos/acme/app/git/refs",
            Some(&json!({"ref": "refs/heads/release2", "sha": head})),
        ),
        "refs/heads/release2 is not in allowedRefs",
    );
    let (status, _) = call(
        &sandbox,
        "POST",
        "/repos/acme/app/git/refs",
        Some(&json!({"ref": "refs/heads/agent/y", "sha": main})),
    );
    assert_eq!(status, 201);
    assert_eq!(tip("refs/heads/agent/y").as_deref(), Some(main.as_str()));
    denied(
        call(
            &sandbox,
            "PATCH",
            "/repos/acme/app/git/refs/heads/release",
            Some(&json!({"sha": head})),
        ),
        "refs/heads/release is not in allowedRefs",
    );
    denied(
        call(
            &sandbox,
            "PATCH",
            "/repos/acme/app/git/refs/heads/agent/x",
            Some(&json!({"sha": main, "force": true})),
        ),
        "forced update of refs/heads/agent/x is not allowed",
    );
    let (status, _) = call(
        &sandbox,
        "PATCH",
        "/repos/acme/app/git/refs/heads/agent/y",
        Some(&json!({"sha": head})),
    );
    assert_eq!(status, 200);
    assert_eq!(tip("refs/heads/agent/y"), Some(head.clone()));
    denied(
        call(
            &sandbox,
            "DELETE",
            "/repos/acme/app/git/refs/heads/agent/y",
            None,
        ),
        "allowDeletes is false",
    );
    assert_eq!(
        reached(&standin, "PATCH", "/repos/acme/app/git/refs/heads/release"),
        0
    );
    assert_eq!(
        reached(&standin, "DELETE", "/repos/acme/app/git/refs/heads/agent/y"),
        0
    );
    assert_eq!(tip("refs/heads/release").as_deref(), Some(main.as_str()));

    // contents: the branch field, or the default branch (looked up) when absent.
    let file = json!({"message": "m", "content": "aGVsbG8K", "branch": "release"});
    denied(
        call(
            &sandbox,
            "PUT",
            "/repos/acme/app/contents/docs/a.md",
            Some(&file),
        ),
        "refs/heads/release is not in allowedRefs",
    );
    let (status, _) = call(
        &sandbox,
        "PUT",
        "/repos/acme/app/contents/docs/a.md",
        Some(&json!({"message": "m", "content": "aGVsbG8K"})),
    );
    assert_eq!(status, 201);
    assert_ne!(tip("refs/heads/main").as_deref(), Some(main.as_str()));
    denied(
        call(
            &sandbox,
            "PUT",
            "/repos/acme/app/contents/docs/a.md?branch=release",
            Some(&json!({"message": "m", "content": "aGVsbG8K"})),
        ),
        "query string",
    );
    // A method override or a form body could make GitHub run another call than the one
    // decided on.
    let url = "https://api.github.com/repos/acme/app/pulls";
    for (header, why) in [
        ("X-HTTP-Method-Override: PATCH", "x-http-method-override"),
        (
            "Content-Type: application/x-www-form-urlencoded",
            "send JSON",
        ),
    ] {
        let out = sandbox.curl(&[
            "-X",
            "POST",
            url,
            "-H",
            header,
            "--data-binary",
            "_method=PATCH&title=t",
        ]);
        let answer: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        assert!(
            answer["message"].as_str().unwrap_or_default().contains(why),
            "{answer}"
        );
    }
    assert_eq!(reached(&standin, "POST", "/repos/acme/app/pulls"), 0);

    // A key given twice could mean one thing to gitgate and another to GitHub.
    let (status, body) = call_raw(
        &sandbox,
        "PUT",
        "https://api.github.com/repos/acme/app/contents/b.md",
        Some(r#"{"message": "m", "content": "aGk=", "branch": "main", "branch": "release"}"#),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("appears twice"),
        "{body}"
    );

    // merges, pull request merges (base looked up), renames, releases.
    denied(
        call(
            &sandbox,
            "POST",
            "/repos/acme/app/merges",
            Some(&json!({"base": "release", "head": "agent/x"})),
        ),
        "refs/heads/release is not in allowedRefs",
    );
    let (status, body) = call(
        &sandbox,
        "POST",
        "/repos/acme/app/pulls",
        Some(&json!({"title": "t", "base": "release", "head": "agent/x"})),
    );
    assert_eq!(status, 201, "{body}");
    denied(
        call(&sandbox, "PUT", "/repos/acme/app/pulls/1/merge", None),
        "refs/heads/release is not in allowedRefs",
    );
    assert_eq!(standin.pull_requests()[0].state, PullState::Open);
    let (status, body) = call(
        &sandbox,
        "POST",
        "/repos/acme/app/pulls",
        Some(&json!({"title": "t", "base": "main", "head": "agent/y"})),
    );
    assert_eq!(status, 201, "{body}");
    // A head in another repository of the fork network is not checked against
    // allowedRepos by anything: refused.
    for head in [
        json!({"title": "t", "base": "main", "head": "someone:feature"}),
        json!({"title": "t", "base": "main", "head": "feature", "head_repo": "secret"}),
    ] {
        denied(
            call(&sandbox, "POST", "/repos/acme/app/pulls", Some(&head)),
            "head is in another repository",
        );
    }
    assert_eq!(standin.pull_requests().len(), 2);
    let (status, body) = call(&sandbox, "PUT", "/repos/acme/app/pulls/2/merge", None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(standin.pull_requests()[1].state, PullState::Merged);
    denied(
        call(
            &sandbox,
            "POST",
            "/repos/acme/app/branches/agent%2Fx/rename",
            Some(&json!({"new_name": "agent/z"})),
        ),
        "allowDeletes is false",
    );
    denied(
        call(
            &sandbox,
            "POST",
            "/repos/acme/app/releases",
            Some(&json!({"tag_name": "v1"})),
        ),
        "refs/tags/v1 is not in allowedRefs",
    );
    assert!(tip("refs/tags/v1").is_none());

    // Outside the catalogue or the repositories.
    denied(
        call(
            &sandbox,
            "PATCH",
            "/repos/acme/app",
            Some(&json!({"default_branch": "release"})),
        ),
        "not an operation in gitgate's API catalogue",
    );
    denied(
        call(&sandbox, "DELETE", "/repos/acme/app", None),
        "not an operation",
    );
    denied(
        call(&sandbox, "GET", "/repos/acme/secret/pulls", None),
        "acme/secret is not in allowedRepos",
    );
    denied(
        call(&sandbox, "GET", "/user/repos", None),
        "not an operation",
    );
}

#[test]
fn graphql_mutations_outside_the_catalogue_or_onto_refused_refs_are_denied() {
    let standin = standin();
    let gitgate = Gitgate::start(&app_config(&standin, WRITER));
    let (sandbox, head) = pushed(&standin, &gitgate);
    let tip = |name: &str| standin.rev_parse("acme", "app", name);
    let ok = |(status, body): (u16, Value)| {
        assert_eq!(status, 200, "{body}");
        assert!(body.get("errors").is_none(), "{body}");
        body
    };

    denied(
        graphql(
            &sandbox,
            "mutation { deleteRepository(input: {repositoryId: \"R:acme/app\"}) { clientMutationId } }",
            json!({}),
        ),
        "mutation deleteRepository is not in gitgate's API catalogue",
    );
    denied(
        graphql(&sandbox, "{ repository(owner: \"acme\"", json!({})),
        "does not parse",
    );
    denied(
        graphql(
            &sandbox,
            "query($o: String!) { repository(owner: $o, name: \"secret\") { id } }",
            json!({"o": "acme"}),
        ),
        "acme/secret is not in allowedRepos",
    );
    denied(
        graphql(
            &sandbox,
            "{ node(id: \"R:acme/secret\") { id } }",
            json!({}),
        ),
        "cannot tell which repository node R:acme/secret",
    );
    denied(
        graphql(
            &sandbox,
            "mutation($id: ID!) { addComment(input: {subjectId: $id, body: \"x\"}) { clientMutationId } }",
            json!({"id": "PR:acme/app:1"}),
        ),
        "needs issues.write or pulls.comment in policy.api",
    );

    // Refs named in the request, and refs behind node ids (looked up).
    let create = "mutation($name: String!, $oid: GitObjectID!) { createRef(input: {repositoryId: \"R:acme/app\", name: $name, oid: $oid}) { ref { name } } }";
    denied(
        graphql(
            &sandbox,
            create,
            json!({"name": "refs/heads/release2", "oid": head}),
        ),
        "refs/heads/release2 is not in allowedRefs",
    );
    ok(graphql(
        &sandbox,
        create,
        json!({"name": "refs/heads/agent/g", "oid": head}),
    ));
    assert_eq!(tip("refs/heads/agent/g"), Some(head.clone()));
    let update = "mutation($ref: ID!, $oid: GitObjectID!, $force: Boolean) { updateRef(input: {refId: $ref, oid: $oid, force: $force}) { ref { name } } }";
    denied(
        graphql(
            &sandbox,
            update,
            json!({"ref": "REF:acme/app:refs/heads/release", "oid": head}),
        ),
        "refs/heads/release is not in allowedRefs",
    );
    let main = tip("refs/heads/main").unwrap();
    denied(
        graphql(
            &sandbox,
            update,
            json!({"ref": "REF:acme/app:refs/heads/agent/g", "oid": main, "force": true}),
        ),
        "forced update of refs/heads/agent/g is not allowed",
    );
    assert_eq!(tip("refs/heads/agent/g"), Some(head.clone()));

    let commit = "mutation($branch: String!) { createCommitOnBranch(input: {branch: {repositoryNameWithOwner: \"acme/app\", branchName: $branch}, message: {headline: \"h\"}, fileChanges: {additions: [{path: \"notes.txt\", contents: \"aGkK\"}]}}) { commit { oid } } }";
    denied(
        graphql(&sandbox, commit, json!({"branch": "release"})),
        "refs/heads/release is not in allowedRefs",
    );
    let body = ok(graphql(&sandbox, commit, json!({"branch": "agent/g"})));
    assert_eq!(
        tip("refs/heads/agent/g").as_ref(),
        body["data"]["createCommitOnBranch"]["commit"]["oid"]
            .as_str()
            .map(str::to_owned)
            .as_ref()
    );

    for (mutation, why) in [
        (
            "mutation { deleteRef(input: {refId: \"REF:acme/app:refs/heads/agent/g\"}) { clientMutationId } }",
            "allowDeletes is false",
        ),
        (
            "mutation { mergeBranch(input: {repositoryId: \"R:acme/app\", base: \"release\", head: \"agent/x\"}) { clientMutationId } }",
            "refs/heads/release is not in allowedRefs",
        ),
        (
            "mutation { updateRefs(input: {repositoryId: \"R:acme/app\", refUpdates: [{name: \"refs/heads/agent/g\", afterOid: \"1111111111111111111111111111111111111111\"}, {name: \"refs/heads/release\", afterOid: \"1111111111111111111111111111111111111111\"}]}) { clientMutationId } }",
            "refs/heads/release is not in allowedRefs",
        ),
    ] {
        denied(graphql(&sandbox, mutation, json!({})), why);
    }
    assert!(tip("refs/heads/agent/g").is_some());

    let (status, body) = call(
        &sandbox,
        "POST",
        "/repos/acme/app/pulls",
        Some(&json!({"title": "t", "base": "release", "head": "agent/x"})),
    );
    assert_eq!(status, 201, "{body}");
    let merge = "mutation($pr: ID!) { mergePullRequest(input: {pullRequestId: $pr}) { pullRequest { state } } }";
    denied(
        graphql(&sandbox, merge, json!({"pr": body["node_id"]})),
        "refs/heads/release is not in allowedRefs",
    );
    assert_eq!(standin.pull_requests()[0].state, PullState::Open);
    assert_eq!(tip("refs/heads/release"), Some(main));
}

/// A pull request's base moves only onto refs its merges may write to: moving it and
/// merging it in one GraphQL document, or racing a REST edit against a merge, would
/// otherwise merge where the policy forbids (the merge is decided on the base before).
#[test]
fn a_pull_requests_base_moves_only_onto_refs_it_may_merge_into() {
    const EDITOR: &str = "{allowedRepos: [acme/app], allowedRefs: ['agent/*'], api: [read, pulls.create, pulls.update, pulls.merge]}";
    let standin = standin();
    let gitgate = Gitgate::start(&app_config(&standin, EDITOR));
    let (sandbox, _) = pushed(&standin, &gitgate);
    for branch in ["agent/base", "agent/other"] {
        standin
            .update_ref("acme", "app", &format!("refs/heads/{branch}"), "main")
            .unwrap();
    }
    let tip = |name: &str| standin.rev_parse("acme", "app", name);
    let release = tip("refs/heads/release");
    let (status, body) = call(
        &sandbox,
        "POST",
        "/repos/acme/app/pulls",
        Some(&json!({"title": "t", "base": "agent/base", "head": "agent/x"})),
    );
    assert_eq!(status, 201, "{body}");
    let pr = body["node_id"].clone();
    let edit = format!("/repos/acme/app/pulls/{}", body["number"]);
    let move_and_merge = |base: &str| {
        format!(
            "mutation($pr: ID!) {{ a: updatePullRequest(input: {{pullRequestId: $pr, baseRefName: \"{base}\"}}) {{ pullRequest {{ state }} }} b: mergePullRequest(input: {{pullRequestId: $pr}}) {{ pullRequest {{ state }} }} }}"
        )
    };
    denied(
        graphql(&sandbox, &move_and_merge("release"), json!({"pr": pr})),
        "a pull request's base cannot move to refs/heads/release, where its merge would write: refs/heads/release is not in allowedRefs",
    );
    denied(
        call(&sandbox, "PATCH", &edit, Some(&json!({"base": "release"}))),
        "refs/heads/release is not in allowedRefs",
    );
    assert_eq!(reached(&standin, "PATCH", &edit), 0);
    assert_eq!(tip("refs/heads/release"), release);
    assert_eq!(standin.pull_requests()[0].base, "agent/base");
    assert_eq!(standin.pull_requests()[0].state, PullState::Open);

    // Even the base it has: a lookup could not stop the base moving before the edit
    // lands (racing a merge). Leaving the base out edits the rest.
    standin
        .update_ref("acme", "app", "refs/heads/agent/y", "main")
        .unwrap();
    let (status, body) = call(
        &sandbox,
        "POST",
        "/repos/acme/app/pulls",
        Some(&json!({"title": "t", "base": "release", "head": "agent/y"})),
    );
    assert_eq!(status, 201, "{body}");
    let into_release = format!("/repos/acme/app/pulls/{}", body["number"]);
    denied(
        call(
            &sandbox,
            "PATCH",
            &into_release,
            Some(&json!({"title": "t2", "base": "release"})),
        ),
        "a pull request's base cannot move to refs/heads/release",
    );
    let (status, body) = call(
        &sandbox,
        "PATCH",
        &into_release,
        Some(&json!({"title": "t2"})),
    );
    assert_eq!(status, 200, "{body}");

    // Other edits, and moves onto refs it may merge into, go through.
    let (status, body) = call(&sandbox, "PATCH", &edit, Some(&json!({"title": "renamed"})));
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(
        &sandbox,
        "PATCH",
        &edit,
        Some(&json!({"base": "agent/other"})),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(standin.pull_requests()[0].base, "agent/other");
    let before = tip("refs/heads/agent/base");
    let (status, body) = graphql(&sandbox, &move_and_merge("agent/base"), json!({"pr": pr}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"]["b"]["pullRequest"]["state"], "MERGED",
        "{body}"
    );
    assert_ne!(tip("refs/heads/agent/base"), before);
    assert_eq!(tip("refs/heads/release"), release);
}

/// A 401 for an endpoint that takes another kind of credential keeps the token (a sandbox
/// calling it in a loop must not make gitgate mint a token per call); GitHub's "Bad
/// credentials" drops it, and the next call gets a new one.
#[test]
fn only_a_bad_credential_401_drops_the_token() {
    let standin = standin();
    let gitgate = Gitgate::start(&app_config(&standin, POLICY));
    let sandbox = Sandbox::new(&gitgate);
    assert_eq!(call(&sandbox, "GET", "/repos/acme/app", None).0, 200);
    let mints = standin.mints().len();
    for _ in 0..10 {
        let (status, body) = call(&sandbox, "GET", "/repos/acme/app/installation", None);
        assert_eq!(status, 502, "{body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("HTTP 401 (A JSON web token could not be decoded)")
                && message.contains("does not take the credential"),
            "{body}"
        );
    }
    assert_eq!(call(&sandbox, "GET", "/repos/acme/app", None).0, 200);
    assert_eq!(
        standin.mints().len(),
        mints,
        "minted on a 401 of the request's own"
    );
    // Reinstalling the App revokes its tokens: GitHub says "Bad credentials", gzipped for
    // a client that takes gzip (as gh does), and gitgate still reads it.
    assert!(standin.reinstall("acme", 1003));
    let out = sandbox.curl(&[
        "--compressed",
        "-w",
        "\n%{http_code}",
        "https://api.github.com/repos/acme/app",
    ]);
    let answer = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        answer.ends_with("\n502") && answer.contains("refused gitgate's credential (HTTP 401)"),
        "{answer}"
    );
    assert_eq!(call(&sandbox, "GET", "/repos/acme/app", None).0, 200);
    assert_eq!(
        standin.mints().last().map(|m| m.installation_id),
        Some(1003)
    );
    gitgate.assert_no_secrets(&standin);
}

#[test]
fn without_policy_api_the_api_stays_closed() {
    let standin = standin();
    let gitgate = Gitgate::start(&app_config(
        &standin,
        "{allowedRepos: [acme/app], allowedRefs: [main]}",
    ));
    let sandbox = Sandbox::new(&gitgate);
    denied(
        call(&sandbox, "GET", "/repos/acme/app", None),
        "policy.api is absent",
    );
    denied(
        graphql(&sandbox, "{ viewer { login } }", json!({})),
        "policy.api is absent",
    );
    // Refused before its body is read: a body that never comes holds nothing.
    let mut tls = crate::harness::raw::mitm_tls(
        gitgate.addr,
        "api.github.com:443",
        "api.github.com",
        &gitgate.ca_file(),
    );
    std::io::Write::write_all(
        &mut tls,
        b"POST /graphql HTTP/1.1\r\nHost: api.github.com\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"query\"",
    )
    .unwrap();
    let started = std::time::Instant::now();
    let reply = crate::harness::raw::read_response(&mut tls);
    assert!(
        reply.starts_with("HTTP/1.1 403") && reply.contains("policy.api is absent"),
        "{reply}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert!(
        standin
            .requests()
            .iter()
            .all(|r| r.host != "api.github.com" || r.path().starts_with("/app"))
    );
}

#[test]
fn on_github_enterprise_the_api_below_api_v3_and_api_graphql_is_under_the_same_policy() {
    let standin = standin();
    let config = format!(
        "listen: 127.0.0.1:0\n\
         github:\n  host: github.com\n  apiUrl: https://github.com/api/v3\n  app: {{id: \"{id}\", privateKeyFile: {key}}}\n\
         {upstream}\
         policy: {WRITER}\n",
        id = standin.app_id(),
        key = standin.app_key_pkcs1_file().display(),
        upstream = crate::harness::upstream(&standin),
    );
    let gitgate = Gitgate::start(&config);
    let (sandbox, head) = pushed(&standin, &gitgate);
    let ghes = |method: &str, path: &str, body: Option<&Value>| {
        let url = format!("https://github.com{path}");
        call_raw(
            &sandbox,
            method,
            &url,
            body.map(Value::to_string).as_deref(),
        )
    };
    let (status, body) = ghes("GET", "/api/v3/repos/acme/app/pulls", None);
    assert_eq!(status, 200, "{body}");
    denied(
        ghes("GET", "/api/v3/repos/acme/secret/pulls", None),
        "acme/secret is not in allowedRepos",
    );
    denied(
        ghes(
            "PATCH",
            "/api/v3/repos/acme/app/git/refs/heads/release",
            Some(&json!({"sha": head})),
        ),
        "refs/heads/release is not in allowedRefs",
    );
    let create = json!({"query": "mutation($oid: GitObjectID!) { createRef(input: {repositoryId: \"R:acme/app\", name: \"refs/heads/release2\", oid: $oid}) { ref { name } } }", "variables": {"oid": head}});
    denied(
        ghes("POST", "/api/graphql", Some(&create)),
        "refs/heads/release2 is not in allowedRefs",
    );
    let query =
        json!({"query": "{ repository(owner: \"acme\", name: \"app\") { nameWithOwner } }"});
    let (status, body) = ghes("POST", "/api/graphql", Some(&query));
    assert_eq!(
        (status, &body["data"]["repository"]["nameWithOwner"]),
        (200, &json!("acme/app")),
        "{body}"
    );
    // Paths outside /api/ on the git host stay git-only.
    let (status, _) = ghes("GET", "/repos/acme/app/pulls", None);
    assert_eq!(status, 403);
    assert!(
        standin
            .requests()
            .iter()
            .all(|r| r.host != "api.github.com")
    );
}

#[test]
fn updating_a_pull_requests_branch_is_decided_on_its_head_looked_up() {
    let standin = standin();
    let policy = "{allowedRepos: [acme/app], allowedRefs: [main, 'agent/*'], api: [read, pulls.create, pulls.update, contents.write]}";
    let gitgate = Gitgate::start(&app_config(&standin, policy));
    let (sandbox, head) = pushed(&standin, &gitgate);
    standin
        .update_ref("acme", "app", "refs/heads/release", "refs/heads/agent/x")
        .unwrap();
    // main moves on, so both pull requests are behind it.
    let (status, _) = call(
        &sandbox,
        "PUT",
        "/repos/acme/app/contents/news.md",
        Some(&json!({"message": "news", "content": "bmV3cwo=", "branch": "main"})),
    );
    assert_eq!(status, 201);
    for (head_branch, number) in [("release", 1), ("agent/x", 2)] {
        let (status, body) = call(
            &sandbox,
            "POST",
            "/repos/acme/app/pulls",
            Some(&json!({"title": "t", "base": "main", "head": head_branch})),
        );
        assert_eq!(
            (status, body["number"].as_u64()),
            (201, Some(number)),
            "{body}"
        );
    }
    denied(
        call(
            &sandbox,
            "PUT",
            "/repos/acme/app/pulls/1/update-branch",
            None,
        ),
        "refs/heads/release is not in allowedRefs",
    );
    assert_eq!(
        standin.rev_parse("acme", "app", "refs/heads/release"),
        Some(head.clone())
    );
    let (status, body) = call(
        &sandbox,
        "PUT",
        "/repos/acme/app/pulls/2/update-branch",
        None,
    );
    assert_eq!(status, 202, "{body}");
    assert_ne!(
        standin.rev_parse("acme", "app", "refs/heads/agent/x"),
        Some(head)
    );
}

#[test]
fn publishing_a_draft_release_is_decided_on_its_tag_looked_up() {
    let standin = standin();
    // Someone with wider rights drafts a release whose tag the sandbox may not make.
    let open = Gitgate::start(&app_config(
        &standin,
        "{allowedRepos: [acme/app], allowedRefs: ['refs/tags/*'], api: [read, contents.write]}",
    ));
    let other = Sandbox::new(&open);
    let draft = json!({"tag_name": "secret-1", "draft": true});
    let (status, body) = call(&other, "POST", "/repos/acme/app/releases", Some(&draft));
    assert_eq!(status, 201, "{body}");

    let policy = "{allowedRepos: [acme/app], allowedRefs: [main, 'refs/tags/v*'], api: [read, contents.write]}";
    let gitgate = Gitgate::start(&app_config(&standin, policy));
    let sandbox = Sandbox::new(&gitgate);
    let tag = |name: &str| standin.rev_parse("acme", "app", &format!("refs/tags/{name}"));
    // What gh does for `gh release create v1 FILE`: a draft, its assets, then publish.
    let (status, body) = call(
        &sandbox,
        "POST",
        "/repos/acme/app/releases",
        Some(&json!({"tag_name": "v1", "draft": true})),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(tag("v1"), None, "a draft makes no tag");
    let id = body["id"].as_u64().unwrap();
    let publish = json!({"draft": false});
    let path = format!("/repos/acme/app/releases/{id}");
    let (status, body) = call(&sandbox, "PATCH", &path, Some(&publish));
    assert_eq!(status, 200, "{body}");
    assert!(tag("v1").is_some(), "published: the tag is made");
    // Publishing the other draft would make a tag outside allowedRefs: refused.
    denied(
        call(
            &sandbox,
            "PATCH",
            "/repos/acme/app/releases/1",
            Some(&publish),
        ),
        "refs/tags/secret-1 is not in allowedRefs",
    );
    assert_eq!(tag("secret-1"), None);
}

/// A file written as a blob (or inline in a tree) and then put on a branch by moving a
/// ref to a commit naming it: the ref move names an existing commit, so the size is
/// decided where the blob is written.
#[test]
fn blobs_written_through_the_api_are_held_to_max_blob_size() {
    let standin = standin();
    let policy = "{allowedRepos: [acme/app], allowedRefs: ['agent/*'], api: [read, contents.write], maxBlobSize: 1KB}";
    let gitgate = Gitgate::start(&app_config(&standin, policy));
    let sandbox = Sandbox::new(&gitgate);
    let big = "x".repeat(1001);
    let blobs = "/repos/acme/app/git/blobs";
    let trees = "/repos/acme/app/git/trees";
    denied(
        call(&sandbox, "POST", blobs, Some(&json!({"content": big}))),
        "a file of 1001 bytes is larger than maxBlobSize (1.00 KB)",
    );
    let entry = json!({"path": "big.txt", "mode": "100644", "type": "blob", "content": big});
    denied(
        call(&sandbox, "POST", trees, Some(&json!({"tree": [entry]}))),
        "a file of 1001 bytes is larger than maxBlobSize",
    );
    denied(
        call(&sandbox, "POST", trees, Some(&json!({"tree": "abc"}))),
        "\"tree\" is not a list of entries",
    );
    assert_eq!(reached(&standin, "POST", blobs), 0);
    assert_eq!(reached(&standin, "POST", trees), 0);
    // Base64 is measured decoded: 1,332 characters are 999 bytes, 1,336 are 1,002.
    let small = json!({"content": "eHh4".repeat(333), "encoding": "base64"});
    assert_ne!(call(&sandbox, "POST", blobs, Some(&small)).0, 403);
    let large = json!({"content": "eHh4".repeat(334), "encoding": "base64"});
    denied(
        call(&sandbox, "POST", blobs, Some(&large)),
        "a file of 1002 bytes",
    );
    assert_eq!(reached(&standin, "POST", blobs), 1);
}
