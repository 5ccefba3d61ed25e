//! Rules on what a push carries, decided by reading its pack: force-push protection
//! (from the pack, else through the stand-in's compare endpoint) and size limits.

use std::path::{Path, PathBuf};

use gitgate_standin::{Fault, StandIn};

use crate::harness::{self, Gitgate, Sandbox, app_config, text};

const POLICY: &str = "{allowedRepos: [acme/app], allowedRefs: [main, topic, 'agent/*']}";

fn rev(sandbox: &Sandbox, repo: &Path, what: &str) -> String {
    String::from_utf8(sandbox.git(repo, &["rev-parse", what]).stdout)
        .unwrap()
        .trim()
        .to_owned()
}

fn upstream(standin: &StandIn, branch: &str) -> Option<String> {
    standin.rev_parse("acme", "app", &format!("refs/heads/{branch}"))
}

/// gitgate with `policy` and `limits` (a YAML flow mapping), a sandbox, and its clone of
/// acme/app.
fn with_limits(standin: &StandIn, policy: &str, limits: &str) -> (Gitgate, Sandbox, PathBuf) {
    let gitgate = Gitgate::start(&harness::limited_config(standin, policy, limits));
    let sandbox = Sandbox::new(&gitgate);
    let repo = sandbox.clone_repo("acme/app", "app");
    (gitgate, sandbox, repo)
}

/// The pack git sends for `revs` (one per line, `^` to exclude) of `repo`.
fn pack_of(repo: &Path, revs: &str) -> Vec<u8> {
    use std::io::Write;
    let mut packer = std::process::Command::new("git")
        .args(["pack-objects", "--stdout", "--revs", "-q"])
        .current_dir(repo)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(packer.stdin.take().unwrap(), "{revs}").unwrap();
    let pack = packer.wait_with_output().unwrap().stdout;
    assert!(pack.starts_with(b"PACK"), "{pack:?}");
    pack
}

/// A receive-pack body updating main from `old` to `new` with `capabilities`: the
/// command list, then `pack`; and the command list's length.
fn push_body(old: &str, new: &str, capabilities: &str, pack: &[u8]) -> (Vec<u8>, usize) {
    let command = format!("{old} {new} refs/heads/main\0{capabilities}\n");
    let mut body = format!("{:04x}{command}0000", command.len() + 4).into_bytes();
    let head_len = body.len();
    body.extend_from_slice(pack);
    (body, head_len)
}

fn compare_calls(standin: &StandIn) -> usize {
    standin
        .requests()
        .iter()
        .filter(|r| r.target.contains("/compare/"))
        .count()
}

#[test]
fn fast_forwards_pass_and_rewrites_are_refused_unless_the_ref_allows_them() {
    let standin = harness::standin();
    let policy = "{allowedRepos: [acme/app], allowedRefs: [main, 'agent/*'], forcePushAllowedRefs: ['agent/*']}";
    let gitgate = Gitgate::start(&app_config(&standin, policy));
    let sandbox = Sandbox::new(&gitgate);
    let repo = sandbox.clone_repo("acme/app", "app");

    // A fast-forward, proven from the pack alone.
    let one = sandbox.commit(&repo, "a.txt", "one\n");
    sandbox.git_ok(&repo, &["push", "-q", "origin", "HEAD:main"]);
    assert_eq!(upstream(&standin, "main").as_deref(), Some(one.as_str()));
    sandbox.git_ok(&repo, &["push", "-q", "origin", "HEAD:agent/x"]);

    // Rewrite the last commit and force it onto main: refused, main unchanged.
    sandbox.git_ok(&repo, &["commit", "-q", "--amend", "-m", "rewritten"]);
    let rewritten = rev(&sandbox, &repo, "HEAD");
    let denied = sandbox.git_fails(&repo, &["push", "--force", "origin", "HEAD:main"]);
    assert!(
        denied.contains(
            "! [remote rejected] HEAD -> main (gitgate: non-fast-forward update denied by policy)"
        ),
        "{denied}"
    );
    assert_eq!(upstream(&standin, "main").as_deref(), Some(one.as_str()));
    // The same rewrite on a forcePushAllowedRefs branch goes through.
    sandbox.git_ok(&repo, &["push", "-q", "--force", "origin", "HEAD:agent/x"]);
    assert_eq!(
        upstream(&standin, "agent/x").as_deref(),
        Some(rewritten.as_str())
    );
    let record = gitgate.wait_for_record(|r| r["rule"] == "forcePush" && r["decision"] == "deny");
    assert_eq!(record["refs"][0]["ref"], "refs/heads/main");
    assert_eq!(
        record["refs"][0]["reason"],
        "non-fast-forward update denied by policy"
    );
    // The fast-forward was proven from the pack; only the rewrite, whose history leaves
    // the pack at the old main's parent, was asked about (and the exempt ref not at all).
    assert_eq!(compare_calls(&standin), 1);
}

#[test]
fn history_outside_the_pack_is_decided_through_the_compare_api() {
    let standin = harness::standin();
    let gitgate = Gitgate::start(&app_config(&standin, POLICY));
    let sandbox = Sandbox::new(&gitgate);
    let repo = sandbox.clone_repo("acme/app", "app");
    // Upstream: main = c3 (c1 <- c2 <- c3), topic = c1.
    let c1 = sandbox.commit(&repo, "a.txt", "1\n");
    sandbox.git_ok(&repo, &["push", "-q", "origin", "HEAD:topic"]);
    let c2 = sandbox.commit(&repo, "a.txt", "2\n");
    let c3 = sandbox.commit(&repo, "a.txt", "3\n");
    sandbox.git_ok(&repo, &["push", "-q", "origin", "HEAD:main"]);
    // That pack held c2 and c3 only (upstream had c1 on topic): one API call for c1.
    assert_eq!(compare_calls(&standin), 1);

    // topic c1 -> c2: nothing new to send (c2 is reachable from main upstream), so the
    // pack is empty and the API tells: a fast-forward.
    sandbox.git_ok(
        &repo,
        &["push", "-q", "origin", &format!("{c2}:refs/heads/topic")],
    );
    assert_eq!(upstream(&standin, "topic").as_deref(), Some(c2.as_str()));
    assert_eq!(compare_calls(&standin), 2);

    // main c3 -> c2 is a rewind: refused, by the API's answer.
    let denied = sandbox.git_fails(
        &repo,
        &[
            "push",
            "--force",
            "origin",
            &format!("{c2}:refs/heads/main"),
        ],
    );
    assert!(
        denied.contains("(gitgate: non-fast-forward update denied by policy)"),
        "{denied}"
    );
    assert_eq!(upstream(&standin, "main").as_deref(), Some(c3.as_str()));

    // The API is down: an update it would have to decide is refused, saying why.
    standin.set_fault(Some(Fault::ApiUnavailable));
    let denied = sandbox.git_fails(
        &repo,
        &["push", "origin", &format!("{c3}:refs/heads/topic")],
    );
    assert!(
        denied.contains("gitgate: cannot tell whether this update is a fast-forward (the GitHub API compare of acme/app failed: HTTP 503)"),
        "{denied}"
    );
    assert_eq!(upstream(&standin, "topic").as_deref(), Some(c2.as_str()));
    // A fast-forward the pack proves needs no API.
    let c4 = sandbox.commit(&repo, "a.txt", "4\n");
    sandbox.git_ok(&repo, &["push", "-q", "origin", "HEAD:main"]);
    assert_eq!(upstream(&standin, "main").as_deref(), Some(c4.as_str()));
    standin.set_fault(None);
    assert!(
        standin.requests().iter().any(|r| r
            .target
            .contains(&format!("/repos/acme/app/compare/{c1}...{c2}"))),
        "{:?}",
        standin.requests()
    );
}

