"""Storage v2 at the scale users have: 20 tenants x a year of days in one table per
template, read by BI tools under PostgreSQL's default lock settings.

- every query shape BI tools send (now(), to_timestamp, CURRENT_TIMESTAMP bounds, a year,
  one tenant) runs with 20 concurrent clients and no error, locking few relations;
- a reader is never made to wait by a refresh, a backfill or a rebuild, even while a slow
  dashboard query holds the very tenant being refreshed; a fold makes readers wait at
  most a short, bounded moment (its swap);
- concurrent refreshes of different days and tenants never deadlock;
- a tenant-scoped reader sees only its tenant through every path and query shape.

The 20 tenants are registered over the three source databases (t01 reads tenant_a,
t02 tenant_b, ...), so each has real rows over real dblink."""

import datetime as dt
import threading
import time

import psycopg
import pytest

import harness

DAYS = 366
# The warehouse's today when the module's data is seeded (see `bi`), and the first day.
TODAY = FIRST = None
ROWS = 4
T = "bi"
TENANTS = [f"t{i:02d}" for i in range(1, 21)]
SOURCE = {t: harness.TENANTS[i % 3] for i, t in enumerate(TENANTS)}

# What BI tools send (DESIGN §7): Metabase now(), Superset TO_TIMESTAMP, Looker CURRENT_TIMESTAMP.
def shapes(today):
    return {
        "constant_30d": f"SELECT store, count(*), sum(weight) FROM public.{T} "
                        f"WHERE logged_time >= '{today - dt.timedelta(days=30)}' AND logged_time < '{today + dt.timedelta(days=1)}' GROUP BY 1",
        "now_30d": f"SELECT store, count(*), sum(weight) FROM public.{T} WHERE logged_time >= now() - interval '30 days' GROUP BY 1",
        "to_timestamp_7d": f"SELECT date_trunc('day', logged_time), count(*) FROM public.{T} "
                           f"WHERE logged_time >= TO_TIMESTAMP('{today - dt.timedelta(days=7)} 00:00:00', 'YYYY-MM-DD HH24:MI:SS') "
                           f"AND logged_time < TO_TIMESTAMP('{today + dt.timedelta(days=1)} 00:00:00', 'YYYY-MM-DD HH24:MI:SS') GROUP BY 1",
        "current_timestamp_30d": f"SELECT schema_name, count(*) FROM public.{T} "
                                 f"WHERE logged_time >= CURRENT_TIMESTAMP - INTERVAL '30 day' AND logged_time < CURRENT_TIMESTAMP GROUP BY 1",
        "year": f"SELECT schema_name, date_trunc('month', logged_time), sum(weight) FROM public.{T} "
                f"WHERE logged_time >= now() - interval '365 days' GROUP BY 1, 2",
        "one_tenant_30d": f"SELECT store, count(*) FROM public.{T} WHERE schema_name = 't07' AND logged_time >= now() - interval '30 days' GROUP BY 1",
        "one_tenant_view_30d": f"SELECT store, count(*) FROM t07.{T} WHERE logged_time >= now() - interval '30 days' GROUP BY 1",
    }


@pytest.fixture(scope="module")
def bi(env):
    global TODAY, FIRST
    with env.wh_admin() as c:
        TODAY = harness.server_today(c)
    FIRST = TODAY - dt.timedelta(days=DAYS - 1)
    harness.seed(env, FIRST.isoformat(), DAYS, ROWS)
    with env.wh_admin() as c:
        for t in TENANTS:
            user, password = env.tenant_login(SOURCE[t])
            c.execute(
                "SELECT _wh.set_tenant_connection(%s, '127.0.0.1', %s, %s, %s, %s)",
                (t, env.source.port, SOURCE[t], user, password),
            )
        harness.register_template(c, T)
        for t in TENANTS:
            c.execute("CALL _wh.backfill(%s, %s, %s, %s)", (T, t, FIRST, TODAY))
        assert c.execute("SELECT count(DISTINCT schema_name) FROM public.bi").fetchone()[0] == 20
    yield env
    # The modules that follow share this warehouse and count its tenants.
    with env.wh_admin() as c:
        for t in TENANTS:
            c.execute("SELECT _wh.remove_tenant(%s, drop_data => true)", (t,))


def expected_rows(tenant, days=DAYS):
    return days * (ROWS + 7 * harness.TENANTS.index(SOURCE[tenant]))


