-- wh 0.14.0 -> 0.15.0: past one machine (issue 26, second part). _wh.mv_templates gains
-- distributed_shards: the shard count of a template's table Citus distributes by tenant
-- (_wh.distribute), dumped with the configuration, so a table made again (a rebuild onto a
-- cluster) is distributed again and a new template follows a distributed warehouse.
-- _wh.storage and _wh.partitions count a distributed table's bytes on the workers.
-- _wh_scope.tenants_of_current_role(): tenant-scoped readers on a distributed table.
-- The tables distributed before this release are recorded here.
\echo Use "ALTER EXTENSION wh UPDATE" to load this file. \quit

-- Run as a superuser: search_path pinned for this script (SET LOCAL ends with it), so an
-- operator or function planted in public never matches a comparison below.
SET LOCAL search_path = @extschema@, pg_catalog, pg_temp;

-- As in 0.8.0's and later scripts: nothing but a superuser may own the schemas this script writes
-- into (and wh_admin _wh_data). Every operator here is pg_catalog's, named.
DO $owners$
DECLARE
    bad pg_catalog.text;
BEGIN
    SELECT pg_catalog.string_agg(pg_catalog.format('%s (owner %s)', n.nspname, r.rolname), ', ') INTO bad
    FROM pg_catalog.pg_namespace n JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) n.nspowner
    WHERE (n.nspname OPERATOR(pg_catalog.=) '@extschema@'::pg_catalog.name AND NOT r.rolsuper)
       OR (n.nspname OPERATOR(pg_catalog.=) '_wh_scope'::pg_catalog.name AND NOT r.rolsuper)
       OR (n.nspname OPERATOR(pg_catalog.=) '_wh_data'::pg_catalog.name AND r.rolname OPERATOR(pg_catalog.<>) 'wh_admin'::pg_catalog.name);
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'wh: schema % was not made by wh''s install: drop or rename it first (a superuser must own @extschema@ and _wh_scope, wh_admin _wh_data)', bad
            USING ERRCODE = 'invalid_schema_definition';
    END IF;
END
$owners$;

ALTER TABLE @extschema@.mv_templates
    ADD COLUMN distributed_shards integer CHECK (distributed_shards >= 0);

-- The tenants the current role reads (its rows of _wh_scope.readers, under that table's
-- row-level security), for the tenant-scoped readers' policy of a table Citus distributes:
-- Citus copies a policy onto every shard, where a subquery is refused. IMMUTABLE on purpose:
-- each node folds it into a constant array when it plans a statement (no call per row),
-- from its own copy of _wh_scope.readers (wh keeps the workers' equal to the coordinator's,
-- by role name), and re-plans when the role changes; a revocation also re-grants the
-- table, which invalidates cached plans. Not a member of the extension (the policies
-- outlive DROP EXTENSION).
DO $tenants$
BEGIN
    IF pg_catalog.to_regprocedure('_wh_scope.tenants_of_current_role()') IS NULL THEN
        CREATE FUNCTION _wh_scope.tenants_of_current_role() RETURNS text[]
        LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
        AS $fn$ SELECT pg_catalog.array_agg(s.tenant_name ORDER BY s.tenant_name) FROM _wh_scope.readers s $fn$;
        ALTER EXTENSION wh DROP FUNCTION _wh_scope.tenants_of_current_role();
        COMMENT ON FUNCTION _wh_scope.tenants_of_current_role() IS 'wh: the tenants the current role reads (the scoped readers'' policy on a distributed table; folded at planning)';
    END IF;
END
$tenants$;
REVOKE ALL ON FUNCTION _wh_scope.tenants_of_current_role() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION _wh_scope.tenants_of_current_role() TO PUBLIC;

-- The tables distributed so far (0.14.0's _wh.distribute), where Citus is installed.
DO $recorded$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname OPERATOR(pg_catalog.=) 'citus'::pg_catalog.name) THEN
        EXECUTE $q$
            UPDATE @extschema@.mv_templates m SET distributed_shards = d.shards
            FROM (SELECT s.logicalrelid, pg_catalog.count(DISTINCT s.shardid)::pg_catalog.int4 AS shards
                  FROM pg_catalog.pg_dist_shard s
                  JOIN pg_catalog.pg_dist_partition p ON p.logicalrelid OPERATOR(pg_catalog.=) s.logicalrelid
                       AND p.partmethod OPERATOR(pg_catalog.=) 'h'
                  GROUP BY s.logicalrelid) d
            WHERE d.logicalrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(pg_catalog.format('_wh_data.%I', m.template_name))
        $q$;
    END IF;
END
$recorded$;

-- Every 0.14.0 view and routine is dropped here and created below exactly as a fresh 0.15.0
-- install creates it (the upgrade test compares the catalogs). The triggers on _wh.slices go
-- first (_note_pair_changes() is one of the routines), and are made again below.
DROP TRIGGER wh_pair_changes_insert ON @extschema@.slices;
DROP TRIGGER wh_pair_changes_update ON @extschema@.slices;
DROP TRIGGER wh_pair_changes_delete ON @extschema@.slices;
-- _here() is the default of tenant_readers.made_in: dropped with it, set again below.
ALTER TABLE @extschema@.tenant_readers ALTER COLUMN made_in DROP DEFAULT;
DROP VIEW _wh_scope.freshness;
DROP VIEW @extschema@.job_history, @extschema@.jobs, @extschema@.failures, @extschema@.freshness,
    @extschema@.partitions, @extschema@.drift, @extschema@.progress, @extschema@.rollups, @extschema@.gaps,
    @extschema@.storage, @extschema@.pool, @extschema@.pool_workers, @extschema@._pair_freshness, @extschema@._pairs;
DO $drop$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT p.oid::pg_catalog.regprocedure AS sig, p.prokind
        FROM pg_catalog.pg_proc p
        JOIN pg_catalog.pg_depend d ON d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass::pg_catalog.oid
             AND d.objid OPERATOR(pg_catalog.=) p.oid AND d.deptype OPERATOR(pg_catalog.=) 'e'
        JOIN pg_catalog.pg_extension e ON e.oid OPERATOR(pg_catalog.=) d.refobjid AND e.extname OPERATOR(pg_catalog.=) 'wh'
        WHERE p.proname NOT IN ('current_date_utc', '_stamp_session_user')
    LOOP
        EXECUTE pg_catalog.format('DROP %s %s', CASE r.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END, r.sig);
    END LOOP;
END
$drop$;


/* <begin connected objects> */
/*
This file is auto generated by pgrx.

The ordering of items is not stable, it is driven by a dependency graph.
*/
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/ops.rs:554
-- wh::api::ops::_adopt_days
CREATE  FUNCTION "_adopt_days"(
	"template_name" TEXT, /* Option < & str > */
	"tenant_name" TEXT /* Option < & str > */
) RETURNS jsonb /* Out */
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_adopt_days_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/ops.rs:531
-- wh::api::ops::_adopt_template
CREATE  FUNCTION "_adopt_template"(
	"query" TEXT, /* Option < & str > */
	"column_definitions" TEXT, /* Option < & str > */
	"indexes" TEXT[] /* :: std :: option :: Option < Vec < String > > */
) RETURNS jsonb /* JsonB */
IMMUTABLE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_adopt_template_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/lib.rs:86
-- requires:
--   api::ops::_adopt_template
--   api::ops::_adopt_days

