-- wh 0.12.0 -> 0.13.0: the monitoring views at 1,000 tenants (issue 25). Two tables,
-- _wh.pair_stats (each tenant x template pair's figures of the registry: days, rows, first
-- and last day, missing days) and _wh.pair_changes (the pairs changed since, appended to by
-- statement triggers on _wh.slices); _wh.storage, _wh.gaps and _wh.health() read a row per
-- pair (_wh._pairs) instead of every registry row, and _wh.freshness its newest day and last
-- refresh; _wh._settle_pairs() folds the changes in.
-- The figures of every pair are computed once at the end of this script.
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

-- Each pair's figures, and the pairs changed since (sql/bootstrap.sql); dumped with the registry.
CREATE TABLE @extschema@.pair_stats (
    template_name   text NOT NULL,
    tenant_name     text NOT NULL,
    slices          bigint NOT NULL,
    rows            bigint NOT NULL,
    oldest_day      date NOT NULL,
    newest_day      date NOT NULL,
    newest_end      date NOT NULL,
    last_refreshed_at timestamptz,
    missing_days    bigint NOT NULL,
    PRIMARY KEY (template_name, tenant_name)
);
CREATE TABLE @extschema@.pair_changes (
    template_name   text NOT NULL,
    tenant_name     text NOT NULL
);
SELECT pg_catalog.pg_extension_config_dump('@extschema@.pair_stats', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.pair_changes', '');

-- Every 0.12.0 view and routine is dropped here and created below
-- exactly as a fresh 0.13.0 install creates it (the upgrade test compares the catalogs).
-- _here() is the default of tenant_readers.made_in: dropped with it, set again below.
ALTER TABLE @extschema@.tenant_readers ALTER COLUMN made_in DROP DEFAULT;
DROP VIEW _wh_scope.freshness;
DROP VIEW @extschema@.job_history, @extschema@.jobs, @extschema@.failures, @extschema@.freshness,
    @extschema@.partitions, @extschema@.drift, @extschema@.progress, @extschema@.rollups, @extschema@.gaps,
    @extschema@.storage, @extschema@.pool, @extschema@.pool_workers;
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

