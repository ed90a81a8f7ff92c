"""Operating a warehouse for months: progress another session can see, missing days made
visible, renaming a tenant everywhere.

Fixed past days (2024), so nothing depends on the calendar."""

import datetime as dt
import threading
import time

import psycopg
import pytest

import harness

FIRST = dt.date(2024, 2, 1)
DAYS = 60
ROWS = 20
T = "ops"
# One remote query takes a second: a backfill of a day per chunk is slow enough to watch.
SLOW = """
WITH nap AS MATERIALIZED (SELECT pg_sleep(1))
SELECT f.id, f.logged_time, f.weight
FROM phood_foodlogsum f, nap
WHERE f.logged_time >= '{TARGET_DATE}'::date AND f.logged_time < '{TARGET_DATE}'::date + 1
"""


@pytest.fixture(scope="module")
def ops(env):
    harness.seed(env, FIRST.isoformat(), DAYS, ROWS)
    with env.wh_admin() as c:
        harness.register_tenants(env, c)
        harness.register_template(c, T)
        c.execute("SELECT _wh.set_template('ops_slow', %s, 'id bigint, logged_time timestamptz, weight numeric', 'logged_time')", (SLOW,))
    return env


def watch_progress(env, operation, stop, seen):
    """Poll _wh.progress from another session of the same login until `stop`."""
    with env.wh_admin() as w:
        while not stop.is_set():
            seen.extend(w.execute(
                "SELECT operation, template_name, tenant_name, unit, done, total, working_on, rows_so_far, "
                "elapsed, time_left FROM _wh.progress WHERE operation = %s", (operation,)
            ).fetchall())
            time.sleep(0.05)


def run_watched(env, operation, call, args):
    seen, stop = [], threading.Event()
    th = threading.Thread(target=watch_progress, args=(env, operation, stop, seen))
    th.start()
    try:
        with env.wh_admin() as c:
            c.execute(call, args)
            # Once the call returned, its session shows its own statement again.
            assert c.execute("SELECT count(*) FROM _wh.progress WHERE pid = pg_backend_pid()").fetchone()[0] == 0
    finally:
        stop.set()
        th.join()
    with env.wh_admin() as c:
        assert c.execute("SELECT count(*) FROM _wh.progress WHERE operation = %s", (operation,)).fetchone()[0] == 0
    return seen


def test_progress_of_a_committing_backfill_from_another_session(ops):
    seen = run_watched(
        ops, "backfill",
        "CALL _wh.backfill('ops_slow', 'tenant_a', %s, %s, chunk_days => 1)", (FIRST, FIRST + dt.timedelta(days=5)),
    )
    assert seen, "a second session saw the backfill running"
    ops_, tpl, tenant, unit, _, total, _, _, _, _ = seen[0]
    assert (ops_, tpl, tenant, unit, total) == ("backfill", "ops_slow", "tenant_a", "day", 6)
    done = sorted({r[4] for r in seen})
    assert done[0] >= 0 and done[-1] <= 5 and len(done) >= 3, done
    later = [r for r in seen if r[4] >= 2]
    # Rows so far grow with the days done; elapsed and the time left are there once a day is done.
    assert all(r[7] >= ROWS * 2 for r in later), later
    assert all(r[8] > dt.timedelta(0) and r[9] is not None and r[9] > dt.timedelta(0) for r in later), later
    assert any(r[6] == (FIRST + dt.timedelta(days=r[4])).isoformat() + ".." + (FIRST + dt.timedelta(days=r[4])).isoformat() for r in later), later


def test_progress_is_only_what_wh_wrote(ops):
    # Any login can start a statement with the marker: the view neither fails nor shows it.
    with ops.warehouse.connect() as s:
        s.execute("DROP ROLE IF EXISTS ops_prankster")
        s.execute("CREATE ROLE ops_prankster LOGIN PASSWORD 'prank-pw' IN ROLE pg_read_all_stats")
    prank = psycopg.connect(ops.warehouse.tcp_dsn("warehouse", "ops_prankster", "prank-pw"), autocommit=True)
    whadmin = ops.wh_admin()
    try:
        done = threading.Event()
        fakes = [
            (prank, '/* wh progress {"operation":"x"} */ SELECT pg_sleep(3)'),
            (whadmin, "/* wh progress not json */ SELECT pg_sleep(3)"),
        ]
        threads = [threading.Thread(target=lambda c=c, q=q: (c.execute(q), done.set())) for c, q in fakes]
        for th in threads:
            th.start()
        time.sleep(0.5)
        with ops.wh_admin() as c:
            assert c.execute("SELECT count(*) FROM _wh.progress").fetchone()[0] == 0
        with ops.wh_super() as s:
            assert s.execute("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '/* wh progress %'").fetchone()[0] == 2
            assert s.execute("SELECT count(*) FROM _wh.progress").fetchone()[0] == 0
        for th in threads:
            th.join()
    finally:
        prank.close()
        whadmin.close()
        with ops.warehouse.connect() as s:
            s.execute("DROP ROLE ops_prankster")


