"""Finished years in columnar storage (citus_columnar, no Citus cluster needed): the policy
and its refusals, a fold to columnar, a late change to a columnar year (rewritten as heap
in the same transaction, compressed again by the nightly maintenance), verify/repair,
retention and renaming over it, and a rebuild from a configuration dump that folds every
recorded year again as it was (columnar or heap).

Its own templates (`coldyear` folded to columnar, `warmyear` to heap) over sources seeded
with the last two months of a fixed past year."""

import datetime as dt
import subprocess
import threading
import time

import psycopg
import pytest

import harness
from test_storage import LockWatch, readers_loop

YEAR = 2023
FIRST = dt.date(YEAR, 11, 1)
LAST = dt.date(YEAR, 12, 31)
DAYS = (LAST - FIRST).days + 1
ROWS = 30
COLD = "coldyear"
WARM = "warmyear"
TENANTS = ("tenant_a", "tenant_b")


figures_by_day = harness.figures_by_day


def source_by_day(env, tenant):
    with env.source_super(tenant) as s:
        return figures_by_day(s, "phood_foodlogsum", f"WHERE logged_time >= '{FIRST}' AND logged_time < '{LAST + dt.timedelta(days=1)}'")


def year_storage(conn, template):
    """The access method of the template's folded year (None: not folded)."""
    row = conn.execute(
        "SELECT storage FROM _wh.partitions WHERE template_name = %s AND partition_name = %s",
        (template, f"{template}_{YEAR}"),
    ).fetchone()
    return row and row[0]


def registry_rows(conn, template, tenant):
    return conn.execute(
        "SELECT coalesce(sum(row_count), 0) FROM _wh.slices WHERE template_name = %s AND tenant_name = %s AND kind = 'day'",
        (template, tenant),
    ).fetchone()[0]


def assert_equal_to_sources(env, conn, template):
    """Every registered day of each tenant equals its source, and the registry counts the rows stored."""
    for t in TENANTS:
        days = {d for (d,) in conn.execute(
            "SELECT range_start FROM _wh.slices WHERE template_name = %s AND tenant_name = %s AND kind = 'day'", (template, t))}
        source = source_by_day(env, t)
        assert figures_by_day(conn, f"{t}.{template}") == {d: source[d] for d in sorted(days)}, (template, t)
        assert registry_rows(conn, template, t) == conn.execute(f"SELECT count(*) FROM {t}.{template}").fetchone()[0]


@pytest.fixture(scope="module")
def col(env):
    harness.seed(env, FIRST.isoformat(), DAYS, ROWS)
    with env.wh_admin() as c:
        harness.register_tenants(env, c)
        for t in (COLD, WARM):
            harness.register_template(c, t)
            for tenant in TENANTS:
                c.execute("CALL _wh.backfill(%s, %s, %s, %s)", (t, tenant, FIRST, LAST))
    yield env
    # The templates go with their tables, then citus_columnar: later modules see the
    # warehouse as they always did.
    with env.wh_admin() as c:
        for t in (COLD, WARM):
            c.execute("SELECT _wh.drop_template(%s)", (t,))
    with env.wh_super() as s:
        s.execute("DROP EXTENSION IF EXISTS citus_columnar")


def test_the_storage_policy_refuses_what_cannot_work(col):
    with col.wh_admin() as c:
        with pytest.raises(psycopg.Error, match="'heap' or 'columnar'") as e:
            c.execute("SELECT _wh.set_template_policy(%s, fold_storage => 'parquet')", (COLD,))
        assert e.value.sqlstate == "22023"
        with pytest.raises(psycopg.Error, match="fold the year first") as e:
            c.execute("SELECT _wh.set_year_storage(%s, %s, 'heap')", (COLD, YEAR))
        assert e.value.sqlstate == "22023"
        with pytest.raises(psycopg.Error, match="CREATE EXTENSION citus_columnar") as e:
            c.execute("SELECT _wh.set_template_policy(%s, fold_storage => 'columnar')", (COLD,))
        assert e.value.sqlstate == "55000"
    with col.wh_super() as s:
        s.execute("CREATE EXTENSION IF NOT EXISTS citus_columnar")
    with col.wh_admin() as c:
        # An index columnar cannot hold (a DBA's own BRIN index) is named.
        c.execute(f"CREATE INDEX coldyear_brin ON _wh_data.{COLD} USING brin (logged_time)")
        with pytest.raises(psycopg.Error, match=r"coldyear_brin \(brin\)") as e:
            c.execute("SELECT _wh.set_template_policy(%s, fold_storage => 'columnar')", (COLD,))
        assert e.value.sqlstate == "55000"
        c.execute("DROP INDEX _wh_data.coldyear_brin")
        with pytest.raises(psycopg.Error, match="both given and cleared") as e:
            c.execute("SELECT _wh.set_template_policy(%s, fold_storage => 'columnar', clear => ARRAY['fold_storage'])", (COLD,))
        assert e.value.sqlstate == "22023"
        # Nothing above changed the policy.
        assert c.execute("SELECT fold_storage FROM _wh.mv_templates WHERE template_name = %s", (COLD,)).fetchone()[0] == "heap"
        r = c.execute("SELECT _wh.set_template_policy(%s, fold_storage => 'columnar')", (COLD,)).fetchone()[0]
        assert r["details"]["fold_storage"] == "columnar"
        r = c.execute("SELECT _wh.set_template_policy(%s, clear => ARRAY['fold_storage'])", (COLD,)).fetchone()[0]
        assert r["details"]["fold_storage"] == "heap"
        c.execute("SELECT _wh.set_template_policy(%s, fold_storage => 'columnar')", (COLD,))


