//! The config file: read, validated in two stages (raw YAML, then domain types), and
//! every error reported as `FILE:LINE:COLUMN: key.path: what is wrong`.

mod raw;
mod values;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gitgate_policy::Policy;
use gitgate_proxy::audit::AuditTarget;
use gitgate_proxy::token::{AppConfig, UserConfig};
use gitgate_proxy::{Limits, Settings, TokenConfig, UpstreamSettings};

pub use raw::RawConfig;

/// A config error, displayed the way editors and CI logs link to it.
#[derive(Debug)]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line and column, when known.
    pub location: Option<(usize, usize)>,
    /// The key path, e.g. `policy.allowedRepos[1]`.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, column)) = self.location {
            write!(f, ":{line}:{column}")?;
        }
        if !self.key.is_empty() && self.key != "." {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// The validated configuration.
#[derive(Debug)]
pub struct Config {
    /// The file it came from.
    pub file: PathBuf,
    /// Proxy settings.
    pub settings: Settings,
    /// The CA files.
    pub ca_cert: PathBuf,
    /// The CA key file.
    pub ca_key: PathBuf,
    /// The compiled policy.
    pub policy: Policy,
    /// Where credentials come from.
    pub tokens: TokenConfig,
    /// The admin listener, if any.
    pub admin: Option<std::net::SocketAddr>,
}

impl Config {
    /// Reads and validates `file`.
    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|e| ConfigError {
            file: file.to_owned(),
            location: None,
            key: String::new(),
            message: format!("cannot read the config file: {e}"),
        })?;
        Self::from_str(&text, file)
    }

    /// Validates config text; relative paths resolve against `file`'s directory.
    pub fn from_str(text: &str, file: &Path) -> Result<Self, ConfigError> {
        let dir = file
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let raw: RawConfig = values::with_base_dir(dir, || parse(text, file))?;
        Self::compile(raw, file, dir)
    }

    fn compile(raw: RawConfig, file: &Path, dir: &Path) -> Result<Self, ConfigError> {
        let error = |key: &str, message: String| ConfigError {
            file: file.to_owned(),
            location: None,
            key: key.to_owned(),
            message,
        };
        let extra_roots = raw
            .upstream
            .ca_file
            .map(|roots| roots.0)
            .unwrap_or_default();
        let resolve: HashMap<String, _> = raw
            .upstream
            .resolve
            .iter()
            .map(|(host, addr)| (host.to_ascii_lowercase(), *addr))
            .collect();
        let mut limits = Limits::default();
        let l = &raw.limits;
        let set = |slot: &mut Duration, value: &Option<values::HumanDuration>| {
            if let Some(v) = value {
                *slot = v.0;
            }
        };
        set(&mut limits.header_read_timeout, &l.header_read_timeout);
        set(&mut limits.tls_handshake_timeout, &l.tls_handshake_timeout);
        set(
            &mut limits.response_header_timeout,
            &l.response_header_timeout,
        );
        set(&mut limits.body_idle_timeout, &l.body_idle_timeout);
        set(&mut limits.shutdown_grace, &l.shutdown_grace);
        set(&mut limits.idle_timeout, &l.idle_timeout);
        let count = |slot: &mut usize, value: Option<raw::Count>| {
            if let Some(v) = value {
                *slot = v.0;
            }
        };
        count(&mut limits.max_connections, l.max_connections);
        count(
            &mut limits.max_connections_per_client,
            l.max_connections_per_client,
        );
        count(&mut limits.max_tunnels, l.max_tunnels);
        count(&mut limits.max_header_bytes, l.max_header_bytes);
        count(&mut limits.max_headers, l.max_headers);
        count(&mut limits.max_push_header_bytes, l.max_push_header_bytes);
        count(&mut limits.max_push_commands, l.max_push_commands);
        if let Some(bytes) = l.max_drain_bytes {
            limits.max_drain_bytes = bytes;
        }
        let settings = Settings {
            listen: raw.listen,
            github_host: raw.github.host.clone(),
            api_url: raw.github.api_url.url.clone(),
            api_host: raw.github.api_url.host.clone(),
            upstream: UpstreamSettings {
                resolve,
                extra_roots,
                connect_timeout: raw
                    .upstream
                    .connect_timeout
                    .map_or(Duration::from_secs(10), |d| d.0),
                pool_idle_timeout: Duration::from_secs(90),
            },
            limits,
            audit: match raw.audit.file {
                Some(path) => AuditTarget::File(path.0),
                None => AuditTarget::Stdout,
            },
        };
        let policy = Policy::compile(&raw.policy, &settings.intercepted_hosts())
            .map_err(|e| error("policy", e.to_string()))?;
        let tokens = match (raw.github.app, raw.github.token, raw.github.user) {
            (_, _, Some(user)) => TokenConfig::User(UserConfig {
                client_id: user.client_id.0,
                client_secret: user.client_secret_file.map(|s| s.0),
                refresh_margin: user
                    .refresh_margin
                    .map_or(Duration::from_secs(1800), |d| d.0),
            }),
            (Some(app), _, _) => TokenConfig::App(Box::new(AppConfig {
                id: app.id.0,
                signer: app.signer,
                installations: app.installations.into_iter().collect(),
                refresh_margin: app.refresh_margin.map_or(Duration::from_secs(600), |d| d.0),
            })),
            (None, Some(raw::RawToken::File(path)), _) => TokenConfig::File(path.0),
            (None, Some(raw::RawToken::Env(name)), _) => TokenConfig::Env(name),
            (None, None, None) => TokenConfig::None,
        };
        let (ca_cert, ca_key) = match raw.ca {
            Some(ca) => (ca.cert.0, ca.key.0),
            None => (dir.join("ca/ca.pem"), dir.join("ca/ca-key.pem")),
        };
        Ok(Self {
            file: file.to_owned(),
            settings,
            ca_cert,
            ca_key,
            policy,
            tokens,
            admin: raw.admin,
        })
    }
}

/// Deserializes with the key path tracked, and turns errors into [`ConfigError`]s.
fn parse(text: &str, file: &Path) -> Result<RawConfig, ConfigError> {
    let deserializer = serde_yaml::Deserializer::from_str(text);
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        let location = inner.location().map(|l| (l.line(), l.column()));
        let mut message = inner.to_string();
        if let Some(at) = message.rfind(" at line ") {
            message.truncate(at);
        }
        let message = strip_path_prefix(&message, &key).to_owned();
        ConfigError {
            file: file.to_owned(),
            location,
            key,
            message,
        }
    })
}

/// yaml_serde prefixes its messages with the path of the enclosing node; the error
/// already names the (more precise) key, so drop that prefix.
fn strip_path_prefix<'a>(message: &'a str, key: &str) -> &'a str {
    let boundaries = key
        .char_indices()
        .filter(|(_, c)| matches!(c, '.' | '['))
        .map(|(i, _)| i)
        .chain([key.len()]);
    for end in boundaries {
        if let Some(rest) = message
            .strip_prefix(&key[..end])
            .and_then(|r| r.strip_prefix(": "))
        {
            return rest;
        }
    }
    message
}
