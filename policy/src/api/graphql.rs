//! GraphQL requests (`POST /graphql`): the document is parsed and every root field of
//! every operation in it is mapped to the catalogue, with the repositories it names and
//! the refs it changes. A document gitgate cannot parse or map is refused.

use std::collections::{BTreeMap, HashSet};

use graphql_parser::query::{
    Definition, FragmentDefinition, OperationDefinition, Selection, SelectionSet, Value as Gql,
    VariableDefinition,
};
use serde_json::{Map, Value};

use crate::api::catalogue::Operation;
use crate::api::change::{
    ChangeKind, Content, RefChange, RefTarget, base64_len, branch_ref, is_plain_path,
};
use crate::api::json::parse_strict;
use crate::repo::RepoPath;

/// Deepest nesting of `{`, `(` and `[` in a document.
const MAX_NESTING: usize = 64;
/// Most root fields across a document's operations.
const MAX_ROOT_FIELDS: usize = 64;
/// Most node ids a document may make gitgate look up (GitHub's own `nodes(ids:)` cap):
/// each costs an API call with the installation's rate limit.
const MAX_NODE_IDS: usize = 100;
/// Root query fields that read no repository.
const NEUTRAL_QUERIES: &[&str] = &[
    "viewer",
    "rateLimit",
    "meta",
    "__schema",
    "__type",
    "__typename",
    "licenses",
    "license",
    "codesOfConduct",
    "codeOfConduct",
];

/// A repository a field reaches.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RepoRef {
    /// Named in the request.
    Named(RepoPath),
    /// A node id whose repository gitgate looks up.
    Node(String),
}

/// One root field of a GraphQL document and what it needs from the policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldCheck {
    /// The field, as `query repository` or `mutation createRef`.
    pub field: String,
    /// Allowed if any of these is.
    pub operations: &'static [Operation],
    /// Repositories it reaches; each must be in `allowedRepos`.
    pub repos: Vec<RepoRef>,
    /// Refs it changes, each decided like a push.
    pub changes: Vec<RefChange>,
}

/// Maps a GraphQL request body (`{"query", "variables", "operationName"}`) to the checks
/// of each root field of each operation in its document.
pub fn analyse(body: &[u8]) -> Result<Vec<FieldCheck>, String> {
    let request = parse_strict(body)?;
    let Some(request) = request.as_object() else {
        return Err(
            "a GraphQL request must be one JSON object (gitgate does not accept batches)".into(),
        );
    };
    let Some(Value::String(query)) = request.get("query") else {
        return Err("the GraphQL request has no \"query\" string".into());
    };
    let variables = match request.get("variables") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(v)) => v.clone(),
        Some(_) => return Err("the GraphQL \"variables\" are not an object".into()),
    };
    check_nesting(query)?;
    let document = graphql_parser::parse_query::<String>(query)
        .map_err(|e| format!("the GraphQL document does not parse: {e}"))?;
    let fragments: BTreeMap<&str, &FragmentDefinition<'_, String>> = document
        .definitions
        .iter()
        .filter_map(|d| match d {
            Definition::Fragment(f) => Some((f.name.as_str(), f)),
            Definition::Operation(_) => None,
        })
        .collect();
    let mut checks = Vec::new();
    for definition in &document.definitions {
        let Definition::Operation(operation) = definition else {
            continue;
        };
        let (mutation, set, definitions) = match operation {
            OperationDefinition::SelectionSet(set) => (false, set, &[][..]),
            OperationDefinition::Query(q) => (false, &q.selection_set, &q.variable_definitions[..]),
            OperationDefinition::Mutation(m) => {
                (true, &m.selection_set, &m.variable_definitions[..])
            }
            OperationDefinition::Subscription(_) => {
                return Err("GraphQL subscriptions are not in gitgate's API catalogue".into());
            }
        };
        let scope = Scope {
            variables: &variables,
            definitions,
        };
        let mut fields = Vec::new();
        root_fields(set, &fragments, &mut HashSet::new(), &mut fields)?;
        for (name, arguments) in fields {
            if checks.len() >= MAX_ROOT_FIELDS {
                return Err(format!(
                    "the GraphQL document has more than {MAX_ROOT_FIELDS} root fields"
                ));
            }
            let arguments = arguments
                .iter()
                .map(|(k, v)| Ok((k.clone(), scope.resolve(v)?)))
                .collect::<Result<Map<String, Value>, String>>()?;
            checks.push(if mutation {
                mutation_check(name, &arguments)?
            } else {
                query_check(name, &arguments)?
            });
        }
    }
    if checks.is_empty() {
        return Err("the GraphQL document has no operation".into());
    }
    let node_ids = checks
        .iter()
        .flat_map(|c| &c.repos)
        .filter(|r| matches!(r, RepoRef::Node(_)))
        .count();
    if node_ids > MAX_NODE_IDS {
        return Err(format!(
            "the GraphQL document names {node_ids} node ids; gitgate looks up at most {MAX_NODE_IDS}"
        ));
    }
    Ok(checks)
}

