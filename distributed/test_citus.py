"""wh on a Citus 13.2 cluster (a coordinator and two workers), tenants' sources over SSL +
scram: a template distributed by tenant with `_wh.distribute`, then backfill, refresh,
verify and repair, a fold of a finished year and the BI login's reads, every tenant-day
equal to its source; one tenant's query runs on one worker; no row stays on the
coordinator."""

import datetime as dt
import subprocess
import threading
import time

import psycopg
import pytest

import harness
from cluster import drop_database, wire_database
from test_storage import LockWatch, readers_loop

T = "foodlogstats"
YEAR = 2023
FIRST = dt.date(YEAR, 11, 1)
LAST = dt.date(YEAR, 12, 31)
DAYS = (LAST - FIRST).days + 1
ROWS = 20


figures_by_day = harness.figures_by_day


def source_by_day(env, tenant):
    with env.source_super(tenant) as s:
        return figures_by_day(s, "phood_foodlogsum", f"WHERE logged_time >= '{FIRST}' AND logged_time < '{LAST + dt.timedelta(days=1)}'")


def assert_equal_to_sources(env, conn):
    """Every registered day of the seeded span equals its source (days the pool built since,
    today's, hold what the sources hold: nothing)."""
    for t in harness.TENANTS:
        days = {d for (d,) in conn.execute(
            "SELECT range_start FROM _wh.slices WHERE template_name = %s AND tenant_name = %s AND kind = 'day' "
            "AND range_start BETWEEN %s AND %s", (T, t, FIRST, LAST))}
        source = source_by_day(env, t)
        span = f"WHERE logged_time >= '{FIRST}' AND logged_time < '{LAST + dt.timedelta(days=1)}'"
        assert figures_by_day(conn, f"{t}.{T}", span) == {d: source[d] for d in sorted(days) if d in source}, t


@pytest.fixture(scope="module")
def dist(citus):
    harness.seed(citus, FIRST.isoformat(), DAYS, ROWS)
    with citus.wh_admin() as c:
        harness.register_tenants(citus, c)
        harness.register_template(c, T)
        # Some days before the table is distributed: distribute moves them into the shards.
        for t in harness.TENANTS:
            c.execute("SELECT _wh.update_mv_window(%s, %s, %s, %s)", (T, t, FIRST, FIRST + dt.timedelta(days=4)))
    return citus


def test_distribute_refuses_without_what_it_needs(dist):
    with dist.wh_admin() as c:
        with pytest.raises(psycopg.Error, match="unknown template|does not exist") as e:
            c.execute("SELECT _wh.distribute('nothing')")
        assert e.value.sqlstate == "42704"
        c.execute(f"CREATE UNIQUE INDEX foodlogstats_by_id ON _wh_data.{T} (id, logged_time)")
        with pytest.raises(psycopg.Error, match="foodlogstats_by_id") as e:
            c.execute("SELECT _wh.distribute(%s)", (T,))
        assert e.value.sqlstate == "22023"
        c.execute("DROP INDEX _wh_data.foodlogstats_by_id")


def test_distribute_moves_the_rows_into_shards_colocated(dist):
    with dist.wh_admin() as c:
        before = {t: figures_by_day(c, f"{t}.{T}") for t in harness.TENANTS}
        r = c.execute("SELECT _wh.distribute(%s, 4)", (T,)).fetchone()[0]
        assert r["status"] == "succeeded", r
        r = c.execute("SELECT _wh.distribute(%s, 4)", (T,)).fetchone()[0]
        assert r["status"] == "skipped" and r["details"]["reason"] == "already distributed", r
        assert {t: figures_by_day(c, f"{t}.{T}") for t in harness.TENANTS} == before
    with dist.wh_super() as s:
        assert s.execute("SELECT count(*) FROM pg_dist_partition WHERE logicalrelid = %s::regclass",
                         (f"_wh_data.{T}",)).fetchone()[0] == 1
        # No row left on the coordinator: its tables are empty shells.
        assert s.execute("SELECT coalesce(sum(pg_relation_size(c.oid)), 0) FROM pg_class c "
                         "WHERE c.relnamespace = '_wh_data'::regnamespace AND c.relkind = 'r'").fetchone()[0] == 0
        assert_coordinator_only(s)


