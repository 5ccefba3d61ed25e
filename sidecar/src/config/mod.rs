//! The config file: read, validated in two stages (raw YAML, then domain types), and
//! every error reported as `FILE:LINE:COLUMN: key.path: what is wrong`.

mod locate;
pub(crate) mod profiles;
mod raw;
mod values;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gitgate_policy::Policies;
use gitgate_policy::{Policy, ProfileError, RawPolicy};
use gitgate_proxy::audit::AuditTarget;
use gitgate_proxy::token::{AppConfig, SessionFiles, UserConfig};
use gitgate_proxy::{Limits, ListenTls, Settings, TokenConfig, UpstreamSettings};

pub use profiles::{ProfileRules, Profiles};
pub use raw::RawConfig;

/// The most `limits.maxHeldPushes` may be: half the runtime's blocking threads.
const MAX_HELD_PUSHES: usize = 256;

/// The most `limits.maxHeaderBytes` may be: hyper's largest read buffer (8 KiB + 100 ×
/// 4 KiB), which bounds a request head whatever the setting.
const MAX_HEADER_BYTES: usize = 8192 + 4096 * 100;

/// The most `limits.maxHeaders` may be.
const MAX_HEADERS: usize = 1000;

/// Sets one client's share of a limit of `whole` (bytes or a count, `shown` as the error
/// writes it): as configured, which must not exceed the whole, or unset, the default or
/// the whole, whichever is less. `keys` are the share's key and the whole's, for the
/// error.
fn share<T: Copy + Ord>(
    slot: &mut T,
    configured: Option<T>,
    (whole, shown): (T, &dyn std::fmt::Display),
    (key, whole_key): (&'static str, &'static str),
) -> Result<(), (&'static str, String)> {
    match configured {
        Some(n) if n > whole => Err((key, format!("must be at most {whole_key} ({shown})"))),
        Some(n) => {
            *slot = n;
            Ok(())
        }
        None => {
            *slot = (*slot).min(whole);
            Ok(())
        }
    }
}

/// A config error, displayed the way editors and CI logs link to it.
#[derive(Debug, Clone)]
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
    /// The compiled top-level policy (used only without profiles).
    pub policy: Policy,
    /// The sandbox profiles, when `profiles` or `profilesDir` is set.
    pub profiles: Option<Profiles>,
    /// Where credentials come from.
    pub tokens: TokenConfig,
    /// The admin listener, if any.
    pub admin: Option<std::net::SocketAddr>,
    /// The HTTPS proxy listener, if any.
    pub listen_tls: Option<std::net::SocketAddr>,
}

