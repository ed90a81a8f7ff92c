"""The caller's TimeZone never changes what is fetched or how a day is bounded: time
columns of type timestamptz, timestamp (a source's timestamp without time zone, declared
either way) and date, refreshed from sessions in America/Los_Angeles and Europe/Berlin,
across both zones' DST changes (2025-03-09 and 2025-03-30)."""

import datetime as dt

import pytest

import harness

FIRST = dt.date(2025, 3, 8)
DAYS = 24  # 2025-03-08 .. 2025-03-31
ROWS = 48
WINDOWS = [(dt.date(2025, 3, 8), dt.date(2025, 3, 10)), (dt.date(2025, 3, 29), dt.date(2025, 3, 31))]
WHERE = "WHERE f.logged_time >= '{TARGET_DATE}'::date AND f.logged_time < '{TARGET_DATE}'::date + 1"
TEMPLATES = {
    # A source column of type timestamp (no time zone) declared timestamptz: 0.1.0 failed
    # with 23514 from Los Angeles (335 rows "outside" the day) and Berlin (42).
    "tz_ts": (f"SELECT f.id, f.logged_time AT TIME ZONE 'UTC' AS logged_time FROM phood_foodlogsum f {WHERE}",
              "id bigint, logged_time timestamptz", "logged_time"),
    "tz_plain": (f"SELECT f.id, f.logged_time AT TIME ZONE 'UTC' AS logged_time FROM phood_foodlogsum f {WHERE}",
                 "id bigint, logged_time timestamp", "logged_time"),
    "tz_tstz": (f"SELECT f.id, f.logged_time FROM phood_foodlogsum f {WHERE}",
                "id bigint, logged_time timestamptz", "logged_time"),
    "tz_date": (f"SELECT f.id, (f.logged_time AT TIME ZONE 'UTC')::date AS day FROM phood_foodlogsum f {WHERE}",
                "id bigint, day date", "day"),
}


@pytest.fixture(scope="module")
def tz(env):
    harness.seed(env, FIRST.isoformat(), DAYS, ROWS, tenants=["tenant_a"])
    with env.wh_admin() as c:
        harness.register_tenants(env, c)
        for name, (q, cols, tc) in TEMPLATES.items():
            c.execute("SELECT _wh.set_template(%s, %s, %s, %s, unique_key => 'id')", (name, q, cols, tc))
    return env


def source_days(env, first, last):
    with env.source_super("tenant_a") as s:
        s.execute("SET TimeZone = 'UTC'")
        return dict(s.execute(
            "SELECT (logged_time AT TIME ZONE 'UTC')::date, count(*) FROM phood_foodlogsum "
            "WHERE logged_time >= %s::date AND logged_time < %s::date + 1 GROUP BY 1", (first, last)).fetchall())


@pytest.mark.parametrize("zone", ["America/Los_Angeles", "Europe/Berlin"])
def test_a_callers_time_zone_changes_nothing(tz, zone):
    with tz.wh_admin() as c:
        c.execute(f"SET TimeZone = '{zone}'")
        for name, (_, _, tc) in TEMPLATES.items():
            for first, last in WINDOWS:
                r = c.execute("SELECT _wh.update_mv_window(%s, 'tenant_a', %s, %s, force_recreate => true)",
                              (name, first, last)).fetchone()[0]
                assert r["failed"] == 0 and r["succeeded"] == (last - first).days + 1, (name, zone, r)
                # Read back in UTC: every UTC day holds exactly the source's rows of that day.
                with tz.wh_reader() as rd:
                    rd.execute("SET TimeZone = 'UTC'")
                    held = dict(rd.execute(
                        f"SELECT {tc}::date, count(*) FROM tenant_a.{name} WHERE {tc} >= %s AND {tc} < %s::date + 1 GROUP BY 1",
                        (first, last)).fetchall())
                assert held == source_days(tz, first, last), (name, zone)
        # The caller keeps its zone.
        assert c.execute("SHOW TimeZone").fetchone()[0] == zone