#[test]
fn a_blob_over_max_blob_size_is_refused_with_its_path() {
    let standin = harness::standin();
    let policy = "{allowedRepos: [acme/app], allowedRefs: [main], maxBlobSize: 50MB}";
    let gitgate = Gitgate::start(&app_config(&standin, policy));
    let sandbox = Sandbox::new(&gitgate);
    let repo = sandbox.clone_repo("acme/app", "app");
    let before = upstream(&standin, "main");

    std::fs::create_dir(repo.join("media")).unwrap();
    harness::write_noise(&repo.join("media/video.bin"), 60);
    sandbox.git_ok(&repo, &["add", "media"]);
    sandbox.git_ok(&repo, &["commit", "-q", "-m", "video"]);
    let denied = sandbox.git_fails(&repo, &["push", "origin", "HEAD:main"]);
    assert!(
        denied.contains("(gitgate: media/video.bin is 62.9 MB, over maxBlobSize 50.0 MB)"),
        "{denied}"
    );
    assert_eq!(upstream(&standin, "main"), before);

    // Replaced by a small file, the push passes.
    sandbox.git_ok(&repo, &["rm", "-q", "media/video.bin"]);
    sandbox.commit(&repo, "media/small.txt", "small\n");
    sandbox.git_ok(&repo, &["reset", "-q", "--soft", "origin/main"]);
    sandbox.git_ok(&repo, &["commit", "-q", "-m", "small media"]);
    sandbox.git_ok(&repo, &["push", "-q", "origin", "HEAD:main"]);
}

/// Held pushes go to a directory of gitgate's own in `TMPDIR`. A gitgate that is killed
/// cannot remove it; the next one to start on the same `TMPDIR` does, and leaves a living
/// gitgate's alone.
#[test]
fn what_a_killed_gitgate_held_on_disk_is_removed_by_the_next_one() {
    let standin = harness::standin();
    let tmp = tempfile::tempdir().unwrap();
    let spool_dirs = || -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .starts_with("gitgate-spool-")
            })
            .collect();
        dirs.sort();
        dirs
    };
    let policy = "{allowedRepos: [acme/app], allowedRefs: [main], maxBlobSize: 50MB}";
    let start = || {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("gitgate.yaml"),
            app_config(&standin, policy),
        )
        .unwrap();
        Gitgate::start_with_env(dir, &[("TMPDIR", tmp.path().to_str().unwrap())])
    };
    let push = |gitgate: &Gitgate, what: &str| {
        let sandbox = Sandbox::new(gitgate);
        let repo = sandbox.clone_repo("acme/app", "app");
        sandbox.commit(&repo, &format!("{what}.txt"), what);
        sandbox.git_ok(&repo, &["push", "-q", "origin", "HEAD:main"]);
    };
    let mut killed = start();
    push(&killed, "first");
    let left = spool_dirs();
    assert_eq!(left.len(), 1, "{left:?}");
    killed.kill();
    assert_eq!(spool_dirs(), left, "nothing of gitgate's ran after SIGKILL");

    let next = start();
    let removed = "removed the held-push directories that killed gitgates left";
    assert!(next.output().contains(removed), "{}", next.output());
    assert!(spool_dirs().is_empty());
    push(&next, "second");
    let held = spool_dirs();
    assert_eq!(held.len(), 1);
    // A gitgate starting beside a living one leaves its directory.
    let beside = start();
    assert!(!beside.output().contains(removed), "{}", beside.output());
    assert_eq!(spool_dirs(), held);
}

#[test]
fn a_pack_over_max_push_size_is_refused_before_it_is_all_read() {
    let standin = harness::standin();
    let policy = "{allowedRepos: [acme/app], allowedRefs: [main], maxPushSize: 5MB}";
    let gitgate = Gitgate::start(&app_config(&standin, policy));
    let sandbox = Sandbox::new(&gitgate);
    let repo = sandbox.clone_repo("acme/app", "app");
    harness::write_noise(&repo.join("big.bin"), 8);
    sandbox.git_ok(&repo, &["add", "big.bin"]);
    sandbox.git_ok(&repo, &["commit", "-q", "-m", "big"]);
    let before = upstream(&standin, "main");
    let denied = sandbox.git_fails(&repo, &["push", "origin", "HEAD:main"]);
    assert!(
        denied.contains("gitgate: the pushed pack is over maxPushSize 5.00 MB"),
        "{denied}"
    );
    assert_eq!(upstream(&standin, "main"), before);
    // At most git's small probe request reached upstream, never the pack.
    assert!(
        standin
            .requests()
            .iter()
            .filter(|r| r.target.ends_with("/git-receive-pack"))
            .all(|r| r.body_bytes < 1024)
    );
}