-- Adopting a warehouse built the seeds' way, after scripts/adopt.sh moved the seeds' `_wh`
-- aside as `_wh_seeds` and their views as `<name>_seeds` (README, "Adopting a seeds'
-- warehouse"). Run as an operator: CALL _wh.adopt_seeds(); reruns are safe.
CREATE PROCEDURE @extschema@.adopt_seeds(source_schema text DEFAULT '_wh_seeds')
LANGUAGE plpgsql AS $body$
DECLARE
    t record;
    a jsonb;
    r jsonb;
    n_tenants integer := 0;
    n_templates integer := 0;
    refused text[] := '{}';
    prev text[] := @extschema@._enter();
BEGIN
    IF pg_catalog.to_regclass(pg_catalog.format('%I.tenant_connections', source_schema)) IS NULL THEN
        RAISE EXCEPTION 'wh: %.tenant_connections does not exist', source_schema
            USING ERRCODE = 'undefined_table',
                  HINT = 'Run scripts/adopt.sh first: it moves the seeds'' _wh aside as _wh_seeds and installs wh.';
    END IF;
    -- Tenants: their password goes into wh's user mapping, never into a wh table.
    FOR t IN EXECUTE pg_catalog.format(
        'SELECT tenant_name, host, coalesce(port, 5432) AS port, dbname, username, password FROM %I.tenant_connections ORDER BY 1', source_schema)
    LOOP
        IF NOT EXISTS (SELECT 1 FROM @extschema@.tenant_connections c WHERE c.tenant_name = t.tenant_name) THEN
            PERFORM @extschema@.set_tenant_connection(t.tenant_name, t.host, t.port, t.dbname, t.username, t.password);
            n_tenants := n_tenants + 1;
            RAISE NOTICE 'adopt: tenant % imported (its password is now in wh''s user mapping)', t.tenant_name;
        END IF;
    END LOOP;
    COMMIT;
    PERFORM @extschema@._enter();
    -- Templates: converted, or listed with the reason wh cannot take them.
    FOR t IN EXECUTE pg_catalog.format(
        'SELECT template_name, description, query_template, column_definitions, pg_catalog.to_jsonb(indexes) AS ix FROM %I.mv_templates ORDER BY 1', source_schema)
    LOOP
        -- The seeds kept indexes as an array of statements, or as one text of them.
        a := @extschema@._adopt_template(t.query_template, t.column_definitions,
            CASE pg_catalog.jsonb_typeof(t.ix)
                WHEN 'array' THEN ARRAY(SELECT pg_catalog.jsonb_array_elements_text(t.ix))
                WHEN 'string' THEN pg_catalog.regexp_split_to_array(t.ix #>> '{}', ';\s*')
            END);
        IF NOT (a->>'ok')::boolean THEN
            refused := refused || pg_catalog.format('%s: %s', t.template_name, a->>'reason');
            RAISE WARNING 'adopt: template % not adopted: %', t.template_name, a->>'reason';
            CONTINUE;
        END IF;
        BEGIN
            PERFORM @extschema@.set_template(
                template_name => t.template_name, query_template => a->>'query',
                column_definitions => t.column_definitions, time_column => a->>'time_column',
                unique_key => a->>'unique_key',
                indexes => ARRAY(SELECT pg_catalog.jsonb_array_elements_text(a->'indexes')),
                description => coalesce(t.description, 'adopted from the seeds'));
            n_templates := n_templates + 1;
            RAISE NOTICE 'adopt: template % (time column %, unique key %)%', t.template_name, a->>'time_column',
                coalesce(a->>'unique_key', 'none'),
                CASE WHEN pg_catalog.jsonb_array_length(a->'notes') > 0
                     THEN ': ' || (SELECT pg_catalog.string_agg(x, '; ') FROM pg_catalog.jsonb_array_elements_text(a->'notes') x) ELSE '' END;
        EXCEPTION WHEN OTHERS THEN
            refused := refused || pg_catalog.format('%s: %s', t.template_name, SQLERRM);
            RAISE WARNING 'adopt: template % not adopted: %', t.template_name, SQLERRM;
        END;
    END LOOP;
    COMMIT;
    PERFORM @extschema@._enter();
    -- Rows: a tenant and template per transaction, from the seeds' views, never re-fetched.
    FOR t IN SELECT m.template_name, c.tenant_name FROM @extschema@.mv_templates m
             CROSS JOIN @extschema@.tenant_connections c ORDER BY 1, 2
    LOOP
        r := @extschema@._adopt_days(t.template_name, t.tenant_name);
        COMMIT;
        PERFORM @extschema@._enter();
        IF r->>'status' = 'succeeded' THEN
            RAISE NOTICE 'adopt: %.% % rows, % days, verified', t.tenant_name, t.template_name, r->>'rows', r->'details'->>'days';
            -- wh's job replaces the seeds' one (scripts/adopt.sh stopped those).
            IF EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_cron') THEN
                PERFORM @extschema@.schedule_tenant(t.template_name, t.tenant_name);
                COMMIT;
                PERFORM @extschema@._enter();
            END IF;
        END IF;
    END LOOP;
    RAISE NOTICE 'adopt: % tenant(s) and % template(s) imported%; the seeds'' objects stay until you drop them: SELECT drop_statement FROM _wh.seed_leftovers() \gexec',
        n_tenants, n_templates,
        CASE WHEN pg_catalog.cardinality(refused) > 0 THEN '; not adopted: ' || pg_catalog.array_to_string(refused, ' | ') ELSE '' END;
    PERFORM @extschema@._leave(prev);
END
$body$;
COMMENT ON PROCEDURE @extschema@.adopt_seeds(text) IS
    'Adopt a warehouse built the seeds'' way (after scripts/adopt.sh): tenants, templates, rows (copied and verified per day, never re-fetched), jobs';
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/windows.rs:431
-- wh::api::windows::_backfill_chunks
CREATE  FUNCTION "_backfill_chunks"(
	"start_date" date, /* Option < Date > */
	"end_date" date, /* Option < Date > */
	"chunk_days" INT DEFAULT 31 /* Option < i32 > */
) RETURNS TABLE (
	"first_index" INT,  /* i32 */
	"days" date[]  /* Vec < Date > */
)
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_backfill_chunks_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/windows.rs:394
-- wh::api::windows::_chunk
CREATE  FUNCTION "_chunk"(
	"refresh_existing" bool, /* Option < bool > */
	"template_name" TEXT, /* Option < & str > */
	"tenant_name" TEXT, /* Option < & str > */
	"days" date[], /* :: std :: option :: Option < Vec < Option < Date > > > */
	"label" TEXT /* Option < & str > */
) RETURNS jsonb /* Out */
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_chunk_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/ops.rs:452
-- wh::api::ops::_fanout_begin
CREATE  FUNCTION "_fanout_begin"(
	"template_name" TEXT, /* Option < & str > */
	"target_date" date, /* Option < Date > */
	"job" bool DEFAULT false /* Option < bool > */
) RETURNS jsonb /* Result < Option < JsonB > , ErrorReport > */
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_fanout_begin_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/ops.rs:474
-- wh::api::ops::_fanout_end
CREATE  FUNCTION "_fanout_end"() RETURNS jsonb /* JsonB */
STRICT
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_fanout_end_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/ops.rs:465
-- wh::api::ops::_fanout_step
CREATE  FUNCTION "_fanout_step"(
	"template_name" TEXT, /* Option < & str > */
	"job" bool DEFAULT false /* Option < bool > */
) RETURNS bool /* Result < bool, ErrorReport > */
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_fanout_step_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/windows.rs:85
-- wh::api::windows::_login_role
CREATE  FUNCTION "_login_role"() RETURNS oid /* pg_sys :: Oid */
STRICT STABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_login_role_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/lib.rs:63
-- requires:
--   bootstrap
--   api::windows::_login_role

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
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/ops.rs:505
-- wh::api::ops::_migrate_plan
CREATE  FUNCTION "_migrate_plan"() RETURNS TABLE (
	"template_name" TEXT,  /* String */
	"tenant_name" TEXT  /* String */
)
STRICT
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_migrate_plan_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/ops.rs:516
-- wh::api::ops::_migrate_prepare
CREATE  FUNCTION "_migrate_prepare"(
	"template_name" TEXT /* Option < & str > */
) RETURNS jsonb /* Out */
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_migrate_prepare_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/ops.rs:522
-- wh::api::ops::_migrate_tenant
CREATE  FUNCTION "_migrate_tenant"(
	"template_name" TEXT, /* Option < & str > */
	"tenant_name" TEXT /* Option < & str > */
) RETURNS jsonb /* Out */
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_migrate_tenant_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/windows.rs:457
-- wh::api::windows::_plan_window
CREATE  FUNCTION "_plan_window"(
	"template_name" TEXT, /* Option < & str > */
	"tenant_name" TEXT, /* Option < & str > */
	"start_date" date, /* Option < Date > */
	"end_date" date, /* Option < Date > */
	"max_days" INT /* Option < i32 > */
) RETURNS INT /* Result < i32, ErrorReport > */
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_plan_window_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/ops.rs:423
-- wh::api::ops::_pool_adopt_jobs
CREATE  FUNCTION "_pool_adopt_jobs"() RETURNS jsonb /* JsonB */
STRICT
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_pool_adopt_jobs_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/ops.rs:416
-- wh::api::ops::_pool_next
CREATE  FUNCTION "_pool_next"(
	"worker" INT /* Option < i32 > */
) RETURNS jsonb /* Option < JsonB > */
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_pool_next_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/ops.rs:411
-- wh::api::ops::_pool_sync
CREATE  FUNCTION "_pool_sync"() RETURNS void
STRICT
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_pool_sync_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/windows.rs:420
-- wh::api::windows::_prepare_days
CREATE  FUNCTION "_prepare_days"(
	"template_name" TEXT, /* Option < & str > */
	"first" date, /* Option < Date > */
	"last" date /* Option < Date > */
) RETURNS jsonb /* Out */
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_prepare_days_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/retired.rs:31
-- wh::api::retired::_probe_tenant
-- Skipped due to `#[pgrx(sql = false)]`
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/windows.rs:482
-- wh::api::windows::_progress
CREATE  FUNCTION "_progress"(
	"first" bigint, /* i64 */
	"n" bigint, /* i64 */
	"tenant_name" TEXT, /* Option < & str > */
	"result" jsonb /* JsonB */
) RETURNS TEXT /* String */
IMMUTABLE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_progress_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/windows.rs:524
-- wh::api::windows::_progress_end
CREATE  FUNCTION "_progress_end"() RETURNS void
STRICT
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_progress_end_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/windows.rs:518
-- wh::api::windows::_progress_row
CREATE  FUNCTION "_progress_row"(
	"query" TEXT /* Option < & str > */
) RETURNS jsonb /* Option < JsonB > */
IMMUTABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_progress_row_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/lib.rs:68
-- requires:
--   bootstrap
--   privileges
--   api::windows::_progress_row

-- Monitoring: plain views and functions a DBA can query from psql or a dashboard.

-- Overrides of wh's defaults (empty at install, so a restored dump never collides):
--   run_log_retention  how long _wh.prune_run_log() keeps run_log rows      (default 30 days)
--   stale_after        freshness threshold when a template sets none        (default 8 hours,
--                      2x the default 4-hour schedule)

-- The figures of the pairs named (templates[i], tenants[i]), from their registry rows. The
-- days missing between a pair's first and last day: its span less the days it holds (a
-- registry row per day: the primary key).
CREATE FUNCTION @extschema@._pair_figures(p_templates text[], p_tenants text[])
RETURNS TABLE (template_name text, tenant_name text, slices bigint, rows bigint, oldest_day date,
               newest_day date, newest_end date, last_refreshed_at timestamptz, missing_days bigint)
LANGUAGE sql STABLE AS $body$
SELECT p.template_name, p.tenant_name, f.slices, f.rows, f.oldest_day, f.newest_day, f.newest_end,
       f.last_refreshed_at, coalesce(f.last_day - f.first_day + 1 - f.days, 0)
FROM (SELECT DISTINCT u.template_name, u.tenant_name
      FROM unnest(p_templates, p_tenants) AS u(template_name, tenant_name)) p
CROSS JOIN LATERAL (
    SELECT count(*) AS slices, sum(s.row_count)::bigint AS rows, min(s.range_start) AS oldest_day,
           max(s.range_start) AS newest_day, max(s.range_end) AS newest_end,
           max(s.refreshed_at) FILTER (WHERE s.kind = 'day') AS last_refreshed_at,
           min(s.range_start) FILTER (WHERE s.kind = 'day') AS first_day,
           max(s.range_start) FILTER (WHERE s.kind = 'day') AS last_day,
           count(*) FILTER (WHERE s.kind = 'day') AS days
    FROM @extschema@.slices s
    WHERE s.tenant_name = p.tenant_name AND s.template_name = p.template_name
) f
WHERE f.slices > 0
$body$;

-- What keeps _wh.pair_changes (sql/bootstrap.sql): the pairs a statement on _wh.slices touched.
CREATE FUNCTION @extschema@._note_pair_changes() RETURNS trigger
LANGUAGE plpgsql AS $body$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO @extschema@.pair_changes SELECT DISTINCT n.template_name, n.tenant_name FROM changed_new n;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO @extschema@.pair_changes SELECT DISTINCT o.template_name, o.tenant_name FROM changed_old o;
    ELSE
        INSERT INTO @extschema@.pair_changes
        SELECT n.template_name, n.tenant_name FROM changed_new n
        UNION SELECT o.template_name, o.tenant_name FROM changed_old o;
    END IF;
    RETURN NULL;
END
$body$;
CREATE TRIGGER wh_pair_changes_insert AFTER INSERT ON @extschema@.slices
    REFERENCING NEW TABLE AS changed_new
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._note_pair_changes();
CREATE TRIGGER wh_pair_changes_update AFTER UPDATE ON @extschema@.slices
    REFERENCING OLD TABLE AS changed_old NEW TABLE AS changed_new
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._note_pair_changes();
CREATE TRIGGER wh_pair_changes_delete AFTER DELETE ON @extschema@.slices
    REFERENCING OLD TABLE AS changed_old
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._note_pair_changes();

-- Every tenant x template pair's figures now: the kept ones (_wh.pair_stats) of the pairs
-- unchanged since they were settled, and the changed pairs' computed from the registry.
CREATE VIEW @extschema@._pairs AS
WITH changed AS MATERIALIZED (
    SELECT DISTINCT c.template_name, c.tenant_name FROM @extschema@.pair_changes c
)
SELECT p.template_name, p.tenant_name, p.slices, p.rows, p.oldest_day, p.newest_day, p.newest_end,
       p.last_refreshed_at, p.missing_days
FROM @extschema@.pair_stats p
WHERE NOT EXISTS (SELECT 1 FROM changed c WHERE c.template_name = p.template_name AND c.tenant_name = p.tenant_name)
UNION ALL
SELECT f.template_name, f.tenant_name, f.slices, f.rows, f.oldest_day, f.newest_day, f.newest_end,
       f.last_refreshed_at, f.missing_days
FROM (SELECT pg_catalog.array_agg(c.template_name) AS templates, pg_catalog.array_agg(c.tenant_name) AS tenants
      FROM changed c) c
CROSS JOIN LATERAL @extschema@._pair_figures(c.templates, c.tenants) f;

-- Citus: each distributed relation of _wh_data (a template's table and each partition),
-- its shards and their bytes on the workers with their indexes, from one citus_shard_sizes()
-- (a query per worker, as wh_admin); the coordinator keeps only empty shells of them.
-- Nothing without Citus.
CREATE FUNCTION @extschema@._distributed_sizes() RETURNS TABLE (relid oid, shards integer, bytes bigint)
LANGUAGE plpgsql STABLE AS $body$
DECLARE
    any_distributed boolean;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname OPERATOR(pg_catalog.=) 'citus'::pg_catalog.name) THEN
        RETURN;
    END IF;
    -- No wh table distributed: nothing to ask the workers (one may be down).
    EXECUTE 'SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition p JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) p.logicalrelid '
            'WHERE c.relnamespace OPERATOR(pg_catalog.=) ''_wh_data''::pg_catalog.regnamespace)' INTO any_distributed;
    IF NOT any_distributed THEN
        RETURN;
    END IF;
    -- bytes: every placement's (what the disks hold); shards: each once.
    RETURN QUERY EXECUTE
        'SELECT s.logicalrelid::pg_catalog.oid, pg_catalog.count(DISTINCT s.shardid)::pg_catalog.int4, '
        '       coalesce(pg_catalog.sum(z.size), 0)::pg_catalog.int8 '
        'FROM pg_catalog.pg_dist_shard s '
        'JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) s.logicalrelid '
        'LEFT JOIN pg_catalog.citus_shard_sizes() z ON z.shard_id OPERATOR(pg_catalog.=) s.shardid '
        'WHERE c.relnamespace OPERATOR(pg_catalog.=) ''_wh_data''::pg_catalog.regnamespace GROUP BY 1';
END
$body$;

-- Per tenant x template: days held, rows, oldest/newest day, and an estimate of the bytes
-- its rows take (the template's table bytes, shared out by row count: tenants share
-- partitions; a distributed table's counted on the workers).
CREATE VIEW @extschema@.storage AS
WITH dist AS MATERIALIZED (
    SELECT d.relid, d.bytes FROM @extschema@._distributed_sizes() d
), tbl AS (
    SELECT m.template_name,
           coalesce(sum(coalesce(d.bytes, pg_catalog.pg_total_relation_size(i.inhrelid))), 0)::bigint AS bytes
    FROM @extschema@.mv_templates m
    LEFT JOIN pg_catalog.pg_inherits i
           ON i.inhparent = pg_catalog.to_regclass(pg_catalog.quote_ident('_wh_data') OPERATOR(pg_catalog.||) '.'
                                                   OPERATOR(pg_catalog.||) pg_catalog.quote_ident(m.template_name))
    LEFT JOIN dist d ON d.relid = i.inhrelid
    GROUP BY m.template_name
), pairs AS MATERIALIZED (
    SELECT * FROM @extschema@._pairs
), tot AS (
    SELECT p.template_name, sum(p.rows) AS rows FROM pairs p GROUP BY p.template_name
)
SELECT p.tenant_name, p.template_name,
       p.slices AS days,
       p.rows,
       (tbl.bytes::numeric OPERATOR(pg_catalog.*) p.rows OPERATOR(pg_catalog./) NULLIF(tot.rows, 0))::bigint AS est_bytes,
       pg_catalog.pg_size_pretty((tbl.bytes::numeric OPERATOR(pg_catalog.*) p.rows OPERATOR(pg_catalog./) NULLIF(tot.rows, 0))::bigint) AS est_size,
       p.oldest_day,
       p.newest_day
FROM pairs p
JOIN tbl ON tbl.template_name = p.template_name
JOIN tot ON tot.template_name = p.template_name;

-- Missing days: for each tenant x template, every run of days with no slice between its
-- oldest and newest built day (a day built empty is not missing), with the call that
-- fills it. health() counts them. (Only the pairs whose figures count a missing day are read.)
CREATE VIEW @extschema@.gaps AS
SELECT g.tenant_name, g.template_name,
       (d.day OPERATOR(pg_catalog.+) 1) AS first_missing,
       (d.next_day OPERATOR(pg_catalog.-) 1) AS last_missing,
       ((d.next_day OPERATOR(pg_catalog.-) d.day) OPERATOR(pg_catalog.-) 1) AS days,
       pg_catalog.format('SELECT _wh.update_mv_window(%L, %L, %L, %L);', g.template_name, g.tenant_name,
                         (d.day OPERATOR(pg_catalog.+) 1), (d.next_day OPERATOR(pg_catalog.-) 1)) AS fill_with
FROM (SELECT p.template_name, p.tenant_name FROM @extschema@._pairs p WHERE p.missing_days > 0) g
CROSS JOIN LATERAL (
    SELECT s.range_start AS day, pg_catalog.lead(s.range_start) OVER (ORDER BY s.range_start) AS next_day
    FROM @extschema@.slices s
    WHERE s.tenant_name = g.tenant_name AND s.template_name = g.template_name AND s.kind = 'day'
) d
WHERE d.next_day OPERATOR(pg_catalog.>) (d.day OPERATOR(pg_catalog.+) 1);

-- The days a rollup's base holds and the rollup does not, within the rollup's own retention:
-- what _wh.build_rollup builds (through _wh._rollup_todo) and _wh.rollups counts.
CREATE FUNCTION @extschema@._rollup_missing_days(p_rollup text)
RETURNS TABLE (tenant_name text, day date) LANGUAGE sql STABLE AS $body$
    SELECT b.tenant_name, b.range_start
    FROM @extschema@.mv_templates m
    JOIN @extschema@.slices b ON b.template_name = m.base_template AND b.kind = 'day' AND b.checksum IS NOT NULL
    WHERE m.template_name = p_rollup
      AND (m.retention IS NULL OR b.range_start >= (@extschema@.current_date_utc() - m.retention)::date)
      AND NOT EXISTS (SELECT 1 FROM @extschema@.slices r
                      WHERE r.template_name = m.template_name AND r.tenant_name = b.tenant_name
                        AND r.kind = 'day' AND r.range_start = b.range_start AND r.checksum IS NOT NULL)
$body$;

-- Rollups (_wh.set_rollup): what each is computed from, the days it holds, and the days
-- its base holds that it does not yet, within its own retention (built by the call in
-- build_with). health() counts them.
CREATE VIEW @extschema@.rollups AS
SELECT m.template_name AS rollup_name, m.base_template, m.rollup_select AS select_list, m.rollup_group_by AS group_by,
       (SELECT count(*) FROM @extschema@.slices r
        WHERE r.template_name = m.template_name AND r.kind = 'day' AND r.checksum IS NOT NULL) AS days,
       (SELECT count(*) FROM @extschema@.slices b
        WHERE b.template_name = m.base_template AND b.kind = 'day' AND b.checksum IS NOT NULL) AS base_days,
       (SELECT count(*) FROM @extschema@._rollup_missing_days(m.template_name)) AS days_to_build,
       pg_catalog.format('CALL _wh.build_rollup(%L);', m.template_name) AS build_with
FROM @extschema@.mv_templates m
WHERE m.base_template IS NOT NULL;

-- Every wh operation running now, from any session, like pg_stat_progress_*: operation,
-- template, tenant, units done of total (days, or tenants for a fan-out), what it works on,
-- rows stored so far, elapsed and an estimate of the time left. A running operation keeps
-- its progress ahead of its statement in pg_stat_activity.query (see src/progress.rs), so
-- a single-transaction call shows it too; like pg_stat_activity, a session sees the
-- operations of its own login (all of them as a superuser or pg_read_all_stats member).
CREATE VIEW @extschema@.progress AS
SELECT a.pid, a.usename::text AS run_by,
       p.j OPERATOR(pg_catalog.->>) 'operation' AS operation,
       p.j OPERATOR(pg_catalog.->>) 'template' AS template_name,
       p.j OPERATOR(pg_catalog.->>) 'tenant' AS tenant_name,
       p.j OPERATOR(pg_catalog.->>) 'unit' AS unit,
       (p.j OPERATOR(pg_catalog.->>) 'done')::bigint AS done,
       (p.j OPERATOR(pg_catalog.->>) 'total')::bigint AS total,
       p.j OPERATOR(pg_catalog.->>) 'current' AS working_on,
       (p.j OPERATOR(pg_catalog.->>) 'rows')::bigint AS rows_so_far,
       e.elapsed,
       CASE WHEN (p.j OPERATOR(pg_catalog.->>) 'done')::bigint OPERATOR(pg_catalog.>) 0 THEN
           e.elapsed OPERATOR(pg_catalog.*)
           (((p.j OPERATOR(pg_catalog.->>) 'total')::float8 OPERATOR(pg_catalog.-) (p.j OPERATOR(pg_catalog.->>) 'done')::float8)
            OPERATOR(pg_catalog./) (p.j OPERATOR(pg_catalog.->>) 'done')::float8)
       END AS time_left,
       a.query_start
FROM pg_catalog.pg_stat_activity a
-- Only what wh wrote (any other text, even one starting with the marker, gives NULL),
-- and only in the sessions of wh_admin members.
CROSS JOIN LATERAL (SELECT @extschema@._progress_row(a.query) AS j) p
CROSS JOIN LATERAL (
    SELECT pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-)
           pg_catalog.to_timestamp((p.j OPERATOR(pg_catalog.->>) 'started')::float8) AS elapsed
) e
WHERE a.state OPERATOR(pg_catalog.=) 'active'
  AND p.j IS NOT NULL
  AND pg_catalog.pg_has_role(a.usesysid, 'wh_admin', 'MEMBER');

-- What the last _wh.verify of each tenant-day found not in order: drifted days with the
-- source's and the warehouse's figures, and unverifiable days with the error. health()
-- counts them; `_wh.verify(…, repair => true)` refreshes the drifted days.
CREATE VIEW @extschema@.drift AS
SELECT f.template_name, f.tenant_name, f.day, f.status,
       f.source_rows, f.warehouse_rows, f.source_checksum, f.warehouse_checksum, f.error,
       f.repair_tried, f.checked_at, f.checked_by
FROM @extschema@.verify_findings f;

-- Every partition of every template's table: bounds, estimated rows, bytes, tablespace,
-- storage (heap, or columnar for a year folded so).
CREATE VIEW @extschema@.partitions AS
WITH dist AS MATERIALIZED (
    SELECT d.relid, d.shards, d.bytes FROM @extschema@._distributed_sizes() d
)
SELECT m.template_name, c.relname::text AS partition_name,
       pg_catalog.pg_get_expr(c.relpartbound, c.oid) AS bounds,
       -- the coordinator's estimate; NULL for a distributed partition (its rows are on the workers)
       CASE WHEN d.relid IS NULL THEN c.reltuples::bigint END AS est_rows,
       coalesce(d.bytes, pg_catalog.pg_total_relation_size(c.oid)) AS bytes,
       pg_catalog.pg_size_pretty(coalesce(d.bytes, pg_catalog.pg_total_relation_size(c.oid))) AS size,
       coalesce(ts.spcname, 'pg_default')::text AS tablespace,
       am.amname::text AS storage,
       d.shards
FROM @extschema@.mv_templates m
JOIN pg_catalog.pg_inherits i
  ON i.inhparent = pg_catalog.to_regclass(pg_catalog.quote_ident('_wh_data') OPERATOR(pg_catalog.||) '.'
                                          OPERATOR(pg_catalog.||) pg_catalog.quote_ident(m.template_name))
JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
LEFT JOIN pg_catalog.pg_am am ON am.oid = c.relam
LEFT JOIN dist d ON d.relid = c.oid
LEFT JOIN pg_catalog.pg_tablespace ts ON ts.oid = c.reltablespace;

-- Does the table hold any of the tenant's rows of `day`? (One probe of the table's
-- (schema_name, time) index.) NULL when the template's table does not exist, and NULL in
-- a session wh refuses to work in (a superuser's: reading wh_admin's table there would run
-- whatever a wh_admin member attached to it, a policy or a view, in that session).
-- Monitoring reads the data here, not only the registry: after a restore of the registry
-- alone, the registry lists days the tables do not hold.
CREATE FUNCTION @extschema@._holds_rows(p_template text, p_tenant text, p_day date) RETURNS boolean
LANGUAGE plpgsql STABLE SET TimeZone = 'UTC' AS $body$
DECLARE
    tc text;
    any_distributed boolean;
