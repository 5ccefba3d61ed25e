//! Live policy: the config file and the profile files of `profilesDir` are watched (and
//! re-read on SIGHUP). A valid new policy or profile takes effect for new requests at
//! once; an invalid one is refused and the one before it stays, file by file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;

use gitgate_policy::{Policies, Profile};
use gitgate_proxy::Proxy;

use crate::config::{Config, ConfigError, ProfileRules, profiles};

/// How often the files are looked at.
const POLL: Duration = Duration::from_secs(1);

/// How long the files must stay unchanged before a change is read, so that a file
/// written in place (not renamed into place) is read whole, not half-written.
const QUIET: Duration = Duration::from_millis(300);

/// The longest a change waits for [`QUIET`]: a file that never stops changing is read.
const QUIET_AT_MOST: Duration = Duration::from_secs(5);

/// What identifies a file's content without reading it: following symlinks, so the
/// atomic `..data` swap a kubelet does for a ConfigMap counts as a change.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
struct Stamp {
    device: u64,
    inode: u64,
    modified: Option<SystemTime>,
    len: u64,
}

/// Files' stamps, by path.
type Stamps = BTreeMap<PathBuf, Option<Stamp>>;

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some(Stamp {
        device: meta.dev(),
        inode: meta.ino(),
        modified: meta.modified().ok(),
        len: meta.len(),
    })
}

/// One file of `profilesDir`: when it was last read, and its profile in force.
#[derive(Default)]
struct ProfileFile {
    stamp: Option<Stamp>,
    in_force: Option<Arc<Profile>>,
    /// Whether `in_force` was in the policies last applied (not left out for a clash).
    accepted: bool,
    /// Whether `in_force` is what the file said when last read (not an older reading
    /// kept because the newer one was refused).
    current: bool,
}

