"""Security: role boundaries, secrets that never leak, shadow objects, dblink rules,
tenant-scoped readers, sslmode, and hostile or bad input (each a clear error with a
proper SQLSTATE that leaves catalogs and data unchanged)."""

import datetime as dt
import os

import psycopg
import pytest

import harness

# The warehouse's today when the module's data is seeded (see the module fixture).
TODAY = None
T = "sec"
ROWS = 30
CANARY = "CANARY-" + os.urandom(6).hex()


@pytest.fixture(scope="module")
def sec(env):
    global TODAY
    with env.wh_admin() as c:
        TODAY = harness.server_today(c)
    harness.seed(env, (TODAY - dt.timedelta(days=3)).isoformat(), 4, ROWS)
    with env.warehouse.connect() as s:
        s.execute("DROP ROLE IF EXISTS nobody_login")
        s.execute("CREATE ROLE nobody_login LOGIN PASSWORD 'nobody-pw'")
        s.execute("DROP ROLE IF EXISTS acme_ro")
        s.execute("CREATE ROLE acme_ro LOGIN PASSWORD 'acme-pw'")
    with env.wh_admin() as c:
        harness.register_tenants(env, c)
        harness.register_template(c, T)
        for t in harness.TENANTS:
            c.execute("SELECT _wh.update_mv_window(%s, %s, %s, %s)", (T, t, TODAY - dt.timedelta(days=3), TODAY))
    return env


def login(env, user, password, db=None):
    return psycopg.connect(env.warehouse.tcp_dsn(db or env.warehouse_db, user, password), autocommit=True)


# ------------------------------------------------------------------ roles

