"""No path from wh_admin (or anyone less) to superuser; locks no login can hold; grants and
audit an operator cannot bend (security issue, items 1, 3, 7 and 8).

A wh_admin member, `mallory`, plants code the way an attacker would: operators and
functions on the search_path, triggers (also deferred ones) on the tables wh writes, a
domain, a view. A superuser is refused by every wh entry point (code attached to wh's
tables would run in its session, where `SET ROLE NONE` gives back its rights); an operator
uses wh as a DBA does (psql with the default search_path, and its pg_cron job's command).
Every planted function records who ran it, tries `SET ROLE NONE`, then tries to make
mallory a superuser; the tests assert it never ran with more than an operator's rights,
and that mallory never became a superuser."""

import datetime as dt

import psycopg
import pytest

import harness

T = "priv"
DAY = dt.date(2025, 3, 10)  # a fixed past day: nothing here depends on the calendar
ROWS = 12


@pytest.fixture(scope="module")
def pv(env):
    harness.seed(env, DAY.isoformat(), 3, ROWS)
    with env.warehouse.connect() as s:
        s.execute("DROP ROLE IF EXISTS mallory")
        s.execute("CREATE ROLE mallory LOGIN PASSWORD 'mallory-pw' IN ROLE wh_admin")
        s.execute("DROP ROLE IF EXISTS planter")
        s.execute("CREATE ROLE planter LOGIN PASSWORD 'planter-pw'")
        s.execute("DROP ROLE IF EXISTS priv_ro")
        s.execute("CREATE ROLE priv_ro LOGIN PASSWORD 'priv-pw'")
    with env.wh_super() as s:
        s.execute("CREATE TABLE IF NOT EXISTS public.pwned (tag text, who name, super boolean, at timestamptz DEFAULT clock_timestamp())")
        s.execute("GRANT ALL ON public.pwned TO PUBLIC")
        # A database upgraded from PostgreSQL 14 or older: PUBLIC may create in public.
        s.execute("GRANT CREATE ON SCHEMA public TO PUBLIC")
    with env.wh_admin() as c:
        harness.register_tenants(env, c)
        harness.register_template(c, T)
        for t in harness.TENANTS:
            c.execute("SELECT _wh.update_mv_window(%s, %s, %s, %s)", (T, t, DAY, DAY + dt.timedelta(days=2)))
    yield env
    with env.wh_super() as s:
        s.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        for role in ("planter", "mallory", "priv_ro"):
            s.execute(f"DROP OWNED BY {role}")
            s.execute(f"DROP ROLE {role}")
        s.execute("DROP TABLE IF EXISTS public.pwned")


def login(env, user, password):
    return psycopg.connect(env.warehouse.tcp_dsn(env.warehouse_db, user, password), autocommit=True)


def mallory(env):
    return login(env, "mallory", "mallory-pw")


PWN = """
CREATE OR REPLACE FUNCTION public.pwn(tag text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    BEGIN
        PERFORM pg_catalog.set_config('role', 'none', true);  -- back to the session's login
    EXCEPTION WHEN OTHERS THEN NULL;
    END;
    INSERT INTO public.pwned (tag, who, super)
    VALUES (tag, current_user, (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user));
    BEGIN
        EXECUTE 'ALTER ROLE mallory SUPERUSER';
    EXCEPTION WHEN OTHERS THEN NULL;
    END;
    RETURN true;
END $$;
"""

