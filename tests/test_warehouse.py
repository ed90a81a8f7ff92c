"""The warehouse itself, end to end: three tenants on an SSL + scram source cluster,
registered and backfilled by a non-superuser member of wh_admin, read by wh_reader.

Reads like the README: register tenants, register the template, backfill, query
`<tenant>.foodlogstats` and `public.foodlogstats`, refresh, and see what goes wrong
when input or sources are bad."""

import datetime as dt
import threading
import time

import psycopg
import pytest

import harness

DAYS = 60
ROWS = 300
# The warehouse's today when the module's data is seeded (see `wh`), and the first day.
TODAY = FIRST = None

# A second template over the same sources whose remote query fails on the 10th of a
# month (division by zero on the tenant), to show per-day isolation.
FAULTY = """
SELECT f.id, f.logged_time, f.weight / (extract(day FROM '{TARGET_DATE}'::date)::int - 10) AS w
FROM phood_foodlogsum f
WHERE f.logged_time >= '{TARGET_DATE}'::date AND f.logged_time < '{TARGET_DATE}'::date + 1
"""
# A template that returns the next day's rows: every row is outside the day asked for.
LEAKY = """
SELECT f.id, f.logged_time FROM phood_foodlogsum f
WHERE f.logged_time >= '{TARGET_DATE}'::date + 1 AND f.logged_time < '{TARGET_DATE}'::date + 2
"""


def source_figures(env, tenant, first, last):
    """count, sum(weight) and per-store counts straight from the tenant's database."""
    with env.source_super(tenant) as s:
        n, w = s.execute(
            "SELECT count(*), coalesce(sum(weight), 0) FROM phood_foodlogsum "
            "WHERE logged_time >= %s::date AND logged_time < %s::date + 1", (first, last)
        ).fetchone()
        stores = dict(s.execute(
            "SELECT l.store, count(*) FROM phood_foodlogsum f JOIN stations st USING (station_id) "
            "JOIN locations l USING (location_id) "
            "WHERE f.logged_time >= %s::date AND f.logged_time < %s::date + 1 GROUP BY 1", (first, last)
        ).fetchall())
    return n, w, stores


def warehouse_figures(conn, relation, first, last, where=""):
    n, w = conn.execute(
        f"SELECT count(*), coalesce(sum(weight), 0) FROM {relation} "
        f"WHERE logged_time >= %s::date AND logged_time < %s::date + 1 {where}", (first, last)
    ).fetchone()
    stores = dict(conn.execute(
        f"SELECT store, count(*) FROM {relation} "
        f"WHERE logged_time >= %s::date AND logged_time < %s::date + 1 {where} GROUP BY 1", (first, last)
    ).fetchall())
    return n, w, stores


@pytest.fixture(scope="module")
def wh(env):
    """Sources seeded with 60 days ending on the warehouse's today; every tenant backfilled."""
    global TODAY, FIRST
    with env.wh_admin() as c:
        TODAY = harness.server_today(c)
    FIRST = TODAY - dt.timedelta(days=DAYS - 1)
    harness.seed(env, FIRST.isoformat(), DAYS, ROWS)
    with env.wh_admin() as c:
        harness.register_tenants(env, c)
        c.execute(open(harness.ROOT / "sql/templates/foodlogstats.sql").read())
        notices = []
        c.add_notice_handler(lambda n: notices.append(n.message_primary))
        for t in harness.TENANTS:
            c.execute("CALL _wh.backfill('foodlogstats', %s, %s, %s)", (t, FIRST, TODAY))
        progress = [n for n in notices if n.startswith("day")]
        assert harness.progress_days(progress) == 3 * DAYS
        # One remote query and one commit per chunk of at most a month, not per day.
        assert len(progress) <= 3 * (len(harness.months(FIRST, TODAY)) + 1)
    return env


def test_backfilled_days_equal_the_sources(wh):
    with wh.wh_reader() as r:
        for t in harness.TENANTS:
            expected = source_figures(wh, t, FIRST, TODAY)
            assert expected[0] == DAYS * (ROWS + 7 * harness.TENANTS.index(t))
            assert warehouse_figures(r, f"{t}.foodlogstats", FIRST, TODAY) == expected
            assert warehouse_figures(
                r, "public.foodlogstats", FIRST, TODAY, f"AND schema_name = '{t}'"
            ) == expected


