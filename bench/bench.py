"""wh benchmarks (storage v2), every figure next to a baseline measured in the same run.

    scripts/bench.sh                        # full scale, writes BENCHMARKS.md
    WH_BENCH_SCALE=0.05 scripts/bench.sh    # a quick run at a twentieth of the rows

Runs on its own pair of clusters (tests/harness.py with WH_PORT_BASE=55510), the
extension built in release mode, PostgreSQL's default settings (max_locks_per_transaction
64). Sections: scale (query shapes at 20 tenants x 365 days x 1,000 rows and 100 x 365 x
200, against one flat indexed table of the same rows, alone and under 20 pgbench
clients, plus bytes on disk), the reader stall, concurrent refreshes, ingest of one day,
a year's backfill, a fold, the WAL of a refresh that changes nothing, and rollups (the
30-day dashboard on a daily rollup against its base at 20 tenants, inside the scale
section; what keeping a rollup adds to a day refresh)."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
os.environ.setdefault("WH_PORT_BASE", "55510")
import harness  # noqa: E402
import psycopg  # noqa: E402

SCALE = float(os.environ.get("WH_BENCH_SCALE", "1"))
PGBENCH_SECONDS = int(os.environ.get("WH_BENCH_PGBENCH_SECONDS", "10"))
TODAY = None  # the warehouse's today, set from its clock in main()
RESULTS: dict = {}
TEMPLATE = harness.ROOT / "sql/templates/foodlogstats.sql"
COLS = ("id, store, station, validation_status, region, action_taken_id, action_taken, name, quantity, average_weight, "
        "weight, client, food_category, cost_per_lb, target_weight, price_per_lb, action_reason, client_id, logged_time, flags")
COLDEFS = ("id bigint, store text, station text, validation_status text, region text, action_taken_id integer, "
           "action_taken text, name text, quantity integer, average_weight numeric(10,3), weight numeric(12,3), "
           "client text, food_category text, cost_per_lb numeric(10,2), target_weight numeric(10,3), "
           "price_per_lb numeric(10,2), action_reason text, client_id integer, logged_time timestamptz, flags text[]")


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def n(x):
    return max(1, int(x * SCALE))


def template_sql(name):
    return open(TEMPLATE).read().replace("template_name      => 'foodlogstats'", f"template_name      => '{name}'")


def remote_query(first: dt.date, last_exclusive: dt.date) -> str:
    """The foodlogstats query for a range instead of one day (the bulk baselines)."""
    q = open(TEMPLATE).read().split("$q$")[1]
    return q.replace("'{TARGET_DATE}'::date + 1", f"'{last_exclusive}'::date").replace("'{TARGET_DATE}'::date", f"'{first}'::date")


def same_indexes(c, rel, prefix):
    """The indexes wh puts on public.<template> for foodlogstats."""
    c.execute(f"CREATE INDEX {prefix}_tt ON {rel} (schema_name, logged_time)")
    c.execute(f"CREATE UNIQUE INDEX {prefix}_ix1 ON {rel} (schema_name, id, logged_time)")
    c.execute(f"CREATE INDEX {prefix}_ix2 ON {rel} (logged_time)")
    c.execute(f"CREATE INDEX {prefix}_ix3 ON {rel} (store)")


def median_plan_exec(c, sql, runs=5):
    """Median planning and execution ms of EXPLAIN ANALYZE after one warm-up."""
    c.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql).fetchone()
    plans, execs = [], []
    for _ in range(runs):
        p = c.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql).fetchone()[0][0]
        plans.append(p["Planning Time"])
        execs.append(p["Execution Time"])
    return statistics.median(plans), statistics.median(execs)


def pgbench(env, sql, seconds, clients=20):
    """tps and failed transactions of one statement run by `clients` BI sessions."""
    rc, tps, failed, out = harness.pgbench(env, sql + ";\n", seconds, clients)
    errors = failed if failed is not None else (0 if rc == 0 else 1)
    if rc != 0 or "out of shared memory" in out:
        errors = max(errors, 1)
    return tps, errors, out[-300:]


# ---------------------------------------------------------------- scale: query shapes

def shapes(rel, view, tenant):
    """The SQL BI tools send (DESIGN §7), on relation `rel`."""
    return {
        "constant 30 days": f"SELECT store, count(*), sum(weight) FROM {rel} WHERE logged_time >= '{TODAY - dt.timedelta(days=30)}' "
                            f"AND logged_time < '{TODAY + dt.timedelta(days=1)}' GROUP BY 1",
        "now() 30 days (Metabase)": f"SELECT store, count(*), sum(weight) FROM {rel} WHERE logged_time >= now() - interval '30 days' GROUP BY 1",
        "to_timestamp 7 days (Superset)": f"SELECT date_trunc('day', logged_time), count(*) FROM {rel} "
                                          f"WHERE logged_time >= TO_TIMESTAMP('{TODAY - dt.timedelta(days=7)} 00:00:00', 'YYYY-MM-DD HH24:MI:SS') "
                                          f"AND logged_time < TO_TIMESTAMP('{TODAY + dt.timedelta(days=1)} 00:00:00', 'YYYY-MM-DD HH24:MI:SS') GROUP BY 1",
        "CURRENT_TIMESTAMP 30 days (Looker)": f"SELECT store, count(*) FROM {rel} WHERE logged_time >= CURRENT_TIMESTAMP - INTERVAL '30 day' "
                                              f"AND logged_time < CURRENT_TIMESTAMP GROUP BY 1",
        "full year": f"SELECT schema_name, date_trunc('month', logged_time), sum(weight) FROM {rel} "
                     f"WHERE logged_time >= now() - interval '365 days' GROUP BY 1, 2",
        "one tenant 30 days, now()": f"SELECT store, count(*), sum(weight) FROM {rel} WHERE schema_name = '{tenant}' "
                                     f"AND logged_time >= now() - interval '30 days' GROUP BY 1",
        "one tenant 30 days, its view": (f"SELECT store, count(*), sum(weight) FROM {view} WHERE logged_time >= now() - interval '30 days' GROUP BY 1"
                                         if view else f"SELECT store, count(*), sum(weight) FROM {rel} WHERE schema_name = '{tenant}' "
                                                      f"AND logged_time >= now() - interval '30 days' GROUP BY 1"),
    }


GENERATE = """
INSERT INTO {rel} ({cols}, schema_name)
SELECT %(t)s::bigint * 100000000 + d * 100000 + i, 'store_' || ((i * 7 + %(t)s) %% 40), 'station_' || (i %% 12), 'ok',
       'region_' || (%(t)s %% 5), i %% 9, 'action', 'item_' || (i %% 300), 1 + i %% 5, (i %% 1000) / 10.0, (i %% 5000) / 10.0,
       'client_' || %(t)s, 'cat_' || (i %% 8), 2.5, 1.0, 3.0, 'reason', %(t)s,
       %(first)s::timestamptz + d * interval '1 day' + (i * 86399.0 / %(rows)s) * interval '1 second', ARRAY['a'], %(tenant)s
