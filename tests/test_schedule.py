"""Scheduling with real pg_cron jobs, the run history, freshness and health monitoring.

The warehouse cluster preloads pg_cron with cron.host pointing at its socket directory
(local trust), so jobs connect as the operator who scheduled them."""

import datetime as dt
import time

import psycopg
import pytest

import harness

# The warehouse's today when the module's data is seeded (see the module fixture).
TODAY = None
T = "sched"
ROWS = 50


@pytest.fixture(scope="module")
def sched(env):
    global TODAY
    with env.wh_admin() as c:
        TODAY = harness.server_today(c)
    harness.seed(env, (TODAY - dt.timedelta(days=2)).isoformat(), 3, ROWS)
    with env.wh_admin() as c:
        harness.register_tenants(env, c)
        harness.register_template(c, T)
        for t in harness.TENANTS:
            c.execute("SELECT _wh.update_mv_window(%s, %s, %s, %s)", (T, t, TODAY - dt.timedelta(days=2), TODAY - dt.timedelta(days=1)))
    yield env
    with env.wh_admin() as c:
        for t in harness.TENANTS:
            if c.execute("SELECT count(*) FROM _wh.jobs WHERE jobname LIKE %s", (f"wh:%:{t}",)).fetchone()[0]:
                c.execute("SELECT _wh.unschedule_tenant(NULL, %s)", (t,))


def test_staggered_schedules_have_distinct_minutes(sched):
    with sched.wh_admin() as c:
        for t in harness.TENANTS:
            r = c.execute("SELECT _wh.schedule_tenant(%s, %s)", (T, t)).fetchone()[0]
            assert r["status"] == "succeeded"
        jobs = c.execute(
            "SELECT jobname, schedule, command FROM _wh.jobs WHERE jobname LIKE %s ORDER BY 1", (f"wh:{T}:%",)
        ).fetchall()
        assert [j[0] for j in jobs] == [f"wh:{T}:{t}" for t in harness.TENANTS]
        minutes = [int(j[1].split()[0]) for j in jobs]
        assert len(set(minutes)) == 3 and minutes == [10, 30, 50]
        assert all(j[1].split()[1:] == ["*/4", "*", "*", "*"] for j in jobs)
        assert jobs[0][2] == f"CALL _wh.run_scheduled('{T}', 'tenant_a')"
        assert c.execute("SELECT count(*) FROM _wh.jobs WHERE jobname = 'wh:maintenance'").fetchone()[0] == 1


def test_scheduling_one_tenant_moves_no_other_job(sched):
    """Issue 21, item 5: a tenant set to its own schedule keeps it when another tenant is
    scheduled (staggered or not); pg_cron's shorthands are taken; a field out of range is
    refused with the field named, not pg_cron's bare "invalid schedule"."""
    with sched.wh_admin() as c:
        c.execute("SELECT _wh.schedule_tenant(%s, 'tenant_a', '0 * * * *', stagger => false)", (T,))
        c.execute("SELECT _wh.schedule_tenant(%s, 'tenant_b', '7 */2 * * *', stagger => false)", (T,))
        before = dict(c.execute("SELECT jobname, schedule FROM _wh.jobs WHERE jobname LIKE %s", (f"wh:{T}:%",)).fetchall())
        r = c.execute("SELECT _wh.schedule_tenant(%s, 'tenant_c')", (T,)).fetchone()[0]
        assert [j["job"] for j in r["details"]["jobs"]] == [f"wh:{T}:tenant_c"]
        after = dict(c.execute("SELECT jobname, schedule FROM _wh.jobs WHERE jobname LIKE %s", (f"wh:{T}:%",)).fetchall())
        assert after[f"wh:{T}:tenant_a"] == before[f"wh:{T}:tenant_a"] == "0 * * * *"
        assert after[f"wh:{T}:tenant_b"] == before[f"wh:{T}:tenant_b"] == "7 */2 * * *"
        assert after[f"wh:{T}:tenant_c"] == "50 */4 * * *"  # its own place among three tenants
        c.execute("SELECT _wh.schedule_tenant(%s, 'tenant_b', '@hourly', stagger => false)", (T,))
        c.execute("SELECT _wh.schedule_tenant(%s, 'tenant_c', '@daily')", (T,))
        now = dict(c.execute("SELECT jobname, schedule FROM _wh.jobs WHERE jobname LIKE %s", (f"wh:{T}:%",)).fetchall())
        assert now[f"wh:{T}:tenant_b"] == "@hourly"
        assert now[f"wh:{T}:tenant_c"] == "40 0 * * *"  # @daily, staggered
        assert now[f"wh:{T}:tenant_a"] == "0 * * * *"
        for bad, words in (("0 25 * * *", 'hour "25": 25 is not in 0..23'), ("@fortnightly", "shorthands"),
                           ("0 0 * 13 *", "month")):
            with pytest.raises(psycopg.Error, match=words) as e:
                c.execute("SELECT _wh.schedule_tenant(%s, 'tenant_a', %s, stagger => false)", (T, bad))
            assert e.value.sqlstate == "22023"
        assert c.execute("SELECT schedule FROM _wh.jobs WHERE jobname = %s", (f"wh:{T}:tenant_a",)).fetchone()[0] == "0 * * * *"
        for t in harness.TENANTS:  # back as the first test left them
            c.execute("SELECT _wh.schedule_tenant(%s, %s)", (T, t))


