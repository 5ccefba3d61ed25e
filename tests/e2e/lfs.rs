//! Git LFS through gitgate: the batch API gets the token, uploads need a writable
//! repository, and storage hosts open only to the client a batch response named them to.

use std::path::{Path, PathBuf};

use gitgate_standin::{LFS_STORAGE_HOST, StandIn};

use crate::harness::{Gitgate, Sandbox, app_config, standin, text, write_noise};

/// The sandbox trusts gitgate's CA for GitHub and the storage host's own CA (here the
/// stand-in's): storage is tunneled, TLS end to end.
fn lfs_sandbox(standin: &StandIn, gitgate: &Gitgate) -> (Sandbox, PathBuf) {
    let sandbox = Sandbox::new(gitgate);
    let bundle = sandbox.path("ca-bundle.pem");
    let gitgate_ca = std::fs::read_to_string(gitgate.ca_file()).expect("gitgate CA");
    std::fs::write(&bundle, format!("{gitgate_ca}\n{}", standin.ca_pem())).expect("bundle");
    let out = sandbox.git(sandbox.home.path(), &["lfs", "install", "--skip-repo"]);
    assert!(out.status.success(), "git lfs install: {}", text(&out));
    (sandbox, bundle)
}

fn git_ok(sandbox: &Sandbox, bundle: &Path, cwd: &Path, args: &[&str]) -> String {
    let out = sandbox.git_with_env(cwd, args, &[("GIT_SSL_CAINFO", bundle.to_str().unwrap())]);
    assert!(out.status.success(), "git {args:?}:\n{}", text(&out));
    text(&out)
}

/// Clones acme/app into HOME/app and commits `mib` MiB as an LFS-tracked `model.bin`;
/// the clone and the object's oid.
fn commit_model(sandbox: &Sandbox, bundle: &Path, mib: usize) -> (PathBuf, String) {
    let home = sandbox.home.path().to_owned();
    let url = "https://github.com/acme/app.git";
    git_ok(sandbox, bundle, &home, &["clone", "-q", url, "app"]);
    let repo = sandbox.path("app");
    git_ok(sandbox, bundle, &repo, &["lfs", "track", "*.bin"]);
    write_noise(&repo.join("model.bin"), mib);
    let oid = oid(&repo.join("model.bin"));
    for args in [
        &["add", ".gitattributes", "model.bin"][..],
        &["commit", "-q", "-m", "add a model"],
    ] {
        git_ok(sandbox, bundle, &repo, args);
    }
    (repo, oid)
}

