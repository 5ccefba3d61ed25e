#!/usr/bin/env python3
"""gitgate benchmark driver (started by bench/run.sh; see bench/README.md).

Starts a local github.com (nginx + TLS + fcgiwrap + git http-backend on 127.0.0.1:443),
generates the data, then measures the contenders run by run, interleaved within each
round (direct, gitgate, nginx-relay, tinyproxy, squid, mitmproxy, rotated every round), and prints
medians, per-pair ratios against direct, proxy CPU seconds and peak RSS per scenario.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import hashlib
import json
import os
import random
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import syscall_timeline

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
WORK = Path(os.environ.get("BENCH_WORK", "/var/tmp/gitgate-bench"))
DATA = WORK / "data"
TLS = WORK / "tls"
RUN = WORK / "run"
GG = WORK / "gitgate"
MITM_CONF = WORK / "mitmproxy"
SCRATCH = Path("/dev/shm/gitgate-bench") if Path("/dev/shm").is_dir() else WORK / "scratch"

GITGATE_BIN = Path(os.environ.get("GITGATE_BIN", ROOT / "target/release/gitgate"))
# --callgrind: gitgate runs under valgrind's callgrind, counting instructions only while a
# measured round runs (its timings are then meaningless; the counts are exact).
CALLGRIND_DIR = WORK / "callgrind"
TIMELINE_DIR = WORK / "timeline"
CALLGRIND = False
# --syscall-timeline: gitgate's (and rustls-relay's) socket system calls in its rounds, by perf.
TIMELINE = False
CLIENT_BIN = Path(os.environ.get("BENCH_CLIENT", WORK / "client-target/release/gitgate-bench-client"))
RELAY_BIN = Path(os.environ.get("BENCH_RELAY", WORK / "relay-target/release/gitgate-bench-relay"))
MITMDUMP = Path(os.environ.get("MITMDUMP", WORK / "venv/bin/mitmdump"))

TOKEN = "ghs_BenchmarkToken0000000000000000000000"
AUTH = "Basic " + base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
HOST = "github.com"
BASE = f"https://{HOST}"

PORTS = {"gitgate": 18080, "tinyproxy": 18081, "squid": 18082, "mitmproxy": 18083, "gitgate-b": 18084,
         "gitgate-profiles": 18085, "nginx-relay": 443, "rustls-relay": 443}
# Where a client connects when it does not go through a forward proxy: the upstream itself
# (direct), or the reference TLS relay, which the client reaches as if it were github.com.
ADDRS = {"direct": "127.0.0.1", "nginx-relay": "127.0.0.2", "rustls-relay": "127.0.0.3"}
CONTENDERS = ["direct", "gitgate", "nginx-relay", "tinyproxy", "squid", "mitmproxy"]
# Opt-in (`--only gitgate,gitgate-profiles`): one gitgate serving PROFILES sandboxes, each
# identified by its own proxy secret (`Proxy-Authorization: Basic`) and with its own policy.
# Opt-in (`--only gitgate,rustls-relay`): the least a MITM on gitgate's own crates costs
# (bench/relay: TLS in, TLS out, bytes pumped; no CONNECT, no HTTP, no credential).
OPTIONAL_CONTENDERS = ["gitgate-profiles", "rustls-relay"]
PROFILES = 50
# A/B: GITGATE_B_BIN and/or GITGATE_B_CONFIG add a second gitgate ("gitgate-b": another
# build or another config), interleaved with the others in the same run.
if os.environ.get("GITGATE_B_BIN") or os.environ.get("GITGATE_B_CONFIG"):
    CONTENDERS.insert(2, "gitgate-b")

# Data sizes.
DATA_VERSION = "v1"
LARGE_COMMITS = 2100
LARGE_BIN = 100 * 1024  # one incompressible blob per commit: >= 205 MiB of packed history
BIG_FILE = 1 << 30  # 1 GiB download
PUSH_SIZE = 50 * 1024 * 1024
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def sh(cmd, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("check", True)
    return subprocess.run(cmd, **kw)


# --------------------------------------------------------------------------- data


def gen_tls() -> None:
    if (TLS / "github.pem").exists() and (TLS / "squid-ca.pem").exists():
        return
    log("generating TLS material")
    TLS.mkdir(parents=True, exist_ok=True)
    o = ["openssl"]
    for name, cn in (("upstream-ca", "bench upstream CA"), ("squid-ca", "bench squid CA")):
        sh(o + ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", f"{TLS}/{name}.key", "-out", f"{TLS}/{name}.pem", "-days", "3650",
                "-subj", f"/CN={cn}", "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign"], capture_output=True)
    sh(o + ["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{TLS}/github.key", "-out", f"{TLS}/github.csr", "-subj", "/CN=github.com"],
       capture_output=True)
    ext = TLS / "leaf.ext"
    ext.write_text("subjectAltName=DNS:github.com\nbasicConstraints=CA:FALSE\n"
                   "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")
    sh(o + ["x509", "-req", "-in", f"{TLS}/github.csr", "-CA", f"{TLS}/upstream-ca.pem",
            "-CAkey", f"{TLS}/upstream-ca.key", "-CAcreateserial", "-days", "3650",
            "-out", f"{TLS}/github.pem", "-extfile", str(ext)], capture_output=True)
    os.chmod(TLS, 0o755)
    for f in TLS.iterdir():
        os.chmod(f, 0o644)  # squid drops to the proxy user and must read its CA key


def git(*args, cwd=None, env=None, **kw):
    e = dict(os.environ, GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL="/dev/null",
             GIT_AUTHOR_NAME="Bench", GIT_AUTHOR_EMAIL="bench@example.com",
             GIT_COMMITTER_NAME="Bench", GIT_COMMITTER_EMAIL="bench@example.com")
    if env:
        e.update(env)
    return sh(["git", *args], cwd=cwd, env=e, **kw)


def fast_import_large(repo: Path) -> None:
    """A history of LARGE_COMMITS commits: each edits three of 40 text files (deltas,
    like source code) and replaces one incompressible 100 KiB binary (no deltas), so
    the packed history is >= 200 MB while the checkout stays small."""
    rng = random.Random(20240601)
    words = [rng.randbytes(rng.randint(2, 6)).hex() for _ in range(2000)]

    def text_file() -> list[str]:
        return [" ".join(rng.choices(words, k=rng.randint(4, 14))) for _ in range(300)]

    files = {f"src/mod{i:02d}.txt": text_file() for i in range(40)}
    p = subprocess.Popen(["git", "fast-import", "--quiet"], cwd=repo, stdin=subprocess.PIPE)
    w = p.stdin
    t0 = 1_600_000_000

    def blob_cmd(path: str, data: bytes) -> None:
        w.write(f"M 100644 inline {path}\ndata {len(data)}\n".encode() + data + b"\n")

    for n in range(1, LARGE_COMMITS + 1):
        msg = f"commit {n}\n".encode()
        w.write(f"commit refs/heads/main\nmark :{n}\n"
                f"committer Bench <bench@example.com> {t0 + n * 60} +0000\n"
                f"data {len(msg)}\n".encode() + msg)
        if n > 1:
            w.write(f"from :{n - 1}\n".encode())
        paths = list(files) if n == 1 else rng.sample(list(files), 3)
        for path in paths:
            lines = files[path]
            for _ in range(rng.randint(1, 8)):
                lines[rng.randrange(len(lines))] = " ".join(rng.choices(words, k=rng.randint(4, 14)))
            blob_cmd(path, ("\n".join(lines) + "\n").encode())
        blob_cmd("assets/blob.bin", rng.randbytes(LARGE_BIN))
        w.write(b"\n")
    w.close()
    if p.wait() != 0:
        raise SystemExit("git fast-import failed")


def gen_data() -> None:
    stamp = DATA / f".complete-{DATA_VERSION}"
    if stamp.exists():
        return
    t0 = time.monotonic()
    log(f"generating data under {DATA} (one time; reused afterwards)")
    if DATA.exists():
        shutil.rmtree(DATA)
    repos = DATA / "repos" / "bench"
    repos.mkdir(parents=True)

    log("  1 GiB download file")
    with open(DATA / "big.bin", "wb") as f, open("/dev/urandom", "rb") as r:
        left = BIG_FILE
        while left:
            chunk = r.read(min(left, 8 << 20))
            f.write(chunk)
            left -= len(chunk)

    log(f"  large repository ({LARGE_COMMITS} commits, fast-import)")
    large = repos / "large.git"
    git("init", "-q", "--bare", "-b", "main", str(large))
    (large / "info" / "attributes").write_text("*.bin -delta\n")
    fast_import_large(large)
    log("  large repository: repack with bitmaps")
    git("-C", str(large), "repack", "-a", "-d", "-f", "-b", "-q", "--window=10", "--depth=50")
    git("-C", str(large), "config", "gc.auto", "0")
    pack_bytes = sum(p.stat().st_size for p in (large / "objects" / "pack").glob("*.pack"))
    if pack_bytes < 200_000_000:
        raise SystemExit(f"large repository pack is only {pack_bytes} bytes")

    log("  small repository")
    src = WORK / "tmp-small-src"
    if src.exists():
        shutil.rmtree(src)
    git("init", "-q", "-b", "main", str(src))
    rng = random.Random(7)
    for n in range(20):
        for i in range(5):
            (src / f"file{i}.txt").write_text(
                "\n".join(rng.randbytes(24).hex() for _ in range(40 + n)) + "\n")
        git("add", "-A", cwd=src)
        git("commit", "-q", "-m", f"small {n}", cwd=src)
    for i in range(10):
        git("branch", f"feature/{i}", f"HEAD~{i}", cwd=src)
        git("tag", f"v1.{i}", f"HEAD~{i}", cwd=src)
    small = repos / "small.git"
    git("clone", "-q", "--bare", str(src), str(small))
    git("-C", str(small), "repack", "-a", "-d", "-b", "-q")
    tmpl = DATA / "push-template.git"
    git("clone", "-q", "--bare", str(src), str(tmpl))
    for r in (small, tmpl):
        git("-C", str(r), "config", "http.receivepack", "true")
        git("-C", str(r), "config", "gc.auto", "0")
        git("-C", str(r), "config", "receive.autogc", "false")

    log("  push source (50 MiB incompressible commit on top of small)")
    push_src = DATA / "push-src"
    git("clone", "-q", str(small), str(push_src))
    (push_src / "payload.bin").write_bytes(random.Random(50).randbytes(PUSH_SIZE))
    git("add", "payload.bin", cwd=push_src)
    git("commit", "-q", "-m", "50 MiB payload", cwd=push_src)
    git("repack", "-a", "-d", "-q", cwd=push_src)  # pack-objects then reuses the zlib data
    git("config", "gc.auto", "0", cwd=push_src)
    shutil.rmtree(src)

    log("  info/refs advertisement of bench/small.git (static latency target)")
    cgi = sh(["git", "http-backend"], capture_output=True, env=dict(
        os.environ, GIT_PROJECT_ROOT=str(DATA / "repos"), GIT_HTTP_EXPORT_ALL="1",
        PATH_INFO="/bench/small.git/info/refs", QUERY_STRING="service=git-upload-pack",
        REQUEST_METHOD="GET")).stdout
    head, _, body = cgi.partition(b"\r\n\r\n")
    if b"x-git-upload-pack-advertisement" not in head or not body.startswith(b"001e# service"):
        raise SystemExit("could not capture the info/refs advertisement")
    (DATA / "refs.adv").write_bytes(body)
    stamp.write_text(f"large pack {pack_bytes} bytes\n")
    log(f"  data ready in {time.monotonic() - t0:.0f} s (large pack {pack_bytes / 1e6:.0f} MB)")


def data_facts() -> dict:
    large = DATA / "repos/bench/large.git/objects/pack"
    return {
        "large_pack_bytes": sum(p.stat().st_size for p in large.glob("*.pack")),
        "small_pack_bytes": sum(p.stat().st_size for p in (DATA / "repos/bench/small.git/objects/pack").glob("*.pack")),
        "refs_adv_bytes": (DATA / "refs.adv").stat().st_size,
        "big_bytes": (DATA / "big.bin").stat().st_size,
    }


# ---------------------------------------------------------------------- processes


def fill(template: Path, out: Path, **vars) -> Path:
    text = template.read_text()
    for k, v in vars.items():
        text = text.replace(f"@{k}@", str(v))
    out.write_text(text)
    return out


def wait_port(port: int, proc: subprocess.Popen | None, what: str, timeout=30.0,
              addr: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"{what} exited with status {proc.returncode}; see {RUN}")
        try:
            socket.create_connection((addr, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{what} did not listen on port {port} within {timeout:.0f} s")


def port_free(port: int, addr: str = "127.0.0.1") -> bool:
    try:
        socket.create_connection((addr, port), timeout=0.3).close()
        return False
    except OSError:
        return True


class Procs:
    """Everything this run started, stopped in reverse order (also on errors and signals)."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, cmd: list[str], env=None) -> subprocess.Popen:
        out = open(RUN / f"{name}.log", "ab")
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             env=env, start_new_session=True)
        self.procs.append((name, p))
        return p

    def stop(self, name: str) -> None:
        for n, p in list(self.procs):
            if n == name:
                self._kill(p)
                self.procs.remove((n, p))

    @staticmethod
    def _kill(p: subprocess.Popen) -> None:
        if p.poll() is not None:
            return
        try:
            os.killpg(p.pid, signal.SIGTERM)  # its own session: the process and its helpers
        except ProcessLookupError:
            return
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()

    def stop_all(self) -> None:
        while self.procs:
            _, p = self.procs.pop()
            self._kill(p)