def test_progress_of_a_single_transaction_window(ops):
    # Three months, a chunk (one remote query of a second) per month, in one transaction:
    # nothing is committed until the end, and the progress shows anyway.
    first, last = dt.date(2024, 1, 30), dt.date(2024, 3, 2)
    seen = run_watched(
        ops, "update_mv_window",
        "SELECT _wh.update_mv_window('ops_slow', 'tenant_b', %s, %s)", (first, last),
    )
    assert seen
    assert {(r[1], r[2], r[3], r[5]) for r in seen} == {("ops_slow", "tenant_b", "day", (last - first).days + 1)}
    assert max(r[4] for r in seen) >= 2  # at least the January chunk and February's were done
    assert {r[6] for r in seen} >= {"2024-02-01..2024-02-29"}


def test_progress_of_a_fan_out_counts_tenants(ops):
    seen = run_watched(ops, "update_all_tenants", "SELECT _wh.update_all_tenants('ops_slow', %s)", (FIRST + dt.timedelta(days=10),))
    assert seen and {(r[3], r[5]) for r in seen} == {("tenant", 3)}, seen


def test_missing_days_are_listed_counted_and_fillable(ops):
    with ops.wh_admin() as c:
        built = [FIRST + dt.timedelta(days=d) for d in (0, 1, 2, 10, 11, 30)]
        for d in built:
            c.execute("SELECT _wh.create_mv_from_template(%s, 'tenant_c', target_date => %s)", (T, d))
        gaps = c.execute(
            "SELECT first_missing, last_missing, days, fill_with FROM _wh.gaps "
            "WHERE template_name = %s AND tenant_name = 'tenant_c' ORDER BY 1", (T,)
        ).fetchall()
        assert [(g[0], g[1], g[2]) for g in gaps] == [
            (FIRST + dt.timedelta(days=3), FIRST + dt.timedelta(days=9), 7),
            (FIRST + dt.timedelta(days=12), FIRST + dt.timedelta(days=29), 18),
        ]
        health = c.execute("SELECT (_wh.health() ->> 'missing_days')::int").fetchone()[0]
        assert health >= 25
        for _, _, _, fill in gaps:
            c.execute(fill)
        assert c.execute("SELECT count(*) FROM _wh.gaps WHERE template_name = %s AND tenant_name = 'tenant_c'", (T,)).fetchone()[0] == 0
        assert c.execute("SELECT (_wh.health() ->> 'missing_days')::int").fetchone()[0] == health - 25
        n = c.execute(
            "SELECT count(*) FROM _wh.slices WHERE template_name = %s AND tenant_name = 'tenant_c'", (T,)
        ).fetchone()[0]
        assert n == 31


def figures(conn, relation):
    return conn.execute(f"SELECT count(*), sum(hashint8(id)::numeric), sum(weight) FROM {relation}").fetchone()