# Operators and functions that match expressions better than pg_catalog's (exact types
# where pg_catalog needs an implicit cast), as planted on 0.1.0.
PLANTS = [
    "CREATE FUNCTION public.p_div(float8, numeric) RETURNS float8 LANGUAGE plpgsql AS "
    "$$ BEGIN PERFORM public.pwn('float8 / numeric'); RETURN $1 / $2::float8; END $$",
    "CREATE OPERATOR public./ (LEFTARG = float8, RIGHTARG = numeric, FUNCTION = public.p_div)",
    "CREATE FUNCTION public.p_mul(numeric, int4) RETURNS numeric LANGUAGE plpgsql AS "
    "$$ BEGIN PERFORM public.pwn('numeric * int4'); RETURN $1 * $2::numeric; END $$",
    "CREATE OPERATOR public.* (LEFTARG = numeric, RIGHTARG = int4, FUNCTION = public.p_mul)",
    "CREATE FUNCTION public.p_eq(text, varchar) RETURNS boolean LANGUAGE plpgsql AS "
    "$$ BEGIN PERFORM public.pwn('text = varchar'); RETURN $1 = $2::text; END $$",
    "CREATE OPERATOR public.= (LEFTARG = text, RIGHTARG = varchar, FUNCTION = public.p_eq)",
    "CREATE FUNCTION public.p_cat(text, int8) RETURNS text LANGUAGE plpgsql AS "
    "$$ BEGIN PERFORM public.pwn('text || int8'); RETURN $1 || $2::text; END $$",
    "CREATE OPERATOR public.|| (LEFTARG = text, RIGHTARG = int8, FUNCTION = public.p_cat)",
    "CREATE FUNCTION public.split_part(name, text, int4) RETURNS text LANGUAGE plpgsql AS "
    "$$ BEGIN PERFORM public.pwn('split_part(name)'); RETURN pg_catalog.split_part($1::text, $2, $3); END $$",
    "CREATE FUNCTION public.quote_ident(name) RETURNS text LANGUAGE plpgsql AS "
    "$$ BEGIN PERFORM public.pwn('quote_ident(name)'); RETURN pg_catalog.quote_ident($1::text); END $$",
    "CREATE FUNCTION public.lower(name) RETURNS text LANGUAGE plpgsql AS "
    "$$ BEGIN PERFORM public.pwn('lower(name)'); RETURN pg_catalog.lower($1::text); END $$",
    "CREATE FUNCTION public.format(text, name) RETURNS text LANGUAGE plpgsql AS "
    "$$ BEGIN PERFORM public.pwn('format(text, name)'); RETURN pg_catalog.format($1, $2::text); END $$",
    "CREATE FUNCTION public.pwn_trigger() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN PERFORM public.pwn('trigger'); RETURN NULL; END $$",
]


def uses_wh(env, s, refused: bool):
    """What a DBA does in psql (default search_path "$user", public). As a superuser every
    call is refused (42501) before it runs anything; as an operator each succeeds."""
    user, password = env.tenant_login("tenant_a")
    d0, d2 = DAY, DAY + dt.timedelta(days=2)
    assert s.execute("SHOW search_path").fetchone()[0] == '"$user", public'
    calls = [
        ("SELECT _wh.set_tenant_connection('tenant_a', '127.0.0.1', %s, 'tenant_a', %s, %s)", (env.source.port, user, password)),
        ("SELECT _wh.test_tenant_connection('tenant_a')", None),
        ("SELECT _wh.update_mv_window(%s, 'tenant_a', %s, %s, force_recreate => true)", (T, d0, d2)),
        ("SELECT _wh.update_mv_by_template(%s, 'tenant_b', %s)", (T, d2)),
        ("SELECT _wh.update_all_tenants(%s, %s)", (T, d2)),
        ("CALL _wh.backfill(%s, 'tenant_c', %s, %s, force_recreate => true)", (T, d0, d2)),
        ("CALL _wh.rebuild_warehouse('tenant_b', %s)", (T,)),
        ("SELECT _wh.update_tenant_union_view(%s, 'tenant_c')", (T,)),
        ("SELECT _wh.update_public_view(%s)", (T,)),
        ("SELECT _wh.run_maintenance()", None),
        ("SELECT _wh.grant_tenant_reader('priv_ro', 'tenant_a')", None),
        ("SELECT _wh.revoke_tenant_reader('priv_ro', 'tenant_a')", None),
        ("SELECT _wh.set_template_policy(%s, stale_after => '12 hours')", (T,)),
        ("SELECT _wh.schedule_tenant(%s, 'tenant_a')", (T,)),
        ("CALL _wh.run_scheduled(%s, 'tenant_a')", (T,)),
    ]
    for sql, args in calls:
        if refused:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="refusing to work in the session") as e:
                s.execute(sql, args)
            assert e.value.diag.message_hint and "operator" in e.value.diag.message_hint
        else:
            s.execute(sql, args)
    # Reading wh's monitoring is safe for anyone with access (superuser-owned views over
    # superuser-owned tables, or narrow SECURITY DEFINER readers).
    for sql in ("SELECT _wh.health()", "SELECT count(*) FROM _wh.freshness", "SELECT count(*) FROM _wh.failures",
                "SELECT count(*) FROM _wh.storage", "SELECT count(*) FROM _wh.partitions", "SELECT count(*) FROM _wh.jobs",
                "SELECT count(*) FROM _wh.job_history"):
        s.execute(sql)
    if not refused:
        # The operator's pg_cron job runs as the operator: its command, run as pg_cron does.
        owner, command = s.execute("SELECT username, command FROM _wh.jobs WHERE jobname = %s", (f"wh:{T}:tenant_a",)).fetchone()
        assert owner == "whadmin"
        with env.wh_admin() as job:
            job.execute(command)
        s.execute("SELECT _wh.unschedule_tenant(%s, 'tenant_a')", (T,))


