//! gitgate under sustained mixed load, for a bounded time:
//!
//! ```text
//! cargo run --release -p gitgate --example soak -- [--seconds 120] [--workers 16]
//! ```
//!
//! Starts the local GitHub stand-in and a gitgate process (this same executable run again
//! as `gitgate run`, so it is always the code just built), then `--workers` threads loop
//! until the deadline, each as its own sandbox (clean environment: `HOME`,
//! `HTTPS_PROXY`, `GIT_SSL_CAINFO`, `GIT_CONFIG_NOSYSTEM=1`): `git clone` and `git fetch`
//! of allowed repositories, pushes to an allowed branch, pushes to a denied branch
//! (`! [remote rejected]`), a clone of a denied repository, CONNECT and plain HTTP to
//! denied hosts (403), a tunnel to an allow-listed host, and garbage on the proxy port
//! (random bytes, half request heads, a slow head, random bytes instead of a TLS hello,
//! malformed requests inside the intercepted TLS).
//!
//! Every `--sample` seconds it records gitgate's RSS and open file descriptors (sorted
//! into client connections, upstream connections, listeners and the rest). At the end
//! it prints the operations by kind, the RSS and descriptor samples and gitgate's own
//! request counters, then exits non-zero if any operation had an unexpected outcome,
//! if RSS grew more than `--max-rss-growth` percent between the first and the last third
//! of the samples, if descriptors other than pooled upstream connections did not return
//! to the baseline within `--settle` seconds after the load stopped, if a minted token
//! appears in gitgate's output, or if gitgate does not exit 0 on SIGTERM.
//!
//! Not part of `cargo test`. Needs `git` on `PATH` and Linux `/proc`.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail, ensure};
use gitgate_standin::StandIn;

/// Set in the environment of the child that runs gitgate itself.
const CHILD: &str = "GITGATE_SOAK_CHILD";
/// gitgate's `limits.headerReadTimeout` and `limits.tlsHandshakeTimeout` in the soak
/// config, short so the slow-head garbage is cut off within the run.
const HEAD_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest any one operation may take before it counts as unexpected.
const OP_TIMEOUT: Duration = Duration::from_secs(90);
/// Raw socket operations must see an answer or a close within this time.
const RAW_TIMEOUT: Duration = Duration::from_secs(10);
/// Unexpected outcomes shown in full at the end.
const SHOWN_FAILURES: usize = 20;
const CLONE_TARGETS: [&str; 3] = ["acme/app", "acme/lib-core", "bob/tools"];
const POLICY: &str = "  allowedRepos: [acme/app, \"acme/lib-*\", bob/tools]\n  allowedRefs: [main, \"release/*\"]\n  allowHosts: [tunnel.test]\n";

fn main() -> ExitCode {
    if std::env::var_os(CHILD).is_some() {
        return gitgate::main();
    }
    let options = match Options::parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(error) => {
            eprintln!("soak: {error}\n\n{USAGE}");
            return ExitCode::from(64);
        }
    };
    match soak(&options) {
        Ok(true) => {
            println!("\nsoak: PASS");
            ExitCode::SUCCESS
        }
        Ok(false) => {
            println!("\nsoak: FAIL");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("soak: {error:#}");
            ExitCode::from(2)
        }
    }
}

