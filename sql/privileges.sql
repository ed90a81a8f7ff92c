-- How wh keeps every call at wh_admin's privileges (see SECURITY.md, "Privileges").
--
-- Functions get `SET search_path = pg_catalog, pg_temp SET role = wh_admin` in
-- sql/grants.sql. Procedures cannot carry SET clauses (a procedure with one cannot
-- COMMIT), so they call _enter() first and after every COMMIT, and _leave() at the end.
-- The few SECURITY DEFINER helpers below do one narrow thing each, pin their search_path
-- and are executable by wh_admin only (sql/grants.sql).

-- Pin search_path, switch to wh_admin and to UTC for the rest of this transaction;
-- returns the caller's role, search_path and TimeZone for _leave(). Every name is pg_catalog-qualified: it runs
-- before anything is pinned.
CREATE FUNCTION @extschema@._enter() RETURNS text[]
LANGUAGE plpgsql VOLATILE AS $body$
DECLARE
    prev text[] := ARRAY[pg_catalog.current_setting('role'), pg_catalog.current_setting('search_path'),
                         pg_catalog.current_setting('TimeZone')];
BEGIN
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    PERFORM @extschema@._check_caller();
    PERFORM pg_catalog.set_config('role', 'wh_admin', true);
    PERFORM pg_catalog.set_config('TimeZone', 'UTC', true);
    RETURN prev;
END
$body$;
COMMENT ON FUNCTION @extschema@._enter() IS
    'wh internal: a procedure''s transaction runs as wh_admin with a pinned search_path';

-- Back to the caller's role, search_path and TimeZone (a procedure that never committed runs in the
-- caller's transaction, which must not go on as wh_admin).
CREATE FUNCTION @extschema@._leave(prev text[]) RETURNS void
LANGUAGE plpgsql VOLATILE AS $body$
BEGIN
    PERFORM pg_catalog.set_config('role', prev[1], true);
    PERFORM pg_catalog.set_config('search_path', prev[2], true);
    PERFORM pg_catalog.set_config('TimeZone', prev[3], true);
END
$body$;

-- Check (p_create false) or make (true) the schema of a tenant. wh_admin has no CREATE on
-- the database; this is the one path that makes schemas, and it refuses names that would
-- let a wh_admin member put objects on someone else's search_path: reserved schemas, a
-- role's name ("$user"), and a schema wh did not make (not owned by wh_admin).
CREATE FUNCTION @extschema@._make_tenant_schema(p_tenant text, p_create boolean) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $body$
DECLARE
    owner_name name;
BEGIN
    IF p_tenant IS NULL OR p_tenant !~ '^[a-z_][a-z0-9_]*$' OR pg_catalog.octet_length(p_tenant) > 63 THEN
        RAISE EXCEPTION 'wh: tenant_name %: not a valid schema name', pg_catalog.quote_literal(coalesce(p_tenant, 'NULL'))
            USING ERRCODE = 'invalid_name';
    END IF;
    IF p_tenant IN ('public', 'information_schema', '_wh', 'cron') OR p_tenant ~ '^(pg|_wh)_' THEN
        RAISE EXCEPTION 'wh: tenant_name %: the name of a schema PostgreSQL or wh reserves', p_tenant
            USING ERRCODE = 'reserved_name', HINT = 'Choose another tenant name.';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.rolname = p_tenant) THEN
        RAISE EXCEPTION 'wh: tenant_name %: a role has this name, and a schema named like a role is on that role''s default search_path ("$user")', p_tenant
            USING ERRCODE = 'reserved_name', HINT = 'Choose a tenant name that is not the name of a role.';
    END IF;
    SELECT r.rolname INTO owner_name
    FROM pg_catalog.pg_namespace n JOIN pg_catalog.pg_roles r ON r.oid = n.nspowner
    WHERE n.nspname = p_tenant;
    IF FOUND AND owner_name <> 'wh_admin' THEN
        RAISE EXCEPTION 'wh: tenant_name %: schema % exists and was not made by wh (owner %)', p_tenant, p_tenant, owner_name
            USING ERRCODE = 'duplicate_schema',
                  HINT = 'Choose another tenant name; wh never takes over a schema it did not make.';
    END IF;
    IF NOT p_create OR FOUND THEN
        RETURN false;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM @extschema@.tenant_connections c WHERE c.tenant_name = p_tenant) THEN
        RAISE EXCEPTION 'wh: tenant_name %: no such tenant (see _wh.tenant_connections)', p_tenant
            USING ERRCODE = 'undefined_object';
    END IF;
    EXECUTE pg_catalog.format('CREATE SCHEMA %I AUTHORIZATION wh_admin', p_tenant);
    RETURN true;
