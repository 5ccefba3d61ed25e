//! git smart HTTP on the git host: classify, decide, inject the credential, forward.

use gitgate_policy::git::request::{GitKind, GitRequest, RequestError, Service, classify};
use gitgate_policy::{Decision, Mode, Policy};
use http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;

use crate::audit::{self, Record, Verdict};
use crate::body::{ProxyBody, stream};
use crate::github::ClientBody;
use crate::lfs;
use crate::push::{self, Inspected};
use crate::push_content;
use crate::reply::{self, Failure, Shape};
use crate::send;
use crate::state::State;
use crate::token::{Credential, Purpose};

pub(crate) async fn handle(
    state: &State,
    policy: &Policy,
    req: Request<ClientBody>,
    record: &mut Record,
) -> Response<ProxyBody> {
    let git = match classify(req.method().as_str(), &record.path) {
        Ok(git) => git,
        Err(RequestError::NotGit(reason)) => {
            return not_git(state, policy, req, record, reason).await;
        }
        Err(malformed) => {
            let reason = malformed.to_string();
            record.decide(Verdict::Deny, "request", &reason);
            return reply::failure(Shape::Text, &Failure::Client(reason));
        }
    };
    let target = git.canonical_target();
    record.path.clone_from(&target);
    record.repo = Some(git.repo.to_string());
    let (mut shape, service) = match &git.kind {
        GitKind::InfoRefs(service) => (Shape::Advertisement(*service), *service),
        GitKind::Rpc(service) => (Shape::RpcResult(*service), *service),
        GitKind::Lfs { rest } => {
            record.service = audit::Service::Lfs;
            return lfs::handle(state, policy, &git.repo, &target, rest, req, record)
                .await
                .unwrap_or_else(|failure| reply::failure(Shape::Json, &failure));
        }
    };
    record.service = match service {
        Service::UploadPack => audit::Service::UploadPack,
        Service::ReceivePack => audit::Service::ReceivePack,
    };
    let decision = decide(policy, &git, service);
    if !enforce(policy, record, &decision) {
        return refuse(state, req, record, shape, &Failure::Policy(decision.reason)).await;
    }
    let mut credential = match state
        .tokens
        .credential(policy, &git.repo, Purpose::Git, record.profile.as_deref())
        .await
    {
        Ok(credential) => credential,
        Err(error) => {
            tracing::warn!(%error, repo = %git.repo, "no credential");
            return refuse(
                state,
                req,
                record,
                shape,
                &Failure::Token(error.to_string()),
            )
            .await;
        }
    };
    record.note_credential(credential.as_ref());
    let (parts, body) = req.into_parts();
    let profile = record.profile.clone();
    let to = push::PushTo {
        repo: &git.repo,
        policy,
        profile: profile.as_deref(),
    };
    let (body, deciding) = if matches!(git.kind, GitKind::Rpc(Service::ReceivePack)) {
        match push::inspect(state, policy, &to, &parts.headers, body, record).await {
            Inspected::Forward(body, side_band) => {
                shape = Shape::PushResult(side_band);
                // The push may have been held longer than its token lives.
                credential = match to.credential(state).await {
                    Ok(current) => current,
                    Err(error) => return reply::failure(shape, &Failure::Token(error)),
                };
                record.note_credential(credential.as_ref());
                (body, None)
            }
            Inspected::Reply(response) => return response,
            Inspected::Streaming(streaming) => {
                shape = Shape::PushResult(streaming.side_band);
                (streaming.body, Some(streaming.outcome))
            }
        }
    } else {
        (stream(body), None)
    };
    let sent = match deciding {
        None => forward(state, &target, parts, body, credential.as_ref(), record).await,
        Some(deciding) => {
            // The push goes upstream while it is decided; a refusal breaks it off.
            let mut upstream_record = record.clone();
            let upstream = forward(
                state,
                &target,
                parts,
                body,
                credential.as_ref(),
                &mut upstream_record,
            );
            let (sent, outcome) = tokio::join!(upstream, deciding);
            record.upstream_status = upstream_record.upstream_status;
            match push_content::conclude(policy, outcome, record) {
                push_content::Concluded::Forward(_) => sent,
                push_content::Concluded::Reply(response) => return response,
            }
        }
    };
    let response = match sent {
        Ok(response) => response,
        Err(failure) => return reply::failure(upstream_shape(shape), &failure),
    };
    answer(state, &git, response, credential.as_ref(), shape).await
}