BEGIN
    IF @extschema@._caller_refused() IS NOT NULL THEN
        RETURN NULL;
    END IF;
    SELECT m.time_column INTO tc FROM @extschema@.mv_templates m WHERE m.template_name = p_template;
    IF tc IS NULL OR pg_catalog.to_regclass(pg_catalog.format('_wh_data.%I', p_template)) IS NULL THEN
        RETURN NULL;
    END IF;
    EXECUTE pg_catalog.format('SELECT EXISTS (SELECT 1 FROM _wh_data.%1$I WHERE schema_name = $1 AND %2$I >= $2 AND %2$I < $2 + 1)',
                              p_template, tc)
        INTO found USING p_tenant, p_day;
    RETURN found;
END
$body$;

-- The same for every tenant of a template at once: each tenant's newest registered day
-- whose registry says it has rows, and whether the table holds any of them (one probe of
-- the registry's and one of the table's index per tenant, in one query). No rows when the
-- template's table does not exist, or in a session wh refuses to work in.
CREATE FUNCTION @extschema@._newest_held(p_template text) RETURNS TABLE (tenant_name text, held boolean)
LANGUAGE plpgsql STABLE SET TimeZone = 'UTC' AS $body$
DECLARE
    tc text;
    distributed boolean := false;
    newest record;
BEGIN
    IF @extschema@._caller_refused() IS NOT NULL THEN
        RETURN;
    END IF;
    SELECT m.time_column INTO tc FROM @extschema@.mv_templates m WHERE m.template_name = p_template;
    IF tc IS NULL OR pg_catalog.to_regclass(pg_catalog.format('_wh_data.%I', p_template)) IS NULL THEN
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_extension e WHERE e.extname OPERATOR(pg_catalog.=) 'citus') THEN
        EXECUTE 'SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition p WHERE p.logicalrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass($1) AND p.partmethod OPERATOR(pg_catalog.=) ''h'')'
            INTO distributed USING pg_catalog.format('_wh_data.%I', p_template);
    END IF;
    IF distributed THEN
        -- Citus plans no subquery correlated with a distributed table: one probe per tenant,
        -- each routed to the one shard holding the tenant.
        FOR newest IN
            SELECT c.tenant_name, s.range_start FROM @extschema@.tenant_connections c
            CROSS JOIN LATERAL (SELECT x.range_start, x.row_count FROM @extschema@.slices x
                WHERE x.template_name OPERATOR(pg_catalog.=) p_template AND x.tenant_name OPERATOR(pg_catalog.=) c.tenant_name
                  AND x.kind OPERATOR(pg_catalog.=) 'day' ORDER BY x.range_start DESC LIMIT 1) s
            WHERE s.row_count OPERATOR(pg_catalog.>) 0
        LOOP
            tenant_name := newest.tenant_name;
            EXECUTE pg_catalog.format(
                'SELECT EXISTS (SELECT 1 FROM _wh_data.%1$I d WHERE d.schema_name OPERATOR(pg_catalog.=) $1 '
                '    AND d.%2$I OPERATOR(pg_catalog.>=) $2 AND d.%2$I OPERATOR(pg_catalog.<) ($2 OPERATOR(pg_catalog.+) 1))',
                p_template, tc) INTO held USING newest.tenant_name, newest.range_start;
            RETURN NEXT;
        END LOOP;
        RETURN;
    END IF;
    RETURN QUERY EXECUTE pg_catalog.format(
        'SELECT c.tenant_name, EXISTS (SELECT 1 FROM _wh_data.%1$I d WHERE d.schema_name OPERATOR(pg_catalog.=) c.tenant_name '
        '    AND d.%2$I OPERATOR(pg_catalog.>=) s.range_start AND d.%2$I OPERATOR(pg_catalog.<) (s.range_start OPERATOR(pg_catalog.+) 1)) '
        'FROM @extschema@.tenant_connections c '
        'CROSS JOIN LATERAL (SELECT x.range_start, x.row_count FROM @extschema@.slices x '
        '    WHERE x.template_name OPERATOR(pg_catalog.=) $1 AND x.tenant_name OPERATOR(pg_catalog.=) c.tenant_name '
        '      AND x.kind OPERATOR(pg_catalog.=) ''day'' ORDER BY x.range_start DESC LIMIT 1) s '
        'WHERE s.row_count OPERATOR(pg_catalog.>) 0', p_template, tc) USING p_template;
END
$body$;

-- Per tenant x template (every registered tenant with every template: a pair never built
-- shows, never_built): newest day held, whether the table really holds its rows, last
-- refresh, stale flag (a paused tenant is not stale: it is paused), paused. What
-- _wh.freshness shows and _wh.health() counts, from each pair's figures (_wh._pairs).
CREATE VIEW @extschema@._pair_freshness AS
WITH held AS MATERIALIZED (
    SELECT m.template_name, h.tenant_name, h.held
    FROM @extschema@.mv_templates m CROSS JOIN LATERAL @extschema@._newest_held(m.template_name) h
), pairs AS MATERIALIZED (  -- (once, then hashed: never evaluated per tenant x template)
    SELECT p.template_name, p.tenant_name, p.newest_day, p.last_refreshed_at FROM @extschema@._pairs p
)
SELECT t.tenant_name, m.template_name,
       p.newest_day,
       p.newest_day IS NULL AS never_built,
       -- (A hashed lookup in the held pairs, those whose newest day has rows, computed only
       -- when data_present is read: reader_freshness, a SECURITY DEFINER function, never
       -- reads it.)
       CASE WHEN (m.template_name, t.tenant_name) IN (SELECT h.template_name, h.tenant_name FROM held h WHERE h.held) THEN true
            WHEN (m.template_name, t.tenant_name) IN (SELECT h.template_name, h.tenant_name FROM held h WHERE NOT h.held) THEN false
       END AS data_present,
       p.last_refreshed_at,
       th.threshold AS stale_after,
       (t.paused_at IS NULL AND (p.last_refreshed_at IS NULL OR pg_catalog.now() - p.last_refreshed_at > th.threshold)) AS stale,
       t.paused_at IS NOT NULL AS paused,
       t.paused_at
FROM @extschema@.tenant_connections t
CROSS JOIN @extschema@.mv_templates m
CROSS JOIN LATERAL (
    SELECT coalesce(m.stale_after,
                    (SELECT value::interval FROM @extschema@.settings WHERE key = 'stale_after'),
                    '8 hours'::interval) AS threshold
) th
LEFT JOIN pairs p ON p.template_name = m.template_name AND p.tenant_name = t.tenant_name;

-- Per tenant x template: the above, with the age of the last refresh, the last run of a day
-- (one index probe per pair) and when the refresh pool next takes the pair.
CREATE VIEW @extschema@.freshness AS
SELECT f.tenant_name, f.template_name, f.newest_day, f.never_built, f.data_present, f.last_refreshed_at,
       pg_catalog.now() - f.last_refreshed_at AS age,
       lr.status AS last_run_status,
       lr.started_at AS last_run_at,
       lr.error AS last_error,
       f.stale_after, f.stale, f.paused, f.paused_at,
       q.next_due
FROM @extschema@._pair_freshness f
LEFT JOIN LATERAL (
    SELECT r.status, r.started_at, r.error FROM @extschema@.run_log r
    WHERE r.tenant_name = f.tenant_name AND r.template_name = f.template_name AND r.target_date IS NOT NULL
    ORDER BY r.started_at DESC, r.run_id DESC LIMIT 1
) lr ON true
LEFT JOIN @extschema@.pool_items q ON q.template_name = f.template_name AND q.tenant_name = f.tenant_name;

