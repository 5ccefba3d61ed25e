//! The GitHub API (REST and GraphQL) under `policy.api`: each call is mapped to the
//! catalogue, the repositories it reaches are checked against `allowedRepos`, the refs it
//! changes are decided like a push (looked up where the request does not name them), and
//! only then is it forwarded with the installation token. Denials are GitHub-shaped JSON.

use std::collections::HashMap;

use gitgate_policy::api::{self, Effect, FieldCheck, Operation, RefChange, RefTarget, RepoRef};
use gitgate_policy::{Decision, Policy, RepoPath};
use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use crate::audit::{Record, Service, Verdict};
use crate::body::{Buffered, ProxyBody, read_bounded, stream};
use crate::git::enforce;
use crate::github::ClientBody;
use crate::reply::{self, Failure, Shape};
use crate::repo_api::Node;
use crate::send;
use crate::state::State;
use crate::token::{Credential, Purpose};

/// The largest REST body read to find the refs a call changes.
const MAX_REST_BODY: usize = 8 << 20;
/// The largest GraphQL request read.
const MAX_GRAPHQL_BODY: usize = 1 << 20;

/// Why a call is not forwarded (already recorded); answered as GitHub-shaped JSON.
type Answered = Failure;

pub(crate) async fn handle(
    state: &State,
    policy: &Policy,
    req: Request<ClientBody>,
    record: &mut Record,
) -> Response<ProxyBody> {
    record.service = Service::Api;
    let settings = &state.settings;
    let path = req.uri().path().to_owned();
    let ghes = settings.api_host == settings.github_host;
    let prepared = if (ghes && path == "/api/graphql") || (!ghes && path == "/graphql") {
        graphql(state, policy, req, record).await
    } else {
        let rest = if ghes {
            path.strip_prefix("/api/v3").unwrap_or(&path).to_owned()
        } else {
            path
        };
        rest_call(state, policy, &rest, req, record).await
    };
    let (url, parts, body, credential) = match prepared {
        Ok(prepared) => prepared,
        Err(failure) => return reply::failure(Shape::Json, &failure),
    };
    let Ok(uri) = url.parse() else {
        let failure = Failure::Client(format!("cannot forward to {url}"));
        return reply::failure(Shape::Json, &failure);
    };
    let authorization = credential.as_ref().map(Credential::bearer);
    let mut parts = parts;
    readable_encodings(&mut parts.headers);
    match send::upstream(
        state,
        &settings.api_host,
        uri,
        parts,
        body,
        authorization,
        record,
    )
    .await
    {
        Ok(response) => answer(state, response, credential.as_ref(), record).await,
        Err(failure) => reply::failure(Shape::Json, &failure),
    }
}

/// A request ready to forward: URL, head, body and credential.
type Prepared = (String, http::request::Parts, ProxyBody, Option<Credential>);

/// A REST call: classified, its operation, repository and ref changes decided.
async fn rest_call(
    state: &State,
    policy: &Policy,
    path: &str,
    req: Request<ClientBody>,
    record: &mut Record,
) -> Result<Prepared, Answered> {
    let method = req.method().as_str().to_owned();
    let call = api::classify(&method, path).map_err(|reason| deny_now(record, reason))?;
    let what = format!("{method} {}", call.target);
    check(
        policy,
        record,
        &policy.decide_operation(call.operations, &what),
    )?;
    refuse_ambiguous_write(&req, record)?;
    let writes = call.writes_contents();
    if let Some(repo) = &call.repo {
        record.repo = Some(repo.to_string());
        check(policy, record, &policy.decide_repo(repo))?;
        if writes {
            check(policy, record, &policy.decide_push(repo))?;
        }
    }
    let credential = credential(state, policy, call.repo.as_ref(), record).await?;
    let (parts, body) = req.into_parts();
    let body = if call.effect == Effect::None {
        stream(body)
    } else {
        let buffered = collect(state, &parts, body, MAX_REST_BODY, record).await?;
        let bytes = buffered.bytes();
        let json = if bytes.is_empty() {
            serde_json::Value::Null
        } else {
            api::parse_strict(bytes).map_err(|e| client_error(record, e))?
        };
        let changes = call
            .effect
            .changes(&json)
            .map_err(|reason| deny_now(record, format!("{what}: {reason}")))?;
        let repo = call
            .repo
            .as_ref()
            .ok_or_else(|| internal("a ref change without a repository"))?;
        let blobs = policy
            .decide_blobs(&call.effect, &json)
            .map_err(|reason| deny_now(record, format!("{what}: {reason}")))?;
        if let Some(too_large) = blobs {
            check(policy, record, &too_large)?;
        }
        if !writes && !changes.is_empty() {
            // Moving a pull request's base names where its merges will write.
            check(policy, record, &policy.decide_push(repo))?;
        }
        for change in &changes {
            let name = rest_target(state, repo, &change.target, credential.as_ref())
                .await
                .map_err(|e| lookup_failed(record, e))?;
            decide_change(policy, record, &name, change)?;
        }
        buffered.into_body()
    };
    let query = parts
        .uri
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let url = format!("{}{}{query}", state.settings.api_url, call.target);
    Ok((url, parts, body, credential))
}