def test_backfill_refresh_and_reads_on_the_cluster(dist):
    with dist.wh_admin() as c:
        for t in harness.TENANTS:
            c.execute("CALL _wh.backfill(%s, %s, %s, %s)", (T, t, FIRST, LAST))
        assert_equal_to_sources(dist, c)
    day = dt.date(YEAR, 12, 10)
    with dist.source_super("tenant_b") as s:
        s.execute("UPDATE phood_foodlogsum SET weight = weight + 1 WHERE logged_time >= %s::date AND logged_time < %s::date + 1", (day, day))
    with dist.wh_admin() as c:
        r = c.execute("SELECT _wh.refresh_mv(%s, 'tenant_b', %s)", (T, day)).fetchone()[0]
        assert r["status"] == "succeeded" and r["details"]["action"] == "refreshed", r
        assert_equal_to_sources(dist, c)
    with dist.wh_reader() as r:
        for t in harness.TENANTS:
            assert figures_by_day(r, f"public.{T}", f"WHERE schema_name = '{t}'") == source_by_day(dist, t)
        plan = "\n".join(x for (x,) in r.execute(
            f"EXPLAIN SELECT store, count(*) FROM public.{T} WHERE schema_name = 'tenant_a' "
            f"AND logged_time >= '{day}' GROUP BY 1").fetchall())
        assert "Task Count: 1" in plan, plan


def test_verify_and_repair_on_the_cluster(dist):
    day = dt.date(YEAR, 11, 20)
    with dist.source_super("tenant_c") as s:
        s.execute("DELETE FROM phood_foodlogsum WHERE id = (SELECT max(id) FROM phood_foodlogsum "
                  "WHERE logged_time >= %s AND logged_time < %s::date + 1)", (day, day))
    with dist.wh_admin() as c:
        r = c.execute("SELECT _wh.verify(%s, 'tenant_c', %s, %s, repair => true)", (T, FIRST, LAST)).fetchone()[0]
        assert r["details"]["repaired"] == [day.isoformat()], r
        assert_equal_to_sources(dist, c)


def test_a_fold_on_the_cluster(dist):
    with dist.wh_admin() as c:
        before = {t: figures_by_day(c, f"{t}.{T}") for t in harness.TENANTS}
        r = c.execute("SELECT _wh.create_combined_table_by_year(%s, NULL, %s)", (T, YEAR)).fetchone()[0]
        assert r["status"] == "succeeded", r
        assert [n for _, n in harness.partitions(c, T) if n.startswith(f"{T}_{YEAR}")] == [f"{T}_{YEAR}"]
        assert {t: figures_by_day(c, f"{t}.{T}") for t in harness.TENANTS} == before
    with dist.wh_super() as s:
        # The year was built aside distributed and colocated: sharded, nothing local.
        assert s.execute("SELECT count(*) FROM pg_dist_partition WHERE logicalrelid = %s::regclass",
                         (f"_wh_data.{T}_{YEAR}",)).fetchone()[0] == 1
        assert s.execute("SELECT pg_relation_size(%s::regclass)", (f"_wh_data.{T}_{YEAR}",)).fetchone()[0] == 0


def test_a_rollup_distributed_beside_its_base(dist):
    rollup = "foodlog_daily"
    with dist.wh_admin() as c:
        c.execute("SELECT _wh.set_rollup(%s, %s, %s, %s)",
                  (rollup, T, "store, date_trunc('hour', logged_time) AS hour, count(*) AS n, sum(weight) AS weight",
                   "store, date_trunc('hour', logged_time)"))
        # Distributed when set (the warehouse is), colocated with its base.
        r = c.execute("SELECT _wh.distribute(%s)", (rollup,)).fetchone()[0]
        assert r["status"] == "skipped" and r["details"]["reason"] == "already distributed", r
        c.execute("CALL _wh.build_rollup(%s)", (rollup,))
        for t in harness.TENANTS:
            want = c.execute(f"SELECT count(*), sum(weight) FROM {t}.{T}").fetchone()
            got = c.execute(f"SELECT sum(n), sum(weight) FROM {t}.{rollup}").fetchone()
            assert got == want, t
        # A base day refreshed keeps its rollup day in the same transaction, on the cluster.
        day = dt.date(YEAR, 12, 11)
        with dist.source_super("tenant_a") as s:
            s.execute("UPDATE phood_foodlogsum SET weight = weight + 2 WHERE logged_time >= %s::date AND logged_time < %s::date + 1", (day, day))
        r = c.execute("SELECT _wh.refresh_mv(%s, 'tenant_a', %s)", (T, day)).fetchone()[0]
        assert r["status"] == "succeeded", r
        assert c.execute(f"SELECT sum(weight) FROM tenant_a.{rollup} WHERE hour >= %s AND hour < %s::date + 1", (day, day)).fetchone()[0] == \
            c.execute(f"SELECT sum(weight) FROM tenant_a.{T} WHERE logged_time >= %s AND logged_time < %s::date + 1", (day, day)).fetchone()[0]
    with dist.wh_super() as s:
        groups = s.execute("SELECT count(DISTINCT colocationid) FROM pg_dist_partition WHERE logicalrelid IN (%s::regclass, %s::regclass)",
                           (f"_wh_data.{T}", f"_wh_data.{rollup}")).fetchone()[0]
        assert groups == 1


