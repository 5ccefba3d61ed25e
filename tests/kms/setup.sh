#!/usr/bin/env bash
# Installs the local KMS emulator (moto, from PyPI) that the AWS KMS signer tests use,
# into target/moto-venv. Idempotent. Needs python3 with venv (Debian: python3-venv).
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=target/moto-venv
if ! "$venv/bin/python" -c 'import moto.server, boto3, werkzeug' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'moto[server]>=5.1,<6'
fi
"$venv/bin/python" -c 'import moto; print("moto", moto.__version__, "in", "'"$venv"'")'
