//! Absolute-form plain HTTP (`GET http://host/…`): forwarded only to allow-listed hosts,
//! untouched and never with a credential.

use gitgate_policy::HostName;
use http::{HeaderValue, Request, Response, header};
use hyper::body::Incoming;

use crate::audit::{Record, Service, Verdict};
use crate::body::{ProxyBody, stream};
use crate::git::enforce;
use crate::headers::strip_hop_by_hop;
use crate::identity;
use crate::observe::{Counted, Pending};
use crate::reply::{self, Failure, Shape};
use crate::state::{ConnCtx, State};

pub(crate) async fn plain(
    state: &State,
    ctx: &ConnCtx,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let authority = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_owned())
        .unwrap_or_default();
    let uri = req.uri().to_string();
    let record = Record::new(
        ctx.id,
        ctx.client,
        &authority,
        req.method().as_str(),
        &uri,
        Service::Http,
    );
    let (parts, body) = req.into_parts();
    let (body, bytes_in) = Counted::new(body);
    let mut pending = Pending::new(record, bytes_in, &state.observer);
    let record = pending.record();
    let response = match decide(state, ctx, record, &parts) {
        Err(failure) => reply::failure(Shape::Text, &failure),
        Ok(canonical) => send(state, record, parts, body, &canonical).await,
    };
    pending.finish(response)
}

/// Decides on a plain HTTP request; returns the authority to send it to, canonical (the
/// one the decision and `upstream.resolve` are about, whatever case or trailing dot the
/// client wrote).
fn decide(
    state: &State,
    ctx: &ConnCtx,
    record: &mut Record,
    parts: &http::request::Parts,
) -> Result<String, Failure> {
    let policy = identity::identify(
        state,
        ctx,
        &identity::Presented::from_headers(&parts.headers),
        record,
    )?
    .policy;
    if parts.uri.scheme_str() != Some("http") {
        let reason = format!(
            "{} requests go through CONNECT; only http:// URLs may be sent to the proxy directly",
            parts.uri.scheme_str().unwrap_or("this")
        );
        record.decide(Verdict::Deny, "request", &reason);
        return Err(Failure::Client(reason));
    }
    let host = HostName::parse(parts.uri.host().unwrap_or_default()).map_err(|error| {
        let reason = format!("bad host {:?}: {error}", record.host);
        record.decide(Verdict::Deny, "request", &reason);
        Failure::Client(reason)
    })?;
    let port = parts.uri.port_u16().unwrap_or(80);
    let decision = policy.decide_plain_http(&host, port);
    if enforce(&policy, record, &decision) {
        Ok(match port {
            80 => host.to_string(),
            port => format!("{host}:{port}"),
        })
    } else {
        Err(Failure::Policy(decision.reason))
    }
}

async fn send(
    state: &State,
    record: &mut Record,
    mut parts: http::request::Parts,
    body: Counted<Incoming>,
    authority: &str,
) -> Response<ProxyBody> {
    strip_hop_by_hop(&mut parts.headers);
    parts.headers.remove(header::EXPECT);
    if let Ok(value) = HeaderValue::from_str(authority) {
        parts.headers.insert(header::HOST, value);
    }
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    match format!("http://{authority}{path}").parse() {
        Ok(uri) => parts.uri = uri,
        Err(error) => {
            let failure = Failure::Client(format!("bad request target: {error}"));
            return reply::failure(Shape::Text, &failure);
        }
    }
    let limit = state.settings.limits.response_header_timeout;
    let sent = tokio::time::timeout(
        limit,
        state
            .upstream
            .send(Request::from_parts(parts, stream(body))),
    )
    .await;
    match sent {
        Ok(Ok(response)) => {
            record.upstream_status = Some(response.status().as_u16());
            let (mut parts, body) = response.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            Response::from_parts(parts, stream(body))
        }
        Ok(Err(error)) => {
            reply::failure(Shape::Text, &Failure::Upstream(error.describe(authority)))
        }
        Err(_) => reply::failure(Shape::Text, &Failure::no_answer(authority, limit)),
    }
}