type Arguments<'a> = &'a [(String, Gql<'a, String>)];

/// The root fields of a selection set, through fragments.
fn root_fields<'a>(
    set: &'a SelectionSet<'a, String>,
    fragments: &BTreeMap<&str, &'a FragmentDefinition<'a, String>>,
    seen: &mut HashSet<&'a str>,
    out: &mut Vec<(&'a str, Arguments<'a>)>,
) -> Result<(), String> {
    for selection in &set.items {
        match selection {
            Selection::Field(field) => out.push((field.name.as_str(), &field.arguments)),
            Selection::InlineFragment(inline) => {
                root_fields(&inline.selection_set, fragments, seen, out)?;
            }
            Selection::FragmentSpread(spread) => {
                let name = spread.fragment_name.as_str();
                let fragment = fragments
                    .get(name)
                    .ok_or_else(|| format!("the GraphQL fragment {name} is not defined"))?;
                if seen.insert(name) {
                    root_fields(&fragment.selection_set, fragments, seen, out)?;
                }
            }
        }
    }
    Ok(())
}

/// Variable values of one operation.
struct Scope<'a> {
    variables: &'a Map<String, Value>,
    definitions: &'a [VariableDefinition<'a, String>],
}

impl Scope<'_> {
    /// A literal argument with its variables filled in, as JSON.
    fn resolve(&self, value: &Gql<'_, String>) -> Result<Value, String> {
        Ok(match value {
            Gql::Variable(name) => match self.variables.get(name) {
                Some(value) => value.clone(),
                None => match self.definitions.iter().find(|d| &d.name == name) {
                    Some(d) => match &d.default_value {
                        Some(default) => self.resolve(default)?,
                        None => Value::Null,
                    },
                    None => return Err(format!("the GraphQL variable ${name} is not declared")),
                },
            },
            Gql::Int(n) => n.as_i64().map(Value::from).unwrap_or(Value::Null),
            Gql::Float(f) => Value::from(*f),
            Gql::String(s) | Gql::Enum(s) => Value::String(s.clone()),
            Gql::Boolean(b) => Value::Bool(*b),
            Gql::Null => Value::Null,
            Gql::List(items) => Value::Array(
                items
                    .iter()
                    .map(|v| self.resolve(v))
                    .collect::<Result<_, _>>()?,
            ),
            Gql::Object(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), self.resolve(v)?)))
                    .collect::<Result<_, String>>()?,
            ),
        })
    }
}

fn query_check(name: &str, arguments: &Map<String, Value>) -> Result<FieldCheck, String> {
    let repos = match name {
        "repository" => {
            let owner = string_at(arguments, &["owner"])?;
            let repo = string_at(arguments, &["name"])?;
            vec![RepoRef::Named(
                RepoPath::from_parts(owner, repo).map_err(|e| e.to_string())?,
            )]
        }
        "node" => vec![RepoRef::Node(string_at(arguments, &["id"])?.to_owned())],
        "nodes" => match arguments.get("ids") {
            Some(Value::Array(ids)) => ids
                .iter()
                .map(|id| match id {
                    Value::String(id) => Ok(RepoRef::Node(id.clone())),
                    _ => Err("a GraphQL node id is not a string".to_owned()),
                })
                .collect::<Result<_, _>>()?,
            _ => return Err("the GraphQL field nodes has no ids".into()),
        },
        _ if NEUTRAL_QUERIES.contains(&name) => Vec::new(),
        _ => {
            return Err(format!(
                "the GraphQL query field {name} is not in gitgate's API catalogue; reach repositories through repository(owner:, name:) or node(id:)"
            ));
        }
    };
    Ok(FieldCheck {
        field: format!("query {name}"),
        operations: &[Operation::Read],
        repos,
        changes: Vec::new(),
    })
}

