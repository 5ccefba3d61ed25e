//! The deployment examples under `examples/`.
//!
//! The network-namespace sandbox (`examples/netns/sandbox.sh`) runs for real: git inside
//! a namespace whose only reachable address is gitgate's. The container and Kubernetes
//! examples cannot run here (no container engine), so they are validated as far as that
//! allows: every YAML file parses, every gitgate config in them passes `gitgate check`
//! and starts, the image's health check command works, and the manifests keep the App
//! key and the network away from the sandbox.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde::Deserialize;
use serde_yaml::Value;

use crate::harness::gitgate::{binary, cli};
use crate::harness::{self, Gitgate, POLICY, app_config, text};

// ---------------------------------------------------------------------------------------
// Files and YAML.

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_owned()
}

fn example(path: &str) -> PathBuf {
    repo_root().join("examples").join(path)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every document of a (multi-document) YAML file; empty documents are dropped.
fn yaml_documents(path: &Path) -> Vec<Value> {
    let text = read(path);
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .filter(|v| !v.is_null())
        .collect()
}

fn yaml_document(path: &Path) -> Value {
    let mut docs = yaml_documents(path);
    assert_eq!(docs.len(), 1, "{}: expected one document", path.display());
    docs.remove(0)
}

/// The value at a dotted path (`spec.template.spec`); panics naming the path when absent.
fn at<'a>(value: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(value, |v, key| {
        v.get(key)
            .unwrap_or_else(|| panic!("no `{path}` (missing `{key}`) in {value:?}"))
    })
}

fn str_at<'a>(value: &'a Value, path: &str) -> &'a str {
    at(value, path)
        .as_str()
        .unwrap_or_else(|| panic!("`{path}` is not a string"))
}

fn seq_at<'a>(value: &'a Value, path: &str) -> &'a [Value] {
    at(value, path)
        .as_sequence()
        .unwrap_or_else(|| panic!("`{path}` is not a list"))
}

fn strings(values: &[Value]) -> Vec<&str> {
    values
        .iter()
        .map(|v| v.as_str().expect("a string"))
        .collect()
}

fn parent(path: &str) -> &str {
    Path::new(path)
        .parent()
        .and_then(Path::to_str)
        .expect("an absolute file path")
}

fn files_under(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            files_under(&path, found);
        } else {
            found.push(path);
        }
    }
}

fn is_yaml(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
}

/// An RSA key like a GitHub App's, mode 0600, in `dir`.
fn app_key(dir: &Path) -> PathBuf {
    let key = dir.join("github-app.pem");
    let out = Command::new("openssl")
        .args(["genrsa", "-traditional", "-out"])
        .arg(&key)
        .arg("2048")
        .output()
        .expect("run openssl");
    assert!(out.status.success(), "openssl genrsa: {}", text(&out));
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    key
}

// ---------------------------------------------------------------------------------------
// The gitgate configs shipped in examples/.

/// A gitgate config found in examples/: where, and its text.
struct ExampleConfig {
    origin: String,
    text: String,
}

impl ExampleConfig {
    fn value(&self) -> Value {
        serde_yaml::from_str(&self.text).unwrap_or_else(|e| panic!("{}: {e}", self.origin))
    }

    /// The config with its App key path replaced by `key` (every other byte as shipped).
    fn with_key(&self, key: &Path) -> String {
        let value = self.value();
        match value
            .get("github")
            .and_then(|g| g.get("app"))
            .and_then(|a| a.get("privateKeyFile"))
            .and_then(Value::as_str)
        {
            Some(path) => self.text.replace(path, &key.display().to_string()),
            None => self.text.clone(),
        }
    }
}

/// A YAML document is a gitgate config when it has gitgate's top-level keys.
fn looks_like_gitgate_config(value: &Value) -> bool {
    value.get("policy").is_some() && value.get("listen").is_some()
}

/// Every gitgate config in examples/: standalone files, and `*.yaml` entries of
/// Kubernetes ConfigMaps. demo.yaml's `${…}` placeholders are filled from `standin` the
/// way the demo fills them.
fn example_configs(standin: &gitgate_standin::StandIn) -> Vec<ExampleConfig> {
    let mut files = Vec::new();
    files_under(&repo_root().join("examples"), &mut files);
    files.sort();
    let mut configs = Vec::new();
    for file in files.iter().filter(|f| is_yaml(f)) {
        let rel = file
            .strip_prefix(repo_root())
            .unwrap()
            .display()
            .to_string();
        let text = read(file);
        for doc in yaml_documents(file) {
            if looks_like_gitgate_config(&doc) {
                let text = text
                    .replace("${APP_ID}", standin.app_id())
                    .replace(
                        "${APP_KEY}",
                        &standin.app_key_pkcs1_file().display().to_string(),
                    )
                    .replace("${STANDIN_CA}", &standin.ca_file().display().to_string())
                    .replace("${STANDIN}", &standin.addr().to_string());
                configs.push(ExampleConfig {
                    origin: rel.clone(),
                    text,
                });
            } else if doc.get("kind").and_then(Value::as_str) == Some("ConfigMap") {
                let data = doc.get("data").and_then(Value::as_mapping);
                for (key, value) in data.into_iter().flatten() {
                    let (Some(key), Some(value)) = (key.as_str(), value.as_str()) else {
                        continue;
                    };
                    let parsed: Value = serde_yaml::from_str(value).unwrap_or(Value::Null);
                    if is_yaml(Path::new(key)) && looks_like_gitgate_config(&parsed) {
                        configs.push(ExampleConfig {
                            origin: format!("{rel} (ConfigMap key {key})"),
                            text: value.to_owned(),
                        });
                    }
                }
            }
        }
    }
    configs
}