PROCS = Procs()


def proc_tree(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_seconds(pid: int, reaped: bool = False) -> float:
    """CPU seconds of the process tree: each process's CPU clock (all its threads, live and
    exited, nanosecond precision), plus, with reaped, its waited-for children (ticks)."""
    total = 0.0
    for p in proc_tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            try:
                total += time.clock_gettime(((~p) << 3) | 2)  # CPUCLOCK_SCHED of process p
            except OSError:
                total += (int(fields[11]) + int(fields[12])) / CLK_TCK
            if reaped:
                total += (int(fields[13]) + int(fields[14])) / CLK_TCK
        except (OSError, IndexError, ValueError):
            pass
    return total


def children_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


UPSTREAM_PIDS: list[int] = []


class LoadMeter:
    """CPU the rest of the machine used meanwhile: process time on all CPUs (user, nice,
    system; interrupts excluded) minus this run's own processes (reaped children, the
    long-running nginx and fcgiwrap trees). Steal time (other VMs) is kept apart."""

    def __init__(self) -> None:
        self.t0, self.busy0, self.steal0, self.own0 = time.monotonic(), *self._sample()

    @staticmethod
    def _sample():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
        busy = (v[0] + v[1] + v[2]) / CLK_TCK
        own = own_cpu_s() + sum(cpu_seconds(p, reaped=True) for p in UPSTREAM_PIDS)
        return busy, v[7] / CLK_TCK, own

    def result(self) -> dict:
        busy, steal, own = self._sample()
        wall = time.monotonic() - self.t0
        other = max(busy - self.busy0 - (own - self.own0), 0.0)
        return {"wall": wall, "other_cpu_s": other, "steal_s": steal - self.steal0,
                "other_share": other / (wall * (os.cpu_count() or 1)) if wall else 0.0}


def peak_rss_mb(pid: int) -> float:
    """VmHWM summed over the process tree (squid's certificate helpers included), in MB (10^6 B)."""
    kb = 0
    for p in proc_tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        kb += int(line.split()[1])
        except OSError:
            pass
    return kb * 1024 / 1e6


def hosts_wrapped(cmd: list[str]) -> list[str]:
    """Runs cmd in a private mount namespace whose /etc/hosts maps github.com to 127.0.0.1,
    for the proxies that resolve the CONNECT host through the system resolver."""
    script = 'mount --bind "$0" /etc/hosts && exec "$@"'
    return ["unshare", "-m", "sh", "-c", script, str(RUN / "hosts"), *cmd]


def start_upstream(workers: int) -> None:
    RUN.mkdir(parents=True, exist_ok=True)
    (RUN / "hosts").write_text("127.0.0.1 localhost\n127.0.0.1 github.com\n")
    for d in ("nginx-body", "nginx-fastcgi", "nginx-proxy", "nginx-uwsgi", "nginx-scgi"):
        (RUN / d).mkdir(exist_ok=True)
    sock = RUN / "fcgiwrap.sock"
    sock.unlink(missing_ok=True)
    fcgi = PROCS.start("fcgiwrap", ["fcgiwrap", "-c", "80", "-s", f"unix:{sock}"])
    deadline = time.monotonic() + 10
    while not sock.exists():
        if time.monotonic() > deadline:
            raise SystemExit("fcgiwrap did not create its socket")
        time.sleep(0.05)
    conf = fill(BENCH / "conf/nginx.conf", RUN / "nginx.conf", RUN=RUN, TLS=TLS, DATA=DATA,
                AUTH=AUTH, NGINX_WORKERS=workers)
    p = PROCS.start("nginx", ["nginx", "-c", str(conf), "-e", str(RUN / "nginx-error.log")])
    wait_port(443, p, "nginx")
    UPSTREAM_PIDS[:] = [p.pid, fcgi.pid]


def start_proxy(name: str) -> tuple[subprocess.Popen, Path]:
    """Starts one proxy fresh; returns (process, CA file its clients trust)."""
    port = PORTS[name]
    if name in ("gitgate", "gitgate-b"):
        b = name == "gitgate-b"
        gg = WORK / name
        gg.mkdir(exist_ok=True)
        (gg / "token").write_text(TOKEN + "\n")
        # BENCH_GITGATE_CONFIG: another template, for experiments (same @VARS@; the token is
        # also in the environment as BENCH_GITHUB_TOKEN for `token: {env: BENCH_GITHUB_TOKEN}`).
        template = Path(os.environ.get("GITGATE_B_CONFIG" if b else "BENCH_GITGATE_CONFIG", "")
                        or BENCH / "conf/gitgate.yaml")
        binary = Path(os.environ.get("GITGATE_B_BIN", "") or GITGATE_BIN) if b else GITGATE_BIN
        conf = fill(template, gg / "gitgate.yaml", PORT=port, GITGATE=gg, TLS=TLS)
        env = dict(os.environ, BENCH_GITHUB_TOKEN=TOKEN)
        env.setdefault("RUST_LOG", "info")
        cmd = callgrind_wrapped(name, [str(binary), "run", "--config", str(conf)])
        p = PROCS.start(name, cmd, env=env)
        ca = gg / "ca" / "ca.pem"
    elif name == "gitgate-profiles":
        gg = WORK / name
        gg.mkdir(exist_ok=True)
        (gg / "token").write_text(TOKEN + "\n")
        write_profiles(gg)
        conf = fill(BENCH / "conf/gitgate-profiles.yaml", gg / "gitgate.yaml", PORT=port, GITGATE=gg, TLS=TLS)
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "info")
        p = PROCS.start(name, [str(GITGATE_BIN), "run", "--config", str(conf)], env=env)
        ca = gg / "ca" / "ca.pem"
    elif name == "nginx-relay":
        for d in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (RUN / f"nginx-relay-{d}").mkdir(exist_ok=True)
        conf = fill(BENCH / "conf/nginx-relay.conf", RUN / "nginx-relay.conf", RUN=RUN, TLS=TLS, AUTH=AUTH)
        p = PROCS.start(name, ["nginx", "-c", str(conf), "-e", str(RUN / "nginx-relay-error.log")])
        ca = TLS / "upstream-ca.pem"
    elif name == "rustls-relay":
        p = PROCS.start(name, callgrind_wrapped(name, [
            str(RELAY_BIN), "--listen", f"{ADDRS[name]}:{port}", "--upstream", "127.0.0.1:443", "--name", HOST,
            "--cert", str(TLS / "github.pem"), "--key", str(TLS / "github.key"),
            "--cafile", str(TLS / "upstream-ca.pem")]))
        ca = TLS / "upstream-ca.pem"
    elif name == "tinyproxy":
        conf = fill(BENCH / "conf/tinyproxy.conf", RUN / "tinyproxy.conf", PORT=port, RUN=RUN)
        p = PROCS.start(name, hosts_wrapped(["tinyproxy", "-d", "-c", str(conf)]))
        ca = TLS / "upstream-ca.pem"
    elif name == "squid":
        db = RUN / "squid-ssl-db"
        if not db.exists():
            sh(["/usr/lib/squid/security_file_certgen", "-c", "-s", str(db), "-M", "4MB"],
               capture_output=True)
        shutil.chown(RUN, "proxy")
        for f in [db, *db.rglob("*")]:
            shutil.chown(f, "proxy", "proxy")
        for f in ("squid-access.log", "squid-cache.log"):
            (RUN / f).touch()
            shutil.chown(RUN / f, "proxy", "proxy")
        conf = fill(BENCH / "conf/squid.conf", RUN / "squid.conf", PORT=port, RUN=RUN, TLS=TLS, AUTH=AUTH)
        p = PROCS.start(name, ["squid", "-N", "-f", str(conf)])
        ca = TLS / "squid-ca.pem"
    elif name == "mitmproxy":
        env = dict(os.environ, BENCH_AUTH=AUTH)
        p = PROCS.start(name, hosts_wrapped([
            str(MITMDUMP), "--quiet", "--listen-host", "127.0.0.1", "--listen-port", str(port),
            "--set", f"confdir={MITM_CONF}", "--set", "stream_large_bodies=1m",
            "--set", f"ssl_verify_upstream_trusted_ca={TLS / 'upstream-ca.pem'}",
            "-s", str(BENCH / "addons/inject_auth.py")]), env=env)
        ca = MITM_CONF / "mitmproxy-ca-cert.pem"
    else:
        raise ValueError(name)
    wait_port(port, p, name, timeout=60, addr=ADDRS.get(name, "127.0.0.1"))
    deadline = time.monotonic() + 20
    while not ca.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"{name}: no CA at {ca}")
        time.sleep(0.1)
    return p, ca