const USAGE: &str = "usage: cargo run --release -p gitgate --example soak -- [options]
  --seconds N          how long the load runs (default 120)
  --workers N          concurrent sandbox clients (default 16)
  --sample N           seconds between RSS/fd samples (default 5)
  --max-rss-growth P   allowed RSS growth, first to last third of the samples, % (default 20)
  --settle N           seconds descriptors get to return to baseline afterwards (default 10)
  --fd-slack N         descriptors above baseline still accepted after settling (default 2)
  --keep               keep the working directory (gitgate's log and audit records);
                       it is always kept when a check fails";

struct Options {
    seconds: u64,
    workers: usize,
    sample: u64,
    max_rss_growth: f64,
    settle: u64,
    fd_slack: usize,
    keep: bool,
}

impl Options {
    fn parse(mut args: impl Iterator<Item = String>) -> anyhow::Result<Self> {
        let mut options = Options {
            seconds: 120,
            workers: 16,
            sample: 5,
            max_rss_growth: 20.0,
            settle: 10,
            fd_slack: 2,
            keep: false,
        };
        while let Some(arg) = args.next() {
            let (name, inline) = match arg.split_once('=') {
                Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
                None => (arg.clone(), None),
            };
            if name == "--keep" {
                options.keep = true;
                continue;
            }
            if name == "--help" || name == "-h" {
                println!("{USAGE}");
                std::process::exit(0);
            }
            const VALUED: [&str; 6] = [
                "--seconds",
                "--workers",
                "--sample",
                "--settle",
                "--fd-slack",
                "--max-rss-growth",
            ];
            if !VALUED.contains(&name.as_str()) {
                bail!("unknown option {name}");
            }
            let value = match inline.or_else(|| args.next()) {
                Some(value) => value,
                None => bail!("{name} needs a value"),
            };
            let bad = |_| anyhow::anyhow!("{name}: {value:?} is not a number");
            match name.as_str() {
                "--seconds" => options.seconds = value.parse().map_err(bad)?,
                "--workers" => options.workers = value.parse().map_err(bad)?,
                "--sample" => options.sample = value.parse().map_err(bad)?,
                "--settle" => options.settle = value.parse().map_err(bad)?,
                "--fd-slack" => options.fd_slack = value.parse().map_err(bad)?,
                "--max-rss-growth" => {
                    options.max_rss_growth = value
                        .parse()
                        .map_err(|_| anyhow::anyhow!("{name}: {value:?} is not a number"))?;
                }
                _ => bail!("unknown option {name}"),
            }
        }
        ensure!(options.seconds > 0, "--seconds must be at least 1");
        ensure!(options.workers > 0, "--workers must be at least 1");
        ensure!(options.sample > 0, "--sample must be at least 1");
        Ok(options)
    }
}

// ---------------------------------------------------------------------------------------
// The run

fn soak(options: &Options) -> anyhow::Result<bool> {
    let git = Command::new("git").arg("--version").output();
    ensure!(
        git.is_ok_and(|o| o.status.success()),
        "git is not on PATH; the soak drives the real git client"
    );
    let standin = StandIn::start(Default::default()).context("start the GitHub stand-in")?;
    let dir = tempfile::Builder::new().prefix("gitgate-soak-").tempdir()?;
    let mut gitgate = Gitgate::start(dir.path(), &standin)?;
    println!(
        "gitgate pid {} on {} (admin {}), stand-in on {}, {} workers for {} s; files in {}",
        gitgate.pid(),
        gitgate.addr,
        gitgate.admin,
        standin.addr(),
        options.workers,
        options.seconds,
        dir.path().display()
    );
    let ports = Ports {
        proxy: gitgate.addr.port(),
        admin: gitgate.admin.port(),
        upstream: standin.port(),
    };
    let ctx = Arc::new(Ctx {
        proxy: gitgate.addr,
        ca: gitgate.ca_file(),
        gitgate_tls: client_tls(&std::fs::read(gitgate.ca_file())?)?,
        standin_tls: client_tls(standin.ca_pem().as_bytes())?,
        stats: Stats::default(),
        root: dir.path().to_owned(),
    });

    // Warm up: both installations' tokens minted, leaf certificates cached, a tunnel.
    let warm = Sandbox::new(&ctx, "warm")?;
    for target in ["acme/app", "bob/tools"] {
        let out = warm.git(&warm.home, &["clone", "-q", &url(target), "w"])?;
        ensure!(
            out.status.success(),
            "warm-up clone failed:\n{}",
            text(&out)
        );
        std::fs::remove_dir_all(warm.home.join("w"))?;
    }
    let mut rng = Rng::new(0);
    if let Outcome::Unexpected(why) = tunnel(&ctx, &mut rng) {
        bail!("warm-up tunnel failed: {why}");
    }
    let baseline = settle(gitgate.pid(), &ports, None, Duration::from_secs(5))?.fds;
    let baseline_rss = rss_kib(gitgate.pid())?;

    // Load.
    let started = Instant::now();
    let deadline = started + Duration::from_secs(options.seconds);
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..options.workers)
        .map(|id| {
            let ctx = ctx.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name(format!("soak-{id}"))
                .spawn(move || worker(&ctx, id, deadline, &stop))
        })
        .collect::<Result<_, _>>()?;
    println!(
        "\n{:>6} {:>9} {:>6} {:>8} {:>9} {:>8} {:>8} {:>10}",
        "t (s)", "RSS MiB", "fds", "clients", "upstream", "other", "ops", "unexpected"
    );
    let mut samples = Vec::new();
    let mut upstream_requests = 0usize;
    let mut died = None;
    let mut next = started + Duration::from_secs(options.sample);
    while next <= deadline {
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        if let Some(status) = gitgate.exited() {
            died = Some(status);
            break;
        }
        let sample = Sample {
            at: started.elapsed(),
            rss_kib: rss_kib(gitgate.pid())?,
            fds: count_fds(gitgate.pid(), &ports)?,
        };
        // The stand-in keeps every request; count and forget them so its memory stays put.
        upstream_requests += standin.requests().len();
        standin.clear_requests();
        let (ops, unexpected) = ctx.stats.totals();
        println!(
            "{:>6.0} {:>9.1} {:>6} {:>8} {:>9} {:>8} {:>8} {:>10}",
            sample.at.as_secs_f64(),
            sample.rss_kib as f64 / 1024.0,
            sample.fds.total,
            sample.fds.clients,
            sample.fds.upstream,
            sample.fds.total - sample.fds.clients - sample.fds.upstream,
            ops,
            unexpected
        );
        samples.push(sample);
        next += Duration::from_secs(options.sample);
    }
    stop.store(true, Ordering::Relaxed);
    for handle in workers {
        if handle.join().is_err() {
            ctx.stats.unexpected_note("a worker thread panicked".into());
        }
    }
    let load_time = started.elapsed();
    upstream_requests += standin.requests().len();

    // Settle, then judge.
    let mut verdicts: Vec<(bool, String)> = Vec::new();
    if let Some(status) = died.or_else(|| gitgate.exited()) {
        verdicts.push((false, format!("gitgate exited during the run: {status}")));
    }
    let settled = if verdicts.is_empty() {
        Some(settle(
            gitgate.pid(),
            &ports,
            Some((&baseline, options.fd_slack)),
            Duration::from_secs(options.settle),
        )?)
    } else {
        None
    };
    let settled_rss = settled
        .as_ref()
        .and_then(|_| rss_kib(gitgate.pid()).ok())
        .unwrap_or(0);
    let metrics = scrape(gitgate.admin).unwrap_or_else(|e| format!("(no metrics: {e})"));
    let peak_kib = peak_rss_kib(gitgate.pid()).unwrap_or(0);

    ctx.stats.print(load_time);
    print_requests(&metrics, upstream_requests);
    verdicts.extend(judge_rss(
        &samples,
        baseline_rss,
        settled_rss,
        peak_kib,
        options.max_rss_growth,
    ));
    if let Some(settled) = &settled {
        verdicts.extend(judge_fds(&samples, &baseline, settled, options, &metrics));
    }
    let (_, unexpected) = ctx.stats.totals();
    verdicts.push((
        unexpected == 0,
        format!("{unexpected} operations had an unexpected outcome"),
    ));

    // Nothing secret in what gitgate wrote, and a clean exit on SIGTERM.
    let tokens = standin.tokens();
    let output = gitgate.output()?;
    let leaked = tokens
        .iter()
        .filter(|t| output.contains(t.as_str()))
        .count();
    verdicts.push((
        leaked == 0 && !output.contains("x-access-token"),
        format!(
            "gitgate's output ({} KiB of logs and audit records) holds {leaked} of the {} minted tokens",
            output.len() / 1024,
            tokens.len()
        ),
    ));
    if died.is_none() {
        let status = gitgate.terminate(Duration::from_secs(40))?;
        verdicts.push((
            status.success(),
            format!("gitgate on SIGTERM after the run: {status}"),
        ));
    }

    println!("\nchecks");
    for (ok, what) in &verdicts {
        println!("  [{}] {what}", if *ok { " ok " } else { "FAIL" });
    }
    let passed = verdicts.iter().all(|(ok, _)| *ok);
    if options.keep || !passed {
        let kept = dir.keep();
        println!(
            "\nkept {} (gitgate.log, audit.jsonl, sandboxes/)",
            kept.display()
        );
    }
    Ok(passed)
}

