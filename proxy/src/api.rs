//! The GitHub REST/GraphQL API host. Denied until `policy.api` exists.

use http::{Request, Response};

use crate::audit::{Record, Service, Verdict};
use crate::body::ProxyBody;
use crate::github::ClientBody;
use crate::reply::{self, Failure, Shape};

pub(crate) fn handle(req: &Request<ClientBody>, record: &mut Record) -> Response<ProxyBody> {
    let reason = format!(
        "{} {} denied: the GitHub API is not enabled for this sandbox (only git over HTTPS is)",
        req.method(),
        req.uri().path()
    );
    record.service = Service::Api;
    record.decide(Verdict::Deny, "api", &reason);
    reply::failure(Shape::Json, &Failure::Policy(reason))
}
