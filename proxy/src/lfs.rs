//! Git LFS on the git host: the batch and locks endpoints get the installation token
//! after the policy allows the repository (writable for uploads and lock writes); a batch
//! response's storage hosts become reachable for that client until the actions expire.

use std::time::SystemTime;

use gitgate_policy::git::lfs::{self, LfsCall, LfsOperation};
use gitgate_policy::{Policy, RepoPath};
use http::{Request, Response, StatusCode, header};

use crate::audit::{Record, Verdict};
use crate::body::{Buffered, ProxyBody, Unread, read_bounded, stream};
use crate::git::{enforce, forward};
use crate::github::ClientBody;
use crate::reply::Failure;
use crate::send;
use crate::state::State;
use crate::token::Purpose;

/// The largest batch request read.
const MAX_BATCH_REQUEST: usize = 1 << 20;
/// The largest lock or unlock request read.
const MAX_LOCK_REQUEST: usize = 64 << 10;
/// The largest batch response read for its storage hosts.
const MAX_BATCH_RESPONSE: usize = 8 << 20;

/// One LFS request: decided, forwarded with the token, its batch answer read for storage
/// hosts; a refusal or failure is for the caller to answer (as JSON, which git-lfs shows).
pub(crate) async fn handle(
    state: &State,
    policy: &Policy,
    repo: &RepoPath,
    target: &str,
    rest: &str,
    req: Request<ClientBody>,
    record: &mut Record,
) -> Result<Response<ProxyBody>, Failure> {
    let lfs_call = lfs::classify_lfs(req.method().as_str(), rest).map_err(|reason| {
        record.decide(Verdict::Deny, "lfs", &reason);
        Failure::Policy(reason)
    })?;
    // Nothing is read for a repository the sandbox may not even download from.
    let readable = policy.decide_lfs(repo, false);
    if !enforce(policy, record, &readable) {
        return Err(Failure::Policy(format!(
            "Git LFS for {repo} denied: {}",
            readable.reason
        )));
    }
    let (mut parts, body) = req.into_parts();
    if lfs_call == LfsCall::Batch {
        // gitgate reads the answer for its storage hosts: ask for it uncompressed.
        parts.headers.remove(header::ACCEPT_ENCODING);
    }
    // What the body says is decided once the repository is known to be writable enough,
    // and recorded only when it refuses (an allow must not hide a report-mode verdict).
    let (what, write, body, upload) = match lfs_call {
        LfsCall::Batch => {
            let buffered = read(
                state,
                body,
                (MAX_BATCH_REQUEST, "LFS batch request"),
                record,
            )
            .await
            .map_err(|unread| unread.failure(record, Failure::Client))?;
            let request = lfs::batch_request(buffered.bytes()).map_err(|reason| {
                record.decide(Verdict::Deny, "lfs", &reason);
                Failure::Client(reason)
            })?;
            let too_large = policy.decide_lfs_upload(&request);
            let body = Held::Read(buffered.into_body());
            match request.operation {
                LfsOperation::Download => ("download", false, body, None),
                LfsOperation::Upload => ("upload", true, body, too_large),
            }
        }
        LfsCall::ListLocks => ("lock listing", false, Held::Read(stream(body)), None),
        // Read once the repository is known to be writable.
        LfsCall::Lock | LfsCall::Unlock => ("lock change", true, Held::Unread(body), None),
        LfsCall::VerifyLocks => (
            "lock verification before an upload",
            true,
            Held::Read(stream(body)),
            None,
        ),
    };
    let denied = |decision: &gitgate_policy::Decision| {
        Failure::Policy(format!(
            "Git LFS {what} for {repo} denied: {}",
            decision.reason
        ))
    };
    let refused = |record: &mut Record, decision: &gitgate_policy::Decision| {
        (!decision.allowed && !enforce(policy, record, decision)).then(|| denied(decision))
    };
    let decision = policy.decide_lfs(repo, write);
    if !enforce(policy, record, &decision) {
        return Err(denied(&decision));
    }
    if let Some(failure) = upload.and_then(|too_large| refused(record, &too_large)) {
        return Err(failure);
    }
    let body = match body {
        Held::Read(body) => body,
        Held::Unread(body) => {
            let buffered = read(state, body, (MAX_LOCK_REQUEST, "LFS lock request"), record)
                .await
                .map_err(|unread| unread.failure(record, Failure::Client))?;
            let decision = policy.decide_lock_change(lfs_call, buffered.bytes());
            if let Some(failure) = refused(record, &decision) {
                return Err(failure);
            }
            buffered.into_body()
        }
    };
    let credential = state
        .tokens
        .credential(policy, repo, Purpose::Git, record.profile.as_deref())
        .await
        .map_err(|e| Failure::Token(e.to_string()))?;
    record.note_credential(credential.as_ref());
    let response = forward(state, target, parts, body, credential.as_ref(), record).await?;
    let (mut parts, body) = response.into_parts();
    if parts.status == StatusCode::UNAUTHORIZED {
        return Err(crate::git::refused_credential(
            state,
            repo,
            credential.as_ref(),
        ));
    }
    if lfs_call != LfsCall::Batch || !parts.status.is_success() {
        return Ok(send::relay(Response::from_parts(parts, body)));
    }
    send::clean_head(&mut parts);
    let buffered = read(
        state,
        body,
        (MAX_BATCH_RESPONSE, "LFS batch response"),
        record,
    )
    .await
    .map_err(|unread| unread.failure(record, Failure::Upstream))?;
    grant_storage(state, policy, record, buffered.bytes());
    Ok(Response::from_parts(parts, buffered.into_body()))
}

/// Reads a body gitgate decides on: at most `limit` bytes, each frame within
/// `bodyIdleTimeout`, held against this client's share of `maxBufferedBodyBytes`.
async fn read<B>(
    state: &State,
    body: B,
    (limit, what): (usize, &str),
    record: &Record,
) -> Result<Buffered, Unread>
where
    B: http_body::Body<Data = bytes::Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let idle = state.settings.limits.body_idle_timeout;
    let budget = (&state.buffered_bodies, record.client.ip());
    read_bounded(body, limit, idle, what, budget).await
}

/// A request body, read already or still to be read once the call is allowed.
enum Held {
    Read(ProxyBody),
    Unread(ClientBody),
}

/// Lets this client tunnel to the storage hosts of a batch response's actions.
fn grant_storage(state: &State, policy: &Policy, record: &Record, response: &[u8]) {
    let now = SystemTime::now();
    match lfs::storage_grants(response, now, |host| policy.is_github_host(host)) {
        Ok(grants) => {
            for grant in &grants {
                tracing::info!(host = %grant.host, port = grant.port, "LFS storage host granted");
            }
            let client = (record.profile.clone(), record.client.ip());
            state.storage.grant(client, grants, now);
        }
        Err(error) => {
            tracing::warn!(%error, "LFS batch response not understood; no storage host granted")
        }
    }
}
