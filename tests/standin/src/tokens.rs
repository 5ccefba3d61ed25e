//! Installations, minting installation access tokens, and checking them on git requests.
//!
//! Pure logic: the caller supplies `now`, the new token string and a repo-existence oracle.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// At most this many tokens are minted per stand-in.
const MAX_MINTS: usize = 10_000;
/// GitHub's limit on `repositories` in one token request.
const MAX_REPOS_PER_MINT: usize = 500;

pub(crate) const REPO_NOT_ACCESSIBLE: &str = "There is at least one repository that does not \
     exist or is not accessible to the parent installation.";
pub(crate) const PERMISSION_NOT_GRANTED: &str =
    "The permissions requested are not granted to this installation.";

/// Kind of account an installation belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccountType {
    /// An organization (`GET /orgs/{org}/installation`).
    Organization,
    /// A user (`GET /users/{user}/installation`).
    User,
}

impl AccountType {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Organization => "Organization",
            Self::User => "User",
        }
    }
}

/// Which repositories of its account an installation reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Selection {
    /// Every repository of the account, including ones created later.
    All,
    /// Only the repositories listed in [`Installation::repositories`].
    Selected,
}

impl Selection {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Selected => "selected",
        }
    }
}

/// A GitHub App installation on one account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Installation {
    /// Installation id (`/app/installations/{id}`).
    pub id: u64,
    /// Account login (lowercase; matched case-insensitively).
    pub account: String,
    /// Organization or user.
    pub account_type: AccountType,
    /// `all` or `selected`.
    pub selection: Selection,
    /// Repository names (no owner). With [`Selection::Selected`] the complete list; with
    /// [`Selection::All`] the repos to seed, any other repo of the account is reached too.
    pub repositories: Vec<String>,
    /// Permissions granted to the installation, e.g. `contents` → `write`.
    pub permissions: BTreeMap<String, String>,
}

impl Installation {
    /// An installation with the given repositories and the permissions of an App that
    /// serves git and the API: `contents`, `pull_requests` and `issues` write;
    /// `metadata`, `actions`, `checks` and `statuses` read.
    pub fn new(
        id: u64,
        account: &str,
        account_type: AccountType,
        selection: Selection,
        repositories: &[&str],
    ) -> Self {
        Self {
            id,
            account: account.to_ascii_lowercase(),
            account_type,
            selection,
            repositories: repositories
                .iter()
                .map(|r| r.to_ascii_lowercase())
                .collect(),
            permissions: perms(&[
                ("actions", "read"),
                ("checks", "read"),
                ("contents", "write"),
                ("issues", "write"),
                ("metadata", "read"),
                ("pull_requests", "write"),
                ("statuses", "read"),
            ]),
        }
    }

    /// Whether this installation reaches `owner/repo` (lowercase).
    pub(crate) fn covers(
        &self,
        owner: &str,
        repo: &str,
        exists: &dyn Fn(&str, &str) -> bool,
    ) -> bool {
        self.account == owner
            && match self.selection {
                Selection::Selected => self.repositories.iter().any(|r| r == repo),
                Selection::All => {
                    self.repositories.iter().any(|r| r == repo) || exists(owner, repo)
                }
            }
    }
}

/// Builds a permission map from pairs.
pub(crate) fn perms(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// One installation access token as minted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mint {
    /// Installation the token belongs to.
    pub installation_id: u64,
    /// `repositories` exactly as requested: `None` when omitted. `Some(vec![])` (sent as
    /// `[]`) was granted ALL repositories, as GitHub does.
    pub repositories: Option<Vec<String>>,
    /// Permissions granted (the requested ones, or the installation's when omitted).
    pub permissions: BTreeMap<String, String>,
    /// The token (`ghs_` + 36 alphanumerics).
    pub token: String,
    /// Expiry, whole seconds.
    pub expires_at: SystemTime,
}

/// What a token may reach, looked up on every git request.
#[derive(Clone, Debug)]
struct Grant {
    installation: usize,
    /// `None` = every repository of the installation.
    repositories: Option<BTreeSet<String>>,
    permissions: BTreeMap<String, Level>,
    expires_at: SystemTime,
}

/// Permission levels, ordered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Level {
    None,
    Read,
    Write,
    Admin,
}

impl Level {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "read" => Some(Self::Read),
            "write" => Some(Self::Write),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }
}

