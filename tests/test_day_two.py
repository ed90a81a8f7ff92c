"""Day two with many tenants (issue 21): what a DBA meets after the pilot. Rotating a
password without weakening the connection and testing it before it is saved, the source's
mistakes explained, the seeds' day filter made a range, a removed tenant's data dropped
later, days a source purged never emptied, health() that can be alerted on, template
evolution and drop_template, and disaster recovery that brings jobs and readers back.

Fixed past days, whatever the date today."""

import datetime as dt
import subprocess

import psycopg
import pytest

import harness

FIRST = dt.date(2024, 3, 1)
DAYS = 6
ROWS = 30
T = "dtwo"
# The seeds' tables, few columns: what each test changes stays readable.
QUERY = ("SELECT f.id, l.store, f.quantity, f.weight, f.logged_time FROM phood_foodlogsum f "
         "JOIN stations s ON s.station_id = f.station_id JOIN locations l ON l.location_id = s.location_id "
         "WHERE f.logged_time >= '{TARGET_DATE}'::date AND f.logged_time < '{TARGET_DATE}'::date + 1")
COLUMNS = "id bigint, store text, quantity integer, weight numeric(12,3), logged_time timestamptz"
# A rollup over such a template: per store and hour.
ROLLUP = ("store, date_trunc('hour', logged_time) AS hour, count(*) AS n", "store, date_trunc('hour', logged_time)")


def set_template(c, name=T, query=QUERY, columns=COLUMNS, **kw):
    extra = "".join(f", {k} => %s" for k in kw)
    return c.execute(
        f"SELECT _wh.set_template(%s, %s, %s, 'logged_time', unique_key => 'id', indexes => ARRAY['unique (id)', '(store)']{extra})",
        (name, query, columns, *kw.values()),
    ).fetchone()[0]


@pytest.fixture(scope="module")
def day2(env):
    harness.seed(env, FIRST.isoformat(), DAYS, ROWS)
    with env.wh_admin() as c:
        harness.register_tenants(env, c)
        set_template(c)
        for t in harness.TENANTS:
            r = c.execute("SELECT _wh.update_mv_window(%s, %s, %s, %s)",
                          (T, t, FIRST, FIRST + dt.timedelta(days=DAYS - 1))).fetchone()[0]
            assert r["status"] == "succeeded", r
    return env


def audit_count(c, tenant):
    return c.execute("SELECT count(*) FROM _wh.connection_audit WHERE tenant_name = %s", (tenant,)).fetchone()[0]


# ------------------------------------------------------------------ item 1: test before save

def test_a_connection_is_tested_before_it_is_saved(day2):
    """A new tenant with a wrong password is refused and nothing of it is saved; a rotation
    to a wrong password keeps the old, working one; `test_first => false` saves untested."""
    user, password = day2.tenant_login("tenant_a")
    with day2.wh_admin() as c:
        with pytest.raises(psycopg.Error, match="nothing was saved: the connection test failed") as e:
            c.execute("SELECT _wh.set_tenant_connection('dt_new', '127.0.0.1', %s, 'tenant_a', %s, 'not-the-password')",
                      (day2.source.port, user))
        assert e.value.sqlstate.startswith("08"), e.value.sqlstate
        assert "password authentication failed" in str(e.value) and "not-the-password" not in str(e.value)
        assert c.execute("SELECT count(*) FROM _wh.tenant_connections WHERE tenant_name = 'dt_new'").fetchone()[0] == 0
        assert c.execute("SELECT count(*) FROM pg_foreign_server WHERE srvname = 'wh_dt_new'").fetchone()[0] == 0
        assert c.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'dt_new'").fetchone()[0] == 0

        r = c.execute("SELECT _wh.set_tenant_connection('dt_new', '127.0.0.1', %s, 'tenant_a', %s, %s)",
                      (day2.source.port, user, password)).fetchone()[0]
        assert r["status"] == "succeeded" and r["details"]["ssl"] is True and r["details"]["server_version_num"] >= 150000, r
        before = audit_count(c, "dt_new")
        with pytest.raises(psycopg.Error, match="nothing was saved"):
            c.execute("SELECT _wh.set_tenant_connection('dt_new', password => 'rotated-wrong')")
        assert audit_count(c, "dt_new") == before
        assert c.execute("SELECT _wh.test_tenant_connection('dt_new')").fetchone()[0]["status"] == "succeeded"
        r = c.execute("SELECT _wh.set_tenant_connection('dt_new', password => 'rotated-wrong', test_first => false)").fetchone()[0]
        assert r["details"]["tested"] is False and r["details"]["changed_fields"] == ["password"]
        # A query over every tenant reports each, the failing one included: nothing raises.
        got = dict(c.execute(
            "SELECT tenant_name, _wh.test_tenant_connection(tenant_name) ->> 'status' FROM _wh.tenant_connections").fetchall())
        assert got == {"tenant_a": "succeeded", "tenant_b": "succeeded", "tenant_c": "succeeded", "dt_new": "failed"}, got
        t = c.execute("SELECT _wh.test_tenant_connection('dt_new')").fetchone()[0]
        assert "changes only the password" in t["error"] and t["sqlstate"].startswith("08"), t
        c.execute("SELECT _wh.remove_tenant('dt_new', drop_data => true)")


