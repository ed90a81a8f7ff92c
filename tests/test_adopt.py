"""Adopting a warehouse built the seeds' way (../shared/seeds/000, 001): the test builds one
itself in its own cluster (pg_cron in that database) — `_wh.tenant_connections` with
plaintext passwords, `_wh.mv_templates`, a daily materialized view over dblink per tenant-day,
a combined year table, per-tenant UNION ALL views, the `public` view, the seeds' cron jobs —
for 3 tenants x 40 days across a new year, then adopts it with scripts/adopt.sh and compares
every tenant-day with the old views and with the sources. Fixed past days."""

import datetime as dt
import subprocess
import time
from pathlib import Path

import psycopg
import pytest

import harness

FIRST = dt.date(2023, 12, 1)
DAYS = 40
ROWS = 10
DB = "seedwh"
T = "foodlogstats"
# The seeds' template (001): a day filter on the day of logged_time in UTC, TIMESTAMP columns.
QUERY = """SELECT f.id, l.store, s.station, f.weight, f.logged_time, f.flags
FROM phood_foodlogsum f
JOIN stations s ON s.station_id = f.station_id
JOIN locations l ON l.location_id = s.location_id
WHERE (f.logged_time AT TIME ZONE 'UTC')::DATE = '{TARGET_DATE}'::DATE"""
COLUMNS = "id BIGINT, store TEXT, station TEXT, weight NUMERIC, logged_time TIMESTAMP, flags TEXT"
INDEXES = [
    "CREATE UNIQUE INDEX idx_{schema}_{view_name}_id ON {schema}.{view_name} (id)",
    "CREATE INDEX idx_{schema}_{view_name}_logged_time ON {schema}.{view_name} (logged_time)",
    "CREATE INDEX idx_{schema}_{view_name}_store ON {schema}.{view_name} (store)",
]
# A template wh cannot take: listed with its reason, nothing else changes.
BROKEN = ("every_row", "SELECT id FROM phood_foodlogsum", "id BIGINT")


def day(i):
    return FIRST + dt.timedelta(days=i)


def figures_by_day(conn, relation, where=""):
    return {
        d: (n, ck, w)
        for d, n, ck, w in conn.execute(
            f"SELECT logged_time::date, count(*), sum(hashint8(id)::numeric), sum(weight) FROM {relation} {where} GROUP BY 1"
        ).fetchall()
    }


@pytest.fixture(scope="module")
def seedwh(env):
    """A seeds' warehouse in its own cluster; the module's tests then adopt it."""
    harness.seed(env, FIRST.isoformat(), DAYS, ROWS)
    run = Path(env.run_dir)
    port = env.warehouse.port + 4
    cluster = harness._initdb(
        run, "seedwh", port,
        f"shared_preload_libraries = 'pg_cron'\ncron.database_name = '{DB}'\ncron.host = '{run / 'sock'}'\ncron.timezone = 'UTC'\n",
        "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n",
    )
    cluster.start()
    try:
        with cluster.connect() as s:
            s.execute(f"CREATE DATABASE {DB}")
        with cluster.connect(DB) as s:
            build_seeds_warehouse(env, s)
        yield cluster
    finally:
        cluster.stop("immediate")


