#!/usr/bin/env bash
# Run a command in a throwaway Linux network namespace whose only way out is gitgate.
#
#   sudo examples/netns/sandbox.sh [--gitgate BIN] [--config FILE] [--user USER] [--name NETNS] [-- COMMAND...]
#
# What it does, in order:
#   1. `gitgate check` on the config (fail fast on a broken config).
#   2. Creates the network namespace NETNS (default gitgate-sbx-PID) and a veth pair: the
#      host end gets the `listen:` address of the config (e.g. 10.200.0.1/30), the
#      sandbox end the next address (10.200.0.2/30). The namespace gets no default route
#      and no IPv6, so the only address it can reach is the host end of the veth. When
#      `nft` is installed, a firewall inside the namespace narrows that to gitgate's port.
#   3. Starts gitgate (outside the namespace) and waits until it listens.
#   4. Runs COMMAND (default: an interactive shell) inside the namespace as the
#      unprivileged USER (default: nobody), with only the environment `gitgate env`
#      prints: HTTPS_PROXY pointing at gitgate and the CA variables pointing at a copy of
#      gitgate's CA certificate. An unprivileged user cannot change the namespace's
#      routes or firewall.
#   5. On exit (also on Ctrl-C or an error): stops gitgate and deletes the namespace
#      (which deletes the veth pair) and the scratch directory. A TERM signal takes
#      effect once COMMAND has ended. If the script itself is killed (SIGKILL), gitgate
#      and COMMAND die with it, and `ip netns delete NETNS` removes what is left.
#
# Exit status: COMMAND's, or 2 for a usage or setup error.
#
# Environment: GITGATE (the binary, instead of --gitgate), RUST_LOG (gitgate's log
# filter), GITGATE_SANDBOX_VERBOSE=1 (print gitgate's log when the command finishes).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

say() { printf 'sandbox.sh: %s\n' "$*" >&2; }
die() {
    say "error: $*"
    exit 2
}
usage() {
    sed -n '2,4p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

gitgate="${GITGATE:-}"
config="$here/gitgate.yaml"
user="nobody"
netns="gitgate-sbx-$$"
while (($#)); do
    case "$1" in
    -g | --gitgate) gitgate="${2:?--gitgate needs a path}"; shift 2 ;;
    -c | --config) config="${2:?--config needs a file}"; shift 2 ;;
    -u | --user) user="${2:?--user needs a user name}"; shift 2 ;;
    -n | --name) netns="${2:?--name needs a name}"; shift 2 ;;
    -h | --help) usage ;;
    --) shift; break ;;
    -*) die "unknown option $1 (try --help)" ;;
    *) break ;;
    esac
