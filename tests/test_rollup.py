"""Rollups: templates computed here from another template's stored rows, one tenant-day at
a time. A rollup must equal the aggregate of its base for every tenant-day after builds,
refreshes, late data, folds and rebuilds (a rollup of a rollup too); it changes in the same
transaction as its base (never seen disagreeing, readers never wait); a rollup that cannot
be kept fails its base's day rather than fall behind; what cannot be kept a day at a time is
refused with the reason. Fixed past days across a year end (2023-12-22 .. 2024-01-10)."""

import datetime as dt
from decimal import Decimal

import psycopg
import pytest

import harness

FIRST = dt.date(2023, 12, 22)
DAYS = 20
ROWS = 30
B, H, D = "rb", "rb_hourly", "rb_daily"
HOURLY_SELECT = ("store, date_trunc('hour', logged_time) AS hour, count(*) AS n, sum(weight) AS weight, "
                 "min(weight) AS lo, max(weight) AS hi")
HOURLY_GROUP = "store, date_trunc('hour', logged_time)"
# The same figures computed straight from the base, per tenant.
HOURLY_FROM_BASE = (f"SELECT schema_name, store, date_trunc('hour', logged_time) AS hour, count(*) AS n, sum(weight) AS weight, "
                    f"min(weight) AS lo, max(weight) AS hi FROM public.{B} GROUP BY 1, 2, 3")
HOURLY_STORED = f"SELECT schema_name, store, hour, n, weight, lo, hi FROM public.{H}"
DAILY_FROM_BASE = (f"SELECT schema_name, store, (logged_time AT TIME ZONE 'UTC')::date AS day, count(*) AS n, sum(weight) AS weight "
                   f"FROM public.{B} GROUP BY 1, 2, 3")
DAILY_STORED = f"SELECT schema_name, store, day, n, weight FROM public.{D}"


def day(i):
    return FIRST + dt.timedelta(days=i)


@pytest.fixture(scope="module")
def rb(env):
    harness.seed(env, FIRST.isoformat(), DAYS, ROWS)
    with env.wh_admin() as c:
        harness.register_tenants(env, c)
        harness.register_template(c, B)
        for t in ("tenant_a", "tenant_b"):
            c.execute("CALL _wh.backfill(%s, %s, %s, %s)", (B, t, FIRST, day(9)))
    return env


def assert_equal(c, from_base, stored, at_least=1):
    """Both ways: every row of the aggregate is stored, nothing else is; and there are rows."""
    missing = c.execute(f"({from_base}) EXCEPT ALL ({stored})").fetchall()
    extra = c.execute(f"({stored}) EXCEPT ALL ({from_base})").fetchall()
    assert missing == [] and extra == [], (missing[:3], extra[:3])
    n = c.execute(f"SELECT count(*) FROM ({stored}) s").fetchone()[0]
    assert n >= at_least, n
    return n


def test_a_rollup_declared_later_is_built_for_every_day_then_kept_with_its_base(rb):
    with rb.wh_admin() as c:
        c.execute("SET TimeZone = 'America/Los_Angeles'")  # wh works in UTC whatever the session's zone
        r = c.execute("SELECT _wh.set_rollup(%s, %s, %s, %s, indexes => ARRAY['(store)'])",
                      (H, B, HOURLY_SELECT, HOURLY_GROUP)).fetchone()[0]
        d = r["details"]
        assert d["base_template"] == B and d["time_column"] == "hour" and d["unique_key"] == ["store", "hour"], r
        assert d["columns"] == ["store text", "hour timestamp with time zone", "n bigint", "weight numeric",
                                "lo numeric", "hi numeric"], r
        assert d["days_to_build"] == 20 and d["build"] == f"CALL _wh.build_rollup('{H}')", r
        assert c.execute("SELECT days, base_days, days_to_build FROM _wh.rollups WHERE rollup_name = %s", (H,)).fetchone() == (0, 20, 20)
        assert c.execute("SELECT (_wh.health() ->> 'rollup_days_to_build')::int").fetchone()[0] == 20
        notices = []
        c.add_notice_handler(lambda n: notices.append(n.message_primary))
        c.execute("CALL _wh.build_rollup(%s, chunk_days => 4)", (H,))
        assert f"build_rollup {H}: 20 tenant-day(s) to build" in notices, notices
        assert any("20 day(s)" in n and "0 failed" in n for n in notices), notices
        assert c.execute("SELECT days, days_to_build FROM _wh.rollups WHERE rollup_name = %s", (H,)).fetchone() == (20, 0)
        assert_equal(c, HOURLY_FROM_BASE, HOURLY_STORED, at_least=20)
        # Resumable: a rerun has nothing left.
        notices.clear()
        c.execute("CALL _wh.build_rollup(%s)", (H,))
        assert f"build_rollup {H}: 0 tenant-day(s) to build" in notices, notices
        # Stored like any template: the tenant's view and the BI role read it.
        assert c.execute(f"SELECT count(*) FROM tenant_a.{H}").fetchone()[0] == \
            c.execute(f"SELECT count(*) FROM public.{H} WHERE schema_name = 'tenant_a'").fetchone()[0]
        # New base days build their rollup days in the same call, without build_rollup.
        c.execute("CALL _wh.backfill(%s, 'tenant_a', %s, %s)", (B, day(10), day(DAYS - 1)))
        assert c.execute("SELECT days, base_days, days_to_build FROM _wh.rollups WHERE rollup_name = %s", (H,)).fetchone() == (30, 30, 0)
        assert_equal(c, HOURLY_FROM_BASE, HOURLY_STORED, at_least=30)
        # The rollup's days were computed here: no rollup day went to a source.
        assert c.execute("SELECT count(*) FROM _wh.run_log WHERE template_name = %s AND status <> 'succeeded'", (H,)).fetchone()[0] == 0
    with rb.wh_reader() as r:
        assert r.execute(f"SELECT count(*) FROM public.{H}").fetchone()[0] > 0


