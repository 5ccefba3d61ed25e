//! `CONNECT host:port`: intercept the GitHub hosts, tunnel allow-listed hosts, refuse the rest.

use std::sync::Arc;

use gitgate_policy::{ConnectDecision, HostName};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use tracing::Instrument;

use crate::body::{ProxyBody, empty};
use crate::reply::{self, Failure, Shape};
use crate::state::{ConnCtx, State};
use crate::{mitm, tunnel};

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
        .unwrap_or_default();
    let (host, port) = match gitgate_policy::parse_authority(authority) {
        Ok(parsed) => parsed,
        Err(error) => {
            return reply::failure(
                Shape::Text,
                &Failure::Client(format!(
                    "CONNECT target {authority:?} is not host:port: {error}"
                )),
            );
        }
    };
    let target = Target { host, port };
    match state.policy().decide_connect(&target.host, port) {
        ConnectDecision::Intercept => {
            tracing::info!(host = %target.host, port, action = "intercept", "CONNECT");
            let span = tracing::info_span!("mitm", host = %target.host);
            tokio::spawn(
                async move {
                    match hyper::upgrade::on(req).await {
                        Ok(upgraded) => mitm::serve(state, ctx, target, upgraded).await,
                        Err(error) => tracing::debug!(%error, "CONNECT upgrade failed"),
                    }
                }
                .instrument(span),
            );
            ok()
        }
        ConnectDecision::Tunnel(decision) => {
            let (upstream, addr) = match state
                .upstream
                .dialer()
                .tcp(&target.host.to_string(), port)
                .await
            {
                Ok(connected) => connected,
                Err(error) => {
                    tracing::info!(host = %target.host, port, %error, "tunnel upstream unreachable");
                    return reply::failure(Shape::Text, &Failure::Upstream(error.to_string()));
                }
            };
            tracing::info!(host = %target.host, port, %addr, rule = %decision.rule, action = "tunnel", "CONNECT");
            let span = tracing::info_span!("tunnel", host = %target.host, port);
            tokio::spawn(
                async move {
                    match hyper::upgrade::on(req).await {
                        Ok(upgraded) => tunnel::run(ctx, upgraded, upstream).await,
                        Err(error) => tracing::debug!(%error, "CONNECT upgrade failed"),
                    }
                }
                .instrument(span),
            );
            ok()
        }
        ConnectDecision::Deny(decision) => {
            tracing::info!(host = %target.host, port, rule = %decision.rule, reason = %decision.reason, action = "deny", "CONNECT");
            reply::failure(Shape::Text, &Failure::Policy(decision.reason))
        }
    }
}

fn ok() -> Response<ProxyBody> {
    let mut response = Response::new(empty());
    *response.status_mut() = StatusCode::OK;
    response
}
