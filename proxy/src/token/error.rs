//! Why no credential could be had, worded for the person or agent reading git's output.

/// A token could not be obtained. `Display` is the user-facing sentence (without `gitgate: `).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// No installation of the App covers this account.
    #[error("GitHub App is not installed on account {0}")]
    NotInstalled(String),
    /// GitHub refused the App JWT.
    #[error(
        "GitHub rejected the App JWT (check github.app.id, the key, and this machine's clock: GitHub refuses a JWT issued ahead of its own): {0}"
    )]
    JwtRejected(String),
    /// The API could not be reached.
    #[error("cannot reach {host}: {detail}")]
    Unreachable {
        /// The API host.
        host: String,
        /// What failed.
        detail: String,
    },
    /// GitHub answered the token request with an error.
    #[error("GitHub refused a token for installation {installation} (HTTP {status}): {message}")]
    Refused {
        /// The installation id.
        installation: u64,
        /// The HTTP status.
        status: u16,
        /// GitHub's message.
        message: String,
    },
    /// GitHub answered something gitgate does not understand.
    #[error("unexpected answer from GitHub {what} (HTTP {status}): {message}")]
    Unexpected {
        /// The request.
        what: String,
        /// The HTTP status.
        status: u16,
        /// What was wrong.
        message: String,
    },
    /// The static token source failed.
    #[error("{0}")]
    Static(String),
    /// Signing the JWT failed.
    #[error("cannot sign the App JWT: {0}")]
    Signing(String),
    /// No GitHub user is logged in, or the login failed; says what to do.
    #[error("{0}")]
    User(String),
    /// gitgate held a call to GitHub back to spare the App's rate limit; says why.
    #[error("{0}")]
    Throttled(String),
}
