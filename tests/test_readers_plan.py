"""Readers plan like a flat table (issue 22). `public.<template>` is a plain view of the
table `_wh_data.<template>` with its owner's rights: no row-level security is in play for
an all-tenant reader, so the planner reads the table's statistics for the bounds BI tools
send against a `timestamp` column (cross-type: `timestamp >= date`, `>= timestamptz`,
which are not leakproof and which row-level security would make it ignore). A
tenant-scoped reader reads its tenant view under row-level security and never plans
against the owner's statistics.

Fixed past days, whatever the date today (the now()-relative shapes are not used here:
the benchmark measures them)."""

import datetime as dt

import psycopg
import pytest

import harness

FIRST = dt.date(2024, 5, 1)
DAYS = 40
ROWS = 40
T = "rp_ts"
# The seeds' schema: the time column is `timestamp`.
QUERY = ("SELECT f.id, l.store, f.quantity, f.weight, f.logged_time::timestamp AS logged_time FROM phood_foodlogsum f "
         "JOIN stations s ON s.station_id = f.station_id JOIN locations l ON l.location_id = s.location_id "
         "WHERE f.logged_time >= '{TARGET_DATE}'::date AND f.logged_time < '{TARGET_DATE}'::date + 1")
COLUMNS = "id bigint, store text, quantity integer, weight numeric(12,3), logged_time timestamp"
LO, HI = FIRST + dt.timedelta(days=5), FIRST + dt.timedelta(days=35)
# (label, WHERE) with the bound types BI tools send: 30 days of 40.
SHAPES = [
    ("date literals", f"logged_time >= date '{LO}' AND logged_time < date '{HI}'"),
    ("date arithmetic", f"logged_time >= date '{HI}' - 30 AND logged_time < date '{HI}'"),
    ("to_timestamp (timestamptz)", f"logged_time >= to_timestamp('{LO}', 'YYYY-MM-DD') AND logged_time < to_timestamp('{HI}', 'YYYY-MM-DD')"),
    ("timestamptz literals", f"logged_time >= timestamptz '{LO} 00:00+00' AND logged_time < timestamptz '{HI} 00:00+00'"),
    ("timestamp literals", f"logged_time >= timestamp '{LO}' AND logged_time < timestamp '{HI}'"),
]


def estimate_and_actual(conn, relation, where):
    """The planner's row estimate and the actual rows of the scan under the aggregate."""
    plan = conn.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) SELECT store, count(*) FROM {relation} WHERE {where} GROUP BY store").fetchone()[0]
    node = plan[0]["Plan"]
    while node["Node Type"] in ("Aggregate", "Sort", "Gather", "Gather Merge", "Result", "Subquery Scan") and "Plans" in node:
        node = next(p for p in node["Plans"] if p.get("Parent Relationship") not in ("InitPlan", "SubPlan"))
    workers = 1 + node.get("Workers Launched", 0) if node.get("Parallel Aware") else 1
    return node["Plan Rows"] * workers, node["Actual Rows"] * node["Actual Loops"]


@pytest.fixture(scope="module")
def rp(env):
    harness.seed(env, FIRST.isoformat(), DAYS, ROWS)
    with env.wh_admin() as c:
        harness.register_tenants(env, c)
        c.execute(f"SELECT _wh.set_template(%s, %s, %s, 'logged_time', unique_key => 'id', indexes => ARRAY['unique (id)', '(logged_time)', '(store)'])",
                  (T, QUERY, COLUMNS))
        for t in harness.TENANTS:
            r = c.execute("SELECT _wh.update_mv_window(%s, %s, %s, %s)", (T, t, FIRST, FIRST + dt.timedelta(days=DAYS - 1))).fetchone()[0]
            assert r["status"] == "succeeded", r
        c.execute(f"ANALYZE _wh_data.{T}")
    with env.warehouse.connect(env.warehouse_db) as s:
        s.execute("DROP ROLE IF EXISTS rp_ro")
        s.execute("CREATE ROLE rp_ro LOGIN PASSWORD 'rp-ro-pw'")
    with env.wh_admin() as c:
        c.execute("SELECT _wh.grant_tenant_reader('rp_ro', 'tenant_a')")
    yield env
    with env.wh_admin() as c:
        c.execute("SELECT _wh.revoke_tenant_reader('rp_ro', 'tenant_a')")
        c.execute("SELECT _wh.drop_template(%s)", (T,))
    with env.warehouse.connect(env.warehouse_db) as s:
        s.execute("DROP ROLE IF EXISTS rp_ro")