def test_registry_and_run_log_are_exact(wh):
    with wh.wh_admin() as c:
        for t in harness.TENANTS:
            reg = c.execute(
                "SELECT count(*), sum(row_count), min(range_start), max(range_start) FROM _wh.slices "
                "WHERE tenant_name = %s AND template_name = 'foodlogstats' AND kind = 'day'", (t,)
            ).fetchone()
            stored = c.execute(
                "SELECT count(*), count(DISTINCT (logged_time AT TIME ZONE 'UTC')::date) FROM public.foodlogstats "
                "WHERE schema_name = %s", (t,)
            ).fetchone()
            assert reg == (DAYS, DAYS * (ROWS + 7 * harness.TENANTS.index(t)), FIRST, TODAY)
            assert stored == (reg[1], DAYS)
            assert c.execute(
                "SELECT count(*) FROM _wh.slices WHERE tenant_name = %s AND checksum IS NULL", (t,)
            ).fetchone()[0] == 0
        # One table for every tenant: a partition per month in _wh_data, none per tenant or day.
        parts = harness.partitions(c, "foodlogstats")
        assert {s for s, _ in parts} == {"_wh_data"}
        names = [n for _, n in parts]
        assert [f"foodlogstats_{m}" for m in harness.months(FIRST, TODAY)] == names[: len(harness.months(FIRST, TODAY))]
        assert len(names) <= len(harness.months(FIRST, TODAY)) + 2
        assert c.execute("SELECT relkind FROM pg_class WHERE oid = 'tenant_a.foodlogstats'::regclass").fetchone()[0] == "v"
        ops = dict(c.execute(
            "SELECT status, count(*) FROM _wh.run_log WHERE operation = 'backfill' GROUP BY 1"
        ).fetchall())
        assert ops.get("succeeded", 0) >= 3 * DAYS


def test_backfill_rerun_skips_built_days(wh):
    with wh.wh_admin() as c:
        notices = []
        c.add_notice_handler(lambda n: notices.append(n.message_primary))
        c.execute("CALL _wh.backfill('foodlogstats', 'tenant_a', %s, %s)", (TODAY - dt.timedelta(days=2), TODAY))
        lines = [n for n in notices if n.startswith("day")]
        assert harness.progress_days(lines) == 3
        assert all(": 0 built, 0 unchanged, " in n and "skipped (exists), 0 failed" in n for n in lines), lines
        assert "0 built, 0 unchanged, 3 skipped, 0 failed" in notices[-1]


def test_source_changes_reach_the_slice_after_refresh(wh):
    day = TODAY - dt.timedelta(days=3)
    with wh.source_super("tenant_b") as s:
        s.execute(
            "INSERT INTO phood_foodlogsum (id, station_id, weight, logged_time) "
            "VALUES (9000000001, 3, 123.456, %s::date + interval '5 hours')", (day,)
        )
        s.execute(
            "UPDATE phood_foodlogsum SET weight = weight + 1 WHERE id IN "
            "(SELECT id FROM phood_foodlogsum WHERE logged_time >= %s::date AND logged_time < %s::date + 1 "
            "ORDER BY id LIMIT 10)", (day, day)
        )
        s.execute(
            "DELETE FROM phood_foodlogsum WHERE id IN (SELECT id FROM phood_foodlogsum "
            "WHERE logged_time >= %s::date AND logged_time < %s::date + 1 ORDER BY id DESC LIMIT 5)", (day, day)
        )
    with wh.wh_admin() as c:
        before = warehouse_figures(c, "tenant_b.foodlogstats", day, day)
        assert before != source_figures(wh, "tenant_b", day, day)
        r = c.execute(
            "SELECT _wh.update_mv_by_template('foodlogstats', 'tenant_b', %s, allow_refresh_yesterday => false)",
            (day,),
        ).fetchone()[0]
        assert r["status"] == "succeeded" and r["days"] == 1, r
        assert r["results"][0]["details"]["action"] == "refreshed"
        assert warehouse_figures(c, "tenant_b.foodlogstats", day, day) == source_figures(wh, "tenant_b", day, day)
        reg = c.execute(
            "SELECT row_count FROM _wh.slices WHERE template_name = 'foodlogstats' AND tenant_name = 'tenant_b' "
            "AND range_start = %s", (day,)
        ).fetchone()[0]
        assert reg == ROWS + 7 + 1 - 5