#[test]
fn a_200_mb_push_with_rules_on_is_held_on_disk_in_bounded_memory() {
    let standin = harness::standin();
    let policy =
        "{allowedRepos: [acme/app], allowedRefs: [main], maxBlobSize: 1GB, maxPushSize: 1GB}";
    let gitgate = Gitgate::start(&app_config(&standin, policy));
    let sandbox = Sandbox::new(&gitgate);
    let repo = sandbox.clone_repo("acme/app", "app");
    let before = gitgate.peak_rss_kib();
    harness::write_noise(&repo.join("big.bin"), 200);
    sandbox.git_ok(&repo, &["add", "big.bin"]);
    sandbox.git_ok(&repo, &["commit", "-q", "-m", "big"]);
    let head = rev(&sandbox, &repo, "HEAD");
    sandbox.git_ok(&repo, &["push", "-q", "origin", "HEAD:main"]);
    assert_eq!(upstream(&standin, "main").as_deref(), Some(head.as_str()));
    let growth = gitgate.peak_rss_kib().saturating_sub(before);
    assert!(
        growth < 16 * 1024,
        "gitgate's peak RSS grew by {growth} KiB during a 200 MB push with rules on"
    );
    let out = sandbox.git(&repo, &["log", "-1", "--format=%H", "origin/main"]);
    assert_eq!(text(&out).trim(), head);
}

#[test]
fn pushes_touching_protected_paths_are_refused_others_pass() {
    let standin = harness::standin();
    // An unprotected gitgate seeds the repository: a workflow, and 300 files at the root
    // so that git sends later root trees as thin deltas against the server's.
    let open = Gitgate::start(&app_config(
        &standin,
        "{allowedRepos: [acme/app], allowedRefs: [main]}",
    ));
    let seeder = Sandbox::new(&open);
    let seed = seeder.clone_repo("acme/app", "seed");
    for i in 0..300 {
        std::fs::write(seed.join(format!("file-{i:03}.txt")), format!("file {i}\n")).unwrap();
    }
    seeder.git_ok(&seed, &["add", "."]);
    seeder.commit(&seed, ".github/workflows/ci.yml", "on: push\n");
    seeder.git_ok(&seed, &["push", "-q", "origin", "HEAD:main"]);

    let policy = "{allowedRepos: [acme/app], allowedRefs: [main, 'agent/*'], protectedPaths: ['.github/workflows/**', CODEOWNERS]}";
    let gitgate = Gitgate::start(&app_config(&standin, policy));
    let sandbox = Sandbox::new(&gitgate);
    let repo = sandbox.clone_repo("acme/app", "app");

    // Other files: passes (root trees come from the API to diff against, and as delta
    // bases for the pushed root tree).
    let fine = sandbox.commit(&repo, "file-007.txt", "changed\n");
    sandbox.git_ok(&repo, &["push", "-q", "origin", "HEAD:main"]);
    assert_eq!(upstream(&standin, "main").as_deref(), Some(fine.as_str()));
    let tree_calls = || {
        standin
            .requests()
            .iter()
            .filter(|r| r.target.contains("/git/trees/") || r.target.contains("/git/commits/"))
            .count()
    };
    assert!(tree_calls() > 0);
    // The pushed root tree came as a thin delta: gitgate first asked GitHub for it (404:
    // it is new), then decoded it against the old root tree it had read.
    let new_root = rev(&sandbox, &repo, "HEAD^{tree}");
    assert!(standin.requests().iter().any(|r| {
        r.target.ends_with(&format!("/git/trees/{new_root}")) && r.status == Some(404)
    }));

    // Changing the workflow, even on an agent branch: refused, naming commit and path.
    let bad = sandbox.commit(
        &repo,
        ".github/workflows/ci.yml",
        "on: [push, pull_request]\n",
    );
    let denied = sandbox.git_fails(&repo, &["push", "origin", "HEAD:agent/x"]);
    let expected = format!(
        "(gitgate: commit {} changes .github/workflows/ci.yml, which protectedPaths protects)",
        &bad[..12]
    );
    assert!(denied.contains(&expected), "{denied}");
    assert_eq!(upstream(&standin, "agent/x"), None);
    // Adding CODEOWNERS and deleting the workflow, in a commit behind a harmless one.
    sandbox.git_ok(&repo, &["reset", "-q", "--hard", "origin/main"]);
    sandbox.commit(&repo, "CODEOWNERS", "* @acme/owners\n");
    sandbox.git_ok(&repo, &["rm", "-q", ".github/workflows/ci.yml"]);
    sandbox.git_ok(&repo, &["commit", "-q", "-m", "drop ci"]);
    sandbox.commit(&repo, "file-001.txt", "harmless\n");
    let denied = sandbox.git_fails(&repo, &["push", "origin", "HEAD:main"]);
    assert!(
        denied.contains("which protectedPaths protects (and 1 more)"),
        "{denied}"
    );
    assert_eq!(upstream(&standin, "main").as_deref(), Some(fine.as_str()));
    gitgate.wait_for_record(|r| r["rule"] == "protectedPaths" && r["decision"] == "deny");
}

/// An ed25519 key pair made by `ssh-keygen` in `dir`; returns (private key file, public key line).
fn ssh_key(dir: &Path, name: &str) -> (std::path::PathBuf, String) {
    let file = dir.join(name);
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&file)
        .output()
        .expect("ssh-keygen");
    assert!(out.status.success(), "{}", text(&out));
    let public = std::fs::read_to_string(file.with_extension("pub")).unwrap();
    (file, public.trim().to_owned())
}

/// Commits a change to `a.txt`, signed with `key` when given.
fn signed_commit(sandbox: &Sandbox, repo: &Path, key: Option<&Path>, contents: &str) -> String {
    std::fs::write(repo.join("a.txt"), contents).unwrap();
    sandbox.git_ok(repo, &["add", "a.txt"]);
    match key {
        Some(key) => sandbox.git_ok(
            repo,
            &[
                "-c",
                "gpg.format=ssh",
                "-c",
                &format!("user.signingkey={}", key.display()),
                "commit",
                "-q",
                "-S",
                "-m",
                contents.trim(),
            ],
        ),
        None => sandbox.git_ok(repo, &["commit", "-q", "-m", contents.trim()]),
    };
    rev(sandbox, repo, "HEAD")
}

