//! Requests decrypted from an intercepted GitHub host: checked against the CONNECT
//! authority, then routed to git handling or the API.

use std::sync::Arc;

use http::{Request, Response, header};
use hyper::body::Incoming;

use crate::audit::{Record, Service, Verdict};
use crate::body::ProxyBody;
use crate::connect::Target;
use crate::framing::{CONFLICTING_FRAMING, Framing};
use crate::observe::{Counted, Pending};
use crate::reply::{self, Failure, Shape};
use crate::state::{ConnCtx, State};
use crate::{api, git, identity};

/// A request body from the sandbox, with its bytes counted for the audit record.
pub(crate) type ClientBody = Counted<Incoming>;

/// One intercepted connection.
pub(crate) struct Session {
    pub(crate) target: Target,
    /// The TLS SNI, when it named another host than the CONNECT authority.
    pub(crate) sni_mismatch: Option<String>,
    /// Raised when the client sent a head with both `Content-Length` and `Transfer-Encoding`.
    pub(crate) framing: Arc<Framing>,
    pub(crate) ctx: ConnCtx,
    /// The profile the CONNECT was identified as, and what it presented to be: every
    /// request inside is identified again, and decided under the profile's current policy.
    pub(crate) profile: Option<Arc<str>>,
    pub(crate) presented: identity::Presented,
}

pub(crate) async fn handle(
    state: &State,
    session: &Session,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let host = session.target.host.to_string();
    let target = req
        .uri()
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_owned();
    let ctx = &session.ctx;
    let method = req.method().as_str().to_owned();
    let record = Record::new(ctx.id, ctx.client, &host, &method, &target, Service::Other);
    let (parts, body) = req.into_parts();
    let (body, bytes_in) = Counted::new(body);
    let req = Request::from_parts(parts, body);
    let mut pending = Pending::new(record, bytes_in, &state.observer);
    let record = pending.record();
    let response = if let Err(message) = check_request(session, &req) {
        tracing::info!(%method, %target, reason = %message, "refused request");
        record.decide(Verdict::Deny, "request", &message);
        // The client's framing or target cannot be trusted: no further request on this
        // connection.
        reply::closing(reply::failure(Shape::Text, &Failure::Client(message)))
    } else {
        let who = (&session.presented, session.profile.as_ref());
        match identity::again(state, ctx, who, record) {
            Err(failure) => reply::failure(Shape::Text, &failure),
            Ok(identity) => {
                let settings = &state.settings;
                let for_api = host == settings.api_host
                    && (host != settings.github_host || req.uri().path().starts_with("/api/"));
                if for_api {
                    api::handle(state, &identity.policy, req, record).await
                } else {
                    git::handle(state, &identity.policy, req, record).await
                }
            }
        }
    };
    pending.finish(response)
}

/// The request must be for exactly the host the tunnel was opened to, and framed
/// unambiguously.
fn check_request(session: &Session, req: &Request<ClientBody>) -> Result<(), String> {
    let target = &session.target;
    if let Some(sni) = &session.sni_mismatch {
        return Err(format!(
            "TLS server name {sni} does not match the CONNECT target {}; requests are only forwarded to the host the tunnel was opened to",
            target.host
        ));
    }
    if session.framing.conflict() {
        return Err(CONFLICTING_FRAMING.into());
    }
    let headers = req.headers();
    if headers.get_all(header::CONTENT_LENGTH).iter().count() > 1 {
        return Err("request has more than one Content-Length".into());
    }
    let mut hosts = headers.get_all(header::HOST).iter();
    let (Some(value), None) = (hosts.next(), hosts.next()) else {
        return Err("request must carry exactly one Host header".into());
    };
    let value = value
        .to_str()
        .map_err(|_| "Host header is not ASCII".to_owned())?;
    if !same_authority(value, target) {
        return Err(format!(
            "Host header {value:?} does not match the CONNECT target {}:{}",
            target.host, target.port
        ));
    }
    if let Some(authority) = req.uri().authority()
        && !same_authority(authority.as_str(), target)
    {
        return Err(format!(
            "request URI authority {authority} does not match the CONNECT target {}",
            target.host
        ));
    }
    Ok(())
}

/// `host[:port]` names the target (case-insensitive, port 443 implied).
fn same_authority(value: &str, target: &Target) -> bool {
    let (host, port) = match value.rsplit_once(':') {
        // In `[v6]:port` the port follows the bracket; `[v6]` alone has none.
        Some((host, port)) if !value.starts_with('[') || host.ends_with(']') => {
            match port.parse::<u16>() {
                Ok(port) => (host, port),
                Err(_) => return false,
            }
        }
        _ => (value, 443),
    };
    if port != target.port {
        return false;
    }
    // The usual case, the canonical spelling, needs no parsing.
    if host == target.host.as_str() {
        return true;
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    gitgate_policy::HostName::parse(host).is_ok_and(|h| h == target.host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gitgate_policy::HostName;

    fn target(host: &str, port: u16) -> Target {
        Target {
            host: HostName::parse(host).unwrap(),
            port,
        }
    }

    #[test]
    fn the_host_header_must_name_the_connect_target() {
        let github = target("github.com", 443);
        for same in [
            "github.com",
            "GitHub.COM",
            "github.com:443",
            "github.com.",
            "GITHUB.com.:443",
        ] {
            assert!(same_authority(same, &github), "{same}");
        }
        for other in [
            "github.com:444",
            "evil.com",
            "github.com.evil",
            "",
            ":443",
            "github.com:x",
        ] {
            assert!(!same_authority(other, &github), "{other}");
        }
        let v6 = target("[::1]", 8443);
        assert!(same_authority("[::1]:8443", &v6));
        assert!(same_authority("[0::1]:8443", &v6));
        assert!(!same_authority("[::1]", &v6));
        let v6_default = target("[::1]", 443);
        assert!(same_authority("[::1]", &v6_default));
        assert!(same_authority("[::1]:443", &v6_default));
        assert!(!same_authority("[::1]:", &v6_default));
        assert!(!same_authority("[::2]:8443", &v6));
        let v4 = target("127.0.0.1", 443);
        assert!(same_authority("127.0.0.1", &v4));
        assert!(!same_authority("127.0.0.2", &v4));
    }
}
