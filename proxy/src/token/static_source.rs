//! A token provided from outside: a file (re-read when it changes) or an environment variable.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use super::{Secret, TokenError};

/// Where a static token comes from.
pub(crate) enum StaticToken {
    /// Read once from the environment at start.
    Env(Secret),
    /// Read from a file, and again whenever its size or modification time changes.
    File {
        path: PathBuf,
        recheck: Duration,
        cached: Mutex<Option<Cached>>,
    },
}

/// The file's token, the stamp it was read at, and when the stamp was last checked.
pub(crate) struct Cached {
    stamp: (SystemTime, u64),
    secret: Secret,
    checked: Instant,
}

/// The file is looked at (one `stat`) at most this often, not on every request.
const RECHECK: Duration = Duration::from_secs(1);

impl StaticToken {
    pub(crate) fn from_env(name: &str) -> Result<Self, TokenError> {
        match std::env::var(name) {
            Ok(value) if !value.trim().is_empty() => Ok(Self::Env(Secret::new(value.trim()))),
            _ => Err(TokenError::Static(format!(
                "github.token.env: environment variable {name} is not set or empty"
            ))),
        }
    }

    pub(crate) fn from_file(path: PathBuf) -> Self {
        Self::File {
            path,
            recheck: RECHECK,
            cached: Mutex::new(None),
        }
    }

    /// The current token.
    pub(crate) async fn get(&self) -> Result<Secret, TokenError> {
        let (path, recheck, cached) = match self {
            Self::Env(secret) => return Ok(secret.clone()),
            Self::File {
                path,
                recheck,
                cached,
            } => (path, *recheck, cached),
        };
        let lock = || cached.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = lock().as_ref().filter(|c| c.checked.elapsed() < recheck) {
            return Ok(c.secret.clone());
        }
        let fail = |e: std::io::Error| {
            TokenError::Static(format!(
                "cannot read the token file {}: {e}",
                path.display()
            ))
        };
        let meta = tokio::fs::metadata(path).await.map_err(fail)?;
        let stamp = (meta.modified().map_err(fail)?, meta.len());
        if let Some(c) = lock().as_mut().filter(|c| c.stamp == stamp) {
            c.checked = Instant::now();
            return Ok(c.secret.clone());
        }
        let text = tokio::fs::read_to_string(path).await.map_err(fail)?;
        let token = text.trim();
        if token.is_empty() {
            return Err(TokenError::Static(format!(
                "the token file {} is empty",
                path.display()
            )));
        }
        let secret = Secret::new(token);
        *lock() = Some(Cached {
            stamp,
            secret: secret.clone(),
            checked: Instant::now(),
        });
        tracing::info!(path = %path.display(), "read the token file");
        Ok(secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn picks_up_a_rewritten_file() {
        let dir = tempfile_dir();
        let path = dir.join("token");
        std::fs::write(&path, "first\n").unwrap();
        let source = StaticToken::File {
            path: path.clone(),
            recheck: Duration::ZERO,
            cached: Mutex::new(None),
        };
        assert_eq!(source.get().await.unwrap().expose(), "first");
        std::fs::write(&path, "second-token\n").unwrap();
        assert_eq!(source.get().await.unwrap().expose(), "second-token");
        std::fs::write(&path, "  \n").unwrap();
        assert!(source.get().await.is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("gitgate-static-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
