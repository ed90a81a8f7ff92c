"""Faults and load: nothing already built is lost, failures are recorded, a rerun
completes, and readers never see an error.

Sources: 30 days ending on the warehouse's today plus the last days of the year before
last (never overlapping them, whatever the date), 400 rows a tenant-day."""

import datetime as dt
import json
import os
import re
import threading
import time

import psycopg
import pytest

import harness

# Set from the warehouse's clock when the module's data is seeded (see `flt`).
TODAY = FIRST = DEC = None
ROWS = 400
T = "fault"
LOAD_SECONDS = int(os.environ.get("WH_LOAD_SECONDS", "15"))


def by_day(conn, relation, where=""):
    return dict(
        (d, (n, w)) for d, n, w in conn.execute(
            f"SELECT (logged_time AT TIME ZONE 'UTC')::date, count(*), sum(weight) FROM {relation} {where} GROUP BY 1"
        ).fetchall()
    )


def source_by_day(env, tenant, first, last):
    with env.source_super(tenant) as s:
        return by_day(s, "phood_foodlogsum", f"WHERE logged_time >= '{first}' AND logged_time < '{last + dt.timedelta(days=1)}'")


def registry_matches_catalogs(c, template):
    """Every registered tenant-day holds exactly its registered rows in public.<template>,
    every stored tenant-day is registered, and no table is left aside."""
    reg = {
        (t, d): n for t, d, n in c.execute(
            "SELECT tenant_name, range_start, row_count FROM _wh.slices WHERE template_name = %s AND row_count > 0", (template,)
        ).fetchall()
    }
    stored = {
        (t, d): n for t, d, n in c.execute(
            f"SELECT schema_name, (logged_time AT TIME ZONE 'UTC')::date, count(*) FROM public.{template} GROUP BY 1, 2"
        ).fetchall()
    }
    aside = c.execute(
        "SELECT count(*) FROM pg_class WHERE relnamespace = '_wh_data'::regnamespace AND relname LIKE %s", (f"{template}\\_%\\_new",)
    ).fetchone()[0]
    return reg == stored and aside == 0, (reg, stored, aside)


def registered_days(c, template, tenant):
    return c.execute(
        "SELECT count(*) FROM _wh.slices WHERE template_name = %s AND tenant_name = %s", (template, tenant)
    ).fetchone()[0]


@pytest.fixture(scope="module")
def flt(env):
    global TODAY, FIRST, DEC
    with env.wh_admin() as c:
        TODAY = harness.server_today(c)
    FIRST = TODAY - dt.timedelta(days=29)
    DEC = dt.date(TODAY.year - 2, 12, 28)
    harness.seed(env, FIRST.isoformat(), 30, ROWS)
    harness.seed(env, DEC.isoformat(), 4, ROWS, append=True)
    with env.wh_admin() as c:
        harness.register_tenants(env, c)
        harness.register_template(c, T)
    return env


def test_source_stopped_mid_backfill_then_rerun(flt):
    notices = []
    stopped = threading.Event()
    try:
        with flt.wh_admin() as c:
            def on_notice(n):
                notices.append(n.message_primary)
                if harness.progress_days([m for m in notices if m.startswith("day")]) >= 10 and not stopped.is_set():
                    flt.source.stop("fast")
                    stopped.set()

            c.add_notice_handler(on_notice)
            # Chunks of 5 days: the source goes away between two chunks' remote queries.
            c.execute("CALL _wh.backfill(%s, 'tenant_a', %s, %s, chunk_days => 5)", (T, FIRST, TODAY))
            summary = [n for n in notices if n.startswith("backfill ")][0]
            built, failed = int(re.search(r"(\d+) built", summary)[1]), int(re.search(r"(\d+) failed", summary)[1])
            assert stopped.is_set() and built >= 10 and failed >= 1 and built + failed == 30, summary
            failures = c.execute(
                "SELECT count(*) FROM _wh.failures WHERE template_name = %s AND tenant_name = 'tenant_a'", (T,)
            ).fetchone()[0]
            assert failures == failed
            assert registered_days(c, T, "tenant_a") == built
    finally:
        if not flt.source.is_running():
            flt.source.start()
    with flt.wh_admin() as c:
        notices.clear()
        c.add_notice_handler(lambda n: notices.append(n.message_primary))
        c.execute("CALL _wh.backfill(%s, 'tenant_a', %s, %s)", (T, FIRST, TODAY))
        summary = [n for n in notices if n.startswith("backfill ")][0]
        assert f"{failed} built, 0 unchanged, {built} skipped, 0 failed" in summary, summary
        assert by_day(c, f"tenant_a.{T}") == source_by_day(flt, "tenant_a", FIRST, TODAY)
        ok, detail = registry_matches_catalogs(c, T)
        assert ok, detail