def write_profiles(gg: Path) -> None:
    """PROFILES profile files (fresh random secrets, stored as SHA-256) in gg/profiles.d, each
    allowing bench/* and a repository space of its own, and gg/proxy-users (NAME:SECRET
    lines) for the latency client."""
    pdir = gg / "profiles.d"
    shutil.rmtree(pdir, ignore_errors=True)
    pdir.mkdir()
    users = []
    for i in range(PROFILES):
        name, secret = f"sandbox-{i:02d}", os.urandom(24).hex()
        digest = hashlib.sha256(secret.encode()).hexdigest()
        (pdir / f"{name}.yaml").write_text(
            f'secretSha256: "{digest}"\n'
            f'policy:\n  allowedRepos: ["bench/*", "team-{i:02d}/*"]\n  allowedRefs: ["*"]\n')
        users.append(f"{name}:{secret}")
    (gg / "proxy-users").write_text("\n".join(users) + "\n")


def proxy_user(name: str) -> str | None:
    """The first profile's NAME:SECRET for git and curl, when the contender needs one."""
    if name != "gitgate-profiles":
        return None
    return (WORK / name / "proxy-users").read_text().splitlines()[0]


# ---------------------------------------------------------------------- contenders


@dataclass
class Contender:
    name: str
    ca: Path
    proc: subprocess.Popen | None = None

    @property
    def proxy(self) -> str | None:
        if self.name in ADDRS:
            return None
        user = proxy_user(self.name)
        return f"http://{user + '@' if user else ''}127.0.0.1:{PORTS[self.name]}"

    @property
    def client_sends_auth(self) -> bool:
        # direct, the plain tunnel and the byte relay cannot have a header injected: the
        # client sends it.
        return self.name in ("direct", "tinyproxy", "rustls-relay")

    def env(self) -> dict:
        e = {k: v for k, v in os.environ.items() if not (
            k.upper().endswith("_PROXY") or k.upper() in (
                "GIT_SSL_CAINFO", "SSL_CERT_FILE", "SSL_CERT_DIR", "CURL_CA_BUNDLE",
                "REQUESTS_CA_BUNDLE", "GIT_SSL_CAPATH"))}
        e.update(GIT_TERMINAL_PROMPT="0", GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL="/dev/null",
                 GIT_SSL_CAINFO=str(self.ca), GIT_AUTHOR_NAME="Bench",
                 GIT_AUTHOR_EMAIL="bench@example.com", GIT_COMMITTER_NAME="Bench",
                 GIT_COMMITTER_EMAIL="bench@example.com")
        return e

    def git_opts(self) -> list[str]:
        o = ["-c", f"http.sslCAInfo={self.ca}"]
        if self.proxy:
            o += ["-c", f"http.proxy={self.proxy}"]
        else:
            o += ["-c", f"http.curloptResolve={HOST}:443:{ADDRS[self.name]}"]
        if self.client_sends_auth:
            o += ["-c", f"http.extraHeader=Authorization: {AUTH}"]
        return o

    def curl_opts(self) -> list[str]:
        o = ["--cacert", str(self.ca)]
        o += ["--proxy", self.proxy] if self.proxy else ["--resolve", f"{HOST}:443:{ADDRS[self.name]}"]
        if self.client_sends_auth:
            o += ["-H", f"Authorization: {AUTH}"]
        return o

    def client_opts(self) -> list[str]:
        o = ["--cafile", str(self.ca), "--host", HOST]
        if self.proxy:
            o += ["--target", f"127.0.0.1:{PORTS[self.name]}", "--proxy"]
            if proxy_user(self.name):
                o += ["--proxy-users", str(WORK / self.name / "proxy-users")]
        else:
            o += ["--target", f"{ADDRS[self.name]}:443"]
        if self.client_sends_auth:
            o += ["--header", f"Authorization: {AUTH}"]
        return o