def test_update_by_template_refreshes_lookback_days(wh):
    with wh.wh_admin() as c:
        where = "WHERE schema_name = 'tenant_c' AND logged_time >= %s::date"
        # Without a date the call works on the warehouse's today (asked for around the call,
        # so a run across midnight UTC still knows which today it got).
        today = harness.server_today(c)
        before = c.execute(f"SELECT array_agg(ctid::text ORDER BY id) FROM _wh_data.foodlogstats {where}", (today - dt.timedelta(days=1),)).fetchone()[0]
        r = c.execute("SELECT _wh.update_mv_by_template('foodlogstats', 'tenant_c')").fetchone()[0]
        if harness.server_today(c) != today:
            pytest.skip("midnight UTC passed during the call")
        assert [x["day"] for x in r["results"]] == [today.isoformat(), (today - dt.timedelta(days=1)).isoformat()]
        # The sources did not change: both days were fetched and compared, and nothing was written
        # (a day after the seeded ones, once midnight UTC has passed, has no rows at all).
        for x in r["results"]:
            if x["day"] <= TODAY.isoformat():
                assert x["details"]["action"] == "unchanged", r
            else:
                assert not x.get("rows"), r
        after = c.execute(f"SELECT array_agg(ctid::text ORDER BY id) FROM _wh_data.foodlogstats {where}", (today - dt.timedelta(days=1),)).fetchone()[0]
        assert after == before and len(before) > 0


def test_one_failing_day_does_not_stop_or_undo_the_others(wh):
    tenth = max(
        d for d in (FIRST + dt.timedelta(days=i) for i in range(2, DAYS - 2)) if d.day == 10
    )
    end = tenth + dt.timedelta(days=2)
    with wh.wh_admin() as c:
        c.execute(
            "SELECT _wh.set_template('faulty', %s, 'id bigint, logged_time timestamptz, w numeric', 'logged_time')",
            (FAULTY,),
        )
        r = c.execute("SELECT _wh.update_mv_window('faulty', 'tenant_a', %s, %s)", (tenth - dt.timedelta(days=2), end)).fetchone()[0]
        by_day = {x["day"]: x for x in r["results"]}
        assert r["status"] == "partial" and r["failed"] == 1 and r["succeeded"] == 4, r
        bad = by_day[tenth.isoformat()]
        assert bad["status"] == "failed" and bad["sqlstate"] == "22012"
        assert "tenant tenant_a" in bad["error"] and "division by zero" in bad["error"]
        built = c.execute(
            "SELECT count(*) FROM _wh.slices WHERE template_name = 'faulty' AND tenant_name = 'tenant_a'"
        ).fetchone()[0]
        assert built == 4
        stored_days = c.execute(
            "SELECT count(DISTINCT (logged_time AT TIME ZONE 'UTC')::date) FROM tenant_a.faulty"
        ).fetchone()[0]
        assert stored_days == 4
        assert not c.execute("SELECT _wh.does_mv_exist('faulty', 'tenant_a', %s)", (tenth,)).fetchone()[0]
        logged = c.execute(
            "SELECT status, sqlstate FROM _wh.run_log WHERE template_name = 'faulty' AND target_date = %s "
            "ORDER BY run_id DESC LIMIT 1", (tenth,)
        ).fetchone()
        assert logged == ("failed", "22012")