fn config_of(standin: &gitgate_standin::StandIn, origin_prefix: &str) -> ExampleConfig {
    example_configs(standin)
        .into_iter()
        .find(|c| c.origin.starts_with(origin_prefix))
        .unwrap_or_else(|| panic!("no gitgate config in {origin_prefix}"))
}

/// `gitgate env` for a shipped config, with its App key path replaced.
fn gitgate_env(config: &ExampleConfig, format: &str, proxy_url: &str, ca_file: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let key = app_key(dir.path());
    std::fs::write(dir.path().join("gitgate.yaml"), config.with_key(&key)).unwrap();
    let out = cli(
        &[
            "env",
            "--config",
            "gitgate.yaml",
            "--format",
            format,
            "--proxy-url",
            proxy_url,
            "--ca-file",
            ca_file,
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}: {}", config.origin, text(&out));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn every_yaml_file_under_examples_parses() {
    let mut files = Vec::new();
    files_under(&repo_root().join("examples"), &mut files);
    let yaml: Vec<_> = files.into_iter().filter(|f| is_yaml(f)).collect();
    for expected in [
        "demo.yaml",
        "netns/gitgate.yaml",
        "docker/docker-compose.yml",
        "docker/config/gitgate.yaml",
        "kubernetes/sidecar/pod.yaml",
        "kubernetes/sidecar/configmap.yaml",
        "kubernetes/sidecar/secret.yaml",
        "kubernetes/sidecar/networkpolicy.yaml",
        "kubernetes/sidecar/kustomization.yaml",
        "kubernetes/gateway/kustomization.yaml",
        "kubernetes/gateway/deployment.yaml",
        "kubernetes/gateway/service.yaml",
        "kubernetes/gateway/networkpolicy.yaml",
        "kubernetes/gateway/pdb.yaml",
        "kubernetes/gateway/hpa.yaml",
        "kubernetes/gateway/configmap.yaml",
        "kubernetes/gateway/profiles.yaml",
        "kubernetes/gateway/secret.yaml",
    ] {
        assert!(
            yaml.contains(&example(expected)),
            "examples/{expected} is missing"
        );
    }
    for file in &yaml {
        let docs = yaml_documents(file);
        assert!(!docs.is_empty(), "{} has no YAML document", file.display());
        if file.starts_with(example("kubernetes")) {
            for doc in &docs {
                for key in ["apiVersion", "kind"] {
                    assert!(
                        doc.get(key).and_then(Value::as_str).is_some(),
                        "{}: a Kubernetes object without {key}",
                        file.display()
                    );
                }
            }
        }
    }
}

#[test]
fn every_gitgate_config_in_examples_passes_check() {
    let standin = harness::standin();
    let configs = example_configs(&standin);
    let origins: Vec<&str> = configs.iter().map(|c| c.origin.as_str()).collect();
    for expected in [
        "examples/demo.yaml",
        "examples/netns/gitgate.yaml",
        "examples/docker/config/gitgate.yaml",
        "examples/kubernetes/sidecar/configmap.yaml (ConfigMap key gitgate.yaml)",
    ] {
        assert!(
            origins.contains(&expected),
            "{expected} not among {origins:?}"
        );
    }
    for config in &configs {
        let dir = tempfile::tempdir().unwrap();
        let key = app_key(dir.path());
        std::fs::write(dir.path().join("gitgate.yaml"), config.with_key(&key)).unwrap();
        let out = cli(&["check", "--config", "gitgate.yaml"], dir.path());
        assert!(
            out.status.success(),
            "gitgate check refused {}:\n{}",
            config.origin,
            text(&out)
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("gitgate.yaml is valid"),
            "{}: {}",
            config.origin,
            text(&out)
        );
    }
}

/// The gateway example: its config with its profiles ConfigMap as the profilesDir
/// passes `gitgate check`, every profile loaded.
#[test]
fn the_gateway_example_checks_with_its_profiles() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = example("kubernetes/gateway");
    let data = |file: &str, key: &str| -> Vec<(String, String)> {
        let docs = yaml_documents(&gateway.join(file));
        let map = docs[0]["data"]
            .as_mapping()
            .expect("ConfigMap data")
            .clone();
        map.into_iter()
            .map(|(k, v)| {
                (
                    k.as_str().unwrap().to_owned(),
                    v.as_str().unwrap().to_owned(),
                )
            })
            .filter(|(k, _)| key.is_empty() || k == key)
            .collect()
    };
    let profiles = dir.path().join("profiles.d");
    std::fs::create_dir(&profiles).unwrap();
    let entries = data("profiles.yaml", "");
    for (name, text) in &entries {
        std::fs::write(profiles.join(name), text).unwrap();
    }
    let key = app_key(dir.path());
    let (_, config) = data("configmap.yaml", "gitgate.yaml").remove(0);
    let value: Value = serde_yaml::from_str(&config).unwrap();
    let config = config
        .replace(
            str_at(&value, "profilesDir"),
            &profiles.display().to_string(),
        )
        .replace(
            str_at(&value, "github.app.privateKeyFile"),
            &key.display().to_string(),
        );
    std::fs::write(dir.path().join("gitgate.yaml"), config).unwrap();
    let out = cli(&["check", "--config", "gitgate.yaml"], dir.path());
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(
        shown.contains(&format!("profiles: {}", entries.len())),
        "{shown}"
    );
    for (name, _) in &entries {
        let profile = name.trim_end_matches(".yaml");
        assert!(shown.contains(&format!("profile {profile}:")), "{shown}");
    }
}

