//! The device-flow sessions sealed to a file (`github.user.sessionFile`), so that a
//! restart does not log everyone out: AES-256-GCM under the key in
//! `github.user.sessionKeyFile`, written atomically with mode 0600. [`seal`] and [`open`]
//! are pure (the nonce is passed in); [`SessionStore`] does the file I/O.

use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use serde::{Deserialize, Serialize};

use super::Secret;
use super::device::Grant;

/// What every session file starts with (the format and its version).
const MAGIC: &[u8; 8] = b"GGSESS1\n";
/// The key's length: AES-256.
const KEY_LEN: usize = 32;

/// The key that seals the session file. `Debug` shows nothing of it.
pub struct SessionKey(LessSafeKey);

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKey([redacted])")
    }
}

impl SessionKey {
    /// Reads a key file: 32 bytes, raw or in base64; refuses a file that group or others
    /// can read.
    pub fn load(path: &Path) -> Result<Self, SessionFileError> {
        let err = |reason: String| SessionFileError {
            key: KEY_FILE,
            path: path.to_owned(),
            reason,
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path)
                .map_err(|e| err(e.to_string()))?
                .permissions()
                .mode()
                & 0o777;
            if mode & 0o077 != 0 {
                return Err(err(format!(
                    "readable by group or others (mode {mode:04o}); run `chmod 600 {}`",
                    path.display()
                )));
            }
        }
        let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        Self::from_bytes(&bytes).map_err(err)
    }

    /// A key from a key file's contents: 32 bytes, or their base64 (surrounding
    /// whitespace ignored).
    pub(crate) fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        let decoded;
        let raw = match bytes.len() {
            KEY_LEN => bytes,
            _ => {
                decoded = STANDARD
                    .decode(bytes.trim_ascii())
                    .ok()
                    .filter(|k| k.len() == KEY_LEN)
                    .ok_or_else(|| {
                        format!(
                            "holds {} bytes, not a key: give {KEY_LEN} random bytes or their base64 \
                             (make one with `head -c {KEY_LEN} /dev/urandom | base64 > FILE; chmod 600 FILE`)",
                            bytes.len()
                        )
                    })?;
                &decoded
            }
        };
        let key = UnboundKey::new(&AES_256_GCM, raw).map_err(|_| "not an AES-256 key")?;
        Ok(Self(LessSafeKey::new(key)))
    }
}

/// The session file (or its key) is unusable; says which file and what to do.
#[derive(Debug, thiserror::Error)]
#[error("{key} {path}: {reason}")]
pub struct SessionFileError {
    key: &'static str,
    path: PathBuf,
    reason: String,
}

/// The config keys the errors are about.
const FILE: &str = "github.user.sessionFile";
const KEY_FILE: &str = "github.user.sessionKeyFile";

impl SessionFileError {
    /// The config key at fault (`github.user.sessionFile` or `…sessionKeyFile`).
    pub fn key(&self) -> &'static str {
        self.key
    }

    /// The file and what is wrong with it, without the key.
    pub fn detail(&self) -> String {
        format!("{}: {}", self.path.display(), self.reason)
    }
}

/// `github.user.sessionFile` and `sessionKeyFile`, as configured: nothing is read until
/// [`SessionFiles::open`] (only `gitgate run`, `check` and `doctor` need the key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionFiles {
    /// The sealed file.
    pub file: PathBuf,
    /// The key that seals it.
    pub key_file: PathBuf,
}

impl SessionFiles {
    /// Reads the key and checks the file's directory.
    pub fn open(&self) -> Result<SessionStore, SessionFileError> {
        SessionStore::new(self.file.clone(), SessionKey::load(&self.key_file)?)
    }
}

/// `github.user.sessionFile` and the key that seals it.
pub struct SessionStore {
    path: PathBuf,
    key: SessionKey,
    /// Held while this process keeps the file (`FILE.lock`, an exclusive lock).
    lock: OnceLock<File>,
}

impl fmt::Debug for SessionStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// What `gitgate doctor` shows of a saved session (no token).
#[derive(Debug, Clone)]
pub struct SavedSession {
    /// The profile.
    pub profile: String,
    /// The GitHub user.
    pub login: String,
    /// When the saved token expires (`None`: never).
    pub expires_at: Option<SystemTime>,
    /// Whether a refresh token can still renew it.
    pub renewable: bool,
    /// Whether `gitgate run` takes it back (its token works, or it is renewable).
    pub restorable: bool,
}