/// A parsed `POST /app/installations/{id}/access_tokens` body.
#[derive(Clone, Debug, Default)]
pub(crate) struct MintRequest {
    pub(crate) repositories: Option<Vec<String>>,
    pub(crate) permissions: Option<BTreeMap<String, String>>,
}

/// Why a mint was refused, mapped to GitHub's status and message by the API layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum MintError {
    /// 404: no such installation.
    NoInstallation,
    /// 422: a repository is not reachable.
    RepoNotAccessible,
    /// 422: a permission exceeds the installation's.
    PermissionNotGranted,
    /// 422: malformed request (message).
    Invalid(&'static str),
    /// 403: the stand-in's mint budget is spent.
    Exhausted,
}

impl std::fmt::Display for MintError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::NoInstallation => "Not Found",
            Self::RepoNotAccessible => REPO_NOT_ACCESSIBLE,
            Self::PermissionNotGranted => PERMISSION_NOT_GRANTED,
            Self::Invalid(message) => message,
            Self::Exhausted => "Token budget of the stand-in exhausted",
        })
    }
}

impl std::error::Error for MintError {}

/// A successful mint: what to answer.
#[derive(Clone, Debug)]
pub(crate) struct Minted {
    pub(crate) mint: Mint,
    pub(crate) selection: Selection,
    /// Repository names the token reaches (for the response).
    pub(crate) repositories: Vec<String>,
    pub(crate) account: String,
}

/// Git access a request needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    Read,
    Write,
}

/// Why a git request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Denied {
    /// 401: unknown or expired token.
    Unauthorized,
    /// 404: the token does not reach the repository.
    NotFound,
    /// 403: the token lacks the permission.
    Forbidden(Access),
}

/// Installations, tokens and the mint log.
#[derive(Debug)]
pub(crate) struct TokenStore {
    installations: Vec<Installation>,
    grants: HashMap<String, Grant>,
    mints: Vec<Mint>,
    lifetime: Duration,
}

impl TokenStore {
    pub(crate) fn new(installations: Vec<Installation>, lifetime: Duration) -> Self {
        Self {
            installations,
            grants: HashMap::new(),
            mints: Vec::new(),
            lifetime,
        }
    }

    pub(crate) fn installations(&self) -> &[Installation] {
        &self.installations
    }

    /// The App is uninstalled from `account` and installed again: the installation gets
    /// `id`, and every token of the old one stops working.
    pub(crate) fn reinstall(&mut self, account: &str, id: u64) -> bool {
        let Some(index) = self
            .installations
            .iter()
            .position(|i| i.account.eq_ignore_ascii_case(account))
        else {
            return false;
        };
        self.installations[index].id = id;
        self.grants.retain(|_, grant| grant.installation != index);
        true
    }

    pub(crate) fn installation(&self, id: u64) -> Option<&Installation> {
        self.installations.iter().find(|i| i.id == id)
    }

    /// The installation that reaches `owner/repo`, if any.
    pub(crate) fn for_repo(
        &self,
        owner: &str,
        repo: &str,
        exists: &dyn Fn(&str, &str) -> bool,
    ) -> Option<&Installation> {
        self.installations
            .iter()
            .find(|i| i.covers(owner, repo, exists))
    }

    /// The installation on account `login` of kind `kind`, if any.
    pub(crate) fn for_account(&self, login: &str, kind: AccountType) -> Option<&Installation> {
        self.installations
            .iter()
            .find(|i| i.account == login && i.account_type == kind)
    }

    pub(crate) fn set_lifetime(&mut self, lifetime: Duration) {
        self.lifetime = lifetime;
    }

    pub(crate) fn mints(&self) -> &[Mint] {
        &self.mints
    }

    pub(crate) fn clear_mints(&mut self) {
        self.mints.clear();
    }