-- "Data as of" for dashboards: freshness of what the calling login may read, and nothing
-- else (a member of wh_reader or wh_admin: every tenant; a tenant-scoped reader: its
-- tenants; anyone else: no row). No error text, no connection detail. SECURITY DEFINER
-- (the installing superuser's, a fixed query, no argument): readers have no access to _wh;
-- each row is filtered on the login (session_user) that asks.
CREATE FUNCTION @extschema@.reader_freshness()
RETURNS TABLE (tenant_name text, template_name text, newest_day date, last_refreshed_at timestamptz,
               stale boolean, paused boolean)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $body$
SELECT f.tenant_name, f.template_name, f.newest_day, f.last_refreshed_at, f.stale, f.paused
FROM @extschema@.freshness f
WHERE pg_catalog.pg_has_role(session_user, 'wh_reader', 'USAGE')
   OR pg_catalog.pg_has_role(session_user, 'wh_admin', 'USAGE')
   OR f.tenant_name IN (SELECT r.tenant_name FROM _wh_scope.readers r
                        WHERE pg_catalog.pg_has_role(session_user, r.role_oid, 'USAGE'))
ORDER BY 1, 2
$body$;
CREATE VIEW _wh_scope.freshness AS SELECT * FROM @extschema@.reader_freshness();
COMMENT ON VIEW _wh_scope.freshness IS
    'wh: data as of, per tenant and template, for what the calling login may read';

-- Recent failures (7 days), newest first; and every tenant-day (of a template) whose last
-- three runs, whatever the operation, all reported "skipped: busy" (something holds its
-- lock again and again: a stuck session, or a schedule tighter than a run takes), as
-- SQLSTATE 55P03. `resolved`: a later run of the same tenant-day (of the same operation,
-- for a failure that names no day; a connection test, by a later tested connection)
-- succeeded; health() counts only the unresolved.
CREATE VIEW @extschema@.failures AS
SELECT * FROM (
    SELECT r.run_id, r.started_at, r.operation, r.tenant_name, r.template_name, r.target_date AS day,
           r.sqlstate, r.error AS message, r.run_by,
           EXISTS (SELECT 1 FROM @extschema@.run_log s
                   WHERE s.template_name IS NOT DISTINCT FROM r.template_name AND s.tenant_name IS NOT DISTINCT FROM r.tenant_name
                     AND s.run_id > r.run_id AND s.status = 'succeeded'
                     AND CASE WHEN r.target_date IS NOT NULL THEN s.target_date = r.target_date
                              -- a connection that failed its test works once a later test (or a tested change) succeeds
                              WHEN r.operation = 'test_tenant_connection'
                                  THEN s.operation IN ('test_tenant_connection', 'set_tenant_connection')
                                       AND s.details->>'tested' IS DISTINCT FROM 'false'
                              ELSE s.operation = r.operation AND s.target_date IS NULL END) AS resolved
    FROM @extschema@.run_log r
    WHERE r.status = 'failed' AND r.started_at > pg_catalog.now() - interval '7 days'
    UNION ALL
    SELECT b.run_id, b.started_at, b.operation, b.tenant_name, b.template_name, b.target_date,
           '55P03', pg_catalog.format('skipped as busy %s times in a row since %s', k.busy_runs, k.first_busy), b.run_by,
           false
    FROM (
        -- The tenant-days (and jobs) whose last busy skip is recent: few, found by an index.
        SELECT DISTINCT ON (x.template_name, x.tenant_name, x.target_date) x.*
        FROM @extschema@.run_log x
        WHERE x.status = 'skipped' AND x.started_at > pg_catalog.now() - interval '7 days'
          AND x.details->>'reason' = 'busy'
        ORDER BY x.template_name, x.tenant_name, x.target_date, x.run_id DESC
    ) b
    -- Its last three runs, whatever the operation (the tenant's runs of its template, by index).
    CROSS JOIN LATERAL (
        SELECT pg_catalog.count(*) FILTER (WHERE y.busy) AS busy_runs, pg_catalog.min(y.started_at) AS first_busy,
               pg_catalog.bool_and(y.busy) AS all_busy, pg_catalog.max(y.run_id) AS last_run
        FROM (
            SELECT z.run_id, z.started_at, z.status = 'skipped' AND z.details->>'reason' = 'busy' AS busy
            FROM @extschema@.run_log z
            WHERE z.template_name = b.template_name
              AND (z.tenant_name = b.tenant_name OR (b.tenant_name IS NULL AND z.tenant_name IS NULL))
              AND z.target_date IS NOT DISTINCT FROM b.target_date
              AND z.started_at > pg_catalog.now() - interval '7 days' AND z.status IN ('succeeded', 'failed', 'skipped')
            ORDER BY z.run_id DESC LIMIT 3
        ) y
    ) k
    WHERE k.all_busy AND k.busy_runs >= 3 AND k.last_run = b.run_id
) f
ORDER BY f.run_id DESC;

-- wh's pg_cron jobs with their schedules and last runs, every operator's (empty without
-- pg_cron; _wh.job_rows() is in sql/privileges.sql).
CREATE VIEW @extschema@.jobs AS SELECT * FROM @extschema@.job_rows();

-- The refresh pool (_wh.schedule_refresh), per template: its period, the tenants it
-- refreshes (own_periods: with a period of their own), the queue (due_now: due and not
-- paused; oldest_due: the most overdue), the next due, throughput (tenants refreshed in the
-- last hour, and how many of those runs failed or partly failed) and the last run's median time.
CREATE VIEW @extschema@.pool AS
SELECT i.template_name, s.every,
       count(*) AS tenants,
       count(*) FILTER (WHERE i.every IS NOT NULL) AS own_periods,
       count(*) FILTER (WHERE c.paused_at IS NOT NULL) AS paused,
       count(*) FILTER (WHERE i.next_due <= pg_catalog.now() AND c.paused_at IS NULL) AS due_now,
       min(i.next_due) FILTER (WHERE i.next_due <= pg_catalog.now() AND c.paused_at IS NULL) AS oldest_due,
       min(i.next_due) FILTER (WHERE c.paused_at IS NULL) AS next_due,
       count(*) FILTER (WHERE i.last_started_at > pg_catalog.now() - interval '1 hour') AS refreshed_last_hour,
       count(*) FILTER (WHERE i.last_started_at > pg_catalog.now() - interval '1 hour'
                          AND i.last_status IN ('failed', 'partial')) AS failed_last_hour,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY i.last_ms) AS median_ms
FROM @extschema@.pool_items i
LEFT JOIN @extschema@.refresh_schedules s ON s.template_name = i.template_name
LEFT JOIN @extschema@.tenant_connections c ON c.tenant_name = i.tenant_name
GROUP BY i.template_name, s.every;

-- The pool's workers (pg_cron jobs wh:pool:<n>): what each refreshes now (from
-- _wh.progress: seen from sessions of the login that runs them), since when, and how many
-- tenants it refreshed in the last hour.
CREATE VIEW @extschema@.pool_workers AS
SELECT j.jobname AS worker, j.jobid, j.username, j.active,
       p.pid, p.template_name, p.tenant_name, p.elapsed AS working_for,
       (SELECT count(*) FROM @extschema@.pool_items i
        WHERE i.last_worker OPERATOR(pg_catalog.=) pg_catalog.split_part(j.jobname, ':', 3)::integer
          AND i.last_started_at > pg_catalog.now() - interval '1 hour') AS refreshed_last_hour,
       j.last_start, j.last_status, j.last_message
FROM @extschema@.job_rows() j
LEFT JOIN @extschema@.progress p ON p.operation OPERATOR(pg_catalog.=) ('pool worker ' OPERATOR(pg_catalog.||) pg_catalog.split_part(j.jobname, ':', 3))
WHERE j.jobname OPERATOR(pg_catalog.~) '^wh:pool:[0-9]+$';