def test_late_data_changes_base_and_rollups_in_one_transaction_and_readers_never_wait(rb):
    late = day(5)
    with rb.source_super("tenant_a") as s:
        s.execute("UPDATE phood_foodlogsum SET weight = weight + 100 WHERE id = (SELECT min(id) FROM phood_foodlogsum "
                  "WHERE logged_time >= %s AND logged_time < %s::date + 1)", (late, late))
        s.execute("INSERT INTO phood_foodlogsum (id, station_id, weight, logged_time) "
                  "VALUES (9200000000001, 3, 7.25, %s::date + interval '23 hours 59 minutes')", (late,))
    figures = (f"SELECT (SELECT sum(weight) FROM public.{B} WHERE schema_name = 'tenant_a' "
               f"AND (logged_time AT TIME ZONE 'UTC')::date = %(d)s), (SELECT sum(weight) FROM public.{H} "
               f"WHERE schema_name = 'tenant_a' AND (hour AT TIME ZONE 'UTC')::date = %(d)s)")
    with rb.wh_admin() as c:
        before = c.execute(figures, {"d": late}).fetchone()
        assert before[0] == before[1]
    with rb.wh_admin(autocommit=False) as w, rb.wh_reader() as reader:
        r = w.execute("SELECT _wh.update_mv_window(%s, 'tenant_a', %s, %s, force_recreate => true)", (B, late, late)).fetchone()[0]
        assert r["status"] == "succeeded" and r["results"][0]["details"]["action"] == "refreshed", r
        assert r["results"][0]["details"]["rollups"] == [H], r
        # Not committed: a reader (never waiting: 2 s lock and statement timeouts) sees the old base and the old rollup.
        reader.execute("SET lock_timeout = '2s'; SET statement_timeout = '2s'")
        assert reader.execute(figures, {"d": late}).fetchone() == before
        w.commit()
        after = reader.execute(figures, {"d": late}).fetchone()
        assert after[0] == after[1] and after[0] == before[0] + 100 + Decimal("7.25"), (before, after)
    with rb.wh_admin() as c:
        assert_equal(c, HOURLY_FROM_BASE, HOURLY_STORED)
        # A base day refreshed without change leaves the rollup's rows, and marks its day
        # refreshed too: the rollup is as fresh as its base (_wh.freshness).
        at = "SELECT refreshed_at FROM _wh.slices WHERE template_name = %s AND tenant_name = 'tenant_a' AND range_start = %s"
        before = c.execute(at, (H, day(8))).fetchone()[0]
        r = c.execute("SELECT _wh.update_mv_window(%s, 'tenant_a', %s, %s, force_recreate => true)", (B, day(8), day(8))).fetchone()[0]
        assert r["results"][0]["details"]["action"] == "unchanged", r
        assert c.execute(at, (H, day(8))).fetchone()[0] > before