def test_every_bi_query_shape_runs_under_default_lock_settings(bi):
    with bi.wh_reader() as r:
        assert r.execute("SHOW max_locks_per_transaction").fetchone()[0] == "64"
        total = r.execute(f"SELECT count(*) FROM public.{T}").fetchone()[0]
        assert total == sum(expected_rows(t) for t in TENANTS)
        for name, sql in shapes(TODAY).items():
            with r.transaction():
                rows = r.execute(sql).fetchall()
                locks = r.execute("SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'relation'").fetchone()[0]
            assert rows, name
            # A year of months with their indexes: tens of locks, not thousands.
            assert locks < 100, (name, locks)
        n = r.execute(f"SELECT count(*) FROM t07.{T}").fetchone()[0]
        assert n == expected_rows("t07")


def test_twenty_clients_run_every_shape_with_no_error(bi):
    script = "".join(sql + ";\n" for sql in shapes(TODAY).values())
    rc, _, failed, out = harness.pgbench(bi, script, seconds=6)
    assert rc == 0 and "aborted" not in out and "out of shared memory" not in out, out
    assert failed in (0, None), out


class LockWatch:
    """Samples pg_stat_activity every 20 ms: which sessions of `users` wait on a lock, and
    for how long in a row."""

    def __init__(self, env, users, connect=None):
        """`connect`: where to sample (default the warehouse, as its superuser; a Citus
        worker's connection on the distributed tier)."""
        self.env, self.users = env, users
        self._connect = connect or env.wh_super
        self.waits = {}  # pid -> longest run of consecutive lock-wait samples
        self.seen = []   # (pid, user, wait_event, query, when, blockers) of every wait sampled
        self.samples = 0
        self._run = {}
        self._stop = threading.Event()
        self._th = threading.Thread(target=self._loop)

    def _loop(self):
        with self._connect() as s:
            while not self._stop.is_set():
                # Who waits, and (for the report) what the session it waits for is running.
                rows = s.execute(
                    "SELECT a.pid, a.usename::text, a.wait_event, left(a.query, 120), clock_timestamp(), "
                    "(SELECT string_agg(b.backend_type || ' ' || coalesce(b.usename, '') || ': ' || left(b.query, 200), ' | ') "
                    " FROM pg_stat_activity b "
                    " WHERE b.pid = ANY (pg_blocking_pids(a.pid))) FROM pg_stat_activity a "
                    "WHERE a.usename = ANY (%s) AND a.wait_event_type = 'Lock'", (self.users,)
                ).fetchall()
                self.seen.extend(rows)
                waiting = {r[0] for r in rows}
                self.samples += 1
                for pid in waiting:
                    self._run[pid] = self._run.get(pid, 0) + 1
                    self.waits[pid] = max(self.waits.get(pid, 0), self._run[pid])
                for pid in list(self._run):
                    if pid not in waiting:
                        del self._run[pid]
                time.sleep(0.02)

    def __enter__(self):
        self._th.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._th.join()

    def longest_ms(self):
        return 20 * max(self.waits.values(), default=0)


def readers_loop(env, stop, errors, counts, sql):
    with env.wh_reader() as r:
        while not stop.is_set():
            try:
                counts.append(r.execute(sql).fetchone()[0])
            except psycopg.Error as e:
                errors.append(repr(e))