# ---------------------------------------------------------------------- scenarios


class RunFailed(Exception):
    pass


def timed(cmd, env, cwd=None, timeout=900) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, timeout=timeout)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise RunFailed(f"{' '.join(map(str, cmd[:6]))}… exited {r.returncode}: "
                        f"{r.stderr.decode(errors='replace')[-600:]}")
    return dt


def scratch(name: str) -> Path:
    d = SCRATCH / name
    if d.exists():
        shutil.rmtree(d)
    d.parent.mkdir(parents=True, exist_ok=True)
    return d


def run_clone_large(c: Contender, cfg) -> dict:
    dest = scratch(f"large-{c.name}")
    dt = timed(["git", *c.git_opts(), "clone", "-q", f"{BASE}/bench/large.git", str(dest)], c.env())
    if not (dest / "assets/blob.bin").exists():
        raise RunFailed("clone has no checkout")
    shutil.rmtree(dest)
    return {"wall_s": dt}


def run_download(c: Contender, cfg) -> dict:
    cmd = ["curl", "-sS", "--fail", "-o", "/dev/null", *c.curl_opts(),
           "-w", "%{http_code} %{size_download} %{time_total} %{time_starttransfer}",
           f"{BASE}/bench/big.git/info/refs?service=git-upload-pack"]
    r = subprocess.run(cmd, env=c.env(), capture_output=True, timeout=600)
    if r.returncode != 0:
        raise RunFailed(f"curl exited {r.returncode}: {r.stderr.decode(errors='replace')[-400:]}")
    code, size, total, ttfb = r.stdout.decode().split()
    if code != "200" or int(size) != BIG_FILE:
        raise RunFailed(f"download: HTTP {code}, {size} bytes")
    return {"mb_s": int(size) / float(total) / 1e6, "wall_s": float(total), "ttfb_s": float(ttfb)}


def client(c: Contender, mode: str, conns: int, requests: int) -> dict:
    cmd = [str(CLIENT_BIN), *c.client_opts(), "--path", "/bench/refs.git/info/refs?service=git-upload-pack",
           "--mode", mode, "--conns", str(conns), "--requests", str(requests),
           "--expect-bytes", str((DATA / "refs.adv").stat().st_size)]
    r = subprocess.run(cmd, capture_output=True, timeout=600)
    try:
        out = json.loads(r.stdout.decode())
    except ValueError:
        raise RunFailed(f"client: {r.stderr.decode(errors='replace')[-400:]}")
    if r.returncode != 0 or out["errors"]:
        raise RunFailed(f"client: {out['errors']} errors, first: {out['first_error']}")
    return out


def run_ka1(c: Contender, cfg) -> dict:
    o = client(c, "keepalive", 1, cfg.ka_requests)
    return {"p50_ms": o["p50_us"] / 1e3, "p99_ms": o["p99_us"] / 1e3, "rate": o["rate"]}


def run_ka16(c: Contender, cfg) -> dict:
    o = client(c, "keepalive", 16, cfg.ka16_requests)
    return {"rate": o["rate"], "p50_ms": o["p50_us"] / 1e3, "p99_ms": o["p99_us"] / 1e3}


def run_ka100(c: Contender, cfg) -> dict:
    o = client(c, "keepalive", 100, cfg.ka100_requests)
    return {"rate": o["rate"], "p50_ms": o["p50_us"] / 1e3, "p99_ms": o["p99_us"] / 1e3}


def run_newconn(c: Contender, cfg) -> dict:
    o = client(c, "newconn", 1, cfg.newconn_requests)
    return {"p50_ms": o["p50_us"] / 1e3, "p99_ms": o["p99_us"] / 1e3, "rate": o["rate"]}


def run_push(c: Contender, cfg) -> dict:
    target = DATA / "repos/bench/push.git"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(DATA / "push-template.git", target, symlinks=True)
    dt = timed(["git", *c.git_opts(), "push", "-q", f"{BASE}/bench/push.git", "HEAD:refs/heads/bench-push"],
               c.env(), cwd=DATA / "push-src")
    head = git("-C", str(target), "rev-parse", "refs/heads/bench-push", capture_output=True).stdout.strip()
    want = git("-C", str(DATA / "push-src"), "rev-parse", "HEAD", capture_output=True).stdout.strip()
    if head != want:
        raise RunFailed("push did not update the ref")
    return {"wall_s": dt}