/// The input fields of each catalogued mutation, as GitHub's schema has them. A field not
/// listed is refused: GitHub keeps adding fields that name other objects by id
/// (`parentIssueId`), and one gitgate does not read could reach another repository.
fn known_inputs(name: &str) -> &'static [&'static str] {
    match name {
        "createPullRequest" => &[
            "repositoryId",
            "baseRefName",
            "headRefName",
            "headRepositoryId",
            "title",
            "body",
            "draft",
            "maintainerCanModify",
        ],
        "updatePullRequest" => &[
            "pullRequestId",
            "baseRefName",
            "title",
            "body",
            "state",
            "maintainerCanModify",
            "assigneeIds",
            "labelIds",
            "milestoneId",
            "projectIds",
        ],
        "closePullRequest"
        | "reopenPullRequest"
        | "markPullRequestReadyForReview"
        | "convertPullRequestToDraft" => &["pullRequestId"],
        "requestReviews" => &["pullRequestId", "userIds", "teamIds", "botIds", "union"],
        "addPullRequestReview" => &[
            "pullRequestId",
            "body",
            "event",
            "commitOID",
            "comments",
            "threads",
        ],
        // Not `pullRequestReviewId`: GitHub would follow that review, which may be in
        // another repository, rather than the pull request gitgate decided on.
        "addPullRequestReviewThread" => &[
            "pullRequestId",
            "body",
            "path",
            "line",
            "side",
            "startLine",
            "startSide",
            "subjectType",
        ],
        "addComment" => &["subjectId", "body"],
        "createIssue" => &[
            "repositoryId",
            "title",
            "body",
            "assigneeIds",
            "labelIds",
            "milestoneId",
            "projectIds",
            "issueTemplate",
            "issueTypeId",
            "parentIssueId",
        ],
        "updateIssue" => &[
            "id",
            "title",
            "body",
            "state",
            "assigneeIds",
            "labelIds",
            "milestoneId",
            "projectIds",
            "issueTypeId",
        ],
        "closeIssue" => &["issueId", "stateReason", "duplicateIssueId"],
        "reopenIssue" => &["issueId"],
        "mergePullRequest" => &[
            "pullRequestId",
            "mergeMethod",
            "commitHeadline",
            "commitBody",
            "expectedHeadOid",
            "authorEmail",
        ],
        "createRef" => &["repositoryId", "name", "oid"],
        "updateRef" => &["refId", "oid", "force"],
        "deleteRef" => &["refId"],
        "updateRefs" => &["repositoryId", "refUpdates"],
        "createCommitOnBranch" => &["branch", "expectedHeadOid", "message", "fileChanges"],
        "mergeBranch" => &[
            "repositoryId",
            "base",
            "head",
            "commitMessage",
            "authorEmail",
        ],
        _ => &[],
    }
}

/// Refuses arguments of mutation `name` beyond `input`, and input fields it does not
/// know ([`known_inputs`]; `clientMutationId` is every mutation's).
fn only_known_inputs(name: &str, arguments: &Map<String, Value>) -> Result<(), String> {
    if let Some(other) = arguments.keys().find(|k| *k != "input") {
        return Err(format!(
            "the GraphQL mutation {name} takes only `input`, not `{other}`"
        ));
    }
    let Some(input) = arguments.get("input").and_then(Value::as_object) else {
        return Ok(());
    };
    let known = known_inputs(name);
    match input
        .keys()
        .find(|k| *k != "clientMutationId" && !known.contains(&k.as_str()))
    {
        Some(field) => Err(format!(
            "the GraphQL mutation {name}'s input field {field} is not one gitgate decides on; leave it out"
        )),
        None => Ok(()),
    }
}