-- pg_cron's run history of the jobs wh made (_wh.cron_jobs) next to what wh recorded in its run log meanwhile.
CREATE FUNCTION @extschema@.job_history_rows()
RETURNS TABLE (jobid bigint, runid bigint, jobname text, cron_status text, cron_message text,
               start_time timestamptz, end_time timestamptz,
               wh_runs bigint, wh_succeeded bigint, wh_failed bigint, wh_skipped bigint, wh_rows bigint, wh_errors text[])
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $body$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_cron') THEN
        RETURN;
    END IF;
    RETURN QUERY EXECUTE $q$
        SELECT d.jobid, d.runid, j.jobname::text, d.status, d.return_message, d.start_time, d.end_time,
               count(r.run_id), count(r.run_id) FILTER (WHERE r.status = 'succeeded'),
               count(r.run_id) FILTER (WHERE r.status = 'failed'),
               count(r.run_id) FILTER (WHERE r.status = 'skipped'),
               coalesce(sum(r.rows), 0)::bigint,
               pg_catalog.array_remove(pg_catalog.array_agg(r.error ORDER BY r.run_id), NULL)
        FROM cron.job_run_details d
        JOIN cron.job j ON j.jobid = d.jobid
        JOIN @extschema@.cron_jobs w ON w.jobid = j.jobid AND w.username = j.username::name
                                     AND w.jobname = j.jobname AND w.command = j.command AND w.made_in = @extschema@._here()
        LEFT JOIN @extschema@.run_log r
               -- pg_cron stamps start_time after it has sent the command: a run that skips
               -- at once can log a few milliseconds before it.
               ON r.run_by = d.username AND r.started_at >= d.start_time - interval '1 second'
              AND r.started_at <= coalesce(d.end_time, now())
              -- a pool worker: every run of its login meanwhile (its fellow workers' too)
              AND (j.jobname ~ '^wh:pool:[0-9]+$' OR pg_catalog.split_part(j.jobname::text, ':'::text, 3) IN ('all', 'fold')
                   OR r.tenant_name = pg_catalog.split_part(j.jobname::text, ':'::text, 3))
              AND (j.jobname = 'wh:maintenance' OR j.jobname ~ '^wh:pool:[0-9]+$'
                   OR r.template_name = pg_catalog.split_part(j.jobname::text, ':'::text, 2))
        GROUP BY d.jobid, d.runid, j.jobname, d.status, d.return_message, d.start_time, d.end_time
        ORDER BY d.runid DESC $q$;
END
$body$;
CREATE VIEW @extschema@.job_history AS SELECT * FROM @extschema@.job_history_rows();

-- Delete run log rows older than the retention (argument, or the run_log_retention setting).
CREATE FUNCTION @extschema@.prune_run_log(keep interval DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql AS $body$
DECLARE
    horizon interval := coalesce(keep, (SELECT value::interval FROM @extschema@.settings WHERE key = 'run_log_retention'), '30 days');
    n bigint;
BEGIN
    DELETE FROM @extschema@.run_log WHERE started_at < pg_catalog.now() - horizon AND status <> 'running';
    GET DIAGNOSTICS n = ROW_COUNT;
    INSERT INTO @extschema@.run_log (finished_at, operation, status, rows, details)
    VALUES (pg_catalog.clock_timestamp(), 'prune_run_log', 'succeeded', n,
            pg_catalog.jsonb_build_object('kept', horizon::text));
    RETURN n;
END
$body$;

-- The jobs _wh.cron_jobs records as made in another warehouse (a restored dump): this
-- pg_cron never had them; _wh.finish_restore() schedules them again. (A job made here and
-- removed since with cron.unschedule is not lost: it was removed.)
CREATE FUNCTION @extschema@._lost_jobs() RETURNS bigint
LANGUAGE sql STABLE AS $body$
SELECT count(*) FROM @extschema@.cron_jobs w
WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_cron')
  AND w.made_in <> @extschema@._here()
$body$;

-- One jsonb summary you can alert on: status 'ok' only when nothing is wrong now, else
-- 'degraded' with one line per problem in `problems` (what, how many, where to look). A
-- failure that a later run of the same day has mended no longer counts; the data are
-- checked, not only the registry (a pair whose newest day the table does not hold).
CREATE FUNCTION @extschema@.health() RETURNS jsonb
LANGUAGE sql STABLE AS $body$
-- Each figure computed once (the CTEs are materialized): freshness (without the last runs)
-- read once for its three counts, the registry's totals, missing days and templates from each pair's figures
-- (_wh._pairs: a row per pair, not per day).
WITH fr AS MATERIALIZED (
    SELECT x.stale, x.never_built, x.paused, x.data_present FROM @extschema@._pair_freshness x
), pairs AS MATERIALIZED (
    SELECT * FROM @extschema@._pairs
), reg AS MATERIALIZED (
    SELECT coalesce(sum(p.slices), 0) AS slices, coalesce(sum(p.rows), 0) AS registry_rows,
           min(p.oldest_day) AS oldest_data, max(p.newest_end) - 1 AS newest_data,
           coalesce(sum(p.missing_days), 0) AS missing_days
    FROM pairs p
), named AS MATERIALIZED (
    SELECT DISTINCT p.template_name FROM pairs p
), f AS MATERIALIZED (
    SELECT (SELECT count(*) FROM fr WHERE stale AND NOT never_built) AS stale,
           (SELECT count(*) FROM fr WHERE never_built AND NOT paused) AS never_built,
           (SELECT count(*) FROM fr WHERE data_present IS NOT TRUE AND NOT never_built
              AND data_present IS NOT NULL) AS data_missing,
           (SELECT count(*) FROM named n WHERE (pg_catalog.to_regclass(pg_catalog.format('_wh_data.%I', n.template_name)) IS NULL
                    OR pg_catalog.to_regclass(pg_catalog.format('public.%I', n.template_name)) IS NULL)) AS tables_missing,
           (SELECT count(*) FROM @extschema@.failures WHERE NOT resolved) AS unresolved,
           (SELECT count(*) FROM @extschema@.failures
             WHERE started_at > pg_catalog.now() - interval '24 hours') AS failures_24h,
           (SELECT count(*) FROM @extschema@.verify_findings WHERE status = 'drifted') AS drifted,
           (SELECT count(*) FROM @extschema@.verify_findings WHERE status = 'unverifiable') AS unverifiable,
           @extschema@._lost_jobs() AS jobs_missing
)
SELECT pg_catalog.jsonb_build_object(
    'status', CASE WHEN pg_catalog.cardinality(p.problems) = 0 THEN 'ok' ELSE 'degraded' END,
    'problems', pg_catalog.to_jsonb(p.problems),
    'tenants', (SELECT count(*) FROM @extschema@.tenant_connections),
    'templates', (SELECT count(*) FROM @extschema@.mv_templates),
    'slices', reg.slices,
    'registry_rows', reg.registry_rows,
    'stale', f.stale,
    'never_built', f.never_built,
    'data_missing', f.data_missing,
    'tables_missing', f.tables_missing,
    'unresolved_failures', f.unresolved,
    'failures_24h', f.failures_24h,
    'missing_days', reg.missing_days,
    'rollup_days_to_build', (SELECT coalesce(sum(days_to_build), 0) FROM @extschema@.rollups),
    'drifted_days', f.drifted,
    'unverifiable_days', f.unverifiable,
    'jobs_missing', f.jobs_missing,
    'oldest_data', reg.oldest_data,
    'newest_data', reg.newest_data,
    'connections_in_use', (SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE datname = pg_catalog.current_database()),
    'max_connections', pg_catalog.current_setting('max_connections')::int,
    'cache_hit_ratio', (SELECT round(sum(blks_hit)::numeric / nullif(sum(blks_hit + blks_read), 0), 4)
                        FROM pg_catalog.pg_stat_database WHERE datname = pg_catalog.current_database()),
    'pg_cron', EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_cron'),
    'checked_at', pg_catalog.now())
FROM f CROSS JOIN reg
CROSS JOIN LATERAL (
    SELECT pg_catalog.array_remove(ARRAY[
        CASE WHEN f.unresolved > 0 THEN pg_catalog.format('%s failure(s) not mended by a later run: SELECT * FROM _wh.failures WHERE NOT resolved', f.unresolved) END,
        CASE WHEN f.stale > 0 THEN pg_catalog.format('%s tenant x template pair(s) stale: SELECT * FROM _wh.freshness WHERE stale', f.stale) END,
        CASE WHEN f.never_built > 0 THEN pg_catalog.format('%s tenant x template pair(s) never built: SELECT * FROM _wh.freshness WHERE never_built', f.never_built) END,
        CASE WHEN f.data_missing > 0 THEN pg_catalog.format('%s pair(s) whose newest day the registry lists but the table does not hold (a restored registry?): CALL _wh.rebuild_warehouse()', f.data_missing) END,
        CASE WHEN f.tables_missing > 0 THEN pg_catalog.format('%s template table(s) missing behind registry rows: CALL _wh.rebuild_warehouse()', f.tables_missing) END,
        CASE WHEN reg.missing_days > 0 THEN pg_catalog.format('%s day(s) missing between built days: SELECT * FROM _wh.gaps', reg.missing_days) END,
        CASE WHEN f.drifted > 0 THEN pg_catalog.format('%s day(s) differ from their source: SELECT * FROM _wh.drift', f.drifted) END,
        CASE WHEN f.unverifiable > 0 THEN pg_catalog.format('%s day(s) could not be verified: SELECT * FROM _wh.drift', f.unverifiable) END,
        CASE WHEN f.jobs_missing > 0 THEN pg_catalog.format('%s pg_cron job(s) wh made are gone (a restore?): SELECT _wh.finish_restore()', f.jobs_missing) END
    ], NULL) AS problems
) p
$body$;
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/windows.rs:490
-- wh::api::windows::_progress_step
CREATE  FUNCTION "_progress_step"(
	"operation" TEXT, /* & str */
	"template_name" TEXT, /* Option < & str > */
	"tenant_name" TEXT, /* Option < & str > */
	"unit" TEXT, /* & str */
	"done" bigint, /* i64 */
	"total" bigint, /* i64 */
	"current" TEXT, /* Option < & str > */
	"rows" bigint /* Option < i64 > */
) RETURNS void
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_progress_step_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/ops.rs:481
-- wh::api::ops::_raise_if_failed
CREATE  FUNCTION "_raise_if_failed"(
	"result" jsonb /* Option < JsonB > */
) RETURNS void
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_raise_if_failed_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/ops.rs:58
-- wh::api::ops::_rebuild_begin
CREATE  FUNCTION "_rebuild_begin"(
	"tenant_name" TEXT, /* Option < & str > */
	"template_name" TEXT /* Option < & str > */
) RETURNS TABLE (
	"run_id" bigint,  /* i64 */
	"since" timestamp with time zone,  /* TimestampWithTimeZone */
	"resumed" bool  /* bool */
)
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_rebuild_begin_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/ops.rs:114
-- wh::api::ops::_rebuild_finish
CREATE  FUNCTION "_rebuild_finish"(
	"run_id" bigint, /* i64 */
	"tenant_name" TEXT, /* Option < & str > */
	"template_name" TEXT /* Option < & str > */
) RETURNS jsonb /* Out */
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_rebuild_finish_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/ops.rs:80
-- wh::api::ops::_rebuild_todo
CREATE  FUNCTION "_rebuild_todo"(
	"tenant_name" TEXT, /* Option < & str > */
	"template_name" TEXT, /* Option < & str > */
	"since" timestamp with time zone /* Option < TimestampWithTimeZone > */
) RETURNS TABLE (
	"template_name" TEXT,  /* String */
	"tenant_name" TEXT,  /* String */
	"days" date[]  /* Vec < Date > */
)
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_rebuild_todo_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/retired.rs:25
-- wh::api::retired::_record_failure
-- Skipped due to `#[pgrx(sql = false)]`
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/rollup.rs:45
-- wh::api::rollup::_rollup_todo
CREATE  FUNCTION "_rollup_todo"(
	"rollup_name" TEXT, /* Option < & str > */
	"chunk_days" INT DEFAULT 31 /* Option < i32 > */
) RETURNS TABLE (
	"tenant_name" TEXT,  /* String */
	"days" date[]  /* Vec < Date > */
)
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_rollup_todo_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/retired.rs:19
-- wh::api::retired::_run_op
-- Skipped due to `#[pgrx(sql = false)]`
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/retired.rs:37
-- wh::api::retired::_scheduled
-- Skipped due to `#[pgrx(sql = false)]`
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/ops.rs:441
-- wh::api::ops::_scheduled_fold
CREATE  FUNCTION "_scheduled_fold"(
	"template_name" TEXT /* Option < & str > */
) RETURNS jsonb /* Out */
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_scheduled_fold_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/ops.rs:430
-- wh::api::ops::_scheduled_tenant
CREATE  FUNCTION "_scheduled_tenant"(
	"template_name" TEXT, /* Option < & str > */
	"tenant_name" TEXT /* Option < & str > */
) RETURNS jsonb /* Out */
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_scheduled_tenant_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/lib.rs:35
-- requires:
--   api::windows::_plan_window
--   api::windows::_progress
--   api::windows::_progress_step
--   api::windows::_progress_end
--   api::windows::_chunk
--   api::windows::_prepare_days
--   api::windows::_backfill_chunks
--   api::ops::_rebuild_begin
--   api::ops::_rebuild_todo
--   api::ops::_rebuild_finish
--   api::ops::_migrate_plan
--   api::ops::_migrate_prepare
--   api::ops::_migrate_tenant
--   api::ops::_scheduled_tenant
--   api::ops::_scheduled_fold
--   api::ops::_fanout_begin
--   api::ops::_fanout_step
--   api::ops::_fanout_end
--   api::ops::_raise_if_failed
--   api::ops::_pool_sync
--   api::ops::_pool_next
--   api::rollup::_rollup_todo

-- PL/pgSQL where PostgreSQL forces it: lock waits that give up and retry, a secret kept
-- out of an error, and procedures that COMMIT after each chunk. Each calls into Rust;
-- loops over days, and the subtransaction around each run of days, live in Rust.

-- Store a tenant's login in its server's user mapping. The DDL carries the password: if it
-- fails (cancelled, a concurrent change), the error is caught here and raised again
-- without the statement, so no log line ever holds the password.
CREATE FUNCTION @extschema@._set_user_mapping(server text, username text, password text, exists_already boolean)
RETURNS void LANGUAGE plpgsql AS $body$
DECLARE
    st text;
    msg text;
BEGIN
    BEGIN
        IF exists_already THEN
            EXECUTE pg_catalog.format('ALTER USER MAPPING FOR PUBLIC SERVER %I OPTIONS (SET user %L, SET password %L)',
                                      server, username, password);
        ELSE
            EXECUTE pg_catalog.format('CREATE USER MAPPING FOR PUBLIC SERVER %I OPTIONS (user %L, password %L)',
                                      server, username, password);
        END IF;
    EXCEPTION WHEN OTHERS OR query_canceled THEN
        GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
        RAISE EXCEPTION 'wh: could not store the login of server %: %', server,
            pg_catalog.replace(msg, password, '***') USING ERRCODE = st;
    END;
END
$body$;

-- DDL on a relation readers use: each try waits at most lock_ms for its locks (so a slow
-- reader delays wh, and the readers queued behind wh wait at most that long), then rolls
-- back and retries after a short sleep.
-- Returns the number of tries it took; with give_up, 0 when it never got the locks.
CREATE FUNCTION @extschema@._ddl(stmts text[], lock_ms integer DEFAULT 200, tries integer DEFAULT 40, give_up boolean DEFAULT false)
RETURNS integer LANGUAGE plpgsql AS $body$
DECLARE
    attempt integer := 0;
    s text;
    before text := pg_catalog.current_setting('lock_timeout');
BEGIN
    LOOP
        attempt := attempt + 1;
        BEGIN
            PERFORM pg_catalog.set_config('lock_timeout', pg_catalog.format('%sms', lock_ms), true);
            FOREACH s IN ARRAY stmts LOOP
                EXECUTE s;
            END LOOP;
            PERFORM pg_catalog.set_config('lock_timeout', before, true);
            RETURN attempt;
        EXCEPTION WHEN lock_not_available THEN
            IF attempt >= tries AND give_up THEN
                RETURN 0;
            ELSIF attempt >= tries THEN
                RAISE EXCEPTION 'wh: gave up after % tries of % ms waiting for a lock (readers or another wh run hold it): %',
                    attempt, lock_ms, SQLERRM USING ERRCODE = 'lock_not_available';
            END IF;
        END;
        PERFORM pg_catalog.pg_sleep(LEAST(0.05 * attempt, 1.0));
    END LOOP;
END
$body$;

-- Claim days of one tenant and template: the template's row FOR KEY SHARE (a fold holds
-- it FOR UPDATE), then one row of _wh.slices per day FOR UPDATE (inserted as a
-- placeholder when the day is new). Returns the days this transaction now holds; without
-- wait, days another session holds are left out (the caller reports them busy).
CREATE FUNCTION @extschema@._claim_days(p_template text, p_tenant text, p_days date[], p_wait boolean)
RETURNS date[] LANGUAGE plpgsql AS $body$
DECLARE
    got date[];
    d date;
    before text := pg_catalog.current_setting('lock_timeout');
    -- Waiting (wait_for_lock) is bounded too: the caller's lock_timeout, at most 10 s.
    short text := CASE WHEN NOT p_wait THEN '100ms'
                       WHEN before::interval = '0'::interval OR before::interval > '10s'::interval THEN '10s'
                       ELSE before END;
BEGIN
    -- The template first: while a fold or a partition drop holds it, every day is busy.
    BEGIN
        PERFORM pg_catalog.set_config('lock_timeout', short, true);
        PERFORM 1 FROM @extschema@.mv_templates m WHERE m.template_name = p_template FOR KEY SHARE;
        PERFORM pg_catalog.set_config('lock_timeout', before, true);
    EXCEPTION WHEN lock_not_available THEN
        RETURN '{}';
    END;
    BEGIN
        PERFORM pg_catalog.set_config('lock_timeout', short, true);
        INSERT INTO @extschema@.slices AS s (template_name, tenant_name, schema_name, slice_name, kind, range_start, range_end, row_count)
        SELECT p_template, p_tenant, p_tenant, p_template || '_' || pg_catalog.to_char(x.d, 'YYYY_MM_DD'), 'day', x.d, x.d + 1, 0
        FROM pg_catalog.unnest(p_days) AS x(d)
        ON CONFLICT DO NOTHING;
        PERFORM pg_catalog.set_config('lock_timeout', before, true);
    EXCEPTION WHEN lock_not_available THEN
        -- Another session is creating one of these days: try the days one by one (those
        -- still held stay out).
        FOREACH d IN ARRAY p_days LOOP
            BEGIN
                PERFORM pg_catalog.set_config('lock_timeout', short, true);
                INSERT INTO @extschema@.slices AS s (template_name, tenant_name, schema_name, slice_name, kind, range_start, range_end, row_count)
                VALUES (p_template, p_tenant, p_tenant, p_template || '_' || pg_catalog.to_char(d, 'YYYY_MM_DD'), 'day', d, d + 1, 0)
                ON CONFLICT DO NOTHING;
                PERFORM pg_catalog.set_config('lock_timeout', before, true);
            EXCEPTION WHEN lock_not_available THEN
                NULL;
            END;
        END LOOP;
    END;
    IF p_wait THEN
        BEGIN
            PERFORM pg_catalog.set_config('lock_timeout', short, true);
            SELECT pg_catalog.array_agg(q.range_start ORDER BY q.range_start) INTO got FROM (
                SELECT s.range_start FROM @extschema@.slices s
                WHERE s.template_name = p_template AND s.tenant_name = p_tenant AND s.kind = 'day' AND s.range_start = ANY (p_days)
                ORDER BY s.range_start FOR UPDATE OF s) q;
            PERFORM pg_catalog.set_config('lock_timeout', before, true);
        EXCEPTION WHEN lock_not_available THEN
            PERFORM pg_catalog.set_config('lock_timeout', before, true);
            RETURN '{}';  -- still held after the bounded wait: every day is busy
        END;
    ELSE
        SELECT pg_catalog.array_agg(q.range_start ORDER BY q.range_start) INTO got FROM (
            SELECT s.range_start FROM @extschema@.slices s
            WHERE s.template_name = p_template AND s.tenant_name = p_tenant AND s.kind = 'day' AND s.range_start = ANY (p_days)
            ORDER BY s.range_start FOR UPDATE OF s SKIP LOCKED) q;
    END IF;
    RETURN coalesce(got, '{}');
END
$body$;

-- Take a scheduled run's lock (a row of _wh.run_locks) for this transaction, or say it is
-- busy. Never waits longer than 100 ms (a first run of the same job inserting the row).
CREATE FUNCTION @extschema@._try_run_lock(p_key text) RETURNS boolean
LANGUAGE plpgsql AS $body$
DECLARE
    before text := pg_catalog.current_setting('lock_timeout');
    got boolean;
BEGIN
    PERFORM pg_catalog.set_config('lock_timeout', '100ms', true);
    INSERT INTO @extschema@.run_locks AS l (lock_key) VALUES (p_key) ON CONFLICT DO NOTHING;
    UPDATE @extschema@.run_locks AS l SET taken_by = session_user, taken_at = pg_catalog.now()
    WHERE l.lock_key = (SELECT x.lock_key FROM @extschema@.run_locks x WHERE x.lock_key = p_key FOR UPDATE SKIP LOCKED)
    RETURNING true INTO got;
    PERFORM pg_catalog.set_config('lock_timeout', before, true);
    RETURN coalesce(got, false);
EXCEPTION WHEN lock_not_available THEN
    PERFORM pg_catalog.set_config('lock_timeout', before, true);
    RETURN false;
END
$body$;

-- The pairs listed in _wh.pair_changes folded into _wh.pair_stats (with `everything`, every
-- pair of the registry computed again: the nightly maintenance job, and after a restore).
-- Called last in a writer's transaction, it never waits: while another session settles
-- (or at REPEATABLE READ, a settle committed since this snapshot), it does nothing, and its
-- pairs stay listed: the views compute them from the registry until the next settle. A
-- change not committed yet stays listed too. The pairs settled.
CREATE FUNCTION @extschema@._settle_pairs(everything boolean DEFAULT false) RETURNS bigint
LANGUAGE plpgsql AS $body$
DECLARE
    templates text[];
    tenants text[];
BEGIN
    IF NOT @extschema@._try_run_lock('wh:pair_stats') THEN
        RETURN 0;
    END IF;
    -- (A statement of its own, so the figures below are read after every change it takes.)
    WITH gone AS (DELETE FROM @extschema@.pair_changes c RETURNING c.template_name, c.tenant_name)
    SELECT pg_catalog.array_agg(g.template_name), pg_catalog.array_agg(g.tenant_name) INTO templates, tenants
    FROM (SELECT DISTINCT gone.template_name, gone.tenant_name FROM gone) g;
    IF everything THEN
        DELETE FROM @extschema@.pair_stats;
        SELECT pg_catalog.array_agg(p.template_name), pg_catalog.array_agg(p.tenant_name) INTO templates, tenants
        FROM (SELECT DISTINCT s.template_name, s.tenant_name FROM @extschema@.slices s) p;
    ELSE
        DELETE FROM @extschema@.pair_stats p
        USING unnest(templates, tenants) AS u(template_name, tenant_name)
        WHERE p.template_name = u.template_name AND p.tenant_name = u.tenant_name;
    END IF;
    INSERT INTO @extschema@.pair_stats SELECT * FROM @extschema@._pair_figures(templates, tenants);
    RETURN coalesce(pg_catalog.cardinality(templates), 0);
EXCEPTION WHEN serialization_failure OR deadlock_detected THEN
    RETURN 0;  -- (rolled back to its start: the writer's own work stands)
END
$body$;

-- Build every day of [start_date, end_date], a chunk of days (at most a month) per remote
-- query, committing after each chunk and printing its progress. A rerun skips days
-- already built (unless force_recreate), so it resumes.
CREATE PROCEDURE @extschema@.backfill(
    template_name text, tenant_name text, start_date date, end_date date,
    force_recreate boolean DEFAULT false, max_days integer DEFAULT 3660, chunk_days integer DEFAULT 31
) LANGUAGE plpgsql AS $body$
DECLARE
    n integer;
    c record;
    r jsonb;
    ok integer := 0;
    unchanged integer := 0;
    skipped integer := 0;
    failed integer := 0;
    total bigint := 0;
    prev text[] := @extschema@._enter();
BEGIN
    n := @extschema@._plan_window(template_name, tenant_name, start_date, end_date, max_days);
    FOR c IN SELECT * FROM @extschema@._backfill_chunks(start_date, end_date, chunk_days) LOOP
        -- Where it is, for _wh.progress in other sessions (before the chunk's work).
        PERFORM @extschema@._progress_step('backfill', template_name, tenant_name, 'day', c.first_index - 1, n,
            c.days[1] || '..' || c.days[pg_catalog.array_upper(c.days, 1)], total);
        r := @extschema@._chunk(coalesce(force_recreate, false),
                                template_name, tenant_name, c.days, 'backfill');
        PERFORM @extschema@._settle_pairs();
        COMMIT;  -- the chunk is durable before its progress line is printed
        PERFORM @extschema@._enter();
        RAISE NOTICE '%', @extschema@._progress(c.first_index, n, tenant_name, r);
        ok := ok + (SELECT count(*) FROM pg_catalog.jsonb_array_elements(r->'results') x
                    WHERE x->>'status' = 'succeeded' AND x->'details'->>'action' IS DISTINCT FROM 'unchanged');
        unchanged := unchanged + (SELECT count(*) FROM pg_catalog.jsonb_array_elements(r->'results') x
                    WHERE x->'details'->>'action' = 'unchanged');
        skipped := skipped + (r->>'skipped')::int;
        failed := failed + (r->>'failed')::int;
        total := total + coalesce((r->>'rows')::bigint, 0);
    END LOOP;
    PERFORM @extschema@._progress_end();
    RAISE NOTICE 'backfill % %: % built, % unchanged, % skipped, % failed, % rows', template_name, tenant_name,
        ok, unchanged, skipped, failed, total;
    IF failed > 0 THEN
        RAISE WARNING 'backfill % %: % day(s) failed; see _wh.run_log; a rerun retries them',
            template_name, tenant_name, failed;
    END IF;
    PERFORM @extschema@._leave(prev);
END
$body$;
COMMENT ON PROCEDURE @extschema@.backfill(text, text, date, date, boolean, integer, integer) IS
    'Build a date range a chunk of days per remote query and per transaction; resumable (skips built days unless force_recreate)';

-- A rollup declared after its base holds days: compute every day the base holds and the
-- rollup does not, a chunk of one tenant's days per transaction, from the stored base rows
-- (no source is asked). Resumable: a rerun builds what is left.
CREATE PROCEDURE @extschema@.build_rollup(rollup_name text, chunk_days integer DEFAULT 31)
LANGUAGE plpgsql AS $body$
DECLARE
    c record;
    r jsonb;
    n integer;
    i integer := 1;
    failed integer := 0;
    total bigint := 0;
    prev text[] := @extschema@._enter();
BEGIN
    SELECT coalesce(sum(pg_catalog.cardinality(t.days)), 0) INTO n FROM @extschema@._rollup_todo(rollup_name, chunk_days) t;
    RAISE NOTICE 'build_rollup %: % tenant-day(s) to build', rollup_name, n;
    FOR c IN SELECT * FROM @extschema@._rollup_todo(rollup_name, chunk_days) LOOP
        PERFORM @extschema@._progress_step('build_rollup', rollup_name, c.tenant_name, 'day', i - 1, n,
            c.days[1] || '..' || c.days[pg_catalog.array_upper(c.days, 1)], total);
        r := @extschema@._chunk(false, rollup_name, c.tenant_name, c.days, 'build_rollup');
        PERFORM @extschema@._settle_pairs();
        COMMIT;
        PERFORM @extschema@._enter();
        RAISE NOTICE '%', @extschema@._progress(i, n, c.tenant_name, r);
        i := i + pg_catalog.cardinality(c.days);
        failed := failed + (r->>'failed')::int;
        total := total + coalesce((r->>'rows')::bigint, 0);
    END LOOP;
    PERFORM @extschema@._progress_end();
    RAISE NOTICE 'build_rollup %: % day(s), % rows, % failed', rollup_name, n, total, failed;
    IF failed > 0 THEN
        RAISE WARNING 'build_rollup %: % day(s) failed; see _wh.run_log; a rerun retries them', rollup_name, failed;
    END IF;
    PERFORM @extschema@._leave(prev);
END
$body$;
COMMENT ON PROCEDURE @extschema@.build_rollup(text, integer) IS
    'Build a rollup for every day its base holds and it does not, from the stored base rows, a chunk per transaction; resumable';

-- Disaster recovery for big warehouses: fetch every tenant-day of _wh.slices (in scope)
-- again, a chunk per remote query, committing after each chunk. A rerun resumes the
-- unfinished run of the same scope, skipping days it already refreshed.
CREATE PROCEDURE @extschema@.rebuild_warehouse(tenant_name text DEFAULT NULL, template_name text DEFAULT NULL)
LANGUAGE plpgsql AS $body$
DECLARE
    run record;
    s record;
    n integer;
    i integer := 1;
    r jsonb;
    rows bigint := 0;
    prev text[] := @extschema@._enter();
BEGIN
    SELECT * INTO run FROM @extschema@._rebuild_begin(tenant_name, template_name);
    COMMIT;
    PERFORM @extschema@._enter();
    SELECT coalesce(sum(pg_catalog.cardinality(t.days)), 0) INTO n FROM @extschema@._rebuild_todo(tenant_name, template_name, run.since) t;
    RAISE NOTICE 'rebuild run %: % day(s) to rebuild%', run.run_id, n,
        CASE WHEN run.resumed THEN ' (resuming)' ELSE '' END;
    FOR s IN SELECT * FROM @extschema@._rebuild_todo(tenant_name, template_name, run.since) LOOP
        PERFORM @extschema@._progress_step('rebuild_warehouse', s.template_name, s.tenant_name, 'day', i - 1, n,
            s.days[1] || '..' || s.days[pg_catalog.array_upper(s.days, 1)], rows);
        r := @extschema@._chunk(true, s.template_name, s.tenant_name, s.days, 'rebuild');
        PERFORM @extschema@._settle_pairs();
        COMMIT;
        PERFORM @extschema@._enter();
        RAISE NOTICE '%', @extschema@._progress(i, n, s.tenant_name, r);
        i := i + pg_catalog.cardinality(s.days);
        rows := rows + coalesce((r->>'rows')::bigint, 0);
    END LOOP;
    PERFORM @extschema@._progress_end();
    RAISE NOTICE 'rebuild run %: %', run.run_id, @extschema@._rebuild_finish(run.run_id, tenant_name, template_name);
    COMMIT;
    PERFORM @extschema@._leave(prev);
END
$body$;

-- Storage 0.1.0 -> 0.2.0, after ALTER EXTENSION wh UPDATE: every tenant's day and year
-- partitions move into public.<template>, a tenant per transaction, verified per day
-- before the old tables are dropped. Rerunnable: it continues with what is left.
CREATE PROCEDURE @extschema@.migrate_storage()
LANGUAGE plpgsql AS $body$
DECLARE
    p record;
    r jsonb;
    prepared text[] := '{}';
    n integer := 0;
    prev text[] := @extschema@._enter();
BEGIN
    FOR p IN SELECT * FROM @extschema@._migrate_plan() LOOP
        IF NOT p.template_name = ANY (prepared) THEN
            RAISE NOTICE 'migrate %: %', p.template_name, @extschema@._migrate_prepare(p.template_name);
            COMMIT;
            PERFORM @extschema@._enter();
            prepared := prepared || p.template_name;
        END IF;
        r := @extschema@._migrate_tenant(p.template_name, p.tenant_name);
        COMMIT;
        PERFORM @extschema@._enter();
        n := n + 1;
        RAISE NOTICE 'migrate % %: % rows, % days, verified', p.template_name, p.tenant_name, r->>'rows', r->'details'->>'days';
    END LOOP;
    RAISE NOTICE 'migrate_storage: % tenant table(s) moved', n;
    PERFORM @extschema@._leave(prev);
END
$body$;

-- What pg_cron runs (PL/pgSQL, so the COMMIT inside is allowed). The run log is committed
-- first, then the job fails if any day failed, so a failed refresh shows as failed in both
-- _wh.run_log and cron.job_run_details.
-- One tenant: today and the template's lookback days.
CREATE PROCEDURE @extschema@.run_scheduled(template_name text, tenant_name text)
LANGUAGE plpgsql AS $body$
DECLARE
    r jsonb;
    prev text[] := @extschema@._enter();
BEGIN
    r := @extschema@._scheduled_tenant(template_name, tenant_name);
    PERFORM @extschema@._settle_pairs();
    COMMIT;
    PERFORM @extschema@._enter();
    PERFORM @extschema@._leave(prev);
    PERFORM @extschema@._raise_if_failed(r);
END
$body$;

-- Every tenant of the template at once, each tenant's days committed as soon as its answer
-- is stored, so a hung source never holds the other tenants' rows (or their days' locks)
-- until its deadline: a fan-out begun, stepped a transaction at a time, ended. With `job`
-- (the wh:<template>:all job), each transaction first takes the job's lock.
CREATE PROCEDURE @extschema@._fanout_committing(template_name text, target_date date, job boolean, INOUT result jsonb)
LANGUAGE plpgsql AS $body$
DECLARE
    prev text[] := @extschema@._enter();
BEGIN
    result := @extschema@._fanout_begin(template_name, target_date, job);
    IF result IS NULL THEN
        COMMIT;
        PERFORM @extschema@._enter();
        WHILE @extschema@._fanout_step(template_name, job) LOOP
            PERFORM @extschema@._settle_pairs();
            COMMIT;
            PERFORM @extschema@._enter();
        END LOOP;
        result := @extschema@._fanout_end();
    END IF;
    COMMIT;
    PERFORM @extschema@._enter();
    PERFORM @extschema@._leave(prev);
END
$body$;

-- update_all_tenants, committing each tenant as it answers:
-- CALL _wh.refresh_all_tenants('foodlogstats');  (the result comes back as a row)
CREATE PROCEDURE @extschema@.refresh_all_tenants(template_name text, target_date date DEFAULT @extschema@.current_date_utc(),
                                                 INOUT result jsonb DEFAULT NULL)
LANGUAGE plpgsql AS $body$
BEGIN
    CALL @extschema@._fanout_committing(template_name, target_date, false, result);
END
$body$;
COMMENT ON PROCEDURE @extschema@.refresh_all_tenants(text, date, jsonb) IS
    'wh: today + lookback for every tenant, remote queries overlapped, each tenant committed as its answer is stored';

-- The wh:<template>:all job: the same, under the job's lock; fails the job if a day failed.
CREATE PROCEDURE @extschema@.run_scheduled_all(template_name text)
LANGUAGE plpgsql AS $body$
DECLARE
    r jsonb;
BEGIN
    CALL @extschema@._fanout_committing(template_name, @extschema@.current_date_utc(), true, r);
    PERFORM @extschema@._raise_if_failed(r);
END
$body$;

-- Last year folded for every tenant that has its days.
-- The wh:<template>:verify job: every tenant not paused, its last `lookback` up to
-- yesterday, a tenant per transaction (findings in _wh.drift).
CREATE PROCEDURE @extschema@.run_scheduled_verify(template_name text, lookback interval DEFAULT '35 days', repair boolean DEFAULT false)
LANGUAGE plpgsql AS $body$
DECLARE
    t record;
    d date;
    prev text[] := @extschema@._enter();
BEGIN
    d := @extschema@.current_date_utc();
    FOR t IN SELECT c.tenant_name FROM @extschema@.tenant_connections c WHERE c.paused_at IS NULL ORDER BY 1 LOOP
        PERFORM @extschema@.verify(template_name, t.tenant_name, (d - lookback)::date, d - 1, repair);
        PERFORM @extschema@._settle_pairs();
        COMMIT;
        PERFORM @extschema@._enter();
    END LOOP;
    PERFORM @extschema@._leave(prev);
END
$body$;

CREATE PROCEDURE @extschema@.run_scheduled_fold(template_name text)
LANGUAGE plpgsql AS $body$
DECLARE
    r jsonb;
    prev text[] := @extschema@._enter();
BEGIN
    r := @extschema@._scheduled_fold(template_name);
    PERFORM @extschema@._settle_pairs();
    COMMIT;
    PERFORM @extschema@._enter();
    PERFORM @extschema@._leave(prev);
    PERFORM @extschema@._raise_if_failed(r);
END
$body$;

-- A worker of the refresh pool (the wh:pool:<n> job): the most overdue tenant of the
-- queue refreshed and committed, then the next, until none is due or none has room (a
-- place among wh.max_source_connections and on its source server). Fails the job at the
-- end if a tenant's day failed (each is in _wh.run_log as it happened).
CREATE PROCEDURE @extschema@.run_pool(worker integer DEFAULT 1)
LANGUAGE plpgsql AS $body$
DECLARE
    r jsonb;
    failed jsonb := '[]';
    prev text[] := @extschema@._enter();
BEGIN
    PERFORM @extschema@._pool_sync();
    COMMIT;
    PERFORM @extschema@._enter();
    LOOP
        r := @extschema@._pool_next(worker);
        EXIT WHEN r IS NULL;
        IF r->>'status' IN ('failed', 'partial') THEN
            -- A tenant's days, or the tenant's run itself when it failed as a whole.
            failed := failed || CASE WHEN r ? 'results' THEN r->'results' ELSE pg_catalog.jsonb_build_array(r) END;
        END IF;
        -- The tenant's figures for the monitoring views, in the same transaction.
        PERFORM @extschema@._settle_pairs();
        COMMIT;
        PERFORM @extschema@._enter();
    END LOOP;
    COMMIT;
    PERFORM @extschema@._enter();
    PERFORM @extschema@._leave(prev);
    IF pg_catalog.jsonb_array_length(failed) > 0 THEN
        PERFORM @extschema@._raise_if_failed(pg_catalog.jsonb_build_object('status', 'partial', 'results', failed));
    END IF;
END
$body$;
COMMENT ON PROCEDURE @extschema@.run_pool(integer) IS
    'wh: a worker of the refresh pool: every due tenant it can take, the most overdue first, each committed';
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/ops.rs:563
-- wh::api::ops::_table_policies
CREATE  FUNCTION "_table_policies"(
	"template_name" TEXT /* Option < & str > */
) RETURNS TABLE (
	"policy_name" TEXT,  /* String */
	"create_statement" TEXT  /* String */
)
STABLE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_table_policies_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/ops.rs:187
-- wh::api::ops::apply_retention
CREATE  FUNCTION "apply_retention"(
	"template_name" TEXT, /* Option < & str > */
	"tenant_name" TEXT DEFAULT NULL, /* Option < & str > */
	"older_than" date DEFAULT NULL, /* Option < Date > */
	"include_current_year" bool DEFAULT false, /* Option < bool > */
	"dry_run" bool DEFAULT false /* Option < bool > */
) RETURNS jsonb /* Out */
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'apply_retention_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/ops.rs:26
-- wh::api::ops::create_combined_table_by_year
CREATE  FUNCTION "create_combined_table_by_year"(
	"template_name" TEXT, /* Option < & str > */
	"tenant_name" TEXT, /* Option < & str > */
	"year" INT /* Option < i32 > */
) RETURNS jsonb /* Out */
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'create_combined_table_by_year_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/windows.rs:200
-- wh::api::windows::create_mv_from_template
CREATE  FUNCTION "create_mv_from_template"(
	"template_name" TEXT, /* Option < & str > */
	"tenant_name" TEXT, /* Option < & str > */
	"target_schema" TEXT DEFAULT NULL, /* Option < & str > */
	"target_date" date DEFAULT _wh.current_date_utc() /* Option < Date > */
) RETURNS jsonb /* Out */
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'create_mv_from_template_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/windows.rs:347
-- wh::api::windows::create_mv_name
CREATE  FUNCTION "create_mv_name"(
	"template_name" TEXT, /* Option < & str > */
	"target_date" date /* Option < Date > */
) RETURNS TEXT /* Result < String, ErrorReport > */
IMMUTABLE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'create_mv_name_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/ops.rs:322
-- wh::api::ops::distribute
CREATE  FUNCTION "distribute"(
	"template_name" TEXT, /* Option < & str > */
	"shard_count" INT DEFAULT NULL /* Option < i32 > */
) RETURNS jsonb /* Out */
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'distribute_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/windows.rs:333
-- wh::api::windows::does_mv_exist
CREATE  FUNCTION "does_mv_exist"(
	"template_name" TEXT, /* Option < & str > */
	"tenant_name" TEXT, /* Option < & str > */
	"target_date" date /* Option < Date > */
) RETURNS bool /* Result < bool, ErrorReport > */
STABLE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'does_mv_exist_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/ops.rs:329
-- wh::api::ops::drop_template
CREATE  FUNCTION "drop_template"(
	"template_name" TEXT, /* Option < & str > */
	"keep_data" bool DEFAULT false /* Option < bool > */
) RETURNS jsonb /* Out */
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'drop_template_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/ops.rs:289
-- wh::api::ops::finish_restore
CREATE  FUNCTION "finish_restore"() RETURNS jsonb /* Out */
STRICT
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'finish_restore_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/windows.rs:145
-- wh::api::windows::get_tenant_connection_string
CREATE  FUNCTION "get_tenant_connection_string"(
	"tenant_name" TEXT /* Option < & str > */
) RETURNS TEXT /* Result < String, ErrorReport > */
STABLE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'get_tenant_connection_string_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/ops.rs:491
-- wh::api::ops::grant_tenant_reader
CREATE  FUNCTION "grant_tenant_reader"(
	"role_name" TEXT, /* Option < & str > */
	"tenant_name" TEXT /* Option < & str > */
) RETURNS jsonb /* Out */
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'grant_tenant_reader_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/ops.rs:250
-- wh::api::ops::pause_tenant
CREATE  FUNCTION "pause_tenant"(
	"tenant_name" TEXT /* Option < & str > */
) RETURNS jsonb /* Out */
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'pause_tenant_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/ops.rs:44
-- wh::api::ops::rebuild_entire_warehouse
CREATE  FUNCTION "rebuild_entire_warehouse"(
	"tenant_name" TEXT DEFAULT NULL, /* Option < & str > */
	"template_name" TEXT DEFAULT NULL, /* Option < & str > */
	"dry_run" bool DEFAULT false, /* Option < bool > */
	"allow_shrink" bool DEFAULT false /* Option < bool > */
) RETURNS jsonb /* Out */
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'rebuild_entire_warehouse_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/windows.rs:247
-- wh::api::windows::refresh_mv
CREATE  FUNCTION "refresh_mv"(
	"template_name" TEXT, /* Option < & str > */
	"tenant_name" TEXT, /* Option < & str > */
	"target_date" date, /* Option < Date > */
	"allow_shrink" bool DEFAULT false /* Option < bool > */
) RETURNS jsonb /* Out */
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'refresh_mv_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/ops.rs:279
-- wh::api::ops::remove_tenant
CREATE  FUNCTION "remove_tenant"(
	"tenant_name" TEXT, /* Option < & str > */
	"drop_data" bool DEFAULT false /* Option < bool > */
) RETURNS jsonb /* Out */
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'remove_tenant_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/ops.rs:296
-- wh::api::ops::rename_template_column
CREATE  FUNCTION "rename_template_column"(
	"template_name" TEXT, /* Option < & str > */
	"column_name" TEXT, /* Option < & str > */
	"new_name" TEXT, /* Option < & str > */
	"query_template" TEXT /* Option < & str > */
) RETURNS jsonb /* Out */
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'rename_template_column_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/ops.rs:263
-- wh::api::ops::rename_tenant
CREATE  FUNCTION "rename_tenant"(
	"tenant_name" TEXT, /* Option < & str > */
	"new_name" TEXT /* Option < & str > */
) RETURNS jsonb /* Out */
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'rename_tenant_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/ops.rs:256
-- wh::api::ops::resume_tenant
CREATE  FUNCTION "resume_tenant"(
	"tenant_name" TEXT /* Option < & str > */
) RETURNS jsonb /* Out */
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'resume_tenant_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/ops.rs:497
-- wh::api::ops::revoke_tenant_reader
CREATE  FUNCTION "revoke_tenant_reader"(
	"role_name" TEXT, /* Option < & str > */
	"tenant_name" TEXT /* Option < & str > */
) RETURNS jsonb /* Out */
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'revoke_tenant_reader_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/windows.rs:376
-- wh::api::windows::run_maintenance
CREATE  FUNCTION "run_maintenance"() RETURNS jsonb /* Out */
STRICT
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'run_maintenance_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/ops.rs:388
-- wh::api::ops::schedule_refresh
CREATE  FUNCTION "schedule_refresh"(
	"template_name" TEXT, /* Option < & str > */
	"every" interval DEFAULT '1 hour', /* Option < Interval > */
	"tenant_name" TEXT DEFAULT NULL /* Option < & str > */
) RETURNS jsonb /* Out */
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'schedule_refresh_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/ops.rs:358
-- wh::api::ops::schedule_template
CREATE  FUNCTION "schedule_template"(
	"template_name" TEXT, /* Option < & str > */
	"schedule" TEXT DEFAULT '10 */4 * * *' /* Option < & str > */
) RETURNS jsonb /* Out */
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'schedule_template_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/ops.rs:340
-- wh::api::ops::schedule_tenant
CREATE  FUNCTION "schedule_tenant"(
	"template_name" TEXT, /* Option < & str > */
	"tenant_name" TEXT, /* Option < & str > */
	"schedule" TEXT DEFAULT '10 */4 * * *', /* Option < & str > */
	"stagger" bool DEFAULT true /* Option < bool > */
) RETURNS jsonb /* Out */
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'schedule_tenant_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/ops.rs:620
-- wh::api::ops::schedule_verify
CREATE  FUNCTION "schedule_verify"(
	"template_name" TEXT, /* Option < & str > */
	"schedule" TEXT DEFAULT '0 3 * * 0', /* Option < & str > */
	"lookback" interval DEFAULT '35 days', /* Option < Interval > */
	"repair" bool DEFAULT false /* Option < bool > */
) RETURNS jsonb /* Out */
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'schedule_verify_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/ops.rs:369
-- wh::api::ops::schedule_yearly_fold
CREATE  FUNCTION "schedule_yearly_fold"(
	"template_name" TEXT, /* Option < & str > */
	"schedule" TEXT DEFAULT '0 2 15 2 *' /* Option < & str > */
) RETURNS jsonb /* Out */
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'schedule_yearly_fold_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/ops.rs:582
-- wh::api::ops::seed_leftovers
CREATE  FUNCTION "seed_leftovers"() RETURNS TABLE (
	"object" TEXT,  /* String */
	"drop_statement" TEXT  /* String */
)
STRICT
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'seed_leftovers_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/rollup.rs:19
-- wh::api::rollup::set_rollup
CREATE  FUNCTION "set_rollup"(
	"rollup_name" TEXT, /* Option < & str > */
	"base_template" TEXT, /* Option < & str > */
	"select_list" TEXT, /* Option < & str > */
	"group_by" TEXT, /* Option < & str > */
	"indexes" TEXT[] DEFAULT '{}', /* :: std :: option :: Option < Vec < String > > */
	"description" TEXT DEFAULT NULL, /* Option < & str > */
	"partition_grain" TEXT DEFAULT NULL /* Option < & str > */
) RETURNS jsonb /* Out */
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'set_rollup_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/ops.rs:209
-- wh::api::ops::set_slice_tablespace
CREATE  FUNCTION "set_slice_tablespace"(
	"template_name" TEXT, /* Option < & str > */
	"tenant_name" TEXT, /* Option < & str > */
	"year" INT, /* Option < i32 > */
	"tablespace" TEXT /* Option < & str > */
) RETURNS jsonb /* Out */
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'set_slice_tablespace_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/windows.rs:159
-- wh::api::windows::set_template
CREATE  FUNCTION "set_template"(
	"template_name" TEXT, /* Option < & str > */
	"query_template" TEXT, /* Option < & str > */
	"column_definitions" TEXT, /* Option < & str > */
	"time_column" TEXT, /* Option < & str > */
	"unique_key" TEXT DEFAULT NULL, /* Option < & str > */
	"indexes" TEXT[] DEFAULT '{}', /* :: std :: option :: Option < Vec < String > > */
	"description" TEXT DEFAULT NULL, /* Option < & str > */
	"lookback_days" INT DEFAULT 1, /* Option < i32 > */
	"partition_grain" TEXT DEFAULT 'month' /* Option < & str > */
) RETURNS jsonb /* Out */
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'set_template_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/ops.rs:150
-- wh::api::ops::set_template_limits
CREATE  FUNCTION "set_template_limits"(
	"template_name" TEXT, /* Option < & str > */
	"max_rows_per_day" bigint DEFAULT NULL, /* Option < i64 > */
	"max_bytes_per_day" bigint DEFAULT NULL, /* Option < i64 > */
	"max_row_bytes" bigint DEFAULT NULL, /* Option < i64 > */
	"max_shrink_percent" INT DEFAULT NULL /* Option < i32 > */
) RETURNS jsonb /* Out */
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'set_template_limits_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/ops.rs:125
-- wh::api::ops::set_template_policy
CREATE  FUNCTION "set_template_policy"(
	"template_name" TEXT, /* Option < & str > */
	"retention" interval DEFAULT NULL, /* Option < Interval > */
	"year_tablespace" TEXT DEFAULT NULL, /* Option < & str > */
	"stale_after" interval DEFAULT NULL, /* Option < Interval > */
	"clear" TEXT[] DEFAULT '{}', /* :: std :: option :: Option < Vec < Option < String > > > */
	"fold_storage" TEXT DEFAULT NULL /* Option < & str > */
) RETURNS jsonb /* Out */
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'set_template_policy_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/windows.rs:96
-- wh::api::windows::set_tenant_connection
CREATE  FUNCTION "set_tenant_connection"(
	"tenant_name" TEXT, /* Option < & str > */
	"host" TEXT DEFAULT NULL, /* Option < & str > */
	"port" INT DEFAULT NULL, /* Option < i32 > */
	"dbname" TEXT DEFAULT NULL, /* Option < & str > */
	"username" TEXT DEFAULT NULL, /* Option < & str > */
	"password" TEXT DEFAULT NULL, /* Option < & str > */
	"sslmode" TEXT DEFAULT NULL, /* Option < & str > */
	"remote_timeout" interval DEFAULT NULL, /* Option < Interval > */
	"sslrootcert" TEXT DEFAULT NULL, /* Option < & str > */
	"channel_binding" TEXT DEFAULT NULL, /* Option < & str > */
	"test_first" bool DEFAULT true /* Option < bool > */
) RETURNS jsonb /* Out */
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'set_tenant_connection_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/ops.rs:233
-- wh::api::ops::set_tenant_query
CREATE  FUNCTION "set_tenant_query"(
	"template_name" TEXT, /* Option < & str > */
	"tenant_name" TEXT, /* Option < & str > */
	"query_template" TEXT, /* Option < & str > */
	"reason" TEXT DEFAULT NULL /* Option < & str > */
) RETURNS jsonb /* Out */
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'set_tenant_query_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/ops.rs:224
-- wh::api::ops::set_year_storage
CREATE  FUNCTION "set_year_storage"(
	"template_name" TEXT, /* Option < & str > */
	"year" INT, /* Option < i32 > */
	"storage" TEXT /* Option < & str > */
) RETURNS jsonb /* Out */
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'set_year_storage_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/windows.rs:151
-- wh::api::windows::test_tenant_connection
CREATE  FUNCTION "test_tenant_connection"(
	"tenant_name" TEXT /* Option < & str > */
) RETURNS jsonb /* Out */
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'test_tenant_connection_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/ops.rs:400
-- wh::api::ops::unschedule_refresh
CREATE  FUNCTION "unschedule_refresh"(
	"template_name" TEXT, /* Option < & str > */
	"tenant_name" TEXT DEFAULT NULL /* Option < & str > */
) RETURNS jsonb /* Out */
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'unschedule_refresh_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/ops.rs:380
-- wh::api::ops::unschedule_tenant
CREATE  FUNCTION "unschedule_tenant"(
	"template_name" TEXT, /* Option < & str > */
	"tenant_name" TEXT /* Option < & str > */
) RETURNS jsonb /* Out */
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'unschedule_tenant_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/windows.rs:323
-- wh::api::windows::update_all_tenants
CREATE  FUNCTION "update_all_tenants"(
	"template_name" TEXT, /* Option < & str > */
	"target_date" date DEFAULT _wh.current_date_utc() /* Option < Date > */
) RETURNS jsonb /* Out */
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'update_all_tenants_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/windows.rs:225
-- wh::api::windows::update_mv_by_template
CREATE  FUNCTION "update_mv_by_template"(
	"template_name" TEXT, /* Option < & str > */
	"tenant_name" TEXT, /* Option < & str > */
	"target_date" date DEFAULT _wh.current_date_utc(), /* Option < Date > */
	"allow_refresh_yesterday" bool DEFAULT true, /* Option < bool > */
	"force_recreate" bool DEFAULT false, /* Option < bool > */
	"wait_for_lock" bool DEFAULT false /* Option < bool > */
) RETURNS jsonb /* Out */
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'update_mv_by_template_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/windows.rs:263
-- wh::api::windows::update_mv_window
CREATE  FUNCTION "update_mv_window"(
	"template_name" TEXT, /* Option < & str > */
	"tenant_name" TEXT, /* Option < & str > */
	"start_date" date, /* Option < Date > */
	"end_date" date, /* Option < Date > */
	"force_recreate" bool DEFAULT false, /* Option < bool > */
	"dry_run" bool DEFAULT false, /* Option < bool > */
	"max_days" INT DEFAULT 3660 /* Option < i32 > */
) RETURNS jsonb /* Out */
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'update_mv_window_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/windows.rs:296
-- wh::api::windows::update_mv_window
CREATE  FUNCTION "update_mv_window"(
	"tenant_name" TEXT, /* Option < & str > */
	"schema_name" TEXT, /* Option < & str > */
	"start_date" date, /* Option < Date > */
	"end_date" date, /* Option < Date > */
	"force" bool, /* Option < bool > */
	"function_name" TEXT /* Option < & str > */
) RETURNS jsonb /* Out */

LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'update_mv_window_seeds_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/windows.rs:368
-- wh::api::windows::update_public_view
CREATE  FUNCTION "update_public_view"(
	"template_name" TEXT /* Option < & str > */
) RETURNS jsonb /* Out */
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'update_public_view_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/windows.rs:359
-- wh::api::windows::update_tenant_union_view
CREATE  FUNCTION "update_tenant_union_view"(
	"template_name" TEXT, /* Option < & str > */
	"tenant_name" TEXT /* Option < & str > */
) RETURNS jsonb /* Out */
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'update_tenant_union_view_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/lib.rs:73
-- requires:
--   privileges
--   api::windows::update_mv_window
--   api::windows::update_tenant_union_view
--   api::windows::update_public_view
--   api::windows::does_mv_exist
--   api::windows::refresh_mv
--   api::ops::create_combined_table_by_year

-- The seeds' calls (the hand-written system wh replaces), kept working where they are not
-- ambiguous with wh's own: thin wrappers onto wh's functions. README, "The seeds' calls".
-- update_mv_window(tenant, schema, start, end, force, function_name) is in src/api.rs;
-- update_<template>(…) and create_<template>_mv(…) are made per template by
-- _wh._seed_functions (sql/privileges.sql) when the template is set.

-- 001's *_by_template names.
CREATE FUNCTION @extschema@.update_mv_window_by_template(
    template_name text, tenant_name text, start_date date, end_date date, force_recreate boolean DEFAULT false
) RETURNS jsonb LANGUAGE sql AS $body$
    SELECT @extschema@.update_mv_window(template_name, tenant_name, start_date, end_date, force_recreate)
$body$;

CREATE FUNCTION @extschema@.update_tenant_union_view_by_template(template_name text, tenant_name text)
RETURNS jsonb LANGUAGE sql AS $body$
    SELECT @extschema@.update_tenant_union_view(template_name, tenant_name)
$body$;

CREATE FUNCTION @extschema@.update_public_view_by_template(template_name text)
RETURNS jsonb LANGUAGE sql AS $body$
    SELECT @extschema@.update_public_view(template_name)
$body$;

CREATE FUNCTION @extschema@.create_combined_table_from_template_by_year(template_name text, tenant_name text, year integer)
RETURNS jsonb LANGUAGE sql AS $body$
    SELECT @extschema@.create_combined_table_by_year(template_name, tenant_name, year)
$body$;

-- The seeds' view names: <template>_YYYY_MM_DD, as (template, day); anything else fails
-- with a HINT naming wh's call `wh_function(template_name, tenant_name, target_date)`.
CREATE FUNCTION @extschema@._seed_mv_name(view_name text, wh_function text, OUT template_name text, OUT day date)
LANGUAGE plpgsql IMMUTABLE AS $body$
DECLARE
    m text[] := pg_catalog.regexp_match(view_name, '^([a-z_][a-z0-9_]*)_([0-9]{4})_([0-9]{2})_([0-9]{2})$');
BEGIN
    IF m IS NOT NULL THEN
        BEGIN
            template_name := m[1];
            day := pg_catalog.make_date(m[2]::int, m[3]::int, m[4]::int);
            RETURN;
        EXCEPTION WHEN datetime_field_overflow OR invalid_datetime_format THEN
            NULL;
        END;
    END IF;
    RAISE EXCEPTION 'wh: %: not a day''s name (<template>_YYYY_MM_DD)', view_name
        USING ERRCODE = 'invalid_parameter_value',
              HINT = pg_catalog.format('wh''s call: SELECT _wh.%s(template_name, tenant_name, target_date)', wh_function);
END
$body$;

-- The seeds' does_mv_exist(schema, view_name) and refresh_mv(schema, view_name): a
-- tenant's schema is its name in wh, and a view name says the template and the day.
CREATE FUNCTION @extschema@.does_mv_exist(target_schema text, view_name text)
RETURNS boolean LANGUAGE sql AS $body$
    SELECT @extschema@.does_mv_exist(v.template_name, target_schema, v.day)
    FROM @extschema@._seed_mv_name(view_name, 'does_mv_exist') v
$body$;

CREATE FUNCTION @extschema@.refresh_mv(target_schema text, view_name text)
RETURNS jsonb LANGUAGE sql AS $body$
    SELECT @extschema@.refresh_mv(v.template_name, target_schema, v.day)
    FROM @extschema@._seed_mv_name(view_name, 'refresh_mv') v
$body$;

-- The seeds' update_tenant_view(tenant, schema, view_basename).
CREATE FUNCTION @extschema@.update_tenant_view(tenant_name text, target_schema text, view_basename text)
RETURNS jsonb LANGUAGE plpgsql AS $body$
BEGIN
    IF target_schema IS DISTINCT FROM tenant_name THEN
        RAISE EXCEPTION 'wh: in wh a tenant''s schema is its name: schema % cannot differ from tenant %', target_schema, tenant_name
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = pg_catalog.format('wh''s call: SELECT _wh.update_tenant_union_view(%L, %L)', view_basename, tenant_name);
    END IF;
    RETURN @extschema@.update_tenant_union_view(view_basename, tenant_name);
END
$body$;
/* </end connected objects> */

/* <begin connected objects> */
-- src/api/ops.rs:593
-- wh::api::ops::verify
CREATE  FUNCTION "verify"(
	"template_name" TEXT, /* Option < & str > */
	"tenant_name" TEXT, /* Option < & str > */
	"start_date" date, /* Option < Date > */
	"end_date" date, /* Option < Date > */
	"repair" bool DEFAULT false, /* Option < bool > */
	"max_days" INT DEFAULT 3660, /* Option < i32 > */
	"allow_shrink" bool DEFAULT false /* Option < bool > */
) RETURNS jsonb /* Out */
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'verify_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
-- src/lib.rs:91
-- finalize
-- wh grants: runs last in CREATE EXTENSION, after every function exists.
-- PUBLIC and wh_reader get nothing in _wh; wh_admin gets what operators need.
-- Functions run as wh_admin (SET role, below), so wh_admin needs DML on the config tables.

REVOKE ALL ON SCHEMA @extschema@ FROM PUBLIC;
GRANT USAGE ON SCHEMA @extschema@ TO wh_admin;

REVOKE ALL ON ALL TABLES IN SCHEMA @extschema@ FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA @extschema@ FROM PUBLIC;
REVOKE ALL ON ALL ROUTINES IN SCHEMA @extschema@ FROM PUBLIC;

GRANT SELECT ON ALL TABLES IN SCHEMA @extschema@ TO wh_admin;   -- tables and monitoring views
GRANT INSERT, UPDATE, DELETE ON
    @extschema@.tenant_connections, @extschema@.mv_templates,
    @extschema@.slices, @extschema@.run_log, @extschema@.settings, @extschema@.tenant_readers,
    @extschema@.run_locks, @extschema@.tenant_queries, @extschema@.verify_findings,
    @extschema@.refresh_schedules, @extschema@.pool_items, @extschema@.pair_stats, @extschema@.pair_changes,
    @extschema@.folded_years
    TO wh_admin;
-- The audit trail is append-only for operators.
GRANT INSERT ON @extschema@.connection_audit TO wh_admin;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA @extschema@ TO wh_admin;
GRANT EXECUTE ON ALL ROUTINES IN SCHEMA @extschema@ TO wh_admin;

-- Readers' "data as of" (_wh_scope.freshness, over the definer _wh.reader_freshness(),
-- which shows each login only what it may read).
GRANT EXECUTE ON FUNCTION @extschema@.reader_freshness() TO PUBLIC;
REVOKE ALL ON _wh_scope.freshness FROM PUBLIC;
GRANT SELECT ON _wh_scope.freshness TO PUBLIC;

-- A tenant's source host, port and database are in its foreign server's options, which
-- PostgreSQL lets every login read (pg_foreign_server is PUBLIC's): in this database only
-- wh_admin (and superusers) may. (DROP EXTENSION leaves this; README says how to undo it.)
REVOKE SELECT ON pg_catalog.pg_foreign_server FROM PUBLIC;
GRANT SELECT ON pg_catalog.pg_foreign_server TO wh_admin;

-- Operators create the per-tenant foreign servers and the tables public.<template>.
-- Tenant schemas are made only by _wh._make_tenant_schema (below): wh_admin has no
-- CREATE on the database, so a member cannot make a schema named like a superuser
-- ("$user" on every default search_path) or like a tenant to come.
GRANT CREATE ON SCHEMA public TO wh_admin;
GRANT USAGE ON FOREIGN DATA WRAPPER dblink_fdw TO wh_admin;
DO $revoke_db$
BEGIN
    EXECUTE pg_catalog.format('REVOKE CREATE ON DATABASE %I FROM wh_admin', pg_catalog.current_database());
END
$revoke_db$;

-- dblink is not PUBLIC's: with it any login could open connections from the warehouse's
-- trusted address (a password-guessing pivot). wh_admin keeps it; a DBA grants it to
-- others explicitly.
DO $dblink$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN
        SELECT p.oid::regprocedure FROM pg_catalog.pg_depend d
        JOIN pg_catalog.pg_proc p ON p.oid = d.objid
        JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
        WHERE d.classid = 'pg_catalog.pg_proc'::regclass AND d.refclassid = 'pg_catalog.pg_extension'::regclass
          AND d.deptype = 'e' AND e.extname = 'dblink'
    LOOP
        EXECUTE pg_catalog.format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', f);
        -- dblink_connect_u (no password check) stays superuser-only.
        IF f::text NOT LIKE 'dblink_connect_u(%' AND f::text NOT LIKE '%.dblink_connect_u(%' THEN
            EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO wh_admin', f);
        END IF;
    END LOOP;
END
$dblink$;

-- Every wh function works with wh_admin's privileges and a pinned search_path, whoever
-- calls it: a superuser (or a superuser's pg_cron job) calling wh never runs code a
-- wh_admin member planted (an operator in a schema on the caller's search_path, a
-- trigger on a table wh_admin owns, a domain's CHECK) with more than wh_admin's rights.
-- Procedures cannot carry SET clauses (they COMMIT): they call _wh._enter() after every
-- COMMIT instead. SECURITY DEFINER helpers carry their own narrow settings.
DO $pin$
DECLARE
    f record;
BEGIN
    FOR f IN
        SELECT p.oid::regprocedure AS sig,
               -- a trigger function runs as the role firing it; current_date_utc() and
               -- _is_wh_job_command() have bodies bound at creation, are parallel safe and
               -- are called inside SECURITY DEFINER helpers (no role switch there), as is
               -- _pair_figures() (a query of _wh.slices, read by reader_freshness()).
               p.prorettype = 'pg_catalog.trigger'::regtype
                   OR p.proname IN ('current_date_utc', '_is_wh_job_command', '_pair_figures') AS is_trigger
        FROM pg_catalog.pg_proc p
        WHERE p.pronamespace = '@extschema@'::regnamespace AND p.prokind = 'f' AND NOT p.prosecdef
          AND p.proname NOT IN ('_enter', '_leave')  -- their settings must outlive them
    LOOP
        IF f.is_trigger THEN  -- (or current_date_utc)
            EXECUTE pg_catalog.format('ALTER FUNCTION %s SET search_path = pg_catalog, pg_temp', f.sig);
        ELSE
            -- TimeZone too: the caller's zone never changes how a day is bounded or what a
            -- source's timestamp (without time zone) means.
            EXECUTE pg_catalog.format('ALTER FUNCTION %s SET search_path = pg_catalog, pg_temp SET role = wh_admin SET TimeZone = %L', f.sig, 'UTC');
        END IF;
    END LOOP;
END
$pin$;

-- pg_cron 1.4's cron.schedule_in_database does not check its user name argument: EXECUTE on
-- it would let an operator schedule a job that runs as a superuser. 0.5.0's README had DBAs
-- grant it to wh_admin; wh never uses it (jobs run as the login that made them).
DO $cron$
BEGIN
    IF pg_catalog.to_regprocedure('cron.schedule_in_database(text,text,text,text,text,boolean)') IS NOT NULL THEN
        REVOKE EXECUTE ON FUNCTION cron.schedule_in_database(text,text,text,text,text,boolean) FROM wh_admin;
    END IF;
END
$cron$;
/* </end connected objects> */



-- ---------------------------------------------------------------- 0.15.0 routines, views, grants
-- The seeds' update_<template>(…) and create_<template>_mv(…) were dropped with the 0.14.0
-- routines above: made again for every template set (as a fresh install makes them).
SELECT @extschema@._seed_functions(template_name) FROM @extschema@.mv_templates ORDER BY 1;

-- Every pair's figures again (changes between the drop of the triggers and here: none, this
-- script holds the extension; computed anyway, as 0.14.0's script did).
SELECT @extschema@._settle_pairs(true);