def run_clones50(c: Contender, cfg) -> dict:
    base = scratch(f"small-{c.name}")
    base.mkdir(parents=True)
    env = c.env()
    t0 = time.perf_counter()
    ps = [subprocess.Popen(["git", *c.git_opts(), "clone", "-q", f"{BASE}/bench/small.git", str(base / str(i))],
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
          for i in range(cfg.clones)]
    errs = []
    for p in ps:
        _, err = p.communicate(timeout=600)
        if p.returncode != 0:
            errs.append(err.decode(errors="replace").strip()[-300:])
    dt = time.perf_counter() - t0
    ok = cfg.clones - len(errs)
    shutil.rmtree(base)
    if errs:
        raise RunFailed(f"{len(errs)}/{cfg.clones} clones failed; first: {errs[0]}")
    return {"wall_s": dt, "ok": ok}


@dataclass
class Scenario:
    key: str
    title: str
    fn: object
    rounds_full: int
    rounds_quick: int
    # (metric, label, higher_is_better)
    metrics: list
    gb: float = 0.0  # bytes moved per run, for proxy CPU s/GB
    prefetch: tuple = ()  # data paths (under DATA) read into the page cache first
    default: bool = True  # run without --scenarios


SCENARIOS = [
    Scenario("clone_large", "large `git clone` (wall s)", run_clone_large, 5, 1,
             [("wall_s", "wall s", False)], prefetch=("repos/bench/large.git",)),
    Scenario("download", "1 GiB download, curl (MB/s)", run_download, 5, 1,
             [("mb_s", "MB/s", True)], gb=BIG_FILE / 1e9, prefetch=("big.bin",)),
    # ka1 and clones50 get more rounds: their targets sit at this VM's noise (a round's
    # p50 on one idle connection swings by ±40 %, a 2-second wall time by ±10 %).
    Scenario("ka1", "info/refs ×N, 1 keep-alive connection", run_ka1, 11, 1,
             [("p50_ms", "p50 ms", False), ("p99_ms", "p99 ms", False), ("rate", "req/s", True)]),
    Scenario("ka16", "info/refs, 16 keep-alive connections", run_ka16, 5, 1,
             [("rate", "req/s", True), ("p50_ms", "p50 ms", False), ("p99_ms", "p99 ms", False)]),
    Scenario("ka100", "info/refs, 100 keep-alive connections", run_ka100, 5, 1,
             [("rate", "req/s", True), ("p50_ms", "p50 ms", False), ("p99_ms", "p99 ms", False)],
             default=False),
    Scenario("newconn", "info/refs, new connection + TLS handshake each", run_newconn, 5, 1,
             [("p50_ms", "p50 ms", False), ("p99_ms", "p99 ms", False)]),
    Scenario("push", "50 MiB `git push` (wall s)", run_push, 5, 1, [("wall_s", "wall s", False)],
             prefetch=("push-src", "push-template.git")),
    Scenario("clones50", "50 concurrent small clones (wall s)", run_clones50, 9, 1,
             [("wall_s", "wall s", False)], prefetch=("repos/bench/small.git",)),
]


@dataclass
class Cfg:
    quick: bool
    ka_requests: int = 500
    ka16_requests: int = 250
    ka100_requests: int = 100
    newconn_requests: int = 500
    clones: int = 50
    perf: bool = False


@dataclass
class Result:
    runs: dict = field(default_factory=dict)  # contender -> list[dict | None] per round
    cpu: dict = field(default_factory=dict)  # contender -> list[float] per round
    rss: dict = field(default_factory=dict)  # contender -> MB (scenario peak)
    errors: list = field(default_factory=list)
    seconds: float = 0.0
    load: dict = field(default_factory=dict)
    client_cpu: dict = field(default_factory=dict)  # contender -> client processes' CPU s per round
    upstream_cpu: dict = field(default_factory=dict)  # contender -> nginx + fcgiwrap CPU s per round
    instructions: dict = field(default_factory=dict)  # --callgrind: contender -> role -> count


def attach_perf(c: Contender, out: Path, events: list[str]) -> subprocess.Popen:
    """`perf record` of `events` on a running contender, into `out`, until detach_perf."""
    out.parent.mkdir(exist_ok=True)
    p = subprocess.Popen(["perf", "record", "-q", *events, "-p", str(c.proc.pid), "-o", str(out)],
                         stdout=subprocess.DEVNULL, stderr=open(out.parent / "perf.log", "ab"))
    time.sleep(0.3)
    return p


def detach_perf(p: subprocess.Popen) -> None:
    p.send_signal(signal.SIGINT)
    try:
        p.wait(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def start_perf(key: str, r: int, c: Contender):
    """perf record (software cpu-clock sampling, DWARF call graphs) on gitgate for one run."""
    out = WORK / "perf" / f"{key}-{r + 1}.data"
    return attach_perf(c, out, ["-e", "cpu-clock", "-F", "1999", "--call-graph", "dwarf,16384"]), out


def stop_perf(perf) -> None:
    p, out = perf
    detach_perf(p)
    txt = out.with_suffix(".txt")
    with open(txt, "w") as f:
        subprocess.run(["perf", "report", "-i", str(out), "--stdio", "--no-children", "--sort", "dso,symbol",
                        "-g", "none", "--percent-limit", "0.5"], stdout=f, stderr=subprocess.DEVNULL)
    log(f"  perf profile of gitgate: {txt}")


# Requests one measured run of a scenario makes (for instructions per request).
REQUESTS_PER_RUN = {
    "ka1": lambda cfg: cfg.ka_requests,
    "ka16": lambda cfg: 16 * cfg.ka16_requests,
    "ka100": lambda cfg: 100 * cfg.ka100_requests,
    "newconn": lambda cfg: cfg.newconn_requests,
}


def on_our_crates(name: str) -> bool:
    """gitgate's builds and the byte relay built on the same crates."""
    return name.startswith("gitgate") or name == "rustls-relay"


def counted(name: str) -> bool:
    """Whether --callgrind counts this contender's instructions."""
    return CALLGRIND and on_our_crates(name)


def callgrind_wrapped(name: str, cmd: list[str]) -> list[str]:
    """`cmd`, run under callgrind (collection off until a measured round) when counted."""
    if not counted(name):
        return cmd
    CALLGRIND_DIR.mkdir(exist_ok=True)
    return ["valgrind", "--tool=callgrind", "--separate-threads=yes", "--instr-atstart=no",
            f"--callgrind-out-file={CALLGRIND_DIR / name}.%p", *cmd]


def start_trace(r: int, c: Contender) -> subprocess.Popen | None:
    """--syscall-timeline: perf record of the contender's socket system calls for one run."""
    if not (TIMELINE and c.proc and on_our_crates(c.name)):
        return None
    events = [arg for call in ("recvfrom", "writev", "epoll_wait") for side in ("enter", "exit")
              for arg in ("-e", f"syscalls:sys_{side}_{call}")]
    return attach_perf(c, TIMELINE_DIR / f"{c.name}.{r + 1}.perf", events)


def timeline_report() -> str:
    """Where one `ka1` request's time goes in each recorded proxy (bench/syscall_timeline.py)."""
    text = "\nOne `ka1` request's steps inside each proxy, from its system calls (`--syscall-timeline`):\n"
    by_contender: dict[str, list[str]] = {}
    for f in sorted(TIMELINE_DIR.glob("*.perf")):
        script = subprocess.run(["perf", "script", "-i", str(f)], capture_output=True, text=True)
        by_contender.setdefault(f.name.split(".")[0], []).extend(script.stdout.splitlines())
    for name, lines in by_contender.items():
        try:
            text += f"\n{name}: " + syscall_timeline.table(lines)
        except SystemExit as e:
            text += f"\n{name}: no timeline ({e})\n"
    return text


def callgrind_collect(pid: int, on: bool) -> None:
    sh(["callgrind_control", "-i", "on" if on else "off", str(pid)], capture_output=True)


def callgrind_instructions(name: str, pid: int) -> dict:
    """Dumps what callgrind counted in the measured rounds; instructions by thread role."""
    before = set(CALLGRIND_DIR.glob(f"{name}.{pid}.*"))
    sh(["callgrind_control", "-d", str(pid)], capture_output=True)
    roles = {"async workers": 0, "audit writer": 0, "other threads": 0}
    for f in sorted(set(CALLGRIND_DIR.glob(f"{name}.{pid}.*")) - before):
        text = f.read_text(errors="replace")
        total = re.search(r"^totals: (\d+)", text, re.M)
        if not total:
            continue
        if "audit::Writer" in text:
            role = "audit writer"
        elif "multi_thread::worker" in text:
            role = "async workers"
        else:
            role = "other threads"
        roles[role] += int(total.group(1))
    return roles


def prefetch(paths) -> None:
    """Reads data into the page cache: this VM's kernel (DAMON) pages out file data idle
    for ~30 s, and a first run that reads from disk would be an unfair one."""
    for rel in paths:
        root = DATA / rel
        files = [root] if root.is_file() else [f for f in root.rglob("*") if f.is_file()]
        for f in files:
            with open(f, "rb") as fh:
                while fh.read(8 << 20):
                    pass


def run_scenario(sc: Scenario, cfg: Cfg, contenders: list[str], rounds: int) -> Result:
    res = Result()
    t_start = time.monotonic()
    meter = LoadMeter()
    live: dict[str, Contender] = {"direct": Contender("direct", TLS / "upstream-ca.pem")}
    for name in contenders:
        if name != "direct":
            p, ca = start_proxy(name)
            live[name] = Contender(name, ca, p)
    try:
        prefetch(sc.prefetch)
        # Warm-up (not measured): proves each path works (including the injected
        # credential, which nginx checks) and lets each proxy mint its leaf certificate.
        for name in contenders:
            client(live[name], "keepalive", 1, 3)
        for r in range(rounds):
            order = contenders[r % len(contenders):] + contenders[:r % len(contenders)]
            for name in order:
                c = live[name]
                before = cpu_seconds(c.proc.pid) if c.proc else 0.0
                client0 = children_cpu_s()
                up0 = sum(cpu_seconds(p, reaped=True) for p in UPSTREAM_PIDS)
                perf = start_perf(sc.key, r, c) if cfg.perf and name == "gitgate" else None
                trace = start_trace(r, c)
                counted_now = c.proc is not None and counted(name)
                if counted_now:
                    callgrind_collect(c.proc.pid, True)
                try:
                    m = sc.fn(c, cfg)
                except (RunFailed, subprocess.TimeoutExpired) as e:
                    log(f"  {sc.key} round {r + 1} {name}: FAILED {e}")
                    res.errors.append(f"{name} round {r + 1}: {e}")
                    m = None
                finally:
                    if perf:
                        stop_perf(perf)
                    if trace:
                        detach_perf(trace)
                    if counted_now:
                        callgrind_collect(c.proc.pid, False)
                if c.proc:
                    res.cpu.setdefault(name, []).append(cpu_seconds(c.proc.pid) - before)
                res.client_cpu.setdefault(name, []).append(children_cpu_s() - client0)
                res.upstream_cpu.setdefault(name, []).append(
                    sum(cpu_seconds(p, reaped=True) for p in UPSTREAM_PIDS) - up0)
                res.runs.setdefault(name, []).append(m)
                if m:
                    log(f"  {sc.key} round {r + 1}/{rounds} {name:9s} " +
                        " ".join(f"{k}={v:.4g}" for k, v in m.items()))
        for name in contenders:
            c = live[name]
            if c.proc:
                res.rss[name] = peak_rss_mb(c.proc.pid)
            if c.proc and counted(name):
                res.instructions[name] = callgrind_instructions(name, c.proc.pid)
                log(f"  {name} instructions in the measured rounds: {res.instructions[name]}")
    finally:
        for name in contenders:
            if name != "direct":
                PROCS.stop(name)
    res.seconds = time.monotonic() - t_start
    res.load = meter.result()
    return res


# ------------------------------------------------------------------------ report


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def values(res: Result, name: str, metric: str) -> list:
    return [m[metric] if m else None for m in res.runs.get(name, [])]


def pair_diffs(res: Result, name: str, metric: str) -> list:
    return [a - d for a, d in zip(values(res, name, metric), values(res, "direct", metric))
            if a is not None and d is not None]


def pair_ratios(res: Result, name: str, metric: str) -> list:
    out = []
    for a, d in zip(values(res, name, metric), values(res, "direct", metric)):
        if a is not None and d:
            out.append(a / d)
    return out


def fmt(v, digits=3) -> str:
    if v is None:
        return "—"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.{digits}g}"


def ratio_fmt(v) -> str:
    if v is None:
        return "—"
    return f"{v:.2f}×" if v >= 0.1 else f"{v:.3f}×"


def openssl_speed(quick: bool) -> list[tuple[str, float]]:
    out = []
    for alg in ("aes-128-gcm", "aes-256-gcm", "chacha20-poly1305"):
        r = subprocess.run(["openssl", "speed", "-seconds", "1" if quick else "3", "-bytes", "16384",
                            "-evp", alg], capture_output=True, text=True)
        last = [l for l in r.stdout.splitlines() if l.strip()][-1].split()
        out.append((alg, float(last[-1].rstrip("k")) * 1000))  # bytes/s
    return out


def machine() -> dict:
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = os.getloadavg()
    mem = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) / 1024 / 1024
    return {"nproc": os.cpu_count(), "cpu": model, "mem_gib": round(mem, 1), "load": load,
            "kernel": os.uname().release}


