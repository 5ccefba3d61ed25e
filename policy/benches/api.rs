//! The cost of deciding a GitHub API call: REST classification, the ref effect of a
//! contents write, GraphQL analysis of the documents `gh pr create` sends, and the
//! policy's decisions on them.
//!
//! ```text
//! cargo bench -p gitgate-policy --bench api
//! ```

use std::hint::black_box;
use std::time::Instant;

use gitgate_policy::Policy;
use gitgate_policy::api::{ChangeKind, Content, Operation, analyse, classify};

const ROUNDS: usize = 200_000;

/// gh 2.23's `PullRequestForBranch` query and `PullRequestCreate` mutation, as sent.
const FOR_BRANCH: &str = r#"{"query":"query PullRequestForBranch($owner: String!, $repo: String!, $headRefName: String!, $states: [PullRequestState!]) {\n repository(owner: $owner, name: $repo) {\n pullRequests(headRefName: $headRefName, states: $states, first: 30, orderBy: { field: CREATED_AT, direction: DESC }) {\n nodes {url,id,number,state,baseRefName,headRefName,isCrossRepository,headRepositoryOwner{id,login,...on User{name}}}\n }\n defaultBranchRef { name }\n }\n }","variables":{"headRefName":"agent/x","owner":"acme","repo":"app","states":["OPEN"]}}"#;
const CREATE: &str = r#"{"query":"mutation PullRequestCreate($input: CreatePullRequestInput!) {\n createPullRequest(input: $input) {\n pullRequest {\n id\n url\n }\n }\n }","variables":{"input":{"baseRefName":"main","body":"Done by an agent","draft":false,"headRefName":"agent/x","maintainerCanModify":true,"repositoryId":"R_kgDOABCDEF","title":"Fix"}}}"#;

fn time<T>(name: &str, mut f: impl FnMut() -> T) {
    for _ in 0..ROUNDS / 10 {
        black_box(f());
    }
    let start = Instant::now();
    for _ in 0..ROUNDS {
        black_box(f());
    }
    let ns = start.elapsed().as_nanos() as f64 / ROUNDS as f64;
    println!("{name:<48} {ns:>9.0} ns");
}

fn main() {
    let policy = Policy::from_yaml(
        "{allowedRepos: [acme/app, 'acme/lib-*'], allowedRefs: [main, 'agent/*'], api: [read, pulls.create, contents.write]}",
        &["github.com".to_owned(), "api.github.com".to_owned()],
    )
    .expect("policy");
    let contents = serde_json::json!({"message": "m", "content": "aGVsbG8K", "branch": "agent/x"});
    time("classify GET /repos/acme/app/pulls/3", || {
        classify("GET", "/repos/acme/app/pulls/3")
    });
    time("classify + decide PUT contents (branch given)", || {
        let call = classify("PUT", "/repos/acme/app/contents/docs/a.md").expect("call");
        let changes = call.effect.changes(&contents).expect("changes");
        let repo = call.repo.as_ref().expect("repo");
        (
            policy.decide_operation(call.operations, "PUT"),
            policy.decide_push(repo),
            policy.decide_ref_change("refs/heads/agent/x", changes[0].kind, &changes[0].content),
        )
    });
    time("analyse gh PullRequestForBranch", || {
        analyse(FOR_BRANCH.as_bytes())
    });
    time("analyse gh PullRequestCreate", || {
        analyse(CREATE.as_bytes())
    });
    time("decide_ref_change (update, files)", || {
        policy.decide_ref_change(
            "refs/heads/agent/x",
            ChangeKind::Update { force: false },
            &Content::Files {
                paths: vec!["a".into()],
                largest: 3,
            },
        )
    });
    time("decide_operation", || {
        policy.decide_operation(&[Operation::PullsCreate], "mutation createPullRequest")
    });
}