def test_a_rollup_that_cannot_be_kept_fails_its_base_day(rb):
    late = day(6)
    with rb.source_super("tenant_b") as s:
        s.execute("UPDATE phood_foodlogsum SET weight = weight + 1 WHERE logged_time >= %s AND logged_time < %s::date + 1", (late, late))
    base_sum = f"SELECT sum(weight) FROM public.{B} WHERE schema_name = 'tenant_b' AND logged_time >= %s AND logged_time < %s::date + 1"
    with rb.wh_admin() as c:
        old = c.execute(base_sum, (late, late)).fetchone()[0]
    # A fold of the rollup holds its template row (as a fold does): its days cannot be written.
    with rb.wh_super(autocommit=False) as holder, rb.wh_admin() as c:
        holder.execute("SELECT 1 FROM _wh.mv_templates WHERE template_name = %s FOR UPDATE", (H,))
        c.execute("SET lock_timeout = '300ms'")
        r = c.execute("SELECT _wh.update_mv_window(%s, 'tenant_b', %s, %s, force_recreate => true)", (B, late, late)).fetchone()[0]
        res = r["results"][0]
        assert res["status"] == "failed" and res["sqlstate"] == "55P03", r
        assert f"rollup {H} could not be kept for day {late}" in res["error"], r
        assert c.execute(base_sum, (late, late)).fetchone()[0] == old  # the base day was left as it was
        holder.rollback()
        r = c.execute("SELECT _wh.update_mv_window(%s, 'tenant_b', %s, %s, force_recreate => true)", (B, late, late)).fetchone()[0]
        assert r["status"] == "succeeded", r
        assert c.execute(base_sum, (late, late)).fetchone()[0] != old
        assert_equal(c, HOURLY_FROM_BASE, HOURLY_STORED)