def versions() -> dict:
    def first(cmd):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                return "(no commit)" if cmd[0] == "git" and "log" in cmd else "?"
            return (r.stdout or r.stderr).strip().splitlines()[0]
        except (OSError, IndexError):
            return "?"
    if os.environ.get("GITGATE_BUILT_FROM"):
        gg = os.environ["GITGATE_BUILT_FROM"]
    elif os.environ.get("GITGATE_BIN"):
        gg = f"binary {GITGATE_BIN} ({time.strftime('%Y-%m-%d %H:%M', time.gmtime(GITGATE_BIN.stat().st_mtime))})"
    else:
        gg = "work tree at " + first(["git", "-C", str(ROOT), "log", "-1", "--format=%h %cs"]) + (
            " + uncommitted changes" if subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                                                       capture_output=True, text=True).stdout.strip() else "")
    if "gitgate-b" in CONTENDERS:
        gg += (f"; gitgate-b: binary {os.environ.get('GITGATE_B_BIN') or GITGATE_BIN}, config "
               f"{os.environ.get('GITGATE_B_CONFIG') or 'conf/gitgate.yaml'}")
    return {
        "gitgate": gg,
        "nginx": first(["nginx", "-v"]),
        "squid": first(["squid", "-v"]),
        "tinyproxy": first(["tinyproxy", "-v"]),
        "mitmproxy": first([str(MITMDUMP), "--version"]),
        "git": first(["git", "--version"]),
        "curl": first(["curl", "--version"]),
        "openssl": first(["openssl", "version"]),
    }


def instruction_table(results: dict, cfg: Cfg) -> list[str]:
    """With --callgrind: what gitgate (and the byte relay) executed in the measured rounds, by
    thread role."""
    rows = []
    for sc in SCENARIOS:
        res = results.get(sc.key)
        if not res:
            continue
        per_run = REQUESTS_PER_RUN.get(sc.key)
        for name, roles in res.instructions.items():
            runs = len(res.runs.get(name, []))
            n = per_run(cfg) * runs if per_run else runs
            unit = "request" if per_run else "run"
            cells = [f"{v / n:,.0f}" for v in roles.values()]
            rows.append(f"| {sc.key} | {name} | " + " | ".join(cells) + f" | {sum(roles.values()) / n:,.0f} per {unit} |")
    if not rows:
        return []
    roles = " | ".join(next(iter(r for res in results.values() for r in res.instructions.values())))
    return ["Instructions executed in the measured rounds (valgrind callgrind, exact counts), "
            "per request (per run in scenarios that are not a request count):", "",
            f"| scenario | contender | {roles} | all threads |", "|---|---|---|---|---|---|", *rows, ""]


