#!/usr/bin/env bash
# The wh demo on a throwaway local warehouse: set-up, two fresh clusters (warehouse +
# demo tenant sources, see tests/harness.py), then the seeds' workflow in psql.
# The clusters stay up afterwards so you can look around; stop them with
#   target/venv/bin/python tests/harness.py stop
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

scripts/setup.sh
DAYS=${WH_DEMO_DAYS:-60}
ROWS=${WH_DEMO_ROWS:-2000}
target/venv/bin/python tests/harness.py start
target/venv/bin/python tests/harness.py seed "$(date -u -d "$((DAYS - 1)) days ago" +%F)" "$DAYS" "$ROWS"
target/venv/bin/python tests/demo.py
cat <<MSG

The warehouse is still running. Look around as the operator (wh works only in an
operator's session; it refuses the superuser's):
  psql "$(target/venv/bin/python -c 'import sys; sys.path.insert(0,"tests"); import harness; e=harness.Env.load(); print(e.warehouse.tcp_dsn(e.warehouse_db, "whadmin", e.admin_password))')"
or as the superuser, to look at catalogs:
  psql "$(target/venv/bin/python -c 'import sys; sys.path.insert(0,"tests"); import harness; e=harness.Env.load(); print(e.warehouse.dsn(e.warehouse_db))')"
Stop it with:
  target/venv/bin/python tests/harness.py stop
MSG
