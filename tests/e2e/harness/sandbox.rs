//! The sandbox side: `git` and `curl` with nothing but HTTPS_PROXY and gitgate's CA.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::gitgate::Gitgate;

/// The `GH_TOKEN` the sandbox's gh runs with: not a credential.
pub const GH_PLACEHOLDER: &str = "gitgate-replaces-this";

/// A client environment with its own HOME and no credentials.
pub struct Sandbox {
    pub home: tempfile::TempDir,
    proxy: String,
    ca: PathBuf,
}

impl Sandbox {
    /// A sandbox whose traffic goes through `gitgate`.
    pub fn new(gitgate: &Gitgate) -> Self {
        Self::with_proxy(gitgate, gitgate.proxy_url())
    }

    /// A sandbox whose traffic goes through `gitgate` at `proxy` (e.g. with a profile's
    /// credentials in it, or through a relay).
    pub fn with_proxy(gitgate: &Gitgate, proxy: String) -> Self {
        let home = tempfile::tempdir().expect("home");
        std::fs::write(
            home.path().join(".gitconfig"),
            "[user]\n\tname = Sandbox\n\temail = sandbox@example.invalid\n[init]\n\tdefaultBranch = main\n[advice]\n\tdetachedHead = false\n",
        )
        .expect("gitconfig");
        Self {
            home,
            proxy,
            ca: gitgate.ca_file(),
        }
    }

    /// Appends `text` to the sandbox's `~/.gitconfig`.
    pub fn append_gitconfig(&self, text: &str) {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(self.home.path().join(".gitconfig"))
            .expect("gitconfig");
        file.write_all(text.as_bytes()).expect("append gitconfig");
    }

    /// A path inside HOME.
    pub fn path(&self, name: &str) -> PathBuf {
        self.home.path().join(name)
    }

    /// The complete environment every sandbox command runs with.
    pub fn environment(&self) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = ["PATH", "LANG", "TMPDIR"]
            .into_iter()
            .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_owned(), v)))
            .collect();
        let path = |p: &Path| p.display().to_string();
        env.extend([
            ("HOME".to_owned(), path(self.home.path())),
            ("HTTPS_PROXY".to_owned(), self.proxy.clone()),
            ("HTTP_PROXY".to_owned(), self.proxy.clone()),
            ("GIT_SSL_CAINFO".to_owned(), path(&self.ca)),
            ("GIT_CONFIG_NOSYSTEM".to_owned(), "1".to_owned()),
            ("GIT_TERMINAL_PROMPT".to_owned(), "0".to_owned()),
            ("GIT_ASKPASS".to_owned(), "/bin/false".to_owned()),
            // A transfer stalled for 30 s fails the test instead of hanging it.
            ("GIT_HTTP_LOW_SPEED_LIMIT".to_owned(), "1".to_owned()),
            ("GIT_HTTP_LOW_SPEED_TIME".to_owned(), "30".to_owned()),
        ]);
        env
    }

    fn env(&self, command: &mut Command) {
        command.env_clear().envs(self.environment());
    }

    /// `git ARGS…` in `cwd`.
    pub fn git(&self, cwd: &Path, args: &[&str]) -> Output {
        self.git_with_env(cwd, args, &[])
    }

    /// `git ARGS…` in `cwd` with extra environment variables.
    pub fn git_with_env(&self, cwd: &Path, args: &[&str], extra: &[(&str, &str)]) -> Output {
        let mut command = Command::new("git");
        self.env(&mut command);
        command
            .envs(extra.iter().copied())
            .args(args)
            .current_dir(cwd)
            .output()
            .expect("run git")
    }

    /// `git ARGS…` that must succeed; returns stderr.
    pub fn git_ok(&self, cwd: &Path, args: &[&str]) -> String {
        let out = self.git(cwd, args);
        assert!(out.status.success(), "git {args:?} failed:\n{}", text(&out));
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// `git ARGS…` that must fail; returns stdout and stderr.
    pub fn git_fails(&self, cwd: &Path, args: &[&str]) -> String {
        let out = self.git(cwd, args);
        assert!(
            !out.status.success(),
            "git {args:?} should have failed:\n{}",
            text(&out)
        );
        text(&out)
    }

    /// Clones `owner/repo` from github.com into HOME/`dir`.
    pub fn clone_repo(&self, owner_repo: &str, dir: &str) -> PathBuf {
        let url = format!("https://github.com/{owner_repo}.git");
        self.git_ok(self.home.path(), &["clone", "-q", &url, dir]);
        self.path(dir)
    }

    /// Makes a commit in `repo` touching `file`.
    pub fn commit(&self, repo: &Path, file: &str, contents: &str) -> String {
        let path = repo.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&path, contents).expect("write");
        self.git_ok(repo, &["add", file]);
        self.git_ok(repo, &["commit", "-q", "-m", &format!("change {file}")]);
        let out = self.git(repo, &["rev-parse", "HEAD"]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// `gh ARGS…` in `cwd` (GitHub CLI, host github.com), trusting gitgate's CA; its
    /// configuration and its response cache (under TMPDIR) live in HOME. gh refuses to
    /// start without some token, so it gets [`GH_PLACEHOLDER`], which is no credential:
    /// gitgate replaces it.
    pub fn gh(&self, cwd: &Path, args: &[&str]) -> Output {
        let mut command = Command::new("gh");
        self.env(&mut command);
        let tmp = self.home.path().join("tmp");
        std::fs::create_dir_all(&tmp).expect("gh TMPDIR");
        command
            .envs([
                ("SSL_CERT_FILE", self.ca.as_os_str()),
                (
                    "GH_CONFIG_DIR",
                    self.home.path().join(".config/gh").as_os_str(),
                ),
                ("GH_NO_UPDATE_NOTIFIER", "1".as_ref()),
                ("GH_PROMPT_DISABLED", "1".as_ref()),
                ("NO_COLOR", "1".as_ref()),
                ("TMPDIR", tmp.as_os_str()),
                ("GH_TOKEN", GH_PLACEHOLDER.as_ref()),
            ])
            .args(args)
            .current_dir(cwd)
            .output()
            .expect("run gh")
    }

    /// `curl ARGS…` through the proxy, trusting gitgate's CA.
    pub fn curl(&self, args: &[&str]) -> Output {
        let mut command = Command::new("curl");
        self.env(&mut command);
        command
            .args([
                "-sS",
                "--max-time",
                "60",
                "--proxy",
                &self.proxy,
                "--cacert",
            ])
            .arg(&self.ca)
            .args(args)
            .output()
            .expect("run curl")
    }
}

/// stdout and stderr of a command, for messages.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