def test_planted_operators_triggers_and_functions_never_run_as_superuser(pv):
    with pv.wh_super() as s:
        s.execute("TRUNCATE public.pwned")
    # A changed row at the source, so the operator's refresh writes (and fires triggers).
    with pv.source_super("tenant_a") as src:
        src.execute("UPDATE phood_foodlogsum SET weight = weight + 1 WHERE id = (SELECT min(id) FROM phood_foodlogsum "
                    "WHERE logged_time >= %s::date AND logged_time < %s::date + 1)", (DAY, DAY))
    with mallory(pv) as m:
        m.execute(PWN)
        for p in PLANTS:
            m.execute(p)
        # Triggers on the table wh_admin owns, fired by wh's own DML: one at once, one
        # deferred to COMMIT (after wh's functions have returned).
        m.execute(f"CREATE TRIGGER pwn AFTER INSERT OR DELETE ON _wh_data.{T} FOR EACH STATEMENT EXECUTE FUNCTION public.pwn_trigger()")
        part = m.execute(f"SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                         f"WHERE i.inhparent = '_wh_data.{T}'::regclass ORDER BY 1 LIMIT 1").fetchone()[0]
        m.execute(f"CREATE CONSTRAINT TRIGGER pwn_deferred AFTER INSERT ON _wh_data.{part} DEFERRABLE INITIALLY DEFERRED "
                  f"FOR EACH ROW EXECUTE FUNCTION public.pwn_trigger()")
    try:
        with pv.wh_super() as s:
            uses_wh(pv, s, refused=True)
            assert s.execute("SELECT count(*) FROM public.pwned").fetchone()[0] == 0, "a refused call ran code"
        # Other logins more privileged than wh_admin are refused too.
        with pv.wh_super() as s:
            s.execute("DROP ROLE IF EXISTS roler")
            s.execute("CREATE ROLE roler LOGIN CREATEROLE PASSWORD 'roler-pw' IN ROLE wh_admin")
        with login(pv, "roler", "roler-pw") as r:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="CREATEROLE"):
                r.execute("SELECT _wh.update_public_view(%s)", (T,))
        with pv.wh_admin() as c:
            uses_wh(pv, c, refused=False)
        with pv.wh_super() as s:
            ran = s.execute("SELECT tag, who::text, super FROM public.pwned").fetchall()
            is_super = s.execute("SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'").fetchone()[0]
        assert not is_super, "mallory became a superuser"
        # The triggers fired (wh's DML ran), never with more than the operator's rights;
        # the planted operators and functions were never even found.
        assert ran and {r[0] for r in ran} == {"trigger"}, ran
        assert {r[2] for r in ran} == {False}, ran
        assert {r[1] for r in ran} <= {"wh_admin", "whadmin"}, ran
    finally:
        with mallory(pv) as m:
            m.execute(f"DROP TRIGGER IF EXISTS pwn ON _wh_data.{T}")
            m.execute(f"DROP TRIGGER IF EXISTS pwn_deferred ON _wh_data.{part}")
        with pv.wh_super() as s:
            s.execute("DROP ROLE IF EXISTS roler")