/// A session as it is kept in the file.
#[derive(Clone)]
pub(crate) struct Saved {
    pub(crate) profile: String,
    pub(crate) login: String,
    pub(crate) grant: Grant,
}

impl Saved {
    /// Worth keeping: its token still works, or its refresh token can get a new one.
    pub(crate) fn restorable(&self, now: SystemTime) -> bool {
        self.grant.usable(now) || self.grant.renewable(now)
    }
}

/// A session file's contents: whose App client and GitHub the sessions belong to, and
/// the sessions.
pub(crate) struct Contents {
    pub(crate) client_id: String,
    /// The GitHub web host the tokens were issued by (`https://github.com`).
    pub(crate) host: String,
    pub(crate) sessions: Vec<Saved>,
}

/// What is sealed: JSON, times in seconds since the epoch. No `Debug`: it holds tokens.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Plain {
    client_id: String,
    host: String,
    sessions: Vec<PlainSession>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PlainSession {
    profile: String,
    login: String,
    access_token: String,
    obtained_at: u64,
    expires_at: Option<u64>,
    refresh_token: Option<String>,
    refresh_expires_at: Option<u64>,
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

fn time(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// The file's bytes for `contents`, sealed with `nonce` (never used twice with a key).
pub(crate) fn seal(key: &SessionKey, contents: &Contents, nonce: [u8; NONCE_LEN]) -> Vec<u8> {
    let plain = Plain {
        client_id: contents.client_id.clone(),
        host: contents.host.clone(),
        sessions: contents
            .sessions
            .iter()
            .map(|s| PlainSession {
                profile: s.profile.clone(),
                login: s.login.clone(),
                access_token: s.grant.access.expose().to_owned(),
                obtained_at: secs(s.grant.obtained_at),
                expires_at: s.grant.expires_at.map(secs),
                refresh_token: s.grant.refresh.as_ref().map(|r| r.expose().to_owned()),
                refresh_expires_at: s.grant.refresh_expires_at.map(secs),
            })
            .collect(),
    };
    let mut sealed = serde_json::to_vec(&plain).unwrap_or_default();
    key.0
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(MAGIC),
            &mut sealed,
        )
        .unwrap_or_else(|_| unreachable!("a session file is far below AES-GCM's size limit"));
    [&MAGIC[..], &nonce, &sealed].concat()
}

/// Reads a session file's bytes; the error says why they cannot be trusted.
pub(crate) fn open(key: &SessionKey, bytes: &[u8]) -> Result<Contents, String> {
    let rest = bytes.strip_prefix(MAGIC).ok_or(
        "not a gitgate session file (it does not start as one does); move it away or give another github.user.sessionFile",
    )?;
    if rest.len() < NONCE_LEN {
        return Err(
            "cut short (no sealed contents); delete it to start with nobody logged in".into(),
        );
    }
    let (nonce, sealed) = rest.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| "bad nonce")?;
    let mut sealed = sealed.to_vec();
    let plain = key
        .0
        .open_in_place(nonce, Aad::from(MAGIC), &mut sealed)
        .map_err(|_| {
            "cannot be opened with github.user.sessionKeyFile: it was sealed with another key, or altered; \
             give the key it was sealed with, or delete the file to start with nobody logged in"
        })?;
    // serde's message could quote a token: only where it stopped is told.
    let plain: Plain = serde_json::from_slice(plain).map_err(|e| {
        format!(
            "its sealed contents are not a session list this gitgate can read (line {}, column {}; \
             written by another version?); delete it to start with nobody logged in",
            e.line(),
            e.column()
        )
    })?;
    Ok(Contents {
        client_id: plain.client_id,
        host: plain.host,
        sessions: plain
            .sessions
            .into_iter()
            .map(|s| Saved {
                profile: s.profile,
                login: s.login,
                grant: Grant {
                    access: Secret::new(s.access_token),
                    obtained_at: time(s.obtained_at),
                    expires_at: s.expires_at.map(time),
                    refresh: s.refresh_token.map(Secret::new),
                    refresh_expires_at: s.refresh_expires_at.map(time),
                },
            })
            .collect(),
    })
}

