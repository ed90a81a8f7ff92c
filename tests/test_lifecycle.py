"""After the days are built: folding a finished year, late data, disaster recovery,
rebuilding a dropped tenant, retention, storage tiering and removing a tenant.

This module uses its own template, `life`, a copy of foodlogstats, over sources seeded
with all of last year and the first days of this year."""

import datetime as dt
import os
import subprocess
import threading
import time

import psycopg
import pytest

import harness

# Fixed past years, whatever the date: a whole year to fold (LAST_YEAR) and the first
# days of the next one (NEXT_YEAR, a leap year). What depends on the warehouse's today
# (which years are unfinished, what retention keeps) asks the server when it is used.
LAST_YEAR = 2023
NEXT_YEAR = LAST_YEAR + 1
FIRST = dt.date(LAST_YEAR, 1, 1)
THIS_YEAR_DAYS = 5
SEED_DAYS = (dt.date(NEXT_YEAR, 1, 1) - FIRST).days + THIS_YEAR_DAYS
ROWS = 40
T = "life"


figures_by_day = harness.figures_by_day


def source_by_day(env, tenant):
    with env.source_super(tenant) as s:
        return figures_by_day(
            s, "phood_foodlogsum",
            f"WHERE logged_time >= '{FIRST}' AND logged_time < '{dt.date(NEXT_YEAR, 1, 1) + dt.timedelta(days=THIS_YEAR_DAYS)}'"
        )


@pytest.fixture(scope="module")
def life(env):
    harness.seed(env, FIRST.isoformat(), SEED_DAYS, ROWS)
    with env.wh_admin() as c:
        harness.register_tenants(env, c)
        harness.register_template(c, T)
        for t in ("tenant_a", "tenant_b"):
            c.execute(
                "CALL _wh.backfill(%s, %s, %s, %s)",
                (T, t, FIRST, dt.date(NEXT_YEAR, 1, 1) + dt.timedelta(days=THIS_YEAR_DAYS - 1)),
            )
    return env


def test_fold_refuses_unfinished_empty_and_bad_years(life):
    with life.wh_admin() as c:
        # This year and the next, taken from the server's clock in the call itself.
        for offset, words in ((0, "not finished"), (1, "not finished")):
            with pytest.raises(psycopg.Error, match=words) as e:
                c.execute("SELECT _wh.create_combined_table_by_year(%s, 'tenant_a', "
                          "extract(year FROM _wh.current_date_utc())::int + %s)", (T, offset))
            assert e.value.sqlstate == "22023"
        with pytest.raises(psycopg.Error, match="no day slices") as e:
            c.execute("SELECT _wh.create_combined_table_by_year(%s, 'tenant_a', %s)", (T, LAST_YEAR - 3))
        assert e.value.sqlstate == "22023"
        with pytest.raises(psycopg.Error) as e:
            c.execute("SELECT _wh.create_combined_table_by_year(%s, 'tenant_a', NULL)", (T,))
        assert e.value.sqlstate == "22004"


def test_fold_killed_part_way_leaves_the_months_intact(life):
    """The fold is killed while it waits to swap; the next test folds the year for good."""
    parent = f"tenant_b.{T}"
    with life.wh_reader() as r:
        before = figures_by_day(r, parent)
    # A reader holding its snapshot open keeps the fold waiting at the swap, after the copy.
    blocker = life.wh_reader(autocommit=False)
    blocker.execute(f"SELECT count(*) FROM {parent}").fetchone()
    folder = life.wh_admin()
    pid = folder.info.backend_pid
    outcome = {}

    def fold():
        try:
            outcome["r"] = folder.execute("SELECT _wh.create_combined_table_by_year(%s, 'tenant_b', %s)", (T, LAST_YEAR)).fetchone()
        except psycopg.Error as e:
            outcome["e"] = e

    th = threading.Thread(target=fold)
    th.start()
    with life.wh_super() as s:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            waiting = s.execute(
                "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s", (pid,)
            ).fetchone()
            if waiting and waiting[0]:
                break
            time.sleep(0.05)
        assert waiting and waiting[0], "the fold never reached the swap"
        assert s.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]
    th.join()
    blocker.rollback()
    blocker.close()
    assert "e" in outcome
    with life.wh_admin() as c:
        assert c.execute("SELECT to_regclass(%s)", (f"_wh_data.{T}_{LAST_YEAR}_new",)).fetchone()[0] is None
        assert f"{T}_{LAST_YEAR}_06" in [n for _, n in harness.partitions(c, T)]
        assert figures_by_day(c, parent) == before
        days = c.execute(
            "SELECT count(*) FROM _wh.slices WHERE template_name = %s AND tenant_name = 'tenant_b' AND kind = 'day'", (T,)
        ).fetchone()[0]
        assert days == len(before)


