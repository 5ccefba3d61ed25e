//! The config file as written (`deny_unknown_fields` everywhere, camelCase keys).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use gitgate_policy::{ProfileName, RawPolicy, RawProfile};
use serde::Deserialize;
use serde::de::{self, Deserializer};

use gitgate_proxy::token::{CommandSigner, Signer};

use super::values::{
    ApiUrl, AppKeyFile, ConfigPath, HumanDuration, RootsFile, SecretFile, Timeout, parse_api_url,
    reads_credentials,
};

/// Deserializes a present value directly (not through `Option`'s visitor), so errors
/// inside it keep the value's own line and column.
fn some<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawConfig {
    /// The proxy port.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// gitgate's CA.
    #[serde(default, deserialize_with = "some")]
    pub ca: Option<RawCa>,
    /// The GitHub side.
    #[serde(default)]
    pub github: RawGithub,
    /// How upstreams are reached.
    #[serde(default)]
    pub upstream: RawUpstream,
    /// What sandboxes may do.
    #[serde(default)]
    pub policy: RawPolicy,
    /// Timeouts and sizes.
    #[serde(default)]
    pub limits: RawLimits,
    /// Where audit records go (default: standard output).
    #[serde(default)]
    pub audit: RawAudit,
    /// The admin listener (`/healthz`, `/readyz`, `/metrics`); off unless set.
    #[serde(default, deserialize_with = "some")]
    pub admin: Option<SocketAddr>,
    /// Sandbox profiles by name; with them (or `profilesDir`), `policy` is not used.
    #[serde(default, deserialize_with = "some")]
    pub profiles: Option<BTreeMap<ProfileName, RawProfile>>,
    /// A directory of profiles, one `NAME.yaml` each.
    #[serde(default, deserialize_with = "some")]
    pub profiles_dir: Option<ConfigPath>,
    /// An HTTPS proxy listener, for client-certificate identities.
    #[serde(default, deserialize_with = "some")]
    pub listen_tls: Option<SocketAddr>,
    /// Extra names for the `listenTls` certificate (its address and `localhost` are
    /// always in it).
    #[serde(default)]
    pub listen_tls_names: Vec<String>,
    /// The CA that signs sandbox client certificates (needs `listenTls`).
    #[serde(default, deserialize_with = "some")]
    pub client_ca: Option<RootsFile>,
    /// Metrics settings.
    #[serde(default)]
    pub metrics: RawMetrics,
}

/// `metrics:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawMetrics {
    /// At most this many profiles get their own `profile` label (default 100).
    #[serde(default, deserialize_with = "some")]
    pub max_profile_labels: Option<usize>,
}

/// `audit:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    /// Append records to this file instead of standard output.
    #[serde(default, deserialize_with = "some")]
    pub file: Option<ConfigPath>,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 3128))
}

/// `ca: {cert, key}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCa {
    /// The CA certificate (PEM).
    pub cert: ConfigPath,
    /// The CA private key (PKCS#8 PEM).
    pub key: ConfigPath,
}

/// `github:`; at most one of `app`, `token` and `user`.
#[derive(Debug)]
pub struct RawGithub {
    /// The git host.
    pub host: String,
    /// The API base URL.
    pub api_url: ApiUrl,
    /// A GitHub App token source.
    pub app: Option<RawApp>,
    /// A static token source.
    pub token: Option<RawToken>,
    /// A person's token from the device flow.
    pub user: Option<RawUser>,
}