impl Config {
    /// [`Config::load`] for the commands that use no credential (`env`, `explain`, `ca
    /// print`): the App key and `clientSecretFile` are not read, nor is the signer program
    /// looked for, so they run where those are not (a workstation, a CI job checking a
    /// policy change). `tokens` is then [`TokenConfig::None`] for an App.
    pub fn load_without_credentials(file: &Path) -> Result<Self, ConfigError> {
        values::without_credentials(|| Self::load(file))
    }

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
        let blank = |line: &str| {
            let line = line.trim();
            line.is_empty() || line.starts_with('#') || line == "---"
        };
        if text.lines().all(blank) {
            // A truncated file (an editor crash, a bad ConfigMap write) would otherwise
            // deny every request.
            return Err(ConfigError {
                file: file.to_owned(),
                location: Some((1, 1)),
                key: String::new(),
                message: "the config file is empty (or only comments); write at least `policy:` (see the README's example)".into(),
            });
        }
        let dir = file
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut raw: RawConfig = values::with_base_dir(dir, || parse(text, file))?;
        let in_file = |key: String, message: String| ConfigError {
            location: locate::locate(text, &key, 0).map(|(at, _)| at),
            file: file.to_owned(),
            key,
            message,
        };
        read_allowed_signers(&mut raw.policy, dir)
            .map_err(|m| in_file("policy.requireSignedCommits.allowedSignersFile".into(), m))?;
        for (name, profile) in raw.profiles.iter_mut().flatten() {
            read_allowed_signers(&mut profile.policy, dir).map_err(|m| {
                in_file(
                    format!("profiles.{name}.policy.requireSignedCommits.allowedSignersFile"),
                    m,
                )
            })?;
        }
        Self::compile(raw, file, dir).map_err(|mut error| {
            // Found after parsing: point at the key in the text.
            if error.location.is_none() {
                error.location = locate::locate(text, &error.key, 0).map(|(at, _)| at);
            }
            error
        })
    }

    /// The settings a running gitgate applies only when it starts, each with its value,
    /// to tell which of them an edit changed.
    pub fn restart_only(&self) -> Vec<(&'static str, String)> {
        let s = &self.settings;
        vec![
            ("listen", s.listen.to_string()),
            ("listenTls", self.listen_tls_summary()),
            ("admin", format!("{:?}", self.admin)),
            ("ca", format!("{:?} {:?}", self.ca_cert, self.ca_key)),
            (
                "github",
                format!(
                    "{:?} {} {}",
                    self.tokens,
                    self.credential_identity(),
                    self.hosts()
                ),
            ),
            ("upstream", {
                let u = &s.upstream;
                let resolve: std::collections::BTreeMap<_, _> = u.resolve.iter().collect();
                format!(
                    "{resolve:?} {:?} {:?} {:?}",
                    u.extra_roots, u.connect_timeout, u.pool_idle_timeout
                )
            }),
            ("limits", format!("{:?}", s.limits)),
            ("audit", format!("{:?}", s.audit)),
            ("metrics", s.max_profile_labels.to_string()),
        ]
    }

    /// The restart-only settings the policy and profiles are compiled against (the hosts
    /// gitgate intercepts, the HTTPS listener's client CA): a reload that changes them
    /// cannot apply its policy to the running proxy.
    pub fn policy_inputs(&self) -> Vec<(&'static str, String)> {
        vec![
            ("github", self.hosts()),
            ("listenTls", self.listen_tls_summary()),
        ]
    }

    /// What tells one credential from another where the settings name only its file:
    /// the App key's or the OAuth client secret's fingerprint, if any.
    fn credential_identity(&self) -> String {
        match &self.tokens {
            TokenConfig::App(app) => app.signer.identity(),
            TokenConfig::User(user) => user
                .client_secret
                .as_ref()
                .map(|secret| gitgate_proxy::fingerprint(secret.expose().as_bytes()))
                .unwrap_or_default(),
            _ => String::new(),
        }
    }

    /// The git and API hosts.
    fn hosts(&self) -> String {
        format!("{} {}", self.settings.github_host, self.settings.api_url)
    }

    /// `listenTls`, with its certificate's names and `clientCa`.
    fn listen_tls_summary(&self) -> String {
        format!("{:?} {:?}", self.listen_tls, self.settings.listen_tls)
    }

    /// An error about `key` of this config, located in its file when the key is there.
    pub(crate) fn error_at(&self, key: &str, message: String) -> ConfigError {
        let text = std::fs::read_to_string(&self.file).unwrap_or_default();
        ConfigError {
            file: self.file.clone(),
            location: locate::locate(&text, key, 0).map(|(at, _)| at),
            key: key.to_owned(),
            message,
        }
    }

    /// The policies in force (every profile's that loaded, or the one `policy`), and
    /// the profile files left out.
    pub fn policies(&self) -> (Policies, Vec<profiles::Rejected>) {
        match &self.profiles {
            Some(profiles) => profiles.policies(),
            None => (
                Policies::Single(std::sync::Arc::new(self.policy.clone())),
                Vec::new(),
            ),
        }
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
        let set = |slot: &mut Duration, value: Option<Duration>| {
            if let Some(v) = value {
                *slot = v;
            }
        };
        let timeout = |t: Option<values::Timeout>| t.map(|t| t.0);
        set(
            &mut limits.header_read_timeout,
            timeout(l.header_read_timeout),
        );
        set(
            &mut limits.tls_handshake_timeout,
            timeout(l.tls_handshake_timeout),
        );
        set(
            &mut limits.response_header_timeout,
            timeout(l.response_header_timeout),
        );
        set(&mut limits.body_idle_timeout, timeout(l.body_idle_timeout));
        set(&mut limits.shutdown_grace, l.shutdown_grace.map(|d| d.0));
        set(&mut limits.idle_timeout, timeout(l.idle_timeout));
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
        share(
            &mut limits.max_tunnels_per_client,
            l.max_tunnels_per_client.map(|n| n.0),
            (limits.max_tunnels, &limits.max_tunnels),
            ("limits.maxTunnelsPerClient", "limits.maxTunnels"),
        )
        .map_err(|(key, message)| error(key, message))?;
        count(&mut limits.max_header_bytes, l.max_header_bytes);
        count(&mut limits.max_headers, l.max_headers);
        // hyper reads a request head into a buffer of at most this many bytes, and sets
        // aside room for every allowed header on each request it parses.
        if limits.max_header_bytes > MAX_HEADER_BYTES {
            return Err(error(
                "limits.maxHeaderBytes",
                format!(
                    "must be at most {MAX_HEADER_BYTES}: gitgate's HTTP/1 server (hyper) reads a request head into a buffer of that size"
                ),
            ));
        }
        if limits.max_headers > MAX_HEADERS {
            return Err(error(
                "limits.maxHeaders",
                format!(
                    "must be at most {MAX_HEADERS}: room for every allowed header is set aside on each request parsed"
                ),
            ));
        }
        count(&mut limits.max_push_header_bytes, l.max_push_header_bytes);
        count(&mut limits.max_push_commands, l.max_push_commands);
        count(&mut limits.max_held_pushes, l.max_held_pushes);
        // Each held push keeps one of the runtime's 512 blocking threads; the rest must stay
        // free for DNS lookups and the spool's file writes.
        if limits.max_held_pushes > MAX_HELD_PUSHES {
            return Err(error(
                "limits.maxHeldPushes",
                format!(
                    "must be at most {MAX_HELD_PUSHES}: each held push keeps one of gitgate's 512 blocking threads, and the rest serve DNS lookups and held pushes' file writes"
                ),
            ));
        }
        share(
            &mut limits.max_held_pushes_per_client,
            l.max_held_pushes_per_client.map(|n| n.0),
            (limits.max_held_pushes, &limits.max_held_pushes),
            ("limits.maxHeldPushesPerClient", "limits.maxHeldPushes"),
        )
        .map_err(|(key, message)| error(key, message))?;
        if let Some(bytes) = l.max_drain_bytes {
            limits.max_drain_bytes = bytes.0;
        }
        if let Some(bytes) = l.max_held_push_bytes {
            limits.max_held_push_bytes = bytes.0;
        }
        share(
            &mut limits.max_held_push_bytes_per_client,
            l.max_held_push_bytes_per_client.map(|b| b.0),
            (
                limits.max_held_push_bytes,
                &gitgate_policy::ByteSize(limits.max_held_push_bytes),
            ),
            (
                "limits.maxHeldPushBytesPerClient",
                "limits.maxHeldPushBytes",
            ),
        )
        .map_err(|(key, message)| error(key, message))?;
        if let Some(bytes) = l.max_push_check_bytes {
            limits.max_push_check_bytes = bytes.0;
        }
        share(
            &mut limits.max_push_check_bytes_per_client,
            l.max_push_check_bytes_per_client.map(|b| b.0),
            (
                limits.max_push_check_bytes,
                &gitgate_policy::ByteSize(limits.max_push_check_bytes),
            ),
            (
                "limits.maxPushCheckBytesPerClient",
                "limits.maxPushCheckBytes",
            ),
        )
        .map_err(|(key, message)| error(key, message))?;
        if let Some(bytes) = l.max_buffered_body_bytes {
            limits.max_buffered_body_bytes = bytes.0;
        }
        if let Some(bytes) = l.max_buffered_body_bytes_per_client {
            limits.max_buffered_body_bytes_per_client = bytes.0;
        }
        // The largest body read whole is a REST write's 8 MiB, and a push's command list
        // is held twice (as sent, and parsed): below that, some requests could never pass.
        let push_header = 2 * limits.max_push_header_bytes as u64;
        let largest = (8 << 20).max(push_header);
        if limits.max_buffered_body_bytes_per_client < largest {
            return Err(error(
                "limits.maxBufferedBodyBytesPerClient",
                format!(
                    "must be at least {}: the largest request body gitgate reads whole (8MiB, a REST write) or twice limits.maxPushHeaderBytes",
                    gitgate_policy::ByteSize(largest)
                ),
            ));
        }
        if limits.max_buffered_body_bytes < limits.max_buffered_body_bytes_per_client {
            return Err(error(
                "limits.maxBufferedBodyBytes",
                "must be at least limits.maxBufferedBodyBytesPerClient (16MiB unless set)".into(),
            ));
        }
        if let Some(hold) = l.push_hold {
            limits.push_hold = hold;
        }
        let client_ca_set = raw.client_ca.is_some();
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
                Some(path) => {
                    let dir = path.0.parent().filter(|d| !d.as_os_str().is_empty());
                    if let Some(dir) = dir.filter(|d| !d.is_dir()) {
                        return Err(error(
                            "audit.file",
                            format!(
                                "the directory {} of {} does not exist; create it, or choose another path",
                                dir.display(),
                                path.0.display()
                            ),
                        ));
                    }
                    AuditTarget::File(path.0)
                }
                None => AuditTarget::Stdout,
            },
            listen_tls: raw.listen_tls.map(|addr| {
                let mut names = vec![addr.ip().to_string(), "localhost".to_owned()];
                names.extend(raw.listen_tls_names.iter().cloned());
                ListenTls {
                    names,
                    client_ca: raw.client_ca.map(|ca| ca.0).unwrap_or_default(),
                }
            }),
            max_profile_labels: raw
                .metrics
                .max_profile_labels
                .unwrap_or(gitgate_proxy::DEFAULT_PROFILE_LABELS),
        };
        if settings.listen_tls.is_none() && client_ca_set {
            return Err(error(
                "clientCa",
                "client certificates are presented to the HTTPS proxy listener; set listenTls too"
                    .into(),
            ));
        }
        let rules = ProfileRules {
            github_hosts: settings.intercepted_hosts(),
            mtls: settings
                .listen_tls
                .as_ref()
                .is_some_and(|tls| !tls.client_ca.is_empty()),
        };
        let profiles = if raw.profiles.is_some() || raw.profiles_dir.is_some() {
            let inline = raw
                .profiles
                .iter()
                .flatten()
                .map(|(name, profile)| profiles::compile(name.clone(), profile, &rules, file))
                .collect::<Result<Vec<_>, _>>()?;
            let dir = raw.profiles_dir.map(|d| d.0);
            let files = match &dir {
                Some(dir) => profiles::load_dir(dir, &rules)?,
                None => Vec::new(),
            };
            let profiles = Profiles {
                inline,
                dir,
                files,
                rules,
            };
            // Conflicts among the inline profiles are the config file's error.
            gitgate_policy::ProfileSet::new(profiles.inline.iter().cloned()).map_err(|e| {
                let key = match &e {
                    ProfileError::Conflict { second, key, .. } if !key.is_empty() => {
                        format!("profiles.{second}.{key}")
                    }
                    _ => "profiles".to_owned(),
                };
                error(&key, e.to_string())
            })?;
            Some(profiles)
        } else {
            None
        };
        let policy = Policy::compile(&raw.policy, &settings.intercepted_hosts()).map_err(|e| {
            let key = e
                .key()
                .map_or("policy".into(), |key| format!("policy.{key}"));
            error(&key, e.to_string())
        })?;
        let tokens = match (raw.github.app, raw.github.token, raw.github.user) {
            (_, _, Some(user)) => {
                let sessions = match (user.session_file, user.session_key_file) {
                    (None, None) => None,
                    (Some(file), Some(key)) => Some(SessionFiles {
                        file: file.0,
                        key_file: key.0,
                    }),
                    (Some(_), None) => return Err(error(
                        "github.user.sessionFile",
                        "needs github.user.sessionKeyFile, the key that seals it (make one with `head -c 32 /dev/urandom | base64 > FILE; chmod 600 FILE`)".into(),
                    )),
                    (None, Some(_)) => return Err(error(
                        "github.user.sessionKeyFile",
                        "seals github.user.sessionFile, which is not set: set both for sessions that survive a restart, or neither".into(),
                    )),
                };
                TokenConfig::User(UserConfig {
                    client_id: user.client_id.0,
                    client_secret: user.client_secret_file.and_then(|s| s.0),
                    refresh_margin: user
                        .refresh_margin
                        .map_or(Duration::from_secs(1800), |d| d.0),
                    sessions,
                })
            }
            (Some(app), _, _) => match app.signer {
                // Read without credentials: for commands that use none.
                None => TokenConfig::None,
                Some(signer) => TokenConfig::App(Box::new(AppConfig {
                    id: app.id.0,
                    signer,
                    installations: app.installations.into_iter().collect(),
                    refresh_margin: app.refresh_margin.map_or(Duration::from_secs(600), |d| d.0),
                })),
            },
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
            listen_tls: raw.listen_tls,
            profiles,
        })
    }
}

