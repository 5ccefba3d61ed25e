//! gitgate as a real process: config written to a temp dir, readiness from its log,
//! every byte of its output kept for secret scans, killed on drop.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gitgate_standin::StandIn;

/// The `gitgate` binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_gitgate")
}

/// A config for `standin`: GitHub App credentials, every test host resolved to the
/// stand-in, its CA trusted upstream, and `policy` (YAML block, indented by the caller
/// or given as a flow mapping).
pub fn app_config(standin: &StandIn, policy: &str) -> String {
    format!(
        "listen: 127.0.0.1:0\n\
         github:\n  app: {{id: \"{id}\", privateKeyFile: {key}}}\n\
         {upstream}\
         policy: {policy}\n",
        id = standin.app_id(),
        key = standin.app_key_pkcs1_file().display(),
        upstream = upstream(standin),
    )
}

/// [`app_config`] with `limits:` (a YAML flow mapping).
pub fn limited_config(standin: &StandIn, policy: &str, limits: &str) -> String {
    format!("{}limits: {limits}\n", app_config(standin, policy))
}

/// The `upstream:` block pointing every test host at the stand-in.
pub fn upstream(standin: &StandIn) -> String {
    let addr = standin.addr();
    format!(
        "upstream:\n  caFile: {ca}\n  resolve: {{github.com: \"{addr}\", api.github.com: \"{addr}\", tunnel.test: \"{addr}\", other.test: \"{addr}\", lfs-storage.test: \"{addr}\"}}\n",
        ca = standin.ca_file().display()
    )
}

/// A running gitgate.
pub struct Gitgate {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    child: Child,
    output: Arc<Mutex<String>>,
    /// How it is run (again after a restart).
    launch: Launch,
}

/// How gitgate is run: extra environment variables, and a command it runs under.
#[derive(Default)]
struct Launch {
    env: Vec<(String, String)>,
    wrapper: Vec<String>,
}