def test_fold_a_full_year_with_readers_looping(life):
    parent = f"tenant_a.{T}"
    with life.wh_reader() as r:
        before = figures_by_day(r, parent)
        expected = {
            parent: r.execute(f"SELECT count(*), sum(weight) FROM {parent}").fetchone(),
            f"public.{T}": r.execute(f"SELECT count(*), sum(weight) FROM public.{T}").fetchone(),
        }
    assert len([d for d in before if d.year == LAST_YEAR]) in (365, 366)
    errors, seen = [], []
    stop = threading.Event()

    def reader(relation):
        with life.wh_reader() as r:
            while not stop.is_set():
                try:
                    seen.append((relation, r.execute(f"SELECT count(*), sum(weight) FROM {relation}").fetchone()))
                except psycopg.Error as e:
                    errors.append(repr(e))

    threads = [threading.Thread(target=reader, args=(rel,)) for rel in (parent, parent, f"public.{T}")]
    for t in threads:
        t.start()
    time.sleep(0.3)
    try:
        with life.wh_admin() as c:
            jit_before = c.execute("SHOW jit").fetchone()[0]
            with c.transaction():
                res = c.execute("SELECT _wh.create_combined_table_by_year(%s, 'tenant_a', %s)", (T, LAST_YEAR)).fetchone()[0]
                # The fold runs its own scans without JIT and gives the caller's transaction its setting back.
                assert c.execute("SHOW jit").fetchone()[0] == jit_before
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert res["status"] == "succeeded", res
    v = res["details"]["validation"]
    # The figures it reports are the ones a reader counts in the year partition afterwards.
    with life.wh_admin() as c:
        in_year = c.execute(f"SELECT count(*) FROM _wh_data.{T}_{LAST_YEAR} WHERE schema_name = 'tenant_a'").fetchone()[0]
        tenant_days = c.execute(
            "SELECT count(*) FROM _wh.slices WHERE template_name = %s AND tenant_name = 'tenant_a' AND kind = 'day' "
            "AND range_start BETWEEN %s AND %s",
            (T, dt.date(LAST_YEAR, 1, 1), dt.date(LAST_YEAR, 12, 31)),
        ).fetchone()[0]
    assert v["rows_in_days"] == v["rows_in_year"] == in_year and v["checksum_days"] == v["checksum_year"]
    assert v["tenant_days"] == tenant_days == 365
    assert res["details"]["months_folded"] == 12
    # Readers saw every row before, during and after the fold, and never an error.
    assert errors == []
    assert len(seen) > 6
    assert all(value == expected[rel] for rel, value in seen)
    with life.wh_reader() as r:
        assert figures_by_day(r, parent) == before
    with life.wh_admin() as c:
        # One partition for last year (every tenant's rows), months for this year.
        names = [n for _, n in harness.partitions(c, T)]
        assert f"{T}_{LAST_YEAR}" in names
        assert not any(n.startswith(f"{T}_{LAST_YEAR}_") for n in names), names
        assert all(n.startswith(f"{T}_{NEXT_YEAR}") or n == f"{T}_{LAST_YEAR}" or n > f"{T}_{NEXT_YEAR}" for n in names), names
        # The registry keeps its tenant-days: a fold moves rows, it does not change them.
        reg = c.execute(
            "SELECT count(*), sum(row_count) FROM _wh.slices WHERE template_name = %s AND tenant_name = 'tenant_a'", (T,)
        ).fetchone()
        assert reg == (len(before), sum(n for n, _, _ in before.values()))
        again = c.execute("SELECT _wh.create_combined_table_by_year(%s, 'tenant_a', %s)", (T, LAST_YEAR)).fetchone()[0]
        assert again["status"] == "skipped" and again["details"]["reason"] == "already folded"


