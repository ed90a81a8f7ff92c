-- wh 0.1.0 -> 0.2.0: storage v2 (one time-partitioned table per template, days refreshed
-- by DML). Run by ALTER EXTENSION wh UPDATE; then CALL _wh.migrate_storage() moves the
-- 0.1.0 day and year partitions into the new tables (see README, "Upgrading from 0.1.0").
\echo Use "ALTER EXTENSION wh UPDATE" to load this file. \quit

-- Run as a superuser: search_path pinned for this script (SET LOCAL ends with it), so an
-- operator or function planted in public never matches a comparison below (0.6.0).
SET LOCAL search_path = @extschema@, pg_catalog, pg_temp;

-- Tables keep their rows; they gain what 0.2.0 records.
ALTER TABLE @extschema@.mv_templates
    ADD COLUMN partition_grain text NOT NULL DEFAULT 'month' CHECK (partition_grain IN ('month', 'year'));
ALTER TABLE @extschema@.slices ADD COLUMN checksum text;

-- The schema every partition of public.<template> lives in.
CREATE SCHEMA _wh_data AUTHORIZATION wh_admin;
REVOKE ALL ON SCHEMA _wh_data FROM PUBLIC;
COMMENT ON SCHEMA _wh_data IS 'wh partitions of public.<template>: read them through public.<template>';

-- Every 0.1.0 view and routine is dropped here and created below exactly as a fresh 0.2.0
-- install creates it (the upgrade test compares the two catalogs).
DROP VIEW @extschema@.job_history, @extschema@.jobs, @extschema@.failures, @extschema@.freshness, @extschema@.storage;
DO $drop$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT p.oid::regprocedure AS sig, p.prokind
        FROM pg_catalog.pg_proc p
        JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
        JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid AND e.extname = 'wh'
        WHERE p.proname <> 'current_date_utc'
    LOOP
        EXECUTE pg_catalog.format('DROP %s %s', CASE r.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END, r.sig);
    END LOOP;
END
$drop$;

-- wh:maintenance jobs now also make partitions ahead.
DO $cron$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_cron') THEN
        EXECUTE $q$UPDATE cron.job SET command = 'SELECT _wh.run_maintenance()'
                   WHERE jobname = 'wh:maintenance' AND command = 'SELECT _wh.prune_run_log()'$q$;
    END IF;
END
$cron$;

-- ---------------------------------------------------------------- 0.2.0 routines, views, grants