def test_rows_outside_the_day_are_refused_and_nothing_written(wh):
    day = TODAY - dt.timedelta(days=5)
    with wh.wh_admin() as c:
        c.execute("SELECT _wh.set_template('leaky', %s, 'id bigint, logged_time timestamptz', 'logged_time')", (LEAKY,))
        r = c.execute("SELECT _wh.create_mv_from_template('leaky', 'tenant_a', target_date => %s)", (day,)).fetchone()[0]
        assert r["status"] == "failed" and r["sqlstate"] == "23514", r
        assert "leaky" in r["error"] and day.isoformat() in r["error"] and "outside" in r["error"]
        assert not c.execute("SELECT _wh.does_mv_exist('leaky', 'tenant_a', %s)", (day,)).fetchone()[0]
        assert c.execute("SELECT count(*) FROM public.leaky").fetchone()[0] == 0
        assert c.execute("SELECT count(*) FROM _wh.slices WHERE template_name = 'leaky'").fetchone()[0] == 0


def test_duplicate_keys_and_wrong_types_are_refused_and_nothing_written(wh):
    day = TODAY - dt.timedelta(days=6)
    twice = ("SELECT f.id, f.logged_time FROM phood_foodlogsum f CROSS JOIN generate_series(1, 2) "
             "WHERE f.logged_time >= '{TARGET_DATE}'::date AND f.logged_time < '{TARGET_DATE}'::date + 1")
    texty = ("SELECT 'id-' || f.id AS id, f.logged_time FROM phood_foodlogsum f "
             "WHERE f.logged_time >= '{TARGET_DATE}'::date AND f.logged_time < '{TARGET_DATE}'::date + 1")
    with wh.wh_admin() as c:
        c.execute("SELECT _wh.set_template('twice', %s, 'id bigint, logged_time timestamptz', 'logged_time', 'id')", (twice,))
        r = c.execute("SELECT _wh.create_mv_from_template('twice', 'tenant_b', target_date => %s)", (day,)).fetchone()[0]
        assert r["status"] == "failed" and r["sqlstate"] == "23505", r
        assert "twice" in r["error"] and "tenant_b" in r["error"] and day.isoformat() in r["error"] and f"{ROWS + 7} row(s)" in r["error"]
        c.execute("SELECT _wh.set_template('texty', %s, 'id bigint, logged_time timestamptz', 'logged_time')", (texty,))
        r = c.execute("SELECT _wh.create_mv_from_template('texty', 'tenant_b', target_date => %s)", (day,)).fetchone()[0]
        assert r["status"] == "failed" and r["sqlstate"] == "22P02" and "tenant tenant_b" in r["error"], r
        for t in ("twice", "texty"):
            assert c.execute(f"SELECT count(*) FROM public.{t}").fetchone()[0] == 0
            assert c.execute("SELECT count(*) FROM _wh.slices WHERE template_name = %s", (t,)).fetchone()[0] == 0


def test_rows_without_a_registry_row_are_replaced_not_doubled(wh):
    day = TODAY - dt.timedelta(days=8)
    with wh.wh_admin() as c:
        c.execute("DELETE FROM _wh.slices WHERE template_name = 'foodlogstats' AND tenant_name = 'tenant_a' AND range_start = %s", (day,))
        r = c.execute("SELECT _wh.create_mv_from_template('foodlogstats', 'tenant_a', target_date => %s)", (day,)).fetchone()[0]
        assert r["status"] == "succeeded" and r["details"]["action"] == "created" and r["details"]["rows_replaced"] == ROWS, r
        assert warehouse_figures(c, "tenant_a.foodlogstats", day, day) == source_figures(wh, "tenant_a", day, day)
        assert c.execute("SELECT _wh.does_mv_exist('foodlogstats', 'tenant_a', %s)", (day,)).fetchone()[0]


def test_empty_source_day_is_an_empty_slice(wh):
    day = FIRST - dt.timedelta(days=10)
    with wh.wh_admin() as c:
        r = c.execute("SELECT _wh.create_mv_from_template('foodlogstats', 'tenant_c', target_date => %s)", (day,)).fetchone()[0]
        assert r["status"] == "succeeded" and r["rows"] == 0
        assert c.execute("SELECT _wh.does_mv_exist('foodlogstats', 'tenant_c', %s)", (day,)).fetchone()[0]


