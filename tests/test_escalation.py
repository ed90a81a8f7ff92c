"""The attacker's review of 0.5.0 (issue 20), each path replayed as written and shown closed:

1. pg_cron's `schedule_in_database` (no check of its user name) is never wh_admin's;
   wh's jobs run as the operator who made them.
2. Operators planted in public for every operator and type pair wh's scripts use never
   run in a fresh install, a DROP/CREATE, and no wh object stays bound to them (the
   upgrade from every release with them in place: tests/test_upgrade.py).
4. A superuser's `SET SESSION AUTHORIZATION operator` is still the superuser's session:
   refused before any work, so a planted trigger's `RESET SESSION AUTHORIZATION` never runs.
6. wh stops, restarts or removes only jobs it made (by id and owner), never a superuser's
   job that happens to be named `wh:…`.

(3 and 5, the adoption's superuser step and its leftovers: tests/test_adopt.py.)
Every planted function records who ran it in public.pwned."""

import datetime as dt
import os
import tempfile

import psycopg
import pytest

import harness

T = "esc"
DAY = dt.date(2025, 4, 7)  # a fixed past day
ROWS = 6


@pytest.fixture(scope="module")
def esc(env):
    harness.seed(env, DAY.isoformat(), 2, ROWS)
    with env.warehouse.connect() as s:
        s.execute("DROP ROLE IF EXISTS mallory")
        s.execute("CREATE ROLE mallory LOGIN PASSWORD 'mallory-pw' IN ROLE wh_admin")
    with env.wh_super() as s:
        s.execute("CREATE TABLE IF NOT EXISTS public.pwned (tag text, who name, super boolean, at timestamptz DEFAULT clock_timestamp())")
        s.execute("GRANT ALL ON public.pwned TO PUBLIC")
        s.execute("TRUNCATE public.pwned")
    with env.wh_admin() as c:
        harness.register_tenants(env, c)
        harness.register_template(c, T)
        for t in harness.TENANTS:
            c.execute("SELECT _wh.update_mv_window(%s, %s, %s, %s)", (T, t, DAY, DAY + dt.timedelta(days=1)))
    yield env
    with env.wh_super() as s:
        # pg_cron's scheduler stops at a job whose owner is gone: mallory's go first (the
        # wh:maintenance job it made when it scheduled first among them).
        s.execute("SELECT cron.unschedule(jobid) FROM cron.job WHERE username = 'mallory'")
        s.execute("DROP OWNED BY mallory")
        s.execute("DROP ROLE mallory")
        s.execute("DROP TABLE IF EXISTS public.pwned")


def mallory(env, db=None):
    return psycopg.connect(env.warehouse.tcp_dsn(db or env.warehouse_db, "mallory", "mallory-pw"), autocommit=True)


def is_superuser(s, role="mallory"):
    return s.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", (role,)).fetchone()[0]


# ------------------------------------------------------------------ 1. pg_cron's user name

def test_no_operator_can_schedule_a_job_as_another_user(esc):
    with esc.wh_super() as s:
        assert not s.execute(
            "SELECT has_function_privilege('wh_admin', 'cron.schedule_in_database(text,text,text,text,text,boolean)', 'EXECUTE')"
        ).fetchone()[0]
    with mallory(esc) as m:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            m.execute("SELECT cron.schedule_in_database('wh:evil', '* * * * *', 'ALTER ROLE mallory SUPERUSER', %s, 'postgres', true)",
                      (esc.warehouse_db,))
        # wh schedules with cron.schedule: the job is mallory's own, and runs as mallory.
        m.execute("SELECT _wh.schedule_tenant(%s, 'tenant_a')", (T,))
        assert m.execute("SELECT username FROM _wh.jobs WHERE jobname = %s", (f"wh:{T}:tenant_a",)).fetchone()[0] == "mallory"
        m.execute("SELECT _wh.unschedule_tenant(%s, 'tenant_a')", (T,))
    with esc.wh_super() as s:
        assert s.execute("SELECT count(*) FROM cron.job WHERE username = 'postgres' AND jobname LIKE 'wh:%'").fetchone()[0] == 0
        assert not is_superuser(s)


