#!/usr/bin/env bash
# Adopt a warehouse built the seeds' way (README, "Adopting a seeds' warehouse"):
#   scripts/adopt.sh "<superuser conninfo>" "<operator conninfo>"
# e.g. scripts/adopt.sh "host=/var/run/postgresql dbname=warehouse user=postgres" \
#                       "host=127.0.0.1 dbname=warehouse user=etl_operator"
# 1. as the superuser (sql/adopt/prepare.sql): the seeds' _wh becomes _wh_seeds, each tenant
#    schema _wh_seeds_<tenant>, public.<name> <name>_seeds (recorded by oid), wh is installed,
#    the seeds' owner's pg_cron jobs are stopped (not deleted); it runs nothing of theirs;
# 2. as the operator (a member of wh_admin): CALL _wh.adopt_seeds() imports the tenants
#    (passwords into user mappings), the templates (or says why not), copies every
#    tenant-day from the seeds' views without fetching it again, verified, and schedules
#    wh's jobs. Reruns are safe. Then drop the leftovers when satisfied:
#    SELECT drop_statement FROM _wh.seed_leftovers() \gexec
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if [ $# -ne 2 ]; then
    sed -n '2,15p' "$0" >&2
    exit 2
fi
super=$1 operator=$2
# In this repository, or beside this script as the Debian package installs it (/usr/share/wh).
prepare=
for f in "$here/../sql/adopt/prepare.sql" "$here/adopt-prepare.sql"; do
    if [ -f "$f" ]; then prepare=$f; break; fi
done
[ -n "$prepare" ] || { echo "adopt.sh: prepare.sql not found beside $here" >&2; exit 2; }
psql -X -q -v ON_ERROR_STOP=1 "$super" -f "$prepare"
psql -X -q -v ON_ERROR_STOP=1 "$operator" -c "CALL _wh.adopt_seeds()"
psql -X -q -v ON_ERROR_STOP=1 "$operator" -c "SELECT object, drop_statement FROM _wh.seed_leftovers()"