def test_failed_refresh_keeps_the_old_rows(wh):
    day = TODAY - dt.timedelta(days=7)
    user, password = wh.tenant_login("tenant_c")
    with wh.wh_admin() as c:
        before = warehouse_figures(c, "tenant_c.foodlogstats", day, day)
        c.execute(
            "SELECT _wh.set_tenant_connection('tenant_c', '127.0.0.1', %s, 'tenant_c', %s, 'wrong-password', test_first => false)",
            (wh.source.port, user),
        )
        try:
            r = c.execute("SELECT _wh.refresh_mv('foodlogstats', 'tenant_c', %s)", (day,)).fetchone()[0]
            assert r["status"] == "failed" and "tenant tenant_c" in r["error"], r
            assert "password authentication failed" in r["error"] and "wrong-password" not in r["error"]
            assert warehouse_figures(c, "tenant_c.foodlogstats", day, day) == before
            t = c.execute("SELECT _wh.test_tenant_connection('tenant_c')").fetchone()[0]
            assert t["status"] == "failed" and "tenant tenant_c" in t["error"] and t["sqlstate"].startswith("08"), t
            assert "wrong-password" not in str(t)
        finally:
            c.execute(
                "SELECT _wh.set_tenant_connection('tenant_c', '127.0.0.1', %s, 'tenant_c', %s, %s)",
                (wh.source.port, user, password),
            )
        audit = c.execute(
            "SELECT changed_fields FROM _wh.connection_audit WHERE tenant_name = 'tenant_c' ORDER BY audit_id DESC LIMIT 2"
        ).fetchall()
        assert audit == [(["password"],), (["password"],)]
        leaked = c.execute(
            "SELECT count(*) FROM _wh.run_log WHERE error LIKE '%%wrong-password%%' OR details::text LIKE '%%wrong-password%%'"
        ).fetchone()[0]
        assert leaked == 0


def test_test_tenant_connection_reports_version_and_ssl(wh):
    with wh.wh_admin() as c:
        r = c.execute("SELECT _wh.test_tenant_connection('tenant_a')").fetchone()[0]
        assert r["details"]["server_version_num"] >= 150000 and r["details"]["ssl"] is True
        assert r["round_trip_ms"] > 0
        assert c.execute("SELECT _wh.get_tenant_connection_string('tenant_a')").fetchone()[0] == "wh_tenant_a"


def test_readers_never_see_an_error_or_a_missing_day_during_refreshes(wh):
    first = TODAY - dt.timedelta(days=9)
    with wh.wh_reader() as r:
        expected = r.execute(
            "SELECT count(*), count(DISTINCT logged_time::date) FROM public.foodlogstats WHERE logged_time >= %s",
            (first,),
        ).fetchone()
    errors, seen = [], []
    stop = threading.Event()

    def reader():
        with wh.wh_reader() as r:
            while not stop.is_set():
                try:
                    seen.append(r.execute(
                        "SELECT count(*), count(DISTINCT logged_time::date) FROM public.foodlogstats "
                        "WHERE logged_time >= %s", (first,)
                    ).fetchone())
                except psycopg.Error as e:  # any error fails the test
                    errors.append(repr(e))

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        with wh.wh_admin() as c:
            for i in range(3):
                for t in harness.TENANTS:
                    r = c.execute(
                        "SELECT _wh.update_mv_window('foodlogstats', %s, %s, %s, force_recreate => true)",
                        (t, first, TODAY),
                    ).fetchone()[0]
                    assert r["status"] == "succeeded", r
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors == []
    assert len(seen) > 10
    assert set(seen) == {expected}


def test_concurrent_calls_on_one_day_do_not_collide(wh):
    day = TODAY - dt.timedelta(days=1)
    holder = wh.wh_admin(autocommit=False)
    try:
        r1 = holder.execute("SELECT _wh.refresh_mv('foodlogstats', 'tenant_a', %s)", (day,)).fetchone()[0]
        assert r1["status"] == "succeeded"
        with wh.wh_admin() as c:
            r2 = c.execute("SELECT _wh.refresh_mv('foodlogstats', 'tenant_a', %s)", (day,)).fetchone()[0]
            assert r2["status"] == "skipped" and r2["details"]["reason"] == "busy", r2
            logged = c.execute(
                "SELECT details->>'reason' FROM _wh.run_log WHERE status = 'skipped' AND target_date = %s "
                "AND tenant_name = 'tenant_a' ORDER BY run_id DESC LIMIT 1", (day,)
            ).fetchone()[0]
            assert logged == "busy"
    finally:
        holder.rollback()
        holder.close()