def test_remote_query_past_timeout_fails_that_tenant_only(flt):
    """tenant_a's source takes 5 s for this template; its remote_timeout is 2 s."""
    sleepy = (
        "WITH nap AS MATERIALIZED (SELECT pg_sleep(CASE WHEN current_database() = 'tenant_a' THEN 5 ELSE 0 END)) "
        "SELECT f.id, f.logged_time FROM phood_foodlogsum f, nap "
        "WHERE f.logged_time >= '{TARGET_DATE}'::date AND f.logged_time < '{TARGET_DATE}'::date + 1"
    )
    user, password = flt.tenant_login("tenant_a")
    with flt.wh_admin() as c:
        c.execute("SELECT _wh.set_template('sleepy', %s, 'id bigint, logged_time timestamptz', 'logged_time')", (sleepy,))
        c.execute(
            "SELECT _wh.set_tenant_connection('tenant_a', '127.0.0.1', %s, 'tenant_a', %s, %s, remote_timeout => '2 seconds')",
            (flt.source.port, user, password),
        )
        try:
            r = c.execute("SELECT _wh.update_all_tenants('sleepy', %s)", (TODAY,)).fetchone()[0]
            # Today and the template's lookback day, for every tenant.
            assert sorted(r["days"]) == [(TODAY - dt.timedelta(days=1)).isoformat(), TODAY.isoformat()]
            status = {(x["tenant"], x["day"]): (x["status"], x.get("sqlstate")) for x in r["results"]}
            for day in r["days"]:
                assert status[("tenant_a", day)] == ("failed", "57014"), r
                assert status[("tenant_b", day)] == status[("tenant_c", day)] == ("succeeded", None), r
            assert "statement timeout" in [x for x in r["results"] if x["tenant"] == "tenant_a"][0]["error"]
            # The answers that came were taken first: tenant_a's failure is logged after them
            # (within the fan-out of each month: at a month's end the two days are two fan-outs).
            rows = c.execute(
                "SELECT tenant_name, date_trunc('month', target_date) FROM _wh.run_log "
                "WHERE template_name = 'sleepy' AND operation = 'update_all_tenants' ORDER BY finished_at, run_id").fetchall()
            for month in {m for _, m in rows}:
                order = [t for t, m in rows if m == month]
                first_a = order.index("tenant_a")
                assert set(order[first_a:]) == {"tenant_a"} and {"tenant_b", "tenant_c"} <= set(order[:first_a]), rows
            # In a window the timed-out day is one failed day, not an aborted call.
            w = c.execute("SELECT _wh.update_mv_window('sleepy', 'tenant_a', %s, %s)", (TODAY - dt.timedelta(days=1), TODAY)).fetchone()[0]
            assert w["failed"] == 2 and w["status"] == "failed"
            assert c.execute(
                "SELECT count(*) FROM _wh.run_log WHERE template_name = 'sleepy' AND tenant_name = 'tenant_a' AND sqlstate = '57014'"
            ).fetchone()[0] == 4
        finally:
            c.execute(
                "SELECT _wh.set_tenant_connection('tenant_a', '127.0.0.1', %s, 'tenant_a', %s, %s, remote_timeout => '30 min')",
                (flt.source.port, user, password),
            )


def test_backend_killed_during_refresh_leaves_the_old_day(flt):
    day = TODAY - dt.timedelta(days=2)
    slow = (
        "WITH nap AS MATERIALIZED (SELECT pg_sleep(3)) "
        "SELECT f.id, f.logged_time, f.weight FROM phood_foodlogsum f, nap "
        "WHERE f.logged_time >= '{TARGET_DATE}'::date AND f.logged_time < '{TARGET_DATE}'::date + 1"
    )
    with flt.wh_admin() as c:
        c.execute("SELECT _wh.set_template('slow', %s, 'id bigint, logged_time timestamptz, weight numeric', 'logged_time')",
                  ("SELECT f.id, f.logged_time, f.weight FROM phood_foodlogsum f WHERE f.logged_time >= '{TARGET_DATE}'::date AND f.logged_time < '{TARGET_DATE}'::date + 1",))
        c.execute("SELECT _wh.create_mv_from_template('slow', 'tenant_b', target_date => %s)", (day,))
        before = by_day(c, "tenant_b.slow")
        c.execute("SELECT _wh.set_template('slow', %s, 'id bigint, logged_time timestamptz, weight numeric', 'logged_time')", (slow,))
    victim = flt.wh_admin()
    pid = victim.info.backend_pid
    errors = []

    def refresh():
        try:
            victim.execute("SELECT _wh.refresh_mv('slow', 'tenant_b', %s)", (day,))
        except psycopg.Error as e:
            errors.append(e)

    th = threading.Thread(target=refresh)
    th.start()
    time.sleep(1.0)
    with flt.wh_super() as s:
        assert s.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]
    th.join()
    assert errors
    with flt.wh_admin() as c:
        assert by_day(c, "tenant_b.slow") == before
        ok, detail = registry_matches_catalogs(c, "slow")
        assert ok, detail
        r = c.execute("SELECT _wh.refresh_mv('slow', 'tenant_b', %s)", (day,)).fetchone()[0]
        # The source did not change: the day is fetched and compared, nothing written.
        assert r["status"] == "succeeded" and r["details"]["action"] == "unchanged"


