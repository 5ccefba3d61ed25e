//! The command line: `check`, `ca init`, `ca print`, and config errors that point at
//! the file, line, column and key.

use crate::harness::{self, gitgate::cli, text};

fn check(config: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gitgate.yaml"), config).unwrap();
    let out = cli(&["check", "--config", "gitgate.yaml"], dir.path());
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_configs_exit_64_naming_file_line_column_and_key() {
    let cases = [
        (
            "listen: 127.0.0.1:3128\npolicy:\n  allowedRepos: [acme/app]\n  alowedRefs: [main]\n",
            "gitgate.yaml:4:3: policy.alowedRefs: unknown field `alowedRefs`",
        ),
        (
            "policy:\n  allowedRepos:\n    - acme/app\n    - \"acme/[\"\n",
            "gitgate.yaml:4:7: policy.allowedRepos[1]: invalid repo pattern \"acme/[\"",
        ),
        (
            "listen: 127.0.0.1:99999\n",
            "gitgate.yaml:1:9: listen: invalid socket address",
        ),
        (
            "github:\n  app: {id: \"1\", privateKeyFile: ./missing.pem}\n",
            "gitgate.yaml:2:34: github.app.privateKeyFile: ./missing.pem: No such file",
        ),
        (
            "upstream:\n  caFile: /nonexistent/ca.pem\n",
            "gitgate.yaml:2:11: upstream.caFile: cannot read /nonexistent/ca.pem",
        ),
        (
            "policy:\n  allowedRefs: [\"main..x\"]\n",
            "gitgate.yaml:2:17: policy.allowedRefs[0]: invalid ref pattern \"main..x\"",
        ),
        (
            "policy:\n  allowHosts: [\"exa mple.com\"]\n",
            "gitgate.yaml:2:16: policy.allowHosts[0]: invalid host pattern \"exa mple.com\"",
        ),
        (
            "limits:\n  maxConnections: 0\n",
            "gitgate.yaml:2:19: limits.maxConnections: must be a whole number from 1 to 1073741824",
        ),
        (
            "limits:\n  maxTunnels: 99999999999999999\n",
            "gitgate.yaml:2:15: limits.maxTunnels: must be a whole number from 1 to 1073741824",
        ),
        (
            "limits:\n  bodyIdleTimeout: 10x\n",
            "gitgate.yaml:2:20: limits.bodyIdleTimeout: invalid duration \"10x\"",
        ),
        (
            "github:\n  apiUrl: http://api.github.com\n",
            "gitgate.yaml:2:11: github.apiUrl: invalid URL \"http://api.github.com\": must start with https://",
        ),
        (
            "upstream:\n  resolve: {github.com: nowhere}\n",
            "gitgate.yaml:2:25: upstream.resolve.github.com: invalid socket address",
        ),
    ];
    for (config, expected) in cases {
        let (code, _, stderr) = check(config);
        assert_eq!(code, 64, "{config:?}: {stderr}");
        assert!(
            stderr.contains(expected),
            "{config:?}:\n  expected {expected:?}\n  got {stderr:?}"
        );
    }
}

/// Arguments the command line does not know exit 64 too, after saying why; help is no
/// error.
#[test]
fn wrong_arguments_exit_64_and_help_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("gitgate.yaml"),
        "policy: {allowedRepos: [acme/app]}\n",
    )
    .unwrap();
    for args in [
        &["explain", "--config", "gitgate.yaml", "fetch", "acme/app"][..],
        &["run", "--no-such-flag"],
        &["no-such-command"],
    ] {
        let out = cli(args, dir.path());
        assert_eq!(out.status.code(), Some(64), "{args:?}: {}", text(&out));
        assert!(text(&out).contains("error:"), "{args:?}: {}", text(&out));
    }
    let out = cli(&["--help"], dir.path());
    assert!(
        out.status.success() && text(&out).contains("Usage"),
        "{}",
        text(&out)
    );
}