impl SessionStore {
    /// The store at `path` (the file need not exist yet; its directory must, writable by
    /// its owner only: anyone else could put an older file back).
    pub fn new(path: PathBuf, key: SessionKey) -> Result<Self, SessionFileError> {
        let dir = parent(&path);
        let refused = |reason: String| SessionFileError {
            key: FILE,
            reason,
            path: path.clone(),
        };
        let meta = std::fs::metadata(dir).map_err(|e| {
            refused(match e.kind() {
                io::ErrorKind::NotFound => format!(
                    "its directory {} does not exist; create it (writable by gitgate only)",
                    dir.display()
                ),
                _ => format!("cannot use its directory {}: {e}", dir.display()),
            })
        })?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o022 != 0 {
                return Err(refused(format!(
                    "its directory {} is writable by group or others (mode {mode:04o}); \
                     use a directory only gitgate can write (`chmod go-w {}`)",
                    dir.display(),
                    dir.display()
                )));
            }
        }
        if !meta.is_dir() {
            return Err(refused(format!("{} is not a directory", dir.display())));
        }
        Ok(Self {
            path,
            key,
            lock: OnceLock::new(),
        })
    }

    /// Takes `FILE.lock` for this process's lifetime: two gitgates renewing the same
    /// sessions would each spend the other's single-use refresh tokens.
    /// Also refuses a directory that another account owns (checked here, for the process
    /// that keeps the file, rather than for `check` or `doctor` run as another user).
    pub(crate) fn lock(&self) -> Result<(), SessionFileError> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let dir = parent(&self.path);
            let owner = std::fs::metadata(dir).map(|m| m.uid());
            // This process's effective user, as Linux shows it; elsewhere the mode check
            // stands alone.
            let me = std::fs::read_to_string("/proc/self/status")
                .ok()
                .and_then(|status| effective_uid(&status));
            if let (Ok(owner), Some(me)) = (owner, me)
                && let Some(why) = foreign_owner(dir, owner, me)
            {
                return Err(self.error(why));
            }
        }
        let mut name = self.path.as_os_str().to_owned();
        name.push(".lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&name)
            .map_err(|e| self.error(format!("cannot open {}: {e}", name.display())))?;
        file.try_lock().map_err(|e| match e {
            std::fs::TryLockError::WouldBlock => self.error(format!(
                "another gitgate holds {} and keeps these sessions; give each gitgate its own sessionFile",
                Path::new(&name).display()
            )),
            std::fs::TryLockError::Error(e) => {
                self.error(format!("cannot lock {}: {e}", Path::new(&name).display()))
            }
        })?;
        let _ = self.lock.set(file);
        Ok(())
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// An error about this file.
    pub(crate) fn error(&self, reason: String) -> SessionFileError {
        SessionFileError {
            key: FILE,
            path: self.path.clone(),
            reason,
        }
    }

    /// The sessions in the file, refused (as `gitgate run` refuses them) unless they
    /// belong to App client `client_id` at GitHub `host` (`https://github.com`); `None` if
    /// there is no file yet.
    pub(crate) fn load_for(
        &self,
        client_id: &str,
        host: &str,
    ) -> Result<Option<Contents>, SessionFileError> {
        let Some(contents) = self.load()? else {
            return Ok(None);
        };
        if contents.client_id != client_id || contents.host != host {
            return Err(self.error(format!(
                "holds the sessions of App client {} at {}, not of github.user.clientId {client_id} at {host}; \
                 set github.user.clientId (or github.host) back, or delete the file to start with nobody logged in",
                contents.client_id, contents.host
            )));
        }
        Ok(Some(contents))
    }

    /// What the file holds, for `gitgate check` and `doctor` (see
    /// [`SessionStore::load_for`]); reads only.
    pub fn saved(
        &self,
        client_id: &str,
        host: &str,
        now: SystemTime,
    ) -> Result<Option<Vec<SavedSession>>, SessionFileError> {
        Ok(self.load_for(client_id, host)?.map(|contents| {
            contents
                .sessions
                .into_iter()
                .map(|s| SavedSession {
                    renewable: s.grant.renewable(now),
                    restorable: s.restorable(now),
                    expires_at: s.grant.expires_at,
                    profile: s.profile,
                    login: s.login,
                })
                .collect()
        }))
    }

    /// The sessions in the file (none if there is no file yet).
    pub(crate) fn load(&self) -> Result<Option<Contents>, SessionFileError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => open(&self.key, &bytes).map(Some).map_err(|e| self.error(e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.error(format!("cannot read it: {e}"))),
        }
    }

    /// Replaces the file with `contents`, sealed under a fresh nonce: written beside it
    /// with mode 0600, flushed to disk, then renamed over it.
    pub(crate) fn store(&self, contents: &Contents) -> Result<(), SessionFileError> {
        let mut nonce = [0; NONCE_LEN];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
            .map_err(|_| self.error("no randomness for a nonce".into()))?;
        let bytes = seal(&self.key, contents, nonce);
        let failed = |e: io::Error| self.error(format!("cannot write it: {e}"));
        let dir = parent(&self.path);
        let mut file = tempfile::Builder::new()
            .prefix(".gitgate-sessions")
            .tempfile_in(dir)
            .map_err(failed)?;
        file.write_all(&bytes).map_err(failed)?;
        file.as_file().sync_all().map_err(failed)?;
        file.persist(&self.path).map_err(|e| failed(e.error))?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(failed)
    }
}