// ---------------------------------------------------------------------------------------
// Judging

struct Sample {
    at: Duration,
    rss_kib: u64,
    fds: Fds,
}

fn judge_rss(
    samples: &[Sample],
    baseline: u64,
    settled: u64,
    peak: u64,
    max_growth: f64,
) -> Vec<(bool, String)> {
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!("\nRSS (MiB)");
    let n = samples.len();
    if n < 3 {
        println!("  too few samples ({n}); run longer or sample more often");
        return vec![(false, format!("only {n} RSS samples; need 3"))];
    }
    let third = n / 3;
    let mean = |s: &[Sample]| s.iter().map(|s| s.rss_kib as f64).sum::<f64>() / s.len() as f64;
    let (early, late) = (mean(&samples[..third]), mean(&samples[n - third..]));
    let growth = (late - early) / early * 100.0;
    let max = samples.iter().map(|s| s.rss_kib).max().unwrap_or(0);
    println!(
        "  before load {:.1} | first sample {:.1} | max {:.1} | last {:.1} | after settling {:.1} | peak (VmHWM) {:.1}",
        mib(baseline),
        mib(samples[0].rss_kib),
        mib(max),
        mib(samples[n - 1].rss_kib),
        mib(settled),
        mib(peak)
    );
    println!(
        "  mean of the first third ({third} samples) {:.1}, of the last third {:.1}: {growth:+.1} %",
        early / 1024.0,
        late / 1024.0
    );
    vec![(
        growth <= max_growth,
        format!(
            "RSS grew {growth:+.1} % from the first to the last third of the run (limit {max_growth} %)"
        ),
    )]
}

fn judge_fds(
    samples: &[Sample],
    baseline: &Fds,
    settled: &Settled,
    options: &Options,
    metrics: &str,
) -> Vec<(bool, String)> {
    let max = |f: fn(&Fds) -> usize| samples.iter().map(|s| f(&s.fds)).max().unwrap_or(0);
    let after = &settled.fds;
    println!("\nfile descriptors");
    println!(
        "  {:<26} {:>9} {:>9} {:>9}",
        "", "baseline", "max", "settled"
    );
    type Column = fn(&Fds) -> usize;
    let rows: [(&str, Column); 7] = [
        ("total", |f| f.total),
        ("client connections", |f| f.clients),
        ("upstream connections", |f| f.upstream),
        ("admin connections", |f| f.admin),
        ("listeners", |f| f.listening),
        ("other sockets", |f| f.other_sockets),
        ("files, pipes, epoll, …", |f| f.non_sockets),
    ];
    for (name, f) in rows {
        println!(
            "  {name:<26} {:>9} {:>9} {:>9}",
            f(baseline),
            max(f),
            f(after)
        );
    }
    println!(
        "  settled after {:.1} s{}",
        settled.after.as_secs_f64(),
        if settled.reached {
            ""
        } else {
            " (did not reach baseline)"
        }
    );
    let rest = |f: &Fds| f.total - f.upstream;
    let pool_bound = 2 * options.workers + 4;
    let mut verdicts = vec![
        (
            after.clients == 0,
            format!(
                "{} client connections still open {:.0} s after the load stopped",
                after.clients,
                settled.after.as_secs_f64()
            ),
        ),
        (
            rest(after) <= rest(baseline) + options.fd_slack,
            format!(
                "descriptors other than upstream connections: {} after settling, baseline {} (slack {})",
                rest(after),
                rest(baseline),
                options.fd_slack
            ),
        ),
        (
            after.upstream <= pool_bound,
            format!(
                "{} pooled upstream connections after settling (bound {pool_bound}; idle ones close after 90 s)",
                after.upstream
            ),
        ),
    ];
    // What is open or held for requests: nothing, once they are over.
    for name in [
        "gitgate_open_connections",
        "gitgate_held_pushes",
        "gitgate_held_push_bytes",
        "gitgate_push_check_bytes",
        "gitgate_buffered_body_bytes",
    ] {
        let value = gauge(metrics, name);
        verdicts.push((
            value == Some(0.0),
            format!("{name} is {value:?} after settling"),
        ));
    }
    verdicts
}

// ---------------------------------------------------------------------------------------
// gitgate as a child process

struct Gitgate {
    child: std::process::Child,
    addr: SocketAddr,
    admin: SocketAddr,
    dir: PathBuf,
}

