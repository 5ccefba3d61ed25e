//! `api.github.com`: the GitHub App endpoints, authenticated with an App JWT.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use http::request::Parts;
use http::{HeaderValue, Method, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Limited};
use ring::rand::{SecureRandom as _, SystemRandom};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::Fault;
use crate::server::{Counted, RespBody, Shared, count_api_call, full};
use crate::tokens::{AccountType, Installation, MintError, MintRequest, Minted, Selection};

const DOCS: &str = "https://docs.github.com/rest";
/// `X-RateLimit-Limit`; API calls past it get 403.
const RATE_LIMIT: u64 = 5000;
/// Largest request body read.
const MAX_BODY: usize = 256 * 1024;
/// The App's slug and name.
const SLUG: &str = "gitgate-test";
const NAME: &str = "gitgate test app";

/// The endpoints served.
#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    App,
    Installations,
    Installation(u64),
    AccessTokens(u64),
    RepoInstallation(&'a str, &'a str),
    AccountInstallation(&'a str, AccountType),
}

fn route<'a>(method: &Method, path: &'a str) -> Option<Route<'a>> {
    let segs: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
    let id = |s: &str| s.parse::<u64>().ok();
    match (method, segs.as_slice()) {
        (&Method::GET, ["app"]) => Some(Route::App),
        (&Method::GET, ["app", "installations"]) => Some(Route::Installations),
        (&Method::GET, ["app", "installations", n]) => id(n).map(Route::Installation),
        (&Method::POST, ["app", "installations", n, "access_tokens"]) => {
            id(n).map(Route::AccessTokens)
        }
        (&Method::GET, ["repos", owner, repo, "installation"]) => {
            Some(Route::RepoInstallation(owner, repo))
        }
        (&Method::GET, ["orgs", org, "installation"]) => {
            Some(Route::AccountInstallation(org, AccountType::Organization))
        }
        (&Method::GET, ["users", user, "installation"]) => {
            Some(Route::AccountInstallation(user, AccountType::User))
        }
        _ => None,
    }
}

/// Handles one request for `api.github.com`.
pub(crate) async fn handle(
    shared: &Arc<Shared>,
    parts: Parts,
    body: Counted,
) -> Response<RespBody> {
    let used = count_api_call(shared);
    let mut resp = respond(shared, &parts, body, used).await;
    let reset = unix_now() / 3600 * 3600 + 3600;
    let h = resp.headers_mut();
    for (name, value) in [
        ("x-ratelimit-limit", RATE_LIMIT),
        ("x-ratelimit-remaining", RATE_LIMIT.saturating_sub(used)),
        ("x-ratelimit-used", used.min(RATE_LIMIT)),
        ("x-ratelimit-reset", reset),
    ] {
        h.insert(name, HeaderValue::from(value));
    }
    h.insert("x-ratelimit-resource", HeaderValue::from_static("core"));
    h.insert(
        "x-github-api-version-selected",
        HeaderValue::from_static("2022-11-28"),
    );
    resp
}

