//! The device-flow endpoints on `github.com` (`/login/device/code`,
//! `/login/oauth/access_token`) and the user endpoints on `api.github.com` (`GET /user`,
//! `DELETE /applications/{client_id}/token`).

use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::request::Parts;
use http::{HeaderValue, Method, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Limited};
use serde_json::{Value, json};

use crate::api::{error, json_response};
use crate::server::{Counted, RespBody, Shared, full, text};
use crate::users::{Issued, OAuthError};

/// Largest form or JSON body read.
const MAX_BODY: usize = 64 * 1024;
const ERROR_URI: &str = "https://docs.github.com/developers/apps/authorizing-oauth-apps";

/// Whether `path` on the git host belongs to the OAuth endpoints.
pub(crate) fn is_login(path: &str) -> bool {
    path.starts_with("/login/")
}

/// `POST /login/device/code` and `POST /login/oauth/access_token`.
pub(crate) async fn login(shared: &Shared, parts: &Parts, body: Counted) -> Response<RespBody> {
    if parts.method != Method::POST {
        return text(StatusCode::NOT_FOUND, "Not Found\n");
    }
    let Some(form) = read(body).await else {
        return text(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large\n");
    };
    let field = |name: &str| {
        form_urlencoded::parse(&form)
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    let json = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"));
    let now = SystemTime::now();
    let client_id = field("client_id");
    let outcome = match parts.uri.path() {
        "/login/device/code" => {
            let code = shared
                .users()
                .device_code(&client_id, random_hex(40), user_code(), now);
            code.map(|c| {
                vec![
                    ("device_code", json!(c.device_code)),
                    ("user_code", json!(c.user_code)),
                    ("verification_uri", json!("https://github.com/login/device")),
                    ("expires_in", json!(c.expires_in)),
                    ("interval", json!(c.interval)),
                ]
            })
        }
        "/login/oauth/access_token" => {
            let pair = (
                crate::api::new_token("ghu_"),
                format!("ghr_{}", random_hex(76)),
            );
            let issued = match field("grant_type").as_str() {
                "urn:ietf:params:oauth:grant-type:device_code" => {
                    shared
                        .users()
                        .poll(&client_id, &field("device_code"), pair, now)
                }
                "refresh_token" => {
                    shared
                        .users()
                        .refresh(&client_id, &field("refresh_token"), pair, now)
                }
                _ => Err(OAuthError {
                    error: "unsupported_grant_type",
                    description: "The grant type is not supported.",
                    interval: None,
                }),
            };
            issued.map(token_fields)
        }
        _ => return text(StatusCode::NOT_FOUND, "Not Found\n"),
    };
    let fields = outcome.unwrap_or_else(|e| {
        shared.users().answered(e.error);
        let mut fields = vec![
            ("error", json!(e.error)),
            ("error_description", json!(e.description)),
            ("error_uri", json!(ERROR_URI)),
        ];
        if let Some(interval) = e.interval {
            fields.push(("interval", json!(interval)));
        }
        fields
    });
    // GitHub answers these 200 whatever happened, as JSON only when asked.
    if json {
        let object: serde_json::Map<String, Value> =
            fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        return reply(
            StatusCode::OK,
            "application/json",
            Value::Object(object).to_string(),
        );
    }
    let mut form = form_urlencoded::Serializer::new(String::new());
    for (k, v) in fields {
        let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
        form.append_pair(k, &v);
    }
    reply(
        StatusCode::OK,
        "application/x-www-form-urlencoded",
        form.finish(),
    )
}

fn token_fields(issued: Issued) -> Vec<(&'static str, Value)> {
    vec![
        ("access_token", json!(issued.access_token)),
        ("expires_in", json!(issued.expires_in)),
        ("refresh_token", json!(issued.refresh_token)),
        (
            "refresh_token_expires_in",
            json!(issued.refresh_token_expires_in),
        ),
        ("scope", json!("")),
        ("token_type", json!("bearer")),
    ]
}

/// Whether an API request is for [`api`].
pub(crate) fn is_user_api(method: &Method, path: &str) -> bool {
    (method == Method::GET && path == "/user")
        || (method == Method::DELETE && revoked_client(path).is_some())
}

fn revoked_client(path: &str) -> Option<&str> {
    path.strip_prefix("/applications/")?.strip_suffix("/token")
}

/// `GET /user` and `DELETE /applications/{client_id}/token`.
pub(crate) async fn api(shared: &Shared, parts: &Parts, body: Counted) -> Response<RespBody> {
    let path = parts.uri.path();
    if parts.method == Method::GET {
        let token = auth(parts, &["bearer", "token"]);
        let users = shared.users();
        return match token.and_then(|t| users.user(&t, SystemTime::now())) {
            Some(login) => json_response(
                StatusCode::OK,
                json!({"login": login, "id": crate::api::stable_id(login), "type": "User"}),
            ),
            None => error(StatusCode::UNAUTHORIZED, "Bad credentials"),
        };
    }
    let client_id = revoked_client(path).unwrap_or_default();
    let basic = auth(parts, &["basic"])
        .and_then(|b| STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok());
    let authorized = basic
        .as_deref()
        .and_then(|b| b.split_once(':'))
        .is_some_and(|(id, secret)| id == client_id && shared.users().check_secret(id, secret));
    if !authorized {
        return error(StatusCode::NOT_FOUND, "Not Found");
    }
    let token = read(body)
        .await
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| v["access_token"].as_str().map(str::to_owned))
        .unwrap_or_default();
    if shared.users().revoke(&token) {
        reply(StatusCode::NO_CONTENT, "text/plain", String::new())
    } else {
        error(StatusCode::NOT_FOUND, "Not Found")
    }
}

/// The credential after one of `schemes` in `Authorization`.
fn auth(parts: &Parts, schemes: &[&str]) -> Option<String> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, credential) = value.split_once(' ')?;
    schemes
        .iter()
        .any(|s| scheme.eq_ignore_ascii_case(s))
        .then(|| credential.trim().to_owned())
}

async fn read(body: Counted) -> Option<bytes::Bytes> {
    Limited::new(body, MAX_BODY)
        .collect()
        .await
        .ok()
        .map(|c| c.to_bytes())
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<RespBody> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// `XXXX-XXXX` from an alphabet without look-alikes, as GitHub shows them.
fn user_code() -> String {
    const ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ0123456789";
    let bytes = crate::api::random_bytes::<8>();
    let mut code: String = bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect();
    code.insert(4, '-');
    code
}

fn random_hex(len: usize) -> String {
    let mut out = String::new();
    while out.len() < len {
        for b in crate::api::random_bytes::<16>() {
            out.push_str(&format!("{b:02x}"));
        }
    }
    out.truncate(len);
    out
}