def report(results: dict, cfg: Cfg, contenders, speed, started, load_before) -> str:
    L = []
    m = machine()
    facts = data_facts()
    L.append(f"# gitgate benchmark — {'quick' if cfg.quick else 'full'} run")
    L.append("")
    L.append(f"- date: {started:%Y-%m-%d %H:%M UTC}; duration {sum(r.seconds for r in results.values()) / 60:.1f} min of measurement")
    L.append(f"- machine: {m['nproc']} cores, {m['cpu']}, {m['mem_gib']} GiB, Linux {m['kernel']}")
    other = sum(r.load.get("other_cpu_s", 0) for r in results.values())
    wall = sum(r.load.get("wall", 0) for r in results.values())
    L.append(f"- load average before: {load_before[0]:.2f} / {load_before[1]:.2f} / {load_before[2]:.2f}; "
             f"other processes used {other:.0f} CPU s during the {wall:.0f} s of measurement "
             f"({other / max(wall * (os.cpu_count() or 1), 1e-9):.0%} of the machine; per scenario below)")
    L.append(f"- data: large repo pack {facts['large_pack_bytes'] / 1e6:.0f} MB, small repo pack "
             f"{facts['small_pack_bytes'] / 1e3:.0f} kB, info/refs advertisement {facts['refs_adv_bytes']} B, "
             f"download {facts['big_bytes'] / 2**30:.0f} GiB")
    L.append(f"- requests: keep-alive 1 conn × {cfg.ka_requests}; 16 conns × {cfg.ka16_requests}; "
             + (f"100 conns × {cfg.ka100_requests}; " if "ka100" in results else "")
             + (f"gitgate-profiles: {PROFILES} profiles, connection i as profile i mod {PROFILES}; "
                if "gitgate-profiles" in contenders else "")
             + f"new connection × {cfg.newconn_requests}; {cfg.clones} concurrent clones")
    L.append("")
    L.append("Each cell: median over rounds, then (median of the per-round ratio to direct). "
             "Rounds interleave the contenders (A B C D E, rotated each round).")
    L.append("")
    L.append("| scenario | metric | rounds | " + " | ".join(contenders) + " |")
    L.append("|---|---|---|" + "---|" * len(contenders))
    for sc in SCENARIOS:
        if sc.key not in results:
            continue
        res = results[sc.key]
        rounds = len(res.runs.get("direct", []))
        for metric, label, _ in sc.metrics:
            cells = []
            for name in contenders:
                v = med(values(res, name, metric))
                if name == "direct" or v is None:
                    cells.append(fmt(v))
                else:
                    cells.append(f"{fmt(v)} ({ratio_fmt(med(pair_ratios(res, name, metric)))})")
            L.append(f"| {sc.title} | {label} | {rounds} | " + " | ".join(cells) + " |")
    L.append("")
    L.append("Proxy resources per scenario: CPU seconds per run (median; all threads and helper "
             "processes), and peak RSS (VmHWM, the proxy restarted fresh for each scenario).")
    L.append("")
    proxies = [c for c in contenders if c != "direct"]
    L.append("| scenario | " + " | ".join(f"{p} CPU s | {p} RSS MB" for p in proxies) + " |")
    L.append("|---|" + "---|---|" * len(proxies))
    for sc in SCENARIOS:
        if sc.key not in results:
            continue
        res = results[sc.key]
        cells = []
        for p in proxies:
            cpu = med(res.cpu.get(p, []))
            extra = f" ({cpu / sc.gb:.2f} s/GB)" if sc.gb and cpu is not None else ""
            cells += [f"{fmt(cpu)}{extra}", fmt(res.rss.get(p))]
        L.append(f"| {sc.key} | " + " | ".join(cells) + " |")
    L.append("")
    L.extend(instruction_table(results, cfg))
    L.extend(cpu_model(results, cfg, contenders))
    L.append("Was the machine quiet? CPU used by other processes while each scenario ran "
             "(all CPUs' user + system time minus this run's own processes), and hypervisor steal:")
    L.append("")
    L.append("| scenario | seconds | other processes, CPU s | share of the 2-core machine | steal s |".replace(
        "2-core", f"{os.cpu_count()}-core"))
    L.append("|---|---|---|---|---|")
    for sc in SCENARIOS:
        if sc.key in results and results[sc.key].load:
            ld = results[sc.key].load
            L.append(f"| {sc.key} | {ld['wall']:.0f} | {ld['other_cpu_s']:.1f} | {ld['other_share']:.0%} | {ld['steal_s']:.1f} |")
    L.append("")
    # Crypto floor.
    L.append("Physical reference (`openssl speed -evp ALG -bytes 16384`, one core):")
    L.append("")
    L.append("| cipher | one core | CPU s/GB for open + seal (a MITM proxy) | download ceiling on this machine |")
    L.append("|---|---|---|---|")
    for alg, bps in speed:
        per_gb = 2 * 1e9 / bps
        L.append(f"| {alg} | {bps / 1e6:,.0f} MB/s | {per_gb:.2f} | {m['nproc'] * bps / 4 / 1e6:,.0f} MB/s |")
    L.append("")
    L.append("A proxied TLS download costs four AEAD passes per byte on this one machine (nginx seals, "
             "the proxy opens and re-seals, curl opens) against two direct; the ceiling column is "
             "cores × speed / 4, i.e. crypto alone, before copies, syscalls and HTTP framing.")
    L.append("")
    L.extend(added_latency(results, contenders))
    L.append(targets(results, contenders))
    errs = [(k, e) for k, r in results.items() for e in r.errors]
    if errs:
        L.append("")
        L.append("Failed runs:")
        for k, e in errs:
            L.append(f"- {k}: {e}")
    return "\n".join(L) + "\n"


def cpu_model(results: dict, cfg: Cfg, contenders) -> list:
    """Where the CPU goes per unit of work (client, nginx, proxy) and what a CPU-bound
    machine predicts: throughput ~ cores / total CPU per unit, so a proxy costing P
    against a direct path costing D reaches at most D / (D + P) of direct."""
    L = []
    specs = [("download", "GB", BIG_FILE / 1e9, "mb_s", 0.80, "s/GB", 1.0),
             ("ka16", "request", 16 * cfg.ka16_requests, "rate", 0.60, "µs/request", 1e6)]
    for key, unit, count, metric, target, label, scale in specs:
        if key not in results:
            continue
        res = results[key]
        L.append(f"CPU per {unit} in `{key}` (medians; client = curl or the latency client, upstream = "
                 f"nginx + fcgiwrap), cores kept busy, and the CPU-bound prediction D / (D + P):")
        L.append("")
        L.append(f"| contender | client {label} | upstream {label} | proxy {label} | total {label} | cores busy | D/(D+P) |")
        L.append("|---|---|---|---|---|---|---|")
        d_total = None
        for name in contenders:
            cl, up = med(res.client_cpu.get(name, [])), med(res.upstream_cpu.get(name, []))
            px = med(res.cpu.get(name, [])) if name != "direct" else 0.0
            rate = med(values(res, name, metric))
            if cl is None or up is None or px is None or not rate:
                continue
            total = (cl + up + px) / count
            busy = total * (rate / 1000 if metric == "mb_s" else rate)
            if name == "direct":
                d_total = total
            model = f"{d_total / (d_total + px / count):.2f}×" if d_total and name != "direct" else "—"
            L.append(f"| {name} | {cl / count * scale:.3g} | {up / count * scale:.3g} | {px / count * scale:.3g} "
                     f"| {total * scale:.3g} | {busy:.2f} | {model} |")
        if d_total:
            budget = d_total * (1 / target - 1) * scale
            L.append("")
            L.append(f"Direct costs D = {d_total * scale:.3g} {label} here, so {target:.2f}× direct leaves a proxy "
                     f"at most {budget:.3g} {label} (if the machine is CPU-bound, as it is when cores busy ≈ {os.cpu_count()}).")
        L.append("")
    return L


def added_latency(results: dict, contenders) -> list:
    """For the many-connection scenarios: what each proxy adds to direct's p50 and p99
    (median over rounds of the same-round difference)."""
    L = []
    for key in ("ka16", "ka100"):
        if key not in results:
            continue
        res = results[key]
        rows = []
        for name in contenders:
            if name == "direct":
                continue
            cells = []
            for metric in ("p50_ms", "p99_ms"):
                v = med(pair_diffs(res, name, metric))
                cells.append("—" if v is None else f"{v:+.3f}")
            rows.append(f"| {name} | " + " | ".join(cells) + " |")
        L += [f"Added latency in `{key}` (ms over direct, median of same-round differences):", "",
              "| contender | p50 | p99 |", "|---|---|---|", *rows, ""]
    return L