/// Runs a shipped config for real, with its absolute paths moved under a temp dir and
/// its addresses on loopback: gitgate starts, writes its CA where the manifests expect
/// it, answers /healthz, and the image's HEALTHCHECK command reports it healthy.
#[test]
fn container_configs_start_and_the_image_healthcheck_reports_them() {
    let standin = harness::standin();
    let healthcheck = dockerfile_healthcheck();
    for origin in [
        "examples/docker/config/gitgate.yaml",
        "examples/kubernetes/sidecar/configmap.yaml",
    ] {
        let config = config_of(&standin, origin);
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let moved = |path: &str| root.join(path.trim_start_matches('/'));
        let mut value = config.value();
        let ca_cert = str_at(&value, "ca.cert").to_owned();
        let ca_key = str_at(&value, "ca.key").to_owned();
        let key_file = str_at(&value, "github.app.privateKeyFile").to_owned();
        assert!(
            [&ca_cert, &ca_key, &key_file]
                .iter()
                .all(|p| p.starts_with('/')),
            "{origin}: container configs use absolute paths"
        );
        assert_ne!(
            parent(&ca_cert),
            parent(&ca_key),
            "{origin}: the CA key must not sit in the directory shared with the sandbox"
        );
        let admin = str_at(&value, "admin").to_owned();
        assert!(
            admin.ends_with(":9901"),
            "{origin}: the image's HEALTHCHECK probes port 9901, admin is {admin}"
        );
        std::fs::create_dir_all(moved(parent(&key_file))).unwrap();
        std::fs::copy(app_key(dir.path()), moved(&key_file)).unwrap();
        let map = value.as_mapping_mut().unwrap();
        map.insert("listen".into(), "127.0.0.1:0".into());
        map.insert("admin".into(), "127.0.0.1:0".into());
        let ca = map.get_mut("ca").unwrap().as_mapping_mut().unwrap();
        ca.insert("cert".into(), moved(&ca_cert).display().to_string().into());
        ca.insert("key".into(), moved(&ca_key).display().to_string().into());
        let app = map
            .get_mut("github")
            .and_then(|g| g.get_mut("app"))
            .and_then(Value::as_mapping_mut)
            .unwrap();
        app.insert(
            "privateKeyFile".into(),
            moved(&key_file).display().to_string().into(),
        );
        std::fs::write(
            dir.path().join("gitgate.yaml"),
            serde_yaml::to_string(&value).unwrap(),
        )
        .unwrap();

        let mut gitgate = Gitgate::start_in(dir);
        let admin = gitgate.admin_addr();
        assert!(moved(&ca_cert).exists(), "{origin}: no CA certificate");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(moved(&ca_key))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{origin}: CA key mode {mode:o}");

        // The HEALTHCHECK's own command line, pointed at this gitgate's admin address.
        let run_healthcheck = || {
            let args: Vec<String> = healthcheck[1..]
                .iter()
                .map(|a| a.replace("127.0.0.1:9901", &admin.to_string()))
                .collect();
            Command::new(binary())
                .args(&args)
                .output()
                .expect("run the healthcheck")
        };
        let out = run_healthcheck();
        assert!(
            out.status.success(),
            "{origin}: HEALTHCHECK {healthcheck:?} failed:\n{}",
            text(&out)
        );
        gitgate.terminate();
        gitgate.wait(Duration::from_secs(30));
        let out = run_healthcheck();
        assert!(
            !out.status.success(),
            "{origin}: HEALTHCHECK passed with gitgate stopped"
        );
    }
}

// ---------------------------------------------------------------------------------------
// The Dockerfile.

/// `(instruction, arguments)` of the Dockerfile, continuation lines joined, comments out.
fn dockerfile() -> Vec<(String, String)> {
    let text = read(&repo_root().join("Dockerfile"));
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || trimmed.is_empty() {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        let (instruction, args) = current.split_once(' ').unwrap_or((&current, ""));
        instructions.push((instruction.to_ascii_uppercase(), args.trim().to_owned()));
        current.clear();
    }
    instructions
}

/// The exec-form array of an instruction's arguments.
fn exec_form(args: &str) -> Vec<String> {
    let at = args
        .find('[')
        .unwrap_or_else(|| panic!("not exec form: {args}"));
    serde_json::from_str(&args[at..]).unwrap_or_else(|e| panic!("{args}: {e}"))
}

/// The HEALTHCHECK command as an argument vector.
fn dockerfile_healthcheck() -> Vec<String> {
    let instructions = dockerfile();
    let (_, args) = instructions
        .iter()
        .find(|(i, _)| i == "HEALTHCHECK")
        .expect("the Dockerfile has a HEALTHCHECK");
    let command = args.split_once("CMD").expect("HEALTHCHECK … CMD").1;
    exec_form(command)
}