/// The effective uid in `/proc/self/status` (`Uid:` real, effective, saved, filesystem):
/// unlike the owner of `/proc/self`, right for a process with file capabilities too.
fn effective_uid(status: &str) -> Option<u32> {
    let line = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Why a directory owned by `owner` will not do for a process running as `me`: another
/// account could put an older file back.
fn foreign_owner(dir: &Path, owner: u32, me: u32) -> Option<String> {
    (owner != me).then(|| {
        format!(
            "its directory {} belongs to uid {owner}, not to gitgate's user (uid {me}), who could put an older file back; \
             use a directory gitgate's user owns (`chown {me} {}`)",
            dir.display(),
            dir.display()
        )
    })
}

/// The directory `path` is in (`.` for a bare file name).
fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn key(byte: u8) -> SessionKey {
        SessionKey::from_bytes(&[byte; KEY_LEN]).unwrap()
    }

    fn contents() -> Contents {
        let at = time(1_800_000_000);
        Contents {
            client_id: "Iv1.abc".into(),
            host: "https://github.com".into(),
            sessions: vec![
                Saved {
                    profile: "default".into(),
                    login: "octo".into(),
                    grant: Grant {
                        access: Secret::new("ghu_access"),
                        obtained_at: at,
                        expires_at: Some(at + Duration::from_secs(28_800)),
                        refresh: Some(Secret::new("ghr_refresh")),
                        refresh_expires_at: Some(at + Duration::from_secs(15_897_600)),
                    },
                },
                Saved {
                    profile: "team-b".into(),
                    login: "hubot".into(),
                    grant: Grant {
                        access: Secret::new("ghu_forever"),
                        obtained_at: at,
                        expires_at: None,
                        refresh: None,
                        refresh_expires_at: None,
                    },
                },
            ],
        }
    }

    fn summary(contents: &Contents) -> Vec<String> {
        contents
            .sessions
            .iter()
            .map(|s| {
                let g = &s.grant;
                format!(
                    "{} {} {} {:?} {:?} {:?} {:?}",
                    s.profile,
                    s.login,
                    g.access.expose(),
                    g.obtained_at,
                    g.expires_at,
                    g.refresh.as_ref().map(Secret::expose),
                    g.refresh_expires_at
                )
            })
            .collect()
    }

    #[test]
    fn sessions_come_back_as_they_were_sealed_and_no_token_is_readable_in_the_file() {
        let sealed = seal(&key(7), &contents(), [1; NONCE_LEN]);
        assert!(sealed.starts_with(MAGIC));
        for token in ["ghu_access", "ghr_refresh", "ghu_forever", "octo"] {
            assert!(
                !sealed.windows(token.len()).any(|w| w == token.as_bytes()),
                "{token} is readable in the file"
            );
        }
        let opened = open(&key(7), &sealed).unwrap();
        assert_eq!(opened.client_id, "Iv1.abc");
        assert_eq!(opened.host, "https://github.com");
        assert_eq!(summary(&opened), summary(&contents()));
        // A fresh nonce gives other bytes for the same sessions.
        assert_ne!(seal(&key(7), &contents(), [2; NONCE_LEN]), sealed);
    }

    #[test]
    fn another_key_a_foreign_file_and_a_cut_file_are_each_refused_with_what_to_do() {
        let sealed = seal(&key(7), &contents(), [1; NONCE_LEN]);
        let why = open(&key(8), &sealed).err().unwrap();
        assert!(why.contains("sealed with another key, or altered"), "{why}");
        let why = open(&key(7), b"{\"sessions\": []}").err().unwrap();
        assert!(why.contains("not a gitgate session file"), "{why}");
        let why = open(&key(7), &sealed[..MAGIC.len() + 4]).err().unwrap();
        assert!(why.contains("cut short"), "{why}");
        let why = open(&key(7), &sealed[..sealed.len() - 1]).err().unwrap();
        assert!(why.contains("altered"), "{why}");
    }

    #[test]
    fn a_key_is_32_bytes_raw_or_in_base64() {
        let raw = [9u8; KEY_LEN];
        let text = format!("{}\n", STANDARD.encode(raw));
        let sealed = seal(&key(9), &contents(), [3; NONCE_LEN]);
        for bytes in [&raw[..], text.as_bytes()] {
            let key = SessionKey::from_bytes(bytes).unwrap();
            assert!(open(&key, &sealed).is_ok());
            assert_eq!(format!("{key:?}"), "SessionKey([redacted])");
        }
        for bad in [&b"short"[..], &[0u8; 31], &[0u8; 33], b"c2hvcnQ="] {
            let why = SessionKey::from_bytes(bad).err().unwrap();
            assert!(why.contains("head -c 32 /dev/urandom"), "{why}");
        }
    }

    #[test]
    fn the_store_writes_a_private_file_atomically_and_reads_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sessions");
        let store = SessionStore::new(path.clone(), key(5)).unwrap();
        assert!(store.load().unwrap().is_none(), "no file yet: nobody");
        store.store(&contents()).unwrap();
        store.store(&contents()).unwrap();
        assert_eq!(
            summary(&store.load().unwrap().unwrap()),
            summary(&contents())
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Nothing is left beside it.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        let other = SessionStore::new(path.clone(), key(6)).unwrap();
        let why = other.load().err().unwrap().to_string();
        assert!(
            why.starts_with(&format!("github.user.sessionFile {}: ", path.display())),
            "{why}"
        );
        let missing = SessionStore::new(dir.path().join("no/such/sessions"), key(5));
        let why = missing.err().unwrap().to_string();
        assert!(why.contains("does not exist; create it"), "{why}");
    }

    #[test]
    fn one_gitgate_at_a_time_keeps_a_file_in_a_directory_only_it_can_write() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sessions");
        let first = SessionStore::new(path.clone(), key(5)).unwrap();
        first.lock().unwrap();
        let second = SessionStore::new(path.clone(), key(5)).unwrap();
        let why = second.lock().err().unwrap().to_string();
        assert!(
            why.contains("another gitgate holds") && why.contains("sessions.lock"),
            "{why}"
        );
        drop(first);
        second.lock().unwrap();

        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o775)).unwrap();
        let why = SessionStore::new(shared.join("sessions"), key(5))
            .err()
            .unwrap()
            .to_string();
        assert!(
            why.contains("writable by group or others (mode 0775)"),
            "{why}"
        );
        // A directory of another account's is refused; one of gitgate's own is not.
        assert_eq!(
            effective_uid("Name:\tgitgate\nUid:\t1000\t1001\t1001\t1001\nGid:\t5\n"),
            Some(1001)
        );
        assert_eq!(effective_uid("Name:\tgitgate\n"), None);
        let why = foreign_owner(&shared, 65_534, 0).unwrap();
        assert!(
            why.contains("belongs to uid 65534, not to gitgate's user (uid 0)"),
            "{why}"
        );
        assert!(foreign_owner(&shared, 1000, 1000).is_none());
    }

    proptest! {
        /// Any change to any byte of a sealed file is caught, never read as sessions.
        #[test]
        fn any_altered_byte_is_refused(at in any::<prop::sample::Index>(), flip in 1u8..=255) {
            let mut sealed = seal(&key(7), &contents(), [4; NONCE_LEN]);
            let at = at.index(sealed.len());
            sealed[at] ^= flip;
            prop_assert!(open(&key(7), &sealed).is_err());
        }

        /// Whatever the logins and tokens, they come back unchanged.
        #[test]
        fn any_sessions_round_trip(
            login in "\\PC{0,40}",
            access in "\\PC{1,80}",
            obtained in 0u64..4_000_000_000,
            life in proptest::option::of(0u64..100_000_000),
        ) {
            let mut contents = contents();
            contents.sessions[0].login = login;
            contents.sessions[0].grant.access = Secret::new(access);
            contents.sessions[0].grant.obtained_at = time(obtained);
            contents.sessions[0].grant.expires_at = life.map(|l| time(obtained + l));
            let opened = open(&key(1), &seal(&key(1), &contents, [5; NONCE_LEN])).unwrap();
            prop_assert_eq!(summary(&opened), summary(&contents));
        }
    }
}