def test_the_test_names_columns_a_source_does_not_return(day2):
    """Registering (or testing) a tenant checks each template's query on its source: a
    column the query does not return (unaliased) and one it returns that the template does
    not declare are both said, as a WARNING and in the result."""
    unaliased = QUERY.replace("l.store,", "l.store AS shop, f.name,")
    with day2.wh_admin() as c:
        set_template(c, "dt_cols")
        c.execute("SELECT _wh.refresh_mv('dt_cols', 'tenant_b', %s)", (FIRST,))
        set_template(c, "dt_cols", query=unaliased)  # the query changed: the check uses the day it holds
        warnings = []
        c.add_notice_handler(lambda n: warnings.append(n.message_primary))
        r = c.execute("SELECT _wh.test_tenant_connection('tenant_b')").fetchone()[0]
        check = next(x for x in r["details"]["templates"] if x["template"] == "dt_cols")
        assert check["missing"] == ["store"] and sorted(check["extra"]) == ["name", "shop"], check
        assert any("returns no column named store" in w and "AS store" in w for w in warnings), warnings
        assert any("also returns" in w and "never stored" in w for w in warnings), warnings
        ok = next(x for x in r["details"]["templates"] if x["template"] == T)
        assert ok["missing"] == [] and ok["extra"] == [], ok
        # The build fails, and says what to do rather than naming wh's internal alias alone.
        b = c.execute("SELECT _wh.refresh_mv('dt_cols', 'tenant_b', %s)", (FIRST + dt.timedelta(days=1),)).fetchone()[0]
        assert b["status"] == "failed" and "alias it in the query's select list (… AS store)" in b["error"], b
        logged = c.execute("SELECT error FROM _wh.run_log WHERE template_name = 'dt_cols' AND status = 'failed' "
                           "ORDER BY run_id DESC LIMIT 1").fetchone()[0]
        assert "AS store" in logged
        c.execute("SELECT _wh.drop_template('dt_cols')")


# ------------------------------------------------------------------ item 8: the source's mistakes

def test_a_value_that_does_not_fit_names_its_column(day2):
    """A text the source sends into a column the template declares integer: the failure
    names the column."""
    text_into_int = QUERY.replace("f.quantity,", "(f.quantity::text || 'x') AS quantity,")
    with day2.wh_admin() as c:
        set_template(c, "dt_types", query=text_into_int)
        b = c.execute("SELECT _wh.refresh_mv('dt_types', 'tenant_a', %s)", (FIRST,)).fetchone()[0]
        assert b["status"] == "failed" and b["sqlstate"] == "22P02", b
        assert "not a valid integer for the template's column quantity" in b["error"], b
        with pytest.raises(psycopg.Error, match="declare it jsonb") as e:
            set_template(c, "dt_json", columns=COLUMNS + ", doc json",
                         query=QUERY.replace("f.logged_time FROM", "f.logged_time, '{}'::json AS doc FROM"))
        assert e.value.sqlstate == "22023"
        assert c.execute("SELECT count(*) FROM _wh.mv_templates WHERE template_name = 'dt_json'").fetchone()[0] == 0
        c.execute("SELECT _wh.drop_template('dt_types')")


# ------------------------------------------------------------------ item 9: the seeds' day filter

def test_the_seeds_day_filter_becomes_a_range(day2):
    seeds = QUERY.split(" WHERE ")[0] + " WHERE (f.logged_time AT TIME ZONE 'UTC')::DATE = '{TARGET_DATE}'::DATE"
    with day2.wh_admin() as c:
        notices = []
        c.add_notice_handler(lambda n: notices.append(n.message_primary))
        r = set_template(c, "dt_seeds", query=seeds)
        assert "rewritten" in r["details"]["query_rewritten"], r
        assert any("day filter" in n and "rewritten" in n for n in notices), notices
        stored = c.execute("SELECT query_template FROM _wh.mv_templates WHERE template_name = 'dt_seeds'").fetchone()[0]
        assert stored.endswith("WHERE f.logged_time >= '{TARGET_DATE}'::date AND f.logged_time < '{TARGET_DATE}'::date + 1"), stored
        # The same rows as the template with a range written by hand.
        c.execute("SELECT _wh.refresh_mv('dt_seeds', 'tenant_a', %s)", (FIRST,))
        got = c.execute("SELECT count(*), sum(weight) FROM public.dt_seeds WHERE schema_name = 'tenant_a'").fetchone()
        want = c.execute(f"SELECT count(*), sum(weight) FROM public.{T} WHERE schema_name = 'tenant_a' "
                         "AND logged_time >= %s AND logged_time < %s", (FIRST, FIRST + dt.timedelta(days=1))).fetchone()
        assert got == want and got[0] > 0
        c.execute("SELECT _wh.drop_template('dt_seeds')")


# ------------------------------------------------------------------ item 7: drop kept data later