def test_late_data_in_a_folded_year(life):
    day = dt.date(LAST_YEAR, 6, 15)
    with life.source_super("tenant_a") as s:
        s.execute(
            "INSERT INTO phood_foodlogsum (id, station_id, weight, logged_time) VALUES (8000000001, 2, 77.7, %s::date + interval '13 hours')",
            (day,),
        )
        s.execute(
            "UPDATE phood_foodlogsum SET weight = weight * 2 WHERE logged_time >= %s::date AND logged_time < %s::date + 1",
            (day, day),
        )
    with life.wh_admin() as c:
        r = c.execute(
            "SELECT _wh.update_mv_by_template(%s, 'tenant_a', %s, allow_refresh_yesterday => false)", (T, day)
        ).fetchone()[0]
        assert r["status"] == "succeeded", r
        assert r["results"][0]["details"]["action"] == "refreshed"
        assert r["results"][0]["details"]["partition"] == f"{T}_{LAST_YEAR}"
        wh_day = figures_by_day(c, f"tenant_a.{T}", f"WHERE logged_time >= '{day}' AND logged_time < '{day + dt.timedelta(days=1)}'")
        assert wh_day == {day: source_by_day(life, "tenant_a")[day]}
        reg = c.execute(
            "SELECT sum(row_count) FROM _wh.slices WHERE template_name = %s AND tenant_name = 'tenant_a' AND range_start < %s",
            (T, dt.date(NEXT_YEAR, 1, 1)),
        ).fetchone()[0]
        actual = c.execute(
            f"SELECT count(*) FROM tenant_a.{T} WHERE logged_time < '{NEXT_YEAR}-01-01'"
        ).fetchone()[0]
        assert reg == actual
        # A backfill over a folded year skips its days like any built day.
        r = c.execute("SELECT _wh.update_mv_window(%s, 'tenant_a', %s, %s)", (T, day, day)).fetchone()[0]
        assert r["results"][0]["details"]["reason"] == "exists"


def lose_tenant_b(c):
    """The disaster: tenant_b's schema (its view) dropped and its rows deleted by hand."""
    c.execute("DROP SCHEMA tenant_b CASCADE")
    c.execute(f"DELETE FROM public.{T} WHERE schema_name = 'tenant_b'")


def test_rebuild_after_drop_schema_restores_tenant_b_while_tenant_a_stays_readable(life):
    with life.wh_admin() as c:
        before_b = figures_by_day(c, f"tenant_b.{T}")
        before_a = figures_by_day(c, f"tenant_a.{T}")
        lose_tenant_b(c)
    errors, samples = [], []
    stop = threading.Event()

    def reader():
        with life.wh_reader() as r:
            while not stop.is_set():
                try:
                    samples.append(r.execute(f"SELECT count(*) FROM tenant_a.{T}").fetchone()[0])
                except psycopg.Error as e:
                    errors.append(repr(e))

    th = threading.Thread(target=reader)
    th.start()
    try:
        with life.wh_admin() as c:
            r = c.execute("SELECT _wh.rebuild_entire_warehouse(tenant_name => 'tenant_b', template_name => %s)", (T,)).fetchone()[0]
    finally:
        stop.set()
        th.join()
    assert r["status"] == "succeeded" and r["failed"] == 0, r
    assert errors == [] and len(set(samples)) == 1
    with life.wh_admin() as c:
        # Every registered day was fetched again and written; the folded year stays one partition.
        actions = {x["details"]["action"] for x in r["results"]}
        assert actions == {"refreshed"} and r["days"] == len(before_b), actions
        assert f"{T}_{LAST_YEAR}" in [n for _, n in harness.partitions(c, T)]
    with life.wh_reader() as c:
        assert figures_by_day(c, f"tenant_b.{T}") == before_b
        assert figures_by_day(c, f"tenant_a.{T}") == before_a
        assert figures_by_day(c, f"public.{T}", "WHERE schema_name = 'tenant_b'") == before_b