/// The sha256 of `path`, as LFS names objects.
fn oid(path: &Path) -> String {
    let bytes = std::fs::read(path).expect("read");
    let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn git_lfs_pushes_and_pulls_an_object_through_gitgate() {
    let standin = standin();
    let gitgate = Gitgate::start(&app_config(
        &standin,
        "{allowedRepos: [acme/app], allowedRefs: [main]}",
    ));
    let (sandbox, bundle) = lfs_sandbox(&standin, &gitgate);
    let home = sandbox.home.path().to_owned();
    let (repo, oid) = commit_model(&sandbox, &bundle, 2);
    git_ok(&sandbox, &bundle, &repo, &["push", "-q", "origin", "main"]);
    let stored = standin
        .lfs_object("acme", "app", &oid)
        .expect("the object reached storage");
    assert_eq!(stored, std::fs::read(repo.join("model.bin")).unwrap());

    git_ok(
        &sandbox,
        &bundle,
        &home,
        &["clone", "-q", "https://github.com/acme/app.git", "again"],
    );
    assert_eq!(
        std::fs::read(sandbox.path("again/model.bin")).unwrap(),
        stored
    );

    // The batch calls carried gitgate's token; the storage host saw none.
    let requests = standin.requests();
    let batches: Vec<_> = requests
        .iter()
        .filter(|r| r.path().ends_with("/info/lfs/objects/batch"))
        .collect();
    assert!(batches.len() >= 2, "{batches:?}");
    assert!(batches.iter().all(|r| {
        r.header("authorization")
            .is_some_and(|a| a.starts_with("Basic "))
    }));
    let storage: Vec<_> = requests
        .iter()
        .filter(|r| r.host == LFS_STORAGE_HOST)
        .collect();
    assert_eq!(
        storage
            .iter()
            .map(|r| r.method.as_str())
            .collect::<Vec<_>>(),
        ["PUT", "GET"]
    );
    assert!(
        storage.iter().all(|r| r.header("authorization").is_none()),
        "{storage:?}"
    );
    let tunnels = gitgate.decisions();
    assert!(
        tunnels
            .iter()
            .any(|d| d["host"] == LFS_STORAGE_HOST && d["rule"] == "lfsStorage"),
        "{tunnels:?}"
    );
    gitgate.assert_no_secrets(&standin);

    // A reload that leaves the policy as it was (log rotation's SIGHUP) leaves the
    // grants; one that changes it takes them back (the next batch response makes them
    // again).
    let connect = || text(&sandbox.curl(&[&format!("https://{LFS_STORAGE_HOST}/")]));
    assert!(!connect().contains("403"), "granted: the tunnel opens");
    gitgate.hangup();
    crate::core::wait_until(|| gitgate.output().contains("policy reloaded"));
    let kept = connect();
    assert!(!kept.contains("403"), "{kept}");
    gitgate.rewrite_config(&app_config(
        &standin,
        "{allowedRepos: [acme/app], allowedRefs: [main, dev]}",
    ));
    crate::core::wait_until(|| {
        let reloads = gitgate.audit().into_iter();
        reloads.filter(|r| r["kind"] == "policy_reload").count() == 2
    });
    let refused = connect();
    assert!(refused.contains("403"), "{refused}");
}

#[test]
fn storage_hosts_stay_closed_without_a_batch_response_and_uploads_need_a_writable_repo() {
    let standin = standin();
    let gitgate = Gitgate::start(&app_config(&standin, "{allowedRepos: [acme/app]}"));
    let (sandbox, bundle) = lfs_sandbox(&standin, &gitgate);
    let out = sandbox.curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("https://{LFS_STORAGE_HOST}/"),
    ]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("403"), "{}", text(&out));

    let (repo, oid) = commit_model(&sandbox, &bundle, 1);
    // git push itself is refused before its pre-push hook runs; `git lfs push` uploads
    // without a push, after verifying locks (which needs push access too).
    let env = [("GIT_SSL_CAINFO", bundle.to_str().unwrap())];
    for (args, step) in [
        (
            &["lfs", "push", "origin", "main"][..],
            "lock verification before an upload",
        ),
        (
            &[
                "-c",
                "lfs.locksverify=false",
                "lfs",
                "push",
                "origin",
                "main",
            ],
            "upload",
        ),
    ] {
        let out = sandbox.git_with_env(&repo, args, &env);
        assert!(!out.status.success());
        let want = format!(
            "gitgate: Git LFS {step} for acme/app denied: acme/app is read-only by policy (allowedRefs is empty)"
        );
        assert!(text(&out).contains(&want), "{}", text(&out));
    }
    assert!(standin.lfs_object("acme", "app", &oid).is_none());
    assert!(
        standin
            .requests()
            .iter()
            .all(|r| r.host != LFS_STORAGE_HOST)
    );
}

/// `maxBlobSize` holds for files pushed to LFS too: the upload is refused at the batch
/// call, by the size git-lfs gives each object, so neither the object nor the ref moves.
#[test]
fn lfs_uploads_are_held_to_max_blob_size() {
    let standin = standin();
    let gitgate = Gitgate::start(&app_config(
        &standin,
        "{allowedRepos: [acme/app], allowedRefs: [main], maxBlobSize: 1MiB}",
    ));
    let (sandbox, bundle) = lfs_sandbox(&standin, &gitgate);
    let (repo, oid) = commit_model(&sandbox, &bundle, 2);
    let env = [("GIT_SSL_CAINFO", bundle.to_str().unwrap())];
    let main = standin.rev_parse("acme", "app", "refs/heads/main");
    let out = sandbox.git_with_env(&repo, &["push", "-q", "origin", "main"], &env);
    assert!(!out.status.success(), "{}", text(&out));
    let want = format!(
        "gitgate: Git LFS upload for acme/app denied: the LFS object {oid} of 2097152 bytes is larger than maxBlobSize"
    );
    assert!(text(&out).contains(&want), "{}", text(&out));
    assert!(standin.lfs_object("acme", "app", &oid).is_none());
    assert_eq!(standin.rev_parse("acme", "app", "refs/heads/main"), main);
    gitgate.wait_for_record(|r| r["rule"] == "maxBlobSize" && r["decision"] == "deny");
}