#[test]
fn commits_must_carry_an_ssh_signature_by_an_allowed_key() {
    let keys = tempfile::tempdir().unwrap();
    let (agent, agent_public) = ssh_key(keys.path(), "agent");
    let (other, _) = ssh_key(keys.path(), "other");
    let standin = harness::standin();
    let policy = format!(
        "{{allowedRepos: [acme/app], allowedRefs: [main], forcePush: allow, requireSignedCommits: {{keys: [\"{agent_public}\"]}}}}"
    );
    let gitgate = Gitgate::start(&app_config(&standin, &policy));
    let sandbox = Sandbox::new(&gitgate);
    let repo = sandbox.clone_repo("acme/app", "app");

    let good = signed_commit(&sandbox, &repo, Some(&agent), "signed\n");
    sandbox.git_ok(&repo, &["push", "-q", "origin", "HEAD:main"]);
    assert_eq!(upstream(&standin, "main").as_deref(), Some(good.as_str()));

    let wrong = signed_commit(&sandbox, &repo, Some(&other), "other key\n");
    let denied = sandbox.git_fails(&repo, &["push", "origin", "HEAD:main"]);
    assert!(
        denied.contains(&format!(
            "(gitgate: commit {} is signed by a key that requireSignedCommits does not allow (SHA256:",
            &wrong[..12]
        )),
        "{denied}"
    );
    sandbox.git_ok(&repo, &["reset", "-q", "--hard", "origin/main"]);
    let unsigned = signed_commit(&sandbox, &repo, None, "unsigned\n");
    let denied = sandbox.git_fails(&repo, &["push", "origin", "HEAD:main"]);
    assert!(
        denied.contains(&format!(
            "(gitgate: commit {} is not signed; every new commit must be signed with an allowed SSH key)",
            &unsigned[..12]
        )),
        "{denied}"
    );
    assert_eq!(upstream(&standin, "main").as_deref(), Some(good.as_str()));
}

/// An annotated tag is judged by the commit it names: a new tag of a new commit or of
/// one already on the default branch passes the per-commit rules; moving an existing
/// tag is a forced update.
#[test]
fn annotated_tags_are_judged_by_the_commits_they_name() {
    let keys = tempfile::tempdir().unwrap();
    let (agent, agent_public) = ssh_key(keys.path(), "agent");
    let standin = harness::standin();
    let policy = format!(
        "{{allowedRepos: [acme/app], allowedRefs: [main, side, 'refs/tags/v*', 'refs/tags/rel*'], forcePushAllowedRefs: ['refs/tags/rel*'], protectedPaths: ['.github/workflows/**'], requireSignedCommits: {{keys: [\"{agent_public}\"]}}}}"
    );
    let gitgate = Gitgate::start(&app_config(&standin, &policy));
    let sandbox = Sandbox::new(&gitgate);
    let repo = sandbox.clone_repo("acme/app", "app");
    let tag_on_github = |name: &str| standin.rev_parse("acme", "app", &format!("refs/tags/{name}"));

    // A tag of a new commit, pushed with it.
    let good = signed_commit(&sandbox, &repo, Some(&agent), "signed\n");
    sandbox.git_ok(&repo, &["tag", "-a", "v1", "-m", "one"]);
    sandbox.git_ok(
        &repo,
        &["push", "-q", "--follow-tags", "origin", "HEAD:main"],
    );
    assert_eq!(upstream(&standin, "main").as_deref(), Some(good.as_str()));
    assert_eq!(tag_on_github("v1"), Some(rev(&sandbox, &repo, "v1")));
    // A tag of a commit already on main, pushed alone (the pack holds only the tag).
    sandbox.git_ok(&repo, &["tag", "-a", "v2", "-m", "two", &good]);
    sandbox.git_ok(&repo, &["push", "-q", "origin", "v2"]);
    assert_eq!(tag_on_github("v2"), Some(rev(&sandbox, &repo, "v2")));

    // Moving a tag needs --force in git, and is refused as a forced update.
    signed_commit(&sandbox, &repo, Some(&agent), "next\n");
    sandbox.git_ok(&repo, &["push", "-q", "origin", "HEAD:main"]);
    sandbox.git_ok(&repo, &["tag", "-f", "-a", "v1", "-m", "moved"]);
    let denied = sandbox.git_fails(&repo, &["push", "--force", "origin", "v1"]);
    assert!(
        denied.contains("(gitgate: moving the existing tag refs/tags/v1 is a forced update"),
        "{denied}"
    );
    assert_ne!(tag_on_github("v1"), Some(rev(&sandbox, &repo, "v1")));

    // A tag allowed to move may go back behind its old commit, on a branch other than
    // the default one (the tag existed before).
    sandbox.git_ok(&repo, &["checkout", "-q", "-b", "side"]);
    let s1 = signed_commit(&sandbox, &repo, Some(&agent), "side one\n");
    let s2 = signed_commit(&sandbox, &repo, Some(&agent), "side two\n");
    sandbox.git_ok(&repo, &["push", "-q", "origin", "side"]);
    standin
        .update_ref("acme", "app", "refs/tags/rel-1", &s2)
        .unwrap();
    sandbox.git_ok(&repo, &["tag", "rel-1", &s1]);
    sandbox.git_ok(&repo, &["push", "-q", "--force", "origin", "rel-1"]);
    assert_eq!(tag_on_github("rel-1"), Some(s1));
}

#[test]
fn an_allowed_signers_file_can_require_the_committer_to_be_the_keys_principal() {
    let keys = tempfile::tempdir().unwrap();
    let (agent, agent_public) = ssh_key(keys.path(), "agent");
    let standin = harness::standin();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("allowed_signers"),
        format!("# who may sign\nagent@example.com namespaces=\"git\" {agent_public}\n"),
    )
    .unwrap();
    let policy = "{allowedRepos: [acme/app], allowedRefs: [main], forcePush: allow, requireSignedCommits: {allowedSignersFile: allowed_signers, committerEmailMatchesKey: true}}";
    std::fs::write(
        dir.path().join("gitgate.yaml"),
        app_config(&standin, policy),
    )
    .unwrap();
    let gitgate = Gitgate::start_in(dir);
    let sandbox = Sandbox::new(&gitgate);
    let repo = sandbox.clone_repo("acme/app", "app");
    sandbox.git_ok(&repo, &["config", "user.email", "agent@example.com"]);
    let good = signed_commit(&sandbox, &repo, Some(&agent), "mine\n");
    sandbox.git_ok(&repo, &["push", "-q", "origin", "HEAD:main"]);
    assert_eq!(upstream(&standin, "main").as_deref(), Some(good.as_str()));

    sandbox.git_ok(&repo, &["config", "user.email", "mallory@example.com"]);
    let stolen = signed_commit(&sandbox, &repo, Some(&agent), "not mine\n");
    let denied = sandbox.git_fails(&repo, &["push", "origin", "HEAD:main"]);
    assert!(
        denied.contains(&format!(
            "commit {} is signed by a key whose principals do not include its committer mallory@example.com",
            &stolen[..12]
        )),
        "{denied}"
    );
    // `gitgate check` names a missing allowed signers file.
    let broken = tempfile::tempdir().unwrap();
    std::fs::write(
        broken.path().join("gitgate.yaml"),
        app_config(&standin, policy),
    )
    .unwrap();
    let out = crate::harness::gitgate::cli(&["check", "--config", "gitgate.yaml"], broken.path());
    assert!(!out.status.success());
    assert!(
        text(&out).contains("policy.requireSignedCommits.allowedSignersFile")
            && text(&out).contains("cannot read the allowed signers file"),
        "{}",
        text(&out)
    );
}

