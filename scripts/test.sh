#!/usr/bin/env bash
# Every wh test, in three tiers:
#   1. plain #[test]s of the pure modules (no PostgreSQL);
#   2. #[pg_test]s, each in a rolled-back transaction of a scratch cluster (cargo pgrx test);
#   3. end-to-end tests (pytest) against real clusters: a warehouse with pg_cron and a
#      source cluster with scram + SSL, started and stopped by tests/harness.py; then the
#      same sources feeding a Citus coordinator and two workers (distributed/).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
start=$(date +%s)

# Tests build and install a debug build (faster to build); installing for use is a release build.
WH_DEBUG=1 scripts/setup.sh

# PostgreSQL tools started as the postgres user resolve their current directory, and
# cargo runs test binaries from the crate root: if the postgres user cannot enter this
# clone (e.g. it lives under /root), run from a copy it can enter, sharing target/.
if ! sudo -n -u postgres test -r "$PWD/Cargo.toml" 2>/dev/null && [ -z "${WH_TEST_COPY:-}" ]; then
    copy=$(mktemp -d /tmp/wh-src.XXXX)
    chmod 755 "$copy"
    echo "== the postgres user cannot reach $PWD; testing from $copy"
    tar --exclude=./target --exclude=./.git -cf - . | tar -xf - -C "$copy"
    ln -s "$PWD/target" "$copy/target"
    rc=0
    (cd "$copy" && WH_TEST_COPY=1 WH_GIT_DIR="$PWD/.git" CARGO_TARGET_DIR="$PWD/target" bash scripts/test.sh "$@") || rc=$?
    rm -rf "$copy"
    exit $rc
fi

echo "== lint: cargo fmt --check, cargo clippy -D warnings"
cargo fmt --check
cargo clippy --all-targets --no-default-features --features pg15 -- -D warnings

echo "== tier 1: unit tests"
cargo test --lib --no-default-features --features pg15 -- --skip pg_tests

echo "== tier 2: pg_tests"
pgtest_dir=$(mktemp -d /tmp/wh-pgtest.XXXX)
chown postgres: "$pgtest_dir"
chmod 755 "$pgtest_dir"
cleanup() { rm -rf "$pgtest_dir"; target/venv/bin/python tests/harness.py stop 2>/dev/null || true; }
trap cleanup EXIT
cargo pgrx test pg15 --runas postgres --pgdata "$pgtest_dir/data"
# cargo pgrx test installed a build with the pg_test feature; put the real one back.
cargo pgrx install --pg-config /usr/bin/pg_config >target/install.log 2>&1 || { tail -40 target/install.log; exit 1; }

echo "== tier 3: end-to-end tests against real clusters"
target/venv/bin/pytest -q -p no:cacheprovider tests "$@"

# The same tier with both clusters' clocks moved (tests/clock_shift.c via tests/harness.py), so no
# test depends on the calendar: two minutes before the next 1 January and before the
# next 29 February, so each run also crosses midnight UTC. WH_SKIP_FAKETIME=1 skips.
if [ -z "${WH_SKIP_FAKETIME:-}" ]; then
    for moment in new-year leap-day; do
        at=$(python3 - "$moment" <<'PY'
import calendar, datetime as dt, sys
now = dt.datetime.now(dt.timezone.utc)
year = now.year
if sys.argv[1] == "new-year":
    print(f"{year}-12-31 23:58:00")
else:
    y = year if now < dt.datetime(year, 2, 28, 23, 58, tzinfo=dt.timezone.utc) else year + 1
    while not calendar.isleap(y):
        y += 1
    print(f"{y}-02-28 23:58:00")
PY
)
        echo "== tier 3 with the servers' clocks at $at UTC"
        WH_FAKETIME="$at" target/venv/bin/pytest -q -p no:cacheprovider tests "$@"
    done
fi

# A Citus 13.2 cluster (coordinator + 2 workers, distributed/conftest.py): once, at the real
# clock. WH_SKIP_CITUS=1 skips.
if [ -z "${WH_SKIP_CITUS:-}" ]; then
    echo "== tier 3 on a Citus cluster (distributed/)"
    target/venv/bin/pytest -q -p no:cacheprovider distributed
fi

# The Debian package: built, installed with apt in place of the cargo build, CREATE
# EXTENSION on a scratch cluster, removed; then the cargo build goes back. WH_SKIP_PACKAGE=1 skips.
if [ -z "${WH_SKIP_PACKAGE:-}" ]; then
    echo "== the Debian package (scripts/package.sh, apt install, CREATE EXTENSION, apt remove)"
    scripts/package.sh
    WH_PACKAGE_TEST=1 target/venv/bin/pytest -q -p no:cacheprovider packaging
    cargo pgrx install --pg-config /usr/bin/pg_config >target/install.log 2>&1 || { tail -40 target/install.log; exit 1; }
fi

echo "== all tiers passed in $(( $(date +%s) - start )) s"
