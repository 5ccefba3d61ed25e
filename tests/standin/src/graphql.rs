//! `POST /graphql`: a small GitHub schema executed for real. Queries `repository`,
//! `node`, `viewer`; mutations `createPullRequest`, `updatePullRequest` (its base),
//! `addComment`, `mergePullRequest`,
//! `createRef`, `updateRef`, `deleteRef`, `createCommitOnBranch`. Each field is
//! authorized as GitHub authorizes an installation token; results are projected onto
//! the request's selection sets (aliases, fragments, `__typename`).

use std::collections::BTreeMap;
use std::time::SystemTime;

use base64::Engine as _;
use graphql_parser::query::{
    Definition, Document, FragmentDefinition, OperationDefinition, Selection, SelectionSet,
    Value as Gql,
};
use http::request::Parts;
use http::{Response, StatusCode};
use http_body_util::{BodyExt as _, Limited};
use serde_json::{Map, Value, json};

use crate::api::{error, json_response};
use crate::hub::{self, ApiError, NodeId, ZERO, with_repo};
use crate::server::{Counted, RespBody, Shared};
use crate::tokens::Level;

const MAX_BODY: usize = 1 << 20;

pub(crate) async fn handle(shared: &Shared, parts: &Parts, body: Counted) -> Response<RespBody> {
    let Some(token) = crate::repo_api::api_token(parts) else {
        return error(
            StatusCode::UNAUTHORIZED,
            "This endpoint requires you to be authenticated.",
        );
    };
    if !shared.tokens().live(&token, SystemTime::now()) {
        return error(StatusCode::UNAUTHORIZED, "Bad credentials");
    }
    let Ok(bytes) = Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map(|c| c.to_bytes())
    else {
        return error(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large");
    };
    let Ok(request) = serde_json::from_slice::<Value>(&bytes) else {
        return error(StatusCode::BAD_REQUEST, "Problems parsing JSON");
    };
    let query = request
        .get("query")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let variables = request
        .get("variables")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let document = match graphql_parser::parse_query::<String>(query) {
        Ok(d) => d,
        Err(e) => {
            return json_response(
                StatusCode::OK,
                json!({"errors": [{"message": e.to_string()}]}),
            );
        }
    };
    let name = request.get("operationName").and_then(Value::as_str);
    let mut run = Run {
        shared,
        token: &token,
        variables: &variables,
        fragments: fragments(&document),
        errors: Vec::new(),
    };
    let data = run.execute(&document, name);
    let mut answer = json!({"data": data});
    if !run.errors.is_empty() {
        answer["errors"] = Value::Array(run.errors);
    }
    json_response(StatusCode::OK, answer)
}

fn fragments<'a>(
    document: &'a Document<'a, String>,
) -> BTreeMap<&'a str, &'a FragmentDefinition<'a, String>> {
    document
        .definitions
        .iter()
        .filter_map(|d| match d {
            Definition::Fragment(f) => Some((f.name.as_str(), f)),
            Definition::Operation(_) => None,
        })
        .collect()
}

struct Run<'a> {
    shared: &'a Shared,
    token: &'a str,
    variables: &'a Map<String, Value>,
    fragments: BTreeMap<&'a str, &'a FragmentDefinition<'a, String>>,
    errors: Vec<Value>,
}

impl<'a> Run<'a> {
    fn execute(&mut self, document: &'a Document<'a, String>, name: Option<&str>) -> Value {
        let operation = document.definitions.iter().find_map(|d| match d {
            Definition::Operation(op) if name.is_none() || op_name(op) == name => Some(op),
            _ => None,
        });
        let (set, mutation) = match operation {
            Some(OperationDefinition::SelectionSet(s)) => (s, false),
            Some(OperationDefinition::Query(q)) => (&q.selection_set, false),
            Some(OperationDefinition::Mutation(m)) => (&m.selection_set, true),
            _ => {
                self.errors
                    .push(json!({"message": "no operation to execute"}));
                return Value::Null;
            }
        };
        let root = json!({"__typename": if mutation { "Mutation" } else { "Query" }});
        let mut out = Map::new();
        self.fields(set, &root, &mut |run, field, key| {
            let args: Map<String, Value> = field
                .arguments
                .iter()
                .map(|(k, v)| (k.clone(), run.value(v)))
                .collect();
            let resolved = if field.name == "__typename" {
                Ok(root["__typename"].clone())
            } else if mutation {
                run.mutate(&field.name, &args)
            } else {
                run.query(&field.name, &args)
            };
            let value = match resolved {
                Ok(v) => run.project(&v, &field.selection_set),
                Err(e) => {
                    run.errors.push(json!({"message": e.message, "path": [key], "type": e.status.canonical_reason()}));
                    Value::Null
                }
            };
            out.insert(key.to_owned(), value);
        });
        Value::Object(out)
    }

