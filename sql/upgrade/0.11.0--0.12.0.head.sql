-- wh 0.11.0 -> 0.12.0: the refresh pool (issue 25). Two tables, _wh.refresh_schedules (a
-- template's period: every tenant refreshed each `every`) and _wh.pool_items (the queue:
-- one row per template and tenant the pool refreshes, due at next_due); the pool's workers
-- (pg_cron jobs wh:pool:<n> running CALL _wh.run_pool(n)); _wh.schedule_refresh,
-- _wh.unschedule_refresh, the views _wh.pool and _wh.pool_workers; _wh.freshness gains
-- next_due and reads each figure by an index probe per pair (two new indexes below). Every tenant job (schedule_tenant) whose schedule fires at a fixed period moves
-- into the pool with that period (see the end of this script); the others stay jobs.
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

-- The refresh pool (_wh.schedule_refresh, src/ops/pool.rs): how fresh every tenant of a
-- template must be. The pool's workers (pg_cron jobs wh:pool:<n>) refresh each tenant when
-- it is due: today and the template's lookback days, as a tenant job would.
CREATE TABLE @extschema@.refresh_schedules (
    template_name   text PRIMARY KEY REFERENCES @extschema@.mv_templates ON DELETE CASCADE,
    every           interval NOT NULL CHECK (every >= '1 minute'::interval),
    set_by          name NOT NULL DEFAULT session_user,
    set_at          timestamptz NOT NULL DEFAULT pg_catalog.now()
);

-- The pool's queue: one row per template and tenant it refreshes (every tenant of a
-- template with a schedule; a tenant scheduled on its own, with its own period), due at
-- next_due. A worker takes the most overdue row FOR UPDATE SKIP LOCKED and holds it through
-- the refresh, so no two workers refresh one tenant and a worker killed mid-refresh leaves
-- it due. No foreign keys: a removal never waits for a running refresh, and a worker's
-- insert never waits on a template row a fold holds (rows of tenants or templates gone are
-- deleted at once, or by the next run of the pool when a worker holds them).
CREATE TABLE @extschema@.pool_items (
    template_name   text NOT NULL,
    tenant_name     text NOT NULL,
    -- This tenant's own period (schedule_tenant); NULL: the template's schedule.
    every           interval CHECK (every >= '1 minute'::interval),
    next_due        timestamptz NOT NULL DEFAULT pg_catalog.now(),
    last_started_at timestamptz,
    last_ms         double precision,
    last_status     text,
    last_worker     integer,
    refreshes       bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (template_name, tenant_name)
);
CREATE INDEX pool_items_next_due_idx ON @extschema@.pool_items (next_due);
-- Monitoring at 1,000 tenants: a pair's last refresh by one index probe (_wh.freshness), the
-- recent skipped runs without a scan (_wh.failures).
CREATE INDEX slices_refreshed_idx ON @extschema@.slices (tenant_name, template_name, refreshed_at);
CREATE INDEX run_log_skipped_idx ON @extschema@.run_log (started_at) WHERE status = 'skipped';
ANALYZE @extschema@.mv_templates;

SELECT pg_catalog.pg_extension_config_dump('@extschema@.refresh_schedules', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.pool_items', '');

-- Every 0.11.0 view and routine is dropped here and created below
-- exactly as a fresh 0.12.0 install creates it (the upgrade test compares the catalogs).
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

-- ---------------------------------------------------------------- 0.12.0 routines, views, grants