/// A GraphQL request: every root field of its document mapped and decided.
async fn graphql(
    state: &State,
    policy: &Policy,
    req: Request<ClientBody>,
    record: &mut Record,
) -> Result<Prepared, Answered> {
    if req.method() != Method::POST {
        let reason = format!(
            "{} on the GraphQL endpoint: only POST is forwarded",
            req.method()
        );
        return Err(deny_now(record, reason));
    }
    refuse_ambiguous_write(&req, record)?;
    // Nothing is read for a sandbox the API is closed to.
    check(
        policy,
        record,
        &policy.decide_operation(&Operation::ALL, "POST /graphql"),
    )?;
    let (parts, body) = req.into_parts();
    let buffered = collect(state, &parts, body, MAX_GRAPHQL_BODY, record).await?;
    let fields = api::analyse(buffered.bytes()).map_err(|reason| deny_now(record, reason))?;
    for field in &fields {
        check(
            policy,
            record,
            &policy.decide_operation(field.operations, &field.field),
        )?;
    }
    // The token is the one of the first repository named; node ids are looked up with it.
    let named = fields.iter().flat_map(|f| &f.repos).find_map(|r| match r {
        RepoRef::Named(repo) => Some(repo.clone()),
        RepoRef::Node(_) => None,
    });
    let credential = credential(state, policy, named.as_ref(), record).await?;
    let mut nodes = HashMap::new();
    for field in &fields {
        decide_field(
            state,
            policy,
            field,
            credential.as_ref(),
            &mut nodes,
            record,
        )
        .await?;
    }
    let url = graphql_url(&state.settings.api_url);
    Ok((url, parts, buffered.into_body(), credential))
}

/// One GraphQL root field: its repositories allowed (writable if it changes refs), and
/// each ref change decided.
async fn decide_field(
    state: &State,
    policy: &Policy,
    field: &FieldCheck,
    credential: Option<&Credential>,
    nodes: &mut HashMap<String, Node>,
    record: &mut Record,
) -> Result<(), Answered> {
    for repo_ref in &field.repos {
        let repo = match repo_ref {
            RepoRef::Named(repo) => repo.clone(),
            RepoRef::Node(id) => {
                let node = node(state, id, credential, nodes, record).await?;
                node.repo.ok_or_else(|| {
                    deny_now(
                        record,
                        format!(
                            "{}: gitgate cannot tell which repository node {id} ({}) belongs to",
                            field.field, node.typename
                        ),
                    )
                })?
            }
        };
        record.repo.get_or_insert_with(|| repo.to_string());
        check(policy, record, &policy.decide_repo(&repo))?;
        if !field.changes.is_empty() {
            check(policy, record, &policy.decide_push(&repo))?;
        }
    }
    for change in &field.changes {
        let name = match &change.target {
            RefTarget::Named(name) => Some(name.clone()),
            RefTarget::RefNode(id) => node(state, id, credential, nodes, record).await?.ref_name,
            RefTarget::PullNodeBase(id) => {
                node(state, id, credential, nodes, record).await?.base_ref
            }
            other => return Err(internal(&format!("{other:?} in a GraphQL field"))),
        };
        let Some(name) = name else {
            return Err(deny_now(
                record,
                format!("{}: gitgate cannot tell which ref it changes", field.field),
            ));
        };
        decide_change(policy, record, &name, change)?;
    }
    Ok(())
}

/// Node `id`, looked up once per request (never across requests, see
/// [`crate::repo_api::RepoApi::node`]).
async fn node(
    state: &State,
    id: &str,
    credential: Option<&Credential>,
    nodes: &mut HashMap<String, Node>,
    record: &mut Record,
) -> Result<Node, Answered> {
    if let Some(node) = nodes.get(id) {
        return Ok(node.clone());
    }
    let node = state
        .repo_api
        .node(id, credential)
        .await
        .map_err(|e| lookup_failed(record, e))?
        .unwrap_or_else(|| Node {
            typename: "not found".into(),
            ..Node::default()
        });
    nodes.insert(id.to_owned(), node.clone());
    Ok(node)
}