def assert_coordinator_only(s):
    """Tenant schemas, views and foreign servers live on the coordinator only."""
    for what in ("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'tenant%'",
                 "SELECT count(*) FROM pg_foreign_server WHERE srvname LIKE 'wh_tenant%'",
                 "SELECT count(*) FROM pg_views WHERE viewname = 'foodlogstats'"):
        got = s.execute(f"SELECT result FROM run_command_on_workers($${what}$$)").fetchall()
        assert got == [("0",), ("0",)], (what, got)


def test_rename_retention_and_monitoring_on_the_cluster(dist):
    with dist.wh_admin() as c:
        before = figures_by_day(c, f"tenant_c.{T}")
        for old, new in (("tenant_c", "tenant_cc"), ("tenant_cc", "tenant_c")):
            r = c.execute("SELECT _wh.rename_tenant(%s, %s)", (old, new)).fetchone()[0]
            assert r["status"] == "succeeded", r
            assert figures_by_day(c, f"{new}.{T}") == before
        cut = dt.date(YEAR, 11, 10)
        r = c.execute("SELECT _wh.apply_retention(%s, 'tenant_c', %s)", (T, cut)).fetchone()[0]
        assert r["status"] == "succeeded" and r["details"]["rows_deleted"] > 0, r
        assert min(figures_by_day(c, f"tenant_c.{T}")) == cut
        assert_equal_to_sources(dist, c)
        with dist.wh_super() as s:
            assert_coordinator_only(s)
        h = c.execute("SELECT _wh.health()").fetchone()[0]
        assert h["status"] == "ok", h
        assert c.execute("SELECT count(*) FROM _wh.freshness WHERE template_name = %s AND NOT stale", (T,)).fetchone()[0] >= 0


def test_the_pool_and_its_pg_cron_jobs_on_the_coordinator(dist):
    """schedule_refresh makes the pool's pg_cron jobs on the coordinator; a worker's cycle
    (CALL _wh.run_pool, what each job runs) refreshes every due tenant on the cluster."""
    day = dt.date(YEAR, 12, 20)
    with dist.source_super("tenant_a") as s:
        s.execute("UPDATE phood_foodlogsum SET weight = weight + 3 WHERE logged_time >= %s::date AND logged_time < %s::date + 1", (day, day))
    with dist.wh_admin() as c:
        r = c.execute("SELECT _wh.schedule_refresh(%s, '1 hour')", (T,)).fetchone()[0]
        assert r["status"] == "succeeded", r
        jobs = [j for (j,) in c.execute("SELECT jobname FROM _wh.jobs WHERE jobname LIKE 'wh:pool:%%'").fetchall()]
        assert jobs, "no pool job in pg_cron"
        for (jobid,) in c.execute("SELECT jobid FROM _wh.jobs WHERE jobname LIKE 'wh:pool:%%'").fetchall():
            c.execute("SELECT _wh._cron_set_active(%s, false)", (jobid,))
    with dist.wh_super() as s:
        s.execute("UPDATE _wh.pool_items SET next_due = now() - interval '1 second' WHERE template_name = %s", (T,))
        # pg_cron lives on the coordinator only.
        assert s.execute("SELECT result FROM run_command_on_workers($$SELECT count(*) FROM pg_extension WHERE extname = 'pg_cron'$$)").fetchall() == [("0",), ("0",)]
    with dist.wh_admin() as c:
        c.execute("CALL _wh.run_pool(1)")
        got = dict(c.execute("SELECT tenant_name, last_status FROM _wh.pool_items WHERE template_name = %s", (T,)).fetchall())
        assert got == {t: "succeeded" for t in harness.TENANTS}, got
        # The pool refreshes each tenant's recent days (lookback), not this fixed past day:
        # refreshed here by hand, then every tenant-day equals its source.
        c.execute("SELECT _wh.refresh_mv(%s, 'tenant_a', %s)", (T, day))
        assert_equal_to_sources(dist, c)
        c.execute("SELECT _wh.unschedule_refresh(%s)", (T,))


