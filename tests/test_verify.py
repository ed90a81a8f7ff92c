"""Reconciliation: `_wh.verify` proves the warehouse equals its sources, day by day, with
one remote query per chunk of days computed on the source; `_wh.drift` keeps what it found;
`repair => true` fetches exactly the days that differ. Fixed past days."""

import datetime as dt

import psycopg
import pytest

import harness

FIRST = dt.date(2024, 6, 1)
DAYS = 20
ROWS = 25
T = "ver"


def day(i):
    return FIRST + dt.timedelta(days=i)


@pytest.fixture(scope="module")
def ver(env):
    harness.seed(env, FIRST.isoformat(), DAYS, ROWS)
    with env.wh_admin() as c:
        harness.register_tenants(env, c)
        harness.register_template(c, T)
        for t in harness.TENANTS:
            c.execute("CALL _wh.backfill(%s, %s, %s, %s)", (T, t, FIRST, day(DAYS - 1)))
    return env


def drift(c, tenant):
    return c.execute(
        "SELECT day, status FROM _wh.drift WHERE template_name = %s AND tenant_name = %s ORDER BY 1", (T, tenant)
    ).fetchall()


def test_changes_at_the_source_are_found_repaired_and_gone(ver):
    with ver.wh_admin() as c:
        r = c.execute("SELECT _wh.verify(%s, 'tenant_a', %s, %s)", (T, FIRST, day(DAYS - 1))).fetchone()[0]
        assert r["details"]["days_checked"] == DAYS and r["details"]["in_order"] == DAYS and r["details"]["drifted"] == [], r
        assert drift(c, "tenant_a") == []
    # Outside any lookback: a value changed on day 3, a row gone on day 7, a row added on day 12.
    with ver.source_super("tenant_a") as s:
        s.execute("UPDATE phood_foodlogsum SET weight = weight + 0.001 WHERE id = (SELECT min(id) FROM phood_foodlogsum "
                  "WHERE logged_time >= %s AND logged_time < %s::date + 1)", (day(3), day(3)))
        s.execute("DELETE FROM phood_foodlogsum WHERE id = (SELECT max(id) FROM phood_foodlogsum "
                  "WHERE logged_time >= %s AND logged_time < %s::date + 1)", (day(7), day(7)))
        s.execute("INSERT INTO phood_foodlogsum (id, station_id, weight, logged_time) VALUES (9100000000001, 3, 1.5, %s::date + interval '5 hours')", (day(12),))
    with ver.wh_admin() as c:
        r = c.execute("SELECT _wh.verify(%s, 'tenant_a', %s, %s)", (T, FIRST, day(DAYS - 1))).fetchone()[0]
        found = {x["day"]: x for x in r["details"]["drifted"]}
        assert sorted(found) == [day(3).isoformat(), day(7).isoformat(), day(12).isoformat()], r
        # Both figures, for the DBA: the changed value keeps the count, the others do not.
        assert found[day(3).isoformat()]["source"]["rows"] == found[day(3).isoformat()]["warehouse"]["rows"] == ROWS
        assert found[day(3).isoformat()]["source"]["checksum"] != found[day(3).isoformat()]["warehouse"]["checksum"]
        assert (found[day(7).isoformat()]["source"]["rows"], found[day(7).isoformat()]["warehouse"]["rows"]) == (ROWS - 1, ROWS)
        assert (found[day(12).isoformat()]["source"]["rows"], found[day(12).isoformat()]["warehouse"]["rows"]) == (ROWS + 1, ROWS)
        assert drift(c, "tenant_a") == [(day(3), "drifted"), (day(7), "drifted"), (day(12), "drifted")]
        assert c.execute("SELECT (_wh.health() ->> 'drifted_days')::int").fetchone()[0] == 3
        # Verifying found the drift and changed nothing in the warehouse.
        assert c.execute(f"SELECT count(*) FROM tenant_a.{T} WHERE logged_time >= %s AND logged_time < %s::date + 1", (day(7), day(7))).fetchone()[0] == ROWS
        # Only those days are fetched again.
        before = c.execute("SELECT count(*) FROM _wh.run_log WHERE operation = 'verify_repair'").fetchone()[0]
        r = c.execute("SELECT _wh.verify(%s, 'tenant_a', %s, %s, repair => true)", (T, FIRST, day(DAYS - 1))).fetchone()[0]
        assert r["details"]["repaired"] == [day(3).isoformat(), day(7).isoformat(), day(12).isoformat()], r
        assert c.execute("SELECT count(*) FROM _wh.run_log WHERE operation = 'verify_repair'").fetchone()[0] - before == 3
        assert drift(c, "tenant_a") == []
        r = c.execute("SELECT _wh.verify(%s, 'tenant_a', %s, %s)", (T, FIRST, day(DAYS - 1))).fetchone()[0]
        assert r["details"]["drifted"] == [] and r["details"]["in_order"] == DAYS, r
        assert c.execute("SELECT (_wh.health() ->> 'drifted_days')::int").fetchone()[0] == 0


