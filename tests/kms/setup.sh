#!/usr/bin/env bash
# Installs the local KMS emulator (moto, from PyPI) that the AWS KMS signer tests use,
# into target/moto-venv. Idempotent. Needs python3 with venv (Debian: python3-venv).
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=target/moto-venv
if ! "$venv/bin/python" -c 'import moto.server, moto.kms, boto3, werkzeug, flask_cors' 2>/dev/null; then
    python3 -m venv "$venv"
    # moto's server needs flask and flask-cors only; its `server` extra would bring every
    # service's dependencies (twice the download, twice the time).
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'moto>=5.1,<6' 'flask>=3,<4' 'flask-cors>=4,<7'
fi
"$venv/bin/python" -c 'import moto; print("moto", moto.__version__, "in", "'"$venv"'")'