def test_update_all_tenants_builds_every_tenant(wh):
    day = TODAY - dt.timedelta(days=2)
    with wh.wh_admin() as c:
        r = c.execute("SELECT _wh.update_all_tenants('foodlogstats', %s)", (day,)).fetchone()[0]
        # The day and the template's lookback day (1), for every tenant, the day first.
        assert r["days"] == [(day - dt.timedelta(days=1)).isoformat(), day.isoformat()]
        assert r["succeeded"] == 6 and r["tenants"] == 3, r
        assert r["results"][0]["day"] == day.isoformat()
        for t in harness.TENANTS:
            assert warehouse_figures(c, f"{t}.foodlogstats", day, day) == source_figures(wh, t, day, day)
        # Every source connection was closed with its answer (the sources' backends end).
        with wh.source_super("tenant_a") as s:
            left = 1
            for _ in range(40):
                left = s.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'wh'").fetchone()[0]
                if left == 0:
                    break
                time.sleep(0.05)
            assert left == 0
        # A row logged at 23:59:59 the day before, after that run, is fetched by the next one.
        yesterday = day - dt.timedelta(days=1)
        with wh.source_super("tenant_a") as s:
            s.execute(
                "INSERT INTO phood_foodlogsum SELECT id + 9000000, station_id, validation_status, action_taken_id, action_taken, "
                "name, quantity, average_weight, weight, client, food_category, cost_per_lb, target_weight, price_per_lb, "
                "action_reason, client_id, %s::date + interval '1 day' - interval '1 second', flags "
                "FROM phood_foodlogsum WHERE logged_time >= %s::date ORDER BY id LIMIT 1",
                (yesterday, yesterday),
            )
        try:
            assert warehouse_figures(c, "tenant_a.foodlogstats", yesterday, yesterday) != source_figures(wh, "tenant_a", yesterday, yesterday)
            c.execute("SELECT _wh.update_all_tenants('foodlogstats', %s)", (day,))
            assert warehouse_figures(c, "tenant_a.foodlogstats", yesterday, yesterday) == source_figures(wh, "tenant_a", yesterday, yesterday)
        finally:
            with wh.source_super("tenant_a") as s:
                s.execute("DELETE FROM phood_foodlogsum WHERE id >= 9000000 AND id % 10000000 >= 9000000")
            c.execute("SELECT _wh.update_all_tenants('foodlogstats', %s)", (day,))
        assert warehouse_figures(c, "tenant_a.foodlogstats", yesterday, yesterday) == source_figures(wh, "tenant_a", yesterday, yesterday)


def test_update_all_tenants_isolates_a_failing_tenant(wh):
    day = TODAY - dt.timedelta(days=2)
    user, password = wh.tenant_login("tenant_b")
    with wh.wh_admin() as c:
        c.execute(
            "SELECT _wh.set_tenant_connection('tenant_b', '127.0.0.1', %s, 'no_such_db', %s, %s, test_first => false)",
            (wh.source.port, user, password),
        )
        try:
            r = c.execute("SELECT _wh.update_all_tenants('foodlogstats', %s)", (day,)).fetchone()[0]
            status = {x["tenant"]: x["status"] for x in r["results"] if x["day"] == day.isoformat()}
            assert status == {"tenant_a": "succeeded", "tenant_b": "failed", "tenant_c": "succeeded"}, r
        finally:
            c.execute(
                "SELECT _wh.set_tenant_connection('tenant_b', '127.0.0.1', %s, 'tenant_b', %s, %s)",
                (wh.source.port, user, password),
            )