def test_the_same_plants_by_a_plain_login_never_run_in_an_operators_refresh(pv):
    """PUBLIC may create in public (pre-15 databases): a login with no rights plants, an
    operator refreshes; on 0.1.0 the planted code read every tenant password."""
    with pv.wh_super() as s:
        s.execute("TRUNCATE public.pwned")
        s.execute("DROP FUNCTION IF EXISTS public.p_div(float8, numeric) CASCADE")
    with login(pv, "planter", "planter-pw") as n:
        n.execute("CREATE FUNCTION public.p_div(float8, numeric) RETURNS float8 LANGUAGE plpgsql AS "
                  "$$ BEGIN PERFORM public.pwn('nobody: float8 / numeric'); RETURN $1 / $2::float8; END $$")
        n.execute("CREATE OPERATOR public./ (LEFTARG = float8, RIGHTARG = numeric, FUNCTION = public.p_div)")
    with pv.wh_admin() as c:
        c.execute("SELECT _wh.update_mv_window(%s, 'tenant_a', %s, %s, force_recreate => true)", (T, DAY, DAY))
        c.execute("SELECT _wh.update_all_tenants(%s, %s)", (T, DAY))
        c.execute("SELECT _wh.health()")
    with pv.wh_super() as s:
        assert s.execute("SELECT count(*) FROM public.pwned").fetchone()[0] == 0


def test_wh_admin_cannot_make_schemas_and_tenant_names_cannot_shadow_roles_or_foreign_schemas(pv):
    with mallory(pv) as m:
        # "$user" is first on every default search_path: a schema named like a superuser.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            m.execute("CREATE SCHEMA postgres")
    with pv.wh_super() as s:
        s.execute("DROP SCHEMA IF EXISTS lookalike CASCADE")
        s.execute("CREATE SCHEMA lookalike")
        before = s.execute("SELECT count(*) FROM _wh.tenant_connections").fetchone()[0]
        servers = s.execute("SELECT count(*) FROM pg_foreign_server").fetchone()[0]
    user, password = pv.tenant_login("tenant_a")
    cases = [("postgres", "42939", "role"), ("mallory", "42939", "role"), ("public", "42602", "reserved"),
             ("lookalike", "42P06", "was not made by wh")]
    with pv.wh_admin() as c:
        for name, state, words in cases:
            with pytest.raises(psycopg.Error) as e:
                c.execute("SELECT _wh.set_tenant_connection(%s, '127.0.0.1', %s, 'tenant_a', %s, %s)",
                          (name, pv.source.port, user, password))
            assert e.value.sqlstate == state and words in str(e.value), (name, str(e.value))
    with pv.wh_super() as s:
        assert s.execute("SELECT count(*) FROM _wh.tenant_connections").fetchone()[0] == before
        assert s.execute("SELECT count(*) FROM pg_foreign_server").fetchone()[0] == servers
        assert s.execute("SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'lookalike'").fetchone()[0] == "postgres"
        s.execute("DROP SCHEMA lookalike")


def test_a_domain_type_or_injected_clause_is_refused_at_set_template_and_on_use(pv):
    with mallory(pv) as m:
        m.execute(PWN)
        m.execute("DROP DOMAIN IF EXISTS public.evil_int")
        m.execute("CREATE DOMAIN public.evil_int AS int CHECK (public.pwn('domain check'))")
    q = ("SELECT f.id, f.logged_time, 1 AS n FROM phood_foodlogsum f "
         "WHERE f.logged_time >= '{TARGET_DATE}'::date AND f.logged_time < '{TARGET_DATE}'::date + 1")
    with pv.wh_super() as s:
        s.execute("TRUNCATE public.pwned")
    with pv.wh_admin() as s:
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="not a superuser"):
            s.execute("SELECT _wh.set_template('evil', %s, 'id bigint, logged_time timestamptz, n public.evil_int', 'logged_time')", (q,))
        s.execute("SELECT _wh.set_template('evil', %s, 'id bigint, logged_time timestamptz, n int', 'logged_time')", (q,))
    # Written straight into the table by an operator: refused when wh next uses it.
    with mallory(pv) as m:
        for defs in ("id bigint, logged_time timestamptz, n public.evil_int",
                     "id bigint, logged_time timestamptz, n int DEFAULT 1 CHECK (public.pwn('injected check'))"):
            m.execute("UPDATE _wh.mv_templates SET column_definitions = %s WHERE template_name = 'evil'", (defs,))
            with pv.wh_admin() as s:
                with pytest.raises(psycopg.errors.InvalidParameterValue, match="not a superuser|clause|not a plain type name"):
                    s.execute("SELECT _wh.create_mv_from_template('evil', 'tenant_a', target_date => %s)", (DAY,))
    with pv.wh_super() as s:
        assert s.execute("SELECT count(*) FROM public.pwned").fetchone()[0] == 0
        assert s.execute("SELECT count(*) FROM _wh.slices WHERE template_name = 'evil'").fetchone()[0] == 0
        s.execute("DELETE FROM _wh.mv_templates WHERE template_name = 'evil'")
        s.execute("DROP TABLE IF EXISTS _wh_data.evil CASCADE")