fn mutation_check(name: &str, arguments: &Map<String, Value>) -> Result<FieldCheck, String> {
    use Operation as Op;
    if !known_inputs(name).is_empty() {
        only_known_inputs(name, arguments)?;
    }
    let node = |key: &str| -> Result<RepoRef, String> {
        Ok(RepoRef::Node(
            string_at(arguments, &["input", key])?.to_owned(),
        ))
    };
    let update = ChangeKind::Update { force: false };
    let change = |target, kind, content| RefChange {
        target,
        kind,
        content,
    };
    let (operations, repos, changes): (&'static [Operation], _, _) = match name {
        "createPullRequest" => {
            // Its head must be a branch of the same repository (see Effect::PullCreate).
            if at(arguments, &["input", "headRepositoryId"]).is_some_and(|v| !v.is_null()) {
                return Err(super::change::CROSS_REPOSITORY.into());
            }
            super::change::same_repository_head(string_at(arguments, &["input", "headRefName"])?)?;
            (&[Op::PullsCreate], vec![node("repositoryId")?], vec![])
        }
        "updatePullRequest" => {
            let base = match at(arguments, &["input", "baseRefName"]) {
                None | Some(Value::Null) => vec![],
                Some(Value::String(base)) => vec![RefChange::retarget(branch_ref(base)?)],
                Some(_) => {
                    return Err("updatePullRequest's input.baseRefName is not a string".into());
                }
            };
            (&[Op::PullsUpdate], vec![node("pullRequestId")?], base)
        }
        "closePullRequest"
        | "reopenPullRequest"
        | "requestReviews"
        | "markPullRequestReadyForReview"
        | "convertPullRequestToDraft" => (&[Op::PullsUpdate], vec![node("pullRequestId")?], vec![]),
        "addPullRequestReview" | "addPullRequestReviewThread" => {
            (&[Op::PullsComment], vec![node("pullRequestId")?], vec![])
        }
        "addComment" => (
            &[Op::IssuesWrite, Op::PullsComment],
            vec![node("subjectId")?],
            vec![],
        ),
        // An issue named besides the one written to (a parent, or the issue it duplicates)
        // is written to as well (its sub-issues, its timeline): it must be allowed too.
        "createIssue" => (
            &[Op::IssuesWrite],
            [
                Some(node("repositoryId")?),
                optional_node(arguments, "parentIssueId")?,
            ]
            .into_iter()
            .flatten()
            .collect(),
            vec![],
        ),
        "updateIssue" => (&[Op::IssuesWrite], vec![node("id")?], vec![]),
        "closeIssue" => (
            &[Op::IssuesWrite],
            [
                Some(node("issueId")?),
                optional_node(arguments, "duplicateIssueId")?,
            ]
            .into_iter()
            .flatten()
            .collect(),
            vec![],
        ),
        "reopenIssue" => (&[Op::IssuesWrite], vec![node("issueId")?], vec![]),
        "mergePullRequest" => {
            let id = string_at(arguments, &["input", "pullRequestId"])?;
            (
                &[Op::PullsMerge],
                vec![RepoRef::Node(id.to_owned())],
                vec![change(
                    RefTarget::PullNodeBase(id.to_owned()),
                    update,
                    Content::Merge,
                )],
            )
        }
        "createRef" => {
            let name = full_ref(string_at(arguments, &["input", "name"])?)?;
            (
                &[Op::ContentsWrite],
                vec![node("repositoryId")?],
                vec![change(
                    RefTarget::Named(name),
                    ChangeKind::Create,
                    Content::Existing,
                )],
            )
        }
        "updateRef" | "deleteRef" => {
            let id = string_at(arguments, &["input", "refId"])?;
            let (kind, content) = if name == "deleteRef" {
                (ChangeKind::Delete, Content::None)
            } else {
                let force = bool_at(arguments, &["input", "force"])?;
                (ChangeKind::Update { force }, Content::Existing)
            };
            (
                &[Op::ContentsWrite],
                vec![RepoRef::Node(id.to_owned())],
                vec![change(RefTarget::RefNode(id.to_owned()), kind, content)],
            )
        }
        "updateRefs" => (
            &[Op::ContentsWrite],
            vec![node("repositoryId")?],
            ref_updates(arguments)?,
        ),
        "createCommitOnBranch" => {
            let branch = at(arguments, &["input", "branch"])
                .ok_or("createCommitOnBranch has no input.branch")?;
            // Both forms at once: which one GitHub follows is not gitgate's to guess.
            if branch.get("id").is_some()
                && (branch.get("repositoryNameWithOwner").is_some()
                    || branch.get("branchName").is_some())
            {
                return Err(
                    "createCommitOnBranch names its branch by both id and repositoryNameWithOwner/branchName; give one".into(),
                );
            }
            let (repo, target) = match branch.get("id").and_then(Value::as_str) {
                Some(id) => (
                    RepoRef::Node(id.to_owned()),
                    RefTarget::RefNode(id.to_owned()),
                ),
                None => {
                    let full = string_at(branch, &["repositoryNameWithOwner"])?;
                    let repo = RepoPath::parse(full).map_err(|e| e.to_string())?;
                    let name = branch_ref(string_at(branch, &["branchName"])?)?;
                    (RepoRef::Named(repo), RefTarget::Named(name))
                }
            };
            (
                &[Op::ContentsWrite],
                vec![repo],
                vec![change(target, update, file_changes(arguments)?)],
            )
        }
        "mergeBranch" => {
            let base = branch_ref(string_at(arguments, &["input", "base"])?)?;
            (
                &[Op::ContentsWrite],
                vec![node("repositoryId")?],
                vec![change(RefTarget::Named(base), update, Content::Merge)],
            )
        }
        _ => {
            return Err(format!(
                "the GraphQL mutation {name} is not in gitgate's API catalogue"
            ));
        }
    };
    Ok(FieldCheck {
        field: format!("mutation {name}"),
        operations,
        repos,
        changes,
    })
}

