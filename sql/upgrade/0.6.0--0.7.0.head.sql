-- wh 0.6.0 -> 0.7.0: day two (issue 21). Templates evolve in place (appended columns keep
-- the checksums of the days fetched before), a refresh never takes away more of a stored
-- day than the template allows, pg_cron jobs are recorded with their definition (and
-- dumped) so a restore can schedule them again.
\echo Use "ALTER EXTENSION wh UPDATE" to load this file. \quit

-- Run as a superuser: search_path pinned for this script (SET LOCAL ends with it), so an
-- operator or function planted in public never matches a comparison below.
SET LOCAL search_path = @extschema@, pg_catalog, pg_temp;

-- As in 0.6.0's script: nothing but a superuser may own the schemas this script writes
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

-- How much of a stored day a refresh may take away (a source that purged its history
-- must not empty the warehouse's days), and the checksum's record width once a column is
-- appended to a template that holds days.
ALTER TABLE @extschema@.mv_templates
    ADD COLUMN max_shrink_percent integer NOT NULL DEFAULT 50 CHECK (max_shrink_percent BETWEEN 0 AND 100),
    ADD COLUMN hashed_columns integer CHECK (hashed_columns > 0);
-- How many of the template's columns each day was fetched with (NULL: all, as before).
ALTER TABLE @extschema@.slices ADD COLUMN columns smallint;

-- Each job wh made, with its definition and where it was made (filled in the tail, once
-- _wh._here() exists): dumped with the registry, so a restore can schedule them again.
ALTER TABLE @extschema@.cron_jobs
    ADD COLUMN jobname text, ADD COLUMN schedule text, ADD COLUMN command text,
    ADD COLUMN active boolean NOT NULL DEFAULT true, ADD COLUMN made_in text;
DO $jobs$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname OPERATOR(pg_catalog.=) 'pg_cron') THEN
        EXECUTE $q$
            UPDATE @extschema@.cron_jobs w SET jobname = j.jobname, schedule = j.schedule, command = j.command, active = j.active
            FROM cron.job j WHERE j.jobid OPERATOR(pg_catalog.=) w.jobid AND j.username::pg_catalog.name OPERATOR(pg_catalog.=) w.username
              AND j.jobname OPERATOR(pg_catalog.~~) 'wh:%'::pg_catalog.text AND @extschema@._is_wh_job_command(j.command) $q$;
    END IF;
END
$jobs$;
-- A recorded job pg_cron no longer has is gone, and one changed since (cron.alter_job) into
-- something that is not a wh job is no longer wh's: nothing to keep of either.
DELETE FROM @extschema@.cron_jobs WHERE jobname IS NULL;
ALTER TABLE @extschema@.cron_jobs ALTER COLUMN jobname SET NOT NULL, ALTER COLUMN schedule SET NOT NULL,
    ALTER COLUMN command SET NOT NULL;
SELECT pg_catalog.pg_extension_config_dump('@extschema@.cron_jobs', '');

-- Where each reader grant was made (filled in the tail): after a restore, only grants made
-- in another warehouse are given again by role name (_wh.finish_restore()).
ALTER TABLE @extschema@.tenant_readers ADD COLUMN made_in text;

-- Every 0.6.0 view and routine is dropped here and created below
-- exactly as a fresh 0.7.0 install creates it (the upgrade test compares the catalogs).
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

-- ---------------------------------------------------------------- 0.7.0 routines, views, grants