def test_a_source_that_is_down_is_unverifiable_not_drifted(ver):
    ver.source.stop("fast")
    try:
        with ver.wh_admin() as c:
            r = c.execute("SELECT _wh.verify(%s, 'tenant_b', %s, %s)", (T, FIRST, day(9))).fetchone()[0]
            assert r["details"]["drifted"] == [] and len(r["details"]["unverifiable"]) == 10, r
            assert "could not" in r["details"]["unverifiable"][0]["error"], r
            assert {s for _, s in drift(c, "tenant_b")} == {"unverifiable"} and len(drift(c, "tenant_b")) == 10
            h = c.execute("SELECT _wh.health()").fetchone()[0]
            assert (h["drifted_days"], h["unverifiable_days"]) == (0, 10), h
    finally:
        ver.source.start()
    with ver.wh_admin() as c:
        r = c.execute("SELECT _wh.verify(%s, 'tenant_b', %s, %s)", (T, FIRST, day(9))).fetchone()[0]
        assert r["details"]["in_order"] == 10, r
        assert drift(c, "tenant_b") == []


def test_scheduled_verify_and_bad_input(ver):
    with ver.wh_admin() as c:
        r = c.execute("SELECT _wh.schedule_verify(%s)", (T,)).fetchone()[0]
        job = r["details"]["jobs"][0]
        assert job["job"] == f"wh:{T}:verify" and job["schedule"] == "0 3 * * 0", r
        assert c.execute("SELECT command FROM _wh.jobs WHERE jobname = %s", (f"wh:{T}:verify",)).fetchone()[0] == \
            f"CALL _wh.run_scheduled_verify('{T}', '35 days', false)"
        # What the job runs: every tenant's last 35 days up to yesterday (none built: in order).
        c.execute("CALL _wh.run_scheduled_verify(%s, '2 days')", (T,))
        assert c.execute("SELECT count(*) FROM _wh.run_log WHERE operation = 'verify' AND template_name = %s "
                         "AND started_at > now() - interval '1 minute'", (T,)).fetchone()[0] >= 3
        for args, state in (((T, "tenant_a", None, day(1)), "22004"), ((T, "nobody", FIRST, day(1)), "42704"),
                            (("nothing", "tenant_a", FIRST, day(1)), "42704"), ((T, "tenant_a", day(2), day(1)), "22023")):
            with pytest.raises(psycopg.Error) as e:
                c.execute("SELECT _wh.verify(%s, %s, %s, %s)", args)
            assert e.value.sqlstate == state, (args, e.value)
        with pytest.raises(psycopg.Error, match="positive") as e:
            c.execute("SELECT _wh.schedule_verify(%s, lookback => '-1 day')", (T,))
        assert e.value.sqlstate == "22023"
        c.execute("SELECT cron.unschedule(%s)", (f"wh:{T}:verify",))