END
$body$;
COMMENT ON FUNCTION @extschema@._make_tenant_schema(text, boolean) IS
    'wh internal: the only path that creates a tenant schema (wh_admin has no CREATE on the database)';

-- pg_cron shows a non-superuser only its own jobs and lets it change only those. Every
-- wh_admin member sees every wh job (with its owner), and may remove one; nothing here
-- lets anyone write a job's command.
CREATE FUNCTION @extschema@.job_rows()
RETURNS TABLE (jobid bigint, jobname text, schedule text, command text, username text, active boolean,
               last_start timestamptz, last_end timestamptz, last_status text, last_message text)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $body$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_cron') THEN
        RETURN;
    END IF;
    RETURN QUERY EXECUTE $q$
        SELECT j.jobid, j.jobname::text, j.schedule, j.command, j.username::text, j.active,
               d.start_time, d.end_time, d.status, d.return_message
        FROM cron.job j
        JOIN @extschema@.cron_jobs w ON w.jobid OPERATOR(pg_catalog.=) j.jobid AND w.username OPERATOR(pg_catalog.=) j.username::name
                                     AND w.jobname OPERATOR(pg_catalog.=) j.jobname AND w.command OPERATOR(pg_catalog.=) j.command
                                     AND w.made_in OPERATOR(pg_catalog.=) @extschema@._here()
        LEFT JOIN LATERAL (SELECT * FROM cron.job_run_details x WHERE x.jobid OPERATOR(pg_catalog.=) j.jobid
                           ORDER BY x.runid DESC LIMIT 1) d ON true
        ORDER BY j.jobname, j.jobid $q$;
END
$body$;
COMMENT ON FUNCTION @extschema@.job_rows() IS
    'wh: the pg_cron jobs wh made (recorded in _wh.cron_jobs), every operator''s, with their last run';