/// The full ref name a REST change targets, looked up where the request does not say.
async fn rest_target(
    state: &State,
    repo: &RepoPath,
    target: &RefTarget,
    credential: Option<&Credential>,
) -> Result<String, String> {
    let api = &state.repo_api;
    Ok(match target {
        RefTarget::Named(name) => name.clone(),
        RefTarget::DefaultBranch => {
            format!("refs/heads/{}", api.default_branch(repo, credential).await?)
        }
        RefTarget::PullBase(n) => api.pull_refs(repo, *n, credential).await?.base,
        RefTarget::PullHead(n) => api.pull_refs(repo, *n, credential).await?.head,
        RefTarget::ReleaseTag(id) => {
            format!(
                "refs/tags/{}",
                api.release_tag(repo, *id, credential).await?
            )
        }
        RefTarget::RefNode(_) | RefTarget::PullNodeBase(_) => {
            return Err("a GraphQL node in a REST call".into());
        }
    })
}

fn decide_change(
    policy: &Policy,
    record: &mut Record,
    name: &str,
    change: &RefChange,
) -> Result<(), Answered> {
    check(
        policy,
        record,
        &policy.decide_ref_change(name, change.kind, &change.content),
    )
}

/// The token for `repo`'s owner; calls without a repository use the first account
/// `allowedRepos` names.
async fn credential(
    state: &State,
    policy: &Policy,
    repo: Option<&RepoPath>,
    record: &mut Record,
) -> Result<Option<Credential>, Answered> {
    let fallback;
    let repo = match repo {
        Some(repo) => Some(repo),
        None => {
            fallback = policy.named_repos().into_iter().next();
            fallback.as_ref()
        }
    };
    let Some(repo) = repo else {
        let reason = "gitgate has no account to pick a token for this call: allowedRepos names no owner literally".to_owned();
        return Err(deny_now(record, reason));
    };
    let profile = record.profile.clone();
    match state
        .tokens
        .credential(policy, repo, Purpose::Api, profile.as_deref())
        .await
    {
        Ok(credential) => {
            record.note_credential(credential.as_ref());
            Ok(credential)
        }
        Err(error) => {
            tracing::warn!(%error, %repo, "no credential");
            Err(Failure::Token(error.to_string()))
        }
    }
}

/// Records `decision`; a denial (outside report mode) is answered at once.
fn check(policy: &Policy, record: &mut Record, decision: &Decision) -> Result<(), Answered> {
    if enforce(policy, record, decision) {
        Ok(())
    } else {
        Err(Failure::Policy(decision.reason.clone()))
    }
}

/// A denial that report mode cannot wave through, because gitgate does not know what
/// the call would do (or whom to ask with which token).
fn deny_now(record: &mut Record, reason: String) -> Answered {
    record.decide(Verdict::Deny, "api", &reason);
    Failure::Policy(reason)
}

/// Headers that ask a server to treat the request as another method.
const METHOD_OVERRIDES: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// A write must mean what gitgate decided on: no query string (GitHub would merge its
/// parameters into the body), no method override header, and a JSON body, not a form
/// (whose `_method` field some frameworks read as the method).
fn refuse_ambiguous_write(req: &Request<ClientBody>, record: &mut Record) -> Result<(), Answered> {
    if matches!(*req.method(), Method::GET | Method::HEAD) {
        return Ok(());
    }
    let method = req.method();
    if req.uri().query().is_some() {
        let reason = format!(
            "{method} with a query string: gitgate decides on the JSON body and forwards writes without a query"
        );
        return Err(deny_now(record, reason));
    }
    if let Some(name) = METHOD_OVERRIDES
        .iter()
        .find(|h| req.headers().contains_key(**h))
    {
        let reason =
            format!("{method} with {name}: gitgate forwards each call as the method it decided on");
        return Err(deny_now(record, reason));
    }
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if content_type.starts_with("application/x-www-form-urlencoded")
        || content_type.starts_with("multipart/")
    {
        let reason = format!(
            "{method} with a {content_type} body: send JSON (Content-Type: application/json), as the GitHub API expects"
        );
        return Err(deny_now(record, reason));
    }
    Ok(())
}