def test_a_removed_tenants_kept_data_can_be_dropped_later(day2):
    user, password = day2.tenant_login("tenant_c")
    with day2.wh_admin() as c:
        c.execute("SELECT _wh.set_tenant_connection('dt_gone', '127.0.0.1', %s, 'tenant_c', %s, %s)",
                  (day2.source.port, user, password))
        c.execute("SELECT _wh.update_mv_window(%s, 'dt_gone', %s, %s)", (T, FIRST, FIRST + dt.timedelta(days=1)))
        notices = []
        c.add_notice_handler(lambda n: notices.append(f"{n.severity} {n.message_primary}"))
        r = c.execute("SELECT _wh.remove_tenant('dt_gone')").fetchone()[0]
        assert r["details"]["rows_deleted"] == 0
        assert c.execute(f"SELECT count(*) FROM dt_gone.{T}").fetchone()[0] > 0  # kept, readable
        r = c.execute("SELECT _wh.remove_tenant('dt_gone', drop_data => true)").fetchone()[0]
        assert r["status"] == "succeeded" and r["details"]["rows_deleted"] > 0 and r["details"]["was_registered"] is False, r
        assert c.execute(f"SELECT count(*) FROM public.{T} WHERE schema_name = 'dt_gone'").fetchone()[0] == 0
        assert c.execute("SELECT count(*) FROM _wh.slices WHERE tenant_name = 'dt_gone'").fetchone()[0] == 0
        assert c.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'dt_gone'").fetchone()[0] == 0
        assert not [n for n in notices if "cascades" in n], notices
        # Now there is nothing left of it: an unknown tenant, as any other name.
        with pytest.raises(psycopg.errors.UndefinedObject, match="unknown tenant"):
            c.execute("SELECT _wh.remove_tenant('dt_gone', drop_data => true)")


# ------------------------------------------------------------------ item 2: templates evolve

def day_figures(c, relation, where=""):
    return c.execute(f"SELECT schema_name, (logged_time AT TIME ZONE 'UTC')::date, count(*), sum(weight) FROM {relation} "
                     f"{where} GROUP BY 1, 2 ORDER BY 1, 2").fetchall()


def test_a_template_gains_widens_and_renames_columns_in_place(day2):
    """A column appended to a template with days (NULL in the days fetched before, filled by
    their next refresh), a type widened, a column renamed: the table, the tenants' views and
    a tenant-scoped reader follow; verify finds no drift in the days fetched before; what
    would lose data is refused with the reason."""
    last = FIRST + dt.timedelta(days=3)
    with day2.wh_super() as s:
        s.execute("DROP ROLE IF EXISTS dt_evo_ro")
        s.execute("CREATE ROLE dt_evo_ro LOGIN PASSWORD 'dt-evo-ro'")
    with day2.wh_admin() as c:
        set_template(c, "dt_evo")
        for t in ("tenant_a", "tenant_b"):
            c.execute("SELECT _wh.update_mv_window('dt_evo', %s, %s, %s)", (t, FIRST, last))
        c.execute("SELECT _wh.grant_tenant_reader('dt_evo_ro', 'tenant_a')")
        before = day_figures(c, "public.dt_evo")
        wider = COLUMNS.replace("weight numeric(12,3)", "weight numeric(14,3)") + ", name text"
        with_name = QUERY.replace("f.logged_time FROM", "f.logged_time, f.name FROM")
        r = set_template(c, "dt_evo", query=with_name, columns=wider)
        assert r["details"]["evolved"]["added"] == ["name"] and r["details"]["evolved"]["widened"] == ["weight numeric(14,3)"], r
        assert day_figures(c, "public.dt_evo") == before
        assert c.execute("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'public.dt_evo'::regclass "
                         "AND attname = 'weight'").fetchone()[0] == "numeric(14,3)"
        assert c.execute("SELECT count(*) FROM public.dt_evo WHERE name IS NOT NULL").fetchone()[0] == 0
        v = c.execute("SELECT _wh.verify('dt_evo', 'tenant_a', %s, %s)", (FIRST, last)).fetchone()[0]
        assert v["status"] == "succeeded" and v["details"]["drifted"] == [], v
        # The next refresh of an old day fetches the new column; verify still agrees.
        r = c.execute("SELECT _wh.refresh_mv('dt_evo', 'tenant_a', %s)", (FIRST,)).fetchone()[0]
        assert r["details"]["action"] == "refreshed", r
        filled = c.execute("SELECT count(*), count(name) FROM tenant_a.dt_evo WHERE logged_time < %s", (FIRST + dt.timedelta(days=1),)).fetchone()
        assert filled[0] == filled[1] > 0
        v = c.execute("SELECT _wh.verify('dt_evo', 'tenant_a', %s, %s)", (FIRST, last)).fetchone()[0]
        assert v["details"]["drifted"] == [], v
        # Rename: the view's column follows, the query returns the new name.
        renamed_q = with_name.replace("f.name FROM", "f.name AS item_name FROM")
        r = c.execute("SELECT _wh.rename_template_column('dt_evo', 'name', 'item_name', %s)", (renamed_q,)).fetchone()[0]
        assert r["status"] == "succeeded", r
        assert c.execute("SELECT count(item_name) FROM tenant_a.dt_evo").fetchone()[0] == filled[1]
        r = c.execute("SELECT _wh.refresh_mv('dt_evo', 'tenant_b', %s)", (FIRST + dt.timedelta(days=1),)).fetchone()[0]
        assert r["status"] == "succeeded", r
        v = c.execute("SELECT _wh.verify('dt_evo', 'tenant_b', %s, %s)", (FIRST, last)).fetchone()[0]
        assert v["details"]["drifted"] == [], v
        # What would lose what the days hold is refused, and changes nothing.
        now = wider.replace(", name text", ", item_name text")
        for columns, words in ((now.replace(", quantity integer", ""), "quantity .number 3. would become weight"),
                               (now.replace("quantity integer", "quantity bigint"), "cannot change from integer to bigint"),
                               (now.replace("numeric(14,3)", "numeric(12,3)"), "cannot change"),
                               (now.replace(", item_name text", ""), "item_name would be removed")):
            with pytest.raises(psycopg.Error, match=words) as e:
                set_template(c, "dt_evo", query=renamed_q, columns=columns)
            assert e.value.sqlstate == "22023"
        with pytest.raises(psycopg.Error, match="time column"):
            c.execute("SELECT _wh.rename_template_column('dt_evo', 'logged_time', 'ts', %s)", (renamed_q,))
    reader = psycopg.connect(day2.warehouse.tcp_dsn(day2.warehouse_db, "dt_evo_ro", "dt-evo-ro"))
    try:
        assert reader.execute("SELECT count(item_name) FROM tenant_a.dt_evo").fetchone()[0] == filled[1]
        with day2.wh_reader() as r:
            assert r.execute("SELECT count(item_name) FROM public.dt_evo WHERE schema_name = 'tenant_a'").fetchone()[0] == filled[1]
    finally:
        reader.close()
        with day2.wh_admin() as c:
            c.execute("SELECT _wh.revoke_tenant_reader('dt_evo_ro', 'tenant_a')")
            c.execute("SELECT _wh.drop_template('dt_evo')")
        with day2.wh_super() as s:
            s.execute("DROP OWNED BY dt_evo_ro")
            s.execute("DROP ROLE dt_evo_ro")