/// What the watcher knows.
pub(crate) struct Known {
    config: Option<Stamp>,
    /// The profiles of the config file, its `profilesDir` and how files are compiled;
    /// `None` without profiles.
    profiles: Option<(Vec<Arc<Profile>>, Option<PathBuf>, ProfileRules)>,
    files: BTreeMap<PathBuf, ProfileFile>,
    /// The settings applied at start ([`Config::restart_only`]).
    started_with: Vec<(&'static str, String)>,
    /// Those of them the policy is checked against ([`Config::policy_inputs`]).
    policy_inputs: Vec<(&'static str, String)>,
}

/// Watches the config (and profile) files of a running proxy. One task reads and
/// applies them, SIGHUP's reloads included, so that an older reading never wins.
pub(crate) struct Watcher {
    proxy: Arc<Proxy>,
    path: PathBuf,
    known: Mutex<Known>,
    hangup: Notify,
}

impl Known {
    /// What `config`, the configuration the proxy is built from, holds.
    pub(crate) fn of(config: &Config) -> Self {
        let mut files = BTreeMap::new();
        let profiles = config.profiles.as_ref().map(|p| {
            let (_, rejected) = p.policies();
            for (path, loaded) in &p.files {
                files.insert(
                    path.clone(),
                    ProfileFile {
                        stamp: stamp(path),
                        in_force: loaded.as_ref().ok().cloned(),
                        accepted: loaded.is_ok() && !rejected.iter().any(|(r, _)| r == path),
                        current: true,
                    },
                );
            }
            (p.inline.clone(), p.dir.clone(), p.rules.clone())
        });
        Known {
            config: stamp(&config.file),
            profiles,
            files,
            started_with: config.restart_only(),
            policy_inputs: config.policy_inputs(),
        }
    }
}

impl Watcher {
    pub(crate) fn new(proxy: Arc<Proxy>, path: PathBuf, known: Known) -> Self {
        Self {
            proxy,
            path,
            known: Mutex::new(known),
            hangup: Notify::new(),
        }
    }

    /// Asks the watching task to read the config file again now, changed or not.
    pub(crate) fn hangup(&self) {
        self.hangup.notify_one();
    }

    fn known(&self) -> std::sync::MutexGuard<'_, Known> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Polls the files forever and reloads what changed, once it has stayed unchanged
    /// for [`QUIET`]; reloads on [`Watcher::hangup`].
    pub(crate) async fn run(self: Arc<Self>) {
        let mut tick = tokio::time::interval(POLL);
        let mut seen = self.stamps();
        loop {
            tokio::select! {
                () = self.hangup.notified() => {
                    self.guarded(|| self.reload());
                    seen = self.stamps();
                    continue;
                }
                _ = tick.tick() => {}
            }
            let now = self.stamps();
            if now != seen {
                seen = self.quiet(now).await;
            }
            let now = stamp(&self.path);
            let config_changed = now.is_some() && now != self.known().config;
            if config_changed {
                self.guarded(|| self.reload());
            } else {
                self.guarded(|| self.reload_profile_files(None));
            }
        }
    }

    /// Runs one reading of the files. A panic in it (a bug) is reported as a refused
    /// reload, the policy in force kept, instead of ending this task and with it every
    /// later reload.
    fn guarded(&self, reading: impl FnOnce()) {
        let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(reading)) else {
            return;
        };
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let file = self.path.display().to_string();
        let error = format!(
            "gitgate failed while reading it ({what}), a bug: please report it; the policy in force stays, and later edits are still read"
        );
        tracing::error!(%file, %error, "policy reload refused");
        self.proxy.reload_failed(&file, &error);
    }

    /// The stamps of every watched file: the config file, and the files of
    /// `profilesDir`.
    fn stamps(&self) -> Stamps {
        let dir = self
            .known()
            .profiles
            .as_ref()
            .and_then(|(_, dir, _)| dir.clone());
        let listed = dir.and_then(|dir| profiles::files(&dir).ok());
        std::iter::once(self.path.clone())
            .chain(listed.into_iter().flatten())
            .map(|path| {
                let stamp = stamp(&path);
                (path, stamp)
            })
            .collect()
    }

    /// Waits until the watched files have not changed for [`QUIET`] (at most
    /// [`QUIET_AT_MOST`]), starting from `stamps`; returns their last stamps.
    async fn quiet(&self, mut stamps: Stamps) -> Stamps {
        let give_up = tokio::time::Instant::now() + QUIET_AT_MOST;
        while tokio::time::Instant::now() < give_up {
            tokio::time::sleep(QUIET).await;
            let again = self.stamps();
            if again == stamps {
                break;
            }
            stamps = again;
        }
        stamps
    }

    /// Reads the config file again and applies its policy and profiles, or records why
    /// not; then the profile files.
    fn reload(&self) {
        let file = self.path.display().to_string();
        // Stamped before they are read: an edit made during the reading is read again.
        let stamped = self.stamps();
        self.known().config = stamped.get(&self.path).copied().flatten();
        match Config::load(&self.path) {
            Ok(config) => {
                let mut known = self.known();
                let moved = changed(&config.policy_inputs(), &known.policy_inputs);
                if !moved.is_empty() {
                    let error = format!(
                        "the config file changes {}, which the policy is checked against and which applies only when gitgate starts; restart gitgate to apply this config (the policy in force stays until then)",
                        moved.join(" and ")
                    );
                    tracing::error!(%file, %error, "policy reload refused");
                    self.proxy.reload_failed(&file, &error);
                    return;
                }
                let mut unapplied = changed(&config.restart_only(), &known.started_with);
                // A CA replaced in place: its file is not the CA in memory.
                let on_disk =
                    std::fs::read(&config.ca_cert).map(|pem| gitgate_proxy::fingerprint(&pem));
                if !unapplied.contains(&"ca") && on_disk.ok() != Some(self.proxy.ca_fingerprint()) {
                    unapplied.push("ca");
                }
                if !unapplied.is_empty() {
                    tracing::warn!(
                        %file,
                        keys = %unapplied.join(", "),
                        "the config file changes settings that apply only when gitgate starts; they are not applied until it restarts (the policy is)"
                    );
                }
                known.profiles = config
                    .profiles
                    .as_ref()
                    .map(|p| (p.inline.clone(), p.dir.clone(), p.rules.clone()));
                if known.profiles.is_none() {
                    known.files.clear();
                    let policies = Policies::Single(Arc::new(config.policy));
                    let hash = self.proxy.set_policies(policies, &[], &file);
                    tracing::info!(%file, policy_hash = %hash, "policy reloaded");
                    return;
                }
                drop(known);
                // The config load has just read every profile file: use that reading.
                let loaded = config.profiles.map(|p| p.files).unwrap_or_default();
                self.reload_profile_files(Some((loaded, stamped)));
            }
            Err(error) => {
                tracing::error!(%error, "policy reload refused; the previous policy stays in force");
                self.proxy.reload_failed(&file, &error.to_string());
            }
        }
    }

    /// Applies the profile files: every one as `preloaded` gives them (after a config
    /// reload, with the stamps taken before they were read), or else those whose file
    /// changed, read now; applies the result if anything changed.
    fn reload_profile_files(&self, preloaded: Option<(Vec<profiles::Loaded>, Stamps)>) {
        let all = preloaded.is_some();
        let (preloaded, stamped) = preloaded.unwrap_or_default();
        let mut known = self.known();
        let Some((inline, dir, rules)) = known.profiles.clone() else {
            return;
        };
        let mut changed: Vec<Change> = Vec::new();
        let mut preloaded: BTreeMap<PathBuf, _> = preloaded.into_iter().collect();
        let listed: BTreeSet<PathBuf> = match &dir {
            _ if all => preloaded.keys().cloned().collect(),
            Some(dir) => match profiles::files(dir) {
                Ok(listed) => listed.into_iter().collect(),
                Err(error) => {
                    tracing::error!(%error, "cannot list profilesDir; the profiles in force stay");
                    return;
                }
            },
            None => BTreeSet::new(),
        };
        let gone: Vec<PathBuf> = known
            .files
            .keys()
            .filter(|path| !listed.contains(*path))
            .cloned()
            .collect();
        for path in gone {
            if let Some(file) = known.files.remove(&path) {
                tracing::info!(file = %path.display(), "profile file removed; its profile is gone");
                changed.push(Change {
                    path,
                    previous: file.in_force,
                    modified: true,
                    accepted: file.accepted,
                    current: file.current,
                });
            }
        }
        for path in listed {
            let now = match stamped.get(&path) {
                Some(before) => *before,
                None => stamp(&path),
            };
            let entry = known.files.entry(path.clone()).or_default();
            let modified = now != entry.stamp;
            if !all && !modified {
                continue;
            }
            entry.stamp = now;
            let loaded = match preloaded.remove(&path) {
                Some(loaded) => loaded,
                None => profiles::load(&path, &rules),
            };
            match loaded {
                Ok(profile) => {
                    changed.push(Change {
                        path,
                        previous: entry.in_force.replace(profile),
                        modified,
                        accepted: entry.accepted,
                        current: entry.current,
                    });
                    entry.current = true;
                }
                Err(error) => {
                    self.refuse(&path, &error);
                    entry.current = false;
                }
            }
        }
        if changed.is_empty() && !all {
            return;
        }
        loop {
            let (policies, rejected) = assemble(&inline, &known.files, &changed);
            // A changed file whose new profile conflicts with another keeps its old one.
            let reverted: Vec<_> = rejected
                .iter()
                .filter_map(|(path, error)| {
                    let change = changed.iter().find(|c| c.path == *path)?;
                    self.refuse(path, error);
                    Some((path.clone(), change.previous.clone()))
                })
                .collect();
            if reverted.is_empty() {
                let label = match changed.as_slice() {
                    [change] if !all => change.path.display().to_string(),
                    _ => self.path.display().to_string(),
                };
                // Profiles whose file is there but not in force (it never loaded, or its
                // profile clashes with another) keep their saved sessions aside.
                let unloaded: Vec<String> = known
                    .files
                    .iter()
                    .filter(|(path, f)| {
                        f.in_force.is_none() || rejected.iter().any(|(r, _)| r == *path)
                    })
                    .filter_map(|(path, _)| profiles::profile_name(path).map(str::to_owned))
                    .collect();
                let hash = self.proxy.set_policies(policies, &unloaded, &label);
                tracing::info!(file = %label, policy_hash = %hash, "profiles reloaded");
                for (path, file) in &mut known.files {
                    file.accepted =
                        file.in_force.is_some() && !rejected.iter().any(|(r, _)| r == path);
                }
                return;
            }
            for (path, previous) in reverted {
                changed.retain(|c| c.path != path);
                if let Some(file) = known.files.get_mut(&path) {
                    file.in_force = previous;
                    file.current = false;
                }
            }
        }
    }

    fn refuse(&self, path: &Path, error: &ConfigError) {
        let file = path.display().to_string();
        tracing::error!(%error, "profile reload refused; the profile in force stays");
        self.proxy.reload_failed(&file, &error.to_string());
    }
}

/// The keys whose values differ between `now` and `before` (the same keys, in order).
fn changed(now: &[(&'static str, String)], before: &[(&'static str, String)]) -> Vec<&'static str> {
    now.iter()
        .zip(before)
        .filter(|(now, before)| now != before)
        .map(|((key, _), _)| *key)
        .collect()
}

