#!/usr/bin/env bash
# Runs Kontor's whole test suite: formatting, lints, unit, conformance (SQLite and
# PostgreSQL), integration and process-level tests. Installs and starts what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/kontor-target}"
export KONTOR_TEST_DATABASE_URL="${KONTOR_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_updated=""
need_pkg() { # need_pkg COMMAND PACKAGE...
  command -v "$1" >/dev/null 2>&1 && return 0
  echo "==> installing ${*:2}"
  [ -n "$apt_updated" ] || { as_root apt-get update -qq; apt_updated=1; }
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${@:2}" >/dev/null
}

# PostgreSQL: install and start a local cluster if none answers.
if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  need_pkg pg_ctlcluster postgresql postgresql-client
  ver=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n1)
  if [ -n "$ver" ]; then
    as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
  fi
  for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
  # Local test clusters use trust authentication for the postgres user over TCP.
  if ! psql -h 127.0.0.1 -U postgres -d postgres -tAc 'select 1' >/dev/null 2>&1 && [ -n "$ver" ]; then
    hba=/etc/postgresql/$ver/main/pg_hba.conf
    as_root sed -i 's/^\(host\s\+all\s\+all\s\+127.0.0.1\/32\s\+\).*/\1trust/' "$hba"
    as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main reload || true
  fi
fi

command -v cargo-nextest >/dev/null 2>&1 || cargo install --locked cargo-nextest

# Browser tests (tests/e2e.rs): node, Debian's chromium, and playwright-core from npm (which
# drives that chromium; it never downloads a browser).
need_pkg node nodejs npm
need_pkg /usr/bin/chromium chromium
# The e-mail channel's IMAP tests run a real dovecot (crates/testkit/src/dovecot.rs), with a
# certificate made by openssl.
need_pkg /usr/sbin/dovecot dovecot-imapd
need_pkg openssl openssl
if [ ! -d node_modules/playwright-core ]; then
  echo "==> npm ci"
  npm ci --no-audit --no-fund
fi

# Python tools of the suite (schemathesis for the OpenAPI conformance run) in the suite's own
# virtualenv, reinstalled when tests/requirements.txt changes.
VENV="${KONTOR_VENV:-$HOME/.cache/kontor-venv}"
if ! cmp -s tests/requirements.txt "$VENV/requirements.txt" 2>/dev/null; then
  echo "==> python virtualenv $VENV"
  need_pkg python3 python3 python3-venv
  if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
    [ -n "$apt_updated" ] || { as_root apt-get update -qq; apt_updated=1; }
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv "$VENV"
  fi
  "$VENV/bin/pip" install -q --disable-pip-version-check -r tests/requirements.txt
  cp tests/requirements.txt "$VENV/requirements.txt"
fi
export KONTOR_SCHEMATHESIS="$VENV/bin/schemathesis"
export KONTOR_MOTO_SERVER="$VENV/bin/moto_server"
export KONTOR_PYTHON="$VENV/bin/python"

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "==> doc tests"
cargo test --workspace --doc --quiet
echo "==> tests"
cargo nextest run --workspace --no-fail-fast --failure-output final "$@"