impl Gitgate {
    /// Writes `config` to `gitgate.yaml` in a fresh directory and runs gitgate on it.
    pub fn start(config: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("gitgate.yaml"), config).expect("write config");
        Self::start_in(dir)
    }

    /// Runs gitgate on `dir/gitgate.yaml`.
    pub fn start_in(dir: tempfile::TempDir) -> Self {
        Self::start_with_env(dir, &[])
    }

    /// Runs gitgate on `dir/gitgate.yaml` with extra environment variables.
    pub fn start_with_env(dir: tempfile::TempDir, env: &[(&str, &str)]) -> Self {
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Self::launch(
            dir,
            Launch {
                env,
                wrapper: Vec::new(),
            },
        )
    }

    /// Writes `config` to `gitgate.yaml` in a fresh directory and runs gitgate on it under
    /// `wrapper` (a command that runs the command it is given, such as `prlimit …`).
    pub fn start_under(config: &str, wrapper: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("gitgate.yaml"), config).expect("write config");
        let wrapper = wrapper.iter().map(|w| w.to_string()).collect();
        Self::launch(
            dir,
            Launch {
                env: Vec::new(),
                wrapper,
            },
        )
    }

    fn launch(dir: tempfile::TempDir, launch: Launch) -> Self {
        let output = Arc::new(Mutex::new(String::new()));
        let (child, addr) = Self::spawn(dir.path(), &launch, output.clone());
        Self {
            addr,
            dir,
            child,
            output,
            launch,
        }
    }

    /// Stops gitgate: SIGTERM, then waits for a clean exit.
    pub fn stop(&mut self) {
        self.terminate();
        assert!(
            self.wait(Duration::from_secs(30)).success(),
            "{}",
            self.output()
        );
    }

    /// Kills gitgate (SIGKILL: nothing of its own runs after) and reaps it.
    pub fn kill(&mut self) {
        self.child.kill().expect("kill gitgate");
        self.child.wait().expect("reap gitgate");
    }

    /// Runs gitgate again on the same directory after [`Gitgate::stop`]; the output of
    /// both runs is kept, the addresses are the new run's.
    pub fn start_again(&mut self) {
        self.output
            .lock()
            .unwrap()
            .push_str("--- started again ---\n");
        let (child, addr) = Self::spawn(self.dir.path(), &self.launch, self.output.clone());
        (self.child, self.addr) = (child, addr);
    }

    /// Starts `gitgate run` on `dir/gitgate.yaml`, its output appended to `output`; returns
    /// once it listens.
    fn spawn(dir: &Path, launch: &Launch, output: Arc<Mutex<String>>) -> (Child, SocketAddr) {
        let mut command = match launch.wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(binary());
                command
            }
            None => Command::new(binary()),
        };
        let mut child = command
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .args(["run", "--config"])
            .arg(dir.join("gitgate.yaml"))
            .env("RUST_LOG", "info,gitgate=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn gitgate");
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().expect("stderr");
        let sink = output.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let addr = listening_addr(&line, ": listening addr=");
                {
                    let mut out = sink.lock().unwrap();
                    out.push_str(&line);
                    out.push('\n');
                }
                if let Some(addr) = addr {
                    let _ = ready_tx.send(addr);
                }
            }
        });
        collect_lines(child.stdout.take().expect("stdout"), output.clone());
        match ready_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => (child, addr),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("gitgate did not start:\n{}", output.lock().unwrap());
            }
        }
    }

    /// Everything gitgate wrote so far.
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// The audit records gitgate wrote to standard output so far.
    pub fn audit(&self) -> Vec<serde_json::Value> {
        self.output()
            .lines()
            .filter(|l| l.starts_with('{'))
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v.get("kind").is_some())
            .collect()
    }

    /// The `kind: decision` audit records so far.
    pub fn decisions(&self) -> Vec<serde_json::Value> {
        self.audit()
            .into_iter()
            .filter(|r| r["kind"] == "decision")
            .collect()
    }

    /// Waits until an audit record satisfies `matches` and returns it.
    pub fn wait_for_record(
        &self,
        matches: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let mut found = None;
        crate::core::wait_until(|| {
            found = self.audit().into_iter().find(|r| matches(r));
            found.is_some()
        });
        found.unwrap()
    }

    /// The admin listener's address, from the log (of the last run).
    pub fn admin_addr(&self) -> SocketAddr {
        self.output()
            .lines()
            .rev()
            .find_map(|l| listening_addr(l, ": admin listening addr="))
            .expect("no admin listener in the log")
    }

    /// The HTTPS proxy listener's address (`listenTls`), from the log (of the last run).
    pub fn tls_addr(&self) -> SocketAddr {
        self.output()
            .lines()
            .rev()
            .find_map(|l| listening_addr(l, ": HTTPS proxy listening addr="))
            .expect("no HTTPS proxy listener in the log")
    }

    /// Rewrites the config file in place.
    pub fn rewrite_config(&self, config: &str) {
        let path = self.dir.path().join("gitgate.yaml");
        let tmp = self.dir.path().join("gitgate.yaml.new");
        std::fs::write(&tmp, config).expect("write config");
        std::fs::rename(tmp, path).expect("replace config");
    }

    /// Sends SIGHUP.
    pub fn hangup(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// gitgate's CA certificate, as the sandbox trusts it.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca/ca.pem")
    }

    /// `http://ADDR`, for HTTPS_PROXY.
    pub fn proxy_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A limit of gitgate's process as `/proc/PID/limits` shows it: (soft, hard).
    pub fn limit(&self, name: &str) -> (String, String) {
        let limits = std::fs::read_to_string(format!("/proc/{}/limits", self.child.id()))
            .expect("proc limits");
        let line = limits
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in\n{limits}"));
        let mut values = line[name.len()..].split_whitespace();
        let mut next = || values.next().expect("a value").to_owned();
        (next(), next())
    }

    /// gitgate's peak resident memory so far, in KiB (Linux `VmHWM`).
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM")
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for the process to exit.
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                start.elapsed() < limit,
                "gitgate did not exit within {limit:?}:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Asserts that no token the stand-in ever minted appears in gitgate's output.
    pub fn assert_no_secrets(&self, standin: &StandIn) {
        let output = self.output();
        super::assert_no_secret(standin, "gitgate's output", &output);
        assert!(
            !output.contains("x-access-token"),
            "gitgate printed a credential:\n{output}"
        );
    }
}

impl Drop for Gitgate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address in a log line `…<marker>ADDR …`.
fn listening_addr(line: &str, marker: &str) -> Option<SocketAddr> {
    let at = line.find(marker)? + marker.len();
    line[at..].split_whitespace().next()?.parse().ok()
}

/// Appends every line `stream` yields to `sink`, on a thread of its own.
pub fn collect_lines(
    stream: impl std::io::Read + Send + 'static,
    sink: Arc<Mutex<String>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            let mut out = sink.lock().unwrap();
            out.push_str(&line);
            out.push('\n');
        }
    })
}

/// A child process killed (and reaped) when dropped, so a failing test leaks nothing.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `gitgate ARGS…` to completion; a command still running after 60 s (one that
/// should have exited) is killed and fails the test.
pub fn cli(args: &[&str], cwd: &Path) -> std::process::Output {
    let child = Command::new(binary())
        .args(args)
        .current_dir(cwd)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run gitgate");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(output) => output.expect("run gitgate"),
        Err(_) => {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            panic!("gitgate {args:?} did not exit within 60 s");
        }
    }
}
