//! Config values that validate themselves while the YAML is read, so every error
//! carries the line and column of the offending value.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer};

thread_local! {
    /// The directory relative paths in the file being read are resolved against.
    static BASE_DIR: RefCell<PathBuf> = RefCell::new(PathBuf::from("."));
    /// Whether credentials are read: the App key and `clientSecretFile` (and the signer
    /// program looked for).
    static CREDENTIALS: Cell<bool> = const { Cell::new(true) };
}

/// Runs `f` without reading credentials, for commands that use none.
pub(crate) fn without_credentials<T>(f: impl FnOnce() -> T) -> T {
    let previous = CREDENTIALS.replace(false);
    let result = f();
    CREDENTIALS.set(previous);
    result
}

/// Whether credentials are read (see [`without_credentials`]).
pub(super) fn reads_credentials() -> bool {
    CREDENTIALS.get()
}

/// Runs `f` with relative config paths resolved against `dir`.
pub(crate) fn with_base_dir<T>(dir: &Path, f: impl FnOnce() -> T) -> T {
    let previous = BASE_DIR.with(|b| b.replace(dir.to_owned()));
    let result = f();
    BASE_DIR.with(|b| b.replace(previous));
    result
}

/// Deserializes a string and validates it while the YAML scalar is current, so an
/// error points at the value's own line and column.
fn parse_str<'de, D, T, F>(d: D, expecting: &'static str, parse: F) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    F: FnOnce(&str) -> Result<T, String>,
{
    struct Visitor<F>(&'static str, F);
    impl<T, F: FnOnce(&str) -> Result<T, String>> de::Visitor<'_> for Visitor<F> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            (self.1)(v).map_err(E::custom)
        }
    }
    d.deserialize_str(Visitor(expecting, parse))
}

/// A path from the config, resolved against the config file's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigPath(pub PathBuf);

impl ConfigPath {
    pub(crate) fn resolve(raw: &str) -> Self {
        let path = Path::new(raw);
        if path.is_absolute() {
            return Self(path.to_owned());
        }
        let base = BASE_DIR.with(|b| b.borrow().clone());
        if base == Path::new(".") {
            return Self(path.to_owned());
        }
        Self(base.join(path))
    }
}

impl fmt::Display for ConfigPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.display().fmt(f)
    }
}

impl<'de> Deserialize<'de> for ConfigPath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_str(d, "a path", |raw| match raw {
            "" => Err("empty path".to_owned()),
            raw => Ok(Self::resolve(raw)),
        })
    }
}

/// A duration written as `500ms`, `30s`, `10m` or `1h`.
#[derive(Debug, Clone, Copy)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_str(d, "a duration", |raw| {
            parse_duration(raw).map(Self).ok_or_else(|| {
                format!("invalid duration {raw:?}: expected e.g. 500ms, 30s, 10m or 1h")
            })
        })
    }
}

/// A duration that must be above zero: a timeout of 0 would give up at once, every time.
#[derive(Debug, Clone, Copy)]
pub struct Timeout(pub Duration);

impl<'de> Deserialize<'de> for Timeout {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_str(d, "a duration", |raw| match parse_duration(raw) {
            Some(Duration::ZERO) => Err(format!(
                "a timeout of {raw} would give up at once, every time; give a duration above 0, e.g. 30s"
            )),
            Some(duration) => Ok(Self(duration)),
            None => Err(format!(
                "invalid duration {raw:?}: expected e.g. 500ms, 30s, 10m or 1h"
            )),
        })
    }
}

fn parse_duration(raw: &str) -> Option<Duration> {
    let split = raw.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = raw.split_at(split);
    let n: u64 = number.parse().ok()?;
    let unit_ms = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return None,
    };
    Some(Duration::from_millis(n.checked_mul(unit_ms)?))
}

/// The API base URL: `https://HOST[:PORT][/PATH]`.
#[derive(Debug, Clone)]
pub struct ApiUrl {
    /// The URL without a trailing slash.
    pub url: String,
    /// Its host, lowercase.
    pub host: String,
}

impl<'de> Deserialize<'de> for ApiUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_str(d, "an https:// URL", |raw| {
            parse_api_url(raw).map_err(|why| format!("invalid URL {raw:?}: {why}"))
        })
    }
}

pub(crate) fn parse_api_url(raw: &str) -> Result<ApiUrl, String> {
    let rest = raw
        .strip_prefix("https://")
        .ok_or("must start with https:// (tokens never travel over plaintext)")?;
    let authority = rest.split('/').next().unwrap_or_default();
    let host = authority
        .split(':')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    gitgate_policy::HostName::parse(&host).map_err(|e| format!("bad host: {e}"))?;
    if rest.contains(['?', '#', ' ']) {
        return Err("must not contain a query, fragment or spaces".into());
    }
    Ok(ApiUrl {
        url: raw.trim_end_matches('/').to_owned(),
        host,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        for bad in ["", "10", "m", "1.5s", "10 s", "-1s"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn api_urls() {
        assert_eq!(
            parse_api_url("https://ghe.example.com/api/v3/")
                .unwrap()
                .url,
            "https://ghe.example.com/api/v3"
        );
        assert_eq!(
            parse_api_url("https://API.github.com").unwrap().host,
            "api.github.com"
        );
        assert!(parse_api_url("http://api.github.com").is_err());
    }
}

/// `github.app.privateKeyFile`: the App key, loaded (and its permissions checked) while
/// the config is read; `None` when credentials are not read.
#[derive(Debug)]
pub(super) struct AppKeyFile(pub(super) Option<gitgate_proxy::token::AppKey>);

impl<'de> Deserialize<'de> for AppKeyFile {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if !reads_credentials() {
            return parse_str(d, "a path", |_| Ok(Self(None)));
        }
        load_path(d, gitgate_proxy::token::AppKey::load).map(|key| Self(Some(key)))
    }
}

/// A path from the config, resolved and handed to `load` while the config is read.
fn load_path<'de, D, T, E>(d: D, load: impl FnOnce(&Path) -> Result<T, E>) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    E: fmt::Display,
{
    parse_str(d, "a path", |raw| {
        load(&ConfigPath::resolve(raw).0).map_err(|e| e.to_string())
    })
}

/// A file holding one secret (`github.user.clientSecretFile`), read while the config is
/// read; surrounding whitespace is dropped. `None` when credentials are not read.
#[derive(Debug)]
pub(super) struct SecretFile(pub(super) Option<gitgate_proxy::token::Secret>);

impl<'de> Deserialize<'de> for SecretFile {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_str(d, "a path", |raw| {
            if !reads_credentials() {
                return Ok(Self(None));
            }
            let ConfigPath(path) = ConfigPath::resolve(raw);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            match text.trim() {
                "" => Err(format!("{} is empty", path.display())),
                secret => Ok(Self(Some(gitgate_proxy::token::Secret::new(secret)))),
            }
        })
    }
}

/// `upstream.caFile`: extra trust anchors, read while the config is read.
#[derive(Debug, Clone)]
pub struct RootsFile(pub Vec<rustls_pki_types::CertificateDer<'static>>);

impl<'de> Deserialize<'de> for RootsFile {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use rustls_pki_types::pem::PemObject;
        parse_str(d, "a path", |raw| {
            let ConfigPath(path) = ConfigPath::resolve(raw);
            let pem =
                std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let certs = rustls_pki_types::CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("{}: bad PEM: {e}", path.display()))?;
            if certs.is_empty() {
                return Err(format!("{} holds no PEM CERTIFICATE", path.display()));
            }
            Ok(Self(certs))
        })
    }
}