def test_a_rollup_of_a_rollup_folds_and_a_rebuild_without_sources(rb):
    with rb.wh_admin() as c:
        r = c.execute("SELECT _wh.set_rollup(%s, %s, %s, %s, partition_grain => 'year')",
                      (D, H, "store, hour::date AS day, sum(n) AS n, sum(weight) AS weight", "store, hour::date")).fetchone()[0]
        assert r["details"]["time_column"] == "day" and r["details"]["days_to_build"] == 30, r
        c.execute("CALL _wh.build_rollup(%s)", (D,))
        assert_equal(c, DAILY_FROM_BASE, DAILY_STORED, at_least=30)
        # An unchanged base day marks the day refreshed in its rollups and theirs.
        at = "SELECT refreshed_at FROM _wh.slices WHERE template_name = %s AND tenant_name = 'tenant_a' AND range_start = %s"
        before = {t: c.execute(at, (t, day(7))).fetchone()[0] for t in (H, D)}
        r = c.execute("SELECT _wh.update_mv_window(%s, 'tenant_a', %s, %s, force_recreate => true)", (B, day(7), day(7))).fetchone()[0]
        assert r["results"][0]["details"]["action"] == "unchanged", r
        assert all(c.execute(at, (t, day(7))).fetchone()[0] > before[t] for t in (H, D))
        # Late data reaches both levels with the base's refresh.
        late = day(12)
        with rb.source_super("tenant_a") as s:
            s.execute("DELETE FROM phood_foodlogsum WHERE id = (SELECT max(id) FROM phood_foodlogsum "
                      "WHERE logged_time >= %s AND logged_time < %s::date + 1)", (late, late))
        r = c.execute("SELECT _wh.update_mv_window(%s, 'tenant_a', %s, %s, force_recreate => true)", (B, late, late)).fetchone()[0]
        assert r["results"][0]["details"]["rollups"] == [H], r
        assert_equal(c, HOURLY_FROM_BASE, HOURLY_STORED)
        assert_equal(c, DAILY_FROM_BASE, DAILY_STORED)
        # Folding 2023 of the base and of the rollup changes no figure.
        for t in (B, H):
            r = c.execute("SELECT _wh.create_combined_table_by_year(%s, NULL, 2023)", (t,)).fetchone()[0]
            assert r["status"] == "succeeded", r
        assert f"{H}_2023" in [p for _, p in harness.partitions(c, H)]
        assert_equal(c, HOURLY_FROM_BASE, HOURLY_STORED)
        # Refreshing a folded day still keeps the rollup.
        c.execute("SELECT _wh.update_mv_window(%s, 'tenant_b', %s, %s, force_recreate => true)", (B, day(1), day(2)))
        assert_equal(c, HOURLY_FROM_BASE, HOURLY_STORED)
    # Disaster: rollup rows lost. The sources are down: the rollups are rebuilt from the base anyway.
    with rb.wh_super() as s:
        s.execute(f"DELETE FROM _wh_data.{H} WHERE schema_name = 'tenant_a' AND hour < %s", (day(4),))
        s.execute(f"TRUNCATE _wh_data.{D}")
    rb.source.stop("fast")
    try:
        with rb.wh_admin() as c:
            for t in (H, D):
                r = c.execute("SELECT _wh.rebuild_entire_warehouse(template_name => %s)", (t,)).fetchone()[0]
                assert r["status"] == "succeeded" and r["failed"] == 0, r
            assert_equal(c, HOURLY_FROM_BASE, HOURLY_STORED)
            assert_equal(c, DAILY_FROM_BASE, DAILY_STORED)
            # Called on a rollup, a window and a backfill compute its days from the base too.
            with rb.wh_super() as s:
                s.execute(f"DELETE FROM public.{H} WHERE schema_name = 'tenant_b' AND (hour AT TIME ZONE 'UTC')::date IN (%s, %s)", (day(1), day(2)))
            r = c.execute("SELECT _wh.update_mv_window(%s, 'tenant_b', %s, %s, force_recreate => true)", (H, day(1), day(1))).fetchone()[0]
            assert r["status"] == "succeeded" and r["results"][0]["details"]["action"] == "refreshed", r
            c.execute("CALL _wh.backfill(%s, 'tenant_b', %s, %s, force_recreate => true)", (H, day(2), day(2)))
            assert_equal(c, HOURLY_FROM_BASE, HOURLY_STORED)
            # The base with its source down: its days fail, nothing is lost, the rollups stay equal.
            r = c.execute("SELECT _wh.rebuild_entire_warehouse(template_name => %s)", (B,)).fetchone()[0]
            assert r["failed"] > 0
            assert_equal(c, HOURLY_FROM_BASE, HOURLY_STORED)
            # A base that lost rows never empties its rollup: that day fails with the reason and is kept.
            # A day the base no longer holds (as after the base's retention) is kept as it is.
            held = (f"SELECT count(*), sum(n) FROM public.{H} WHERE schema_name = 'tenant_b' "
                    f"AND (hour AT TIME ZONE 'UTC')::date = %s")
            lost, forgotten = day(3), day(4)
            kept = {d: c.execute(held, (d,)).fetchone() for d in (lost, forgotten)}
            assert all(v[0] > 0 for v in kept.values()), kept
            with rb.wh_super() as s:
                s.execute(f"DELETE FROM public.{B} WHERE schema_name = 'tenant_b' AND (logged_time AT TIME ZONE 'UTC')::date = %s", (lost,))
                s.execute("DELETE FROM _wh.slices WHERE template_name = %s AND tenant_name = 'tenant_b' AND range_start = %s", (B, forgotten))
            r = c.execute("SELECT _wh.rebuild_entire_warehouse(tenant_name => 'tenant_b', template_name => %s)", (H,)).fetchone()[0]
            by_day = {x["day"]: x for x in r["results"]}
            assert by_day[lost.isoformat()]["status"] == "failed" and f"rebuild {B} first" in by_day[lost.isoformat()]["error"], r
            assert by_day[forgotten.isoformat()]["status"] == "skipped", r
            assert sum(x["status"] == "failed" for x in r["results"]) == 1, r
            assert {d: c.execute(held, (d,)).fetchone() for d in kept} == kept
    finally:
        rb.source.start()
    with rb.wh_admin() as c:
        # Sources back: the base's lost day is fetched again, its rollups follow in the same step.
        r = c.execute("SELECT _wh.rebuild_entire_warehouse(tenant_name => 'tenant_b', template_name => %s)", (B,)).fetchone()[0]
        assert r["failed"] == 0, r
        r = c.execute("SELECT _wh.update_mv_window(%s, 'tenant_b', %s, %s)", (B, forgotten, forgotten)).fetchone()[0]
        assert r["status"] == "succeeded", r
        assert_equal(c, HOURLY_FROM_BASE, HOURLY_STORED)
        assert_equal(c, DAILY_FROM_BASE, DAILY_STORED)