def test_warehouse_stopped_immediately_mid_backfill(flt):
    notices = []
    killed = threading.Event()
    conn = flt.wh_admin()

    def on_notice(n):
        notices.append(n.message_primary)
        if harness.progress_days([m for m in notices if m.startswith("day")]) >= 5 and not killed.is_set():
            killed.set()
            threading.Thread(target=lambda: flt.warehouse.stop("immediate")).start()

    conn.add_notice_handler(on_notice)
    with pytest.raises(psycopg.OperationalError):
        conn.execute("CALL _wh.backfill(%s, 'tenant_c', %s, %s, chunk_days => 5)", (T, FIRST, TODAY))
    for _ in range(100):
        if not flt.warehouse.is_running():
            break
        time.sleep(0.1)
    flt.warehouse.start()
    with flt.wh_admin() as c:
        ok, detail = registry_matches_catalogs(c, T)
        assert ok, detail
        done = registered_days(c, T, "tenant_c")
        assert 5 <= done < 30
        c.execute("CALL _wh.backfill(%s, 'tenant_c', %s, %s)", (T, FIRST, TODAY))
        assert by_day(c, f"tenant_c.{T}") == source_by_day(flt, "tenant_c", FIRST, TODAY)
        ok, detail = registry_matches_catalogs(c, T)
        assert ok, detail


def test_temp_file_limit_too_small_keeps_old_rows(flt):
    """The answer streams into the staging table (COPY: no tuplestore, 0.9.0 held the
    whole answer in one); the checks' aggregates may still spill at work_mem = 64kB. Either
    way the day's rows are what they were."""
    day = TODAY - dt.timedelta(days=4)
    with flt.wh_super() as s:
        before = by_day(s, f"tenant_a.{T}", f"WHERE logged_time >= '{day}' AND logged_time < '{day + dt.timedelta(days=1)}'")
        # temp_file_limit is a superuser's setting: given to the operator's login for this.
        s.execute("ALTER ROLE whadmin SET temp_file_limit = '64kB'")
        s.execute("ALTER ROLE whadmin SET work_mem = '64kB'")
        try:
            with flt.wh_admin() as c:
                r = c.execute("SELECT _wh.refresh_mv(%s, 'tenant_a', %s)", (T, day)).fetchone()[0]
        finally:
            s.execute("ALTER ROLE whadmin RESET temp_file_limit")
            s.execute("ALTER ROLE whadmin RESET work_mem")
        assert r["status"] == "succeeded" or (r["sqlstate"] == "53400" and "temp_file_limit" in r["error"]), r
        assert by_day(s, f"tenant_a.{T}", f"WHERE logged_time >= '{day}' AND logged_time < '{day + dt.timedelta(days=1)}'") == before