#[test]
fn dockerfile_is_multi_stage_distroless_non_root_with_a_healthcheck() {
    let instructions = dockerfile();
    let all = |name: &str| -> Vec<&str> {
        instructions
            .iter()
            .filter(|(i, _)| i == name)
            .map(|(_, a)| a.as_str())
            .collect()
    };
    let from = all("FROM");
    assert!(from.len() >= 2, "not multi-stage: {from:?}");
    let last = from.last().unwrap();
    assert!(
        last.starts_with("gcr.io/distroless/") || last.starts_with("scratch"),
        "the final image is neither distroless nor scratch: {last}"
    );
    // The final stage runs as a numeric non-root user (Kubernetes' runAsNonRoot can only
    // verify a numeric one).
    let final_stage = instructions.iter().rposition(|(i, _)| i == "FROM").unwrap();
    let user = instructions[final_stage..]
        .iter()
        .rev()
        .find(|(i, _)| i == "USER")
        .map(|(_, a)| a.as_str())
        .expect("the final stage sets USER");
    let uid: u32 = user
        .split(':')
        .next()
        .unwrap()
        .parse()
        .expect("numeric USER");
    assert_ne!(uid, 0, "USER is root");
    let exposed: Vec<&str> = all("EXPOSE").iter().flat_map(|a| a.split(' ')).collect();
    for port in ["3128", "9901"] {
        assert!(exposed.contains(&port), "EXPOSE lacks {port}: {exposed:?}");
    }
    let entrypoint = exec_form(all("ENTRYPOINT").last().expect("ENTRYPOINT"));
    let healthcheck = dockerfile_healthcheck();
    assert_eq!(
        healthcheck[0], entrypoint[0],
        "HEALTHCHECK runs another binary"
    );
    assert_eq!(healthcheck[1], "health");
    let cmd = exec_form(all("CMD").last().expect("CMD"));
    assert_eq!(cmd, ["run", "--config", "/etc/gitgate/gitgate.yaml"]);

    // Every COPY source from the build context exists, and together they hold every
    // workspace member and every file the gitgate package's manifest points at.
    let copied: Vec<String> = all("COPY")
        .iter()
        .filter(|a| !a.starts_with("--from"))
        .flat_map(|a| {
            let words: Vec<&str> = a.split_whitespace().collect();
            words[..words.len() - 1]
                .iter()
                .map(|w| w.to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    for source in &copied {
        assert!(
            repo_root().join(source).exists(),
            "COPY {source}: no such file"
        );
    }
    let is_copied = |path: &str| {
        copied
            .iter()
            .any(|c| path == c || path.starts_with(&format!("{c}/")))
    };
    let mut needed = workspace_members(&read(&repo_root().join("Cargo.toml")));
    needed.push("Cargo.lock".to_owned());
    needed.extend(manifest_paths(&read(
        &repo_root().join("sidecar/Cargo.toml"),
    )));
    assert!(
        needed.iter().any(|p| p == "tests/e2e/main.rs"),
        "the gitgate manifest's target paths were not found: {needed:?}"
    );
    for member in &needed {
        assert!(
            is_copied(member),
            "the Dockerfile does not COPY {member} (a workspace member or a path the gitgate manifest needs)"
        );
    }
    let build = all("RUN").join(" ");
    assert!(
        build.contains("cargo build --release --locked"),
        "the build does not use the locked dependencies: {build}"
    );
}

/// The files the gitgate package's targets point at outside its directory
/// (`path = "../tests/e2e/main.rs"`), relative to the workspace root.
fn manifest_paths(cargo_toml: &str) -> Vec<String> {
    cargo_toml
        .lines()
        .filter_map(|l| l.trim().strip_prefix("path = \"../"))
        .map(|rest| rest.trim_end_matches('"').to_owned())
        .collect()
}

/// The workspace's `members = [...]`, read without a TOML parser.
fn workspace_members(cargo_toml: &str) -> Vec<String> {
    let start = cargo_toml.find("members").expect("workspace members");
    let open = start + cargo_toml[start..].find('[').unwrap();
    let close = open + cargo_toml[open..].find(']').unwrap();
    cargo_toml[open + 1..close]
        .split(',')
        .map(|m| m.trim().trim_matches('"').to_owned())
        .filter(|m| !m.is_empty())
        .collect()
}

// ---------------------------------------------------------------------------------------
// docker-compose.yml.

/// A service's networks, in either compose syntax (list or mapping).
fn service_networks(service: &Value) -> Vec<String> {
    match service.get("networks") {
        Some(Value::Sequence(list)) => strings(list).into_iter().map(str::to_owned).collect(),
        Some(Value::Mapping(map)) => map.keys().map(|k| k.as_str().unwrap().to_owned()).collect(),
        _ => vec!["default".to_owned()],
    }
}

/// A service's volume mounts as `(source, target, read_only)`, short syntax.
fn service_volumes(service: &Value) -> Vec<(String, String, bool)> {
    service
        .get("volumes")
        .and_then(Value::as_sequence)
        .map(|v| strings(v))
        .unwrap_or_default()
        .into_iter()
        .map(|v| {
            let parts: Vec<&str> = v.split(':').collect();
            (
                parts[0].to_owned(),
                parts[1].to_owned(),
                parts.get(2) == Some(&"ro"),
            )
        })
        .collect()
}

/// `NAME=value` lines of an env file, comments out.
fn env_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

#[test]
fn compose_sandbox_is_on_the_internal_network_only_and_never_sees_the_keys() {
    let standin = harness::standin();
    let compose_file = example("docker/docker-compose.yml");
    let compose = yaml_document(&compose_file);
    let config = config_of(&standin, "examples/docker/config/gitgate.yaml");
    let settings = config.value();
    let gitgate = at(&compose, "services.gitgate");
    let sandbox = at(&compose, "services.sandbox");
    let is_internal = |network: &str| {
        compose
            .get("networks")
            .and_then(|n| n.get(network))
            .and_then(|n| n.get("internal"))
            .and_then(Value::as_bool)
            == Some(true)
    };

    // Networks: the sandbox only on internal ones, gitgate on one of those and on one
    // with a way out; nothing published on the host from the sandbox.
    let sandbox_networks = service_networks(sandbox);
    assert!(
        !sandbox_networks.is_empty() && sandbox_networks.iter().all(|n| is_internal(n)),
        "the sandbox is on a network with egress: {sandbox_networks:?}"
    );
    let gitgate_networks = service_networks(gitgate);
    assert!(
        sandbox_networks
            .iter()
            .any(|n| gitgate_networks.contains(n)),
        "gitgate does not share a network with the sandbox"
    );
    assert!(
        gitgate_networks.iter().any(|n| !is_internal(n)),
        "gitgate has no network with egress"
    );
    for key in ["network_mode", "ports", "secrets", "cap_add", "privileged"] {
        assert!(sandbox.get(key).is_none(), "the sandbox sets {key}");
    }

    // The image: built from the repository's Dockerfile; config mounted as a directory
    // at the path the image's CMD reads.
    let context = compose_file
        .parent()
        .unwrap()
        .join(str_at(gitgate, "build.context"));
    assert!(
        context.join("Dockerfile").exists(),
        "build context {context:?}"
    );
    let gitgate_volumes = service_volumes(gitgate);
    let config_mount = gitgate_volumes
        .iter()
        .find(|(_, target, _)| target == "/etc/gitgate")
        .expect("gitgate mounts its config directory at /etc/gitgate");
    assert!(config_mount.2, "the config is mounted read-only");
    assert!(
        compose_file
            .parent()
            .unwrap()
            .join(&config_mount.0)
            .join("gitgate.yaml")
            .exists(),
        "{config_mount:?} holds no gitgate.yaml"
    );

    // The CA: the certificate's volume is shared read-only, the key's is not shared.
    let volume_at = |dir: &str| {
        gitgate_volumes
            .iter()
            .find(|(_, target, _)| target == dir)
            .map(|(source, _, _)| source.clone())
            .unwrap_or_else(|| panic!("gitgate mounts no volume at {dir}"))
    };
    let cert_volume = volume_at(parent(str_at(&settings, "ca.cert")));
    let key_volume = volume_at(parent(str_at(&settings, "ca.key")));
    assert_ne!(cert_volume, key_volume);
    let sandbox_volumes = service_volumes(sandbox);
    assert!(
        sandbox_volumes
            .iter()
            .all(|(source, _, _)| source != &key_volume),
        "the sandbox mounts the CA key's volume"
    );
    let (_, ca_dir, read_only) = sandbox_volumes
        .iter()
        .find(|(source, _, _)| source == &cert_volume)
        .expect("the sandbox mounts the CA certificate's volume");
    assert!(read_only, "the sandbox can write gitgate's CA certificate");

    // The App key: a compose secret where the config expects it, for gitgate only.
    let secrets = strings(seq_at(gitgate, "secrets"));
    assert_eq!(
        str_at(&settings, "github.app.privateKeyFile"),
        format!("/run/secrets/{}", secrets[0])
    );

    // The sandbox's environment is what `gitgate env` prints for it.
    let env_file = compose_file
        .parent()
        .unwrap()
        .join(str_at(sandbox, "env_file"));
    let listen = str_at(&settings, "listen");
    let proxy_url = format!("http://gitgate:{}", listen.rsplit(':').next().unwrap());
    let ca_file = format!("{ca_dir}/ca.pem");
    let expected = gitgate_env(&config, "dotenv", &proxy_url, &ca_file);
    assert_eq!(
        env_lines(&read(&env_file)),
        env_lines(&expected),
        "{} is not what `gitgate env --format dotenv --proxy-url {proxy_url} --ca-file {ca_file}` prints",
        env_file.display()
    );
    assert_eq!(
        str_at(sandbox, "depends_on.gitgate.condition"),
        "service_healthy"
    );
}

// ---------------------------------------------------------------------------------------
// The Kubernetes sidecar example.

fn containers<'a>(pod: &'a Value, kind: &str) -> &'a [Value] {
    pod.get("spec")
        .and_then(|s| s.get(kind))
        .and_then(Value::as_sequence)
        .map_or(&[], Vec::as_slice)
}

fn container<'a>(pod: &'a Value, name: &str) -> &'a Value {
    containers(pod, "initContainers")
        .iter()
        .chain(containers(pod, "containers"))
        .find(|c| c.get("name").and_then(Value::as_str) == Some(name))
        .unwrap_or_else(|| panic!("no container {name}"))
}