def test_what_cannot_be_kept_a_day_at_a_time_is_refused_and_nothing_changes(rb):
    cases = [
        ("store, date_trunc('week', logged_time) AS w, count(*) AS n", "store, date_trunc('week', logged_time)", "spans several days"),
        ("store, sum(weight) OVER (PARTITION BY store ORDER BY logged_time) AS s", "store, logged_time", "OVER"),
        ("store, count(*) AS n", "store", "group_by must hold a bucket of logged_time"),
        ("date_trunc('hour', logged_time) AS h, sum(weight * random()) AS w", "h", "random(…) is volatile"),
        ("date_trunc('hour', logged_time) AS h, my_sum(weight) AS w", "h", "my_sum(…) is not a built-in function"),
        ("date_trunc('hour', logged_time) AS h, public.f(weight) AS w", "h", "qualified name"),
        ("date_trunc('hour', logged_time) AS h, weight AS w", "h", "PostgreSQL refuses it over the base"),
        ("date_trunc('hour', logged_time) AS h, (SELECT 1) AS w", "h", "subqueries"),
        ("date_trunc('hour', logged_time) AS h, length(table_to_xml('_wh.mv_templates', true, false, '')::text) AS w", "h", "reads other relations"),
        ("date_trunc('hour', logged_time) AS h, count(*) AS n; DROP TABLE public.rb", "h", "';' is not allowed"),
        ("date_trunc('hour', logged_time) AS h, count(*) AS n -- x", "h", "comments are not allowed"),
        ("date_trunc('hour', logged_time) AS h, max($$x$$) AS n", "h", "'$'"),
        ("date_trunc('hour', logged_time) AS h, max(E'x') AS n", "h", "prefixed literals"),
        ("date_trunc('hour', logged_time) AS h, length(wh_b::text) AS n", "h", "whole row"),
        ("date_trunc('hour', logged_time) AS h, max(now()) AS n", "h", "depends on who or when"),
        ("date_trunc('hour', logged_time) AS h, count(*) AS n", "h HAVING count(*) > 1", "HAVING would start another clause"),
    ]
    with rb.wh_admin() as c:
        for select, group, why in cases:
            with pytest.raises(psycopg.Error) as e:
                c.execute("SELECT _wh.set_rollup('bad', %s, %s, %s)", (B, select, group))
            assert e.value.sqlstate == "22023" and why in str(e.value), (select, e.value)
            assert c.execute("SELECT count(*) FROM _wh.mv_templates WHERE template_name = 'bad'").fetchone()[0] == 0
            assert c.execute("SELECT to_regclass('public.bad')").fetchone()[0] is None
        harness.register_template(c, "rb_plain")
        for args, why in ((("rb_plain", B), "fetched from the sources"), ((B, H), "cannot be computed from its own rollups"), ((H, H), "computed from itself"),
                          ((H, D), "cannot be computed from its own rollups"), (("bad", "nothing"), "unknown template")):
            with pytest.raises(psycopg.Error, match=why):
                c.execute("SELECT _wh.set_rollup(%s, %s, %s, %s)", (*args, HOURLY_SELECT, HOURLY_GROUP))
        # A rollup holding days keeps its definition; the same one again is fine.
        with pytest.raises(psycopg.Error, match="holds 30 day"):
            c.execute("SELECT _wh.set_rollup(%s, %s, %s, %s)", (H, B, HOURLY_SELECT.replace("max", "min"), HOURLY_GROUP))
        r = c.execute("SELECT _wh.set_rollup(%s, %s, %s, %s, indexes => ARRAY['(store)'])",
                      (H, B, HOURLY_SELECT, HOURLY_GROUP)).fetchone()[0]
        assert r["details"]["action"] == "updated" and r["details"]["days_to_build"] == 0, r
        # A rollup is never fetched: what only a fetched template does is refused with the base's name.
        for sql, args in (("SELECT _wh.update_all_tenants(%s, %s)", (H, day(1))),
                          ("SELECT _wh.verify(%s, 'tenant_a', %s, %s)", (H, day(1), day(2))),
                          ("SELECT _wh.set_tenant_query(%s, 'tenant_a', 'SELECT 1')", (H,)),
                          ("SELECT _wh.schedule_tenant(%s, 'tenant_a')", (H,)),
                          ("SELECT _wh.schedule_template(%s, '5 * * * *')", (H,)),
                          ("SELECT _wh.schedule_verify(%s)", (H,))):
            with pytest.raises(psycopg.Error) as e:
                c.execute(sql, args)
            assert e.value.sqlstate == "22023" and f"it is a rollup of {B}" in str(e.value), (sql, e.value)
        assert c.execute("SELECT count(*) FROM _wh.jobs WHERE jobname LIKE %s", (f"wh:{H}:%",)).fetchone()[0] == 0
        # A rollup's finished years can be folded on a schedule like any template's.
        r = c.execute("SELECT _wh.schedule_yearly_fold(%s)", (H,)).fetchone()[0]
        assert r["details"]["jobs"][0]["job"] == f"wh:{H}:fold", r
        c.execute("SELECT cron.unschedule(%s)", (f"wh:{H}:fold",))
        # The base cannot go while a rollup is computed from it.
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            with rb.wh_super() as s:
                s.execute("DELETE FROM _wh.mv_templates WHERE template_name = %s", (B,))