def test_drop_template_cleans_up_everything_it_made(day2):
    """A mistyped template (its table, the seeds' functions, days, a job) and a template
    whose data is kept: drop_template removes what wh made; with keep_data the table stays."""
    with day2.wh_admin() as c:
        set_template(c, "dt_typo")
        c.execute("SELECT _wh.update_mv_window('dt_typo', 'tenant_a', %s, %s)", (FIRST, FIRST + dt.timedelta(days=1)))
        c.execute("SELECT _wh.schedule_tenant('dt_typo', 'tenant_a')")
        c.execute("SELECT _wh.set_rollup('dt_typo_by_store', 'dt_typo', %s, %s)", ROLLUP)
        with pytest.raises(psycopg.Error, match="rollups"):
            c.execute("SELECT _wh.drop_template('dt_typo')")
        c.execute("SELECT _wh.drop_template('dt_typo_by_store')")
        r = c.execute("SELECT _wh.drop_template('dt_typo')").fetchone()[0]
        assert r["status"] == "succeeded" and r["details"]["days_forgotten"] == 2 and r["details"]["jobs_unscheduled"] == ["wh:dt_typo:tenant_a"], r
        for q in ("SELECT count(*) FROM _wh.mv_templates WHERE template_name LIKE 'dt_typo%'",
                  "SELECT count(*) FROM _wh.slices WHERE template_name = 'dt_typo'",
                  "SELECT count(*) FROM pg_class WHERE relname LIKE 'dt_typo%'",
                  "SELECT count(*) FROM pg_proc WHERE proname IN ('update_dt_typo', 'create_dt_typo_mv')",
                  "SELECT count(*) FROM _wh.jobs WHERE jobname LIKE 'wh:dt_typo:%'"):
            assert c.execute(q).fetchone()[0] == 0, q
        with pytest.raises(psycopg.errors.UndefinedObject):
            c.execute("SELECT _wh.drop_template('dt_typo')")
        # keep_data: the rows stay readable, wh forgets them; the name is not taken again over them.
        set_template(c, "dt_kept")
        c.execute("SELECT _wh.refresh_mv('dt_kept', 'tenant_b', %s)", (FIRST,))
        n = c.execute("SELECT count(*) FROM tenant_b.dt_kept").fetchone()[0]
        r = c.execute("SELECT _wh.drop_template('dt_kept', keep_data => true)").fetchone()[0]
        assert r["details"]["table"].startswith("kept"), r
        assert c.execute("SELECT count(*) FROM public.dt_kept").fetchone()[0] == n > 0
        assert c.execute("SELECT count(*) FROM _wh.slices WHERE template_name = 'dt_kept'").fetchone()[0] == 0
        # Set again, the template takes its table back; the next refresh replaces the kept rows, never doubles them.
        set_template(c, "dt_kept")
        c.execute("SELECT _wh.refresh_mv('dt_kept', 'tenant_b', %s)", (FIRST,))
        assert c.execute("SELECT count(*) FROM tenant_b.dt_kept").fetchone()[0] == n
        c.execute("SELECT _wh.drop_template('dt_kept')")
    # A table of public that is not wh's is never taken over.
    with day2.wh_super() as s:
        s.execute("CREATE TABLE public.dt_theirs (id bigint)")
    try:
        with day2.wh_admin() as c:
            with pytest.raises(psycopg.Error, match="not a template's table") as e:
                set_template(c, "dt_theirs")
            assert e.value.sqlstate == "22023"
    finally:
        with day2.wh_super() as s:
            s.execute("DROP TABLE public.dt_theirs")