def test_a_year_folds_to_columnar_and_reads_as_before(col):
    with col.wh_admin() as c:
        before = {t: figures_by_day(c, f"{t}.{COLD}") for t in TENANTS}
        heap_bytes = c.execute(
            "SELECT sum(bytes) FROM _wh.partitions WHERE template_name = %s AND partition_name LIKE %s", (COLD, f"{COLD}_{YEAR}_%")
        ).fetchone()[0]
        r = c.execute("SELECT _wh.create_combined_table_by_year(%s, NULL, %s)", (COLD, YEAR)).fetchone()[0]
        assert r["status"] == "succeeded" and r["details"]["storage"] == "columnar", r
        r = c.execute("SELECT _wh.create_combined_table_by_year(%s, NULL, %s)", (WARM, YEAR)).fetchone()[0]
        assert r["status"] == "succeeded" and r["details"]["storage"] == "heap", r
        assert (year_storage(c, COLD), year_storage(c, WARM)) == ("columnar", "heap")
        # Built aside, each year's bounds were named for it at creation (no rename at the swap).
        for t in (COLD, WARM):
            assert c.execute("SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'c'",
                             (f"_wh_data.{t}_{YEAR}",)).fetchall() == [(f"{t}_{YEAR}_bounds",)]
        assert c.execute("SELECT template_name, year, storage FROM _wh.folded_years ORDER BY 1").fetchall() == [
            (COLD, YEAR, "columnar"), (WARM, YEAR, "heap")]
        cold_bytes = c.execute("SELECT bytes FROM _wh.partitions WHERE partition_name = %s", (f"{COLD}_{YEAR}",)).fetchone()[0]
        print(f"\ncolumnar year {cold_bytes} bytes against {heap_bytes} in heap months")
        assert {t: figures_by_day(c, f"{t}.{COLD}") for t in TENANTS} == before
    with col.wh_reader() as r:
        assert figures_by_day(r, f"public.{COLD}", "WHERE schema_name = 'tenant_a'") == before["tenant_a"]


def test_a_late_change_rewrites_the_columnar_year_and_maintenance_compresses_it(col):
    day = dt.date(YEAR, 12, 10)
    with col.source_super("tenant_a") as s:
        s.execute("INSERT INTO phood_foodlogsum (id, station_id, weight, logged_time) VALUES (8100000000001, 2, 7.5, %s::date + interval '9 hours')", (day,))
        s.execute("UPDATE phood_foodlogsum SET weight = weight + 1 WHERE logged_time >= %s::date AND logged_time < %s::date + 1", (day, day))
    with col.wh_admin() as c:
        others = figures_by_day(c, f"tenant_b.{COLD}")
        r = c.execute("SELECT _wh.update_mv_by_template(%s, 'tenant_a', %s, allow_refresh_yesterday => false)", (COLD, day)).fetchone()[0]
        assert r["status"] == "succeeded" and r["results"][0]["details"]["action"] == "refreshed", r
        assert year_storage(c, COLD) == "heap"
        assert c.execute("SELECT status FROM _wh.run_log WHERE operation = 'rewrite_columnar_year' AND template_name = %s "
                         "ORDER BY run_id DESC LIMIT 1", (COLD,)).fetchone()[0] == "succeeded"
        assert_equal_to_sources(col, c, COLD)
        assert figures_by_day(c, f"tenant_b.{COLD}") == others
        # The record keeps what the year should be; the nightly job compresses it again.
        assert c.execute("SELECT storage FROM _wh.folded_years WHERE template_name = %s", (COLD,)).fetchone()[0] == "columnar"
        m = c.execute("SELECT _wh.run_maintenance()").fetchone()[0]
        compressed = [x for x in m["details"]["years_compressed"] if x["template"] == COLD]
        assert [x["status"] for x in compressed] == ["succeeded"], m
        assert year_storage(c, COLD) == "columnar"
        assert_equal_to_sources(col, c, COLD)
        # A second night finds nothing to do.
        m = c.execute("SELECT _wh.run_maintenance()").fetchone()[0]
        assert m["details"]["years_compressed"] == []