/// A container's mounts as `(volume, mountPath, readOnly, subPath?)`.
fn mounts(container: &Value) -> Vec<(String, String, bool, bool)> {
    container
        .get("volumeMounts")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .map(|m| {
            (
                str_at(m, "name").to_owned(),
                str_at(m, "mountPath").to_owned(),
                m.get("readOnly").and_then(Value::as_bool) == Some(true),
                m.get("subPath").is_some(),
            )
        })
        .collect()
}

fn volume<'a>(pod: &'a Value, name: &str) -> &'a Value {
    seq_at(pod, "spec.volumes")
        .iter()
        .find(|v| v.get("name").and_then(Value::as_str) == Some(name))
        .unwrap_or_else(|| panic!("no volume {name}"))
}

fn run_as_user(pod: &Value, container: &Value) -> Option<u64> {
    container
        .get("securityContext")
        .and_then(|s| s.get("runAsUser"))
        .or_else(|| {
            pod.get("spec")
                .and_then(|s| s.get("securityContext"))
                .and_then(|s| s.get("runAsUser"))
        })
        .and_then(Value::as_u64)
}

fn http_probe(container: &Value, probe: &str) -> (String, u64) {
    let get = at(container, &format!("{probe}.httpGet"));
    let port = match at(get, "port") {
        Value::Number(n) => n.as_u64().unwrap(),
        Value::String(name) => seq_at(container, "ports")
            .iter()
            .find(|p| p.get("name").and_then(Value::as_str) == Some(name))
            .and_then(|p| p.get("containerPort"))
            .and_then(Value::as_u64)
            .unwrap_or_else(|| panic!("{probe}: no port named {name}")),
        other => panic!("{probe}: port {other:?}"),
    };
    (str_at(get, "path").to_owned(), port)
}