-- The commands wh's jobs run (src/cronspec.rs), matched whole: a job whose command only
-- starts like one ('SELECT _wh.health(); …') is not wh's.
CREATE FUNCTION @extschema@._is_wh_job_command(p_command text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN p_command OPERATOR(pg_catalog.~) ('^(CALL _wh\.run_scheduled(_all|_fold|_verify)?\(''[a-z_][a-z0-9_]*''(, ''[a-z0-9_]+'')?'
                                         '(, ''[a-z0-9 :]+'', (true|false))?\)|CALL _wh\.run_pool\([1-9][0-9]?\)|SELECT _wh\.run_maintenance\(\))$');

-- This warehouse: the cluster's system identifier and the database's oid (a dump restored
-- elsewhere carries the old one in _wh.cron_jobs.made_in).
CREATE FUNCTION @extschema@._here() RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
RETURN (SELECT c.system_identifier::text OPERATOR(pg_catalog.||) ':' OPERATOR(pg_catalog.||) d.oid::text
        FROM pg_catalog.pg_control_system() c, pg_catalog.pg_database d
        WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database());
COMMENT ON FUNCTION @extschema@._here() IS
    'wh internal: this cluster and database, as _wh.cron_jobs.made_in records them';
ALTER TABLE @extschema@.tenant_readers ALTER COLUMN made_in SET DEFAULT @extschema@._here();

-- Forget a recorded job made in another warehouse (a restored row: this pg_cron never had
-- it). Rows made here are removed only with their job (_cron_unschedule).
CREATE FUNCTION @extschema@._cron_forget(p_made_in text, p_jobid bigint) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $body$
DECLARE
    n bigint;
BEGIN
    DELETE FROM @extschema@.cron_jobs WHERE made_in OPERATOR(pg_catalog.=) p_made_in AND jobid OPERATOR(pg_catalog.=) p_jobid
        AND made_in OPERATOR(pg_catalog.<>) @extschema@._here();
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n OPERATOR(pg_catalog.>) 0;
END
$body$;
COMMENT ON FUNCTION @extschema@._cron_forget(text, bigint) IS
    'wh internal: forget a job recorded in another warehouse (after a restore)';

-- Record a job the calling login just made with cron.schedule: it must be that login's
-- own job, named wh:..., running one of wh's commands, and the login no superuser.
CREATE FUNCTION @extschema@._cron_register(p_jobid bigint) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $body$
DECLARE
    ok boolean;
BEGIN
    EXECUTE $q$
        SELECT EXISTS (SELECT 1 FROM cron.job j JOIN pg_catalog.pg_roles r ON r.rolname OPERATOR(pg_catalog.=) j.username::name
                       WHERE j.jobid OPERATOR(pg_catalog.=) $1 AND j.username::name OPERATOR(pg_catalog.=) session_user
                         AND NOT r.rolsuper AND j.jobname OPERATOR(pg_catalog.~~) 'wh:%'::text
                         AND @extschema@._is_wh_job_command(j.command)) $q$
        INTO ok USING p_jobid;
    IF NOT ok THEN
        RAISE EXCEPTION 'wh: pg_cron job % is not a wh job of %', p_jobid, session_user USING ERRCODE = 'insufficient_privilege';
    END IF;
    EXECUTE $q$
        INSERT INTO @extschema@.cron_jobs (jobid, username, jobname, schedule, command, active, made_in)
        SELECT j.jobid, session_user, j.jobname, j.schedule, j.command, j.active, @extschema@._here() FROM cron.job j
        WHERE j.jobid OPERATOR(pg_catalog.=) $1
        ON CONFLICT (made_in, jobid) DO UPDATE SET username = EXCLUDED.username, made_at = pg_catalog.now(),
            jobname = EXCLUDED.jobname, schedule = EXCLUDED.schedule, command = EXCLUDED.command, active = EXCLUDED.active,
            made_in = EXCLUDED.made_in $q$
        USING p_jobid;
END
$body$;
COMMENT ON FUNCTION @extschema@._cron_register(bigint) IS
    'wh internal: record a wh job the calling login just scheduled (_wh.cron_jobs)';

-- A job wh made and its maker still owns, never a superuser's (nor one found by name).
CREATE FUNCTION @extschema@._cron_owned(p_jobid bigint) RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $body$
DECLARE
    ok boolean;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_cron') THEN
        RETURN false;
    END IF;
    EXECUTE $q$
        SELECT EXISTS (SELECT 1 FROM cron.job j
                       JOIN @extschema@.cron_jobs w ON w.jobid OPERATOR(pg_catalog.=) j.jobid
                                                    AND w.username OPERATOR(pg_catalog.=) j.username::name
                                                    AND w.jobname OPERATOR(pg_catalog.=) j.jobname
                                                    AND w.command OPERATOR(pg_catalog.=) j.command
                                                    AND w.made_in OPERATOR(pg_catalog.=) @extschema@._here()
                       JOIN pg_catalog.pg_roles r ON r.rolname OPERATOR(pg_catalog.=) w.username
                       WHERE j.jobid OPERATOR(pg_catalog.=) $1 AND NOT r.rolsuper) $q$
        INTO ok USING p_jobid;
    RETURN ok;
END
$body$;
REVOKE ALL ON FUNCTION @extschema@._cron_owned(bigint) FROM PUBLIC;

CREATE FUNCTION @extschema@._cron_unschedule(p_jobid bigint) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $body$
DECLARE
    done boolean := false;
BEGIN
    IF @extschema@._cron_owned(p_jobid) THEN
        EXECUTE 'SELECT cron.unschedule($1)' INTO done USING p_jobid;
    END IF;
    DELETE FROM @extschema@.cron_jobs WHERE jobid OPERATOR(pg_catalog.=) p_jobid
        AND made_in OPERATOR(pg_catalog.=) @extschema@._here();
    RETURN coalesce(done, false);
END
$body$;
COMMENT ON FUNCTION @extschema@._cron_unschedule(bigint) IS
    'wh internal: remove one job wh made (_wh.cron_jobs), whichever operator made it';

CREATE FUNCTION @extschema@._cron_set_active(p_jobid bigint, p_active boolean) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $body$
DECLARE
    n bigint;
BEGIN
    IF NOT @extschema@._cron_owned(p_jobid) THEN
        RETURN false;
    END IF;
    -- pg_cron 1.4 lets only superusers change another login's job (cron.alter_job); this
    -- changes only the active flag, only of a job wh made.
    EXECUTE 'UPDATE cron.job SET active = $2 WHERE jobid OPERATOR(pg_catalog.=) $1' USING p_jobid, p_active;
    GET DIAGNOSTICS n = ROW_COUNT;
    UPDATE @extschema@.cron_jobs SET active = p_active WHERE jobid OPERATOR(pg_catalog.=) p_jobid
        AND made_in OPERATOR(pg_catalog.=) @extschema@._here();
    RETURN n OPERATOR(pg_catalog.>) 0;
END
$body$;
COMMENT ON FUNCTION @extschema@._cron_set_active(bigint, boolean) IS
    'wh internal: stop or restart one job wh made (_wh.cron_jobs), whichever operator made it';

-- The registry's small tables analyzed when a template comes or goes: autovacuum analyzes
-- a table only after 50 changed rows, and with no statistics the planner takes
-- _wh.mv_templates for a hundred rows or more, which turns a monitoring view over every
-- tenant x template into a plan costed for 150,000 pairs (and JIT-compiled: 0.4 s).
CREATE FUNCTION @extschema@._analyze_registry() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $body$
BEGIN
    ANALYZE @extschema@.mv_templates;
END
$body$;
COMMENT ON FUNCTION @extschema@._analyze_registry() IS
    'wh internal: statistics of _wh.mv_templates after a template is set or dropped';

-- The seeds' per-template calls, made when a template is set: update_<template>(tenant,
-- schema, target_date, allow_refresh_yesterday, force_recreate) and
-- create_<template>_mv(tenant, schema, base_view_name, target_date, client_name), thin
-- wrappers onto wh's calls, members of the extension (so DROP EXTENSION takes them and the
-- checks on every wh function cover them). Only for a registered template; fixed bodies.
-- They carry no `SET role` (PostgreSQL refuses it inside a SECURITY DEFINER function, and
-- they need none: they only check their arguments and call wh functions, which switch).
CREATE FUNCTION @extschema@._seed_functions(p_template text) RETURNS text[]
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $body$
DECLARE
    made text[] := '{}';
    f text;
