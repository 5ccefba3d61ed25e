//! The GitHub App API: JWTs, installation lookup and token minting.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gitgate_policy::{Access, TokenScope};
use reqwest::{Method, StatusCode};
use serde::Deserialize;

use super::jwt::{self, Jwt};
use super::{Secret, Signer, TokenError, error_chain};
use crate::metrics::Metrics;

/// A JWT is re-signed when less than this remains.
const JWT_REUSE_MARGIN: u64 = 60;

/// An installation token as GitHub returned it.
#[derive(Clone, Debug)]
pub(crate) struct Minted {
    pub(crate) secret: Secret,
    pub(crate) minted_at: SystemTime,
    pub(crate) expires_at: SystemTime,
}

/// One row of `gitgate doctor`'s view of the App.
#[derive(Debug, Clone, Deserialize)]
pub struct AppInfo {
    /// The App's id.
    pub id: u64,
    /// The App's slug.
    #[serde(default)]
    pub slug: String,
}

/// Talks to the GitHub App endpoints of the API.
pub(crate) struct AppClient {
    app_id: String,
    signer: Signer,
    api: String,
    api_host: String,
    http: reqwest::Client,
    metrics: std::sync::Arc<Metrics>,
    /// The current JWT; the lock also keeps concurrent requests to one signing.
    jwt: tokio::sync::Mutex<Option<Jwt>>,
}

#[derive(Deserialize)]
struct Installation {
    id: u64,
}

#[derive(Deserialize)]
struct AccessToken {
    token: String,
    expires_at: String,
}

#[derive(Deserialize)]
struct GitHubError {
    #[serde(default)]
    message: String,
}

impl AppClient {
    pub(crate) fn new(
        app_id: String,
        signer: Signer,
        api: &str,
        http: reqwest::Client,
        metrics: std::sync::Arc<Metrics>,
    ) -> Self {
        let api = api.trim_end_matches('/').to_owned();
        let api_host = reqwest::Url::parse(&api)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_else(|| api.clone());
        Self {
            app_id,
            signer,
            api,
            api_host,
            http,
            metrics,
            jwt: tokio::sync::Mutex::new(None),
        }
    }

    /// The current JWT, signed anew only when close to expiry.
    async fn jwt(&self) -> Result<Secret, TokenError> {
        let mut cached = self.jwt.lock().await;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        if let Some(jwt) = cached
            .as_ref()
            .filter(|j| j.expires_at > now + JWT_REUSE_MARGIN)
        {
            return Ok(jwt.token.clone());
        }
        let (input, expires_at) = jwt::signing_input(&self.app_id, now);
        let signature = self
            .signer
            .sign(input.as_bytes())
            .await
            .map_err(TokenError::Signing)?;
        tracing::debug!(signer = %self.signer.describe(), "signed an App JWT");
        let jwt = jwt::assemble(&input, &signature, expires_at);
        let token = jwt.token.clone();
        *cached = Some(jwt);
        Ok(token)
    }