impl Gitgate {
    fn start(dir: &Path, standin: &StandIn) -> anyhow::Result<Self> {
        let upstream = standin.addr();
        let config = format!(
            "listen: 127.0.0.1:0\n\
             admin: 127.0.0.1:0\n\
             github:\n  app: {{id: \"{id}\", privateKeyFile: {key}}}\n\
             upstream:\n  caFile: {ca}\n  resolve: {{github.com: \"{upstream}\", api.github.com: \"{upstream}\", tunnel.test: \"{upstream}\"}}\n\
             policy:\n{POLICY}\
             limits: {{headerReadTimeout: {head}s, tlsHandshakeTimeout: {head}s}}\n",
            id = standin.app_id(),
            key = standin.app_key_pkcs8_file().display(),
            ca = standin.ca_file().display(),
            head = HEAD_TIMEOUT.as_secs(),
        );
        let path = dir.join("gitgate.yaml");
        std::fs::write(&path, config)?;
        let log = dir.join("gitgate.log");
        let audit = dir.join("audit.jsonl");
        let mut command = Command::new(std::env::current_exe()?);
        for var in [
            "HTTPS_PROXY",
            "https_proxy",
            "HTTP_PROXY",
            "http_proxy",
            "ALL_PROXY",
            "all_proxy",
        ] {
            command.env_remove(var);
        }
        let child = command
            .env(CHILD, "1")
            .env("RUST_LOG", "info")
            .args(["run", "--config"])
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&audit)?)
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("start gitgate")?;
        let mut gitgate = Gitgate {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            dir: dir.to_owned(),
        };
        let started = Instant::now();
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let proxy = logged_addr(&text, ": listening addr=");
            let admin = logged_addr(&text, ": admin listening addr=");
            if let (Some(proxy), Some(admin)) = (proxy, admin) {
                gitgate.addr = proxy;
                gitgate.admin = admin;
                return Ok(gitgate);
            }
            if let Some(status) = gitgate.exited() {
                bail!("gitgate exited ({status}) while starting:\n{text}");
            }
            ensure!(
                started.elapsed() < Duration::from_secs(60),
                "gitgate did not start within 60 s:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.join("ca/ca.pem")
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// gitgate's log and audit records.
    fn output(&self) -> io::Result<String> {
        let mut text = std::fs::read_to_string(self.dir.join("gitgate.log"))?;
        text.push_str(&std::fs::read_to_string(self.dir.join("audit.jsonl"))?);
        Ok(text)
    }

    fn terminate(mut self, limit: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()?;
        ensure!(status.success(), "kill -TERM failed");
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if started.elapsed() > limit {
                bail!("gitgate did not exit within {limit:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Gitgate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn logged_addr(log: &str, marker: &str) -> Option<SocketAddr> {
    log.lines().find_map(|line| {
        let at = line.find(marker)? + marker.len();
        line[at..].split_whitespace().next()?.parse().ok()
    })
}

// ---------------------------------------------------------------------------------------
// RSS and file descriptors

fn status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    status_kib(pid, "VmRSS:")
}

fn peak_rss_kib(pid: u32) -> anyhow::Result<u64> {
    status_kib(pid, "VmHWM:")
}

/// The ports that tell gitgate's sockets apart.
struct Ports {
    proxy: u16,
    admin: u16,
    upstream: u16,
}

/// gitgate's open file descriptors, sorted.
#[derive(Debug, Default, Clone)]
struct Fds {
    total: usize,
    /// Listening sockets.
    listening: usize,
    /// Connections accepted on the proxy port (sandbox clients).
    clients: usize,
    /// Connections to the stand-in (GitHub, the API, tunnels).
    upstream: usize,
    /// Connections accepted on the admin port.
    admin: usize,
    /// Sockets that are none of the above (Unix sockets, …).
    other_sockets: usize,
    /// Everything else: files, pipes, eventfd, epoll.
    non_sockets: usize,
}

fn count_fds(pid: u32, ports: &Ports) -> anyhow::Result<Fds> {
    let mut table: HashMap<u64, (u16, u16, bool)> = HashMap::new();
    for file in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{file}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 10 {
                continue;
            }
            let port = |s: &str| {
                s.rsplit_once(':')
                    .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
            };
            if let (Some(local), Some(remote), Ok(inode)) =
                (port(fields[1]), port(fields[2]), fields[9].parse::<u64>())
            {
                table.insert(inode, (local, remote, fields[3] == "0A"));
            }
        }
    }
    let mut fds = Fds::default();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        // A descriptor may close between the listing and the readlink.
        let Ok(target) = std::fs::read_link(entry?.path()) else {
            continue;
        };
        fds.total += 1;
        let target = target.to_string_lossy();
        let Some(inode) = target
            .strip_prefix("socket:[")
            .and_then(|s| s.strip_suffix(']'))
            .and_then(|s| s.parse::<u64>().ok())
        else {
            fds.non_sockets += 1;
            continue;
        };
        match table.get(&inode) {
            Some((_, _, true)) => fds.listening += 1,
            Some((local, _, _)) if *local == ports.proxy => fds.clients += 1,
            Some((local, _, _)) if *local == ports.admin => fds.admin += 1,
            Some((_, remote, _)) if *remote == ports.upstream => fds.upstream += 1,
            _ => fds.other_sockets += 1,
        }
    }
    Ok(fds)
}

struct Settled {
    fds: Fds,
    after: Duration,
    reached: bool,
}

/// Polls until no client or admin connection is open and (with a baseline) the
/// descriptors other than pooled upstream connections are back within `slack` of it, or
/// `limit` passes.
fn settle(
    pid: u32,
    ports: &Ports,
    baseline: Option<(&Fds, usize)>,
    limit: Duration,
) -> anyhow::Result<Settled> {
    let started = Instant::now();
    loop {
        let fds = count_fds(pid, ports)?;
        let reached = fds.clients == 0
            && fds.admin == 0
            && baseline
                .is_none_or(|(b, slack)| fds.total - fds.upstream <= b.total - b.upstream + slack);
        if reached || started.elapsed() >= limit {
            return Ok(Settled {
                fds,
                after: started.elapsed(),
                reached,
            });
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

// ---------------------------------------------------------------------------------------
// gitgate's own counters

fn scrape(admin: SocketAddr) -> io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&admin, RAW_TIMEOUT)?;
    stream.set_read_timeout(Some(RAW_TIMEOUT))?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")?;
    let mut body = String::new();
    stream.read_to_string(&mut body)?;
    Ok(body)
}

fn gauge(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        let (key, value) = l.split_once(' ')?;
        (key == name).then(|| value.trim().parse().ok()).flatten()
    })
}

fn print_requests(metrics: &str, upstream_requests: usize) {
    println!("\ngitgate's request counters (/metrics)");
    let mut total = 0.0;
    for line in metrics.lines() {
        if let Some(rest) = line.strip_prefix("gitgate_requests_total{")
            && let Some((labels, value)) = rest.split_once("} ")
        {
            let value: f64 = value.trim().parse().unwrap_or(0.0);
            total += value;
            println!("  {:<40} {value:>8}", labels.replace('"', ""));
        }
    }
    println!("  {:<40} {total:>8}", "all requests");
    println!(
        "  {:<40} {upstream_requests:>8}",
        "requests the stand-in received"
    );
}

// ---------------------------------------------------------------------------------------
// Operations

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Clone,
    Fetch,
    PushAllowed,
    PushDenied,
    CloneDenied,
    ConnectDenied,
    PlainHttpDenied,
    Tunnel,
    GarbageBytes,
    GarbageHalfHead,
    GarbageSlowHead,
    GarbageTlsHello,
    GarbageInsideTls,
}