def test_a_tenant_connection_back_to_the_warehouse_gets_no_superuser_session(pv):
    """The source is the warehouse itself, as postgres over its trusted Unix socket: dblink
    runs as wh_admin (never as a superuser: wh refuses superuser sessions), so it demands
    a password the server used; nothing runs there."""
    sock = f"{pv.run_dir}/sock"
    q = ("SELECT 1::bigint AS id, x.d::timestamptz AS logged_time FROM "
         "(SELECT '{TARGET_DATE}'::date AS d, public.pwn('via self connection') AS p) x")
    with pv.wh_super() as s:
        s.execute("TRUNCATE public.pwned")
    with mallory(pv) as m:
        m.execute("SELECT _wh.set_tenant_connection('selfie', %s, %s, %s, 'postgres', 'anything', "
                  "sslmode => 'disable', channel_binding => 'disable', test_first => false)", (sock, pv.warehouse.port, pv.warehouse_db))
        m.execute("SELECT _wh.set_template('selfie_t', %s, 'id bigint, logged_time timestamptz', 'logged_time')", (q,))
    try:
        with pv.wh_admin() as c:
            r = c.execute("SELECT _wh.create_mv_from_template('selfie_t', 'selfie', target_date => %s)", (DAY,)).fetchone()[0]
            assert r["status"] == "failed" and "password is required" in r["error"], r
        with pv.wh_super() as s:
            assert s.execute("SELECT count(*) FROM public.pwned").fetchone()[0] == 0
            assert not s.execute("SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'").fetchone()[0]
    finally:
        with pv.wh_admin() as c:
            c.execute("SELECT _wh.remove_tenant('selfie')")
        with pv.wh_super() as s:
            s.execute("DELETE FROM _wh.mv_templates WHERE template_name = 'selfie_t'")
            s.execute("DROP TABLE IF EXISTS _wh_data.selfie_t CASCADE")


def test_a_view_replaced_by_an_operator_is_never_read_by_wh(pv):
    """README: a superuser never reads tenant views (wh_admin owns them). wh itself never
    reads them: refreshes and repairs leave the planted function uncalled."""
    with mallory(pv) as m:
        m.execute(PWN)
        cols = m.execute(f"SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) FROM pg_attribute "
                         f"WHERE attrelid = 'tenant_c.{T}'::regclass AND attnum > 0").fetchone()[0]
        m.execute(f"CREATE OR REPLACE VIEW tenant_c.{T} WITH (security_invoker = true) AS SELECT {cols} FROM public.{T} "
                  f"WHERE schema_name = 'tenant_c' AND public.pwn('replaced view')")
    with pv.wh_super() as s:
        s.execute("TRUNCATE public.pwned")
    with pv.wh_admin() as c:
        c.execute("SELECT _wh.update_mv_window(%s, 'tenant_c', %s, %s, force_recreate => true)", (T, DAY, DAY))
        c.execute("CALL _wh.rebuild_warehouse('tenant_c', %s)", (T,))
        c.execute("SELECT _wh.run_maintenance()")
    with pv.wh_super() as s:
        assert s.execute("SELECT count(*) FROM public.pwned").fetchone()[0] == 0
    # Read by the BI login, as README says, the planted code runs with reader rights.
    with pv.wh_reader() as r:
        r.execute(f"SELECT count(*) FROM tenant_c.{T}")
    with pv.wh_super() as s:
        assert set(s.execute("SELECT who::text, super FROM public.pwned").fetchall()) == {("phood_ro", False)}
        assert not s.execute("SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'").fetchone()[0]
        s.execute(f"DROP VIEW tenant_c.{T}")
    with pv.wh_admin() as c:
        c.execute("SELECT _wh.update_tenant_union_view(%s, 'tenant_c')", (T,))


