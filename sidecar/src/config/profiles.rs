//! Sandbox profiles: inline under `profiles:`, and one file per profile in `profilesDir`
//! (`NAME.yaml`, the same shape as an inline entry), each read and judged on its own.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use gitgate_policy::{Policies, Profile, ProfileName, ProfileSet, RawProfile};

use super::{ConfigError, parse};

/// Everything profile files need to be compiled the same way as the main config.
#[derive(Debug, Clone)]
pub struct ProfileRules {
    /// The intercepted GitHub hosts.
    pub github_hosts: Vec<String>,
    /// Whether client certificates can be presented (`listenTls` and `clientCa`).
    pub mtls: bool,
}

/// The profiles of a config.
#[derive(Debug)]
pub struct Profiles {
    /// Those under `profiles:`.
    pub inline: Vec<Arc<Profile>>,
    /// `profilesDir`, if set.
    pub dir: Option<PathBuf>,
    /// Each file of `profilesDir` and what became of it.
    pub files: Vec<Loaded>,
    /// How files are compiled.
    pub rules: ProfileRules,
}

/// A profile file and what reading it gave.
pub(crate) type Loaded = (PathBuf, Result<Arc<Profile>, ConfigError>);

/// A profile file that is not in force, and why.
pub(crate) type Rejected = (PathBuf, ConfigError);

impl Profiles {
    /// The policies of the inline profiles and of every file that loaded and does not
    /// conflict with them, and the files left out.
    pub fn policies(&self) -> (Policies, Vec<Rejected>) {
        assemble(
            &self.inline,
            self.files
                .iter()
                .map(|(path, loaded)| (path.as_path(), loaded.as_ref())),
        )
    }
}

/// Indexes the inline profiles, then each file's in turn: a file that failed to load,
/// or whose profile conflicts with one already in, is left out and reported.
pub(crate) fn assemble<'a>(
    inline: &[Arc<Profile>],
    files: impl IntoIterator<Item = (&'a Path, Result<&'a Arc<Profile>, &'a ConfigError>)>,
) -> (Policies, Vec<Rejected>) {
    // Inline profiles were checked against each other when the config was read.
    let mut set = ProfileSet::new(inline.iter().cloned()).unwrap_or_default();
    let mut rejected = Vec::new();
    for (path, loaded) in files {
        let outcome = match loaded {
            Ok(profile) => set.insert(profile.clone()).map_err(|e| {
                let key = e.key().unwrap_or_default();
                // The file loaded a moment ago: read again only to point at the key.
                let location = std::fs::read_to_string(path)
                    .ok()
                    .and_then(|text| super::locate::locate(&text, &key, 0))
                    .map(|(at, _)| at);
                ConfigError {
                    file: path.to_owned(),
                    location,
                    key,
                    message: e.to_string(),
                }
            }),
            Err(error) => Err(error.clone()),
        };
        if let Err(error) = outcome {
            rejected.push((path.to_owned(), error));
        }
    }
    (Policies::Profiles(set), rejected)
}

/// Compiles the inline profile `name`.
pub(super) fn compile(
    name: ProfileName,
    raw: &RawProfile,
    rules: &ProfileRules,
    file: &Path,
) -> Result<Arc<Profile>, ConfigError> {
    let key = format!("profiles.{name}");
    check(raw, rules).map_err(|message| ConfigError {
        file: file.to_owned(),
        location: None,
        key: format!("{key}.clientCertSubjects"),
        message,
    })?;
    Profile::compile(name, raw, &rules.github_hosts)
        .map(Arc::new)
        .map_err(|e| ConfigError {
            file: file.to_owned(),
            location: None,
            key: e
                .key()
                .map_or(key.clone(), |inner| format!("{key}.{inner}")),
            message: e.to_string(),
        })
}

fn check(raw: &RawProfile, rules: &ProfileRules) -> Result<(), String> {
    if !raw.client_cert_subjects.is_empty() && !rules.mtls {
        return Err("client certificates are only seen on listenTls with clientCa; set both, or identify this profile by secretSha256 or sourceCidrs".into());
    }
    Ok(())
}

/// The profile files of `dir`: `NAME.yaml` or `NAME.yml`, hidden entries (such as a
/// ConfigMap's `..data`) skipped, sorted.
pub(crate) fn files(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let entries = std::fs::read_dir(dir).map_err(|e| ConfigError {
        file: dir.to_owned(),
        location: None,
        key: "profilesDir".into(),
        message: format!("cannot list the profiles directory: {e}"),
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or(".");
            !name.starts_with('.')
                && matches!(
                    path.extension().and_then(|e| e.to_str()),
                    Some("yaml" | "yml")
                )
                && path.is_file()
        })
        .collect();
    files.sort();
    Ok(files)
}

/// The profile a file is for: its name without `.yaml` (`None` if not UTF-8).
pub(crate) fn profile_name(path: &Path) -> Option<&str> {
    path.file_stem()?.to_str()
}

/// Reads and compiles one profile file; the profile is named after the file.
pub(crate) fn load(path: &Path, rules: &ProfileRules) -> Result<Arc<Profile>, ConfigError> {
    let error = |key: &str, message: String| ConfigError {
        file: path.to_owned(),
        location: None,
        key: key.to_owned(),
        message,
    };
    // Found after parsing: point at the key in the file's text.
    let located = |text: &str, key: &str, message: String| ConfigError {
        location: super::locate::locate(text, key, 0).map(|(at, _)| at),
        ..error(key, message)
    };
    let name: ProfileName =
        profile_name(path)
            .unwrap_or_default()
            .parse()
            .map_err(|e: String| {
                error(
                    "",
                    format!("{e}; the file name (without .yaml) is the profile name"),
                )
            })?;
    let text = std::fs::read_to_string(path)
        .map_err(|e| error("", format!("cannot read the profile file: {e}")))?;
    let mut raw: RawProfile = parse(&text, path)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    super::read_allowed_signers(&mut raw.policy, dir)
        .map_err(|m| located(&text, "policy.requireSignedCommits.allowedSignersFile", m))?;
    check(&raw, rules).map_err(|m| located(&text, "clientCertSubjects", m))?;
    Profile::compile(name, &raw, &rules.github_hosts)
        .map(Arc::new)
        .map_err(|e| located(&text, &e.key().unwrap_or_default(), e.to_string()))
}

/// Loads every file of `dir`.
pub(crate) fn load_dir(dir: &Path, rules: &ProfileRules) -> Result<Vec<Loaded>, ConfigError> {
    Ok(files(dir)?
        .into_iter()
        .map(|path| {
            let loaded = load(&path, rules);
            (path, loaded)
        })
        .collect())
}