    /// Mints `token` for installation `id`, validating the request as GitHub does.
    pub(crate) fn mint(
        &mut self,
        id: u64,
        req: MintRequest,
        token: String,
        now: SystemTime,
        exists: &dyn Fn(&str, &str) -> bool,
    ) -> Result<Minted, MintError> {
        let index = self
            .installations
            .iter()
            .position(|i| i.id == id)
            .ok_or(MintError::NoInstallation)?;
        if self.mints.len() >= MAX_MINTS {
            return Err(MintError::Exhausted);
        }
        let inst = &self.installations[index];

        let scoped = match &req.repositories {
            Some(names) if names.len() > MAX_REPOS_PER_MINT => {
                return Err(MintError::Invalid(
                    "Too many repositories requested (maximum is 500)",
                ));
            }
            // An empty list means every repository, as on GitHub.
            Some(names) if !names.is_empty() => {
                let mut set = BTreeSet::new();
                for name in names {
                    let name = name.to_ascii_lowercase();
                    if name.contains('/') || !inst.covers(&inst.account, &name, exists) {
                        return Err(MintError::RepoNotAccessible);
                    }
                    set.insert(name);
                }
                Some(set)
            }
            _ => None,
        };

        let permissions = match &req.permissions {
            None => inst.permissions.clone(),
            Some(asked) => {
                for (name, level) in asked {
                    let want = Level::parse(level)
                        .ok_or(MintError::Invalid("Invalid permission level"))?;
                    let have = inst
                        .permissions
                        .get(name)
                        .and_then(|l| Level::parse(l))
                        .unwrap_or(Level::None);
                    if want > have {
                        return Err(MintError::PermissionNotGranted);
                    }
                }
                asked.clone()
            }
        };
        let levels = permissions
            .iter()
            .filter_map(|(name, level)| Some((name.clone(), Level::parse(level)?)))
            .collect();

        let expires_at = whole_seconds(now + self.lifetime);
        let repositories = match &scoped {
            Some(set) => set.iter().cloned().collect(),
            None => inst.repositories.clone(),
        };
        let minted = Minted {
            mint: Mint {
                installation_id: id,
                repositories: req.repositories.clone(),
                permissions,
                token: token.clone(),
                expires_at,
            },
            selection: if scoped.is_some() {
                Selection::Selected
            } else {
                inst.selection
            },
            repositories,
            account: inst.account.clone(),
        };
        self.grants.insert(
            token,
            Grant {
                installation: index,
                repositories: scoped,
                permissions: levels,
                expires_at,
            },
        );
        self.mints.push(minted.mint.clone());
        Ok(minted)
    }

    /// Checks a git request for `owner/repo` (lowercase) carrying a live user token.
    pub(crate) fn check_user(
        &self,
        owner: &str,
        repo: &str,
        exists: &dyn Fn(&str, &str) -> bool,
    ) -> Result<(), Denied> {
        match self.for_repo(owner, repo, exists) {
            Some(_) => Ok(()),
            None => Err(Denied::NotFound),
        }
    }

    /// Checks a git request for `owner/repo` (lowercase) carrying `token`.
    pub(crate) fn check_git(
        &self,
        token: &str,
        owner: &str,
        repo: &str,
        access: Access,
        now: SystemTime,
        exists: &dyn Fn(&str, &str) -> bool,
    ) -> Result<(), Denied> {
        let need = match access {
            Access::Read => Level::Read,
            Access::Write => Level::Write,
        };
        match self.check(token, owner, repo, &[&[("contents", need)]], now, exists) {
            Err(Denied::Forbidden(_)) => Err(Denied::Forbidden(access)),
            checked => checked,
        }
    }

    /// Checks an API call on `owner/repo` (lowercase) carrying `token`: the token must
    /// reach the repository and hold every permission of at least one of `alternatives`
    /// (an empty list needs only `metadata`), as GitHub checks an installation token.
    pub(crate) fn check(
        &self,
        token: &str,
        owner: &str,
        repo: &str,
        alternatives: &[&[(&str, Level)]],
        now: SystemTime,
        exists: &dyn Fn(&str, &str) -> bool,
    ) -> Result<(), Denied> {
        self.reach(token, owner, repo, now, exists)?;
        let grant = self.grants.get(token).ok_or(Denied::Unauthorized)?;
        let holds = |needs: &&[(&str, Level)]| {
            needs.iter().all(|(name, level)| {
                grant.permissions.get(*name).copied().unwrap_or(Level::None) >= *level
            })
        };
        if alternatives.is_empty() || alternatives.iter().any(holds) {
            Ok(())
        } else {
            Err(Denied::Forbidden(Access::Write))
        }
    }

    /// Whether `token` is a live installation token.
    pub(crate) fn live(&self, token: &str, now: SystemTime) -> bool {
        self.grants.get(token).is_some_and(|g| g.expires_at > now)
    }