def test_dry_run_shows_days_and_sql_and_changes_nothing(wh):
    with wh.wh_admin() as c:
        before = c.execute("SELECT count(*) FROM _wh.run_log").fetchone()[0]
        r = c.execute(
            "SELECT _wh.update_mv_window('foodlogstats', 'tenant_a', %s, %s, dry_run => true)",
            (TODAY - dt.timedelta(days=1), TODAY),
        ).fetchone()[0]
        assert r["dry_run"] and r["days"] == 2
        assert [p["action"] for p in r["plan"]] == ["skip (exists)", "skip (exists)"]
        assert f"'{TODAY.isoformat()}'::date" in r["plan"][1]["remote_sql"]
        assert f"SELECT '{TODAY.isoformat()}'::date AS wh_day, wh_q.* FROM (" in r["plan"][1]["remote_sql"]
        assert r["plan"][1]["remote_sql"].startswith("COPY (SELECT wh_g.wh_day, ")  # streamed, caps counted here
        assert c.execute("SELECT count(*) FROM _wh.run_log").fetchone()[0] == before


def plan_relations(conn, sql, params=()):
    """(schema, relation) of every table the plan scans."""
    plan = conn.execute("EXPLAIN (FORMAT JSON, VERBOSE) " + sql, params).fetchone()[0]
    found = set()

    def walk(node):
        if "Relation Name" in node:
            found.add((node.get("Schema"), node["Relation Name"]))
        for child in node.get("Plans", []):
            walk(child)

    walk(plan[0]["Plan"])
    return found


def test_explain_prunes_to_the_months_asked_for(wh):
    first = TODAY - dt.timedelta(days=29)
    wanted = {("_wh_data", f"foodlogstats_{m}") for m in harness.months(first, TODAY)}
    with wh.wh_reader() as c:
        rels = plan_relations(
            c,
            "SELECT store, sum(weight) FROM tenant_a.foodlogstats "
            "WHERE logged_time >= %s::date AND logged_time < %s::date + 1 GROUP BY 1",
            (first, TODAY),
        )
        assert rels == wanted
        rels = plan_relations(
            c,
            "SELECT store, sum(weight) FROM public.foodlogstats WHERE schema_name = 'tenant_b' "
            "AND logged_time >= %s::date AND logged_time < %s::date + 1 GROUP BY 1", (TODAY, TODAY)
        )
        assert rels == {("_wh_data", f"foodlogstats_{TODAY:%Y_%m}")}
        # A BI tool's now()-relative range prunes at run time: the other months are never scanned.
        plan = c.execute(
            "EXPLAIN (ANALYZE, FORMAT JSON) SELECT count(*) FROM public.foodlogstats "
            "WHERE logged_time >= now() - interval '1 day'"
        ).fetchone()[0]
        text = str(plan)
        assert "Subplans Removed" in text


# Bad and hostile input (names, templates, dates, connections) is in tests/test_security.py.


def test_a_paused_tenant_is_skipped_by_scheduled_and_fan_out_runs(wh):
    day = TODAY - dt.timedelta(days=2)
    with wh.wh_admin() as c:
        r = c.execute("SELECT _wh.pause_tenant('tenant_c')").fetchone()[0]
        assert r["details"]["paused"] is True and r["details"]["changed"] is True
        try:
            with wh.wh_reader() as rd:
                before = rd.execute("SELECT count(*) FROM tenant_c.foodlogstats").fetchone()[0]
            u = c.execute("SELECT _wh.update_all_tenants('foodlogstats', %s)", (day,)).fetchone()[0]
            by_tenant = {}
            for x in u["results"]:
                by_tenant.setdefault(x["tenant"], set()).add((x["status"], (x.get("details") or {}).get("reason")))
            assert by_tenant["tenant_c"] == {("skipped", "paused")}, u
            assert {s for s, _ in by_tenant["tenant_a"]} == {"succeeded"}, u
            c.execute("CALL _wh.run_scheduled('foodlogstats', 'tenant_c')")
            last = c.execute("SELECT status, details->>'reason' FROM _wh.run_log WHERE tenant_name = 'tenant_c' "
                             "ORDER BY run_id DESC LIMIT 1").fetchone()
            assert last == ("skipped", "paused")
            assert c.execute("SELECT bool_and(paused), bool_or(stale) FROM _wh.freshness WHERE tenant_name = 'tenant_c'").fetchone() == (True, False)
            with wh.wh_reader() as rd:  # its data stays readable
                assert rd.execute("SELECT count(*) FROM tenant_c.foodlogstats").fetchone()[0] == before
            # An explicit refresh still works.
            assert c.execute("SELECT _wh.refresh_mv('foodlogstats', 'tenant_c', %s)", (day,)).fetchone()[0]["status"] == "succeeded"
            assert c.execute("SELECT count(*) FROM _wh.connection_audit WHERE tenant_name = 'tenant_c' AND action = 'pause'").fetchone()[0] == 1
        finally:
            c.execute("SELECT _wh.resume_tenant('tenant_c')")
        u = c.execute("SELECT _wh.update_all_tenants('foodlogstats', %s)", (day,)).fetchone()[0]
        assert {x["status"] for x in u["results"] if x["tenant"] == "tenant_c"} == {"succeeded"}, u
        assert c.execute("SELECT bool_or(paused) FROM _wh.freshness WHERE tenant_name = 'tenant_c'").fetchone()[0] is False