def cron_runs(conn, jobname):
    return conn.execute(
        "SELECT d.status, d.return_message FROM cron.job_run_details d JOIN cron.job j USING (jobid) "
        "WHERE j.jobname = %s AND d.status IN ('succeeded', 'failed') ORDER BY d.runid", (jobname,)
    ).fetchall()


def test_real_cron_jobs_succeed_fail_and_skip_when_busy(sched):
    """Within about a minute: tenant_a's job builds today's slice; tenant_b's source is
    unreachable (its connection points at a port nothing listens on, which is what a
    stopped server looks like to libpq) so its job fails in both logs; tenant_c's
    previous run is still going (we hold its job lock), so its run skips as busy."""
    user_b, password_b = sched.tenant_login("tenant_b")
    # Hold tenant_c's job lock before any job exists, so no run can slip in before it.
    holder = sched.wh_admin(autocommit=False)
    assert holder.execute("SELECT _wh._try_run_lock(%s)", (f"wh:job:tenant:{T}:tenant_c",)).fetchone()[0] is True
    with sched.wh_admin() as c:
        c.execute("SELECT _wh.set_template_policy(%s, stale_after => '10 seconds')", (T,))
        c.execute(
            "SELECT _wh.set_tenant_connection('tenant_b', '127.0.0.1', %s, 'tenant_b', %s, %s, test_first => false)",
            (harness.PORT_BASE + 7, user_b, password_b),
        )
        for t in harness.TENANTS:
            c.execute("SELECT _wh.schedule_tenant(%s, %s, '* * * * *', stagger => false)", (T, t))
    try:
        with sched.wh_admin() as c:
            deadline = time.time() + 150
            while time.time() < deadline:
                if all(cron_runs(c, f"wh:{T}:{t}") for t in harness.TENANTS):
                    break
                time.sleep(2)
            runs = {t: cron_runs(c, f"wh:{T}:{t}") for t in harness.TENANTS}
            # Stop further runs; pg_cron's history of these runs stays (job_history below).
            with sched.wh_super() as s:
                s.execute("UPDATE cron.job SET active = false WHERE jobname LIKE %s", (f"wh:{T}:%",))
    finally:
        holder.close()
        with sched.wh_admin() as c:
            c.execute(
                "SELECT _wh.set_tenant_connection('tenant_b', '127.0.0.1', %s, 'tenant_b', %s, %s)",
                (sched.source.port, user_b, password_b),
            )
    assert all(runs.values()), runs

    with sched.wh_admin() as c:
        # tenant_a: succeeded in pg_cron and in the run log; today's slice is there.
        assert runs["tenant_a"][0][0] == "succeeded", runs["tenant_a"]
        # The run worked on the warehouse's today (a later day if midnight UTC passed meanwhile).
        ok = c.execute(
            "SELECT status, run_by, target_date FROM _wh.run_log WHERE template_name = %s AND tenant_name = 'tenant_a' "
            "AND target_date >= %s ORDER BY target_date DESC, run_id DESC LIMIT 1", (T, TODAY)
        ).fetchone()
        assert ok[:2] == ("succeeded", "whadmin") and TODAY <= ok[2] <= harness.server_today(c), ok
        assert c.execute("SELECT _wh.does_mv_exist(%s, 'tenant_a', %s)", (T, ok[2])).fetchone()[0]

        # tenant_b: failed in pg_cron (after committing its run log) and in the run log.
        status, message = runs["tenant_b"][0]
        assert status == "failed" and "wh: scheduled run failed" in message and "tenant tenant_b" in message
        failed = c.execute(
            "SELECT count(*) FROM _wh.run_log WHERE template_name = %s AND tenant_name = 'tenant_b' "
            "AND status = 'failed' AND target_date >= %s", (T, TODAY)
        ).fetchone()[0]
        assert failed >= 1
        listed = c.execute(
            "SELECT sqlstate, message FROM _wh.failures WHERE template_name = %s AND tenant_name = 'tenant_b' LIMIT 1", (T,)
        ).fetchone()
        assert listed[0] == "08001" and "could not establish connection" in listed[1]
        assert not any(s == "succeeded" for s, _ in runs["tenant_b"])

        # tenant_c: the second run skipped at once, recorded as busy; the job itself succeeded.
        assert runs["tenant_c"][0][0] == "succeeded"
        busy = c.execute(
            "SELECT details->>'reason' FROM _wh.run_log WHERE operation = 'scheduled_tenant' AND template_name = %s "
            "AND tenant_name = 'tenant_c' AND status = 'skipped' ORDER BY run_id DESC LIMIT 1", (T,)
        ).fetchone()
        assert busy == ("busy",)

        # Freshness: tenant_b is stale once past its threshold; tenant_a's last run succeeded.
        fresh = {r[0]: r[1:] for r in c.execute(
            "SELECT tenant_name, stale, last_run_status, newest_day FROM _wh.freshness WHERE template_name = %s", (T,)
        ).fetchall()}
        assert fresh["tenant_a"][1] == "succeeded" and fresh["tenant_a"][2] >= TODAY
        deadline_b = time.time() + 15
        while not fresh["tenant_b"][0] and time.time() < deadline_b:
            time.sleep(1)
            fresh = {r[0]: r[1:] for r in c.execute(
                "SELECT tenant_name, stale, last_run_status, newest_day FROM _wh.freshness WHERE template_name = %s", (T,)
            ).fetchall()}
        assert fresh["tenant_b"][0] is True and fresh["tenant_b"][1] == "failed"

        # pg_cron's history next to wh's run log.
        hist = c.execute(
            "SELECT jobname, cron_status, wh_failed, wh_skipped FROM _wh.job_history WHERE jobname LIKE %s", (f"wh:{T}:%",)
        ).fetchall()
        by_job = {}
        for name, cron_status, wh_failed, wh_skipped in hist:
            by_job.setdefault(name, []).append((cron_status, wh_failed, wh_skipped))
        assert ("failed", 1, 0) in [(s, min(f, 1), k) for s, f, k in by_job[f"wh:{T}:tenant_b"]]
        assert any(k >= 1 for _, _, k in by_job[f"wh:{T}:tenant_c"])

        health = c.execute("SELECT _wh.health()").fetchone()[0]
        assert health["status"] == "degraded" and health["failures_24h"] >= 1 and health["stale"] >= 1
        assert health["tenants"] == 3 and health["pg_cron"] is True and 0 < health["cache_hit_ratio"] <= 1
        for t in harness.TENANTS:
            c.execute("SELECT _wh.unschedule_tenant(%s, %s)", (T, t))