impl Kind {
    fn describe(self) -> &'static str {
        match self {
            Kind::Clone => "git clone (allowed)",
            Kind::Fetch => "git fetch (allowed)",
            Kind::PushAllowed => "git push release/* (allowed)",
            Kind::PushDenied => "git push dev (rejected)",
            Kind::CloneDenied => "git clone acme/secret (denied)",
            Kind::ConnectDenied => "CONNECT denied host (403)",
            Kind::PlainHttpDenied => "plain http denied host (403)",
            Kind::Tunnel => "tunnel to tunnel.test",
            Kind::GarbageBytes => "garbage: random bytes",
            Kind::GarbageHalfHead => "garbage: half a head, EOF",
            Kind::GarbageSlowHead => "garbage: half a head, wait",
            Kind::GarbageTlsHello => "garbage: bytes for a TLS hello",
            Kind::GarbageInsideTls => "garbage: bad requests in TLS",
        }
    }
}

/// One worker's rotation; each worker starts at its own offset.
const CYCLE: [Kind; 16] = [
    Kind::Clone,
    Kind::GarbageBytes,
    Kind::Fetch,
    Kind::ConnectDenied,
    Kind::PushAllowed,
    Kind::GarbageHalfHead,
    Kind::PushDenied,
    Kind::Tunnel,
    Kind::Fetch,
    Kind::GarbageTlsHello,
    Kind::CloneDenied,
    Kind::PlainHttpDenied,
    Kind::PushAllowed,
    Kind::GarbageInsideTls,
    Kind::Clone,
    Kind::GarbageSlowHead,
];

enum Outcome {
    Ok,
    Unexpected(String),
}

#[derive(Default)]
struct KindStats {
    ok: u64,
    unexpected: u64,
    total: Duration,
    max: Duration,
}

#[derive(Default)]
struct Stats {
    kinds: Mutex<BTreeMap<Kind, KindStats>>,
    failures: Mutex<Vec<String>>,
}

impl Stats {
    fn record(&self, kind: Kind, worker: usize, took: Duration, outcome: Outcome) {
        let mut kinds = self.kinds.lock().unwrap_or_else(|p| p.into_inner());
        let entry = kinds.entry(kind).or_default();
        entry.total += took;
        entry.max = entry.max.max(took);
        match outcome {
            Outcome::Ok => entry.ok += 1,
            Outcome::Unexpected(why) => {
                entry.unexpected += 1;
                drop(kinds);
                self.unexpected_note(format!(
                    "worker {worker}, {} after {:.1} s: {why}",
                    kind.describe(),
                    took.as_secs_f64()
                ));
            }
        }
    }

    fn unexpected_note(&self, note: String) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures.push(note);
    }

    fn totals(&self) -> (u64, u64) {
        let kinds = self.kinds.lock().unwrap_or_else(|p| p.into_inner());
        let ops = kinds.values().map(|k| k.ok + k.unexpected).sum();
        drop(kinds);
        // Every unexpected outcome leaves a note, including those outside an operation.
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        (ops, failures.len() as u64)
    }

    fn print(&self, load_time: Duration) {
        let kinds = self.kinds.lock().unwrap_or_else(|p| p.into_inner());
        println!("\noperations over {:.0} s", load_time.as_secs_f64());
        println!(
            "  {:<32} {:>7} {:>10} {:>9} {:>9}",
            "kind", "ok", "unexpected", "mean ms", "max ms"
        );
        let (mut ok, mut bad) = (0, 0);
        for (kind, s) in kinds.iter() {
            let n = (s.ok + s.unexpected).max(1);
            println!(
                "  {:<32} {:>7} {:>10} {:>9.0} {:>9.0}",
                kind.describe(),
                s.ok,
                s.unexpected,
                s.total.as_secs_f64() * 1000.0 / n as f64,
                s.max.as_secs_f64() * 1000.0
            );
            ok += s.ok;
            bad += s.unexpected;
        }
        println!(
            "  {:<32} {ok:>7} {bad:>10}   ({:.1} operations/s)",
            "all",
            (ok + bad) as f64 / load_time.as_secs_f64()
        );
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if !failures.is_empty() {
            println!("\nunexpected outcomes ({} in all)", failures.len());
            for note in failures.iter().take(SHOWN_FAILURES) {
                println!("  - {note}");
            }
        }
    }
}

/// What every worker shares.
struct Ctx {
    proxy: SocketAddr,
    ca: PathBuf,
    gitgate_tls: Arc<rustls::ClientConfig>,
    standin_tls: Arc<rustls::ClientConfig>,
    stats: Stats,
    root: PathBuf,
}

fn worker(ctx: &Ctx, id: usize, deadline: Instant, stop: &AtomicBool) {
    let mut rng = Rng::new(id as u64 + 1);
    let sandbox = match Sandbox::new(ctx, &format!("w{id}")) {
        Ok(sandbox) => sandbox,
        Err(error) => {
            ctx.stats
                .unexpected_note(format!("worker {id}: sandbox setup failed: {error:#}"));
            return;
        }
    };
    let mut work: Option<PathBuf> = None;
    let mut step = id;
    while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
        let kind = CYCLE[step % CYCLE.len()];
        step += 1;
        let started = Instant::now();
        let outcome = match kind {
            Kind::Clone => sandbox.clone_allowed(step),
            Kind::Fetch => sandbox.fetch(&mut work),
            Kind::PushAllowed => sandbox.push_allowed(&mut work, id, step),
            Kind::PushDenied => sandbox.push_denied(&mut work, id, step),
            Kind::CloneDenied => sandbox.clone_denied(step),
            Kind::ConnectDenied => connect_denied(ctx, &mut rng),
            Kind::PlainHttpDenied => plain_http_denied(ctx),
            Kind::Tunnel => tunnel(ctx, &mut rng),
            Kind::GarbageBytes => garbage_bytes(ctx, &mut rng),
            Kind::GarbageHalfHead => half_head(ctx, &mut rng, false),
            Kind::GarbageSlowHead => half_head(ctx, &mut rng, true),
            Kind::GarbageTlsHello => garbage_tls_hello(ctx, &mut rng),
            Kind::GarbageInsideTls => garbage_inside_tls(ctx, &mut rng),
        };
        ctx.stats.record(kind, id, started.elapsed(), outcome);
    }
}

fn url(repo: &str) -> String {
    format!("https://github.com/{repo}.git")
}

/// One sandbox: its own HOME, and nothing but the proxy and gitgate's CA.
struct Sandbox {
    home: PathBuf,
    env: Vec<(String, String)>,
}