/// The node `input.KEY` names, if it is given.
fn optional_node(arguments: &Map<String, Value>, key: &str) -> Result<Option<RepoRef>, String> {
    match at(arguments, &["input", key]) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(id)) => Ok(Some(RepoRef::Node(id.clone()))),
        Some(_) => Err(format!("the GraphQL argument input.{key} is not a string")),
    }
}

/// `updateRefs`' `refUpdates`: a zero `afterOid` deletes, a zero `beforeOid` creates.
fn ref_updates(arguments: &Map<String, Value>) -> Result<Vec<RefChange>, String> {
    let Some(Value::Array(updates)) = at(arguments, &["input", "refUpdates"]) else {
        return Err("updateRefs has no input.refUpdates list".into());
    };
    let zero = |v: Option<&str>| v.is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b == b'0'));
    updates
        .iter()
        .map(|update| {
            let name = full_ref(string_at(update, &["name"])?)?;
            let (kind, content) = if zero(update.get("afterOid").and_then(Value::as_str)) {
                (ChangeKind::Delete, Content::None)
            } else if zero(update.get("beforeOid").and_then(Value::as_str)) {
                (ChangeKind::Create, Content::Existing)
            } else {
                let force = bool_at(update, &["force"])?;
                (ChangeKind::Update { force }, Content::Existing)
            };
            Ok(RefChange {
                target: RefTarget::Named(name),
                kind,
                content,
            })
        })
        .collect()
}

/// `createCommitOnBranch`'s `fileChanges`: the paths added and deleted, and the largest
/// addition.
fn file_changes(arguments: &Map<String, Value>) -> Result<Content, String> {
    let mut paths = Vec::new();
    let mut largest = 0;
    for (key, is_addition) in [("additions", true), ("deletions", false)] {
        let list = match at(arguments, &["input", "fileChanges", key]) {
            None | Some(Value::Null) => continue,
            Some(Value::Array(list)) => list,
            Some(_) => return Err(format!("input.fileChanges.{key} is not a list")),
        };
        for change in list {
            let path = string_at(change, &["path"])?;
            if !is_plain_path(path) {
                return Err(format!(
                    "input.fileChanges.{key} names {path:?}, not a plain repository path (no leading, trailing or doubled /, no . or .. segments, backslashes or control characters)"
                ));
            }
            paths.push(path.to_owned());
            if is_addition {
                largest = largest.max(base64_len(string_at(change, &["contents"])?));
            }
        }
    }
    Ok(Content::Files { paths, largest })
}

fn full_ref(name: &str) -> Result<String, String> {
    if name.starts_with("refs/") {
        Ok(name.to_owned())
    } else {
        Err(format!(
            "the ref name {name:?} is not a full ref name (refs/…)"
        ))
    }
}

fn at<'a>(value: &'a impl Lookup, path: &[&str]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let mut value = value.get_key(first)?;
    for key in rest {
        value = value.as_object()?.get(*key)?;
    }
    Some(value)
}

