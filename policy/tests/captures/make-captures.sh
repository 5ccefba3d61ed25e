#!/usr/bin/env bash
# Regenerates the receive-pack request bodies (*.bin) in this directory from real
# `git push`es against `git http-backend`, recorded by record_server.py.
#
#   policy/tests/captures/make-captures.sh   # needs git and python3; gpg for signed.bin
#   NO_GPG=1 policy/tests/captures/make-captures.sh   # signed.bin without gpg
#
# Author, committer and dates are fixed, so all bodies except signed.bin (whose certificate
# carries the push time and a server nonce) come out byte-identical on every run with the
# same git version. signed.bin is hand-built from the protocol reference (§3.4) when gpg
# is missing.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
server_pid=
cleanup() {
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

export HOME=$work/home GIT_CONFIG_NOSYSTEM=1 GIT_TERMINAL_PROMPT=0
export GIT_AUTHOR_NAME=Test GIT_AUTHOR_EMAIL=test@example.com
export GIT_COMMITTER_NAME=Test GIT_COMMITTER_EMAIL=test@example.com
export GIT_AUTHOR_DATE='2025-01-01T00:00:00Z' GIT_COMMITTER_DATE='2025-01-01T00:00:00Z'
mkdir -p "$HOME" "$work/srv/owner" "$work/spool"
git config --global init.defaultBranch main
git config --global advice.detachedHead false

echo "git: $(git --version)" >&2

# Server repositories: push options, signed pushes and shallow updates enabled.
for format in sha1 sha256; do
    repo=$work/srv/owner/$format.git
    git init -q --bare --object-format=$format "$repo"
    git -C "$repo" config receive.advertisePushOptions true
    git -C "$repo" config receive.certNonceSeed gitgate-captures
    git -C "$repo" config receive.shallowUpdate true
done

python3 "$here/record_server.py" "$work/srv" "$work/spool" "$work/port" &
server_pid=$!
for _ in $(seq 50); do [ -f "$work/port" ] && break; sleep 0.1; done
base=http://127.0.0.1:$(cat "$work/port")/owner

# take NAME...: move the bodies recorded since the last call to NAME.bin, in order.
take() {
    local files=("$work"/spool/*.bin)
    if [ ${#files[@]} -ne $# ] || [ ! -e "${files[0]}" ]; then
        echo "expected $# recorded bodies for $*, got: ${files[*]}" >&2
        exit 1
    fi
    for name in "$@"; do
        mv "${files[0]}" "$here/$name.bin"
        files=("${files[@]:1}")
        echo "  $name.bin: $(wc -c <"$here/$name.bin") bytes" >&2
    done
}

commit() { # commit FILE CONTENT: one commit with a deterministic tree
    echo "$2" >"$1"
    git add "$1"
    git commit -q -m "$1: $2"
}

client=$work/client
git clone -q "$base/sha1.git" "$client" 2>/dev/null
cd "$client"

commit a.txt one
git push -q origin main
take create-main

commit a.txt two
git push -q origin main
take fast-forward

git tag -a -m "version 1" v1
git push -q origin HEAD:refs/heads/feature/b1 v1
take new-branch-and-tag

commit b.txt three
git push -q -o ci.skip -o "note=hello world" origin HEAD:refs/heads/with-options
take push-options

git push -q --atomic origin main HEAD:refs/heads/atomic-a HEAD:refs/tags/t2
take atomic

git push -q -o ci.skip -o "note=hello world" --atomic origin \
    HEAD:refs/heads/newbranch :refs/heads/feature/b1 HEAD:refs/tags/t3
take atomic-options-delete

git push -q origin :refs/heads/newbranch :refs/tags/t3
take delete-only

git push -q -o ci.skip origin :refs/heads/with-options
take delete-with-options

# A large push: git first sends the `0000` probe, then the body with chunked coding.
head -c 150000 /dev/urandom >big.bin
git add big.bin
git commit -q -m big
git -c http.postBuffer=65536 push -q origin HEAD:refs/heads/big
mv "$(ls "$work"/spool/*.bin | head -1)" "$here/probe.bin"
rm -f "$work"/spool/*.bin
echo "  probe.bin: $(wc -c <"$here/probe.bin") bytes" >&2
git reset -q --hard HEAD~1

# From a shallow clone.
git clone -q --depth 1 "$base/sha1.git" "$work/shallow" 2>/dev/null
(
    cd "$work/shallow"
    commit c.txt shallow
    git push -q origin HEAD:refs/heads/from-shallow
)
take shallow

# SHA-256.
git clone -q "$base/sha256.git" "$work/client256" 2>/dev/null
(
    cd "$work/client256"
    commit a.txt sha256
    git push -q origin main
    take sha256-create
    commit a.txt sha256-two
    git push -q origin main HEAD:refs/heads/feature
    take sha256-update
)

# Signed push (push certificate).
if [ -z "${NO_GPG:-}" ] && command -v gpg >/dev/null; then
    export GNUPGHOME=$work/gnupg
    mkdir -m 700 "$GNUPGHOME"
    gpg --batch --quiet --passphrase '' --quick-gen-key 'Test <test@example.com>' ed25519 sign never
    commit d.txt signed
    git -c user.signingkey=test@example.com push -q --signed -o opt1 origin main
    take signed
    gpgconf --kill gpg-agent 2>/dev/null || true
else
    echo "  no gpg (or NO_GPG set): hand-building signed.bin from the protocol reference" >&2
    pkt() { printf '%04x%s' $((${#1} + 4)) "$1"; }
    {
        printf '0064push-cert\0 report-status-v2 side-band-64k quiet push-options object-format=sha1 agent=git/2.47.3'
        pkt $'certificate version 0.1\n'
        pkt $'pusher T <a@b.c> 1795318310 +0000\n'
        pkt $'pushee http://127.0.0.1:18901/owner/repo.git/\n'
        pkt $'nonce 1795318310-f03106b1331d5d41cca59f3aa120d61b94250506\n'
        pkt $'push-option opt1\n'
        pkt $'\n'
        pkt $'0bbd9069a1a5d9c9a8bbc82c2999417b64a8e731 fb61a9fbc3763a91831cddf7735382146a5cac1a refs/heads/main\n'
        pkt $'-----BEGIN PGP SIGNATURE-----\n'
        pkt $'\n'
        pkt $'iHUEABYKAB0WIQQAAAAAAAAAAAAAAAAAAAAAAAAAAAUCZ0000AAoJEAAAAAAAAAAA\n'
        pkt $'-----END PGP SIGNATURE-----\n'
        pkt $'push-cert-end\n'
        printf '0000'
        pkt 'opt1'
        printf '0000'
        # An empty pack: header (version 2, no objects) and its SHA-1.
        python3 -c 'import hashlib, sys; h = b"PACK\0\0\0\x02\0\0\0\0"; sys.stdout.buffer.write(h + hashlib.sha1(h).digest())'
    } >"$here/signed.bin"
fi