    /// Visits the fields of `set` that apply to `object`, through fragments.
    fn fields(
        &mut self,
        set: &'a SelectionSet<'a, String>,
        object: &Value,
        visit: &mut dyn FnMut(&mut Self, &'a graphql_parser::query::Field<'a, String>, &str),
    ) {
        for selection in &set.items {
            match selection {
                Selection::Field(f) => {
                    let key = f.alias.as_deref().unwrap_or(&f.name);
                    visit(self, f, key);
                }
                Selection::InlineFragment(i) => {
                    let applies = match &i.type_condition {
                        Some(graphql_parser::query::TypeCondition::On(t)) => applies(t, object),
                        None => true,
                    };
                    if applies {
                        self.fields(&i.selection_set, object, visit);
                    }
                }
                Selection::FragmentSpread(s) => {
                    if let Some(f) = self.fragments.get(s.fragment_name.as_str()).copied() {
                        let graphql_parser::query::TypeCondition::On(t) = &f.type_condition;
                        if applies(t, object) {
                            self.fields(&f.selection_set, object, visit);
                        }
                    }
                }
            }
        }
    }

    /// `value` cut down to `set`.
    fn project(&mut self, value: &Value, set: &'a SelectionSet<'a, String>) -> Value {
        if set.items.is_empty() {
            return value.clone();
        }
        match value {
            Value::Array(items) => {
                Value::Array(items.iter().map(|v| self.project(v, set)).collect())
            }
            Value::Object(_) => {
                let mut out = Map::new();
                self.fields(set, value, &mut |run, field, key| {
                    let args: Map<String, Value> = field
                        .arguments
                        .iter()
                        .map(|(k, v)| (k.clone(), run.value(v)))
                        .collect();
                    let sub = match field.name.as_str() {
                        "pullRequests" => filter_connection(value["pullRequests"].clone(), &args),
                        // `pullRequest(number:)` picks one of the repository's.
                        "pullRequest" if args.contains_key("number") => {
                            value["pullRequests"]["nodes"]
                                .as_array()
                                .and_then(|nodes| {
                                    nodes.iter().find(|n| n["number"] == args["number"])
                                })
                                .cloned()
                                .unwrap_or(Value::Null)
                        }
                        name => value.get(name).cloned().unwrap_or(Value::Null),
                    };
                    let projected = run.project(&sub, &field.selection_set);
                    out.insert(key.to_owned(), projected);
                });
                Value::Object(out)
            }
            other => other.clone(),
        }
    }