impl Default for RawGithub {
    fn default() -> Self {
        Self {
            host: "github.com".into(),
            api_url: parse_api_url("https://api.github.com").unwrap_or_else(|_| unreachable!()),
            app: None,
            token: None,
            user: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct GithubFields {
    #[serde(default, deserialize_with = "some")]
    host: Option<String>,
    #[serde(default, deserialize_with = "some")]
    api_url: Option<ApiUrl>,
    #[serde(default, deserialize_with = "some")]
    app: Option<RawApp>,
    #[serde(default, deserialize_with = "some")]
    token: Option<RawToken>,
    #[serde(default, deserialize_with = "some")]
    user: Option<RawUser>,
}

impl<'de> Deserialize<'de> for RawGithub {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let fields = GithubFields::deserialize(d)?;
        let sources = [
            fields.app.is_some(),
            fields.token.is_some(),
            fields.user.is_some(),
        ];
        if sources.into_iter().filter(|set| *set).count() > 1 {
            return Err(de::Error::custom(
                "set one of github.app, github.token or github.user, not several",
            ));
        }
        let defaults = Self::default();
        let host = match fields.host {
            Some(host) => gitgate_policy::HostName::parse(&host)
                .map_err(|e| de::Error::custom(format!("github.host {host:?}: {e}")))?
                .to_string(),
            None => defaults.host,
        };
        Ok(Self {
            host,
            api_url: fields.api_url.unwrap_or(defaults.api_url),
            app: fields.app,
            token: fields.token,
            user: fields.user,
        })
    }
}

/// `github.app`.
#[derive(Debug)]
pub struct RawApp {
    /// App ID or Client ID.
    pub id: AppId,
    /// What signs the JWTs: `privateKeyFile` or `signer`; `None` when the key file was
    /// not read ([`super::values::without_credentials`]).
    pub signer: Option<Signer>,
    /// Installation ids by owner, overriding the lookup.
    pub installations: BTreeMap<String, u64>,
    /// Refresh tokens when less than this remains (default 10m).
    pub refresh_margin: Option<HumanDuration>,
}

impl<'de> Deserialize<'de> for RawApp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields, rename_all = "camelCase")]
        struct Fields {
            id: AppId,
            #[serde(default, deserialize_with = "some")]
            private_key_file: Option<AppKeyFile>,
            #[serde(default, deserialize_with = "some")]
            signer: Option<RawSigner>,
            #[serde(default)]
            installations: BTreeMap<String, u64>,
            #[serde(default, deserialize_with = "some")]
            refresh_margin: Option<HumanDuration>,
        }
        let fields = Fields::deserialize(d)?;
        let signer = match (fields.private_key_file, fields.signer) {
            (Some(AppKeyFile(key)), None) => key.map(Signer::Key),
            (None, Some(RawSigner(signer))) => Some(signer),
            _ => {
                return Err(de::Error::custom(
                    "github.app takes exactly one of `privateKeyFile: PATH`, `signer: {command: [...]}` or `signer: {awsKms: {keyId: ..., region: ...}}`",
                ));
            }
        };
        Ok(Self {
            id: fields.id,
            signer,
            installations: fields.installations,
            refresh_margin: fields.refresh_margin,
        })
    }
}

/// `github.app.signer`: `{command: [PROGRAM, ARG...], timeout: 10s}` or
/// `{awsKms: {keyId: ..., region: ...}, timeout: 10s}`.
#[derive(Debug)]
pub(super) struct RawSigner(Signer);

/// How long a signer may take when `timeout` is not set.
const SIGNER_TIMEOUT: Duration = Duration::from_secs(10);

impl<'de> Deserialize<'de> for RawSigner {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields, rename_all = "camelCase")]
        struct Fields {
            #[serde(default, deserialize_with = "some")]
            command: Option<Vec<String>>,
            #[serde(default, deserialize_with = "some")]
            aws_kms: Option<RawKms>,
            #[serde(default, deserialize_with = "some")]
            timeout: Option<Timeout>,
        }
        let fields = Fields::deserialize(d)?;
        let timeout = fields.timeout.map_or(SIGNER_TIMEOUT, |t| t.0);
        match (fields.command, fields.aws_kms) {
            (Some(argv), None)
                if reads_credentials()
                    && argv.first().is_some_and(|p| !p.is_empty() && !is_program(p)) =>
            {
                Err(de::Error::custom(format!(
                    "signer.command program {:?} is not found{}; give its absolute path, or install it",
                    argv[0],
                    if argv[0].contains('/') { "" } else { " on PATH" }
                )))
            }
            (Some(argv), None) => CommandSigner::new(argv, timeout)
                .map(|c| Self(Signer::Command(c)))
                .ok_or_else(|| {
                    de::Error::custom(
                        "signer.command needs the program and its arguments, e.g. [\"/usr/local/bin/sign-jwt\", \"--key\", \"app\"]",
                    )
                }),
            (None, Some(kms)) => kms_signer(kms, timeout).map(Self).map_err(de::Error::custom),
            _ => Err(de::Error::custom(
                "signer takes exactly one of `command: [PROGRAM, ARG...]` or `awsKms: {keyId: ..., region: ...}`",
            )),
        }
    }
}

/// `github.app.signer.awsKms`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawKms {
    /// Key id, alias or ARN.
    key_id: String,
    /// The AWS region.
    region: String,
}