def test_readers_never_wait_on_wh_on_any_node(dist):
    """BI readers loop on the coordinator (one tenant's rows, every tenant's) while wh
    refreshes a changed day, backfills and verifies with repair: lock waits sampled on the
    coordinator and on both workers (where the reader's shard queries run as the reader)."""
    day = dt.date(YEAR, 12, 14)
    with dist.source_super("tenant_b") as s:
        s.execute("UPDATE phood_foodlogsum SET weight = weight + 1 WHERE logged_time >= %s::date AND logged_time < %s::date + 1", (day, day))
    stop = threading.Event()
    errors, counts = [], []
    queries = [f"SELECT count(*) FROM public.{T} WHERE schema_name = 'tenant_a'",
               f"SELECT count(*) FROM public.{T} WHERE logged_time >= '{FIRST}'",
               f"SELECT count(*) FROM tenant_b.{T}"]
    threads = [threading.Thread(target=readers_loop, args=(dist, stop, errors, counts, q)) for q in queries]
    watches = [LockWatch(dist, ["phood_ro"])] + [
        LockWatch(dist, ["phood_ro"], connect=lambda w=w: w.connect("warehouse")) for w in dist.workers]
    for w in watches:
        w.__enter__()
    try:
        for th in threads:
            th.start()
        time.sleep(0.3)
        with dist.wh_admin() as c:
            r = c.execute("SELECT _wh.refresh_mv(%s, 'tenant_b', %s)", (T, day)).fetchone()[0]
            assert r["status"] == "succeeded" and r["details"]["action"] == "refreshed", r
            c.execute("CALL _wh.backfill(%s, 'tenant_c', %s, %s)", (T, FIRST, LAST))
            r = c.execute("SELECT _wh.verify(%s, 'tenant_a', %s, %s, repair => true)", (T, FIRST, LAST)).fetchone()[0]
            assert r["status"] == "succeeded", r
        time.sleep(0.3)
    finally:
        stop.set()
        for th in threads:
            th.join()
        for w in watches:
            w.__exit__(None, None, None)
    assert errors == [] and len(counts) > 30, (errors, len(counts))
    assert [w.samples > 10 for w in watches] == [True] * 3
    assert [w.seen for w in watches] == [[], [], []]
    with dist.wh_admin() as c:
        assert_equal_to_sources(dist, c)


COPY = "foodlogstats_copy"