BEGIN
    IF p_template IS NULL OR p_template !~ '^[a-z_][a-z0-9_]*$' OR pg_catalog.length(p_template) > 40
       OR NOT EXISTS (SELECT 1 FROM @extschema@.mv_templates WHERE template_name = p_template) THEN
        RAISE EXCEPTION 'wh: no registered template %', p_template USING ERRCODE = 'undefined_object';
    END IF;
    f := pg_catalog.format('@extschema@.%I', 'update_' || p_template);
    IF pg_catalog.to_regprocedure(f || '(text,text,date,boolean,boolean)') IS NULL THEN
        EXECUTE pg_catalog.format($f$
            CREATE FUNCTION %s(tenant_name text, target_schema text DEFAULT NULL,
                               target_date date DEFAULT @extschema@.current_date_utc(),
                               allow_refresh_yesterday boolean DEFAULT true, force_recreate boolean DEFAULT false)
            RETURNS jsonb LANGUAGE plpgsql
            SET search_path = pg_catalog, pg_temp SET TimeZone = 'UTC' AS $b$
            BEGIN
                IF target_schema IS DISTINCT FROM tenant_name AND target_schema IS NOT NULL THEN
                    RAISE EXCEPTION 'wh: in wh a tenant''s schema is its name: schema %% cannot differ from tenant %%', target_schema, tenant_name
                        USING ERRCODE = 'invalid_parameter_value',
                              HINT = pg_catalog.format('wh''s call: SELECT _wh.update_mv_by_template(%%L, %%L, %%L)', %L, tenant_name, target_date);
                END IF;
                RETURN @extschema@.update_mv_by_template(%L, tenant_name, target_date, allow_refresh_yesterday, force_recreate);
            END
            $b$$f$, f, p_template, p_template);
        -- Made during ALTER EXTENSION UPDATE, it is a member already.
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass
                       AND d.objid = pg_catalog.to_regprocedure(f || '(text,text,date,boolean,boolean)') AND d.deptype = 'e') THEN
            EXECUTE pg_catalog.format('ALTER EXTENSION wh ADD FUNCTION %s(text,text,date,boolean,boolean)', f);
        END IF;
        EXECUTE pg_catalog.format('COMMENT ON FUNCTION %s(text,text,date,boolean,boolean) IS %L', f,
            'wh: the seeds'' call for template ' || p_template || ', made by _wh._seed_functions');
        EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s(text,text,date,boolean,boolean) FROM PUBLIC', f);
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s(text,text,date,boolean,boolean) TO wh_admin', f);
        made := made || f;
    END IF;
    f := pg_catalog.format('@extschema@.%I', 'create_' || p_template || '_mv');
    IF pg_catalog.to_regprocedure(f || '(text,text,text,date,text)') IS NULL THEN
        EXECUTE pg_catalog.format($f$
            CREATE FUNCTION %s(tenant_name text, target_schema text DEFAULT NULL, base_view_name text DEFAULT NULL,
                               target_date date DEFAULT @extschema@.current_date_utc(), client_name text DEFAULT NULL)
            RETURNS jsonb LANGUAGE plpgsql
            SET search_path = pg_catalog, pg_temp SET TimeZone = 'UTC' AS $b$
            BEGIN
                IF target_schema IS DISTINCT FROM tenant_name AND target_schema IS NOT NULL THEN
                    RAISE EXCEPTION 'wh: in wh a tenant''s schema is its name: schema %% cannot differ from tenant %%', target_schema, tenant_name
                        USING ERRCODE = 'invalid_parameter_value',
                              HINT = pg_catalog.format('wh''s call: SELECT _wh.create_mv_from_template(%%L, %%L, target_date => %%L)', %L, tenant_name, target_date);
                END IF;
                -- base_view_name and client_name named the seeds' objects; wh derives both.
                RETURN @extschema@.create_mv_from_template(%L, tenant_name, target_date => target_date);
            END
            $b$$f$, f, p_template, p_template);
        -- Made during ALTER EXTENSION UPDATE, it is a member already.
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass
                       AND d.objid = pg_catalog.to_regprocedure(f || '(text,text,text,date,text)') AND d.deptype = 'e') THEN
            EXECUTE pg_catalog.format('ALTER EXTENSION wh ADD FUNCTION %s(text,text,text,date,text)', f);
        END IF;
        EXECUTE pg_catalog.format('COMMENT ON FUNCTION %s(text,text,text,date,text) IS %L', f,
            'wh: the seeds'' call for template ' || p_template || ', made by _wh._seed_functions');
        EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s(text,text,text,date,text) FROM PUBLIC', f);
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s(text,text,text,date,text) TO wh_admin', f);
        made := made || f;
    END IF;
    RETURN made;