# ------------------------------------------------------------------ item 3: purged days are kept

def test_a_source_that_purged_a_day_never_empties_it(day2):
    """The source deletes a day (and most of another): rebuild, repair and refresh keep the
    stored rows and say so (failed, in the run log, failures and health) until the operator
    allows the shrink; a template policy can allow it for good."""
    gone, halved = FIRST + dt.timedelta(days=2), FIRST + dt.timedelta(days=3)
    with day2.wh_admin() as c:
        held = dict(c.execute(f"SELECT (logged_time AT TIME ZONE 'UTC')::date, count(*) FROM tenant_b.{T} GROUP BY 1").fetchall())
    with day2.source_super("tenant_b") as s:
        s.execute("DELETE FROM phood_foodlogsum WHERE logged_time >= %s AND logged_time < %s", (gone, gone + dt.timedelta(days=1)))
        s.execute("DELETE FROM phood_foodlogsum WHERE logged_time >= %s AND logged_time < %s AND id %% 10 < 7",
                  (halved, halved + dt.timedelta(days=1)))
    try:
        with day2.wh_admin() as c:
            r = c.execute("SELECT _wh.rebuild_entire_warehouse(tenant_name => 'tenant_b', template_name => %s)", (T,)).fetchone()[0]
            kept = {x["day"]: x for x in r["results"] if x["status"] == "failed"}
            assert set(kept) == {gone.isoformat(), halved.isoformat()}, r
            assert "the stored day was kept" in kept[gone.isoformat()]["error"], kept
            assert kept[gone.isoformat()]["details"]["kept"] == {"stored_rows": held[gone], "source_rows": 0}
            now = dict(c.execute(f"SELECT (logged_time AT TIME ZONE 'UTC')::date, count(*) FROM tenant_b.{T} GROUP BY 1").fetchall())
            assert now == held
            v = c.execute("SELECT _wh.verify(%s, 'tenant_b', %s, %s, repair => true)", (T, gone, halved)).fetchone()[0]
            assert len(v["details"]["drifted"]) == 2, v
            assert dict(c.execute(f"SELECT (logged_time AT TIME ZONE 'UTC')::date, count(*) FROM tenant_b.{T} GROUP BY 1").fetchall()) == held
            open_failures = c.execute("SELECT count(*) FROM _wh.failures WHERE tenant_name = 'tenant_b' AND template_name = %s "
                                      "AND NOT resolved", (T,)).fetchone()[0]
            assert open_failures >= 2
            assert any("not mended" in p for p in c.execute("SELECT _wh.health() -> 'problems'").fetchone()[0])
            # The operator says so for one day; a policy for the other.
            r = c.execute("SELECT _wh.refresh_mv(%s, 'tenant_b', %s, allow_shrink => true)", (T, gone)).fetchone()[0]
            assert r["status"] == "succeeded" and r["rows"] == 0 and r["details"]["rows_replaced"] == held[gone], r
            c.execute("SELECT _wh.set_template_limits(%s, max_shrink_percent => 100)", (T,))
            r = c.execute("SELECT _wh.refresh_mv(%s, 'tenant_b', %s)", (T, halved)).fetchone()[0]
            assert r["status"] == "succeeded" and 0 < r["rows"] < held[halved] * 0.5, r
            assert c.execute("SELECT count(*) FROM _wh.failures WHERE tenant_name = 'tenant_b' AND template_name = %s "
                             "AND day IN (%s, %s) AND NOT resolved", (T, gone, halved)).fetchone()[0] == 0
            with pytest.raises(psycopg.Error, match="max_shrink_percent") as e:
                c.execute("SELECT _wh.set_template_limits(%s, max_shrink_percent => 101)", (T,))
            assert e.value.sqlstate == "22023"
    finally:
        harness.seed(day2, FIRST.isoformat(), DAYS, ROWS, tenants=["tenant_b"])
        with day2.wh_admin() as c:
            c.execute("SELECT _wh.set_template_limits(%s, max_shrink_percent => 50)", (T,))
            c.execute("SELECT _wh.update_mv_window(%s, 'tenant_b', %s, %s, force_recreate => true)",
                      (T, FIRST, FIRST + dt.timedelta(days=DAYS - 1)))
            # The findings of those days go with a verify that finds them in order again.
            v = c.execute("SELECT _wh.verify(%s, 'tenant_b', %s, %s)", (T, gone, halved)).fetchone()[0]
            assert v["details"]["drifted"] == [], v


# ------------------------------------------------------------------ item 4: health you can alert on