def test_a_new_template_follows_the_distributed_warehouse(dist):
    """A template set once the warehouse is distributed is distributed at once, colocated,
    its shard count recorded; _wh.partitions and _wh.storage count its bytes on the workers."""
    days = (FIRST, FIRST + dt.timedelta(days=6))
    with dist.wh_admin() as c:
        harness.register_template(c, COPY)
        assert c.execute("SELECT template_name, distributed_shards FROM _wh.mv_templates WHERE template_name IN (%s, %s) ORDER BY 1",
                         (T, COPY)).fetchall() == [(T, 4), (COPY, 4)]
        for t in harness.TENANTS:
            r = c.execute("SELECT _wh.update_mv_window(%s, %s, %s, %s)", (COPY, t, *days)).fetchone()[0]
            assert r["status"] == "succeeded", r
            span = f"WHERE logged_time >= '{days[0]}' AND logged_time < '{days[1] + dt.timedelta(days=1)}'"
            assert figures_by_day(c, f"{t}.{COPY}", span) == figures_by_day(c, f"{t}.{T}", span), t
        parts = c.execute("SELECT partition_name, est_rows, bytes, shards FROM _wh.partitions WHERE template_name = %s "
                          "AND partition_name = %s", (COPY, f"{COPY}_{YEAR}_11")).fetchone()
        stored = c.execute("SELECT sum(est_bytes) FROM _wh.storage WHERE template_name = %s", (COPY,)).fetchone()[0]
        total = c.execute("SELECT sum(bytes) FROM _wh.partitions WHERE template_name = %s", (COPY,)).fetchone()[0]
    with dist.wh_super() as s:
        on_workers = s.execute("SELECT citus_total_relation_size(%s)", (f"_wh_data.{COPY}_{YEAR}_11",)).fetchone()[0]
        groups = s.execute("SELECT count(DISTINCT colocationid) FROM pg_dist_partition WHERE logicalrelid IN (%s::regclass, %s::regclass)",
                           (f"_wh_data.{T}", f"_wh_data.{COPY}")).fetchone()[0]
        local = s.execute("SELECT coalesce(sum(pg_relation_size(c.oid)), 0) FROM pg_class c WHERE c.relnamespace = '_wh_data'::regnamespace "
                          "AND c.relkind = 'r' AND c.relname LIKE %s", (f"{COPY}%",)).fetchone()[0]
    assert groups == 1 and local == 0
    # The coordinator's estimate means nothing for a distributed partition: NULL, not -1.
    assert parts[1] is None and parts[3] == 4 and parts[2] == on_workers > 100_000, parts
    assert abs(stored - total) <= len(harness.TENANTS), (stored, total)


def test_a_rebuild_onto_a_fresh_cluster_distributes_as_recorded(dist, tmp_path):
    """The configuration dump restored into a new database of the cluster and rebuilt from
    the sources: every template distributed again as recorded (colocated, same shard count),
    the folded year folded again and sharded, every tenant-day as before, no row local."""
    templates = (T, "foodlog_daily", COPY)
    with dist.wh_admin() as c:
        original = {(tp, t): figures_by_day(c, f"{t}.{tp}") if tp != "foodlog_daily" else
                    c.execute(f"SELECT sum(n), sum(weight) FROM {t}.{tp}").fetchone()
                    for tp in templates for t in harness.TENANTS}
        recorded = dict(c.execute("SELECT template_name, distributed_shards FROM _wh.mv_templates").fetchall())
    assert recorded == {T: 4, "foodlog_daily": 4, COPY: 4}
    dump = tmp_path / "wh_config.sql"
    subprocess.run(["pg_dump", "--data-only", "--disable-triggers", "--schema=_wh", "-f", str(dump),
                    dist.warehouse.dsn("warehouse")], check=True)
    nodes = [dist.warehouse, *dist.workers]
    db = "warehouse_dr"
    try:
        wire_database(dist, dist.warehouse, dist.workers, db)
        subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(dump), dist.warehouse.dsn(db)],
                       check=True, capture_output=True)
        with psycopg.connect(dist.warehouse.tcp_dsn(db, "whadmin", dist.admin_password), autocommit=True) as dr:
            for t in harness.TENANTS:
                row = dr.execute("SELECT host, port, dbname, username, sslmode FROM _wh.tenant_connections WHERE tenant_name = %s",
                                 (t,)).fetchone()
                dr.execute("SELECT _wh.set_tenant_connection(%s, %s, %s, %s, %s, %s, %s)",
                           (t, row[0], row[1], row[2], row[3], dist.tenant_passwords[t], row[4]))
            r = dr.execute("SELECT _wh.rebuild_entire_warehouse()").fetchone()[0]
            assert r["status"] == "succeeded" and r["failed"] == 0, {k: v for k, v in r.items() if k != "results"}
            assert [y["status"] for y in r["relations"]["years_folded"]] == ["succeeded"], r["relations"]
            for (tp, t), want in original.items():
                got = figures_by_day(dr, f"{t}.{tp}") if tp != "foodlog_daily" else \
                    dr.execute(f"SELECT sum(n), sum(weight) FROM {t}.{tp}").fetchone()
                assert got == want, (tp, t)
        with dist.warehouse.connect(db) as s:
            got = dict(s.execute("SELECT c.relname::text, p.colocationid FROM pg_dist_partition p JOIN pg_class c ON c.oid = p.logicalrelid "
                                 "WHERE c.relname = ANY (%s)", (list(templates),)).fetchall())
            assert sorted(got) == sorted(templates) and len(set(got.values())) == 1, got
            assert s.execute("SELECT shard_count FROM citus_tables WHERE table_name = %s::regclass", (f"_wh_data.{T}",)).fetchone()[0] == 4
            assert s.execute("SELECT count(*) FROM pg_dist_partition WHERE logicalrelid = %s::regclass",
                             (f"_wh_data.{T}_{YEAR}",)).fetchone()[0] == 1
            assert s.execute("SELECT coalesce(sum(pg_relation_size(c.oid)), 0) FROM pg_class c "
                             "WHERE c.relnamespace = '_wh_data'::regnamespace AND c.relkind = 'r'").fetchone()[0] == 0
    finally:
        drop_database(nodes, db)


