//! Absolute-form plain HTTP (`GET http://host/…`): forwarded only to allow-listed hosts,
//! untouched and never with a credential.

use gitgate_policy::HostName;
use http::{HeaderValue, Request, Response, header};
use hyper::body::Incoming;

use crate::body::{ProxyBody, stream};
use crate::headers::strip_hop_by_hop;
use crate::reply::{self, Failure, Shape};
use crate::state::State;

pub(crate) async fn plain(state: &State, mut req: Request<Incoming>) -> Response<ProxyBody> {
    if req.uri().scheme_str() != Some("http") {
        return reply::failure(
            Shape::Text,
            &Failure::Client(format!(
                "{} requests go through CONNECT; only http:// URLs may be sent to the proxy directly",
                req.uri().scheme_str().unwrap_or("this")
            )),
        );
    }
    let authority = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_owned())
        .unwrap_or_default();
    let host = match HostName::parse(req.uri().host().unwrap_or_default()) {
        Ok(host) => host,
        Err(error) => {
            return reply::failure(
                Shape::Text,
                &Failure::Client(format!("bad host {authority:?}: {error}")),
            );
        }
    };
    let port = req.uri().port_u16().unwrap_or(80);
    let decision = state.policy().decide_plain_http(&host, port);
    tracing::info!(%host, port, allowed = decision.allowed, rule = %decision.rule, "plain HTTP");
    if !decision.allowed {
        return reply::failure(Shape::Text, &Failure::Policy(decision.reason));
    }
    strip_hop_by_hop(req.headers_mut());
    req.headers_mut().remove(header::EXPECT);
    if let Ok(value) = HeaderValue::from_str(&authority) {
        req.headers_mut().insert(header::HOST, value);
    }
    let req = req.map(stream);
    match state.upstream.send(req).await {
        Ok(response) => {
            let (mut parts, body) = response.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            Response::from_parts(parts, stream(body))
        }
        Err(error) => reply::failure(
            Shape::Text,
            &Failure::Upstream(format!("cannot reach {authority}: {error}")),
        ),
    }
}