def test_the_install_takes_back_a_grant_of_schedule_in_database(esc):
    """A DBA who followed 0.5.0's README granted it: installing (or upgrading to) 0.6.0
    revokes it. A scratch database with pg_cron's function signature in a schema cron."""
    with harness.scratch_database(esc, "wh_cron_grant", extension=False):
        with esc.warehouse.connect("wh_cron_grant") as s:
            s.execute("CREATE SCHEMA cron")
            s.execute("CREATE FUNCTION cron.schedule_in_database(text,text,text,text,text,boolean) RETURNS bigint "
                      "LANGUAGE sql AS 'SELECT 1::bigint'")
            s.execute("REVOKE ALL ON FUNCTION cron.schedule_in_database(text,text,text,text,text,boolean) FROM PUBLIC")  # as pg_cron does
            s.execute("GRANT USAGE ON SCHEMA cron TO wh_admin")
            s.execute("GRANT EXECUTE ON FUNCTION cron.schedule_in_database(text,text,text,text,text,boolean) TO wh_admin")
            s.execute("CREATE EXTENSION wh CASCADE")
            assert not s.execute(
                "SELECT has_function_privilege('wh_admin', 'cron.schedule_in_database(text,text,text,text,text,boolean)', 'EXECUTE')"
            ).fetchone()[0]


# ------------------------------------------------------------------ 2. operators planted before an install

def test_operators_planted_in_public_never_run_in_install_or_reinstall(esc):
    with harness.scratch_database(esc, "wh_planted", extension=False):
        with esc.warehouse.connect("wh_planted") as s:
            s.execute("CREATE EXTENSION dblink")
            s.execute("CREATE TABLE public.pwned (tag text, who name, super boolean, at timestamptz DEFAULT clock_timestamp())")
            s.execute("GRANT ALL ON public.pwned TO PUBLIC")
            s.execute("GRANT CREATE ON SCHEMA public TO mallory")  # as wh_admin members have, once wh is installed
        with mallory(esc, "wh_planted") as m:
            planted = harness.plant_operators(m)
        # Planted for every operator the scripts use across the types they use: oid = regclass,
        # bigint * numeric and their like, hundreds of them.
        assert planted > 200, planted
        with esc.warehouse.connect("wh_planted") as s:
            for step in ("CREATE EXTENSION wh CASCADE", "DROP EXTENSION wh", "CREATE EXTENSION wh"):
                s.execute(step)
                assert s.execute("SELECT count(*) FROM public.pwned").fetchone()[0] == 0, step
            assert harness.foreign_dependencies(s) == []
            # The monitoring views the review found bound to planted operators work, and
            # reading them as the superuser runs nothing planted.
            for view in ("storage", "partitions", "jobs", "freshness", "gaps", "drift", "rollups"):
                s.execute(f"SELECT count(*) FROM _wh.{view}")
            assert s.execute("SELECT count(*) FROM public.pwned WHERE super").fetchone()[0] == 0
            assert not is_superuser(s)


# ------------------------------------------------------------------ 4. SET SESSION AUTHORIZATION

def test_a_superuser_posing_as_an_operator_is_refused_before_any_work(esc):
    marker = os.path.join(tempfile.mkdtemp(prefix="wh-esc."), "reset-ran")
    os.chmod(os.path.dirname(marker), 0o777)
    with mallory(esc) as m:
        m.execute(f"""CREATE OR REPLACE FUNCTION public.esc_reset() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                INSERT INTO public.pwned (tag, who, super) VALUES ('trigger', current_user,
                    (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user));
                BEGIN
                    RESET SESSION AUTHORIZATION;
                    SET ROLE NONE;
                    COPY (SELECT 1) TO PROGRAM 'touch {marker}';
                    ALTER ROLE mallory SUPERUSER;
                EXCEPTION WHEN OTHERS THEN NULL;
                END;
                RETURN NULL;
            END $$""")
        m.execute(f"CREATE TRIGGER esc_reset AFTER INSERT OR DELETE ON _wh_data.{T} FOR EACH STATEMENT EXECUTE FUNCTION public.esc_reset()")
    try:
        with esc.source_super("tenant_a") as src:  # a changed day, so a refresh writes
            src.execute("UPDATE phood_foodlogsum SET weight = weight + 1 WHERE logged_time >= %s AND logged_time < %s::date + 1", (DAY, DAY))
        with esc.wh_super() as s:
            s.execute("TRUNCATE public.pwned")
            s.execute("SET SESSION AUTHORIZATION whadmin")
            assert s.execute("SELECT session_user").fetchone()[0] == "whadmin"
            for sql in (f"SELECT _wh.refresh_mv('{T}', 'tenant_a', '{DAY}')",
                        f"SELECT _wh.update_mv_window('{T}', 'tenant_a', '{DAY}', '{DAY}', force_recreate => true)",
                        f"CALL _wh.backfill('{T}', 'tenant_a', '{DAY}', '{DAY}', force_recreate => true)"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege, match="refusing to work in the session of postgres"):
                    s.execute(sql)
            s.execute("RESET SESSION AUTHORIZATION")
            assert s.execute("SELECT count(*) FROM public.pwned").fetchone()[0] == 0
            assert not is_superuser(s)
        assert not os.path.exists(marker)
        # The operator's own refresh fires the trigger, at the operator's rights only.
        with esc.wh_admin() as c:
            r = c.execute("SELECT _wh.refresh_mv(%s, 'tenant_a', %s)", (T, DAY)).fetchone()[0]
            assert r["status"] == "succeeded" and r["details"]["action"] == "refreshed", r
        with esc.wh_super() as s:
            ran = s.execute("SELECT who::text, super FROM public.pwned").fetchall()
            assert ran and {w for w, _ in ran} <= {"wh_admin", "whadmin"} and not any(sup for _, sup in ran), ran
            assert not is_superuser(s)
        assert not os.path.exists(marker)
    finally:
        with mallory(esc) as m:
            m.execute(f"DROP TRIGGER IF EXISTS esc_reset ON _wh_data.{T}")


