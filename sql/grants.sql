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
