//! The App key kept out of gitgate: JWTs signed by an external command or by AWS KMS
//! (a local KMS emulator), verified by the stand-in like GitHub does.

use std::path::{Path, PathBuf};

use gitgate_standin::StandIn;

use crate::harness::gitgate::cli;
use crate::harness::{self, Gitgate, POLICY, Sandbox, app_config, text};

/// `app_config`, with `github.app.signer: SIGNER` instead of the key file.
fn signer_config(standin: &StandIn, signer: &str) -> String {
    let key = format!("privateKeyFile: {}", standin.app_key_pkcs1_file().display());
    let config = app_config(standin, POLICY);
    assert!(config.contains(&key));
    config.replace(&key, &format!("signer: {signer}"))
}

/// A shell script in `dir`, executable.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// A config whose signer is a command in `dir` holding the key; it logs each call's
/// signing input, one line per call, to the returned file.
fn logging_signer(standin: &StandIn, dir: &Path) -> (String, PathBuf) {
    let calls = dir.join("calls");
    let signer = script(
        dir,
        "sign-jwt",
        &format!(
            "tee -a {calls} | openssl dgst -sha256 -sign {key}; echo >> {calls}",
            calls = calls.display(),
            key = standin.app_key_pkcs8_file().display()
        ),
    );
    let config = signer_config(standin, &format!("{{command: [\"{}\"]}}", signer.display()));
    (config, calls)
}

#[test]
fn a_signing_command_that_holds_the_key_lets_git_clone_and_push() {
    let standin = harness::standin();
    let dir = tempfile::tempdir().unwrap();
    // The key lives with the signer only; each call is logged with its input.
    let (config, calls) = logging_signer(&standin, dir.path());
    assert!(
        !config.contains("privateKeyFile") && !config.contains("app-key"),
        "no key file in the config: {config}"
    );
    let gitgate = Gitgate::start(&config);
    let sandbox = Sandbox::new(&gitgate);
    let repo = sandbox.clone_repo("acme/app", "app");
    sandbox.commit(&repo, "signed.txt", "by a command");
    sandbox.git_ok(&repo, &["push", "origin", "HEAD:main"]);
    sandbox.clone_repo("bob/tools", "tools");
    // The signer saw the JWT signing input, and one JWT served every mint.
    let calls = std::fs::read_to_string(&calls).unwrap();
    let inputs: Vec<&str> = calls.lines().collect();
    assert_eq!(inputs.len(), 1, "{calls}");
    assert!(
        inputs[0].starts_with("eyJ") && inputs[0].contains('.'),
        "{calls}"
    );
    assert!(standin.mints().len() >= 2, "{:?}", standin.mints());
    gitgate.assert_no_secrets(&standin);
}

#[test]
fn a_jwt_github_rejects_is_not_used_again() {
    // A JWT is reused for minutes; once GitHub refuses it (a clock ahead of GitHub's,
    // a key rotated behind the signer), the next mint must sign a new one.
    let standin = harness::standin();
    let dir = tempfile::tempdir().unwrap();
    let (config, calls) = logging_signer(&standin, dir.path());
    let gitgate = Gitgate::start(&config);
    let sandbox = Sandbox::new(&gitgate);
    sandbox.clone_repo("acme/app", "app");
    let signed = || std::fs::read_to_string(&calls).unwrap().lines().count();
    assert_eq!(signed(), 1);
    standin.set_fault(Some(gitgate_standin::Fault::TokenEndpoint {
        status: 401,
        body: r#"{"message":"'Issued at' claim ('iat') must be an Integer representing a time in the past"}"#.into(),
    }));
    let out = sandbox.git_fails(
        sandbox.home.path(),
        &["clone", "https://github.com/bob/tools.git", "refused"],
    );
    assert!(out.contains("GitHub rejected the App JWT"), "{out}");
    standin.set_fault(None);
    // A failed mint is retried after a short backoff.
    let url = "https://github.com/bob/tools.git";
    crate::core::wait_until(|| {
        sandbox
            .git(sandbox.home.path(), &["clone", "-q", url, "tools"])
            .status
            .success()
    });
    assert_eq!(signed(), 2, "the refused JWT was used again");
}