/// Reads a request body gitgate must decide on, up to `limit` bytes; it must not be
/// compressed.
async fn collect(
    state: &State,
    parts: &http::request::Parts,
    body: ClientBody,
    limit: usize,
    record: &mut Record,
) -> Result<Buffered, Answered> {
    if parts.headers.contains_key(header::CONTENT_ENCODING) {
        return Err(Failure::Client("gitgate reads this request's body and cannot when it is compressed (Content-Encoding); send it uncompressed".into()));
    }
    read_bounded(
        body,
        limit,
        state.settings.limits.body_idle_timeout,
        "request",
        (&state.buffered_bodies, record.client.ip()),
    )
    .await
    .map_err(|unread| unread.failure(record, Failure::Client))
}

fn client_error(record: &mut Record, reason: String) -> Answered {
    record.decide(Verdict::Deny, "request", &reason);
    Failure::Client(reason)
}

fn lookup_failed(record: &mut Record, reason: String) -> Answered {
    let reason = format!("gitgate could not look up what this call changes: {reason}");
    record.decide(Verdict::Deny, "lookup", &reason);
    Failure::Upstream(reason)
}

fn internal(what: &str) -> Answered {
    tracing::error!(what, "API decision bug");
    Failure::Upstream(format!("internal error: {what}"))
}

/// The GraphQL endpoint beside the REST base: `…/api/graphql` on GHES (`…/api/v3`),
/// `…/graphql` on github.com.
pub(crate) fn graphql_url(api: &str) -> String {
    match api.strip_suffix("/api/v3") {
        Some(base) => format!("{base}/api/graphql"),
        None => format!("{api}/graphql"),
    }
}

/// GitHub's message for a credential it does not accept (an unknown, expired or revoked
/// token), as opposed to an endpoint that takes another kind of credential.
const BAD_CREDENTIALS: &str = "Bad credentials";

/// Passes GitHub's answer on. A 401 never reaches the client as a challenge; it drops the
/// credential gitgate used only when GitHub says the credential is bad: other 401s
/// (`GET /repos/{o}/{r}/installation` takes only an App JWT) are the request's, and
/// dropping the token on them would let a sandbox make gitgate mint one per request.
async fn answer(
    state: &State,
    response: Response<Incoming>,
    credential: Option<&Credential>,
    record: &Record,
) -> Response<ProxyBody> {
    if response.status() != StatusCode::UNAUTHORIZED {
        return send::relay(response);
    }
    let api = &state.settings.api_host;
    let gzipped = response
        .headers()
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    let message = read_bounded(
        response.into_body(),
        MAX_ERROR_BODY,
        state.settings.limits.body_idle_timeout,
        "response",
        (&state.buffered_bodies, record.client.ip()),
    )
    .await
    .ok()
    .and_then(|body| {
        let json = if gzipped {
            let mut plain = Vec::new();
            std::io::Read::read_to_end(
                &mut std::io::Read::take(
                    flate2::read::GzDecoder::new(body.bytes().as_ref()),
                    MAX_ERROR_BODY as u64,
                ),
                &mut plain,
            )
            .ok()?;
            plain
        } else {
            body.bytes().to_vec()
        };
        serde_json::from_slice::<GitHubError>(&json).ok()
    })
    .map(|error| error.message);
    let failure = match message.as_deref() {
        Some(BAD_CREDENTIALS) => {
            if let Some(credential) = credential {
                state.tokens.reject(credential);
            }
            format!(
                "{api} refused gitgate's credential (HTTP 401); retry, and if it persists check the GitHub App's installation"
            )
        }
        Some(message) => format!(
            "{api} answered HTTP 401 ({message}): this endpoint does not take the credential gitgate sends for the sandbox (it may take only an App's JWT)"
        ),
        None => format!("{api} answered HTTP 401 without saying why; retry"),
    };
    reply::failure(Shape::Json, &Failure::Upstream(failure))
}

/// The most bytes of a 401's body read for its reason (GitHub's are a few hundred).
const MAX_ERROR_BODY: usize = 64 << 10;

/// Lets GitHub compress an API answer only in a way gitgate reads (a 401's reason decides
/// whether the credential is dropped): gzip if the client takes it, else not at all.
fn readable_encodings(headers: &mut http::HeaderMap) {
    let takes_gzip = headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut params = coding.split(';');
            let name = params.next().unwrap_or_default().trim();
            let refused = params.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            name.eq_ignore_ascii_case("gzip") && !refused
        });
    headers.remove(header::ACCEPT_ENCODING);
    if takes_gzip {
        headers.insert(
            header::ACCEPT_ENCODING,
            http::HeaderValue::from_static("gzip"),
        );
    }
}

/// The JSON body of a GitHub API error.
#[derive(serde::Deserialize)]
struct GitHubError {
    message: String,
}