#[test]
fn kubernetes_sidecar_shares_only_the_ca_certificate_with_the_sandbox() {
    let standin = harness::standin();
    let dir = example("kubernetes/sidecar");
    let pod = yaml_document(&dir.join("pod.yaml"));
    let configmap = yaml_document(&dir.join("configmap.yaml"));
    let secret = yaml_document(&dir.join("secret.yaml"));
    let policy = yaml_document(&dir.join("networkpolicy.yaml"));
    let kustomization = yaml_document(&dir.join("kustomization.yaml"));
    let config = config_of(&standin, "examples/kubernetes/sidecar/configmap.yaml");
    let settings = config.value();
    assert_eq!(str_at(&pod, "kind"), "Pod");

    // gitgate is a native sidecar: an init container that keeps running.
    let gitgate = container(&pod, "gitgate");
    assert!(
        containers(&pod, "initContainers").contains(gitgate),
        "gitgate is not an init container"
    );
    assert_eq!(str_at(gitgate, "restartPolicy"), "Always");
    let sandbox = container(&pod, "sandbox");
    assert!(containers(&pod, "containers").contains(sandbox));
    assert_eq!(
        containers(&pod, "containers").len(),
        1,
        "only the sandbox runs as a regular container"
    );

    // Probes on the admin port the config opens.
    let admin_port: u64 = str_at(&settings, "admin")
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    for (probe, path) in [
        ("startupProbe", "/healthz"),
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ] {
        assert_eq!(
            http_probe(gitgate, probe),
            (path.to_owned(), admin_port),
            "{probe}"
        );
    }

    // The config: the ConfigMap mounted as a directory (a subPath mount never sees an
    // update), at the path gitgate is told to read.
    let args = strings(seq_at(gitgate, "args"));
    let config_path = args[args.iter().position(|a| *a == "--config").unwrap() + 1];
    let gitgate_mounts = mounts(gitgate);
    let (config_volume, _, _, sub_path) = gitgate_mounts
        .iter()
        .find(|(_, path, _, _)| path == parent(config_path))
        .expect("gitgate mounts its config directory");
    assert!(!sub_path, "a subPath mount would freeze the ConfigMap");
    assert_eq!(
        str_at(volume(&pod, config_volume), "configMap.name"),
        str_at(&configmap, "metadata.name")
    );
    let file_name = Path::new(config_path)
        .file_name()
        .unwrap()
        .to_str()
        .unwrap();
    assert!(at(&configmap, "data").get(file_name).is_some());

    // The CA: the certificate's directory is a volume the sandbox mounts read-only; the
    // key's directory is a volume no regular container mounts.
    let volume_at = |container: &Value, dir: &str| {
        mounts(container)
            .into_iter()
            .find(|(_, path, _, _)| path == dir)
            .map(|(volume, _, _, _)| volume)
            .unwrap_or_else(|| panic!("nothing mounted at {dir}"))
    };
    let cert_volume = volume_at(gitgate, parent(str_at(&settings, "ca.cert")));
    let key_volume = volume_at(gitgate, parent(str_at(&settings, "ca.key")));
    let app_key_volume = volume_at(
        gitgate,
        parent(str_at(&settings, "github.app.privateKeyFile")),
    );
    assert_ne!(cert_volume, key_volume);
    let sandbox_mounts = mounts(sandbox);
    let secret_volumes: Vec<String> = seq_at(&pod, "spec.volumes")
        .iter()
        .filter(|v| v.get("secret").is_some())
        .map(|v| str_at(v, "name").to_owned())
        .collect();
    for (volume, _, _, _) in &sandbox_mounts {
        assert!(
            volume != &key_volume && volume != &app_key_volume && !secret_volumes.contains(volume),
            "the sandbox mounts {volume}, which holds a key"
        );
    }
    let (_, sandbox_ca_dir, read_only, _) = sandbox_mounts
        .iter()
        .find(|(volume, _, _, _)| volume == &cert_volume)
        .expect("the sandbox mounts the CA certificate's volume");
    assert!(read_only, "the sandbox can write gitgate's CA certificate");
    assert_eq!(
        str_at(volume(&pod, &key_volume), "emptyDir.medium"),
        "Memory"
    );

    // The App key: only key-setup mounts the Secret, and copies it where the config
    // reads it, as gitgate's uid.
    assert_eq!(secret_volumes.len(), 1);
    let secret_name = str_at(volume(&pod, &secret_volumes[0]), "secret.secretName");
    assert_eq!(secret_name, str_at(&secret, "metadata.name"));
    let with_secret: Vec<&str> = containers(&pod, "initContainers")
        .iter()
        .chain(containers(&pod, "containers"))
        .filter(|c| mounts(c).iter().any(|(v, _, _, _)| v == &secret_volumes[0]))
        .map(|c| str_at(c, "name"))
        .collect();
    assert_eq!(with_secret, ["key-setup"]);
    let key_setup = container(&pod, "key-setup");
    let command = strings(seq_at(key_setup, "command"));
    assert_eq!(
        command.last().copied(),
        Some(str_at(&settings, "github.app.privateKeyFile"))
    );
    assert!(command.contains(&"0400"), "{command:?}");
    let gitgate_uid = run_as_user(&pod, gitgate).expect("gitgate's runAsUser");
    assert_eq!(run_as_user(&pod, key_setup), Some(gitgate_uid));
    let sandbox_uid = run_as_user(&pod, sandbox).expect("the sandbox's runAsUser");
    assert_ne!(sandbox_uid, gitgate_uid);
    assert_ne!(sandbox_uid, 0);
    assert!(
        !at(&secret, "stringData")
            .get("github-app.pem")
            .and_then(Value::as_str)
            .expect("the Secret's github-app.pem")
            .contains("BEGIN"),
        "secret.yaml must hold a placeholder, not a key"
    );
    let resources = strings(seq_at(&kustomization, "resources"));
    assert!(
        !resources.contains(&"secret.yaml"),
        "kubectl apply -k would overwrite the real Secret"
    );
    for resource in resources {
        assert!(dir.join(resource).exists(), "{resource}");
    }

    // The sandbox's environment includes everything `gitgate env --format k8s` prints.
    let proxy_url = format!("http://{}", str_at(&settings, "listen"));
    let ca_file = format!("{sandbox_ca_dir}/ca.pem");
    let expected: Value =
        serde_yaml::from_str(&gitgate_env(&config, "k8s", &proxy_url, &ca_file)).unwrap();
    let env = seq_at(sandbox, "env");
    for variable in expected.as_sequence().unwrap() {
        assert!(
            env.contains(variable),
            "the sandbox lacks {variable:?} from `gitgate env --format k8s --proxy-url {proxy_url} --ca-file {ca_file}`"
        );
    }
    assert_eq!(
        at(&pod, "spec.automountServiceAccountToken").as_bool(),
        Some(false)
    );

    // Egress: the firewall inside the pod exempts exactly gitgate's uid; the
    // NetworkPolicy selects this pod and allows only DNS and HTTPS out.
    let lock = container(&pod, "egress-lock");
    let script = strings(seq_at(lock, "args")).join(" ");
    assert!(
        script.contains(&format!("--uid-owner {gitgate_uid} -j ACCEPT"))
            && script.contains("-j REJECT"),
        "{script}"
    );
    let lock_index = containers(&pod, "initContainers")
        .iter()
        .position(|c| c == lock)
        .unwrap();
    let gitgate_index = containers(&pod, "initContainers")
        .iter()
        .position(|c| c == gitgate)
        .unwrap();
    assert!(
        lock_index < gitgate_index,
        "the lock must be in place first"
    );
    assert_eq!(str_at(&policy, "kind"), "NetworkPolicy");
    let labels = at(&pod, "metadata.labels").as_mapping().unwrap();
    for (key, value) in at(&policy, "spec.podSelector.matchLabels")
        .as_mapping()
        .unwrap()
    {
        assert_eq!(
            labels.get(key),
            Some(value),
            "the policy does not select the pod"
        );
    }
    assert!(strings(seq_at(&policy, "spec.policyTypes")).contains(&"Egress"));
    for rule in seq_at(&policy, "spec.egress") {
        let ports: Vec<u64> = seq_at(rule, "ports")
            .iter()
            .map(|p| at(p, "port").as_u64().unwrap())
            .collect();
        assert!(
            ports.iter().all(|p| *p == 53 || *p == 443),
            "egress on {ports:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// The network-namespace sandbox, for real.

/// Whether this process may create network namespaces; `Err` says why not.
fn netns_permitted() -> Result<(), String> {
    let probe = format!("gg-probe-{}", std::process::id());
    let out = Command::new("ip")
        .args(["netns", "add", &probe])
        .output()
        .expect("the ip command (iproute2) must be installed");
    if out.status.success() {
        let _ = Command::new("ip")
            .args(["netns", "delete", &probe])
            .output();
        return Ok(());
    }
    let why = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    if why.contains("Permission denied") || why.contains("Operation not permitted") {
        return Err(why);
    }
    panic!("ip netns add failed for another reason than permissions: {why}");
}

/// Deletes the namespace and any interface left holding its host address, whatever
/// happened to the script.
struct NetnsGuard {
    name: String,
    host_ip: String,
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .output();
        for interface in interfaces_with(&self.host_ip) {
            let _ = Command::new("ip")
                .args(["link", "delete", &interface])
                .output();
        }
    }
}

/// Interfaces in this namespace that carry `ip`.
fn interfaces_with(ip: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["-o", "-4", "addr", "show"])
        .output()
        .expect("ip addr");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&format!(" inet {ip}/")))
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(|name| name.split('@').next().unwrap_or(name).to_owned())
        .collect()
}