def test_rename_tenant_everywhere_in_one_transaction(ops):
    with ops.warehouse.connect() as s:
        s.execute("DROP ROLE IF EXISTS ops_b_ro")
        s.execute("CREATE ROLE ops_b_ro LOGIN PASSWORD 'ops-b-pw'")
    with ops.wh_admin() as c:
        c.execute("SELECT _wh.update_mv_window(%s, 'tenant_b', %s, %s)", (T, FIRST, FIRST + dt.timedelta(days=4)))
        c.execute("SELECT _wh.grant_tenant_reader('ops_b_ro', 'tenant_b')")
        c.execute("SELECT _wh.schedule_tenant(%s, 'tenant_b', '17 3 * * *')", (T,))
        c.execute("SELECT _wh.schedule_tenant('ops_slow', 'tenant_b', '19 3 * * *')")
        # One of its jobs was stopped (in pg_cron 1.4 only a superuser can): it stays stopped
        # under the new name.
        with ops.wh_super() as s:
            s.execute("UPDATE cron.job SET active = false WHERE jobname = 'wh:ops_slow:tenant_b'")
        c.execute("SELECT _wh.pause_tenant('tenant_b')")
        before = figures(c, f"tenant_b.{T}")
        schedule = c.execute("SELECT schedule FROM _wh.jobs WHERE jobname = %s", (f"wh:{T}:tenant_b",)).fetchone()[0]
        days_before = c.execute("SELECT count(*) FROM _wh.slices WHERE tenant_name = 'tenant_b'").fetchone()[0]
        assert before[0] == 5 * (ROWS + 7)

        r = c.execute("SELECT _wh.rename_tenant('tenant_b', 'bravo')").fetchone()[0]
        assert r["status"] == "succeeded" and r["details"]["old_schema"] == "dropped", r
        assert {j["job"] for j in r["details"]["jobs"]} == {f"wh:{T}:bravo", "wh:ops_slow:bravo"}

        # Rows, views, registry, server, readers, jobs, pause: all under the new name.
        assert figures(c, f"bravo.{T}") == before
        assert c.execute(f"SELECT count(*) FROM public.{T} WHERE schema_name = 'tenant_b'").fetchone()[0] == 0
        assert c.execute("SELECT to_regnamespace('tenant_b')").fetchone()[0] is None
        assert c.execute("SELECT count(*) FROM _wh.slices WHERE tenant_name = 'bravo' AND schema_name = 'bravo'").fetchone()[0] == days_before
        assert c.execute("SELECT count(*) FROM _wh.slices WHERE tenant_name = 'tenant_b'").fetchone()[0] == 0
        assert c.execute("SELECT server_name, paused_at IS NOT NULL FROM _wh.tenant_connections WHERE tenant_name = 'bravo'").fetchone() == ("wh_bravo", True)
        assert c.execute("SELECT count(*) FROM _wh.tenant_connections WHERE tenant_name = 'tenant_b'").fetchone()[0] == 0
        assert [j for (j,) in c.execute("SELECT jobname FROM _wh.jobs WHERE jobname LIKE %s ORDER BY 1", (f"wh:{T}:%",))] == [f"wh:{T}:bravo"]
        assert c.execute("SELECT active FROM _wh.jobs WHERE jobname = 'wh:ops_slow:bravo'").fetchone()[0] is False
        assert c.execute("SELECT count(*) FROM _wh.jobs WHERE jobname LIKE '%:tenant_b'").fetchone()[0] == 0
        assert c.execute("SELECT schedule FROM _wh.jobs WHERE jobname = %s", (f"wh:{T}:bravo",)).fetchone()[0] == schedule
        assert c.execute("SELECT array_agg(action ORDER BY audit_id) FROM _wh.connection_audit WHERE tenant_name IN ('tenant_b', 'bravo') AND action = 'rename'").fetchone()[0] == ["rename", "rename"]
        # Its readers' scopes follow it (the rows the tables' "wh:scoped" policy reads).
        assert c.execute("SELECT count(*) FROM _wh_scope.readers WHERE tenant_name = 'bravo'").fetchone()[0] >= 1
        assert c.execute("SELECT count(*) FROM _wh_scope.readers WHERE tenant_name = 'tenant_b'").fetchone()[0] == 0
        # The server kept its user mapping: the renamed tenant still refreshes.
        c.execute("SELECT _wh.resume_tenant('bravo')")
        r = c.execute("SELECT _wh.update_mv_window(%s, 'bravo', %s, %s, force_recreate => true)", (T, FIRST, FIRST + dt.timedelta(days=1))).fetchone()[0]
        assert r["status"] == "succeeded", r
        assert c.execute("SELECT bool_and(NOT paused) FROM _wh.freshness WHERE tenant_name = 'bravo'").fetchone()[0]
    # The scoped reader reads the renamed tenant, and nothing else.
    with psycopg.connect(ops.warehouse.tcp_dsn("warehouse", "ops_b_ro", "ops-b-pw"), autocommit=True) as rd:
        assert figures(rd, f"bravo.{T}") == before
        with pytest.raises(psycopg.errors.InsufficientPrivilege):  # all-tenant readers' view
            rd.execute(f"SELECT count(*) FROM public.{T}")

    with ops.wh_admin() as c:
        # Bad input: nothing changes.
        for args, state in ((("bravo", "tenant_a"), "42710"), (("bravo", "public"), "42602"), (("nobody", "x"), "42704"),
                            (("bravo", "Bad-Name"), "42602"), (("bravo", None), "22004"), (("bravo", "bravo"), "22023")):
            with pytest.raises(psycopg.Error) as e:
                c.execute("SELECT _wh.rename_tenant(%s, %s)", args)
            assert e.value.sqlstate == state, (args, e.value)
        assert figures(c, f"bravo.{T}")[0] == before[0]
        # A name a removed tenant's rows, days or readers still use is not free.
        c.execute("SELECT _wh.update_mv_window(%s, 'tenant_c', %s, %s)", (T, FIRST, FIRST))
        c.execute("SELECT _wh.remove_tenant('tenant_c')")  # its rows and days stay readable
        with pytest.raises(psycopg.errors.DuplicateObject, match="in use"):
            c.execute("SELECT _wh.rename_tenant('bravo', 'tenant_c')")
        harness.register_tenants(ops, c, tenants=("tenant_c",))
        # Back to the old name, for the modules that follow.
        c.execute("SELECT _wh.rename_tenant('bravo', 'tenant_b')")
        c.execute("SELECT _wh.unschedule_tenant(NULL, 'tenant_b')")
        c.execute("SELECT _wh.revoke_tenant_reader('ops_b_ro', 'tenant_b')")
        assert figures(c, f"tenant_b.{T}")[0] == before[0]
    with ops.warehouse.connect() as s:
        s.execute("DROP OWNED BY ops_b_ro")
        s.execute("DROP ROLE ops_b_ro")


