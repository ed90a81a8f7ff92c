#!/usr/bin/env python3
"""Write sql/wh--A--B.sql: the hand-written head (sql/upgrade/A--B.head.sql: table changes,
drops of A's routines and views) followed by B's routines, views and grants exactly as
`cargo pgrx schema` generates them for a fresh install (without the bootstrap tables),
then the optional hand-written tail (sql/upgrade/A--B.tail.sql).

    cargo pgrx schema pg15 --pg-config /usr/bin/pg_config -o /tmp/wh--B.sql
    python3 scripts/upgrade-script.py 0.1.0 0.2.0 /tmp/wh--B.sql

The upgrade test (tests/test_upgrade.py) checks that an upgraded catalog equals a fresh one."""
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
old, new, schema = sys.argv[1], sys.argv[2], Path(sys.argv[3])
text = schema.read_text()
blocks = re.split(r"(?=/\* <begin connected objects> \*/)", text)
keep = []
for b in blocks:
    if "-- bootstrap\n" in b:
        continue  # tables, roles and current_date_utc(): changed above by hand
    # settings exists since 0.1.0: keep the rest of the monitoring block
    b = re.sub(r"CREATE TABLE @extschema@\.settings \(.*?\);\n", "", b, flags=re.S)
    b = re.sub(r"SELECT pg_catalog\.pg_extension_config_dump\('@extschema@\.settings', ''\);\n", "", b)
    keep.append(b)
head = (ROOT / f"sql/upgrade/{old}--{new}.head.sql").read_text()
# An optional tail runs after B's routines exist (e.g. objects made per template).
tail_file = ROOT / f"sql/upgrade/{old}--{new}.tail.sql"
tail = "\n" + tail_file.read_text() if tail_file.exists() else ""
out = ROOT / f"sql/wh--{old}--{new}.sql"
out.write_text(head + "\n" + "".join(keep) + tail)
print(f"wrote {out}")