    /// Whether `token` is live and reaches `owner/repo`.
    fn reach(
        &self,
        token: &str,
        owner: &str,
        repo: &str,
        now: SystemTime,
        exists: &dyn Fn(&str, &str) -> bool,
    ) -> Result<(), Denied> {
        let grant = self.grants.get(token).ok_or(Denied::Unauthorized)?;
        if grant.expires_at <= now {
            return Err(Denied::Unauthorized);
        }
        let inst = &self.installations[grant.installation];
        let reaches = match &grant.repositories {
            Some(set) => inst.account == owner && set.contains(repo),
            None => inst.covers(owner, repo, exists),
        };
        if !reaches {
            return Err(Denied::NotFound);
        }
        Ok(())
    }
}

/// Truncates to whole seconds since the epoch, as `expires_at` is printed.
fn whole_seconds(t: SystemTime) -> SystemTime {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    UNIX_EPOCH + Duration::from_secs(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> TokenStore {
        TokenStore::new(crate::default_installations(), Duration::from_secs(3600))
    }

    fn no_repo(_: &str, _: &str) -> bool {
        false
    }

    fn req(repos: Option<&[&str]>, p: Option<&[(&str, &str)]>) -> MintRequest {
        MintRequest {
            repositories: repos.map(|r| r.iter().map(|s| (*s).to_owned()).collect()),
            permissions: p.map(perms),
        }
    }

    #[test]
    fn mint_validation_table() {
        let now = SystemTime::now();
        let cases: &[(u64, MintRequest, Result<Selection, MintError>)] = &[
            (1001, req(None, None), Ok(Selection::Selected)),
            (1001, req(Some(&[]), None), Ok(Selection::Selected)),
            (
                1001,
                req(Some(&["App"]), Some(&[("contents", "read")])),
                Ok(Selection::Selected),
            ),
            (
                1001,
                req(Some(&["acme/app"]), None),
                Err(MintError::RepoNotAccessible),
            ),
            (
                1001,
                req(Some(&["tools"]), None),
                Err(MintError::RepoNotAccessible),
            ),
            (
                1001,
                req(None, Some(&[("administration", "read")])),
                Err(MintError::PermissionNotGranted),
            ),
            (
                1001,
                req(None, Some(&[("contents", "admin")])),
                Err(MintError::PermissionNotGranted),
            ),
            (
                1001,
                req(None, Some(&[("contents", "all")])),
                Err(MintError::Invalid("Invalid permission level")),
            ),
            (2002, req(None, None), Ok(Selection::All)),
            (3003, req(None, None), Err(MintError::NoInstallation)),
        ];
        for (i, (id, r, want)) in cases.iter().enumerate() {
            let mut s = store();
            let got = s.mint(*id, r.clone(), format!("t{i}"), now, &no_repo);
            assert_eq!(got.map(|m| m.selection), *want, "case {i}");
        }
    }

    #[test]
    fn git_checks() {
        let now = SystemTime::now();
        let mut s = store();
        s.mint(
            1001,
            req(Some(&["app"]), Some(&[("contents", "read")])),
            "r".into(),
            now,
            &no_repo,
        )
        .unwrap();
        s.mint(1001, req(Some(&[]), None), "w".into(), now, &no_repo)
            .unwrap();
        s.set_lifetime(Duration::ZERO);
        s.mint(1001, req(None, None), "x".into(), now, &no_repo)
            .unwrap();
        type Case<'a> = (&'a str, &'a str, &'a str, Access, Result<(), Denied>);
        let cases: &[Case<'_>] = &[
            ("r", "acme", "app", Access::Read, Ok(())),
            (
                "r",
                "acme",
                "app",
                Access::Write,
                Err(Denied::Forbidden(Access::Write)),
            ),
            ("r", "acme", "secret", Access::Read, Err(Denied::NotFound)),
            ("w", "acme", "secret", Access::Write, Ok(())),
            ("w", "bob", "tools", Access::Read, Err(Denied::NotFound)),
            ("x", "acme", "app", Access::Read, Err(Denied::Unauthorized)),
            (
                "nope",
                "acme",
                "app",
                Access::Read,
                Err(Denied::Unauthorized),
            ),
        ];
        for (token, owner, repo, access, want) in cases {
            assert_eq!(
                s.check_git(token, owner, repo, *access, now, &no_repo),
                *want,
                "{token} {owner}/{repo} {access:?}"
            );
        }
    }
}
