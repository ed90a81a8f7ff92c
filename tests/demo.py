"""The demo: what a DBA sees after CREATE EXTENSION wh, run through psql."""

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402


def psql(env: harness.Env, sql: str, user: str = "postgres") -> None:
    print(f"\nwarehouse=> {sql}", flush=True)
    subprocess.run(
        ["psql", "-X", "-P", "pager=off", env.warehouse.dsn(env.warehouse_db, user), "-c", sql], check=True
    )


def main() -> None:
    env = harness.Env.load()
    for sql in (r"\dx wh", r"\dt _wh.*", r"\du wh_*", r"\dn+ _wh", "SELECT _wh.current_date_utc()"):
        psql(env, sql)


if __name__ == "__main__":
    main()