END
$body$;
COMMENT ON FUNCTION @extschema@._seed_functions(text) IS
    'wh internal: make the seeds'' update_<template> and create_<template>_mv for a registered template';

-- Their undoing, for _wh.drop_template: only once the template's row is gone, and only
-- the two functions _seed_functions makes (members of the extension, so only their owner
-- can drop them).
CREATE FUNCTION @extschema@._drop_seed_functions(p_template text) RETURNS text[]
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $body$
DECLARE
    dropped text[] := '{}';
    f pg_catalog.regprocedure;
BEGIN
    IF p_template IS NULL OR p_template !~ '^[a-z_][a-z0-9_]*$' OR pg_catalog.length(p_template) > 40 THEN
        RAISE EXCEPTION 'wh: invalid template name %', p_template USING ERRCODE = 'invalid_name';
    END IF;
    IF EXISTS (SELECT 1 FROM @extschema@.mv_templates WHERE template_name = p_template) THEN
        RAISE EXCEPTION 'wh: template % is still registered', p_template USING ERRCODE = 'object_in_use';
    END IF;
    FOREACH f IN ARRAY ARRAY[
        pg_catalog.to_regprocedure(pg_catalog.format('@extschema@.%I(text,text,date,boolean,boolean)', 'update_' || p_template)),
        pg_catalog.to_regprocedure(pg_catalog.format('@extschema@.%I(text,text,text,date,text)', 'create_' || p_template || '_mv'))]
    LOOP
        CONTINUE WHEN f IS NULL;
        IF EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass
                   AND d.objid = f AND d.deptype = 'e') THEN
            EXECUTE pg_catalog.format('ALTER EXTENSION wh DROP FUNCTION %s', f);
        END IF;
        dropped := dropped || f::text;
        EXECUTE pg_catalog.format('DROP FUNCTION %s', f);
    END LOOP;
    RETURN dropped;