def test_health_says_ok_only_when_nothing_is_wrong_now(day2):
    """In a warehouse of its own: 'ok' when every pair is built and fresh; each problem
    makes it 'degraded' with a line saying where to look, and mending it makes it 'ok'
    again (a failure a later run mended no longer counts)."""
    user, password = day2.tenant_login("tenant_a")
    last = FIRST + dt.timedelta(days=DAYS - 1)
    with harness.scratch_database(day2, "wh_health"):
        c = psycopg.connect(day2.warehouse.tcp_dsn("wh_health", "whadmin", day2.admin_password), autocommit=True)
        with c:
            def health():
                return c.execute("SELECT _wh.health()").fetchone()[0]
            harness.register_tenants(day2, c)
            set_template(c)
            h = health()
            assert h["status"] == "degraded" and h["never_built"] == 3, h
            assert any("never built" in p for p in h["problems"]), h
            for t in harness.TENANTS:
                c.execute("SELECT _wh.update_mv_window(%s, %s, %s, %s)", (T, t, FIRST, last - dt.timedelta(days=2)))
            assert health()["status"] == "ok", health()
            # A gap, then filled.
            c.execute("SELECT _wh.refresh_mv(%s, 'tenant_a', %s)", (T, last))
            h = health()
            assert h["status"] == "degraded" and h["missing_days"] == 1 and any("_wh.gaps" in p for p in h["problems"]), h
            c.execute("SELECT _wh.refresh_mv(%s, 'tenant_a', %s)", (T, last - dt.timedelta(days=1)))
            assert health()["status"] == "ok", health()
            # A failure, then mended by a later run of the same day.
            c.execute("SELECT _wh.set_tenant_connection('tenant_a', password => 'wrong', test_first => false)")
            assert c.execute("SELECT _wh.refresh_mv(%s, 'tenant_a', %s)", (T, FIRST)).fetchone()[0]["status"] == "failed"
            h = health()
            assert h["status"] == "degraded" and h["unresolved_failures"] == 1, h
            c.execute("SELECT _wh.set_tenant_connection('tenant_a', password => %s)", (password,))
            assert c.execute("SELECT _wh.refresh_mv(%s, 'tenant_a', %s)", (T, FIRST)).fetchone()[0]["status"] == "succeeded"
            h = health()
            assert h["status"] == "ok" and h["failures_24h"] >= 1 and h["unresolved_failures"] == 0, h
            # Drift, found by verify.
            with day2.source_super("tenant_a") as s:
                s.execute("UPDATE phood_foodlogsum SET weight = weight + 1 WHERE id = (SELECT min(id) FROM phood_foodlogsum "
                          "WHERE logged_time >= %s AND logged_time < %s)", (FIRST, FIRST + dt.timedelta(days=1)))
            try:
                c.execute("SELECT _wh.verify(%s, 'tenant_a', %s, %s)", (T, FIRST, FIRST))
                h = health()
                assert h["status"] == "degraded" and h["drifted_days"] == 1 and any("_wh.drift" in p for p in h["problems"]), h
            finally:
                harness.seed(day2, FIRST.isoformat(), DAYS, ROWS, tenants=["tenant_a"])
            c.execute("SELECT _wh.verify(%s, 'tenant_a', %s, %s)", (T, FIRST, FIRST))
            assert health()["status"] == "ok", health()
            # The registry says a day holds rows the table does not (a restored registry).
            with day2.warehouse.connect("wh_health") as s:
                s.execute(f"DELETE FROM public.{T} WHERE schema_name = 'tenant_b'")
            h = health()
            assert h["status"] == "degraded" and h["data_missing"] == 1, h
            assert c.execute("SELECT data_present FROM _wh.freshness WHERE tenant_name = 'tenant_b'").fetchone()[0] is False
            c.execute("SELECT _wh.rebuild_entire_warehouse(tenant_name => 'tenant_b')")
            assert health()["status"] == "ok", health()


# ------------------------------------------------------------------ item 6: disaster recovery

def test_disaster_recovery_brings_back_readers_and_says_what_is_missing(day2, tmp_path):
    """README's DR, end to end, with a tenant-scoped reader whose role a fresh cluster makes
    again (a new oid): restore the _wh dump, finish_restore() grants the reader again and
    lists the tenants without a password; monitoring reads the data (degraded until the
    rebuild), not the registry alone."""
    with day2.wh_super() as s:
        s.execute("DROP ROLE IF EXISTS dt_dr_ro")
        s.execute("CREATE ROLE dt_dr_ro LOGIN PASSWORD 'dt-dr-ro'")
    dump = tmp_path / "wh_config.sql"
    try:
        with harness.scratch_database(day2, "wh_dr_from"):
            c = psycopg.connect(day2.warehouse.tcp_dsn("wh_dr_from", "whadmin", day2.admin_password), autocommit=True)
            with c:
                harness.register_tenants(day2, c)
                set_template(c)
                for t in harness.TENANTS:
                    c.execute("SELECT _wh.update_mv_window(%s, %s, %s, %s)", (T, t, FIRST, FIRST + dt.timedelta(days=2)))
                c.execute("SELECT _wh.grant_tenant_reader('dt_dr_ro', 'tenant_a')")
                original = day_figures(c, f"public.{T}")
            subprocess.run(["pg_dump", "--data-only", "--disable-triggers", "--schema=_wh", "-f", str(dump),
                            day2.warehouse.dsn("wh_dr_from")], check=True)
        # The fresh cluster has the role again, as a new role.
        with day2.wh_super() as s:
            s.execute("DROP ROLE dt_dr_ro")
            s.execute("CREATE ROLE dt_dr_ro LOGIN PASSWORD 'dt-dr-ro'")
        with harness.scratch_database(day2, "wh_dr_to"):
            subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(dump), day2.warehouse.dsn("wh_dr_to")],
                           check=True, capture_output=True)
            c = psycopg.connect(day2.warehouse.tcp_dsn("wh_dr_to", "whadmin", day2.admin_password), autocommit=True)
            with c:
                h = c.execute("SELECT _wh.health()").fetchone()[0]
                assert h["status"] == "degraded" and h["tables_missing"] == 1, h
                r = c.execute("SELECT _wh.finish_restore()").fetchone()[0]
                assert r["details"]["readers_granted"] == [{"role": "dt_dr_ro", "tenant": "tenant_a"}], r
                assert len(r["details"]["tenants_without_password"]) == 3, r
                t = c.execute("SELECT _wh.test_tenant_connection('tenant_a')").fetchone()[0]
                assert t["status"] == "failed" and "set_tenant_connection('tenant_a', password => '…')" in t["error"], t
                for name in harness.TENANTS:
                    c.execute("SELECT _wh.set_tenant_connection(%s, password => %s)", (name, day2.tenant_passwords[name]))
                c.execute("CALL _wh.rebuild_warehouse()")
                assert day_figures(c, f"public.{T}") == original
                h = c.execute("SELECT _wh.health()").fetchone()[0]
                assert h["status"] == "ok", h["problems"]
                assert c.execute("SELECT _wh.finish_restore() -> 'details' -> 'readers_granted'").fetchone()[0] == []
            reader = psycopg.connect(day2.warehouse.tcp_dsn("wh_dr_to", "dt_dr_ro", "dt-dr-ro"))
            try:
                got = reader.execute(f"SELECT count(*) FROM tenant_a.{T}").fetchone()[0]
                assert got == sum(n for (t, _, n, _) in original if t == "tenant_a")
            finally:
                reader.close()
    finally:
        with day2.wh_super() as s:
            s.execute("DROP ROLE IF EXISTS dt_dr_ro")


