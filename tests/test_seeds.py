"""The seeds' calls (the hand-written system's scripts and cron entries, ../shared/seeds/):
each works with the seeds' arguments and meaning, or fails with a HINT naming wh's call.
Fixed past days (the end of 2023 and the start of 2024)."""

import datetime as dt

import psycopg
import pytest

import harness

FIRST = dt.date(2023, 12, 28)
DAYS = 10
ROWS = 12
T = "seedstats"  # its own template: update_seedstats(…) and create_seedstats_mv(…) are made for it


@pytest.fixture(scope="module")
def seeds(env):
    harness.seed(env, FIRST.isoformat(), DAYS, ROWS)
    with env.wh_admin() as c:
        harness.register_tenants(env, c)
        # 000's connection call, positionally: (name, host, port, dbname, username, password).
        user, password = env.tenant_login("tenant_c")
        c.execute("SELECT _wh.set_tenant_connection('tenant_c', '127.0.0.1', %s, 'tenant_c', %s, %s)", (env.source.port, user, password))
        harness.register_template(c, T)
    return env


def day(i):
    return FIRST + dt.timedelta(days=i)


def hint_of(c, sql, args=(), error=psycopg.Error):
    with pytest.raises(error) as e:
        c.execute(sql, args)
    return e.value.sqlstate, e.value.diag.message_hint or ""


def test_generated_per_template_calls(seeds):
    with seeds.wh_admin() as c:
        # 000: update_foodlogstats(tenant, schema, date, allow_refresh_yesterday, force_recreate)
        r = c.execute(f"SELECT _wh.update_{T}('tenant_a', 'tenant_a', %s, false, false)", (day(5),)).fetchone()[0]
        assert r["status"] == "succeeded" and [x["day"] for x in r["results"]] == [day(5).isoformat()], r
        r = c.execute(f"SELECT _wh.update_{T}('tenant_a', 'tenant_a', %s)", (day(6),)).fetchone()[0]
        assert [x["day"] for x in r["results"]] == [day(6).isoformat(), day(5).isoformat()], r  # and yesterday
        # 000: create_foodlogstats_mv(tenant, schema, base_view_name, date, client_name)
        r = c.execute(f"SELECT _wh.create_{T}_mv('tenant_b', 'tenant_b', %s, %s, 'Acme')", (T, day(2))).fetchone()[0]
        assert r["status"] == "succeeded" and r["rows"] == ROWS + 7, r
        assert c.execute(f"SELECT count(*) FROM tenant_b.{T}").fetchone()[0] == ROWS + 7
        # A schema other than the tenant's: wh's exact call in the HINT.
        state, hint = hint_of(c, f"SELECT _wh.update_{T}('tenant_a', 'reports', %s)", (day(5),))
        assert state == "22023" and hint == f"wh's call: SELECT _wh.update_mv_by_template('{T}', 'tenant_a', '{day(5)}')", hint
        state, hint = hint_of(c, f"SELECT _wh.create_{T}_mv('tenant_a', 'reports', %s, %s, NULL)", (T, day(5)))
        assert state == "22023" and hint.startswith(f"wh's call: SELECT _wh.create_mv_from_template('{T}', 'tenant_a'"), hint
        # They are wh's like every other function (and go with DROP EXTENSION).
        member = c.execute(
            "SELECT count(*) FROM pg_depend d JOIN pg_proc p ON p.oid = d.objid "
            "WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'wh') AND d.deptype = 'e' "
            "AND p.proname IN (%s, %s) AND 'search_path=pg_catalog, pg_temp' = ANY (p.proconfig)", (f"update_{T}", f"create_{T}_mv"),
        ).fetchone()[0]
        assert member == 2


def test_window_and_view_calls(seeds):
    with seeds.wh_admin() as c:
        # 000: update_mv_window(tenant, schema, start, end, force, function_name)
        r = c.execute("SELECT _wh.update_mv_window('tenant_c', 'tenant_c', %s::date, %s::date, false, %s)",
                      (day(0), day(3), f"update_{T}")).fetchone()[0]
        assert r["status"] == "succeeded" and r["days"] == 4, r
        # The four-argument form reads as wh's (template, tenant, …): the HINT says the order.
        state, hint = hint_of(c, "SELECT _wh.update_mv_window('tenant_c', 'reports', %s, %s)", (day(0), day(3)))
        assert state == "42704" and f"SELECT _wh.update_mv_window('" in hint and "'tenant_c', start_date, end_date)" in hint, hint
        # 001's *_by_template names.
        r = c.execute("SELECT _wh.update_mv_window_by_template(%s, 'tenant_c', %s, %s)", (T, day(4), day(5))).fetchone()[0]
        assert r["status"] == "succeeded" and r["days"] == 2, r
        assert c.execute("SELECT _wh.update_tenant_union_view_by_template(%s, 'tenant_c') ->> 'status'", (T,)).fetchone()[0] == "succeeded"
        assert c.execute("SELECT _wh.update_public_view_by_template(%s) ->> 'status'", (T,)).fetchone()[0] == "succeeded"
        r = c.execute("SELECT _wh.create_combined_table_from_template_by_year(%s, 'tenant_c', 2023)", (T,)).fetchone()[0]
        assert r["status"] == "succeeded" and r["details"]["validation"]["tenant_days"] == 4, r
        # 000: update_tenant_view(tenant, schema, view_basename)
        assert c.execute("SELECT _wh.update_tenant_view('tenant_c', 'tenant_c', %s) ->> 'relation'", (T,)).fetchone()[0] == f"tenant_c.{T}"
        state, hint = hint_of(c, "SELECT _wh.update_tenant_view('tenant_c', 'reports', %s)", (T,))
        assert state == "22023" and hint == f"wh's call: SELECT _wh.update_tenant_union_view('{T}', 'tenant_c')", hint


def test_utility_calls(seeds):
    with seeds.wh_admin() as c:
        c.execute("SELECT _wh.update_mv_window(%s, 'tenant_a', %s, %s)", (T, day(7), day(8)))
        # 000: create_mv_name(mvname, target_date), does_mv_exist(schema, view_name), refresh_mv(schema, view_name)
        name = c.execute("SELECT _wh.create_mv_name(%s, %s)", (T, day(7))).fetchone()[0]
        assert name == f"{T}_{day(7):%Y_%m_%d}"
        assert c.execute("SELECT _wh.does_mv_exist('tenant_a', %s)", (name,)).fetchone()[0] is True
        assert c.execute("SELECT _wh.does_mv_exist('tenant_a', %s)", (f"{T}_2023_01_01",)).fetchone()[0] is False
        r = c.execute("SELECT _wh.refresh_mv('tenant_a', %s)", (name,)).fetchone()[0]
        assert r["status"] == "succeeded", r
        for bad in ("foodlogstats", f"{T}_2024_13_01", "x; drop"):
            state, hint = hint_of(c, "SELECT _wh.does_mv_exist('tenant_a', %s)", (bad,))
            assert state == "22023" and "_wh.does_mv_exist(template_name, tenant_name, target_date)" in hint
        assert c.execute("SELECT _wh.get_tenant_connection_string('tenant_a')").fetchone()[0] == "wh_tenant_a"
        r = c.execute("SELECT _wh.rebuild_entire_warehouse(tenant_name => 'tenant_a', template_name => %s)", (T,)).fetchone()[0]
        assert r["status"] == "succeeded", r