impl Sandbox {
    fn new(ctx: &Ctx, name: &str) -> anyhow::Result<Self> {
        let home = ctx.root.join("sandboxes").join(name);
        std::fs::create_dir_all(&home)?;
        std::fs::write(
            home.join(".gitconfig"),
            "[user]\n\tname = Soak\n\temail = soak@example.invalid\n[init]\n\tdefaultBranch = main\n[advice]\n\tdetachedHead = false\n",
        )?;
        let proxy = format!("http://{}", ctx.proxy);
        let mut env: Vec<(String, String)> = ["PATH", "TMPDIR"]
            .into_iter()
            .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_owned(), v)))
            .collect();
        env.extend(
            [
                ("HOME", home.display().to_string()),
                ("HTTPS_PROXY", proxy.clone()),
                ("HTTP_PROXY", proxy),
                ("GIT_SSL_CAINFO", ctx.ca.display().to_string()),
                ("GIT_CONFIG_NOSYSTEM", "1".into()),
                ("GIT_TERMINAL_PROMPT", "0".into()),
                ("GIT_ASKPASS", "/bin/false".into()),
                ("LC_ALL", "C".into()),
            ]
            .map(|(k, v)| (k.to_owned(), v)),
        );
        Ok(Self { home, env })
    }

    fn git(&self, cwd: &Path, args: &[&str]) -> anyhow::Result<Output> {
        let mut command = Command::new("git");
        command
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .args(args)
            .current_dir(cwd);
        run_bounded(command, OP_TIMEOUT)
    }

    fn checked(&self, cwd: &Path, args: &[&str]) -> Result<Output, String> {
        match self.git(cwd, args) {
            Ok(out) if out.status.success() => Ok(out),
            Ok(out) => Err(format!("git {}: {}", args.join(" "), text(&out))),
            Err(error) => Err(format!("git {}: {error:#}", args.join(" "))),
        }
    }

    /// The worker's long-lived clone of acme/app, cloned on first use.
    fn work(&self, work: &mut Option<PathBuf>) -> Result<PathBuf, String> {
        if let Some(path) = work {
            return Ok(path.clone());
        }
        let path = self.home.join("work");
        let _ = std::fs::remove_dir_all(&path);
        self.checked(&self.home, &["clone", "-q", &url("acme/app"), "work"])?;
        *work = Some(path.clone());
        Ok(path)
    }

    fn clone_allowed(&self, step: usize) -> Outcome {
        let target = CLONE_TARGETS[step % CLONE_TARGETS.len()];
        let dir = format!("clone-{step}");
        let result = self.checked(&self.home, &["clone", "-q", &url(target), &dir]);
        let exists = self.home.join(&dir).join(".git").is_dir();
        let _ = std::fs::remove_dir_all(self.home.join(&dir));
        match result {
            Ok(_) if exists => Outcome::Ok,
            Ok(_) => Outcome::Unexpected(format!("clone of {target} left no repository")),
            Err(why) => Outcome::Unexpected(why),
        }
    }

    fn fetch(&self, work: &mut Option<PathBuf>) -> Outcome {
        let result = self
            .work(work)
            .and_then(|repo| self.checked(&repo, &["fetch", "-q", "origin"]));
        outcome(result.map(|_| ()))
    }

    fn commit(&self, repo: &Path, id: usize, step: usize) -> Result<(), String> {
        let file = format!("soak-{id}.txt");
        std::fs::write(repo.join(&file), format!("{step}\n")).map_err(|e| e.to_string())?;
        self.checked(repo, &["add", &file])?;
        self.checked(repo, &["commit", "-q", "-m", &format!("soak {id} {step}")])?;
        Ok(())
    }

    fn push_allowed(&self, work: &mut Option<PathBuf>, id: usize, step: usize) -> Outcome {
        let result = self.work(work).and_then(|repo| {
            self.commit(&repo, id, step)?;
            let branch = format!("HEAD:refs/heads/release/soak-{id}");
            self.checked(&repo, &["push", "-q", "origin", &branch])
        });
        outcome(result.map(|_| ()))
    }

    fn push_denied(&self, work: &mut Option<PathBuf>, id: usize, step: usize) -> Outcome {
        let repo = match self.work(work) {
            Ok(repo) => repo,
            Err(why) => return Outcome::Unexpected(why),
        };
        if let Err(why) = self.commit(&repo, id, step) {
            return Outcome::Unexpected(why);
        }
        // Alternately a denied branch alone, and mixed with an allowed one (atomic).
        let allowed = format!("HEAD:refs/heads/release/soak-{id}");
        let mut args = vec!["push", "origin", "HEAD:refs/heads/dev"];
        if step.is_multiple_of(2) {
            args.push(&allowed);
        }
        match self.git(&repo, &args) {
            Ok(out) => {
                let all = text(&out);
                if out.status.success() {
                    Outcome::Unexpected(format!("denied push succeeded: {all}"))
                } else if all.contains("! [remote rejected] HEAD -> dev (gitgate: refs/heads/dev is not in allowedRefs") {
                    Outcome::Ok
                } else {
                    Outcome::Unexpected(format!("denied push failed otherwise: {all}"))
                }
            }
            Err(error) => Outcome::Unexpected(format!("{error:#}")),
        }
    }

    fn clone_denied(&self, step: usize) -> Outcome {
        let dir = format!("secret-{step}");
        let result = self.git(&self.home, &["clone", "-q", &url("acme/secret"), &dir]);
        let _ = std::fs::remove_dir_all(self.home.join(&dir));
        match result {
            Ok(out) => {
                let all = text(&out);
                if out.status.success() {
                    Outcome::Unexpected("clone of acme/secret succeeded".into())
                } else if all.contains("remote error: gitgate: acme/secret is not in allowedRepos")
                {
                    Outcome::Ok
                } else {
                    Outcome::Unexpected(format!("denied clone failed otherwise: {all}"))
                }
            }
            Err(error) => Outcome::Unexpected(format!("{error:#}")),
        }
    }
}

fn outcome(result: Result<(), String>) -> Outcome {
    match result {
        Ok(()) => Outcome::Ok,
        Err(why) => Outcome::Unexpected(why),
    }
}