def test_jobs_a_fresh_cluster_lacks_are_scheduled_again(day2):
    """pg_cron jobs do not travel in a dump: wh records each (name, schedule, command,
    active), health() says when pg_cron lacks one, and finish_restore() schedules it again
    as the calling login, stopped if it was stopped."""
    with day2.wh_admin() as c:
        c.execute("SELECT _wh.schedule_tenant(%s, 'tenant_c', '7 3 * * *', stagger => false)", (T,))
        c.execute("SELECT _wh.schedule_yearly_fold(%s)", (T,))
        before = c.execute("SELECT jobname, schedule, command, active FROM _wh.jobs WHERE jobname LIKE %s ORDER BY 1",
                           (f"wh:{T}:%",)).fetchall()
        assert len(before) == 2
    with day2.wh_super() as s:  # a restore elsewhere: the rows say another warehouse, its pg_cron has none of them
        s.execute("DELETE FROM cron.job WHERE jobname LIKE %s", (f"wh:{T}:%",))
        # Their old ids are the ids this pg_cron gives next, in the other order: a new job
        # taking a restored row's id must not be taken for it.
        nxt = s.execute("SELECT last_value FROM cron.jobid_seq").fetchone()[0]
        s.execute("UPDATE _wh.cron_jobs SET made_in = 'another-cluster:16384', jobid = CASE WHEN jobname LIKE '%%:fold' "
                  "THEN %s ELSE %s END WHERE jobname LIKE %s", (nxt + 2, nxt + 1, f"wh:{T}:%"))
    with day2.wh_admin() as c:
        h = c.execute("SELECT _wh.health()").fetchone()[0]
        assert h["jobs_missing"] == 2 and any("finish_restore" in p for p in h["problems"]), h
        r = c.execute("SELECT _wh.finish_restore()").fetchone()[0]
        assert sorted(j["job"] for j in r["details"]["jobs_scheduled"]) == [f"wh:{T}:fold", f"wh:{T}:tenant_c"], r
        after = c.execute("SELECT jobname, schedule, command, active FROM _wh.jobs WHERE jobname LIKE %s ORDER BY 1",
                          (f"wh:{T}:%",)).fetchall()
        assert after == before
        assert c.execute("SELECT _wh.health() -> 'jobs_missing'").fetchone()[0] == 0
        c.execute("SELECT _wh.unschedule_tenant(%s, 'tenant_c')", (T,))
        c.execute("SELECT cron.unschedule(%s)", (f"wh:{T}:fold",))


# ------------------------------------------------------------------ item 10: who sees what

def test_readers_see_data_as_of_but_no_connection_details(day2):
    """A BI login reads "data as of" for what it may read (every tenant for wh_reader, its
    own tenants for a scoped reader, nothing for anyone else), and no login but wh_admin
    reads a tenant's source host, port or database."""
    with day2.wh_super() as s:
        for role in ("dt_vis_ro", "dt_nobody"):
            s.execute(f"DROP ROLE IF EXISTS {role}")
            s.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{role}-pw'")
    try:
        with day2.wh_admin() as c:
            c.execute("SELECT _wh.grant_tenant_reader('dt_vis_ro', 'tenant_c')")
            assert c.execute("SELECT count(*) FROM pg_foreign_server WHERE srvname = 'wh_tenant_a' "
                             "AND array_to_string(srvoptions, ',') LIKE '%%host=%%'").fetchone()[0] == 1
        with day2.wh_reader() as r:
            rows = r.execute("SELECT tenant_name, newest_day, stale FROM _wh_scope.freshness WHERE template_name = %s", (T,)).fetchall()
            assert {t for (t, _, _) in rows} == set(harness.TENANTS), rows
            assert all(d == FIRST + dt.timedelta(days=DAYS - 1) for (_, d, _) in rows), rows
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                r.execute("SELECT srvoptions FROM pg_foreign_server")
        for role, want in (("dt_vis_ro", {"tenant_c"}), ("dt_nobody", set())):
            with psycopg.connect(day2.warehouse.tcp_dsn(day2.warehouse_db, role, f"{role}-pw"), autocommit=True) as r:
                got = {t for (t,) in r.execute("SELECT tenant_name FROM _wh_scope.freshness")}
                assert got == want, (role, got)
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    r.execute("SELECT srvoptions FROM pg_foreign_server")
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    r.execute("SELECT * FROM _wh.freshness")
    finally:
        with day2.wh_admin() as c:
            c.execute("SELECT _wh.revoke_tenant_reader('dt_vis_ro', 'tenant_c')")
        with day2.wh_super() as s:
            for role in ("dt_vis_ro", "dt_nobody"):
                s.execute(f"DROP ROLE IF EXISTS {role}")



