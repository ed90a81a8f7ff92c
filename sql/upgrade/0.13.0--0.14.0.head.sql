-- wh 0.13.0 -> 0.14.0: finished years in columnar storage (issue 26). _wh.mv_templates gains
-- fold_storage (set_template_policy(..., fold_storage => 'heap' | 'columnar')); _wh.folded_years
-- records each folded year and its storage, so a rebuild from the sources folds it again as it
-- was and the nightly maintenance compresses again a columnar year a late change rewrote.
-- The years folded before this release are recorded here as heap (they are heap).
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
    ADD COLUMN fold_storage text NOT NULL DEFAULT 'heap' CHECK (fold_storage IN ('heap', 'columnar'));

CREATE TABLE @extschema@.folded_years (
    template_name   text NOT NULL REFERENCES @extschema@.mv_templates ON DELETE CASCADE,
    year            integer NOT NULL CHECK (year BETWEEN 1 AND 9999),
    storage         text NOT NULL CHECK (storage IN ('heap', 'columnar')),
    folded_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (template_name, year)
);
SELECT pg_catalog.pg_extension_config_dump('@extschema@.folded_years', '');

-- The years folded so far: a partition of a template's table whose bounds are one whole year.
INSERT INTO @extschema@.folded_years (template_name, year, storage)
SELECT m.template_name, pg_catalog.substr(c.relname, pg_catalog.length(m.template_name) OPERATOR(pg_catalog.+) 2)::pg_catalog.int4, 'heap'
FROM @extschema@.mv_templates m
JOIN pg_catalog.pg_class p ON p.relnamespace OPERATOR(pg_catalog.=) '_wh_data'::pg_catalog.regnamespace
     AND p.relname OPERATOR(pg_catalog.=) m.template_name::pg_catalog.name
JOIN pg_catalog.pg_inherits i ON i.inhparent OPERATOR(pg_catalog.=) p.oid
JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) i.inhrelid
WHERE c.relname OPERATOR(pg_catalog.~) ('^' OPERATOR(pg_catalog.||) m.template_name OPERATOR(pg_catalog.||) '_[0-9]{4}$')
  AND m.partition_grain OPERATOR(pg_catalog.=) 'month';

-- Every 0.13.0 view and routine is dropped here and created below exactly as a fresh 0.14.0
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