    fn value(&self, value: &Gql<'_, String>) -> Value {
        match value {
            Gql::Variable(name) => self.variables.get(name).cloned().unwrap_or(Value::Null),
            Gql::Int(n) => n.as_i64().map(Value::from).unwrap_or(Value::Null),
            Gql::Float(f) => Value::from(*f),
            Gql::String(s) | Gql::Enum(s) => Value::String(s.clone()),
            Gql::Boolean(b) => Value::Bool(*b),
            Gql::Null => Value::Null,
            Gql::List(items) => Value::Array(items.iter().map(|v| self.value(v)).collect()),
            Gql::Object(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(k, v)| (k.clone(), self.value(v)))
                    .collect(),
            ),
        }
    }

    /// Whether the token reaches `owner/repo` with one of `alternatives`.
    fn authorize(
        &self,
        owner: &str,
        repo: &str,
        alternatives: &[&[(&str, Level)]],
    ) -> Result<(), ApiError> {
        hub::authorize(self.shared, self.token, owner, repo, alternatives).map_err(|mut e| {
            if e.status == StatusCode::NOT_FOUND {
                e.message =
                    format!("Could not resolve to a Repository with the name '{owner}/{repo}'.");
            }
            e
        })
    }

    fn query(&mut self, name: &str, args: &Map<String, Value>) -> Result<Value, ApiError> {
        match name {
            "repository" => {
                let owner = arg(args, "owner")?.to_ascii_lowercase();
                let repo = arg(args, "name")?.to_ascii_lowercase();
                self.authorize(&owner, &repo, &[])?;
                self.repo_node(&owner, &repo)
            }
            "node" => self.node(arg(args, "id")?),
            "viewer" => Ok(json!({"__typename": "Bot", "login": "gitgate-test[bot]", "id": "B:1"})),
            // Introspection, as clients use it to detect features: the type's fields are
            // the ones this schema fills in.
            "__type" => {
                let name = arg(args, "name")?;
                let sample = match name {
                    "PullRequest" => hub::pull_node(&hub::Pull::default()),
                    "Repository" => hub::repo_node_shallow("o", "r"),
                    _ => json!({}),
                };
                let fields: Vec<Value> = sample
                    .as_object()
                    .into_iter()
                    .flat_map(|o| o.keys())
                    .filter(|k| !k.starts_with("__"))
                    .map(|k| json!({"name": k}))
                    .collect();
                Ok(
                    json!({"__typename": "__Type", "name": name, "fields": fields, "inputFields": [], "enumValues": []}),
                )
            }
            other => Err(hub::fail(
                StatusCode::BAD_REQUEST,
                format!("Field '{other}' doesn't exist on type 'Query'"),
            )),
        }
    }

    fn repo_node(&self, owner: &str, repo: &str) -> Result<Value, ApiError> {
        with_repo(self.shared, owner, repo, |_| Ok(()))?;
        let mut node = hub::repo_node_shallow(owner, repo);
        let pulls: Vec<Value> = self
            .shared
            .pulls()
            .iter()
            .filter(|p| p.owner == owner && p.repo == repo)
            .map(hub::pull_node)
            .collect();
        node["pullRequests"] = json!({"totalCount": pulls.len(), "nodes": pulls});
        Ok(node)
    }

    fn node(&self, id: &str) -> Result<Value, ApiError> {
        let missing = || {
            hub::fail(
                StatusCode::NOT_FOUND,
                format!("Could not resolve to a node with the global id of '{id}'"),
            )
        };
        match hub::parse_id(id).ok_or_else(missing)? {
            NodeId::Repo(owner, repo) => {
                self.authorize(&owner, &repo, &[])?;
                self.repo_node(&owner, &repo)
            }
            NodeId::Ref(owner, repo, name) => {
                self.authorize(&owner, &repo, &[])?;
                self.ref_node(&owner, &repo, &name)?.ok_or_else(missing)
            }
            NodeId::Pull(owner, repo, number) => {
                self.authorize(&owner, &repo, &[&[("pull_requests", Level::Read)]])?;
                Ok(hub::pull_node(&hub::pull(
                    self.shared,
                    &owner,
                    &repo,
                    number,
                )?))
            }
        }
    }

    fn ref_node(&self, owner: &str, repo: &str, name: &str) -> Result<Option<Value>, ApiError> {
        let target = with_repo(self.shared, owner, repo, |r| Ok(r.resolve(name)))?;
        let (prefix, short) = match name.strip_prefix("refs/heads/") {
            Some(short) => ("refs/heads/", short),
            None => (
                "refs/tags/",
                name.strip_prefix("refs/tags/").unwrap_or(name),
            ),
        };
        Ok(target.map(|oid| {
            json!({"__typename": "Ref", "id": hub::ref_id(owner, repo, name), "name": short, "prefix": prefix,
                   "target": {"__typename": "Commit", "oid": oid},
                   "repository": hub::repo_node_shallow(owner, repo)})
        }))
    }

    /// The repository of a node id, authorized with `alternatives`.
    fn node_repo(
        &self,
        id: &str,
        alternatives: &[&[(&str, Level)]],
    ) -> Result<(String, String), ApiError> {
        let (owner, repo) = match hub::parse_id(id) {
            Some(NodeId::Repo(o, r) | NodeId::Ref(o, r, _) | NodeId::Pull(o, r, _)) => (o, r),
            None => {
                return Err(hub::fail(
                    StatusCode::NOT_FOUND,
                    format!("Could not resolve to a node with the global id of '{id}'"),
                ));
            }
        };
        self.authorize(&owner, &repo, alternatives)?;
        Ok((owner, repo))
    }

    fn mutate(&mut self, name: &str, args: &Map<String, Value>) -> Result<Value, ApiError> {
        use Level::Write;
        const CONTENTS: &[&[(&str, Level)]] = &[&[("contents", Write)]];
        let input = args
            .get("input")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        match name {
            "createPullRequest" => {
                let (owner, repo) =
                    self.node_repo(arg(&input, "repositoryId")?, &[&[("pull_requests", Write)]])?;
                let body = input.get("body").and_then(Value::as_str).unwrap_or("");
                let pull = hub::create_pull(
                    self.shared,
                    &owner,
                    &repo,
                    arg(&input, "title")?,
                    body,
                    arg(&input, "baseRefName")?,
                    arg(&input, "headRefName")?,
                )?;
                Ok(json!({"pullRequest": hub::pull_node(&pull)}))
            }
            "addComment" => {
                let id = arg(&input, "subjectId")?;
                let (owner, repo) =
                    self.node_repo(id, &[&[("issues", Write)], &[("pull_requests", Write)]])?;
                let Some(NodeId::Pull(_, _, number)) = hub::parse_id(id) else {
                    return Err(hub::fail(StatusCode::NOT_FOUND, "subject not found"));
                };
                let body = arg(&input, "body")?;
                let comment = hub::comment(self.shared, &owner, &repo, number, body)?;
                let subject = hub::pull_node(&hub::pull(self.shared, &owner, &repo, number)?);
                Ok(
                    json!({"commentEdge": {"node": {"id": format!("C:{comment}"), "body": body,
                    "url": format!("https://github.com/{owner}/{repo}/pull/{number}#issuecomment-{comment}")}}, "subject": subject}),
                )
            }
            "updatePullRequest" => {
                let id = arg(&input, "pullRequestId")?;
                let (owner, repo) = self.node_repo(id, &[&[("pull_requests", Write)]])?;
                let Some(NodeId::Pull(_, _, number)) = hub::parse_id(id) else {
                    return Err(hub::fail(StatusCode::NOT_FOUND, "pull request not found"));
                };
                let pull = match input.get("baseRefName").and_then(Value::as_str) {
                    Some(base) => hub::retarget_pull(self.shared, &owner, &repo, number, base)?,
                    None => hub::pull(self.shared, &owner, &repo, number)?,
                };
                Ok(json!({"pullRequest": hub::pull_node(&pull)}))
            }
            "mergePullRequest" => {
                let id = arg(&input, "pullRequestId")?;
                let (owner, repo) =
                    self.node_repo(id, &[&[("contents", Write), ("pull_requests", Write)]])?;
                let Some(NodeId::Pull(_, _, number)) = hub::parse_id(id) else {
                    return Err(hub::fail(StatusCode::NOT_FOUND, "pull request not found"));
                };
                hub::merge_pull(self.shared, &owner, &repo, number)?;
                Ok(
                    json!({"pullRequest": hub::pull_node(&hub::pull(self.shared, &owner, &repo, number)?)}),
                )
            }
            "createRef" => {
                let (owner, repo) = self.node_repo(arg(&input, "repositoryId")?, CONTENTS)?;
                let name = arg(&input, "name")?;
                let oid = arg(&input, "oid")?;
                with_repo(self.shared, &owner, &repo, |r| {
                    r.update_ref(name, oid, Some(ZERO)).map_err(|_| {
                        hub::fail(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            "A ref named that already exists",
                        )
                    })
                })?;
                Ok(json!({"ref": self.ref_node(&owner, &repo, name)?}))
            }
            "updateRef" | "deleteRef" => {
                let id = arg(&input, "refId")?;
                let (owner, repo) = self.node_repo(id, CONTENTS)?;
                let Some(NodeId::Ref(_, _, ref_name)) = hub::parse_id(id) else {
                    return Err(hub::fail(StatusCode::NOT_FOUND, "ref not found"));
                };
                let force = input.get("force").and_then(Value::as_bool).unwrap_or(false);
                let oid = input.get("oid").and_then(Value::as_str).map(str::to_owned);
                with_repo(self.shared, &owner, &repo, |r| {
                    let old = r
                        .resolve(&ref_name)
                        .ok_or_else(|| hub::fail(StatusCode::NOT_FOUND, "ref not found"))?;
                    let failed = |e: anyhow::Error| {
                        hub::fail(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
                    };
                    match &oid {
                        None => r.delete_ref(&ref_name).map_err(failed),
                        Some(oid) if force || r.is_ancestor(&old, oid) => {
                            r.update_ref(&ref_name, oid, Some(&old)).map_err(failed)
                        }
                        Some(_) => Err(hub::fail(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            "Update is not a fast forward",
                        )),
                    }
                })?;
                Ok(
                    json!({"ref": self.ref_node(&owner, &repo, &ref_name)?, "clientMutationId": null}),
                )
            }
            "createCommitOnBranch" => {
                let branch = input
                    .get("branch")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                let full = arg(&branch, "repositoryNameWithOwner")?.to_ascii_lowercase();
                let (owner, repo) = full
                    .split_once('/')
                    .ok_or_else(|| hub::fail(StatusCode::NOT_FOUND, "repository not found"))?;
                self.authorize(owner, repo, CONTENTS)?;
                let branch_name = arg(&branch, "branchName")?;
                let headline = input
                    .get("message")
                    .and_then(|m| m.get("headline"))
                    .and_then(Value::as_str)
                    .unwrap_or("commit");
                let files = file_changes(&input)?;
                let expected = input.get("expectedHeadOid").and_then(Value::as_str);
                let oid = hub::commit_files(
                    self.shared,
                    owner,
                    repo,
                    branch_name,
                    expected,
                    &files,
                    headline,
                )?;
                Ok(
                    json!({"commit": {"oid": oid, "url": format!("https://github.com/{full}/commit/{oid}")},
                          "ref": self.ref_node(owner, repo, &format!("refs/heads/{branch_name}"))?}),
                )
            }
            other => Err(hub::fail(
                StatusCode::BAD_REQUEST,
                format!("Field '{other}' doesn't exist on type 'Mutation'"),
            )),
        }
    }
}