# ------------------------------------------------------------------ 6. jobs wh made, by id

def test_wh_touches_only_jobs_it_made(esc):
    with esc.wh_super() as s:
        su_job = s.execute("SELECT cron.schedule('wh:su_own', '0 4 * * *', 'SELECT 1')").fetchone()[0]
        s.execute("UPDATE cron.job SET active = false WHERE jobid = %s", (su_job,))
    try:
        with mallory(esc) as m:
            assert m.execute("SELECT _wh._cron_set_active(%s, true)", (su_job,)).fetchone()[0] is False
            assert m.execute("SELECT _wh._cron_unschedule(%s)", (su_job,)).fetchone()[0] is False
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                m.execute("SELECT _wh._cron_register(%s)", (su_job,))
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                m.execute("INSERT INTO _wh.cron_jobs (jobid, username) VALUES (%s, 'postgres')", (su_job,))
            # A job of mallory's own whose command only starts like wh's (the 0.6.0 review):
            # not a wh job, whatever its name.
            own = m.execute("SELECT cron.schedule('wh:evil', '0 0 1 1 *', 'SELECT _wh.health(); SELECT 1')").fetchone()[0]
            try:
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    m.execute("SELECT _wh._cron_register(%s)", (own,))
            finally:
                m.execute("SELECT cron.unschedule(%s)", (own,))
            # Not one of wh's jobs: _wh.jobs does not show it.
            assert m.execute("SELECT count(*) FROM _wh.jobs WHERE jobid = %s", (su_job,)).fetchone()[0] == 0
            # A job the operator made is wh's: stopped and removed through wh.
            m.execute("SELECT _wh.schedule_tenant(%s, 'tenant_b')", (T,))
            mine = m.execute("SELECT jobid FROM _wh.jobs WHERE jobname = %s", (f"wh:{T}:tenant_b",)).fetchone()[0]
            assert m.execute("SELECT _wh._cron_set_active(%s, false)", (mine,)).fetchone()[0] is True
            m.execute("SELECT _wh.unschedule_tenant(%s, 'tenant_b')", (T,))
            assert m.execute("SELECT count(*) FROM _wh.cron_jobs WHERE jobid = %s", (mine,)).fetchone()[0] == 0
        with esc.wh_super() as s:
            assert s.execute("SELECT active FROM cron.job WHERE jobid = %s", (su_job,)).fetchone() == (False,)
    finally:
        with esc.wh_super() as s:
            s.execute("SELECT cron.unschedule(%s)", (su_job,))


# ------------------------------------------------------------------ 11. what a tenant reader learns of other tenants