#[cfg(feature = "aws-kms")]
fn kms_signer(kms: RawKms, timeout: Duration) -> Result<Signer, String> {
    if kms.key_id.trim().is_empty() || kms.region.trim().is_empty() {
        return Err("awsKms needs a keyId and a region".into());
    }
    Ok(Signer::AwsKms(gitgate_proxy::token::KmsSigner::new(
        kms.key_id, kms.region, timeout,
    )))
}

#[cfg(not(feature = "aws-kms"))]
fn kms_signer(kms: RawKms, _: Duration) -> Result<Signer, String> {
    Err(format!(
        "cannot use AWS KMS key {} in {}: this gitgate was built without AWS KMS support; build it with `cargo build --release -p gitgate --features aws-kms`, or use `signer: {{command: [...]}}` with `aws kms sign`",
        kms.key_id, kms.region
    ))
}

/// An App ID (number) or Client ID (string).
#[derive(Debug, Clone)]
pub struct AppId(pub String);

impl<'de> Deserialize<'de> for AppId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        fn invalid<E: de::Error>(shown: impl std::fmt::Display) -> E {
            E::custom(format!(
                "invalid App id {shown}: expected the numeric App ID (e.g. 123456) or the Client ID (e.g. Iv23li...)"
            ))
        }
        impl de::Visitor<'_> for Visitor {
            type Value = AppId;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("the numeric App ID or the Client ID")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<AppId, E> {
                Ok(AppId(n.to_string()))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<AppId, E> {
                u64::try_from(n).map_or_else(|_| Err(invalid(n)), |n| self.visit_u64(n))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<AppId, E> {
                Err(invalid(n))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<AppId, E> {
                let valid = !s.trim().is_empty()
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-');
                match valid {
                    true => Ok(AppId(s.to_owned())),
                    false => Err(invalid(format_args!("{s:?}"))),
                }
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// `github.user`: act for a person through the device flow.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawUser {
    /// The App's Client ID.
    pub client_id: AppId,
    /// The App's client secret, only for revoking the token on logout.
    #[serde(default, deserialize_with = "some")]
    pub(super) client_secret_file: Option<SecretFile>,
    /// Renew the token when less than this remains (default 30m).
    #[serde(default, deserialize_with = "some")]
    pub refresh_margin: Option<HumanDuration>,
    /// Where the sessions are sealed so that a restart keeps them.
    #[serde(default, deserialize_with = "some")]
    pub(super) session_file: Option<ConfigPath>,
    /// The key that seals `sessionFile` (read by `run`, `check` and `doctor` only).
    #[serde(default, deserialize_with = "some")]
    pub(super) session_key_file: Option<ConfigPath>,
}

/// `github.token`: `{file: PATH}` or `{env: NAME}`.
#[derive(Debug)]
pub enum RawToken {
    /// A file holding the token, re-read when it changes.
    File(ConfigPath),
    /// An environment variable holding the token.
    Env(String),
}

impl<'de> Deserialize<'de> for RawToken {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Fields {
            #[serde(default, deserialize_with = "some")]
            file: Option<ConfigPath>,
            #[serde(default, deserialize_with = "some")]
            env: Option<String>,
        }
        match Fields::deserialize(d)? {
            Fields {
                file: Some(file),
                env: None,
            } => Ok(Self::File(file)),
            Fields {
                file: None,
                env: Some(env),
            } if !env.is_empty() => Ok(Self::Env(env)),
            _ => Err(de::Error::custom(
                "github.token takes exactly one of `file: PATH` or `env: NAME`",
            )),
        }
    }
}

/// `upstream:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawUpstream {
    /// Host → address overrides for every upstream connection.
    #[serde(default)]
    pub resolve: BTreeMap<String, SocketAddr>,
    /// Extra trust anchors (PEM), besides the public web PKI.
    #[serde(default, deserialize_with = "some")]
    pub ca_file: Option<RootsFile>,
    /// TCP connect timeout (default 10s).
    #[serde(default, deserialize_with = "some")]
    pub connect_timeout: Option<Timeout>,
}

/// A limit: a whole number from 1 to [`Count::MAX`].
#[derive(Debug, Clone, Copy)]
pub struct Count(pub usize);

impl Count {
    /// The largest limit (1 GiB for the byte limits written as plain numbers): far above
    /// any count a machine holds, low enough that no sum or double of limits overflows
    /// and every semaphore can hold it.
    pub const MAX: usize = 1 << 30;
}

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Count;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a whole number from 1 to 1073741824")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Count, E> {
                match usize::try_from(v) {
                    Ok(n @ 1..=Count::MAX) => Ok(Count(n)),
                    _ => Err(E::custom("must be a whole number from 1 to 1073741824")),
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Count, E> {
                u64::try_from(v)
                    .map_err(|_| E::custom("must be a whole number from 1 to 1073741824"))
                    .and_then(|v| self.visit_u64(v))
            }
        }
        d.deserialize_u64(Visitor)
    }
}