def test_scheduled_procedures_fail_only_when_a_day_failed(sched):
    with sched.wh_admin() as c:
        c.execute("CALL _wh.run_scheduled(%s, 'tenant_a')", (T,))
        c.execute("CALL _wh.run_scheduled_all(%s)", (T,))
        c.execute("CALL _wh.run_scheduled_fold(%s)", (T,))
        with pytest.raises(psycopg.Error, match="unknown template"):
            c.execute("CALL _wh.run_scheduled('nothing', 'tenant_a')")


def test_template_and_fold_jobs(sched):
    with sched.wh_admin() as c:
        c.execute("SELECT _wh.schedule_template(%s, '5 * * * *')", (T,))
        c.execute("SELECT _wh.schedule_yearly_fold(%s)", (T,))
        jobs = dict(c.execute(
            "SELECT jobname, schedule || ' ' || command FROM _wh.jobs WHERE jobname IN (%s, %s)", (f"wh:{T}:all", f"wh:{T}:fold")
        ).fetchall())
        assert jobs == {
            f"wh:{T}:all": f"5 * * * * CALL _wh.run_scheduled_all('{T}')",
            f"wh:{T}:fold": f"0 2 15 2 * CALL _wh.run_scheduled_fold('{T}')",
        }
        for bad, words in (("* * *", "five fields"), ("*/5 * * * *", "plain minute"), ("1 * * * *;x", "allowed")):
            with pytest.raises(psycopg.Error, match=words) as e:
                c.execute("SELECT _wh.schedule_tenant(%s, 'tenant_a', %s)", (T, bad))
            assert e.value.sqlstate == "22023"
        c.execute("SELECT cron.unschedule(%s)", (f"wh:{T}:all",))
        c.execute("SELECT cron.unschedule(%s)", (f"wh:{T}:fold",))


