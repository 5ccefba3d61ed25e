#!/usr/bin/env python3
"""Where one small request's time goes inside a proxy, from its system calls.

Reads `perf script` output of a proxy recorded with the recvfrom, writev and epoll_wait
enter/exit tracepoints during `ka1` (one keep-alive connection, one request at a time),
and prints the median of each step of a request, in microseconds:

    read request from client -> write it upstream        (the proxy's work on the request)
    writev upstream                                      (the kernel: loopback delivery)
    wrote upstream -> read the answer                    (nginx's turnaround and the wake-ups)
    read answer -> write it to the client                (the proxy's work on the answer)
    writev client                                        (the kernel)
    wrote client -> next request read                    (the client's turnaround)

The connection that receives the larger writes is the client's (answers are larger than
requests in `ka1`). `bench/run.sh --scenarios ka1 --syscall-timeline` records and reports
it; by hand:

    perf script -i gitgate.perf | bench/syscall_timeline.py
"""
import re
import statistics
import sys
from collections import defaultdict

EVENT = re.compile(r"\s*\S+\s+(\d+)\s+\[\d+\]\s+([\d.]+):\s+syscalls:sys_(enter|exit)_(\w+):\s*(.*)")
STEPS = [
    ("request", "read request from client -> write it upstream"),
    ("write_up", "writev upstream (kernel)"),
    ("upstream", "wrote upstream -> read the answer"),
    ("answer", "read answer -> write it to the client"),
    ("write_client", "writev client (kernel)"),
    ("client", "wrote client -> next request read"),
]


def calls(lines):
    """(start µs, end µs, syscall, fd, return value), in start order."""
    open_calls, done = {}, []
    for line in lines:
        m = EVENT.match(line)
        if not m:
            continue
        tid, t, side, name, args = m.groups()
        t = float(t) * 1e6
        if side == "enter":
            fd = re.search(r"fd: 0x([0-9a-f]+)", args)
            open_calls[(tid, name)] = (t, int(fd.group(1), 16) if fd else None)
        elif (tid, name) in open_calls:
            start, fd = open_calls.pop((tid, name))
            ret = int(args.strip(), 16) if args.strip().startswith("0x") else -1
            # Errors (-EAGAIN, ...) come as 64-bit two's complement.
            done.append((start, t, name, fd, ret - (1 << 64) if ret >= 1 << 63 else ret))
    return sorted(done)


def steps(done):
    written = defaultdict(list)
    for _, _, name, fd, ret in done:
        if name == "writev" and ret > 0:
            written[fd].append(ret)
    if len(written) < 2:
        raise SystemExit("syscall_timeline: no writes on two connections (client and upstream) were recorded")
    by_size = sorted(written, key=lambda fd: statistics.median(written[fd]), reverse=True)
    client, upstream = by_size[0], by_size[1]
    out = defaultdict(list)
    cycle = {}
    for start, end, name, fd, ret in done:
        if name == "recvfrom" and ret <= 0:
            continue  # nothing read (EAGAIN) or the peer closed
        if name == "recvfrom" and fd == client:
            if "wrote_client" in cycle:
                out["client"].append(end - cycle["wrote_client"])
            cycle = {"read_request": end}
        elif name == "writev" and fd == upstream and "read_request" in cycle and "wrote_up" not in cycle:
            out["request"].append(start - cycle["read_request"])
            out["write_up"].append(end - start)
            cycle["wrote_up"] = end
        elif name == "recvfrom" and fd == upstream and "wrote_up" in cycle and "read_answer" not in cycle:
            out["upstream"].append(end - cycle["wrote_up"])
            cycle["read_answer"] = end
        elif name == "writev" and fd == client and "read_answer" in cycle and "wrote_client" not in cycle:
            out["answer"].append(start - cycle["read_answer"])
            out["write_client"].append(end - start)
            cycle["wrote_client"] = end
    return client, upstream, out


def table(lines) -> str:
    """The markdown table of the steps' medians and means, from `perf script` lines."""
    client, upstream, out = steps(calls(lines))
    rows = [f"client fd {client}, upstream fd {upstream}, {len(out['request'])} requests", "",
            "| step | p50 µs | mean µs |", "|---|---|---|"]
    rows += [f"| {label} | {statistics.median(out[key]):.0f} | {statistics.mean(out[key]):.1f} |"
             for key, label in STEPS if out[key]]
    return "\n".join(rows) + "\n"


def main():
    print(table(sys.stdin), end="")


if __name__ == "__main__":
    main()