/// Lock changes are decided like the pushes they would hold up: a lock on a protected
/// path, a forced unlock (another person's lock), or a lock change with parameters in a
/// query string is refused naming why; a lock on another path reaches GitHub, whatever
/// branch git-lfs names (the upstream of the sandbox's branch, here one it may not push).
#[test]
fn lfs_locks_on_protected_paths_and_forced_unlocks_are_refused() {
    let standin = standin();
    let gitgate = Gitgate::start(&app_config(
        &standin,
        "{allowedRepos: [acme/app], allowedRefs: ['agent/*'], protectedPaths: ['.github/**']}",
    ));
    let (sandbox, bundle) = lfs_sandbox(&standin, &gitgate);
    let (repo, _) = commit_model(&sandbox, &bundle, 1);
    git_ok(
        &sandbox,
        &bundle,
        &repo,
        &["checkout", "-q", "-b", "agent/x", "--track", "origin/main"],
    );
    let env = [("GIT_SSL_CAINFO", bundle.to_str().unwrap())];
    let lock_posts = || {
        standin
            .requests()
            .iter()
            .filter(|r| r.method == "POST" && r.target.contains("/info/lfs/locks"))
            .count()
    };
    let out = sandbox.git_with_env(&repo, &["lfs", "lock", ".github/workflows/ci.yml"], &env);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(".github/workflows/ci.yml matches protectedPaths pattern .github/**"),
        "{}",
        text(&out)
    );
    let out = sandbox.git_with_env(&repo, &["lfs", "unlock", "--force", "--id", "1"], &env);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("a forced unlock drops another person's lock"),
        "{}",
        text(&out)
    );
    let out = sandbox.curl(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: application/vnd.git-lfs+json",
        "--data-binary",
        "{}",
        "https://github.com/acme/app.git/info/lfs/locks/1/unlock?force=true",
    ]);
    assert!(text(&out).contains("with a query string"), "{}", text(&out));
    assert_eq!(lock_posts(), 0, "a refused lock change went upstream");
    git_ok(&sandbox, &bundle, &repo, &["lfs", "lock", "model.bin"]);
    assert_eq!(lock_posts(), 1);
    let sent = standin
        .requests()
        .into_iter()
        .find(|r| r.method == "POST" && r.target.ends_with("/info/lfs/locks"))
        .expect("the lock request");
    assert!(sent.target.starts_with("/acme/app.git/"), "{}", sent.target);
    gitgate.wait_for_record(|r| r["rule"] == "protectedPaths" && r["decision"] == "deny");
}

/// In report mode an LFS upload over `maxBlobSize` goes through, and its record says
/// what enforce mode would have refused.
#[test]
fn report_mode_records_an_lfs_upload_over_max_blob_size() {
    let standin = standin();
    let gitgate = Gitgate::start(&app_config(
        &standin,
        "{allowedRepos: [acme/app], allowedRefs: [main], maxBlobSize: 1MiB, mode: report}",
    ));
    let (sandbox, bundle) = lfs_sandbox(&standin, &gitgate);
    let (repo, oid) = commit_model(&sandbox, &bundle, 2);
    git_ok(&sandbox, &bundle, &repo, &["push", "-q", "origin", "main"]);
    assert!(standin.lfs_object("acme", "app", &oid).is_some());
    gitgate.wait_for_record(|r| r["rule"] == "maxBlobSize" && r["decision"] == "report");
}
