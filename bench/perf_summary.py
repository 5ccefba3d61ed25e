#!/usr/bin/env python3
"""Summarise a `perf record --call-graph dwarf` profile of gitgate by subsystem.

    bench/perf_summary.py WORK/perf/ka16-1.data

Prints the share of samples per bucket (each sample goes to the first bucket that has a
matching frame in its stack), then the top self symbols. Made for the profiles that
`bench/run.sh --perf` records (software cpu-clock sampling; no hardware counters in VMs).
"""

import collections
import re
import subprocess
import sys

# Each sample goes to the first bucket with a matching frame anywhere in its stack
# (so the shares add up to 100 %). Order matters: causes before mechanisms.
BUCKETS = [
    ("token file check per request (tokio::fs -> spawn_blocking)", r"tokio::fs::|static_source"),
    ("blocking-pool threads (idle wait, wake-ups)", None),  # special: see classify()
    ("logging (tracing_subscriber format + write)", r"tracing_subscriber"),
    ("leaf certificate minting", r"gitgate_certs|rcgen"),
    ("TLS handshake (rustls/ring key exchange, signatures)", r"handshake|ring_core_.*(x25519|p256|ecdsa|ecp_nistz256)"),
    ("socket writes (incl. the kernel delivering to the peer)", r"__GI___writev|__libc_write|\bwritev\b|sock_write_iter|tcp_sendmsg"),
    ("socket reads", r"__libc_read|__libc_recv|sock_read_iter|tcp_recvmsg"),
    ("epoll_wait", r"epoll_wait"),
    ("tokio worker park/unpark (futex, context switches)", r"do_futex|\b__schedule\b"),
    ("AES-GCM record crypto (ring)", r"ring_core_.*(aes|gcm|ghash)"),
    ("rustls record layer, buffers", r"rustls"),
    ("hyper-util legacy client + pool (upstream leg)", r"hyper_util::client::legacy"),
    ("hyper HTTP/1 server (client leg)", r"hyper::"),
    ("gitgate policy/classify", r"gitgate_policy"),
    ("malloc/free (elsewhere)", r"\b(malloc|free|_int_malloc|_int_free|realloc|cfree)\b"),
]


def classify(stack: list[str]) -> str:
    for name, pattern in BUCKETS:
        if pattern is None:
            if any("blocking::pool::Inner::run" in f for f in stack) and not any(
                    "multi_thread::worker" in f for f in stack):
                return name
            continue
        rx = re.compile(pattern)
        if any(rx.search(f) for f in stack):
            return name
    return "other"


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = subprocess.run(["perf", "script", "-i", sys.argv[1], "-F", "ip,sym"],
                         capture_output=True, text=True, errors="replace").stdout
    samples, stack = [], []
    for line in out.splitlines():
        if not line.strip():
            if stack:
                samples.append(stack)
            stack = []
            continue
        parts = line.strip().split(None, 1)
        stack.append(parts[1] if len(parts) > 1 else parts[0])
    if stack:
        samples.append(stack)
    n = len(samples)
    if not n:
        sys.exit("no samples")
    print(f"{n} samples ({sys.argv[1]})\n")
    counts = collections.Counter(classify(s) for s in samples)
    print("| where gitgate's CPU goes (each sample counted once) | share |\n|---|---|")
    for name in [b[0] for b in BUCKETS] + ["other"]:
        if counts[name]:
            print(f"| {name} | {100 * counts[name] / n:.1f} % |")
    selfs = collections.Counter(s[0] for s in samples)
    print("\nTop self symbols:\n")
    for sym, c in selfs.most_common(15):
        print(f"  {100 * c / n:5.1f} %  {sym[:150]}")


if __name__ == "__main__":
    main()