def test_an_all_tenant_reader_plans_cross_type_bounds_with_statistics(rp):
    """As the BI login (wh_reader), every bound type's estimate over public.<template> is
    within 10x of the rows it finds (row-level security made it 1 row a partition); the
    view returns exactly the table's rows."""
    with rp.wh_reader() as r, rp.wh_admin() as c:
        assert r.execute(f"SELECT relkind FROM pg_class WHERE oid = 'public.{T}'::regclass").fetchone()[0] == "v"
        for label, where in SHAPES:
            est, actual = estimate_and_actual(r, f"public.{T}", where)
            assert actual > 1000, (label, actual)
            assert actual / 10 <= est <= actual * 10, (label, est, actual)
            assert r.execute(f"SELECT count(*) FROM public.{T} WHERE {where}").fetchone()[0] == \
                c.execute(f"SELECT count(*) FROM _wh_data.{T} WHERE {where}").fetchone()[0] == actual
        # One tenant, by its filter on public.<template> or through its tenant view (the
        # view's branch for readers of every tenant): estimated from the statistics too.
        for relation, where in ((f"public.{T}", f"schema_name = 'tenant_b' AND {SHAPES[0][1]}"), (f"tenant_b.{T}", SHAPES[0][1]),
                                (f"tenant_b.{T}", SHAPES[2][1])):
            est, actual = estimate_and_actual(r, relation, where)
            assert actual > 100 and actual / 10 <= est <= actual * 10, (relation, where, est, actual)
        assert r.execute(f"SELECT count(*) FROM tenant_b.{T}").fetchone()[0] == \
            c.execute(f"SELECT count(*) FROM _wh_data.{T} WHERE schema_name = 'tenant_b'").fetchone()[0]


def test_a_scoped_reader_keeps_row_level_security_and_never_sees_the_owners_statistics(rp):
    """A tenant-scoped reader gets 42501 on public.<template> before anything is planned
    (and nothing from it when granted SELECT on it by hand or pg_read_all_data);
    through its tenant view it reads its rows only, and an operator of its own (a leaky
    function with a selectivity estimator) is never applied to the table's statistics
    (which sample every tenant's values): it sees only the rows row-level security lets
    through. The control: the same bounds as the scoped reader are estimated without
    statistics (the row-level security wh_reader no longer pays)."""
    reader = psycopg.connect(rp.warehouse.tcp_dsn(rp.warehouse_db, "rp_ro", "rp-ro-pw"), autocommit=True)
    try:
        seen = []
        reader.add_notice_handler(lambda n: seen.append(n.message_primary))
        reader.execute("CREATE FUNCTION pg_temp.peek(numeric, numeric) RETURNS boolean LANGUAGE plpgsql COST 0.0000001 "
                       "AS $$ BEGIN RAISE NOTICE 'peek %', $1; RETURN $1 > $2; END $$")
        reader.execute("CREATE OPERATOR pg_temp.>>> (LEFTARG = numeric, RIGHTARG = numeric, FUNCTION = pg_temp.peek, "
                       "RESTRICT = scalargtsel)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            reader.execute(f"EXPLAIN SELECT count(*) FROM public.{T} WHERE weight OPERATOR(pg_temp.>>>) 0")
        # Granted SELECT on it by hand, or reading all data, it still reads nothing there (the
        # view holds rows only for readers of every tenant) and meets no statistics.
        with rp.warehouse.connect(rp.warehouse_db) as s:
            s.execute(f"GRANT SELECT ON public.{T} TO rp_ro")
            s.execute("GRANT pg_read_all_data TO rp_ro")
        try:
            reader.execute(f"EXPLAIN SELECT count(*) FROM public.{T} WHERE weight OPERATOR(pg_temp.>>>) 0")
            assert reader.execute(f"SELECT count(*) FROM public.{T} WHERE weight OPERATOR(pg_temp.>>>) -1").fetchone()[0] == 0
            assert seen == [], seen[:5]
        finally:
            with rp.warehouse.connect(rp.warehouse_db) as s:
                s.execute(f"REVOKE SELECT ON public.{T} FROM rp_ro")
                s.execute("REVOKE pg_read_all_data FROM rp_ro")
        reader.execute(f"EXPLAIN SELECT count(*) FROM tenant_a.{T} WHERE weight OPERATOR(pg_temp.>>>) 0")
        assert seen == [], seen[:5]
        mine = reader.execute(f"SELECT count(*) FROM tenant_a.{T} WHERE weight OPERATOR(pg_temp.>>>) -1").fetchone()[0]
        assert mine > 0 and len(seen) == mine
        with rp.wh_admin() as c:
            assert c.execute(f"SELECT count(*) FROM _wh_data.{T} WHERE schema_name = 'tenant_a'").fetchone()[0] == mine
        for other in ("tenant_b", "_wh_data"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                reader.execute(f"SELECT count(*) FROM {other}.{T}")
        est, actual = estimate_and_actual(reader, f"tenant_a.{T}", SHAPES[0][1])
        assert actual > 0 and est < actual / 10, (est, actual)
    finally:
        reader.close()