def test_back_to_one_node_with_undistribute_table(dist):
    """Citus's undistribute_table (README's way back) brings a template's rows to the
    coordinator: wh reads it as a local table, maintenance records it as kept there (0: a
    rebuild would not distribute it again), and _wh.distribute takes it back into the
    warehouse's colocation group. Maintenance also makes a missing policy again (a table
    distributed by 0.14.0 had no scoped readers' one), in its distributed form."""
    with dist.wh_admin() as c:
        before = {t: figures_by_day(c, f"{t}.{COPY}") for t in harness.TENANTS}
        c.execute("SELECT undistribute_table(%s)", (f"_wh_data.{COPY}",))
        assert {t: figures_by_day(c, f"{t}.{COPY}") for t in harness.TENANTS} == before
        c.execute("SELECT _wh.run_maintenance()")
        # Recorded as kept on the coordinator: a rebuild would make it a local table again.
        assert c.execute("SELECT distributed_shards FROM _wh.mv_templates WHERE template_name = %s", (COPY,)).fetchone()[0] == 0
        parts = c.execute("SELECT est_rows, shards FROM _wh.partitions WHERE template_name = %s AND partition_name = %s",
                          (COPY, f"{COPY}_{YEAR}_11")).fetchone()
        assert parts[0] is not None and parts[1] is None, parts
        with pytest.raises(psycopg.Error, match="shard_count only to the first") as e:
            c.execute("SELECT _wh.distribute(%s, 8)", (COPY,))
        assert e.value.sqlstate == "22023"
        r = c.execute("SELECT _wh.distribute(%s)", (COPY,)).fetchone()[0]
        assert r["status"] == "succeeded" and r["details"]["colocated_with"] in (f"_wh_data.{T}", "_wh_data.foodlog_daily"), r
        assert {t: figures_by_day(c, f"{t}.{COPY}") for t in harness.TENANTS} == before
        assert c.execute("SELECT count(DISTINCT colocationid) FROM pg_dist_partition WHERE logicalrelid IN (%s::regclass, %s::regclass)",
                         (f"_wh_data.{T}", f"_wh_data.{COPY}")).fetchone()[0] == 1
        assert c.execute("SELECT distributed_shards FROM _wh.mv_templates WHERE template_name = %s", (COPY,)).fetchone()[0] == 4
        c.execute(f'DROP POLICY "wh:scoped" ON _wh_data.{COPY}')
        c.execute("SELECT _wh.run_maintenance()")
        assert c.execute("SELECT pg_get_expr(polqual, polrelid) FROM pg_policy WHERE polrelid = %s::regclass AND polname = 'wh:scoped'",
                         (f"_wh_data.{COPY}",)).fetchone()[0] == "(schema_name = ANY (_wh_scope.tenants_of_current_role()))"


def table_shards(dist, table):
    """Each worker's shards of `_wh_data.<table>` (qualified names), from Citus's metadata."""
    with dist.wh_super() as s:
        found = s.execute("SELECT nodeport, shard_name FROM citus_shards WHERE table_name = %s::regclass ORDER BY 2",
                          (f"_wh_data.{table}",)).fetchall()
    return {w.name: [name for port, name in found if port == w.port] for w in dist.workers}


