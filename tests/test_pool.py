"""The refresh pool (issue 25): one schedule per template, a queue of due tenants, workers
that take the most overdue FOR UPDATE SKIP LOCKED. Workers are run here as pg_cron runs them
(`CALL _wh.run_pool(k)` in sessions of the operator login) with their jobs stopped, so each
cycle is the test's; one test lets pg_cron run them.

Twelve tenants share one source server: the three demo tenants and nine more reading the
same source databases with their own logins' rights (p01..p09), as tenants of one host."""

import datetime as dt
import re
import threading
import time

import psycopg
import pytest

import harness

T = "pooled"
ROWS = 20
EXTRA = [f"p{i:02d}" for i in range(1, 10)]
# A tenant's query that takes `secs` on its source (pg_sleep per query, not per row).
SLOW_Q = ("SELECT g AS id, ('{TARGET_DATE}'::date + make_interval(mins => g))::timestamptz AS logged_time, 'x' AS name "
          "FROM generate_series(1, %d) g, (SELECT pg_catalog.pg_sleep(%s)) s")
COLS = "id bigint, logged_time timestamptz, name text"


def register_extra(env, c, names=EXTRA):
    """Tenants p01.. reading tenant_a/b/c's source databases (one source server)."""
    for i, t in enumerate(names):
        src = harness.TENANTS[i % 3]
        user, password = env.tenant_login(src)
        c.execute("SELECT _wh.set_tenant_connection(tenant_name => %s, host => '127.0.0.1', port => %s, "
                  "dbname => %s, username => %s, password => %s)", (t, env.source.port, src, user, password))


def tenants():
    return list(harness.TENANTS) + EXTRA


@pytest.fixture(scope="module")
def pool(env):
    with env.wh_admin() as c:
        harness.register_tenants(env, c)
        register_extra(env, c)
        c.execute("SELECT _wh.set_template(%s, %s, %s, 'logged_time', unique_key => 'id')", (T, SLOW_Q % (ROWS, "0.3"), COLS))
        today = harness.server_today(c)
    yield env, today
    with env.wh_admin() as c:
        for j in c.execute("SELECT jobid FROM _wh.jobs WHERE jobname LIKE 'wh:pool:%%'").fetchall():
            c.execute("SELECT _wh._cron_unschedule(%s)", j)
        c.execute("SELECT _wh.drop_template(%s)", (T,))
        for t in EXTRA:
            if c.execute("SELECT count(*) FROM _wh.tenant_connections WHERE tenant_name = %s", (t,)).fetchone()[0]:
                c.execute("SELECT _wh.remove_tenant(%s, drop_data => true)", (t,))


def stop_workers(c):
    """The pool's pg_cron jobs kept but stopped: the test runs each cycle itself."""
    for (jobid,) in c.execute("SELECT jobid FROM _wh.jobs WHERE jobname LIKE 'wh:pool:%%'").fetchall():
        c.execute("SELECT _wh._cron_set_active(%s, false)", (jobid,))


def fresh_cycle(env, every="1 hour"):
    """The template scheduled in the pool, its workers stopped, and every tenant due now
    with no refresh counted (the next cycle starts here)."""
    with env.wh_admin() as c:
        c.execute("SELECT _wh.schedule_refresh(%s, %s)", (T, every))
        stop_workers(c)
    with env.wh_super() as s:
        s.execute("UPDATE _wh.pool_items SET next_due = now() - interval '1 second', refreshes = 0, last_worker = NULL "
                  "WHERE template_name = %s", (T,))