def build_seeds_warehouse(env, s):
    s.execute("CREATE EXTENSION dblink")
    s.execute("CREATE EXTENSION pg_cron")
    s.execute("CREATE ROLE seed_ops LOGIN PASSWORD 'seed-ops-pw'")  # the operator who will run wh
    s.execute("CREATE ROLE phood_ro LOGIN PASSWORD 'phood-ro-pw'")
    s.execute("CREATE SCHEMA _wh")
    s.execute("""CREATE TABLE _wh.tenant_connections (
        tenant_name TEXT PRIMARY KEY, host TEXT NOT NULL, port INTEGER DEFAULT 5432, dbname TEXT NOT NULL,
        username TEXT NOT NULL, password TEXT NOT NULL, created_at TIMESTAMP DEFAULT NOW(), updated_at TIMESTAMP DEFAULT NOW())""")
    s.execute("""CREATE TABLE _wh.mv_templates (
        template_name TEXT PRIMARY KEY, description TEXT, query_template TEXT NOT NULL,
        column_definitions TEXT NOT NULL, indexes TEXT[])""")
    s.execute("""CREATE FUNCTION _wh.current_date_utc() RETURNS date LANGUAGE sql AS $$ SELECT (now() AT TIME ZONE 'UTC')::date $$""")
    s.execute("INSERT INTO _wh.mv_templates VALUES (%s, 'food log entries', %s, %s, %s)", (T, QUERY, COLUMNS, INDEXES))
    s.execute("INSERT INTO _wh.mv_templates VALUES (%s, 'no day filter', %s, %s, '{}')", BROKEN)
    for t in harness.TENANTS:
        user, password = env.tenant_login(t)
        s.execute("INSERT INTO _wh.tenant_connections (tenant_name, host, port, dbname, username, password) VALUES (%s, '127.0.0.1', %s, %s, %s, %s)",
                  (t, env.source.port, t, user, password))
        conn = f"host=127.0.0.1 port={env.source.port} dbname={t} user={user} password={password} sslmode=require"
        s.execute(f"CREATE SCHEMA {t}")
        for i in range(DAYS):
            name = f"{T}_{day(i):%Y_%m_%d}"
            q = QUERY.replace("{TARGET_DATE}", day(i).isoformat())
            lit = lambda v: "'" + v.replace("'", "''") + "'"
            s.execute(f"CREATE MATERIALIZED VIEW {t}.{name} AS SELECT * FROM dblink({lit(conn)}, {lit(q)}) AS x({COLUMNS})")
            for ix in INDEXES:
                s.execute(ix.replace("{schema}", t).replace("{view_name}", name))
        # 001's yearly combination: December's days become one table, their views go.
        s.execute(f"CREATE TABLE {t}.{T}_2023 AS " + " UNION ALL ".join(
            f"SELECT * FROM {t}.{T}_{day(i):%Y_%m_%d}" for i in range(DAYS) if day(i).year == 2023))
        for i in range(DAYS):
            if day(i).year == 2023:
                s.execute(f"DROP MATERIALIZED VIEW {t}.{T}_{day(i):%Y_%m_%d}")
        s.execute(f"CREATE VIEW {t}.{T} AS SELECT * FROM {t}.{T}_2023 " + "".join(
            f"UNION ALL SELECT * FROM {t}.{T}_{day(i):%Y_%m_%d} " for i in range(DAYS) if day(i).year == 2024))
        s.execute(f"GRANT USAGE ON SCHEMA {t} TO phood_ro")
        s.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA {t} TO phood_ro")
        s.execute("SELECT cron.schedule(%s, '10 */4 * * *', %s)",
                  (f"{T}_{t}", f"SELECT _wh.update_mv_by_template('{T}', '{t}', _wh.current_date_utc())"))
    s.execute(f"CREATE VIEW public.{T} AS " + " UNION ALL ".join(
        f"SELECT *, '{t}' AS schema_name FROM {t}.{T}" for t in harness.TENANTS))
    s.execute(f"GRANT SELECT ON public.{T} TO phood_ro")


def adopt(env, cluster):
    sock = Path(env.run_dir) / "sock"
    super_dsn = f"host={sock} port={cluster.port} dbname={DB} user=postgres"
    op_dsn = f"host=127.0.0.1 port={cluster.port} dbname={DB} user=seed_ops password=seed-ops-pw"
    return subprocess.run(["bash", str(harness.ROOT / "scripts/adopt.sh"), super_dsn, op_dsn], capture_output=True, text=True)