def test_readers_never_wait_on_refresh_backfill_or_rebuild(bi):
    """A dashboard's open transaction holds tenant t01's rows while t01 is refreshed,
    backfilled and rebuilt; short readers of other tenants loop. No reader waits on a
    lock, and wh's calls never wait behind the readers (a relation lock)."""
    stop = threading.Event()
    errors, counts = [], []
    short = f"SELECT count(*) FROM public.{T} WHERE schema_name = 't02' AND logged_time >= now() - interval '30 days'"
    threads = [threading.Thread(target=readers_loop, args=(bi, stop, errors, counts, short)) for _ in range(4)]
    # A dashboard in the middle of its transaction: it has read t01 and holds its locks
    # until it ends, which is only after every wh call below has returned.
    dashboard = bi.wh_reader(autocommit=False)
    held = dashboard.execute(
        f"SELECT count(*) FROM public.{T} WHERE schema_name = 't01' AND logged_time >= now() - interval '90 days'"
    ).fetchone()[0]
    with LockWatch(bi, ["phood_ro", "whadmin"]) as watch:
        for th in threads:
            th.start()
        time.sleep(0.5)
        try:
            with bi.wh_admin() as c:
                # Were wh to wait for the dashboard, this would fail instead of hanging.
                c.execute("SET statement_timeout = '120s'")
                r = c.execute("SELECT _wh.update_mv_window(%s, 't01', %s, %s, force_recreate => true)",
                              (T, TODAY - dt.timedelta(days=9), TODAY)).fetchone()[0]
                assert r["status"] == "succeeded", r
                c.execute("CALL _wh.backfill(%s, 't01', %s, %s, force_recreate => true)", (T, TODAY - dt.timedelta(days=40), TODAY))
                r = c.execute("SELECT _wh.rebuild_entire_warehouse(tenant_name => 't01', template_name => %s)", (T,)).fetchone()[0]
                assert r["status"] == "succeeded" and r["failed"] == 0
                r = c.execute("SELECT _wh.update_all_tenants(%s)", (T,)).fetchone()[0]
                assert r["failed"] == 0, r
            # The dashboard's transaction is still open, its first answer unchanged inside it.
            assert dashboard.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
            assert dashboard.execute(
                f"SELECT count(*) FROM public.{T} WHERE schema_name = 't01' AND logged_time >= now() - interval '90 days'"
            ).fetchone()[0] >= 0 and held > 0
        finally:
            dashboard.rollback()
            dashboard.close()
            stop.set()
            for th in threads:
                th.join()
    assert errors == [] and len(counts) > 20
    assert len(set(counts)) == 1
    assert watch.samples > 10
    # PostgreSQL's own autovacuum may hold a table for a moment (truncating empty pages at
    # its end after the deletes of force refreshes): that is not wh. Any other blocker, or
    # one that could not be seen, counts.
    def autovacuum_only(blockers):
        return bool(blockers) and all(b.startswith("autovacuum worker") for b in blockers.split(" | "))

    readers = [w for w in watch.seen if w[1] == "phood_ro" and not autovacuum_only(w[5])]
    assert readers == [], f"readers waited on locks: {readers}"
    behind_readers = [w for w in watch.seen if w[1] == "whadmin" and w[2] == "relation"]
    assert behind_readers == [], f"wh waited on a relation lock: {behind_readers}"


def test_a_fold_makes_readers_wait_only_for_its_swap(bi):
    year = TODAY.year - 1
    stop = threading.Event()
    errors, counts = [], []
    q = f"SELECT count(*) FROM public.{T} WHERE logged_time < '{year + 1}-01-01'"
    threads = [threading.Thread(target=readers_loop, args=(bi, stop, errors, counts, q)) for _ in range(4)]
    with LockWatch(bi, ["phood_ro"]) as watch:
        for th in threads:
            th.start()
        time.sleep(0.3)
        try:
            with bi.wh_admin() as c:
                r = c.execute("SELECT _wh.create_combined_table_by_year(%s, NULL, %s)", (T, year)).fetchone()[0]
            time.sleep(0.3)
        finally:
            stop.set()
            for th in threads:
                th.join()
    assert r["status"] == "succeeded", r
    with bi.wh_admin() as c:
        # Every tenant-day of the year in the registry (whatever ran before: a fan-out on
        # 1 January builds last year's 31 December for every tenant) is in the fold.
        days = c.execute(
            "SELECT count(*) FROM _wh.slices WHERE template_name = %s AND kind = 'day' AND range_start BETWEEN %s AND %s",
            (T, dt.date(year, 1, 1), dt.date(year, 12, 31)),
        ).fetchone()[0]
        in_year = c.execute(f"SELECT count(*) FROM _wh_data.{T}_{year}").fetchone()[0]
        # The year's indexes are named for it, not for the table it was built as aside.
        index_names = [n for (n,) in c.execute(
            "SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = %s::regclass",
            (f"_wh_data.{T}_{year}",))]
        assert index_names and all(n.startswith(f"_wh_data.{T}_{year}_") and "_new" not in n
                                   for n in index_names), index_names
        started = c.execute(
            "SELECT started_at FROM _wh.run_log WHERE operation = 'create_combined_table_by_year' AND template_name = %s "
            "ORDER BY run_id DESC LIMIT 1", (T,)
        ).fetchone()[0]
    v = r["details"]["validation"]
    assert v["tenant_days"] == days >= 20 and v["rows_in_year"] == v["rows_in_days"] == in_year, v
    assert errors == [] and len(set(counts)) == 1
    # Readers wait on the fold only in its swap (lock attempts bounded by wh's lock_timeout,
    # then the DDL): never during the copy, verify, index build or analyze before it, which
    # had all ended by `started` plus their durations (the server's clock on both sides).
    phases = r["details"]["phase_ms"]
    before_swap = sum(phases[p] for p in ("lock", "copy", "verify", "indexes", "analyze"))
    swap_at = started + dt.timedelta(milliseconds=before_swap)
    early = [w for w in watch.seen if w[4] < swap_at]
    assert early == [], (early, phases, started)