/// Deserializes with the key path tracked, and turns errors into [`ConfigError`]s.
fn parse<T: serde::de::DeserializeOwned>(text: &str, file: &Path) -> Result<T, ConfigError> {
    let deserializer = serde_yaml::Deserializer::from_str(text);
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let mut key = e.path().to_string();
        let inner = e.into_inner();
        let mut location = inner.location().map(|l| (l.line(), l.column()));
        let mut message = inner.to_string();
        if let Some(at) = message.rfind(" at line ") {
            message.truncate(at);
        }
        let mut message = strip_path_prefix(&message, &key).to_owned();
        // The parser places some errors at the start of the enclosing mapping: a value
        // checked as a whole (sizes, patterns), or a key given twice.
        let duplicate = message
            .strip_prefix("duplicate field `")
            .and_then(|rest| rest.strip_suffix('`'))
            .map(str::to_owned);
        if let Some(name) = duplicate {
            key = match key.as_str() {
                "" | "." => name.clone(),
                parent => format!("{parent}.{name}"),
            };
            message = format!("{name} is given twice; keep one");
            location = locate::locate(text, &key, 1).map(|(at, _)| at).or(location);
        } else if let Some((at, true)) = locate::locate(text, &key, 0)
            && location.is_none_or(|(line, _)| at.0 > line)
        {
            location = Some(at);
        }
        if key == "?" {
            key.clear();
        }
        let line = location.and_then(|(line, _)| text.lines().nth(line.saturating_sub(1)));
        let message = plainer(message, &key, line.unwrap_or_default());
        ConfigError {
            file: file.to_owned(),
            location,
            key,
            message,
        }
    })
}