def targets(results: dict, contenders) -> str:
    if "gitgate" not in contenders:
        return ""
    rows = []

    def ratio(key, metric):
        return med(pair_ratios(results[key], "gitgate", metric)) if key in results else None

    def add(what, value, ok, shown):
        rows.append(f"| {what} | {shown} | {'—' if value is None else ('met' if ok(value) else '**missed**')} |")

    v = ratio("download", "mb_s")
    add("1 GiB download ≥ 0.80× direct throughput", v, lambda x: x >= 0.80, (f"{v:.3f}×" if v is not None else "—"))
    if "download" in results:
        cpu = med(results["download"].cpu.get("gitgate", []))
        v = cpu / (BIG_FILE / 1e9) if cpu is not None else None
        add("proxy CPU ≤ 1.5 s/GB", v, lambda x: x <= 1.5, f"{fmt(v, 3)} s/GB")
    v = ratio("clone_large", "wall_s")
    add("large clone ≤ 1.15× direct wall", v, lambda x: x <= 1.15, (f"{v:.3f}×" if v is not None else "—"))
    v = ratio("ka16", "rate")
    add("16 keep-alive conns ≥ 0.6× direct request rate", v, lambda x: x >= 0.6, (f"{v:.3f}×" if v is not None else "—"))
    if "ka1" in results:
        v = med(pair_diffs(results["ka1"], "gitgate", "p50_ms"))
        add("p50 added latency ≤ 0.1 ms (1 keep-alive conn)", v, lambda x: x <= 0.1,
            f"{fmt(v * 1000 if v is not None else None, 3)} µs")
    v = ratio("newconn", "p50_ms")
    add("new connection per request p50 ≤ 1.2× direct", v, lambda x: x <= 1.2, (f"{v:.3f}×" if v is not None else "—"))
    if "clones50" in results:
        res = results["clones50"]
        fails = sum(1 for m in res.runs.get("gitgate", []) if m is None)
        v = ratio("clones50", "wall_s")
        add("50 concurrent clones all succeed", fails, lambda x: x == 0, f"{fails} failed runs")
        add("50 concurrent clones wall ≤ 1.05× direct", v, lambda x: x <= 1.05, (f"{v:.3f}×" if v is not None else "—"))
    peaks = [r.rss.get("gitgate") for r in results.values() if r.rss.get("gitgate") is not None]
    v = max(peaks) if peaks else None
    add("peak RSS ≤ 16 MB in every scenario", v, lambda x: x <= 16, f"{fmt(v, 3)} MB (max)")
    return "gitgate against the targets (same-run ratios):\n\n| target | gitgate | |\n|---|---|---|\n" + "\n".join(rows)


def machine_busy_s() -> float:
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / CLK_TCK


def wait_quiet(limit: float) -> None:
    """Waits until the machine has been under 10 % busy for 5 s in a row (or the limit)."""
    deadline, quiet_since = time.monotonic() + limit, None
    while time.monotonic() < deadline:
        b0 = machine_busy_s()
        time.sleep(1)
        busy = (machine_busy_s() - b0) / (os.cpu_count() or 1)
        if busy < 0.10:
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since >= 5:
                log("machine is quiet")
                return
        else:
            if quiet_since is not None or int(time.monotonic()) % 30 == 0:
                log(f"waiting for a quiet machine ({busy:.0%} busy)")
            quiet_since = None
    log(f"machine still busy after {limit:.0f} s; measuring anyway")


def own_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime + children_cpu_s()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="one round per scenario, fewer requests")
    ap.add_argument("--rounds", type=int, help="rounds per scenario (overrides the mode's)")
    ap.add_argument("--only", help="comma-separated contenders (direct is always included)")
    ap.add_argument("--scenarios", help="comma-separated scenario keys: " + ",".join(s.key for s in SCENARIOS))
    ap.add_argument("--out", help="also write the markdown report here")
    ap.add_argument("--ka-requests", type=int, help="requests on the one keep-alive connection (500)")
    ap.add_argument("--ka16-requests", type=int, help="requests per connection with 16 connections")
    ap.add_argument("--ka100-requests", type=int, help="requests per connection with 100 connections")
    ap.add_argument("--newconn-requests", type=int, help="requests, each on a new connection")
    ap.add_argument("--nginx-workers", type=int, default=2)
    ap.add_argument("--perf", action="store_true",
                    help="profile gitgate's runs with perf record (reports under WORK/perf/); skews its timings")
    ap.add_argument("--callgrind", action="store_true",
                    help="count gitgate's instructions (valgrind callgrind) in the measured rounds, "
                         "by thread; its timings are then meaningless")
    ap.add_argument("--syscall-timeline", action="store_true",
                    help="with --scenarios ka1: record gitgate's (and rustls-relay's) socket system calls "
                         "with perf during their rounds and report where one request's time goes")
    ap.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                    help="before measuring, wait up to this long for the machine to be idle")
    args = ap.parse_args()

    cfg = Cfg(quick=args.quick, perf=args.perf)
    global CALLGRIND
    CALLGRIND = args.callgrind
    if CALLGRIND and not (shutil.which("valgrind") and shutil.which("callgrind_control")):
        raise SystemExit("--callgrind needs valgrind (apt-get install valgrind)")
    global TIMELINE
    TIMELINE = args.syscall_timeline
    if TIMELINE and (args.callgrind or args.perf or args.scenarios != "ka1"):
        raise SystemExit("--syscall-timeline measures ka1 alone, without --callgrind or --perf: "
                         "use --scenarios ka1")
    if TIMELINE and not shutil.which("perf"):
        raise SystemExit("--syscall-timeline needs perf (apt-get install linux-perf)")
    if TIMELINE:
        shutil.rmtree(TIMELINE_DIR, ignore_errors=True)
    if args.quick:
        cfg.ka_requests, cfg.ka16_requests, cfg.ka100_requests, cfg.newconn_requests = 500, 100, 40, 200
    for k in ("ka_requests", "ka16_requests", "ka100_requests", "newconn_requests"):
        if getattr(args, k):
            setattr(cfg, k, getattr(args, k))
    contenders = CONTENDERS
    if args.only:
        wanted = set(args.only.split(",")) | {"direct"}
        contenders = [c for c in CONTENDERS + OPTIONAL_CONTENDERS if c in wanted]
    scenarios = [s for s in SCENARIOS if s.default]
    if args.scenarios:
        keys = args.scenarios.split(",")
        scenarios = [s for s in SCENARIOS if s.key in keys]

    for name in contenders:
        if name != "direct" and not port_free(PORTS[name], ADDRS.get(name, "127.0.0.1")):
            raise SystemExit(f"port {PORTS[name]} ({name}) is in use")
    if not port_free(443):
        raise SystemExit("port 443 is in use (the local github.com needs it)")

    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = os.getloadavg()
    gen_tls()
    gen_data()
    RUN.mkdir(parents=True, exist_ok=True)
    for f in RUN.glob("*.log"):
        f.unlink()
    SCRATCH.mkdir(parents=True, exist_ok=True)

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    if args.wait_quiet:
        wait_quiet(args.wait_quiet)
    results: dict[str, Result] = {}
    try:
        start_upstream(args.nginx_workers)
        log(f"contenders: {', '.join(contenders)}; work dir {WORK}")
        for sc in scenarios:
            rounds = args.rounds or (sc.rounds_quick if args.quick else sc.rounds_full)
            log(f"scenario {sc.key}: {sc.title}, {rounds} round(s)")
            results[sc.key] = run_scenario(sc, cfg, contenders, rounds)
            ld = results[sc.key].load
            log(f"scenario {sc.key} done in {results[sc.key].seconds:.0f} s; other processes used "
                f"{ld['other_cpu_s']:.1f} CPU s ({ld['other_share']:.0%} of the machine), steal {ld['steal_s']:.1f} s")
    finally:
        PROCS.stop_all()
        shutil.rmtree(SCRATCH, ignore_errors=True)
    log("openssl speed")
    speed = openssl_speed(args.quick)
    text = report(results, cfg, contenders, speed, started, load_before)
    if TIMELINE:
        text += timeline_report()
    v = versions()
    text += "\nVersions: " + "; ".join(f"{k} {val}" for k, val in v.items()) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    (WORK / "last-report.md").write_text(text)
    raw = json.dumps(
        {k: {"runs": r.runs, "cpu": r.cpu, "rss": r.rss, "errors": r.errors, "seconds": r.seconds, "load": r.load,
             "client_cpu": r.client_cpu, "upstream_cpu": r.upstream_cpu}
         for k, r in results.items()}, indent=1)
    if args.out:
        Path(args.out).with_suffix(".json").write_text(raw)
    (WORK / "last-results.json").write_text(raw)
    return 1 if any(r.errors for r in results.values()) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        PROCS.stop_all()