def test_a_new_day_in_a_columnar_year_is_appended_without_a_rewrite(col):
    with col.wh_admin() as c:
        rewrites = c.execute("SELECT count(*) FROM _wh.run_log WHERE operation = 'rewrite_columnar_year'").fetchone()[0]
        # tenant_c has no rows in the year: its day is only inserted (columnar appends).
        r = c.execute("SELECT _wh.update_mv_window(%s, 'tenant_c', %s, %s)", (COLD, LAST, LAST)).fetchone()[0]
        assert r["status"] == "succeeded", r
        assert year_storage(c, COLD) == "columnar"
        assert c.execute("SELECT count(*) FROM _wh.run_log WHERE operation = 'rewrite_columnar_year'").fetchone()[0] == rewrites
        assert figures_by_day(c, f"tenant_c.{COLD}") == {LAST: source_by_day(col, "tenant_c")[LAST]}


def change_day(env, tenant, day, delta=1):
    with env.source_super(tenant) as s:
        s.execute("UPDATE phood_foodlogsum SET weight = weight + %s WHERE logged_time >= %s::date AND logged_time < %s::date + 1",
                  (delta, day, day))


def test_readers_wait_on_a_rewrite_only_for_its_swap(col):
    day = dt.date(YEAR, 12, 5)
    change_day(col, "tenant_b", day)
    stop = threading.Event()
    errors, counts = [], []
    q = f"SELECT count(*) FROM public.{COLD} WHERE logged_time < '{YEAR + 1}-01-01'"
    threads = [threading.Thread(target=readers_loop, args=(col, stop, errors, counts, q)) for _ in range(3)]
    with LockWatch(col, ["phood_ro"]) as watch:
        for th in threads:
            th.start()
        time.sleep(0.3)
        try:
            with col.wh_admin() as c:
                r = c.execute("SELECT _wh.refresh_mv(%s, 'tenant_b', %s)", (COLD, day)).fetchone()[0]
            time.sleep(0.3)
        finally:
            stop.set()
            for th in threads:
                th.join()
    assert r["status"] == "succeeded", r
    assert errors == [] and len(set(counts)) == 1, (errors, set(counts))
    with col.wh_admin() as c:
        started, ms, phases = c.execute(
            "SELECT started_at, duration_ms, details->'phase_ms' FROM _wh.run_log WHERE operation = 'rewrite_columnar_year' "
            "AND template_name = %s ORDER BY run_id DESC LIMIT 1", (COLD,)).fetchone()
        # Readers wait only in the swap: never while the year is copied, checked, indexed.
        before_swap = sum(phases[p] for p in ("lock", "copy", "verify", "indexes", "analyze"))
        early = [w for w in watch.seen if w[4] < started + dt.timedelta(milliseconds=before_swap)]
        assert early == [], (early, phases, started)
        assert_equal_to_sources(col, c, COLD)
        c.execute("SELECT _wh.run_maintenance()")
        assert year_storage(c, COLD) == "columnar"