/// `createCommitOnBranch`'s additions (Base64 contents) and deletions.
fn file_changes(input: &Map<String, Value>) -> Result<Vec<crate::gitops::FileChange>, ApiError> {
    let changes = input.get("fileChanges");
    let list = |key: &str| {
        changes
            .and_then(|c| c.get(key))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let mut files = Vec::new();
    for addition in list("additions") {
        let path = addition
            .get("path")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let contents = addition
            .get("contents")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(contents)
            .map_err(|_| {
                hub::fail(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "contents is not valid Base64",
                )
            })?;
        files.push((path, Some(bytes)));
    }
    for deletion in list("deletions") {
        files.push((
            deletion
                .get("path")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            None,
        ));
    }
    Ok(files)
}

fn op_name<'a>(op: &'a OperationDefinition<'a, String>) -> Option<&'a str> {
    match op {
        OperationDefinition::Query(q) => q.name.as_deref(),
        OperationDefinition::Mutation(m) => m.name.as_deref(),
        OperationDefinition::Subscription(s) => s.name.as_deref(),
        OperationDefinition::SelectionSet(_) => None,
    }
}

/// Whether a fragment on type `t` applies to `object` (interfaces apply to all).
fn applies(t: &str, object: &Value) -> bool {
    matches!(
        t,
        "Node" | "RepositoryOwner" | "Actor" | "UniformResourceLocatable"
    ) || object.get("__typename").and_then(Value::as_str) == Some(t)
}

fn arg<'v>(args: &'v Map<String, Value>, key: &str) -> Result<&'v str, ApiError> {
    args.get(key).and_then(Value::as_str).ok_or_else(|| {
        hub::fail(
            StatusCode::BAD_REQUEST,
            format!("Argument '{key}' is missing or not a string"),
        )
    })
}

/// A `pullRequests` connection filtered by `headRefName`, `baseRefName` and `states`.
fn filter_connection(connection: Value, args: &Map<String, Value>) -> Value {
    let Some(nodes) = connection.get("nodes").and_then(Value::as_array) else {
        return connection;
    };
    let keep = |node: &&Value| {
        ["headRefName", "baseRefName"]
            .iter()
            .all(|k| match args.get(*k) {
                Some(Value::String(want)) => node.get(*k) == Some(&Value::String(want.clone())),
                _ => true,
            })
            && match args.get("states") {
                Some(Value::Array(states)) => states.contains(&node["state"]),
                Some(Value::String(state)) => node["state"] == *state,
                _ => true,
            }
    };
    let kept: Vec<Value> = nodes.iter().filter(keep).cloned().collect();
    json!({"totalCount": kept.len(), "nodes": kept, "edges": kept.iter().map(|n| json!({"node": n})).collect::<Vec<_>>()})
}