#[test]
fn signer_failures_reach_git_and_doctor_in_plain_words() {
    let standin = harness::standin();
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "echo 'HSM offline: slot 0 not found' >&2; exit 2",
            "{command: [SCRIPT]}",
            "cannot sign the App JWT: signer",
            "exited with exit status: 2: HSM offline: slot 0 not found",
        ),
        (
            "sleep 10",
            "{command: [SCRIPT], timeout: 1s}",
            "cannot sign the App JWT: signer",
            "did not answer within 1 s (github.app.signer.timeout)",
        ),
        (
            "echo not-a-signature",
            "{command: [SCRIPT]}",
            "cannot sign the App JWT: signer",
            "not an RSA signature",
        ),
    ];
    for (i, (body, signer, first, second)) in cases.into_iter().enumerate() {
        let path = script(dir.path(), &format!("signer-{i}"), body);
        let config = signer_config(
            &standin,
            &signer.replace("SCRIPT", &format!("\"{}\"", path.display())),
        );
        let gitgate = Gitgate::start(&config);
        let sandbox = Sandbox::new(&gitgate);
        let out = sandbox.git_fails(
            sandbox.home.path(),
            &["clone", "https://github.com/acme/app.git"],
        );
        assert!(
            out.contains(&format!("remote error: gitgate: {first}")) && out.contains(second),
            "{out}"
        );
        std::fs::write(dir.path().join("gitgate.yaml"), &config).unwrap();
        let doctor = cli(&["doctor", "--config", "gitgate.yaml"], dir.path());
        let text = text(&doctor);
        assert!(!doctor.status.success(), "{text}");
        assert!(text.contains(second), "{text}");
    }
}

#[test]
fn doctor_exercises_a_command_signer_printing_base64() {
    let standin = harness::standin();
    let dir = tempfile::tempdir().unwrap();
    let signer = script(
        dir.path(),
        "sign-b64",
        &format!(
            "openssl dgst -sha256 -sign {} | base64 -w 76",
            standin.app_key_pkcs8_file().display()
        ),
    );
    let config = signer_config(
        &standin,
        &format!("{{command: [\"{}\"]}}", signer.display()),
    );
    std::fs::write(dir.path().join("gitgate.yaml"), &config).unwrap();
    let out = cli(&["doctor", "--config", "gitgate.yaml"], dir.path());
    let text = text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("JWT accepted"), "{text}");
}

#[test]
fn exactly_one_way_of_signing_is_accepted() {
    let standin = harness::standin();
    let dir = tempfile::tempdir().unwrap();
    let key = standin.app_key_pkcs1_file().display().to_string();
    let cases = [
        (
            format!("{{id: \"1\", privateKeyFile: {key}, signer: {{command: [true]}}}}"),
            "github.app takes exactly one of `privateKeyFile: PATH`, `signer: {command: [...]}`",
        ),
        ("{id: \"1\"}".to_owned(), "github.app takes exactly one of"),
        (
            "{id: \"1\", signer: {command: []}}".to_owned(),
            "signer.command needs the program and its arguments",
        ),
        (
            "{id: \"1\", signer: {command: [x], awsKms: {keyId: k, region: r}}}".to_owned(),
            "signer takes exactly one of",
        ),
    ];
    for (app, expected) in cases {
        std::fs::write(
            dir.path().join("gitgate.yaml"),
            format!("github:\n  app: {app}\n"),
        )
        .unwrap();
        let out = cli(&["check", "--config", "gitgate.yaml"], dir.path());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{app}: {stderr}");
        assert!(
            stderr.contains("gitgate.yaml:2:") && stderr.contains(expected),
            "{app}: {stderr}"
        );
    }
}