#[test]
fn merging_the_default_branch_into_a_branch_passes_the_per_commit_rules() {
    let standin = harness::standin();
    // Someone else (through an open gitgate) starts agent/x, then changes the workflow on
    // main: history the agent's branch may build on.
    let open = Gitgate::start(&app_config(
        &standin,
        "{allowedRepos: [acme/app], allowedRefs: [main, 'agent/*']}",
    ));
    let other = Sandbox::new(&open);
    let theirs = other.clone_repo("acme/app", "theirs");
    other.commit(&theirs, "work.txt", "agent work\n");
    other.git_ok(
        &theirs,
        &["push", "-q", "origin", "HEAD:refs/heads/agent/x"],
    );
    other.git_ok(&theirs, &["reset", "-q", "--hard", "origin/main"]);
    other.commit(&theirs, ".github/workflows/ci.yml", "on: push\n");
    other.git_ok(&theirs, &["push", "-q", "origin", "HEAD:main"]);

    let policy = "{allowedRepos: [acme/app], allowedRefs: [main, 'agent/*'], protectedPaths: ['.github/workflows/**']}";
    let gitgate = Gitgate::start(&app_config(&standin, policy));
    let sandbox = Sandbox::new(&gitgate);
    let repo = sandbox.clone_repo("acme/app", "app");
    sandbox.git_ok(
        &repo,
        &["checkout", "-q", "-b", "agent/x", "origin/agent/x"],
    );
    sandbox.git_ok(&repo, &["merge", "-q", "--no-edit", "origin/main"]);
    let merged = rev(&sandbox, &repo, "HEAD");
    sandbox.git_ok(&repo, &["push", "-q", "origin", "HEAD:agent/x"]);
    assert_eq!(
        upstream(&standin, "agent/x").as_deref(),
        Some(merged.as_str())
    );

    // A merge that takes an older parent's tree, without the workflow, deletes it.
    let bare = format!("{merged}~2");
    let old_tree = rev(&sandbox, &repo, &format!("{bare}^{{tree}}"));
    // A merge of the old tree with `parents`, pushed to `target`: refused as changing
    // the workflow.
    let refused_merge = |parents: [&str; 2], target: &str| {
        let craft = sandbox.git(
            &repo,
            &[
                "commit-tree",
                &old_tree,
                "-p",
                parents[0],
                "-p",
                parents[1],
                "-m",
                "back",
            ],
        );
        let back = String::from_utf8(craft.stdout).unwrap().trim().to_owned();
        let denied = sandbox.git_fails(&repo, &["push", "origin", &format!("{back}:{target}")]);
        assert!(
            denied.contains(&format!(
                "commit {} changes .github/workflows/ci.yml, which protectedPaths protects",
                &back[..12]
            )),
            "{denied}"
        );
    };
    refused_merge([&merged, &bare], "refs/heads/agent/x");
    assert_eq!(
        upstream(&standin, "agent/x").as_deref(),
        Some(merged.as_str())
    );
    // The same with the old commit as first parent and main's tip as second: a
    // fast-forward of main that would take its workflow away.
    let main = rev(&sandbox, &repo, "origin/main");
    refused_merge([&bare, &main], "refs/heads/main");
    assert_eq!(upstream(&standin, "main").as_deref(), Some(main.as_str()));

    // A merge that changes the workflow itself (neither parent's) is still refused.
    sandbox.git_ok(&repo, &["reset", "-q", "--hard", "HEAD~1"]);
    sandbox.git_ok(&repo, &["merge", "-q", "--no-commit", "origin/main"]);
    std::fs::write(
        repo.join(".github/workflows/ci.yml"),
        "on: [push, workflow_dispatch]\n",
    )
    .unwrap();
    sandbox.git_ok(&repo, &["commit", "-q", "-am", "evil merge"]);
    let evil = rev(&sandbox, &repo, "HEAD");
    let denied = sandbox.git_fails(&repo, &["push", "-f", "origin", "HEAD:agent/x"]);
    assert!(
        denied.contains(&format!(
            "commit {} changes .github/workflows/ci.yml, which protectedPaths protects",
            &evil[..12]
        )),
        "{denied}"
    );
    assert_eq!(
        upstream(&standin, "agent/x").as_deref(),
        Some(merged.as_str())
    );
}

#[test]
fn commits_already_on_github_but_not_on_the_ref_cannot_slip_past_the_per_commit_rules() {
    let keys = tempfile::tempdir().unwrap();
    let (agent, agent_public) = ssh_key(keys.path(), "agent");
    let standin = harness::standin();
    // Someone else (through an open gitgate) leaves an unsigned commit on a branch.
    let open = Gitgate::start(&app_config(
        &standin,
        "{allowedRepos: [acme/app], allowedRefs: ['*']}",
    ));
    let other = Sandbox::new(&open);
    let theirs = other.clone_repo("acme/app", "theirs");
    let unsigned = signed_commit(&other, &theirs, None, "unsigned, elsewhere\n");
    other.git_ok(&theirs, &["push", "-q", "origin", "HEAD:refs/heads/human"]);

    let policy = format!(
        "{{allowedRepos: [acme/app], allowedRefs: [main, 'agent/*'], requireSignedCommits: {{keys: [\"{agent_public}\"]}}}}"
    );
    let gitgate = Gitgate::start(&app_config(&standin, &policy));
    let sandbox = Sandbox::new(&gitgate);
    let repo = sandbox.clone_repo("acme/app", "app");
    sandbox.git_ok(&repo, &["fetch", "-q", "origin", "human"]);
    let main = rev(&sandbox, &repo, "origin/main");

    // Pointing a new branch, or main, at that commit carries no pack to check: refused.
    for target in ["refs/heads/agent/x", "refs/heads/main"] {
        let denied = sandbox.git_fails(&repo, &["push", "origin", &format!("{unsigned}:{target}")]);
        assert!(
            denied.contains(&format!(
                "would bring in commit {unsigned}, which this push does not carry"
            )),
            "{target}: {denied}"
        );
    }
    assert_eq!(upstream(&standin, "main").as_deref(), Some(main.as_str()));
    assert_eq!(upstream(&standin, "agent/x"), None);

    // A new branch at main's tip brings in nothing new: allowed. And signed work on it too.
    sandbox.git_ok(
        &repo,
        &[
            "push",
            "-q",
            "origin",
            &format!("{main}:refs/heads/agent/y"),
        ],
    );
    sandbox.git_ok(&repo, &["checkout", "-q", "-B", "work", "origin/main"]);
    let signed = signed_commit(&sandbox, &repo, Some(&agent), "signed\n");
    sandbox.git_ok(&repo, &["push", "-q", "origin", "HEAD:agent/y"]);
    assert_eq!(
        upstream(&standin, "agent/y").as_deref(),
        Some(signed.as_str())
    );
}

