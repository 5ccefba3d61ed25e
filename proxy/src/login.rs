//! `/login` and `/logout`: the device-flow login of `github.user`, answered on the proxy
//! port (for the sandbox: `curl -X POST $PROXY/login`) and on the admin listener (for
//! `gitgate login`, `status` and `logout`). Plain text for people, JSON when asked for.

use http::{HeaderMap, Method, Request, Response, StatusCode, header};

use crate::body::ProxyBody;
use crate::reply;
use crate::state::State;
use crate::token::{DEFAULT_PROFILE, LoginStatus};

/// Whether `path` is one of the login endpoints.
pub(crate) fn is_login_path(path: &str) -> bool {
    matches!(path, "/login" | "/logout")
}

/// Answers a login endpoint.
pub(crate) async fn handle<B>(state: &State, req: &Request<B>) -> Response<ProxyBody> {
    let json = wants_json(req.headers());
    let profile = profile(req.uri().query());
    if profile != DEFAULT_PROFILE {
        return reply::text(
            StatusCode::NOT_FOUND,
            &format!(
                "gitgate: there is no profile {profile:?}; this gitgate has only {DEFAULT_PROFILE:?}"
            ),
        );
    }
    let tokens = &state.tokens;
    let listen = state.settings.listen;
    let not_configured = || {
        reply::text(
            StatusCode::NOT_FOUND,
            &format!(
                "gitgate: logging in is for github.user (acting for a person); this gitgate's credential is: {}",
                tokens.kind()
            ),
        )
    };
    let path = req.uri().path();
    match (req.method(), path) {
        (&Method::POST, "/login") => match tokens.login().await {
            None => not_configured(),
            Some(Ok(status)) => show(&status, json, listen),
            Some(Err(error)) => reply::text(StatusCode::BAD_GATEWAY, &format!("gitgate: {error}")),
        },
        (&Method::GET, "/login") => match tokens.login_status() {
            None => not_configured(),
            Some(status) => show(&status, json, listen),
        },
        (&Method::POST, "/logout") => match tokens.logout().await {
            None => not_configured(),
            Some(outcome) if json => reply::json(StatusCode::OK, &outcome),
            Some(outcome) => reply::text(StatusCode::OK, &format!("gitgate: {}", outcome.message)),
        },
        _ => {
            let mut response = reply::text(
                StatusCode::METHOD_NOT_ALLOWED,
                "gitgate: POST /login starts a GitHub login, GET /login shows who is logged in, POST /logout logs out",
            );
            let allow = if path == "/login" {
                "GET, POST"
            } else {
                "POST"
            };
            response
                .headers_mut()
                .insert(header::ALLOW, http::HeaderValue::from_static(allow));
            response
        }
    }
}

fn show(status: &LoginStatus, json: bool, listen: std::net::SocketAddr) -> Response<ProxyBody> {
    if json {
        return reply::json(StatusCode::OK, status);
    }
    reply::text(StatusCode::OK, &describe(status, &listen.to_string()))
}

/// The status in a sentence or two.
pub(crate) fn describe(status: &LoginStatus, proxy: &str) -> String {
    let unknown = || "?".to_owned();
    let mut text = match status.state {
        "loggedIn" => format!(
            "{}: logged in to GitHub as {}; the token expires at {} and is renewed before then",
            status.profile,
            status.login.clone().unwrap_or_else(unknown),
            status.expires_at.clone().unwrap_or_else(|| "never".into()),
        ),
        "pending" => format!(
            "{}: to let gitgate act for you on GitHub, open {} and enter the code {} (before {})",
            status.profile,
            status.verification_uri.clone().unwrap_or_else(unknown),
            status.user_code.clone().unwrap_or_else(unknown),
            status.code_expires_at.clone().unwrap_or_else(unknown),
        ),
        _ => format!(
            "{}: nobody is logged in to GitHub; log in with `gitgate login` or `curl -X POST http://{proxy}/login`",
            status.profile
        ),
    };
    if let Some(error) = &status.last_error {
        text.push_str(&format!("\nlast error: {error}"));
    }
    text
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"))
}

/// `profile=NAME` from the query, or the default.
fn profile(query: Option<&str>) -> String {
    query
        .into_iter()
        .flat_map(|q| form_urlencoded::parse(q.as_bytes()))
        .find(|(k, _)| k == "profile")
        .map_or_else(|| DEFAULT_PROFILE.to_owned(), |(_, v)| v.into_owned())
}
