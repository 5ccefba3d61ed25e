//! `CONNECT host:port`: intercept the GitHub hosts, tunnel allow-listed hosts, refuse the rest.

use std::sync::Arc;

use std::time::SystemTime;

use gitgate_policy::{ConnectDecision, Decision, HostName};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use tracing::Instrument;

use crate::audit::{Record, Service, Verdict};
use crate::body::{BUSY_RULE, Gathered, ProxyBody, busy, empty};
use crate::budget::{Reservation, Spent};
use crate::git::enforce;
use crate::reply::{self, Failure, Shape};
use crate::state::{ConnCtx, State};
use crate::{identity, mitm, storage, tunnel};

/// The CONNECT authority: the one host every byte of this tunnel is for.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) host: HostName,
    pub(crate) port: u16,
}

pub(crate) async fn handle(
    state: Arc<State>,
    ctx: ConnCtx,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let authority = req
        .uri()
        .authority()
        .map(|a| a.as_str())
        .unwrap_or_default()
        .to_owned();
    let mut record = Record::new(
        ctx.id,
        ctx.client,
        &authority,
        "CONNECT",
        &authority,
        Service::Tunnel,
    );
    let (host, port) = match gitgate_policy::parse_authority(&authority) {
        Ok(parsed) => parsed,
        Err(error) => {
            let reason = format!("CONNECT target {authority:?} is not host:port: {error}");
            record.decide(Verdict::Deny, "request", &reason);
            return refuse(&state, record, &Failure::Client(reason));
        }
    };
    record.host = host.to_string();
    let target = Target { host, port };
    let presented = identity::Presented::from_headers(req.headers());
    let identity = match identity::identify(&state, &ctx, &presented, &mut record) {
        Ok(identity) => identity,
        Err(failure) => return refuse(&state, record, &failure),
    };
    let policy = identity.policy;
    let decision = match policy.decide_connect(&target.host, port) {
        ConnectDecision::Intercept => {
            let who = (identity.profile, presented);
            return intercept(state, ctx, target, who, req);
        }
        ConnectDecision::Tunnel(decision) => decision,
        ConnectDecision::Deny(decision) => {
            let client = (identity.profile.clone(), ctx.client.ip());
            storage_grant(&state, &client, &target).unwrap_or(decision)
        }
    };
    if !enforce(&policy, &mut record, &decision) {
        tracing::info!(host = %target.host, port, rule = %decision.rule, reason = %decision.reason, "CONNECT denied");
        return refuse(&state, record, &Failure::Policy(decision.reason));
    }
    // A slot of `maxTunnels`, and of this client's share of it.
    let mut slot = Reservation::new(Arc::clone(&state.tunnels), ctx.client.ip());
    if let Err(spent) = slot.grow(1) {
        let (rule, reason) = match spent {
            Spent::All => (
                "limits.maxTunnels",
                format!(
                    "too many open tunnels (limits.maxTunnels = {}); retry shortly",
                    state.tunnels.limit()
                ),
            ),
            Spent::Client => (
                "limits.maxTunnelsPerClient",
                format!(
                    "this client already has {} tunnels open (limits.maxTunnelsPerClient); close some, or retry when they have finished",
                    state.tunnels.per_client()
                ),
            ),
        };
        record.decide(Verdict::Deny, rule, &reason);
        return refuse(&state, record, &Failure::Overloaded(reason));
    }
    // The first bytes are held (and the buffer they are read with) until they show where
    // the tunnel goes: refused now, with a status the client shows, if there is no room.
    let mut first = Gathered::new(Reservation::new(
        Arc::clone(&state.buffered_bodies),
        ctx.client.ip(),
    ));
    if let Err(spent) = first.charge(tunnel::READ_CHUNK as u64) {
        let reason = busy("this tunnel's first bytes", &state.buffered_bodies, spent);
        record.decide(Verdict::Deny, BUSY_RULE, &reason);
        return refuse(&state, record, &Failure::Overloaded(reason));
    }
    let (upstream, addr) = match state
        .upstream
        .dialer()
        .tcp(&target.host.to_string(), port, Some(ctx.client.ip()))
        .await
    {
        Ok(connected) => connected,
        Err(error) => {
            tracing::info!(host = %target.host, port, %error, "tunnel upstream unreachable");
            return refuse(&state, record, &Failure::Upstream(error.to_string()));
        }
    };
    tracing::info!(host = %target.host, port, %addr, rule = %decision.rule, "tunnel");
    let span = tracing::info_span!("tunnel", host = %target.host, port);
    tokio::spawn(
        async move {
            match hyper::upgrade::on(req).await {
                Ok(upgraded) => {
                    record.status = 200;
                    let allowed = (policy, target);
                    let ends = (upgraded, upstream, first);
                    tunnel::run(&state, ctx, allowed, record, ends).await;
                    drop(slot);
                }
                Err(error) => tracing::debug!(%error, "CONNECT upgrade failed"),
            }
        }
        .instrument(span),
    );
    ok()
}

/// An LFS storage host a batch response opened to this client, while it is open.
fn storage_grant(state: &State, client: &storage::Client, target: &Target) -> Option<Decision> {
    let now = SystemTime::now();
    let until = state
        .storage
        .until(client, &target.host, target.port, now)?;
    let left = until.duration_since(now).unwrap_or_default().as_secs();
    Some(Decision::allow(
        "lfsStorage",
        format!(
            "{}:{} serves Git LFS objects to this client (named by an LFS batch response; {left} s left)",
            target.host, target.port
        ),
    ))
}

/// Answers 200 and serves the decrypted requests of the tunnel.
fn intercept(
    state: Arc<State>,
    ctx: ConnCtx,
    target: Target,
    who: (Option<Arc<str>>, identity::Presented),
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    tracing::debug!(host = %target.host, port = target.port, "intercepting");
    let span = tracing::info_span!("mitm", host = %target.host);
    tokio::spawn(
        async move {
            match hyper::upgrade::on(req).await {
                Ok(upgraded) => mitm::serve(state, ctx, target, who, upgraded).await,
                Err(error) => tracing::debug!(%error, "CONNECT upgrade failed"),
            }
        }
        .instrument(span),
    );
    ok()
}

/// Refuses the CONNECT and writes its audit record.
fn refuse(state: &State, mut record: Record, failure: &Failure) -> Response<ProxyBody> {
    let mut response = reply::failure(Shape::Text, failure);
    crate::observe::answered(&mut record, &mut response);
    if record.verdict.is_none() {
        record.decide(Verdict::Deny, "upstream", failure.message());
    }
    state.observer.emit(record);
    response
}

fn ok() -> Response<ProxyBody> {
    let mut response = Response::new(empty());
    *response.status_mut() = StatusCode::OK;
    response
}