def test_a_rewrite_waits_for_a_writer_of_the_year_and_loses_nothing(col):
    """tenant_c appends a day to the columnar year in a transaction left open; tenant_a's late
    change needs the year rewritten: it waits (bounded) and is refused as busy, then runs
    once the append committed, and both are in the year."""
    appended, changed = dt.date(YEAR, 12, 30), dt.date(YEAR, 12, 12)
    change_day(col, "tenant_a", changed)
    writer = col.wh_admin(autocommit=False)
    try:
        r = writer.execute("SELECT _wh.update_mv_window(%s, 'tenant_c', %s, %s)", (COLD, appended, appended)).fetchone()[0]
        assert r["status"] == "succeeded" and year_storage(writer, COLD) == "columnar", r
        with col.wh_admin() as c:
            r = c.execute("SELECT _wh.refresh_mv(%s, 'tenant_a', %s)", (COLD, changed)).fetchone()[0]
            assert r["status"] == "failed" and r["sqlstate"] == "55P03", r
            assert "must be rewritten as heap" in r["error"], r
        writer.commit()
    finally:
        writer.close()
    with col.wh_admin() as c:
        r = c.execute("SELECT _wh.refresh_mv(%s, 'tenant_a', %s)", (COLD, changed)).fetchone()[0]
        assert r["status"] == "succeeded", r
        assert year_storage(c, COLD) == "heap"
        assert_equal_to_sources(col, c, COLD)
        got = figures_by_day(c, f"tenant_c.{COLD}")
        assert sorted(got) == [appended, LAST] and got[appended] == source_by_day(col, "tenant_c")[appended]
        c.execute("SELECT _wh.run_maintenance()")
        assert year_storage(c, COLD) == "columnar"


def test_verify_and_repair_a_columnar_year(col):
    day = dt.date(YEAR, 11, 20)
    with col.source_super("tenant_b") as s:
        s.execute("DELETE FROM phood_foodlogsum WHERE id = (SELECT max(id) FROM phood_foodlogsum "
                  "WHERE logged_time >= %s AND logged_time < %s::date + 1)", (day, day))
    with col.wh_admin() as c:
        r = c.execute("SELECT _wh.verify(%s, 'tenant_b', %s, %s)", (COLD, FIRST, LAST)).fetchone()[0]
        assert [x["day"] for x in r["details"]["drifted"]] == [day.isoformat()], r
        r = c.execute("SELECT _wh.verify(%s, 'tenant_b', %s, %s, repair => true)", (COLD, FIRST, LAST)).fetchone()[0]
        assert r["details"]["repaired"] == [day.isoformat()], r
        assert_equal_to_sources(col, c, COLD)
        r = c.execute("SELECT _wh.verify(%s, 'tenant_b', %s, %s)", (COLD, FIRST, LAST)).fetchone()[0]
        assert r["details"]["drifted"] == [], r
        c.execute("SELECT _wh.run_maintenance()")
        assert year_storage(c, COLD) == "columnar"


def test_rename_and_retention_over_a_columnar_year(col):
    with col.wh_admin() as c:
        before = figures_by_day(c, f"tenant_c.{COLD}")
        r = c.execute("SELECT _wh.rename_tenant('tenant_c', 'tenant_cc')").fetchone()[0]
        assert r["status"] == "succeeded", r
        assert figures_by_day(c, f"tenant_cc.{COLD}") == before
        r = c.execute("SELECT _wh.rename_tenant('tenant_cc', 'tenant_c')").fetchone()[0]
        assert r["status"] == "succeeded", r
        assert figures_by_day(c, f"tenant_c.{COLD}") == before
        c.execute("SELECT _wh.run_maintenance()")
        assert year_storage(c, COLD) == "columnar"
        # A tenant with no rows before the cut: nothing to delete, the year is left as it is
        # (columnar refuses a DELETE even of no row: wh does not send one).
        cut = dt.date(YEAR, 12, 1)
        rewrites = c.execute("SELECT count(*) FROM _wh.run_log WHERE operation = 'rewrite_columnar_year'").fetchone()[0]
        r = c.execute("SELECT _wh.apply_retention(%s, 'tenant_c', %s)", (COLD, cut)).fetchone()[0]
        assert r["status"] == "succeeded" and r["details"]["rows_deleted"] == 0, r
        assert year_storage(c, COLD) == "columnar"
        assert c.execute("SELECT count(*) FROM _wh.run_log WHERE operation = 'rewrite_columnar_year'").fetchone()[0] == rewrites
        # One tenant's days before December go; the year stays whole for the others.
        r = c.execute("SELECT _wh.apply_retention(%s, 'tenant_a', %s)", (COLD, cut)).fetchone()[0]
        assert r["status"] == "succeeded" and r["details"]["rows_deleted"] > 0, r
        assert min(figures_by_day(c, f"tenant_a.{COLD}")) == cut
        assert registry_rows(c, COLD, "tenant_a") == c.execute(f"SELECT count(*) FROM tenant_a.{COLD}").fetchone()[0]
        assert min(figures_by_day(c, f"tenant_b.{COLD}")) == FIRST
        c.execute("SELECT _wh.run_maintenance()")
        assert year_storage(c, COLD) == "columnar"


