-- wh 0.4.0 -> 0.5.0: rollups (_wh.set_rollup, _wh.build_rollup, _wh.rollups): templates
-- computed here from another template's stored rows, kept with every refresh of their base.
\echo Use "ALTER EXTENSION wh UPDATE" to load this file. \quit

-- Run as a superuser: search_path pinned for this script (SET LOCAL ends with it), so an
-- operator or function planted in public never matches a comparison below (0.6.0).
SET LOCAL search_path = @extschema@, pg_catalog, pg_temp;

ALTER TABLE @extschema@.mv_templates
    ADD COLUMN base_template text CONSTRAINT mv_templates_base_template_fkey REFERENCES @extschema@.mv_templates (template_name),
    ADD COLUMN rollup_select text,
    ADD COLUMN rollup_group_by text,
    ADD CONSTRAINT mv_templates_rollup_check CHECK ((base_template IS NULL) = (rollup_select IS NULL)
                                                   AND (base_template IS NULL) = (rollup_group_by IS NULL));

-- Every 0.4.0 view and routine is dropped here and created below
-- exactly as a fresh 0.5.0 install creates it (the upgrade test compares the catalogs).
DROP VIEW @extschema@.job_history, @extschema@.jobs, @extschema@.failures, @extschema@.freshness,
    @extschema@.partitions, @extschema@.drift, @extschema@.progress, @extschema@.gaps, @extschema@.storage;
DO $drop$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT p.oid::regprocedure AS sig, p.prokind
        FROM pg_catalog.pg_proc p
        JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
        JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid AND e.extname = 'wh'
        WHERE p.proname NOT IN ('current_date_utc', '_stamp_session_user')
    LOOP
        EXECUTE pg_catalog.format('DROP %s %s', CASE r.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END, r.sig);
    END LOOP;
END
$drop$;

-- ---------------------------------------------------------------- 0.5.0 routines, views, grants
