"""The demo: the seeds' workflow on the demo sources, as an operator would type it in psql.

Register three tenants, register the foodlogstats template (which creates the one table
_wh_data.foodlogstats, partitioned by month, that BI reads as the view public.foodlogstats), backfill 60 days each (a month per remote
query), look at the table, its partitions and the tenant views, refresh today, then print
a per-tenant summary next to the same figures queried straight from the sources."""

import datetime as dt
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402


def psql(env: harness.Env, sql: str, admin: bool = True, echo: bool = True) -> None:
    """Run SQL through psql as the operator login (whadmin) or the superuser."""
    if echo:
        print(f"\nwarehouse=> {sql.strip()}", flush=True)
    if admin:
        dsn = env.warehouse.tcp_dsn(env.warehouse_db, "whadmin", env.admin_password)
    else:
        dsn = env.warehouse.dsn(env.warehouse_db)
    subprocess.run(["psql", "-X", "-q", "-P", "pager=off", "-v", "ON_ERROR_STOP=1", dsn, "-c", sql], check=True)


def main() -> None:
    env = harness.Env.load()
    days = int(os.environ.get("WH_DEMO_DAYS", "60"))
    with env.wh_admin() as c:
        today = harness.server_today(c)  # the warehouse's today, not this machine's
    first = today - dt.timedelta(days=days - 1)

    print("== 1. The extension", flush=True)
    for sql in (r"\dx wh", r"\dt _wh.*", r"\du wh_*"):
        psql(env, sql, admin=False)

    print("\n== 2. Register the tenants (the password goes into a user mapping, never a table)", flush=True)
    for t in harness.TENANTS:
        user, password = env.tenant_login(t)
        print(f"\nwarehouse=> SELECT _wh.set_tenant_connection('{t}', '127.0.0.1', {env.source.port}, '{t}', '{user}', '********');")
        psql(env, f"SELECT _wh.set_tenant_connection('{t}', '127.0.0.1', {env.source.port}, '{t}', '{user}', "
                  f"'{password}') ->> 'status' AS status", echo=False)
    psql(env, "SELECT tenant_name, host, port, dbname, username, sslmode, remote_timeout, server_name FROM _wh.tenant_connections")
    psql(env, "SELECT tenant_name, (_wh.test_tenant_connection(tenant_name) -> 'details' ->> 'ssl') AS ssl, "
              "_wh.test_tenant_connection(tenant_name) ->> 'round_trip_ms' AS round_trip_ms FROM _wh.tenant_connections")

    print("\n== 3. Register the template (sql/templates/foodlogstats.sql)", flush=True)
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-o", "/dev/null", "-f", str(harness.ROOT / "sql/templates/foodlogstats.sql"),
                    env.warehouse.tcp_dsn(env.warehouse_db, "whadmin", env.admin_password)], check=True)
    psql(env, "SELECT template_name, time_column, unique_key, indexes, lookback_days FROM _wh.mv_templates")

    print(f"\n== 4. Backfill {days} days per tenant (a chunk of days per remote query and transaction; rerunnable)", flush=True)
    for t in harness.TENANTS:
        psql(env, f"CALL _wh.backfill('foodlogstats', '{t}', '{first}', '{today}')")

    print("\n== 5. One table for every tenant, partitioned by month; BI's view of it; a view per tenant", flush=True)
    psql(env, r"\d+ _wh_data.foodlogstats")
    psql(env, r"\d+ public.foodlogstats", admin=False)
    psql(env, "SELECT partition_name, bounds, est_rows, size FROM _wh.partitions WHERE template_name = 'foodlogstats'")
    psql(env, r"\d+ tenant_a.foodlogstats", admin=False)
    psql(env, "SELECT _wh.update_public_view('foodlogstats')")

    print("\n== 6. Refresh today and yesterday (the lookback) for every tenant at once (what cron runs)", flush=True)
    psql(env, "SELECT r->>'tenant' AS tenant, r->>'day' AS day, r->>'status' AS status, r->>'rows' AS rows, r->>'ms' AS ms "
              "FROM jsonb_array_elements(_wh.update_all_tenants('foodlogstats') -> 'results') r")

    print("\n== 7. Per tenant: the warehouse (read as the BI role phood_ro) next to the sources", flush=True)
    rows = []
    with env.wh_reader() as r:
        for t in harness.TENANTS:
            wd, wn, ww = r.execute(
                "SELECT count(DISTINCT logged_time::date), count(*), sum(weight) FROM public.foodlogstats "
                "WHERE schema_name = %s AND logged_time >= %s", (t, first)
            ).fetchone()
            with env.source_super(t) as s:
                sd, sn, sw = s.execute(
                    "SELECT count(DISTINCT (logged_time AT TIME ZONE 'UTC')::date), count(*), sum(weight) "
                    "FROM phood_foodlogsum WHERE logged_time >= %s::date", (first,)
                ).fetchone()
            rows.append((t, wd, wn, ww, sd, sn, sw, "yes" if (wd, wn, ww) == (sd, sn, sw) else "NO"))
    head = ("tenant", "wh days", "wh rows", "wh sum(weight)", "src days", "src rows", "src sum(weight)", "equal")
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    for line in [head, tuple("-" * w for w in widths), *rows]:
        print(" | ".join(str(v).rjust(w) for v, w in zip(line, widths)))
    if any(r[-1] != "yes" for r in rows):
        sys.exit("demo: warehouse and sources differ")

    print("\n== 8. The registry and the run log", flush=True)
    psql(env, "SELECT tenant_name, count(*) AS days, sum(row_count) AS rows, min(range_start), max(range_start) "
              "FROM _wh.slices GROUP BY 1 ORDER BY 1")
    psql(env, "SELECT * FROM _wh.storage ORDER BY 1, 2")
    psql(env, "SELECT operation, status, count(*), round(avg(duration_ms)::numeric, 1) AS avg_ms "
              "FROM _wh.run_log GROUP BY 1, 2 ORDER BY 1, 2")


if __name__ == "__main__":
    main()