/// Answers `req` with `failure` before anything is forwarded: a push through
/// [`push::refuse`] (git must be told in the side-band its command list asks for, after
/// sending it), anything else in `shape`.
async fn refuse(
    state: &State,
    req: Request<ClientBody>,
    record: &Record,
    shape: Shape,
    failure: &Failure,
) -> Response<ProxyBody> {
    match shape {
        Shape::RpcResult(Service::ReceivePack) => {
            let (parts, body) = req.into_parts();
            push::refuse(state, &parts.headers, body, record, failure).await
        }
        _ => reply::failure(shape, failure),
    }
}

/// Records `decision`; returns whether the request may proceed (allowed, or denied in
/// report mode).
pub(crate) fn enforce(policy: &Policy, record: &mut Record, decision: &Decision) -> bool {
    let verdict = match (decision.allowed, policy.mode()) {
        (true, _) => Verdict::Allow,
        (false, Mode::Report) => Verdict::Report,
        (false, _) => Verdict::Deny,
    };
    record.decide(verdict, &decision.rule, &decision.reason);
    verdict != Verdict::Deny
}

fn decide(policy: &Policy, git: &GitRequest, service: Service) -> Decision {
    match service {
        Service::UploadPack => policy.decide_repo(&git.repo),
        Service::ReceivePack => policy.decide_push(&git.repo),
    }
}

/// A well-formed request that is not git smart HTTP: refused, or in report mode passed
/// on untouched and without a credential.
async fn not_git(
    state: &State,
    policy: &Policy,
    req: Request<ClientBody>,
    record: &mut Record,
    reason: String,
) -> Response<ProxyBody> {
    let decision = Decision {
        allowed: false,
        rule: "gitSmartHttp".into(),
        reason,
    };
    if !enforce(policy, record, &decision) {
        return reply::failure(Shape::Text, &Failure::Policy(decision.reason));
    }
    let (parts, body) = req.into_parts();
    let target = record.path.clone();
    match forward(state, &target, parts, stream(body), None, record).await {
        Ok(response) => send::relay(response),
        Err(failure) => reply::failure(Shape::Text, &failure),
    }
}

/// Sends the request to `target` on the git host, with `credential` if any.
pub(crate) async fn forward(
    state: &State,
    target: &str,
    parts: http::request::Parts,
    body: ProxyBody,
    credential: Option<&Credential>,
    record: &mut Record,
) -> Result<Response<Incoming>, Failure> {
    let host = &state.settings.github_host;
    let uri = send::https_uri(host, target)?;
    let authorization = credential.map(Credential::basic);
    send::upstream(state, host, uri, parts, body, authorization, record).await
}

/// Upstream failures are a 502/504 with a text body (git shows it as `remote:` lines on
/// `info/refs`); on an RPC POST, whose error bodies git hides, an `ERR` pkt-line.
fn upstream_shape(shape: Shape) -> Shape {
    match shape {
        Shape::RpcResult(_) | Shape::PushResult(_) => shape,
        _ => Shape::Text,
    }
}

/// `content_type` is `application/x-<service>-advertisement` (any case).
fn is_advertisement(content_type: &str, service: Service) -> bool {
    let service = service.as_str().as_bytes();
    let (head, tail) = (b"application/x-", b"-advertisement");
    let value = content_type.as_bytes();
    value.len() == head.len() + service.len() + tail.len()
        && value[..head.len()].eq_ignore_ascii_case(head)
        && value[head.len()..head.len() + service.len()].eq_ignore_ascii_case(service)
        && value[value.len() - tail.len()..].eq_ignore_ascii_case(tail)
}