# ------------------------------------------------------------------ review: the ways round them

def test_monitoring_never_reads_a_template_table_in_a_superusers_session(day2):
    """health() and freshness probe the template tables (data_present); in a session wh
    refuses to work in (a superuser's), they never do, so code an operator attached to a
    table (a policy calling its function) never runs with a superuser's rights."""
    with day2.wh_admin() as c:
        c.execute("CREATE FUNCTION public.dt_trap() RETURNS boolean LANGUAGE plpgsql AS $$BEGIN "
                  "IF (SELECT rolsuper FROM pg_roles WHERE rolname = session_user) THEN "
                  "RAISE EXCEPTION 'trap ran in a superuser session'; END IF; RETURN true; END$$")
        c.execute(f"CREATE POLICY dt_open ON _wh_data.{T} FOR ALL TO wh_admin USING (true) WITH CHECK (true)")
        c.execute(f"CREATE POLICY dt_trap ON _wh_data.{T} AS RESTRICTIVE FOR SELECT TO wh_admin USING (public.dt_trap())")
        c.execute(f"ALTER TABLE _wh_data.{T} FORCE ROW LEVEL SECURITY")
    try:
        with day2.wh_super() as s:
            s.execute("SET search_path = pg_catalog, pg_temp")
            h = s.execute("SELECT _wh.health()").fetchone()[0]
            assert h["data_missing"] == 0, h
            assert s.execute("SELECT count(*) FROM _wh.freshness WHERE data_present IS NOT NULL").fetchone()[0] == 0
        with day2.wh_admin() as c:  # an operator's own session: the probe runs (and the operator's code with it)
            assert c.execute("SELECT bool_and(data_present) FROM _wh.freshness WHERE template_name = %s", (T,)).fetchone()[0]
    finally:
        with day2.wh_admin() as c:
            c.execute(f"ALTER TABLE _wh_data.{T} NO FORCE ROW LEVEL SECURITY")
            c.execute(f"DROP POLICY dt_trap ON _wh_data.{T}")
            c.execute(f"DROP POLICY dt_open ON _wh_data.{T}")
            c.execute("DROP FUNCTION public.dt_trap()")


def test_restores_never_pass_a_grant_by_name_within_one_warehouse(day2):
    """A reader dropped here and a new role given its name: finish_restore() grants it
    nothing (only grants made in another warehouse pass by name). drop_template never
    drops a table that is not a template's."""
    with day2.wh_super() as s:
        s.execute("DROP ROLE IF EXISTS dt_same_ro")
        s.execute("CREATE ROLE dt_same_ro LOGIN PASSWORD 'dt-same-ro'")
    with day2.wh_admin() as c:
        c.execute("SELECT _wh.grant_tenant_reader('dt_same_ro', 'tenant_c')")
    with day2.wh_super() as s:
        s.execute("DROP OWNED BY dt_same_ro")
        s.execute("DROP ROLE dt_same_ro")
        s.execute("CREATE ROLE dt_same_ro LOGIN PASSWORD 'dt-same-ro'")
        s.execute("CREATE TABLE public.dt_theirs (id bigint)")
        s.execute("ALTER TABLE public.dt_theirs OWNER TO wh_admin")
    try:
        with day2.wh_admin() as c:
            r = c.execute("SELECT _wh.finish_restore()").fetchone()[0]
            assert r["details"]["readers_granted"] == [], r
            with pytest.raises(psycopg.errors.UndefinedObject):
                c.execute("SELECT _wh.drop_template('dt_theirs')")
        with psycopg.connect(day2.warehouse.tcp_dsn(day2.warehouse_db, "dt_same_ro", "dt-same-ro"), autocommit=True) as r:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                r.execute(f"SELECT count(*) FROM public.{T}")
        with day2.wh_super() as s:
            assert s.execute("SELECT to_regclass('public.dt_theirs') IS NOT NULL").fetchone()[0]
    finally:
        with day2.wh_admin() as c:
            c.execute("SELECT _wh.revoke_tenant_reader('dt_same_ro', 'tenant_c')")
        with day2.wh_super() as s:
            s.execute("DROP TABLE IF EXISTS public.dt_theirs")
            s.execute("DROP OWNED BY dt_same_ro")
            s.execute("DROP ROLE dt_same_ro")