def test_a_folded_year_changes_storage_on_demand(col):
    with col.wh_admin() as c:
        before = {t: figures_by_day(c, f"{t}.{WARM}") for t in TENANTS}
        r = c.execute("SELECT _wh.set_year_storage(%s, %s, 'columnar')", (WARM, YEAR)).fetchone()[0]
        assert r["status"] == "succeeded" and r["details"]["storage"] == "columnar", r
        assert year_storage(c, WARM) == "columnar"
        r = c.execute("SELECT _wh.set_year_storage(%s, %s, 'columnar')", (WARM, YEAR)).fetchone()[0]
        assert r["status"] == "skipped" and r["details"]["reason"] == "already columnar", r
        r = c.execute("SELECT _wh.set_year_storage(%s, %s, 'heap')", (WARM, YEAR)).fetchone()[0]
        assert r["status"] == "succeeded" and year_storage(c, WARM) == "heap", r
        # Recorded: the nightly job leaves a year made heap on purpose alone.
        assert c.execute("SELECT storage FROM _wh.folded_years WHERE template_name = %s", (WARM,)).fetchone()[0] == "heap"
        c.execute("SELECT _wh.run_maintenance()")
        assert year_storage(c, WARM) == "heap"
        assert {t: figures_by_day(c, f"{t}.{WARM}") for t in TENANTS} == before
        for args, state in (((WARM, YEAR, "parquet"), "22023"), ((WARM, YEAR, None), "22004"), ((WARM, YEAR - 5, "heap"), "22023")):
            with pytest.raises(psycopg.Error) as e:
                c.execute("SELECT _wh.set_year_storage(%s, %s, %s)", args)
            assert e.value.sqlstate == state, (args, e.value)


def test_a_rebuild_from_a_dump_folds_every_recorded_year_as_it_was(col, tmp_path):
    with col.wh_admin() as c:
        # The heap year takes the late changes of the tests above in place (no rewrite).
        for t, changed in (("tenant_a", [(12, 10), (12, 12)]), ("tenant_b", [(11, 20), (12, 5)])):
            r = c.execute("SELECT _wh.verify(%s, %s, %s, %s, repair => true)", (WARM, t, FIRST, LAST)).fetchone()[0]
            assert r["details"]["repaired"] == [dt.date(YEAR, m, d).isoformat() for m, d in changed], r
        assert year_storage(c, WARM) == "heap"
        original = {(tp, t): figures_by_day(c, f"{t}.{tp}") for tp in (COLD, WARM) for t in TENANTS}
    dump = tmp_path / "wh_config.sql"
    subprocess.run(["pg_dump", "--data-only", "--disable-triggers", "--schema=_wh", "-f", str(dump),
                    col.warehouse.dsn(col.warehouse_db)], check=True)
    with harness.scratch_database(col, "warehouse_col"):
        with col.warehouse.connect("warehouse_col") as s:
            s.execute("CREATE EXTENSION citus_columnar")
        subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(dump), col.warehouse.dsn("warehouse_col")],
                       check=True, capture_output=True)
        with psycopg.connect(col.warehouse.tcp_dsn("warehouse_col", "whadmin", col.admin_password), autocommit=True) as dr:
            for t in harness.TENANTS:
                row = dr.execute("SELECT host, port, dbname, username, sslmode FROM _wh.tenant_connections WHERE tenant_name = %s",
                                 (t,)).fetchone()
                dr.execute("SELECT _wh.set_tenant_connection(%s, %s, %s, %s, %s, %s, %s)",
                           (t, row[0], row[1], row[2], row[3], col.tenant_passwords[t], row[4]))
            for tp in (COLD, WARM):
                r = dr.execute("SELECT _wh.rebuild_entire_warehouse(template_name => %s)", (tp,)).fetchone()[0]
                assert r["status"] == "succeeded" and r["failed"] == 0, {k: v for k, v in r.items() if k != "results"}
                assert [y["status"] for y in r["relations"]["years_folded"]] == ["succeeded"], r["relations"]
                assert [n for _, n in harness.partitions(dr, tp) if n.startswith(f"{tp}_{YEAR}")] == [f"{tp}_{YEAR}"]
            assert (year_storage(dr, COLD), year_storage(dr, WARM)) == ("columnar", "heap")
            for (tp, t), want in original.items():
                assert figures_by_day(dr, f"{t}.{tp}") == want, (tp, t)