/// Runs `command` to completion, killing it after `limit`.
fn run_bounded(mut command: Command, limit: Duration) -> anyhow::Result<Output> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let readers = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .map(|pipe| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut buf);
            }
            buf
        })
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            bail!("timed out after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let [stdout, stderr] = readers.map(|r| r.join().unwrap_or_default());
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
    .trim_end()
    .to_owned()
}

// --- raw clients on the proxy port -----------------------------------------------------

/// How a raw exchange ended.
enum End {
    /// The server closed (or reset) the connection.
    Closed,
    /// A complete response arrived.
    Answered,
    /// Nothing more arrived within the time allowed.
    Silent,
}

fn connect(ctx: &Ctx) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&ctx.proxy, RAW_TIMEOUT)?;
    stream.set_write_timeout(Some(RAW_TIMEOUT))?;
    Ok(stream)
}

/// Whether `bytes` hold an HTTP response head and all of its Content-Length body.
fn complete_response(bytes: &[u8]) -> bool {
    if !bytes.starts_with(b"HTTP/1.1 ") {
        return false;
    }
    let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    length.is_some_and(|n| bytes.len() >= end + 4 + n)
}

/// Reads until the server closes, a complete response has arrived, or `limit` passes.
fn read_until_close(stream: &mut impl Read, limit: Duration) -> (Vec<u8>, End) {
    let started = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (out, End::Closed),
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                if complete_response(&out) {
                    return (out, End::Answered);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if started.elapsed() >= limit {
                    return (out, End::Silent);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return (out, End::Closed),
        }
        if started.elapsed() >= limit {
            return (out, End::Silent);
        }
    }
}

