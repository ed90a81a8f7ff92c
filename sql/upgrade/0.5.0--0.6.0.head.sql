-- wh 0.5.0 -> 0.6.0: security (issue 20). Install and upgrade scripts pin their search_path;
-- pg_cron jobs wh made are recorded by id and owner; the seeds' objects an adoption set
-- aside are recorded by oid; the caller check judges the authenticated login.
\echo Use "ALTER EXTENSION wh UPDATE" to load this file. \quit

-- Run as a superuser: search_path pinned for this script (SET LOCAL ends with it), so an
-- operator or function planted in public never matches a comparison below.
SET LOCAL search_path = @extschema@, pg_catalog, pg_temp;

CREATE TABLE @extschema@.cron_jobs (
    jobid           bigint PRIMARY KEY,
    username        name NOT NULL,
    made_at         timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE TABLE @extschema@.seed_objects (
    object_oid      oid NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('schema', 'view')),
    name            text NOT NULL,
    tenant_name     text,
    template_name   text,
    moved_at        timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (kind, object_oid)
);

-- Which tenants each tenant-scoped reader role reads, by role oid: the tables' policy
-- "wh:scoped" reads it with each statement, and row-level security here shows each role
-- only its own rows (readers may read it: USAGE and SELECT for PUBLIC). wh keeps it from
-- _wh.tenant_readers with DML only, so granting or revoking a reader changes no policy and
-- never waits for a reader's lock. Like _wh_data, it is not a member of the extension:
-- plain DROP EXTENSION wh leaves scoped readers reading what they read.
DO $scope$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = '_wh_scope') THEN
        CREATE SCHEMA _wh_scope AUTHORIZATION wh_admin;
        ALTER EXTENSION wh DROP SCHEMA _wh_scope;
        COMMENT ON SCHEMA _wh_scope IS 'wh: which tenants each tenant-scoped reader reads';
    END IF;
    IF pg_catalog.to_regclass('_wh_scope.readers') IS NULL THEN
        CREATE TABLE _wh_scope.readers (
            role_oid    oid NOT NULL,
            tenant_name text NOT NULL,
            PRIMARY KEY (role_oid, tenant_name)
        );
        ALTER EXTENSION wh DROP TABLE _wh_scope.readers;
        ALTER TABLE _wh_scope.readers OWNER TO wh_admin;
        ALTER TABLE _wh_scope.readers ENABLE ROW LEVEL SECURITY;
        CREATE POLICY "wh:own" ON _wh_scope.readers AS PERMISSIVE FOR SELECT TO PUBLIC
            USING (pg_catalog.pg_has_role(role_oid, 'USAGE'));
        COMMENT ON TABLE _wh_scope.readers IS 'wh: the tenants a scoped reader role reads (each role sees its own rows); kept by _wh.grant_tenant_reader';
    END IF;
END
$scope$;
REVOKE ALL ON SCHEMA _wh_scope FROM PUBLIC;
GRANT USAGE ON SCHEMA _wh_scope TO PUBLIC;
REVOKE ALL ON _wh_scope.readers FROM PUBLIC;
GRANT SELECT ON _wh_scope.readers TO PUBLIC;

-- Every 0.5.0 view and routine is dropped here and created below
-- exactly as a fresh 0.6.0 install creates it (the upgrade test compares the catalogs).
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

-- ---------------------------------------------------------------- 0.6.0 routines, views, grants