#[test]
fn check_prints_the_effective_settings_and_policy() {
    let (code, stdout, stderr) = check(
        "listen: 127.0.0.1:4000\npolicy:\n  allowedRepos: [acme/app, \"acme/lib-*\"]\n  allowedRefs: [main, \"release/*\"]\n  allowHosts: [crates.io, \"*.crates.io\"]\n",
    );
    assert_eq!(code, 0, "{stderr}");
    for expected in [
        "127.0.0.1:4000",
        "github.com",
        "acme/lib-*",
        "release/*",
        "*.crates.io",
        "allowDeletes",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
}

#[test]
fn ca_init_writes_a_private_key_and_ca_print_prints_the_certificate() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let out = cli(&["ca", "init", "--out", "ca"], dir.path());
    assert!(out.status.success(), "{out:?}");
    let key = dir.path().join("ca/ca-key.pem");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    std::fs::write(
        dir.path().join("gitgate.yaml"),
        "ca: {cert: ca/ca.pem, key: ca/ca-key.pem}\n",
    )
    .unwrap();
    let out = cli(&["ca", "print", "--config", "gitgate.yaml"], dir.path());
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        out.stdout,
        std::fs::read(dir.path().join("ca/ca.pem")).unwrap()
    );
    // A second init must not overwrite the CA.
    let out = cli(&["ca", "init", "--out", "ca"], dir.path());
    assert!(!out.status.success());
}

#[test]
fn half_a_ca_refuses_to_start_naming_the_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    assert!(
        cli(&["ca", "init", "--out", "ca"], dir.path())
            .status
            .success()
    );
    std::fs::remove_file(dir.path().join("ca/ca-key.pem")).unwrap();
    std::fs::write(dir.path().join("gitgate.yaml"), "listen: 127.0.0.1:0\n").unwrap();
    let out = cli(&["run", "--config", "gitgate.yaml"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ca.key")
            && stderr.contains("ca-key.pem")
            && stderr.contains("does not exist"),
        "{stderr}"
    );
}

#[test]
fn doctor_checks_the_app_and_mints_each_scope_without_printing_tokens() {
    let standin = crate::harness::standin();
    let dir = tempfile::tempdir().unwrap();
    let config = crate::harness::app_config(
        &standin,
        "{allowedRepos: [acme/app, \"bob/*\"], allowedRefs: [main]}",
    );
    std::fs::write(dir.path().join("gitgate.yaml"), &config).unwrap();
    let out = cli(&["doctor", "--config", "gitgate.yaml"], dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("JWT accepted"), "{stdout}");
    let acme = stdout
        .lines()
        .find(|l| l.starts_with("acme"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        acme.contains("1001") && acme.contains("app") && acme.contains("contents:write"),
        "{acme}"
    );
    let bob = stdout
        .lines()
        .find(|l| l.starts_with("bob"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        bob.contains("2002") && bob.contains("(all of the installation)"),
        "{bob}"
    );
    assert_eq!(standin.mints().len(), 2);
    harness::assert_no_secret(&standin, "doctor's output", &format!("{stdout}{stderr}"));

    let broken = config.replace(&format!("id: \"{}\"", standin.app_id()), "id: \"42\"");
    std::fs::write(dir.path().join("gitgate.yaml"), broken).unwrap();
    let out = cli(&["doctor", "--config", "gitgate.yaml"], dir.path());
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "GitHub rejected the App JWT (check github.app.id, the key, and this machine's clock"
        ),
        "{stderr}"
    );
}

#[test]
fn doctor_without_a_credential_says_there_is_nothing_to_check() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("gitgate.yaml"),
        "listen: 127.0.0.1:0\npolicy: {allowedRepos: [acme/app]}\n",
    )
    .unwrap();
    let out = cli(&["doctor", "--config", "gitgate.yaml"], dir.path());
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no GitHub credential is configured"),
        "{}",
        crate::harness::text(&out)
    );
}

