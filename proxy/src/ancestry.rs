//! Whether one commit is an ancestor of another in a repository, asked of the GitHub API
//! (`GET /repos/{owner}/{repo}/compare/{base}...{head}`) with the push's own installation
//! token, for fast-forward checks whose history leaves the pushed pack. Definite answers
//! are cached: ancestry between two commits never changes.

use std::collections::HashMap;
use std::sync::Mutex;

use gitgate_policy::{ObjectId, RepoPath};
use serde::Deserialize;

use crate::settings::Settings;
use crate::token::{Credential, TokenError};
use crate::upstream::Dialer;

/// Cached answers kept before the cache is emptied and starts over.
const CACHE_ENTRIES: usize = 4096;
/// The largest compare answer read.
const MAX_ANSWER: usize = 1 << 20;

type Key = (String, ObjectId, ObjectId);

/// The compare client and its cache.
pub(crate) struct Ancestry {
    http: reqwest::Client,
    api: String,
    cache: Mutex<HashMap<Key, bool>>,
}

#[derive(Deserialize)]
struct Comparison {
    status: String,
}

impl Ancestry {
    pub(crate) fn new(settings: &Settings, dialer: &Dialer) -> Result<Self, TokenError> {
        Ok(Self {
            http: crate::token::api_client(dialer).map_err(|e| TokenError::Unreachable {
                host: settings.api_host.clone(),
                detail: e.to_string(),
            })?,
            api: settings.api_url.clone(),
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Whether `old` is `head` or one of its ancestors in `repo`; an error says why the
    /// API could not tell.
    pub(crate) async fn is_ancestor(
        &self,
        repo: &RepoPath,
        old: &ObjectId,
        head: &ObjectId,
        credential: Option<&Credential>,
    ) -> Result<bool, String> {
        let key = (repo.to_string(), old.clone(), head.clone());
        if let Some(known) = self.cached(&key) {
            return Ok(known);
        }
        let url = format!(
            "{}/repos/{repo}/compare/{old}...{head}?per_page=1",
            self.api
        );
        let mut request = self
            .http
            .get(&url)
            .header("Accept", "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28");
        if let Some(credential) = credential {
            request = request.header(http::header::AUTHORIZATION, credential.bearer());
        }
        let failed = |detail: String| format!("the GitHub API compare of {repo} failed: {detail}");
        let mut response = request
            .send()
            .await
            .map_err(|e| failed(crate::token::error_chain(&e)))?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| failed(crate::token::error_chain(&e)))?
        {
            if body.len() + chunk.len() > MAX_ANSWER {
                return Err(failed(format!("answer over {MAX_ANSWER} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            return Err(failed(format!("HTTP {}", status.as_u16())));
        }
        let comparison: Comparison =
            serde_json::from_slice(&body).map_err(|e| failed(format!("unreadable answer: {e}")))?;
        let answer = match comparison.status.as_str() {
            "identical" | "ahead" => true,
            "behind" | "diverged" => false,
            other => return Err(failed(format!("unknown status {other:?}"))),
        };
        self.remember(key, answer);
        Ok(answer)
    }

    fn cached(&self, key: &Key) -> Option<bool> {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .copied()
    }

    fn remember(&self, key: Key, answer: bool) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(key, answer);
    }
}