async fn respond(
    shared: &Arc<Shared>,
    parts: &Parts,
    body: Counted,
    used: u64,
) -> Response<RespBody> {
    let fault = shared.fault();
    if matches!(fault, Some(Fault::ApiUnavailable)) {
        return error(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable");
    }
    if used > RATE_LIMIT {
        return error(StatusCode::FORBIDDEN, "API rate limit exceeded");
    }
    if crate::oauth::is_user_api(&parts.method, parts.uri.path()) {
        return crate::oauth::api(shared, parts, body).await;
    }
    if let (&Method::GET, Some(call)) = (&parts.method, crate::repo_api::route(parts.uri.path())) {
        return crate::repo_api::handle(shared, parts, call);
    }
    if let Some(call) = crate::rest::route(&parts.method, parts.uri.path()) {
        return crate::rest::handle(shared, parts, body, call).await;
    }
    if (&parts.method, parts.uri.path()) == (&Method::POST, "/graphql") {
        return crate::graphql::handle(shared, parts, body).await;
    }
    let Some(route) = route(&parts.method, parts.uri.path()) else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    if let (
        Route::RepoInstallation(owner, _) | Route::AccountInstallation(owner, _),
        Some(Fault::LookupStall { .. }),
    ) = (&route, &fault)
    {
        let mut changes = shared.fault.subscribe();
        let _ = changes
            .wait_for(|f| !matches!(f, Some(Fault::LookupStall { owner: o }) if o.eq_ignore_ascii_case(owner)))
            .await;
    }
    if let (Route::AccessTokens(_), Some(Fault::TokenEndpoint { status, body })) = (&route, fault) {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return json_response(status, body);
    }
    if let Err(message) = check_jwt(shared, parts) {
        return error(StatusCode::UNAUTHORIZED, message);
    }

    let exists = |o: &str, r: &str| shared.repo_exists(o, r);
    let found = |inst: Option<&Installation>| match inst {
        Some(inst) => json_response(StatusCode::OK, installation_json(shared, inst)),
        None => error(StatusCode::NOT_FOUND, "Not Found"),
    };
    match route {
        Route::App => {
            let id = match shared.app_id.parse::<u64>() {
                Ok(n) => json!(n),
                Err(_) => json!(shared.app_id),
            };
            json_response(
                StatusCode::OK,
                json!({"id": id, "slug": SLUG, "name": NAME}),
            )
        }
        Route::Installations => {
            let all: Vec<Value> = shared
                .tokens()
                .installations()
                .iter()
                .map(|i| installation_json(shared, i))
                .collect();
            json_response(StatusCode::OK, Value::Array(all))
        }
        Route::Installation(id) => found(shared.tokens().installation(id)),
        Route::RepoInstallation(owner, repo) => {
            let (owner, repo) = (owner.to_ascii_lowercase(), repo.to_ascii_lowercase());
            found(shared.tokens().for_repo(&owner, &repo, &exists))
        }
        Route::AccountInstallation(login, kind) => found(
            shared
                .tokens()
                .for_account(&login.to_ascii_lowercase(), kind),
        ),
        Route::AccessTokens(id) => {
            let req = match read_mint_request(body).await {
                Ok(req) => req,
                Err(resp) => return resp,
            };
            match mint(shared, id, req) {
                Ok(minted) => json_response(StatusCode::CREATED, minted_json(shared, &minted)),
                Err(e) => mint_error(e),
            }
        }
    }
}

/// Mints a token through the store (shared by the API and [`crate::StandIn::issue_token`]).
pub(crate) fn mint(shared: &Shared, id: u64, req: MintRequest) -> Result<Minted, MintError> {
    let exists = |o: &str, r: &str| shared.repo_exists(o, r);
    let token = new_token("ghs_");
    shared
        .tokens()
        .mint(id, req, token, SystemTime::now(), &exists)
}

/// GitHub's status for a refused mint; the message is the error's text.
fn mint_error(e: MintError) -> Response<RespBody> {
    let status = match e {
        MintError::NoInstallation => StatusCode::NOT_FOUND,
        MintError::RepoNotAccessible | MintError::PermissionNotGranted | MintError::Invalid(_) => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        MintError::Exhausted => StatusCode::FORBIDDEN,
    };
    error(status, &e.to_string())
}

/// `prefix` (`ghs_`, `ghu_`) + 36 random alphanumerics.
pub(crate) fn new_token(prefix: &str) -> String {
    const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut token = String::from(prefix);
    while token.len() < 40 {
        let bytes = random_bytes::<64>();
        // 248 = 4 * 62: rejection sampling keeps the choice uniform.
        for b in bytes.iter().filter(|&&b| b < 248) {
            if token.len() < 40 {
                token.push(char::from(ALNUM[usize::from(*b) % ALNUM.len()]));
            }
        }
    }
    token
}

/// `N` random bytes (zeros if the system RNG fails: a broken machine, not a test concern).
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    if SystemRandom::new().fill(&mut bytes).is_err() {
        bytes = [0; N];
    }
    bytes
}

fn check_jwt(shared: &Shared, parts: &Parts) -> Result<(), &'static str> {
    let value = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or("Requires authentication")?;
    let jwt = match value.split_once(' ') {
        Some((scheme, jwt)) if scheme.eq_ignore_ascii_case("bearer") => jwt.trim(),
        _ => return Err(crate::jwt::NOT_DECODED),
    };
    let now = i64::try_from(unix_now()).unwrap_or(i64::MAX);
    crate::jwt::verify(jwt, &shared.app_id, &shared.app_public_key, now)
}

#[derive(Deserialize)]
struct RawMintRequest {
    repositories: Option<Vec<String>>,
    permissions: Option<BTreeMap<String, String>>,
}

async fn read_mint_request(body: Counted) -> Result<MintRequest, Response<RespBody>> {
    let bytes = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return Err(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Request body too large",
            ));
        }
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(MintRequest::default());
    }
    match serde_json::from_slice::<RawMintRequest>(&bytes) {
        Ok(raw) => Ok(MintRequest {
            repositories: raw.repositories,
            permissions: raw.permissions,
        }),
        Err(e) if e.classify() == serde_json::error::Category::Data => {
            Err(error(StatusCode::UNPROCESSABLE_ENTITY, "Invalid request."))
        }
        Err(_) => Err(error(StatusCode::BAD_REQUEST, "Problems parsing JSON")),
    }
}