/// The parser's message, in words that say what to write instead where it speaks of
/// Rust types or YAML internals.
fn plainer(message: String, key: &str, line: &str) -> String {
    if message.contains("expected struct RawConfig") {
        return "the file must be a mapping of settings (`key: value` lines), not a list or a single value".into();
    }
    if message.starts_with("unknown field `<<`") {
        return "YAML merge keys (`<<: *anchor`) are not supported; write the keys out".into();
    }
    if matches!(key, "listen" | "listenTls" | "admin") && message.contains("socket address") {
        return format!("{message}: expected IP:PORT, e.g. 0.0.0.0:3128");
    }
    if message.contains("cannot start any token") && line.contains('\t') {
        return format!("{message}: a tab character; YAML indents with spaces only");
    }
    message
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

/// Reads `requireSignedCommits.allowedSignersFile` (relative to `dir`) into the raw policy,
/// since the policy crate reads no files. The file is read again whenever the config or
/// profile file that names it is reloaded.
pub(crate) fn read_allowed_signers(policy: &mut RawPolicy, dir: &Path) -> Result<(), String> {
    let Some(signers) = &mut policy.require_signed_commits else {
        return Ok(());
    };
    let Some(path) = &mut signers.allowed_signers_file else {
        return Ok(());
    };
    if path.is_relative() {
        *path = dir.join(&*path);
    }
    let text = std::fs::read_to_string(&*path).map_err(|e| {
        format!(
            "cannot read the allowed signers file {}: {e}",
            path.display()
        )
    })?;
    signers.allowed_signers = Some(text);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_value_under_a_key_with_brackets_is_located() {
        let text = "policy: {allowedRepos: [a/b]}\nupstream:\n  resolve:\n    \"x[]]\": nope\n";
        let error = Config::from_str(text, Path::new("/nonexistent/gitgate.yaml")).unwrap_err();
        assert!(
            error.to_string().starts_with("/nonexistent/gitgate.yaml:"),
            "{error}"
        );
        assert!(error.to_string().contains("upstream.resolve"), "{error}");
    }

    #[test]
    fn a_reload_sees_the_https_listeners_names_as_a_restart_only_change() {
        let config = |names: &str| {
            let text = format!(
                "listenTls: 127.0.0.1:3129\nlistenTlsNames: [{names}]\npolicy: {{allowedRepos: [a/b]}}\n"
            );
            Config::from_str(&text, Path::new("/nonexistent/gitgate.yaml")).unwrap()
        };
        let (a, b) = (
            config("a.internal").restart_only(),
            config("b.internal").restart_only(),
        );
        let changed: Vec<&str> = a
            .iter()
            .zip(&b)
            .filter(|(x, y)| x != y)
            .map(|(x, _)| x.0)
            .collect();
        assert_eq!(changed, ["listenTls"]);
    }
}
