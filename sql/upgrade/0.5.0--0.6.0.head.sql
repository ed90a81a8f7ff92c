-- wh 0.5.0 -> 0.6.0: security (issue 20). Install and upgrade scripts pin their search_path;
-- pg_cron jobs wh made are recorded by id and owner; the seeds' objects an adoption set
-- aside are recorded by oid; the caller check judges the authenticated login.
\echo Use "ALTER EXTENSION wh UPDATE" to load this file. \quit

-- Run as a superuser: search_path pinned for this script (SET LOCAL ends with it), so an
-- operator or function planted in public never matches a comparison below.
SET LOCAL search_path = @extschema@, pg_catalog, pg_temp;

-- Nothing but a superuser may own the schema this script writes into first, nor have
-- made _wh_data or _wh_scope (which survive DROP EXTENSION) for it to find: a schema another
-- role made before the install (or between an adoption's rename of the seeds' _wh and it)
-- could hold an operator that matches below. Every operator here is pg_catalog's, named.
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

-- The CA file of a verify-ca/verify-full tenant, kept with the other settings (it was only
-- in the foreign server's options, so a rotation or restore from the table dropped it).
ALTER TABLE @extschema@.tenant_connections ADD COLUMN sslrootcert text;
UPDATE @extschema@.tenant_connections t
SET sslrootcert = (SELECT pg_catalog.substr(x, 13) FROM pg_catalog.pg_foreign_server s, pg_catalog.unnest(s.srvoptions) x
                   WHERE s.srvname OPERATOR(pg_catalog.=) t.server_name AND x OPERATOR(pg_catalog.~~) 'sslrootcert=%'::pg_catalog.text);

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
-- _wh.tenant_readers with DML only (wh_admin: SELECT, INSERT, DELETE through its policy),
-- so granting or revoking a reader changes no policy and never waits for a reader's lock.
-- The schema and table belong to the installing superuser, so no operator can attach
-- code to them. Like _wh_data, not a member of the extension: plain DROP EXTENSION wh
-- leaves scoped readers reading what they read.
DO $scope$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname OPERATOR(pg_catalog.=) '_wh_scope'::pg_catalog.name) THEN
        CREATE SCHEMA _wh_scope;
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
        ALTER TABLE _wh_scope.readers ENABLE ROW LEVEL SECURITY;
        CREATE POLICY "wh:own" ON _wh_scope.readers AS PERMISSIVE FOR SELECT TO PUBLIC
            USING (pg_catalog.pg_has_role(role_oid, 'USAGE'));
        CREATE POLICY "wh:admin" ON _wh_scope.readers AS PERMISSIVE FOR ALL TO wh_admin
            USING (true) WITH CHECK (true);
        COMMENT ON TABLE _wh_scope.readers IS 'wh: the tenants a scoped reader role reads (each role sees its own rows); kept by _wh.grant_tenant_reader';
    END IF;
END
$scope$;
REVOKE ALL ON SCHEMA _wh_scope FROM PUBLIC;
GRANT USAGE ON SCHEMA _wh_scope TO PUBLIC;
REVOKE ALL ON _wh_scope.readers FROM PUBLIC;
GRANT SELECT ON _wh_scope.readers TO PUBLIC;
GRANT SELECT, INSERT, DELETE ON _wh_scope.readers TO wh_admin;

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