def test_adopt_a_seeds_warehouse(env, seedwh):
    with seedwh.connect(DB) as s:
        old = {t: figures_by_day(s, f"{t}.{T}") for t in harness.TENANTS}
        mvs = s.execute("SELECT count(*) FROM pg_matviews WHERE matviewname LIKE %s", (f"{T}\\_2024%",)).fetchone()[0]
        assert mvs == 3 * 9 and sum(len(v) for v in old.values()) == 3 * DAYS
    # A source changes after the seeds built their views: adoption copies the warehouse's
    # rows and never fetches them again, so this day keeps the seeds' figures until refreshed.
    changed = day(35)
    with env.source_super("tenant_b") as src:
        src.execute("UPDATE phood_foodlogsum SET weight = weight + 1 WHERE logged_time >= %s AND logged_time < %s::date + 1", (changed, changed))

    # The operator login joins wh_admin once the extension made it: the first run stops at
    # the operator step (seed_ops is not a member yet), a rerun completes.
    first = adopt(env, seedwh)
    assert first.returncode != 0 and "insufficient privilege" in first.stderr.lower() + first.stdout.lower() or "permission denied" in first.stderr.lower(), first.stderr
    with seedwh.connect(DB) as s:
        s.execute("GRANT wh_admin TO seed_ops")
        s.execute("GRANT wh_reader TO phood_ro")
    done = adopt(env, seedwh)
    assert done.returncode == 0, done.stderr
    log = done.stderr + done.stdout
    assert "template every_row not adopted" in log and "TARGET_DATE" in log, log
    assert "rewritten as" in log, log  # the seeds' day filter became a range on the source

    def op():
        return psycopg.connect(host="127.0.0.1", port=seedwh.port, dbname=DB, user="seed_ops", password="seed-ops-pw", autocommit=True)

    with op() as c:
        # Tenants: registered, no password in any wh table; the template converted.
        assert [t for (t,) in c.execute("SELECT tenant_name FROM _wh.tenant_connections ORDER BY 1")] == list(harness.TENANTS)
        assert c.execute("SELECT count(*) FROM information_schema.columns WHERE table_schema = '_wh' AND column_name = 'password'").fetchone()[0] == 0
        tq, tc, uk = c.execute("SELECT query_template, time_column, unique_key FROM _wh.mv_templates WHERE template_name = %s", (T,)).fetchone()
        assert (tc, uk) == ("logged_time", "id") and "f.logged_time >= '{TARGET_DATE}'::date AND f.logged_time < '{TARGET_DATE}'::date + 1" in tq
        assert c.execute("SELECT count(*) FROM _wh.mv_templates WHERE template_name = 'every_row'").fetchone()[0] == 0
        # Every tenant-day: in public.<template> and the tenant view, equal to the seeds' views,
        # registered with its rows; the 2024 days also equal the sources (the changed one aside).
        for t in harness.TENANTS:
            assert figures_by_day(c, f"{t}.{T}") == old[t], t
            assert figures_by_day(c, f"public.{T}", f"WHERE schema_name = '{t}'") == old[t], t
            reg = c.execute("SELECT count(*), sum(row_count) FROM _wh.slices WHERE template_name = %s AND tenant_name = %s", (T, t)).fetchone()
            assert reg == (DAYS, sum(n for n, _, _ in old[t].values())), (t, reg)
            with env.source_super(t) as src:
                source = {d: (n, ck, w) for d, n, ck, w in src.execute(
                    "SELECT (logged_time AT TIME ZONE 'UTC')::date, count(*), sum(hashint8(id)::numeric), sum(weight) FROM phood_foodlogsum "
                    "WHERE logged_time >= %s AND logged_time < %s GROUP BY 1", (FIRST, day(DAYS))).fetchall()}
            differs = {d for d in source if source[d] != old[t].get(d)}
            assert differs == ({changed} if t == "tenant_b" else set()), (t, differs)
        # The day changed at the source comes right with an ordinary refresh.
        r = c.execute("SELECT _wh.refresh_mv(%s, 'tenant_b', %s)", (T, changed)).fetchone()[0]
        assert r["status"] == "succeeded" and r["details"]["action"] == "refreshed", r
        # Jobs: the seeds' stopped (kept), wh's scheduled.
        jobs = dict(c.execute("SELECT jobname, active FROM _wh.jobs").fetchall())
        assert {f"wh:{T}:{t}" for t in harness.TENANTS} <= set(jobs), jobs
    with seedwh.connect(DB) as s:
        seeds_jobs = s.execute("SELECT jobname, active FROM cron.job WHERE jobname NOT LIKE 'wh:%' ORDER BY 1").fetchall()
        assert seeds_jobs == [(f"{T}_{t}", False) for t in harness.TENANTS]
        # The old objects stay, set aside, until the operator drops them; the tenant schemas
        # are wh's own now (made anew), the seeds' ones renamed, never taken over.
        assert s.execute("SELECT to_regclass('_wh_seeds.tenant_connections') IS NOT NULL AND to_regclass('public.foodlogstats_seeds') IS NOT NULL "
                         "AND to_regclass('_wh_seeds_tenant_a.foodlogstats') IS NOT NULL AND to_regclass('_wh_seeds_tenant_a.foodlogstats_2023') IS NOT NULL").fetchone()[0]
        owners = dict(s.execute("SELECT nspname, nspowner::regrole::text FROM pg_namespace WHERE nspname ~ '^(_wh_seeds_)?tenant_'").fetchall())
        assert owners == {**{t: "wh_admin" for t in harness.TENANTS}, **{f"_wh_seeds_{t}": "postgres" for t in harness.TENANTS}}, owners
    # The BI login reads wh's table where the seeds' view was.
    with psycopg.connect(host="127.0.0.1", port=seedwh.port, dbname=DB, user="phood_ro", password="phood-ro-pw", autocommit=True) as r:
        assert r.execute(f"SELECT count(*) FROM public.{T}").fetchone()[0] == sum(n for t in harness.TENANTS for n, _, _ in old[t].values())

    # A rerun changes nothing.
    again = adopt(env, seedwh)
    assert again.returncode == 0, again.stderr
    with op() as c:
        assert c.execute("SELECT count(*) FROM _wh.slices WHERE template_name = %s", (T,)).fetchone()[0] == 3 * DAYS
        assert c.execute(f"SELECT count(*) FROM public.{T}").fetchone()[0] == sum(n for t in harness.TENANTS for n, _, _ in old[t].values())
        # The leftovers, with the statements that drop them.
        left = c.execute("SELECT object, drop_statement FROM _wh.seed_leftovers()").fetchall()
        # What the superuser step set aside and recorded, and nothing else: the public view
        # first, then the seeds' _wh, then each tenant's set-aside schema (its daily views,
        # year table and union view go with it).
        assert left == [("public.foodlogstats_seeds", "DROP VIEW IF EXISTS public.foodlogstats_seeds CASCADE"),
                        ("_wh_seeds", "DROP SCHEMA IF EXISTS _wh_seeds CASCADE")] + [
                        (f"_wh_seeds_{t}", f"DROP SCHEMA IF EXISTS _wh_seeds_{t} CASCADE") for t in harness.TENANTS], left
        left = dict(left)
    # The operator drops them when satisfied: wh's objects are untouched.
    with seedwh.connect(DB) as s:
        for stmt in left.values():
            s.execute(stmt)
    with op() as c:
        assert c.execute(f"SELECT count(*) FROM public.{T}").fetchone()[0] == sum(n for t in harness.TENANTS for n, _, _ in old[t].values())
        assert c.execute("SELECT count(*) FROM _wh.seed_leftovers()").fetchone()[0] == 0