def test_committing_rebuild_resumes_where_it_stopped(life):
    with life.wh_admin() as c:
        lose_tenant_b(c)
        registered = c.execute("SELECT count(*) FROM _wh.slices WHERE template_name = %s AND tenant_name = 'tenant_b'", (T,)).fetchone()[0]
    # The first run is killed (pg_terminate_backend) after its second chunk.
    victim = life.wh_admin()
    notices = []
    with life.wh_super() as killer:
        def on_notice(n):
            notices.append(n.message_primary)
            if sum(m.startswith("day") for m in notices) == 2:
                killer.execute("SELECT pg_terminate_backend(%s)", (victim.info.backend_pid,))

        victim.add_notice_handler(on_notice)
        with pytest.raises(psycopg.OperationalError):
            victim.execute("CALL _wh.rebuild_warehouse(tenant_name => 'tenant_b', template_name => %s)", (T,))
    first_total = int(notices[0].split(": ")[1].split(" ")[0])
    assert first_total == registered
    done = harness.progress_days([m for m in notices if m.startswith("day")])
    with life.wh_admin() as c:
        notices = []
        c.add_notice_handler(lambda n: notices.append(n.message_primary))
        c.execute("CALL _wh.rebuild_warehouse(tenant_name => 'tenant_b', template_name => %s)", (T,))
        assert "(resuming)" in notices[0]
        left = int(notices[0].split(": ")[1].split(" ")[0])
        assert left == first_total - done
        assert harness.progress_days([m for m in notices if m.startswith("day")]) == left
        assert c.execute(
            "SELECT status FROM _wh.run_log WHERE operation = 'rebuild_warehouse' ORDER BY run_id DESC LIMIT 1"
        ).fetchone()[0] == "succeeded"
        assert figures_by_day(c, f"tenant_b.{T}") == source_by_day(life, "tenant_b")


def test_disaster_recovery_round_trip(life, tmp_path):
    """Back up the _wh configuration with pg_dump, restore it into a fresh database with the
    extension installed, re-enter the tenant secrets, rebuild: same figures per tenant and day."""
    with life.wh_admin() as c:
        original = {t: figures_by_day(c, f"{t}.{T}") for t in ("tenant_a", "tenant_b")}
    dump = tmp_path / "wh_config.sql"
    subprocess.run(
        ["pg_dump", "--data-only", "--disable-triggers", "--schema=_wh", "-f", str(dump), life.warehouse.dsn(life.warehouse_db)], check=True
    )
    assert all(p not in dump.read_text() for p in life.tenant_passwords.values())
    with harness.scratch_database(life, "warehouse_dr"):
        subprocess.run(
            ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(dump), life.warehouse.dsn("warehouse_dr")],
            check=True, capture_output=True,
        )
        dr = psycopg.connect(life.warehouse.tcp_dsn("warehouse_dr", "whadmin", life.admin_password), autocommit=True)
        with dr:
            # Secrets never travel in the dump: re-enter them from your secret store.
            for t in harness.TENANTS:
                row = dr.execute(
                    "SELECT host, port, dbname, username, sslmode FROM _wh.tenant_connections WHERE tenant_name = %s", (t,)
                ).fetchone()
                dr.execute(
                    "SELECT _wh.set_tenant_connection(%s, %s, %s, %s, %s, %s, %s)",
                    (t, row[0], row[1], row[2], row[3], life.tenant_passwords[t], row[4]),
                )
            r = dr.execute("SELECT _wh.rebuild_entire_warehouse(template_name => %s)", (T,)).fetchone()[0]
            assert r["status"] == "succeeded" and r["failed"] == 0, {k: v for k, v in r.items() if k != "results"}
            for t in ("tenant_a", "tenant_b"):
                assert figures_by_day(dr, f"{t}.{T}") == original[t]
                assert figures_by_day(dr, f"public.{T}", f"WHERE schema_name = '{t}'") == original[t]
            assert dr.execute(
                "SELECT count(*) FROM _wh.slices WHERE template_name = %s", (T,)
            ).fetchone()[0] == sum(len(v) for v in original.values())


