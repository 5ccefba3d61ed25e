//! The GitHub REST/GraphQL API host. Denied until `policy.api` exists.

use http::{Request, Response};
use hyper::body::Incoming;

use crate::body::ProxyBody;
use crate::reply::{self, Failure, Shape};

pub(crate) async fn handle(req: Request<Incoming>) -> Response<ProxyBody> {
    tracing::info!(method = %req.method(), path = %req.uri().path(), decision = "deny", "API request");
    reply::failure(
        Shape::Json,
        &Failure::Policy(format!(
            "{} {} denied: the GitHub API is not enabled for this sandbox (only git over HTTPS is)",
            req.method(),
            req.uri().path()
        )),
    )
}
