-- wh 0.7.0 -> 0.8.0: readers plan like a flat table (issue 22). Each template's table
-- moves into _wh_data (with its partitions, indexes, row-level policies and grants) and
-- public.<template> becomes a plain view of it with its owner's rights, which all-tenant
-- readers (wh_reader) read: no row-level security is in play for them, so the planner
-- reads the table's statistics for every comparison, as on a flat table. Tenant views
-- keep reading the table with the reader's rights (row-level security for scoped readers).
\echo Use "ALTER EXTENSION wh UPDATE" to load this file. \quit

-- Run as a superuser: search_path pinned for this script (SET LOCAL ends with it), so an
-- operator or function planted in public never matches a comparison below.
SET LOCAL search_path = @extschema@, pg_catalog, pg_temp;

-- As in 0.7.0's script: nothing but a superuser may own the schemas this script writes
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

-- Whether the current role reads every tenant: a member of wh_reader or wh_admin (or a
-- superuser). Each tenant view is two branches, one for such readers (the table's rows with
-- its owner's rights: no row-level security, so BI tools' cross-type bounds on a timestamp
-- column are planned with the statistics) and one for everyone else (the table under
-- row-level security). IMMUTABLE on purpose, so the planner folds it to a constant and
-- removes the other branch before it estimates anything: a tenant-scoped reader's own
-- operators are never estimated on the owner's statistics (which sample every tenant). A
-- plan that folded it is re-planned when the role changes (the view holds a table under
-- row-level security, so its plans depend on the role) and when a grant on the relations
-- changes; without SELECT on them a stale plan fails. Not a member of the extension: the
-- tenant views use it, and they outlive DROP EXTENSION.
DO $reads$
BEGIN
    IF pg_catalog.to_regprocedure('_wh_scope.reads_every_tenant()') IS NULL THEN
        CREATE FUNCTION _wh_scope.reads_every_tenant() RETURNS boolean
        LANGUAGE sql IMMUTABLE PARALLEL SAFE
        AS $fn$ SELECT pg_catalog.pg_has_role(CURRENT_USER, 'wh_reader', 'USAGE')
                    OR pg_catalog.pg_has_role(CURRENT_USER, 'wh_admin', 'USAGE') $fn$;
        ALTER EXTENSION wh DROP FUNCTION _wh_scope.reads_every_tenant();
        COMMENT ON FUNCTION _wh_scope.reads_every_tenant() IS 'wh: does the current role read every tenant (wh_reader, wh_admin)? Folded at planning by the tenant views';
    END IF;
END
$reads$;
REVOKE ALL ON FUNCTION _wh_scope.reads_every_tenant() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION _wh_scope.reads_every_tenant() TO PUBLIC;

-- Every 0.7.0 view and routine is dropped here and created below
-- exactly as a fresh 0.8.0 install creates it (the upgrade test compares the catalogs).
-- _here() is the default of tenant_readers.made_in: dropped with it, set again below.
ALTER TABLE @extschema@.tenant_readers ALTER COLUMN made_in DROP DEFAULT;
DROP VIEW _wh_scope.freshness;
DROP VIEW @extschema@.job_history, @extschema@.jobs, @extschema@.failures, @extschema@.freshness,
    @extschema@.partitions, @extschema@.drift, @extschema@.progress, @extschema@.rollups, @extschema@.gaps,
    @extschema@.storage;
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

-- ---------------------------------------------------------------- 0.8.0 routines, views, grants