def test_year_tablespace_and_moving_a_folded_year(life):
    cold = os.path.join(life.run_dir, "ts_cold")
    warm = os.path.join(life.run_dir, "ts_warm")
    for d in (cold, warm):
        harness.as_postgres(["mkdir", "-p", d])
    with life.wh_super() as s:
        s.execute(f"CREATE TABLESPACE wh_cold LOCATION '{cold}'")
        s.execute(f"CREATE TABLESPACE wh_warm LOCATION '{warm}'")
        s.execute("GRANT CREATE ON TABLESPACE wh_cold, wh_warm TO wh_admin")
    with life.wh_admin() as c:
        harness.register_template(c, "tiered")
        c.execute("SELECT _wh.set_template_policy('tiered', year_tablespace => 'wh_cold')")
        c.execute("SELECT _wh.update_mv_window('tiered', 'tenant_c', %s, %s)", (dt.date(LAST_YEAR, 12, 1), dt.date(LAST_YEAR, 12, 31)))
        r = c.execute("SELECT _wh.create_combined_table_by_year('tiered', 'tenant_c', %s)", (LAST_YEAR,)).fetchone()[0]
        assert r["status"] == "succeeded" and r["details"]["tablespace"] == "wh_cold"

        def spaces():
            return set(c.execute(
                "SELECT coalesce(t.spcname, 'default') FROM pg_class k LEFT JOIN pg_tablespace t ON t.oid = k.reltablespace "
                "WHERE k.relname LIKE %s", (f"tiered_{LAST_YEAR}%",)
            ).fetchall())

        assert spaces() == {("wh_cold",)}
        # A DBA indexes the table by hand (the template does not name this index): the
        # year gets it too, in the default tablespace for now.
        c.execute("CREATE INDEX tiered_by_weight ON _wh_data.tiered (weight DESC NULLS LAST, store COLLATE \"C\" text_pattern_ops) WHERE weight > 0")
        assert spaces() == {("wh_cold",), ("default",)}

        def year_indexes():
            return sorted(d.split(" ON ", 1)[1] for (d,) in c.execute(
                "SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = %s::regclass", (f"_wh_data.tiered_{LAST_YEAR}",)))

        before = year_indexes()
        c.execute("SELECT _wh.set_slice_tablespace('tiered', 'tenant_c', %s, 'wh_warm')", (LAST_YEAR,))
        # Moved with the indexes the year has, all built in the new tablespace before the
        # swap (none left for ATTACH to build under its lock, in the default tablespace).
        assert spaces() == {("wh_warm",)}
        assert [i.split(" TABLESPACE ")[0] for i in year_indexes()] == [i.split(" TABLESPACE ")[0] for i in before]
        assert c.execute("SELECT count(*) FROM tenant_c.tiered").fetchone()[0] == 31 * (ROWS + 14)
        with pytest.raises(psycopg.Error, match="does not exist") as e:
            c.execute("SELECT _wh.set_slice_tablespace('tiered', 'tenant_c', %s, 'nowhere')", (LAST_YEAR,))
        assert e.value.sqlstate == "22023"