/// A /30 in 10.200.0.0/16 that no interface here uses, chosen from the process id so
/// that concurrent test runs pick different ones: `(host end, sandbox end)`.
fn free_subnet() -> (String, String) {
    let pid = std::process::id() as usize;
    for attempt in 0..512 {
        let n = (pid + attempt * 7919) % 16384;
        let (third, fourth) = (n / 64, (n % 64) * 4);
        let host = format!("10.200.{third}.{}", fourth + 1);
        if interfaces_with(&host).is_empty() {
            return (host, format!("10.200.{third}.{}", fourth + 2));
        }
    }
    panic!("no free /30 in 10.200.0.0/16");
}

/// A TCP port nobody on this machine listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind")
        .port()
}

/// The program's output split at `== NAME` lines into `NAME -> (output, exit status)`,
/// the status taken from the section's closing `exit=N` line.
fn sections(stdout: &str) -> BTreeMap<String, (String, i32)> {
    let mut sections = BTreeMap::new();
    let mut name = None::<String>;
    let mut body = String::new();
    for line in stdout.lines() {
        if let Some(next) = line.strip_prefix("== ") {
            name = Some(next.trim().to_owned());
            body.clear();
        } else if let (Some(status), Some(current)) = (line.strip_prefix("exit="), &name) {
            sections.insert(
                current.clone(),
                (body.clone(), status.trim().parse().unwrap_or(-1)),
            );
            name = None;
        } else {
            body.push_str(line);
            body.push('\n');
        }
    }
    sections
}