def run_workers(env, n, settings=(), first=1):
    """n workers (CALL _wh.run_pool(k)) at once, each in its own operator session; the
    errors they ended with (a killed one ends with an error)."""
    errors = []

    def work(k):
        try:
            with env.wh_admin() as c:
                for s in settings:
                    c.execute(s)
                c.execute("CALL _wh.run_pool(%s)", (k,))
        except psycopg.Error as e:
            errors.append((k, e))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(first, first + n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return errors


def items(c):
    return {t: (n, status) for t, n, status in c.execute(
        "SELECT tenant_name, refreshes, last_status FROM _wh.pool_items WHERE template_name = %s", (T,)).fetchall()}


def source_peak(env, during):
    """The most of wh's source connections running the template's query at once, sampled
    every 20 ms on the source server while `during()` runs."""
    return harness.peak_while(
        lambda: env.source_super("tenant_a"),
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'wh' AND query LIKE '%pg_sleep%'",
        during)


def test_bad_schedules_are_refused_and_change_nothing(pool):
    env, _ = pool
    with env.wh_admin() as c:
        for call, args, state, says in [
            ("SELECT _wh.schedule_refresh(%s, '30 seconds')", (T,), "22023", "every"),
            ("SELECT _wh.schedule_refresh(%s, NULL)", (T,), "22004", "every"),
            ("SELECT _wh.schedule_refresh('no_such', '1 hour')", (), None, "no_such"),
            ("SELECT _wh.schedule_refresh(%s, '1 hour', tenant_name => 'nobody')", (T,), None, "nobody"),
            ("SELECT _wh.unschedule_refresh(%s)", (T,), None, T),
        ]:
            with pytest.raises(psycopg.Error) as e:
                c.execute(call, args)
            if state:
                assert e.value.sqlstate == state, (call, e.value.sqlstate, str(e.value))
            assert says in str(e.value), (call, str(e.value))
        assert c.execute("SELECT count(*) FROM _wh.refresh_schedules").fetchone()[0] == 0
        assert c.execute("SELECT count(*) FROM _wh.pool_items").fetchone()[0] == 0


def test_every_due_tenant_is_refreshed_once_per_cycle_with_workers_killed(pool):
    """Three workers; one is killed (pg_terminate_backend) while it refreshes a tenant, and
    another is started after. Every tenant is refreshed exactly once in the cycle (its item
    counts one refresh, its days one successful run each), none skipped; a second cycle an
    hour later refreshes each once more."""
    env, today = pool
    fresh_cycle(env)
    with env.wh_admin() as c:
        r = c.execute("SELECT tenants, due_now, every FROM _wh.pool WHERE template_name = %s", (T,)).fetchone()
        assert r[:2] == (12, 12) and r[2] == dt.timedelta(hours=1), r
        first_run = c.execute("SELECT coalesce(max(run_id), 0) FROM _wh.run_log").fetchone()[0]
    killed = []

    def killer():
        # The first worker seen refreshing a tenant (its progress line) is terminated.
        with env.wh_super() as s:
            for _ in range(500):
                row = s.execute("SELECT pid, tenant_name FROM _wh.progress WHERE operation = 'pool worker 1'").fetchone()
                if row:
                    s.execute("SELECT pg_terminate_backend(%s)", (row[0],))
                    killed.append(row[1])
                    return
                time.sleep(0.01)

    kt = threading.Thread(target=killer)
    kt.start()
    errors = run_workers(env, 3)
    kt.join()
    assert killed and [k for k, _ in errors] == [1], (killed, errors)
    assert run_workers(env, 1, first=4) == []
    with env.wh_admin() as c:
        got = items(c)
        assert got == {t: (1, "succeeded") for t in tenants()}, got
        days = {today, today - dt.timedelta(days=1)}
        runs = c.execute(
            "SELECT tenant_name, target_date, count(*) FROM _wh.run_log WHERE template_name = %s AND run_id > %s "
            "AND operation = 'update_mv_by_template' AND status = 'succeeded' GROUP BY 1, 2", (T, first_run)).fetchall()
        assert {(t, d) for t, d, _ in runs} == {(t, d) for t in tenants() for d in days}, runs
        assert all(n == 1 for _, _, n in runs), runs
        assert c.execute("SELECT count(*) FROM _wh.pool_items WHERE template_name = %s AND next_due <= now()", (T,)).fetchone()[0] == 0
        assert c.execute("SELECT due_now, refreshed_last_hour, failed_last_hour FROM _wh.pool WHERE template_name = %s",
                         (T,)).fetchone() == (0, 12, 0)
        # The killed worker's place and tenant came back: nothing is held.
        assert c.execute("SELECT count(*) FROM _wh.progress WHERE operation LIKE 'pool worker %%'").fetchone()[0] == 0
        # Each worker settled its tenants' figures as it committed them, unless another was
        # settling at that moment (then they stay listed, computed from the registry): either
        # way every tenant's figures show today, and one settle leaves nothing listed.
        assert c.execute("SELECT count(*) FROM _wh._pairs WHERE template_name = %s AND newest_day = %s",
                         (T, today)).fetchone()[0] == 12
        c.execute("SELECT _wh._settle_pairs()")
        assert c.execute("SELECT count(*) FROM _wh.pair_changes WHERE template_name = %s", (T,)).fetchone()[0] == 0
        assert c.execute("SELECT count(*) FROM _wh.pair_stats WHERE template_name = %s AND newest_day = %s",
                         (T, today)).fetchone()[0] == 12
    # An hour later (the queue moved back an hour): each tenant once more.
    with env.wh_super() as s:
        s.execute("UPDATE _wh.pool_items SET next_due = next_due - interval '1 hour' WHERE template_name = %s", (T,))
    assert run_workers(env, 2) == []
    with env.wh_admin() as c:
        assert items(c) == {t: (2, "succeeded") for t in tenants()}
        # Each item keeps its minute: due again on its grid, within the hour.
        left = c.execute("SELECT min(next_due - now()), max(next_due - now()) FROM _wh.pool_items WHERE template_name = %s",
                         (T,)).fetchone()
        assert dt.timedelta(0) < left[0] and left[1] <= dt.timedelta(hours=1), left


@pytest.mark.parametrize("max_source, per_host, expect", [(3, 16, 3), (16, 2, 2)])
def test_connections_stay_within_both_bounds(pool, max_source, per_host, expect):
    """Four workers: at most wh.max_source_connections source connections across the pool,
    and at most wh.max_connections_per_host on the one server the twelve tenants share,
    sampled on the source; every tenant refreshed."""
    env, _ = pool
    fresh_cycle(env)
    settings = (f"SET wh.max_source_connections = {max_source}", f"SET wh.max_connections_per_host = {per_host}")
    errors, peak = source_peak(env, lambda: run_workers(env, 4, settings))
    assert errors == [] and peak == expect, (errors, peak)
    with env.wh_admin() as c:
        assert items(c) == {t: (1, "succeeded") for t in tenants()}


def test_a_hung_source_holds_one_worker_and_no_other_tenant(pool):
    """p01's source never answers (its own query sleeps a minute; remote_timeout 15 s): it
    holds one worker until its deadline, and the other worker refreshes the other eleven
    meanwhile; p01's run fails 57014 and it is due again next cycle."""
    env, _ = pool
    fresh_cycle(env)
    with env.wh_admin() as c:
        c.execute("SELECT _wh.set_tenant_query(%s, 'p01', %s)", (T, SLOW_Q % (ROWS, "60")))
        c.execute("SELECT _wh.set_tenant_connection('p01', remote_timeout => '15 seconds')")
        # p01 first in the queue.
    with env.wh_super() as s:
        s.execute("UPDATE _wh.pool_items SET next_due = next_due - interval '1 minute' WHERE tenant_name = 'p01'")
    try:
        errors = run_workers(env, 2)
        # The worker that took p01 fails its job at the end (the failure is in the run log).
        assert len(errors) == 1 and "p01" in str(errors[0][1]), errors
        with env.wh_admin() as c:
            got = items(c)
            assert got.pop("p01") == (1, "failed"), got
            assert got == {t: (1, "succeeded") for t in tenants() if t != "p01"}, got
            # The hung tenant's worker did only p01; the other did the other eleven, all
            # finished before p01's deadline.
            by = dict(c.execute("SELECT tenant_name, last_worker FROM _wh.pool_items WHERE template_name = %s", (T,)).fetchall())
            hung_worker = by.pop("p01")
            assert set(by.values()) == {3 - hung_worker}, by
            ends = c.execute(
                "SELECT max(last_started_at + last_ms * interval '1 ms') FILTER (WHERE tenant_name <> 'p01'), "
                "max(last_started_at + last_ms * interval '1 ms') FILTER (WHERE tenant_name = 'p01'), "
                "max(last_ms) FILTER (WHERE tenant_name = 'p01') FROM _wh.pool_items WHERE template_name = %s", (T,)).fetchone()
            assert ends[0] < ends[1] and ends[2] >= 15000, ends
            f = c.execute("SELECT sqlstate FROM _wh.failures WHERE tenant_name = 'p01' AND template_name = %s ORDER BY run_id DESC LIMIT 1",
                          (T,)).fetchone()
            assert f == ("57014",), f
            # A run that failed is tried again within ten minutes, not a period later.
            retry = c.execute("SELECT next_due - now() FROM _wh.pool_items WHERE tenant_name = 'p01' AND template_name = %s",
                              (T,)).fetchone()[0]
            assert retry <= dt.timedelta(minutes=10), retry
    finally:
        with env.wh_admin() as c:
            c.execute("SELECT _wh.set_tenant_query(%s, 'p01', NULL)", (T,))
            c.execute("SELECT _wh.set_tenant_connection('p01', remote_timeout => '30 min')")


def test_tenants_whose_days_are_held_are_tried_again_soon(pool):
    """While the template's row is held as a fold holds it, every tenant's days are busy:
    each run is recorded as skipped (not succeeded) and the tenant is due again within ten
    minutes, not a period later; the worker's pg_cron run does not fail."""
    env, _ = pool
    fresh_cycle(env)
    holder = env.wh_super(autocommit=False)
    try:
        holder.execute("SELECT 1 FROM _wh.mv_templates WHERE template_name = %s FOR UPDATE", (T,))
        assert run_workers(env, 1) == []
    finally:
        holder.rollback()
        holder.close()
    with env.wh_admin() as c:
        rows = c.execute("SELECT tenant_name, last_status, next_due - now() FROM _wh.pool_items WHERE template_name = %s",
                         (T,)).fetchall()
        assert len(rows) == 12 and all(s == "skipped" and d <= dt.timedelta(minutes=10) for _, s, d in rows), rows


def test_paused_renamed_and_removed_tenants(pool):
    """A paused tenant is not queued (not due, not taken) until resumed; a renamed one keeps
    its place under its new name; a removed one leaves the queue, even while a worker holds
    its item (the removal does not wait for it; the next run drops it)."""
    env, _ = pool
    fresh_cycle(env)
    with env.wh_admin() as c:
        c.execute("SELECT _wh.pause_tenant('p02')")
        assert c.execute("SELECT due_now, paused FROM _wh.pool WHERE template_name = %s", (T,)).fetchone() == (11, 1)
        c.execute("SELECT _wh.rename_tenant('p03', 'p03_new')")
        assert c.execute("SELECT count(*) FROM _wh.pool_items WHERE tenant_name = 'p03_new'").fetchone()[0] == 1
        c.execute("SELECT _wh.remove_tenant('p04')")
        assert c.execute("SELECT count(*) FROM _wh.pool_items WHERE tenant_name = 'p04'").fetchone()[0] == 0
    holder = env.wh_super(autocommit=False)
    try:
        holder.execute("SELECT 1 FROM _wh.pool_items WHERE tenant_name = 'p05' FOR UPDATE")
        with env.wh_admin() as c:
            c.execute("SET lock_timeout = '2s'")
            assert c.execute("SELECT _wh.remove_tenant('p05')").fetchone()[0]["status"] == "succeeded"
            assert c.execute("SELECT count(*) FROM _wh.pool_items WHERE tenant_name = 'p05'").fetchone()[0] == 1
    finally:
        holder.rollback()
        holder.close()
    assert run_workers(env, 2) == []
    with env.wh_admin() as c:
        got = items(c)
        assert "p04" not in got and "p05" not in got, got
        assert got.pop("p02")[0] == 0, got
        assert got == {t: (1, "succeeded") for t in tenants() if t not in ("p02", "p03", "p04", "p05")} | {"p03_new": (1, "succeeded")}, got
        c.execute("SELECT _wh.resume_tenant('p02')")
        assert c.execute("SELECT due_now FROM _wh.pool WHERE template_name = %s", (T,)).fetchone() == (1,)
        c.execute("SELECT _wh.rename_tenant('p03_new', 'p03')")
        register_extra(env, c, ["p04", "p05"])
    assert run_workers(env, 1) == []
    with env.wh_admin() as c:
        assert c.execute("SELECT count(*) FROM _wh.pool_items WHERE template_name = %s", (T,)).fetchone()[0] == 12


def test_a_tenant_period_of_its_own_and_unscheduling(pool):
    """A tenant's own period overrides the template's; unscheduling it puts it back on the
    template's; unscheduling the template leaves only tenants with their own period."""
    env, _ = pool
    fresh_cycle(env)
    with env.wh_admin() as c:
        r = c.execute("SELECT _wh.schedule_refresh(%s, '15 minutes', tenant_name => 'p06')", (T,)).fetchone()[0]
        assert r["status"] == "succeeded" and r["details"]["every"] == "00:15:00", r
        assert c.execute("SELECT own_periods FROM _wh.pool WHERE template_name = %s", (T,)).fetchone() == (1,)
    assert run_workers(env, 2) == []
    with env.wh_admin() as c:
        due = dict(c.execute("SELECT tenant_name, next_due - now() FROM _wh.pool_items WHERE template_name = %s", (T,)).fetchall())
        assert due.pop("p06") <= dt.timedelta(minutes=15) and all(v > dt.timedelta(minutes=15) for v in due.values()), due
        # A pg_cron job of its own (uneven times) takes a tenant out of the pool; without it
        # the tenant is queued again.
        c.execute("SELECT _wh.schedule_tenant(%s, 'p07', '0 9 * * 1-5', stagger => false)", (T,))
        assert c.execute("SELECT count(*) FROM _wh.pool_items WHERE tenant_name = 'p07'").fetchone()[0] == 0
    assert run_workers(env, 1) == []
    with env.wh_admin() as c:
        assert c.execute("SELECT count(*) FROM _wh.pool_items WHERE tenant_name = 'p07'").fetchone()[0] == 0
        c.execute("SELECT _wh.unschedule_tenant(%s, 'p07')", (T,))
    assert run_workers(env, 1) == []
    with env.wh_admin() as c:
        assert c.execute("SELECT count(*) FROM _wh.pool_items WHERE tenant_name = 'p07'").fetchone()[0] == 1
        c.execute("SELECT _wh.unschedule_refresh(%s)", (T,))
        assert c.execute("SELECT array_agg(tenant_name) FROM _wh.pool_items").fetchone()[0] == ["p06"]
        r = c.execute("SELECT _wh.unschedule_tenant(%s, 'p06')", (T,)).fetchone()[0]
        assert r["details"]["jobs"] == [f"pool:{T}:p06"], r
        # Without the template's schedule, unscheduling a tenant's own period takes it out
        # of the pool, and the result says so.
        c.execute("SELECT _wh.schedule_refresh(%s, '15 minutes', tenant_name => 'p06')", (T,))
        r = c.execute("SELECT _wh.unschedule_refresh(%s, tenant_name => 'p06')", (T,)).fetchone()[0]
        assert r["details"]["still_in_pool"] is False, r
        assert c.execute("SELECT count(*) FROM _wh.pool_items").fetchone()[0] == 0


def test_tenant_jobs_move_into_the_pool_as_the_upgrade_moves_them(pool):
    """The upgrade's step (sql/upgrade/0.11.0--0.12.0.tail.sql, run here as the superuser
    runs it): a tenant job of a fixed period becomes the tenant's own period in the pool,
    due when the job would have fired next, its job gone, and the pool's workers made as the
    job's owner; a job of uneven times stays a job."""
    env, _ = pool
    with env.wh_admin() as c:
        for j in c.execute("SELECT jobid FROM _wh.jobs WHERE jobname LIKE 'wh:pool:%%'").fetchall():
            c.execute("SELECT _wh._cron_unschedule(%s)", j)
        c.execute("SELECT _wh.schedule_tenant(%s, 'tenant_a', '10 */4 * * *', stagger => false)", (T,))
        c.execute("SELECT _wh.schedule_tenant(%s, 'tenant_b', '0 9 * * 1-5', stagger => false)", (T,))
        c.execute("SELECT _wh.schedule_tenant(%s, 'tenant_c', '@hourly')", (T,))
        stopped = c.execute("SELECT jobid FROM _wh.jobs WHERE jobname = %s", (f"wh:{T}:tenant_c",)).fetchone()[0]
        c.execute("SELECT _wh._cron_set_active(%s, false)", (stopped,))
        owner = c.execute("SELECT session_user").fetchone()[0]
    tail = (harness.ROOT / "sql/upgrade/0.11.0--0.12.0.tail.sql").read_text()
    block = re.search(r"DO \$adopt\$.*?\$adopt\$;", tail, re.S).group(0).replace("@extschema@", "_wh")
    with env.wh_super() as s:
        notices = []
        s.add_notice_handler(lambda n: notices.append(n.message_primary))
        s.execute(block)
        assert any("1 tenant job(s) moved into the refresh pool, 2 kept" in n for n in notices), notices
    try:
        with env.wh_admin() as c:
            jobs = dict(c.execute("SELECT jobname, username FROM _wh.jobs WHERE jobname LIKE 'wh:%%'").fetchall())
            assert f"wh:{T}:tenant_a" not in jobs and jobs[f"wh:{T}:tenant_b"] == jobs[f"wh:{T}:tenant_c"] == owner, jobs
            # The stopped job stays a job, stopped.
            assert c.execute("SELECT active FROM _wh.jobs WHERE jobid = %s", (stopped,)).fetchone() == (False,)
            assert [jobs[f"wh:pool:{k}"] for k in range(1, 5)] == [owner] * 4, jobs
            every, due = c.execute("SELECT every, next_due FROM _wh.pool_items WHERE tenant_name = 'tenant_a'").fetchone()
            due = due.astimezone(dt.timezone.utc)
            assert every == dt.timedelta(hours=4) and due.minute == 10 and due.hour % 4 == 0 and due.second == 0, due
            assert c.execute("SELECT count(*) FROM _wh.pool_items WHERE tenant_name = 'tenant_b'").fetchone()[0] == 0
            # The moved job's meaning holds after the move: unscheduling the tenant takes it out.
            r = c.execute("SELECT _wh.unschedule_tenant(NULL, 'tenant_a')").fetchone()[0]
            assert r["details"]["jobs"] == [f"pool:{T}:tenant_a"], r
    finally:
        with env.wh_admin() as c:
            c.execute("SELECT _wh.unschedule_tenant(NULL, 'tenant_b')")
            c.execute("SELECT _wh.unschedule_tenant(NULL, 'tenant_c')")


def test_pg_cron_runs_the_workers(pool):
    """The workers as pg_cron runs them (every minute, as the operator who scheduled):
    within two minutes every tenant is refreshed once, and _wh.pool_workers names them."""
    env, _ = pool
    fresh_cycle(env)
    with env.wh_admin() as c:
        for (jobid,) in c.execute("SELECT jobid FROM _wh.jobs WHERE jobname LIKE 'wh:pool:%%'").fetchall():
            c.execute("SELECT _wh._cron_set_active(%s, true)", (jobid,))
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            if c.execute("SELECT count(*) FROM _wh.pool_items WHERE template_name = %s AND refreshes > 0", (T,)).fetchone()[0] == 12:
                break
            time.sleep(2)
        stop_workers(c)
        assert items(c) == {t: (1, "succeeded") for t in tenants()}
        workers = c.execute("SELECT worker, refreshed_last_hour FROM _wh.pool_workers ORDER BY 1").fetchall()
        assert [w for w, _ in workers] == [f"wh:pool:{k}" for k in range(1, 5)] and sum(n for _, n in workers) == 12, workers


def test_a_thousand_worker_runs_give_back_every_descriptor(pool):
    """One worker session runs CALL _wh.run_pool(1) a thousand times, every tenth with a
    tenant due (a real refresh over SSL + scram), the rest with nothing due: its open
    descriptors end where they were, its memory within 16 MB, and no wh connection is left
    on the source."""
    env, _ = pool
    quick = "pool_fd"
    with env.wh_admin() as c:
        harness.register_template(c, quick)
        c.execute("SELECT _wh.schedule_refresh(%s, '1 hour')", (quick,))
        stop_workers(c)
    with env.wh_super() as s:
        s.execute("UPDATE _wh.pool_items SET next_due = now() + interval '1 day' WHERE template_name = %s", (T,))
    due = "UPDATE _wh.pool_items SET next_due = now() - interval '1 second' WHERE template_name = %s AND tenant_name = 'tenant_a'"
    try:
        with env.wh_admin() as w, env.wh_super() as s:
            pid = w.execute("SELECT pg_backend_pid()").fetchone()[0]
            w.execute("CALL _wh.run_pool(1)")  # every tenant's first refresh of the template
            s.execute(due, (quick,))
            w.execute("CALL _wh.run_pool(1)")
            fds, rss = harness.backend_descriptors(pid), harness.backend_rss_kb(pid)
            before = w.execute("SELECT refreshes FROM _wh.pool_items WHERE template_name = %s AND tenant_name = 'tenant_a'",
                               (quick,)).fetchone()[0]
            for i in range(1000):
                if i % 10 == 0:
                    s.execute(due, (quick,))
                w.execute("CALL _wh.run_pool(1)")
            assert w.execute("SELECT refreshes FROM _wh.pool_items WHERE template_name = %s AND tenant_name = 'tenant_a'",
                             (quick,)).fetchone()[0] == before + 100
            assert harness.backend_descriptors(pid) == fds, (fds, harness.backend_descriptors(pid))
            assert harness.backend_rss_kb(pid) - rss < 16 * 1024, (rss, harness.backend_rss_kb(pid))
        with env.source_super("tenant_a") as src:
            assert src.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'wh'").fetchone()[0] == 0
    finally:
        with env.wh_admin() as c:
            c.execute("SELECT _wh.unschedule_refresh(%s)", (quick,))
            c.execute("SELECT _wh.drop_template(%s)", (quick,))