/// Reads one response head (up to the blank line).
fn read_head(stream: &mut impl Read) -> io::Result<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte)? == 0 {
            break;
        }
        head.push(byte[0]);
        if head.len() > 64 << 10 {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

fn status_of(reply: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(reply.get(..12)?).ok()?;
    text.strip_prefix("HTTP/1.1 ")?.parse().ok()
}

fn first_line(reply: &[u8]) -> String {
    let text = String::from_utf8_lossy(reply);
    let line = text.lines().next().unwrap_or("").to_owned();
    if line.is_empty() {
        format!("{} bytes", reply.len())
    } else {
        line
    }
}

/// Sends `request`, reads to close; expects status `expected`.
fn exchange_expect(ctx: &Ctx, request: &[u8], expected: u16) -> Outcome {
    let mut stream = match connect(ctx) {
        Ok(stream) => stream,
        Err(e) => return Outcome::Unexpected(format!("connect: {e}")),
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if let Err(e) = stream.write_all(request) {
        return Outcome::Unexpected(format!("write: {e}"));
    }
    let head = read_head(&mut stream).unwrap_or_default();
    match status_of(head.as_bytes()) {
        Some(status) if status == expected => Outcome::Ok,
        _ => Outcome::Unexpected(format!(
            "expected {expected}, got {:?}",
            first_line(head.as_bytes())
        )),
    }
}

fn connect_denied(ctx: &Ctx, rng: &mut Rng) -> Outcome {
    let target = [
        "evil.test:443",
        "github.com:22",
        "169.254.169.254:80",
        "10.0.0.1:443",
    ][rng.below(4)];
    exchange_expect(
        ctx,
        format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes(),
        403,
    )
}

fn plain_http_denied(ctx: &Ctx) -> Outcome {
    exchange_expect(
        ctx,
        b"GET http://other.test/ HTTP/1.1\r\nHost: other.test\r\nConnection: close\r\n\r\n",
        403,
    )
}

/// `CONNECT host:443` answered 200, then TLS with `config`.
fn open_tls(
    ctx: &Ctx,
    host: &str,
    sni: &str,
    config: &Arc<rustls::ClientConfig>,
) -> Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>, String> {
    let tcp = connect_to(ctx, host)?;
    let name = rustls_pki_types::ServerName::try_from(sni.to_owned()).map_err(|e| e.to_string())?;
    let conn = rustls::ClientConnection::new(config.clone(), name).map_err(|e| e.to_string())?;
    let _ = tcp.set_read_timeout(Some(RAW_TIMEOUT));
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn
            .complete_io(&mut tls.sock)
            .map_err(|e| format!("TLS handshake with {host}: {e}"))?;
    }
    Ok(tls)
}

/// `CONNECT host:443`, answered 200.
fn connect_to(ctx: &Ctx, host: &str) -> Result<TcpStream, String> {
    let mut tcp = connect(ctx).map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_read_timeout(Some(RAW_TIMEOUT));
    tcp.write_all(format!("CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n").as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let head = read_head(&mut tcp).map_err(|e| format!("CONNECT {host}: {e}"))?;
    if status_of(head.as_bytes()) != Some(200) {
        return Err(format!("CONNECT {host}: {:?}", first_line(head.as_bytes())));
    }
    Ok(tcp)
}

fn tunnel(ctx: &Ctx, _rng: &mut Rng) -> Outcome {
    let mut tls = match open_tls(ctx, "tunnel.test", "tunnel.test", &ctx.standin_tls) {
        Ok(tls) => tls,
        Err(why) => return Outcome::Unexpected(why),
    };
    if let Err(e) =
        tls.write_all(b"GET / HTTP/1.1\r\nHost: tunnel.test\r\nConnection: close\r\n\r\n")
    {
        return Outcome::Unexpected(format!("write: {e}"));
    }
    let (reply, end) = read_until_close(&mut tls, RAW_TIMEOUT);
    let reply = String::from_utf8_lossy(&reply);
    match end {
        End::Closed | End::Answered if reply.contains("hello from tunnel.test") => Outcome::Ok,
        End::Closed | End::Answered => Outcome::Unexpected(format!("tunnel answered {reply:?}")),
        End::Silent => Outcome::Unexpected("tunnel did not close".into()),
    }
}

/// Any answer to garbage must be a 4xx, and the connection must close.
fn judge_garbage(what: &str, reply: &[u8], end: End) -> Outcome {
    if let End::Silent = end {
        return Outcome::Unexpected(format!(
            "{what}: connection still open after {RAW_TIMEOUT:?} ({})",
            first_line(reply)
        ));
    }
    if reply.is_empty() || status_of(reply).is_some_and(|s| (400..500).contains(&s)) {
        Outcome::Ok
    } else {
        Outcome::Unexpected(format!("{what}: answered {:?}", first_line(reply)))
    }
}

fn garbage_bytes(ctx: &Ctx, rng: &mut Rng) -> Outcome {
    let mut stream = match connect(ctx) {
        Ok(stream) => stream,
        Err(e) => return Outcome::Unexpected(format!("connect: {e}")),
    };
    let len = 1 + rng.below(8192);
    let bytes = rng.bytes(len);
    let _ = stream.write_all(&bytes);
    let _ = stream.shutdown(Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let (reply, end) = read_until_close(&mut stream, RAW_TIMEOUT);
    judge_garbage("random bytes", &reply, end)
}

const HEADS: [&str; 4] = [
    "CONNECT github.com:443 HTTP/1.1\r\nHost: github.com:443\r\n\r\n",
    "CONNECT tunnel.test:443 HTTP/1.1\r\nHost: tunnel.test:443\r\nUser-Agent: soak\r\n\r\n",
    "GET http://other.test/ HTTP/1.1\r\nHost: other.test\r\nAccept: */*\r\n\r\n",
    "GET /acme/app.git/info/refs?service=git-upload-pack HTTP/1.1\r\nHost: github.com\r\n\r\n",
];

/// Part of a request head, then either EOF at once or silence until gitgate gives up.
fn half_head(ctx: &Ctx, rng: &mut Rng, wait: bool) -> Outcome {
    let head = HEADS[rng.below(HEADS.len())].as_bytes();
    let cut = 1 + rng.below(head.len() - 5);
    let mut stream = match connect(ctx) {
        Ok(stream) => stream,
        Err(e) => return Outcome::Unexpected(format!("connect: {e}")),
    };
    let _ = stream.write_all(&head[..cut]);
    if !wait {
        let _ = stream.shutdown(Shutdown::Write);
    }
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let started = Instant::now();
    let (reply, end) = read_until_close(&mut stream, HEAD_TIMEOUT + RAW_TIMEOUT);
    if wait && started.elapsed() > HEAD_TIMEOUT + Duration::from_secs(5) {
        return Outcome::Unexpected(format!(
            "a stalled head was cut off after {:.1} s (headerReadTimeout {HEAD_TIMEOUT:?})",
            started.elapsed().as_secs_f64()
        ));
    }
    judge_garbage("half a head", &reply, end)
}

/// CONNECT github.com, then random bytes where the ClientHello belongs.
fn garbage_tls_hello(ctx: &Ctx, rng: &mut Rng) -> Outcome {
    let mut tcp = match connect_to(ctx, "github.com") {
        Ok(tcp) => tcp,
        Err(why) => return Outcome::Unexpected(why),
    };
    let len = 1 + rng.below(2048);
    let mut bytes = rng.bytes(len);
    if rng.below(2) == 0 {
        // Half the time, something that starts like a TLS handshake record.
        bytes.splice(0..0, [0x16, 0x03, 0x01, 0x02, 0x00, 0x01]);
    }
    let _ = tcp.write_all(&bytes);
    let _ = tcp.set_read_timeout(Some(Duration::from_millis(500)));
    let started = Instant::now();
    let (reply, end) = read_until_close(&mut tcp, HEAD_TIMEOUT + RAW_TIMEOUT);
    if let End::Silent = end {
        return Outcome::Unexpected(format!(
            "no close {:.1} s after a bad TLS hello ({} bytes back)",
            started.elapsed().as_secs_f64(),
            reply.len()
        ));
    }
    // A TLS alert or nothing: both fine; an HTTP answer is not.
    if reply.starts_with(b"HTTP/") {
        return Outcome::Unexpected(format!("answered {:?}", first_line(&reply)));
    }
    Outcome::Ok
}

/// Intercepted TLS to github.com, then a malformed or refused request.
fn garbage_inside_tls(ctx: &Ctx, rng: &mut Rng) -> Outcome {
    let mut tls = match open_tls(ctx, "github.com", "github.com", &ctx.gitgate_tls) {
        Ok(tls) => tls,
        Err(why) => return Outcome::Unexpected(why),
    };
    let requests: [&[u8]; 5] = [
        b"GET /acme/app/%2e%2e/secret/info/refs?service=git-upload-pack HTTP/1.1\r\nHost: github.com\r\n\r\n",
        b"GET /acme/app.git/HEAD HTTP/1.1\r\nHost: github.com\r\n\r\n",
        b"GET /acme/app.git/info/refs?service=git-upload-pack HTTP/1.1\r\nHost: evil.test\r\n\r\n",
        b"POST /acme/app.git/git-receive-pack HTTP/1.1\r\nHost: github.com\r\nContent-Length: 4\r\n\r\nzzzz",
        b"",
    ];
    let pick = rng.below(requests.len());
    let random;
    let request = if requests[pick].is_empty() {
        let len = 1 + rng.below(4096);
        random = rng.bytes(len);
        &random[..]
    } else {
        requests[pick]
    };
    if let Err(e) = tls.write_all(request).and_then(|()| tls.flush()) {
        return Outcome::Unexpected(format!("write: {e}"));
    }
    let _ = tls.sock.set_read_timeout(Some(Duration::from_millis(500)));
    let (reply, end) = read_until_close(&mut tls, RAW_TIMEOUT);
    if reply.windows(14).any(|w| w == b"x-access-token") {
        return Outcome::Unexpected("a credential reached the client".into());
    }
    // The receive-pack body is malformed pkt-line: an ERR answer inside a 200 or a 4xx.
    if pick == 3 {
        let text = String::from_utf8_lossy(&reply);
        return if text.starts_with("HTTP/1.1 4") || text.contains("ERR gitgate:") {
            Outcome::Ok
        } else {
            Outcome::Unexpected(format!("malformed push answered {:?}", first_line(&reply)))
        };
    }
    judge_garbage("request inside TLS", &reply, end)
}

fn client_tls(ca_pem: &[u8]) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert?)?;
    }
    let provider = gitgate_certs::crypto_provider();
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// xorshift64*: enough randomness for garbage, no dependency.
struct Rng(u64);

impl Rng {
    fn new(stream: u64) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Self((nanos ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(n);
        out
    }
}