    /// Sends an App-authenticated request and returns status and body.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<(StatusCode, Vec<u8>), TokenError> {
        let jwt = self.jwt().await?;
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.api))
            .header("Accept", "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28")
            .header("Authorization", format!("Bearer {}", jwt.expose()));
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body.to_string());
        }
        let unreachable = |e: reqwest::Error| TokenError::Unreachable {
            host: self.api_host.clone(),
            detail: error_chain(&e),
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        if let Some(remaining) = response
            .headers()
            .get("x-ratelimit-remaining")
            .and_then(|v| v.to_str().ok()?.trim().parse().ok())
        {
            self.metrics.rate_limit_remaining(remaining);
        }
        let bytes = response.bytes().await.map_err(unreachable)?;
        if status == StatusCode::UNAUTHORIZED {
            // Sign anew next time: a JWT GitHub refused (issued ahead of its clock, or by
            // a key since rotated behind the signer) stays refused for its whole life.
            let mut cached = self.jwt.lock().await;
            if cached.as_ref().is_some_and(|j| j.token == jwt) {
                *cached = None;
            }
            return Err(TokenError::JwtRejected(message(&bytes)));
        }
        Ok((status, bytes.to_vec()))
    }

    /// `GET /app`: proves the JWT is accepted.
    pub(crate) async fn app(&self) -> Result<AppInfo, TokenError> {
        let (status, body) = self.call(Method::GET, "/app", None).await?;
        parse(status, &body, StatusCode::OK, "GET /app")
    }

    /// The installation id for `owner`: by the repository, then as an org, then as a user.
    pub(crate) async fn installation(&self, owner: &str, repo: &str) -> Result<u64, TokenError> {
        for path in [
            format!("/repos/{owner}/{repo}/installation"),
            format!("/orgs/{owner}/installation"),
            format!("/users/{owner}/installation"),
        ] {
            let (status, body) = self.call(Method::GET, &path, None).await?;
            if status == StatusCode::NOT_FOUND {
                continue;
            }
            let found: Installation = parse(status, &body, StatusCode::OK, &format!("GET {path}"))?;
            return Ok(found.id);
        }
        Err(TokenError::NotInstalled(owner.to_owned()))
    }

    /// `POST /app/installations/{id}/access_tokens` for exactly `scope`.
    pub(crate) async fn mint(
        &self,
        installation: u64,
        scope: &TokenScope,
    ) -> Result<Minted, TokenError> {
        let permissions: serde_json::Map<String, serde_json::Value> = scope
            .permissions
            .iter()
            .map(|(name, access)| (name.clone(), access_json(*access)))
            .collect();
        let mut body = serde_json::json!({ "permissions": permissions });
        if let Some(repositories) = &scope.repositories {
            // An empty list would mean "every repository": the scope type never yields one,
            // and this guard keeps it that way.
            if repositories.is_empty() {
                return Err(TokenError::Signing(
                    "refusing to request a token for an empty repository list".into(),
                ));
            }
            body["repositories"] = serde_json::json!(repositories);
        }
        let path = format!("/app/installations/{installation}/access_tokens");
        let minted_at = SystemTime::now();
        let (status, bytes) = self.call(Method::POST, &path, Some(body)).await?;
        if status != StatusCode::CREATED {
            let mut message = message(&bytes);
            if status == StatusCode::NOT_FOUND {
                message = format!(
                    "{message} (installation {installation} no longer exists: was the App uninstalled or reinstalled? gitgate looks up an installation again when GitHub no longer knows it; one set in github.app.installations must be updated there)"
                );
            }
            if status == StatusCode::UNPROCESSABLE_ENTITY {
                // Say what was asked, so the operator can grant it or narrow the policy.
                let asked: Vec<String> = scope
                    .permissions
                    .iter()
                    .map(|(name, access)| format!("{name}: {}", access.as_str()))
                    .collect();
                let repos = scope
                    .repositories
                    .as_ref()
                    .map_or("all repositories".to_owned(), |r| r.join(", "));
                message = format!(
                    "{message} (gitgate asked for {} on {repos}; grant the GitHub App these permissions and repositories, or narrow the policy)",
                    asked.join(", ")
                );
            }
            return Err(TokenError::Refused {
                installation,
                status: status.as_u16(),
                message,
            });
        }
        let token: AccessToken =
            parse(status, &bytes, StatusCode::CREATED, &format!("POST {path}"))?;
        let expires_at = time::OffsetDateTime::parse(
            &token.expires_at,
            &time::format_description::well_known::Rfc3339,
        )
        .map_err(|e| TokenError::Unexpected {
            what: format!("POST {path}"),
            status: status.as_u16(),
            message: format!("bad expires_at: {e}"),
        })?;
        let expires_at =
            UNIX_EPOCH + Duration::from_secs(expires_at.unix_timestamp().max(0) as u64);
        Ok(Minted {
            secret: Secret::new(token.token),
            minted_at,
            expires_at,
        })
    }
}

fn access_json(access: Access) -> serde_json::Value {
    serde_json::Value::String(access.as_str().to_owned())
}

/// GitHub's `message` field, or a short excerpt of a body that is not JSON (an HTML
/// error page). Other JSON is never quoted: it could be a token answered with an
/// unexpected status, and the message reaches the sandbox.
fn message(body: &[u8]) -> String {
    if let Ok(error) = serde_json::from_slice::<GitHubError>(body) {
        return error.message;
    }
    if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok() {
        return "an answer in JSON without a message".into();
    }
    String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned()
}

fn parse<T: for<'de> Deserialize<'de>>(
    status: StatusCode,
    body: &[u8],
    expected: StatusCode,
    what: &str,
) -> Result<T, TokenError> {
    let unexpected = |message: String| TokenError::Unexpected {
        what: what.to_owned(),
        status: status.as_u16(),
        message,
    };
    if status != expected {
        return Err(unexpected(message(body)));
    }
    serde_json::from_slice(body).map_err(|e| unexpected(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::message;

    #[test]
    fn a_json_answer_without_a_message_is_never_quoted() {
        assert_eq!(message(br#"{"message": "Not Found"}"#), "Not Found");
        let token = message(br#"{"token": "ghs_secret", "expires_at": "x"}"#);
        assert!(!token.contains("ghs_secret"), "{token}");
        assert_eq!(message(b"<html>busy</html>"), "<html>busy</html>");
    }
}