def test_unschedule_tenant(sched):
    with sched.wh_admin() as c:
        c.execute("SELECT _wh.schedule_tenant(%s, 'tenant_a')", (T,))
        r = c.execute("SELECT _wh.unschedule_tenant(%s, 'tenant_a')", (T,)).fetchone()[0]
        assert r["details"]["jobs"] == [f"wh:{T}:tenant_a"]
        assert c.execute("SELECT count(*) FROM _wh.jobs WHERE jobname = %s", (f"wh:{T}:tenant_a",)).fetchone()[0] == 0
        # Nothing to unschedule is an error, not a success that did nothing.
        with pytest.raises(psycopg.errors.UndefinedObject, match="nothing was unscheduled"):
            c.execute("SELECT _wh.unschedule_tenant(%s, 'tenant_a')", (T,))


def test_several_operators_share_one_set_of_jobs(sched):
    """A second operator sees the first one's jobs (with their owner), rescheduling
    replaces the job instead of adding a second one, and unscheduling removes it."""
    with sched.wh_super() as s:
        s.execute("DROP ROLE IF EXISTS op2")
        s.execute("CREATE ROLE op2 LOGIN PASSWORD 'op2-pw' IN ROLE wh_admin")
    name = f"wh:{T}:tenant_b"
    try:
        with sched.wh_admin() as c:
            c.execute("SELECT _wh.schedule_tenant(%s, 'tenant_b', '5 1 * * *', stagger => false)", (T,))
        with psycopg.connect(sched.warehouse.tcp_dsn(sched.warehouse_db, "op2", "op2-pw"), autocommit=True) as o:
            assert o.execute("SELECT username FROM _wh.jobs WHERE jobname = %s", (name,)).fetchall() == [("whadmin",)]
            maint = o.execute("SELECT count(*) FROM _wh.jobs WHERE jobname = 'wh:maintenance'").fetchone()[0]
            o.execute("SELECT _wh.schedule_tenant(%s, 'tenant_b', '7 2 * * *', stagger => false)", (T,))
            assert o.execute("SELECT username, schedule FROM _wh.jobs WHERE jobname = %s", (name,)).fetchall() == [("op2", "7 2 * * *")]
            assert o.execute("SELECT count(*) FROM _wh.jobs WHERE jobname = 'wh:maintenance'").fetchone()[0] == maint == 1
            r = o.execute("SELECT _wh.unschedule_tenant(%s, 'tenant_b')", (T,)).fetchone()[0]
            assert r["details"]["jobs"] == [name]
        with sched.wh_admin() as c:
            assert c.execute("SELECT count(*) FROM _wh.jobs WHERE jobname = %s", (name,)).fetchone()[0] == 0
    finally:
        with sched.wh_super() as s:
            s.execute("DROP OWNED BY op2")
            s.execute("DROP ROLE op2")