def test_a_tenant_reader_learns_other_tenants_volumes_as_security_md_says(esc):
    """Pinned, documented behaviour (SECURITY.md, "What a tenant reader can learn"): a
    tenant-scoped reader sees only its tenant's rows, but PostgreSQL tells it how many rows
    its filter removed (EXPLAIN ANALYZE) and every table's insert/delete counts
    (pg_stat_all_tables, readable by any login). If this changes, SECURITY.md must too."""
    with esc.warehouse.connect() as s:
        s.execute("DROP ROLE IF EXISTS esc_ro")
        s.execute("CREATE ROLE esc_ro LOGIN PASSWORD 'esc-ro-pw'")
    try:
        with esc.wh_admin() as c:
            c.execute("SELECT _wh.grant_tenant_reader('esc_ro', 'tenant_a')")
            mine, others = c.execute(f"SELECT count(*) FILTER (WHERE schema_name = 'tenant_a'), "
                                     f"count(*) FILTER (WHERE schema_name <> 'tenant_a') FROM public.{T}").fetchone()
        with psycopg.connect(esc.warehouse.tcp_dsn(esc.warehouse_db, "esc_ro", "esc-ro-pw"), autocommit=True) as r:
            r.execute("SET enable_indexscan = off")
            r.execute("SET enable_bitmapscan = off")
            assert r.execute(f"SELECT count(*) FROM tenant_a.{T}").fetchone()[0] == mine
            plan = "\n".join(x for (x,) in r.execute(f"EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) SELECT count(*) FROM tenant_a.{T}"))
            removed = sum(int(line.split(":")[1]) for line in plan.splitlines() if "Rows Removed by Filter" in line)
            assert removed == others > 0, plan
            ins = r.execute("SELECT coalesce(sum(n_tup_ins), 0) FROM pg_stat_all_tables WHERE relname LIKE %s", (f"{T}\\_%",)).fetchone()[0]
            assert ins >= mine + others
    finally:
        with esc.wh_admin() as c:
            c.execute("SELECT _wh.revoke_tenant_reader('esc_ro', 'tenant_a')")
        with esc.warehouse.connect() as s:
            s.execute("DROP OWNED BY esc_ro")
            s.execute("DROP ROLE esc_ro")


# ------------------------------------------------------------------ 12. a password in a failing call

def test_a_failing_calls_password_stays_out_of_the_server_log_the_ways_readme_shows(esc):
    """README, "Passwords and the server log": a password passed as a bind parameter is
    never in the server log, even when the call fails; a literal one is, unless the
    operator's role has log_min_error_statement = panic (set by a superuser)."""
    from pathlib import Path
    log = Path(esc.run_dir) / "warehouse.log"
    bound, literal, hidden = "bound-canary-7d1f", "literal-canary-93ab", "hidden-canary-c4e2"
    call = "SELECT _wh.set_tenant_connection('bad name', '127.0.0.1', 5432, 'x', 'x', {})"
    start = len(log.read_text(errors="replace"))
    with esc.wh_admin() as c:
        with pytest.raises(psycopg.errors.InvalidName):
            c.execute(call.format("%s"), (bound,))  # psycopg sends it as a bind parameter
        with pytest.raises(psycopg.errors.InvalidName):
            c.execute(call.format(f"'{literal}'"))
    with esc.warehouse.connect() as s:
        s.execute("ALTER ROLE whadmin SET log_min_error_statement = panic")
    try:
        with esc.wh_admin() as c:
            with pytest.raises(psycopg.errors.InvalidName):
                c.execute(call.format(f"'{hidden}'"))
    finally:
        with esc.warehouse.connect() as s:
            s.execute("ALTER ROLE whadmin RESET log_min_error_statement")
    text = log.read_text(errors="replace")[start:]
    assert literal in text  # PostgreSQL's STATEMENT: line, as the review found
    assert bound not in text and hidden not in text


# ------------------------------------------------------------------ 7. revoking a reader that holds the table