/// A profile file read again by a reload.
struct Change {
    path: PathBuf,
    /// Its profile in force before the reload.
    previous: Option<Arc<Profile>>,
    /// Whether the file itself changed (a config reload reads every file again).
    modified: bool,
    /// Whether `previous` was in the policies last applied.
    accepted: bool,
    /// Whether `previous` was what the file said: an unmodified file then says it still.
    current: bool,
}

/// Which profiles claim their names, addresses and certificates first (lowest): those
/// working before this reload and unchanged, then edits of working ones, then the rest
/// (new files, files left out before). So when a changed file clashes with a profile
/// that was working, the changed file is the one left out.
fn rank(file: &ProfileFile, change: Option<&Change>) -> u8 {
    match change {
        None if file.accepted => 0,
        None => 2,
        Some(c) if c.accepted && c.current && !c.modified => 0,
        Some(c) if c.accepted => 1,
        Some(_) => 2,
    }
}

/// The inline profiles and every profile file's profile in force, in [`rank`] order
/// (then by path).
fn assemble(
    inline: &[Arc<Profile>],
    files: &BTreeMap<PathBuf, ProfileFile>,
    changed: &[Change],
) -> (Policies, Vec<profiles::Rejected>) {
    let mut in_force: Vec<(u8, &Path, &Arc<Profile>)> = files
        .iter()
        .filter_map(|(path, f)| {
            let change = changed.iter().find(|c| c.path == *path);
            Some((rank(f, change), path.as_path(), f.in_force.as_ref()?))
        })
        .collect();
    in_force.sort_by_key(|(rank, path, _)| (*rank, *path));
    profiles::assemble(
        inline,
        in_force
            .into_iter()
            .map(|(_, path, profile)| (path, Ok(profile))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(accepted: bool, current: bool) -> ProfileFile {
        ProfileFile {
            accepted,
            current,
            ..ProfileFile::default()
        }
    }

    fn change(modified: bool, accepted: bool, current: bool) -> Change {
        Change {
            path: PathBuf::from("x.yaml"),
            previous: None,
            modified,
            accepted,
            current,
        }
    }

    #[test]
    fn working_unchanged_profiles_claim_first_then_edits_then_the_rest() {
        // Not read again: working, or left out.
        assert_eq!(rank(&file(true, true), None), 0);
        assert_eq!(
            rank(&file(true, false), None),
            0,
            "a refused edit keeps the working one"
        );
        assert_eq!(rank(&file(false, true), None), 2, "left out before");
        // Read again (a config reload reads every file).
        assert_eq!(rank(&file(true, true), Some(&change(false, true, true))), 0);
        assert_eq!(
            rank(&file(true, true), Some(&change(false, true, false))),
            1,
            "the file still holds an edit that was refused"
        );
        assert_eq!(
            rank(&file(true, true), Some(&change(true, true, true))),
            1,
            "an edit"
        );
        assert_eq!(
            rank(&file(false, true), Some(&change(true, false, true))),
            2,
            "new, or left out"
        );
    }
}
