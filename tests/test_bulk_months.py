"""Months loaded in bulk (issue 24, item 7): a backfill or a rebuild that fills a month
with no partition yet builds it aside (rows in a table without indexes, then the indexes,
ANALYZE, ATTACH), so history arrives at the bulk floor instead of through per-row index
maintenance; a month that already holds a partition is written row by row as before.

- each empty month of a backfill is built aside and attached, with the very indexes and
  bounds constraint a partition made empty gets, analyzed, equal to its source, and no
  reader waits on a lock meanwhile;
- another tenant's days of those months are written into the partition row by row;
- two sessions filling the same empty month at once both land, whichever attaches first
  (the other writes into its partition, even after building its rows aside);
- a day that waited for its claim while another session built its month and stored it
  is replaced row by row, never doubled;
- a rebuild after a month's partition was lost builds it aside again."""

import datetime as dt
import json
import threading
import time

import pytest

import harness
from test_storage import LockWatch, readers_loop

T = "bulk"
FIRST = dt.date(2024, 1, 1)  # fixed past months, whatever the date today
DAYS = 182                   # January to June 2024
ROWS = 40
ASIDE = "built aside and attached"
LATE = "into the partition another session made"


def days(first, last):
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


@pytest.fixture(scope="module")
def bulk(env):
    harness.seed(env, FIRST.isoformat(), DAYS, ROWS)
    with env.wh_admin() as c:
        harness.register_tenants(env, c)
        harness.register_template(c, T)
    yield env
    with env.wh_admin() as c:
        c.execute("SELECT _wh.drop_template(%s)", (T,))


def loads(c, tenant, first, last):
    """Each day's `partition_load` in the run log (None: written row by row)."""
    return dict(c.execute(
        "SELECT target_date, details->>'partition_load' FROM _wh.run_log WHERE template_name = %s AND tenant_name = %s "
        "AND target_date BETWEEN %s AND %s AND status = 'succeeded' ORDER BY run_id", (T, tenant, first, last)).fetchall())


def held_rows(c, tenant, first, last):
    return c.execute(f"SELECT count(*) FROM public.{T} WHERE schema_name = %s AND logged_time >= %s "
                     "AND logged_time < %s::date + 1", (tenant, first, last)).fetchone()[0]


def source_rows(env, tenant, first, last):
    with env.source_super(tenant) as s:
        return s.execute("SELECT count(*) FROM phood_foodlogsum WHERE logged_time >= %s AND logged_time < %s::date + 1",
                         (first, last)).fetchone()[0]


def assert_equal_to_source(env, c, tenant, first, last):
    r = c.execute("SELECT _wh.verify(%s, %s, %s, %s)", (T, tenant, first, last)).fetchone()[0]
    assert r["details"]["days_checked"] == len(days(first, last)) and r["details"]["drifted"] == [], r
    assert held_rows(c, tenant, first, last) == source_rows(env, tenant, first, last) > 0


def index_shapes(c, relation):
    """A relation's index definitions with its own name taken out, and its constraints."""
    ix = c.execute("SELECT replace(replace(pg_get_indexdef(indexrelid), %s, 'P'), %s, 'I') FROM pg_index "
                   "WHERE indrelid = %s::regclass ORDER BY 1",
                   (f"_wh_data.{relation}", relation, f"_wh_data.{relation}")).fetchall()
    cons = c.execute("SELECT replace(conname, %s, 'P'), pg_get_constraintdef(oid) ~ 'logged_time' FROM pg_constraint "
                     "WHERE conrelid = %s::regclass ORDER BY 1", (relation, f"_wh_data.{relation}")).fetchall()
    return ix, cons


def leftovers(c):
    return c.execute("SELECT relname FROM pg_class WHERE relnamespace = '_wh_data'::regnamespace "
                     "AND relname LIKE %s", (f"{T}\\_%\\_new",)).fetchall()