def scoped_tenants_on_workers(dist):
    out = []
    for w in dist.workers:
        with w.connect("warehouse") as s:
            out.append(sorted(s.execute("SELECT r.rolname::text, s.tenant_name FROM _wh_scope.readers s "
                                        "JOIN pg_roles r ON r.oid = s.role_oid").fetchall()))
    return out


def test_tenant_scoped_readers_on_the_cluster(dist):
    """A tenant-scoped reader on a distributed warehouse reads its tenants' views through the
    coordinator. On the workers, the table's policy, copied onto every shard, folds the
    reader's tenants from that worker's copy of _wh_scope.readers (wh keeps it by role name):
    read there as the reader, a shard shows its tenants' rows and nothing else, the tenants
    stand in the plan as a constant (no call per row), and a revocation takes effect at the
    next statement, a prepared one included."""
    with dist.wh_super() as s:
        s.execute("CREATE ROLE scoped_bi LOGIN PASSWORD 'scoped-pw'")
        s.execute("INSERT INTO pg_dist_authinfo (nodeid, rolename, authinfo) VALUES (0, 'scoped_bi', 'password=scoped-pw')")
    with dist.wh_admin() as c:
        for t in ("tenant_a", "tenant_c"):
            r = c.execute("SELECT _wh.grant_tenant_reader('scoped_bi', %s)", (t,)).fetchone()[0]
            assert r["status"] == "succeeded", r
        want = {t: figures_by_day(c, f"{t}.{T}") for t in ("tenant_a", "tenant_c")}
    assert scoped_tenants_on_workers(dist) == [[("scoped_bi", "tenant_a"), ("scoped_bi", "tenant_c")]] * 2
    with psycopg.connect(dist.warehouse.tcp_dsn("warehouse", "scoped_bi", "scoped-pw"), autocommit=True) as r:
        for t in ("tenant_a", "tenant_c"):
            assert figures_by_day(r, f"{t}.{T}") == want[t], t
        with pytest.raises(psycopg.Error) as e:
            r.execute(f"SELECT count(*) FROM tenant_b.{T}")
        assert e.value.sqlstate == "42501"
        # A template set while scoped readers exist: distributed at once, its policy theirs too.
        with dist.wh_admin() as c:
            harness.register_template(c, "scopedcopy")
            for t in harness.TENANTS:
                c.execute("SELECT _wh.update_mv_window('scopedcopy', %s, %s, %s)", (t, FIRST, FIRST + dt.timedelta(days=2)))
            copy_a = figures_by_day(c, "tenant_a.scopedcopy")
        assert figures_by_day(r, "tenant_a.scopedcopy") == copy_a and copy_a
    shards = table_shards(dist, T)
    assert all(shards.values()), shards

    def seen_on_workers():
        """Tenants the reader sees in the table's shards (each holds its partitions' shards),
        read on the workers as the reader."""
        seen = set()
        for w in dist.workers:
            with psycopg.connect(w.tcp_dsn("warehouse", "scoped_bi", "scoped-pw"), autocommit=True) as wr:
                for shard in shards[w.name]:
                    seen |= {t for (t,) in wr.execute(f"SELECT DISTINCT schema_name FROM {shard}").fetchall()}
        return seen

    assert seen_on_workers() == {"tenant_a", "tenant_c"}
    w = dist.workers[0]
    with psycopg.connect(w.tcp_dsn("warehouse", "scoped_bi", "scoped-pw"), autocommit=True) as wr:
        shard = shards[w.name][0]
        plan = "\n".join(x for (x,) in wr.execute(f"EXPLAIN (VERBOSE) SELECT count(*) FROM {shard}").fetchall())
        assert "{tenant_a,tenant_c}" in plan and "tenants_of_current_role" not in plan, plan
        q = f"SELECT DISTINCT schema_name FROM {shard} WHERE logged_time >= %s ORDER BY 1"
        held = [t for (t,) in w.connect("warehouse").execute(q.replace("%s", f"'{FIRST}'")).fetchall()]
        for _ in range(7):  # past psycopg's prepare threshold and PostgreSQL's generic-plan one
            assert [t for (t,) in wr.execute(q, (FIRST,), prepare=True).fetchall()] == [t for t in held if t != "tenant_b"]
        with dist.wh_admin() as c:
            r2 = c.execute("SELECT _wh.revoke_tenant_reader('scoped_bi', 'tenant_c')").fetchone()[0]
            assert r2["status"] == "succeeded", r2
        assert scoped_tenants_on_workers(dist) == [[("scoped_bi", "tenant_a")]] * 2
        assert [t for (t,) in wr.execute(q, (FIRST,), prepare=True).fetchall()] == [t for t in held if t == "tenant_a"]
    assert seen_on_workers() == {"tenant_a"}
    with dist.wh_admin() as c:
        c.execute("SELECT _wh.revoke_tenant_reader('scoped_bi', 'tenant_a')")
    assert scoped_tenants_on_workers(dist) == [[], []]
    with psycopg.connect(dist.warehouse.tcp_dsn("warehouse", "scoped_bi", "scoped-pw"), autocommit=True) as r:
        with pytest.raises(psycopg.Error) as e:
            r.execute(f"SELECT count(*) FROM tenant_a.{T}")
        assert e.value.sqlstate == "42501"