#[test]
fn netns_sandbox_reaches_github_only_through_gitgate() {
    // Not skipped: the guarantee this checks is the deployment's, so a machine that cannot
    // run it fails (CI runs as root).
    if let Err(why) = netns_permitted() {
        panic!(
            "this process may not create network namespaces ({why}); run the tests as root \
             with CAP_NET_ADMIN and CAP_SYS_ADMIN"
        );
    }
    let standin = harness::standin();
    let (host_ip, sandbox_ip) = free_subnet();
    let name = format!("gg-e2e-{}", std::process::id());
    let _guard = NetnsGuard {
        name: name.clone(),
        host_ip: host_ip.clone(),
    };
    let admin_port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gitgate.yaml");
    std::fs::write(
        &config,
        format!(
            "{}admin: {host_ip}:{admin_port}\n",
            app_config(&standin, POLICY)
                .replace("listen: 127.0.0.1:0", &format!("listen: {host_ip}:0"))
        ),
    )
    .unwrap();
    let nft = Command::new("sh")
        .args(["-c", "command -v nft"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        nft,
        "nft is not installed (apt-get install nftables): the firewall is part of what this checks"
    );

    let standin_port = standin.port();
    let program = format!(
        r#"exec 2>&1
set -u
step() {{ echo "== $1"; }}
status() {{ echo "exit=$1"; }}
step whoami; id -u; status $?
step routes; ip route; ip -6 route; status $?
step direct-standin
curl --noproxy '*' -sS --max-time 5 -o /dev/null https://127.0.0.1:{standin_port}/; status $?
step direct-internet
curl --noproxy '*' -sS --max-time 5 -o /dev/null https://203.0.113.7/; status $?
step host-admin-port
curl --noproxy '*' -sS --max-time 5 http://{host_ip}:{admin_port}/healthz; status $?
step proxy-other-host
curl -sS --max-time 20 -o /dev/null https://other.test/; status $?
step clone
git clone -q https://github.com/acme/app.git app; status $?
cd app || exit 1
git -c user.name=Sandbox -c user.email=sandbox@example.invalid commit -q --allow-empty -m 'from the netns sandbox'
step head; git rev-parse HEAD; status $?
step push-allowed; git push origin HEAD:main; status $?
step push-denied; git push origin HEAD:dev; status $?
step env; env | sort; status $?
"#
    );
    let out: Output = Command::new("timeout")
        .args(["--kill-after=10", "300", "bash"])
        .arg(example("netns/sandbox.sh"))
        .arg("--gitgate")
        .arg(binary())
        .arg("--config")
        .arg(&config)
        .args(["--name", &name, "--", "sh", "-c", &program])
        .env("GITGATE_SANDBOX_VERBOSE", "1")
        .env("RUST_LOG", "info,gitgate=debug")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run sandbox.sh");
    let all = text(&out);
    assert!(out.status.success(), "sandbox.sh failed:\n{all}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let sections = sections(&stdout);
    let section = |name: &str| {
        sections
            .get(name)
            .cloned()
            .unwrap_or_else(|| panic!("no section {name} in:\n{all}"))
    };

    // Inside: an unprivileged user with one route, to the veth's /30.
    let (uid, _) = section("whoami");
    assert_eq!(uid.trim(), "65534", "not the unprivileged user:\n{all}");
    let (routes, _) = section("routes");
    assert!(!routes.contains("default"), "a default route:\n{all}");
    assert!(routes.contains(&format!("src {sandbox_ip}")), "{all}");

    // Direct egress fails at once: the stand-in's loopback is not the sandbox's, and
    // there is no route anywhere else (exit 7: could not connect, not a timeout).
    let (body, status) = section("direct-standin");
    assert_eq!(
        status, 7,
        "direct connection to the stand-in: {body}\n{all}"
    );
    let (body, status) = section("direct-internet");
    assert_eq!(status, 7, "direct connection off the host: {body}\n{all}");
    // gitgate's host, but another port: blocked only where nft builds the firewall.
    let (body, status) = section("host-admin-port");
    assert_ne!(
        status, 0,
        "the firewall let the sandbox reach {body}\n{all}"
    );
    assert!(
        all.contains("firewall: the sandbox may connect to"),
        "{all}"
    );

    // Through gitgate: other hosts refused, clone and an allowed push work, a denied
    // push is refused with gitgate's reason.
    let (body, status) = section("proxy-other-host");
    assert_ne!(status, 0, "{all}");
    assert!(body.contains("403"), "{body}\n{all}");
    let (body, status) = section("clone");
    assert_eq!(status, 0, "clone through gitgate: {body}\n{all}");
    let (head, _) = section("head");
    let head = head.trim();
    let (body, status) = section("push-allowed");
    assert_eq!(status, 0, "allowed push: {body}\n{all}");
    assert_eq!(
        standin
            .rev_parse("acme", "app", "refs/heads/main")
            .as_deref(),
        Some(head)
    );
    let (body, status) = section("push-denied");
    assert_ne!(status, 0, "{all}");
    assert!(
        body.contains(
            "! [remote rejected] HEAD -> dev (gitgate: refs/heads/dev is not in allowedRefs"
        ),
        "{body}\n{all}"
    );
    assert_eq!(standin.rev_parse("acme", "app", "refs/heads/dev"), None);

    // No credential ever reached the sandbox or the output.
    let (env, _) = section("env");
    assert!(
        env.contains(&format!("HTTPS_PROXY=http://{host_ip}:")),
        "{env}"
    );
    assert!(!standin.tokens().is_empty(), "gitgate minted no token");
    harness::assert_no_secret(&standin, "the deployment's output", &all);

    // The script tore everything down.
    let namespaces = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&namespaces.stdout)
            .lines()
            .any(|l| l.split_whitespace().next() == Some(name.as_str())),
        "namespace {name} left behind"
    );
    assert!(
        interfaces_with(&host_ip).is_empty(),
        "veth with {host_ip} left behind"
    );
}