def prepare(cluster, env, db):
    """The adoption's superuser step alone (scripts/adopt.sh step 1)."""
    sock = Path(env.run_dir) / "sock"
    return subprocess.run([str(harness.PG_BIN / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
                           f"host={sock} port={cluster.port} dbname={db} user=postgres",
                           "-f", str(harness.ROOT / "sql/adopt/prepare.sql")], capture_output=True, text=True)


def test_the_superuser_step_runs_nothing_the_seeds_admin_controls(env, seedwh):
    """Issue 20, items 3 and 5: in the seeds' design a less privileged seeds' admin owns _wh,
    public and the tenant schemas. It (a) replaces mv_templates by a view over its own
    function, (b) plants operators in public, (c) names tenants pg_catalog,
    information_schema, _wh, public and `important` (a DBA's schema); a wh_admin member then
    (d) tries a tenant `_wh_seeds` and (5) a slices row that made seed_leftovers offer
    `DROP TABLE important.payroll`. The superuser step refuses the view, never runs a
    planted operator, renames and takes over nothing of those schemas, and the leftovers
    list only what it set aside."""
    db = "seedatk"
    with seedwh.connect() as s:
        s.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        s.execute(f"CREATE DATABASE {db}")
        for role in ("seedadm", "mallory"):
            s.execute(f"DROP ROLE IF EXISTS {role}")
            s.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{role}-pw'")
    try:
        with seedwh.connect(db) as s:
            s.execute("ALTER SCHEMA public OWNER TO seedadm")
            s.execute("CREATE TABLE public.pwned (tag text, who name, super boolean, at timestamptz DEFAULT clock_timestamp())")
            s.execute("GRANT ALL ON public.pwned TO PUBLIC")
            s.execute("CREATE SCHEMA important")
            s.execute("CREATE TABLE important.payroll (who text, pay numeric)")
            for schema in ("_wh", "tenant_a"):
                s.execute(f"CREATE SCHEMA {schema} AUTHORIZATION seedadm")
        seedadm = lambda: psycopg.connect(host="127.0.0.1", port=seedwh.port, dbname=db, user="seedadm", password="seedadm-pw", autocommit=True)
        with seedadm() as a:
            a.execute("CREATE TABLE _wh.tenant_connections (tenant_name text PRIMARY KEY, host text, port integer, dbname text, username text, password text)")
            for t in ("tenant_a", "pg_catalog", "information_schema", "_wh", "public", "important", "_wh_seeds", "cron"):
                a.execute("INSERT INTO _wh.tenant_connections VALUES (%s, '127.0.0.1', 5432, 'x', 'x', 'x')", (t,))
            a.execute("CREATE VIEW tenant_a.foodlogstats AS SELECT 1 AS id")
            a.execute("CREATE VIEW public.foodlogstats AS SELECT 1 AS id")
            # (a) mv_templates is a view over the seeds' admin's own function.
            a.execute("""CREATE FUNCTION _wh.evil() RETURNS SETOF text LANGUAGE plpgsql AS $$
                BEGIN
                    INSERT INTO public.pwned (tag, who, super) VALUES ('view', current_user,
                        (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user));
                    BEGIN EXECUTE 'ALTER ROLE seedadm SUPERUSER'; EXCEPTION WHEN OTHERS THEN NULL; END;
                    RETURN NEXT 'foodlogstats';
                END $$""")
            a.execute("CREATE VIEW _wh.mv_templates AS SELECT t AS template_name, ''::text AS query_template, "
                      "''::text AS column_definitions, NULL::text[] AS indexes, ''::text AS description FROM _wh.evil() t")
            # (b) operators in public for every pair wh's scripts (and so prepare.sql) compare.
            assert harness.plant_operators(a) > 200
        refused = prepare(seedwh, env, db)
        assert refused.returncode != 0 and "not a plain table" in refused.stderr, refused.stderr
        # (a') The same, raced (the 0.6.0 review): a plain table without an index passes the
        # check, and its owner turns it into a view over evil() before the superuser reads it,
        # holding the table so the read must wait for the switch.
        with seedadm() as a:
            a.execute("DROP VIEW _wh.mv_templates")
            a.execute("CREATE TABLE _wh.mv_templates (template_name text, description text, query_template text, "
                      "column_definitions text, indexes text[])")
            a.execute("INSERT INTO _wh.mv_templates VALUES ('foodlogstats', '', '', '', NULL)")
            rel = a.execute("SELECT '_wh.mv_templates'::regclass::oid").fetchone()[0]
        with psycopg.connect(host="127.0.0.1", port=seedwh.port, dbname=db, user="seedadm", password="seedadm-pw") as racer:
            racer.execute("LOCK _wh.mv_templates IN ACCESS EXCLUSIVE MODE")
            sock = Path(env.run_dir) / "sock"
            run = subprocess.Popen([str(harness.PG_BIN / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
                                    f"host={sock} port={seedwh.port} dbname={db} user=postgres",
                                    "-f", str(harness.ROOT / "sql/adopt/prepare.sql")],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            with seedwh.connect(db) as s:
                s.execute("SET search_path = pg_catalog, pg_temp")  # the plants in public are a superuser's too
                for _ in range(600):
                    if s.execute("SELECT count(*) FROM pg_locks WHERE relation = %s AND NOT granted", (rel,)).fetchone()[0]:
                        break
                    time.sleep(0.05)
                else:
                    raise AssertionError("the superuser step never waited for the table")
            racer.execute("TRUNCATE _wh.mv_templates")
            racer.execute("""CREATE RULE "_RETURN" AS ON SELECT TO _wh.mv_templates DO INSTEAD
                SELECT t AS template_name, NULL::text AS description, NULL::text AS query_template,
                       NULL::text AS column_definitions, NULL::text[] AS indexes FROM _wh.evil() t""")
            racer.commit()
            out, err = run.communicate(timeout=120)
        assert run.returncode != 0 and "not a plain table" in err, err
        with seedwh.connect(db) as s:
            s.execute("SET search_path = pg_catalog, pg_temp")
            assert s.execute("SELECT count(*) FROM public.pwned").fetchone()[0] == 0
            assert not s.execute("SELECT rolsuper FROM pg_roles WHERE rolname = 'seedadm'").fetchone()[0]
        with seedadm() as a:
            a.execute("DROP VIEW _wh.mv_templates")
            a.execute("CREATE TABLE _wh.mv_templates (template_name text PRIMARY KEY, description text, query_template text, "
                      "column_definitions text, indexes text[])")
            a.execute("INSERT INTO _wh.mv_templates VALUES ('foodlogstats', '', '', '', NULL)")
        done = prepare(seedwh, env, db)
        assert done.returncode == 0, done.stderr
        for t in ("pg_catalog", "information_schema", "public", "important", "cron"):
            assert f"tenant '{t}'" in done.stderr or f"tenant {t}:" in done.stderr, (t, done.stderr)
        with seedwh.connect(db) as s:
            s.execute("SET search_path = pg_catalog, pg_temp")  # this superuser session too
            assert s.execute("SELECT count(*) FROM public.pwned").fetchone()[0] == 0
            assert not s.execute("SELECT rolsuper FROM pg_roles WHERE rolname = 'seedadm'").fetchone()[0]
            owners = dict(s.execute("SELECT nspname::text, nspowner::regrole::text FROM pg_namespace").fetchall())
            assert owners["pg_catalog"] == owners["information_schema"] == owners["important"] == owners["_wh"] == "postgres", owners
            assert owners["_wh_seeds"] == owners["_wh_seeds_tenant_a"] == "seedadm" and "tenant_a" not in owners, owners
            assert s.execute("SELECT count(*) FROM important.payroll").fetchone()[0] == 0  # still there
            s.execute("GRANT wh_admin TO mallory")
        with psycopg.connect(host="127.0.0.1", port=seedwh.port, dbname=db, user="mallory", password="mallory-pw", autocommit=True) as m:
            # (d) a tenant named like the seeds' schema (or any _wh_ name) is refused.
            with pytest.raises(psycopg.errors.InvalidName, match="reserved"):
                m.execute("SELECT _wh.set_tenant_connection('_wh_seeds', '127.0.0.1', 5432, 'x', 'x', 'x')")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                m.execute("INSERT INTO _wh.seed_objects (object_oid, kind, name) VALUES ('important'::regnamespace, 'schema', 'important')")
            # (5) whatever the day registry says, the leftovers are what the superuser set aside.
            left = m.execute("SELECT object, drop_statement FROM _wh.seed_leftovers()").fetchall()
            assert left == [("public.foodlogstats_seeds", "DROP VIEW IF EXISTS public.foodlogstats_seeds CASCADE"),
                            ("_wh_seeds", "DROP SCHEMA IF EXISTS _wh_seeds CASCADE"),
                            ("_wh_seeds_tenant_a", "DROP SCHEMA IF EXISTS _wh_seeds_tenant_a CASCADE")], left
        # A rerun of the superuser step changes nothing and runs nothing planted.
        again = prepare(seedwh, env, db)
        assert again.returncode == 0, again.stderr
        with seedwh.connect(db) as s:
            s.execute("SET search_path = pg_catalog, pg_temp")
            assert s.execute("SELECT count(*) FROM public.pwned").fetchone()[0] == 0
            assert s.execute("SELECT count(*) FROM _wh.seed_objects").fetchone()[0] == 3
    finally:
        with seedwh.connect() as s:
            s.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
            for role in ("seedadm", "mallory"):
                s.execute(f"DROP ROLE IF EXISTS {role}")