def test_scoped_reader_syncs_give_back_what_they_take(dist):
    """Five hundred grants and revocations, each copying the scoped readers' tenants to both
    workers: the operator's backend holds the same descriptors after as after the first
    (Citus keeps its connections to the workers: no more of them), the workers hold no more
    sessions of wh_admin, and their copies end empty."""
    def on_workers():
        out = []
        for w in dist.workers:
            with w.connect("warehouse") as s:
                out.append(s.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = 'wh_admin'").fetchone()[0])
        return out

    with dist.wh_admin() as c:
        pid = c.execute("SELECT pg_backend_pid()").fetchone()[0]

        def cycle(n):
            for _ in range(n):
                c.execute("SELECT _wh.grant_tenant_reader('scoped_bi', 'tenant_a')")
                c.execute("SELECT _wh.revoke_tenant_reader('scoped_bi', 'tenant_a')")

        cycle(1)
        fds, sessions = harness.backend_descriptors(pid), on_workers()
        cycle(500)
        assert harness.backend_descriptors(pid) == fds, (fds, harness.backend_descriptors(pid))
        assert on_workers() == sessions, (sessions, on_workers())
    assert scoped_tenants_on_workers(dist) == [[], []]


def test_pause_and_remove_a_tenant_on_the_cluster(dist):
    """The fan-out leaves a paused tenant out and refreshes the others on the cluster; a
    tenant removed with its data leaves no row in any shard, the others untouched."""
    day = dt.date(YEAR, 12, 3)
    with dist.wh_admin() as c:
        c.execute("SELECT _wh.pause_tenant('tenant_b')")
        r = c.execute("SELECT _wh.update_all_tenants(%s, %s)", (T, day)).fetchone()[0]
        got = {x["tenant"]: x["status"] for x in r["results"]}
        assert got["tenant_b"] == "skipped" and got["tenant_a"] == got["tenant_c"] == "succeeded", got
        c.execute("SELECT _wh.resume_tenant('tenant_b')")
        others = {t: figures_by_day(c, f"{t}.{T}") for t in ("tenant_a", "tenant_c")}
        held = c.execute("SELECT sum(row_count) FROM _wh.slices WHERE tenant_name = 'tenant_b'").fetchone()[0]
        r = c.execute("SELECT _wh.remove_tenant('tenant_b', drop_data => true)").fetchone()[0]
        assert r["status"] == "succeeded" and r["details"]["rows_deleted"] == held, r
        assert c.execute(f"SELECT count(*) FROM public.{T} WHERE schema_name = 'tenant_b'").fetchone()[0] == 0
        assert {t: figures_by_day(c, f"{t}.{T}") for t in ("tenant_a", "tenant_c")} == others
    with dist.wh_super() as s:
        # Counted in every shard of the table (its partitions' with it), on the workers themselves.
        shards = table_shards(dist, T)
        for w in dist.workers:
            with w.connect("warehouse") as wc:
                assert shards[w.name], w.name
                for shard in shards[w.name]:
                    assert wc.execute(f"SELECT count(*) FROM {shard} WHERE schema_name = 'tenant_b'").fetchone()[0] == 0
        assert s.execute("SELECT to_regnamespace('tenant_b')").fetchone()[0] is None