def bump(env, tenant, d):
    """A late change at the source on day `d`."""
    with env.source_super(tenant) as s:
        s.execute("UPDATE phood_foodlogsum SET weight = weight + 1 WHERE id = (SELECT min(id) FROM phood_foodlogsum "
                  "WHERE logged_time >= %s AND logged_time < %s::date + 1)", (d, d))


def test_a_stored_rollup_is_checked_on_every_use_and_keeps_its_own_retention(rb):
    late = day(9)
    refresh = "SELECT _wh.update_mv_window(%s, 'tenant_a', %s, %s, force_recreate => true)"
    with rb.wh_admin() as c:
        # set_template cannot replace a rollup's checked definition.
        with pytest.raises(psycopg.Error) as e:
            harness.register_template(c, H)
        assert e.value.sqlstate == "22023" and f"it is a rollup of {B}: change it with _wh.set_rollup" in str(e.value)
    # A query written straight into the registry is never run: the rollup's query is made
    # again from its checked definition on every use.
    with rb.wh_super() as s:
        s.execute("UPDATE _wh.mv_templates SET query_template = 'SELECT pg_sleep(5), ''{TARGET_DATE}''' WHERE template_name = %s", (H,))
    bump(rb, "tenant_a", late)
    with rb.wh_admin() as c:
        c.execute("SET statement_timeout = '4s'")
        r = c.execute(refresh, (B, late, late)).fetchone()[0]
        assert r["status"] == "succeeded" and r["results"][0]["details"]["rollups"] == [H], r
        assert_equal(c, HOURLY_FROM_BASE, HOURLY_STORED)
    # A definition written straight into the registry gets set_rollup's checks when used:
    # the base's day fails with the reason and is left as it was.
    with rb.wh_super() as s:
        s.execute("UPDATE _wh.mv_templates SET rollup_select = replace(rollup_select, 'count(*) AS n', 'count(*) + (random() * 0)::int AS n') "
                  "WHERE template_name = %s", (H,))
    bump(rb, "tenant_a", late)
    try:
        with rb.wh_admin() as c:
            r = c.execute(refresh, (B, late, late)).fetchone()[0]
            res = r["results"][0]
            assert res["status"] == "failed" and res["sqlstate"] == "22023" and "random(…) is volatile" in res["error"], r
    finally:
        with rb.wh_super() as s:
            s.execute("UPDATE _wh.mv_templates SET rollup_select = %s WHERE template_name = %s", (HOURLY_SELECT, H))
    with rb.wh_admin() as c:
        # An output named like a base column groups by its expression, not by the base's column.
        r = c.execute("SELECT _wh.set_rollup('rb_shadow', %s, %s, %s)",
                      (B, "date_trunc('hour', logged_time) AS logged_time, count(*) AS n", "logged_time")).fetchone()[0]
        assert r["details"]["unique_key"] == ["logged_time"], r
        c.execute("CALL _wh.build_rollup('rb_shadow')")
        assert_equal(c, f"SELECT schema_name, date_trunc('hour', logged_time), count(*) FROM public.{B} GROUP BY 1, 2",
                     "SELECT schema_name, logged_time, n FROM public.rb_shadow", at_least=30)
        # A rollup's own retention: days before its horizon are neither built nor made again.
        c.execute("SELECT _wh.set_rollup('rb_recent', %s, %s, %s)", (B, HOURLY_SELECT, HOURLY_GROUP))
        c.execute("SELECT _wh.set_template_policy('rb_recent', retention => '1 year')")
        assert c.execute("SELECT days_to_build FROM _wh.rollups WHERE rollup_name = 'rb_recent'").fetchone()[0] == 0
        c.execute("CALL _wh.build_rollup('rb_recent')")
        bump(rb, "tenant_a", late)
        r = c.execute(refresh, (B, late, late)).fetchone()[0]
        assert r["status"] == "succeeded" and "rb_recent" not in r["results"][0]["details"]["rollups"], r
        assert c.execute("SELECT count(*) FROM _wh.slices WHERE template_name = 'rb_recent'").fetchone()[0] == 0