def test_each_empty_month_of_a_backfill_is_built_aside_and_attached(bulk):
    first, last = FIRST, dt.date(2024, 2, 29)
    stop, errors, counts = threading.Event(), [], []
    reader = f"SELECT count(*) FROM public.{T} WHERE logged_time >= '2024-01-01' AND logged_time < '2024-06-01'"
    threads = [threading.Thread(target=readers_loop, args=(bulk, stop, errors, counts, reader)) for _ in range(3)]
    with LockWatch(bulk, ["phood_ro"]) as watch:
        for th in threads:
            th.start()
        try:
            with bulk.wh_admin() as c:
                c.execute("CALL _wh.backfill(%s, 'tenant_a', %s, %s)", (T, first, last))
        finally:
            stop.set()
            for th in threads:
                th.join()
    assert errors == [] and len(counts) > 3 and watch.samples > 3
    assert watch.seen == [], f"readers waited on locks: {watch.seen}"
    with bulk.wh_admin() as c:
        got = loads(c, "tenant_a", first, last)
        assert len(got) == len(days(first, last)) and set(got.values()) == {ASIDE}, got
        assert [p for _, p in harness.partitions(c, T)] == [f"{T}_2024_01", f"{T}_2024_02"]
        assert leftovers(c) == []
        # A month made empty (as maintenance makes them ahead) for comparison.
        c.execute("SELECT _wh._prepare_days(%s, '2024-04-01', '2024-04-01')", (T,))
        made_empty = index_shapes(c, f"{T}_2024_04")
        assert len(made_empty[0]) >= 4 and len(made_empty[1]) == 1
        for month in ("2024_01", "2024_02"):
            assert index_shapes(c, f"{T}_{month}") == made_empty
        # Analyzed: the planner's row count is the month's (small months are read whole).
        n = c.execute(f"SELECT reltuples::bigint FROM pg_class WHERE oid = '_wh_data.{T}_2024_01'::regclass").fetchone()[0]
        assert n == held_rows(c, "tenant_a", FIRST, dt.date(2024, 1, 31))
        assert_equal_to_source(bulk, c, "tenant_a", first, last)


def test_another_tenants_days_of_those_months_are_written_row_by_row(bulk):
    first, last = FIRST, dt.date(2024, 2, 29)
    with bulk.wh_admin() as c:
        c.execute("CALL _wh.backfill(%s, 'tenant_b', %s, %s)", (T, first, last))
        got = loads(c, "tenant_b", first, last)
        assert len(got) == len(days(first, last)) and set(got.values()) == {None}, got
        assert_equal_to_source(bulk, c, "tenant_b", first, last)
        assert_equal_to_source(bulk, c, "tenant_a", first, last)


def chunk(env, tenant, month_days, out):
    with env.wh_admin() as c:
        out[tenant] = c.execute("SELECT _wh._chunk(false, %s, %s, %s::date[], 'backfill')",
                                (T, tenant, month_days)).fetchone()[0]


def waiting_on_lock(env, username="whadmin"):
    with env.wh_super() as s:
        return s.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = %s AND wait_event_type = 'Lock'",
                         (username,)).fetchone()[0]


def wait_until(check, seconds=20):
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_two_sessions_filling_the_same_empty_month_both_land(bulk):
    """March: tenant_a's chunk has built the month and attached it, uncommitted, when
    tenant_b's starts; tenant_b's waits for the partition to be made (bounded), then
    writes into it. May: tenant_a's rows are built aside when another session makes the
    month's partition first; they go into that partition."""
    march = days(dt.date(2024, 3, 1), dt.date(2024, 3, 31))
    out = {}
    with bulk.wh_admin(autocommit=False) as a:
        r = a.execute("SELECT _wh._chunk(false, %s, 'tenant_a', %s::date[], 'backfill')", (T, march)).fetchone()[0]
        assert r["failed"] == 0, r
        b = threading.Thread(target=chunk, args=(bulk, "tenant_b", march, out))
        b.start()
        wait_until(lambda: waiting_on_lock(bulk) == 1)
        time.sleep(0.3)
        a.commit()
    b.join()
    assert out["tenant_b"]["failed"] == 0, out
    may = days(dt.date(2024, 5, 1), dt.date(2024, 5, 31))
    with bulk.wh_admin(autocommit=False) as other:
        # Another session making partitions: tenant_a's chunk waits for it at the end.
        other.execute("SELECT 1 FROM _wh.mv_templates WHERE template_name = %s FOR NO KEY UPDATE", (T,))
        a = threading.Thread(target=chunk, args=(bulk, "tenant_a", may, out))
        a.start()
        wait_until(lambda: waiting_on_lock(bulk) == 1)
        other.execute("SELECT _wh._prepare_days(%s, '2024-05-01', '2024-05-01')", (T,))
        other.commit()
    a.join()
    assert out["tenant_a"]["failed"] == 0, out
    with bulk.wh_admin() as c:
        assert set(loads(c, "tenant_a", march[0], march[-1]).values()) == {ASIDE}
        assert set(loads(c, "tenant_b", march[0], march[-1]).values()) == {None}
        assert set(loads(c, "tenant_a", may[0], may[-1]).values()) == {LATE}
        assert leftovers(c) == []
        for tenant, month in (("tenant_a", march), ("tenant_b", march), ("tenant_a", may)):
            assert_equal_to_source(bulk, c, tenant, month[0], month[-1])


