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