def test_storage_view(sched):
    with sched.wh_admin() as c:
        rows = c.execute(
            "SELECT tenant_name, days, rows, est_bytes > 0, oldest_day FROM _wh.storage "
            "WHERE template_name = %s ORDER BY 1", (T,)
        ).fetchall()
        assert [r[0] for r in rows] == list(harness.TENANTS)
        for t, days, n, has_bytes, oldest in rows:
            assert days >= 2 and has_bytes and oldest == TODAY - dt.timedelta(days=2)
            assert n == c.execute(f"SELECT count(*) FROM {t}.{T}").fetchone()[0]
        parts = c.execute(
            "SELECT partition_name, bytes > 0, tablespace FROM _wh.partitions WHERE template_name = %s ORDER BY 1", (T,)
        ).fetchall()
        # Every month the days touch has its partition, or its year's when the year was
        # folded (the fold job runs on 1 January); none older (and months made ahead).
        names = {p for p, _, _ in parts}
        touched = harness.months(TODAY - dt.timedelta(days=2), harness.server_today(c))
        assert all(f"{T}_{m}" in names or f"{T}_{m[:4]}" in names for m in touched), parts
        assert all(p >= f"{T}_{touched[0][:4]}" for p in names), parts
        assert all(b and ts == "pg_default" for _, b, ts in parts)


def test_run_log_is_pruned(sched):
    with sched.wh_super() as s:
        s.execute(
            "INSERT INTO _wh.run_log (started_at, operation, status) "
            "SELECT now() - interval '40 days', 'old', 'succeeded' FROM generate_series(1, 5)"
        )
    with sched.wh_admin() as c:
        assert c.execute("SELECT _wh.prune_run_log()").fetchone()[0] == 5
        assert c.execute("SELECT count(*) FROM _wh.run_log WHERE operation = 'old'").fetchone()[0] == 0
        c.execute("INSERT INTO _wh.settings (key, value) VALUES ('run_log_retention', '1 second')")
        time.sleep(1.1)
        assert c.execute("SELECT _wh.prune_run_log()").fetchone()[0] > 0
        c.execute("DELETE FROM _wh.settings WHERE key = 'run_log_retention'")


def test_wh_works_without_pg_cron(sched):
    with harness.scratch_database(sched, "no_cron"):
        with psycopg.connect(sched.warehouse.tcp_dsn("no_cron", "whadmin", sched.admin_password), autocommit=True) as c:
            user, password = sched.tenant_login("tenant_a")
            c.execute("SELECT _wh.set_tenant_connection('tenant_a', '127.0.0.1', %s, 'tenant_a', %s, %s)", (sched.source.port, user, password))
            harness.register_template(c, T)
            r = c.execute("SELECT _wh.create_mv_from_template(%s, 'tenant_a', target_date => %s)", (T, TODAY - dt.timedelta(days=1))).fetchone()[0]
            assert r["status"] == "succeeded" and r["rows"] == ROWS
            assert c.execute("SELECT count(*) FROM _wh.jobs").fetchone()[0] == 0
            assert c.execute("SELECT _wh.health() ->> 'pg_cron'").fetchone()[0] == "false"
            with pytest.raises(psycopg.Error, match="needs pg_cron") as e:
                c.execute("SELECT _wh.schedule_tenant(%s, 'tenant_a')", (T,))
            assert e.value.sqlstate == "55000"
            r = c.execute("SELECT _wh.remove_tenant('tenant_a', drop_data => true)").fetchone()[0]
            assert r["details"]["jobs_unscheduled"] == []