def test_a_reader_holding_the_table_cannot_block_its_revocation(esc):
    """0.5.0: a tenant-scoped reader holding ACCESS SHARE in an open transaction made
    revoke_tenant_reader give up (55P03) after 37 s and kept its access. Now revocation
    changes rows the table's policy reads, never the policy: it succeeds while the reader
    holds the table, the reader's next statement sees none of the tenant's rows, its next
    transaction is refused, and README's way to end its sessions ends them."""
    with esc.warehouse.connect() as s:
        s.execute("DROP ROLE IF EXISTS esc_rev")
        s.execute("CREATE ROLE esc_rev LOGIN PASSWORD 'esc-rev-pw'")
    reader = lambda: psycopg.connect(esc.warehouse.tcp_dsn(esc.warehouse_db, "esc_rev", "esc-rev-pw"))
    try:
        with esc.wh_admin() as c:
            assert c.execute("SELECT _wh.grant_tenant_reader('esc_rev', 'tenant_a')").fetchone()[0]["status"] == "succeeded"
            mine = c.execute(f"SELECT count(*) FROM public.{T} WHERE schema_name = 'tenant_a'").fetchone()[0]
        holder, idle = reader(), reader()
        try:
            assert holder.execute(f"SELECT count(*) FROM tenant_a.{T}").fetchone()[0] == mine > 0  # transaction stays open
            assert idle.execute(f"SELECT count(*) FROM tenant_a.{T}").fetchone()[0] == mine
            idle.commit()
            with esc.wh_super() as s:
                held = s.execute("SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                                 "WHERE a.usename = 'esc_rev' AND l.mode = 'AccessShareLock' AND l.granted "
                                 "AND l.relation = %s::regclass", (f"_wh_data.{T}",)).fetchone()[0]
                assert held == 1
            with esc.wh_admin() as c:
                r = c.execute("SELECT _wh.revoke_tenant_reader('esc_rev', 'tenant_a')").fetchone()[0]
                assert r["status"] == "succeeded", r
            # Still inside its transaction, still holding the table: none of tenant_a's rows
            # (PostgreSQL refuses the statement outright once it sees the revoked grant).
            try:
                assert holder.execute(f"SELECT count(*) FROM tenant_a.{T}").fetchone()[0] == 0
                holder.commit()
            except psycopg.errors.InsufficientPrivilege:
                holder.rollback()
            for rel in (f"public.{T}", f"tenant_a.{T}"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    holder.execute(f"SELECT count(*) FROM {rel}")
                holder.rollback()
            # README: ending a revoked reader's sessions (a superuser, or pg_signal_backend).
            with esc.wh_super() as s:
                ended = s.execute("SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
                                  "WHERE usename = 'esc_rev'").fetchone()[0]
                assert ended == 2
            with pytest.raises(psycopg.OperationalError):
                idle.execute("SELECT 1")
        finally:
            holder.close()
            idle.close()
    finally:
        with esc.warehouse.connect() as s:
            s.execute("DROP OWNED BY esc_rev")
            s.execute("DROP ROLE esc_rev")


# ------------------------------------------------------------------ schemas made before the install (0.6.0 review)

def test_schemas_another_role_made_before_the_install_are_refused(esc):
    """A role with CREATE on the database (a seeds' admin, a database owner) makes `_wh`
    (with an operator in it that would match the install's comparisons: `_wh` is first on
    the install's pinned search_path) or `_wh_scope` (with a trigger on its own `readers`)
    before a superuser installs wh: the install refuses, naming the schema, and runs none of
    it; once they are gone it installs, and operators cannot attach code to `_wh_scope`."""
    with harness.scratch_database(esc, "wh_preplanted", extension=False):
        with esc.warehouse.connect("wh_preplanted") as s:
            s.execute("CREATE EXTENSION dblink")
            s.execute("CREATE TABLE public.pwned (tag text, who name, super boolean, at timestamptz DEFAULT clock_timestamp())")
            s.execute("GRANT ALL ON public.pwned TO PUBLIC")
            s.execute("GRANT CREATE ON DATABASE wh_preplanted TO mallory")
        with mallory(esc, "wh_preplanted") as m:
            m.execute("CREATE SCHEMA _wh")
            m.execute(harness.PLANT_FUNCTION.format(fn="planted_eq", l="name", r="name", res="boolean",
                                                    tag="'_wh.= name'", op="=").replace("public.planted_eq", "_wh.planted_eq"))
            m.execute("CREATE OPERATOR _wh.= (LEFTARG = name, RIGHTARG = name, FUNCTION = _wh.planted_eq)")
            m.execute("CREATE SCHEMA _wh_scope")
            m.execute("CREATE TABLE _wh_scope.readers (role_oid oid, tenant_name text)")
            m.execute("CREATE FUNCTION _wh_scope.f() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                      "INSERT INTO public.pwned (tag, who, super) VALUES ('scope trigger', current_user, "
                      "(SELECT rolsuper FROM pg_roles WHERE rolname = current_user)); RETURN NULL; END $$")
            m.execute("CREATE TRIGGER t BEFORE INSERT OR DELETE ON _wh_scope.readers FOR EACH STATEMENT EXECUTE FUNCTION _wh_scope.f()")
        with esc.warehouse.connect("wh_preplanted") as s:
            for schema in ("_wh", "_wh_scope"):
                with pytest.raises(psycopg.Error, match=f"schema .*{schema} \\(owner mallory\\)"):
                    s.execute("CREATE EXTENSION wh")
                s.execute(f"DROP SCHEMA {schema} CASCADE")
            s.execute("CREATE EXTENSION wh")
            s.execute("SET search_path = pg_catalog, pg_temp")
            assert s.execute("SELECT count(*) FROM public.pwned").fetchone()[0] == 0
            assert s.execute("SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = '_wh_scope'").fetchone()[0] == "postgres"
            assert not is_superuser(s)
        with mallory(esc, "wh_preplanted") as m:
            for sql in ("CREATE TABLE _wh_scope.x (i int)",
                        "CREATE TRIGGER t BEFORE INSERT ON _wh_scope.readers FOR EACH STATEMENT EXECUTE FUNCTION pg_catalog.suppress_redundant_updates_trigger()",
                        "ALTER TABLE _wh_scope.readers DISABLE ROW LEVEL SECURITY"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    m.execute(sql)