#[test]
fn holding_back_only_the_trailer_streams_the_pack_and_a_refusal_leaves_upstream_nothing() {
    let standin = harness::standin();
    let policy = "{allowedRepos: [acme/app], allowedRefs: [main], maxBlobSize: 5MB}";
    let (_gitgate, sandbox, repo) = with_limits(&standin, policy, "{pushHold: trailer}");

    // Allowed: sent on as it arrives, then its checksum once decided.
    let fine = sandbox.commit(&repo, "a.txt", "fine\n");
    sandbox.git_ok(&repo, &["push", "-q", "origin", "HEAD:main"]);
    assert_eq!(upstream(&standin, "main").as_deref(), Some(fine.as_str()));

    // Refused: upstream has received the pack as far as gitgate had read it (at most a
    // few MiB behind what arrived), never its checksum, then the request broke off;
    // `git http-backend` applies nothing from a pack without its checksum.
    harness::write_noise(&repo.join("big.bin"), 12);
    sandbox.git_ok(&repo, &["add", "big.bin"]);
    sandbox.git_ok(&repo, &["commit", "-q", "-m", "big"]);
    let denied = sandbox.git_fails(&repo, &["push", "origin", "HEAD:main"]);
    assert!(
        denied.contains("(gitgate: big.bin is 12.6 MB, over maxBlobSize 5.00 MB)"),
        "{denied}"
    );
    assert_eq!(upstream(&standin, "main").as_deref(), Some(fine.as_str()));
    // git reports the refusal as soon as gitgate answers; the stand-in may still be
    // reading what was sent before the break, so its count is awaited, not sampled.
    crate::core::wait_until(|| harness::largest_receive_pack_body(&standin) > 6 << 20);
    // The next push works on the same gitgate.
    sandbox.git_ok(&repo, &["reset", "-q", "--hard", "origin/main"]);
    let after = sandbox.commit(&repo, "a.txt", "after\n");
    sandbox.git_ok(&repo, &["push", "-q", "origin", "HEAD:main"]);
    assert_eq!(upstream(&standin, "main").as_deref(), Some(after.as_str()));
}

#[test]
fn bytes_after_the_pack_checksum_never_let_upstream_complete_a_refused_pack() {
    use std::io::Write;
    let standin = harness::standin();
    let policy = "{allowedRepos: [acme/app], allowedRefs: [main]}";
    let (gitgate, sandbox, repo) = with_limits(&standin, policy, "{pushHold: trailer}");
    let main = rev(&sandbox, &repo, "origin/main");
    // A commit with no history: pointing main at it is a force push (refused by default).
    sandbox.git_ok(&repo, &["checkout", "-q", "--orphan", "rewrite"]);
    let orphan = sandbox.commit(&repo, "b.txt", "rewritten\n");
    let pack = pack_of(&repo, &orphan);

    // The pack with its own valid checksum, then junk: a gitgate that held back only the
    // body's last 20 bytes would send the whole pack, and git would apply it.
    let (mut body, head_len) = push_body(&main, &orphan, "report-status", &pack);
    // (more than the first pass reads ahead, so it can reach them before the body ends)
    body.extend_from_slice(&[b'J'; 8192]);
    let headers = "Content-Type: application/x-git-receive-pack-request\r\n";
    let mut tls = harness::raw::receive_pack_request(&gitgate, "acme/app", headers, body.len());
    let (most, last) = body.split_at(body.len() - 1);
    tls.write_all(most).unwrap();
    tls.flush().unwrap();
    // Upstream gets every object as it arrives, but not the checksum after them.
    let objects = (head_len + pack.len() - 20) as u64;
    crate::core::wait_until(|| harness::largest_receive_pack_body(&standin) >= objects);
    assert_eq!(harness::largest_receive_pack_body(&standin), objects);
    assert_eq!(upstream(&standin, "main").as_deref(), Some(main.as_str()));

    tls.write_all(last).unwrap();
    let reply = harness::raw::read_response(&mut tls);
    assert!(reply.contains("bytes follow its checksum"), "{reply}");
    assert!(reply.contains("ng refs/heads/main"), "{reply}");
    assert_eq!(upstream(&standin, "main").as_deref(), Some(main.as_str()));
}

#[test]
fn held_pushes_stay_within_max_held_push_bytes_and_an_unreadable_pack_is_refused_at_once() {
    let standin = harness::standin();
    let policy = "{allowedRepos: [acme/app], allowedRefs: [main]}";
    let (gitgate, sandbox, repo) = with_limits(&standin, policy, "{maxHeldPushBytes: 4MiB}");
    let main = rev(&sandbox, &repo, "origin/main");

    // A push larger than the budget (forcePush: deny makes gitgate hold it): refused, saying
    // which limit, and recorded.
    harness::write_noise(&repo.join("big.bin"), 6);
    sandbox.git_ok(&repo, &["add", "big.bin"]);
    sandbox.git_ok(&repo, &["commit", "-q", "-m", "big"]);
    let denied = sandbox.git_fails(&repo, &["push", "origin", "HEAD:main"]);
    assert!(
        denied.contains("past limits.maxHeldPushBytes 4.19 MB ("),
        "{denied}"
    );
    gitgate.wait_for_record(|r| r["rule"] == "limits.maxHeldPushBytes");
    assert_eq!(upstream(&standin, "main").as_deref(), Some(main.as_str()));

    // The refused push gave its share back: a small one fits.
    sandbox.git_ok(&repo, &["reset", "-q", "--hard", "origin/main"]);
    let small = sandbox.commit(&repo, "a.txt", "small\n");
    sandbox.git_ok(&repo, &["push", "-q", "origin", "HEAD:main"]);
    assert_eq!(upstream(&standin, "main").as_deref(), Some(small.as_str()));

    // A body that is no pack: refused as soon as the first pass finds so, not held until
    // the budget runs out.
    let command = format!("{small} {main} refs/heads/main\0report-status\n");
    let mut body = format!("{:04x}{command}0000", command.len() + 4).into_bytes();
    body.extend_from_slice(b"PACK\0\0\0\x09\0\0\0\x01");
    let noise = tempfile::NamedTempFile::new().unwrap();
    harness::write_noise(noise.path(), 8);
    body.extend_from_slice(&std::fs::read(noise.path()).unwrap());
    let reply = harness::raw::post_receive_pack(&gitgate, "", &body);
    assert!(reply.contains("ng refs/heads/main"), "{reply}");
    assert!(!reply.contains("maxHeldPushBytes"), "{reply}");
    let record = gitgate.wait_for_record(|r| r["rule"] == "pack");
    assert_eq!(record["decision"], "deny", "{record}");
    assert_eq!(upstream(&standin, "main").as_deref(), Some(small.as_str()));
}