/// Runs `gitgate check` on `config` in `dir`: it must exit 64, say `want` on stderr, and
/// never claim the file is valid.
fn check_refuses(dir: &std::path::Path, config: &str, want: &str) {
    std::fs::write(dir.join("gitgate.yaml"), config).unwrap();
    let out = cli(&["check", "--config", "gitgate.yaml"], dir);
    assert_eq!(
        out.status.code(),
        Some(64),
        "{config}{}",
        crate::harness::text(&out)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(want), "{config}\n{stderr}");
    assert!(
        !stderr.contains("untagged") && !stderr.contains("RawConfig"),
        "{stderr}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("is valid"));
}

#[test]
fn check_refuses_what_run_would_refuse_naming_file_key_and_fix() {
    let dir = tempfile::tempdir().unwrap();
    let init = cli(&["ca", "init", "--out", "half"], dir.path());
    assert!(init.status.success(), "{}", crate::harness::text(&init));
    let again = cli(&["ca", "init", "--out", "half"], dir.path());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains(
            "half/ca.pem already exists; `gitgate ca init` never overwrites a CA: choose another --out"
        ),
        "{}",
        crate::harness::text(&again)
    );
    std::fs::remove_file(dir.path().join("half/ca-key.pem")).unwrap();
    for (config, want) in [
        (
            "# only a comment\n",
            "gitgate.yaml:1:1: the config file is empty",
        ),
        (
            "listen: 127.0.0.1:0\nlimits: {idleTimeout: 0s}\n",
            "gitgate.yaml:2:23: limits.idleTimeout: a timeout of 0s would give up at once, every time",
        ),
        (
            "github:\n  app: {id: \"1\", signer: {command: [/bin/true], timeout: 0s}}\n",
            "gitgate.yaml:2:58: github.app.signer.timeout: a timeout of 0s would give up at once",
        ),
        (
            "github:\n  app: {id: \"1\", signer: {command: [/nonexistent/sign]}}\n",
            "github.app.signer: signer.command program \"/nonexistent/sign\" is not found",
        ),
        (
            "audit: {file: /nonexistent/dir/audit.jsonl}\n",
            "gitgate.yaml:1:9: audit.file: the directory /nonexistent/dir of /nonexistent/dir/audit.jsonl does not exist",
        ),
        (
            "ca: {cert: half/ca.pem, key: half/ca-key.pem}\n",
            "gitgate.yaml:1:1: ca: half/ca.pem exists but half/ca-key.pem does not; gitgate run refuses to start",
        ),
        (
            "github: {token: {env: GITGATE_TEST_UNSET_VARIABLE}}\n",
            "github.token.env: GITGATE_TEST_UNSET_VARIABLE is not set in this environment",
        ),
        (
            "github:\n  app: {id: \"1\", privateKeyFile: half}\n",
            "github.app.privateKeyFile: half: is a directory; give the App's private key file",
        ),
        (
            "policy: {allowHosts: [\"https://crates.io/x\"]}\n",
            "\"https://crates.io/x\" is a URL; write only the host, with :PORT if not 443 (e.g. crates.io)",
        ),
    ] {
        check_refuses(dir.path(), config, want);
    }
}

