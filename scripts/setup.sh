#!/usr/bin/env bash
# Bring a fresh Debian bookworm machine (root) to a working wh build, idempotently:
# every step checks first and skips itself when its piece is already there.
#   scripts/setup.sh            apt packages, cargo-pgrx, pgrx init, python venv, Citus 13.2.2 (built
#                               from ../shared/vendor/citus: columnar years and the Citus tests),
#                               build + install wh
#                               (a release build: what you run; WH_DEBUG=1 installs a debug
#                               build, which scripts/test.sh uses because it builds faster)
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

# 1. Debian packages.
PKGS=(postgresql-15 postgresql-server-dev-15 libpq-dev postgresql-15-cron postgresql-contrib libclang-dev clang sudo openssl pkg-config python3-venv gcc libc6-dev)
missing=()
for p in "${PKGS[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
if ((${#missing[@]})); then
    say "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
    say "Debian packages: all present"
fi
# Debian's postgresql package starts a cluster on 5432; wh's tests use their own clusters.

# 2. Rust toolchain must already be there (rustup); cargo-pgrx 0.18.1 only if missing.
export PATH="$HOME/.cargo/bin:$PATH"
command -v cargo >/dev/null || { echo "cargo not found: install Rust (rustup) first" >&2; exit 1; }
# rustfmt and clippy: the test command checks formatting and lints.
for comp in rustfmt clippy; do
    if ! rustup component list --installed 2>/dev/null | grep -q "^$comp"; then
        say "rustup component add $comp"
        rustup component add "$comp"
    fi
done
if cargo pgrx --version 2>/dev/null | grep -q '0\.18\.1'; then
    say "cargo-pgrx 0.18.1: present"
else
    say "installing cargo-pgrx 0.18.1 (several minutes)"
    cargo install cargo-pgrx --version 0.18.1 --locked
fi

# 3. pgrx knows Debian's PostgreSQL 15 (downloads nothing).
if grep -qs '^pg15 *= *"/usr/bin/pg_config"' "${PGRX_HOME:-$HOME/.pgrx}/config.toml"; then
    say "pgrx init: pg15 already points at /usr/bin/pg_config"
else
    say "cargo pgrx init --pg15 /usr/bin/pg_config"
    cargo pgrx init --pg15 /usr/bin/pg_config
fi

# 4. Python for the cluster harness and end-to-end tests.
if target/venv/bin/python -c 'import psycopg, pytest, pytest_timeout' 2>/dev/null; then
    say "python venv: present"
else
    say "creating target/venv with pytest, pytest-timeout and psycopg"
    mkdir -p target
    python3 -m venv target/venv
    target/venv/bin/pip install -q --disable-pip-version-check -r tests/requirements.txt
fi

# 5. Citus 13.2.2 and citus_columnar, built from the vendored source (no registry packages it for
#    PostgreSQL 15): folded years in columnar storage, and the tests of a distributed warehouse.
#    Optional for a warehouse on one node with heap years; skipped when installed.
bash scripts/setup-citus.sh

# 6. Build and install the extension (cargo rebuilds only what changed).
profile=(--release)
build="a release build"
if [ -n "${WH_DEBUG:-}" ]; then
    profile=()
    build="a debug build (WH_DEBUG: for tests, not for use)"
fi
say "building and installing wh ($build) into $(/usr/bin/pg_config --pkglibdir)"
mkdir -p target
if ! cargo pgrx install --pg-config /usr/bin/pg_config "${profile[@]}" >target/install.log 2>&1; then
    tail -40 target/install.log >&2
    exit 1
fi
test -f "$(/usr/bin/pg_config --sharedir)/extension/wh.control"
say "done"