fn string_at<'a>(value: &'a impl Lookup, path: &[&str]) -> Result<&'a str, String> {
    at(value, path).and_then(Value::as_str).ok_or_else(|| {
        format!(
            "the GraphQL argument {} is missing or not a string",
            path.join(".")
        )
    })
}

fn bool_at(value: &impl Lookup, path: &[&str]) -> Result<bool, String> {
    match at(value, path) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(format!(
            "the GraphQL argument {} is not a boolean",
            path.join(".")
        )),
    }
}

/// Keyed access to a JSON object or map.
trait Lookup {
    fn get_key(&self, key: &str) -> Option<&Value>;
}

impl Lookup for Map<String, Value> {
    fn get_key(&self, key: &str) -> Option<&Value> {
        self.get(key)
    }
}

impl Lookup for Value {
    fn get_key(&self, key: &str) -> Option<&Value> {
        self.as_object()?.get(key)
    }
}

/// Refuses documents nested deeper than [`MAX_NESTING`] before the (recursive) parser
/// sees them; strings and comments do not count.
fn check_nesting(query: &str) -> Result<(), String> {
    let bytes = query.as_bytes();
    let (mut depth, mut i) = (0usize, 0);
    while i < bytes.len() {
        match bytes[i] {
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'"' if bytes[i..].starts_with(b"\"\"\"") => {
                i += 3;
                while i < bytes.len() && !bytes[i..].starts_with(b"\"\"\"") {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 2;
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'{' | b'(' | b'[' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(format!(
                        "the GraphQL document is nested deeper than {MAX_NESTING} levels"
                    ));
                }
            }
            b'}' | b')' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn analysed(query: &str, variables: Value) -> Result<Vec<FieldCheck>, String> {
        analyse(
            json!({"query": query, "variables": variables})
                .to_string()
                .as_bytes(),
        )
    }

    fn repo(s: &str) -> RepoRef {
        RepoRef::Named(RepoPath::parse(s).unwrap())
    }

    #[test]
    fn queries_name_their_repositories() {
        let checks = analysed(
            "query Q($o: String!, $n: String = \"app\") { viewer { login } r: repository(owner: $o, name: $n) { id } ...More }
             fragment More on Query { node(id: \"R_1\") { id } }",
            json!({"o": "Acme"}),
        )
        .unwrap();
        let repos: Vec<_> = checks.iter().flat_map(|c| c.repos.clone()).collect();
        assert_eq!(repos, [repo("acme/app"), RepoRef::Node("R_1".into())]);
        assert!(checks.iter().all(|c| c.operations == [Operation::Read]));
        let err = analysed(
            "{ search(query: \"x\", type: REPOSITORY, first: 1) { repositoryCount } }",
            json!({}),
        )
        .unwrap_err();
        assert!(err.contains("query field search"), "{err}");
    }

    /// Every issue a mutation names is decided on; an input field gitgate does not know,
    /// or a review named besides its pull request, is refused.
    #[test]
    fn every_object_a_mutation_names_is_decided_or_the_mutation_refused() {
        let nodes =
            |query: &str| -> Vec<RepoRef> { analysed(query, json!({})).unwrap()[0].repos.clone() };
        assert_eq!(
            nodes(
                "mutation { createIssue(input: {repositoryId: \"R_1\", title: \"t\", parentIssueId: \"I_9\"}) { clientMutationId } }"
            ),
            [RepoRef::Node("R_1".into()), RepoRef::Node("I_9".into())]
        );
        assert_eq!(
            nodes(
                "mutation { closeIssue(input: {issueId: \"I_1\", duplicateIssueId: \"I_9\", clientMutationId: \"c\"}) { clientMutationId } }"
            ),
            [RepoRef::Node("I_1".into()), RepoRef::Node("I_9".into())]
        );
        for (query, want) in [
            (
                "mutation { addPullRequestReviewThread(input: {pullRequestId: \"PR_1\", pullRequestReviewId: \"PRR_9\", path: \"a\", body: \"x\"}) { clientMutationId } }",
                "input field pullRequestReviewId is not one gitgate decides on",
            ),
            (
                "mutation { createIssue(input: {repositoryId: \"R_1\", title: \"t\", agentAssignment: {}}) { clientMutationId } }",
                "input field agentAssignment",
            ),
            (
                "mutation { addComment(input: {subjectId: \"I_1\", body: \"x\"}, extra: 1) { clientMutationId } }",
                "takes only `input`, not `extra`",
            ),
        ] {
            let err = analysed(query, json!({})).unwrap_err();
            assert!(err.contains(want), "{query}: {err}");
        }
    }

    #[test]
    fn mutations_map_to_the_catalogue_and_their_refs() {
        let checks = analysed(
            "mutation($input: CreatePullRequestInput!) { createPullRequest(input: $input) { pullRequest { url } } }",
            json!({"input": {"repositoryId": "R_1", "baseRefName": "main", "headRefName": "x", "title": "t"}}),
        )
        .unwrap();
        assert_eq!(checks[0].operations, [Operation::PullsCreate]);
        assert_eq!(checks[0].repos, [RepoRef::Node("R_1".into())]);

        let checks = analysed(
            "mutation { createCommitOnBranch(input: {branch: {repositoryNameWithOwner: \"acme/app\", branchName: \"main\"}, expectedHeadOid: \"a\", message: {headline: \"h\"}, fileChanges: {additions: [{path: \".github/x\", contents: \"aGVsbG8h\"}], deletions: [{path: \"old\"}]}}) { commit { oid } } }",
            json!({}),
        )
        .unwrap();
        assert_eq!(checks[0].repos, [repo("acme/app")]);
        assert_eq!(
            checks[0].changes,
            [RefChange {
                target: RefTarget::Named("refs/heads/main".into()),
                kind: ChangeKind::Update { force: false },
                content: Content::Files {
                    paths: vec![".github/x".into(), "old".into()],
                    largest: 6
                },
            }]
        );

        let checks = analysed(
            "mutation { a: updateRef(input: {refId: \"REF_1\", oid: \"b\", force: true}) { clientMutationId } b: deleteRef(input: {refId: \"REF_2\"}) { clientMutationId } }",
            json!({}),
        )
        .unwrap();
        assert_eq!(
            checks[0].changes[0].target,
            RefTarget::RefNode("REF_1".into())
        );
        assert_eq!(
            checks[0].changes[0].kind,
            ChangeKind::Update { force: true }
        );
        assert_eq!(checks[1].changes[0].kind, ChangeKind::Delete);

        let checks = analysed(
            "mutation { updateRefs(input: {repositoryId: \"R_1\", refUpdates: [{name: \"refs/heads/a\", afterOid: \"0000000000000000000000000000000000000000\"}, {name: \"refs/heads/b\", beforeOid: \"0000000000000000000000000000000000000000\", afterOid: \"c\"}]}) { clientMutationId } }",
            json!({}),
        )
        .unwrap();
        let kinds: Vec<_> = checks[0].changes.iter().map(|c| c.kind).collect();
        assert_eq!(kinds, [ChangeKind::Delete, ChangeKind::Create]);

        let checks = analysed(
            "mutation { mergePullRequest(input: {pullRequestId: \"PR_1\"}) { clientMutationId } }",
            json!({}),
        )
        .unwrap();
        assert_eq!(checks[0].operations, [Operation::PullsMerge]);
        assert_eq!(
            checks[0].changes[0].target,
            RefTarget::PullNodeBase("PR_1".into())
        );

        let checks = analysed(
            "mutation($b: String) { a: updatePullRequest(input: {pullRequestId: \"PR_1\", baseRefName: $b}) { clientMutationId } b: updatePullRequest(input: {pullRequestId: \"PR_1\", title: \"t\"}) { clientMutationId } }",
            json!({"b": "release"}),
        )
        .unwrap();
        assert_eq!(checks[0].operations, [Operation::PullsUpdate]);
        assert_eq!(
            checks[0].changes,
            [RefChange::retarget("refs/heads/release".into())]
        );
        assert!(checks[1].changes.is_empty());
    }

    #[test]
    fn what_cannot_be_mapped_is_refused() {
        for (query, variables, want) in [
            (
                "mutation { deleteRepository(input: {repositoryId: \"R\"}) { clientMutationId } }",
                json!({}),
                "mutation deleteRepository is not in",
            ),
            ("subscription { x }", json!({}), "subscriptions"),
            (
                "mutation { createPullRequest(input: {repositoryId: \"R\", baseRefName: \"main\", headRefName: \"other:x\", title: \"t\"}) { clientMutationId } }",
                json!({}),
                "head is in another repository",
            ),
            (
                "mutation { createPullRequest(input: {repositoryId: \"R\", headRepositoryId: \"R2\", baseRefName: \"main\", headRefName: \"x\", title: \"t\"}) { clientMutationId } }",
                json!({}),
                "head is in another repository",
            ),
            (
                "mutation { updatePullRequest(input: {pullRequestId: \"PR\", baseRefName: 1}) { clientMutationId } }",
                json!({}),
                "baseRefName is not a string",
            ),
            (
                "{ repository(owner: \"a\") { id } }",
                json!({}),
                "name is missing",
            ),
            (
                "{ repository(owner: $o, name: \"x\") { id } }",
                json!({}),
                "$o is not declared",
            ),
            ("{ ...F }", json!({}), "fragment F is not defined"),
            (
                "mutation { createRef(input: {repositoryId: \"R\", name: \"main\"}) { clientMutationId } }",
                json!({}),
                "not a full ref name",
            ),
            (
                "mutation { mergeBranch(input: {repositoryId: \"R\", base: \"refs/heads/main\", head: \"x\"}) { clientMutationId } }",
                json!({}),
                "ambiguous",
            ),
            (
                "{ repository(owner: \"a\", name: \"b\") { id }",
                json!({}),
                "does not parse",
            ),
            ("fragment F on Query { id }", json!({}), "no operation"),
            (
                "mutation($b: CommittableBranch!) { createCommitOnBranch(input: {branch: $b, expectedHeadOid: \"a\", message: {headline: \"h\"}}) { commit { oid } } }",
                json!({"b": {"id": "B_1", "repositoryNameWithOwner": "acme/other", "branchName": "main"}}),
                "by both id and repositoryNameWithOwner/branchName",
            ),
        ]
        .into_iter()
        .chain(
            [
                "/.github/workflows/x.yml",
                "./.github/workflows/x.yml",
                ".github//workflows/x.yml",
                "a/../.github/workflows/x.yml",
                ".github\\workflows\\x.yml",
                ".github/workflows/",
            ]
            .map(|path| {
                (
                    "mutation($p: String!) { createCommitOnBranch(input: {branch: {repositoryNameWithOwner: \"acme/app\", branchName: \"main\"}, expectedHeadOid: \"a\", message: {headline: \"h\"}, fileChanges: {deletions: [{path: $p}]}}) { commit { oid } } }",
                    json!({"p": path}),
                    "not a plain repository path",
                )
            }),
        ) {
            let err = analysed(query, variables).expect_err(query);
            assert!(err.contains(want), "{query}: {err}");
        }
        for body in [
            &b"[{\"query\": \"{ viewer { login } }\"}]"[..],
            b"{\"query\": 1}",
            b"{\"query\": \"{ viewer { id } }\", \"query\": \"mutation { x }\"}",
        ] {
            assert!(analyse(body).is_err());
        }
        let ids: Vec<String> = (0..=MAX_NODE_IDS).map(|i| format!("N{i}")).collect();
        let err = analysed(
            "query($ids: [ID!]!) { nodes(ids: $ids) { id } }",
            json!({"ids": ids}),
        )
        .unwrap_err();
        assert!(err.contains("at most 100"), "{err}");
        let deep = format!(
            "{{ viewer {} }}",
            "{ a ".repeat(MAX_NESTING) + &"}".repeat(MAX_NESTING)
        );
        assert!(
            analysed(&deep, json!({}))
                .unwrap_err()
                .contains("nested deeper")
        );
        // Braces inside strings and comments do not count.
        let strings = format!(
            "# {}\n{{ repository(owner: \"a{}\", name: \"b\") {{ id }} }}",
            "{".repeat(100),
            "{".repeat(100)
        );
        assert!(analysed(&strings, json!({})).unwrap_err().contains("owner"));
    }

    proptest::proptest! {
        #[test]
        fn analyse_never_panics(query in "[{}()\\[\\]a-z:$!\"#\\n .]{0,120}") {
            let _ = analysed(&query, json!({}));
        }
    }
}