def test_rename_keeps_a_schema_holding_objects_wh_did_not_make(ops):
    with ops.wh_admin() as c:
        c.execute("SELECT _wh.update_mv_window(%s, 'tenant_c', %s, %s)", (T, FIRST, FIRST))
        c.execute("CREATE VIEW tenant_c.my_report AS SELECT 42 AS answer")
        r = c.execute("SELECT _wh.rename_tenant('tenant_c', 'charlie')").fetchone()[0]
        assert r["details"]["old_schema"].startswith("kept: 1 object"), r
        assert c.execute("SELECT answer FROM tenant_c.my_report").fetchone()[0] == 42
        assert c.execute(f"SELECT to_regclass('tenant_c.{T}')").fetchone()[0] is None
        c.execute("DROP VIEW tenant_c.my_report")
        c.execute("SELECT _wh.rename_tenant('charlie', 'tenant_c')")
        assert c.execute(f"SELECT count(*) FROM tenant_c.{T}").fetchone()[0] > 0


def test_calls_typed_in_the_seeds_order(ops):
    d1, d2 = FIRST + dt.timedelta(days=40), FIRST + dt.timedelta(days=41)
    with ops.wh_admin() as c:
        # Tenant first, as the seeds' functions took it: the HINT names wh's call.
        with pytest.raises(psycopg.errors.UndefinedObject) as e:
            c.execute("SELECT _wh.update_mv_window('tenant_a', 'tenant_a', %s, %s)", (d1, d2))
        hint = e.value.diag.message_hint
        assert "is a tenant" in hint and "_wh.update_mv_window('" in hint and "'tenant_a', start_date, end_date)" in hint, hint
        # The seeds' six-argument form works when it is unambiguous...
        r = c.execute("SELECT _wh.update_mv_window('tenant_a', 'tenant_a', %s::date, %s::date, false, 'update_ops')", (d1, d2)).fetchone()[0]
        assert r["status"] == "succeeded" and r["days"] == 2, r
        assert c.execute("SELECT _wh.does_mv_exist('ops', 'tenant_a', %s)", (d2,)).fetchone()[0]
        # ...and otherwise fails saying the exact wh call.
        for schema, fn in (("elsewhere", "update_ops"), ("tenant_a", "update_nothing"), ("tenant_a", "refresh_all")):
            with pytest.raises(psycopg.errors.InvalidParameterValue) as e:
                c.execute("SELECT _wh.update_mv_window('tenant_a', %s, %s::date, %s::date, true, %s)", (schema, d1, d2, fn))
            assert e.value.diag.message_hint.startswith("wh's call: SELECT _wh.update_mv_window("), e.value.diag.message_hint
            assert f"'tenant_a', '{d1}', '{d2}', force_recreate => true)" in e.value.diag.message_hint
