//! `/login` and `/logout`: the device-flow login of `github.user`, answered on the proxy
//! port (for the sandbox: `curl -X POST $PROXY/login`) and on the admin listener (for
//! `gitgate login`, `status` and `logout`). Plain text for people, JSON when asked for.

use gitgate_policy::Policies;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};

use crate::body::ProxyBody;
use crate::reply;
use crate::state::State;
use crate::token::{DEFAULT_PROFILE, LoginStatus};

/// Whether `path` is one of the login endpoints.
pub(crate) fn is_login_path(path: &str) -> bool {
    matches!(path, "/login" | "/logout")
}

/// Who asks.
pub(crate) enum Caller<'a> {
    /// A sandbox on the proxy port, identified as this profile (with profiles): it may
    /// log in, look and log out only for its own profile.
    Sandbox(Option<&'a str>),
    /// The operator on the admin listener: any profile, named with `?profile=`.
    Operator,
}

/// Answers a login endpoint.
pub(crate) async fn handle<B>(
    state: &State,
    caller: Caller<'_>,
    req: &Request<B>,
) -> Response<ProxyBody> {
    let json = wants_json(req.headers());
    let asked = asked(req.uri().query());
    if let (Caller::Operator, None, &Method::GET, Policies::Profiles(set)) =
        (&caller, &asked, req.method(), &*state.policies())
    {
        // The operator's overview: every profile's session.
        let mut names: Vec<&str> = set.iter().map(|p| p.name.as_str()).collect();
        names.sort_unstable();
        let all: Option<Vec<LoginStatus>> = names
            .iter()
            .map(|name| state.tokens.login_status(name))
            .collect();
        return match all {
            None => not_configured(state),
            Some(all) if json => reply::json(StatusCode::OK, &all),
            Some(all) => {
                let proxy = state.settings.listen.to_string();
                let lines: Vec<String> = all.iter().map(|s| describe(s, &proxy)).collect();
                reply::text(StatusCode::OK, &lines.join("\n"))
            }
        };
    }
    let profile = match session_of(state, caller, asked) {
        Ok(profile) => profile,
        Err((status, message)) => return reply::text(status, &format!("gitgate: {message}")),
    };
    let profile = profile.as_str();
    let tokens = &state.tokens;
    let listen = state.settings.listen;
    let not_configured = || not_configured(state);
    let path = req.uri().path();
    match (req.method(), path) {
        (&Method::POST, "/login") => match tokens.login(profile).await {
            None => not_configured(),
            Some(Ok(status)) => show(&status, json, listen),
            Some(Err(error)) => {
                let status = match error {
                    crate::token::TokenError::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
                    _ => StatusCode::BAD_GATEWAY,
                };
                reply::text(status, &format!("gitgate: {error}"))
            }
        },
        (&Method::GET, "/login") => match tokens.login_status(profile) {
            None => not_configured(),
            Some(status) => show(&status, json, listen),
        },
        (&Method::POST, "/logout") => match tokens.logout(profile).await {
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

/// The answer without `github.user`.
fn not_configured(state: &State) -> Response<ProxyBody> {
    reply::text(
        StatusCode::NOT_FOUND,
        &format!(
            "gitgate: logging in is for github.user (acting for a person); this gitgate's credential is: {}",
            state.tokens.kind()
        ),
    )
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
            "{}: logged in to GitHub as {}; {}",
            status.profile,
            status.login.clone().unwrap_or_else(unknown),
            match (&status.expires_at, status.renewing) {
                (Some(at), true) => format!(
                    "the token is not usable now (it expired at {at}, or GitHub refused it) and gitgate is renewing it"
                ),
                (Some(at), false) =>
                    format!("the token expires at {at} and is renewed before then"),
                (None, _) => "the token does not expire".to_owned(),
            },
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

/// The profile whose session `caller` asks about, with `asked` from `?profile=`; or the
/// status and reason it may not.
fn session_of(
    state: &State,
    caller: Caller<'_>,
    asked: Option<String>,
) -> Result<String, (StatusCode, String)> {
    if let Caller::Sandbox(Some(own)) = caller {
        return match asked {
            Some(other) if other != own => Err((
                StatusCode::FORBIDDEN,
                format!(
                    "this sandbox is profile {own}; it can log in, look and log out only for itself, not for {other}"
                ),
            )),
            _ => Ok(own.to_owned()),
        };
    }
    let policies = state.policies();
    // A sandbox identified without a profile (under a single policy) never picks one,
    // even if a reload has brought profiles in since it was identified.
    if let (Caller::Sandbox(None), Policies::Profiles(_)) = (caller, &*policies) {
        return Err((
            StatusCode::FORBIDDEN,
            "gitgate's profiles changed while this request was identified; retry".into(),
        ));
    }
    match (&*policies, asked) {
        (Policies::Single(_), None) => Ok(DEFAULT_PROFILE.to_owned()),
        (Policies::Single(_), Some(name)) if name == DEFAULT_PROFILE => Ok(name),
        (Policies::Single(_), Some(name)) => Err((
            StatusCode::NOT_FOUND,
            format!("there is no profile {name:?}; this gitgate has only {DEFAULT_PROFILE:?}"),
        )),
        (Policies::Profiles(set), None) => Err((
            StatusCode::BAD_REQUEST,
            format!(
                "each profile has its own GitHub login; name it with ?profile=NAME (gitgate login --profile NAME); profiles: {}; GET /login without one lists them all",
                set.listed()
            ),
        )),
        (Policies::Profiles(set), Some(name)) => match set.get(&name) {
            Some(_) => Ok(name),
            None => Err((
                StatusCode::NOT_FOUND,
                format!("there is no profile {name:?}; profiles: {}", set.listed()),
            )),
        },
    }
}

/// `profile=NAME` from the query.
fn asked(query: Option<&str>) -> Option<String> {
    query
        .into_iter()
        .flat_map(|q| form_urlencoded::parse(q.as_bytes()))
        .find(|(k, _)| k == "profile")
        .map(|(_, v)| v.into_owned())
}