#[test]
fn log_format_json_writes_one_json_object_per_line() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gitgate.yaml"), "listen: 127.0.0.1:0\n").unwrap();
    let mut child = crate::harness::gitgate::Killed(
        std::process::Command::new(crate::harness::gitgate::binary())
            .args(["--log-format", "json", "run", "--config", "gitgate.yaml"])
            .current_dir(dir.path())
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stderr = std::io::BufReader::new(child.0.stderr.take().unwrap());
    let mut seen = Vec::new();
    for line in stderr.lines().map_while(Result::ok) {
        let value: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let listening = value["message"] == "listening";
        seen.push(value);
        if listening {
            break;
        }
    }
    drop(child);
    let listening = seen.last().unwrap();
    assert_eq!(listening["message"], "listening", "{seen:?}");
    assert!(
        listening["addr"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    assert!(
        seen.iter()
            .all(|v| v["level"].is_string() && v["timestamp"].is_string())
    );
    // A failure to start is a JSON line too, with the place of the error.
    std::fs::write(
        dir.path().join("gitgate.yaml"),
        "listen: 127.0.0.1:0
nope: 1
",
    )
    .unwrap();
    let out = std::process::Command::new(crate::harness::gitgate::binary())
        .args(["--log-format", "json", "run", "--config", "gitgate.yaml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last: serde_json::Value = serde_json::from_str(stderr.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("not JSON ({e}): {stderr}"));
    assert_eq!(last["level"], "ERROR", "{last}");
    assert!(
        last["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("gitgate.yaml:2:1: nope:")),
        "{last}"
    );
}

#[test]
fn an_app_key_readable_by_others_is_refused_with_the_fix() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("app.pem");
    let status = std::process::Command::new("openssl")
        .args(["genrsa", "-traditional", "-out"])
        .arg(&key)
        .arg("2048")
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(
        dir.path().join("gitgate.yaml"),
        "github:\n  app: {id: \"1\", privateKeyFile: app.pem}\n",
    )
    .unwrap();
    let out = cli(&["check", "--config", "gitgate.yaml"], dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("github.app.privateKeyFile") && stderr.contains("chmod 600"),
        "{stderr}"
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(
        cli(&["check", "--config", "gitgate.yaml"], dir.path())
            .status
            .success()
    );
    // So is a CA key `run` would refuse.
    let out = cli(&["ca", "init", "--out", "ca"], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    let ca_key = dir.path().join("ca/ca-key.pem");
    std::fs::set_permissions(&ca_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = cli(&["check", "--config", "gitgate.yaml"], dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("ca-key.pem") && stderr.contains("gitgate run refuses to start"),
        "{stderr}"
    );
}

#[test]
fn errors_found_after_parsing_name_the_line_and_column_of_their_key() {
    let dir = tempfile::tempdir().unwrap();
    for (config, want) in [
        (
            "listen: 127.0.0.1:0\npolicy:\n  allowedRepos: [a/b]\n  allowedRefs: [main]\n  maxPushSize: 2TB\n",
            "gitgate.yaml:5:16: policy.maxPushSize: invalid size \"2TB\"",
        ),
        (
            "listen: 127.0.0.1:0\npolicy: {allowedRepos: [a/b]}\npolicy: {allowedRepos: [c/d]}\n",
            "gitgate.yaml:3:1: policy: policy is given twice; keep one",
        ),
        (
            "limits: {maxBufferedBodyBytesPerClient: 4MiB}\npolicy: {allowedRepos: [a/b]}\n",
            "limits.maxBufferedBodyBytesPerClient: must be at least 8.39 MB",
        ),
        (
            "limits: {maxPushHeaderBytes: 9000000}\npolicy: {allowedRepos: [a/b]}\n",
            "limits.maxBufferedBodyBytesPerClient: must be at least 18.0 MB",
        ),
        (
            "limits: {maxBufferedBodyBytes: 10MiB}\npolicy: {allowedRepos: [a/b]}\n",
            "limits.maxBufferedBodyBytes: must be at least limits.maxBufferedBodyBytesPerClient",
        ),
        (
            "limits: {maxPushCheckBytes: 64MiB, maxPushCheckBytesPerClient: 65MiB}\npolicy: {allowedRepos: [a/b]}\n",
            "limits.maxPushCheckBytesPerClient: must be at most limits.maxPushCheckBytes (67.1 MB)",
        ),
        (
            "limits: {maxHeldPushes: 300}\npolicy: {allowedRepos: [a/b]}\n",
            "limits.maxHeldPushes: must be at most 256",
        ),
        (
            "limits: {maxHeldPushes: 8, maxHeldPushesPerClient: 9}\npolicy: {allowedRepos: [a/b]}\n",
            "limits.maxHeldPushesPerClient: must be at most limits.maxHeldPushes (8)",
        ),
        (
            "limits: {maxHeaderBytes: 500000}\npolicy: {allowedRepos: [a/b]}\n",
            "limits.maxHeaderBytes: must be at most 417792",
        ),
        (
            "limits: {maxHeaders: 5000}\npolicy: {allowedRepos: [a/b]}\n",
            "limits.maxHeaders: must be at most 1000",
        ),
        (
            "limits: {maxTunnels: 4, maxTunnelsPerClient: 5}\npolicy: {allowedRepos: [a/b]}\n",
            "limits.maxTunnelsPerClient: must be at most limits.maxTunnels (4)",
        ),
        (
            "limits: {maxHeldPushBytes: 1GiB, maxHeldPushBytesPerClient: 2GiB}\npolicy: {allowedRepos: [a/b]}\n",
            "limits.maxHeldPushBytesPerClient: must be at most limits.maxHeldPushBytes (1.07 GB)",
        ),
    ] {
        check_refuses(dir.path(), config, want);
    }
}

#[test]
fn type_and_syntax_errors_say_what_to_write() {
    let dir = tempfile::tempdir().unwrap();
    for (config, want) in [
        (
            "github:\n  app: {id: -5, privateKeyFile: k}\n",
            "gitgate.yaml:2:13: github.app.id: invalid App id -5: expected the numeric App ID (e.g. 123456) or the Client ID",
        ),
        (
            "policy: {allowedRepos: [a/b], maxBlobSize: 1e9}\n",
            "policy.maxBlobSize: invalid size \"1000000000.0\": write a number of bytes",
        ),
        (
            "listen: 3128\n",
            "gitgate.yaml:1:9: listen: invalid socket address syntax: expected IP:PORT, e.g. 0.0.0.0:3128",
        ),
        (
            "policy:\n\tallowedRepos: [a/b]\n",
            "a tab character; YAML indents with spaces only",
        ),
        (
            "[listen, policy]\n",
            "gitgate.yaml:1:1: the file must be a mapping of settings",
        ),
    ] {
        check_refuses(dir.path(), config, want);
    }
}

/// `env`, `explain` and `ca print` use no credential, so they run where the App key, the
/// client secret and the signer program are not (a workstation, a CI job checking a
/// policy change); `check` still refuses what `run` would.
#[test]
fn commands_that_use_no_credential_run_without_the_credential_files() {
    let dir = tempfile::tempdir().unwrap();
    let policy = "policy: {allowedRepos: [acme/app], allowedRefs: [main]}\n";
    for (github, missing) in [
        (
            "  app: {id: \"1\", privateKeyFile: /run/secrets/absent.pem}\n",
            "github.app.privateKeyFile",
        ),
        (
            "  app: {id: \"1\", signer: {command: [/nonexistent/sign-jwt]}}\n",
            "is not found",
        ),
        (
            "  user: {clientId: Iv1.abc, clientSecretFile: /run/secrets/absent}\n",
            "github.user.clientSecretFile",
        ),
    ] {
        let config = format!("listen: 127.0.0.1:3128\ngithub:\n{github}{policy}");
        std::fs::write(dir.path().join("gitgate.yaml"), &config).unwrap();
        let run = |args: &[&str]| {
            let mut all = vec![args[0], "--config", "gitgate.yaml"];
            all.extend_from_slice(&args[1..]);
            cli(&all, dir.path())
        };
        let out = run(&["explain", "push", "acme/app", "main"]);
        assert!(out.status.success(), "{config}{}", text(&out));
        assert_eq!(
            run(&["explain", "push", "acme/app", "dev"]).status.code(),
            Some(1),
            "{config}"
        );
        let out = run(&["env"]);
        assert!(
            out.status.success() && text(&out).contains("HTTPS_PROXY='http://127.0.0.1:3128'"),
            "{config}{}",
            text(&out)
        );
        let out = run(&["check"]);
        assert_eq!(out.status.code(), Some(64), "{config}{}", text(&out));
        assert!(text(&out).contains(missing), "{config}{}", text(&out));
    }
    let out = cli(&["ca", "init", "--out", "ca"], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    let out = cli(&["ca", "print", "--config", "gitgate.yaml"], dir.path());
    assert!(
        out.status.success() && text(&out).contains("BEGIN CERTIFICATE"),
        "{}",
        text(&out)
    );
}