def test_two_sessions_refreshing_the_same_day(flt):
    day = TODAY - dt.timedelta(days=6)
    results, errors = [], []

    def loop():
        with flt.wh_admin() as c:
            for _ in range(8):
                try:
                    results.append(c.execute("SELECT _wh.refresh_mv(%s, 'tenant_a', %s)", (T, day)).fetchone()[0])
                except psycopg.Error as e:
                    errors.append(repr(e))

    threads = [threading.Thread(target=loop) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert {r["status"] for r in results} <= {"succeeded", "skipped"}
    assert all(r["details"].get("reason") == "busy" for r in results if r["status"] == "skipped")
    with flt.wh_admin() as c:
        assert by_day(c, f"tenant_a.{T}", f"WHERE logged_time >= '{day}' AND logged_time < '{day + dt.timedelta(days=1)}'") == \
            {day: source_by_day(flt, "tenant_a", day, day)[day]}


def test_refresh_racing_a_fold_of_the_same_year(flt):
    year = DEC.year
    day = DEC + dt.timedelta(days=1)
    with flt.wh_admin() as c:
        c.execute("SELECT _wh.update_mv_window(%s, 'tenant_b', %s, %s)", (T, DEC, dt.date(year, 12, 31)))
    # A refresh holding its day: the fold waits a bounded time, then skips as busy, without an error.
    refresher = flt.wh_admin(autocommit=False)
    r = refresher.execute("SELECT _wh.refresh_mv(%s, 'tenant_b', %s)", (T, day)).fetchone()[0]
    assert r["status"] == "succeeded"
    with flt.wh_admin() as c:
        f = c.execute("SELECT _wh.create_combined_table_by_year(%s, 'tenant_b', %s)", (T, year)).fetchone()[0]
        assert f["status"] == "skipped" and f["details"]["reason"] == "busy"
    refresher.commit()
    refresher.close()
    # A fold holding the year: the refresh skips as busy; then it refreshes inside the folded year.
    folder = flt.wh_admin(autocommit=False)
    f = folder.execute("SELECT _wh.create_combined_table_by_year(%s, 'tenant_b', %s)", (T, year)).fetchone()[0]
    assert f["status"] == "succeeded" and f["details"]["validation"]["tenant_days"] == 4
    with flt.wh_admin() as c:
        r = c.execute("SELECT _wh.refresh_mv(%s, 'tenant_b', %s)", (T, day)).fetchone()[0]
        assert r["status"] == "skipped" and r["details"]["reason"] == "busy"
    folder.commit()
    folder.close()
    with flt.wh_admin() as c:
        r = c.execute("SELECT _wh.refresh_mv(%s, 'tenant_b', %s)", (T, day)).fetchone()[0]
        assert r["status"] == "succeeded" and r["details"]["action"] == "unchanged"
        assert r["details"]["partition"] == f"{T}_{year}"
        assert by_day(c, f"tenant_b.{T}", f"WHERE logged_time < '{year + 1}-01-01'") == source_by_day(flt, "tenant_b", DEC, dt.date(year, 12, 31))
        ok, detail = registry_matches_catalogs(c, T)
        assert ok, detail


def test_tenant_schema_dropped_by_hand(flt):
    with flt.wh_admin() as c:
        for t in harness.TENANTS:
            c.execute("SELECT _wh.update_mv_window(%s, %s, %s, %s)", (T, t, TODAY - dt.timedelta(days=2), TODAY))
        before = by_day(c, f"tenant_b.{T}")
        c.execute("DROP SCHEMA tenant_b CASCADE")  # only tenant_b's view: its rows live in public.fault
        for t in ("tenant_a", "tenant_c"):
            r = c.execute("SELECT _wh.update_mv_by_template(%s, %s)", (T, t)).fetchone()[0]
            assert r["status"] == "succeeded"
    with flt.wh_reader() as rd:
        assert rd.execute(f"SELECT array_agg(DISTINCT schema_name ORDER BY schema_name) FROM public.{T}").fetchone()[0] == list(harness.TENANTS)
        assert rd.execute("SELECT to_regclass('tenant_b.fault')").fetchone()[0] is None
    with flt.wh_admin() as c:
        # The next build of tenant_b brings its view back.
        r = c.execute("SELECT _wh.update_mv_by_template(%s, 'tenant_b')", (T,)).fetchone()[0]
        assert r["status"] == "succeeded"
    with flt.wh_reader() as rd:
        assert by_day(rd, f"tenant_b.{T}") == before


# ------------------------------------------------------------------ load

PGBENCH_SCRIPT = f"""
\\set d random(0, 6)
SELECT store, count(*), sum(weight) FROM public.{T} WHERE logged_time >= now() - (:d || ' days')::interval GROUP BY store;
SELECT count(*) FROM tenant_a.{T} WHERE logged_time >= current_date - 7;
"""


def pgbench(env, seconds, clients=20):
    return harness.pgbench(env, PGBENCH_SCRIPT, seconds, clients)


def test_twenty_readers_under_write_load_see_no_error(flt):
    with flt.wh_admin() as c:
        for t in harness.TENANTS:
            c.execute("CALL _wh.backfill(%s, %s, %s, %s)", (T, t, FIRST, TODAY))
        c.execute("SELECT _wh.update_mv_window(%s, 'tenant_c', %s, %s)", (T, DEC, dt.date(DEC.year, 12, 31)))
    rc, tps_idle, failed, out = pgbench(flt, LOAD_SECONDS)
    assert rc == 0 and "aborted" not in out, out
    stop = threading.Event()
    writes, write_errors = [], []

    def writer():
        with flt.wh_admin() as c:
            c.execute("SELECT _wh.create_combined_table_by_year(%s, 'tenant_c', %s)", (T, DEC.year))
            writes.append("fold")
            while True:  # at least one round, however long the fold took
                for t in harness.TENANTS:
                    r = c.execute("SELECT _wh.update_mv_window(%s, %s, %s, %s, force_recreate => true)",
                                  (T, t, TODAY - dt.timedelta(days=3), TODAY)).fetchone()[0]
                    writes.append(r["status"])
                c.execute("CALL _wh.backfill(%s, 'tenant_a', %s, %s, force_recreate => true)",
                          (T, TODAY - dt.timedelta(days=1), TODAY))
                writes.append("backfill")
                c.execute("SELECT _wh.update_all_tenants(%s)", (T,))
                if stop.is_set():
                    break

    def guarded():
        try:
            writer()
        except psycopg.Error as e:
            write_errors.append(repr(e))

    w = threading.Thread(target=guarded)
    w.start()
    try:
        rc, tps_load, failed, out = pgbench(flt, LOAD_SECONDS)
    finally:
        stop.set()
        w.join()
    assert write_errors == []
    assert rc == 0 and "aborted" not in out, out
    assert failed in (0, None)
    assert "fold" in writes and writes.count("succeeded") >= 3 and "backfill" in writes
    report = {"clients": 20, "seconds": LOAD_SECONDS, "tps_readers_only": tps_idle, "tps_under_writes": tps_load,
              "reader_errors": 0, "day_refreshes_during_load": 4 * writes.count("succeeded")}
    (harness.TARGET / "load-report.json").write_text(json.dumps(report, indent=2))
    print("\nLOAD", json.dumps(report))


def test_a_cancel_ends_every_multi_day_call(flt):
    """A local cancel or statement_timeout ends a multi-day call at once (0.1.0 went on
    with the next days, each failing "canceling statement due to user request"); what was
    committed stays, nothing is recorded as the tenant's failure."""
    slow = ("WITH nap AS MATERIALIZED (SELECT pg_sleep(1)) SELECT f.id, f.logged_time FROM phood_foodlogsum f, nap "
            "WHERE f.logged_time >= '{TARGET_DATE}'::date AND f.logged_time < '{TARGET_DATE}'::date + 1")
    d0, d5 = FIRST, FIRST + dt.timedelta(days=5)
    failed_sql = "SELECT count(*) FROM _wh.run_log WHERE template_name = 'slowday' AND status = 'failed'"
    built_sql = "SELECT count(*) FROM _wh.slices WHERE template_name = 'slowday' AND checksum IS NOT NULL"
    with flt.wh_admin() as c:
        c.execute("SELECT _wh.set_template('slowday', %s, 'id bigint, logged_time timestamptz', 'logged_time')", (slow,))
        # statement_timeout on a window (one remote query of six 1-second days).
        c.execute("SET statement_timeout = '2s'")
        with pytest.raises(psycopg.errors.QueryCanceled):
            c.execute("SELECT _wh.update_mv_window('slowday', 'tenant_a', %s, %s)", (d0, d5))
        c.execute("RESET statement_timeout")
        assert c.execute(failed_sql).fetchone()[0] == 0
        assert c.execute(built_sql).fetchone()[0] == 0
    # pg_cancel_backend on a backfill of a day per chunk: the chunks committed before stay.
    victim = flt.wh_admin()
    pid = victim.info.backend_pid
    canceller = flt.wh_super()

    def cancel_after_first_chunk(n):
        # The first chunk's progress line comes after its commit: cancel then.
        if n.message_primary.startswith("day ") and not canceller.closed:
            canceller.execute("SELECT pg_cancel_backend(%s)", (pid,))
            canceller.close()

    victim.add_notice_handler(cancel_after_first_chunk)
    with pytest.raises(psycopg.errors.QueryCanceled):
        victim.execute("CALL _wh.backfill('slowday', 'tenant_a', %s, %s, chunk_days => 1)", (d0, d5))
    victim.close()
    with flt.wh_admin() as c:
        built = c.execute(built_sql).fetchone()[0]
        assert 1 <= built < 6, built
        assert c.execute(failed_sql).fetchone()[0] == 0
        # A rerun resumes with the days left.
        c.execute("CALL _wh.backfill('slowday', 'tenant_a', %s, %s, chunk_days => 1)", (d0, d5))
        assert c.execute(built_sql).fetchone()[0] == 6