def test_a_day_that_waited_while_its_month_was_built_is_replaced_not_doubled(bulk):
    """tenant_c's June is built aside and attached by one session, uncommitted; its 3 June
    changes at the source; another session's refresh of that day, which found June without
    a partition and waits for the day, then replaces the stored rows (row by row)."""
    june = days(dt.date(2024, 6, 1), dt.date(2024, 6, 5))
    day = dt.date(2024, 6, 3)
    out = {}

    def refresh():
        with bulk.wh_admin() as c:
            out["r"] = c.execute("SELECT _wh.update_mv_by_template(%s, 'tenant_c', %s, allow_refresh_yesterday => false, "
                                 "wait_for_lock => true)", (T, day)).fetchone()[0]

    with bulk.wh_admin() as c:
        # tenant_c's schema and view exist (two sessions making a tenant's first view at
        # once is another matter).
        c.execute("SELECT _wh.update_tenant_union_view(%s, 'tenant_c')", (T,))
    with bulk.wh_admin(autocommit=False) as a:
        r = a.execute("SELECT _wh._chunk(false, %s, 'tenant_c', %s::date[], 'backfill')", (T, june)).fetchone()[0]
        assert r["failed"] == 0, r
        with bulk.source_super("tenant_c") as s:
            s.execute("UPDATE phood_foodlogsum SET weight = weight + 1 WHERE logged_time >= %s AND logged_time < %s::date + 1",
                      (day, day))
        b = threading.Thread(target=refresh)
        b.start()
        wait_until(lambda: waiting_on_lock(bulk) == 1)
        a.commit()
    b.join()
    r = out["r"]
    assert r["status"] == "succeeded", json.dumps(r)
    mine = [x for x in r["results"] if x["day"] == day.isoformat()] if "results" in r else [r]
    assert mine and mine[0]["details"]["action"] == "refreshed" and "partition_load" not in mine[0]["details"], r
    with bulk.wh_admin() as c:
        assert set(loads(c, "tenant_c", june[0], june[1]).values()) == {ASIDE}
        assert_equal_to_source(bulk, c, "tenant_c", june[0], june[-1])


def test_a_rebuild_after_a_lost_month_builds_it_aside_again(bulk):
    feb = (dt.date(2024, 2, 1), dt.date(2024, 2, 29))
    with bulk.wh_super() as s:
        s.execute(f"DROP TABLE _wh_data.{T}_2024_02")
    with bulk.wh_admin() as c:
        assert held_rows(c, "tenant_a", *feb) == held_rows(c, "tenant_b", *feb) == 0
        c.execute("CALL _wh.rebuild_warehouse(template_name => %s)", (T,))
        # The last run of each day: tenant_a's (first in order) built the month aside.
        assert set(loads(c, "tenant_a", *feb).values()) == {ASIDE}
        assert set(loads(c, "tenant_b", *feb).values()) == {None}
        for tenant in ("tenant_a", "tenant_b"):
            assert_equal_to_source(bulk, c, tenant, *feb)