/// gitgate with `limits` and its admin listener, a sandbox, and its clone of acme/app.
fn with_admin(standin: &StandIn, limits: &str) -> (Gitgate, Sandbox, PathBuf) {
    let policy = "{allowedRepos: [acme/app], allowedRefs: [main]}";
    let config = harness::limited_config(standin, policy, limits);
    let gitgate = Gitgate::start(&format!("admin: 127.0.0.1:0\n{config}"));
    let sandbox = Sandbox::new(&gitgate);
    let repo = sandbox.clone_repo("acme/app", "app");
    (gitgate, sandbox, repo)
}

/// The value of gitgate's gauge `name`.
fn gauge(gitgate: &Gitgate, name: &str) -> u64 {
    let metrics = harness::raw::http_get(gitgate.admin_addr(), "/metrics");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{metrics}"))
}

/// A commit of `mib` MiB of noise in `file` on top of `repo`'s HEAD.
fn commit_noise(sandbox: &Sandbox, repo: &Path, file: &str, mib: usize) -> String {
    harness::write_noise(&repo.join(file), mib);
    sandbox.git_ok(repo, &["add", file]);
    sandbox.git_ok(repo, &["commit", "-q", "-m", file]);
    rev(sandbox, repo, "HEAD")
}

/// A push of `old..new` to main from `client` (127.0.0.`client`), of which only the command
/// list and `sent` bytes of the pack are sent (all of it if there are fewer): gitgate holds
/// it, waiting for the rest.
fn unfinished_push(
    gitgate: &Gitgate,
    repo: &Path,
    client: u8,
    (old, new): (&str, &str),
    sent: usize,
) -> rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream> {
    use std::io::Write;
    let pack = pack_of(repo, &format!("{new}\n^{old}"));
    let (body, head_len) = push_body(old, new, "report-status", &pack);
    let mut tls = harness::raw::mitm_tls_from(
        [127, 0, 0, client].into(),
        gitgate.addr,
        "github.com:443",
        "github.com",
        &gitgate.ca_file(),
    );
    let head = format!(
        "POST /acme/app.git/git-receive-pack HTTP/1.1\r\nHost: github.com\r\nContent-Type: application/x-git-receive-pack-request\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).unwrap();
    tls.write_all(&body[..head_len.saturating_add(sent).min(body.len())])
        .unwrap();
    tls.flush().unwrap();
    tls
}

#[test]
fn one_clients_held_pushes_leave_the_rest_of_the_disk_to_the_others() {
    let standin = harness::standin();
    let (gitgate, sandbox, repo) = with_admin(
        &standin,
        "{maxHeldPushBytes: 8MiB, maxHeldPushBytesPerClient: 4MiB}",
    );
    let main = rev(&sandbox, &repo, "origin/main");
    let held = || gauge(&gitgate, "gitgate_held_push_bytes");

    // More than one client's share, though not than the whole: refused, naming the share.
    let big = commit_noise(&sandbox, &repo, "big.bin", 5);
    let denied = sandbox.git_fails(&repo, &["push", "origin", "HEAD:main"]);
    assert!(
        denied.contains("past limits.maxHeldPushBytesPerClient 4.19 MB; push less at once"),
        "{denied}"
    );
    gitgate.wait_for_record(|r| r["rule"] == "limits.maxHeldPushBytesPerClient");
    assert_eq!(upstream(&standin, "main").as_deref(), Some(main.as_str()));
    crate::core::wait_until(|| held() == 0);

    // Another address holds 3 MiB of a push it has not finished sending...
    let other = unfinished_push(&gitgate, &repo, 2, (&main, &big), 3 << 20);
    crate::core::wait_until(|| held() >= 3 << 20);

    // ... and this one may still hold its own share: a 3 MiB push goes through.
    sandbox.git_ok(&repo, &["reset", "-q", "--hard", "origin/main"]);
    let mid = commit_noise(&sandbox, &repo, "mid.bin", 3);
    sandbox.git_ok(&repo, &["push", "-q", "origin", "HEAD:main"]);
    assert_eq!(upstream(&standin, "main").as_deref(), Some(mid.as_str()));

    // The unfinished push gives its share back when its client goes.
    drop(other);
    crate::core::wait_until(|| held() == 0);
}

#[test]
fn what_checking_a_push_holds_in_memory_is_bounded_per_client() {
    // protectedPaths keeps every pushed tree whole to compare it: a tree of 20,000 entries
    // holds more than the 1 MiB share.
    let standin = harness::standin();
    let policy = "{allowedRepos: [acme/app], allowedRefs: [main], protectedPaths: [CODEOWNERS]}";
    let config = harness::limited_config(
        &standin,
        policy,
        "{maxPushCheckBytes: 8MiB, maxPushCheckBytesPerClient: 1MiB}",
    );
    let gitgate = Gitgate::start(&format!("admin: 127.0.0.1:0\n{config}"));
    let sandbox = Sandbox::new(&gitgate);
    let repo = sandbox.clone_repo("acme/app", "app");
    let main = rev(&sandbox, &repo, "origin/main");
    let wide = repo.join("wide");
    std::fs::create_dir(&wide).unwrap();
    for i in 0..20_000 {
        std::fs::write(wide.join(format!("f{i:05}")), "").unwrap();
    }
    sandbox.git_ok(&repo, &["add", "wide"]);
    sandbox.git_ok(&repo, &["commit", "-q", "-m", "wide"]);
    let denied = sandbox.git_fails(&repo, &["push", "origin", "HEAD:main"]);
    assert!(
        denied.contains("checking it would take this client's push checks past limits.maxPushCheckBytesPerClient 1.05 MB; push fewer commits and trees at once"),
        "{denied}"
    );
    let record = gitgate.wait_for_record(|r| r["rule"] == "limits.maxPushCheckBytesPerClient");
    assert_eq!(record["decision"], "deny", "{record}");
    assert_eq!(upstream(&standin, "main").as_deref(), Some(main.as_str()));
    // What it held is given back, and a push of ordinary size is checked and goes through.
    crate::core::wait_until(|| gauge(&gitgate, "gitgate_push_check_bytes") == 0);
    sandbox.git_ok(&repo, &["reset", "-q", "--hard", "origin/main"]);
    let small = sandbox.commit(&repo, "a.txt", "small\n");
    sandbox.git_ok(&repo, &["push", "-q", "origin", "HEAD:main"]);
    assert_eq!(upstream(&standin, "main").as_deref(), Some(small.as_str()));
}

/// Trees read from GitHub to check a push are held to the same per-client share as
/// those read from the pack: deleting a directory of 20,000 files makes the check read
/// its tree from the API, which is more than the 1 MiB share.
#[test]
fn trees_read_from_github_count_against_the_push_check_share() {
    let standin = harness::standin();
    // First a permissive gitgate (no content rule) puts the wide directory on GitHub.
    let open = Gitgate::start(&app_config(
        &standin,
        "{allowedRepos: [acme/app], allowedRefs: [main]}",
    ));
    let sandbox = Sandbox::new(&open);
    let repo = sandbox.clone_repo("acme/app", "app");
    let wide = repo.join("wide");
    std::fs::create_dir(&wide).unwrap();
    for i in 0..20_000 {
        std::fs::write(wide.join(format!("f{i:05}")), "").unwrap();
    }
    sandbox.git_ok(&repo, &["add", "wide"]);
    sandbox.git_ok(&repo, &["commit", "-q", "-m", "wide"]);
    sandbox.git_ok(&repo, &["push", "-q", "origin", "HEAD:main"]);
    let main = upstream(&standin, "main");
    drop(open);
    let policy =
        "{allowedRepos: [acme/app], allowedRefs: [main], protectedPaths: ['**/CODEOWNERS']}";
    let config = harness::limited_config(
        &standin,
        policy,
        "{maxPushCheckBytes: 8MiB, maxPushCheckBytesPerClient: 1MiB}",
    );
    let gitgate = Gitgate::start(&config);
    let sandbox = Sandbox::new(&gitgate);
    let repo = sandbox.clone_repo("acme/app", "again");
    sandbox.git_ok(&repo, &["rm", "-r", "-q", "wide"]);
    sandbox.git_ok(&repo, &["commit", "-q", "-m", "no more wide"]);
    let denied = sandbox.git_fails(&repo, &["push", "origin", "HEAD:main"]);
    assert!(
        denied.contains("past limits.maxPushCheckBytesPerClient"),
        "{denied}"
    );
    assert_eq!(upstream(&standin, "main"), main);
}

#[test]
fn pushes_held_at_once_are_bounded_overall_and_per_client() {
    // Each held push keeps a thread reading its pack: a client that opens many and never
    // finishes them must not take those threads from everyone.
    let standin = harness::standin();
    let (gitgate, sandbox, repo) =
        with_admin(&standin, "{maxHeldPushes: 2, maxHeldPushesPerClient: 1}");
    let main = rev(&sandbox, &repo, "origin/main");
    let held = || gauge(&gitgate, "gitgate_held_pushes");
    let next = commit_noise(&sandbox, &repo, "next.bin", 1);
    let first = unfinished_push(&gitgate, &repo, 2, (&main, &next), 1000);
    crate::core::wait_until(|| held() == 1);
    // Client 2's second (sent whole) is refused, naming its share; client 1 still pushes.
    let reply = harness::raw::read_response(&mut unfinished_push(
        &gitgate,
        &repo,
        2,
        (&main, &next),
        usize::MAX,
    ));
    assert!(
        reply.contains("ng refs/heads/main gitgate: this client already has 1 pushes held")
            && reply.contains("(limits.maxHeldPushesPerClient)"),
        "{reply}"
    );
    gitgate.wait_for_record(|r| r["rule"] == "limits.maxHeldPushesPerClient");
    sandbox.git_ok(&repo, &["push", "-q", "origin", "HEAD:main"]);
    assert_eq!(upstream(&standin, "main").as_deref(), Some(next.as_str()));
    // With a second client holding the other place, nobody else gets one.
    let newer = commit_noise(&sandbox, &repo, "newer.bin", 2);
    let second = unfinished_push(&gitgate, &repo, 3, (&next, &newer), 1000);
    crate::core::wait_until(|| held() == 2);
    let denied = sandbox.git_fails(&repo, &["push", "origin", "HEAD:main"]);
    assert!(
        denied.contains("gitgate is holding its maximum of 2 pushes to check them (limits.maxHeldPushes); retry shortly"),
        "{denied}"
    );
    // Places come back as their clients go.
    drop((first, second));
    crate::core::wait_until(|| held() == 0);
    sandbox.git_ok(&repo, &["push", "-q", "origin", "HEAD:main"]);
    assert_eq!(upstream(&standin, "main").as_deref(), Some(newer.as_str()));
}

#[test]
fn a_push_held_longer_than_its_token_lives_goes_upstream_with_a_current_one() {
    use std::io::Write;
    // Tokens of 4 s; the push is held (forcePush: deny reads its pack) while a slow client
    // takes 6 s to send it, so the token it arrived with has expired by the time it is
    // decided and forwarded.
    let standin = harness::standin();
    standin.set_token_lifetime(std::time::Duration::from_secs(4));
    let gitgate = Gitgate::start(&app_config(&standin, POLICY));
    let sandbox = Sandbox::new(&gitgate);
    let repo = sandbox.clone_repo("acme/app", "app");
    let old = rev(&sandbox, &repo, "HEAD");
    let new = sandbox.commit(&repo, "slow.txt", "sent slowly\n");
    let pack = pack_of(&repo, &format!("{new}\n^{old}"));
    let (body, _) = push_body(&old, &new, "report-status side-band-64k", &pack);
    let headers = "Content-Type: application/x-git-receive-pack-request\r\nAccept: application/x-git-receive-pack-result\r\n";
    let mut tls =
        crate::harness::raw::receive_pack_request(&gitgate, "acme/app", headers, body.len());
    let pieces = 12;
    for piece in body.chunks(body.len().div_ceil(pieces)) {
        tls.write_all(piece).unwrap();
        tls.flush().unwrap();
        // Pacing a slow client, not waiting for anything.
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let reply = crate::harness::raw::read_response(&mut tls);
    assert!(
        reply.starts_with("HTTP/1.1 200") && reply.contains("ok refs/heads/main"),
        "{reply}"
    );
    assert_eq!(upstream(&standin, "main").as_deref(), Some(new.as_str()));
}