def test_retention_drops_old_slices_but_not_this_years_days(life):
    with life.wh_admin() as c:
        harness.register_template(c, "kept")
        # What retention keeps depends on the warehouse's today: last December's four days
        # and this year's first day (which has begun whatever today is).
        year = harness.server_today(c).year
        days = [dt.date(year - 1, 12, 28) + dt.timedelta(days=i) for i in range(5)]
        harness.seed(life, days[0].isoformat(), 5, ROWS, tenants=("tenant_c",), append=True)
        c.execute("SELECT _wh.update_mv_window('kept', 'tenant_c', %s, %s)", (days[0], days[-1]))
        c.execute("SELECT _wh.set_template_policy('kept', retention => '1 day')")
        # A call changes only what it names; clearing is explicit.
        r = c.execute("SELECT _wh.set_template_policy('kept', stale_after => '12 hours')").fetchone()[0]
        assert (r["details"]["retention"], r["details"]["stale_after"]) == ("1 day", "12:00:00"), r
        r = c.execute("SELECT _wh.set_template_policy('kept', clear => ARRAY['stale_after'])").fetchone()[0]
        assert (r["details"]["retention"], r["details"]["stale_after"]) == ("1 day", None), r
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="both given and cleared"):
            c.execute("SELECT _wh.set_template_policy('kept', retention => '2 days', clear => ARRAY['retention'])")
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="not one of"):
            c.execute("SELECT _wh.set_template_policy('kept', clear => ARRAY['everything'])")
        before = harness.server_today(c)
        dry = c.execute("SELECT _wh.apply_retention('kept', dry_run => true)").fetchone()[0]
        horizon = dt.date.fromisoformat(dry["details"]["horizon"])
        assert horizon in (before - dt.timedelta(days=1), harness.server_today(c) - dt.timedelta(days=1)), dry
        # The cut is the horizon, but never into the current year: 1 January, unless today
        # is 1 January (then yesterday's horizon is already before it).
        today = horizon + dt.timedelta(days=1)
        cut = horizon if (today.month, today.day) == (1, 1) else dt.date(today.year, 1, 1)
        gone = [d for d in days if d < cut]
        assert dry["details"]["cut"] == cut.isoformat(), dry
        assert dry["details"]["days_by_tenant"] == {"tenant_c": len(gone)}, dry
        whole = [f"kept_{year - 1}_12"] if cut >= dt.date(year, 1, 1) else []
        assert dry["details"]["partitions_dropped"] == whole, dry
        assert c.execute("SELECT count(*) FROM _wh.slices WHERE template_name = 'kept'").fetchone()[0] == 5
        r = c.execute("SELECT _wh.apply_retention('kept')").fetchone()[0]
        assert r["rows"] == len(gone) and r["details"]["partitions_dropped"] == whole, r
        left = [d for (d,) in c.execute("SELECT range_start FROM _wh.slices WHERE template_name = 'kept' ORDER BY 1")]
        assert left == [d for d in days if d >= cut] and days[-1] in left
        # Last December's days are gone (its partition whole when wholly past); this year's rows are all there.
        names = [n for _, n in harness.partitions(c, "kept")]
        assert f"kept_{year}_01" in names and (whole == [] or whole[0] not in names)
        assert c.execute("SELECT count(*) FROM public.kept").fetchone()[0] == len(left) * (ROWS + 14)
        # include_current_year lets an explicit horizon reach into this year.
        r = c.execute(
            "SELECT _wh.apply_retention('kept', older_than => %s, include_current_year => true)", (days[-1] + dt.timedelta(days=1),)
        ).fetchone()[0]
        # Last December's partition goes now if the first call kept it (today is 1 January:
        # 31 December was still inside the horizon); this year's partitions stay.
        assert r["rows"] == len(left) and r["details"]["partitions_dropped"] == ([] if whole else [f"kept_{year - 1}_12"]), r
        assert c.execute("SELECT count(*) FROM public.kept").fetchone()[0] == 0
        assert c.execute(
            "SELECT count(*) FROM _wh.run_log WHERE operation = 'apply_retention' AND template_name = 'kept'"
        ).fetchone()[0] == 2
        with pytest.raises(psycopg.Error, match="no retention") as e:
            c.execute("SELECT _wh.apply_retention(%s)", (T,))
        assert e.value.sqlstate == "22023"