FROM generate_series(0, %(days)s - 1) d, generate_series(0, %(rows)s - 1) i
"""


def dashboard_session_memory(env, queries):
    """A dashboard session (every shape once, as the BI login through SET ROLE): its
    backend's relation cache and all its memory contexts afterwards, in kB."""
    with env.wh_super() as s:
        login = s.execute("SELECT rolname FROM pg_roles WHERE pg_has_role(rolname, 'wh_reader', 'MEMBER') AND rolcanlogin "
                          "ORDER BY rolname LIMIT 1").fetchone()[0]
        s.execute(f"SET ROLE {login}")
        for q in queries.values():
            s.execute(q).fetchall()
        s.execute("RESET ROLE")
        cache, total = s.execute("SELECT sum(total_bytes) FILTER (WHERE name = 'CacheMemoryContext' OR parent = 'CacheMemoryContext'), "
                                 "sum(total_bytes) FROM pg_backend_memory_contexts").fetchone()
    return {"relcache_kb": int(cache) // 1024, "contexts_kb": int(total) // 1024}


def bench_scale(env, tenants, days, rows):
    label = f"{tenants} tenants x {days} days x {rows:,} rows"
    log(f"scale {label}: generating")
    name = f"scale{tenants}"
    first = TODAY - dt.timedelta(days=days - 1)
    out = {"tenants": tenants, "days": days, "rows_per_day": rows}
    with env.wh_admin() as c:
        c.execute(template_sql(name))
        c.execute("SELECT _wh._prepare_days(%s, %s, %s)", (name, first, TODAY))
        t0 = time.perf_counter()
        for t in range(1, tenants + 1):
            c.execute(GENERATE.format(rel=f"_wh_data.{name}", cols=COLS),
                      {"t": t, "first": first, "days": days, "rows": rows, "tenant": f"t{t:03d}"})
        out["load_s"] = time.perf_counter() - t0
        c.execute(f"CREATE TABLE {name}_flat AS SELECT * FROM public.{name}")
        same_indexes(c, f"{name}_flat", f"{name}_flat")
        c.execute(f"GRANT SELECT ON {name}_flat TO wh_reader")
        c.execute(f"ANALYZE _wh_data.{name}")
        c.execute(f"ANALYZE {name}_flat")
        tenant = "t007"
        c.execute("SELECT _wh.set_tenant_connection(%s, '127.0.0.1', 1, 'nowhere', 'nobody', 'unused', test_first => false)", (tenant,))
        c.execute("SELECT _wh.update_tenant_union_view(%s, %s)", (name, tenant))
        out["rows"] = c.execute(f"SELECT count(*) FROM public.{name}").fetchone()[0]
        wh_bytes = c.execute(f"SELECT sum(bytes) FROM _wh.partitions WHERE template_name = %s", (name,)).fetchone()[0]
        flat_bytes = c.execute(f"SELECT pg_total_relation_size('{name}_flat')").fetchone()[0]
        out["bytes"] = {"wh": int(wh_bytes), "flat": int(flat_bytes), "ratio": wh_bytes / flat_bytes}
        out["partitions"] = c.execute("SELECT count(*) FROM _wh.partitions WHERE template_name = %s", (name,)).fetchone()[0]
    log(f"scale {label}: {out['rows']:,} rows loaded in {out['load_s']:.0f}s, bytes {out['bytes']['ratio']:.2f}x flat")
    wh_q, flat_q = shapes(f"public.{name}", f"{tenant}.{name}", tenant), shapes(f"{name}_flat", None, tenant)
    out["queries"] = {}
    with env.wh_reader() as r:
        assert r.execute("SHOW max_locks_per_transaction").fetchone()[0] == "64"
        for shape in wh_q:
            wp, we = median_plan_exec(r, wh_q[shape])
            fp, fe = median_plan_exec(r, flat_q[shape])
            with r.transaction():
                r.execute(wh_q[shape]).fetchall()
                locks = r.execute("SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'relation'").fetchone()[0]
            out["queries"][shape] = {"wh_plan_ms": wp, "wh_exec_ms": we, "flat_plan_ms": fp, "flat_exec_ms": fe,
                                     "ratio": (wp + we) / (fp + fe), "locks": locks}
            log(f"  {shape}: wh {wp + we:.1f} ms (plan {wp:.1f}) flat {fp + fe:.1f} ms -> {(wp + we) / (fp + fe):.2f}x, {locks} locks")
        # What bounds the full year: JIT compiles each partition's scan; the same query with jit off.
        r.execute("SET jit = off")
        wp, we = median_plan_exec(r, wh_q["full year"])
        fp, fe = median_plan_exec(r, flat_q["full year"])
        r.execute("RESET jit")
        out["full_year_jit_off"] = {"wh_ms": wp + we, "flat_ms": fp + fe, "ratio": (wp + we) / (fp + fe)}
        log(f"  full year, jit off: wh {wp + we:.1f} ms flat {fp + fe:.1f} ms -> {(wp + we) / (fp + fe):.2f}x")
    out["session"] = {"pg_class_rows": None}
    for side, qs in (("wh", wh_q), ("flat", flat_q)):
        out["session"][side] = dashboard_session_memory(env, qs)
    with env.wh_super() as s:
        out["session"]["pg_class_rows"] = s.execute("SELECT count(*) FROM pg_class").fetchone()[0]
    log(f"  after a dashboard session: {out['session']}")
    for shape in wh_q:
        wt, werr, wmsg = pgbench(env, wh_q[shape], PGBENCH_SECONDS)
        ft, ferr, _ = pgbench(env, flat_q[shape], PGBENCH_SECONDS)
        out["queries"][shape].update({"wh_tps": wt, "wh_errors": werr, "flat_tps": ft, "flat_errors": ferr, "tps_ratio": wt / ft if ft else 0})
        log(f"  pgbench {shape}: wh {wt:.1f} tps ({werr} errors) flat {ft:.1f} tps {wmsg if werr else ''}")
    # Tenant-scoped reader (row-level security): full scan through the policy vs wh_reader.
    with env.wh_super() as s:
        s.execute("DROP ROLE IF EXISTS bench_scoped")
        s.execute("CREATE ROLE bench_scoped LOGIN PASSWORD 'scoped-pw'")
    with env.wh_admin() as c:
        c.execute("SELECT _wh.grant_tenant_reader('bench_scoped', %s)", (tenant,))
    full = f"SELECT count(*), sum(weight) FROM public.{name} WHERE schema_name = '{tenant}'"
    with psycopg.connect(env.warehouse.tcp_dsn(env.warehouse_db, "bench_scoped", "scoped-pw"), autocommit=True) as a, env.wh_reader() as r:
        sp, se = median_plan_exec(a, f"SELECT count(*), sum(weight) FROM {tenant}.{name}")
        rp, re_ = median_plan_exec(r, full)
    out["scoped_reader"] = {"scoped_ms": sp + se, "reader_ms": rp + re_, "ratio": (sp + se) / (rp + re_)}
    log(f"  tenant-scoped full scan {sp + se:.1f} ms vs wh_reader with the same filter {rp + re_:.1f} ms")
    if tenants == 20:
        out["rollup"] = bench_rollup_queries(env, name, tenants, first, days, rows, tenant)
    with env.wh_admin() as c:
        c.execute("SELECT _wh.revoke_tenant_reader('bench_scoped', %s)", (tenant,))
        c.execute(f"DROP TABLE {name}_flat")
        c.execute(f"DROP TABLE _wh_data.{name} CASCADE")
        c.execute("DELETE FROM _wh.mv_templates WHERE template_name = %s", (name,))
        c.execute("SELECT _wh.remove_tenant(%s)", (tenant,))
    RESULTS.setdefault("scale", {})[label] = out


# ---------------------------------------------------------------- readers: bound types

def reader_shapes(rel, tenant_filter=""):
    """The bounds BI tools send against a `timestamp` time column (the seeds' type), each
    over 30 days unless named, GROUP BY store: `rel` read with `tenant_filter` ANDed in."""
    hi = TODAY + dt.timedelta(days=1)
    w = f"{tenant_filter} AND " if tenant_filter else ""
    q = lambda bounds: f"SELECT store, count(*), sum(weight) FROM {rel} WHERE {w}{bounds} GROUP BY 1"
    return {
        "date literals": q(f"logged_time >= date '{hi - dt.timedelta(days=30)}' AND logged_time < date '{hi}'"),
        "date arithmetic": q(f"logged_time >= date '{hi}' - 30 AND logged_time < date '{hi}'"),
        "to_timestamp 7 days (Superset)": q(f"logged_time >= to_timestamp('{hi - dt.timedelta(days=7)}', 'YYYY-MM-DD') "
                                            f"AND logged_time < to_timestamp('{hi}', 'YYYY-MM-DD')"),
        "date_trunc(current_timestamp) (Looker)": q("logged_time >= date_trunc('day', current_timestamp - interval '29 days')"),
        "now() - interval (Metabase)": q("logged_time >= now() - interval '30 days'"),
        "CURRENT_TIMESTAMP": q("logged_time >= CURRENT_TIMESTAMP - INTERVAL '30 day' AND logged_time < CURRENT_TIMESTAMP"),
        "timestamp literals": q(f"logged_time >= timestamp '{hi - dt.timedelta(days=30)}' AND logged_time < timestamp '{hi}'"),
    }


def bench_readers(env, tenants, days, rows):
    """Every bound type over a `timestamp` column, as a wh_reader login on public.<template>
    against a flat table of the same rows, and as a tenant-scoped login on its tenant view
    against a flat table of only that tenant's rows (issue 22)."""
    label = f"{tenants} tenants x {days} days x {rows:,} rows"
    name, tenant = f"rd{tenants}", "t007"
    first = TODAY - dt.timedelta(days=days - 1)
    log(f"readers {label}: generating")
    with env.wh_admin() as c:
        c.execute("SELECT _wh.set_template(%s, %s, %s, 'logged_time', unique_key => 'id', "
                  "indexes => ARRAY['unique (id)', '(logged_time)', '(store)'])",
                  (name, open(TEMPLATE).read().split("$q$")[1], COLDEFS.replace("logged_time timestamptz", "logged_time timestamp")))
        c.execute("SELECT _wh._prepare_days(%s, %s, %s)", (name, first, TODAY))
        for t in range(1, tenants + 1):  # as wh loads: one tenant's day after another
            c.execute(GENERATE.format(rel=f"_wh_data.{name}", cols=COLS),
                      {"t": t, "first": first, "days": days, "rows": rows, "tenant": f"t{t:03d}"})
        c.execute(f"CREATE TABLE {name}_flat AS SELECT * FROM _wh_data.{name}")
        same_indexes(c, f"{name}_flat", f"{name}_flat")
        c.execute(f"CREATE TABLE {name}_one AS SELECT * FROM _wh_data.{name} WHERE schema_name = '{tenant}'")
        same_indexes(c, f"{name}_one", f"{name}_one")
        c.execute(f"GRANT SELECT ON {name}_flat, {name}_one TO wh_reader, bench_scoped")
        for rel in (f"_wh_data.{name}", f"{name}_flat", f"{name}_one"):
            c.execute(f"ANALYZE {rel}")
        c.execute("SELECT _wh.set_tenant_connection(%s, '127.0.0.1', 1, 'nowhere', 'nobody', 'unused', test_first => false)", (tenant,))
        c.execute("SELECT _wh.update_tenant_union_view(%s, %s)", (name, tenant))
        c.execute("SELECT _wh.grant_tenant_reader('bench_scoped', %s)", (tenant,))
        total = c.execute(f"SELECT count(*) FROM _wh_data.{name}").fetchone()[0]
    out = {"tenants": tenants, "days": days, "rows_per_day": rows, "rows": total, "all": {}, "scoped": {}}
    runs = {
        "all": (env.wh_reader, reader_shapes(f"public.{name}"), reader_shapes(f"{name}_flat")),
        "scoped": (lambda: psycopg.connect(env.warehouse.tcp_dsn(env.warehouse_db, "bench_scoped", "scoped-pw"), autocommit=True),
                   reader_shapes(f"{tenant}.{name}"), reader_shapes(f"{name}_one")),
        "all, one tenant by its filter": (env.wh_reader, reader_shapes(f"public.{name}", f"schema_name = '{tenant}'"),
                                          reader_shapes(f"{name}_flat", f"schema_name = '{tenant}'")),
        "all, one tenant's view": (env.wh_reader, reader_shapes(f"{tenant}.{name}"),
                                   reader_shapes(f"{name}_flat", f"schema_name = '{tenant}'")),
    }
    for who, (connect, wh_q, flat_q) in runs.items():
        res = out.setdefault(who, {})
        with connect() as r:
            for shape in wh_q:
                wp, we = median_plan_exec(r, wh_q[shape])
                fp, fe = median_plan_exec(r, flat_q[shape])
                assert sorted(r.execute(wh_q[shape]).fetchall()) == sorted(r.execute(flat_q[shape]).fetchall()), shape
                res[shape] = {"wh_plan_ms": wp, "wh_exec_ms": we, "flat_plan_ms": fp, "flat_exec_ms": fe,
                              "ratio": (wp + we) / (fp + fe)}
                if res[shape]["ratio"] > 1.2:  # kept for the reader of the results: why
                    res[shape]["plans"] = ["\n".join(x for (x,) in r.execute("EXPLAIN (ANALYZE, TIMING OFF) " + q))
                                           for q in (wh_q[shape], flat_q[shape])]
                log(f"  {who} {shape}: wh {wp + we:.1f} ms (plan {wp:.1f}) flat {fp + fe:.1f} ms -> {(wp + we) / (fp + fe):.2f}x")
    with env.wh_admin() as c:
        c.execute("SELECT _wh.revoke_tenant_reader('bench_scoped', %s)", (tenant,))
        c.execute(f"DROP TABLE {name}_flat, {name}_one")
        c.execute("SELECT _wh.drop_template(%s)", (name,))
        c.execute("SELECT _wh.remove_tenant(%s, drop_data => true)", (tenant,))
    RESULTS.setdefault("readers", {})[label] = out


# ---------------------------------------------------------------- rollups

DAILY_SELECT = "store, logged_time::date AS day, count(*) AS n, sum(weight) AS weight, min(weight) AS lo, max(weight) AS hi"
DAILY_GROUP = "store, logged_time::date"


ROLLUP_LAYOUTS = {
    "month partitions (default)": {},
    "year partitions + index on day": {"partition_grain": "year", "indexes": ["(day)"]},
}


def bench_rollup_queries(env, name, tenants, first, days, rows, tenant):
    """A daily per-store rollup of the scale table in two layouts (the default: month
    partitions like its base; year partitions with an index on its day), each built from
    the stored rows by `_wh.build_rollup` (against a CTAS of the same aggregate), then the
    dashboards' 30-day GROUP BY store on each against the same query on the base."""
    names = [f"t{t:03d}" for t in range(1, tenants + 1)]
    lo, hi = TODAY - dt.timedelta(days=29), TODAY
    base_q = {
        "constant 30 days": f"SELECT store, count(*) AS n, sum(weight) AS w FROM public.{name} WHERE logged_time >= '{lo} 00:00:00+00' "
                            f"AND logged_time < '{hi + dt.timedelta(days=1)} 00:00:00+00' GROUP BY 1",
        "now() 30 days (Metabase)": f"SELECT store, count(*), sum(weight) FROM public.{name} WHERE logged_time >= now() - interval '30 days' GROUP BY 1",
        "one tenant 30 days, its view": f"SELECT store, count(*), sum(weight) FROM {tenant}.{name} WHERE logged_time >= now() - interval '30 days' GROUP BY 1",
    }
    out = {"layouts": {}}
    with env.wh_admin() as c:
        for t in names:
            if t != tenant:
                c.execute("SELECT _wh.set_tenant_connection(%s, '127.0.0.1', 1, 'nowhere', 'nobody', 'unused')", (t,))
        # The rows were loaded straight into the table: register their days as a build would.
        c.execute("INSERT INTO _wh.slices (template_name, tenant_name, schema_name, slice_name, kind, range_start, range_end, row_count, checksum) "
                  "SELECT %s, t, t, %s || '_' || to_char(d, 'YYYY_MM_DD'), 'day', d, d + 1, %s, 'loaded' "
                  "FROM unnest(%s::text[]) t, generate_series(%s::date, %s::date, '1 day') g, LATERAL (SELECT g::date AS d) x",
                  (name, name, rows, names, first, first + dt.timedelta(days=days - 1)))
        out["base_rows"] = c.execute(f"SELECT count(*) FROM public.{name}").fetchone()[0]
        c.execute("DROP TABLE IF EXISTS bench_rollup_ctas")
        t0 = time.perf_counter()
        c.execute(f"CREATE TABLE bench_rollup_ctas AS SELECT schema_name, store, (logged_time AT TIME ZONE 'UTC')::date AS day, "
                  f"count(*) AS n, sum(weight) AS weight, min(weight) AS lo, max(weight) AS hi FROM public.{name} GROUP BY 1, 2, 3")
        c.execute("CREATE INDEX ON bench_rollup_ctas (schema_name, day)")
        out["ctas_s"] = time.perf_counter() - t0
        c.execute("DROP TABLE bench_rollup_ctas")
    out["base"] = {}
    with env.wh_reader() as r:
        for shape, q in base_q.items():
            p, e = median_plan_exec(r, q)
            out["base"][shape] = {"ms": p + e}
    for shape, q in base_q.items():
        t, err, _ = pgbench(env, q, PGBENCH_SECONDS)
        out["base"][shape].update({"tps": t, "errors": err})
        log(f"  base {shape}: {out['base'][shape]['ms']:.1f} ms, {t:.1f} tps")
    for i, (layout, opts) in enumerate(ROLLUP_LAYOUTS.items()):
        rollup = f"{name}_daily{i}"
        lay = {"options": opts}
        with env.wh_admin() as c:
            r = c.execute("SELECT _wh.set_rollup(%s, %s, %s, %s, indexes => %s, partition_grain => %s)",
                          (rollup, name, DAILY_SELECT, DAILY_GROUP, opts.get("indexes", []), opts.get("partition_grain"))).fetchone()[0]
            assert r["details"]["days_to_build"] == tenants * days, r
            log(f"rollup {rollup} ({layout}): building {tenants * days:,} tenant-days")
            t0 = time.perf_counter()
            c.execute("CALL _wh.build_rollup(%s)", (rollup,))
            lay["build_s"] = time.perf_counter() - t0
            c.execute(f"ANALYZE _wh_data.{rollup}")
            lay["rows"] = c.execute(f"SELECT count(*) FROM public.{rollup}").fetchone()[0]
            assert c.execute("SELECT days_to_build FROM _wh.rollups WHERE rollup_name = %s", (rollup,)).fetchone()[0] == 0
        log(f"  build_rollup {lay['build_s']:.1f}s ({lay['rows']:,} rows from {out['base_rows']:,}), CTAS of the aggregate {out['ctas_s']:.1f}s")
        roll_q = {
            "constant 30 days": f"SELECT store, sum(n)::bigint AS n, sum(weight) AS w FROM public.{rollup} WHERE day >= '{lo}' AND day <= '{hi}' GROUP BY 1",
            "now() 30 days (Metabase)": f"SELECT store, sum(n), sum(weight) FROM public.{rollup} WHERE day >= (now() - interval '30 days')::date GROUP BY 1",
            "one tenant 30 days, its view": f"SELECT store, sum(n), sum(weight) FROM {tenant}.{rollup} WHERE day >= (now() - interval '30 days')::date GROUP BY 1",
        }
        lay["queries"] = {}
        with env.wh_reader() as r:
            assert sorted(r.execute(base_q["constant 30 days"]).fetchall()) == sorted(r.execute(roll_q["constant 30 days"]).fetchall()), \
                "the rollup answers the dashboard exactly as the base does"
            for shape, q in roll_q.items():
                p, e = median_plan_exec(r, q)
                lay["queries"][shape] = {"ms": p + e, "speedup": out["base"][shape]["ms"] / (p + e)}
        for shape, q in roll_q.items():
            t, err, msg = pgbench(env, q, PGBENCH_SECONDS)
            b = out["base"][shape]["tps"]
            lay["queries"][shape].update({"tps": t, "errors": err, "tps_ratio": t / b if b else 0})
            log(f"  {shape}: {lay['queries'][shape]['ms']:.1f} ms -> {lay['queries'][shape]['speedup']:.1f}x faster; "
                f"{t:.1f} tps ({err} errors) -> {t / b if b else 0:.1f}x the base's {msg if err else ''}")
        with env.wh_admin() as c:
            c.execute(f"DROP TABLE _wh_data.{rollup} CASCADE")
            c.execute("DELETE FROM _wh.mv_templates WHERE template_name = %s", (rollup,))
            c.execute("DELETE FROM _wh.slices WHERE template_name = %s", (rollup,))
        out["layouts"][layout] = lay
    with env.wh_admin() as c:
        c.execute("DELETE FROM _wh.slices WHERE template_name = %s", (name,))
        for t in names:
            if t != tenant:
                c.execute("SELECT _wh.remove_tenant(%s)", (t,))
    return out


def bench_rollup_refresh(env):
    """What keeping a rollup adds to a day refresh: the same changed day refreshed for a
    template without a rollup and for one with the issue's rollup (per store and hour:
    count, sum, min, max), alternately, median of 7 each."""
    out = {}
    day = TODAY - dt.timedelta(days=2)
    hourly = ("store, date_trunc('hour', logged_time) AS hour, count(*) AS n, sum(weight) AS weight, "
              "min(weight) AS lo, max(weight) AS hi", "store, date_trunc('hour', logged_time)")
    for label, rows in (("10k", n(10_000)), ("100k", n(100_000))):
        log(f"rollup upkeep {label}: seeding")
        harness.seed(env, day.isoformat(), 1, rows, tenants=("tenant_a",))
        plain, based = f"rkp{label}", f"rkr{label}"
        with env.wh_admin() as c:
            for t in (plain, based):
                c.execute(template_sql(t))
            c.execute("SELECT _wh.set_rollup(%s, %s, %s, %s)", (f"{based}_hourly", based, *hourly))
            for t in (plain, based):
                c.execute("SELECT _wh.update_mv_window(%s, 'tenant_a', %s, %s)", (t, day, day))
        times = {plain: [], based: []}
        for i in range(7):
            with env.source_super("tenant_a") as s:
                s.execute("UPDATE phood_foodlogsum SET weight = weight + 1 WHERE id = (SELECT min(id) FROM phood_foodlogsum)")
            with env.wh_admin() as c:
                for t in ((plain, based) if i % 2 == 0 else (based, plain)):
                    t0 = time.perf_counter()
                    r = c.execute("SELECT _wh.update_mv_window(%s, 'tenant_a', %s, %s, force_recreate => true)", (t, day, day)).fetchone()[0]
                    times[t].append(time.perf_counter() - t0)
                    d = r["results"][0]["details"]
                    assert r["status"] == "succeeded" and d["action"] == "refreshed", r
                    assert d.get("rollups", []) == ([f"{based}_hourly"] if t == based else []), r
        p, b = statistics.median(times[plain]), statistics.median(times[based])
        with env.wh_admin() as c:
            groups = c.execute(f"SELECT count(*) FROM public.{based}_hourly").fetchone()[0]
            c.execute(f"DROP TABLE _wh_data.{based}_hourly CASCADE")
            c.execute("DELETE FROM _wh.mv_templates WHERE template_name = %s", (f"{based}_hourly",))
            for t in (plain, based):
                c.execute(f"DROP TABLE _wh_data.{t} CASCADE")
                c.execute("DELETE FROM _wh.mv_templates WHERE template_name = %s", (t,))
            c.execute("DELETE FROM _wh.slices WHERE template_name LIKE 'rk%%'")
        out[label] = {"rows": rows, "groups": groups, "plain_s": p, "with_rollup_s": b, "added": b / p - 1}
        log(f"  {rows:,} rows, {groups} rollup rows: refresh {p:.3f}s, with its rollup {b:.3f}s -> +{(b / p - 1) * 100:.1f}%")
    RESULTS["rollup_upkeep"] = out


# ---------------------------------------------------------------- the reader stall

def bench_stall(env):
    log("reader stall: a slow dashboard query on tenant_a while tenant_a is refreshed")
    q_y = "SELECT count(*), sum(weight) FROM public.stall WHERE schema_name = 'tenant_b' AND logged_time >= now() - interval '30 days'"
    with env.wh_reader() as r:
        alone = statistics.median(timed_ms(r, q_y) for _ in range(7))
    during = []
    slow_done = threading.Event()

    def slow():
        with env.wh_reader() as r:
            r.execute("SELECT count(*), pg_sleep(8) FROM public.stall WHERE schema_name = 'tenant_a'").fetchall()
        slow_done.set()

    th = threading.Thread(target=slow)
    th.start()
    time.sleep(0.5)
    refresh_s = {}

    def refresh():
        with env.wh_admin() as c:
            t = time.perf_counter()
            c.execute("SELECT _wh.update_mv_window('stall', 'tenant_a', %s, %s, force_recreate => true)", (TODAY - dt.timedelta(days=2), TODAY))
            refresh_s["s"] = time.perf_counter() - t

    rt = threading.Thread(target=refresh)
    rt.start()
    with env.wh_reader() as r:
        while not slow_done.is_set():
            during.append(timed_ms(r, q_y))
            time.sleep(0.05)
    rt.join()
    th.join()
    RESULTS["stall"] = {"alone_ms": alone, "during_max_ms": max(during), "during_median_ms": statistics.median(during),
                        "samples": len(during), "refresh_s": refresh_s["s"]}
    log(f"  Y alone {alone:.1f} ms, during X's refresh behind an 8 s query: max {max(during):.1f} ms; refresh {refresh_s['s']:.2f} s")


def timed_ms(c, sql, params=None):
    t = time.perf_counter()
    c.execute(sql, params).fetchall()
    return (time.perf_counter() - t) * 1000


# ---------------------------------------------------------------- concurrent refreshes

def bench_concurrency(env):
    log("20 concurrent refreshes")
    with env.wh_super() as s:
        dl0 = s.execute("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()").fetchone()[0]
    out = {}
    for label, jobs in (
        ("different days of one tenant", [("tenant_a", TODAY - dt.timedelta(days=i)) for i in range(20)]),
        ("different tenants (3) and days", [(harness.TENANTS[i % 3], TODAY - dt.timedelta(days=i // 3)) for i in range(20)]),
    ):
        errors, statuses = [], []
        barrier = threading.Barrier(len(jobs))

        def run(tenant, day):
            with env.wh_admin() as c:
                barrier.wait()
                try:
                    r = c.execute("SELECT _wh.refresh_mv('stall', %s, %s)", (tenant, day)).fetchone()[0]
                    statuses.append(r["status"])
                except psycopg.Error as e:
                    errors.append(repr(e))

        t = time.perf_counter()
        threads = [threading.Thread(target=run, args=j) for j in jobs]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        out[label] = {"calls": len(jobs), "errors": len(errors), "succeeded": statuses.count("succeeded"),
                      "skipped": statuses.count("skipped"), "failed": statuses.count("failed"), "wall_s": time.perf_counter() - t}
    with env.wh_super() as s:
        out["deadlocks"] = s.execute("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()").fetchone()[0] - dl0
    RESULTS["concurrency"] = out
    log(f"  {out}")


# ---------------------------------------------------------------- ingest, unchanged refresh, backfill, fold

def source_cpu_s(env) -> float:
    """CPU seconds the source cluster's ended backends used (its postmaster's reaped
    children): the source's cost of a call whose connection closes at its end."""
    pid = int(Path(env.source.data, "postmaster.pid").read_text().split()[0])
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


def copy_pipe(env, c, first, last_exclusive, indexed: bool, fmt: str = "binary") -> tuple[float, float]:
    """The floor: `COPY (<query>) TO STDOUT` on the source (the tenant's login, over SSL)
    piped into `COPY bench_pipe FROM STDIN` here, the table with wh's indexes (`indexed`),
    or without them and the indexes built afterwards. Returns (seconds, source CPU s)."""
    c.execute("DROP TABLE IF EXISTS bench_pipe")
    c.execute(f"CREATE TABLE bench_pipe ({COLDEFS}, schema_name text)")
    if indexed:
        same_indexes(c, "bench_pipe", "bench_pipe")
    user, password = env.tenant_login("tenant_a")
    src = env.source.tcp_dsn("tenant_a", user, password, sslmode="require")
    query = (f"COPY (SELECT wh_q.*, 'tenant_a'::text AS schema_name FROM ({remote_query(first, last_exclusive)}) wh_q) "
             f"TO STDOUT (FORMAT {fmt})")
    psql = str(harness.PG_BIN / "psql")
    cpu0 = source_cpu_s(env)
    t = time.perf_counter()
    subprocess.run(f"{psql} -X -q \"$SRC\" -c \"$Q\" | {psql} -X -q \"$DST\" -c \"COPY bench_pipe FROM STDIN (FORMAT {fmt})\"",
                   shell=True, check=True, env={**os.environ, "SRC": src, "Q": query,
                                                "DST": env.warehouse.dsn(env.warehouse_db)})
    if not indexed:
        same_indexes(c, "bench_pipe", "bench_pipe")
    took = time.perf_counter() - t
    cpu = source_cpu_s(env) - cpu0
    c.execute("DROP TABLE bench_pipe")
    return took, cpu


class PrivatePeak:
    """The peak of a backend's private memory (RssAnon: its own, not the shared buffers
    it touched) while the block runs, sampled every 10 ms, minus where it started."""

    def __init__(self, pid: int):
        self.pid, self.peak, self.start = pid, 0, 0
        self.stop = threading.Event()

    def _now(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
        return 0

    def _run(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, self._now())
            time.sleep(0.01)

    def __enter__(self):
        self.start = self._now()
        self.thread = threading.Thread(target=self._run)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self.kb = max(0, self.peak - self.start)


def bench_ingest(env):
    out = {}
    for label, rows in (("10k", n(10_000)), ("100k", n(100_000)), ("1M", n(1_000_000))):
        day = TODAY - dt.timedelta(days=3)
        log(f"ingest {label}: seeding")
        harness.seed(env, day.isoformat(), 1, rows, tenants=("tenant_a",))
        name = f"ing{label.lower()}"
        with env.wh_admin() as c:
            c.execute(template_sql(name))
            c.execute("SELECT _wh._prepare_days(%s, %s, %s)", (name, day, day))
            c.execute("SELECT _wh.update_tenant_union_view(%s, 'tenant_a')", (name,))
            pid = c.execute("SELECT pg_backend_pid()").fetchone()[0]
            cpu0 = source_cpu_s(env)
            with PrivatePeak(pid) as mem:
                t = time.perf_counter()
                r = c.execute("SELECT _wh.create_mv_from_template(%s, 'tenant_a', target_date => %s)", (name, day)).fetchone()[0]
                wh_s = time.perf_counter() - t
            wh_cpu = source_cpu_s(env) - cpu0
            peak = mem.kb
            assert r["status"] == "succeeded" and r["rows"] == rows, r
            # The same day again, unchanged at the source: nothing but registry and run log.
            lsn0 = c.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
            t = time.perf_counter()
            r2 = c.execute("SELECT _wh.refresh_mv(%s, 'tenant_a', %s)", (name, day)).fetchone()[0]
            unchanged_s = time.perf_counter() - t
            wal = c.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", (lsn0,)).fetchone()[0]
            assert r2["details"]["action"] == "unchanged", r2
            # As many rows on a day of a month that has no partition yet: built aside.
            day2 = day - dt.timedelta(days=400)
            harness.seed(env, day2.isoformat(), 1, rows, tenants=("tenant_a",), append=True)
            t = time.perf_counter()
            r3 = c.execute("SELECT _wh.create_mv_from_template(%s, 'tenant_a', target_date => %s)", (name, day2)).fetchone()[0]
            new_month_s = time.perf_counter() - t
            assert r3["details"].get("partition_load") == "built aside and attached" and r3["rows"] == rows, r3
            c.execute("DROP TABLE IF EXISTS bench_ctas")
            t = time.perf_counter()
            c.execute(f"CREATE TABLE bench_ctas AS SELECT *, 'tenant_a'::text AS schema_name FROM dblink('wh_tenant_a', %s) AS t({COLDEFS})",
                      (remote_query(day, day + dt.timedelta(days=1)),))
            same_indexes(c, "bench_ctas", "bench_ctas")
            ctas_s = time.perf_counter() - t
            c.execute("DROP TABLE bench_ctas")
            nxt = day + dt.timedelta(days=1)
            pipe_s, pipe_cpu = copy_pipe(env, c, day, nxt, indexed=True)
            pipe_text_s, _ = copy_pipe(env, c, day, nxt, indexed=True, fmt="text")
            bulk_s, _ = copy_pipe(env, c, day, nxt, indexed=False)
            c.execute(f"DROP TABLE _wh_data.{name} CASCADE")
            c.execute("DELETE FROM _wh.slices WHERE template_name = %s", (name,))
            c.execute("DELETE FROM _wh.mv_templates WHERE template_name = %s", (name,))
        out[label] = {"rows": rows, "wh_s": wh_s, "ctas_s": ctas_s, "ratio": wh_s / ctas_s,
                      "copy_pipe_s": pipe_s, "copy_pipe_text_s": pipe_text_s, "copy_bulk_s": bulk_s,
                      "ratio_pipe": wh_s / pipe_s, "ratio_bulk": wh_s / bulk_s,
                      "new_month_s": new_month_s, "new_month_ratio_bulk": new_month_s / bulk_s,
                      "source_cpu_s": wh_cpu, "pipe_source_cpu_s": pipe_cpu,
                      "source_cpu_ratio": wh_cpu / pipe_cpu if pipe_cpu else None, "peak_kb": peak,
                      "unchanged_refresh_s": unchanged_s, "unchanged_ratio": unchanged_s / wh_s,
                      "unchanged_refresh_wal_bytes": int(wal)}
        log(f"  wh {wh_s:.2f}s ctas {ctas_s:.2f}s -> {wh_s / ctas_s:.2f}x; binary COPY pipe {pipe_s:.2f}s -> {wh_s / pipe_s:.2f}x "
            f"(text pipe {pipe_text_s:.2f}s, bulk {bulk_s:.2f}s -> {wh_s / bulk_s:.2f}x); source CPU {wh_cpu:.2f}s vs {pipe_cpu:.2f}s; "
            f"into a new month {new_month_s:.2f}s ({new_month_s / bulk_s:.2f}x bulk); "
            f"private memory peak +{peak:,} kB; unchanged refresh {unchanged_s:.2f}s ({unchanged_s / wh_s:.2f}x), {int(wal):,} WAL bytes")
    RESULTS["ingest"] = out


def bench_backfill_and_fold(env):
    rows = n(10_000)
    first = TODAY - dt.timedelta(days=364)
    log(f"backfill: seeding 365 days x {rows:,} rows")
    harness.seed(env, first.isoformat(), 365, rows, tenants=("tenant_a",))
    with env.wh_admin() as c:
        c.execute(template_sql("yearly"))
        t = time.perf_counter()
        c.execute("CALL _wh.backfill('yearly', 'tenant_a', %s, %s)", (first, TODAY))
        wh_s = time.perf_counter() - t
        total = c.execute("SELECT count(*) FROM public.yearly").fetchone()[0]
        c.execute("DROP TABLE IF EXISTS bench_bulk")
        t = time.perf_counter()
        c.execute(f"CREATE TABLE bench_bulk AS SELECT *, 'tenant_a'::text AS schema_name FROM dblink('wh_tenant_a', %s) AS t({COLDEFS})",
                  (remote_query(first, TODAY + dt.timedelta(days=1)),))
        same_indexes(c, "bench_bulk", "bench_bulk")
        bulk_s = time.perf_counter() - t
        c.execute("DROP TABLE bench_bulk")
        copy_bulk_s, _ = copy_pipe(env, c, first, TODAY + dt.timedelta(days=1), indexed=False)
    RESULTS["backfill"] = {"days": 365, "rows": total, "wh_s": wh_s, "bulk_ctas_s": bulk_s, "ratio": wh_s / bulk_s,
                           "copy_bulk_s": copy_bulk_s, "ratio_bulk": wh_s / copy_bulk_s}
    log(f"  backfill wh {wh_s:.1f}s bulk CTAS {bulk_s:.1f}s -> {wh_s / bulk_s:.2f}x; binary COPY + index builds {copy_bulk_s:.1f}s -> {wh_s / copy_bulk_s:.2f}x")
    # Reconciliation of the same year: every day's rows and checksum computed on the source
    # (a query per month) against the stored rows', once in order and once with drift.
    with env.wh_admin() as c:
        t = time.perf_counter()
        r = c.execute("SELECT _wh.verify('yearly', 'tenant_a', %s, %s, max_days => 366)", (first, TODAY)).fetchone()[0]
        verify_s = time.perf_counter() - t
        assert r["details"]["in_order"] == 365 and r["details"]["drifted"] == [], r
    with env.source_super("tenant_a") as s:
        s.execute("UPDATE phood_foodlogsum SET weight = weight + 1 WHERE id IN (SELECT min(id) FROM phood_foodlogsum "
                  "GROUP BY logged_time::date ORDER BY 1 LIMIT 3)")
    with env.wh_admin() as c:
        t = time.perf_counter()
        r = c.execute("SELECT _wh.verify('yearly', 'tenant_a', %s, %s, repair => true, max_days => 366)", (first, TODAY)).fetchone()[0]
        repair_s = time.perf_counter() - t
        assert len(r["details"]["repaired"]) == 3, r
    RESULTS["verify"] = {"days": 365, "rows": total, "verify_s": verify_s, "backfill_s": wh_s, "ratio": verify_s / wh_s,
                         "repair_3_days_s": repair_s}
    log(f"  verify a year {verify_s:.1f}s ({verify_s / wh_s:.2f}x the backfill); with 3 drifted days repaired {repair_s:.1f}s")
    year = TODAY.year - 1
    with env.wh_admin() as c:
        t = time.perf_counter()
        r = c.execute("SELECT _wh.create_combined_table_by_year('yearly', NULL, %s)", (year,)).fetchone()[0]
        fold_s = time.perf_counter() - t
        assert r["status"] == "succeeded", r
        c.execute("DROP TABLE IF EXISTS bench_foldctas")
        t = time.perf_counter()
        c.execute(f"CREATE TABLE bench_foldctas AS SELECT * FROM public.yearly WHERE logged_time >= '{year}-01-01' "
                  f"AND logged_time < '{year + 1}-01-01' ORDER BY schema_name, logged_time")
        same_indexes(c, "bench_foldctas", "bench_foldctas")
        c.execute("ANALYZE bench_foldctas")
        ctas_s = time.perf_counter() - t
        c.execute("DROP TABLE bench_foldctas")
    RESULTS["fold"] = {"rows": r["rows"], "wh_s": fold_s, "ctas_s": ctas_s, "ratio": fold_s / ctas_s, "phase_ms": r["details"]["phase_ms"]}
    log(f"  fold of {r['rows']:,} rows: wh {fold_s:.2f}s CTAS {ctas_s:.2f}s -> {fold_s / ctas_s:.2f}x")


SLOW = """
CREATE OR REPLACE FUNCTION public.bench_slow() RETURNS int LANGUAGE sql AS $$ SELECT 0 FROM pg_sleep(2) $$;
GRANT EXECUTE ON FUNCTION public.bench_slow() TO PUBLIC;
"""


def bench_fanout(env):
    """Eight tenants whose sources each take 2 s a day, refreshed together by
    `update_all_tenants` (the target day and its lookback day), against one tenant's same
    two days alone: answers overlap, so the eight take about as long as one."""
    day = TODAY - dt.timedelta(days=3)
    q = ("SELECT f.id, f.logged_time, f.name FROM phood_foodlogsum f, (SELECT public.bench_slow() AS s) wh_s "
         "WHERE f.logged_time >= '{TARGET_DATE}'::date AND f.logged_time < '{TARGET_DATE}'::date + 1")
    extra = [f"bench_f{i}" for i in range(1, 6)]
    for t in harness.TENANTS:
        with env.source_super(t) as s:
            s.execute(SLOW)
    with env.wh_admin() as c:
        for i, name in enumerate(extra):
            src = harness.TENANTS[i % 3]
            user, password = env.tenant_login(src)
            c.execute("SELECT _wh.set_tenant_connection(%s, '127.0.0.1', %s, %s, %s, %s)", (name, env.source.port, src, user, password))
        c.execute("SELECT _wh.set_template('fanslow', %s, 'id bigint, logged_time timestamptz, name text', 'logged_time', "
                  "lookback_days => 1)", (q,))
        t = time.perf_counter()
        r = c.execute("SELECT _wh.update_mv_window('fanslow', 'tenant_a', %s, %s)", (day - dt.timedelta(days=1), day)).fetchone()[0]
        one_s = time.perf_counter() - t
        assert r["failed"] == 0, r
        t = time.perf_counter()
        r = c.execute("SELECT _wh.update_all_tenants('fanslow', %s)", (day,)).fetchone()[0]
        all_s = time.perf_counter() - t
        assert r["failed"] == 0 and r["tenants"] == 8, r
        c.execute("SELECT _wh.drop_template('fanslow')")
        for name in extra:
            c.execute("SELECT _wh.remove_tenant(%s, drop_data => true)", (name,))
    RESULTS["fanout"] = {"tenants": 8, "one_s": one_s, "all_s": all_s, "ratio": all_s / one_s}
    log(f"  fan-out of 8 tenants each 2 s a day: {all_s:.2f}s against one tenant's {one_s:.2f}s -> {all_s / one_s:.2f}x")


# ---------------------------------------------------------------- a thousand tenants: the pool's hourly cycle

POOL_Q = (f"SELECT {COLS} FROM pool_rows WHERE tenant = current_user::text COLLATE \"default\" "
          "AND logged_time >= '{TARGET_DATE}'::date AND logged_time < '{TARGET_DATE}'::date + 1")
POOL_GEN = """
INSERT INTO pool_rows (tenant, {cols})
SELECT 'bp' || lpad(t::text, 4, '0'), t::bigint * 100000000 + d * 100000 + i + %(off)s, 'store_' || ((i * 7 + t) %% 40),
       'station_' || (i %% 12), 'ok', 'region_' || (t %% 5), i %% 9, 'action', 'item_' || (i %% 300), 1 + i %% 5,
       (i %% 1000) / 10.0, (i %% 5000) / 10.0, 'client_' || t, 'cat_' || (i %% 8), 2.5, 1.0, 3.0, 'reason', t,
       %(first)s::timestamptz + d * interval '1 day' + ((i + %(off)s) * 86399.0 / (%(rows)s + %(off)s + 1)) * interval '1 second', ARRAY['a']
FROM generate_series(1, %(tenants)s) t, generate_series(0, %(days)s - 1) d, generate_series(0, %(rows)s - 1) i
WHERE t %% 3 = %(k)s
"""


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pool_cycle(env, workers):
    """One cycle of the pool as pg_cron runs it: `workers` sessions of the operator login,
    each `CALL _wh.run_pool(k)`, at once, until the queue is empty. Wall seconds, the
    warehouse CPU seconds of the workers' backends, the peak of wh's source connections
    (sampled every 20 ms on the source) and the source's CPU seconds."""
    peak, stop, cpu = [0], threading.Event(), []

    def sample():
        with env.source.connect() as s:
            while not stop.is_set():
                peak[0] = max(peak[0], s.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'wh'").fetchone()[0])
                time.sleep(0.02)

    def work(k):
        with env.wh_admin() as c:
            pid = c.execute("SELECT pg_backend_pid()").fetchone()[0]
            c.execute("CALL _wh.run_pool(%s)", (k,))
            cpu.append(proc_cpu_s(pid))

    th = threading.Thread(target=sample)
    th.start()
    src0 = source_cpu_s(env)
    t = time.perf_counter()
    ws = [threading.Thread(target=work, args=(k,)) for k in range(1, workers + 1)]
    for w in ws:
        w.start()
    for w in ws:
        w.join()
    wall = time.perf_counter() - t
    stop.set()
    th.join()
    return {"wall_s": wall, "warehouse_cpu_s": sum(cpu), "peak_source_connections": peak[0],
            "source_cpu_s": source_cpu_s(env) - src0}


def pool_floor(env, first, last_exclusive):
    """The floor for the same rows: one binary COPY pipe per source database (three at once),
    from the source over SSL into one flat table with the template's indexes."""
    with env.wh_super() as c:
        c.execute("DROP TABLE IF EXISTS pool_flat")
        c.execute(f"CREATE TABLE pool_flat ({COLDEFS}, schema_name text)")
        same_indexes(c, "pool_flat", "pool_flat")
    psql = str(harness.PG_BIN / "psql")
    cmds = []
    for src in harness.TENANTS:
        user, password = env.tenant_login(src)
        q = (f"COPY (SELECT {COLS}, tenant AS schema_name FROM pool_rows WHERE logged_time >= '{first}' "
             f"AND logged_time < '{last_exclusive}') TO STDOUT (FORMAT binary)")
        cmds.append({**os.environ, "SRC": env.source.tcp_dsn(src, user, password, sslmode="require"), "Q": q,
                     "DST": env.warehouse.dsn(env.warehouse_db)})
    t = time.perf_counter()
    procs = [subprocess.Popen(f"{psql} -X -q \"$SRC\" -c \"$Q\" | {psql} -X -q \"$DST\" -c \"COPY pool_flat FROM STDIN (FORMAT binary)\"",
                              shell=True, env=e) for e in cmds]
    assert all(p.wait() == 0 for p in procs)
    took = time.perf_counter() - t
    with env.wh_super() as c:
        rows = c.execute("SELECT count(*) FROM pool_flat").fetchone()[0]
        c.execute("DROP TABLE pool_flat")
    return took, rows


def bench_pool(env):
    """A thousand tenants on one source server (three databases, each holding a third of the
    tenants' rows; each tenant reads only its own rows, as its own login over SSL + scram:
    `WHERE tenant = current_user`), 1,000 rows a tenant-day, today and yesterday: the refresh
    pool's hourly cycle with its default four workers and connection bounds."""
    tenants, rows = 1000, n(1000)
    first = TODAY - dt.timedelta(days=1)
    log(f"pool: {tenants} tenants x 2 days x {rows} rows: sources")
    with env.source.connect() as s:
        s.execute("DROP ROLE IF EXISTS bp_all")
        s.execute("CREATE ROLE bp_all NOLOGIN")
        s.execute("DO $$ BEGIN FOR t IN 1..%s LOOP EXECUTE format('CREATE ROLE %%I LOGIN PASSWORD %%L IN ROLE bp_all', "
                  "'bp' || lpad(t::text, 4, '0'), 'bp-pw'); END LOOP; END $$" % tenants)
        for src in harness.TENANTS:
            s.execute(f"GRANT CONNECT ON DATABASE {src} TO bp_all")
    for k, src in enumerate(harness.TENANTS):
        with env.source_super(src) as s:
            s.execute(f"DROP TABLE IF EXISTS pool_rows; CREATE TABLE pool_rows (tenant text NOT NULL, {COLDEFS})")
            s.execute(POOL_GEN.format(cols=COLS), {"off": 0, "first": first, "rows": rows, "tenants": tenants, "days": 2, "k": k})
            s.execute("CREATE INDEX ON pool_rows (tenant, logged_time)")
            s.execute(f"GRANT SELECT ON pool_rows TO bp_all, {src}_ro")
            s.execute("ANALYZE pool_rows")
    names = [f"bp{t:04d}" for t in range(1, tenants + 1)]
    with env.wh_admin() as c:
        t0 = time.perf_counter()
        for i, name in enumerate(names):
            c.execute("SELECT _wh.set_tenant_connection(%s, '127.0.0.1', %s, %s, %s, 'bp-pw', test_first => false)",
                      (name, env.source.port, harness.TENANTS[(i + 1) % 3], name))
        register_s = time.perf_counter() - t0
        c.execute("SELECT _wh.set_template('poolbench', %s, %s, 'logged_time', unique_key => 'id', "
                  "indexes => ARRAY['unique (id)', '(logged_time)', '(store)'], lookback_days => 1)", (POOL_Q, COLDEFS))
        every = c.execute("SELECT count(*) FROM _wh.tenant_connections").fetchone()[0]
        c.execute("SELECT _wh.schedule_refresh('poolbench', '1 hour')")
        for (jobid,) in c.execute("SELECT jobid FROM _wh.jobs WHERE jobname LIKE 'wh:pool:%%'").fetchall():
            c.execute("SELECT _wh._cron_set_active(%s, false)", (jobid,))
        workers = c.execute("SELECT count(*) FROM _wh.jobs WHERE jobname LIKE 'wh:pool:%%'").fetchone()[0]
    log(f"pool: {tenants} tenants registered in {register_s:.0f}s; cycle 1 (every day new)")
    # The demo tenants (registered by setup) are in the queue too, with no rows of their own.
    out = {"tenants": every, "rows_per_day": rows, "workers": workers, "register_s": register_s,
           "max_source_connections": 16, "max_connections_per_host": 4}
    out["new"] = pool_cycle(env, workers)
    with env.wh_admin() as c:
        done = c.execute("SELECT count(*) FILTER (WHERE last_status = 'succeeded'), count(*) FROM _wh.pool_items "
                         "WHERE template_name = 'poolbench' AND refreshes = 1").fetchone()
        days = c.execute("SELECT count(*), sum(row_count) FROM _wh.slices WHERE template_name = 'poolbench'").fetchone()
    assert done == (every, every) and days == (2 * every, 2 * tenants * rows), (done, days)
    # An hour later: today grew by 1% at every tenant, yesterday is unchanged.
    for k, src in enumerate(harness.TENANTS):
        with env.source_super(src) as s:
            s.execute(POOL_GEN.format(cols=COLS), {"off": rows, "first": TODAY, "rows": max(1, rows // 100),
                                                   "tenants": tenants, "days": 1, "k": k})
    with env.wh_super() as s:
        s.execute("UPDATE _wh.pool_items SET next_due = next_due - interval '1 hour' WHERE template_name = 'poolbench'")
    log("pool: cycle 2 (today grew by 1%, yesterday unchanged)")
    out["hourly"] = pool_cycle(env, workers)
    with env.wh_admin() as c:
        assert c.execute("SELECT count(*) FROM _wh.pool_items WHERE template_name = 'poolbench' AND refreshes = 2 "
                         "AND last_status = 'succeeded'").fetchone()[0] == every
        out["monitoring_ms"] = {}
        for what, sql in [("_wh.pool", "SELECT * FROM _wh.pool"), ("_wh.freshness", "SELECT * FROM _wh.freshness"),
                          ("_wh.storage", "SELECT * FROM _wh.storage"), ("_wh.gaps", "SELECT * FROM _wh.gaps"),
                          ("_wh.health()", "SELECT _wh.health()"), ("_wh.jobs", "SELECT * FROM _wh.jobs"),
                          ("_wh.pool_workers", "SELECT * FROM _wh.pool_workers")]:
            out["monitoring_ms"][what] = timed_ms(c, sql)
    out["floor_s"], floor_rows = pool_floor(env, first, TODAY + dt.timedelta(days=1))
    out["floor_rows"] = floor_rows
    out["ratio_new"] = out["new"]["wall_s"] / out["floor_s"]
    log(f"pool: cycle 1 {out['new']['wall_s']:.0f}s, cycle 2 {out['hourly']['wall_s']:.0f}s, floor {out['floor_s']:.1f}s "
        f"({floor_rows:,} rows); peak source connections {out['new']['peak_source_connections']}/"
        f"{out['hourly']['peak_source_connections']}; monitoring {out['monitoring_ms']}")
    with env.wh_admin() as c:
        for (jobid,) in c.execute("SELECT jobid FROM _wh.jobs WHERE jobname LIKE 'wh:pool:%%'").fetchall():
            c.execute("SELECT _wh._cron_unschedule(%s)", (jobid,))
        c.execute("SELECT _wh.drop_template('poolbench')")
        for name in names:
            c.execute("SELECT _wh.remove_tenant(%s)", (name,))
    RESULTS["pool"] = out


# ---------------------------------------------------------------- monitoring at a thousand tenants

def bench_monitoring(env):
    """What a DBA reads about every tenant, at 1,000 tenants x 2 templates x 365 registered
    days (730,000 registry rows, written directly: the views read the registry, and the
    tables stay empty) and 720,000 run-log rows of the last six hours, as the operator login
    (best of 3); and one tenant paused, resumed, renamed, removed."""
    log("monitoring: 1,000 tenants x 2 templates x 365 days")
    names = [f"mt{i:04d}" for i in range(1000)]
    user, password = env.tenant_login("tenant_a")
    with env.wh_admin() as c:
        for tp in ("mon_a", "mon_b"):
            harness.register_template(c, tp)
        for name in names:
            c.execute("SELECT _wh.set_tenant_connection(%s, '127.0.0.1', %s, 'tenant_a', %s, %s, test_first => false)",
                      (name, env.source.port, user, password))
    with env.wh_super() as s:
        s.execute("INSERT INTO _wh.slices (template_name, tenant_name, schema_name, slice_name, kind, range_start, range_end, "
                  "row_count, checksum, build_ms) "
                  "SELECT tp, n, n, tp || '_' || to_char(%s::date - d, 'YYYY_MM_DD'), 'day', %s::date - d, %s::date - d + 1, 20, '0', 5 "
                  "FROM (VALUES ('mon_a'), ('mon_b')) v(tp), unnest(%s::text[]) n, generate_series(0, 364) d",
                  (TODAY, TODAY, TODAY, names))
        s.execute("INSERT INTO _wh.run_log (operation, status, tenant_name, template_name, target_date, started_at) "
                  "SELECT 'update_mv_by_template', 'succeeded', n, tp, %s::date - (g %% 2), now() - g * interval '1 minute' "
                  "FROM unnest(%s::text[]) n, (VALUES ('mon_a'), ('mon_b')) v(tp), generate_series(1, 360) g", (TODAY, names))
        s.execute("VACUUM ANALYZE _wh.slices")
        s.execute("VACUUM ANALYZE _wh.run_log")
        registry = s.execute("SELECT count(*) FROM _wh.slices WHERE template_name IN ('mon_a', 'mon_b')").fetchone()[0]
    out = {"tenants": len(names), "templates": 2, "registry_rows": registry, "views_ms": {}, "tenant_ms": {}}
    with env.wh_admin() as c:
        # Written straight into the registry: every pair changed and not settled yet (the
        # worst case), then settled as the nightly maintenance job settles every pair.
        out["unsettled_ms"] = {v: timed_ms(c, f"SELECT * FROM {v}") for v in ("_wh.storage", "_wh.gaps")}
        out["settle_all_ms"] = timed_ms(c, "SELECT _wh._settle_pairs(true)")
    with env.wh_super() as s:
        s.execute("VACUUM ANALYZE _wh.pair_stats, _wh.pair_changes")
    with env.wh_admin() as c:
        for what, sql in [("_wh.freshness", "SELECT * FROM _wh.freshness"), ("_wh.health()", "SELECT _wh.health()"),
                          ("_wh.storage", "SELECT * FROM _wh.storage"), ("_wh.gaps", "SELECT * FROM _wh.gaps"),
                          ("_wh.failures", "SELECT * FROM _wh.failures"), ("_wh.rollups", "SELECT * FROM _wh.rollups"),
                          ("_wh.pool", "SELECT * FROM _wh.pool"), ("_wh.jobs", "SELECT * FROM _wh.jobs")]:
            out["views_ms"][what] = min(timed_ms(c, sql) for _ in range(3))
        for what, sql in [("pause_tenant", "SELECT _wh.pause_tenant('mt0500')"), ("resume_tenant", "SELECT _wh.resume_tenant('mt0500')"),
                          ("rename_tenant", "SELECT _wh.rename_tenant('mt0501', 'mt0501x')"),
                          ("remove_tenant", "SELECT _wh.remove_tenant('mt0502')")]:
            out["tenant_ms"][what] = timed_ms(c, sql)
        log(f"monitoring: {out}")
        c.execute("SELECT _wh.drop_template('mon_a')")
        c.execute("SELECT _wh.drop_template('mon_b')")
        for name in names:
            if name != "mt0502":
                c.execute("SELECT _wh.remove_tenant(%s, drop_data => true)", ("mt0501x" if name == "mt0501" else name,))
    RESULTS["monitoring"] = out


def anon_kb(pid: int) -> int:
    """The backend's private memory now (RssAnon: its heap, sorts, hash tables; not the
    shared buffers it maps)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
    return 0


def last_year_registered(env, name, tenants, rows):
    """Template `name` holding last year of `tenants` tenants x every day x `rows` rows
    (`days_registered`). The year and its number of days."""
    year = TODAY.year - 1
    first, last = dt.date(year, 1, 1), dt.date(year, 12, 31)
    days_registered(env, name, tenants, first, last, rows)
    return year, (last - first).days + 1


def days_registered(env, name, tenants, first, last, rows, shard_count=None):
    """Template `name` holding `first`..`last` of `tenants` tenants x every day x `rows` rows,
    written straight into its table and registered by count (no checksum: a fold compares
    such days by count alone), every table analyzed; distributed first (empty) into
    `shard_count` shards when given (a Citus coordinator)."""
    days = (last - first).days + 1
    names = [f"f{t:04d}" for t in range(1, tenants + 1)]
    with env.wh_admin() as c:
        c.execute(template_sql(name))
        if shard_count:
            c.execute("SELECT _wh.distribute(%s, %s)", (name, shard_count))
        c.execute("SELECT _wh._prepare_days(%s, %s, %s)", (name, first, last))
        for t, tenant in enumerate(names, 1):
            c.execute(GENERATE.format(rel=f"_wh_data.{name}", cols=COLS),
                      {"t": t, "first": first, "days": days, "rows": rows, "tenant": tenant})
    with env.wh_super() as s:
        s.execute("INSERT INTO _wh.slices (template_name, tenant_name, schema_name, slice_name, kind, range_start, range_end, row_count) "
                  "SELECT %s, n, n, %s || '_' || to_char(d, 'YYYY_MM_DD'), 'day', d, d + 1, %s "
                  "FROM unnest(%s::text[]) n, generate_series(%s::date, %s::date, interval '1 day') g, LATERAL (SELECT g::date AS d) x",
                  (name, name, rows, names, first, last))
        s.execute("SELECT _wh._settle_pairs(true)")
        s.execute("VACUUM ANALYZE _wh.slices")
        s.execute(f"VACUUM ANALYZE _wh_data.{name}")


def fold_for(env, name, tenants, rows):
    """Fold last year of `tenants` tenants x every day x `rows` rows (registered days, rows
    written straight into the month partitions). The fold's time against a CTAS of the
    same rows; the folding backend's peak private memory and relation locks, sampled."""
    year, days = last_year_registered(env, name, tenants, rows)
    out = {"tenants": tenants, "tenant_days": tenants * days, "rows_per_day": rows}
    with env.wh_admin() as c:
        pid = c.execute("SELECT pg_backend_pid()").fetchone()[0]
        base_kb, peak_kb, stop = anon_kb(pid), [0], threading.Event()

        def sample_memory():
            while not stop.is_set():
                peak_kb[0] = max(peak_kb[0], anon_kb(pid))
                time.sleep(0.01)

        th = threading.Thread(target=sample_memory)
        th.start()
        t = time.perf_counter()
        try:
            r, locks = harness.peak_while(
                env.wh_super, f"SELECT count(*) FROM pg_locks WHERE pid = {pid} AND locktype = 'relation'",
                lambda: c.execute("SELECT _wh.create_combined_table_by_year(%s, NULL, %s)", (name, year)).fetchone()[0])
        finally:
            stop.set()
            th.join()
        out["wh_s"] = time.perf_counter() - t
        assert r["status"] == "succeeded", r
        out["rows"] = r["rows"]
        out["peak_private_mb"] = (peak_kb[0] - base_kb) / 1024
        out["peak_relation_locks"] = locks
        out["phase_ms"] = r["details"]["phase_ms"]
        t = time.perf_counter()
        c.execute(f"CREATE TABLE bench_foldctas AS SELECT * FROM public.{name} ORDER BY schema_name, logged_time")
        same_indexes(c, "bench_foldctas", "bench_foldctas")
        c.execute("ANALYZE bench_foldctas")
        out["ctas_s"] = time.perf_counter() - t
        out["ratio"] = out["wh_s"] / out["ctas_s"]
        c.execute("DROP TABLE bench_foldctas")
        c.execute("SELECT _wh.drop_template(%s)", (name,))
    with env.wh_super() as s:
        s.execute("DELETE FROM _wh.slices WHERE template_name = %s", (name,))
        s.execute("SELECT _wh._settle_pairs()")
    log(f"  fold of {tenants} tenants' year ({out['rows']:,} rows): wh {out['wh_s']:.1f}s CTAS {out['ctas_s']:.1f}s "
        f"-> {out['ratio']:.2f}x; peak private memory +{out['peak_private_mb']:.0f} MB, {locks} relation locks at most")
    return out


def bench_fold1000(env):
    """A year folded for every tenant at 100 and at 1,000 tenants x 365 days x 20 rows: what
    grows with the tenants (memory, locks) and what does not."""
    rows = max(1, n(20))
    RESULTS["fold1000"] = {str(t): fold_for(env, f"fold{t}", t, rows) for t in (100, 1000)}


def year_shapes(rel, year, tenant):
    """What a dashboard asks of a finished year: every tenant by month, one tenant by month,
    one tenant's busiest stores."""
    span = f"logged_time >= '{year}-01-01' AND logged_time < '{year + 1}-01-01'"
    return {
        "full year, every tenant by month": f"SELECT schema_name, date_trunc('month', logged_time), sum(weight) FROM {rel} "
                                            f"WHERE {span} GROUP BY 1, 2",
        "full year, one tenant by month": f"SELECT date_trunc('month', logged_time), count(*), sum(weight) FROM {rel} "
                                          f"WHERE schema_name = '{tenant}' AND {span} GROUP BY 1",
        "full year, one column over every row": f"SELECT sum(weight) FROM {rel} WHERE {span}",
    }


def year_bytes(c, rel):
    return c.execute("SELECT pg_relation_size(%s::regclass), pg_total_relation_size(%s::regclass)", (rel, rel)).fetchone()


def bench_columnar(env):
    """Last year of 1,000 tenants x 365 days x 20 rows: folded as heap, then compressed to
    columnar (the nightly maintenance's path), against a flat heap table of the same rows
    (sorted, the same indexes): bytes on disk and the full-year shapes, jit on and off, read
    by the BI login. Then what a late change to the columnar year costs (rewritten as heap)."""
    tenants, rows = 1000, max(1, n(20))
    name = "colyear"
    with env.wh_super() as s:
        s.execute("CREATE EXTENSION IF NOT EXISTS citus_columnar")
    year, _ = last_year_registered(env, name, tenants, rows)
    out = {"tenants": tenants, "rows_per_day": rows}
    with env.wh_admin() as c:
        c.execute(f"CREATE TABLE bench_colflat AS SELECT * FROM public.{name} ORDER BY schema_name, logged_time")
        same_indexes(c, "bench_colflat", "bench_colflat")
        c.execute("ANALYZE bench_colflat")
        c.execute("GRANT SELECT ON bench_colflat TO wh_reader")
        out["rows"] = c.execute("SELECT count(*) FROM bench_colflat").fetchone()[0]
        t = time.perf_counter()
        r = c.execute("SELECT _wh.create_combined_table_by_year(%s, NULL, %s)", (name, year)).fetchone()[0]
        out["fold_heap_s"] = time.perf_counter() - t
        assert r["status"] == "succeeded", r
        part = f"_wh_data.{name}_{year}"
        out["bytes"] = {"flat": year_bytes(c, "bench_colflat"), "heap": year_bytes(c, part)}
    measured, cold = {}, {}

    def read_all(label, rel):
        with env.wh_reader() as c:
            for jit in ("on", "off"):
                c.execute(f"SET jit = {jit}")
                for shape, sql in year_shapes(rel, year, "f0500").items():
                    measured.setdefault(f"{shape} (jit {jit})", {})[label] = median_plan_exec(c, sql, runs=3)[1]
        # A finished year is mostly read from disk: the first read after a restart with the
        # OS page cache dropped (the server's defaults, jit on).
        for shape, sql in year_shapes(rel, year, "f0250").items():
            env.warehouse.stop()
            subprocess.run(["sh", "-c", "sync; echo 3 > /proc/sys/vm/drop_caches"], check=True)
            env.warehouse.start()
            with env.wh_reader() as c:
                cold.setdefault(shape, {})[label] = c.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql).fetchone()[0][0]["Execution Time"]

    read_all("flat", "bench_colflat")
    read_all("heap", f"public.{name}")
    with env.wh_super() as s:
        # The year recorded as columnar and heap now: what the nightly maintenance compresses
        # (a fold with fold_storage => 'columnar' builds it the same way).
        s.execute("UPDATE _wh.folded_years SET storage = 'columnar' WHERE template_name = %s", (name,))
    with env.wh_admin() as c:
        t = time.perf_counter()
        m = c.execute("SELECT _wh.run_maintenance()").fetchone()[0]
        out["compress_s"] = time.perf_counter() - t
        assert [x["status"] for x in m["details"]["years_compressed"]] == ["succeeded"], m
        out["bytes"]["columnar"] = year_bytes(c, part)
    read_all("columnar", f"public.{name}")
    out["shapes_ms"] = measured
    out["cold_ms"] = cold
    with env.wh_admin() as c:
        # A late change to one tenant's days of the columnar year: the year is rewritten as heap.
        t = time.perf_counter()
        r = c.execute("SELECT _wh.apply_retention(%s, 'f0500', %s)", (name, dt.date(year, 2, 1))).fetchone()[0]
        out["late_change_s"] = time.perf_counter() - t
        assert r["status"] == "succeeded", r
        c.execute("DROP TABLE bench_colflat")
        c.execute("SELECT _wh.drop_template(%s)", (name,))
    with env.wh_super() as s:
        s.execute("DELETE FROM _wh.slices WHERE template_name = %s", (name,))
        s.execute("SELECT _wh._settle_pairs()")
    b = out["bytes"]
    log(f"  columnar year: {b['columnar'][1] / b['heap'][1]:.2f}x heap bytes with indexes ({b['columnar'][0] / b['heap'][0]:.2f}x "
        f"table only); compress {out['compress_s']:.0f}s, fold {out['fold_heap_s']:.0f}s, late change {out['late_change_s']:.0f}s")
    RESULTS["columnar"] = out


# ---------------------------------------------------------------- past one machine: Citus
def bench_citus(env):
    """The BI shapes on a Citus cluster (a coordinator and two workers on this same machine)
    against the same rows on one node (the harness's warehouse), read by the BI login in one
    run; the plan of a one-tenant query; a backfill and a changed day's refresh of the same
    sources on both."""
    sys.path.insert(0, str(harness.ROOT / "distributed"))
    import cluster
    tenants, days, rows = 200, 90, n(100)
    name, fetched = "citread", "citfetch"
    out = {"tenants": tenants, "days": days, "rows_per_day": rows, "shard_count": 32}
    cenv, nodes = cluster.start(env)
    try:
        with cenv.wh_admin() as c:
            harness.register_tenants(cenv, c)
        sides = {"one node": env, "cluster": cenv}
        user, password = env.tenant_login("tenant_a")
        for label, e in sides.items():
            with e.wh_admin() as c:
                # Registered tenants (health() probes each one's newest day), served by tenant_a's source.
                for t in range(1, tenants + 1):
                    c.execute("SELECT _wh.set_tenant_connection(%s, '127.0.0.1', %s, 'tenant_a', %s, %s, test_first => false)",
                              (f"f{t:04d}", env.source.port, user, password))
            t = time.perf_counter()
            days_registered(e, name, tenants, TODAY - dt.timedelta(days=days - 1), TODAY, rows,
                            shard_count=out["shard_count"] if label == "cluster" else None)
            out.setdefault("load_s", {})[label] = time.perf_counter() - t
        measured = {}
        for label, e in sides.items():
            with e.wh_reader() as c:
                for shape, sql in shapes(f"public.{name}", None, "f0100").items():
                    plan, execute = median_plan_exec(c, sql)
                    measured.setdefault(shape, {})[label] = plan + execute
                if label == "cluster":
                    one = shapes(f"public.{name}", None, "f0100")["one tenant 30 days, now()"]
                    out["one_tenant_plan"] = [r for (r,) in c.execute("EXPLAIN " + one).fetchall()]
            with e.wh_admin() as c:
                out.setdefault("rows", {})[label] = c.execute(f"SELECT count(*) FROM public.{name}").fetchone()[0]
                # health() probes each tenant's newest day (one query per tenant on a distributed table).
                c.execute("SELECT _wh.health()")
                t = time.perf_counter()
                for _ in range(3):
                    c.execute("SELECT _wh.health()")
                out.setdefault("health_ms", {})[label] = (time.perf_counter() - t) * 1000 / 3
        out["shapes_ms"] = measured
        for label, e in sides.items():
            out.setdefault("fetch", {})[label] = fetch_on(e, fetched, distribute=label == "cluster")
        with env.wh_admin() as c:
            c.execute("SELECT _wh.drop_template(%s)", (name,))
            c.execute("SELECT _wh.drop_template(%s)", (fetched,))
            for t in range(1, tenants + 1):
                c.execute("SELECT _wh.remove_tenant(%s)", (f"f{t:04d}",))
        with env.wh_super() as s:
            s.execute("DELETE FROM _wh.slices WHERE template_name IN (%s, %s)", (name, fetched))
            s.execute("SELECT _wh._settle_pairs()")
    finally:
        cluster.stop(nodes)
    f = out["fetch"]
    log(f"  citus: backfill {f['cluster']['backfill_s'] / f['one node']['backfill_s']:.2f}x one node, refresh "
        f"{f['cluster']['refresh_s'] / f['one node']['refresh_s']:.2f}x")
    RESULTS["citus"] = out


def fetch_on(env, name, distribute):
    """The harness's tenants' last 30 days backfilled into template `name` (distributed first
    when asked), then a changed day refreshed for each, three times (a day changed at the
    source before each round; both sides refresh it): seconds, medians of the refreshes."""
    first = TODAY - dt.timedelta(days=29)
    out = {}
    with env.wh_admin() as c:
        c.execute(template_sql(name))
        if distribute:
            c.execute("SELECT _wh.distribute(%s)", (name,))
        t = time.perf_counter()
        for tenant in harness.TENANTS:
            c.execute("CALL _wh.backfill(%s, %s, %s, %s)", (name, tenant, first, TODAY))
        out["backfill_s"] = time.perf_counter() - t
        out["rows"] = c.execute(f"SELECT count(*) FROM public.{name}").fetchone()[0]
        times = []
        for k in range(3):
            day = TODAY - dt.timedelta(days=5 + k)
            for tenant in harness.TENANTS:
                with env.source_super(tenant) as src:
                    src.execute("UPDATE phood_foodlogsum SET weight = weight + 1 WHERE logged_time >= %s::date "
                                "AND logged_time < %s::date + 1", (day, day))
                t = time.perf_counter()
                r = c.execute("SELECT _wh.refresh_mv(%s, %s, %s)", (name, tenant, day)).fetchone()[0]
                times.append(time.perf_counter() - t)
                assert r["status"] == "succeeded" and r["details"]["action"] == "refreshed", r
        out["refresh_s"] = statistics.median(times)
    return out


def setup(env):
    with env.wh_admin() as c:
        harness.register_tenants(env, c)
        c.execute(template_sql("stall"))
    harness.seed(env, (TODAY - dt.timedelta(days=29)).isoformat(), 30, n(1000))
    with env.wh_admin() as c:
        for t in harness.TENANTS:
            c.execute("CALL _wh.backfill('stall', %s, %s, %s)", (t, TODAY - dt.timedelta(days=29), TODAY))


def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    mem = int(next(l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal"))) // 1024 // 1024
    return f"{os.cpu_count()} cores ({cpu}), {mem} GiB, Linux {platform.release()}"


SECTIONS = {"readers": None, "scale": None, "stall": bench_stall, "concurrency": bench_concurrency, "ingest": bench_ingest,
            "backfill": bench_backfill_and_fold, "rollup": bench_rollup_refresh, "fanout": bench_fanout, "pool": bench_pool,
            "scale1000": None, "monitoring": bench_monitoring, "fold1000": bench_fold1000,
            "columnar": bench_columnar, "citus": bench_citus}


def main():
    only = [s for s in os.environ.get("WH_BENCH_ONLY", "").split(",") if s]
    global TODAY
    env = harness.start()
    try:
        with env.wh_super() as s:
            TODAY = harness.server_today(s)
            RESULTS["postgres"] = s.execute("SELECT version()").fetchone()[0]
            RESULTS["settings"] = dict(s.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN ('max_locks_per_transaction', 'max_connections', "
                "'shared_buffers', 'work_mem', 'maintenance_work_mem', 'jit')").fetchall())
        setup(env)
        for name, fn in SECTIONS.items():
            if only and name not in only:
                continue
            if name == "readers":
                with env.wh_super() as s:
                    s.execute("DROP ROLE IF EXISTS bench_scoped")
                    s.execute("CREATE ROLE bench_scoped LOGIN PASSWORD 'scoped-pw'")
                bench_readers(env, 20, 120, n(200))
                bench_readers(env, 100, 120, n(200))
            elif name == "scale":
                bench_scale(env, 20, 365, n(1000))
                bench_scale(env, 100, 365, n(200))
            elif name == "scale1000":
                bench_scale(env, 1000, 365, max(1, n(20)))
            else:
                fn(env)
        RESULTS["machine"] = machine()
        RESULTS["scale_factor"] = SCALE
        RESULTS["pgbench_seconds"] = PGBENCH_SECONDS
        RESULTS["measured_at"] = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        (harness.TARGET / "bench-results.json").write_text(json.dumps(RESULTS, indent=2, default=str))
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import report
        # A run of some sections only writes its report aside (BENCHMARKS.md is a full run's).
        report.write(RESULTS, harness.TARGET / "bench-partial.md" if only else None)
    finally:
        harness.stop()


if __name__ == "__main__":
    main()