fn installation_json(shared: &Shared, inst: &Installation) -> Value {
    json!({
        "id": inst.id,
        "account": {
            "login": inst.account,
            "id": stable_id(&inst.account),
            "type": inst.account_type.as_str(),
        },
        "repository_selection": inst.selection.as_str(),
        "access_tokens_url": format!("https://api.github.com/app/installations/{}/access_tokens", inst.id),
        "repositories_url": "https://api.github.com/installation/repositories",
        "app_id": shared.app_id.parse::<u64>().map_or_else(|_| json!(shared.app_id), |n| json!(n)),
        "app_slug": SLUG,
        "target_type": inst.account_type.as_str(),
        "permissions": inst.permissions,
        "events": [],
        "suspended_at": null,
    })
}

fn minted_json(shared: &Shared, minted: &Minted) -> Value {
    let mut names = minted.repositories.clone();
    if minted.selection == Selection::All {
        names.extend(crate::repos::list(&shared.repos, &minted.account));
        names.sort();
        names.dedup();
    }
    let repos: Vec<Value> = names
        .iter()
        .map(|name| {
            let full_name = format!("{}/{name}", minted.account);
            json!({"id": stable_id(&full_name), "name": name, "full_name": full_name, "private": true})
        })
        .collect();
    let expires_at = OffsetDateTime::from(minted.mint.expires_at)
        .format(&Rfc3339)
        .unwrap_or_default();
    json!({
        "token": minted.mint.token,
        "expires_at": expires_at,
        "permissions": minted.mint.permissions,
        "repository_selection": minted.selection.as_str(),
        "repositories": repos,
    })
}

/// A made-up but stable numeric id for a name (FNV-1a, 31 bits).
pub(crate) fn stable_id(name: &str) -> u64 {
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    hash & 0x7fff_ffff
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

pub(crate) fn json_response(status: StatusCode, body: impl Into<JsonBody>) -> Response<RespBody> {
    let mut resp = Response::new(full(body.into().0));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    resp
}

/// Whether the client asked for gzip (`Accept-Encoding`).
pub(crate) fn takes_gzip(parts: &Parts) -> bool {
    parts
        .headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| coding.trim().eq_ignore_ascii_case("gzip"))
}

/// `resp`, gzipped as api.github.com sends it to a client that takes gzip; done here for
/// 401s, the answers whose reason gitgate reads.
pub(crate) async fn compressed(gzip: bool, resp: Response<RespBody>) -> Response<RespBody> {
    use http_body_util::BodyExt;
    use std::io::Write;
    if !gzip || resp.status() != StatusCode::UNAUTHORIZED {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let Ok(collected) = body.collect().await else {
        return Response::from_parts(parts, full(bytes::Bytes::new()));
    };
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let _ = encoder.write_all(&collected.to_bytes());
    let zipped = encoder.finish().unwrap_or_default();
    parts
        .headers
        .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, full(zipped))
}

/// A GitHub error: `{"message": ..., "documentation_url": ...}`.
pub(crate) fn error(status: StatusCode, message: &str) -> Response<RespBody> {
    json_response(
        status,
        json!({"message": message, "documentation_url": DOCS}),
    )
}

/// A JSON body, from a value or from raw text (fault bodies).
pub(crate) struct JsonBody(String);

impl From<Value> for JsonBody {
    fn from(v: Value) -> Self {
        Self(v.to_string())
    }
}

impl From<String> for JsonBody {
    fn from(s: String) -> Self {
        Self(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let cases = [
            (Method::GET, "/app", Some(Route::App)),
            (Method::POST, "/app", None),
            (
                Method::GET,
                "/app/installations/7",
                Some(Route::Installation(7)),
            ),
            (
                Method::POST,
                "/app/installations/7/access_tokens",
                Some(Route::AccessTokens(7)),
            ),
            (Method::POST, "/app/installations/x/access_tokens", None),
            (
                Method::GET,
                "/repos/a/b/installation",
                Some(Route::RepoInstallation("a", "b")),
            ),
            (
                Method::GET,
                "/orgs/acme/installation",
                Some(Route::AccountInstallation(
                    "acme",
                    AccountType::Organization,
                )),
            ),
            (
                Method::GET,
                "/users/bob/installation",
                Some(Route::AccountInstallation("bob", AccountType::User)),
            ),
            (Method::GET, "/app/", None),
            (Method::GET, "/", None),
        ];
        for (method, path, want) in cases {
            assert_eq!(route(&method, path), want, "{method} {path}");
        }
    }

    #[test]
    fn token_shape() {
        let t = new_token("ghs_");
        assert_eq!(t.len(), 40);
        assert!(t.starts_with("ghs_"));
        assert!(t[4..].bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(t, new_token("ghs_"));
    }
}