def test_a_tenant_whose_source_differs_gets_its_own_query(wh):
    """tenant_b's source dropped `flags`: it gets its own query; tenant_a keeps its flags."""
    day = TODAY - dt.timedelta(days=2)
    with wh.source_super("tenant_b") as s:
        s.execute("ALTER TABLE phood_foodlogsum RENAME COLUMN flags TO flags_gone")
    try:
        with wh.wh_admin() as c:
            r = c.execute("SELECT _wh.refresh_mv('foodlogstats', 'tenant_b', %s)", (day,)).fetchone()[0]
            assert r["status"] == "failed" and "flags" in r["error"], r
            q = c.execute("SELECT query_template FROM _wh.mv_templates WHERE template_name = 'foodlogstats'").fetchone()[0]
            own = q.replace("f.flags", "NULL::text[] AS flags")
            with pytest.raises(psycopg.errors.InvalidParameterValue, match="query for tenant tenant_b"):
                c.execute("SELECT _wh.set_tenant_query('foodlogstats', 'tenant_b', 'SELECT 1; DROP TABLE x')")
            c.execute("SELECT _wh.set_tenant_query('foodlogstats', 'tenant_b', %s, reason => 'flags dropped at the source')", (own,))
            assert c.execute("SELECT set_by::text, reason FROM _wh.tenant_queries WHERE tenant_name = 'tenant_b'").fetchone() == (
                "whadmin", "flags dropped at the source")
            r = c.execute("SELECT _wh.refresh_mv('foodlogstats', 'tenant_b', %s)", (day,)).fetchone()[0]
            assert r["status"] == "succeeded", r
            c.execute("SELECT _wh.refresh_mv('foodlogstats', 'tenant_a', %s)", (day,))
            lo, hi = day, day + dt.timedelta(days=1)
            flagged = lambda t: c.execute(
                f"SELECT count(*) FILTER (WHERE flags IS NOT NULL), count(*) FROM {t}.foodlogstats WHERE logged_time >= %s AND logged_time < %s",
                (lo, hi)).fetchone()
            assert flagged("tenant_b")[0] == 0 and flagged("tenant_b")[1] > 0
            assert flagged("tenant_a")[0] == flagged("tenant_a")[1] > 0  # the global query, untouched
            assert c.execute("SELECT count(*) FROM _wh.run_log WHERE operation = 'set_tenant_query'").fetchone()[0] >= 1
    finally:
        with wh.source_super("tenant_b") as s:
            s.execute("ALTER TABLE phood_foodlogsum RENAME COLUMN flags_gone TO flags")
        with wh.wh_admin() as c:
            c.execute("SELECT _wh.set_tenant_query('foodlogstats', 'tenant_b', NULL)")
            assert c.execute("SELECT count(*) FROM _wh.tenant_queries").fetchone()[0] == 0
            assert c.execute("SELECT _wh.refresh_mv('foodlogstats', 'tenant_b', %s)", (day,)).fetchone()[0]["status"] == "succeeded"