def test_concurrent_refreshes_never_deadlock(bi):
    with bi.wh_super() as s:
        deadlocks_before = s.execute("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()").fetchone()[0]
    results, errors = [], []
    barrier = threading.Barrier(20)

    def same_tenant(i):
        day = TODAY - dt.timedelta(days=i)
        with bi.wh_admin() as c:
            barrier.wait()
            for _ in range(3):
                try:
                    results.append(c.execute("SELECT _wh.update_mv_window(%s, 't03', %s, %s, force_recreate => true)",
                                             (T, day - dt.timedelta(days=1), day)).fetchone()[0])
                except psycopg.Error as e:
                    errors.append(repr(e))

    def other_tenants(i):
        with bi.wh_admin() as c:
            barrier.wait()
            for _ in range(3):
                try:
                    results.append(c.execute("SELECT _wh.update_mv_by_template(%s, %s)", (T, TENANTS[i])).fetchone()[0])
                except psycopg.Error as e:
                    errors.append(repr(e))

    threads = [threading.Thread(target=same_tenant, args=(i,)) for i in range(10)]
    threads += [threading.Thread(target=other_tenants, args=(i,)) for i in range(10, 20)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    per_day = [x for r in results for x in r["results"]]
    assert {x["status"] for x in per_day} <= {"succeeded", "skipped"}
    assert all(x["details"]["reason"] == "busy" for x in per_day if x["status"] == "skipped")
    assert sum(x["status"] == "succeeded" for x in per_day) >= 30
    with bi.wh_super() as s:
        assert s.execute("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()").fetchone()[0] == deadlocks_before
        assert s.execute("SELECT count(*) FROM _wh.run_log WHERE sqlstate = '40P01'").fetchone()[0] == 0
    with bi.wh_reader() as r:
        assert r.execute(f"SELECT count(*) FROM t03.{T}").fetchone()[0] == expected_rows("t03")


def test_tenant_scoped_reader_sees_only_its_tenant_through_every_shape(bi):
    with bi.wh_super() as s:
        s.execute("DROP ROLE IF EXISTS t07_ro")
        s.execute("CREATE ROLE t07_ro LOGIN PASSWORD 't07-pw'")
    with bi.wh_admin() as c:
        c.execute("SELECT _wh.grant_tenant_reader('t07_ro', 't07')")
        c.execute("SELECT _wh.update_public_view(%s)", (T,))  # partitions made ahead keep the policy
    with psycopg.connect(bi.warehouse.tcp_dsn(bi.warehouse_db, "t07_ro", "t07-pw"), autocommit=True) as a, bi.wh_reader() as r:
        # public.<template> is the all-tenant readers' (owner's rights, no row-level security).
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            a.execute(f"SELECT count(*) FROM public.{T}")
        assert a.execute(f"SELECT count(*) FROM t07.{T}").fetchone()[0] == expected_rows("t07")
        for name, sql in shapes(TODAY).items():
            if "schema_name" in sql:
                continue
            mine = a.execute(sql.replace(f"public.{T}", f"t07.{T}")).fetchall()
            theirs = r.execute(sql.replace(f"public.{T} WHERE", f"public.{T} WHERE schema_name = 't07' AND")).fetchall()
            assert sorted(mine) == sorted(theirs) and mine, name
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            a.execute(f"SELECT count(*) FROM t08.{T}")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            a.execute("SELECT count(*) FROM _wh_data.bi_%s_%02d" % (TODAY.year, TODAY.month))
    with bi.wh_admin() as c:
        c.execute("SELECT _wh.revoke_tenant_reader('t07_ro', 't07')")
        assert c.execute("SELECT count(*) FROM pg_policy WHERE polname = 'wh:t07'").fetchone()[0] == 0