def test_reader_reads_relations_and_nothing_in_wh(sec):
    with sec.wh_super() as s:
        relations = [r[0] for r in s.execute(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = '_wh' AND c.relkind IN ('r', 'v') ORDER BY 1"
        )]
        functions = s.execute(
            "SELECT count(*), count(*) FILTER (WHERE has_function_privilege('phood_ro', p.oid, 'EXECUTE')), "
            "count(*) FILTER (WHERE has_function_privilege('nobody_login', p.oid, 'EXECUTE')) "
            "FROM pg_proc p WHERE p.pronamespace = '_wh'::regnamespace AND p.proname <> ALL (%s)", (list(PUBLIC_FUNCTIONS),)
        ).fetchone()
    assert len(relations) >= 12 and functions[0] >= 40
    # Only reader_freshness (the readers' "data as of", filtered per login) is every login's.
    assert functions[1:] == (0, 0), "a reader or PUBLIC may execute a wh function"
    with sec.wh_reader() as r:
        assert r.execute(f"SELECT count(*) FROM public.{T}").fetchone()[0] == 4 * (3 * ROWS + 21)
        assert r.execute(f"SELECT count(*) FROM tenant_b.{T}").fetchone()[0] == 4 * (ROWS + 7)
        for rel in relations:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                r.execute(f"SELECT 1 FROM {rel} LIMIT 1")
        for call in ("SELECT _wh.health()", "SELECT _wh.current_date_utc()", "CALL _wh.backfill('sec', 'tenant_a', current_date, current_date)",
                     "SELECT _wh.set_template('x', 'y', 'z', 'w')"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                r.execute(call)
    with login(sec, "nobody_login", "nobody-pw") as n:
        for rel in (f"public.{T}", f"tenant_a.{T}", "_wh.tenant_connections"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                n.execute(f"SELECT 1 FROM {rel} LIMIT 1")


DEFINERS = {"_make_tenant_schema", "job_rows", "job_history_rows", "_cron_register", "_cron_owned", "_cron_unschedule",
            "_cron_set_active", "_seed_functions", "_drop_seed_functions", "_here", "reader_freshness", "_cron_forget",
            "_analyze_registry"}
# The one function every login may call: it shows each login only what it may read.
PUBLIC_FUNCTIONS = {"reader_freshness"}


def test_every_function_pins_search_path_and_works_as_wh_admin(sec):
    with sec.wh_super() as s:
        # The seeds' per-template wrappers (made when a template is set; they outlive a
        # template deleted by hand), known by the comment _seed_functions gives them.
        made = {n for (n,) in s.execute(
            "SELECT p.proname::text FROM pg_proc p WHERE p.pronamespace = '_wh'::regnamespace "
            "AND obj_description(p.oid, 'pg_proc') LIKE 'wh: the seeds'' call for template %'")}
        procs = s.execute(
            "SELECT p.proname::text, p.prokind, p.prosecdef, coalesce(p.proconfig, '{}'), "
            "p.prorettype = 'trigger'::regtype, pg_get_userbyid(p.proowner), "
            "has_function_privilege('public', p.oid, 'EXECUTE'), "
            "(SELECT rolsuper FROM pg_roles WHERE oid = p.proowner) "
            "FROM pg_proc p WHERE p.pronamespace = '_wh'::regnamespace"
        ).fetchall()
    assert len(procs) > 50
    definers = set()
    for name, kind, secdef, cfg, trigger, owner, public_exec, owner_super in procs:
        assert public_exec == (name in PUBLIC_FUNCTIONS), name
        if kind == "p":
            assert cfg == [], name  # a procedure with SET cannot COMMIT: it calls _enter()
            continue
        if name in ("_enter", "_leave"):
            assert cfg == [], name  # their settings must outlive them (the procedure's transaction)
            continue
        assert "search_path=pg_catalog, pg_temp" in cfg, (name, cfg)
        if secdef:
            definers.add(name)
            assert owner_super, name
            assert not any(c.startswith("role=") for c in cfg), name
        elif name in made:
            # The seeds' per-template wrappers: they only call wh functions, which switch role.
            assert "TimeZone=UTC" in cfg and not any(c.startswith("role=") for c in cfg), (name, cfg)
        elif not trigger and name not in ("current_date_utc", "_is_wh_job_command", "_pair_figures"):
            assert "role=wh_admin" in cfg and "TimeZone=UTC" in cfg, (name, cfg)
    # The SECURITY DEFINER helpers are exactly these narrow ones.
    assert definers == DEFINERS


def test_procedures_switch_to_wh_admin_and_give_the_caller_back(sec):
    with sec.wh_super() as s:
        bodies = dict(s.execute("SELECT proname::text, prosrc FROM pg_proc WHERE pronamespace = '_wh'::regnamespace AND prokind = 'p'").fetchall())
        for name, src in bodies.items():
            if "COMMIT;" in src:
                lines = [l.strip() for l in src.splitlines() if l.strip()]
                assert any("prev text[] := _wh._enter()" in l for l in lines), name  # first thing
                for i, l in enumerate(lines):
                    if l.startswith("COMMIT;"):  # and again after every COMMIT
                        assert "_enter()" in lines[i + 1] or "_leave(prev)" in lines[i + 1], (name, lines[i + 1])
                assert "_leave(prev)" in src, name
    # A caller of a procedure that never commits (nothing to migrate) gets its own role,
    # search_path and TimeZone back inside its transaction.
    with sec.wh_admin() as c:
        c.execute("BEGIN")
        c.execute("SET LOCAL search_path = public")
        c.execute("SET LOCAL TimeZone = 'America/Los_Angeles'")
        c.execute("CALL _wh.migrate_storage()")
        assert c.execute("SELECT current_user, current_setting('search_path'), current_setting('TimeZone')").fetchone() == (
            "whadmin", "public", "America/Los_Angeles")
        c.execute("ROLLBACK")


# ------------------------------------------------------------------ secrets

def test_canary_password_never_leaks(sec):
    with sec.source.connect() as s:
        s.execute("DROP ROLE IF EXISTS canary_ro")
        s.execute(f"CREATE ROLE canary_ro LOGIN PASSWORD '{CANARY}'")
        s.execute("GRANT CONNECT ON DATABASE tenant_a TO canary_ro")
    with sec.source_super("tenant_a") as s:
        s.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO canary_ro")
    messages = []
    with sec.wh_admin() as c:
        c.add_notice_handler(lambda n: messages.append(f"{n.severity} {n.message_primary} {n.message_detail}"))
        c.execute("SELECT _wh.set_tenant_connection('canary', '127.0.0.1', %s, 'tenant_a', 'canary_ro', %s)", (sec.source.port, CANARY))
        r = c.execute("SELECT _wh.create_mv_from_template(%s, 'canary', target_date => %s)", (T, TODAY)).fetchone()[0]
        assert r["status"] == "succeeded"
        c.execute("SELECT _wh.schedule_tenant(%s, 'canary')", (T,))
        # Now a wrong password that is itself a canary, and every way a failure is reported.
        wrong = CANARY + "-wrong"
        c.execute("SELECT _wh.set_tenant_connection('canary', '127.0.0.1', %s, 'tenant_a', 'canary_ro', %s, test_first => false)",
                  (sec.source.port, wrong))
        for call in (f"SELECT _wh.test_tenant_connection('canary')",
                     f"SELECT _wh.refresh_mv('{T}', 'canary', current_date)",
                     f"SELECT _wh.update_all_tenants('{T}')",
                     f"CALL _wh.run_scheduled('{T}', 'canary')"):
            try:
                res = c.execute(call)
                messages.append(str(res.fetchone()) if res.description else "")
            except psycopg.Error as e:
                messages.append(f"{e} {e.diag.message_detail} {e.diag.context}")
        assert any("password authentication failed" in m for m in messages), messages
        logged = c.execute(
            "SELECT string_agg(r::text, ' ') FROM _wh.run_log r"
        ).fetchone()[0] + c.execute("SELECT string_agg(a::text, ' ') FROM _wh.connection_audit a").fetchone()[0]
        c.execute("SELECT _wh.unschedule_tenant(NULL, 'canary')")
    assert CANARY not in " ".join(messages)
    assert CANARY not in logged and "password" in logged  # the field name is audited, never the value
    queries = {
        "views": "SELECT string_agg(definition, ' ') FROM pg_views",
        "matviews": "SELECT string_agg(definition, ' ') FROM pg_matviews",
        "functions": "SELECT string_agg(prosrc, ' ') FROM pg_proc",
        "user mappings": "SELECT string_agg(coalesce(umoptions::text, ''), ' ') FROM pg_user_mappings",
        "servers": "SELECT string_agg(coalesce(srvoptions::text, ''), ' ') FROM pg_foreign_server",
        "cron commands": "SELECT string_agg(command, ' ') FROM cron.job",
        "activity": "SELECT string_agg(coalesce(query, ''), ' ') FROM pg_stat_activity",
    }
    for who, conn in (("wh_reader", sec.wh_reader()), ("PUBLIC", login(sec, "nobody_login", "nobody-pw")),
                      ("wh_admin", sec.wh_admin())):
        with conn:
            for what, q in queries.items():
                if who == "wh_admin" and what in ("user mappings",):
                    continue  # members of the servers' owner may read the mapping (that is how they manage it)
                try:
                    text = conn.execute(q).fetchone()[0] or ""
                except psycopg.errors.InsufficientPrivilege:
                    text = ""  # cannot even look (e.g. the cron schema for PUBLIC)
                assert CANARY not in text, f"canary visible to {who} in {what}"
    with sec.wh_admin() as c:
        c.execute("SELECT _wh.remove_tenant('canary', drop_data => true)")


# ------------------------------------------------------------------ shadow objects

def test_shadow_objects_are_never_called(sec):
    """Objects an attacker plants in public (functions like format, tables named like
    wh's) or in the operator's own pg_temp are never used when wh functions run."""
    plants = """
    CREATE TABLE public.shadow_calls (what text);
    GRANT INSERT ON public.shadow_calls TO PUBLIC;
    CREATE FUNCTION public.format(text) RETURNS text LANGUAGE sql AS $$ INSERT INTO public.shadow_calls VALUES ('format') RETURNING 'x' $$;
    CREATE FUNCTION public.format(text, VARIADIC text[]) RETURNS text LANGUAGE sql AS $$ INSERT INTO public.shadow_calls VALUES ('format2') RETURNING 'x' $$;
    CREATE FUNCTION public.quote_ident(varchar) RETURNS text LANGUAGE sql AS $$ INSERT INTO public.shadow_calls VALUES ('quote_ident') RETURNING 'x' $$;
    CREATE FUNCTION public.to_regclass(varchar) RETURNS regclass LANGUAGE sql AS $$ INSERT INTO public.shadow_calls VALUES ('to_regclass') RETURNING NULL::regclass $$;
    CREATE FUNCTION public.hashtext(varchar) RETURNS int LANGUAGE sql AS $$ INSERT INTO public.shadow_calls VALUES ('hashtext') RETURNING 1 $$;
    CREATE FUNCTION public.pg_try_advisory_xact_lock(bigint) RETURNS boolean LANGUAGE sql AS $$ INSERT INTO public.shadow_calls VALUES ('lock') RETURNING true $$;
    CREATE FUNCTION public.dblink(varchar, varchar) RETURNS SETOF record LANGUAGE sql AS $$ INSERT INTO public.shadow_calls VALUES ('dblink') RETURNING NULL::record $$;
    CREATE TABLE public.tenant_connections (tenant_name text, server_name text);
    CREATE TABLE public.mv_templates (template_name text);
    CREATE TABLE public.slices (template_name text);
    CREATE TABLE public.run_log (operation text);
    INSERT INTO public.tenant_connections VALUES ('tenant_a', 'evil');
    """
    with sec.wh_super() as s:
        s.execute(plants)
    try:
        with sec.wh_admin() as c:
            for t in ("tenant_connections", "mv_templates", "slices", "run_log", "settings"):
                c.execute(f"CREATE TEMP TABLE {t} (x text)")
            user, password = sec.tenant_login("tenant_a")
            calls = [
                ("SELECT _wh.set_tenant_connection('tenant_a', '127.0.0.1', %s, 'tenant_a', %s, %s)", (sec.source.port, user, password)),
                ("SELECT _wh.test_tenant_connection('tenant_a')", None),
                (f"SELECT _wh.refresh_mv('{T}', 'tenant_a', current_date)", None),
                (f"SELECT _wh.update_mv_by_template('{T}', 'tenant_a')", None),
                (f"SELECT _wh.update_mv_window('{T}', 'tenant_a', current_date - 3, current_date, dry_run => true)", None),
                (f"SELECT _wh.update_all_tenants('{T}')", None),
                (f"SELECT _wh.update_tenant_union_view('{T}', 'tenant_a')", None),
                (f"SELECT _wh.update_public_view('{T}')", None),
                ("SELECT _wh.health()", None),
                ("SELECT count(*) FROM _wh.freshness", None),
            ]
            for sql, params in calls:
                r = c.execute(sql, params).fetchone()[0]
                if isinstance(r, dict) and "status" in r and "operation" in r:
                    assert r["status"] in ("succeeded", "skipped"), (sql, r)
        with sec.wh_super() as s:
            assert s.execute("SELECT count(*) FROM public.shadow_calls").fetchone()[0] == 0
            assert s.execute("SELECT count(*) FROM public.run_log").fetchone()[0] == 0
    finally:
        with sec.wh_super() as s:
            s.execute(
                "DROP TABLE public.shadow_calls, public.tenant_connections, public.mv_templates, public.slices, public.run_log;"
                "DROP FUNCTION public.format(text), public.format(text, VARIADIC text[]), public.quote_ident(varchar), "
                "public.to_regclass(varchar), public.hashtext(varchar), public.pg_try_advisory_xact_lock(bigint), "
                "public.dblink(varchar, varchar)"
            )


# ------------------------------------------------------------------ dblink

def test_admin_cannot_reach_dblink_connect_u(sec):
    with sec.wh_admin() as c:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute(f"SELECT dblink_connect_u('x', 'host=127.0.0.1 port={sec.source.port} dbname=tenant_a user=trust_ro')")


def test_source_that_asks_no_password_is_refused(sec):
    with sec.wh_admin() as c:
        # By default channel binding refuses it before dblink's own check could.
        c.execute(
            "SELECT _wh.set_tenant_connection('trusting', '127.0.0.1', %s, 'tenant_a', 'trust_ro', 'ignored-by-source', "
            "test_first => false)",
            (sec.source.port,),
        )
        t = c.execute("SELECT _wh.test_tenant_connection('trusting')").fetchone()[0]
        assert t["status"] == "failed" and "channel binding required" in t["error"], t
        c.execute(
            "SELECT _wh.set_tenant_connection('trusting', '127.0.0.1', %s, 'tenant_a', 'trust_ro', 'ignored-by-source', "
            "channel_binding => 'disable', test_first => false)",
            (sec.source.port,),
        )
        t = c.execute("SELECT _wh.test_tenant_connection('trusting')").fetchone()[0]
        assert t["status"] == "failed" and "password is required" in t["error"] and "tenant trusting" in t["error"], t
        r = c.execute("SELECT _wh.create_mv_from_template(%s, 'trusting', target_date => %s)", (T, TODAY)).fetchone()[0]
        assert r["status"] == "failed" and "password is required" in r["error"]
        logged = c.execute(
            "SELECT status, error FROM _wh.run_log WHERE tenant_name = 'trusting' AND target_date = %s ORDER BY run_id DESC LIMIT 1",
            (TODAY,),
        ).fetchone()
        assert logged[0] == "failed" and "password is required" in logged[1]
        c.execute("SELECT _wh.remove_tenant('trusting', drop_data => true)")


# ------------------------------------------------------------------ tenant-scoped readers

def test_tenant_scoped_reader_sees_only_its_tenant(sec):
    with sec.wh_admin() as c:
        r = c.execute("SELECT _wh.grant_tenant_reader('acme_ro', 'tenant_a')").fetchone()[0]
        assert r["status"] == "succeeded"
    with login(sec, "acme_ro", "acme-pw") as a:
        assert a.execute(f"SELECT count(*) FROM tenant_a.{T}").fetchone()[0] == 4 * ROWS
        # public.<template> is the all-tenant readers' view (its owner's rights): not a scoped reader's.
        for rel in (f"public.{T}", f"tenant_b.{T}", f"_wh_data.{T}"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                a.execute(f"SELECT count(*) FROM {rel}")
        # A reader's own cheap function in the WHERE clause sees only its tenant's rows,
        # through its view (row-level security applies inside it).
        a.execute("CREATE TEMP TABLE seen (v bigint)")
        a.execute("CREATE FUNCTION pg_temp.peek(v bigint) RETURNS boolean LANGUAGE plpgsql COST 0.0001 "
                  "AS $$ BEGIN INSERT INTO pg_temp.seen VALUES (v); RETURN true; END $$")
        a.execute("SET enable_indexscan = off")
        a.execute("SET enable_bitmapscan = off")
        for rel in (f"tenant_a.{T}",):
            a.execute("TRUNCATE pg_temp.seen")
            assert a.execute(f"SELECT count(*) FROM {rel} WHERE pg_temp.peek(id)").fetchone()[0] == 4 * ROWS
            assert a.execute("SELECT count(*) FROM pg_temp.seen").fetchone()[0] == 4 * ROWS, rel
    with sec.wh_admin() as c:
        # A view rebuild keeps the grant; a new day keeps working for the reader.
        c.execute(f"SELECT _wh.update_public_view('{T}')")
    with login(sec, "acme_ro", "acme-pw") as a:
        assert a.execute(f"SELECT count(*) FROM tenant_a.{T}").fetchone()[0] == 4 * ROWS
    with sec.wh_admin() as c:
        c.execute("SELECT _wh.revoke_tenant_reader('acme_ro', 'tenant_a')")
    with login(sec, "acme_ro", "acme-pw") as a:
        for rel in (f"public.{T}", f"tenant_a.{T}"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                a.execute(f"SELECT count(*) FROM {rel}")
    with sec.wh_reader() as r:
        assert r.execute(f"SELECT count(DISTINCT schema_name) FROM public.{T}").fetchone()[0] == 3


# ------------------------------------------------------------------ sslmode

def test_sslmode_require_default_verify_full_and_no_ssl_refused(sec):
    user, password = sec.tenant_login("tenant_c")
    with sec.wh_admin() as c:
        assert c.execute("SELECT sslmode FROM _wh.tenant_connections WHERE tenant_name = 'tenant_c'").fetchone()[0] == "require"
        c.execute(
            "SELECT _wh.set_tenant_connection('verified', 'localhost', %s, 'tenant_c', %s, %s, "
            "sslmode => 'verify-full', sslrootcert => %s)", (sec.source.port, user, password, sec.ca_cert),
        )
        r = c.execute("SELECT _wh.test_tenant_connection('verified')").fetchone()[0]
        assert r["details"]["ssl"] is True
        # verify-full without the CA that signed the source's certificate is refused (an
        # empty sslrootcert removes it; left out, it would be kept).
        c.execute(
            "SELECT _wh.set_tenant_connection('verified', 'localhost', %s, 'tenant_c', %s, %s, sslmode => 'verify-full', "
            "sslrootcert => '', test_first => false)", (sec.source.port, user, password),
        )
        t = c.execute("SELECT _wh.test_tenant_connection('verified')").fetchone()[0]
        assert t["status"] == "failed" and "tenant verified" in t["error"], t
        # A server without SSL (the warehouse cluster itself) is refused under the default require.
        c.execute(
            "SELECT _wh.set_tenant_connection('plaintext', '127.0.0.1', %s, 'warehouse', 'whadmin', %s, test_first => false)",
            (sec.warehouse.port, sec.admin_password),
        )
        t = c.execute("SELECT _wh.test_tenant_connection('plaintext')").fetchone()[0]
        assert t["status"] == "failed" and "SSL" in t["error"] and "tenant plaintext" in t["error"], t
        for t in ("verified", "plaintext"):
            c.execute("SELECT _wh.remove_tenant(%s)", (t,))


def test_a_password_rotation_keeps_every_other_setting(sec):
    """Issue 21, item 1: a tenant on verify-ca with its CA file, channel binding relaxed and a
    5-minute timeout. `set_tenant_connection(t, password => …)` changes the password only;
    the seeds' six-argument form changes what it names only; the CA file is a column of
    `_wh.tenant_connections` (dumped with it); a new tenant without a password is refused."""
    user, password = sec.tenant_login("tenant_c")
    settings = ("SELECT sslmode, sslrootcert, channel_binding, remote_timeout::text FROM _wh.tenant_connections "
                "WHERE tenant_name = 'rotating'")
    options = ("SELECT array_agg(o ORDER BY o) FROM pg_foreign_server s, unnest(s.srvoptions) o WHERE s.srvname = 'wh_rotating' "
               "AND split_part(o, '=', 1) IN ('sslmode', 'sslrootcert', 'channel_binding', 'options')")
    with sec.wh_admin() as c:
        c.execute("SELECT _wh.set_tenant_connection('rotating', 'localhost', %s, 'tenant_c', %s, 'old-pw', sslmode => 'verify-ca', "
                  "sslrootcert => %s, channel_binding => 'prefer', remote_timeout => '5 min', test_first => false)", (sec.source.port, user, sec.ca_cert))
        before = c.execute(settings).fetchone()
        server_before = c.execute(options).fetchone()[0]
        assert before == ("verify-ca", sec.ca_cert, "prefer", "00:05:00")
        r = c.execute("SELECT _wh.set_tenant_connection('rotating', password => %s)", (password,)).fetchone()[0]
        assert r["details"]["changed_fields"] == ["password"], r
        assert c.execute(settings).fetchone() == before and c.execute(options).fetchone()[0] == server_before
        t = c.execute("SELECT _wh.test_tenant_connection('rotating')").fetchone()[0]
        assert t["status"] == "succeeded" and t["details"]["ssl"] is True, t
        # The seeds' six arguments: host and password change, nothing else.
        r = c.execute("SELECT _wh.set_tenant_connection('rotating', '127.0.0.1', %s, 'tenant_c', %s, %s)",
                      (sec.source.port, user, password)).fetchone()[0]
        assert r["details"]["changed_fields"] == ["host"], r
        assert c.execute(settings).fetchone() == before
        audit = c.execute("SELECT changed_fields FROM _wh.connection_audit WHERE tenant_name = 'rotating' ORDER BY audit_id").fetchall()
        assert [a for (a,) in audit][1:] == [["password"], ["host"]]
        with pytest.raises(psycopg.errors.NullValueNotAllowed, match="password"):
            c.execute("SELECT _wh.set_tenant_connection('newcomer', 'localhost', %s, 'tenant_c', %s)", (sec.source.port, user))
        assert c.execute("SELECT count(*) FROM _wh.tenant_connections WHERE tenant_name = 'newcomer'").fetchone()[0] == 0
        c.execute("SELECT _wh.remove_tenant('rotating')")


# ------------------------------------------------------------------ hostile and bad input

def snapshot(c):
    return (
        c.execute("SELECT count(*), max(oid::int8) FROM pg_class").fetchone(),
        c.execute("SELECT array_agg(nspname ORDER BY nspname) FROM pg_namespace").fetchone()[0],
        c.execute("SELECT count(*), max(oid::int8) FROM pg_foreign_server").fetchone(),
        c.execute("SELECT md5(string_agg(t::text, ',' ORDER BY tenant_name)) FROM _wh.tenant_connections t").fetchone()[0],
        c.execute("SELECT md5(string_agg(m::text, ',' ORDER BY template_name)) FROM _wh.mv_templates m").fetchone()[0],
        c.execute("SELECT count(*), sum(row_count), max(refreshed_at) FROM _wh.slices").fetchone(),
        c.execute("SELECT count(*) FROM _wh.run_log").fetchone()[0],
        c.execute("SELECT count(*) FROM _wh.connection_audit").fetchone()[0],
        c.execute(f"SELECT count(*), sum(weight) FROM tenant_a.{T}").fetchone(),
    )


Q = "SELECT id, logged_time FROM phood_foodlogsum WHERE logged_time >= ''{TARGET_DATE}''::date"
TPL = "SELECT _wh.set_template('bad', '{q}', '{cols}', '{tc}'{extra})"
CONN = "SELECT _wh.set_tenant_connection({name}, '127.0.0.1', {port}, 'db', 'u', {pw}{extra})"
DAY = "SELECT _wh.create_mv_from_template('sec', {tenant}, target_date => {day})"

# (sql, expected SQLSTATE, words the message must contain)
BAD_INPUT = [
    # tenant names
    (DAY.format(tenant="'Tenant_A'", day="current_date"), "42602", "tenant_name"),
    (DAY.format(tenant="'TENANT_A'", day="current_date"), "42602", "lower-case"),
    (DAY.format(tenant="'tenant_a; drop table x'", day="current_date"), "42602", "tenant_name"),
    (DAY.format(tenant="'tenant a'", day="current_date"), "42602", "tenant_name"),
    (DAY.format(tenant="'ten''ant'", day="current_date"), "42602", "tenant_name"),
    (DAY.format(tenant="'ten\"ant'", day="current_date"), "42602", "tenant_name"),
    (DAY.format(tenant="'tënant'", day="current_date"), "42602", "tenant_name"),
    (DAY.format(tenant="repeat('a', 64)", day="current_date"), "42602", "bytes"),
    (DAY.format(tenant="''", day="current_date"), "42602", "empty"),
    (DAY.format(tenant="NULL", day="current_date"), "22004", "tenant_name"),
    (DAY.format(tenant="'nobody'", day="current_date"), "42704", "unknown tenant"),
    (CONN.format(name="'Tenant_B'", port=5432, pw="'p'", extra=""), "42602", "tenant_name"),
    (CONN.format(name="'public'", port=5432, pw="'p'", extra=""), "42602", "reserved"),
    (CONN.format(name="'pg_evil'", port=5432, pw="'p'", extra=""), "42602", "reserved"),
    (CONN.format(name="'1tenant'", port=5432, pw="'p'", extra=""), "42602", "tenant_name"),
    # template names
    ("SELECT _wh.create_mv_from_template('Sec', 'tenant_a', target_date => current_date)", "42602", "template_name"),
    ("SELECT _wh.create_mv_from_template('sec;drop', 'tenant_a', target_date => current_date)", "42602", "template_name"),
    ("SELECT _wh.create_mv_from_template(repeat('t', 41), 'tenant_a', target_date => current_date)", "42602", "bytes"),
    ("SELECT _wh.create_mv_from_template('', 'tenant_a', target_date => current_date)", "42602", "empty"),
    ("SELECT _wh.create_mv_from_template(NULL, 'tenant_a', target_date => current_date)", "22004", "template_name"),
    ("SELECT _wh.create_mv_from_template('nothing', 'tenant_a', target_date => current_date)", "42704", "unknown template"),
    ("SELECT _wh.update_public_view('Sec')", "42602", "template_name"),
    # templates
    (TPL.format(q="SELECT 1 WHERE x = {TARGET_DATE}", cols="x date", tc="x", extra=""), "22023", "quoted literal"),
    (TPL.format(q=Q + "; DROP TABLE phood_foodlogsum", cols="id bigint, logged_time timestamptz", tc="logged_time", extra=""), "22023", "';'"),
    (TPL.format(q="SELECT id, logged_time FROM phood_foodlogsum", cols="id bigint, logged_time timestamptz", tc="logged_time", extra=""), "22023", "placeholder"),
    (TPL.format(q="DELETE FROM phood_foodlogsum WHERE logged_time >= ''{TARGET_DATE}''", cols="id bigint, logged_time timestamptz", tc="logged_time", extra=""), "22023", "SELECT or WITH"),
    (TPL.format(q=Q, cols="id bigint, logged_time no_such_type", tc="logged_time", extra=""), "22023", "does not exist"),
    (TPL.format(q=Q, cols="id bigint, logged_time timestamptz", tc="created_at", extra=""), "22023", "time_column"),
    (TPL.format(q=Q, cols="id bigint, logged_time text", tc="logged_time", extra=""), "22023", "timestamptz, timestamp or date"),
    (TPL.format(q=Q, cols="id bigint, logged_time timestamptz", tc="logged_time", extra=", unique_key => 'nope'"), "22023", "unique_key"),
    (TPL.format(q=Q, cols="id bigint, logged_time timestamptz", tc="logged_time", extra=", indexes => ARRAY['(nope)']"), "22023", "index column"),
    (TPL.format(q=Q, cols="id bigint, id timestamptz", tc="id", extra=""), "22023", "twice"),
    (TPL.format(q=Q, cols="id bigint, logged_time timestamptz) ; drop table x (", tc="logged_time", extra=""), "22023", "column"),
    (TPL.format(q=Q, cols="id bigint, logged_time timestamptz", tc="logged_time", extra=", lookback_days => 99"), "22023", "lookback_days"),
    (TPL.format(q=Q, cols="id bigint, logged_time timestamptz", tc="logged_time", extra="").replace("'bad'", "'sec'"), "22023", "columns keep their place"),
    # connections
    (CONN.format(name="'tenant_x'", port=0, pw="'p'", extra=""), "22023", "port"),
    (CONN.format(name="'tenant_x'", port=70000, pw="'p'", extra=""), "22023", "port"),
    (CONN.format(name="'tenant_x'", port=5432, pw="'p'", extra=", sslmode => 'sometimes'"), "22023", "sslmode"),
    (CONN.format(name="'tenant_x'", port=5432, pw="NULL", extra=""), "22004", "password"),
    (CONN.format(name="'tenant_x'", port=5432, pw="''", extra=""), "22023", "password"),
    (CONN.format(name="'tenant_x'", port=5432, pw="'p'", extra=", remote_timeout => '10 ms'"), "22023", "remote_timeout"),
    ("SELECT _wh.set_tenant_connection('tenant_x', 'x'' password=''y', 5432, 'db', 'u', 'p')", "22023", "host"),
    # dates and windows
    (DAY.format(tenant="'tenant_a'", day="NULL"), "22004", "target_date"),
    (DAY.format(tenant="'tenant_a'", day="current_date + 30"), "22023", "after today"),
    (DAY.format(tenant="'tenant_a'", day="'infinity'::date"), "22023", "infinite"),
    ("SELECT _wh.create_mv_from_template('sec', 'tenant_a', 'tenant_b', current_date)", "22023", "target_schema"),
    ("SELECT _wh.update_mv_window('sec', 'tenant_a', current_date - 1, current_date - 5)", "22023", "before start_date"),
    ("SELECT _wh.update_mv_window('sec', 'tenant_a', NULL, current_date)", "22004", "start_date"),
    ("SELECT _wh.update_mv_window('sec', 'tenant_a', current_date - 100, current_date, max_days => 10)", "22023", "over the limit"),
    ("SELECT _wh.update_mv_window('sec', 'tenant_a', current_date - 5000, current_date)", "22023", "over the limit"),
    ("CALL _wh.backfill('sec', 'tenant_a', current_date, current_date - 3)", "22023", "before start_date"),
    ("CALL _wh.backfill('sec', 'ghost', current_date - 1, current_date)", "42704", "unknown tenant"),
    # years
    ("SELECT _wh.create_combined_table_by_year('sec', 'tenant_a', extract(year FROM current_date)::int)", "22023", "not finished"),
    ("SELECT _wh.create_combined_table_by_year('sec', 'tenant_a', extract(year FROM current_date)::int + 1)", "22023", "not finished"),
    ("SELECT _wh.create_combined_table_by_year('sec', 'tenant_a', NULL)", "22004", "year"),
    ("SELECT _wh.create_combined_table_by_year('sec', 'tenant_a', 1800)", "22023", "1900"),
    ("SELECT _wh.create_combined_table_by_year('sec', 'tenant_a', 2001)", "22023", "no day slices"),
    # lifecycle and scheduling
    ("SELECT _wh.apply_retention('sec')", "22023", "no retention"),
    ("SELECT _wh.set_slice_tablespace('sec', 'tenant_a', 2001, 'pg_default')", "22023", "fold the year first"),
    ("SELECT _wh.set_template_policy('sec', year_tablespace => 'nowhere')", "22023", "does not exist"),
    ("SELECT _wh.grant_tenant_reader('no_such_role', 'tenant_a')", "42602", "role"),
    ("SELECT _wh.schedule_tenant('sec', 'tenant_a', '* * *')", "22023", "five fields"),
    ("SELECT _wh.schedule_tenant('sec', 'tenant_a', '*/5 * * * *')", "22023", "plain minute"),
]


def test_there_are_at_least_40_bad_input_cases():
    assert len(BAD_INPUT) >= 40, len(BAD_INPUT)


@pytest.mark.parametrize("sql,sqlstate,words", BAD_INPUT, ids=[f"bad{i:02d}" for i in range(len(BAD_INPUT))])
def test_bad_input_is_a_clear_error_and_changes_nothing(sec, sql, sqlstate, words):
    with sec.wh_admin() as c:
        before = snapshot(c)
        with pytest.raises(psycopg.Error) as e:
            c.execute(sql)
        assert e.value.sqlstate == sqlstate, (sql, e.value.sqlstate, str(e.value))
        assert words in str(e.value), str(e.value)
        # Written for people: no Rust debug text (0.1.0: "CheckedName { raw: ... }").
        assert "CheckedName" not in str(e.value) and "raw:" not in str(e.value) and "Some(" not in str(e.value), str(e.value)
        assert snapshot(c) == before


def test_a_template_that_writes_fails_on_the_source_and_changes_nothing_there(sec):
    writer = (
        "WITH gone AS (DELETE FROM phood_foodlogsum RETURNING id, logged_time) "
        "SELECT id, logged_time FROM gone WHERE logged_time >= '{TARGET_DATE}'::date"
    )
    with sec.source_super("tenant_a") as s:
        before = s.execute("SELECT count(*) FROM phood_foodlogsum").fetchone()[0]
    with sec.wh_admin() as c:
        c.execute("SELECT _wh.set_template('writer', %s, 'id bigint, logged_time timestamptz', 'logged_time')", (writer,))
        r = c.execute("SELECT _wh.create_mv_from_template('writer', 'tenant_a', target_date => current_date)").fetchone()[0]
        assert r["status"] == "failed" and "tenant tenant_a" in r["error"], r
    with sec.source_super("tenant_a") as s:
        assert s.execute("SELECT count(*) FROM phood_foodlogsum").fetchone()[0] == before