def test_remove_tenant_keeps_or_drops_data(life):
    with life.wh_admin() as c:
        harness.register_template(c, "gone")
        c.execute("SELECT _wh.update_mv_window('gone', 'tenant_c', %s, %s)", (dt.date(NEXT_YEAR, 1, 1), dt.date(NEXT_YEAR, 1, 2)))
        c.execute("SELECT _wh.update_mv_window('gone', 'tenant_a', %s, %s)", (dt.date(NEXT_YEAR, 1, 1), dt.date(NEXT_YEAR, 1, 2)))
        c.execute("SELECT _wh.schedule_tenant('gone', 'tenant_c')")
        r = c.execute("SELECT _wh.remove_tenant('tenant_c')").fetchone()[0]
        assert r["details"]["jobs_unscheduled"] == ["wh:gone:tenant_c"]
        assert c.execute("SELECT count(*) FROM pg_foreign_server WHERE srvname = 'wh_tenant_c'").fetchone()[0] == 0
    # Without drop_data its rows stay readable, in its view and in the table.
    with life.wh_reader() as r:
        assert r.execute("SELECT count(*) FROM tenant_c.gone").fetchone()[0] == 2 * (ROWS + 14)
        assert r.execute("SELECT count(*) FROM public.gone WHERE schema_name = 'tenant_c'").fetchone()[0] == 2 * (ROWS + 14)
        assert r.execute("SELECT count(*) FROM public.gone").fetchone()[0] == 2 * ROWS + 2 * (ROWS + 14)
    with life.wh_admin() as c:
        user, password = life.tenant_login("tenant_c")
        c.execute("SELECT _wh.set_tenant_connection('tenant_c', '127.0.0.1', %s, 'tenant_c', %s, %s)", (life.source.port, user, password))
        c.execute("SELECT _wh.update_public_view('gone')")
        assert c.execute("SELECT count(*) FROM public.gone WHERE schema_name = 'tenant_c'").fetchone()[0] == 2 * (ROWS + 14)
        held = c.execute("SELECT sum(row_count) FROM _wh.slices WHERE tenant_name = 'tenant_c'").fetchone()[0]
        r = c.execute("SELECT _wh.remove_tenant('tenant_c', drop_data => true)").fetchone()[0]
        assert r["details"]["rows_deleted"] == held  # every template's rows of tenant_c
        assert c.execute("SELECT count(*) FROM public.gone WHERE schema_name = 'tenant_c'").fetchone()[0] == 0
        assert c.execute("SELECT count(*) FROM public.gone").fetchone()[0] == 2 * ROWS
        assert c.execute("SELECT to_regnamespace('tenant_c')").fetchone()[0] is None
        assert c.execute("SELECT count(*) FROM _wh.slices WHERE tenant_name = 'tenant_c'").fetchone()[0] == 0
        assert c.execute(
            "SELECT action FROM _wh.connection_audit WHERE tenant_name = 'tenant_c' ORDER BY audit_id DESC LIMIT 1"
        ).fetchone()[0] == "remove"
        # Put tenant_c back for the modules that follow.
        c.execute("SELECT _wh.set_tenant_connection('tenant_c', '127.0.0.1', %s, 'tenant_c', %s, %s)", (life.source.port, user, password))