END
$body$;
COMMENT ON FUNCTION @extschema@._drop_seed_functions(text) IS
    'wh internal: drop the seeds'' per-template functions of a template no longer registered';

-- wh refuses to work in the session of a login more privileged than wh_admin (a
-- superuser, CREATEROLE, BYPASSRLS, REPLICATION, or a member of PostgreSQL's roles that
-- read or write server files, run programs or read/write all data). wh writes to objects
-- wh_admin owns, so a member can attach code to them (triggers, deferred constraint
-- triggers, index expressions); that code runs in the caller's session, where it can
-- `SET ROLE NONE` back to the session's login. Refusing such sessions is the only way to
-- keep that code at a wh_admin member's rights. The login is the role the backend
-- authenticated as (_wh._login_role()), not session_user: a superuser's `SET SESSION
-- AUTHORIZATION operator` would otherwise pass, and planted code could RESET it.
-- Operators log in as plain members of
-- wh_admin; their pg_cron jobs run as them.
-- Why wh refuses this session (NULL: it does not). _check_caller raises it; monitoring
-- that would read wh_admin's tables answers NULL instead (_holds_rows).
CREATE FUNCTION @extschema@._caller_refused() RETURNS text
LANGUAGE plpgsql STABLE AS $body$
DECLARE
    why text;
BEGIN
    -- For throwaway test clusters only (README): a superuser who sets this accepts that
    -- code wh_admin members attached to wh's tables runs with its rights.
    IF coalesce(pg_catalog.current_setting('wh.unsafe_allow_superuser', true), 'off') = 'on' THEN
        RETURN NULL;
    END IF;
    SELECT CASE
               WHEN r.rolsuper THEN 'a superuser'
               WHEN r.rolcreaterole THEN 'a CREATEROLE role'
               WHEN r.rolbypassrls THEN 'a BYPASSRLS role'
               WHEN r.rolreplication THEN 'a REPLICATION role'
               ELSE (SELECT 'a member of ' OPERATOR(pg_catalog.||) p.rolname FROM pg_catalog.pg_roles p
                     WHERE p.rolname IN ('pg_execute_server_program', 'pg_read_server_files', 'pg_write_server_files',
                                         'pg_read_all_data', 'pg_write_all_data')
                       AND pg_catalog.pg_has_role(r.oid, p.oid, 'MEMBER')
                     ORDER BY p.rolname LIMIT 1)
           END INTO why
    FROM pg_catalog.pg_roles r WHERE r.oid = @extschema@._login_role();
    IF why IS NULL AND session_user OPERATOR(pg_catalog.<>) (SELECT r.rolname FROM pg_catalog.pg_roles r WHERE r.oid = @extschema@._login_role()) THEN
        -- Only a superuser can SET SESSION AUTHORIZATION; kept explicit all the same.
        why := 'not the login this session authenticated as';
    END IF;
    RETURN why;
END
$body$;

CREATE FUNCTION @extschema@._check_caller() RETURNS void
LANGUAGE plpgsql STABLE AS $body$
DECLARE
    why text := @extschema@._caller_refused();
BEGIN
    IF why IS NOT NULL THEN
        RAISE EXCEPTION 'wh: refusing to work in the session of %, which is %: code a wh_admin member attached to wh''s tables could take its rights',
            (SELECT r.rolname FROM pg_catalog.pg_roles r WHERE r.oid = @extschema@._login_role()), why
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Log in as an operator: a login that is a member of wh_admin and nothing more privileged (README, "Roles"). pg_cron jobs run as the login that scheduled them.';
    END IF;
END
$body$;