/// Passes upstream's answer on, except what must not reach the sandbox.
async fn answer(
    state: &State,
    git: &GitRequest,
    response: Response<Incoming>,
    credential: Option<&Credential>,
    shape: Shape,
) -> Response<ProxyBody> {
    if response.status() == StatusCode::UNAUTHORIZED {
        // Never let the sandbox see a credential challenge: git would prompt for one.
        let failure = refused_credential(state, &git.repo, credential);
        return reply::failure(upstream_shape(shape), &failure);
    }
    if matches!(git.kind, GitKind::Rpc(_)) && !response.status().is_success() {
        // git shows only the status of a failed POST, and after a push says "Everything
        // up-to-date": tell it what GitHub said, the way it shows.
        let status = response.status();
        let said = excerpt(response.into_body()).await;
        let failure = Failure::Upstream(format!(
            "{} answered HTTP {} for {}{said}",
            state.settings.github_host,
            status.as_u16(),
            git.repo
        ));
        return reply::failure(upstream_shape(shape), &failure);
    }
    if let (GitKind::InfoRefs(service), true) = (&git.kind, response.status().is_success()) {
        let actual = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !is_advertisement(actual, *service) {
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
    match shape {
        Shape::PushResult(side_band) if side_band.max_data().is_some() => {
            let (mut parts, body) = response.into_parts();
            send::clean_head(&mut parts);
            // The answer may end early with a message added: chunked, whatever its length.
            parts.headers.remove(header::CONTENT_LENGTH);
            let host = &state.settings.github_host;
            let body = stream(crate::broken_off::Noticed::new(body, side_band, host));
            Response::from_parts(parts, body)
        }
        _ => send::relay(response),
    }
}

/// GitHub answered `credential` for `repo` with 401: it is not sent again, and the
/// failure says what happens next and what to check.
pub(crate) fn refused_credential(
    state: &State,
    repo: &gitgate_policy::RepoPath,
    credential: Option<&Credential>,
) -> Failure {
    if let Some(credential) = credential {
        state.tokens.reject(credential);
    }
    let hint = match credential {
        Some(credential) => match (credential.user(), credential.scope()) {
            (Some(user), _) => format!(
                "gitgate is renewing the session of {user}; retry, and if it persists log in again with `gitgate login`"
            ),
            (None, Some(_)) => "gitgate dropped that token and mints a new one; retry, and if it persists run `gitgate doctor`".to_owned(),
            (None, None) => "check the token in github.token: GitHub no longer accepts it".to_owned(),
        },
        None => "gitgate has no GitHub credential configured (github.app, github.token or github.user), and this needs one".to_owned(),
    };
    Failure::Upstream(format!(
        "{} refused gitgate's credential for {repo} (HTTP 401); {hint}",
        state.settings.github_host
    ))
}

/// The start of an error body, as `: TEXT` on one line (empty when there is none): at
/// most [`EXCERPT`] bytes, read for at most two seconds.
async fn excerpt(mut body: Incoming) -> String {
    use http_body_util::BodyExt;
    let mut text = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
    while text.len() < EXCERPT {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    text.extend_from_slice(&data[..data.len().min(EXCERPT - text.len())]);
                }
            }
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&text);
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.is_empty() {
        line
    } else {
        format!(": {line}")
    }
}

/// How much of an upstream error body is quoted.
const EXCERPT: usize = 300;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_services_own_advertisement_type_passes() {
        let upload = Service::UploadPack;
        for ok in [
            "application/x-git-upload-pack-advertisement",
            "Application/X-Git-Upload-Pack-Advertisement",
        ] {
            assert!(is_advertisement(ok, upload), "{ok}");
        }
        for bad in [
            "",
            "text/plain",
            "application/x-git-receive-pack-advertisement",
            "application/x-git-upload-pack-advertisement; charset=utf-8",
            "application/x-git-upload-pack-result",
            "application/x-git-upload-packadvertisement-",
            "xapplication/x-git-upload-pack-advertisement",
        ] {
            assert!(!is_advertisement(bad, upload), "{bad}");
        }
        assert!(is_advertisement(
            "application/x-git-receive-pack-advertisement",
            Service::ReceivePack
        ));
    }
}