done
if (($# == 0)); then
    set -- bash --noprofile --norc -i
fi

# --- preconditions --------------------------------------------------------------------
[[ $(id -u) == 0 ]] || die "must run as root (it creates a network namespace); try sudo"
command -v ip >/dev/null || die "the ip command (iproute2) is not installed"
command -v setpriv >/dev/null || die "setpriv (util-linux) is not installed"
if [[ -z $gitgate ]]; then
    if [[ -x $repo/target/release/gitgate ]]; then
        gitgate="$repo/target/release/gitgate"
    elif command -v gitgate >/dev/null; then
        gitgate="$(command -v gitgate)"
    else
        die "no gitgate binary: build it (cargo build --release) or pass --gitgate BIN"
    fi
fi
[[ -x $gitgate ]] || die "$gitgate is not an executable"
[[ -f $config ]] || die "no config file $config"
config="$(realpath "$config")"
uid="$(id -u "$user" 2>/dev/null)" || die "no such user $user"
gid="$(id -g "$user")"

if ! "$gitgate" check --config "$config" >/dev/null; then
    die "gitgate check refused $config (see above)"
fi

# The host end of the veth is gitgate's listen address; it must be the first address
# of a /30 (x.y.z.1, .5, .9, …) so the sandbox end is the next one.
listen="$(sed -n 's/^listen:[[:space:]]*"\{0,1\}\([0-9.]*\):\([0-9]*\)"\{0,1\}[[:space:]]*\(#.*\)\{0,1\}$/\1 \2/p' "$config")"
read -r host_ip _ <<<"$listen" || true
[[ -n ${host_ip:-} ]] || die "$config has no 'listen: A.B.C.D:PORT' line (an IPv4 address, not a name)"
IFS=. read -r o1 o2 o3 o4 <<<"$host_ip"
if [[ $host_ip == 127.* || $host_ip == 0.0.0.0 ]] || (((o4 & 3) != 1)); then
    die "listen must be the host end of a /30 such as 10.200.0.1 (got $host_ip): gitgate listens on the veth, not on loopback or every interface"
fi
sandbox_ip="$o1.$o2.$o3.$((o4 + 1))"
if ip -o addr show | grep -q "inet $host_ip/"; then
    die "$host_ip is already configured on this host (another sandbox running?): pick another /30 in $config"
fi
if ip netns list | awk '{print $1}' | grep -qx -- "$netns"; then
    die "network namespace $netns already exists"
fi

# Interface names are at most 15 characters.
suffix="$(printf '%s' "$netns" | cksum | cut -d' ' -f1)"
veth_host="gg${suffix: -8}h"
veth_sandbox="gg${suffix: -8}s"

work="$(mktemp -d /tmp/gitgate-sandbox.XXXXXX)"
chmod 0755 "$work"
gitgate_pid=""

# shellcheck disable=SC2329 # invoked by the EXIT trap
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if [[ -n $gitgate_pid ]]; then
        kill -TERM "$gitgate_pid" 2>/dev/null || true
        wait "$gitgate_pid" 2>/dev/null || true
    fi
    if [[ ${GITGATE_SANDBOX_VERBOSE:-} == 1 && -f $work/gitgate.log ]]; then
        say "gitgate's log:"
        sed 's/^/  | /' "$work/gitgate.log" >&2
    fi
    ip netns delete "$netns" 2>/dev/null || true
    ip link delete "$veth_host" 2>/dev/null || true
    rm -rf "$work"
    say "removed network namespace $netns"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- the namespace ----------------------------------------------------------------------
say "creating network namespace $netns: sandbox $sandbox_ip/30 <-> host $host_ip/30 ($veth_sandbox <-> $veth_host)"
ip netns add "$netns"
ip link add "$veth_host" type veth peer name "$veth_sandbox"
ip link set "$veth_sandbox" netns "$netns"
sysctl -q -w "net.ipv6.conf.$veth_host.disable_ipv6=1" >/dev/null 2>&1 || true
ip addr add "$host_ip/30" dev "$veth_host"
ip link set "$veth_host" up
ip netns exec "$netns" sysctl -q -w net.ipv6.conf.all.disable_ipv6=1 >/dev/null 2>&1 || true
ip netns exec "$netns" sysctl -q -w net.ipv6.conf.default.disable_ipv6=1 >/dev/null 2>&1 || true
ip -n "$netns" addr add "$sandbox_ip/30" dev "$veth_sandbox"
ip -n "$netns" link set lo up
ip -n "$netns" link set "$veth_sandbox" up
# Deliberately no default route: nothing but $host_ip/30 is reachable.

if [[ $(sysctl -n net.ipv4.ip_forward 2>/dev/null || echo 0) == 1 ]]; then
    say "note: this host forwards IPv4 packets; the sandbox has no route to use it, and its unprivileged user cannot add one"
fi

# --- gitgate ----------------------------------------------------------------------------
say "starting gitgate: $gitgate run --config $config"
# --pdeathsig: gitgate goes too if this script is killed before its trap can run.
RUST_LOG="${RUST_LOG:-info}" setpriv --pdeathsig TERM "$gitgate" run --config "$config" \
    >"$work/gitgate.log" 2>&1 &
gitgate_pid=$!
proxy_addr=""
for _ in $(seq 1 200); do
    proxy_addr="$(sed -n 's/.*: listening addr=\([^ ]*\).*/\1/p' "$work/gitgate.log" | head -n1)"
    [[ -n $proxy_addr ]] && break
    if ! kill -0 "$gitgate_pid" 2>/dev/null; then
        sed 's/^/  | /' "$work/gitgate.log" >&2
        gitgate_pid=""
        die "gitgate exited before it was ready"
    fi
    sleep 0.05
done
if [[ -z $proxy_addr ]]; then
    sed 's/^/  | /' "$work/gitgate.log" >&2
    die "gitgate did not report its listening address within 10s"
fi
proxy_port="${proxy_addr##*:}"
say "gitgate is listening on $proxy_addr (pid $gitgate_pid)"

# Only gitgate's port on the host end: without this, any other service listening on all
# of the host's addresses would be reachable at $host_ip too.
if command -v nft >/dev/null; then
    ip netns exec "$netns" nft -f - <<EOF
table inet gitgate_sandbox {
  chain output {
    type filter hook output priority 0; policy drop;
    oifname "lo" accept
    ip daddr $host_ip tcp dport $proxy_port accept
    meta l4proto tcp reject with tcp reset
    reject
  }
}
EOF
    say "firewall: the sandbox may connect to $host_ip:$proxy_port and nothing else"
else
    say "warning: nft is not installed: every port of $host_ip is reachable from the sandbox, so is any other service listening on all of this host's addresses (install nftables to allow gitgate's port only)"
fi

# --- the sandbox ------------------------------------------------------------------------
# gitgate's CA, readable by the sandbox user wherever the config keeps it.
ca_source="$("$gitgate" env --config "$config" --format dotenv --proxy-url "http://$proxy_addr" | sed -n 's/^GIT_SSL_CAINFO=//p')"
install -m 0644 "$ca_source" "$work/ca.pem"
mkdir -p "$work/home"
chown "$uid:$gid" "$work/home"
mapfile -t sandbox_env < <("$gitgate" env --config "$config" --format dotenv \
    --proxy-url "http://$proxy_addr" --ca-file "$work/ca.pem")
say "sandbox environment: HTTPS_PROXY=http://$proxy_addr, CA $work/ca.pem, HOME $work/home, user $user"
say "running in $netns: $*"

set +e
ip netns exec "$netns" setpriv --reuid="$uid" --regid="$gid" --clear-groups --no-new-privs --pdeathsig KILL \
    env -i -C "$work/home" PATH="$PATH" LANG="${LANG:-C.UTF-8}" TERM="${TERM:-dumb}" HOME="$work/home" \
    USER="$user" "${sandbox_env[@]}" "$@"
status=$?
set -e
say "command exited with status $status"
exit "$status"
