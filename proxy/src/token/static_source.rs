//! A token provided from outside: a file (re-read when it changes) or an environment variable.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::SystemTime;

use super::{Secret, TokenError};

/// Where a static token comes from.
pub(crate) enum StaticToken {
    /// Read once from the environment at start.
    Env(Secret),
    /// Read from a file, and again whenever its size or modification time changes.
    File {
        path: PathBuf,
        cached: Mutex<Option<(SystemTime, u64, Secret)>>,
    },
}

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
            cached: Mutex::new(None),
        }
    }

    /// The current token.
    pub(crate) async fn get(&self) -> Result<Secret, TokenError> {
        let (path, cached) = match self {
            Self::Env(secret) => return Ok(secret.clone()),
            Self::File { path, cached } => (path, cached),
        };
        let fail = |e: std::io::Error| {
            TokenError::Static(format!(
                "cannot read the token file {}: {e}",
                path.display()
            ))
        };
        let meta = tokio::fs::metadata(path).await.map_err(fail)?;
        let stamp = (meta.modified().map_err(fail)?, meta.len());
        if let Some((modified, len, secret)) = &*cached.lock().unwrap_or_else(|p| p.into_inner()) {
            if (*modified, *len) == stamp {
                return Ok(secret.clone());
            }
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
        *cached.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((stamp.0, stamp.1, secret.clone()));
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
        let source = StaticToken::from_file(path.clone());
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