/// The AWS KMS signer against a local KMS (moto, see `tests/kms/`).
#[cfg(feature = "aws-kms")]
mod aws_kms {
    use std::io::{BufRead, BufReader};
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};

    use base64::Engine;
    use gitgate_standin::StandIn;

    use super::signer_config;
    use crate::harness::{Gitgate, Sandbox, text};

    /// moto's KMS server with one RSA signing key; killed on drop.
    struct LocalKms {
        child: Child,
        endpoint: String,
        key_id: String,
        public_key_pkcs1: Vec<u8>,
    }

    impl LocalKms {
        fn start() -> Self {
            let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
            let python = std::env::var_os("GITGATE_MOTO_PYTHON")
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join("target/moto-venv/bin/python"));
            assert!(
                python.exists(),
                "the AWS KMS signer tests need moto: run tests/kms/setup.sh (or set GITGATE_MOTO_PYTHON to a python with moto, flask and flask-cors)"
            );
            let mut child = Command::new(python)
                .arg(root.join("tests/kms/moto_kms.py"))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("start moto");
            // Ready once it printed the endpoint and the key.
            let mut line = String::new();
            BufReader::new(child.stdout.take().unwrap())
                .read_line(&mut line)
                .unwrap();
            let ready: serde_json::Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("moto did not start ({e}): {line:?}"));
            Self {
                child,
                endpoint: ready["endpoint"].as_str().unwrap().to_owned(),
                key_id: ready["keyId"].as_str().unwrap().to_owned(),
                public_key_pkcs1: base64::engine::general_purpose::STANDARD
                    .decode(ready["publicKeyPkcs1Der"].as_str().unwrap())
                    .unwrap(),
            }
        }

        /// What points the AWS SDK at this KMS, with static test credentials.
        fn env(&self, home: &std::path::Path) -> Vec<(String, String)> {
            [
                ("AWS_ENDPOINT_URL_KMS", self.endpoint.as_str()),
                ("AWS_ACCESS_KEY_ID", "test"),
                ("AWS_SECRET_ACCESS_KEY", "test"),
                ("AWS_EC2_METADATA_DISABLED", "true"),
                ("HOME", home.to_str().unwrap()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
        }
    }

    impl Drop for LocalKms {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// A stand-in that verifies JWTs against the KMS key.
    fn standin_for(kms: &LocalKms) -> StandIn {
        let mut config = gitgate_standin::Config::default();
        config.app_public_key_der = Some(kms.public_key_pkcs1.clone());
        StandIn::start(config).expect("start the GitHub stand-in")
    }

    #[test]
    fn a_kms_key_signs_the_app_jwt_for_clone_push_and_doctor() {
        let kms = LocalKms::start();
        let standin = standin_for(&kms);
        let config = signer_config(
            &standin,
            &format!(
                "{{awsKms: {{keyId: \"{}\", region: us-east-1}}}}",
                kms.key_id
            ),
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("gitgate.yaml"), &config).unwrap();
        let env = kms.env(dir.path());
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let doctor = |more: &[(&str, &str)]| {
            std::process::Command::new(crate::harness::gitgate::binary())
                .args(["doctor", "--config", "gitgate.yaml"])
                .current_dir(dir.path())
                .envs(env.iter().chain(more).copied())
                .output()
                .unwrap()
        };
        // doctor signs a JWT through KMS and has the stand-in accept it.
        let signed = doctor(&[]);
        assert!(signed.status.success(), "{}", text(&signed));
        assert!(text(&signed).contains("JWT accepted"), "{}", text(&signed));
        // The KMS client takes its proxy from the environment, as the AWS SDK does: a
        // proxy nobody listens on fails it, unless NO_PROXY names KMS's host.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let proxy = format!("http://{}", closed.local_addr().unwrap());
        drop(closed);
        let through = [
            ("HTTP_PROXY", proxy.as_str()),
            ("HTTPS_PROXY", proxy.as_str()),
        ];
        let failed = doctor(&through);
        assert!(
            !failed.status.success() && text(&failed).contains("AWS KMS key"),
            "{}",
            text(&failed)
        );
        let bypassed = doctor(&[through[0], through[1], ("NO_PROXY", "127.0.0.1")]);
        assert!(bypassed.status.success(), "{}", text(&bypassed));
        let gitgate = Gitgate::start_with_env(dir, &env);
        let sandbox = Sandbox::new(&gitgate);
        let repo = sandbox.clone_repo("acme/app", "app");
        sandbox.commit(&repo, "kms.txt", "signed in KMS");
        sandbox.git_ok(&repo, &["push", "origin", "HEAD:main"]);
        assert!(!standin.mints().is_empty());
        gitgate.assert_no_secrets(&standin);
    }

    #[test]
    fn a_kms_refusal_reaches_git_naming_the_key() {
        let kms = LocalKms::start();
        let standin = standin_for(&kms);
        let config = signer_config(
            &standin,
            "{awsKms: {keyId: \"alias/not-there\", region: us-east-1}}",
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("gitgate.yaml"), &config).unwrap();
        let env = kms.env(dir.path());
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let gitgate = Gitgate::start_with_env(dir, &env);
        let sandbox = Sandbox::new(&gitgate);
        let out = sandbox.git_fails(
            sandbox.home.path(),
            &["clone", "https://github.com/acme/app.git"],
        );
        assert!(
            out.contains(
                "remote error: gitgate: cannot sign the App JWT: AWS KMS key alias/not-there in us-east-1 refused to sign"
            ),
            "{out}"
        );
    }
}