# ------------------------------------------------------------------ locks (item 3)

def test_no_login_can_hold_whs_locks_and_repeated_busy_shows_as_a_failure(pv):
    key = f"wh:job:tenant:{T}:tenant_a"
    with login(pv, "planter", "planter-pw") as n:
        # 0.1.0's advisory key: held by a login with no rights, it no longer stops anything.
        n.execute("SELECT pg_advisory_lock(hashtext(%s), 0)", (key,))
        with pv.wh_admin() as s:
            s.execute("CALL _wh.run_scheduled(%s, 'tenant_a')", (T,))
            last = s.execute("SELECT status FROM _wh.run_log WHERE operation = 'update_mv_by_template' AND tenant_name = 'tenant_a' "
                             "AND template_name = %s ORDER BY run_id DESC LIMIT 1", (T,)).fetchone()[0]
            assert last == "succeeded"
        for rel in ("_wh.run_locks", "_wh.slices", "_wh.mv_templates"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                n.execute(f"SELECT 1 FROM {rel} FOR UPDATE")
    # An operator's session that holds the job's row (a stuck run): three runs skip as busy,
    # and that shows in _wh.failures and health().
    holder = pv.wh_admin(autocommit=False)
    try:
        assert holder.execute("SELECT _wh._try_run_lock(%s)", (key,)).fetchone()[0] is True
        with pv.wh_admin() as s:
            for _ in range(3):
                s.execute("CALL _wh.run_scheduled(%s, 'tenant_a')", (T,))
            busy = s.execute("SELECT sqlstate, message FROM _wh.failures WHERE operation = 'scheduled_tenant' "
                             "AND tenant_name = 'tenant_a' AND template_name = %s", (T,)).fetchall()
            assert busy and busy[0][0] == "55P03" and "busy 3 times" in busy[0][1], busy
            h = s.execute("SELECT _wh.health()").fetchone()[0]
            assert h["failures_24h"] >= 1 and h["status"] == "degraded"
    finally:
        holder.rollback()
        holder.close()
    with pv.wh_admin() as s:
        s.execute("CALL _wh.run_scheduled(%s, 'tenant_a')", (T,))
        assert s.execute("SELECT count(*) FROM _wh.failures WHERE operation = 'scheduled_tenant' AND template_name = %s "
                         "AND sqlstate = '55P03'", (T,)).fetchone()[0] == 0


def test_waiting_for_a_held_day_is_bounded(pv):
    holder = pv.wh_admin(autocommit=False)
    try:
        holder.execute("SELECT 1 FROM _wh.slices WHERE template_name = %s AND tenant_name = 'tenant_b' AND range_start = %s FOR UPDATE",
                       (T, DAY))
        with pv.wh_admin() as c:
            c.execute("SET lock_timeout = 0")  # the caller would wait forever; wh waits at most 10 s
            r = c.execute("SELECT _wh.update_mv_by_template(%s, 'tenant_b', %s, allow_refresh_yesterday => false, wait_for_lock => true)",
                          (T, DAY)).fetchone()[0]
            x = r["results"][0]
            assert x["status"] == "skipped" and x["details"]["reason"] == "busy", r
    finally:
        holder.rollback()
        holder.close()


# ------------------------------------------------------------------ dblink (item 7)

def test_dblink_is_not_publics(pv):
    with pv.wh_super() as s:
        rows = s.execute(
            "SELECT p.oid::regprocedure::text, has_function_privilege('planter', p.oid, 'EXECUTE'), "
            "has_function_privilege('phood_ro', p.oid, 'EXECUTE'), has_function_privilege('wh_admin', p.oid, 'EXECUTE') "
            "FROM pg_proc p JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e' "
            "JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'dblink'").fetchall()
    assert len(rows) >= 40
    assert [r[0] for r in rows if r[1] or r[2]] == []
    assert [r[0] for r in rows if not r[3]] == ["dblink_connect_u(text)", "dblink_connect_u(text,text)"]
    with login(pv, "planter", "planter-pw") as n:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            n.execute(f"SELECT dblink_connect('guess', 'host=127.0.0.1 port={pv.source.port} dbname=tenant_a user=tenant_a_ro password=guess')")


# ------------------------------------------------------------------ readers and audit (item 8)

def test_tenant_readers_are_real_scoped_roles_bound_to_the_role_granted(pv):
    with pv.wh_super() as s:
        before = s.execute("SELECT count(*) FROM _wh.tenant_readers").fetchone()[0]
    with pv.wh_admin() as c:
        for role, words in (("wh_reader", "own roles"), ("wh_admin", "own roles"), ("pg_read_all_data", "own roles"),
                            ("postgres", "superuser"), ("phood_ro", "member of wh_reader")):
            with pytest.raises(psycopg.errors.InvalidName, match=words):
                c.execute("SELECT _wh.grant_tenant_reader(%s, 'tenant_a')", (role,))
    with pv.wh_super() as s:
        assert s.execute("SELECT count(*) FROM _wh.tenant_readers").fetchone()[0] == before
        s.execute("DROP ROLE IF EXISTS bob_ro")
        s.execute("CREATE ROLE bob_ro LOGIN PASSWORD 'bob-pw'")
    with pv.wh_admin() as c:
        c.execute("SELECT _wh.grant_tenant_reader('bob_ro', 'tenant_a')")
    with login(pv, "bob_ro", "bob-pw") as b:
        assert b.execute(f"SELECT count(*) FROM tenant_a.{T}").fetchone()[0] > 0
        with pytest.raises(psycopg.errors.InsufficientPrivilege):  # the all-tenant readers' view
            b.execute(f"SELECT count(*) FROM public.{T}")
    # The role is dropped (DROP OWNED removes its grants and policy membership), and a new
    # role takes its name: it gets nothing, even after wh re-applies grants.
    with pv.wh_super() as s:
        s.execute("DROP OWNED BY bob_ro")
        s.execute("DROP ROLE bob_ro")
        s.execute("CREATE ROLE bob_ro LOGIN PASSWORD 'bob-pw'")
    with pv.wh_admin() as c:
        c.execute("SELECT _wh.update_public_view(%s)", (T,))
        c.execute("SELECT _wh.update_tenant_union_view(%s, 'tenant_a')", (T,))
    with login(pv, "bob_ro", "bob-pw") as b:
        for sql in (f"SELECT count(*) FROM public.{T}", f"SELECT count(*) FROM tenant_a.{T}"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                b.execute(sql)
    # And the stale grant can be revoked by name through the API.
    with pv.wh_super() as s:
        s.execute("DROP ROLE bob_ro")
    with pv.wh_admin() as c:
        r = c.execute("SELECT _wh.revoke_tenant_reader('bob_ro', 'tenant_a')").fetchone()[0]
        assert r["details"]["role_dropped"] is True
        assert c.execute("SELECT count(*) FROM _wh.tenant_readers WHERE role_name = 'bob_ro'").fetchone()[0] == 0


def test_audit_and_run_log_name_the_real_login_and_time(pv):
    with pv.wh_admin() as c:
        c.execute("INSERT INTO _wh.connection_audit (tenant_name, action, changed_by, session_user_name, changed_at) "
                  "VALUES ('forged', 'update', 'postgres', 'postgres', '2000-01-01')")
        row = c.execute("SELECT changed_by::text, session_user_name::text, changed_at > now() - interval '1 minute' "
                        "FROM _wh.connection_audit WHERE tenant_name = 'forged'").fetchone()
        assert row == ("whadmin", "whadmin", True)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("DELETE FROM _wh.connection_audit WHERE tenant_name = 'forged'")
        run_id, by = c.execute("SELECT run_id, run_by::text FROM _wh.run_log ORDER BY run_id DESC LIMIT 1").fetchone()
        c.execute("UPDATE _wh.run_log SET run_by = 'postgres', started_at = '2000-01-01' WHERE run_id = %s", (run_id,))
        assert c.execute("SELECT run_by::text, started_at > '2001-01-01' FROM _wh.run_log WHERE run_id = %s", (run_id,)).fetchone() == (by, True)
        # Runs are logged under the login that called, though wh works as wh_admin.
        c.execute("SELECT _wh.health()")
        c.execute("SELECT _wh.update_mv_by_template(%s, 'tenant_a', %s, allow_refresh_yesterday => false)", (T, DAY))
        assert c.execute("SELECT run_by::text FROM _wh.run_log ORDER BY run_id DESC LIMIT 1").fetchone()[0] == "whadmin"