/// `limits:`; every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawLimits {
    /// Request head deadline.
    #[serde(default, deserialize_with = "some")]
    pub header_read_timeout: Option<Timeout>,
    /// Client TLS handshake deadline.
    #[serde(default, deserialize_with = "some")]
    pub tls_handshake_timeout: Option<Timeout>,
    /// Upstream response head deadline.
    #[serde(default, deserialize_with = "some")]
    pub response_header_timeout: Option<Timeout>,
    /// Request body idle deadline.
    #[serde(default, deserialize_with = "some")]
    pub body_idle_timeout: Option<Timeout>,
    /// Shutdown grace period.
    #[serde(default, deserialize_with = "some")]
    pub shutdown_grace: Option<HumanDuration>,
    /// Most bytes of a denied push read so git can show the reason.
    #[serde(default, deserialize_with = "some")]
    pub max_drain_bytes: Option<gitgate_policy::ByteSize>,
    /// Most bytes of pushes held on disk at once, all clients together.
    #[serde(default, deserialize_with = "some")]
    pub max_held_push_bytes: Option<gitgate_policy::ByteSize>,
    /// The share of it one client address may hold.
    #[serde(default, deserialize_with = "some")]
    pub max_held_push_bytes_per_client: Option<gitgate_policy::ByteSize>,
    /// Most pushes held at once, all clients together.
    #[serde(default, deserialize_with = "some")]
    pub max_held_pushes: Option<Count>,
    /// The share of it one client address may hold.
    #[serde(default, deserialize_with = "some")]
    pub max_held_pushes_per_client: Option<Count>,
    /// Most memory the checks of held pushes may hold, all clients together.
    #[serde(default, deserialize_with = "some")]
    pub max_push_check_bytes: Option<gitgate_policy::ByteSize>,
    /// The share of it one client address may hold.
    #[serde(default, deserialize_with = "some")]
    pub max_push_check_bytes_per_client: Option<gitgate_policy::ByteSize>,
    /// Most bytes of request bodies held in memory to decide on, all clients together.
    #[serde(default, deserialize_with = "some")]
    pub max_buffered_body_bytes: Option<gitgate_policy::ByteSize>,
    /// The share of it one client address may hold.
    #[serde(default, deserialize_with = "some")]
    pub max_buffered_body_bytes_per_client: Option<gitgate_policy::ByteSize>,
    /// What a push that a content rule applies to holds back: `pack` or `trailer`.
    #[serde(default, deserialize_with = "some")]
    pub push_hold: Option<gitgate_proxy::PushHold>,
    /// Close connections idle this long.
    #[serde(default, deserialize_with = "some")]
    pub idle_timeout: Option<Timeout>,
    /// Most client connections at once.
    #[serde(default, deserialize_with = "some")]
    pub max_connections: Option<Count>,
    /// Most client connections at once per client address.
    #[serde(default, deserialize_with = "some")]
    pub max_connections_per_client: Option<Count>,
    /// Most open tunnels.
    #[serde(default, deserialize_with = "some")]
    pub max_tunnels: Option<Count>,
    /// The share of them one client address may hold.
    #[serde(default, deserialize_with = "some")]
    pub max_tunnels_per_client: Option<Count>,
    /// Most bytes of a request head.
    #[serde(default, deserialize_with = "some")]
    pub max_header_bytes: Option<Count>,
    /// Most header fields in a request.
    #[serde(default, deserialize_with = "some")]
    pub max_headers: Option<Count>,
    /// Most bytes of a push read before its pack.
    #[serde(default, deserialize_with = "some")]
    pub max_push_header_bytes: Option<Count>,
    /// Most ref updates in one push.
    #[serde(default, deserialize_with = "some")]
    pub max_push_commands: Option<Count>,
}

/// Whether `program` names a file that can be run: a path, or a name on `PATH`.
fn is_program(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let runnable = |path: &std::path::Path| {
        std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        return runnable(std::path::Path::new(program));
    }
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| runnable(&dir.join(program))))
}
