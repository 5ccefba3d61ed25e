//! git smart HTTP on the git host: classify, decide, inject the credential, forward.

use std::time::Duration;

use gitgate_policy::git::request::{GitKind, GitRequest, RequestError, Service, classify};
use gitgate_policy::{Decision, Policy};
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use crate::body::{ProxyBody, empty, stream};
use crate::headers::{sanitize_request, strip_hop_by_hop};
use crate::push::{self, Inspected};
use crate::reply::{self, Failure, Shape};
use crate::state::{ConnCtx, State};
use crate::token::Credential;

pub(crate) async fn handle(
    state: &State,
    ctx: &ConnCtx,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let policy = state.policy();
    let target = req
        .uri()
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_owned();
    let git = match classify(req.method().as_str(), &target) {
        Ok(git) => git,
        Err(error) => {
            let failure = match error {
                RequestError::NotGit(m) => Failure::Policy(m),
                malformed => Failure::Client(malformed.to_string()),
            };
            log(
                ctx,
                req.method(),
                &target,
                None,
                &failure_decision(&failure),
            );
            return reply::failure(Shape::Text, &failure);
        }
    };
    let (shape, decision) = match &git.kind {
        GitKind::InfoRefs(service) => (
            Shape::Advertisement(*service),
            decide(&policy, &git, *service),
        ),
        GitKind::Rpc(service) => (Shape::RpcResult(*service), decide(&policy, &git, *service)),
        GitKind::Lfs { .. } => (
            Shape::Text,
            Decision {
                allowed: false,
                rule: "lfs".into(),
                reason: format!(
                    "Git LFS for {} is not enabled in this gitgate build",
                    git.repo
                ),
            },
        ),
    };
    log(ctx, req.method(), &target, Some(&git), &decision);
    if !decision.allowed {
        return reply::failure(shape, &Failure::Policy(decision.reason));
    }
    let credential = match state.tokens.credential(&policy, &git.repo).await {
        Ok(credential) => credential,
        Err(error) => {
            tracing::warn!(%error, repo = %git.repo, "no credential");
            let shape = if matches!(shape, Shape::Advertisement(_)) {
                shape
            } else {
                Shape::Text
            };
            return reply::failure(shape, &Failure::Token(error.to_string()));
        }
    };
    let (parts, body) = req.into_parts();
    let body = if matches!(git.kind, GitKind::Rpc(Service::ReceivePack)) {
        match push::inspect(state, &policy, &git, &parts.headers, body).await {
            Inspected::Forward(body) => body,
            Inspected::Reply(response) => return response,
        }
    } else {
        stream(body)
    };
    forward(state, &git, parts, body, credential, shape).await
}

fn decide(policy: &Policy, git: &GitRequest, service: Service) -> Decision {
    match service {
        Service::UploadPack => policy.decide_repo(&git.repo),
        Service::ReceivePack => policy.decide_push(&git.repo),
    }
}

fn failure_decision(failure: &Failure) -> Decision {
    Decision {
        allowed: false,
        rule: "request".into(),
        reason: failure.message().to_owned(),
    }
}

fn log(
    ctx: &ConnCtx,
    method: &Method,
    target: &str,
    git: Option<&GitRequest>,
    decision: &Decision,
) {
    tracing::info!(
        target: "gitgate::decision",
        conn = ctx.id,
        client = %ctx.client,
        %method,
        path = %target,
        repo = git.map(|g| g.repo.to_string()).unwrap_or_default(),
        allowed = decision.allowed,
        rule = %decision.rule,
        reason = %decision.reason,
        "git request"
    );
}

/// Sends the request upstream with gitgate's credential and streams the answer back.
async fn forward(
    state: &State,
    git: &GitRequest,
    parts: http::request::Parts,
    body: ProxyBody,
    credential: Option<Credential>,
    shape: Shape,
) -> Response<ProxyBody> {
    let host = &state.settings.github_host;
    let uri = format!("https://{host}{}", git.canonical_target());
    let mut headers = parts.headers;
    sanitize_request(&mut headers);
    if let Ok(value) = HeaderValue::from_str(host) {
        headers.insert(header::HOST, value);
    }
    if let Some(credential) = &credential {
        headers.insert(header::AUTHORIZATION, credential.basic());
    }
    let mut request = Request::new(body);
    *request.method_mut() = parts.method;
    *request.headers_mut() = headers;
    *request.uri_mut() = match uri.parse() {
        Ok(uri) => uri,
        Err(_) => {
            return reply::failure(shape, &Failure::Client(format!("cannot forward to {uri}")));
        }
    };
    let limits = &state.settings.limits;
    let response =
        match tokio::time::timeout(limits.response_header_timeout, state.upstream.send(request))
            .await
        {
            Ok(Ok(response)) => response,
            Ok(Err(error)) => {
                tracing::warn!(%error, "upstream request failed");
                return reply::failure(
                    upstream_shape(shape),
                    &Failure::Upstream(format!("cannot reach {host}: {error}")),
                );
            }
            Err(_) => {
                return reply::failure(
                    upstream_shape(shape),
                    &Failure::Timeout(format!(
                        "{host} did not answer within {}",
                        secs(limits.response_header_timeout)
                    )),
                );
            }
        };
    answer(state, git, response, credential.as_ref(), shape)
}

/// Upstream failures are a 502/504 with a text body (git shows it as `remote:` lines on
/// `info/refs`); on an RPC POST, whose error bodies git hides, an `ERR` pkt-line.
fn upstream_shape(shape: Shape) -> Shape {
    match shape {
        Shape::RpcResult(_) => shape,
        _ => Shape::Text,
    }
}

fn secs(d: Duration) -> String {
    format!("{} s", d.as_secs())
}

/// Passes upstream's answer on, except what must not reach the sandbox.
fn answer(
    state: &State,
    git: &GitRequest,
    response: Response<Incoming>,
    credential: Option<&Credential>,
    shape: Shape,
) -> Response<ProxyBody> {
    let (mut parts, body) = response.into_parts();
    if parts.status == StatusCode::UNAUTHORIZED {
        // Never let the sandbox see a credential challenge: git would prompt for one.
        if let Some(credential) = credential {
            state.tokens.reject(credential);
        }
        let failure = Failure::Upstream(format!(
            "{} refused gitgate's credential for {} (HTTP 401); retry, and if it persists check that the GitHub App can access this repository",
            state.settings.github_host, git.repo
        ));
        return reply::failure(upstream_shape(shape), &failure);
    }
    if let (GitKind::InfoRefs(service), true) = (&git.kind, parts.status.is_success()) {
        let expected = format!("application/x-{}-advertisement", service.as_str());
        let actual = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !actual.eq_ignore_ascii_case(&expected) {
            // A 200 that is not a smart advertisement would send git down the dumb-HTTP path.
            return reply::failure(
                shape,
                &Failure::Upstream(format!(
                    "{} answered {} with {actual:?}, not a git advertisement",
                    state.settings.github_host,
                    git.canonical_target()
                )),
            );
        }
    }
    strip_hop_by_hop(&mut parts.headers);
    parts.headers.remove(header::WWW_AUTHENTICATE);
    let body = if parts.status == StatusCode::NO_CONTENT {
        empty()
    } else {
        stream(body)
    };
    Response::from_parts(parts, body)
}
